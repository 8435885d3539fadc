/*
 * CPU reference weight quantizers (C + OpenMP) and their independent decoders, producing the
 * export byte layouts of docs/formats.md §2-§6 exactly.
 *
 * Common contract:
 *   - Input weights `w` are bf16 words, W[rows = out, cols = in] row-major; blocks and groups run
 *     along `in` (FP8 blocks are 128 x 128 tiles).
 *   - Outputs are caller-owned plain buffers of the sizes stated; nothing is allocated.
 *   - `name` is the tensor name used in error messages (may be NULL).
 *   - The bytes are deterministic: work is split over rows/blocks only, so any OpenMP thread count
 *     (ctx->threads, 0 = OpenMP default) gives identical output. The per-block arithmetic lives in
 *     quant/blockq.h and is shared with the CUDA kernels for byte parity.
 *   - Errors: G4Q_ERR_SHAPE for unsupported shapes, G4Q_ERR_NUMERIC for non-finite weights or
 *     scales, G4Q_ERR_INVALID for inconsistent arguments (e.g. a global amax below the tensor's).
 */
#ifndef G4Q_QUANT_QUANT_H
#define G4Q_QUANT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "base/bf16.h"
#include "base/ctx.h"
#include "io/dtype.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scale search. G4Q_SCALE_MAX: plain max calibration. G4Q_SCALE_MSE: NVFP4 the 126-code FP8
 * sweep (§2.4), FP8 blocks the 39-multiplier search (§2.5), INT4 the clipping search of
 * blockq.h. G4Q_SCALE_FOUR_OVER_SIX: NVFP4 only (§2.6). G4Q_SCALE_IMATRIX, G4Q_SCALE_HESSIAN:
 * the MSE searches with the error weighted by the Linear's input statistics (below); they need
 * H, so only the `_h` quantizers take them. The values are fixed: blockq.h's per-group helpers
 * take them as plain ints. */
typedef enum {
    G4Q_SCALE_MAX = 0,
    G4Q_SCALE_MSE = 1,
    G4Q_SCALE_FOUR_OVER_SIX = 2,
    G4Q_SCALE_IMATRIX = 3,
    G4Q_SCALE_HESSIAN = 4,
} g4q_scale_method;

/* "max", "mse", "four_over_six", "imatrix", "hessian". */
const char *g4q_scale_method_name(g4q_scale_method m);

/* 1 for G4Q_SCALE_IMATRIX and G4Q_SCALE_HESSIAN (the methods that need H), else 0. */
int g4q_scale_method_weighted(g4q_scale_method m);

/*
 * Hessian-weighted scale searches (llm-compressor's `imatrix_mse`, ModelOpt's `local_hessian`).
 *
 * The candidates, the tie rule (the smallest candidate wins), the zero-block result and the final
 * encoding are those of G4Q_SCALE_MSE of the format: NVFP4 the 126 E4M3 codes of §2.4, FP8 128x128
 * blocks the 39 multipliers of §2.5, INT4 the 121 clipping multipliers of §5.4. Only the error of
 * a candidate changes: it is weighted by the Linear's input second moments.
 *
 * Input: H = Σ x·xᵀ over the calibration tokens of the Linear's input (n = cols = in),
 * symmetric positive semidefinite (the input Hessian of the layer's squared output error), held
 * as a g4q_hess (below): every entry, or only its diagonal blocks. Only its diagonal (imatrix)
 * or its diagonal blocks (hessian: 16x16 for NVFP4, group x group for INT4, 128x128 for FP8,
 * partial at the right edge) are read, so a blocked H serves every search whose blocks divide
 * its own (any block for imatrix).
 *
 * Weights: μ = the mean of diag(H) (fp64 sum in column order, divided by cols), and
 *   Ĥ[i, j] = fl32(H[i, j] ÷ μ)   (fp64 quotient rounded to fp32),
 * except that a dead input c (H[c, c] == 0: x_c was always zero) has row c and column c of Ĥ set
 * to 0 (its error never reaches the output). So H = c·I gives Ĥ = I exactly, and both weighted
 * methods then choose exactly what MSE chooses (same bytes); any positive multiple of H gives the
 * same choice up to the fp32 rounding of that multiple (exactly for powers of two).
 *
 * Error of one block for a candidate scale s, with e_i = w_i − QDQ_s(w_i) the signed error of the
 * format's MSE search (NVFP4: the §2.4 magnitude error with the sign of w_i; FP8: saturating
 * E4M3 QDQ; INT4: clamp(RNE(w ÷ s)) · s) and i, j the block's columns (relative to its first):
 *   imatrix: err = Σ_rows Σ_i (e_i · e_i) · Ĥ[i, i]
 *   hessian: err = Σ_rows Σ_i e_i · t_i,  t_i = Σ_j Ĥ[j, i] · e_j   (= e_rᵀ Ĥ_bb e_r per row)
 * summed in the MSE search's precision and order: NVFP4 in fp32 (one row of 16), INT4 in fp64
 * (one row of a group), FP8 in fp64 per row, rows added in order in fp64. i ascends in the outer
 * sum, j in the inner; every partial sum has a fixed order, so the bytes do not depend on the
 * thread count or on CPU vs CUDA (the loss functions are in quant/blockq.h).
 *
 * Dead blocks: a block (group, tile) whose Ĥ diagonal is all zero — all its inputs dead, or H all
 * zero — takes the plain MSE choice. A block with some dead inputs weighs those at 0, so a block
 * whose live inputs all have w = 0 ties at err = 0 and takes the smallest candidate.
 *
 * Errors (G4Q_ERR_*): H == NULL with a weighted method is INVALID; a diagonal entry that is
 * negative or not finite, or a non-finite entry of a diagonal block that is read, is NUMERIC; all
 * name the tensor. H is ignored (may be NULL) for the other methods.
 */

/* An input Hessian as calibration hands it over (src/calib: calibrate.h hessian_block):
 *   block 0:      every entry, fp32 [n, n] row-major;
 *   block b >= 1: only the diagonal b x b blocks, compact: ceil(n/b) blocks of b·b floats, block
 *                 k (columns k·b .. k·b + b - 1) at offset k·b·b, row-major, its entries past n
 *                 zero; b = 1 is the diagonal alone. The layout a blocked backend gram writes.
 * h is host or device memory as the function taking it says; the struct does not own it.
 * key: 0, or a nonzero name of these contents that a caller may give (src/pipeline): jobs that
 * pass equal keys pass equal Hessians, so a quantizer may keep what it derived from one (the GPU
 * quantizer keeps H and GPTQ's inverse factor on the device, backend/wquant.h). The bytes
 * written never depend on it. */
typedef struct g4q_hess {
    const float *h;
    int64_t n;
    int block;
    uint64_t key;
} g4q_hess;

/* Floats that a g4q_hess of n inputs and this block holds: n·n for block 0 (or block >= n,
 * which callers normalise to 0 with g4q_hess_block), else ceil(n/block)·block². */
size_t g4q_hess_count(int64_t n, int block);

/* The block a Hessian of n inputs is held with when `block` is asked for: 0 for block <= 0 or
 * block >= n (every entry), else block. */
int g4q_hess_block(int64_t n, int block);

/* Where entry (i, j) of a Hessian of n inputs held with block b (= g4q_hess_block's, 0: every
 * entry) is stored; when b > 0, i and j must lie in one diagonal block (i / b == j / b). The one
 * statement of the layout, shared by C and CUDA. */
G4Q_HD int64_t g4q_hess_offset(int64_t n, int64_t b, int64_t i, int64_t j)
{
    return b ? (i / b) * b * b + (i % b) * b + j % b : i * n + j;
}

/* H's entries where every one is held (GPTQ's input: callers check block 0), or NULL. */
G4Q_HD const float *g4q_hess_full(const g4q_hess *H)
{
    return H ? H->h : NULL;
}

/* Number of floats of the compact weight array of a weighted method: cols for IMATRIX (the
 * diagonal), ceil(cols/bs)·bs·bs for HESSIAN (the diagonal bs x bs blocks, block k at offset
 * k·bs·bs, row-major, zero-padded past cols), 0 for the other methods. */
size_t g4q_hess_weights_count(g4q_scale_method m, int64_t cols, int bs);

/* 1 when a search of method m with blocks of bs can read its weights from H: H->block is 0, or
 * the method is IMATRIX, or bs divides H->block. */
int g4q_hess_readable(g4q_scale_method m, const g4q_hess *H, int bs);

/* Copies the part of H (host memory, n = cols) that method m reads into hw (the compact layout
 * above), raw; nothing else is done. H must be readable (g4q_hess_readable). */
void g4q_hess_extract(g4q_scale_method m, const g4q_hess *H, int bs, float *hw);

/* Turns the raw compact array hw (from g4q_hess_extract, or from a device copy) into the weights
 * Ĥ in place: checks it (errors above), divides by μ and zeroes the dead rows/columns. Shared by
 * the CPU quantizers and the CUDA host code so that both apply the same numbers. */
g4q_status g4q_hess_normalize(g4q_ctx *ctx, const char *name, g4q_scale_method m, int64_t cols,
                              int bs, float *hw);

/* g4q_hess_extract + g4q_hess_normalize into a new array: *hw = the weights of a weighted method
 * m (malloc'd; the caller frees it), or NULL for the other methods (H unused). H == NULL with a
 * weighted method, H->n != cols or an H that is not readable fail with G4Q_ERR_INVALID naming the
 * tensor. */
g4q_status g4q_hess_prepare(g4q_ctx *ctx, const char *name, g4q_scale_method m, const g4q_hess *H,
                            int64_t cols, int bs, float **hw);

/* The checks of g4q_hess_prepare on H (NULL, n, readable) without reading it: G4Q_OK or
 * G4Q_ERR_INVALID naming the tensor. Shared with the CUDA host code. */
g4q_status g4q_hess_check(g4q_ctx *ctx, const char *name, g4q_scale_method m, const g4q_hess *H,
                          int64_t cols, int bs);

/* amax = max |w| over n bf16 values (exact, so thread-count independent). A NaN or infinite value
 * fails with G4Q_ERR_NUMERIC naming `name` and the element index. */
g4q_status g4q_quant_amax_bf16(g4q_ctx *ctx, const char *name, const uint16_t *w, size_t n,
                               float *amax);

/* ---------------- NVFP4 (ModelOpt, §2) ---------------- */

/* weight_scale_2 = fl32(amax * R2688); amax 0 -> 1.0. */
float g4q_nvfp4_wsf2(float amax);
/* 4-over-6 weight_scale_2 = fl32(amax * fl32(1/1536)); amax 0 -> 1.0. */
float g4q_nvfp4_wsf2_46(float amax);

/*
 * Quantizes W[rows, cols] (cols % 16 == 0) to NVFP4 with the fused group's global amax G (>= this
 * tensor's amax; compute it over all members with g4q_quant_amax_bf16 first).
 *   packed  uint8 [rows, cols/2]   even element in the low nibble (`<m>.weight`)
 *   scales  E4M3  [rows, cols/16]  plain row-major (`<m>.weight_scale`)
 *   *wsf2   fp32                   `<m>.weight_scale_2`
 * method MAX: §2.3 exactly. MSE: §2.4 (126 candidates, fp32 block error, ties to the smallest
 * code, zero block 0x38, nibbles by §2.3 steps 4-5). FOUR_OVER_SIX: wsf2 = g4q_nvfp4_wsf2_46(G),
 * and per block the §2.3 scale for max->6 or for max->4, whichever has the strictly lower fp32
 * block SSE (ties keep 6). G == 0 (zero tensor): wsf2 1.0, scales 0x38, nibbles 0.
 */
g4q_status g4q_nvfp4_quantize(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                              int64_t cols, float global_amax, g4q_scale_method method,
                              uint8_t *packed, uint8_t *scales, float *wsf2);

/* As g4q_nvfp4_quantize, and also IMATRIX / HESSIAN with H of cols inputs (see the weighted
 * searches above; 16-column blocks, wsf2 = g4q_nvfp4_wsf2(G) as for MSE). H may be NULL for the
 * other methods, which give exactly g4q_nvfp4_quantize's bytes. */
g4q_status g4q_nvfp4_quantize_h(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                                int64_t cols, float global_amax, g4q_scale_method method,
                                const g4q_hess *H, uint8_t *packed, uint8_t *scales, float *wsf2);

/* w ≈ E2M1(code) * E4M3(scale) * wsf2, into out fp32 [rows, cols]. Same shapes as above. */
void g4q_nvfp4_dequantize(const uint8_t *packed, const uint8_t *scales, float wsf2, int64_t rows,
                          int64_t cols, float *out);

/* ---------------- NVFP4, compressed-tensors convention (§6) ---------------- */

/* weight_global_scale = fl32(2688 ÷ amax) (correctly rounded division; whether CT evaluates it as
 * fl32(fl32(1/amax) * 2688) is unconfirmed); amax 0 -> 1.0. */
float g4q_nvfp4_ct_global_scale(float amax);

/*
 * compressed-tensors nvfp4-pack-quantized bytes (max / RTN only). Same shapes as
 * g4q_nvfp4_quantize; *global_scale = g4q_nvfp4_ct_global_scale(G) (`weight_global_scale`, [1]).
 * The bytes can differ from the ModelOpt ones: scale s = fl32(gs · fl32(bamax ÷ 6)) instead of
 * bamax ÷ fl32(6·fl32(G·R2688)) (1-ulp differences move E4M3 ties), no 2^-9 lower clamp and a zero
 * code becomes 0x20 (so a zero block stores 0x20, not 0x38, and a tiny block stores 0x20 with
 * saturated nibbles), the element divisor is fl32(E4M3(sc) ÷ gs) instead of fl32(E4M3(sc)·wsf2),
 * and -0.0 gives nibble 0x8 (IEEE sign). The element order is identical.
 * Scale search: max only (there is no compressed-tensors MSE convention to weight, and the
 * exporter refuses MSE for this container, formats.md §6), so there is no `_h` variant.
 */
g4q_status g4q_nvfp4_quantize_ct(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                                 int64_t cols, float global_amax, uint8_t *packed, uint8_t *scales,
                                 float *global_scale);

/* w ≈ E2M1(code) * E4M3(scale) / global_scale (fp32 divide), into out fp32 [rows, cols]. */
void g4q_nvfp4_ct_dequantize(const uint8_t *packed, const uint8_t *scales, float global_scale,
                             int64_t rows, int64_t cols, float *out);

/* ---------------- FP8 E4M3 per tensor (§3) ---------------- */

/* Element rounding: EXACT = E4M3_sat(w ÷ s) (gemma4q default, single rounding); MO_GPU = ModelOpt
 * GPU export, E4M3(bf16(w ÷ bf16(s))); MO_CPU = ModelOpt CPU export, E4M3(bf16(w ÷ s)). All
 * saturate at 448 (never NaN). */
typedef enum {
    G4Q_FP8_ROUND_EXACT = 0,
    G4Q_FP8_ROUND_MO_GPU = 1,
    G4Q_FP8_ROUND_MO_CPU = 2,
} g4q_fp8_rounding;

/* weight_scale = fl32(amax * R448); amax 0 -> 1.0. */
float g4q_fp8_scale(float amax);

/* q E4M3 [rows, cols]; *scale = g4q_fp8_scale(amax). amax is normally this tensor's amax; a
 * smaller one only saturates more elements. */
g4q_status g4q_fp8_quantize_tensor(g4q_ctx *ctx, const char *name, const uint16_t *w,
                                   int64_t rows, int64_t cols, float amax, g4q_fp8_rounding mode,
                                   uint8_t *q, float *scale);

/* out fp32 [rows, cols] = E4M3(q) * scale. */
void g4q_fp8_dequantize_tensor(const uint8_t *q, float scale, int64_t rows, int64_t cols,
                               float *out);

/* ---------------- FP8 128 x 128 blocks (fp8_pb_wo, §4) ---------------- */

/* Number of scale entries: ceil(rows/128) * ceil(cols/128). */
size_t g4q_fp8_block_count(int64_t rows, int64_t cols);

/*
 * q E4M3 [rows, cols] = E4M3_sat(w ÷ scale_blk); scales fp32 [ceil(rows/128), ceil(cols/128)]
 * row-major (the export's [R, 1, C, 1] has the same bytes). Partial edge blocks are allowed
 * (the exporter must refuse them for vLLM, §4). max: scale = fl32(bamax · R448), zero block 1.0.
 * mse: candidates A_k = fl32(bamax · m_k), m_k = g4q_mse_multiplier(k), k = 0..38, scale_k =
 * fl32(A_k · R448), loss = Σ over the block's rows (ascending, fp64) of the row's fp64 sum of
 * squared saturating-QDQ errors; ties to the smallest k. Note that m = 1 is not a candidate.
 */
g4q_status g4q_fp8_quantize_blocks(g4q_ctx *ctx, const char *name, const uint16_t *w,
                                   int64_t rows, int64_t cols, g4q_scale_method method,
                                   uint8_t *q, float *scales);

/* As g4q_fp8_quantize_blocks, and also IMATRIX / HESSIAN with H of cols inputs (weighted
 * searches above; the hessian error of a tile is Σ over its rows of e_rᵀ Ĥ_bb e_r with Ĥ_bb the
 * tile's 128x128 diagonal block of Ĥ). H may be NULL for max and mse (then the bytes are exactly
 * g4q_fp8_quantize_blocks's). */
g4q_status g4q_fp8_quantize_blocks_h(g4q_ctx *ctx, const char *name, const uint16_t *w,
                                     int64_t rows, int64_t cols, g4q_scale_method method,
                                     const g4q_hess *H, uint8_t *q, float *scales);

void g4q_fp8_dequantize_blocks(const uint8_t *q, const float *scales, int64_t rows, int64_t cols,
                               float *out);

/* ---------------- INT4 symmetric, group along `in` (§5) ---------------- */

/* Number of groups per row: ceil(cols / group). */
int64_t g4q_int4_group_count(int64_t cols, int group);

/*
 * q int8 [rows, cols] in [-8, 7]; scales fp32 [rows, ceil(cols/group)], each exactly
 * representable in scale_dtype (G4Q_DT_F16 for GPTQ, G4Q_DT_BF16/F16/F32 for CT): the scale is
 * rounded to that type BEFORE q is computed, so dequantization with the stored scale is the one
 * that was optimised. q = clamp(RNE(w ÷ s), -8, 7).
 * max: s = store(amax ÷ 7.5), identical to GPTQ's 2·amax/15 (so the GPTQ offset form
 * clamp(round(w/s) + 8, 0, 15) gives q + 8) and CT's amax/7.5. mse: s = store(fl32(amax · m) ÷
 * 7.5) for m in {0.500, 0.505, ..., 1.100} (121 candidates, fl32((100+k) ÷ 200)) minimising the
 * fp64 group squared error, ties to the smallest m. Zero group: s = 1.0, q = 0. A scale that
 * rounds to zero in scale_dtype becomes its smallest positive value; overflow (f16 > 65504) fails
 * with G4Q_ERR_NUMERIC. group > 0; a partial last group is allowed.
 */
g4q_status g4q_int4_quantize(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                             int64_t cols, int group, g4q_scale_method method,
                             g4q_dtype scale_dtype, int8_t *q, float *scales);

/* As g4q_int4_quantize, and also IMATRIX / HESSIAN with H of cols inputs (weighted searches
 * above; blocks are the groups, a partial last group included; each group's choice is
 * g4q_int4_group_scale_h of blockq.h). H may be NULL for max and mse (then the bytes are exactly
 * g4q_int4_quantize's). The hessian cost is O(121 · group²) per group. */
g4q_status g4q_int4_quantize_h(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                               int64_t cols, int group, g4q_scale_method method,
                               g4q_dtype scale_dtype, const g4q_hess *H, int8_t *q, float *scales);

/* out fp32 [rows, cols] = q * scale. */
void g4q_int4_dequantize(const int8_t *q, const float *scales, int64_t rows, int64_t cols,
                         int group, float *out);

/*
 * GPTQ v1 packing (§5.2) of rows = out, cols = in; needs in % group == 0, in % 8 == 0, out % 8 ==
 * 0 and every scale exact in f16 (else G4Q_ERR_SHAPE / G4Q_ERR_INVALID).
 *   qweight int32 [in/8, out]        qweight[i, n] = Σ_j (q[n, 8i+j] + 8) << 4j
 *   qzeros  int32 [in/group, out/8]  every word 0x77777777 (zero 8 stored minus one)
 *   scales  f16   [in/group, out]    (uint16_t bits) transposed from `scales`
 *   g_idx   int32 [in]               i / group
 * The int32 words are native (little-endian on every supported host).
 */
g4q_status g4q_int4_pack_gptq(g4q_ctx *ctx, const char *name, const int8_t *q,
                              const float *scales, int64_t rows, int64_t cols, int group,
                              int32_t *qweight, int32_t *qzeros, uint16_t *scales_f16,
                              int32_t *g_idx);

/*
 * compressed-tensors pack-quantized (§5.3); needs cols % 8 == 0 and scales exact in scale_dtype.
 *   weight_packed int32 [out, in/8]   word [n, i] = Σ_j (q[n, 8i+j] + 8) << 4j
 *   weight_scale  scale_dtype [out, ceil(in/group)]  written to scale_out (2 or 4 bytes each)
 */
g4q_status g4q_int4_pack_ct(g4q_ctx *ctx, const char *name, const int8_t *q, const float *scales,
                            int64_t rows, int64_t cols, int group, g4q_dtype scale_dtype,
                            int32_t *weight_packed, void *scale_out);

/* Inverse of g4q_int4_pack_gptq (for checkers): q [out, in] and scales fp32 [out, in/group]. */
g4q_status g4q_int4_unpack_gptq(g4q_ctx *ctx, const char *name, const int32_t *qweight,
                                const int32_t *qzeros, const uint16_t *scales_f16, int64_t rows,
                                int64_t cols, int group, int8_t *q, float *scales);

#ifdef __cplusplus
}
#endif
#endif
