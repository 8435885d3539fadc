/* Encoding: added tokens, normalizer, pre-tokenizer and the BPE merge loop. */
#include <stdlib.h>
#include <string.h>

#include "text/tok_impl.h"
#include "text/tokenizer.h"

void g4q_tok_ids_free(g4q_tok_ids *ids)
{
    if (!ids) return;
    free(ids->ids);
    ids->ids = NULL;
    ids->n = ids->cap = 0;
}

static int ids_push(g4q_tok_ids *out, int32_t id)
{
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 256;
        int32_t *p = realloc(out->ids, cap * sizeof *p);
        if (!p) return 0;
        out->ids = p;
        out->cap = cap;
    }
    out->ids[out->n++] = id;
    return 1;
}

size_t g4q_tok_utf8_unit(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 1;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 1;
    for (size_t k = 2; k < len; k++)
        if ((s[k] & 0xc0) != 0x80) return 1;
    return len;
}

g4q_status g4q_tok_replace_all(g4q_ctx *ctx, const g4q_tok_replace *r, const char *s, size_t n,
                               char **out, size_t *out_len)
{
    size_t count = 0;
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), r->from, r->from_len)) != NULL;
         p += r->from_len)
        count++;
    size_t len = n - count * r->from_len + count * r->to_len;
    char *buf = malloc(len + 1);
    if (!buf) return g4q_fail(ctx, G4Q_ERR_NOMEM, "tokenizer: cannot allocate %zu bytes", len + 1);
    char *w = buf;
    const char *p = s, *end = s + n;
    for (;;) {
        const char *q = memmem(p, (size_t)(end - p), r->from, r->from_len);
        if (!q) break;
        memcpy(w, p, (size_t)(q - p));
        w += q - p;
        memcpy(w, r->to, r->to_len);
        w += r->to_len;
        p = q + r->from_len;
    }
    memcpy(w, p, (size_t)(end - p));
    w += end - p;
    *w = 0;
    *out = buf;
    *out_len = len;
    return G4Q_OK;
}

g4q_status g4q_tok_normalize(g4q_ctx *ctx, const g4q_tok *tok, const char *s, size_t n, char **out,
                             size_t *out_len)
{
    char *cur = malloc(n + 1);
    if (!cur) return g4q_fail(ctx, G4Q_ERR_NOMEM, "tokenizer: cannot allocate %zu bytes", n + 1);
    memcpy(cur, s, n);
    cur[n] = 0;
    size_t len = n;
    for (size_t k = 0; k < tok->n_norm; k++) {
        char *next;
        size_t next_len;
        g4q_status st = g4q_tok_replace_all(ctx, &tok->norm[k], cur, len, &next, &next_len);
        free(cur);
        if (st != G4Q_OK) return st;
        cur = next;
        len = next_len;
    }
    *out = cur;
    *out_len = len;
    return G4Q_OK;
}

/* ---------------------------------------------------------------- BPE */

/* Scratch memory reused across the words of one encode call. */
typedef struct bpe_work {
    int32_t *id;   /* symbol ids; -1 = merged away */
    int32_t *prev; /* -1 at the start */
    int32_t *next; /* -1 at the end */
    size_t cap;
    uint64_t *heap; /* min-heap of (rank << 32 | position) */
    size_t heap_n, heap_cap;
} bpe_work;

static void bpe_work_free(bpe_work *w)
{
    free(w->id);
    free(w->prev);
    free(w->next);
    free(w->heap);
}

static int bpe_reserve(bpe_work *w, size_t n)
{
    if (n <= w->cap) return 1;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < n)
        cap *= 2;
    int32_t *a = realloc(w->id, cap * sizeof *a);
    if (a) w->id = a;
    int32_t *b = realloc(w->prev, cap * sizeof *b);
    if (b) w->prev = b;
    int32_t *c = realloc(w->next, cap * sizeof *c);
    if (c) w->next = c;
    uint64_t *h = realloc(w->heap, cap * sizeof *h);
    if (h) w->heap = h;
    if (!a || !b || !c || !h) return 0;
    w->cap = cap;
    w->heap_cap = cap;
    return 1;
}

/* The heap never holds more entries than the word has symbols plus the merges done, and every
 * merge pushes at most two while removing one symbol; heap_cap >= 2 * symbols is reserved. */
static void heap_push(bpe_work *w, uint64_t v)
{
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (w->heap[parent] <= v) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = v;
}

static uint64_t heap_pop(bpe_work *w)
{
    uint64_t top = w->heap[0];
    uint64_t v = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n) break;
        size_t m = (l + 1 < n && w->heap[l + 1] < w->heap[l]) ? l + 1 : l;
        if (w->heap[m] >= v) break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    if (n > 0) w->heap[i] = v;
    return top;
}

static void push_pair(const g4q_tok *tok, bpe_work *w, int32_t pos)
{
    int32_t nx = w->next[pos];
    if (nx < 0) return;
    uint32_t rank;
    int32_t merged;
    if (g4q_tok_merge_find(tok, w->id[pos], w->id[nx], &rank, &merged))
        heap_push(w, ((uint64_t)rank << 32) | (uint32_t)pos);
}

/* Initial symbols of a word: one per character in the vocab; otherwise its <0xHH> byte tokens
 * (byte_fallback), otherwise unk (consecutive unks fused with fuse_unk). The order of a pending
 * unk relative to byte tokens follows HF's BPE::merge_word. Returns the symbol count. */
static size_t bpe_init(const g4q_tok *tok, bpe_work *w, const unsigned char *s, size_t n)
{
    size_t k = 0;
    int have_unk = 0;
    for (size_t i = 0; i < n;) {
        size_t len = g4q_tok_utf8_unit(s + i, n - i);
        int32_t id;
        if (len == 1 && s[i] >= 0x80)
            id = -1; /* a stray byte is never a vocab piece */
        else if (len <= 3)
            id = tok->bmp_id[len == 1   ? s[i]
                             : len == 2 ? ((s[i] & 0x1fu) << 6) | (s[i + 1] & 0x3fu)
                                        : ((s[i] & 0x0fu) << 12) | ((s[i + 1] & 0x3fu) << 6) |
                                              (s[i + 2] & 0x3fu)];
        else
            id = g4q_tok_vocab_find(tok, (const char *)s + i, len);
        if (id >= 0) {
            if (have_unk) w->id[k++] = tok->unk_id;
            have_unk = 0;
            w->id[k++] = id;
        } else {
            int bytes_ok = tok->byte_fallback;
            for (size_t b = 0; bytes_ok && b < len; b++)
                bytes_ok = tok->byte_id[s[i + b]] >= 0;
            if (bytes_ok) {
                for (size_t b = 0; b < len; b++)
                    w->id[k++] = tok->byte_id[s[i + b]];
            } else if (tok->unk_id >= 0) {
                if (have_unk && !tok->fuse_unk) w->id[k++] = tok->unk_id;
                have_unk = 1;
            }
        }
        i += len;
    }
    if (have_unk) w->id[k++] = tok->unk_id;
    return k;
}

/* Encodes one pre-tokenized word and appends its ids. */
static int bpe_word(const g4q_tok *tok, bpe_work *w, const char *s, size_t n, g4q_tok_ids *out)
{
    if (n == 0) return 1;
    if (tok->ignore_merges) {
        int32_t id = g4q_tok_vocab_find(tok, s, n);
        if (id >= 0) return ids_push(out, id);
    }
    /* Each byte yields at most one symbol. */
    if (!bpe_reserve(w, 2 * n + 2)) return 0;
    size_t k = bpe_init(tok, w, (const unsigned char *)s, n);
    for (size_t i = 0; i < k; i++) {
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < k ? (int32_t)i + 1 : -1;
    }
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < k; i++)
        push_pair(tok, w, (int32_t)i);
    while (w->heap_n > 0) {
        uint64_t top = heap_pop(w);
        int32_t pos = (int32_t)(uint32_t)top;
        uint32_t want_rank = (uint32_t)(top >> 32);
        int32_t nx = w->next[pos];
        if (w->id[pos] < 0 || nx < 0) continue;
        /* Stale entry: the pair at pos changed since it was pushed (a rank names one pair). */
        const g4q_tok_merge_rule *r = &tok->rule[want_rank];
        if (w->id[pos] != r->a || w->id[nx] != r->b) continue;
        w->id[pos] = r->merged;
        w->id[nx] = -1;
        int32_t nn = w->next[nx];
        w->next[pos] = nn;
        if (nn >= 0) w->prev[nn] = pos;
        if (w->prev[pos] >= 0) push_pair(tok, w, w->prev[pos]);
        push_pair(tok, w, pos);
    }
    for (int32_t i = 0; k > 0 && i >= 0; i = w->next[i])
        if (!ids_push(out, w->id[i])) return 0;
    return 1;
}

/* ---------------------------------------------------------------- splitting */

static int is_space_at(const unsigned char *s, size_t n, size_t *len)
{
    unsigned c = s[0];
    *len = 1;
    if (c == ' ' || (c >= 0x09 && c <= 0x0d)) return 1;
    if (n >= 2 && c == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0)) {
        *len = 2;
        return 1;
    }
    if (n >= 3 && c == 0xe1 && s[1] == 0x9a && s[2] == 0x80) { /* U+1680 */
        *len = 3;
        return 1;
    }
    if (n >= 3 && c == 0xe2 && s[1] == 0x80 &&
        (s[2] <= 0x8a || s[2] == 0xa8 || s[2] == 0xa9 ||
         s[2] == 0xaf)) { /* 2000-200A 2028 2029 202F */
        *len = 3;
        return 1;
    }
    if (n >= 3 && ((c == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) ||  /* U+205F */
                   (c == 0xe3 && s[1] == 0x80 && s[2] == 0x80))) { /* U+3000 */
        *len = 3;
        return 1;
    }
    return 0;
}

/* Start of the run of whitespace characters that ends at s + end (not before floor). */
static size_t space_run_back(const unsigned char *s, size_t floor, size_t end)
{
    size_t start = end;
    while (start > floor) {
        size_t b = start - 1;
        while (b > floor && (s[b] & 0xc0) == 0x80 && start - b < 4)
            b--;
        size_t len;
        if (!is_space_at(s + b, start - b, &len) || b + len != start) break;
        start = b;
    }
    return start;
}

static size_t space_run_fwd(const unsigned char *s, size_t n, size_t pos)
{
    size_t len;
    while (pos < n && is_space_at(s + pos, n - pos, &len))
        pos += len;
    return pos;
}

/* Longest added token in trie t starting at s[i]: returns its length (0 if none), *idx its index.
 */
static size_t trie_match(const g4q_tok_trie *t, const unsigned char *s, size_t n, size_t i,
                         int32_t *idx)
{
    int32_t node = t->root[s[i]];
    size_t best = 0;
    for (size_t j = i + 1; node >= 0; j++) {
        if (t->term[node] >= 0) {
            best = j - i;
            *idx = t->term[node];
        }
        if (j >= n) break;
        node = g4q_tok_trie_child(t, node, s[j]);
    }
    return best;
}

typedef struct enc_state {
    const g4q_tok *tok;
    g4q_ctx *ctx;
    bpe_work w;
    g4q_tok_ids *out;
} enc_state;

/* Pre-tokenizer Split(pattern, MergedWithPrevious): a match joins the text before it when that
 * text is not empty and not itself a match; otherwise it stands alone. Each piece is one word. */
static int pretok_and_bpe(enc_state *e, const char *s, size_t n)
{
    const g4q_tok *tok = e->tok;
    if (!tok->split_pat) return bpe_word(tok, &e->w, s, n, e->out);
    size_t last = 0;
    const char *p = s;
    for (;;) {
        const char *q = memmem(p, n - (size_t)(p - s), tok->split_pat, tok->split_len);
        if (!q) break;
        size_t at = (size_t)(q - s), end = at + tok->split_len;
        size_t start = at > last ? last : at;
        if (!bpe_word(tok, &e->w, s + start, end - start, e->out)) return 0;
        last = end;
        p = s + end;
    }
    return bpe_word(tok, &e->w, s + last, n - last, e->out);
}

/* Splits s by the added tokens of trie t (leftmost-longest, honouring lstrip/rstrip); matched
 * tokens are emitted, the rest goes to rest(). */
static g4q_status split_added(enc_state *e, const g4q_tok_trie *t, const char *s, size_t n,
                              g4q_status (*rest)(enc_state *, const char *, size_t))
{
    const unsigned char *u = (const unsigned char *)s;
    size_t done = 0;
    for (size_t i = 0; t->n_nodes > 0 && i < n;) {
        int32_t idx = -1;
        size_t len = trie_match(t, u, n, i, &idx);
        if (len == 0) {
            i++;
            continue;
        }
        const g4q_tok_added *a = &e->tok->added[idx];
        size_t start = a->lstrip ? space_run_back(u, done, i) : i;
        size_t stop = a->rstrip ? space_run_fwd(u, n, i + len) : i + len;
        if (start > done) G4Q_TRY(rest(e, s + done, start - done));
        if (!ids_push(e->out, a->id))
            return g4q_fail(e->ctx, G4Q_ERR_NOMEM, "tokenizer: out of memory");
        done = stop;
        i = stop;
    }
    if (n > done) G4Q_TRY(rest(e, s + done, n - done));
    return G4Q_OK;
}

static g4q_status after_norm_split(enc_state *e, const char *s, size_t n)
{
    if (!pretok_and_bpe(e, s, n))
        return g4q_fail(e->ctx, G4Q_ERR_NOMEM, "tokenizer: out of memory in BPE");
    return G4Q_OK;
}

/* A raw segment between non-normalized added tokens: normalize, split on normalized added
 * tokens, pre-tokenize, BPE. */
static g4q_status raw_segment(enc_state *e, const char *s, size_t n)
{
    if (e->tok->n_norm == 0) return split_added(e, &e->tok->norm_trie, s, n, after_norm_split);
    char *norm;
    size_t norm_len;
    G4Q_TRY(g4q_tok_normalize(e->ctx, e->tok, s, n, &norm, &norm_len));
    g4q_status st = split_added(e, &e->tok->norm_trie, norm, norm_len, after_norm_split);
    free(norm);
    return st;
}

g4q_status g4q_tok_encode(g4q_ctx *ctx, const g4q_tok *tok, const char *text, size_t len,
                          g4q_tok_ids *out)
{
    enc_state e = {.tok = tok, .ctx = ctx, .out = out};
    g4q_status st = split_added(&e, &tok->raw_trie, text, len, raw_segment);
    bpe_work_free(&e.w);
    return st;
}
