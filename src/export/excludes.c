#include "export/excludes.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

/* hits(p): some quantized q equals p, or p ends in '*' and q starts with p minus the '*'. */
static int hits(const char *p, const char *const *q, size_t nq)
{
    size_t len = strlen(p);
    int wildcard = len > 0 && p[len - 1] == '*';
    for (size_t i = 0; i < nq; i++) {
        if (wildcard ? strncmp(q[i], p, len - 1) == 0 : strcmp(q[i], p) == 0)
            return 1;
    }
    return 0;
}

g4q_status g4q_excludes_summarise(g4q_ctx *ctx, const char *const *unquantized, size_t n_unquantized,
                                  const char *const *quantized, size_t n_quantized,
                                  g4q_strlist *out)
{
    g4q_strlist emitted = {0};
    g4q_status st = G4Q_OK;
    char *buf = NULL;
    for (size_t i = 0; i < n_unquantized && st == G4Q_OK; i++) {
        const char *u = unquantized[i];
        size_t ulen = strlen(u);
        free(buf);
        buf = malloc(ulen + 3); /* prefix + ".*" + NUL */
        if (!buf) {
            st = g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory summarising excludes");
            break;
        }
        int done = 0;
        for (size_t k = 0; k < ulen && !done; k++) {
            if (u[k] != '.')
                continue;
            /* P = u[0..k) */
            memcpy(buf, u, k);
            buf[k] = '*';
            buf[k + 1] = '\0';
            if (!hits(buf, quantized, n_quantized)) {
                st = g4q_strlist_push(ctx, &emitted, buf);
                done = 1;
                break;
            }
            buf[k] = '\0';
            int hit_p = hits(buf, quantized, n_quantized);
            buf[k] = '.';
            buf[k + 1] = '*';
            buf[k + 2] = '\0';
            if (!hit_p && !hits(buf, quantized, n_quantized)) {
                st = g4q_strlist_push(ctx, &emitted, buf);
                done = 1;
            }
        }
        if (!done && st == G4Q_OK)
            st = g4q_strlist_push(ctx, &emitted, u);
    }
    free(buf);
    if (st == G4Q_OK) {
        g4q_strlist_sort_unique(&emitted);
        for (size_t i = 0; i < emitted.count && st == G4Q_OK; i++)
            st = g4q_strlist_push(ctx, out, emitted.items[i]);
    }
    g4q_strlist_free(&emitted);
    return st;
}

static int entry_skips(const char *entry, const char *module)
{
    if (strcmp(entry, module) == 0 || strstr(module, entry) != NULL ||
        fnmatch(entry, module, 0) == 0)
        return 1;
    return 0;
}

int g4q_excludes_skips(const g4q_strlist *excludes, const char *module)
{
    for (size_t i = 0; i < excludes->count; i++) {
        const char *e = excludes->items[i];
        size_t len = strlen(e);
        if (entry_skips(e, module))
            return 1;
        int star = len > 0 && e[len - 1] == '*';
        int dot_star = len > 1 && e[len - 2] == '.' && star;
        if (star && !dot_star && len < 1024) {
            char x[1024 + 2];
            memcpy(x, e, len - 1);
            x[len - 1] = '\0'; /* "X" */
            if (entry_skips(x, module))
                return 1;
            x[len - 1] = '.';
            x[len] = '*';
            x[len + 1] = '\0'; /* "X.*" */
            if (entry_skips(x, module))
                return 1;
        }
    }
    return 0;
}

g4q_status g4q_excludes_verify(g4q_ctx *ctx, const g4q_strlist *excludes,
                               const char *const *unquantized, size_t n_unquantized,
                               const char *const *quantized, size_t n_quantized)
{
    for (size_t i = 0; i < n_unquantized; i++)
        if (!g4q_excludes_skips(excludes, unquantized[i]))
            return g4q_fail(ctx, G4Q_ERR_INTERNAL,
                            "exclude list does not cover BF16 module '%s': vLLM would try to load "
                            "it as quantized", unquantized[i]);
    for (size_t i = 0; i < n_quantized; i++)
        for (size_t e = 0; e < excludes->count; e++) {
            g4q_strlist one = {.items = &excludes->items[e], .count = 1, .cap = 1};
            if (g4q_excludes_skips(&one, quantized[i]))
                return g4q_fail(ctx, G4Q_ERR_INTERNAL,
                                "exclude entry '%s' would make vLLM skip quantized module '%s'",
                                excludes->items[e], quantized[i]);
        }
    return G4Q_OK;
}
