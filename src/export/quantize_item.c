/* Quantizes one planned tensor into its output buffers with the CPU reference quantizers. */
#include "export/quantize_item.h"

#include <stdlib.h>
#include <string.h>

#include "quant/gptq.h"
#include "quant/quant.h"

static g4q_status quant_int4(g4q_ctx *ctx, const g4q_plan_item *it, const uint16_t *w,
                             int64_t rows, int64_t cols, g4q_scale_method m, const double *H,
                             void **bufs)
{
    const int group = 128;
    int64_t groups = g4q_int4_group_count(cols, group);
    int8_t *q = malloc((size_t)(rows * cols));
    float *scales = malloc((size_t)(rows * groups) * sizeof *scales);
    g4q_status st = (q && scales) ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory",
                                                      it->src->name);
    g4q_dtype sdt = it->format == G4Q_PF_INT4_GPTQ ? G4Q_DT_F16 : G4Q_DT_BF16;
    if (st == G4Q_OK)
        st = H ? g4q_gptq_int4(ctx, it->src->name, w, rows, cols, group, m, sdt, H, NULL, q,
                               scales)
               : g4q_int4_quantize(ctx, it->src->name, w, rows, cols, group, m, sdt, q, scales);
    if (st == G4Q_OK)
        st = g4q_quantize_item_pack_int4(ctx, it, q, scales, bufs);
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

g4q_status g4q_quantize_item_cpu(g4q_ctx *ctx, const g4q_plan_item *it, float group_amax,
                                 const double *H, void **bufs)
{
    const g4q_tensor *t = it->src;
    if (t->dtype != G4Q_DT_BF16 || t->ndim != 2)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': quantization needs a 2-D BF16 weight",
                        t->name);
    const uint16_t *w = t->data;
    int64_t rows = t->shape[0], cols = t->shape[1];
    g4q_scale_method m = it->decision.search == G4Q_RECIPE_SEARCH_MSE ? G4Q_SCALE_MSE
                         : it->decision.search == G4Q_RECIPE_SEARCH_FOUR_OVER_SIX
                             ? G4Q_SCALE_FOUR_OVER_SIX
                             : G4Q_SCALE_MAX;
    float amax = group_amax;
    if (it->group < 0 && (it->format == G4Q_PF_NVFP4_MO || it->format == G4Q_PF_NVFP4_CT ||
                          it->format == G4Q_PF_FP8_TENSOR))
        G4Q_TRY(g4q_quant_amax_bf16(ctx, t->name, w, t->numel, &amax));
    switch (it->format) {
    case G4Q_PF_NVFP4_MO:
        if (H)
            return g4q_gptq_nvfp4(ctx, t->name, w, rows, cols, amax, m, H, NULL, bufs[0],
                                  bufs[1], (float *)bufs[2]);
        return g4q_nvfp4_quantize(ctx, t->name, w, rows, cols, amax, m, bufs[0], bufs[1],
                                  (float *)bufs[2]);
    case G4Q_PF_NVFP4_CT:
        if (m != G4Q_SCALE_MAX)
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "tensor '%s': compressed-tensors NVFP4 is written with scale_search "
                            "max only (use export modelopt for %s)",
                            t->name, g4q_scale_method_name(m));
        if (H)
            return g4q_gptq_nvfp4_ct(ctx, t->name, w, rows, cols, amax, H, NULL, bufs[0],
                                     bufs[1], (float *)bufs[2]);
        return g4q_nvfp4_quantize_ct(ctx, t->name, w, rows, cols, amax, bufs[0], bufs[1],
                                     (float *)bufs[2]);
    case G4Q_PF_FP8_TENSOR:
        if (m != G4Q_SCALE_MAX)
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "tensor '%s': FP8 per-tensor supports scale_search max only", t->name);
        return g4q_fp8_quantize_tensor(ctx, t->name, w, rows, cols, amax, G4Q_FP8_ROUND_EXACT,
                                       bufs[0], (float *)bufs[1]);
    case G4Q_PF_FP8_BLOCK:
        if (H)
            return g4q_gptq_fp8_blocks(ctx, t->name, w, rows, cols, m, H, NULL, bufs[0],
                                       bufs[1]);
        return g4q_fp8_quantize_blocks(ctx, t->name, w, rows, cols, m, bufs[0], bufs[1]);
    case G4Q_PF_INT4_GPTQ:
    case G4Q_PF_INT4_CT:
        return quant_int4(ctx, it, w, rows, cols, m, H, bufs);
    default:
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': nothing to quantize", t->name);
    }
}
