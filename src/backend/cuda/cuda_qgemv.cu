// Decode GEMV of the packed formats on tensor cores: y[n, rows] = x[n, cols] · Wᵀ for n <= 4
// tokens and cols % 16 == 0. The numerics, the device layout (cuda_qlayout.h) and why the sums
// are exact up to their order are described in cuda_qgemm.cu; this file is the kernel.
//
// One warp computes one row tile (16 outputs) over a range of its superblocks with
// mma.sync.m16n8k16 (bf16 inputs, fp32 accumulators): the weights are the A operand (16 rows x
// 16 inputs, in a column order chosen per lane by the layout), x the B operand (column n = token
// n, columns n..7 zero). Per superblock a lane makes one 16-byte streaming load of codes; QL_U of
// them (one iteration; FP8: two) are in flight while the previous iteration is computed. ks warps
// of a block share a row tile, each taking a contiguous range of iterations; their fp32 sums meet
// in shared memory and the tile's first warp adds them in warp order.
//
// One launch may cover several weights of one format over the same x (matmul3: q, k, v, their
// row tiles end to end), or a gate and an up weight (matmul_geglu: each warp sums the same tile of
// both, one after the other, and applies GeGLU before the store). Every output is the same sum in
// the same order as the single-weight launch, so the fused ops equal matmul (and geglu) bit for
// bit; they save the launches and the tails between the weights.
#include <cuda_fp8.h>

#include "backend/cuda/cuda_qlayout.h"

#define QV_WARPS 8
#define QV_BLOCKS_PER_SM 2   /* the launch bound: at most 128 registers per thread */
#define QV_TARGET_WARPS 2048 /* the fewest warps a launch aims for (132 SMs x ~16) */

/* One weight of a launch. */
struct qv_seg {
    const uint4 *q;   /* codes */
    const void *s;    /* scales */
    __nv_bfloat16 *y; /* [n, rows] */
    int rows, nrt;    /* rows and row tiles (0 for an unused segment) */
    float g;          /* NVFP4: the stored global scale */
};
/* Segments as separate members (a run-time index into a parameter array would copy the
 * parameters to local memory). QV_ONE: s0 only; QV_MULTI: the launch's tiles are s0's, then
 * s1's, then s2's; QV_GEGLU: s0 is the gate, s1 the up weight, and the tiles are s0's. */
struct qv_args {
    qv_seg s0, s1, s2;
    const __nv_bfloat16 *x;  /* [n, cols] */
    int cols, n;
    int nrt, nsb, niter, ks; /* the launch's row tiles; superblocks and iterations per tile; warps per tile */
    int group, ngp, nsc;     /* INT4 group and groups per row; FP8 scale columns */
};

/* INT4 group classes: every superblock in one group, every 16 columns in one group, or groups
 * that end in the middle of a 16-column MMA (group % 16 == 8). */
enum { QV_G64 = 0, QV_G16 = 1, QV_G8 = 2 };

static __device__ __forceinline__ void qv_mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                              uint32_t a3, uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* 16 or 8 bytes of x (zeros for a column n >= a.n or past the columns). */
static __device__ __forceinline__ uint4 qv_x16(bool ok, const uint4 *p)
{
    return ok ? __ldg(p) : make_uint4(0, 0, 0, 0);
}
static __device__ __forceinline__ uint2 qv_x8(bool ok, const uint2 *p)
{
    return ok ? __ldg(p) : make_uint2(0, 0);
}

/* Weights read by one iteration of a lane (the scale fields a format does not use stay unset). */
struct qv_buf {
    uint4 q[QL_U];
    uint2 s8;         /* NVFP4: 8 scale bytes */
    float s[QL_U][2]; /* INT4 (QV_G64): scales of rows g, g + 8; FP8: s[0][0] */
};

/* The sums of row tile `tile` over iterations [i0, i1) into acc (the C fragment), for lane
 * (g, t). Waits for the previous kernel (PDL) after the first weight loads. GC: the INT4 group
 * class (QV_G*); NVFP4 QG_MUL or QG_DIV (used by qv_kernel only); FP8 0. */
template <int FMT, int GC>
static __device__ __forceinline__ void qv_run(const qv_args &a, const qv_seg &sg, int tile,
                                              int i0, int i1, int lane, float acc[4])
{
    const int g = lane >> 2, t = lane & 3;
    const bool xl = g < a.n; /* this lane's B column is a token */
    /* x columns of this lane in superblock 0 (NVFP4 16·t, INT4 4·t, FP8 8·t), 2 bf16 per u32 */
    const int xc0 = FMT == G4Q_WF_NVFP4 ? 16 * t : FMT == G4Q_WF_INT4 ? 4 * t : 8 * t;
    const uint32_t *xp = reinterpret_cast<const uint32_t *>(a.x + (int64_t)(xl ? g : 0) * a.cols + xc0);
    const int width = FMT == G4Q_WF_FP8_BLOCK ? 32 : 64;
    const uint4 *qp = sg.q + (int64_t)tile * a.nsb * 32 + lane;
    /* INT4 scale groups: the loads run one iteration ahead of the MMAs (QV_G64), so each side
     * keeps its own position: group gi, columns left in it. */
    int lgi = 0, lrem = 0, cgi = 0, crem = 0;
    if (FMT == G4Q_WF_INT4) {
        const int c_start = i0 * QL_U * 64;
        lgi = cgi = c_start / a.group;
        lrem = crem = a.group - c_start % a.group;
    }
    const float *s4 = reinterpret_cast<const float *>(sg.s) + (int64_t)tile * a.ngp * QL_TILE + g;

    auto load = [&](int i, qv_buf &b) {
        const uint4 *p = qp + (int64_t)i * (QL_U * 32);
#pragma unroll
        for (int u = 0; u < QL_U; u++)
            b.q[u] = __ldcs(p + u * 32);
        if (FMT == G4Q_WF_NVFP4)
            b.s8 = __ldcs(reinterpret_cast<const uint2 *>(sg.s) + ((int64_t)tile * a.niter + i) * 32 +
                          lane);
        if (FMT == G4Q_WF_FP8_BLOCK)
            b.s[0][0] = __ldg(reinterpret_cast<const float *>(sg.s) + (int64_t)(tile >> 3) * a.nsc + i);
        if (FMT == G4Q_WF_INT4 && GC == QV_G64) {
#pragma unroll
            for (int u = 0; u < QL_U; u++) {
                b.s[u][0] = __ldg(s4 + lgi * QL_TILE);
                b.s[u][1] = __ldg(s4 + lgi * QL_TILE + 8);
                lrem -= 64;
                if (lrem == 0) lgi++, lrem = a.group;
            }
        }
    };

    auto compute = [&](int i, const qv_buf &b) {
        /* this iteration's x, and how many of its columns are real for this lane's offset */
        const uint32_t *xi = xp + (int64_t)i * (QL_U * width / 2);
        const int cleft = a.cols - i * QL_U * width - xc0;
        if (FMT == G4Q_WF_NVFP4) {
#pragma unroll
            for (int u = 0; u < QL_U; u++) {
                const bool ok = xl && 64 * u < cleft; /* this lane's block of superblock u */
                const uint4 x0 = qv_x16(ok, reinterpret_cast<const uint4 *>(xi + 32 * u));
                const uint4 x1 = qv_x16(ok, reinterpret_cast<const uint4 *>(xi + 32 * u + 4));
                const uint32_t X[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
                uint32_t sg, sg8, A[4][4];
                ql_nvfp4_scales(((u < 2 ? b.s8.x : b.s8.y) >> (16 * (u & 1))) & 0xffffu, &sg, &sg8);
                ql_nvfp4_afrag(b.q[u], sg, sg8, A);
#pragma unroll
                for (int j = 0; j < 4; j++) /* x columns 16·t + 4·j .. + 3 */
                    qv_mma(acc, A[j][0], A[j][1], A[j][2], A[j][3], X[2 * j], X[2 * j + 1]);
            }
        } else if (FMT == G4Q_WF_FP8_BLOCK) {
            float ct[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int u = 0; u < QL_U; u++) {
                const uint4 xv = qv_x16(xl && 32 * u < cleft, reinterpret_cast<const uint4 *>(xi + 16 * u));
                uint32_t A[2][4];
                ql_fp8_afrag(b.q[u], A);
                qv_mma(ct, A[0][0], A[0][1], A[0][2], A[0][3], xv.x, xv.y); /* 8·t + 0..3 */
                qv_mma(ct, A[1][0], A[1][1], A[1][2], A[1][3], xv.z, xv.w); /* 8·t + 4..7 */
            }
            const float s = b.s[0][0]; /* one 128 x 128 block: rows of a tile, the iteration */
#pragma unroll
            for (int r = 0; r < 4; r++)
                acc[r] = __fmaf_rn(s, ct[r], acc[r]);
        } else {
#pragma unroll
            for (int u = 0; u < QL_U; u++) {
                float ct[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                uint32_t A[4][4];
                ql_int4_afrag(b.q[u], A);
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int c = 64 * u + 16 * j; /* this lane's 4 columns, from xc0 */
                    const uint2 xv = qv_x8(xl && c < cleft, reinterpret_cast<const uint2 *>(xi + c / 2));
                    const uint32_t a0 = A[j][0], a1 = A[j][1], a2 = A[j][2], a3 = A[j][3];
                    if (GC == QV_G64) {
                        qv_mma(ct, a0, a1, a2, a3, xv.x, xv.y);
                    } else if (GC == QV_G16) { /* one group per 16 columns */
                        const float sg = __ldg(s4 + cgi * QL_TILE), sg8 = __ldg(s4 + cgi * QL_TILE + 8);
                        qv_mma(ct, a0, a1, a2, a3, xv.x, xv.y);
                        acc[0] = __fmaf_rn(sg, ct[0], acc[0]), acc[1] = __fmaf_rn(sg, ct[1], acc[1]);
                        acc[2] = __fmaf_rn(sg8, ct[2], acc[2]), acc[3] = __fmaf_rn(sg8, ct[3], acc[3]);
                        ct[0] = ct[1] = ct[2] = ct[3] = 0.0f;
                        crem -= 16;
                        if (crem == 0) cgi++, crem = a.group;
                    } else { /* columns 0..7 (lanes t < 2) and 8..15 (t >= 2) in their groups */
#pragma unroll
                        for (int half = 0; half < 2; half++) {
                            const bool mine = (t >> 1) == half;
                            const float sg = __ldg(s4 + cgi * QL_TILE),
                                        sg8 = __ldg(s4 + cgi * QL_TILE + 8);
                            qv_mma(ct, mine ? a0 : 0u, mine ? a1 : 0u, mine ? a2 : 0u,
                                   mine ? a3 : 0u, xv.x, xv.y);
                            acc[0] = __fmaf_rn(sg, ct[0], acc[0]), acc[1] = __fmaf_rn(sg, ct[1], acc[1]);
                            acc[2] = __fmaf_rn(sg8, ct[2], acc[2]), acc[3] = __fmaf_rn(sg8, ct[3], acc[3]);
                            ct[0] = ct[1] = ct[2] = ct[3] = 0.0f;
                            crem -= 8;
                            if (crem == 0) cgi++, crem = a.group;
                        }
                    }
                }
                if (GC == QV_G64) {
                    acc[0] = __fmaf_rn(b.s[u][0], ct[0], acc[0]);
                    acc[1] = __fmaf_rn(b.s[u][0], ct[1], acc[1]);
                    acc[2] = __fmaf_rn(b.s[u][1], ct[2], acc[2]);
                    acc[3] = __fmaf_rn(b.s[u][1], ct[3], acc[3]);
                }
            }
        }
    };

    /* D buffers: the loads run D - 1 iterations ahead of the MMAs; the first ones (weights only)
     * before the wait for the kernel that writes x. FP8 gains from a third buffer (12b decode
     * 4.83 -> 4.72 ms/token); NVFP4 does not (4.38 either way) and INT4 spills with it
     * (bench/results/h200_2026-12-04-k.md). */
    constexpr int D = FMT == G4Q_WF_FP8_BLOCK ? 3 : 2;
    qv_buf b[D];
#pragma unroll
    for (int s = 0; s + 1 < D; s++)
        if (i0 + s < i1) load(i0 + s, b[s]);
    g4q_pdl_wait();
    for (int i = i0; i < i1; i += D) {
#pragma unroll
        for (int s = 0; s < D; s++) {
            if (i + s >= i1) break;
            if (i + s + D - 1 < i1) load(i + s + D - 1, b[(s + D - 1) % D]);
            compute(i + s, b[s]);
        }
    }
}

/* The fp32 sums of a tile into its bf16-rounded outputs' values: NVFP4 applies the global scale
 * (the A operand held t · 2^-14). */
template <int FMT, int GC>
static __device__ __forceinline__ void qv_finish(const qv_seg &sg, float acc[4])
{
    if (FMT == G4Q_WF_NVFP4) {
#pragma unroll
        for (int r = 0; r < 4; r++)
            acc[r] = GC == QG_DIV ? __fdiv_rn(__fmul_rn(acc[r], 16384.0f), sg.g)
                                  : __fmul_rn(__fmul_rn(acc[r], 16384.0f), sg.g);
    }
}

enum { QV_ONE = 0, QV_MULTI = 1, QV_GEGLU = 2 }; /* launch modes: one weight, q/k/v, gate/up */

/* Row tile `tile` of weight sg (with QV_GEGLU also of the up weight su) by the ks warps of its
 * block: sums, the warps' partials added in warp order, the store. */
template <int FMT, int GC, int MODE>
static __device__ __forceinline__ void qv_tile(const qv_args &a, const qv_seg &sg,
                                               const qv_seg &su, int tile, bool live)
{
    constexpr bool GEGLU = MODE == QV_GEGLU;
    __shared__ float4 part[GEGLU ? 2 : 1][QV_WARPS][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, ks = a.ks, k = warp % ks;
    const int i0 = live ? (int)((int64_t)k * a.niter / ks) : 0;
    const int i1 = live ? (int)((int64_t)(k + 1) * a.niter / ks) : 0;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, accu[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    qv_run<FMT, GC>(a, sg, tile, i0, i1, lane, acc);
    if (GEGLU) qv_run<FMT, GC>(a, su, tile, i0, i1, lane, accu);
    g4q_pdl_trigger(); /* the weights are read: the next kernel may start on freed SMs */
    if (ks > 1) {
        part[0][warp][lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
        if (GEGLU) part[GEGLU ? 1 : 0][warp][lane] = make_float4(accu[0], accu[1], accu[2], accu[3]);
        __syncthreads();
        if (k != 0) return;
        for (int j = 1; j < ks; j++) {
            const float4 v = part[0][warp + j][lane];
            acc[0] += v.x, acc[1] += v.y, acc[2] += v.z, acc[3] += v.w;
            if (GEGLU) {
                const float4 u = part[GEGLU ? 1 : 0][warp + j][lane];
                accu[0] += u.x, accu[1] += u.y, accu[2] += u.z, accu[3] += u.w;
            }
        }
    }
    if (!live) return;
    qv_finish<FMT, GC>(sg, acc);
    if (GEGLU) { /* as geglu_vec_kernel on the two rounded outputs */
        qv_finish<FMT, GC>(su, accu);
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const float gl = g4q_rnd<__nv_bfloat16>(g4q_gelu_tanh(g4q_rnd<__nv_bfloat16>(acc[r])));
            acc[r] = gl * g4q_rnd<__nv_bfloat16>(accu[r]);
        }
    }
    /* C fragment: acc[0], acc[1] row g tokens 2t, 2t + 1; acc[2], acc[3] row g + 8. */
    const int g = lane >> 2, t = lane & 3;
    const int64_t r0 = (int64_t)tile * QL_TILE + g, r1 = r0 + 8;
#pragma unroll
    for (int c = 0; c < 2; c++) {
        const int n = 2 * t + c;
        if (n >= a.n) break;
        if (r0 < sg.rows) sg.y[(int64_t)n * sg.rows + r0] = __float2bfloat16_rn(acc[c]);
        if (r1 < sg.rows) sg.y[(int64_t)n * sg.rows + r1] = __float2bfloat16_rn(acc[2 + c]);
    }
}

/* QV_MULTI picks its weight at run time; every mode works on local copies of its segments.
 * QV_BLOCKS_PER_SM = 3 (80 registers) ran NVFP4 slower, 12b decode 4.25-4.34 -> 4.54-4.85
 * ms/token (bench/results/h200_2026-12-04-k.md). */
template <int FMT, int GC, int MODE>
static __global__ void __launch_bounds__(QV_WARPS * 32, QV_BLOCKS_PER_SM)
    qv_kernel(const qv_args ap)
{
    /* A local copy: references into the parameters made the compiler address them through a
     * register inside the loop (15% slower than immediate offsets). */
    const qv_args a = ap;
    const int tile = (int)blockIdx.x * (QV_WARPS / a.ks) + (int)(threadIdx.x >> 5) / a.ks;
    const bool live = tile < a.nrt;
    if (MODE == QV_MULTI) {
        /* field by field: a whole-struct choice is compiled to a register-indexed parameter read */
        const int n0 = a.s0.nrt, n01 = n0 + a.s1.nrt;
        const int w = tile < n0 ? 0 : tile < n01 ? 1 : 2;
        qv_seg sg;
        sg.q = w == 0 ? a.s0.q : w == 1 ? a.s1.q : a.s2.q;
        sg.s = w == 0 ? a.s0.s : w == 1 ? a.s1.s : a.s2.s;
        sg.y = w == 0 ? a.s0.y : w == 1 ? a.s1.y : a.s2.y;
        sg.rows = w == 0 ? a.s0.rows : w == 1 ? a.s1.rows : a.s2.rows;
        sg.nrt = w == 0 ? a.s0.nrt : w == 1 ? a.s1.nrt : a.s2.nrt;
        sg.g = w == 0 ? a.s0.g : w == 1 ? a.s1.g : a.s2.g;
        qv_tile<FMT, GC, MODE>(a, sg, sg, tile - (w == 0 ? 0 : w == 1 ? n0 : n01), live);
    } else {
        qv_tile<FMT, GC, MODE>(a, a.s0, a.s1, tile, live);
    }
}

bool g4q_cuda_qgemv_ok(const g4q_bweight *w, int n)
{
    return w->format != G4Q_WF_BF16 && w->act == G4Q_ACTQ_NONE && n >= 1 && n <= 4 &&
           w->cols % 16 == 0 && !(w->qmode & QG_NOGEMV) && w->rows <= INT32_MAX - QL_TILE &&
           w->cols <= INT32_MAX / 2;
}

/* Blocks of a launch of nrt row tiles at ks warps per tile. */
static int64_t qv_blocks(int64_t nrt, int ks)
{
    return (nrt + QV_WARPS / ks - 1) / (QV_WARPS / ks);
}

/* Warps per row tile: the fewest (1, 2, 4, 8) that give the GPU QV_TARGET_WARPS warps; for NVFP4
 * and FP8 half that many when this puts the launch in one wave (QV_BLOCKS_PER_SM) and still
 * gives 3/4 of the target (a 15360 x 3840 GEMV: 480 -> 240 blocks, NVFP4 11.8 -> 10.9 us, FP8
 * 17.6 -> 16.0 us; INT4 decode was 1% slower with it, bench/results/h200_2026-12-04-k.md); or
 * the backend's override (G4Q_CUDA_GEMV_KPR, for benchmarks: 1, 2, 4 or 8; -1 leaves the
 * one-wave halving out). At most one per iteration. */
static int qv_ks(const g4q_backend *be, int fmt, int64_t nrt, int64_t niter)
{
    const int forced = g4q_cuda_st(be)->gemv_kpr;
    int ks = 1;
    if (forced == 1 || forced == 2 || forced == 4 || forced == 8) {
        ks = forced;
    } else {
        while (ks < QV_WARPS && nrt * ks < QV_TARGET_WARPS)
            ks *= 2;
        const int64_t wave = QV_BLOCKS_PER_SM * (int64_t)g4q_cuda_st(be)->sm_count;
        if (fmt != G4Q_WF_INT4 && forced != -1 && ks > 1 && qv_blocks(nrt, ks) > wave &&
            qv_blocks(nrt, ks / 2) <= wave && nrt * (ks / 2) >= QV_TARGET_WARPS * 3 / 4)
            ks /= 2;
    }
    while (ks > 1 && ks > niter)
        ks /= 2;
    return ks;
}

static qv_seg qv_one(g4q_buf *y, const g4q_bweight *w)
{
    const qlayout L = ql_make(w->format, w->rows, w->cols, w->group);
    qv_seg sg = {};
    sg.q = reinterpret_cast<const uint4 *>(w->data);
    sg.s = w->qscale;
    sg.y = reinterpret_cast<__nv_bfloat16 *>(y->data);
    sg.rows = (int)w->rows;
    sg.nrt = (int)L.nrt;
    sg.g = w->qg;
    return sg;
}

template <int MODE> static void (*qv_pick(const g4q_bweight *w))(const qv_args)
{
    if (w->format == G4Q_WF_NVFP4)
        return (w->qmode & QG_DIV) ? qv_kernel<G4Q_WF_NVFP4, QG_DIV, MODE>
                                   : qv_kernel<G4Q_WF_NVFP4, QG_MUL, MODE>;
    if (w->format == G4Q_WF_FP8_BLOCK) return qv_kernel<G4Q_WF_FP8_BLOCK, 0, MODE>;
    return w->group % 64 == 0   ? qv_kernel<G4Q_WF_INT4, QV_G64, MODE>
           : w->group % 16 == 0 ? qv_kernel<G4Q_WF_INT4, QV_G16, MODE>
                                : qv_kernel<G4Q_WF_INT4, QV_G8, MODE>;
}

/* One launch over nw weights (g4q_cuda_qgemv_fits them together), or with QV_GEGLU over the gate
 * w[0] and the up weight w[1] into y[0]. */
template <int MODE>
static g4q_status qv_launch(g4q_backend *be, const g4q_buf *x, int n, g4q_buf *const *y,
                            const g4q_bweight *const *w, int nw)
{
    g4q_ctx *ctx = be->ctx;
    constexpr bool GEGLU = MODE == QV_GEGLU;
    const g4q_bweight *w0 = w[0];
    const qlayout L = ql_make(w0->format, w0->rows, w0->cols, w0->group);
    qv_args a = {};
    a.s0 = qv_one(y[0], w0);
    if (nw > 1) a.s1 = qv_one(GEGLU ? y[0] : y[1], w[1]);
    if (nw > 2) a.s2 = qv_one(y[2], w[2]);
    a.x = reinterpret_cast<const __nv_bfloat16 *>(x->data);
    a.cols = (int)w0->cols;
    a.n = n;
    a.nrt = GEGLU ? a.s0.nrt : a.s0.nrt + a.s1.nrt + a.s2.nrt;
    a.nsb = (int)L.nsb;
    a.niter = (int)(L.nsb / QL_U);
    a.ks = qv_ks(be, w0->format, a.nrt, a.niter);
    a.group = w0->group;
    a.ngp = (int)L.ngp;
    a.nsc = (int)L.nsc;
    const dim3 grid(g4q_cuda_blocks((size_t)a.nrt, QV_WARPS / a.ks)), block(QV_WARPS * 32);
    G4Q_CUDA_CHECK(g4q_cuda_launch(be, qv_pick<MODE>(w0), grid, block, 0, a));
    return G4Q_OK;
}

bool g4q_cuda_qgemv_fits(const g4q_backend *be, const g4q_bweight *a, const g4q_bweight *b, int n)
{
    return g4q_cuda_st(be)->qfuse && g4q_cuda_qgemv_ok(a, n) && g4q_cuda_qgemv_ok(b, n) &&
           a->format == b->format && a->cols == b->cols && a->group == b->group &&
           a->qmode == b->qmode &&
           (int64_t)ql_make(a->format, a->rows, a->cols, a->group).nrt +
                   ql_make(b->format, b->rows, b->cols, b->group).nrt <=
               INT32_MAX / 4;
}

g4q_status g4q_cuda_qgemv(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                          int n)
{
    return qv_launch<QV_ONE>(be, x, n, &y, &w, 1);
}

g4q_status g4q_cuda_qgemv3(g4q_backend *be, const g4q_buf *x, int n, g4q_buf *const *y,
                           const g4q_bweight *const *w, int nw)
{
    return qv_launch<QV_MULTI>(be, x, n, y, w, nw);
}

g4q_status g4q_cuda_qgemv_geglu(g4q_backend *be, g4q_buf *y, const g4q_buf *x,
                                const g4q_bweight *wg, const g4q_bweight *wu, int n)
{
    const g4q_bweight *w[2] = {wg, wu};
    return qv_launch<QV_GEGLU>(be, x, n, &y, w, 2);
}
