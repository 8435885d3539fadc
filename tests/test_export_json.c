/* Tests of the exclude-list summariser (formats.md §8.3, TV-7), the vLLM coverage check (§8.6)
 * and the Python-style JSON printer. Expected JSON texts were produced by Python's json.dumps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/excludes.h"
#include "io/json_write.h"
#include "testutil.h"

static void test_tv7(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    const char *q[] = {"model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj",
                       "model.layers.0.mlp.down_proj", "model.layers.1.mlp.gate_proj",
                       "model.layers.1.mlp.up_proj",   "model.layers.1.mlp.down_proj"};
    const char *u[] = {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                       "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj",
                       "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj",
                       "model.layers.1.self_attn.v_proj", "model.layers.1.self_attn.o_proj",
                       "lm_head"};
    g4q_strlist ex = {0};
    CHECK_STATUS(g4q_excludes_summarise(&ctx, u, 9, q, 6, &ex), G4Q_OK);
    CHECK_EQ_INT(ex.count, 3);
    if (ex.count == 3) {
        CHECK(strcmp(ex.items[0], "lm_head") == 0);
        CHECK(strcmp(ex.items[1], "model.layers.0.self_attn*") == 0);
        CHECK(strcmp(ex.items[2], "model.layers.1.self_attn*") == 0);
    }
    CHECK_STATUS(g4q_excludes_verify(&ctx, &ex, u, 9, q, 6), G4Q_OK);
    g4q_strlist_free(&ex);
}

/* The 12B MLP-only case: 48 self_attn entries sorted by byte order (1. < 10.), embedders,
 * lm_head; and nothing in the list touches layer 10's MLP through layer 1's entry. */
static void test_12b_mlp_only(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_strlist q = {0}, u = {0}, ex = {0};
    static const char *const attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    static const char *const mlp[] = {"gate_proj", "up_proj", "down_proj"};
    for (int l = 0; l < 48; l++) {
        for (int i = 0; i < 4; i++) {
            if (i == 2 && l % 6 == 5)
                continue; /* full layers have no v_proj */
            g4q_strlist_pushf(&ctx, &u, "model.language_model.layers.%d.self_attn.%s", l, attn[i]);
        }
        for (int i = 0; i < 3; i++)
            g4q_strlist_pushf(&ctx, &q, "model.language_model.layers.%d.mlp.%s", l, mlp[i]);
    }
    g4q_strlist_push(&ctx, &u, "lm_head");
    g4q_strlist_push(&ctx, &u, "model.embed_vision.patch_dense");
    g4q_strlist_push(&ctx, &u, "model.embed_vision.embedding_projection");
    g4q_strlist_push(&ctx, &u, "model.embed_audio.embedding_projection");
    CHECK_STATUS(g4q_excludes_summarise(&ctx, (const char *const *)u.items, u.count,
                                        (const char *const *)q.items, q.count, &ex),
                 G4Q_OK);
    CHECK_EQ_INT(ex.count, 51);
    if (ex.count == 51) {
        CHECK(strcmp(ex.items[0], "lm_head") == 0);
        CHECK(strcmp(ex.items[1], "model.embed_audio*") == 0);
        CHECK(strcmp(ex.items[2], "model.embed_vision*") == 0);
        CHECK(strcmp(ex.items[3], "model.language_model.layers.0.self_attn*") == 0);
        CHECK(strcmp(ex.items[4], "model.language_model.layers.1.self_attn*") == 0);
        CHECK(strcmp(ex.items[5], "model.language_model.layers.10.self_attn*") == 0);
        CHECK(strcmp(ex.items[50], "model.language_model.layers.9.self_attn*") == 0);
    }
    CHECK_STATUS(g4q_excludes_verify(&ctx, &ex, (const char *const *)u.items, u.count,
                                     (const char *const *)q.items, q.count),
                 G4Q_OK);
    /* The substring hazard: a bare "…layers.1" entry would skip layer 10's MLP. */
    g4q_strlist bad = {0};
    g4q_strlist_push(&ctx, &bad, "model.language_model.layers.1");
    CHECK(g4q_excludes_skips(&bad, "model.language_model.layers.10.mlp.up_proj"));
    CHECK_STATUS(g4q_excludes_verify(&ctx, &bad, NULL, 0, (const char *const *)q.items, q.count),
                 G4Q_ERR_INTERNAL);
    CHECK(strstr(g4q_ctx_error(&ctx), "layers.1") != NULL);
    /* A list that misses a BF16 module is refused. */
    CHECK_STATUS(g4q_excludes_verify(&ctx, &bad, (const char *const *)u.items, u.count, NULL, 0),
                 G4Q_ERR_INTERNAL);
    CHECK(strstr(g4q_ctx_error(&ctx), "does not cover") != NULL);
    g4q_strlist_free(&bad);
    g4q_strlist_free(&q);
    g4q_strlist_free(&u);
    g4q_strlist_free(&ex);
}

static void test_json_print(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    cJSON *v = cJSON_Parse("{\"a\": [1, 2.5, 1e-06, \"\xc3\xa9\xf0\x9f\x98\x80\", 0.1, 123.456, "
                           "1e20, 3e-05], \"b\": {}, \"c\": [], \"d\": null, \"e\": true}");
    CHECK(v != NULL);
    char *s = NULL;
    CHECK_STATUS(g4q_json_print(&ctx, v, 4, 0, &s), G4Q_OK);
    const char *want =
        "{\n    \"a\": [\n        1,\n        2.5,\n        1e-06,\n        "
        "\"\\u00e9\\ud83d\\ude00\",\n        0.1,\n        123.456,\n        1e+20,\n        "
        "3e-05\n    ],\n    \"b\": {},\n    \"c\": [],\n    \"d\": null,\n    \"e\": true\n}";
    CHECK_MSG(s && strcmp(s, want) == 0, "indent 4:\n%s\nwant:\n%s", s, want);
    free(s);
    cJSON_Delete(v);
    v = cJSON_Parse("{\"a\": [1, 2.5], \"b\": {\"x\": \"y\"}}");
    CHECK_STATUS(g4q_json_print(&ctx, v, 0, 0, &s), G4Q_OK);
    CHECK_MSG(s && strcmp(s, "{\"a\": [1, 2.5], \"b\": {\"x\": \"y\"}}") == 0, "compact: %s", s);
    free(s);

    /* Appending a member keeps the original bytes. */
    const char *doc = "{\n  \"rope_theta\": 10000.0,\n  \"x\": 1\n}\n";
    cJSON *q = cJSON_Parse("{\"quant_method\": \"modelopt\"}");
    CHECK_STATUS(g4q_json_append_member(&ctx, "config.json", doc, "quantization_config", q, 2, &s),
                 G4Q_OK);
    const char *want2 = "{\n  \"rope_theta\": 10000.0,\n  \"x\": 1,\n  \"quantization_config\": "
                        "{\n    \"quant_method\": \"modelopt\"\n  }\n}\n";
    CHECK_MSG(s && strcmp(s, want2) == 0, "append:\n%s", s);
    cJSON *back = s ? cJSON_Parse(s) : NULL;
    CHECK(back && cJSON_GetObjectItem(back, "quantization_config") != NULL);
    cJSON_Delete(back);
    free(s);
    CHECK_STATUS(g4q_json_append_member(&ctx, "config.json", want2, "quantization_config", q, 2, &s),
                 G4Q_ERR_INVALID);
    CHECK_STATUS(g4q_json_append_member(&ctx, "config.json", "[1]", "k", q, 2, &s), G4Q_ERR_FORMAT);
    cJSON_Delete(q);
    cJSON_Delete(v);
}

int main(void)
{
    test_tv7();
    test_12b_mlp_only();
    test_json_print();
    return g4q_test_finish();
}
