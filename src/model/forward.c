/* Gemma 4 forward pass against backend.h (contract and per-layer order in forward.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "model/forward.h"

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
    int max_chunk;
    int logit_rows;
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
};

static g4q_status bind(g4q_forward *f, const g4q_tensor *t, const char *what, int layer,
                       int64_t rows, int64_t cols, g4q_bweight **out)
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
    return f->be->weight_bind(f->be, &d, out);
}

static g4q_status bind_layer(g4q_forward *f, int l, const g4q_layer_weights *lw)
{
    const g4q_config *c = f->cfg;
    const g4q_layer_config *lc = &c->layers[l];
    const int64_t d = c->hidden, I = c->intermediate;
    const int64_t qo = (int64_t)c->n_heads * lc->head_dim,
                  kvo = (int64_t)lc->n_kv_heads * lc->head_dim;
    fwd_layer *fl = &f->layers[l];
    G4Q_TRY(bind(f, lw->q_proj, "q_proj", l, qo, d, &fl->q));
    G4Q_TRY(bind(f, lw->k_proj, "k_proj", l, kvo, d, &fl->k));
    if (lc->has_v_proj) G4Q_TRY(bind(f, lw->v_proj, "v_proj", l, kvo, d, &fl->v));
    G4Q_TRY(bind(f, lw->o_proj, "o_proj", l, d, qo, &fl->o));
    G4Q_TRY(bind(f, lw->gate_proj, "gate_proj", l, I, d, &fl->gate));
    G4Q_TRY(bind(f, lw->up_proj, "up_proj", l, I, d, &fl->up));
    G4Q_TRY(bind(f, lw->down_proj, "down_proj", l, d, I, &fl->down));
    G4Q_TRY(bind(f, lw->q_norm, "q_norm", l, 1, lc->head_dim, &fl->q_norm));
    G4Q_TRY(bind(f, lw->k_norm, "k_norm", l, 1, lc->head_dim, &fl->k_norm));
    G4Q_TRY(bind(f, lw->input_layernorm, "input_layernorm", l, 1, d, &fl->in_ln));
    G4Q_TRY(bind(f, lw->post_attention_layernorm, "post_attention_layernorm", l, 1, d,
                 &fl->post_attn_ln));
    G4Q_TRY(bind(f, lw->pre_feedforward_layernorm, "pre_feedforward_layernorm", l, 1, d,
                 &fl->pre_ff_ln));
    G4Q_TRY(bind(f, lw->post_feedforward_layernorm, "post_feedforward_layernorm", l, 1, d,
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
    f->max_chunk = max_chunk;
    f->logit_rows = max_chunk < LOGIT_ROWS ? max_chunk : LOGIT_ROWS;
    g4q_status st =
        bind(f, w->embed_tokens, "embed_tokens", -1, cfg->vocab_size, cfg->hidden, &f->embed);
    if (st == G4Q_OK) st = bind(f, w->norm, "norm", -1, 1, cfg->hidden, &f->norm);
    for (int l = 0; l < cfg->n_layers && st == G4Q_OK; l++)
        st = bind_layer(f, l, &w->layers[l]);
    if (st == G4Q_OK) st = alloc_scratch(f);
    if (st != G4Q_OK) {
        g4q_forward_free(f);
        return st;
    }
    *out = f;
    return G4Q_OK;
}

void g4q_forward_free(g4q_forward *f)
{
    if (!f) return;
    g4q_backend *be = f->be;
    g4q_bweight **ws[] = {&f->embed, &f->norm};
    for (size_t i = 0; i < 2; i++)
        be->weight_free(be, *ws[i]);
    for (int l = 0; l < f->cfg->n_layers; l++) {
        fwd_layer *fl = &f->layers[l];
        g4q_bweight *lw[] = {
            fl->q,         fl->k,      fl->v,      fl->o,     fl->gate,         fl->up,
            fl->down,      fl->q_norm, fl->k_norm, fl->in_ln, fl->post_attn_ln, fl->pre_ff_ln,
            fl->post_ff_ln};
        for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++)
            be->weight_free(be, lw[i]);
    }
    g4q_buf *bufs[] = {f->rope[0], f->rope[1], f->h, f->a, f->q,  f->k,
                       f->v,       f->att,     f->g, f->u, f->hl, f->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        be->buf_free(be, bufs[i]);
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
    G4Q_TRY(be->matmul(be, f->q, f->a, fl->q, C));
    G4Q_TRY(be->matmul(be, f->k, f->a, fl->k, C));
    if (fl->v) /* sliding: v = v_norm(x·Wvᵀ) */
        G4Q_TRY(be->matmul(be, f->v, f->a, fl->v, C));
    /* k_eq_v: v = v_norm(k_raw), taken before k_norm touches k in place. */
    G4Q_TRY(be->rmsnorm(be, f->v, fl->v ? f->v : f->k, NULL, C * nkv, hd, eps));
    G4Q_TRY(be->rmsnorm(be, f->q, f->q, fl->q_norm, C * H, hd, eps));
    G4Q_TRY(be->rmsnorm(be, f->k, f->k, fl->k_norm, C * nkv, hd, eps));
    const g4q_buf *tab = f->rope[lc->type == G4Q_LAYER_FULL];
    G4Q_TRY(be->rope(be, f->q, tab, C, H, hd, kv->n_past));
    G4Q_TRY(be->rope(be, f->k, tab, C, nkv, hd, kv->n_past));
    const g4q_kv_layer *kl = &kv->layers[l];
    const int window = lc->type == G4Q_LAYER_SLIDING ? c->sliding_window : 0;
    /* Attend over the old cache plus the chunk, and only then store the chunk (§5 trap). */
    G4Q_TRY(be->attention(be, f->att, f->q, f->k, f->v, kl->k, kl->v, kl->cap, kv->n_past, C, H,
                          nkv, hd, window, 1.0f));
    G4Q_TRY(be->kv_store(be, kl->k, kl->v, f->k, f->v, kl->cap, kv->n_past, C, nkv, hd));
    return be->matmul(be, f->a, f->att, fl->o, C);
}

static g4q_status layer(g4q_forward *f, g4q_kvcache *kv, int l, int C)
{
    g4q_backend *be = f->be;
    const g4q_config *c = f->cfg;
    const fwd_layer *fl = &f->layers[l];
    const int d = c->hidden;
    const size_t nd = (size_t)C * (size_t)d;
    const float eps = (float)c->rms_norm_eps;
    G4Q_TRY(be->rmsnorm(be, f->a, f->h, fl->in_ln, C, d, eps));
    G4Q_TRY(attention_block(f, kv, l, C));
    G4Q_TRY(be->rmsnorm(be, f->a, f->a, fl->post_attn_ln, C, d, eps));
    G4Q_TRY(be->add_scaled(be, f->h, f->a, nd, 1.0f));
    G4Q_TRY(be->rmsnorm(be, f->a, f->h, fl->pre_ff_ln, C, d, eps));
    G4Q_TRY(be->matmul(be, f->g, f->a, fl->gate, C));
    G4Q_TRY(be->matmul(be, f->u, f->a, fl->up, C));
    G4Q_TRY(be->geglu(be, f->g, f->g, f->u, (size_t)C * (size_t)c->intermediate));
    G4Q_TRY(be->matmul(be, f->a, f->g, fl->down, C));
    G4Q_TRY(be->rmsnorm(be, f->a, f->a, fl->post_ff_ln, C, d, eps));
    /* h = (h + post_ff(m)) · layer_scalar: the scalar scales the whole residual stream. */
    return be->add_scaled(be, f->h, f->a, nd, fl->scalar);
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
        G4Q_TRY(be->matmul(be, f->logits, f->hl, f->embed, m)); /* tied head, unscaled */
        if (c->final_logit_softcapping > 0)
            G4Q_TRY(be->softcap(be, f->logits, (size_t)m * V, (float)c->final_logit_softcapping));
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

g4q_status g4q_forward_run(g4q_forward *f, g4q_kvcache *kv, const int32_t *ids, int T,
                           int last_only, float *logits)
{
    const g4q_config *c = f->cfg;
    if (T < 1) return g4q_fail(f->ctx, G4Q_ERR_INVALID, "forward: %d tokens", T);
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
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return g4q_fail(f->ctx, G4Q_ERR_INVALID,
                            "forward: token %d (index %d) outside the vocabulary of %d",
                            (int)ids[t], t, c->vocab_size);
    const size_t V = (size_t)c->vocab_size;
    for (int t0 = 0; t0 < T; t0 += f->max_chunk) {
        const int C = T - t0 < f->max_chunk ? T - t0 : f->max_chunk;
        G4Q_TRY(f->be->embed(f->be, f->h, f->embed, ids + t0, C, embed_scale(f->be, c)));
        for (int l = 0; l < c->n_layers; l++)
            G4Q_TRY(layer(f, kv, l, C));
        kv->n_past += C;
        if (!logits) continue;
        if (!last_only)
            G4Q_TRY(logits_rows(f, 0, C, logits + (size_t)t0 * V));
        else if (t0 + C == T)
            G4Q_TRY(logits_rows(f, C - 1, 1, logits));
    }
    return G4Q_OK;
}
