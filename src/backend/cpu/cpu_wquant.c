/* The weight quantizer on the CPU: the reference quantizers of quant/quant.h and quant/gptq.h
 * behind the job of backend/wquant.h; also the INT4 packing and the dequantization that the CUDA
 * implementation shares. */
#include "backend/wquant.h"

#include <stdlib.h>
#include <string.h>

/* The output buffer of the tensor with this role. */
static void *out_of(const g4q_wquant_job *job, g4q_layout_role role)
{
    int k = g4q_layout_index(g4q_layout_get(job->format), role);
    return k >= 0 ? job->out[k] : NULL;
}

/* The layout's INT4 group and scale dtype. */
static int int4_group(const g4q_wquant_job *job)
{
    return g4q_layout_get(job->format)->group;
}

static g4q_dtype int4_scale_dtype(const g4q_wquant_job *job)
{
    const g4q_layout *l = g4q_layout_get(job->format);
    return l->t[g4q_layout_index(l, G4Q_LROLE_SCALES)].dtype;
}

g4q_status g4q_wquant_pack_int4(g4q_ctx *ctx, const g4q_wquant_job *job, const int8_t *q,
                                const float *scales)
{
    const int group = int4_group(job);
    if (job->format == G4Q_LAYOUT_INT4_GPTQ)
        return g4q_int4_pack_gptq(ctx, job->name, q, scales, job->rows, job->cols, group,
                                  out_of(job, G4Q_LROLE_CODES), out_of(job, G4Q_LROLE_QZEROS),
                                  out_of(job, G4Q_LROLE_SCALES), out_of(job, G4Q_LROLE_G_IDX));
    G4Q_TRY(g4q_int4_pack_ct(ctx, job->name, q, scales, job->rows, job->cols, group,
                             int4_scale_dtype(job), out_of(job, G4Q_LROLE_CODES),
                             out_of(job, G4Q_LROLE_SCALES)));
    const int64_t shape[2] = {job->rows, job->cols}; /* weight_shape, I64 [2] (layout.c) */
    memcpy(out_of(job, G4Q_LROLE_SHAPE), shape, sizeof shape);
    return G4Q_OK;
}

void g4q_wquant_dequant(const g4q_wquant_job *job, const int8_t *q, const float *scales)
{
    const int64_t rows = job->rows, cols = job->cols;
    const void *codes = out_of(job, G4Q_LROLE_CODES), *bs = out_of(job, G4Q_LROLE_SCALES);
    const void *global = out_of(job, G4Q_LROLE_GLOBAL);
    float g = 0.0f;
    if (global) memcpy(&g, global, sizeof g);
    switch (job->format) {
    case G4Q_LAYOUT_NVFP4_MO:
        g4q_nvfp4_dequantize(codes, bs, g, rows, cols, job->deq);
        break;
    case G4Q_LAYOUT_NVFP4_CT:
        g4q_nvfp4_ct_dequantize(codes, bs, g, rows, cols, job->deq);
        break;
    case G4Q_LAYOUT_FP8_TENSOR:
        g4q_fp8_dequantize_tensor(codes, g, rows, cols, job->deq);
        break;
    case G4Q_LAYOUT_FP8_BLOCK:
        g4q_fp8_dequantize_blocks(codes, bs, rows, cols, job->deq);
        break;
    case G4Q_LAYOUT_INT4_GPTQ:
    case G4Q_LAYOUT_INT4_CT:
        g4q_int4_dequantize(q, scales, rows, cols, int4_group(job), job->deq);
        break;
    default:
        break;
    }
}

static g4q_status int4(g4q_ctx *ctx, const g4q_wquant_job *job)
{
    const int group = int4_group(job);
    const g4q_dtype sdt = int4_scale_dtype(job);
    const int64_t groups = g4q_int4_group_count(job->cols, group);
    int8_t *q = malloc((size_t)(job->rows * job->cols));
    float *scales = malloc((size_t)(job->rows * groups) * sizeof *scales);
    g4q_status st =
        (q && scales) ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", job->name);
    if (st == G4Q_OK)
        st = job->gptq
                 ? g4q_gptq_int4(ctx, job->name, job->w, job->rows, job->cols, group, job->method,
                                 sdt, g4q_hess_full(job->H), job->gptq_opts, q, scales)
                 : g4q_int4_quantize_h(ctx, job->name, job->w, job->rows, job->cols, group,
                                       job->method, sdt, job->H, q, scales);
    if (st == G4Q_OK) st = g4q_wquant_pack_int4(ctx, job, q, scales);
    if (st == G4Q_OK && job->deq) g4q_wquant_dequant(job, q, scales);
    free(q);
    free(scales);
    return st;
}

/* The formats other than INT4: one quantizer call each, writing the outputs in place. */
static g4q_status direct(g4q_ctx *ctx, const g4q_wquant_job *job, float amax)
{
    const char *name = job->name;
    const uint16_t *w = job->w;
    const int64_t rows = job->rows, cols = job->cols;
    const g4q_scale_method m = job->method;
    void *codes = out_of(job, G4Q_LROLE_CODES), *scales = out_of(job, G4Q_LROLE_SCALES);
    float *global = out_of(job, G4Q_LROLE_GLOBAL);
    switch (job->format) {
    case G4Q_LAYOUT_NVFP4_MO:
        return job->gptq ? g4q_gptq_nvfp4(ctx, name, w, rows, cols, amax, m, g4q_hess_full(job->H),
                                          job->gptq_opts, codes, scales, global)
                         : g4q_nvfp4_quantize_h(ctx, name, w, rows, cols, amax, m, job->H, codes,
                                                scales, global);
    case G4Q_LAYOUT_NVFP4_CT:
        if (m != G4Q_SCALE_MAX)
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "tensor '%s': compressed-tensors NVFP4 is written with scale_search "
                            "max only (use export modelopt for %s)",
                            name, g4q_scale_method_name(m));
        return job->gptq
                   ? g4q_gptq_nvfp4_ct(ctx, name, w, rows, cols, amax, g4q_hess_full(job->H),
                                       job->gptq_opts, codes, scales, global)
                   : g4q_nvfp4_quantize_ct(ctx, name, w, rows, cols, amax, codes, scales, global);
    case G4Q_LAYOUT_FP8_TENSOR:
        if (m != G4Q_SCALE_MAX)
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "tensor '%s': FP8 per-tensor supports scale_search max only", name);
        return g4q_fp8_quantize_tensor(ctx, name, w, rows, cols, amax, G4Q_FP8_ROUND_EXACT, codes,
                                       global);
    case G4Q_LAYOUT_FP8_BLOCK:
        return job->gptq
                   ? g4q_gptq_fp8_blocks(ctx, name, w, rows, cols, m, g4q_hess_full(job->H),
                                         job->gptq_opts, codes, scales)
                   : g4q_fp8_quantize_blocks_h(ctx, name, w, rows, cols, m, job->H, codes, scales);
    default:
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': nothing to quantize", name);
    }
}

g4q_status g4q_wquant_cpu(g4q_ctx *ctx, const g4q_wquant_job *job)
{
    G4Q_TRY(g4q_wquant_check(ctx, job));
    if (job->format == G4Q_LAYOUT_INT4_GPTQ || job->format == G4Q_LAYOUT_INT4_CT)
        return int4(ctx, job);
    float amax = job->group_amax;
    if (!job->fused && out_of(job, G4Q_LROLE_GLOBAL))
        G4Q_TRY(g4q_quant_amax_bf16(ctx, job->name, job->w, (size_t)job->rows * (size_t)job->cols,
                                    &amax));
    G4Q_TRY(direct(ctx, job, amax));
    if (job->deq) g4q_wquant_dequant(job, NULL, NULL);
    return G4Q_OK;
}
