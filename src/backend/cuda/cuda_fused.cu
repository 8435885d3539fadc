// CUDA fused decode-step ops (backend.h, "decode steps"): per-head q/k/v norms + RoPE in one
// kernel, the residual update between two RMSNorms in one kernel, the step position, and graph
// recording of an op sequence on the backend's stream.
//
// Rounding points are those of the plain ops they replace (cuda_norm.cu, cuda_rope.cu,
// cuda_elementwise.cu): normed = bf16((x · inv) · w); RoPE c = bf16(cos θ), s = bf16(sin θ),
// y = bf16(bf16(a·c) − bf16(b·s)) etc.; residual bf16(bf16(h + a) · scale). Only the fp32 order
// of the sums of squares differs from cuda_norm.cu. The kernels are launched with programmatic
// dependent launch (cuda_internal.h).
#include <cstdint>
#include <cstdlib>

#include "backend/cuda/cuda_internal.h"

#define FUSED_THREADS 128
#define NAN_MAX_PER 16 /* norm_add_norm: elements per thread held in registers, at most */

struct g4q_graph {
    cudaGraphExec_t exec;
    uint64_t epoch; /* backend epoch at recording */
};

static __device__ __forceinline__ float rb(float v)
{
    return __bfloat162float(__float2bfloat16_rn(v));
}

/* Sums (a, b) over the block; red holds 32 float2. Ends with a barrier, so red can be reused. */
static __device__ float2 block_sum2(float2 v, float2 *red)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        v.x += __shfl_xor_sync(0xffffffffu, v.x, o);
        v.y += __shfl_xor_sync(0xffffffffu, v.y, o);
    }
    const int warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if ((threadIdx.x & 31) == 0) red[warp] = v;
    __syncthreads();
    float2 t = make_float2(0.0f, 0.0f);
    for (int w = 0; w < nw; w++)
        t.x += red[w].x, t.y += red[w].y;
    __syncthreads();
    return t;
}

/* grid (T, nh + nkv): blocks y < nh normalise and rotate q head y of token x; the others KV head
 * y - nh: v (from its own row, or from the raw k row when v_from_k), then k. Each thread owns
 * the pairs (i, i + hd/2) it reads and writes, so in place is safe. */
static __global__ void __launch_bounds__(FUSED_THREADS)
    qkv_norm_rope_kernel(__nv_bfloat16 *q, __nv_bfloat16 *k, __nv_bfloat16 *v, int v_from_k,
                         const __nv_bfloat16 *qw, const __nv_bfloat16 *kw, const float *inv_freq,
                         int nh, int nkv, int hd, int pos0, const int *pos_dev, float eps)
{
    __shared__ float2 red[32];
    g4q_pdl_trigger();
    g4q_pdl_wait();
    const int t = blockIdx.x, b = blockIdx.y, half = hd / 2;
    const bool is_q = b < nh;
    __nv_bfloat16 *x = is_q ? q + ((size_t)t * nh + b) * hd : k + ((size_t)t * nkv + (b - nh)) * hd;
    __nv_bfloat16 *vr = is_q ? nullptr : v + ((size_t)t * nkv + (b - nh)) * hd;
    const __nv_bfloat16 *w = is_q ? qw : kw;
    float2 ss = make_float2(0.0f, 0.0f); /* x: sum of squares; own v row (!v_from_k) */
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        const float a = __bfloat162float(x[i]);
        ss.x = fmaf(a, a, ss.x);
        if (vr && !v_from_k) {
            const float c = __bfloat162float(vr[i]);
            ss.y = fmaf(c, c, ss.y);
        }
    }
    ss = block_sum2(ss, red);
    const float inv = 1.0f / sqrtf(ss.x / (float)hd + eps);
    const float inv_v = v_from_k ? inv : 1.0f / sqrtf(ss.y / (float)hd + eps);
    const float p = (float)((pos_dev ? *pos_dev : pos0) + t);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float xa = __bfloat162float(x[i]), xb = __bfloat162float(x[i + half]);
        if (vr) {
            const float va = v_from_k ? xa : __bfloat162float(vr[i]);
            const float vb = v_from_k ? xb : __bfloat162float(vr[i + half]);
            vr[i] = __float2bfloat16_rn(va * inv_v);
            vr[i + half] = __float2bfloat16_rn(vb * inv_v);
        }
        const float a = rb(xa * inv * __bfloat162float(w[i]));
        const float bb = rb(xb * inv * __bfloat162float(w[i + half]));
        const float th = g4q_rope_angle(p, inv_freq[i]);
        const float c = g4q_rope_cos<__nv_bfloat16>(th), s = g4q_rope_sin<__nv_bfloat16>(th);
        x[i] = __float2bfloat16_rn(rb(a * c) - rb(bb * s));
        x[i + half] = __float2bfloat16_rn(rb(bb * c) + rb(a * s));
    }
}

/* The same computation with one warp per head instead of one block (4 heads a block): lane l
 * owns the pairs (l + 32j, l + 32j + hd/2), j < NP = hd/64, in registers; the sums of squares
 * are warp reductions, so no block barrier, and prefill's T x heads small blocks stop being
 * latency-bound (the block version took 49 us for the 12B's 1024 x 24 heads; the tensors are
 * 34 MB, 11 us at the copy bandwidth). Each lane computes its own angles: decode steps and
 * chunks too short for the angles' table (prefill chunks take qkv_norm_rope_vec_kernel below).
 * Rounding points as above; the sums of squares in another fp32 order. */
#define QKV_WARPS 4
#define QKV_TABLE_T 16 /* chunks of at least this many tokens take the angles from a table */
template <int NP>
static __global__ void __launch_bounds__(QKV_WARPS * 32)
    qkv_norm_rope_warp_kernel(__nv_bfloat16 *q, __nv_bfloat16 *k, __nv_bfloat16 *v, int v_from_k,
                              const __nv_bfloat16 *qw, const __nv_bfloat16 *kw,
                              const float *inv_freq, int nh, int nkv, int hd, int pos0,
                              const int *pos_dev, float eps)
{
    g4q_pdl_trigger();
    g4q_pdl_wait();
    const int t = blockIdx.x, b = blockIdx.y * QKV_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (b >= nh + nkv) return;
    const int half = hd / 2;
    const bool is_q = b < nh;
    __nv_bfloat16 *x = is_q ? q + ((size_t)t * nh + b) * hd : k + ((size_t)t * nkv + (b - nh)) * hd;
    __nv_bfloat16 *vr = is_q ? nullptr : v + ((size_t)t * nkv + (b - nh)) * hd;
    const __nv_bfloat16 *w = is_q ? qw : kw;
    float xa[NP], xb[NP], va[NP], vb[NP];
    float ssx = 0.0f, ssy = 0.0f;
#pragma unroll
    for (int j = 0; j < NP; j++) {
        const int i = lane + 32 * j;
        xa[j] = __bfloat162float(x[i]);
        xb[j] = __bfloat162float(x[i + half]);
        ssx = fmaf(xa[j], xa[j], ssx);
        ssx = fmaf(xb[j], xb[j], ssx);
        if (vr && !v_from_k) {
            va[j] = __bfloat162float(vr[i]);
            vb[j] = __bfloat162float(vr[i + half]);
            ssy = fmaf(va[j], va[j], ssy);
            ssy = fmaf(vb[j], vb[j], ssy);
        } else {
            va[j] = xa[j], vb[j] = xb[j];
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        ssx += __shfl_xor_sync(0xffffffffu, ssx, o);
        ssy += __shfl_xor_sync(0xffffffffu, ssy, o);
    }
    const float inv = 1.0f / sqrtf(ssx / (float)hd + eps);
    const float inv_v = v_from_k ? inv : 1.0f / sqrtf(ssy / (float)hd + eps);
    const float p = (float)((pos_dev ? *pos_dev : pos0) + t);
#pragma unroll
    for (int j = 0; j < NP; j++) {
        const int i = lane + 32 * j;
        if (vr) {
            vr[i] = __float2bfloat16_rn(va[j] * inv_v);
            vr[i + half] = __float2bfloat16_rn(vb[j] * inv_v);
        }
        const float a = rb(xa[j] * inv * __bfloat162float(w[i]));
        const float bb = rb(xb[j] * inv * __bfloat162float(w[i + half]));
        const float th = g4q_rope_angle(p, inv_freq[i]);
        const float c = g4q_rope_cos<__nv_bfloat16>(th), s = g4q_rope_sin<__nv_bfloat16>(th);
        x[i] = __float2bfloat16_rn(rb(a * c) - rb(bb * s));
        x[i + half] = __float2bfloat16_rn(rb(bb * c) + rb(a * s));
    }
}

/* Eight floats rounded to bf16 into p (16-byte aligned). */
static __device__ __forceinline__ void st8_bf16(__nv_bfloat16 *p, const float f[8])
{
    uint4 v;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&v);
#pragma unroll
    for (int i = 0; i < 4; i++)
        h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = v;
}

/* Prefill chunks with the angles' table and head_dim hd = 16·LPH (16 .. 512): the warp kernel's
 * computation with 16-byte loads and stores. LPH lanes share a head, 32 / LPH heads a warp;
 * sub-lane s owns the pairs (8·s + e, 8·s + e + hd/2), e < 8. With one bf16 per lane and load, the
 * warp kernel reached 16.6% of the DRAM bandwidth on the 12B's 1024-token chunks (22.5 us for 34
 * MB, bench/results/h200_2026-12-04-j.md). Same rounding points; the sums of squares in another
 * fp32 order. Lanes past the last head compute on zeros (the shuffles need every lane) and store
 * nothing. */
template <int LPH>
static __global__ void __launch_bounds__(QKV_WARPS * 32)
    qkv_norm_rope_vec_kernel(__nv_bfloat16 *q, __nv_bfloat16 *k, __nv_bfloat16 *v, int v_from_k,
                             const __nv_bfloat16 *qw, const __nv_bfloat16 *kw, const float *cs,
                             int nh, int nkv, float eps)
{
    constexpr int HPW = 32 / LPH, hd = 16 * LPH, half = 8 * LPH;
    g4q_pdl_trigger();
    g4q_pdl_wait();
    const int lane = threadIdx.x & 31, i0 = 8 * (lane % LPH), t = blockIdx.x;
    const int b = ((int)blockIdx.y * QKV_WARPS + (int)(threadIdx.x >> 5)) * HPW + lane / LPH;
    const bool live = b < nh + nkv, is_q = b < nh;
    __nv_bfloat16 *x = !live  ? nullptr
                       : is_q ? q + ((size_t)t * nh + b) * hd
                              : k + ((size_t)t * nkv + (b - nh)) * hd;
    __nv_bfloat16 *vr = live && !is_q ? v + ((size_t)t * nkv + (b - nh)) * hd : nullptr;
    float xa[8] = {}, xb[8] = {}, va[8], vb[8];
    if (x) g4q_ld8(x + i0, xa), g4q_ld8(x + half + i0, xb);
    const bool own_v = vr && !v_from_k;
    if (own_v) {
        g4q_ld8(vr + i0, va), g4q_ld8(vr + half + i0, vb);
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++)
            va[e] = xa[e], vb[e] = xb[e];
    }
    float ssx = 0.0f, ssy = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; e++) {
        ssx = fmaf(xa[e], xa[e], ssx), ssx = fmaf(xb[e], xb[e], ssx);
        ssy = fmaf(va[e], va[e], ssy), ssy = fmaf(vb[e], vb[e], ssy);
    }
#pragma unroll
    for (int o = LPH / 2; o > 0; o >>= 1) {
        ssx += __shfl_xor_sync(0xffffffffu, ssx, o);
        ssy += __shfl_xor_sync(0xffffffffu, ssy, o);
    }
    if (!x) return;
    const float inv = 1.0f / sqrtf(ssx / (float)hd + eps);
    const float inv_v = own_v ? 1.0f / sqrtf(ssy / (float)hd + eps) : inv;
    if (vr) {
#pragma unroll
        for (int e = 0; e < 8; e++)
            va[e] *= inv_v, vb[e] *= inv_v;
        st8_bf16(vr + i0, va), st8_bf16(vr + half + i0, vb);
    }
    float wa[8], wb[8], c[8], sn[8];
    g4q_ld8(is_q ? qw + i0 : kw + i0, wa), g4q_ld8(is_q ? qw + half + i0 : kw + half + i0, wb);
    g4q_ld8(cs + (size_t)t * hd + i0, c), g4q_ld8(cs + (size_t)t * hd + half + i0, sn);
#pragma unroll
    for (int e = 0; e < 8; e++) {
        const float a = rb(xa[e] * inv * wa[e]), bb = rb(xb[e] * inv * wb[e]);
        xa[e] = rb(a * c[e]) - rb(bb * sn[e]);
        xb[e] = rb(bb * c[e]) + rb(a * sn[e]);
    }
    st8_bf16(x + i0, xa), st8_bf16(x + half + i0, xb);
}

/* grid T, block hd: cs[t, i] = bf16(cos θ), cs[t, hd/2 + i] = bf16(sin θ) of θ = (pos0 + t) ·
 * inv_freq[i], as the kernels above compute them, for qkv_norm_rope_vec_kernel. Computed per lane
 * and head inside the warp kernel, the double-precision cos and sin made a prefill chunk
 * compute-bound (28 us for the 12B's 1024 tokens, 10% of the DRAM bandwidth); a table made once
 * per chunk costs 4 us there. */
static __global__ void rope_table_kernel(float *cs, const float *inv_freq, int hd, int pos0)
{
    const int t = blockIdx.x, e = threadIdx.x, half = hd / 2;
    const int i = e < half ? e : e - half;
    const float th = g4q_rope_angle((float)(pos0 + t), inv_freq[i]);
    cs[(size_t)t * hd + e] =
        e < half ? g4q_rope_cos<__nv_bfloat16>(th) : g4q_rope_sin<__nv_bfloat16>(th);
}

g4q_status g4q_cuda_qkv_norm_rope(g4q_backend *be, g4q_buf *q, g4q_buf *k, g4q_buf *v, int v_from_k,
                                  const g4q_bweight *qw, const g4q_bweight *kw,
                                  const g4q_buf *inv_freq, int T, int nh, int nkv, int hd, int pos0,
                                  float eps)
{
    g4q_ctx *ctx = be->ctx;
    if (T < 0 || nh <= 0 || nkv <= 0 || hd <= 0 || hd % 2 || (pos0 < 0 && pos0 != G4Q_STEP_POS) ||
        !g4q_cuda_bf16_ok(q, (size_t)T * nh * hd) || !g4q_cuda_bf16_ok(k, (size_t)T * nkv * hd) ||
        !g4q_cuda_bf16_ok(v, (size_t)T * nkv * hd) || inv_freq->dtype != G4Q_DT_F32 ||
        (size_t)(hd / 2) > inv_freq->count || qw->rows * qw->cols != hd ||
        kw->rows * kw->cols != hd || qw->format != G4Q_WF_BF16 || kw->format != G4Q_WF_BF16)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda qkv_norm_rope: T %d nh %d nkv %d hd %d", T, nh,
                        nkv, hd);
    if (T == 0) return G4Q_OK;
    g4q_cuda_state *s = g4q_cuda_st(be);
    const int *pd = (const int *)(pos0 == G4Q_STEP_POS ? s->pos_dev : nullptr);
    /* prefill chunks (not a step position, T >= QKV_TABLE_T) with a head_dim of 16 .. 512, a
     * power of two: the angles' table and the 16-byte kernel, LPH = hd / 16 lanes a head */
    const int lph = hd / 16;
    if (!pd && T >= QKV_TABLE_T && hd % 16 == 0 && lph <= 32 && (lph & (lph - 1)) == 0) {
        void *scr;
        G4Q_TRY(g4q_cuda_scratch(be, sizeof(float) * (size_t)T * hd, &scr));
        const float *cs = (const float *)scr;
        rope_table_kernel<<<(unsigned)T, (unsigned)hd, 0, s->stream>>>(
            (float *)scr, (const float *)inv_freq->data, hd, pos0);
        G4Q_CUDA_CHECK(cudaGetLastError());
        const int per_block = QKV_WARPS * (32 / lph);
        const dim3 grid((unsigned)T, (unsigned)((nh + nkv + per_block - 1) / per_block));
        /* the instantiation for LPH = 2^i */
        static void (*const vec[])(__nv_bfloat16 *, __nv_bfloat16 *, __nv_bfloat16 *, int,
                                   const __nv_bfloat16 *, const __nv_bfloat16 *, const float *, int,
                                   int, float) = {
            qkv_norm_rope_vec_kernel<1>,  qkv_norm_rope_vec_kernel<2>,
            qkv_norm_rope_vec_kernel<4>,  qkv_norm_rope_vec_kernel<8>,
            qkv_norm_rope_vec_kernel<16>, qkv_norm_rope_vec_kernel<32>};
        G4Q_CUDA_CHECK(g4q_cuda_launch(
            be, vec[__builtin_ctz((unsigned)lph)], grid, dim3(QKV_WARPS * 32), 0,
            (__nv_bfloat16 *)q->data, (__nv_bfloat16 *)k->data, (__nv_bfloat16 *)v->data, v_from_k,
            (const __nv_bfloat16 *)qw->data, (const __nv_bfloat16 *)kw->data, cs, nh, nkv, eps));
        return G4Q_OK;
    }
    const dim3 wgrid((unsigned)T, (unsigned)((nh + nkv + QKV_WARPS - 1) / QKV_WARPS));
    auto warp_launch = [&](auto kernel) {
        return g4q_cuda_launch(be, kernel, wgrid, dim3(QKV_WARPS * 32), 0, (__nv_bfloat16 *)q->data,
                               (__nv_bfloat16 *)k->data, (__nv_bfloat16 *)v->data, v_from_k,
                               (const __nv_bfloat16 *)qw->data, (const __nv_bfloat16 *)kw->data,
                               (const float *)inv_freq->data, nh, nkv, hd, pos0, pd, eps);
    };
    switch (hd % 64 ? 0 : hd / 64) {
    case 1: G4Q_CUDA_CHECK(warp_launch(qkv_norm_rope_warp_kernel<1>)); return G4Q_OK;
    case 2: G4Q_CUDA_CHECK(warp_launch(qkv_norm_rope_warp_kernel<2>)); return G4Q_OK;
    case 4: G4Q_CUDA_CHECK(warp_launch(qkv_norm_rope_warp_kernel<4>)); return G4Q_OK;
    case 8: G4Q_CUDA_CHECK(warp_launch(qkv_norm_rope_warp_kernel<8>)); return G4Q_OK;
    default: break; /* other head sizes: the block version */
    }
    G4Q_CUDA_CHECK(
        g4q_cuda_launch(be, qkv_norm_rope_kernel, dim3((unsigned)T, (unsigned)(nh + nkv)),
                        dim3(FUSED_THREADS), 0, (__nv_bfloat16 *)q->data, (__nv_bfloat16 *)k->data,
                        (__nv_bfloat16 *)v->data, v_from_k, (const __nv_bfloat16 *)qw->data,
                        (const __nv_bfloat16 *)kw->data, (const float *)inv_freq->data, nh, nkv, hd,
                        pos0, (const int *)(pos0 == G4Q_STEP_POS ? s->pos_dev : nullptr), eps));
    return G4Q_OK;
}

/* grid rows: a = rmsnorm(a, wp); h = bf16(bf16(h + a) · scale); out = rmsnorm(h, wn) (out may
 * be NULL, wn NULL means no weight). Thread i owns elements i, i + blockDim, ... (PER of them,
 * PER · blockDim >= n) and keeps them in registers between the two reductions; the weights are
 * loaded before the wait for the previous kernel. */
template <int PER>
static __global__ void __launch_bounds__(1024)
    norm_add_norm_kernel(__nv_bfloat16 *h, const __nv_bfloat16 *a, const __nv_bfloat16 *wp,
                         float scale, __nv_bfloat16 *out, const __nv_bfloat16 *wn, int n, float eps)
{
    __shared__ float2 red[32];
    float av[PER], hv[PER], wpv[PER], wnv[PER];
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        wpv[k] = wp && i < n ? __bfloat162float(wp[i]) : 1.0f;
        wnv[k] = wn && i < n ? __bfloat162float(wn[i]) : 1.0f;
    }
    g4q_pdl_trigger();
    g4q_pdl_wait();
    const size_t base = (size_t)blockIdx.x * (size_t)n;
    float2 ss = make_float2(0.0f, 0.0f);
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        av[k] = i < n ? __bfloat162float(a[base + i]) : 0.0f;
        hv[k] = i < n ? __bfloat162float(h[base + i]) : 0.0f;
        ss.x = fmaf(av[k], av[k], ss.x);
    }
    ss = block_sum2(ss, red);
    const float inv = 1.0f / sqrtf(ss.x / (float)n + eps);
    float2 s2 = make_float2(0.0f, 0.0f);
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i >= n) continue;
        const float an = wp ? av[k] * inv * wpv[k] : av[k] * inv;
        hv[k] = rb(rb(hv[k] + rb(an)) * scale);
        h[base + i] = __float2bfloat16_rn(hv[k]);
        s2.x = fmaf(hv[k], hv[k], s2.x);
    }
    if (!out) return;
    s2 = block_sum2(s2, red);
    const float inv2 = 1.0f / sqrtf(s2.x / (float)n + eps);
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < n) out[base + i] = __float2bfloat16_rn(wn ? hv[k] * inv2 * wnv[k] : hv[k] * inv2);
    }
}

/* norm_add_norm_kernel with 16-byte accesses (n % 8 == 0): thread i owns the 8-element chunks
 * i, i + blockDim, ... (PER of them) and keeps them packed as bf16 in registers. The per-element
 * arithmetic is norm_add_norm_kernel's; only the fp32 order of the two sums differs. At most
 * 1024 / PER threads (n <= 8192), so that the PER chunks of four operands fit in registers (a
 * bound of 1024 threads capped them at 64 and spilled PER = 4 to local memory). */
template <int PER>
static __global__ void __launch_bounds__(1024 / PER)
    norm_add_norm_vec_kernel(__nv_bfloat16 *h, const __nv_bfloat16 *a, const __nv_bfloat16 *wp,
                             float scale, __nv_bfloat16 *out, const __nv_bfloat16 *wn, int n,
                             float eps)
{
    __shared__ float2 red[32];
    const int chunks = n / 8;
    const uint4 one = make_uint4(0x3f803f80u, 0x3f803f80u, 0x3f803f80u, 0x3f803f80u);
    uint4 av[PER], hv[PER], wpv[PER], wnv[PER];
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int c = threadIdx.x + k * blockDim.x;
        wpv[k] = wp && c < chunks ? reinterpret_cast<const uint4 *>(wp)[c] : one;
        wnv[k] = wn && c < chunks ? reinterpret_cast<const uint4 *>(wn)[c] : one;
    }
    g4q_pdl_trigger();
    g4q_pdl_wait();
    const uint4 *ar = reinterpret_cast<const uint4 *>(a + (size_t)blockIdx.x * (size_t)n);
    uint4 *hr = reinterpret_cast<uint4 *>(h + (size_t)blockIdx.x * (size_t)n);
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
    float2 ss = make_float2(0.0f, 0.0f);
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int c = threadIdx.x + k * blockDim.x;
        av[k] = c < chunks ? ar[c] : zero;
        hv[k] = c < chunks ? hr[c] : zero;
        const __nv_bfloat16 *e = reinterpret_cast<const __nv_bfloat16 *>(&av[k]);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float v = __bfloat162float(e[j]);
            ss.x = fmaf(v, v, ss.x);
        }
    }
    ss = block_sum2(ss, red);
    const float inv = 1.0f / sqrtf(ss.x / (float)n + eps);
    float2 s2 = make_float2(0.0f, 0.0f);
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int c = threadIdx.x + k * blockDim.x;
        if (c >= chunks) continue;
        const __nv_bfloat16 *ae = reinterpret_cast<const __nv_bfloat16 *>(&av[k]);
        const __nv_bfloat16 *we = reinterpret_cast<const __nv_bfloat16 *>(&wpv[k]);
        __nv_bfloat16 *he = reinterpret_cast<__nv_bfloat16 *>(&hv[k]);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float x = __bfloat162float(ae[j]);
            const float an = wp ? x * inv * __bfloat162float(we[j]) : x * inv;
            const float v = rb(rb(__bfloat162float(he[j]) + rb(an)) * scale);
            he[j] = __float2bfloat16_rn(v);
            s2.x = fmaf(v, v, s2.x);
        }
        hr[c] = hv[k];
    }
    if (!out) return;
    s2 = block_sum2(s2, red);
    const float inv2 = 1.0f / sqrtf(s2.x / (float)n + eps);
    uint4 *orow = reinterpret_cast<uint4 *>(out + (size_t)blockIdx.x * (size_t)n);
#pragma unroll
    for (int k = 0; k < PER; k++) {
        const int c = threadIdx.x + k * blockDim.x;
        if (c >= chunks) continue;
        const __nv_bfloat16 *he = reinterpret_cast<const __nv_bfloat16 *>(&hv[k]);
        const __nv_bfloat16 *we = reinterpret_cast<const __nv_bfloat16 *>(&wnv[k]);
        uint4 o;
        __nv_bfloat16 *oe = reinterpret_cast<__nv_bfloat16 *>(&o);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float v = __bfloat162float(he[j]);
            oe[j] = __float2bfloat16_rn(wn ? v * inv2 * __bfloat162float(we[j]) : v * inv2);
        }
        orow[c] = o;
    }
}

static bool aligned16(const void *p)
{
    return (uintptr_t)p % 16 == 0;
}

template <int PER>
static cudaError_t launch_nan_vec(g4q_backend *be, int rows, int n, __nv_bfloat16 *h,
                                  const __nv_bfloat16 *a, const __nv_bfloat16 *wp, float scale,
                                  __nv_bfloat16 *out, const __nv_bfloat16 *wn, float eps)
{
    const unsigned threads = (unsigned)((n / 8 + 32 * PER - 1) / (32 * PER) * 32);
    return g4q_cuda_launch(be, norm_add_norm_vec_kernel<PER>, dim3((unsigned)rows), dim3(threads),
                           0, h, a, wp, scale, out, wn, n, eps);
}

template <int PER>
static cudaError_t launch_nan(g4q_backend *be, int rows, int n, __nv_bfloat16 *h,
                              const __nv_bfloat16 *a, const __nv_bfloat16 *wp, float scale,
                              __nv_bfloat16 *out, const __nv_bfloat16 *wn, float eps)
{
    const unsigned threads = (unsigned)((n + 32 * PER - 1) / (32 * PER) * 32);
    return g4q_cuda_launch(be, norm_add_norm_kernel<PER>, dim3((unsigned)rows), dim3(threads), 0, h,
                           a, wp, scale, out, wn, n, eps);
}

g4q_status g4q_cuda_norm_add_norm(g4q_backend *be, g4q_buf *h, g4q_buf *a,
                                  const g4q_bweight *w_post, float scale, g4q_buf *out,
                                  const g4q_bweight *w_next, int rows, int n, float eps)
{
    g4q_ctx *ctx = be->ctx;
    const size_t total = (size_t)rows * (size_t)n;
    if (rows < 0 || n <= 0 || !g4q_cuda_bf16_ok(h, total) || !g4q_cuda_bf16_ok(a, total) ||
        (out && !g4q_cuda_bf16_ok(out, total)) || (out && out != a && out == h) ||
        (w_post && (w_post->rows * w_post->cols != n || w_post->format != G4Q_WF_BF16)) ||
        (out && w_next && (w_next->rows * w_next->cols != n || w_next->format != G4Q_WF_BF16)) ||
        n > 1024 * NAN_MAX_PER)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda norm_add_norm: %d x %d out of range", rows, n);
    if (rows == 0) return G4Q_OK;
    __nv_bfloat16 *hp = (__nv_bfloat16 *)h->data, *op = out ? (__nv_bfloat16 *)out->data : nullptr;
    const __nv_bfloat16 *ap = (const __nv_bfloat16 *)a->data;
    const __nv_bfloat16 *wp = w_post ? (const __nv_bfloat16 *)w_post->data : nullptr;
    const __nv_bfloat16 *wn = out && w_next ? (const __nv_bfloat16 *)w_next->data : nullptr;
    /* 16-byte accesses where rows allow them: a chunk per thread for a few rows (decode: the
     * row spread over many threads), four for many rows (prefill: more rows resident per SM). */
    const bool vec = n % 8 == 0 && n <= 8 * 1024 && aligned16(hp) && aligned16(ap) &&
                     aligned16(op) && aligned16(wp) && aligned16(wn);
    if (vec) {
        G4Q_CUDA_CHECK(rows < 64 ? launch_nan_vec<1>(be, rows, n, hp, ap, wp, scale, op, wn, eps)
                                 : launch_nan_vec<4>(be, rows, n, hp, ap, wp, scale, op, wn, eps));
        return G4Q_OK;
    }
    /* The fewest registers per thread that keep the row within 1024 threads. */
    const cudaError_t e =
        n <= 1024   ? launch_nan<1>(be, rows, n, hp, ap, wp, scale, op, wn, eps)
        : n <= 2048 ? launch_nan<2>(be, rows, n, hp, ap, wp, scale, op, wn, eps)
        : n <= 4096 ? launch_nan<4>(be, rows, n, hp, ap, wp, scale, op, wn, eps)
        : n <= 8192 ? launch_nan<8>(be, rows, n, hp, ap, wp, scale, op, wn, eps)
                    : launch_nan<NAN_MAX_PER>(be, rows, n, hp, ap, wp, scale, op, wn, eps);
    G4Q_CUDA_CHECK(e);
    return G4Q_OK;
}

/* ---- step position and graphs ---- */

static __global__ void set_pos_kernel(int *pos, int v)
{
    *pos = v;
}

g4q_status g4q_cuda_step_pos(g4q_backend *be, int n_past)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (n_past < 0) return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda step_pos: %d", n_past);
    set_pos_kernel<<<1, 1, 0, s->stream>>>(s->pos_dev, n_past);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}

g4q_status g4q_cuda_graph_begin(g4q_backend *be)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (s->capturing)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda graph_begin: a recording is already open");
    G4Q_CUDA_CHECK(cudaStreamBeginCapture(s->stream, cudaStreamCaptureModeThreadLocal));
    s->capturing = 1;
    return G4Q_OK;
}

g4q_status g4q_cuda_graph_end(g4q_backend *be, g4q_graph **out)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    *out = NULL;
    if (!s->capturing)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda graph_end: no recording is open");
    s->capturing = 0;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(s->stream, &graph);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (graph) cudaGraphDestroy(graph);
        return g4q_fail(ctx, G4Q_ERR_CUDA, "cuda graph_end: recording failed: %s",
                        cudaGetErrorString(e));
    }
    g4q_graph *g = (g4q_graph *)calloc(1, sizeof *g);
    if (!g) {
        cudaGraphDestroy(graph);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "cuda graph_end: out of memory");
    }
    e = cudaGraphInstantiate(&g->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        free(g);
        return g4q_fail(ctx, G4Q_ERR_CUDA, "cuda graph_end: instantiate: %s",
                        cudaGetErrorString(e));
    }
    g->epoch = s->epoch;
    *out = g;
    return G4Q_OK;
}

g4q_status g4q_cuda_graph_launch(g4q_backend *be, g4q_graph *g, int *stale)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    *stale = g->epoch != s->epoch;
    if (*stale) return G4Q_OK;
    G4Q_CUDA_CHECK(cudaGraphLaunch(g->exec, s->stream));
    return G4Q_OK;
}

void g4q_cuda_graph_free(g4q_backend *be, g4q_graph *g)
{
    if (!g) return;
    cudaStreamSynchronize(g4q_cuda_st(be)->stream);
    cudaGraphExecDestroy(g->exec);
    free(g);
}
