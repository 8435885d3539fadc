/* Max calibration of activations (contract and semantics in calibrate.h). */
#include "calib/calibrate.h"

#include <math.h>
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
    int hessians;
    float *host;       /* download buffer for the Hessian sites */
    size_t host_count; /* its capacity in floats */
} observer_state;

static int is_linear_input(g4q_obs_site site)
{
    return site == G4Q_OBS_ATTN_IN || site == G4Q_OBS_O_IN || site == G4Q_OBS_MLP_IN ||
           site == G4Q_OBS_DOWN_IN;
}

/* H += Σ_t x_t·x_tᵀ over rows x_t of x [rows, n]; the lower triangle, mirrored at the end of the
 * run (finish_hessians). Each H[i][j] sums its tokens in order, so any thread count gives the
 * same bits. */
static g4q_status add_hessian(observer_state *os, int layer, g4q_obs_site site, const g4q_buf *x,
                              int rows, int n)
{
    g4q_calib_result *r = os->r;
    if (!r->hess[layer][site]) {
        r->hess[layer][site] = calloc((size_t)n * (size_t)n, sizeof(double));
        if (!r->hess[layer][site])
            return g4q_fail(os->ctx, G4Q_ERR_NOMEM, "calibration: layer %d: %s Hessian [%d, %d]",
                            layer, g4q_obs_site_name(site), n, n);
        r->hess_dim[layer][site] = n;
    }
    if (r->hess_dim[layer][site] != n)
        return g4q_fail(os->ctx, G4Q_ERR_INTERNAL, "calibration: layer %d: %s width %d, then %d",
                        layer, g4q_obs_site_name(site), r->hess_dim[layer][site], n);
    const size_t count = (size_t)rows * (size_t)n;
    if (count > os->host_count) {
        free(os->host);
        os->host = malloc(count * sizeof *os->host);
        os->host_count = os->host ? count : 0;
        if (!os->host)
            return g4q_fail(os->ctx, G4Q_ERR_NOMEM, "calibration: %zu activations", count);
    }
    G4Q_TRY(os->be->download(os->be, x, 0, os->host, count));
    double *H = r->hess[layer][site];
    const float *xs = os->host;
    /* Row tiles of H stay in cache while every token passes over them. */
    enum { TILE = 32 };
#pragma omp parallel for schedule(dynamic, 1)
    for (int i0 = 0; i0 < n; i0 += TILE) {
        const int i1 = i0 + TILE < n ? i0 + TILE : n;
        for (int t = 0; t < rows; t++) {
            const float *xt = xs + (size_t)t * (size_t)n;
            for (int i = i0; i < i1; i++) {
                const double a = xt[i];
                double *hi = H + (size_t)i * (size_t)n;
                for (int j = 0; j <= i; j++)
                    hi[j] += a * xt[j];
            }
        }
    }
    return G4Q_OK;
}

/* Mirrors each Hessian's lower triangle into the upper one. */
static void finish_hessians(g4q_calib_result *r)
{
    for (int l = 0; l < r->n_layers; l++)
        for (int s = 0; s < G4Q_OBS_COUNT; s++) {
            double *H = r->hess[l][s];
            const size_t n = (size_t)r->hess_dim[l][s];
            for (size_t i = 0; H && i < n; i++)
                for (size_t j = 0; j < i; j++)
                    H[j * n + i] = H[i * n + j];
        }
}

void g4q_calib_result_clear(g4q_calib_result *r)
{
    for (int l = 0; r && l < G4Q_MAX_LAYERS; l++)
        for (int s = 0; s < G4Q_OBS_COUNT; s++) {
            free(r->hess[l][s]);
            r->hess[l][s] = NULL;
            r->hess_dim[l][s] = 0;
        }
}

/* Bytes the Hessians of every Linear input site of the model take. */
static uint64_t hessian_bytes(const g4q_config *cfg)
{
    uint64_t b = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        const uint64_t d = (uint64_t)cfg->hidden, I = (uint64_t)cfg->intermediate;
        const uint64_t o = (uint64_t)cfg->n_heads * (uint64_t)cfg->layers[l].head_dim;
        b += 8 * (2 * d * d + o * o + I * I);
    }
    return b;
}

static g4q_status on_site(void *user, int layer, g4q_obs_site site, const g4q_buf *x, int rows,
                          int cols)
{
    observer_state *os = user;
    float a = 0.0f;
    G4Q_TRY(os->be->amax(os->be, x, (size_t)rows * (size_t)cols, &a));
    g4q_calib_result *r = os->r;
    /* NaN never compares greater: keep it visible so g4q_calib_run reports it. */
    if (a > r->amax[layer][site] || isnan(a)) r->amax[layer][site] = a;
    r->tokens[layer][site] += (uint64_t)rows;
    if (os->hessians && is_linear_input(site))
        return add_hessian(os, layer, site, x, rows, cols);
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

/* The layer-streamed run: every sample's residual stream in its own buffer h[j] (embedded
 * first, then the embedding is freed), then layer by layer: bind, run every sample through it
 * from position 0 with the observer installed, free. */
static g4q_status run_layers(g4q_ctx *ctx, g4q_session *s, const g4q_calib_data *d, g4q_buf **h,
                             int hessians, g4q_calib_result *out)
{
    g4q_backend *be = s->be;
    const size_t rows = (size_t)d->seq_len, width = (size_t)s->cfg->hidden;
    for (int j = 0; j < d->samples; j++) {
        g4q_status st = be->buf_alloc(be, be->act_dtype, rows * width, &h[j]);
        if (st != G4Q_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", g4q_ctx_error(ctx));
            return g4q_fail(ctx, st,
                            "calibration keeps the activations of all %d x %d tokens (%.2f GB): "
                            "sample %d: %s",
                            d->samples, d->seq_len,
                            (double)d->samples * (double)(rows * width) *
                                (double)g4q_dtype_size(be->act_dtype) / 1e9,
                            j, why);
        }
        G4Q_TRY(g4q_forward_embed(s->fwd, d->ids + (size_t)j * rows, d->seq_len, h[j]));
    }
    g4q_forward_release_embed(s->fwd);
    drop_pages(s, -1);
    observer_state os = {.ctx = ctx, .be = be, .r = out, .hessians = hessians};
    g4q_forward_observer obs = {.fn = on_site, .user = &os};
    g4q_forward_set_observer(s->fwd, &obs);
    g4q_progress pr;
    g4q_progress_begin(&pr, ctx, "calibrate", "layers", (uint64_t)s->cfg->n_layers);
    for (int l = 0; l < s->cfg->n_layers; l++) {
        g4q_status st = g4q_forward_bind_layer(s->fwd, l);
        for (int j = 0; j < d->samples && st == G4Q_OK; j++) {
            g4q_kvcache_reset(s->kv);
            st = g4q_forward_layer(s->fwd, s->kv, l, h[j], d->seq_len);
        }
        if (st != G4Q_OK) {
            free(os.host);
            return st;
        }
        g4q_forward_release_layer(s->fwd, l);
        drop_pages(s, l);
        g4q_progress_update(&pr, (uint64_t)(l + 1));
    }
    g4q_progress_end(&pr);
    free(os.host);
    if (hessians) finish_hessians(out);
    return G4Q_OK;
}

g4q_status g4q_calib_run(g4q_ctx *ctx, g4q_session *s, const g4q_calib_data *d, int batch,
                         int hessians, g4q_calib_result *out)
{
    memset(out, 0, sizeof *out);
    if (hessians && hessian_bytes(s->cfg) > G4Q_CALIB_HESS_MAX_BYTES)
        return g4q_fail(ctx, G4Q_ERR_NOMEM,
                        "%s: algorithm gptq keeps the input Hessian of every Linear until the "
                        "export (%.1f GB in fp64, more than the %.0f GB this two-pass path allows); "
                        "GPTQ streamed layer by layer, for models of this size, is not built yet",
                        s->dir, (double)hessian_bytes(s->cfg) / 1e9,
                        (double)G4Q_CALIB_HESS_MAX_BYTES / 1e9);
    double t0 = g4q_now_seconds();
    out->n_layers = s->cfg->n_layers;
    snprintf(out->dataset, sizeof out->dataset, "%s", d->name);
    memcpy(out->text_sha256, d->text_sha256, sizeof out->text_sha256);
    memcpy(out->ids_sha256, d->ids_sha256, sizeof out->ids_sha256);
    out->samples = d->samples, out->seq_len = d->seq_len, out->batch = batch, out->seed = d->seed;
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
    g4q_buf **h = calloc((size_t)d->samples, sizeof *h);
    if (!h) return g4q_fail(ctx, G4Q_ERR_NOMEM, "calibration: out of memory");
    g4q_status st = run_layers(ctx, s, d, h, hessians, out);
    for (int j = 0; j < d->samples; j++)
        s->be->buf_free(s->be, h[j]);
    free(h);
    g4q_forward_set_observer(s->fwd, NULL);
    g4q_kvcache_reset(s->kv);
    if (s->be->mem_peak) out->peak_device_bytes = s->be->mem_peak(s->be);
    out->total_tokens = (uint64_t)d->samples * (uint64_t)d->seq_len;
    out->seconds = g4q_now_seconds() - t0;
    if (st == G4Q_OK) st = check_finite(ctx, out);
    if (st != G4Q_OK) g4q_calib_result_clear(out);
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

g4q_status g4q_calib_input_hessian(g4q_ctx *ctx, const g4q_calib_result *r, int layer,
                                   g4q_weight_role role, const char *module, const double **H,
                                   int *n)
{
    int site = g4q_calib_site_of_role(role);
    if (site < 0 || layer < 0 || layer >= r->n_layers || !r->hess[layer][site])
        return g4q_fail(ctx, G4Q_ERR_NEEDS_CALIBRATION,
                        "'%s': the calibration has no input Hessian for this Linear (algorithm "
                        "gptq applies to decoder-layer Linears)",
                        module);
    *H = r->hess[layer][site];
    *n = r->hess_dim[layer][site];
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
    cJSON *am = cJSON_AddObjectToObject(o, "amax");
    for (int site = 0; am && site < G4Q_OBS_COUNT; site++) {
        cJSON *arr = cJSON_AddArrayToObject(am, g4q_obs_site_name((g4q_obs_site)site));
        for (int l = 0; arr && l < r->n_layers; l++)
            cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)r->amax[l][site]));
    }
    return o;
}
