/*
 * A growable NUL-terminated string for building text (JSON headers, configs). Appends never fail
 * individually: an allocation failure sets `oom`, later appends are ignored, and the owner checks
 * `oom` once at the end.
 */
#ifndef G4Q_BASE_STRBUF_H
#define G4Q_BASE_STRBUF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_strbuf {
    char *p;    /* owned; NUL-terminated once anything was appended; NULL before */
    size_t len; /* bytes before the NUL */
    size_t cap;
    int oom;    /* 1 after a failed allocation */
} g4q_strbuf;

void g4q_strbuf_add(g4q_strbuf *b, const char *s, size_t n);
void g4q_strbuf_str(g4q_strbuf *b, const char *s);
void g4q_strbuf_fmt(g4q_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends s as a JSON string literal: quote, backslash and control characters escaped (\n, \t,
 * \r, \b, \f, else \u00XX). ascii = 0 keeps UTF-8 as is; ascii = 1 writes every non-ASCII
 * character as \uXXXX (surrogate pairs above U+FFFF) like Python's json.dumps, and an invalid
 * UTF-8 byte as \ufffd. */
void g4q_strbuf_json_string(g4q_strbuf *b, const char *s, int ascii);

void g4q_strbuf_free(g4q_strbuf *b); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
