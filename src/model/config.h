/*
 * Gemma 4 configuration: config.json -> g4q_config, with every per-layer quantity resolved.
 *
 * Accepted: architectures Gemma4UnifiedForConditionalGeneration (hyper-parameters under
 * "text_config") and Gemma4UnifiedForCausalLM (text-only, at the top level). Refused with a clear
 * message: other model types, MoE (enable_moe_block / num_experts), per-layer inputs
 * (hidden_size_per_layer_input > 0), KV sharing (num_kv_shared_layers > 0), double-wide MLP,
 * attention biases, unknown RoPE types, and layer types other than sliding/full.
 *
 * Per-layer head_dim and KV heads come from either form (see docs/gemma4.md §2):
 *   shipped: global_head_dim (default 512) and num_global_key_value_heads (used only when
 *            attention_k_eq_v) for full layers;
 *   5.17:    per_layer_config {"05": {"head_dim": 512, "num_key_value_heads": 1}, ...}.
 */
#ifndef G4Q_MODEL_CONFIG_H
#define G4Q_MODEL_CONFIG_H

#include <stddef.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

#define G4Q_MAX_LAYERS 256

typedef enum { G4Q_LAYER_SLIDING = 0, G4Q_LAYER_FULL = 1 } g4q_layer_type;

typedef enum { G4Q_ROPE_DEFAULT = 0, G4Q_ROPE_PROPORTIONAL = 1 } g4q_rope_type;

typedef struct g4q_rope {
    g4q_rope_type type;
    double theta;                 /* rope_theta */
    double partial_rotary_factor; /* 1.0 for default */
} g4q_rope;

typedef struct g4q_layer_config {
    g4q_layer_type type;
    int head_dim;     /* hd: 256 sliding / 512 full on the 12B */
    int n_kv_heads;   /* 8 sliding / 1 full on the 12B */
    int has_v_proj;   /* 0 on full layers when attention_k_eq_v */
    int rope_angles;  /* number of non-zero inv_freq entries: hd/2, or int(prf * hd / 2) */
    g4q_rope rope;    /* of this layer's type */
} g4q_layer_config;

typedef struct g4q_config {
    int text_only;         /* 1 for Gemma4UnifiedForCausalLM (prefix "model."), else 0 */
    const char *prefix;    /* "model.language_model." or "model." (static string) */
    int has_multimodal;    /* vision_config/audio_config present: 11 embedder tensors expected */
    int vocab_size;
    int hidden;            /* d */
    int intermediate;      /* GeGLU width */
    int n_layers;
    int n_heads;           /* query heads (both layer types) */
    int sliding_window;    /* keys visible to a sliding query, the current one included */
    int attention_k_eq_v;
    int tie_word_embeddings;
    double rms_norm_eps;
    double final_logit_softcapping; /* 0 = none */
    double embed_scale;             /* bf16(sqrt(hidden)) */
    int bos_id, eos_id, pad_id;
    long max_position_embeddings;
    int vision_patch_dim;  /* 3 * patch_size^2 * pooling^2 ... as used by patch_dense (0 if none) */
    int vision_pos_size;   /* mm_posemb_size (0 if none) */
    int audio_embed_dim;   /* 0 if none */
    g4q_layer_config layers[G4Q_MAX_LAYERS];
} g4q_config;

/* Parses and validates config.json text; `label` names it in messages. */
g4q_status g4q_config_parse(g4q_ctx *ctx, const char *label, const char *json, g4q_config *out);

/* Reads DIR/config.json (or a path to a .json file) and parses it. */
g4q_status g4q_config_load(g4q_ctx *ctx, const char *path, g4q_config *out);

/* Counts of the three layer-type-dependent things, for summaries. */
int g4q_config_count_layers(const g4q_config *c, g4q_layer_type type);

#ifdef __cplusplus
}
#endif
#endif
