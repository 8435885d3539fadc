// GPTQ on the device (quant_cuda.h; the algorithm and its CPU reference: quant/gptq.h).
//
// 1. Inverse factor U (fp64, then fp32): H widened to fp64 with the CPU's dead-column and damping
//    rule (g4q_gptq_damp_diag on the host), reversed (J·H·J), then a right-looking blocked
//    Cholesky L (diagonal blocks of 128 factored in shared memory by one thread block, panels
//    with cuBLAS dtrsm / dsyrk), L⁻¹ by dtrsm against the identity in column blocks, and
//    U = J·L⁻¹·J (g4q_cuda_gptq_factor says why that is the factor of H⁻¹).
//    Summation orders differ from the CPU's, so U agrees with it to fp64 rounding, not bit for bit.
// 2. The column loop, exactly the CPU's arithmetic (correctly rounded intrinsics, no contraction):
//    per block of B columns, one thread per row quantizes the block's columns in order (choosing
//    INT4 group and NVFP4 block scales when it reaches them) and applies the in-block updates
//    (block_kernel), then every later column gets the block's errors in one
//    tiled pass (trail_kernel) where each element adds its B terms in ascending order with fmaf,
//    as the CPU does. Given the same U, the codes and scales are the CPU's, byte for byte.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/quant_cuda.h"
#include "quant/blockq.h"
#include "quant/gptq.h"

namespace {

constexpr int kB = 128;      // lazy-batch columns on the device (the CPU default)
constexpr int kChol = 128;   // diagonal block of the blocked Cholesky (shared memory: 128 KB)
constexpr int kInvB = 512;   // column block of the triangular inverse
constexpr int kT = 64;       // trail_kernel tile (columns x rows)
constexpr int kK = 16;       // trail_kernel k-chunk

enum Fmt { F_INT4 = 0, F_NVFP4 = 1, F_FP8 = 2 };

struct LoopArgs {
    int fmt;
    int64_t rows, cols;
    // INT4: q int8 [rows, cols], scales fp32 [rows, ng] (written at group starts)
    int8_t *q8;
    float *scales;
    int64_t ng;
    int group, kind, store; // kind: the scale method (g4q_int4_group_scale_h)
    const float *hw;        // weighted methods: H's weights (quant.h compact layout), device
    // NVFP4 (ModelOpt): packed [rows, cols/2], E4M3 scales [rows, cols/16] chosen lazily (kind,
    // cand: the 126 sweep scales, hw: H's weights in blocks of 16), g = wsf2
    uint8_t *packed;
    uint8_t *e4m3;
    float g;
    const float *cand;
    // FP8 blocks: q [rows, cols], fixed scales [ceil(rows/128), nbc]
    uint8_t *fp8;
    const float *fscales;
    int64_t nbc;
};

// H (fp32) -> A (fp64), both [n, n].
__global__ void widen_kernel(const float *H, double *A, size_t count)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) A[i] = (double)H[i];
}

__global__ void diag_get(const double *A, int64_t n, double *d)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) d[i] = A[i * n + i];
}

__global__ void diag_set(double *A, int64_t n, const double *d)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) A[i * n + i] = d[i];
}

// X = I [n, n]
__global__ void eye_kernel(double *X, int64_t n)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)n * (size_t)n) X[i] = (i / (size_t)n == i % (size_t)n) ? 1.0 : 0.0;
}

// D = J·S·J [n, n] (J reverses the order: D[i][j] = S[n-1-i][n-1-j]).
__global__ void reverse_kernel(const double *S, double *D, int64_t n)
{
    const size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)n * (size_t)n) return;
    D[k] = S[(size_t)n * (size_t)n - 1 - k];
}

// U = J·X·J in fp32, row-major upper (zeros below): U[i][j] = fl32(X(n-1-i, n-1-j)) for j >= i,
// X lower and column-major.
__global__ void narrow_reversed(const double *X, float *U, int64_t n)
{
    const size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (size_t)n * (size_t)n) return;
    const int64_t i = (int64_t)(k / (size_t)n), j = (int64_t)(k % (size_t)n);
    U[k] = j >= i ? (float)X[(size_t)(n - 1 - j) * (size_t)n + (size_t)(n - 1 - i)] : 0.0f;
}

// Wt [cols, rows] = W [rows, cols] widened, dead columns zero (32 x 32 tiles through shared).
__global__ void transpose_kernel(const uint16_t *w, int64_t rows, int64_t cols,
                                 const uint8_t *dead, float *Wt)
{
    __shared__ float t[32][33];
    const int64_t c0 = (int64_t)blockIdx.x * 32, r0 = (int64_t)blockIdx.y * 32;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const int64_t r = r0 + k, c = c0 + threadIdx.x;
        if (r < rows && c < cols) t[k][threadIdx.x] = dead[c] ? 0.0f : g4q_bf16_to_f32(w[r * cols + c]);
    }
    __syncthreads();
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const int64_t c = c0 + k, r = r0 + threadIdx.x;
        if (r < rows && c < cols) Wt[c * rows + r] = t[threadIdx.x][k];
    }
}

// Quantize-dequantize of column c, row r, with the format's scales (gptq.c's qdq functions).
__device__ float qdq(const LoopArgs &a, int64_t r, int64_t c, float w, uint8_t *nib)
{
    switch (a.fmt) {
    case F_INT4: {
        const float sc = a.scales[r * a.ng + c / a.group];
        const int v = g4q_int4_encode(__fdiv_rn(w, sc));
        a.q8[r * a.cols + c] = (int8_t)v;
        return __fmul_rn((float)v, sc);
    }
    case F_NVFP4: {
        const float sv = g4q_e4m3_decode(a.e4m3[(r * a.cols + c) / G4Q_NVFP4_BLOCK]);
        *nib = g4q_e2m1_encode(__fdiv_rn(w, __fmul_rn(sv, a.g)));
        return __fmul_rn(__fmul_rn(g4q_e2m1_decode(*nib), sv), a.g);
    }
    default: {
        const float sc = a.fscales[(r / G4Q_FP8_BLOCK) * a.nbc + c / G4Q_FP8_BLOCK];
        const uint8_t v = g4q_e4m3_encode_sat(__fdiv_rn(w, sc));
        a.fp8[r * a.cols + c] = v;
        return __fmul_rn(g4q_e4m3_decode(v), sc);
    }
    }
}

// Columns [i1, i1 + n) of every row: one thread per row, the block's values in local memory.
__global__ void block_kernel(LoopArgs a, const float *Wt, const float *U, int64_t i1, int n,
                             float *E, int *bad)
{
    const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= a.rows) return;
    const int64_t rows = a.rows, cols = a.cols;
    float wb[kB];
    for (int k = 0; k < n; k++)
        wb[k] = Wt[(i1 + k) * rows + r];
    uint8_t lo = 0;
    for (int k = 0; k < n; k++) {
        const int64_t i = i1 + k;
        if (a.fmt == F_INT4 && i % a.group == 0) { // lazy group scale from the current values
            uint16_t g[kB];
            const int gn = (int)(cols - i < a.group ? cols - i : a.group);
            for (int m = 0; m < gn; m++)
                g[m] = g4q_f32_to_bf16(wb[k + m]);
            const float *hw = nullptr;
            int64_t ldh = 0, c0 = i;
            if (a.kind == G4Q_SCALE_IMATRIX) {
                hw = a.hw;
            } else if (a.kind == G4Q_SCALE_HESSIAN) {
                hw = a.hw + (size_t)(i / a.group) * (size_t)a.group * (size_t)a.group;
                ldh = a.group, c0 = 0;
            }
            const float sc = g4q_int4_group_scale_h(g, gn, a.kind, a.store, hw, ldh, c0);
            if (isinf(sc)) atomicOr(bad, 1);
            a.scales[r * a.ng + i / a.group] = sc;
        }
        if (a.fmt == F_NVFP4 && i % G4Q_NVFP4_BLOCK == 0) { // lazy block scale
            const float *hb = !a.hw ? nullptr
                              : a.kind == G4Q_SCALE_HESSIAN
                                  ? a.hw + (size_t)(i / G4Q_NVFP4_BLOCK) * G4Q_NVFP4_BLOCK *
                                               G4Q_NVFP4_BLOCK
                                  : a.hw + i;
            uint8_t o8[G4Q_NVFP4_BLOCK / 2];
            a.e4m3[(r * cols + i) / G4Q_NVFP4_BLOCK] =
                g4q_nvfp4_block_choose(wb + k, a.kind, a.cand, a.g, hb, o8);
        }
        uint8_t nib = 0;
        const float q = qdq(a, r, i, wb[k], &nib);
        if (a.fmt == F_NVFP4) {
            const int64_t e = r * cols + i;
            if (e & 1)
                a.packed[e / 2] = (uint8_t)(lo | (nib << 4));
            else
                lo = nib;
        }
        const float e = __fdiv_rn(__fsub_rn(wb[k], q), U[i * cols + i]);
        E[(int64_t)k * rows + r] = e;
        const float *ui = U + i * cols + i1;
        for (int j = k + 1; j < n; j++)
            wb[j] = __fmaf_rn(-e, ui[j], wb[j]);
    }
}

// Wt[j][r] for j in [j0, cols): w = fmaf(-E[k][r], U[i1 + k][j], w) for k = 0..n-1 ascending.
__global__ void trail_kernel(float *Wt, const float *U, const float *E, int64_t rows,
                             int64_t cols, int64_t i1, int n, int64_t j0)
{
    __shared__ float se[kK][kT];
    __shared__ float su[kK][kT];
    const int tx = threadIdx.x, ty = threadIdx.y; // 16 x 16 threads, 4 x 4 outputs each
    const int64_t r0 = (int64_t)blockIdx.x * kT, jb = j0 + (int64_t)blockIdx.y * kT;
    float acc[4][4];
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            const int64_t j = jb + ty + 16 * a, r = r0 + tx + 16 * b;
            acc[a][b] = (j < cols && r < rows) ? Wt[j * rows + r] : 0.0f;
        }
    for (int k0 = 0; k0 < n; k0 += kK) {
        const int tid = ty * 16 + tx;
        for (int m = tid; m < kK * kT; m += 256) {
            const int kk = m / kT, c = m % kT;
            const int64_t r = r0 + c, j = jb + c;
            const bool in = k0 + kk < n;
            se[kk][c] = (in && r < rows) ? E[(int64_t)(k0 + kk) * rows + r] : 0.0f;
            su[kk][c] = (in && j < cols) ? U[(i1 + k0 + kk) * cols + j] : 0.0f;
        }
        __syncthreads();
        const int kn = n - k0 < kK ? n - k0 : kK;
        for (int kk = 0; kk < kn; kk++) {
            float ev[4], uv[4];
            for (int b = 0; b < 4; b++)
                ev[b] = -se[kk][tx + 16 * b];
            for (int a = 0; a < 4; a++)
                uv[a] = su[kk][ty + 16 * a];
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 4; b++)
                    acc[a][b] = __fmaf_rn(ev[b], uv[a], acc[a][b]);
        }
        __syncthreads();
    }
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) {
            const int64_t j = jb + ty + 16 * a, r = r0 + tx + 16 * b;
            if (j < cols && r < rows) Wt[j * rows + r] = acc[a][b];
        }
}

unsigned blocks_for(size_t n, unsigned t) { return (unsigned)((n + t - 1) / t); }

// Device memory released on every path.
struct Scratch {
    std::vector<void *> p;
    ~Scratch()
    {
        for (void *q : p)
            cudaFree(q);
    }
    template <typename T> g4q_status get(g4q_ctx *ctx, const char *nm, size_t count, T **out)
    {
        void *q = nullptr;
        if (cudaMalloc(&q, count * sizeof(T) + 16) != cudaSuccess)
            return g4q_fail(ctx, G4Q_ERR_NOMEM, "tensor '%s': GPTQ needs %.2f GB more GPU memory",
                            nm, (double)(count * sizeof(T)) / 1e9);
        p.push_back(q);
        *out = static_cast<T *>(q);
        return G4Q_OK;
    }
};

#define BLAS_TRY(call)                                                                             \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return g4q_fail(ctx, G4Q_ERR_CUDA, "tensor '%s': %s failed (cuBLAS status %d)", nm,     \
                            #call, (int)s_);                                                       \
    } while (0)

// The lower Cholesky of the column-major kb x kb diagonal block at A (leading dimension lda),
// kb <= kChol, in shared memory by one block: right-looking, column j scaled by the pivot's root,
// then the trailing lower triangle updated. Writes back the lower triangle (the upper is left as
// it is). A pivot that is not positive and finite sets *bad = base + j + 1 (the first failure of
// the factorization; later panels then do nothing) and stops.
__global__ void __launch_bounds__(1024)
    chol_panel_kernel(double *A, int64_t lda, int kb, int64_t base, long long *bad)
{
    extern __shared__ double sp[]; // [kb][kb], column-major
    if (*bad) return;
    const int tid = threadIdx.x, nt = blockDim.x;
    for (int e = tid; e < kb * kb; e += nt)
        sp[e] = A[(int64_t)(e / kb) * lda + e % kb];
    for (int j = 0; j < kb; j++) {
        __syncthreads();
        const double d = sp[j * kb + j];
        if (!(d > 0.0) || !isfinite(d)) {
            if (tid == 0) *bad = base + j + 1;
            return; // every thread read the same pivot
        }
        const double r = sqrt(d);
        for (int i = j + 1 + tid; i < kb; i += nt)
            sp[j * kb + i] /= r;
        __syncthreads();
        if (tid == 0) sp[j * kb + j] = r;
        const int m = kb - j - 1; // the trailing lower triangle, m (m + 1) / 2 entries
        for (int e = tid; e < m * m; e += nt) {
            const int i = j + 1 + e % m, k = j + 1 + e / m;
            if (k <= i) sp[k * kb + i] -= sp[j * kb + i] * sp[j * kb + k];
        }
    }
    __syncthreads();
    for (int e = tid; e < kb * kb; e += nt)
        if (e % kb >= e / kb) A[(int64_t)(e / kb) * lda + e % kb] = sp[e];
}

// In-place lower Cholesky of the column-major fp64 A [n, n] on the device (see the file comment):
// diagonal blocks by chol_panel_kernel, the panels below with cuBLAS, no host round trip. *bad:
// 0, or 1 + the first pivot that is not positive (the stream is synchronised before return).
g4q_status chol_blocked(g4q_ctx *ctx, const char *nm, cublasHandle_t h, cudaStream_t st, double *A,
                        int64_t n, long long *d_bad, int64_t *bad)
{
    *bad = 0;
    const double one = 1.0, minus = -1.0;
    const size_t smem = (size_t)kChol * kChol * sizeof(double);
    G4Q_CUDA_CHECK(cudaFuncSetAttribute(chol_panel_kernel,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    G4Q_CUDA_CHECK(cudaMemsetAsync(d_bad, 0, sizeof *d_bad, st));
    for (int64_t k = 0; k < n; k += kChol) {
        const int64_t kb = n - k < kChol ? n - k : kChol;
        double *a11 = A + k * n + k;
        chol_panel_kernel<<<1, 1024, smem, st>>>(a11, n, (int)kb, k, d_bad);
        const int64_t m2 = n - k - kb;
        if (m2 <= 0) continue;
        double *a21 = a11 + kb, *a22 = A + (k + kb) * n + k + kb;
        BLAS_TRY(cublasDtrsm(h, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T,
                             CUBLAS_DIAG_NON_UNIT, (int)m2, (int)kb, &one, a11, (int)n, a21,
                             (int)n));
        BLAS_TRY(cublasDsyrk(h, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)m2, (int)kb, &minus, a21,
                             (int)n, &one, a22, (int)n));
    }
    G4Q_CUDA_CHECK(cudaGetLastError());
    long long b = 0;
    G4Q_CUDA_CHECK(cudaMemcpyAsync(&b, d_bad, sizeof b, cudaMemcpyDeviceToHost, st));
    G4Q_CUDA_CHECK(cudaStreamSynchronize(st));
    *bad = (int64_t)b;
    return G4Q_OK;
}

} // namespace

extern "C" g4q_status g4q_cuda_gptq_factor(g4q_ctx *ctx, const char *name, void *blas,
                                           const float *d_H, int64_t n, double damp, float *d_U,
                                           uint8_t *d_dead, void *stream)
{
    const char *nm = name ? name : "?";
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    cublasHandle_t h = static_cast<cublasHandle_t>(blas);
    const size_t nn = (size_t)n * (size_t)n;
    Scratch s;
    double *A = nullptr, *X = nullptr, *d = nullptr;
    long long *d_bad = nullptr;
    G4Q_TRY(s.get(ctx, nm, 1, &d_bad));
    G4Q_TRY(s.get(ctx, nm, nn, &A));
    G4Q_TRY(s.get(ctx, nm, nn, &X));
    G4Q_TRY(s.get(ctx, nm, (size_t)n, &d));
    BLAS_TRY(cublasSetStream(h, st));
    widen_kernel<<<blocks_for(nn, 256), 256, 0, st>>>(d_H, A, nn);
    diag_get<<<blocks_for((size_t)n, 256), 256, 0, st>>>(A, n, d);
    std::vector<double> diag((size_t)n);
    std::vector<uint8_t> dead((size_t)n);
    G4Q_CUDA_CHECK(cudaMemcpyAsync(diag.data(), d, (size_t)n * 8, cudaMemcpyDeviceToHost, st));
    G4Q_CUDA_CHECK(cudaStreamSynchronize(st));
    const int nonfinite = g4q_gptq_damp_diag(diag.data(), n, damp, dead.data());
    G4Q_CUDA_CHECK(cudaMemcpyAsync(d, diag.data(), (size_t)n * 8, cudaMemcpyHostToDevice, st));
    G4Q_CUDA_CHECK(cudaMemcpyAsync(d_dead, dead.data(), (size_t)n, cudaMemcpyHostToDevice, st));
    diag_set<<<blocks_for((size_t)n, 256), 256, 0, st>>>(A, n, d);
    // U is the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ·U). With J the reversal and L the lower
    // Cholesky factor of J·H·J, H = (J·L·J)·(J·L·J)ᵀ with J·L·J upper, so U = (J·L·J)⁻¹ =
    // J·L⁻¹·J: one Cholesky and one triangular inverse (about n³/3 + n³/3 multiply-adds), not
    // the Cholesky, inverse and Cholesky again of H⁻¹.
    reverse_kernel<<<blocks_for(nn, 256), 256, 0, st>>>(A, X, n);
    int64_t bad = nonfinite ? 1 : 0;
    if (!bad) G4Q_TRY(chol_blocked(ctx, nm, h, st, X, n, d_bad, &bad));
    if (bad)
        return g4q_fail(ctx, G4Q_ERR_NUMERIC,
                        "tensor '%s': the calibration Hessian is not positive definite (pivot %lld "
                        "of %lld) even with damping %g",
                        nm, nonfinite ? 0LL : (long long)(n - bad), (long long)n, damp);
    // A = L⁻¹ (lower), by column blocks: block c0 of the identity solves against L's trailing
    // part only (the inverse is zero above the diagonal).
    const double one = 1.0;
    eye_kernel<<<blocks_for(nn, 256), 256, 0, st>>>(A, n);
    for (int64_t c0 = 0; c0 < n; c0 += kInvB) {
        const int64_t cb = n - c0 < kInvB ? n - c0 : kInvB;
        BLAS_TRY(cublasDtrsm(h, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                             CUBLAS_DIAG_NON_UNIT, (int)(n - c0), (int)cb, &one, X + c0 * n + c0,
                             (int)n, A + c0 * n + c0, (int)n));
    }
    narrow_reversed<<<blocks_for(nn, 256), 256, 0, st>>>(A, d_U, n);
    G4Q_CUDA_CHECK(cudaGetLastError());
    G4Q_CUDA_CHECK(cudaStreamSynchronize(st));
    return G4Q_OK;
}

// The column loop (after the RTN quantizer fixed the scales, or INT4 with lazy scales).
static g4q_status run_loop(g4q_ctx *ctx, const char *nm, void *blas, const uint16_t *d_w,
                           const float *d_H, const g4q_gptq_opts *o, LoopArgs a, cudaStream_t st,
                           int *overflow)
{
    const int64_t rows = a.rows, cols = a.cols;
    const double damp = o && o->damp > 0.0 ? o->damp : 0.01;
    if (o && o->block > 0 && o->block != kB)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "tensor '%s': GPTQ on the GPU uses blocks of %d",
                        nm, kB);
    Scratch s;
    float *U = nullptr, *Wt = nullptr, *E = nullptr;
    uint8_t *dead = nullptr;
    int *bad = nullptr;
    G4Q_TRY(s.get(ctx, nm, (size_t)cols, &dead));
    if (o && o->U) {
        U = const_cast<float *>(o->U);
    } else {
        G4Q_TRY(s.get(ctx, nm, (size_t)cols * (size_t)cols, &U));
        G4Q_TRY(g4q_cuda_gptq_factor(ctx, nm, blas, d_H, cols, damp, U, dead, st));
    }
    if (o && o->U) { // dead columns from H's diagonal, as on the CPU
        std::vector<float> hd((size_t)cols);
        G4Q_CUDA_CHECK(cudaMemcpy2DAsync(hd.data(), 4, d_H, (size_t)(cols + 1) * 4, 4,
                                         (size_t)cols, cudaMemcpyDeviceToHost, st));
        G4Q_CUDA_CHECK(cudaStreamSynchronize(st));
        std::vector<uint8_t> dd((size_t)cols);
        for (int64_t c = 0; c < cols; c++)
            dd[c] = hd[c] == 0.0f;
        G4Q_CUDA_CHECK(cudaMemcpyAsync(dead, dd.data(), (size_t)cols, cudaMemcpyHostToDevice, st));
    }
    G4Q_TRY(s.get(ctx, nm, (size_t)rows * (size_t)cols, &Wt));
    G4Q_TRY(s.get(ctx, nm, (size_t)rows * kB, &E));
    G4Q_TRY(s.get(ctx, nm, 1, &bad));
    G4Q_CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(int), st));
    transpose_kernel<<<dim3(blocks_for((size_t)cols, 32), blocks_for((size_t)rows, 32)),
                       dim3(32, 8), 0, st>>>(d_w, rows, cols, dead, Wt);
    for (int64_t i1 = 0; i1 < cols; i1 += kB) {
        const int n = (int)(cols - i1 < kB ? cols - i1 : kB);
        block_kernel<<<blocks_for((size_t)rows, 128), 128, 0, st>>>(a, Wt, U, i1, n, E, bad);
        const int64_t j0 = i1 + n;
        if (j0 < cols)
            trail_kernel<<<dim3(blocks_for((size_t)rows, kT), blocks_for((size_t)(cols - j0), kT)),
                           dim3(16, 16), 0, st>>>(Wt, U, E, rows, cols, i1, n, j0);
    }
    G4Q_CUDA_CHECK(cudaGetLastError());
    int hb = 0;
    G4Q_CUDA_CHECK(cudaMemcpyAsync(&hb, bad, sizeof hb, cudaMemcpyDeviceToHost, st));
    G4Q_CUDA_CHECK(cudaStreamSynchronize(st));
    if (overflow) *overflow = hb;
    return G4Q_OK;
}

extern "C" g4q_status g4q_cuda_gptq_int4(g4q_ctx *ctx, const char *name, void *blas,
                                         const uint16_t *d_w, int64_t rows, int64_t cols,
                                         int group, g4q_scale_method method, g4q_dtype scale_dtype,
                                         const float *d_H, const g4q_gptq_opts *o, int8_t *d_q,
                                         float *d_scales, void *stream)
{
    const char *nm = name ? name : "?";
    const g4q_hess hv{d_H, cols, 0, 0}, *full = d_H ? &hv : nullptr; // GPTQ's H: every entry
    // The RTN quantizer validates shape, dtype, method and weights; its outputs are replaced.
    G4Q_TRY(g4q_cuda_int4_quantize_h(ctx, name, d_w, rows, cols, group, method, scale_dtype, full,
                                     d_q, d_scales, stream));
    if (group <= 0 || kB % group != 0)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "tensor '%s': GPTQ on the GPU needs INT4 groups dividing %d", nm, kB);
    LoopArgs a{};
    a.fmt = F_INT4, a.rows = rows, a.cols = cols, a.q8 = d_q, a.scales = d_scales;
    a.ng = g4q_int4_group_count(cols, group), a.group = group, a.kind = (int)method;
    a.store = scale_dtype == G4Q_DT_F16    ? G4Q_SCALE_STORE_F16
              : scale_dtype == G4Q_DT_BF16 ? G4Q_SCALE_STORE_BF16
                                           : G4Q_SCALE_STORE_F32;
    float *d_hw = nullptr;
    G4Q_TRY(g4q_cuda_hess_weights(ctx, nm, method, full, cols, group, stream, &d_hw));
    a.hw = d_hw;
    int overflow = 0;
    g4q_status st =
        run_loop(ctx, nm, blas, d_w, d_H, o, a, static_cast<cudaStream_t>(stream), &overflow);
    if (d_hw) cudaFreeAsync(d_hw, static_cast<cudaStream_t>(stream));
    G4Q_TRY(st);
    if (overflow)
        return g4q_fail(ctx, G4Q_ERR_NUMERIC,
                        "tensor '%s': a GPTQ group scale overflows %s (error feedback grew the "
                        "weights)",
                        nm, g4q_dtype_name(scale_dtype));
    return G4Q_OK;
}

extern "C" g4q_status g4q_cuda_gptq_nvfp4(g4q_ctx *ctx, const char *name, void *blas,
                                          const uint16_t *d_w, int64_t rows, int64_t cols,
                                          float global_amax, g4q_scale_method method,
                                          const float *d_H, const g4q_gptq_opts *o,
                                          uint8_t *d_packed, uint8_t *d_scales, float *wsf2,
                                          void *stream)
{
    const char *nm = name ? name : "?";
    const g4q_hess hv{d_H, cols, 0, 0}, *full = d_H ? &hv : nullptr; // GPTQ's H: every entry
    G4Q_TRY(g4q_cuda_nvfp4_quantize_h(ctx, name, d_w, rows, cols, global_amax, method, full,
                                      d_packed, d_scales, wsf2, stream));
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    float cand[G4Q_NVFP4_SWEEP_N];
    for (int c = 1; c <= G4Q_NVFP4_SWEEP_N; c++)
        cand[c - 1] = g4q_nvfp4_sweep_scale((uint8_t)c, global_amax);
    Scratch s;
    float *d_cand = nullptr, *d_hw = nullptr;
    G4Q_TRY(s.get(ctx, nm, G4Q_NVFP4_SWEEP_N, &d_cand));
    G4Q_CUDA_CHECK(cudaMemcpyAsync(d_cand, cand, sizeof cand, cudaMemcpyHostToDevice, st));
    G4Q_TRY(g4q_cuda_hess_weights(ctx, nm, method, full, cols, G4Q_NVFP4_BLOCK, stream, &d_hw));
    LoopArgs a{};
    a.fmt = F_NVFP4, a.rows = rows, a.cols = cols, a.kind = (int)method;
    a.packed = d_packed, a.e4m3 = d_scales, a.g = *wsf2, a.cand = d_cand, a.hw = d_hw;
    g4q_status r = run_loop(ctx, nm, blas, d_w, d_H, o, a, st, nullptr);
    if (d_hw) cudaFreeAsync(d_hw, st);
    return r;
}

extern "C" g4q_status g4q_cuda_gptq_fp8_blocks(g4q_ctx *ctx, const char *name, void *blas,
                                               const uint16_t *d_w, int64_t rows, int64_t cols,
                                               g4q_scale_method method, const float *d_H,
                                               const g4q_gptq_opts *o, uint8_t *d_q,
                                               float *d_scales, void *stream)
{
    const char *nm = name ? name : "?";
    const g4q_hess hv{d_H, cols, 0, 0}, *full = d_H ? &hv : nullptr; // GPTQ's H: every entry
    G4Q_TRY(g4q_cuda_fp8_quantize_blocks_h(ctx, name, d_w, rows, cols, method, full, d_q, d_scales,
                                           stream));
    LoopArgs a{};
    a.fmt = F_FP8, a.rows = rows, a.cols = cols, a.fp8 = d_q, a.fscales = d_scales;
    a.nbc = (cols + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK;
    return run_loop(ctx, nm, blas, d_w, d_H, o, a, static_cast<cudaStream_t>(stream), nullptr);
}
