/* Reference vs candidate model on the same tokens (contract in compare.h). */
#include "runtime/compare.h"

#include <math.h>
#include <stdlib.h>

#include "base/progress.h"
#include "base/sys.h"

typedef struct cmp_state {
    g4q_session *ref, *cand;
    g4q_backend *be; /* the one backend both sessions run on */
    int rows;
    g4q_buf *la, *lb;   /* [rows, vocab] logits of the reference / candidate, on the backend */
    double (*st)[5];    /* [rows] per-position statistics (backend.h logit_stats) */
    double *kl;         /* [n] per-position KL in position order, for the percentile */
    g4q_compare_result *r;
    double kl_sum, nll_ref_sum, nll_cand_sum;
    g4q_progress *bar;
} cmp_state;

/* Adds the statistics of rows [0, c), row i predicting token tok0 + i, in position order. */
static g4q_status score(cmp_state *cs, int c, int64_t tok0)
{
    g4q_compare_result *r = cs->r;
    for (int i = 0; i < c; i++) {
        const double *p = cs->st[i];
        if (!isfinite(p[0]) || !isfinite(p[1]) || !isfinite(p[2])) {
            const char *who = !isfinite(p[1]) ? cs->ref->dir : cs->cand->dir;
            return g4q_fail(cs->ref->ctx, G4Q_ERR_NUMERIC,
                            "compare: token %lld: non-finite result (logits of %s contain "
                            "NaN/inf)",
                            (long long)(tok0 + i), who);
        }
        cs->kl_sum += p[0];
        cs->nll_ref_sum += p[1];
        cs->nll_cand_sum += p[2];
        r->top1_agree += p[3] == p[4];
        if (r->n_scored == 0 || p[0] > r->kl_max) {
            r->kl_max = p[0];
            r->kl_max_token = tok0 + i;
        }
        cs->kl[r->n_scored++] = p[0];
    }
    if (cs->bar) g4q_progress_update(cs->bar, (uint64_t)r->n_scored);
    return G4Q_OK;
}

/* One window [b, e): context [b, first-1) only fills the caches, rows first-1 .. e-2 predict
 * tokens first .. e-1. */
static g4q_status window(cmp_state *cs, const int32_t *ids, int64_t b, int64_t e, int64_t first)
{
    g4q_session *s[2] = {cs->ref, cs->cand};
    g4q_buf *lg[2] = {cs->la, cs->lb};
    const int V = cs->ref->cfg->vocab_size;
    for (int m = 0; m < 2; m++) {
        g4q_kvcache_reset(s[m]->kv);
        if (first - 1 > b)
            G4Q_TRY(g4q_forward_run(s[m]->fwd, s[m]->kv, ids + b, (int)(first - 1 - b), 1, NULL));
    }
    for (int64_t p = first - 1; p < e - 1; p += cs->rows) {
        const int c = (int)(e - 1 - p < cs->rows ? e - 1 - p : cs->rows);
        for (int m = 0; m < 2; m++)
            G4Q_TRY(g4q_forward_run_logits(s[m]->fwd, s[m]->kv, ids + p, c, lg[m]));
        G4Q_TRY(cs->be->logit_stats(cs->be, cs->la, cs->lb, ids + p + 1, c, V, cs->st));
        G4Q_TRY(score(cs, c, p + 1));
    }
    return G4Q_OK;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static g4q_status check_args(g4q_session *ref, g4q_session *cand, const int32_t *ids, int64_t n,
                             int W, int S)
{
    g4q_ctx *ctx = ref->ctx;
    if (ref->cfg->vocab_size != cand->cfg->vocab_size)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "compare: %s has a vocabulary of %d, %s of %d",
                        ref->dir, ref->cfg->vocab_size, cand->dir, cand->cfg->vocab_size);
    if (n < 2)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "compare: %lld tokens; at least 2 are needed",
                        (long long)n);
    if (W < 2 || S < 1 || S > W)
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "compare: window %d, stride %d: expected window >= 2 and "
                        "1 <= stride <= window",
                        W, S);
    g4q_session *s[2] = {ref, cand};
    for (int m = 0; m < 2; m++) {
        if (W > s[m]->cfg->max_position_embeddings)
            return g4q_fail(ctx, G4Q_ERR_INVALID,
                            "compare: window %d exceeds max_position_embeddings %ld of %s", W,
                            s[m]->cfg->max_position_embeddings, s[m]->dir);
        G4Q_TRY(g4q_session_check_ids(s[m], ids, (size_t)n));
        G4Q_TRY(g4q_session_reserve(s[m], n < W ? (int)n : W));
    }
    return G4Q_OK;
}

g4q_status g4q_compare_run(g4q_session *ref, g4q_session *cand, const int32_t *ids, int64_t n,
                           const g4q_compare_opts *opts, g4q_compare_result *out)
{
    *out = (g4q_compare_result){0};
    const int W = opts->window, S = opts->stride;
    if (ref->be != cand->be || !ref->be->logit_stats)
        return g4q_fail(ref->ctx, G4Q_ERR_INVALID,
                        "compare: %s and %s must run on one backend with logit_stats "
                        "(g4q_session_opts.backend)",
                        ref->dir, cand->dir);
    G4Q_TRY(check_args(ref, cand, ids, n, W, S));
    g4q_backend *be = ref->be;
    const size_t V = (size_t)ref->cfg->vocab_size;
    int rows = ref->max_chunk < cand->max_chunk ? ref->max_chunk : cand->max_chunk;
    if (opts->rows > 0 && opts->rows < rows) rows = opts->rows;
    cmp_state cs = {.ref = ref, .cand = cand, .be = be, .rows = rows, .r = out};
    g4q_status st = be->buf_alloc(be, be->act_dtype, (size_t)rows * V, &cs.la);
    if (st == G4Q_OK) st = be->buf_alloc(be, be->act_dtype, (size_t)rows * V, &cs.lb);
    cs.st = malloc((size_t)rows * sizeof *cs.st);
    cs.kl = malloc((size_t)n * sizeof *cs.kl);
    if (st == G4Q_OK && (!cs.st || !cs.kl))
        st = g4q_fail(ref->ctx, G4Q_ERR_NOMEM, "compare: out of memory for %lld positions",
                      (long long)n);
    g4q_progress bar;
    if (st == G4Q_OK && opts->progress) {
        cs.bar = &bar;
        g4q_progress_begin(&bar, ref->ctx, "compare", "tokens", (uint64_t)(n - 1));
    }
    const double t0 = g4q_now_seconds();
    int64_t prev_end = 1; /* tokens below this are scored (token 0 never is) */
    for (int64_t b = 0; st == G4Q_OK; b += S) {
        const int64_t e = b + W < n ? b + W : n;
        const int64_t first = prev_end > b + 1 ? prev_end : b + 1;
        if (first < e) st = window(&cs, ids, b, e, first);
        out->n_windows++;
        prev_end = e;
        if (e == n) break;
    }
    if (cs.bar) g4q_progress_end(&bar);
    be->buf_free(be, cs.la);
    be->buf_free(be, cs.lb);
    free(cs.st);
    if (st == G4Q_OK && out->n_scored) {
        qsort(cs.kl, (size_t)out->n_scored, sizeof *cs.kl, cmp_double);
        int64_t i = (int64_t)ceil(0.99 * (double)out->n_scored) - 1;
        out->kl_p99 = cs.kl[i < 0 ? 0 : i];
    }
    free(cs.kl);
    if (st != G4Q_OK) return st;
    const double k = out->n_scored ? (double)out->n_scored : 1.0;
    out->n_tokens = n;
    out->kl_mean = cs.kl_sum / k;
    out->top1_rate = (double)out->top1_agree / k;
    out->nll_ref = cs.nll_ref_sum / k;
    out->nll_cand = cs.nll_cand_sum / k;
    out->ppl_ref = exp(out->nll_ref);
    out->ppl_cand = exp(out->nll_cand);
    out->seconds = g4q_now_seconds() - t0;
    return G4Q_OK;
}
