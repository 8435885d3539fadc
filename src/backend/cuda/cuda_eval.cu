// CUDA evaluation ops of backend.h: the FP8 KV-cache round trip (engine emulation) and the
// per-position statistics of two models' logits that compare reduces on the device.
//
// logit_stats: one block of LS_THREADS threads per row. Each thread walks the columns
// t, t + LS_THREADS, ... in order and the block combines the threads' partial results in a fixed
// tree, so the result depends only on the inputs (deterministic), not on scheduling. Three passes
// over the row: maxima and first argmax of both rows; Σ exp(x − max) of both in double; the KL sum
// in double. Only 5 doubles per row go back to the host.
#include <cmath>

#include "backend/cuda/cuda_internal.h"
#include "quant/actq.h"

#define LS_THREADS 512

template <typename T> static __global__ void fp8_roundtrip_kernel(T *x, size_t count, float s)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) x[i] = g4q_cvt<T>(g4q_fp8_roundtrip(g4q_ld(x[i]), s));
}

g4q_status g4q_cuda_fp8_roundtrip(g4q_backend *be, g4q_buf *x, size_t count, float scale)
{
    g4q_ctx *ctx = be->ctx;
    if (!g4q_cuda_act_ok(be, x, count) || !(scale > 0.0f))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda fp8_roundtrip: %zu values, scale %g",
                        count, (double)scale);
    if (count == 0) return G4Q_OK;
    cudaStream_t st = g4q_cuda_st(be)->stream;
    const unsigned blocks = g4q_cuda_blocks(count, 256);
    if (x->dtype == G4Q_DT_BF16)
        fp8_roundtrip_kernel<<<blocks, 256, 0, st>>>((__nv_bfloat16 *)x->data, count, scale);
    else
        fp8_roundtrip_kernel<<<blocks, 256, 0, st>>>((float *)x->data, count, scale);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

/* Block-wide sum of one double per thread, the same tree every time; all threads get it. */
static __device__ double block_sum(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = LS_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    const double r = sh[0];
    __syncthreads();
    return r;
}

/* Block-wide maximum with its first index. */
static __device__ void block_argmax(float &m, int &arg, float *shm, int *sha)
{
    shm[threadIdx.x] = m;
    sha[threadIdx.x] = arg;
    __syncthreads();
    for (int s = LS_THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const float o = shm[threadIdx.x + s];
            const int oa = sha[threadIdx.x + s];
            if (o > shm[threadIdx.x] || (o == shm[threadIdx.x] && oa < sha[threadIdx.x]))
                shm[threadIdx.x] = o, sha[threadIdx.x] = oa;
        }
        __syncthreads();
    }
    m = shm[0];
    arg = sha[0];
    __syncthreads();
}

template <typename T>
static __global__ void __launch_bounds__(LS_THREADS)
    logit_stats_kernel(const T *a, const T *b, const int32_t *target, int V, double *out)
{
    __shared__ double shd[LS_THREADS];
    __shared__ float shm[LS_THREADS];
    __shared__ int sha[LS_THREADS];
    const T *ra = a + (size_t)blockIdx.x * (size_t)V, *rb = b + (size_t)blockIdx.x * (size_t)V;
    float ma = -INFINITY, mb = -INFINITY;
    int ia = V, ib = V;
    for (int v = threadIdx.x; v < V; v += LS_THREADS) {
        const float x = g4q_ld(ra[v]), y = g4q_ld(rb[v]);
        if (x > ma || ia == V) ma = x, ia = v;
        if (y > mb || ib == V) mb = y, ib = v;
    }
    block_argmax(ma, ia, shm, sha);
    block_argmax(mb, ib, shm, sha);
    double sa = 0.0, sb = 0.0;
    for (int v = threadIdx.x; v < V; v += LS_THREADS) {
        sa += exp((double)g4q_ld(ra[v]) - ma);
        sb += exp((double)g4q_ld(rb[v]) - mb);
    }
    const double la = ma + log(block_sum(sa, shd)), lb = mb + log(block_sum(sb, shd));
    double kl = 0.0;
    for (int v = threadIdx.x; v < V; v += LS_THREADS) {
        const double lpa = (double)g4q_ld(ra[v]) - la, lpb = (double)g4q_ld(rb[v]) - lb;
        kl += exp(lpa) * (lpa - lpb);
    }
    kl = block_sum(kl, shd);
    if (threadIdx.x == 0) {
        const int t = target[blockIdx.x];
        double *o = out + 5 * (size_t)blockIdx.x;
        o[0] = kl;
        o[1] = la - (double)g4q_ld(ra[t]);
        o[2] = lb - (double)g4q_ld(rb[t]);
        o[3] = ia;
        o[4] = ib;
    }
}

g4q_status g4q_cuda_logit_stats(g4q_backend *be, const g4q_buf *a, const g4q_buf *b,
                                const int32_t *target, int rows, int V, double (*out)[5])
{
    g4q_ctx *ctx = be->ctx;
    const size_t n = (size_t)rows * (size_t)V;
    if (rows < 0 || V < 1 || !g4q_cuda_act_ok(be, a, n) || !g4q_cuda_act_ok(be, b, n))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda logit_stats: %d rows of %d out of range",
                        rows, V);
    if (rows == 0) return G4Q_OK;
    for (int r = 0; r < rows; r++)
        if (target[r] < 0 || target[r] >= V)
            return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda logit_stats: target %d out of range",
                            (int)target[r]);
    cudaStream_t st = g4q_cuda_st(be)->stream;
    const size_t tb = ((size_t)rows * sizeof(int32_t) + 255) / 256 * 256;
    const size_t ob = (size_t)rows * 5 * sizeof(double);
    void *mem = NULL;
    G4Q_TRY(g4q_cuda_alloc(be, tb + ob, "logit_stats", &mem));
    int32_t *tdev = (int32_t *)mem;
    double *odev = (double *)((char *)mem + tb);
    cudaError_t e = cudaMemcpyAsync(tdev, target, (size_t)rows * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess) {
        if (a->dtype == G4Q_DT_BF16)
            logit_stats_kernel<<<rows, LS_THREADS, 0, st>>>((const __nv_bfloat16 *)a->data,
                                                            (const __nv_bfloat16 *)b->data, tdev,
                                                            V, odev);
        else
            logit_stats_kernel<<<rows, LS_THREADS, 0, st>>>((const float *)a->data,
                                                            (const float *)b->data, tdev, V, odev);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpyAsync(out, odev, ob, cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    g4q_cuda_release(be, mem, tb + ob);
    if (e != cudaSuccess)
        return g4q_fail(ctx, G4Q_ERR_CUDA, "cuda logit_stats: %s", cudaGetErrorString(e));
    return G4Q_OK;
}

/* ---- argmax: greedy sampling on the device ----
 * Each selectable value becomes a 64-bit key, its float order-preserving bits above the inverted
 * index, so one unsigned max picks the largest value and, on ties, the lowest index. -0 counts
 * as +0 (the host compares them equal); -inf is never selectable, NaN never is and is reported by
 * an unsigned min over the indices holding one. */
#define AM_THREADS 256

template <typename T>
static __global__ void __launch_bounds__(AM_THREADS)
    argmax_kernel(const T *x, size_t n, const float *mask, unsigned long long *out)
{
    unsigned long long best = 0, nan = ~0ull;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = g4q_ld(x[i]);
        if (v != v) {
            nan = min(nan, (unsigned long long)i);
            continue;
        }
        if ((mask && mask[i] != 0.0f) || v == -INFINITY) continue;
        if (v == 0.0f) v = 0.0f;
        const unsigned b = __float_as_uint(v);
        const unsigned u = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
        best = max(best, ((unsigned long long)u << 32) | (0xffffffffu - (unsigned)i));
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        best = max(best, __shfl_xor_sync(0xffffffffu, best, o));
        nan = min(nan, __shfl_xor_sync(0xffffffffu, nan, o));
    }
    __shared__ unsigned long long sb[AM_THREADS / 32], sn[AM_THREADS / 32];
    if ((threadIdx.x & 31) == 0) sb[threadIdx.x >> 5] = best, sn[threadIdx.x >> 5] = nan;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < AM_THREADS / 32; w++)
            best = max(best, sb[w]), nan = min(nan, sn[w]);
        atomicMax(&out[0], best);
        atomicMin(&out[1], nan);
    }
}

g4q_status g4q_cuda_argmax(g4q_backend *be, const g4q_buf *x, size_t n, const g4q_buf *mask,
                           int32_t *id, int32_t *nan_at)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (!g4q_cuda_act_ok(be, x, n) || n > INT32_MAX ||
        (mask && (mask->dtype != G4Q_DT_F32 || n > mask->count)))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda argmax: %zu out of range", n);
    cudaStream_t st = s->stream;
    unsigned long long r[2];
    G4Q_CUDA_CHECK(cudaMemsetAsync(s->pick_dev, 0, sizeof(unsigned long long), st));
    G4Q_CUDA_CHECK(cudaMemsetAsync(s->pick_dev + 1, 0xff, sizeof(unsigned long long), st));
    const size_t want = (n + AM_THREADS * 8 - 1) / (AM_THREADS * 8);
    const unsigned blocks = (unsigned)(want < 1 ? 1 : want > 512 ? 512 : want);
    const float *m = mask ? (const float *)mask->data : nullptr;
    if (x->dtype == G4Q_DT_BF16)
        argmax_kernel<<<blocks, AM_THREADS, 0, st>>>((const __nv_bfloat16 *)x->data, n, m,
                                                    s->pick_dev);
    else
        argmax_kernel<<<blocks, AM_THREADS, 0, st>>>((const float *)x->data, n, m, s->pick_dev);
    G4Q_CUDA_CHECK(cudaGetLastError());
    G4Q_CUDA_CHECK(cudaMemcpyAsync(r, s->pick_dev, sizeof r, cudaMemcpyDeviceToHost, st));
    G4Q_CUDA_CHECK(cudaStreamSynchronize(st));
    *id = r[0] ? (int32_t)(0xffffffffu - (unsigned)(r[0] & 0xffffffffu)) : -1;
    *nan_at = r[1] == ~0ull ? -1 : (int32_t)r[1];
    return G4Q_OK;
}
