// CUDA RMSNorm (docs/gemma4.md §4.2): y = T((x · (mean(x²) + eps)^(-1/2)) · w), fp32 inside,
// one block per row; T is bf16 (one rounding of the output) or fp32 (F32 mode, w widened).
// Per-head norms are rows = T·heads of n = head_dim; w NULL is v_norm.
// In place is safe: every thread reads its elements for the sum before the barrier and then
// writes only the elements it reads again itself. Launched with programmatic dependent launch.
#include "backend/cuda/cuda_internal.h"

template <typename T>
static __global__ void rmsnorm_kernel(T *y, const T *x, const T *w, int n, float eps)
{
    __shared__ float part[32];
    g4q_pdl_trigger();
    g4q_pdl_wait();
    const size_t base = (size_t)blockIdx.x * (size_t)n;
    const T *xr = x + base;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = g4q_ld(xr[i]);
        ss = fmaf(v, v, ss);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const int warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    if ((threadIdx.x & 31) == 0) part[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        float v = (int)threadIdx.x < nwarps ? part[threadIdx.x] : 0.0f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
        if (threadIdx.x == 0) part[0] = v;
    }
    __syncthreads();
    const float inv = 1.0f / sqrtf(part[0] / (float)n + eps);
    T *yr = y + base;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = g4q_ld(xr[i]) * inv;
        if (w) v *= g4q_ld(w[i]);
        yr[i] = g4q_cvt<T>(v);
    }
}

template <typename T>
static cudaError_t launch_rmsnorm(g4q_backend *be, g4q_buf *y, const g4q_buf *x,
                                  const g4q_bweight *w, int rows, int n, float eps)
{
    unsigned threads = n <= 256 ? 64 : n <= 1024 ? 128 : 256;
    return g4q_cuda_launch(be, rmsnorm_kernel<T>, dim3((unsigned)rows), dim3(threads), 0,
                           (T *)y->data, (const T *)x->data,
                           w ? g4q_cuda_wdata<T>(w) : (const T *)nullptr, n, eps);
}

g4q_status g4q_cuda_rmsnorm(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                            int rows, int n, float eps)
{
    g4q_ctx *ctx = be->ctx;
    size_t total = (size_t)rows * (size_t)n;
    if (rows < 0 || n <= 0 || !g4q_cuda_act_ok(be, x, total) || !g4q_cuda_act_ok(be, y, total) ||
        (w && w->rows * w->cols != n))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda rmsnorm: %d x %d out of range", rows, n);
    if (rows == 0) return G4Q_OK;
    G4Q_CUDA_CHECK(g4q_cuda_st(be)->f32 ? launch_rmsnorm<float>(be, y, x, w, rows, n, eps)
                                        : launch_rmsnorm<__nv_bfloat16>(be, y, x, w, rows, n, eps));
    return G4Q_OK;
}
