/* Gemma 4 tensor layout and weight binding (see weights.h and docs/gemma4.md §6). */
#include "model/weights.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LISTED 10  /* problems spelled out in the error message */
#define LIST_BYTES 900 /* room for them, leaving space for the label and the tail */

static const char *const role_suffix[] = {
#define G4Q_X_W(e, suffix, lin) suffix,
    G4Q_WEIGHT_ROLE_TABLE(G4Q_X_W)
#undef G4Q_X_W
};

const char *g4q_weight_role_suffix(g4q_weight_role role)
{
    return (unsigned)role < G4Q_W_ROLE_COUNT ? role_suffix[role] : "";
}

/* ---- the expected layout ---- */

static void set_spec(g4q_weight_spec *s, g4q_weight_role role, int layer, int ndim, int64_t d0,
                     int64_t d1, int64_t d2)
{
    s->role = role;
    s->layer = layer;
    s->dtype = G4Q_DT_BF16;
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->shape[2] = d2;
    s->numel = 1;
    for (int i = 0; i < ndim; i++)
        s->numel *= (uint64_t)s->shape[i];
}

/* Shape of a per-layer tensor: fills ndim and up to two dims. */
static void layer_shape(const g4q_config *c, int L, g4q_weight_role role, int *ndim, int64_t *d0,
                        int64_t *d1)
{
    const g4q_layer_config *l = &c->layers[L];
    int64_t d = c->hidden, q = (int64_t)c->n_heads * l->head_dim;
    int64_t kv = (int64_t)l->n_kv_heads * l->head_dim, I = c->intermediate;
    *ndim = 2;
    switch (role) {
    case G4Q_W_Q_PROJ:
        *d0 = q;
        *d1 = d;
        return;
    case G4Q_W_K_PROJ:
    case G4Q_W_V_PROJ:
        *d0 = kv;
        *d1 = d;
        return;
    case G4Q_W_O_PROJ:
        *d0 = d;
        *d1 = q;
        return;
    case G4Q_W_GATE_PROJ:
    case G4Q_W_UP_PROJ:
        *d0 = I;
        *d1 = d;
        return;
    case G4Q_W_DOWN_PROJ:
        *d0 = d;
        *d1 = I;
        return;
    case G4Q_W_Q_NORM:
    case G4Q_W_K_NORM:
        *ndim = 1;
        *d0 = l->head_dim;
        *d1 = 0;
        return;
    case G4Q_W_LAYER_SCALAR:
        *ndim = 1;
        *d0 = 1;
        *d1 = 0;
        return;
    default:
        *ndim = 1;
        *d0 = d;
        *d1 = 0;
        return; /* the four layer norms */
    }
}

size_t g4q_weights_expected_count(const g4q_config *cfg)
{
    size_t n = 2;
    for (int L = 0; L < cfg->n_layers; L++)
        n += cfg->layers[L].has_v_proj ? G4Q_LAYER_ROLES : G4Q_LAYER_ROLES - 1;
    return n + (cfg->has_vision ? 10 : 0) + (cfg->has_audio ? 1 : 0);
}

static size_t add_multimodal(const g4q_config *c, g4q_weight_spec *out, size_t n)
{
    if (c->has_vision) {
        const int64_t P = c->vision_patch_dim, E = c->vision_embed_dim;
        static const char *const vnames[9] = {
            "pos_embedding",      "patch_ln1.weight", "patch_ln1.bias",
            "patch_dense.weight", "patch_dense.bias", "patch_ln2.weight",
            "patch_ln2.bias",     "pos_norm.weight",  "pos_norm.bias"};
        for (int i = 0; i < 9; i++) {
            g4q_weight_spec *s = &out[n++];
            snprintf(s->name, sizeof s->name, "model.vision_embedder.%s", vnames[i]);
            if (i == 0)
                set_spec(s, G4Q_W_MULTIMODAL, -1, 3, c->vision_pos_size, 2, E);
            else if (i == 1 || i == 2)
                set_spec(s, G4Q_W_MULTIMODAL, -1, 1, P, 0, 0);
            else if (i == 3)
                set_spec(s, G4Q_W_MULTIMODAL, -1, 2, E, P, 0);
            else
                set_spec(s, G4Q_W_MULTIMODAL, -1, 1, E, 0, 0);
        }
        g4q_weight_spec *s = &out[n++];
        snprintf(s->name, sizeof s->name, "model.embed_vision.embedding_projection.weight");
        set_spec(s, G4Q_W_MULTIMODAL, -1, 2, c->hidden, c->vision_proj_dim, 0);
    }
    if (c->has_audio) {
        g4q_weight_spec *s = &out[n++];
        snprintf(s->name, sizeof s->name, "model.embed_audio.embedding_projection.weight");
        set_spec(s, G4Q_W_MULTIMODAL, -1, 2, c->hidden, c->audio_embed_dim, 0);
    }
    return n;
}

static int cmp_spec_name(const void *a, const void *b)
{
    return strcmp(((const g4q_weight_spec *)a)->name, ((const g4q_weight_spec *)b)->name);
}

size_t g4q_weights_expected(const g4q_config *cfg, g4q_weight_order order, g4q_weight_spec *out)
{
    size_t n = 0;
    g4q_weight_spec *s = &out[n++];
    snprintf(s->name, sizeof s->name, "%sembed_tokens.weight", cfg->prefix);
    set_spec(s, G4Q_W_EMBED, -1, 2, cfg->vocab_size, cfg->hidden, 0);
    for (int L = 0; L < cfg->n_layers; L++) {
        for (int r = 0; r < G4Q_LAYER_ROLES; r++) {
            if (r == G4Q_W_V_PROJ && !cfg->layers[L].has_v_proj) continue;
            int ndim;
            int64_t d0, d1;
            layer_shape(cfg, L, (g4q_weight_role)r, &ndim, &d0, &d1);
            s = &out[n++];
            snprintf(s->name, sizeof s->name, "%slayers.%d.%s", cfg->prefix, L, role_suffix[r]);
            set_spec(s, (g4q_weight_role)r, L, ndim, d0, d1, 0);
        }
    }
    s = &out[n++];
    snprintf(s->name, sizeof s->name, "%snorm.weight", cfg->prefix);
    set_spec(s, G4Q_W_NORM, -1, 1, cfg->hidden, 0, 0);
    n = add_multimodal(cfg, out, n);
    if (order == G4Q_ORDER_FILE) qsort(out, n, sizeof *out, cmp_spec_name);
    return n;
}

/* ---- problem list ---- */

enum { PK_MISSING = 1, PK_UNEXPECTED = 2, PK_SHAPE = 4 };

typedef struct problems {
    g4q_ctx *ctx;
    const char *label;
    size_t total, listed;
    int kinds;
    size_t len;
    char list[LIST_BYTES];
} problems;

static void problem(problems *p, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(problems *p, int kind, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    g4q_log(p->ctx, G4Q_LOG_ERROR, "%s: %s", p->label, line);
    p->total++;
    p->kinds |= kind;
    size_t ll = strlen(line);
    if (p->listed < MAX_LISTED && p->len + ll + 3 < sizeof p->list) {
        if (p->listed) {
            memcpy(p->list + p->len, "; ", 2);
            p->len += 2;
        }
        memcpy(p->list + p->len, line, ll + 1);
        p->len += ll;
        p->listed++;
    }
}

static void fmt_shape(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Parses "layers.<L>." at s; returns L (or -1) and sets *rest to what follows. */
static int parse_layer_name(const char *s, const char **rest)
{
    if (strncmp(s, "layers.", 7) != 0) return -1;
    s += 7;
    long v = 0;
    const char *p = s;
    while (*p >= '0' && *p <= '9' && p - s < 6)
        v = v * 10 + (*p++ - '0');
    if (p == s || *p != '.') return -1;
    *rest = p + 1;
    return (int)v;
}

/* Why a tensor that matches no expected name is there, for the message. */
static void report_unexpected(problems *p, const g4q_config *c, const char *name)
{
    size_t pl = strlen(c->prefix);
    const char *rest = NULL;
    int L = strncmp(name, c->prefix, pl) == 0 ? parse_layer_name(name + pl, &rest) : -1;
    if (strcmp(name, "lm_head.weight") == 0) {
        problem(p, PK_UNEXPECTED,
                "tensor 'lm_head.weight': unexpected, the embeddings are tied "
                "(the head is embed_tokens)");
    } else if (L >= 0 && L < c->n_layers && strcmp(rest, "self_attn.v_proj.weight") == 0) {
        problem(p, PK_UNEXPECTED,
                "tensor '%s': unexpected, layer %d is a full-attention layer "
                "with attention_k_eq_v (V comes from k_proj)",
                name, L);
    } else if (L >= c->n_layers) {
        problem(p, PK_UNEXPECTED,
                "tensor '%s': unexpected, layer %d is beyond num_hidden_layers %d", name, L,
                c->n_layers);
    } else if (strncmp(name, "model.vision_embedder.", 22) == 0 ||
               strncmp(name, "model.embed_vision.", 19) == 0 ||
               strncmp(name, "model.embed_audio.", 18) == 0) {
        problem(p, PK_UNEXPECTED, "tensor '%s': unexpected multimodal tensor (config has %s)", name,
                c->has_multimodal ? "no such tensor" : "no vision_config/audio_config");
    } else if (c->text_only ? strncmp(name, "model.language_model.", 21) == 0
                            : (strncmp(name, "model.layers.", 13) == 0 ||
                               strcmp(name, "model.embed_tokens.weight") == 0 ||
                               strcmp(name, "model.norm.weight") == 0)) {
        problem(p, PK_UNEXPECTED,
                "tensor '%s': unexpected, names under this config start with '%s'", name,
                c->prefix);
    } else {
        problem(p, PK_UNEXPECTED, "tensor '%s': unexpected, not part of this Gemma 4 layout", name);
    }
}

static void check_tensor(problems *p, const g4q_weight_spec *s, const g4q_tensor *t)
{
    int same = t->ndim == s->ndim;
    for (int i = 0; same && i < s->ndim; i++)
        same = t->shape[i] == s->shape[i];
    if (!same) {
        char want[96], got[160];
        fmt_shape(want, sizeof want, s->ndim, s->shape);
        fmt_shape(got, sizeof got,
                  t->ndim < 0              ? 0
                  : t->ndim > G4Q_MAX_DIMS ? G4Q_MAX_DIMS
                                           : t->ndim,
                  t->shape);
        problem(p, PK_SHAPE, "tensor '%s': shape %s, expected %s", s->name, got, want);
    }
    if (t->dtype != s->dtype)
        problem(p, PK_SHAPE, "tensor '%s': dtype %s, expected %s", s->name,
                (unsigned)t->dtype < G4Q_DT_COUNT ? g4q_dtype_name(t->dtype) : "?",
                g4q_dtype_name(s->dtype));
}

/* ---- binding ---- */

static const g4q_tensor **layer_slot(g4q_layer_weights *lw, g4q_weight_role role)
{
    switch (role) {
    case G4Q_W_LAYER_SCALAR:
        return &lw->layer_scalar;
    case G4Q_W_Q_PROJ:
        return &lw->q_proj;
    case G4Q_W_Q_NORM:
        return &lw->q_norm;
    case G4Q_W_K_NORM:
        return &lw->k_norm;
    case G4Q_W_K_PROJ:
        return &lw->k_proj;
    case G4Q_W_V_PROJ:
        return &lw->v_proj;
    case G4Q_W_O_PROJ:
        return &lw->o_proj;
    case G4Q_W_GATE_PROJ:
        return &lw->gate_proj;
    case G4Q_W_UP_PROJ:
        return &lw->up_proj;
    case G4Q_W_DOWN_PROJ:
        return &lw->down_proj;
    case G4Q_W_INPUT_LN:
        return &lw->input_layernorm;
    case G4Q_W_POST_ATTN_LN:
        return &lw->post_attention_layernorm;
    case G4Q_W_PRE_FF_LN:
        return &lw->pre_feedforward_layernorm;
    case G4Q_W_POST_FF_LN:
        return &lw->post_feedforward_layernorm;
    default:
        return NULL;
    }
}

const g4q_tensor *g4q_weights_get(const g4q_weights *w, int layer, g4q_weight_role role)
{
    if (role == G4Q_W_EMBED) return w->embed_tokens;
    if (role == G4Q_W_NORM) return w->norm;
    if (layer < 0 || layer >= w->n_layers) return NULL;
    const g4q_tensor **slot = layer_slot((g4q_layer_weights *)&w->layers[layer], role);
    return slot ? *slot : NULL;
}

/* Sorted index of spec positions, for lookups by name. */
typedef struct spec_index {
    const g4q_weight_spec *specs;
    size_t *idx;
    size_t n;
} spec_index;

static int cmp_idx(const void *a, const void *b, void *arg)
{
    const g4q_weight_spec *s = arg;
    return strcmp(s[*(const size_t *)a].name, s[*(const size_t *)b].name);
}

static long find_spec(const spec_index *ix, const char *name)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ix->specs[ix->idx[mid]].name, name);
        if (c == 0) return (long)ix->idx[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* A Linear weight: the seven layer projections and the 2-D multimodal weights. */
static int spec_is_linear(const g4q_weight_spec *s)
{
    static const int lin[] = {
#define G4Q_X_W(e, suffix, l) l,
        G4Q_WEIGHT_ROLE_TABLE(G4Q_X_W)
#undef G4Q_X_W
    };
    if (s->role == G4Q_W_MULTIMODAL) return s->ndim == 2;
    return (unsigned)s->role < G4Q_W_ROLE_COUNT && lin[s->role];
}

static void assign_slots(const g4q_config *cfg, const g4q_weight_spec *specs, size_t ns,
                         const g4q_tensor *tensors, const long *found, g4q_weights *out)
{
    for (size_t k = 0; k < ns; k++) {
        const g4q_tensor *t = found[k] >= 0 ? &tensors[found[k]] : NULL;
        const g4q_weight_spec *s = &specs[k];
        if (s->role == G4Q_W_EMBED)
            out->embed_tokens = t;
        else if (s->role == G4Q_W_NORM)
            out->norm = t;
        else if (s->role == G4Q_W_MULTIMODAL)
            out->multimodal[out->n_multimodal++] = t;
        else
            *layer_slot(&out->layers[s->layer], s->role) = t;
    }
    out->n_layers = cfg->n_layers;
}

g4q_status g4q_weights_bind(g4q_ctx *ctx, const g4q_config *cfg, const g4q_tensor *tensors,
                            size_t n, const char *label, g4q_weights *out)
{
    return g4q_weights_bind_partial(ctx, cfg, tensors, n, label, NULL, NULL, 0, out);
}

g4q_status g4q_weights_bind_partial(g4q_ctx *ctx, const g4q_config *cfg,
                                    const g4q_tensor *tensors, size_t n, const char *label,
                                    const uint8_t *skip, const char *const *packed,
                                    size_t n_packed, g4q_weights *out)
{
    memset(out, 0, sizeof *out);
    size_t ns = g4q_weights_expected_count(cfg);
    g4q_weight_spec *specs = malloc(ns * sizeof *specs);
    size_t *idx = malloc(ns * sizeof *idx);
    long *found = malloc(ns * sizeof *found);
    problems *p = calloc(1, sizeof *p);
    g4q_status st = G4Q_OK;
    if (!specs || !idx || !found || !p) {
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory binding %zu weights", label, ns);
        goto done;
    }
    p->ctx = ctx;
    p->label = label;
    g4q_weights_expected(cfg, G4Q_ORDER_MODULE, specs);
    for (size_t k = 0; k < ns; k++) {
        idx[k] = k;
        found[k] = -1;
    }
    qsort_r(idx, ns, sizeof *idx, cmp_idx, specs);
    spec_index ix = {specs, idx, ns};
    for (size_t j = 0; j < n_packed; j++) {
        long k = find_spec(&ix, packed[j]);
        if (k < 0 || !spec_is_linear(&specs[k])) {
            st = g4q_fail(ctx, G4Q_ERR_INTERNAL, "%s: '%s' is not a Linear weight", label,
                          packed[j]);
            goto done;
        }
        found[k] = -2; /* stored packed: validated by the caller, slot stays NULL */
    }

    for (size_t i = 0; i < n; i++) {
        const g4q_tensor *t = &tensors[i];
        if (skip && skip[i]) continue;
        if (!t->name) {
            problem(p, PK_UNEXPECTED, "tensor #%zu has no name", i);
            continue;
        }
        long k = find_spec(&ix, t->name);
        if (k < 0) {
            report_unexpected(p, cfg, t->name);
        } else if (found[k] == -2) {
            problem(p, PK_UNEXPECTED, "tensor '%s': unexpected beside the packed form of this "
                    "Linear", t->name);
        } else if (found[k] >= 0) {
            problem(p, PK_UNEXPECTED, "tensor '%s': given twice", t->name);
        } else {
            found[k] = (long)i;
            check_tensor(p, &specs[k], t);
        }
    }
    for (size_t k = 0; k < ns; k++) {
        if (found[k] == -1) {
            char want[96];
            fmt_shape(want, sizeof want, specs[k].ndim, specs[k].shape);
            problem(p, PK_MISSING, "tensor '%s': missing (expected %s %s)", specs[k].name,
                    g4q_dtype_name(specs[k].dtype), want);
        }
    }
    if (p->total) {
        st = p->kinds == PK_MISSING ? G4Q_ERR_NOT_FOUND
             : p->kinds == PK_SHAPE ? G4Q_ERR_SHAPE
                                    : G4Q_ERR_FORMAT;
        char tail[80] = "";
        if (p->total > p->listed)
            snprintf(tail, sizeof tail, "; and %zu more (all are logged)", p->total - p->listed);
        st = g4q_fail(ctx, st, "%s: %zu weight problem%s: %s%s", label, p->total,
                      p->total == 1 ? "" : "s", p->list, tail);
        goto done;
    }
    assign_slots(cfg, specs, ns, tensors, found, out);
done:
    free(specs);
    free(idx);
    free(found);
    free(p);
    return st;
}

int g4q_weights_layer_linears(const g4q_config *cfg, int layer, g4q_linear *out)
{
    static const struct {
        g4q_weight_role role;
        const char *module;
        g4q_linear_group group;
        const char *group_name;
    } tab[] = {
        {G4Q_W_Q_PROJ, "self_attn.q_proj", G4Q_GROUP_QKV, "qkv"},
        {G4Q_W_K_PROJ, "self_attn.k_proj", G4Q_GROUP_QKV, "qkv"},
        {G4Q_W_V_PROJ, "self_attn.v_proj", G4Q_GROUP_QKV, "qkv"},
        {G4Q_W_O_PROJ, "self_attn.o_proj", G4Q_GROUP_NONE, NULL},
        {G4Q_W_GATE_PROJ, "mlp.gate_proj", G4Q_GROUP_GATE_UP, "gate_up"},
        {G4Q_W_UP_PROJ, "mlp.up_proj", G4Q_GROUP_GATE_UP, "gate_up"},
        {G4Q_W_DOWN_PROJ, "mlp.down_proj", G4Q_GROUP_NONE, NULL},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        if (tab[i].role == G4Q_W_V_PROJ && !cfg->layers[layer].has_v_proj) continue;
        int ndim;
        int64_t d0, d1;
        layer_shape(cfg, layer, tab[i].role, &ndim, &d0, &d1);
        out[n++] =
            (g4q_linear){tab[i].role, tab[i].module, tab[i].group, tab[i].group_name, d0, d1};
    }
    return n;
}
