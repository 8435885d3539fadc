#include "export/diff.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "base/sys.h"
#include "quant/codecs.h"
#include "quant/layout.h"
#include "quant/quant.h"

/* A checkpoint's tensor by name (a g4q_layout_lookup). */
static const g4q_tensor *lookup(const void *ckpt, const char *name)
{
    return g4q_ckpt_find(ckpt, name);
}

static float rd_f32(const void *p, size_t i)
{
    float v;
    memcpy(&v, (const uint8_t *)p + 4 * i, 4);
    return v;
}

static int32_t rd_i32(const void *p, size_t i)
{
    int32_t v;
    memcpy(&v, (const uint8_t *)p + 4 * i, 4);
    return v;
}

static float rd_float(const g4q_tensor *t, size_t i)
{
    uint16_t h;
    switch (t->dtype) {
    case G4Q_DT_F32:
        return rd_f32(t->data, i);
    case G4Q_DT_BF16:
        memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
        return g4q_bf16_to_f32(h);
    case G4Q_DT_F16:
        memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
        return g4q_f16_to_f32(h);
    default:
        return NAN;
    }
}

static float nib32(const void *words, size_t word, int j)
{
    return (float)(((uint32_t)rd_i32(words, word) >> (4 * j)) & 15u);
}

/* The stored layout of `module` in c (quant/layout.h: its tensors checked, rows, cols and group
 * inferred from them); format G4Q_LAYOUT_BF16 when it is not a well-formed quantized module. */
static g4q_layout_match classify(const g4q_ckpt *c, const char *module)
{
    g4q_layout_match m;
    if (g4q_layout_find(NULL, NULL, lookup, c, module, 0, 0, &m) != G4Q_OK)
        m.format = G4Q_LAYOUT_BF16;
    return m;
}

/* Dequantizes a classified module into out (fp32, rows * cols). */
static void dequant(const g4q_layout_match *m, float *out)
{
    const int64_t rows = m->rows, cols = m->cols, group = m->group;
    const g4q_tensor *w = g4q_layout_match_role(m, G4Q_LROLE_CODES);
    const g4q_tensor *s = g4q_layout_match_role(m, G4Q_LROLE_SCALES);
    const g4q_tensor *g = g4q_layout_match_role(m, G4Q_LROLE_GLOBAL);
    switch (m->format) {
    case G4Q_LAYOUT_NVFP4_MO:
        g4q_nvfp4_dequantize(w->data, s->data, rd_f32(g->data, 0), rows, cols, out);
        break;
    case G4Q_LAYOUT_NVFP4_CT:
        g4q_nvfp4_ct_dequantize(w->data, s->data, rd_f32(g->data, 0), rows, cols, out);
        break;
    case G4Q_LAYOUT_FP8_TENSOR:
        g4q_fp8_dequantize_tensor(w->data, rd_f32(g->data, 0), rows, cols, out);
        break;
    case G4Q_LAYOUT_FP8_BLOCK: {
        size_t nb = g4q_fp8_block_count(rows, cols);
        float *sc = malloc(nb * sizeof *sc);
        if (!sc) break;
        for (size_t i = 0; i < nb; i++)
            sc[i] = rd_f32(s->data, i);
        g4q_fp8_dequantize_blocks(w->data, sc, rows, cols, out);
        free(sc);
        break;
    }
    case G4Q_LAYOUT_INT4_GPTQ: {
        /* w[n, k] = (q - (zero + 1)) * scale[g, n], g = k / group (g_idx ignored: desc_act off). */
        const g4q_tensor *qz = g4q_layout_match_role(m, G4Q_LROLE_QZEROS);
        for (int64_t n = 0; n < rows; n++)
            for (int64_t k = 0; k < cols; k++) {
                int64_t gi = k / group;
                float q = nib32(w->data, (size_t)((k / 8) * rows + n), (int)(k % 8));
                float z = nib32(qz->data, (size_t)(gi * qz->shape[1] + n / 8), (int)(n % 8)) + 1;
                out[n * cols + k] = (q - z) * rd_float(s, (size_t)(gi * rows + n));
            }
        break;
    }
    case G4Q_LAYOUT_INT4_CT: {
        const int64_t words = w->shape[1], groups = s->shape[1];
        for (int64_t n = 0; n < rows; n++)
            for (int64_t k = 0; k < cols; k++)
                out[n * cols + k] = (nib32(w->data, (size_t)(n * words + k / 8), (int)(k % 8)) - 8) *
                                    rd_float(s, (size_t)(n * groups + k / group));
        break;
    }
    default:
        break;
    }
}

static int same_bytes(const g4q_tensor *a, const g4q_tensor *b)
{
    return a->dtype == b->dtype && a->ndim == b->ndim &&
           !memcmp(a->shape, b->shape, sizeof a->shape[0] * (size_t)a->ndim) &&
           a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes);
}

static void shape_text(const g4q_tensor *t, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "%s[", g4q_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim && used < n; d++)
        used +=
            (size_t)snprintf(buf + used, n - used, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* Per-tensor lines: only-in, mismatch, differing bytes. */
static void diff_one(const g4q_tensor *ta, const g4q_tensor *tb, FILE *out, g4q_diff_summary *sum)
{
    sum->common++;
    if (ta->dtype != tb->dtype || ta->ndim != tb->ndim ||
        memcmp(ta->shape, tb->shape, sizeof ta->shape[0] * (size_t)ta->ndim)) {
        char sa[96], sb[96];
        shape_text(ta, sa, sizeof sa);
        shape_text(tb, sb, sizeof sb);
        sum->mismatched++;
        if (out) fprintf(out, "MISMATCH %s: A %s, B %s\n", ta->name, sa, sb);
        return;
    }
    uint64_t nd = 0;
    const uint8_t *pa = ta->data, *pb = tb->data;
    for (uint64_t i = 0; i < ta->nbytes; i++)
        nd += pa[i] != pb[i];
    sum->bytes_compared += ta->nbytes;
    sum->bytes_different += nd;
    if (!nd) {
        sum->identical++;
        return;
    }
    sum->different++;
    if (out)
        fprintf(out, "DIFF %s: %llu of %llu bytes differ (%s)\n", ta->name, (unsigned long long)nd,
                (unsigned long long)ta->nbytes, g4q_dtype_name(ta->dtype));
}

/* Whether every tensor of `module` (same name prefix + '.') is byte-identical in a and b. */
static int module_identical(const g4q_ckpt *a, const g4q_ckpt *b, const char *module)
{
    size_t ml = strlen(module);
    for (size_t i = 0; i < g4q_ckpt_count(a); i++) {
        const g4q_tensor *t = g4q_ckpt_tensor(a, i);
        if (strncmp(t->name, module, ml) || t->name[ml] != '.' || strchr(t->name + ml + 1, '.'))
            continue;
        const g4q_tensor *u = g4q_ckpt_find(b, t->name);
        if (!u || !same_bytes(t, u)) return 0;
    }
    return 1;
}

static g4q_status diff_module(g4q_ctx *ctx, const g4q_ckpt *a, const g4q_ckpt *b,
                              const char *module, FILE *out, g4q_diff_summary *sum)
{
    const g4q_layout_match ma = classify(a, module), mb = classify(b, module);
    const int64_t ra = ma.rows, ca = ma.cols, rb = mb.rows, cb = mb.cols;
    if (ma.format == G4Q_LAYOUT_BF16 || mb.format == G4Q_LAYOUT_BF16) return G4Q_OK;
    if (ma.format != mb.format || ra != rb || ca != cb) {
        if (out)
            fprintf(out, "FORMAT %s: A %s [%lld, %lld], B %s [%lld, %lld]\n", module,
                    g4q_layout_name(ma.format), (long long)ra, (long long)ca,
                    g4q_layout_name(mb.format), (long long)rb, (long long)cb);
        return G4Q_OK;
    }
    if (module_identical(a, b, module)) return G4Q_OK;
    size_t n = (size_t)(ra * ca);
    float *da = malloc(n * sizeof *da), *db = malloc(n * sizeof *db);
    if (!da || !db) {
        free(da);
        free(db);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "'%s': out of memory dequantizing %zu elements", module,
                        n);
    }
    dequant(&ma, da);
    dequant(&mb, db);
    double worst = 0.0;
    size_t at = 0, ndiff = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)da[i] - (double)db[i]);
        ndiff += da[i] != db[i];
        if (d > worst || (isnan(d) && !isnan(worst))) {
            worst = d;
            at = i;
        }
    }
    sum->modules_compared++;
    if (worst > sum->max_dequant_diff || isnan(worst)) sum->max_dequant_diff = worst;
    if (out)
        fprintf(out,
                "DEQUANT %s (%s): %zu of %zu values differ, max |A-B| = %.9g at [%zu, %zu] "
                "(A %.9g, B %.9g)\n",
                module, g4q_layout_name(ma.format), ndiff, n, worst, at / (size_t)ca, at % (size_t)ca,
                (double)da[at], (double)db[at]);
    free(da);
    free(db);
    return G4Q_OK;
}

g4q_status g4q_diff_tensors(g4q_ctx *ctx, const g4q_ckpt *a, const g4q_ckpt *b, FILE *out,
                            g4q_diff_summary *sum)
{
    memset(sum, 0, sizeof *sum);
    for (size_t i = 0; i < g4q_ckpt_count(a); i++) {
        const g4q_tensor *ta = g4q_ckpt_tensor(a, i), *tb = g4q_ckpt_find(b, ta->name);
        if (!tb) {
            sum->only_a++;
            if (out) fprintf(out, "ONLY-A %s\n", ta->name);
        } else {
            diff_one(ta, tb, out, sum);
        }
    }
    for (size_t i = 0; i < g4q_ckpt_count(b); i++) {
        const g4q_tensor *tb = g4q_ckpt_tensor(b, i);
        if (!g4q_ckpt_find(a, tb->name)) {
            sum->only_b++;
            if (out) fprintf(out, "ONLY-B %s\n", tb->name);
        }
    }
    /* Every module of A, once: named by its codes tensor (quant/layout.h). */
    for (size_t i = 0; i < g4q_ckpt_count(a); i++) {
        char mod[512];
        const g4q_tensor *ta = g4q_ckpt_tensor(a, i);
        if (g4q_layout_module_of(ta->name, mod, sizeof mod))
            G4Q_TRY(diff_module(ctx, a, b, mod, out, sum));
    }
    return G4Q_OK;
}

static void print_value(FILE *out, const cJSON *v)
{
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    fprintf(out, "%s", s ? s : "(absent)");
    free(s);
}

static size_t report(const char *path, const cJSON *a, const cJSON *b, FILE *out)
{
    if (out) {
        fprintf(out, "JSON %s: A ", path);
        print_value(out, a);
        fprintf(out, ", B ");
        print_value(out, b);
        fprintf(out, "\n");
    }
    return 1;
}

size_t g4q_diff_json(const cJSON *a, const cJSON *b, const char *path, FILE *out)
{
    if (!a || !b) return (a || b) ? report(path, a, b, out) : 0;
    char sub[1024];
    size_t n = 0;
    if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
        for (const cJSON *k = a->child; k; k = k->next) {
            snprintf(sub, sizeof sub, "%s.%s", path, k->string);
            n += g4q_diff_json(k, cJSON_GetObjectItemCaseSensitive(b, k->string), sub, out);
        }
        for (const cJSON *k = b->child; k; k = k->next)
            if (!cJSON_GetObjectItemCaseSensitive(a, k->string)) {
                snprintf(sub, sizeof sub, "%s.%s", path, k->string);
                n += report(sub, NULL, k, out);
            }
        return n;
    }
    if (cJSON_IsArray(a) && cJSON_IsArray(b) && cJSON_GetArraySize(a) == cJSON_GetArraySize(b)) {
        int i = 0;
        for (const cJSON *x = a->child, *y = b->child; x && y; x = x->next, y = y->next, i++) {
            snprintf(sub, sizeof sub, "%s[%d]", path, i);
            n += g4q_diff_json(x, y, sub, out);
        }
        return n;
    }
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
        return a->valuedouble == b->valuedouble ? 0 : report(path, a, b, out);
    return cJSON_Compare(a, b, 1) ? 0 : report(path, a, b, out);
}

/* DIR/NAME parsed, or NULL when absent; malformed JSON is an error. */
static g4q_status read_json(g4q_ctx *ctx, const char *dir, const char *name, cJSON **out)
{
    char path[4096];
    *out = NULL;
    G4Q_TRY(g4q_path_join(ctx, path, sizeof path, dir, name));
    if (!g4q_path_exists(path)) return G4Q_OK;
    char *text;
    G4Q_TRY(g4q_read_file(ctx, path, 64u << 20, &text, NULL));
    *out = cJSON_Parse(text);
    free(text);
    return *out ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: not valid JSON", path);
}

/* The JSON files compared: file name, and the member of it (NULL: the whole file). */
static const struct {
    const char *file, *member;
} json_files[] = {
    {"config.json", "quantization_config"},
    {"hf_quant_config.json", NULL},
    {"quantize_config.json", NULL},
    {"quantization_config.json", NULL},
};

static g4q_status diff_json_files(g4q_ctx *ctx, const char *dir_a, const char *dir_b, FILE *out,
                                  g4q_diff_summary *sum)
{
    for (size_t i = 0; i < sizeof json_files / sizeof json_files[0]; i++) {
        cJSON *ja = NULL, *jb = NULL;
        g4q_status st = read_json(ctx, dir_a, json_files[i].file, &ja);
        if (st == G4Q_OK) st = read_json(ctx, dir_b, json_files[i].file, &jb);
        if (st == G4Q_OK && (ja || jb)) {
            const char *m = json_files[i].member;
            const cJSON *va = ja && m ? cJSON_GetObjectItemCaseSensitive(ja, m) : ja;
            const cJSON *vb = jb && m ? cJSON_GetObjectItemCaseSensitive(jb, m) : jb;
            char path[256];
            snprintf(path, sizeof path, "%s%s%s", json_files[i].file, m ? ":" : "", m ? m : "");
            sum->json_differences += g4q_diff_json(va, vb, path, out);
        }
        cJSON_Delete(ja);
        cJSON_Delete(jb);
        if (st != G4Q_OK) return st;
    }
    return G4Q_OK;
}

g4q_status g4q_diff_dirs(g4q_ctx *ctx, const char *dir_a, const char *dir_b, FILE *out,
                         g4q_diff_summary *sum)
{
    g4q_ckpt *a = NULL, *b = NULL;
    memset(sum, 0, sizeof *sum);
    g4q_status st = g4q_ckpt_open(ctx, dir_a, &a);
    if (st == G4Q_OK) st = g4q_ckpt_open(ctx, dir_b, &b);
    if (st == G4Q_OK) st = g4q_diff_tensors(ctx, a, b, out, sum);
    if (st == G4Q_OK) st = diff_json_files(ctx, dir_a, dir_b, out, sum);
    if (st == G4Q_OK && out)
        fprintf(out,
                "summary: %zu common tensors (%zu identical, %zu with different bytes, %zu "
                "dtype/shape mismatches), %zu only in A, %zu only in B; %llu of %llu bytes "
                "differ; %zu quantized modules dequantized, max |A-B| %.9g; %zu JSON "
                "differences\n",
                sum->common, sum->identical, sum->different, sum->mismatched, sum->only_a,
                sum->only_b, (unsigned long long)sum->bytes_different,
                (unsigned long long)sum->bytes_compared, sum->modules_compared,
                sum->max_dequant_diff, sum->json_differences);
    g4q_ckpt_close(a);
    g4q_ckpt_close(b);
    return st;
}
