/*
 * CPU RoPE, attention over a KV cache plus the new chunk, and the KV-cache store.
 * All in fp32; softmax with the running maximum subtracted.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

g4q_status g4q_cpu_rope(g4q_backend *be, g4q_buf *x, const g4q_buf *inv_freq, int T, int heads,
                        int hd, int pos0)
{
    const int half = hd / 2;
    if (hd % 2 || (size_t)half > inv_freq->count || (size_t)T * heads * hd > x->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu rope: T %d heads %d hd %d out of range", T,
                        heads, hd);
    int failed = 0;
#pragma omp parallel num_threads(g4q_cpu_threads(be, (size_t)T *heads *hd)) reduction(| : failed)
    {
        float *cs = malloc(sizeof(float) * (size_t)hd); /* cos [half], sin [half] */
        if (!cs) failed = 1;
#pragma omp for schedule(static)
        for (int t = 0; t < T; t++) {
            if (!cs) continue;
            /* θ = fp32(fp32(p) · inv_freq[i]) as in HF; cos/sin of that fp32 value taken in
             * double and rounded once (correctly rounded in practice). */
            const float p = (float)(pos0 + t);
            for (int i = 0; i < half; i++) {
                float th = p * inv_freq->data[i];
                cs[i] = (float)cos((double)th);
                cs[half + i] = (float)sin((double)th);
            }
            for (int h = 0; h < heads; h++) {
                float *v = x->data + ((size_t)t * heads + h) * hd;
                for (int i = 0; i < half; i++) {
                    float a = v[i], b = v[i + half];
                    v[i] = a * cs[i] - b * cs[half + i];
                    v[i + half] = b * cs[i] + a * cs[half + i];
                }
            }
        }
        free(cs);
    }
    if (failed) return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "cpu rope: no scratch memory");
    return G4Q_OK;
}

static float dotf(const float *a, const float *b, int n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int k = 0; k < n; k++)
        s += a[k] * b[k];
    return s;
}

/* One query row against the visible keys: old cache positions [lo_old, n_past) and new chunk
 * rows [lo_new, t]. sc is scratch for the scores. */
static void attend_one(const float *qv, const g4q_buf *k_new, const g4q_buf *v_new,
                       const g4q_buf *kc, const g4q_buf *vc, int cap, int n_past, int t, int nkv,
                       int kvh, int hd, int window, float scale, float *sc, float *o)
{
    const int pq = n_past + t;
    int lo_old = n_past - cap > 0 ? n_past - cap : 0;
    int lo_new = 0;
    if (window > 0) {
        if (lo_old < pq - window + 1) lo_old = pq - window + 1;
        if (lo_new < t - window + 1) lo_new = t - window + 1;
    }
    const size_t row = (size_t)nkv * hd;
    int ns = 0;
    float mx = -INFINITY;
    for (int p = lo_old; p < n_past; p++) {
        float s = dotf(qv, kc->data + (size_t)(p % cap) * row + (size_t)kvh * hd, hd) * scale;
        sc[ns++] = s;
        mx = s > mx ? s : mx;
    }
    for (int j = lo_new; j <= t; j++) {
        float s = dotf(qv, k_new->data + (size_t)j * row + (size_t)kvh * hd, hd) * scale;
        sc[ns++] = s;
        mx = s > mx ? s : mx;
    }
    float sum = 0.0f;
    for (int i = 0; i < ns; i++) {
        sc[i] = expf(sc[i] - mx);
        sum += sc[i];
    }
    const float inv = 1.0f / sum;
    memset(o, 0, sizeof(float) * (size_t)hd);
    int i = 0;
    for (int p = lo_old; p < n_past; p++, i++) {
        const float *vv = vc->data + (size_t)(p % cap) * row + (size_t)kvh * hd;
        const float w = sc[i] * inv;
#pragma omp simd
        for (int d = 0; d < hd; d++)
            o[d] += w * vv[d];
    }
    for (int j = lo_new; j <= t; j++, i++) {
        const float *vv = v_new->data + (size_t)j * row + (size_t)kvh * hd;
        const float w = sc[i] * inv;
#pragma omp simd
        for (int d = 0; d < hd; d++)
            o[d] += w * vv[d];
    }
}

g4q_status g4q_cpu_attention(g4q_backend *be, g4q_buf *out, const g4q_buf *q, const g4q_buf *k_new,
                             const g4q_buf *v_new, const g4q_buf *kc, const g4q_buf *vc, int cap,
                             int n_past, int T, int nh, int nkv, int hd, int window, float scale)
{
    if (nkv <= 0 || nh % nkv || cap <= 0 || n_past < 0 || T < 0 || (size_t)T * nh * hd > q->count ||
        (size_t)T * nh * hd > out->count || (size_t)T * nkv * hd > k_new->count ||
        (size_t)T * nkv * hd > v_new->count || (size_t)cap * nkv * hd > kc->count ||
        (size_t)cap * nkv * hd > vc->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL,
                        "cpu attention: T %d nh %d nkv %d hd %d cap %d out of range", T, nh, nkv,
                        hd, cap);
    const int group = nh / nkv;
    const int nsc = cap + T;
    int failed = 0;
#pragma omp parallel num_threads(g4q_cpu_threads(be, (size_t)T *nh *nsc *hd)) reduction(| : failed)
    {
        float *sc = malloc(sizeof(float) * (size_t)nsc);
        if (!sc) failed = 1;
#pragma omp for schedule(dynamic, 1) collapse(2)
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < nh; h++) {
                if (!sc) continue;
                attend_one(q->data + ((size_t)t * nh + h) * hd, k_new, v_new, kc, vc, cap, n_past,
                           t, nkv, h / group, hd, window, scale, sc,
                           out->data + ((size_t)t * nh + h) * hd);
            }
        }
        free(sc);
    }
    if (failed) return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "cpu attention: no scratch memory");
    return G4Q_OK;
}

g4q_status g4q_cpu_kv_store(g4q_backend *be, g4q_buf *kc, g4q_buf *vc, const g4q_buf *k_new,
                            const g4q_buf *v_new, int cap, int n_past, int T, int nkv, int hd)
{
    const size_t row = (size_t)nkv * hd;
    if (cap <= 0 || n_past < 0 || T < 0 || (size_t)cap * row > kc->count ||
        (size_t)cap * row > vc->count || (size_t)T * row > k_new->count ||
        (size_t)T * row > v_new->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cpu kv_store: T %d cap %d out of range", T,
                        cap);
    int first = T > cap ? T - cap : 0; /* earlier rows would be overwritten anyway */
    for (int t = first; t < T; t++) {
        size_t slot = (size_t)(n_past + t) % (size_t)cap;
        memcpy(kc->data + slot * row, k_new->data + (size_t)t * row, row * sizeof(float));
        memcpy(vc->data + slot * row, v_new->data + (size_t)t * row, row * sizeof(float));
    }
    return G4Q_OK;
}
