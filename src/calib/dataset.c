/* Calibration datasets (contract and the exact sampling rule in dataset.h). */
#include "calib/dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/sys.h"

#define MAX_FILE_BYTES (1u << 30)

static uint64_t splitmix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

#define CALIB_DIRS_MAX 5

/* Candidate calib/ folders for builtin names, in search order; returns how many: $G4Q_CALIB_DIR,
 * folders relative to the executable (build tree, install tree), then the source tree the library
 * was built from (G4Q_BUILTIN_CALIB_DIR, set by CMake), for build folders outside the source. */
static int calib_dirs(char dirs[CALIB_DIRS_MAX][4096])
{
    int n = 0;
    const char *env = getenv("G4Q_CALIB_DIR");
    if (env && env[0])
        snprintf(dirs[n++], 4096, "%s", env);
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            static const char *const rel[] = {"/../calib", "/../../calib", "/../share/gemma4q/calib"};
            for (size_t i = 0; i < sizeof rel / sizeof *rel; i++)
                snprintf(dirs[n++], 4096, "%.4000s%s", exe, rel[i]);
        }
    }
#ifdef G4Q_BUILTIN_CALIB_DIR
    snprintf(dirs[n++], 4096, "%s", G4Q_BUILTIN_CALIB_DIR);
#endif
    return n;
}

g4q_status g4q_calib_resolve(g4q_ctx *ctx, const char *dataset, char *path, size_t n)
{
    if (!dataset || !dataset[0])
        return g4q_fail(ctx, G4Q_ERR_INVALID, "calibration dataset: empty name");
    if (strncmp(dataset, "builtin:", 8) != 0) {
        if (!g4q_path_exists(dataset))
            return g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "calibration dataset %s: no such file",
                            dataset);
        if ((size_t)snprintf(path, n, "%s", dataset) >= n)
            return g4q_fail(ctx, G4Q_ERR_INVALID, "calibration dataset %s: path too long",
                            dataset);
        return G4Q_OK;
    }
    const char *name = dataset + 8;
    if (!name[0] || name[0] == '.' || strchr(name, '/'))
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "calibration dataset '%s': expected builtin:NAME with a plain name",
                        dataset);
    char dirs[CALIB_DIRS_MAX][4096], tried[1536] = "";
    int nd = calib_dirs(dirs);
    for (int i = 0; i < nd; i++) {
        char file[4096];
        if (snprintf(file, sizeof file, "%.3900s/%.150s.txt", dirs[i], name) >= (int)sizeof file)
            continue;
        if (g4q_path_exists(file)) {
            if ((size_t)snprintf(path, n, "%s", file) >= n)
                return g4q_fail(ctx, G4Q_ERR_INVALID, "%s: path too long", file);
            return G4Q_OK;
        }
        size_t used = strlen(tried);
        snprintf(tried + used, sizeof tried - used, "%s%.300s", used ? ", " : "", file);
    }
    return g4q_fail(ctx, G4Q_ERR_NOT_FOUND,
                    "calibration dataset '%s' not found (looked for %s)\nhint: set G4Q_CALIB_DIR "
                    "to gemma4q's calib/ folder, or give a .txt/.jsonl path",
                    dataset, tried[0] ? tried : "nothing: no G4Q_CALIB_DIR, no /proc/self/exe");
}

/* Appends encode(text[0..len)) ++ sep to the stream. */
static g4q_status add_doc(g4q_ctx *ctx, const g4q_tok *tok, const char *text, size_t len,
                          const g4q_tok_ids *sep, g4q_tok_ids *stream, size_t *n_docs)
{
    if (len == 0)
        return G4Q_OK;
    G4Q_TRY(g4q_tok_encode(ctx, tok, text, len, stream));
    for (size_t i = 0; i < sep->n; i++) {
        if (stream->n == stream->cap) {
            size_t cap = stream->cap ? 2 * stream->cap : 1024;
            int32_t *p = realloc(stream->ids, cap * sizeof *p);
            if (!p)
                return g4q_fail(ctx, G4Q_ERR_NOMEM, "calibration: out of memory");
            stream->ids = p, stream->cap = cap;
        }
        stream->ids[stream->n++] = sep->ids[i];
    }
    (*n_docs)++;
    return G4Q_OK;
}

static int blank_line(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

/* .txt: documents are runs of non-blank lines joined with "\n" (trailing "\r" dropped). */
static g4q_status stream_txt(g4q_ctx *ctx, const g4q_tok *tok, const char *text, size_t len,
                             const g4q_tok_ids *sep, g4q_tok_ids *stream, size_t *n_docs)
{
    char *doc = malloc(len + 1);
    if (!doc)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "calibration: out of memory");
    size_t dn = 0, pos = 0;
    g4q_status st = G4Q_OK;
    while (pos < len && st == G4Q_OK) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len, ll = end - pos;
        if (blank_line(text + pos, ll)) {
            st = add_doc(ctx, tok, doc, dn, sep, stream, n_docs);
            dn = 0;
        } else {
            if (ll && text[pos + ll - 1] == '\r')
                ll--;
            if (dn)
                doc[dn++] = '\n';
            memcpy(doc + dn, text + pos, ll);
            dn += ll;
        }
        pos = end + 1;
    }
    if (st == G4Q_OK)
        st = add_doc(ctx, tok, doc, dn, sep, stream, n_docs);
    free(doc);
    return st;
}

/* .jsonl: one {"text": "..."} per line. */
static g4q_status stream_jsonl(g4q_ctx *ctx, const char *path, const g4q_tok *tok, char *text,
                               size_t len, const g4q_tok_ids *sep, g4q_tok_ids *stream,
                               size_t *n_docs)
{
    size_t pos = 0;
    int line = 0;
    while (pos < len) {
        char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        line++;
        if (!blank_line(text + pos, end - pos)) {
            cJSON *o = cJSON_ParseWithLength(text + pos, end - pos);
            const cJSON *t = o ? cJSON_GetObjectItemCaseSensitive(o, "text") : NULL;
            if (!cJSON_IsString(t)) {
                cJSON_Delete(o);
                return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s:%d: expected a JSON object with a "
                                "string \"text\"", path, line);
            }
            g4q_status st = add_doc(ctx, tok, t->valuestring, strlen(t->valuestring), sep,
                                    stream, n_docs);
            cJSON_Delete(o);
            G4Q_TRY(st);
        }
        pos = end + 1;
    }
    return G4Q_OK;
}

static void ids_sha256(const int32_t *ids, size_t n, char hex[G4Q_SHA256_HEX])
{
    g4q_sha256 h;
    g4q_sha256_init(&h);
    uint8_t buf[4096];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        for (int b = 0; b < 4; b++)
            buf[k++] = (uint8_t)(v >> (8 * b));
        if (k == sizeof buf) {
            g4q_sha256_update(&h, buf, k);
            k = 0;
        }
    }
    g4q_sha256_update(&h, buf, k);
    uint8_t digest[G4Q_SHA256_BYTES];
    g4q_sha256_final(&h, digest, hex);
}

g4q_status g4q_calib_load(g4q_ctx *ctx, const char *dataset, const g4q_tok *tok, int32_t bos,
                          int samples, int seq_len, uint64_t seed, g4q_calib_data *out)
{
    memset(out, 0, sizeof *out);
    if (samples < 1 || seq_len < 1)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "calibration: %d samples of %d tokens", samples,
                        seq_len);
    G4Q_TRY(g4q_calib_resolve(ctx, dataset, out->path, sizeof out->path));
    snprintf(out->name, sizeof out->name, "%s", dataset);
    out->samples = samples, out->seq_len = seq_len, out->seed = seed;
    char *text = NULL;
    size_t len = 0;
    g4q_tok_ids sep = {0}, stream = {0};
    g4q_status st = g4q_read_file(ctx, out->path, MAX_FILE_BYTES, &text, &len);
    if (st == G4Q_OK) {
        g4q_sha256_hex(text, len, out->text_sha256);
        st = g4q_tok_encode(ctx, tok, "\n\n", 2, &sep);
    }
    if (st == G4Q_OK && ends_with(out->path, ".jsonl"))
        st = stream_jsonl(ctx, out->path, tok, text, len, &sep, &stream, &out->n_docs);
    else if (st == G4Q_OK)
        st = stream_txt(ctx, tok, text, len, &sep, &stream, &out->n_docs);
    const size_t L = (size_t)seq_len, N = stream.n;
    out->stream_tokens = N;
    if (st == G4Q_OK && N + 1 < L)
        st = g4q_fail(ctx, G4Q_ERR_INVALID,
                      "%s: %zu tokens in %zu documents, fewer than the %zu a sample of seq_len %d "
                      "needs after <bos>", out->path, N, out->n_docs, L - 1, seq_len);
    if (st == G4Q_OK) {
        out->ids = malloc((size_t)samples * L * sizeof *out->ids);
        if (!out->ids)
            st = g4q_fail(ctx, G4Q_ERR_NOMEM, "calibration: %d x %d ids", samples, seq_len);
    }
    for (int j = 0; st == G4Q_OK && j < samples; j++) {
        uint64_t z = splitmix64(seed + (uint64_t)(j + 1) * 0x9E3779B97F4A7C15ull);
        size_t o = (size_t)(z % (uint64_t)(N - L + 2));
        int32_t *row = out->ids + (size_t)j * L;
        row[0] = bos;
        if (L > 1)
            memcpy(row + 1, stream.ids + o, (L - 1) * sizeof *row);
    }
    if (st == G4Q_OK)
        ids_sha256(out->ids, (size_t)samples * L, out->ids_sha256);
    free(text);
    g4q_tok_ids_free(&sep);
    g4q_tok_ids_free(&stream);
    if (st != G4Q_OK)
        g4q_calib_data_free(out);
    return st;
}

void g4q_calib_data_free(g4q_calib_data *d)
{
    if (!d)
        return;
    free(d->ids);
    memset(d, 0, sizeof *d);
}

g4q_status g4q_calib_dump(g4q_ctx *ctx, const g4q_calib_data *d, const char *path)
{
    size_t n = (size_t)d->samples * (size_t)d->seq_len;
    uint8_t *buf = malloc(n ? n * 4 : 1);
    if (!buf)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++)
            buf[4 * i + (size_t)b] = (uint8_t)((uint32_t)d->ids[i] >> (8 * b));
    g4q_status st = g4q_write_file(ctx, path, buf, n * 4);
    free(buf);
    return st;
}
