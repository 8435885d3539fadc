/* Gemma 4 chat prompt rendering and stop ids from generation_config.json. */
#include "text/chat.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "base/sys.h"

/* Length of the whitespace character at s (Python str.isspace: ASCII whitespace, \x1c-\x1f and
 * the Unicode White_Space set), or 0. */
static size_t space_len(const unsigned char *s, size_t n)
{
    if (s[0] == ' ' || (s[0] >= 0x09 && s[0] <= 0x0d) || (s[0] >= 0x1c && s[0] <= 0x1f)) return 1;
    if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) return 2;
    if (n >= 3 && s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80) return 3;
    if (n >= 3 && s[0] == 0xe2 && s[1] == 0x80 &&
        (s[2] <= 0x8a || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf))
        return 3;
    if (n >= 3 && ((s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) ||
                   (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80)))
        return 3;
    return 0;
}

/* Trims whitespace on both sides: returns the start and writes the length. */
static const char *trim(const char *s, size_t *len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), a = 0, l;
    while (a < n && (l = space_len(u + a, n - a)) > 0)
        a += l;
    size_t b = n;
    while (b > a) {
        /* Step back over one character (at most 4 bytes) and test it. */
        size_t c = b - 1;
        while (c > a && (u[c] & 0xc0) == 0x80 && b - c < 4)
            c--;
        l = space_len(u + c, b - c);
        if (l == 0 || c + l != b) break;
        b = c;
    }
    *len = b - a;
    return s + a;
}


g4q_status g4q_chat_render(g4q_ctx *ctx, const g4q_chat_opts *opts, char **out, size_t *out_len)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!opts || !opts->user)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "chat template: no user message");
    g4q_strbuf b = {0};
    size_t sys_len = 0, user_len = 0;
    const char *sys = opts->system ? trim(opts->system, &sys_len) : "";
    const char *user = trim(opts->user, &user_len);
    g4q_strbuf_str(&b, "<bos>");
    if (sys_len > 0 || opts->thinking) {
        g4q_strbuf_str(&b, "<|turn>system\n");
        if (opts->thinking) g4q_strbuf_str(&b, "<|think|>");
        g4q_strbuf_add(&b, sys, sys_len);
        g4q_strbuf_str(&b, "<turn|>\n");
    }
    g4q_strbuf_str(&b, "<|turn>user\n");
    g4q_strbuf_add(&b, user, user_len);
    g4q_strbuf_str(&b, "<turn|>\n");
    if (opts->add_generation_prompt) {
        g4q_strbuf_str(&b, "<|turn>model\n");
        if (!opts->thinking) g4q_strbuf_str(&b, "<|channel>thought\n<channel|>");
    }
    if (b.oom) {
        free(b.p);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "chat template: out of memory");
    }
    *out = b.p;
    if (out_len) *out_len = b.len;
    return G4Q_OK;
}

static g4q_status stop_id(g4q_ctx *ctx, const char *path, const cJSON *v, int32_t *ids, size_t cap,
                          size_t *n)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= 2147483647.0 ||
        v->valuedouble != (double)v->valueint)
        return g4q_fail(ctx, G4Q_ERR_FORMAT,
                        "%s: eos_token_id: expected a non-negative integer or "
                        "a list of them",
                        path);
    if (*n >= cap)
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: eos_token_id: more than %zu ids", path, cap);
    ids[(*n)++] = v->valueint;
    return G4Q_OK;
}

g4q_status g4q_chat_stop_ids(g4q_ctx *ctx, const char *path, int32_t *ids, size_t cap, size_t *n)
{
    *n = 0;
    char *text = NULL;
    size_t len = 0;
    G4Q_TRY(g4q_read_file(ctx, path, (size_t)16 << 20, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: invalid JSON", path);
    g4q_status st = G4Q_OK;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    if (!eos) {
        st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: no eos_token_id", path);
    } else if (cJSON_IsArray(eos)) {
        if (cJSON_GetArraySize(eos) == 0)
            st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: eos_token_id is an empty list", path);
        for (const cJSON *e = eos->child; e && st == G4Q_OK; e = e->next)
            st = stop_id(ctx, path, e, ids, cap, n);
    } else {
        st = stop_id(ctx, path, eos, ids, cap, n);
    }
    cJSON_Delete(root);
    if (st != G4Q_OK) *n = 0;
    return st;
}
