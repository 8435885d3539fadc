// CUDA weight quantizers (see quant_cuda.h). Each kernel runs the per-block functions of
// quant/blockq.h, whose arithmetic goes through __fmul_rn/__fdiv_rn/__dadd_rn... on the device, so
// the bytes equal the CPU reference's. No fast-math anywhere in this file.
#include <cstdint>

#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/quant_cuda.h"
#include "quant/blockq.h"

namespace {

// Exact amax of bf16 values as the integer max of their magnitude bits (as on the CPU).
__global__ void amax_kernel(const uint16_t *w, size_t n, unsigned *out)
{
    unsigned m = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        unsigned a = w[i] & 0x7fffu;
        m = a > m ? a : m;
    }
    m = __reduce_max_sync(0xffffffffu, m);
    if ((threadIdx.x & 31) == 0)
        atomicMax(out, m);
}

// NVFP4 block b of a BF16 weight (16 values, two 16-byte loads) as fp32.
__device__ __forceinline__ void load_block16(const uint16_t *w, int64_t b, float *x)
{
    const uint4 *src = reinterpret_cast<const uint4 *>(w + b * G4Q_NVFP4_BLOCK);
    const uint4 v0 = src[0], v1 = src[1];
    const uint32_t words[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
    for (int i = 0; i < 8; i++) {
        x[2 * i] = g4q_bf16_to_f32((uint16_t)(words[i] & 0xffffu));
        x[2 * i + 1] = g4q_bf16_to_f32((uint16_t)(words[i] >> 16));
    }
}

// The 8 packed code bytes of block b, one 8-byte store.
__device__ __forceinline__ void store_packed8(uint8_t *packed, int64_t b, const uint8_t *out)
{
    uint2 o;
    o.x = out[0] | (out[1] << 8) | (out[2] << 16) | ((uint32_t)out[3] << 24);
    o.y = out[4] | (out[5] << 8) | (out[6] << 16) | ((uint32_t)out[7] << 24);
    reinterpret_cast<uint2 *>(packed)[b] = o;
}

// One thread per 16-element NVFP4 block; the 126 sweep scales are built in shared memory.
__global__ void nvfp4_kernel(const uint16_t *w, int64_t nblocks, float G, float wsf2, int method,
                             uint8_t *packed, uint8_t *scales)
{
    __shared__ float cand[G4Q_NVFP4_SWEEP_N];
    if (method == G4Q_SCALE_MSE) {
        for (int c = threadIdx.x; c < G4Q_NVFP4_SWEEP_N; c += blockDim.x)
            cand[c] = g4q_nvfp4_sweep_scale((uint8_t)(c + 1), G);
        __syncthreads();
    }
    int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (b >= nblocks)
        return;
    float x[G4Q_NVFP4_BLOCK];
    load_block16(w, b, x);
    uint8_t out[8], sc;
    if (method == G4Q_SCALE_MSE)
        sc = g4q_nvfp4_block_mse(x, cand, wsf2, out);
    else if (method == G4Q_SCALE_FOUR_OVER_SIX)
        sc = g4q_nvfp4_block_46(x, wsf2, out);
    else
        sc = g4q_nvfp4_block_max(x, wsf2, out);
    scales[b] = sc;
    store_packed8(packed, b, out);
}

// Weighted NVFP4 search (imatrix / hessian), one thread per 16-element block. Threads run down
// the rows first (t = bc * rows + r), so the threads of a warp share one block column and read the
// same weights (hw: the compact diagonal, or the 16 x 16 diagonal blocks).
__global__ void nvfp4_h_kernel(const uint16_t *w, int64_t rows, int64_t nbc, float G, float wsf2,
                               int kind, const float *hw, uint8_t *packed, uint8_t *scales)
{
    __shared__ float cand[G4Q_NVFP4_SWEEP_N];
    for (int c = threadIdx.x; c < G4Q_NVFP4_SWEEP_N; c += blockDim.x)
        cand[c] = g4q_nvfp4_sweep_scale((uint8_t)(c + 1), G);
    __syncthreads();
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t >= rows * nbc)
        return;
    int64_t bc = t / rows, r = t % rows, b = r * nbc + bc;
    float x[G4Q_NVFP4_BLOCK];
    load_block16(w, b, x);
    const int hess = kind == G4Q_SCALE_HESSIAN;
    const float *hb = hess ? hw + bc * (G4Q_NVFP4_BLOCK * G4Q_NVFP4_BLOCK)
                           : hw + bc * G4Q_NVFP4_BLOCK;
    uint8_t out[8];
    scales[b] = g4q_nvfp4_block_mse_h(x, cand, wsf2, kind, hb, hess ? G4Q_NVFP4_BLOCK : 0, out);
    store_packed8(packed, b, out);
}

// One CUDA block (128 threads, one per row) per 128 x 128 tile. kind: G4Q_SCALE_MAX, MSE, IMATRIX
// or HESSIAN (hw: the compact diagonal, or the 128 x 128 diagonal blocks; NULL otherwise). The
// loss of a candidate is the rows' fp64 g4q_fp8_row_loss_k added in row order by thread 0,
// exactly as the CPU adds them; a tile without a live input searches with MSE, as on the CPU.
// WEIGHTED: compiled separately so that the max/mse instance keeps its small register footprint.
template <bool WEIGHTED>
__global__ void fp8_block_kernel(const uint16_t *w, int64_t rows, int64_t cols, int kind,
                                 const float *hw, uint8_t *q, float *scales)
{
    __shared__ float rmax[G4Q_FP8_BLOCK];
    __shared__ double rloss[G4Q_FP8_BLOCK];
    __shared__ float s_sh;
    int64_t nbc = (cols + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK;
    int64_t r0 = (blockIdx.x / nbc) * G4Q_FP8_BLOCK, c0 = (blockIdx.x % nbc) * G4Q_FP8_BLOCK;
    int nr = (int)min((int64_t)G4Q_FP8_BLOCK, rows - r0);
    int nc = (int)min((int64_t)G4Q_FP8_BLOCK, cols - c0);
    int t = threadIdx.x;
    const uint16_t *row = w + (r0 + t) * cols + c0;
    float m = 0.0f;
    if (t < nr)
        for (int c = 0; c < nc; c++)
            m = fmaxf(m, fabsf(g4q_bf16_to_f32(row[c])));
    rmax[t] = m;
    __syncthreads();
    if (t == 0) {
        float bamax = 0.0f;
        for (int r = 0; r < nr; r++)
            bamax = fmaxf(bamax, rmax[r]);
        s_sh = g4q_fp8_scale_of(bamax);
        rmax[0] = bamax;
    }
    __syncthreads();
    float bamax = rmax[0];
    const int hess = kind == G4Q_SCALE_HESSIAN;
    const float *hb = nullptr;
    int64_t ldh = hess ? G4Q_FP8_BLOCK : 0;
    if (WEIGHTED) {
        hb = hess ? hw + (blockIdx.x % nbc) * (int64_t)(G4Q_FP8_BLOCK * G4Q_FP8_BLOCK) : hw + c0;
        if (!g4q_hess_live(hb, ldh, nc))
            kind = G4Q_SCALE_MSE;
    }
    if (kind != G4Q_SCALE_MAX && bamax > 0.0f) {
        double best = INFINITY;
        float best_s = 1.0f;
        for (int k = 0; k < G4Q_MSE_MULT_N; k++) {
            float s = g4q_fp8_scale_of(G4Q_FMUL(bamax, g4q_mse_multiplier(k)));
            double l = 0.0;
            if (t < nr)
                l = WEIGHTED ? g4q_fp8_row_loss_k(kind, row, nc, s, hb, ldh, INFINITY)
                             : g4q_fp8_row_loss(row, nc, s, INFINITY);
            rloss[t] = l;
            __syncthreads();
            if (t == 0) {
                double loss = 0.0;
                for (int r = 0; r < nr; r++)
                    loss = G4Q_DADD(loss, rloss[r]);
                if (loss < best) {
                    best = loss;
                    best_s = s;
                }
            }
            __syncthreads();
        }
        if (t == 0)
            s_sh = best_s;
        __syncthreads();
    }
    float s = s_sh;
    if (t == 0)
        scales[blockIdx.x] = s;
    if (t < nr) {
        uint8_t *qrow = q + (r0 + t) * cols + c0;
        for (int c = 0; c < nc; c++)
            qrow[c] = g4q_e4m3_encode_sat(G4Q_FDIV(g4q_bf16_to_f32(row[c]), s));
    }
}

// One thread per (row, group).
__global__ void int4_kernel(const uint16_t *w, int64_t rows, int64_t cols, int group, int mse,
                            int store, int8_t *q, float *scales, unsigned *bad)
{
    int64_t ng = (cols + group - 1) / group;
    int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (b >= rows * ng)
        return;
    int64_t r = b / ng, c0 = (b % ng) * group;
    int n = (int)min((int64_t)group, cols - c0);
    const uint16_t *src = w + r * cols + c0;
    float s = g4q_int4_group_scale(src, n, mse, store);
    if (isinf(s))
        atomicOr(bad, 1u);
    scales[b] = s;
    for (int j = 0; j < n; j++)
        q[r * cols + c0 + j] = (int8_t)g4q_int4_encode(G4Q_FDIV(g4q_bf16_to_f32(src[j]), s));
}

// Weighted INT4 search, one thread per (row, group); threads run down the rows first
// (t = g * rows + r) so that a warp shares one group's weights (hw: the compact diagonal, or the
// group x group diagonal blocks).
__global__ void int4_h_kernel(const uint16_t *w, int64_t rows, int64_t cols, int group, int kind,
                              int store, const float *hw, int8_t *q, float *scales, unsigned *bad)
{
    int64_t ng = (cols + group - 1) / group;
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t >= rows * ng)
        return;
    int64_t g = t / rows, r = t % rows, c0 = g * group;
    int n = (int)min((int64_t)group, cols - c0);
    const uint16_t *src = w + r * cols + c0;
    float s = kind == G4Q_SCALE_HESSIAN
                  ? g4q_int4_group_scale_h(src, n, kind, store, hw + g * group * (int64_t)group,
                                           group, 0)
                  : g4q_int4_group_scale_h(src, n, kind, store, hw, 0, c0);
    if (isinf(s))
        atomicOr(bad, 1u);
    scales[r * ng + g] = s;
    for (int j = 0; j < n; j++)
        q[r * cols + c0 + j] = (int8_t)g4q_int4_encode(G4Q_FDIV(g4q_bf16_to_f32(src[j]), s));
}

// Gathers the part of H that a weighted method reads into the compact layout of g4q_hess_extract
// (the diagonal, or the bs x bs diagonal blocks zero-padded past cols). H holds every entry
// (hb 0) or its diagonal hb x hb blocks (quant.h g4q_hess), hb a multiple of bs for hessian.
__global__ void hess_extract_kernel(const float *H, int64_t cols, int64_t hb, int bs, int hess,
                                    float *out, int64_t n)
{
    for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < n;
         o += (int64_t)gridDim.x * blockDim.x) {
        int64_t ci = o, cj = o;
        if (hess) {
            int64_t b2 = (int64_t)bs * bs, k = o / b2;
            ci = k * bs + (o % b2) / bs;
            cj = k * bs + o % bs;
        }
        if (ci >= cols || cj >= cols) {
            out[o] = 0.0f;
            continue;
        }
        out[o] = H[g4q_hess_offset(cols, hb, ci, cj)];
    }
}

int store_of(g4q_dtype dt)
{
    return dt == G4Q_DT_F16 ? G4Q_SCALE_STORE_F16
         : dt == G4Q_DT_BF16 ? G4Q_SCALE_STORE_BF16
         : dt == G4Q_DT_F32 ? G4Q_SCALE_STORE_F32 : -1;
}

} // namespace

// Device weights of a weighted method: the diagonal or diagonal blocks of d_H are gathered on the
// device, checked and normalised on the host by g4q_hess_normalize (the CPU quantizers' own
// code, so both apply the same numbers) and uploaded. *d_hw = nullptr for the other methods;
// otherwise the caller frees it with cudaFreeAsync on st.
extern "C" g4q_status g4q_cuda_hess_weights(g4q_ctx *ctx, const char *nm, g4q_scale_method m,
                                            const g4q_hess *d_H, int64_t cols, int bs, void *stream,
                                            float **d_hw)
{
    cudaStream_t st = (cudaStream_t)stream;
    *d_hw = nullptr;
    if (!g4q_scale_method_weighted(m))
        return G4Q_OK;
    G4Q_TRY(g4q_hess_check(ctx, nm, m, d_H, cols, bs));
    size_t n = g4q_hess_weights_count(m, cols, bs);
    float *h = static_cast<float *>(malloc(n * sizeof(float)));
    if (!h)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "tensor '%s': out of memory for the weights of H", nm);
    float *d = nullptr;
    cudaError_t err = cudaMallocAsync(&d, n * sizeof(float), st);
    if (err == cudaSuccess) {
        size_t blocks = (n + 255) / 256;
        hess_extract_kernel<<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, st>>>(
            d_H->h, cols, g4q_hess_block(cols, d_H->block), bs, m == G4Q_SCALE_HESSIAN, d,
            (int64_t)n);
        err = cudaGetLastError();
    }
    if (err == cudaSuccess)
        err = cudaMemcpyAsync(h, d, n * sizeof(float), cudaMemcpyDeviceToHost, st);
    if (err == cudaSuccess)
        err = cudaStreamSynchronize(st);
    g4q_status s = G4Q_OK;
    if (err != cudaSuccess)
        s = g4q_fail(ctx, G4Q_ERR_CUDA, "tensor '%s': gathering the weights of H failed: %s", nm,
                     cudaGetErrorString(err));
    else
        s = g4q_hess_normalize(ctx, nm, m, cols, bs, h);
    if (s == G4Q_OK) {
        err = cudaMemcpyAsync(d, h, n * sizeof(float), cudaMemcpyHostToDevice, st);
        if (err == cudaSuccess)
            err = cudaStreamSynchronize(st);
        if (err != cudaSuccess)
            s = g4q_fail(ctx, G4Q_ERR_CUDA, "tensor '%s': uploading the weights of H failed: %s",
                         nm, cudaGetErrorString(err));
    }
    free(h);
    if (s != G4Q_OK) {
        if (d)
            cudaFreeAsync(d, st);
        return s;
    }
    *d_hw = d;
    return G4Q_OK;
}

extern "C" g4q_status g4q_cuda_amax_bf16(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                         size_t n, float *amax, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    unsigned *d_m = nullptr, m = 0;
    G4Q_CUDA_CHECK(cudaMallocAsync(&d_m, sizeof(unsigned), st));
    cudaError_t err = cudaMemsetAsync(d_m, 0, sizeof(unsigned), st);
    if (err == cudaSuccess && n > 0) {
        size_t blocks = (n + 255) / 256;
        amax_kernel<<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, st>>>(d_w, n, d_m);
        err = cudaGetLastError();
    }
    if (err == cudaSuccess)
        err = cudaMemcpyAsync(&m, d_m, sizeof(unsigned), cudaMemcpyDeviceToHost, st);
    cudaFreeAsync(d_m, st);
    if (err == cudaSuccess)
        err = cudaStreamSynchronize(st);
    G4Q_CUDA_CHECK(err);
    if (m >= 0x7f80u)
        return g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': contains NaN or infinite values",
                        name ? name : "?");
    *amax = g4q_bits_f32(m << 16);
    return G4Q_OK;
}

extern "C" g4q_status g4q_cuda_nvfp4_quantize(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                              int64_t rows, int64_t cols, float global_amax,
                                              g4q_scale_method method, uint8_t *d_packed,
                                              uint8_t *d_scales, float *wsf2, void *stream)
{
    return g4q_cuda_nvfp4_quantize_h(ctx, name, d_w, rows, cols, global_amax, method, nullptr,
                                     d_packed, d_scales, wsf2, stream);
}

extern "C" g4q_status g4q_cuda_nvfp4_check(g4q_ctx *ctx, const char *nm, const uint16_t *d_w,
                                           int64_t rows, int64_t cols, float global_amax,
                                           const uint8_t *d_packed, void *stream)
{
    if (!(global_amax >= 0.0f) || isinf(global_amax))
        return g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': global amax %g is not finite", nm,
                        (double)global_amax);
    if ((uintptr_t)d_w % 16 != 0 || (uintptr_t)d_packed % 8 != 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': NVFP4 kernel needs 16-byte aligned "
                        "weights and 8-byte aligned packed output", nm);
    float amax;
    G4Q_TRY(g4q_cuda_amax_bf16(ctx, nm, d_w, (size_t)rows * (size_t)cols, &amax, stream));
    if (amax > global_amax)
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "tensor '%s': amax %.9g exceeds the fused group's global amax %.9g", nm,
                        (double)amax, (double)global_amax);
    return G4Q_OK;
}

extern "C" g4q_status g4q_cuda_nvfp4_quantize_h(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                                int64_t rows, int64_t cols, float global_amax,
                                                g4q_scale_method method, const g4q_hess *d_H,
                                                uint8_t *d_packed, uint8_t *d_scales, float *wsf2,
                                                void *stream)
{
    const char *nm = name ? name : "?";
    if (rows <= 0 || cols <= 0 || cols % G4Q_NVFP4_BLOCK != 0)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': shape [%lld, %lld]: NVFP4 needs in %% 16 "
                        "== 0", nm, (long long)rows, (long long)cols);
    if (method != G4Q_SCALE_MAX && method != G4Q_SCALE_MSE && method != G4Q_SCALE_FOUR_OVER_SIX &&
        !g4q_scale_method_weighted(method))
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': unknown NVFP4 scale method %d", nm,
                        (int)method);
    G4Q_TRY(g4q_cuda_nvfp4_check(ctx, nm, d_w, rows, cols, global_amax, d_packed, stream));
    cudaStream_t st = (cudaStream_t)stream;
    float *d_hw;
    G4Q_TRY(g4q_cuda_hess_weights(ctx, nm, method, d_H, cols, G4Q_NVFP4_BLOCK, st, &d_hw));
    float ws = method == G4Q_SCALE_FOUR_OVER_SIX ? g4q_nvfp4_wsf2_46(global_amax)
                                                 : g4q_nvfp4_wsf2(global_amax);
    int64_t nbc = cols / G4Q_NVFP4_BLOCK, nblocks = rows * nbc;
    unsigned grid = (unsigned)((nblocks + 127) / 128);
    if (d_hw)
        nvfp4_h_kernel<<<grid, 128, 0, st>>>(d_w, rows, nbc, global_amax, ws, (int)method, d_hw,
                                             d_packed, d_scales);
    else
        nvfp4_kernel<<<grid, 128, 0, st>>>(d_w, nblocks, global_amax, ws, (int)method, d_packed,
                                           d_scales);
    cudaError_t err = cudaGetLastError();
    if (d_hw)
        cudaFreeAsync(d_hw, st);
    G4Q_CUDA_CHECK(err);
    G4Q_CUDA_CHECK(cudaStreamSynchronize(st));
    *wsf2 = ws;
    return G4Q_OK;
}

extern "C" g4q_status g4q_cuda_fp8_quantize_blocks(g4q_ctx *ctx, const char *name,
                                                   const uint16_t *d_w, int64_t rows, int64_t cols,
                                                   g4q_scale_method method, uint8_t *d_q,
                                                   float *d_scales, void *stream)
{
    return g4q_cuda_fp8_quantize_blocks_h(ctx, name, d_w, rows, cols, method, nullptr, d_q,
                                          d_scales, stream);
}

extern "C" g4q_status g4q_cuda_fp8_quantize_blocks_h(g4q_ctx *ctx, const char *name,
                                                     const uint16_t *d_w, int64_t rows,
                                                     int64_t cols, g4q_scale_method method,
                                                     const g4q_hess *d_H, uint8_t *d_q,
                                                     float *d_scales, void *stream)
{
    const char *nm = name ? name : "?";
    if (rows <= 0 || cols <= 0)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': bad shape [%lld, %lld]", nm,
                        (long long)rows, (long long)cols);
    if (method != G4Q_SCALE_MAX && method != G4Q_SCALE_MSE && !g4q_scale_method_weighted(method))
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "tensor '%s': FP8 blocks support max, mse, imatrix and hessian, not %s", nm,
                        g4q_scale_method_name(method));
    float amax;
    G4Q_TRY(g4q_cuda_amax_bf16(ctx, nm, d_w, (size_t)rows * (size_t)cols, &amax, stream));
    cudaStream_t st = (cudaStream_t)stream;
    float *d_hw;
    G4Q_TRY(g4q_cuda_hess_weights(ctx, nm, method, d_H, cols, G4Q_FP8_BLOCK, st, &d_hw));
    size_t nb = g4q_fp8_block_count(rows, cols);
    if (d_hw)
        fp8_block_kernel<true><<<(unsigned)nb, G4Q_FP8_BLOCK, 0, st>>>(d_w, rows, cols,
                                                                       (int)method, d_hw, d_q,
                                                                       d_scales);
    else
        fp8_block_kernel<false><<<(unsigned)nb, G4Q_FP8_BLOCK, 0, st>>>(d_w, rows, cols,
                                                                        (int)method, nullptr,
                                                                        d_q, d_scales);
    cudaError_t err = cudaGetLastError();
    if (d_hw)
        cudaFreeAsync(d_hw, st);
    G4Q_CUDA_CHECK(err);
    G4Q_CUDA_CHECK(cudaStreamSynchronize(st));
    return G4Q_OK;
}

extern "C" g4q_status g4q_cuda_int4_quantize(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                             int64_t rows, int64_t cols, int group,
                                             g4q_scale_method method, g4q_dtype scale_dtype,
                                             int8_t *d_q, float *d_scales, void *stream)
{
    return g4q_cuda_int4_quantize_h(ctx, name, d_w, rows, cols, group, method, scale_dtype,
                                    nullptr, d_q, d_scales, stream);
}

extern "C" g4q_status g4q_cuda_int4_quantize_h(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                               int64_t rows, int64_t cols, int group,
                                               g4q_scale_method method, g4q_dtype scale_dtype,
                                               const g4q_hess *d_H, int8_t *d_q, float *d_scales,
                                               void *stream)
{
    const char *nm = name ? name : "?";
    int store = store_of(scale_dtype);
    if (rows <= 0 || cols <= 0 || group <= 0)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': bad shape [%lld, %lld] or group %d", nm,
                        (long long)rows, (long long)cols, group);
    if (store < 0 || (method != G4Q_SCALE_MAX && method != G4Q_SCALE_MSE &&
                      !g4q_scale_method_weighted(method)))
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': INT4 needs max/mse/imatrix/hessian "
                        "and F16/BF16/F32 scales", nm);
    float amax;
    G4Q_TRY(g4q_cuda_amax_bf16(ctx, nm, d_w, (size_t)rows * (size_t)cols, &amax, stream));
    cudaStream_t st = (cudaStream_t)stream;
    float *d_hw;
    G4Q_TRY(g4q_cuda_hess_weights(ctx, nm, method, d_H, cols, group, st, &d_hw));
    unsigned *d_bad = nullptr, bad = 0;
    cudaError_t err = cudaMallocAsync(&d_bad, sizeof(unsigned), st);
    if (err == cudaSuccess)
        err = cudaMemsetAsync(d_bad, 0, sizeof(unsigned), st);
    int64_t n = rows * g4q_int4_group_count(cols, group);
    if (err == cudaSuccess) {
        unsigned grid = (unsigned)((n + 127) / 128);
        if (d_hw)
            int4_h_kernel<<<grid, 128, 0, st>>>(d_w, rows, cols, group, (int)method, store, d_hw,
                                                d_q, d_scales, d_bad);
        else
            int4_kernel<<<grid, 128, 0, st>>>(d_w, rows, cols, group, method == G4Q_SCALE_MSE,
                                              store, d_q, d_scales, d_bad);
        err = cudaGetLastError();
    }
    if (err == cudaSuccess)
        err = cudaMemcpyAsync(&bad, d_bad, sizeof(unsigned), cudaMemcpyDeviceToHost, st);
    if (d_bad)
        cudaFreeAsync(d_bad, st);
    if (d_hw)
        cudaFreeAsync(d_hw, st);
    if (err == cudaSuccess)
        err = cudaStreamSynchronize(st);
    G4Q_CUDA_CHECK(err);
    if (bad)
        return g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': a group scale overflows %s (amax %g)",
                        nm, g4q_dtype_name(scale_dtype), (double)amax);
    return G4Q_OK;
}
