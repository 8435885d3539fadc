/*
 * The context: everything a library call may need that is not its arguments. There is no mutable
 * global state in libgemma4q; log level, thread count, the last error message and (later) device
 * handles live here and are passed explicitly.
 *
 * Errors: a failing function calls g4q_fail(ctx, code, fmt, ...), which records the message and
 * returns code, so the idiom is `return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: ...", path);`.
 * Messages name the file and the item ("model.safetensors: tensor 'x': offsets out of range").
 */
#ifndef G4Q_BASE_CTX_H
#define G4Q_BASE_CTX_H

#include <stdarg.h>
#include <stdio.h>

#include "base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    G4Q_LOG_ERROR = 0,
    G4Q_LOG_WARN = 1,
    G4Q_LOG_INFO = 2,
    G4Q_LOG_DEBUG = 3,
} g4q_log_level;

#define G4Q_ERR_MSG_MAX 1024

typedef struct g4q_ctx {
    g4q_log_level log_level; /* messages above this level are dropped */
    int threads;             /* OpenMP threads for CPU work; 0 = library default */
    int progress;            /* -1 never, 0 auto (bar on a terminal, lines otherwise), 1 lines */
    FILE *log_stream;        /* NULL = stderr */
    g4q_status err_code;     /* code of the last g4q_fail() */
    char err[G4Q_ERR_MSG_MAX];
} g4q_ctx;

/* Fills a context with defaults: level INFO, threads 0, progress auto, no error. */
void g4q_ctx_init(g4q_ctx *ctx);

/* Records an error message (printf format) and returns code. Formats into the context only; it
 * prints nothing. The message of an earlier error is overwritten. */
g4q_status g4q_fail(g4q_ctx *ctx, g4q_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the current error message with "prefix: " (for adding the caller's context). */
void g4q_error_prefix(g4q_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last error message, or "" if none. */
const char *g4q_ctx_error(const g4q_ctx *ctx);

/* Writes one log line to the log stream when level <= ctx->log_level. */
void g4q_log(const g4q_ctx *ctx, g4q_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define G4Q_INFO(ctx, ...) g4q_log((ctx), G4Q_LOG_INFO, __VA_ARGS__)
#define G4Q_WARN(ctx, ...) g4q_log((ctx), G4Q_LOG_WARN, __VA_ARGS__)
#define G4Q_DEBUG(ctx, ...) g4q_log((ctx), G4Q_LOG_DEBUG, __VA_ARGS__)

/* Propagates a non-OK status from an expression. */
#define G4Q_TRY(expr)                                                                              \
    do {                                                                                           \
        g4q_status g4q_try_st_ = (expr);                                                           \
        if (g4q_try_st_ != G4Q_OK)                                                                 \
            return g4q_try_st_;                                                                    \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
