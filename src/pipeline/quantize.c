/* The quantization job: calibration with per-layer quantization of the Hessian items, then the
 * export (contract in quantize.h). */
#include "pipeline/quantize.h"

#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "base/sys.h"
#include "backend/wquant.h"
#include "export/quantize_item.h"
#include "pipeline/smooth_layer.h"
#include "quant/quant.h"
#include "runtime/session.h"

/* Tensors a layer's sequential rerun may replace: its Linears and the two norms before them. */
#define REPL_MAX (G4Q_MAX_LAYER_LINEARS + 2)

typedef struct layer_job {
    g4q_ctx *ctx;
    const g4q_plan *plan;
    const g4q_ckpt *ckpt;    /* the plan's tensors' mapping: pages dropped once quantized */
    int sequential;
    g4q_wquant_gpu *gpu;     /* NULL: quantize on the CPU */
    void ***ready;           /* [n_items]: kept weight outputs, or NULL */
    /* sequential: this layer's dequantized Linears and smoothed norms */
    uint16_t *repl[REPL_MAX];
    g4q_tensor repl_t[REPL_MAX];
    int n_repl;
    size_t items;
    uint64_t layers_seen; /* on_layer calls: with the site, the keys of the layer's Hessians */
    double seconds;
    unsigned smooth_sites;   /* Linear input sites smoothed (smooth_layer.h), 1u << site */
    g4q_layer_smooth ls;     /* the current layer's smoothing */
    g4q_calib_result *calib; /* the running calibration's result: a smoothed site's amax is
                              * replaced by the smoothed input's once its layer is done */
} layer_job;

/* The item's tensor as the export takes it: smoothed in this layer, or the checkpoint's. */
static const g4q_tensor *item_tensor(const layer_job *lj, const g4q_plan_item *it)
{
    const g4q_tensor *t = g4q_layer_smooth_tensor(&lj->ls, (size_t)(it - lj->plan->items));
    return t ? t : it->src;
}

/* The shared amax of an item's NVFP4 fused group (§2.7), or 0 for an item in none. */
static g4q_status group_amax(layer_job *lj, const g4q_plan_item *it, float *amax)
{
    *amax = 0.0f;
    if (it->group < 0) return G4Q_OK;
    const g4q_plan_group *g = &lj->plan->groups[it->group];
    for (int k = 0; k < g->n_members; k++) {
        const g4q_tensor *t = item_tensor(lj, &lj->plan->items[g->members[k]]);
        float a;
        G4Q_TRY(g4q_quant_amax_bf16(lj->ctx, t->name, t->data, t->numel, &a));
        *amax = a > *amax ? a : *amax;
    }
    return G4Q_OK;
}

/* The slot of the layer's weight set that a Linear of this role occupies. */
static const g4q_tensor **slot_of(g4q_layer_weights *lw, g4q_weight_role role)
{
    switch (role) {
    case G4Q_W_Q_PROJ: return &lw->q_proj;
    case G4Q_W_K_PROJ: return &lw->k_proj;
    case G4Q_W_V_PROJ: return &lw->v_proj;
    case G4Q_W_O_PROJ: return &lw->o_proj;
    case G4Q_W_GATE_PROJ: return &lw->gate_proj;
    case G4Q_W_UP_PROJ: return &lw->up_proj;
    case G4Q_W_DOWN_PROJ: return &lw->down_proj;
    case G4Q_W_INPUT_LN: return &lw->input_layernorm;
    case G4Q_W_PRE_FF_LN: return &lw->pre_feedforward_layernorm;
    default: return NULL;
    }
}

static void free_repl(layer_job *lj)
{
    for (int k = 0; k < lj->n_repl; k++)
        free(lj->repl[k]);
    lj->n_repl = 0;
}

/* Quantizes one item of the layer into lj->ready (and, in sequential mode, its dequantized
 * weight into a BF16 tensor that replaces the Linear in *replace). */
static g4q_status quantize_one(layer_job *lj, size_t i, const g4q_calib_layer *L,
                               g4q_layer_weights *replace)
{
    const g4q_plan_item *it = &lj->plan->items[i];
    const int64_t rows = it->src->shape[0], cols = it->src->shape[1];
    g4q_hess h = {0};
    if (g4q_plan_item_needs_hessian(it)) {
        const int site = g4q_calib_site_of_role(it->role);
        if (site < 0 || !L->hess[site].h || L->hess[site].n != cols)
            return g4q_fail(lj->ctx, G4Q_ERR_NEEDS_CALIBRATION,
                            "'%s': the calibration has no input Hessian of %lld inputs for it "
                            "(%s applies to decoder-layer Linears)",
                            it->module, (long long)cols, g4q_plan_item_hessian_use(it));
        h = L->hess[site];
        if (lj->ls.hess[site]) h.h = lj->ls.hess[site]; /* smoothed, held as the calibration's */
        /* The layer's items of one site share this H (q/k/v, gate/up): one upload and one GPTQ
         * factorization on the GPU (quant.h key). */
        h.key = lj->layers_seen << 8 | (uint64_t)(site + 1);
    }
    const g4q_hess *H = h.h ? &h : NULL;
    g4q_plan_item smoothed = *it;
    smoothed.src = item_tensor(lj, it);
    it = &smoothed;
    float amax;
    G4Q_TRY(group_amax(lj, it, &amax));
    const int nw = g4q_plan_item_weight_outputs(it);
    void **bufs = calloc(G4Q_PLAN_MAX_OUTPUTS, sizeof *bufs);
    if (!bufs) return g4q_fail(lj->ctx, G4Q_ERR_NOMEM, "out of memory");
    lj->ready[i] = bufs;
    for (int o = 0; o < nw; o++) {
        bufs[o] = malloc(it->out[o].nbytes ? it->out[o].nbytes : 1);
        if (!bufs[o])
            return g4q_fail(lj->ctx, G4Q_ERR_NOMEM, "%s: cannot keep %llu bytes", it->out[o].name,
                            (unsigned long long)it->out[o].nbytes);
    }
    float *deq = NULL;
    if (replace) {
        deq = malloc((size_t)rows * (size_t)cols * sizeof *deq);
        if (!deq) return g4q_fail(lj->ctx, G4Q_ERR_NOMEM, "'%s': dequantized copy", it->module);
    }
    g4q_status st = g4q_quantize_item(lj->ctx, lj->gpu, it, amax, H, bufs, deq);
    if (st == G4Q_OK && replace) {
        const g4q_tensor **slot = slot_of(replace, it->role);
        uint16_t *b = malloc((size_t)rows * (size_t)cols * sizeof *b);
        if (!slot || !b) {
            free(b);
            st = g4q_fail(lj->ctx, G4Q_ERR_NOMEM, "'%s': dequantized copy", it->module);
        } else {
            for (size_t k = 0; k < (size_t)rows * (size_t)cols; k++)
                b[k] = g4q_f32_to_bf16(deq[k]);
            const int r = lj->n_repl++;
            lj->repl[r] = b;
            lj->repl_t[r] = *it->src;
            lj->repl_t[r].data = b;
            *slot = &lj->repl_t[r];
        }
    }
    free(deq);
    return st;
}

/* A kept tensor that the smoothing changed: its new bytes become the export's output (and in
 * sequential mode the layer's weight). */
static g4q_status keep_changed(layer_job *lj, size_t i, g4q_layer_weights *replace)
{
    const g4q_plan_item *it = &lj->plan->items[i];
    const g4q_tensor *t = g4q_layer_smooth_tensor(&lj->ls, i);
    void **bufs = calloc(G4Q_PLAN_MAX_OUTPUTS, sizeof *bufs);
    const size_t bytes = (size_t)t->numel * sizeof(uint16_t);
    if (!bufs || it->n_out < 1 || it->out[0].nbytes != bytes) {
        free(bufs);
        return g4q_fail(lj->ctx, bufs ? G4Q_ERR_INTERNAL : G4Q_ERR_NOMEM,
                        "'%s': cannot keep its smoothed values", t->name);
    }
    lj->ready[i] = bufs;
    if (!(bufs[0] = malloc(bytes)))
        return g4q_fail(lj->ctx, G4Q_ERR_NOMEM, "'%s': smoothed copy", t->name);
    memcpy(bufs[0], t->data, bytes);
    if (replace) {
        const g4q_tensor **slot = slot_of(replace, it->role);
        if (!slot || lj->n_repl >= REPL_MAX)
            return g4q_fail(lj->ctx, G4Q_ERR_INTERNAL, "'%s': no slot to replace", t->name);
        const int r = lj->n_repl++;
        lj->repl[r] = NULL;
        lj->repl_t[r] = *t;
        lj->repl_t[r].data = bufs[0];
        *slot = &lj->repl_t[r];
    }
    return G4Q_OK;
}

static g4q_status on_layer(void *user, const g4q_calib_layer *L, g4q_layer_weights *replace)
{
    layer_job *lj = user;
    free_repl(lj);
    lj->layers_seen++;
    const double t0 = g4q_now_seconds();
    const g4q_plan *p = lj->plan;
    g4q_layer_smooth_free(&lj->ls);
    if (lj->smooth_sites)
        G4Q_TRY(g4q_layer_smooth_run(lj->ctx, lj->gpu, p, L, lj->smooth_sites, &lj->ls));
    for (int site = 0; site < G4Q_OBS_COUNT; site++)
        if (lj->ls.done >> site & 1u) {
            lj->calib->amax[L->layer][site] = lj->ls.amax[site];
            g4q_log(lj->ctx, G4Q_LOG_DEBUG, "layer %d %s: smoothing alpha %.2f, loss %.4g -> %.4g",
                    L->layer, g4q_obs_site_name((g4q_obs_site)site),
                    (double)lj->ls.res[site].alpha, lj->ls.res[site].loss0,
                    lj->ls.res[site].loss);
        }
    for (int k = 0; k < lj->ls.n; k++) /* kept tensors the smoothing changed */
        if (p->items[lj->ls.item[k]].format == G4Q_PF_KEEP)
            G4Q_TRY(keep_changed(lj, lj->ls.item[k], replace));
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *it = &p->items[i];
        if (it->layer != L->layer || it->format == G4Q_PF_KEEP) continue;
        if (!g4q_plan_item_needs_hessian(it) && !lj->sequential &&
            !g4q_layer_smooth_tensor(&lj->ls, i))
            continue;
        if (lj->n_repl >= REPL_MAX)
            return g4q_fail(lj->ctx, G4Q_ERR_INTERNAL, "layer %d: too many Linears", L->layer);
        const double ti = g4q_now_seconds();
        g4q_status st = quantize_one(lj, i, L, replace);
        g4q_log(lj->ctx, G4Q_LOG_DEBUG, "layer %d: %s quantized in %.3f s", L->layer, it->module,
                g4q_now_seconds() - ti);
        g4q_ckpt_release(lj->ckpt, it->src); /* the export reads it once more, from disk */
        if (st != G4Q_OK) {
            if (st != G4Q_ERR_NEEDS_CALIBRATION) g4q_error_prefix(lj->ctx, "%s", it->src->name);
            return st;
        }
        lj->items++;
    }
    lj->seconds += g4q_now_seconds() - t0;
    return G4Q_OK;
}

static void free_ready(void ***ready, size_t n)
{
    for (size_t i = 0; ready && i < n; i++) {
        for (int o = 0; ready[i] && o < G4Q_PLAN_MAX_OUTPUTS; o++)
            free(ready[i][o]);
        free(ready[i]);
    }
    free(ready);
}

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

/* The Linear input sites whose Hessians the plan's items need, and per site the part they read
 * (calibrate.h hessian_block): the least common multiple of its items' diagonal blocks, or every
 * entry (0) when one item needs them all or the blocks grow past HESS_BLOCK_MAX. */
#define HESS_BLOCK_MAX 512
static void hessian_sites(const g4q_plan *p, unsigned *sites, int block[G4Q_OBS_COUNT])
{
    unsigned full = 0;
    *sites = 0;
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *it = &p->items[i];
        const int site = g4q_calib_site_of_role(it->role);
        if (site < 0 || !g4q_plan_item_needs_hessian(it)) continue;
        const int b = g4q_plan_item_hessian_block(it);
        if (!(*sites >> site & 1u)) block[site] = 1;
        *sites |= 1u << site;
        if (b <= 0) full |= 1u << site;
        else if (!(full >> site & 1u)) block[site] = block[site] / gcd(block[site], b) * b;
        if (block[site] > HESS_BLOCK_MAX) full |= 1u << site;
    }
    for (int s = 0; s < G4Q_OBS_COUNT; s++)
        if (full >> s & 1u) block[s] = 0;
}

/* Activation rows per smoothed site that the smoothing search runs on (spread over the samples):
 * 2048 tokens estimate a layer's output error well, and keep the search's products small. */
#define SMOOTH_SAMPLE_ROWS 2048

/* The calibration pass with the layer hook, on job->export.device. */
static g4q_status calibrate(g4q_ctx *ctx, const g4q_quantize_job *job, layer_job *lj,
                            g4q_quantize_report *out)
{
    const g4q_calib_data *d = job->calib_data;
    if (!d || !d->ids)
        return g4q_fail(ctx, G4Q_ERR_NEEDS_CALIBRATION, "recipe '%s' needs calibration: %s",
                        job->plan->recipe->name, job->plan->calibration_reason);
    const int hook = job->plan->needs_hessians || job->sequential || job->plan->smooth_sites;
    if (hook && job->export.device == G4Q_DEVICE_CUDA)
        G4Q_TRY(g4q_wquant_gpu_create(ctx, &lj->gpu));
    g4q_session *s = NULL;
    g4q_session_opts so = {.device = job->export.device, .max_chunk = d->seq_len,
                           .stream_layers = 1};
    lj->smooth_sites = job->plan->smooth_sites; /* searched on activation samples */
    lj->calib = &out->calib;
    g4q_calib_hooks hooks = {.sample_sites = lj->smooth_sites,
                             .sample_rows = SMOOTH_SAMPLE_ROWS,
                             .sequential = job->sequential,
                             .layer_done = hook ? on_layer : NULL,
                             .user = lj};
    hessian_sites(job->plan, &hooks.hessian_sites, hooks.hessian_block);
    g4q_status st = g4q_session_open(ctx, job->model_dir, &so, &s);
    if (st == G4Q_OK)
        st = g4q_calib_run(ctx, s, d, job->plan->recipe->calib.batch, &hooks, &out->calib);
    g4q_session_free(s);
    free_repl(lj);
    g4q_layer_smooth_free(&lj->ls);
    out->calibrated = st == G4Q_OK;
    out->layer_items = lj->items;
    out->layer_quant_seconds = lj->seconds;
    out->peak_gpu = out->calib.peak_device_bytes + g4q_wquant_gpu_peak_bytes(lj->gpu);
    g4q_wquant_gpu_free(lj->gpu);
    lj->gpu = NULL;
    return st;
}

g4q_status g4q_quantize_run(g4q_ctx *ctx, const g4q_quantize_job *job, g4q_quantize_report *out)
{
    memset(out, 0, sizeof *out);
    const g4q_plan *p = job->plan;
    layer_job lj = {.ctx = ctx, .plan = p, .ckpt = job->ckpt, .sequential = job->sequential};
    lj.ready = calloc(p->n_items ? p->n_items : 1, sizeof *lj.ready);
    if (!lj.ready) return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    g4q_status st = G4Q_OK;
    if (job->sequential && !p->needs_calibration)
        st = g4q_fail(ctx, G4Q_ERR_INVALID,
                      "recipe '%s': sequential calibration asked for, but nothing in the plan "
                      "is calibrated",
                      p->recipe->name);
    if (st == G4Q_OK && p->needs_calibration) st = calibrate(ctx, job, &lj, out);
    if (st == G4Q_OK) {
        g4q_export_opts eo = job->export;
        eo.calib = out->calibrated ? &out->calib : NULL;
        eo.ready = (void **const *)lj.ready;
        st = g4q_export_run(ctx, p, job->ckpt, job->cfg, &eo, &out->stats);
        if (out->stats.peak_gpu > out->peak_gpu) out->peak_gpu = out->stats.peak_gpu;
    }
    free_ready(lj.ready, p->n_items);
    return st;
}
