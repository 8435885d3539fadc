/* NVFP4 CPU reference quantizers, ModelOpt (§2) and compressed-tensors (§6) conventions. */
#include "quant/quant.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "quant/blockq.h"

float g4q_nvfp4_wsf2(float amax)
{
    return amax == 0.0f ? 1.0f : amax * g4q_r2688();
}

float g4q_nvfp4_wsf2_46(float amax)
{
    return amax == 0.0f ? 1.0f : amax * g4q_r1536();
}

float g4q_nvfp4_ct_global_scale(float amax)
{
    return amax == 0.0f ? 1.0f : 2688.0f / amax;
}

/* Shape, pointer and global-amax checks shared by both conventions. */
static g4q_status check_args(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                             int64_t cols, float global_amax, const void *packed,
                             const void *scales)
{
    const char *nm = name ? name : "?";
    if (rows <= 0 || cols <= 0 || cols % G4Q_NVFP4_BLOCK != 0)
        return g4q_fail(ctx, G4Q_ERR_SHAPE,
                        "tensor '%s': shape [%lld, %lld]: NVFP4 needs in %% 16 == 0", nm,
                        (long long)rows, (long long)cols);
    if (!w || !packed || !scales)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': NULL buffer", nm);
    if (!(global_amax >= 0.0f) || isinf(global_amax))
        return g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': global amax %g is not finite", nm,
                        (double)global_amax);
    float amax;
    G4Q_TRY(g4q_quant_amax_bf16(ctx, nm, w, (size_t)rows * (size_t)cols, &amax));
    if (amax > global_amax)
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "tensor '%s': amax %.9g exceeds the fused group's global amax %.9g", nm,
                        (double)amax, (double)global_amax);
    return G4Q_OK;
}

g4q_status g4q_nvfp4_quantize(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                              int64_t cols, float global_amax, g4q_scale_method method,
                              uint8_t *packed, uint8_t *scales, float *wsf2)
{
    return g4q_nvfp4_quantize_h(ctx, name, w, rows, cols, global_amax, method, NULL, packed,
                                scales, wsf2);
}

g4q_status g4q_nvfp4_quantize_h(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                                int64_t cols, float global_amax, g4q_scale_method method,
                                const g4q_hess *H, uint8_t *packed, uint8_t *scales, float *wsf2)
{
    G4Q_TRY(check_args(ctx, name, w, rows, cols, global_amax, packed, scales));
    if (method != G4Q_SCALE_MAX && method != G4Q_SCALE_MSE &&
        method != G4Q_SCALE_FOUR_OVER_SIX && !g4q_scale_method_weighted(method))
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': unknown NVFP4 scale method %d",
                        name ? name : "?", (int)method);
    float *hw;
    G4Q_TRY(g4q_hess_prepare(ctx, name, method, H, cols, G4Q_NVFP4_BLOCK, &hw));
    const int hess = method == G4Q_SCALE_HESSIAN;
    float ws = method == G4Q_SCALE_FOUR_OVER_SIX ? g4q_nvfp4_wsf2_46(global_amax)
                                                 : g4q_nvfp4_wsf2(global_amax);
    float cand[G4Q_NVFP4_SWEEP_N];
    for (int c = 1; c <= G4Q_NVFP4_SWEEP_N; c++)
        cand[c - 1] = g4q_nvfp4_sweep_scale((uint8_t)c, global_amax);
    int64_t nbc = cols / G4Q_NVFP4_BLOCK, nblocks = rows * nbc;
    int nt = ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t b = 0; b < nblocks; b++) {
        float x[G4Q_NVFP4_BLOCK];
        const uint16_t *src = w + b * G4Q_NVFP4_BLOCK;
        for (int i = 0; i < G4Q_NVFP4_BLOCK; i++)
            x[i] = g4q_bf16_to_f32(src[i]);
        uint8_t *dst = packed + b * (G4Q_NVFP4_BLOCK / 2);
        /* compact weights: the diagonal (ldh 0) or the block's 16 x 16 (ldh 16) */
        const int64_t bc = b % nbc;
        const float *hb = !hw   ? NULL
                          : hess ? hw + bc * G4Q_NVFP4_BLOCK * G4Q_NVFP4_BLOCK
                                 : hw + bc * G4Q_NVFP4_BLOCK;
        scales[b] = g4q_nvfp4_block_choose(x, (int)method, cand, ws, hb, dst);
    }
    free(hw);
    *wsf2 = ws;
    return G4Q_OK;
}

void g4q_nvfp4_dequantize(const uint8_t *packed, const uint8_t *scales, float wsf2, int64_t rows,
                          int64_t cols, float *out)
{
    int64_t n = rows * cols;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint8_t nib = (uint8_t)(packed[i / 2] >> ((i & 1) * 4));
        float s = g4q_e4m3_decode(scales[i / G4Q_NVFP4_BLOCK]);
        out[i] = g4q_e2m1_decode(nib & 15u) * s * wsf2;
    }
}

g4q_status g4q_nvfp4_quantize_ct(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                                 int64_t cols, float global_amax, uint8_t *packed, uint8_t *scales,
                                 float *global_scale)
{
    G4Q_TRY(check_args(ctx, name, w, rows, cols, global_amax, packed, scales));
    float gs = g4q_nvfp4_ct_global_scale(global_amax);
    if (isinf(gs))
        return g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': global amax %g gives an infinite "
                        "weight_global_scale", name ? name : "?", (double)global_amax);
    int64_t nblocks = rows * (cols / G4Q_NVFP4_BLOCK);
    int nt = ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t b = 0; b < nblocks; b++) {
        float x[G4Q_NVFP4_BLOCK];
        const uint16_t *src = w + b * G4Q_NVFP4_BLOCK;
        for (int i = 0; i < G4Q_NVFP4_BLOCK; i++)
            x[i] = g4q_bf16_to_f32(src[i]);
        scales[b] = g4q_nvfp4_block_ct(x, gs, packed + b * (G4Q_NVFP4_BLOCK / 2));
    }
    *global_scale = gs;
    return G4Q_OK;
}

void g4q_nvfp4_ct_dequantize(const uint8_t *packed, const uint8_t *scales, float global_scale,
                             int64_t rows, int64_t cols, float *out)
{
    int64_t n = rows * cols;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint8_t nib = (uint8_t)(packed[i / 2] >> ((i & 1) * 4));
        float s = g4q_e4m3_decode(scales[i / G4Q_NVFP4_BLOCK]);
        out[i] = g4q_e2m1_decode(nib & 15u) * s / global_scale;
    }
}
