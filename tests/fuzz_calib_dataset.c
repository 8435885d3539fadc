/*
 * libFuzzer target for calibration datasets (calib/dataset.h) with the real Gemma 3 tokenizer
 * ($G4Q_SHARED_DIR/data/gemma3-tokenizer.json.gz, loaded once). The first byte of an input picks
 * the file type (bit 0: .jsonl, else .txt) and the sample length (bits 1-4: seq_len 1 to 16); the
 * rest is the file, written to a private temporary folder and loaded as 3 samples with seed 7.
 * An error must leave no ids and a message. A load that succeeds must give every sample <bos>
 * first and ids below the vocab size, a stream long enough for a sample, and, for .jsonl, one
 * document per line whose "text" (read again with cJSON) is a non-empty string.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "calib/dataset.h"
#include "fuzz_tokenizer_load.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BOS 2
#define SAMPLES 3

static g4q_tok *tok;
static int32_t vocab;
static char dir[64] = "/tmp/g4q-fuzz-calib-XXXXXX";
static char txt_path[128], jsonl_path[128];

static void remove_files(void)
{
    unlink(txt_path);
    unlink(jsonl_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    tok = fuzz_tokenizer_load("fuzz_calib_dataset");
    vocab = g4q_tok_vocab_size(tok);
    if (mkdtemp(dir) == NULL) {
        perror("fuzz_calib_dataset: mkdtemp");
        abort();
    }
    snprintf(txt_path, sizeof txt_path, "%s/d.txt", dir);
    snprintf(jsonl_path, sizeof jsonl_path, "%s/d.jsonl", dir);
    atexit(remove_files);
    return 0;
}

/* Documents of a .jsonl file as the contract defines them, counted independently of the loader:
 * lines that are not blank (only spaces, tabs, "\r"), each an object whose "text" is a string;
 * those with an empty text (up to a NUL) count for nothing. -1 when some line is malformed. */
static long jsonl_docs(const char *text, size_t len)
{
    long n = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        const size_t end = nl ? (size_t)(nl - text) : len;
        size_t i = pos;
        while (i < end && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r'))
            i++;
        if (i < end) {
            cJSON *o = cJSON_ParseWithLength(text + pos, end - pos);
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
            const int ok = cJSON_IsString(t);
            n += ok && t->valuestring[0] != '\0';
            cJSON_Delete(o);
            if (!ok) return -1;
        }
        pos = end + 1;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const int jsonl = data[0] & 1, seq_len = 1 + ((data[0] >> 1) & 15);
    const char *path = jsonl ? jsonl_path : txt_path;
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data + 1, 1, size - 1, f) != size - 1 || fclose(f) != 0) {
        perror(path);
        abort();
    }
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_calib_data d;
    const g4q_status st = g4q_calib_load(&ctx, path, tok, BOS, SAMPLES, seq_len, 7, &d);
    const long docs = jsonl ? jsonl_docs((const char *)data + 1, size - 1) : 0;
    if (st != G4Q_OK) {
        if (d.ids != NULL || ctx.err[0] == '\0') abort();        /* no ids, and a message */
        if (jsonl && docs >= 0 && st == G4Q_ERR_FORMAT) abort(); /* well-formed, yet refused */
        return 0;
    }
    if (d.samples != SAMPLES || d.seq_len != seq_len || d.stream_tokens + 1 < (size_t)seq_len)
        abort();
    if (jsonl && docs != (long)d.n_docs) abort();
    for (int j = 0; j < SAMPLES; j++) {
        const int32_t *row = d.ids + (size_t)j * (size_t)seq_len;
        if (row[0] != BOS) abort();
        for (int i = 1; i < seq_len; i++)
            if (row[i] < 0 || row[i] >= vocab) abort();
    }
    g4q_calib_data_free(&d);
    return 0;
}
