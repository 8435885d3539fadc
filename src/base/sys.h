/*
 * Small operating-system helpers: clocks, memory statistics and files. Everything that touches the
 * file system reports errors naming the path.
 */
#ifndef G4Q_BASE_SYS_H
#define G4Q_BASE_SYS_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Monotonic seconds. */
double g4q_now_seconds(void);

/* Peak resident set size of this process in bytes (VmHWM), 0 if unknown. */
uint64_t g4q_peak_rss_bytes(void);
/* Current resident set size in bytes (VmRSS), 0 if unknown. */
uint64_t g4q_rss_bytes(void);

/* Reads a whole file into a NUL-terminated malloc'd buffer (*len excludes the NUL). Files over
 * max_bytes are refused. The caller frees *out. */
g4q_status g4q_read_file(g4q_ctx *ctx, const char *path, size_t max_bytes, char **out, size_t *len);

/* Writes a whole file (created or truncated), checking every write and the close, so that a full
 * disk is reported as G4Q_ERR_NOSPACE naming the path. */
g4q_status g4q_write_file(g4q_ctx *ctx, const char *path, const void *data, size_t len);

/* Copies a file byte for byte. */
g4q_status g4q_copy_file(g4q_ctx *ctx, const char *src, const char *dst);

/* 1 if path exists (any type), 0 otherwise. */
int g4q_path_exists(const char *path);
/* 1 if path is a directory. */
int g4q_is_dir(const char *path);

/* Creates a directory and its missing parents (mode 0755). */
g4q_status g4q_mkdir_p(g4q_ctx *ctx, const char *path);

/* Removes a file or a directory tree. A missing path is not an error. */
g4q_status g4q_remove_tree(g4q_ctx *ctx, const char *path);

/* Joins dir and name with one '/' into buf; error if it does not fit. */
g4q_status g4q_path_join(g4q_ctx *ctx, char *buf, size_t n, const char *dir, const char *name);

/* Maps errno after a failed write to G4Q_ERR_NOSPACE (ENOSPC, EDQUOT, EFBIG) or G4Q_ERR_IO. */
g4q_status g4q_status_from_write_errno(int err);

#ifdef __cplusplus
}
#endif
#endif
