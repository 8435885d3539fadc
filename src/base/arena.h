/*
 * Arenas: one block of memory sized up front, handed out by bumping a pointer. An arena reports its
 * peak use, so tools can print how much memory a job really needed. Allocations are freed all at
 * once with g4q_arena_reset() or g4q_arena_free().
 */
#ifndef G4Q_BASE_ARENA_H
#define G4Q_BASE_ARENA_H

#include <stddef.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_arena {
    unsigned char *base; /* owned; capacity bytes */
    size_t capacity;
    size_t used;
    size_t peak; /* highest `used` seen since init */
    const char *name; /* for messages; not owned */
} g4q_arena;

/* Reserves `capacity` bytes (malloc). On failure returns G4Q_ERR_NOMEM with a message. */
g4q_status g4q_arena_init(g4q_ctx *ctx, g4q_arena *a, const char *name, size_t capacity);

/* Returns `size` bytes aligned to `align` (a power of two, at least 1), or NULL when the arena is
 * full. The memory is not zeroed. */
void *g4q_arena_alloc(g4q_arena *a, size_t size, size_t align);

/* Like g4q_arena_alloc but records an error naming the arena when it is full. */
g4q_status g4q_arena_take(g4q_ctx *ctx, g4q_arena *a, size_t size, size_t align, void **out);

/* Position for a later g4q_arena_rewind (scratch use within a loop). */
size_t g4q_arena_mark(const g4q_arena *a);
void g4q_arena_rewind(g4q_arena *a, size_t mark);

/* Forgets every allocation; the peak is kept. */
void g4q_arena_reset(g4q_arena *a);

/* Releases the memory. NULL and zero-initialised arenas are fine. */
void g4q_arena_free(g4q_arena *a);

#ifdef __cplusplus
}
#endif
#endif
