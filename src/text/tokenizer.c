/* Loading tokenizer.json: file reading (plain or gzip), JSON -> the tables of tok_impl.h. */
#include "text/tokenizer.h"

#include <archive.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sys.h"
#include "text/tok_impl.h"

#define TOK_MAX_FILE_BYTES ((size_t)1 << 30)
#define TOK_MAX_ID ((double)(1 << 30))

/* ---------------------------------------------------------------- hashing and tables */

uint64_t g4q_tok_hash_u64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

uint64_t g4q_tok_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return g4q_tok_hash_u64(h);
}

/* Smallest power of two >= 2 * n (load factor at most one half), at least 16. */
static size_t table_size(size_t n)
{
    size_t s = 16;
    while (s < 2 * n)
        s <<= 1;
    return s;
}

int32_t g4q_tok_vocab_find(const g4q_tok *tok, const char *s, size_t n)
{
    if (!tok->vocab_slot) return -1;
    size_t i = (size_t)g4q_tok_hash_bytes(s, n) & tok->vocab_mask;
    for (;;) {
        int32_t id = tok->vocab_slot[i];
        if (id < 0) return -1;
        if (tok->piece_len[id] == n && memcmp(tok->pieces + tok->piece_off[id], s, n) == 0)
            return id;
        i = (i + 1) & tok->vocab_mask;
    }
}

int g4q_tok_merge_find(const g4q_tok *tok, int32_t a, int32_t b, uint32_t *rank, int32_t *merged)
{
    if (!tok->merge_slot) return 0;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)g4q_tok_hash_u64(key) & tok->merge_mask;
    for (;;) {
        const g4q_tok_merge_slot *sl = &tok->merge_slot[i];
        if (sl->key == 0) return 0;
        if (sl->key == key) {
            *rank = sl->rank;
            *merged = sl->merged;
            return 1;
        }
        i = (i + 1) & tok->merge_mask;
    }
}

/* ---------------------------------------------------------------- trie of added tokens */

int32_t g4q_tok_trie_child(const g4q_tok_trie *t, int32_t node, unsigned char c)
{
    if (t->edge_mask == 0) return -1;
    uint64_t key = (((uint64_t)node << 8) | c) + 1;
    size_t i = (size_t)g4q_tok_hash_u64(key) & t->edge_mask;
    for (;;) {
        if (t->edge_key[i] == 0) return -1;
        if (t->edge_key[i] == key) return t->edge_child[i];
        i = (i + 1) & t->edge_mask;
    }
}

static int trie_grow_edges(g4q_tok_trie *t)
{
    size_t cap = t->edge_mask ? (t->edge_mask + 1) * 2 : 64;
    uint64_t *keys = calloc(cap, sizeof *keys);
    int32_t *child = malloc(cap * sizeof *child);
    if (!keys || !child) {
        free(keys);
        free(child);
        return 0;
    }
    for (size_t i = 0; t->edge_mask && i <= t->edge_mask; i++) {
        if (t->edge_key[i] == 0) continue;
        size_t j = (size_t)g4q_tok_hash_u64(t->edge_key[i]) & (cap - 1);
        while (keys[j] != 0)
            j = (j + 1) & (cap - 1);
        keys[j] = t->edge_key[i];
        child[j] = t->edge_child[i];
    }
    free(t->edge_key);
    free(t->edge_child);
    t->edge_key = keys;
    t->edge_child = child;
    t->edge_mask = cap - 1;
    return 1;
}

static int32_t trie_new_node(g4q_tok_trie *t)
{
    if (t->n_nodes == t->cap_nodes) {
        int32_t cap = t->cap_nodes ? t->cap_nodes * 2 : 64;
        int32_t *term = realloc(t->term, (size_t)cap * sizeof *term);
        if (!term) return -1;
        t->term = term;
        t->cap_nodes = cap;
    }
    t->term[t->n_nodes] = -1;
    return t->n_nodes++;
}

g4q_status g4q_tok_trie_add(g4q_ctx *ctx, g4q_tok_trie *t, const char *s, size_t n, int32_t idx)
{
    if (t->n_nodes == 0) {
        if (trie_new_node(t) < 0)
            return g4q_fail(ctx, G4Q_ERR_NOMEM, "tokenizer: out of memory (trie)");
        for (int b = 0; b < 256; b++)
            t->root[b] = -1;
    }
    int32_t node = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        int32_t child = g4q_tok_trie_child(t, node, c);
        if (child < 0) {
            if (2 * (t->n_edges + 1) > t->edge_mask + 1 && !trie_grow_edges(t))
                return g4q_fail(ctx, G4Q_ERR_NOMEM, "tokenizer: out of memory (trie)");
            child = trie_new_node(t);
            if (child < 0) return g4q_fail(ctx, G4Q_ERR_NOMEM, "tokenizer: out of memory (trie)");
            uint64_t key = (((uint64_t)node << 8) | c) + 1;
            size_t i = (size_t)g4q_tok_hash_u64(key) & t->edge_mask;
            while (t->edge_key[i] != 0)
                i = (i + 1) & t->edge_mask;
            t->edge_key[i] = key;
            t->edge_child[i] = child;
            t->n_edges++;
            if (node == 0) t->root[c] = child;
        }
        node = child;
    }
    t->term[node] = idx;
    return G4Q_OK;
}

void g4q_tok_trie_free(g4q_tok_trie *t)
{
    free(t->term);
    free(t->edge_key);
    free(t->edge_child);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------- reading the file */

static g4q_status gunzip(g4q_ctx *ctx, const char *path, const char *data, size_t n, char **out,
                         size_t *out_len)
{
    struct archive *a = archive_read_new();
    if (!a) return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: cannot create a libarchive reader", path);
    archive_read_support_filter_gzip(a);
    archive_read_support_format_raw(a);
    g4q_status st = G4Q_OK;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    struct archive_entry *entry;
    if (archive_read_open_memory(a, data, n) != ARCHIVE_OK ||
        archive_read_next_header(a, &entry) != ARCHIVE_OK) {
        st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: gzip: %s", path, archive_error_string(a));
        goto done;
    }
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : n * 8 + 65536;
            if (cap > TOK_MAX_FILE_BYTES + 65536) {
                st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: decompresses to more than %zu bytes", path,
                              TOK_MAX_FILE_BYTES);
                goto done;
            }
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, cap);
                goto done;
            }
            buf = nb;
        }
        la_ssize_t r = archive_read_data(a, buf + len, cap - len);
        if (r < 0) {
            st = g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: gzip: %s", path, archive_error_string(a));
            goto done;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    buf[len] = 0;
done:
    archive_read_free(a);
    if (st != G4Q_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = len;
    return G4Q_OK;
}

g4q_status g4q_tok_load(g4q_ctx *ctx, const char *path, g4q_tok **out)
{
    *out = NULL;
    char *raw = NULL;
    size_t n = 0;
    G4Q_TRY(g4q_read_file(ctx, path, TOK_MAX_FILE_BYTES, &raw, &n));
    if (n >= 2 && (unsigned char)raw[0] == 0x1f && (unsigned char)raw[1] == 0x8b) {
        char *plain = NULL;
        size_t plain_len = 0;
        g4q_status st = gunzip(ctx, path, raw, n, &plain, &plain_len);
        free(raw);
        if (st != G4Q_OK) return st;
        raw = plain;
        n = plain_len;
    }
    g4q_status st = g4q_tok_load_json(ctx, raw, n, path, out);
    free(raw);
    return st;
}

/* ---------------------------------------------------------------- the model (BPE) */

static g4q_status parse_vocab(g4q_ctx *ctx, g4q_tok *tok, const cJSON *vocab, const char *name)
{
    if (!cJSON_IsObject(vocab))
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: model.vocab is not an object", name);
    size_t count = 0, bytes = 0;
    int32_t max_id = -1;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= TOK_MAX_ID ||
            e->valuedouble != (double)e->valueint)
            return g4q_fail(ctx, G4Q_ERR_FORMAT,
                            "%s: model.vocab['%s']: id is not an integer in "
                            "[0, 2^30)",
                            name, e->string);
        if (e->valueint > max_id) max_id = e->valueint;
        count++;
        bytes += strlen(e->string) + 1;
    }
    if (bytes > UINT32_MAX)
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: model.vocab: pieces too large", name);
    tok->model_n_ids = max_id + 1;
    tok->n_ids = max_id + 1;
    tok->model_count = count;
    size_t nid = (size_t)(max_id + 1);
    tok->piece_off = calloc(nid ? nid : 1, sizeof *tok->piece_off);
    tok->piece_len = malloc((nid ? nid : 1) * sizeof *tok->piece_len);
    tok->pieces = malloc(bytes ? bytes : 1);
    size_t slots = table_size(count);
    tok->vocab_slot = malloc(slots * sizeof *tok->vocab_slot);
    if (!tok->piece_off || !tok->piece_len || !tok->pieces || !tok->vocab_slot)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory for the vocab", name);
    tok->vocab_mask = slots - 1;
    memset(tok->vocab_slot, 0xff, slots * sizeof *tok->vocab_slot);
    memset(tok->piece_len, 0xff, (nid ? nid : 1) * sizeof *tok->piece_len);
    size_t off = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id = e->valueint;
        size_t len = strlen(e->string);
        if (tok->piece_len[id] != UINT32_MAX)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: model.vocab: id %d is given to '%s' and '%s'",
                            name, id, tok->pieces + tok->piece_off[id], e->string);
        if (g4q_tok_vocab_find(tok, e->string, len) >= 0)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: model.vocab: '%s' appears twice", name,
                            e->string);
        memcpy(tok->pieces + off, e->string, len + 1);
        tok->piece_off[id] = (uint32_t)off;
        tok->piece_len[id] = (uint32_t)len;
        off += len + 1;
        size_t i = (size_t)g4q_tok_hash_bytes(e->string, len) & tok->vocab_mask;
        while (tok->vocab_slot[i] >= 0)
            i = (i + 1) & tok->vocab_mask;
        tok->vocab_slot[i] = id;
    }
    tok->pieces_len = off;
    return G4Q_OK;
}

/* Splits merge entry e into its two sides (pointers into the JSON tree or into tmp). */
static g4q_status merge_sides(g4q_ctx *ctx, const cJSON *e, size_t rank, const char *name,
                              char *tmp, size_t tmp_cap, const char **a, const char **b)
{
    if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
        cJSON_IsString(e->child->next)) {
        *a = e->child->valuestring;
        *b = e->child->next->valuestring;
        return G4Q_OK;
    }
    if (cJSON_IsString(e)) {
        const char *s = e->valuestring;
        const char *sp = strchr(s, ' ');
        size_t len = strlen(s);
        if (!sp || strchr(sp + 1, ' ') || len + 1 > tmp_cap)
            return g4q_fail(ctx, G4Q_ERR_FORMAT,
                            "%s: model.merges[%zu] '%s': expected exactly one "
                            "space between the two sides",
                            name, rank, s);
        memcpy(tmp, s, len + 1);
        tmp[sp - s] = 0;
        *a = tmp;
        *b = tmp + (sp - s) + 1;
        return G4Q_OK;
    }
    return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: model.merges[%zu]: neither [\"a\",\"b\"] nor \"a b\"",
                    name, rank);
}

static g4q_status parse_merges(g4q_ctx *ctx, g4q_tok *tok, const cJSON *merges, const char *name)
{
    if (!merges || cJSON_IsNull(merges)) return G4Q_OK;
    if (!cJSON_IsArray(merges))
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: model.merges is not an array", name);
    size_t count = (size_t)cJSON_GetArraySize(merges);
    size_t slots = table_size(count);
    tok->merge_slot = calloc(slots, sizeof *tok->merge_slot);
    tok->rule = malloc((count ? count : 1) * sizeof *tok->rule);
    if (!tok->merge_slot || !tok->rule)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory for %zu merges", name, count);
    tok->merge_mask = slots - 1;
    char tmp[1024];
    char joined[1024];
    size_t rank = 0;
    for (const cJSON *e = merges->child; e; e = e->next, rank++) {
        const char *a = NULL, *b = NULL;
        G4Q_TRY(merge_sides(ctx, e, rank, name, tmp, sizeof tmp, &a, &b));
        size_t la = strlen(a), lb = strlen(b);
        int32_t ia = g4q_tok_vocab_find(tok, a, la), ib = g4q_tok_vocab_find(tok, b, lb);
        if (ia < 0 || ib < 0)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: model.merges[%zu]: '%s' is not in the vocab",
                            name, rank, ia < 0 ? a : b);
        if (la + lb >= sizeof joined)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: model.merges[%zu]: token too long", name,
                            rank);
        memcpy(joined, a, la);
        memcpy(joined + la, b, lb);
        int32_t inew = g4q_tok_vocab_find(tok, joined, la + lb);
        if (inew < 0)
            return g4q_fail(ctx, G4Q_ERR_FORMAT,
                            "%s: model.merges[%zu]: merged '%.*s' is not in "
                            "the vocab",
                            name, rank, (int)(la + lb), joined);
        /* A pair listed twice keeps its last rank, as HF's map construction does. */
        uint64_t key = (((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib) + 1;
        size_t i = (size_t)g4q_tok_hash_u64(key) & tok->merge_mask;
        while (tok->merge_slot[i].key != 0 && tok->merge_slot[i].key != key)
            i = (i + 1) & tok->merge_mask;
        if (tok->merge_slot[i].key == 0) tok->n_merges++;
        tok->merge_slot[i] = (g4q_tok_merge_slot){key, (uint32_t)rank, inew};
        tok->rule[rank] = (g4q_tok_merge_rule){ia, ib, inew};
        tok->n_rules = rank + 1;
    }
    return G4Q_OK;
}

static int json_bool(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

/* A key that must be absent or null. */
static g4q_status need_null(g4q_ctx *ctx, const cJSON *o, const char *key, const char *where,
                            const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v && !cJSON_IsNull(v))
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "%s: %s.%s is set; only null is supported", name,
                        where, key);
    return G4Q_OK;
}

static g4q_status parse_model(g4q_ctx *ctx, g4q_tok *tok, const cJSON *model, const char *name)
{
    if (!cJSON_IsObject(model)) return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: no 'model' object", name);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "%s: model.type '%s': only BPE is supported",
                        name, cJSON_IsString(type) ? type->valuestring : "?");
    if (!type && !cJSON_GetObjectItemCaseSensitive(model, "merges"))
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: model has no type and no merges; only BPE is "
                        "supported",
                        name);
    G4Q_TRY(need_null(ctx, model, "continuing_subword_prefix", "model", name));
    G4Q_TRY(need_null(ctx, model, "end_of_word_suffix", "model", name));
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) &&
        !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: model.dropout is set; BPE dropout is not "
                        "supported",
                        name);
    tok->byte_fallback = json_bool(model, "byte_fallback", 0);
    tok->fuse_unk = json_bool(model, "fuse_unk", 0);
    tok->ignore_merges = json_bool(model, "ignore_merges", 0);
    G4Q_TRY(parse_vocab(ctx, tok, cJSON_GetObjectItemCaseSensitive(model, "vocab"), name));
    G4Q_TRY(parse_merges(ctx, tok, cJSON_GetObjectItemCaseSensitive(model, "merges"), name));
    tok->unk_id = -1;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk)) {
        tok->unk_id = g4q_tok_vocab_find(tok, unk->valuestring, strlen(unk->valuestring));
        if (tok->unk_id < 0)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: model.unk_token '%s' is not in the vocab",
                            name, unk->valuestring);
    } else if (unk && !cJSON_IsNull(unk)) {
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: model.unk_token is not a string", name);
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        tok->byte_id[b] = g4q_tok_vocab_find(tok, s, 6);
    }
    tok->bmp_id = malloc(0x10000 * sizeof *tok->bmp_id);
    if (!tok->bmp_id) return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", name);
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
        unsigned char u[3];
        size_t n = 1;
        if (cp < 0x80) {
            u[0] = (unsigned char)cp;
        } else if (cp < 0x800) {
            u[0] = (unsigned char)(0xc0 | (cp >> 6));
            u[1] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 2;
        } else {
            u[0] = (unsigned char)(0xe0 | (cp >> 12));
            u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
            u[2] = (unsigned char)(0x80 | (cp & 0x3f));
            n = 3;
        }
        /* Surrogates never reach the table (they are not well-formed UTF-8). */
        tok->bmp_id[cp] =
            (cp >= 0xd800 && cp <= 0xdfff) ? -1 : g4q_tok_vocab_find(tok, (char *)u, n);
    }
    return G4Q_OK;
}

/* ---------------------------------------------------------------- added tokens */

/* The id HF gives an added token (AddedVocabulary::add_tokens; the "id" in the file is only
 * checked, with a warning): an earlier added token with the same content keeps its id; a token of
 * the model vocab gets its vocab id; any other gets the next id after the model vocab (its entry
 * count) and the added ids so far. */
static g4q_status assign_added_id(g4q_ctx *ctx, g4q_tok *tok, size_t k, const char *content,
                                  int32_t file_id, int32_t *max_added, const char *name)
{
    size_t len = strlen(content);
    int32_t id = -1;
    for (size_t j = 0; j < k && id < 0; j++)
        if (tok->added[j].len == len && memcmp(tok->added[j].content, content, len) == 0)
            id = tok->added[j].id;
    if (id < 0) id = g4q_tok_vocab_find(tok, content, len);
    if (id < 0) {
        int32_t count = (int32_t)tok->model_count;
        id = (*max_added < 0)                      ? count
             : (*max_added >= count || count == 0) ? *max_added + 1
                                                   : count;
    }
    if (id != file_id)
        G4Q_WARN(ctx,
                 "%s: added_tokens[%zu] '%s': the file says id %d, HF tokenizers assigns %d; "
                 "using %d",
                 name, k, content, file_id, id, id);
    if (id >= (int32_t)TOK_MAX_ID)
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: added_tokens[%zu]: id out of range", name, k);
    if (id > *max_added) *max_added = id;
    tok->added[k].id = id;
    return G4Q_OK;
}

static g4q_status parse_added(g4q_ctx *ctx, g4q_tok *tok, const cJSON *arr, const char *name)
{
    if (!arr || cJSON_IsNull(arr)) return G4Q_OK;
    if (!cJSON_IsArray(arr))
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: added_tokens is not an array", name);
    size_t count = (size_t)cJSON_GetArraySize(arr);
    tok->added = calloc(count ? count : 1, sizeof *tok->added);
    if (!tok->added) return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", name);
    size_t k = 0;
    int32_t max_added = -1;
    for (const cJSON *e = arr->child; e; e = e->next, k++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= TOK_MAX_ID ||
            id->valuedouble != (double)id->valueint || !cJSON_IsString(content) ||
            content->valuestring[0] == 0)
            return g4q_fail(ctx, G4Q_ERR_FORMAT,
                            "%s: added_tokens[%zu]: needs an integer 'id' and "
                            "a non-empty string 'content'",
                            name, k);
        if (json_bool(e, "single_word", 0))
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: added_tokens[%zu] '%s': single_word is "
                            "not supported",
                            name, k, content->valuestring);
        g4q_tok_added *a = &tok->added[k];
        G4Q_TRY(assign_added_id(ctx, tok, k, content->valuestring, id->valueint, &max_added, name));
        a->special = (uint8_t)json_bool(e, "special", 0);
        /* HF's default for "normalized" is !special. */
        a->normalized = (uint8_t)json_bool(e, "normalized", !a->special);
        a->lstrip = (uint8_t)json_bool(e, "lstrip", 0);
        a->rstrip = (uint8_t)json_bool(e, "rstrip", 0);
        a->len = strlen(content->valuestring);
        a->content = malloc(a->len + 1);
        if (!a->content) return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", name);
        memcpy(a->content, content->valuestring, a->len + 1);
        tok->n_added = k + 1;
        if (a->id >= tok->n_ids) tok->n_ids = a->id + 1;
    }
    return G4Q_OK;
}

/* Per-id tables and the two tries; needs the normalizer (normalized entries are matched in their
 * normalized form). */
static g4q_status build_added(g4q_ctx *ctx, g4q_tok *tok, const char *name)
{
    size_t nid = (size_t)(tok->n_ids > 0 ? tok->n_ids : 1);
    tok->flags = calloc(nid, 1);
    tok->added_of_id = malloc(nid * sizeof *tok->added_of_id);
    if (!tok->flags || !tok->added_of_id)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", name);
    memset(tok->added_of_id, 0xff, nid * sizeof *tok->added_of_id);
    for (int32_t i = 0; i < tok->model_n_ids; i++)
        if (tok->piece_len[i] != UINT32_MAX) tok->flags[i] |= G4Q_TOKF_MODEL;
    for (size_t k = 0; k < tok->n_added; k++) {
        g4q_tok_added *a = &tok->added[k];
        tok->added_of_id[a->id] = (int32_t)k;
        tok->flags[a->id] |= G4Q_TOKF_ADDED;
        if (a->special) tok->flags[a->id] |= G4Q_TOKF_SPECIAL;
        if (!a->normalized) {
            G4Q_TRY(g4q_tok_trie_add(ctx, &tok->raw_trie, a->content, a->len, (int32_t)k));
        } else {
            char *norm = NULL;
            size_t norm_len = 0;
            G4Q_TRY(g4q_tok_normalize(ctx, tok, a->content, a->len, &norm, &norm_len));
            g4q_status st = g4q_tok_trie_add(ctx, &tok->norm_trie, norm, norm_len, (int32_t)k);
            free(norm);
            G4Q_TRY(st);
        }
    }
    return G4Q_OK;
}

/* ---------------------------------------------------------------- normalizer, pre-tokenizer */

/* Reads {"type":"Replace","pattern":{"String":s},"content":c} into r. */
static g4q_status parse_replace(g4q_ctx *ctx, const cJSON *o, const char *where, const char *name,
                                g4q_tok_replace *r)
{
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(o, "content");
    if (!cJSON_IsString(str) || !cJSON_IsString(content))
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: %s: Replace needs a String pattern and a "
                        "string content (Regex patterns are not supported)",
                        name, where);
    r->from_len = strlen(str->valuestring);
    r->to_len = strlen(content->valuestring);
    if (r->from_len == 0)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "%s: %s: Replace with an empty pattern", name,
                        where);
    r->from = strdup(str->valuestring);
    r->to = strdup(content->valuestring);
    if (!r->from || !r->to) return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", name);
    return G4Q_OK;
}

static const char *type_of(const cJSON *o)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) ? t->valuestring : "";
}

static g4q_status parse_normalizer(g4q_ctx *ctx, g4q_tok *tok, const cJSON *n, const char *name)
{
    if (!n || cJSON_IsNull(n)) return G4Q_OK;
    const cJSON *list = n;
    size_t count = 1;
    if (strcmp(type_of(n), "Sequence") == 0) {
        list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        if (!cJSON_IsArray(list))
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: normalizer.normalizers is not an array",
                            name);
        count = (size_t)cJSON_GetArraySize(list);
        list = list->child;
    }
    tok->norm = calloc(count ? count : 1, sizeof *tok->norm);
    if (!tok->norm) return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", name);
    for (const cJSON *e = list; e && tok->n_norm < count; e = e->next) {
        if (strcmp(type_of(e), "Replace") != 0)
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: normalizer type '%s' is not supported "
                            "(only Replace, or a Sequence of Replace)",
                            name, type_of(e));
        G4Q_TRY(parse_replace(ctx, e, "normalizer", name, &tok->norm[tok->n_norm]));
        tok->n_norm++;
    }
    return G4Q_OK;
}

static g4q_status parse_pre_tokenizer(g4q_ctx *ctx, g4q_tok *tok, const cJSON *p, const char *name)
{
    if (!p || cJSON_IsNull(p)) return G4Q_OK;
    if (strcmp(type_of(p), "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list))
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: pre_tokenizer.pretokenizers is not an array",
                            name);
        int n = cJSON_GetArraySize(list);
        if (n == 0) return G4Q_OK;
        if (n > 1)
            return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                            "%s: pre_tokenizer Sequence of %d: only one "
                            "Split is supported",
                            name, n);
        p = list->child;
    }
    const cJSON *str =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(p, "pattern"), "String");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(p, "behavior");
    if (strcmp(type_of(p), "Split") != 0 || !cJSON_IsString(str) || str->valuestring[0] == 0 ||
        !cJSON_IsString(beh) || strcmp(beh->valuestring, "MergedWithPrevious") != 0 ||
        json_bool(p, "invert", 0))
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: pre_tokenizer '%s': only Split with a String "
                        "pattern, behavior MergedWithPrevious and invert false is supported",
                        name, type_of(p));
    tok->split_pat = strdup(str->valuestring);
    if (!tok->split_pat) return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", name);
    tok->split_len = strlen(tok->split_pat);
    return G4Q_OK;
}

/* ---------------------------------------------------------------- decoder */

static g4q_status parse_dec_step(g4q_ctx *ctx, const cJSON *e, const char *name,
                                 g4q_tok_dec_step *d)
{
    const char *t = type_of(e);
    if (strcmp(t, "Replace") == 0) {
        d->kind = G4Q_TOK_DEC_REPLACE;
        return parse_replace(ctx, e, "decoder", name, &d->rep);
    }
    if (strcmp(t, "ByteFallback") == 0) {
        d->kind = G4Q_TOK_DEC_BYTE_FALLBACK;
        return G4Q_OK;
    }
    if (strcmp(t, "Fuse") == 0) {
        d->kind = G4Q_TOK_DEC_FUSE;
        return G4Q_OK;
    }
    if (strcmp(t, "Strip") == 0) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(e, "start");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(e, "stop");
        if (!cJSON_IsString(c) || !cJSON_IsNumber(start) || !cJSON_IsNumber(stop) ||
            start->valueint < 0 || stop->valueint < 0)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: decoder Strip needs content, start, stop",
                            name);
        const unsigned char *s = (const unsigned char *)c->valuestring;
        /* content is one character; decode its code point. */
        uint32_t cp = s[0];
        int extra = cp >= 0xf0 ? 3 : cp >= 0xe0 ? 2 : cp >= 0xc0 ? 1 : 0;
        if (extra) cp &= 0x3fu >> extra;
        for (int i = 1; i <= extra; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: decoder Strip: bad content", name);
            cp = (cp << 6) | (s[i] & 0x3fu);
        }
        if (s[0] == 0 || s[1 + extra] != 0)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: decoder Strip: content must be one character",
                            name);
        d->kind = G4Q_TOK_DEC_STRIP;
        d->strip_cp = cp;
        d->strip_start = start->valueint;
        d->strip_stop = stop->valueint;
        return G4Q_OK;
    }
    return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                    "%s: decoder type '%s' is not supported (Replace, "
                    "ByteFallback, Fuse, Strip, Sequence)",
                    name, t);
}

static g4q_status parse_decoder(g4q_ctx *ctx, g4q_tok *tok, const cJSON *d, const char *name)
{
    if (!d || cJSON_IsNull(d)) return G4Q_OK;
    tok->has_decoder = 1;
    const cJSON *list = d;
    size_t count = 1;
    if (strcmp(type_of(d), "Sequence") == 0) {
        list = cJSON_GetObjectItemCaseSensitive(d, "decoders");
        if (!cJSON_IsArray(list))
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: decoder.decoders is not an array", name);
        count = (size_t)cJSON_GetArraySize(list);
        list = list->child;
    }
    tok->dec = calloc(count ? count : 1, sizeof *tok->dec);
    if (!tok->dec) return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", name);
    for (const cJSON *e = list; e && tok->n_dec < count; e = e->next) {
        G4Q_TRY(parse_dec_step(ctx, e, name, &tok->dec[tok->n_dec]));
        tok->n_dec++;
    }
    return G4Q_OK;
}

/* ---------------------------------------------------------------- load / free */

static g4q_status build(g4q_ctx *ctx, g4q_tok *tok, const cJSON *root, const char *name)
{
    if (!cJSON_IsObject(root)) return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: not a JSON object", name);
    G4Q_TRY(parse_model(ctx, tok, cJSON_GetObjectItemCaseSensitive(root, "model"), name));
    G4Q_TRY(parse_normalizer(ctx, tok, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), name));
    G4Q_TRY(parse_pre_tokenizer(ctx, tok, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"),
                                name));
    G4Q_TRY(parse_decoder(ctx, tok, cJSON_GetObjectItemCaseSensitive(root, "decoder"), name));
    G4Q_TRY(parse_added(ctx, tok, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), name));
    return build_added(ctx, tok, name);
}

g4q_status g4q_tok_load_json(g4q_ctx *ctx, const char *json, size_t len, const char *name,
                             g4q_tok **out)
{
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at ? (long)(at - json) : -1;
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: invalid JSON near byte %ld", name, off);
    }
    g4q_tok *tok = calloc(1, sizeof *tok);
    if (!tok) {
        cJSON_Delete(root);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", name);
    }
    g4q_status st = build(ctx, tok, root, name);
    cJSON_Delete(root);
    if (st != G4Q_OK) {
        g4q_tok_free(tok);
        return st;
    }
    *out = tok;
    return G4Q_OK;
}

void g4q_tok_free(g4q_tok *tok)
{
    if (!tok) return;
    free(tok->piece_off);
    free(tok->piece_len);
    free(tok->pieces);
    free(tok->flags);
    free(tok->added_of_id);
    free(tok->vocab_slot);
    free(tok->merge_slot);
    free(tok->rule);
    free(tok->bmp_id);
    for (size_t k = 0; k < tok->n_added; k++)
        free(tok->added[k].content);
    free(tok->added);
    g4q_tok_trie_free(&tok->raw_trie);
    g4q_tok_trie_free(&tok->norm_trie);
    for (size_t k = 0; k < tok->n_norm; k++) {
        free(tok->norm[k].from);
        free(tok->norm[k].to);
    }
    free(tok->norm);
    free(tok->split_pat);
    for (size_t k = 0; k < tok->n_dec; k++) {
        free(tok->dec[k].rep.from);
        free(tok->dec[k].rep.to);
    }
    free(tok->dec);
    free(tok);
}
