/*
 * Engine-numerics ops of the CPU backend (src/quant/actq.h, backend.h matmul with an activation
 * quantization, fp8_roundtrip, logit_stats):
 *   - the activation quantizers on hand-computed values (E2M1 / E4M3 rounding, ties to even,
 *     saturation, zero blocks, the NVFP4 block scale through the global scale);
 *   - matmul with act = NVFP4 / FP8_TENSOR / FP8_GROUP against Q(x) computed here row by row and
 *     summed in double with the decoded weights (fp32 summation bound);
 *   - fp8_roundtrip against g4q_fp8_roundtrip and a value table; logit_stats against a direct
 *     double computation and its identities (KL 0 on equal rows, argmax ties to the first index).
 * With --dump DIR it also writes one W4A4 Linear (x, the packed NVFP4 weight, its scales, the
 * input scale and gemma4q's y) for the independent numpy check, tests/cli_actq_numpy.sh.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "base/bf16.h"
#include "quant/actq.h"
#include "quant/codecs.h"
#include "quant/quant.h"
#include "testutil.h"

static g4q_ctx g_ctx;
static uint64_t g_rng;

#define ACC_U 5.9604644775390625e-08 /* 2^-24 */

static void check_values(g4q_actq m, float s, const float *in, const float *want, int n,
                         const char *what)
{
    float v[128];
    memcpy(v, in, (size_t)n * sizeof *v);
    g4q_actq_unit_apply(m, s, v, n);
    for (int i = 0; i < n; i++)
        CHECK_MSG(v[i] == want[i], "%s: element %d: %g -> %g, expected %g", what, i, (double)in[i],
                  (double)v[i], (double)want[i]);
}

static void test_units(void)
{
    /* NVFP4, s = 1: G = 1, amax 6 gives sf = E4M3(1) = 1, so q is the E2M1 rounding of x. */
    const float x1[16] = {6, 0.3f, -2.6f, 5.1f, 1.25f, 0.2f, -0.25f, 0.75f,
                          1.75f, 2.5f, 3.5f, -5.0f, 4.9f, 0, -6, 0.26f};
    const float w1[16] = {6, 0.5f, -3, 6, 1, 0, -0.0f, 1, 2, 2, 4, -4, 4, 0, -6, 0.5f};
    check_values(G4Q_ACTQ_NVFP4, 1.0f, x1, w1, 16, "nvfp4 s=1");
    /* s = 0.5: G = 2, amax 3 -> sf = E4M3(2 · 3/6) = 1; x·os = x / (1 · 0.5) = 2x; value E2M1 · 1. */
    const float x2[4] = {3, 1, 0.1f, -1.4f};
    const float w2[4] = {6, 2, 0, -3};
    check_values(G4Q_ACTQ_NVFP4, 0.5f, x2, w2, 4, "nvfp4 s=0.5");
    /* A block scale that is not 1: amax 0.9, s = 1 -> sf = E4M3(0.15) = 0.15625 (0x22... nearest),
     * x / sf then E2M1, times sf. */
    const float sf = g4q_e4m3_decode(g4q_e4m3_encode_sat(0.9f * (1.0f / 6.0f)));
    const float x3[2] = {0.9f, -0.3f};
    const float w3[2] = {6 * sf, g4q_e2m1_decode(g4q_e2m1_encode(-0.3f * (1.0f / sf))) * sf};
    check_values(G4Q_ACTQ_NVFP4, 1.0f, x3, w3, 2, "nvfp4 block scale");
    CHECK_MSG(sf == 0.15625f, "E4M3(0.15) = %g, expected 0.15625", (double)sf);
    /* A zero block stays zero (sf 0). */
    const float z[3] = {0, 0, 0};
    check_values(G4Q_ACTQ_NVFP4, 0.01f, z, z, 3, "nvfp4 zero block");
    /* FP8 per tensor, s = 1: E4M3 of x, ties to even, saturating at 448. */
    const float x4[6] = {17, 19, 1000, -500, 0.0009765625f, 3.3f};
    const float w4[6] = {16, 20, 448, -448, 0, 3.25f};
    check_values(G4Q_ACTQ_FP8_TENSOR, 1.0f, x4, w4, 6, "fp8 tensor");
    /* FP8 group: amax 448 -> d = 1; the group's values round as E4M3. */
    const float x5[4] = {448, 17, -19, 3.3f};
    const float w5[4] = {448, 16, -20, 3.25f};
    check_values(G4Q_ACTQ_FP8_GROUP, 0.0f, x5, w5, 4, "fp8 group");
    /* amax 0.5 -> d = fl32(0.5 / 448); 0.5 maps to exactly 448 · d. */
    const float d = 0.5f / 448.0f;
    const float x6[2] = {0.5f, 0.25f};
    const float w6[2] = {448.0f * d, g4q_e4m3_decode(g4q_e4m3_encode_sat(0.25f / d)) * d};
    check_values(G4Q_ACTQ_FP8_GROUP, 0.0f, x6, w6, 2, "fp8 group scaled");
    CHECK(g4q_actq_alpha(G4Q_ACTQ_NVFP4, 0.25f) == 0.25f);
    CHECK(g4q_actq_alpha(G4Q_ACTQ_FP8_GROUP, 0.25f) == 1.0f);
    CHECK(g4q_fp8_roundtrip(17.0f, 1.0f) == 16.0f);
    CHECK(g4q_fp8_roundtrip(1000.0f, 2.0f) == 896.0f);
}

/* Random bf16 weights with outliers. */
static uint16_t *rand_w(int64_t rows, int64_t cols)
{
    uint16_t *w = malloc((size_t)(rows * cols) * sizeof *w);
    for (int64_t i = 0; i < rows * cols; i++) {
        double v = g4q_test_normal(&g_rng) * 0.05;
        if (g4q_test_uniform(&g_rng) < 0.01) v *= 8;
        w[i] = g4q_f32_to_bf16((float)v);
    }
    return w;
}

static float *rand_x(int n, int64_t cols)
{
    float *x = malloc((size_t)n * (size_t)cols * sizeof *x);
    for (int64_t i = 0; i < n * cols; i++)
        x[i] = (float)(g4q_test_normal(&g_rng) * (i % 37 == 0 ? 6.0 : 1.0));
    return x;
}

/* One NVFP4 weight [rows, cols] quantized with max scales. */
typedef struct nvw {
    uint8_t *packed, *scales;
    float wsf2;
    float *deq;
} nvw;

static nvw make_nvfp4(int64_t rows, int64_t cols)
{
    nvw q = {malloc((size_t)(rows * cols / 2)), malloc((size_t)(rows * cols / 16)), 0,
             malloc((size_t)(rows * cols) * sizeof(float))};
    uint16_t *w = rand_w(rows, cols);
    float amax = 0;
    CHECK_STATUS(g4q_quant_amax_bf16(&g_ctx, "w", w, (size_t)(rows * cols), &amax), G4Q_OK);
    CHECK_STATUS(g4q_nvfp4_quantize(&g_ctx, "w", w, rows, cols, amax, G4Q_SCALE_MAX, q.packed,
                                    q.scales, &q.wsf2),
                 G4Q_OK);
    g4q_nvfp4_dequantize(q.packed, q.scales, q.wsf2, rows, cols, q.deq);
    free(w);
    return q;
}

/* y = matmul(x) on the CPU backend for desc d; checks it against alpha · Q(x) · deqᵀ in double. */
static void check_act_matmul(g4q_backend *be, const g4q_weight_desc *d, const float *deq,
                             const float *x, int n, const char *what, float *y_out)
{
    const int64_t rows = d->rows, cols = d->cols;
    g4q_bweight *w = NULL;
    g4q_buf *bx = NULL, *by = NULL;
    if (!CHECK_STATUS(be->weight_bind(be, d, &w), G4Q_OK)) return;
    CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)n * (size_t)cols, &bx), G4Q_OK);
    CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)n * (size_t)rows, &by), G4Q_OK);
    CHECK_STATUS(be->upload(be, bx, 0, x, (size_t)n * (size_t)cols), G4Q_OK);
    CHECK_STATUS(be->matmul(be, by, bx, w, n), G4Q_OK);
    float *y = malloc((size_t)n * (size_t)rows * sizeof *y);
    float *xq = malloc((size_t)cols * sizeof *xq);
    CHECK_STATUS(be->download(be, by, 0, y, (size_t)n * (size_t)rows), G4Q_OK);
    const double alpha = g4q_actq_alpha(d->act, d->act_scale);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        memcpy(xq, x + (size_t)i * (size_t)cols, (size_t)cols * sizeof *xq);
        g4q_actq_row(d->act, d->act_scale, xq, cols);
        for (int64_t r = 0; r < rows; r++) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
                ref += (double)xq[c] * deq[r * cols + c];
                mag += fabs((double)xq[c] * deq[r * cols + c]);
            }
            ref *= alpha;
            const double tol = (cols + 3) * ACC_U * mag * alpha + 1e-30;
            const double got = y[(size_t)i * (size_t)rows + (size_t)r];
            if (fabs(got - ref) > tol && bad++ < 3)
                CHECK_MSG(0, "%s: y[%d, %lld] = %.9g, reference %.9g (tol %.3g)", what, i,
                          (long long)r, got, ref, tol);
        }
    }
    CHECK_MSG(bad == 0, "%s: %d outputs outside the bound", what, bad);
    if (y_out) memcpy(y_out, y, (size_t)n * (size_t)rows * sizeof *y);
    free(y);
    free(xq);
    be->buf_free(be, bx);
    be->buf_free(be, by);
    be->weight_free(be, w);
}

static void test_matmul(g4q_backend *be, const char *dump)
{
    const int64_t rows = 40, cols = 272; /* 17 NVFP4 blocks, two FP8 groups + a partial one */
    const int n = 5;
    nvw q = make_nvfp4(rows, cols);
    float *x = rand_x(n, cols);
    float amax = 0;
    for (int64_t i = 0; i < n * cols; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    const float s_nv = amax / 2688.0f; /* input_scale as calibration writes it */
    g4q_weight_desc d = {.format = G4Q_WF_NVFP4,
                         .rows = rows,
                         .cols = cols,
                         .data = q.packed,
                         .scale = q.scales,
                         .scale2 = &q.wsf2,
                         .name = "w4a4",
                         .act = G4Q_ACTQ_NVFP4,
                         .act_scale = s_nv};
    float *y = malloc((size_t)n * (size_t)rows * sizeof *y);
    check_act_matmul(be, &d, q.deq, x, n, "nvfp4 w4a4", y);
    /* The activation quantization changes the result (else the test proves nothing). */
    d.act = G4Q_ACTQ_NONE;
    float *y0 = malloc((size_t)n * (size_t)rows * sizeof *y0);
    check_act_matmul(be, &d, q.deq, x, n, "nvfp4 weight-only", y0);
    double diff = 0;
    for (int64_t i = 0; i < n * rows; i++)
        diff += fabs((double)y[i] - y0[i]);
    CHECK_MSG(diff > 0, "NVFP4 activations changed nothing");
    d.act = G4Q_ACTQ_FP8_TENSOR;
    d.act_scale = amax / 448.0f;
    check_act_matmul(be, &d, q.deq, x, n, "fp8 tensor activations", NULL);
    d.act = G4Q_ACTQ_FP8_GROUP;
    check_act_matmul(be, &d, q.deq, x, n, "fp8 group activations", NULL);
    /* Bad activation descriptors are refused. */
    g4q_bweight *w = NULL;
    d.act = G4Q_ACTQ_NVFP4;
    d.act_scale = 0;
    CHECK_STATUS(be->weight_bind(be, &d, &w), G4Q_ERR_INVALID);
    d.act = (g4q_actq)9;
    CHECK_STATUS(be->weight_bind(be, &d, &w), G4Q_ERR_INVALID);
    if (dump) {
        struct {
            const char *name;
            const void *p;
            size_t bytes;
        } files[] = {{"x.f32", x, (size_t)(n * cols) * 4},
                     {"packed.u8", q.packed, (size_t)(rows * cols / 2)},
                     {"scales.u8", q.scales, (size_t)(rows * cols / 16)},
                     {"wsf2.f32", &q.wsf2, 4},
                     {"input_scale.f32", &s_nv, 4},
                     {"y.f32", y, (size_t)(n * rows) * 4}};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dump, files[i].name);
            FILE *f = fopen(path, "wb");
            CHECK_MSG(f && fwrite(files[i].p, 1, files[i].bytes, f) == files[i].bytes,
                      "write %s", path);
            if (f) fclose(f);
        }
        printf("dump: rows %lld cols %lld n %d in %s\n", (long long)rows, (long long)cols, n, dump);
    }
    free(y);
    free(y0);
    free(x);
    free(q.packed);
    free(q.scales);
    free(q.deq);
}

static void test_roundtrip_and_stats(g4q_backend *be)
{
    const size_t n = 1000;
    float *v = rand_x(1, (int64_t)n), *got = malloc(n * sizeof *got);
    g4q_buf *b = NULL;
    CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, n, &b), G4Q_OK);
    CHECK_STATUS(be->upload(be, b, 0, v, n), G4Q_OK);
    CHECK_STATUS(be->fp8_roundtrip(be, b, n, 0.03f), G4Q_OK);
    CHECK_STATUS(be->download(be, b, 0, got, n), G4Q_OK);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += got[i] != g4q_fp8_roundtrip(v[i], 0.03f) || fabsf(got[i]) > 448.0f * 0.03f * 1.0001f;
    CHECK_MSG(bad == 0, "fp8_roundtrip: %d values differ", bad);
    be->buf_free(be, b);

    /* logit_stats: rows 0 equal (KL 0), row 1 different, row 2 with an argmax tie. */
    const int V = 50, R = 3;
    float *a = rand_x(R, V), *c = malloc((size_t)(R * V) * sizeof *c);
    memcpy(c, a, (size_t)(R * V) * sizeof *c);
    for (int j = 0; j < V; j++) /* reversed logits: the distributions differ for any data */
        c[V + j] = -a[V + j];
    a[2 * V + 7] = a[2 * V + 30] = 40.0f; /* tie: the first index, 7, is the argmax */
    int32_t tgt[3] = {3, 49, 0};
    g4q_buf *ba = NULL, *bc = NULL;
    CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)(R * V), &ba), G4Q_OK);
    CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)(R * V), &bc), G4Q_OK);
    CHECK_STATUS(be->upload(be, ba, 0, a, (size_t)(R * V)), G4Q_OK);
    CHECK_STATUS(be->upload(be, bc, 0, c, (size_t)(R * V)), G4Q_OK);
    double st[3][5];
    CHECK_STATUS(be->logit_stats(be, ba, bc, tgt, R, V, st), G4Q_OK);
    CHECK_MSG(st[0][0] == 0.0 && st[0][1] == st[0][2] && st[0][3] == st[0][4],
              "equal rows: KL %g, nll %g vs %g", st[0][0], st[0][1], st[0][2]);
    for (int r = 0; r < R; r++) {
        const float *pa = a + r * V, *pc = c + r * V;
        double ma = -INFINITY, mc = -INFINITY, sa = 0, sc = 0, kl = 0;
        for (int j = 0; j < V; j++)
            ma = fmax(ma, pa[j]), mc = fmax(mc, pc[j]);
        for (int j = 0; j < V; j++)
            sa += exp(pa[j] - ma), sc += exp(pc[j] - mc);
        for (int j = 0; j < V; j++) {
            double lpa = pa[j] - ma - log(sa), lpc = pc[j] - mc - log(sc);
            kl += exp(lpa) * (lpa - lpc);
        }
        CHECK_MSG(fabs(st[r][0] - kl) <= 1e-12 + 1e-9 * kl, "row %d: KL %.12g vs %.12g", r,
                  st[r][0], kl);
        CHECK_MSG(fabs(st[r][1] - (ma + log(sa) - pa[tgt[r]])) < 1e-9, "row %d: nll", r);
        CHECK_MSG(st[r][0] >= 0, "row %d: KL negative", r);
    }
    CHECK_MSG(st[1][0] > 1e-4, "different rows: KL %g", st[1][0]);
    CHECK_MSG(st[2][3] == 7, "tie: argmax %g, expected the first index 7", st[2][3]);
    be->buf_free(be, ba);
    be->buf_free(be, bc);
    free(a);
    free(c);
    free(v);
    free(got);
}

int main(int argc, char **argv)
{
    g4q_ctx_init(&g_ctx);
    g_ctx.log_level = G4Q_LOG_ERROR;
    g_rng = g4q_test_seed();
    const char *dump = argc == 3 && strcmp(argv[1], "--dump") == 0 ? argv[2] : NULL;
    g4q_backend *be = NULL;
    if (!CHECK_STATUS(g4q_backend_cpu_create(&g_ctx, &be), G4Q_OK)) return g4q_test_finish();
    test_units();
    test_matmul(be, dump);
    test_roundtrip_and_stats(be);
    g4q_backend_free(be);
    return g4q_test_finish();
}
