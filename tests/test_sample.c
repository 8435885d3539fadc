/*
 * Tests of src/runtime/sample (greedy argmax, suppression, temperature / top-k / top-p sampling,
 * the seeded RNG) and of the incremental detokenizer in src/runtime/generate.
 *
 * Sampling distributions are checked against probabilities computed here from the definitions
 * in sample.h, with a tolerance of 5 binomial standard deviations.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/generate.h"
#include "runtime/sample.h"
#include "testutil.h"

static g4q_ctx g_ctx;
static uint64_t g_rng;

static void test_rng(void)
{
    g4q_rng a, b, c;
    g4q_rng_seed(&a, 42);
    g4q_rng_seed(&b, 42);
    g4q_rng_seed(&c, 43);
    int same = 1, differ = 0, in_range = 1;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = g4q_rng_next(&a), y = g4q_rng_next(&b), z = g4q_rng_next(&c);
        same &= x == y;
        differ += x != z;
        double u = g4q_rng_uniform(&a);
        (void)g4q_rng_uniform(&b);
        (void)g4q_rng_uniform(&c);
        in_range &= u >= 0 && u < 1;
    }
    CHECK_MSG(same, "same seed gives the same stream");
    CHECK_MSG(differ > 990, "seeds 42 and 43 differ in %d of 1000 draws", differ);
    CHECK(in_range);
}

/* Brute-force argmax with ties to the lowest id, skipping masked ids. */
static int32_t ref_argmax(const float *x, int n, const uint8_t *mask)
{
    int32_t best = -1;
    for (int i = 0; i < n; i++)
        if (!(mask && mask[i]) && !isnan(x[i]) && x[i] != -INFINITY && (best < 0 || x[i] > x[best]))
            best = i;
    return best;
}

static void test_greedy(void)
{
    float x[8] = {1, 3, 3, -2, 3, 0, 1, 2};
    CHECK_EQ_INT(g4q_sample_argmax(x, 8, NULL), 1); /* tie 1, 2, 4 -> lowest */
    uint8_t mask[8] = {0, 1, 0, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(g4q_sample_argmax(x, 8, mask), 2);
    uint8_t all[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    CHECK_EQ_INT(g4q_sample_argmax(x, 8, all), -1);
    float ninf[3] = {-INFINITY, -INFINITY, -INFINITY};
    CHECK_EQ_INT(g4q_sample_argmax(ninf, 3, NULL), -1);

    /* sweep awkward sizes on random data, with a few suppressed ids and bf16-like ties */
    static const int sizes[] = {1, 2, 7, 17, 127, 129, 1000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int n = sizes[si];
        float *v = malloc((size_t)n * sizeof *v);
        for (int i = 0; i < n; i++)
            v[i] = (float)floor(g4q_test_normal(&g_rng) * 4) / 4; /* coarse: many ties */
        int32_t sup[3] = {n - 1, n / 2, n + 5};
        g4q_sampler_opts o = {0, 0, 1.0, 1};
        g4q_sampler *s = NULL;
        CHECK_STATUS(g4q_sampler_create(&g_ctx, &o, n, sup, 3, &s), G4Q_OK);
        uint8_t *m = calloc((size_t)n, 1);
        m[n - 1] = m[n / 2] = 1;
        int32_t tok = -2;
        g4q_status st = g4q_sampler_next(s, v, &tok);
        if (ref_argmax(v, n, m) < 0) {
            CHECK_STATUS(st, G4Q_ERR_NUMERIC); /* everything suppressed (n = 1) */
        } else {
            CHECK_STATUS(st, G4Q_OK);
            CHECK_MSG(tok == ref_argmax(v, n, m), "n %d: greedy %d, reference %d", n, (int)tok,
                      (int)ref_argmax(v, n, m));
        }
        g4q_sampler_free(s);
        free(m);
        free(v);
    }
    float nan_row[3] = {0, NAN, 1};
    g4q_sampler_opts o = {0, 0, 1.0, 1};
    g4q_sampler *s = NULL;
    CHECK_STATUS(g4q_sampler_create(&g_ctx, &o, 3, NULL, 0, &s), G4Q_OK);
    int32_t tok;
    CHECK_STATUS(g4q_sampler_next(s, nan_row, &tok), G4Q_ERR_NUMERIC);
    g4q_sampler_free(s);
}

static void test_bad_options(void)
{
    g4q_sampler *s = NULL;
    g4q_sampler_opts bad[] = {{-1, 0, 1, 0}, {NAN, 0, 1, 0}, {1, -3, 1, 0}, {1, 0, 1.5, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STATUS(g4q_sampler_create(&g_ctx, &bad[i], 10, NULL, 0, &s), G4Q_ERR_INVALID);
        CHECK(s == NULL);
    }
}

/* Draws `draws` tokens and compares the frequencies with want[0..n). */
static void check_distribution(const char *what, const float *logits, int n,
                               const g4q_sampler_opts *o, const double *want)
{
    g4q_sampler *s = NULL;
    CHECK_STATUS(g4q_sampler_create(&g_ctx, o, n, NULL, 0, &s), G4Q_OK);
    const int draws = 40000;
    int counts[16] = {0};
    for (int i = 0; i < draws; i++) {
        int32_t tok = -1;
        g4q_sampler_next(s, logits, &tok);
        if (tok >= 0 && tok < n) counts[tok]++;
    }
    for (int i = 0; i < n; i++) {
        double f = (double)counts[i] / draws;
        double tol = 5 * sqrt(want[i] * (1 - want[i]) / draws) + 1e-9;
        CHECK_MSG(fabs(f - want[i]) <= tol, "%s: token %d frequency %.4f, expected %.4f +- %.4f",
                  what, i, f, want[i], tol);
    }
    g4q_sampler_free(s);
}

static void test_distributions(void)
{
    const double p[5] = {0.5, 0.3, 0.15, 0.05, 0.0};
    float lg[5];
    for (int i = 0; i < 4; i++)
        lg[i] = (float)log(p[i]);
    lg[4] = -INFINITY;
    uint64_t seed = g4q_test_rand(&g_rng);

    g4q_sampler_opts plain = {1.0, 0, 1.0, seed};
    check_distribution("temperature 1", lg, 5, &plain, p);

    g4q_sampler_opts topk = {1.0, 3, 1.0, seed};
    const double wk[5] = {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0, 0};
    check_distribution("top-k 3", lg, 5, &topk, wk);

    g4q_sampler_opts topp = {1.0, 0, 0.7, seed}; /* 0.5 < 0.7 <= 0.8: keep tokens 0 and 1 */
    const double wp[5] = {0.5 / 0.8, 0.3 / 0.8, 0, 0, 0};
    check_distribution("top-p 0.7", lg, 5, &topp, wp);

    g4q_sampler_opts temp = {2.0, 0, 1.0, seed}; /* p^(1/2), renormalised */
    double wt[5], z = 0;
    for (int i = 0; i < 5; i++)
        z += wt[i] = sqrt(p[i]);
    for (int i = 0; i < 5; i++)
        wt[i] /= z;
    check_distribution("temperature 2", lg, 5, &temp, wt);

    g4q_sampler_opts k1 = {0.7, 1, 1.0, seed}; /* top-k 1 is greedy */
    const double w1[5] = {1, 0, 0, 0, 0};
    check_distribution("top-k 1", lg, 5, &k1, w1);
}

static void test_topk_sweep(void)
{
    static const int sizes[] = {1, 7, 17, 129, 3000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int n = sizes[si];
        float *v = malloc((size_t)n * sizeof *v);
        for (int i = 0; i < n; i++)
            v[i] = (float)g4q_test_normal(&g_rng) * 3;
        int k = n < 5 ? n : 5;
        /* the k-th largest value: a kept token is >= it */
        float *sorted = malloc((size_t)n * sizeof *sorted);
        memcpy(sorted, v, (size_t)n * sizeof *v);
        for (int i = 0; i < k; i++)
            for (int j = i + 1; j < n; j++)
                if (sorted[j] > sorted[i]) {
                    float t = sorted[i];
                    sorted[i] = sorted[j];
                    sorted[j] = t;
                }
        g4q_sampler_opts o = {1.5, k, 0.9, g4q_test_rand(&g_rng)};
        g4q_sampler *a = NULL, *b = NULL;
        CHECK_STATUS(g4q_sampler_create(&g_ctx, &o, n, NULL, 0, &a), G4Q_OK);
        CHECK_STATUS(g4q_sampler_create(&g_ctx, &o, n, NULL, 0, &b), G4Q_OK);
        int in_topk = 1, same = 1;
        for (int d = 0; d < 300; d++) {
            int32_t x = -1, y = -1;
            g4q_sampler_next(a, v, &x);
            g4q_sampler_next(b, v, &y);
            in_topk &= x >= 0 && x < n && v[x] >= sorted[k - 1];
            same &= x == y;
        }
        CHECK_MSG(in_topk, "n %d: a sampled token outside the top %d", n, k);
        CHECK_MSG(same, "n %d: two samplers with the same seed diverged", n);
        g4q_sampler_free(a);
        g4q_sampler_free(b);
        free(sorted);
        free(v);
    }
}

/* ---- incremental detokenization ---- */

typedef struct sink {
    char buf[256];
    size_t len;
    int calls;
} sink;

static g4q_status collect(void *user, const char *text, size_t len)
{
    sink *s = user;
    if (s->len + len < sizeof s->buf) {
        memcpy(s->buf + s->len, text, len);
        s->len += len;
        s->buf[s->len] = '\0';
    }
    s->calls++;
    return G4Q_OK;
}

static void test_textstream(void)
{
    /* ids: 0 <unk>, 1 a, 2 ▁, 3 <0xC3>, 4 <0xA9>, 5 <0xE2>, 6 <0x82>, 7 <0xAC> */
    static const char json[] =
        "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":null,"
        "\"post_processor\":null,\"decoder\":{\"type\":\"Sequence\",\"decoders\":["
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
        "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]},"
        "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\","
        "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":true,"
        "\"byte_fallback\":true,\"ignore_merges\":false,\"vocab\":{\"<unk>\":0,\"a\":1,"
        "\"\\u2581\":2,\"<0xC3>\":3,\"<0xA9>\":4,\"<0xE2>\":5,\"<0x82>\":6,\"<0xAC>\":7},"
        "\"merges\":[]}}";
    g4q_tok *tok = NULL;
    CHECK_STATUS(g4q_tok_load_json(&g_ctx, json, sizeof json - 1, "inline", &tok), G4Q_OK);
    if (!tok) return;
    struct {
        int32_t ids[8];
        int n;
        const char *want;     /* the whole text */
        const char *after[8]; /* the text emitted after each push */
    } cases[] = {
        {{1, 3, 4, 2, 1}, 5, "a\xC3\xA9 a", {"a", "a", "a\xC3\xA9", "a\xC3\xA9 ", "a\xC3\xA9 a"}},
        {{5, 6, 7, 1},
         4,
         "\xE2\x82\xAC"
         "a",
         {"", "", "\xE2\x82\xAC",
          "\xE2\x82\xAC"
          "a"}},
        {{4, 1},
         2,
         "\xEF\xBF\xBD"
         "a",
         {"", "\xEF\xBF\xBD"
              "a"}},
        {{1, 3}, 2, "a\xEF\xBF\xBD", {"a", "a"}}, /* finish flushes the partial character */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sink s = {{0}, 0, 0};
        g4q_textstream ts;
        g4q_textstream_init(&ts, &g_ctx, tok, collect, &s);
        for (int i = 0; i < cases[c].n; i++) {
            CHECK_STATUS(g4q_textstream_push(&ts, cases[c].ids[i]), G4Q_OK);
            CHECK_MSG(strcmp(s.buf, cases[c].after[i]) == 0, "case %zu push %d: '%s', want '%s'", c,
                      i, s.buf, cases[c].after[i]);
        }
        CHECK_STATUS(g4q_textstream_finish(&ts), G4Q_OK);
        CHECK_MSG(strcmp(s.buf, cases[c].want) == 0, "case %zu: '%s', want '%s'", c, s.buf,
                  cases[c].want);
    }
    /* five stray continuation bytes are emitted rather than held forever */
    sink s = {{0}, 0, 0};
    g4q_textstream ts;
    g4q_textstream_init(&ts, &g_ctx, tok, collect, &s);
    for (int i = 0; i < 5; i++)
        g4q_textstream_push(&ts, 4);
    CHECK_MSG(s.len == 15, "5 stray bytes: %zu bytes emitted before finish", s.len);
    g4q_textstream_finish(&ts);
    g4q_tok_free(tok);
}

int main(void)
{
    g4q_ctx_init(&g_ctx);
    g_rng = g4q_test_seed();
    test_rng();
    test_greedy();
    test_bad_options();
    test_distributions();
    test_topk_sweep();
    test_textstream();
    return g4q_test_finish();
}
