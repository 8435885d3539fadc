#include "runtime/generate.h"

#include <stdlib.h>
#include <string.h>

#include "base/sys.h"

static int is_stop(const g4q_gen_opts *o, int32_t tok)
{
    for (size_t i = 0; i < o->n_stop; i++)
        if (o->stop_ids[i] == tok) return 1;
    return 0;
}

/* One greedy decode step with the token picked on the device (g4q_forward_step_greedy), failing
 * as g4q_sampler_next does on a NaN logit or when nothing is selectable. */
static g4q_status greedy_step(g4q_session *s, const uint8_t *mask, int32_t *tok)
{
    int32_t next = -1, nan_at = -1;
    G4Q_TRY(g4q_forward_step_greedy(s->fwd, s->kv, *tok, mask, &next, &nan_at));
    if (nan_at >= 0)
        return g4q_fail(s->ctx, G4Q_ERR_NUMERIC, "sampler: logit of token %d is NaN", nan_at);
    if (next < 0) return g4q_fail(s->ctx, G4Q_ERR_NUMERIC, "sampler: no selectable token");
    *tok = next;
    return G4Q_OK;
}

g4q_status g4q_generate(g4q_session *s, const int32_t *prompt, int n_prompt,
                        const g4q_gen_opts *opts, g4q_gen_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    stats->stop_token = -1;
    stats->n_prompt = n_prompt;
    if (n_prompt < 1) return g4q_fail(s->ctx, G4Q_ERR_INVALID, "generate: empty prompt");
    if (opts->max_new_tokens < 1)
        return g4q_fail(s->ctx, G4Q_ERR_INVALID, "generate: max_new_tokens %d < 1",
                        opts->max_new_tokens);
    if (!s->kv) return g4q_fail(s->ctx, G4Q_ERR_INVALID, "generate: no context reserved");
    if (n_prompt > s->kv->max_ctx)
        return g4q_fail(s->ctx, G4Q_ERR_INVALID,
                        "the prompt has %d tokens, longer than the context of %d", n_prompt,
                        s->kv->max_ctx);
    G4Q_TRY(g4q_session_check_ids(s, prompt, (size_t)n_prompt));
    float *logits = malloc((size_t)s->cfg->vocab_size * sizeof *logits);
    if (!logits) return g4q_fail(s->ctx, G4Q_ERR_NOMEM, "generate: out of memory");
    g4q_kvcache_reset(s->kv);
    const uint8_t *greedy_mask = g4q_sampler_greedy_mask(opts->sampler);
    int device_pick = greedy_mask != NULL && s->be->argmax != NULL;
    int32_t tok = -1;
    double t0 = g4q_now_seconds();
    g4q_status st = g4q_forward_run(s->fwd, s->kv, prompt, n_prompt, 1, logits);
    if (st == G4Q_OK) st = g4q_sampler_next(opts->sampler, logits, &tok);
    double t1 = g4q_now_seconds();
    stats->prefill_seconds = t1 - t0;
    while (st == G4Q_OK) {
        stats->n_generated++;
        if (is_stop(opts, tok)) {
            stats->stop = G4Q_GEN_STOP_TOKEN;
            stats->stop_token = tok;
            break;
        }
        if (opts->on_token && (st = opts->on_token(opts->user, tok)) != G4Q_OK) break;
        if (stats->n_generated >= opts->max_new_tokens) {
            stats->stop = G4Q_GEN_STOP_LENGTH;
            break;
        }
        if (s->kv->n_past >= s->kv->max_ctx) {
            stats->stop = G4Q_GEN_STOP_CONTEXT;
            break;
        }
        double a = g4q_now_seconds();
        st = device_pick ? greedy_step(s, greedy_mask, &tok) : G4Q_ERR_UNSUPPORTED;
        if (st == G4Q_ERR_UNSUPPORTED) { /* sampling, or a backend without argmax */
            device_pick = 0;
            st = g4q_forward_run(s->fwd, s->kv, &tok, 1, 1, logits);
            if (st == G4Q_OK) st = g4q_sampler_next(opts->sampler, logits, &tok);
        }
        stats->decode_seconds += g4q_now_seconds() - a;
        stats->n_decode_steps++;
    }
    free(logits);
    if (stats->prefill_seconds > 0) stats->prefill_tok_s = n_prompt / stats->prefill_seconds;
    if (stats->decode_seconds > 0)
        stats->decode_tok_s = stats->n_decode_steps / stats->decode_seconds;
    return st;
}

/* ---- incremental detokenization ---- */

#define REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */
#define MAX_HELD_IDS 4             /* a UTF-8 character has at most 4 byte tokens */

void g4q_textstream_init(g4q_textstream *ts, g4q_ctx *ctx, const g4q_tok *tok, g4q_text_fn emit,
                         void *user)
{
    memset(ts, 0, sizeof *ts);
    ts->ctx = ctx;
    ts->tok = tok;
    ts->emit = emit;
    ts->user = user;
}

static g4q_status emit_range(g4q_textstream *ts, const char *text, size_t end)
{
    g4q_status st = G4Q_OK;
    if (end > ts->emitted) st = ts->emit(ts->user, text + ts->emitted, end - ts->emitted);
    if (end > ts->emitted) ts->emitted = end;
    return st;
}

/* Decodes the pending ids; emits the complete part, or everything when `flush`. */
static g4q_status drain(g4q_textstream *ts, int flush)
{
    char *text = NULL;
    size_t len = 0;
    G4Q_TRY(g4q_tok_decode(ts->ctx, ts->tok, ts->pending.ids, ts->pending.n, 0, &text, &len));
    size_t end = len;
    while (end >= 3 && memcmp(text + end - 3, REPLACEMENT, 3) == 0)
        end -= 3;
    g4q_status st;
    if (end < len && !flush && ts->pending.n <= MAX_HELD_IDS) {
        st = emit_range(ts, text, end); /* hold the partial character back */
    } else {
        st = emit_range(ts, text, len);
        ts->pending.n = 0;
        ts->emitted = 0;
    }
    free(text);
    return st;
}

g4q_status g4q_textstream_push(g4q_textstream *ts, int32_t id)
{
    if (ts->pending.n == ts->pending.cap) {
        size_t cap = ts->pending.cap ? 2 * ts->pending.cap : 16;
        int32_t *p = realloc(ts->pending.ids, cap * sizeof *p);
        if (!p) return g4q_fail(ts->ctx, G4Q_ERR_NOMEM, "text stream: out of memory");
        ts->pending.ids = p;
        ts->pending.cap = cap;
    }
    ts->pending.ids[ts->pending.n++] = id;
    return drain(ts, 0);
}

g4q_status g4q_textstream_finish(g4q_textstream *ts)
{
    g4q_status st = ts->pending.n ? drain(ts, 1) : G4Q_OK;
    g4q_tok_ids_free(&ts->pending);
    return st;
}
