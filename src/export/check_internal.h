/*
 * Shared state of the export checker (export/check.c: tensors and values; export/check_config.c:
 * JSON, format detection and exclude coverage). Not a public interface.
 */
#ifndef G4Q_EXPORT_CHECK_INTERNAL_H
#define G4Q_EXPORT_CHECK_INTERNAL_H

#include "export/check.h"
#include "model/weights.h"

/* One Linear module the config implies. */
typedef struct g4q_check_module {
    char name[G4Q_WEIGHT_NAME_MAX]; /* module name: the weight's name without ".weight" */
    int layer;                      /* decoder layer, or -1 (multimodal) */
    g4q_weight_role role;
    g4q_linear_group group;
    int64_t out, in;                /* BF16 weight shape [out, in] */
    int quantized;                  /* found quantized (1) or BF16 (0) */
} g4q_check_module;

typedef struct g4q_check_state {
    g4q_ctx *ctx;
    const g4q_check_input *in;
    g4q_check_report *rep;
    const g4q_tensor **sorted; /* tensors sorted by name */
    unsigned char *used;       /* per tensor (index into in->tensors): accounted for */
    g4q_check_module *mods;
    size_t n_mods;
    g4q_check_format fmt;
    int act;       /* activations quantized: input_scale / input_global_scale expected */
    int kv_fp8;    /* the config declares an FP8 KV cache (KV scale tensors allowed) */
    int nomem;     /* an allocation failed while recording problems */
} g4q_check_state;

/* Records a problem (item, rule id, printf message). */
void g4q_check_add(g4q_check_state *s, const char *item, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Counts one check, and records a problem when !ok. Returns ok. */
int g4q_check_expect(g4q_check_state *s, int ok, const char *item, const char *rule,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Detects the format from the JSON files (sets s->fmt, s->act, s->kv_fp8) and checks the keys
 * each format requires, and that the files agree. */
void g4q_check_json(g4q_check_state *s);

/* After the modules' states are known: exclude_modules / ignore / modules_in_block_to_quantize
 * select exactly the BF16 / quantized modules, and a compressed-tensors ignore list treats the
 * absent v_proj of each k_eq_v layer as it treats that layer's q_proj and k_proj. */
void g4q_check_coverage(g4q_check_state *s);

#endif
