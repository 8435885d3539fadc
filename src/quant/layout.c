/* The stored tensor layouts of every export format, and reading a module through them
 * (contract in layout.h; bytes in docs/formats.md §2-§7). */
#include "quant/layout.h"

#include <stdio.h>
#include <string.h>

/* One table row per line reads better than clang-format's layout of it. */
/* clang-format off */
/* Shape-rule shorthands: R(d) = out / d, C(d) = in / d, RC/CC rounded up, G = in / group,
 * K(n) = the constant n. */
#define R(d) {G4Q_LDIM_ROWS, 0, (d)}
#define C(d) {G4Q_LDIM_COLS, 0, (d)}
#define RC(d) {G4Q_LDIM_ROWS, 1, (d)}
#define CC(d) {G4Q_LDIM_COLS, 1, (d)}
#define G {G4Q_LDIM_COLS, 0, G4Q_LDIM_GROUP}
#define K(n) {G4Q_LDIM_CONST, 0, (n)}
#define BIT(dt) (1u << (dt))
#define FLOATS (BIT(G4Q_DT_F16) | BIT(G4Q_DT_BF16) | BIT(G4Q_DT_F32))

/* A written tensor with no other accepted form, and the common scalar forms. */
#define T2(sfx, role, dt, d0, d1) {sfx, role, dt, 0, 2, {d0, d1}, -1, {{0}}, 0}
#define SCALAR(sfx, role) {sfx, role, G4Q_DT_F32, 0, 0, {{0}}, 1, {K(1)}, 0}      /* [] or [1] */
#define SCALAR1(sfx, role) {sfx, role, G4Q_DT_F32, 0, 1, {K(1)}, 0, {{0}}, 0}     /* [1] or [] */
#define OPTIONAL_SCALAR(sfx, role) {sfx, role, G4Q_DT_F32, 0, 0, {{0}}, 1, {K(1)}, 1}
#define OPTIONAL_SCALAR1(sfx, role) {sfx, role, G4Q_DT_F32, 0, 1, {K(1)}, 0, {{0}}, 1}

/* NVFP4 in either container: E2M1 codes U8 [out, in/2], E4M3 block scales [out, in/16], a global
 * scale and an optional input scale; the containers differ in names and in the scalars' shape. */
#define NVFP4(f, name, sec, codes, global, input, SCALAR_FORM, OPTIONAL_FORM)                      \
    {f, name, sec, 0, 1, 16, 4,                                                                    \
     {T2(codes, G4Q_LROLE_CODES, G4Q_DT_U8, R(1), C(2)),                                           \
      T2("weight_scale", G4Q_LROLE_SCALES, G4Q_DT_F8_E4M3, R(1), C(16)),                           \
      SCALAR_FORM(global, G4Q_LROLE_GLOBAL), OPTIONAL_FORM(input, G4Q_LROLE_INPUT_SCALE)}}

static const g4q_layout table[G4Q_LAYOUT_COUNT] = {
    [G4Q_LAYOUT_NVFP4_MO] = NVFP4(G4Q_LAYOUT_NVFP4_MO, "nvfp4 (modelopt)", "§2.1", "weight",
                                  "weight_scale_2", "input_scale", SCALAR, OPTIONAL_SCALAR),
    [G4Q_LAYOUT_NVFP4_CT] = NVFP4(G4Q_LAYOUT_NVFP4_CT, "nvfp4 (compressed-tensors)", "§6",
                                  "weight_packed", "weight_global_scale", "input_global_scale",
                                  SCALAR1, OPTIONAL_SCALAR1),
    [G4Q_LAYOUT_FP8_TENSOR] =
        {G4Q_LAYOUT_FP8_TENSOR, "fp8 per-tensor", "§3", 0, 1, 1, 3,
         {T2("weight", G4Q_LROLE_CODES, G4Q_DT_F8_E4M3, R(1), C(1)),
          SCALAR("weight_scale", G4Q_LROLE_GLOBAL),
          OPTIONAL_SCALAR("input_scale", G4Q_LROLE_INPUT_SCALE)}},
    [G4Q_LAYOUT_FP8_BLOCK] =
        {G4Q_LAYOUT_FP8_BLOCK, "fp8 128x128", "§4", 0, 1, 1, 2,
         {T2("weight", G4Q_LROLE_CODES, G4Q_DT_F8_E4M3, R(1), C(1)),
          /* [R, 1, C, 1] as ModelOpt writes it; [R, C] holds the same bytes */
          {"weight_scale", G4Q_LROLE_SCALES, G4Q_DT_F32, 0, 4, {RC(128), K(1), CC(128), K(1)}, 2,
           {RC(128), CC(128)}, 0}}},
    [G4Q_LAYOUT_INT4_GPTQ] =
        {G4Q_LAYOUT_INT4_GPTQ, "int4 (gptq)", "§5.2", 128, 8, 8, 4,
         {T2("qweight", G4Q_LROLE_CODES, G4Q_DT_I32, C(8), R(1)),
          T2("qzeros", G4Q_LROLE_QZEROS, G4Q_DT_I32, G, R(8)),
          {"scales", G4Q_LROLE_SCALES, G4Q_DT_F16, FLOATS, 2, {G, R(1)}, -1, {{0}}, 0},
          {"g_idx", G4Q_LROLE_G_IDX, G4Q_DT_I32, 0, 1, {C(1)}, -1, {{0}}, 0}}},
    [G4Q_LAYOUT_INT4_CT] =
        {G4Q_LAYOUT_INT4_CT, "int4 (compressed-tensors)", "§5.3", 128, 1, 8, 3,
         {T2("weight_packed", G4Q_LROLE_CODES, G4Q_DT_I32, R(1), C(8)),
          {"weight_scale", G4Q_LROLE_SCALES, G4Q_DT_BF16, FLOATS, 2, {R(1), G}, -1, {{0}}, 0},
          /* I64, as compressed-tensors itself writes it (byte parity with llm-compressor) */
          {"weight_shape", G4Q_LROLE_SHAPE, G4Q_DT_I64, BIT(G4Q_DT_I32), 1, {K(2)}, -1, {{0}},
           1}}},
};

static const g4q_layout_kv kv_scales[2] = {
    {"k_proj", SCALAR("k_scale", G4Q_LROLE_K_SCALE)},
    {"v_proj", SCALAR("v_scale", G4Q_LROLE_V_SCALE)},
};
/* clang-format on */

/* The name of an unquantized Linear weight: "<m>.weight" in another dtype is not a quantized
 * form (it is BF16, or a dtype the weight binder refuses). */
static const char unquantized_suffix[] = "weight";

int g4q_layout_role_calibrated(int role)
{
    return role == G4Q_LROLE_INPUT_SCALE || role == G4Q_LROLE_K_SCALE || role == G4Q_LROLE_V_SCALE;
}

const g4q_layout *g4q_layout_get(g4q_layout_format f)
{
    return f > G4Q_LAYOUT_BF16 && f < G4Q_LAYOUT_COUNT ? &table[f] : NULL;
}

const char *g4q_layout_name(g4q_layout_format f)
{
    if (f == G4Q_LAYOUT_BF16) return "bf16";
    const g4q_layout *l = g4q_layout_get(f);
    return l ? l->name : "unknown";
}

int g4q_layout_index(const g4q_layout *l, g4q_layout_role role)
{
    for (int k = 0; l && k < l->n; k++)
        if (l->t[k].role == role) return k;
    return -1;
}

const g4q_layout_kv *g4q_layout_kv_get(int which)
{
    return which == 0 || which == 1 ? &kv_scales[which] : NULL;
}

static int64_t dim_value(const g4q_layout_dim *d, int64_t rows, int64_t cols, int64_t group)
{
    if (d->of == G4Q_LDIM_CONST) return d->div;
    int64_t n = d->of == G4Q_LDIM_ROWS ? rows : cols;
    int64_t div = d->div == G4Q_LDIM_GROUP ? group : d->div;
    if (div <= 0) return 0;
    return d->ceil ? (n + div - 1) / div : n / div;
}

static int shape_of(int ndim, const g4q_layout_dim *dims, int64_t rows, int64_t cols, int64_t group,
                    int64_t *shape)
{
    for (int i = 0; i < ndim; i++)
        shape[i] = dim_value(&dims[i], rows, cols, group);
    return ndim;
}

int g4q_layout_shape(const g4q_layout_tensor *t, int64_t rows, int64_t cols, int64_t group,
                     int64_t shape[G4Q_LAYOUT_MAX_DIMS])
{
    return shape_of(t->ndim, t->dim, rows, cols, group, shape);
}

uint64_t g4q_layout_nbytes(const g4q_layout_tensor *t, int64_t rows, int64_t cols, int64_t group)
{
    int64_t shape[G4Q_LAYOUT_MAX_DIMS];
    uint64_t n = g4q_dtype_size(t->dtype);
    for (int i = 0, nd = g4q_layout_shape(t, rows, cols, group, shape); i < nd; i++)
        n *= (uint64_t)shape[i];
    return n;
}

/* ---- reading ---- */

static int dtype_ok(const g4q_layout_tensor *lt, g4q_dtype dt)
{
    return dt == lt->dtype || ((unsigned)dt < 32 && (lt->also & BIT(dt)));
}

static int shape_is(const g4q_tensor *t, int ndim, const g4q_layout_dim *dims, int64_t rows,
                    int64_t cols, int64_t group)
{
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != dim_value(&dims[i], rows, cols, group)) return 0;
    return 1;
}

static size_t shape_text(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) k += (size_t)snprintf(buf + k, n - k, "]");
    return k < n ? k : n;
}

/* "F16 (or BF16, F32) [a, b] or [c]" for the entry at (rows, cols, group). */
static void expected_text(char *buf, size_t n, const g4q_layout_tensor *lt, int64_t rows,
                          int64_t cols, int64_t group)
{
    size_t k = (size_t)snprintf(buf, n, "%s", g4q_dtype_name(lt->dtype));
    const char *sep = " (or ";
    for (int dt = 0; dt < G4Q_DT_COUNT && k < n; dt++)
        if (dt != (int)lt->dtype && (lt->also & BIT(dt))) {
            k += (size_t)snprintf(buf + k, n - k, "%s%s", sep, g4q_dtype_name((g4q_dtype)dt));
            sep = ", ";
        }
    if (sep[0] == ',' && k < n) k += (size_t)snprintf(buf + k, n - k, ")");
    int64_t shape[G4Q_LAYOUT_MAX_DIMS];
    if (k < n) k += (size_t)snprintf(buf + k, n - k, " ");
    if (k < n)
        k += shape_text(buf + k, n - k, shape_of(lt->ndim, lt->dim, rows, cols, group, shape),
                        shape);
    if (lt->alt_ndim >= 0 && k < n) {
        k += (size_t)snprintf(buf + k, n - k, " or ");
        if (k < n)
            shape_text(buf + k, n - k, shape_of(lt->alt_ndim, lt->alt, rows, cols, group, shape),
                       shape);
    }
}

g4q_status g4q_layout_check(g4q_ctx *ctx, const char *label, const g4q_layout_tensor *lt,
                            const g4q_tensor *t, int64_t rows, int64_t cols, int64_t group)
{
    if (dtype_ok(lt, t->dtype) &&
        (shape_is(t, lt->ndim, lt->dim, rows, cols, group) ||
         (lt->alt_ndim >= 0 && shape_is(t, lt->alt_ndim, lt->alt, rows, cols, group))))
        return G4Q_OK;
    if (!ctx) return G4Q_ERR_SHAPE;
    char got[128], want[160];
    shape_text(got, sizeof got, t->ndim < G4Q_MAX_DIMS ? t->ndim : G4Q_MAX_DIMS, t->shape);
    expected_text(want, sizeof want, lt, rows, cols, group);
    return g4q_fail(ctx, G4Q_ERR_SHAPE, "%s: tensor '%s': %s %s, expected %s", label, t->name,
                    g4q_dtype_name(t->dtype), got, want);
}

static const g4q_tensor *lookup_suffix(g4q_layout_lookup lookup, const void *src,
                                       const char *module, const char *suffix)
{
    char name[512];
    if ((size_t)snprintf(name, sizeof name, "%s.%s", module, suffix) >= sizeof name) return NULL;
    return lookup(src, name);
}

/* rows and cols from the codes tensor's written shape (codes dims are plain R(d) / C(d)). */
static int infer_dims(const g4q_layout_tensor *codes, const g4q_tensor *t, int64_t *rows,
                      int64_t *cols)
{
    if (t->ndim != codes->ndim) return 0;
    for (int i = 0; i < codes->ndim; i++) {
        const g4q_layout_dim *d = &codes->dim[i];
        if (d->of == G4Q_LDIM_ROWS) *rows = t->shape[i] * d->div;
        if (d->of == G4Q_LDIM_COLS) *cols = t->shape[i] * d->div;
    }
    return 1;
}

/* The group size from the scales tensor's G4Q_LDIM_GROUP dim; 0 when the format has none. */
static g4q_status infer_group(g4q_ctx *ctx, const char *label, g4q_layout_match *m)
{
    const g4q_layout *l = m->layout;
    int k = g4q_layout_index(l, G4Q_LROLE_SCALES);
    const g4q_tensor *t = k >= 0 ? m->t[k] : NULL;
    for (int i = 0; t && i < l->t[k].ndim; i++) {
        if (l->t[k].dim[i].div != G4Q_LDIM_GROUP) continue;
        int64_t groups = t->ndim == l->t[k].ndim ? t->shape[i] : 0;
        if (groups < 1 || m->cols % groups)
            return g4q_fail(ctx, G4Q_ERR_SHAPE,
                            "%s: tensor '%s': %lld groups do not split %lld inputs evenly", label,
                            t->name, (long long)groups, (long long)m->cols);
        m->group = m->cols / groups;
    }
    return G4Q_OK;
}

/* Binds `module` as format l: presence, shape rule, group, dtypes and shapes (layout.h). */
static g4q_status bind(g4q_ctx *ctx, const char *label, g4q_layout_lookup lookup, const void *src,
                       const char *module, const g4q_layout *l, int64_t rows, int64_t cols,
                       g4q_layout_match *m)
{
    memset(m, 0, sizeof *m);
    m->format = l->format;
    m->layout = l;
    for (int k = 0; k < l->n; k++) {
        m->t[k] = lookup_suffix(lookup, src, module, l->t[k].suffix);
        if (!m->t[k] && !l->t[k].optional)
            return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s.%s' missing (%s)", label, module,
                            l->t[k].suffix, l->name);
    }
    const int ci = g4q_layout_index(l, G4Q_LROLE_CODES);
    const g4q_tensor *codes = m->t[ci];
    m->rows = rows;
    m->cols = cols;
    if ((rows <= 0 || cols <= 0) && !infer_dims(&l->t[ci], codes, &m->rows, &m->cols))
        return g4q_layout_check(ctx, label, &l->t[ci], codes, 0, 0, 0);
    if (m->rows < 1 || m->cols < 1 || m->rows % l->rows_multiple || m->cols % l->cols_multiple)
        return g4q_fail(ctx, G4Q_ERR_SHAPE,
                        "%s: tensor '%s': %s needs out features %% %d == 0 and in features %% %d "
                        "== 0, the weight is [%lld, %lld]",
                        label, codes->name, l->name, l->rows_multiple, l->cols_multiple,
                        (long long)m->rows, (long long)m->cols);
    G4Q_TRY(infer_group(ctx, label, m));
    for (int k = 0; k < l->n; k++)
        if (m->t[k])
            G4Q_TRY(g4q_layout_check(ctx, label, &l->t[k], m->t[k], m->rows, m->cols, m->group));
    return G4Q_OK;
}

/* The distinct codes suffixes of the table, in table order. */
static int codes_suffixes(const char *out[G4Q_LAYOUT_COUNT])
{
    int n = 0;
    for (int f = 1; f < G4Q_LAYOUT_COUNT; f++) {
        const char *s = table[f].t[g4q_layout_index(&table[f], G4Q_LROLE_CODES)].suffix;
        int seen = 0;
        for (int i = 0; i < n; i++)
            seen |= strcmp(out[i], s) == 0;
        if (!seen) out[n++] = s;
    }
    return n;
}

g4q_status g4q_layout_find(g4q_ctx *ctx, const char *label, g4q_layout_lookup lookup,
                           const void *src, const char *module, int64_t rows, int64_t cols,
                           g4q_layout_match *m)
{
    memset(m, 0, sizeof *m);
    const char *suffixes[G4Q_LAYOUT_COUNT];
    const int ns = codes_suffixes(suffixes);
    const g4q_tensor *codes = NULL, *other = NULL;
    const char *suffix = NULL;
    for (int i = 0; i < ns; i++) {
        const g4q_tensor *t = lookup_suffix(lookup, src, module, suffixes[i]);
        if (t && codes) other = t;
        if (t && !codes) codes = t, suffix = suffixes[i];
    }
    if (other)
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: tensor '%s' beside '%s': two forms of one Linear",
                        label, other->name, codes->name);
    if (!codes) return G4Q_OK;
    /* The formats this codes tensor can be, in table order. */
    const g4q_layout *cand[G4Q_LAYOUT_COUNT];
    int nc = 0;
    char dts[96] = "";
    for (int f = 1; f < G4Q_LAYOUT_COUNT; f++) {
        const g4q_layout_tensor *ct = &table[f].t[g4q_layout_index(&table[f], G4Q_LROLE_CODES)];
        if (strcmp(ct->suffix, suffix) != 0) continue;
        size_t k = strlen(dts);
        snprintf(dts + k, sizeof dts - k, "%s%s (%s)", k ? " or " : "", g4q_dtype_name(ct->dtype),
                 table[f].name);
        if (dtype_ok(ct, codes->dtype)) cand[nc++] = &table[f];
    }
    if (nc == 0) {
        if (strcmp(suffix, unquantized_suffix) == 0) return G4Q_OK;
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "%s: tensor '%s': dtype %s, expected %s", label,
                        codes->name, g4q_dtype_name(codes->dtype), dts);
    }
    for (int i = 0; i < nc && nc > 1; i++)
        if (bind(NULL, label, lookup, src, module, cand[i], rows, cols, m) == G4Q_OK) return G4Q_OK;
    g4q_status st = bind(ctx, label, lookup, src, module, cand[0], rows, cols, m);
    if (st != G4Q_OK && nc > 1 && ctx) {
        /* Say what each candidate wanted: "<first's error> (as A); <second's error> (as B)". */
        char first[512];
        snprintf(first, sizeof first, "%s", g4q_ctx_error(ctx));
        st = bind(ctx, label, lookup, src, module, cand[1], rows, cols, m);
        char second[512];
        snprintf(second, sizeof second, "%s", g4q_ctx_error(ctx));
        st = g4q_fail(ctx, st != G4Q_OK ? st : G4Q_ERR_SHAPE, "%s (as %s); %s (as %s)", first,
                      cand[0]->name, second, cand[1]->name);
    }
    if (st != G4Q_OK) memset(m, 0, sizeof *m);
    return st;
}

const g4q_tensor *g4q_layout_match_role(const g4q_layout_match *m, g4q_layout_role role)
{
    int k = g4q_layout_index(m->layout, role);
    return k >= 0 ? m->t[k] : NULL;
}

int g4q_layout_module_of(const char *name, char *module, size_t n)
{
    const char *suffixes[G4Q_LAYOUT_COUNT];
    const int ns = codes_suffixes(suffixes);
    const size_t len = strlen(name);
    for (int i = 0; i < ns; i++) {
        const size_t sl = strlen(suffixes[i]);
        if (len > sl + 1 && len - sl - 1 < n && name[len - sl - 1] == '.' &&
            strcmp(name + len - sl, suffixes[i]) == 0) {
            memcpy(module, name, len - sl - 1);
            module[len - sl - 1] = '\0';
            return 1;
        }
    }
    return 0;
}
