/*
 * Element and scale codecs of the quantized formats (docs/formats.md §1), shared by C and CUDA.
 *
 * Everything here is a static inline function (G4Q_HD: __host__ __device__ under nvcc) that uses
 * only integer bit manipulation, memcpy, fabsf, fminf and fmaxf, so the host and the device give
 * the same bits. Arithmetic whose rounding matters goes through the G4Q_F* macros, which are the
 * correctly rounded IEEE fp32 operations on both sides (on the device __fmul_rn etc., so nvcc can
 * never contract a multiply and an add into an FMA). Library code that needs byte parity between
 * the CPU reference and the CUDA kernels MUST use them for every multiply, divide, add, subtract.
 *
 * Encodings:
 *   E2M1 (FP4 nibble): bit 3 sign, bits 2..0 index {0, .5, 1, 1.5, 2, 3, 4, 6}.
 *   E4M3 (float8_e4m3fn): s eeee mmm, bias 7, subnormals m/8 * 2^-6, 0x7E = 448, 0x7F/0xFF NaN.
 *   INT4: signed q in [-8, 7]; stored offset by +8 in the GPTQ and compressed-tensors packings.
 */
#ifndef G4Q_QUANT_CODECS_H
#define G4Q_QUANT_CODECS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/bf16.h"

#if defined(__cplusplus)
#define G4Q_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define G4Q_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Correctly rounded fp32 / fp64 operations, never contracted (see the file comment). */
#if defined(__CUDA_ARCH__)
#define G4Q_FMUL(a, b) __fmul_rn((a), (b))
#define G4Q_FDIV(a, b) __fdiv_rn((a), (b))
#define G4Q_FADD(a, b) __fadd_rn((a), (b))
#define G4Q_FSUB(a, b) __fsub_rn((a), (b))
#define G4Q_DMUL(a, b) __dmul_rn((a), (b))
#define G4Q_DADD(a, b) __dadd_rn((a), (b))
#else
#define G4Q_FMUL(a, b) ((float)(a) * (float)(b))
#define G4Q_FDIV(a, b) ((float)(a) / (float)(b))
#define G4Q_FADD(a, b) ((float)(a) + (float)(b))
#define G4Q_FSUB(a, b) ((float)(a) - (float)(b))
#define G4Q_DMUL(a, b) ((double)(a) * (double)(b))
#define G4Q_DADD(a, b) ((double)(a) + (double)(b))
#endif

/* ---- constants (formats.md notation) ---- */

/* fl32(1/2688) and fl32(1/448) as exact bit patterns; 2688 = 6 * 448. */
#define G4Q_R2688_BITS 0x39C30C31u
#define G4Q_R448_BITS 0x3B124925u
/* fl32(1/1536), the 4-over-6 normaliser 6 * 256 (§2.6). */
#define G4Q_R1536_BITS 0x3A2AAAABu
#define G4Q_E4M3_MAX 448.0f
#define G4Q_E4M3_ONE 0x38u     /* E4M3 code of 1.0 */
#define G4Q_E4M3_EIGHTH 0x20u  /* E4M3 code of 0.125 */
#define G4Q_E4M3_MAXCODE 0x7Eu /* 448 */
#define G4Q_E4M3_NAN 0x7Fu
#define G4Q_E4M3_MIN_SUB 0.001953125f /* 2^-9, the smallest positive E4M3 value (code 0x01) */
#define G4Q_E2M1_MAX 6.0f

/* Packed layouts. */
#define G4Q_NVFP4_BLOCK 16   /* inputs per E4M3 block scale */
#define G4Q_FP8_BLOCK 128    /* 128 x 128 weight blocks of fp8_pb_wo */
#define G4Q_INT4_PER_I32 8   /* INT4 values per int32 word (GPTQ qweight, CT weight_packed) */
G4Q_STATIC_ASSERT(sizeof(float) == 4 && sizeof(uint32_t) == 4, "fp32 and uint32 are 4 bytes");
G4Q_STATIC_ASSERT(sizeof(uint16_t) == 2, "bf16/f16 storage is 2 bytes");
G4Q_STATIC_ASSERT(G4Q_NVFP4_BLOCK % 2 == 0, "an NVFP4 block packs into whole bytes");
G4Q_STATIC_ASSERT(G4Q_NVFP4_BLOCK / 2 == 8, "an NVFP4 block is 8 packed bytes");
G4Q_STATIC_ASSERT(G4Q_INT4_PER_I32 * 4 == 32, "8 nibbles fill one int32");
G4Q_STATIC_ASSERT(0x77777777u == 2004318071u, "GPTQ sym qzeros word");

G4Q_HD float g4q_r2688(void)
{
    return g4q_bits_f32(G4Q_R2688_BITS);
}

G4Q_HD float g4q_r448(void)
{
    return g4q_bits_f32(G4Q_R448_BITS);
}

G4Q_HD float g4q_r1536(void)
{
    return g4q_bits_f32(G4Q_R1536_BITS);
}

/* ---- E2M1 ---- */

/* Magnitude index 0..7 of a >= 0 by the rounding table of §1.1 (nearest, ties to the even code;
 * a > 5 and +inf saturate to 7). NaN gives 0 (undefined by the spec; never fed in). */
G4Q_HD uint8_t g4q_e2m1_mag_code(float a)
{
    return (uint8_t)((a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) +
                     (a >= 3.5f) + (a > 5.0f));
}

/* Nibble of a scaled value q, ModelOpt sign rule: sign bit = (q < 0). A small negative value that
 * rounds to zero gives 0x8; +0.0 and -0.0 both give 0x0. */
G4Q_HD uint8_t g4q_e2m1_encode(float q)
{
    return (uint8_t)(g4q_e2m1_mag_code(fabsf(q)) | (q < 0.0f ? 8u : 0u));
}

/* Nibble with the IEEE sign bit (compressed-tensors rule): -0.0 gives 0x8 as well. */
G4Q_HD uint8_t g4q_e2m1_encode_ieee_sign(float q)
{
    return (uint8_t)(g4q_e2m1_mag_code(fabsf(q)) | ((g4q_f32_bits(q) >> 31) ? 8u : 0u));
}

/* Value of a magnitude index 0..7: 0, .5, 1, 1.5, 2, 3, 4, 6. */
G4Q_HD float g4q_e2m1_mag_value(uint8_t m)
{
    uint32_t e = (m >> 1) & 3u, h = m & 1u;
    if (e == 0)
        return h ? 0.5f : 0.0f;
    /* (2 + h) * 2^(e-2): exact in fp32 */
    return (float)(2u + h) * (float)(1u << e) * 0.25f;
}

/* Value of a nibble (low 4 bits used); 0x8 decodes to -0.0, which compares equal to 0. */
G4Q_HD float g4q_e2m1_decode(uint8_t nib)
{
    float v = g4q_e2m1_mag_value(nib & 7u);
    return (nib & 8u) ? -v : v;
}

/* ---- E4M3 ---- */

/* Value of an E4M3 code; 0x7F and 0xFF give NaN. */
G4Q_HD float g4q_e4m3_decode(uint8_t c)
{
    uint32_t sign = (uint32_t)(c & 0x80u) << 24;
    uint32_t e = (c >> 3) & 15u, m = c & 7u;
    if (e == 15 && m == 7)
        return g4q_bits_f32(sign | 0x7fc00000u);
    if (e == 0) /* subnormal: m * 2^-9, exact */
        return g4q_bits_f32(g4q_f32_bits((float)m * G4Q_E4M3_MIN_SUB) | sign);
    return g4q_bits_f32(sign | ((e + 120u) << 23) | (m << 20));
}

/* torch's float -> float8_e4m3fn cast: nearest code, ties to the even mantissa, subnormal spacing
 * 2^-9; |x| > 464, +-inf and NaN give sign | 0x7F (NaN); the sign bit is kept (-0.0 -> 0x80).
 * Use only where torch parity including NaN is wanted; encoders of stored data saturate. */
G4Q_HD uint8_t g4q_e4m3_encode_raw(float x)
{
    uint32_t u = g4q_f32_bits(x);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x43E80000u) /* > 464 (the 448/480 tie), inf, NaN */
        return (uint8_t)(sign | G4Q_E4M3_NAN);
    if (a >= 0x3C800000u) /* normal: >= 2^-6; RNE on the exponent|mantissa field, carry allowed */
        return (uint8_t)(sign | ((a - 0x3C000000u + 0x7FFFFu + ((a >> 20) & 1u)) >> 20));
    if (a <= 0x3A800000u) /* <= 2^-10: rounds to zero (2^-10 is a tie to the even code 0) */
        return sign;
    /* subnormal: x / 2^-9 = mant24 >> (14 - E), E in [-10, -7]; code = that integer (8 -> 0x08) */
    uint32_t e = (a >> 23), mant = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 14u + 127u - e; /* 21..24 */
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++;
    return (uint8_t)(sign | q);
}

/* Saturating encoder used for every stored element and scale: |x| is clamped to 448 first, so the
 * result is never NaN (NaN input gives sign | 0x7E, as fminf ignores the NaN). */
G4Q_HD uint8_t g4q_e4m3_encode_sat(float x)
{
    uint8_t sign = (uint8_t)((g4q_f32_bits(x) >> 24) & 0x80u);
    return (uint8_t)(sign | g4q_e4m3_encode_raw(fminf(fabsf(x), G4Q_E4M3_MAX)));
}

/* ---- INT4 (symmetric, signed q in [-8, 7]) ---- */

/* Round to nearest, ties to even, for |x| <= 2^22 (1.5 * 2^23 forces the rounding). */
G4Q_HD float g4q_round_even_small(float x)
{
    return G4Q_FSUB(G4Q_FADD(x, 12582912.0f), 12582912.0f);
}

/* q = clamp(round_half_even(x), -8, 7) for a scaled value x = w / scale. NaN gives -8 (never fed
 * in). Clamping first is equivalent since the bounds are integers. */
G4Q_HD int g4q_int4_encode(float x)
{
    return (int)g4q_round_even_small(fminf(fmaxf(x, -8.0f), 7.0f));
}

/* Nibble stored by GPTQ and CT pack-quantized: q + 8 in 0..15. */
G4Q_HD uint32_t g4q_int4_offset_nibble(int q)
{
    return (uint32_t)(q + 8) & 15u;
}

#endif
