/*
 * Choosing the next token from a row of logits: greedy argmax, or temperature / top-k / top-p
 * sampling with a seeded deterministic RNG held in the sampler (no global state).
 *
 * Both paths first mask the suppressed ids (generation_config.json "suppress_tokens", e.g. 258882
 * and 258883 on the 12B; docs/gemma4.md §7.4) to -inf.
 *
 * Greedy (temperature 0): the largest logit, ties going to the lowest id (bf16 logits do tie).
 * Sampling (temperature > 0), in the order of transformers' logits warpers:
 *   1. z_i = logit_i / temperature;
 *   2. top-k (k > 0): keep the k largest z (ties broken towards lower ids);
 *   3. top-p (0 < p < 1): of those, sorted by z descending (ties: lower id first), keep the
 *      shortest prefix whose softmax mass reaches p (at least one token);
 *   4. draw from the softmax of the kept z with one uniform u in [0, 1) (53 random bits): the
 *      first token, in that order, whose cumulative mass exceeds u · total.
 * The same seed, options and logits always give the same token sequence, on any machine.
 */
#ifndef G4Q_RUNTIME_SAMPLE_H
#define G4Q_RUNTIME_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* xoshiro256** state, seeded through splitmix64. */
typedef struct g4q_rng {
    uint64_t s[4];
} g4q_rng;

void g4q_rng_seed(g4q_rng *r, uint64_t seed);
uint64_t g4q_rng_next(g4q_rng *r);
double g4q_rng_uniform(g4q_rng *r); /* [0, 1), 53 bits */

typedef struct g4q_sampler_opts {
    double temperature; /* 0: greedy; > 0: sample */
    int top_k;          /* 0: no top-k */
    double top_p;       /* 1.0 (or 0): no top-p; else in (0, 1) */
    uint64_t seed;
} g4q_sampler_opts;

typedef struct g4q_sampler g4q_sampler;

/* Creates a sampler for rows of `vocab` logits. suppress[0..n_suppress) are masked; ids outside
 * [0, vocab) are ignored. Bad options (temperature < 0 or not finite, top_k < 0, top_p outside
 * [0, 1]) give G4Q_ERR_INVALID naming the option. Free with g4q_sampler_free. */
g4q_status g4q_sampler_create(g4q_ctx *ctx, const g4q_sampler_opts *opts, int vocab,
                              const int32_t *suppress, size_t n_suppress, g4q_sampler **out);

void g4q_sampler_free(g4q_sampler *s); /* NULL is a no-op */

/* Picks the next token from logits[0..vocab) (not modified). A NaN logit, or no selectable token
 * (everything masked or -inf), is G4Q_ERR_NUMERIC. */
g4q_status g4q_sampler_next(g4q_sampler *s, const float *logits, int32_t *token);

/* The sampler's suppression mask, [vocab] bytes (non-zero = suppressed), if it is greedy
 * (temperature 0); NULL when it samples. For choosing on the device (g4q_forward_step_greedy). */
const uint8_t *g4q_sampler_greedy_mask(const g4q_sampler *s);

/* Greedy argmax of logits[0..n) skipping ids whose mask byte is non-zero (mask may be NULL);
 * ties go to the lowest id. Returns -1 when nothing is selectable (all masked, -inf or NaN). */
int32_t g4q_sample_argmax(const float *logits, int n, const uint8_t *mask);

#ifdef __cplusplus
}
#endif
#endif
