/* Decoding (the decoder chain of tokenizer.json) and id/token lookups. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_impl.h"
#include "text/tokenizer.h"

/* A list of byte strings stored back to back: piece i is buf[off[i] .. off[i + 1]). */
typedef struct strlist {
    char *buf;
    size_t len, cap;
    size_t *off; /* n + 1 entries */
    size_t n, cap_n;
} strlist;

static void sl_free(strlist *l)
{
    free(l->buf);
    free(l->off);
    memset(l, 0, sizeof *l);
}

static int sl_bytes(strlist *l, const char *s, size_t n)
{
    if (l->cap - l->len < n + 1) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap - l->len < n + 1)
            cap *= 2;
        char *b = realloc(l->buf, cap);
        if (!b) return 0;
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return 1;
}

/* Ends the current piece (everything appended since the previous end). */
static int sl_end(strlist *l)
{
    if (l->n + 2 > l->cap_n) {
        size_t cap = l->cap_n ? l->cap_n * 2 : 64;
        size_t *o = realloc(l->off, cap * sizeof *o);
        if (!o) return 0;
        l->off = o;
        l->cap_n = cap;
    }
    if (l->n == 0) l->off[0] = 0;
    l->off[++l->n] = l->len;
    return 1;
}

static int sl_push(strlist *l, const char *s, size_t n)
{
    return sl_bytes(l, s, n) && sl_end(l);
}

static const char *piece(const strlist *l, size_t i, size_t *n)
{
    *n = l->off[i + 1] - l->off[i];
    return l->buf + l->off[i];
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* 1 if the whole of s is well-formed UTF-8. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = g4q_tok_utf8_unit(s + i, n - i);
        if (len == 1 && s[i] >= 0x80) return 0;
        i += len;
    }
    return 1;
}

/* Flushes a run of <0xHH> bytes: as one piece if valid UTF-8, else one U+FFFD per byte (HF). */
static int flush_bytes(strlist *dst, const unsigned char *bytes, size_t nb)
{
    if (nb == 0) return 1;
    if (utf8_valid(bytes, nb)) return sl_push(dst, (const char *)bytes, nb);
    for (size_t k = 0; k < nb; k++)
        if (!sl_push(dst, "\xef\xbf\xbd", 3)) return 0;
    return 1;
}

static int step_byte_fallback(const strlist *src, strlist *dst)
{
    unsigned char *bytes = malloc(src->n + 1);
    if (!bytes) return 0;
    size_t nb = 0;
    int ok = 1;
    for (size_t i = 0; ok && i < src->n; i++) {
        size_t n;
        const char *p = piece(src, i, &n);
        int hi = n == 6 ? hexval(p[3]) : -1, lo = n == 6 ? hexval(p[4]) : -1;
        if (n == 6 && memcmp(p, "<0x", 3) == 0 && p[5] == '>' && hi >= 0 && lo >= 0) {
            bytes[nb++] = (unsigned char)(hi * 16 + lo);
            continue;
        }
        ok = flush_bytes(dst, bytes, nb) && sl_push(dst, p, n);
        nb = 0;
    }
    ok = ok && flush_bytes(dst, bytes, nb);
    free(bytes);
    return ok;
}

/* Strip: removes up to start leading and stop trailing occurrences of cp from each piece. */
static int step_strip(const g4q_tok_dec_step *d, const strlist *src, strlist *dst)
{
    char enc[4];
    size_t el;
    uint32_t cp = d->strip_cp;
    if (cp < 0x80) {
        enc[0] = (char)cp;
        el = 1;
    } else if (cp < 0x800) {
        enc[0] = (char)(0xc0 | (cp >> 6));
        enc[1] = (char)(0x80 | (cp & 0x3f));
        el = 2;
    } else if (cp < 0x10000) {
        enc[0] = (char)(0xe0 | (cp >> 12));
        enc[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        enc[2] = (char)(0x80 | (cp & 0x3f));
        el = 3;
    } else {
        enc[0] = (char)(0xf0 | (cp >> 18));
        enc[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        enc[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        enc[3] = (char)(0x80 | (cp & 0x3f));
        el = 4;
    }
    for (size_t i = 0; i < src->n; i++) {
        size_t n;
        const char *p = piece(src, i, &n);
        for (int k = 0; k < d->strip_start && n >= el && memcmp(p, enc, el) == 0; k++) {
            p += el;
            n -= el;
        }
        for (int k = 0; k < d->strip_stop && n >= el && memcmp(p + n - el, enc, el) == 0; k++)
            n -= el;
        if (!sl_push(dst, p, n)) return 0;
    }
    return 1;
}

static int run_step(g4q_ctx *ctx, const g4q_tok_dec_step *d, const strlist *src, strlist *dst)
{
    switch (d->kind) {
    case G4Q_TOK_DEC_REPLACE:
        for (size_t i = 0; i < src->n; i++) {
            size_t n;
            const char *p = piece(src, i, &n);
            char *r;
            size_t rn;
            if (g4q_tok_replace_all(ctx, &d->rep, p, n, &r, &rn) != G4Q_OK) return 0;
            int ok = sl_push(dst, r, rn);
            free(r);
            if (!ok) return 0;
        }
        return 1;
    case G4Q_TOK_DEC_BYTE_FALLBACK:
        return step_byte_fallback(src, dst);
    case G4Q_TOK_DEC_FUSE:
        return sl_push(dst, src->buf ? src->buf : "", src->len);
    case G4Q_TOK_DEC_STRIP:
        return step_strip(d, src, dst);
    }
    return 0;
}

static const char *token_of(const g4q_tok *tok, int32_t id, size_t *len)
{
    if (id < 0 || id >= tok->n_ids) return NULL;
    int32_t a = tok->added_of_id[id];
    if (a >= 0) {
        *len = tok->added[a].len;
        return tok->added[a].content;
    }
    if (id >= tok->model_n_ids || tok->piece_len[id] == UINT32_MAX) return NULL;
    *len = tok->piece_len[id];
    return tok->pieces + tok->piece_off[id];
}

g4q_status g4q_tok_decode(g4q_ctx *ctx, const g4q_tok *tok, const int32_t *ids, size_t n,
                          unsigned flags, char **out, size_t *out_len)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    strlist a = {0}, b = {0};
    g4q_status st = G4Q_OK;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *t = token_of(tok, ids[i], &len);
        if (!t) {
            st = g4q_fail(ctx, G4Q_ERR_INVALID,
                          "decode: id %d at position %zu has no token "
                          "(vocab size %d)",
                          ids[i], i, tok->n_ids);
            goto done;
        }
        if ((flags & G4Q_TOK_DECODE_SKIP_SPECIAL) && (tok->flags[ids[i]] & G4Q_TOKF_SPECIAL))
            continue;
        if (!sl_push(&a, t, len)) goto nomem;
    }
    for (size_t k = 0; tok->has_decoder && k < tok->n_dec; k++) {
        if (!run_step(ctx, &tok->dec[k], &a, &b)) goto nomem;
        sl_free(&a);
        a = b;
        memset(&b, 0, sizeof b);
    }
    /* Join: concatenation after a decoder, single spaces without one (HF). */
    for (size_t i = 0; i < a.n; i++) {
        size_t pn;
        const char *p = piece(&a, i, &pn);
        if ((!tok->has_decoder && i > 0 && !sl_bytes(&b, " ", 1)) || !sl_bytes(&b, p, pn))
            goto nomem;
    }
    if (!sl_bytes(&b, "", 0)) goto nomem;
    b.buf[b.len] = 0;
    *out = b.buf;
    if (out_len) *out_len = b.len;
    b.buf = NULL;
    goto done;
nomem:
    st = g4q_fail(ctx, G4Q_ERR_NOMEM, "decode: out of memory (%zu ids)", n);
done:
    sl_free(&a);
    sl_free(&b);
    return st;
}

int32_t g4q_tok_token_to_id(const g4q_tok *tok, const char *token)
{
    size_t n = strlen(token);
    /* Added tokens first (either trie holds each by its content; normalized ones by the
     * normalized content, so check the content itself). */
    for (int t = 0; t < 2; t++) {
        const g4q_tok_trie *tr = t == 0 ? &tok->raw_trie : &tok->norm_trie;
        if (tr->n_nodes == 0 || n == 0) continue;
        int32_t node = tr->root[(unsigned char)token[0]];
        for (size_t j = 1; node >= 0 && j < n; j++)
            node = g4q_tok_trie_child(tr, node, (unsigned char)token[j]);
        if (node >= 0 && tr->term[node] >= 0 && tok->added[tr->term[node]].len == n &&
            memcmp(tok->added[tr->term[node]].content, token, n) == 0)
            return tok->added[tr->term[node]].id;
    }
    for (size_t k = 0; k < tok->n_added; k++)
        if (tok->added[k].normalized && tok->added[k].len == n &&
            memcmp(tok->added[k].content, token, n) == 0)
            return tok->added[k].id;
    return g4q_tok_vocab_find(tok, token, n);
}

const char *g4q_tok_id_to_token(const g4q_tok *tok, int32_t id)
{
    size_t len;
    return token_of(tok, id, &len);
}

int32_t g4q_tok_vocab_size(const g4q_tok *tok)
{
    return tok->n_ids;
}

int32_t g4q_tok_model_vocab_size(const g4q_tok *tok)
{
    return tok->model_n_ids;
}

int32_t g4q_tok_special_id(const g4q_tok *tok, const char *token)
{
    int32_t id = g4q_tok_token_to_id(tok, token);
    return id >= 0 && g4q_tok_is_special(tok, id) ? id : -1;
}

int g4q_tok_is_special(const g4q_tok *tok, int32_t id)
{
    return id >= 0 && id < tok->n_ids && (tok->flags[id] & G4Q_TOKF_SPECIAL) != 0;
}
