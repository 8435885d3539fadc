/* Activation-aware smoothing search (src/quant/smooth.h): on fresh random data with outlier input
 * channels, with the real NVFP4 quantizer and engine activation quantization,
 *   - α = 0 is the unscaled problem: s = 1 exactly, and the reported loss0 equals an independent
 *     recomputation of the unsmoothed layer error;
 *   - the chosen factors lower the layer output error ||W·x − Q(W·s)·Qa(x ÷ s)|| clearly below
 *     round to nearest's, recomputed here independently from the returned s;
 *   - the output norm's view of errors (per-token rms, norm weights) is what the loss weighs;
 *   - the result does not depend on the thread count; bad input is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "quant/actq.h"
#include "quant/quant.h"
#include "quant/smooth.h"
#include "testutil.h"

static g4q_ctx g_ctx;
static uint64_t g_rng;

enum { N = 64, ROWS = 48, XR = 256 };

/* NVFP4 (ModelOpt, max scales) quantize + dequantize, one Linear. */
static g4q_status qdq_nvfp4(void *user, const float *s, const uint16_t *const *ws,
                            float *const *deq)
{
    (void)s;
    const int *n_lin = user;
    for (int k = 0; k < *n_lin; k++) {
        float amax;
        G4Q_TRY(g4q_quant_amax_bf16(&g_ctx, "w", ws[k], (size_t)ROWS * N, &amax));
        uint8_t packed[ROWS * N / 2], scales[ROWS * N / 16];
        float wsf2;
        G4Q_TRY(g4q_nvfp4_quantize(&g_ctx, "w", ws[k], ROWS, N, amax, G4Q_SCALE_MAX, packed,
                                   scales, &wsf2));
        g4q_nvfp4_dequantize(packed, scales, wsf2, ROWS, N, deq[k]);
    }
    return G4Q_OK;
}

/* The layer error for factors s, computed directly: Σ_rows Σ_out (w·x − alpha·deq(W·s)·Qa(x÷s))²
 * with per-token weights 1 / mean(y²) when `normed`. */
static double direct_loss(const uint16_t *w, const float *x, const float *s, const float *col_amax,
                          int normed)
{
    static uint16_t ws[ROWS * N];
    static float deq[ROWS * N], xs[XR * N];
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < N; c++)
            ws[r * N + c] = g4q_f32_to_bf16(g4q_bf16_to_f32(w[r * N + c]) * s[c]);
    int one = 1;
    uint16_t *wsp = ws;
    float *deqp = deq;
    CHECK_STATUS(qdq_nvfp4(&one, s, (const uint16_t *const *)&wsp, &deqp), G4Q_OK);
    float amax = 0.0f;
    for (int c = 0; c < N; c++)
        amax = fmaxf(amax, col_amax[c] / s[c]);
    const float in_scale = g4q_actq_static_scale(G4Q_ACTQ_NVFP4, amax);
    double loss = 0.0;
    for (int t = 0; t < XR; t++) {
        for (int c = 0; c < N; c++)
            xs[t * N + c] = g4q_bf16_to_f32(g4q_f32_to_bf16(x[t * N + c] / s[c]));
        g4q_actq_row(G4Q_ACTQ_NVFP4, in_scale, xs + t * N, N);
        double e2 = 0.0, y2 = 0.0;
        for (int o = 0; o < ROWS; o++) {
            double y = 0.0, yq = 0.0;
            for (int c = 0; c < N; c++) {
                y += (double)g4q_bf16_to_f32(w[o * N + c]) * x[t * N + c];
                yq += (double)deq[o * N + c] * xs[t * N + c];
            }
            yq *= in_scale;
            e2 += (y - yq) * (y - yq);
            y2 += y * y;
        }
        loss += normed ? e2 / (y2 / ROWS + 1e-6) : e2;
    }
    return loss;
}

static void make_problem(uint16_t *w, float *x, float *col_amax)
{
    for (int i = 0; i < ROWS * N; i++)
        w[i] = g4q_f32_to_bf16((float)(0.05 * g4q_test_normal(&g_rng)));
    /* Three outlier channels, 30x the others, as LLM activations have. */
    for (int t = 0; t < XR; t++)
        for (int c = 0; c < N; c++) {
            const double sc = (c == 3 || c == 17 || c == 40) ? 30.0 : 1.0;
            x[t * N + c] = g4q_round_bf16((float)(sc * g4q_test_normal(&g_rng)));
        }
    for (int c = 0; c < N; c++) {
        col_amax[c] = 0.0f;
        for (int t = 0; t < XR; t++)
            col_amax[c] = fmaxf(col_amax[c], fabsf(x[t * N + c]));
    }
}

static void test_search(int normed)
{
    static uint16_t w[ROWS * N];
    static float x[XR * N], col_amax[N], s[N], s1[N];
    make_problem(w, x, col_amax);
    int one = 1;
    g4q_smooth_linear lin = {.w = w, .rows = ROWS, .norm_group = normed ? ROWS : 0};
    g4q_smooth_problem p = {.n = N, .x = x, .rows = XR, .col_amax = col_amax, .lin = &lin,
                            .n_lin = 1, .qdq = qdq_nvfp4, .user = &one, .act = G4Q_ACTQ_NVFP4,
                            .grid = 10};
    g4q_smooth_result r;
    CHECK_STATUS(g4q_smooth_search(&g_ctx, "t", &p, s, &r), G4Q_OK);
    float ones[N];
    for (int c = 0; c < N; c++)
        ones[c] = 1.0f;
    const double l0 = direct_loss(w, x, ones, col_amax, normed);
    const double ls = direct_loss(w, x, s, col_amax, normed);
    CHECK_MSG(fabs(r.loss0 - l0) <= 1e-3 * l0, "loss0 %g, recomputed %g", r.loss0, l0);
    CHECK_MSG(fabs(r.loss - ls) <= 1e-3 * ls, "loss %g, recomputed %g", r.loss, ls);
    CHECK_MSG(r.alpha > 0.0f && ls < 0.8 * l0,
              "outlier channels: alpha %.2f, loss %g vs %g unsmoothed (want < 80%%)",
              (double)r.alpha, ls, l0);
    float amax = 0.0f;
    for (int c = 0; c < N; c++)
        amax = fmaxf(amax, col_amax[c] / s[c]);
    CHECK(r.amax == amax);
    /* The factors favour the outliers: theirs are the largest. */
    CHECK(s[3] > s[0] && s[17] > s[1] && s[40] > s[2]);
    /* One thread gives the same bits. */
    g4q_ctx c1;
    g4q_ctx_init(&c1);
    c1.threads = 1;
    g4q_smooth_result r1;
    CHECK_STATUS(g4q_smooth_search(&c1, "t", &p, s1, &r1), G4Q_OK);
    CHECK(memcmp(s, s1, sizeof s) == 0 && r1.loss == r.loss && r1.alpha == r.alpha);
}

/* Without outliers and with a grid of 1 (α 0 or 1), α = 0 may win; then s is exactly 1. */
static void test_identity_and_errors(void)
{
    static uint16_t w[ROWS * N];
    static float x[XR * N], col_amax[N], s[N];
    for (int i = 0; i < ROWS * N; i++)
        w[i] = g4q_f32_to_bf16((float)(0.05 * g4q_test_normal(&g_rng)));
    for (int i = 0; i < XR * N; i++)
        x[i] = g4q_round_bf16((float)g4q_test_normal(&g_rng));
    for (int c = 0; c < N; c++) {
        col_amax[c] = 0.0f;
        for (int t = 0; t < XR; t++)
            col_amax[c] = fmaxf(col_amax[c], fabsf(x[t * N + c]));
    }
    int one = 1;
    g4q_smooth_linear lin = {.w = w, .rows = ROWS};
    g4q_smooth_problem p = {.n = N, .x = x, .rows = XR, .col_amax = col_amax, .lin = &lin,
                            .n_lin = 1, .qdq = qdq_nvfp4, .user = &one, .act = G4Q_ACTQ_NONE,
                            .grid = 1};
    g4q_smooth_result r;
    CHECK_STATUS(g4q_smooth_search(&g_ctx, "t", &p, s, &r), G4Q_OK);
    CHECK(r.loss <= r.loss0);
    if (r.alpha == 0.0f) {
        int ones = 1;
        for (int c = 0; c < N; c++)
            ones &= s[c] == 1.0f;
        CHECK(ones);
    }
    /* Refused: no Linear; a NaN sample (named). */
    g4q_smooth_problem bad = p;
    bad.n_lin = 0;
    CHECK_STATUS(g4q_smooth_search(&g_ctx, "t", &bad, s, &r), G4Q_ERR_INVALID);
    x[5] = NAN;
    CHECK_STATUS(g4q_smooth_search(&g_ctx, "layer 3 mlp_in", &p, s, &r), G4Q_ERR_NUMERIC);
    CHECK(strstr(g4q_ctx_error(&g_ctx), "layer 3 mlp_in") != NULL);
}

static void test_hessian(void)
{
    float H[9] = {4, 2, 1, 2, 9, 3, 1, 3, 16}, s[3] = {2, 1, 4};
    g4q_smooth_hessian(H, 3, 0, s);
    const float want[9] = {1, 1, 0.125f, 1, 9, 0.75f, 0.125f, 0.75f, 1};
    CHECK(memcmp(H, want, sizeof H) == 0);
    /* H of 5 inputs held in diagonal blocks of 2 (quant.h g4q_hess): every held entry as in the
     * whole H, the padding past 5 untouched */
    float F[25], B[12], sv[5] = {2, 1, 4, 0.5f, 8};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            F[i * 5 + j] = (float)(1 + i + j + (i == j) * 10);
    for (int k = 0; k < 3; k++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                const int ci = 2 * k + a, cj = 2 * k + b;
                B[k * 4 + a * 2 + b] = ci < 5 && cj < 5 ? F[ci * 5 + cj] : -7.0f;
            }
    g4q_smooth_hessian(F, 5, 0, sv);
    g4q_smooth_hessian(B, 5, 2, sv);
    int bad = 0;
    for (int k = 0; k < 3; k++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                const int ci = 2 * k + a, cj = 2 * k + b;
                bad += B[k * 4 + a * 2 + b] != (ci < 5 && cj < 5 ? F[ci * 5 + cj] : -7.0f);
            }
    CHECK_MSG(bad == 0, "blocked smoothed Hessian: %d entries differ", bad);
}

int main(void)
{
    g4q_ctx_init(&g_ctx);
    g_rng = g4q_test_seed();
    test_search(0);
    test_search(1);
    test_identity_and_errors();
    test_hessian();
    return g4q_test_finish();
}
