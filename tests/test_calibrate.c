/*
 * Tests of calibration (src/calib): the forward observer against an independent double-precision
 * forward written here (the same naive reference as test_forward.c, straight from
 * docs/gemma4.md §4, extended to record max |x| at each observation site), over several samples
 * with fresh caches and a chunk size smaller than the sample; the dataset sampling rule of
 * src/calib/dataset.h re-derived here from its text; and the no-token errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "base/bf16.h"
#include "base/sys.h"
#include "calib/calibrate.h"
#include "calib/dataset.h"
#include "model/forward.h"
#include "runtime/kvcache.h"
#include "testutil.h"

static g4q_ctx g_ctx;
static uint64_t g_rng;

static float randn(double sigma)
{
    return (float)(g4q_test_normal(&g_rng) * sigma);
}

static uint16_t *rand_bf16(size_t n, double mean, double sigma)
{
    uint16_t *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = g4q_f32_to_bf16((float)mean + randn(sigma));
    return p;
}

static double bf(const uint16_t *p, size_t i)
{
    return (double)g4q_bf16_to_f32(p[i]);
}

/* ---------------------------------------------------------------- (b) a model in memory */

#define TM_MAX_TENSORS (2 + 14 * 8)

typedef struct tmodel {
    g4q_config cfg;
    g4q_weights w;
    g4q_tensor t[TM_MAX_TENSORS];
    char names[TM_MAX_TENSORS][96];
    int nt;
} tmodel;

static const g4q_tensor *tm_add(tmodel *m, const char *name, int64_t rows, int64_t cols,
                                double mean, double sigma)
{
    g4q_tensor *t = &m->t[m->nt];
    snprintf(m->names[m->nt], sizeof m->names[0], "%s", name);
    m->nt++;
    t->name = m->names[m->nt - 1];
    t->dtype = G4Q_DT_BF16;
    t->ndim = rows == 1 ? 1 : 2;
    t->shape[0] = rows == 1 ? cols : rows;
    t->shape[1] = cols;
    t->numel = (uint64_t)(rows * cols);
    t->nbytes = t->numel * 2;
    t->data = rand_bf16(t->numel, mean, sigma);
    return t;
}

/* Gemma 4 layout with small sizes: layer i is full iff i % 6 == 5 (k_eq_v, 1 KV head, head_dim
 * ghd, proportional RoPE theta 1e6 with 1/4 of the angles); sliding layers have kv heads of hd. */
static void tm_build(tmodel *m, int n_layers, int d, int inter, int vocab, int H, int kv, int hd,
                     int ghd, int window)
{
    memset(m, 0, sizeof *m);
    g4q_config *c = &m->cfg;
    c->prefix = "model.language_model.";
    c->vocab_size = vocab;
    c->hidden = d;
    c->intermediate = inter;
    c->n_layers = n_layers;
    c->n_heads = H;
    c->sliding_window = window;
    c->attention_k_eq_v = 1;
    c->tie_word_embeddings = 1;
    c->rms_norm_eps = 1e-6;
    c->final_logit_softcapping = 30.0;
    c->embed_scale = g4q_round_bf16((float)sqrt((double)d));
    c->max_position_embeddings = 4096;
    char nm[96];
    m->w.n_layers = n_layers;
    m->w.embed_tokens = tm_add(m, "model.language_model.embed_tokens.weight", vocab, d, 0, 1.0);
    for (int l = 0; l < n_layers; l++) {
        g4q_layer_config *lc = &c->layers[l];
        int full = l % 6 == 5;
        lc->type = full ? G4Q_LAYER_FULL : G4Q_LAYER_SLIDING;
        lc->head_dim = full ? ghd : hd;
        lc->n_kv_heads = full ? 1 : kv;
        lc->has_v_proj = !full;
        lc->rope.type = full ? G4Q_ROPE_PROPORTIONAL : G4Q_ROPE_DEFAULT;
        lc->rope.theta = full ? 1e6 : 1e4;
        lc->rope.partial_rotary_factor = full ? 0.25 : 1.0;
        lc->rope_angles = (int)(lc->rope.partial_rotary_factor * lc->head_dim / 2);
        g4q_layer_weights *lw = &m->w.layers[l];
        int q = H * lc->head_dim, k = lc->n_kv_heads * lc->head_dim;
#define TM(field, suffix, r, cc, mu, sg)                                                           \
    snprintf(nm, sizeof nm, "model.language_model.layers.%d.%s", l, suffix);                       \
    lw->field = tm_add(m, nm, r, cc, mu, sg)
        TM(layer_scalar, "layer_scalar", 1, 1, 0.8, 0.3);
        TM(q_proj, "self_attn.q_proj.weight", q, d, 0, 1 / sqrt(d));
        TM(q_norm, "self_attn.q_norm.weight", 1, lc->head_dim, 1.0, 0.3);
        TM(k_norm, "self_attn.k_norm.weight", 1, lc->head_dim, 1.0, 0.3);
        TM(k_proj, "self_attn.k_proj.weight", k, d, 0, 1 / sqrt(d));
        if (!full) {
            TM(v_proj, "self_attn.v_proj.weight", k, d, 0, 1 / sqrt(d));
        }
        TM(o_proj, "self_attn.o_proj.weight", d, q, 0, 1 / sqrt(q));
        TM(gate_proj, "mlp.gate_proj.weight", inter, d, 0, 1 / sqrt(d));
        TM(up_proj, "mlp.up_proj.weight", inter, d, 0, 1 / sqrt(d));
        TM(down_proj, "mlp.down_proj.weight", d, inter, 0, 1 / sqrt(inter));
        TM(input_layernorm, "input_layernorm.weight", 1, d, 1.0, 0.3);
        TM(post_attention_layernorm, "post_attention_layernorm.weight", 1, d, 0.7, 0.3);
        TM(pre_feedforward_layernorm, "pre_feedforward_layernorm.weight", 1, d, 1.0, 0.3);
        TM(post_feedforward_layernorm, "post_feedforward_layernorm.weight", 1, d, 0.7, 0.3);
#undef TM
    }
    m->w.norm = tm_add(m, "model.language_model.norm.weight", 1, d, 1.0, 0.3);
}

static void tm_free(tmodel *m)
{
    for (int i = 0; i < m->nt; i++)
        free((void *)m->t[i].data);
}

/* ---- the independent double-precision forward (docs/gemma4.md §4, no KV cache) ---- */

static double tw(const g4q_tensor *t, size_t i)
{
    return bf((const uint16_t *)t->data, i);
}

/* y[n, out] = x[n, in] · Wᵀ */
static void ref_linear(const double *x, int n, const g4q_tensor *W, int out, int in, double *y)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int k = 0; k < in; k++)
                s += x[(size_t)i * in + k] * tw(W, (size_t)o * in + k);
            y[(size_t)i * out + o] = s;
        }
}

/* x·(mean(x²)+eps)^-1/2·w over each of rows rows of length n (w may be NULL). */
static void ref_norm(double *x, int rows, int n, const g4q_tensor *w, double eps)
{
    for (int r = 0; r < rows; r++) {
        double *v = x + (size_t)r * n, ss = 0;
        for (int i = 0; i < n; i++)
            ss += v[i] * v[i];
        double inv = 1.0 / sqrt(ss / n + eps);
        for (int i = 0; i < n; i++)
            v[i] = v[i] * inv * (w ? tw(w, i) : 1.0);
    }
}

/* Rotate-half: dim j pairs with j + hd/2; angles j >= n_rot have inv_freq 0 (unchanged). */
static void ref_rope(double *v, int hd, int n_rot, double theta, int pos)
{
    for (int j = 0; j < n_rot; j++) {
        double ang = pos * pow(theta, -2.0 * j / hd), c = cos(ang), s = sin(ang);
        double a = v[j], b = v[j + hd / 2];
        v[j] = a * c - b * s;
        v[j + hd / 2] = b * c + a * s;
    }
}

/* Attention of layer l for all T tokens; a[T, d] normed input, result o[T, d] (after o_proj). */
static void amax_into(double *am, const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *am = fmax(*am, fabs(x[i]));
}

/* am[site] receives max |x| at each observation site of layer l (forward.h). */
static void ref_attention(const tmodel *m, int l, const double *a, int T, double *o, double *am)
{
    const g4q_config *c = &m->cfg;
    const g4q_layer_weights *lw = &m->w.layers[l];
    const int full = (l % 6 == 5), d = c->hidden, H = c->n_heads;
    const int hd = c->layers[l].head_dim, kv = c->layers[l].n_kv_heads;
    const int n_rot = full ? (int)(0.25 * hd / 2) : hd / 2;
    const double theta = full ? 1e6 : 1e4;
    double *q = malloc(sizeof(double) * (size_t)T * H * hd);
    double *k = malloc(sizeof(double) * (size_t)T * kv * hd);
    double *v = malloc(sizeof(double) * (size_t)T * kv * hd);
    double *att = calloc((size_t)T * H * hd, sizeof(double));
    double *p = malloc(sizeof(double) * (size_t)T);
    ref_linear(a, T, lw->q_proj, H * hd, d, q);
    ref_linear(a, T, lw->k_proj, kv * hd, d, k);
    if (full) /* attention_k_eq_v: V is the raw k_proj output */
        memcpy(v, k, sizeof(double) * (size_t)T * kv * hd);
    else
        ref_linear(a, T, lw->v_proj, kv * hd, d, v);
    ref_norm(q, T * H, hd, lw->q_norm, c->rms_norm_eps);
    ref_norm(k, T * kv, hd, lw->k_norm, c->rms_norm_eps);
    ref_norm(v, T * kv, hd, NULL, c->rms_norm_eps);
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < H; h++)
            ref_rope(q + ((size_t)t * H + h) * hd, hd, n_rot, theta, t);
        for (int h = 0; h < kv; h++)
            ref_rope(k + ((size_t)t * kv + h) * hd, hd, n_rot, theta, t);
    }
    amax_into(&am[G4Q_OBS_ATTN_IN], a, (size_t)T * d);
    amax_into(&am[G4Q_OBS_K], k, (size_t)T * kv * hd);
    amax_into(&am[G4Q_OBS_V], v, (size_t)T * kv * hd);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / kv);
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++) {
                p[s] = -INFINITY;
                if (!full && t - s >= c->sliding_window) continue;
                double sc = 0;
                for (int j = 0; j < hd; j++)
                    sc += q[((size_t)t * H + h) * hd + j] * k[((size_t)s * kv + g) * hd + j];
                p[s] = sc * 1.0; /* scaling is exactly 1.0 */
                mx = fmax(mx, p[s]);
            }
            for (int s = 0; s <= t; s++)
                sum += p[s] == -INFINITY ? 0 : exp(p[s] - mx);
            for (int s = 0; s <= t; s++) {
                if (p[s] == -INFINITY) continue;
                double w = exp(p[s] - mx) / sum;
                for (int j = 0; j < hd; j++)
                    att[((size_t)t * H + h) * hd + j] += w * v[((size_t)s * kv + g) * hd + j];
            }
        }
    amax_into(&am[G4Q_OBS_O_IN], att, (size_t)T * H * hd);
    ref_linear(att, T, lw->o_proj, d, H * hd, o);
    free(q), free(k), free(v), free(att), free(p);
}


/* Max |x| per layer and site over ids[0..T) (no logits). */
static void ref_amax(const tmodel *m, const int32_t *ids, int T, double am[][G4Q_OBS_COUNT])
{
    const g4q_config *c = &m->cfg;
    const int d = c->hidden, I = c->intermediate;
    const double eps = c->rms_norm_eps, scale = (float)sqrt((double)d);
    double *h = malloc(sizeof(double) * (size_t)T * d), *a = malloc(sizeof(double) * (size_t)T * d);
    double *o = malloc(sizeof(double) * (size_t)T * d);
    double *g = malloc(sizeof(double) * (size_t)T * I), *u = malloc(sizeof(double) * (size_t)T * I);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++)
            h[(size_t)t * d + i] = tw(m->w.embed_tokens, (size_t)ids[t] * d + i) * scale;
    for (int l = 0; l < c->n_layers; l++) {
        const g4q_layer_weights *lw = &m->w.layers[l];
        memcpy(a, h, sizeof(double) * (size_t)T * d);
        ref_norm(a, T, d, lw->input_layernorm, eps);
        ref_attention(m, l, a, T, o, am[l]);
        ref_norm(o, T, d, lw->post_attention_layernorm, eps);
        for (size_t i = 0; i < (size_t)T * d; i++)
            h[i] += o[i];
        memcpy(a, h, sizeof(double) * (size_t)T * d);
        ref_norm(a, T, d, lw->pre_feedforward_layernorm, eps);
        amax_into(&am[l][G4Q_OBS_MLP_IN], a, (size_t)T * d);
        ref_linear(a, T, lw->gate_proj, I, d, g);
        ref_linear(a, T, lw->up_proj, I, d, u);
        for (size_t i = 0; i < (size_t)T * I; i++) {
            double x = g[i];
            g[i] = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
        }
        amax_into(&am[l][G4Q_OBS_DOWN_IN], g, (size_t)T * I);
        ref_linear(g, T, lw->down_proj, d, I, o);
        ref_norm(o, T, d, lw->post_feedforward_layernorm, eps);
        double ls = tw(lw->layer_scalar, 0);
        for (size_t i = 0; i < (size_t)T * d; i++)
            h[i] = (h[i] + o[i]) * ls;
    }
    free(h), free(a), free(o), free(g), free(u);
}

/* ---------------------------------------------------------------- the observer */

typedef struct obs_rec {
    g4q_backend *be;
    double amax[G4Q_MAX_LAYERS][G4Q_OBS_COUNT];
    long rows[G4Q_MAX_LAYERS][G4Q_OBS_COUNT];
    int last_layer, last_site, order_ok;
} obs_rec;

/* Reduces on the host from the downloaded buffer (not be->amax) and checks the call order. */
static g4q_status record(void *user, int layer, g4q_obs_site site, const g4q_buf *x, int rows,
                         int cols)
{
    static const int next_site[G4Q_OBS_COUNT] = {
        [G4Q_OBS_ATTN_IN] = G4Q_OBS_K, [G4Q_OBS_K] = G4Q_OBS_V, [G4Q_OBS_V] = G4Q_OBS_O_IN,
        [G4Q_OBS_O_IN] = G4Q_OBS_MLP_IN, [G4Q_OBS_MLP_IN] = G4Q_OBS_DOWN_IN,
        [G4Q_OBS_DOWN_IN] = G4Q_OBS_ATTN_IN};
    obs_rec *r = user;
    int expect_site = r->last_site < 0 ? G4Q_OBS_ATTN_IN : next_site[r->last_site];
    if ((int)site != expect_site)
        r->order_ok = 0;
    r->last_layer = layer, r->last_site = (int)site;
    size_t n = (size_t)rows * (size_t)cols;
    float *h = malloc(n * sizeof *h);
    G4Q_TRY(r->be->download(r->be, x, 0, h, n));
    float dev = 0.0f;
    G4Q_TRY(r->be->amax(r->be, x, n, &dev));
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)h[i]));
    CHECK_MSG((double)dev == m, "be->amax %.9g, host max %.9g", (double)dev, m); /* exact */
    free(h);
    r->amax[layer][site] = fmax(r->amax[layer][site], m);
    r->rows[layer][site] += rows;
    return G4Q_OK;
}

#define AMAX_REL_TOL 1e-4 /* fp32 forward vs the double reference (test_forward.c's tolerance) */

static void test_observer(g4q_backend *be)
{
    tmodel *m = malloc(sizeof *m);
    tm_build(m, 6, 96, 160, 301, 4, 2, 16, 32, 8);
    const int S = 3, T = 21, V = m->cfg.vocab_size, L = m->cfg.n_layers;
    double (*ref)[G4Q_OBS_COUNT] = calloc(G4Q_MAX_LAYERS, sizeof *ref);
    obs_rec *rec = calloc(1, sizeof *rec);
    rec->be = be, rec->last_site = -1, rec->order_ok = 1;
    g4q_forward *f = NULL;
    g4q_kvcache *kv = NULL;
    CHECK_STATUS(g4q_forward_create(&g_ctx, be, &m->cfg, &m->w, 8, &f), G4Q_OK); /* 21 = 8+8+5 */
    CHECK_STATUS(g4q_kvcache_create(&g_ctx, be, &m->cfg, T, &kv), G4Q_OK);
    g4q_forward_observer obs = {.fn = record, .user = rec};
    g4q_forward_set_observer(f, &obs);
    for (int s = 0; s < S && f && kv; s++) {
        int32_t ids[21];
        for (int t = 0; t < T; t++)
            ids[t] = (int32_t)(g4q_test_rand(&g_rng) % (uint64_t)V);
        ids[0] = 2;
        ref_amax(m, ids, T, ref);
        g4q_kvcache_reset(kv);
        CHECK_STATUS(g4q_forward_run(f, kv, ids, T, 0, NULL), G4Q_OK);
    }
    CHECK(rec->order_ok);
    double worst = 0;
    for (int l = 0; l < L; l++)
        for (int site = 0; site < G4Q_OBS_COUNT; site++) {
            CHECK_EQ_INT(rec->rows[l][site], (long)S * T);
            double rel = fabs(rec->amax[l][site] - ref[l][site]) / ref[l][site];
            worst = fmax(worst, rel);
            if (!CHECK(rel < AMAX_REL_TOL))
                fprintf(stderr, "  layer %d %s: observed %.9g, reference %.9g\n", l,
                        g4q_obs_site_name((g4q_obs_site)site), rec->amax[l][site], ref[l][site]);
        }
    printf("observer: %d layers x %d sites over %d x %d tokens, worst relative amax error %.2e\n",
           L, G4Q_OBS_COUNT, S, T, worst);
    /* Removing the observer: runs go on without callbacks. */
    g4q_forward_set_observer(f, NULL);
    long before = rec->rows[0][0];
    int32_t one = 2;
    g4q_kvcache_reset(kv);
    if (f && kv)
        CHECK_STATUS(g4q_forward_run(f, kv, &one, 1, 0, NULL), G4Q_OK);
    CHECK_EQ_INT(rec->rows[0][0], before);
    g4q_kvcache_free(kv);
    g4q_forward_free(f);
    tm_free(m);
    free(m), free(ref), free(rec);
}

/* ---------------------------------------------------------------- datasets */

static uint64_t mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* A byte-level tokenizer: every byte b is token 10 + b (vocab of 266; "\n" -> 20). */
static g4q_tok *byte_tok(void)
{
    char *json = malloc(64 * 1024), *p = json;
    p += sprintf(p, "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,"
                    "\"pre_tokenizer\":null,\"post_processor\":null,\"decoder\":null,"
                    "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{");
    for (int i = 0; i < 10; i++)
        p += sprintf(p, "\"<c%d>\":%d,", i, i);
    for (int b = 0; b < 256; b++)
        p += sprintf(p, "\"<0x%02X>\":%d%s", b, 10 + b, b < 255 ? "," : "");
    p += sprintf(p, "},\"merges\":[]}}");
    g4q_tok *tok = NULL;
    CHECK_STATUS(g4q_tok_load_json(&g_ctx, json, strlen(json), "bytes.json", &tok), G4Q_OK);
    free(json);
    return tok;
}

static void test_dataset(void)
{
    g4q_tok *tok = byte_tok();
    if (!tok)
        return;
    char dir[2048], txt[4096], jl[4096];
    g4q_test_tmpdir(dir, sizeof dir, "calib");
    snprintf(txt, sizeof txt, "%s/c.txt", dir);
    snprintf(jl, sizeof jl, "%s/c.jsonl", dir);
    /* Documents "ab\ncd" and "ef"; blank lines with spaces and CRs separate them. */
    const char *text = "ab\r\ncd\n \n\r\n\nef\n";
    CHECK_STATUS(g4q_write_file(&g_ctx, txt, text, strlen(text)), G4Q_OK);
    const char *jtext = "{\"text\": \"ab\\ncd\"}\n\n{\"text\": \"ef\"}\n";
    CHECK_STATUS(g4q_write_file(&g_ctx, jl, jtext, strlen(jtext)), G4Q_OK);
    /* S = a b \n c d \n \n e f \n \n as byte tokens. */
    const char *stream = "ab\ncd\n\nef\n\n";
    const int N = (int)strlen(stream);
    const int sizes[][2] = {{1, 1}, {5, 3}, {7, 11}, {3, 12}};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int samples = sizes[k][0], L = sizes[k][1];
        uint64_t seed = g4q_test_rand(&g_rng) >> 11;
        for (int f = 0; f < 2; f++) {
            g4q_calib_data d;
            if (!CHECK_STATUS(g4q_calib_load(&g_ctx, f ? jl : txt, tok, 7, samples, L, seed, &d),
                              G4Q_OK)) {
                fprintf(stderr, "%s\n", g4q_ctx_error(&g_ctx));
                continue;
            }
            CHECK_EQ_INT((long)d.stream_tokens, N);
            CHECK_EQ_INT((long)d.n_docs, 2);
            for (int j = 0; j < samples; j++) {
                uint64_t o = mix(seed + (uint64_t)(j + 1) * 0x9E3779B97F4A7C15ull) %
                             (uint64_t)(N - L + 2);
                CHECK_EQ_INT(d.ids[(size_t)j * L], 7);
                for (int t = 1; t < L; t++)
                    CHECK_EQ_INT(d.ids[(size_t)j * L + t], 10 + (unsigned char)stream[o + t - 1]);
            }
            g4q_calib_data_free(&d);
        }
    }
    g4q_calib_data d;
    CHECK_STATUS(g4q_calib_load(&g_ctx, txt, tok, 7, 1, N + 2, 0, &d), G4Q_ERR_INVALID);
    CHECK_STATUS(g4q_calib_load(&g_ctx, "builtin:nonexistent", tok, 7, 1, 4, 0, &d),
                 G4Q_ERR_NOT_FOUND);
    CHECK_STATUS(g4q_calib_load(&g_ctx, "builtin:../x", tok, 7, 1, 4, 0, &d), G4Q_ERR_INVALID);
    const char *bad = "{\"text\": \"a\"}\n{\"txt\": 1}\n";
    CHECK_STATUS(g4q_write_file(&g_ctx, jl, bad, strlen(bad)), G4Q_OK);
    CHECK_STATUS(g4q_calib_load(&g_ctx, jl, tok, 7, 1, 2, 0, &d), G4Q_ERR_FORMAT);
    CHECK(strstr(g4q_ctx_error(&g_ctx), "c.jsonl:2:") != NULL);
    g4q_tok_free(tok);
}

/* A Linear without observed tokens, or without a site, is an error, never a scale. */
static void test_no_tokens(void)
{
    g4q_calib_result *r = calloc(1, sizeof *r);
    r->n_layers = 2;
    r->amax[1][G4Q_OBS_MLP_IN] = 3.0f;
    r->tokens[1][G4Q_OBS_MLP_IN] = 5;
    float a = 0;
    CHECK_STATUS(g4q_calib_input_amax(&g_ctx, r, 1, G4Q_W_UP_PROJ, "up", &a), G4Q_OK);
    CHECK(a == 3.0f);
    CHECK_STATUS(g4q_calib_input_amax(&g_ctx, r, 0, G4Q_W_UP_PROJ, "up0", &a),
                 G4Q_ERR_NEEDS_CALIBRATION);
    CHECK_STATUS(g4q_calib_input_amax(&g_ctx, r, -1, G4Q_W_MULTIMODAL, "mm", &a),
                 G4Q_ERR_NEEDS_CALIBRATION);
    CHECK_STATUS(g4q_calib_kv_amax(&g_ctx, r, 1, G4Q_OBS_K, &a), G4Q_ERR_NEEDS_CALIBRATION);
    free(r);
}

int main(void)
{
    g4q_ctx_init(&g_ctx);
    g_ctx.log_level = G4Q_LOG_ERROR;
    g_rng = g4q_test_seed();
    g4q_backend *be = NULL;
    if (!CHECK_STATUS(g4q_backend_cpu_create(&g_ctx, &be), G4Q_OK))
        return g4q_test_finish();
    test_observer(be);
    test_dataset();
    test_no_tokens();
    g4q_backend_free(be);
    return g4q_test_finish();
}
