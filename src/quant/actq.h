/*
 * Activation quantization as the serving engines apply it in front of a quantized Linear
 * (docs/formats.md §2.8, §3, §4, §9), shared by the CPU reference and the CUDA kernels: what
 * gemma4q-run's --emulate modes put in front of the matmul.
 *
 * Each function rewrites one block / group / value of a row of activations x in place into its
 * quantized value WITHOUT the factor that the engine applies after the GEMM (its `alpha`); the
 * matmul then multiplies its fp32 sums by g4q_actq_alpha(). Everything is G4Q_HD with the
 * correctly rounded G4Q_F* operations, so host and device give the same bits.
 *
 *   G4Q_ACTQ_NVFP4      (W4A4 on Blackwell; vLLM's scaled_fp4_quant): blocks of 16 along the
 *                       input. With the exported input_scale s (ModelOpt `input_scale`; for
 *                       compressed-tensors 1 / `input_global_scale`) and G = fl32(1/s):
 *                         sf = E4M3_sat(fl32(G · fl32(amax · fl32(1/6))))   (the block scale)
 *                         q  = E2M1(fl32(x · fl32(1 / fl32(sf · s))))       (0 when sf == 0)
 *                         x ← E2M1(q) · sf                                   (exact in bf16)
 *                       alpha = s (the engine's GEMM alpha is s · weight_scale_2).
 *   G4Q_ACTQ_FP8_TENSOR (FP8 W8A8, static): x ← E4M3_sat(fl32(x / s)), alpha = s.
 *   G4Q_ACTQ_FP8_GROUP  (fp8_pb_wo / FP8 block W8A8, dynamic; vLLM's per_token_group_quant_fp8):
 *                       groups of 128 along the input of each token, d = fl32(max(amax, 1e-10)
 *                       / 448), x ← fl32(E4M3_sat(fl32(x / d)) · d), alpha = 1.
 * The engines' kernels use approximate reciprocals in places; these are the exact-rounding forms
 * (differences of an fp32 ulp in a scale, rarely one code).
 */
#ifndef G4Q_QUANT_ACTQ_H
#define G4Q_QUANT_ACTQ_H

#include "quant/codecs.h"

typedef enum {
    G4Q_ACTQ_NONE = 0,
    G4Q_ACTQ_NVFP4 = 1,
    G4Q_ACTQ_FP8_TENSOR = 2,
    G4Q_ACTQ_FP8_GROUP = 3
} g4q_actq;

#define G4Q_ACTQ_NVFP4_BLOCK 16
#define G4Q_ACTQ_FP8_GROUP_SIZE 128

/* Values per independently scaled unit along a row (1 for the per-tensor form). */
G4Q_HD int g4q_actq_unit(g4q_actq m)
{
    return m == G4Q_ACTQ_NVFP4 ? G4Q_ACTQ_NVFP4_BLOCK
                               : (m == G4Q_ACTQ_FP8_GROUP ? G4Q_ACTQ_FP8_GROUP_SIZE : 1);
}

/* The static scale the export writes for an activation (or K/V) amax, the s above: NVFP4
 * input_scale = fl32(amax · fl32(1/2688)) (§2.2), FP8 input / k / v scale = fl32(amax ·
 * fl32(1/448)) (§3, §7); m is NVFP4 or FP8_TENSOR. */
#define G4Q_ACTQ_R2688 0x1.861862p-12f /* fl32(1/2688) = 0x39C30C31 (formats.md notation) */
#define G4Q_ACTQ_R448 0x1.24924ap-9f   /* fl32(1/448) = 0x3B124925 */
G4Q_HD float g4q_actq_static_scale(g4q_actq m, float amax)
{
    return G4Q_FMUL(amax, m == G4Q_ACTQ_NVFP4 ? G4Q_ACTQ_R2688 : G4Q_ACTQ_R448);
}

/* The factor the GEMM applies to its sums: s for NVFP4 and FP8_TENSOR, else 1. */
G4Q_HD float g4q_actq_alpha(g4q_actq m, float s)
{
    return (m == G4Q_ACTQ_NVFP4 || m == G4Q_ACTQ_FP8_TENSOR) ? s : 1.0f;
}

/* Quantizes x[0..n) in place, n <= the unit of m (a row's last unit may be shorter). */
G4Q_HD void g4q_actq_unit_apply(g4q_actq m, float s, float *x, int n)
{
    if (m == G4Q_ACTQ_FP8_TENSOR) {
        for (int i = 0; i < n; i++)
            x[i] = g4q_e4m3_decode(g4q_e4m3_encode_sat(G4Q_FDIV(x[i], s)));
        return;
    }
    float amax = 0.0f;
    for (int i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    if (m == G4Q_ACTQ_FP8_GROUP) {
        const float d = G4Q_FDIV(fmaxf(amax, 1e-10f), G4Q_E4M3_MAX);
        for (int i = 0; i < n; i++)
            x[i] = G4Q_FMUL(g4q_e4m3_decode(g4q_e4m3_encode_sat(G4Q_FDIV(x[i], d))), d);
        return;
    }
    if (m != G4Q_ACTQ_NVFP4) return;
    const float G = G4Q_FDIV(1.0f, s);
    const float sf = g4q_e4m3_decode(
        g4q_e4m3_encode_sat(G4Q_FMUL(G, G4Q_FMUL(amax, G4Q_FDIV(1.0f, 6.0f)))));
    const float os = sf > 0.0f ? G4Q_FDIV(1.0f, G4Q_FMUL(sf, s)) : 0.0f;
    for (int i = 0; i < n; i++)
        x[i] = G4Q_FMUL(g4q_e2m1_decode(g4q_e2m1_encode(G4Q_FMUL(x[i], os))), sf);
}

/* Quantizes one row x[0..cols) in place, unit by unit. */
G4Q_HD void g4q_actq_row(g4q_actq m, float s, float *x, int64_t cols)
{
    const int u = g4q_actq_unit(m);
    for (int64_t c = 0; c < cols; c += u)
        g4q_actq_unit_apply(m, s, x + c, (int)(cols - c < u ? cols - c : u));
}

/* The FP8 KV cache round trip at the cache-write point (§7): fl32(E4M3_sat(fl32(v / s)) · s). */
G4Q_HD float g4q_fp8_roundtrip(float v, float s)
{
    return G4Q_FMUL(g4q_e4m3_decode(g4q_e4m3_encode_sat(G4Q_FDIV(v, s))), s);
}

#endif
