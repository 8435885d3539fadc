// CUDA attention over the KV cache plus the new chunk, and the KV-cache store.
//
// Numerics follow HF eager attention in bf16 (docs/gemma4.md §4.9): score = bf16(bf16(q·k) ·
// scale) with an fp32 dot product; p = bf16(softmax(score) in fp32) over the visible keys; out =
// bf16(Σ p·v) summed in fp32. In F32 mode the kernels are instantiated for fp32 (activations,
// scores and probabilities stored in fp32, no rounding besides fp32's): score = (q·k)·scale,
// p = exp(s - max) · (1/sum), as the CPU backend computes them. Because p is rounded AFTER
// normalisation, the softmax needs the global max and sum before any p·v, so the op runs as four
// kernels:
//   1. scores_kernel : S[h, t, j] = score (stored as T) for every key j, tiles of RQ query rows
//                      of one KV head × KT keys; K rows are read once per tile, q from shared
//                      memory.
//   2. softmax_kernel: per (t, h) row, max and sum over the visible keys, P = T(e/sum) in place
//                      (0 for invisible keys; T the activation type).
//   3. pv_kernel     : partial fp32 sums Σ p·v over one of nsplit key ranges, RQ rows per block,
//                      2 dims per thread; the key split keeps decode (T = 1) spread over the GPU.
//   4. finish_kernel : adds the nsplit partials in a fixed order and stores T once.
// Tensor cores (BF16 mode, chunks of TC_MIN_T rows or more): steps 1 and 3 are batched cuBLAS
// GEMMs instead (bf16 inputs, fp32 accumulation, one batch entry per query head through device
// pointer arrays, so that the heads of a GQA group share their K and V rows in place):
//   S_h = bf16(Q_h · K_cacheᵀ | Q_h · K_newᵀ) for every key, visible or not (masked in step 2,
//         which also applies the scale with its rounding: score = bf16(S · scale));
//   O_h = P_h · V over all keys (invisible ones have p = 0): written as bf16 directly when there
//         is no cached key, else summed in fp32 over the two key ranges and rounded once.
// The numerics are those above; only the order of the fp32 sums differs. F32 mode and short
// chunks (decode) keep the SIMT kernels.
// Keys: j < nc are cache slots 0..nc-1 (nc = min(n_past, cap); slot j holds the position p with
// p ≡ j mod cap among the cached positions max(0, n_past-cap) .. n_past-1), j >= nc are the new
// rows. A key at position p is visible to the query at position pq iff p <= pq and (window <= 0
// or pq - p < window). Scratch (scores and partials) comes from g4q_cuda_scratch.
#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_internal.h"

#define RQ 8  /* query rows per block (scores, pv); the shuffle reduction assumes 8 */
#define KT 64 /* keys per scores block / per staged P chunk in pv */
#define SC_THREADS 256
#define PV_THREADS 128 /* x 2 dims = 256 dims per block */
#define TARGET_BLOCKS 264

typedef struct att_geom {
    int T, nh, nkv, hd, group, cap, n_past, nc, nkeys, lo_c, window;
} att_geom;

static __device__ __forceinline__ int key_pos(const att_geom &g, int j)
{
    if (j >= g.nc) return g.n_past + (j - g.nc);
    int r = (j - g.lo_c % g.cap + g.cap) % g.cap;
    return g.lo_c + r;
}

static __device__ __forceinline__ bool visible(const att_geom &g, int pq, int p)
{
    return p <= pq && (g.window <= 0 || pq - p < g.window);
}

template <typename T>
static __device__ __forceinline__ const T *key_row(const att_geom &g, const T *cache,
                                                   const T *fresh, int j, int kvh)
{
    if (j < g.nc) return cache + ((size_t)j * g.nkv + kvh) * g.hd;
    return fresh + ((size_t)(j - g.nc) * g.nkv + kvh) * g.hd;
}

/* Sums v[0..7] over the warp; afterwards lane l holds the total of value (l >> 2) (9 shuffles
 * instead of 8 × 5). */
static __device__ __forceinline__ float warp_sum8(float v[8], int lane)
{
#pragma unroll
    for (int k = 0; k < 4; k++) {
        bool hi = lane & 16;
        float send = hi ? v[k] : v[k + 4], keep = hi ? v[k + 4] : v[k];
        v[k] = keep + __shfl_xor_sync(0xffffffffu, send, 16);
    }
#pragma unroll
    for (int k = 0; k < 2; k++) {
        bool hi = lane & 8;
        float send = hi ? v[k] : v[k + 2], keep = hi ? v[k + 2] : v[k];
        v[k] = keep + __shfl_xor_sync(0xffffffffu, send, 8);
    }
    {
        bool hi = lane & 4;
        float send = hi ? v[0] : v[1], keep = hi ? v[1] : v[0];
        v[0] = keep + __shfl_xor_sync(0xffffffffu, send, 4);
    }
    v[0] += __shfl_xor_sync(0xffffffffu, v[0], 2);
    v[0] += __shfl_xor_sync(0xffffffffu, v[0], 1);
    return v[0];
}

/* grid (key tiles, row tiles, nkv); dynamic smem: RQ × hd floats of q. */
template <typename T, bool VEC>
static __global__ void __launch_bounds__(SC_THREADS)
    scores_kernel(att_geom g, const T *__restrict__ q, const T *__restrict__ kc,
                  const T *__restrict__ kn, T *__restrict__ S, float scale)
{
    extern __shared__ float qs[];
    const int kvh = blockIdx.z, nrows = g.T * g.group;
    const int r0 = blockIdx.y * RQ, j0 = blockIdx.x * KT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    /* Skip the tile when no row sees any of its keys (e.g. above the causal diagonal). */
    const int rlast = min(r0 + RQ, nrows) - 1;
    const int pq_lo = g.n_past + r0 / g.group, pq_hi = g.n_past + rlast / g.group;
    const int jl = min(j0 + KT, g.nkeys) - 1;
    if (j0 >= g.nc && g.n_past + (j0 - g.nc) > pq_hi) return;
    if (jl >= g.nc && j0 >= g.nc && g.window > 0 && pq_lo - (g.n_past + (jl - g.nc)) >= g.window)
        return;
    for (int e = threadIdx.x; e < RQ * g.hd; e += SC_THREADS) {
        int r = r0 + e / g.hd, d = e % g.hd;
        float v = 0.0f;
        if (r < nrows) {
            int t = r / g.group, h = kvh * g.group + r % g.group;
            v = g4q_ld(q[((size_t)t * g.nh + h) * g.hd + d]);
        }
        qs[e] = v;
    }
    __syncthreads();
    for (int kk = warp; kk < KT; kk += SC_THREADS / 32) {
        const int j = j0 + kk;
        if (j >= g.nkeys) break;
        const int p = key_pos(g, j);
        const T *kr = key_row(g, kc, kn, j, kvh);
        float acc[RQ];
#pragma unroll
        for (int r = 0; r < RQ; r++)
            acc[r] = 0.0f;
        if (VEC) {
            for (int c = lane; c < g.hd / 8; c += 32) {
                float kf[8];
                g4q_ld8(kr + c * 8, kf);
#pragma unroll
                for (int r = 0; r < RQ; r++) {
                    const float4 *qp = reinterpret_cast<const float4 *>(qs + r * g.hd + c * 8);
                    float4 a = qp[0], b = qp[1];
                    acc[r] += a.x * kf[0] + a.y * kf[1] + a.z * kf[2] + a.w * kf[3] + b.x * kf[4] +
                              b.y * kf[5] + b.z * kf[6] + b.w * kf[7];
                }
            }
        } else {
            for (int d = lane; d < g.hd; d += 32) {
                float kf = g4q_ld(kr[d]);
#pragma unroll
                for (int r = 0; r < RQ; r++)
                    acc[r] = fmaf(qs[r * g.hd + d], kf, acc[r]);
            }
        }
        float tot = warp_sum8(acc, lane);
        const int r = r0 + (lane >> 2);
        if ((lane & 3) == 0 && r < nrows) {
            int t = r / g.group, h = kvh * g.group + r % g.group;
            if (visible(g, g.n_past + t, p))
                S[((size_t)h * g.T + t) * g.nkeys + j] = g4q_cvt<T>(g4q_rnd<T>(tot) * scale);
        }
    }
}

/* grid (T, nh): P = T(exp(s - max) / sum) over the visible keys of row (t, h), 0 elsewhere, with
 * s = T(S · scale) (scale 1 when S already holds the scores: the rounding is then exact). */
template <typename T> static __global__ void softmax_kernel(att_geom g, T *S, float scale)
{
    __shared__ float red[32];
    const int t = blockIdx.x, h = blockIdx.y, pq = g.n_past + t;
    T *row = S + ((size_t)h * g.T + t) * g.nkeys;
    const int nw = blockDim.x >> 5, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < g.nkeys; j += blockDim.x)
        if (visible(g, pq, key_pos(g, j))) m = fmaxf(m, g4q_rnd<T>(g4q_ld(row[j]) * scale));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (lane == 0) red[warp] = m;
    __syncthreads();
    m = -INFINITY;
    for (int w = 0; w < nw; w++)
        m = fmaxf(m, red[w]);
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < g.nkeys; j += blockDim.x)
        if (visible(g, pq, key_pos(g, j))) sum += expf(g4q_rnd<T>(g4q_ld(row[j]) * scale) - m);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) red[warp] = sum;
    __syncthreads();
    sum = 0.0f;
    for (int w = 0; w < nw; w++)
        sum += red[w];
    const float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < g.nkeys; j += blockDim.x) {
        float p = 0.0f;
        if (visible(g, pq, key_pos(g, j))) p = expf(g4q_rnd<T>(g4q_ld(row[j]) * scale) - m) * inv;
        row[j] = g4q_cvt<T>(p);
    }
}

/* softmax_kernel for bf16 scores with nkeys % 8 == 0 and nkeys <= 256 · PER: a warp per row
 * (SMW_WARPS rows per block, rows h · T + t), lane l holding the 8-key chunks l, l + 32, ... in
 * registers, so the scores are read once and P written once with 16-byte accesses. The value
 * of every element is softmax_kernel's; only the fp32 order of the row sum differs. */
#define SMW_WARPS 4
template <int PER>
static __global__ void __launch_bounds__(SMW_WARPS * 32)
    softmax_warp_kernel(att_geom g, __nv_bfloat16 *S, float scale)
{
    const int lane = threadIdx.x & 31;
    const size_t row = (size_t)blockIdx.x * SMW_WARPS + (threadIdx.x >> 5);
    if (row >= (size_t)g.nh * g.T) return;
    const int pq = g.n_past + (int)(row % (size_t)g.T), chunks = g.nkeys / 8;
    uint4 *r = reinterpret_cast<uint4 *>(S + row * (size_t)g.nkeys);
    float v[PER][8];
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int c = lane + 32 * k;
        uint4 raw = make_uint4(0u, 0u, 0u, 0u);
        if (c < chunks) raw = r[c];
        const __nv_bfloat16 *e = reinterpret_cast<const __nv_bfloat16 *>(&raw);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const bool vis = c < chunks && visible(g, pq, key_pos(g, 8 * c + j));
            v[k][j] = vis ? g4q_rnd<__nv_bfloat16>(__bfloat162float(e[j]) * scale) : -INFINITY;
            m = fmaxf(m, v[k][j]);
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < PER; k++)
#pragma unroll
        for (int j = 0; j < 8; j++) {
            v[k][j] = v[k][j] == -INFINITY ? 0.0f : expf(v[k][j] - m);
            sum += v[k][j];
        }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float inv = 1.0f / sum;
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int c = lane + 32 * k;
        if (c >= chunks) break;
        uint4 o;
        __nv_bfloat16 *e = reinterpret_cast<__nv_bfloat16 *>(&o);
#pragma unroll
        for (int j = 0; j < 8; j++)
            e[j] = __float2bfloat16_rn(v[k][j] * inv);
        r[c] = o;
    }
}

static cudaError_t softmax_rows(const att_geom &g, __nv_bfloat16 *S, float scale,
                                cudaStream_t stream)
{
    softmax_kernel<__nv_bfloat16>
        <<<dim3((unsigned)g.T, (unsigned)g.nh), 128, 0, stream>>>(g, S, scale);
    return cudaGetLastError();
}

/* P = softmax of S's rows in place (bf16 scores): the warp kernel where it applies. */
static cudaError_t softmax_bf16(const att_geom &g, __nv_bfloat16 *S, float scale,
                                cudaStream_t stream)
{
    const unsigned blocks = (unsigned)(((size_t)g.nh * g.T + SMW_WARPS - 1) / SMW_WARPS);
    const dim3 bd(SMW_WARPS * 32);
    if (g.nkeys % 8 == 0 && (uintptr_t)S % 16 == 0) {
        if (g.nkeys <= 256) softmax_warp_kernel<1><<<blocks, bd, 0, stream>>>(g, S, scale);
        else if (g.nkeys <= 512) softmax_warp_kernel<2><<<blocks, bd, 0, stream>>>(g, S, scale);
        else if (g.nkeys <= 1024) softmax_warp_kernel<4><<<blocks, bd, 0, stream>>>(g, S, scale);
        else if (g.nkeys <= 2048) softmax_warp_kernel<8><<<blocks, bd, 0, stream>>>(g, S, scale);
        else return softmax_rows(g, S, scale, stream);
        return cudaGetLastError();
    }
    return softmax_rows(g, S, scale, stream);
}

/* grid (dim chunks, row tiles, nkv · nsplit): part[split, t, h·hd + d] = Σ_j p·v over the split's
 * keys, fp32. */
template <typename T>
static __global__ void __launch_bounds__(PV_THREADS)
    pv_kernel(att_geom g, const T *__restrict__ P, const T *__restrict__ vc,
              const T *__restrict__ vn, float *__restrict__ part, int nsplit, int split_len)
{
    __shared__ float ps[RQ][KT];
    const int kvh = blockIdx.z % g.nkv, split = blockIdx.z / g.nkv;
    const int nrows = g.T * g.group, r0 = blockIdx.y * RQ;
    const int d = (blockIdx.x * PV_THREADS + threadIdx.x) * 2;
    const int jb = split * split_len, je = min(jb + split_len, g.nkeys);
    float acc[RQ][2];
#pragma unroll
    for (int r = 0; r < RQ; r++)
        acc[r][0] = acc[r][1] = 0.0f;
    for (int j0 = jb; j0 < je; j0 += KT) {
        __syncthreads();
        for (int e = threadIdx.x; e < RQ * KT; e += PV_THREADS) {
            int rr = e / KT, j = j0 + e % KT, r = r0 + rr;
            float p = 0.0f;
            if (r < nrows && j < je) {
                int t = r / g.group, h = kvh * g.group + r % g.group;
                p = g4q_ld(P[((size_t)h * g.T + t) * g.nkeys + j]);
            }
            ps[rr][e % KT] = p;
        }
        __syncthreads();
        const int n = min(KT, je - j0);
        for (int k = 0; k < n; k++) {
            bool any = false;
#pragma unroll
            for (int r = 0; r < RQ; r++)
                any |= ps[r][k] != 0.0f;
            if (!any || d >= g.hd) continue;
            const T *vr = key_row(g, vc, vn, j0 + k, kvh);
            float2 v = g4q_ld2(vr + d);
#pragma unroll
            for (int r = 0; r < RQ; r++) {
                acc[r][0] = fmaf(ps[r][k], v.x, acc[r][0]);
                acc[r][1] = fmaf(ps[r][k], v.y, acc[r][1]);
            }
        }
    }
    if (d >= g.hd) return;
    for (int r = 0; r < RQ; r++) {
        int rr = r0 + r;
        if (rr >= nrows) break;
        int t = rr / g.group, h = kvh * g.group + rr % g.group;
        float *o = part + ((size_t)split * g.T + t) * (size_t)g.nh * g.hd + (size_t)h * g.hd + d;
        o[0] = acc[r][0];
        o[1] = acc[r][1];
    }
}

template <typename T>
static __global__ void finish_kernel(T *out, const float *part, size_t n, int nsplit)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int k = 0; k < nsplit; k++)
            s += part[(size_t)k * n + i];
        out[i] = g4q_cvt<T>(s);
    }
}

/* Launches the four kernels for activations of type T (geometry and split chosen by the caller).
 * The scratch holds S [nh, T, nkeys] of T, then nsplit fp32 partial outputs. */
template <typename T>
static g4q_status launch_attention(g4q_backend *be, const att_geom &g, g4q_buf *out,
                                   const g4q_buf *q, const g4q_buf *k_new, const g4q_buf *v_new,
                                   const g4q_buf *kc, const g4q_buf *vc, int nsplit, int split_len,
                                   float scale)
{
    g4q_ctx *ctx = be->ctx;
    cudaStream_t stream = g4q_cuda_st(be)->stream;
    const unsigned row_tiles = g4q_cuda_blocks((size_t)g.T * g.group, RQ);
    const unsigned key_tiles = g4q_cuda_blocks((size_t)g.nkeys, KT);
    const unsigned dim_chunks = g4q_cuda_blocks((size_t)g.hd, 2 * PV_THREADS);
    const size_t s_elems = (size_t)g.nh * g.T * g.nkeys, o_elems = (size_t)g.T * g.nh * g.hd;
    const size_t s_bytes = (s_elems * sizeof(T) + 255) / 256 * 256;
    void *scr;
    G4Q_TRY(g4q_cuda_scratch(be, s_bytes + (size_t)nsplit * o_elems * sizeof(float), &scr));
    T *S = (T *)scr;
    float *part = (float *)((char *)scr + s_bytes);

    const size_t qs_bytes = (size_t)RQ * g.hd * sizeof(float);
    if (qs_bytes > 48 * 1024)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "cuda attention: head_dim %d too large", g.hd);
    const T *qd = (const T *)q->data, *kcd = (const T *)kc->data, *knd = (const T *)k_new->data;
    dim3 sg(key_tiles, row_tiles, (unsigned)g.nkv);
    if (g.hd % 8 == 0)
        scores_kernel<T, true><<<sg, SC_THREADS, qs_bytes, stream>>>(g, qd, kcd, knd, S, scale);
    else
        scores_kernel<T, false><<<sg, SC_THREADS, qs_bytes, stream>>>(g, qd, kcd, knd, S, scale);
    G4Q_CUDA_CHECK(cudaGetLastError());
    if (sizeof(T) == 2)
        G4Q_CUDA_CHECK(softmax_bf16(g, (__nv_bfloat16 *)S, 1.0f, stream));
    else
        softmax_kernel<T><<<dim3((unsigned)g.T, (unsigned)g.nh), 128, 0, stream>>>(g, S, 1.0f);
    G4Q_CUDA_CHECK(cudaGetLastError());
    dim3 pg(dim_chunks, row_tiles, (unsigned)(g.nkv * nsplit));
    pv_kernel<T><<<pg, PV_THREADS, 0, stream>>>(g, S, (const T *)vc->data, (const T *)v_new->data,
                                                part, nsplit, split_len);
    G4Q_CUDA_CHECK(cudaGetLastError());
    const unsigned fb = std::min(g4q_cuda_blocks(o_elems, 256), 4096u);
    finish_kernel<T><<<fb, 256, 0, stream>>>((T *)out->data, part, o_elems, nsplit);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

/* ---- tensor-core path (file comment) ---- */

#define TC_MIN_T 16 /* chunks of at least this many rows take it (BF16 mode) */
#define TC_ARRAYS 12

/* One thread per query head h: the pointer arrays of the four batched GEMMs, array a at
 * arr[a · nh + h]: S over the cache (K, Q, S), S over the chunk, P·V over the cache (V, P, O), P·V
 * over the chunk. o has elements of osz bytes ([T, nh, hd]). */
static __global__ void tc_ptrs_kernel(att_geom g, const __nv_bfloat16 *q, const __nv_bfloat16 *kc,
                                      const __nv_bfloat16 *kn, const __nv_bfloat16 *vc,
                                      const __nv_bfloat16 *vn, __nv_bfloat16 *S, char *o, int osz,
                                      const void **arr)
{
    const int h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= g.nh) return;
    const size_t nh = (size_t)g.nh, kv = (size_t)(h / g.group) * g.hd, qo = (size_t)h * g.hd;
    __nv_bfloat16 *sh = S + (size_t)h * g.T * g.nkeys;
    void *oh = o + qo * osz;
    const void *v[TC_ARRAYS] = {kc + kv, q + qo, sh,          kn + kv, q + qo, sh + g.nc,
                                vc + kv, sh,     oh,          vn + kv, sh + g.nc, oh};
    for (int a = 0; a < TC_ARRAYS; a++)
        arr[a * nh + h] = v[a];
}

static g4q_status tc_attention(g4q_backend *be, const att_geom &g, g4q_buf *out, const g4q_buf *q,
                               const g4q_buf *k_new, const g4q_buf *v_new, const g4q_buf *kc,
                               const g4q_buf *vc, float scale)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    const size_t nh = (size_t)g.nh, o_elems = (size_t)g.T * nh * g.hd;
    const size_t s_bytes = (nh * g.T * g.nkeys * 2 + 255) / 256 * 256;
    const size_t a_bytes = (TC_ARRAYS * nh * sizeof(void *) + 255) / 256 * 256;
    const size_t o_bytes = g.nc ? o_elems * sizeof(float) : 0; /* fp32 sum of the two ranges */
    void *scr;
    G4Q_TRY(g4q_cuda_scratch(be, s_bytes + a_bytes + o_bytes, &scr));
    __nv_bfloat16 *S = (__nv_bfloat16 *)scr;
    const void **arr = (const void **)((char *)scr + s_bytes);
    float *o32 = (float *)((char *)scr + s_bytes + a_bytes);
    typedef const __nv_bfloat16 cb;
    tc_ptrs_kernel<<<g4q_cuda_blocks(nh, 128), 128, 0, s->stream>>>(
        g, (cb *)q->data, (cb *)kc->data, (cb *)k_new->data, (cb *)vc->data, (cb *)v_new->data, S,
        g.nc ? (char *)o32 : (char *)out->data, g.nc ? 4 : 2, arr);
    G4Q_CUDA_CHECK(cudaGetLastError());
    const float one = 1.0f, zero = 0.0f;
    const int ldkv = g.nkv * g.hd, ldq = g.nh * g.hd, batch = g.nh;
    const cudaDataType bf = CUDA_R_16BF, ot = g.nc ? CUDA_R_32F : CUDA_R_16BF;
    /* Column-major views: S_hᵀ [keys, T] (ld nkeys) = (K [keys, hd] row-major)ᵀᵀ · Q_hᵀ. */
    if (g.nc)
        G4Q_CUBLAS_CHECK(cublasGemmBatchedEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, g.nc, g.T, g.hd,
                                             &one, arr, bf, ldkv, arr + nh, bf, ldq, &zero,
                                             (void *const *)(arr + 2 * nh), bf, g.nkeys, batch,
                                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    G4Q_CUBLAS_CHECK(cublasGemmBatchedEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, g.T, g.T, g.hd, &one,
                                         arr + 3 * nh, bf, ldkv, arr + 4 * nh, bf, ldq, &zero,
                                         (void *const *)(arr + 5 * nh), bf, g.nkeys, batch,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    G4Q_CUDA_CHECK(softmax_bf16(g, S, scale, s->stream));
    /* O_hᵀ [hd, T] (ld nh·hd) = (V [keys, hd] row-major)ᵀ · P_hᵀ [keys, T]. */
    if (g.nc)
        G4Q_CUBLAS_CHECK(cublasGemmBatchedEx(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, g.hd, g.T, g.nc,
                                             &one, arr + 6 * nh, bf, ldkv, arr + 7 * nh, bf,
                                             g.nkeys, &zero, (void *const *)(arr + 8 * nh), ot, ldq,
                                             batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    G4Q_CUBLAS_CHECK(cublasGemmBatchedEx(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, g.hd, g.T, g.T,
                                         &one, arr + 9 * nh, bf, ldkv, arr + 10 * nh, bf,
                                         g.nkeys, g.nc ? &one : &zero, (void *const *)(arr + 11 * nh),
                                         ot, ldq, batch, CUBLAS_COMPUTE_32F,
                                         CUBLAS_GEMM_DEFAULT));
    if (g.nc) {
        const unsigned fb = std::min(g4q_cuda_blocks(o_elems, 256), 4096u);
        finish_kernel<__nv_bfloat16>
            <<<fb, 256, 0, s->stream>>>((__nv_bfloat16 *)out->data, o32, o_elems, 1);
        G4Q_CUDA_CHECK(cudaGetLastError());
    }
    return G4Q_OK;
}

/* g4q_cuda_attention; with store, a step-position run also stores the new K/V (the step kernels'
 * store, cuda_attention_step.cu), other runs ignore it. */
static g4q_status attend(g4q_backend *be, g4q_buf *out, const g4q_buf *q, const g4q_buf *k_new,
                         const g4q_buf *v_new, const g4q_buf *kc, const g4q_buf *vc, int cap,
                         int n_past, int T, int nh, int nkv, int hd, int window, float scale,
                         int store)
{
    g4q_ctx *ctx = be->ctx;
    if (nkv <= 0 || nh % nkv || cap <= 0 || (n_past < 0 && n_past != G4Q_STEP_POS) || T < 0 ||
        hd <= 0 || hd % 2 || !g4q_cuda_act_ok(be, q, (size_t)T * nh * hd) ||
        !g4q_cuda_act_ok(be, out, (size_t)T * nh * hd) ||
        !g4q_cuda_act_ok(be, k_new, (size_t)T * nkv * hd) ||
        !g4q_cuda_act_ok(be, v_new, (size_t)T * nkv * hd) ||
        !g4q_cuda_act_ok(be, kc, (size_t)cap * nkv * hd) ||
        !g4q_cuda_act_ok(be, vc, (size_t)cap * nkv * hd))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL,
                        "cuda attention: T %d nh %d nkv %d hd %d cap %d out of range", T, nh, nkv,
                        hd, cap);
    if (n_past == G4Q_STEP_POS) {
        if (T != 1 || g4q_cuda_st(be)->f32) /* the step kernels exist for bf16 only */
            return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda attention: step position with T %d%s", T,
                            g4q_cuda_st(be)->f32 ? " in F32 mode" : "");
        return g4q_cuda_attention_step(be, out, q, k_new, v_new, kc, vc, cap, nh, nkv, hd, window,
                                       scale, store);
    }
    if (T == 0) return G4Q_OK;
    att_geom g;
    g.T = T, g.nh = nh, g.nkv = nkv, g.hd = hd, g.group = nh / nkv, g.cap = cap;
    g.n_past = n_past, g.nc = n_past < cap ? n_past : cap, g.window = window;
    g.lo_c = n_past - cap > 0 ? n_past - cap : 0;
    g.nkeys = g.nc + T;
    if (!g4q_cuda_st(be)->f32 && T >= TC_MIN_T)
        return tc_attention(be, g, out, q, k_new, v_new, kc, vc, scale);
    const unsigned row_tiles = g4q_cuda_blocks((size_t)T * g.group, RQ);
    const unsigned key_tiles = g4q_cuda_blocks((size_t)g.nkeys, KT);
    const unsigned dim_chunks = g4q_cuda_blocks((size_t)hd, 2 * PV_THREADS);
    const size_t base = (size_t)dim_chunks * row_tiles * nkv;
    int nsplit = (int)((TARGET_BLOCKS + base - 1) / base);
    if (nsplit > (int)key_tiles) nsplit = (int)key_tiles;
    if (nsplit < 1) nsplit = 1;
    const int split_len =
        (int)(g4q_cuda_blocks((size_t)g.nkeys, (unsigned)nsplit) + KT - 1) / KT * KT;
    nsplit = (int)g4q_cuda_blocks((size_t)g.nkeys, (unsigned)split_len);
    if (g4q_cuda_st(be)->f32)
        return launch_attention<float>(be, g, out, q, k_new, v_new, kc, vc, nsplit, split_len,
                                       scale);
    return launch_attention<__nv_bfloat16>(be, g, out, q, k_new, v_new, kc, vc, nsplit, split_len,
                                           scale);
}

g4q_status g4q_cuda_attention(g4q_backend *be, g4q_buf *out, const g4q_buf *q, const g4q_buf *k_new,
                              const g4q_buf *v_new, const g4q_buf *kc, const g4q_buf *vc, int cap,
                              int n_past, int T, int nh, int nkv, int hd, int window, float scale)
{
    return attend(be, out, q, k_new, v_new, kc, vc, cap, n_past, T, nh, nkv, hd, window, scale, 0);
}

/* grid (rows to store): copies row t of k_new / v_new into slot (n_past + t) mod cap; n_past from
 * the step position when pos_dev is set. A byte copy in units of E (row counts them): uint4 where
 * rows are 16-byte aligned, else 2-byte units (a bf16 or half an fp32). */
template <typename E>
static __global__ void kv_store_kernel(void *kcp, void *vcp, const void *knp, const void *vnp,
                                       int cap, int n_past, const int *pos_dev, int first,
                                       size_t row)
{
    E *kc = static_cast<E *>(kcp), *vc = static_cast<E *>(vcp);
    const E *kn = static_cast<const E *>(knp), *vn = static_cast<const E *>(vnp);
    if (pos_dev) n_past = *pos_dev;
    const int t = first + (int)blockIdx.x;
    const size_t slot = (size_t)(n_past + t) % (size_t)cap;
    for (size_t i = threadIdx.x; i < row; i += blockDim.x) {
        kc[slot * row + i] = kn[(size_t)t * row + i];
        vc[slot * row + i] = vn[(size_t)t * row + i];
    }
}

g4q_status g4q_cuda_kv_store(g4q_backend *be, g4q_buf *kc, g4q_buf *vc, const g4q_buf *k_new,
                             const g4q_buf *v_new, int cap, int n_past, int T, int nkv, int hd)
{
    g4q_ctx *ctx = be->ctx;
    const size_t row = (size_t)nkv * hd;
    const int step = n_past == G4Q_STEP_POS;
    if (cap <= 0 || (n_past < 0 && !step) || (step && T != 1) || T < 0 ||
        !g4q_cuda_act_ok(be, kc, (size_t)cap * row) ||
        !g4q_cuda_act_ok(be, vc, (size_t)cap * row) ||
        !g4q_cuda_act_ok(be, k_new, (size_t)T * row) ||
        !g4q_cuda_act_ok(be, v_new, (size_t)T * row))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda kv_store: T %d cap %d out of range", T, cap);
    const int first = T > cap ? T - cap : 0; /* earlier rows would be overwritten anyway */
    if (T - first <= 0) return G4Q_OK;
    const int *pos_dev = step ? g4q_cuda_st(be)->pos_dev : nullptr;
    cudaStream_t st = g4q_cuda_st(be)->stream;
    const size_t row_bytes = row * (g4q_cuda_st(be)->f32 ? 4 : 2);
    const uintptr_t at =
        (uintptr_t)kc->data | (uintptr_t)vc->data | (uintptr_t)k_new->data | (uintptr_t)v_new->data;
    const bool wide = row_bytes % 16 == 0 && at % 16 == 0; /* every row 16-byte aligned */
    auto *store = wide ? kv_store_kernel<uint4> : kv_store_kernel<uint16_t>;
    store<<<(unsigned)(T - first), 256, 0, st>>>(
        kc->data, vc->data, k_new->data, v_new->data, cap, n_past, pos_dev, first,
        row_bytes / (wide ? sizeof(uint4) : sizeof(uint16_t)));
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_attention_store(g4q_backend *be, g4q_buf *out, const g4q_buf *q,
                                    const g4q_buf *k_new, const g4q_buf *v_new, g4q_buf *kc,
                                    g4q_buf *vc, int cap, int n_past, int T, int nh, int nkv,
                                    int hd, int window, float scale)
{
    /* A decode step in bf16 stores inside the attention kernels; everything else stores after. */
    const int fused = n_past == G4Q_STEP_POS && T == 1 && !g4q_cuda_st(be)->f32;
    G4Q_TRY(attend(be, out, q, k_new, v_new, kc, vc, cap, n_past, T, nh, nkv, hd, window, scale,
                   fused));
    return fused ? G4Q_OK : g4q_cuda_kv_store(be, kc, vc, k_new, v_new, cap, n_past, T, nkv, hd);
}
