/* Detection and validation of quantized Linears in a checkpoint (see qlinear.h). */
#include "model/qlinear.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/codecs.h"

const char *g4q_qlinear_format_name(g4q_qlinear_format f)
{
    static const char *const names[G4Q_QL_COUNT] = {
        "bf16",        "nvfp4 (modelopt)", "nvfp4 (compressed-tensors)", "fp8 per-tensor",
        "fp8 128x128", "int4 (gptq)",      "int4 (compressed-tensors)"};
    return (unsigned)f < G4Q_QL_COUNT ? names[f] : "unknown";
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

/* The tensor `<module>.<suffix>`, or NULL. */
static const g4q_tensor *find(const finder *f, const char *module, const char *suffix)
{
    char name[G4Q_WEIGHT_NAME_MAX + 32];
    snprintf(name, sizeof name, "%s.%s", module, suffix);
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

static void take(const finder *f, const g4q_tensor *t)
{
    if (t) f->skip[t - f->t] = 1;
}

static void fmt_shape(char *buf, size_t n, const g4q_tensor *t)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && i < G4Q_MAX_DIMS && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Checks dtype and a 2-D shape [d0, d1] (d1 < 0: 1-D [d0]). */
static g4q_status expect(const finder *f, const g4q_tensor *t, g4q_dtype dt, int64_t d0, int64_t d1)
{
    int ndim = d1 < 0 ? 1 : 2;
    int ok =
        t->dtype == dt && t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (ok) return G4Q_OK;
    char got[96], want[64];
    fmt_shape(got, sizeof got, t);
    if (ndim == 1)
        snprintf(want, sizeof want, "[%lld]", (long long)d0);
    else
        snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
    return g4q_fail(f->ctx, G4Q_ERR_SHAPE, "%s: tensor '%s': %s %s, expected %s %s", f->label,
                    t->name, g4q_dtype_name(t->dtype), got, g4q_dtype_name(dt), want);
}

/* An fp32 scalar ([] or [1]), finite and > 0; *v receives it. */
static g4q_status expect_scalar(const finder *f, const g4q_tensor *t, float *v)
{
    if (t->dtype != G4Q_DT_F32 || t->numel != 1 || t->ndim > 1) {
        char got[96];
        fmt_shape(got, sizeof got, t);
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                        "%s: tensor '%s': %s %s, expected an F32 scalar "
                        "([] or [1])",
                        f->label, t->name, g4q_dtype_name(t->dtype), got);
    }
    memcpy(v, t->data, 4);
    if (!isfinite(*v) || !(*v > 0.0f))
        return g4q_fail(f->ctx, G4Q_ERR_NUMERIC, "%s: tensor '%s': %g, expected a finite value > 0",
                        f->label, t->name, (double)*v);
    return G4Q_OK;
}

static g4q_status need(const finder *f, const g4q_tensor *t, const char *module, const char *suffix,
                       const char *what)
{
    if (t) return G4Q_OK;
    return g4q_fail(f->ctx, G4Q_ERR_FORMAT, "%s: tensor '%s.%s' missing (%s)", f->label, module,
                    suffix, what);
}

/* ---- per-format validation ---- */

static g4q_status nvfp4(const finder *f, g4q_qlinear *q, const g4q_tensor *w, int ct, int64_t out,
                        int64_t in)
{
    const char *m = q->module;
    const g4q_tensor *ws = find(f, m, "weight_scale");
    const g4q_tensor *g = find(f, m, ct ? "weight_global_scale" : "weight_scale_2");
    const g4q_tensor *is = find(f, m, ct ? "input_global_scale" : "input_scale");
    const char *what = ct ? "compressed-tensors NVFP4" : "ModelOpt NVFP4";
    G4Q_TRY(need(f, ws, m, "weight_scale", what));
    G4Q_TRY(need(f, g, m, ct ? "weight_global_scale" : "weight_scale_2", what));
    if (in % G4Q_NVFP4_BLOCK)
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                        "%s: tensor '%s': NVFP4 needs in features %% 16 "
                        "== 0, the config gives %lld",
                        f->label, w->name, (long long)in);
    G4Q_TRY(expect(f, w, G4Q_DT_U8, out, in / 2));
    G4Q_TRY(expect(f, ws, G4Q_DT_F8_E4M3, out, in / G4Q_NVFP4_BLOCK));
    float v;
    G4Q_TRY(expect_scalar(f, g, &v));
    if (is) {
        G4Q_TRY(expect_scalar(f, is, &v));
        q->input_scale = ct ? 1.0f / v : v;
    }
    take(f, w), take(f, ws), take(f, g), take(f, is);
    q->format = ct ? G4Q_QL_NVFP4_CT : G4Q_QL_NVFP4_MO;
    q->has_input_scale = is != NULL;
    q->desc = (g4q_weight_desc){.format = G4Q_WF_NVFP4,
                                .rows = out,
                                .cols = in,
                                .data = w->data,
                                .scale = ws->data,
                                .scale2 = g->data,
                                .name = q->module,
                                .flags = ct ? G4Q_WD_GLOBAL_RECIPROCAL : 0};
    return G4Q_OK;
}

static g4q_status fp8(const finder *f, g4q_qlinear *q, const g4q_tensor *w, int64_t out, int64_t in)
{
    const char *m = q->module;
    const g4q_tensor *ws = find(f, m, "weight_scale"), *is = find(f, m, "input_scale");
    G4Q_TRY(need(f, ws, m, "weight_scale", "ModelOpt FP8"));
    G4Q_TRY(expect(f, w, G4Q_DT_F8_E4M3, out, in));
    const int64_t R = (out + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK;
    const int64_t C = (in + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK;
    float v;
    const int per_tensor = ws->ndim <= 1 && ws->numel == 1;
    if (per_tensor) {
        G4Q_TRY(expect_scalar(f, ws, &v));
    } else {
        int ok =
            ws->dtype == G4Q_DT_F32 && ((ws->ndim == 4 && ws->shape[0] == R && ws->shape[1] == 1 &&
                                         ws->shape[2] == C && ws->shape[3] == 1) ||
                                        (ws->ndim == 2 && ws->shape[0] == R && ws->shape[1] == C));
        if (!ok) {
            char got[96];
            fmt_shape(got, sizeof got, ws);
            return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                            "%s: tensor '%s': %s %s, expected F32 [] (per tensor) or [%lld, 1, "
                            "%lld, 1] (128x128 blocks)",
                            f->label, ws->name, g4q_dtype_name(ws->dtype), got, (long long)R,
                            (long long)C);
        }
        for (uint64_t i = 0; i < ws->numel; i++) {
            memcpy(&v, (const unsigned char *)ws->data + 4 * i, 4);
            if (!isfinite(v) || !(v > 0.0f))
                return g4q_fail(f->ctx, G4Q_ERR_NUMERIC,
                                "%s: tensor '%s': block scale %llu is %g, expected finite > 0",
                                f->label, ws->name, (unsigned long long)i, (double)v);
        }
    }
    if (is) {
        G4Q_TRY(expect_scalar(f, is, &v));
        q->input_scale = v;
    }
    take(f, w), take(f, ws), take(f, is);
    q->format = per_tensor ? G4Q_QL_FP8_TENSOR : G4Q_QL_FP8_BLOCK;
    q->has_input_scale = is != NULL;
    q->desc = (g4q_weight_desc){.format = G4Q_WF_FP8_BLOCK,
                                .rows = out,
                                .cols = in,
                                .data = w->data,
                                .scale = ws->data,
                                .name = q->module,
                                .flags = per_tensor ? G4Q_WD_FP8_PER_TENSOR : 0};
    return G4Q_OK;
}

/* Group size from a scale tensor's group count along `in`. */
static g4q_status int4_group(const finder *f, const g4q_tensor *s, int64_t groups, int64_t in,
                             int *group)
{
    if (groups < 1 || in % groups || (in / groups) % G4Q_INT4_PER_I32 || in / groups > (1 << 20))
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                        "%s: tensor '%s': %lld groups do not split %lld inputs into groups of a "
                        "multiple of 8",
                        f->label, s->name, (long long)groups, (long long)in);
    *group = (int)(in / groups);
    if (s->dtype != G4Q_DT_F16 && s->dtype != G4Q_DT_BF16 && s->dtype != G4Q_DT_F32)
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                        "%s: tensor '%s': dtype %s, expected F16, BF16 or "
                        "F32 scales",
                        f->label, s->name, g4q_dtype_name(s->dtype));
    return G4Q_OK;
}

static g4q_status gptq(const finder *f, g4q_qlinear *q, const g4q_tensor *qw, int64_t out,
                       int64_t in)
{
    const char *m = q->module;
    const g4q_tensor *qz = find(f, m, "qzeros"), *sc = find(f, m, "scales");
    const g4q_tensor *gi = find(f, m, "g_idx");
    G4Q_TRY(need(f, qz, m, "qzeros", "GPTQ"));
    G4Q_TRY(need(f, sc, m, "scales", "GPTQ"));
    G4Q_TRY(need(f, gi, m, "g_idx", "GPTQ"));
    if (in % G4Q_INT4_PER_I32 || out % G4Q_INT4_PER_I32)
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                        "%s: tensor '%s': GPTQ needs in and out %% 8 == 0, "
                        "the config gives [%lld, %lld]",
                        f->label, qw->name, (long long)out, (long long)in);
    G4Q_TRY(expect(f, qw, G4Q_DT_I32, in / 8, out));
    int group = 0;
    G4Q_TRY(int4_group(f, sc, sc->ndim == 2 ? sc->shape[0] : 0, in, &group));
    G4Q_TRY(expect(f, sc, sc->dtype, in / group, out));
    G4Q_TRY(expect(f, qz, G4Q_DT_I32, in / group, out / 8));
    G4Q_TRY(expect(f, gi, G4Q_DT_I32, in, -1));
    for (uint64_t i = 0; i < qz->numel; i++) {
        uint32_t z;
        memcpy(&z, (const unsigned char *)qz->data + 4 * i, 4);
        if (z != 0x77777777u)
            return g4q_fail(f->ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: tensor '%s': word %llu is 0x%08x; only symmetric GPTQ "
                            "(0x77777777, zero point 8) is supported",
                            f->label, qz->name, (unsigned long long)i, (unsigned)z);
    }
    for (int64_t i = 0; i < in; i++) {
        int32_t g;
        memcpy(&g, (const unsigned char *)gi->data + 4 * i, 4);
        if (g != i / group)
            return g4q_fail(f->ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: tensor '%s': g_idx[%lld] = %d, expected %lld (act-order / "
                            "desc_act checkpoints are not supported)",
                            f->label, gi->name, (long long)i, (int)g, (long long)(i / group));
    }
    take(f, qw), take(f, qz), take(f, sc), take(f, gi);
    q->format = G4Q_QL_INT4_GPTQ;
    q->desc = (g4q_weight_desc){.format = G4Q_WF_INT4,
                                .rows = out,
                                .cols = in,
                                .data = qw->data,
                                .scale = sc->data,
                                .group = group,
                                .name = q->module,
                                .flags = G4Q_WD_INT4_GPTQ,
                                .scale_dtype = sc->dtype};
    return G4Q_OK;
}

static g4q_status ct_int4(const finder *f, g4q_qlinear *q, const g4q_tensor *wp, int64_t out,
                          int64_t in)
{
    const char *m = q->module;
    const g4q_tensor *ws = find(f, m, "weight_scale"), *sh = find(f, m, "weight_shape");
    const g4q_tensor *zp = find(f, m, "weight_zero_point");
    G4Q_TRY(need(f, ws, m, "weight_scale", "compressed-tensors pack-quantized"));
    if (zp)
        return g4q_fail(f->ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: tensor '%s': asymmetric INT4 (zero "
                        "points) is not supported",
                        f->label, zp->name);
    if (in % G4Q_INT4_PER_I32)
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                        "%s: tensor '%s': INT4 needs in features %% 8 == 0, "
                        "the config gives %lld",
                        f->label, wp->name, (long long)in);
    G4Q_TRY(expect(f, wp, G4Q_DT_I32, out, in / 8));
    int group = 0;
    G4Q_TRY(int4_group(f, ws, ws->ndim == 2 ? ws->shape[1] : 0, in, &group));
    G4Q_TRY(expect(f, ws, ws->dtype, out, in / group));
    if (sh) {
        G4Q_TRY(expect(f, sh, sh->dtype == G4Q_DT_I64 ? G4Q_DT_I64 : G4Q_DT_I32, 2, -1));
        int64_t d[2];
        g4q_tensor_int_at(sh, 0, &d[0]);
        g4q_tensor_int_at(sh, 1, &d[1]);
        if (d[0] != out || d[1] != in)
            return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                            "%s: tensor '%s': [%lld, %lld], expected [%lld, "
                            "%lld]",
                            f->label, sh->name, (long long)d[0], (long long)d[1], (long long)out,
                            (long long)in);
    }
    take(f, wp), take(f, ws), take(f, sh);
    q->format = G4Q_QL_INT4_CT;
    q->desc = (g4q_weight_desc){.format = G4Q_WF_INT4,
                                .rows = out,
                                .cols = in,
                                .data = wp->data,
                                .scale = ws->data,
                                .group = group,
                                .name = q->module,
                                .scale_dtype = ws->dtype};
    return G4Q_OK;
}

/* Detects the stored form of one Linear module [out, in]. */
static g4q_status detect(const finder *f, g4q_qlinear *q, int64_t out, int64_t in)
{
    const char *m = q->module;
    const g4q_tensor *qw = find(f, m, "qweight"), *wp = find(f, m, "weight_packed");
    const g4q_tensor *w = find(f, m, "weight");
    q->format = G4Q_QL_BF16;
    if ((qw || wp) && w)
        return g4q_fail(f->ctx, G4Q_ERR_FORMAT,
                        "%s: tensor '%s' beside '%s': two forms of one "
                        "Linear",
                        f->label, w->name, (qw ? qw : wp)->name);
    if (qw) return gptq(f, q, qw, out, in);
    if (wp && wp->dtype == G4Q_DT_U8) return nvfp4(f, q, wp, 1, out, in);
    if (wp && wp->dtype == G4Q_DT_I32) return ct_int4(f, q, wp, out, in);
    if (wp)
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                        "%s: tensor '%s': dtype %s, expected U8 (NVFP4) or "
                        "I32 (INT4)",
                        f->label, wp->name, g4q_dtype_name(wp->dtype));
    if (w && w->dtype == G4Q_DT_U8) return nvfp4(f, q, w, 0, out, in);
    if (w && w->dtype == G4Q_DT_F8_E4M3) return fp8(f, q, w, out, in);
    return G4Q_OK; /* BF16, or absent / wrong: g4q_weights_bind_partial reports it */
}

/* Validates the KV-cache scale tensors (§7) of the layers, keeps their values in q and marks
 * them as used. */
static g4q_status take_kv_scales(const finder *f, const g4q_config *cfg, g4q_qlinears *q)
{
    for (int L = 0; L < cfg->n_layers; L++) {
        static const char *const proj[2] = {"k_proj", "v_proj"}, *const key[2] = {"k_scale",
                                                                                  "v_scale"};
        float *val[2] = {&q->k_scale[L], &q->v_scale[L]};
        for (int i = 0; i < 2; i++) {
            char m[G4Q_WEIGHT_NAME_MAX];
            snprintf(m, sizeof m, "%slayers.%d.self_attn.%s", cfg->prefix, L, proj[i]);
            const g4q_tensor *t = find(f, m, key[i]);
            if (!t) continue;
            G4Q_TRY(expect_scalar(f, t, val[i]));
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
