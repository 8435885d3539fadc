/*
 * A growable list of owned strings.
 */
#ifndef G4Q_BASE_STRLIST_H
#define G4Q_BASE_STRLIST_H

#include <stddef.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_strlist {
    char **items; /* owned, each NUL-terminated */
    size_t count;
    size_t cap;
} g4q_strlist;

/* Appends a copy of s. */
g4q_status g4q_strlist_push(g4q_ctx *ctx, g4q_strlist *l, const char *s);
/* Appends a printf-formatted string. */
g4q_status g4q_strlist_pushf(g4q_ctx *ctx, g4q_strlist *l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sorts by plain byte order (strcmp) and removes duplicates. */
void g4q_strlist_sort_unique(g4q_strlist *l);
/* 1 if an item equals s. */
int g4q_strlist_contains(const g4q_strlist *l, const char *s);
void g4q_strlist_free(g4q_strlist *l); /* NULL is a no-op; the list is reusable after */

#ifdef __cplusplus
}
#endif
#endif
