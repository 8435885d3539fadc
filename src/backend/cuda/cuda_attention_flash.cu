// Prefill attention as one tiled tensor-core kernel (flash-attention style): no score matrix in
// memory, keys above the causal diagonal or outside the window never touched.
//
// Numerics: those of cuda_attention.cu (HF eager attention in bf16): score s = bf16(bf16(q·k) ·
// scale) with an fp32 dot product, p = bf16(exp(s - M) · (1/L)) with M the row's maximum and L =
// Σ exp(s - M) over its visible keys, out = bf16(Σ p·v) in fp32. Because p is rounded after
// normalisation, M and L must be known before the first p·v, so a block walks its key tiles
// twice: pass 1 computes the scores and the running M and L (L rescaled by exp(M_old - M_new)
// when the maximum grows: the one difference from the materialised form besides the order of
// fp32 sums, a few fp32 ulps of L), pass 2 computes the scores again, p, and Σ p·v. Scores cost
// twice their FLOPs; in exchange nothing of size T × keys is written or read, and the causal half
// of the key tiles is skipped.
//
// Work split. A block takes FL_BM(HD) query rows of one query head: FL_RG row groups of 16 rows,
// each shared by FL_W(HD) warps that split the head dims into slices of FL_DW(HD) (128 for head
// dims of 128 and more). Every warp multiplies its 16 rows' query slice (held in registers) with
// the key tile's slice (mma.sync m16n8k16, bf16 in, fp32 out); with FL_W > 1 the warps of a row
// group add their partial scores through shared memory in warp order, so all of them hold the
// same scores and statistics; each then multiplies p with its slice of V's dims. K and V tiles of
// FL_BN keys are double-buffered in shared memory (cp.async while the previous tile is used;
// rows XOR-swizzled in 16-byte chunks so that ldmatrix reads hit distinct banks). Blocks of the
// heaviest row tiles (most keys under the causal mask) are launched first.
#include <string.h>

#include "backend/cuda/cuda_attention_geom.h"
#include "backend/cuda/cuda_backend.h"

#define FL_BN 32    /* keys per tile */
#define FL_MIN_T 16 /* chunks of at least this many rows take the kernel */

/* Head dims per warp, warps per row group, row groups and rows per block for head_dim HD. */
template <int HD> struct fl_shape {
    static constexpr int DW = HD < 256 ? HD : 256;
    static constexpr int W = HD / DW;
    static constexpr int WARPS = W > 1 ? 8 : 4;
    static constexpr int THREADS = 32 * WARPS;
    static constexpr int RG = WARPS / W;
    static constexpr int BM = 16 * RG;
    static constexpr int CH = HD / 8; /* 16-byte chunks per row */
    /* shared memory: the query tile, the partial scores, then K0 V0 K1 V1 */
    static constexpr int Q_BYTES = BM * HD * 2;
    static constexpr int X_BYTES = W > 1 ? WARPS * 32 * (FL_BN / 2) * 4 : 0;
    static constexpr int KV_AT = Q_BYTES + X_BYTES;
    static constexpr int KV_BYTES = FL_BN * HD * 2;
    static constexpr int SMEM = KV_AT + 4 * KV_BYTES;
};

/* Byte offset of 16-byte chunk c of row r in a tile of CH chunks per row (XOR swizzle). */
template <int CH> static __device__ __forceinline__ uint32_t fl_at(int r, int c)
{
    return (uint32_t)(r * CH + (c ^ (r & 7))) * 16u;
}

static __device__ __forceinline__ void fl_cp16(uint32_t dst, const void *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src),
                 "r"(ok ? 16 : 0));
}

static __device__ __forceinline__ void fl_ldsm4(uint32_t addr, uint32_t r[4])
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

static __device__ __forceinline__ void fl_ldsm4t(uint32_t addr, uint32_t r[4])
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

static __device__ __forceinline__ void fl_mma(float c[4], const uint32_t a[4], uint32_t b0,
                                              uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ uint32_t fl_pack(float lo, float hi)
{
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&v);
}

/* The key tiles of the rows [t0, t1) of the chunk: tiles of FL_BN keys over the cache [0, nc)
 * (none when the window hides every cached position from all of these rows), then over the new
 * keys from the first one the window shows to row t0 up to the causal limit of row t1 - 1; tile
 * i covers [*j0, *j1). */
struct fl_tiles {
    int ncache; /* cache tiles */
    int nb, nn; /* first new key (absolute index) and new-key tiles */
};
static __device__ __forceinline__ fl_tiles fl_tiles_of(const att_geom &g, int t0, int t1)
{
    fl_tiles r;
    const bool cache_seen = g.nc > 0 && (g.window <= 0 || t0 + 1 < g.window);
    r.ncache = cache_seen ? (g.nc + FL_BN - 1) / FL_BN : 0;
    int first = g.window > 0 ? t0 - g.window + 1 : 0;
    first = first > 0 ? first / FL_BN * FL_BN : 0;
    r.nb = g.nc + first;
    r.nn = (t1 - first + FL_BN - 1) / FL_BN;
    return r;
}
static __device__ __forceinline__ void fl_tile(const att_geom &g, const fl_tiles &r, int i, int t1,
                                               int *j0, int *j1)
{
    if (i < r.ncache) {
        *j0 = i * FL_BN;
        *j1 = min(*j0 + FL_BN, g.nc);
    } else {
        *j0 = r.nb + (i - r.ncache) * FL_BN;
        *j1 = min(*j0 + FL_BN, g.nc + t1);
    }
}

/* Copies rows [j0, j1) of a K or V tile into shared memory at base (rows past j1 zero). Thread
 * x copies chunk x % CH of rows x / CH, x / CH + THREADS / CH, ... */
template <int HD>
static __device__ __forceinline__ void fl_load(const att_geom &g, const __nv_bfloat16 *cache,
                                               const __nv_bfloat16 *fresh, int kvh, int j0, int j1,
                                               uint32_t base)
{
    typedef fl_shape<HD> S;
    constexpr int CH = S::CH, RSTEP = S::THREADS / CH;
    const int c = threadIdx.x % CH;
#pragma unroll
    for (int r = threadIdx.x / CH; r < FL_BN; r += RSTEP) {
        const int j = j0 + r;
        const bool ok = j < j1;
        const __nv_bfloat16 *src = ok ? key_row(g, cache, fresh, j, kvh) + 8 * c : fresh;
        fl_cp16(base + fl_at<CH>(r, c), src, ok);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
}

/* Whether every key of tile [j0, j1) is visible to every row [ta, tb] of a row group (no masks
 * needed): a whole tile, of cached keys with no window, or of new keys at or below the causal
 * diagonal of row ta and inside the window of row tb. */
static __device__ __forceinline__ bool fl_full(const att_geom &g, int j0, int j1, int ta, int tb)
{
    if (j1 - j0 != FL_BN) return false;
    if (j0 < g.nc) return g.window <= 0;
    return j1 - 1 - g.nc <= ta && (g.window <= 0 || tb - (j0 - g.nc) < g.window);
}

/* grid (nh, row tiles): out rows [t0, t0 + BM) of query head blockIdx.x, row tiles in reverse. */
template <int HD>
static __global__ void __launch_bounds__(fl_shape<HD>::THREADS, HD <= 256 ? 2 : 1)
    flash_kernel(att_geom g, const __nv_bfloat16 *__restrict__ q,
                 const __nv_bfloat16 *__restrict__ kc, const __nv_bfloat16 *__restrict__ kn,
                 const __nv_bfloat16 *__restrict__ vc, const __nv_bfloat16 *__restrict__ vn,
                 __nv_bfloat16 *__restrict__ out, float scale)
{
    typedef fl_shape<HD> S;
    constexpr int CH = S::CH, KS = S::DW / 16, NT = S::DW / 8;
    extern __shared__ __align__(128) unsigned char fl_smem[];
    const uint32_t sq = (uint32_t)__cvta_generic_to_shared(fl_smem), skv = sq + S::KV_AT;
    float *xs = reinterpret_cast<float *>(fl_smem + S::Q_BYTES); /* partial scores (W > 1) */

    const int h = blockIdx.x, kvh = h / g.group;
    const int t0 = ((int)gridDim.y - 1 - (int)blockIdx.y) * S::BM;
    const int t1 = min(t0 + S::BM, g.T);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int rg = warp % S::RG, ws = warp / S::RG; /* row group, dim slice */
    const int gq = lane >> 2, tq = lane & 3;

    for (int e = threadIdx.x; e < S::BM * CH; e += S::THREADS) { /* the query tile */
        const int r = e / CH, c = e % CH;
        const bool ok = t0 + r < t1;
        fl_cp16(sq + fl_at<CH>(r, c), q + ((size_t)(ok ? t0 + r : 0) * g.nh + h) * HD + 8 * c, ok);
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
    const fl_tiles tl = fl_tiles_of(g, t0, t1);
    const int ntiles = tl.ncache + tl.nn; /* >= 1: row t0 sees itself */

    /* this lane's two rows (gq, gq + 8 of the row group), their positions; the row group's */
    const int ta = t0 + 16 * rg, ra = ta + gq, rb = ra + 8;
    const int pa = g.n_past + ra, pb = g.n_past + rb;
    const bool oka = ra < t1, okb = rb < t1;
    const int qrow = 16 * rg + (lane & 15); /* this lane's row of the query A fragments */

    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    for (int pass = 0; pass < 2; pass++) {
        const bool pv = pass == 1;
        {
            int j0, j1;
            fl_tile(g, tl, 0, t1, &j0, &j1);
            fl_load<HD>(g, kc, kn, kvh, j0, j1, skv);
            if (pv) fl_load<HD>(g, vc, vn, kvh, j0, j1, skv + S::KV_BYTES);
        }
        /* the statistics as the multiplier of pass 2: exp(s - m) · inv (m = 0 for a row that saw
         * no key, so that its p are exp(-inf) = 0) */
        const float ms[2] = {m[0] == -INFINITY ? 0.0f : m[0], m[1] == -INFINITY ? 0.0f : m[1]};
        const float inv[2] = {l[0] > 0.0f ? 1.0f / l[0] : 0.0f, l[1] > 0.0f ? 1.0f / l[1] : 0.0f};
        for (int i = 0; i < ntiles; i++) {
            asm volatile("cp.async.wait_group 0;" ::: "memory");
            __syncthreads(); /* tile i (and the query tile) landed; tile i - 1 is done with */
            int j0, j1;
            fl_tile(g, tl, i, t1, &j0, &j1);
            const uint32_t bk = skv + (uint32_t)(i & 1) * 2u * S::KV_BYTES, bv = bk + S::KV_BYTES;
            if (i + 1 < ntiles) {
                int n0, n1;
                fl_tile(g, tl, i + 1, t1, &n0, &n1);
                const uint32_t nk = skv + (uint32_t)((i + 1) & 1) * 2u * S::KV_BYTES;
                fl_load<HD>(g, kc, kn, kvh, n0, n1, nk);
                if (pv) fl_load<HD>(g, vc, vn, kvh, n0, n1, nk + S::KV_BYTES);
            }

            /* scores of the slice: 16 rows x FL_BN keys */
            float s[FL_BN / 8][4];
#pragma unroll
            for (int n = 0; n < FL_BN / 8; n++)
                s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int k = 0; k < KS; k++) {
                const int c = (S::DW * ws + 16 * k) / 8;
                uint32_t a[4];
                fl_ldsm4(sq + fl_at<CH>(qrow, c + (lane >> 4)), a);
#pragma unroll
                for (int n = 0; n < FL_BN / 16; n++) {
                    uint32_t b[4];
                    fl_ldsm4(bk + fl_at<CH>(16 * n + (lane & 7) + ((lane >> 4) << 3),
                                            c + ((lane >> 3) & 1)),
                             b);
                    fl_mma(s[2 * n], a, b[0], b[1]);
                    fl_mma(s[2 * n + 1], a, b[2], b[3]);
                }
            }
            if (S::W > 1) { /* the row group's slices summed in warp order */
                float *mine = xs + ((size_t)warp * 32 + lane) * (FL_BN / 2);
#pragma unroll
                for (int n = 0; n < FL_BN / 8; n++)
                    reinterpret_cast<float4 *>(mine)[n] =
                        make_float4(s[n][0], s[n][1], s[n][2], s[n][3]);
                asm volatile("bar.sync %0, %1;" ::"r"(1 + rg), "r"(32 * S::W) : "memory");
#pragma unroll
                for (int n = 0; n < FL_BN / 8; n++) {
                    float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
                    for (int w = 0; w < S::W; w++) {
                        const float4 v = reinterpret_cast<const float4 *>(
                            xs + ((size_t)(w * S::RG + rg) * 32 + lane) * (FL_BN / 2))[n];
                        a.x += v.x, a.y += v.y, a.z += v.z, a.w += v.w;
                    }
                    s[n][0] = a.x, s[n][1] = a.y, s[n][2] = a.z, s[n][3] = a.w;
                }
            }
            /* the scores with their roundings; -inf where not visible (only tiles that are not
             * wholly visible to the row group look at positions) */
#pragma unroll
            for (int n = 0; n < FL_BN / 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    s[n][e] = g4q_rnd<__nv_bfloat16>(g4q_rnd<__nv_bfloat16>(s[n][e]) * scale);
            if (!fl_full(g, j0, j1, ta, ta + 15)) {
#pragma unroll
                for (int n = 0; n < FL_BN / 8; n++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int j = j0 + 8 * n + 2 * tq + e;
                        const bool in = j < j1;
                        const int p = in ? key_pos(g, j) : 0;
                        if (!(in && oka && visible(g, pa, p))) s[n][e] = -INFINITY;
                        if (!(in && okb && visible(g, pb, p))) s[n][2 + e] = -INFINITY;
                    }
            }
            if (!pv) { /* running maximum and sum of each row (all lanes take part) */
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float tmax = -INFINITY;
#pragma unroll
                    for (int n = 0; n < FL_BN / 8; n++)
                        tmax = fmaxf(tmax, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
                    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
                    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 2));
                    const float mn = fmaxf(m[r], tmax);
                    const float mz = mn == -INFINITY ? 0.0f : mn; /* no key seen yet: e = 0 */
                    float e = 0.0f;
#pragma unroll
                    for (int n = 0; n < FL_BN / 8; n++)
                        e += expf(s[n][2 * r] - mz) + expf(s[n][2 * r + 1] - mz);
                    e += __shfl_xor_sync(0xffffffffu, e, 1);
                    e += __shfl_xor_sync(0xffffffffu, e, 2);
                    l[r] = l[r] * expf(m[r] - mz) + e;
                    m[r] = mn;
                }
                continue;
            }
            /* p in bf16 as the A operand, then Σ p·v over the slice's dims */
#pragma unroll
            for (int kk = 0; kk < FL_BN / 16; kk++) {
                uint32_t a[4];
                const float *s0 = s[2 * kk], *s1 = s[2 * kk + 1];
                a[0] = fl_pack(expf(s0[0] - ms[0]) * inv[0], expf(s0[1] - ms[0]) * inv[0]);
                a[1] = fl_pack(expf(s0[2] - ms[1]) * inv[1], expf(s0[3] - ms[1]) * inv[1]);
                a[2] = fl_pack(expf(s1[0] - ms[0]) * inv[0], expf(s1[1] - ms[0]) * inv[0]);
                a[3] = fl_pack(expf(s1[2] - ms[1]) * inv[1], expf(s1[3] - ms[1]) * inv[1]);
                const int key = 16 * kk + (lane & 7) + (((lane >> 3) & 1) << 3);
#pragma unroll
                for (int n = 0; n < NT / 2; n++) {
                    uint32_t b[4];
                    fl_ldsm4t(bv + fl_at<CH>(key, (S::DW * ws + 16 * n) / 8 + (lane >> 4)), b);
                    fl_mma(o[2 * n], a, b[0], b[1]);
                    fl_mma(o[2 * n + 1], a, b[2], b[3]);
                }
            }
        }
        __syncthreads(); /* pass 1's last tile is done with before pass 2 loads over it */
    }

    /* C fragment of dim tile n: o[n][0..1] row ra dims 2·tq, +1; o[n][2..3] row rb */
#pragma unroll
    for (int n = 0; n < NT; n++) {
        const int d = S::DW * ws + 8 * n + 2 * tq;
        if (oka)
            *reinterpret_cast<__nv_bfloat162 *>(out + ((size_t)ra * g.nh + h) * HD + d) =
                __floats2bfloat162_rn(o[n][0], o[n][1]);
        if (okb)
            *reinterpret_cast<__nv_bfloat162 *>(out + ((size_t)rb * g.nh + h) * HD + d) =
                __floats2bfloat162_rn(o[n][2], o[n][3]);
    }
}

bool g4q_cuda_flash_takes(const g4q_backend *be, int T, int hd)
{
    const g4q_cuda_state *st = g4q_cuda_st(be);
    return !st->f32 && st->attn_flash && T >= FL_MIN_T &&
           (hd == 64 || hd == 128 || hd == 256 || hd == 512);
}

template <int HD>
static g4q_status fl_launch(g4q_backend *be, const att_geom &g, g4q_buf *out, const g4q_buf *q,
                            const g4q_buf *kn, const g4q_buf *vn, const g4q_buf *kc,
                            const g4q_buf *vc, float scale)
{
    g4q_ctx *ctx = be->ctx;
    typedef fl_shape<HD> S;
    static bool attr_set = false; /* per instantiation; every device of a process alike */
    if (!attr_set) {
        G4Q_CUDA_CHECK(cudaFuncSetAttribute(flash_kernel<HD>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, S::SMEM));
        attr_set = true;
    }
    typedef const __nv_bfloat16 cb;
    const dim3 grid((unsigned)g.nh, g4q_cuda_blocks((size_t)g.T, S::BM));
    flash_kernel<HD><<<grid, S::THREADS, S::SMEM, g4q_cuda_st(be)->stream>>>(
        g, (cb *)q->data, (cb *)kc->data, (cb *)kn->data, (cb *)vc->data, (cb *)vn->data,
        (__nv_bfloat16 *)out->data, scale);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_flash_attention(g4q_backend *be, const att_geom &g, g4q_buf *out,
                                    const g4q_buf *q, const g4q_buf *k_new, const g4q_buf *v_new,
                                    const g4q_buf *kc, const g4q_buf *vc, float scale)
{
    switch (g.hd) {
    case 64:
        return fl_launch<64>(be, g, out, q, k_new, v_new, kc, vc, scale);
    case 128:
        return fl_launch<128>(be, g, out, q, k_new, v_new, kc, vc, scale);
    case 256:
        return fl_launch<256>(be, g, out, q, k_new, v_new, kc, vc, scale);
    case 512:
        return fl_launch<512>(be, g, out, q, k_new, v_new, kc, vc, scale);
    default:
        return g4q_fail(be->ctx, G4Q_ERR_INTERNAL, "cuda flash attention: head_dim %d", g.hd);
    }
}

extern "C" int g4q_cuda_prefill_flash(g4q_backend *be, int T, int hd)
{
    return be && strcmp(be->name, "cuda") == 0 && g4q_cuda_flash_takes(be, T, hd);
}
