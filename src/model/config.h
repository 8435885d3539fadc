/*
 * Gemma 4 configuration: config.json -> g4q_config, with every per-layer quantity resolved.
 *
 * Accepted: architectures Gemma4UnifiedForConditionalGeneration (hyper-parameters under
 * "text_config") and Gemma4UnifiedForCausalLM (text-only, at the top level). Refused with a clear
 * message (G4Q_ERR_UNSUPPORTED naming the key): other model types, MoE (enable_moe_block /
 * num_experts), per-layer inputs (hidden_size_per_layer_input > 0), KV sharing
 * (num_kv_shared_layers > 0), double-wide MLP, attention biases, untied embeddings,
 * use_bidirectional_attention other than "vision"/null, activations other than gelu_pytorch_tanh,
 * RoPE types other than default/proportional (and partial rotation with "default"), per-layer
 * overrides other than head_dim/num_key_value_heads, and layer types other than sliding/full.
 *
 * Per-layer head_dim and KV heads come from either form (see docs/gemma4.md §2):
 *   shipped: global_head_dim (default 512) and num_global_key_value_heads (used only when
 *            attention_k_eq_v) for full layers;
 *   5.17:    per_layer_config {"05": {"head_dim": 512, "num_key_value_heads": 1}, ...}; keys are
 *            decimal layer indices (any zero padding), each layer at most once; giving both
 *            forms at once is refused.
 * tests/data/gemma4_12b_config_517.json is the 12B config as transformers 5.17 rewrites it.
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
    int has_multimodal;    /* has_vision || has_audio: multimodal embedder tensors expected */
    int has_vision;        /* vision_config present: 10 vision tensors (9 embedder + projection) */
    int has_audio;         /* audio_config present: 1 audio projection tensor */
    int vocab_size;
    int hidden;            /* d */
    int intermediate;      /* GeGLU width */
    int n_layers;
    int n_heads;           /* query heads (both layer types) */
    int sliding_window;    /* keys visible to a sliding query, the current one included */
    int attention_k_eq_v;
    int tie_word_embeddings; /* always 1: untied heads are refused */
    int per_layer_form;      /* 1: per_layer_config (5.17 form); 0: the shipped form */
    double rms_norm_eps;
    double final_logit_softcapping; /* 0 = none */
    double embed_scale;             /* bf16(sqrt(hidden)): 62.0 on the 12B */
    int bos_id, eos_id, pad_id;     /* eos_id: the first one when config.json gives a list */
    long max_position_embeddings;
    /* Multimodal embedder shapes (0 when the sub-config is absent), verified against transformers
     * 5.17 with dims that differ from the text ones (scripts/oracle/gemma4_layout.py):
     *   patch_ln1.{weight,bias}   [vision_patch_dim]
     *   patch_dense.weight / bias [vision_embed_dim, vision_patch_dim] / [vision_embed_dim]
     *   patch_ln2, pos_norm       [vision_embed_dim] (weight and bias each)
     *   pos_embedding             [vision_pos_size, 2, vision_embed_dim]
     *   embed_vision.embedding_projection.weight [hidden, vision_proj_dim]
     *   embed_audio.embedding_projection.weight  [hidden, audio_embed_dim]
     * On the 12B every vision dim but patch_dim (6912) and pos_size (1120) is 3840. */
    int vision_patch_dim;  /* (patch_size * pooling_kernel_size)^2 * 3 (6912 on the 12B) */
    int vision_pos_size;   /* mm_posemb_size (1120) */
    int vision_embed_dim;  /* mm_embed_dim (3840) */
    int vision_proj_dim;   /* output_proj_dims (3840) */
    int audio_embed_dim;   /* audio_embed_dim (640) */
    g4q_layer_config layers[G4Q_MAX_LAYERS];
} g4q_config;

/* Parses and validates config.json text (NUL-terminated); `label` names it in messages, which read
 * "<label>: text_config.<key>: <problem>" ("<label>: <key>: ..." for the text-only form, whose
 * keys are at the top level). *out is fully written on success and unspecified on failure.
 * Errors: G4Q_ERR_FORMAT (malformed JSON, a missing required key, a value of the wrong JSON type,
 * duplicate keys), G4Q_ERR_INVALID (a number out of range or inconsistent with another key),
 * G4Q_ERR_UNSUPPORTED (another model type or a Gemma 4 feature gemma4q does not implement).
 *
 * Defaults where a key is absent (or null): layer_types as transformers 5.17 (i mod 6 == 5 is
 * full); rope_parameters {sliding: default, theta 1e4; full: proportional, theta 1e6, factor
 * 0.25}; global_head_dim 512; num_global_key_value_heads = num_key_value_heads;
 * attention_k_eq_v false; rms_norm_eps 1e-6; final_logit_softcapping none; pad/eos/bos 0/1/2;
 * max_position_embeddings 131072. transformers forces the last layer to full attention, and so
 * does this parser (with a warning when layer_types said otherwise). */
g4q_status g4q_config_parse(g4q_ctx *ctx, const char *label, const char *json, g4q_config *out);

/* Reads DIR/config.json (or a path to a .json file) and parses it; messages name that file. */
g4q_status g4q_config_load(g4q_ctx *ctx, const char *path, g4q_config *out);

/* Number of layers of the given type. */
int g4q_config_count_layers(const g4q_config *c, g4q_layer_type type);

#ifdef __cplusplus
}
#endif
#endif
