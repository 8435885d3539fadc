/*
 * GPTQ (Frantar et al., 2022): weight quantization with error feedback, CPU reference.
 *
 * The quantizers of quant.h round every weight to its nearest code (RTN). GPTQ instead visits the
 * input columns of W [rows = out, cols = in] in order (no act-order, so every export layout is the
 * one RTN writes) and, after quantizing column c, spreads that column's rounding error over the
 * columns not yet quantized so that the layer output W·x changes least for the calibration inputs.
 * With H = Σ x·xᵀ [cols, cols] over the calibration tokens of the Linear's input (fp32, as the
 * calibration sums it; any positive multiple gives the same result up to the damping):
 *   1. columns whose H[c, c] is 0 (inputs that were always zero) are zeroed and get H[c, c] = 1;
 *   2. damping: H += damp · mean(diag H) · I;
 *   3. U = the upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ·U), computed in fp64 from H widened, then
 *      used in fp32 (g4q_gptq_inverse_factor);
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
 *           (error-updated) weights rounded to bf16, by g4q_int4_group_scale_h (max, mse, or the
 *           imatrix / hessian weighted searches with H's weights, quant.h); codes
 *           q = clamp(RNE(w ÷ s), −8, 7).
 *   NVFP4   (ModelOpt and compressed-tensors conventions) the global scale fixed first (from the
 *           fused group's amax, as RTN), then each row's 16-column block scale chosen lazily,
 *           when GPTQ reaches the block, from its current (error-updated) fp32 values by the
 *           method's per-block rule (g4q_nvfp4_block_choose; CT: its max rule), and the E2M1
 *           codes with feedback against it.
 *   FP8     128x128 blocks: scales fixed first by g4q_fp8_quantize_blocks, then the E4M3 codes.
 * With H diagonal no error crosses columns, and the output is byte-identical to RTN's.
 *
 * Cost: O(cols³) for the factorization and O(rows · cols²) for the updates, plus fp64 [cols,cols]
 * and fp32 [rows, cols] working memory: a reference for tests and small models; the GPU runs the
 * same algorithm for the 12B (src/backend/cuda/quant_cuda.h: the same column loop bit for bit
 * given the same U; its U comes from a blocked fp64 factorization that rounds differently).
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
    /* The inverse factor to use instead of computing it from H (H still decides the dead
     * columns): fp32 [cols, cols] as g4q_gptq_inverse_factor writes it; a host pointer for these
     * functions, a device pointer for the CUDA ones. NULL: computed. For tests that check the
     * CPU and GPU column loops against each other. */
    const float *U;
} g4q_gptq_opts;

/* Factorization failures (H not positive definite even after damping, or non-finite) give
 * G4Q_ERR_NUMERIC naming `name`; non-finite weights likewise. H is [cols, cols] fp32 row-major,
 * symmetric, not modified. w is W [rows, cols] as bf16 words, as in quant.h. */

/* Steps 1-2 on H's diagonal, widened to fp64 (diag [n], rewritten in place): dead[c] = 1 where
 * diag[c] == 0 (then taken as 1), then diag[c] += damp · mean(diag), the mean summed in index
 * order. Returns 0, or 1 when the mean is not finite. Shared by the CPU and GPU factorizations. */
int g4q_gptq_damp_diag(double *diag, int64_t n, double damp, uint8_t *dead);

/* Steps 1-3: U [n, n] fp32 (upper triangle, zeros below) and dead [n]. U is computed as
 * J·L⁻¹·J, with J the order reversal and L the lower Cholesky factor of J·H·J (the damped H
 * reversed), in fp64: the same matrix as the Cholesky factor of H⁻¹, for a third of the work.
 * G4Q_ERR_NUMERIC when the damped H is not positive definite, naming `name` and the pivot (its
 * index in H's order). */
g4q_status g4q_gptq_inverse_factor(g4q_ctx *ctx, const char *name, const float *H, int64_t n,
                                   double damp, float *U, uint8_t *dead);

/* In-place lower Cholesky factor of the symmetric positive definite fp64 A [n, n] row-major
 * (only the lower triangle is read and written), nt threads. Returns 0, or the first failing
 * pivot + 1. */
int64_t g4q_cholesky_lower_f64(double *A, int64_t n, int nt);

/* INT4 (outputs of g4q_int4_quantize: q int8 [rows, cols], scales fp32 [rows, ceil(cols/group)]
 * exact in scale_dtype). method MAX, MSE, IMATRIX or HESSIAN. The NVFP4 and FP8 functions fix
 * their scales with the _h quantizers of quant.h and the same H, so any of their methods works. */
g4q_status g4q_gptq_int4(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                         int64_t cols, int group, g4q_scale_method method, g4q_dtype scale_dtype,
                         const float *H, const g4q_gptq_opts *o, int8_t *q, float *scales);

/* NVFP4, ModelOpt convention (outputs of g4q_nvfp4_quantize; method chooses the block scales). */
g4q_status g4q_gptq_nvfp4(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                          int64_t cols, float global_amax, g4q_scale_method method,
                          const float *H, const g4q_gptq_opts *o, uint8_t *packed,
                          uint8_t *scales, float *wsf2);

/* NVFP4, compressed-tensors convention (outputs of g4q_nvfp4_quantize_ct). */
g4q_status g4q_gptq_nvfp4_ct(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                             int64_t cols, float global_amax, const float *H,
                             const g4q_gptq_opts *o, uint8_t *packed, uint8_t *scales,
                             float *global_scale);

/* FP8 128x128 blocks (outputs of g4q_fp8_quantize_blocks; method chooses the fixed scales). */
g4q_status g4q_gptq_fp8_blocks(g4q_ctx *ctx, const char *name, const uint16_t *w, int64_t rows,
                               int64_t cols, g4q_scale_method method, const float *H,
                               const g4q_gptq_opts *o, uint8_t *q, float *scales);

#ifdef __cplusplus
}
#endif

#endif
