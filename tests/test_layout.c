/* The stored-layout table (quant/layout.h): its entries against the tensor lists of formats.md
 * written out here by hand; the plan's outputs for every format against the table; real exports
 * of a synthetic model found through the table (g4q_layout_find), by the runtime loader
 * (g4q_qlinears_bind) and by the export diff; mutated tensor sets refused with the right status;
 * the weight quantizer's CPU job against the quantizers it wraps. */
#include <stdlib.h>
#include <string.h>

#include "backend/wquant.h"
#include "base/bf16.h"
#include "base/outdir.h"
#include "export/diff.h"
#include "export/export.h"
#include "export/plan.h"
#include "model/forward.h"
#include "model/qlinear.h"
#include "model/synth.h"
#include "model/weights.h"
#include "quant/layout.h"
#include "recipe/recipe.h"
#include "testutil.h"

static char g_root[4096];

/* ---- formats.md §2.1, §3, §4, §5.2, §5.3, §6 written out independently of layout.c ---- */

typedef struct tspec {
    const char *suffix;
    g4q_dtype dtype;
    int ndim;
    int64_t shape[4];
} tspec;

/* The tensors of format f for W [o, i] (INT4 groups of 128), input scale when act. */
static int expected(g4q_layout_format f, int64_t o, int64_t i, int act, tspec *s)
{
    int n = 0;
    switch (f) {
    case G4Q_LAYOUT_NVFP4_MO:
    case G4Q_LAYOUT_NVFP4_CT: {
        const int ct = f == G4Q_LAYOUT_NVFP4_CT; /* CT: other names, scalars stored as [1] */
        s[n++] = (tspec){ct ? "weight_packed" : "weight", G4Q_DT_U8, 2, {o, i / 2}};
        s[n++] = (tspec){"weight_scale", G4Q_DT_F8_E4M3, 2, {o, i / 16}};
        s[n++] = (tspec){ct ? "weight_global_scale" : "weight_scale_2", G4Q_DT_F32, ct, {1}};
        if (act) s[n++] = (tspec){ct ? "input_global_scale" : "input_scale", G4Q_DT_F32, ct, {1}};
        break;
    }
    case G4Q_LAYOUT_FP8_TENSOR:
        s[n++] = (tspec){"weight", G4Q_DT_F8_E4M3, 2, {o, i}};
        s[n++] = (tspec){"weight_scale", G4Q_DT_F32, 0, {0}};
        if (act) s[n++] = (tspec){"input_scale", G4Q_DT_F32, 0, {0}};
        break;
    case G4Q_LAYOUT_FP8_BLOCK:
        s[n++] = (tspec){"weight", G4Q_DT_F8_E4M3, 2, {o, i}};
        s[n++] = (tspec){"weight_scale", G4Q_DT_F32, 4, {(o + 127) / 128, 1, (i + 127) / 128, 1}};
        break;
    case G4Q_LAYOUT_INT4_GPTQ:
        s[n++] = (tspec){"qweight", G4Q_DT_I32, 2, {i / 8, o}};
        s[n++] = (tspec){"qzeros", G4Q_DT_I32, 2, {i / 128, o / 8}};
        s[n++] = (tspec){"scales", G4Q_DT_F16, 2, {i / 128, o}};
        s[n++] = (tspec){"g_idx", G4Q_DT_I32, 1, {i}};
        break;
    case G4Q_LAYOUT_INT4_CT:
        s[n++] = (tspec){"weight_packed", G4Q_DT_I32, 2, {o, i / 8}};
        s[n++] = (tspec){"weight_scale", G4Q_DT_BF16, 2, {o, i / 128}};
        s[n++] = (tspec){"weight_shape", G4Q_DT_I64, 1, {2}};
        break;
    default:
        break;
    }
    return n;
}

static int same_shape(int nd, const int64_t *a, const int64_t *b)
{
    for (int d = 0; d < nd; d++)
        if (a[d] != b[d]) return 0;
    return 1;
}

static void test_table(void)
{
    static const char *const names[G4Q_LAYOUT_COUNT] = {
        "bf16",        "nvfp4 (modelopt)", "nvfp4 (compressed-tensors)", "fp8 per-tensor",
        "fp8 128x128", "int4 (gptq)",      "int4 (compressed-tensors)"};
    CHECK(g4q_layout_get(G4Q_LAYOUT_BF16) == NULL);
    CHECK(g4q_layout_get(G4Q_LAYOUT_COUNT) == NULL);
    const int64_t shapes[][2] = {{256, 512}, {128, 1024}, {384, 3840}, {1024, 128}};
    for (int f = 0; f < G4Q_LAYOUT_COUNT; f++) {
        CHECK_MSG(strcmp(g4q_layout_name((g4q_layout_format)f), names[f]) == 0, "name of %d: %s", f,
                  g4q_layout_name((g4q_layout_format)f));
        CHECK(strcmp(g4q_qlinear_format_name((g4q_qlinear_format)f), names[f]) == 0);
        const g4q_layout *l = g4q_layout_get((g4q_layout_format)f);
        if (!l) continue;
        CHECK_EQ_INT(l->format, f);
        /* Codes first, plain dims (rows and cols are inferred from them); calibrated roles last. */
        CHECK_EQ_INT(l->t[0].role, G4Q_LROLE_CODES);
        for (int d = 0; d < l->t[0].ndim; d++)
            CHECK(!l->t[0].dim[d].ceil && l->t[0].dim[d].div > 0 &&
                  l->t[0].dim[d].of != G4Q_LDIM_CONST);
        for (int k = 1; k < l->n; k++)
            CHECK_MSG(!g4q_layout_role_calibrated(l->t[k - 1].role) ||
                          g4q_layout_role_calibrated(l->t[k].role),
                      "%s: calibrated tensor before a written one", l->name);
        for (int a = 0; a < (int)(sizeof shapes / sizeof *shapes); a++) {
            const int64_t o = shapes[a][0], i = shapes[a][1];
            tspec s[G4Q_LAYOUT_MAX_TENSORS];
            int n = expected((g4q_layout_format)f, o, i, 1, s);
            if (!CHECK_MSG(n == l->n, "%s: %d tensors in the table, %d in formats.md", l->name,
                           l->n, n))
                continue;
            for (int k = 0; k < n; k++) {
                int64_t got[G4Q_LAYOUT_MAX_DIMS];
                int nd = g4q_layout_shape(&l->t[k], o, i, l->group ? l->group : 128, got);
                CHECK_MSG(strcmp(l->t[k].suffix, s[k].suffix) == 0 && l->t[k].dtype == s[k].dtype &&
                              nd == s[k].ndim && same_shape(nd, got, s[k].shape),
                          "%s [%lld, %lld] tensor %d: table %s %s, formats.md %s %s", l->name,
                          (long long)o, (long long)i, k, l->t[k].suffix,
                          g4q_dtype_name(l->t[k].dtype), s[k].suffix, g4q_dtype_name(s[k].dtype));
                uint64_t bytes = g4q_dtype_size(s[k].dtype);
                for (int d = 0; d < s[k].ndim; d++)
                    bytes *= (uint64_t)s[k].shape[d];
                CHECK_EQ_INT(g4q_layout_nbytes(&l->t[k], o, i, 128), bytes);
            }
        }
    }
    const g4q_layout_kv *k = g4q_layout_kv_get(0), *v = g4q_layout_kv_get(1);
    CHECK(k && v && !g4q_layout_kv_get(2));
    CHECK(strcmp(k->proj, "k_proj") == 0 && strcmp(k->t.suffix, "k_scale") == 0 &&
          k->t.dtype == G4Q_DT_F32 && k->t.ndim == 0);
    CHECK(strcmp(v->proj, "v_proj") == 0 && strcmp(v->t.suffix, "v_scale") == 0);
    char mod[64];
    CHECK(g4q_layout_module_of("a.b.qweight", mod, sizeof mod) && strcmp(mod, "a.b") == 0);
    CHECK(g4q_layout_module_of("a.weight_packed", mod, sizeof mod) && strcmp(mod, "a") == 0);
    CHECK(!g4q_layout_module_of("a.b.weight_scale", mod, sizeof mod));
    CHECK(!g4q_layout_module_of("weight", mod, sizeof mod));
}

/* ---- exports of a synthetic model ---- */

/* The recipes' calibration section; the export gets amaxes from fake_calibration instead. */
#define CALIB "calibration:\n  dataset: builtin:default\n  samples: 1\n  seq_len: 16\n"

static const struct {
    const char *name;
    g4q_layout_format format;
    int act;
    const char *recipe;
} cases[] = {
    {"mo-nvfp4-w4a4", G4Q_LAYOUT_NVFP4_MO, 1,
     "name: a\nexport: modelopt\nrules:\n"
     "  - pattern: \"model.language_model.layers.*.{self_attn,mlp}.*_proj\"\n"
     "    weights: nvfp4\n    activations: nvfp4\n" CALIB},
    {"mo-nvfp4-w4a16", G4Q_LAYOUT_NVFP4_MO, 0,
     "name: b\nexport: modelopt\nrules:\n"
     "  - pattern: \"model.language_model.layers.*.mlp.*_proj\"\n    weights: nvfp4\n"},
    {"ct-nvfp4", G4Q_LAYOUT_NVFP4_CT, 0,
     "name: c\nexport: compressed-tensors\nrules:\n"
     "  - pattern: \"model.language_model.layers.*.{self_attn,mlp}.*_proj\"\n"
     "    weights: nvfp4\n"},
    {"mo-fp8", G4Q_LAYOUT_FP8_TENSOR, 1,
     "name: d\nexport: modelopt\nrules:\n"
     "  - pattern: \"model.language_model.layers.*.{self_attn,mlp}.*_proj\"\n"
     "    weights: fp8\n    activations: fp8\n" CALIB},
    {"fp8-block-kv", G4Q_LAYOUT_FP8_BLOCK, 0,
     "name: e\nexport: modelopt\nrules:\n"
     "  - pattern: \"model.language_model.layers.*.{self_attn,mlp}.*_proj\"\n"
     "    weights: fp8-block\n"
     "  - pattern: \"model.embed_audio.embedding_projection\"\n    weights: fp8-block\n"
     "kv_cache:\n  format: fp8\n  scales: calibrated\n" CALIB},
    {"gptq", G4Q_LAYOUT_INT4_GPTQ, 0,
     "name: f\nexport: gptq\nrules:\n"
     "  - pattern: \"model.language_model.layers.*.mlp.*_proj\"\n    weights: int4\n"},
    {"ct-int4", G4Q_LAYOUT_INT4_CT, 0,
     "name: g\nexport: compressed-tensors\nrules:\n"
     "  - pattern: \"model.language_model.layers.*.{self_attn,mlp}.*_proj\"\n"
     "    weights: int4\n"},
};

typedef struct model {
    g4q_config *cfg;
    g4q_ckpt *ck;
    g4q_weights *w;
} model;

static int make_model(g4q_ctx *ctx, const char *dir, model *m)
{
    g4q_synth_spec spec;
    g4q_outdir od;
    g4q_synth_result res;
    memset(m, 0, sizeof *m);
    if (g4q_synth_preset(ctx, "tiny", &spec) != G4Q_OK) return 0;
    spec.seed = g4q_test_seed();
    if (g4q_outdir_begin(ctx, &od, dir, 0) != G4Q_OK) return 0;
    g4q_status st = g4q_synth_write(ctx, &spec, od.partial_path, 0, 0, &res);
    st = st == G4Q_OK ? g4q_outdir_commit(ctx, &od) : (g4q_outdir_abort(&od), st);
    m->cfg = calloc(1, sizeof *m->cfg);
    m->w = calloc(1, sizeof *m->w);
    if (st == G4Q_OK && m->cfg && m->w) st = g4q_config_load(ctx, dir, m->cfg);
    if (st == G4Q_OK) st = g4q_ckpt_open(ctx, dir, &m->ck);
    if (st == G4Q_OK)
        st = g4q_weights_bind(ctx, m->cfg, g4q_ckpt_tensor(m->ck, 0), g4q_ckpt_count(m->ck), dir,
                              m->w);
    return st == G4Q_OK;
}

static void free_model(model *m)
{
    g4q_ckpt_close(m->ck);
    free(m->cfg);
    free(m->w);
}

/* Calibration amaxes of 1 everywhere: the tensors' presence is what is tested, not the values. */
static void fake_calibration(const g4q_config *cfg, g4q_calib_result *r)
{
    memset(r, 0, sizeof *r);
    r->n_layers = cfg->n_layers;
    for (int l = 0; l < cfg->n_layers; l++)
        for (int s = 0; s < G4Q_OBS_COUNT; s++) {
            r->amax[l][s] = 1.0f;
            r->tokens[l][s] = 1;
        }
    snprintf(r->dataset, sizeof r->dataset, "test");
    snprintf(r->device, sizeof r->device, "cpu");
}

/* Every quantized item's outputs are its format's table entries (and formats.md's list). */
static void check_plan(const g4q_plan *p, g4q_layout_format want, int act, int kv)
{
    size_t quantized = 0;
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *it = &p->items[i];
        if (it->format == G4Q_PF_KEEP) continue;
        quantized++;
        CHECK_EQ_INT(it->format, want);
        const g4q_layout *l = g4q_layout_get((g4q_layout_format)it->format);
        const int64_t o = it->src->shape[0], in = it->src->shape[1];
        tspec s[G4Q_LAYOUT_MAX_TENSORS];
        const int n = expected(want, o, in, act, s);
        const int n_kv = kv && it->role == G4Q_W_K_PROJ ? 2 : 0;
        if (!CHECK_MSG(it->n_out == n + n_kv, "%s: %d outputs, expected %d", it->module, it->n_out,
                       n + n_kv))
            continue;
        CHECK_EQ_INT(g4q_plan_item_weight_outputs(it), act ? n - 1 : n);
        for (int k = 0; k < n; k++) {
            const g4q_plan_output *po = &it->out[k];
            char name[G4Q_PLAN_NAME_MAX];
            int64_t shape[G4Q_LAYOUT_MAX_DIMS];
            snprintf(name, sizeof name, "%s.%s", it->module, l->t[k].suffix);
            int nd = g4q_layout_shape(&l->t[k], o, in, l->group, shape);
            CHECK_MSG(strcmp(po->name, name) == 0 && po->dtype == l->t[k].dtype && po->ndim == nd &&
                          same_shape(nd, po->shape, shape) && (int)po->kind == (int)l->t[k].role &&
                          po->nbytes == g4q_layout_nbytes(&l->t[k], o, in, l->group),
                      "%s: plan output %d '%s' is not the table's '%s'", it->module, k, po->name,
                      name);
            CHECK_MSG(strcmp(l->t[k].suffix, s[k].suffix) == 0 && po->dtype == s[k].dtype &&
                          po->ndim == s[k].ndim && same_shape(po->ndim, po->shape, s[k].shape),
                      "%s: plan output '%s' differs from formats.md", it->module, po->name);
        }
        if (n_kv) {
            CHECK(strstr(it->out[n].name, ".k_proj.k_scale") && it->out[n].ndim == 0);
            CHECK(strstr(it->out[n + 1].name, ".v_proj.v_scale") &&
                  it->out[n + 1].kind == G4Q_OUT_V_SCALE);
        }
    }
    CHECK_MSG(quantized > 0 && quantized == p->n_quantized, "%zu quantized items", quantized);
}

static const g4q_tensor *ckpt_lookup(const void *src, const char *name)
{
    return g4q_ckpt_find(src, name);
}

/* The export's modules, found through the table with and without the config's shape, by the
 * loader, and by the diff against a copy with one changed code byte. */
static void check_export(g4q_ctx *ctx, const g4q_plan *p, const char *dir, g4q_layout_format want,
                         const g4q_config *cfg)
{
    g4q_ckpt *ck = NULL;
    if (!CHECK_STATUS(g4q_ckpt_open(ctx, dir, &ck), G4Q_OK)) return;
    size_t found = 0;
    const g4q_tensor *first_codes = NULL;
    for (size_t i = 0; i < p->n_items; i++) {
        const g4q_plan_item *it = &p->items[i];
        if (!it->module[0]) continue;
        const int64_t o = it->src->shape[0], in = it->src->shape[1];
        for (int infer = 0; infer < 2; infer++) {
            g4q_layout_match m;
            g4q_status st = g4q_layout_find(ctx, dir, ckpt_lookup, ck, it->module, infer ? 0 : o,
                                            infer ? 0 : in, &m);
            if (!CHECK_MSG(st == G4Q_OK, "%s: %s", it->module, g4q_ctx_error(ctx))) continue;
            CHECK_MSG((int)m.format == (int)it->format, "%s: found as %s, planned %s", it->module,
                      g4q_layout_name(m.format), g4q_plan_format_name(it->format));
            if (it->format == G4Q_PF_KEEP) continue;
            CHECK_EQ_INT(m.rows, o);
            CHECK_EQ_INT(m.cols, in);
            CHECK_EQ_INT(m.group, m.layout->group);
            for (int k = 0; k < g4q_plan_item_weight_outputs(it); k++)
                CHECK(m.t[k] && strcmp(m.t[k]->name, it->out[k].name) == 0);
            found += !infer;
            if (!first_codes) first_codes = m.t[0];
        }
    }
    CHECK_EQ_INT(found, p->n_quantized);
    g4q_qlinears *q = calloc(1, sizeof *q);
    g4q_weights *w = calloc(1, sizeof *w);
    if (q && w &&
        CHECK_STATUS(
            g4q_qlinears_bind(ctx, cfg, g4q_ckpt_tensor(ck, 0), g4q_ckpt_count(ck), dir, w, q),
            G4Q_OK)) {
        CHECK_EQ_INT(q->count[want], p->n_quantized);
        CHECK_EQ_INT(g4q_qlinears_quantized(q), p->n_quantized);
    }
    free(q);
    free(w);
    /* The diff classifies the module whose first code byte differs, and only it. */
    char copy[4400], path[4500];
    snprintf(copy, sizeof copy, "%s-copy", dir);
    CHECK_STATUS(g4q_mkdir_p(ctx, copy), G4Q_OK);
    static const char *const files[] = {"model.safetensors", "config.json"};
    for (int f = 0; f < 2; f++) {
        char src[4500];
        snprintf(src, sizeof src, "%s/%s", dir, files[f]);
        snprintf(path, sizeof path, "%s/%s", copy, files[f]);
        CHECK_STATUS(g4q_copy_file(ctx, src, path), G4Q_OK);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", copy);
    FILE *fp = first_codes ? fopen(path, "r+b") : NULL;
    if (CHECK(fp != NULL)) {
        unsigned char b = (unsigned char)(((const unsigned char *)first_codes->data)[0] ^ 0x11u);
        CHECK(fseek(fp, (long)first_codes->file_offset, SEEK_SET) == 0 && fputc(b, fp) != EOF);
        fclose(fp);
        g4q_diff_summary sum;
        CHECK_STATUS(g4q_diff_dirs(ctx, dir, copy, NULL, &sum), G4Q_OK);
        CHECK_EQ_INT(sum.different, 1);
        CHECK_MSG(sum.modules_compared == 1, "%s: diff dequantized %zu modules", dir,
                  sum.modules_compared);
    }
    g4q_ckpt_close(ck);
}

static void test_exports(g4q_ctx *ctx, model *mdl)
{
    g4q_calib_result calib;
    fake_calibration(mdl->cfg, &calib);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char rpath[4200], out[4200];
        snprintf(rpath, sizeof rpath, "%s/%s.yaml", g_root, cases[c].name);
        snprintf(out, sizeof out, "%s/out-%s", g_root, cases[c].name);
        g4q_recipe *r = NULL;
        g4q_plan plan = {0};
        g4q_status st = g4q_write_file(ctx, rpath, cases[c].recipe, strlen(cases[c].recipe));
        if (st == G4Q_OK) st = g4q_recipe_load(ctx, rpath, &r);
        if (st == G4Q_OK)
            st = g4q_plan_build(ctx, r, mdl->cfg, mdl->w, g4q_ckpt_tensor(mdl->ck, 0),
                                g4q_ckpt_count(mdl->ck), &plan);
        const int kv = strstr(cases[c].recipe, "calibrated") != NULL;
        if (st == G4Q_OK) check_plan(&plan, cases[c].format, cases[c].act, kv);
        g4q_export_opts eo = {.out_dir = out, .device = G4Q_DEVICE_CPU, .calib = &calib};
        if (st == G4Q_OK) st = g4q_export_run(ctx, &plan, mdl->ck, mdl->cfg, &eo, NULL);
        if (CHECK_MSG(st == G4Q_OK, "%s: %s", cases[c].name, g4q_ctx_error(ctx)))
            check_export(ctx, &plan, out, cases[c].format, mdl->cfg);
        g4q_plan_free(&plan);
        g4q_recipe_free(r);
    }
}

/* The plan's smoothing sites: the MLP's two inputs when its Linears are smoothed, none for o_proj
 * (nothing before it absorbs factors), and readers of one input must agree. */
static void test_smoothing_plan(g4q_ctx *ctx, model *mdl)
{
    static const struct {
        const char *rules;
        g4q_status want;
        unsigned sites;
    } smooth_cases[] = {
        {"  - pattern: \"model.language_model.layers.*.mlp.*_proj\"\n    weights: nvfp4\n"
         "    smoothing: awq\n",
         G4Q_OK, 1u << G4Q_OBS_MLP_IN | 1u << G4Q_OBS_DOWN_IN},
        {"  - pattern: \"model.language_model.layers.*.self_attn.o_proj\"\n    weights: nvfp4\n"
         "    smoothing: awq\n",
         G4Q_OK, 0},
        {"  - pattern: \"model.language_model.layers.*.self_attn.q_proj\"\n    weights: nvfp4\n"
         "    smoothing: awq\n  - pattern: \"model.language_model.layers.*.self_attn.*_proj\"\n"
         "    weights: nvfp4\n",
         G4Q_ERR_INVALID, 0},
    };
    for (size_t c = 0; c < sizeof smooth_cases / sizeof *smooth_cases; c++) {
        char text[1024], rpath[4200];
        snprintf(text, sizeof text,
                 "name: s\nexport: modelopt\nrules:\n%scalibration:\n  dataset: builtin:default\n"
                 "  samples: 1\n  seq_len: 8\n",
                 smooth_cases[c].rules);
        snprintf(rpath, sizeof rpath, "%s/smooth-%zu.yaml", g_root, c);
        g4q_recipe *r = NULL;
        g4q_plan plan = {0};
        g4q_status st = g4q_write_file(ctx, rpath, text, strlen(text));
        if (st == G4Q_OK) st = g4q_recipe_load(ctx, rpath, &r);
        if (CHECK_MSG(st == G4Q_OK, "smoothing case %zu: %s", c, g4q_ctx_error(ctx))) {
            st = g4q_plan_build(ctx, r, mdl->cfg, mdl->w, g4q_ckpt_tensor(mdl->ck, 0),
                                g4q_ckpt_count(mdl->ck), &plan);
            CHECK_MSG(st == smooth_cases[c].want, "smoothing case %zu: %s (%s)", c, g4q_status_name(st),
                      g4q_ctx_error(ctx));
            if (st == G4Q_OK) {
                CHECK_EQ_INT(plan.smooth_sites, smooth_cases[c].sites);
                CHECK_EQ_INT(plan.needs_calibration, smooth_cases[c].sites != 0);
            } else
                CHECK(strstr(g4q_ctx_error(ctx), "read the same input") != NULL);
        }
        g4q_plan_free(&plan);
        g4q_recipe_free(r);
    }
}

/* ---- mutated tensor sets ---- */

typedef struct tset {
    g4q_tensor t[8];
    int n;
} tset;

static const g4q_tensor *tset_lookup(const void *src, const char *name)
{
    const tset *s = src;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    return NULL;
}

static void add(tset *s, const char *name, g4q_dtype dt, int ndim, int64_t d0, int64_t d1)
{
    g4q_tensor *t = &s->t[s->n++];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = dt;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->numel = (uint64_t)(ndim > 0 ? d0 : 1) * (uint64_t)(ndim > 1 ? d1 : 1);
}

static g4q_status find_in(g4q_ctx *ctx, const tset *s, int64_t o, int64_t i, g4q_layout_match *m)
{
    return g4q_layout_find(ctx, "t", tset_lookup, s, "m", o, i, m);
}

static void test_mutations(g4q_ctx *ctx)
{
    g4q_layout_match m;
    tset s = {0};
    add(&s, "m.weight", G4Q_DT_U8, 2, 32, 64);
    add(&s, "m.weight_scale", G4Q_DT_F8_E4M3, 2, 32, 8);
    add(&s, "m.weight_scale_2", G4Q_DT_F32, 0, 0, 0);
    CHECK_STATUS(find_in(ctx, &s, 32, 128, &m), G4Q_OK);
    CHECK_EQ_INT(m.format, G4Q_LAYOUT_NVFP4_MO);
    CHECK(g4q_layout_match_role(&m, G4Q_LROLE_INPUT_SCALE) == NULL);
    s.t[2].ndim = 1, s.t[2].shape[0] = 1; /* [1] is read as the scalar it is */
    CHECK_STATUS(find_in(ctx, &s, 0, 0, &m), G4Q_OK);
    CHECK(m.rows == 32 && m.cols == 128);
    CHECK_STATUS(find_in(ctx, &s, 32, 256, &m), G4Q_ERR_SHAPE); /* not the config's shape */
    CHECK(strstr(g4q_ctx_error(ctx), "tensor 'm.weight': U8 [32, 64], expected U8 [32, 128]"));
    CHECK_STATUS(find_in(ctx, &s, 32, 120, &m), G4Q_ERR_SHAPE); /* in % 16 */
    s.t[1].dtype = G4Q_DT_U8;
    CHECK_STATUS(find_in(ctx, &s, 32, 128, &m), G4Q_ERR_SHAPE);
    s.t[1].dtype = G4Q_DT_F8_E4M3;
    s.n = 2; /* weight_scale_2 dropped */
    CHECK_STATUS(find_in(ctx, &s, 32, 128, &m), G4Q_ERR_FORMAT);
    CHECK(strstr(g4q_ctx_error(ctx), "tensor 'm.weight_scale_2' missing"));
    add(&s, "m.weight_scale_2", G4Q_DT_F32, 0, 0, 0);
    add(&s, "m.qweight", G4Q_DT_I32, 2, 16, 32);
    CHECK_STATUS(find_in(ctx, &s, 32, 128, &m), G4Q_ERR_FORMAT); /* two forms */
    /* "<m>.weight" BF16 is no quantized form; weight_packed in a foreign dtype is an error. */
    tset b = {0};
    add(&b, "m.weight", G4Q_DT_BF16, 2, 32, 128);
    CHECK_STATUS(find_in(ctx, &b, 32, 128, &m), G4Q_OK);
    CHECK_EQ_INT(m.format, G4Q_LAYOUT_BF16);
    b.t[0].name = "m.weight_packed";
    CHECK_STATUS(find_in(ctx, &b, 32, 128, &m), G4Q_ERR_SHAPE);
    /* FP8: a scalar scale is per tensor, [R, 1, C, 1] or [R, C] blocks, anything else neither. */
    tset f = {0};
    add(&f, "m.weight", G4Q_DT_F8_E4M3, 2, 256, 384);
    add(&f, "m.weight_scale", G4Q_DT_F32, 0, 0, 0);
    CHECK_STATUS(find_in(ctx, &f, 256, 384, &m), G4Q_OK);
    CHECK_EQ_INT(m.format, G4Q_LAYOUT_FP8_TENSOR);
    f.t[1].ndim = 2, f.t[1].shape[0] = 2, f.t[1].shape[1] = 3;
    CHECK_STATUS(find_in(ctx, &f, 256, 384, &m), G4Q_OK);
    CHECK_EQ_INT(m.format, G4Q_LAYOUT_FP8_BLOCK);
    f.t[1].shape[1] = 4;
    CHECK_STATUS(find_in(ctx, &f, 256, 384, &m), G4Q_ERR_SHAPE);
    CHECK(strstr(g4q_ctx_error(ctx), "(as fp8 per-tensor)") &&
          strstr(g4q_ctx_error(ctx), "(as fp8 128x128)"));
    /* INT4: the group comes from the scales; one that does not divide in is refused. */
    tset g = {0};
    add(&g, "m.weight_packed", G4Q_DT_I32, 2, 16, 32);
    add(&g, "m.weight_scale", G4Q_DT_F16, 2, 16, 4);
    CHECK_STATUS(find_in(ctx, &g, 16, 256, &m), G4Q_OK);
    CHECK(m.format == G4Q_LAYOUT_INT4_CT && m.group == 64);
    g.t[1].shape[1] = 3;
    CHECK_STATUS(find_in(ctx, &g, 16, 256, &m), G4Q_ERR_SHAPE);
    g.t[1].shape[1] = 4, g.t[1].dtype = G4Q_DT_I32;
    CHECK_STATUS(find_in(ctx, &g, 16, 256, &m), G4Q_ERR_SHAPE);
    CHECK_STATUS(find_in(NULL, &g, 16, 256, &m), G4Q_ERR_SHAPE); /* quiet */
}

/* ---- the weight quantizer's CPU job gives the wrapped quantizers' bytes ---- */

static void test_wquant_cpu(g4q_ctx *ctx, uint64_t *rng)
{
    const int64_t rows = 24, cols = 256;
    const size_t n = (size_t)(rows * cols);
    uint16_t *w = malloc(n * 2);
    for (size_t i = 0; i < n; i++)
        w[i] = g4q_f32_to_bf16((float)g4q_test_normal(rng));
    uint8_t p1[24 * 128], p2[24 * 128], s1[24 * 16], s2[24 * 16];
    float g1, g2, amax, *deq = malloc(n * sizeof *deq), *ref = malloc(n * sizeof *ref);
    CHECK_STATUS(g4q_quant_amax_bf16(ctx, "w", w, n, &amax), G4Q_OK);
    CHECK_STATUS(g4q_nvfp4_quantize(ctx, "w", w, rows, cols, amax, G4Q_SCALE_MSE, p1, s1, &g1),
                 G4Q_OK);
    g4q_wquant_job job = {.format = G4Q_LAYOUT_NVFP4_MO,
                          .name = "w",
                          .rows = rows,
                          .cols = cols,
                          .method = G4Q_SCALE_MSE,
                          .w = w,
                          .out = {p2, s2, &g2},
                          .deq = deq};
    CHECK_STATUS(g4q_wquant_run(ctx, NULL, &job), G4Q_OK);
    CHECK(!memcmp(p1, p2, sizeof p1) && !memcmp(s1, s2, sizeof s1) && g1 == g2);
    g4q_nvfp4_dequantize(p1, s1, g1, rows, cols, ref);
    CHECK(!memcmp(deq, ref, n * sizeof *ref));
    job.fused = 1, job.group_amax = 2.0f * amax; /* a fused group's larger amax is used */
    CHECK_STATUS(g4q_wquant_cpu(ctx, &job), G4Q_OK);
    CHECK(g2 == g4q_nvfp4_wsf2(2.0f * amax));
    job.out[1] = NULL;
    CHECK_STATUS(g4q_wquant_cpu(ctx, &job), G4Q_ERR_INVALID);
    /* INT4 compressed-tensors (the same job, another format): weight_shape holds [out, in]. */
    int32_t packed[24 * 32];
    uint16_t scales[24 * 2];
    int64_t shape[2] = {0, 0};
    job.format = G4Q_LAYOUT_INT4_CT, job.method = G4Q_SCALE_MAX, job.deq = NULL;
    job.out[0] = packed, job.out[1] = scales, job.out[2] = shape;
    CHECK_STATUS(g4q_wquant_cpu(ctx, &job), G4Q_OK);
    CHECK(shape[0] == rows && shape[1] == cols);
    free(w);
    free(deq);
    free(ref);
}

int main(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    ctx.log_level = G4Q_LOG_WARN;
    ctx.progress = -1;
    uint64_t rng = g4q_test_seed();
    test_table();
    test_mutations(&ctx);
    test_wquant_cpu(&ctx, &rng);
    g4q_test_tmpdir(g_root, sizeof g_root, "layout");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/model", g_root);
    model m;
    if (CHECK_MSG(make_model(&ctx, dir, &m), "synthetic model: %s", g4q_ctx_error(&ctx))) {
        test_exports(&ctx, &m);
        test_smoothing_plan(&ctx, &m);
    }
    free_model(&m);
    g4q_remove_tree(&ctx, g_root);
    return g4q_test_finish();
}
