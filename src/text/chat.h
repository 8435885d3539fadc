/*
 * Gemma 4 chat prompt (docs/gemma4.md §7.3) and stop tokens (§7.4).
 *
 * The rendered prompt is plain text that includes "<bos>" and the control tokens as text; encode it
 * with g4q_tok_encode, which matches them as added tokens (and never adds a BOS of its own).
 */
#ifndef G4Q_TEXT_CHAT_H
#define G4Q_TEXT_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_chat_opts {
    const char *system;        /* NULL or empty: no system text */
    const char *user;          /* the user message; required */
    int thinking;              /* 0 (default): thinking off; 1: "<|think|>" opens the system turn */
    int add_generation_prompt; /* 1: end with the opened model turn */
} g4q_chat_opts;

/* Renders one (optional system +) user turn into a malloc'd NUL-terminated string (*out_len bytes
 * without the NUL; the caller frees *out). The system and user texts are trimmed of surrounding
 * whitespace, as the template's `| trim` does:
 *   <bos>[<|turn>system\n[<|think|>]{system}<turn|>\n]<|turn>user\n{user}<turn|>\n
 *   [<|turn>model\n[<|channel>thought\n<channel|>]]
 * The system turn appears when there is system text or thinking is on. With thinking off the
 * generation prompt carries the empty thought block; with thinking on it is omitted. Whether
 * "<|think|>" is followed by "\n" differs between template revisions (gemma4.md §7.3 [U]); here it
 * is not. Errors: INVALID (user NULL), NOMEM. */
g4q_status g4q_chat_render(g4q_ctx *ctx, const g4q_chat_opts *opts, char **out, size_t *out_len);

/* Reads the stop token ids from generation_config.json: "eos_token_id" as an int or a list of
 * ints (Gemma 4: [1, 106, 50]). Writes at most cap ids to ids and their count to *n. Errors:
 * NOT_FOUND/IO (file), FORMAT (bad JSON, missing key, non-integer, negative, more than cap). */
g4q_status g4q_chat_stop_ids(g4q_ctx *ctx, const char *generation_config_path, int32_t *ids,
                             size_t cap, size_t *n);

#ifdef __cplusplus
}
#endif
#endif
