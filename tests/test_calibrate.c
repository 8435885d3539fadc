/*
 * Tests of calibration (src/calib): the forward observer against an independent double-precision
 * forward (tests/refmodel.c, the naive reference test_forward.c uses, straight from
 * docs/gemma4.md §4, recording max |x| at each observation site), over several samples
 * with fresh caches and a chunk size smaller than the sample; the layer-streamed forward
 * calibration runs on against whole-model runs (identical on the CPU); staged layers
 * (g4q_forward_stage_layer / stage_upload on a thread) against plain binds, bit for bit, and
 * their misuses; g4q_calib_run with the prefetch thread against the same run without deferred
 * binding (amaxes and Hessians bit for bit, plain and sequential), the uploads made off the
 * calling thread, injected upload and allocation failures surfacing as errors with nothing left
 * staged and no thread left over; the dataset sampling rule of src/calib/dataset.h re-derived here
 * from its text; and the no-token errors.
 */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/cpu.h"
#include "base/bf16.h"
#include "base/sys.h"
#include "calib/calibrate.h"
#include "calib/dataset.h"
#include "model/forward.h"
#include "model/synth.h"
#include "runtime/session.h"
#include "refmodel.h"
#include "model/kvcache.h"
#include "calib_hook.h"
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

/* ---------------------------------------------------------------- staged layers */

/* The CPU backend with its deferred binding observed: a copy of its table (ops receive &be, which
 * the CPU ops accept: they use only be->ctx) whose weight_bind_deferred / weight_upload count the
 * calls, note uploads made off the main thread, and fail a tensor whose name contains fail_bind
 * (allocation) or fail_upload (the upload). With `deferred` 0 both members are NULL. */
typedef struct wrap_be {
    g4q_backend be; /* first: the forward calls through &be */
    g4q_backend *inner;
    pthread_t main;
    int deferred, uploads, off_main;
    const char *fail_bind, *fail_upload;
    const g4q_bweight *poisoned[64]; /* bound from a fail_upload tensor */
    int n_poisoned;
} wrap_be;

static g4q_status wrap_bind_deferred(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight **out)
{
    wrap_be *w = (wrap_be *)be;
    if (w->fail_bind && strstr(d->name, w->fail_bind))
        return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "test: no memory for '%s'", d->name);
    G4Q_TRY(w->inner->weight_bind_deferred(w->inner, d, out));
    w->deferred++;
    if (w->fail_upload && strstr(d->name, w->fail_upload) && w->n_poisoned < 64)
        w->poisoned[w->n_poisoned++] = *out;
    return G4Q_OK;
}

static g4q_status wrap_upload(g4q_backend *be, g4q_bweight *wt, g4q_ctx *ctx)
{
    wrap_be *w = (wrap_be *)be;
    w->uploads++;
    w->off_main += !pthread_equal(pthread_self(), w->main);
    for (int i = 0; i < w->n_poisoned; i++)
        if (w->poisoned[i] == wt) return g4q_fail(ctx, G4Q_ERR_IO, "test: poisoned weight");
    return w->inner->weight_upload(w->inner, wt, ctx);
}

static void wrap_init(wrap_be *w, g4q_backend *inner, int deferred)
{
    memset(w, 0, sizeof *w);
    w->be = *inner;
    w->inner = inner;
    w->main = pthread_self();
    w->be.weight_bind_deferred = deferred ? wrap_bind_deferred : NULL;
    w->be.weight_upload = deferred ? wrap_upload : NULL;
}

typedef struct upload_job {
    g4q_forward *f;
    g4q_ctx ctx;
    g4q_status st;
} upload_job;

static void *upload_main(void *arg)
{
    upload_job *j = arg;
    j->st = g4q_forward_stage_upload(j->f, &j->ctx);
    return NULL;
}

/* Layer-streamed runs with layer l + 1 staged while l runs (uploaded on a thread for odd l, left
 * to g4q_forward_bind_layer for even l) observe exactly what plain binds observe; the misuses of
 * staging are refused; a failed deferred bind leaves nothing staged; a backend without deferred
 * binding stages nothing; a forward freed with a layer staged frees it. */
static void test_staged(g4q_backend *cpu)
{
    g4q_refmodel *m = malloc(sizeof *m);
    g4q_refmodel_build(m, &g_rng, 6, 96, 160, 301, 4, 2, 16, 32, 8);
    const int S = 3, T = 17, V = m->cfg.vocab_size, L = m->cfg.n_layers, d = m->cfg.hidden;
    int32_t ids[3][17];
    for (int s = 0; s < S; s++) {
        for (int t = 0; t < T; t++)
            ids[s][t] = (int32_t)(g4q_test_rand(&g_rng) % (uint64_t)V);
        ids[s][0] = 2;
    }
    wrap_be *w = malloc(sizeof *w);
    wrap_init(w, cpu, 1);
    g4q_backend *be = &w->be;
    obs_rec *rec[2] = {calloc(1, sizeof(obs_rec)), calloc(1, sizeof(obs_rec))};
    g4q_forward *fw[2] = {NULL, NULL}, *whole = NULL;
    g4q_kvcache *kv = NULL;
    g4q_buf *h[2][3] = {{NULL}};
    for (int k = 0; k < 2; k++) {
        rec[k]->be = be, rec[k]->last_site = -1, rec[k]->order_ok = 1;
        CHECK_STATUS(g4q_forward_create_streamed(&g_ctx, be, &m->cfg, &m->w, T, &fw[k]), G4Q_OK);
    }
    CHECK_STATUS(g4q_forward_create(&g_ctx, be, &m->cfg, &m->w, T, &whole), G4Q_OK);
    CHECK_STATUS(g4q_kvcache_create(&g_ctx, be, &m->cfg, T, &kv), G4Q_OK);
    if (!fw[0] || !fw[1] || !whole || !kv) goto done;
    CHECK_STATUS(g4q_forward_stage_layer(whole, 0), G4Q_ERR_INVALID); /* not streamed */
    for (int k = 0; k < 2; k++) {
        g4q_forward_observer o = {.fn = record, .user = rec[k]};
        g4q_forward_set_observer(fw[k], &o);
        for (int s = 0; s < S; s++) {
            CHECK_STATUS(be->buf_alloc(be, be->act_dtype, (size_t)T * (size_t)d, &h[k][s]), G4Q_OK);
            CHECK_STATUS(g4q_forward_embed(fw[k], ids[s], T, h[k][s]), G4Q_OK);
        }
    }
    CHECK_EQ_INT(g4q_forward_staged(fw[1]), -1);
    for (int l = 0; l < L; l++) {
        CHECK_STATUS(g4q_forward_bind_layer(fw[0], l), G4Q_OK);
        if (l == 1) { /* staged, not bound yet */
            g4q_kvcache_reset(kv);
            CHECK_STATUS(g4q_forward_layer(fw[1], kv, l, h[1][0], T), G4Q_ERR_INVALID);
            CHECK(strstr(g4q_ctx_error(&g_ctx), "staged") != NULL);
            CHECK_STATUS(g4q_forward_bind_layer_from(fw[1], l, &m->w.layers[l]), G4Q_ERR_INVALID);
            CHECK_STATUS(g4q_forward_stage_layer(fw[1], l + 1),
                         G4Q_ERR_INVALID); /* one at a time */
        }
        CHECK_EQ_INT(g4q_forward_staged(fw[1]), l ? l : -1);
        CHECK_STATUS(g4q_forward_bind_layer(fw[1], l), G4Q_OK); /* completes the staged layer */
        CHECK_EQ_INT(g4q_forward_staged(fw[1]), -1);
        if (l == 0) CHECK_STATUS(g4q_forward_stage_layer(fw[1], 0), G4Q_ERR_INVALID); /* bound */
        upload_job job = {.f = fw[1]};
        g4q_ctx_init(&job.ctx);
        pthread_t th;
        int threaded = 0;
        if (l + 1 < L) {
            CHECK_STATUS(g4q_forward_stage_layer(fw[1], l + 1), G4Q_OK);
            CHECK_EQ_INT(g4q_forward_staged(fw[1]), l + 1);
            threaded = (l & 1) && CHECK(pthread_create(&th, NULL, upload_main, &job) == 0);
        }
        for (int k = 0; k < 2; k++)
            for (int s = 0; s < S; s++) {
                g4q_kvcache_reset(kv);
                CHECK_STATUS(g4q_forward_layer(fw[k], kv, l, h[k][s], T), G4Q_OK);
            }
        if (threaded) {
            pthread_join(th, NULL);
            CHECK_STATUS(job.st, G4Q_OK);
        }
        g4q_forward_release_layer(fw[0], l);
        g4q_forward_release_layer(fw[1], l);
    }
    int differ = 0;
    for (int l = 0; l < L; l++)
        for (int site = 0; site < G4Q_OBS_COUNT; site++) {
            differ += memcmp(&rec[0]->amax[l][site], &rec[1]->amax[l][site], sizeof(double)) != 0;
            CHECK_EQ_INT(rec[1]->rows[l][site], (long)S * T);
        }
    CHECK(rec[0]->order_ok && rec[1]->order_ok);
    CHECK_MSG(differ == 0, "staged layers: %d of %d amaxes differ from plain binds", differ,
              L * G4Q_OBS_COUNT);
    CHECK_MSG(w->off_main > 0 && w->deferred > 0, "uploads: %d of %d off the main thread",
              w->off_main, w->uploads);
    printf("staged: %d layers, %d deferred binds, %d uploads (%d on a thread): %d amaxes differ "
           "from plain binds\n",
           L, w->deferred, w->uploads, w->off_main, differ);
    /* A failed deferred bind leaves nothing staged; the plain bind still works. */
    w->fail_bind = "layers.2.mlp.up_proj";
    CHECK_STATUS(g4q_forward_stage_layer(fw[1], 2), G4Q_ERR_NOMEM);
    CHECK(strstr(g4q_ctx_error(&g_ctx), "layers.2.mlp.up_proj") != NULL);
    CHECK_EQ_INT(g4q_forward_staged(fw[1]), -1);
    CHECK_STATUS(g4q_forward_bind_layer(fw[1], 2), G4Q_OK);
    g4q_forward_release_layer(fw[1], 2);
    w->fail_bind = NULL;
    /* A staged layer can be released unbound, and is freed with the forward. */
    CHECK_STATUS(g4q_forward_stage_layer(fw[1], 3), G4Q_OK);
    g4q_forward_release_layer(fw[1], 3);
    CHECK_EQ_INT(g4q_forward_staged(fw[1]), -1);
    CHECK_STATUS(g4q_forward_stage_layer(fw[1], 1), G4Q_OK);
    /* Without deferred binding nothing is staged. */
    wrap_be *plain = malloc(sizeof *plain);
    wrap_init(plain, cpu, 0);
    g4q_forward *fp = NULL;
    CHECK_STATUS(g4q_forward_create_streamed(&g_ctx, &plain->be, &m->cfg, &m->w, T, &fp), G4Q_OK);
    if (fp) CHECK_STATUS(g4q_forward_stage_layer(fp, 0), G4Q_OK);
    if (fp) CHECK_EQ_INT(g4q_forward_staged(fp), -1);
    g4q_forward_free(fp);
    free(plain);
done:
    for (int k = 0; k < 2; k++)
        for (int s = 0; s < S; s++)
            be->buf_free(be, h[k][s]);
    g4q_kvcache_free(kv);
    g4q_forward_free(whole);
    g4q_forward_free(fw[0]);
    g4q_forward_free(fw[1]); /* with layer 1 staged */
    g4q_refmodel_free(m);
    free(m), free(w), free(rec[0]), free(rec[1]);
}

/* ---------------------------------------------------------------- g4q_calib_run */

/* Threads of this process (entries of /proc/self/task), -1 where that cannot be read. */
static int thread_count(void)
{
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));)
        n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

typedef struct calib_case {
    int deferred, sequential;
    const char *fail_bind, *fail_upload;
} calib_case;

/* g4q_calib_run on the model in dir, on the CPU backend wrapped as c says; results into *r and
 * *hs, the wrapper's counts into *w. Nothing may be staged afterwards. */
static g4q_status calib_once(g4q_backend *cpu, const char *dir, const g4q_calib_data *d,
                             const calib_case *c, g4q_calib_result *r, hook_state *hs, wrap_be *w)
{
    wrap_init(w, cpu, c->deferred);
    w->fail_bind = c->fail_bind, w->fail_upload = c->fail_upload;
    memset(hs, 0, sizeof *hs);
    g4q_session_opts so = {.max_chunk = d->seq_len, .stream_layers = 1, .backend = &w->be};
    g4q_session *s = NULL;
    g4q_status st = g4q_session_open(&g_ctx, dir, &so, &s);
    if (!CHECK_STATUS(st, G4Q_OK)) return st;
    const g4q_calib_hooks hooks = {.hessian_sites = 1u << G4Q_OBS_ATTN_IN | 1u << G4Q_OBS_O_IN |
                                                    1u << G4Q_OBS_MLP_IN | 1u << G4Q_OBS_DOWN_IN,
                                   .sequential = c->sequential,
                                   .layer_done = hook_on_layer,
                                   .user = hs};
    st = g4q_calib_run(&g_ctx, s, d, 1, &hooks, r);
    CHECK_EQ_INT(g4q_forward_staged(s->fwd), -1);
    g4q_session_free(s);
    hook_release(hs);
    return st;
}

/* The prefetch thread changes nothing but the time: amaxes, token counts and Hessians equal the
 * run without deferred binding bit for bit, plain and sequential; the uploads ran off the calling
 * thread and the result reports the thread's time. An upload failure and an allocation failure
 * surface as g4q_calib_run's errors, naming the layer and the tensor, with no thread left. */
static void test_calib_run(g4q_backend *cpu)
{
    char dir[2048];
    g4q_test_tmpdir(dir, sizeof dir, "calib_prefetch");
    g4q_synth_spec spec;
    g4q_synth_result res;
    if (!CHECK_STATUS(g4q_synth_preset(&g_ctx, "tiny", &spec), G4Q_OK)) return;
    spec.seed = g4q_test_rand(&g_rng);
    if (!CHECK_STATUS(g4q_synth_write(&g_ctx, &spec, dir, 0, 0, &res), G4Q_OK)) return;
    g4q_calib_data d;
    memset(&d, 0, sizeof d);
    d.samples = 3, d.seq_len = 24;
    snprintf(d.name, sizeof d.name, "test");
    d.ids = malloc(sizeof(int32_t) * (size_t)(d.samples * d.seq_len));
    for (int i = 0; i < d.samples * d.seq_len; i++)
        d.ids[i] =
            i % d.seq_len ? (int32_t)(g4q_test_rand(&g_rng) % (uint64_t)(spec.vocab - 16)) + 3 : 2;
    g4q_calib_result *r = calloc(2, sizeof *r);
    hook_state *hs = calloc(2, sizeof *hs);
    wrap_be *w = calloc(2, sizeof *w);
    float seq_amax[2] = {0, 0};
    for (int seq = 0; seq < 2; seq++) {
        for (int k = 0; k < 2; k++) {
            const calib_case c = {.deferred = k, .sequential = seq};
            if (!CHECK_STATUS(calib_once(cpu, dir, &d, &c, &r[k], &hs[k], &w[k]), G4Q_OK))
                fprintf(stderr, "  %s\n", g4q_ctx_error(&g_ctx));
        }
        const int L = r[0].n_layers;
        CHECK_EQ_INT(r[1].n_layers, spec.n_layers);
        CHECK_EQ_INT(hs[0].calls, L);
        CHECK(memcmp(r[0].amax, r[1].amax, sizeof r[0].amax) == 0);
        CHECK(memcmp(r[0].tokens, r[1].tokens, sizeof r[0].tokens) == 0);
        CHECK(memcmp(hs[0].digest, hs[1].digest, sizeof hs[0].digest) == 0);
        CHECK_EQ_INT(w[0].uploads, 0);
        CHECK(r[0].prefetch_seconds == 0 && r[1].prefetch_seconds > 0);
        /* every layer but layer 0 deferred, every one of their weights uploaded on the thread */
        CHECK_MSG(w[1].deferred > 0 && w[1].off_main == w[1].deferred,
                  "%d deferred binds, %d uploads on the thread", w[1].deferred, w[1].off_main);
        seq_amax[seq] = r[1].amax[L - 1][G4Q_OBS_DOWN_IN];
        printf("calib_run%s: %d layers: prefetch vs plain binds: amaxes, tokens and Hessians %s; "
               "%d weights copied on the thread (%.4f s), bind %.4f s\n",
               seq ? " (sequential)" : "", L,
               memcmp(r[0].amax, r[1].amax, sizeof r[0].amax) ? "DIFFER" : "identical",
               w[1].off_main, r[1].prefetch_seconds, r[1].bind_seconds);
    }
    CHECK_MSG(seq_amax[0] != seq_amax[1], "sequential mode changed nothing (amax %g)",
              (double)seq_amax[0]);
    /* Failures: nothing staged afterwards (calib_once checks), no thread left over. */
    const int threads = thread_count();
    const calib_case bad[] = {{1, 0, NULL, "layers.3.self_attn.o_proj"},
                              {1, 1, NULL, "layers.2.mlp.down_proj"},
                              {1, 0, "layers.4.input_layernorm", NULL}};
    const char *want[][2] = {
        {"copying layer 3's weights ahead", "poisoned"},
        {"copying layer 2's weights ahead", "poisoned"},
        {"binding layer 4 ahead: test: no memory", "layers.4.input_layernorm"}};
    const g4q_status code[] = {G4Q_ERR_IO, G4Q_ERR_IO, G4Q_ERR_NOMEM};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g4q_status st = calib_once(cpu, dir, &d, &bad[i], &r[0], &hs[0], &w[0]);
        CHECK_STATUS(st, code[i]);
        const char *msg = g4q_ctx_error(&g_ctx);
        CHECK_MSG(strstr(msg, want[i][0]) && strstr(msg, want[i][1]), "failure %zu: '%s'", i, msg);
        printf("calib_run failure %zu: %s\n", i, msg);
    }
    int after = thread_count(); /* a joined thread's task may take a moment to disappear */
    for (int i = 0; i < 100 && after > threads; i++) {
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
        after = thread_count();
    }
    CHECK_MSG(threads < 0 || after == threads, "threads: %d before, %d after", threads, after);
    free(d.ids);
    free(r), free(hs), free(w);
}

/* ---------------------------------------------------------------- Hessian blocks */

/* backend.h gram with diagonal blocks, held compact (quant.h g4q_hess): each block entry is the
 * full product's, bit for bit (the CPU sums every entry over the rows in order either way), the
 * padding past n 0, with stale values in the buffer before the first call; blocks that divide n,
 * a shorter last block, and the diagonal alone. */
static void test_gram_blocks(g4q_backend *be)
{
    const int rows = 37, n = 100;
    float *x = malloc(sizeof *x * rows * n), *full = malloc(sizeof *full * n * n),
          *h = malloc(sizeof *h * n * n);
    for (int i = 0; i < rows * n; i++)
        x[i] = (float)g4q_test_normal(&g_rng);
    g4q_buf *bx = NULL, *bh = NULL;
    CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)rows * n, &bx), G4Q_OK);
    CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)n * n, &bh), G4Q_OK);
    CHECK_STATUS(be->upload(be, bx, 0, x, (size_t)rows * n), G4Q_OK);
    const int blocks[] = {0, 20, 16, 7, 1};
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        const int bs = blocks[b];
        const size_t count = g4q_hess_count(n, bs);
        CHECK(count == (bs ? (size_t)((n + bs - 1) / bs * bs * bs) : (size_t)n * n));
        for (int i = 0; i < n * n; i++)
            h[i] = 3.0f;
        CHECK_STATUS(be->upload(be, bh, 0, h, (size_t)n * n), G4Q_OK);
        CHECK_STATUS(be->gram(be, bh, bx, 20, n, bs, 0), G4Q_OK);
        CHECK_STATUS(be->gram(be, bh, bx, rows - 20, n, bs, 1), G4Q_OK); /* rows 0..19 again */
        CHECK_STATUS(be->download(be, bh, 0, bs ? h : full, count), G4Q_OK);
        if (!bs) continue;
        int same = 1, zero = 1;
        for (int k = 0; k < (n + bs - 1) / bs; k++)
            for (int a = 0; a < bs; a++)
                for (int c = 0; c < bs; c++) {
                    const int i = k * bs + a, j = k * bs + c;
                    const float v = h[(size_t)k * bs * bs + (size_t)a * bs + c];
                    if (i < n && j < n)
                        same &= memcmp(&v, &full[(size_t)i * n + j], sizeof v) == 0;
                    else
                        zero &= v == 0.0f;
                }
        CHECK_MSG(same, "gram block %d: a block entry differs from the full product's", bs);
        CHECK_MSG(zero, "gram block %d: the padding past n is not 0", bs);
    }
    printf("gram blocks: 20, 16, 7 and 1 against the full product: %s\n",
           g4q_test_failed ? "FAILED" : "bit-identical");
    be->buf_free(be, bx);
    be->buf_free(be, bh);
    free(x), free(full), free(h);
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
    g_ctx.progress = -1;
    g_rng = g4q_test_seed();
    g4q_backend *be = NULL;
    if (!CHECK_STATUS(g4q_backend_cpu_create(&g_ctx, &be), G4Q_OK)) return g4q_test_finish();
    test_observer(be);
    test_streamed(be);
    test_staged(be);
    test_calib_run(be);
    test_gram_blocks(be);
    test_dataset();
    test_no_tokens();
    g4q_backend_free(be);
    return g4q_test_finish();
}
