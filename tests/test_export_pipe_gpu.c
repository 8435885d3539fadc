/* The exporter on the GPU (its pipe of backend/wquant.h: weights uploaded, quantized and copied
 * back overlapped, fused-group amaxes taken on the device) against the exporter on the CPU, on a
 * fresh tiny synthetic model, through the library:
 *   - weight-only recipes (NVFP4 compressed-tensors max, NVFP4 ModelOpt MSE with FP8 KV cast,
 *     FP8 128x128 MSE, INT4 MLP-only), written in shards: every file of the two folders is
 *     byte-identical;
 *   - a NaN in a fused group's second member (v_proj) and in a lone Linear (o_proj): both devices
 *     fail with G4Q_ERR_NUMERIC and the same message, and leave neither OUT nor OUT.partial.
 * Needs a CUDA GPU (label gpu); fails without one. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/device.h"
#include "backend/wquant.h"
#include "base/outdir.h"
#include "base/sys.h"
#include "export/export.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/synth.h"
#include "model/weights.h"
#include "recipe/recipe.h"
#include "testutil.h"

static char g_root[4096];

static int make_model(g4q_ctx *ctx, const char *dir)
{
    g4q_synth_spec spec;
    g4q_outdir od;
    if (g4q_synth_preset(ctx, "tiny", &spec) != G4Q_OK) return 0;
    spec.seed = g4q_test_seed();
    g4q_synth_result res;
    if (g4q_outdir_begin(ctx, &od, dir, 0) != G4Q_OK) return 0;
    g4q_status st = g4q_synth_write(ctx, &spec, od.partial_path, 0, 0, &res);
    if (st == G4Q_OK) st = g4q_outdir_commit(ctx, &od);
    if (st != G4Q_OK) g4q_outdir_abort(&od);
    return st == G4Q_OK;
}

/* Exports model_dir with the recipe file on `device` into out_dir (4 MB shards). */
static g4q_status export_on(g4q_ctx *ctx, const char *model_dir, const char *recipe,
                            g4q_device_kind device, const char *out_dir)
{
    g4q_recipe *r = NULL;
    g4q_ckpt *ck = NULL;
    g4q_config *cfg = calloc(1, sizeof *cfg);
    g4q_weights *w = calloc(1, sizeof *w);
    g4q_plan plan = {0};
    g4q_status st = cfg && w ? G4Q_OK : G4Q_ERR_NOMEM;
    if (st == G4Q_OK) st = g4q_recipe_load(ctx, recipe, &r);
    if (st == G4Q_OK) st = g4q_config_load(ctx, model_dir, cfg);
    if (st == G4Q_OK) st = g4q_ckpt_open(ctx, model_dir, &ck);
    if (st == G4Q_OK)
        st = g4q_weights_bind(ctx, cfg, g4q_ckpt_tensor(ck, 0), g4q_ckpt_count(ck), model_dir, w);
    if (st == G4Q_OK)
        st = g4q_plan_build(ctx, r, cfg, w, g4q_ckpt_tensor(ck, 0), g4q_ckpt_count(ck), &plan);
    g4q_export_opts eo = {.out_dir = out_dir, .device = device, .shard_bytes = 4u << 20};
    if (st == G4Q_OK) st = g4q_export_run(ctx, &plan, ck, cfg, &eo, NULL);
    g4q_plan_free(&plan);
    g4q_ckpt_close(ck);
    g4q_recipe_free(r);
    free(cfg);
    free(w);
    return st;
}

static int same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    static char ba[1 << 16], bb[1 << 16];
    while (same) {
        size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
        same = na == nb && memcmp(ba, bb, na) == 0;
        if (na == 0) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* Every file of a is in b with the same bytes, and b has no other; returns the files compared. */
static int same_dirs(const char *a, const char *b)
{
    int n = 0, nb = 0;
    DIR *d = opendir(a);
    if (!CHECK_MSG(d != NULL, "%s: cannot list", a)) return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char pa[8300], pb[8300];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        CHECK_MSG(same_file(pa, pb), "%s differs between the CPU and the GPU export", e->d_name);
        n++;
    }
    closedir(d);
    d = opendir(b);
    while (d && (e = readdir(d)) != NULL)
        nb += e->d_name[0] != '.';
    if (d) closedir(d);
    CHECK_EQ_INT(nb, n);
    return n;
}

static void identity(g4q_ctx *ctx, const char *model, const char *recipe_rel)
{
    char recipe[4200], cpu[4200], gpu[4200];
    snprintf(recipe, sizeof recipe, "%s/%s", G4Q_SOURCE_DIR, recipe_rel);
    snprintf(cpu, sizeof cpu, "%s/cpu", g_root);
    snprintf(gpu, sizeof gpu, "%s/gpu", g_root);
    g4q_status a = export_on(ctx, model, recipe, G4Q_DEVICE_CPU, cpu);
    if (!CHECK_MSG(a == G4Q_OK, "%s on the CPU: %s", recipe_rel, g4q_ctx_error(ctx))) return;
    g4q_status b = export_on(ctx, model, recipe, G4Q_DEVICE_CUDA, gpu);
    if (!CHECK_MSG(b == G4Q_OK, "%s on the GPU: %s", recipe_rel, g4q_ctx_error(ctx))) return;
    int n = same_dirs(cpu, gpu);
    printf("  %s: %d files, CPU and GPU exports compared\n", recipe_rel, n);
    g4q_remove_tree(ctx, cpu);
    g4q_remove_tree(ctx, gpu);
}

/* Writes bf16 NaN over element `at` of tensor `name` of model_dir's safetensors (saving the old
 * value into *old), or restores it (restore: *old written back). */
static int poke(g4q_ctx *ctx, const char *model, const char *name, uint64_t at, uint16_t *old,
                int restore)
{
    g4q_ckpt *ck = NULL;
    if (g4q_ckpt_open(ctx, model, &ck) != G4Q_OK) return 0;
    int ok = 0;
    for (size_t i = 0; i < g4q_ckpt_count(ck); i++) {
        const g4q_tensor *t = g4q_ckpt_tensor(ck, 0) + i;
        if (strcmp(t->name, name) != 0) continue;
        const char *path = g4q_st_path(g4q_ckpt_file(ck, (size_t)t->file));
        int fd = open(path, O_RDWR);
        const off_t off = (off_t)(t->file_offset + 2 * at);
        const uint16_t nan = 0x7fc0;
        if (fd >= 0)
            ok = restore ? pwrite(fd, old, 2, off) == 2
                         : pread(fd, old, 2, off) == 2 && pwrite(fd, &nan, 2, off) == 2;
        if (fd >= 0) close(fd);
    }
    g4q_ckpt_close(ck);
    return ok;
}

static void nan_fails_alike(g4q_ctx *ctx, const char *model, const char *name)
{
    char recipe[4200], out[4200], partial[4300], msg_cpu[G4Q_ERR_MSG_MAX];
    snprintf(recipe, sizeof recipe, "%s/recipes/nvfp4a16.yaml", G4Q_SOURCE_DIR);
    snprintf(out, sizeof out, "%s/nan", g_root);
    snprintf(partial, sizeof partial, "%s.partial", out);
    uint16_t old = 0;
    if (!CHECK_MSG(poke(ctx, model, name, 777, &old, 0), "cannot write NaN into %s", name))
        return;
    g4q_status a = export_on(ctx, model, recipe, G4Q_DEVICE_CPU, out);
    snprintf(msg_cpu, sizeof msg_cpu, "%s", g4q_ctx_error(ctx));
    CHECK_STATUS(a, G4Q_ERR_NUMERIC);
    g4q_status b = export_on(ctx, model, recipe, G4Q_DEVICE_CUDA, out);
    CHECK_STATUS(b, G4Q_ERR_NUMERIC);
    CHECK_MSG(strcmp(msg_cpu, g4q_ctx_error(ctx)) == 0, "NaN in %s: CPU '%s', GPU '%s'", name,
              msg_cpu, g4q_ctx_error(ctx));
    CHECK_MSG(strstr(msg_cpu, name) != NULL && strstr(msg_cpu, "element 777") != NULL, "%s",
              msg_cpu);
    CHECK(!g4q_path_exists(out) && !g4q_path_exists(partial));
    CHECK(poke(ctx, model, name, 777, &old, 1));
}

int main(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    ctx.log_level = G4Q_LOG_WARN;
    ctx.progress = -1;
    ctx.threads = 4;
    g4q_wquant_gpu *probe = NULL;
    if (!CHECK_MSG(g4q_wquant_gpu_create(&ctx, &probe) == G4Q_OK, "needs a CUDA GPU: %s",
                   g4q_ctx_error(&ctx)))
        return g4q_test_finish();
    g4q_wquant_gpu_free(probe);
    g4q_test_tmpdir(g_root, sizeof g_root, "export_pipe_gpu");
    char model[4200];
    snprintf(model, sizeof model, "%s/model", g_root);
    if (!CHECK_MSG(make_model(&ctx, model), "synthetic model: %s", g4q_ctx_error(&ctx)))
        return g4q_test_finish();
    const char *recipes[] = {"recipes/nvfp4a16.yaml", "scripts/bench/recipes/w4a16-nvfp4-mse.yaml",
                             "recipes/fp8-block.yaml", "recipes/int4-mlp-only.yaml"};
    for (size_t i = 0; i < sizeof recipes / sizeof *recipes; i++)
        identity(&ctx, model, recipes[i]);
    nan_fails_alike(&ctx, model, "model.language_model.layers.1.self_attn.v_proj.weight");
    nan_fails_alike(&ctx, model, "model.language_model.layers.2.self_attn.o_proj.weight");
    g4q_remove_tree(&ctx, g_root);
    return g4q_test_finish();
}
