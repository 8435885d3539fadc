/*
 * libFuzzer target for the recipe parser: any byte string goes through g4q_recipe_parse. An error
 * must leave no recipe and a message; a recipe that parses must answer every query the quantizer
 * makes of it (a decision for the modules of a small model, the pattern check against them, the
 * manifest JSON) without a sanitizer report, and decide consistently: an exclude keeps a module,
 * a rule index is a rule of the recipe.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "recipe/recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The 2-D Linear weights of a two-layer model (one sliding, one full layer with attention_k_eq_v)
 * with a vision embedder, as g4q_recipe_check_patterns receives them. */
static const char *const names[] = {
    "model.language_model.layers.0.self_attn.q_proj",
    "model.language_model.layers.0.self_attn.k_proj",
    "model.language_model.layers.0.self_attn.v_proj",
    "model.language_model.layers.0.self_attn.o_proj",
    "model.language_model.layers.0.mlp.gate_proj",
    "model.language_model.layers.0.mlp.up_proj",
    "model.language_model.layers.0.mlp.down_proj",
    "model.language_model.layers.1.self_attn.q_proj",
    "model.language_model.layers.1.self_attn.k_proj",
    "model.language_model.layers.1.self_attn.o_proj",
    "model.language_model.layers.1.mlp.gate_proj",
    "model.language_model.layers.1.mlp.up_proj",
    "model.language_model.layers.1.mlp.down_proj",
    "model.vision_embedder.patch_dense",
    "model.embed_vision.embedding_projection",
    "lm_head",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    ctx.log_level = G4Q_LOG_ERROR; /* warnings (unused excludes, ...) are not findings */
    g4q_recipe *r = NULL;
    if (g4q_recipe_parse(&ctx, "fuzz/recipe.yaml", (const char *)data, size, &r) != G4Q_OK) {
        if (r != NULL || ctx.err[0] == '\0')
            abort(); /* an error must leave no recipe and a message */
        return 0;
    }
    if (r == NULL) abort();
    const size_t n = sizeof names / sizeof names[0];
    for (size_t i = 0; i < n; i++) {
        const g4q_recipe_decision d = g4q_recipe_match(r, names[i]);
        if (d.exclude >= 0 && (d.weights != G4Q_RECIPE_W_BF16 || d.rule != -1))
            abort(); /* an exclude keeps the module */
        if (d.rule < -1 || d.rule >= r->n_rules) abort();
        if ((unsigned)d.weights >= G4Q_RECIPE_W_COUNT ||
            (unsigned)d.search >= G4Q_RECIPE_SEARCH_COUNT ||
            (unsigned)d.algo >= G4Q_RECIPE_ALGO_COUNT || (unsigned)d.act >= G4Q_RECIPE_ACT_COUNT ||
            (unsigned)d.smooth >= G4Q_RECIPE_SMOOTH_COUNT)
            abort();
        if (g4q_recipe_weights_name(d.weights) == NULL || g4q_recipe_search_name(d.search) == NULL)
            abort();
    }
    ctx.err[0] = '\0'; /* so that the check below sees this call's message */
    if (g4q_recipe_check_patterns(&ctx, r, names, n) != G4Q_OK && ctx.err[0] == '\0') abort();
    (void)g4q_recipe_needs_calibration(r);
    char *json = NULL;
    if (g4q_recipe_describe(&ctx, r, &json) == G4Q_OK) {
        /* the manifest's object must read back as JSON */
        cJSON *back = json ? cJSON_Parse(json) : NULL;
        if (back == NULL) abort();
        cJSON_Delete(back);
    }
    free(json);
    g4q_recipe_free(r);
    return 0;
}
