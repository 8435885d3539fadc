// CUDA GEMM y[n, rows] = x[n, cols] · Wᵀ, W bf16 [rows, cols], x and y bf16, fp32 accumulation
// and one bf16 rounding of each output.
//
// matmul3 (q/k/v over one x) and matmul_geglu (gate and up read by the same warp, GeGLU applied
// before the store) use the same GEMV in one launch for small n (the packed formats' GEMV of
// cuda_qgemv.cu likewise), and fall back to separate ops.
//
// Decode (n <= GEMV_MAX_N tokens) is bound by reading W once: an own GEMV kernel where each warp
// owns one output row and streams it with 16-byte loads (GEMV_UNROLL loads in flight per lane),
// the n token rows of x coming from L1/L2. Needs cols % 8 == 0 (16-byte aligned rows); other
// shapes and larger n go to cublasGemmEx (BF16 in/out, CUBLAS_COMPUTE_32F). The GEMV is launched
// with programmatic dependent launch (cuda_internal.h): each warp loads its first GEMV_UNROLL
// weight chunks per lane before it waits for the kernel that writes x, and lets the next kernel
// start once its weight reads are done.
#include "backend/cuda/cuda_internal.h"
#include "quant/quant.h"

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

/* Up to three weights of the same cols over one x, rows laid end to end (matmul3), or with
 * GEGLU a gate and an up weight of the same shape whose outputs combine as geglu does:
 * y = bf16(bf16(gelu_tanh(bf16(x·g))) · bf16(x·u)). */
struct gemv_seg {
    const uint4 *w;
    __nv_bfloat16 *y;
    int64_t rows;
};
/* Segments as separate members: a run-time index into a kernel parameter array would copy the
 * parameters to local memory. Unused segments have rows 0. */
struct gemv_args {
    gemv_seg s0, s1, s2;
    const uint4 *x;
    const uint4 *wu; /* GEGLU: the up weight (seg[0] is the gate) */
    int chunks;
};

/* KPR warps share one output row (KPR = 1, 2 or 4): "virtual lane" v = k·32 + lane of the row's
 * k-th warp reads chunks v, v + 32·KPR, ...; the warps' sums meet in shared memory and the row's
 * first warp adds them in k order. More warps per row keep more loads in flight when a weight has
 * few rows (the 12B's down_proj: 3840 rows of 30 KB). */
template <int N, bool GEGLU, int KPR>
static __global__ void __launch_bounds__(GEMV_WARPS * 32) gemv_kernel(const gemv_args a)
{
    __shared__ float part[GEMV_WARPS][2 * N];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, k = warp % KPR;
    const int v = k * 32 + lane;
    int64_t row = (int64_t)blockIdx.x * (GEMV_WARPS / KPR) + warp / KPR;
    gemv_seg sg = a.s0;
    if (row >= a.s0.rows) {
        row -= a.s0.rows;
        sg = a.s1;
        if (row >= a.s1.rows) row -= a.s1.rows, sg = a.s2;
    }
    const bool live = row < sg.rows; /* the last block may have spare warps */
    const int chunks = live ? a.chunks : 0;
    const int64_t rows = sg.rows;
    const uint4 *wr = sg.w + (live ? row : 0) * a.chunks;
    const uint4 *ur = GEGLU ? a.wu + (live ? row : 0) * a.chunks : nullptr;
    const uint4 *x = a.x;
    constexpr int STEP = 32 * KPR;
    float acc[N], accu[N];
#pragma unroll
    for (int t = 0; t < N; t++)
        acc[t] = accu[t] = 0.0f;
    uint4 wv[GEMV_UNROLL], uv[GEMV_UNROLL];
    /* Loads the GEMV_UNROLL chunks of this lane from c0 on (zeros past the row). */
    auto load = [&](int c0) {
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const int c = c0 + u * STEP;
            wv[u] = c < chunks ? __ldcs(wr + c) : make_uint4(0, 0, 0, 0);
            if (GEGLU) uv[u] = c < chunks ? __ldcs(ur + c) : make_uint4(0, 0, 0, 0);
        }
    };
    load(v);
    g4q_pdl_wait(); /* x is written by the previous kernel */
    for (int c0 = v; c0 < chunks; c0 += STEP * GEMV_UNROLL) {
        if (c0 != v) load(c0);
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; u++) {
            const int c = c0 + u * STEP;
            if (c < chunks) {
#pragma unroll
                for (int t = 0; t < N; t++) {
                    const uint4 xv = __ldg(x + (int64_t)t * a.chunks + c);
                    dot8(wv[u], xv, acc[t]);
                    if (GEGLU) dot8(uv[u], xv, accu[t]);
                }
            }
        }
    }
    g4q_pdl_trigger(); /* the weights are read: the next kernel may start on freed SMs */
#pragma unroll
    for (int t = 0; t < N; t++) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
            if (GEGLU) accu[t] += __shfl_xor_sync(0xffffffffu, accu[t], o);
        }
    }
    if (KPR > 1) {
        if (lane == 0)
#pragma unroll
            for (int t = 0; t < N; t++)
                part[warp][t] = acc[t], part[warp][N + t] = accu[t];
        __syncthreads();
        if (k != 0) return;
#pragma unroll
        for (int t = 0; t < N; t++) {
            acc[t] = part[warp][t], accu[t] = part[warp][N + t];
#pragma unroll
            for (int j = 1; j < KPR; j++)
                acc[t] += part[warp + j][t], accu[t] += part[warp + j][N + t];
        }
    }
    if (lane != 0 || !live) return;
#pragma unroll
    for (int t = 0; t < N; t++) {
        float g = acc[t];
        if (GEGLU) {
            const float gl = g4q_rnd<__nv_bfloat16>(g4q_gelu_tanh(g4q_rnd<__nv_bfloat16>(g)));
            g = gl * g4q_rnd<__nv_bfloat16>(accu[t]);
        }
        sg.y[(int64_t)t * rows + row] = __float2bfloat16_rn(g);
    }
}

/* Warps per output row: the fewest (1, 2, 4) that give the GPU about GEMV_TARGET_WARPS warps, or
 * the backend's override (G4Q_CUDA_GEMV_KPR, for benchmarks). */
#define GEMV_TARGET_WARPS 8192
static int gemv_kpr(const g4q_backend *be, int64_t total)
{
    const int forced = g4q_cuda_st(be)->gemv_kpr;
    if (forced == 1 || forced == 2 || forced == 4) return forced;
    return total >= GEMV_TARGET_WARPS ? 1 : 2 * total >= GEMV_TARGET_WARPS ? 2 : 4;
}

template <bool GEGLU, int KPR> static void (*gemv_pick(int n))(const gemv_args)
{
    return n == 1   ? gemv_kernel<1, GEGLU, KPR>
           : n == 2 ? gemv_kernel<2, GEGLU, KPR>
           : n == 3 ? gemv_kernel<3, GEGLU, KPR>
                    : gemv_kernel<4, GEGLU, KPR>;
}

template <bool GEGLU> static g4q_status launch_gemv(g4q_backend *be, const gemv_args &a, int n)
{
    g4q_ctx *ctx = be->ctx;
    const int64_t total = a.s0.rows + a.s1.rows + a.s2.rows;
    const int kpr = gemv_kpr(be, total);
    const unsigned blocks = g4q_cuda_blocks((size_t)total, GEMV_WARPS / kpr);
    void (*kernel)(const gemv_args) = kpr == 1   ? gemv_pick<GEGLU, 1>(n)
                                      : kpr == 2 ? gemv_pick<GEGLU, 2>(n)
                                                 : gemv_pick<GEGLU, 4>(n);
    G4Q_CUDA_CHECK(g4q_cuda_launch(be, kernel, dim3(blocks), dim3(GEMV_WARPS * 32), 0, a));
    return G4Q_OK;
}

/* The GEMV applies: n small, bf16 weight with 16-byte rows. */
static bool gemv_ok(const g4q_bweight *w, int n)
{
    return n >= 1 && n <= GEMV_MAX_N && w->format == G4Q_WF_BF16 && w->act == G4Q_ACTQ_NONE &&
           w->cols % 8 == 0 &&
           w->cols / 8 <= INT32_MAX;
}

static gemv_args gemv_one(g4q_buf *y, const g4q_buf *x, const g4q_bweight *w)
{
    gemv_args a = {};
    a.s0.w = (const uint4 *)w->data;
    a.s0.y = (__nv_bfloat16 *)y->data;
    a.s0.rows = w->rows;
    a.x = (const uint4 *)x->data;
    a.chunks = (int)(w->cols / 8);
    return a;
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
    if (w->format != G4Q_WF_BF16 || w->act != G4Q_ACTQ_NONE)
        return g4q_cuda_qmatmul(be, y, x, w, n); /* cuda_qgemm.cu */
    if (gemv_ok(w, n)) return launch_gemv<false>(be, gemv_one(y, x, w), n);
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

g4q_status g4q_cuda_matmul3(g4q_backend *be, const g4q_buf *x, int n, g4q_buf *y0,
                            const g4q_bweight *w0, g4q_buf *y1, const g4q_bweight *w1, g4q_buf *y2,
                            const g4q_bweight *w2)
{
    g4q_ctx *ctx = be->ctx;
    const g4q_bweight *w[3] = {w0, w1, w2};
    g4q_buf *y[3] = {y0, y1, y2};
    const int nw = w2 ? 3 : 2;
    bool one = true, packed = true;
    for (int i = 0; i < nw; i++) {
        if (w[i]->cols != w0->cols || !g4q_cuda_bf16_ok(y[i], (size_t)n * (size_t)w[i]->rows))
            return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda matmul3: weight '%s' does not fit",
                            w[i]->name);
        one = one && gemv_ok(w[i], n);
        packed = packed && g4q_cuda_qgemv_fits(be, w0, w[i], n);
    }
    const bool xok = g4q_cuda_bf16_ok(x, (size_t)n * (size_t)w0->cols);
    if (packed && xok && n > 0) return g4q_cuda_qgemv3(be, x, n, y, w, nw); /* cuda_qgemv.cu */
    if (!one || !xok) {
        for (int i = 0; i < nw; i++)
            G4Q_TRY(g4q_cuda_matmul(be, y[i], x, w[i], n));
        return G4Q_OK;
    }
    gemv_args a = gemv_one(y0, x, w0);
    a.s1 = {(const uint4 *)w1->data, (__nv_bfloat16 *)y1->data, w1->rows};
    if (w2) a.s2 = {(const uint4 *)w2->data, (__nv_bfloat16 *)y2->data, w2->rows};
    return launch_gemv<false>(be, a, n);
}

g4q_status g4q_cuda_matmul_geglu(g4q_backend *be, g4q_buf *y, g4q_buf *tmp, const g4q_buf *x,
                                 const g4q_bweight *wg, const g4q_bweight *wu, int n)
{
    g4q_ctx *ctx = be->ctx;
    const size_t count = (size_t)n * (size_t)wg->rows;
    if (wg->rows != wu->rows || wg->cols != wu->cols || !g4q_cuda_bf16_ok(y, count) ||
        !g4q_cuda_bf16_ok(tmp, count) || !g4q_cuda_bf16_ok(x, (size_t)n * (size_t)wg->cols))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda matmul_geglu: weights '%s', '%s' do not fit",
                        wg->name, wu->name);
    if (n > 0 && g4q_cuda_qgemv_fits(be, wg, wu, n))
        return g4q_cuda_qgemv_geglu(be, y, x, wg, wu, n); /* cuda_qgemv.cu */
    if (!gemv_ok(wg, n) || !gemv_ok(wu, n)) {
        G4Q_TRY(g4q_cuda_matmul(be, y, x, wg, n));
        G4Q_TRY(g4q_cuda_matmul(be, tmp, x, wu, n));
        return g4q_cuda_geglu(be, y, y, tmp, count);
    }
    gemv_args a = gemv_one(y, x, wg);
    a.wu = (const uint4 *)wu->data;
    return launch_gemv<true>(be, a, n);
}

g4q_status g4q_cuda_gram(g4q_backend *be, g4q_buf *H, const g4q_buf *x, int rows, int n,
                         int block, int accumulate)
{
    g4q_ctx *ctx = be->ctx;
    const size_t count = g4q_hess_count(n, block);
    if (rows < 0 || n <= 0 || !g4q_cuda_act_ok(be, x, (size_t)rows * (size_t)n) ||
        H->dtype != G4Q_DT_F32 || count > H->count)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda gram: [%d, %d] out of range", rows, n);
    /* Column-major view: x is Xᵀ [n, rows]; H[n, n] += Xᵀ · (Xᵀ)ᵀ, symmetric so either layout. */
    const cudaDataType_t t = x->dtype == G4Q_DT_F32 ? CUDA_R_32F : CUDA_R_16BF;
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    if (rows == 0 && accumulate) return G4Q_OK;
    cudaStream_t st = g4q_cuda_st(be)->stream;
    cublasHandle_t blas = g4q_cuda_st(be)->blas;
    block = g4q_hess_block(n, block);
    if (rows == 0 || (block && !accumulate)) /* the entries no GEMM writes (the padding) */
        G4Q_CUDA_CHECK(cudaMemsetAsync(H->data, 0, count * sizeof(float), st));
    if (rows == 0) return G4Q_OK;
    if (!block) {
        G4Q_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_T, n, n, rows, &one, x->data, t,
                                      n, x->data, t, n, &beta, H->data, CUDA_R_32F, n,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return G4Q_OK;
    }
    /* Diagonal block k: rows [k·b, k·b + b) of the column-major Xᵀ times their transpose, into
     * compact block k (leading dimension b); consecutive blocks are b elements apart in Xᵀ and
     * b·b apart in H. */
    const size_t es = x->dtype == G4Q_DT_F32 ? 4 : 2;
    const int nb = n / block, tail = n - nb * block;
    const char *xd = static_cast<const char *>(x->data);
    float *hd = static_cast<float *>(H->data);
    const long long b2 = (long long)block * block;
    if (nb > 0)
        G4Q_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            blas, CUBLAS_OP_N, CUBLAS_OP_T, block, block, rows, &one, xd, t, n, (long long)block,
            xd, t, n, (long long)block, &beta, hd, CUDA_R_32F, block, b2, nb, CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT));
    if (tail > 0) {
        const size_t o = (size_t)nb * (size_t)block;
        G4Q_CUBLAS_CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_T, tail, tail, rows, &one,
                                      xd + o * es, t, n, xd + o * es, t, n, &beta,
                                      hd + (size_t)nb * (size_t)b2, CUDA_R_32F, block,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return G4Q_OK;
}
