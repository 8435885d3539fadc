/*
 * Calibration datasets: text -> token ids, the same ids for every tool.
 *
 * Dataset names (the recipe's calibration.dataset):
 *   builtin:NAME   the file NAME.txt of gemma4q's calib/ folder (calib/README.md), found at run
 *                  time: $G4Q_CALIB_DIR if set, else next to the executable (/proc/self/exe's
 *                  folder + "/../calib", "/../../calib", "/../share/gemma4q/calib"), the first
 *                  that holds NAME.txt. Not found is G4Q_ERR_NOT_FOUND listing where it looked.
 *   PATH.txt       plain UTF-8 text
 *   PATH.jsonl     one JSON object per line with a string member "text" (blank lines skipped)
 * Files above 1 GiB are refused.
 *
 * Documents. A .txt file is split into documents at blank lines: a document is a maximal run of
 * non-empty lines (a line holding only "\r" or spaces/tabs counts as empty), its lines joined with
 * "\n" (a trailing "\r" of each line removed). A .jsonl line's "text" is one document as is
 * (documents that are empty are skipped).
 *
 * Token stream. S = encode(doc_0) ++ SEP ++ encode(doc_1) ++ SEP ++ ... ++ encode(doc_n-1) ++ SEP,
 * where encode is the model's tokenizer.json (src/text/tokenizer.h, no BOS/EOS added) applied to
 * each document separately and SEP = encode("\n\n").
 *
 * Samples. With N = |S| and L = seq_len, L - 1 <= N is required (else G4Q_ERR_INVALID naming the
 * counts). Sample j (j = 0 .. samples-1) is [bos] ++ S[o_j .. o_j + L - 1), where
 *   z_j = splitmix64(seed + (j + 1) * 0x9E3779B97F4A7C15)   (all arithmetic mod 2^64)
 *   o_j = z_j mod (N - L + 2)
 * splitmix64(x): x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9; x = (x ^ (x >> 27)) * 0x94D049BB133111EB;
 * return x ^ (x >> 31). Windows may overlap and repeat; every sample is exactly L tokens, so there
 * is no padding, and every position (the <bos> included) is a real token.
 */
#ifndef G4Q_CALIB_DATASET_H
#define G4Q_CALIB_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"
#include "base/sha256.h"
#include "text/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_calib_data {
    int32_t *ids; /* owned: [samples, seq_len] row-major; ids[j * seq_len] is the bos id */
    int samples, seq_len;
    uint64_t seed;
    char name[256];                   /* the dataset as given ("builtin:default" or a path) */
    char path[4096];                  /* the file read */
    char text_sha256[G4Q_SHA256_HEX]; /* of the file's bytes */
    char ids_sha256[G4Q_SHA256_HEX];  /* of ids as int32 little-endian, samples * seq_len * 4 B */
    size_t n_docs;                    /* documents read */
    size_t stream_tokens;             /* N = |S| */
} g4q_calib_data;

/* The file a dataset name refers to, into path[n] (see above). Errors: NOT_FOUND (builtin file not
 * found, or the path does not exist), INVALID (an empty name or "builtin:" with a name holding
 * '/' or "."-leading). */
g4q_status g4q_calib_resolve(g4q_ctx *ctx, const char *dataset, char *path, size_t n);

/* Reads dataset, tokenizes it with tok and draws `samples` sequences of `seq_len` tokens with
 * `seed` as described above; bos is the id put at position 0 of each sample. samples >= 1,
 * seq_len >= 1, else G4Q_ERR_INVALID. On success *out owns ids (g4q_calib_data_free); on error
 * *out is zeroed. Errors name the file (and the line for .jsonl): NOT_FOUND, IO, FORMAT, INVALID
 * (too few tokens), NOMEM. */
g4q_status g4q_calib_load(g4q_ctx *ctx, const char *dataset, const g4q_tok *tok, int32_t bos,
                          int samples, int seq_len, uint64_t seed, g4q_calib_data *out);

void g4q_calib_data_free(g4q_calib_data *d); /* NULL is a no-op; zeroes *d */

/* Writes the ids as raw int32 little-endian [samples, seq_len] (no header) to path. */
g4q_status g4q_calib_dump(g4q_ctx *ctx, const g4q_calib_data *d, const char *path);

#ifdef __cplusplus
}
#endif
#endif
