/*
 * Synthetic Gemma 4 checkpoints in the exact Hugging Face layout (docs/gemma4.md §6): config.json,
 * model.safetensors (or shards + index), tokenizer.json, tokenizer_config.json,
 * generation_config.json and chat_template.jinja. No lm_head (tied embeddings).
 *
 * Shapes: the spec is turned into config.json, which is parsed back with g4q_config_parse and laid
 * out by g4q_weights_expected, so the config parser is the single source of truth for shapes.
 *
 * Values: every element is a pure function of (seed, tensor name, element index) through a
 * counter-based generator, so any range of any tensor can be generated independently, in any
 * order and on any number of threads, with identical bytes. The distributions imitate a trained
 * model and keep the forward pass well conditioned; synth.c explains each one.
 */
#ifndef G4Q_MODEL_SYNTH_H
#define G4Q_MODEL_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes of a synthetic model. Everything not listed follows the 12B (docs/gemma4.md §9). */
typedef struct g4q_synth_spec {
    char preset[16];     /* "tiny", "small" or "12b" */
    int n_layers;        /* layer i is full if i mod 6 == 5, and the last layer is always full */
    int hidden;          /* multiple of 128 and of n_heads */
    int intermediate;    /* GeGLU width, multiple of 128 */
    int vocab;           /* >= G4Q_SYNTH_MIN_VOCAB */
    int n_heads;         /* query heads */
    int n_kv_heads;      /* sliding layers */
    int head_dim;        /* sliding layers */
    int global_head_dim; /* full layers; they have 1 KV head and no v_proj (attention_k_eq_v) */
    int sliding_window;
    long max_position_embeddings;
    uint64_t seed;
} g4q_synth_spec;

#define G4Q_SYNTH_MIN_VOCAB 1024
#define G4Q_SYNTH_MAX_VOCAB (1 << 20)

/* Fills *out with a preset: "tiny" (6 layers, hidden 256, vocab 2048, a few MB), "small"
 * (12 layers, hidden 512, vocab 8192, tens of MB) or "12b" (the real shape, 23.9 GB). Seed 0. */
g4q_status g4q_synth_preset(g4q_ctx *ctx, const char *name, g4q_synth_spec *out);

/* Applies command-line overrides; 0 keeps the preset's value. A new hidden size scales the
 * intermediate size by the same factor (rounded to a multiple of 128). Validates the result. */
g4q_status g4q_synth_override(g4q_ctx *ctx, g4q_synth_spec *s, int layers, int hidden, int vocab);

/* Checks a spec: sizes positive, hidden and intermediate multiples of 128, hidden a multiple of
 * n_heads, head counts divide, vocab within [G4Q_SYNTH_MIN_VOCAB, G4Q_SYNTH_MAX_VOCAB]. */
g4q_status g4q_synth_validate(g4q_ctx *ctx, const g4q_synth_spec *s);

/* Token ids of the multimodal markers: the real ids (docs/gemma4.md §2) when vocab >= 262144,
 * otherwise the top seven ids of the vocabulary, so every id the files mention is in range. */
typedef struct g4q_synth_mm_ids {
    int boi, boa, image, audio, eoi, eoa, video;
} g4q_synth_mm_ids;
void g4q_synth_mm_ids_of(int vocab, g4q_synth_mm_ids *out);

/* config.json of the spec (shipped form: global_head_dim / num_global_key_value_heads), as a new
 * cJSON tree owned by the caller. */
g4q_status g4q_synth_config_json(g4q_ctx *ctx, const g4q_synth_spec *s, cJSON **out);

/* ---- the value generator ---- */

/* How a tensor's values are drawn (chosen from its name). */
typedef enum {
    G4Q_SYNTH_LINEAR = 0, /* [out, in] projection */
    G4Q_SYNTH_EMBED,      /* embed_tokens (also the output head) */
    G4Q_SYNTH_NORM_IN,    /* input_layernorm, pre_feedforward_layernorm */
    G4Q_SYNTH_NORM_POST,  /* post_attention_layernorm, post_feedforward_layernorm */
    G4Q_SYNTH_NORM_FINAL, /* the final norm */
    G4Q_SYNTH_QK_NORM,    /* q_norm, k_norm */
    G4Q_SYNTH_SCALAR,     /* layer_scalar */
    G4Q_SYNTH_MM_SCALE,   /* multimodal LayerNorm weights */
    G4Q_SYNTH_MM_SMALL,   /* multimodal biases and position embeddings */
} g4q_synth_kind;

/* Generator state of one tensor. numel = rows * cols (1-D tensors have rows = 1). */
typedef struct g4q_synth_gen {
    g4q_synth_kind kind;
    uint64_t key;       /* from the seed and the tensor name */
    int64_t rows, cols; /* shape[0] and the product of the other dims */
    float sigma;        /* LINEAR/EMBED/MM_SMALL: base standard deviation */
    int layer;          /* decoder layer of the tensor, -1 for global ones */
    float *row_scale;   /* LINEAR: rows entries, owned; NULL otherwise */
    float *col_scale;   /* LINEAR: cols entries (outlier input channels), owned; NULL otherwise */
} g4q_synth_gen;

/* Prepares the generator of tensor `name` with the given shape (a known Gemma 4 name: text
 * tensors with either prefix, or one of the 11 multimodal tensors). Unknown names fail. */
g4q_status g4q_synth_gen_init(g4q_ctx *ctx, uint64_t seed, const char *name, int ndim,
                              const int64_t *shape, g4q_synth_gen *g);

/* Writes elements [first, first + n) of the tensor, row-major, as bf16 into out[0..n). Pure:
 * the same element always gets the same value, whatever the chunking. Thread-safe. */
void g4q_synth_gen_fill(const g4q_synth_gen *g, uint64_t first, uint64_t n, uint16_t *out);

void g4q_synth_gen_free(g4q_synth_gen *g); /* NULL is a no-op */

/* ---- the whole checkpoint ---- */

typedef struct g4q_synth_result {
    uint64_t params;    /* elements over all tensors */
    uint64_t bytes;     /* bytes of tensor data */
    uint64_t n_tensors;
    int n_files;        /* files written into the folder */
    int n_shards;       /* safetensors files */
} g4q_synth_result;

/* Writes the checkpoint of `s` into the existing folder `dir` (use an outdir's partial path).
 * shard_bytes 0 writes one model.safetensors. With dry_run nothing is written and only *res is
 * filled. Weights are generated in chunks of about 32 MB with OpenMP (ctx->threads, 0 = default)
 * and streamed to disk; memory stays at a few chunks whatever the model size. */
g4q_status g4q_synth_write(g4q_ctx *ctx, const g4q_synth_spec *s, const char *dir,
                           uint64_t shard_bytes, int dry_run, g4q_synth_result *res);

#ifdef __cplusplus
}
#endif
#endif
