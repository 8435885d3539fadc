/*
 * Private to src/backend/cuda (nvcc only): the device layout of packed weights, shared by the
 * binding and prefill code (cuda_qgemm.cu, which documents the layout and the numerics) and the
 * decode GEMV (cuda_qgemv.cu); tests/test_qgemm_gpu.cu checks the prefill widening with it.
 *
 * Geometry. Rows are cut into row tiles of QL_TILE = 16 rows, columns into superblocks of
 * `width` columns (64 for NVFP4 and INT4, 32 for FP8); one (row tile, superblock) is
 * QL_CHUNK = 512 bytes, 16 bytes for each lane l = 4·g + t of a warp (g = l / 4, t = l % 4):
 * four little-endian u32 words, words 0-1 for row 16·T + g and words 2-3 for row 16·T + g + 8.
 * Chunks are stored row tile by row tile, superblock after superblock; rows are padded to whole
 * tiles and columns to whole groups of QL_U superblocks (one GEMV iteration) with codes of value
 * zero. Which columns a lane's words hold, and how, is ql_locate's business; the codes are
 * arranged so that the decode GEMV turns a word into bf16 pairs of the mma.m16n8k16 A fragment
 * with a handful of shifts and masks (the *_unpack / ql_int4_pair functions):
 *   NVFP4  lane (g, t) holds the 16-element block 4·S + t of its two rows; word 2·h + w covers
 *          block columns 8·w .. 8·w + 7 (h = row half). ql_e2m1_unpack gives four bf16 pairs
 *          P[p], p = 2·(j & 1) + (i >> 1) for block columns 4·j + i, 4·j + i + 1 (i = 0, 2),
 *          each element E2M1 · 2^-126 (sign, then the E2M1 bits e1 e0 m at bf16 bits 8..6:
 *          exact, subnormal for E2M1 0.5). The bits are a GF(2)-linear code of the nibbles:
 *          the decoder XORs rotations of the word, the encoder (ql_code) is its inverse.
 *   INT4   lane (g, t) holds columns 16·j + 4·t .. 16·j + 4·t + 3 of each 16-column block j
 *          of the superblock; word 2·h + (j >> 1), pair p = 2·(j & 1) + (i >> 1) for columns
 *          i, i + 1 (i = 0, 2) of those four: element e of pair p is the nibble (q + 8) at bits
 *          4·p + 16·e.
 *   FP8    lane (g, t) holds columns 8·t .. 8·t + 7 of the superblock: word 2·h + j holds
 *          columns 8·t + 4·j .. + 3, ql_fp8_unpack gives pair 0 (columns +0, +1) and pair 1
 *          (+2, +3), each element E4M3 · 2^-120 in bf16 bits (subnormal for E4M3 subnormals);
 *          again a linear code of the bytes.
 * Scales:
 *   NVFP4  E4M3 bytes, for each (row tile, group of QL_U superblocks) 32 lanes × 8 bytes: byte
 *          2·u + h of lane (g, t) is the scale of block 4·S + t (S = QL_U·i + u) of row half h.
 *          Bind time makes every stored scale non-negative (a negative scale's sign moves into
 *          the block's codes) and gives a zero scale's block zero codes (same values).
 *   INT4   fp32 [row tiles, ngp groups, 16 rows] (ngp = groups of the padded columns).
 *   FP8    fp32 [ceil(rows/128), nsc = ceil(cols/128)] (the host layout; per tensor expanded).
 */
#ifndef G4Q_BACKEND_CUDA_QLAYOUT_H
#define G4Q_BACKEND_CUDA_QLAYOUT_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"
#include "quant/codecs.h"

#define QL_TILE 16   /* rows per row tile */
#define QL_U 4       /* superblocks per GEMV iteration (per lane: QL_U 16-byte loads) */
#define QL_CHUNK 512 /* bytes of one (row tile, superblock) */

/* g4q_bweight.qmode bits: NVFP4 with G4Q_WD_GLOBAL_RECIPROCAL divides by its global scale;
 * QG_NOGEMV marks codes the decode GEMV does not take (NaN codes or block scales), which go to
 * the exact prefill path at every n. */
enum { QG_MUL = 0, QG_DIV = 1, QG_NOGEMV = 2 };

/* Geometry of a bound packed weight (the layout in the file comment). */
struct qlayout {
    int fmt;           /* G4Q_WF_NVFP4, G4Q_WF_FP8_BLOCK or G4Q_WF_INT4 */
    int width;         /* superblock columns */
    int group;         /* INT4: inputs per scale */
    int64_t rows, cols;
    int64_t nrt;       /* row tiles */
    int64_t nsb;       /* superblocks per row tile, a multiple of QL_U */
    int64_t ngp;       /* INT4: scale groups per row of the padded columns */
    int64_t nsc;       /* FP8: scale columns ceil(cols/128) */
    size_t code_bytes; /* device bytes of the codes */
    size_t scale_bytes;
};

static __host__ __device__ inline qlayout ql_make(int fmt, int64_t rows, int64_t cols, int group)
{
    qlayout L;
    L.fmt = fmt;
    L.width = fmt == G4Q_WF_FP8_BLOCK ? 32 : 64;
    L.group = group;
    L.rows = rows;
    L.cols = cols;
    L.nrt = (rows + QL_TILE - 1) / QL_TILE;
    const int64_t span = (int64_t)L.width * QL_U;
    L.nsb = (cols + span - 1) / span * QL_U;
    L.ngp = fmt == G4Q_WF_INT4 && group > 0 ? (L.nsb * L.width + group - 1) / group : 0;
    L.nsc = (cols + 127) / 128;
    L.code_bytes = (size_t)L.nrt * (size_t)L.nsb * QL_CHUNK;
    L.scale_bytes = fmt == G4Q_WF_NVFP4  ? (size_t)L.nrt * (size_t)L.nsb * 64
                    : fmt == G4Q_WF_INT4 ? (size_t)L.nrt * (size_t)L.ngp * QL_TILE * 4
                                         : (size_t)((rows + 127) / 128) * (size_t)L.nsc * 4;
    return L;
}

/* Index (in u32 words) of word wi of lane `lane` in chunk (row tile T, superblock S). */
static __host__ __device__ inline int64_t ql_word(const qlayout &L, int64_t T, int64_t S, int lane,
                                                  int wi)
{
    return ((T * L.nsb + S) * 32 + lane) * 4 + wi;
}

/* Where element (r, c) lives: its word, pair p and element e of the pair (the file comment). */
struct ql_pos {
    int64_t word;
    int p, e;
};
static __host__ __device__ inline ql_pos ql_locate(const qlayout &L, int64_t r, int64_t c)
{
    const int64_t T = r / QL_TILE, S = c / L.width;
    const int rr = (int)(r % QL_TILE), g = rr & 7, h = rr >> 3, cb = (int)(c % L.width);
    int t, wi, p, e;
    if (L.fmt == G4Q_WF_NVFP4) { /* block t, block column 4·j + i */
        const int k = cb & 15, j = k >> 2, i = k & 3;
        t = cb >> 4, wi = 2 * h + (j >> 1), p = 2 * (j & 1) + (i >> 1), e = i & 1;
    } else if (L.fmt == G4Q_WF_INT4) { /* column 16·j + 4·t + i */
        const int j = cb >> 4, i = cb & 3;
        t = (cb >> 2) & 3, wi = 2 * h + (j >> 1), p = 2 * (j & 1) + (i >> 1), e = i & 1;
    } else { /* column 8·t + 4·j + i */
        const int j = (cb >> 2) & 1, i = cb & 3;
        t = cb >> 3, wi = 2 * h + j, p = i >> 1, e = i & 1;
    }
    ql_pos q;
    q.word = ql_word(L, T, S, 4 * g + t, wi);
    q.p = p;
    q.e = e;
    return q;
}

/* NVFP4 scale byte of block b (= c / 16) of row r: its byte offset in the scale array. */
static __host__ __device__ inline int64_t ql_nvfp4_scale_at(const qlayout &L, int64_t r, int64_t b)
{
    const int64_t T = r / QL_TILE, S = b / 4;
    const int rr = (int)(r % QL_TILE), lane = 4 * (rr & 7) + (int)(b & 3);
    return ((T * (L.nsb / QL_U) + S / QL_U) * 32 + lane) * 8 + 2 * (S % QL_U) + (rr >> 3);
}

/* INT4 scale index (fp32 units) of group gi of row r. */
static __host__ __device__ inline int64_t ql_int4_scale_at(const qlayout &L, int64_t r, int64_t gi)
{
    return ((r / QL_TILE) * L.ngp + gi) * QL_TILE + r % QL_TILE;
}

static __host__ __device__ inline uint32_t ql_rotl(uint32_t w, int a)
{
#if defined(__CUDA_ARCH__)
    return __funnelshift_l(w, w, (unsigned)a);
#else
    return a ? (w << a) | (w >> (32 - a)) : w;
#endif
}

/* bf16 pair positions of the unpacked codes: NVFP4 sign 15, E2M1 e1 e0 m at 8..6; FP8 sign 15,
 * E4M3 eeee mmm at 10..4 (each in both halves). */
#define QL_E2M1_MASK 0x81C081C0u
#define QL_FP8_MASK 0x87F087F0u

/* The four NVFP4 pairs of word w: 4 rotations, 4 three-input logic operations. */
static __host__ __device__ inline void ql_e2m1_unpack(uint32_t w, uint32_t P[4])
{
    const uint32_t r2 = ql_rotl(w, 2), r6 = ql_rotl(w, 6), r8 = ql_rotl(w, 8), r12 = ql_rotl(w, 12);
    P[0] = w & QL_E2M1_MASK;
    P[1] = r12 & QL_E2M1_MASK;
    P[2] = (r2 ^ r6) & QL_E2M1_MASK;
    P[3] = (r2 ^ r8) & QL_E2M1_MASK;
}

/* The two FP8 pairs of word w: 2 rotations, 2 logic operations. */
static __host__ __device__ inline void ql_fp8_unpack(uint32_t w, uint32_t P[2])
{
    const uint32_t r12 = ql_rotl(w, 12), r24 = ql_rotl(w, 24);
    P[0] = w & QL_FP8_MASK;
    P[1] = (r12 ^ r24) & QL_FP8_MASK;
}

/* INT4 pair p of word w as the bf16 pair (128 + nibble): subtract 136 for q. */
static __host__ __device__ inline uint32_t ql_int4_pair(uint32_t w, int p)
{
    return ((w >> (4 * p)) & 0x000F000Fu) | 0x43004300u;
}

/* The original codes of element e of an unpacked pair (prefill path, tests). */
static __host__ __device__ inline uint8_t ql_e2m1_code(uint32_t P, int e)
{
    const uint32_t v = P >> (16 * e);
    return (uint8_t)(((v >> 6) & 7u) | ((v >> 12) & 8u));
}
static __host__ __device__ inline uint8_t ql_fp8_code(uint32_t P, int e)
{
    const uint32_t v = P >> (16 * e);
    return (uint8_t)(((v >> 4) & 0x7Fu) | ((v >> 8) & 0x80u));
}

/* The encoder of a linear code (NVFP4 or FP8): row c of the inverse of the decoder's matrix,
 * over the packed pair bits (ql_code_pack), gives bit c of the word. */
struct ql_code {
    uint32_t row[32];
};

/* The mask bits of the unpacked pairs P[0 .. np) as one 32-bit vector (np = 4: NVFP4, 2: FP8). */
static __host__ __device__ inline uint32_t ql_code_pack(const uint32_t *P, int np)
{
    const uint32_t mask = np == 4 ? QL_E2M1_MASK : QL_FP8_MASK;
    uint32_t v = 0;
    int o = 0;
    for (int p = 0; p < np; p++)
        for (int b = 0; b < 32; b++)
            if (mask >> b & 1u) v |= (P[p] >> b & 1u) << o++;
    return v;
}

static __host__ __device__ inline uint32_t ql_parity(uint32_t v)
{
#if defined(__CUDA_ARCH__)
    return (uint32_t)__popc(v) & 1u;
#else
    return (uint32_t)__builtin_popcount(v) & 1u;
#endif
}

/* The word whose unpacked pairs are P[0 .. np) (mask bits only). */
static __host__ __device__ inline uint32_t ql_encode(const ql_code &k, const uint32_t *P, int np)
{
    const uint32_t v = ql_code_pack(P, np);
    uint32_t w = 0;
    for (int c = 0; c < 32; c++)
        w |= ql_parity(k.row[c] & v) << c;
    return w;
}

/* Builds the encoder of the NVFP4 (np = 4) or FP8 (np = 2) code by inverting the decoder, a
 * 32 x 32 matrix over GF(2) (columns probed with one-bit words). Returns false if singular. */
static inline bool ql_code_make(int np, ql_code *k)
{
    uint32_t rd[32] = {0}; /* rd[o]: input bits feeding output bit o */
    for (int i = 0; i < 32; i++) {
        uint32_t P[4];
        if (np == 4)
            ql_e2m1_unpack(1u << i, P);
        else
            ql_fp8_unpack(1u << i, P);
        const uint32_t col = ql_code_pack(P, np);
        for (int o = 0; o < 32; o++)
            rd[o] |= (col >> o & 1u) << i;
    }
    for (int o = 0; o < 32; o++)
        k->row[o] = 1u << o;
    for (int c = 0; c < 32; c++) { /* Gauss-Jordan: rd -> I, row[] -> the inverse */
        int piv = -1;
        for (int o = c; o < 32 && piv < 0; o++)
            if (rd[o] >> c & 1u) piv = o;
        if (piv < 0) return false;
        uint32_t t = rd[c];
        rd[c] = rd[piv], rd[piv] = t;
        t = k->row[c], k->row[c] = k->row[piv], k->row[piv] = t;
        for (int o = 0; o < 32; o++)
            if (o != c && (rd[o] >> c & 1u)) rd[o] ^= rd[c], k->row[o] ^= k->row[c];
    }
    return true;
}

/* ---- the A fragments of mma.m16n8k16 (bf16) from one lane's 16 bytes ----
 * Register r of MMA j: r = 0 row g, k-slots 2t, 2t+1; r = 1 row g + 8, same slots; r = 2 row g,
 * slots 2t + 8, 2t + 9; r = 3 row g + 8, those slots. A lane's slots 2t, 2t + 1, 2t + 8, 2t + 9
 * of MMA j hold the columns c, c + 1, c + 2, c + 3 of ql_mma_col (B takes x the same way). */

/* First column (in the superblock) of lane t's four columns of MMA j. */
static __host__ __device__ inline int ql_mma_col(int fmt, int t, int j)
{
    return fmt == G4Q_WF_NVFP4 ? 16 * t + 4 * j : fmt == G4Q_WF_INT4 ? 16 * j + 4 * t : 8 * t + 4 * j;
}

/* u32 <-> bf16 pair (low half = first element), by reinterpretation (the conversions through
 * __nv_bfloat162_raw cost the device a PRMT and a shift per pair). */
static __host__ __device__ inline __nv_bfloat162 ql_b2(const uint32_t &v)
{
    return *reinterpret_cast<const __nv_bfloat162 *>(&v);
}
static __host__ __device__ inline uint32_t ql_u32(const __nv_bfloat162 &b)
{
    return *reinterpret_cast<const uint32_t *>(&b);
}

/* Element-wise bf16 product of two pairs (round to nearest; exact wherever it is used here). */
static __host__ __device__ inline uint32_t ql_bmul(uint32_t a, uint32_t b)
{
    return ql_u32(__hmul2(ql_b2(a), ql_b2(b)));
}

/* The two NVFP4 scale bytes of a lane's superblock (row g in the low byte, row g + 8) as the bf16
 * multipliers s · 2^112 of each row, in both halves: E4M3 -> f16 (exact), whose bits shifted right
 * by 3 under exponent bits 0b111 are the bf16 bits of s · 2^112 (E4M3 has 3 mantissa bits: the
 * f16's low 3 bits are zero). Needs s >= 0 and not NaN (bind time sees to it; zero gives 2^97,
 * multiplied by zero codes only). */
static __host__ __device__ inline void ql_nvfp4_scales(uint32_t s16, uint32_t *sg, uint32_t *sg8)
{
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)s16, __NV_E4M3);
    const uint32_t b = (((uint32_t)h.x | ((uint32_t)h.y << 16)) >> 3) | 0x70007000u;
    *sg = (b & 0xffffu) * 0x10001u;
    *sg8 = (b >> 16) * 0x10001u;
}

/* q of INT4 pair p of word w: (128 + nibble) - 136 in bf16, exact. */
static __host__ __device__ inline uint32_t ql_int4_q(uint32_t w, int p)
{
    uint32_t v;
#if defined(__CUDA_ARCH__)
    /* one LOP3 (a & b) | c with both constants in registers (else the compiler spends two) */
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(v) : "r"(w >> (4 * p)), "r"(0x000F000Fu), "r"(0x43004300u));
#else
    v = ql_int4_pair(w, p);
#endif
    const uint32_t off = 0x43084308u; /* bf16 136, 136 */
    return ql_u32(__hsub2(ql_b2(v), ql_b2(off)));
}

/* NVFP4: A[j] of the superblock's four MMAs, t · 2^-14 (sg, sg8 from ql_nvfp4_scales). */
static __host__ __device__ inline void ql_nvfp4_afrag(const uint4 &q, uint32_t sg, uint32_t sg8,
                                                      uint32_t A[4][4])
{
    uint32_t P[4][4];
    ql_e2m1_unpack(q.x, P[0]); /* row g, block columns 0..7 */
    ql_e2m1_unpack(q.y, P[1]); /* row g, 8..15 */
    ql_e2m1_unpack(q.z, P[2]); /* row g + 8, 0..7 */
    ql_e2m1_unpack(q.w, P[3]); /* row g + 8, 8..15 */
    for (int j = 0; j < 4; j++) {
        const int w = j >> 1, p = 2 * (j & 1);
        A[j][0] = ql_bmul(P[w][p], sg);
        A[j][1] = ql_bmul(P[2 + w][p], sg8);
        A[j][2] = ql_bmul(P[w][p + 1], sg);
        A[j][3] = ql_bmul(P[2 + w][p + 1], sg8);
    }
}

/* INT4: A[j] of the superblock's four MMAs (16-column block j), q. */
static __host__ __device__ inline void ql_int4_afrag(const uint4 &q, uint32_t A[4][4])
{
    for (int j = 0; j < 4; j++) {
        const uint32_t wg = j < 2 ? q.x : q.y, wg8 = j < 2 ? q.z : q.w;
        const int p = 2 * (j & 1);
        A[j][0] = ql_int4_q(wg, p);
        A[j][1] = ql_int4_q(wg8, p);
        A[j][2] = ql_int4_q(wg, p + 1);
        A[j][3] = ql_int4_q(wg8, p + 1);
    }
}

/* FP8: A[j] of the superblock's two MMAs, E4M3 (the unpacked E4M3 · 2^-120 times 2^120). */
static __host__ __device__ inline void ql_fp8_afrag(const uint4 &q, uint32_t A[2][4])
{
    const uint32_t k120 = 0x7B807B80u; /* bf16 2^120, 2^120 */
    uint32_t P[4][2];
    ql_fp8_unpack(q.x, P[0]); /* row g, columns 8t + 0..3 */
    ql_fp8_unpack(q.y, P[1]); /* row g, 8t + 4..7 */
    ql_fp8_unpack(q.z, P[2]); /* row g + 8 */
    ql_fp8_unpack(q.w, P[3]);
    for (int j = 0; j < 2; j++) {
        A[j][0] = ql_bmul(P[j][0], k120);
        A[j][1] = ql_bmul(P[2 + j][0], k120);
        A[j][2] = ql_bmul(P[j][1], k120);
        A[j][3] = ql_bmul(P[2 + j][1], k120);
    }
}

/* ---- bind: source bytes -> the layout (one call per thread of the re-layout kernels) ---- */

/* Word i of the layout: its superblock, lane t, word index and row. */
struct ql_wpos {
    int64_t T, S, r;
    int t, wi;
};
static __host__ __device__ inline ql_wpos ql_wpos_of(const qlayout &L, int64_t i)
{
    ql_wpos p;
    p.wi = (int)(i & 3);
    const int lane = (int)((i >> 2) & 31);
    const int64_t chunk = i >> 7;
    p.S = chunk % L.nsb;
    p.T = chunk / L.nsb;
    p.t = lane & 3;
    p.r = p.T * QL_TILE + (lane >> 2) + 8 * (p.wi >> 1);
    return p;
}

/* NVFP4 item i = (padded row, padded 16-element block) of L.nrt·16 · L.nsb·4: its two words and
 * scale byte from the host layout (src codes [rows, cols/2], ssrc scales [rows, cols/16]). A
 * negative scale becomes |scale| with the code signs flipped, a zero scale zero codes; a NaN
 * scale is kept as it is and makes the return value 1. */
static __host__ __device__ inline int ql_relayout_nvfp4(const qlayout &L, const ql_code &k,
                                                        const uint8_t *src, const uint8_t *ssrc,
                                                        uint32_t *dst, uint8_t *sdst, int64_t i)
{
    const int64_t nb = L.nsb * 4, r = i / nb, b = i % nb;
    uint64_t codes = 0; /* the block's 16 nibbles, block column c at bits 4·c */
    uint8_t s = 0;
    if (r < L.rows && b < L.cols / 16) {
        memcpy(&codes, src + r * (L.cols / 2) + 8 * b, 8);
        s = ssrc[r * (L.cols / 16) + b];
    }
    int nan = 0;
    if ((s & 0x7Fu) == 0x7Fu)
        nan = 1;
    else if ((s & 0x7Fu) == 0)
        codes = 0, s = 0;
    else if (s & 0x80u)
        codes ^= 0x8888888888888888ull, s &= 0x7Fu;
    for (int wj = 0; wj < 2; wj++) { /* word wj: block columns 8·wj .. 8·wj + 7 */
        uint32_t P[4] = {0, 0, 0, 0};
        for (int col = 8 * wj; col < 8 * wj + 8; col++) {
            const int j = col >> 2, ii = col & 3, e = ii & 1;
            const uint32_t nib = (uint32_t)(codes >> (4 * col)) & 15u;
            P[2 * (j & 1) + (ii >> 1)] |= ((nib & 7u) << (6 + 16 * e)) | ((nib >> 3) << (15 + 16 * e));
        }
        dst[ql_locate(L, r, 16 * b + 8 * wj).word] = ql_encode(k, P, 4);
    }
    sdst[ql_nvfp4_scale_at(L, r, b)] = s;
    return nan;
}

/* FP8 word i from the host E4M3 bytes [rows, cols]; returns 1 if it holds a NaN code. */
static __host__ __device__ inline int ql_relayout_fp8(const qlayout &L, const ql_code &k,
                                                      const uint8_t *src, uint32_t *dst, int64_t i)
{
    const ql_wpos q = ql_wpos_of(L, i);
    const int64_t c0 = q.S * 32 + 8 * q.t + 4 * (q.wi & 1);
    uint32_t P[2] = {0, 0};
    int nan = 0;
    for (int ii = 0; ii < 4; ii++) {
        const int64_t c = c0 + ii;
        const uint32_t v = q.r < L.rows && c < L.cols ? src[q.r * L.cols + c] : 0u;
        nan |= (v & 0x7Fu) == 0x7Fu;
        const int e = ii & 1;
        P[ii >> 1] |= ((v & 0x7Fu) << (4 + 16 * e)) | ((v >> 7) << (15 + 16 * e));
    }
    dst[i] = ql_encode(k, P, 2);
    return nan;
}

/* INT4 word i from the compressed-tensors [rows, cols/8] or GPTQ [cols/8, rows] words; padding
 * nibbles are 8 (q = 0). */
static __host__ __device__ inline void ql_relayout_int4(const qlayout &L, int gptq,
                                                        const uint32_t *src, uint32_t *dst,
                                                        int64_t i)
{
    const ql_wpos q = ql_wpos_of(L, i);
    uint32_t w = 0;
    for (int jl = 0; jl < 2; jl++) {
        const int j = 2 * (q.wi & 1) + jl;
        for (int ii = 0; ii < 4; ii++) {
            const int64_t c = q.S * 64 + 16 * j + 4 * q.t + ii;
            uint32_t nib = 8;
            if (q.r < L.rows && c < L.cols) {
                const uint32_t sw = gptq ? src[(c / 8) * L.rows + q.r] : src[q.r * (L.cols / 8) + c / 8];
                nib = (sw >> (4 * (c % 8))) & 15u;
            }
            w |= nib << (4 * (2 * jl + (ii >> 1)) + 16 * (ii & 1));
        }
    }
    dst[i] = w;
}

/* ---- prefill: the layout back to the original codes, decoded (src/quant decoders) ---- */

/* Weight (r, c) as the prefill slice holds it: NVFP4 E2M1 · E4M3, FP8 fl32(E4M3 · scale) (E4M3
 * with `tensor`), INT4 fl32(q · scale). The definition of the prefill values: the fallback
 * widening kernel is this per element, and the tests hold the fast one to it bit for bit. */
template <int FMT>
static __host__ __device__ inline float ql_value(const qlayout &L, const void *data,
                                                 const void *scale, int tensor, int64_t r,
                                                 int64_t c)
{
    const ql_pos at = ql_locate(L, r, c);
    const uint32_t w = reinterpret_cast<const uint32_t *>(data)[at.word];
    if (FMT == G4Q_WF_NVFP4) {
        uint32_t P[4];
        ql_e2m1_unpack(w, P);
        const uint8_t sb = reinterpret_cast<const uint8_t *>(scale)[ql_nvfp4_scale_at(L, r, c / 16)];
        return G4Q_FMUL(g4q_e2m1_decode(ql_e2m1_code(P[at.p], at.e)), g4q_e4m3_decode(sb));
    } else if (FMT == G4Q_WF_FP8_BLOCK) {
        uint32_t P[2];
        ql_fp8_unpack(w, P);
        const float q = g4q_e4m3_decode(ql_fp8_code(P[at.p], at.e));
        if (tensor) return q;
        return G4Q_FMUL(q, reinterpret_cast<const float *>(scale)[(r / 128) * L.nsc + c / 128]);
    }
    const int q = (int)((w >> (4 * at.p + 16 * at.e)) & 15u) - 8;
    return G4Q_FMUL((float)q, reinterpret_cast<const float *>(scale)[ql_int4_scale_at(L, r, c / L.group)]);
}

/* Decode GEMV (cuda_qgemv.cu): whether it takes weight w at n tokens, and the launch. */
bool g4q_cuda_qgemv_ok(const g4q_bweight *w, int n);
g4q_status g4q_cuda_qgemv(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                          int n);

/* Prefill widening (cuda_qgemm.cu): rows [r0, r0 + nr) of packed weight w (0 <= r0,
 * r0 + nr <= rows; nr <= 0 does nothing) written to ws as bf16 [nr, cols] on the backend's
 * stream, every element bit for bit __float2bfloat16_rn(ql_value(...)) (ws 16-byte aligned). g4q_cuda_qslice_fast
 * says whether w takes the warp-per-tile kernel (cols % 8 == 0 and no QG_NOGEMV) rather than
 * the one-thread-per-element fallback; any r0 and nr take either. */
bool g4q_cuda_qslice_fast(const g4q_bweight *w);
g4q_status g4q_cuda_qslice(g4q_backend *be, const g4q_bweight *w, int64_t r0, int64_t nr,
                           __nv_bfloat16 *ws);

#endif
