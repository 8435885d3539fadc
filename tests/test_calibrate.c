/*
 * Tests of calibration (src/calib): the forward observer against an independent double-precision
 * forward (tests/refmodel.c, the naive reference test_forward.c uses, straight from
 * docs/gemma4.md §4, recording max |x| at each observation site), over several samples
 * with fresh caches and a chunk size smaller than the sample; the layer-streamed forward
 * calibration runs on against whole-model runs (identical on the CPU); the dataset sampling rule of
 * src/calib/dataset.h re-derived here from its text; and the no-token errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "base/sys.h"
#include "calib/calibrate.h"
#include "calib/dataset.h"
#include "model/forward.h"
#include "refmodel.h"
#include "runtime/kvcache.h"
#include "testutil.h"

static g4q_ctx g_ctx;
static uint64_t g_rng;

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
        [G4Q_OBS_ATTN_IN] = G4Q_OBS_K,      [G4Q_OBS_K] = G4Q_OBS_V,
        [G4Q_OBS_V] = G4Q_OBS_O_IN,         [G4Q_OBS_O_IN] = G4Q_OBS_MLP_IN,
        [G4Q_OBS_MLP_IN] = G4Q_OBS_DOWN_IN, [G4Q_OBS_DOWN_IN] = G4Q_OBS_ATTN_IN};
    obs_rec *r = user;
    int expect_site = r->last_site < 0 ? G4Q_OBS_ATTN_IN : next_site[r->last_site];
    if ((int)site != expect_site) r->order_ok = 0;
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
    g4q_refmodel *m = malloc(sizeof *m);
    g4q_refmodel_build(m, &g_rng, 6, 96, 160, 301, 4, 2, 16, 32, 8);
    const int S = 3, T = 21, V = m->cfg.vocab_size, L = m->cfg.n_layers;
    double(*ref)[G4Q_OBS_COUNT] = calloc(G4Q_MAX_LAYERS, sizeof *ref);
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
        g4q_refmodel_forward(m, ids, T, ref, NULL);
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
    if (f && kv) CHECK_STATUS(g4q_forward_run(f, kv, &one, 1, 0, NULL), G4Q_OK);
    CHECK_EQ_INT(rec->rows[0][0], before);
    g4q_kvcache_free(kv);
    g4q_forward_free(f);
    g4q_refmodel_free(m);
    free(m), free(ref), free(rec);
}

/* ---------------------------------------------------------------- layer-streamed runs */

/* The layer-streamed forward (every sample embedded into its own buffer, then layer by layer:
 * bind, run every sample, release) observes exactly what whole-model runs observe on the CPU
 * backend (no fused ops there), same amax bits and row counts; and its misuses are refused. */
static void test_streamed(g4q_backend *be)
{
    g4q_refmodel *m = malloc(sizeof *m);
    g4q_refmodel_build(m, &g_rng, 6, 96, 160, 301, 4, 2, 16, 32, 8);
    const int S = 3, T = 21, V = m->cfg.vocab_size, L = m->cfg.n_layers, d = m->cfg.hidden;
    int32_t ids[3][21];
    for (int s = 0; s < S; s++) {
        for (int t = 0; t < T; t++)
            ids[s][t] = (int32_t)(g4q_test_rand(&g_rng) % (uint64_t)V);
        ids[s][0] = 2;
    }
    obs_rec *whole = calloc(1, sizeof *whole), *streamed = calloc(1, sizeof *streamed);
    whole->be = streamed->be = be;
    whole->last_site = streamed->last_site = -1;
    whole->order_ok = streamed->order_ok = 1;
    g4q_forward *f = NULL, *fs = NULL;
    g4q_kvcache *kv = NULL;
    CHECK_STATUS(g4q_forward_create(&g_ctx, be, &m->cfg, &m->w, T, &f), G4Q_OK);
    CHECK_STATUS(g4q_forward_create_streamed(&g_ctx, be, &m->cfg, &m->w, T, &fs), G4Q_OK);
    CHECK_STATUS(g4q_kvcache_create(&g_ctx, be, &m->cfg, T, &kv), G4Q_OK);
    if (!f || !fs || !kv) goto done;
    CHECK(g4q_forward_streamed(fs) && !g4q_forward_streamed(f));
    g4q_forward_observer ow = {.fn = record, .user = whole}, os = {.fn = record, .user = streamed};
    g4q_forward_set_observer(f, &ow);
    for (int s = 0; s < S; s++) {
        g4q_kvcache_reset(kv);
        CHECK_STATUS(g4q_forward_run(f, kv, ids[s], T, 0, NULL), G4Q_OK);
    }
    /* Misuse before anything is bound. */
    CHECK_STATUS(g4q_forward_run(fs, kv, ids[0], T, 0, NULL), G4Q_ERR_INVALID);
    g4q_buf *h[3] = {NULL, NULL, NULL};
    for (int s = 0; s < S; s++) {
        CHECK_STATUS(be->buf_alloc(be, be->act_dtype, (size_t)T * (size_t)d, &h[s]), G4Q_OK);
        CHECK_STATUS(g4q_forward_embed(fs, ids[s], T, h[s]), G4Q_OK);
    }
    g4q_kvcache_reset(kv);
    CHECK_STATUS(g4q_forward_layer(fs, kv, 0, h[0], T), G4Q_ERR_INVALID);      /* not bound */
    CHECK_STATUS(g4q_forward_embed(fs, ids[0], T + 1, h[0]), G4Q_ERR_INVALID); /* > max_chunk */
    g4q_forward_release_embed(fs);
    CHECK_STATUS(g4q_forward_embed(fs, ids[0], T, h[0]), G4Q_ERR_INVALID); /* released */
    g4q_forward_set_observer(fs, &os);
    for (int l = 0; l < L; l++) {
        CHECK_STATUS(g4q_forward_bind_layer(fs, l), G4Q_OK);
        CHECK_STATUS(g4q_forward_bind_layer(fs, l), G4Q_OK); /* bound: no-op */
        for (int s = 0; s < S; s++) {
            g4q_kvcache_reset(kv);
            CHECK_STATUS(g4q_forward_layer(fs, kv, l, h[s], T), G4Q_OK);
        }
        g4q_forward_release_layer(fs, l);
    }
    CHECK_STATUS(g4q_forward_bind_layer(fs, L), G4Q_ERR_INVALID);
    CHECK(whole->order_ok && streamed->order_ok);
    int differ = 0;
    for (int l = 0; l < L; l++)
        for (int site = 0; site < G4Q_OBS_COUNT; site++) {
            differ += whole->amax[l][site] != streamed->amax[l][site];
            CHECK_EQ_INT(streamed->rows[l][site], (long)S * T);
        }
    CHECK_MSG(differ == 0, "layer-streamed run: %d of %d amaxes differ from whole-model runs",
              differ, L * G4Q_OBS_COUNT);
    printf("streamed: %d layers x %d sites over %d x %d tokens: %d amaxes differ from whole-model "
           "runs\n",
           L, G4Q_OBS_COUNT, S, T, differ);
    for (int s = 0; s < S; s++)
        be->buf_free(be, h[s]);
done:
    g4q_kvcache_free(kv);
    g4q_forward_free(fs);
    g4q_forward_free(f);
    g4q_refmodel_free(m);
    free(m), free(whole), free(streamed);
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
    if (!tok) return;
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
                uint64_t o =
                    mix(seed + (uint64_t)(j + 1) * 0x9E3779B97F4A7C15ull) % (uint64_t)(N - L + 2);
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
    if (!CHECK_STATUS(g4q_backend_cpu_create(&g_ctx, &be), G4Q_OK)) return g4q_test_finish();
    test_observer(be);
    test_streamed(be);
    test_dataset();
    test_no_tokens();
    g4q_backend_free(be);
    return g4q_test_finish();
}
