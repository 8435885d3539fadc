/* Device building blocks shared by the decode-step kernels (cuda_fused.cu, cuda_qgemv.cu,
 * cuda_attention_step.cu): an acquire load, a barrier among the blocks of a grid that are all
 * resident, and one row of norm_add_norm (backend.h) whose fp32 sums do not depend on the block
 * size, so that a kernel of any shape reproduces the standalone norm kernel bit for bit. */
#ifndef G4Q_CUDA_STEP_DEV_H
#define G4Q_CUDA_STEP_DEV_H

#include <cuda_bf16.h>
#include <cstdint>

static __device__ __forceinline__ unsigned g4q_ld_acquire(const unsigned *p)
{
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* Each of n blocks (a grid, or a group of its blocks) arrives at *ctr and waits until all n have:
 * the writes before the call are visible to each of them after it. Only for blocks that are all
 * resident at once (the host checks occupancy); *ctr counts up and is reset by the caller once
 * every block has left the wait. */
static __device__ __forceinline__ void g4q_grid_sync(unsigned *ctr, unsigned n)
{
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        atomicAdd(ctr, 1u);
        while (g4q_ld_acquire(ctr) < n)
            __nanosleep(32);
    }
    __syncthreads();
}

/* Σ term(k, c) over chunks c < nch in the order of a block of ceil(nch / 32) · 32 threads that own
 * one chunk each: a butterfly over each warp of 32 chunks, then those warps' sums in order from 0.
 * A block of any whole number of warps nw gets the same bits: its warp w takes chunk warps w,
 * w + nw, ..., w + (MAXC - 1)·nw, so chunk c = threadIdx.x + k·blockDim.x (term's k). Needs
 * MAXC · blockDim.x >= nch and nch <= 1024 (red: 32 floats). Ends with a barrier (red reusable). */
template <int MAXC, typename F>
static __device__ __forceinline__ float g4q_chunk_sum(int nch, F term, float *red)
{
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5, nvw = (nch + 31) >> 5;
#pragma unroll
    for (int k = 0; k < MAXC; k++) {
        const int vw = (int)(threadIdx.x >> 5) + k * nw;
        if (vw >= nvw) break; /* uniform in the warp */
        const int c = vw * 32 + lane;
        float v = c < nch ? term(k, c) : 0.0f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) red[vw] = v;
    }
    __syncthreads();
    float t = 0.0f;
    for (int w = 0; w < nvw; w++)
        t += red[w];
    __syncthreads();
    return t;
}

/* The norm weights of g4q_nan_row, per thread (its chunks), loaded before the kernel waits for
 * the previous one; a missing weight is 1.0 (multiplying by it is exact). */
template <int MAXC> struct g4q_nan_w {
    uint4 p[MAXC], n[MAXC];
};
template <int MAXC>
static __device__ __forceinline__ void g4q_nan_load_w(g4q_nan_w<MAXC> &w, const uint4 *wp,
                                                      const uint4 *wn, int nch)
{
    const uint4 one = make_uint4(0x3f803f80u, 0x3f803f80u, 0x3f803f80u, 0x3f803f80u);
#pragma unroll
    for (int k = 0; k < MAXC; k++) {
        const int c = (int)threadIdx.x + k * (int)blockDim.x;
        w.p[k] = wp && c < nch ? wp[c] : one;
        w.n[k] = wn && c < nch ? wn[c] : one;
    }
}

static __device__ __forceinline__ float g4q_bf16_round(float v)
{
    return __bfloat162float(__float2bfloat16_rn(v));
}

/* One row of norm_add_norm (backend.h) over nch 16-byte chunks of bf16 (n = 8·nch elements):
 *   a' = rmsnorm(a, wp); h = bf16(bf16(h + bf16(a')) · scale); out = rmsnorm(h, wn)
 * with normed = bf16((x · inv) · w). h is read from h_in; the new h goes to h_out (may equal
 * h_in; NULL: not stored), out to `out` (NULL: skipped). Pointers are generic (global or
 * shared). The block's threads take chunks threadIdx.x + k·blockDim.x; both sums of squares run
 * in g4q_chunk_sum's order, so the bits do not depend on the block size. red: 32 floats. */
template <int MAXC>
static __device__ __forceinline__ void g4q_nan_row(const uint4 *a, const uint4 *h_in, uint4 *h_out,
                                                   const g4q_nan_w<MAXC> &w, float scale,
                                                   uint4 *out, int nch, float eps, float *red)
{
    uint4 av[MAXC], hv[MAXC];
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
    for (int k = 0; k < MAXC; k++) {
        const int c = (int)threadIdx.x + k * (int)blockDim.x;
        av[k] = c < nch ? a[c] : zero;
        hv[k] = c < nch ? h_in[c] : zero;
    }
    const float n = (float)(8 * nch);
    const float ss = g4q_chunk_sum<MAXC>(
        nch,
        [&](int k, int) {
            const __nv_bfloat16 *e = reinterpret_cast<const __nv_bfloat16 *>(&av[k]);
            float s = 0.0f;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float v = __bfloat162float(e[j]);
                s = fmaf(v, v, s);
            }
            return s;
        },
        red);
    const float inv = 1.0f / sqrtf(ss / n + eps);
    const float s2 = g4q_chunk_sum<MAXC>(
        nch,
        [&](int k, int c) {
            const __nv_bfloat16 *ae = reinterpret_cast<const __nv_bfloat16 *>(&av[k]);
            const __nv_bfloat16 *we = reinterpret_cast<const __nv_bfloat16 *>(&w.p[k]);
            __nv_bfloat16 *he = reinterpret_cast<__nv_bfloat16 *>(&hv[k]);
            float s = 0.0f;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const float an = __bfloat162float(ae[j]) * inv * __bfloat162float(we[j]);
                const float v = g4q_bf16_round(
                    g4q_bf16_round(__bfloat162float(he[j]) + g4q_bf16_round(an)) * scale);
                he[j] = __float2bfloat16_rn(v);
                s = fmaf(v, v, s);
            }
            if (h_out) h_out[c] = hv[k];
            return s;
        },
        red);
    if (!out) return;
    const float inv2 = 1.0f / sqrtf(s2 / n + eps);
#pragma unroll
    for (int k = 0; k < MAXC; k++) {
        const int c = (int)threadIdx.x + k * (int)blockDim.x;
        if (c >= nch) break;
        const __nv_bfloat16 *he = reinterpret_cast<const __nv_bfloat16 *>(&hv[k]);
        const __nv_bfloat16 *we = reinterpret_cast<const __nv_bfloat16 *>(&w.n[k]);
        uint4 o;
        __nv_bfloat16 *oe = reinterpret_cast<__nv_bfloat16 *>(&o);
#pragma unroll
        for (int j = 0; j < 8; j++)
            oe[j] = __float2bfloat16_rn(__bfloat162float(he[j]) * inv2 * __bfloat162float(we[j]));
        out[c] = o;
    }
}

#endif
