/* Export checker, tensor side: the expected tensor set of every Linear module, the kept tensors,
 * fused-group scale equality and the value ranges of scales and codes (formats.md §2-§7).
 * A deliberately independent oracle: it writes its expectations out from formats.md itself and
 * must not use the stored-layout table (quant/layout.h) that the plan, the loader and the diff
 * share, so that a mistake in that table shows up here as a problem. */
#include "export/check.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "base/sys.h"
#include "export/check_internal.h"

static const char *const format_names[G4Q_CHECK_FMT_COUNT] = {
    "unknown",
    "modelopt NVFP4",
    "modelopt W4A16_NVFP4",
    "modelopt FP8",
    "modelopt fp8_pb_wo",
    "compressed-tensors nvfp4-pack-quantized",
    "compressed-tensors pack-quantized",
    "gptq",
};

const char *g4q_check_format_name(g4q_check_format f)
{
    return (unsigned)f < G4Q_CHECK_FMT_COUNT ? format_names[f] : "unknown";
}

/* The multimodal Linear weights (on-disk names), the same list as export/plan.c's candidates. */
static const char *const multimodal_linears[] = {
    "model.vision_embedder.patch_dense.weight",
    "model.embed_vision.embedding_projection.weight",
    "model.embed_audio.embedding_projection.weight",
};

/* ---- report ---- */

__attribute__((format(printf, 4, 0))) static void add_v(g4q_check_state *s, const char *item, const char *rule, const char *fmt,
                  va_list ap)
{
    g4q_check_report *r = s->rep;
    if (r->n_problems == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        g4q_check_problem *p = realloc(r->problems, cap * sizeof *p);
        if (!p) {
            s->nomem = 1;
            return;
        }
        r->problems = p;
        r->cap = cap;
    }
    g4q_check_problem *p = &r->problems[r->n_problems++];
    snprintf(p->item, sizeof p->item, "%s", item);
    snprintf(p->rule, sizeof p->rule, "%s", rule);
    vsnprintf(p->message, sizeof p->message, fmt, ap);
}

void g4q_check_add(g4q_check_state *s, const char *item, const char *rule, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_v(s, item, rule, fmt, ap);
    va_end(ap);
}

int g4q_check_expect(g4q_check_state *s, int ok, const char *item, const char *rule,
                     const char *fmt, ...)
{
    s->rep->n_checks++;
    if (!ok) {
        va_list ap;
        va_start(ap, fmt);
        add_v(s, item, rule, fmt, ap);
        va_end(ap);
    }
    return ok;
}

void g4q_check_report_free(g4q_check_report *rep)
{
    if (!rep)
        return;
    free(rep->problems);
    memset(rep, 0, sizeof *rep);
}

int g4q_check_report_has(const g4q_check_report *rep, const char *rule, const char *item_substr)
{
    for (size_t i = 0; i < rep->n_problems; i++)
        if (strcmp(rep->problems[i].rule, rule) == 0 &&
            (!item_substr || strstr(rep->problems[i].item, item_substr)))
            return 1;
    return 0;
}

void g4q_check_report_print(const g4q_check_report *rep, const char *dir, FILE *f)
{
    for (size_t i = 0; i < rep->n_problems; i++)
        fprintf(f, "PROBLEM [%s] %s: %s\n", rep->problems[i].rule, rep->problems[i].item,
                rep->problems[i].message);
    fprintf(f, "checked %s: format %s; %zu tensors; %zu Linear modules quantized, %zu BF16\n",
            dir ? dir : "export", g4q_check_format_name(rep->format), rep->n_tensors,
            rep->n_quantized, rep->n_bf16);
    fprintf(f, "%zu checks, %zu problems\n", rep->n_checks, rep->n_problems);
}

cJSON *g4q_check_report_to_cjson(const g4q_check_report *rep, const char *dir)
{
    cJSON *o = cJSON_CreateObject();
    if (dir)
        cJSON_AddStringToObject(o, "dir", dir);
    cJSON_AddStringToObject(o, "format", g4q_check_format_name(rep->format));
    cJSON_AddNumberToObject(o, "tensors", (double)rep->n_tensors);
    cJSON_AddNumberToObject(o, "quantized_modules", (double)rep->n_quantized);
    cJSON_AddNumberToObject(o, "bf16_modules", (double)rep->n_bf16);
    cJSON_AddNumberToObject(o, "checks", (double)rep->n_checks);
    cJSON_AddNumberToObject(o, "problem_count", (double)rep->n_problems);
    cJSON_AddBoolToObject(o, "ok", rep->n_problems == 0);
    cJSON *arr = cJSON_AddArrayToObject(o, "problems");
    for (size_t i = 0; i < rep->n_problems; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "item", rep->problems[i].item);
        cJSON_AddStringToObject(p, "rule", rep->problems[i].rule);
        cJSON_AddStringToObject(p, "message", rep->problems[i].message);
        cJSON_AddItemToArray(arr, p);
    }
    return o;
}

/* ---- tensor lookup ---- */

static int cmp_tensor_ptr(const void *a, const void *b)
{
    return strcmp((*(const g4q_tensor *const *)a)->name, (*(const g4q_tensor *const *)b)->name);
}

static const g4q_tensor *find(g4q_check_state *s, const char *name)
{
    g4q_tensor key = {.name = name};
    const g4q_tensor *kp = &key;
    const g4q_tensor **hit = bsearch(&kp, s->sorted, s->in->n_tensors, sizeof *s->sorted,
                                     cmp_tensor_ptr);
    return hit ? *hit : NULL;
}

static void mark_used(g4q_check_state *s, const g4q_tensor *t)
{
    s->used[t - s->in->tensors] = 1;
}

static void shape_text(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", d ? ", " : "",
                                 (long long)shape[d]);
    if (used < n)
        snprintf(buf + used, n - used, "]");
}

/* One expected tensor of a quantized module. any_float: BF16, F16 or F32 accepted. */
typedef struct tensor_spec {
    const char *suffix;
    g4q_dtype dtype;
    int any_float; /* BF16, F16 or F32 accepted */
    int any_int;   /* I32 or I64 accepted (CT weight_shape: compressed-tensors writes I64) */
    int ndim;
    int64_t shape[4];
} tensor_spec;

/* Looks the tensor up, marks it used and checks dtype and shape; returns it only when all match. */
static const g4q_tensor *expect_tensor(g4q_check_state *s, const char *module,
                                       const tensor_spec *sp)
{
    char name[G4Q_CHECK_ITEM_MAX];
    snprintf(name, sizeof name, "%s.%s", module, sp->suffix);
    const g4q_tensor *t = find(s, name);
    if (!g4q_check_expect(s, t != NULL, name, "tensor-missing", "required by %s",
                          g4q_check_format_name(s->fmt)))
        return NULL;
    mark_used(s, t);
    int dt_ok = sp->any_float ? (t->dtype == G4Q_DT_BF16 || t->dtype == G4Q_DT_F16 ||
                                 t->dtype == G4Q_DT_F32)
                : sp->any_int ? (t->dtype == G4Q_DT_I32 || t->dtype == G4Q_DT_I64)
                              : t->dtype == sp->dtype;
    if (!g4q_check_expect(s, dt_ok, name, "tensor-dtype", "dtype %s, expected %s",
                          g4q_dtype_name(t->dtype),
                          sp->any_float ? "BF16, F16 or F32"
                          : sp->any_int ? "I32 or I64"
                                        : g4q_dtype_name(sp->dtype)))
        return NULL;
    int shape_ok = t->ndim == sp->ndim;
    for (int d = 0; shape_ok && d < sp->ndim; d++)
        shape_ok = t->shape[d] == sp->shape[d];
    char got[96], want[96];
    shape_text(t->ndim, t->shape, got, sizeof got);
    shape_text(sp->ndim, sp->shape, want, sizeof want);
    if (!g4q_check_expect(s, shape_ok, name, "tensor-shape", "shape %s, expected %s", got, want))
        return NULL;
    return t;
}

/* The tensor set of a quantized [out, in] module in the detected format; returns the count. */
static int quantized_specs(const g4q_check_state *s, const g4q_check_module *m, tensor_spec *sp)
{
    int64_t out = m->out, in = m->in;
    int n = 0;
#define SPEC(suf, dt, nd, a, b, c, d) \
    sp[n++] = (tensor_spec){suf, dt, 0, 0, nd, {a, b, c, d}}
    switch (s->fmt) {
    case G4Q_CHECK_FMT_MO_NVFP4:
    case G4Q_CHECK_FMT_MO_W4A16_NVFP4:
        SPEC("weight", G4Q_DT_U8, 2, out, in / 2, 0, 0);
        SPEC("weight_scale", G4Q_DT_F8_E4M3, 2, out, in / 16, 0, 0);
        SPEC("weight_scale_2", G4Q_DT_F32, 0, 0, 0, 0, 0);
        if (s->act)
            SPEC("input_scale", G4Q_DT_F32, 0, 0, 0, 0, 0);
        break;
    case G4Q_CHECK_FMT_MO_FP8:
        SPEC("weight", G4Q_DT_F8_E4M3, 2, out, in, 0, 0);
        SPEC("weight_scale", G4Q_DT_F32, 0, 0, 0, 0, 0);
        SPEC("input_scale", G4Q_DT_F32, 0, 0, 0, 0, 0);
        break;
    case G4Q_CHECK_FMT_MO_FP8_PB_WO:
        SPEC("weight", G4Q_DT_F8_E4M3, 2, out, in, 0, 0);
        SPEC("weight_scale", G4Q_DT_F32, 4, (out + 127) / 128, 1, (in + 127) / 128, 1);
        break;
    case G4Q_CHECK_FMT_CT_NVFP4:
        SPEC("weight_packed", G4Q_DT_U8, 2, out, in / 2, 0, 0);
        SPEC("weight_scale", G4Q_DT_F8_E4M3, 2, out, in / 16, 0, 0);
        SPEC("weight_global_scale", G4Q_DT_F32, 1, 1, 0, 0, 0);
        if (s->act)
            SPEC("input_global_scale", G4Q_DT_F32, 1, 1, 0, 0, 0);
        break;
    case G4Q_CHECK_FMT_CT_INT4:
        SPEC("weight_packed", G4Q_DT_I32, 2, out, (in + 7) / 8, 0, 0);
        SPEC("weight_scale", G4Q_DT_BF16, 2, out, (in + 127) / 128, 0, 0);
        sp[n - 1].any_float = 1;
        SPEC("weight_shape", G4Q_DT_I64, 1, 2, 0, 0, 0);
        sp[n - 1].any_int = 1;
        break;
    case G4Q_CHECK_FMT_GPTQ:
        SPEC("qweight", G4Q_DT_I32, 2, in / 8, out, 0, 0);
        SPEC("qzeros", G4Q_DT_I32, 2, in / 128, out / 8, 0, 0);
        SPEC("scales", G4Q_DT_F16, 2, in / 128, out, 0, 0);
        SPEC("g_idx", G4Q_DT_I32, 1, in, 0, 0, 0);
        break;
    default:
        break;
    }
#undef SPEC
    return n;
}

/* ---- value checks ---- */

static float f32_at(const g4q_tensor *t, uint64_t i)
{
    float v;
    memcpy(&v, (const unsigned char *)t->data + 4 * i, 4);
    return v;
}

static uint32_t u32_at(const g4q_tensor *t, uint64_t i)
{
    uint32_t v;
    memcpy(&v, (const unsigned char *)t->data + 4 * i, 4);
    return v;
}

static float float_at(const g4q_tensor *t, uint64_t i)
{
    const unsigned char *p = (const unsigned char *)t->data;
    uint16_t h;
    switch (t->dtype) {
    case G4Q_DT_F32:
        return f32_at(t, i);
    case G4Q_DT_BF16:
        memcpy(&h, p + 2 * i, 2);
        return g4q_bf16_to_f32(h);
    case G4Q_DT_F16:
        memcpy(&h, p + 2 * i, 2);
        return g4q_f16_to_f32(h);
    default:
        return NAN;
    }
}

/* Every element finite and > 0 (per-tensor, block and group scales). */
static void positive_scales(g4q_check_state *s, const g4q_tensor *t)
{
    uint64_t bad = 0, first = 0;
    float fv = 0.0f;
    for (uint64_t i = 0; i < t->numel; i++) {
        float v = float_at(t, i);
        if (!(isfinite(v) && v > 0.0f)) {
            if (!bad++)
                first = i, fv = v;
        }
    }
    g4q_check_expect(s, bad == 0, t->name, "scale-range",
                     "%llu of %llu scales are not finite and > 0 (first: element %llu = %g)",
                     (unsigned long long)bad, (unsigned long long)t->numel,
                     (unsigned long long)first, (double)fv);
}

/* E4M3 block scales: no NaN code, no sign bit, and no 0x00 (ModelOpt clamps to 2^-9 and writes
 * 0x38 for zero blocks; compressed-tensors turns a zero code into 0x20). */
static void e4m3_block_scales(g4q_check_state *s, const g4q_tensor *t, int ct)
{
    const uint8_t *b = t->data;
    uint64_t nan = 0, neg = 0, zero = 0, fnan = 0, fneg = 0, fzero = 0;
    for (uint64_t i = 0; i < t->numel; i++) {
        if ((b[i] & 0x7F) == 0x7F) {
            if (!nan++)
                fnan = i;
        } else if (b[i] & 0x80) {
            if (!neg++)
                fneg = i;
        } else if (b[i] == 0x00) {
            if (!zero++)
                fzero = i;
        }
    }
    g4q_check_expect(s, nan == 0, t->name, "scale-nan",
                     "%llu E4M3 block scales are NaN codes 0x7F/0xFF (first: element %llu)",
                     (unsigned long long)nan, (unsigned long long)fnan);
    g4q_check_expect(s, neg == 0, t->name, "scale-range",
                     "%llu E4M3 block scales are negative (first: element %llu)",
                     (unsigned long long)neg, (unsigned long long)fneg);
    g4q_check_expect(s, zero == 0, t->name, "scale-range",
                     "%llu E4M3 block scales are 0x00 (first: element %llu); %s",
                     (unsigned long long)zero, (unsigned long long)fzero,
                     ct ? "compressed-tensors writes 0x20 for a zero code"
                        : "ModelOpt clamps block scales to >= 2^-9 and writes 0x38 for zero blocks");
}

static void fp8_codes(g4q_check_state *s, const g4q_tensor *t)
{
    const uint8_t *b = t->data;
    uint64_t nan = 0, first = 0;
    for (uint64_t i = 0; i < t->numel; i++)
        if ((b[i] & 0x7F) == 0x7F && !nan++)
            first = i;
    g4q_check_expect(s, nan == 0, t->name, "fp8-nan",
                     "%llu FP8 weight codes are NaN 0x7F/0xFF (first: element %llu); encoders "
                     "must saturate to 448", (unsigned long long)nan, (unsigned long long)first);
}

static void gptq_values(g4q_check_state *s, const g4q_tensor *qz, const g4q_tensor *gi)
{
    if (qz) {
        uint64_t bad = 0, first = 0;
        for (uint64_t i = 0; i < qz->numel; i++)
            if (u32_at(qz, i) != 0x77777777u && !bad++)
                first = i;
        g4q_check_expect(s, bad == 0, qz->name, "gptq-qzeros",
                         "%llu words differ from 0x77777777 (symmetric 4-bit zero 8 stored minus "
                         "one; first: word %llu = 0x%08x)", (unsigned long long)bad,
                         (unsigned long long)first, bad ? u32_at(qz, first) : 0u);
    }
    if (gi) {
        uint64_t bad = 0, first = 0;
        for (uint64_t i = 0; i < gi->numel; i++)
            if (u32_at(gi, i) != (uint32_t)(i / 128) && !bad++)
                first = i;
        g4q_check_expect(s, bad == 0, gi->name, "gptq-g_idx",
                         "%llu entries differ from i/128 (desc_act false; first: entry %llu = %u)",
                         (unsigned long long)bad, (unsigned long long)first,
                         bad ? u32_at(gi, first) : 0u);
    }
}

static void divisibility(g4q_check_state *s, const g4q_check_module *m)
{
    int nvfp4 = s->fmt == G4Q_CHECK_FMT_MO_NVFP4 || s->fmt == G4Q_CHECK_FMT_MO_W4A16_NVFP4 ||
                s->fmt == G4Q_CHECK_FMT_CT_NVFP4;
    if (nvfp4)
        g4q_check_expect(s, m->in % 16 == 0, m->name, "shape-divisible",
                         "in_features %lld is not a multiple of 16 (NVFP4 blocks)",
                         (long long)m->in);
    if (s->fmt == G4Q_CHECK_FMT_MO_FP8_PB_WO)
        g4q_check_expect(s, m->out % 128 == 0 && m->in % 128 == 0, m->name, "shape-divisible",
                         "[%lld, %lld]: fp8_pb_wo needs out and in multiples of 128 (vLLM raises "
                         "ValueError)", (long long)m->out, (long long)m->in);
    if (s->fmt == G4Q_CHECK_FMT_GPTQ || s->fmt == G4Q_CHECK_FMT_CT_INT4)
        g4q_check_expect(s, m->in % 128 == 0 && m->out % 8 == 0, m->name, "shape-divisible",
                         "[%lld, %lld]: INT4 group 128 needs in %% 128 == 0 and out %% 8 == 0",
                         (long long)m->out, (long long)m->in);
}

/* Checks a quantized module's tensors and their values. */
static void quantized_module(g4q_check_state *s, const g4q_check_module *m)
{
    if (s->fmt == G4Q_CHECK_FMT_UNKNOWN) {
        g4q_check_add(s, m->name, "format", "not BF16, and the export's format is unknown");
        return;
    }
    divisibility(s, m);
    tensor_spec sp[4];
    const g4q_tensor *t[4] = {0};
    int n = quantized_specs(s, m, sp);
    for (int i = 0; i < n; i++)
        t[i] = expect_tensor(s, m->name, &sp[i]);
    switch (s->fmt) {
    case G4Q_CHECK_FMT_MO_NVFP4:
    case G4Q_CHECK_FMT_MO_W4A16_NVFP4:
    case G4Q_CHECK_FMT_CT_NVFP4:
        if (t[1])
            e4m3_block_scales(s, t[1], s->fmt == G4Q_CHECK_FMT_CT_NVFP4);
        for (int i = 2; i < n; i++)
            if (t[i])
                positive_scales(s, t[i]);
        break;
    case G4Q_CHECK_FMT_MO_FP8:
        if (t[0])
            fp8_codes(s, t[0]);
        for (int i = 1; i < n; i++)
            if (t[i])
                positive_scales(s, t[i]);
        break;
    case G4Q_CHECK_FMT_MO_FP8_PB_WO:
        if (t[0])
            fp8_codes(s, t[0]);
        if (t[1])
            positive_scales(s, t[1]);
        break;
    case G4Q_CHECK_FMT_CT_INT4:
        if (t[1])
            positive_scales(s, t[1]);
        if (t[2]) {
            int64_t d0 = -1, d1 = -1;
            g4q_tensor_int_at(t[2], 0, &d0);
            g4q_tensor_int_at(t[2], 1, &d1);
            g4q_check_expect(s, d0 == m->out && d1 == m->in, t[2]->name, "ct-weight_shape",
                             "holds [%lld, %lld], expected [%lld, %lld]", (long long)d0,
                             (long long)d1, (long long)m->out, (long long)m->in);
        }
        break;
    case G4Q_CHECK_FMT_GPTQ:
        if (t[2])
            positive_scales(s, t[2]);
        gptq_values(s, t[1], t[3]);
        break;
    default:
        break;
    }
}

/* ---- modules, kept tensors, groups ---- */

static int is_linear_spec(const g4q_weight_spec *w)
{
    switch (w->role) {
    case G4Q_W_Q_PROJ:
    case G4Q_W_K_PROJ:
    case G4Q_W_V_PROJ:
    case G4Q_W_O_PROJ:
    case G4Q_W_GATE_PROJ:
    case G4Q_W_UP_PROJ:
    case G4Q_W_DOWN_PROJ:
        return w->ndim == 2;
    case G4Q_W_MULTIMODAL:
        for (size_t i = 0; i < sizeof multimodal_linears / sizeof *multimodal_linears; i++)
            if (strcmp(w->name, multimodal_linears[i]) == 0)
                return w->ndim == 2;
        return 0;
    default:
        return 0;
    }
}

static g4q_linear_group group_of(g4q_weight_role r)
{
    if (r == G4Q_W_Q_PROJ || r == G4Q_W_K_PROJ || r == G4Q_W_V_PROJ)
        return G4Q_GROUP_QKV;
    if (r == G4Q_W_GATE_PROJ || r == G4Q_W_UP_PROJ)
        return G4Q_GROUP_GATE_UP;
    return G4Q_GROUP_NONE;
}

/* A kept (non-Linear) tensor: present, BF16, of the expected shape. */
static void kept_tensor(g4q_check_state *s, const g4q_weight_spec *w)
{
    const g4q_tensor *t = find(s, w->name);
    if (!g4q_check_expect(s, t != NULL, w->name, "tensor-missing", "expected tensor of the model"))
        return;
    mark_used(s, t);
    g4q_check_expect(s, t->dtype == w->dtype, w->name, "tensor-dtype",
                     "dtype %s, expected %s (kept tensors are copied unchanged)",
                     g4q_dtype_name(t->dtype), g4q_dtype_name(w->dtype));
    int ok = t->ndim == w->ndim;
    for (int d = 0; ok && d < w->ndim; d++)
        ok = t->shape[d] == w->shape[d];
    char got[96], want[96];
    shape_text(t->ndim, t->shape, got, sizeof got);
    shape_text(w->ndim, w->shape, want, sizeof want);
    g4q_check_expect(s, ok, w->name, "tensor-shape", "shape %s, expected %s", got, want);
}

/* Classifies one Linear module as BF16 or quantized and checks its tensors. */
static void linear_module(g4q_check_state *s, g4q_check_module *m)
{
    char wname[G4Q_CHECK_ITEM_MAX];
    snprintf(wname, sizeof wname, "%s.weight", m->name);
    const g4q_tensor *w = find(s, wname);
    if (w && w->dtype == G4Q_DT_BF16) {
        m->quantized = 0;
        s->rep->n_bf16++;
        mark_used(s, w);
        int ok = w->ndim == 2 && w->shape[0] == m->out && w->shape[1] == m->in;
        char got[96];
        shape_text(w->ndim, w->shape, got, sizeof got);
        g4q_check_expect(s, ok, wname, "tensor-shape", "BF16 Linear weight of shape %s, expected "
                         "[%lld, %lld]", got, (long long)m->out, (long long)m->in);
        return;
    }
    m->quantized = 1;
    s->rep->n_quantized++;
    quantized_module(s, m);
}

/* A fused group's members are quantized alike and, for NVFP4, share bit-identical per-tensor
 * scales. */
static void fused_group(g4q_check_state *s, g4q_check_module **mem, int n)
{
    for (int i = 1; i < n; i++)
        g4q_check_expect(s, mem[i]->quantized == mem[0]->quantized, mem[i]->name, "fused-mixed",
                         "%s, but fused shard '%s' is %s: vLLM loads the group as one Linear",
                         mem[i]->quantized ? "quantized" : "BF16", mem[0]->name,
                         mem[0]->quantized ? "quantized" : "BF16");
    if (!mem[0]->quantized)
        return;
    const char *sufs[2] = {NULL, NULL};
    if (s->fmt == G4Q_CHECK_FMT_MO_NVFP4 || s->fmt == G4Q_CHECK_FMT_MO_W4A16_NVFP4)
        sufs[0] = "weight_scale_2", sufs[1] = s->act ? "input_scale" : NULL;
    else if (s->fmt == G4Q_CHECK_FMT_CT_NVFP4)
        sufs[0] = "weight_global_scale", sufs[1] = s->act ? "input_global_scale" : NULL;
    for (int k = 0; k < 2 && sufs[k]; k++) {
        uint32_t ref = 0;
        const char *ref_name = NULL;
        char name[G4Q_CHECK_ITEM_MAX];
        for (int i = 0; i < n; i++) {
            if (!mem[i]->quantized)
                continue;
            snprintf(name, sizeof name, "%s.%s", mem[i]->name, sufs[k]);
            const g4q_tensor *t = find(s, name);
            if (!t || t->dtype != G4Q_DT_F32 || t->numel != 1)
                continue; /* reported by the tensor checks */
            if (!ref_name) {
                ref = u32_at(t, 0);
                ref_name = mem[i]->name;
                continue;
            }
            g4q_check_expect(s, u32_at(t, 0) == ref, name, "fused-scale",
                             "%.9g (0x%08x) differs from fused shard '%s' (%.9g, 0x%08x): every "
                             "shard must share one value (§2.7)",
                             (double)f32_at(t, 0), u32_at(t, 0), ref_name,
                             (double)g4q_bits_f32(ref), ref);
        }
    }
}

static void fused_groups(g4q_check_state *s)
{
    for (int l = 0; l < s->in->cfg->n_layers; l++)
        for (int g = G4Q_GROUP_QKV; g <= G4Q_GROUP_GATE_UP; g++) {
            g4q_check_module *mem[3];
            int n = 0;
            for (size_t i = 0; i < s->n_mods && n < 3; i++)
                if (s->mods[i].layer == l && (int)s->mods[i].group == g)
                    mem[n++] = &s->mods[i];
            if (n >= 2)
                fused_group(s, mem, n);
        }
}

/* Optional per-layer KV scales (§7): both or neither, F32 [], finite and > 0, FP8 KV only. */
static void kv_scales(g4q_check_state *s)
{
    const g4q_config *cfg = s->in->cfg;
    for (int l = 0; l < cfg->n_layers; l++) {
        char kn[G4Q_CHECK_ITEM_MAX], vn[G4Q_CHECK_ITEM_MAX];
        snprintf(kn, sizeof kn, "%slayers.%d.self_attn.k_proj.k_scale", cfg->prefix, l);
        snprintf(vn, sizeof vn, "%slayers.%d.self_attn.v_proj.v_scale", cfg->prefix, l);
        const g4q_tensor *k = find(s, kn), *v = find(s, vn);
        if (!k && !v)
            continue;
        g4q_check_expect(s, k && v, k ? kn : vn, "kv-scale",
                         "only one of k_scale/v_scale is present (write both or neither)");
        g4q_check_expect(s, s->kv_fp8, k ? kn : vn, "kv-scale",
                         "KV scale present, but the config declares no FP8 KV cache");
        const g4q_tensor *both[2] = {k, v};
        for (int i = 0; i < 2; i++) {
            if (!both[i])
                continue;
            mark_used(s, both[i]);
            if (g4q_check_expect(s, both[i]->dtype == G4Q_DT_F32 && both[i]->ndim == 0,
                                 both[i]->name, "kv-scale", "expected an F32 scalar []"))
                positive_scales(s, both[i]);
        }
    }
}

static g4q_status collect_modules(g4q_check_state *s, g4q_weight_spec *specs, size_t n_specs)
{
    s->mods = calloc(n_specs ? n_specs : 1, sizeof *s->mods);
    if (!s->mods)
        return g4q_fail(s->ctx, G4Q_ERR_NOMEM, "out of memory checking %zu tensors", n_specs);
    for (size_t i = 0; i < n_specs; i++) {
        if (!is_linear_spec(&specs[i]))
            continue;
        g4q_check_module *m = &s->mods[s->n_mods++];
        snprintf(m->name, sizeof m->name, "%s", specs[i].name);
        size_t len = strlen(m->name);
        if (len > 7 && strcmp(m->name + len - 7, ".weight") == 0)
            m->name[len - 7] = '\0';
        m->layer = specs[i].layer;
        m->role = specs[i].role;
        m->group = m->layer >= 0 ? group_of(m->role) : G4Q_GROUP_NONE;
        m->out = specs[i].shape[0];
        m->in = specs[i].shape[1];
    }
    return G4Q_OK;
}

g4q_status g4q_check_run(g4q_ctx *ctx, const g4q_check_input *in, g4q_check_report *rep)
{
    memset(rep, 0, sizeof *rep);
    rep->n_tensors = in->n_tensors;
    g4q_check_state s = {.ctx = ctx, .in = in, .rep = rep};
    size_t n_specs = g4q_weights_expected_count(in->cfg);
    g4q_weight_spec *specs = calloc(n_specs ? n_specs : 1, sizeof *specs);
    s.sorted = calloc(in->n_tensors ? in->n_tensors : 1, sizeof *s.sorted);
    s.used = calloc(in->n_tensors ? in->n_tensors : 1, 1);
    g4q_status st = (specs && s.sorted && s.used)
                        ? G4Q_OK
                        : g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory checking an export");
    if (st == G4Q_OK) {
        n_specs = g4q_weights_expected(in->cfg, G4Q_ORDER_MODULE, specs);
        for (size_t i = 0; i < in->n_tensors; i++)
            s.sorted[i] = &in->tensors[i];
        qsort(s.sorted, in->n_tensors, sizeof *s.sorted, cmp_tensor_ptr);
        st = collect_modules(&s, specs, n_specs);
    }
    if (st == G4Q_OK) {
        g4q_check_json(&s);
        rep->format = s.fmt;
        for (size_t i = 0; i < n_specs; i++)
            if (!is_linear_spec(&specs[i]))
                kept_tensor(&s, &specs[i]);
        for (size_t i = 0; i < s.n_mods; i++)
            linear_module(&s, &s.mods[i]);
        fused_groups(&s);
        kv_scales(&s);
        g4q_check_coverage(&s);
        for (size_t i = 0; i < in->n_tensors; i++)
            g4q_check_expect(&s, s.used[i], in->tensors[i].name, "tensor-unexpected",
                             "not a tensor of this model in %s", g4q_check_format_name(s.fmt));
        if (s.nomem)
            st = g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory recording problems");
    }
    free(specs);
    free(s.sorted);
    free(s.used);
    free(s.mods);
    if (st != G4Q_OK)
        g4q_check_report_free(rep);
    return st;
}

/* Parses DIR/NAME as JSON into *out; an absent file gives NULL unless required. */
static g4q_status load_json(g4q_ctx *ctx, const char *dir, const char *name, int required,
                            cJSON **out, char **text_out)
{
    char path[4096];
    *out = NULL;
    G4Q_TRY(g4q_path_join(ctx, path, sizeof path, dir, name));
    if (!g4q_path_exists(path))
        return required ? g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "%s: missing", path) : G4Q_OK;
    char *text;
    G4Q_TRY(g4q_read_file(ctx, path, 64u << 20, &text, NULL));
    *out = cJSON_Parse(text);
    if (!*out) {
        free(text);
        return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: not valid JSON", path);
    }
    if (text_out)
        *text_out = text;
    else
        free(text);
    return G4Q_OK;
}

g4q_status g4q_check_dir(g4q_ctx *ctx, const char *dir, g4q_check_report *rep)
{
    memset(rep, 0, sizeof *rep);
    if (!g4q_is_dir(dir))
        return g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "%s: not a directory", dir);
    cJSON *config = NULL, *hf = NULL, *qcfg = NULL;
    char *config_text = NULL, path[4096];
    g4q_ckpt *ck = NULL;
    g4q_config *cfg = calloc(1, sizeof *cfg);
    g4q_status st = cfg ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    if (st == G4Q_OK)
        st = load_json(ctx, dir, "config.json", 1, &config, &config_text);
    if (st == G4Q_OK)
        st = g4q_path_join(ctx, path, sizeof path, dir, "config.json");
    if (st == G4Q_OK)
        st = g4q_config_parse(ctx, path, config_text, cfg);
    if (st == G4Q_OK)
        st = load_json(ctx, dir, "hf_quant_config.json", 0, &hf, NULL);
    if (st == G4Q_OK)
        st = load_json(ctx, dir, "quantize_config.json", 0, &qcfg, NULL);
    if (st == G4Q_OK)
        st = g4q_ckpt_open(ctx, dir, &ck);
    if (st == G4Q_OK) {
        g4q_check_input in = {.cfg = cfg, .tensors = g4q_ckpt_tensor(ck, 0),
                              .n_tensors = g4q_ckpt_count(ck), .config = config,
                              .hf_quant = hf, .quantize_config = qcfg};
        st = g4q_check_run(ctx, &in, rep);
    }
    g4q_ckpt_close(ck);
    cJSON_Delete(config);
    cJSON_Delete(hf);
    cJSON_Delete(qcfg);
    free(config_text);
    free(cfg);
    return st;
}
