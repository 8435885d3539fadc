// CUDA element-wise ops on bf16 buffers, fp32 inside, rounded where the bf16 reference rounds
// (docs/gemma4.md §4.3, §4.4, §4.8, §4.9): GeGLU, the residual add with scalar, logit soft-capping,
// the scaled embedding lookup, and the amax reduction.
#include "backend/cuda/cuda_internal.h"

#define EW_THREADS 256

static __device__ __forceinline__ float rb(float v)
{
    return __bfloat162float(__float2bfloat16_rn(v));
}

/* y = bf16(bf16(gelu_tanh(g)) · u); y may alias gate or up (each element read before written). */
static __global__ void geglu_kernel(__nv_bfloat16 *y, const __nv_bfloat16 *g,
                                    const __nv_bfloat16 *u, size_t n)
{
    const float k0 = 0.7978845608028654f; /* sqrt(2/pi) */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float x = __bfloat162float(g[i]);
        float gl = rb(0.5f * x * (1.0f + tanhf(k0 * (x + 0.044715f * x * x * x))));
        y[i] = __float2bfloat16_rn(gl * __bfloat162float(u[i]));
    }
}

/* h = bf16(bf16(h + a) · s): two roundings, as the reference adds and then scales. */
static __global__ void add_scaled_kernel(__nv_bfloat16 *h, const __nv_bfloat16 *a, size_t n,
                                         float s)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = rb(__bfloat162float(h[i]) + __bfloat162float(a[i]));
        h[i] = __float2bfloat16_rn(v * s);
    }
}

/* x = bf16(bf16(tanh(bf16(x / cap))) · cap): the three roundings of §4.8. */
static __global__ void softcap_kernel(__nv_bfloat16 *x, size_t n, float cap)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = rb(__bfloat162float(x[i]) / cap);
        x[i] = __float2bfloat16_rn(rb(tanhf(v)) * cap);
    }
}

/* y[t, :] = bf16(E[ids[t], :] · scale); one block row per token. */
static __global__ void embed_kernel(__nv_bfloat16 *y, const __nv_bfloat16 *table,
                                    const int32_t *ids, int64_t d, float scale)
{
    const __nv_bfloat16 *row = table + (int64_t)ids[blockIdx.y] * d;
    __nv_bfloat16 *yr = y + (int64_t)blockIdx.y * d;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < d;
         i += (int64_t)gridDim.x * blockDim.x)
        yr[i] = __float2bfloat16_rn(__bfloat162float(row[i]) * scale);
}

/* Non-negative floats (and NaN with the sign cleared) order like their bit patterns, and a NaN's
 * bits exceed +inf's, so an unsigned max over |x| bits is the amax with NaN propagating. */
static __global__ void amax_kernel(const __nv_bfloat16 *x, size_t n, unsigned *out)
{
    unsigned m = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        m = max(m, __float_as_uint(fabsf(__bfloat162float(x[i]))));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) atomicMax(out, m);
}

static unsigned grid_for(size_t n)
{
    size_t b = (n + EW_THREADS - 1) / EW_THREADS;
    return (unsigned)(b < 4096 ? (b ? b : 1) : 4096);
}

g4q_status g4q_cuda_geglu(g4q_backend *be, g4q_buf *y, const g4q_buf *gate, const g4q_buf *up,
                          size_t count)
{
    g4q_ctx *ctx = be->ctx;
    if (!g4q_cuda_bf16_ok(y, count) || !g4q_cuda_bf16_ok(gate, count) ||
        !g4q_cuda_bf16_ok(up, count))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda geglu: %zu out of range", count);
    if (!count) return G4Q_OK;
    geglu_kernel<<<grid_for(count), EW_THREADS, 0, g4q_cuda_st(be)->stream>>>(
        (__nv_bfloat16 *)y->data, (const __nv_bfloat16 *)gate->data,
        (const __nv_bfloat16 *)up->data, count);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_add_scaled(g4q_backend *be, g4q_buf *h, const g4q_buf *a, size_t count,
                               float scale)
{
    g4q_ctx *ctx = be->ctx;
    if (!g4q_cuda_bf16_ok(h, count) || !g4q_cuda_bf16_ok(a, count))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda add_scaled: %zu out of range", count);
    if (!count) return G4Q_OK;
    add_scaled_kernel<<<grid_for(count), EW_THREADS, 0, g4q_cuda_st(be)->stream>>>(
        (__nv_bfloat16 *)h->data, (const __nv_bfloat16 *)a->data, count, scale);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_softcap(g4q_backend *be, g4q_buf *x, size_t count, float cap)
{
    g4q_ctx *ctx = be->ctx;
    if (!g4q_cuda_bf16_ok(x, count))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda softcap: %zu out of range", count);
    if (!count) return G4Q_OK;
    softcap_kernel<<<grid_for(count), EW_THREADS, 0, g4q_cuda_st(be)->stream>>>(
        (__nv_bfloat16 *)x->data, count, cap);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_embed(g4q_backend *be, g4q_buf *y, const g4q_bweight *table,
                          const int32_t *ids, int T, float scale)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    const int64_t d = table->cols;
    if (T < 0 || !g4q_cuda_bf16_ok(y, (size_t)T * (size_t)d))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda embed: %d rows out of range", T);
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= table->rows)
            return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda embed: id %d out of range", (int)ids[t]);
    if (T == 0) return G4Q_OK;
    if ((size_t)T > s->ids_cap) {
        G4Q_CUDA_CHECK(cudaStreamSynchronize(s->stream));
        g4q_cuda_release(be, s->ids_dev, s->ids_cap * sizeof(int32_t));
        s->ids_dev = NULL;
        s->ids_cap = 0;
        G4Q_TRY(g4q_cuda_alloc(be, (size_t)T * sizeof(int32_t), "token ids", (void **)&s->ids_dev));
        s->ids_cap = (size_t)T;
    }
    /* Synchronous with respect to the host buffer: ids may be reused right after. */
    G4Q_CUDA_CHECK(cudaMemcpyAsync(s->ids_dev, ids, (size_t)T * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, s->stream));
    G4Q_CUDA_CHECK(cudaStreamSynchronize(s->stream));
    dim3 grid(g4q_cuda_blocks((size_t)d, EW_THREADS) < 64 ? g4q_cuda_blocks((size_t)d, EW_THREADS)
                                                          : 64,
              (unsigned)T);
    embed_kernel<<<grid, EW_THREADS, 0, s->stream>>>(
        (__nv_bfloat16 *)y->data, (const __nv_bfloat16 *)table->data, s->ids_dev, d, scale);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_amax(g4q_backend *be, const g4q_buf *x, size_t count, float *amax)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (!g4q_cuda_bf16_ok(x, count))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda amax: %zu out of range", count);
    G4Q_CUDA_CHECK(cudaMemsetAsync(s->amax_dev, 0, sizeof(float), s->stream));
    if (count) {
        amax_kernel<<<grid_for(count), EW_THREADS, 0, s->stream>>>(
            (const __nv_bfloat16 *)x->data, count, (unsigned *)s->amax_dev);
        G4Q_CUDA_CHECK(cudaGetLastError());
    }
    G4Q_CUDA_CHECK(cudaMemcpyAsync(amax, s->amax_dev, sizeof(float), cudaMemcpyDeviceToHost,
                                   s->stream));
    G4Q_CUDA_CHECK(cudaStreamSynchronize(s->stream));
    return G4Q_OK;
}
