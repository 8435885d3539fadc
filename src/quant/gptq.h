/*
 * GPTQ (Frantar et al., 2022): weight quantization with error feedback, CPU reference.
 *
 * The quantizers of quant.h round every weight to its nearest code (RTN). GPTQ instead visits the
 * input columns of W [rows = out, cols = in] in order (no act-order, so every export layout is the
 * one RTN writes) and, after quantizing column c, spreads that column's rounding error over the
 * columns not yet quantized so that the layer output W·x changes least for the calibration inputs.
 * With H = Σ x·xᵀ [cols, cols] over the calibration tokens of the Linear's input (any positive
 * multiple gives the same result up to the damping):
 *   1. columns whose H[c, c] is 0 (inputs that were always zero) are zeroed and get H[c, c] = 1;
 *   2. damping: H += damp · mean(diag H) · I;
 *   3. U = the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ·U), computed in fp64, then used in fp32;
 *   4. for each column c, in blocks of `block` columns ("lazy batch" updates):
 *        q = Q(w_c) with the format's current scales;  e = (w_c − q) ÷ U[c, c];
 *        w_j -= e · U[c, j] for the later columns j of the block at once, and for the columns after
 *        the block in one update when the block ends.
 * Arithmetic: W is kept in fp32; every element's updates are applied in a fixed order (columns of
 * the block ascending), so the result does not depend on the thread count.
 *
 * Formats (same outputs, shapes and byte conventions as the RTN quantizers of quant.h, so the
 * packers and writers are unchanged):
 *   INT4    scales chosen lazily, when GPTQ reaches a group's first column, from the group's current
 *           (error-updated) weights rounded to bf16, by g4q_int4_group_scale (max or mse); codes
 *           q = clamp(RNE(w ÷ s), −8, 7).
 *   NVFP4   (ModelOpt and compressed-tensors conventions) scales fixed first by the RTN quantizer
 *           with the given method, then the E2M1 codes chosen with feedback against them.
 *   FP8     128x128 blocks: scales fixed first by g4q_fp8_quantize_blocks, then the E4M3 codes.
 * With H diagonal no error crosses columns, and the output is byte-identical to RTN's.
 *
 * Cost: O(cols³) for the factorization and O(rows · cols²) for the updates, plus fp64 [cols,cols]
 * and fp32 [rows, cols] working memory: a reference for tests and small models; the GPU runs the
 * same algorithm for the 12B.
 */
#ifndef G4Q_QUANT_GPTQ_H
#define G4Q_QUANT_GPTQ_H

#include <stdint.h>

#include "base/ctx.h"
#include "io/dtype.h"
#include "quant/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_gptq_opts {
    double damp; /* fraction of mean(diag H) added to the diagonal; 0 means 0.01 */
    int block;   /* lazy-batch columns; 0 means 128 */
} g4q_gptq_opts;

/* Factorization failures (H not positive definite even after damping, or non-finite) give
 * G4Q_ERR_NUMERIC naming `name`; non-finite weights likewise. H is [cols, cols] fp64 row-major,
 * symmetric, not modified. w is W [rows, cols] as bf16 words, as in quant.h. */

/* INT4 (outputs of g4q_int4_quantize: q int8 [rows, cols], scales fp32 [rows, ceil(cols/group)]
 * exact in scale_dtype). method MAX or MSE. */
g4q_status g4q_gptq_int4(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                         int64_t cols, int group, g4q_scale_method method, g4q_dtype scale_dtype,
                         const double *H, const g4q_gptq_opts *o, int8_t *q, float *scales);

/* NVFP4, ModelOpt convention (outputs of g4q_nvfp4_quantize; method chooses the fixed scales). */
g4q_status g4q_gptq_nvfp4(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                          int64_t cols, float global_amax, g4q_scale_method method,
                          const double *H, const g4q_gptq_opts *o, uint8_t *packed,
                          uint8_t *scales, float *wsf2);

/* NVFP4, compressed-tensors convention (outputs of g4q_nvfp4_quantize_ct). */
g4q_status g4q_gptq_nvfp4_ct(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                             int64_t cols, float global_amax, const double *H,
                             const g4q_gptq_opts *o, uint8_t *packed, uint8_t *scales,
                             float *global_scale);

/* FP8 128x128 blocks (outputs of g4q_fp8_quantize_blocks; method chooses the fixed scales). */
g4q_status g4q_gptq_fp8_blocks(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                               int64_t cols, g4q_scale_method method, const double *H,
                               const g4q_gptq_opts *o, uint8_t *q, float *scales);

#ifdef __cplusplus
}
#endif

#endif
