/* Export checker, JSON side: format detection, required keys, agreement between the files, and
 * the coverage of exclude_modules / ignore / modules_in_block_to_quantize (formats.md §5.2, §5.3,
 * §6, §8, §9.1). */
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/strlist.h"
#include "export/check_internal.h"
#include "export/excludes.h"

static const cJSON *member(const cJSON *o, const char *key)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *member_string(const cJSON *o, const char *key)
{
    const cJSON *v = member(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Checks o[key] is present and a string equal to want (case-insensitively when ci). */
static void expect_string(g4q_check_state *s, const char *file, const cJSON *o, const char *key,
                          const char *want, int ci)
{
    char item[G4Q_CHECK_ITEM_MAX];
    snprintf(item, sizeof item, "%s:%s", file, key);
    const char *v = member_string(o, key);
    g4q_check_expect(s, v && (ci ? strcasecmp(v, want) : strcmp(v, want)) == 0, item, "json-key",
                     "expected \"%s\", found %s%s%s", want, v ? "\"" : "", v ? v : "nothing or a non-string",
                     v ? "\"" : "");
}

static void expect_number(g4q_check_state *s, const char *file, const cJSON *o, const char *key,
                          double want)
{
    char item[G4Q_CHECK_ITEM_MAX];
    snprintf(item, sizeof item, "%s:%s", file, key);
    const cJSON *v = member(o, key);
    if (!cJSON_IsNumber(v))
        g4q_check_expect(s, 0, item, "json-key", "expected the number %g, found %s", want,
                         v ? "a non-number" : "nothing");
    else
        g4q_check_expect(s, v->valuedouble == want, item, "json-key", "expected %g, found %g", want,
                         v->valuedouble);
}

static void expect_bool(g4q_check_state *s, const char *file, const cJSON *o, const char *key,
                        int want, int optional)
{
    char item[G4Q_CHECK_ITEM_MAX];
    snprintf(item, sizeof item, "%s:%s", file, key);
    const cJSON *v = member(o, key);
    if (!v && optional)
        return;
    g4q_check_expect(s, cJSON_IsBool(v) && cJSON_IsTrue(v) == want, item, "json-key",
                     "expected %s, found %s", want ? "true" : "false",
                     !v ? "nothing" : !cJSON_IsBool(v) ? "a non-boolean"
                                      : cJSON_IsTrue(v) ? "true" : "false");
}

static int string_array(const cJSON *a)
{
    if (!cJSON_IsArray(a))
        return 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a) if (!cJSON_IsString(e)) return 0;
    return 1;
}

/* config_groups.group_0.weights (and input_activations) of a ModelOpt NVFP4/FP8 config. */
static void modelopt_groups(g4q_check_state *s, const cJSON *qc)
{
    const char *f = "config.json:quantization_config";
    const cJSON *groups = member(qc, "config_groups");
    if (s->fmt == G4Q_CHECK_FMT_MO_FP8_PB_WO) {
        g4q_check_expect(s, groups == NULL, "config.json:quantization_config.config_groups",
                         "json-key", "fp8_pb_wo has no config_groups (consumers hard-code 128x128)");
        return;
    }
    const cJSON *g0 = member(groups, "group_0");
    if (!g4q_check_expect(s, cJSON_IsObject(g0), "config.json:config_groups.group_0", "json-key",
                          "missing"))
        return;
    int nvfp4 = s->fmt != G4Q_CHECK_FMT_MO_FP8;
    const cJSON *w = member(g0, "weights");
    expect_number(s, f, w, "num_bits", nvfp4 ? 4 : 8);
    expect_string(s, f, w, "type", "float", 0);
    if (nvfp4)
        expect_number(s, f, w, "group_size", 16);
    const cJSON *a = member(g0, "input_activations");
    g4q_check_expect(s, (a && !cJSON_IsNull(a)) == (s->act != 0),
                     "config.json:config_groups.group_0.input_activations", "json-key",
                     s->act ? "missing (the algorithm quantizes activations)"
                            : "present, but the algorithm is weight-only");
}

static void detect_modelopt(g4q_check_state *s, const cJSON *qc)
{
    const char *hfn = "hf_quant_config.json";
    const cJSON *hq = member(s->in->hf_quant, "quantization");
    if (!g4q_check_expect(s, s->in->hf_quant != NULL, hfn, "json-file",
                          "missing: ModelOpt exports write hf_quant_config.json (vLLM reads it "
                          "first)") ||
        !g4q_check_expect(s, cJSON_IsObject(hq), "hf_quant_config.json:quantization", "json-key",
                          "missing or not an object"))
        hq = qc; /* fall back on config.json's facts */
    const char *algo = member_string(hq, "quant_algo");
    static const char *const vllm_algos[] = {"FP8", "FP8_PER_CHANNEL_PER_TOKEN", "FP8_PB_WO",
                                             "NVFP4", "W4A16_NVFP4", "MXFP8", "MIXED_PRECISION"};
    int known = 0;
    for (size_t i = 0; algo && i < sizeof vllm_algos / sizeof *vllm_algos; i++)
        known |= strcasecmp(algo, vllm_algos[i]) == 0;
    if (!g4q_check_expect(s, known, "hf_quant_config.json:quant_algo", "json-key",
                          "%s%s%s is not one vLLM's ModelOpt loader accepts", algo ? "\"" : "",
                          algo ? algo : "missing", algo ? "\"" : ""))
        return;
    if (strcasecmp(algo, "NVFP4") == 0)
        s->fmt = G4Q_CHECK_FMT_MO_NVFP4, s->act = 1;
    else if (strcasecmp(algo, "W4A16_NVFP4") == 0)
        s->fmt = G4Q_CHECK_FMT_MO_W4A16_NVFP4;
    else if (strcasecmp(algo, "FP8") == 0)
        s->fmt = G4Q_CHECK_FMT_MO_FP8, s->act = 1;
    else if (strcasecmp(algo, "FP8_PB_WO") == 0)
        s->fmt = G4Q_CHECK_FMT_MO_FP8_PB_WO;
    else {
        g4q_check_add(s, "hf_quant_config.json:quant_algo", "format",
                      "\"%s\" is valid for vLLM but not verified by this checker", algo);
        return;
    }
    const cJSON *kv = member(hq, "kv_cache_quant_algo");
    g4q_check_expect(s, kv && (cJSON_IsNull(kv) || cJSON_IsString(kv)),
                     "hf_quant_config.json:kv_cache_quant_algo", "json-key",
                     "must be present: \"FP8\" or null (vLLM requires the key)");
    s->kv_fp8 = cJSON_IsString(kv) && strcasecmp(kv->valuestring, "FP8") == 0;
    int nvfp4 = s->fmt == G4Q_CHECK_FMT_MO_NVFP4 || s->fmt == G4Q_CHECK_FMT_MO_W4A16_NVFP4;
    if (nvfp4)
        expect_number(s, hfn, hq, "group_size", 16);
    const cJSON *ex = member(hq, "exclude_modules");
    g4q_check_expect(s, string_array(ex), "hf_quant_config.json:exclude_modules", "json-key",
                     "must be present as a list of strings");
    /* config.json's quantization_config states the same facts. */
    const char *cf = "config.json:quantization_config";
    if (!g4q_check_expect(s, cJSON_IsObject(qc), cf, "json-key",
                          "missing: ModelOpt exports also write config.json quantization_config"))
        return;
    if (qc == hq)
        return;
    expect_string(s, cf, qc, "quant_method", "modelopt", 0);
    expect_string(s, cf, qc, "quant_algo", algo, 0);
    g4q_check_expect(s, cJSON_Compare(member(qc, "ignore"), ex, 1),
                     "config.json:quantization_config.ignore", "json-agree",
                     "differs from hf_quant_config.json exclude_modules");
    const cJSON *scheme = member(qc, "kv_cache_scheme");
    g4q_check_expect(s, (scheme && !cJSON_IsNull(scheme)) == (s->kv_fp8 != 0),
                     "config.json:quantization_config.kv_cache_scheme", "json-agree",
                     "%s, but hf_quant_config.json kv_cache_quant_algo is %s",
                     scheme ? "present" : "absent", s->kv_fp8 ? "FP8" : "not FP8");
    g4q_check_expect(s, member(qc, "group_size") == NULL,
                     "config.json:quantization_config.group_size", "json-key",
                     "must not be present (vLLM's config.json path assumes 16)");
    modelopt_groups(s, qc);
}

static void detect_ct(g4q_check_state *s, const cJSON *qc)
{
    const char *f = "config.json:quantization_config";
    const char *format = member_string(qc, "format");
    int nvfp4 = format && strcmp(format, "nvfp4-pack-quantized") == 0;
    if (!g4q_check_expect(s, nvfp4 || (format && strcmp(format, "pack-quantized") == 0),
                          "config.json:quantization_config.format", "format",
                          "%s: this checker verifies nvfp4-pack-quantized and pack-quantized",
                          format ? format : "missing"))
        return;
    s->fmt = nvfp4 ? G4Q_CHECK_FMT_CT_NVFP4 : G4Q_CHECK_FMT_CT_INT4;
    g4q_check_expect(s, s->in->hf_quant == NULL, "hf_quant_config.json", "json-file",
                     "present in a compressed-tensors export (vLLM would read it as ModelOpt)");
    expect_string(s, f, qc, "quantization_status", "compressed", 0);
    const cJSON *groups = member(qc, "config_groups");
    const cJSON *g0 = member(groups, "group_0");
    g4q_check_expect(s, cJSON_GetArraySize(groups) == 1 && g0,
                     "config.json:quantization_config.config_groups", "json-key",
                     "expected exactly one group, group_0");
    const cJSON *targets = member(g0, "targets"), *t;
    int linear = 0;
    cJSON_ArrayForEach(t, targets) linear |= cJSON_IsString(t) && strcmp(t->valuestring, "Linear") == 0;
    g4q_check_expect(s, linear, "config.json:config_groups.group_0.targets", "json-key",
                     "must contain \"Linear\"");
    const cJSON *w = member(g0, "weights");
    expect_number(s, f, w, "num_bits", 4);
    expect_string(s, f, w, "type", nvfp4 ? "float" : "int", 0);
    expect_string(s, f, w, "strategy", nvfp4 ? "tensor_group" : "group", 0);
    expect_number(s, f, w, "group_size", nvfp4 ? 16 : 128);
    expect_bool(s, f, w, "symmetric", 1, 0);
    expect_bool(s, f, w, "dynamic", 0, 1);
    const cJSON *a = member(g0, "input_activations");
    s->act = a && !cJSON_IsNull(a);
    if (!nvfp4)
        g4q_check_expect(s, !s->act, "config.json:config_groups.group_0.input_activations",
                         "json-key", "pack-quantized INT4 is weight-only here");
    g4q_check_expect(s, string_array(member(qc, "ignore")), "config.json:quantization_config.ignore",
                     "json-key", "must be present as a list of strings");
    const cJSON *kv = member(qc, "kv_cache_scheme");
    s->kv_fp8 = kv && !cJSON_IsNull(kv);
}

static void detect_gptq(g4q_check_state *s, const cJSON *qc)
{
    const char *f = "config.json:quantization_config";
    s->fmt = G4Q_CHECK_FMT_GPTQ;
    g4q_check_expect(s, s->in->hf_quant == NULL, "hf_quant_config.json", "json-file",
                     "present in a GPTQ export (vLLM would read it as ModelOpt)");
    expect_number(s, f, qc, "bits", 4);
    expect_number(s, f, qc, "group_size", 128);
    expect_bool(s, f, qc, "sym", 1, 0);
    expect_bool(s, f, qc, "desc_act", 0, 0);
    expect_bool(s, f, qc, "lm_head", 0, 1);
    const char *cf = member_string(qc, "checkpoint_format");
    g4q_check_expect(s, !member(qc, "checkpoint_format") || (cf && strcmp(cf, "gptq") == 0),
                     "config.json:quantization_config.checkpoint_format", "json-key",
                     "must be \"gptq\" (v1 zeros) when present, found %s", cf ? cf : "a non-string");
    const cJSON *m = member(qc, "modules_in_block_to_quantize"), *e;
    int ok = cJSON_IsArray(m) && cJSON_GetArraySize(m) > 0;
    cJSON_ArrayForEach(e, m) ok &= cJSON_IsString(e) || string_array(e);
    g4q_check_expect(s, ok, "config.json:quantization_config.modules_in_block_to_quantize",
                     "json-key", "must be present: a non-empty list of strings or of lists of "
                                 "strings (gemma4q writes it explicitly)");
    if (s->in->quantize_config)
        g4q_check_expect(s, cJSON_Compare(s->in->quantize_config, qc, 1), "quantize_config.json",
                         "json-agree", "differs from config.json quantization_config");
}

void g4q_check_json(g4q_check_state *s)
{
    const cJSON *qc = member(s->in->config, "quantization_config");
    s->fmt = G4Q_CHECK_FMT_UNKNOWN;
    if (!qc && !s->in->hf_quant) {
        g4q_check_add(s, "config.json:quantization_config", "format",
                      "no quantization_config and no hf_quant_config.json: not a quantized "
                      "export");
        return;
    }
    const char *method = member_string(qc, "quant_method");
    if (s->in->hf_quant || (method && strcmp(method, "modelopt") == 0))
        detect_modelopt(s, qc);
    else if (method && strcmp(method, "compressed-tensors") == 0)
        detect_ct(s, qc);
    else if (method && strcmp(method, "gptq") == 0)
        detect_gptq(s, qc);
    else
        g4q_check_add(s, "config.json:quantization_config.quant_method", "format",
                      "%s: expected modelopt, compressed-tensors or gptq",
                      method ? method : "missing");
}

/* ---- coverage ---- */

/* vLLM's ModelOpt path skips these prefixes whatever the list says (§8.6). */
static int modelopt_always_skipped(const char *m)
{
    return strstr(m, "vision_tower") || strstr(m, "vision_model") || strstr(m, "visual");
}

static void coverage_modelopt(g4q_check_state *s)
{
    const cJSON *hq = member(s->in->hf_quant, "quantization");
    const cJSON *ex = member(hq, "exclude_modules");
    if (!ex)
        ex = member(member(s->in->config, "quantization_config"), "ignore");
    if (!string_array(ex))
        return; /* reported by g4q_check_json */
    g4q_strlist list = {0};
    const cJSON *e;
    cJSON_ArrayForEach(e, ex) if (g4q_strlist_push(s->ctx, &list, e->valuestring) != G4Q_OK)
        s->nomem = 1;
    g4q_check_expect(s, g4q_excludes_skips(&list, "lm_head"), "lm_head", "excludes-cover",
                     "not covered by exclude_modules: the tied output head stays BF16");
    for (size_t i = 0; i < s->n_mods; i++) {
        const char *m = s->mods[i].name;
        if (!s->mods[i].quantized) {
            g4q_check_expect(s, g4q_excludes_skips(&list, m) || modelopt_always_skipped(m), m,
                             "excludes-cover",
                             "BF16 Linear not covered by exclude_modules: vLLM would allocate "
                             "packed parameters for it and fail to load");
            continue;
        }
        s->rep->n_checks++;
        if (modelopt_always_skipped(m))
            g4q_check_add(s, m, "excludes-hit", "quantized, but vLLM's ModelOpt path always "
                                                "skips names containing vision_tower/vision_model/visual");
        for (size_t k = 0; k < list.count; k++) {
            g4q_strlist one = {.items = &list.items[k], .count = 1, .cap = 1};
            if (g4q_excludes_skips(&one, m))
                g4q_check_add(s, m, "excludes-hit",
                              "quantized, but exclude entry '%s' makes vLLM skip it (exact, "
                              "substring or fnmatch rule)", list.items[k]);
        }
    }
    g4q_strlist_free(&list);
}

/* compressed-tensors ignore entry: an exact module name, or "re:PATTERN" matched from the start
 * of the name (Python re.match). POSIX extended syntax stands in for Python's. */
static int ct_matches(const char *entry, const char *module)
{
    if (strncmp(entry, "re:", 3) != 0)
        return strcmp(entry, module) == 0;
    size_t len = strlen(entry + 3);
    char *pat = malloc(len + 4);
    if (!pat)
        return 0;
    snprintf(pat, len + 4, "^(%s)", entry + 3);
    regex_t re;
    int hit = 0;
    if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) == 0) {
        hit = regexec(&re, module, 0, NULL, 0) == 0;
        regfree(&re);
    }
    free(pat);
    return hit;
}

static int ct_ignored(const cJSON *ignore, const char *module)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, ignore) if (ct_matches(e->valuestring, module)) return 1;
    return 0;
}

/* Marks kev[l] for every layer l < max that has no v_proj tensor, and returns num_hidden_layers
 * (at most max). Read from config.json itself rather than through the config parser, as
 * transformers reads it: with attention_k_eq_v, every full-attention layer lacks v_proj;
 * layer_types defaults to full where l % 6 == 5, and the last layer is full whatever it says. */
static int k_eq_v_layers(const cJSON *config, unsigned char *kev, int max)
{
    const cJSON *tc = member(config, "text_config");
    if (!cJSON_IsObject(tc))
        tc = config; /* Gemma4UnifiedForCausalLM: the keys are at the top level */
    const cJSON *nl = member(tc, "num_hidden_layers"), *types = member(tc, "layer_types");
    int n = cJSON_IsNumber(nl) && nl->valuedouble > 0 ? (int)nl->valuedouble : 0;
    if (n > max)
        n = max;
    if (!cJSON_IsTrue(member(tc, "attention_k_eq_v")))
        return n;
    for (int l = 0; l < n; l++) {
        const cJSON *t = cJSON_IsArray(types) ? cJSON_GetArrayItem(types, l) : NULL;
        int full = t ? cJSON_IsString(t) && strcmp(t->valuestring, "full_attention") == 0
                     : l % 6 == 5;
        kev[l] = full || l == n - 1;
    }
    return n;
}

/* vLLM loads q_proj, k_proj and v_proj as one qkv_proj and looks all three names up in `ignore`,
 * refusing the model unless they agree. On a k_eq_v layer v_proj names no tensor, so nothing
 * else checks its entry: it must be ignored exactly when q_proj and k_proj are. */
static void ct_absent_v_proj(g4q_check_state *s, const cJSON *ignore)
{
    unsigned char kev[G4Q_MAX_LAYERS] = {0};
    int n = k_eq_v_layers(s->in->config, kev, G4Q_MAX_LAYERS);
    for (int l = 0; l < n; l++) {
        if (!kev[l])
            continue;
        const g4q_check_module *q = NULL;
        for (size_t i = 0; i < s->n_mods && !q; i++)
            if (s->mods[i].layer == l && s->mods[i].role == G4Q_W_Q_PROJ)
                q = &s->mods[i];
        size_t len = q ? strlen(q->name) : 0; /* "<prefix>layers.N.self_attn.q_proj" */
        if (len < 6)
            continue; /* no such layer in the model: its tensors are reported missing */
        char k[G4Q_CHECK_ITEM_MAX], v[G4Q_CHECK_ITEM_MAX];
        snprintf(k, sizeof k, "%.*sk_proj", (int)(len - 6), q->name);
        snprintf(v, sizeof v, "%.*sv_proj", (int)(len - 6), q->name);
        int iq = ct_ignored(ignore, q->name), ik = ct_ignored(ignore, k);
        int iv = ct_ignored(ignore, v);
        g4q_check_expect(s, iq == ik && iv == ik, v, "fused-ignore",
                         "layer %d has no v_proj (attention_k_eq_v), but vLLM looks up all "
                         "three shard names of its fused qkv_proj in ignore and fails to load "
                         "unless they agree: q_proj %s, k_proj %s, v_proj %s", l,
                         iq ? "ignored" : "not ignored", ik ? "ignored" : "not ignored",
                         iv ? "ignored" : "not ignored");
    }
}

static void coverage_ct(g4q_check_state *s)
{
    const cJSON *ig = member(member(s->in->config, "quantization_config"), "ignore"), *e;
    if (!string_array(ig))
        return;
    int lm = 0;
    cJSON_ArrayForEach(e, ig) lm |= ct_matches(e->valuestring, "lm_head");
    g4q_check_expect(s, lm, "lm_head", "excludes-cover",
                     "not in the ignore list: the tied output head stays BF16");
    for (size_t i = 0; i < s->n_mods; i++) {
        const char *m = s->mods[i].name;
        const char *hit = NULL;
        cJSON_ArrayForEach(e, ig) if (!hit && ct_matches(e->valuestring, m)) hit = e->valuestring;
        if (s->mods[i].quantized)
            g4q_check_expect(s, !hit, m, "excludes-hit",
                             "quantized, but ignore entry '%s' makes the loader keep it BF16",
                             hit ? hit : "");
        else
            g4q_check_expect(s, hit != NULL, m, "excludes-cover",
                             "BF16 Linear not in the ignore list: the loader would expect packed "
                             "weights for it");
    }
    ct_absent_v_proj(s, ig);
}

static void coverage_gptq(g4q_check_state *s)
{
    const cJSON *m = member(member(s->in->config, "quantization_config"),
                            "modules_in_block_to_quantize");
    if (!cJSON_IsArray(m))
        return;
    g4q_strlist subs = {0};
    const cJSON *e, *f;
    cJSON_ArrayForEach(e, m)
    {
        if (cJSON_IsString(e) && g4q_strlist_push(s->ctx, &subs, e->valuestring) != G4Q_OK)
            s->nomem = 1;
        cJSON_ArrayForEach(f, e) if (cJSON_IsString(f) &&
                                     g4q_strlist_push(s->ctx, &subs, f->valuestring) != G4Q_OK)
            s->nomem = 1;
    }
    for (size_t i = 0; i < s->n_mods; i++) {
        const char *name = s->mods[i].name, *hit = NULL;
        for (size_t k = 0; k < subs.count && !hit; k++)
            if (strstr(name, subs.items[k]))
                hit = subs.items[k];
        if (s->mods[i].quantized)
            g4q_check_expect(s, hit != NULL, name, "gptq-modules",
                             "quantized, but no modules_in_block_to_quantize entry is a substring "
                             "of it: vLLM would load it as BF16");
        else
            g4q_check_expect(s, hit == NULL, name, "gptq-modules",
                             "BF16, but modules_in_block_to_quantize entry '%s' is a substring of "
                             "it: vLLM would load it as GPTQ", hit ? hit : "");
    }
    g4q_strlist_free(&subs);
}

void g4q_check_coverage(g4q_check_state *s)
{
    switch (s->fmt) {
    case G4Q_CHECK_FMT_MO_NVFP4:
    case G4Q_CHECK_FMT_MO_W4A16_NVFP4:
    case G4Q_CHECK_FMT_MO_FP8:
    case G4Q_CHECK_FMT_MO_FP8_PB_WO:
        coverage_modelopt(s);
        break;
    case G4Q_CHECK_FMT_CT_NVFP4:
    case G4Q_CHECK_FMT_CT_INT4:
        coverage_ct(s);
        break;
    case G4Q_CHECK_FMT_GPTQ:
        coverage_gptq(s);
        break;
    default:
        break;
    }
}
