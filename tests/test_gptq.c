/* GPTQ (src/quant/gptq.h) against round-to-nearest, on fresh random data each run:
 *   - with correlated calibration inputs, GPTQ's layer output error Σ_t ||(W − Ŵ)·x_t||² is below
 *     RTN's for INT4 g128 (max and mse), NVFP4 (ModelOpt max / mse, compressed-tensors) and FP8
 *     128x128 blocks, on the same scales rule;
 *   - with a diagonal Hessian (no error crosses columns) every format's bytes equal RTN's;
 *   - the bytes do not depend on the thread count;
 *   - the outputs keep RTN's conventions (INT4 codes in [-8, 7] packable as GPTQ v1, scales
 *     exact in their storage type);
 *   - a Hessian that is not positive definite, or none, is refused;
 *   - the inverse factor U meets its definition (U·H·Uᵀ = I for the damped H, U upper). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "quant/gptq.h"
#include "quant/quant.h"
#include "testutil.h"

static uint64_t rng;

enum { ROWS = 96, COLS = 384, NTOK = 768 };

typedef struct data {
    uint16_t w[ROWS * COLS];
    float x[NTOK * COLS]; /* calibration inputs, token-major */
    float H[COLS * COLS]; /* fp32, as the calibration gives it */
} data;

/* W: normal weights with a few outliers; x: AR(1)-correlated inputs with channel scales from 0.2
 * to 5 (what makes GPTQ's feedback worth something); H = Σ x·xᵀ. diag: keep only H's diagonal. */
static void make_data(data *d, int diag)
{
    for (int i = 0; i < ROWS * COLS; i++) {
        double v = 0.02 * g4q_test_normal(&rng);
        if (g4q_test_uniform(&rng) < 0.002)
            v *= 12.0;
        d->w[i] = g4q_f32_to_bf16((float)v);
    }
    float scale[COLS];
    for (int c = 0; c < COLS; c++)
        scale[c] = (float)(0.2 * pow(25.0, g4q_test_uniform(&rng)));
    for (int t = 0; t < NTOK; t++) {
        double prev = 0.0;
        for (int c = 0; c < COLS; c++) {
            prev = 0.85 * prev + g4q_test_normal(&rng);
            d->x[t * COLS + c] = (float)prev * scale[c];
        }
    }
    static double acc[COLS * COLS];
    memset(acc, 0, sizeof acc);
    for (int t = 0; t < NTOK; t++) {
        const float *x = d->x + t * COLS;
        for (int i = 0; i < COLS; i++)
            for (int j = 0; j <= i; j++)
                acc[i * COLS + j] += (double)x[i] * x[j];
    }
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j <= i; j++) {
            const float v = (diag && j < i) ? 0.0f : (float)acc[i * COLS + j];
            d->H[i * COLS + j] = d->H[j * COLS + i] = v;
        }
}

/* Σ_t ||(W − Ŵ)·x_t||², fp64. */
static double out_err(const data *d, const float *deq)
{
    double e = 0.0;
    for (int t = 0; t < NTOK; t++)
        for (int r = 0; r < ROWS; r++) {
            double s = 0.0;
            for (int c = 0; c < COLS; c++)
                s += ((double)g4q_bf16_to_f32(d->w[r * COLS + c]) - deq[r * COLS + c]) *
                     d->x[t * COLS + c];
            e += s * s;
        }
    return e;
}

typedef enum { F_INT4_MAX, F_INT4_MSE, F_NVFP4_MAX, F_NVFP4_MSE, F_NVFP4_CT, F_FP8, F_COUNT } fmt;
static const char *fmt_name[F_COUNT] = {"int4 max", "int4 mse", "nvfp4 max", "nvfp4 mse",
                                        "nvfp4 ct", "fp8 blocks"};

typedef struct out {
    uint8_t codes[ROWS * COLS]; /* int8 / E4M3 per element, or NVFP4 packed (first half) */
    float scales[ROWS * COLS];
    uint8_t sc8[ROWS * COLS / 16];
    float g;
    float deq[ROWS * COLS];
} out;

/* Quantizes d->w in format f, with GPTQ (H given) or RTN (H NULL); fills o and its dequantized
 * weights. */
static g4q_status quantize(g4q_ctx *ctx, const data *d, fmt f, const float *H, out *o)
{
    memset(o, 0, sizeof *o);
    float amax = 0.0f;
    for (int i = 0; i < ROWS * COLS; i++)
        amax = fmaxf(amax, fabsf(g4q_bf16_to_f32(d->w[i])));
    g4q_status st;
    switch (f) {
    case F_INT4_MAX:
    case F_INT4_MSE: {
        g4q_scale_method m = f == F_INT4_MSE ? G4Q_SCALE_MSE : G4Q_SCALE_MAX;
        int8_t *q = (int8_t *)o->codes;
        st = H ? g4q_gptq_int4(ctx, "w", d->w, ROWS, COLS, 128, m, G4Q_DT_F16, H, NULL, q,
                               o->scales)
               : g4q_int4_quantize(ctx, "w", d->w, ROWS, COLS, 128, m, G4Q_DT_F16, q, o->scales);
        if (st == G4Q_OK) g4q_int4_dequantize(q, o->scales, ROWS, COLS, 128, o->deq);
        return st;
    }
    case F_NVFP4_MAX:
    case F_NVFP4_MSE: {
        g4q_scale_method m = f == F_NVFP4_MSE ? G4Q_SCALE_MSE : G4Q_SCALE_MAX;
        st = H ? g4q_gptq_nvfp4(ctx, "w", d->w, ROWS, COLS, amax, m, H, NULL, o->codes, o->sc8,
                                &o->g)
               : g4q_nvfp4_quantize(ctx, "w", d->w, ROWS, COLS, amax, m, o->codes, o->sc8, &o->g);
        if (st == G4Q_OK) g4q_nvfp4_dequantize(o->codes, o->sc8, o->g, ROWS, COLS, o->deq);
        return st;
    }
    case F_NVFP4_CT:
        st = H ? g4q_gptq_nvfp4_ct(ctx, "w", d->w, ROWS, COLS, amax, H, NULL, o->codes, o->sc8,
                                   &o->g)
               : g4q_nvfp4_quantize_ct(ctx, "w", d->w, ROWS, COLS, amax, o->codes, o->sc8, &o->g);
        if (st == G4Q_OK) g4q_nvfp4_ct_dequantize(o->codes, o->sc8, o->g, ROWS, COLS, o->deq);
        return st;
    default:
        st = H ? g4q_gptq_fp8_blocks(ctx, "w", d->w, ROWS, COLS, G4Q_SCALE_MAX, H, NULL, o->codes,
                                     o->scales)
               : g4q_fp8_quantize_blocks(ctx, "w", d->w, ROWS, COLS, G4Q_SCALE_MAX, o->codes,
                                         o->scales);
        if (st == G4Q_OK) g4q_fp8_dequantize_blocks(o->codes, o->scales, ROWS, COLS, o->deq);
        return st;
    }
}

static int same_bytes(const out *a, const out *b)
{
    return memcmp(a->codes, b->codes, sizeof a->codes) == 0 &&
           memcmp(a->scales, b->scales, sizeof a->scales) == 0 &&
           memcmp(a->sc8, b->sc8, sizeof a->sc8) == 0 && memcmp(&a->g, &b->g, sizeof a->g) == 0;
}

static data D;
static out R, G, G1;

static void test_beats_rtn(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    make_data(&D, 0);
    for (int f = 0; f < F_COUNT; f++) {
        if (!CHECK_STATUS(quantize(&ctx, &D, (fmt)f, NULL, &R), G4Q_OK) ||
            !CHECK_STATUS(quantize(&ctx, &D, (fmt)f, D.H, &G), G4Q_OK))
            continue;
        const double er = out_err(&D, R.deq), eg = out_err(&D, G.deq);
        printf("  %-10s output error RTN %.4g, GPTQ %.4g (%.1f%% lower)\n", fmt_name[f], er, eg,
               100.0 * (1.0 - eg / er));
        CHECK_MSG(eg < 0.9 * er, "%s: GPTQ output error %.4g not 10%% below RTN's %.4g",
                  fmt_name[f], eg, er);
        /* Thread-count independence. */
        ctx.threads = 1;
        if (CHECK_STATUS(quantize(&ctx, &D, (fmt)f, D.H, &G1), G4Q_OK))
            CHECK_MSG(same_bytes(&G, &G1), "%s: bytes differ between 1 and default threads",
                      fmt_name[f]);
        ctx.threads = 0;
        if (f == F_INT4_MAX) {
            /* RTN's conventions: codes in range, f16-exact scales, GPTQ v1 packing accepts them. */
            int ok = 1;
            for (int i = 0; i < ROWS * COLS; i++)
                ok &= (int8_t)G.codes[i] >= -8 && (int8_t)G.codes[i] <= 7;
            CHECK_MSG(ok, "int4 codes outside [-8, 7]");
            static int32_t qw[COLS / 8 * ROWS], qz[COLS / 128 * ROWS / 8], gi[COLS];
            static uint16_t s16[COLS / 128 * ROWS];
            CHECK_STATUS(g4q_int4_pack_gptq(&ctx, "w", (int8_t *)G.codes, G.scales, ROWS, COLS,
                                            128, qw, qz, s16, gi),
                         G4Q_OK);
        }
    }
}

static void test_diagonal_is_rtn(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    make_data(&D, 1);
    for (int f = 0; f < F_COUNT; f++)
        if (CHECK_STATUS(quantize(&ctx, &D, (fmt)f, NULL, &R), G4Q_OK) &&
            CHECK_STATUS(quantize(&ctx, &D, (fmt)f, D.H, &G), G4Q_OK))
            CHECK_MSG(same_bytes(&R, &G), "%s: diagonal Hessian, bytes differ from RTN",
                      fmt_name[f]);
}

static void test_errors(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    make_data(&D, 1);
    for (int i = 0; i < COLS; i++)
        D.H[i * COLS + i] = -1.0f;
    CHECK_STATUS(quantize(&ctx, &D, F_INT4_MAX, D.H, &G), G4Q_ERR_NUMERIC);
    CHECK_STATUS(g4q_gptq_fp8_blocks(&ctx, "w", D.w, ROWS, COLS, G4Q_SCALE_MAX, NULL, NULL,
                                     G.codes, G.scales),
                 G4Q_ERR_INVALID);
    /* Dead inputs (H[c, c] == 0) are allowed: their weights are zeroed. */
    make_data(&D, 0);
    for (int j = 0; j < COLS; j++)
        D.H[5 * COLS + j] = D.H[j * COLS + 5] = 0.0f;
    if (CHECK_STATUS(quantize(&ctx, &D, F_INT4_MAX, D.H, &G), G4Q_OK)) {
        int zero = 1;
        for (int r = 0; r < ROWS; r++)
            zero &= G.codes[r * COLS + 5] == 0;
        CHECK_MSG(zero, "a dead input column keeps non-zero codes");
    }
}

/* The inverse factor against its definition, in fp64: U is upper with a positive diagonal and
 * U·H_d·Uᵀ = I (H⁻¹ = Uᵀ·U), H_d the damped H with its dead inputs set to 1 on the diagonal;
 * dead[] marks exactly the zero diagonal entries; the failing pivot is named in H's order. */
static void test_factor(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    make_data(&D, 0);
    for (int j = 0; j < COLS; j++) /* input 7 dead */
        D.H[7 * COLS + j] = D.H[j * COLS + 7] = 0.0f;
    static float U[COLS * COLS];
    static double Hd[COLS * COLS], M[COLS * COLS];
    uint8_t dead[COLS];
    if (!CHECK_STATUS(g4q_gptq_inverse_factor(&ctx, "w", D.H, COLS, 0.01, U, dead), G4Q_OK)) return;
    double mean = 0.0;
    for (int c = 0; c < COLS; c++)
        mean += D.H[c * COLS + c] == 0.0f ? 1.0 : (double)D.H[c * COLS + c];
    mean /= COLS;
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j < COLS; j++)
            Hd[i * COLS + j] =
                (double)D.H[i * COLS + j] +
                (i == j ? (D.H[i * COLS + i] == 0.0f ? 1.0 : 0.0) + 0.01 * mean : 0.0);
    int shape = 1;
    for (int i = 0; i < COLS; i++) {
        shape &= U[i * COLS + i] > 0.0f && dead[i] == (i == 7);
        for (int j = 0; j < i; j++)
            shape &= U[i * COLS + j] == 0.0f;
    }
    CHECK_MSG(shape, "U is not upper with a positive diagonal, or dead[] is wrong");
    for (int i = 0; i < COLS; i++) /* M = U·Hd */
        for (int j = 0; j < COLS; j++) {
            double a = 0.0;
            for (int k = i; k < COLS; k++)
                a += (double)U[i * COLS + k] * Hd[k * COLS + j];
            M[i * COLS + j] = a;
        }
    double worst = 0.0;
    for (int i = 0; i < COLS; i++) /* (M·Uᵀ)[i][j] against I */
        for (int j = 0; j < COLS; j++) {
            double a = 0.0;
            for (int k = j; k < COLS; k++)
                a += M[i * COLS + k] * (double)U[j * COLS + k];
            worst = fmax(worst, fabs(a - (i == j ? 1.0 : 0.0)));
        }
    CHECK_MSG(worst < 1e-3, "U·H·Uᵀ differs from I by %g", worst);
    /* a pivot at input 300 that damping leaves negative is reported there (H diagonal, the
     * other pivots positive) */
    make_data(&D, 1);
    double others = 0.0;
    for (int c = 0; c < COLS; c++)
        others += c == 300 ? 0.0 : (double)D.H[c * COLS + c];
    D.H[300 * COLS + 300] = (float)(-0.5 * others / COLS);
    CHECK_STATUS(g4q_gptq_inverse_factor(&ctx, "mlp.f", D.H, COLS, 0.01, U, dead), G4Q_ERR_NUMERIC);
    CHECK(strstr(g4q_ctx_error(&ctx), "mlp.f") != NULL &&
          strstr(g4q_ctx_error(&ctx), "pivot 300 ") != NULL);
}

int main(void)
{
    rng = g4q_test_seed();
    test_beats_rtn();
    test_diagonal_is_rtn();
    test_errors();
    test_factor();
    return g4q_test_finish();
}
