// CUDA decode attention (T = 1) with n_past read from the step position (device memory), so that
// one recorded graph serves every decode step: the launch shapes depend only on cap, nh, nkv, hd.
//
// Same numerics as cuda_attention.cu (docs/gemma4.md §4.9): score s = bf16(bf16(q·k) · scale)
// with an fp32 dot product, p = bf16(exp(s - max) / sum) over the visible keys, out = bf16(Σ p·v)
// summed in fp32. Keys j < nc (nc = min(n_past, cap)) are cache slots, key nc is the new token;
// nkeys = nc + 1 <= cap + 1. The keys are cut into nsplit fixed ranges of split_len (chosen from
// cap on the host); ranges past nkeys do nothing. Two kernels, both launched with programmatic
// dependent launch (cuda_internal.h):
//   1. step_scores_kernel (split, kv head): S[h, j] = s for its keys (-inf for keys outside the
//      window), and per query head the range's max m and Σ exp(s - m) in fp32. With `store`,
//      the blocks of range 0 also write the new token's K and V row into slot n_past mod cap
//      (kv_store folded in). That slot is either past the cached keys (n_past < cap) or holds
//      position n_past - cap, which no query at n_past sees (q - k = cap >= window for sliding
//      layers; full layers have cap > n_past): its score is -inf and its p exactly 0 whichever
//      row, old or new, the other blocks read, both finite.
//   2. step_pv_kernel (split, query head): global max M and sum Σ l·exp(m - M) over the active
//      ranges in a fixed (warp butterfly) order, p = bf16(exp(s - M) · (1 / sum)), partial Σ p·v in
//      fp32 (keys with p = 0 add 0·v). The last block of a head to finish (a per-head counter in
//      device memory, reset by that block) writes out = bf16(Σ partials) over the ranges in order.
// Fused form (step_fused_kernel), used instead wherever it fits (fused_kernel says when): one
// kernel, grid (split, head group: gh <= FA_MAX_GH query heads of one KV head) with ranges of
// max(FA_MIN_KEYS, FA_THREADS / (FA_TPP · gh)) keys. Each block requests its range's K and V
// cache rows into shared memory before the programmatic wait (the slots hold keys of earlier
// steps; the q/k/v projection GEMV before this op lets no later kernel start until everything
// before it has finished), so the loads overlap the kernels before it; then scores (FA_TPP lanes
// per query head and key) and the range's statistics as above. The blocks of a head group then
// wait for each other (counters in device memory; the host launches this kernel only when every
// block of the grid can be resident at once), combine the statistics as step_pv_kernel does and
// sum p·v from shared memory into partials; after a second wait every block sums a share of the
// outputs over the ranges in order. Its fp32 sums run in other orders than the two kernels', so
// the forms may differ in the last bit.
// The fp32 sums run in other orders than cuda_attention.cu's, so the paths may differ in the
// last bit; each is deterministic.
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_internal.h"

#define ST_THREADS 256     /* scores: 8 warps, one key per warp at a time */
#define PV_MAX_THREADS 256 /* pv: 2 dims per thread, 128 or 256 threads by head_dim */
#define PV_KT 64           /* keys staged per pv round */
#define PV_BATCH 8         /* V rows loaded before their first use */
#define MAX_GROUP 16       /* query heads per KV head handled in registers */
#define TARGET_BLOCKS 264
#define MIN_SPLIT 32
#define FA_THREADS 256 /* fused kernel: 8 warps */
#define FA_TPP 2       /* fused kernel: threads per (query head, key) score */
#define FA_MIN_KEYS 32 /* fused kernel: keys per range at least */
#define FA_MAX_GH 4    /* fused kernel: query heads per block at most */
#define FA_KPAD 8      /* fused kernel: bf16 padding per K row in smem */
#define FA_SMEM (200 << 10) /* fused kernel: shared memory it plans for (sm_90 allows 227 KB) */

typedef struct step_geom {
    int nh, nkv, hd, group, cap, window, split_len, nsplit, ldS;
    int gh; /* fused kernel: query heads per block (a divisor of group) */
    float scale;
} step_geom;

static __device__ __forceinline__ float rb(float v)
{
    return __bfloat162float(__float2bfloat16_rn(v));
}

/* Row of key j of KV head kvh: cache slot j for j < nc (the cached keys), else the new token. */
static __device__ __forceinline__ const __nv_bfloat16 *step_row(const step_geom &g,
                                                                const __nv_bfloat16 *cache,
                                                                const __nv_bfloat16 *fresh, int nc,
                                                                int j, int kvh)
{
    return j < nc ? cache + ((size_t)j * g.nkv + kvh) * g.hd : fresh + (size_t)kvh * g.hd;
}

/* Position of key j for a query at n_past (nc cached keys, the oldest at lo). */
static __device__ __forceinline__ int step_key_pos(const step_geom &g, int n_past, int nc, int j)
{
    if (j >= nc) return n_past;
    const int lo = n_past - g.cap > 0 ? n_past - g.cap : 0;
    return lo + (j - lo % g.cap + g.cap) % g.cap;
}

/* Slot n_past mod cap of the caches kst / vst := the new token's K and V row of KV head kvh
 * (kv_store folded into the step kernels; the file comment says why no other block minds). */
static __device__ __forceinline__ void store_new_row(const step_geom &g, int n_past, int kvh,
                                                     const __nv_bfloat16 *kn,
                                                     const __nv_bfloat16 *vn, __nv_bfloat16 *kst,
                                                     __nv_bfloat16 *vst)
{
    const size_t src = (size_t)kvh * g.hd, dst = ((size_t)(n_past % g.cap) * g.nkv + kvh) * g.hd;
    for (int i = threadIdx.x; i < g.hd; i += blockDim.x) {
        kst[dst + i] = kn[src + i];
        vst[dst + i] = vn[src + i];
    }
}

/* Per query head r of head group hg (group heads from hg·group: a KV head's in the two-kernel
 * form), a warp each: m = max of its scores over [jb, je) and l = Σ exp(s - m) (lanes strided over
 * the keys, butterfly sums); stats[split, hg·group + r] = (m, l). get(r, j) reads a score. */
template <typename Get>
static __device__ __forceinline__ void split_stats(const step_geom &g, int group, int hg, int split,
                                                   int jb, int je, Get get, float2 *stats)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int r = warp; r < group; r += warps) {
        float m = -INFINITY;
        for (int j = jb + lane; j < je; j += 32)
            m = fmaxf(m, get(r, j));
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        if (m > -INFINITY)
            for (int j = jb + lane; j < je; j += 32)
                l += expf(get(r, j) - m);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            l += __shfl_xor_sync(0xffffffffu, l, o);
        if (lane == 0) stats[(size_t)split * g.nh + hg * group + r] = make_float2(m, l);
    }
}

/* The global max M and sum Σ l·exp(m - M) of query head h over the nact active ranges, for a
 * whole warp: a lane per range (one memory round trip, not one per range), combined in a fixed
 * butterfly order, so that every warp of every block gets the same M and sum. */
static __device__ __forceinline__ void
head_max_sum(const step_geom &g, int h, int nact, const float2 *stats, float *M_out, float *sum_out)
{
    const int lane = threadIdx.x & 31;
    /* the first 32 ranges' statistics are read once, for both passes */
    const float2 first =
        lane < nact ? __ldcg(&stats[(size_t)lane * g.nh + h]) : make_float2(-INFINITY, 0.0f);
    float M = first.x;
    for (int s = lane + 32; s < nact; s += 32)
        M = fmaxf(M, __ldcg(&stats[(size_t)s * g.nh + h]).x);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    float sum = first.x > -INFINITY ? first.y * expf(first.x - M) : 0.0f;
    for (int s = lane + 32; s < nact; s += 32) {
        const float2 st = __ldcg(&stats[(size_t)s * g.nh + h]);
        if (st.x > -INFINITY) sum += st.y * expf(st.x - M);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    *M_out = M, *sum_out = sum;
}

/* out[h, d] = bf16(Σ part[0 .. nact-1, h, d]) in range order, read through L2 (other blocks
 * wrote the partials). */
static __device__ __forceinline__ void sum_parts(const step_geom &g, int h, int d, int nact,
                                                 const float *part, __nv_bfloat16 *out)
{
    const float *pd = part + (size_t)h * g.hd + d;
    const size_t stride = (size_t)g.nh * g.hd;
    float s = 0.0f;
    int k = 0;
    for (; k + 8 <= nact; k += 8) { /* 8 loads in flight, added in range order */
        float v[8];
#pragma unroll
        for (int u = 0; u < 8; u++)
            v[u] = __ldcg(pd + (size_t)(k + u) * stride);
#pragma unroll
        for (int u = 0; u < 8; u++)
            s += v[u];
    }
    for (; k < nact; k++)
        s += __ldcg(pd + (size_t)k * stride);
    out[(size_t)h * g.hd + d] = __float2bfloat16_rn(s);
}

/* grid (nsplit, nkv), ST_THREADS; dynamic smem: group × hd floats of q. kst / vst: the caches
 * to store the new K / V row into (the same memory as kc and the pv kernel's vc), or NULL. */
template <int G>
static __global__ void __launch_bounds__(ST_THREADS)
    step_scores_kernel(step_geom g, const int *__restrict__ pos,
                       const __nv_bfloat16 *__restrict__ q, const __nv_bfloat16 *kc,
                       const __nv_bfloat16 *__restrict__ kn, const __nv_bfloat16 *__restrict__ vn,
                       __nv_bfloat16 *kst, __nv_bfloat16 *vst, __nv_bfloat16 *__restrict__ S,
                       float2 *__restrict__ stats)
{
    extern __shared__ float qs[];
    constexpr int GM = G ? G : MAX_GROUP; /* query heads per KV head: compile-time when G > 0 */
    const int group = G ? G : g.group;
    g4q_pdl_trigger();
    g4q_pdl_wait();
    const int n_past = *pos, nc = n_past < g.cap ? n_past : g.cap, nkeys = nc + 1;
    const int split = blockIdx.x, kvh = blockIdx.y;
    if (split == 0 && kst) store_new_row(g, n_past, kvh, kn, vn, kst, vst);
    const int jb = split * g.split_len, je = min(jb + g.split_len, nkeys);
    if (jb >= nkeys) return;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    /* With 16-byte K rows (hd % 8 == 0) q is stored transposed within each head, element
     * (chunk c, i) at c + i·hd/8, so that the lanes (one chunk each) read consecutive words. */
    const int hd8 = g.hd % 8 == 0 ? g.hd / 8 : 0;
    /* Every K row this warp will read is requested into L1 now, so the per-key loop below does
     * not wait a memory round trip per key (it overlaps the staging of q too). */
    for (int j = jb + warp; j < je; j += ST_THREADS / 32) {
        const __nv_bfloat16 *kr = step_row(g, kc, kn, nc, j, kvh);
        for (int c = lane; c < hd8; c += 32)
            asm volatile("prefetch.global.L1 [%0];" ::"l"(kr + c * 8));
    }
    const __nv_bfloat16 *qh = q + (size_t)kvh * group * g.hd;
    if (hd8) { /* 16-byte loads, several in flight per thread (not one round trip each) */
#pragma unroll 4
        for (int e8 = threadIdx.x; e8 < group * hd8; e8 += ST_THREADS) {
            const uint4 raw = *reinterpret_cast<const uint4 *>(qh + (size_t)e8 * 8);
            const __nv_bfloat162 *qp = reinterpret_cast<const __nv_bfloat162 *>(&raw);
            const int r = e8 / hd8, c = e8 - r * hd8;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float2 f = __bfloat1622float2(qp[i]);
                qs[r * g.hd + (2 * i) * hd8 + c] = f.x;
                qs[r * g.hd + (2 * i + 1) * hd8 + c] = f.y;
            }
        }
    } else {
        for (int e = threadIdx.x; e < group * g.hd; e += ST_THREADS)
            qs[e] = __bfloat162float(qh[e]);
    }
    __syncthreads();
    for (int j = jb + warp; j < je; j += ST_THREADS / 32) {
        const __nv_bfloat16 *kr = step_row(g, kc, kn, nc, j, kvh);
        const int p = step_key_pos(g, n_past, nc, j);
        const bool vis = g.window <= 0 || n_past - p < g.window;
        float acc[GM];
#pragma unroll
        for (int r = 0; r < GM; r++)
            acc[r] = 0.0f;
        for (int c = lane; c < hd8; c += 32) {
            uint4 kv = *reinterpret_cast<const uint4 *>(kr + c * 8);
            const __nv_bfloat162 *kp = reinterpret_cast<const __nv_bfloat162 *>(&kv);
            float kf[8];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float2 f = __bfloat1622float2(kp[i]);
                kf[2 * i] = f.x;
                kf[2 * i + 1] = f.y;
            }
#pragma unroll
            for (int r = 0; r < GM; r++) {
                if (!G && r >= group) break;
                const float *qp = qs + r * g.hd + c;
#pragma unroll
                for (int i = 0; i < 8; i++)
                    acc[r] = fmaf(qp[i * hd8], kf[i], acc[r]);
            }
        }
        for (int d = hd8 * 8 + lane; d < g.hd; d += 32) {
            const float kf = __bfloat162float(kr[d]);
#pragma unroll
            for (int r = 0; r < GM; r++) {
                if (!G && r >= group) break;
                acc[r] = fmaf(qs[r * g.hd + d], kf, acc[r]);
            }
        }
#pragma unroll
        for (int r = 0; r < GM; r++) {
            if (!G && r >= group) break;
            float a = acc[r];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                a += __shfl_xor_sync(0xffffffffu, a, o);
            if (lane == r) {
                const int h = kvh * group + r;
                S[(size_t)h * g.ldS + j] =
                    vis ? __float2bfloat16_rn(rb(a) * g.scale) : __float2bfloat16_rn(-INFINITY);
            }
        }
    }
    __syncthreads(); /* the block's S writes are visible to the whole block after this */
    split_stats(
        g, group, kvh, split, jb, je,
        [&](int r, int j) { return __bfloat162float(S[(size_t)(kvh * group + r) * g.ldS + j]); },
        stats);
}

/* ps[0 .. n) = p of keys j0 .. j0+n-1, p = bf16(exp(s - M) · inv), staged for the whole block
 * (barriers on both sides, so every thread of the block must call it). */
static __device__ __forceinline__ void stage_p(const __nv_bfloat16 *row, int j0, int n, float M,
                                               float inv, float *ps)
{
    __syncthreads();
    for (int k = threadIdx.x; k < n; k += blockDim.x)
        ps[k] = rb(expf(__bfloat162float(row[j0 + k]) - M) * inv);
    __syncthreads();
}

/* The split's Σ p·v for one query head into o[0 .. hd), two dims per thread, keys in order. Any
 * even head_dim. ps: the block's PV_KT staged probabilities. */
static __device__ void pv_pairs(const step_geom &g, int nc, int jb, int je, int kvh,
                                const __nv_bfloat16 *row, float M, float inv,
                                const __nv_bfloat16 *__restrict__ vc,
                                const __nv_bfloat16 *__restrict__ vn, float *ps, float *o)
{
    for (int d0 = 0; d0 < g.hd; d0 += 2 * (int)blockDim.x) {
        const int d = d0 + 2 * threadIdx.x;
        float a0 = 0.0f, a1 = 0.0f;
        for (int j0 = jb; j0 < je; j0 += PV_KT) {
            const int n = min(PV_KT, je - j0);
            stage_p(row, j0, n, M, inv, ps);
            if (d >= g.hd) continue;
            for (int k = 0; k < n; k += PV_BATCH) {
                float2 v[PV_BATCH];
#pragma unroll
                for (int u = 0; u < PV_BATCH; u++) {
                    const int j = j0 + k + u;
                    const __nv_bfloat16 *vr = step_row(g, vc, vn, nc, j, kvh);
                    v[u] =
                        k + u < n
                            ? __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(vr + d))
                            : make_float2(0.0f, 0.0f);
                }
#pragma unroll
                for (int u = 0; u < PV_BATCH; u++)
                    if (k + u < n) {
                        a0 = fmaf(ps[k + u], v[u].x, a0);
                        a1 = fmaf(ps[k + u], v[u].y, a1);
                    }
            }
        }
        if (d < g.hd) o[d] = a0, o[d + 1] = a1;
    }
}

/* Σ p·v over keys [0, n) of a chunk into acc, for head_dim % 8 == 0: W = hd/8 threads cover a V
 * row with 16-byte loads (this thread's 8 dims from d), the nkg key groups take keys kg, kg + nkg,
 * ... (in order, PV_BATCH rows loaded before their first use). vrow(k) is key k's V row and ps[k]
 * its p. */
template <typename VRow>
static __device__ __forceinline__ void pv_acc8(int nkg, int kg, int d, int n, const float *ps,
                                               VRow vrow, float acc[8])
{
    for (int k0 = kg; k0 < n; k0 += nkg * PV_BATCH) {
        uint4 v[PV_BATCH];
#pragma unroll
        for (int u = 0; u < PV_BATCH; u++) {
            const int k = k0 + u * nkg;
            v[u] = k < n ? *reinterpret_cast<const uint4 *>(vrow(k) + d) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < PV_BATCH; u++) {
            const int k = k0 + u * nkg;
            if (k >= n) break;
            const float p = ps[k];
            const __nv_bfloat162 *vp = reinterpret_cast<const __nv_bfloat162 *>(&v[u]);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const float2 f = __bfloat1622float2(vp[i]);
                acc[2 * i] = fmaf(p, f.x, acc[2 * i]);
                acc[2 * i + 1] = fmaf(p, f.y, acc[2 * i + 1]);
            }
        }
    }
}

/* The same for head_dim % 8 == 0 and head_dim / 8 <= blockDim (nkg = blockDim / W key groups),
 * the groups' sums added in group order through shared memory (red: blockDim · 8 floats). */
static __device__ void pv_rows8(const step_geom &g, int nc, int jb, int je, int kvh,
                                const __nv_bfloat16 *row, float M, float inv,
                                const __nv_bfloat16 *__restrict__ vc,
                                const __nv_bfloat16 *__restrict__ vn, float *ps, float *red,
                                float *o)
{
    const int W = g.hd / 8, nkg = (int)blockDim.x / W, kg = (int)threadIdx.x / W;
    const int d = ((int)threadIdx.x % W) * 8;
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (int j0 = jb; j0 < je; j0 += PV_KT) {
        const int n = min(PV_KT, je - j0);
        stage_p(row, j0, n, M, inv, ps);
        if (kg < nkg)
            pv_acc8(
                nkg, kg, d, n, ps, [&](int k) { return step_row(g, vc, vn, nc, j0 + k, kvh); },
                acc);
    }
    if (kg < nkg)
#pragma unroll
        for (int i = 0; i < 8; i++)
            red[kg * g.hd + d + i] = acc[i];
    __syncthreads();
    for (int e = threadIdx.x; e < g.hd; e += blockDim.x) {
        float t = 0.0f;
        for (int k = 0; k < nkg; k++)
            t += red[k * g.hd + e];
        o[e] = t;
    }
}

/* grid (nsplit, nh), 128 or 256 threads: part[split, h, :] = Σ p·v over the split's keys
 * (pv_rows8, or pv_pairs for head dims that are not a multiple of 8). The head's last block
 * writes out[h, :] = bf16(Σ part[0 .. nact-1, h, :]). */
static __global__ void __launch_bounds__(PV_MAX_THREADS)
    step_pv_kernel(step_geom g, const int *__restrict__ pos, const __nv_bfloat16 *__restrict__ S,
                   const float2 *__restrict__ stats, const __nv_bfloat16 *__restrict__ vc,
                   const __nv_bfloat16 *__restrict__ vn, float *part, unsigned *done,
                   __nv_bfloat16 *__restrict__ out)
{
    __shared__ float ps[PV_KT];
    __shared__ float red[PV_MAX_THREADS * 8];
    __shared__ int last;
    g4q_pdl_trigger();
    g4q_pdl_wait();
    const int n_past = *pos, nc = n_past < g.cap ? n_past : g.cap, nkeys = nc + 1;
    const int split = blockIdx.x, h = blockIdx.y, kvh = h / g.group;
    const int jb = split * g.split_len, je = min(jb + g.split_len, nkeys);
    if (jb >= nkeys) return;
    const int nact = (nkeys + g.split_len - 1) / g.split_len;
    /* Request the split's V rows (64 elements = one 128-byte line per prefetch) into L1 while
     * the softmax statistics are read. */
    const int lines = (g.hd + 63) / 64;
    for (int e = threadIdx.x; e < (je - jb) * lines; e += blockDim.x) {
        const int j = jb + e / lines;
        const __nv_bfloat16 *vr = step_row(g, vc, vn, nc, j, kvh);
        asm volatile("prefetch.global.L1 [%0];" ::"l"(vr + (e % lines) * 64));
    }
    float M, sum;
    head_max_sum(g, h, nact, stats, &M, &sum);
    const float inv = 1.0f / sum;
    const __nv_bfloat16 *row = S + (size_t)h * g.ldS;
    float *o = part + ((size_t)split * g.nh + h) * g.hd;
    if (g.hd % 8 == 0 && g.hd / 8 <= (int)blockDim.x)
        pv_rows8(g, nc, jb, je, kvh, row, M, inv, vc, vn, ps, red, o);
    else
        pv_pairs(g, nc, jb, je, kvh, row, M, inv, vc, vn, ps, o);
    /* Publish the partial, count the block; the last of the head's nact blocks sums them (read
     * through L2: other blocks wrote them). */
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        last = atomicAdd(done + h, 1u) == (unsigned)nact - 1;
        if (last) done[h] = 0;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int d = threadIdx.x; d < g.hd; d += blockDim.x)
        sum_parts(g, h, d, nact, part, out);
}

/* ---- the fused step kernel ---- */

static __device__ __forceinline__ void cp_async16(void *dst, const void *src)
{
    asm volatile(
        "cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((unsigned)__cvta_generic_to_shared(dst)),
        "l"(src)
        : "memory");
}
static __device__ __forceinline__ void cp_async_wait_all()
{
    asm volatile("cp.async.commit_group;\ncp.async.wait_all;" ::: "memory");
}
static __device__ __forceinline__ unsigned ld_acquire(const unsigned *p)
{
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* Fixed ranges over the at most cap + 1 keys: about TARGET_BLOCKS blocks of the scores kernel. */
static step_geom step_geometry(int cap, int nh, int nkv, int hd, int window, float scale)
{
    step_geom g;
    g.nh = nh, g.nkv = nkv, g.hd = hd, g.group = nh / nkv, g.cap = cap, g.window = window;
    g.gh = g.group;
    g.scale = scale;
    const int maxkeys = cap + 1;
    const int per = (int)((size_t)maxkeys * nkv / TARGET_BLOCKS);
    g.split_len = per < MIN_SPLIT ? MIN_SPLIT : per;
    g.nsplit = (maxkeys + g.split_len - 1) / g.split_len;
    g.ldS = (maxkeys + 7) / 8 * 8;
    return g;
}

/* The fused kernel's dynamic shared memory, fused_base + split_len · fused_key bytes: per key of
 * the range its K row (bf16, padded by FA_KPAD elements), V row and score (then p) of each of the
 * gh query heads; besides q (gh × hd floats), the PV sums (FA_THREADS · 8 floats), M and 1/sum
 * per query head. */
static size_t fused_key(const step_geom &g)
{
    return (size_t)(2 * g.hd + FA_KPAD) * sizeof(__nv_bfloat16) + (size_t)g.gh * sizeof(float);
}
static size_t fused_base(const step_geom &g)
{
    return ((size_t)g.gh * g.hd + FA_THREADS * 8 + 2 * (size_t)g.gh) * sizeof(float);
}
static size_t fused_smem(const step_geom &g)
{
    return fused_base(g) + (size_t)g.split_len * fused_key(g);
}

/* The fused kernel's geometry: head groups of gh query heads (the largest divisor of group up to
 * FA_MAX_GH) and ranges of FA_THREADS / (FA_TPP · gh) keys (FA_TPP threads per query head and key),
 * at least FA_MIN_KEYS, fewer where their rows would not fit in FA_SMEM bytes of shared memory. */
static step_geom fused_geometry(int cap, int nh, int nkv, int hd, int window, float scale)
{
    step_geom g = step_geometry(cap, nh, nkv, hd, window, scale);
    g.gh = FA_MAX_GH;
    while (g.gh > 1 && g.group % g.gh)
        g.gh--;
    const size_t base = fused_base(g);
    const int fit = base < FA_SMEM ? (int)((FA_SMEM - base) / fused_key(g)) : 1;
    int per = FA_THREADS / (FA_TPP * g.gh);
    if (per < FA_MIN_KEYS) per = FA_MIN_KEYS;
    g.split_len = per < fit ? per : fit;
    if (g.split_len < 1) g.split_len = 1;
    g.nsplit = (cap + 1 + g.split_len - 1) / g.split_len;
    return g;
}

/* grid (nsplit, nh / gh): range `split` of the query heads vh·gh .. vh·gh + gh - 1 (of KV head
 * vh·gh / group); FA_THREADS threads, fused_smem bytes; every block of the grid resident at once
 * (the host checks). cnt: three counters per head group, zero between calls. See the file
 * comment. */
template <int G>
static __global__ void __launch_bounds__(FA_THREADS)
    step_fused_kernel(step_geom g, const int *__restrict__ pos, const __nv_bfloat16 *__restrict__ q,
                      const __nv_bfloat16 *kc, const __nv_bfloat16 *vc,
                      const __nv_bfloat16 *__restrict__ kn, const __nv_bfloat16 *__restrict__ vn,
                      __nv_bfloat16 *kst, __nv_bfloat16 *vst, float2 *stats, float *part,
                      unsigned *cnt, __nv_bfloat16 *__restrict__ out)
{
    extern __shared__ __align__(16) unsigned char fa_sm[];
    const int L = g.split_len, hd = g.hd, hd8 = hd / 8, KS = hd + FA_KPAD;
    const int group = G ? G : g.gh; /* this block's query heads: h0 .. h0 + group - 1 */
    __nv_bfloat16 *Kt = reinterpret_cast<__nv_bfloat16 *>(fa_sm), *Vt = Kt + (size_t)L * KS;
    float *qs = reinterpret_cast<float *>(Vt + (size_t)L * hd), *Ss = qs + group * hd;
    float *red = Ss + group * L, *Ms = red + FA_THREADS * 8, *Is = Ms + group;
    const int split = blockIdx.x, vh = blockIdx.y, hgs = g.group / group, kvh = vh / hgs;
    const int h0 = vh * group, jb = split * L;
    /* 1. The range's cache slots, requested before the wait: they hold keys of earlier steps,
     * complete by now (the q/k/v projection before this op waits for everything before it). Slots
     * past the cached keys are loaded too and not used. */
    const int slots = min(L, g.cap - jb);
    for (int e = threadIdx.x; e < slots * hd8; e += FA_THREADS) {
        const int r = e / hd8, c = e - r * hd8;
        const size_t src = ((size_t)(jb + r) * g.nkv + kvh) * hd + c * 8;
        cp_async16(Kt + (size_t)r * KS + c * 8, kc + src);
        cp_async16(Vt + (size_t)r * hd + c * 8, vc + src);
    }
    g4q_pdl_trigger();
    g4q_pdl_wait();
    const int n_past = *pos, nc = n_past < g.cap ? n_past : g.cap, nkeys = nc + 1;
    const int je = min(jb + L, nkeys), n = je - jb;
    if (split == 0 && vh % hgs == 0 && kst) store_new_row(g, n_past, kvh, kn, vn, kst, vst);
    cp_async_wait_all();
    if (jb >= nkeys) return;
    const int nact = (nkeys + L - 1) / L;
    for (int e = threadIdx.x; e < group * hd; e += FA_THREADS)
        qs[e] = __bfloat162float(q[(size_t)h0 * hd + e]);
    __syncthreads(); /* every thread's copies have landed: the new key may replace slot nc */
    if (nc < je)
        for (int c = threadIdx.x; c < hd8; c += FA_THREADS) {
            const size_t src = (size_t)kvh * hd + c * 8, k = (size_t)(nc - jb);
            *reinterpret_cast<uint4 *>(Kt + k * KS + c * 8) =
                *reinterpret_cast<const uint4 *>(kn + src);
            *reinterpret_cast<uint4 *>(Vt + k * hd + c * 8) =
                *reinterpret_cast<const uint4 *>(vn + src);
        }
    __syncthreads();
    /* 2. Scores, FA_TPP adjacent lanes per (query head, key): lane u of them sums the 8-dim
     * chunks u, u + FA_TPP, ... into two fp32 accumulators (even and odd turns), and the lanes'
     * sums meet by shuffles. The padded K rows keep a warp's lanes on distinct banks. Then the
     * range's statistics as step_scores_kernel. */
    for (int e0 = 0; e0 < group * n; e0 += FA_THREADS / FA_TPP) {
        const int e = e0 + (int)threadIdx.x / FA_TPP, u = (int)threadIdx.x % FA_TPP;
        const bool live = e < group * n;
        const int r = live ? e / n : 0, k = live ? e - r * n : 0;
        const __nv_bfloat16 *kr = Kt + (size_t)k * KS;
        const float *qr = qs + r * hd;
        /* chunk c of the dot product into acc, in dim order */
        auto chunk = [&](int c, float &acc) {
            const uint4 kv = *reinterpret_cast<const uint4 *>(kr + c * 8);
            const __nv_bfloat162 *kp = reinterpret_cast<const __nv_bfloat162 *>(&kv);
            const float4 qa = *reinterpret_cast<const float4 *>(qr + c * 8),
                         qb = *reinterpret_cast<const float4 *>(qr + c * 8 + 4);
            const float2 k0 = __bfloat1622float2(kp[0]), k1 = __bfloat1622float2(kp[1]),
                         k2 = __bfloat1622float2(kp[2]), k3 = __bfloat1622float2(kp[3]);
            acc = fmaf(qa.x, k0.x, acc), acc = fmaf(qa.y, k0.y, acc);
            acc = fmaf(qa.z, k1.x, acc), acc = fmaf(qa.w, k1.y, acc);
            acc = fmaf(qb.x, k2.x, acc), acc = fmaf(qb.y, k2.y, acc);
            acc = fmaf(qb.z, k3.x, acc), acc = fmaf(qb.w, k3.y, acc);
        };
        float a0 = 0.0f, a1 = 0.0f;
        for (int c = u; live && c < hd8; c += 2 * FA_TPP) {
            chunk(c, a0);
            if (c + FA_TPP < hd8) chunk(c + FA_TPP, a1);
        }
        float a = a0 + a1;
#pragma unroll
        for (int o = FA_TPP / 2; o > 0; o >>= 1)
            a += __shfl_xor_sync(0xffffffffu, a, o);
        if (live && u == 0) {
            const int p = step_key_pos(g, n_past, nc, jb + k);
            const bool vis = g.window <= 0 || n_past - p < g.window;
            Ss[r * L + k] = vis ? rb(rb(a) * g.scale) : -INFINITY;
        }
    }
    __syncthreads();
    split_stats(
        g, group, vh, split, jb, je, [&](int r, int j) { return Ss[r * L + j - jb]; }, stats);
    /* 3. Wait until every active range of this head group has published its statistics. */
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        atomicAdd(cnt + 3 * vh, 1u);
        while (ld_acquire(cnt + 3 * vh) < (unsigned)nact)
            __nanosleep(32);
    }
    __syncthreads();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int r = warp; r < group; r += FA_THREADS / 32) {
        float M, sum;
        head_max_sum(g, h0 + r, nact, stats, &M, &sum);
        if (lane == 0) Ms[r] = M, Is[r] = 1.0f / sum;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < group * n; e += FA_THREADS) { /* p, as stage_p */
        const int r = e / n, k = e - r * n;
        Ss[r * L + k] = rb(expf(Ss[r * L + k] - Ms[r]) * Is[r]);
    }
    __syncthreads();
    /* 4. Σ p·v: pvt threads per query head (hd/8 per V row, nkg key groups, as step_pv_kernel),
     * FA_THREADS / pvt heads at a time. */
    const int pvt = FA_THREADS / group < hd8 ? hd8 : FA_THREADS / group;
    const int hp = FA_THREADS / pvt, sub = threadIdx.x / pvt, tt = threadIdx.x % pvt;
    const int nkg = pvt / hd8, kg = tt / hd8, d = (tt % hd8) * 8;
    float *rd = red + (size_t)sub * nkg * hd;
    for (int r0 = 0; r0 < group; r0 += hp) {
        const int r = r0 + sub;
        float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        if (sub < hp && r < group && kg < nkg) {
            pv_acc8(
                nkg, kg, d, n, Ss + r * L, [&](int k) { return Vt + (size_t)k * hd; }, acc);
#pragma unroll
            for (int i = 0; i < 8; i++)
                rd[kg * hd + d + i] = acc[i];
        }
        __syncthreads();
        if (sub < hp && r < group)
            for (int e = tt; e < hd; e += pvt) {
                float t = 0.0f;
                for (int k = 0; k < nkg; k++)
                    t += rd[k * hd + e];
                part[((size_t)split * g.nh + h0 + r) * hd + e] = t;
            }
        __syncthreads();
    }
    /* 5. Once every range of the head group has its partials out, block `split` sums elements
     * split, split + nact, ... of the group's outputs over the ranges; the last block to leave
     * resets the three counters. */
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        atomicAdd(cnt + 3 * vh + 1, 1u);
        while (ld_acquire(cnt + 3 * vh + 1) < (unsigned)nact)
            __nanosleep(32);
    }
    __syncthreads();
    for (int e = split + (int)threadIdx.x * nact; e < group * hd; e += FA_THREADS * nact)
        sum_parts(g, h0 + e / hd, e % hd, nact, part, out);
    if (threadIdx.x == 0 && atomicAdd(cnt + 3 * vh + 2, 1u) == (unsigned)nact - 1)
        cnt[3 * vh] = 0, cnt[3 * vh + 1] = 0, cnt[3 * vh + 2] = 0;
}

typedef void (*fused_fn)(step_geom, const int *, const __nv_bfloat16 *, const __nv_bfloat16 *,
                         const __nv_bfloat16 *, const __nv_bfloat16 *, const __nv_bfloat16 *,
                         __nv_bfloat16 *, __nv_bfloat16 *, float2 *, float *, unsigned *,
                         __nv_bfloat16 *);

/* The fused kernel for g (fused_geometry), or NULL where it does not apply: turned off
 * (G4Q_CUDA_ATTN_FUSED=0 or the backend option), a head_dim that is not a multiple of 8 or wider
 * than 8 · FA_THREADS, more shared memory than a block may have, or a grid that does not fit on
 * the device at once (its blocks wait for each other). Sets the kernel's shared-memory limit. */
static fused_fn fused_kernel(g4q_backend *be, const step_geom &g, size_t smem)
{
    const g4q_cuda_state *st = g4q_cuda_st(be);
    const int blocks_y = g.nkv * (g.group / g.gh); /* (KV head, head group) */
    if (!st->attn_fused || g.hd % 8 || g.hd / 8 > FA_THREADS ||
        3 * blocks_y > G4Q_CUDA_STEP_MAX_HEADS)
        return nullptr;
    const fused_fn k = g.gh == 1   ? step_fused_kernel<1>
                       : g.gh == 2 ? step_fused_kernel<2>
                       : g.gh == 4 ? step_fused_kernel<4>
                                   : step_fused_kernel<0>;
    int per_sm = 0;
    if (smem > (size_t)st->smem_optin ||
        cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, FA_THREADS, smem)) {
        cudaGetLastError();
        return nullptr;
    }
    return (size_t)g.nsplit * blocks_y <= (size_t)per_sm * st->sm_count ? k : nullptr;
}

extern "C" int g4q_cuda_attention_fused(g4q_backend *be, int cap, int nh, int nkv, int hd)
{
    if (!be || strcmp(be->name, "cuda") != 0 || nkv < 1 || nh % nkv || nh / nkv > MAX_GROUP)
        return 0;
    const step_geom g = fused_geometry(cap, nh, nkv, hd, 0, 1.0f);
    return fused_kernel(be, g, fused_smem(g)) != nullptr;
}

g4q_status g4q_cuda_attention_step(g4q_backend *be, g4q_buf *out, const g4q_buf *q,
                                   const g4q_buf *k_new, const g4q_buf *v_new, const g4q_buf *kc,
                                   const g4q_buf *vc, int cap, int nh, int nkv, int hd, int window,
                                   float scale, int store)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *st = g4q_cuda_st(be);
    const int group = nh / nkv;
    if (group > MAX_GROUP || hd % 2 || (size_t)group * hd * sizeof(float) > 48 * 1024 ||
        nh > G4Q_CUDA_STEP_MAX_HEADS)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "cuda attention: step position with %d query heads per KV head, head_dim "
                        "%d (at most %d heads, 48 KB of q)",
                        group, hd, MAX_GROUP);
    const step_geom gf = fused_geometry(cap, nh, nkv, hd, window, scale);
    const size_t smem = fused_smem(gf);
    const fused_fn fk = fused_kernel(be, gf, smem);
    const step_geom g = fk ? gf : step_geometry(cap, nh, nkv, hd, window, scale);
    const size_t s_bytes = fk ? 0 : ((size_t)nh * g.ldS * 2 + 255) / 256 * 256;
    const size_t st_bytes = ((size_t)g.nsplit * nh * sizeof(float2) + 255) / 256 * 256;
    const size_t p_bytes = (size_t)g.nsplit * nh * hd * sizeof(float);
    void *scr;
    G4Q_TRY(g4q_cuda_scratch(be, s_bytes + st_bytes + p_bytes, &scr));
    __nv_bfloat16 *S = (__nv_bfloat16 *)scr;
    float2 *stats = (float2 *)((char *)scr + s_bytes);
    float *part = (float *)((char *)scr + s_bytes + st_bytes);
    __nv_bfloat16 *kst = store ? (__nv_bfloat16 *)kc->data : nullptr;
    __nv_bfloat16 *vst = store ? (__nv_bfloat16 *)vc->data : nullptr;
    if (fk) {
        G4Q_CUDA_CHECK(g4q_cuda_launch(
            be, fk, dim3((unsigned)g.nsplit, (unsigned)(nh / g.gh)), dim3(FA_THREADS), smem, g,
            (const int *)st->pos_dev, (const __nv_bfloat16 *)q->data,
            (const __nv_bfloat16 *)kc->data, (const __nv_bfloat16 *)vc->data,
            (const __nv_bfloat16 *)k_new->data, (const __nv_bfloat16 *)v_new->data, kst, vst, stats,
            part, st->step_done, (__nv_bfloat16 *)out->data));
        return G4Q_OK;
    }
    /* The usual groups get a kernel with the head loop unrolled at compile time. */
    void (*scores)(step_geom, const int *, const __nv_bfloat16 *, const __nv_bfloat16 *,
                   const __nv_bfloat16 *, const __nv_bfloat16 *, __nv_bfloat16 *, __nv_bfloat16 *,
                   __nv_bfloat16 *, float2 *) = group == 1    ? step_scores_kernel<1>
                                                : group == 2  ? step_scores_kernel<2>
                                                : group == 4  ? step_scores_kernel<4>
                                                : group == 8  ? step_scores_kernel<8>
                                                : group == 16 ? step_scores_kernel<16>
                                                              : step_scores_kernel<0>;
    G4Q_CUDA_CHECK(g4q_cuda_launch(be, scores, dim3((unsigned)g.nsplit, (unsigned)nkv),
                                   dim3(ST_THREADS), (size_t)group * hd * sizeof(float), g,
                                   (const int *)st->pos_dev, (const __nv_bfloat16 *)q->data,
                                   (const __nv_bfloat16 *)kc->data,
                                   (const __nv_bfloat16 *)k_new->data,
                                   (const __nv_bfloat16 *)v_new->data, kst, vst, S, stats));
    const unsigned pv_threads = hd <= 256 ? 128 : PV_MAX_THREADS;
    G4Q_CUDA_CHECK(g4q_cuda_launch(
        be, step_pv_kernel, dim3((unsigned)g.nsplit, (unsigned)nh), dim3(pv_threads), 0, g,
        (const int *)st->pos_dev, (const __nv_bfloat16 *)S, (const float2 *)stats,
        (const __nv_bfloat16 *)vc->data, (const __nv_bfloat16 *)v_new->data, part, st->step_done,
        (__nv_bfloat16 *)out->data));
    return G4Q_OK;
}
