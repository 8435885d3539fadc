/* Gemma 4 forward pass against backend.h (contract and per-layer order in forward.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "model/forward.h"
#include "model/qlinear.h"

#define LOGIT_ROWS 16 /* positions whose logits are computed at once (bounds the logits buffer) */

typedef struct fwd_layer {
    g4q_bweight *q, *k, *v, *o, *gate, *up, *down;              /* v is NULL on k_eq_v layers */
    g4q_bweight *q_norm, *k_norm;                               /* [1, hd] */
    g4q_bweight *in_ln, *post_attn_ln, *pre_ff_ln, *post_ff_ln; /* [1, d] */
    float scalar; /* layer_scalar, widened from bf16 */
} fwd_layer;

struct g4q_forward {
    g4q_ctx *ctx;
    g4q_backend *be;
    const g4q_config *cfg;
    const g4q_qlinears *ql; /* NULL: every Linear BF16 */
    int max_chunk;
    int logit_rows;
    int streamed;         /* layers bound one at a time (g4q_forward_create_streamed) */
    const g4q_weights *w; /* the weights, for binding layers later (streamed) */
    int staged;           /* the layer bound with deferred weights (stage_layer), or -1 */
    g4q_bweight *embed, *norm;
    fwd_layer layers[G4Q_MAX_LAYERS];
    g4q_buf *rope[2]; /* inv_freq per layer type: [hd/2] F32 */
    /* Scratch, act_dtype, C = max_chunk: */
    g4q_buf *h;      /* [C, d] residual stream */
    g4q_buf *a;      /* [C, d] normed input / projection output */
    g4q_buf *q;      /* [C, H * hd_max] */
    g4q_buf *k, *v;  /* [C, kv_max * hd_max] */
    g4q_buf *att;    /* [C, H * hd_max] */
    g4q_buf *g, *u;  /* [C, I] */
    g4q_buf *hl;     /* [LR, d] final-normed rows */
    g4q_buf *logits; /* [LR, vocab] */
    /* Decode steps (T == 1) on a backend with step_pos: position ops read the step position. */
    int step;                    /* inside a decode step: position arguments are G4Q_STEP_POS */
    int graphs;                  /* record decode steps once and replay them (default on) */
    g4q_graph *graph;            /* recorded step body, or NULL */
    const g4q_kvcache *graph_kv; /* the cache it was recorded against */
    int graph_logits;            /* whether it computes the logits */
    g4q_forward_observer obs;    /* obs.fn NULL: none */
    g4q_buf *mask;               /* F32 [vocab]: greedy suppression mask on the backend */
    uint8_t *mask_host;          /* the bytes it was made from (NULL: none yet) */
    int kv_fp8;                  /* FP8 KV-cache emulation (g4q_forward_set_kv_fp8) */
    float k_scale[G4Q_MAX_LAYERS], v_scale[G4Q_MAX_LAYERS];
};

const char *g4q_obs_site_name(g4q_obs_site s)
{
#define G4Q_X_NAME(e, n) n,
    static const char *const names[] = {G4Q_OBS_SITE_TABLE(G4Q_X_NAME)};
#undef G4Q_X_NAME
    return (unsigned)s < G4Q_OBS_COUNT ? names[s] : "?";
}

void g4q_forward_set_observer(g4q_forward *f, const g4q_forward_observer *obs)
{
    if (obs)
        f->obs = *obs;
    else
        memset(&f->obs, 0, sizeof f->obs);
}

/* Hands a site's buffer to the observer, if any. */
static g4q_status observe(g4q_forward *f, int l, g4q_obs_site site, const g4q_buf *x, int rows,
                          int cols)
{
    return f->obs.fn ? f->obs.fn(f->obs.user, l, site, x, rows, cols) : G4Q_OK;
}

/* A BF16 tensor bound as [rows, cols]; with `deferred` through weight_bind_deferred (nothing
 * copied yet: g4q_forward_stage_layer). */
static g4q_status bind(g4q_forward *f, const g4q_tensor *t, const char *what, int layer,
                       int64_t rows, int64_t cols, int deferred, g4q_bweight **out)
{
    if (!t)
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE, "forward: layer %d: tensor %s is missing", layer,
                        what);
    if (t->dtype != G4Q_DT_BF16 || t->numel != (uint64_t)(rows * cols))
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                        "forward: tensor '%s': %s with %llu elements, expected BF16 [%lld, %lld]",
                        t->name, g4q_dtype_name(t->dtype), (unsigned long long)t->numel,
                        (long long)rows, (long long)cols);
    g4q_weight_desc d = {
        .format = G4Q_WF_BF16, .rows = rows, .cols = cols, .data = t->data, .name = t->name};
    return deferred ? f->be->weight_bind_deferred(f->be, &d, out)
                    : f->be->weight_bind(f->be, &d, out);
}

/* A projection of layer l: its packed descriptor when the checkpoint stores it quantized, else
 * the BF16 tensor (deferred: see bind; a streamed forward has no packed Linears). */
static g4q_status bind_linear(g4q_forward *f, const g4q_tensor *t, g4q_weight_role role,
                              const char *what, int layer, int64_t rows, int64_t cols, int deferred,
                              g4q_bweight **out)
{
    const g4q_qlinear *q = f->ql ? &f->ql->layers[layer][g4q_qlinear_slot(role)] : NULL;
    if (!q || q->format == G4Q_QL_BF16) return bind(f, t, what, layer, rows, cols, deferred, out);
    if (q->desc.rows != rows || q->desc.cols != cols)
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE,
                        "forward: Linear '%s': [%lld, %lld], expected [%lld, %lld]", q->module,
                        (long long)q->desc.rows, (long long)q->desc.cols, (long long)rows,
                        (long long)cols);
    return f->be->weight_bind(f->be, &q->desc, out);
}

/* Binds layer l's weights from lw into f->layers[l], with `dfr` through weight_bind_deferred
 * (see bind). On an error the slots bound so far stay set (free_layer). */
static g4q_status bind_layer(g4q_forward *f, int l, const g4q_layer_weights *lw, int dfr)
{
    const g4q_config *c = f->cfg;
    const g4q_layer_config *lc = &c->layers[l];
    const int64_t d = c->hidden, I = c->intermediate, hd = lc->head_dim;
    const int64_t qo = (int64_t)c->n_heads * hd, kvo = (int64_t)lc->n_kv_heads * hd;
    fwd_layer *fl = &f->layers[l];
    G4Q_TRY(bind_linear(f, lw->q_proj, G4Q_W_Q_PROJ, "q_proj", l, qo, d, dfr, &fl->q));
    G4Q_TRY(bind_linear(f, lw->k_proj, G4Q_W_K_PROJ, "k_proj", l, kvo, d, dfr, &fl->k));
    if (lc->has_v_proj)
        G4Q_TRY(bind_linear(f, lw->v_proj, G4Q_W_V_PROJ, "v_proj", l, kvo, d, dfr, &fl->v));
    G4Q_TRY(bind_linear(f, lw->o_proj, G4Q_W_O_PROJ, "o_proj", l, d, qo, dfr, &fl->o));
    G4Q_TRY(bind_linear(f, lw->gate_proj, G4Q_W_GATE_PROJ, "gate_proj", l, I, d, dfr, &fl->gate));
    G4Q_TRY(bind_linear(f, lw->up_proj, G4Q_W_UP_PROJ, "up_proj", l, I, d, dfr, &fl->up));
    G4Q_TRY(bind_linear(f, lw->down_proj, G4Q_W_DOWN_PROJ, "down_proj", l, d, I, dfr, &fl->down));
    G4Q_TRY(bind(f, lw->q_norm, "q_norm", l, 1, hd, dfr, &fl->q_norm));
    G4Q_TRY(bind(f, lw->k_norm, "k_norm", l, 1, hd, dfr, &fl->k_norm));
    G4Q_TRY(bind(f, lw->input_layernorm, "input_layernorm", l, 1, d, dfr, &fl->in_ln));
    G4Q_TRY(bind(f, lw->post_attention_layernorm, "post_attention_layernorm", l, 1, d, dfr,
                 &fl->post_attn_ln));
    G4Q_TRY(bind(f, lw->pre_feedforward_layernorm, "pre_feedforward_layernorm", l, 1, d, dfr,
                 &fl->pre_ff_ln));
    G4Q_TRY(bind(f, lw->post_feedforward_layernorm, "post_feedforward_layernorm", l, 1, d, dfr,
                 &fl->post_ff_ln));
    const g4q_tensor *s = lw->layer_scalar;
    if (!s || s->dtype != G4Q_DT_BF16 || s->numel != 1)
        return g4q_fail(f->ctx, G4Q_ERR_SHAPE, "forward: layer %d: layer_scalar must be BF16 [1]",
                        l);
    uint16_t bits;
    memcpy(&bits, s->data, 2);
    fl->scalar = g4q_bf16_to_f32(bits);
    return G4Q_OK;
}

void g4q_forward_rope_table(const g4q_layer_config *lc, float *inv_freq)
{
    const int half = lc->head_dim / 2;
    const int n = lc->rope_angles < half ? lc->rope_angles : half;
    const float base = (float)lc->rope.theta;
    for (int i = 0; i < half; i++)
        inv_freq[i] = i < n ? 1.0f / powf(base, (float)(2 * i) / (float)lc->head_dim) : 0.0f;
}

static g4q_status alloc_scratch(g4q_forward *f)
{
    const g4q_config *c = f->cfg;
    g4q_backend *be = f->be;
    size_t C = (size_t)f->max_chunk, hd_max = 0, kv_max = 0;
    for (int l = 0; l < c->n_layers; l++) {
        size_t hd = (size_t)c->layers[l].head_dim, kv = (size_t)c->layers[l].n_kv_heads * hd;
        hd_max = hd > hd_max ? hd : hd_max;
        kv_max = kv > kv_max ? kv : kv_max;
    }
    const size_t d = (size_t)c->hidden, I = (size_t)c->intermediate, H = (size_t)c->n_heads;
    const size_t LR = (size_t)f->logit_rows;
    struct {
        g4q_buf **buf;
        size_t n;
    } want[] = {{&f->h, C * d},          {&f->a, C * d},
                {&f->q, C * H * hd_max}, {&f->k, C * kv_max},
                {&f->v, C * kv_max},     {&f->att, C * H * hd_max},
                {&f->g, C * I},          {&f->u, C * I},
                {&f->hl, LR * d},        {&f->logits, LR * (size_t)c->vocab_size}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        G4Q_TRY(be->buf_alloc(be, be->act_dtype, want[i].n, want[i].buf));
    /* One RoPE table per layer type (all layers of a type share head_dim and rope). */
    for (int type = 0; type < 2; type++) {
        const g4q_layer_config *lc = NULL;
        for (int l = 0; l < c->n_layers && !lc; l++)
            if ((int)c->layers[l].type == type) lc = &c->layers[l];
        if (!lc) continue;
        for (int l = 0; l < c->n_layers; l++) {
            const g4q_layer_config *o = &c->layers[l];
            if ((int)o->type == type &&
                (o->head_dim != lc->head_dim || o->rope_angles != lc->rope_angles ||
                 o->rope.theta != lc->rope.theta))
                return g4q_fail(f->ctx, G4Q_ERR_UNSUPPORTED,
                                "forward: layer %d: RoPE or head_dim differs from other layers of "
                                "its type",
                                l);
        }
        float *tab = malloc(sizeof(float) * (size_t)(lc->head_dim / 2));
        if (!tab) return g4q_fail(f->ctx, G4Q_ERR_NOMEM, "forward: RoPE table");
        g4q_forward_rope_table(lc, tab);
        g4q_status st = be->buf_alloc(be, G4Q_DT_F32, (size_t)(lc->head_dim / 2), &f->rope[type]);
        if (st == G4Q_OK) st = be->upload(be, f->rope[type], 0, tab, (size_t)(lc->head_dim / 2));
        free(tab);
        G4Q_TRY(st);
    }
    return G4Q_OK;
}

g4q_status g4q_forward_create(g4q_ctx *ctx, g4q_backend *be, const g4q_config *cfg,
                              const g4q_weights *w, int max_chunk, g4q_forward **out)
{
    return g4q_forward_create_q(ctx, be, cfg, w, NULL, NULL, max_chunk, out);
}

static g4q_status create(g4q_ctx *ctx, g4q_backend *be, const g4q_config *cfg, const g4q_weights *w,
                         const g4q_qlinears *ql, const g4q_bind_hook *hook, int max_chunk,
                         int streamed, g4q_forward **out)
{
    *out = NULL;
    if (max_chunk < 1)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "forward: max_chunk %d < 1", max_chunk);
    if (cfg->n_layers < 1 || cfg->n_layers > G4Q_MAX_LAYERS || w->n_layers != cfg->n_layers)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "forward: %d layers in the config, %d bound",
                        cfg->n_layers, w->n_layers);
    for (int l = 0; l < cfg->n_layers; l++) {
        const g4q_layer_config *lc = &cfg->layers[l];
        if (lc->n_kv_heads < 1 || cfg->n_heads % lc->n_kv_heads || lc->head_dim < 2 ||
            lc->head_dim % 2)
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "forward: layer %d: %d heads, %d KV heads, head_dim %d", l,
                            cfg->n_heads, lc->n_kv_heads, lc->head_dim);
    }
    g4q_forward *f = calloc(1, sizeof *f);
    if (!f) return g4q_fail(ctx, G4Q_ERR_NOMEM, "forward: out of memory");
    f->ctx = ctx;
    f->be = be;
    f->cfg = cfg;
    f->ql = ql;
    f->max_chunk = max_chunk;
    f->logit_rows = max_chunk < LOGIT_ROWS ? max_chunk : LOGIT_ROWS;
    f->graphs = 1;
    f->streamed = streamed;
    f->w = w;
    f->staged = -1;
    g4q_status st =
        bind(f, w->embed_tokens, "embed_tokens", -1, cfg->vocab_size, cfg->hidden, 0, &f->embed);
    if (st == G4Q_OK) st = bind(f, w->norm, "norm", -1, 1, cfg->hidden, 0, &f->norm);
    if (st == G4Q_OK && hook && hook->fn) hook->fn(hook->user);
    for (int l = 0; l < cfg->n_layers && st == G4Q_OK && !streamed; l++) {
        st = bind_layer(f, l, &w->layers[l], 0);
        if (st == G4Q_OK && hook && hook->fn) hook->fn(hook->user);
    }
    if (st == G4Q_OK) st = alloc_scratch(f);
    if (st != G4Q_OK) {
        g4q_forward_free(f);
        return st;
    }
    *out = f;
    return G4Q_OK;
}

g4q_status g4q_forward_create_q(g4q_ctx *ctx, g4q_backend *be, const g4q_config *cfg,
                                const g4q_weights *w, const g4q_qlinears *ql,
                                const g4q_bind_hook *hook, int max_chunk, g4q_forward **out)
{
    return create(ctx, be, cfg, w, ql, hook, max_chunk, 0, out);
}

g4q_status g4q_forward_create_streamed(g4q_ctx *ctx, g4q_backend *be, const g4q_config *cfg,
                                       const g4q_weights *w, int max_chunk, g4q_forward **out)
{
    return create(ctx, be, cfg, w, NULL, NULL, max_chunk, 1, out);
}

int g4q_forward_streamed(const g4q_forward *f)
{
    return f->streamed;
}

#define LAYER_SLOTS 13

/* The weight slots of a layer (some may hold NULL). */
static void layer_slots(fwd_layer *fl, g4q_bweight **out[LAYER_SLOTS])
{
    g4q_bweight **lw[LAYER_SLOTS] = {
        &fl->q,         &fl->k,      &fl->v,      &fl->o,     &fl->gate,         &fl->up,
        &fl->down,      &fl->q_norm, &fl->k_norm, &fl->in_ln, &fl->post_attn_ln, &fl->pre_ff_ln,
        &fl->post_ff_ln};
    memcpy(out, lw, sizeof lw);
}

/* Frees layer l's bound (or staged) weights, NULL ones skipped, and clears their slots. */
static void free_layer(g4q_forward *f, int l)
{
    g4q_backend *be = f->be;
    g4q_bweight **lw[LAYER_SLOTS];
    layer_slots(&f->layers[l], lw);
    for (size_t i = 0; i < LAYER_SLOTS; i++) {
        be->weight_free(be, *lw[i]);
        *lw[i] = NULL;
    }
    if (f->staged == l) f->staged = -1;
}

/* weight_upload of each of layer l's weights (no-ops for those already uploaded), errors to ctx. */
static g4q_status upload_layer(g4q_forward *f, int l, g4q_ctx *ctx)
{
    g4q_backend *be = f->be;
    g4q_bweight **lw[LAYER_SLOTS];
    layer_slots(&f->layers[l], lw);
    for (size_t i = 0; i < LAYER_SLOTS; i++)
        if (*lw[i]) G4Q_TRY(be->weight_upload(be, *lw[i], ctx));
    return G4Q_OK;
}

g4q_status g4q_forward_bind_layer(g4q_forward *f, int l)
{
    if (l < 0 || l >= f->cfg->n_layers)
        return g4q_fail(f->ctx, G4Q_ERR_INVALID, "forward: layer %d of %d", l, f->cfg->n_layers);
    if (l == f->staged) { /* complete the staged layer: upload what is still pending */
        g4q_status st = upload_layer(f, l, f->ctx);
        if (st != G4Q_OK) {
            free_layer(f, l);
            return st;
        }
        f->staged = -1;
        return G4Q_OK;
    }
    if (f->layers[l].in_ln) return G4Q_OK; /* bound */
    g4q_status st = bind_layer(f, l, &f->w->layers[l], 0);
    if (st != G4Q_OK) free_layer(f, l);
    return st;
}

g4q_status g4q_forward_stage_layer(g4q_forward *f, int l)
{
    if (!f->streamed || l < 0 || l >= f->cfg->n_layers || f->layers[l].in_ln || f->staged >= 0)
        return g4q_fail(f->ctx, G4Q_ERR_INVALID,
                        "forward: cannot stage layer %d of %d (not a layer-streamed forward, "
                        "bound already, or layer %d staged)",
                        l, f->cfg->n_layers, f->staged);
    if (!f->be->weight_bind_deferred || !f->be->weight_upload) return G4Q_OK; /* plain binds */
    g4q_status st = bind_layer(f, l, &f->w->layers[l], 1);
    if (st != G4Q_OK) {
        free_layer(f, l);
        return st;
    }
    f->staged = l;
    return G4Q_OK;
}

g4q_status g4q_forward_stage_upload(g4q_forward *f, g4q_ctx *ctx)
{
    return f->staged >= 0 ? upload_layer(f, f->staged, ctx) : G4Q_OK;
}

int g4q_forward_staged(const g4q_forward *f)
{
    return f->staged;
}

g4q_status g4q_forward_bind_layer_from(g4q_forward *f, int l, const g4q_layer_weights *lw)
{
    if (l < 0 || l >= f->cfg->n_layers || f->layers[l].in_ln)
        return g4q_fail(f->ctx, G4Q_ERR_INVALID, "forward: layer %d of %d (bound?)", l,
                        f->cfg->n_layers);
    g4q_status st = bind_layer(f, l, lw, 0);
    if (st != G4Q_OK) free_layer(f, l);
    return st;
}

void g4q_forward_release_layer(g4q_forward *f, int l)
{
    if (l >= 0 && l < f->cfg->n_layers) free_layer(f, l);
}

void g4q_forward_release_embed(g4q_forward *f)
{
    f->be->weight_free(f->be, f->embed);
    f->embed = NULL;
}

void g4q_forward_free(g4q_forward *f)
{
    if (!f) return;
    g4q_backend *be = f->be;
    if (f->graph) be->graph_free(be, f->graph);
    g4q_bweight **ws[] = {&f->embed, &f->norm};
    for (size_t i = 0; i < 2; i++)
        be->weight_free(be, *ws[i]);
    for (int l = 0; l < f->cfg->n_layers; l++)
        free_layer(f, l);
    g4q_buf *bufs[] = {f->rope[0], f->rope[1], f->h, f->a, f->q,  f->k,
                       f->v,       f->att,     f->g, f->u, f->hl, f->logits, f->mask};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        be->buf_free(be, bufs[i]);
    free(f->mask_host);
    free(f);
}

/* Attention block of layer l for the C tokens in f->a (normed); result (o_proj output) in f->a. */
static g4q_status attention_block(g4q_forward *f, g4q_kvcache *kv, int l, int C)
{
    g4q_backend *be = f->be;
    const g4q_config *c = f->cfg;
    const g4q_layer_config *lc = &c->layers[l];
    const fwd_layer *fl = &f->layers[l];
    const int H = c->n_heads, nkv = lc->n_kv_heads, hd = lc->head_dim;
    const float eps = (float)c->rms_norm_eps;
    const int pos = f->step ? G4Q_STEP_POS : kv->n_past;
    const g4q_buf *tab = f->rope[lc->type == G4Q_LAYER_FULL];
    G4Q_TRY(observe(f, l, G4Q_OBS_ATTN_IN, f->a, C, c->hidden));
    if (be->matmul3) {
        G4Q_TRY(be->matmul3(be, f->a, C, f->q, fl->q, f->k, fl->k, fl->v ? f->v : NULL, fl->v));
    } else {
        G4Q_TRY(be->matmul(be, f->q, f->a, fl->q, C));
        G4Q_TRY(be->matmul(be, f->k, f->a, fl->k, C));
        if (fl->v) /* sliding: v = v_norm(x·Wvᵀ) */
            G4Q_TRY(be->matmul(be, f->v, f->a, fl->v, C));
    }
    if (be->qkv_norm_rope) {
        G4Q_TRY(be->qkv_norm_rope(be, f->q, f->k, f->v, !fl->v, fl->q_norm, fl->k_norm, tab, C, H,
                                  nkv, hd, pos, eps));
    } else {
        /* k_eq_v: v = v_norm(k_raw), taken before k_norm touches k in place. */
        G4Q_TRY(be->rmsnorm(be, f->v, fl->v ? f->v : f->k, NULL, C * nkv, hd, eps));
        G4Q_TRY(be->rmsnorm(be, f->q, f->q, fl->q_norm, C * H, hd, eps));
        G4Q_TRY(be->rmsnorm(be, f->k, f->k, fl->k_norm, C * nkv, hd, eps));
        G4Q_TRY(be->rope(be, f->q, tab, C, H, hd, pos));
        G4Q_TRY(be->rope(be, f->k, tab, C, nkv, hd, pos));
    }
    G4Q_TRY(observe(f, l, G4Q_OBS_K, f->k, C, nkv * hd));
    G4Q_TRY(observe(f, l, G4Q_OBS_V, f->v, C, nkv * hd));
    if (f->kv_fp8) { /* the cache holds E4M3 values: the chunk is attended to as stored */
        G4Q_TRY(be->fp8_roundtrip(be, f->k, (size_t)C * (size_t)(nkv * hd), f->k_scale[l]));
        G4Q_TRY(be->fp8_roundtrip(be, f->v, (size_t)C * (size_t)(nkv * hd), f->v_scale[l]));
    }
    const g4q_kv_layer *kl = &kv->layers[l];
    const int window = lc->type == G4Q_LAYER_SLIDING ? c->sliding_window : 0;
    /* Attend over the old cache plus the chunk, and only then store the chunk (§5 trap). */
    if (be->attention_store) {
        G4Q_TRY(be->attention_store(be, f->att, f->q, f->k, f->v, kl->k, kl->v, kl->cap, pos, C, H,
                                    nkv, hd, window, 1.0f));
    } else {
        G4Q_TRY(be->attention(be, f->att, f->q, f->k, f->v, kl->k, kl->v, kl->cap, pos, C, H, nkv,
                              hd, window, 1.0f));
        G4Q_TRY(be->kv_store(be, kl->k, kl->v, f->k, f->v, kl->cap, pos, C, nkv, hd));
    }
    G4Q_TRY(observe(f, l, G4Q_OBS_O_IN, f->att, C, H * hd));
    return be->matmul(be, f->a, f->att, fl->o, C);
}

/* The residual update after a block whose output is in f->a, per row of C:
 *   h = (h + rmsnorm(a, w_post)) · scale, then out = rmsnorm(h, w_next) when out is non-NULL. */
static g4q_status residual(g4q_forward *f, const g4q_bweight *w_post, float scale,
                           const g4q_bweight *w_next, g4q_buf *out, int C)
{
    g4q_backend *be = f->be;
    const int d = f->cfg->hidden;
    const float eps = (float)f->cfg->rms_norm_eps;
    if (be->norm_add_norm)
        return be->norm_add_norm(be, f->h, f->a, w_post, scale, out, w_next, C, d, eps);
    G4Q_TRY(be->rmsnorm(be, f->a, f->a, w_post, C, d, eps));
    G4Q_TRY(be->add_scaled(be, f->h, f->a, (size_t)C * (size_t)d, scale));
    return out ? be->rmsnorm(be, out, f->h, w_next, C, d, eps) : G4Q_OK;
}

/* Layer l for the C tokens whose input_layernorm(h) is in f->a. Afterwards out (if non-NULL)
 * holds rmsnorm(h, w_next): the next layer's input norm, or the final norm after the last. */
static g4q_status layer(g4q_forward *f, g4q_kvcache *kv, int l, int C, const g4q_bweight *w_next,
                        g4q_buf *out)
{
    g4q_backend *be = f->be;
    const g4q_config *c = f->cfg;
    const fwd_layer *fl = &f->layers[l];
    G4Q_TRY(attention_block(f, kv, l, C));
    G4Q_TRY(residual(f, fl->post_attn_ln, 1.0f, fl->pre_ff_ln, f->a, C));
    G4Q_TRY(observe(f, l, G4Q_OBS_MLP_IN, f->a, C, c->hidden));
    if (be->matmul_geglu) {
        G4Q_TRY(be->matmul_geglu(be, f->g, f->u, f->a, fl->gate, fl->up, C));
    } else {
        G4Q_TRY(be->matmul(be, f->g, f->a, fl->gate, C));
        G4Q_TRY(be->matmul(be, f->u, f->a, fl->up, C));
        G4Q_TRY(be->geglu(be, f->g, f->g, f->u, (size_t)C * (size_t)c->intermediate));
    }
    G4Q_TRY(observe(f, l, G4Q_OBS_DOWN_IN, f->g, C, c->intermediate));
    G4Q_TRY(be->matmul(be, f->a, f->g, fl->down, C));
    /* h = (h + post_ff(m)) · layer_scalar: the scalar scales the whole residual stream. */
    return residual(f, fl->post_ff_ln, fl->scalar, w_next, out, C);
}

/* All layers over the C tokens embedded in f->h; final (if non-NULL) receives rmsnorm(h, norm)
 * of the C rows (C <= logit_rows then). */
static g4q_status layers(g4q_forward *f, g4q_kvcache *kv, int C, g4q_buf *final)
{
    const g4q_config *c = f->cfg;
    G4Q_TRY(f->be->rmsnorm(f->be, f->a, f->h, f->layers[0].in_ln, C, c->hidden,
                           (float)c->rms_norm_eps));
    for (int l = 0; l < c->n_layers; l++) {
        const int last = l + 1 == c->n_layers;
        G4Q_TRY(layer(f, kv, l, C, last ? f->norm : f->layers[l + 1].in_ln, last ? final : f->a));
    }
    return G4Q_OK;
}

/* f->logits rows [0, m) = softcap(f->hl rows [0, m) · Eᵀ): the tied head, unscaled. */
static g4q_status head(g4q_forward *f, int m)
{
    g4q_backend *be = f->be;
    const g4q_config *c = f->cfg;
    G4Q_TRY(be->matmul(be, f->logits, f->hl, f->embed, m));
    if (c->final_logit_softcapping > 0)
        G4Q_TRY(be->softcap(be, f->logits, (size_t)m * (size_t)c->vocab_size,
                            (float)c->final_logit_softcapping));
    return G4Q_OK;
}

/* Logits of chunk rows [r0, r0+n) into host out[n, vocab]. */
static g4q_status logits_rows(g4q_forward *f, int r0, int n, float *out)
{
    g4q_backend *be = f->be;
    const g4q_config *c = f->cfg;
    const size_t V = (size_t)c->vocab_size;
    for (int done = 0; done < n;) {
        int m = n - done < f->logit_rows ? n - done : f->logit_rows;
        G4Q_TRY(
            be->copy_rows(be, f->hl, 0, f->h, (size_t)(r0 + done), (size_t)m, (size_t)c->hidden));
        G4Q_TRY(be->rmsnorm(be, f->hl, f->hl, f->norm, m, c->hidden, (float)c->rms_norm_eps));
        G4Q_TRY(head(f, m));
        G4Q_TRY(be->download(be, f->logits, 0, out + (size_t)done * V, (size_t)m * V));
        done += m;
    }
    return G4Q_OK;
}

/* transformers multiplies the embeddings by sqrt(hidden) converted to the weights' dtype
 * (modeling_gemma4_unified.py, Gemma4UnifiedTextScaledWordEmbedding): 62.0 for a bf16 model of
 * width 3840, 61.967735 in fp32. Backends with bf16 activations mirror the bf16 model, the fp32
 * CPU backend the fp32 one. */
static float embed_scale(const g4q_backend *be, const g4q_config *c)
{
    float s = (float)sqrt((double)c->hidden);
    return be->act_dtype == G4Q_DT_BF16 ? (float)c->embed_scale : s;
}

/* The device work of one decode step after the embedding: all layers and, with want_logits,
 * the final norm and head into f->logits row 0. */
static g4q_status step_body(g4q_forward *f, g4q_kvcache *kv, int want_logits)
{
    G4Q_TRY(layers(f, kv, 1, want_logits ? f->hl : NULL));
    return want_logits ? head(f, 1) : G4Q_OK;
}

static void drop_graph(g4q_forward *f)
{
    f->be->graph_free(f->be, f->graph);
    f->graph = NULL;
}

/* step_body through a recorded graph: replays the recording of this cache when there is a valid
 * one; otherwise runs the body directly (which also sizes the backend's workspaces) and records
 * it for the next steps. */
static g4q_status step_graphed(g4q_forward *f, g4q_kvcache *kv, int want_logits)
{
    g4q_backend *be = f->be;
    if (f->graph && (f->graph_kv != kv || f->graph_logits != want_logits)) drop_graph(f);
    if (f->graph) {
        int stale = 0;
        G4Q_TRY(be->graph_launch(be, f->graph, &stale));
        if (!stale) return G4Q_OK;
        drop_graph(f);
    }
    G4Q_TRY(step_body(f, kv, want_logits));
    G4Q_TRY(be->graph_begin(be));
    g4q_status st = step_body(f, kv, want_logits);
    g4q_graph *g = NULL;
    g4q_status st_end = be->graph_end(be, &g);
    if (st != G4Q_OK) {
        be->graph_free(be, g);
        return st;
    }
    G4Q_TRY(st_end);
    f->graph = g;
    f->graph_kv = kv;
    f->graph_logits = want_logits;
    return G4Q_OK;
}

/* One token (T == 1) on a backend with step positions: the position-dependent ops read the
 * backend's step position, so the same recorded graph serves every step. */
static g4q_status decode_step(g4q_forward *f, g4q_kvcache *kv, const int32_t *id, int want_logits,
                              float *logits)
{
    g4q_backend *be = f->be;
    const g4q_config *c = f->cfg;
    G4Q_TRY(be->embed(be, f->h, f->embed, id, 1, embed_scale(be, c)));
    G4Q_TRY(be->step_pos(be, kv->n_past));
    f->step = 1;
    g4q_status st = f->graphs && be->graph_begin ? step_graphed(f, kv, want_logits)
                                                 : step_body(f, kv, want_logits);
    f->step = 0;
    G4Q_TRY(st);
    kv->n_past += 1;
    return logits ? be->download(be, f->logits, 0, logits, (size_t)c->vocab_size) : G4Q_OK;
}

void g4q_forward_set_graphs(g4q_forward *f, int on)
{
    f->graphs = on != 0;
    if (!f->graphs && f->graph) drop_graph(f);
}

/* Every id is inside the vocabulary. */
static g4q_status check_ids(g4q_forward *f, const int32_t *ids, int T)
{
    const g4q_config *c = f->cfg;
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return g4q_fail(f->ctx, G4Q_ERR_INVALID,
                            "forward: token %d (index %d) outside the vocabulary of %d",
                            (int)ids[t], t, c->vocab_size);
    return G4Q_OK;
}

/* kv belongs to this model and backend and has room for T more positions. */
static g4q_status check_kv(g4q_forward *f, const g4q_kvcache *kv, int T)
{
    const g4q_config *c = f->cfg;
    int same = kv->be == f->be && kv->n_layers == c->n_layers;
    for (int l = 0; same && l < c->n_layers; l++)
        same = kv->layers[l].nkv == c->layers[l].n_kv_heads &&
               kv->layers[l].hd == c->layers[l].head_dim;
    if (!same)
        return g4q_fail(f->ctx, G4Q_ERR_INVALID, "forward: KV cache of another model or backend");
    if (T > kv->max_ctx - kv->n_past)
        return g4q_fail(f->ctx, G4Q_ERR_INVALID,
                        "forward: %d tokens after %d cached exceed the context of %d", T,
                        kv->n_past, kv->max_ctx);
    return G4Q_OK;
}

g4q_status g4q_forward_run(g4q_forward *f, g4q_kvcache *kv, const int32_t *ids, int T,
                           int last_only, float *logits)
{
    const g4q_config *c = f->cfg;
    if (T < 1) return g4q_fail(f->ctx, G4Q_ERR_INVALID, "forward: %d tokens", T);
    if (f->streamed)
        return g4q_fail(
            f->ctx, G4Q_ERR_INVALID,
            "forward: a layer-streamed forward runs layer by layer (g4q_forward_layer)");
    G4Q_TRY(check_kv(f, kv, T));
    G4Q_TRY(check_ids(f, ids, T));
    if (T == 1 && f->be->step_pos && !f->obs.fn)
        return decode_step(f, kv, ids, logits != NULL, logits);
    const size_t V = (size_t)c->vocab_size;
    for (int t0 = 0; t0 < T; t0 += f->max_chunk) {
        const int C = T - t0 < f->max_chunk ? T - t0 : f->max_chunk;
        G4Q_TRY(f->be->embed(f->be, f->h, f->embed, ids + t0, C, embed_scale(f->be, c)));
        G4Q_TRY(layers(f, kv, C, NULL));
        kv->n_past += C;
        if (!logits) continue;
        if (!last_only)
            G4Q_TRY(logits_rows(f, 0, C, logits + (size_t)t0 * V));
        else if (t0 + C == T)
            G4Q_TRY(logits_rows(f, C - 1, 1, logits));
    }
    return G4Q_OK;
}

/* f->mask from mask's bytes, unless it already holds them. */
static g4q_status upload_mask(g4q_forward *f, const uint8_t *mask)
{
    g4q_backend *be = f->be;
    const size_t V = (size_t)f->cfg->vocab_size;
    if (!mask || (f->mask_host && memcmp(f->mask_host, mask, V) == 0)) return G4Q_OK;
    float *m = malloc(V * sizeof *m);
    if (!f->mask_host) f->mask_host = malloc(V);
    if (!m || !f->mask_host) {
        free(m);
        return g4q_fail(f->ctx, G4Q_ERR_NOMEM, "forward: out of memory");
    }
    for (size_t i = 0; i < V; i++)
        m[i] = mask[i] ? 1.0f : 0.0f;
    g4q_status st = f->mask ? G4Q_OK : be->buf_alloc(be, G4Q_DT_F32, V, &f->mask);
    if (st == G4Q_OK) st = be->upload(be, f->mask, 0, m, V);
    free(m);
    if (st == G4Q_OK)
        memcpy(f->mask_host, mask, V);
    else
        free(f->mask_host), f->mask_host = NULL;
    return st;
}

g4q_status g4q_forward_step_greedy(g4q_forward *f, g4q_kvcache *kv, int32_t id,
                                   const uint8_t *mask, int32_t *next, int32_t *nan_at)
{
    g4q_backend *be = f->be;
    if (!be->argmax || !be->step_pos || f->obs.fn || f->streamed)
        return g4q_fail(f->ctx, G4Q_ERR_UNSUPPORTED,
                        "forward: backend %s cannot pick tokens on the device", be->name);
    G4Q_TRY(check_kv(f, kv, 1));
    G4Q_TRY(check_ids(f, &id, 1));
    G4Q_TRY(upload_mask(f, mask));
    G4Q_TRY(decode_step(f, kv, &id, 1, NULL));
    return be->argmax(be, f->logits, (size_t)f->cfg->vocab_size, mask ? f->mask : NULL, next,
                      nan_at);
}

g4q_status g4q_forward_run_logits(g4q_forward *f, g4q_kvcache *kv, const int32_t *ids, int T,
                                  g4q_buf *logits)
{
    const g4q_config *c = f->cfg;
    g4q_backend *be = f->be;
    if (T < 1 || T > f->max_chunk || f->streamed)
        return g4q_fail(f->ctx, G4Q_ERR_INVALID,
                        "forward: run_logits of %d tokens (1..%d, not layer-streamed)", T,
                        f->max_chunk);
    G4Q_TRY(check_kv(f, kv, T));
    G4Q_TRY(check_ids(f, ids, T));
    G4Q_TRY(be->embed(be, f->h, f->embed, ids, T, embed_scale(be, c)));
    G4Q_TRY(layers(f, kv, T, f->a)); /* f->a: the final-normed rows */
    kv->n_past += T;
    G4Q_TRY(be->matmul(be, logits, f->a, f->embed, T));
    if (c->final_logit_softcapping > 0)
        G4Q_TRY(be->softcap(be, logits, (size_t)T * (size_t)c->vocab_size,
                            (float)c->final_logit_softcapping));
    return G4Q_OK;
}

g4q_status g4q_forward_set_kv_fp8(g4q_forward *f, const float *k_scale, const float *v_scale)
{
    f->kv_fp8 = 0;
    if (!k_scale) return G4Q_OK;
    if (!f->be->fp8_roundtrip)
        return g4q_fail(f->ctx, G4Q_ERR_UNSUPPORTED, "forward: backend %s has no FP8 KV cache",
                        f->be->name);
    for (int l = 0; l < f->cfg->n_layers; l++) {
        if (!(k_scale[l] > 0.0f) || !(v_scale[l] > 0.0f) || !isfinite(k_scale[l]) ||
            !isfinite(v_scale[l]))
            return g4q_fail(f->ctx, G4Q_ERR_INVALID, "forward: layer %d: KV scales %g, %g", l,
                            (double)k_scale[l], (double)v_scale[l]);
        f->k_scale[l] = k_scale[l];
        f->v_scale[l] = v_scale[l];
    }
    if (f->graph) drop_graph(f);
    f->kv_fp8 = 1;
    return G4Q_OK;
}

g4q_status g4q_forward_embed(g4q_forward *f, const int32_t *ids, int T, g4q_buf *h)
{
    const g4q_config *c = f->cfg;
    if (!f->embed)
        return g4q_fail(f->ctx, G4Q_ERR_INVALID, "forward: the embedding has been released");
    if (T < 1 || T > f->max_chunk)
        return g4q_fail(f->ctx, G4Q_ERR_INVALID, "forward: %d tokens to embed (1..%d)", T,
                        f->max_chunk);
    G4Q_TRY(check_ids(f, ids, T));
    return f->be->embed(f->be, h, f->embed, ids, T, embed_scale(f->be, c));
}

g4q_status g4q_forward_layer(g4q_forward *f, g4q_kvcache *kv, int l, g4q_buf *h, int T)
{
    const g4q_config *c = f->cfg;
    if (l < 0 || l >= c->n_layers || !f->layers[l].in_ln || l == f->staged)
        return g4q_fail(f->ctx, G4Q_ERR_INVALID, "forward: layer %d is not bound%s", l,
                        l == f->staged ? " (staged: g4q_forward_bind_layer completes it)" : "");
    if (T < 1 || T > f->max_chunk)
        return g4q_fail(f->ctx, G4Q_ERR_INVALID, "forward: %d tokens in one layer run (1..%d)", T,
                        f->max_chunk);
    G4Q_TRY(check_kv(f, kv, T));
    g4q_buf *own = f->h;
    f->h = h; /* the layer updates the caller's residual rows in place */
    g4q_status st =
        f->be->rmsnorm(f->be, f->a, h, f->layers[l].in_ln, T, c->hidden, (float)c->rms_norm_eps);
    if (st == G4Q_OK) st = layer(f, kv, l, T, NULL, NULL);
    f->h = own;
    return st;
}
