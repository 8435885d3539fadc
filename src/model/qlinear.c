/* Detection and validation of quantized Linears in a checkpoint (see qlinear.h). */
#include "model/qlinear.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/codecs.h"

const char *g4q_qlinear_format_name(g4q_qlinear_format f)
{
    return g4q_layout_name((g4q_layout_format)f);
}

int g4q_qlinear_slot(g4q_weight_role role)
{
    switch (role) {
    case G4Q_W_Q_PROJ:
        return 0;
    case G4Q_W_K_PROJ:
        return 1;
    case G4Q_W_V_PROJ:
        return 2;
    case G4Q_W_O_PROJ:
        return 3;
    case G4Q_W_GATE_PROJ:
        return 4;
    case G4Q_W_UP_PROJ:
        return 5;
    case G4Q_W_DOWN_PROJ:
        return 6;
    default:
        return -1;
    }
}

size_t g4q_qlinears_quantized(const g4q_qlinears *q)
{
    size_t n = 0;
    for (int f = 1; f < G4Q_QL_COUNT; f++)
        n += q->count[f];
    return n;
}

/* ---- tensor lookup by name ---- */

typedef struct finder {
    g4q_ctx *ctx;
    const char *label;
    const g4q_tensor *t;
    size_t n;
    size_t *idx; /* tensor indices sorted by name */
    uint8_t *skip;
} finder;

static int cmp_name(const void *a, const void *b, void *arg)
{
    const g4q_tensor *t = arg;
    const char *x = t[*(const size_t *)a].name, *y = t[*(const size_t *)b].name;
    return strcmp(x ? x : "", y ? y : "");
}

/* The tensor named `name`, or NULL (a g4q_layout_lookup over the finder). */
static const g4q_tensor *lookup(const void *src, const char *name)
{
    const finder *f = src;
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *m = f->t[f->idx[mid]].name;
        int c = strcmp(m ? m : "", name);
        if (c == 0) return &f->t[f->idx[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The tensor `<module>.<suffix>`, or NULL. */
static const g4q_tensor *find(const finder *f, const char *module, const char *suffix)
{
    char name[G4Q_WEIGHT_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s.%s", module, suffix);
    return lookup(f, name);
}

static void take(const finder *f, const g4q_tensor *t)
{
    if (t) f->skip[t - f->t] = 1;
}

/* The value of an fp32 scalar whose dtype and shape the layout checked: finite and > 0. */
static g4q_status positive(const finder *f, const g4q_tensor *t, float *v)
{
    memcpy(v, t->data, 4);
    if (!isfinite(*v) || !(*v > 0.0f))
        return g4q_fail(f->ctx, G4Q_ERR_NUMERIC, "%s: tensor '%s': %g, expected a finite value > 0",
                        f->label, t->name, (double)*v);
    return G4Q_OK;
}

/* The activation scale of a module, when stored (ModelOpt convention: 1 / CT's global scale). */
static g4q_status input_scale(const finder *f, g4q_qlinear *q, const g4q_layout_match *m,
                              int reciprocal)
{
    const g4q_tensor *is = g4q_layout_match_role(m, G4Q_LROLE_INPUT_SCALE);
    q->has_input_scale = is != NULL;
    if (!is) return G4Q_OK;
    float v;
    G4Q_TRY(positive(f, is, &v));
    q->input_scale = reciprocal ? 1.0f / v : v;
    return G4Q_OK;
}

/* ---- per-format values and descriptors (the tensors are checked by g4q_layout_find) ---- */

static g4q_status nvfp4(const finder *f, g4q_qlinear *q, const g4q_layout_match *m)
{
    const int ct = m->format == G4Q_LAYOUT_NVFP4_CT;
    const g4q_tensor *w = g4q_layout_match_role(m, G4Q_LROLE_CODES);
    const g4q_tensor *ws = g4q_layout_match_role(m, G4Q_LROLE_SCALES);
    const g4q_tensor *g = g4q_layout_match_role(m, G4Q_LROLE_GLOBAL);
    float v;
    G4Q_TRY(positive(f, g, &v));
    G4Q_TRY(input_scale(f, q, m, ct));
    q->desc = (g4q_weight_desc){.format = G4Q_WF_NVFP4,
                                .rows = m->rows,
                                .cols = m->cols,
                                .data = w->data,
                                .scale = ws->data,
                                .scale2 = g->data,
                                .name = q->module,
                                .flags = ct ? G4Q_WD_GLOBAL_RECIPROCAL : 0};
    return G4Q_OK;
}

static g4q_status fp8(const finder *f, g4q_qlinear *q, const g4q_layout_match *m)
{
    const int per_tensor = m->format == G4Q_LAYOUT_FP8_TENSOR;
    const g4q_tensor *w = g4q_layout_match_role(m, G4Q_LROLE_CODES);
    const g4q_tensor *ws = g4q_layout_match_role(m, per_tensor ? G4Q_LROLE_GLOBAL
                                                               : G4Q_LROLE_SCALES);
    float v;
    if (per_tensor) G4Q_TRY(positive(f, ws, &v));
    for (uint64_t i = 0; !per_tensor && i < ws->numel; i++) {
        memcpy(&v, (const unsigned char *)ws->data + 4 * i, 4);
        if (!isfinite(v) || !(v > 0.0f))
            return g4q_fail(f->ctx, G4Q_ERR_NUMERIC,
                            "%s: tensor '%s': block scale %llu is %g, expected finite > 0",
                            f->label, ws->name, (unsigned long long)i, (double)v);
    }
    G4Q_TRY(input_scale(f, q, m, 0));
    q->desc = (g4q_weight_desc){.format = G4Q_WF_FP8_BLOCK,
                                .rows = m->rows,
                                .cols = m->cols,
                                .data = w->data,
                                .scale = ws->data,
                                .name = q->module,
                                .flags = per_tensor ? G4Q_WD_FP8_PER_TENSOR : 0};
    return G4Q_OK;
}

/* The runtime's INT4 kernels take groups of a multiple of 8 inputs (whole words), up to 2^20. */
static g4q_status int4_group(const finder *f, const g4q_layout_match *m)
{
    const g4q_tensor *s = g4q_layout_match_role(m, G4Q_LROLE_SCALES);
    if (m->group % G4Q_INT4_PER_I32 || m->group > (1 << 20))
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                        "%s: tensor '%s': groups of %lld inputs; the runtime needs a multiple of "
                        "8",
                        f->label, s->name, (long long)m->group);
    return G4Q_OK;
}

static g4q_status gptq(const finder *f, g4q_qlinear *q, const g4q_layout_match *m)
{
    const g4q_tensor *qw = g4q_layout_match_role(m, G4Q_LROLE_CODES);
    const g4q_tensor *qz = g4q_layout_match_role(m, G4Q_LROLE_QZEROS);
    const g4q_tensor *sc = g4q_layout_match_role(m, G4Q_LROLE_SCALES);
    const g4q_tensor *gi = g4q_layout_match_role(m, G4Q_LROLE_G_IDX);
    const int64_t group = m->group;
    G4Q_TRY(int4_group(f, m));
    for (uint64_t i = 0; i < qz->numel; i++) {
        uint32_t z;
        memcpy(&z, (const unsigned char *)qz->data + 4 * i, 4);
        if (z != 0x77777777u)
            return g4q_fail(f->ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: tensor '%s': word %llu is 0x%08x; only symmetric GPTQ "
                            "(0x77777777, zero point 8) is supported",
                            f->label, qz->name, (unsigned long long)i, (unsigned)z);
    }
    for (int64_t i = 0; i < m->cols; i++) {
        int32_t g;
        memcpy(&g, (const unsigned char *)gi->data + 4 * i, 4);
        if (g != i / group)
            return g4q_fail(f->ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: tensor '%s': g_idx[%lld] = %d, expected %lld (act-order / "
                            "desc_act checkpoints are not supported)",
                            f->label, gi->name, (long long)i, (int)g, (long long)(i / group));
    }
    q->desc = (g4q_weight_desc){.format = G4Q_WF_INT4,
                                .rows = m->rows,
                                .cols = m->cols,
                                .data = qw->data,
                                .scale = sc->data,
                                .group = (int)group,
                                .name = q->module,
                                .flags = G4Q_WD_INT4_GPTQ,
                                .scale_dtype = sc->dtype};
    return G4Q_OK;
}

static g4q_status ct_int4(const finder *f, g4q_qlinear *q, const g4q_layout_match *m)
{
    const g4q_tensor *wp = g4q_layout_match_role(m, G4Q_LROLE_CODES);
    const g4q_tensor *ws = g4q_layout_match_role(m, G4Q_LROLE_SCALES);
    const g4q_tensor *sh = g4q_layout_match_role(m, G4Q_LROLE_SHAPE);
    const g4q_tensor *zp = find(f, q->module, "weight_zero_point");
    if (zp)
        return g4q_fail(f->ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: tensor '%s': asymmetric INT4 (zero "
                        "points) is not supported",
                        f->label, zp->name);
    G4Q_TRY(int4_group(f, m));
    if (sh) {
        int64_t d[2];
        g4q_tensor_int_at(sh, 0, &d[0]);
        g4q_tensor_int_at(sh, 1, &d[1]);
        if (d[0] != m->rows || d[1] != m->cols)
            return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                            "%s: tensor '%s': [%lld, %lld], expected [%lld, "
                            "%lld]",
                            f->label, sh->name, (long long)d[0], (long long)d[1],
                            (long long)m->rows, (long long)m->cols);
    }
    q->desc = (g4q_weight_desc){.format = G4Q_WF_INT4,
                                .rows = m->rows,
                                .cols = m->cols,
                                .data = wp->data,
                                .scale = ws->data,
                                .group = (int)m->group,
                                .name = q->module,
                                .scale_dtype = ws->dtype};
    return G4Q_OK;
}

/* Detects the stored form of one Linear module [out, in] through the layout table, checks the
 * values the runtime relies on and marks its tensors as used. */
static g4q_status detect(const finder *f, g4q_qlinear *q, int64_t out, int64_t in)
{
    g4q_layout_match m;
    q->format = G4Q_QL_BF16;
    G4Q_TRY(g4q_layout_find(f->ctx, f->label, lookup, f, q->module, out, in, &m));
    switch (m.format) {
    case G4Q_LAYOUT_NVFP4_MO:
    case G4Q_LAYOUT_NVFP4_CT:
        G4Q_TRY(nvfp4(f, q, &m));
        break;
    case G4Q_LAYOUT_FP8_TENSOR:
    case G4Q_LAYOUT_FP8_BLOCK:
        G4Q_TRY(fp8(f, q, &m));
        break;
    case G4Q_LAYOUT_INT4_GPTQ:
        G4Q_TRY(gptq(f, q, &m));
        break;
    case G4Q_LAYOUT_INT4_CT:
        G4Q_TRY(ct_int4(f, q, &m));
        break;
    default:
        return G4Q_OK; /* BF16, or absent / wrong: g4q_weights_bind_partial reports it */
    }
    for (int k = 0; k < m.layout->n; k++)
        take(f, m.t[k]);
    q->format = (g4q_qlinear_format)m.format;
    return G4Q_OK;
}

/* Validates the KV-cache scale tensors (§7) of the layers, keeps their values in q and marks
 * them as used. */
static g4q_status take_kv_scales(const finder *f, const g4q_config *cfg, g4q_qlinears *q)
{
    for (int L = 0; L < cfg->n_layers; L++) {
        float *val[2] = {&q->k_scale[L], &q->v_scale[L]};
        for (int i = 0; i < 2; i++) {
            const g4q_layout_kv *kv = g4q_layout_kv_get(i);
            char m[G4Q_WEIGHT_NAME_MAX];
            snprintf(m, sizeof m, "%slayers.%d.self_attn.%s", cfg->prefix, L, kv->proj);
            const g4q_tensor *t = find(f, m, kv->t.suffix);
            if (!t) continue;
            G4Q_TRY(g4q_layout_check(f->ctx, f->label, &kv->t, t, 0, 0, 0));
            G4Q_TRY(positive(f, t, val[i]));
            take(f, t);
            q->n_kv_scales++;
        }
    }
    return G4Q_OK;
}

static g4q_status detect_all(const finder *f, const g4q_config *cfg, g4q_qlinears *q)
{
    q->n_layers = cfg->n_layers;
    for (int L = 0; L < cfg->n_layers; L++) {
        g4q_linear lin[G4Q_MAX_LAYER_LINEARS];
        int nl = g4q_weights_layer_linears(cfg, L, lin);
        for (int i = 0; i < nl; i++) {
            g4q_qlinear *ql = &q->layers[L][g4q_qlinear_slot(lin[i].role)];
            snprintf(ql->module, sizeof ql->module, "%slayers.%d.%s", cfg->prefix, L,
                     lin[i].module);
            G4Q_TRY(detect(f, ql, lin[i].out_features, lin[i].in_features));
            q->count[ql->format]++;
            q->n_input_scales += (size_t)ql->has_input_scale;
        }
    }
    const struct {
        int on;
        const char *module;
        int64_t out, in;
    } mm[G4Q_QL_MAX_MULTIMODAL] = {
        {cfg->has_vision, "model.vision_embedder.patch_dense", cfg->vision_embed_dim,
         cfg->vision_patch_dim},
        {cfg->has_vision, "model.embed_vision.embedding_projection", cfg->hidden,
         cfg->vision_proj_dim},
        {cfg->has_audio, "model.embed_audio.embedding_projection", cfg->hidden,
         cfg->audio_embed_dim},
    };
    for (int i = 0; i < G4Q_QL_MAX_MULTIMODAL; i++) {
        if (!mm[i].on) continue;
        g4q_qlinear *ql = &q->multimodal[q->n_multimodal++];
        snprintf(ql->module, sizeof ql->module, "%s", mm[i].module);
        G4Q_TRY(detect(f, ql, mm[i].out, mm[i].in));
        q->count[ql->format]++;
        q->n_input_scales += (size_t)ql->has_input_scale;
    }
    return take_kv_scales(f, cfg, q);
}

/* "<module>.weight" of every packed Linear, for g4q_weights_bind_partial. */
static g4q_status packed_names(g4q_ctx *ctx, const g4q_qlinears *q,
                               char (**names)[G4Q_WEIGHT_NAME_MAX + 8], const char ***ptrs,
                               size_t *n)
{
    size_t cap = g4q_qlinears_quantized(q) + 1;
    *names = malloc(cap * sizeof **names);
    *ptrs = malloc(cap * sizeof **ptrs);
    *n = 0;
    if (!*names || !*ptrs) return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    for (int L = 0; L < q->n_layers; L++)
        for (int i = 0; i < G4Q_MAX_LAYER_LINEARS; i++)
            if (q->layers[L][i].format != G4Q_QL_BF16) {
                snprintf((*names)[*n], sizeof **names, "%s.weight", q->layers[L][i].module);
                (*ptrs)[*n] = (*names)[*n];
                (*n)++;
            }
    for (int i = 0; i < q->n_multimodal; i++)
        if (q->multimodal[i].format != G4Q_QL_BF16) {
            snprintf((*names)[*n], sizeof **names, "%s.weight", q->multimodal[i].module);
            (*ptrs)[*n] = (*names)[*n];
            (*n)++;
        }
    return G4Q_OK;
}

g4q_status g4q_qlinears_bind(g4q_ctx *ctx, const g4q_config *cfg, const g4q_tensor *tensors,
                             size_t n, const char *label, g4q_weights *w, g4q_qlinears *q)
{
    memset(q, 0, sizeof *q);
    memset(w, 0, sizeof *w);
    finder f = {ctx, label, tensors, n, malloc((n + 1) * sizeof(size_t)), calloc(n + 1, 1)};
    char(*names)[G4Q_WEIGHT_NAME_MAX + 8] = NULL;
    const char **ptrs = NULL;
    size_t np = 0;
    g4q_status st = G4Q_OK;
    if (!f.idx || !f.skip) {
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory indexing %zu tensors", label, n);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        f.idx[i] = i;
    qsort_r(f.idx, n, sizeof *f.idx, cmp_name, (void *)tensors);
    st = detect_all(&f, cfg, q);
    if (st == G4Q_OK) st = packed_names(ctx, q, &names, &ptrs, &np);
    if (st == G4Q_OK)
        st = g4q_weights_bind_partial(ctx, cfg, tensors, n, label, f.skip, ptrs, np, w);
done:
    free(f.idx);
    free(f.skip);
    free(names);
    free(ptrs);
    return st;
}
