/*
 * Internals of the tokenizer (src/text/tokenizer.h), shared by tokenizer.c (loading),
 * tok_encode.c (added tokens, normalizer, pre-tokenizer, BPE) and tok_decode.c (decoder, lookups).
 * Not part of the library's public interface.
 */
#ifndef G4Q_TEXT_TOK_IMPL_H
#define G4Q_TEXT_TOK_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

/* A literal replacement (normalizer Replace, decoder Replace): every non-overlapping occurrence of
 * from, scanned left to right, becomes to. from is never empty. Both owned. */
typedef struct g4q_tok_replace {
    char *from;
    size_t from_len;
    char *to;
    size_t to_len;
} g4q_tok_replace;

typedef enum {
    G4Q_TOK_DEC_REPLACE,
    G4Q_TOK_DEC_BYTE_FALLBACK,
    G4Q_TOK_DEC_FUSE,
    G4Q_TOK_DEC_STRIP,
} g4q_tok_dec_kind;

typedef struct g4q_tok_dec_step {
    g4q_tok_dec_kind kind;
    g4q_tok_replace rep; /* REPLACE */
    uint32_t strip_cp;   /* STRIP: the code point removed */
    int strip_start;     /* STRIP: at most this many from the start of each piece */
    int strip_stop;      /* STRIP: at most this many from the end of each piece */
} g4q_tok_dec_step;

/* One entry of added_tokens. content is owned, NUL-terminated, len bytes. */
typedef struct g4q_tok_added {
    int32_t id;
    uint8_t special, normalized, lstrip, rstrip;
    char *content;
    size_t len;
} g4q_tok_added;

/* A byte trie over added-token contents. Node 0 is the root; term[node] is the index into
 * g4q_tok.added of the token ending there, or -1. Edges live in one open-addressing table keyed by
 * (node << 8 | byte) + 1 (0 = empty slot). */
typedef struct g4q_tok_trie {
    int32_t root[256]; /* children of the root by byte (-1 none), valid once n_nodes > 0 */
    int32_t *term;
    int32_t n_nodes, cap_nodes;
    uint64_t *edge_key;
    int32_t *edge_child;
    size_t edge_mask; /* table size - 1 (a power of two minus one); 0 when no table */
    size_t n_edges;
} g4q_tok_trie;

typedef struct g4q_tok_merge_slot {
    uint64_t key;
    uint32_t rank;
    int32_t merged;
} g4q_tok_merge_slot;

typedef struct g4q_tok_merge_rule {
    int32_t a, b, merged;
} g4q_tok_merge_rule;

/* Per-id flags. */
enum {
    G4Q_TOKF_MODEL = 1,   /* the id is in the model vocab */
    G4Q_TOKF_ADDED = 2,   /* the id is an added token */
    G4Q_TOKF_SPECIAL = 4, /* the added token is special */
};

struct g4q_tok {
    int32_t n_ids;       /* 1 + largest id anywhere */
    int32_t model_n_ids; /* 1 + largest model-vocab id */
    size_t model_count;  /* entries in the model vocab */

    /* Model vocab: piece of id i is pieces + piece_off[i], piece_len[i] bytes, NUL-terminated;
     * piece_len[i] == UINT32_MAX when id i is not in the model vocab. */
    uint32_t *piece_off;
    uint32_t *piece_len;
    char *pieces;
    size_t pieces_len;
    uint8_t *flags;       /* [n_ids] G4Q_TOKF_* */
    int32_t *added_of_id; /* [n_ids] index into added, or -1 */
    int32_t *vocab_slot;  /* hash of model pieces -> id; -1 empty; vocab_mask + 1 slots */
    size_t vocab_mask;

    /* Merges: hash slots keyed by (a << 32 | b) + 1 (0 = empty) -> rank (order in the file) and
     * merged id, one 16-byte slot per probe; and the same by rank (rule[rank]), which the merge
     * loop uses to check that a queued pair is still current without hashing. */
    g4q_tok_merge_slot *merge_slot;
    size_t merge_mask;
    g4q_tok_merge_rule *rule; /* [n_rules] */
    size_t n_rules;
    size_t n_merges; /* distinct pairs */

    /* Model-vocab id of each BMP code point as a one-character piece (-1 none): the initial BPE
     * symbols without hashing. [0x10000] */
    int32_t *bmp_id;

    int32_t byte_id[256]; /* id of "<0xHH>", or -1 */
    int32_t unk_id;       /* -1 when unk_token is null */
    int byte_fallback, fuse_unk, ignore_merges;

    g4q_tok_added *added;
    size_t n_added;
    g4q_tok_trie raw_trie;  /* normalized:false entries, matched on the raw text */
    g4q_tok_trie norm_trie; /* normalized:true entries (content normalized), on normalized text */

    g4q_tok_replace *norm; /* normalizer: replacements applied in order */
    size_t n_norm;

    char *split_pat; /* pre-tokenizer Split(String, MergedWithPrevious) pattern, or NULL */
    size_t split_len;

    int has_decoder;
    g4q_tok_dec_step *dec;
    size_t n_dec;
};

/* Length of the well-formed UTF-8 sequence at s (n >= 1 bytes available), or 1 for a byte that
 * does not start one (so that invalid input is handled byte by byte). */
size_t g4q_tok_utf8_unit(const unsigned char *s, size_t n);

uint64_t g4q_tok_hash_bytes(const void *p, size_t n);
uint64_t g4q_tok_hash_u64(uint64_t x);

/* Model-vocab id of the piece s (n bytes), or -1. */
int32_t g4q_tok_vocab_find(const g4q_tok *tok, const char *s, size_t n);

/* Merge of the pair (a, b): returns 1 and fills rank and merged id, or 0. */
int g4q_tok_merge_find(const g4q_tok *tok, int32_t a, int32_t b, uint32_t *rank, int32_t *merged);

/* Child of node along byte c in the trie, or -1. */
int32_t g4q_tok_trie_child(const g4q_tok_trie *t, int32_t node, unsigned char c);

/* Adds a token; returns NOMEM or OK. A second token with the same content replaces the first. */
g4q_status g4q_tok_trie_add(g4q_ctx *ctx, g4q_tok_trie *t, const char *s, size_t n, int32_t idx);
void g4q_tok_trie_free(g4q_tok_trie *t);

/* Applies the normalizer replacements to s (n bytes); *out is malloc'd (NUL-terminated). */
g4q_status g4q_tok_normalize(g4q_ctx *ctx, const g4q_tok *tok, const char *s, size_t n, char **out,
                             size_t *out_len);

/* Literal replace of r in s; *out is malloc'd (NUL-terminated). */
g4q_status g4q_tok_replace_all(g4q_ctx *ctx, const g4q_tok_replace *r, const char *s, size_t n,
                               char **out, size_t *out_len);

#endif
