/* Quantizes one planned tensor into its output buffers with the CPU reference quantizers. */
#include "export/quantize_item.h"

#include <stdlib.h>
#include <string.h>

#include "quant/gptq.h"
#include "quant/quant.h"

static g4q_status quant_int4(g4q_ctx *ctx, const g4q_plan_item *it, const uint16_t *w,
                             int64_t rows, int64_t cols, g4q_scale_method m, const float *H,
                             void **bufs, float *deq)
{
    const int group = 128;
    int64_t groups = g4q_int4_group_count(cols, group);
    int8_t *q = malloc((size_t)(rows * cols));
    float *scales = malloc((size_t)(rows * groups) * sizeof *scales);
    g4q_status st = (q && scales) ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory",
                                                      it->src->name);
    g4q_dtype sdt = it->format == G4Q_PF_INT4_GPTQ ? G4Q_DT_F16 : G4Q_DT_BF16;
    if (st == G4Q_OK)
        st = it->decision.algo == G4Q_RECIPE_ALGO_GPTQ
                 ? g4q_gptq_int4(ctx, it->src->name, w, rows, cols, group, m, sdt, H, NULL, q,
                                 scales)
                 : g4q_int4_quantize_h(ctx, it->src->name, w, rows, cols, group, m, sdt, H, q,
                                       scales);
    if (st == G4Q_OK)
        st = g4q_quantize_item_pack_int4(ctx, it, q, scales, bufs);
    if (st == G4Q_OK && deq) g4q_quantize_item_dequant(it, bufs, q, scales, deq);
    free(q);
    free(scales);
    return st;
}

g4q_status g4q_quantize_item_pack_int4(g4q_ctx *ctx, const g4q_plan_item *it, const int8_t *q,
                                       const float *scales, void **bufs)
{
    int64_t rows = it->src->shape[0], cols = it->src->shape[1];
    if (it->format == G4Q_PF_INT4_GPTQ)
        return g4q_int4_pack_gptq(ctx, it->src->name, q, scales, rows, cols, 128, bufs[0],
                                  bufs[1], bufs[2], bufs[3]);
    G4Q_TRY(g4q_int4_pack_ct(ctx, it->src->name, q, scales, rows, cols, 128, G4Q_DT_BF16, bufs[0],
                             bufs[1]));
    const int64_t shape[2] = {rows, cols}; /* weight_shape, I64 [2] (plan.c) */
    memcpy(bufs[2], shape, sizeof shape);
    return G4Q_OK;
}

g4q_scale_method g4q_plan_item_method(const g4q_plan_item *it)
{
    switch (it->decision.search) {
    case G4Q_RECIPE_SEARCH_MSE: return G4Q_SCALE_MSE;
    case G4Q_RECIPE_SEARCH_FOUR_OVER_SIX: return G4Q_SCALE_FOUR_OVER_SIX;
    case G4Q_RECIPE_SEARCH_IMATRIX: return G4Q_SCALE_IMATRIX;
    case G4Q_RECIPE_SEARCH_HESSIAN: return G4Q_SCALE_HESSIAN;
    default: return G4Q_SCALE_MAX;
    }
}

void g4q_quantize_item_dequant(const g4q_plan_item *it, void *const *bufs, const int8_t *q,
                               const float *scales, float *deq)
{
    const int64_t rows = it->src->shape[0], cols = it->src->shape[1];
    float g;
    switch (it->format) {
    case G4Q_PF_NVFP4_MO:
        memcpy(&g, bufs[2], sizeof g);
        g4q_nvfp4_dequantize(bufs[0], bufs[1], g, rows, cols, deq);
        break;
    case G4Q_PF_NVFP4_CT:
        memcpy(&g, bufs[2], sizeof g);
        g4q_nvfp4_ct_dequantize(bufs[0], bufs[1], g, rows, cols, deq);
        break;
    case G4Q_PF_FP8_TENSOR:
        memcpy(&g, bufs[1], sizeof g);
        g4q_fp8_dequantize_tensor(bufs[0], g, rows, cols, deq);
        break;
    case G4Q_PF_FP8_BLOCK:
        g4q_fp8_dequantize_blocks(bufs[0], bufs[1], rows, cols, deq);
        break;
    case G4Q_PF_INT4_GPTQ:
    case G4Q_PF_INT4_CT:
        g4q_int4_dequantize(q, scales, rows, cols, 128, deq);
        break;
    default:
        break;
    }
}

static g4q_status finish(g4q_status st, const g4q_plan_item *it, void **bufs, float *deq)
{
    if (st == G4Q_OK && deq) g4q_quantize_item_dequant(it, bufs, NULL, NULL, deq);
    return st;
}

g4q_status g4q_quantize_item_cpu(g4q_ctx *ctx, const g4q_plan_item *it, float group_amax,
                                 const float *H, void **bufs, float *deq)
{
    const g4q_tensor *t = it->src;
    if (t->dtype != G4Q_DT_BF16 || t->ndim != 2)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': quantization needs a 2-D BF16 weight",
                        t->name);
    const uint16_t *w = t->data;
    int64_t rows = t->shape[0], cols = t->shape[1];
    const g4q_scale_method m = g4q_plan_item_method(it);
    const int gptq = it->decision.algo == G4Q_RECIPE_ALGO_GPTQ;
    float amax = group_amax;
    if (it->group < 0 && (it->format == G4Q_PF_NVFP4_MO || it->format == G4Q_PF_NVFP4_CT ||
                          it->format == G4Q_PF_FP8_TENSOR))
        G4Q_TRY(g4q_quant_amax_bf16(ctx, t->name, w, t->numel, &amax));
    switch (it->format) {
    case G4Q_PF_NVFP4_MO:
        return finish(gptq ? g4q_gptq_nvfp4(ctx, t->name, w, rows, cols, amax, m, H, NULL,
                                            bufs[0], bufs[1], (float *)bufs[2])
                           : g4q_nvfp4_quantize_h(ctx, t->name, w, rows, cols, amax, m, H, bufs[0],
                                                  bufs[1], (float *)bufs[2]),
                      it, bufs, deq);
    case G4Q_PF_NVFP4_CT:
        if (m != G4Q_SCALE_MAX)
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "tensor '%s': compressed-tensors NVFP4 is written with scale_search "
                            "max only (use export modelopt for %s)",
                            t->name, g4q_scale_method_name(m));
        return finish(gptq ? g4q_gptq_nvfp4_ct(ctx, t->name, w, rows, cols, amax, H, NULL, bufs[0],
                                            bufs[1], (float *)bufs[2])
                        : g4q_nvfp4_quantize_ct(ctx, t->name, w, rows, cols, amax, bufs[0],
                                                bufs[1], (float *)bufs[2]),
                      it, bufs, deq);
    case G4Q_PF_FP8_TENSOR:
        if (m != G4Q_SCALE_MAX)
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "tensor '%s': FP8 per-tensor supports scale_search max only", t->name);
        return finish(g4q_fp8_quantize_tensor(ctx, t->name, w, rows, cols, amax,
                                              G4Q_FP8_ROUND_EXACT, bufs[0], (float *)bufs[1]),
                      it, bufs, deq);
    case G4Q_PF_FP8_BLOCK:
        return finish(gptq ? g4q_gptq_fp8_blocks(ctx, t->name, w, rows, cols, m, H, NULL,
                                                 bufs[0], bufs[1])
                           : g4q_fp8_quantize_blocks_h(ctx, t->name, w, rows, cols, m, H, bufs[0],
                                                       bufs[1]),
                      it, bufs, deq);
    case G4Q_PF_INT4_GPTQ:
    case G4Q_PF_INT4_CT:
        return quant_int4(ctx, it, w, rows, cols, m, H, bufs, deq);
    default:
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': nothing to quantize", t->name);
    }
}
