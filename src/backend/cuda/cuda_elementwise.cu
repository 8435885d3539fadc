// CUDA element-wise ops, fp32 inside: GeGLU, the residual add with scalar, logit soft-capping, the
// scaled embedding lookup, and the amax reduction. Kernels are templated on the activation type:
// in BF16 mode they round where the bf16 reference rounds (docs/gemma4.md §4.3, §4.4, §4.8,
// §4.9), in F32 mode the same code stores fp32 and the rounding points are the identity.
#include <cstdint>

#include "backend/cuda/cuda_internal.h"

#define EW_THREADS 256

/* y = T(rnd(gelu_tanh(g)) · u); y may alias gate or up (each element read before written). */
template <typename T> static __global__ void geglu_kernel(T *y, const T *g, const T *u, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gl = g4q_rnd<T>(g4q_gelu_tanh(g4q_ld(g[i])));
        y[i] = g4q_cvt<T>(gl * g4q_ld(u[i]));
    }
}

/* geglu_kernel in BF16 mode, 8 elements per thread step through 16-byte accesses (n8 = n / 8;
 * the same arithmetic per element). Both inputs of a chunk are read before it is written. */
static __global__ void geglu_vec_kernel(uint4 *y, const uint4 *g, const uint4 *u, size_t n8)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8;
         i += (size_t)gridDim.x * blockDim.x) {
        const uint4 gv = g[i], uv = u[i];
        const __nv_bfloat16 *ge = reinterpret_cast<const __nv_bfloat16 *>(&gv);
        const __nv_bfloat16 *ue = reinterpret_cast<const __nv_bfloat16 *>(&uv);
        uint4 o;
        __nv_bfloat16 *oe = reinterpret_cast<__nv_bfloat16 *>(&o);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float x = __bfloat162float(ge[j]);
            const float gl = g4q_rnd<__nv_bfloat16>(g4q_gelu_tanh(x));
            oe[j] = __float2bfloat16_rn(gl * __bfloat162float(ue[j]));
        }
        y[i] = o;
    }
}

/* h = T(rnd(h + a) · s): two roundings in BF16 mode, as the reference adds and then scales. */
template <typename T> static __global__ void add_scaled_kernel(T *h, const T *a, size_t n, float s)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = g4q_rnd<T>(g4q_ld(h[i]) + g4q_ld(a[i]));
        h[i] = g4q_cvt<T>(v * s);
    }
}

/* x = T(rnd(tanh(rnd(x / cap))) · cap): the three roundings of §4.8 in BF16 mode. Launched with
 * programmatic dependent launch (it ends a decode step). */
template <typename T> static __global__ void softcap_kernel(T *x, size_t n, float cap)
{
    g4q_pdl_trigger();
    g4q_pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = g4q_rnd<T>(g4q_ld(x[i]) / cap);
        x[i] = g4q_cvt<T>(g4q_rnd<T>(tanhf(v)) * cap);
    }
}

/* y[t, :] = T(E[ids[t], :] · scale); one block row per token. */
template <typename T>
static __global__ void embed_kernel(T *y, const T *table, const int32_t *ids, int64_t d,
                                    float scale)
{
    const T *row = table + (int64_t)ids[blockIdx.y] * d;
    T *yr = y + (int64_t)blockIdx.y * d;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < d;
         i += (int64_t)gridDim.x * blockDim.x)
        yr[i] = g4q_cvt<T>(g4q_ld(row[i]) * scale);
}

/* Non-negative floats (and NaN with the sign cleared) order like their bit patterns, and a NaN's
 * bits exceed +inf's, so an unsigned max over |x| bits is the amax with NaN propagating. 16-byte
 * loads where x is aligned, a block-wide reduction, and one atomic per block. */
template <typename T> static __global__ void amax_kernel(const T *x, size_t n, unsigned *out)
{
    constexpr int V = 16 / sizeof(T);
    unsigned m = 0;
    const size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x,
                 stride = (size_t)gridDim.x * blockDim.x;
    const size_t nv = ((uintptr_t)x % 16 == 0) ? n / V : 0;
    const uint4 *xv = reinterpret_cast<const uint4 *>(x);
    for (size_t i = tid; i < nv; i += stride) {
        const uint4 u = xv[i];
        const T *e = reinterpret_cast<const T *>(&u);
#pragma unroll
        for (int k = 0; k < V; k++)
            m = max(m, __float_as_uint(fabsf(g4q_ld(e[k]))));
    }
    for (size_t i = nv * V + tid; i < n; i += stride)
        m = max(m, __float_as_uint(fabsf(g4q_ld(x[i]))));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
    __shared__ unsigned warp_max[EW_THREADS / 32];
    if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < EW_THREADS / 32 ? warp_max[threadIdx.x] : 0u;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            m = max(m, __shfl_xor_sync(0xffffffffu, m, o));
        if (threadIdx.x == 0) atomicMax(out, m);
    }
}

/* Enough blocks of EW_THREADS to cover n with one 16-byte load per thread, at most 1024. */
static unsigned amax_grid(size_t n, size_t elem)
{
    const size_t per_block = (size_t)EW_THREADS * (16 / elem);
    size_t b = (n + per_block - 1) / per_block;
    return (unsigned)(b < 1024 ? (b ? b : 1) : 1024);
}

/* Queues the amax of x's first count elements into the unsigned bits at out (no memset). */
static g4q_status launch_amax(g4q_backend *be, const g4q_buf *x, size_t count, unsigned *out)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (!count) return G4Q_OK;
    if (s->f32)
        amax_kernel<<<amax_grid(count, 4), EW_THREADS, 0, s->stream>>>((const float *)x->data,
                                                                       count, out);
    else
        amax_kernel<<<amax_grid(count, 2), EW_THREADS, 0, s->stream>>>(
            (const __nv_bfloat16 *)x->data, count, out);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
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
    if (!g4q_cuda_act_ok(be, y, count) || !g4q_cuda_act_ok(be, gate, count) ||
        !g4q_cuda_act_ok(be, up, count))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda geglu: %zu out of range", count);
    if (!count) return G4Q_OK;
    cudaStream_t st = g4q_cuda_st(be)->stream;
    const bool vec = !g4q_cuda_st(be)->f32 && count % 8 == 0 &&
                     ((uintptr_t)y->data | (uintptr_t)gate->data | (uintptr_t)up->data) % 16 == 0;
    if (vec)
        geglu_vec_kernel<<<grid_for(count / 8), EW_THREADS, 0, st>>>(
            (uint4 *)y->data, (const uint4 *)gate->data, (const uint4 *)up->data, count / 8);
    else if (g4q_cuda_st(be)->f32)
        geglu_kernel<<<grid_for(count), EW_THREADS, 0, st>>>(
            (float *)y->data, (const float *)gate->data, (const float *)up->data, count);
    else
        geglu_kernel<<<grid_for(count), EW_THREADS, 0, st>>>(
            (__nv_bfloat16 *)y->data, (const __nv_bfloat16 *)gate->data,
            (const __nv_bfloat16 *)up->data, count);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_add_scaled(g4q_backend *be, g4q_buf *h, const g4q_buf *a, size_t count,
                               float scale)
{
    g4q_ctx *ctx = be->ctx;
    if (!g4q_cuda_act_ok(be, h, count) || !g4q_cuda_act_ok(be, a, count))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda add_scaled: %zu out of range", count);
    if (!count) return G4Q_OK;
    cudaStream_t st = g4q_cuda_st(be)->stream;
    if (g4q_cuda_st(be)->f32)
        add_scaled_kernel<<<grid_for(count), EW_THREADS, 0, st>>>(
            (float *)h->data, (const float *)a->data, count, scale);
    else
        add_scaled_kernel<<<grid_for(count), EW_THREADS, 0, st>>>(
            (__nv_bfloat16 *)h->data, (const __nv_bfloat16 *)a->data, count, scale);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_softcap(g4q_backend *be, g4q_buf *x, size_t count, float cap)
{
    g4q_ctx *ctx = be->ctx;
    if (!g4q_cuda_act_ok(be, x, count))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda softcap: %zu out of range", count);
    if (!count) return G4Q_OK;
    const dim3 grid(grid_for(count)), block(EW_THREADS);
    G4Q_CUDA_CHECK(g4q_cuda_st(be)->f32
                       ? g4q_cuda_launch(be, softcap_kernel<float>, grid, block, 0,
                                         (float *)x->data, count, cap)
                       : g4q_cuda_launch(be, softcap_kernel<__nv_bfloat16>, grid, block, 0,
                                         (__nv_bfloat16 *)x->data, count, cap));
    return G4Q_OK;
}

g4q_status g4q_cuda_embed(g4q_backend *be, g4q_buf *y, const g4q_bweight *table, const int32_t *ids,
                          int T, float scale)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    const int64_t d = table->cols;
    if (T < 0 || !g4q_cuda_act_ok(be, y, (size_t)T * (size_t)d) ||
        !(s->f32 ? (const void *)table->f32 : (const void *)table->data))
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
    if (s->f32)
        embed_kernel<<<grid, EW_THREADS, 0, s->stream>>>((float *)y->data, table->f32, s->ids_dev,
                                                         d, scale);
    else
        embed_kernel<<<grid, EW_THREADS, 0, s->stream>>>(
            (__nv_bfloat16 *)y->data, (const __nv_bfloat16 *)table->data, s->ids_dev, d, scale);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_amax(g4q_backend *be, const g4q_buf *x, size_t count, float *amax)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (!g4q_cuda_act_ok(be, x, count))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda amax: %zu out of range", count);
    G4Q_CUDA_CHECK(cudaMemsetAsync(s->amax_dev, 0, sizeof(float), s->stream));
    G4Q_TRY(launch_amax(be, x, count, (unsigned *)s->amax_dev));
    G4Q_CUDA_CHECK(
        cudaMemcpyAsync(amax, s->amax_dev, sizeof(float), cudaMemcpyDeviceToHost, s->stream));
    G4Q_CUDA_CHECK(cudaStreamSynchronize(s->stream));
    return G4Q_OK;
}

g4q_status g4q_cuda_amax_into(g4q_backend *be, const g4q_buf *x, size_t count, g4q_buf *acc,
                              size_t index)
{
    if (!g4q_cuda_act_ok(be, x, count) || acc->dtype != G4Q_DT_F32 || index >= acc->count)
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cuda amax_into: %zu / index %zu out of range",
                        count, index);
    return launch_amax(be, x, count, (unsigned *)acc->data + index);
}

/* One thread per column over a slab of COL_AMAX_ROWS rows; the float bits of |x| order as the
 * values do (a NaN's above every finite value and inf), so atomicMax on them is the amax with the
 * NaN rule of amax_into. */
enum { COL_AMAX_ROWS = 64 };
template <typename T>
static __global__ void col_amax_kernel(const T *x, int rows, int cols, unsigned *acc)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    const int r0 = blockIdx.y * COL_AMAX_ROWS, r1 = min(rows, r0 + COL_AMAX_ROWS);
    unsigned m = 0;
    for (int r = r0; r < r1; r++)
        m = max(m, __float_as_uint(fabsf(g4q_ld(x[(size_t)r * cols + c]))));
    atomicMax(acc + c, m);
}

g4q_status g4q_cuda_col_amax_into(g4q_backend *be, const g4q_buf *x, int rows, int cols,
                                  g4q_buf *acc)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (rows < 0 || cols < 0 || !g4q_cuda_act_ok(be, x, (size_t)rows * (size_t)cols) ||
        acc->dtype != G4Q_DT_F32 || (size_t)cols > acc->count)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda col_amax_into: [%d, %d] out of range", rows,
                        cols);
    if (!rows || !cols) return G4Q_OK;
    const dim3 grid((unsigned)((cols + EW_THREADS - 1) / EW_THREADS),
                    (unsigned)((rows + COL_AMAX_ROWS - 1) / COL_AMAX_ROWS));
    if (s->f32)
        col_amax_kernel<<<grid, EW_THREADS, 0, s->stream>>>((const float *)x->data, rows, cols,
                                                            (unsigned *)acc->data);
    else
        col_amax_kernel<<<grid, EW_THREADS, 0, s->stream>>>((const __nv_bfloat16 *)x->data, rows,
                                                            cols, (unsigned *)acc->data);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}
