#include "export/configs.h"

#include <stdlib.h>
#include <string.h>

#include "base/sys.h"
#include "export/excludes.h"
#include "io/json_write.h"

/* The single quantized format of the plan (recipes with several are MIXED_PRECISION, which is
 * not written yet), and whether activations are quantized. */
static g4q_status plan_format(g4q_ctx *ctx, const g4q_plan *p, g4q_plan_format *fmt, int *act)
{
    *fmt = G4Q_PF_KEEP;
    *act = 0;
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *it = &p->items[i];
        if (it->format == G4Q_PF_KEEP)
            continue;
        int a = it->decision.act != G4Q_RECIPE_ACT_NONE;
        if (*fmt != G4Q_PF_KEEP && (*fmt != it->format || *act != a))
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "recipe '%s' mixes quantization formats (ModelOpt MIXED_PRECISION); "
                            "writing that export is not supported yet",
                            p->recipe->name);
        *fmt = it->format;
        *act = a;
    }
    if (*fmt == G4Q_PF_KEEP)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "recipe '%s' quantizes nothing", p->recipe->name);
    return G4Q_OK;
}

static const char *modelopt_algo(g4q_plan_format fmt, int act)
{
    switch (fmt) {
    case G4Q_PF_NVFP4_MO:
        return act ? "NVFP4" : "W4A16_NVFP4";
    case G4Q_PF_FP8_TENSOR:
        return "FP8";
    case G4Q_PF_FP8_BLOCK:
        return "fp8_pb_wo";
    default:
        return NULL;
    }
}

static cJSON *string_array(const g4q_strlist *l)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < l->count; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(l->items[i]));
    return a;
}

static cJSON *producer(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", "gemma4q");
    cJSON_AddStringToObject(o, "version", G4Q_VERSION);
    return o;
}

static cJSON *float_quant_args(int bits, int group)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "dynamic", 0);
    cJSON_AddNumberToObject(o, "num_bits", bits);
    cJSON_AddStringToObject(o, "type", "float");
    if (group)
        cJSON_AddNumberToObject(o, "group_size", group);
    return o;
}

/* ModelOpt's exclude list for this plan, checked against vLLM's matching rules. */
static g4q_status modelopt_excludes(g4q_ctx *ctx, const g4q_plan *p, g4q_strlist *ex)
{
    const char *const *u = (const char *const *)p->unquantized.items;
    const char *const *q = (const char *const *)p->quantized.items;
    G4Q_TRY(g4q_excludes_summarise(ctx, u, p->unquantized.count, q, p->quantized.count, ex));
    return g4q_excludes_verify(ctx, ex, u, p->unquantized.count, q, p->quantized.count);
}

static int kv_fp8(const g4q_plan *p)
{
    return p->recipe->kv_format == G4Q_RECIPE_KV_FP8;
}

static g4q_status modelopt_quant_config(g4q_ctx *ctx, const g4q_plan *p, g4q_plan_format fmt,
                                        int act, cJSON *qc)
{
    g4q_strlist ex = {0};
    G4Q_TRY(modelopt_excludes(ctx, p, &ex));
    if (fmt == G4Q_PF_NVFP4_MO || fmt == G4Q_PF_FP8_TENSOR) {
        int nvfp4 = fmt == G4Q_PF_NVFP4_MO;
        cJSON *groups = cJSON_AddObjectToObject(qc, "config_groups");
        cJSON *g0 = cJSON_AddObjectToObject(groups, "group_0");
        if (act)
            cJSON_AddItemToObject(g0, "input_activations",
                                  float_quant_args(nvfp4 ? 4 : 8, nvfp4 ? 16 : 0));
        cJSON_AddItemToObject(g0, "weights", float_quant_args(nvfp4 ? 4 : 8, nvfp4 ? 16 : 0));
        cJSON *targets = cJSON_AddArrayToObject(g0, "targets");
        cJSON_AddItemToArray(targets, cJSON_CreateString("Linear"));
    }
    cJSON_AddItemToObject(qc, "ignore", string_array(&ex));
    cJSON_AddStringToObject(qc, "quant_algo", modelopt_algo(fmt, act));
    if (kv_fp8(p))
        cJSON_AddItemToObject(qc, "kv_cache_scheme", float_quant_args(8, 0));
    cJSON_AddItemToObject(qc, "producer", producer());
    cJSON_AddStringToObject(qc, "quant_method", "modelopt");
    g4q_strlist_free(&ex);
    return G4Q_OK;
}

/* The decoder layer N when `module` is "<prefix>layers.N.self_attn.<proj>", else -1. */
static int self_attn_layer(const g4q_config *cfg, const char *module, const char *proj)
{
    size_t pl = strlen(cfg->prefix);
    if (strncmp(module, cfg->prefix, pl) != 0 || strncmp(module + pl, "layers.", 7) != 0)
        return -1;
    const char *digits = module + pl + 7;
    if (*digits < '0' || *digits > '9')
        return -1;
    char *end;
    long layer = strtol(digits, &end, 10);
    if (layer >= cfg->n_layers || strncmp(end, ".self_attn.", 11) != 0 || strcmp(end + 11, proj))
        return -1;
    return (int)layer;
}

/* compressed-tensors ignore list (formats.md §5.3, §6): every BF16 Linear by exact name, in plan
 * order, then lm_head. vLLM decides a fused qkv_proj by looking up all three shard names, so a
 * k_eq_v layer's v_proj, which has no tensor, is listed right after its q_proj whenever q_proj
 * (and so k_proj: the plan quantizes fused groups alike) stays BF16, and never otherwise. */
static g4q_status ct_ignore(g4q_ctx *ctx, const g4q_plan *p, const g4q_config *cfg,
                            g4q_strlist *ignore)
{
    for (size_t i = 0; i < p->unquantized.count; i++) {
        const char *m = p->unquantized.items[i];
        G4Q_TRY(g4q_strlist_push(ctx, ignore, m));
        int layer = self_attn_layer(cfg, m, "q_proj");
        if (layer >= 0 && !cfg->layers[layer].has_v_proj)
            G4Q_TRY(g4q_strlist_pushf(ctx, ignore, "%slayers.%d.self_attn.v_proj", cfg->prefix,
                                      layer));
    }
    return G4Q_OK;
}

static g4q_status ct_quant_config(g4q_ctx *ctx, const g4q_plan *p, const g4q_config *cfg,
                                  g4q_plan_format fmt, int act, cJSON *qc)
{
    g4q_strlist ignore = {0};
    g4q_status st = ct_ignore(ctx, p, cfg, &ignore);
    if (st != G4Q_OK) {
        g4q_strlist_free(&ignore);
        return st;
    }
    int nvfp4 = fmt == G4Q_PF_NVFP4_CT;
    cJSON *groups = cJSON_AddObjectToObject(qc, "config_groups");
    cJSON *g0 = cJSON_AddObjectToObject(groups, "group_0");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(g0, "targets"), cJSON_CreateString("Linear"));
    cJSON *w = cJSON_AddObjectToObject(g0, "weights");
    cJSON_AddNumberToObject(w, "num_bits", 4);
    cJSON_AddStringToObject(w, "type", nvfp4 ? "float" : "int");
    cJSON_AddStringToObject(w, "strategy", nvfp4 ? "tensor_group" : "group");
    cJSON_AddNumberToObject(w, "group_size", nvfp4 ? 16 : 128);
    cJSON_AddBoolToObject(w, "symmetric", 1);
    cJSON_AddBoolToObject(w, "dynamic", 0);
    if (nvfp4)
        cJSON_AddStringToObject(w, "scale_dtype", "torch.float8_e4m3fn");
    if (act && nvfp4) {
        cJSON *a = cJSON_AddObjectToObject(g0, "input_activations");
        cJSON_AddNumberToObject(a, "num_bits", 4);
        cJSON_AddStringToObject(a, "type", "float");
        cJSON_AddStringToObject(a, "strategy", "tensor_group");
        cJSON_AddNumberToObject(a, "group_size", 16);
        cJSON_AddBoolToObject(a, "symmetric", 1);
        cJSON_AddStringToObject(a, "dynamic", "local");
    } else {
        cJSON_AddNullToObject(g0, "input_activations");
    }
    cJSON_AddNullToObject(g0, "output_activations");
    cJSON_AddStringToObject(qc, "quant_method", "compressed-tensors");
    cJSON_AddStringToObject(qc, "format", nvfp4 ? "nvfp4-pack-quantized" : "pack-quantized");
    cJSON_AddStringToObject(qc, "quantization_status", "compressed");
    cJSON_AddNullToObject(qc, "kv_cache_scheme");
    cJSON_AddItemToObject(qc, "ignore", string_array(&ignore));
    cJSON_AddItemToObject(qc, "producer", producer());
    g4q_strlist_free(&ignore);
    return G4Q_OK;
}

/* GPTQ's modules_in_block_to_quantize: the quantized module suffixes within a layer ("mlp.up_proj"),
 * which vLLM matches as substrings of every layer's modules; so the same set must be quantized in
 * every layer and nothing else may contain one of them. */
static g4q_status gptq_modules(g4q_ctx *ctx, const g4q_plan *p, const g4q_config *cfg,
                               g4q_strlist *mods)
{
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *it = &p->items[i];
        if (it->format == G4Q_PF_KEEP)
            continue;
        if (it->layer < 0)
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "'%s': GPTQ exports quantize decoder-layer modules only", it->module);
        const char *dot = strstr(it->module, "layers.");
        dot = dot ? strchr(dot + 7, '.') : NULL;
        if (!dot)
            return g4q_fail(ctx, G4Q_ERR_INTERNAL, "'%s': not a layer module", it->module);
        if (!g4q_strlist_contains(mods, dot + 1))
            G4Q_TRY(g4q_strlist_push(ctx, mods, dot + 1));
    }
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *it = &p->items[i];
        if (!it->module[0])
            continue;
        int quantized = it->format != G4Q_PF_KEEP;
        for (size_t m = 0; m < mods->count; m++)
            if (strstr(it->module, mods->items[m]) && !quantized)
                return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                                "'%s' is kept BF16, but GPTQ's modules_in_block_to_quantize entry "
                                "'%s' would make vLLM load it as quantized; quantize the same "
                                "modules in every layer",
                                it->module, mods->items[m]);
    }
    (void)cfg;
    return G4Q_OK;
}

static g4q_status gptq_quant_config(g4q_ctx *ctx, const g4q_plan *p, const g4q_config *cfg,
                                    cJSON *qc)
{
    g4q_strlist mods = {0};
    G4Q_TRY(gptq_modules(ctx, p, cfg, &mods));
    cJSON_AddNumberToObject(qc, "bits", 4);
    cJSON_AddNumberToObject(qc, "group_size", 128);
    cJSON_AddBoolToObject(qc, "sym", 1);
    cJSON_AddBoolToObject(qc, "desc_act", 0);
    cJSON_AddBoolToObject(qc, "lm_head", 0);
    cJSON_AddBoolToObject(qc, "true_sequential", 1);
    cJSON_AddStringToObject(qc, "quant_method", "gptq");
    cJSON_AddStringToObject(qc, "checkpoint_format", "gptq");
    char block[64];
    snprintf(block, sizeof block, "%slayers", cfg->prefix);
    cJSON_AddStringToObject(qc, "block_name_to_quantize", block);
    cJSON *outer = cJSON_AddArrayToObject(qc, "modules_in_block_to_quantize");
    cJSON_AddItemToArray(outer, string_array(&mods));
    cJSON_AddItemToObject(qc, "producer", producer());
    g4q_strlist_free(&mods);
    return G4Q_OK;
}

g4q_status g4q_export_quant_config(g4q_ctx *ctx, const g4q_plan *p, const g4q_config *cfg,
                                   cJSON **out)
{
    g4q_plan_format fmt;
    int act;
    *out = NULL;
    G4Q_TRY(plan_format(ctx, p, &fmt, &act));
    cJSON *qc = cJSON_CreateObject();
    g4q_status st = G4Q_OK;
    switch (p->recipe->export_format) {
    case G4Q_RECIPE_EXPORT_MODELOPT:
        st = modelopt_quant_config(ctx, p, fmt, act, qc);
        break;
    case G4Q_RECIPE_EXPORT_COMPRESSED_TENSORS:
        st = ct_quant_config(ctx, p, cfg, fmt, act, qc);
        break;
    case G4Q_RECIPE_EXPORT_GPTQ:
        st = gptq_quant_config(ctx, p, cfg, qc);
        break;
    default:
        st = g4q_fail(ctx, G4Q_ERR_INTERNAL, "unknown export format");
    }
    if (st != G4Q_OK) {
        cJSON_Delete(qc);
        return st;
    }
    *out = qc;
    return G4Q_OK;
}

g4q_status g4q_export_hf_quant_config(g4q_ctx *ctx, const g4q_plan *p, cJSON **out)
{
    *out = NULL;
    if (p->recipe->export_format != G4Q_RECIPE_EXPORT_MODELOPT)
        return G4Q_OK;
    g4q_plan_format fmt;
    int act;
    G4Q_TRY(plan_format(ctx, p, &fmt, &act));
    g4q_strlist ex = {0};
    G4Q_TRY(modelopt_excludes(ctx, p, &ex));
    cJSON *root = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "producer", producer());
    cJSON *q = cJSON_AddObjectToObject(root, "quantization");
    cJSON_AddStringToObject(q, "quant_algo", modelopt_algo(fmt, act));
    if (kv_fp8(p))
        cJSON_AddStringToObject(q, "kv_cache_quant_algo", "FP8");
    else
        cJSON_AddNullToObject(q, "kv_cache_quant_algo");
    if (fmt == G4Q_PF_NVFP4_MO)
        cJSON_AddNumberToObject(q, "group_size", 16);
    cJSON_AddItemToObject(q, "exclude_modules", string_array(&ex));
    g4q_strlist_free(&ex);
    *out = root;
    return G4Q_OK;
}

g4q_status g4q_export_write_configs(g4q_ctx *ctx, const g4q_plan *p, const g4q_config *cfg,
                                    const char *input_config_json, const g4q_outdir *od)
{
    cJSON *qc = NULL, *hf = NULL;
    char *text = NULL, path[4096];
    g4q_status st = g4q_export_quant_config(ctx, p, cfg, &qc);
    if (st == G4Q_OK)
        st = g4q_json_append_member(ctx, "config.json", input_config_json, "quantization_config",
                                    qc, 2, &text);
    if (st == G4Q_OK)
        st = g4q_outdir_path(ctx, od, "config.json", path, sizeof path);
    if (st == G4Q_OK)
        st = g4q_write_file(ctx, path, text, strlen(text));
    if (st == G4Q_OK)
        st = g4q_export_hf_quant_config(ctx, p, &hf);
    if (st == G4Q_OK && hf) {
        st = g4q_outdir_path(ctx, od, "hf_quant_config.json", path, sizeof path);
        if (st == G4Q_OK)
            st = g4q_json_write_file(ctx, path, hf, 4);
    }
    if (st == G4Q_OK && p->recipe->export_format == G4Q_RECIPE_EXPORT_GPTQ) {
        st = g4q_outdir_path(ctx, od, "quantize_config.json", path, sizeof path);
        if (st == G4Q_OK)
            st = g4q_json_write_file(ctx, path, qc, 2);
    }
    free(text);
    cJSON_Delete(qc);
    cJSON_Delete(hf);
    return st;
}
