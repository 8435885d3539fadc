/*
 * Quantized Linear weights of an exported checkpoint: which packed form each Linear is stored in,
 * detected per module from the tensor names present (docs/formats.md §2-§6), validated, and turned
 * into a backend g4q_weight_desc. Everything that is not a quantized Linear (norms, embeddings,
 * BF16 Linears) is bound by g4q_weights_bind_partial with the usual checks.
 *
 * Detection and the tensor checks go through the stored-layout table (quant/layout.h,
 * g4q_layout_find): the codes tensor present and its dtype name the format, then every tensor
 * of the format must be present (optional ones aside) with an accepted dtype and shape for the
 * module's [out, in] (from the config); two codes tensors of one module are an error:
 *   <m>.qweight                       GPTQ v1 (§5.2): qweight I32 [in/8, out], qzeros I32
 *                                     [in/g, out/8] (all 0x77777777: symmetric only), scales F16
 *                                     [in/g, out] (BF16/F32 also accepted), g_idx I32 [in] == i/g.
 *   <m>.weight_packed U8              compressed-tensors NVFP4 (§6): weight_scale F8_E4M3
 *                                     [out, in/16], weight_global_scale F32 [1] (or []),
 *                                     optional input_global_scale F32 [1] (W4A4).
 *   <m>.weight_packed I32             compressed-tensors pack-quantized INT4 (§5.3): weight_scale
 *                                     F16/BF16/F32 [out, in/g] (g = in / columns, a multiple of 8),
 *                                     optional weight_shape I64/I32 [2] == [out, in].
 *                                     weight_zero_point (asymmetric) is refused.
 *   <m>.weight U8                     ModelOpt NVFP4 / W4A16_NVFP4 (§2.1): weight_scale F8_E4M3
 *                                     [out, in/16], weight_scale_2 F32 [] (or [1]), optional
 *                                     input_scale F32 [] (W4A4).
 *   <m>.weight F8_E4M3                ModelOpt FP8: weight_scale F32 [] or [1] is per tensor (§3,
 *                                     optional input_scale: W8A8); [ceil(out/128), 1,
 *                                     ceil(in/128), 1] or [ceil(out/128), ceil(in/128)] is
 *                                     fp8_pb_wo (§4).
 *   otherwise                         BF16 (`<m>.weight` BF16, checked by
 * g4q_weights_bind_partial). The values the runtime relies on are checked here: global, block and
 * activation scales finite and > 0, GPTQ zero points and g_idx, weight_shape. Activation scales
 * (input_scale / input_global_scale) and KV-cache scales (§7: self_attn.k_proj.k_scale,
 * self_attn.v_proj.v_scale; g4q_layout_kv_get) are validated and their values kept; whether they
 * are used is the runtime's choice (src/runtime/session.h, --emulate): the descriptors are made
 * without an activation quantization (desc.act NONE).
 *
 * Errors name the label (checkpoint folder) and the tensor: G4Q_ERR_SHAPE for a wrong dtype or
 * shape, G4Q_ERR_NUMERIC for a non-finite or non-positive global scale, G4Q_ERR_UNSUPPORTED for
 * forms the runtime does not run (asymmetric INT4, act-order g_idx), G4Q_ERR_FORMAT for an
 * incomplete tensor set (e.g. qweight without scales); problems with the other tensors are
 * reported as g4q_weights_bind does.
 */
#ifndef G4Q_MODEL_QLINEAR_H
#define G4Q_MODEL_QLINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"
#include "quant/layout.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A Linear's stored form: the layouts of quant/layout.h (same values). */
typedef enum {
    G4Q_QL_BF16 = G4Q_LAYOUT_BF16,
    G4Q_QL_NVFP4_MO = G4Q_LAYOUT_NVFP4_MO,     /* ModelOpt NVFP4 (W4A4) or W4A16_NVFP4 */
    G4Q_QL_NVFP4_CT = G4Q_LAYOUT_NVFP4_CT,     /* compressed-tensors nvfp4-pack-quantized */
    G4Q_QL_FP8_TENSOR = G4Q_LAYOUT_FP8_TENSOR, /* ModelOpt FP8 per tensor */
    G4Q_QL_FP8_BLOCK = G4Q_LAYOUT_FP8_BLOCK,   /* ModelOpt fp8_pb_wo */
    G4Q_QL_INT4_GPTQ = G4Q_LAYOUT_INT4_GPTQ,   /* GPTQ v1 */
    G4Q_QL_INT4_CT = G4Q_LAYOUT_INT4_CT,       /* compressed-tensors pack-quantized */
    G4Q_QL_COUNT = G4Q_LAYOUT_COUNT
} g4q_qlinear_format;

/* "bf16", "nvfp4 (modelopt)", "nvfp4 (compressed-tensors)", "fp8 per-tensor", "fp8 128x128",
 * "int4 (gptq)", "int4 (compressed-tensors)" (g4q_layout_name). */
const char *g4q_qlinear_format_name(g4q_qlinear_format f);

typedef struct g4q_qlinear {
    g4q_qlinear_format format;
    int has_input_scale;              /* an activation scale is stored */
    float input_scale; /* its value in ModelOpt's convention (amax / (6 · 448) for NVFP4, amax /
                          448 for FP8): ModelOpt input_scale, 1 / compressed-tensors
                          input_global_scale; 0 when absent */
    char module[G4Q_WEIGHT_NAME_MAX]; /* full module name, e.g. "...layers.3.mlp.up_proj" */
    g4q_weight_desc desc; /* format != BF16: ready for weight_bind (name = module); its pointers
                             point into the checkpoint's tensor data */
} g4q_qlinear;

#define G4Q_QL_MAX_MULTIMODAL 3

typedef struct g4q_qlinears {
    int n_layers;
    /* The projections of each layer, indexed by g4q_qlinear_slot(role). */
    g4q_qlinear layers[G4Q_MAX_LAYERS][G4Q_MAX_LAYER_LINEARS];
    /* Multimodal Linears (patch_dense, embedding projections): validated only. */
    g4q_qlinear multimodal[G4Q_QL_MAX_MULTIMODAL];
    int n_multimodal;
    size_t count[G4Q_QL_COUNT]; /* Linear modules per format (layers + multimodal) */
    size_t n_input_scales;      /* quantized Linears with an activation scale */
    size_t n_kv_scales;         /* KV-cache scale tensors present */
    float k_scale[G4Q_MAX_LAYERS], v_scale[G4Q_MAX_LAYERS]; /* their values; 0 where absent */
} g4q_qlinears;

/* 0..6 for the projections q, k, v, o, gate, up, down; -1 for other roles. */
int g4q_qlinear_slot(g4q_weight_role role);

/* Detects and validates the quantized Linears of tensors[0..n) (a checkpoint, any order) as
 * described above and binds every other tensor into *w with g4q_weights_bind_partial (the slots
 * of quantized projections stay NULL). *q (caller-allocated, large: keep it on the heap) is
 * filled; it and *w point into `tensors`, which must outlive them. A BF16 checkpoint gives the
 * same *w as g4q_weights_bind and every q entry G4Q_QL_BF16. */
g4q_status g4q_qlinears_bind(g4q_ctx *ctx, const g4q_config *cfg, const g4q_tensor *tensors,
                             size_t n, const char *label, g4q_weights *w, g4q_qlinears *q);

/* Number of quantized (non-BF16) Linear modules. */
size_t g4q_qlinears_quantized(const g4q_qlinears *q);

#ifdef __cplusplus
}
#endif
#endif
