/*
 * Perplexity of a token sequence with strided windows (the evaluation described in the Hugging
 * Face "Perplexity of fixed-length models" guide).
 *
 * For a sequence ids[0..N) (N >= 2), window W >= 2 and stride 1 <= S <= W: windows start at
 * b = 0, S, 2S, ... and cover [b, min(b + W, N)); the last window is the first that reaches N.
 * Each window is an independent forward pass from position 0 (fresh KV cache). Token t is scored
 * at most once, in the first window that reaches it, provided it is not that window's first
 * token (which has no context):
 *   nll_t = -log softmax(logits at t-1)[ids[t]]     (fp32 logits after softcap; sums in double)
 * using the window's context [b, t). Window b thus scores [max(prev_end, b + 1), end), exactly the
 * labels transformers' loss keeps in that guide (target_ids[:, :-trg_len] = -100, then the shift).
 * With S < W every token but token 0 is scored (N - 1); with S = W the windows are disjoint and
 * each window's first token is not scored (N - n_windows). Sums are exact, not the guide's
 * mean-times-length approximation.
 * Suppressed ids are NOT masked here (as in transformers' loss).
 */
#ifndef G4Q_RUNTIME_PPL_H
#define G4Q_RUNTIME_PPL_H

#include <stdint.h>

#include "runtime/session.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_ppl_opts {
    int window;   /* W >= 2, at most max_position_embeddings */
    int stride;   /* 1 <= S <= W */
    int rows;     /* logit rows per forward call (host memory rows x vocab floats); 0 = 64 */
    int progress; /* 1: a progress bar / lines on stderr (src/base/progress.h) */
} g4q_ppl_opts;

typedef struct g4q_ppl_result {
    double nll_sum;   /* sum of nll_t over the scored tokens (natural log) */
    int64_t n_scored; /* tokens scored (N - 1 when S < W) */
    double nll_mean;  /* nll_sum / n_scored */
    double ppl;       /* exp(nll_mean) */
    int n_windows;
    double seconds;
} g4q_ppl_result;

/* Evaluates ids[0..n) on the session as described above; reserves the session's KV cache for W
 * positions (or n when shorter). Errors: INVALID (n < 2, bad window/stride, ids outside the
 * vocabulary), NUMERIC (a non-finite logit), and those of the forward pass. */
g4q_status g4q_ppl_run(g4q_session *s, const int32_t *ids, int64_t n, const g4q_ppl_opts *opts,
                       g4q_ppl_result *out);

#ifdef __cplusplus
}
#endif
#endif
