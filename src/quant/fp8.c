/* FP8 E4M3 CPU reference quantizers: per tensor (§3) and 128 x 128 blocks (§4, §2.5). */
#include "quant/quant.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "quant/blockq.h"

float g4q_fp8_scale(float amax)
{
    return g4q_fp8_scale_of(amax);
}

static g4q_status check_shape(g4q_ctx *ctx, const char *name, const void *w, int64_t rows,
                              int64_t cols, const void *q, const void *scale)
{
    if (rows <= 0 || cols <= 0)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': bad shape [%lld, %lld]",
                        name ? name : "?", (long long)rows, (long long)cols);
    if (!w || !q || !scale)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': NULL buffer", name ? name : "?");
    return G4Q_OK;
}

g4q_status g4q_fp8_quantize_tensor(g4q_ctx *ctx, const char *name, const uint16_t *w,
                                   int64_t rows, int64_t cols, float amax, g4q_fp8_rounding mode,
                                   uint8_t *q, float *scale)
{
    G4Q_TRY(check_shape(ctx, name, w, rows, cols, q, scale));
    if (!(amax >= 0.0f) || isinf(amax))
        return g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': amax %g is not finite",
                        name ? name : "?", (double)amax);
    float tamax;
    G4Q_TRY(g4q_quant_amax_bf16(ctx, name, w, (size_t)rows * (size_t)cols, &tamax));
    float s = g4q_fp8_scale_of(amax);
    float sb = g4q_round_bf16(s);
    int64_t n = rows * cols;
    int nt = ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++) {
        float x = g4q_bf16_to_f32(w[i]);
        float y;
        if (mode == G4Q_FP8_ROUND_MO_GPU)
            y = g4q_round_bf16(x / sb);
        else if (mode == G4Q_FP8_ROUND_MO_CPU)
            y = g4q_round_bf16(x / s);
        else
            y = x / s;
        q[i] = g4q_e4m3_encode_sat(y);
    }
    *scale = s;
    return G4Q_OK;
}

void g4q_fp8_dequantize_tensor(const uint8_t *q, float scale, int64_t rows, int64_t cols,
                               float *out)
{
    int64_t n = rows * cols;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        out[i] = g4q_e4m3_decode(q[i]) * scale;
}

size_t g4q_fp8_block_count(int64_t rows, int64_t cols)
{
    return (size_t)((rows + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK) *
           (size_t)((cols + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK);
}

/* Scale of one block [r0, r0+nr) x [c0, c0+nc) by the §2.5 multiplier search; the loss of a
 * candidate is the rows' g4q_fp8_row_loss_k (kind MSE, IMATRIX or HESSIAN, with the tile's
 * weights H, ldh) added in row order. */
static float block_search_scale(const uint16_t *w, int64_t cols, int64_t r0, int64_t c0, int nr,
                                int nc, float bamax, int kind, const float *H, int64_t ldh)
{
    float best_s = 1.0f;
    double best = INFINITY;
    for (int k = 0; k < G4Q_MSE_MULT_N; k++) {
        float s = g4q_fp8_scale_of(bamax * g4q_mse_multiplier(k));
        double loss = 0.0;
        /* rows stop early only while every partial sum is non-negative (not for hessian) */
        for (int r = 0; r < nr && (kind == G4Q_SCALE_HESSIAN || loss < best); r++)
            loss += g4q_fp8_row_loss_k(kind, w + (r0 + r) * cols + c0, nc, s, H, ldh, best);
        if (loss < best) {
            best = loss;
            best_s = s;
        }
    }
    return best_s;
}

g4q_status g4q_fp8_quantize_blocks(g4q_ctx *ctx, const char *name, const uint16_t *w,
                                   int64_t rows, int64_t cols, g4q_scale_method method,
                                   uint8_t *q, float *scales)
{
    return g4q_fp8_quantize_blocks_h(ctx, name, w, rows, cols, method, NULL, q, scales);
}

g4q_status g4q_fp8_quantize_blocks_h(g4q_ctx *ctx, const char *name, const uint16_t *w,
                                     int64_t rows, int64_t cols, g4q_scale_method method,
                                     const g4q_hess *H, uint8_t *q, float *scales)
{
    G4Q_TRY(check_shape(ctx, name, w, rows, cols, q, scales));
    if (method != G4Q_SCALE_MAX && method != G4Q_SCALE_MSE && !g4q_scale_method_weighted(method))
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "tensor '%s': FP8 blocks support max, mse, imatrix and hessian, not %s",
                        name ? name : "?", g4q_scale_method_name(method));
    float tamax;
    G4Q_TRY(g4q_quant_amax_bf16(ctx, name, w, (size_t)rows * (size_t)cols, &tamax));
    float *hw;
    G4Q_TRY(g4q_hess_prepare(ctx, name, method, H, cols, G4Q_FP8_BLOCK, &hw));
    const int hess = method == G4Q_SCALE_HESSIAN;
    int64_t nbr = (rows + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK;
    int64_t nbc = (cols + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK;
    int nt = ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t b = 0; b < nbr * nbc; b++) {
        int64_t r0 = (b / nbc) * G4Q_FP8_BLOCK, c0 = (b % nbc) * G4Q_FP8_BLOCK;
        int nr = (int)(rows - r0 < G4Q_FP8_BLOCK ? rows - r0 : G4Q_FP8_BLOCK);
        int nc = (int)(cols - c0 < G4Q_FP8_BLOCK ? cols - c0 : G4Q_FP8_BLOCK);
        float bamax = 0.0f;
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < nc; c++)
                bamax = fmaxf(bamax, fabsf(g4q_bf16_to_f32(w[(r0 + r) * cols + c0 + c])));
        float s = g4q_fp8_scale_of(bamax);
        if (method != G4Q_SCALE_MAX && bamax > 0.0f) {
            /* compact weights: the diagonal (ldh 0) or the tile's 128 x 128 block (ldh 128) */
            const float *hb = !hw ? NULL : hess ? hw + (b % nbc) * G4Q_FP8_BLOCK * G4Q_FP8_BLOCK
                                                : hw + c0;
            int64_t ldh = hess ? G4Q_FP8_BLOCK : 0;
            int kind = hw && g4q_hess_live(hb, ldh, nc) ? (int)method : (int)G4Q_SCALE_MSE;
            s = block_search_scale(w, cols, r0, c0, nr, nc, bamax, kind, hb, ldh);
        }
        scales[b] = s;
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < nc; c++) {
                int64_t i = (r0 + r) * cols + c0 + c;
                q[i] = g4q_e4m3_encode_sat(g4q_bf16_to_f32(w[i]) / s);
            }
    }
    free(hw);
    return G4Q_OK;
}

void g4q_fp8_dequantize_blocks(const uint8_t *q, const float *scales, int64_t rows, int64_t cols,
                               float *out)
{
    int64_t nbc = (cols + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] = g4q_e4m3_decode(q[r * cols + c]) *
                                scales[(r / G4Q_FP8_BLOCK) * nbc + c / G4Q_FP8_BLOCK];
}
