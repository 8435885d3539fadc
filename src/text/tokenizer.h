/*
 * Tokenizer for Hugging Face `tokenizer.json` files (the `tokenizers` library format), as shipped
 * with Gemma 3 and Gemma 4. See docs/gemma4.md §7.1 for the pipeline.
 *
 * Supported (anything else in the file is refused at load time with G4Q_ERR_UNSUPPORTED, naming
 * the key, so that a file is never silently mis-tokenized):
 *   model         BPE: vocab, merges as ["a","b"] pairs or "a b" strings, byte_fallback, fuse_unk,
 *                 unk_token, ignore_merges; dropout null/0, no continuing_subword_prefix or
 *                 end_of_word_suffix.
 *   added_tokens  matched leftmost-longest before BPE; normalized:false entries on the raw text,
 *                 normalized:true entries on the normalized text; lstrip/rstrip honoured
 *                 (Unicode White_Space); single_word:true is refused.
 *   normalizer    null, Replace with a String pattern, or a Sequence of those.
 *   pre_tokenizer null, or Split with a String pattern, behavior MergedWithPrevious, invert false.
 *                 Gemma's Split(" ") runs after Replace(" " -> "▁") and so never finds a space: it
 *                 is a no-op there and each segment between added tokens is one BPE word.
 *   post_processor ignored: encode never adds BOS/EOS (the chat template writes <bos> as text).
 *   decoder       null (pieces joined with " "), Replace (String pattern), ByteFallback, Fuse,
 *                 Strip, or a Sequence of those.
 *
 * Invalid UTF-8 in the input of encode: each byte that is not part of a well-formed UTF-8
 * sequence is its own symbol, which is never in the vocab, so with byte_fallback it becomes its
 * <0xHH> token (without byte_fallback it becomes unk). HF's Python API cannot take such input (it
 * takes str); on well-formed input both agree.
 *
 * A loaded tokenizer is read-only: encode, decode and the lookups may run concurrently from several
 * threads on the same g4q_tok.
 */
#ifndef G4Q_TEXT_TOKENIZER_H
#define G4Q_TEXT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_tok g4q_tok;

/* A growable list of token ids. Zero-initialise it; encode appends; free with g4q_tok_ids_free. */
typedef struct g4q_tok_ids {
    int32_t *ids; /* owned; n valid entries, cap allocated */
    size_t n;
    size_t cap;
} g4q_tok_ids;

void g4q_tok_ids_free(g4q_tok_ids *ids);

/* Loads a tokenizer.json file, plain or gzip-compressed (detected by its magic bytes, decompressed
 * with libarchive). Files above 1 GiB are refused. On success *out owns everything; free with
 * g4q_tok_free. Errors: NOT_FOUND/IO (file), FORMAT (bad JSON or inconsistent vocab/merges, naming
 * the item), UNSUPPORTED (a pipeline component this implementation does not have). */
g4q_status g4q_tok_load(g4q_ctx *ctx, const char *path, g4q_tok **out);

/* Same from a JSON text in memory (not NUL-terminated necessarily; len bytes). name is used in
 * error messages. */
g4q_status g4q_tok_load_json(g4q_ctx *ctx, const char *json, size_t len, const char *name,
                             g4q_tok **out);

/* Releases a tokenizer; NULL is fine. */
void g4q_tok_free(g4q_tok *tok);

/* Encodes len bytes of text (no NUL needed) and appends the ids to *out. Never adds BOS/EOS;
 * special-token strings in the text (e.g. "<bos>") become their ids. Errors: NOMEM only. */
g4q_status g4q_tok_encode(g4q_ctx *ctx, const g4q_tok *tok, const char *text, size_t len,
                          g4q_tok_ids *out);

enum {
    G4Q_TOK_DECODE_SKIP_SPECIAL =
        1u, /* drop added tokens marked special (HF skip_special_tokens) */
};

/* Decodes n ids into a malloc'd NUL-terminated UTF-8 string (*out, *out_len bytes without the NUL;
 * the caller frees it) through the file's decoder: for Gemma, ▁ -> space, runs of <0xHH> tokens to
 * bytes (a run that is not valid UTF-8 gives one U+FFFD per byte, as HF does), concatenation.
 * flags: G4Q_TOK_DECODE_*. Errors: INVALID for an id that has no token, NOMEM. */
g4q_status g4q_tok_decode(g4q_ctx *ctx, const g4q_tok *tok, const int32_t *ids, size_t n,
                          unsigned flags, char **out, size_t *out_len);

/* Id of a token string (added tokens first, then the model vocab), or -1. */
int32_t g4q_tok_token_to_id(const g4q_tok *tok, const char *token);

/* The token string of an id (NUL-terminated, owned by tok, valid until g4q_tok_free), or NULL. */
const char *g4q_tok_id_to_token(const g4q_tok *tok, int32_t id);

/* Number of ids: 1 + the largest id of the vocab and the added tokens (262145 for Gemma 3, whose
 * added "<image_soft_token>" = 262144 lies past its 262144-entry model vocab). */
int32_t g4q_tok_vocab_size(const g4q_tok *tok);
/* 1 + the largest id of the model vocab alone (262144 for Gemma 3). */
int32_t g4q_tok_model_vocab_size(const g4q_tok *tok);

/* Id of an added token marked special with exactly this content, or -1 (e.g. "<eos>" -> 1). */
int32_t g4q_tok_special_id(const g4q_tok *tok, const char *token);
/* 1 if id is an added token marked special. */
int g4q_tok_is_special(const g4q_tok *tok, int32_t id);

#ifdef __cplusplus
}
#endif
#endif
