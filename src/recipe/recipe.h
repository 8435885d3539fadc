/*
 * Quantization recipes: a YAML file -> a validated struct -> a decision per module name.
 *
 * The recipe module knows nothing about the model: it works on module-name strings (the name of a
 * Linear's weight tensor without ".weight", e.g. "model.language_model.layers.5.mlp.gate_proj").
 * The quantizer decides which modules are candidates (2-D Linear weights); the recipe only says,
 * for each candidate, keep it BF16 or quantize it and how. Shape rules (NVFP4 needs in % 16 == 0,
 * fp8-block needs 128-multiples, ...) are the quantizer's job, as are the exporter's
 * exclude_modules list (formats.md §8.3) and GPTQ's modules_in_block_to_quantize (§5.2), which are
 * derived from the resolved plan and never written in a recipe.
 *
 * File format (every key is checked; unknown keys, duplicates and wrong types are errors):
 *
 *   name: nvfp4-mlp-only            # required, string
 *   description: "..."              # optional, string
 *   export: modelopt                # required: modelopt | compressed-tensors | gptq
 *   rules:                          # required, non-empty sequence; the FIRST matching rule decides
 *     - pattern: "model.language_model.layers.*.mlp.*_proj"   # required, glob (recipe/glob.h)
 *       weights: nvfp4              # required: nvfp4 | fp8 | fp8-block | int4 | bf16 (= keep)
 *       scale_search: mse           # optional, default max: max | mse | four-over-six
 *       algorithm: gptq             # optional, default rtn: rtn | gptq (src/quant/gptq.h; needs
 *                                   # calibration: the Hessian of each Linear's input)
 *       activations: nvfp4          # optional, default none: none | nvfp4 | fp8
 *       smoothing: awq              # optional, default none: none | awq (per-input-channel
 *                                   # factors searched on the calibration activations and
 *                                   # folded into the norm or up_proj before the Linear,
 *                                   # src/pipeline/smooth_layer.h; needs calibration)
 *   exclude: ["lm_head"]            # optional sequence of globs; an excluded module is kept BF16
 *                                   # whatever the rules say (exclude beats rules)
 *   kv_cache:                       # optional; default format none
 *     format: fp8                   # none | fp8
 *     scales: cast                  # cast (default: no k/v_scale tensors, engines use 1.0) |
 *                                   # calibrated (per-layer scales at the cache-write point, §7)
 *   calibration:                    # required when g4q_recipe_needs_calibration(), else optional
 *     dataset: builtin:default      # required: "builtin:NAME" or a file path (relative paths are
 *                                   # taken from the recipe's folder)
 *     samples: 512                  # required, 1..10^7
 *     seq_len: 1024                 # required, 1..262144 tokens
 *     batch: 4                      # optional, default 1, 1..samples
 *     seed: 0                       # optional, default 0, 0..2^53 (exact in JSON)
 *     sequential: false             # optional, default false: true calibrates each decoder layer
 *                                   # on the quantized model's outputs of the layers before it
 *                                   # (GPTQ's sequential mode) instead of the BF16 model's
 *                                   # (ModelOpt's semantics); src/pipeline/quantize.h
 *
 * A module matched by no rule stays BF16. Group sizes are fixed by the formats and not
 * configurable: NVFP4 16 (never 32, §8.1), fp8-block 128x128, int4 128 (symmetric).
 *
 * Meaning of scale_search per format (formats.md):
 *   nvfp4: max = §2.3; mse = the 126-candidate FP8 block-scale sweep of §2.4; four-over-six = §2.6.
 *   fp8-block: max = block amax; mse = the 39-multiplier search per 128x128 block of §2.5.
 *   fp8 (per-tensor): max = tensor amax; mse = the §2.5 multiplier search with the tensor as group.
 *   int4: max = block amax (group 128); mse = the §2.5 multiplier search per group.
 *   imatrix, hessian (nvfp4, fp8-block, int4): mse's candidates, with each candidate's error
 *   weighted by the calibration inputs: by E[x²] per input channel (imatrix, llm-compressor's
 *   imatrix_mse) or by the block's local Hessian eᵀ·H_bb·e (hessian, ModelOpt's local_hessian);
 *   src/quant/quant.h. Both need calibration (the Linear's input Hessian).
 * Valid weight/activation pairs: nvfp4 + none (W4A16) or nvfp4 (W4A4); fp8 + fp8 (ModelOpt FP8 is
 * W8A8, §3); fp8-block + none (fp8_pb_wo; engines quantize activations dynamically, §4);
 * int4 + none (W4A16). A bf16 rule takes neither scale_search nor activations nor algorithm.
 * algorithm gptq: nvfp4 (scale_search chooses the fixed block scales), fp8-block and int4 (group
 * scales found as GPTQ goes, by scale_search); not fp8 per-tensor.
 *
 * Valid exports (checked at load time):
 *   modelopt: nvfp4, fp8, fp8-block. int4 is refused: vLLM cannot load ModelOpt W4A16_AWQ (§5.1).
 *     Several quantized formats in one recipe become MIXED_PRECISION (§8.5; recipe->mixed = 1),
 *     which vLLM supports for FP8, NVFP4 and W4A16_NVFP4 layers only (so no fp8-block there).
 *   compressed-tensors: nvfp4 (nvfp4-pack-quantized, §6) or int4 (pack-quantized, §5.3); one
 *     format per recipe; no KV-cache quantization (the exporter writes kv_cache_scheme: null).
 *   gptq: int4 only (v1 layout, §5.2); no KV-cache quantization (GPTQ configs have no KV field).
 *
 * Every error message starts with "FILE:LINE:COLUMN: " (1-based) and, for enums and unknown keys,
 * lists the valid values.
 */
#ifndef G4Q_RECIPE_RECIPE_H
#define G4Q_RECIPE_RECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/ctx.h"
#include "base/sha256.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

/* X(enum, spelling in the YAML) */
#define G4Q_RECIPE_EXPORT_TABLE(X)                                                                 \
    X(G4Q_RECIPE_EXPORT_MODELOPT, "modelopt")                                                      \
    X(G4Q_RECIPE_EXPORT_COMPRESSED_TENSORS, "compressed-tensors")                                  \
    X(G4Q_RECIPE_EXPORT_GPTQ, "gptq")

#define G4Q_RECIPE_WEIGHTS_TABLE(X)                                                                \
    X(G4Q_RECIPE_W_BF16, "bf16")                                                                   \
    X(G4Q_RECIPE_W_NVFP4, "nvfp4")                                                                 \
    X(G4Q_RECIPE_W_FP8, "fp8")                                                                     \
    X(G4Q_RECIPE_W_FP8_BLOCK, "fp8-block")                                                         \
    X(G4Q_RECIPE_W_INT4, "int4")

#define G4Q_RECIPE_SEARCH_TABLE(X)                                                                 \
    X(G4Q_RECIPE_SEARCH_MAX, "max")                                                                \
    X(G4Q_RECIPE_SEARCH_MSE, "mse")                                                                \
    X(G4Q_RECIPE_SEARCH_FOUR_OVER_SIX, "four-over-six")                                            \
    X(G4Q_RECIPE_SEARCH_IMATRIX, "imatrix")                                                        \
    X(G4Q_RECIPE_SEARCH_HESSIAN, "hessian")

#define G4Q_RECIPE_ALGO_TABLE(X)                                                                   \
    X(G4Q_RECIPE_ALGO_RTN, "rtn")                                                                  \
    X(G4Q_RECIPE_ALGO_GPTQ, "gptq")

#define G4Q_RECIPE_SMOOTH_TABLE(X)                                                                 \
    X(G4Q_RECIPE_SMOOTH_NONE, "none")                                                              \
    X(G4Q_RECIPE_SMOOTH_AWQ, "awq")
#define G4Q_RECIPE_ACT_TABLE(X)                                                                    \
    X(G4Q_RECIPE_ACT_NONE, "none")                                                                 \
    X(G4Q_RECIPE_ACT_NVFP4, "nvfp4")                                                               \
    X(G4Q_RECIPE_ACT_FP8, "fp8")

#define G4Q_RECIPE_KV_TABLE(X)                                                                     \
    X(G4Q_RECIPE_KV_NONE, "none")                                                                  \
    X(G4Q_RECIPE_KV_FP8, "fp8")

#define G4Q_RECIPE_KV_SCALES_TABLE(X)                                                              \
    X(G4Q_RECIPE_KV_SCALES_CAST, "cast")                                                           \
    X(G4Q_RECIPE_KV_SCALES_CALIBRATED, "calibrated")

#define G4Q_X_ENUM(e, s) e,
typedef enum { G4Q_RECIPE_EXPORT_TABLE(G4Q_X_ENUM) G4Q_RECIPE_EXPORT_COUNT } g4q_recipe_export;
typedef enum { G4Q_RECIPE_WEIGHTS_TABLE(G4Q_X_ENUM) G4Q_RECIPE_W_COUNT } g4q_recipe_weights;
typedef enum { G4Q_RECIPE_SEARCH_TABLE(G4Q_X_ENUM) G4Q_RECIPE_SEARCH_COUNT } g4q_recipe_search;
typedef enum { G4Q_RECIPE_ALGO_TABLE(G4Q_X_ENUM) G4Q_RECIPE_ALGO_COUNT } g4q_recipe_algo;
typedef enum { G4Q_RECIPE_ACT_TABLE(G4Q_X_ENUM) G4Q_RECIPE_ACT_COUNT } g4q_recipe_act;
typedef enum { G4Q_RECIPE_SMOOTH_TABLE(G4Q_X_ENUM) G4Q_RECIPE_SMOOTH_COUNT } g4q_recipe_smooth;
typedef enum { G4Q_RECIPE_KV_TABLE(G4Q_X_ENUM) G4Q_RECIPE_KV_COUNT } g4q_recipe_kv;
typedef enum {
    G4Q_RECIPE_KV_SCALES_TABLE(G4Q_X_ENUM) G4Q_RECIPE_KV_SCALES_COUNT
} g4q_recipe_kv_scales;
#undef G4Q_X_ENUM

/* YAML spellings ("fp8-block"); "?" for out-of-range values. */
const char *g4q_recipe_export_name(g4q_recipe_export v);
const char *g4q_recipe_weights_name(g4q_recipe_weights v);
const char *g4q_recipe_search_name(g4q_recipe_search v);
const char *g4q_recipe_algo_name(g4q_recipe_algo v);
const char *g4q_recipe_act_name(g4q_recipe_act v);
const char *g4q_recipe_smooth_name(g4q_recipe_smooth v);
const char *g4q_recipe_kv_name(g4q_recipe_kv v);
const char *g4q_recipe_kv_scales_name(g4q_recipe_kv_scales v);

/* One rule. line/column: 1-based position of the pattern's value in the file. */
typedef struct g4q_recipe_rule {
    const char *pattern; /* glob, syntax checked */
    g4q_recipe_weights weights;
    g4q_recipe_search search; /* MAX for bf16 rules */
    g4q_recipe_algo algo;     /* RTN for bf16 rules */
    g4q_recipe_act act;       /* NONE for bf16 rules */
    g4q_recipe_smooth smooth; /* NONE for bf16 rules */
    int line, column;
} g4q_recipe_rule;

typedef struct g4q_recipe_exclude {
    const char *pattern;
    int line, column;
} g4q_recipe_exclude;

typedef struct g4q_recipe_calib {
    int present;              /* 1 if the file has a calibration section */
    const char *dataset;      /* as written; NULL when absent */
    /* "builtin:NAME" unchanged; a relative path resolved against the recipe's folder. */
    const char *dataset_path;
    int samples, seq_len, batch;
    uint64_t seed;
    int sequential; /* calibrate on the quantized outputs of earlier layers */
} g4q_recipe_calib;

/* A loaded recipe. All strings and arrays live in `arena` and are freed with the recipe. */
typedef struct g4q_recipe {
    const char *path; /* file name used in messages */
    const char *name;
    const char *description; /* "" when absent */
    g4q_recipe_export export_format;
    g4q_recipe_rule *rules; /* n_rules >= 1, in file order */
    int n_rules;
    g4q_recipe_exclude *excludes;
    int n_excludes;
    g4q_recipe_kv kv_format;
    g4q_recipe_kv_scales kv_scales; /* CAST when kv_format is NONE */
    g4q_recipe_calib calib;
    /* 1 when the rules quantize with more than one (weights, activations) pair: a ModelOpt
     * MIXED_PRECISION export (formats.md §8.5). Only possible with export modelopt. */
    int mixed;
    char sha256[G4Q_SHA256_HEX]; /* of the file's bytes */
    g4q_arena arena;
} g4q_recipe;

/* What the recipe decides for one module. weights == G4Q_RECIPE_W_BF16 means keep. */
typedef struct g4q_recipe_decision {
    g4q_recipe_weights weights;
    g4q_recipe_search search;
    g4q_recipe_algo algo;
    g4q_recipe_act act;
    g4q_recipe_smooth smooth;
    int rule;    /* index of the deciding rule, -1 when none matched or an exclude matched */
    int exclude; /* index of the matching exclude pattern, -1 when none */
} g4q_recipe_decision;

/* Reads and validates a recipe file (at most 1 MiB). On success *out owns everything; free it
 * with g4q_recipe_free. Errors: G4Q_ERR_IO / G4Q_ERR_NOT_FOUND for the file, G4Q_ERR_FORMAT for
 * YAML syntax, G4Q_ERR_INVALID for schema and combination errors; messages begin "path:line:col: ".
 */
g4q_status g4q_recipe_load(g4q_ctx *ctx, const char *path, g4q_recipe **out);

/* Same from a buffer of len bytes; `path` names it in messages and anchors relative dataset
 * paths (its folder). */
g4q_status g4q_recipe_parse(g4q_ctx *ctx, const char *path, const char *text, size_t len,
                            g4q_recipe **out);

/* Frees a recipe; NULL is a no-op. */
void g4q_recipe_free(g4q_recipe *r);

/* The decision for one module name: an exclude match keeps it (exclude beats rules); otherwise
 * the first matching rule decides; otherwise keep. */
g4q_recipe_decision g4q_recipe_match(const g4q_recipe *r, const char *module_name);

/* Checks the recipe against the model's candidate module names (n of them), once the model is
 * known. The candidates are every 2-D Linear weight of the checkpoint, multimodal ones included
 * (model.vision_embedder.patch_dense, model.embed_{vision,audio}.embedding_projection), since
 * recipes may name them. Error G4Q_ERR_INVALID, naming the rule's "path:line:col", for a rule
 * whose pattern matches no module, or whose every match is taken by an exclude or an earlier rule
 * (a dead rule), or when no module ends up quantized. An exclude pattern that matches nothing is
 * only a warning (logged), since recipes may list modules such as a tied lm_head for clarity. */
g4q_status g4q_recipe_check_patterns(g4q_ctx *ctx, const g4q_recipe *r, const char *const *names,
                                     size_t n);

/* 1 when a run needs calibration data: some rule quantizes activations (their input_scale is a
 * calibrated amax) or KV scales are calibrated. */
int g4q_recipe_needs_calibration(const g4q_recipe *r);

/* The resolved recipe as a cJSON object for the manifest (every default filled in); NULL when out
 * of memory. The caller owns it (cJSON_Delete). */
struct cJSON *g4q_recipe_to_cjson(const g4q_recipe *r);

/* Same, printed by cJSON_Print (NUL-terminated) into a malloc'd *json the caller frees. The object
 * names the recipe file by its base name only and carries the file's sha256, so it does not depend
 * on where the recipe lives (manifests stay byte-identical across machines). */
g4q_status g4q_recipe_describe(g4q_ctx *ctx, const g4q_recipe *r, char **json);

#ifdef __cplusplus
}
#endif
#endif
