/*
 * gemma4q-mkmodel: writes a synthetic Gemma 4 checkpoint in the exact Hugging Face layout
 * (src/model/synth.h), for tests and benchmarks without the real weights.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/outdir.h"
#include "base/sys.h"
#include "cli.h"
#include "model/config.h"
#include "model/synth.h"

typedef struct args {
    const char *preset, *out, *seed;
    int layers, hidden, vocab, threads, force, dry_run, quiet;
    uint64_t shard_size;
} args;

static g4q_status parse_seed(g4q_ctx *ctx, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (*text == '\0' || *text == '-' || *end || errno)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "--seed '%s': expected a non-negative integer", text);
    *out = v;
    return G4Q_OK;
}

static void print_summary(const g4q_synth_spec *s, const g4q_synth_result *r, const char *out,
                          double seconds, int dry_run)
{
    int n_full = 0;
    for (int i = 0; i < s->n_layers; i++)
        n_full += (i % 6 == 5) || i == s->n_layers - 1;
    printf("preset      %s%s\n", s->preset, dry_run ? " (dry run: nothing written)" : "");
    printf("layers      %d (%d sliding, %d full)\n", s->n_layers, s->n_layers - n_full, n_full);
    printf("shape       hidden %d, intermediate %d, vocab %d, heads %d/%d kv, head_dim %d/%d\n",
           s->hidden, s->intermediate, s->vocab, s->n_heads, s->n_kv_heads, s->head_dim,
           s->global_head_dim);
    printf("seed        %llu\n", (unsigned long long)s->seed);
    printf("params      %llu\n", (unsigned long long)r->params);
    printf("tensors     %llu\n", (unsigned long long)r->n_tensors);
    printf("bytes       %llu (%.2f GB of bf16 data)\n", (unsigned long long)r->bytes,
           (double)r->bytes / 1e9);
    if (!dry_run)
        printf("files       %d (%d safetensors) in %s\n", r->n_files, r->n_shards, out);
    printf("seconds     %.2f\n", seconds);
    printf("peak RSS    %.1f MB\n", (double)g4q_peak_rss_bytes() / 1e6);
}

static g4q_status run(g4q_ctx *ctx, const args *a)
{
    g4q_synth_spec spec;
    G4Q_TRY(g4q_synth_preset(ctx, a->preset, &spec));
    G4Q_TRY(g4q_synth_override(ctx, &spec, a->layers, a->hidden, a->vocab));
    G4Q_TRY(parse_seed(ctx, a->seed, &spec.seed));
    if (a->threads < 0)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "--threads %d: expected 0 (all cores) or more",
                        a->threads);
    if (!a->out && !a->dry_run)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "--out DIR is required");
    double t0 = g4q_now_seconds();
    g4q_synth_result res;
    if (a->dry_run) {
        G4Q_TRY(g4q_synth_write(ctx, &spec, NULL, a->shard_size, 1, &res));
        print_summary(&spec, &res, a->out, g4q_now_seconds() - t0, 1);
        return G4Q_OK;
    }
    g4q_outdir od;
    G4Q_TRY(g4q_outdir_begin(ctx, &od, a->out, a->force));
    g4q_status st = g4q_synth_write(ctx, &spec, od.partial_path, a->shard_size, 0, &res);
    if (st == G4Q_OK)
        st = g4q_outdir_commit(ctx, &od);
    if (st != G4Q_OK) {
        g4q_outdir_abort(&od);
        return st;
    }
    print_summary(&spec, &res, od.final_path, g4q_now_seconds() - t0, 0);
    return G4Q_OK;
}

int main(int argc, char **argv)
{
    args a = {.preset = "tiny", .seed = "0"};
    const g4q_opt opts[] = {
        {"--preset", G4Q_OPT_STRING, &a.preset, "NAME",
         "tiny (6 layers, ~13 MB), small (12 layers, ~70 MB) or 12b (the real shape, 23.9 GB); "
         "default tiny"},
        {"--out", G4Q_OPT_STRING, &a.out, "DIR", "output folder (written as DIR.partial, then "
         "renamed)"},
        {"--layers", G4Q_OPT_INT, &a.layers, "N",
         "number of layers, 1..256 (layer i is full if i mod 6 == 5; the last is always full)"},
        {"--hidden", G4Q_OPT_INT, &a.hidden, "N",
         "hidden size, a multiple of 128 and of the head count (intermediate scales with it)"},
        {"--vocab", G4Q_OPT_INT, &a.vocab, "N", "vocabulary size, 1024..1048576"},
        {"--seed", G4Q_OPT_STRING, &a.seed, "N", "seed of the weights (an unsigned integer; "
         "default 0); the same seed gives byte-identical files"},
        {"--shard-size", G4Q_OPT_SIZE, &a.shard_size, "SIZE",
         "maximum data bytes per safetensors shard, e.g. 5GB (default: one model.safetensors)"},
        {"--threads", G4Q_OPT_INT, &a.threads, "N", "worker threads (default 0: all cores); "
         "the output does not depend on it"},
        {"--force", G4Q_OPT_FLAG, &a.force, NULL, "replace DIR if it exists"},
        {"--dry-run", G4Q_OPT_FLAG, &a.dry_run, NULL,
         "print the summary (params, tensors, bytes) without writing anything"},
        {"--quiet", G4Q_OPT_FLAG, &a.quiet, NULL, "no progress output"},
        {NULL, 0, NULL, NULL, NULL},
    };
    const g4q_cli cli = {
        .prog = "gemma4q-mkmodel",
        .usage = "[--preset tiny|small|12b] [options] --out DIR",
        .summary = "Writes a synthetic Gemma 4 checkpoint with the exact Hugging Face layout: "
                   "config.json, model.safetensors (or shards and an index), tokenizer.json, "
                   "tokenizer_config.json, generation_config.json and chat_template.jinja. "
                   "Weights are deterministic in the seed and statistically like a trained model.",
        .opts = opts,
    };
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    int help = 0, n_pos = 0;
    g4q_status st = g4q_cli_parse(&ctx, &cli, argc, argv, 1, NULL, 0, &n_pos, &help);
    if (help)
        return 0;
    if (st == G4Q_OK) {
        ctx.threads = a.threads;
        if (a.quiet)
            ctx.progress = -1;
        st = run(&ctx, &a);
    }
    return g4q_cli_finish(&cli, &ctx, st);
}
