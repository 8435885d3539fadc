#include "export/writeq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

typedef struct node {
    g4q_writeq_job job;
    g4q_stw_target target;
    struct node *next;
} node;

struct g4q_writeq {
    g4q_ctx *ctx;
    g4q_st_writer *w;
    uint64_t max_inflight;
    pthread_mutex_t mu;
    pthread_cond_t work; /* a job was queued, or stop */
    pthread_cond_t room; /* a job ended */
    node *head, *tail;   /* queued, not started */
    uint64_t inflight;   /* bytes queued or being processed */
    size_t pending;      /* jobs queued or being processed */
    int stop;
    g4q_status err;      /* first failure (G4Q_OK: none) */
    char msg[G4Q_ERR_MSG_MAX];
    int n_threads;
    pthread_t *threads;
};

static void job_end(const g4q_writeq_job *j)
{
    free(j->owned);
    if (j->done) j->done(j->done_arg);
}

/* Steps 1-3 of the header, with the worker's own context. */
static g4q_status run_job(g4q_ctx *wctx, const node *n)
{
    const g4q_writeq_job *j = &n->job;
    if (j->check_bf16) {
        float unused;
        G4Q_TRY(g4q_quant_amax_bf16(wctx, j->check_bf16, j->data, (size_t)(j->nbytes / 2),
                                    &unused));
    }
    if (j->hash_hex) g4q_sha256_hex(j->data, (size_t)j->nbytes, j->hash_hex);
    return g4q_stw_write_claimed(wctx, &n->target, j->data);
}

static void *worker(void *arg)
{
    g4q_writeq *q = arg;
    g4q_ctx wctx = *q->ctx;
    wctx.threads = 1;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stop)
            pthread_cond_wait(&q->work, &q->mu);
        if (!q->head) break; /* stop, and nothing left */
        node *n = q->head;
        q->head = n->next;
        if (!q->head) q->tail = NULL;
        const int failed = q->err != G4Q_OK || q->stop;
        pthread_mutex_unlock(&q->mu);
        g4q_status st = failed ? G4Q_OK : run_job(&wctx, n);
        if (st != G4Q_OK && n->job.where) g4q_error_prefix(&wctx, "%s", n->job.where);
        job_end(&n->job);
        pthread_mutex_lock(&q->mu);
        if (st != G4Q_OK && q->err == G4Q_OK) {
            q->err = st;
            snprintf(q->msg, sizeof q->msg, "%s", g4q_ctx_error(&wctx));
        }
        q->inflight -= n->job.nbytes;
        q->pending--;
        free(n);
        pthread_cond_broadcast(&q->room);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

g4q_status g4q_writeq_create(g4q_ctx *ctx, g4q_st_writer *w, int threads, uint64_t max_inflight,
                             g4q_writeq **out)
{
    *out = NULL;
    g4q_writeq *q = calloc(1, sizeof *q);
    const int nt = threads > 0 ? threads : 1;
    if (q) q->threads = calloc((size_t)nt, sizeof *q->threads);
    if (!q || !q->threads) {
        free(q);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "write queue: out of memory");
    }
    q->ctx = ctx;
    q->w = w;
    q->max_inflight = max_inflight;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->work, NULL);
    pthread_cond_init(&q->room, NULL);
    for (int i = 0; i < nt; i++) {
        int e = pthread_create(&q->threads[i], NULL, worker, q);
        if (e != 0) {
            g4q_writeq_free(q);
            return g4q_fail(ctx, G4Q_ERR_INTERNAL, "write queue: cannot start thread %d of %d: %s",
                            i + 1, nt, strerror(e));
        }
        q->n_threads++;
    }
    *out = q;
    return G4Q_OK;
}

/* The first worker failure into ctx (with the writer marked failed); call with q->mu held. */
static g4q_status report(g4q_writeq *q)
{
    if (q->err == G4Q_OK) return G4Q_OK;
    g4q_stw_set_failed(q->w);
    return g4q_fail(q->ctx, q->err, "%s", q->msg);
}

g4q_status g4q_writeq_put(g4q_writeq *q, const g4q_writeq_job *job)
{
    node *n = calloc(1, sizeof *n);
    if (!n) {
        job_end(job);
        return g4q_fail(q->ctx, G4Q_ERR_NOMEM, "write queue: out of memory");
    }
    n->job = *job;
    pthread_mutex_lock(&q->mu);
    while (q->err == G4Q_OK && q->pending > 0 && q->max_inflight &&
           q->inflight + job->nbytes > q->max_inflight)
        pthread_cond_wait(&q->room, &q->mu);
    g4q_status st = report(q);
    if (st == G4Q_OK) st = g4q_stw_claim(q->w, job->index, 0, job->nbytes, &n->target);
    if (st != G4Q_OK) {
        pthread_mutex_unlock(&q->mu);
        job_end(job);
        free(n);
        return st;
    }
    q->inflight += job->nbytes;
    q->pending++;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    pthread_cond_signal(&q->work);
    pthread_mutex_unlock(&q->mu);
    return G4Q_OK;
}

g4q_status g4q_writeq_finish(g4q_writeq *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->pending > 0)
        pthread_cond_wait(&q->room, &q->mu);
    g4q_status st = report(q);
    pthread_mutex_unlock(&q->mu);
    return st;
}

void g4q_writeq_free(g4q_writeq *q)
{
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1; /* workers end the queued jobs without running them */
    pthread_cond_broadcast(&q->work);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->n_threads; i++)
        pthread_join(q->threads[i], NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->work);
    pthread_cond_destroy(&q->room);
    free(q->threads);
    free(q);
}
