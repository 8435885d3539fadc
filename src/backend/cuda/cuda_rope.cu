// CUDA RoPE (docs/gemma4.md §4.6), rotate-half pairing, in place on x[T, heads, hd] bf16.
// One block per token: θ_i = fp32(fp32(p) · inv_freq[i]); c = bf16(cos θ), s = bf16(sin θ) with
// cos/sin taken in double and rounded (the CPU reference does the same before its fp32 use), then
//   y[i] = bf16(bf16(x[i]·c) − bf16(x[i+h]·s)),  y[i+h] = bf16(bf16(x[i+h]·c) + bf16(x[i]·s)).
// pos0 G4Q_STEP_POS reads the position from the step position (device memory).
// Angles with inv_freq 0 give c = 1, s = 0 and leave x unchanged bit for bit.
#include "backend/cuda/cuda_internal.h"

static __device__ __forceinline__ float rb(float v)
{
    return __bfloat162float(__float2bfloat16_rn(v));
}

static __global__ void rope_kernel(__nv_bfloat16 *x, const float *inv_freq, int heads, int hd,
                                   int pos0, const int *pos_dev)
{
    extern __shared__ float cs[]; /* cos [half], sin [half] */
    const int half = hd / 2;
    const float p = (float)((pos_dev ? *pos_dev : pos0) + (int)blockIdx.x);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float th = p * inv_freq[i];
        cs[i] = rb((float)cos((double)th));
        cs[half + i] = rb((float)sin((double)th));
    }
    __syncthreads();
    __nv_bfloat16 *xt = x + (size_t)blockIdx.x * (size_t)heads * (size_t)hd;
    for (int k = threadIdx.x; k < heads * half; k += blockDim.x) {
        const int h = k / half, i = k - h * half;
        __nv_bfloat16 *v = xt + (size_t)h * hd;
        const float a = __bfloat162float(v[i]), b = __bfloat162float(v[i + half]);
        const float c = cs[i], s = cs[half + i];
        v[i] = __float2bfloat16_rn(rb(a * c) - rb(b * s));
        v[i + half] = __float2bfloat16_rn(rb(b * c) + rb(a * s));
    }
}

g4q_status g4q_cuda_rope(g4q_backend *be, g4q_buf *x, const g4q_buf *inv_freq, int T, int heads,
                         int hd, int pos0)
{
    g4q_ctx *ctx = be->ctx;
    const int half = hd / 2;
    if (hd <= 0 || hd % 2 || T < 0 || heads <= 0 || (pos0 < 0 && pos0 != G4Q_STEP_POS) ||
        inv_freq->dtype != G4Q_DT_F32 || (size_t)half > inv_freq->count ||
        !g4q_cuda_bf16_ok(x, (size_t)T * heads * hd))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda rope: T %d heads %d hd %d out of range", T,
                        heads, hd);
    if (T == 0) return G4Q_OK;
    rope_kernel<<<(unsigned)T, 128, sizeof(float) * (size_t)hd, g4q_cuda_st(be)->stream>>>(
        (__nv_bfloat16 *)x->data, (const float *)inv_freq->data, heads, hd, pos0,
        pos0 == G4Q_STEP_POS ? g4q_cuda_st(be)->pos_dev : nullptr);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}
