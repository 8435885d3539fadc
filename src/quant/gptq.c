/* GPTQ error-feedback quantization, CPU reference (contract in gptq.h). */
#include "quant/gptq.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "quant/blockq.h"

/* GPTQ reads every entry of H: the view of it that the scale searches take (cols in scope). */
#define FULL(H) ((H) ? &(const g4q_hess){.h = (H), .n = cols} : NULL)

/* ---- the inverse Hessian's upper Cholesky factor ---- */

/* In-place lower Cholesky factor of the symmetric positive definite A [n, n] (only the lower
 * triangle is read and written). Returns the first failing pivot + 1, or 0. */
int64_t g4q_cholesky_lower_f64(double *A, int64_t n, int nt)
{
    for (int64_t j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int64_t k = 0; k < j; k++)
            d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0.0) || !isfinite(d))
            return j + 1;
        d = sqrt(d);
        A[j * n + j] = d;
#pragma omp parallel for schedule(static) num_threads(nt) if (j * (n - j) > 65536)
        for (int64_t i = j + 1; i < n; i++) {
            double s = A[i * n + j];
            for (int64_t k = 0; k < j; k++)
                s -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = s / d;
        }
    }
    return 0;
}

int g4q_gptq_damp_diag(double *diag, int64_t n, double damp, uint8_t *dead)
{
    double mean = 0.0;
    for (int64_t c = 0; c < n; c++) {
        dead[c] = diag[c] == 0.0;
        if (dead[c]) diag[c] = 1.0;
        mean += diag[c];
    }
    mean /= (double)n;
    for (int64_t c = 0; c < n; c++)
        diag[c] += damp * mean;
    return !isfinite(mean);
}

g4q_status g4q_gptq_inverse_factor(g4q_ctx *ctx, const char *name, const float *H, int64_t n,
                                   double damp, float *U, uint8_t *dead)
{
    const char *nm = name ? name : "?";
    const int nt = ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
    double *A = malloc((size_t)n * (size_t)n * sizeof *A);
    double *B = malloc((size_t)n * (size_t)n * sizeof *B);
    if (!A || !B) {
        free(A);
        free(B);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "tensor '%s': GPTQ needs 2 x %lld x %lld doubles", nm,
                        (long long)n, (long long)n);
    }
    for (size_t i = 0; i < (size_t)n * (size_t)n; i++)
        A[i] = (double)H[i];
    for (int64_t c = 0; c < n; c++) /* the diagonal, damped, through B's first row */
        B[c] = A[c * n + c];
    const int nonfinite = g4q_gptq_damp_diag(B, n, damp, dead);
    for (int64_t c = 0; c < n; c++)
        A[c * n + c] = B[c];
    /* U is the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ·U). With J the reversal and L the lower
     * Cholesky factor of J·H·J, H = (J·L·J)·(J·L·J)ᵀ with J·L·J upper, so U = (J·L·J)⁻¹ =
     * J·L⁻¹·J: one Cholesky and one triangular inverse (as the GPU computes it). */
    for (size_t i = 0; i < (size_t)n * (size_t)n; i++) /* B = J·A·J */
        B[i] = A[(size_t)n * (size_t)n - 1 - i];
    g4q_status st = G4Q_OK;
    int64_t bad = nonfinite ? 1 : g4q_cholesky_lower_f64(B, n, nt);
    if (bad) {
        st = g4q_fail(ctx, G4Q_ERR_NUMERIC,
                      "tensor '%s': the calibration Hessian is not positive definite (pivot %lld "
                      "of %lld) even with damping %g",
                      nm, nonfinite ? 0LL : (long long)(n - bad), (long long)n, damp);
        goto out;
    }
    /* A = L⁻¹, stored transposed (A[j][k] = L⁻¹[k][j], so every inner product below runs over
     * contiguous memory), column j of L⁻¹ by forward substitution. */
    memset(A, 0, (size_t)n * (size_t)n * sizeof *A);
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
    for (int64_t j = 0; j < n; j++) {
        double *aj = A + j * n;
        aj[j] = 1.0 / B[j * n + j];
        for (int64_t i = j + 1; i < n; i++) {
            const double *li = B + i * n;
            double s = 0.0;
            for (int64_t k = j; k < i; k++)
                s += li[k] * aj[k];
            aj[i] = -s / li[i];
        }
    }
    /* U[i][j] = L⁻¹[n-1-i][n-1-j] = A[n-1-j][n-1-i] for j >= i. */
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            U[i * n + j] = j >= i ? (float)A[(n - 1 - j) * n + (n - 1 - i)] : 0.0f;
out:
    free(A);
    free(B);
    return st;
}

/* ---- the column loop, generic over the format ---- */

/* A format, applied to the rows [r0, r1) of a thread: optional group_begin when column c starts a
 * group of `group` columns (fix the scales of columns [c, c + n) from the current values of the
 * column-major Wt; returns non-zero when a scale overflows), and qdq of column c (write the codes
 * and the dequantized values q[r]). Rows never interact, so threads split them. */
typedef struct gptq_fmt {
    int group;
    int (*group_begin)(void *u, const float *Wt, int64_t rows, int64_t c, int64_t n, int64_t r0,
                       int64_t r1);
    void (*qdq)(void *u, int64_t c, const float *w, float *q, int64_t r0, int64_t r1);
    void *u;
} gptq_fmt;

/* The whole column loop for rows [r0, r1) (E [block, rows] and q [rows] shared, disjoint rows).
 * Cloned for FMA hardware (picked at load time): fmaf is exact either way, so only the speed
 * changes. */
__attribute__((target_clones("fma", "default"))) static int gptq_rows(const gptq_fmt *f, float *Wt, const float *U, int64_t rows, int64_t cols,
                     int64_t B, float *E, float *q, int64_t r0, int64_t r1)
{
    int bad = 0;
    for (int64_t i1 = 0; i1 < cols; i1 += B) {
        const int64_t i2 = i1 + B < cols ? i1 + B : cols;
        for (int64_t i = i1; i < i2; i++) {
            float *wc = Wt + i * rows;
            if (f->group_begin && i % f->group == 0)
                bad |= f->group_begin(f->u, Wt, rows, i, cols - i < f->group ? cols - i : f->group,
                                      r0, r1);
            f->qdq(f->u, i, wc, q, r0, r1);
            const float d = U[i * cols + i];
            float *e = E + (i - i1) * rows;
            for (int64_t r = r0; r < r1; r++)
                e[r] = (wc[r] - q[r]) / d;
            for (int64_t j = i + 1; j < i2; j++) {
                const float uij = U[i * cols + j];
                float *wj = Wt + j * rows;
                for (int64_t r = r0; r < r1; r++)
                    wj[r] = fmaf(-e[r], uij, wj[r]);
            }
        }
        /* The block's errors into every later column, block columns in ascending order. */
        for (int64_t j = i2; j < cols; j++) {
            float *wj = Wt + j * rows;
            for (int64_t i = i1; i < i2; i++) {
                const float uij = U[i * cols + j];
                const float *e = E + (i - i1) * rows;
                for (int64_t r = r0; r < r1; r++)
                    wj[r] = fmaf(-e[r], uij, wj[r]);
            }
        }
    }
    return bad;
}

/* Runs GPTQ; returns through *bad (may be NULL) whether a group scale overflowed. */
static g4q_status run_gptq(g4q_ctx *ctx, const char *nm, const uint16_t *w, int64_t rows,
                           int64_t cols, const float *H, const g4q_gptq_opts *o,
                           const gptq_fmt *f, int *bad)
{
    if (bad)
        *bad = 0;
    if (!H)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': GPTQ needs the input Hessian", nm);
    const double damp = o && o->damp > 0.0 ? o->damp : 0.01;
    const int64_t B = o && o->block > 0 ? o->block : 128;
    const int nt = ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
    float *U = malloc((size_t)cols * (size_t)cols * sizeof *U);
    float *Wt = malloc((size_t)rows * (size_t)cols * sizeof *Wt);
    float *E = malloc((size_t)rows * (size_t)B * sizeof *E);
    float *q = malloc((size_t)rows * sizeof *q);
    uint8_t *dead = malloc((size_t)cols);
    g4q_status st = G4Q_OK;
    if (!U || !Wt || !E || !q || !dead) {
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "tensor '%s': GPTQ working memory", nm);
        goto out;
    }
    if (o && o->U) { /* given: only the dead columns come from H */
        for (int64_t c = 0; c < cols; c++)
            dead[c] = H[c * cols + c] == 0.0f;
        memcpy(U, o->U, (size_t)cols * (size_t)cols * sizeof *U);
    } else {
        st = g4q_gptq_inverse_factor(ctx, nm, H, cols, damp, U, dead);
    }
    if (st != G4Q_OK)
        goto out;
    /* Column-major working copy; dead inputs' weights are zero (they never reach the output). */
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t c = 0; c < cols; c++)
        for (int64_t r = 0; r < rows; r++)
            Wt[c * rows + r] = dead[c] ? 0.0f : g4q_bf16_to_f32(w[r * cols + c]);
    int any = 0;
#pragma omp parallel num_threads(nt) reduction(| : any)
    {
        const int64_t T = omp_get_num_threads();
        const int64_t per = ((rows + T - 1) / T + 15) / 16 * 16; /* 64-byte row slices */
        const int64_t r0 = omp_get_thread_num() * per, r1 = r0 + per < rows ? r0 + per : rows;
        if (r0 < r1)
            any |= gptq_rows(f, Wt, U, rows, cols, B, E, q, r0, r1);
    }
    if (bad)
        *bad = any;
out:
    free(U);
    free(Wt);
    free(E);
    free(q);
    free(dead);
    return st;
}

/* ---- INT4: lazy group scales ---- */

typedef struct int4_state {
    int8_t *q;
    float *scales;
    int64_t cols, ng;
    int group, kind, store; /* kind: the scale method (g4q_int4_group_scale_h) */
    const float *hw;        /* weighted methods: the weights of H (quant.h compact layout) */
} int4_state;

/* The weights g4q_int4_group_scale_h reads for the group starting at column c (see blockq.h). */
static const float *group_weights(const int4_state *s, int64_t c, int64_t *ldh, int64_t *c0)
{
    *ldh = 0, *c0 = c;
    if (s->kind == G4Q_SCALE_IMATRIX) return s->hw;
    if (s->kind != G4Q_SCALE_HESSIAN) return NULL;
    *ldh = s->group, *c0 = 0;
    return s->hw + (size_t)(c / s->group) * (size_t)s->group * (size_t)s->group;
}

#define GPTQ_MAX_GROUP 4096

static int int4_group_begin(void *u, const float *Wt, int64_t rows, int64_t c, int64_t n,
                            int64_t r0, int64_t r1)
{
    int4_state *s = u;
    int bad = 0;
    int64_t ldh, c0;
    const float *hw = group_weights(s, c, &ldh, &c0);
    for (int64_t r = r0; r < r1; r++) {
        uint16_t g[GPTQ_MAX_GROUP]; /* the group's current weights, rounded to bf16 */
        for (int64_t k = 0; k < n; k++)
            g[k] = g4q_f32_to_bf16(Wt[(c + k) * rows + r]);
        const float sc = g4q_int4_group_scale_h(g, (int)n, s->kind, s->store, hw, ldh, c0);
        bad |= isinf(sc) != 0;
        s->scales[r * s->ng + c / s->group] = sc;
    }
    return bad;
}

static void int4_qdq(void *u, int64_t c, const float *w, float *q, int64_t r0, int64_t r1)
{
    int4_state *s = u;
    for (int64_t r = r0; r < r1; r++) {
        const float sc = s->scales[r * s->ng + c / s->group];
        const int v = g4q_int4_encode(w[r] / sc);
        s->q[r * s->cols + c] = (int8_t)v;
        q[r] = (float)v * sc;
    }
}

g4q_status g4q_gptq_int4(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                         int64_t cols, int group, g4q_scale_method method, g4q_dtype scale_dtype,
                         const float *H, const g4q_gptq_opts *o, int8_t *q, float *scales)
{
    const char *nm = name ? name : "?";
    /* The RTN quantizer validates shape, dtype, method and weights, and its outputs are replaced. */
    G4Q_TRY(g4q_int4_quantize_h(ctx, name, w, rows, cols, group, method, scale_dtype, FULL(H), q,
                                scales));
    if (group > GPTQ_MAX_GROUP)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': GPTQ supports INT4 groups up to %d", nm,
                        GPTQ_MAX_GROUP);
    float *hw = NULL;
    G4Q_TRY(g4q_hess_prepare(ctx, name, method, FULL(H), cols, group, &hw));
    int4_state s = {q, scales, cols, g4q_int4_group_count(cols, group), group, (int)method,
                    scale_dtype == G4Q_DT_F16    ? G4Q_SCALE_STORE_F16
                    : scale_dtype == G4Q_DT_BF16 ? G4Q_SCALE_STORE_BF16
                                                 : G4Q_SCALE_STORE_F32,
                    hw};
    gptq_fmt f = {group, int4_group_begin, int4_qdq, &s};
    int bad;
    g4q_status st = run_gptq(ctx, nm, w, rows, cols, H, o, &f, &bad);
    free(hw);
    G4Q_TRY(st);
    if (bad)
        return g4q_fail(ctx, G4Q_ERR_NUMERIC,
                        "tensor '%s': a GPTQ group scale overflows %s (error feedback grew the "
                        "weights)",
                        nm, g4q_dtype_name(scale_dtype));
    return G4Q_OK;
}

/* ---- NVFP4: lazy block scales, codes with feedback ---- */

typedef struct nvfp4_state {
    uint8_t *packed;
    uint8_t *scales;
    int64_t cols;
    float g;  /* ModelOpt: wsf2 (denominator E4M3 · g); CT: the global scale (E4M3 ÷ g) */
    int ct, kind;
    const float *cand; /* the 126 sweep scales (mse and the weighted kinds) */
    const float *hw;   /* weighted kinds: H's compact weights (quant.h, blocks of 16) */
} nvfp4_state;

/* The scales of the 16-column block starting at c, from each row's current values. */
static int nvfp4_block_begin(void *u, const float *Wt, int64_t rows, int64_t c, int64_t n,
                             int64_t r0, int64_t r1)
{
    (void)n;
    nvfp4_state *s = u;
    const float *hb = !s->hw ? NULL
                      : s->kind == G4Q_SCALE_HESSIAN
                          ? s->hw + (size_t)(c / G4Q_NVFP4_BLOCK) * G4Q_NVFP4_BLOCK * G4Q_NVFP4_BLOCK
                          : s->hw + c;
    for (int64_t r = r0; r < r1; r++) {
        float x[G4Q_NVFP4_BLOCK];
        uint8_t o8[G4Q_NVFP4_BLOCK / 2];
        for (int k = 0; k < G4Q_NVFP4_BLOCK; k++)
            x[k] = Wt[(c + k) * rows + r];
        s->scales[(r * s->cols + c) / G4Q_NVFP4_BLOCK] =
            s->ct ? g4q_nvfp4_block_ct(x, s->g, o8)
                  : g4q_nvfp4_block_choose(x, s->kind, s->cand, s->g, hb, o8);
    }
    return 0;
}

static void nvfp4_qdq(void *u, int64_t c, const float *w, float *q, int64_t r0, int64_t r1)
{
    nvfp4_state *s = u;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t i = r * s->cols + c;
        const float sv = g4q_e4m3_decode(s->scales[i / G4Q_NVFP4_BLOCK]);
        uint8_t nib;
        if (s->ct) {
            nib = g4q_e2m1_encode_ieee_sign(G4Q_FDIV(w[r], G4Q_FDIV(sv, s->g)));
            q[r] = g4q_e2m1_decode(nib) * sv / s->g;
        } else {
            nib = g4q_e2m1_encode(G4Q_FDIV(w[r], G4Q_FMUL(sv, s->g)));
            q[r] = g4q_e2m1_decode(nib) * sv * s->g;
        }
        uint8_t *b = s->packed + i / 2;
        *b = (i & 1) ? (uint8_t)((*b & 0x0Fu) | (nib << 4)) : (uint8_t)((*b & 0xF0u) | nib);
    }
}

static g4q_status run_nvfp4(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                            int64_t cols, float global_amax, g4q_scale_method method,
                            const float *H, const g4q_gptq_opts *o, nvfp4_state *s)
{
    float cand[G4Q_NVFP4_SWEEP_N];
    for (int c = 1; c <= G4Q_NVFP4_SWEEP_N; c++)
        cand[c - 1] = g4q_nvfp4_sweep_scale((uint8_t)c, global_amax);
    float *hw = NULL;
    if (!s->ct) G4Q_TRY(g4q_hess_prepare(ctx, name, method, FULL(H), cols, G4Q_NVFP4_BLOCK, &hw));
    s->kind = (int)method, s->cand = cand, s->hw = hw;
    gptq_fmt f = {G4Q_NVFP4_BLOCK, nvfp4_block_begin, nvfp4_qdq, s};
    g4q_status st = run_gptq(ctx, name ? name : "?", w, rows, cols, H, o, &f, NULL);
    free(hw);
    return st;
}

g4q_status g4q_gptq_nvfp4(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                          int64_t cols, float global_amax, g4q_scale_method method,
                          const float *H, const g4q_gptq_opts *o, uint8_t *packed,
                          uint8_t *scales, float *wsf2)
{
    G4Q_TRY(g4q_nvfp4_quantize_h(ctx, name, w, rows, cols, global_amax, method, FULL(H), packed,
                                 scales, wsf2));
    nvfp4_state s = {packed, scales, cols, *wsf2, 0, 0, NULL, NULL};
    return run_nvfp4(ctx, name, w, rows, cols, global_amax, method, H, o, &s);
}

g4q_status g4q_gptq_nvfp4_ct(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                             int64_t cols, float global_amax, const float *H,
                             const g4q_gptq_opts *o, uint8_t *packed, uint8_t *scales,
                             float *global_scale)
{
    G4Q_TRY(g4q_nvfp4_quantize_ct(ctx, name, w, rows, cols, global_amax, packed, scales,
                                  global_scale));
    nvfp4_state s = {packed, scales, cols, *global_scale, 1, 0, NULL, NULL};
    return run_nvfp4(ctx, name, w, rows, cols, global_amax, G4Q_SCALE_MAX, H, o, &s);
}

/* ---- FP8 128x128 blocks: fixed scales, codes with feedback ---- */

typedef struct fp8_state {
    uint8_t *q;
    const float *scales;
    int64_t cols, nbc;
} fp8_state;

static void fp8_qdq(void *u, int64_t c, const float *w, float *q, int64_t r0, int64_t r1)
{
    fp8_state *s = u;
    for (int64_t r = r0; r < r1; r++) {
        const float sc = s->scales[(r / G4Q_FP8_BLOCK) * s->nbc + c / G4Q_FP8_BLOCK];
        const uint8_t v = g4q_e4m3_encode_sat(w[r] / sc);
        s->q[r * s->cols + c] = v;
        q[r] = g4q_e4m3_decode(v) * sc;
    }
}

g4q_status g4q_gptq_fp8_blocks(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                               int64_t cols, g4q_scale_method method, const float *H,
                               const g4q_gptq_opts *o, uint8_t *q, float *scales)
{
    G4Q_TRY(g4q_fp8_quantize_blocks_h(ctx, name, w, rows, cols, method, FULL(H), q, scales));
    fp8_state s = {q, scales, cols, (cols + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK};
    gptq_fmt f = {0, NULL, fp8_qdq, &s};
    return run_gptq(ctx, name ? name : "?", w, rows, cols, H, o, &f, NULL);
}
