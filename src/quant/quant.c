/* Shared helpers of the CPU quantizers: tensor amax, method names, the input Hessian as it is
 * held (every entry or diagonal blocks: g4q_hess) and the weights of the Hessian-weighted
 * searches read from it. */
#include "quant/quant.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

const char *g4q_scale_method_name(g4q_scale_method m)
{
    switch (m) {
    case G4Q_SCALE_MAX:
        return "max";
    case G4Q_SCALE_MSE:
        return "mse";
    case G4Q_SCALE_FOUR_OVER_SIX:
        return "four_over_six";
    case G4Q_SCALE_IMATRIX:
        return "imatrix";
    case G4Q_SCALE_HESSIAN:
        return "hessian";
    }
    return "unknown";
}

int g4q_scale_method_weighted(g4q_scale_method m)
{
    return m == G4Q_SCALE_IMATRIX || m == G4Q_SCALE_HESSIAN;
}

size_t g4q_hess_weights_count(g4q_scale_method m, int64_t cols, int bs)
{
    if (cols <= 0 || bs <= 0)
        return 0;
    if (m == G4Q_SCALE_IMATRIX)
        return (size_t)cols;
    if (m == G4Q_SCALE_HESSIAN)
        return (size_t)((cols + bs - 1) / bs) * (size_t)bs * (size_t)bs;
    return 0;
}

size_t g4q_hess_count(int64_t n, int block)
{
    if (n <= 0) return 0;
    block = g4q_hess_block(n, block);
    return block ? (size_t)((n + block - 1) / block) * (size_t)block * (size_t)block
                 : (size_t)n * (size_t)n;
}

int g4q_hess_block(int64_t n, int block)
{
    return block <= 0 || block >= n ? 0 : block;
}

int g4q_hess_readable(g4q_scale_method m, const g4q_hess *H, int bs)
{
    const int b = g4q_hess_block(H->n, H->block);
    return b == 0 || m == G4Q_SCALE_IMATRIX || (bs > 0 && b % bs == 0);
}

void g4q_hess_extract(g4q_scale_method m, const g4q_hess *H, int bs, float *hw)
{
    const int64_t cols = H->n, hb = g4q_hess_block(cols, H->block);
    if (m == G4Q_SCALE_IMATRIX) {
        for (int64_t c = 0; c < cols; c++)
            hw[c] = H->h[g4q_hess_offset(cols, hb, c, c)];
        return;
    }
    if (m != G4Q_SCALE_HESSIAN)
        return;
    int64_t nb = (cols + bs - 1) / bs, b2 = (int64_t)bs * bs;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < nb; k++)
        for (int64_t i = 0; i < bs; i++)
            for (int64_t j = 0; j < bs; j++) {
                int64_t ci = k * bs + i, cj = k * bs + j;
                hw[k * b2 + i * bs + j] =
                    ci < cols && cj < cols ? H->h[g4q_hess_offset(cols, hb, ci, cj)] : 0.0f;
            }
}

/* Raw diagonal entry c of the compact array. */
static float compact_diag(const float *hw, int hess, int64_t c, int bs)
{
    return hess ? hw[(c / bs) * bs * bs + (c % bs) * (bs + 1)] : hw[c];
}

g4q_status g4q_hess_normalize(g4q_ctx *ctx, const char *name, g4q_scale_method m, int64_t cols,
                              int bs, float *hw)
{
    const char *nm = name ? name : "?";
    if (!g4q_scale_method_weighted(m))
        return G4Q_OK;
    int hess = m == G4Q_SCALE_HESSIAN;
    float *diag = malloc((size_t)cols * sizeof *diag);
    if (!diag)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "tensor '%s': out of memory for the weights of H",
                        nm);
    double sum = 0.0;
    for (int64_t c = 0; c < cols; c++) {
        float d = compact_diag(hw, hess, c, bs);
        if (!isfinite(d) || d < 0.0f) {
            free(diag);
            return g4q_fail(ctx, G4Q_ERR_NUMERIC,
                            "tensor '%s': input Hessian H[%lld, %lld] = %g; the diagonal must be "
                            "finite and >= 0",
                            nm, (long long)c, (long long)c, (double)d);
        }
        diag[c] = d;
        sum += d;
    }
    double mu = sum / (double)cols;
    g4q_status st = G4Q_OK;
    if (!hess) {
        for (int64_t c = 0; c < cols; c++)
            hw[c] = diag[c] == 0.0f ? 0.0f : (float)((double)diag[c] / mu);
    } else {
        int64_t nb = (cols + bs - 1) / bs, b2 = (int64_t)bs * bs;
        for (int64_t k = 0; k < nb && st == G4Q_OK; k++)
            for (int64_t i = 0; i < bs && st == G4Q_OK; i++)
                for (int64_t j = 0; j < bs; j++) {
                    int64_t ci = k * bs + i, cj = k * bs + j;
                    float *h = &hw[k * b2 + i * bs + j];
                    if (ci >= cols || cj >= cols || diag[ci] == 0.0f || diag[cj] == 0.0f) {
                        *h = 0.0f;
                        continue;
                    }
                    float v = (float)((double)*h / mu);
                    if (!isfinite(v)) {
                        st = g4q_fail(ctx, G4Q_ERR_NUMERIC,
                                      "tensor '%s': input Hessian H[%lld, %lld] = %g is not "
                                      "finite or out of range against mean(diag H) = %g",
                                      nm, (long long)ci, (long long)cj, (double)*h, mu);
                        break;
                    }
                    *h = v;
                }
    }
    free(diag);
    return st;
}

g4q_status g4q_hess_check(g4q_ctx *ctx, const char *name, g4q_scale_method m, const g4q_hess *H,
                          int64_t cols, int bs)
{
    const char *nm = name ? name : "?";
    if (!g4q_scale_method_weighted(m)) return G4Q_OK;
    if (!H || !H->h)
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "tensor '%s': scale method %s needs the input Hessian H (got NULL)", nm,
                        g4q_scale_method_name(m));
    if (H->n != cols)
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "tensor '%s': the input Hessian has %lld inputs, the tensor %lld", nm,
                        (long long)H->n, (long long)cols);
    if (!g4q_hess_readable(m, H, bs))
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "tensor '%s': the input Hessian holds diagonal blocks of %d, which do not "
                        "contain the %s search's blocks of %d",
                        nm, H->block, g4q_scale_method_name(m), bs);
    return G4Q_OK;
}

g4q_status g4q_hess_prepare(g4q_ctx *ctx, const char *name, g4q_scale_method m, const g4q_hess *H,
                            int64_t cols, int bs, float **hw)
{
    *hw = NULL;
    if (!g4q_scale_method_weighted(m))
        return G4Q_OK;
    G4Q_TRY(g4q_hess_check(ctx, name, m, H, cols, bs));
    size_t n = g4q_hess_weights_count(m, cols, bs);
    float *a = malloc(n * sizeof *a);
    if (!a)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "tensor '%s': out of memory for the weights of H",
                        name ? name : "?");
    g4q_hess_extract(m, H, bs, a);
    g4q_status st = g4q_hess_normalize(ctx, name, m, cols, bs, a);
    if (st != G4Q_OK) {
        free(a);
        return st;
    }
    *hw = a;
    return G4Q_OK;
}

/* For finite bf16 values |x| orders like the integer (x & 0x7fff), so the amax is an exact integer
 * max and independent of the thread count; 0x7f80 and above are inf/NaN. */
g4q_status g4q_quant_amax_bf16(g4q_ctx *ctx, const char *name, const uint16_t *w, size_t n,
                               float *amax)
{
    unsigned m = 0;
    int nt = ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) reduction(max : m) num_threads(nt)
    for (size_t i = 0; i < n; i++) {
        unsigned a = w[i] & 0x7fffu;
        m = a > m ? a : m;
    }
    if (m >= 0x7f80u) {
        size_t i = 0;
        while (i < n && (w[i] & 0x7fffu) < 0x7f80u)
            i++;
        return g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': element %zu is %s (bf16 0x%04x)",
                        name ? name : "?", i, (w[i] & 0x7fffu) == 0x7f80u ? "infinite" : "NaN",
                        (unsigned)w[i]);
    }
    uint32_t bits = (uint32_t)m << 16;
    float f;
    memcpy(&f, &bits, 4);
    *amax = f;
    return G4Q_OK;
}
