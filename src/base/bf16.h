/*
 * bfloat16 and float16 <-> float32 conversions, round-to-nearest-even, as static inline functions
 * that compile as C and under nvcc (host and device).
 */
#ifndef G4Q_BASE_BF16_H
#define G4Q_BASE_BF16_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define G4Q_HD __host__ __device__ __forceinline__
#else
#define G4Q_HD static inline
#endif

G4Q_HD uint32_t g4q_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

G4Q_HD float g4q_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

G4Q_HD float g4q_bf16_to_f32(uint16_t h)
{
    return g4q_bits_f32((uint32_t)h << 16);
}

/* Round to nearest even; NaN stays a (quiet) NaN, infinities stay infinite. */
G4Q_HD uint16_t g4q_f32_to_bf16(float f)
{
    uint32_t u = g4q_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Rounds a float to the nearest bf16 value and returns it as float. */
G4Q_HD float g4q_round_bf16(float f)
{
    return g4q_bf16_to_f32(g4q_f32_to_bf16(f));
}

G4Q_HD float g4q_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while ((man & 0x400u) == 0);
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    return g4q_bits_f32(u);
}

/* float32 -> float16, round to nearest even, overflow to infinity, NaN preserved. */
G4Q_HD uint16_t g4q_f32_to_f16(float f)
{
    uint32_t u = g4q_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: subnormal or zero */
        if (a < 0x33000000u) /* below 2^-25: rounds to zero */
            return sign;
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
    return (uint16_t)(sign | (((r >> 23) - 112) << 10) | ((r >> 13) & 0x3ffu));
}

#endif
