/*
 * CPU backend: creation, memory, weight binding and the element-wise / row-wise ops. The GEMM
 * is in cpu_matmul.c, RoPE / attention / KV store in cpu_attention.c.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/cpu_internal.h"
#include "base/bf16.h"
#include "quant/quant.h"

int g4q_cpu_threads(const g4q_backend *be, size_t work)
{
    if (work < G4Q_CPU_PAR_MIN) return 1;
    int t = be->ctx->threads;
    if (t <= 0) t = omp_get_max_threads();
    return t < 1 ? 1 : t;
}

static void cpu_destroy(g4q_backend *be)
{
    free(be);
}

static g4q_status cpu_buf_alloc(g4q_backend *be, g4q_dtype dtype, size_t count, g4q_buf **out)
{
    *out = NULL;
    if (dtype != G4Q_DT_F32)
        return g4q_fail(be->ctx, G4Q_ERR_UNSUPPORTED, "cpu backend: %s buffers are not supported",
                        g4q_dtype_name(dtype));
    g4q_buf *b = calloc(1, sizeof *b);
    size_t bytes = ((count * sizeof(float)) + 63) / 64 * 64;
    if (count > SIZE_MAX / sizeof(float) - 64) bytes = 0;
    float *data = bytes ? aligned_alloc(64, bytes) : NULL;
    if (!b || (count && !data)) {
        free(b);
        free(data);
        return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "cpu backend: cannot allocate %zu floats", count);
    }
    b->count = count;
    b->data = data;
    *out = b;
    return G4Q_OK;
}

static void cpu_buf_free(g4q_backend *be, g4q_buf *buf)
{
    (void)be;
    if (!buf) return;
    free(buf->data);
    free(buf);
}

static g4q_status cpu_upload(g4q_backend *be, g4q_buf *dst, size_t off, const float *src,
                             size_t count)
{
    if (off > dst->count || count > dst->count - off)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu upload: [%zu, +%zu) outside %zu", off,
                        count, dst->count);
    if (count) memcpy(dst->data + off, src, count * sizeof(float));
    return G4Q_OK;
}

static g4q_status cpu_download(g4q_backend *be, const g4q_buf *src, size_t off, float *dst,
                               size_t count)
{
    if (off > src->count || count > src->count - off)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu download: [%zu, +%zu) outside %zu", off,
                        count, src->count);
    if (count) memcpy(dst, src->data + off, count * sizeof(float));
    return G4Q_OK;
}

static g4q_status cpu_copy_rows(g4q_backend *be, g4q_buf *dst, size_t dst_row, const g4q_buf *src,
                                size_t src_row, size_t nrows, size_t row_len)
{
    if ((dst_row + nrows) * row_len > dst->count || (src_row + nrows) * row_len > src->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu copy_rows: rows out of range");
    memmove(dst->data + dst_row * row_len, src->data + src_row * row_len,
            nrows * row_len * sizeof(float));
    return G4Q_OK;
}

static g4q_status cpu_weight_bind(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight **out)
{
    *out = NULL;
    const char *name = d->name ? d->name : "(unnamed)";
    if ((unsigned)d->format >= G4Q_WF_COUNT)
        return g4q_fail(be->ctx, G4Q_ERR_UNSUPPORTED,
                        "cpu backend: weight '%s': unknown format %d", name, (int)d->format);
    if (d->rows <= 0 || d->cols <= 0 || !d->data)
        return g4q_fail(be->ctx, G4Q_ERR_INVALID, "cpu backend: weight '%s': empty", name);
    G4Q_TRY(g4q_weight_desc_check_act(be->ctx, "cpu", d));
    g4q_bweight *w = calloc(1, sizeof *w);
    if (!w) return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "cpu backend: weight '%s'", name);
    w->format = d->format;
    w->rows = d->rows;
    w->cols = d->cols;
    w->data = d->data;
    w->name = name;
    w->act = d->act;
    w->act_scale = d->act_scale;
    if (d->format != G4Q_WF_BF16) {
        g4q_status st = g4q_cpu_bind_packed(be, d, w);
        if (st != G4Q_OK) {
            free(w);
            return st;
        }
    }
    *out = w;
    return G4Q_OK;
}

static void cpu_weight_free(g4q_backend *be, g4q_bweight *w)
{
    (void)be;
    if (!w) return;
    free(w->lut);
    free(w);
}

/* Deferred binding (backend.h): the CPU computes from the caller's bytes, so the binding is
 * weight_bind's; the upload only reads one byte per page, so that a mapped checkpoint's pages
 * are faulted in (from the page cache or the disk) on the uploading thread rather than in the
 * matmuls. */
static g4q_status cpu_weight_bind_deferred(g4q_backend *be, const g4q_weight_desc *d,
                                           g4q_bweight **out)
{
    *out = NULL;
    if (d->format != G4Q_WF_BF16 || d->act != G4Q_ACTQ_NONE)
        return g4q_fail(be->ctx, G4Q_ERR_UNSUPPORTED,
                        "cpu backend: weight '%s': deferred binding takes plain BF16 weights only",
                        d->name ? d->name : "(unnamed)");
    G4Q_TRY(cpu_weight_bind(be, d, out));
    (*out)->pending = 1;
    return G4Q_OK;
}

static g4q_status cpu_weight_upload(g4q_backend *be, g4q_bweight *w, g4q_ctx *ctx)
{
    (void)be;
    (void)ctx;
    if (!w->pending) return G4Q_OK;
    const volatile unsigned char *p = w->data;
    const size_t bytes = (size_t)w->rows * (size_t)w->cols * sizeof(uint16_t), page = 4096;
    unsigned char sink = 0;
    for (size_t i = 0; i < bytes; i += page)
        sink ^= p[i];
    sink ^= p[bytes - 1];
    (void)sink;
    w->pending = 0;
    return G4Q_OK;
}

/* Sum of squares in double (more accurate than the fp32 the spec allows; cheap). */
static g4q_status cpu_rmsnorm(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                              int rows, int n, float eps)
{
    if ((size_t)rows * (size_t)n > x->count || (size_t)rows * (size_t)n > y->count ||
        (w && (w->rows * w->cols != n || w->format != G4Q_WF_BF16)))
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu rmsnorm: %d x %d out of range", rows, n);
    const uint16_t *wd = w ? w->data : NULL;
#pragma omp parallel for num_threads(g4q_cpu_threads(be, (size_t)rows *(size_t)n)) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x->data + (size_t)r * n;
        float *yr = y->data + (size_t)r * n;
        double ss = 0.0;
        for (int i = 0; i < n; i++)
            ss += (double)xr[i] * xr[i];
        float ms = (float)(ss / n);
        float inv = 1.0f / sqrtf(ms + eps);
        if (wd) {
            for (int i = 0; i < n; i++)
                yr[i] = (xr[i] * inv) * g4q_bf16_to_f32(wd[i]);
        } else {
            for (int i = 0; i < n; i++)
                yr[i] = xr[i] * inv;
        }
    }
    return G4Q_OK;
}

static g4q_status cpu_geglu(g4q_backend *be, g4q_buf *y, const g4q_buf *gate, const g4q_buf *up,
                            size_t count)
{
    if (count > y->count || count > gate->count || count > up->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu geglu: %zu out of range", count);
    const float k0 = 0.7978845608028654f; /* sqrt(2/pi) */
    const float *g = gate->data, *u = up->data;
    float *o = y->data;
#pragma omp parallel for num_threads(g4q_cpu_threads(be, count)) schedule(static)
    for (size_t i = 0; i < count; i++) {
        float x = g[i];
        float gl = 0.5f * x * (1.0f + tanhf(k0 * (x + 0.044715f * x * x * x)));
        o[i] = gl * u[i];
    }
    return G4Q_OK;
}

static g4q_status cpu_add_scaled(g4q_backend *be, g4q_buf *h, const g4q_buf *a, size_t count,
                                 float scale)
{
    if (count > h->count || count > a->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu add_scaled: %zu out of range", count);
    float *hd = h->data;
    const float *ad = a->data;
#pragma omp parallel for num_threads(g4q_cpu_threads(be, count)) schedule(static)
    for (size_t i = 0; i < count; i++)
        hd[i] = (hd[i] + ad[i]) * scale;
    return G4Q_OK;
}

static g4q_status cpu_softcap(g4q_backend *be, g4q_buf *x, size_t count, float cap)
{
    if (count > x->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu softcap: %zu out of range", count);
    float *d = x->data;
#pragma omp parallel for num_threads(g4q_cpu_threads(be, count)) schedule(static)
    for (size_t i = 0; i < count; i++)
        d[i] = tanhf(d[i] / cap) * cap;
    return G4Q_OK;
}

static g4q_status cpu_embed(g4q_backend *be, g4q_buf *y, const g4q_bweight *table,
                            const int32_t *ids, int T, float scale)
{
    int64_t d = table->cols;
    if ((size_t)T * (size_t)d > y->count || table->format != G4Q_WF_BF16)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu embed: %d rows out of range", T);
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= table->rows)
            return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu embed: id %d out of range",
                            (int)ids[t]);
#pragma omp parallel for num_threads(g4q_cpu_threads(be, (size_t)T *(size_t)d)) schedule(static)
    for (int t = 0; t < T; t++) {
        const uint16_t *row = (const uint16_t *)table->data + (size_t)ids[t] * (size_t)d;
        float *yr = y->data + (size_t)t * (size_t)d;
        for (int64_t i = 0; i < d; i++)
            yr[i] = g4q_bf16_to_f32(row[i]) * scale;
    }
    return G4Q_OK;
}

static g4q_status cpu_amax(g4q_backend *be, const g4q_buf *x, size_t count, float *amax)
{
    if (count > x->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu amax: %zu out of range", count);
    const float *d = x->data;
    float m = 0.0f;
    int nan = 0;
#pragma omp parallel for num_threads(g4q_cpu_threads(be, count)) schedule(static) reduction(max    \
                                                                                            : m)   \
    reduction(|                                                                                    \
              : nan)
    for (size_t i = 0; i < count; i++) {
        float a = fabsf(d[i]);
        if (a != a)
            nan = 1;
        else if (a > m)
            m = a;
    }
    *amax = nan ? NAN : m;
    return G4Q_OK;
}

static g4q_status cpu_argmax(g4q_backend *be, const g4q_buf *x, size_t n, const g4q_buf *mask,
                             int32_t *id, int32_t *nan_at)
{
    if (n > x->count || n > INT32_MAX || (mask && n > mask->count))
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu argmax: %zu out of range", n);
    int32_t best = -1, nan = -1;
    float bv = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        const float v = x->data[i];
        if (v != v) {
            if (nan < 0) nan = (int32_t)i;
            continue;
        }
        if (mask && mask->data[i] != 0.0f) continue;
        if (v > bv) { /* strict: the lowest index of a tie wins */
            bv = v;
            best = (int32_t)i;
        }
    }
    *id = best;
    *nan_at = nan;
    return G4Q_OK;
}

static g4q_status cpu_amax_into(g4q_backend *be, const g4q_buf *x, size_t count, g4q_buf *acc,
                                size_t index)
{
    if (index >= acc->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu amax_into: index %zu out of range", index);
    float a = 0.0f;
    G4Q_TRY(cpu_amax(be, x, count, &a));
    const float old = acc->data[index];
    acc->data[index] = (a != a || old != old) ? NAN : (a > old ? a : old);
    return G4Q_OK;
}

static g4q_status cpu_col_amax_into(g4q_backend *be, const g4q_buf *x, int rows, int cols,
                                    g4q_buf *acc)
{
    if (rows < 0 || cols < 0 || (size_t)rows * (size_t)cols > x->count ||
        (size_t)cols > acc->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu col_amax_into: [%d, %d] out of range",
                        rows, cols);
    const float *d = x->data;
    float *a = acc->data;
#pragma omp parallel for num_threads(g4q_cpu_threads(be, (size_t)rows * (size_t)cols))           \
    schedule(static)
    for (int c = 0; c < cols; c++) {
        float m = a[c];
        for (int r = 0; r < rows && m == m; r++) {
            const float v = fabsf(d[(size_t)r * (size_t)cols + (size_t)c]);
            m = v != v ? NAN : (v > m ? v : m);
        }
        a[c] = m;
    }
    return G4Q_OK;
}

static g4q_status cpu_gram(g4q_backend *be, g4q_buf *H, const g4q_buf *x, int rows, int n,
                           int block, int accumulate)
{
    if (rows < 0 || n <= 0 || (size_t)rows * (size_t)n > x->count ||
        g4q_hess_count(n, block) > H->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu gram: [%d, %d] out of range", rows, n);
    float *h = H->data;
    const int hb = g4q_hess_block(n, block), bw = hb ? hb : n; /* held block, and its width */
    if (!accumulate) memset(h, 0, g4q_hess_count(n, block) * sizeof *h);
    const float *xs = x->data;
    /* Lower-triangle tiles of 32 rows stay in cache while every row of x passes over them; the
     * inner loop runs over contiguous j (vectorizable, each entry still sums rows in order). */
    enum { TILE = 32 };
    const int tiles = (n + TILE - 1) / TILE;
#pragma omp parallel for schedule(dynamic, 1)                                                     \
    num_threads(g4q_cpu_threads(be, (size_t)rows * (size_t)n * (size_t)bw))
    for (int b = 0; b < tiles; b++) {
        const int i0 = b * TILE, i1 = i0 + TILE < n ? i0 + TILE : n;
        for (int t = 0; t < rows; t++) {
            const float *xt = xs + (size_t)t * (size_t)n;
            for (int i = i0; i < i1; i++) {
                const float a = xt[i];
                const int j0 = i / bw * bw; /* row i's held entries: columns j0 .. i here */
                float *hi = h + g4q_hess_offset(n, hb, i, j0);
#pragma omp simd
                for (int j = j0; j <= i; j++)
                    hi[j - j0] += a * xt[j];
            }
        }
    }
    for (int i = 0; i < n; i++) /* mirror: the upper triangle is the lower one, exactly */
        for (int j = i / bw * bw; j < i; j++)
            h[g4q_hess_offset(n, hb, j, i)] = h[g4q_hess_offset(n, hb, i, j)];
    return G4Q_OK;
}

static g4q_status cpu_fp8_roundtrip(g4q_backend *be, g4q_buf *x, size_t count, float scale)
{
    if (count > x->count || !(scale > 0.0f))
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu fp8_roundtrip: %zu values, scale %g",
                        count, (double)scale);
    float *d = x->data;
#pragma omp parallel for num_threads(g4q_cpu_threads(be, count)) schedule(static)
    for (size_t i = 0; i < count; i++)
        d[i] = g4q_fp8_roundtrip(d[i], scale);
    return G4Q_OK;
}

static g4q_status cpu_logit_stats(g4q_backend *be, const g4q_buf *a, const g4q_buf *b,
                                  const int32_t *target, int rows, int V, double (*out)[5])
{
    if ((size_t)rows * (size_t)V > a->count || (size_t)rows * (size_t)V > b->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu logit_stats: %d rows out of range", rows);
#pragma omp parallel for num_threads(g4q_cpu_threads(be, (size_t)rows *(size_t)V)) schedule(static)
    for (int r = 0; r < rows; r++)
        g4q_logit_row_stats(a->data + (size_t)r * (size_t)V, b->data + (size_t)r * (size_t)V, V,
                            target[r], out[r]);
    return G4Q_OK;
}

g4q_status g4q_backend_cpu_create(g4q_ctx *ctx, g4q_backend **out)
{
    *out = NULL;
    g4q_backend *be = calloc(1, sizeof *be);
    if (!be) return g4q_fail(ctx, G4Q_ERR_NOMEM, "cpu backend: out of memory");
    be->name = "cpu";
    be->act_dtype = G4Q_DT_F32;
    be->ctx = ctx;
    be->state = NULL; /* the CPU backend keeps no state besides the context */
    be->destroy = cpu_destroy;
    be->buf_alloc = cpu_buf_alloc;
    be->buf_free = cpu_buf_free;
    be->upload = cpu_upload;
    be->download = cpu_download;
    be->copy_rows = cpu_copy_rows;
    be->weight_bind = cpu_weight_bind;
    be->weight_free = cpu_weight_free;
    be->weight_bind_deferred = cpu_weight_bind_deferred;
    be->weight_upload = cpu_weight_upload;
    be->matmul = g4q_cpu_matmul;
    be->rmsnorm = cpu_rmsnorm;
    be->rope = g4q_cpu_rope;
    be->attention = g4q_cpu_attention;
    be->kv_store = g4q_cpu_kv_store;
    be->geglu = cpu_geglu;
    be->add_scaled = cpu_add_scaled;
    be->softcap = cpu_softcap;
    be->embed = cpu_embed;
    be->amax = cpu_amax;
    be->amax_into = cpu_amax_into;
    be->col_amax_into = cpu_col_amax_into;
    be->argmax = cpu_argmax;
    be->gram = cpu_gram;
    be->fp8_roundtrip = cpu_fp8_roundtrip;
    be->logit_stats = cpu_logit_stats;
    *out = be;
    return G4Q_OK;
}
