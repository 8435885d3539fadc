#include "base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

g4q_status g4q_arena_init(g4q_ctx *ctx, g4q_arena *a, const char *name, size_t capacity)
{
    memset(a, 0, sizeof *a);
    a->name = name ? name : "arena";
    a->base = malloc(capacity ? capacity : 1);
    if (!a->base)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: cannot reserve %zu bytes", a->name, capacity);
    a->capacity = capacity;
    return G4Q_OK;
}

void *g4q_arena_alloc(g4q_arena *a, size_t size, size_t align)
{
    if (align == 0)
        align = 1;
    uintptr_t start = (uintptr_t)a->base + a->used;
    uintptr_t aligned = (start + (align - 1)) & ~(uintptr_t)(align - 1);
    size_t offset = (size_t)(aligned - (uintptr_t)a->base);
    if (offset > a->capacity || size > a->capacity - offset)
        return NULL;
    a->used = offset + size;
    if (a->used > a->peak)
        a->peak = a->used;
    return a->base + offset;
}

g4q_status g4q_arena_take(g4q_ctx *ctx, g4q_arena *a, size_t size, size_t align, void **out)
{
    *out = g4q_arena_alloc(a, size, align);
    if (!*out)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: %zu bytes requested, %zu of %zu in use", a->name,
                        size, a->used, a->capacity);
    return G4Q_OK;
}

size_t g4q_arena_mark(const g4q_arena *a)
{
    return a->used;
}

void g4q_arena_rewind(g4q_arena *a, size_t mark)
{
    if (mark <= a->used)
        a->used = mark;
}

void g4q_arena_reset(g4q_arena *a)
{
    a->used = 0;
}

void g4q_arena_free(g4q_arena *a)
{
    if (!a)
        return;
    free(a->base);
    a->base = NULL;
    a->capacity = a->used = 0;
}
