/* Activation-aware smoothing of one decoder layer (contract in smooth_layer.h). */
#include "pipeline/smooth_layer.h"

#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "export/quantize_item.h"

/* The layer's tensors that a smoothing touches, by role, as plan item indices (-1: absent). */
typedef struct layer_items {
    int of[G4Q_W_ROLE_COUNT];
} layer_items;

static void find_items(const g4q_plan *p, int layer, layer_items *li)
{
    for (int r = 0; r < G4Q_W_ROLE_COUNT; r++)
        li->of[r] = -1;
    for (size_t i = 0; i < p->n_items; i++)
        if (p->items[i].layer == layer && p->items[i].role < G4Q_W_ROLE_COUNT)
            li->of[p->items[i].role] = (int)i;
}

/* The fp32 factors of one tensor: new = bf16(old · col[c] ÷ row[r]) (NULL: 1). */
typedef struct factors {
    size_t item;
    float *col, *row;
} factors;

typedef struct smooth_state {
    g4q_ctx *ctx;
    g4q_wquant_gpu *gpu;
    const g4q_plan *plan;
    factors f[G4Q_LS_MAX];
    int nf;
    /* the site being searched: its readers, their current (row-divided) weights, its Hessian */
    const g4q_plan_item *readers[G4Q_SMOOTH_MAX_LINEARS];
    int n_readers;
    g4q_hess H; /* H.h NULL: none */
    int64_t n;
    float *Hs; /* scratch: H smoothed for a candidate, held as H is */
} smooth_state;

static factors *factors_of(smooth_state *ss, size_t item)
{
    for (int k = 0; k < ss->nf; k++)
        if (ss->f[k].item == item) return &ss->f[k];
    if (ss->nf == G4Q_LS_MAX) return NULL;
    ss->f[ss->nf] = (factors){.item = item};
    return &ss->f[ss->nf++];
}

/* The tensor with its factors applied, rounded once to bf16 (malloc'ed; NULL when out of memory). */
static uint16_t *materialize(const g4q_tensor *t, const factors *f)
{
    const int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->numel / (rows ? rows : 1);
    uint16_t *out = malloc((size_t)t->numel * sizeof *out);
    if (!out) return NULL;
    const uint16_t *src = t->data;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            float v = g4q_bf16_to_f32(src[r * cols + c]);
            if (f && f->col) v *= f->col[c];
            if (f && f->row) v /= f->row[r];
            out[r * cols + c] = g4q_f32_to_bf16(v);
        }
    return out;
}

/* The export's quantization of each reader for a candidate (smooth.h's qdq): the fused group's
 * shared amax over the scaled members, round to nearest with the rule's scale search (GPTQ only
 * runs on the final factors), weighted searches with the candidate's smoothed Hessian. */
static g4q_status qdq(void *user, const float *s, const uint16_t *const *ws, float *const *deq)
{
    smooth_state *ss = user;
    float gamax = 0.0f;
    for (int k = 0; k < ss->n_readers; k++) {
        const g4q_plan_item *it = ss->readers[k];
        if (it->format == G4Q_PF_KEEP || it->group < 0) continue;
        float a;
        G4Q_TRY(g4q_quant_amax_bf16(ss->ctx, it->src->name, ws[k], (size_t)it->src->numel, &a));
        gamax = a > gamax ? a : gamax;
    }
    g4q_hess hs = ss->H;
    hs.key = 0; /* smoothed per candidate: nothing to keep */
    if (ss->H.h) {
        memcpy(ss->Hs, ss->H.h, g4q_hess_count(ss->H.n, ss->H.block) * sizeof *ss->Hs);
        g4q_smooth_hessian(ss->Hs, ss->n, ss->H.block, s);
        hs.h = ss->Hs;
    }
    const g4q_hess *H = hs.h ? &hs : NULL;
    for (int k = 0; k < ss->n_readers; k++) {
        const g4q_plan_item *it = ss->readers[k];
        const size_t numel = (size_t)it->src->numel;
        if (it->format == G4Q_PF_KEEP) {
            for (size_t i = 0; i < numel; i++)
                deq[k][i] = g4q_bf16_to_f32(ws[k][i]);
            continue;
        }
        g4q_plan_item tmp = *it;
        g4q_tensor t = *it->src;
        t.data = (void *)ws[k];
        tmp.src = &t;
        tmp.decision.algo = G4Q_RECIPE_ALGO_RTN;
        void *bufs[G4Q_PLAN_MAX_OUTPUTS] = {0};
        const int nw = g4q_plan_item_weight_outputs(it);
        g4q_status st = G4Q_OK;
        for (int o = 0; o < nw && st == G4Q_OK; o++)
            if (!(bufs[o] = malloc(it->out[o].nbytes ? it->out[o].nbytes : 1))) st = G4Q_ERR_NOMEM;
        if (st == G4Q_OK)
            st = g4q_quantize_item(ss->ctx, ss->gpu, &tmp, gamax,
                                   g4q_plan_item_needs_hessian(&tmp) ? H : NULL, bufs, deq[k]);
        else
            g4q_fail(ss->ctx, st, "'%s': smoothing: out of memory", it->module);
        for (int o = 0; o < nw; o++)
            free(bufs[o]);
        G4Q_TRY(st);
    }
    return G4Q_OK;
}

/* The RMSNorm after a reader's output (docs/gemma4.md §4.3, §4.5): down_proj's output goes
 * through post_feedforward_layernorm, q and k through their per-head norms, v through the
 * weightless v_norm; gate and up through GeGLU (no norm). */
static void next_norm(const g4q_plan *p, const layer_items *li, g4q_weight_role role,
                      g4q_smooth_linear *l)
{
    const g4q_weight_role nr = role == G4Q_W_DOWN_PROJ ? G4Q_W_POST_FF_LN
                               : role == G4Q_W_Q_PROJ  ? G4Q_W_Q_NORM
                               : role == G4Q_W_K_PROJ  ? G4Q_W_K_NORM
                               : role == G4Q_W_V_PROJ  ? G4Q_W_Q_NORM /* its length: head_dim */
                                                       : G4Q_W_ROLE_COUNT;
    if (nr == G4Q_W_ROLE_COUNT || li->of[nr] < 0) return;
    const g4q_tensor *t = p->items[li->of[nr]].src;
    if (t->dtype != G4Q_DT_BF16 || t->numel <= 0 || l->rows % t->numel) return;
    l->norm_group = t->numel;
    if (role != G4Q_W_V_PROJ) {
        l->norm_w = t->data;
        l->norm_w_len = t->numel;
    }
}

/* The activation quantization the engine applies in front of a reader. */
static g4q_actq engine_act(const g4q_plan_item *it)
{
    if (it->decision.act == G4Q_RECIPE_ACT_NVFP4) return G4Q_ACTQ_NVFP4;
    if (it->decision.act == G4Q_RECIPE_ACT_FP8) return G4Q_ACTQ_FP8_TENSOR;
    if (it->format == G4Q_PF_FP8_BLOCK) return G4Q_ACTQ_FP8_GROUP;
    return G4Q_ACTQ_NONE;
}

static g4q_status smooth_site(smooth_state *ss, const g4q_calib_layer *L, g4q_obs_site site,
                              const layer_items *li, g4q_layer_smooth *out)
{
    static const g4q_weight_role readers_of[][3] = {
        [G4Q_OBS_ATTN_IN] = {G4Q_W_Q_PROJ, G4Q_W_K_PROJ, G4Q_W_V_PROJ},
        [G4Q_OBS_MLP_IN] = {G4Q_W_GATE_PROJ, G4Q_W_UP_PROJ, G4Q_W_ROLE_COUNT},
        [G4Q_OBS_DOWN_IN] = {G4Q_W_DOWN_PROJ, G4Q_W_ROLE_COUNT, G4Q_W_ROLE_COUNT},
    };
    const g4q_weight_role producer = site == G4Q_OBS_ATTN_IN  ? G4Q_W_INPUT_LN
                                     : site == G4Q_OBS_MLP_IN ? G4Q_W_PRE_FF_LN
                                                              : G4Q_W_UP_PROJ;
    const g4q_plan *p = ss->plan;
    ss->n_readers = 0;
    int smoothed = 0;
    g4q_actq act = G4Q_ACTQ_NONE;
    for (int k = 0; k < 3; k++) {
        const g4q_weight_role r = readers_of[site][k];
        if (r == G4Q_W_ROLE_COUNT || li->of[r] < 0) continue;
        const g4q_plan_item *it = &p->items[li->of[r]];
        ss->readers[ss->n_readers++] = it;
        smoothed |= it->format != G4Q_PF_KEEP && it->decision.smooth != G4Q_RECIPE_SMOOTH_NONE;
        if (engine_act(it) != G4Q_ACTQ_NONE) act = engine_act(it);
    }
    if (!smoothed || li->of[producer] < 0) return G4Q_OK;
    const g4q_plan_item *prod = &p->items[li->of[producer]];
    const int64_t n = L->act_dim[site];
    if (!L->act[site] || n != ss->readers[0]->src->shape[1])
        return g4q_fail(ss->ctx, G4Q_ERR_INTERNAL, "layer %d: no %s activation samples",
                        L->layer, g4q_obs_site_name(site));
    double macs = 0.0; /* the search's products (smooth.h, "Cost") */
    for (int k = 0; k < ss->n_readers; k++)
        macs += (double)(G4Q_SMOOTH_GRID + 2) * (double)L->act_rows[site] *
                (double)ss->readers[k]->src->shape[0] * (double)n;
    if (macs > G4Q_SMOOTH_MAX_MACS)
        return g4q_fail(ss->ctx, G4Q_ERR_UNSUPPORTED,
                        "layer %d %s: smoothing awq searches on the CPU, and this layer's search "
                        "needs %.1e multiply-adds (the limit is %.0e): models this large need the "
                        "GPU search, which is not written yet",
                        L->layer, g4q_obs_site_name(site), macs, G4Q_SMOOTH_MAX_MACS);
    ss->H = L->hess[site].h && L->hess[site].n == n ? L->hess[site] : (g4q_hess){0};
    ss->n = n;
    const size_t hcount = ss->H.h ? g4q_hess_count(n, ss->H.block) : 0;
    /* The readers as they are now (up_proj with its rows divided when DOWN_IN came first). */
    uint16_t *cur[G4Q_SMOOTH_MAX_LINEARS] = {0};
    g4q_smooth_linear lin[G4Q_SMOOTH_MAX_LINEARS];
    float *s = malloc((size_t)n * sizeof *s);
    ss->Hs = ss->H.h ? malloc(hcount * sizeof *ss->Hs) : NULL;
    g4q_status st = s && (!ss->H.h || ss->Hs) ? G4Q_OK : G4Q_ERR_NOMEM;
    for (int k = 0; k < ss->n_readers && st == G4Q_OK; k++) {
        factors *f = factors_of(ss, (size_t)(ss->readers[k] - p->items));
        cur[k] = f ? materialize(ss->readers[k]->src, f) : NULL;
        if (!cur[k]) st = G4Q_ERR_NOMEM;
        lin[k] = (g4q_smooth_linear){.w = cur[k], .rows = ss->readers[k]->src->shape[0]};
        next_norm(p, li, ss->readers[k]->role, &lin[k]);
    }
    if (st != G4Q_OK) g4q_fail(ss->ctx, st, "layer %d: smoothing: out of memory", L->layer);
    const g4q_smooth_problem prob = {.n = n, .x = L->act[site], .rows = L->act_rows[site],
                                     .col_amax = L->col_amax[site], .lin = lin,
                                     .n_lin = ss->n_readers, .qdq = qdq, .user = ss, .act = act,
                                     .grid = G4Q_SMOOTH_GRID};
    char name[96];
    snprintf(name, sizeof name, "layer %d %s", L->layer, g4q_obs_site_name(site));
    if (st == G4Q_OK) st = g4q_smooth_search(ss->ctx, name, &prob, s, &out->res[site]);
    for (int k = 0; k < ss->n_readers; k++)
        free(cur[k]);
    if (st == G4Q_OK && out->res[site].alpha > 0.0f) {
        /* Fold: the readers' columns times s, the producer's weight (rows for up_proj) over s. */
        for (int k = 0; k < ss->n_readers && st == G4Q_OK; k++) {
            factors *f = factors_of(ss, (size_t)(ss->readers[k] - p->items));
            if (!f || !(f->col = malloc((size_t)n * sizeof *f->col))) st = G4Q_ERR_NOMEM;
            else memcpy(f->col, s, (size_t)n * sizeof *s);
        }
        factors *f = factors_of(ss, (size_t)(prod - p->items));
        float **slot = f ? (producer == G4Q_W_UP_PROJ ? &f->row : &f->col) : NULL;
        if (st == G4Q_OK && (!slot || !(*slot = malloc((size_t)n * sizeof **slot))))
            st = G4Q_ERR_NOMEM;
        if (st == G4Q_OK) {
            for (int64_t c = 0; c < n; c++)
                (*slot)[c] = producer == G4Q_W_UP_PROJ ? s[c] : 1.0f / s[c];
            out->amax[site] = out->res[site].amax;
            out->done |= 1u << site;
            if (ss->H.h) {
                out->hess[site] = ss->Hs;
                g4q_smooth_hessian(memcpy(ss->Hs, ss->H.h, hcount * sizeof *ss->Hs), n, ss->H.block,
                                   s);
                ss->Hs = NULL;
            }
        }
        if (st != G4Q_OK) g4q_fail(ss->ctx, st, "layer %d: smoothing: out of memory", L->layer);
    }
    free(ss->Hs);
    ss->Hs = NULL;
    free(s);
    return st;
}

g4q_status g4q_layer_smooth_run(g4q_ctx *ctx, g4q_wquant_gpu *gpu, const g4q_plan *plan,
                                const g4q_calib_layer *L, unsigned sites, g4q_layer_smooth *out)
{
    memset(out, 0, sizeof *out);
    layer_items li;
    find_items(plan, L->layer, &li);
    smooth_state ss = {.ctx = ctx, .gpu = gpu, .plan = plan};
    static const g4q_obs_site order[] = {G4Q_OBS_DOWN_IN, G4Q_OBS_MLP_IN, G4Q_OBS_ATTN_IN};
    g4q_status st = G4Q_OK;
    for (int k = 0; k < 3 && st == G4Q_OK; k++)
        if (sites >> order[k] & 1u) st = smooth_site(&ss, L, order[k], &li, out);
    for (int k = 0; k < ss.nf; k++) {
        const factors *f = &ss.f[k];
        if (st == G4Q_OK && (f->col || f->row)) {
            const g4q_tensor *src = plan->items[f->item].src;
            uint16_t *d = src->dtype == G4Q_DT_BF16 ? materialize(src, f) : NULL;
            if (!d)
                st = g4q_fail(ctx, src->dtype == G4Q_DT_BF16 ? G4Q_ERR_NOMEM : G4Q_ERR_INVALID,
                              "'%s': smoothing needs a BF16 tensor", src->name);
            else {
                const int i = out->n++;
                out->item[i] = f->item;
                out->data[i] = d;
                out->t[i] = *src;
                out->t[i].data = d;
            }
        }
        free(f->col);
        free(f->row);
    }
    return st;
}

const g4q_tensor *g4q_layer_smooth_tensor(const g4q_layer_smooth *ls, size_t item)
{
    for (int k = 0; k < ls->n; k++)
        if (ls->item[k] == item) return &ls->t[k];
    return NULL;
}

void g4q_layer_smooth_free(g4q_layer_smooth *ls)
{
    for (int k = 0; k < ls->n; k++)
        free(ls->data[k]);
    for (int s = 0; s < G4Q_OBS_COUNT; s++)
        free(ls->hess[s]);
    memset(ls, 0, sizeof *ls);
}
