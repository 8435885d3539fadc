#include "runtime/ppl.h"

#include <math.h>

#include "base/progress.h"
#include "base/sys.h"

typedef struct ppl_state {
    g4q_session *s;
    const int32_t *win; /* the window's ids: logits row p predicts win[p + 1] */
    int64_t win_start;  /* absolute index of win[0] (for messages) */
    double nll_sum;
    int64_t n_scored;
    g4q_progress *bar;
} ppl_state;

static g4q_status score_rows(void *user, int t0, int n, const float *logits)
{
    ppl_state *ps = user;
    const int V = ps->s->cfg->vocab_size;
    for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * (size_t)V;
        double mx = -INFINITY;
        for (int v = 0; v < V; v++)
            mx = row[v] > mx ? row[v] : mx;
        double sum = 0;
        for (int v = 0; v < V; v++)
            sum += exp((double)row[v] - mx);
        const int32_t target = ps->win[t0 + i + 1];
        double nll = mx + log(sum) - (double)row[target];
        if (!isfinite(nll))
            return g4q_fail(ps->s->ctx, G4Q_ERR_NUMERIC,
                            "perplexity: token %lld: non-finite loss (logits contain NaN/inf)",
                            (long long)(ps->win_start + t0 + i + 1));
        ps->nll_sum += nll;
        ps->n_scored++;
    }
    if (ps->bar) g4q_progress_update(ps->bar, (uint64_t)ps->n_scored);
    return G4Q_OK;
}

g4q_status g4q_ppl_run(g4q_session *s, const int32_t *ids, int64_t n, const g4q_ppl_opts *opts,
                       g4q_ppl_result *out)
{
    const int W = opts->window, S = opts->stride;
    *out = (g4q_ppl_result){0};
    if (n < 2)
        return g4q_fail(s->ctx, G4Q_ERR_INVALID, "perplexity: %lld tokens; at least 2 are needed",
                        (long long)n);
    if (W < 2 || S < 1 || S > W)
        return g4q_fail(s->ctx, G4Q_ERR_INVALID,
                        "perplexity: window %d, stride %d: expected window >= 2 and "
                        "1 <= stride <= window",
                        W, S);
    if (W > s->cfg->max_position_embeddings)
        return g4q_fail(s->ctx, G4Q_ERR_INVALID,
                        "perplexity: window %d exceeds max_position_embeddings %ld", W,
                        s->cfg->max_position_embeddings);
    G4Q_TRY(g4q_session_check_ids(s, ids, (size_t)n));
    G4Q_TRY(g4q_session_reserve(s, n < W ? (int)n : W));
    g4q_progress bar;
    ppl_state ps = {.s = s, .bar = opts->progress ? &bar : NULL};
    if (ps.bar) g4q_progress_begin(&bar, s->ctx, "perplexity", "tokens", (uint64_t)(n - 1));
    const double t_start = g4q_now_seconds();
    g4q_status st = G4Q_OK;
    int64_t prev_end = 1; /* tokens below this are scored (token 0 never is) */
    for (int64_t b = 0; st == G4Q_OK; b += S) {
        const int64_t e = b + W < n ? b + W : n;
        const int64_t first = prev_end > b + 1 ? prev_end : b + 1; /* first token scored */
        if (first < e) {
            ps.win = ids + b;
            ps.win_start = b;
            /* run [b, e-1); rows from first-1 on predict tokens first .. e-1 */
            st = g4q_session_logits(s, ids + b, (int)(e - 1 - b), (int)(first - 1 - b),
                                    opts->rows > 0 ? opts->rows : 64, score_rows, &ps);
        }
        out->n_windows++;
        prev_end = e;
        if (e == n) break;
    }
    if (ps.bar) g4q_progress_end(&bar);
    if (st != G4Q_OK) return st;
    out->nll_sum = ps.nll_sum;
    out->n_scored = ps.n_scored;
    out->nll_mean = ps.n_scored ? ps.nll_sum / (double)ps.n_scored : 0;
    out->ppl = exp(out->nll_mean);
    out->seconds = g4q_now_seconds() - t_start;
    return G4Q_OK;
}
