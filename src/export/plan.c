#include "export/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "calib/calibrate.h"
#include "quant/codecs.h"

static const char *const format_names[G4Q_PF_COUNT] = {
    "keep", "nvfp4", "nvfp4-ct", "fp8", "fp8-block", "int4-gptq", "int4-ct",
};

const char *g4q_plan_format_name(g4q_plan_format f)
{
    return (unsigned)f < G4Q_PF_COUNT ? format_names[f] : "?";
}

/* The three multimodal Linear weights (on-disk names), candidates like the decoder Linears. */
static const char *const multimodal_linears[] = {
    "model.vision_embedder.patch_dense.weight",
    "model.embed_vision.embedding_projection.weight",
    "model.embed_audio.embedding_projection.weight",
};

static int is_multimodal_linear(const char *name)
{
    for (size_t i = 0; i < sizeof multimodal_linears / sizeof *multimodal_linears; i++)
        if (strcmp(name, multimodal_linears[i]) == 0)
            return 1;
    return 0;
}

static void add_output(g4q_plan_item *it, const char *suffix, g4q_dtype dt, int ndim,
                       const int64_t *shape, g4q_out_kind kind)
{
    g4q_plan_output *o = &it->out[it->n_out++];
    memset(o, 0, sizeof *o);
    if (kind == G4Q_OUT_COPY)
        snprintf(o->name, sizeof o->name, "%s", it->src->name);
    else
        snprintf(o->name, sizeof o->name, "%s.%s", it->module, suffix);
    o->dtype = dt;
    o->ndim = ndim;
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        o->shape[d] = shape[d];
        numel *= (uint64_t)shape[d];
    }
    o->nbytes = numel * g4q_dtype_size(dt);
    o->kind = kind;
}

/* The format a decision maps to under the recipe's export. */
static g4q_plan_format format_of(const g4q_recipe *r, const g4q_recipe_decision *d)
{
    int ct = r->export_format == G4Q_RECIPE_EXPORT_COMPRESSED_TENSORS;
    switch (d->weights) {
    case G4Q_RECIPE_W_NVFP4:
        return ct ? G4Q_PF_NVFP4_CT : G4Q_PF_NVFP4_MO;
    case G4Q_RECIPE_W_FP8:
        return G4Q_PF_FP8_TENSOR;
    case G4Q_RECIPE_W_FP8_BLOCK:
        return G4Q_PF_FP8_BLOCK;
    case G4Q_RECIPE_W_INT4:
        return ct ? G4Q_PF_INT4_CT : G4Q_PF_INT4_GPTQ;
    default:
        return G4Q_PF_KEEP;
    }
}

/* Shape rules of each format (formats.md §2.1, §4, §5); the error suggests an exclude. */
static g4q_status check_shape(g4q_ctx *ctx, const g4q_plan_item *it)
{
    int64_t out = it->src->shape[0], in = it->src->shape[1];
    const char *need = NULL;
    switch (it->format) {
    case G4Q_PF_NVFP4_MO:
    case G4Q_PF_NVFP4_CT:
        if (in % 16)
            need = "in_features % 16 == 0 (NVFP4 blocks of 16)";
        break;
    case G4Q_PF_FP8_BLOCK:
        if (in % 128 || out % 128)
            need = "out and in_features % 128 == 0 (vLLM refuses partial 128x128 blocks)";
        break;
    case G4Q_PF_INT4_GPTQ:
    case G4Q_PF_INT4_CT:
        if (in % 128 || out % 8)
            need = "in_features % 128 == 0 and out_features % 8 == 0 (INT4 groups of 128)";
        break;
    default:
        break;
    }
    if (need)
        return g4q_fail(ctx, G4Q_ERR_SHAPE,
                        "tensor '%s' [%lld, %lld]: %s needs %s\nhint: exclude '%s' in the recipe",
                        it->src->name, (long long)out, (long long)in,
                        g4q_plan_format_name(it->format), need, it->module);
    return G4Q_OK;
}

/* Appends the layout tensor lt of a weight [rows, cols] to the item's outputs: "<module>.<suffix>",
 * its written dtype and shape, its role as the output kind. */
static void add_layout_output(g4q_plan_item *it, const g4q_layout_tensor *lt, int64_t rows,
                              int64_t cols, int64_t group)
{
    int64_t shape[G4Q_LAYOUT_MAX_DIMS];
    int ndim = g4q_layout_shape(lt, rows, cols, group, shape);
    add_output(it, lt->suffix, lt->dtype, ndim, shape, (g4q_out_kind)lt->role);
}

/* Fills the outputs of one item (a quantized one: its layout's tensors, quant/layout.h, the input
 * scale only when its activations are quantized); marks calibration needs. */
static void plan_outputs(g4q_plan *p, g4q_plan_item *it)
{
    const g4q_tensor *t = it->src;
    const g4q_layout *l = g4q_layout_get((g4q_layout_format)it->format);
    if (!l)
        add_output(it, NULL, t->dtype, t->ndim, t->shape, G4Q_OUT_COPY);
    for (int k = 0; l && k < l->n; k++) {
        if (l->t[k].role == G4Q_LROLE_INPUT_SCALE && it->decision.act == G4Q_RECIPE_ACT_NONE)
            continue;
        add_layout_output(it, &l->t[k], t->shape[0], t->shape[1], l->group);
    }
    for (int i = 0; i < it->n_out; i++) {
        p->bytes_out += it->out[i].nbytes;
        if (it->out[i].kind == G4Q_OUT_INPUT_SCALE && !p->needs_calibration) {
            p->needs_calibration = 1;
            snprintf(p->calibration_reason, sizeof p->calibration_reason,
                     "'%s' is quantized with %s activations, whose input scale is a calibrated "
                     "amax", it->module, g4q_recipe_act_name(it->decision.act));
        }
    }
    const int site = g4q_calib_site_of_role(it->role);
    if (it->format != G4Q_PF_KEEP && it->decision.smooth != G4Q_RECIPE_SMOOTH_NONE &&
        site >= 0 && site != G4Q_OBS_O_IN) {
        p->smooth_sites |= 1u << site;
        if (!p->needs_calibration) {
            p->needs_calibration = 1;
            snprintf(p->calibration_reason, sizeof p->calibration_reason,
                     "'%s' is quantized with smoothing %s, whose factors come from its "
                     "calibration inputs",
                     it->module, g4q_recipe_smooth_name(it->decision.smooth));
        }
    }
    if (g4q_plan_item_needs_hessian(it))
        p->needs_hessians = 1;
    if (g4q_plan_item_needs_hessian(it) && !p->needs_calibration) {
        p->needs_calibration = 1;
        snprintf(p->calibration_reason, sizeof p->calibration_reason,
                 "'%s' is quantized with %s, which needs the Hessian of its calibration inputs",
                 it->module, g4q_plan_item_hessian_use(it));
    }
}

int g4q_plan_item_needs_hessian(const g4q_plan_item *it)
{
    return it->format != G4Q_PF_KEEP && (it->decision.algo == G4Q_RECIPE_ALGO_GPTQ ||
                                         it->decision.search == G4Q_RECIPE_SEARCH_IMATRIX ||
                                         it->decision.search == G4Q_RECIPE_SEARCH_HESSIAN);
}

int g4q_plan_item_weight_outputs(const g4q_plan_item *it)
{
    int n = 0;
    while (n < it->n_out && !g4q_layout_role_calibrated((int)it->out[n].kind))
        n++;
    return n;
}

int g4q_plan_item_hessian_block(const g4q_plan_item *it)
{
    if (!g4q_plan_item_needs_hessian(it) || it->decision.algo == G4Q_RECIPE_ALGO_GPTQ) return 0;
    if (it->decision.search == G4Q_RECIPE_SEARCH_IMATRIX) return 1;
    switch (it->format) {
    case G4Q_PF_NVFP4_MO: return G4Q_NVFP4_BLOCK;
    case G4Q_PF_FP8_BLOCK: return G4Q_FP8_BLOCK;
    case G4Q_PF_INT4_GPTQ:
    case G4Q_PF_INT4_CT: return g4q_layout_get((g4q_layout_format)it->format)->group;
    default: return 0;
    }
}

const char *g4q_plan_item_hessian_use(const g4q_plan_item *it)
{
    if (it->decision.algo == G4Q_RECIPE_ALGO_GPTQ) return "algorithm gptq";
    if (it->decision.search == G4Q_RECIPE_SEARCH_IMATRIX) return "scale_search imatrix";
    if (it->decision.search == G4Q_RECIPE_SEARCH_HESSIAN) return "scale_search hessian";
    return "no Hessian";
}

/* The quantized Linears that read one input (q/k/v, gate/up) are smoothed together or not at all:
 * the factors are folded into the one tensor before them. */
static g4q_status check_smoothing(g4q_ctx *ctx, const g4q_plan *p)
{
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *a = &p->items[i];
        const int site = g4q_calib_site_of_role(a->role);
        if (a->format == G4Q_PF_KEEP || site < 0 || !(p->smooth_sites >> site & 1u)) continue;
        for (size_t j = i + 1; j < p->n_items; j++) {
            const g4q_plan_item *b = &p->items[j];
            if (b->format != G4Q_PF_KEEP && b->layer == a->layer &&
                g4q_calib_site_of_role(b->role) == site && b->decision.smooth != a->decision.smooth)
                return g4q_fail(ctx, G4Q_ERR_INVALID,
                                "'%s' (smoothing %s) and '%s' (smoothing %s) read the same input, "
                                "so they are smoothed together: give them the same smoothing",
                                a->module, g4q_recipe_smooth_name(a->decision.smooth), b->module,
                                g4q_recipe_smooth_name(b->decision.smooth));
        }
    }
    return G4Q_OK;
}

/* Fused groups: members must agree on the format (vLLM loads them as one Linear), and NVFP4
 * members share one global amax. */
static g4q_status build_groups(g4q_ctx *ctx, const g4q_config *cfg, g4q_plan *p, int *item_of_role)
{
    p->groups = calloc((size_t)cfg->n_layers * 2, sizeof *p->groups);
    if (!p->groups)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory planning groups");
    for (int l = 0; l < cfg->n_layers; l++) {
        g4q_linear lin[G4Q_MAX_LAYER_LINEARS];
        int nl = g4q_weights_layer_linears(cfg, l, lin);
        for (int gid = G4Q_GROUP_QKV; gid <= G4Q_GROUP_GATE_UP; gid++) {
            g4q_plan_group g = {.layer = l, .name = NULL, .n_members = 0};
            for (int i = 0; i < nl; i++) {
                if ((int)lin[i].group != gid)
                    continue;
                int idx = item_of_role[l * G4Q_W_ROLE_COUNT + lin[i].role];
                if (idx < 0)
                    continue;
                g.name = lin[i].group_name;
                g.members[g.n_members++] = idx;
            }
            if (g.n_members < 2)
                continue;
            const g4q_plan_item *first = &p->items[g.members[0]];
            for (int m = 1; m < g.n_members; m++) {
                const g4q_plan_item *it = &p->items[g.members[m]];
                if (it->format != first->format || it->decision.act != first->decision.act)
                    return g4q_fail(ctx, G4Q_ERR_INVALID,
                                    "layer %d: fused group %s mixes formats: '%s' is %s, '%s' is "
                                    "%s; engines load the group as one Linear, so its members "
                                    "must be quantized alike",
                                    l, g.name, first->module, g4q_plan_format_name(first->format),
                                    it->module, g4q_plan_format_name(it->format));
            }
            if (first->format != G4Q_PF_NVFP4_MO && first->format != G4Q_PF_NVFP4_CT)
                continue;
            for (int m = 0; m < g.n_members; m++)
                p->items[g.members[m]].group = (int)p->n_groups;
            p->groups[p->n_groups++] = g;
        }
    }
    return G4Q_OK;
}

/* KV scales (§7): F32 [] k_scale and v_scale per layer, appended to the layer's k_proj item. */
static g4q_status plan_kv_scales(g4q_ctx *ctx, const g4q_config *cfg, g4q_plan *p,
                                 const int *item_of_role)
{
    for (int l = 0; l < cfg->n_layers; l++) {
        int idx = item_of_role[l * G4Q_W_ROLE_COUNT + G4Q_W_K_PROJ];
        if (idx < 0)
            return g4q_fail(ctx, G4Q_ERR_SHAPE, "layer %d: no k_proj to carry the KV scales", l);
        g4q_plan_item *it = &p->items[idx];
        if (it->n_out + 2 > G4Q_PLAN_MAX_OUTPUTS || !it->module[0])
            return g4q_fail(ctx, G4Q_ERR_INTERNAL, "'%s': no room for KV scales", it->src->name);
        const g4q_layout_kv *k = g4q_layout_kv_get(0), *v = g4q_layout_kv_get(1);
        size_t len = strlen(it->module), kl = strlen(k->proj);
        if (len < kl || strcmp(it->module + len - kl, k->proj) != 0)
            return g4q_fail(ctx, G4Q_ERR_INTERNAL, "'%s': not a %s", it->module, k->proj);
        add_layout_output(it, &k->t, 0, 0, 0);
        g4q_plan_output *vo = &it->out[it->n_out];
        add_layout_output(it, &v->t, 0, 0, 0);
        /* "...self_attn.k_proj" -> "...self_attn.v_proj.v_scale" (also where v_proj is absent). */
        snprintf(vo->name, sizeof vo->name, "%.*s%s.%s", (int)(len - kl), it->module, v->proj,
                 v->t.suffix);
        p->bytes_out += it->out[it->n_out - 2].nbytes + vo->nbytes;
    }
    return G4Q_OK;
}

/* Module name of a Linear weight tensor: its name without ".weight". */
static void module_of(const char *tensor_name, char *buf, size_t n)
{
    snprintf(buf, n, "%s", tensor_name);
    size_t len = strlen(buf);
    if (len > 7 && strcmp(buf + len - 7, ".weight") == 0)
        buf[len - 7] = '\0';
}

g4q_status g4q_plan_build(g4q_ctx *ctx, const g4q_recipe *recipe, const g4q_config *cfg,
                          const g4q_weights *w, const g4q_tensor *tensors, size_t n,
                          g4q_plan *out)
{
    memset(out, 0, sizeof *out);
    out->recipe = recipe;
    out->items = calloc(n ? n : 1, sizeof *out->items);
    int *item_of_role = malloc((size_t)cfg->n_layers * G4Q_W_ROLE_COUNT * sizeof *item_of_role);
    const char **candidates = calloc(n ? n : 1, sizeof *candidates);
    g4q_status st = G4Q_OK;
    if (!out->items || !item_of_role || !candidates) {
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory planning %zu tensors", n);
        goto done;
    }
    for (int i = 0; i < cfg->n_layers * G4Q_W_ROLE_COUNT; i++)
        item_of_role[i] = -1;
    out->n_items = n;
    for (size_t i = 0; i < n; i++) {
        if (strlen(tensors[i].name) >= G4Q_PLAN_MODULE_MAX) {
            st = g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "tensor '%.60s...': name longer than %d bytes",
                          tensors[i].name, G4Q_PLAN_MODULE_MAX - 1);
            goto done;
        }
        out->items[i].src = &tensors[i];
        out->items[i].layer = -1;
        out->items[i].role = G4Q_W_MULTIMODAL;
        out->items[i].group = -1;
        out->items[i].decision.rule = -1;
        out->items[i].decision.exclude = -1;
    }
    /* Mark decoder-layer tensors with their layer and role. */
    for (int l = 0; l < cfg->n_layers; l++)
        for (int r = 0; r < G4Q_LAYER_ROLES; r++) {
            const g4q_tensor *t = g4q_weights_get(w, l, (g4q_weight_role)r);
            if (!t)
                continue;
            size_t idx = (size_t)(t - tensors);
            out->items[idx].layer = l;
            out->items[idx].role = (g4q_weight_role)r;
            item_of_role[l * G4Q_W_ROLE_COUNT + r] = (int)idx;
        }
    /* Candidates: decoder Linears and multimodal Linears. */
    size_t n_cand = 0;
    for (size_t i = 0; i < n; i++) {
        g4q_plan_item *it = &out->items[i];
        int linear = (it->layer >= 0 && it->role >= G4Q_W_Q_PROJ && it->role <= G4Q_W_DOWN_PROJ &&
                      it->role != G4Q_W_Q_NORM && it->role != G4Q_W_K_NORM) ||
                     is_multimodal_linear(it->src->name);
        if (!linear || it->src->ndim != 2)
            continue;
        module_of(it->src->name, it->module, sizeof it->module);
        candidates[n_cand++] = it->module;
    }
    st = g4q_recipe_check_patterns(ctx, recipe, candidates, n_cand);
    if (st != G4Q_OK)
        goto done;
    for (size_t i = 0; i < n && st == G4Q_OK; i++) {
        g4q_plan_item *it = &out->items[i];
        out->bytes_in += it->src->nbytes;
        if (it->module[0]) {
            it->decision = g4q_recipe_match(recipe, it->module);
            it->format = format_of(recipe, &it->decision);
            st = check_shape(ctx, it);
            if (st != G4Q_OK)
                break;
            if (it->format == G4Q_PF_KEEP)
                st = g4q_strlist_push(ctx, &out->unquantized, it->module);
            else {
                st = g4q_strlist_push(ctx, &out->quantized, it->module);
                out->n_quantized++;
            }
        }
        plan_outputs(out, it);
    }
    if (st == G4Q_OK)
        st = g4q_strlist_push(ctx, &out->unquantized, "lm_head");
    if (st == G4Q_OK)
        st = build_groups(ctx, cfg, out, item_of_role);
    if (st == G4Q_OK)
        st = check_smoothing(ctx, out);
    if (st == G4Q_OK && recipe->kv_format == G4Q_RECIPE_KV_FP8 &&
        recipe->kv_scales == G4Q_RECIPE_KV_SCALES_CALIBRATED) {
        st = plan_kv_scales(ctx, cfg, out, item_of_role);
        if (st == G4Q_OK && !out->needs_calibration) {
            out->needs_calibration = 1;
            snprintf(out->calibration_reason, sizeof out->calibration_reason,
                     "kv_cache.scales is 'calibrated': k_scale/v_scale are amaxes observed at "
                     "the cache-write point");
        }
    }
done:
    free(item_of_role);
    free(candidates);
    if (st != G4Q_OK)
        g4q_plan_free(out);
    return st;
}

void g4q_plan_free(g4q_plan *p)
{
    if (!p)
        return;
    free(p->items);
    free(p->groups);
    g4q_strlist_free(&p->quantized);
    g4q_strlist_free(&p->unquantized);
    memset(p, 0, sizeof *p);
}

void g4q_plan_print(const g4q_plan *p, FILE *f)
{
    fprintf(f, "%-64s %-10s %-8s %14s %14s\n", "tensor", "format", "search", "bytes in",
            "bytes out");
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *it = &p->items[i];
        uint64_t bo = 0;
        for (int k = 0; k < it->n_out; k++)
            bo += it->out[k].nbytes;
        const char *search =
            it->format == G4Q_PF_KEEP ? "-" : g4q_recipe_search_name(it->decision.search);
        fprintf(f, "%-64s %-10s %-8s %14llu %14llu\n", it->src->name,
                g4q_plan_format_name(it->format), search, (unsigned long long)it->src->nbytes,
                (unsigned long long)bo);
        for (int k = 0; it->format != G4Q_PF_KEEP && k < it->n_out; k++) {
            char shape[64] = "[";
            for (int d = 0; d < it->out[k].ndim; d++) {
                size_t used = strlen(shape);
                snprintf(shape + used, sizeof shape - used, "%s%lld", d ? ", " : "",
                         (long long)it->out[k].shape[d]);
            }
            strncat(shape, "]", sizeof shape - strlen(shape) - 1);
            fprintf(f, "    -> %-57s %-10s %-8s %14s %14llu\n", it->out[k].name,
                    g4q_dtype_name(it->out[k].dtype), shape, "",
                    (unsigned long long)it->out[k].nbytes);
        }
    }
    fprintf(f, "total: %zu tensors, %zu Linear modules quantized, %zu kept BF16 (lm_head included); "
               "%llu bytes in -> %llu bytes out (%.2fx smaller)\n",
            p->n_items, p->n_quantized, p->unquantized.count, (unsigned long long)p->bytes_in,
            (unsigned long long)p->bytes_out,
            p->bytes_out ? (double)p->bytes_in / (double)p->bytes_out : 0.0);
    if (p->needs_calibration)
        fprintf(f, "needs calibration: %s\n", p->calibration_reason);
}

cJSON *g4q_plan_to_cjson(const g4q_plan *p)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *it = &p->items[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", it->src->name);
        cJSON_AddStringToObject(o, "format", g4q_plan_format_name(it->format));
        if (it->format != G4Q_PF_KEEP)
            cJSON_AddStringToObject(o, "scale_search", g4q_recipe_search_name(it->decision.search));
        if (it->decision.algo != G4Q_RECIPE_ALGO_RTN) /* rtn: absent, as before gptq existed */
            cJSON_AddStringToObject(o, "algorithm", g4q_recipe_algo_name(it->decision.algo));
        if (it->format != G4Q_PF_KEEP && it->decision.smooth != G4Q_RECIPE_SMOOTH_NONE &&
            it->role != G4Q_W_O_PROJ) /* none: absent; o_proj is never smoothed (plan.h) */
            cJSON_AddStringToObject(o, "smoothing", g4q_recipe_smooth_name(it->decision.smooth));
        cJSON_AddNumberToObject(o, "bytes_in", (double)it->src->nbytes);
        cJSON *outs = cJSON_AddArrayToObject(o, "outputs");
        for (int k = 0; k < it->n_out; k++) {
            cJSON *oo = cJSON_CreateObject();
            cJSON_AddStringToObject(oo, "name", it->out[k].name);
            cJSON_AddStringToObject(oo, "dtype", g4q_dtype_name(it->out[k].dtype));
            cJSON *shape = cJSON_AddArrayToObject(oo, "shape");
            for (int d = 0; d < it->out[k].ndim; d++)
                cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)it->out[k].shape[d]));
            cJSON_AddNumberToObject(oo, "bytes", (double)it->out[k].nbytes);
            cJSON_AddItemToArray(outs, oo);
        }
        cJSON_AddItemToArray(arr, o);
    }
    cJSON_AddNumberToObject(root, "bytes_in", (double)p->bytes_in);
    cJSON_AddNumberToObject(root, "bytes_out", (double)p->bytes_out);
    cJSON_AddNumberToObject(root, "quantized_modules", (double)p->n_quantized);
    cJSON_AddBoolToObject(root, "needs_calibration", p->needs_calibration);
    return root;
}
