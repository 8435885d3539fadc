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
// The widening (g4q_cuda_qslice) reads the device layout once, 16 bytes per lane as the GEMV
// does, and writes whole 32-byte sectors of the slice: 0.5625 (NVFP4), 1.0 (FP8) or 0.53 (INT4
// g128) bytes read and 2 written per weight. Its values are bit for bit those of ql_value (the
// src/quant decoders of the original codes; see qwiden_kernel for why), which a
// one-thread-per-weight fallback computes as written for NaN weights and FP8 with
// cols % 8 != 0. With an activation quantization, Q(x) of src/quant/actq.h is first
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

/* Fallback (QG_NOGEMV weights, FP8 with cols % 8 != 0): one thread per weight of rows r0..,
 * ql_value, the definition of the slice's values. */
template <int FMT>
static __global__ void qslice_kernel(const qlayout L, const void *data, const void *scale,
                                     int tensor, int64_t r0, size_t count, __nv_bfloat16 *out)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const int64_t r = r0 + (int64_t)(i / (size_t)L.cols), c = (int64_t)(i % (size_t)L.cols);
    out[i] = __float2bfloat16_rn(ql_value<FMT>(L, data, scale, tensor, r, c));
}

/* The fast widening: one warp per (row tile T, iteration i of QL_U superblocks), i.e. 16 rows x
 * 256 columns (NVFP4, INT4) or 16 x 128 (FP8). Each lane makes the GEMV's loads: QL_U 16-byte
 * streaming loads of codes (the warp reads its 2 KB once, 512 contiguous bytes per load) and,
 * NVFP4, one 8-byte load of scale bytes. The lane decodes in registers and writes 16-byte pieces
 * of 8 output columns, arranged so that each store instruction of the warp fills whole 32-byte
 * sectors (64 contiguous bytes in each of 8 rows; columns within the superblock):
 *   NVFP4  lane (g, t) holds block t (16 columns) of rows g, g + 8: one word = one piece. Lanes
 *          t, t ^ 1 swap one word per row (and their scale bytes), so that store A writes
 *          columns 8·(2t - (t & 1)) .. + 7 and store B the 8 columns 16 further on.
 *   INT4   lane (g, t) holds columns 16·j + 4·t .. + 3: a piece (8 columns of one 16-column
 *          block) is half lane t & ~1's, half lane t | 1's. The pair swaps its words; lane t
 *          writes block j = t & 1 (word x / z) and j = 2 + (t & 1) (word y / w), its piece at
 *          columns 16·j + 8·(t >> 1).
 *   FP8    lane (g, t) holds columns 8·t .. 8·t + 7 of rows g, g + 8: its own two pieces.
 * The values are those of ql_value bit for bit, by other operations on the same codes:
 *   NVFP4  bf16(E2M1 · 2^-126) · bf16(E4M3 · 2^112) · 2^14, two bf16 multiplies (the GEMV's A
 *          operand times 2^14): t = E2M1 · E4M3 has at most 6 significant bits and |t| lies in
 *          [2^-10, 2688] ([2^-24, 0.17] after the first multiply), so both products are exact
 *          and equal the fl32 product of ql_value, which its bf16 rounding keeps; the signs of
 *          zeros agree (a stored scale is never negative, the code's sign goes through). Needs
 *          non-NaN scales (ql_nvfp4_scales): NaN-scale weights are QG_NOGEMV.
 *   FP8    the unpacked bf16 E4M3 · 2^-120 read as fp32 (exact, subnormal for E4M3 subnormals),
 *          times 2^120 (exact): g4q_e4m3_decode of the code for every non-NaN code (NaN codes
 *          make the weight QG_NOGEMV); then the same fl32 multiply by the same block scale and
 *          the same bf16 rounding.
 *   INT4   q = (128 + nibble) - 136 in bf16 (ql_int4_q, exact, +0 for q = 0) read as fp32:
 *          (float)q of ql_value; the same fl32 multiply by the same group scale and rounding.
 * fp32 multiplies of subnormals need the default -ftz=false (no --use_fast_math). */

#define QW_WARPS 8 /* warps per block of qwiden_kernel */

struct qw_args {
    const uint4 *q;  /* codes */
    const void *s;   /* scales */
    uint4 *out;      /* bf16 [r1 - r0, cols] as 16-byte pieces */
    int64_t r0, r1;  /* the slice's rows */
    int64_t t0;      /* its first row tile */
    int64_t nwarps;  /* row tiles x niter */
    int64_t nsb;     /* superblocks per row tile */
    int niter;       /* iterations per row tile (nsb / QL_U) */
    int cols, group; /* INT4 group */
    int ngp, nsc;    /* INT4 scale groups per row tile; FP8 scale columns */
    int tensor;      /* FP8 per tensor: no scale multiply */
};

/* NVFP4: 8 columns (one word) as bf16, sg = bf16 E4M3 · 2^112 of their row (ql_nvfp4_scales). */
static __device__ __forceinline__ uint4 qw_nvfp4(uint32_t w, uint32_t sg)
{
    const uint32_t k14 = 0x46804680u; /* bf16 2^14, 2^14 */
    uint32_t P[4];
    ql_e2m1_unpack(w, P);
    return make_uint4(ql_bmul(ql_bmul(P[0], sg), k14), ql_bmul(ql_bmul(P[1], sg), k14),
                      ql_bmul(ql_bmul(P[2], sg), k14), ql_bmul(ql_bmul(P[3], sg), k14));
}

/* fl32(v · s) of the two values v of bf16 pair b, widened to fp32 (exact) and first multiplied
 * by 2^120 with FP8 (exact), rounded to a bf16 pair; v alone with tensor. */
template <bool FP8>
static __device__ __forceinline__ uint32_t qw_scale2(uint32_t b, float s, int tensor)
{
    float lo = __uint_as_float(b << 16), hi = __uint_as_float(b & 0xffff0000u);
    if (FP8) {
        const float k120 = __uint_as_float(0x7B800000u); /* 2^120 */
        lo = __fmul_rn(lo, k120), hi = __fmul_rn(hi, k120);
    }
    if (!tensor) lo = __fmul_rn(lo, s), hi = __fmul_rn(hi, s);
    return ql_u32(__floats2bfloat162_rn(lo, hi));
}

/* FP8: 8 columns from words w0 (columns 0..3) and w1 (4..7), block scale s. */
static __device__ __forceinline__ uint4 qw_fp8(uint32_t w0, uint32_t w1, float s, int tensor)
{
    uint32_t P[2], Q[2];
    ql_fp8_unpack(w0, P);
    ql_fp8_unpack(w1, Q);
    return make_uint4(qw_scale2<true>(P[0], s, tensor), qw_scale2<true>(P[1], s, tensor),
                      qw_scale2<true>(Q[0], s, tensor), qw_scale2<true>(Q[1], s, tensor));
}

/* INT4: 8 columns, pairs p, p + 1 of words w0 (columns 0..3) and w1 (4..7), group scale s. */
static __device__ __forceinline__ uint4 qw_int4(uint32_t w0, uint32_t w1, int p, float s)
{
    return make_uint4(
        qw_scale2<false>(ql_int4_q(w0, p), s, 0), qw_scale2<false>(ql_int4_q(w0, p + 1), s, 0),
        qw_scale2<false>(ql_int4_q(w1, p), s, 0), qw_scale2<false>(ql_int4_q(w1, p + 1), s, 0));
}

template <int FMT>
static __global__ void __launch_bounds__(QW_WARPS * 32) qwiden_kernel(const qw_args a)
{
    const int64_t wid = (int64_t)blockIdx.x * QW_WARPS + (threadIdx.x >> 5);
    if (wid >= a.nwarps) return; /* whole warps: the shuffles below see all 32 lanes */
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t T = a.t0 + wid / a.niter;
    const int i = (int)(wid % a.niter);
    const int64_t rg = T * QL_TILE + g, rg8 = rg + 8, stride = a.cols / 8;
    const bool okg = rg >= a.r0 && rg < a.r1, ok8 = rg8 >= a.r0 && rg8 < a.r1;
    /* piece of 8 columns starting at column c (c % 8 == 0) of row r, if in the slice */
    auto put = [&](bool ok, int64_t r, int64_t c, const uint4 &v) {
        if (ok && c < a.cols) a.out[(r - a.r0) * stride + c / 8] = v;
    };
    const uint4 *qp = a.q + (T * a.nsb + (int64_t)i * QL_U) * 32 + lane;
    uint4 q[QL_U];
#pragma unroll
    for (int u = 0; u < QL_U; u++)
        q[u] = __ldcs(qp + u * 32);
    const bool odd = t & 1;
    const unsigned all = 0xffffffffu;
    if (FMT == G4Q_WF_NVFP4) {
        const uint2 *sp = reinterpret_cast<const uint2 *>(a.s);
        const uint2 s8 = __ldcs(sp + (T * a.niter + i) * 32 + lane);
        const uint32_t p8x = __shfl_xor_sync(all, s8.x, 1), p8y = __shfl_xor_sync(all, s8.y, 1);
#pragma unroll
        for (int u = 0; u < QL_U; u++) {
            const int sh = 16 * (u & 1);
            const uint32_t own = ((u < 2 ? s8.x : s8.y) >> sh) & 0xffffu;
            const uint32_t par = ((u < 2 ? p8x : p8y) >> sh) & 0xffffu;
            uint32_t sgA, sg8A, sgB, sg8B;
            ql_nvfp4_scales(odd ? par : own, &sgA, &sg8A);
            ql_nvfp4_scales(odd ? own : par, &sgB, &sg8B);
            /* even lanes send y (their block's columns 8..15), odd lanes x (columns 0..7) */
            const uint32_t pg = __shfl_xor_sync(all, odd ? q[u].x : q[u].y, 1);
            const uint32_t p8 = __shfl_xor_sync(all, odd ? q[u].z : q[u].w, 1);
            const int64_t cA = ((int64_t)i * QL_U + u) * 64 + 8 * (2 * t - (t & 1));
            put(okg, rg, cA, qw_nvfp4(odd ? pg : q[u].x, sgA));
            put(okg, rg, cA + 16, qw_nvfp4(odd ? q[u].y : pg, sgB));
            put(ok8, rg8, cA, qw_nvfp4(odd ? p8 : q[u].z, sg8A));
            put(ok8, rg8, cA + 16, qw_nvfp4(odd ? q[u].w : p8, sg8B));
        }
    } else if (FMT == G4Q_WF_FP8_BLOCK) {
        /* one 128 x 128 block: the tile's rows (16 | 128), the iteration's 128 columns */
        const float *sp = reinterpret_cast<const float *>(a.s);
        const float s = a.tensor ? 1.0f : __ldg(sp + (T >> 3) * a.nsc + i);
#pragma unroll
        for (int u = 0; u < QL_U; u++) {
            const int64_t c = ((int64_t)i * QL_U + u) * 32 + 8 * t;
            put(okg, rg, c, qw_fp8(q[u].x, q[u].y, s, a.tensor));
            put(ok8, rg8, c, qw_fp8(q[u].z, q[u].w, s, a.tensor));
        }
    } else {
        const float *s4 = reinterpret_cast<const float *>(a.s) + T * a.ngp * QL_TILE + g;
        const int p = 2 * (t & 1); /* pairs of block j = t & 1 in word x, 2 + (t & 1) in word y */
#pragma unroll
        for (int u = 0; u < QL_U; u++) {
            const uint32_t px = __shfl_xor_sync(all, q[u].x, 1);
            const uint32_t py = __shfl_xor_sync(all, q[u].y, 1);
            const uint32_t pz = __shfl_xor_sync(all, q[u].z, 1);
            const uint32_t pw = __shfl_xor_sync(all, q[u].w, 1);
            const int64_t cA = ((int64_t)i * QL_U + u) * 64 + 16 * (t & 1) + 8 * (t >> 1);
            const int64_t cB = cA + 32;
            /* a piece lies in one group (group % 8 == 0); padding columns have groups < ngp */
            const int64_t gA = (int64_t)((uint32_t)cA / (uint32_t)a.group) * QL_TILE;
            const int64_t gB = (int64_t)((uint32_t)cB / (uint32_t)a.group) * QL_TILE;
            /* columns 0..3 of a piece are the even lane's, 4..7 the odd lane's */
            put(okg, rg, cA, qw_int4(odd ? px : q[u].x, odd ? q[u].x : px, p, __ldg(s4 + gA)));
            put(okg, rg, cB, qw_int4(odd ? py : q[u].y, odd ? q[u].y : py, p, __ldg(s4 + gB)));
            put(ok8, rg8, cA, qw_int4(odd ? pz : q[u].z, odd ? q[u].z : pz, p, __ldg(s4 + gA + 8)));
            put(ok8, rg8, cB, qw_int4(odd ? pw : q[u].w, odd ? q[u].w : pw, p, __ldg(s4 + gB + 8)));
        }
    }
}

bool g4q_cuda_qslice_fast(const g4q_bweight *w)
{
    /* cols % 8: 16-byte pieces and rows that start 16-byte aligned (NVFP4 and INT4 always) */
    return w->cols % 8 == 0 && !(w->qmode & QG_NOGEMV) && w->cols <= INT32_MAX - 256 &&
           (w->format == G4Q_WF_NVFP4 || w->format == G4Q_WF_FP8_BLOCK || w->format == G4Q_WF_INT4);
}

g4q_status g4q_cuda_qslice(g4q_backend *be, const g4q_bweight *w, int64_t r0, int64_t nr,
                           __nv_bfloat16 *ws)
{
    g4q_ctx *ctx = be->ctx;
    cudaStream_t st = g4q_cuda_st(be)->stream;
    const qlayout L = ql_make(w->format, w->rows, w->cols, w->group);
    const int tensor = w->qtensor > 0.0f;
    const void *d = w->data, *sc = w->qscale;
    if (nr <= 0) return G4Q_OK;
    if (g4q_cuda_qslice_fast(w)) {
        qw_args a;
        a.q = reinterpret_cast<const uint4 *>(d);
        a.s = sc;
        a.out = reinterpret_cast<uint4 *>(ws);
        a.r0 = r0, a.r1 = r0 + nr;
        a.t0 = r0 / QL_TILE;
        a.nsb = L.nsb;
        a.niter = (int)(L.nsb / QL_U);
        a.nwarps = ((a.r1 + QL_TILE - 1) / QL_TILE - a.t0) * a.niter;
        a.cols = (int)L.cols, a.group = w->group, a.ngp = (int)L.ngp, a.nsc = (int)L.nsc;
        a.tensor = tensor;
        const unsigned b = g4q_cuda_blocks((size_t)a.nwarps, QW_WARPS);
        if (w->format == G4Q_WF_NVFP4)
            qwiden_kernel<G4Q_WF_NVFP4><<<b, QW_WARPS * 32, 0, st>>>(a);
        else if (w->format == G4Q_WF_FP8_BLOCK)
            qwiden_kernel<G4Q_WF_FP8_BLOCK><<<b, QW_WARPS * 32, 0, st>>>(a);
        else
            qwiden_kernel<G4Q_WF_INT4><<<b, QW_WARPS * 32, 0, st>>>(a);
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
            G4Q_TRY(g4q_cuda_qslice(be, w, r0, nr, ws));
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
