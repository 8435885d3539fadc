#include "export/export.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/outdir.h"
#include "base/progress.h"
#include "base/sha256.h"
#include "base/sys.h"
#include "export/configs.h"
#include "export/quantize_item.h"
#include "export/writeq.h"
#include "io/json_write.h"
#include "io/readahead.h"
#include "quant/actq.h"
#include "quant/quant.h"

typedef struct run_state {
    g4q_ctx *ctx;
    const g4q_plan *plan;
    const g4q_ckpt *ckpt;
    g4q_st_writer *writer;
    g4q_writeq *wq;                 /* hashes and writes the outputs on worker threads */
    char (*hashes)[G4Q_SHA256_HEX]; /* per writer index */
    size_t n_outputs;
    g4q_progress progress;
    uint64_t bytes_done;
    g4q_wquant_gpu *gpu; /* NULL: CPU path */
    g4q_wquant_pipe *pipe;         /* the GPU pipe (NULL: none), for the items of pipe_of */
    char *pipe_of;                 /* per item: 1 when quantized through the pipe */
    const g4q_calib_result *calib; /* NULL: no calibration */
    void **const *ready;           /* g4q_export_opts.ready */
} run_state;

/* Declares every output in processing order: global tensors first, then layer by layer. */
static g4q_status declare_outputs(run_state *rs, const int *order, size_t n_order)
{
    for (size_t k = 0; k < n_order; k++) {
        g4q_plan_item *it = &rs->plan->items[order[k]];
        for (int o = 0; o < it->n_out; o++) {
            g4q_plan_output *po = &it->out[o];
            G4Q_TRY(g4q_stw_declare(rs->writer, po->name, po->dtype, po->ndim, po->shape,
                                    &po->writer_index));
            rs->n_outputs++;
        }
    }
    return G4Q_OK;
}

/* Items in processing order: layer -1 (embeddings, final norm, multimodal) then each layer. */
static int *processing_order(const g4q_plan *p, int n_layers)
{
    int *order = malloc(p->n_items * sizeof *order);
    if (!order)
        return NULL;
    size_t k = 0;
    for (int l = -1; l < n_layers; l++)
        for (size_t i = 0; i < p->n_items; i++)
            if (p->items[i].layer == l)
                order[k++] = (int)i;
    return order;
}

/* Queues an output for hashing and writing; owned (may be data) is freed once it is written. */
static g4q_status write_output(run_state *rs, const g4q_plan_output *po, const void *data,
                               void *owned)
{
    const g4q_writeq_job j = {.index = po->writer_index, .data = data, .nbytes = po->nbytes,
                              .hash_hex = rs->hashes[po->writer_index], .owned = owned};
    return g4q_writeq_put(rs->wq, &j);
}

/* A kept tensor's input pages, dropped once its copy is written. */
typedef struct kept_pages {
    const g4q_ckpt *ckpt;
    const g4q_tensor *t;
} kept_pages;

static void release_kept(void *arg)
{
    kept_pages *k = arg;
    g4q_ckpt_release(k->ckpt, k->t);
    free(k);
}

/* Kept weights are copied bit-exact, but a NaN or infinity in a BF16 one is refused all the same
 * (on the worker, naming the tensor and its file): it would make the exported model produce
 * garbage. */
static g4q_status write_kept(run_state *rs, const g4q_plan_item *it)
{
    kept_pages *k = malloc(sizeof *k);
    if (!k) return g4q_fail(rs->ctx, G4Q_ERR_NOMEM, "out of memory");
    *k = (kept_pages){rs->ckpt, it->src};
    const g4q_plan_output *po = &it->out[0];
    const g4q_writeq_job j = {
        .index = po->writer_index, .data = it->src->data, .nbytes = po->nbytes,
        .hash_hex = rs->hashes[po->writer_index],
        .check_bf16 = it->src->dtype == G4Q_DT_BF16 ? it->src->name : NULL,
        .where = g4q_st_path(g4q_ckpt_file(rs->ckpt, (size_t)it->src->file)),
        .done = release_kept, .done_arg = k};
    return g4q_writeq_put(rs->wq, &j);
}

/* Shared amax of every NVFP4 fused group of `layer`, indexed by group (not those quantized
 * through the GPU pipe, which takes their amax on the device). */
static g4q_status group_amaxes(run_state *rs, int layer, float *amax)
{
    const g4q_plan *p = rs->plan;
    for (size_t g = 0; g < p->n_groups; g++) {
        if (p->groups[g].layer != layer || (rs->pipe_of && rs->pipe_of[p->groups[g].members[0]]))
            continue;
        float m = 0.0f;
        for (int k = 0; k < p->groups[g].n_members; k++) {
            const g4q_tensor *t = p->items[p->groups[g].members[k]].src;
            float a;
            G4Q_TRY(g4q_quant_amax_bf16(rs->ctx, t->name, t->data, t->numel, &a));
            if (a > m)
                m = a;
        }
        amax[g] = m;
    }
    return G4Q_OK;
}


/* The input amax of an item's Linear: for an NVFP4 fused group the max over its members (§2.7),
 * so that every member gets bit-identical input_scale. */
static g4q_status item_input_amax(run_state *rs, const g4q_plan_item *it, float *amax)
{
    const g4q_plan *p = rs->plan;
    if (it->group < 0)
        return g4q_calib_input_amax(rs->ctx, rs->calib, it->layer, it->role, it->module, amax);
    const g4q_plan_group *g = &p->groups[it->group];
    float m = 0.0f;
    for (int k = 0; k < g->n_members; k++) {
        const g4q_plan_item *mi = &p->items[g->members[k]];
        float a;
        G4Q_TRY(g4q_calib_input_amax(rs->ctx, rs->calib, mi->layer, mi->role, mi->module, &a));
        m = a > m ? a : m;
    }
    *amax = m;
    return G4Q_OK;
}

/* The value of a calibrated output (an F32 [] or [1] scale). */
static g4q_status calibrated_value(run_state *rs, const g4q_plan_item *it,
                                   const g4q_plan_output *po, float *value)
{
    if (!rs->calib)
        return g4q_fail(rs->ctx, G4Q_ERR_NEEDS_CALIBRATION,
                        "'%s': %s needs calibration, and none was run", it->module, po->name);
    float amax;
    switch (po->kind) {
    case G4Q_OUT_INPUT_SCALE:
        if (it->format == G4Q_PF_NVFP4_CT)
            return g4q_fail(rs->ctx, G4Q_ERR_UNSUPPORTED,
                            "'%s': compressed-tensors W4A4 (%s) is not written yet; use export "
                            "modelopt", it->module, po->name);
        G4Q_TRY(item_input_amax(rs, it, &amax));
        *value = g4q_actq_static_scale(
            it->format == G4Q_PF_NVFP4_MO ? G4Q_ACTQ_NVFP4 : G4Q_ACTQ_FP8_TENSOR, amax);
        return G4Q_OK;
    case G4Q_OUT_K_SCALE:
    case G4Q_OUT_V_SCALE:
        G4Q_TRY(g4q_calib_kv_amax(rs->ctx, rs->calib, it->layer,
                                  po->kind == G4Q_OUT_K_SCALE ? G4Q_OBS_K : G4Q_OBS_V, &amax));
        *value = g4q_actq_static_scale(G4Q_ACTQ_FP8_TENSOR, amax);
        return G4Q_OK;
    default:
        return g4q_fail(rs->ctx, G4Q_ERR_INTERNAL, "%s: not a calibrated output", po->name);
    }
}

/* Writes an item's calibrated outputs. A zero amax (a site that only ever saw zeros) gives scale
 * 0, which engines treat as "no scale"; it is refused rather than invented. */
static g4q_status write_calibrated(run_state *rs, const g4q_plan_item *it)
{
    for (int o = 0; o < it->n_out; o++) {
        const g4q_plan_output *po = &it->out[o];
        if (!g4q_layout_role_calibrated((int)po->kind))
            continue;
        float v = 0.0f;
        G4Q_TRY(calibrated_value(rs, it, po, &v));
        if (!(v > 0.0f) || !isfinite(v))
            return g4q_fail(rs->ctx, G4Q_ERR_NUMERIC,
                            "%s: calibrated scale %g (every observed activation was zero?)",
                            po->name, (double)v);
        float *copy = malloc(sizeof *copy);
        if (!copy) return g4q_fail(rs->ctx, G4Q_ERR_NOMEM, "out of memory");
        *copy = v;
        G4Q_TRY(write_output(rs, po, copy, copy));
    }
    return G4Q_OK;
}

static g4q_status process_item(run_state *rs, const g4q_plan_item *it, const float *amax)
{
    if (it->format == G4Q_PF_KEEP) {
        void **changed = rs->ready ? rs->ready[it - rs->plan->items] : NULL;
        /* a kept tensor with new values (e.g. a norm that absorbed smoothing factors) */
        G4Q_TRY(changed ? write_output(rs, &it->out[0], changed[0], NULL) : write_kept(rs, it));
        return write_calibrated(rs, it);
    }
    const int n_weight = g4q_plan_item_weight_outputs(it); /* they come first (plan.h) */
    void *bufs[G4Q_PLAN_MAX_OUTPUTS] = {0};
    g4q_status st = G4Q_OK;
    void **ready = rs->ready ? rs->ready[it - rs->plan->items] : NULL;
    for (int o = ready ? it->n_out : 0; o < it->n_out && st == G4Q_OK; o++) {
        bufs[o] = malloc(it->out[o].nbytes ? it->out[o].nbytes : 1);
        if (!bufs[o])
            st = g4q_fail(rs->ctx, G4Q_ERR_NOMEM, "%s: cannot allocate %llu bytes",
                          it->out[o].name, (unsigned long long)it->out[o].nbytes);
    }
    float group_amax = it->group >= 0 ? amax[it->group] : 0.0f;
    if (st == G4Q_OK && !ready && g4q_plan_item_needs_hessian(it))
        st = g4q_fail(rs->ctx, G4Q_ERR_NEEDS_CALIBRATION,
                      "'%s': %s needs the calibration's input Hessian (quantize through "
                      "g4q_quantize, which computes it)",
                      it->module, g4q_plan_item_hessian_use(it));
    else if (st == G4Q_OK && !ready)
        st = g4q_quantize_item(rs->ctx, rs->gpu, it, group_amax, NULL, bufs, NULL);
    for (int o = 0; o < n_weight && st == G4Q_OK; o++) {
        /* the queue owns bufs[o] from here (ready outputs belong to the caller) */
        st = write_output(rs, &it->out[o], ready ? ready[o] : bufs[o], bufs[o]);
        bufs[o] = NULL;
    }
    if (st == G4Q_OK)
        st = write_calibrated(rs, it);
    for (int o = 0; o < it->n_out; o++)
        free(bufs[o]);
    return st;
}

/* An item handed on (or failed): an error names the item's input file (a missing calibration
 * names the recipe instead), and the progress counts its input bytes. Returns st. */
static g4q_status item_done(run_state *rs, const g4q_plan_item *it, g4q_status st)
{
    if (st != G4Q_OK && st != G4Q_ERR_NEEDS_CALIBRATION)
        g4q_error_prefix(rs->ctx, "%s",
                         g4q_st_path(g4q_ckpt_file(rs->ckpt, (size_t)it->src->file)));
    rs->bytes_done += it->src->nbytes;
    g4q_progress_update(&rs->progress, rs->bytes_done);
    return st;
}

/* ---- the GPU pipe (backend/wquant.h): upload, quantize and copy back overlapped ----
 * On the GPU, the items whose jobs the pipe takes go through it: a fused group as one unit (its
 * shared amax taken on the device, over the members in plan order as group_amaxes does), every
 * other item alone. Their results come back in order, in the pipe's pinned buffers, which the
 * write queue hands back once written; their input pages are dropped as soon as uploaded. */

/* 1 when the exporter quantizes the item itself (not ready, no Hessian) and the pipe takes its
 * job. */
static int pipe_takes(run_state *rs, const g4q_plan_item *it)
{
    if (it->format == G4Q_PF_KEEP || g4q_plan_item_needs_hessian(it) ||
        (rs->ready && rs->ready[it - rs->plan->items]))
        return 0;
    g4q_ctx scratch = *rs->ctx; /* a job that cannot be made goes the CPU way, which says why */
    g4q_wquant_job job;
    return g4q_quantize_item_job(&scratch, it, 0.0f, NULL, NULL, &job) == G4Q_OK &&
           g4q_wquant_pipe_accepts(&job);
}

/* Marks the items quantized through the pipe (a fused group only with all its members) and, if
 * there are any, starts the pipe with buffers for the largest of them. */
static g4q_status start_pipe(run_state *rs)
{
    const g4q_plan *p = rs->plan;
    rs->pipe_of = calloc(p->n_items ? p->n_items : 1, 1);
    if (!rs->pipe_of) return g4q_fail(rs->ctx, G4Q_ERR_NOMEM, "out of memory");
    uint64_t max_w = 0, max_out = 0;
    size_t n = 0;
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *it = &p->items[i];
        int ok = pipe_takes(rs, it);
        if (ok && it->group >= 0) {
            const g4q_plan_group *g = &p->groups[it->group];
            ok = g->n_members <= G4Q_WQUANT_PIPE_MAX_UNIT;
            for (int k = 0; k < g->n_members && ok; k++)
                ok = pipe_takes(rs, &p->items[g->members[k]]);
        }
        if (!ok) continue;
        rs->pipe_of[i] = 1;
        n++;
        uint64_t out = 0;
        for (int o = 0; o < g4q_plan_item_weight_outputs(it); o++)
            out += it->out[o].nbytes + 256; /* the pipe aligns each output to 256 bytes */
        max_w = it->src->nbytes > max_w ? it->src->nbytes : max_w;
        max_out = out > max_out ? out : max_out;
    }
    if (n == 0) return G4Q_OK;
    const long cores = rs->ctx->threads > 0 ? rs->ctx->threads : sysconf(_SC_NPROCESSORS_ONLN);
    const g4q_wquant_pipe_opts o = {.max_w_bytes = max_w, .max_out_bytes = max_out,
                                    .copy_threads = cores >= 8 ? 4 : cores >= 4 ? 2 : 1};
    return g4q_wquant_pipe_create(rs->ctx, rs->gpu, &o, &rs->pipe);
}

/* A result of the pipe: its weight outputs to the write queue (which releases each buffer once
 * written), then the item's calibrated outputs. */
static g4q_status write_result(run_state *rs, const g4q_wquant_pipe_result *r)
{
    const g4q_plan_item *it = r->tag;
    const int nw = g4q_plan_item_weight_outputs(it);
    g4q_status st = G4Q_OK;
    if (r->n_out != nw)
        st = g4q_fail(rs->ctx, G4Q_ERR_INTERNAL, "'%s': %d outputs from the GPU, %d planned",
                      it->module, r->n_out, nw);
    for (int o = 0; o < nw && st == G4Q_OK; o++)
        if (r->nbytes[o] != it->out[o].nbytes)
            st = g4q_fail(rs->ctx, G4Q_ERR_INTERNAL, "%s: %llu bytes from the GPU, %llu planned",
                          it->out[o].name, (unsigned long long)r->nbytes[o],
                          (unsigned long long)it->out[o].nbytes);
    int o = 0;
    for (; o < r->n_out && st == G4Q_OK; o++) {
        const g4q_plan_output *po = &it->out[o];
        const g4q_writeq_job j = {.index = po->writer_index, .data = r->out[o],
                                  .nbytes = po->nbytes, .hash_hex = rs->hashes[po->writer_index],
                                  .done = g4q_wquant_pipe_release, .done_arg = r->hold};
        st = g4q_writeq_put(rs->wq, &j); /* the queue releases it, written or not */
    }
    for (; o < r->n_out; o++) /* not handed to the queue */
        g4q_wquant_pipe_release(r->hold);
    if (st == G4Q_OK)
        st = write_calibrated(rs, it);
    return item_done(rs, it, st);
}

/* Writes the pipe's results: those ready (need < 0), or until it can take `need` more jobs
 * (need > 0) or holds none (need 0) (g4q_wquant_pipe_wait). */
static g4q_status take_results(run_state *rs, int need)
{
    for (;;) {
        g4q_wquant_pipe_result r;
        int got = 0;
        G4Q_TRY(g4q_wquant_pipe_wait(rs->ctx, rs->pipe, need, &r, &got));
        if (!got) return G4Q_OK;
        G4Q_TRY(write_result(rs, &r));
    }
}

/* Submits an item of pipe_of, with the rest of its fused group (as one fused unit). */
static g4q_status submit_unit(run_state *rs, const g4q_plan_item *it)
{
    const g4q_plan *p = rs->plan;
    int members[G4Q_WQUANT_PIPE_MAX_UNIT], n = 0;
    if (it->group < 0)
        members[n++] = (int)(it - p->items);
    else
        for (int k = 0; k < p->groups[it->group].n_members; k++)
            members[n++] = p->groups[it->group].members[k];
    g4q_wquant_pipe_item items[G4Q_WQUANT_PIPE_MAX_UNIT];
    memset(items, 0, sizeof items);
    g4q_status st = G4Q_OK;
    for (int i = 0; i < n && st == G4Q_OK; i++) {
        const g4q_plan_item *mi = &p->items[members[i]];
        st = g4q_quantize_item_job(rs->ctx, mi, 0.0f, NULL, NULL, &items[i].job);
        kept_pages *k = st == G4Q_OK ? malloc(sizeof *k) : NULL;
        if (st == G4Q_OK && !k) st = g4q_fail(rs->ctx, G4Q_ERR_NOMEM, "out of memory");
        if (st != G4Q_OK) break;
        *k = (kept_pages){rs->ckpt, mi->src};
        items[i].tag = (void *)mi;
        items[i].where = g4q_st_path(g4q_ckpt_file(rs->ckpt, (size_t)mi->src->file));
        items[i].input_done = release_kept; /* drops the input pages once uploaded */
        items[i].input_arg = k;
    }
    if (st == G4Q_OK) st = take_results(rs, n); /* until the pipe has room */
    if (st == G4Q_OK) st = g4q_wquant_pipe_submit(rs->ctx, rs->pipe, items, n, it->group >= 0);
    if (st != G4Q_OK)
        for (int i = 0; i < n; i++)
            free(items[i].input_arg); /* not submitted: no input_done */
    return st;
}

/* With the pipe, a fused group's members move together to the place of the first of them in
 * `order`, in plan order (the pipe quantizes them as one unit); NULL when out of memory. */
static int *unit_order(const g4q_plan *p, const int *order, size_t n)
{
    int *out = malloc((n ? n : 1) * sizeof *out);
    char *seen = calloc(p->n_items ? p->n_items : 1, 1);
    size_t m = 0;
    for (size_t k = 0; out && seen && k < n; k++) {
        const int i = order[k];
        if (seen[i]) continue;
        const g4q_plan_group *g = p->items[i].group >= 0 ? &p->groups[p->items[i].group] : NULL;
        for (int j = 0; j < (g ? g->n_members : 1); j++) {
            const int x = g ? g->members[j] : i;
            if (!seen[x]) out[m++] = x;
            seen[x] = 1;
        }
    }
    free(seen);
    if (out && m != n) { /* a group member outside `order`: keep the plain order */
        memcpy(out, order, n * sizeof *out);
    }
    return out;
}

/* Input read ahead of the quantizer: enough for the 12B's largest Linear group (gate + up, 236
 * MB) a few times over, small against the host memory the export may use. */
#define READAHEAD_WINDOW ((uint64_t)768 << 20)

static g4q_status process_all(run_state *rs, const int *plan_order, size_t n_order)
{
    const g4q_plan *p = rs->plan;
    float *amax = calloc(p->n_groups ? p->n_groups : 1, sizeof *amax);
    int *order = rs->pipe ? unit_order(p, plan_order, n_order) : NULL;
    if (!amax || (rs->pipe && !order)) {
        free(amax);
        free(order);
        return g4q_fail(rs->ctx, G4Q_ERR_NOMEM, "out of memory");
    }
    const int *eff = order ? order : plan_order;
    /* The input in processing order, read ahead on a thread (io/readahead.h) while this one
     * quantizes: within READAHEAD_WINDOW of the item at hand. */
    g4q_range *ranges = calloc(n_order ? n_order : 1, sizeof *ranges);
    g4q_readahead *ra = NULL;
    g4q_status st = ranges ? G4Q_OK : g4q_fail(rs->ctx, G4Q_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k < n_order && st == G4Q_OK; k++) {
        const g4q_tensor *t = p->items[eff[k]].src;
        const int mapped = t->file >= 0 && g4q_st_is_mapped(g4q_ckpt_file(rs->ckpt, (size_t)t->file));
        ranges[k] = (g4q_range){.p = t->data, .n = mapped ? (size_t)t->nbytes : 0};
    }
    if (st == G4Q_OK) st = g4q_readahead_start(rs->ctx, ranges, n_order, READAHEAD_WINDOW, &ra);
    free(ranges);
    int current_layer = -2;
    for (size_t k = 0; k < n_order && st == G4Q_OK; k++) {
        g4q_readahead_at(ra, k);
        const g4q_plan_item *it = &p->items[eff[k]];
        if (it->layer != current_layer) {
            current_layer = it->layer;
            st = group_amaxes(rs, current_layer, amax);
            if (st != G4Q_OK)
                break;
        }
        if (rs->pipe_of && rs->pipe_of[eff[k]]) {
            /* a group's later members went with its first (unit_order put them after it) */
            if (it->group < 0 || eff[k] == p->groups[it->group].members[0])
                st = submit_unit(rs, it);
        } else {
            st = process_item(rs, it, amax);
            if (it->format != G4Q_PF_KEEP) /* a kept one's pages go once it is written */
                g4q_ckpt_release(rs->ckpt, it->src);
            st = item_done(rs, it, st);
        }
        if (st == G4Q_OK && rs->pipe)
            st = take_results(rs, -1);
    }
    if (st == G4Q_OK && rs->pipe)
        st = take_results(rs, 0); /* all of them */
    g4q_readahead_stop(ra);
    free(amax);
    free(order);
    return st;
}

/* The write queue: a worker per core up to 8 (hashing is the work: ~1.5 GB/s a core), and at most
 * 1 GB queued, which bounds the output buffers and mapped input pages it holds (a bigger tensor,
 * e.g. the 2 GB embedding of the 12B, is written alone). */
#define WRITEQ_INFLIGHT ((uint64_t)1 << 30)

/* With the GPU pipe, whose pinned buffers already bound the quantized outputs, the queue may hold
 * the largest kept tensor beside WRITEQ_INFLIGHT / 2 of others: else the 12B's 2 GB embed_tokens,
 * hashed on one worker for about 2 s, would stop every other write, and so the pipe, meanwhile. */
static uint64_t writeq_inflight(const run_state *rs)
{
    uint64_t big = 0;
    for (size_t i = 0; rs->pipe && i < rs->plan->n_items; i++)
        if (rs->plan->items[i].format == G4Q_PF_KEEP && rs->plan->items[i].src->nbytes > big)
            big = rs->plan->items[i].src->nbytes;
    return big + WRITEQ_INFLIGHT / 2 > WRITEQ_INFLIGHT ? big + WRITEQ_INFLIGHT / 2
                                                        : WRITEQ_INFLIGHT;
}

static int writer_threads(const g4q_ctx *ctx)
{
    long n = ctx->threads > 0 ? ctx->threads : sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 8 ? 8 : (int)n;
}

/* Copies every regular file of the input folder that is not weights or a file we rewrite. */
static g4q_status copy_side_files(g4q_ctx *ctx, const char *in_dir, const g4q_outdir *od)
{
    static const char *const skip[] = {"config.json", "hf_quant_config.json",
                                       "quantize_config.json", "manifest.json",
                                       "model.safetensors.index.json"};
    DIR *d = opendir(in_dir);
    if (!d)
        return g4q_fail(ctx, G4Q_ERR_IO, "%s: cannot list the input folder", in_dir);
    g4q_status st = G4Q_OK;
    struct dirent *e;
    while (st == G4Q_OK && (e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        size_t len = strlen(n);
        int skipped = n[0] == '.' || (len > 12 && strcmp(n + len - 12, ".safetensors") == 0);
        for (size_t i = 0; i < sizeof skip / sizeof *skip && !skipped; i++)
            skipped = strcmp(n, skip[i]) == 0;
        char src[4096], dst[4096];
        if (skipped || g4q_path_join(ctx, src, sizeof src, in_dir, n) != G4Q_OK)
            continue;
        if (g4q_is_dir(src))
            continue;
        st = g4q_outdir_path(ctx, od, n, dst, sizeof dst);
        if (st == G4Q_OK)
            st = g4q_copy_file(ctx, src, dst);
    }
    closedir(d);
    return st;
}

/* The input's identity: config.json's sha256, and per weights file its name, size and the
 * sha256 of its safetensors header (names, dtypes, shapes, offsets). */
static cJSON *input_identity(g4q_ctx *ctx, const g4q_ckpt *ck, const char *config_text)
{
    cJSON *o = cJSON_CreateObject();
    char hex[G4Q_SHA256_HEX];
    g4q_sha256_hex(config_text, strlen(config_text), hex);
    cJSON_AddStringToObject(o, "config_sha256", hex);
    cJSON *files = cJSON_AddArrayToObject(o, "files");
    for (size_t i = 0; i < g4q_ckpt_file_count(ck); i++) {
        const char *path = g4q_st_path(g4q_ckpt_file(ck, i));
        const char *base = strrchr(path, '/');
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "name", base ? base + 1 : path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint64_t hlen = 0;
        if (fd >= 0 && pread(fd, &hlen, 8, 0) == 8 && hlen <= G4Q_ST_MAX_HEADER) {
            char *h = malloc(hlen + 1);
            if (h && pread(fd, h, hlen, 8) == (ssize_t)hlen) {
                g4q_sha256_hex(h, hlen, hex);
                cJSON_AddStringToObject(f, "header_sha256", hex);
            }
            free(h);
            off_t size = lseek(fd, 0, SEEK_END);
            cJSON_AddNumberToObject(f, "bytes", (double)size);
        } else {
            G4Q_WARN(ctx, "%s: cannot read the header for the manifest", path);
        }
        if (fd >= 0)
            close(fd);
        cJSON_AddItemToArray(files, f);
    }
    return o;
}

static g4q_status write_manifest(run_state *rs, const g4q_outdir *od, const char *config_text,
                                 const int *order, size_t n_order)
{
    g4q_ctx *ctx = rs->ctx;
    cJSON *m = cJSON_CreateObject();
    cJSON *tool = cJSON_AddObjectToObject(m, "tool");
    cJSON_AddStringToObject(tool, "name", "gemma4q");
    cJSON_AddStringToObject(tool, "version", G4Q_VERSION);
    cJSON_AddItemToObject(m, "recipe", g4q_recipe_to_cjson(rs->plan->recipe));
    cJSON_AddItemToObject(m, "input", input_identity(ctx, rs->ckpt, config_text));
    if (rs->calib)
        cJSON_AddItemToObject(m, "calibration", g4q_calib_to_cjson(rs->calib));
    cJSON *tensors = cJSON_AddObjectToObject(m, "tensors");
    for (size_t k = 0; k < n_order; k++) {
        const g4q_plan_item *it = &rs->plan->items[order[k]];
        for (int o = 0; o < it->n_out; o++)
            cJSON_AddStringToObject(tensors, it->out[o].name, rs->hashes[it->out[o].writer_index]);
    }
    char path[4096];
    g4q_status st = g4q_outdir_path(ctx, od, "manifest.json", path, sizeof path);
    if (st == G4Q_OK)
        st = g4q_json_write_file(ctx, path, m, 2);
    cJSON_Delete(m);
    return st;
}

static g4q_status run_into(run_state *rs, const g4q_outdir *od, const g4q_config *cfg,
                           const g4q_export_opts *opts)
{
    g4q_ctx *ctx = rs->ctx;
    const g4q_plan *p = rs->plan;
    char path[4096], *config_text = NULL;
    int *order = processing_order(p, cfg->n_layers);
    if (!order)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    g4q_status st = g4q_path_join(ctx, path, sizeof path, g4q_ckpt_dir(rs->ckpt), "config.json");
    if (st == G4Q_OK)
        st = g4q_read_file(ctx, path, 16u << 20, &config_text, NULL);
    const char *meta[] = {"format", "pt", NULL};
    g4q_st_writer_opts wo = {.shard_bytes = opts->shard_bytes, .metadata_kv = meta};
    if (st == G4Q_OK)
        st = g4q_stw_create(ctx, od->partial_path, &wo, &rs->writer);
    if (st == G4Q_OK)
        st = declare_outputs(rs, order, p->n_items);
    if (st == G4Q_OK) {
        rs->hashes = calloc(rs->n_outputs ? rs->n_outputs : 1, sizeof *rs->hashes);
        if (!rs->hashes)
            st = g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    }
    if (st == G4Q_OK)
        st = g4q_stw_begin(rs->writer);
    if (st == G4Q_OK && rs->gpu)
        st = start_pipe(rs);
    if (st == G4Q_OK)
        st = g4q_writeq_create(ctx, rs->writer, writer_threads(ctx), writeq_inflight(rs),
                               &rs->wq);
    if (st == G4Q_OK) {
        g4q_progress_begin(&rs->progress, ctx, "quantize", "B", p->bytes_in);
        st = process_all(rs, order, p->n_items);
        if (st == G4Q_OK) st = g4q_writeq_finish(rs->wq);
        if (st == G4Q_OK)
            g4q_progress_end(&rs->progress);
    }
    g4q_writeq_free(rs->wq); /* on an error: drops what is still queued */
    rs->wq = NULL;
    g4q_wquant_pipe_free(rs->pipe); /* after the queue: it gave back every pipe buffer */
    rs->pipe = NULL;
    free(rs->pipe_of);
    rs->pipe_of = NULL;
    if (st == G4Q_OK)
        st = g4q_stw_finish(rs->writer);
    if (st == G4Q_OK)
        st = g4q_export_write_configs(ctx, p, cfg, config_text, od);
    if (st == G4Q_OK)
        st = copy_side_files(ctx, g4q_ckpt_dir(rs->ckpt), od);
    if (st == G4Q_OK)
        st = write_manifest(rs, od, config_text, order, p->n_items);
    free(config_text);
    free(order);
    return st;
}

g4q_status g4q_export_run(g4q_ctx *ctx, const g4q_plan *plan, const g4q_ckpt *ckpt,
                          const g4q_config *cfg, const g4q_export_opts *opts,
                          g4q_export_stats *stats)
{
    double t0 = g4q_now_seconds();
    if (plan->needs_calibration && !opts->calib)
        return g4q_fail(ctx, G4Q_ERR_NEEDS_CALIBRATION,
                        "recipe '%s' needs calibration: %s; run it first (g4q_calib_run), "
                        "gemma4q never invents scales",
                        plan->recipe->name, plan->calibration_reason);
    run_state rs = {.ctx = ctx, .plan = plan, .ckpt = ckpt,
                    .calib = plan->needs_calibration ? opts->calib : NULL,
                    .ready = opts->ready};
    if (opts->device == G4Q_DEVICE_CUDA)
        G4Q_TRY(g4q_wquant_gpu_create(ctx, &rs.gpu));
    g4q_outdir od;
    g4q_status st = g4q_outdir_begin(ctx, &od, opts->out_dir, opts->overwrite);
    if (st != G4Q_OK) {
        g4q_wquant_gpu_free(rs.gpu);
        return st;
    }
    st = run_into(&rs, &od, cfg, opts);
    if (st == G4Q_OK)
        st = g4q_outdir_commit(ctx, &od);
    if (st != G4Q_OK)
        g4q_outdir_abort(&od);
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->tensors_out = rs.n_outputs;
        stats->bytes_in = plan->bytes_in;
        stats->bytes_out = plan->bytes_out;
        stats->seconds = g4q_now_seconds() - t0;
        stats->peak_rss = g4q_peak_rss_bytes();
        stats->peak_gpu = g4q_wquant_gpu_peak_bytes(rs.gpu);
    }
    g4q_wquant_gpu_free(rs.gpu);
    g4q_stw_free(rs.writer);
    free(rs.hashes);
    return st;
}
