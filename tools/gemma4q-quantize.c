/*
 * gemma4q-quantize --model DIR --recipe FILE --out OUT: quantizes a BF16 Gemma 4 checkpoint as a
 * recipe says and exports it (ModelOpt, compressed-tensors or GPTQ). Thin: parses the options and
 * calls the library (recipe -> plan -> g4q_quantize_run: calibration, per-layer GPTQ, export).
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "backend/device.h"
#include "base/sys.h"
#include "calib/calibrate.h"
#include "calib/dataset.h"
#include "cli.h"
#include "export/export.h"
#include "export/plan.h"
#include "io/json_write.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"
#include "recipe/recipe.h"
#include "pipeline/quantize.h"
#include "text/tokenizer.h"

typedef struct quantize_opts {
    const char *model, *recipe, *out, *json, *device, *dump_calib;
    int dry_run, threads, force, quiet, verbose, calib_samples, calib_seq_len;
    uint64_t shard_bytes;
} quantize_opts;

/* The calibration ids of the recipe (with the --calib-* overrides), tokenized with the model's
 * tokenizer.json. */
static g4q_status load_calib(g4q_ctx *ctx, const quantize_opts *o, const g4q_recipe *r,
                             const g4q_config *cfg, g4q_calib_data *d)
{
    if (!r->calib.present)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "%s: the recipe has no calibration section", r->path);
    char path[4096];
    g4q_tok *tok = NULL;
    G4Q_TRY(g4q_path_join(ctx, path, sizeof path, o->model, "tokenizer.json"));
    G4Q_TRY(g4q_tok_load(ctx, path, &tok));
    int samples = o->calib_samples ? o->calib_samples : r->calib.samples;
    int seq_len = o->calib_seq_len ? o->calib_seq_len : r->calib.seq_len;
    g4q_status st = g4q_calib_load(ctx, r->calib.dataset_path, tok, cfg->bos_id, samples, seq_len,
                                   r->calib.seed, d);
    if (st == G4Q_OK) /* the manifest names the dataset as the recipe wrote it */
        snprintf(d->name, sizeof d->name, "%s", r->calib.dataset);
    g4q_tok_free(tok);
    return st;
}

static g4q_status write_report(g4q_ctx *ctx, const char *path, const g4q_plan *plan,
                               const g4q_quantize_report *rep, g4q_device_kind dev, int dry_run)
{
    const g4q_export_stats *stats = rep ? &rep->stats : NULL;
    const g4q_calib_result *calib = rep && rep->calibrated ? &rep->calib : NULL;
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "recipe", plan->recipe->name);
    cJSON_AddStringToObject(r, "device", g4q_device_name(dev));
    cJSON_AddBoolToObject(r, "dry_run", dry_run);
    cJSON_AddItemToObject(r, "plan", g4q_plan_to_cjson(plan));
    if (stats) {
        cJSON *s = cJSON_AddObjectToObject(r, "result");
        cJSON_AddNumberToObject(s, "tensors_out", (double)stats->tensors_out);
        cJSON_AddNumberToObject(s, "bytes_in", (double)stats->bytes_in);
        cJSON_AddNumberToObject(s, "bytes_out", (double)stats->bytes_out);
        cJSON_AddNumberToObject(s, "seconds", stats->seconds);
        cJSON_AddNumberToObject(s, "peak_rss_bytes", (double)stats->peak_rss);
        cJSON_AddNumberToObject(s, "peak_gpu_bytes", (double)stats->peak_gpu);
        cJSON_AddNumberToObject(s, "job_peak_gpu_bytes", (double)rep->peak_gpu);
        cJSON_AddNumberToObject(s, "layer_quantized_tensors", (double)rep->layer_items);
        cJSON_AddNumberToObject(s, "layer_quantize_seconds", rep->layer_quant_seconds);
    }
    if (calib) {
        cJSON *c = g4q_calib_to_cjson(calib);
        cJSON_AddNumberToObject(c, "seconds", calib->seconds);
        cJSON_AddNumberToObject(c, "bind_seconds", calib->bind_seconds);
        cJSON_AddNumberToObject(c, "prefetch_seconds", calib->prefetch_seconds);
        cJSON_AddNumberToObject(c, "peak_device_bytes", (double)calib->peak_device_bytes);
        cJSON_AddItemToObject(r, "calibration", c);
    }
    g4q_status st = g4q_json_write_file(ctx, path, r, 2);
    cJSON_Delete(r);
    return st;
}

static void print_summary(const quantize_opts *o, const g4q_recipe *recipe, g4q_device_kind dev,
                          const g4q_quantize_report *rep)
{
    const g4q_export_stats *st = &rep->stats;
    fprintf(stderr,
            "gemma4q: %s -> %s (%s, recipe %s)\n"
            "gemma4q: %zu tensors, %.3f GB in -> %.3f GB out, export %.1f s, peak host RSS "
            "%.2f GB, peak GPU memory %.2f GB\n",
            o->model, o->out, g4q_device_name(dev), recipe->name, st->tensors_out,
            (double)st->bytes_in / 1e9, (double)st->bytes_out / 1e9, st->seconds,
            (double)st->peak_rss / 1e9, (double)rep->peak_gpu / 1e9);
    if (!rep->calibrated) return;
    const g4q_calib_result *c = &rep->calib;
    fprintf(stderr, "gemma4q: calibration %d x %d tokens of %s (ids sha256 %.16s...)%s, %.1f s",
            c->samples, c->seq_len, c->dataset, c->ids_sha256,
            c->sequential ? ", sequential" : "", c->seconds);
    if (rep->layer_items)
        fprintf(stderr, ", of which %.1f s quantizing %zu tensors layer by layer",
                rep->layer_quant_seconds, rep->layer_items);
    if (c->peak_device_bytes) /* tracked by the CUDA backend */
        fprintf(stderr, ", peak GPU memory %.2f GB", (double)c->peak_device_bytes / 1e9);
    fputc('\n', stderr);
}

static g4q_status run(g4q_ctx *ctx, const quantize_opts *o)
{
    g4q_recipe *recipe = NULL;
    g4q_ckpt *ck = NULL;
    g4q_config *cfg = calloc(1, sizeof *cfg);
    g4q_weights *w = calloc(1, sizeof *w);
    g4q_plan plan = {0};
    g4q_device_kind dev = G4Q_DEVICE_CPU, req;
    g4q_status st = (cfg && w) ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    if (st == G4Q_OK && (!o->model || !o->recipe || (!o->out && !o->dry_run)))
        st = g4q_fail(ctx, G4Q_ERR_USAGE,
                      "--model, --recipe and --out are required "
                      "(--out may be left out with --dry-run)");
    if (st == G4Q_OK && !g4q_is_dir(o->model))
        st = g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "--model %s: no such checkpoint folder", o->model);
    if (st == G4Q_OK) st = g4q_device_parse(ctx, o->device, &req);
    if (st == G4Q_OK) st = g4q_recipe_load(ctx, o->recipe, &recipe);
    if (st == G4Q_OK) st = g4q_config_load(ctx, o->model, cfg);
    if (st == G4Q_OK) st = g4q_ckpt_open(ctx, o->model, &ck);
    if (st == G4Q_OK)
        st = g4q_weights_bind(ctx, cfg, g4q_ckpt_tensor(ck, 0), g4q_ckpt_count(ck), o->model, w);
    if (st == G4Q_OK)
        st = g4q_plan_build(ctx, recipe, cfg, w, g4q_ckpt_tensor(ck, 0), g4q_ckpt_count(ck), &plan);
    g4q_calib_data data = {0};
    g4q_quantize_report *rep = calloc(1, sizeof *rep);
    if (st == G4Q_OK && !rep) st = g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    if (st == G4Q_OK && o->dump_calib) {
        st = load_calib(ctx, o, recipe, cfg, &data);
        if (st == G4Q_OK) st = g4q_calib_dump(ctx, &data, o->dump_calib);
        if (st == G4Q_OK)
            G4Q_INFO(ctx, "%s: %d x %d calibration ids (int32 LE), sha256 %s", o->dump_calib,
                     data.samples, data.seq_len, data.ids_sha256);
    }
    if (st == G4Q_OK && o->dry_run) {
        g4q_plan_print(&plan, stdout);
        if (o->json) st = write_report(ctx, o->json, &plan, NULL, dev, 1);
    } else if (st == G4Q_OK) {
        st = g4q_device_select(ctx, req, &dev, NULL);
        if (st == G4Q_OK && plan.needs_calibration && !data.ids)
            st = load_calib(ctx, o, recipe, cfg, &data);
        if (st == G4Q_OK && plan.needs_hessians && !strncmp(recipe->calib.dataset, "builtin:", 8))
            G4Q_INFO(ctx, "GPTQ and the weighted scale searches fit their calibration text; %s is "
                          "generic: calibration.dataset pointed at text like the model's traffic "
                          "usually gives a better export (README, \"Quality against the goals\")",
                     recipe->calib.dataset);
        g4q_quantize_job job = {.model_dir = o->model,
                                .plan = &plan,
                                .ckpt = ck,
                                .cfg = cfg,
                                .calib_data = &data,
                                .sequential = recipe->calib.sequential,
                                .export = {.out_dir = o->out,
                                           .overwrite = o->force,
                                           .shard_bytes = o->shard_bytes,
                                           .device = dev}};
        if (st == G4Q_OK) st = g4q_quantize_run(ctx, &job, rep);
        if (st == G4Q_OK && !o->quiet) print_summary(o, recipe, dev, rep);
        if (st == G4Q_OK && o->json) st = write_report(ctx, o->json, &plan, rep, dev, 0);
    }
    g4q_calib_data_free(&data);
    free(rep);
    g4q_plan_free(&plan);
    g4q_ckpt_close(ck);
    g4q_recipe_free(recipe);
    free(w);
    free(cfg);
    return st;
}

int main(int argc, char **argv)
{
    quantize_opts o = {.device = "auto"};
    static const char summary[] =
        "Quantizes a BF16 Gemma 4 checkpoint (Hugging Face layout) as a recipe says, and exports\n"
        "it in the recipe's format (ModelOpt, compressed-tensors or GPTQ). The output appears in\n"
        "OUT only when complete (it is written to OUT.partial first); it holds the weights, the\n"
        "format's JSON files, the tokenizer/template/generation files of the input, and\n"
        "manifest.json with the sha256 of every tensor. The same input and recipe always give\n"
        "byte-identical output, on the CPU or the GPU and with any thread count (calibrated\n"
        "activation/KV scales: on the same device). Recipes with W4A4/W8A8 activations or\n"
        "calibrated KV scales first run the recipe's calibration samples through the BF16 model\n"
        "(src/calib/dataset.h: how text becomes samples; calibrate.h: what is observed).";
    const g4q_opt opts[] = {
        {"--model", G4Q_OPT_STRING, &o.model, "DIR", "input checkpoint folder (BF16)"},
        {"--recipe", G4Q_OPT_STRING, &o.recipe, "FILE", "recipe YAML (see recipes/)"},
        {"--out", G4Q_OPT_STRING, &o.out, "DIR", "output folder; must not exist unless --force"},
        {"--dry-run", G4Q_OPT_FLAG, &o.dry_run, NULL,
         "print the plan (every tensor, its decision and bytes) and stop"},
        {"--json", G4Q_OPT_STRING, &o.json, "FILE", "also write a machine-readable report"},
        {"--device", G4Q_OPT_STRING, &o.device, "DEV",
         "auto (GPU if present, default), cpu or cuda"},
        {"--threads", G4Q_OPT_INT, &o.threads, "N", "CPU threads (default: all cores)"},
        {"--shard-size", G4Q_OPT_SIZE, &o.shard_bytes, "SIZE",
         "split the weights into shards of at most SIZE (e.g. 5GB); default one file"},
        {"--force", G4Q_OPT_FLAG, &o.force, NULL, "replace OUT if it exists"},
        {"--calib-samples", G4Q_OPT_INT, &o.calib_samples, "N",
         "override the recipe's calibration.samples (quick runs and tests)"},
        {"--calib-seq-len", G4Q_OPT_INT, &o.calib_seq_len, "N",
         "override the recipe's calibration.seq_len (tokens per sample, <bos> included)"},
        {"--dump-calib", G4Q_OPT_STRING, &o.dump_calib, "FILE",
         "write the calibration token ids (int32 little-endian [samples, seq_len], no header) "
         "and go on (with --dry-run: only that)"},
        {"--quiet", G4Q_OPT_FLAG, &o.quiet, NULL, "no progress, warnings and errors only"},
        {"--verbose", G4Q_OPT_FLAG, &o.verbose, NULL, "debug messages"},
        {NULL, 0, NULL, NULL, NULL},
    };
    const g4q_cli cli = {"gemma4q-quantize", "--model DIR --recipe FILE --out OUT [options]",
                         summary, opts};
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    int n_pos = 0, help = 0;
    g4q_status st = g4q_cli_parse(&ctx, &cli, argc, argv, 1, NULL, 0, &n_pos, &help);
    if (help) return 0;
    if (o.quiet) {
        ctx.log_level = G4Q_LOG_WARN;
        ctx.progress = -1;
    }
    if (o.verbose) ctx.log_level = G4Q_LOG_DEBUG;
    if (st == G4Q_OK && (o.calib_samples < 0 || o.calib_seq_len < 0))
        st = g4q_fail(&ctx, G4Q_ERR_USAGE,
                      "--calib-samples/--calib-seq-len: expected a positive "
                      "count");
    if (st == G4Q_OK && o.threads < 0)
        st = g4q_fail(&ctx, G4Q_ERR_USAGE, "--threads %d: expected a positive count", o.threads);
    if (o.threads > 0) {
        ctx.threads = o.threads;
        omp_set_num_threads(o.threads);
    }
    if (st == G4Q_OK) st = run(&ctx, &o);
    return g4q_cli_finish(&cli, &ctx, st);
}
