/*
 * gemma4q-run SUBCOMMAND [options]: runs a Gemma 4 checkpoint. generate (streamed text), ppl
 * (strided perplexity), compare (a quantized export against its BF16 model: KL, top-1
 * agreement, perplexities), logits (raw fp32 logits of one prefill, for tests and oracles),
 * tokenize / detokenize, info. Thin: parses options, calls src/runtime (session, sample,
 * generate, ppl, compare).
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/sys.h"
#include "cli.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "runtime/compare.h"
#include "runtime/generate.h"
#include "runtime/ppl.h"
#include "runtime/sample.h"
#include "runtime/session.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#define MAX_TEXT_BYTES (1u << 30) /* text files read by ppl / tokenize */

typedef struct run_opts {
    const char *model, *quantized, *device, *precision, *emulate, *tokenizer, *prompt, *system,
        *file, *text, *ids, *out;
    int max_tokens, chat, threads, top_k, seed, ctx_len, window, stride, cmp_stride, quiet, verbose,
        json;
    double temperature, top_p;
} run_opts;

typedef g4q_status (*sub_fn)(g4q_ctx *ctx, const run_opts *o);

enum { GEN = 1, PPL = 2, LOG = 4, TOK = 8, DETOK = 16, INFO = 32, CMP = 64 };
#define RUNS (GEN | PPL | LOG | CMP)

typedef struct sub_opt {
    unsigned subs; /* the subcommands that take it */
    g4q_opt opt;
} sub_opt;

/* ---------------------------------------------------------------- helpers */

/* "2,17,42" -> ids (malloc'd). Spaces around ids are allowed; anything else is a usage error. */
static g4q_status parse_ids(g4q_ctx *ctx, const char *text, g4q_tok_ids *out)
{
    if (!text) return g4q_fail(ctx, G4Q_ERR_USAGE, "--ids is required");
    const char *p = text;
    for (;;) {
        while (*p == ' ')
            p++;
        const char *start = p;
        long long v = 0;
        while (*p >= '0' && *p <= '9' && v <= INT32_MAX)
            v = v * 10 + (*p++ - '0');
        const char *end = p;
        while (*p == ' ')
            p++;
        if (end == start || v > INT32_MAX || (*p != ',' && *p != '\0')) {
            size_t n = strcspn(start, ",");
            return g4q_fail(ctx, G4Q_ERR_USAGE,
                            "--ids '%s': '%.*s' is not a token id (expected comma-separated "
                            "integers in 0..2147483647, e.g. 2,17,42)",
                            text, (int)(n > 40 ? 40 : n), start);
        }
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 64;
            int32_t *q = realloc(out->ids, cap * sizeof *q);
            if (!q) return g4q_fail(ctx, G4Q_ERR_NOMEM, "--ids: out of memory");
            out->ids = q;
            out->cap = cap;
        }
        out->ids[out->n++] = (int32_t)v;
        if (*p == '\0') return G4Q_OK;
        p++;
    }
}

static void print_ids(const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%s%d", i ? "," : "", (int)ids[i]);
    printf("\n");
}

/* Opens o->model; with `lend`, on that session's backend, `chunk` (0 = default) tokens per
 * forward call. */
static g4q_status open_session_on(g4q_ctx *ctx, const run_opts *o, g4q_session *lend, int chunk,
                                  g4q_session **s)
{
    if (!o->model) return g4q_fail(ctx, G4Q_ERR_USAGE, "--model DIR is required");
    g4q_session_opts so = {.max_chunk = chunk, .backend = lend ? lend->be : NULL};
    G4Q_TRY(g4q_device_parse(ctx, o->device, &so.device));
    if (o->precision) G4Q_TRY(g4q_session_parse_precision(ctx, o->precision, &so.precision));
    if (o->emulate) G4Q_TRY(g4q_session_parse_emulate(ctx, o->emulate, &so.emulate));
    G4Q_TRY(g4q_session_open(ctx, o->model, &so, s));
    if ((*s)->emulate != G4Q_EMULATE_NONE)
        G4Q_INFO(ctx, "%s: engine numerics %s (--emulate)", o->model,
                 g4q_emulate_name((*s)->emulate));
    G4Q_INFO(ctx, "%s: %d layers, hidden %d, vocab %d on %s", o->model, (*s)->cfg->n_layers,
             (*s)->cfg->hidden, (*s)->cfg->vocab_size, (*s)->be->name);
    return G4Q_OK;
}

static g4q_status open_session(g4q_ctx *ctx, const run_opts *o, g4q_session **s)
{
    return open_session_on(ctx, o, NULL, 0, s);
}

static g4q_status need_tokenizer(g4q_ctx *ctx, const g4q_session *s)
{
    if (!s->tok) return g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "%s: no tokenizer.json", s->dir);
    return G4Q_OK;
}

/* Encodes text, with <bos> first when add_bos. */
static g4q_status encode(g4q_ctx *ctx, const g4q_tok *tok, const char *text, size_t len,
                         int32_t bos, g4q_tok_ids *ids)
{
    if (bos >= 0) {
        ids->ids = malloc(64 * sizeof *ids->ids);
        if (!ids->ids) return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
        ids->cap = 64;
        ids->ids[ids->n++] = bos;
    }
    return g4q_tok_encode(ctx, tok, text, len, ids);
}

/* ---------------------------------------------------------------- generate */

static g4q_status emit_stdout(void *user, const char *text, size_t len)
{
    g4q_ctx *ctx = user;
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0)
        return g4q_fail(ctx, G4Q_ERR_IO, "stdout: write failed");
    return G4Q_OK;
}

static g4q_status on_token(void *user, int32_t token)
{
    return g4q_textstream_push(user, token);
}

static g4q_status build_prompt(g4q_ctx *ctx, const run_opts *o, const g4q_session *s,
                               g4q_tok_ids *ids)
{
    if (!o->prompt) return g4q_fail(ctx, G4Q_ERR_USAGE, "--prompt TEXT is required");
    if (o->system && !o->chat) return g4q_fail(ctx, G4Q_ERR_USAGE, "--system needs --chat");
    if (!o->chat) return encode(ctx, s->tok, o->prompt, strlen(o->prompt), s->cfg->bos_id, ids);
    g4q_chat_opts co = {.system = o->system, .user = o->prompt, .add_generation_prompt = 1};
    char *text = NULL;
    size_t len = 0;
    G4Q_TRY(g4q_chat_render(ctx, &co, &text, &len));
    g4q_status st = encode(ctx, s->tok, text, len, -1, ids); /* the template has <bos> */
    free(text);
    return st;
}

static const char *stop_name(const g4q_gen_stats *g)
{
    return g->stop == G4Q_GEN_STOP_TOKEN    ? "stop token"
           : g->stop == G4Q_GEN_STOP_LENGTH ? "--max-tokens"
                                            : "context full";
}

static g4q_status run_generate(g4q_session *s, const run_opts *o, g4q_tok_ids *ids,
                               g4q_sampler **sampler)
{
    g4q_ctx *ctx = s->ctx;
    if (o->max_tokens < 1)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "--max-tokens %d: expected >= 1", o->max_tokens);
    if (o->ctx_len < 0) return g4q_fail(ctx, G4Q_ERR_USAGE, "--ctx %d: expected >= 1", o->ctx_len);
    G4Q_TRY(need_tokenizer(ctx, s));
    G4Q_TRY(build_prompt(ctx, o, s, ids));
    const long max_pos = s->cfg->max_position_embeddings;
    long want = o->ctx_len ? o->ctx_len : (long)ids->n + o->max_tokens;
    int ctx_len = (int)(want < max_pos ? want : max_pos);
    if ((long)ids->n > ctx_len)
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "the prompt has %zu tokens, longer than the context of %d (%s)", ids->n,
                        ctx_len, o->ctx_len ? "--ctx" : "max_position_embeddings");
    G4Q_TRY(g4q_session_check_ids(s, ids->ids, ids->n));
    G4Q_TRY(g4q_session_reserve(s, ctx_len));
    g4q_sampler_opts so = {o->temperature, o->top_k, o->top_p, (uint64_t)o->seed};
    if (o->seed < 0) return g4q_fail(ctx, G4Q_ERR_USAGE, "--seed %d: expected >= 0", o->seed);
    G4Q_TRY(
        g4q_sampler_create(ctx, &so, s->cfg->vocab_size, s->suppress_ids, s->n_suppress, sampler));
    g4q_textstream ts;
    g4q_textstream_init(&ts, ctx, s->tok, emit_stdout, ctx);
    g4q_gen_opts go = {o->max_tokens, s->stop_ids, s->n_stop, *sampler, on_token, &ts};
    g4q_gen_stats gs;
    g4q_status st = g4q_generate(s, ids->ids, (int)ids->n, &go, &gs);
    g4q_status st2 = g4q_textstream_finish(&ts);
    if (st == G4Q_OK) st = st2;
    printf("\n");
    fflush(stdout);
    if (st != G4Q_OK) return st;
    fprintf(stderr,
            "gemma4q-run: %s, %s, %s\n"
            "gemma4q-run: prompt tokens %d, generated tokens %d (%s), prefill %.1f tok/s "
            "(%.3f s), decode %.1f tok/s (%d steps, %.3f s)\n",
            o->model, s->be->name, o->temperature > 0 ? "sampling" : "greedy", gs.n_prompt,
            gs.n_generated, stop_name(&gs), gs.prefill_tok_s, gs.prefill_seconds, gs.decode_tok_s,
            gs.n_decode_steps, gs.decode_seconds);
    return G4Q_OK;
}

static g4q_status cmd_generate(g4q_ctx *ctx, const run_opts *o)
{
    g4q_session *s = NULL;
    g4q_tok_ids ids = {0};
    g4q_sampler *sampler = NULL;
    g4q_status st = open_session(ctx, o, &s);
    if (st == G4Q_OK) st = run_generate(s, o, &ids, &sampler);
    g4q_sampler_free(sampler);
    g4q_tok_ids_free(&ids);
    g4q_session_free(s);
    return st;
}

/* ---------------------------------------------------------------- ppl */

static g4q_status cmd_ppl(g4q_ctx *ctx, const run_opts *o)
{
    if (!o->file) return g4q_fail(ctx, G4Q_ERR_USAGE, "--file TEXT_FILE is required");
    g4q_session *s = NULL;
    g4q_tok_ids ids = {0};
    char *text = NULL;
    size_t len = 0;
    g4q_status st = g4q_read_file(ctx, o->file, MAX_TEXT_BYTES, &text, &len);
    if (st == G4Q_OK) st = open_session(ctx, o, &s);
    if (st == G4Q_OK) st = need_tokenizer(ctx, s);
    if (st == G4Q_OK) st = encode(ctx, s->tok, text, len, s->cfg->bos_id, &ids);
    g4q_ppl_opts po = {.window = o->window, .stride = o->stride, .progress = 1};
    g4q_ppl_result r;
    if (st == G4Q_OK) st = g4q_ppl_run(s, ids.ids, (int64_t)ids.n, &po, &r);
    if (st == G4Q_OK) {
        printf("file        %s\n", o->file);
        printf("tokens      %zu (%lld scored; <bos> + text)\n", ids.n, (long long)r.n_scored);
        printf("windows     %d (window %d, stride %d)\n", r.n_windows, o->window, o->stride);
        printf("nll_sum     %.6f\n", r.nll_sum);
        printf("nll/token   %.6f\n", r.nll_mean);
        printf("perplexity  %.6f\n", r.ppl);
        G4Q_INFO(ctx, "%s, %.2f s, %.1f tok/s", s->be->name, r.seconds,
                 r.seconds > 0 ? (double)r.n_scored / r.seconds : 0.0);
    }
    free(text);
    g4q_tok_ids_free(&ids);
    g4q_session_free(s);
    return st;
}

/* ---------------------------------------------------------------- compare */

static g4q_status open_dir(g4q_ctx *ctx, const run_opts *o, const char *dir, g4q_session *lend,
                           g4q_session **s)
{
    run_opts o2 = *o;
    o2.model = dir;
    /* Whole windows per forward call: the logits of both models stay on the backend. */
    return open_session_on(ctx, &o2, lend, o->window > 0 ? o->window : 0, s);
}

static void print_compare(const run_opts *o, int stride, const char *emulate,
                          const g4q_compare_result *r)
{
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "reference", o->model);
        cJSON_AddStringToObject(j, "candidate", o->quantized);
        cJSON_AddNumberToObject(j, "tokens", (double)r->n_tokens);
        cJSON_AddNumberToObject(j, "scored", (double)r->n_scored);
        cJSON_AddNumberToObject(j, "windows", r->n_windows);
        cJSON_AddNumberToObject(j, "window", o->window);
        cJSON_AddNumberToObject(j, "stride", stride);
        cJSON_AddNumberToObject(j, "kl_mean", r->kl_mean);
        cJSON_AddNumberToObject(j, "kl_max", r->kl_max);
        cJSON_AddNumberToObject(j, "kl_max_token", (double)r->kl_max_token);
        cJSON_AddNumberToObject(j, "kl_p99", r->kl_p99);
        cJSON_AddStringToObject(j, "emulate", emulate);
        cJSON_AddNumberToObject(j, "top1_agreement", r->top1_rate);
        cJSON_AddNumberToObject(j, "top1_agree", (double)r->top1_agree);
        cJSON_AddNumberToObject(j, "nll_ref", r->nll_ref);
        cJSON_AddNumberToObject(j, "nll_cand", r->nll_cand);
        cJSON_AddNumberToObject(j, "ppl_ref", r->ppl_ref);
        cJSON_AddNumberToObject(j, "ppl_cand", r->ppl_cand);
        cJSON_AddNumberToObject(j, "seconds", r->seconds);
        char *text = cJSON_Print(j);
        if (text) printf("%s\n", text);
        free(text);
        cJSON_Delete(j);
        return;
    }
    printf("reference   %s\n", o->model);
    printf("candidate   %s (emulate %s)\n", o->quantized, emulate);
    printf("tokens      %lld (%lld scored; %d windows, window %d, stride %d)\n",
           (long long)r->n_tokens, (long long)r->n_scored, r->n_windows, o->window, stride);
    printf("kl_mean     %.6g nats/token  (KL(P_ref || P_cand))\n", r->kl_mean);
    printf("kl_p99      %.6g\n", r->kl_p99);
    printf("kl_max      %.6g (predicting token %lld)\n", r->kl_max, (long long)r->kl_max_token);
    printf("top1        %.6f (%lld of %lld positions agree)\n", r->top1_rate,
           (long long)r->top1_agree, (long long)r->n_scored);
    printf("ppl_ref     %.6f (nll/token %.6f)\n", r->ppl_ref, r->nll_ref);
    printf("ppl_cand    %.6f (nll/token %.6f)\n", r->ppl_cand, r->nll_cand);
}

static g4q_status cmd_compare(g4q_ctx *ctx, const run_opts *o)
{
    if (!o->model) return g4q_fail(ctx, G4Q_ERR_USAGE, "--model BF16_DIR is required");
    if (!o->quantized) return g4q_fail(ctx, G4Q_ERR_USAGE, "--quantized DIR is required");
    if (!o->file == !o->ids)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "give exactly one of --file and --ids");
    g4q_session *ref = NULL, *cand = NULL;
    g4q_tok_ids ids = {0};
    char *text = NULL;
    size_t len = 0;
    g4q_status st = o->file ? g4q_read_file(ctx, o->file, MAX_TEXT_BYTES, &text, &len)
                            : parse_ids(ctx, o->ids, &ids);
    if (st == G4Q_OK) st = open_dir(ctx, o, o->model, NULL, &ref);
    /* The candidate runs on the reference's backend (the logits of both are scored there). */
    if (st == G4Q_OK) st = open_dir(ctx, o, o->quantized, ref, &cand);
    if (st == G4Q_OK && text) st = need_tokenizer(ctx, ref);
    if (st == G4Q_OK && text) st = encode(ctx, ref->tok, text, len, ref->cfg->bos_id, &ids);
    const int stride = o->cmp_stride ? o->cmp_stride : (o->window / 2 > 0 ? o->window / 2 : 1);
    g4q_compare_opts co = {.window = o->window, .stride = stride, .progress = 1};
    g4q_compare_result r;
    if (st == G4Q_OK) st = g4q_compare_run(ref, cand, ids.ids, (int64_t)ids.n, &co, &r);
    if (st == G4Q_OK) {
        print_compare(o, stride, g4q_emulate_name(cand->emulate), &r);
        G4Q_INFO(ctx, "%s, %.2f s, %.1f tok/s (both models)", ref->be->name, r.seconds,
                 r.seconds > 0 ? (double)r.n_scored / r.seconds : 0.0);
    }
    free(text);
    g4q_tok_ids_free(&ids);
    g4q_session_free(cand);
    g4q_session_free(ref);
    return st;
}

/* ---------------------------------------------------------------- logits */

typedef struct logits_out {
    g4q_ctx *ctx;
    FILE *f;
    const char *path;
    int vocab;
} logits_out;

static g4q_status write_rows(void *user, int t0, int n, const float *logits)
{
    (void)t0;
    logits_out *lo = user;
    size_t count = (size_t)n * (size_t)lo->vocab;
    if (fwrite(logits, sizeof *logits, count, lo->f) != count)
        return g4q_fail(lo->ctx, g4q_status_from_write_errno(errno), "%s: write failed", lo->path);
    return G4Q_OK;
}

static g4q_status cmd_logits(g4q_ctx *ctx, const run_opts *o)
{
    if (!o->out) return g4q_fail(ctx, G4Q_ERR_USAGE, "--out FILE is required");
    g4q_tok_ids ids = {0};
    g4q_session *s = NULL;
    logits_out lo = {ctx, NULL, o->out, 0};
    g4q_status st = parse_ids(ctx, o->ids, &ids);
    if (st == G4Q_OK) st = open_session(ctx, o, &s);
    if (st == G4Q_OK) st = g4q_session_check_ids(s, ids.ids, ids.n);
    if (st == G4Q_OK && (long)ids.n > s->cfg->max_position_embeddings)
        st = g4q_fail(ctx, G4Q_ERR_INVALID, "%zu ids, longer than the context of %ld", ids.n,
                      s->cfg->max_position_embeddings);
    if (st == G4Q_OK) st = g4q_session_reserve(s, (int)ids.n);
    if (st == G4Q_OK && !(lo.f = fopen(o->out, "wb")))
        st = g4q_fail(ctx, G4Q_ERR_IO, "%s: cannot create: %s", o->out, strerror(errno));
    if (st == G4Q_OK) {
        lo.vocab = s->cfg->vocab_size;
        double t = g4q_now_seconds();
        st = g4q_session_logits(s, ids.ids, (int)ids.n, 0, 0, write_rows, &lo);
        t = g4q_now_seconds() - t;
        if (st == G4Q_OK)
            G4Q_INFO(ctx, "%s: %zu x %d float32 logits (%s, %.3f s)", o->out, ids.n, lo.vocab,
                     s->be->name, t);
    }
    if (lo.f && fclose(lo.f) != 0 && st == G4Q_OK)
        st = g4q_fail(ctx, g4q_status_from_write_errno(errno), "%s: close failed", o->out);
    if (lo.f && st != G4Q_OK) remove(o->out); /* never leave a partial logits file behind */
    g4q_tok_ids_free(&ids);
    g4q_session_free(s);
    return st;
}

/* ---------------------------------------------------------------- tokenize / detokenize */

static g4q_status cmd_tokenize(g4q_ctx *ctx, const run_opts *o)
{
    if (!o->tokenizer) return g4q_fail(ctx, G4Q_ERR_USAGE, "--tokenizer FILE is required");
    if (!o->text == !o->file)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "give exactly one of --text and --file");
    g4q_tok *tok = NULL;
    g4q_tok_ids ids = {0};
    char *data = NULL;
    size_t len = o->text ? strlen(o->text) : 0;
    g4q_status st = o->file ? g4q_read_file(ctx, o->file, MAX_TEXT_BYTES, &data, &len) : G4Q_OK;
    if (st == G4Q_OK) st = g4q_tok_load(ctx, o->tokenizer, &tok);
    if (st == G4Q_OK) st = g4q_tok_encode(ctx, tok, o->text ? o->text : data, len, &ids);
    if (st == G4Q_OK) print_ids(ids.ids, ids.n);
    free(data);
    g4q_tok_ids_free(&ids);
    g4q_tok_free(tok);
    return st;
}

static g4q_status cmd_detokenize(g4q_ctx *ctx, const run_opts *o)
{
    if (!o->tokenizer) return g4q_fail(ctx, G4Q_ERR_USAGE, "--tokenizer FILE is required");
    g4q_tok *tok = NULL;
    g4q_tok_ids ids = {0};
    char *text = NULL;
    size_t len = 0;
    g4q_status st = parse_ids(ctx, o->ids, &ids);
    if (st == G4Q_OK) st = g4q_tok_load(ctx, o->tokenizer, &tok);
    for (size_t i = 0; st == G4Q_OK && i < ids.n; i++)
        if (ids.ids[i] >= g4q_tok_vocab_size(tok))
            st = g4q_fail(ctx, G4Q_ERR_INVALID,
                          "--ids: token id %d (index %zu) is outside the vocabulary of %d",
                          (int)ids.ids[i], i, (int)g4q_tok_vocab_size(tok));
    if (st == G4Q_OK) st = g4q_tok_decode(ctx, tok, ids.ids, ids.n, 0, &text, &len);
    if (st == G4Q_OK && (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0))
        st = g4q_fail(ctx, G4Q_ERR_IO, "stdout: write failed");
    free(text);
    g4q_tok_ids_free(&ids);
    g4q_tok_free(tok);
    return st;
}

/* ---------------------------------------------------------------- info */

static void print_config(const g4q_config *c)
{
    int hd_s = 0, hd_f = 0, kv_s = 0, kv_f = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const g4q_layer_config *lc = &c->layers[l];
        if (lc->type == G4Q_LAYER_SLIDING && !hd_s) {
            hd_s = lc->head_dim;
            kv_s = lc->n_kv_heads;
        } else if (lc->type == G4Q_LAYER_FULL && !hd_f) {
            hd_f = lc->head_dim;
            kv_f = lc->n_kv_heads;
        }
    }
    printf("model       Gemma 4 (%s), %d layers (%d sliding, %d full)\n",
           c->text_only ? "text-only" : "unified", c->n_layers,
           g4q_config_count_layers(c, G4Q_LAYER_SLIDING),
           g4q_config_count_layers(c, G4Q_LAYER_FULL));
    printf("shape       hidden %d, intermediate %d, vocab %d, heads %d, kv heads %d/%d, head_dim "
           "%d/%d (sliding/full)\n",
           c->hidden, c->intermediate, c->vocab_size, c->n_heads, kv_s, kv_f, hd_s, hd_f);
    printf("attention   sliding window %d, k_eq_v %s, softcap %g, rms eps %g, embed scale %g\n",
           c->sliding_window, c->attention_k_eq_v ? "yes" : "no", c->final_logit_softcapping,
           c->rms_norm_eps, c->embed_scale);
    printf("positions   max %ld; bos %d, eos %d, pad %d\n", c->max_position_embeddings, c->bos_id,
           c->eos_id, c->pad_id);
}

static g4q_status print_generation(g4q_ctx *ctx, const char *dir)
{
    char path[4096];
    G4Q_TRY(g4q_path_join(ctx, path, sizeof path, dir, "generation_config.json"));
    if (!g4q_path_exists(path)) {
        printf("generation  no generation_config.json\n");
        return G4Q_OK;
    }
    int32_t stop[G4Q_SESSION_MAX_IDS];
    size_t n = 0;
    G4Q_TRY(g4q_chat_stop_ids(ctx, path, stop, G4Q_SESSION_MAX_IDS, &n));
    printf("generation  stop ids ");
    print_ids(stop, n);
    return G4Q_OK;
}

static g4q_status cmd_info(g4q_ctx *ctx, const run_opts *o)
{
    if (!o->model) return g4q_fail(ctx, G4Q_ERR_USAGE, "--model DIR is required");
    if (!g4q_is_dir(o->model))
        return g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "%s: model folder not found", o->model);
    g4q_config *cfg = calloc(1, sizeof *cfg);
    g4q_ckpt *ck = NULL;
    g4q_tok *tok = NULL;
    char *quant = NULL, path[4096];
    const char *qsrc = NULL;
    g4q_status st = cfg ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    if (st == G4Q_OK) st = g4q_path_join(ctx, path, sizeof path, o->model, "config.json");
    if (st == G4Q_OK) st = g4q_config_load(ctx, path, cfg);
    if (st == G4Q_OK) st = g4q_ckpt_open(ctx, o->model, &ck);
    if (st == G4Q_OK) st = g4q_session_quant_config(ctx, o->model, &quant, &qsrc);
    if (st == G4Q_OK) {
        printf("folder      %s\n", o->model);
        print_config(cfg);
        uint64_t per_dt[G4Q_DT_COUNT] = {0}, elems = 0;
        size_t n_dt[G4Q_DT_COUNT] = {0};
        for (size_t i = 0; i < g4q_ckpt_count(ck); i++) {
            const g4q_tensor *t = g4q_ckpt_tensor(ck, i);
            per_dt[t->dtype] += t->nbytes;
            n_dt[t->dtype]++;
            elems += t->numel;
        }
        printf("checkpoint  %zu file(s), %zu tensors, %llu elements, %llu bytes (%.3f GB)\n",
               g4q_ckpt_file_count(ck), g4q_ckpt_count(ck), (unsigned long long)elems,
               (unsigned long long)g4q_ckpt_data_bytes(ck), (double)g4q_ckpt_data_bytes(ck) / 1e9);
        for (int d = 0; d < G4Q_DT_COUNT; d++)
            if (n_dt[d])
                printf("  %-9s %zu tensors, %llu bytes\n", g4q_dtype_name((g4q_dtype)d), n_dt[d],
                       (unsigned long long)per_dt[d]);
        st = print_generation(ctx, o->model);
    }
    if (st == G4Q_OK) st = g4q_path_join(ctx, path, sizeof path, o->model, "tokenizer.json");
    if (st == G4Q_OK && g4q_path_exists(path) && (st = g4q_tok_load(ctx, path, &tok)) == G4Q_OK)
        printf("tokenizer   tokenizer.json, %d ids\n", (int)g4q_tok_vocab_size(tok));
    else if (st == G4Q_OK)
        printf("tokenizer   none\n");
    if (st == G4Q_OK && quant)
        printf("quantization (%s) %s\n", qsrc, quant);
    else if (st == G4Q_OK)
        printf("quantization none (BF16 weights)\n");
    free(quant);
    g4q_tok_free(tok);
    g4q_ckpt_close(ck);
    free(cfg);
    return st;
}

/* ---------------------------------------------------------------- main */

typedef struct subcmd {
    const char *name;
    unsigned bit;
    sub_fn fn;
    const char *brief; /* one line for the top-level help */
    const char *usage;
    const char *summary;
} subcmd;

static const subcmd SUBS[] = {
    {"generate", GEN, cmd_generate, "generate text from a prompt (raw or --chat), streamed",
     "--model DIR --prompt TEXT [options]",
     "Generates text from a prompt and streams it to stdout. The raw prompt is encoded with <bos>\n"
     "first; --chat renders the Gemma 4 chat template (one user turn, thinking off, generation\n"
     "prompt) instead. Greedy unless --temperature > 0. Stops at a stop id of\n"
     "generation_config.json, after --max-tokens, or when the context is full; the suppressed\n"
     "ids of generation_config.json are never chosen. Timings go to stderr."},
    {"ppl", PPL, cmd_ppl, "perplexity of a text file with strided windows",
     "--model DIR --file TEXT_FILE [options]",
     "Perplexity of a text file: <bos> + its tokens, evaluated in windows of --window tokens\n"
     "moved by --stride; each token is scored once, in the first window holding it, with that\n"
     "window's context (the Hugging Face strided evaluation; with --stride equal to --window\n"
     "each window's first token has no context and is not scored). Prints tokens, NLL/token\n"
     "and perplexity."},
    {"compare", CMP, cmd_compare, "compare a quantized model with its BF16 model on the same text",
     "--model BF16_DIR --quantized DIR (--file TEXT_FILE | --ids IDS) [options]",
     "Runs the reference (--model, normally BF16) and the candidate (--quantized) on the same\n"
     "tokens (<bos> + the text of --file, or --ids as given) in the windows of 'ppl' and prints,\n"
     "over the scored positions: the mean and largest KL(P_ref || P_cand) in nats (exact, over\n"
     "the full vocabulary), the top-1 agreement, and each model's perplexity. Both models are\n"
     "loaded at once, on one backend, and each window runs whole; the statistics are reduced on\n"
     "the device. Quantized checkpoints run with the numerics of --emulate (default: the\n"
     "export's own target engine).\n"
     "--json prints one JSON object instead."},
    {"logits", LOG, cmd_logits, "write the float32 logits of one prefill of token ids",
     "--model DIR --ids 2,17,42 --out FILE [options]",
     "Runs one prefill of the ids from position 0 and writes the logits (after soft-capping) as\n"
     "raw little-endian float32 [n_ids, vocab] to FILE. For tests and oracle comparisons."},
    {"tokenize", TOK, cmd_tokenize, "print the token ids of a text",
     "--tokenizer FILE (--text TEXT | --file FILE)",
     "Prints the token ids of a text, comma-separated. No <bos> is added; special-token strings\n"
     "such as <bos> in the text become their ids."},
    {"detokenize", DETOK, cmd_detokenize, "print the text of token ids",
     "--tokenizer FILE --ids 1,2,3",
     "Prints the text of comma-separated token ids exactly (no newline added, special tokens\n"
     "kept)."},
    {"info", INFO, cmd_info, "print the model, checkpoint and quantization summary", "--model DIR",
     "Prints the model configuration, the checkpoint's tensor and byte totals, the stop ids, the\n"
     "tokenizer and the quantization config (if any)."},
};
#define N_SUBS (sizeof SUBS / sizeof SUBS[0])

static void top_help(FILE *f)
{
    fprintf(f, "usage: gemma4q-run SUBCOMMAND [options]\n\n"
               "Runs a Gemma 4 checkpoint folder (BF16 or quantized) on the CPU or a CUDA GPU.\n\n"
               "subcommands:\n");
    for (size_t i = 0; i < N_SUBS; i++) {
        fprintf(f, "  %-12s %s\n", SUBS[i].name, SUBS[i].brief);
    }
    fprintf(f, "\n'gemma4q-run SUBCOMMAND --help' lists the options of a subcommand.\n");
}

int main(int argc, char **argv)
{
    run_opts o = {.device = "auto", .max_tokens = 64, .top_p = 1.0, .window = 1024, .stride = 512};
    const sub_opt all[] = {
        {GEN | PPL | LOG | INFO | CMP,
         {"--model", G4Q_OPT_STRING, &o.model, "DIR", "model folder (compare: the reference)"}},
        {CMP,
         {"--quantized", G4Q_OPT_STRING, &o.quantized, "DIR",
          "the model compared with --model (normally its quantized export)"}},
        {TOK | DETOK,
         {"--tokenizer", G4Q_OPT_STRING, &o.tokenizer, "FILE",
          "tokenizer.json (plain or gzip-compressed)"}},
        {GEN, {"--prompt", G4Q_OPT_STRING, &o.prompt, "TEXT", "the prompt (or user message)"}},
        {GEN, {"--max-tokens", G4Q_OPT_INT, &o.max_tokens, "N", "new tokens at most (default 64)"}},
        {GEN, {"--chat", G4Q_OPT_FLAG, &o.chat, NULL, "wrap the prompt in the chat template"}},
        {GEN, {"--system", G4Q_OPT_STRING, &o.system, "TEXT", "system message (with --chat)"}},
        {GEN,
         {"--temperature", G4Q_OPT_DOUBLE, &o.temperature, "T",
          "0 = greedy (default); > 0 samples"}},
        {GEN, {"--top-k", G4Q_OPT_INT, &o.top_k, "K", "keep the K most likely tokens (0 = off)"}},
        {GEN,
         {"--top-p", G4Q_OPT_DOUBLE, &o.top_p, "P",
          "keep the smallest set of mass >= P, in (0, 1] (1 = off)"}},
        {GEN, {"--seed", G4Q_OPT_INT, &o.seed, "S", "sampling seed, >= 0 (default 0)"}},
        {GEN,
         {"--ctx", G4Q_OPT_INT, &o.ctx_len, "N",
          "KV cache positions (default: prompt + max-tokens)"}},
        {PPL | TOK | CMP, {"--file", G4Q_OPT_STRING, &o.file, "FILE", "UTF-8 text file"}},
        {PPL | CMP, {"--window", G4Q_OPT_INT, &o.window, "W", "tokens per window (default 1024)"}},
        {PPL, {"--stride", G4Q_OPT_INT, &o.stride, "S", "window step, 1..W (default 512)"}},
        {CMP,
         {"--stride", G4Q_OPT_INT, &o.cmp_stride, "S",
          "window step, 1..W (default W/2, at least 1)"}},
        {CMP, {"--json", G4Q_OPT_FLAG, &o.json, NULL, "print the results as one JSON object"}},
        {TOK, {"--text", G4Q_OPT_STRING, &o.text, "TEXT", "text to encode"}},
        {LOG | DETOK | CMP,
         {"--ids", G4Q_OPT_STRING, &o.ids, "IDS", "comma-separated token ids"}},
        {LOG, {"--out", G4Q_OPT_STRING, &o.out, "FILE", "output file (float32 [n_ids, vocab])"}},
        {RUNS,
         {"--device", G4Q_OPT_STRING, &o.device, "DEV",
          "auto (GPU if present, default), cpu or cuda"}},
        {RUNS,
         {"--precision", G4Q_OPT_STRING, &o.precision, "P",
          "bf16 (cuda only, its default) or fp32 (the cpu's; on cuda 2x GPU memory, BF16 "
          "models only)"}},
        {RUNS,
         {"--emulate", G4Q_OPT_STRING, &o.emulate, "MODE",
          "engine numerics of a quantized model: auto (the export's target, default), none "
          "(weight-only), sm90 (Hopper as vLLM runs it: FP8 W8A8 activations, NVFP4 "
          "weight-only) or sm100 (Blackwell: also NVFP4 W4A4 activations); sm90/sm100 use an "
          "FP8 KV cache when the export declares one"}},
        {RUNS,
         {"--threads", G4Q_OPT_INT, &o.threads, "N", "CPU threads (default: all cores)"}},
        {RUNS, {"--quiet", G4Q_OPT_FLAG, &o.quiet, NULL, "warnings and errors only"}},
        {RUNS, {"--verbose", G4Q_OPT_FLAG, &o.verbose, NULL, "debug messages"}},
    };
    const size_t n_all = sizeof all / sizeof all[0];
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        top_help(argc < 2 ? stderr : stdout);
        return argc < 2 ? g4q_status_exit_code(G4Q_ERR_USAGE) : 0;
    }
    const subcmd *sub = NULL;
    for (size_t i = 0; i < N_SUBS; i++)
        if (strcmp(argv[1], SUBS[i].name) == 0) sub = &SUBS[i];
    if (!sub) {
        fprintf(stderr, "gemma4q-run: error: unknown subcommand '%s'\n", argv[1]);
        top_help(stderr);
        return g4q_status_exit_code(G4Q_ERR_USAGE);
    }
    g4q_opt opts[sizeof all / sizeof all[0] + 1];
    size_t n = 0;
    for (size_t i = 0; i < n_all; i++)
        if (all[i].subs & sub->bit) opts[n++] = all[i].opt;
    opts[n] = (g4q_opt){NULL, 0, NULL, NULL, NULL};
    char prog[64];
    snprintf(prog, sizeof prog, "gemma4q-run %s", sub->name);
    const g4q_cli cli = {prog, sub->usage, sub->summary, opts};
    int n_pos = 0, help = 0;
    g4q_status st = g4q_cli_parse(&ctx, &cli, argc, argv, 2, NULL, 0, &n_pos, &help);
    if (help) return 0;
    if (o.quiet) {
        ctx.log_level = G4Q_LOG_WARN;
        ctx.progress = -1;
    }
    if (o.verbose) ctx.log_level = G4Q_LOG_DEBUG;
    if (st == G4Q_OK && o.threads < 0)
        st = g4q_fail(&ctx, G4Q_ERR_USAGE, "--threads %d: expected a positive count", o.threads);
    if (o.threads > 0) {
        ctx.threads = o.threads;
        omp_set_num_threads(o.threads);
    }
    if (st == G4Q_OK) st = sub->fn(&ctx, &o);
    return g4q_cli_finish(&cli, &ctx, st);
}
