/* Tests of src/recipe: glob matching (against glibc fnmatch as an oracle), the five public recipes
 * on the real Gemma-4-12B module names, every validation error class with its file:line, and the
 * JSON description. */
#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "recipe/glob.h"
#include "recipe/recipe.h"
#include "testutil.h"

/* ---- module names of Gemma-4-12B (gemma4.md §3, §6.3, §6.4) ---- */

#define N_LAYERS 48
#define MAX_NAMES 400

typedef struct names {
    char buf[MAX_NAMES][96];
    const char *ptr[MAX_NAMES];
    size_t n;
} names;

static void add_name(names *ns, const char *s)
{
    snprintf(ns->buf[ns->n], sizeof ns->buf[0], "%s", s);
    ns->ptr[ns->n] = ns->buf[ns->n];
    ns->n++;
}

/* Every 2-D Linear weight of the 12B checkpoint, as module names (no ".weight"), plus
 * embed_tokens: full layers are 5, 11, ..., 47 and have no v_proj. */
static void make_12b_names(names *ns)
{
    ns->n = 0;
    static const char *const attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    static const char *const mlp[] = {"gate_proj", "up_proj", "down_proj"};
    char s[96];
    for (int l = 0; l < N_LAYERS; l++) {
        int full = l % 6 == 5;
        for (int j = 0; j < 4; j++) {
            if (full && j == 2)
                continue;
            snprintf(s, sizeof s, "model.language_model.layers.%d.self_attn.%s", l, attn[j]);
            add_name(ns, s);
        }
        for (int j = 0; j < 3; j++) {
            snprintf(s, sizeof s, "model.language_model.layers.%d.mlp.%s", l, mlp[j]);
            add_name(ns, s);
        }
    }
    add_name(ns, "model.language_model.embed_tokens");
    add_name(ns, "model.vision_embedder.patch_dense");
    add_name(ns, "model.embed_vision.embedding_projection");
    add_name(ns, "model.embed_audio.embedding_projection");
}

/* ---- glob ---- */

static void check_glob(const char *pat, const char *name, int want)
{
    CHECK_MSG(g4q_glob_check(pat, NULL) == NULL, "pattern '%s' rejected: %s", pat,
              g4q_glob_check(pat, NULL));
    int got = g4q_glob_match(pat, name);
    CHECK_MSG(got == want, "glob '%s' on '%s': got %d, want %d", pat, name, got, want);
}

static void check_glob_bad(const char *pat, size_t want_off, const char *want_why)
{
    size_t off = 999;
    const char *why = g4q_glob_check(pat, &off);
    CHECK_MSG(why && strstr(why, want_why), "pattern '%s': got '%s', want '%s'", pat,
              why ? why : "(valid)", want_why);
    CHECK_MSG(off == want_off, "pattern '%s': offset %zu, want %zu", pat, off, want_off);
}

static void test_glob_fixed(void)
{
    /* A layer index ended by '.' selects exactly that layer; without the '.' it is a prefix. */
    check_glob("layers.1.*", "layers.10.x", 0);
    check_glob("layers.1.*", "layers.1.x", 1);
    check_glob("layers.1*", "layers.10.x", 1);
    check_glob("layers.1", "layers.10", 0);
    /* '*' crosses dots and may be empty. */
    check_glob("model.*.mlp.*_proj", "model.language_model.layers.7.mlp.gate_proj", 1);
    check_glob("model.*_proj", "model.language_model.layers.7.self_attn.o_proj", 1);
    check_glob("*", "", 1);
    check_glob("a*", "a", 1);
    check_glob("a**b", "a.x.b", 1);
    check_glob("*.mlp.*", "mlp.x", 0);
    check_glob("model.*.mlp.*_proj", "model.language_model.layers.7.mlp.gate", 0);
    /* '?' is one character, dots included. */
    check_glob("a?c", "a.c", 1);
    check_glob("a?c", "ac", 0);
    check_glob("?", "", 0);
    /* Classes. */
    check_glob("self_attn.[qkvo]_proj", "self_attn.q_proj", 1);
    check_glob("self_attn.[qkvo]_proj", "self_attn.x_proj", 0);
    check_glob("[!q]_proj", "k_proj", 1);
    check_glob("[!q]_proj", "q_proj", 0);
    check_glob("[^q]_proj", "q_proj", 0);
    check_glob("layers.[0-4].x", "layers.3.x", 1);
    check_glob("layers.[0-4].x", "layers.5.x", 0);
    check_glob("[]]", "]", 1);
    check_glob("[*]", "*", 1);
    check_glob("[*]", "a", 0);
    /* Braces. */
    check_glob("x.{a,bc}.y", "x.a.y", 1);
    check_glob("x.{a,bc}.y", "x.bc.y", 1);
    check_glob("x.{a,bc}.y", "x.b.y", 0);
    check_glob("x.{a,bc}.y", "x.abc.y", 0);
    check_glob("{self_attn,mlp}.*_proj", "mlp.up_proj", 1);
    check_glob("{*gate*,down}_proj", "mlp.gate_x_proj", 1);
    check_glob("a{,b}", "a", 1);
    check_glob("a{,b}", "ab", 1);
    check_glob("{[,}]x,y}", ",x", 1); /* ',' and '}' inside a class are literal */
    check_glob("{[,}]x,y}", "}x", 1);
    check_glob("{[,}]x,y}", "y", 1);
    check_glob("a,b", "a,b", 1); /* ',' outside braces is literal */
    /* Escapes. */
    check_glob("a\\*b", "a*b", 1);
    check_glob("a\\*b", "axb", 0);
    check_glob("\\{a\\}", "{a}", 1);
    /* Syntax errors with their offsets. */
    check_glob_bad("", 0, "empty");
    check_glob_bad("layers.[abc", 7, "unclosed '['");
    check_glob_bad("a{b,c", 1, "unclosed '{'");
    check_glob_bad("a}b", 1, "unmatched '}'");
    check_glob_bad("{a,{b}}", 3, "nested");
    check_glob_bad("ab\\", 2, "trailing");
}

/* Random patterns without braces against glibc fnmatch(flags 0), where '*' and '?' also match
 * '.', '[!..]' negates and '\' escapes: the same syntax. Braces are checked by expanding them. */
static void random_piece(uint64_t *st, char *out, size_t cap, int pattern)
{
    static const char *const pat_atoms[] = {"a", "b", ".", "*", "?", "[ab]", "[!a]", "\\*", "1"};
    static const char *const name_atoms[] = {"a", "b", ".", "*", "1"};
    int len = (int)(g4q_test_rand(st) % 6);
    out[0] = '\0';
    for (int i = 0; i < len; i++) {
        const char *atom = pattern ? pat_atoms[g4q_test_rand(st) % 9]
                                   : name_atoms[g4q_test_rand(st) % 5];
        if (strlen(out) + strlen(atom) + 1 < cap)
            strcat(out, atom);
    }
}

static void test_glob_random(void)
{
    uint64_t st = g4q_test_seed();
    int mismatches = 0;
    for (int it = 0; it < 20000; it++) {
        char a[64], b[64], c[64], d[64], name[64], pat[300], pab[200], pac[200];
        random_piece(&st, a, sizeof a, 1);
        random_piece(&st, name, sizeof name, 0);
        if (!a[0])
            continue;
        int want = fnmatch(a, name, 0) == 0;
        if (g4q_glob_match(a, name) != want && mismatches++ < 5)
            CHECK_MSG(0, "glob '%s' on '%s': want %d (fnmatch)", a, name, want);
        random_piece(&st, b, sizeof b, 1);
        random_piece(&st, c, sizeof c, 1);
        random_piece(&st, d, sizeof d, 1);
        snprintf(pat, sizeof pat, "%s{%s,%s}%s", a, b, c, d);
        snprintf(pab, sizeof pab, "%s%s%s", a, b, d);
        snprintf(pac, sizeof pac, "%s%s%s", a, c, d);
        int wantb = fnmatch(pab, name, 0) == 0 || fnmatch(pac, name, 0) == 0;
        if (g4q_glob_check(pat, NULL) != NULL || g4q_glob_match(pat, name) != wantb) {
            if (mismatches++ < 5)
                CHECK_MSG(0, "glob '%s' on '%s': want %d (fnmatch of both expansions)", pat,
                          name, wantb);
        }
    }
    CHECK_MSG(mismatches == 0, "%d glob mismatches against fnmatch", mismatches);
}

/* ---- the five public recipes ---- */

static g4q_recipe *load_public(g4q_ctx *ctx, const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/recipes/%s", G4Q_SOURCE_DIR, file);
    g4q_recipe *r = NULL;
    g4q_status st = g4q_recipe_load(ctx, path, &r);
    CHECK_MSG(st == G4Q_OK, "%s: %s", file, g4q_ctx_error(ctx));
    return r;
}

static void expect_decision(const g4q_recipe *r, const char *module, g4q_recipe_weights w,
                            g4q_recipe_search s, g4q_recipe_act a)
{
    g4q_recipe_decision d = g4q_recipe_match(r, module);
    CHECK_MSG(d.weights == w && (w == G4Q_RECIPE_W_BF16 || (d.search == s && d.act == a)),
              "%s: '%s' -> %s/%s/%s, want %s/%s/%s", r->name, module,
              g4q_recipe_weights_name(d.weights), g4q_recipe_search_name(d.search),
              g4q_recipe_act_name(d.act), g4q_recipe_weights_name(w),
              g4q_recipe_search_name(s), g4q_recipe_act_name(a));
}

static void expect_keep(const g4q_recipe *r, const char *module)
{
    expect_decision(r, module, G4Q_RECIPE_W_BF16, G4Q_RECIPE_SEARCH_MAX, G4Q_RECIPE_ACT_NONE);
}

/* Number of quantized modules, and those never quantized by any public recipe. */
static void check_common(g4q_ctx *ctx, const g4q_recipe *r, const names *ns, size_t want_q)
{
    CHECK_MSG(g4q_recipe_check_patterns(ctx, r, ns->ptr, ns->n) == G4Q_OK, "%s: %s", r->name,
              g4q_ctx_error(ctx));
    size_t q = 0;
    for (size_t i = 0; i < ns->n; i++)
        q += g4q_recipe_match(r, ns->ptr[i]).weights != G4Q_RECIPE_W_BF16;
    CHECK_MSG(q == want_q, "%s: %zu modules quantized, want %zu", r->name, q, want_q);
    expect_keep(r, "model.language_model.embed_tokens");
    expect_keep(r, "lm_head");
    expect_keep(r, "model.embed_vision.embedding_projection");
    expect_keep(r, "model.embed_audio.embedding_projection");
    expect_keep(r, "model.vision_embedder.patch_dense");
    expect_keep(r, "model.language_model.layers.3.self_attn.q_norm");
    expect_keep(r, "model.language_model.layers.3.input_layernorm");

    char *json = NULL;
    CHECK_STATUS(g4q_recipe_describe(ctx, r, &json), G4Q_OK);
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    CHECK_MSG(o != NULL, "%s: describe gave unparsable JSON", r->name);
    if (o) {
        cJSON *name = cJSON_GetObjectItem(o, "name");
        cJSON *rules = cJSON_GetObjectItem(o, "rules");
        cJSON *calib = cJSON_GetObjectItem(o, "calibration");
        cJSON *needed = calib ? cJSON_GetObjectItem(calib, "needed") : NULL;
        cJSON *ex = cJSON_GetObjectItem(o, "export");
        CHECK(cJSON_IsString(name) && !strcmp(name->valuestring, r->name));
        CHECK(cJSON_IsString(ex) &&
              !strcmp(ex->valuestring, g4q_recipe_export_name(r->export_format)));
        CHECK(cJSON_IsArray(rules) && cJSON_GetArraySize(rules) == r->n_rules);
        CHECK(cJSON_IsBool(needed) && cJSON_IsTrue(needed) == g4q_recipe_needs_calibration(r));
        CHECK(strchr(cJSON_GetObjectItem(o, "file")->valuestring, '/') == NULL);
        CHECK(strlen(cJSON_GetObjectItem(o, "sha256")->valuestring) == 64);
    }
    cJSON_Delete(o);
    free(json);
}

#define L(n, rest) "model.language_model.layers." #n "." rest

static void test_public_recipes(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    static names ns;
    make_12b_names(&ns);
    CHECK_EQ_INT(ns.n, 40 * 7 + 8 * 6 + 4);
    /* 48 layers x 3 MLP projections; all 328 text Linears (40 sliding x 7 + 8 full x 6). */
    const size_t mlp = 144, text = 328;
    const g4q_recipe_search MAX = G4Q_RECIPE_SEARCH_MAX, MSE = G4Q_RECIPE_SEARCH_MSE;
    const g4q_recipe_act NONE = G4Q_RECIPE_ACT_NONE, A4 = G4Q_RECIPE_ACT_NVFP4;

    g4q_recipe *r = load_public(&ctx, "nvfp4-mlp-only.yaml");
    if (r) {
        CHECK(r->export_format == G4Q_RECIPE_EXPORT_MODELOPT && !r->mixed);
        CHECK(r->kv_format == G4Q_RECIPE_KV_FP8 && r->kv_scales == G4Q_RECIPE_KV_SCALES_CAST);
        CHECK(g4q_recipe_needs_calibration(r)); /* W4A4 input scales */
        expect_keep(r, L(5, "self_attn.q_proj"));
        expect_keep(r, L(0, "self_attn.v_proj"));
        expect_decision(r, L(5, "mlp.gate_proj"), G4Q_RECIPE_W_NVFP4, MSE, A4);
        expect_decision(r, L(47, "mlp.down_proj"), G4Q_RECIPE_W_NVFP4, MSE, A4);
        expect_decision(r, L(10, "mlp.up_proj"), G4Q_RECIPE_W_NVFP4, MSE, A4);
        check_common(&ctx, r, &ns, mlp);
        g4q_recipe_free(r);
    }
    r = load_public(&ctx, "fp8-block.yaml");
    if (r) {
        CHECK(r->export_format == G4Q_RECIPE_EXPORT_MODELOPT && !r->mixed);
        CHECK(r->kv_format == G4Q_RECIPE_KV_FP8 && r->kv_scales == G4Q_RECIPE_KV_SCALES_CAST);
        CHECK(!g4q_recipe_needs_calibration(r)); /* weight-only, cast KV */
        CHECK_EQ_INT(r->calib.samples, 2048);
        expect_decision(r, L(5, "self_attn.q_proj"), G4Q_RECIPE_W_FP8_BLOCK, MSE, NONE);
        expect_decision(r, L(5, "self_attn.k_proj"), G4Q_RECIPE_W_FP8_BLOCK, MSE, NONE);
        expect_decision(r, L(0, "self_attn.v_proj"), G4Q_RECIPE_W_FP8_BLOCK, MSE, NONE);
        expect_decision(r, L(33, "mlp.down_proj"), G4Q_RECIPE_W_FP8_BLOCK, MSE, NONE);
        check_common(&ctx, r, &ns, text);
        g4q_recipe_free(r);
    }
    r = load_public(&ctx, "nvfp4.yaml");
    if (r) {
        CHECK(r->export_format == G4Q_RECIPE_EXPORT_MODELOPT && !r->mixed);
        CHECK(r->kv_format == G4Q_RECIPE_KV_NONE);
        CHECK(g4q_recipe_needs_calibration(r));
        CHECK(r->calib.samples == 512 && r->calib.seq_len == 1024 && r->calib.batch == 4);
        expect_decision(r, L(5, "self_attn.q_proj"), G4Q_RECIPE_W_NVFP4, MAX, A4);
        expect_decision(r, L(5, "self_attn.o_proj"), G4Q_RECIPE_W_NVFP4, MAX, A4);
        expect_decision(r, L(4, "self_attn.v_proj"), G4Q_RECIPE_W_NVFP4, MAX, A4);
        expect_decision(r, L(4, "mlp.gate_proj"), G4Q_RECIPE_W_NVFP4, MAX, A4);
        check_common(&ctx, r, &ns, text);
        g4q_recipe_free(r);
    }
    r = load_public(&ctx, "nvfp4a16.yaml");
    if (r) {
        CHECK(r->export_format == G4Q_RECIPE_EXPORT_COMPRESSED_TENSORS && !r->mixed);
        CHECK(r->kv_format == G4Q_RECIPE_KV_NONE);
        CHECK(!g4q_recipe_needs_calibration(r));
        expect_decision(r, L(5, "self_attn.q_proj"), G4Q_RECIPE_W_NVFP4, MAX, NONE);
        expect_decision(r, L(20, "mlp.up_proj"), G4Q_RECIPE_W_NVFP4, MAX, NONE);
        /* patch_dense is kept by an explicit bf16 rule (the recipe's comment says why). */
        CHECK_EQ_INT(g4q_recipe_match(r, "model.vision_embedder.patch_dense").rule, 1);
        check_common(&ctx, r, &ns, text);
        g4q_recipe_free(r);
    }
    r = load_public(&ctx, "int4-mlp-only.yaml");
    if (r) {
        CHECK(r->export_format == G4Q_RECIPE_EXPORT_GPTQ && !r->mixed);
        CHECK(r->kv_format == G4Q_RECIPE_KV_NONE);
        CHECK(!g4q_recipe_needs_calibration(r));
        expect_keep(r, L(5, "self_attn.q_proj"));
        expect_decision(r, L(5, "mlp.gate_proj"), G4Q_RECIPE_W_INT4, MAX, NONE);
        check_common(&ctx, r, &ns, mlp);
        g4q_recipe_free(r);
    }
}

/* ---- validation errors on small inline recipes ---- */

static char g_dir[512];
static int g_count;

/* Writes yaml to a fresh file and loads it; returns the status, the recipe in *out (or NULL) and
 * the path in path. */
static g4q_status load_text(g4q_ctx *ctx, const char *yaml, char *path, size_t n,
                            g4q_recipe **out)
{
    snprintf(path, n, "%s/r%d.yaml", g_dir, g_count++);
    CHECK_STATUS(g4q_write_file(ctx, path, yaml, strlen(yaml)), G4Q_OK);
    return g4q_recipe_load(ctx, path, out);
}

/* Expects status want, a message starting with "path:line:" and containing each of up to two
 * fragments. */
static void expect_error(const char *yaml, g4q_status want, int line, const char *frag1,
                         const char *frag2)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char path[600], prefix[700];
    g4q_recipe *r = NULL;
    g4q_status st = load_text(&ctx, yaml, path, sizeof path, &r);
    CHECK_MSG(st == want, "got %s, want %s for:\n%s(message: %s)", g4q_status_name(st),
              g4q_status_name(want), yaml, g4q_ctx_error(&ctx));
    CHECK(r == NULL);
    g4q_recipe_free(r);
    snprintf(prefix, sizeof prefix, "%s:%d:", path, line);
    char msg[G4Q_ERR_MSG_MAX];
    snprintf(msg, sizeof msg, "%s", g4q_ctx_error(&ctx));
    CHECK_MSG(strncmp(msg, prefix, strlen(prefix)) == 0, "message '%s' does not start with '%s'",
              msg, prefix);
    if (frag1)
        CHECK_MSG(strstr(msg, frag1) != NULL, "message '%s' lacks '%s'", msg, frag1);
    if (frag2)
        CHECK_MSG(strstr(msg, frag2) != NULL, "message '%s' lacks '%s'", msg, frag2);
}

static g4q_recipe *expect_ok(const char *yaml)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char path[600];
    g4q_recipe *r = NULL;
    g4q_status st = load_text(&ctx, yaml, path, sizeof path, &r);
    CHECK_MSG(st == G4Q_OK, "unexpected error %s for:\n%s", g4q_ctx_error(&ctx), yaml);
    return r;
}

#define HEAD "name: t\nexport: modelopt\n"
#define RULE_W4A16 "rules:\n  - pattern: \"m.*.mlp.*\"\n    weights: nvfp4\n"

static void test_errors_schema(void)
{
    const g4q_status INV = G4Q_ERR_INVALID;
    /* Unknown keys at every level, listing the allowed ones. */
    expect_error(HEAD RULE_W4A16 "rulez: []\n", INV, 6, "unknown key 'rulez'",
                 "allowed keys: name, description, export, rules");
    expect_error(HEAD "rules:\n  - pattern: a\n    weight: nvfp4\n", INV, 5,
                 "unknown key 'weight'",
                 "pattern, weights, scale_search, algorithm, activations, smoothing");
    expect_error(HEAD RULE_W4A16 "kv_cache:\n  format: fp8\n  scale: cast\n", INV, 8,
                 "unknown key 'scale'", "format, scales");
    expect_error(HEAD RULE_W4A16 "calibration:\n  dataset: x\n  samples: 4\n  seq_len: 8\n"
                                 "  sample: 3\n",
                 INV, 10, "unknown key 'sample'", "dataset, samples, seq_len, batch, seed");
    /* Wrong types. */
    expect_error(HEAD "rules: nvfp4\n", INV, 3, "expected a sequence", NULL);
    expect_error(HEAD "rules:\n  - nvfp4\n", INV, 4, "expected a mapping", NULL);
    expect_error("- a\n- b\n", INV, 1, "expected a mapping", NULL);
    expect_error("name: [a]\nexport: modelopt\n" RULE_W4A16, INV, 1, "expected a string", NULL);
    expect_error("name: ~\nexport: modelopt\n" RULE_W4A16, INV, 1, "expected a string", NULL);
    expect_error(HEAD RULE_W4A16 "exclude: lm_head\n", INV, 6, "expected a sequence", NULL);
    expect_error(HEAD RULE_W4A16 "kv_cache: fp8\n", INV, 6, "expected a mapping", NULL);
    expect_error(HEAD RULE_W4A16 "calibration:\n  dataset: x\n  samples: \"512\"\n  seq_len: 8\n",
                 INV, 8, "expected an integer", "quoted");
    expect_error(HEAD RULE_W4A16 "calibration:\n  dataset: x\n  samples: 1.5\n  seq_len: 8\n",
                 INV, 8, "expected an integer", NULL);
    expect_error(HEAD RULE_W4A16 "calibration:\n  dataset: x\n  samples: 0\n  seq_len: 8\n", INV,
                 8, "out of range", NULL);
    expect_error(HEAD RULE_W4A16 "calibration:\n  dataset: x\n  samples: 4\n  seq_len: 8\n"
                                 "  batch: 5\n",
                 INV, 10, "out of range [1, 4]", NULL);
    /* Bad enum values list the valid ones. */
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp8\n", INV, 5,
                 "unknown value 'nvfp8'", "bf16, nvfp4, fp8, fp8-block, int4");
    expect_error("name: t\nexport: onnx\n" RULE_W4A16, INV, 2, "unknown value 'onnx'",
                 "modelopt, compressed-tensors, gptq");
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    scale_search: l2\n", INV,
                 6, "unknown value 'l2'", "max, mse, four-over-six");
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    activations: int8\n", INV,
                 6, "unknown value 'int8'", "none, nvfp4, fp8");
    expect_error(HEAD RULE_W4A16 "kv_cache:\n  format: fp16\n", INV, 7, "unknown value 'fp16'",
                 "none, fp8");
    expect_error(HEAD RULE_W4A16 "kv_cache:\n  format: fp8\n  scales: amax\n", INV, 8,
                 "unknown value 'amax'", "cast, calibrated");
    /* Missing required keys (reported at the mapping that lacks them). */
    expect_error("export: modelopt\n" RULE_W4A16, INV, 1, "missing required key 'name'", NULL);
    expect_error("name: t\n" RULE_W4A16, INV, 1, "missing required key 'export'", NULL);
    expect_error(HEAD, INV, 1, "missing required key 'rules'", NULL);
    expect_error(HEAD "rules:\n  - weights: nvfp4\n", INV, 4, "missing required key 'pattern'",
                 NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n", INV, 4, "missing required key 'weights'",
                 NULL);
    expect_error(HEAD RULE_W4A16 "calibration:\n  samples: 4\n  seq_len: 8\n", INV, 7,
                 "missing required key 'dataset'", NULL);
    expect_error(HEAD "rules: []\n", INV, 3, "at least one rule", NULL);
    /* Duplicate keys, at the top and inside a rule. */
    expect_error(HEAD "name: u\n" RULE_W4A16, INV, 3, "duplicate key 'name'", "line 1");
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    weights: fp8\n", INV, 6,
                 "duplicate key 'weights'", NULL);
    /* Bad glob syntax in a rule and in an exclude. */
    expect_error(HEAD "rules:\n  - pattern: \"layers.[abc\"\n    weights: nvfp4\n", INV, 4,
                 "unclosed '['", NULL);
    expect_error(HEAD RULE_W4A16 "exclude:\n  - \"a{b\"\n", INV, 7, "unclosed '{'", NULL);
    /* YAML syntax errors, empty files and second documents. */
    expect_error("name: t\nexport: modelopt\n  bad: indent: here\n", G4Q_ERR_FORMAT, 3,
                 "YAML syntax error", NULL);
    expect_error("name: t\nrules: [a, b\n", G4Q_ERR_FORMAT, 3, "YAML syntax error", NULL);
    expect_error("# only a comment\n", INV, 1, "empty recipe", NULL);
    expect_error(HEAD RULE_W4A16 "---\nname: again\n", INV, 7, "one YAML document", NULL);
}

static void test_errors_combinations(void)
{
    const g4q_status INV = G4Q_ERR_INVALID;
    /* int4 cannot go to ModelOpt (vLLM cannot load W4A16_AWQ); nvfp4 cannot go to GPTQ. */
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: int4\n", INV, 5, "W4A16_AWQ",
                 "gptq");
    expect_error("name: t\nexport: gptq\nrules:\n  - pattern: a\n    weights: nvfp4\n", INV, 5,
                 "int4 weights only", NULL);
    expect_error("name: t\nexport: compressed-tensors\nrules:\n  - pattern: a\n"
                 "    weights: fp8-block\n",
                 INV, 5, "compressed-tensors", NULL);
    /* Scale searches and activation formats a weight format does not define. */
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: fp8-block\n"
                      "    scale_search: four-over-six\n",
                 INV, 6, "nvfp4 weights only", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: fp8\n", INV, 4, "W8A8", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: fp8-block\n    activations: fp8\n",
                 INV, 6, "weight-only", NULL);
    expect_error("name: t\nexport: gptq\nrules:\n  - pattern: a\n    weights: int4\n"
                 "    activations: nvfp4\n",
                 INV, 6, "weight-only", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    activations: fp8\n", INV,
                 6, "not fp8", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: bf16\n    scale_search: mse\n", INV,
                 6, "remove 'scale_search'", NULL);
    /* algorithm gptq: not on bf16 or fp8 per-tensor rules, and only with a calibration. */
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: bf16\n    algorithm: gptq\n", INV, 6,
                 "remove 'algorithm'", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: fp8\n    activations: fp8\n"
                      "    algorithm: gptq\n",
                 INV, 7, "not fp8 per-tensor", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    algorithm: gptq\n", INV, 1,
                 "missing required key 'calibration'", "algorithm gptq");
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    algorithm: sgd\n", INV, 6,
                 "rtn, gptq", NULL);
    /* Weighted scale searches: not on fp8 per-tensor, and they need calibration. */
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: fp8\n    activations: fp8\n"
                      "    scale_search: hessian\n",
                 INV, 7, "not fp8 per-tensor", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    scale_search: imatrix\n",
                 INV, 1, "missing required key 'calibration'", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    scale_search: hessian\n"
                      "calibration:\n  dataset: builtin:default\n  samples: 1\n  seq_len: 8\n"
                      "  sequential: yes\n",
                 INV, 11, "false, true", NULL);
    {
        g4q_recipe *r = expect_ok("name: t\nexport: gptq\nrules:\n  - pattern: a\n    weights: int4\n"
                                       "    scale_search: hessian\n    algorithm: gptq\n"
                                       "calibration:\n  dataset: builtin:default\n  samples: 1\n"
                                       "  seq_len: 8\n  sequential: true\n");
        if (r) {
            CHECK(r->rules[0].search == G4Q_RECIPE_SEARCH_HESSIAN);
            CHECK(r->calib.sequential == 1);
            CHECK(g4q_recipe_needs_calibration(r));
        }
        g4q_recipe_free(r);
    }
    /* smoothing awq: not on bf16 rules, a known value, and it needs calibration. */
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: bf16\n    smoothing: awq\n", INV, 6,
                 "remove 'smoothing'", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    smoothing: gptq\n", INV, 6,
                 "none, awq", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    smoothing: awq\n", INV, 1,
                 "missing required key 'calibration'", "smoothing awq");
    {
        g4q_recipe *r = expect_ok("name: t\nexport: modelopt\nrules:\n  - pattern: a\n"
                                  "    weights: nvfp4\n    smoothing: awq\n"
                                  "calibration:\n  dataset: builtin:default\n  samples: 1\n"
                                  "  seq_len: 8\n");
        if (r) {
            CHECK(r->rules[0].smooth == G4Q_RECIPE_SMOOTH_AWQ);
            CHECK(g4q_recipe_needs_calibration(r));
            CHECK(g4q_recipe_match(r, "a").smooth == G4Q_RECIPE_SMOOTH_AWQ);
        }
        g4q_recipe_free(r);
    }
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: bf16\n", INV, 4, "no rule quantizes",
                 NULL);
    /* KV-cache quantization only through ModelOpt; scales only with format fp8. */
    expect_error("name: t\nexport: gptq\nrules:\n  - pattern: a\n    weights: int4\n"
                 "kv_cache:\n  format: fp8\n",
                 INV, 7, "--kv-cache-dtype fp8", NULL);
    expect_error(HEAD RULE_W4A16 "kv_cache:\n  format: none\n  scales: cast\n", INV, 8,
                 "only applies", NULL);
    /* Calibration is required as soon as something needs it. */
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n    activations: nvfp4\n",
                 INV, 1, "missing required key 'calibration'", "rules[1]");
    expect_error(HEAD RULE_W4A16 "kv_cache:\n  format: fp8\n  scales: calibrated\n", INV, 1,
                 "missing required key 'calibration'", "kv_cache");
    /* Mixed formats: an error outside ModelOpt, and with fp8-block; else MIXED_PRECISION. */
    expect_error("name: t\nexport: compressed-tensors\nrules:\n  - pattern: a\n"
                 "    weights: nvfp4\n  - pattern: b\n    weights: int4\n",
                 INV, 6, "MIXED_PRECISION", NULL);
    expect_error(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n  - pattern: b\n"
                      "    weights: fp8-block\n",
                 INV, 6, "not fp8-block", NULL);

    g4q_recipe *r = expect_ok(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n"
                                   "    activations: nvfp4\n  - pattern: b\n    weights: fp8\n"
                                   "    activations: fp8\n  - pattern: c\n    weights: nvfp4\n"
                                   "calibration:\n  dataset: data/c.jsonl\n  samples: 8\n"
                                   "  seq_len: 16\n");
    if (r) {
        CHECK(r->mixed);
        CHECK(g4q_recipe_needs_calibration(r));
        CHECK(r->calib.batch == 1 && r->calib.seed == 0);
        /* A relative dataset path is taken from the recipe's folder. */
        char want[700];
        snprintf(want, sizeof want, "%s/data/c.jsonl", g_dir);
        CHECK_MSG(!strcmp(r->calib.dataset_path, want), "dataset_path %s, want %s",
                  r->calib.dataset_path, want);
        g4q_recipe_free(r);
    }
    r = expect_ok(HEAD "rules:\n  - pattern: a\n    weights: nvfp4\n"
                       "    scale_search: four-over-six\n"
                       "kv_cache:\n  format: fp8\n  scales: calibrated\n"
                       "calibration:\n  dataset: builtin:default\n  samples: 8\n  seq_len: 16\n"
                       "  seed: 7\n");
    if (r) {
        CHECK(!r->mixed);
        CHECK(g4q_recipe_needs_calibration(r)); /* calibrated KV scales */
        CHECK(r->rules[0].search == G4Q_RECIPE_SEARCH_FOUR_OVER_SIX);
        CHECK(!strcmp(r->calib.dataset_path, "builtin:default") && r->calib.seed == 7);
        g4q_recipe_free(r);
    }
}

/* Many short entries and repeated aliases of a long string: the arena is sized from the document,
 * not from the file length. */
static void test_sizes(void)
{
    static char yaml[64 * 1024];
    size_t n = (size_t)snprintf(yaml, sizeof yaml, HEAD "rules: [");
    for (int i = 0; i < 700; i++)
        n += (size_t)snprintf(yaml + n, sizeof yaml - n, "%s{pattern: a%d, weights: nvfp4}",
                              i ? "," : "", i);
    n += (size_t)snprintf(yaml + n, sizeof yaml - n, "]\nexclude: [&x \"");
    for (int i = 0; i < 900; i++)
        yaml[n++] = (char)('a' + i % 26);
    n += (size_t)snprintf(yaml + n, sizeof yaml - n, "\"");
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(yaml + n, sizeof yaml - n, ",*x");
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(yaml + n, sizeof yaml - n, ",b");
    snprintf(yaml + n, sizeof yaml - n, "]\n");
    g4q_recipe *r = expect_ok(yaml);
    if (r) {
        CHECK_EQ_INT(r->n_rules, 700);
        CHECK_EQ_INT(r->n_excludes, 4001);
        CHECK_EQ_INT(strlen(r->excludes[2000].pattern), 900);
        CHECK(g4q_recipe_match(r, "a699").rule == 699);
        CHECK(g4q_recipe_match(r, "b").exclude == 2001);
        g4q_recipe_free(r);
    }
}

/* Rule patterns checked against a model's module names once it is known. */
static void test_check_patterns(void)
{
    static names ns;
    make_12b_names(&ns);
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    ctx.log_level = G4Q_LOG_ERROR; /* the unmatched exclude below only warns */
    char path[600], prefix[700];
    g4q_recipe *r = NULL;
    /* Rule 2 (line 6) matches nothing: "mlp.gate" lacks "_proj". */
    g4q_status st = load_text(&ctx,
                              HEAD "rules:\n  - pattern: \"*.self_attn.q_proj\"\n"
                                   "    weights: nvfp4\n  - pattern: \"*.mlp.gate\"\n"
                                   "    weights: nvfp4\n",
                              path, sizeof path, &r);
    CHECK_STATUS(st, G4Q_OK);
    if (r) {
        CHECK_STATUS(g4q_recipe_check_patterns(&ctx, r, ns.ptr, ns.n), G4Q_ERR_INVALID);
        snprintf(prefix, sizeof prefix, "%s:6:14: rules[2]", path);
        CHECK_MSG(!strncmp(g4q_ctx_error(&ctx), prefix, strlen(prefix)) &&
                      strstr(g4q_ctx_error(&ctx), "matches none"),
                  "message '%s', want prefix '%s'", g4q_ctx_error(&ctx), prefix);
        g4q_recipe_free(r);
    }
    /* Rule 2 only matches what the exclude (line 9) and rule 1 take: a dead rule. */
    st = load_text(&ctx,
                   HEAD "rules:\n  - pattern: \"*.mlp.*\"\n    weights: nvfp4\n"
                        "  - pattern: \"*.layers.1.mlp.*\"\n    weights: nvfp4\n"
                        "exclude:\n  - \"*.layers.1.*\"\n  - \"no.such.module\"\n",
                   path, sizeof path, &r);
    CHECK_STATUS(st, G4Q_OK);
    if (r) {
        g4q_recipe_decision d = g4q_recipe_match(r, L(1, "mlp.up_proj"));
        CHECK(d.weights == G4Q_RECIPE_W_BF16 && d.exclude == 0 && d.rule == -1);
        d = g4q_recipe_match(r, L(10, "mlp.up_proj"));
        CHECK(d.weights == G4Q_RECIPE_W_NVFP4 && d.exclude == -1 && d.rule == 0);
        CHECK_STATUS(g4q_recipe_check_patterns(&ctx, r, ns.ptr, ns.n), G4Q_ERR_INVALID);
        snprintf(prefix, sizeof prefix, "%s:6:14:", path);
        CHECK_MSG(!strncmp(g4q_ctx_error(&ctx), prefix, strlen(prefix)) &&
                      strstr(g4q_ctx_error(&ctx), "decides none") &&
                      strstr(g4q_ctx_error(&ctx), "line 9"),
                  "message '%s'", g4q_ctx_error(&ctx));
        g4q_recipe_free(r);
    }
    /* Without the dead rule the same excludes pass; the unmatched one only warns. */
    st = load_text(&ctx,
                   HEAD "rules:\n  - pattern: \"*.mlp.*\"\n    weights: nvfp4\n"
                        "exclude:\n  - \"*.layers.1.*\"\n  - \"no.such.module\"\n",
                   path, sizeof path, &r);
    CHECK_STATUS(st, G4Q_OK);
    if (r) {
        CHECK_STATUS(g4q_recipe_check_patterns(&ctx, r, ns.ptr, ns.n), G4Q_OK);
        /* On a model with none of the modules, the rule matches nothing. */
        const char *other[] = {"model.layers.0.self_attn.q_proj"};
        CHECK_STATUS(g4q_recipe_check_patterns(&ctx, r, other, 1), G4Q_ERR_INVALID);
        g4q_recipe_free(r);
    }
}

int main(void)
{
    g4q_test_tmpdir(g_dir, sizeof g_dir, "recipe");
    test_glob_fixed();
    test_glob_random();
    test_public_recipes();
    test_errors_schema();
    test_errors_combinations();
    test_sizes();
    test_check_patterns();
    return g4q_test_finish();
}
