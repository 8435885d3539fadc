/*
 * CPU GEMM: y[n, out] = x[n, in] · Wᵀ with W [out, in] in any format of backend.h, fp32
 * accumulation.
 *
 * OpenMP splits the output features into blocks of MM_ROWS rows of W. Each thread widens its
 * block to fp32 once (MM_ROWS · in floats, private scratch; packed formats are dequantized there
 * by g4q_cpu_decode_rows, bit-identical to the src/quant decoders) and then computes the block's
 * outputs for every token, four rows at a time so each x value loaded feeds four accumulators.
 * The inner loops are `omp simd` reductions, so each dot product is summed in several fp32
 * partial sums (a reduction order different from a plain loop, same precision class).
 *
 * A weight bound with an activation quantization (src/quant/actq.h) first quantizes a copy of x
 * row by row, runs the same GEMM on it and multiplies the outputs by the mode's alpha.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_internal.h"

#define MM_ROWS 16

static float dot1(const float *a, const float *b, int64_t n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t k = 0; k < n; k++)
        s += a[k] * b[k];
    return s;
}

/* Computes nr outputs y[r0 .. r0+nr) of one token from the widened rows wf[nr, in]. */
static void block_token(const float *wf, int nr, const float *xi, int64_t in, float *yi)
{
    int r = 0;
    for (; r + 4 <= nr; r += 4) {
        const float *w0 = wf + (int64_t)r * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
        for (int64_t k = 0; k < in; k++) {
            float xv = xi[k];
            a0 += w0[k] * xv;
            a1 += w1[k] * xv;
            a2 += w2[k] * xv;
            a3 += w3[k] * xv;
        }
        yi[r] = a0;
        yi[r + 1] = a1;
        yi[r + 2] = a2;
        yi[r + 3] = a3;
    }
    for (; r < nr; r++)
        yi[r] = dot1(wf + (int64_t)r * in, xi, in);
}

g4q_status g4q_cpu_matmul(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                          int n)
{
    const int64_t out = w->rows, in = w->cols;
    if (n < 0 || (size_t)n * (size_t)in > x->count || (size_t)n * (size_t)out > y->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL,
                        "cpu matmul: weight '%s' [%lld, %lld]: %d rows "
                        "do not fit the buffers",
                        w->name, (long long)out, (long long)in, n);
    if (n == 0) return G4Q_OK;
    const float *xd = x->data;
    float *xq = NULL;
    if (w->act != G4Q_ACTQ_NONE) {
        xq = malloc((size_t)n * (size_t)in * sizeof *xq);
        if (!xq)
            return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "cpu matmul: weight '%s': no scratch memory",
                            w->name);
        memcpy(xq, x->data, (size_t)n * (size_t)in * sizeof *xq);
#pragma omp parallel for num_threads(g4q_cpu_threads(be, (size_t)n *(size_t)in)) schedule(static)
        for (int i = 0; i < n; i++)
            g4q_actq_row(w->act, w->act_scale, xq + (int64_t)i * in, in);
        xd = xq;
    }
    const int64_t nblk = (out + MM_ROWS - 1) / MM_ROWS;
    int failed = 0;
#pragma omp parallel num_threads(g4q_cpu_threads(be, (size_t)n *(size_t)out *(size_t)in))          \
    reduction(|                                                                                    \
              : failed)
    {
        float *wf =
            aligned_alloc(64, ((size_t)MM_ROWS * (size_t)in * sizeof(float) + 63) / 64 * 64);
        if (!wf) failed = 1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblk; b++) {
            if (!wf) continue;
            const int64_t r0 = b * MM_ROWS;
            const int nr = (int)(out - r0 < MM_ROWS ? out - r0 : MM_ROWS);
            g4q_cpu_decode_rows(w, r0, nr, wf);
            for (int i = 0; i < n; i++)
                block_token(wf, nr, xd + (int64_t)i * in, in, y->data + (int64_t)i * out + r0);
        }
        free(wf);
    }
    free(xq);
    const float alpha = g4q_actq_alpha(w->act, w->act_scale);
    if (alpha != 1.0f)
        for (size_t i = 0; i < (size_t)n * (size_t)out; i++)
            y->data[i] *= alpha;
    if (failed)
        return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "cpu matmul: weight '%s': no scratch memory",
                        w->name);
    return G4Q_OK;
}
