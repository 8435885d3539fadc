/* Tests of src/model/synth: presets and validation, the config round trip through the parser, the
 * expected sizes of the 12b preset (docs/gemma4.md §6.5), the generator's independence from
 * chunking, and the statistics of each kind of tensor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "io/json_write.h"
#include "model/config.h"
#include "model/synth.h"
#include "model/weights.h"
#include "testutil.h"

static void test_presets(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_synth_spec s;
    CHECK_STATUS(g4q_synth_preset(&ctx, "tiny", &s), G4Q_OK);
    CHECK_STATUS(g4q_synth_validate(&ctx, &s), G4Q_OK);
    CHECK_STATUS(g4q_synth_preset(&ctx, "huge", &s), G4Q_ERR_USAGE);
    CHECK(strstr(g4q_ctx_error(&ctx), "huge") != NULL);
    CHECK_STATUS(g4q_synth_preset(&ctx, "small", &s), G4Q_OK);
    CHECK_STATUS(g4q_synth_override(&ctx, &s, 0, 0, 0), G4Q_OK);
    CHECK_EQ_INT(s.n_layers, 12);
    CHECK_STATUS(g4q_synth_override(&ctx, &s, 3, 1024, 4096), G4Q_OK);
    CHECK_EQ_INT(s.n_layers, 3);
    CHECK_EQ_INT(s.hidden, 1024);
    CHECK_EQ_INT(s.intermediate % 128, 0);
    CHECK_EQ_INT(s.vocab, 4096);
    /* Bad overrides are usage errors that say what is wrong. */
    g4q_synth_spec t = s;
    CHECK_STATUS(g4q_synth_override(&ctx, &t, 0, 200, 0), G4Q_ERR_USAGE);
    CHECK(strstr(g4q_ctx_error(&ctx), "128") != NULL);
    t = s;
    CHECK_STATUS(g4q_synth_override(&ctx, &t, 0, 0, 100), G4Q_ERR_USAGE);
    t = s;
    CHECK_STATUS(g4q_synth_override(&ctx, &t, 300, 0, 0), G4Q_ERR_USAGE);
    t = s;
    CHECK_STATUS(g4q_synth_override(&ctx, &t, -1, 0, 0), G4Q_ERR_USAGE);
    t = s;
    t.n_heads = 3; /* 1024 is not a multiple of 3 heads */
    CHECK_STATUS(g4q_synth_validate(&ctx, &t), G4Q_ERR_INVALID);
}

/* Builds config.json for a spec and parses it back. */
static g4q_status roundtrip(g4q_ctx *ctx, const g4q_synth_spec *s, g4q_config *cfg)
{
    cJSON *j = NULL;
    char *text = NULL;
    G4Q_TRY(g4q_synth_config_json(ctx, s, &j));
    g4q_status st = g4q_json_print(ctx, j, 2, 0, &text);
    if (st == G4Q_OK)
        st = g4q_config_parse(ctx, "synthetic", text, cfg);
    cJSON_Delete(j);
    free(text);
    return st;
}

static void test_config(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_config *cfg = malloc(sizeof *cfg);
    g4q_synth_spec s;
    for (int layers = 1; layers <= 13; layers += 3) {
        CHECK_STATUS(g4q_synth_preset(&ctx, "tiny", &s), G4Q_OK);
        CHECK_STATUS(g4q_synth_override(&ctx, &s, layers, 0, 0), G4Q_OK);
        if (!CHECK_STATUS(roundtrip(&ctx, &s, cfg), G4Q_OK)) {
            printf("  %s\n", g4q_ctx_error(&ctx));
            continue;
        }
        CHECK_EQ_INT(cfg->n_layers, layers);
        CHECK_EQ_INT(cfg->hidden, 256);
        CHECK_EQ_INT(cfg->sliding_window, 64);
        CHECK(cfg->has_multimodal);
        for (int i = 0; i < layers; i++) {
            int full = i % 6 == 5 || i == layers - 1;
            const g4q_layer_config *l = &cfg->layers[i];
            CHECK_EQ_INT(l->type, full ? G4Q_LAYER_FULL : G4Q_LAYER_SLIDING);
            CHECK_EQ_INT(l->head_dim, full ? 128 : 64);
            CHECK_EQ_INT(l->n_kv_heads, full ? 1 : 2);
            CHECK_EQ_INT(l->has_v_proj, !full);
        }
        /* 14 tensors per sliding layer, 13 per full, embed + norm, 11 multimodal (§6.3-6.4). */
        int n_full = g4q_config_count_layers(cfg, G4Q_LAYER_FULL);
        CHECK_EQ_INT(g4q_weights_expected_count(cfg), 14 * (layers - n_full) + 13 * n_full + 13);
    }
    /* The 12b preset has exactly the real sizes (docs/gemma4.md §6.5). */
    CHECK_STATUS(g4q_synth_preset(&ctx, "12b", &s), G4Q_OK);
    if (CHECK_STATUS(roundtrip(&ctx, &s, cfg), G4Q_OK)) {
        size_t n = g4q_weights_expected_count(cfg);
        CHECK_EQ_INT(n, 677);
        g4q_weight_spec *specs = calloc(n, sizeof *specs);
        g4q_weights_expected(cfg, G4Q_ORDER_FILE, specs);
        uint64_t params = 0;
        for (size_t i = 0; i < n; i++)
            params += specs[i].numel;
        CHECK_EQ_INT(params, 11959730224ull);
        CHECK_EQ_INT(params * 2, 23919460448ull);
        free(specs);
    }
    /* A 12b with 2 layers (as the CLI test runs it) still parses. */
    CHECK_STATUS(g4q_synth_override(&ctx, &s, 2, 0, 0), G4Q_OK);
    CHECK_STATUS(roundtrip(&ctx, &s, cfg), G4Q_OK);
    free(cfg);
}

/* Whole-tensor fill equals a fill in random chunks (odd offsets and lengths included). */
static void check_chunking(uint64_t seed, const char *name, int ndim, const int64_t *shape,
                           uint64_t *rng)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_synth_gen g;
    if (!CHECK_STATUS(g4q_synth_gen_init(&ctx, seed, name, ndim, shape, &g), G4Q_OK))
        return;
    uint64_t n = (uint64_t)g.rows * (uint64_t)g.cols;
    uint16_t *a = malloc(n * 2), *b = malloc(n * 2);
    g4q_synth_gen_fill(&g, 0, n, a);
    memset(b, 0xff, n * 2);
    for (uint64_t off = 0; off < n;) {
        static const uint64_t sizes[] = {1, 2, 7, 15, 17, 127, 129, 2047, 2049, 5000};
        uint64_t m = sizes[g4q_test_rand(rng) % (sizeof sizes / sizeof sizes[0])];
        if (m > n - off)
            m = n - off;
        g4q_synth_gen_fill(&g, off, m, b + off);
        off += m;
    }
    CHECK_MSG(memcmp(a, b, n * 2) == 0, "%s: chunked fill differs from the whole fill", name);
    /* The same seed reproduces it; another seed does not. */
    g4q_synth_gen h;
    CHECK_STATUS(g4q_synth_gen_init(&ctx, seed, name, ndim, shape, &h), G4Q_OK);
    g4q_synth_gen_fill(&h, 0, n, b);
    CHECK(memcmp(a, b, n * 2) == 0);
    g4q_synth_gen_free(&h);
    CHECK_STATUS(g4q_synth_gen_init(&ctx, seed + 1, name, ndim, shape, &h), G4Q_OK);
    g4q_synth_gen_fill(&h, 0, n, b);
    CHECK_MSG(n == 1 || memcmp(a, b, n * 2) != 0, "%s: seed does not matter", name);
    g4q_synth_gen_free(&h);
    g4q_synth_gen_free(&g);
    free(a);
    free(b);
}

static void test_chunking(void)
{
    uint64_t rng = g4q_test_seed();
    uint64_t seed = g4q_test_rand(&rng);
    const int64_t lin[2] = {33, 257}, emb[2] = {129, 17}, vec[1] = {127}, one[1] = {1};
    check_chunking(seed, "model.language_model.layers.3.mlp.up_proj.weight", 2, lin, &rng);
    check_chunking(seed, "model.language_model.embed_tokens.weight", 2, emb, &rng);
    check_chunking(seed, "model.language_model.layers.0.input_layernorm.weight", 1, vec, &rng);
    check_chunking(seed, "model.language_model.layers.0.layer_scalar", 1, one, &rng);
    check_chunking(seed, "model.vision_embedder.patch_ln1.bias", 1, vec, &rng);
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_synth_gen g;
    CHECK_STATUS(g4q_synth_gen_init(&ctx, seed, "model.language_model.lm_head.weight", 2, lin, &g),
                 G4Q_ERR_INTERNAL);
}

/* Fills a whole tensor and returns it as floats (caller frees). */
static float *generate(uint64_t seed, const char *name, int ndim, const int64_t *shape,
                       uint64_t *n_out, g4q_synth_gen *g)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    if (g4q_synth_gen_init(&ctx, seed, name, ndim, shape, g) != G4Q_OK)
        return NULL;
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (uint64_t)shape[i];
    uint16_t *h = malloc(n * 2);
    float *f = malloc(n * sizeof *f);
    g4q_synth_gen_fill(g, 0, n, h);
    for (uint64_t i = 0; i < n; i++)
        f[i] = g4q_bf16_to_f32(h[i]);
    free(h);
    *n_out = n;
    return f;
}

static void test_normal_quality(uint64_t seed)
{
    /* A plain N(0, 0.02^2) tensor: moments of 2^20 samples and the mass beyond 2 sigma. The
     * tolerances are about 5 standard errors (bf16 rounding adds a relative 2^-9 at most). */
    const int64_t shape[1] = {1 << 20};
    uint64_t n;
    g4q_synth_gen g;
    float *v = generate(seed, "model.vision_embedder.patch_ln1.bias", 1, shape, &n, &g);
    if (!CHECK(v))
        return;
    double s1 = 0, s2 = 0, s4 = 0, tail = 0;
    for (uint64_t i = 0; i < n; i++) {
        double x = v[i] / 0.02;
        s1 += x;
        s2 += x * x;
        s4 += x * x * x * x;
        tail += fabs(x) > 2.0;
    }
    double mean = s1 / n, var = s2 / n - mean * mean, kurt = s4 / n / (var * var);
    CHECK_MSG(fabs(mean) < 5.0 / sqrt((double)n), "mean %g", mean);
    CHECK_MSG(fabs(sqrt(var) - 1.0) < 0.004, "std %g, expected 1", sqrt(var));
    CHECK_MSG(fabs(kurt - 3.0) < 0.025, "kurtosis %g, expected 3", kurt);
    CHECK_MSG(fabs(tail / n - 0.0455) < 0.0015, "P(|z| > 2) = %g, expected 0.0455", tail / n);
    g4q_synth_gen_free(&g);
    free(v);
}

static void test_linear_stats(uint64_t seed)
{
    const int64_t shape[2] = {512, 1024};
    uint64_t n;
    g4q_synth_gen g;
    float *w = generate(seed, "model.language_model.layers.1.self_attn.q_proj.weight", 2, shape,
                        &n, &g);
    if (!CHECK(w))
        return;
    /* Per-column RMS: the median column has std ~ 1/sqrt(fan_in) (gain 1; the row and column
     * spreads move it by a few %); a few columns are 5-20x outliers. */
    double col_ms[1024] = {0}, sum = 0, ss = 0;
    for (int64_t r = 0; r < 512; r++)
        for (int64_t c = 0; c < 1024; c++) {
            double x = w[r * 1024 + c];
            col_ms[c] += x * x / 512.0;
            sum += x;
            ss += x * x;
        }
    double sorted[1024];
    memcpy(sorted, col_ms, sizeof sorted);
    for (int i = 1; i < 1024; i++) /* insertion sort */
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            double t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    double median_std = sqrt(sorted[512]), ref = 1.0 / sqrt(1024.0);
    CHECK_MSG(median_std > 0.85 * ref && median_std < 1.15 * ref, "median column std %g vs %g",
              median_std, ref);
    int outliers = 0;
    for (int c = 0; c < 1024; c++)
        outliers += sqrt(col_ms[c]) > 4.0 * median_std;
    CHECK_MSG(outliers >= 2 && outliers <= 16, "%d outlier columns", outliers);
    CHECK_MSG(fabs(sum / n) < 5.0 * sqrt(ss / n) / sqrt((double)n), "mean %g", sum / n);
    /* Rows: squared norm gain^2 (1) x row spread exp(0.08), plus the outliers: 4 columns of
     * 5-20x add 4 x E[(5 + 15u)^2] / 1024 = 0.68 on average, at most 1.56. */
    double row_ms = ss / 512.0;
    CHECK_MSG(row_ms > 0.95 && row_ms < 1.1 * exp(0.08) * 2.56, "mean squared row norm %g",
              row_ms);
    g4q_synth_gen_free(&g);
    free(w);
}

static void check_range(uint64_t seed, const char *name, int64_t len, double lo, double hi)
{
    const int64_t shape[1] = {len};
    uint64_t n;
    g4q_synth_gen g;
    float *v = generate(seed, name, 1, shape, &n, &g);
    if (!CHECK_MSG(v != NULL, "%s", name))
        return;
    float mn = v[0], mx = v[0];
    for (uint64_t i = 0; i < n; i++) {
        mn = v[i] < mn ? v[i] : mn;
        mx = v[i] > mx ? v[i] : mx;
    }
    /* bf16 rounding may move the end points by a relative 2^-9. */
    CHECK_MSG(mn >= lo * (1 - 1.0 / 256) && mx <= hi * (1 + 1.0 / 256),
              "%s: values in [%g, %g], expected [%g, %g]", name, mn, mx, lo, hi);
    if (len > 100) /* and they do vary per channel */
        CHECK_MSG(mx - mn > 0.3 * (hi - lo), "%s: spread %g only", name, mx - mn);
    g4q_synth_gen_free(&g);
    free(v);
}

static void test_ranges(uint64_t seed)
{
    char name[128];
    double lo = 1, hi = 0;
    for (int l = 0; l < 48; l++) {
        snprintf(name, sizeof name, "model.language_model.layers.%d.layer_scalar", l);
        /* Layer 0 well below 1 (like the real 12B's 0.053), later layers just below 1. */
        if (l == 0)
            check_range(seed, name, 1, 0.05, 0.1);
        else
            check_range(seed, name, 1, 0.85, 1.0);
        const int64_t one[1] = {1};
        uint64_t n;
        g4q_synth_gen g;
        float *v = generate(seed, name, 1, one, &n, &g);
        lo = v[0] < lo ? v[0] : lo;
        hi = v[0] > hi ? v[0] : hi;
        g4q_synth_gen_free(&g);
        free(v);
    }
    CHECK_MSG(hi - lo > 0.5, "layer_scalar barely varies over layers: [%g, %g]", lo, hi);
    check_range(seed, "model.language_model.layers.2.input_layernorm.weight", 3840, 1.0, 8.0);
    check_range(seed, "model.language_model.layers.2.pre_feedforward_layernorm.weight", 3840, 1.0,
                8.0);
    /* Post norms: small updates of the residual stream (synth.c, "Conditioning"). */
    check_range(seed, "model.language_model.layers.0.post_attention_layernorm.weight", 3840,
                0.3 * 0.5, 0.3 * 3.0);
    check_range(seed, "model.language_model.layers.2.post_attention_layernorm.weight", 3840,
                0.0225 * 0.5, 0.0225 * 3.0);
    check_range(seed, "model.language_model.norm.weight", 3840, 2.25, 5.25);
    /* q/k norms scale unit-RMS heads so that sqrt(hd) w_q w_k stays small: 0.35 hd^-1/4. */
    check_range(seed, "model.language_model.layers.5.self_attn.q_norm.weight", 512,
                0.35 * 0.8 * pow(512, -0.25), 0.35 * 1.6 * pow(512, -0.25));
    check_range(seed, "model.language_model.layers.4.self_attn.k_norm.weight", 256,
                0.35 * 0.8 * pow(256, -0.25), 0.35 * 1.6 * pow(256, -0.25));
}

int main(void)
{
    uint64_t rng = g4q_test_seed();
    uint64_t seed = g4q_test_rand(&rng);
    test_presets();
    test_config();
    test_chunking();
    test_normal_quality(seed);
    test_linear_stats(seed);
    test_ranges(seed);
    return g4q_test_finish();
}
