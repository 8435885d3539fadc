// CUDA GEMM y[n, rows] = x[n, cols] · Wᵀ, W bf16 [rows, cols], x and y bf16, fp32 accumulation
// and one bf16 rounding of each output.
//
// Decode (n <= GEMV_MAX_N tokens) is bound by reading W once: an own GEMV kernel where each warp
// owns one output row and streams it with 16-byte loads (GEMV_UNROLL loads in flight per lane),
// the n token rows of x coming from L1/L2. Needs cols % 8 == 0 (16-byte aligned rows); other
// shapes and larger n go to cublasGemmEx (BF16 in/out, CUBLAS_COMPUTE_32F).
#include "backend/cuda/cuda_internal.h"

#define GEMV_MAX_N 4
#define GEMV_WARPS 8
#define GEMV_UNROLL 4

static __device__ __forceinline__ void dot8(const uint4 &w, const uint4 &x, float &acc)
{
    const __nv_bfloat162 *wp = reinterpret_cast<const __nv_bfloat162 *>(&w);
    const __nv_bfloat162 *xp = reinterpret_cast<const __nv_bfloat162 *>(&x);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 a = __bfloat1622float2(wp[i]), b = __bfloat1622float2(xp[i]);
        acc = fmaf(a.x, b.x, acc);
        acc = fmaf(a.y, b.y, acc);
    }
}

template <int N>
static __global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(const uint4 *__restrict__ w, const uint4 *__restrict__ x,
                __nv_bfloat16 *__restrict__ y, int64_t rows, int chunks)
{
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (row >= rows) return;
    const uint4 *wr = w + row * chunks;
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; t++)
        acc[t] = 0.0f;
    for (int c0 = lane; c0 < chunks; c0 += 32 * GEMV_UNROLL) {
        uint4 wv[GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int c = c0 + u * 32;
            wv[u] = c < chunks ? __ldcs(wr + c) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            int c = c0 + u * 32;
            if (c < chunks) {
#pragma unroll
                for (int t = 0; t < N; t++)
                    dot8(wv[u], __ldg(x + (int64_t)t * chunks + c), acc[t]);
            }
        }
    }
#pragma unroll
    for (int t = 0; t < N; t++) {
        float a = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            a += __shfl_xor_sync(0xffffffffu, a, o);
        if (lane == 0) y[(int64_t)t * rows + row] = __float2bfloat16_rn(a);
    }
}

template <int N>
static g4q_status launch_gemv(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w)
{
    g4q_ctx *ctx = be->ctx;
    unsigned blocks = g4q_cuda_blocks((size_t)w->rows, GEMV_WARPS);
    gemv_kernel<N><<<blocks, GEMV_WARPS * 32, 0, g4q_cuda_st(be)->stream>>>(
        (const uint4 *)w->data, (const uint4 *)x->data, (__nv_bfloat16 *)y->data, w->rows,
        (int)(w->cols / 8));
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_matmul(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                           int n)
{
    g4q_ctx *ctx = be->ctx;
    const int64_t out = w->rows, in = w->cols;
    if (n < 0 || !g4q_cuda_bf16_ok(x, (size_t)n * (size_t)in) ||
        !g4q_cuda_bf16_ok(y, (size_t)n * (size_t)out))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL,
                        "cuda matmul: weight '%s' [%lld, %lld]: %d rows do not fit the buffers",
                        w->name, (long long)out, (long long)in, n);
    if (n == 0) return G4Q_OK;
    if (n <= GEMV_MAX_N && in % 8 == 0 && in / 8 <= INT32_MAX) {
        switch (n) {
        case 1: return launch_gemv<1>(be, y, x, w);
        case 2: return launch_gemv<2>(be, y, x, w);
        case 3: return launch_gemv<3>(be, y, x, w);
        default: return launch_gemv<4>(be, y, x, w);
        }
    }
    if (out > INT32_MAX || in > INT32_MAX)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "cuda matmul: weight '%s' too large for cuBLAS",
                        w->name);
    /* Column-major view: Yᵀ[out, n] = (W as [in, out])ᵀ · Xᵀ[in, n]. */
    const float alpha = 1.0f, beta = 0.0f;
    G4Q_CUBLAS_CHECK(cublasGemmEx(g4q_cuda_st(be)->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, n,
                                  (int)in, &alpha, w->data, CUDA_R_16BF, (int)in, x->data,
                                  CUDA_R_16BF, (int)in, &beta, y->data, CUDA_R_16BF, (int)out,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return G4Q_OK;
}
