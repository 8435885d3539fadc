/*
 * Progress for long work. On a terminal (stderr is a tty) a bar redrawn in place at most ten times
 * a second; otherwise one plain line every few seconds, so logs stay readable. ctx->progress
 * selects: -1 never, 0 auto, 1 always plain lines.
 */
#ifndef G4Q_BASE_PROGRESS_H
#define G4Q_BASE_PROGRESS_H

#include <stdint.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_progress {
    const g4q_ctx *ctx;
    const char *label; /* not owned */
    const char *unit;  /* "B" prints sizes as KB/MB/GB; anything else is printed after counts */
    uint64_t total;
    uint64_t done;
    double t_start;
    double t_last_draw;
    int mode; /* 0 off, 1 bar, 2 lines */
} g4q_progress;

void g4q_progress_begin(g4q_progress *p, const g4q_ctx *ctx, const char *label, const char *unit,
                        uint64_t total);
/* Sets the amount done so far (not an increment) and redraws if it is time to. */
void g4q_progress_update(g4q_progress *p, uint64_t done);
/* Final draw (100%) and newline. */
void g4q_progress_end(g4q_progress *p);

#ifdef __cplusplus
}
#endif
#endif
