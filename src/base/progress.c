#include "base/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "base/sys.h"

static void format_amount(char *buf, size_t n, uint64_t v, const char *unit)
{
    if (unit && unit[0] == 'B' && unit[1] == '\0') {
        static const char *const suffix[] = {"B", "KB", "MB", "GB", "TB"};
        double x = (double)v;
        int i = 0;
        while (x >= 1000.0 && i < 4) {
            x /= 1000.0;
            i++;
        }
        snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", x, suffix[i]);
    } else {
        snprintf(buf, n, "%llu%s%s", (unsigned long long)v, unit ? " " : "", unit ? unit : "");
    }
}

static void draw(g4q_progress *p, int final)
{
    double now = g4q_now_seconds();
    double elapsed = now - p->t_start;
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    if (frac > 1.0)
        frac = 1.0;
    char done[32], total[32];
    format_amount(done, sizeof done, p->done, p->unit);
    format_amount(total, sizeof total, p->total, p->unit);
    FILE *f = (p->ctx && p->ctx->log_stream) ? p->ctx->log_stream : stderr;
    if (p->mode == 1) {
        enum { WIDTH = 30 };
        char bar[WIDTH + 1];
        int fill = (int)(frac * WIDTH);
        for (int i = 0; i < WIDTH; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[WIDTH] = '\0';
        double eta = (frac > 0.0 && !final) ? elapsed * (1.0 - frac) / frac : 0.0;
        fprintf(f, "\r%s [%s] %3.0f%%  %s / %s  %.1fs%s", p->label, bar, frac * 100.0, done, total,
                final ? elapsed : eta, final ? "   \n" : " left");
    } else {
        fprintf(f, "gemma4q: %s: %3.0f%% (%s / %s) %.1fs\n", p->label, frac * 100.0, done, total,
                elapsed);
    }
    fflush(f);
    p->t_last_draw = now;
}

void g4q_progress_begin(g4q_progress *p, const g4q_ctx *ctx, const char *label, const char *unit,
                        uint64_t total)
{
    p->ctx = ctx;
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->done = 0;
    p->t_start = g4q_now_seconds();
    p->t_last_draw = p->t_start;
    int setting = ctx ? ctx->progress : 0;
    FILE *f = (ctx && ctx->log_stream) ? ctx->log_stream : stderr;
    if (setting < 0)
        p->mode = 0;
    else if (setting == 0 && isatty(fileno(f)))
        p->mode = 1;
    else
        p->mode = 2;
}

void g4q_progress_update(g4q_progress *p, uint64_t done)
{
    p->done = done;
    if (p->mode == 0)
        return;
    double interval = p->mode == 1 ? 0.1 : 5.0;
    if (g4q_now_seconds() - p->t_last_draw >= interval)
        draw(p, 0);
}

void g4q_progress_end(g4q_progress *p)
{
    if (p->mode == 0)
        return;
    p->done = p->total;
    draw(p, 1);
}
