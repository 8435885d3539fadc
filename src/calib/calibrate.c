/* Max calibration of activations (contract and semantics in calibrate.h). */
#include "calib/calibrate.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/progress.h"
#include "base/sys.h"

typedef struct observer_state {
    g4q_ctx *ctx;
    g4q_backend *be;
    g4q_calib_result *r;
    unsigned hessian_sites;
    const int *hessian_block;    /* hooks->hessian_block */
    int layer;                   /* the layer whose Hessians hess[] hold */
    g4q_buf *hess[G4Q_OBS_COUNT]; /* the current layer's Hessians, on the backend */
    int dim[G4Q_OBS_COUNT];      /* their sizes (0: not allocated) */
    int started[G4Q_OBS_COUNT];  /* this layer has summed into them */
    float *host[G4Q_OBS_COUNT];  /* downloads, handed to layer_done */
    g4q_buf *amax;               /* F32 [G4Q_OBS_COUNT]: the current layer's amaxes, on the backend */
    /* Activation samples (hooks->sample_sites): per site the sampled rows [sample_rows, sdim]
     * and the per-channel amax [sdim] on the backend, their downloads, the samples seen in this
     * layer and the rows taken so far. */
    unsigned sample_sites;
    int sample_rows;
    g4q_buf *smp[G4Q_OBS_COUNT], *camax[G4Q_OBS_COUNT];
    int sdim[G4Q_OBS_COUNT];
    float *host_smp[G4Q_OBS_COUNT], *host_camax[G4Q_OBS_COUNT];
    int calls[G4Q_OBS_COUNT], taken[G4Q_OBS_COUNT];
    int samples, seq_len;
} observer_state;

static int is_linear_input(g4q_obs_site site)
{
    return site == G4Q_OBS_ATTN_IN || site == G4Q_OBS_O_IN || site == G4Q_OBS_MLP_IN ||
           site == G4Q_OBS_DOWN_IN;
}

/* H(site) += xᵀ·x on the backend, held as the site's block asks (backend.h gram); the buffer is
 * (re)allocated when the width changes (full and sliding layers have different o_proj inputs)
 * and overwritten by a layer's first sample. */
static g4q_status add_hessian(observer_state *os, g4q_obs_site site, const g4q_buf *x, int rows,
                              int n)
{
    g4q_backend *be = os->be;
    const int block = g4q_hess_block(n, os->hessian_block[site]);
    const size_t count = g4q_hess_count(n, block);
    if (os->dim[site] != n) {
        be->buf_free(be, os->hess[site]);
        os->hess[site] = NULL;
        os->dim[site] = 0;
        free(os->host[site]);
        os->host[site] = malloc(count * sizeof(float));
        g4q_status st =
            os->host[site] ? be->buf_alloc(be, G4Q_DT_F32, count, &os->hess[site]) : G4Q_ERR_NOMEM;
        if (st != G4Q_OK)
            return g4q_fail(os->ctx, st == G4Q_ERR_NOMEM ? G4Q_ERR_NOMEM : st,
                            "calibration: layer %d: %s Hessian of %d inputs, blocks of %d "
                            "(%.2f GB in fp32)",
                            os->layer, g4q_obs_site_name(site), n, block, (double)count * 4e-9);
        os->dim[site] = n;
    }
    G4Q_TRY(be->gram(be, os->hess[site], x, rows, n, block, os->started[site]));
    os->started[site] = 1;
    return G4Q_OK;
}

void g4q_calib_sample_span(int j, int samples, int seq_len, int rows, int *first, int *count)
{
    const int64_t total = (int64_t)samples * seq_len < rows ? (int64_t)samples * seq_len : rows;
    const int64_t quota = samples > 0 ? (total + samples - 1) / samples : 0;
    int64_t n = total - (int64_t)j * quota;
    n = n < 0 ? 0 : (n > quota ? quota : n);
    *count = (int)n;
    /* Knuth's multiplicative hash spreads the windows over the positions. */
    *first = n ? (int)(((uint64_t)(uint32_t)j * 2654435761u) % (uint64_t)(seq_len - n + 1)) : 0;
}

/* The sampled rows of one sample's activations at a site, and its per-channel amax; the buffers
 * are (re)allocated when the width changes and the amax is zeroed by a layer's first sample. */
static g4q_status add_sample(observer_state *os, g4q_obs_site site, const g4q_buf *x, int rows,
                             int n)
{
    g4q_backend *be = os->be;
    if (os->sdim[site] != n) {
        be->buf_free(be, os->smp[site]);
        be->buf_free(be, os->camax[site]);
        os->smp[site] = os->camax[site] = NULL;
        os->sdim[site] = 0;
        free(os->host_smp[site]);
        free(os->host_camax[site]);
        const size_t cells = (size_t)os->sample_rows * (size_t)n;
        os->host_smp[site] = malloc(cells * sizeof(float));
        os->host_camax[site] = malloc((size_t)n * sizeof(float));
        g4q_status st = os->host_smp[site] && os->host_camax[site] ? G4Q_OK : G4Q_ERR_NOMEM;
        if (st == G4Q_OK) st = be->buf_alloc(be, be->act_dtype, cells, &os->smp[site]);
        if (st == G4Q_OK) st = be->buf_alloc(be, G4Q_DT_F32, (size_t)n, &os->camax[site]);
        if (st != G4Q_OK)
            return g4q_fail(os->ctx, st, "calibration: layer %d: %s samples [%d, %d]", os->layer,
                            g4q_obs_site_name(site), os->sample_rows, n);
        os->sdim[site] = n;
    }
    if (os->calls[site] == 0) {
        float *zero = calloc((size_t)n, sizeof *zero);
        if (!zero) return g4q_fail(os->ctx, G4Q_ERR_NOMEM, "out of memory");
        g4q_status st = be->upload(be, os->camax[site], 0, zero, (size_t)n);
        free(zero);
        G4Q_TRY(st);
    }
    G4Q_TRY(be->col_amax_into(be, x, rows, n, os->camax[site]));
    int first, count;
    g4q_calib_sample_span(os->calls[site]++, os->samples, os->seq_len, os->sample_rows, &first,
                          &count);
    if (count > rows) count = rows;
    if (os->taken[site] + count > os->sample_rows) count = os->sample_rows - os->taken[site];
    if (count > 0)
        G4Q_TRY(be->copy_rows(be, os->smp[site], (size_t)os->taken[site], x, (size_t)first,
                              (size_t)count, (size_t)n));
    os->taken[site] += count > 0 ? count : 0;
    return G4Q_OK;
}

static g4q_status on_site(void *user, int layer, g4q_obs_site site, const g4q_buf *x, int rows,
                          int cols)
{
    observer_state *os = user;
    (void)layer;
    /* Queued: the layer's amaxes are downloaded once, after its last sample (layer_amax). */
    G4Q_TRY(os->be->amax_into(os->be, x, (size_t)rows * (size_t)cols, os->amax, (size_t)site));
    os->r->tokens[os->layer][site] += (uint64_t)rows;
    if (is_linear_input(site) && (os->sample_sites >> site & 1u))
        G4Q_TRY(add_sample(os, site, x, rows, cols));
    if (is_linear_input(site) && (os->hessian_sites >> site & 1u))
        return add_hessian(os, site, x, rows, cols);
    return G4Q_OK;
}

static void observer_free(observer_state *os)
{
    for (int s = 0; s < G4Q_OBS_COUNT; s++) {
        os->be->buf_free(os->be, os->hess[s]);
        free(os->host[s]);
        os->be->buf_free(os->be, os->smp[s]);
        os->be->buf_free(os->be, os->camax[s]);
        free(os->host_smp[s]);
        free(os->host_camax[s]);
    }
    os->be->buf_free(os->be, os->amax);
}

/* Zeroes the device amaxes before layer l's first sample. */
static g4q_status layer_amax_begin(observer_state *os, int l)
{
    const float zero[G4Q_OBS_COUNT] = {0};
    os->layer = l;
    memset(os->started, 0, sizeof os->started);
    memset(os->calls, 0, sizeof os->calls);
    memset(os->taken, 0, sizeof os->taken);
    if (!os->amax) G4Q_TRY(os->be->buf_alloc(os->be, G4Q_DT_F32, G4Q_OBS_COUNT, &os->amax));
    return os->be->upload(os->be, os->amax, 0, zero, G4Q_OBS_COUNT);
}

/* Layer l's amaxes after its last sample, into the result (NaN kept: g4q_calib_run reports it). */
static g4q_status layer_amax_end(observer_state *os, int l)
{
    float a[G4Q_OBS_COUNT];
    G4Q_TRY(os->be->download(os->be, os->amax, 0, a, G4Q_OBS_COUNT));
    for (int site = 0; site < G4Q_OBS_COUNT; site++)
        os->r->amax[l][site] = a[site];
    return G4Q_OK;
}

/* The layer's statistics for layer_done: its Hessians downloaded. */
static g4q_status layer_stats(observer_state *os, int l, uint64_t tokens, g4q_calib_layer *out)
{
    memset(out, 0, sizeof *out);
    out->layer = l;
    out->tokens = tokens;
    for (int s = 0; s < G4Q_OBS_COUNT; s++) {
        if (!os->started[s]) continue;
        const int block = g4q_hess_block(os->dim[s], os->hessian_block[s]);
        G4Q_TRY(os->be->download(os->be, os->hess[s], 0, os->host[s],
                                 g4q_hess_count(os->dim[s], block)));
        out->hess[s] = (g4q_hess){.h = os->host[s], .n = os->dim[s], .block = block};
    }
    for (int s = 0; s < G4Q_OBS_COUNT; s++) {
        if (!os->calls[s]) continue;
        const size_t n = (size_t)os->sdim[s];
        G4Q_TRY(os->be->download(os->be, os->smp[s], 0, os->host_smp[s],
                                 (size_t)os->taken[s] * n));
        G4Q_TRY(os->be->download(os->be, os->camax[s], 0, os->host_camax[s], n));
        out->act[s] = os->host_smp[s];
        out->col_amax[s] = os->host_camax[s];
        out->act_rows[s] = os->taken[s];
        out->act_dim[s] = os->sdim[s];
    }
    return G4Q_OK;
}

static g4q_status check_finite(g4q_ctx *ctx, const g4q_calib_result *r)
{
    for (int l = 0; l < r->n_layers; l++)
        for (int s = 0; s < G4Q_OBS_COUNT; s++)
            if (!isfinite(r->amax[l][s]))
                return g4q_fail(ctx, G4Q_ERR_NUMERIC,
                                "calibration: layer %d: %s activations have amax %g (the BF16 "
                                "model overflows on the calibration data)",
                                l, g4q_obs_site_name((g4q_obs_site)s), (double)r->amax[l][s]);
    return G4Q_OK;
}

/* Drops layer l's mapped checkpoint pages (or with l < 0 the embedding's) from the resident set
 * once they are no longer needed: a backend that copied them (CUDA) does not read them again, and
 * the CPU backend would fault them back in from the page cache. */
static void drop_pages(const g4q_session *s, int l)
{
    if (l < 0) {
        g4q_ckpt_release(s->ckpt, s->weights->embed_tokens);
        return;
    }
    const g4q_layer_weights *lw = &s->weights->layers[l];
    const g4q_tensor *t[] = {lw->q_proj,    lw->k_proj,  lw->v_proj,   lw->o_proj,
                             lw->gate_proj, lw->up_proj, lw->down_proj};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i]) g4q_ckpt_release(s->ckpt, t[i]);
}

/* Allocates `count` activation buffers of rows x width, naming what they are for. */
static g4q_status alloc_acts(g4q_ctx *ctx, g4q_backend *be, const g4q_calib_data *d, size_t width,
                             const char *what, g4q_buf **h)
{
    const size_t rows = (size_t)d->seq_len;
    for (int j = 0; j < d->samples; j++) {
        g4q_status st = be->buf_alloc(be, be->act_dtype, rows * width, &h[j]);
        if (st != G4Q_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", g4q_ctx_error(ctx));
            return g4q_fail(ctx, st,
                            "calibration keeps %s of all %d x %d tokens (%.2f GB): sample %d: %s",
                            what, d->samples, d->seq_len,
                            (double)d->samples * (double)(rows * width) *
                                (double)g4q_dtype_size(be->act_dtype) / 1e9,
                            j, why);
        }
    }
    return G4Q_OK;
}

/* Runs every sample through bound layer l (residual streams in place). */
static g4q_status run_samples(g4q_session *s, const g4q_calib_data *d, int l, g4q_buf **h)
{
    for (int j = 0; j < d->samples; j++) {
        g4q_kvcache_reset(s->kv);
        G4Q_TRY(g4q_forward_layer(s->fwd, s->kv, l, h[j], d->seq_len));
    }
    return G4Q_OK;
}

/* Sequential mode: layer l again, from its saved inputs, with the hook's replacement weights
 * (bound the plain way: they exist only now; the time goes to *bind_seconds). */
static g4q_status rerun_quantized(g4q_session *s, const g4q_calib_data *d, int l, g4q_buf **h,
                                  g4q_buf **h_in, const g4q_layer_weights *replace,
                                  double *bind_seconds)
{
    g4q_backend *be = s->be;
    const size_t rows = (size_t)d->seq_len, width = (size_t)s->cfg->hidden;
    const double tb = g4q_now_seconds();
    g4q_forward_release_layer(s->fwd, l);
    g4q_status st = g4q_forward_bind_layer_from(s->fwd, l, replace);
    *bind_seconds += g4q_now_seconds() - tb;
    G4Q_TRY(st);
    for (int j = 0; j < d->samples; j++)
        G4Q_TRY(be->copy_rows(be, h[j], 0, h_in[j], 0, rows, width));
    g4q_forward_set_observer(s->fwd, NULL);
    return run_samples(s, d, l, h);
}

/* The helper thread that copies layer l + 1's weights to the backend while layer l runs
 * (calibrate.h, "Weights"). At most one runs, and never past g4q_calib_run. */
typedef struct prefetch {
    g4q_forward *f;
    int layer;   /* the layer it uploads */
    int running; /* started and not joined yet */
    pthread_t thread;
    g4q_status st;  /* its result */
    double seconds; /* its time */
    g4q_ctx ctx;    /* its errors: the caller's context belongs to the caller's thread */
} prefetch;

static void *prefetch_main(void *arg)
{
    prefetch *p = arg;
    const double t0 = g4q_now_seconds();
    p->st = g4q_forward_stage_upload(p->f, &p->ctx);
    p->seconds = g4q_now_seconds() - t0;
    return NULL;
}

/* Stages layer l (its backend memory is allocated now, on this thread) and starts the thread
 * that uploads it. A backend without deferred binding stages nothing: layer l is bound the plain
 * way when its turn comes; and if no thread can be started, that bind uploads it. */
static g4q_status prefetch_start(prefetch *p, g4q_ctx *ctx, int l)
{
    g4q_status st = g4q_forward_stage_layer(p->f, l);
    if (st != G4Q_OK) {
        g4q_error_prefix(ctx, "calibration: binding layer %d ahead", l);
        return st;
    }
    if (g4q_forward_staged(p->f) != l) return G4Q_OK;
    p->layer = l;
    p->st = G4Q_OK;
    p->seconds = 0;
    g4q_ctx_init(&p->ctx);
    p->running = pthread_create(&p->thread, NULL, prefetch_main, p) == 0;
    return G4Q_OK;
}

/* Waits for the thread, if one runs. Returns st when it is already an error (keeping its
 * message), else the thread's error, if any, in ctx. The staged layer stays staged. */
static g4q_status prefetch_join(prefetch *p, g4q_ctx *ctx, g4q_calib_result *r, g4q_status st)
{
    if (!p->running) return st;
    pthread_join(p->thread, NULL);
    p->running = 0;
    r->prefetch_seconds += p->seconds;
    if (st != G4Q_OK || p->st == G4Q_OK) return st;
    return g4q_fail(ctx, p->st, "calibration: copying layer %d's weights ahead: %s", p->layer,
                    g4q_ctx_error(&p->ctx));
}

/* The layer-streamed run: every sample's residual stream in its own buffer h[j] (embedded
 * first, then the embedding is freed), then layer by layer: bind (layer l + 1 is staged and
 * copied by the prefetch thread meanwhile), run every sample through it from position 0 with
 * the observer installed, hand the statistics to the hook (and in sequential mode run the layer
 * again with the weights it returns), wait for the prefetch, free. */
static g4q_status run_layers(g4q_ctx *ctx, g4q_session *s, const g4q_calib_data *d, g4q_buf **h,
                             g4q_buf **h_in, const g4q_calib_hooks *hk, observer_state *os)
{
    g4q_backend *be = s->be;
    const size_t rows = (size_t)d->seq_len, width = (size_t)s->cfg->hidden;
    G4Q_TRY(alloc_acts(ctx, be, d, width, "the activations", h));
    if (hk->sequential)
        G4Q_TRY(alloc_acts(ctx, be, d, width, "a second copy of the activations (sequential)",
                           h_in));
    for (int j = 0; j < d->samples; j++)
        G4Q_TRY(g4q_forward_embed(s->fwd, d->ids + (size_t)j * rows, d->seq_len, h[j]));
    g4q_forward_release_embed(s->fwd);
    drop_pages(s, -1);
    g4q_forward_observer obs = {.fn = on_site, .user = os};
    g4q_progress pr;
    g4q_progress_begin(&pr, ctx, "calibrate", "layers", (uint64_t)s->cfg->n_layers);
    g4q_status st = G4Q_OK;
    prefetch pf = {.f = s->fwd, .layer = -1};
    for (int l = 0; l < s->cfg->n_layers && st == G4Q_OK; l++) {
        st = layer_amax_begin(os, l);
        g4q_forward_set_observer(s->fwd, &obs);
        double tb = g4q_now_seconds();
        if (st == G4Q_OK) st = g4q_forward_bind_layer(s->fwd, l); /* the staged layer: done */
        if (st == G4Q_OK && l + 1 < s->cfg->n_layers) st = prefetch_start(&pf, ctx, l + 1);
        os->r->bind_seconds += g4q_now_seconds() - tb;
        for (int j = 0; j < d->samples && st == G4Q_OK && hk->sequential; j++)
            st = be->copy_rows(be, h_in[j], 0, h[j], 0, rows, width);
        if (st == G4Q_OK) st = run_samples(s, d, l, h);
        if (st == G4Q_OK) st = layer_amax_end(os, l);
        g4q_calib_layer ls;
        g4q_layer_weights replace = s->weights->layers[l];
        if (st == G4Q_OK && hk->layer_done) st = layer_stats(os, l, (uint64_t)d->samples * rows, &ls);
        if (st == G4Q_OK && hk->layer_done)
            st = hk->layer_done(hk->user, &ls, hk->sequential ? &replace : NULL);
        if (st == G4Q_OK && hk->sequential)
            st = rerun_quantized(s, d, l, h, h_in, &replace, &os->r->bind_seconds);
        tb = g4q_now_seconds();
        st = prefetch_join(&pf, ctx, os->r, st); /* before layer l's pages are dropped */
        os->r->bind_seconds += g4q_now_seconds() - tb;
        g4q_forward_release_layer(s->fwd, l);
        drop_pages(s, l);
        g4q_progress_update(&pr, (uint64_t)(l + 1));
    }
    g4q_progress_end(&pr);
    if (g4q_forward_staged(s->fwd) >= 0) { /* an error left it unbound */
        g4q_forward_release_layer(s->fwd, g4q_forward_staged(s->fwd));
    }
    return st;
}

g4q_status g4q_calib_run(g4q_ctx *ctx, g4q_session *s, const g4q_calib_data *d, int batch,
                         const g4q_calib_hooks *hooks, g4q_calib_result *out)
{
    memset(out, 0, sizeof *out);
    const g4q_calib_hooks none = {0};
    const g4q_calib_hooks *hk = hooks ? hooks : &none;
    if (hk->sequential && !hk->layer_done)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "calibration: sequential mode needs a layer hook");
    if (hk->sample_sites && hk->sample_rows <= 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "calibration: activation samples need rows");
    double t0 = g4q_now_seconds();
    out->n_layers = s->cfg->n_layers;
    snprintf(out->dataset, sizeof out->dataset, "%s", d->name);
    memcpy(out->text_sha256, d->text_sha256, sizeof out->text_sha256);
    memcpy(out->ids_sha256, d->ids_sha256, sizeof out->ids_sha256);
    out->samples = d->samples, out->seq_len = d->seq_len, out->batch = batch, out->seed = d->seed;
    out->sequential = hk->sequential;
    snprintf(out->device, sizeof out->device, "%s", g4q_device_name(s->device));
    for (int l = 0; l < s->qlin->n_layers; l++)
        for (int k = 0; k < G4Q_MAX_LAYER_LINEARS; k++)
            if (s->qlin->layers[l][k].format != G4Q_QL_BF16)
                return g4q_fail(ctx, G4Q_ERR_INVALID,
                                "%s: calibration observes the BF16 model, but '%s' is quantized",
                                s->dir, s->qlin->layers[l][k].module);
    if (!g4q_forward_streamed(s->fwd) || s->max_chunk < d->seq_len)
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "%s: calibration needs a layer-streamed session with chunks of %d tokens",
                        s->dir, d->seq_len);
    G4Q_TRY(g4q_session_reserve(s, d->seq_len));
    g4q_buf **h = calloc(2 * (size_t)d->samples, sizeof *h);
    if (!h) return g4q_fail(ctx, G4Q_ERR_NOMEM, "calibration: out of memory");
    observer_state os = {.ctx = ctx, .be = s->be, .r = out, .hessian_sites = hk->hessian_sites,
                         .hessian_block = hk->hessian_block,
                         .sample_sites = hk->sample_sites, .sample_rows = hk->sample_rows,
                         .samples = d->samples, .seq_len = d->seq_len};
    g4q_status st = run_layers(ctx, s, d, h, h + d->samples, hk, &os);
    for (int j = 0; j < 2 * d->samples; j++)
        s->be->buf_free(s->be, h[j]);
    free(h);
    observer_free(&os);
    g4q_forward_set_observer(s->fwd, NULL);
    g4q_kvcache_reset(s->kv);
    if (s->be->mem_peak) out->peak_device_bytes = s->be->mem_peak(s->be);
    out->total_tokens = (uint64_t)d->samples * (uint64_t)d->seq_len;
    out->seconds = g4q_now_seconds() - t0;
    if (st == G4Q_OK) st = check_finite(ctx, out);
    return st;
}

int g4q_calib_site_of_role(g4q_weight_role role)
{
    switch (role) {
    case G4Q_W_Q_PROJ:
    case G4Q_W_K_PROJ:
    case G4Q_W_V_PROJ:
        return G4Q_OBS_ATTN_IN;
    case G4Q_W_O_PROJ:
        return G4Q_OBS_O_IN;
    case G4Q_W_GATE_PROJ:
    case G4Q_W_UP_PROJ:
        return G4Q_OBS_MLP_IN;
    case G4Q_W_DOWN_PROJ:
        return G4Q_OBS_DOWN_IN;
    default:
        return -1;
    }
}

g4q_status g4q_calib_input_amax(g4q_ctx *ctx, const g4q_calib_result *r, int layer,
                                g4q_weight_role role, const char *module, float *amax)
{
    int site = g4q_calib_site_of_role(role);
    if (site < 0 || layer < 0 || layer >= r->n_layers)
        return g4q_fail(ctx, G4Q_ERR_NEEDS_CALIBRATION,
                        "'%s': calibration observes decoder-layer Linears only, so this Linear "
                        "has no input amax (quantize its activations: none)",
                        module);
    if (r->tokens[layer][site] == 0)
        return g4q_fail(ctx, G4Q_ERR_NEEDS_CALIBRATION,
                        "'%s': no calibration token reached this Linear", module);
    *amax = r->amax[layer][site];
    return G4Q_OK;
}

g4q_status g4q_calib_kv_amax(g4q_ctx *ctx, const g4q_calib_result *r, int layer, g4q_obs_site site,
                             float *amax)
{
    if (layer < 0 || layer >= r->n_layers || r->tokens[layer][site] == 0)
        return g4q_fail(ctx, G4Q_ERR_NEEDS_CALIBRATION,
                        "layer %d: no calibration token reached the %s cache", layer,
                        g4q_obs_site_name(site));
    *amax = r->amax[layer][site];
    return G4Q_OK;
}

cJSON *g4q_calib_to_cjson(const g4q_calib_result *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "method", "max");
    cJSON_AddStringToObject(o, "dataset", r->dataset);
    cJSON_AddStringToObject(o, "text_sha256", r->text_sha256);
    cJSON_AddStringToObject(o, "ids_sha256", r->ids_sha256);
    cJSON_AddNumberToObject(o, "samples", r->samples);
    cJSON_AddNumberToObject(o, "seq_len", r->seq_len);
    cJSON_AddNumberToObject(o, "batch", r->batch);
    cJSON_AddNumberToObject(o, "seed", (double)r->seed);
    cJSON_AddNumberToObject(o, "tokens", (double)r->total_tokens);
    cJSON_AddStringToObject(o, "device", r->device);
    cJSON_AddBoolToObject(o, "sequential", r->sequential);
    cJSON *am = cJSON_AddObjectToObject(o, "amax");
    for (int site = 0; am && site < G4Q_OBS_COUNT; site++) {
        cJSON *arr = cJSON_AddArrayToObject(am, g4q_obs_site_name((g4q_obs_site)site));
        for (int l = 0; arr && l < r->n_layers; l++)
            cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)r->amax[l][site]));
    }
    return o;
}
