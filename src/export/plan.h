/*
 * The quantization plan: for every tensor of an input checkpoint, keep it (copied bit-exact) or
 * quantize it, and exactly which tensors, dtypes and shapes that produces in the chosen export
 * format (formats.md §2-§6). Built before anything is read or written, so --dry-run prints it and
 * the writer can declare every output tensor up front.
 *
 * Candidates for quantization are the 2-D Linear weights: the seven projections of every decoder
 * layer and the multimodal Linears (vision patch_dense and the two embedding projections).
 * embed_tokens (also the tied output head), norms, scalars and biases are always kept.
 */
#ifndef G4Q_EXPORT_PLAN_H
#define G4Q_EXPORT_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "base/strlist.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"
#include "quant/layout.h"
#include "recipe/recipe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How one tensor is stored in the export: a stored layout of quant/layout.h (same values), or
 * kept. The tensors each format produces are the layout table's (g4q_layout_get). */
typedef enum {
    G4Q_PF_KEEP = G4Q_LAYOUT_BF16,             /* unchanged bytes */
    G4Q_PF_NVFP4_MO = G4Q_LAYOUT_NVFP4_MO,     /* ModelOpt NVFP4 / W4A16_NVFP4 (§2.1) */
    G4Q_PF_NVFP4_CT = G4Q_LAYOUT_NVFP4_CT,     /* compressed-tensors nvfp4-pack-quantized (§6) */
    G4Q_PF_FP8_TENSOR = G4Q_LAYOUT_FP8_TENSOR, /* ModelOpt FP8 per-tensor (§3) */
    G4Q_PF_FP8_BLOCK = G4Q_LAYOUT_FP8_BLOCK,   /* ModelOpt fp8_pb_wo (§4) */
    G4Q_PF_INT4_GPTQ = G4Q_LAYOUT_INT4_GPTQ,   /* GPTQ v1 (§5.2) */
    G4Q_PF_INT4_CT = G4Q_LAYOUT_INT4_CT,       /* compressed-tensors pack-quantized (§5.3) */
    G4Q_PF_COUNT = G4Q_LAYOUT_COUNT
} g4q_plan_format;

const char *g4q_plan_format_name(g4q_plan_format f);

/* What an output tensor holds, for the writers: the layout role of a quantized output (same
 * values as g4q_layout_role, whose table gives its suffix), or a kept tensor's copy. */
typedef enum {
    G4Q_OUT_COPY = 0,                             /* the input bytes */
    G4Q_OUT_CODES = G4Q_LROLE_CODES,              /* weight / weight_packed / qweight */
    G4Q_OUT_SCALES = G4Q_LROLE_SCALES,            /* block or group scales */
    G4Q_OUT_GLOBAL = G4Q_LROLE_GLOBAL,            /* per-tensor weight scale */
    G4Q_OUT_INPUT_SCALE = G4Q_LROLE_INPUT_SCALE,  /* calibrated activation scale */
    G4Q_OUT_QZEROS = G4Q_LROLE_QZEROS,            /* GPTQ qzeros */
    G4Q_OUT_G_IDX = G4Q_LROLE_G_IDX,              /* GPTQ g_idx */
    G4Q_OUT_SHAPE = G4Q_LROLE_SHAPE,              /* CT weight_shape */
    G4Q_OUT_K_SCALE = G4Q_LROLE_K_SCALE, /* calibrated KV-cache scale of K (§7), on the layer's
                                            k_proj item */
    G4Q_OUT_V_SCALE = G4Q_LROLE_V_SCALE, /* same for V; named <L>.N.self_attn.v_proj.v_scale on
                                            every layer */
} g4q_out_kind;

#define G4Q_PLAN_NAME_MAX 160   /* output tensor names */
#define G4Q_PLAN_MODULE_MAX 128 /* input tensor and module names (longer ones are refused) */
/* Calibrated outputs (INPUT_SCALE, K_SCALE, V_SCALE) always come after an item's weight outputs,
 * so the weight quantizers fill out[0 .. n) positionally (n = g4q_plan_item_weight_outputs) and
 * the exporter the rest. K/V scales
 * (kv_cache.scales: calibrated) hang on each layer's k_proj item, whatever its format (a kept
 * k_proj has its copy output first), since full layers have no v_proj tensor to carry v_scale. */
#define G4Q_PLAN_MAX_OUTPUTS 6

typedef struct g4q_plan_output {
    char name[G4Q_PLAN_NAME_MAX];
    g4q_dtype dtype;
    int ndim;
    int64_t shape[4];
    uint64_t nbytes;
    g4q_out_kind kind;
    size_t writer_index; /* set when declared to the safetensors writer */
} g4q_plan_output;

typedef struct g4q_plan_item {
    const g4q_tensor *src;          /* the input tensor */
    char module[G4Q_PLAN_MODULE_MAX]; /* Linear module name ("" when not a Linear candidate) */
    int layer;                      /* decoder layer, or -1 */
    g4q_weight_role role;
    g4q_plan_format format;
    g4q_recipe_decision decision;   /* recipe's word for candidates */
    int group;                      /* index into plan->groups, or -1 */
    int n_out;
    g4q_plan_output out[G4Q_PLAN_MAX_OUTPUTS];
} g4q_plan_item;

/* A fused group whose members share one global amax (NVFP4, §2.7). */
typedef struct g4q_plan_group {
    int layer;
    const char *name; /* "qkv" or "gate_up" */
    int members[3];   /* item indices */
    int n_members;
} g4q_plan_group;

typedef struct g4q_plan {
    const g4q_recipe *recipe;
    g4q_plan_item *items; /* input checkpoint order: item i is for tensor i of the checkpoint */
    size_t n_items;
    g4q_plan_group *groups;
    size_t n_groups;
    /* Module names for the exporters (owned). */
    g4q_strlist quantized;   /* quantized Linear modules */
    g4q_strlist unquantized; /* Linear candidates left BF16, plus "lm_head" (tied, never quantized) */
    uint64_t bytes_in, bytes_out;
    size_t n_quantized;
    int needs_calibration;   /* some output needs input/KV scales that only calibration gives */
    int needs_hessians;      /* some item needs its input Hessian (g4q_plan_item_needs_hessian) */
    /* Linear input sites (1u << g4q_obs_site: ATTN_IN, MLP_IN, DOWN_IN) that some layer smooths:
     * a quantized reader's rule says smoothing awq (o_proj's input is never smoothed: nothing
     * before it can absorb the factors). The quantized readers of one layer's site agree. */
    unsigned smooth_sites;
    char calibration_reason[256];
} g4q_plan;

/* Builds the plan of `recipe` for checkpoint tensors[0..n) bound to `w` under `cfg`. Checks the
 * recipe's patterns against the candidates (a rule matching nothing is an error naming its line),
 * the shape rules of each format (NVFP4: in % 16; fp8-block: out and in % 128, per fused shard;
 * INT4: in % 128 and out % 8), and refuses a quantized lm_head. */
g4q_status g4q_plan_build(g4q_ctx *ctx, const g4q_recipe *recipe, const g4q_config *cfg,
                          const g4q_weights *w, const g4q_tensor *tensors, size_t n,
                          g4q_plan *out);

void g4q_plan_free(g4q_plan *p); /* NULL is a no-op */

/* 1 when the item is quantized with its calibration input Hessian (algorithm gptq, scale_search
 * imatrix or hessian), so that it
 * is quantized during calibration, layer by layer (src/pipeline/quantize.h), not by the export;
 * g4q_plan_item_hessian_use names why ("algorithm gptq", ...), for messages. */
int g4q_plan_item_needs_hessian(const g4q_plan_item *it);
const char *g4q_plan_item_hessian_use(const g4q_plan_item *it);

/* How much of its input Hessian such an item reads (calibrate.h hessian_block): 0, all of it
 * (algorithm gptq, or a format whose weighted search is not blocked); else the size of the
 * diagonal blocks its weighted scale search reads: 1 for imatrix (the diagonal), for hessian the
 * format's block (NVFP4 16, FP8 128) or INT4 group. 0 for an item that needs no Hessian. */
int g4q_plan_item_hessian_block(const g4q_plan_item *it);

/* The number of the item's outputs before its first calibrated one (g4q_layout_role_calibrated):
 * the outputs the weight quantizer or the copy produces. */
int g4q_plan_item_weight_outputs(const g4q_plan_item *it);

/* Prints the plan: one line per tensor (decision and resulting bytes) and the totals. */
void g4q_plan_print(const g4q_plan *p, FILE *f);

/* The plan as JSON (for --json reports); caller frees with cJSON_Delete. */
struct cJSON *g4q_plan_to_cjson(const g4q_plan *p);

#ifdef __cplusplus
}
#endif
#endif
