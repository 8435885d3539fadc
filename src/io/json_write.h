/*
 * JSON output in the style of Python's json.dumps(obj, indent=N): ", " never appears inside
 * indented containers, keys as given (cJSON keeps insertion order), non-ASCII escaped as \uXXXX,
 * integral numbers as integers and others as the shortest text that reads back to the same double
 * (Python's float repr, e.g. 1e-06, 0.5). Files written by Python tools (ModelOpt's
 * hf_quant_config.json with indent 4, transformers' config.json with indent 2) compare equal.
 */
#ifndef G4Q_IO_JSON_WRITE_H
#define G4Q_IO_JSON_WRITE_H

#include <cjson/cJSON.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Prints `v` with `indent` spaces per level (0: compact, with ", " and ": " separators like
 * Python's default). `base_level` indents every line after the first by that many levels, for
 * splicing into an enclosing document. Returns a malloc'd string in *out (no trailing newline). */
g4q_status g4q_json_print(g4q_ctx *ctx, const cJSON *v, int indent, int base_level, char **out);

/* A JSON number that prints as a Python float does: always with a fraction or an exponent
 * ("30.0", "1e-06", "1000000.0"). transformers validates some config fields as float and refuses
 * 30 where it expects 30.0; cJSON alone cannot tell the two apart. Returns a cJSON raw item. */
cJSON *g4q_json_create_float(double x);

/* Prints and writes to path with a trailing newline. */
g4q_status g4q_json_write_file(g4q_ctx *ctx, const char *path, const cJSON *v, int indent);

/* Returns the text of a JSON object document with one more member "key": value appended before
 * its closing brace, leaving every other byte of `doc` unchanged (so an input config.json is
 * carried over exactly). Fails if `doc` is not an object or already has `key`. */
g4q_status g4q_json_append_member(g4q_ctx *ctx, const char *label, const char *doc, const char *key,
                                  const cJSON *value, int indent, char **out);

#ifdef __cplusplus
}
#endif
#endif
