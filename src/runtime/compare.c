/* Reference vs candidate model on the same tokens (contract in compare.h). */
#include "runtime/compare.h"

#include <math.h>
#include <stdlib.h>

#include "base/progress.h"
#include "base/sys.h"

/* Per-position results, summed in position order afterwards (deterministic). */
typedef struct pos_stat {
    double kl, nll_ref, nll_cand;
    int agree;
} pos_stat;

typedef struct cmp_state {
    g4q_session *ref, *cand;
    int rows;
    float *la, *lb; /* [rows, vocab] logits of the reference / candidate */
    pos_stat *ps;   /* [rows] */
    g4q_compare_result *r;
    double kl_sum, nll_ref_sum, nll_cand_sum;
    g4q_progress *bar;
} cmp_state;

/* log Σ exp(x) in double, and the first argmax. */
static double lse_argmax(const float *x, int V, int *arg)
{
    double mx = -INFINITY;
    int a = 0;
    for (int v = 0; v < V; v++)
        if (x[v] > mx) {
            mx = x[v];
            a = v;
        }
    double s = 0.0;
    for (int v = 0; v < V; v++)
        s += exp((double)x[v] - mx);
    *arg = a;
    return mx + log(s);
}

static void position(const float *a, const float *b, int V, int32_t target, pos_stat *out)
{
    int aa, ab;
    const double la = lse_argmax(a, V, &aa), lb = lse_argmax(b, V, &ab);
    double kl = 0.0;
    for (int v = 0; v < V; v++) {
        const double lpa = (double)a[v] - la, lpb = (double)b[v] - lb;
        kl += exp(lpa) * (lpa - lpb);
    }
    out->kl = kl;
    out->agree = aa == ab;
    out->nll_ref = la - (double)a[target];
    out->nll_cand = lb - (double)b[target];
}

/* Scores logits rows [0, c) of both models: row i predicts tgt[i]; tok0 = index of tgt[0]. */
static g4q_status score(cmp_state *cs, int c, const int32_t *tgt, int64_t tok0)
{
    const int V = cs->ref->cfg->vocab_size;
#pragma omp parallel for schedule(dynamic, 1) if (c > 1)
    for (int i = 0; i < c; i++)
        position(cs->la + (size_t)i * V, cs->lb + (size_t)i * V, V, tgt[i], &cs->ps[i]);
    g4q_compare_result *r = cs->r;
    for (int i = 0; i < c; i++) {
        const pos_stat *p = &cs->ps[i];
        if (!isfinite(p->kl) || !isfinite(p->nll_ref) || !isfinite(p->nll_cand)) {
            const char *who = !isfinite(p->nll_ref) ? cs->ref->dir : cs->cand->dir;
            return g4q_fail(cs->ref->ctx, G4Q_ERR_NUMERIC,
                            "compare: token %lld: non-finite result (logits of %s contain "
                            "NaN/inf)",
                            (long long)(tok0 + i), who);
        }
        cs->kl_sum += p->kl;
        cs->nll_ref_sum += p->nll_ref;
        cs->nll_cand_sum += p->nll_cand;
        r->top1_agree += p->agree;
        if (r->n_scored == 0 || p->kl > r->kl_max) {
            r->kl_max = p->kl;
            r->kl_max_token = tok0 + i;
        }
        r->n_scored++;
    }
    if (cs->bar) g4q_progress_update(cs->bar, (uint64_t)r->n_scored);
    return G4Q_OK;
}

/* One window [b, e): context [b, first-1) only fills the caches, rows first-1 .. e-2 predict
 * tokens first .. e-1. */
static g4q_status window(cmp_state *cs, const int32_t *ids, int64_t b, int64_t e, int64_t first)
{
    g4q_session *s[2] = {cs->ref, cs->cand};
    for (int m = 0; m < 2; m++) {
        g4q_kvcache_reset(s[m]->kv);
        if (first - 1 > b)
            G4Q_TRY(g4q_forward_run(s[m]->fwd, s[m]->kv, ids + b, (int)(first - 1 - b), 1, NULL));
    }
    for (int64_t p = first - 1; p < e - 1; p += cs->rows) {
        const int c = (int)(e - 1 - p < cs->rows ? e - 1 - p : cs->rows);
        G4Q_TRY(g4q_forward_run(cs->ref->fwd, cs->ref->kv, ids + p, c, 0, cs->la));
        G4Q_TRY(g4q_forward_run(cs->cand->fwd, cs->cand->kv, ids + p, c, 0, cs->lb));
        G4Q_TRY(score(cs, c, ids + p + 1, p + 1));
    }
    return G4Q_OK;
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
    G4Q_TRY(check_args(ref, cand, ids, n, W, S));
    const size_t V = (size_t)ref->cfg->vocab_size;
    cmp_state cs = {.ref = ref, .cand = cand, .rows = opts->rows > 0 ? opts->rows : 16, .r = out};
    cs.la = malloc((size_t)cs.rows * V * sizeof *cs.la);
    cs.lb = malloc((size_t)cs.rows * V * sizeof *cs.lb);
    cs.ps = malloc((size_t)cs.rows * sizeof *cs.ps);
    g4q_status st = G4Q_OK;
    if (!cs.la || !cs.lb || !cs.ps)
        st = g4q_fail(ref->ctx, G4Q_ERR_NOMEM, "compare: out of memory for 2 x %d x %zu logits",
                      cs.rows, V);
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
    free(cs.la);
    free(cs.lb);
    free(cs.ps);
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
