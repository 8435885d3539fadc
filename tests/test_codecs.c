/* Tests of src/quant/codecs.h: E2M1, E4M3 and INT4 element codecs against brute-force nearest-code
 * searches and the byte tables of docs/formats.md §1 and §10 (TV-3). */
#include <math.h>
#include <string.h>

#include "quant/codecs.h"
#include "testutil.h"

/* §1.1 table, written out independently of the codec. */
static const float E2M1_TABLE[16] = {0,  0.5f,  1,  1.5f,  2,  3,  4,  6,
                                     -0, -0.5f, -1, -1.5f, -2, -3, -4, -6};

/* E4M3 value of a code from the layout definition (ldexp, doubles); NaN for 0x7F/0xFF. */
static double e4m3_ref(unsigned c)
{
    int s = (c >> 7) & 1, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7)
        return NAN;
    double v = e == 0 ? ldexp(m / 8.0, -6) : ldexp(1.0 + m / 8.0, e - 7);
    return s ? -v : v;
}

/* Nearest non-negative E2M1 magnitude code by search; ties to the even code. */
static unsigned e2m1_mag_bf(double a)
{
    unsigned best = 0;
    double bd = INFINITY;
    for (unsigned c = 0; c < 8; c++) {
        double d = fabs(a - E2M1_TABLE[c]);
        if (d < bd || (d == bd && (c & 1) == 0 && (best & 1))) {
            bd = d;
            best = c;
        }
    }
    return best;
}

/* Nearest E4M3 code to a >= 0 among 0x00..0x7E by search; ties to the even code. */
static unsigned e4m3_nearest_bf(double a)
{
    unsigned best = 0;
    double bd = INFINITY;
    for (unsigned c = 0; c <= 0x7E; c++) {
        double d = fabs(a - e4m3_ref(c));
        if (d < bd || (d == bd && (c & 1) == 0)) {
            bd = d;
            best = c;
        }
    }
    return best;
}

static void test_constants(void)
{
    CHECK_EQ_INT(g4q_f32_bits((float)(1.0 / 2688.0)), G4Q_R2688_BITS);
    CHECK_EQ_INT(g4q_f32_bits((float)(1.0 / 448.0)), G4Q_R448_BITS);
    CHECK_EQ_INT(g4q_f32_bits((float)(1.0 / 1536.0)), G4Q_R1536_BITS);
    CHECK_EQ_INT(G4Q_R2688_BITS, 0x39C30C31u);
    CHECK_EQ_INT(G4Q_R448_BITS, 0x3B124925u);
    CHECK(448.0f * g4q_r448() == 1.0f);
    CHECK(2688.0f * g4q_r2688() == 1.0f);
}

static void test_e2m1(void)
{
    for (unsigned c = 0; c < 16; c++) {
        CHECK_MSG(g4q_e2m1_decode((uint8_t)c) == E2M1_TABLE[c], "nibble %x decodes to %g", c,
                  (double)g4q_e2m1_decode((uint8_t)c));
        /* every value re-encodes to itself, except -0 (0x8) which the ModelOpt rule writes 0 */
        unsigned want = c == 8 ? 0 : c;
        CHECK_EQ_INT(g4q_e2m1_encode(E2M1_TABLE[c]), want);
    }
    /* §1.1 ties */
    const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
    const unsigned tie_code[] = {0, 2, 2, 4, 4, 6, 6};
    for (int i = 0; i < 7; i++) {
        CHECK_EQ_INT(g4q_e2m1_encode(ties[i]), tie_code[i]);
        CHECK_EQ_INT(g4q_e2m1_encode(-ties[i]), tie_code[i] == 0 ? 8 : tie_code[i] | 8);
    }
    /* sign rule and saturation */
    CHECK_EQ_INT(g4q_e2m1_encode(-0.1f), 0x8);
    CHECK_EQ_INT(g4q_e2m1_encode(-0.0f), 0x0);
    CHECK_EQ_INT(g4q_e2m1_encode(0.0f), 0x0);
    CHECK_EQ_INT(g4q_e2m1_encode_ieee_sign(-0.0f), 0x8);
    CHECK_EQ_INT(g4q_e2m1_encode_ieee_sign(0.0f), 0x0);
    CHECK_EQ_INT(g4q_e2m1_encode(INFINITY), 0x7);
    CHECK_EQ_INT(g4q_e2m1_encode(-INFINITY), 0xF);
    CHECK_EQ_INT(g4q_e2m1_encode(1e30f), 0x7);
    CHECK_EQ_INT(g4q_e2m1_encode(5.0001f), 0x7);
    /* random values and the neighbours of every tie against the brute-force nearest code */
    uint64_t rng = g4q_test_seed();
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        float x = (float)((g4q_test_uniform(&rng) * 2 - 1) * 7.0);
        if (i < 14) {
            float t = ties[i / 2];
            x = i & 1 ? nextafterf(t, 10.0f) : nextafterf(t, 0.0f);
        }
        unsigned want = e2m1_mag_bf(fabs((double)x)) | (x < 0 ? 8u : 0u);
        if (g4q_e2m1_encode(x) != want && bad++ < 5)
            CHECK_MSG(0, "E2M1(%.9g) = %x, brute force %x", (double)x, g4q_e2m1_encode(x), want);
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_e4m3_decode(void)
{
    int bad = 0;
    for (unsigned c = 0; c < 256; c++) {
        double want = e4m3_ref(c);
        float got = g4q_e4m3_decode((uint8_t)c);
        if (isnan(want)) {
            CHECK_MSG(isnan(got), "code %02x should be NaN", c);
            continue;
        }
        if ((double)got != want || !signbit(got) != !(c >> 7)) {
            bad++;
            CHECK_MSG(0, "code %02x decodes to %.9g, want %.9g", c, (double)got, want);
        }
        /* every finite code re-encodes to itself, with both encoders */
        if (g4q_e4m3_encode_raw(got) != c || g4q_e4m3_encode_sat(got) != c) {
            bad++;
            CHECK_MSG(0, "code %02x re-encodes to %02x / %02x", c, g4q_e4m3_encode_raw(got),
                      g4q_e4m3_encode_sat(got));
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(g4q_e4m3_decode(0x7E) == 448.0f);
    CHECK(g4q_e4m3_decode(0x38) == 1.0f);
    CHECK(g4q_e4m3_decode(0x20) == 0.125f);
    CHECK(g4q_e4m3_decode(0x01) == ldexpf(1.0f, -9));
    CHECK(g4q_e4m3_decode(0x08) == ldexpf(1.0f, -6));
}

/* TV-3 (weight_scale 1.0) */
static void test_tv3(void)
{
    const float in[] = {448, -224, 1, 0, 3, 100, -0.0625f, 17, 464, 470, ldexpf(1, -10),
                        ldexpf(1, -9)};
    const unsigned raw[] = {0x7e, 0xf6, 0x38, 0x00, 0x44, 0x6c, 0x98, 0x58, 0x7e, 0x7f, 0x00, 0x01};
    for (int i = 0; i < 12; i++) {
        CHECK_MSG(g4q_e4m3_encode_raw(in[i]) == raw[i], "TV-3 raw E4M3(%g) = %02x, want %02x",
                  (double)in[i], g4q_e4m3_encode_raw(in[i]), raw[i]);
        unsigned sat = in[i] == 470 ? 0x7e : raw[i];
        CHECK_MSG(g4q_e4m3_encode_sat(in[i]) == sat, "TV-3 sat E4M3(%g) = %02x, want %02x",
                  (double)in[i], g4q_e4m3_encode_sat(in[i]), sat);
    }
    CHECK_EQ_INT(g4q_e4m3_encode_raw(ldexpf(1.01f, -10)), 0x01);
    CHECK_EQ_INT(g4q_e4m3_encode_raw(INFINITY), 0x7f);
    CHECK_EQ_INT(g4q_e4m3_encode_raw(-INFINITY), 0xff);
    CHECK_EQ_INT(g4q_e4m3_encode_raw(NAN), 0x7f);
    CHECK_EQ_INT(g4q_e4m3_encode_sat(INFINITY), 0x7e);
    CHECK_EQ_INT(g4q_e4m3_encode_sat(-1e30f), 0xfe);
    CHECK_EQ_INT(g4q_e4m3_encode_sat(NAN), 0x7e);
    CHECK_EQ_INT(g4q_e4m3_encode_raw(-0.0f), 0x80);
    CHECK_EQ_INT(g4q_e4m3_encode_raw(464.00003f), 0x7f);
}

/* One check of x against the brute-force encoders; returns 1 on mismatch. */
static int check_e4m3_one(float x)
{
    double a = fabs((double)x);
    unsigned sign = signbit(x) ? 0x80u : 0u;
    unsigned near = e4m3_nearest_bf(a);
    unsigned want_raw = a > 464.0 ? 0x7Fu : near; /* 448 < a <= 464 is nearest 448 */
    unsigned want_sat = a > 448.0 ? 0x7Eu : near;
    unsigned r = g4q_e4m3_encode_raw(x), s = g4q_e4m3_encode_sat(x);
    if (r != (want_raw | sign) || s != (want_sat | sign)) {
        CHECK_MSG(0, "E4M3(%.9g = %08x): raw %02x sat %02x, brute force %02x %02x", (double)x,
                  g4q_f32_bits(x), r, s, want_raw | sign, want_sat | sign);
        return 1;
    }
    return 0;
}

static void test_e4m3_encode(void)
{
    uint64_t rng = g4q_test_seed() ^ 0x5151u;
    int bad = 0;
    /* random magnitudes, log-uniform over 2^-12 .. 2^9.5, both signs */
    for (int i = 0; i < 100000 && bad < 5; i++) {
        float x = (float)ldexp(1.0 + g4q_test_uniform(&rng), (int)(g4q_test_rand(&rng) % 22) - 12);
        if (g4q_test_rand(&rng) & 1)
            x = -x;
        bad += check_e4m3_one(x);
    }
    /* every midpoint between neighbouring codes, and its fp32 neighbours */
    for (unsigned c = 0; c < 0x7E && bad < 5; c++) {
        float mid = (float)((e4m3_ref(c) + e4m3_ref(c + 1)) / 2); /* exact in fp32 */
        bad += check_e4m3_one(mid);
        bad += check_e4m3_one(nextafterf(mid, 0));
        bad += check_e4m3_one(nextafterf(mid, 1000));
    }
    /* a sweep over the top 16 bits of fp32 (every bf16 pattern) with random low bits */
    for (uint32_t h = 0; h < 0x7f80u && bad < 5; h++) {
        uint32_t u = (h << 16) | (uint32_t)(g4q_test_rand(&rng) & 0xffffu);
        if ((u & 0x7fffffffu) > 0x44000000u) /* > 512: covered by the range checks below */
            continue;
        bad += check_e4m3_one(g4q_bits_f32(u));
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_int4(void)
{
    const float in[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 7.5f, -7.5f, -8.5f, 100, -100,
                        6.4999995f, 0.0f, -3.2f};
    const int want[] = {0, 2, 2, 0, -2, -2, 7, -8, -8, 7, -8, 6, 0, -3};
    for (int i = 0; i < 14; i++)
        CHECK_MSG(g4q_int4_encode(in[i]) == want[i], "INT4(%g) = %d, want %d", (double)in[i],
                  g4q_int4_encode(in[i]), want[i]);
    uint64_t rng = g4q_test_seed() ^ 0x77u;
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        float x = (float)((g4q_test_uniform(&rng) * 2 - 1) * 10);
        double r = nearbyint((double)x); /* default rounding mode: ties to even */
        int w = (int)fmin(fmax(r, -8), 7);
        if (g4q_int4_encode(x) != w && bad++ < 5)
            CHECK_MSG(0, "INT4(%.9g) = %d, want %d", (double)x, g4q_int4_encode(x), w);
    }
    CHECK_EQ_INT(bad, 0);
    for (int q = -8; q <= 7; q++)
        CHECK_EQ_INT(g4q_int4_offset_nibble(q), q + 8);
}

int main(void)
{
    test_constants();
    test_e2m1();
    test_e4m3_decode();
    test_tv3();
    test_e4m3_encode();
    test_int4();
    return g4q_test_finish();
}
