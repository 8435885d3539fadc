/*
 * Comparison of two models on the same tokens: a reference (normally the BF16 model) and a
 * candidate (its quantized export). Both sessions are open at once and run the same windows
 * chunk by chunk, so the full next-token distributions of both are available together and every
 * statistic is exact: nothing is approximated by top-k lists. Both sessions run on ONE backend
 * (open the candidate with g4q_session_opts.backend = ref->be): the logits of both stay there
 * ([rows, vocab] each) and the backend's logit_stats reduces them to five numbers per position;
 * only those reach the host, and they are summed there in position order (deterministic).
 * Memory: both models' weights (the CPU backend maps them; a GPU holds both), 2 x rows x vocab
 * logits on the backend and 48 bytes per position on the host.
 *
 * Windows and scored positions are exactly those of the perplexity evaluation (ppl.h): windows of
 * W tokens moved by S, each from a fresh KV cache; token t is scored once, in the first window
 * that reaches it (not as its first token), from the logits at t-1 with that window's context.
 * At every scored position, with P = softmax(reference logits) and Q = softmax(candidate logits)
 * over the whole vocabulary (fp32 logits after softcap, log-sum-exp and sums in double):
 *   KL(P || Q) = Σ_v P_v (log P_v − log Q_v)      (nats; exactly 0 when the logits are identical)
 *   top-1 agreement: argmax P == argmax Q (first index on ties)
 *   NLL of each model of the actual next token ids[t]
 * Results are means over the scored positions; ppl = exp(mean NLL), the same numbers `ppl` gives
 * for each model alone with the same window and stride.
 */
#ifndef G4Q_RUNTIME_COMPARE_H
#define G4Q_RUNTIME_COMPARE_H

#include <stdint.h>

#include "runtime/session.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_compare_opts {
    int window;   /* W >= 2, at most both models' max_position_embeddings */
    int stride;   /* 1 <= S <= W */
    int rows;     /* positions per forward call, at most the sessions' max_chunk; 0 = that */
    int progress; /* 1: a progress bar / lines on stderr */
} g4q_compare_opts;

typedef struct g4q_compare_result {
    int64_t n_tokens; /* length of the sequence */
    int64_t n_scored; /* positions compared */
    int n_windows;
    double kl_mean;           /* mean KL(P_ref || P_cand), nats */
    double kl_max;            /* largest per-position KL */
    double kl_p99;            /* 99th percentile of the per-position KL (nearest rank) */
    int64_t kl_max_token;     /* index t of the token predicted where kl_max was reached */
    int64_t top1_agree;       /* positions whose argmax agrees */
    double top1_rate;         /* top1_agree / n_scored */
    double nll_ref, nll_cand; /* mean NLL per scored token */
    double ppl_ref, ppl_cand; /* exp of those */
    double seconds;
} g4q_compare_result;

/* Runs ids[0..n) (n >= 2) through both sessions as described above; reserves both KV caches for
 * min(W, n) positions. The models must share the vocabulary size (G4Q_ERR_INVALID naming both
 * folders otherwise) and one backend. Errors: INVALID (n < 2, bad window/stride, ids outside the
 * vocabulary, two backends),
 * NUMERIC (a non-finite logit, naming the model and the token), and those of the forward passes. */
g4q_status g4q_compare_run(g4q_session *ref, g4q_session *cand, const int32_t *ids, int64_t n,
                           const g4q_compare_opts *opts, g4q_compare_result *out);

#ifdef __cplusplus
}
#endif
#endif
