/* Gemma 4 config.json -> g4q_config (see config.h and docs/gemma4.md §2). */
#include "model/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "base/sys.h"

#define MAX_CONFIG_BYTES (16u << 20)
#define MAX_DIM (1 << 20) /* bound on widths, head dims and head counts */
#define MAX_VOCAB (1 << 24)

/* Where keys are looked up, for messages: the file label and the key path prefix
 * ("text_config." or "" for the text-only form, "vision_config." ...). */
typedef struct jloc {
    g4q_ctx *ctx;
    const char *label;
    const char *kp;
} jloc;

static const char *json_type_name(const cJSON *it)
{
    if (cJSON_IsNull(it)) return "null";
    if (cJSON_IsBool(it)) return cJSON_IsTrue(it) ? "true" : "false";
    if (cJSON_IsNumber(it)) return "a number";
    if (cJSON_IsString(it)) return "a string";
    if (cJSON_IsArray(it)) return "an array";
    if (cJSON_IsObject(it)) return "an object";
    return "an invalid value";
}

/* The item for key, or NULL when absent or null. */
static const cJSON *jget(const cJSON *obj, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (it && !cJSON_IsNull(it)) ? it : NULL;
}

static g4q_status fail_missing(const jloc *j, const char *key)
{
    return g4q_fail(j->ctx, G4Q_ERR_FORMAT, "%s: %s%s: missing (required)", j->label, j->kp, key);
}

static g4q_status fail_type(const jloc *j, const char *key, const char *want, const cJSON *it)
{
    return g4q_fail(j->ctx, G4Q_ERR_FORMAT, "%s: %s%s: expected %s, found %s", j->label, j->kp, key,
                    want, json_type_name(it));
}

/* An integer in [lo, hi]. Absent or null: *out = def when !required, else an error. */
static g4q_status get_int(const jloc *j, const cJSON *obj, const char *key, int required,
                          long long def, long long lo, long long hi, long long *out)
{
    const cJSON *it = jget(obj, key);
    if (!it) {
        if (required) return fail_missing(j, key);
        *out = def;
        return G4Q_OK;
    }
    if (!cJSON_IsNumber(it)) return fail_type(j, key, "an integer", it);
    double v = it->valuedouble;
    if (!isfinite(v) || v != floor(v) || fabs(v) > 9.0e15)
        return g4q_fail(j->ctx, G4Q_ERR_FORMAT, "%s: %s%s: expected an integer, found %.17g",
                        j->label, j->kp, key, v);
    if (v < (double)lo || v > (double)hi)
        return g4q_fail(j->ctx, G4Q_ERR_INVALID, "%s: %s%s: %.0f is out of range [%lld, %lld]",
                        j->label, j->kp, key, v, lo, hi);
    *out = (long long)v;
    return G4Q_OK;
}

/* get_int for int-sized positive values. */
static g4q_status get_pos(const jloc *j, const cJSON *obj, const char *key, int required, int def,
                          int hi, int *out)
{
    long long v;
    G4Q_TRY(get_int(j, obj, key, required, def, 1, hi, &v));
    *out = (int)v;
    return G4Q_OK;
}

/* A finite number > 0 (or >= 0 when allow_zero). */
static g4q_status get_num(const jloc *j, const cJSON *obj, const char *key, int required,
                          double def, int allow_zero, double *out)
{
    const cJSON *it = jget(obj, key);
    if (!it) {
        if (required) return fail_missing(j, key);
        *out = def;
        return G4Q_OK;
    }
    if (!cJSON_IsNumber(it)) return fail_type(j, key, "a number", it);
    double v = it->valuedouble;
    if (!isfinite(v) || v < 0 || (v == 0 && !allow_zero))
        return g4q_fail(j->ctx, G4Q_ERR_INVALID, "%s: %s%s: %g is not a %s finite number", j->label,
                        j->kp, key, v, allow_zero ? "non-negative" : "positive");
    *out = v;
    return G4Q_OK;
}

static g4q_status get_bool(const jloc *j, const cJSON *obj, const char *key, int def, int *out)
{
    const cJSON *it = jget(obj, key);
    if (!it) {
        *out = def;
        return G4Q_OK;
    }
    if (!cJSON_IsBool(it)) return fail_type(j, key, "true or false", it);
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return G4Q_OK;
}

/* A string or NULL when absent/null; a non-string is an error. */
static g4q_status get_str(const jloc *j, const cJSON *obj, const char *key, const char **out)
{
    const cJSON *it = jget(obj, key);
    *out = NULL;
    if (!it) return G4Q_OK;
    if (!cJSON_IsString(it)) return fail_type(j, key, "a string", it);
    *out = it->valuestring;
    return G4Q_OK;
}

/* cJSON keeps the first of duplicate keys and Python the last: refuse them rather than guess. */
static g4q_status check_duplicates(const jloc *j, const cJSON *obj)
{
    for (const cJSON *a = obj->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && strcmp(a->string, b->string) == 0)
                return g4q_fail(j->ctx, G4Q_ERR_FORMAT, "%s: %s%s: key appears twice", j->label,
                                j->kp, a->string);
    return G4Q_OK;
}

static g4q_status unsupported(const jloc *j, const char *key, const char *what)
{
    return g4q_fail(j->ctx, G4Q_ERR_UNSUPPORTED,
                    "%s: %s%s: %s; gemma4q supports the dense Gemma 4 "
                    "text decoder only",
                    j->label, j->kp, key, what);
}

/* Features the 12B does not use and gemma4q does not implement: refuse each by its key. */
static g4q_status check_refused_features(const jloc *j, const cJSON *tc)
{
    int b;
    long long v;
    G4Q_TRY(get_bool(j, tc, "enable_moe_block", 0, &b));
    if (b) return unsupported(j, "enable_moe_block", "true (mixture of experts)");
    G4Q_TRY(get_int(j, tc, "num_experts", 0, 0, 0, 1LL << 30, &v));
    if (v != 0) return unsupported(j, "num_experts", "non-zero (mixture of experts)");
    G4Q_TRY(get_int(j, tc, "hidden_size_per_layer_input", 0, 0, 0, MAX_DIM, &v));
    if (v != 0)
        return unsupported(j, "hidden_size_per_layer_input", "> 0 (per-layer input embeddings)");
    G4Q_TRY(get_int(j, tc, "num_kv_shared_layers", 0, 0, 0, G4Q_MAX_LAYERS * 4, &v));
    if (v != 0) return unsupported(j, "num_kv_shared_layers", "> 0 (cross-layer KV sharing)");
    G4Q_TRY(get_bool(j, tc, "use_double_wide_mlp", 0, &b));
    if (b) return unsupported(j, "use_double_wide_mlp", "true (double-wide MLP)");
    G4Q_TRY(get_bool(j, tc, "attention_bias", 0, &b));
    if (b) return unsupported(j, "attention_bias", "true (attention biases)");
    const char *s;
    G4Q_TRY(get_str(j, tc, "hidden_activation", &s));
    if (s && strcmp(s, "gelu_pytorch_tanh") != 0) {
        return g4q_fail(j->ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: %shidden_activation: '%s' is not supported (only gelu_pytorch_tanh)",
                        j->label, j->kp, s);
    }
    G4Q_TRY(get_str(j, tc, "use_bidirectional_attention", &s));
    if (s && strcmp(s, "vision") != 0) {
        return g4q_fail(j->ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: %suse_bidirectional_attention: '%s' is not supported (only \"vision\" "
                        "or null; \"all\" changes the text attention)",
                        j->label, j->kp, s);
    }
    return G4Q_OK;
}

/* One entry of rope_parameters (or its default when absent). */
static g4q_status parse_rope(const jloc *j, const cJSON *rp, g4q_layer_type type, g4q_rope *out)
{
    const char *key = type == G4Q_LAYER_FULL ? "full_attention" : "sliding_attention";
    if (type == G4Q_LAYER_FULL)
        *out = (g4q_rope){G4Q_ROPE_PROPORTIONAL, 1000000.0, 0.25};
    else
        *out = (g4q_rope){G4Q_ROPE_DEFAULT, 10000.0, 1.0};
    const cJSON *e = rp ? jget(rp, key) : NULL;
    if (!e) return G4Q_OK;
    char kp[96];
    snprintf(kp, sizeof kp, "%srope_parameters.%s.", j->kp, key);
    jloc jj = {j->ctx, j->label, kp};
    if (!cJSON_IsObject(e))
        return g4q_fail(j->ctx, G4Q_ERR_FORMAT,
                        "%s: %srope_parameters.%s: expected an object, "
                        "found %s",
                        j->label, j->kp, key, json_type_name(e));
    const char *t;
    G4Q_TRY(get_str(&jj, e, "rope_type", &t));
    if (!t) return fail_missing(&jj, "rope_type");
    double prf;
    G4Q_TRY(get_num(&jj, e, "partial_rotary_factor", 0, 1.0, 0, &prf));
    if (prf > 1.0)
        return g4q_fail(j->ctx, G4Q_ERR_INVALID, "%s: %spartial_rotary_factor: %g is above 1",
                        j->label, kp, prf);
    if (strcmp(t, "default") == 0) {
        if (prf != 1.0)
            return g4q_fail(j->ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: %spartial_rotary_factor: %g with rope_type 'default' is not "
                            "supported (only 1.0)",
                            j->label, kp, prf);
        out->type = G4Q_ROPE_DEFAULT;
    } else if (strcmp(t, "proportional") == 0) {
        out->type = G4Q_ROPE_PROPORTIONAL;
    } else {
        return g4q_fail(j->ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: %srope_type: '%s' is not supported (supported: default, proportional)",
                        j->label, kp, t);
    }
    out->partial_rotary_factor = prf;
    G4Q_TRY(get_num(&jj, e, "rope_theta", 0, out->theta, 0, &out->theta));
    return G4Q_OK;
}

/* layer_types, or the transformers default; the last layer is forced to full attention. */
static g4q_status parse_layer_types(const jloc *j, const cJSON *tc, g4q_config *c)
{
    int n = c->n_layers;
    const cJSON *lt = jget(tc, "layer_types");
    if (!lt) {
        for (int i = 0; i < n; i++)
            c->layers[i].type = (i % 6 == 5) ? G4Q_LAYER_FULL : G4Q_LAYER_SLIDING;
    } else {
        if (!cJSON_IsArray(lt)) return fail_type(j, "layer_types", "an array of strings", lt);
        int len = cJSON_GetArraySize(lt);
        if (len != n)
            return g4q_fail(j->ctx, G4Q_ERR_INVALID,
                            "%s: %slayer_types: %d entries, expected num_hidden_layers = %d",
                            j->label, j->kp, len, n);
        int i = 0;
        for (const cJSON *e = lt->child; e; e = e->next, i++) {
            if (!cJSON_IsString(e))
                return g4q_fail(j->ctx, G4Q_ERR_FORMAT,
                                "%s: %slayer_types[%d]: expected a string, found %s", j->label,
                                j->kp, i, json_type_name(e));
            if (strcmp(e->valuestring, "full_attention") == 0)
                c->layers[i].type = G4Q_LAYER_FULL;
            else if (strcmp(e->valuestring, "sliding_attention") == 0)
                c->layers[i].type = G4Q_LAYER_SLIDING;
            else
                return g4q_fail(j->ctx, G4Q_ERR_UNSUPPORTED,
                                "%s: %slayer_types[%d]: '%s' is not supported (supported: "
                                "sliding_attention, full_attention)",
                                j->label, j->kp, i, e->valuestring);
        }
    }
    if (c->layers[n - 1].type != G4Q_LAYER_FULL) {
        if (lt)
            G4Q_WARN(j->ctx,
                     "%s: %slayer_types: the last layer must be full_attention; using it "
                     "as transformers does",
                     j->label, j->kp);
        c->layers[n - 1].type = G4Q_LAYER_FULL;
    }
    return G4Q_OK;
}

/* A per_layer_config key: decimal digits only (zero padding allowed), in [0, n_layers). */
static int parse_layer_key(const char *s, int n_layers)
{
    if (!s || !*s || strlen(s) > 9) return -1;
    int v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    return v < n_layers ? v : -1;
}

/* 5.17 form: per_layer_config {"05": {"head_dim": 512, "num_key_value_heads": 1}, ...}. */
static g4q_status parse_per_layer(const jloc *j, const cJSON *plc, g4q_config *c)
{
    if (!cJSON_IsObject(plc)) return fail_type(j, "per_layer_config", "an object", plc);
    G4Q_TRY(check_duplicates(j, plc));
    int seen[G4Q_MAX_LAYERS] = {0};
    for (const cJSON *e = plc->child; e; e = e->next) {
        int L = parse_layer_key(e->string, c->n_layers);
        if (L < 0)
            return g4q_fail(j->ctx, G4Q_ERR_INVALID,
                            "%s: %sper_layer_config: key '%s' is not a layer index in [0, %d)",
                            j->label, j->kp, e->string ? e->string : "", c->n_layers);
        if (seen[L])
            return g4q_fail(j->ctx, G4Q_ERR_INVALID,
                            "%s: %sper_layer_config: key '%s' names layer %d a second time",
                            j->label, j->kp, e->string, L);
        seen[L] = 1;
        char kp[128];
        snprintf(kp, sizeof kp, "%sper_layer_config.%s.", j->kp, e->string);
        jloc jj = {j->ctx, j->label, kp};
        if (!cJSON_IsObject(e))
            return g4q_fail(j->ctx, G4Q_ERR_FORMAT,
                            "%s: %sper_layer_config.%s: expected an "
                            "object, found %s",
                            j->label, j->kp, e->string, json_type_name(e));
        for (const cJSON *f = e->child; f; f = f->next) {
            if (strcmp(f->string, "head_dim") != 0 && strcmp(f->string, "num_key_value_heads") != 0)
                return g4q_fail(j->ctx, G4Q_ERR_UNSUPPORTED,
                                "%s: %s%s: per-layer override not supported (only head_dim, "
                                "num_key_value_heads)",
                                j->label, kp, f->string);
        }
        g4q_layer_config *l = &c->layers[L];
        G4Q_TRY(get_pos(&jj, e, "head_dim", 0, l->head_dim, MAX_DIM, &l->head_dim));
        G4Q_TRY(get_pos(&jj, e, "num_key_value_heads", 0, l->n_kv_heads, MAX_DIM, &l->n_kv_heads));
    }
    return G4Q_OK;
}

/* head_dim, KV heads, v_proj and RoPE of every layer, from either form. */
static g4q_status resolve_layers(const jloc *j, const cJSON *tc, g4q_config *c)
{
    int hd, kv, ghd, gkv;
    G4Q_TRY(get_pos(j, tc, "head_dim", 1, 0, MAX_DIM, &hd));
    G4Q_TRY(get_pos(j, tc, "num_key_value_heads", 1, 0, MAX_DIM, &kv));
    G4Q_TRY(get_pos(j, tc, "global_head_dim", 0, 512, MAX_DIM, &ghd));
    G4Q_TRY(get_pos(j, tc, "num_global_key_value_heads", 0, kv, MAX_DIM, &gkv));
    const cJSON *plc = jget(tc, "per_layer_config");
    c->per_layer_form = plc != NULL;
    if (plc && (jget(tc, "global_head_dim") || jget(tc, "num_global_key_value_heads")))
        return g4q_fail(j->ctx, G4Q_ERR_INVALID,
                        "%s: %sper_layer_config: present together with global_head_dim or "
                        "num_global_key_value_heads; expected one form, not both",
                        j->label, j->kp);
    const cJSON *rp = jget(tc, "rope_parameters");
    if (rp && !cJSON_IsObject(rp)) return fail_type(j, "rope_parameters", "an object", rp);
    for (const cJSON *e = rp ? rp->child : NULL; e; e = e->next) {
        if (strcmp(e->string, "sliding_attention") != 0 && strcmp(e->string, "full_attention") != 0)
            return g4q_fail(j->ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: %srope_parameters.%s: not supported (expected one entry per layer "
                            "type: sliding_attention, full_attention)",
                            j->label, j->kp, e->string);
    }
    g4q_rope rope[2];
    G4Q_TRY(parse_rope(j, rp, G4Q_LAYER_SLIDING, &rope[0]));
    G4Q_TRY(parse_rope(j, rp, G4Q_LAYER_FULL, &rope[1]));

    for (int i = 0; i < c->n_layers; i++) {
        g4q_layer_config *l = &c->layers[i];
        int full = l->type == G4Q_LAYER_FULL;
        l->head_dim = hd;
        l->n_kv_heads = kv;
        if (full && !plc) {
            l->head_dim = ghd;
            l->n_kv_heads = c->attention_k_eq_v ? gkv : kv;
        }
        l->has_v_proj = !(full && c->attention_k_eq_v);
        l->rope = rope[full];
    }
    if (plc) G4Q_TRY(parse_per_layer(j, plc, c));

    for (int i = 0; i < c->n_layers; i++) {
        g4q_layer_config *l = &c->layers[i];
        if (l->head_dim % 2 != 0)
            return g4q_fail(j->ctx, G4Q_ERR_INVALID,
                            "%s: %shead_dim: layer %d has odd head_dim %d "
                            "(RoPE needs pairs)",
                            j->label, j->kp, i, l->head_dim);
        if (c->n_heads % l->n_kv_heads != 0)
            return g4q_fail(j->ctx, G4Q_ERR_INVALID,
                            "%s: %snum_key_value_heads: layer %d has %d KV heads, which does not "
                            "divide num_attention_heads = %d",
                            j->label, j->kp, i, l->n_kv_heads, c->n_heads);
        if ((long long)c->n_heads * l->head_dim > MAX_DIM)
            return g4q_fail(j->ctx, G4Q_ERR_INVALID,
                            "%s: %shead_dim: layer %d: %d heads x %d is "
                            "too wide",
                            j->label, j->kp, i, c->n_heads, l->head_dim);
        if (l->rope.type == G4Q_ROPE_DEFAULT)
            l->rope_angles = l->head_dim / 2;
        else /* as transformers: int(partial_rotary_factor * head_dim / 2), in double */
            l->rope_angles = (int)(l->rope.partial_rotary_factor * l->head_dim / 2.0);
        if (l->rope_angles < 1)
            return g4q_fail(j->ctx, G4Q_ERR_INVALID,
                            "%s: %srope_parameters: layer %d rotates no "
                            "dimension (head_dim %d)",
                            j->label, j->kp, i, l->head_dim);
    }
    return G4Q_OK;
}

/* eos_token_id may be an integer or a list of them; the first one is kept. */
static g4q_status parse_token_ids(const jloc *j, const cJSON *tc, g4q_config *c)
{
    long long v;
    G4Q_TRY(get_int(j, tc, "pad_token_id", 0, 0, 0, MAX_VOCAB, &v));
    c->pad_id = (int)v;
    G4Q_TRY(get_int(j, tc, "bos_token_id", 0, 2, 0, MAX_VOCAB, &v));
    c->bos_id = (int)v;
    const cJSON *e = jget(tc, "eos_token_id");
    if (e && cJSON_IsArray(e)) {
        if (cJSON_GetArraySize(e) < 1)
            return g4q_fail(j->ctx, G4Q_ERR_INVALID, "%s: %seos_token_id: empty list", j->label,
                            j->kp);
        const cJSON *first = e->child;
        if (!cJSON_IsNumber(first) || first->valuedouble != floor(first->valuedouble) ||
            first->valuedouble < 0 || first->valuedouble > MAX_VOCAB)
            return g4q_fail(j->ctx, G4Q_ERR_FORMAT, "%s: %seos_token_id[0]: expected a token id",
                            j->label, j->kp);
        c->eos_id = (int)first->valuedouble;
    } else {
        G4Q_TRY(get_int(j, tc, "eos_token_id", 0, 1, 0, MAX_VOCAB, &v));
        c->eos_id = (int)v;
    }
    int ids[3] = {c->pad_id, c->bos_id, c->eos_id};
    const char *names[3] = {"pad_token_id", "bos_token_id", "eos_token_id"};
    for (int i = 0; i < 3; i++)
        if (ids[i] >= c->vocab_size)
            return g4q_fail(j->ctx, G4Q_ERR_INVALID, "%s: %s%s: %d is not below vocab_size %d",
                            j->label, j->kp, names[i], ids[i], c->vocab_size);
    return G4Q_OK;
}

static g4q_status parse_text(const jloc *j, const cJSON *tc, g4q_config *c)
{
    G4Q_TRY(check_duplicates(j, tc));
    const char *mt;
    G4Q_TRY(get_str(j, tc, "model_type", &mt));
    if (mt && strcmp(mt, "gemma4_unified_text") != 0)
        return g4q_fail(j->ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: %smodel_type: '%s' is not supported (expected gemma4_unified_text)",
                        j->label, j->kp, mt);
    G4Q_TRY(check_refused_features(j, tc));
    G4Q_TRY(get_pos(j, tc, "vocab_size", 1, 0, MAX_VOCAB, &c->vocab_size));
    G4Q_TRY(get_pos(j, tc, "hidden_size", 1, 0, MAX_DIM, &c->hidden));
    G4Q_TRY(get_pos(j, tc, "intermediate_size", 1, 0, MAX_DIM, &c->intermediate));
    G4Q_TRY(get_pos(j, tc, "num_hidden_layers", 1, 0, G4Q_MAX_LAYERS, &c->n_layers));
    G4Q_TRY(get_pos(j, tc, "num_attention_heads", 1, 0, MAX_DIM, &c->n_heads));
    G4Q_TRY(get_pos(j, tc, "sliding_window", 1, 0, 1 << 30, &c->sliding_window));
    G4Q_TRY(get_bool(j, tc, "attention_k_eq_v", 0, &c->attention_k_eq_v));
    G4Q_TRY(get_num(j, tc, "rms_norm_eps", 0, 1e-6, 0, &c->rms_norm_eps));
    G4Q_TRY(get_num(j, tc, "final_logit_softcapping", 0, 0.0, 1, &c->final_logit_softcapping));
    long long mpe;
    G4Q_TRY(get_int(j, tc, "max_position_embeddings", 0, 131072, 1, 1LL << 40, &mpe));
    c->max_position_embeddings = (long)mpe;
    G4Q_TRY(get_bool(j, tc, "tie_word_embeddings", 1, &c->tie_word_embeddings));
    if (!c->tie_word_embeddings)
        return unsupported(j, "tie_word_embeddings", "false (a separate lm_head)");
    G4Q_TRY(parse_token_ids(j, tc, c));
    G4Q_TRY(parse_layer_types(j, tc, c));
    G4Q_TRY(resolve_layers(j, tc, c));
    /* transformers: embed_scale = hidden_size ** 0.5 (double), stored as a bf16 buffer. */
    c->embed_scale = g4q_round_bf16((float)sqrt((double)c->hidden));
    return G4Q_OK;
}

/* vision_config / audio_config: the shapes of the multimodal embedder tensors. */
static g4q_status parse_multimodal(const jloc *top, const cJSON *root, g4q_config *c)
{
    const cJSON *vc = jget(root, "vision_config");
    const cJSON *ac = jget(root, "audio_config");
    if (vc) {
        jloc j = {top->ctx, top->label, "vision_config."};
        if (!cJSON_IsObject(vc)) return fail_type(top, "vision_config", "an object", vc);
        const char *mt;
        G4Q_TRY(get_str(&j, vc, "model_type", &mt));
        if (mt && strcmp(mt, "gemma4_unified_vision") != 0)
            return g4q_fail(top->ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: vision_config.model_type: '%s' "
                            "is not supported (expected gemma4_unified_vision)",
                            top->label, mt);
        int ps, pk;
        G4Q_TRY(get_pos(&j, vc, "patch_size", 1, 0, 4096, &ps));
        G4Q_TRY(get_pos(&j, vc, "pooling_kernel_size", 1, 0, 4096, &pk));
        if ((long long)ps * pk * ps * pk * 3 > MAX_DIM)
            return g4q_fail(top->ctx, G4Q_ERR_INVALID,
                            "%s: vision_config.patch_size: %d x "
                            "pooling %d gives too wide a patch",
                            top->label, ps, pk);
        c->vision_patch_dim = ps * pk * ps * pk * 3;
        G4Q_TRY(get_pos(&j, vc, "mm_embed_dim", 1, 0, MAX_DIM, &c->vision_embed_dim));
        G4Q_TRY(get_pos(&j, vc, "mm_posemb_size", 1, 0, MAX_DIM, &c->vision_pos_size));
        G4Q_TRY(get_pos(&j, vc, "output_proj_dims", 1, 0, MAX_DIM, &c->vision_proj_dim));
        c->has_vision = 1;
    }
    if (ac) {
        jloc j = {top->ctx, top->label, "audio_config."};
        if (!cJSON_IsObject(ac)) return fail_type(top, "audio_config", "an object", ac);
        const char *mt;
        G4Q_TRY(get_str(&j, ac, "model_type", &mt));
        if (mt && strcmp(mt, "gemma4_unified_audio") != 0)
            return g4q_fail(top->ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: audio_config.model_type: '%s' "
                            "is not supported (expected gemma4_unified_audio)",
                            top->label, mt);
        G4Q_TRY(get_pos(&j, ac, "audio_embed_dim", 1, 0, MAX_DIM, &c->audio_embed_dim));
        c->has_audio = 1;
    }
    c->has_multimodal = c->has_vision || c->has_audio;
    return G4Q_OK;
}

/* architectures, when present, must name the class that matches model_type. */
static g4q_status check_architectures(const jloc *j, const cJSON *root, const char *want)
{
    const cJSON *a = jget(root, "architectures");
    if (!a) return G4Q_OK;
    if (!cJSON_IsArray(a)) return fail_type(j, "architectures", "an array of strings", a);
    int i = 0;
    for (const cJSON *e = a->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e))
            return g4q_fail(j->ctx, G4Q_ERR_FORMAT,
                            "%s: architectures[%d]: expected a string, "
                            "found %s",
                            j->label, i, json_type_name(e));
        if (strcmp(e->valuestring, want) != 0)
            return g4q_fail(j->ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: architectures[%d]: '%s' is not "
                            "supported here (expected %s for this model_type)",
                            j->label, i, e->valuestring, want);
    }
    return G4Q_OK;
}

static g4q_status parse_root(g4q_ctx *ctx, const char *label, const cJSON *root, g4q_config *c)
{
    jloc top = {ctx, label, ""};
    if (!cJSON_IsObject(root))
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: expected a JSON object at the top, found %s",
                        label, json_type_name(root));
    G4Q_TRY(check_duplicates(&top, root));
    const char *mt;
    G4Q_TRY(get_str(&top, root, "model_type", &mt));
    if (!mt)
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: model_type: missing (required; supported: "
                        "gemma4_unified, gemma4_unified_text)",
                        label);
    if (strcmp(mt, "gemma4_unified") == 0) {
        G4Q_TRY(check_architectures(&top, root, "Gemma4UnifiedForConditionalGeneration"));
        const cJSON *tc = jget(root, "text_config");
        if (!tc) return fail_missing(&top, "text_config");
        if (!cJSON_IsObject(tc)) return fail_type(&top, "text_config", "an object", tc);
        jloc j = {ctx, label, "text_config."};
        c->text_only = 0;
        c->prefix = "model.language_model.";
        int tie;
        G4Q_TRY(get_bool(&top, root, "tie_word_embeddings", 1, &tie));
        if (!tie) return unsupported(&top, "tie_word_embeddings", "false (a separate lm_head)");
        G4Q_TRY(parse_text(&j, tc, c));
        return parse_multimodal(&top, root, c);
    }
    if (strcmp(mt, "gemma4_unified_text") == 0) {
        G4Q_TRY(check_architectures(&top, root, "Gemma4UnifiedForCausalLM"));
        c->text_only = 1;
        c->prefix = "model.";
        return parse_text(&top, root, c);
    }
    return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                    "%s: model_type: '%s' is not supported (supported: gemma4_unified with "
                    "text_config, gemma4_unified_text)",
                    label, mt);
}

g4q_status g4q_config_parse(g4q_ctx *ctx, const char *label, const char *json, g4q_config *out)
{
    memset(out, 0, sizeof *out);
    const char *end = NULL;
    size_t len = strlen(json);
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t off = end ? (size_t)(end - json) : 0;
        int line = 1, col = 1;
        for (size_t i = 0; i < off && i < len; i++) {
            if (json[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: malformed JSON near line %d, column %d", label,
                        line, col);
    }
    /* Only whitespace may follow the value. */
    for (const char *p = end; p && *p; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            cJSON_Delete(root);
            return g4q_fail(ctx, G4Q_ERR_FORMAT,
                            "%s: malformed JSON: text after the top-level "
                            "value at byte %zu",
                            label, (size_t)(p - json));
        }
    }
    g4q_status st = parse_root(ctx, label, root, out);
    cJSON_Delete(root);
    return st;
}

g4q_status g4q_config_load(g4q_ctx *ctx, const char *path, g4q_config *out)
{
    char file[4096];
    if (g4q_is_dir(path))
        G4Q_TRY(g4q_path_join(ctx, file, sizeof file, path, "config.json"));
    else if ((size_t)snprintf(file, sizeof file, "%s", path) >= sizeof file)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "%.64s...: path too long", path);
    char *text = NULL;
    size_t len = 0;
    G4Q_TRY(g4q_read_file(ctx, file, MAX_CONFIG_BYTES, &text, &len));
    if (strlen(text) != len) {
        free(text);
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: contains a NUL byte", file);
    }
    g4q_status st = g4q_config_parse(ctx, file, text, out);
    free(text);
    return st;
}

int g4q_config_count_layers(const g4q_config *c, g4q_layer_type type)
{
    int n = 0;
    for (int i = 0; i < c->n_layers; i++)
        n += c->layers[i].type == type;
    return n;
}
