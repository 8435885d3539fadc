// CUDA packed-weight GEMM: y[n, rows] = x[n, cols] · Wᵀ with W in one of the packed formats of
// backend.h (NVFP4 ModelOpt / compressed-tensors, FP8 128x128 blocks / per tensor, INT4
// compressed-tensors / GPTQ), x and y bf16, fp32 accumulation, one bf16 rounding per output.
// This file binds the weights and runs the prefill path; the decode GEMV is cuda_qgemv.cu.
//
// Device layout (bind time; cuda_qlayout.h has the exact bit positions). Codes are re-laid out
// on the device (the host bytes go through a temporary of that one weight) into chunks of 16 rows
// x one superblock (64 columns for NVFP4 and INT4, 32 for FP8), 512 bytes each, 16 bytes per
// lane of a warp: words 0-1 of a lane hold a few columns of row 16·T + g, words 2-3 the same
// columns of row 16·T + g + 8 (lane = 4·g + t). Rows are padded to multiples of 16 and columns
// to multiples of 4 superblocks with codes of value zero; nothing else is ever expanded.
//   NVFP4  lane (g, t) holds block 4·S + t (16 columns) of its rows; the nibbles are stored as a
//          GF(2)-linear code that 4 rotations and 4 XOR-and-mask operations per word turn into
//          four bf16 pairs E2M1 · 2^-126 (sign bit 15, E2M1 bits at bf16 bits 8..6).
//          Scales: E4M3 bytes, 8 per lane per 4 superblocks (rows g and g + 8). A negative block
//          scale is stored as |scale| with the block's code signs flipped, a zero scale (either
//          sign) with zero codes: the same products t = E2M1 · E4M3, up to the sign of zeros.
//   INT4   lane (g, t) holds columns 4·t .. 4·t + 3 of each 16-column block of the superblock,
//          nibbles (q + 8) in place (GPTQ's [cols/8, rows] read directly by the re-layout).
//          Scales: fp32 [row tiles, groups, 16] (F16 / BF16 scales widened exactly on the host).
//   FP8    lane (g, t) holds columns 8·t .. 8·t + 7 of the superblock, the E4M3 bytes as a
//          linear code that 2 rotations and 2 XOR-and-mask operations turn into two bf16 pairs
//          E4M3 · 2^-120 (sign 15, eeee mmm at 10..4). Scales: fp32 [ceil(rows/128),
//          ceil(cols/128)] (a per-tensor scale is expanded to that grid).
// A weight with NaN codes (FP8 0x7F / 0xFF) or NaN NVFP4 block scales is marked QG_NOGEMV at
// bind time and always takes the prefill path, which decodes NaN exactly.
//
// Decode (n <= 4, cols % 16 == 0, no activation quantization; cuda_qgemv.cu): tensor cores,
// mma.sync m16n8k16 with bf16 inputs and fp32 accumulators, weights as A (16 output rows), x as
// B (n of its 8 columns). What enters the MMA is exact:
//   NVFP4  A = bf16(E2M1 · 2^-126) · bf16(E4M3(scale) · 2^112) = t · 2^-14 (one bf16 multiply,
//          exact: t has at most 6 significant bits and |t| lies in [2^-10, 2688]; the first
//          factor is subnormal for E2M1 0.5, which the bf16 multiply takes as it is, like the
//          FP4 / FP8 dequantizers of Marlin-class kernels; the MMA sees normal values only).
//          The fp32 sum S of a row is taken over all its columns; y = fl32(fl32(S · 2^14) ·
//          scale2) (ModelOpt) or fl32(fl32(S · 2^14) ÷ global) (compressed-tensors: a true
//          division, once per output).
//   INT4   A = q (exact); the fp32 MMA sum of each group's columns is multiplied by the group
//          scale and added (fma) to the row's fp32 sum: y = Σ_groups s_g · Σ_{k in g} q·x.
//          Groups that are a multiple of 64 columns take one scale per superblock, multiples
//          of 16 one per MMA; other groups (multiples of 8) split each MMA into its two halves.
//   FP8    A = E4M3 (bf16(E4M3 · 2^-120) · 2^120, exact); the fp32 MMA sum of each 16 x 128
//          block is multiplied by its scale and added: y = Σ_blocks s_b · Σ_{k in b} E4M3·x.
// So the decode results equal Σ w·x of the exact fp32 weights of backend.h up to the order and
// rounding of the fp32 sums: the products of bf16 values are exact, each MMA adds its 16 products
// to an fp32 accumulator; NVFP4 chains all MMAs of a warp's column range in column order, INT4
// and FP8 chain the MMAs of one group / block and add its scaled sum to the row's sum with an
// fma (the factored scale costs one extra rounding per group or block, inside the γ bound of
// the tests); the K-split warps of a row tile are added in warp order, then the global factor.
//
// Prefill (larger n, cols % 16 != 0, QG_NOGEMV, or any weight with an activation quantization):
// tensor cores through cuBLAS. The weight is widened QG_SLICE_ELEMS elements' worth of rows
// (whole multiples of 256; one slice for every Linear of the 12B) at a time into a bf16 slice of
// the backend scratch, and cuBLAS (bf16 inputs, CUBLAS_COMPUTE_32F) writes that slice's columns
// of the bf16 [n, rows] result, with the factor every element shares in its alpha:
//   NVFP4   slice E2M1 · E4M3 (exact in bf16); alpha scale2 (compressed-tensors: fl32(1/global))
//   FP8     per tensor: slice E4M3 (exact), alpha the scale; blocks: bf16(E4M3 · scale)
//   INT4    bf16(q · scale)                     (the rounding Marlin-class kernels make too)
//   BF16    the weight itself (only reached with an activation quantization)
// The slice kernels read the device layout above back into the original codes and decode them
// with the src/quant decoders. With an activation quantization, Q(x) of src/quant/actq.h is first
// written to a bf16 scratch (one thread per block / group / value; exact for NVFP4 and FP8 per
// tensor) and alpha takes its factor too, so NVFP4 W4A4 runs as the engine's E2M1 · E4M3
// products with alpha = input_scale · scale2.
#include <cuda_fp16.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_qlayout.h"
#include "quant/actq.h"
#include "quant/codecs.h"

#define QG_SLICE_ELEMS ((size_t)64 << 20)     /* prefill: bf16 weight slice, 128 MB at most */
#define QG_SLICE_ROWS 256                     /* slices are whole multiples of this many rows */
#define QG_ALIGN(b) (((b) + 255) / 256 * 256) /* scratch partition alignment */

/* ---- prefill: widen a slice of rows to bf16, tensor-core GEMM ---- */

/* One thread per weight of rows r0.. (any cols): ql_value. */
template <int FMT>
static __global__ void qslice_kernel(const qlayout L, const void *data, const void *scale,
                                     int tensor, int64_t r0, size_t count, __nv_bfloat16 *out)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const int64_t r = r0 + (int64_t)(i / (size_t)L.cols), c = (int64_t)(i % (size_t)L.cols);
    out[i] = __float2bfloat16_rn(ql_value<FMT>(L, data, scale, tensor, r, c));
}

/* The same slice when cols % 16 == 0, one thread per 16 weights of a row (ql_values16: each word
 * read and unpacked once), written as two 16-byte stores. Bit-identical to qslice_kernel. */
template <int FMT>
static __global__ void qslice16_kernel(const qlayout L, const void *data, const void *scale,
                                       int tensor, int64_t r0, size_t nchunks, uint4 *out)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nchunks) return;
    const int64_t per_row = L.cols / 16;
    const int64_t r = r0 + (int64_t)(i / (size_t)per_row), c0 = 16 * (int64_t)(i % (size_t)per_row);
    float v[16];
    ql_values16<FMT>(L, data, scale, tensor, r, c0, v);
    uint32_t p[8];
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
        p[k] = *reinterpret_cast<const uint32_t *>(&h);
    }
    out[2 * i] = make_uint4(p[0], p[1], p[2], p[3]);
    out[2 * i + 1] = make_uint4(p[4], p[5], p[6], p[7]);
}

/* Widens rows [r0, r0 + nr) of packed weight w into the bf16 slice ws [nr, in]. */
static g4q_status qslice(g4q_backend *be, const g4q_bweight *w, int64_t r0, int64_t nr,
                         __nv_bfloat16 *ws)
{
    g4q_ctx *ctx = be->ctx;
    cudaStream_t st = g4q_cuda_st(be)->stream;
    const qlayout L = ql_make(w->format, w->rows, w->cols, w->group);
    const int tensor = w->qtensor > 0.0f;
    const void *d = w->data, *sc = w->qscale;
    if (L.cols % 16 == 0) {
        const size_t n = (size_t)nr * (size_t)(L.cols / 16);
        const unsigned b = g4q_cuda_blocks(n, 256);
        uint4 *o = reinterpret_cast<uint4 *>(ws);
        if (w->format == G4Q_WF_NVFP4)
            qslice16_kernel<G4Q_WF_NVFP4><<<b, 256, 0, st>>>(L, d, sc, tensor, r0, n, o);
        else if (w->format == G4Q_WF_FP8_BLOCK)
            qslice16_kernel<G4Q_WF_FP8_BLOCK><<<b, 256, 0, st>>>(L, d, sc, tensor, r0, n, o);
        else
            qslice16_kernel<G4Q_WF_INT4><<<b, 256, 0, st>>>(L, d, sc, tensor, r0, n, o);
    } else {
        const size_t n = (size_t)nr * (size_t)L.cols;
        const unsigned b = g4q_cuda_blocks(n, 256);
        if (w->format == G4Q_WF_NVFP4)
            qslice_kernel<G4Q_WF_NVFP4><<<b, 256, 0, st>>>(L, d, sc, tensor, r0, n, ws);
        else if (w->format == G4Q_WF_FP8_BLOCK)
            qslice_kernel<G4Q_WF_FP8_BLOCK><<<b, 256, 0, st>>>(L, d, sc, tensor, r0, n, ws);
        else
            qslice_kernel<G4Q_WF_INT4><<<b, 256, 0, st>>>(L, d, sc, tensor, r0, n, ws);
    }
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

/* Q(x) of src/quant/actq.h without its alpha, one thread per unit of a row. */
static __global__ void actq_kernel(const __nv_bfloat16 *x, __nv_bfloat16 *xq, int64_t rows,
                                   int64_t cols, g4q_actq mode, float s)
{
    const int unit = g4q_actq_unit(mode);
    const int64_t per_row = (cols + unit - 1) / unit;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * per_row) return;
    const int64_t c0 = (i % per_row) * unit, off = (i / per_row) * cols + c0;
    const int n = (int)(cols - c0 < unit ? cols - c0 : unit);
    float v[G4Q_ACTQ_FP8_GROUP_SIZE];
    for (int j = 0; j < n; j++)
        v[j] = __bfloat162float(x[off + j]);
    g4q_actq_unit_apply(mode, s, v, n);
    for (int j = 0; j < n; j++)
        xq[off + j] = __float2bfloat16_rn(v[j]);
}

/* The factor every element of the slice shares (file comment). */
static float qslice_alpha(const g4q_bweight *w)
{
    if (w->format == G4Q_WF_NVFP4) return (w->qmode & QG_DIV) ? 1.0f / w->qg : w->qg;
    if (w->format == G4Q_WF_FP8_BLOCK && w->qtensor > 0.0f) return w->qtensor;
    return 1.0f;
}

static g4q_status qgemm(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w, int n)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    const int64_t out = w->rows, in = w->cols;
    if (out > INT32_MAX || in > INT32_MAX)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "cuda matmul: weight '%s' too large for cuBLAS",
                        w->name);
    /* Whole multiples of QG_SLICE_ROWS rows, so that each slice's output columns start 16-byte
     * aligned (cuBLAS falls back to slow kernels otherwise). */
    int64_t slice = w->format == G4Q_WF_BF16 ? out : (int64_t)(QG_SLICE_ELEMS / (size_t)in);
    slice = slice / QG_SLICE_ROWS * QG_SLICE_ROWS;
    if (slice < QG_SLICE_ROWS) slice = QG_SLICE_ROWS;
    if (slice > out) slice = out;
    const size_t nx = (size_t)n * (size_t)in;
    const size_t xq_b = w->act != G4Q_ACTQ_NONE ? QG_ALIGN(nx * 2) : 0;
    const size_t ws_b = w->format != G4Q_WF_BF16 ? QG_ALIGN((size_t)slice * (size_t)in * 2) : 0;
    void *scr = NULL;
    if (xq_b + ws_b) G4Q_TRY(g4q_cuda_scratch(be, xq_b + ws_b, &scr));
    const void *xin = x->data;
    if (w->act != G4Q_ACTQ_NONE) {
        const int64_t units = (int64_t)n * ((in + g4q_actq_unit(w->act) - 1) / g4q_actq_unit(w->act));
        actq_kernel<<<g4q_cuda_blocks((size_t)units, 128), 128, 0, s->stream>>>(
            (const __nv_bfloat16 *)x->data, (__nv_bfloat16 *)scr, n, in, w->act, w->act_scale);
        G4Q_CUDA_CHECK(cudaGetLastError());
        xin = scr;
    }
    __nv_bfloat16 *ws = (__nv_bfloat16 *)((char *)scr + xq_b);
    const float alpha = qslice_alpha(w) * g4q_actq_alpha(w->act, w->act_scale), beta = 0.0f;
    for (int64_t r0 = 0; r0 < out; r0 += slice) {
        const int64_t nr = out - r0 < slice ? out - r0 : slice;
        const void *wsl = (const char *)w->data + (size_t)r0 * (size_t)in * 2; /* BF16 rows */
        if (w->format != G4Q_WF_BF16) {
            G4Q_TRY(qslice(be, w, r0, nr, ws));
            wsl = ws;
        }
        /* Column-major view: Yᵀ[r0 .. r0+nr, n] (ldc = out) = (slice as [in, nr])ᵀ · Xᵀ[in, n]. */
        G4Q_CUBLAS_CHECK(cublasGemmEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, (int)in,
                                      &alpha, wsl, CUDA_R_16BF, (int)in, xin, CUDA_R_16BF, (int)in,
                                      &beta, (__nv_bfloat16 *)y->data + r0, CUDA_R_16BF, (int)out,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return G4Q_OK;
}

g4q_status g4q_cuda_qmatmul(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                            int n)
{
    g4q_ctx *ctx = be->ctx;
    if (x->dtype != G4Q_DT_BF16 || y->dtype != G4Q_DT_BF16)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "cuda matmul: weight '%s': %s weights need bf16 activations", w->name,
                        g4q_wformat_name(w->format));
    if (n == 0) return G4Q_OK;
    if (g4q_cuda_qgemv_ok(w, n)) return g4q_cuda_qgemv(be, y, x, w, n); /* cuda_qgemv.cu */
    return qgemm(be, y, x, w, n);
}

/* ---- binding: host bytes -> a device temporary -> the device layout ---- */

static g4q_status qbad(g4q_backend *be, const g4q_weight_desc *d, const char *why)
{
    return g4q_fail(be->ctx, G4Q_ERR_INVALID, "cuda backend: weight '%s' (%s [%lld, %lld]): %s",
                    d->name ? d->name : "(unnamed)", g4q_wformat_name(d->format),
                    (long long)d->rows, (long long)d->cols, why);
}

static float host_f32(const void *p, size_t i)
{
    float v;
    memcpy(&v, (const unsigned char *)p + 4 * i, 4);
    return v;
}

/* INT4 scale i of the host array, widened exactly to fp32. */
static float host_int4_scale(const g4q_weight_desc *d, size_t i)
{
    uint16_t h;
    switch (d->scale_dtype) {
    case G4Q_DT_F16:
        memcpy(&h, (const unsigned char *)d->scale + 2 * i, 2);
        return g4q_f16_to_f32(h);
    case G4Q_DT_BF16:
        memcpy(&h, (const unsigned char *)d->scale + 2 * i, 2);
        return g4q_bf16_to_f32(h);
    default:
        return host_f32(d->scale, i);
    }
}

/* Re-layout kernels: one thread per item of the ql_relayout_* functions (cuda_qlayout.h); NaN
 * codes or scales are reported in *nan. */
static __global__ void relayout_nvfp4_kernel(const qlayout L, const ql_code k, const uint8_t *src,
                                             const uint8_t *ssrc, uint32_t *dst, uint8_t *sdst,
                                             int *nan)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= L.nrt * QL_TILE * L.nsb * 4) return;
    if (ql_relayout_nvfp4(L, k, src, ssrc, dst, sdst, i)) atomicOr(nan, 1);
}

static __global__ void relayout_fp8_kernel(const qlayout L, const ql_code k, const uint8_t *src,
                                           uint32_t *dst, int *nan)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= L.nrt * L.nsb * 128) return;
    if (ql_relayout_fp8(L, k, src, dst, i)) atomicOr(nan, 1);
}

static __global__ void relayout_int4_kernel(const qlayout L, int gptq, const uint32_t *src,
                                            uint32_t *dst)
{
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= L.nrt * L.nsb * 128) return;
    ql_relayout_int4(L, gptq, src, dst, i);
}

/* Uploads host bytes (any alignment) into a new device allocation. */
static g4q_status upload_new(g4q_backend *be, const void *src, size_t bytes, const char *name,
                             void **out)
{
    G4Q_TRY(g4q_cuda_alloc(be, bytes, name, out));
    return g4q_cuda_upload_bytes(be, *out, src, bytes, name);
}

/* Runs `launch` (a re-layout on the backend's stream, given a zeroed device flag), waits for it
 * and returns the flag (any NaN code seen). */
template <typename F>
static g4q_status relayout_run(g4q_backend *be, const char *name, F launch, int *nan)
{
    g4q_ctx *ctx = be->ctx;
    cudaStream_t st = g4q_cuda_st(be)->stream;
    int *flag = NULL;
    G4Q_TRY(g4q_cuda_alloc(be, sizeof(int), name, (void **)&flag));
    cudaError_t e = cudaMemsetAsync(flag, 0, sizeof(int), st);
    if (e == cudaSuccess) {
        launch(st, flag);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpyAsync(nan, flag, sizeof(int), cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    g4q_cuda_release(be, flag, sizeof(int));
    if (e != cudaSuccess)
        return g4q_fail(ctx, G4Q_ERR_CUDA, "cuda backend: weight '%s': re-layout: %s", name,
                        cudaGetErrorString(e));
    return G4Q_OK;
}

static g4q_status code_make(g4q_backend *be, int np, ql_code *k)
{
    if (!ql_code_make(np, k))
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cuda backend: singular weight code");
    return G4Q_OK;
}

static g4q_status bind_nvfp4(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight *w,
                             const qlayout &L)
{
    if (d->cols % G4Q_NVFP4_BLOCK) return qbad(be, d, "in features not a multiple of 16");
    if (!d->scale || !d->scale2) return qbad(be, d, "block scales or global scale missing");
    if (d->flags & ~G4Q_WD_GLOBAL_RECIPROCAL) return qbad(be, d, "unknown flags");
    const float g = host_f32(d->scale2, 0);
    if (!std::isfinite(g) || !(g > 0.0f)) return qbad(be, d, "global scale not finite and > 0");
    w->qg = g;
    w->qmode = QG_MUL;
    if (d->flags & G4Q_WD_GLOBAL_RECIPROCAL) w->qmode = QG_DIV, w->qr = 1.0f / g;
    ql_code k;
    G4Q_TRY(code_make(be, 4, &k));
    const size_t nc = (size_t)d->rows * (size_t)(d->cols / 2), ns = nc / 8;
    w->bytes = L.code_bytes;
    w->qscale_bytes = L.scale_bytes;
    G4Q_TRY(g4q_cuda_alloc(be, w->bytes, w->name, (void **)&w->data));
    G4Q_TRY(g4q_cuda_alloc(be, w->qscale_bytes, w->name, &w->qscale));
    void *tc = NULL, *ts = NULL;
    g4q_status st = upload_new(be, d->data, nc, w->name, &tc);
    if (st == G4Q_OK) st = upload_new(be, d->scale, ns, w->name, &ts);
    int nan = 0;
    if (st == G4Q_OK)
        st = relayout_run(be, w->name, [&](cudaStream_t s, int *flag) {
            const size_t n = (size_t)L.nrt * QL_TILE * (size_t)L.nsb * 4;
            relayout_nvfp4_kernel<<<g4q_cuda_blocks(n, 256), 256, 0, s>>>(
                L, k, (const uint8_t *)tc, (const uint8_t *)ts, (uint32_t *)w->data,
                (uint8_t *)w->qscale, flag);
        }, &nan);
    g4q_cuda_release(be, tc, tc ? nc : 0);
    g4q_cuda_release(be, ts, ts ? ns : 0);
    if (nan) w->qmode |= QG_NOGEMV;
    return st;
}

static g4q_status bind_fp8(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight *w,
                           const qlayout &L)
{
    g4q_ctx *ctx = be->ctx;
    if (!d->scale) return qbad(be, d, "scales missing");
    if (d->flags & ~G4Q_WD_FP8_PER_TENSOR) return qbad(be, d, "unknown flags");
    const size_t nbr = (size_t)((d->rows + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK);
    const size_t nbc = (size_t)((d->cols + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK);
    float *sc = (float *)malloc(nbr * nbc * sizeof(float));
    if (!sc) return g4q_fail(ctx, G4Q_ERR_NOMEM, "cuda backend: weight '%s': scales", w->name);
    for (size_t i = 0; i < nbr * nbc; i++)
        sc[i] = host_f32(d->scale, (d->flags & G4Q_WD_FP8_PER_TENSOR) ? 0 : i);
    w->qscale_bytes = nbr * nbc * sizeof(float);
    if (d->flags & G4Q_WD_FP8_PER_TENSOR) w->qtensor = sc[0];
    g4q_status st = upload_new(be, sc, w->qscale_bytes, w->name, &w->qscale);
    free(sc);
    G4Q_TRY(st);
    ql_code k;
    G4Q_TRY(code_make(be, 2, &k));
    const size_t nc = (size_t)d->rows * (size_t)d->cols;
    w->bytes = L.code_bytes;
    G4Q_TRY(g4q_cuda_alloc(be, w->bytes, w->name, (void **)&w->data));
    void *tc = NULL;
    st = upload_new(be, d->data, nc, w->name, &tc);
    int nan = 0;
    if (st == G4Q_OK)
        st = relayout_run(be, w->name, [&](cudaStream_t s, int *flag) {
            const size_t n = L.code_bytes / 4;
            relayout_fp8_kernel<<<g4q_cuda_blocks(n, 256), 256, 0, s>>>(
                L, k, (const uint8_t *)tc, (uint32_t *)w->data, flag);
        }, &nan);
    g4q_cuda_release(be, tc, tc ? nc : 0);
    if (nan) w->qmode |= QG_NOGEMV;
    return st;
}

static g4q_status bind_int4(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight *w)
{
    g4q_ctx *ctx = be->ctx;
    if (!d->scale) return qbad(be, d, "scales missing");
    if (d->flags & ~G4Q_WD_INT4_GPTQ) return qbad(be, d, "unknown flags");
    if (d->group <= 0 || d->group % G4Q_INT4_PER_I32 || d->cols % d->group)
        return qbad(be, d, "group must be a positive multiple of 8 dividing in features");
    if (d->scale_dtype != G4Q_DT_F16 && d->scale_dtype != G4Q_DT_BF16 &&
        d->scale_dtype != G4Q_DT_F32)
        return qbad(be, d, "scale_dtype must be F16, BF16 or F32");
    const int gptq = (d->flags & G4Q_WD_INT4_GPTQ) != 0;
    const qlayout L = ql_make(G4Q_WF_INT4, d->rows, d->cols, d->group);
    const size_t rows = (size_t)d->rows, ng = (size_t)(d->cols / d->group);
    w->group = d->group;
    float *sc = (float *)calloc(L.scale_bytes / sizeof(float), sizeof(float));
    if (!sc) return g4q_fail(ctx, G4Q_ERR_NOMEM, "cuda backend: weight '%s': scales", w->name);
    for (size_t r = 0; r < rows; r++)
        for (size_t g = 0; g < ng; g++)
            sc[ql_int4_scale_at(L, (int64_t)r, (int64_t)g)] =
                host_int4_scale(d, gptq ? g * rows + r : r * ng + g);
    w->qscale_bytes = L.scale_bytes;
    g4q_status st = upload_new(be, sc, w->qscale_bytes, w->name, &w->qscale);
    free(sc);
    G4Q_TRY(st);
    const size_t nc = rows * (size_t)(d->cols / G4Q_INT4_PER_I32) * sizeof(uint32_t);
    w->bytes = L.code_bytes;
    G4Q_TRY(g4q_cuda_alloc(be, w->bytes, w->name, (void **)&w->data));
    void *tc = NULL;
    st = upload_new(be, d->data, nc, w->name, &tc);
    int nan = 0;
    if (st == G4Q_OK)
        st = relayout_run(be, w->name, [&](cudaStream_t s, int *) {
            const size_t n = L.code_bytes / 4;
            relayout_int4_kernel<<<g4q_cuda_blocks(n, 256), 256, 0, s>>>(
                L, gptq, (const uint32_t *)tc, (uint32_t *)w->data);
        }, &nan);
    g4q_cuda_release(be, tc, tc ? nc : 0);
    return st;
}

g4q_status g4q_cuda_qweight_bind(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight **out)
{
    g4q_ctx *ctx = be->ctx;
    *out = NULL;
    const char *name = d->name ? d->name : "(unnamed)";
    if (d->format != G4Q_WF_NVFP4 && d->format != G4Q_WF_FP8_BLOCK && d->format != G4Q_WF_INT4)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "cuda backend: weight '%s': format %s", name,
                        g4q_wformat_name(d->format));
    if (be->act_dtype != G4Q_DT_BF16)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "cuda backend: weight '%s': %s weights need the bf16 mode", name,
                        g4q_wformat_name(d->format));
    g4q_bweight *w;
    G4Q_TRY(g4q_cuda_weight_new(be, d, &w));
    const qlayout L = ql_make(d->format, d->rows, d->cols, 0);
    g4q_status st = d->format == G4Q_WF_NVFP4       ? bind_nvfp4(be, d, w, L)
                    : d->format == G4Q_WF_FP8_BLOCK ? bind_fp8(be, d, w, L)
                                                    : bind_int4(be, d, w);
    if (st != G4Q_OK) {
        g4q_cuda_qweight_release(be, w);
        free(w);
        return st;
    }
    *out = w;
    return G4Q_OK;
}

void g4q_cuda_qweight_release(g4q_backend *be, g4q_bweight *w)
{
    g4q_cuda_release(be, w->data, w->data ? w->bytes : 0);
    g4q_cuda_release(be, w->qscale, w->qscale_bytes);
    w->data = NULL;
    w->qscale = NULL;
}
