/* Activation-aware channel scaling: the grid search of smooth.h. */
#include "quant/smooth.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "quant/quant.h"

/* fp32 dot product with eight partial sums (vectorizable; fixed order, so deterministic). */
static float dot(const float *a, const float *b, int64_t n)
{
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += a[i + j] * b[i + j];
    float t = 0.0f;
    for (; i < n; i++)
        t += a[i] * b[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + t;
}

/* y [rows, out] = x [rows, n] · wᵀ ([out, n]), rows split over threads. */
static void matmul_t(const float *x, int64_t rows, int64_t n, const float *w, int64_t out,
                     float *y, int nt)
{
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++)
            y[r * out + o] = dot(x + r * n, w + o * n, n);
}

/* Σ over rows of || N(yref − alpha · x · dᵀ) ||² (smooth.h), per row into rowloss (then summed in
 * row order); cw [out]: each output's weight squared, gw [rows, out / group]: each token's and
 * group's 1 / mean square of yref. */
static double out_loss(const float *x, int64_t rows, int64_t n, const float *d, int64_t out,
                       float alpha, const float *yref, const float *cw, int64_t group,
                       const float *gw, double *rowloss, int nt)
{
    const int64_t ng = out / group;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows; r++) {
        double acc = 0.0;
        for (int64_t o = 0; o < out; o++) {
            const double e = (double)yref[r * out + o] - (double)alpha * dot(x + r * n, d + o * n, n);
            acc += e * e * cw[o] * gw[r * ng + o / group];
        }
        rowloss[r] = acc;
    }
    double t = 0.0;
    for (int64_t r = 0; r < rows; r++)
        t += rowloss[r];
    return t;
}

typedef struct work {
    float *wf[G4Q_SMOOTH_MAX_LINEARS];   /* W_k in fp32 */
    float *yref[G4Q_SMOOTH_MAX_LINEARS]; /* X · W_kᵀ */
    float *cw[G4Q_SMOOTH_MAX_LINEARS];   /* the next norm's weight², per output */
    float *gw[G4Q_SMOOTH_MAX_LINEARS];   /* 1 / mean square of yref per token and norm group */
    int64_t group[G4Q_SMOOTH_MAX_LINEARS];
    uint16_t *ws[G4Q_SMOOTH_MAX_LINEARS];
    float *deq[G4Q_SMOOTH_MAX_LINEARS];
    float *xs, *m, *cand;
    double *rowloss;
} work;

static void work_free(work *w)
{
    for (int k = 0; k < G4Q_SMOOTH_MAX_LINEARS; k++) {
        free(w->wf[k]);
        free(w->yref[k]);
        free(w->cw[k]);
        free(w->gw[k]);
        free(w->ws[k]);
        free(w->deq[k]);
    }
    free(w->xs);
    free(w->m);
    free(w->cand);
    free(w->rowloss);
}

/* The loss weights of Linear k (smooth.h's N_k): per output, the next norm's weight squared; per
 * token and norm group, 1 / (mean square of the reference output + 1e-6), RMSNorm's eps. */
static g4q_status loss_weights(const g4q_smooth_linear *l, int64_t rows, const float *yref,
                               work *w, int k)
{
    const int64_t out = l->rows, group = l->norm_group > 0 ? l->norm_group : out;
    if (out % group || (l->norm_w && l->norm_w_len <= 0)) return G4Q_ERR_INVALID;
    const int64_t ng = out / group;
    w->group[k] = group;
    w->cw[k] = malloc((size_t)out * sizeof(float));
    w->gw[k] = malloc((size_t)rows * (size_t)ng * sizeof(float));
    if (!w->cw[k] || !w->gw[k]) return G4Q_ERR_NOMEM;
    for (int64_t o = 0; o < out; o++) {
        const float v = l->norm_w ? g4q_bf16_to_f32(l->norm_w[o % l->norm_w_len]) : 1.0f;
        w->cw[k][o] = v * v;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            double ms = 0.0;
            for (int64_t c = g * group; c < (g + 1) * group; c++)
                ms += (double)yref[r * out + c] * (double)yref[r * out + c];
            w->gw[k][r * ng + g] =
                l->norm_group > 0 ? (float)(1.0 / (ms / (double)group + 1e-6)) : 1.0f;
        }
    return G4Q_OK;
}

/* The factors for one α from the channel means m (smooth.h). */
static void factors(const float *m, int64_t n, float alpha, float *s)
{
    float hi = 0.0f, lo = INFINITY;
    for (int64_t c = 0; c < n; c++) {
        s[c] = alpha == 0.0f ? 1.0f : powf(m[c], alpha);
        hi = s[c] > hi ? s[c] : hi;
        lo = s[c] < lo ? s[c] : lo;
    }
    const float norm = sqrtf(hi * lo);
    for (int64_t c = 0; c < n; c++)
        s[c] = alpha == 0.0f ? 1.0f : s[c] / norm;
}

/* loss(s): quantizes the scaled Linears and compares their outputs on the scaled, engine-quantized
 * samples with the reference outputs. *amax gets the smoothed input's amax. */
static g4q_status eval(const g4q_smooth_problem *p, work *w, const float *s, int nt, double *loss,
                       float *amax)
{
    const int64_t n = p->n;
    float a = 0.0f;
    for (int64_t c = 0; c < n; c++) {
        const float v = p->col_amax[c] / s[c];
        a = v > a ? v : a;
    }
    *amax = a;
    for (int k = 0; k < p->n_lin; k++) {
        const int64_t rows = p->lin[k].rows;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < n; c++)
                w->ws[k][r * n + c] = g4q_f32_to_bf16(w->wf[k][r * n + c] * s[c]);
    }
    G4Q_TRY(p->qdq(p->user, s, (const uint16_t *const *)w->ws, w->deq));
    const float in_scale = g4q_actq_static_scale(p->act, a);
    const float alpha = g4q_actq_alpha(p->act, in_scale);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < p->rows; r++) {
        float *xr = w->xs + r * n;
        for (int64_t c = 0; c < n; c++)
            xr[c] = g4q_bf16_to_f32(g4q_f32_to_bf16(p->x[r * n + c] / s[c]));
        if (p->act != G4Q_ACTQ_NONE) g4q_actq_row(p->act, in_scale, xr, n);
    }
    double t = 0.0;
    for (int k = 0; k < p->n_lin; k++)
        t += out_loss(w->xs, p->rows, n, w->deq[k], p->lin[k].rows, alpha, w->yref[k], w->cw[k],
                      w->group[k], w->gw[k], w->rowloss, nt);
    *loss = t;
    return G4Q_OK;
}

g4q_status g4q_smooth_search(g4q_ctx *ctx, const char *name, const g4q_smooth_problem *p, float *s,
                             g4q_smooth_result *out)
{
    const int64_t n = p->n;
    if (n <= 0 || p->rows <= 0 || p->n_lin < 1 || p->n_lin > G4Q_SMOOTH_MAX_LINEARS ||
        !p->qdq)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "'%s': smoothing: empty or unsupported problem",
                        name);
    const int nt = ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
    const int grid = p->grid > 0 ? p->grid : 10;
    work w = {0};
    g4q_status st = G4Q_OK;
    for (int k = 0; k < p->n_lin; k++) {
        const size_t cells = (size_t)p->lin[k].rows * (size_t)n;
        w.wf[k] = malloc(cells * sizeof(float));
        w.ws[k] = malloc(cells * sizeof(uint16_t));
        w.deq[k] = malloc(cells * sizeof(float));
        w.yref[k] = malloc((size_t)p->rows * (size_t)p->lin[k].rows * sizeof(float));
        if (!w.wf[k] || !w.ws[k] || !w.deq[k] || !w.yref[k]) st = G4Q_ERR_NOMEM;
    }
    w.xs = malloc((size_t)p->rows * (size_t)n * sizeof(float));
    w.m = malloc((size_t)n * sizeof(float));
    w.cand = malloc((size_t)n * sizeof(float));
    w.rowloss = malloc((size_t)p->rows * sizeof(double));
    if (st != G4Q_OK || !w.xs || !w.m || !w.cand || !w.rowloss) {
        work_free(&w);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "'%s': smoothing: out of memory", name);
    }
    /* Channel means (fp64 sums in row order) and the checks. */
    float mmax = 0.0f;
    for (int64_t c = 0; c < n && st == G4Q_OK; c++) {
        double t = 0.0;
        for (int64_t r = 0; r < p->rows; r++)
            t += fabs((double)p->x[r * n + c]);
        w.m[c] = (float)(t / (double)p->rows);
        if (!isfinite(w.m[c]) || !isfinite(p->col_amax[c])) st = G4Q_ERR_NUMERIC;
        mmax = w.m[c] > mmax ? w.m[c] : mmax;
    }
    if (st != G4Q_OK || !(mmax > 0.0f)) {
        work_free(&w);
        return g4q_fail(ctx, G4Q_ERR_NUMERIC,
                        "'%s': smoothing: the input samples are not finite or all zero", name);
    }
    for (int64_t c = 0; c < n; c++)
        w.m[c] = w.m[c] > 1e-4f * mmax ? w.m[c] : 1e-4f * mmax;
    for (int k = 0; k < p->n_lin; k++) {
        const size_t cells = (size_t)p->lin[k].rows * (size_t)n;
        for (size_t i = 0; i < cells; i++)
            w.wf[k][i] = g4q_bf16_to_f32(p->lin[k].w[i]);
        matmul_t(p->x, p->rows, n, w.wf[k], p->lin[k].rows, w.yref[k], nt);
        st = loss_weights(&p->lin[k], p->rows, w.yref[k], &w, k);
        if (st != G4Q_OK) {
            work_free(&w);
            return g4q_fail(ctx, st, "'%s': smoothing: bad norm group or out of memory", name);
        }
    }
    double best = INFINITY;
    float best_alpha = 0.0f, best_amax = 0.0f;
    for (int g = 0; g <= grid && st == G4Q_OK; g++) {
        const float alpha = (float)g / (float)grid;
        factors(w.m, n, alpha, w.cand);
        double loss;
        float amax;
        st = eval(p, &w, w.cand, nt, &loss, &amax);
        if (st != G4Q_OK) break;
        if (g == 0) out->loss0 = loss;
        if (loss < best) {
            best = loss;
            best_alpha = alpha;
            best_amax = amax;
            memcpy(s, w.cand, (size_t)n * sizeof *s);
        }
    }
    work_free(&w);
    if (st != G4Q_OK) return st;
    out->alpha = best_alpha;
    out->loss = best;
    out->amax = best_amax;
    return G4Q_OK;
}

void g4q_smooth_hessian(float *H, int64_t n, int block, const float *s)
{
    const int64_t b = g4q_hess_block(n, block);
    for (int64_t i = 0; i < n; i++) { /* the held entries of row i: its diagonal block's, or all */
        const int64_t j0 = b ? i / b * b : 0, j1 = b && j0 + b < n ? j0 + b : n;
        for (int64_t j = j0; j < j1; j++)
            H[g4q_hess_offset(n, b, i, j)] /= s[i] * s[j];
    }
}
