// CUDA packed-weight GEMM: y[n, rows] = x[n, cols] · Wᵀ with W in one of the packed formats of
// backend.h (NVFP4 ModelOpt / compressed-tensors, FP8 128x128 blocks / per tensor, INT4
// compressed-tensors / GPTQ), x and y bf16, fp32 accumulation, one bf16 rounding per output.
//
// Every weight is decoded in registers into the fp32 value of g4q_wformat, bit-identical to the
// CPU backend and the src/quant decoders, so only the accumulation order differs:
//   NVFP4   t = E2M1 · E4M3 (exact), w = fl32(t · scale2) or fl32(t ÷ global)
//   FP8     w = fl32(E4M3 · scale[r/128, c/128])
//   INT4    w = fl32((q − 8) · scale[r, c/group])
//
// Device layout (weight_bind, g4q_cuda_qweight_bind):
//   NVFP4   data u8 [rows, cols/2] and scale E4M3 u8 [rows, cols/16] as in host memory.
//   FP8     data E4M3 [rows, cols]; scale fp32 [ceil(rows/128), ceil(cols/128)] (a per-tensor
//           scale is expanded to that grid, so both forms run the same kernels).
//   INT4    data u32 [rows, cols/8] (GPTQ's [cols/8, rows] is transposed on the device at bind
//           time, through a temporary of that one weight); scale fp32 [rows, cols/group]
//           (F16 / BF16 scales are widened exactly on the host).
// Nothing is ever expanded to a full-size copy of the weight.
//
// Decode (n <= QG_MAX_N, cols % 16 == 0): one warp per output row, each lane decoding chunks of 16
// weights (8 bytes of NVFP4 / INT4 codes, 16 of FP8) straight from global memory, QG_UNROLL chunks
// in flight. Element decoding uses exact bit tricks instead of tables:
//   E2M1 nibble -> half: bits (e1 e0 m) at half bits 11..9 and the sign at bit 15 give the value
//     · 2^-14 exactly (0.5 becomes a half subnormal), so t = half · (E4M3(scale) · 2^14), exact.
//   INT4 nibble -> half 1024 + nibble, minus 1032 in half arithmetic: q exactly.
//   E4M3 -> half: the sm_89+ conversion instruction (exact, NaN kept).
// The compressed-tensors division fl32(t ÷ global) is evaluated as a reciprocal multiply with one
// Markstein correction (q0 = t·r, e = t − q0·g, q = q0 + e·r with r = fl32(1/g)) when bind time
// has checked, for every one of the 2040 possible finite t, that this gives the same bits as the
// division; otherwise the kernel divides (__fdiv_rn).
//
// Prefill (larger n, other shapes, or any weight with an activation quantization): tensor cores.
// The weight is widened QG_SLICE_ELEMS elements' worth of rows (whole multiples of 256; one slice
// for every Linear of the 12B) at a time into a bf16 slice of the
// backend scratch, and cuBLAS (bf16 inputs, CUBLAS_COMPUTE_32F) writes that slice's columns of the
// bf16 [n, rows] result, with the factor every element shares in its alpha:
//   NVFP4   slice E2M1 · E4M3 (exact in bf16); alpha scale2 (compressed-tensors: fl32(1/global))
//   FP8     per tensor: slice E4M3 (exact), alpha the scale; blocks: bf16(E4M3 · scale)
//   INT4    bf16(q · scale)                     (the rounding Marlin-class kernels make too)
//   BF16    the weight itself (only reached with an activation quantization)
// With an activation quantization, Q(x) of src/quant/actq.h is first written to a bf16 scratch
// (one thread per block / group / value; exact for NVFP4 and FP8 per tensor) and alpha takes its
// factor too, so NVFP4 W4A4 runs as the engine's E2M1 · E4M3 products with alpha = input_scale ·
// scale2. The decode GEMVs above stay exact fp32 decoders.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_internal.h"
#include "quant/actq.h"
#include "quant/codecs.h"

#define QG_MAX_N 4
#define QG_WARPS 8
#define QG_UNROLL 4
#define QG_CHUNK 16                           /* weights per lane step */
#define QG_SLICE_ELEMS ((size_t)64 << 20)     /* prefill: bf16 weight slice, 128 MB at most */
#define QG_SLICE_ROWS 256                     /* slices are whole multiples of this many rows */
#define QG_ALIGN(b) (((b) + 255) / 256 * 256) /* scratch partition alignment */

/* NVFP4 division modes (g4q_bweight.qmode). */
enum { QG_MUL = 0, QG_MARKSTEIN = 1, QG_DIV = 2 };

struct qgemv_args {
    const void *data;  /* packed codes, device layout above */
    const void *scale; /* device scales */
    const uint4 *x;    /* bf16 [n, cols] */
    __nv_bfloat16 *y;  /* bf16 [n, rows] */
    int64_t rows;
    int chunks; /* cols / 16 */
    int nsc;    /* FP8: scale columns ceil(cols/128); INT4: groups per row */
    int group;  /* INT4 */
    float g, r; /* NVFP4: scale2 (the stored value) and fl32(1/scale2) */
};

/* Raw bytes of one chunk: codes and the scales it needs. */
struct qraw {
    uint4 q;
    float s0, s1;
};

static __device__ __forceinline__ float2 half2_bits_to_float2(uint32_t b)
{
    __half2_raw r;
    r.x = (unsigned short)(b & 0xffffu);
    r.y = (unsigned short)(b >> 16);
    return __half22float2(__half2(r));
}

template <int MODE> static __device__ __forceinline__ float nvfp4_global(float t, float g, float r)
{
    if (MODE == QG_MUL) return __fmul_rn(t, g);
    if (MODE == QG_MARKSTEIN) {
        const float q0 = __fmul_rn(t, r);
        const float e = __fmaf_rn(-q0, g, t);
        return __fmaf_rn(e, r, q0);
    }
    return __fdiv_rn(t, g);
}

/* Eight E2M1 nibbles (element k in bits 4k..4k+3) times s14 = E4M3(scale)·2^14, then the global
 * scale. Elements k and k+4 travel as one half2. */
template <int MODE>
static __device__ __forceinline__ void nvfp4_word(uint32_t wd, float s14, float g, float r,
                                                  float *o)
{
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const uint32_t v = wd >> (4 * k);
        const uint32_t hb = ((v & 0x00070007u) << 9) | ((v & 0x00080008u) << 12);
        const float2 f = half2_bits_to_float2(hb);
        o[k] = nvfp4_global<MODE>(__fmul_rn(f.x, s14), g, r);
        o[k + 4] = nvfp4_global<MODE>(__fmul_rn(f.y, s14), g, r);
    }
}

/* Eight INT4 nibbles (q + 8, element k in bits 4k..4k+3) times the group scale. */
static __device__ __forceinline__ void int4_word(uint32_t wd, float s, float *o)
{
    const __half2 off = __float2half2_rn(1032.0f);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const uint32_t hb = ((wd >> (4 * k)) & 0x000F000Fu) | 0x64006400u;
        __half2_raw raw;
        raw.x = (unsigned short)(hb & 0xffffu);
        raw.y = (unsigned short)(hb >> 16);
        const float2 f = __half22float2(__hsub2(__half2(raw), off));
        o[k] = __fmul_rn(f.x, s);
        o[k + 4] = __fmul_rn(f.y, s);
    }
}

/* Four E4M3 bytes (element k in byte k) times the block scale. */
static __device__ __forceinline__ void fp8_word(uint32_t wd, float s, float *o)
{
    const __half2_raw lo =
        __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(wd & 0xffffu), __NV_E4M3);
    const __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(wd >> 16), __NV_E4M3);
    const float2 a = __half22float2(__half2(lo)), b = __half22float2(__half2(hi));
    o[0] = __fmul_rn(a.x, s);
    o[1] = __fmul_rn(a.y, s);
    o[2] = __fmul_rn(b.x, s);
    o[3] = __fmul_rn(b.y, s);
}

template <int FMT>
static __device__ __forceinline__ qraw qload(const qgemv_args &a, int64_t row, int c)
{
    qraw raw;
    const int64_t i = row * a.chunks + c;
    if (FMT == G4Q_WF_NVFP4) {
        const uint2 q = __ldcs(reinterpret_cast<const uint2 *>(a.data) + i);
        raw.q = make_uint4(q.x, q.y, 0, 0);
        raw.s0 = g4q_e4m3_decode(__ldcs(reinterpret_cast<const uint8_t *>(a.scale) + i));
        raw.s1 = 0.0f;
    } else if (FMT == G4Q_WF_FP8_BLOCK) {
        raw.q = __ldcs(reinterpret_cast<const uint4 *>(a.data) + i);
        raw.s0 = __ldg(reinterpret_cast<const float *>(a.scale) + (row >> 7) * a.nsc + (c >> 3));
        raw.s1 = 0.0f;
    } else {
        const uint2 q = __ldcs(reinterpret_cast<const uint2 *>(a.data) + i);
        raw.q = make_uint4(q.x, q.y, 0, 0);
        const float *sr = reinterpret_cast<const float *>(a.scale) + row * a.nsc;
        raw.s0 = __ldg(sr + (QG_CHUNK * c) / a.group);
        raw.s1 = __ldg(sr + (QG_CHUNK * c + 8) / a.group);
    }
    return raw;
}

template <int FMT, int MODE>
static __device__ __forceinline__ void qdecode(const qraw &raw, const qgemv_args &a, float w[16])
{
    if (FMT == G4Q_WF_NVFP4) {
        const float s14 = __fmul_rn(raw.s0, 16384.0f); /* exact: a power-of-two scaling */
        nvfp4_word<MODE>(raw.q.x, s14, a.g, a.r, w);
        nvfp4_word<MODE>(raw.q.y, s14, a.g, a.r, w + 8);
    } else if (FMT == G4Q_WF_FP8_BLOCK) {
        fp8_word(raw.q.x, raw.s0, w);
        fp8_word(raw.q.y, raw.s0, w + 4);
        fp8_word(raw.q.z, raw.s0, w + 8);
        fp8_word(raw.q.w, raw.s0, w + 12);
    } else {
        int4_word(raw.q.x, raw.s0, w);
        int4_word(raw.q.y, raw.s1, w + 8);
    }
}

/* acc += Σ w[j] · x[j] over one chunk, x as two uint4 of bf16. */
static __device__ __forceinline__ float qdot16(const float w[16], uint4 x0, uint4 x1, float acc)
{
    const uint32_t xs[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
#pragma unroll
    for (int i = 0; i < 8; i++) {
        acc = __fmaf_rn(w[2 * i], __uint_as_float(xs[i] << 16), acc);
        acc = __fmaf_rn(w[2 * i + 1], __uint_as_float(xs[i] & 0xffff0000u), acc);
    }
    return acc;
}

template <int FMT, int N, int MODE>
static __global__ void __launch_bounds__(QG_WARPS * 32) qgemv_kernel(const qgemv_args a)
{
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * QG_WARPS + (threadIdx.x >> 5);
    if (row >= a.rows) return;
    const int chunks = a.chunks;
    float acc[N];
#pragma unroll
    for (int t = 0; t < N; t++)
        acc[t] = 0.0f;
    qraw raw[QG_UNROLL];
    auto load = [&](int c0) {
#pragma unroll
        for (int u = 0; u < QG_UNROLL; u++) {
            const int c = c0 + 32 * u;
            if (c < chunks) raw[u] = qload<FMT>(a, row, c);
        }
    };
    load(lane); /* weights only: before the wait for the kernel that writes x (PDL) */
    g4q_pdl_wait();
    for (int c0 = lane; c0 < chunks; c0 += 32 * QG_UNROLL) {
        if (c0 != lane) load(c0);
#pragma unroll
        for (int u = 0; u < QG_UNROLL; u++) {
            const int c = c0 + 32 * u;
            if (c >= chunks) break;
            float w[16];
            qdecode<FMT, MODE>(raw[u], a, w);
#pragma unroll
            for (int t = 0; t < N; t++) {
                const uint4 *xp = a.x + ((int64_t)t * chunks + c) * 2;
                acc[t] = qdot16(w, __ldg(xp), __ldg(xp + 1), acc[t]);
            }
        }
    }
    g4q_pdl_trigger();
#pragma unroll
    for (int t = 0; t < N; t++) {
        float v = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) a.y[(int64_t)t * a.rows + row] = __float2bfloat16_rn(v);
    }
}

/* Launched with programmatic dependent launch (cuda_internal.h): each warp loads its first
 * weight chunks before it waits for the kernel that writes x. */
template <int FMT, int MODE>
static cudaError_t qgemv_launch_n(g4q_backend *be, const qgemv_args &a, int n, unsigned blocks)
{
    void (*kernel)(const qgemv_args) = n == 1   ? qgemv_kernel<FMT, 1, MODE>
                                       : n == 2 ? qgemv_kernel<FMT, 2, MODE>
                                       : n == 3 ? qgemv_kernel<FMT, 3, MODE>
                                                : qgemv_kernel<FMT, 4, MODE>;
    return g4q_cuda_launch(be, kernel, dim3(blocks), dim3(QG_WARPS * 32), 0, a);
}

static g4q_status qgemv(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w, int n)
{
    g4q_ctx *ctx = be->ctx;
    qgemv_args a = {};
    a.data = w->data;
    a.scale = w->qscale;
    a.x = (const uint4 *)x->data;
    a.y = (__nv_bfloat16 *)y->data;
    a.rows = w->rows;
    a.chunks = (int)(w->cols / QG_CHUNK);
    a.group = w->group;
    a.nsc = (int)(w->format == G4Q_WF_FP8_BLOCK ? (w->cols + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK
                                                : (w->group ? w->cols / w->group : 0));
    a.g = w->qg;
    a.r = w->qr;
    const unsigned blocks = g4q_cuda_blocks((size_t)w->rows, QG_WARPS);
    cudaError_t e;
    if (w->format == G4Q_WF_NVFP4)
        e = w->qmode == QG_MUL ? qgemv_launch_n<G4Q_WF_NVFP4, QG_MUL>(be, a, n, blocks)
            : w->qmode == QG_MARKSTEIN
                ? qgemv_launch_n<G4Q_WF_NVFP4, QG_MARKSTEIN>(be, a, n, blocks)
                : qgemv_launch_n<G4Q_WF_NVFP4, QG_DIV>(be, a, n, blocks);
    else if (w->format == G4Q_WF_FP8_BLOCK)
        e = qgemv_launch_n<G4Q_WF_FP8_BLOCK, QG_MUL>(be, a, n, blocks);
    else
        e = qgemv_launch_n<G4Q_WF_INT4, QG_MUL>(be, a, n, blocks);
    G4Q_CUDA_CHECK(e);
    return G4Q_OK;
}

/* ---- prefill: widen a slice of rows to bf16, tensor-core GEMM ---- */

/* One weight value as the slice holds it (see the file comment: the shared factor is left out). */
template <int FMT>
static __device__ __forceinline__ float qslice_value(const qgemv_args &a, int64_t cols, int tensor,
                                                     int64_t r, int64_t c)
{
    if (FMT == G4Q_WF_NVFP4) {
        const uint8_t b = reinterpret_cast<const uint8_t *>(a.data)[r * (cols / 2) + c / 2];
        const uint8_t sb = reinterpret_cast<const uint8_t *>(
            a.scale)[r * (cols / G4Q_NVFP4_BLOCK) + c / G4Q_NVFP4_BLOCK];
        return G4Q_FMUL(g4q_e2m1_decode((uint8_t)((c & 1) ? b >> 4 : b & 15u)),
                        g4q_e4m3_decode(sb));
    } else if (FMT == G4Q_WF_FP8_BLOCK) {
        const float q = g4q_e4m3_decode(reinterpret_cast<const uint8_t *>(a.data)[r * cols + c]);
        if (tensor) return q;
        return G4Q_FMUL(
            q, reinterpret_cast<const float *>(a.scale)[(r / G4Q_FP8_BLOCK) * a.nsc + c / G4Q_FP8_BLOCK]);
    } else if (FMT == G4Q_WF_INT4) {
        const uint32_t wd =
            reinterpret_cast<const uint32_t *>(a.data)[r * (cols / G4Q_INT4_PER_I32) + c / 8];
        const int q = (int)((wd >> (4 * (c & 7))) & 15u) - 8;
        return G4Q_FMUL((float)q, reinterpret_cast<const float *>(a.scale)[r * a.nsc + c / a.group]);
    }
    return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(a.data)[r * cols + c]);
}

template <int FMT>
static __global__ void qslice_kernel(const qgemv_args a, int64_t cols, int tensor, int64_t r0,
                                     size_t count, __nv_bfloat16 *out)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const int64_t r = r0 + (int64_t)(i / (size_t)cols), c = (int64_t)(i % (size_t)cols);
    out[i] = __float2bfloat16_rn(qslice_value<FMT>(a, cols, tensor, r, c));
}

/* The same slice when cols % 16 == 0, one thread per chunk of 16 weights through the GEMV's
 * decoders (a.g = 1 leaves NVFP4's t = E2M1 · E4M3 as it is; `tensor` sets an FP8 per-tensor
 * scale to 1), written as two 16-byte stores. Bit-identical to qslice_kernel. */
template <int FMT>
static __global__ void qslice16_kernel(const qgemv_args a, int tensor, int64_t r0, size_t nchunks,
                                       uint4 *out)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nchunks) return;
    const int64_t row = r0 + (int64_t)(i / (size_t)a.chunks);
    qraw raw = qload<FMT>(a, row, (int)(i % (size_t)a.chunks));
    if (tensor) raw.s0 = 1.0f;
    float w[16];
    qdecode<FMT, QG_MUL>(raw, a, w);
    uint32_t p[8];
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(w[2 * k], w[2 * k + 1]);
        p[k] = *reinterpret_cast<const uint32_t *>(&h);
    }
    out[2 * i] = make_uint4(p[0], p[1], p[2], p[3]);
    out[2 * i + 1] = make_uint4(p[4], p[5], p[6], p[7]);
}

/* Widens rows [r0, r0 + nr) of packed weight w into the bf16 slice ws [nr, in]. */
static g4q_status qslice(g4q_backend *be, const g4q_bweight *w, const qgemv_args &a, int64_t r0,
                         int64_t nr, __nv_bfloat16 *ws)
{
    g4q_ctx *ctx = be->ctx;
    cudaStream_t st = g4q_cuda_st(be)->stream;
    const int64_t in = w->cols;
    const int tensor = w->qtensor > 0.0f;
    if (in % QG_CHUNK == 0) {
        const size_t n = (size_t)nr * (size_t)(in / QG_CHUNK);
        const unsigned b = g4q_cuda_blocks(n, 256);
        uint4 *o = reinterpret_cast<uint4 *>(ws);
        if (w->format == G4Q_WF_NVFP4)
            qslice16_kernel<G4Q_WF_NVFP4><<<b, 256, 0, st>>>(a, tensor, r0, n, o);
        else if (w->format == G4Q_WF_FP8_BLOCK)
            qslice16_kernel<G4Q_WF_FP8_BLOCK><<<b, 256, 0, st>>>(a, tensor, r0, n, o);
        else
            qslice16_kernel<G4Q_WF_INT4><<<b, 256, 0, st>>>(a, tensor, r0, n, o);
    } else {
        const size_t n = (size_t)nr * (size_t)in;
        const unsigned b = g4q_cuda_blocks(n, 256);
        if (w->format == G4Q_WF_NVFP4)
            qslice_kernel<G4Q_WF_NVFP4><<<b, 256, 0, st>>>(a, in, tensor, r0, n, ws);
        else if (w->format == G4Q_WF_FP8_BLOCK)
            qslice_kernel<G4Q_WF_FP8_BLOCK><<<b, 256, 0, st>>>(a, in, tensor, r0, n, ws);
        else
            qslice_kernel<G4Q_WF_INT4><<<b, 256, 0, st>>>(a, in, tensor, r0, n, ws);
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
    if (w->format == G4Q_WF_NVFP4) return w->qmode == QG_MUL ? w->qg : 1.0f / w->qg;
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
    qgemv_args a = {};
    a.data = w->data;
    a.scale = w->qscale;
    a.group = w->group;
    a.nsc = (int)(w->format == G4Q_WF_FP8_BLOCK ? (in + G4Q_FP8_BLOCK - 1) / G4Q_FP8_BLOCK
                                                : (w->group ? in / w->group : 0));
    a.chunks = (int)(in / QG_CHUNK);
    a.g = 1.0f; /* the slice leaves NVFP4's global factor to alpha */
    const float alpha = qslice_alpha(w) * g4q_actq_alpha(w->act, w->act_scale), beta = 0.0f;
    for (int64_t r0 = 0; r0 < out; r0 += slice) {
        const int64_t nr = out - r0 < slice ? out - r0 : slice;
        const void *wsl = (const char *)w->data + (size_t)r0 * (size_t)in * 2; /* BF16 rows */
        if (w->format != G4Q_WF_BF16) {
            G4Q_TRY(qslice(be, w, a, r0, nr, ws));
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
    if (w->format != G4Q_WF_BF16 && w->act == G4Q_ACTQ_NONE && n <= QG_MAX_N &&
        w->cols % QG_CHUNK == 0 && w->cols / QG_CHUNK <= INT32_MAX)
        return qgemv(be, y, x, w, n);
    return qgemm(be, y, x, w, n);
}

/* ---- binding ---- */

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

/* Chooses how the GEMV applies a compressed-tensors global scale g: the Markstein sequence of the
 * file comment when it reproduces fl32(t ÷ g) for every finite t = E2M1 · E4M3 (checked here on
 * the host with the same IEEE operations), else a division. */
static int nvfp4_recip_mode(float g, float *r)
{
    *r = 1.0f / g;
    for (int s = 0; s < 256; s++) {
        const float sv = g4q_e4m3_decode((uint8_t)s);
        if (sv != sv) continue; /* NaN scale codes give NaN either way */
        for (int m = 1; m < 8; m++) {
            const float t = g4q_e2m1_decode((uint8_t)m) * sv; /* exact */
            const float want = t / g;
            const float q0 = t * *r;
            const float e = fmaf(-q0, g, t);
            const float got = fmaf(e, *r, q0);
            /* ±0 compare equal: the sign of a zero weight never changes an fp32 sum that
             * starts at +0 */
            if (got != want) return QG_DIV;
        }
    }
    return QG_MARKSTEIN;
}

static __global__ void transpose_u32_kernel(const uint32_t *src, uint32_t *dst, int64_t nw,
                                            int64_t rows)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)nw * (size_t)rows) return;
    const int64_t k = (int64_t)(i / (size_t)rows), r = (int64_t)(i % (size_t)rows);
    dst[r * nw + k] = src[i];
}

/* Uploads host bytes (any alignment) into a new device allocation. */
static g4q_status upload_new(g4q_backend *be, const void *src, size_t bytes, const char *name,
                             void **out)
{
    G4Q_TRY(g4q_cuda_alloc(be, bytes, name, out));
    return g4q_cuda_upload_bytes(be, *out, src, bytes, name);
}

static g4q_status bind_nvfp4(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight *w)
{
    if (d->cols % G4Q_NVFP4_BLOCK) return qbad(be, d, "in features not a multiple of 16");
    if (!d->scale || !d->scale2) return qbad(be, d, "block scales or global scale missing");
    if (d->flags & ~G4Q_WD_GLOBAL_RECIPROCAL) return qbad(be, d, "unknown flags");
    const float g = host_f32(d->scale2, 0);
    if (!std::isfinite(g) || !(g > 0.0f)) return qbad(be, d, "global scale not finite and > 0");
    w->qg = g;
    w->qmode = QG_MUL;
    if (d->flags & G4Q_WD_GLOBAL_RECIPROCAL) w->qmode = nvfp4_recip_mode(g, &w->qr);
    w->bytes = (size_t)d->rows * (size_t)(d->cols / 2);
    w->qscale_bytes = (size_t)d->rows * (size_t)(d->cols / G4Q_NVFP4_BLOCK);
    G4Q_TRY(upload_new(be, d->data, w->bytes, w->name, (void **)&w->data));
    return upload_new(be, d->scale, w->qscale_bytes, w->name, &w->qscale);
}

static g4q_status bind_fp8(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight *w)
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
    w->bytes = (size_t)d->rows * (size_t)d->cols;
    w->qscale_bytes = nbr * nbc * sizeof(float);
    if (d->flags & G4Q_WD_FP8_PER_TENSOR) w->qtensor = sc[0];
    g4q_status st = upload_new(be, d->data, w->bytes, w->name, (void **)&w->data);
    if (st == G4Q_OK) st = upload_new(be, sc, w->qscale_bytes, w->name, &w->qscale);
    free(sc);
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
    const size_t rows = (size_t)d->rows, ng = (size_t)(d->cols / d->group);
    const size_t nw = (size_t)(d->cols / G4Q_INT4_PER_I32);
    w->group = d->group;
    float *sc = (float *)malloc(rows * ng * sizeof(float));
    if (!sc) return g4q_fail(ctx, G4Q_ERR_NOMEM, "cuda backend: weight '%s': scales", w->name);
    for (size_t r = 0; r < rows; r++)
        for (size_t g = 0; g < ng; g++)
            sc[r * ng + g] = host_int4_scale(d, gptq ? g * rows + r : r * ng + g);
    w->qscale_bytes = rows * ng * sizeof(float);
    g4q_status st = upload_new(be, sc, w->qscale_bytes, w->name, &w->qscale);
    free(sc);
    G4Q_TRY(st);
    w->bytes = rows * nw * sizeof(uint32_t);
    if (!gptq) return upload_new(be, d->data, w->bytes, w->name, (void **)&w->data);
    /* GPTQ [cols/8, rows] -> [rows, cols/8] through a temporary of this one weight. */
    void *tmp = NULL;
    G4Q_TRY(g4q_cuda_alloc(be, w->bytes, w->name, (void **)&w->data));
    st = upload_new(be, d->data, w->bytes, w->name, &tmp);
    if (st == G4Q_OK) {
        cudaStream_t s = g4q_cuda_st(be)->stream;
        transpose_u32_kernel<<<g4q_cuda_blocks(rows * nw, 256), 256, 0, s>>>(
            (const uint32_t *)tmp, (uint32_t *)w->data, (int64_t)nw, (int64_t)rows);
        cudaError_t e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaStreamSynchronize(s);
        if (e != cudaSuccess)
            st = g4q_fail(ctx, G4Q_ERR_CUDA, "cuda backend: weight '%s': GPTQ re-layout: %s",
                          w->name, cudaGetErrorString(e));
    }
    g4q_cuda_release(be, tmp, w->bytes);
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
    g4q_status st = d->format == G4Q_WF_NVFP4       ? bind_nvfp4(be, d, w)
                    : d->format == G4Q_WF_FP8_BLOCK ? bind_fp8(be, d, w)
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
