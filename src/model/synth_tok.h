/*
 * Tokenizer and prompt files of synthetic Gemma 4 checkpoints (docs/gemma4.md §6.1, §7):
 * tokenizer.json (BPE with byte fallback, the Gemma pipeline), tokenizer_config.json,
 * generation_config.json and chat_template.jinja.
 *
 * Vocabulary of size V (ids in order):
 *   0..255      control tokens at their Gemma 4 ids (<pad> 0, <eos> 1, <bos> 2, <unk> 3, <mask> 4,
 *               tool markers 46-52, <|think|> 98, channel 100/101, turn 105/106), newline runs
 *               "\n" x k at 106 + k (k = 1..31), <unusedN> in the gaps; all are added tokens
 *   256..511    byte-fallback tokens <0x00>..<0xFF>
 *   512..       "▁", printable ASCII and a few common non-ASCII characters, then merges learned
 *               by byte-pair training on a built-in weighted list of English words, then
 *               lowercase n-grams built left to right until the vocabulary is full
 *   top         the seven multimodal markers (g4q_synth_mm_ids_of); for V = 262144 they sit at
 *               their real ids and 255968..262143 are all added tokens, as in the Gemma vocab.
 * Everything is deterministic (no seed): the same V always gives the same bytes.
 */
#ifndef G4Q_MODEL_SYNTH_TOK_H
#define G4Q_MODEL_SYNTH_TOK_H

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes DIR/tokenizer.json for a vocabulary of `vocab` entries (>= 1024). */
g4q_status g4q_synth_tok_write_tokenizer(g4q_ctx *ctx, const char *dir, int vocab);

/* Writes DIR/tokenizer_config.json, DIR/generation_config.json and DIR/chat_template.jinja. */
g4q_status g4q_synth_tok_write_side_files(g4q_ctx *ctx, const char *dir, int vocab);

/* Number of files the two functions above write. */
#define G4Q_SYNTH_TOK_FILES 4

#ifdef __cplusplus
}
#endif
#endif
