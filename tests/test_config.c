/* Tests of src/model/config: both per-layer forms of the 12B config (the 5.17 form written by
 * transformers itself, tests/data/gemma4_12b_config_517.json), tiny and text-only configs written
 * by transformers, defaults, every refusal, malformed JSON, missing keys and bad types, and a
 * random sweep that checks the two per-layer forms resolve identically. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "testutil.h"

static char *read_data(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/%s", G4Q_SOURCE_DIR, name);
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char *text = NULL;
    size_t len;
    if (g4q_read_file(&ctx, path, 1 << 20, &text, &len) != G4Q_OK) {
        fprintf(stderr, "cannot read %s: %s\n", path, g4q_ctx_error(&ctx));
        exit(1);
    }
    return text;
}

/* base with obj[key] replaced by val (val NULL: key deleted); obj is "text_config" or NULL for
 * the root. Returns a malloc'd string. */
static char *mutate(const char *base, const char *obj, const char *key, cJSON *val)
{
    cJSON *root = cJSON_Parse(base);
    cJSON *o = obj ? cJSON_GetObjectItemCaseSensitive(root, obj) : root;
    if (val && cJSON_GetObjectItemCaseSensitive(o, key))
        cJSON_ReplaceItemInObjectCaseSensitive(o, key, val);
    else if (val)
        cJSON_AddItemToObject(o, key, val);
    else
        cJSON_DeleteItemFromObjectCaseSensitive(o, key);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static g4q_status parse(const char *json, g4q_config *c, g4q_ctx *ctx)
{
    g4q_ctx_init(ctx);
    ctx->log_level = G4Q_LOG_ERROR; /* keep the forced-last-layer warning quiet */
    return g4q_config_parse(ctx, "config.json", json, c);
}

/* Parses json (freed here), expects `want` and a message containing both substrings. */
static void expect_fail(char *json, g4q_status want, const char *sub1, const char *sub2)
{
    g4q_ctx ctx;
    static g4q_config c;
    g4q_status st = parse(json, &c, &ctx);
    CHECK_STATUS(st, want);
    const char *m = g4q_ctx_error(&ctx);
    if (!m) m = "";
    CHECK_MSG(strncmp(m, "config.json: ", 13) == 0, "message names the file: %s", m);
    if (sub1) CHECK_MSG(strstr(m, sub1) != NULL, "message lacks '%s': %s", sub1, m);
    if (sub2) CHECK_MSG(strstr(m, sub2) != NULL, "message lacks '%s': %s", sub2, m);
    free(json);
}

static int same_layers(const g4q_config *a, const g4q_config *b)
{
    if (a->n_layers != b->n_layers) return 0;
    for (int i = 0; i < a->n_layers; i++) {
        const g4q_layer_config *x = &a->layers[i], *y = &b->layers[i];
        if (x->type != y->type || x->head_dim != y->head_dim || x->n_kv_heads != y->n_kv_heads ||
            x->has_v_proj != y->has_v_proj || x->rope_angles != y->rope_angles ||
            x->rope.type != y->rope.type || x->rope.theta != y->rope.theta ||
            x->rope.partial_rotary_factor != y->rope.partial_rotary_factor) {
            fprintf(stderr, "layer %d differs\n", i);
            return 0;
        }
    }
    return 1;
}

static void check_12b(const g4q_config *c)
{
    CHECK_EQ_INT(c->text_only, 0);
    CHECK(strcmp(c->prefix, "model.language_model.") == 0);
    CHECK_EQ_INT(c->vocab_size, 262144);
    CHECK_EQ_INT(c->hidden, 3840);
    CHECK_EQ_INT(c->intermediate, 15360);
    CHECK_EQ_INT(c->n_layers, 48);
    CHECK_EQ_INT(c->n_heads, 16);
    CHECK_EQ_INT(c->sliding_window, 1024);
    CHECK_EQ_INT(c->attention_k_eq_v, 1);
    CHECK_EQ_INT(c->tie_word_embeddings, 1);
    CHECK(c->rms_norm_eps == 1e-6);
    CHECK(c->final_logit_softcapping == 30.0);
    CHECK(c->embed_scale == 62.0); /* gemma4.md §4.1 */
    CHECK_EQ_INT(c->pad_id, 0);
    CHECK_EQ_INT(c->eos_id, 1);
    CHECK_EQ_INT(c->bos_id, 2);
    CHECK_EQ_INT(c->max_position_embeddings, 262144);
    CHECK_EQ_INT(c->has_multimodal, 1);
    CHECK_EQ_INT(c->vision_patch_dim, 6912);
    CHECK_EQ_INT(c->vision_pos_size, 1120);
    CHECK_EQ_INT(c->vision_embed_dim, 3840);
    CHECK_EQ_INT(c->vision_proj_dim, 3840);
    CHECK_EQ_INT(c->audio_embed_dim, 640);
    CHECK_EQ_INT(g4q_config_count_layers(c, G4Q_LAYER_FULL), 8);
    CHECK_EQ_INT(g4q_config_count_layers(c, G4Q_LAYER_SLIDING), 40);
    for (int i = 0; i < 48; i++) {
        const g4q_layer_config *l = &c->layers[i];
        int full = i % 6 == 5;
        CHECK_EQ_INT(l->type, full ? G4Q_LAYER_FULL : G4Q_LAYER_SLIDING);
        CHECK_EQ_INT(l->head_dim, full ? 512 : 256);
        CHECK_EQ_INT(l->n_kv_heads, full ? 1 : 8);
        CHECK_EQ_INT(l->has_v_proj, full ? 0 : 1);
        CHECK_EQ_INT(l->rope_angles, full ? 64 : 128);
        CHECK_EQ_INT(l->rope.type, full ? G4Q_ROPE_PROPORTIONAL : G4Q_ROPE_DEFAULT);
        CHECK(l->rope.theta == (full ? 1e6 : 1e4));
        CHECK(l->rope.partial_rotary_factor == (full ? 0.25 : 1.0));
    }
}

static void test_12b_forms(void)
{
    char *shipped = read_data("gemma4_12b_config.json");
    char *v517 = read_data("gemma4_12b_config_517.json");
    static g4q_config a, b, d;
    g4q_ctx ctx;
    CHECK_STATUS(parse(shipped, &a, &ctx), G4Q_OK);
    check_12b(&a);
    CHECK_EQ_INT(a.per_layer_form, 0);
    CHECK_STATUS(parse(v517, &b, &ctx), G4Q_OK);
    check_12b(&b);
    CHECK_EQ_INT(b.per_layer_form, 1);
    CHECK(same_layers(&a, &b));

    /* layer_types and rope_parameters left out: the defaults of 5.17 are the 12B's values. */
    char *s1 = mutate(shipped, "text_config", "layer_types", NULL);
    char *s2 = mutate(s1, "text_config", "rope_parameters", NULL);
    CHECK_STATUS(parse(s2, &d, &ctx), G4Q_OK);
    CHECK(same_layers(&a, &d));
    free(s1);
    free(s2);

    /* Without vision/audio configs: no multimodal tensors. */
    s1 = mutate(shipped, NULL, "vision_config", NULL);
    s2 = mutate(s1, NULL, "audio_config", NULL);
    CHECK_STATUS(parse(s2, &d, &ctx), G4Q_OK);
    CHECK_EQ_INT(d.has_multimodal, 0);
    CHECK_EQ_INT(d.vision_patch_dim, 0);
    free(s1);
    free(s2);

    /* attention_k_eq_v false: full layers use num_key_value_heads and keep v_proj. */
    s1 = mutate(shipped, "text_config", "attention_k_eq_v", cJSON_CreateFalse());
    CHECK_STATUS(parse(s1, &d, &ctx), G4Q_OK);
    CHECK_EQ_INT(d.layers[5].n_kv_heads, 8);
    CHECK_EQ_INT(d.layers[5].head_dim, 512);
    CHECK_EQ_INT(d.layers[5].has_v_proj, 1);
    free(s1);

    /* global_head_dim defaults to 512 when absent. */
    s1 = mutate(shipped, "text_config", "global_head_dim", NULL);
    CHECK_STATUS(parse(s1, &d, &ctx), G4Q_OK);
    CHECK(same_layers(&a, &d));
    free(s1);

    /* eos_token_id as a list: the first is kept. */
    cJSON *eos = cJSON_CreateArray();
    cJSON_AddItemToArray(eos, cJSON_CreateNumber(1));
    cJSON_AddItemToArray(eos, cJSON_CreateNumber(106));
    s1 = mutate(shipped, "text_config", "eos_token_id", eos);
    CHECK_STATUS(parse(s1, &d, &ctx), G4Q_OK);
    CHECK_EQ_INT(d.eos_id, 1);
    free(s1);

    /* partial_rotary_factor 0.3 on hd 512: int(0.3 * 512 / 2) = int(76.8) = 76. */
    s1 = mutate(shipped, "text_config", "rope_parameters",
                cJSON_Parse("{\"full_attention\": {\"rope_type\": \"proportional\", "
                            "\"rope_theta\": 5e5, \"partial_rotary_factor\": 0.3}}"));
    CHECK_STATUS(parse(s1, &d, &ctx), G4Q_OK);
    CHECK_EQ_INT(d.layers[5].rope_angles, 76);
    CHECK(d.layers[5].rope.theta == 5e5);
    CHECK(d.layers[0].rope.theta == 1e4); /* sliding entry absent: default */
    free(s1);
    free(shipped);
    free(v517);
}

/* Configs written by transformers 5.17 save_pretrained (scripts/oracle/gemma4_layout.py). */
static void test_tiny_from_transformers(void)
{
    static g4q_config c, t;
    g4q_ctx ctx;
    char *s = read_data("gemma4_tiny_config.json");
    CHECK_STATUS(parse(s, &c, &ctx), G4Q_OK);
    CHECK_EQ_INT(c.n_layers, 6);
    CHECK_EQ_INT(c.per_layer_form, 1);
    for (int i = 0; i < 6; i++) {
        int full = i == 5;
        CHECK_EQ_INT(c.layers[i].head_dim, full ? 64 : 32);
        CHECK_EQ_INT(c.layers[i].n_kv_heads, full ? 1 : 2);
        CHECK_EQ_INT(c.layers[i].has_v_proj, !full);
        CHECK_EQ_INT(c.layers[i].rope_angles, full ? 8 : 16);
    }
    CHECK_EQ_INT(c.vision_patch_dim, 192);
    CHECK_EQ_INT(c.vision_embed_dim, 96);
    CHECK_EQ_INT(c.vision_proj_dim, 112);
    CHECK_EQ_INT(c.vision_pos_size, 40);
    CHECK_EQ_INT(c.audio_embed_dim, 48);
    CHECK(c.embed_scale == 11.3125); /* sqrt(128) = 11.3137 -> bf16 11.3125 */
    free(s);

    s = read_data("gemma4_tinytext_config.json");
    CHECK_STATUS(parse(s, &t, &ctx), G4Q_OK);
    CHECK_EQ_INT(t.text_only, 1);
    CHECK(strcmp(t.prefix, "model.") == 0);
    CHECK_EQ_INT(t.has_multimodal, 0);
    CHECK(same_layers(&c, &t));
    free(s);
}

/* Default layer_types as transformers 5.17 printed them for 7 and 13 layers. */
static void test_default_layer_types(void)
{
    char *base = read_data("gemma4_tiny_config.json");
    char *s0 = mutate(base, "text_config", "layer_types", NULL);
    char *s1 = mutate(s0, "text_config", "per_layer_config", NULL);
    static g4q_config c;
    g4q_ctx ctx;
    for (int n = 1; n <= 13; n++) {
        char *s = mutate(s1, "text_config", "num_hidden_layers", cJSON_CreateNumber(n));
        CHECK_STATUS(parse(s, &c, &ctx), G4Q_OK);
        for (int i = 0; i < n; i++) {
            int full = (i % 6 == 5) || i == n - 1;
            CHECK_MSG(c.layers[i].type == (full ? G4Q_LAYER_FULL : G4Q_LAYER_SLIDING),
                      "n=%d layer %d type %d", n, i, c.layers[i].type);
        }
        free(s);
    }
    /* 7 layers: transformers gave [s, s, s, s, s, full, full]. */
    char *s = mutate(s1, "text_config", "num_hidden_layers", cJSON_CreateNumber(7));
    CHECK_STATUS(parse(s, &c, &ctx), G4Q_OK);
    CHECK_EQ_INT(c.layers[5].type, G4Q_LAYER_FULL);
    CHECK_EQ_INT(c.layers[6].type, G4Q_LAYER_FULL);
    CHECK_EQ_INT(c.layers[4].type, G4Q_LAYER_SLIDING);
    free(s);
    /* An explicit layer_types whose last entry is sliding: forced to full, as transformers does. */
    cJSON *lt = cJSON_CreateArray();
    for (int i = 0; i < 6; i++)
        cJSON_AddItemToArray(lt, cJSON_CreateString("sliding_attention"));
    s = mutate(base, "text_config", "layer_types", lt);
    CHECK_STATUS(parse(s, &c, &ctx), G4Q_OK);
    CHECK_EQ_INT(c.layers[5].type, G4Q_LAYER_FULL);
    CHECK_EQ_INT(c.layers[0].type, G4Q_LAYER_SLIDING);
    free(s);
    free(s0);
    free(s1);
    free(base);
}

static void test_per_layer_config_errors(void)
{
    char *base = read_data("gemma4_tiny_config.json");
    expect_fail(
        mutate(base, "text_config", "per_layer_config", cJSON_Parse("{\"6\": {\"head_dim\": 64}}")),
        G4Q_ERR_INVALID, "text_config.per_layer_config", "'6'");
    expect_fail(mutate(base, "text_config", "per_layer_config",
                       cJSON_Parse("{\"x5\": {\"head_dim\": 64}}")),
                G4Q_ERR_INVALID, "text_config.per_layer_config", "'x5'");
    expect_fail(mutate(base, "text_config", "per_layer_config",
                       cJSON_Parse("{\"-1\": {\"head_dim\": 64}}")),
                G4Q_ERR_INVALID, "text_config.per_layer_config", "'-1'");
    expect_fail(mutate(base, "text_config", "per_layer_config",
                       cJSON_Parse("{\"5\": {\"head_dim\": 64}, \"05\": {\"head_dim\": 64}}")),
                G4Q_ERR_INVALID, "text_config.per_layer_config", "second time");
    expect_fail(mutate(base, "text_config", "per_layer_config", cJSON_Parse("{\"5\": 64}")),
                G4Q_ERR_FORMAT, "text_config.per_layer_config.5", "object");
    expect_fail(mutate(base, "text_config", "per_layer_config",
                       cJSON_Parse("{\"5\": {\"intermediate_size\": 64}}")),
                G4Q_ERR_UNSUPPORTED, "text_config.per_layer_config.5.intermediate_size", NULL);
    expect_fail(
        mutate(base, "text_config", "per_layer_config", cJSON_Parse("{\"5\": {\"head_dim\": 0}}")),
        G4Q_ERR_INVALID, "text_config.per_layer_config.5.head_dim", NULL);
    expect_fail(mutate(base, "text_config", "per_layer_config",
                       cJSON_Parse("{\"5\": {\"head_dim\": \"64\"}}")),
                G4Q_ERR_FORMAT, "text_config.per_layer_config.5.head_dim", "integer");
    expect_fail(mutate(base, "text_config", "per_layer_config",
                       cJSON_Parse("{\"5\": {\"num_key_value_heads\": 3}}")),
                G4Q_ERR_INVALID, "num_key_value_heads", "layer 5");
    expect_fail(mutate(base, "text_config", "per_layer_config", cJSON_CreateArray()),
                G4Q_ERR_FORMAT, "text_config.per_layer_config", "object");
    expect_fail(mutate(base, "text_config", "global_head_dim", cJSON_CreateNumber(64)),
                G4Q_ERR_INVALID, "text_config.per_layer_config", "both");
    free(base);
}

static void test_refusals(void)
{
    char *b = read_data("gemma4_12b_config.json");
    const char *tc = "text_config";
    expect_fail(mutate(b, NULL, "model_type", cJSON_CreateString("gemma3")), G4Q_ERR_UNSUPPORTED,
                "model_type: 'gemma3'", "gemma4_unified");
    expect_fail(mutate(b, NULL, "model_type", NULL), G4Q_ERR_FORMAT, "model_type", "missing");
    expect_fail(mutate(b, NULL, "architectures", cJSON_Parse("[\"Gemma3ForCausalLM\"]")),
                G4Q_ERR_UNSUPPORTED, "architectures[0]", "Gemma3ForCausalLM");
    expect_fail(mutate(b, tc, "model_type", cJSON_CreateString("gemma3_text")), G4Q_ERR_UNSUPPORTED,
                "text_config.model_type", "gemma3_text");
    expect_fail(mutate(b, tc, "enable_moe_block", cJSON_CreateTrue()), G4Q_ERR_UNSUPPORTED,
                "text_config.enable_moe_block", NULL);
    expect_fail(mutate(b, tc, "num_experts", cJSON_CreateNumber(128)), G4Q_ERR_UNSUPPORTED,
                "text_config.num_experts", NULL);
    expect_fail(mutate(b, tc, "hidden_size_per_layer_input", cJSON_CreateNumber(256)),
                G4Q_ERR_UNSUPPORTED, "text_config.hidden_size_per_layer_input", NULL);
    expect_fail(mutate(b, tc, "num_kv_shared_layers", cJSON_CreateNumber(20)), G4Q_ERR_UNSUPPORTED,
                "text_config.num_kv_shared_layers", NULL);
    expect_fail(mutate(b, tc, "use_double_wide_mlp", cJSON_CreateTrue()), G4Q_ERR_UNSUPPORTED,
                "text_config.use_double_wide_mlp", NULL);
    expect_fail(mutate(b, tc, "attention_bias", cJSON_CreateTrue()), G4Q_ERR_UNSUPPORTED,
                "text_config.attention_bias", NULL);
    expect_fail(mutate(b, tc, "use_bidirectional_attention", cJSON_CreateString("all")),
                G4Q_ERR_UNSUPPORTED, "text_config.use_bidirectional_attention", "'all'");
    expect_fail(mutate(b, tc, "hidden_activation", cJSON_CreateString("gelu")), G4Q_ERR_UNSUPPORTED,
                "text_config.hidden_activation", "'gelu'");
    expect_fail(mutate(b, tc, "tie_word_embeddings", cJSON_CreateFalse()), G4Q_ERR_UNSUPPORTED,
                "text_config.tie_word_embeddings", NULL);
    expect_fail(mutate(b, tc, "rope_parameters",
                       cJSON_Parse("{\"full_attention\": {\"rope_type\": \"yarn\"}}")),
                G4Q_ERR_UNSUPPORTED, "text_config.rope_parameters.full_attention.rope_type",
                "'yarn'");
    expect_fail(mutate(b, tc, "rope_parameters",
                       cJSON_Parse("{\"rope_type\": \"default\", \"rope_theta\": 1e4}")),
                G4Q_ERR_UNSUPPORTED, "text_config.rope_parameters.rope_type", NULL);
    expect_fail(mutate(b, tc, "rope_parameters",
                       cJSON_Parse("{\"sliding_attention\": {\"rope_type\": \"default\", "
                                   "\"partial_rotary_factor\": 0.5}}")),
                G4Q_ERR_UNSUPPORTED, "sliding_attention.partial_rotary_factor", NULL);
    expect_fail(mutate(b, tc, "rope_parameters",
                       cJSON_Parse("{\"full_attention\": {\"rope_type\": \"proportional\", "
                                   "\"partial_rotary_factor\": 1.5}}")),
                G4Q_ERR_INVALID, "full_attention.partial_rotary_factor", NULL);
    expect_fail(mutate(b, tc, "rope_parameters",
                       cJSON_Parse("{\"full_attention\": {\"rope_theta\": 1e6}}")),
                G4Q_ERR_FORMAT, "full_attention.rope_type", "missing");
    cJSON *lt = cJSON_CreateArray();
    for (int i = 0; i < 48; i++)
        cJSON_AddItemToArray(
            lt, cJSON_CreateString(i == 7 ? "chunked_attention" : "sliding_attention"));
    expect_fail(mutate(b, tc, "layer_types", lt), G4Q_ERR_UNSUPPORTED, "text_config.layer_types[7]",
                "chunked_attention");
    expect_fail(mutate(b, "vision_config", "model_type", cJSON_CreateString("siglip")),
                G4Q_ERR_UNSUPPORTED, "vision_config.model_type", "siglip");
    free(b);
}

static void test_malformed(void)
{
    char *b = read_data("gemma4_12b_config.json");
    size_t n = strlen(b);
    char *t = malloc(n + 16);
    memcpy(t, b, n / 2);
    t[n / 2] = 0;
    expect_fail(t, G4Q_ERR_FORMAT, "malformed JSON", "line");
    t = malloc(n + 16);
    memcpy(t, b, n);
    memcpy(t + n, " x", 3);
    expect_fail(t, G4Q_ERR_FORMAT, "malformed JSON", NULL);
    expect_fail(strdup("[1, 2]"), G4Q_ERR_FORMAT, "object", NULL);
    expect_fail(strdup(""), G4Q_ERR_FORMAT, "malformed JSON", NULL);
    expect_fail(strdup("{\"model_type\": \"gemma4_unified\", \"model_type\": \"gemma3\"}"),
                G4Q_ERR_FORMAT, "model_type", "twice");
    expect_fail(strdup("{\"model_type\": \"gemma4_unified\"}"), G4Q_ERR_FORMAT, "text_config",
                "missing");
    expect_fail(strdup("{\"model_type\": \"gemma4_unified\", \"text_config\": 7}"), G4Q_ERR_FORMAT,
                "text_config", "object");
    free(b);
}

static void test_missing_and_types(void)
{
    char *b = read_data("gemma4_12b_config.json");
    const char *tc = "text_config";
    const char *required[] = {"vocab_size",        "hidden_size",         "intermediate_size",
                              "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                              "head_dim",          "sliding_window"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "text_config.%s: missing", required[i]);
        expect_fail(mutate(b, tc, required[i], NULL), G4Q_ERR_FORMAT, key, NULL);
        snprintf(key, sizeof key, "text_config.%s:", required[i]);
        expect_fail(mutate(b, tc, required[i], cJSON_CreateString("12")), G4Q_ERR_FORMAT, key,
                    "a string");
        expect_fail(mutate(b, tc, required[i], cJSON_CreateNumber(12.5)), G4Q_ERR_FORMAT, key,
                    "integer");
        expect_fail(mutate(b, tc, required[i], cJSON_CreateNumber(0)), G4Q_ERR_INVALID, key,
                    "out of range");
        expect_fail(mutate(b, tc, required[i], cJSON_CreateNumber(-3)), G4Q_ERR_INVALID, key,
                    "out of range");
    }
    expect_fail(mutate(b, tc, "num_hidden_layers", cJSON_CreateNumber(G4Q_MAX_LAYERS + 1)),
                G4Q_ERR_INVALID, "text_config.num_hidden_layers", "out of range");
    expect_fail(mutate(b, tc, "num_hidden_layers", cJSON_CreateNumber(47)), G4Q_ERR_INVALID,
                "text_config.layer_types", "48 entries");
    expect_fail(mutate(b, tc, "num_key_value_heads", cJSON_CreateNumber(3)), G4Q_ERR_INVALID,
                "text_config.num_key_value_heads", "divide");
    expect_fail(mutate(b, tc, "head_dim", cJSON_CreateNumber(255)), G4Q_ERR_INVALID,
                "text_config.head_dim", "odd");
    expect_fail(mutate(b, tc, "attention_k_eq_v", cJSON_CreateString("yes")), G4Q_ERR_FORMAT,
                "text_config.attention_k_eq_v", "true or false");
    expect_fail(mutate(b, tc, "rms_norm_eps", cJSON_CreateNumber(-1)), G4Q_ERR_INVALID,
                "text_config.rms_norm_eps", NULL);
    expect_fail(mutate(b, tc, "rope_parameters", cJSON_CreateString("x")), G4Q_ERR_FORMAT,
                "text_config.rope_parameters", "object");
    expect_fail(mutate(b, tc, "layer_types", cJSON_CreateNumber(1)), G4Q_ERR_FORMAT,
                "text_config.layer_types", "array");
    expect_fail(mutate(b, tc, "layer_types", cJSON_Parse("[1]")), G4Q_ERR_INVALID,
                "text_config.layer_types", "1 entries");
    expect_fail(mutate(b, tc, "bos_token_id", cJSON_CreateNumber(262144)), G4Q_ERR_INVALID,
                "text_config.bos_token_id", "vocab_size");
    expect_fail(mutate(b, "vision_config", "patch_size", NULL), G4Q_ERR_FORMAT,
                "vision_config.patch_size", "missing");
    expect_fail(mutate(b, "audio_config", "audio_embed_dim", cJSON_CreateNull()), G4Q_ERR_FORMAT,
                "audio_config.audio_embed_dim", "missing");
    free(b);
}

static void test_text_only_form(void)
{
    char *s = read_data("gemma4_tinytext_config.json");
    expect_fail(mutate(s, NULL, "hidden_size", NULL), G4Q_ERR_FORMAT,
                "config.json: hidden_size: "
                "missing",
                NULL);
    expect_fail(mutate(s, NULL, "architectures",
                       cJSON_Parse("[\"Gemma4UnifiedForConditionalGeneration\"]")),
                G4Q_ERR_UNSUPPORTED, "architectures[0]", "Gemma4UnifiedForCausalLM");
    expect_fail(mutate(s, NULL, "enable_moe_block", cJSON_CreateTrue()), G4Q_ERR_UNSUPPORTED,
                "config.json: enable_moe_block", NULL);
    free(s);
}

static void test_load(void)
{
    char dir[1024], path[1200];
    g4q_test_tmpdir(dir, sizeof dir, "config");
    char *s = read_data("gemma4_tinytext_config.json");
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK_STATUS(g4q_write_file(&ctx, path, s, strlen(s)), G4Q_OK);
    static g4q_config c;
    CHECK_STATUS(g4q_config_load(&ctx, dir, &c), G4Q_OK);
    CHECK_EQ_INT(c.text_only, 1);
    CHECK_STATUS(g4q_config_load(&ctx, path, &c), G4Q_OK);
    CHECK_EQ_INT(c.n_layers, 6);
    /* A bad value is reported with the file's path. */
    char *bad = mutate(s, NULL, "hidden_size", cJSON_CreateNumber(0));
    CHECK_STATUS(g4q_write_file(&ctx, path, bad, strlen(bad)), G4Q_OK);
    CHECK_STATUS(g4q_config_load(&ctx, dir, &c), G4Q_ERR_INVALID);
    CHECK_MSG(strstr(g4q_ctx_error(&ctx), path) != NULL, "%s", g4q_ctx_error(&ctx));
    snprintf(path, sizeof path, "%s/nothing", dir);
    CHECK(g4q_config_load(&ctx, path, &c) != G4Q_OK);
    free(bad);
    free(s);
}

/* Random configs: the shipped form and the equivalent per_layer_config form (keys zero-padded to
 * the width of the largest index) must resolve identically, and defaults must hold. */
static void test_random_forms(void)
{
    uint64_t rng = g4q_test_seed();
    char *base = read_data("gemma4_12b_config.json");
    static g4q_config a, b;
    for (int iter = 0; iter < 200; iter++) {
        int n = 1 + (int)(g4q_test_rand(&rng) % 60);
        int kv = 1 << (g4q_test_rand(&rng) % 3), heads = kv * (1 + (int)(g4q_test_rand(&rng) % 4));
        int gkv = (g4q_test_rand(&rng) % 2) ? 1 : kv;
        /* Full layers need int(0.25 * ghd / 2) >= 1 rotated pair, so ghd >= 8. */
        int hd = 2 * (1 + (int)(g4q_test_rand(&rng) % 80));
        int ghd = 8 + 2 * (int)(g4q_test_rand(&rng) % 130);
        int keqv = (int)(g4q_test_rand(&rng) % 2);
        cJSON *root = cJSON_Parse(base);
        cJSON *tc = cJSON_GetObjectItem(root, "text_config");
        cJSON_DeleteItemFromObject(tc, "layer_types");
        cJSON_ReplaceItemInObject(tc, "num_hidden_layers", cJSON_CreateNumber(n));
        cJSON_ReplaceItemInObject(tc, "num_attention_heads", cJSON_CreateNumber(heads));
        cJSON_ReplaceItemInObject(tc, "num_key_value_heads", cJSON_CreateNumber(kv));
        cJSON_ReplaceItemInObject(tc, "head_dim", cJSON_CreateNumber(hd));
        cJSON_ReplaceItemInObject(tc, "global_head_dim", cJSON_CreateNumber(ghd));
        cJSON_ReplaceItemInObject(tc, "num_global_key_value_heads", cJSON_CreateNumber(gkv));
        cJSON_ReplaceItemInObject(tc, "attention_k_eq_v", cJSON_CreateBool(keqv));
        char *shipped = cJSON_PrintUnformatted(root);
        g4q_ctx ctx;
        if (!CHECK_STATUS(parse(shipped, &a, &ctx), G4Q_OK))
            fprintf(stderr, "  %s\n", g4q_ctx_error(&ctx));

        cJSON_DeleteItemFromObject(tc, "global_head_dim");
        cJSON_DeleteItemFromObject(tc, "num_global_key_value_heads");
        cJSON *plc = cJSON_AddObjectToObject(tc, "per_layer_config");
        int width = snprintf(NULL, 0, "%d", n - 1);
        for (int i = 0; i < n; i++) {
            if (!((i % 6 == 5) || i == n - 1)) continue;
            char key[16];
            snprintf(key, sizeof key, "%0*d", width, i);
            cJSON *e = cJSON_AddObjectToObject(plc, key);
            cJSON_AddNumberToObject(e, "head_dim", ghd);
            cJSON_AddNumberToObject(e, "num_key_value_heads", keqv ? gkv : kv);
        }
        char *v517 = cJSON_PrintUnformatted(root);
        if (!CHECK_STATUS(parse(v517, &b, &ctx), G4Q_OK))
            fprintf(stderr, "  %s\n", g4q_ctx_error(&ctx));
        CHECK_MSG(same_layers(&a, &b), "iter %d: n=%d heads=%d kv=%d gkv=%d hd=%d ghd=%d", iter, n,
                  heads, kv, gkv, hd, ghd);
        for (int i = 0; i < n; i++) {
            int full = (i % 6 == 5) || i == n - 1;
            CHECK_EQ_INT(a.layers[i].head_dim, full ? ghd : hd);
            CHECK_EQ_INT(a.layers[i].rope_angles, full ? (int)(0.25 * ghd / 2) : hd / 2);
        }
        cJSON_Delete(root);
        free(shipped);
        free(v517);
    }
    free(base);
}

int main(void)
{
    test_12b_forms();
    test_tiny_from_transformers();
    test_default_layer_types();
    test_per_layer_config_errors();
    test_refusals();
    test_malformed();
    test_missing_and_types();
    test_text_only_form();
    test_load();
    test_random_forms();
    return g4q_test_finish();
}
