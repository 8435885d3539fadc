/*
 * Per-block quantization steps shared by the CPU reference (src/quant/nvfp4.c, fp8.c, int4.c)
 * and the CUDA kernels: one function per block or group, written once so that both produce the
 * same bytes. Every
 * rounding-relevant operation goes through the G4Q_F* / G4Q_D* macros of codecs.h.
 *
 * Conventions: `w` points at widened bf16 values (fp32) or raw bf16 words as named; `out8`
 * receives the 8 packed bytes of one 16-element NVFP4 block (even element in the low nibble).
 * Error sums are accumulated sequentially in the element order given; the NVFP4 block errors in
 * fp32 (the formulas of formats.md §2.4, as ModelOpt evaluates them in fp32), the INT4 group and
 * FP8 block losses in fp64. Searches keep the first minimum (strict <), and stop summing a
 * candidate once its partial sum reaches the best so far: sums of non-negative terms never
 * decrease, so this early exit cannot change the result.
 *
 * Weighted searches (quant.h, G4Q_SCALE_IMATRIX / G4Q_SCALE_HESSIAN): `H` points at Ĥ[c0, c0],
 * the weight of the block's first column, with row stride `ldh` in floats; the block's weights
 * are H[j·ldh + i] for its columns i, j < n. The imatrix losses read only the diagonal
 * H[i·(ldh+1)], so a compact diagonal vector can be passed with ldh = 0. The weights must be
 * finite with a non-negative diagonal (g4q_hess_normalize's output). The imatrix terms are
 * non-negative, so those losses stop early like the MSE ones; hessian terms can be negative, so
 * those always run to the end.
 */
#ifndef G4Q_QUANT_BLOCKQ_H
#define G4Q_QUANT_BLOCKQ_H

#include "quant/codecs.h"
#include "quant/quant.h"

#if defined(__CUDA_ARCH__)
#define G4Q_DDIV(a, b) __ddiv_rn((a), (b))
#else
#define G4Q_DDIV(a, b) ((double)(a) / (double)(b))
#endif

/* Vectorisation hint for loops whose iterations are independent (no reduction, so it cannot
 * change any bit); only where OpenMP is on and outside nvcc. */
#if defined(_OPENMP) && !defined(__CUDACC__)
#define G4Q_SIMD _Pragma("omp simd")
#else
#define G4Q_SIMD
#endif

/* Number of E4M3 candidates of the NVFP4 MSE sweep (codes 0x01..0x7E). */
#define G4Q_NVFP4_SWEEP_N 126
/* Number of multipliers of the §2.5 search (linspace 0.25..4.0). */
#define G4Q_MSE_MULT_N 39
/* INT4 clipping search: m_k = (100 + k) / 200, k = 0..120, i.e. 0.500, 0.505, ..., 1.100. */
#define G4Q_INT4_MULT_N 121
/* Scale storage precision of INT4 scales (the value used to quantize is the stored one). */
#define G4Q_SCALE_STORE_F32 0
#define G4Q_SCALE_STORE_F16 1
#define G4Q_SCALE_STORE_BF16 2

/* ---- NVFP4 (§2.3, §2.4, §2.6, §6) ---- */

G4Q_HD float g4q_nvfp4_block_amax(const float *w)
{
    float m = 0.0f;
    for (int i = 0; i < G4Q_NVFP4_BLOCK; i++)
        m = fmaxf(m, fabsf(w[i]));
    return m;
}

/* §2.3 step 2-3: s = bamax ÷ d; s == 0 -> 1.0; clamp to [2^-9, 448]; E4M3 RNE. */
G4Q_HD uint8_t g4q_nvfp4_scale_code(float bamax, float d)
{
    float s = G4Q_FDIV(bamax, d);
    if (s == 0.0f)
        s = 1.0f;
    s = fminf(fmaxf(s, G4Q_E4M3_MIN_SUB), G4Q_E4M3_MAX);
    return g4q_e4m3_encode_raw(s);
}

/* §2.3 steps 4-5: denom = fl32(E4M3(sc) * wsf2); code_i = E2M1(w_i ÷ denom), ModelOpt sign rule. */
G4Q_HD void g4q_nvfp4_block_encode(const float *w, uint8_t sc, float wsf2, uint8_t *out8)
{
    float denom = G4Q_FMUL(g4q_e4m3_decode(sc), wsf2);
    for (int i = 0; i < G4Q_NVFP4_BLOCK / 2; i++) {
        uint8_t lo = g4q_e2m1_encode(G4Q_FDIV(w[2 * i], denom));
        uint8_t hi = g4q_e2m1_encode(G4Q_FDIV(w[2 * i + 1], denom));
        out8[i] = (uint8_t)(lo | (hi << 4));
    }
}

/* Block squared error, fp32, of the §2.3 steps 4-5 encoding with scale code sc. */
G4Q_HD float g4q_nvfp4_block_sse(const float *w, uint8_t sc, float wsf2)
{
    float denom = G4Q_FMUL(g4q_e4m3_decode(sc), wsf2), err = 0.0f;
    for (int i = 0; i < G4Q_NVFP4_BLOCK; i++) {
        float v = g4q_e2m1_decode(g4q_e2m1_encode(G4Q_FDIV(w[i], denom)));
        float d = G4Q_FSUB(w[i], G4Q_FMUL(v, denom));
        err = G4Q_FADD(err, G4Q_FMUL(d, d));
    }
    return err;
}

/* §2.3 max path for one block; returns the scale byte. d6 = fl32(6 * wsf2). */
G4Q_HD uint8_t g4q_nvfp4_block_max(const float *w, float wsf2, uint8_t *out8)
{
    uint8_t sc = g4q_nvfp4_scale_code(g4q_nvfp4_block_amax(w), G4Q_FMUL(6.0f, wsf2));
    g4q_nvfp4_block_encode(w, sc, wsf2, out8);
    return sc;
}

/* §2.4 candidate scale of E4M3 code c (1..126): fl32(fl32(fl32(v ÷ 448) * G) ÷ 6). */
G4Q_HD float g4q_nvfp4_sweep_scale(uint8_t c, float G)
{
    return G4Q_FDIV(G4Q_FMUL(G4Q_FDIV(g4q_e4m3_decode(c), 448.0f), G), 6.0f);
}

/* a[i] = |w[i]| over one 16-element block; returns their maximum. */
G4Q_HD float g4q_nvfp4_block_abs(const float *w, float *a)
{
    float bamax = 0.0f;
    for (int i = 0; i < G4Q_NVFP4_BLOCK; i++) {
        a[i] = fabsf(w[i]);
        bamax = fmaxf(bamax, a[i]);
    }
    return bamax;
}

/* §2.4 MSE sweep for one block. cand[j] = g4q_nvfp4_sweep_scale(j + 1, G). err_v = Σ_i (|w_i| −
 * E2M1mag(|w_i| ÷ scale_v) · scale_v)², fp32, i ascending; argmin with ties to the smallest code.
 * All-zero block: 0x38 and zero nibbles. The nibbles are then those of §2.3 steps 4-5. */
G4Q_HD uint8_t g4q_nvfp4_block_mse(const float *w, const float *cand, float wsf2, uint8_t *out8)
{
    float a[G4Q_NVFP4_BLOCK];
    const float bamax = g4q_nvfp4_block_abs(w, a);
    uint8_t best_c = G4Q_E4M3_ONE;
    if (bamax > 0.0f) {
        float best = INFINITY;
        for (int c = 1; c <= G4Q_NVFP4_SWEEP_N; c++) {
            float s = cand[c - 1], err = 0.0f;
            int i = 0;
            for (; i < G4Q_NVFP4_BLOCK && err < best; i++) {
                float m = g4q_e2m1_mag_value(g4q_e2m1_mag_code(G4Q_FDIV(a[i], s)));
                float t = G4Q_FSUB(a[i], G4Q_FMUL(m, s));
                err = G4Q_FADD(err, G4Q_FMUL(t, t));
            }
            if (i == G4Q_NVFP4_BLOCK && err < best) {
                best = err;
                best_c = (uint8_t)c;
            }
        }
    }
    g4q_nvfp4_block_encode(w, best_c, wsf2, out8);
    return best_c;
}

/* ---- weighted searches, shared pieces ---- */

/* 1 if any of the n diagonal weights H[i·(ldh+1)] is nonzero: the block has a live input. A block
 * without one takes the plain MSE choice. */
G4Q_HD int g4q_hess_live(const float *H, int64_t ldh, int n)
{
    for (int i = 0; i < n; i++)
        if (H[(int64_t)i * (ldh + 1)] != 0.0f)
            return 1;
    return 0;
}

/* NVFP4 weighted §2.4 sweep (kind G4Q_SCALE_IMATRIX or G4Q_SCALE_HESSIAN) for one 16-element
 * block; H, ldh as in the file comment (the block's 16 x 16 weights). Candidates, tie rule,
 * zero block (0x38) and the final §2.3 steps 4-5 encoding as g4q_nvfp4_block_mse; the error of
 * candidate s, all in fp32 with e_i = sign(w_i) · (|w_i| − E2M1mag(|w_i| ÷ s) · s):
 *   imatrix: err = Σ_i fl(fl(e_i · e_i) · H[i·(ldh+1)]), i ascending (early exit as MSE);
 *   hessian: t_i = Σ_j fl(H[j·ldh + i] · e_j) (j ascending, zero e_j skipped: exact),
 *            err = Σ_i fl(e_i · t_i), i ascending.
 * A block without a live input gives g4q_nvfp4_block_mse's result. With H = I both give exactly
 * the MSE error sums, hence its bytes. */
G4Q_HD uint8_t g4q_nvfp4_block_mse_h(const float *w, const float *cand, float wsf2, int kind,
                                     const float *H, int64_t ldh, uint8_t *out8)
{
    if (!g4q_hess_live(H, ldh, G4Q_NVFP4_BLOCK))
        return g4q_nvfp4_block_mse(w, cand, wsf2, out8);
    float a[G4Q_NVFP4_BLOCK];
    const float bamax = g4q_nvfp4_block_abs(w, a);
    uint8_t best_c = G4Q_E4M3_ONE;
    if (bamax > 0.0f) {
        float best = INFINITY;
        for (int c = 1; c <= G4Q_NVFP4_SWEEP_N; c++) {
            float s = cand[c - 1], err = 0.0f;
            if (kind == G4Q_SCALE_IMATRIX) {
                int i = 0;
                for (; i < G4Q_NVFP4_BLOCK && err < best; i++) {
                    float m = g4q_e2m1_mag_value(g4q_e2m1_mag_code(G4Q_FDIV(a[i], s)));
                    float t = G4Q_FSUB(a[i], G4Q_FMUL(m, s));
                    err = G4Q_FADD(err, G4Q_FMUL(G4Q_FMUL(t, t), H[(int64_t)i * (ldh + 1)]));
                }
                if (i < G4Q_NVFP4_BLOCK)
                    continue;
            } else {
                float e[G4Q_NVFP4_BLOCK], t[G4Q_NVFP4_BLOCK];
                for (int i = 0; i < G4Q_NVFP4_BLOCK; i++) {
                    float m = g4q_e2m1_mag_value(g4q_e2m1_mag_code(G4Q_FDIV(a[i], s)));
                    float d = G4Q_FSUB(a[i], G4Q_FMUL(m, s));
                    e[i] = w[i] < 0.0f ? -d : d;
                    t[i] = 0.0f;
                }
                for (int j = 0; j < G4Q_NVFP4_BLOCK; j++) {
                    if (e[j] == 0.0f)
                        continue;
                    const float *hr = H + (int64_t)j * ldh;
                    G4Q_SIMD
                    for (int i = 0; i < G4Q_NVFP4_BLOCK; i++)
                        t[i] = G4Q_FADD(t[i], G4Q_FMUL(hr[i], e[j]));
                }
                for (int i = 0; i < G4Q_NVFP4_BLOCK; i++)
                    err = G4Q_FADD(err, G4Q_FMUL(e[i], t[i]));
            }
            if (err < best) {
                best = err;
                best_c = (uint8_t)c;
            }
        }
    }
    g4q_nvfp4_block_encode(w, best_c, wsf2, out8);
    return best_c;
}

/* Element format of the fp64 weighted losses. */
#define G4Q_QDQ_INT4 0
#define G4Q_QDQ_FP8 1
/* Output columns i kept at once by g4q_loss_hessian (wider blocks run in tiles; each t_i is still
 * summed over all j in order, so the tile size does not change any bit). */
#define G4Q_HESS_TILE 128

/* Signed QDQ error of one bf16 value with scale s, the term of the MSE losses: FP8 x − fl32(
 * E4M3_sat(x ÷ s) · s) (g4q_fp8_row_loss), INT4 x − fl32(clamp(RNE(x ÷ s), −8, 7) · s)
 * (g4q_int4_group_loss). */
G4Q_HD float g4q_qdq_err(int fmt, uint16_t wb, float s)
{
    float x = g4q_bf16_to_f32(wb);
    float v = fmt == G4Q_QDQ_FP8 ? g4q_e4m3_decode(g4q_e4m3_encode_sat(G4Q_FDIV(x, s)))
                                 : (float)g4q_int4_encode(G4Q_FDIV(x, s));
    return G4Q_FSUB(x, G4Q_FMUL(v, s));
}

/* imatrix loss of n values, fp64: Σ_j fl64(fl64(e_j · e_j) · d[j·dstride]), j ascending; stops
 * once the sum reaches `stop` (the terms are non-negative). */
G4Q_HD double g4q_loss_imatrix(int fmt, const uint16_t *w, int n, float s, const float *d,
                               int64_t dstride, double stop)
{
    double acc = 0.0;
    for (int j = 0; j < n && acc < stop; j++) {
        float e = g4q_qdq_err(fmt, w[j], s);
        acc = G4Q_DADD(acc, G4Q_DMUL(G4Q_DMUL(e, e), d[(int64_t)j * dstride]));
    }
    return acc;
}

/* hessian loss eᵀ Ĥ e of n values, fp64: t_i = Σ_j fl64(H[j·ldh + i] · e_j) (j ascending; zero
 * e_j skipped, which is exact), result Σ_i fl64(e_i · t_i) (i ascending). The fp32 · fp32
 * products are exact in fp64. O(n²); the errors are recomputed per tile of G4Q_HESS_TILE. */
G4Q_HD double g4q_loss_hessian(int fmt, const uint16_t *w, int n, float s, const float *H,
                               int64_t ldh)
{
    double acc = 0.0;
    for (int i0 = 0; i0 < n; i0 += G4Q_HESS_TILE) {
        int ni = n - i0 < G4Q_HESS_TILE ? n - i0 : G4Q_HESS_TILE;
        double t[G4Q_HESS_TILE];
        for (int i = 0; i < ni; i++)
            t[i] = 0.0;
        for (int j = 0; j < n; j++) {
            float e = g4q_qdq_err(fmt, w[j], s);
            if (e == 0.0f)
                continue;
            const float *hr = H + (int64_t)j * ldh + i0;
            G4Q_SIMD
            for (int i = 0; i < ni; i++)
                t[i] = G4Q_DADD(t[i], G4Q_DMUL(hr[i], e));
        }
        for (int i = 0; i < ni; i++)
            acc = G4Q_DADD(acc, G4Q_DMUL(g4q_qdq_err(fmt, w[i0 + i], s), t[i]));
    }
    return acc;
}

/* §2.6 4-over-6 for one block, with wsf2 = fl32(G * R1536): scale codes for the block max mapped
 * to 6 (d = fl32(6 * wsf2)) and to 4 (d = fl32(4 * wsf2)) by the §2.3 steps 2-3, each block encoded
 * by §2.3 steps 4-5; the 4-code is kept only if its fp32 block SSE (g4q_nvfp4_block_sse) is
 * strictly lower. All-zero block: 0x38. */
G4Q_HD uint8_t g4q_nvfp4_block_46(const float *w, float wsf2, uint8_t *out8)
{
    float bamax = g4q_nvfp4_block_amax(w);
    uint8_t sc = g4q_nvfp4_scale_code(bamax, G4Q_FMUL(6.0f, wsf2));
    if (bamax > 0.0f) {
        uint8_t sc4 = g4q_nvfp4_scale_code(bamax, G4Q_FMUL(4.0f, wsf2));
        if (sc4 != sc && g4q_nvfp4_block_sse(w, sc4, wsf2) < g4q_nvfp4_block_sse(w, sc, wsf2))
            sc = sc4;
    }
    g4q_nvfp4_block_encode(w, sc, wsf2, out8);
    return sc;
}

/* compressed-tensors NVFP4 block (§6), global scale gs = 2688/G:
 * s = fl32(gs * fl32(bamax ÷ 6)), clamped to <= 448, E4M3 RNE (no lower clamp), code 0x00 ->
 * 0x20 (0.125); elements E2M1(w ÷ fl32(E4M3(sc) ÷ gs)) with the IEEE sign bit. */
G4Q_HD uint8_t g4q_nvfp4_block_ct(const float *w, float gs, uint8_t *out8)
{
    float s = G4Q_FMUL(gs, G4Q_FDIV(g4q_nvfp4_block_amax(w), 6.0f));
    uint8_t sc = g4q_e4m3_encode_raw(fminf(s, G4Q_E4M3_MAX));
    if (sc == 0)
        sc = G4Q_E4M3_EIGHTH;
    float denom = G4Q_FDIV(g4q_e4m3_decode(sc), gs);
    for (int i = 0; i < G4Q_NVFP4_BLOCK / 2; i++) {
        uint8_t lo = g4q_e2m1_encode_ieee_sign(G4Q_FDIV(w[2 * i], denom));
        uint8_t hi = g4q_e2m1_encode_ieee_sign(G4Q_FDIV(w[2 * i + 1], denom));
        out8[i] = (uint8_t)(lo | (hi << 4));
    }
    return sc;
}

/* ---- FP8 (§3, §4, §2.5) ---- */

/* fl32(amax * R448); amax 0 -> 1.0 (448 * R448 rounds to exactly 1.0). */
G4Q_HD float g4q_fp8_scale_of(float amax)
{
    return amax == 0.0f ? 1.0f : G4Q_FMUL(amax, g4q_r448());
}

/* §2.5 multiplier m_k = fl32(0.25 + k * 3.75 / 38) (fp64 arithmetic), k = 0..38. */
G4Q_HD float g4q_mse_multiplier(int k)
{
    return (float)G4Q_DADD(0.25, G4Q_DDIV(G4Q_DMUL((double)k, 3.75), 38.0));
}

/* Squared error, fp64 sum over j ascending, of saturating E4M3 QDQ of n bf16 values with scale:
 * d = x − fl32(E4M3(x ÷ scale) · scale). Stops early once the sum reaches `stop`. */
G4Q_HD double g4q_fp8_row_loss(const uint16_t *row, int n, float scale, double stop)
{
    double acc = 0.0;
    for (int j = 0; j < n && acc < stop; j++) {
        float x = g4q_bf16_to_f32(row[j]);
        float v = g4q_e4m3_decode(g4q_e4m3_encode_sat(G4Q_FDIV(x, scale)));
        float d = G4Q_FSUB(x, G4Q_FMUL(v, scale));
        acc = G4Q_DADD(acc, G4Q_DMUL(d, d));
    }
    return acc;
}

/* Loss of one row of an FP8 tile for search kind G4Q_SCALE_MSE (g4q_fp8_row_loss), IMATRIX
 * (g4q_loss_imatrix) or HESSIAN (g4q_loss_hessian, which ignores stop); H, ldh: the tile's
 * weights (file comment), unused for MSE. The tile's loss is the rows' losses added in row order
 * in fp64, on the CPU and the GPU alike. */
G4Q_HD double g4q_fp8_row_loss_k(int kind, const uint16_t *row, int n, float scale,
                                 const float *H, int64_t ldh, double stop)
{
    if (kind == G4Q_SCALE_IMATRIX)
        return g4q_loss_imatrix(G4Q_QDQ_FP8, row, n, scale, H, ldh + 1, stop);
    if (kind == G4Q_SCALE_HESSIAN)
        return g4q_loss_hessian(G4Q_QDQ_FP8, row, n, scale, H, ldh);
    return g4q_fp8_row_loss(row, n, scale, stop);
}

/* ---- INT4 (§5) ---- */

/* Rounds a positive scale to its storage precision (RNE); a result of zero becomes the smallest
 * positive value of that type (f16 2^-24, bf16 2^-133). Overflow gives +inf (the caller fails). */
G4Q_HD float g4q_int4_store_scale(float s, int store)
{
    if (store == G4Q_SCALE_STORE_F16) {
        uint16_t h = g4q_f32_to_f16(s);
        return g4q_f16_to_f32(h == 0 ? (uint16_t)1 : h);
    }
    if (store == G4Q_SCALE_STORE_BF16) {
        uint16_t b = g4q_f32_to_bf16(s);
        return g4q_bf16_to_f32(b == 0 ? (uint16_t)1 : b);
    }
    return s;
}

/* INT4 clipping multiplier m_k = fl32((100 + k) ÷ 200), k = 0..120 (k = 100 is 1.0). */
G4Q_HD float g4q_int4_multiplier(int k)
{
    return G4Q_FDIV((float)(100 + k), 200.0f);
}

/* Squared error (fp64, ascending) of q = clamp(RNE(x ÷ s), −8, 7), d = x − fl32(q · s). */
G4Q_HD double g4q_int4_group_loss(const uint16_t *w, int n, float s, double stop)
{
    double acc = 0.0;
    for (int j = 0; j < n && acc < stop; j++) {
        float x = g4q_bf16_to_f32(w[j]);
        float q = (float)g4q_int4_encode(G4Q_FDIV(x, s));
        float d = G4Q_FSUB(x, G4Q_FMUL(q, s));
        acc = G4Q_DADD(acc, G4Q_DMUL(d, d));
    }
    return acc;
}

/* Scale of one INT4 group of n bf16 values. max: store(amax ÷ 7.5) (= GPTQ's 2·amax/15 and CT's
 * amax/7.5, the same real number, so the same fp32). mse: the candidate store(fl32(amax · m_k) ÷
 * 7.5) with the least g4q_int4_group_loss, ties to the smallest k. All-zero group: 1.0. */
G4Q_HD float g4q_int4_group_scale(const uint16_t *w, int n, int mse, int store)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fmaxf(amax, fabsf(g4q_bf16_to_f32(w[j])));
    if (amax == 0.0f)
        return 1.0f;
    if (!mse)
        return g4q_int4_store_scale(G4Q_FDIV(amax, 7.5f), store);
    float best_s = 1.0f;
    double best = INFINITY;
    for (int k = 0; k < G4Q_INT4_MULT_N; k++) {
        float s = g4q_int4_store_scale(
            G4Q_FDIV(G4Q_FMUL(amax, g4q_int4_multiplier(k)), 7.5f), store);
        double l = g4q_int4_group_loss(w, n, s, best);
        if (l < best || k == 0) { /* k = 0 first: every candidate overflowing gives inf */
            best = l;
            best_s = s;
        }
    }
    return best_s;
}

/*
 * Scale of one INT4 group of n bf16 values for any search kind (a g4q_scale_method value):
 * G4Q_SCALE_MAX / G4Q_SCALE_MSE as g4q_int4_group_scale (H unused, may be NULL); IMATRIX /
 * HESSIAN the same 121 candidates store(fl32(amax · m_k) ÷ 7.5) with the least g4q_loss_imatrix /
 * g4q_loss_hessian, fp64, ties to the smallest k. H: weights Ĥ (already normalised, quant.h) with
 * row stride ldh; the group's columns are c0 .. c0+n−1, i.e. its weights are
 * H[(c0+i)·ldh + c0+j]. Ways to call it:
 *   full matrix Ĥ [cols, cols]:         H = Ĥ, ldh = cols, c0 = the group's first column;
 *   compact diagonal (imatrix) d[cols]: H = d, ldh = 0, c0 = the group's first column;
 *   compact blocks (hessian) [ng][group][group]: H = blocks + g·group², ldh = group, c0 = 0.
 * A group without a live input (g4q_hess_live) takes the MSE choice; an all-zero group 1.0. Any
 * other kind is treated as MAX. This is what g4q_int4_quantize_h runs per group (and GPTQ's lazy
 * group scales may call it with the group's updated weights).
 */
G4Q_HD float g4q_int4_group_scale_h(const uint16_t *w, int n, int kind, int store,
                                    const float *H, int64_t ldh, int64_t c0)
{
    if (kind != G4Q_SCALE_IMATRIX && kind != G4Q_SCALE_HESSIAN)
        return g4q_int4_group_scale(w, n, kind == G4Q_SCALE_MSE, store);
    const float *hb = H + c0 * ldh + c0;
    if (!g4q_hess_live(hb, ldh, n))
        return g4q_int4_group_scale(w, n, 1, store);
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fmaxf(amax, fabsf(g4q_bf16_to_f32(w[j])));
    if (amax == 0.0f)
        return 1.0f;
    float best_s = 1.0f;
    double best = INFINITY;
    for (int k = 0; k < G4Q_INT4_MULT_N; k++) {
        float s = g4q_int4_store_scale(
            G4Q_FDIV(G4Q_FMUL(amax, g4q_int4_multiplier(k)), 7.5f), store);
        double l = kind == G4Q_SCALE_IMATRIX
                       ? g4q_loss_imatrix(G4Q_QDQ_INT4, w, n, s, hb, ldh + 1, best)
                       : g4q_loss_hessian(G4Q_QDQ_INT4, w, n, s, hb, ldh);
        if (l < best || k == 0) {
            best = l;
            best_s = s;
        }
    }
    return best_s;
}

/* One NVFP4 block's scale code (and its nibbles in out8) by method kind (g4q_scale_method), as
 * g4q_nvfp4_quantize_h chooses it for the block's fp32 values w: max, mse (cand: the 126 sweep
 * scales), four-over-six (wsf2 then the 4-over-6 one), imatrix / hessian with hw the block's
 * compact weights (imatrix: its 16 diagonal entries; hessian: its 16 x 16; NULL when the
 * weights are absent, which only the unweighted kinds allow). */
G4Q_HD uint8_t g4q_nvfp4_block_choose(const float *w, int kind, const float *cand, float wsf2,
                                      const float *hw, uint8_t *out8)
{
    if (kind == G4Q_SCALE_IMATRIX || kind == G4Q_SCALE_HESSIAN)
        return g4q_nvfp4_block_mse_h(w, cand, wsf2, kind, hw,
                                     kind == G4Q_SCALE_HESSIAN ? G4Q_NVFP4_BLOCK : 0, out8);
    if (kind == G4Q_SCALE_MSE) return g4q_nvfp4_block_mse(w, cand, wsf2, out8);
    if (kind == G4Q_SCALE_FOUR_OVER_SIX) return g4q_nvfp4_block_46(w, wsf2, out8);
    return g4q_nvfp4_block_max(w, wsf2, out8);
}

#endif
