/* Read-ahead of mapped ranges on a thread (contract in readahead.h). */
#include "io/readahead.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define READAHEAD_DEFAULT_WINDOW ((uint64_t)1 << 30)

struct g4q_readahead {
    g4q_range *r;
    size_t count;
    uint64_t window;
    size_t page;
    pthread_mutex_t mu;
    pthread_cond_t moved; /* the caller moved on, or stop */
    size_t at;            /* the caller's range */
    uint64_t done_bytes;  /* bytes of the ranges touched whole */
    int stop;
    pthread_t thread;
};

/* May range i be touched now? Caller holds mu. */
static int allowed(const g4q_readahead *ra, size_t i)
{
    if (i < ra->at) return 0; /* passed: skipped, never touched */
    uint64_t ahead = 0;
    for (size_t k = ra->at; k < i; k++)
        ahead += ra->r[k].n;
    return i == ra->at || ahead + ra->r[i].n <= ra->window;
}

/* Maps the pages of range i into the process: the kernel is asked for all of them first (one
 * request, so a cold read is issued as large I/O), then one byte per page is read. Stops early
 * when the caller passes the range meanwhile (checked every 256 pages). Returns whether it
 * touched the whole range. */
static int touch(g4q_readahead *ra, size_t i, volatile unsigned char *sink)
{
    const g4q_range *r = &ra->r[i];
    const uintptr_t mask = ~(uintptr_t)(ra->page - 1);
    const uintptr_t a = (uintptr_t)r->p & mask, end = (uintptr_t)r->p + r->n;
    (void)madvise((void *)a, end - a, MADV_WILLNEED); /* advice only: failure changes nothing */
    unsigned char acc = 0;
    size_t pages = 0;
    for (uintptr_t q = (uintptr_t)r->p; q < end; q = (q & mask) + ra->page) {
        if (++pages % 256 == 0 && __atomic_load_n(&ra->at, __ATOMIC_RELAXED) > i) return 0;
        acc ^= *(const volatile unsigned char *)q;
    }
    *sink = acc;
    return 1;
}

static void *run(void *arg)
{
    g4q_readahead *ra = arg;
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < ra->count; i++) {
        pthread_mutex_lock(&ra->mu);
        while (!ra->stop && !allowed(ra, i) && i >= ra->at)
            pthread_cond_wait(&ra->moved, &ra->mu);
        const int go = !ra->stop && i >= ra->at;
        const int stop = ra->stop;
        pthread_mutex_unlock(&ra->mu);
        if (stop) break;
        if (go && touch(ra, i, &sink)) {
            pthread_mutex_lock(&ra->mu);
            ra->done_bytes += ra->r[i].n;
            pthread_mutex_unlock(&ra->mu);
        }
    }
    return NULL;
}

g4q_status g4q_readahead_start(g4q_ctx *ctx, const g4q_range *ranges, size_t count,
                               uint64_t window, g4q_readahead **out)
{
    *out = NULL;
    g4q_readahead *ra = calloc(1, sizeof *ra);
    if (ra && count) ra->r = malloc(count * sizeof *ra->r);
    if (!ra || (count && !ra->r)) {
        free(ra);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "read-ahead: out of memory");
    }
    if (count) memcpy(ra->r, ranges, count * sizeof *ra->r);
    ra->count = count;
    ra->window = window ? window : READAHEAD_DEFAULT_WINDOW;
    const long pg = sysconf(_SC_PAGESIZE);
    ra->page = pg > 0 ? (size_t)pg : 4096;
    pthread_mutex_init(&ra->mu, NULL);
    pthread_cond_init(&ra->moved, NULL);
    if (pthread_create(&ra->thread, NULL, run, ra) != 0) {
        pthread_cond_destroy(&ra->moved);
        pthread_mutex_destroy(&ra->mu);
        free(ra->r);
        free(ra);
        return g4q_fail(ctx, G4Q_ERR_IO, "read-ahead: cannot start a thread");
    }
    *out = ra;
    return G4Q_OK;
}

void g4q_readahead_at(g4q_readahead *ra, size_t k)
{
    if (!ra) return;
    pthread_mutex_lock(&ra->mu);
    if (k > ra->at) {
        __atomic_store_n(&ra->at, k, __ATOMIC_RELAXED); /* touch() reads it without the lock */
        pthread_cond_signal(&ra->moved);
    }
    pthread_mutex_unlock(&ra->mu);
}

uint64_t g4q_readahead_done_bytes(g4q_readahead *ra)
{
    pthread_mutex_lock(&ra->mu);
    const uint64_t b = ra->done_bytes;
    pthread_mutex_unlock(&ra->mu);
    return b;
}

void g4q_readahead_stop(g4q_readahead *ra)
{
    if (!ra) return;
    pthread_mutex_lock(&ra->mu);
    ra->stop = 1;
    pthread_cond_signal(&ra->moved);
    pthread_mutex_unlock(&ra->mu);
    pthread_join(ra->thread, NULL);
    pthread_cond_destroy(&ra->moved);
    pthread_mutex_destroy(&ra->mu);
    free(ra->r);
    free(ra);
}
