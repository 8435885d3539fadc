/*
 * Tests of the CPU reference quantizers (src/quant/quant.h): the byte-exact test vectors of
 * docs/formats.md §10, comparisons against straightforward re-implementations of the spec
 * formulas (brute-force codecs, no early exits), decoder error bounds derived from the formats,
 * awkward shapes, thread-count determinism, the INT4 packers, and the quality gates with the
 * measured SQNR of every format x method x distribution.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "quant/codecs.h"
#include "quant/quant.h"
#include "testutil.h"

static const float E2M1_TABLE[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};

/* ---------------- independent reference codecs ---------------- */

static double e4m3_ref(unsigned c)
{
    int s = (c >> 7) & 1, e = (c >> 3) & 15, m = c & 7;
    double v = e == 0 ? ldexp(m / 8.0, -6) : ldexp(1.0 + m / 8.0, e - 7);
    return s ? -v : v;
}

/* nearest code of |x| among 0x00..0x7E (saturating), ties to even, sign bit of x */
static uint8_t ref_e4m3(float x)
{
    double a = fabs((double)x);
    unsigned best = 0;
    double bd = INFINITY;
    for (unsigned c = 0; c <= 0x7E; c++) {
        double d = fabs(a - e4m3_ref(c));
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

static uint8_t ref_e2m1(float q)
{
    return (uint8_t)(ref_e2m1_mag(fabsf(q)) | (q < 0 ? 8u : 0u));
}

static float bf(uint16_t h)
{
    float f;
    uint32_t u = (uint32_t)h << 16;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint16_t to_bf16(float f)
{
    uint32_t u = bits(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* ---------------- reference quantizers written from the spec text ---------------- */

/* §2.3 steps 4-5 for one block */
static void ref_nvfp4_encode(const uint16_t *w, uint8_t sc, float wsf2, uint8_t *out8)
{
    float denom = (float)e4m3_ref(sc) * wsf2;
    for (int i = 0; i < 8; i++)
        out8[i] = (uint8_t)(ref_e2m1(bf(w[2 * i]) / denom) |
                            (ref_e2m1(bf(w[2 * i + 1]) / denom) << 4));
}

static uint8_t ref_scale_code(float bamax, float d)
{
    float s = bamax / d;
    if (s == 0)
        s = 1.0f;
    s = fminf(fmaxf(s, ldexpf(1, -9)), 448.0f);
    return ref_e4m3(s);
}

static float ref_block_sse(const uint16_t *w, uint8_t sc, float wsf2)
{
    float denom = (float)e4m3_ref(sc) * wsf2, err = 0;
    uint8_t p[8];
    ref_nvfp4_encode(w, sc, wsf2, p);
    for (int i = 0; i < 16; i++) {
        unsigned nib = (p[i / 2] >> (4 * (i & 1))) & 15u;
        float v = E2M1_TABLE[nib & 7] * ((nib & 8) ? -1.0f : 1.0f);
        float d = bf(w[i]) - v * denom;
        err += d * d;
    }
    return err;
}

static void ref_nvfp4(const uint16_t *w, int64_t rows, int64_t cols, float G,
                      g4q_scale_method m, uint8_t *packed, uint8_t *scales, float *wsf2_out)
{
    float wsf2 = G == 0 ? 1.0f
                        : G * (float)(1.0 / (m == G4Q_SCALE_FOUR_OVER_SIX ? 1536.0 : 2688.0));
    for (int64_t b = 0; b < rows * cols / 16; b++) {
        const uint16_t *x = w + b * 16;
        float bamax = 0;
        for (int i = 0; i < 16; i++)
            bamax = fmaxf(bamax, fabsf(bf(x[i])));
        uint8_t sc = ref_scale_code(bamax, 6.0f * wsf2);
        if (m == G4Q_SCALE_MSE) {
            sc = 0x38;
            float best = INFINITY;
            for (unsigned c = 1; bamax > 0 && c <= 126; c++) {
                float s = (float)e4m3_ref(c) / 448.0f * G / 6.0f, err = 0;
                for (int i = 0; i < 16; i++) {
                    float a = fabsf(bf(x[i]));
                    float t = a - E2M1_TABLE[ref_e2m1_mag(a / s)] * s;
                    err += t * t;
                }
                if (err < best) {
                    best = err;
                    sc = (uint8_t)c;
                }
            }
        } else if (m == G4Q_SCALE_FOUR_OVER_SIX && bamax > 0) {
            uint8_t sc4 = ref_scale_code(bamax, 4.0f * wsf2);
            if (ref_block_sse(x, sc4, wsf2) < ref_block_sse(x, sc, wsf2))
                sc = sc4;
        }
        scales[b] = sc;
        ref_nvfp4_encode(x, sc, wsf2, packed + b * 8);
    }
    *wsf2_out = wsf2;
}

static void ref_fp8_blocks(const uint16_t *w, int64_t rows, int64_t cols, int mse, uint8_t *q,
                           float *scales)
{
    int64_t nbc = (cols + 127) / 128;
    for (int64_t r0 = 0; r0 < rows; r0 += 128)
        for (int64_t c0 = 0; c0 < cols; c0 += 128) {
            int64_t r1 = r0 + 128 < rows ? r0 + 128 : rows, c1 = c0 + 128 < cols ? c0 + 128 : cols;
            float A = 0;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++)
                    A = fmaxf(A, fabsf(bf(w[r * cols + c])));
            float s = A == 0 ? 1.0f : A * (float)(1.0 / 448.0);
            if (mse && A > 0) {
                double best = INFINITY;
                for (int k = 0; k < 39; k++) {
                    float sk = (A * (float)(0.25 + k * 3.75 / 38)) * (float)(1.0 / 448.0);
                    double loss = 0;
                    for (int64_t r = r0; r < r1; r++) {
                        double row = 0;
                        for (int64_t c = c0; c < c1; c++) {
                            float x = bf(w[r * cols + c]);
                            float d = x - (float)e4m3_ref(g4q_e4m3_encode_sat(x / sk)) * sk;
                            row += (double)d * d;
                        }
                        loss += row;
                    }
                    if (loss < best) {
                        best = loss;
                        s = sk;
                    }
                }
            }
            scales[(r0 / 128) * nbc + c0 / 128] = s;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++)
                    q[r * cols + c] = ref_e4m3(bf(w[r * cols + c]) / s);
        }
}

/* INT4 reference with f16 scale storage */
static float f16_round(float s)
{
    uint16_t h = g4q_f32_to_f16(s); /* tested against every f16 value in test_base */
    return g4q_f16_to_f32(h == 0 ? 1 : h);
}

static void ref_int4(const uint16_t *w, int64_t rows, int64_t cols, int group, int mse,
                     int8_t *q, float *scales)
{
    int64_t ng = (cols + group - 1) / group;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < ng; g++) {
            int64_t c0 = g * group, c1 = c0 + group < cols ? c0 + group : cols;
            float A = 0;
            for (int64_t c = c0; c < c1; c++)
                A = fmaxf(A, fabsf(bf(w[r * cols + c])));
            float s = A == 0 ? 1.0f : f16_round(A / 7.5f);
            if (mse && A > 0) {
                double best = INFINITY;
                for (int k = 0; k <= 120; k++) {
                    float sk = f16_round(A * ((float)(100 + k) / 200.0f) / 7.5f);
                    double loss = 0;
                    for (int64_t c = c0; c < c1; c++) {
                        float x = bf(w[r * cols + c]);
                        float d = x - (float)fmin(fmax(nearbyint(x / sk), -8), 7) * sk;
                        loss += (double)d * d;
                    }
                    if (loss < best) {
                        best = loss;
                        s = sk;
                    }
                }
            }
            scales[r * ng + g] = s;
            for (int64_t c = c0; c < c1; c++)
                q[r * cols + c] =
                    (int8_t)fmin(fmax(nearbyint(bf(w[r * cols + c]) / s), -8), 7);
        }
}

/* ---------------- data ---------------- */

static void fill_gauss(uint16_t *w, size_t n, uint64_t *rng, double sigma)
{
    for (size_t i = 0; i < n; i++)
        w[i] = to_bf16((float)(g4q_test_normal(rng) * sigma));
}

static void fill_laplace(uint16_t *w, size_t n, uint64_t *rng, double b)
{
    for (size_t i = 0; i < n; i++) {
        double u = g4q_test_uniform(rng);
        double x = -b * log(1.0 - g4q_test_uniform(rng));
        w[i] = to_bf16((float)(u < 0.5 ? -x : x));
    }
}

static double rel_mse(const uint16_t *w, const float *deq, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double x = bf(w[i]), d = x - deq[i];
        num += d * d;
        den += x * x;
    }
    return den > 0 ? num / den : 0;
}

static void from_hex(uint16_t *dst, const char *hex)
{
    for (int i = 0; *hex; i++) {
        dst[i] = (uint16_t)strtoul(hex, (char **)&hex, 16);
        while (*hex == ' ')
            hex++;
    }
}

static int check_bytes(const uint8_t *got, const char *want_hex, const char *what)
{
    unsigned n = 0;
    for (const char *p = want_hex; *p;) {
        unsigned v = (unsigned)strtoul(p, (char **)&p, 16);
        if (got[n] != v)
            return CHECK_MSG(0, "%s: byte %u is %02x, want %02x", what, n, got[n], v);
        n++;
        while (*p == ' ')
            p++;
    }
    return CHECK_MSG(1, "%s", what);
}

/* ---------------- §10 test vectors ---------------- */

static void test_tv1(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint16_t w[64];
    from_hex(w, "0000 3ce0 bd60 3da8 3de0 be0c 3e28 3e44 3e60 be8c 3ea8 3ec4 bee0 3f0c 3f1a 3f28");
    memset(w + 16, 0, 32);
    from_hex(w + 32, "0000 38e0 b960 39a8 39e0 ba0c 3a28 3a44 3a60 ba8c 3aa8 3ac4 bae0 3b0c 3b1a "
                     "3b28");
    from_hex(w + 48, "be9a be85 be61 be38 be0f bdcd bd76 bca4 3ca4 3d76 3dcd 3e0f 3e38 3e61 3e85 "
                     "3e9a");
    float amax;
    CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "tv1", w, 64, &amax), G4Q_OK);
    CHECK(amax == 0.65625f);
    uint8_t packed[32], sc[4];
    float wsf2 = 0;
    CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "tv1", w, 1, 64, amax, G4Q_SCALE_MAX, packed, sc, &wsf2),
                 G4Q_OK);
    CHECK_EQ_INT(bits(wsf2), 0x39800000u);
    check_bytes(sc, "7e 38 3e 75", "TV-1 weight_scale");
    check_bytes(packed,
                "00 29 a2 43 c4 65 6e 77 00 00 00 00 00 00 00 00 00 29 a2 43 c4 65 6e 77 "
                "ff ee cd 9a 21 54 66 77",
                "TV-1 weight");
    /* compressed-tensors: gs = 2688/amax = 4096 (exact); the zero block stores 0x20 */
    float gs = 0;
    CHECK_STATUS(g4q_nvfp4_quantize_ct(&ctx, "tv1", w, 1, 64, amax, packed, sc, &gs), G4Q_OK);
    CHECK(gs == 4096.0f);
    CHECK_EQ_INT(sc[1], 0x20);
    check_bytes(packed + 8, "00 00 00 00 00 00 00 00", "TV-1 CT zero block");
    /* power-of-two global scale: CT and ModelOpt agree on the other blocks */
    check_bytes(sc, "7e 20 3e 75", "TV-1 CT weight_scale");
}

static void test_tv2(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint16_t w[16];
    for (int i = 0; i < 15; i++)
        w[i] = 0x3f80;
    w[15] = 0x3fa6;
    float G;
    uint32_t gb = 0x402C0831u;
    memcpy(&G, &gb, 4);
    CHECK(G == 2.688f);
    uint8_t p[8], sc;
    float wsf2;
    CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "tv2", w, 1, 16, G, G4Q_SCALE_MAX, p, &sc, &wsf2),
                 G4Q_OK);
    CHECK_EQ_INT(bits(wsf2), 0x3A83126Fu);
    CHECK_EQ_INT(sc, 0x76);
    check_bytes(p, "66 66 66 66 66 66 66 76", "TV-2 max");
    CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "tv2", w, 1, 16, G, G4Q_SCALE_MSE, p, &sc, &wsf2),
                 G4Q_OK);
    CHECK_EQ_INT(bits(wsf2), 0x3A83126Fu);
    CHECK_EQ_INT(sc, 0x7a);
    check_bytes(p, "55 55 55 55 55 55 55 65", "TV-2 mse");
    /* the SSE of the chosen candidate, 0.02428 */
    float s = 320.0f / 448.0f * G / 6.0f, err = 0;
    for (int i = 0; i < 16; i++) {
        float t = bf(w[i]) - E2M1_TABLE[ref_e2m1_mag(bf(w[i]) / s)] * s;
        err += t * t;
    }
    CHECK_MSG(fabsf(err - 0.02428f) < 5e-5f, "TV-2 SSE %g", (double)err);
}

static void test_tv4(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint16_t w[5] = {0x3b05, 0x3b11, 0x3b5b, 0x3d9c, 0x3da2};
    const char *want[3] = {"53 55 59 7d 7e", "54 55 5a 7e 7e", "54 54 59 7e 7e"};
    const g4q_fp8_rounding mode[3] = {G4Q_FP8_ROUND_EXACT, G4Q_FP8_ROUND_MO_GPU,
                                      G4Q_FP8_ROUND_MO_CPU};
    for (int m = 0; m < 3; m++) {
        uint8_t q[5];
        float s;
        CHECK_STATUS(
            g4q_fp8_quantize_tensor(&ctx, "tv4", w, 1, 5, bf(0x3da2), mode[m], q, &s),
            G4Q_OK);
        CHECK_EQ_INT(bits(s), 0x39392493u);
        CHECK_EQ_INT(g4q_f32_to_bf16(s), 0x3939);
        check_bytes(q, want[m], "TV-4");
    }
}

static void test_tv5(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() ^ 5;
    const int R = 256, C = 384;
    uint16_t *w = malloc((size_t)R * C * 2);
    uint8_t *q = malloc((size_t)R * C);
    fill_gauss(w, (size_t)R * C, &rng, 0.05);
    for (int r = 0; r < 128; r++)
        for (int c = 128; c < 256; c++)
            w[r * C + c] = 0;
    for (int r = 128; r < 256; r++)
        for (int c = 256; c < 384; c++)
            w[r * C + c] = 0;
    w[5 * C + 200] = 0x4040; /* 3.0 */
    float sc[6];
    CHECK_EQ_INT(g4q_fp8_block_count(R, C), 6);
    for (int m = 0; m < 2; m++) {
        g4q_scale_method meth = m ? G4Q_SCALE_MSE : G4Q_SCALE_MAX;
        CHECK_STATUS(g4q_fp8_quantize_blocks(&ctx, "tv5", w, R, C, meth, q, sc), G4Q_OK);
        if (m == 0)
            CHECK_EQ_INT(bits(sc[0 * 3 + 1]), 0x3BDB6DB8u);
        CHECK_EQ_INT(bits(sc[1 * 3 + 2]), 0x3F800000u);
        int bad = 0;
        for (int r = 0; r < 128; r++)
            for (int c = 128; c < 256; c++)
                bad += (r == 5 && c == 200) ? q[r * C + c] != (m ? q[r * C + c] : 0x7e)
                                            : q[r * C + c] != 0;
        for (int r = 128; r < 256; r++)
            for (int c = 256; c < 384; c++)
                bad += q[r * C + c] != 0;
        CHECK_MSG(bad == 0, "TV-5 (%s): %d wrong bytes in the zero blocks",
                  g4q_scale_method_name(meth), bad);
    }
    free(w);
    free(q);
}

static void test_tv6(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    /* q, k, v with amaxes 1, 3, 2; the group amax is their max */
    uint16_t qw[16] = {0}, kw[16] = {0}, vw[16] = {0};
    qw[3] = 0x3f80;       /* 1.0 */
    qw[7] = 0xbf00;       /* -0.5 */
    kw[0] = 0xc040;       /* -3.0 */
    vw[9] = 0x4000;       /* 2.0 */
    float a[3], G = 0;
    const uint16_t *ws[3] = {qw, kw, vw};
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "tv6", ws[i], 16, &a[i]), G4Q_OK);
        G = fmaxf(G, a[i]);
    }
    CHECK(a[0] == 1.0f && a[1] == 3.0f && a[2] == 2.0f);
    for (int i = 0; i < 3; i++) {
        uint8_t p[8], sc;
        float wsf2;
        CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "tv6", ws[i], 1, 16, G, G4Q_SCALE_MAX, p, &sc,
                                        &wsf2),
                     G4Q_OK);
        CHECK_EQ_INT(bits(wsf2), 0x3A924925u);
        if (i == 0)
            CHECK_EQ_INT(sc, 0x71);
    }
    /* quantizing a member with a global amax below its own amax is refused */
    uint8_t p[8], sc;
    float wsf2;
    CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "k_proj", kw, 1, 16, 1.0f, G4Q_SCALE_MAX, p, &sc, &wsf2),
                 G4Q_ERR_INVALID);
    CHECK(strstr(g4q_ctx_error(&ctx), "k_proj") != NULL);
}

/* ---------------- reference comparisons on awkward shapes ---------------- */

static void test_nvfp4_shapes(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() ^ 0x4444u;
    const int64_t outs[] = {1, 7, 129}, ins[] = {16, 48, 144};
    const g4q_scale_method meths[] = {G4Q_SCALE_MAX, G4Q_SCALE_MSE, G4Q_SCALE_FOUR_OVER_SIX};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            int64_t R = outs[a], C = ins[b], n = R * C;
            uint16_t *w = malloc((size_t)n * 2);
            uint8_t *p = malloc((size_t)n / 2), *rp = malloc((size_t)n / 2);
            uint8_t *s = malloc((size_t)n / 16), *rs = malloc((size_t)n / 16);
            float *deq = malloc((size_t)n * 4);
            if (b == 1)
                fill_laplace(w, (size_t)n, &rng, 0.01);
            else
                fill_gauss(w, (size_t)n, &rng, 0.02);
            /* a zero block, a tiny block, a negative zero and an outlier */
            memset(w, 0, 32);
            if (n >= 48) {
                for (int i = 16; i < 32; i++)
                    w[i] = (uint16_t)(0x0080u + (unsigned)i); /* ~1e-38, far below 2^-9 wsf2 */
                w[33] = 0x8000;
                w[40] = 0x3f00;
            }
            float amax;
            CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w, (size_t)n, &amax), G4Q_OK);
            /* the fused group's amax is sometimes larger than this member's */
            float G = (g4q_test_rand(&rng) & 1) ? amax : amax * 1.7f;
            for (int m = 0; m < 3; m++) {
                float wsf2, rwsf2;
                CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "w", w, R, C, G, meths[m], p, s, &wsf2),
                             G4Q_OK);
                ref_nvfp4(w, R, C, G, meths[m], rp, rs, &rwsf2);
                CHECK_MSG(bits(wsf2) == bits(rwsf2) && memcmp(p, rp, (size_t)n / 2) == 0 &&
                              memcmp(s, rs, (size_t)n / 16) == 0,
                          "NVFP4 %s [%lld, %lld]: bytes differ from the reference",
                          g4q_scale_method_name(meths[m]), (long long)R, (long long)C);
                /* the decoder matches the reference decode of the bytes */
                g4q_nvfp4_dequantize(p, s, wsf2, R, C, deq);
                int bad = 0;
                for (int64_t i = 0; i < n; i++) {
                    unsigned nib = (p[i / 2] >> (4 * (i & 1))) & 15u;
                    double v = E2M1_TABLE[nib & 7] * ((nib & 8) ? -1.0 : 1.0) *
                               e4m3_ref(s[i / 16]) * wsf2;
                    bad += fabs(v - deq[i]) > 1e-6 * fabs(v);
                }
                CHECK_MSG(bad == 0, "NVFP4 decoder: %d values off", bad);
                /* §2.3 only: element error <= half the E2M1 step at |q| (saturation above 6
                 * costs at most |q| - 6 <= 1 since the E4M3 scale rounds by <= 2^-4), times
                 * the block divisor */
                if (meths[m] == G4Q_SCALE_MAX) {
                    bad = 0;
                    for (int64_t i = 0; i < n; i++) {
                        double denom = (double)(float)(e4m3_ref(s[i / 16]) * wsf2);
                        double aq = fabs(bf(w[i])) / denom;
                        double half = aq <= 2 ? 0.25 : aq <= 4 ? 0.5 : 1.0;
                        if (fabs(bf(w[i]) - deq[i]) > half * denom * (1 + 1e-6) + 1e-30)
                            bad++;
                    }
                    CHECK_MSG(bad == 0, "NVFP4 max [%lld, %lld]: %d elements beyond the bound",
                              (long long)R, (long long)C, bad);
                }
            }
            /* compressed-tensors: the same bound with divisor E4M3/gs; zero block -> 0x20 */
            float gs;
            CHECK_STATUS(g4q_nvfp4_quantize_ct(&ctx, "w", w, R, C, G, p, s, &gs), G4Q_OK);
            CHECK_EQ_INT(s[0], 0x20);
            CHECK(bits(gs) == bits(G == 0 ? 1.0f : 2688.0f / G));
            g4q_nvfp4_ct_dequantize(p, s, gs, R, C, deq);
            int bad = 0;
            for (int64_t i = 16; i < n; i++) {
                double denom = e4m3_ref(s[i / 16]) / gs;
                double aq = fabs(bf(w[i])) / denom;
                double half = aq <= 2 ? 0.25 : aq <= 4 ? 0.5 : 1.0;
                bad += fabs(bf(w[i]) - deq[i]) > half * denom * (1 + 1e-5) + 1e-30;
            }
            CHECK_MSG(bad == 0, "CT NVFP4 [%lld, %lld]: %d elements beyond the bound", (long long)R,
                      (long long)C, bad);
            free(w), free(p), free(rp), free(s), free(rs), free(deq);
        }
}

static void test_fp8_shapes(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() ^ 0x8888u;
    const int64_t shapes[][2] = {{1, 1}, {7, 130}, {129, 257}, {200, 128}, {1, 300}};
    for (int t = 0; t < 5; t++) {
        int64_t R = shapes[t][0], C = shapes[t][1], n = R * C;
        size_t nb = g4q_fp8_block_count(R, C);
        uint16_t *w = malloc((size_t)n * 2);
        uint8_t *q = malloc((size_t)n), *rq = malloc((size_t)n);
        float *s = malloc(nb * 4), *rs = malloc(nb * 4), *deq = malloc((size_t)n * 4);
        fill_gauss(w, (size_t)n, &rng, 0.03);
        for (int mse = 0; mse < 2; mse++) {
            CHECK_STATUS(g4q_fp8_quantize_blocks(&ctx, "w", w, R, C,
                                                 mse ? G4Q_SCALE_MSE : G4Q_SCALE_MAX, q, s),
                         G4Q_OK);
            ref_fp8_blocks(w, R, C, mse, rq, rs);
            CHECK_MSG(memcmp(q, rq, (size_t)n) == 0 && memcmp(s, rs, nb * 4) == 0,
                      "FP8 blocks %s [%lld, %lld]: bytes differ from the reference",
                      mse ? "mse" : "max", (long long)R, (long long)C);
            g4q_fp8_dequantize_blocks(q, s, R, C, deq);
            /* max: no saturation, so |w/s - E4M3| <= half an E4M3 ulp: max(2^-4 |w/s|, 2^-10) */
            int bad = 0;
            int64_t nbc = (C + 127) / 128;
            for (int64_t r = 0; r < R && !mse; r++)
                for (int64_t c = 0; c < C; c++) {
                    double sc = s[(r / 128) * nbc + c / 128], x = bf(w[r * C + c]);
                    double tol = fmax(fabs(x / sc) / 16, ldexp(1, -10)) * sc * (1 + 1e-6);
                    bad += fabs(x - deq[r * C + c]) > tol;
                }
            CHECK_MSG(bad == 0, "FP8 blocks [%lld, %lld]: %d elements beyond the bound",
                      (long long)R, (long long)C, bad);
        }
        /* per tensor, exact mode: the same bound with one scale */
        float amax, ts;
        CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w, (size_t)n, &amax), G4Q_OK);
        CHECK_STATUS(
            g4q_fp8_quantize_tensor(&ctx, "w", w, R, C, amax, G4Q_FP8_ROUND_EXACT, q, &ts),
            G4Q_OK);
        g4q_fp8_dequantize_tensor(q, ts, R, C, deq);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            double x = bf(w[i]);
            bad += q[i] != ref_e4m3(bf(w[i]) / ts);
            bad += fabs(x - deq[i]) > fmax(fabs(x / ts) / 16, ldexp(1, -10)) * ts * (1 + 1e-6);
        }
        CHECK_MSG(bad == 0, "FP8 tensor [%lld, %lld]: %d bad elements", (long long)R,
                  (long long)C, bad);
        free(w), free(q), free(rq), free(s), free(rs), free(deq);
    }
}

static void test_int4_shapes(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() ^ 0x4141u;
    const int64_t shapes[][2] = {{1, 1}, {7, 100}, {129, 257}, {8, 384}, {3, 128}};
    for (int t = 0; t < 5; t++) {
        int64_t R = shapes[t][0], C = shapes[t][1], n = R * C;
        int64_t ng = g4q_int4_group_count(C, 128);
        uint16_t *w = malloc((size_t)n * 2);
        int8_t *q = malloc((size_t)n), *rq = malloc((size_t)n);
        float *s = malloc((size_t)(R * ng) * 4), *rs = malloc((size_t)(R * ng) * 4);
        float *deq = malloc((size_t)n * 4);
        fill_laplace(w, (size_t)n, &rng, 0.01);
        if (n > 300)
            for (int i = 0; i < 128; i++)
                w[C + i] = 0; /* a zero group in row 1 */
        for (int mse = 0; mse < 2; mse++) {
            CHECK_STATUS(g4q_int4_quantize(&ctx, "w", w, R, C, 128,
                                           mse ? G4Q_SCALE_MSE : G4Q_SCALE_MAX, G4Q_DT_F16, q, s),
                         G4Q_OK);
            ref_int4(w, R, C, 128, mse, rq, rs);
            CHECK_MSG(memcmp(q, rq, (size_t)n) == 0 && memcmp(s, rs, (size_t)(R * ng) * 4) == 0,
                      "INT4 %s [%lld, %lld]: bytes differ from the reference",
                      mse ? "mse" : "max", (long long)R, (long long)C);
            g4q_int4_dequantize(q, s, R, C, 128, deq);
            int bad = 0;
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < C; c++) {
                    double sc = s[r * ng + c / 128], x = bf(w[r * C + c]);
                    /* max: error <= s/2 unless |w/s| > 7.5 (the f16-rounded scale can be
                     * below amax/7.5, by up to 2^-11 relative, more for subnormal scales),
                     * then the clamp to 7 costs |w| - 7s */
                    if (!mse)
                        bad += fabs(x - deq[r * C + c]) >
                               fmax(0.5 * sc, fabs(x) - 7 * sc) * (1 + 1e-6);
                    /* GPTQ's offset form gives q + 8 */
                    if (!mse)
                        bad += fmin(fmax(nearbyint(x / sc) + 8, 0), 15) != q[r * C + c] + 8;
                }
            CHECK_MSG(bad == 0, "INT4 [%lld, %lld]: %d elements beyond the bound", (long long)R,
                      (long long)C, bad);
            if (n > 300)
                CHECK(s[1 * ng] == 1.0f && q[C] == 0);
        }
        free(w), free(q), free(rq), free(s), free(rs), free(deq);
    }
}

/* ---------------- determinism, packers, zeros, errors ---------------- */

/* Runs every quantizer into one byte buffer (concatenated outputs). */
static size_t run_all(g4q_ctx *ctx, const uint16_t *w, int64_t R, int64_t C, uint8_t *out)
{
    size_t o = 0;
    int64_t n = R * C;
    const g4q_scale_method nv[] = {G4Q_SCALE_MAX, G4Q_SCALE_MSE, G4Q_SCALE_FOUR_OVER_SIX};
    float amax, f;
    CHECK_STATUS(g4q_quant_amax_bf16(ctx, "w", w, (size_t)n, &amax), G4Q_OK);
    for (int m = 0; m < 3; m++) {
        CHECK_STATUS(g4q_nvfp4_quantize(ctx, "w", w, R, C, amax, nv[m], out + o,
                                        out + o + n / 2, &f),
                     G4Q_OK);
        o += (size_t)(n / 2 + n / 16);
    }
    CHECK_STATUS(g4q_nvfp4_quantize_ct(ctx, "w", w, R, C, amax, out + o, out + o + n / 2, &f),
                 G4Q_OK);
    o += (size_t)(n / 2 + n / 16);
    for (int m = 0; m < 2; m++) {
        g4q_scale_method meth = m ? G4Q_SCALE_MSE : G4Q_SCALE_MAX;
        CHECK_STATUS(g4q_fp8_quantize_blocks(ctx, "w", w, R, C, meth, out + o,
                                             (float *)(void *)(out + o + n)),
                     G4Q_OK);
        o += (size_t)n + g4q_fp8_block_count(R, C) * 4;
        CHECK_STATUS(g4q_int4_quantize(ctx, "w", w, R, C, 128, meth, G4Q_DT_F16,
                                       (int8_t *)(out + o), (float *)(void *)(out + o + n)),
                     G4Q_OK);
        o += (size_t)n + (size_t)(R * g4q_int4_group_count(C, 128)) * 4;
    }
    CHECK_STATUS(g4q_fp8_quantize_tensor(ctx, "w", w, R, C, amax, G4Q_FP8_ROUND_EXACT, out + o,
                                         &f),
                 G4Q_OK);
    return o + (size_t)n;
}

static void test_determinism(void)
{
    uint64_t rng = g4q_test_seed() ^ 0xd0d0u;
    const int64_t R = 300, C = 400; /* partial FP8 blocks and INT4 groups */
    uint16_t *w = malloc((size_t)(R * C) * 2);
    fill_gauss(w, (size_t)(R * C), &rng, 0.02);
    size_t cap = (size_t)(R * C) * 8 + 4096 * 4;
    uint8_t *ref = calloc(cap, 1), *got = calloc(cap, 1);
    const int threads[] = {1, 2, 4};
    size_t n0 = 0;
    for (int t = 0; t < 3; t++) {
        g4q_ctx ctx;
        g4q_ctx_init(&ctx);
        omp_set_num_threads(threads[t]);
        size_t n = run_all(&ctx, w, R, C, t == 0 ? ref : got);
        if (t == 0) {
            n0 = n;
            /* ctx->threads overrides the OpenMP default */
            ctx.threads = 3;
            memset(got, 0, cap);
            run_all(&ctx, w, R, C, got);
            CHECK_MSG(memcmp(ref, got, n) == 0, "ctx.threads = 3 changed the bytes");
        } else {
            CHECK_MSG(n == n0 && memcmp(ref, got, n) == 0, "%d threads changed the bytes",
                      threads[t]);
        }
    }
    omp_set_num_threads(omp_get_num_procs());
    free(w), free(ref), free(got);
}

static void test_packers(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() ^ 0x9a9au;
    const int64_t R = 24, C = 384, G = 128, ng = C / G;
    uint16_t *w = malloc((size_t)(R * C) * 2);
    int8_t *q = malloc((size_t)(R * C)), *q2 = malloc((size_t)(R * C));
    float *s = malloc((size_t)(R * ng) * 4), *s2 = malloc((size_t)(R * ng) * 4);
    int32_t *qw = malloc((size_t)(R * C) / 2), *qz = malloc((size_t)(ng * R / 8) * 4);
    int32_t *gi = malloc((size_t)C * 4), *wp = malloc((size_t)(R * C) / 2);
    uint16_t *sf = malloc((size_t)(R * ng) * 2);
    fill_gauss(w, (size_t)(R * C), &rng, 0.02);
    CHECK_STATUS(g4q_int4_quantize(&ctx, "w", w, R, C, (int)G, G4Q_SCALE_MSE, G4Q_DT_F16, q, s),
                 G4Q_OK);
    CHECK_STATUS(g4q_int4_pack_gptq(&ctx, "w", q, s, R, C, (int)G, qw, qz, sf, gi), G4Q_OK);
    int bad = 0;
    for (int64_t i = 0; i < C / 8; i++)
        for (int64_t n = 0; n < R; n++)
            for (int j = 0; j < 8; j++)
                bad += (int)(((uint32_t)qw[i * R + n] >> (4 * j)) & 15u) != q[n * C + 8 * i + j] + 8;
    for (int64_t i = 0; i < ng * R / 8; i++)
        bad += qz[i] != 2004318071;
    for (int64_t i = 0; i < C; i++)
        bad += gi[i] != i / G;
    for (int64_t g = 0; g < ng; g++)
        for (int64_t n = 0; n < R; n++)
            bad += g4q_f16_to_f32(sf[g * R + n]) != s[n * ng + g];
    CHECK_MSG(bad == 0, "GPTQ layout: %d mismatches", bad);
    CHECK_STATUS(g4q_int4_unpack_gptq(&ctx, "w", qw, qz, sf, R, C, (int)G, q2, s2), G4Q_OK);
    CHECK(memcmp(q, q2, (size_t)(R * C)) == 0 && memcmp(s, s2, (size_t)(R * ng) * 4) == 0);
    /* compressed-tensors: [out, in/8] words, same nibble order, scales [out, in/128] */
    CHECK_STATUS(g4q_int4_pack_ct(&ctx, "w", q, s, R, C, (int)G, G4Q_DT_F16, wp, sf), G4Q_OK);
    bad = 0;
    for (int64_t n = 0; n < R; n++)
        for (int64_t i = 0; i < C / 8; i++)
            for (int j = 0; j < 8; j++)
                bad += (int)(((uint32_t)wp[n * (C / 8) + i] >> (4 * j)) & 15u) !=
                       q[n * C + 8 * i + j] + 8;
    for (int64_t i = 0; i < R * ng; i++)
        bad += g4q_f16_to_f32(sf[i]) != s[i];
    CHECK_MSG(bad == 0, "CT pack-quantized layout: %d mismatches", bad);
    /* BF16 scales: quantize with them, pack, compare */
    CHECK_STATUS(g4q_int4_quantize(&ctx, "w", w, R, C, (int)G, G4Q_SCALE_MAX, G4Q_DT_BF16, q, s),
                 G4Q_OK);
    CHECK_STATUS(g4q_int4_pack_ct(&ctx, "w", q, s, R, C, (int)G, G4Q_DT_BF16, wp, sf), G4Q_OK);
    CHECK(bf(sf[5]) == s[5]);
    /* f16 packers refuse scales that are not f16 values */
    s[0] = 1.0f + ldexpf(1, -20);
    CHECK_STATUS(g4q_int4_pack_gptq(&ctx, "w", q, s, R, C, (int)G, qw, qz, sf, gi),
                 G4Q_ERR_INVALID);
    CHECK_STATUS(g4q_int4_pack_gptq(&ctx, "w", q, s, R, 100, (int)G, qw, qz, sf, gi),
                 G4Q_ERR_SHAPE);
    free(w), free(q), free(q2), free(s), free(s2), free(qw), free(qz), free(gi), free(wp),
        free(sf);
}

static void test_zero_and_errors(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint16_t w[7 * 48] = {0};
    w[5] = 0x8000; /* -0.0 */
    uint8_t p[7 * 24], s[7 * 3];
    float f;
    const g4q_scale_method nv[] = {G4Q_SCALE_MAX, G4Q_SCALE_MSE, G4Q_SCALE_FOUR_OVER_SIX};
    for (int m = 0; m < 3; m++) {
        memset(p, 0xab, sizeof p);
        CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "zero", w, 7, 48, 0.0f, nv[m], p, s, &f), G4Q_OK);
        int bad = f != 1.0f;
        for (int i = 0; i < 7 * 24; i++)
            bad += p[i] != 0;
        for (int i = 0; i < 7 * 3; i++)
            bad += s[i] != 0x38;
        CHECK_MSG(bad == 0, "NVFP4 %s zero tensor: %d wrong", g4q_scale_method_name(nv[m]), bad);
    }
    CHECK_STATUS(g4q_nvfp4_quantize_ct(&ctx, "zero", w, 7, 48, 0.0f, p, s, &f), G4Q_OK);
    CHECK(f == 1.0f && s[0] == 0x20 && p[2] == 0x80); /* -0.0 -> 0x8 under the IEEE sign rule */
    uint8_t q[7 * 48];
    float fs[2];
    CHECK_STATUS(g4q_fp8_quantize_blocks(&ctx, "zero", w, 7, 48, G4Q_SCALE_MSE, q, fs), G4Q_OK);
    CHECK(fs[0] == 1.0f);
    CHECK_STATUS(g4q_fp8_quantize_tensor(&ctx, "zero", w, 7, 48, 0.0f, G4Q_FP8_ROUND_EXACT, q, &f),
                 G4Q_OK);
    CHECK(f == 1.0f && q[0] == 0);
    int8_t iq[7 * 48];
    float is[7];
    CHECK_STATUS(g4q_int4_quantize(&ctx, "zero", w, 7, 48, 128, G4Q_SCALE_MSE, G4Q_DT_F16, iq, is),
                 G4Q_OK);
    CHECK(is[0] == 1.0f && iq[0] == 0);
    /* errors name the tensor */
    CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "mlp.x", w, 7, 47, 1.0f, G4Q_SCALE_MAX, p, s, &f),
                 G4Q_ERR_SHAPE);
    CHECK(strstr(g4q_ctx_error(&ctx), "mlp.x") != NULL);
    w[17] = 0x7fc0; /* NaN */
    CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "mlp.y", w, 7, 48, 1.0f, G4Q_SCALE_MAX, p, s, &f),
                 G4Q_ERR_NUMERIC);
    CHECK(strstr(g4q_ctx_error(&ctx), "element 17") != NULL);
    w[17] = 0xff80; /* -inf */
    CHECK_STATUS(g4q_int4_quantize(&ctx, "mlp.z", w, 7, 48, 128, G4Q_SCALE_MAX, G4Q_DT_F16, iq, is),
                 G4Q_ERR_NUMERIC);
    w[17] = 0x7f00; /* 1.7e38: the f16 scale overflows */
    CHECK_STATUS(g4q_int4_quantize(&ctx, "mlp.z", w, 7, 48, 128, G4Q_SCALE_MAX, G4Q_DT_F16, iq, is),
                 G4Q_ERR_NUMERIC);
    /* every MSE candidate overflows too: refused, not a silent scale of 1 */
    CHECK_STATUS(g4q_int4_quantize(&ctx, "mlp.z", w, 7, 48, 128, G4Q_SCALE_MSE, G4Q_DT_F16, iq, is),
                 G4Q_ERR_NUMERIC);
    CHECK(strstr(g4q_ctx_error(&ctx), "overflows") != NULL);
    CHECK_STATUS(g4q_int4_quantize(&ctx, "mlp.z", w, 7, 48, 128, G4Q_SCALE_MAX, G4Q_DT_BF16, iq,
                                   is),
                 G4Q_OK);
    CHECK_STATUS(g4q_fp8_quantize_blocks(&ctx, "f", w, 7, 48, G4Q_SCALE_FOUR_OVER_SIX, q, fs),
                 G4Q_ERR_INVALID);
}

/* ---------------- quality gates (fixed seed, 2^20 values) ---------------- */

static double sqnr_db(double rel)
{
    return rel > 0 ? -10.0 * log10(rel) : INFINITY;
}

/* Best relative MSE over a dense scale grid (m = 0.300 .. 1.300 step 0.001, f16 scales): how far
 * the library's 121-candidate INT4 search is from the best RTN scale per group. */
static double int4_dense_rel_mse(const uint16_t *w, int64_t groups)
{
    double num = 0, den = 0;
    for (int64_t g = 0; g < groups; g++) {
        const uint16_t *x = w + g * 128;
        float A = 0;
        for (int i = 0; i < 128; i++)
            A = fmaxf(A, fabsf(bf(x[i])));
        double best = INFINITY;
        for (int k = 300; k <= 1300; k++) {
            float s = f16_round(A * (float)(k / 1000.0) / 7.5f);
            double l = 0;
            for (int i = 0; i < 128; i++) {
                float d = bf(x[i]) - (float)fmin(fmax(nearbyint(bf(x[i]) / s), -8), 7) * s;
                l += (double)d * d;
            }
            best = fmin(best, l);
        }
        num += best;
        for (int i = 0; i < 128; i++)
            den += (double)bf(x[i]) * bf(x[i]);
    }
    return num / den;
}

static void test_quality(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    const int64_t R = 1024, C = 1024, n = R * C;
    uint16_t *w = malloc((size_t)n * 2);
    uint8_t *p = malloc((size_t)n), *s = malloc((size_t)n / 16);
    int8_t *q = malloc((size_t)n);
    float *fs = malloc((size_t)n / 16 * 4), *deq = malloc((size_t)n * 4);
    printf("SQNR (dB) on 2^20 bf16 values, fixed seed; relative MSE in brackets\n");
    for (int dist = 0; dist < 2; dist++) {
        uint64_t rng = 0x6a09e667f3bcc908ull + (uint64_t)dist; /* fixed: gates must be stable */
        const char *dn = dist ? "laplace" : "gauss";
        if (dist)
            fill_laplace(w, (size_t)n, &rng, 0.02 / sqrt(2.0));
        else
            fill_gauss(w, (size_t)n, &rng, 0.02);
        float amax, f;
        CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w, (size_t)n, &amax), G4Q_OK);
        double nv[3];
        const g4q_scale_method meths[] = {G4Q_SCALE_MAX, G4Q_SCALE_MSE, G4Q_SCALE_FOUR_OVER_SIX};
        for (int m = 0; m < 3; m++) {
            CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "w", w, R, C, amax, meths[m], p, s, &f), G4Q_OK);
            g4q_nvfp4_dequantize(p, s, f, R, C, deq);
            nv[m] = rel_mse(w, deq, (size_t)n);
            printf("  %-8s nvfp4       %-14s %6.2f dB  [%.4e]\n", dn,
                   g4q_scale_method_name(meths[m]), sqnr_db(nv[m]), nv[m]);
        }
        CHECK_STATUS(g4q_nvfp4_quantize_ct(&ctx, "w", w, R, C, amax, p, s, &f), G4Q_OK);
        g4q_nvfp4_ct_dequantize(p, s, f, R, C, deq);
        double ct = rel_mse(w, deq, (size_t)n);
        printf("  %-8s nvfp4-ct    %-14s %6.2f dB  [%.4e]\n", dn, "max", sqnr_db(ct), ct);
        CHECK_MSG(fabs(ct / nv[0] - 1) < 0.01, "CT max %.4e vs ModelOpt max %.4e", ct, nv[0]);
        double gain_mse = 1 - nv[1] / nv[0], gain_46 = 1 - nv[2] / nv[0];
        printf("  %-8s nvfp4 mse lowers the MSE by %.1f%%, 4-over-6 by %.1f%%\n", dn,
               100 * gain_mse, 100 * gain_46);
        CHECK_MSG(gain_mse >= 0.20, "%s: NVFP4 mse gain %.1f%% < 20%%", dn, 100 * gain_mse);
        CHECK_MSG(gain_46 >= 0.10, "%s: NVFP4 4-over-6 gain %.1f%% < 10%%", dn, 100 * gain_46);

        const g4q_fp8_rounding rm[] = {G4Q_FP8_ROUND_EXACT, G4Q_FP8_ROUND_MO_GPU};
        for (int m = 0; m < 2; m++) {
            CHECK_STATUS(g4q_fp8_quantize_tensor(&ctx, "w", w, R, C, amax, rm[m], p, &f), G4Q_OK);
            g4q_fp8_dequantize_tensor(p, f, R, C, deq);
            double r = rel_mse(w, deq, (size_t)n);
            printf("  %-8s fp8-tensor  %-14s %6.2f dB  [%.4e]\n", dn, m ? "mo-gpu" : "exact",
                   sqnr_db(r), r);
        }
        double fb[2];
        for (int m = 0; m < 2; m++) {
            CHECK_STATUS(g4q_fp8_quantize_blocks(&ctx, "w", w, R, C, meths[m], p, fs), G4Q_OK);
            g4q_fp8_dequantize_blocks(p, fs, R, C, deq);
            fb[m] = rel_mse(w, deq, (size_t)n);
            printf("  %-8s fp8-block   %-14s %6.2f dB  [%.4e]\n", dn,
                   g4q_scale_method_name(meths[m]), sqnr_db(fb[m]), fb[m]);
        }
        double i4[2];
        for (int m = 0; m < 2; m++) {
            CHECK_STATUS(g4q_int4_quantize(&ctx, "w", w, R, C, 128, meths[m], G4Q_DT_F16, q, fs),
                         G4Q_OK);
            g4q_int4_dequantize(q, fs, R, C, 128, deq);
            i4[m] = rel_mse(w, deq, (size_t)n);
            printf("  %-8s int4-g128   %-14s %6.2f dB  [%.4e]\n", dn,
                   g4q_scale_method_name(meths[m]), sqnr_db(i4[m]), i4[m]);
        }
        double gain_i4 = 1 - i4[1] / i4[0];
        /* Gate 15%, not 20%: with one RTN scale per 128 values the best scale per group
         * (checked below with a 1001-point grid) lowers the MSE by only ~17-18% on these
         * distributions, so 20% is unreachable by any scale search. */
        printf("  %-8s int4 mse lowers the MSE by %.1f%%\n", dn, 100 * gain_i4);
        CHECK_MSG(gain_i4 >= 0.15, "%s: INT4 mse gain %.1f%% < 15%%", dn, 100 * gain_i4);
        /* near-optimality of the 121-candidate grid on the first 2^16 values */
        CHECK_STATUS(g4q_int4_quantize(&ctx, "w", w, 64, 1024, 128, G4Q_SCALE_MSE, G4Q_DT_F16, q,
                                       fs),
                     G4Q_OK);
        g4q_int4_dequantize(q, fs, 64, 1024, 128, deq);
        double ours = rel_mse(w, deq, 65536), dense = int4_dense_rel_mse(w, 512);
        printf("  %-8s int4 mse vs a 1001-point scale grid: %.4e vs %.4e (%.2f%% apart)\n", dn,
               ours, dense, 100 * (ours / dense - 1));
        CHECK_MSG(ours <= dense * 1.01, "INT4 mse %.4e is > 1%% above the dense optimum %.4e",
                  ours, dense);
    }
    fflush(stdout);
    free(w), free(p), free(s), free(q), free(fs), free(deq);
}

int main(void)
{
    test_tv1();
    test_tv2();
    test_tv4();
    test_tv5();
    test_tv6();
    test_nvfp4_shapes();
    test_fp8_shapes();
    test_int4_shapes();
    test_determinism();
    test_packers();
    test_zero_and_errors();
    test_quality();
    return g4q_test_finish();
}
