#include "base/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void g4q_strbuf_add(g4q_strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void g4q_strbuf_str(g4q_strbuf *b, const char *s)
{
    g4q_strbuf_add(b, s, strlen(s));
}

void g4q_strbuf_fmt(g4q_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof tmp) {
        g4q_strbuf_add(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    g4q_strbuf_add(b, big, (size_t)n);
    free(big);
}

/* Decodes one UTF-8 sequence at p; returns its length, or 0 when invalid. */
static int utf8_decode(const unsigned char *p, unsigned *cp)
{
    unsigned c = p[0];
    int n = c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (n == 0 || (c >= 0xe0 && c < 0xf0 && n != 3))
        return 0;
    unsigned v = n == 2 ? (c & 0x1fu) : n == 3 ? (c & 0x0fu) : (c & 0x07u);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3fu);
    }
    *cp = v;
    return n;
}

void g4q_strbuf_json_string(g4q_strbuf *b, const char *s, int ascii)
{
    g4q_strbuf_add(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                        : c == '\t' ? "\\t" : c == '\r' ? "\\r" : c == '\b' ? "\\b"
                        : c == '\f' ? "\\f" : NULL;
        if (esc) {
            g4q_strbuf_str(b, esc);
            p++;
        } else if (c < 0x20) {
            g4q_strbuf_fmt(b, "\\u%04x", c);
            p++;
        } else if (c < 0x80 || !ascii) {
            g4q_strbuf_add(b, (const char *)p, 1);
            p++;
        } else {
            unsigned cp = 0xfffd;
            int n = utf8_decode(p, &cp);
            p += n ? n : 1;
            if (!n)
                cp = 0xfffd;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                g4q_strbuf_fmt(b, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else {
                g4q_strbuf_fmt(b, "\\u%04x", cp);
            }
        }
    }
    g4q_strbuf_add(b, "\"", 1);
}

void g4q_strbuf_free(g4q_strbuf *b)
{
    if (!b)
        return;
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}
