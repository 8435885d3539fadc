/*
 * libFuzzer target for the tokenizer on the real Gemma 3 tokenizer.json (262,144 pieces, 6,415
 * added tokens; $G4Q_SHARED_DIR/data/gemma3-tokenizer.json.gz, loaded once). The first byte of an
 * input picks what the rest is:
 *   bit 0 clear  text: encode must give ids below the vocab size, decode of those ids must
 *                succeed and give valid UTF-8, and well-formed UTF-8 without U+2581 (which the
 *                decoder turns into a space, as HF does) must come back byte for byte;
 *   bit 0 set    ids (little-endian 32-bit words, taken modulo vocab size + 8, so that a few do
 *                not exist; bit 1: skip special tokens): decode must fail with a message exactly
 *                when some id does not exist, and otherwise give valid UTF-8 of the length it
 *                reports (invalid byte runs become U+FFFD).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_tokenizer_load.h"
#include "io/safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static g4q_tok *tok;
static int32_t vocab;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    tok = fuzz_tokenizer_load("fuzz_tokenizer");
    vocab = g4q_tok_vocab_size(tok);
    return 0;
}

/* Whether s[0 .. n) is well-formed UTF-8 (io's validator, independent of the tokenizer's). */
static int utf8_valid(const void *s, size_t n)
{
    return g4q_st_utf8_check(s, n) == n;
}

/* Decodes ids and checks the contract; returns the text (caller frees) or NULL on an error. */
static char *decode_checked(const int32_t *ids, size_t n, unsigned flags, size_t *len)
{
    int valid = 1;
    for (size_t i = 0; i < n; i++)
        if (g4q_tok_id_to_token(tok, ids[i]) == NULL) valid = 0;
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char *out = NULL;
    *len = 0;
    const g4q_status st = g4q_tok_decode(&ctx, tok, ids, n, flags, &out, len);
    if (st != G4Q_OK) {
        if (valid || st != G4Q_ERR_INVALID || ctx.err[0] == '\0') abort();
        free(out);
        return NULL;
    }
    if (!valid || out == NULL || out[*len] != '\0' || !utf8_valid(out, *len)) abort();
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    const uint8_t mode = data[0];
    data++, size--;
    if (mode & 1) {
        const size_t n = size / 4;
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        if (ids == NULL) return 0;
        for (size_t i = 0; i < n; i++) {
            const uint32_t w = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 |
                               (uint32_t)data[4 * i + 2] << 16 | (uint32_t)data[4 * i + 3] << 24;
            ids[i] = (int32_t)(w % ((uint32_t)vocab + 8u));
        }
        size_t len;
        free(decode_checked(ids, n, mode & 2 ? G4Q_TOK_DECODE_SKIP_SPECIAL : 0, &len));
        free(ids);
        return 0;
    }
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_tok_ids ids = {0};
    if (g4q_tok_encode(&ctx, tok, (const char *)data, size, &ids) != G4Q_OK) abort();
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] < 0 || ids.ids[i] >= vocab) abort();
    if (size > 0 && ids.n == 0) abort();
    size_t len;
    char *text = decode_checked(ids.ids, ids.n, 0, &len);
    if (text == NULL) abort(); /* encode's ids all exist */
    int has_2581 = 0;          /* U+2581 LOWER ONE EIGHTH BLOCK, E2 96 81 */
    for (size_t i = 0; i + 2 < size; i++)
        has_2581 |= data[i] == 0xE2 && data[i + 1] == 0x96 && data[i + 2] == 0x81;
    if (utf8_valid(data, size) && !has_2581 && (len != size || memcmp(text, data, size) != 0))
        abort(); /* well-formed text must come back unchanged */
    free(text);
    g4q_tok_ids_free(&ids);
    return 0;
}
