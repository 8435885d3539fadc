/*
 * libFuzzer target for sharded checkpoint folders: the input is a model.safetensors.index.json
 * written next to fixed shards in a private temporary folder, which g4q_ckpt_open then opens.
 * The shards (made once, by hand, so that the fuzzer does not rely on the writer it could be
 * checking): s1.safetensors {a, b}, s2.safetensors {c}, x.safetensors {d} and bad.safetensors
 * (not a safetensors file). An error must leave no checkpoint and a message. A checkpoint that
 * opens must be exactly what the index says, checked against the index read again with cJSON:
 * one tensor per weight_map key, found by name in the shard the key names, the shards distinct
 * and in sorted file-name order, and data_bytes the sum of the tensors' bytes.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64] = "/tmp/g4q-fuzz-ckpt-XXXXXX";

/* Writes dir/name holding `bytes` (n bytes); aborts on failure (no folder, no test). */
static void put_file(const char *name, const void *bytes, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(bytes, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

/* A safetensors file of F32 vectors: header (8-byte length, JSON padded to a multiple of 8) then
 * the data, tensor i holding len[i] floats. */
static void put_shard(const char *name, int n, const char *const *names, const int *len)
{
    char json[512], *p = json;
    size_t off = 0, cap = sizeof json;
    p += snprintf(p, cap, "{");
    for (int i = 0; i < n; i++) {
        const size_t bytes = 4u * (size_t)len[i];
        p += snprintf(p, cap - (size_t)(p - json),
                      "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],"
                      "\"data_offsets\":[%zu,%zu]}",
                      i ? "," : "", names[i], len[i], off, off + bytes);
        off += bytes;
    }
    p += snprintf(p, cap - (size_t)(p - json), "}");
    size_t hlen = (size_t)(p - json);
    while (hlen % 8 != 0)
        json[hlen++] = ' ';
    uint8_t file[1024] = {0};
    for (int b = 0; b < 8; b++)
        file[b] = (uint8_t)((uint64_t)hlen >> (8 * b));
    memcpy(file + 8, json, hlen);
    for (size_t i = 0; i < off; i++)
        file[8 + hlen + i] = (uint8_t)(i * 37u + 1u);
    put_file(name, file, 8 + hlen + off);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_dir(void)
{
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (mkdtemp(dir) == NULL) {
        perror("fuzz_ckpt_index: mkdtemp");
        abort();
    }
    atexit(remove_dir);
    put_shard("s1.safetensors", 2, (const char *const[]){"a", "b"}, (const int[]){3, 2});
    put_shard("s2.safetensors", 1, (const char *const[]){"c"}, (const int[]){5});
    put_shard("x.safetensors", 1, (const char *const[]){"d"}, (const int[]){1});
    put_file("bad.safetensors", "not a safetensors file", 22);
    return 0;
}

/* The checkpoint against the index text it was opened from; aborts on any disagreement. */
static void check_ckpt(const g4q_ckpt *c, const uint8_t *data, size_t size)
{
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm) || (size_t)cJSON_GetArraySize(wm) != g4q_ckpt_count(c)) abort();
    const cJSON *e;
    cJSON_ArrayForEach(e, wm)
    {
        const g4q_tensor *t = g4q_ckpt_find(c, e->string);
        if (t == NULL || strcmp(t->name, e->string) != 0 || t->file < 0 ||
            (size_t)t->file >= g4q_ckpt_file_count(c))
            abort();
        const char *path = g4q_st_path(g4q_ckpt_file(c, (size_t)t->file));
        const char *base = strrchr(path, '/');
        if (!cJSON_IsString(e) || base == NULL || strcmp(base + 1, e->valuestring) != 0) abort();
    }
    cJSON_Delete(root);
    uint64_t total = 0;
    for (size_t i = 0; i < g4q_ckpt_count(c); i++)
        total += g4q_ckpt_tensor(c, i)->nbytes;
    if (total != g4q_ckpt_data_bytes(c)) abort();
    for (size_t s = 1; s < g4q_ckpt_file_count(c); s++)
        if (strcmp(g4q_st_path(g4q_ckpt_file(c, s - 1)), g4q_st_path(g4q_ckpt_file(c, s))) >= 0)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    put_file("model.safetensors.index.json", data, size);
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_ckpt *c = NULL;
    if (g4q_ckpt_open(&ctx, dir, &c) != G4Q_OK) {
        if (c != NULL || ctx.err[0] == '\0') abort(); /* no handle, and a message */
        return 0;
    }
    check_ckpt(c, data, size);
    g4q_ckpt_close(c);
    return 0;
}
