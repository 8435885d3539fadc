#include "io/json_write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "base/sys.h"


static void newline(g4q_strbuf *b, int indent, int level)
{
    g4q_strbuf_add(b, "\n", 1);
    for (int i = 0; i < indent * level; i++)
        g4q_strbuf_add(b, " ", 1);
}

/* Python float repr: shortest round-trip digits; exponent form when exp < -4 or >= 16. */
static void put_number(g4q_strbuf *b, double x)
{
    char tmp[64];
    if (!isfinite(x)) {
        g4q_strbuf_str(b, isnan(x) ? "NaN" : x > 0 ? "Infinity" : "-Infinity");
        return;
    }
    if (x == floor(x) && fabs(x) < 9007199254740992.0) {
        snprintf(tmp, sizeof tmp, "%.0f", x);
        g4q_strbuf_str(b, tmp);
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
    g4q_strbuf_str(b, tmp);
}


static void put_value(g4q_strbuf *b, const cJSON *v, int indent, int level)
{
    if (cJSON_IsNull(v)) {
        g4q_strbuf_str(b, "null");
    } else if (cJSON_IsTrue(v)) {
        g4q_strbuf_str(b, "true");
    } else if (cJSON_IsFalse(v)) {
        g4q_strbuf_str(b, "false");
    } else if (cJSON_IsNumber(v)) {
        put_number(b, v->valuedouble);
    } else if (cJSON_IsString(v)) {
        g4q_strbuf_json_string(b, v->valuestring, 1);
    } else if (cJSON_IsRaw(v)) {
        g4q_strbuf_str(b, v->valuestring);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        int obj = cJSON_IsObject(v);
        g4q_strbuf_add(b, obj ? "{" : "[", 1);
        const cJSON *c = v->child;
        if (!c) {
            g4q_strbuf_add(b, obj ? "}" : "]", 1);
            return;
        }
        for (int first = 1; c; c = c->next, first = 0) {
            if (!first)
                g4q_strbuf_str(b, indent ? "," : ", ");
            if (indent)
                newline(b, indent, level + 1);
            if (obj) {
                g4q_strbuf_json_string(b, c->string ? c->string : "", 1);
                g4q_strbuf_str(b, ": ");
            }
            put_value(b, c, indent, level + 1);
        }
        if (indent)
            newline(b, indent, level);
        g4q_strbuf_add(b, obj ? "}" : "]", 1);
    } else {
        g4q_strbuf_str(b, "null");
    }
}

cJSON *g4q_json_create_float(double x)
{
    char tmp[64];
    if (isfinite(x) && x == floor(x) && fabs(x) < 1e16) {
        snprintf(tmp, sizeof tmp, "%.1f", x);
        return cJSON_CreateRaw(tmp);
    }
    g4q_strbuf b = {0};
    put_number(&b, x);
    cJSON *item = cJSON_CreateRaw(b.p ? b.p : "0.0");
    free(b.p);
    return item;
}

g4q_status g4q_json_print(g4q_ctx *ctx, const cJSON *v, int indent, int base_level, char **out)
{
    g4q_strbuf b = {0};
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
    g4q_strbuf b = {0};
    g4q_strbuf_add(&b, doc, body);
    if (!empty)
        g4q_strbuf_add(&b, ",", 1);
    if (indent)
        newline(&b, indent, 1);
    else if (!empty)
        g4q_strbuf_add(&b, " ", 1);
    g4q_strbuf_json_string(&b, key, 1);
    g4q_strbuf_str(&b, ": ");
    g4q_strbuf_str(&b, val);
    if (indent)
        g4q_strbuf_add(&b, "\n", 1);
    g4q_strbuf_str(&b, doc + end - 1); /* the closing brace and whatever followed it */
    free(val);
    if (b.oom || !b.p) {
        free(b.p);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory editing %s", label);
    }
    *out = b.p;
    return G4Q_OK;
}
