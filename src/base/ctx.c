#include "base/ctx.h"

#include <string.h>

void g4q_ctx_init(g4q_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->log_level = G4Q_LOG_INFO;
    ctx->threads = 0;
    ctx->progress = 0;
    ctx->err_code = G4Q_OK;
}

g4q_status g4q_fail(g4q_ctx *ctx, g4q_status code, const char *fmt, ...)
{
    if (!ctx)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    ctx->err_code = code;
    return code;
}

void g4q_error_prefix(g4q_ctx *ctx, const char *fmt, ...)
{
    if (!ctx)
        return;
    char prefix[256];
    char old[G4Q_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, ctx->err, sizeof old);
    /* Truncation keeps the start of the message, which names the item; that is intended. */
    size_t pl = strlen(prefix), ol = strnlen(old, sizeof old - 1);
    size_t cap = sizeof ctx->err - 1;
    size_t n = 0;
    memcpy(ctx->err, prefix, pl < cap ? pl : cap);
    n = pl < cap ? pl : cap;
    if (n + 2 <= cap) {
        memcpy(ctx->err + n, ": ", 2);
        n += 2;
    }
    size_t take = ol < cap - n ? ol : cap - n;
    memcpy(ctx->err + n, old, take);
    ctx->err[n + take] = '\0';
}

const char *g4q_ctx_error(const g4q_ctx *ctx)
{
    return ctx ? ctx->err : "";
}

void g4q_log(const g4q_ctx *ctx, g4q_log_level level, const char *fmt, ...)
{
    if (ctx && level > ctx->log_level)
        return;
    FILE *f = (ctx && ctx->log_stream) ? ctx->log_stream : stderr;
    static const char *const tags[] = {"error: ", "warning: ", "", "debug: "};
    fputs("gemma4q: ", f);
    fputs(tags[level], f);
    va_list ap;
    va_start(ap, fmt);
    if (fmt)
        vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
}
