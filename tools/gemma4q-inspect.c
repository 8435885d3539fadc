/*
 * gemma4q-inspect DIR: lists a checkpoint's tensors (name, dtype, shape, bytes), totals per dtype,
 * the model it describes and its quantization config. --json for scripts. --check verifies a
 * quantized export against the loader rules of docs/formats.md (export/check.h). --diff A B lines
 * up two exports tensor by tensor and JSON key by key (export/diff.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/sys.h"
#include "cli.h"
#include "export/check.h"
#include "export/diff.h"
#include "io/safetensors.h"
#include "model/config.h"

typedef struct inspect_opts {
    int json;
    int summary_only;
    int check;
    int diff;
} inspect_opts;

static void shape_text(const g4q_tensor *t, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", d ? ", " : "",
                                 (long long)t->shape[d]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
}

/* Reads DIR/NAME as JSON if it exists; NULL when absent. A present but malformed file is an
 * error. */
static g4q_status read_json(g4q_ctx *ctx, const char *dir, const char *name, cJSON **out)
{
    *out = NULL;
    char path[4096];
    G4Q_TRY(g4q_path_join(ctx, path, sizeof path, dir, name));
    if (!g4q_path_exists(path))
        return G4Q_OK;
    char *text;
    G4Q_TRY(g4q_read_file(ctx, path, 64u << 20, &text, NULL));
    *out = cJSON_Parse(text);
    free(text);
    if (!*out)
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: not valid JSON", path);
    return G4Q_OK;
}

/* The quantization config: hf_quant_config.json's "quantization" object, else config.json's
 * "quantization_config". Returns a detached copy or NULL. */
static cJSON *quant_config(cJSON *hf_quant, cJSON *config, const char **source)
{
    cJSON *q = hf_quant ? cJSON_GetObjectItemCaseSensitive(hf_quant, "quantization") : NULL;
    if (q) {
        *source = "hf_quant_config.json";
        return cJSON_Duplicate(q, 1);
    }
    q = config ? cJSON_GetObjectItemCaseSensitive(config, "quantization_config") : NULL;
    if (q) {
        *source = "config.json";
        return cJSON_Duplicate(q, 1);
    }
    *source = NULL;
    return NULL;
}

static void print_text(const g4q_ckpt *ck, const g4q_config *cfg, int have_cfg, cJSON *quant,
                       const char *qsource, const inspect_opts *o)
{
    size_t n = g4q_ckpt_count(ck);
    uint64_t per_dtype_bytes[G4Q_DT_COUNT] = {0};
    size_t per_dtype_count[G4Q_DT_COUNT] = {0};
    uint64_t params = 0;
    if (!o->summary_only)
        printf("%-72s %-8s %-22s %14s\n", "tensor", "dtype", "shape", "bytes");
    for (size_t i = 0; i < n; i++) {
        const g4q_tensor *t = g4q_ckpt_tensor(ck, i);
        per_dtype_bytes[t->dtype] += t->nbytes;
        per_dtype_count[t->dtype]++;
        params += t->numel;
        if (!o->summary_only) {
            char shape[128];
            shape_text(t, shape, sizeof shape);
            printf("%-72s %-8s %-22s %14llu\n", t->name, g4q_dtype_name(t->dtype), shape,
                   (unsigned long long)t->nbytes);
        }
    }
    printf("checkpoint: %s\n", g4q_ckpt_dir(ck));
    printf("  files: %zu, tensors: %zu, elements: %llu, data bytes: %llu (%.2f GB)\n",
           g4q_ckpt_file_count(ck), n, (unsigned long long)params,
           (unsigned long long)g4q_ckpt_data_bytes(ck), (double)g4q_ckpt_data_bytes(ck) / 1e9);
    for (int d = 0; d < G4Q_DT_COUNT; d++)
        if (per_dtype_count[d])
            printf("  %-8s %6zu tensors %16llu bytes\n", g4q_dtype_name((g4q_dtype)d),
                   per_dtype_count[d], (unsigned long long)per_dtype_bytes[d]);
    if (have_cfg)
        printf("model: Gemma 4 (%s), %d layers (%d sliding, %d full), hidden %d, intermediate %d, "
               "vocab %d, sliding window %d\n",
               cfg->text_only ? "text-only" : "unified", cfg->n_layers,
               g4q_config_count_layers(cfg, G4Q_LAYER_SLIDING),
               g4q_config_count_layers(cfg, G4Q_LAYER_FULL), cfg->hidden, cfg->intermediate,
               cfg->vocab_size, cfg->sliding_window);
    if (quant) {
        char *s = cJSON_PrintUnformatted(quant);
        printf("quantization (%s): %s\n", qsource, s ? s : "?");
        free(s);
    } else {
        printf("quantization: none\n");
    }
}

static void print_json(const g4q_ckpt *ck, const g4q_config *cfg, int have_cfg, cJSON *quant)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "dir", g4q_ckpt_dir(ck));
    cJSON_AddNumberToObject(root, "files", (double)g4q_ckpt_file_count(ck));
    cJSON_AddNumberToObject(root, "data_bytes", (double)g4q_ckpt_data_bytes(ck));
    cJSON *arr = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; i < g4q_ckpt_count(ck); i++) {
        const g4q_tensor *t = g4q_ckpt_tensor(ck, i);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        cJSON_AddStringToObject(o, "dtype", g4q_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes);
        cJSON_AddItemToArray(arr, o);
    }
    if (have_cfg) {
        cJSON *m = cJSON_AddObjectToObject(root, "model");
        cJSON_AddNumberToObject(m, "layers", cfg->n_layers);
        cJSON_AddNumberToObject(m, "hidden", cfg->hidden);
        cJSON_AddNumberToObject(m, "intermediate", cfg->intermediate);
        cJSON_AddNumberToObject(m, "vocab", cfg->vocab_size);
        cJSON_AddBoolToObject(m, "text_only", cfg->text_only);
    }
    cJSON_AddItemToObject(root, "quantization", quant ? cJSON_Duplicate(quant, 1) : cJSON_CreateNull());
    char *s = cJSON_Print(root);
    if (s)
        puts(s);
    free(s);
    cJSON_Delete(root);
}

static g4q_status inspect(g4q_ctx *ctx, const char *dir, const inspect_opts *o)
{
    g4q_ckpt *ck = NULL;
    cJSON *config = NULL, *hf_quant = NULL, *quant = NULL;
    g4q_config *cfg = calloc(1, sizeof *cfg);
    int have_cfg = 0;
    const char *qsource = NULL;
    g4q_status st = cfg ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    if (st == G4Q_OK && !g4q_is_dir(dir))
        st = g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "%s: not a directory", dir);
    if (st == G4Q_OK)
        st = g4q_ckpt_open(ctx, dir, &ck);
    if (st == G4Q_OK)
        st = read_json(ctx, dir, "config.json", &config);
    if (st == G4Q_OK)
        st = read_json(ctx, dir, "hf_quant_config.json", &hf_quant);
    if (st == G4Q_OK && config) {
        char path[4096];
        st = g4q_path_join(ctx, path, sizeof path, dir, "config.json");
        if (st == G4Q_OK)
            st = g4q_config_load(ctx, path, cfg);
        have_cfg = st == G4Q_OK;
    }
    if (st == G4Q_OK) {
        quant = quant_config(hf_quant, config, &qsource);
        if (o->json)
            print_json(ck, cfg, have_cfg, quant);
        else
            print_text(ck, cfg, have_cfg, quant, qsource, o);
    }
    cJSON_Delete(quant);
    cJSON_Delete(hf_quant);
    cJSON_Delete(config);
    g4q_ckpt_close(ck);
    free(cfg);
    return st;
}

/* --check: the report goes to stdout; problems make the tool fail. */
static g4q_status check(g4q_ctx *ctx, const char *dir, const inspect_opts *o)
{
    g4q_check_report rep;
    G4Q_TRY(g4q_check_dir(ctx, dir, &rep));
    if (o->json) {
        cJSON *j = g4q_check_report_to_cjson(&rep, dir);
        char *s = j ? cJSON_Print(j) : NULL;
        if (s)
            puts(s);
        free(s);
        cJSON_Delete(j);
    } else {
        g4q_check_report_print(&rep, dir, stdout);
    }
    size_t n = rep.n_problems;
    g4q_check_report_free(&rep);
    if (n)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s: %zu problem%s found by --check", dir, n,
                        n == 1 ? "" : "s");
    return G4Q_OK;
}

/* --diff: the differences go to stdout; any difference makes the tool fail. */
static g4q_status diff(g4q_ctx *ctx, const char *a, const char *b)
{
    g4q_diff_summary sum;
    G4Q_TRY(g4q_diff_dirs(ctx, a, b, stdout, &sum));
    if (sum.only_a || sum.only_b || sum.mismatched || sum.different || sum.json_differences)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s and %s differ", a, b);
    return G4Q_OK;
}

int main(int argc, char **argv)
{
    inspect_opts o = {0};
    static const char summary[] =
        "Lists the tensors of a safetensors checkpoint folder (model.safetensors, or shards with\n"
        "model.safetensors.index.json): name, dtype, shape and bytes, then totals per dtype, the\n"
        "Gemma 4 model described by config.json, and the quantization config. Every header is\n"
        "validated; a bad checkpoint is an error naming the file and tensor.";
    const g4q_opt opts[] = {
        {"--json", G4Q_OPT_FLAG, &o.json, NULL, "print one JSON object instead of the table"},
        {"--summary", G4Q_OPT_FLAG, &o.summary_only, NULL, "totals only, no per-tensor lines"},
        {"--check", G4Q_OPT_FLAG, &o.check, NULL,
         "verify a quantized export against the loader rules (formats.md): tensors, JSON, "
         "excludes, fused scales, scale ranges; one line per problem, exit code 8 on problems"},
        {"--diff", G4Q_OPT_FLAG, &o.diff, NULL,
         "compare two exports, DIR and DIR2: tensors by name (only-in, dtype/shape, differing "
         "bytes, largest dequantized difference per quantized module) and the quantization JSON "
         "key by key; exit code 8 when they differ"},
        {NULL, 0, NULL, NULL, NULL},
    };
    const g4q_cli cli = {"gemma4q-inspect", "[options] DIR [DIR2]", summary, opts};
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    const char *pos[2];
    int n_pos = 0, help = 0;
    g4q_status st = g4q_cli_parse(&ctx, &cli, argc, argv, 1, pos, 2, &n_pos, &help);
    if (help)
        return 0;
    if (st == G4Q_OK && n_pos != (o.diff ? 2 : 1))
        st = g4q_fail(&ctx, G4Q_ERR_USAGE, o.diff ? "--diff expects two checkpoint directories"
                                                  : "expected one checkpoint directory");
    if (st == G4Q_OK)
        st = o.diff ? diff(&ctx, pos[0], pos[1]) : o.check ? check(&ctx, pos[0], &o)
                                                           : inspect(&ctx, pos[0], &o);
    return g4q_cli_finish(&cli, &ctx, st);
}
