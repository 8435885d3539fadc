#include "base/strlist.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static g4q_status push_owned(g4q_ctx *ctx, g4q_strlist *l, char *s)
{
    if (!s)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory in string list");
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **items = realloc(l->items, cap * sizeof *items);
        if (!items) {
            free(s);
            return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory in string list");
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] = s;
    return G4Q_OK;
}

g4q_status g4q_strlist_push(g4q_ctx *ctx, g4q_strlist *l, const char *s)
{
    return push_owned(ctx, l, strdup(s));
}

g4q_status g4q_strlist_pushf(g4q_ctx *ctx, g4q_strlist *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return push_owned(ctx, l, n < 0 ? NULL : s);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void g4q_strlist_sort_unique(g4q_strlist *l)
{
    if (l->count < 2)
        return;
    qsort(l->items, l->count, sizeof *l->items, cmp_str);
    size_t w = 1;
    for (size_t r = 1; r < l->count; r++) {
        if (strcmp(l->items[r], l->items[w - 1]) == 0)
            free(l->items[r]);
        else
            l->items[w++] = l->items[r];
    }
    l->count = w;
}

int g4q_strlist_contains(const g4q_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i], s) == 0)
            return 1;
    return 0;
}

void g4q_strlist_free(g4q_strlist *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}
