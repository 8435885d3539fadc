#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const g4q_opt *find_opt(const g4q_cli *cli, const char *name, size_t len)
{
    for (const g4q_opt *o = cli->opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

static g4q_status parse_size(g4q_ctx *ctx, const char *opt, const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || errno || x < 0)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "%s '%s': expected a size such as 512M or 2GiB", opt, v);
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1},      {"B", 1},          {"K", 1e3},        {"KB", 1e3},
                 {"M", 1e6},   {"MB", 1e6},       {"G", 1e9},        {"GB", 1e9},
                 {"KiB", 1024}, {"MiB", 1048576}, {"GiB", 1073741824.0}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(end, units[i].suffix) == 0) {
            *out = (uint64_t)(x * units[i].mult);
            return G4Q_OK;
        }
    return g4q_fail(ctx, G4Q_ERR_USAGE, "%s '%s': unknown size suffix '%s'", opt, v, end);
}

static g4q_status set_value(g4q_ctx *ctx, const g4q_opt *o, const char *v)
{
    char *end;
    switch (o->kind) {
    case G4Q_OPT_FLAG:
        *(int *)o->target = 1;
        return G4Q_OK;
    case G4Q_OPT_STRING:
        *(const char **)o->target = v;
        return G4Q_OK;
    case G4Q_OPT_INT: {
        errno = 0;
        long x = strtol(v, &end, 10);
        if (*v == '\0' || *end || errno || x < -2147483647L || x > 2147483647L)
            return g4q_fail(ctx, G4Q_ERR_USAGE, "%s '%s': expected an integer", o->name, v);
        *(int *)o->target = (int)x;
        return G4Q_OK;
    }
    case G4Q_OPT_SIZE:
        return parse_size(ctx, o->name, v, (uint64_t *)o->target);
    case G4Q_OPT_DOUBLE: {
        errno = 0;
        double x = strtod(v, &end);
        if (*v == '\0' || *end || errno)
            return g4q_fail(ctx, G4Q_ERR_USAGE, "%s '%s': expected a number", o->name, v);
        *(double *)o->target = x;
        return G4Q_OK;
    }
    }
    return g4q_fail(ctx, G4Q_ERR_INTERNAL, "%s: bad option kind", o->name);
}

g4q_status g4q_cli_parse(g4q_ctx *ctx, const g4q_cli *cli, int argc, char **argv, int first,
                         const char **pos, int max_pos, int *n_pos, int *help_shown)
{
    *n_pos = 0;
    *help_shown = 0;
    int only_positional = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!only_positional && strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (!only_positional && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            g4q_cli_help(cli, stdout);
            *help_shown = 1;
            return G4Q_ERR_USAGE;
        }
        if (!only_positional && a[0] == '-' && a[1] == '-') {
            const char *eq = strchr(a, '=');
            size_t len = eq ? (size_t)(eq - a) : strlen(a);
            const g4q_opt *o = find_opt(cli, a, len);
            if (!o)
                return g4q_fail(ctx, G4Q_ERR_USAGE, "unknown option '%.*s'", (int)len, a);
            const char *v = NULL;
            if (o->kind == G4Q_OPT_FLAG) {
                if (eq)
                    return g4q_fail(ctx, G4Q_ERR_USAGE, "%s takes no value", o->name);
            } else if (eq) {
                v = eq + 1;
            } else if (i + 1 < argc) {
                v = argv[++i];
            } else {
                return g4q_fail(ctx, G4Q_ERR_USAGE, "%s needs a value (%s)", o->name, o->meta);
            }
            G4Q_TRY(set_value(ctx, o, v));
            continue;
        }
        if (*n_pos >= max_pos)
            return g4q_fail(ctx, G4Q_ERR_USAGE, "unexpected argument '%s'", a);
        pos[(*n_pos)++] = a;
    }
    return G4Q_OK;
}

void g4q_cli_help(const g4q_cli *cli, FILE *f)
{
    fprintf(f, "usage: %s %s\n\n%s\n\noptions:\n", cli->prog, cli->usage, cli->summary);
    for (const g4q_opt *o = cli->opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", o->name, o->meta ? " " : "", o->meta ? o->meta : "");
        fprintf(f, "  %-24s %s\n", left, o->help);
    }
    fprintf(f, "  %-24s %s\n", "--help", "show this help and exit");
}

int g4q_cli_finish(const g4q_cli *cli, const g4q_ctx *ctx, g4q_status st)
{
    if (st == G4Q_OK)
        return 0;
    fprintf(stderr, "%s: error: %s\n", cli->prog,
            ctx->err[0] ? ctx->err : g4q_status_text(st));
    if (st == G4Q_ERR_USAGE)
        fprintf(stderr, "hint: %s --help lists the options\n", cli->prog);
    return g4q_status_exit_code(st);
}
