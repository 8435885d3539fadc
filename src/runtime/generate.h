/*
 * Streamed generation of one sequence: prefill the prompt, then pick (src/runtime/sample.h) and
 * feed back one token at a time until a stop token, max_new_tokens, or the end of the context.
 *
 * Timing: prefill covers the forward pass over the prompt (which also gives the first new token's
 * logits); decode covers the later one-token forward passes. Sampling time is included in each.
 *
 * g4q_textstream turns the generated ids into text as they arrive: it decodes the ids since the
 * last complete character and emits only the new bytes, holding back a trailing partial UTF-8
 * character (decoded as U+FFFD) until the byte tokens that complete it arrive, so multi-byte
 * characters are printed whole. A run of more than 4 byte tokens that never becomes valid UTF-8 is
 * emitted as U+FFFD, as the tokenizer decodes it.
 */
#ifndef G4Q_RUNTIME_GENERATE_H
#define G4Q_RUNTIME_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/sample.h"
#include "runtime/session.h"
#include "text/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called for every generated token that is not a stop token. A non-OK return stops generation
 * and is passed on. */
typedef g4q_status (*g4q_token_fn)(void *user, int32_t token);

typedef struct g4q_gen_opts {
    int max_new_tokens;      /* >= 1 */
    const int32_t *stop_ids; /* stop when one of these is generated (not passed to on_token) */
    size_t n_stop;
    g4q_sampler *sampler;  /* not owned */
    g4q_token_fn on_token; /* may be NULL */
    void *user;
} g4q_gen_opts;

typedef enum {
    G4Q_GEN_STOP_TOKEN = 0,   /* a stop id was generated */
    G4Q_GEN_STOP_LENGTH = 1,  /* max_new_tokens reached */
    G4Q_GEN_STOP_CONTEXT = 2, /* the KV cache is full */
} g4q_gen_stop;

typedef struct g4q_gen_stats {
    int n_prompt;
    int n_generated;    /* tokens handed to on_token, plus the stop token if any */
    int n_decode_steps; /* one-token forward passes */
    double prefill_seconds, decode_seconds;
    double prefill_tok_s, decode_tok_s; /* n_prompt / prefill s; n_decode_steps / decode s */
    g4q_gen_stop stop;
    int32_t stop_token; /* the stop id generated, or -1 */
} g4q_gen_stats;

/* Generates from prompt[0..n_prompt) (n_prompt >= 1). The session's KV cache (g4q_session_reserve)
 * must hold the prompt: a longer prompt is G4Q_ERR_INVALID "the prompt has N tokens, the context
 * M"; generation stops with G4Q_GEN_STOP_CONTEXT when the cache is full. */
g4q_status g4q_generate(g4q_session *s, const int32_t *prompt, int n_prompt,
                        const g4q_gen_opts *opts, g4q_gen_stats *stats);

/* ---- incremental detokenization ---- */

typedef g4q_status (*g4q_text_fn)(void *user, const char *text, size_t len);

typedef struct g4q_textstream {
    g4q_ctx *ctx;
    const g4q_tok *tok;
    g4q_text_fn emit;
    void *user;
    g4q_tok_ids pending; /* ids since the last complete character; owned */
    size_t emitted;      /* bytes of decode(pending) already emitted */
} g4q_textstream;

/* Starts a stream (no allocation yet). */
void g4q_textstream_init(g4q_textstream *ts, g4q_ctx *ctx, const g4q_tok *tok, g4q_text_fn emit,
                         void *user);
/* Adds one id and emits what became printable. */
g4q_status g4q_textstream_push(g4q_textstream *ts, int32_t id);
/* Emits whatever is held back and frees the stream's memory. */
g4q_status g4q_textstream_finish(g4q_textstream *ts);

#ifdef __cplusplus
}
#endif
#endif
