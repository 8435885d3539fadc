/*
 * Command-line parsing for the gemma4q tools. Each tool describes its options in one table; the
 * same table drives parsing and --help, so the help can never disagree with the parser.
 */
#ifndef G4Q_TOOLS_CLI_H
#define G4Q_TOOLS_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "base/ctx.h"

typedef enum {
    G4Q_OPT_FLAG,   /* int target set to 1 */
    G4Q_OPT_STRING, /* const char * target */
    G4Q_OPT_INT,    /* int target */
    G4Q_OPT_SIZE,   /* uint64_t target; accepts suffixes K, M, G (powers of 1000) and KiB/MiB/GiB */
    G4Q_OPT_DOUBLE, /* double target */
} g4q_opt_kind;

typedef struct g4q_opt {
    const char *name; /* "--out" */
    g4q_opt_kind kind;
    void *target;
    const char *meta; /* "DIR"; NULL for flags */
    const char *help; /* one line: meaning and valid values */
} g4q_opt;

typedef struct g4q_cli {
    const char *prog;    /* "gemma4q-mkmodel" */
    const char *usage;   /* "[options] --out DIR" */
    const char *summary; /* one paragraph */
    const g4q_opt *opts; /* terminated by an entry with name NULL */
} g4q_cli;

/* Parses argv[first..argc). Positional arguments are collected into pos (at most max_pos) and
 * counted in *n_pos. --help prints help and returns G4Q_ERR_USAGE with *help_shown = 1. */
g4q_status g4q_cli_parse(g4q_ctx *ctx, const g4q_cli *cli, int argc, char **argv, int first,
                         const char **pos, int max_pos, int *n_pos, int *help_shown);

void g4q_cli_help(const g4q_cli *cli, FILE *f);

/* Prints "PROG: error: MESSAGE" (and a hint for usage errors) and returns the exit code. */
int g4q_cli_finish(const g4q_cli *cli, const g4q_ctx *ctx, g4q_status st);

#endif
