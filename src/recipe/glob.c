#include "recipe/glob.h"

/* Returns the end of the class starting at p (p points at '['): the pointer just past its ']', or
 * NULL when it is not closed. */
static const char *class_end(const char *p)
{
    p++;
    if (*p == '!' || *p == '^')
        p++;
    if (*p == ']')
        p++;
    while (*p && *p != ']')
        p++;
    return *p ? p + 1 : NULL;
}

/* 1 if c is a member of the class at p ('[' ... ']', known to be closed). */
static int class_has(const char *p, unsigned char c)
{
    p++;
    int neg = 0;
    if (*p == '!' || *p == '^') {
        neg = 1;
        p++;
    }
    int hit = 0;
    int first = 1;
    while (*p && (*p != ']' || first)) {
        unsigned char lo = (unsigned char)*p;
        if (p[1] == '-' && p[2] && p[2] != ']') {
            unsigned char hi = (unsigned char)p[2];
            if (lo <= c && c <= hi)
                hit = 1;
            p += 3;
        } else {
            if (lo == c)
                hit = 1;
            p++;
        }
        first = 0;
    }
    return hit != neg;
}

/* Skips one pattern element at p (escape, class or single character) and returns what follows. */
static const char *skip_elem(const char *p)
{
    if (*p == '\\')
        return p[1] ? p + 2 : p + 1;
    if (*p == '[') {
        const char *e = class_end(p);
        return e ? e : p + 1;
    }
    return p + 1;
}

/* From p inside a brace group, the next ',' or '}' at brace level (NULL if none). */
static const char *alt_end(const char *p)
{
    while (*p && *p != ',' && *p != '}')
        p = skip_elem(p);
    return *p ? p : NULL;
}

const char *g4q_glob_check(const char *pattern, size_t *err_offset)
{
    const char *p = pattern;
    const char *open = NULL; /* the '{' of the group we are in, if any */
    const char *why = NULL;
    const char *where = p;
    if (!*p)
        why = "empty pattern";
    while (!why && *p) {
        where = p;
        if (*p == '\\') {
            if (!p[1])
                why = "trailing '\\'";
        } else if (*p == '[') {
            if (!class_end(p))
                why = "unclosed '['";
        } else if (*p == '{') {
            if (open)
                why = "nested '{' is not supported";
            open = p;
        } else if (*p == '}') {
            if (!open)
                why = "unmatched '}'";
            open = NULL;
        }
        if (!why)
            p = skip_elem(p);
    }
    if (!why && open) {
        why = "unclosed '{'";
        where = open;
    }
    if (why && err_offset)
        *err_offset = (size_t)(where - pattern);
    return why;
}

/* Matches name s against pattern p. Inside a brace alternative, `resume` points just past the
 * group's '}': reaching the alternative's ',' or '}' continues the match there. */
static int match_at(const char *p, const char *s, const char *resume)
{
    for (;;) {
        char c = *p;
        if (resume && (c == ',' || c == '}')) {
            p = resume;
            resume = NULL;
            continue;
        }
        if (c == '\0')
            return *s == '\0';
        if (c == '*') {
            while (*p == '*')
                p++;
            for (const char *t = s;; t++) {
                if (match_at(p, t, resume))
                    return 1;
                if (!*t)
                    return 0;
            }
        }
        if (c == '{') {
            const char *alt = p + 1;
            const char *close = alt;
            while ((close = alt_end(close)) && *close == ',')
                close++;
            if (!close)
                return 0; /* unclosed: rejected by g4q_glob_check */
            for (;;) {
                if (match_at(alt, s, close + 1))
                    return 1;
                const char *e = alt_end(alt);
                if (!e || *e == '}')
                    return 0;
                alt = e + 1;
            }
        }
        if (!*s)
            return 0;
        if (c == '?') {
            p++;
            s++;
            continue;
        }
        if (c == '[') {
            const char *e = class_end(p);
            if (e) {
                if (!class_has(p, (unsigned char)*s))
                    return 0;
                p = e;
                s++;
                continue;
            }
        }
        if (c == '\\' && p[1])
            p++;
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
}

int g4q_glob_match(const char *pattern, const char *name)
{
    return match_at(pattern, name, NULL);
}
