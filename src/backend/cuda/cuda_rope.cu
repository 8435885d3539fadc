// CUDA RoPE (docs/gemma4.md §4.6), rotate-half pairing, in place on x[T, heads, hd] of the
// activation type. One block per token: θ_i = fp32(fp32(p) · inv_freq[i]), cos/sin taken in
// double and rounded to fp32 (the CPU reference does the same), then
//   BF16 mode: c = bf16(cos θ), s = bf16(sin θ),
//              y[i]   = bf16(bf16(x[i]·c) − bf16(x[i+h]·s)),
//              y[i+h] = bf16(bf16(x[i+h]·c) + bf16(x[i]·s));
//   F32 mode:  the same expression with every rounding in fp32: each product rounded, then the
//              sum, exactly as the CPU backend evaluates it (no fused multiply-add).
// pos0 G4Q_STEP_POS reads the position from the step position (device memory).
// Angles with inv_freq 0 give c = 1, s = 0 and leave x unchanged bit for bit.
#include "backend/cuda/cuda_internal.h"

template <typename T>
static __global__ void rope_kernel(T *x, const float *inv_freq, int heads, int hd, int pos0,
                                   const int *pos_dev)
{
    extern __shared__ float cs[]; /* cos [half], sin [half] */
    const int half = hd / 2;
    const float p = (float)((pos_dev ? *pos_dev : pos0) + (int)blockIdx.x);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float th = g4q_rope_angle(p, inv_freq[i]);
        cs[i] = g4q_rope_cos<T>(th);
        cs[half + i] = g4q_rope_sin<T>(th);
    }
    __syncthreads();
    T *xt = x + (size_t)blockIdx.x * (size_t)heads * (size_t)hd;
    for (int k = threadIdx.x; k < heads * half; k += blockDim.x) {
        const int h = k / half, i = k - h * half;
        T *v = xt + (size_t)h * hd;
        const float a = g4q_ld(v[i]), b = g4q_ld(v[i + half]);
        const float c = cs[i], s = cs[half + i];
        /* __fmul_rn / __fadd_rn: no contraction into an fma, so fp32 matches the CPU exactly */
        v[i] = g4q_cvt<T>(__fsub_rn(g4q_rnd<T>(__fmul_rn(a, c)), g4q_rnd<T>(__fmul_rn(b, s))));
        v[i + half] =
            g4q_cvt<T>(__fadd_rn(g4q_rnd<T>(__fmul_rn(b, c)), g4q_rnd<T>(__fmul_rn(a, s))));
    }
}

g4q_status g4q_cuda_rope(g4q_backend *be, g4q_buf *x, const g4q_buf *inv_freq, int T, int heads,
                         int hd, int pos0)
{
    g4q_ctx *ctx = be->ctx;
    const int half = hd / 2;
    if (hd <= 0 || hd % 2 || T < 0 || heads <= 0 || (pos0 < 0 && pos0 != G4Q_STEP_POS) ||
        inv_freq->dtype != G4Q_DT_F32 || (size_t)half > inv_freq->count ||
        !g4q_cuda_act_ok(be, x, (size_t)T * heads * hd))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda rope: T %d heads %d hd %d out of range", T,
                        heads, hd);
    if (T == 0) return G4Q_OK;
    g4q_cuda_state *s = g4q_cuda_st(be);
    const int *pos_dev = pos0 == G4Q_STEP_POS ? s->pos_dev : nullptr;
    const size_t smem = sizeof(float) * (size_t)hd;
    if (s->f32)
        rope_kernel<<<(unsigned)T, 128, smem, s->stream>>>(
            (float *)x->data, (const float *)inv_freq->data, heads, hd, pos0, pos_dev);
    else
        rope_kernel<<<(unsigned)T, 128, smem, s->stream>>>(
            (__nv_bfloat16 *)x->data, (const float *)inv_freq->data, heads, hd, pos0, pos_dev);
    G4Q_CUDA_CHECK(cudaGetLastError());
    return G4Q_OK;
}
