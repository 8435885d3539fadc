/*
 * The export's write queue: output tensors checked, hashed and written on worker threads, so that
 * reading the input, quantizing and writing overlap (docs/architecture.md §2.1) and the slowest of
 * the three sets the pace.
 *
 * The export's thread puts one job per output tensor. g4q_writeq_put claims the tensor's bytes in
 * the writer on that thread (g4q_stw_claim: every range check and the bookkeeping stay
 * single-threaded), then a worker
 *   1. refuses NaN and infinity when the job asks (BF16 data, e.g. a weight kept as it is),
 *   2. writes the SHA-256 of the bytes, in hex, into the job's hash buffer,
 *   3. writes the bytes (g4q_stw_write_claimed),
 *   4. frees the job's owned buffer and runs its done callback (e.g. dropping input pages).
 * Each output's bytes and hash are the same whatever the thread count or the order in which jobs
 * finish. At most max_inflight bytes are queued or being processed at once (a job bigger than
 * that runs alone), which bounds the memory the queue holds.
 *
 * Errors: a worker records the first failure with its message (naming the file and the tensor)
 * and the remaining jobs are dropped (their owned buffers freed, done still run); the next
 * g4q_writeq_put or g4q_writeq_finish returns it in the queue's ctx, and the writer is marked
 * failed (g4q_stw_set_failed), so the caller aborts the output folder.
 */
#ifndef G4Q_EXPORT_WRITEQ_H
#define G4Q_EXPORT_WRITEQ_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"
#include "base/sha256.h"
#include "io/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_writeq g4q_writeq;

typedef struct g4q_writeq_job {
    size_t index;            /* the tensor's writer handle (g4q_stw_declare) */
    const void *data;        /* its bytes, all of them: nbytes = the declared size */
    uint64_t nbytes;
    char *hash_hex;          /* G4Q_SHA256_HEX bytes, filled before the job ends; NULL: no hash */
    void *owned;             /* free()d once the job ends (written or dropped); may be data */
    const char *check_bf16;  /* non-NULL: data are BF16 values, refuse NaN/inf, naming this */
    const char *where;       /* non-NULL: prefixed to the job's error message (e.g. the input) */
    void (*done)(void *arg); /* run once the job ends, on a worker; may be NULL */
    void *done_arg;
} g4q_writeq_job;

/* A queue writing into w with `threads` workers (<= 0: 1) and at most max_inflight bytes held
 * (0: no limit). ctx receives errors; workers use copies of it limited to one CPU thread each. */
g4q_status g4q_writeq_create(g4q_ctx *ctx, g4q_st_writer *w, int threads, uint64_t max_inflight,
                             g4q_writeq **out);

/* Claims the job's bytes and queues it, waiting while the queue holds max_inflight bytes. On any
 * failure (an earlier job's, or the claim's) the job is not queued: its owned buffer is freed and
 * its done callback run here. */
g4q_status g4q_writeq_put(g4q_writeq *q, const g4q_writeq_job *job);

/* Waits until every queued job has ended; returns the first failure. */
g4q_status g4q_writeq_finish(g4q_writeq *q);

/* Drops the jobs not yet started (owned freed, done run), waits for the running ones, stops the
 * workers and frees the queue. NULL is a no-op. */
void g4q_writeq_free(g4q_writeq *q);

#ifdef __cplusplus
}
#endif
#endif
