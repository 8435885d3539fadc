/*
 * The in-memory tiny Gemma 4 model and its independent double-precision forward (refmodel.h).
 */
#include "refmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "testutil.h"

/* ---------------------------------------------------------------- the model in memory */

static const g4q_tensor *tm_add(g4q_refmodel *m, uint64_t *rng, const char *name, int64_t rows,
                                int64_t cols, double mean, double sigma)
{
    g4q_tensor *t = &m->t[m->nt];
    snprintf(m->names[m->nt], sizeof m->names[0], "%s", name);
    m->nt++;
    t->name = m->names[m->nt - 1];
    t->dtype = G4Q_DT_BF16;
    t->ndim = rows == 1 ? 1 : 2;
    t->shape[0] = rows == 1 ? cols : rows;
    t->shape[1] = cols;
    t->numel = (uint64_t)(rows * cols);
    t->nbytes = t->numel * 2;
    uint16_t *p = malloc(t->numel * sizeof *p);
    for (size_t i = 0; i < t->numel; i++)
        p[i] = g4q_f32_to_bf16((float)mean + (float)(g4q_test_normal(rng) * sigma));
    t->data = p;
    return t;
}

void g4q_refmodel_build(g4q_refmodel *m, uint64_t *rng, int n_layers, int d, int inter, int vocab,
                        int H, int kv, int hd, int ghd, int window)
{
    memset(m, 0, sizeof *m);
    g4q_config *c = &m->cfg;
    c->prefix = "model.language_model.";
    c->vocab_size = vocab;
    c->hidden = d;
    c->intermediate = inter;
    c->n_layers = n_layers;
    c->n_heads = H;
    c->sliding_window = window;
    c->attention_k_eq_v = 1;
    c->tie_word_embeddings = 1;
    c->rms_norm_eps = 1e-6;
    c->final_logit_softcapping = 30.0;
    c->embed_scale = g4q_round_bf16((float)sqrt((double)d));
    c->max_position_embeddings = 4096;
    char nm[96];
    m->w.n_layers = n_layers;
    m->w.embed_tokens =
        tm_add(m, rng, "model.language_model.embed_tokens.weight", vocab, d, 0, 1.0);
    for (int l = 0; l < n_layers; l++) {
        g4q_layer_config *lc = &c->layers[l];
        int full = l % 6 == 5;
        lc->type = full ? G4Q_LAYER_FULL : G4Q_LAYER_SLIDING;
        lc->head_dim = full ? ghd : hd;
        lc->n_kv_heads = full ? 1 : kv;
        lc->has_v_proj = !full;
        lc->rope.type = full ? G4Q_ROPE_PROPORTIONAL : G4Q_ROPE_DEFAULT;
        lc->rope.theta = full ? 1e6 : 1e4;
        lc->rope.partial_rotary_factor = full ? 0.25 : 1.0;
        lc->rope_angles = (int)(lc->rope.partial_rotary_factor * lc->head_dim / 2);
        g4q_layer_weights *lw = &m->w.layers[l];
        int q = H * lc->head_dim, k = lc->n_kv_heads * lc->head_dim;
#define TM(field, suffix, r, cc, mu, sg)                                                           \
    snprintf(nm, sizeof nm, "model.language_model.layers.%d.%s", l, suffix);                       \
    lw->field = tm_add(m, rng, nm, r, cc, mu, sg)
        TM(layer_scalar, "layer_scalar", 1, 1, 0.8, 0.3);
        TM(q_proj, "self_attn.q_proj.weight", q, d, 0, 1 / sqrt(d));
        TM(q_norm, "self_attn.q_norm.weight", 1, lc->head_dim, 1.0, 0.3);
        TM(k_norm, "self_attn.k_norm.weight", 1, lc->head_dim, 1.0, 0.3);
        TM(k_proj, "self_attn.k_proj.weight", k, d, 0, 1 / sqrt(d));
        if (!full) {
            TM(v_proj, "self_attn.v_proj.weight", k, d, 0, 1 / sqrt(d));
        }
        TM(o_proj, "self_attn.o_proj.weight", d, q, 0, 1 / sqrt(q));
        TM(gate_proj, "mlp.gate_proj.weight", inter, d, 0, 1 / sqrt(d));
        TM(up_proj, "mlp.up_proj.weight", inter, d, 0, 1 / sqrt(d));
        TM(down_proj, "mlp.down_proj.weight", d, inter, 0, 1 / sqrt(inter));
        TM(input_layernorm, "input_layernorm.weight", 1, d, 1.0, 0.3);
        TM(post_attention_layernorm, "post_attention_layernorm.weight", 1, d, 0.7, 0.3);
        TM(pre_feedforward_layernorm, "pre_feedforward_layernorm.weight", 1, d, 1.0, 0.3);
        TM(post_feedforward_layernorm, "post_feedforward_layernorm.weight", 1, d, 0.7, 0.3);
#undef TM
    }
    m->w.norm = tm_add(m, rng, "model.language_model.norm.weight", 1, d, 1.0, 0.3);
}

void g4q_refmodel_free(g4q_refmodel *m)
{
    for (int i = 0; i < m->nt; i++)
        free((void *)m->t[i].data);
}

/* ---------------------------------------------------------------- the reference forward */

static double tw(const g4q_tensor *t, size_t i)
{
    return (double)g4q_bf16_to_f32(((const uint16_t *)t->data)[i]);
}

/* y[n, out] = x[n, in] · Wᵀ */
static void ref_linear(const double *x, int n, const g4q_tensor *W, int out, int in, double *y)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int k = 0; k < in; k++)
                s += x[(size_t)i * in + k] * tw(W, (size_t)o * in + k);
            y[(size_t)i * out + o] = s;
        }
}

/* x·(mean(x²)+eps)^-1/2·w over each of rows rows of length n (w may be NULL). */
static void ref_norm(double *x, int rows, int n, const g4q_tensor *w, double eps)
{
    for (int r = 0; r < rows; r++) {
        double *v = x + (size_t)r * n, ss = 0;
        for (int i = 0; i < n; i++)
            ss += v[i] * v[i];
        double inv = 1.0 / sqrt(ss / n + eps);
        for (int i = 0; i < n; i++)
            v[i] = v[i] * inv * (w ? tw(w, i) : 1.0);
    }
}

/* Rotate-half: dim j pairs with j + hd/2; angles j >= n_rot have inv_freq 0 (unchanged). */
static void ref_rope(double *v, int hd, int n_rot, double theta, int pos)
{
    for (int j = 0; j < n_rot; j++) {
        double ang = pos * pow(theta, -2.0 * j / hd), c = cos(ang), s = sin(ang);
        double a = v[j], b = v[j + hd / 2];
        v[j] = a * c - b * s;
        v[j + hd / 2] = b * c + a * s;
    }
}

/* *am = max(*am, max |x[0..n)|). */
static void amax_into(double *am, const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        *am = fmax(*am, fabs(x[i]));
}

/* Attention of layer l for all T tokens; a[T, d] normed input, result o[T, d] (after o_proj).
 * am: NULL, or am[site] raised to max |x| at the attention sites of layer l. */
static void ref_attention(const g4q_refmodel *m, int l, const double *a, int T, double *o,
                          double *am)
{
    const g4q_config *c = &m->cfg;
    const g4q_layer_weights *lw = &m->w.layers[l];
    const int full = (l % 6 == 5), d = c->hidden, H = c->n_heads;
    const int hd = c->layers[l].head_dim, kv = c->layers[l].n_kv_heads;
    const int n_rot = full ? (int)(0.25 * hd / 2) : hd / 2;
    const double theta = full ? 1e6 : 1e4;
    double *q = malloc(sizeof(double) * (size_t)T * H * hd);
    double *k = malloc(sizeof(double) * (size_t)T * kv * hd);
    double *v = malloc(sizeof(double) * (size_t)T * kv * hd);
    double *att = calloc((size_t)T * H * hd, sizeof(double));
    double *p = malloc(sizeof(double) * (size_t)T);
    ref_linear(a, T, lw->q_proj, H * hd, d, q);
    ref_linear(a, T, lw->k_proj, kv * hd, d, k);
    if (full) /* attention_k_eq_v: V is the raw k_proj output */
        memcpy(v, k, sizeof(double) * (size_t)T * kv * hd);
    else
        ref_linear(a, T, lw->v_proj, kv * hd, d, v);
    ref_norm(q, T * H, hd, lw->q_norm, c->rms_norm_eps);
    ref_norm(k, T * kv, hd, lw->k_norm, c->rms_norm_eps);
    ref_norm(v, T * kv, hd, NULL, c->rms_norm_eps);
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < H; h++)
            ref_rope(q + ((size_t)t * H + h) * hd, hd, n_rot, theta, t);
        for (int h = 0; h < kv; h++)
            ref_rope(k + ((size_t)t * kv + h) * hd, hd, n_rot, theta, t);
    }
    if (am) {
        amax_into(&am[G4Q_OBS_ATTN_IN], a, (size_t)T * d);
        amax_into(&am[G4Q_OBS_K], k, (size_t)T * kv * hd);
        amax_into(&am[G4Q_OBS_V], v, (size_t)T * kv * hd);
    }
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / kv);
            double mx = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++) {
                p[s] = -INFINITY;
                if (!full && t - s >= c->sliding_window) continue;
                double sc = 0;
                for (int j = 0; j < hd; j++)
                    sc += q[((size_t)t * H + h) * hd + j] * k[((size_t)s * kv + g) * hd + j];
                p[s] = sc * 1.0; /* scaling is exactly 1.0 */
                mx = fmax(mx, p[s]);
            }
            for (int s = 0; s <= t; s++)
                sum += p[s] == -INFINITY ? 0 : exp(p[s] - mx);
            for (int s = 0; s <= t; s++) {
                if (p[s] == -INFINITY) continue;
                double w = exp(p[s] - mx) / sum;
                for (int j = 0; j < hd; j++)
                    att[((size_t)t * H + h) * hd + j] += w * v[((size_t)s * kv + g) * hd + j];
            }
        }
    if (am) amax_into(&am[G4Q_OBS_O_IN], att, (size_t)T * H * hd);
    ref_linear(att, T, lw->o_proj, d, H * hd, o);
    free(q), free(k), free(v), free(att), free(p);
}

void g4q_refmodel_forward(const g4q_refmodel *m, const int32_t *ids, int T,
                          double (*am)[G4Q_OBS_COUNT], double *logits)
{
    const g4q_config *c = &m->cfg;
    const int d = c->hidden, I = c->intermediate, V = c->vocab_size;
    /* The fp32 CPU backend mirrors transformers run in fp32: the embedding scale is
     * fp32(sqrt(d)), not the bf16-rounded value a bf16 model uses. */
    const double eps = c->rms_norm_eps, scale = (float)sqrt((double)d);
    double *h = malloc(sizeof(double) * (size_t)T * d), *a = malloc(sizeof(double) * (size_t)T * d);
    double *o = malloc(sizeof(double) * (size_t)T * d);
    double *g = malloc(sizeof(double) * (size_t)T * I), *u = malloc(sizeof(double) * (size_t)T * I);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++)
            h[(size_t)t * d + i] = tw(m->w.embed_tokens, (size_t)ids[t] * d + i) * scale;
    for (int l = 0; l < c->n_layers; l++) {
        const g4q_layer_weights *lw = &m->w.layers[l];
        memcpy(a, h, sizeof(double) * (size_t)T * d);
        ref_norm(a, T, d, lw->input_layernorm, eps);
        ref_attention(m, l, a, T, o, am ? am[l] : NULL);
        ref_norm(o, T, d, lw->post_attention_layernorm, eps);
        for (size_t i = 0; i < (size_t)T * d; i++)
            h[i] += o[i];
        memcpy(a, h, sizeof(double) * (size_t)T * d);
        ref_norm(a, T, d, lw->pre_feedforward_layernorm, eps);
        if (am) amax_into(&am[l][G4Q_OBS_MLP_IN], a, (size_t)T * d);
        ref_linear(a, T, lw->gate_proj, I, d, g);
        ref_linear(a, T, lw->up_proj, I, d, u);
        for (size_t i = 0; i < (size_t)T * I; i++) {
            double x = g[i];
            g[i] = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
        }
        if (am) amax_into(&am[l][G4Q_OBS_DOWN_IN], g, (size_t)T * I);
        ref_linear(g, T, lw->down_proj, d, I, o);
        ref_norm(o, T, d, lw->post_feedforward_layernorm, eps);
        double ls = tw(lw->layer_scalar, 0);
        for (size_t i = 0; i < (size_t)T * d; i++)
            h[i] = (h[i] + o[i]) * ls;
    }
    if (logits) {
        ref_norm(h, T, d, m->w.norm, eps);
        ref_linear(h, T, m->w.embed_tokens, V, d, logits); /* tied head */
        for (size_t i = 0; i < (size_t)T * V; i++)
            logits[i] = tanh(logits[i] / 30.0) * 30.0;
    }
    free(h), free(a), free(o), free(g), free(u);
}
