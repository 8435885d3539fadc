/* Tests of export/check: real exports of a fresh synthetic model (12 layers, so that "layers.1"
 * is a prefix of "layers.10") pass in every format; copies mutated in memory fail with the rule
 * and item the mutation breaks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/outdir.h"
#include "export/check.h"
#include "export/export.h"
#include "export/plan.h"
#include "model/synth.h"
#include "model/weights.h"
#include "recipe/recipe.h"
#include "testutil.h"

static char g_root[4096];

static const char recipe_w4a16_mo[] =
    "name: w4a16-mo\nexport: modelopt\nrules:\n"
    "  - pattern: \"model.language_model.layers.*.{self_attn,mlp}.*_proj\"\n"
    "    weights: nvfp4\n";
static const char recipe_ct_nvfp4[] =
    "name: ct-nvfp4\nexport: compressed-tensors\nrules:\n"
    "  - pattern: \"model.language_model.layers.*.{self_attn,mlp}.*_proj\"\n"
    "    weights: nvfp4\n";
static const char recipe_fp8_block[] =
    "name: fp8-block\nexport: modelopt\nrules:\n"
    "  - pattern: \"model.language_model.layers.*.{self_attn,mlp}.*_proj\"\n"
    "    weights: fp8-block\nkv_cache:\n  format: fp8\n";
static const char recipe_gptq[] =
    "name: int4\nexport: gptq\nrules:\n"
    "  - pattern: \"model.language_model.layers.*.mlp.*_proj\"\n"
    "    weights: int4\n";
static const char recipe_ct_int4[] =
    "name: int4-ct\nexport: compressed-tensors\nrules:\n"
    "  - pattern: \"model.language_model.layers.*.mlp.*_proj\"\n"
    "    weights: int4\n";

static int make_model(g4q_ctx *ctx, const char *dir)
{
    g4q_synth_spec spec;
    g4q_outdir od;
    if (g4q_synth_preset(ctx, "tiny", &spec) != G4Q_OK ||
        g4q_synth_override(ctx, &spec, 12, 0, 0) != G4Q_OK)
        return 0;
    spec.seed = g4q_test_seed();
    g4q_synth_result res;
    if (g4q_outdir_begin(ctx, &od, dir, 0) != G4Q_OK)
        return 0;
    g4q_status st = g4q_synth_write(ctx, &spec, od.partial_path, 0, 0, &res);
    if (st == G4Q_OK)
        st = g4q_outdir_commit(ctx, &od);
    if (st != G4Q_OK)
        g4q_outdir_abort(&od);
    return st == G4Q_OK;
}

/* Quantizes model_dir with the recipe text into out_dir through the library. */
static g4q_status export_with(g4q_ctx *ctx, const char *model_dir, const char *name,
                              const char *recipe_text, char *out_dir, size_t n)
{
    char rpath[4200];
    snprintf(rpath, sizeof rpath, "%s/%s.yaml", g_root, name);
    snprintf(out_dir, n, "%s/out-%s", g_root, name);
    G4Q_TRY(g4q_write_file(ctx, rpath, recipe_text, strlen(recipe_text)));
    g4q_recipe *r = NULL;
    g4q_ckpt *ck = NULL;
    g4q_config *cfg = calloc(1, sizeof *cfg);
    g4q_weights *w = calloc(1, sizeof *w);
    g4q_plan plan = {0};
    g4q_status st = cfg && w ? G4Q_OK : G4Q_ERR_NOMEM;
    if (st == G4Q_OK)
        st = g4q_recipe_load(ctx, rpath, &r);
    if (st == G4Q_OK)
        st = g4q_config_load(ctx, model_dir, cfg);
    if (st == G4Q_OK)
        st = g4q_ckpt_open(ctx, model_dir, &ck);
    if (st == G4Q_OK)
        st = g4q_weights_bind(ctx, cfg, g4q_ckpt_tensor(ck, 0), g4q_ckpt_count(ck), model_dir, w);
    if (st == G4Q_OK)
        st = g4q_plan_build(ctx, r, cfg, w, g4q_ckpt_tensor(ck, 0), g4q_ckpt_count(ck), &plan);
    g4q_export_opts eo = {.out_dir = out_dir, .device = G4Q_DEVICE_CPU};
    if (st == G4Q_OK)
        st = g4q_export_run(ctx, &plan, ck, cfg, &eo, NULL);
    g4q_plan_free(&plan);
    g4q_ckpt_close(ck);
    g4q_recipe_free(r);
    free(cfg);
    free(w);
    return st;
}

/* An export loaded for in-memory mutation: its own copy of the tensor array and JSON trees. */
typedef struct loaded {
    g4q_ckpt *ck;
    g4q_config *cfg;
    cJSON *config, *hf, *qcfg;
    g4q_tensor *t;
    size_t n;
    void *bufs[16];
    int n_bufs;
} loaded;

static cJSON *parse_file(g4q_ctx *ctx, const char *dir, const char *name)
{
    char path[4200], *text = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (!g4q_path_exists(path) || g4q_read_file(ctx, path, 1u << 24, &text, NULL) != G4Q_OK)
        return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

static int load(g4q_ctx *ctx, const char *dir, loaded *l)
{
    memset(l, 0, sizeof *l);
    l->cfg = calloc(1, sizeof *l->cfg);
    if (!l->cfg || g4q_config_load(ctx, dir, l->cfg) != G4Q_OK ||
        g4q_ckpt_open(ctx, dir, &l->ck) != G4Q_OK)
        return 0;
    l->n = g4q_ckpt_count(l->ck);
    l->t = malloc(l->n * sizeof *l->t);
    memcpy(l->t, g4q_ckpt_tensor(l->ck, 0), l->n * sizeof *l->t);
    l->config = parse_file(ctx, dir, "config.json");
    l->hf = parse_file(ctx, dir, "hf_quant_config.json");
    l->qcfg = parse_file(ctx, dir, "quantize_config.json");
    return l->config != NULL;
}

static void unload(loaded *l)
{
    for (int i = 0; i < l->n_bufs; i++)
        free(l->bufs[i]);
    free(l->t);
    g4q_ckpt_close(l->ck);
    cJSON_Delete(l->config);
    cJSON_Delete(l->hf);
    cJSON_Delete(l->qcfg);
    free(l->cfg);
}

static g4q_tensor *tensor(loaded *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->t[i].name, name) == 0)
            return &l->t[i];
    return NULL;
}

/* Gives the tensor a writable copy of its data and returns it. */
static void *writable(loaded *l, g4q_tensor *t)
{
    void *p = malloc(t->nbytes ? t->nbytes : 1);
    memcpy(p, t->data, t->nbytes);
    t->data = p;
    l->bufs[l->n_bufs++] = p;
    return p;
}

static void drop(loaded *l, const char *name)
{
    g4q_tensor *t = tensor(l, name);
    if (t)
        *t = l->t[--l->n];
}

static size_t run(g4q_ctx *ctx, loaded *l, g4q_check_report *rep)
{
    g4q_check_input in = {.cfg = l->cfg, .tensors = l->t, .n_tensors = l->n, .config = l->config,
                          .hf_quant = l->hf, .quantize_config = l->qcfg};
    CHECK_STATUS(g4q_check_run(ctx, &in, rep), G4Q_OK);
    return rep->n_problems;
}

/* Runs the check and expects a problem of `rule` whose item contains `item`. */
static void expect_problem(g4q_ctx *ctx, loaded *l, const char *rule, const char *item,
                           const char *what)
{
    g4q_check_report rep;
    run(ctx, l, &rep);
    int hit = g4q_check_report_has(&rep, rule, item);
    CHECK_MSG(hit, "%s: expected a [%s] problem on '%s'; got %zu problems", what, rule, item,
              rep.n_problems);
    if (!hit)
        g4q_check_report_print(&rep, what, stdout);
    g4q_check_report_free(&rep);
}

static void test_good(g4q_ctx *ctx, const char *dir, g4q_check_format want)
{
    g4q_check_report rep;
    CHECK_STATUS(g4q_check_dir(ctx, dir, &rep), G4Q_OK);
    CHECK_EQ_INT(rep.format, want);
    CHECK_EQ_INT(rep.n_problems, 0);
    CHECK(rep.n_quantized > 0 && rep.n_checks > 100);
    if (rep.n_problems)
        g4q_check_report_print(&rep, dir, stdout);
    cJSON *j = g4q_check_report_to_cjson(&rep, dir);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    cJSON_Delete(j);
    g4q_check_report_free(&rep);
}

#define L "model.language_model.layers."

static void test_modelopt_nvfp4(g4q_ctx *ctx, const char *dir)
{
    loaded l;
    CHECK(load(ctx, dir, &l));
    /* A fused shard with its own weight_scale_2. */
    g4q_tensor *t = tensor(&l, L "3.self_attn.k_proj.weight_scale_2");
    CHECK(t != NULL);
    if (t) {
        float *f = writable(&l, t);
        f[0] *= 1.5f;
        expect_problem(ctx, &l, "fused-scale", L "3.self_attn.k_proj", "wsf2 differs in qkv");
        f[0] = NAN;
        expect_problem(ctx, &l, "scale-range", L "3.self_attn.k_proj.weight_scale_2", "NaN wsf2");
    }
    unload(&l);
    CHECK(load(ctx, dir, &l));
    /* gate/up of the last (full) layer, and q/k of a full layer without v_proj. */
    t = tensor(&l, L "11.mlp.up_proj.weight_scale_2");
    if (CHECK(t != NULL)) {
        float *f = writable(&l, t);
        f[0] = nextafterf(f[0], 1.0f); /* one ulp is enough */
        expect_problem(ctx, &l, "fused-scale", L "11.mlp.up_proj", "wsf2 1 ulp off in gate_up");
    }
    CHECK(tensor(&l, L "5.self_attn.v_proj.weight") == NULL);
    t = tensor(&l, L "5.self_attn.q_proj.weight_scale_2");
    if (CHECK(t != NULL)) {
        float *f = writable(&l, t);
        f[0] *= 2.0f;
        expect_problem(ctx, &l, "fused-scale", L "5.self_attn.k_proj", "full layer q/k");
    }
    unload(&l);
    CHECK(load(ctx, dir, &l));
    /* NaN and 0x00 block scales. */
    t = tensor(&l, L "2.mlp.down_proj.weight_scale");
    if (CHECK(t != NULL)) {
        uint8_t *b = writable(&l, t);
        b[t->numel - 1] = 0x7F;
        expect_problem(ctx, &l, "scale-nan", L "2.mlp.down_proj.weight_scale", "0x7F scale");
        b[t->numel - 1] = 0xFF;
        expect_problem(ctx, &l, "scale-nan", L "2.mlp.down_proj.weight_scale", "0xFF scale");
        b[t->numel - 1] = 0x00;
        expect_problem(ctx, &l, "scale-range", L "2.mlp.down_proj.weight_scale", "0x00 scale");
    }
    unload(&l);
    CHECK(load(ctx, dir, &l));
    /* A missing weight_scale, and a wrong shape. */
    drop(&l, L "4.self_attn.o_proj.weight_scale");
    expect_problem(ctx, &l, "tensor-missing", L "4.self_attn.o_proj.weight_scale", "missing");
    t = tensor(&l, L "6.mlp.gate_proj.weight");
    if (CHECK(t != NULL)) {
        t->shape[1] /= 2; /* [out, in/4]: fewer bytes, so reads stay inside the data */
        t->numel /= 2;
        t->nbytes /= 2;
        expect_problem(ctx, &l, "tensor-shape", L "6.mlp.gate_proj.weight", "wrong shape");
    }
    unload(&l);
    CHECK(load(ctx, dir, &l));
    /* vLLM needs group_size for NVFP4; the exclude list must cover every BF16 Linear. */
    cJSON *q = cJSON_GetObjectItem(l.hf, "quantization");
    cJSON_DeleteItemFromObject(q, "group_size");
    expect_problem(ctx, &l, "json-key", "group_size", "no group_size");
    cJSON *ex = cJSON_GetObjectItem(q, "exclude_modules");
    int removed = 0;
    for (int i = cJSON_GetArraySize(ex) - 1; i >= 0; i--)
        if (strcmp(cJSON_GetArrayItem(ex, i)->valuestring, "model.embed_audio*") == 0) {
            cJSON_DeleteItemFromArray(ex, i);
            removed = 1;
        }
    CHECK(removed);
    expect_problem(ctx, &l, "excludes-cover", "model.embed_audio.embedding_projection",
                   "exclude list misses a BF16 Linear");
    expect_problem(ctx, &l, "json-agree", "ignore", "hf and config.json lists differ");
    unload(&l);
}

/* W4A4 (ModelOpt NVFP4) cannot be exported without calibration yet, so the W4A16 export is turned
 * into one in memory: quant_algo NVFP4, input activations in config_groups, and an input_scale
 * (0.5) next to every weight_scale_2. */
static void test_modelopt_w4a4(g4q_ctx *ctx, const char *dir)
{
    loaded l;
    CHECK(load(ctx, dir, &l));
    static const float half = 0.5f, other = 0.25f;
    size_t n0 = l.n, added = 0;
    char(*names)[G4Q_CHECK_ITEM_MAX] = calloc(n0, sizeof *names);
    l.t = realloc(l.t, 2 * n0 * sizeof *l.t);
    for (size_t i = 0; i < n0; i++) {
        const char *suf = strstr(l.t[i].name, ".weight_scale_2");
        if (!suf || suf[15])
            continue;
        snprintf(names[added], sizeof names[added], "%.*s.input_scale", (int)(suf - l.t[i].name),
                 l.t[i].name);
        g4q_tensor *t = &l.t[l.n++];
        *t = l.t[i];
        t->name = names[added++];
        t->data = &half;
    }
    cJSON *q = cJSON_GetObjectItem(l.hf, "quantization");
    cJSON_ReplaceItemInObject(q, "quant_algo", cJSON_CreateString("NVFP4"));
    cJSON *qc = cJSON_GetObjectItem(l.config, "quantization_config");
    cJSON_ReplaceItemInObject(qc, "quant_algo", cJSON_CreateString("NVFP4"));
    cJSON *g0 = cJSON_GetObjectItem(cJSON_GetObjectItem(qc, "config_groups"), "group_0");
    cJSON_AddItemToObject(g0, "input_activations",
                          cJSON_Duplicate(cJSON_GetObjectItem(g0, "weights"), 1));
    g4q_check_report rep;
    CHECK_EQ_INT(run(ctx, &l, &rep), 0);
    CHECK_EQ_INT(rep.format, G4Q_CHECK_FMT_MO_NVFP4);
    g4q_check_report_free(&rep);
    g4q_tensor *t = tensor(&l, L "8.mlp.gate_proj.input_scale");
    if (CHECK(t != NULL)) {
        t->data = &other;
        expect_problem(ctx, &l, "fused-scale", L "8.mlp", "input_scale differs in gate_up");
    }
    drop(&l, L "2.self_attn.o_proj.input_scale");
    expect_problem(ctx, &l, "tensor-missing", L "2.self_attn.o_proj.input_scale", "W4A4 needs it");
    cJSON_DeleteItemFromObject(g0, "input_activations");
    expect_problem(ctx, &l, "json-key", "input_activations", "W4A4 config without activations");
    unload(&l);
    free(names);
}

static void test_fp8_block(g4q_ctx *ctx, const char *dir)
{
    loaded l;
    CHECK(load(ctx, dir, &l));
    /* "…layers.1" is a substring of "…layers.10…" and "…layers.11…". */
    cJSON *ex = cJSON_GetObjectItem(cJSON_GetObjectItem(l.hf, "quantization"), "exclude_modules");
    cJSON_AddItemToArray(ex, cJSON_CreateString("model.language_model.layers.1"));
    expect_problem(ctx, &l, "excludes-hit", L "10.self_attn.q_proj", "layers.1 vs layers.10");
    expect_problem(ctx, &l, "excludes-hit", L "11.mlp.down_proj", "layers.1 vs layers.11");
    unload(&l);
    CHECK(load(ctx, dir, &l));
    g4q_tensor *t = tensor(&l, L "0.mlp.up_proj.weight");
    if (CHECK(t != NULL)) {
        uint8_t *b = writable(&l, t);
        b[17] = 0x7F;
        expect_problem(ctx, &l, "fp8-nan", L "0.mlp.up_proj.weight", "FP8 NaN code");
    }
    t = tensor(&l, L "1.self_attn.k_proj.weight_scale");
    if (CHECK(t != NULL)) {
        float *f = writable(&l, t);
        f[0] = 0.0f;
        expect_problem(ctx, &l, "scale-range", L "1.self_attn.k_proj.weight_scale", "zero scale");
    }
    unload(&l);
}

static cJSON *ct_ignore(loaded *l)
{
    return cJSON_GetObjectItem(cJSON_GetObjectItem(l->config, "quantization_config"), "ignore");
}

static int ignore_has(loaded *l, const char *name)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, ct_ignore(l)) if (strcmp(e->valuestring, name) == 0) return 1;
    return 0;
}

/* Removes every ignore entry containing `substr`; returns how many (not inside CHECK_EQ_INT, which
 * evaluates its arguments twice). */
static int ignore_remove(loaded *l, const char *substr)
{
    cJSON *ig = ct_ignore(l);
    int removed = 0;
    for (int i = cJSON_GetArraySize(ig) - 1; i >= 0; i--)
        if (strstr(cJSON_GetArrayItem(ig, i)->valuestring, substr)) {
            cJSON_DeleteItemFromArray(ig, i);
            removed++;
        }
    return removed;
}

/* Attention quantized: the k_eq_v layers' (5, 11) absent v_proj must not be ignored either. */
static void test_ct_nvfp4(g4q_ctx *ctx, const char *dir)
{
    loaded l;
    CHECK(load(ctx, dir, &l));
    CHECK(!ignore_has(&l, L "5.self_attn.v_proj") && !ignore_has(&l, L "11.self_attn.v_proj"));
    cJSON_AddItemToArray(ct_ignore(&l), cJSON_CreateString(L "5.self_attn.v_proj"));
    expect_problem(ctx, &l, "fused-ignore", L "5.self_attn.v_proj", "absent v_proj ignored alone");
    unload(&l);
    CHECK(load(ctx, dir, &l));
    g4q_tensor *t = tensor(&l, L "7.mlp.gate_proj.weight_global_scale");
    if (CHECK(t != NULL)) {
        float *f = writable(&l, t);
        f[0] *= 0.5f;
        expect_problem(ctx, &l, "fused-scale", L "7.mlp.up_proj", "CT global scale differs");
    }
    cJSON *ig = cJSON_GetObjectItem(cJSON_GetObjectItem(l.config, "quantization_config"), "ignore");
    cJSON_AddItemToArray(ig, cJSON_CreateString("re:.*layers\\.8\\.mlp\\..*"));
    expect_problem(ctx, &l, "excludes-hit", L "8.mlp.down_proj", "CT ignore regex hits");
    unload(&l);
}

/* MLP only, attention BF16: vLLM looks up v_proj of the fused qkv_proj even on the k_eq_v layers
 * 5 and 11, which have no v_proj tensor, so `ignore` names it there as it names q_proj and k_proj
 * (else vLLM: "Found a different quantization schemes for ['q_proj', 'k_proj', 'v_proj']"). */
static void test_ct_int4(g4q_ctx *ctx, const char *dir)
{
    loaded l;
    CHECK(load(ctx, dir, &l));
    CHECK(tensor(&l, L "5.self_attn.v_proj.weight") == NULL);
    CHECK_MSG(ignore_has(&l, L "5.self_attn.v_proj"), "ignore lacks layer 5's absent v_proj");
    CHECK_MSG(ignore_has(&l, L "11.self_attn.v_proj"), "ignore lacks layer 11's absent v_proj");
    CHECK(ignore_has(&l, L "4.self_attn.v_proj")); /* a sliding layer's real v_proj */
    int removed = ignore_remove(&l, L "5.self_attn.v_proj");
    CHECK_EQ_INT(removed, 1);
    expect_problem(ctx, &l, "fused-ignore", L "5.self_attn.v_proj", "absent v_proj not ignored");
    unload(&l);
    CHECK(load(ctx, dir, &l));
    /* Without layer_types, the k_eq_v layers are transformers' default full layers (l % 6 == 5)
     * and the last one. */
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(l.config, "text_config"), "layer_types");
    removed = ignore_remove(&l, L "11.self_attn.v_proj");
    CHECK_EQ_INT(removed, 1);
    expect_problem(ctx, &l, "fused-ignore", L "11.self_attn.v_proj", "default layer_types");
    /* Regex entries are matched as vLLM does: one that skips v_proj leaves it out... */
    removed = ignore_remove(&l, L "11.self_attn.");
    CHECK_EQ_INT(removed, 3); /* q_proj, k_proj, o_proj */
    cJSON_AddItemToArray(ct_ignore(&l),
                         cJSON_CreateString("re:.*layers\\.11\\.self_attn\\.[qko]_proj"));
    expect_problem(ctx, &l, "fused-ignore", L "11.self_attn.v_proj", "regex without v_proj");
    /* ...and one that names every self_attn module of the layer covers it. */
    cJSON_AddItemToArray(ct_ignore(&l), cJSON_CreateString("re:.*layers\\.11\\.self_attn\\..*"));
    g4q_check_report rep;
    CHECK_EQ_INT(run(ctx, &l, &rep), 0);
    if (rep.n_problems)
        g4q_check_report_print(&rep, "regex ignore", stdout);
    g4q_check_report_free(&rep);
    unload(&l);
}

static void test_gptq(g4q_ctx *ctx, const char *dir)
{
    loaded l;
    CHECK(load(ctx, dir, &l));
    g4q_tensor *t = tensor(&l, L "9.mlp.down_proj.qzeros");
    if (CHECK(t != NULL)) {
        int32_t *z = writable(&l, t);
        z[1] = 0x77777778;
        expect_problem(ctx, &l, "gptq-qzeros", L "9.mlp.down_proj.qzeros", "qzeros");
    }
    t = tensor(&l, L "9.mlp.up_proj.g_idx");
    if (CHECK(t != NULL)) {
        int32_t *g = writable(&l, t);
        g[127] = 1;
        expect_problem(ctx, &l, "gptq-g_idx", L "9.mlp.up_proj.g_idx", "g_idx");
    }
    cJSON *qc = cJSON_GetObjectItem(l.config, "quantization_config");
    cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(qc, "modules_in_block_to_quantize"), 0);
    cJSON_AddItemToArray(m, cJSON_CreateString("self_attn.o_proj"));
    expect_problem(ctx, &l, "gptq-modules", L "0.self_attn.o_proj", "GPTQ selects a BF16 module");
    expect_problem(ctx, &l, "json-agree", "quantize_config.json", "quantize_config differs");
    unload(&l);
}

int main(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    ctx.log_level = G4Q_LOG_WARN;
    ctx.progress = -1;
    g4q_test_tmpdir(g_root, sizeof g_root, "check");
    char model[4200], out[4300];
    snprintf(model, sizeof model, "%s/model", g_root);
    if (!CHECK_MSG(make_model(&ctx, model), "synthetic model: %s", g4q_ctx_error(&ctx)))
        return g4q_test_finish();
    g4q_check_report rep;
    CHECK_STATUS(g4q_check_dir(&ctx, model, &rep), G4Q_OK);
    CHECK(g4q_check_report_has(&rep, "format", NULL)); /* a BF16 model is no export */
    g4q_check_report_free(&rep);
    CHECK_STATUS(g4q_check_dir(&ctx, "/nonexistent-g4q", &rep), G4Q_ERR_NOT_FOUND);

    static const struct {
        const char *name, *recipe;
        g4q_check_format fmt;
        void (*mutations)(g4q_ctx *, const char *);
    } cases[] = {
        {"w4a16-mo", recipe_w4a16_mo, G4Q_CHECK_FMT_MO_W4A16_NVFP4, test_modelopt_nvfp4},
        {"ct-nvfp4", recipe_ct_nvfp4, G4Q_CHECK_FMT_CT_NVFP4, test_ct_nvfp4},
        {"fp8-block", recipe_fp8_block, G4Q_CHECK_FMT_MO_FP8_PB_WO, test_fp8_block},
        {"gptq", recipe_gptq, G4Q_CHECK_FMT_GPTQ, test_gptq},
        {"ct-int4", recipe_ct_int4, G4Q_CHECK_FMT_CT_INT4, test_ct_int4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        g4q_status st = export_with(&ctx, model, cases[i].name, cases[i].recipe, out, sizeof out);
        if (!CHECK_MSG(st == G4Q_OK, "export %s: %s", cases[i].name, g4q_ctx_error(&ctx)))
            continue;
        test_good(&ctx, out, cases[i].fmt);
        if (cases[i].mutations)
            cases[i].mutations(&ctx, out);
        if (cases[i].fmt == G4Q_CHECK_FMT_MO_W4A16_NVFP4)
            test_modelopt_w4a4(&ctx, out);
    }
    g4q_remove_tree(&ctx, g_root);
    return g4q_test_finish();
}
