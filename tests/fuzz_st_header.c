/*
 * libFuzzer target for the safetensors header parser: any byte string goes through
 * g4q_st_open_memory; on success every tensor's metadata is read and checked for consistency
 * (name lookup, byte counts, data pointers inside the image), so that a validation gap shows up
 * as a sanitizer report or an abort here.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_st_file *f = NULL;
    if (g4q_st_open_memory(&ctx, "fuzz.safetensors", data, size, &f) != G4Q_OK) {
        if (f != NULL || ctx.err[0] == '\0')
            abort(); /* an error must leave no handle and a message */
        return 0;
    }
    size_t n = g4q_st_count(f);
    const g4q_tensor *all = g4q_st_tensor(f, 0);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const g4q_tensor *t = g4q_st_tensor(f, i);
        if (t != &all[i] || g4q_st_find(f, t->name) != t)
            abort();
        if (t->ndim < 0 || t->ndim > G4Q_MAX_DIMS || (unsigned)t->dtype >= G4Q_DT_COUNT)
            abort();
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            numel *= (uint64_t)t->shape[d];
        if (numel != t->numel || t->nbytes != numel * g4q_dtype_size(t->dtype))
            abort();
        const uint8_t *p = t->data;
        if (p < data || t->file_offset > size || t->nbytes > size - t->file_offset ||
            p != data + t->file_offset)
            abort();
        /* Touch the first and last byte (ASan checks they lie in the input). */
        volatile uint8_t sink = 0;
        if (t->nbytes)
            sink ^= p[0] ^ p[t->nbytes - 1];
        (void)sink;
        total += t->nbytes;
    }
    if (n && all[n - 1].file_offset + all[n - 1].nbytes != size)
        abort();
    (void)total;
    for (size_t i = 0; i < g4q_st_metadata_count(f); i++) {
        const char *k = g4q_st_metadata_key(f, i);
        if (!k || !g4q_st_metadata(f, k))
            abort();
    }
    if (g4q_st_tensor(f, n) != NULL || strlen(g4q_st_path(f)) == 0)
        abort();
    g4q_st_close(f);
    return 0;
}
