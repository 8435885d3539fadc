/*
 * A tiny Gemma 4 model built in memory with random bf16 weights, and an independent naive
 * double-precision forward of it written straight from docs/gemma4.md §4 (no KV cache, no code
 * shared with src/model/forward.c: it reads only the public config/weights/tensor structs).
 * Shared by tests/test_forward.c and tests/test_calibrate.c.
 */
#ifndef G4Q_TESTS_REFMODEL_H
#define G4Q_TESTS_REFMODEL_H

#include <stdint.h>

#include "model/config.h"
#include "model/forward.h"
#include "model/weights.h"

#ifdef __cplusplus
extern "C" {
#endif

#define G4Q_REFMODEL_MAX_TENSORS (2 + 14 * 8)

/* Config, weights and the bf16 tensors they point to; w's tensors point into t[] and names[], so
 * a bytewise copy shares them with the original. */
typedef struct g4q_refmodel {
    g4q_config cfg;
    g4q_weights w;
    g4q_tensor t[G4Q_REFMODEL_MAX_TENSORS];
    char names[G4Q_REFMODEL_MAX_TENSORS][96];
    int nt;
} g4q_refmodel;

/* Fills *m (n_layers <= 8) with a Gemma 4 layout of small sizes: layer i is full iff i % 6 == 5
 * (k_eq_v, 1 KV head, head_dim ghd, proportional RoPE theta 1e6 with 1/4 of the angles); sliding
 * layers have kv heads of head_dim hd, RoPE theta 1e4, window `window`. Tied embeddings, eps 1e-6,
 * softcap 30. Weights are bf16 normals drawn from *rng (g4q_test_normal) in a fixed order. The
 * tensor data is malloc'd: release it with g4q_refmodel_free. */
void g4q_refmodel_build(g4q_refmodel *m, uint64_t *rng, int n_layers, int d, int inter, int vocab,
                        int H, int kv, int hd, int ghd, int window);

/* Frees the tensor data (not m itself). */
void g4q_refmodel_free(g4q_refmodel *m);

/* Runs ids[0..T) at positions 0..T-1 in double precision with the fp32 embedding scale
 * fp32(sqrt(hidden)) of the fp32 CPU backend.
 * am: NULL, or am[n_layers][G4Q_OBS_COUNT] whose entries are raised (fmax, not reset) to max |x|
 *     at each observation site of src/model/forward.h (attn_in, o_in, mlp_in, down_in, k after
 *     norm+RoPE, v after norm).
 * logits: NULL to skip the final norm and head, else [T, vocab] softcapped logits. */
void g4q_refmodel_forward(const g4q_refmodel *m, const int32_t *ids, int T,
                          double (*am)[G4Q_OBS_COUNT], double *logits);

#ifdef __cplusplus
}
#endif

#endif
