/*
 * Gemma 4 weights: the tensor layout a config implies, and the binding of a checkpoint's tensors
 * to per-layer slots.
 *
 * Names, shapes and order were checked against transformers 5.17 (scripts/oracle/gemma4_layout.py
 * writes them; tests/data/gemma4_tiny_names.txt is its output for a tiny model). With P the text
 * prefix ("model.language_model." or "model." for the text-only form), d = hidden,
 * I = intermediate, H = n_heads, and per layer hd = head_dim, kv = n_kv_heads:
 *
 *   P embed_tokens.weight                        [vocab, d]  (also the output head: tied)
 *   P layers.L.layer_scalar                      [1]         (no ".weight")
 *   P layers.L.self_attn.q_proj.weight           [H*hd, d]
 *   P layers.L.self_attn.q_norm.weight           [hd]
 *   P layers.L.self_attn.k_norm.weight           [hd]
 *   P layers.L.self_attn.k_proj.weight           [kv*hd, d]
 *   P layers.L.self_attn.v_proj.weight           [kv*hd, d]  (absent when !has_v_proj)
 *   P layers.L.self_attn.o_proj.weight           [d, H*hd]
 *   P layers.L.mlp.gate_proj.weight              [I, d]
 *   P layers.L.mlp.up_proj.weight                [I, d]
 *   P layers.L.mlp.down_proj.weight              [d, I]
 *   P layers.L.input_layernorm.weight            [d]
 *   P layers.L.post_attention_layernorm.weight   [d]
 *   P layers.L.pre_feedforward_layernorm.weight  [d]
 *   P layers.L.post_feedforward_layernorm.weight [d]
 *   P norm.weight                                [d]
 *   multimodal (on-disk names; shapes in config.h): model.vision_embedder.{pos_embedding,
 *   patch_ln1.weight, patch_ln1.bias, patch_dense.weight, patch_dense.bias, patch_ln2.weight,
 *   patch_ln2.bias, pos_norm.weight, pos_norm.bias}, model.embed_vision.embedding_projection.weight
 *   (when has_vision), model.embed_audio.embedding_projection.weight (when has_audio).
 * Every tensor is BF16 in an input model. There is no lm_head.weight and no v_norm weight.
 */
#ifndef G4Q_MODEL_WEIGHTS_H
#define G4Q_MODEL_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"
#include "io/safetensors.h"
#include "model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(enum, name suffix after "P layers.L." (or after P / "model." for global ones), is linear).
 * Per-layer roles are listed in the order of transformers' state_dict. */
#define G4Q_WEIGHT_ROLE_TABLE(X)                                                                   \
    X(G4Q_W_LAYER_SCALAR, "layer_scalar", 0)                                                       \
    X(G4Q_W_Q_PROJ, "self_attn.q_proj.weight", 1)                                                  \
    X(G4Q_W_Q_NORM, "self_attn.q_norm.weight", 0)                                                  \
    X(G4Q_W_K_NORM, "self_attn.k_norm.weight", 0)                                                  \
    X(G4Q_W_K_PROJ, "self_attn.k_proj.weight", 1)                                                  \
    X(G4Q_W_V_PROJ, "self_attn.v_proj.weight", 1)                                                  \
    X(G4Q_W_O_PROJ, "self_attn.o_proj.weight", 1)                                                  \
    X(G4Q_W_GATE_PROJ, "mlp.gate_proj.weight", 1)                                                  \
    X(G4Q_W_UP_PROJ, "mlp.up_proj.weight", 1)                                                      \
    X(G4Q_W_DOWN_PROJ, "mlp.down_proj.weight", 1)                                                  \
    X(G4Q_W_INPUT_LN, "input_layernorm.weight", 0)                                                 \
    X(G4Q_W_POST_ATTN_LN, "post_attention_layernorm.weight", 0)                                    \
    X(G4Q_W_PRE_FF_LN, "pre_feedforward_layernorm.weight", 0)                                      \
    X(G4Q_W_POST_FF_LN, "post_feedforward_layernorm.weight", 0)                                    \
    X(G4Q_W_EMBED, "embed_tokens.weight", 0)                                                       \
    X(G4Q_W_NORM, "norm.weight", 0)                                                                \
    X(G4Q_W_MULTIMODAL, "", 0)

typedef enum {
#define G4Q_X_W(e, suffix, lin) e,
    G4Q_WEIGHT_ROLE_TABLE(G4Q_X_W)
#undef G4Q_X_W
        G4Q_W_ROLE_COUNT
} g4q_weight_role;

#define G4Q_LAYER_ROLES 14 /* G4Q_W_LAYER_SCALAR .. G4Q_W_POST_FF_LN */
#define G4Q_MAX_MULTIMODAL 11
#define G4Q_WEIGHT_NAME_MAX 96

/* "self_attn.q_proj.weight" etc.; "" for G4Q_W_MULTIMODAL. */
const char *g4q_weight_role_suffix(g4q_weight_role role);

/* Bound tensors of one decoder layer (pointers into the caller's tensor array). */
typedef struct g4q_layer_weights {
    const g4q_tensor *layer_scalar;               /* BF16 [1] */
    const g4q_tensor *q_proj;                     /* BF16 [H*hd, d] */
    const g4q_tensor *q_norm;                     /* BF16 [hd] */
    const g4q_tensor *k_norm;                     /* BF16 [hd] */
    const g4q_tensor *k_proj;                     /* BF16 [kv*hd, d] */
    const g4q_tensor *v_proj;                     /* BF16 [kv*hd, d]; NULL on k_eq_v full layers */
    const g4q_tensor *o_proj;                     /* BF16 [d, H*hd] */
    const g4q_tensor *gate_proj;                  /* BF16 [I, d] */
    const g4q_tensor *up_proj;                    /* BF16 [I, d] */
    const g4q_tensor *down_proj;                  /* BF16 [d, I] */
    const g4q_tensor *input_layernorm;            /* BF16 [d] */
    const g4q_tensor *post_attention_layernorm;   /* BF16 [d] */
    const g4q_tensor *pre_feedforward_layernorm;  /* BF16 [d] */
    const g4q_tensor *post_feedforward_layernorm; /* BF16 [d] */
} g4q_layer_weights;

typedef struct g4q_weights {
    const g4q_tensor *embed_tokens; /* BF16 [vocab, d]; also the (tied) output head */
    const g4q_tensor *norm;         /* BF16 [d] final norm */
    int n_layers;
    g4q_layer_weights layers[G4Q_MAX_LAYERS];
    /* Multimodal embedder tensors, kept only to be copied through; checkpoint (module) order. */
    int n_multimodal; /* 0, 1, 10 or 11 */
    const g4q_tensor *multimodal[G4Q_MAX_MULTIMODAL];
} g4q_weights;

/* One expected tensor. */
typedef struct g4q_weight_spec {
    char name[G4Q_WEIGHT_NAME_MAX]; /* full on-disk name */
    g4q_weight_role role;
    int layer;       /* decoder layer, or -1 */
    g4q_dtype dtype; /* BF16 for an input model */
    int ndim;
    int64_t shape[3];
    uint64_t numel;
} g4q_weight_spec;

typedef enum {
    /* transformers' state_dict order: embed_tokens; each layer in turn, its tensors in
     * G4Q_WEIGHT_ROLE_TABLE order; norm; the multimodal tensors in the order of config.h. */
    G4Q_ORDER_MODULE = 0,
    /* The order of the data in a file written by save_pretrained: safetensors lays tensors out
     * sorted by name (byte-wise strcmp) when all share one dtype (verified on 5.17 output). Use
     * this to write a synthetic checkpoint byte-compatible in layout with the real one. */
    G4Q_ORDER_FILE = 1,
} g4q_weight_order;

/* Number of tensors a checkpoint of this config holds (677 for the 12B, 666 text-only). */
size_t g4q_weights_expected_count(const g4q_config *cfg);

/* Fills out[0 .. g4q_weights_expected_count(cfg)) with every expected tensor's name, role, layer,
 * dtype (BF16) and shape, in the given order, and returns the count. `out` is caller-owned (the
 * 12B needs 677 entries; G4Q_MAX_LAYERS layers at most 2 + 14*256 + 11). cfg must come from
 * g4q_config_parse. */
size_t g4q_weights_expected(const g4q_config *cfg, g4q_weight_order order, g4q_weight_spec *out);

/* Binds tensors[0..n) (a checkpoint's tensors, any order) to the slots of *out. Every problem is
 * found, not just the first: missing tensors, unexpected ones (an unknown name, v_proj on a
 * k_eq_v full layer, lm_head.weight while embeddings are tied, multimodal tensors without a
 * vision/audio config, a name given twice), wrong shapes and wrong dtypes, each by name with
 * what was expected and found. Each problem is logged at ERROR level; the error message
 * ("<label>: N weight problems: ...") lists the first ones that fit (up to 10) and says how many
 * more. Status: G4Q_ERR_NOT_FOUND when only tensors are missing, G4Q_ERR_SHAPE when only shapes or
 * dtypes are wrong, G4Q_ERR_FORMAT otherwise. `label` names the checkpoint. *out points into
 * `tensors`, which must outlive it. */
g4q_status g4q_weights_bind(g4q_ctx *ctx, const g4q_config *cfg, const g4q_tensor *tensors,
                            size_t n, const char *label, g4q_weights *out);

/* g4q_weights_bind for a checkpoint whose Linear weights may be stored packed (quantized), as
 * src/model/qlinear.h does it:
 *   - skip[i] != 0 (skip may be NULL): tensor i is not looked at here (the caller validates it,
 *     e.g. `<m>.weight_scale`, or a U8 `<m>.weight` of NVFP4);
 *   - packed[0 .. n_packed): full names of expected Linear weights ("<m>.weight", a layer
 *     projection or a 2-D multimodal weight) that are stored in packed form: they are not
 *     required, their slot stays NULL (a multimodal entry is NULL), and an unskipped tensor of
 *     that name is an "unexpected" problem. A name that is no expected Linear weight is
 *     G4Q_ERR_INTERNAL.
 * Everything else is checked and reported exactly as g4q_weights_bind does, which is this call
 * with (NULL, NULL, 0). */
g4q_status g4q_weights_bind_partial(g4q_ctx *ctx, const g4q_config *cfg,
                                    const g4q_tensor *tensors, size_t n, const char *label,
                                    const uint8_t *skip, const char *const *packed,
                                    size_t n_packed, g4q_weights *out);

/* A slot by role: layer tensors for roles G4Q_W_LAYER_SCALAR..G4Q_W_POST_FF_LN (layer in range),
 * embed_tokens and norm for G4Q_W_EMBED / G4Q_W_NORM (layer ignored). NULL otherwise. */
const g4q_tensor *g4q_weights_get(const g4q_weights *w, int layer, g4q_weight_role role);

/* Groups of Linear modules that share one input and so must share quantization parameters where a
 * format ties them (e.g. one input scale, one global weight scale for fused QKV in vLLM). */
typedef enum { G4Q_GROUP_NONE = 0, G4Q_GROUP_QKV = 1, G4Q_GROUP_GATE_UP = 2 } g4q_linear_group;

typedef struct g4q_linear {
    g4q_weight_role role;   /* G4Q_W_Q_PROJ ... G4Q_W_DOWN_PROJ */
    const char *module;     /* "self_attn.q_proj" ... "mlp.down_proj" (static string) */
    g4q_linear_group group; /* q/k/v: QKV; gate/up: GATE_UP; o, down: NONE */
    const char *group_name; /* "qkv", "gate_up" or NULL */
    int64_t out_features;   /* rows of the [out, in] weight */
    int64_t in_features;
} g4q_linear;

#define G4Q_MAX_LAYER_LINEARS 7

/* The Linear modules of `layer` in module order (q, k, [v,] o, gate, up, down) written to out
 * (room for G4Q_MAX_LAYER_LINEARS); returns how many: 7, or 6 on k_eq_v full layers. */
int g4q_weights_layer_linears(const g4q_config *cfg, int layer, g4q_linear *out);

#ifdef __cplusplus
}
#endif
#endif
