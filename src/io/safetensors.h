/*
 * safetensors: strict reading by mmap (single files, and sharded checkpoints with
 * model.safetensors.index.json) and streamed writing.
 *
 * File layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
 * data; offsets are relative to the end of the header.
 *
 * Reading validates everything before any tensor is handed out: the header length is sane
 * (2 <= N <= G4Q_ST_MAX_HEADER and within the file), the JSON is valid UTF-8 (no overlongs,
 * surrogates or code points past U+10FFFF; no raw control characters) and well formed, its top
 * level is an object, each entry is an object with exactly the keys dtype, shape and data_offsets,
 * "__metadata__" (optional) is an object of string values with distinct keys, each entry has a
 * known dtype, a shape of at most G4Q_MAX_DIMS non-negative dims whose product does not overflow,
 * end - begin equals numel x dtype size, the data ranges lie inside the file, are sorted,
 * contiguous from 0 and non-overlapping, the data end exactly at the end of the file (trailing
 * bytes are an error), and no name appears twice. Shape dims and offsets must be integers in
 * [0, 2^53] (JSON numbers are doubles). Every failure is an error naming the file (and the
 * tensor where there is one): G4Q_ERR_FORMAT for malformed files, G4Q_ERR_UNSUPPORTED for an
 * unknown dtype or more than G4Q_MAX_DIMS dims, G4Q_ERR_NOT_FOUND for a missing file, G4Q_ERR_IO
 * for system errors.
 *
 * Tensor arrays: g4q_st_tensor(f, 0) and g4q_ckpt_tensor(c, 0) point at ONE contiguous array of
 * g4q_st_count(f) / g4q_ckpt_count(c) elements, so callers may index from the first element.
 */
#ifndef G4Q_IO_SAFETENSORS_H
#define G4Q_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"
#include "io/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

#define G4Q_MAX_DIMS 8
#define G4Q_ST_MAX_HEADER (100u << 20) /* 100 MB of header JSON at most */

typedef struct g4q_tensor {
    const char *name; /* owned by the file/checkpoint that returned it */
    g4q_dtype dtype;
    int ndim; /* 0 for a scalar ([] shape) */
    int64_t shape[G4Q_MAX_DIMS];
    uint64_t numel;       /* product of shape (1 for a scalar) */
    uint64_t nbytes;      /* numel * dtype size */
    const void *data;     /* read-only, inside the mapping; valid until the file is closed */
    int file;             /* index of the shard holding it (0 for single files) */
    uint64_t file_offset; /* absolute offset of the data in its file */
} g4q_tensor;

/* ---- one safetensors file ---- */

typedef struct g4q_st_file g4q_st_file;

/* Maps and validates one file. */
g4q_status g4q_st_open(g4q_ctx *ctx, const char *path, g4q_st_file **out);

/* Validates a whole file image already in memory (not copied; must outlive the result). `label`
 * names it in messages. This is the entry point of the header fuzzer. */
g4q_status g4q_st_open_memory(g4q_ctx *ctx, const char *label, const void *buf, size_t len,
                              g4q_st_file **out);

void g4q_st_close(g4q_st_file *f); /* NULL is a no-op */

size_t g4q_st_count(const g4q_st_file *f);
/* Tensors in data-offset order (ties between empty tensors broken by name); NULL when i >= count.
 * All count tensors lie in one contiguous array starting at g4q_st_tensor(f, 0). */
const g4q_tensor *g4q_st_tensor(const g4q_st_file *f, size_t i);
/* By exact name (binary search over a sorted index, O(log n)), or NULL. */
const g4q_tensor *g4q_st_find(const g4q_st_file *f, const char *name);
/* Value of a __metadata__ key, or NULL. */
const char *g4q_st_metadata(const g4q_st_file *f, const char *key);
/* Number of __metadata__ entries, and the i-th key in header order (NULL when out of range). */
size_t g4q_st_metadata_count(const g4q_st_file *f);
const char *g4q_st_metadata_key(const g4q_st_file *f, size_t i);
/* The path (or g4q_st_open_memory label) used in messages. */
const char *g4q_st_path(const g4q_st_file *f);
/* 1 when the file is our own mmap (g4q_st_open), 0 for g4q_st_open_memory images. */
int g4q_st_is_mapped(const g4q_st_file *f);

/* Returns len when buf[0, len) is valid UTF-8 (shortest forms only, no surrogates, nothing past
 * U+10FFFF), else the offset of the first invalid sequence. */
size_t g4q_st_utf8_check(const void *buf, size_t len);

/* Element i of an integer tensor (I32 or I64, little-endian, read without alignment
 * assumptions) into *out. Returns 0 for other dtypes or i out of range. */
int g4q_tensor_int_at(const g4q_tensor *t, uint64_t i, int64_t *out);

/* ---- a checkpoint folder ---- */

typedef struct g4q_ckpt g4q_ckpt;

/* Opens DIR/model.safetensors, or (when there is none) DIR/model.safetensors.index.json and its
 * shards, the order transformers looks for them in. The index must name every tensor of every
 * shard it lists, in the shard it names, and nothing else; only its "weight_map" is used; shard
 * names must be plain file names (no '/', not "." or ".."). Shards are numbered in sorted file-name
 * order. Missing files give G4Q_ERR_NOT_FOUND naming the path, inconsistencies G4Q_ERR_FORMAT. */
g4q_status g4q_ckpt_open(g4q_ctx *ctx, const char *dir, g4q_ckpt **out);
void g4q_ckpt_close(g4q_ckpt *c); /* NULL is a no-op */

const char *g4q_ckpt_dir(const g4q_ckpt *c);
size_t g4q_ckpt_count(const g4q_ckpt *c);
/* All tensors: shard by shard, data-offset order within a shard; NULL when i >= count. They lie in
 * one contiguous array starting at g4q_ckpt_tensor(c, 0); t->file is the shard index. */
const g4q_tensor *g4q_ckpt_tensor(const g4q_ckpt *c, size_t i);
/* By exact name (O(log n)), or NULL. */
const g4q_tensor *g4q_ckpt_find(const g4q_ckpt *c, const char *name);
size_t g4q_ckpt_file_count(const g4q_ckpt *c);
const g4q_st_file *g4q_ckpt_file(const g4q_ckpt *c, size_t i);
uint64_t g4q_ckpt_data_bytes(const g4q_ckpt *c); /* sum of tensor bytes */

/* Drops the tensor's mapped pages from this process's resident set (madvise DONTNEED); the data
 * stay readable and are paged in again on the next access. Used to keep RSS at about one layer
 * while streaming a 24 GB checkpoint. */
void g4q_ckpt_release(const g4q_ckpt *c, const g4q_tensor *t);
/* g4q_ckpt_release for every tensor of the checkpoint (one madvise per mapped shard). */
void g4q_ckpt_release_all(const g4q_ckpt *c);

/* ---- streamed writer ---- */

typedef struct g4q_st_writer g4q_st_writer;

typedef struct g4q_st_writer_opts {
    uint64_t shard_bytes;           /* 0: a single model.safetensors; else max data bytes a shard */
    const char *const *metadata_kv; /* NULL or NULL-terminated key, value, key, value, ... */
} g4q_st_writer_opts;

/* Prepares writing into directory `dir` (which must exist). Nothing is written yet. The writer
 * keeps ctx for later calls (errors of g4q_stw_* are reported there). It never holds tensor data:
 * each write goes straight to its file with pwrite. Calls must not run concurrently
 * (g4q_stw_write_claimed excepted). The header
 * starts with "__metadata__": {"format": "pt", then the metadata_kv pairs} (a "format" pair in
 * metadata_kv replaces the default; a repeated key or text that is not UTF-8 is G4Q_ERR_INVALID)
 * and is padded with spaces to a multiple of 8 bytes, so every shard's data start 8-byte aligned.
 * A missing dir is G4Q_ERR_NOT_FOUND. */
g4q_status g4q_stw_create(g4q_ctx *ctx, const char *dir, const g4q_st_writer_opts *opts,
                          g4q_st_writer **out);

/* Declares the next tensor, in output order. *index (optional) receives its handle (0, 1, ... in
 * declaration order). The name must be non-empty valid UTF-8 and not "__metadata__"; ndim in
 * [0, G4Q_MAX_DIMS]; dims >= 0. A repeated name fails at g4q_stw_begin. */
g4q_status g4q_stw_declare(g4q_st_writer *w, const char *name, g4q_dtype dtype, int ndim,
                           const int64_t *shape, size_t *index);

/* Ends declaration: splits the tensors into shards greedily in declaration order, each holding at
 * most shard_bytes of data unless one tensor alone is bigger (model.safetensors, or
 * model-0000i-of-0000N.safetensors when shard_bytes is exceeded), writes each header and reserves
 * the data space with posix_fallocate (a full disk fails here with G4Q_ERR_NOSPACE, naming the
 * file). */
g4q_status g4q_stw_begin(g4q_st_writer *w);

/* Writes bytes [offset, offset+n) of tensor `index`; any order; each byte exactly once (a range
 * past the tensor's end or overlapping bytes already written is G4Q_ERR_INVALID). */
g4q_status g4q_stw_write(g4q_st_writer *w, size_t index, uint64_t offset, const void *data,
                         uint64_t n);

/* Writing from other threads. g4q_stw_claim (on the writer's thread, like every other call)
 * checks and records bytes [offset, offset+n) of tensor `index` as g4q_stw_write does, and fills
 * *t with where they go. g4q_stw_write_claimed then writes them, on any thread, touching nothing
 * but the file and ctx (the caller's, e.g. a worker's own copy; errors name the file and the
 * tensor). After a failed claimed write, call g4q_stw_set_failed before anything else: the
 * writer then only accepts g4q_stw_free. t's strings belong to the writer. */
typedef struct g4q_stw_target {
    int fd;
    uint64_t file_offset, nbytes;
    const char *path, *name;
} g4q_stw_target;
g4q_status g4q_stw_claim(g4q_st_writer *w, size_t index, uint64_t offset, uint64_t n,
                         g4q_stw_target *t);
g4q_status g4q_stw_write_claimed(g4q_ctx *ctx, const g4q_stw_target *t, const void *data);
void g4q_stw_set_failed(g4q_st_writer *w);

/* Checks that every byte of every tensor was written (else G4Q_ERR_INVALID naming the first
 * incomplete tensor and its file), closes the shards and writes model.safetensors.index.json
 * ({"metadata": {"total_size": data bytes}, "weight_map": {name: shard}}, names sorted) when there
 * are several. A finish that failed for missing bytes may be retried after the missing writes;
 * after an I/O error (or a failed begin) the writer only accepts g4q_stw_free. */
g4q_status g4q_stw_finish(g4q_st_writer *w);

/* Frees the writer; files already written are left to the caller's outdir abort/commit. */
void g4q_stw_free(g4q_st_writer *w);

#ifdef __cplusplus
}
#endif
#endif
