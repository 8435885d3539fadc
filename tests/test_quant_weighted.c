/*
 * Tests of the Hessian-weighted scale searches of the CPU quantizers (quant/quant.h:
 * G4Q_SCALE_IMATRIX, G4Q_SCALE_HESSIAN and the `_h` functions), on fresh random data (seeded per
 * run) with a random correlated H that has a few heavy and a few dead input columns:
 *   - H = c·I gives exactly the MSE bytes, for every format, c non-power-of-two, tiny and huge;
 *   - a re-implementation of the documented arithmetic (normalisation, dead inputs, loss order
 *     and precision, ties) chooses the same scale for every block;
 *   - per block, the weighted choice's weighted error never exceeds the MSE choice's, and in total
 *     it is strictly lower; the layer output error ||(W − Ŵ)·X||² is printed;
 *   - dead inputs, all-dead blocks, an all-zero H, and ties among candidates;
 *   - refused arguments (H == NULL, bad diagonal, non-finite entries read), thread-count
 *     independence, and g4q_int4_group_scale_h's calling conventions.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "quant/blockq.h"
#include "quant/quant.h"
#include "testutil.h"

/* H [cols, cols] with every entry, as the `_h` quantizers take it (quant.h g4q_hess). */
#define FULLH(H, cols) (&(const g4q_hess){.h = (H), .n = (cols)})

static const float E2M1_TABLE[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};

/* ---------------- independent codecs (as in test_quant.c) ---------------- */

static double e4m3_ref(unsigned c)
{
    int s = (c >> 7) & 1, e = (c >> 3) & 15, m = c & 7;
    double v = e == 0 ? ldexp(m / 8.0, -6) : ldexp(1.0 + m / 8.0, e - 7);
    return s ? -v : v;
}

/* e4m3_ref of the codes 0x00..0x7E, filled by main() */
static double E4M3_POS[127];

/* nearest code of |x| among 0x00..0x7E (saturating), ties to even, sign bit of x */
static uint8_t ref_e4m3(float x)
{
    double a = fabs((double)x);
    unsigned best = 0;
    double bd = INFINITY;
    for (unsigned c = 0; c <= 0x7E; c++) {
        double d = fabs(a - E4M3_POS[c]);
        if (d < bd || (d == bd && (c & 1) == 0)) {
            bd = d;
            best = c;
        }
    }
    return (uint8_t)(best | (signbit(x) ? 0x80u : 0u));
}

/* nearest E2M1 magnitude index, ties to even */
static unsigned ref_e2m1_mag(float a)
{
    unsigned best = 0;
    double bd = INFINITY;
    for (unsigned c = 0; c < 8; c++) {
        double d = fabs((double)a - E2M1_TABLE[c]);
        if (d < bd || (d == bd && (c & 1) == 0 && (best & 1))) {
            bd = d;
            best = c;
        }
    }
    return best;
}

static float bf(uint16_t h)
{
    return g4q_bf16_to_f32(h);
}

static float f16_round(float s)
{
    uint16_t h = g4q_f32_to_f16(s);
    return g4q_f16_to_f32(h == 0 ? 1 : h);
}

/* ---------------- data ---------------- */

static void fill_w(uint16_t *w, size_t n, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++)
        w[i] = g4q_f32_to_bf16((float)(0.02 * g4q_test_normal(rng)));
    if (n >= 64) {
        memset(w, 0, 32); /* a zero NVFP4 block */
        w[20] = 0x8000;   /* -0.0 */
        w[40] = 0x0081;   /* a tiny value */
    }
}

/* H = Σ_t x_t·x_tᵀ over T tokens with x_c = (z_c + 0.8·z_{c−1} + 0.5·f), every 7th column (c % 7
 * == 3) eight times larger ("heavy"), and the columns listed in dead[] always zero. */
static void make_H(float *H, int64_t C, int64_t T, uint64_t *rng, const int64_t *dead, int ndead)
{
    double *X = malloc((size_t)(T * C) * sizeof *X);
    for (int64_t t = 0; t < T; t++) {
        double f = g4q_test_normal(rng), prev = g4q_test_normal(rng);
        for (int64_t c = 0; c < C; c++) {
            double z = g4q_test_normal(rng);
            double x = z + 0.8 * prev + 0.5 * f;
            prev = z;
            X[t * C + c] = c % 7 == 3 ? 8.0 * x : x;
        }
        for (int k = 0; k < ndead; k++)
            X[t * C + dead[k]] = 0.0;
    }
    for (int64_t i = 0; i < C; i++)
        for (int64_t j = i; j < C; j++) {
            double s = 0;
            for (int64_t t = 0; t < T; t++)
                s += X[t * C + i] * X[t * C + j];
            H[i * C + j] = H[j * C + i] = (float)s;
        }
    free(X);
}

static void scaled_identity(float *H, int64_t C, float c)
{
    memset(H, 0, (size_t)(C * C) * sizeof *H);
    for (int64_t i = 0; i < C; i++)
        H[i * C + i] = c;
}

/* The documented weights: μ = mean diag (fp64), Ĥ = fl32(H ÷ μ), dead rows/columns zero. */
static void ref_hhat(const float *H, int64_t C, float *Hh)
{
    double sum = 0;
    for (int64_t c = 0; c < C; c++)
        sum += H[c * C + c];
    double mu = sum / (double)C;
    for (int64_t i = 0; i < C; i++)
        for (int64_t j = 0; j < C; j++)
            Hh[i * C + j] = H[i * C + i] == 0 || H[j * C + j] == 0
                                ? 0.0f
                                : (float)((double)H[i * C + j] / mu);
}

static int ref_live(const float *Hh, int64_t C, int64_t c0, int n)
{
    for (int i = 0; i < n; i++)
        if (Hh[(c0 + i) * C + c0 + i] != 0)
            return 1;
    return 0;
}

/* ---------------- reference searches written from the quant.h text ---------------- */

/* kind: G4Q_SCALE_MSE (plain), IMATRIX or HESSIAN. Hh [C, C]; the block's columns c0 .. c0+n−1. */

/* NVFP4 fp32 loss of one 16-value block for candidate scale s (§2.4 magnitude error, signed). */
static float nv_loss(const uint16_t *w, float s, int kind, const float *Hh, int64_t C, int64_t c0)
{
    float e[16], err = 0;
    for (int i = 0; i < 16; i++) {
        float a = fabsf(bf(w[i]));
        float d = a - E2M1_TABLE[ref_e2m1_mag(a / s)] * s;
        e[i] = bf(w[i]) < 0 ? -d : d;
    }
    for (int i = 0; i < 16; i++) {
        if (kind == G4Q_SCALE_MSE) {
            err += e[i] * e[i];
        } else if (kind == G4Q_SCALE_IMATRIX) {
            err += (e[i] * e[i]) * Hh[(c0 + i) * C + c0 + i];
        } else {
            float t = 0;
            for (int j = 0; j < 16; j++)
                t += Hh[(c0 + j) * C + c0 + i] * e[j];
            err += e[i] * t;
        }
    }
    return err;
}

static float nv_cand(unsigned c, float G)
{
    return (float)e4m3_ref(c) / 448.0f * G / 6.0f;
}

static uint8_t ref_nv_block(const uint16_t *w, float G, int kind, const float *Hh, int64_t C,
                            int64_t c0)
{
    float bamax = 0;
    for (int i = 0; i < 16; i++)
        bamax = fmaxf(bamax, fabsf(bf(w[i])));
    if (bamax == 0)
        return 0x38;
    if (kind != G4Q_SCALE_MSE && !ref_live(Hh, C, c0, 16))
        kind = G4Q_SCALE_MSE;
    float best = INFINITY;
    uint8_t bc = 0x38;
    for (unsigned c = 1; c <= 126; c++) {
        float err = nv_loss(w, nv_cand(c, G), kind, Hh, C, c0);
        if (err < best) {
            best = err;
            bc = (uint8_t)c;
        }
    }
    return bc;
}

/* fp64 loss of n values (one row) with error function e_j = x − deq(x); fp8 selects E4M3 QDQ,
 * else INT4. */
static float qdq_err(int fp8, uint16_t wb, float s)
{
    float x = bf(wb);
    if (fp8)
        return x - (float)e4m3_ref(ref_e4m3(x / s)) * s;
    return x - (float)fmin(fmax(nearbyint(x / s), -8), 7) * s;
}

static double row_loss(int fp8, const uint16_t *w, int n, float s, int kind, const float *Hh,
                       int64_t C, int64_t c0)
{
    float e[256];
    for (int j = 0; j < n; j++)
        e[j] = qdq_err(fp8, w[j], s);
    double acc = 0;
    for (int i = 0; i < n; i++) {
        if (kind == G4Q_SCALE_MSE) {
            acc += (double)e[i] * e[i];
        } else if (kind == G4Q_SCALE_IMATRIX) {
            acc += ((double)e[i] * e[i]) * Hh[(c0 + i) * C + c0 + i];
        } else {
            double t = 0;
            for (int j = 0; j < n; j++)
                t += (double)Hh[(c0 + j) * C + c0 + i] * e[j];
            acc += (double)e[i] * t;
        }
    }
    return acc;
}

/* FP8 tile [r0, r0+nr) x [c0, c0+nc): loss of scale s = Σ rows in order. */
static double f8_loss(const uint16_t *w, int64_t C, int64_t r0, int nr, int64_t c0, int nc,
                      float s, int kind, const float *Hh)
{
    double loss = 0;
    for (int r = 0; r < nr; r++)
        loss += row_loss(1, w + (r0 + r) * C + c0, nc, s, kind, Hh, C, c0);
    return loss;
}

static float ref_f8_tile(const uint16_t *w, int64_t C, int64_t r0, int nr, int64_t c0, int nc,
                         int kind, const float *Hh)
{
    float A = 0;
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++)
            A = fmaxf(A, fabsf(bf(w[(r0 + r) * C + c0 + c])));
    if (A == 0)
        return 1.0f;
    if (kind != G4Q_SCALE_MSE && !ref_live(Hh, C, c0, nc))
        kind = G4Q_SCALE_MSE;
    double best = INFINITY;
    float bs = 1.0f;
    for (int k = 0; k < 39; k++) {
        float sk = (A * (float)(0.25 + k * 3.75 / 38)) * (float)(1.0 / 448.0);
        double l = f8_loss(w, C, r0, nr, c0, nc, sk, kind, Hh);
        if (l < best) {
            best = l;
            bs = sk;
        }
    }
    return bs;
}

/* INT4 group (f16 scales) of n values at w, columns c0 .. */
static float ref_i4_group(const uint16_t *w, int n, int kind, const float *Hh, int64_t C,
                          int64_t c0)
{
    float A = 0;
    for (int j = 0; j < n; j++)
        A = fmaxf(A, fabsf(bf(w[j])));
    if (A == 0)
        return 1.0f;
    if (kind != G4Q_SCALE_MSE && !ref_live(Hh, C, c0, n))
        kind = G4Q_SCALE_MSE;
    double best = INFINITY;
    float bs = 1.0f;
    for (int k = 0; k <= 120; k++) {
        float sk = f16_round(A * ((float)(100 + k) / 200.0f) / 7.5f);
        double l = row_loss(0, w, n, sk, kind, Hh, C, c0);
        if (l < best) {
            best = l;
            bs = sk;
        }
    }
    return bs;
}

/* ---------------- library runs ---------------- */

typedef struct {
    int64_t R, C;
    int group;
    uint8_t *nv_p, *nv_s, *f8_q;
    float nv_ws, *f8_s, *i4_s;
    int8_t *i4_q;
} outs;

static void outs_alloc(outs *o, int64_t R, int64_t C, int group)
{
    size_t n = (size_t)(R * C);
    o->R = R, o->C = C, o->group = group;
    o->nv_p = calloc(n / 2 + 1, 1), o->nv_s = calloc(n / 16 + 1, 1), o->f8_q = calloc(n, 1);
    o->f8_s = calloc(g4q_fp8_block_count(R, C), 4);
    o->i4_q = calloc(n, 1), o->i4_s = calloc((size_t)(R * g4q_int4_group_count(C, group)), 4);
}

static void outs_free(outs *o)
{
    free(o->nv_p), free(o->nv_s), free(o->f8_q), free(o->f8_s), free(o->i4_q), free(o->i4_s);
}

/* Runs the three quantizers with method m and H (NVFP4 only when C % 16 == 0). */
static void run3(g4q_ctx *ctx, const uint16_t *w, const float *H, g4q_scale_method m, outs *o)
{
    int64_t R = o->R, C = o->C;
    float amax;
    CHECK_STATUS(g4q_quant_amax_bf16(ctx, "w", w, (size_t)(R * C), &amax), G4Q_OK);
    if (C % 16 == 0)
        CHECK_STATUS(g4q_nvfp4_quantize_h(ctx, "w", w, R, C, amax, m, FULLH(H, C), o->nv_p, o->nv_s,
                                          &o->nv_ws),
                     G4Q_OK);
    CHECK_STATUS(g4q_fp8_quantize_blocks_h(ctx, "w", w, R, C, m, FULLH(H, C), o->f8_q, o->f8_s),
                 G4Q_OK);
    CHECK_STATUS(g4q_int4_quantize_h(ctx, "w", w, R, C, o->group, m, G4Q_DT_F16, FULLH(H, C),
                                     o->i4_q, o->i4_s),
                 G4Q_OK);
}

/* Counts differing bytes per format: [0] NVFP4, [1] FP8 blocks, [2] INT4. */
static void diff3(const outs *a, const outs *b, int d[3])
{
    size_t n = (size_t)(a->R * a->C);
    d[0] = d[1] = d[2] = 0;
    if (a->C % 16 == 0) {
        d[0] += memcmp(a->nv_p, b->nv_p, n / 2) != 0;
        d[0] += memcmp(a->nv_s, b->nv_s, n / 16) != 0;
        d[0] += a->nv_ws != b->nv_ws;
    }
    d[1] += memcmp(a->f8_q, b->f8_q, n) != 0;
    d[1] += memcmp(a->f8_s, b->f8_s, g4q_fp8_block_count(a->R, a->C) * 4) != 0;
    d[2] += memcmp(a->i4_q, b->i4_q, n) != 0;
    d[2] += memcmp(a->i4_s, b->i4_s,
                   (size_t)(a->R * g4q_int4_group_count(a->C, a->group)) * 4) != 0;
}

static const g4q_scale_method WM[2] = {G4Q_SCALE_IMATRIX, G4Q_SCALE_HESSIAN};

/* ---------------- (a) H = c·I reproduces MSE ---------------- */

static void test_identity(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() ^ 0x1d1du;
    const int64_t R = 136, C = 208; /* partial FP8 tiles and INT4 groups */
    uint16_t *w = malloc((size_t)(R * C) * 2);
    float *H = malloc((size_t)(C * C) * 4);
    fill_w(w, (size_t)(R * C), &rng);
    outs ref, got;
    outs_alloc(&ref, R, C, 128);
    outs_alloc(&got, R, C, 128);
    run3(&ctx, w, NULL, G4Q_SCALE_MSE, &ref);
    const float cs[3] = {3.7f, 1e-30f, 2.5e30f};
    for (int k = 0; k < 3; k++) {
        scaled_identity(H, C, cs[k]);
        for (int m = 0; m < 2; m++) {
            run3(&ctx, w, H, WM[m], &got);
            int d[3];
            diff3(&ref, &got, d);
            CHECK_MSG(d[0] + d[1] + d[2] == 0,
                      "H = %g·I, %s: bytes differ from mse (nvfp4 %d, fp8 %d, int4 %d)",
                      (double)cs[k], g4q_scale_method_name(WM[m]), d[0], d[1], d[2]);
        }
    }
    /* group 32 and bf16 scales too */
    scaled_identity(H, C, 0.3f);
    int8_t *q0 = malloc((size_t)(R * C)), *q1 = malloc((size_t)(R * C));
    float *s0 = malloc((size_t)(R * C) * 4), *s1 = malloc((size_t)(R * C) * 4);
    for (int m = 0; m < 2; m++) {
        CHECK_STATUS(g4q_int4_quantize(&ctx, "w", w, R, C, 32, G4Q_SCALE_MSE, G4Q_DT_BF16, q0, s0),
                     G4Q_OK);
        CHECK_STATUS(
            g4q_int4_quantize_h(&ctx, "w", w, R, C, 32, WM[m], G4Q_DT_BF16, FULLH(H, C), q1, s1),
            G4Q_OK);
        CHECK_MSG(memcmp(q0, q1, (size_t)(R * C)) == 0 && memcmp(s0, s1, (size_t)(R * 7) * 4) == 0,
                  "INT4 g32 bf16 %s with H = 0.3·I differs from mse", g4q_scale_method_name(WM[m]));
    }
    free(q0), free(q1), free(s0), free(s1);
    outs_free(&ref), outs_free(&got);
    free(w), free(H);
}

/* ---------------- (b)+(e) reference choices, weighted error vs MSE ---------------- */

/* Layer output error Σ_r e_rᵀ H e_r (full H, fp64) of a dequantized weight. */
static double output_err(const uint16_t *w, const float *deq, const float *H, int64_t R,
                         int64_t C)
{
    double tot = 0;
    double *e = malloc((size_t)C * sizeof *e);
    for (int64_t r = 0; r < R; r++) {
        for (int64_t c = 0; c < C; c++)
            e[c] = (double)bf(w[r * C + c]) - deq[r * C + c];
        for (int64_t i = 0; i < C; i++) {
            double t = 0;
            for (int64_t j = 0; j < C; j++)
                t += H[i * C + j] * e[j];
            tot += e[i] * t;
        }
    }
    free(e);
    return tot;
}

static void test_reference_and_gain(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() ^ 0x2e2eu;
    const int64_t R = 136, C = 336, G = 128, ng = 3; /* 6 FP8 tiles, 4 partial */
    /* dead: all of NVFP4 block 2 (columns 32..47) and a few scattered inputs */
    int64_t dead[20];
    int nd = 0;
    for (int64_t c = 32; c < 48; c++)
        dead[nd++] = c;
    dead[nd++] = 5, dead[nd++] = 77, dead[nd++] = 130, dead[nd++] = 199;
    uint16_t *w = malloc((size_t)(R * C) * 2);
    float *H = malloc((size_t)(C * C) * 4), *Hh = malloc((size_t)(C * C) * 4);
    float *deq = malloc((size_t)(R * C) * 4);
    fill_w(w, (size_t)(R * C), &rng);
    make_H(H, C, 4 * C, &rng, dead, nd);
    ref_hhat(H, C, Hh);
    float amax;
    CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w, (size_t)(R * C), &amax), G4Q_OK);
    outs mse, wt;
    outs_alloc(&mse, R, C, (int)G);
    outs_alloc(&wt, R, C, (int)G);
    run3(&ctx, w, NULL, G4Q_SCALE_MSE, &mse);
    double out_mse[3];
    g4q_nvfp4_dequantize(mse.nv_p, mse.nv_s, mse.nv_ws, R, C, deq);
    out_mse[0] = output_err(w, deq, H, R, C);
    g4q_fp8_dequantize_blocks(mse.f8_q, mse.f8_s, R, C, deq);
    out_mse[1] = output_err(w, deq, H, R, C);
    g4q_int4_dequantize(mse.i4_q, mse.i4_s, R, C, (int)G, deq);
    out_mse[2] = output_err(w, deq, H, R, C);
    int64_t nbc8 = (C + 127) / 128;
    for (int m = 0; m < 2; m++) {
        const int kind = (int)WM[m];
        const char *mn = g4q_scale_method_name(WM[m]);
        run3(&ctx, w, H, WM[m], &wt);
        int refbad[3] = {0, 0, 0}, worse[3] = {0, 0, 0}, moved[3] = {0, 0, 0}, nblk[3] = {0, 0, 0};
        double lw[3] = {0, 0, 0}, lm[3] = {0, 0, 0};
        /* NVFP4: scale codes; losses of the chosen codes under this method's weighting */
        for (int64_t b = 0; b < R * C / 16; b++) {
            const uint16_t *x = w + b * 16;
            int64_t c0 = (b % (C / 16)) * 16;
            refbad[0] += wt.nv_s[b] != ref_nv_block(x, amax, kind, Hh, C, c0);
            float a = nv_loss(x, nv_cand(wt.nv_s[b], amax), kind, Hh, C, c0);
            float b2 = nv_loss(x, nv_cand(mse.nv_s[b], amax), kind, Hh, C, c0);
            worse[0] += a > b2;
            moved[0] += wt.nv_s[b] != mse.nv_s[b], nblk[0]++;
            lw[0] += a, lm[0] += b2;
        }
        /* FP8 tiles */
        for (int64_t b = 0; b < (int64_t)g4q_fp8_block_count(R, C); b++) {
            int64_t r0 = (b / nbc8) * 128, c0 = (b % nbc8) * 128;
            int nr = (int)(R - r0 < 128 ? R - r0 : 128), nc = (int)(C - c0 < 128 ? C - c0 : 128);
            refbad[1] += wt.f8_s[b] != ref_f8_tile(w, C, r0, nr, c0, nc, kind, Hh);
            double a = f8_loss(w, C, r0, nr, c0, nc, wt.f8_s[b], kind, Hh);
            double b2 = f8_loss(w, C, r0, nr, c0, nc, mse.f8_s[b], kind, Hh);
            worse[1] += a > b2;
            moved[1] += wt.f8_s[b] != mse.f8_s[b], nblk[1]++;
            lw[1] += a, lm[1] += b2;
        }
        /* INT4 groups */
        for (int64_t b = 0; b < R * ng; b++) {
            int64_t r = b / ng, c0 = (b % ng) * G;
            int n = (int)(C - c0 < G ? C - c0 : G);
            const uint16_t *x = w + r * C + c0;
            refbad[2] += wt.i4_s[b] != ref_i4_group(x, n, kind, Hh, C, c0);
            double a = row_loss(0, x, n, wt.i4_s[b], kind, Hh, C, c0);
            double b2 = row_loss(0, x, n, mse.i4_s[b], kind, Hh, C, c0);
            worse[2] += a > b2;
            moved[2] += wt.i4_s[b] != mse.i4_s[b], nblk[2]++;
            lw[2] += a, lm[2] += b2;
        }
        const char *fn[3] = {"nvfp4", "fp8-block", "int4-g128"};
        double out[3];
        g4q_nvfp4_dequantize(wt.nv_p, wt.nv_s, wt.nv_ws, R, C, deq);
        out[0] = output_err(w, deq, H, R, C);
        g4q_fp8_dequantize_blocks(wt.f8_q, wt.f8_s, R, C, deq);
        out[1] = output_err(w, deq, H, R, C);
        g4q_int4_dequantize(wt.i4_q, wt.i4_s, R, C, (int)G, deq);
        out[2] = output_err(w, deq, H, R, C);
        for (int f = 0; f < 3; f++) {
            CHECK_MSG(refbad[f] == 0, "%s %s: %d block scales differ from the reference search",
                      fn[f], mn, refbad[f]);
            CHECK_MSG(worse[f] == 0, "%s %s: %d blocks have a larger weighted error than mse",
                      fn[f], mn, worse[f]);
            CHECK_MSG(lw[f] < lm[f], "%s %s: total weighted error %.6e is not below mse's %.6e",
                      fn[f], mn, lw[f], lm[f]);
            /* not a property of the search (it sees only the diagonal blocks of H), but with
             * these heavy inputs the margins are wide (30-60%) except for FP8's few tiles */
            if (f != 1)
                CHECK_MSG(out[f] < out_mse[f], "%s %s: layer output error %.4e is not below "
                          "mse's %.4e", fn[f], mn, out[f], out_mse[f]);
            printf("  %-9s %-7s %4d of %4d scales moved; weighted error %.4e vs mse %.4e (%.1f%% "
                   "lower); layer output error %.4e vs %.4e (%.1f%% lower)\n",
                   fn[f], mn, moved[f], nblk[f], lw[f], lm[f], 100 * (1 - lw[f] / lm[f]), out[f],
                   out_mse[f], 100 * (1 - out[f] / out_mse[f]));
        }
    }
    fflush(stdout);
    outs_free(&mse), outs_free(&wt);
    free(w), free(H), free(Hh), free(deq);
}

/* ---------------- (c) dead inputs ---------------- */

static void test_dead(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() ^ 0x3f3fu;
    const int64_t R = 40, C = 160;
    uint16_t *w = malloc((size_t)(R * C) * 2);
    float *H = malloc((size_t)(C * C) * 4), *H2 = malloc((size_t)(C * C) * 4);
    fill_w(w, (size_t)(R * C), &rng);
    outs mse, a, b;
    outs_alloc(&mse, R, C, 128);
    outs_alloc(&a, R, C, 128);
    outs_alloc(&b, R, C, 128);
    run3(&ctx, w, NULL, G4Q_SCALE_MSE, &mse);
    /* an all-zero H: every block is dead, so everything is the MSE choice */
    memset(H, 0, (size_t)(C * C) * 4);
    for (int m = 0; m < 2; m++) {
        run3(&ctx, w, H, WM[m], &a);
        int d[3];
        diff3(&mse, &a, d);
        CHECK_MSG(d[0] + d[1] + d[2] == 0, "H = 0, %s: bytes differ from mse (%d %d %d)",
                  g4q_scale_method_name(WM[m]), d[0], d[1], d[2]);
    }
    /* dead columns 0..127 (INT4 group 0 and FP8 tile column 0 all dead; NVFP4 blocks 0..7) keep
     * MSE's scales there; garbage off-diagonal entries of dead rows/columns are ignored */
    int64_t dead[128];
    for (int k = 0; k < 128; k++)
        dead[k] = k;
    make_H(H, C, 2 * C, &rng, dead, 128);
    memcpy(H2, H, (size_t)(C * C) * 4);
    for (int64_t j = 0; j < C; j++)
        if (j != 3) {
            H2[3 * C + j] = 1e3f * (float)(j + 1);
            H2[j * C + 3] = -7.0f;
        }
    for (int m = 0; m < 2; m++) {
        run3(&ctx, w, H, WM[m], &a);
        run3(&ctx, w, H2, WM[m], &b);
        int d[3];
        diff3(&a, &b, d);
        CHECK_MSG(d[0] + d[1] + d[2] == 0,
                  "%s: entries of a dead row/column changed the bytes (%d %d %d)",
                  g4q_scale_method_name(WM[m]), d[0], d[1], d[2]);
        int bad = 0;
        for (int64_t r = 0; r < R; r++) {
            for (int64_t k = 0; k < 8; k++)
                bad += a.nv_s[r * (C / 16) + k] != mse.nv_s[r * (C / 16) + k];
            bad += a.i4_s[r * 2] != mse.i4_s[r * 2];
        }
        bad += a.f8_s[0] != mse.f8_s[0];
        CHECK_MSG(bad == 0, "%s: %d all-dead blocks differ from mse", g4q_scale_method_name(WM[m]),
                  bad);
    }
    /* ties: the live inputs of a block are all zero, the dead ones are not: every candidate has
     * weighted error 0, so the smallest candidate wins */
    const int64_t r2 = 8, c2 = 32;
    uint16_t w2[8 * 32];
    float Hs[32 * 32];
    scaled_identity(Hs, c2, 1.0f);
    for (int64_t c = 0; c < 16; c++)
        Hs[c * c2 + c] = 0.0f; /* columns 0..15 dead */
    float A = 0;
    for (int64_t i = 0; i < r2 * c2; i++) {
        w2[i] = (i % c2) < 8 ? g4q_f32_to_bf16((float)(0.01 * (1 + i % 5))) : 0;
        A = fmaxf(A, bf(w2[i]));
    }
    uint8_t p[8 * 16], s[8 * 2], q8[8 * 32];
    int8_t q4[8 * 32];
    float ws, f8s, i4s[8];
    for (int m = 0; m < 2; m++) {
        const char *mn = g4q_scale_method_name(WM[m]);
        CHECK_STATUS(
            g4q_nvfp4_quantize_h(&ctx, "t", w2, r2, c2, A, WM[m], FULLH(Hs, c2), p, s, &ws),
            G4Q_OK);
        /* block 0 (dead) keeps the MSE choice (never code 1 here); block 1 is zero: 0x38 */
        CHECK_MSG(s[0] != 1 && s[1] == 0x38, "NVFP4 %s: %02x %02x", mn, s[0], s[1]);
        for (int64_t c = 0; c < 16; c++)
            Hs[c * c2 + c] = c < 8 ? 0.0f : 1.0f; /* now 8..15 live (and zero in w2) */
        CHECK_STATUS(
            g4q_nvfp4_quantize_h(&ctx, "t", w2, r2, c2, A, WM[m], FULLH(Hs, c2), p, s, &ws),
            G4Q_OK);
        CHECK_MSG(s[0] == 1, "NVFP4 %s: a zero-error tie took code %02x, not 01", mn, s[0]);
        CHECK_STATUS(
            g4q_fp8_quantize_blocks_h(&ctx, "t", w2, r2, c2, WM[m], FULLH(Hs, c2), q8, &f8s),
            G4Q_OK);
        CHECK_MSG(f8s == g4q_fp8_scale_of(A * g4q_mse_multiplier(0)),
                  "FP8 %s: a zero-error tie took %g", mn, (double)f8s);
        CHECK_STATUS(g4q_int4_quantize_h(&ctx, "t", w2, r2, c2, 32, WM[m], G4Q_DT_F16,
                                         FULLH(Hs, c2), q4, i4s),
                     G4Q_OK);
        float amax0 = 0;
        for (int c = 0; c < 32; c++)
            amax0 = fmaxf(amax0, bf(w2[c]));
        CHECK_MSG(i4s[0] == f16_round(amax0 * 0.5f / 7.5f), "INT4 %s: a zero-error tie took %g",
                  mn, (double)i4s[0]);
        for (int64_t c = 0; c < 16; c++)
            Hs[c * c2 + c] = 0.0f;
    }
    outs_free(&mse), outs_free(&a), outs_free(&b);
    free(w), free(H), free(H2);
}

/* ---------------- (d) errors, names, threads, the INT4 group helper ---------------- */

static void test_errors(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() ^ 0x4a4au;
    const int64_t R = 16, C = 64;
    uint16_t w[16 * 64];
    float H[64 * 64];
    fill_w(w, (size_t)(R * C), &rng);
    uint8_t p[16 * 32], s[16 * 4], q8[16 * 64], p2[16 * 32], s2[16 * 4];
    int8_t q4[16 * 64];
    float ws, ws2, fs[1], is[16 * 2]; /* is: R rows x C / 32 groups */
    CHECK(strcmp(g4q_scale_method_name(G4Q_SCALE_IMATRIX), "imatrix") == 0);
    CHECK(strcmp(g4q_scale_method_name(G4Q_SCALE_HESSIAN), "hessian") == 0);
    CHECK(g4q_scale_method_weighted(G4Q_SCALE_HESSIAN) &&
          !g4q_scale_method_weighted(G4Q_SCALE_MSE));
    float amax;
    CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w, (size_t)(R * C), &amax), G4Q_OK);
    for (int m = 0; m < 2; m++) {
        CHECK_STATUS(g4q_nvfp4_quantize_h(&ctx, "mlp.a", w, R, C, amax, WM[m], NULL, p, s, &ws),
                     G4Q_ERR_INVALID);
        CHECK(strstr(g4q_ctx_error(&ctx), "mlp.a") != NULL);
        CHECK_STATUS(g4q_fp8_quantize_blocks_h(&ctx, "mlp.b", w, R, C, WM[m], NULL, q8, fs),
                     G4Q_ERR_INVALID);
        CHECK(strstr(g4q_ctx_error(&ctx), "mlp.b") != NULL);
        CHECK_STATUS(g4q_int4_quantize_h(&ctx, "mlp.c", w, R, C, 32, WM[m], G4Q_DT_F16, NULL, q4,
                                         is),
                     G4Q_ERR_INVALID);
        CHECK(strstr(g4q_ctx_error(&ctx), "mlp.c") != NULL);
        /* the weighted methods stay out of the H-less entry points */
        CHECK_STATUS(g4q_fp8_quantize_blocks(&ctx, "mlp.d", w, R, C, WM[m], q8, fs),
                     G4Q_ERR_INVALID);
    }
    /* H == NULL with the other methods: exactly the plain functions */
    const g4q_scale_method nv[3] = {G4Q_SCALE_MAX, G4Q_SCALE_MSE, G4Q_SCALE_FOUR_OVER_SIX};
    for (int m = 0; m < 3; m++) {
        CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "w", w, R, C, amax, nv[m], p, s, &ws), G4Q_OK);
        CHECK_STATUS(g4q_nvfp4_quantize_h(&ctx, "w", w, R, C, amax, nv[m], NULL, p2, s2, &ws2),
                     G4Q_OK);
        CHECK(memcmp(p, p2, sizeof p) == 0 && memcmp(s, s2, sizeof s) == 0 && ws == ws2);
    }
    CHECK_STATUS(
        g4q_fp8_quantize_blocks_h(&ctx, "w", w, R, C, G4Q_SCALE_FOUR_OVER_SIX, FULLH(H, C), q8, fs),
        G4Q_ERR_INVALID);
    /* bad H: negative or NaN diagonal; a NaN in a diagonal block (read by hessian only); a NaN
     * outside the diagonal blocks (never read) */
    scaled_identity(H, C, 2.0f);
    H[5 * C + 5] = -1.0f;
    CHECK_STATUS(g4q_int4_quantize_h(&ctx, "mlp.e", w, R, C, 32, G4Q_SCALE_IMATRIX, G4Q_DT_F16,
                                     FULLH(H, C), q4, is),
                 G4Q_ERR_NUMERIC);
    CHECK(strstr(g4q_ctx_error(&ctx), "mlp.e") != NULL);
    H[5 * C + 5] = NAN;
    CHECK_STATUS(
        g4q_nvfp4_quantize_h(&ctx, "w", w, R, C, amax, G4Q_SCALE_HESSIAN, FULLH(H, C), p, s, &ws),
        G4Q_ERR_NUMERIC);
    H[5 * C + 5] = 2.0f;
    H[5 * C + 6] = NAN; /* inside NVFP4 block 0, INT4 group 0 and the FP8 tile */
    CHECK_STATUS(
        g4q_nvfp4_quantize_h(&ctx, "w", w, R, C, amax, G4Q_SCALE_HESSIAN, FULLH(H, C), p, s, &ws),
        G4Q_ERR_NUMERIC);
    CHECK_STATUS(
        g4q_fp8_quantize_blocks_h(&ctx, "w", w, R, C, G4Q_SCALE_HESSIAN, FULLH(H, C), q8, fs),
        G4Q_ERR_NUMERIC);
    CHECK_STATUS(
        g4q_nvfp4_quantize_h(&ctx, "w", w, R, C, amax, G4Q_SCALE_IMATRIX, FULLH(H, C), p, s, &ws),
        G4Q_OK);
    H[5 * C + 6] = 0.0f;
    H[5 * C + 40] = INFINITY; /* outside the 16- and 32-column diagonal blocks */
    CHECK_STATUS(
        g4q_nvfp4_quantize_h(&ctx, "w", w, R, C, amax, G4Q_SCALE_HESSIAN, FULLH(H, C), p, s, &ws),
        G4Q_OK);
    CHECK_STATUS(g4q_int4_quantize_h(&ctx, "w", w, R, C, 32, G4Q_SCALE_HESSIAN, G4Q_DT_F16,
                                     FULLH(H, C), q4, is),
                 G4Q_OK);
}

static void test_threads_and_helper(void)
{
    uint64_t rng = g4q_test_seed() ^ 0x5b5bu;
    const int64_t R = 72, C = 160, T = 2 * C;
    const int G = 32;
    uint16_t *w = malloc((size_t)(R * C) * 2);
    float *H = malloc((size_t)(C * C) * 4), *Hh = malloc((size_t)(C * C) * 4);
    fill_w(w, (size_t)(R * C), &rng);
    const int64_t dead[3] = {1, 64, 65};
    make_H(H, C, T, &rng, dead, 3);
    ref_hhat(H, C, Hh);
    outs o1, o3;
    outs_alloc(&o1, R, C, G);
    outs_alloc(&o3, R, C, G);
    for (int m = 0; m < 2; m++) {
        g4q_ctx c1, c3;
        g4q_ctx_init(&c1);
        g4q_ctx_init(&c3);
        c1.threads = 1, c3.threads = 3;
        run3(&c1, w, H, WM[m], &o1);
        run3(&c3, w, H, WM[m], &o3);
        int d[3];
        diff3(&o1, &o3, d);
        CHECK_MSG(d[0] + d[1] + d[2] == 0, "%s: 1 vs 3 threads differ (%d %d %d)",
                  g4q_scale_method_name(WM[m]), d[0], d[1], d[2]);
        /* g4q_int4_group_scale_h on the full normalised matrix (the GPTQ convention) */
        int bad = 0;
        int64_t ng = g4q_int4_group_count(C, G);
        for (int64_t b = 0; b < R * ng; b++) {
            int64_t r = b / ng, c0 = (b % ng) * G;
            float sc = g4q_int4_group_scale_h(w + r * C + c0, G, (int)WM[m], G4Q_SCALE_STORE_F16,
                                              Hh, C, c0);
            bad += sc != o1.i4_s[b];
        }
        CHECK_MSG(bad == 0, "g4q_int4_group_scale_h %s (full Ĥ): %d scales differ",
                  g4q_scale_method_name(WM[m]), bad);
    }
    /* the plain kinds ignore H */
    int bad = 0;
    for (int64_t g = 0; g < R * C / G; g++)
        for (int k = 0; k < 2; k++)
            bad += g4q_int4_group_scale_h(w + g * G, G, k, G4Q_SCALE_STORE_BF16, NULL, 0, 0) !=
                   g4q_int4_group_scale(w + g * G, G, k, G4Q_SCALE_STORE_BF16);
    CHECK_MSG(bad == 0, "g4q_int4_group_scale_h max/mse: %d differ", bad);
    outs_free(&o1), outs_free(&o3);
    free(w), free(H), free(Hh);
}

/* ---------------- (f) a blocked H, as the calibration hands it over ---------------- */

/* H's diagonal b x b blocks in quant.h's compact layout, written here independently of
 * g4q_hess_extract; the padding past C is NaN, which no search may read. */
static float *compact_blocks(const float *H, int64_t C, int b)
{
    const int64_t nb = (C + b - 1) / b, b2 = (int64_t)b * b;
    float *o = malloc((size_t)(nb * b2) * sizeof *o);
    for (int64_t k = 0; k < nb; k++)
        for (int64_t i = 0; i < b; i++)
            for (int64_t j = 0; j < b; j++) {
                const int64_t ci = k * b + i, cj = k * b + j;
                o[k * b2 + i * b + j] = ci < C && cj < C ? H[ci * C + cj] : NAN;
            }
    return o;
}

static void test_blocked(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() ^ 0xb10cu;
    const int64_t R = 40, C = 208; /* 13 NVFP4 blocks, FP8 tiles 128 + 80, INT4 groups 6.5 x 32 */
    uint16_t *w = malloc((size_t)(R * C) * 2);
    float *H = malloc((size_t)(C * C) * 4), amax;
    const int64_t dead[2] = {17, 130};
    fill_w(w, (size_t)(R * C), &rng);
    make_H(H, C, 96, &rng, dead, 2);
    CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w, (size_t)(R * C), &amax), G4Q_OK);
    outs ref, got;
    outs_alloc(&ref, R, C, 32);
    outs_alloc(&got, R, C, 32);
    const int blocks[5] = {1, 16, 32, 96, 128};
    for (int m = 0; m < 2; m++) {
        run3(&ctx, w, H, WM[m], &ref);
        for (int k = 0; k < 5; k++) {
            const int b = blocks[k];
            float *hc = compact_blocks(H, C, b);
            const g4q_hess hv = {.h = hc, .n = C, .block = b};
            CHECK(g4q_hess_count(C, b) == (size_t)((C + b - 1) / b * b * b));
            /* each search reads hv when its blocks (16, 128, 32) divide b, or only the diagonal */
            const int rd[3] = {WM[m] == G4Q_SCALE_IMATRIX || b % 16 == 0,
                               WM[m] == G4Q_SCALE_IMATRIX || b % 128 == 0,
                               WM[m] == G4Q_SCALE_IMATRIX || b % 32 == 0};
            g4q_status st[3];
            st[0] = g4q_nvfp4_quantize_h(&ctx, "mlp.n", w, R, C, amax, WM[m], &hv, got.nv_p,
                                         got.nv_s, &got.nv_ws);
            st[1] =
                g4q_fp8_quantize_blocks_h(&ctx, "mlp.f", w, R, C, WM[m], &hv, got.f8_q, got.f8_s);
            st[2] = g4q_int4_quantize_h(&ctx, "mlp.i", w, R, C, 32, WM[m], G4Q_DT_F16, &hv,
                                        got.i4_q, got.i4_s);
            int d[3];
            diff3(&ref, &got, d);
            for (int f = 0; f < 3; f++) {
                CHECK_MSG(g4q_hess_readable(WM[m], &hv,
                                            f == 0   ? 16
                                            : f == 1 ? 128
                                                     : 32) == rd[f],
                          "%s blocks of %d, format %d: readable", g4q_scale_method_name(WM[m]), b,
                          f);
                if (rd[f])
                    CHECK_MSG(st[f] == G4Q_OK && d[f] == 0,
                              "%s with H in blocks of %d: format %d gives status %d, %d byte "
                              "ranges unlike the full H's",
                              g4q_scale_method_name(WM[m]), b, f, (int)st[f], d[f]);
                else
                    CHECK_MSG(st[f] == G4Q_ERR_INVALID,
                              "%s with H in blocks of %d: format %d ran (status %d) on blocks "
                              "that do not hold its own",
                              g4q_scale_method_name(WM[m]), b, f, (int)st[f]);
            }
            free(hc);
        }
    }
    /* a Hessian of another width is refused, naming the tensor */
    const g4q_hess narrow = {.h = H, .n = C - 16};
    CHECK_STATUS(g4q_nvfp4_quantize_h(&ctx, "mlp.w", w, R, C, amax, G4Q_SCALE_IMATRIX, &narrow,
                                      got.nv_p, got.nv_s, &got.nv_ws),
                 G4Q_ERR_INVALID);
    CHECK(strstr(g4q_ctx_error(&ctx), "mlp.w") != NULL);
    outs_free(&ref);
    outs_free(&got);
    free(w);
    free(H);
}

int main(void)
{
    for (unsigned c = 0; c <= 0x7E; c++)
        E4M3_POS[c] = e4m3_ref(c);
    test_identity();
    test_reference_and_gain();
    test_dead();
    test_errors();
    test_threads_and_helper();
    test_blocked();
    return g4q_test_finish();
}
