/*
 * Tests of the CPU backend's packed weight formats (backend.h g4q_wformat): for each format,
 * random bf16 weights are quantized with the src/quant CPU quantizers, the packed bytes are bound
 * with weight_bind, and matmul is checked
 *   (a) bit for bit against the src/quant decoder: x = the identity matrix gives y = Wᵀ exactly,
 *       since every output is one product with 1.0 plus exact zeros;
 *   (b) against x · dequant(W)ᵀ summed in double over random x, with the bound of recursive fp32
 *       summation: |y − ref| <= (in + 2) · 2^-24 · Σ_k |x_k · w_k| (γ_{in+2}; the products are
 *       rounded once, the sums at most in − 1 times in any order, the decoded weights are exact).
 * Sizes are awkward (n = 1, 7, 33; rows and cols off the block sizes where the format allows),
 * some packed arrays sit at odd addresses (safetensors data need not be aligned), and bad
 * descriptors are refused.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "base/bf16.h"
#include "quant/codecs.h"
#include "quant/quant.h"
#include "testutil.h"

static g4q_ctx g_ctx;
static uint64_t g_rng;

#define ACC_U 5.9604644775390625e-08 /* 2^-24, fp32 unit roundoff */

static uint16_t *rand_w(int64_t rows, int64_t cols, double sigma)
{
    uint16_t *w = malloc((size_t)(rows * cols) * sizeof *w);
    for (int64_t i = 0; i < rows * cols; i++) {
        double v = g4q_test_normal(&g_rng) * sigma;
        if (g4q_test_uniform(&g_rng) < 0.01) v *= 8; /* a few outliers */
        w[i] = g4q_f32_to_bf16((float)v);
    }
    return w;
}

/* Copies n bytes to a fresh buffer at an odd address; *base receives what to free. */
static void *misalign(const void *src, size_t n, void **base)
{
    unsigned char *b = malloc(n + 1);
    memcpy(b + 1, src, n);
    *base = b;
    return b + 1;
}

/* Checks matmul of the bound weight against the fp32 reference wd[rows, cols]. */
static void check_matmul(g4q_backend *be, const g4q_weight_desc *d, const float *wd,
                         const char *what)
{
    const int64_t rows = d->rows, cols = d->cols;
    g4q_bweight *w = NULL;
    if (!CHECK_STATUS(be->weight_bind(be, d, &w), G4Q_OK)) {
        fprintf(stderr, "  %s: %s\n", what, g4q_ctx_error(&g_ctx));
        return;
    }
    /* (a) identity input: the decoded weights, bit for bit (cols <= 512 keeps this small). */
    if (cols <= 512) {
        float *eye = calloc((size_t)(cols * cols), sizeof *eye);
        float *y = malloc((size_t)(cols * rows) * sizeof *y);
        for (int64_t k = 0; k < cols; k++)
            eye[k * cols + k] = 1.0f;
        g4q_buf *bx = NULL, *by = NULL;
        CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)(cols * cols), &bx), G4Q_OK);
        CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)(cols * rows), &by), G4Q_OK);
        CHECK_STATUS(be->upload(be, bx, 0, eye, (size_t)(cols * cols)), G4Q_OK);
        CHECK_STATUS(be->matmul(be, by, bx, w, (int)cols), G4Q_OK);
        CHECK_STATUS(be->download(be, by, 0, y, (size_t)(cols * rows)), G4Q_OK);
        int64_t bad = 0, first = -1;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < cols; k++) {
                float got = y[k * rows + r], want = wd[r * cols + k];
                if (g4q_f32_bits(got) != g4q_f32_bits(want) && !(got == 0 && want == 0)) {
                    if (first < 0) first = r * cols + k;
                    bad++;
                }
            }
        CHECK_MSG(bad == 0,
                  "%s [%lld, %lld]: %lld decoded weights differ from the decoder (first "
                  "[%lld, %lld]: %g vs %g)",
                  what, (long long)rows, (long long)cols, (long long)bad,
                  first < 0 ? -1LL : (long long)(first / cols),
                  first < 0 ? -1LL : (long long)(first % cols),
                  first < 0 ? 0.0 : (double)y[(first % cols) * rows + first / cols],
                  first < 0 ? 0.0 : (double)wd[first]);
        be->buf_free(be, bx);
        be->buf_free(be, by);
        free(eye);
        free(y);
    }
    /* (b) random inputs, awkward token counts. */
    static const int ns[] = {1, 7, 33};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        const int n = ns[t];
        float *x = malloc((size_t)(n * cols) * sizeof *x);
        float *y = malloc((size_t)(n * rows) * sizeof *y);
        for (int64_t i = 0; i < n * cols; i++)
            x[i] = (float)g4q_test_normal(&g_rng);
        g4q_buf *bx = NULL, *by = NULL;
        CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)(n * cols), &bx), G4Q_OK);
        CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)(n * rows), &by), G4Q_OK);
        CHECK_STATUS(be->upload(be, bx, 0, x, (size_t)(n * cols)), G4Q_OK);
        CHECK_STATUS(be->matmul(be, by, bx, w, n), G4Q_OK);
        CHECK_STATUS(be->download(be, by, 0, y, (size_t)(n * rows)), G4Q_OK);
        double worst = 0.0;
        int ok = 1;
        for (int i = 0; i < n && ok; i++)
            for (int64_t r = 0; r < rows; r++) {
                double ref = 0.0, mag = 0.0;
                for (int64_t k = 0; k < cols; k++) {
                    double p = (double)x[i * cols + k] * (double)wd[r * cols + k];
                    ref += p;
                    mag += fabs(p);
                }
                double tol = (double)(cols + 2) * ACC_U * mag + 1e-30;
                double err = fabs((double)y[i * rows + r] - ref);
                if (err / tol > worst) worst = err / tol;
                if (!(err <= tol)) {
                    CHECK_MSG(0,
                              "%s [%lld, %lld] n=%d: y[%d, %lld] = %.9g, reference %.9g, "
                              "tolerance %.3g",
                              what, (long long)rows, (long long)cols, n, i, (long long)r,
                              (double)y[i * rows + r], ref, tol);
                    ok = 0;
                    break;
                }
            }
        if (ok) CHECK(worst <= 1.0);
        be->buf_free(be, bx);
        be->buf_free(be, by);
        free(x);
        free(y);
    }
    be->weight_free(be, w);
}

/* ---------------------------------------------------------------- formats */

static void test_nvfp4(g4q_backend *be, int64_t rows, int64_t cols, g4q_scale_method m, int ct)
{
    uint16_t *w = rand_w(rows, cols, 0.05);
    uint8_t *packed = malloc((size_t)(rows * cols / 2));
    uint8_t *scales = malloc((size_t)(rows * cols / 16));
    float *wd = malloc((size_t)(rows * cols) * sizeof *wd);
    float amax = 0.0f, g = 0.0f;
    CHECK_STATUS(g4q_quant_amax_bf16(&g_ctx, "w", w, (size_t)(rows * cols), &amax), G4Q_OK);
    if (ct) {
        CHECK_STATUS(g4q_nvfp4_quantize_ct(&g_ctx, "w", w, rows, cols, amax, packed, scales, &g),
                     G4Q_OK);
        g4q_nvfp4_ct_dequantize(packed, scales, g, rows, cols, wd);
    } else {
        CHECK_STATUS(g4q_nvfp4_quantize(&g_ctx, "w", w, rows, cols, amax, m, packed, scales, &g),
                     G4Q_OK);
        g4q_nvfp4_dequantize(packed, scales, g, rows, cols, wd);
    }
    void *b1, *b2, *b3;
    g4q_weight_desc d = {.format = G4Q_WF_NVFP4,
                         .rows = rows,
                         .cols = cols,
                         .data = misalign(packed, (size_t)(rows * cols / 2), &b1),
                         .scale = misalign(scales, (size_t)(rows * cols / 16), &b2),
                         .scale2 = misalign(&g, 4, &b3),
                         .name = ct ? "nvfp4_ct" : "nvfp4",
                         .flags = ct ? G4Q_WD_GLOBAL_RECIPROCAL : 0};
    char what[64];
    snprintf(what, sizeof what, "nvfp4 %s %s", ct ? "ct" : "modelopt", g4q_scale_method_name(m));
    check_matmul(be, &d, wd, what);
    free(b1);
    free(b2);
    free(b3);
    free(w);
    free(packed);
    free(scales);
    free(wd);
}

static void test_fp8(g4q_backend *be, int64_t rows, int64_t cols, int per_tensor)
{
    uint16_t *w = rand_w(rows, cols, 0.05);
    uint8_t *q = malloc((size_t)(rows * cols));
    size_t ns = per_tensor ? 1 : g4q_fp8_block_count(rows, cols);
    float *scales = malloc(ns * sizeof *scales);
    float *wd = malloc((size_t)(rows * cols) * sizeof *wd);
    if (per_tensor) {
        float amax = 0.0f;
        CHECK_STATUS(g4q_quant_amax_bf16(&g_ctx, "w", w, (size_t)(rows * cols), &amax), G4Q_OK);
        CHECK_STATUS(g4q_fp8_quantize_tensor(&g_ctx, "w", w, rows, cols, amax, G4Q_FP8_ROUND_EXACT,
                                             q, scales),
                     G4Q_OK);
        g4q_fp8_dequantize_tensor(q, scales[0], rows, cols, wd);
    } else {
        CHECK_STATUS(g4q_fp8_quantize_blocks(&g_ctx, "w", w, rows, cols, G4Q_SCALE_MAX, q, scales),
                     G4Q_OK);
        g4q_fp8_dequantize_blocks(q, scales, rows, cols, wd);
    }
    void *b1;
    g4q_weight_desc d = {.format = G4Q_WF_FP8_BLOCK,
                         .rows = rows,
                         .cols = cols,
                         .data = q,
                         .scale = misalign(scales, ns * sizeof *scales, &b1),
                         .name = "fp8",
                         .flags = per_tensor ? G4Q_WD_FP8_PER_TENSOR : 0};
    check_matmul(be, &d, wd, per_tensor ? "fp8 per-tensor" : "fp8 block");
    free(b1);
    free(w);
    free(q);
    free(scales);
    free(wd);
}

static void test_int4(g4q_backend *be, int64_t rows, int64_t cols, int group, int gptq,
                      g4q_dtype sdt, g4q_scale_method m)
{
    uint16_t *w = rand_w(rows, cols, 0.05);
    int8_t *q = malloc((size_t)(rows * cols));
    const int64_t ng = cols / group;
    float *scales = malloc((size_t)(rows * ng) * sizeof *scales);
    float *wd = malloc((size_t)(rows * cols) * sizeof *wd);
    int32_t *words = malloc((size_t)(rows * cols / 8) * sizeof *words);
    size_t ssize = g4q_dtype_size(sdt);
    void *sbytes = malloc((size_t)(rows * ng) * ssize);
    CHECK_STATUS(g4q_int4_quantize(&g_ctx, "w", w, rows, cols, group, m, sdt, q, scales), G4Q_OK);
    if (gptq) {
        int32_t *qzeros = malloc((size_t)(ng * rows / 8) * sizeof *qzeros);
        int32_t *gidx = malloc((size_t)cols * sizeof *gidx);
        CHECK_STATUS(g4q_int4_pack_gptq(&g_ctx, "w", q, scales, rows, cols, group, words, qzeros,
                                        sbytes, gidx),
                     G4Q_OK);
        /* The reference goes through the independent unpacker and the decoder. */
        int8_t *q2 = malloc((size_t)(rows * cols));
        float *s2 = malloc((size_t)(rows * ng) * sizeof *s2);
        CHECK_STATUS(
            g4q_int4_unpack_gptq(&g_ctx, "w", words, qzeros, sbytes, rows, cols, group, q2, s2),
            G4Q_OK);
        g4q_int4_dequantize(q2, s2, rows, cols, group, wd);
        free(q2);
        free(s2);
        free(qzeros);
        free(gidx);
    } else {
        CHECK_STATUS(
            g4q_int4_pack_ct(&g_ctx, "w", q, scales, rows, cols, group, sdt, words, sbytes),
            G4Q_OK);
        g4q_int4_dequantize(q, scales, rows, cols, group, wd);
    }
    void *b1, *b2;
    g4q_weight_desc d = {.format = G4Q_WF_INT4,
                         .rows = rows,
                         .cols = cols,
                         .data = misalign(words, (size_t)(rows * cols / 8) * 4, &b1),
                         .scale = misalign(sbytes, (size_t)(rows * ng) * ssize, &b2),
                         .group = group,
                         .name = "int4",
                         .flags = gptq ? G4Q_WD_INT4_GPTQ : 0,
                         .scale_dtype = sdt};
    char what[64];
    snprintf(what, sizeof what, "int4 %s g%d %s %s", gptq ? "gptq" : "ct", group,
             g4q_dtype_name(sdt), g4q_scale_method_name(m));
    check_matmul(be, &d, wd, what);
    free(b1);
    free(b2);
    free(w);
    free(q);
    free(scales);
    free(wd);
    free(words);
    free(sbytes);
}

static void test_bad_descs(g4q_backend *be)
{
    uint8_t bytes[512] = {0};
    float one = 1.0f, zero = 0.0f, nan = NAN;
    g4q_bweight *w = NULL;
    g4q_weight_desc d = {.format = G4Q_WF_NVFP4,
                         .rows = 2,
                         .cols = 20,
                         .data = bytes,
                         .scale = bytes,
                         .scale2 = &one,
                         .name = "odd_cols"};
    CHECK_STATUS(be->weight_bind(be, &d, &w), G4Q_ERR_INVALID);
    CHECK(strstr(g4q_ctx_error(&g_ctx), "odd_cols") != NULL);
    d.cols = 32;
    d.scale2 = &zero;
    CHECK_STATUS(be->weight_bind(be, &d, &w), G4Q_ERR_INVALID);
    d.scale2 = &nan;
    CHECK_STATUS(be->weight_bind(be, &d, &w), G4Q_ERR_INVALID);
    d.scale2 = NULL;
    CHECK_STATUS(be->weight_bind(be, &d, &w), G4Q_ERR_INVALID);
    d.scale2 = &one;
    d.flags = G4Q_WD_INT4_GPTQ;
    CHECK_STATUS(be->weight_bind(be, &d, &w), G4Q_ERR_INVALID);
    g4q_weight_desc i4 = {.format = G4Q_WF_INT4,
                          .rows = 8,
                          .cols = 48,
                          .data = bytes,
                          .scale = bytes,
                          .group = 12,
                          .scale_dtype = G4Q_DT_F16,
                          .name = "g12"};
    CHECK_STATUS(be->weight_bind(be, &i4, &w), G4Q_ERR_INVALID);
    i4.group = 16;
    i4.scale_dtype = G4Q_DT_U8;
    CHECK_STATUS(be->weight_bind(be, &i4, &w), G4Q_ERR_INVALID);
    i4.scale_dtype = G4Q_DT_F32;
    CHECK_STATUS(be->weight_bind(be, &i4, &w), G4Q_OK);
    be->weight_free(be, w);
    g4q_weight_desc f8 = {
        .format = G4Q_WF_FP8_BLOCK, .rows = 8, .cols = 8, .data = bytes, .name = "noscale"};
    CHECK_STATUS(be->weight_bind(be, &f8, &w), G4Q_ERR_INVALID);
    f8.format = G4Q_WF_COUNT;
    CHECK_STATUS(be->weight_bind(be, &f8, &w), G4Q_ERR_UNSUPPORTED);
    /* A packed weight is not a norm or an embedding table. */
    f8.format = G4Q_WF_FP8_BLOCK;
    f8.scale = &one;
    f8.flags = G4Q_WD_FP8_PER_TENSOR;
    f8.rows = 1;
    CHECK_STATUS(be->weight_bind(be, &f8, &w), G4Q_OK);
    g4q_buf *x = NULL;
    CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, 8, &x), G4Q_OK);
    CHECK_STATUS(be->rmsnorm(be, x, x, w, 1, 8, 1e-6f), G4Q_ERR_INTERNAL);
    int32_t id = 0;
    CHECK_STATUS(be->embed(be, x, w, &id, 1, 1.0f), G4Q_ERR_INTERNAL);
    be->buf_free(be, x);
    be->weight_free(be, w);
    be->weight_free(be, NULL);
}

int main(void)
{
    g4q_ctx_init(&g_ctx);
    g_ctx.log_level = G4Q_LOG_WARN;
    g_rng = g4q_test_seed();
    g4q_backend *be = NULL;
    if (!CHECK_STATUS(g4q_backend_cpu_create(&g_ctx, &be), G4Q_OK)) return g4q_test_finish();

    static const int64_t nv_shape[][2] = {{1, 16}, {7, 48}, {17, 272}, {33, 512}, {130, 1040}};
    for (size_t i = 0; i < sizeof nv_shape / sizeof nv_shape[0]; i++) {
        test_nvfp4(be, nv_shape[i][0], nv_shape[i][1], G4Q_SCALE_MAX, 0);
        test_nvfp4(be, nv_shape[i][0], nv_shape[i][1], G4Q_SCALE_MSE, 0);
        test_nvfp4(be, nv_shape[i][0], nv_shape[i][1], G4Q_SCALE_FOUR_OVER_SIX, 0);
        test_nvfp4(be, nv_shape[i][0], nv_shape[i][1], G4Q_SCALE_MAX, 1);
    }
    static const int64_t f8_shape[][2] = {{1, 1}, {7, 33}, {129, 130}, {17, 300}, {256, 640}};
    for (size_t i = 0; i < sizeof f8_shape / sizeof f8_shape[0]; i++) {
        test_fp8(be, f8_shape[i][0], f8_shape[i][1], 0);
        test_fp8(be, f8_shape[i][0], f8_shape[i][1], 1);
    }
    static const struct {
        int64_t rows, cols;
        int group;
    } i4_shape[] = {{8, 32, 32}, {24, 96, 32}, {136, 256, 128}, {16, 384, 128}, {40, 1024, 128}};
    static const g4q_dtype sdts[] = {G4Q_DT_F16, G4Q_DT_BF16, G4Q_DT_F32};
    for (size_t i = 0; i < sizeof i4_shape / sizeof i4_shape[0]; i++) {
        test_int4(be, i4_shape[i].rows, i4_shape[i].cols, i4_shape[i].group, 1, G4Q_DT_F16,
                  i % 2 ? G4Q_SCALE_MSE : G4Q_SCALE_MAX);
        test_int4(be, i4_shape[i].rows, i4_shape[i].cols, i4_shape[i].group, 0, sdts[i % 3],
                  i % 2 ? G4Q_SCALE_MAX : G4Q_SCALE_MSE);
    }
    /* CT with rows not a multiple of 8 (allowed by pack-quantized). */
    test_int4(be, 7, 256, 128, 0, G4Q_DT_BF16, G4Q_SCALE_MAX);
    test_bad_descs(be);
    g4q_backend_free(be);
    return g4q_test_finish();
}
