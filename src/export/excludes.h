/*
 * Exclusion lists of ModelOpt exports (formats.md §8.3, §8.6).
 *
 * g4q_excludes_summarise() restates ModelOpt's prefix-wildcard summarisation: for each unquantized
 * module it emits the shortest prefix wildcard that matches no quantized module, so the list stays
 * short ("model.language_model.layers.0.self_attn*" instead of four projections).
 *
 * g4q_excludes_skips() restates how vLLM reads such a list, and g4q_excludes_verify() uses it to
 * check both directions before anything is written: every module left in BF16 is skipped (else
 * vLLM allocates packed parameters for it and loading fails), and no quantized module is skipped
 * (the substring hazard: "layers.1" inside "layers.10").
 */
#ifndef G4Q_EXPORT_EXCLUDES_H
#define G4Q_EXPORT_EXCLUDES_H

#include <stddef.h>

#include "base/strlist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Appends the summarised, byte-order-sorted, unique exclude list to *out. Module names are the
 * model's module names (no ".weight" suffix). */
g4q_status g4q_excludes_summarise(g4q_ctx *ctx, const char *const *unquantized, size_t n_unquantized,
                                  const char *const *quantized, size_t n_quantized,
                                  g4q_strlist *out);

/* 1 if vLLM would keep `module` unquantized under this exclude list: an entry "X*" not ending in
 * ".*" stands for "X" and "X.*"; a module is skipped when an entry equals it, is a substring of it
 * (vLLM's legacy rule), or matches it with fnmatch. */
int g4q_excludes_skips(const g4q_strlist *excludes, const char *module);

/* Checks both directions described above; the error names the first offending module and entry. */
g4q_status g4q_excludes_verify(g4q_ctx *ctx, const g4q_strlist *excludes,
                               const char *const *unquantized, size_t n_unquantized,
                               const char *const *quantized, size_t n_quantized);

#ifdef __cplusplus
}
#endif
#endif
