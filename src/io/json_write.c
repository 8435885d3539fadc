#include "io/json_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sys.h"

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
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

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void newline(sbuf *b, int indent, int level)
{
    put(b, "\n", 1);
    for (int i = 0; i < indent * level; i++)
        put(b, " ", 1);
}

/* Python float repr: shortest round-trip digits; exponent form when exp < -4 or >= 16. */
static void put_number(sbuf *b, double x)
{
    char tmp[64];
    if (!isfinite(x)) {
        puts_(b, isnan(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity");
        return;
    }
    if (x == floor(x) && fabs(x) < 9007199254740992.0) {
        snprintf(tmp, sizeof tmp, "%.0f", x);
        puts_(b, tmp);
        return;
    }
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    /* tmp is d.ddde[+-]XX; decide the layout as Python does. */
    char *e = strchr(tmp, 'e');
    int exp10 = atoi(e + 1);
    if (exp10 < -4 || exp10 >= 16) {
        char mant[40];
        size_t ml = (size_t)(e - tmp);
        memcpy(mant, tmp, ml);
        mant[ml] = '\0';
        snprintf(tmp, sizeof tmp, "%se%c%02d", mant, exp10 < 0 ? '-' : '+', abs(exp10));
    } else {
        snprintf(tmp, sizeof tmp, "%.*f", prec - 1 - exp10 > 0 ? prec - 1 - exp10 : 1, x);
    }
    puts_(b, tmp);
}

static void put_string(sbuf *b, const char *s)
{
    put(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        char esc[16];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(b, esc, 2);
            p++;
        } else if (c == '\n') {
            puts_(b, "\\n"), p++;
        } else if (c == '\t') {
            puts_(b, "\\t"), p++;
        } else if (c == '\r') {
            puts_(b, "\\r"), p++;
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            puts_(b, esc);
            p++;
        } else if (c < 0x80) {
            put(b, (const char *)p, 1);
            p++;
        } else {
            /* Decode one UTF-8 sequence (input strings come from cJSON or our code; invalid bytes
             * are escaped as U+FFFD). */
            unsigned cp = 0xfffd;
            int n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            int ok = n > 1;
            for (int i = 1; i < n && ok; i++)
                ok = (p[i] & 0xc0) == 0x80;
            if (ok) {
                cp = n == 2 ? (c & 0x1fu) : n == 3 ? (c & 0x0fu) : (c & 0x07u);
                for (int i = 1; i < n; i++)
                    cp = (cp << 6) | (p[i] & 0x3fu);
                p += n;
            } else {
                p++;
            }
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            }
            puts_(b, esc);
        }
    }
    put(b, "\"", 1);
}

static void put_value(sbuf *b, const cJSON *v, int indent, int level)
{
    if (cJSON_IsNull(v)) {
        puts_(b, "null");
    } else if (cJSON_IsTrue(v)) {
        puts_(b, "true");
    } else if (cJSON_IsFalse(v)) {
        puts_(b, "false");
    } else if (cJSON_IsNumber(v)) {
        put_number(b, v->valuedouble);
    } else if (cJSON_IsString(v)) {
        put_string(b, v->valuestring);
    } else if (cJSON_IsRaw(v)) {
        puts_(b, v->valuestring);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        int obj = cJSON_IsObject(v);
        put(b, obj ? "{" : "[", 1);
        const cJSON *c = v->child;
        if (!c) {
            put(b, obj ? "}" : "]", 1);
            return;
        }
        for (int first = 1; c; c = c->next, first = 0) {
            if (!first)
                puts_(b, indent ? "," : ", ");
            if (indent)
                newline(b, indent, level + 1);
            if (obj) {
                put_string(b, c->string ? c->string : "");
                puts_(b, ": ");
            }
            put_value(b, c, indent, level + 1);
        }
        if (indent)
            newline(b, indent, level);
        put(b, obj ? "}" : "]", 1);
    } else {
        puts_(b, "null");
    }
}

cJSON *g4q_json_create_float(double x)
{
    char tmp[64];
    if (isfinite(x) && x == floor(x) && fabs(x) < 1e16) {
        snprintf(tmp, sizeof tmp, "%.1f", x);
        return cJSON_CreateRaw(tmp);
    }
    sbuf b = {0};
    put_number(&b, x);
    cJSON *item = cJSON_CreateRaw(b.p ? b.p : "0.0");
    free(b.p);
    return item;
}

g4q_status g4q_json_print(g4q_ctx *ctx, const cJSON *v, int indent, int base_level, char **out)
{
    sbuf b = {0};
    put_value(&b, v, indent, base_level);
    if (b.oom || !b.p) {
        free(b.p);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory printing JSON");
    }
    *out = b.p;
    return G4Q_OK;
}

g4q_status g4q_json_write_file(g4q_ctx *ctx, const char *path, const cJSON *v, int indent)
{
    char *text;
    G4Q_TRY(g4q_json_print(ctx, v, indent, 0, &text));
    size_t n = strlen(text);
    text[n] = '\0';
    char *with_nl = realloc(text, n + 2);
    if (!with_nl) {
        free(text);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory writing %s", path);
    }
    with_nl[n] = '\n';
    with_nl[n + 1] = '\0';
    g4q_status st = g4q_write_file(ctx, path, with_nl, n + 1);
    free(with_nl);
    return st;
}

g4q_status g4q_json_append_member(g4q_ctx *ctx, const char *label, const char *doc, const char *key,
                                  const cJSON *value, int indent, char **out)
{
    cJSON *parsed = cJSON_Parse(doc);
    if (!cJSON_IsObject(parsed)) {
        cJSON_Delete(parsed);
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: not a JSON object", label);
    }
    int has_key = cJSON_GetObjectItemCaseSensitive(parsed, key) != NULL;
    int empty = parsed->child == NULL;
    cJSON_Delete(parsed);
    if (has_key)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s: already has \"%s\"", label, key);
    size_t end = strlen(doc);
    while (end > 0 && doc[end - 1] != '}')
        end--;
    if (end == 0)
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: no closing brace", label);
    size_t body = end - 1; /* index of the closing brace */
    while (body > 0 && (doc[body - 1] == ' ' || doc[body - 1] == '\n' || doc[body - 1] == '\r' ||
                        doc[body - 1] == '\t'))
        body--;
    char *val;
    G4Q_TRY(g4q_json_print(ctx, value, indent, indent ? 1 : 0, &val));
    sbuf b = {0};
    put(&b, doc, body);
    if (!empty)
        put(&b, ",", 1);
    if (indent)
        newline(&b, indent, 1);
    else if (!empty)
        put(&b, " ", 1);
    put_string(&b, key);
    puts_(&b, ": ");
    puts_(&b, val);
    if (indent)
        put(&b, "\n", 1);
    puts_(&b, doc + end - 1); /* the closing brace and whatever followed it */
    free(val);
    if (b.oom || !b.p) {
        free(b.p);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory editing %s", label);
    }
    *out = b.p;
    return G4Q_OK;
}
