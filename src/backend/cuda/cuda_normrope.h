/*
 * Per-head q/k RMSNorm and RoPE, and the v norm, of one row, one warp per head: the device code
 * shared by qkv_norm_rope_warp_kernel (cuda_fused.cu) and the decode attention that applies them
 * itself (cuda_attention_step.cu), so that both round every value identically.
 *
 * Lane l owns the pairs (i, i + hd/2), i = l + 32j, j < NP = hd/64 (hd a multiple of 64 with NP
 * of 1, 2, 4 or 8). Rounding points (docs/gemma4.md §4.7): inv = 1 / sqrt(Σx² / hd + eps) with the
 * sum of squares in fp32, lane order then a warp butterfly; normed n = bf16((x · inv) · w);
 * c = bf16(cos θ), s = bf16(sin θ) with θ = pos · inv_freq[i], cos and sin in fp64;
 * y_i = bf16(bf16(n_i·c) − bf16(n_{i+hd/2}·s)), y_{i+hd/2} = bf16(bf16(n_{i+hd/2}·c) + bf16(n_i·s));
 * v = bf16(x · inv) (no weight, no rotation).
 */
#ifndef G4Q_BACKEND_CUDA_NORMROPE_H
#define G4Q_BACKEND_CUDA_NORMROPE_H

#include <cuda_bf16.h>

static __device__ __forceinline__ float nr_rb(float v)
{
    return __bfloat162float(__float2bfloat16_rn(v));
}

/* Loads the lane's pairs of row x (bf16 [hd]) into xa, xb and returns the row's 1 / rms. */
template <int NP>
static __device__ __forceinline__ float nr_load(const __nv_bfloat16 *x, int hd, float eps,
                                                int lane, float xa[NP], float xb[NP])
{
    const int half = hd / 2;
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < NP; j++) {
        const int i = lane + 32 * j;
        xa[j] = __bfloat162float(x[i]);
        xb[j] = __bfloat162float(x[i + half]);
        ss = fmaf(xa[j], xa[j], ss);
        ss = fmaf(xb[j], xb[j], ss);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
    return 1.0f / sqrtf(ss / (float)hd + eps);
}

/* The normed and rotated pair j of the lane (xa, xb, inv from nr_load) at position p. */
static __device__ __forceinline__ void nr_rope_pair(float xa, float xb, float inv, float wa,
                                                    float wb, float th, __nv_bfloat16 *ya,
                                                    __nv_bfloat16 *yb)
{
    const float a = nr_rb(xa * inv * wa);
    const float bb = nr_rb(xb * inv * wb);
    const float c = nr_rb((float)cos((double)th)), s = nr_rb((float)sin((double)th));
    *ya = __float2bfloat16_rn(nr_rb(a * c) - nr_rb(bb * s));
    *yb = __float2bfloat16_rn(nr_rb(bb * c) + nr_rb(a * s));
}

#endif
