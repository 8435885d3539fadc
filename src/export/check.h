/*
 * Export checker: verifies a quantized checkpoint folder against the loader rules of
 * docs/formats.md, independently of the plan that wrote it. It reads only what a loader reads:
 * config.json (its quantization_config and the model shape), hf_quant_config.json,
 * quantize_config.json and the safetensors tensors.
 *
 * Detected formats: ModelOpt NVFP4, W4A16_NVFP4, FP8 and fp8_pb_wo (hf_quant_config.json and
 * config.json with quant_method "modelopt"), compressed-tensors nvfp4-pack-quantized and
 * pack-quantized, and GPTQ v1.
 *
 * What is checked (each problem names the tensor, module or JSON key and the rule):
 *   - JSON: required keys and values (vLLM needs group_size, kv_cache_quant_algo and
 *     exclude_modules for NVFP4; quant_method; GPTQ bits/group_size/sym/desc_act/
 *     modules_in_block_to_quantize), config.json and hf_quant_config.json agree, and
 *     quantize_config.json (if present) equals config.json's quantization_config.
 *   - Tensors: every Linear module the config implies (the decoder projections and the multimodal
 *     Linears) is either a BF16 `<m>.weight` of the expected shape or exactly the tensor set of the
 *     format (names, dtypes, shapes: §2.1, §3, §4, §5.2, §5.3, §6); every other expected tensor is
 *     present, BF16 and of its shape; nothing else is in the files (KV scales of §7 excepted).
 *   - Coverage: every BF16 Linear (and lm_head) is skipped by exclude_modules under vLLM's rules
 *     (export/excludes.h), and no quantized module is; for compressed-tensors the `ignore` list,
 *     which must also name the absent v_proj of a k_eq_v layer exactly when it names that
 *     layer's q_proj and k_proj (vLLM looks up all three shards of qkv_proj; the k_eq_v layers are
 *     read from config.json's attention_k_eq_v and layer_types); for GPTQ the
 *     modules_in_block_to_quantize substrings select exactly the quantized modules.
 *   - Fused groups ({q,k,v} / {q,k} without v_proj, {gate,up}) are quantized alike, and for NVFP4
 *     share bit-identical weight_scale_2 / input_scale (ModelOpt) or weight_global_scale /
 *     input_global_scale (compressed-tensors) (§2.7).
 *   - Shapes: NVFP4 in % 16; fp8_pb_wo out and in % 128; INT4 in % 128 and out % 8.
 *   - Values: E4M3 block scales are never NaN codes (0x7F/0xFF) nor negative; ModelOpt NVFP4 block
 *     scales are >= 2^-9 (byte != 0x00: zero blocks are written 0x38), compressed-tensors ones are
 *     != 0x00 (a zero code becomes 0x20); per-tensor scales finite and > 0; FP8 weight codes are
 *     never NaN; fp8_pb_wo block scales finite and > 0; GPTQ qzeros all 0x77777777, g_idx[i] ==
 *     i/128, f16 scales finite and > 0; CT INT4 scales finite and > 0 and weight_shape == [out, in].
 */
#ifndef G4Q_EXPORT_CHECK_H
#define G4Q_EXPORT_CHECK_H

#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "io/safetensors.h"
#include "model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The export format a checkpoint declares. */
typedef enum {
    G4Q_CHECK_FMT_UNKNOWN = 0,
    G4Q_CHECK_FMT_MO_NVFP4,       /* ModelOpt NVFP4 (W4A4) */
    G4Q_CHECK_FMT_MO_W4A16_NVFP4, /* ModelOpt W4A16_NVFP4 */
    G4Q_CHECK_FMT_MO_FP8,         /* ModelOpt FP8 per tensor */
    G4Q_CHECK_FMT_MO_FP8_PB_WO,   /* ModelOpt fp8_pb_wo */
    G4Q_CHECK_FMT_CT_NVFP4,       /* compressed-tensors nvfp4-pack-quantized */
    G4Q_CHECK_FMT_CT_INT4,        /* compressed-tensors pack-quantized */
    G4Q_CHECK_FMT_GPTQ,           /* GPTQ v1 */
    G4Q_CHECK_FMT_COUNT
} g4q_check_format;

/* "modelopt NVFP4", "compressed-tensors pack-quantized", "gptq", ... ("unknown"). */
const char *g4q_check_format_name(g4q_check_format f);

#define G4Q_CHECK_ITEM_MAX 192
#define G4Q_CHECK_RULE_MAX 32
#define G4Q_CHECK_MSG_MAX 320

typedef struct g4q_check_problem {
    char item[G4Q_CHECK_ITEM_MAX]; /* tensor, module or "FILE:key" */
    char rule[G4Q_CHECK_RULE_MAX]; /* short rule id, e.g. "fused-scale", "excludes-cover" */
    char message[G4Q_CHECK_MSG_MAX];
} g4q_check_problem;

typedef struct g4q_check_report {
    g4q_check_format format;
    size_t n_checks;       /* individual checks performed */
    size_t n_problems;
    g4q_check_problem *problems; /* owned, n_problems entries */
    size_t cap;
    size_t n_quantized;    /* Linear modules found quantized */
    size_t n_bf16;         /* Linear modules found BF16 */
    size_t n_tensors;      /* tensors in the checkpoint */
} g4q_check_report;

/* What the checker reads; everything is borrowed. */
typedef struct g4q_check_input {
    const g4q_config *cfg;         /* parsed from the export's config.json */
    const g4q_tensor *tensors;     /* every tensor of the checkpoint (data readable) */
    size_t n_tensors;
    const cJSON *config;           /* config.json (required) */
    const cJSON *hf_quant;         /* hf_quant_config.json, or NULL when absent */
    const cJSON *quantize_config;  /* quantize_config.json, or NULL when absent */
} g4q_check_input;

/* Runs every check on `in` and fills *rep (initialised here; free with g4q_check_report_free).
 * Problems found in the export are entries of the report, not errors: the status is G4Q_OK
 * whenever the checks could run, and an error only for out-of-memory. */
g4q_status g4q_check_run(g4q_ctx *ctx, const g4q_check_input *in, g4q_check_report *rep);

/* Loads DIR (config.json, the optional JSON files, the safetensors checkpoint, single or sharded)
 * and runs g4q_check_run. An unreadable or malformed folder (no config.json, invalid JSON, a
 * corrupt safetensors file, a config gemma4q does not parse) is an error status naming the file. */
g4q_status g4q_check_dir(g4q_ctx *ctx, const char *dir, g4q_check_report *rep);

void g4q_check_report_free(g4q_check_report *rep); /* NULL is a no-op */

/* 1 if some problem has this rule id (for tests). */
int g4q_check_report_has(const g4q_check_report *rep, const char *rule, const char *item_substr);

/* One line per problem ("PROBLEM [rule] item: message"), then "format: ...", and
 * "N checks, M problems". */
void g4q_check_report_print(const g4q_check_report *rep, const char *dir, FILE *f);

/* {"dir", "format", "checks", "problems": [{"item", "rule", "message"}], "ok", ...}; caller frees
 * with cJSON_Delete. */
cJSON *g4q_check_report_to_cjson(const g4q_check_report *rep, const char *dir);

#ifdef __cplusplus
}
#endif
#endif
