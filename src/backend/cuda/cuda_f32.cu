// CUDA backend, F32 mode (cuda_backend.h, G4Q_CUDA_F32): weight binding and the GEMM.
//
// A BF16 weight is widened to an fp32 copy on the device at bind time (bf16 -> fp32 is exact), so
// the device holds 4 bytes per parameter, twice the BF16 mode: meant for test and oracle models,
// where the point is to compare against transformers run in fp32. The bytes travel host -> device
// as bf16 through a bounded staging buffer and are widened there. Packed formats are refused.
//
// matmul: y[n, rows] = x[n, cols] · Wᵀ with cublasGemmEx, fp32 in / out, CUBLAS_COMPUTE_32F under
// CUBLAS_DEFAULT_MATH: IEEE fp32 products and sums, never TF32 (that needs CUBLAS_COMPUTE_32F_
// FAST_TF32 or CUBLAS_TF32_TENSOR_OP_MATH, neither of which is used), for every n.
#include <cstdlib>

#include "backend/cuda/cuda_internal.h"

#define WIDEN_CHUNK ((size_t)16 << 20) /* bf16 elements staged per round (32 MiB) */

static __global__ void widen_kernel(float *dst, const __nv_bfloat16 *src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __bfloat162float(src[i]);
}

/* Copies the n bf16 values at host src (maybe unaligned) to fp32 dst on the device. */
static g4q_status widen_upload(g4q_backend *be, float *dst, const void *src, size_t n,
                               const char *name)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    const size_t chunk = n < WIDEN_CHUNK ? n : WIDEN_CHUNK;
    void *stage = NULL;
    G4Q_TRY(g4q_cuda_alloc(be, chunk * sizeof(uint16_t), name, &stage));
    cudaError_t e = cudaSuccess;
    for (size_t done = 0; done < n && e == cudaSuccess; done += chunk) {
        const size_t m = n - done < chunk ? n - done : chunk;
        e = cudaMemcpyAsync(stage, (const char *)src + done * sizeof(uint16_t),
                            m * sizeof(uint16_t), cudaMemcpyHostToDevice, s->stream);
        if (e != cudaSuccess) break;
        const unsigned blocks = g4q_cuda_blocks(m, 256), grid = blocks < 4096 ? blocks : 4096;
        widen_kernel<<<grid, 256, 0, s->stream>>>(dst + done, (const __nv_bfloat16 *)stage, m);
        e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaStreamSynchronize(s->stream); /* before reusing stage */
    }
    g4q_cuda_release(be, stage, chunk * sizeof(uint16_t));
    if (e != cudaSuccess)
        return g4q_fail(ctx, G4Q_ERR_CUDA, "cuda backend: weight '%s': upload: %s", name,
                        cudaGetErrorString(e));
    return G4Q_OK;
}

g4q_status g4q_cuda_weight_bind_f32(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight **out)
{
    g4q_ctx *ctx = be->ctx;
    *out = NULL;
    const char *name = d->name ? d->name : "(unnamed)";
    if (d->format != G4Q_WF_BF16 || d->act != G4Q_ACTQ_NONE)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "cuda backend (fp32): weight '%s': format %s%s is not supported in fp32 "
                        "mode (only BF16 weights, widened to fp32)",
                        name, g4q_wformat_name(d->format),
                        d->act != G4Q_ACTQ_NONE ? " with activation quantization" : "");
    g4q_bweight *w;
    G4Q_TRY(g4q_cuda_weight_new(be, d, &w));
    const size_t n = (size_t)d->rows * (size_t)d->cols;
    w->bytes = n * sizeof(float);
    g4q_status st = g4q_cuda_alloc(be, w->bytes, name, (void **)&w->f32);
    if (st == G4Q_OK) st = widen_upload(be, w->f32, d->data, n, name);
    if (st != G4Q_OK) {
        g4q_cuda_release(be, w->f32, w->bytes);
        free(w);
        return st;
    }
    *out = w;
    return G4Q_OK;
}

void g4q_cuda_weight_free_f32(g4q_backend *be, g4q_bweight *w)
{
    if (!w) return;
    cudaStreamSynchronize(g4q_cuda_st(be)->stream);
    g4q_cuda_release(be, w->f32, w->bytes);
    free(w);
}

g4q_status g4q_cuda_matmul_f32(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                               int n)
{
    g4q_ctx *ctx = be->ctx;
    const int64_t out = w->rows, in = w->cols;
    if (n < 0 || !w->f32 || !g4q_cuda_act_ok(be, x, (size_t)n * (size_t)in) ||
        !g4q_cuda_act_ok(be, y, (size_t)n * (size_t)out))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL,
                        "cuda matmul (fp32): weight '%s' [%lld, %lld]: %d rows do not fit the "
                        "buffers",
                        w->name, (long long)out, (long long)in, n);
    if (n == 0) return G4Q_OK;
    if (out > INT32_MAX || in > INT32_MAX)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "cuda matmul: weight '%s' too large for cuBLAS",
                        w->name);
    /* Column-major view: Yᵀ[out, n] = (W as [in, out])ᵀ · Xᵀ[in, n]. */
    const float alpha = 1.0f, beta = 0.0f;
    G4Q_CUBLAS_CHECK(cublasGemmEx(g4q_cuda_st(be)->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, n,
                                  (int)in, &alpha, w->f32, CUDA_R_32F, (int)in, x->data, CUDA_R_32F,
                                  (int)in, &beta, y->data, CUDA_R_32F, (int)out, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
    return G4Q_OK;
}
