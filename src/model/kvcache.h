/*
 * KV cache of one sequence (batch 1), in backend memory (docs/gemma4.md §5).
 *
 * Per layer L, K and V each hold [cap, n_kv_heads, head_dim] elements of the backend's act_dtype.
 * K is stored after k_norm + RoPE, V after v_norm. Position p lives in slot p mod cap:
 *   sliding layers: cap = min(sliding_window, max_ctx), a ring of the last `cap` positions;
 *   full layers:    cap = max_ctx, the whole sequence.
 * The forward pass attends over the old cache plus the new chunk BEFORE storing the chunk, so a
 * chunk of any length is correct with a ring of exactly `sliding_window` entries.
 */
#ifndef G4Q_MODEL_KVCACHE_H
#define G4Q_MODEL_KVCACHE_H

#include <stddef.h>

#include "backend/backend.h"
#include "model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_kv_layer {
    g4q_buf *k; /* [cap, nkv, hd], act_dtype, owned */
    g4q_buf *v; /* [cap, nkv, hd], act_dtype, owned */
    int cap;    /* slots */
    int nkv, hd;
} g4q_kv_layer;

typedef struct g4q_kvcache {
    g4q_backend *be; /* not owned; must outlive the cache */
    int n_layers;
    int max_ctx;  /* positions 0 .. max_ctx-1 can be cached */
    int n_past;   /* tokens cached so far: positions 0 .. n_past-1 */
    size_t bytes; /* backend memory held by all layers */
    g4q_kv_layer layers[G4Q_MAX_LAYERS];
} g4q_kvcache;

/* Allocates the cache for cfg with room for max_ctx positions (1 <= max_ctx; also bounded by
 * cfg->max_position_embeddings). The contents start undefined and n_past at 0. */
g4q_status g4q_kvcache_create(g4q_ctx *ctx, g4q_backend *be, const g4q_config *cfg, int max_ctx,
                              g4q_kvcache **out);

/* Forgets the sequence (n_past = 0); memory is kept. */
void g4q_kvcache_reset(g4q_kvcache *kv);

void g4q_kvcache_free(g4q_kvcache *kv); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
