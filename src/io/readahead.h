/*
 * Read-ahead of memory-mapped input on a thread, so that the thread that uses the data (the
 * export's quantizer, docs/architecture.md §2.1) finds its pages resident and mapped instead of
 * taking the page faults itself: reading, quantizing and writing then overlap.
 *
 * The caller gives the byte ranges it will read, in the order it will read them, and reports its
 * progress with g4q_readahead_at. The thread walks the ranges in order: for each it asks the
 * kernel for the pages (madvise WILLNEED) and then touches one byte of every page, which maps them
 * into the process (a minor fault when the page cache holds them, a disk read otherwise). It stays
 * at most `window` bytes ahead of the caller, counting from the range the caller is at (the range
 * the caller is at is always allowed, however large), which bounds the resident memory it adds.
 * It skips a range the caller has passed, and stops touching one that the caller passes meanwhile
 * (checked every 256 pages), so the caller may drop a range's pages (e.g. g4q_ckpt_release) as
 * soon as it moves past it: at most those 256 pages of it come back.
 *
 * Only reads: the data are never modified and the output of the caller cannot change. A range
 * that is not mapped memory the process may read is a caller bug (the touch would fault).
 */
#ifndef G4Q_IO_READAHEAD_H
#define G4Q_IO_READAHEAD_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_readahead g4q_readahead;

typedef struct g4q_range {
    const void *p;
    size_t n;
} g4q_range;

/* Starts the thread over ranges[0 .. count) (copied; count may be 0). window: bytes ahead of the
 * caller's range (0: 1 GB). G4Q_ERR_NOMEM / G4Q_ERR_IO when the copy or the thread cannot be
 * made, with nothing left running. */
g4q_status g4q_readahead_start(g4q_ctx *ctx, const g4q_range *ranges, size_t count,
                               uint64_t window, g4q_readahead **out);

/* The caller is now at range k: ranges before k are done (k may only grow; a smaller k is
 * ignored). Wakes the thread. NULL: nothing. */
void g4q_readahead_at(g4q_readahead *ra, size_t k);

/* Stops the thread (it finishes the page it is touching), joins it and frees everything. NULL:
 * nothing. */
void g4q_readahead_stop(g4q_readahead *ra);

/* Bytes of the ranges the thread has touched whole so far (for tests and reports). */
uint64_t g4q_readahead_done_bytes(g4q_readahead *ra);

#ifdef __cplusplus
}
#endif

#endif
