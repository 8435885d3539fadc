/*
 * Activation-aware channel scaling (AWQ, Lin et al. 2023, with SmoothQuant's folding): the search
 * for per-input-channel factors s of the Linears that read one activation, CPU reference.
 *
 * For a Linear y = W·x and any s > 0, W·x = (W·diag(s))·(x ÷ s): the producer of x (the RMSNorm
 * before q/k/v or gate/up, whose weight becomes w ÷ s; up_proj for down_proj's input, whose rows
 * become up ÷ s) absorbs 1 ÷ s and the Linears' columns absorb s. The model computes the same
 * function up to bf16 rounding, but the quantizers see other numbers: channels with large
 * activations get larger weights (a finer relative grid) and, where the engine quantizes the
 * activations too (NVFP4 W4A4), smaller activations (less of a block's range taken by outliers).
 *
 * The search (AWQ's grid search, with the engine's activation quantization in the loss):
 *   m_c   = mean |x_c| over the sample rows (fp64 sums), floored at 1e-4 · max m;
 *   for α in 0, 1/grid, ..., 1:
 *     s_c = m_c^α ÷ sqrt(max m^α · min m^α)     (fp32; α = 0 gives s = 1 exactly)
 *     every Linear k: W_k,s = bf16(W_k · s) (columns), D_k = qdq(W_k,s) (the export's quantizer,
 *       fused groups included: qdq sees all Linears at once), fp32 dequantized;
 *     x_s = bf16(x ÷ s); the engine's activation quantization of x_s (quant/actq.h, input scale
 *       from the smoothed amax max_c col_amax_c ÷ s_c as the export computes it);
 *     loss(α) = Σ_k Σ_rows || N_k(W_k·x − D_k·x̃_s) ||²  (the original output is the target;
 *       N_k: the next RMSNorm's view of an error, the output's rms per token and group and the
 *       norm's weights, g4q_smooth_linear);
 *   the α of least loss wins (the smallest on ties), so the result is never worse than no scaling
 *   on the samples (α = 0 is the unscaled model, bit for bit).
 * Cost: grid + 1 quantizations of every Linear and (grid + 2) · rows · Σ out_k · n multiply-adds.
 */
#ifndef G4Q_QUANT_SMOOTH_H
#define G4Q_QUANT_SMOOTH_H

#include <stdint.h>

#include "base/ctx.h"
#include "quant/actq.h"

#ifdef __cplusplus
extern "C" {
#endif

#define G4Q_SMOOTH_MAX_LINEARS 3 /* q/k/v read one input */

typedef struct g4q_smooth_linear {
    const uint16_t *w; /* bf16 [rows, n] row-major: the weight as the model has it */
    int64_t rows;
    /* What the model does with the output next, so that the loss weighs the errors as they
     * arrive: an RMSNorm over groups of `norm_group` outputs (the whole output for down_proj's
     * post_feedforward_layernorm, a head for q/k/v's per-head norms; 0: none) divides each
     * token's errors by that group's rms, and multiplies output c by its weight norm_w[c %
     * norm_w_len] (bf16; NULL: 1). */
    int64_t norm_group;
    const uint16_t *norm_w;
    int64_t norm_w_len;
} g4q_smooth_linear;

/* Quantizes and dequantizes the scaled weights ws[k] (bf16 [rows_k, n]) of every Linear as the
 * export will, into deq[k] (fp32 [rows_k, n]); s [n] is the candidate (e.g. for a Hessian-weighted
 * scale search, whose Hessian is g4q_smooth_hessian's). */
typedef g4q_status (*g4q_smooth_qdq_fn)(void *user, const float *s, const uint16_t *const *ws,
                                        float *const *deq);

typedef struct g4q_smooth_problem {
    int64_t n;               /* input channels */
    const float *x;          /* fp32 [rows, n]: sample rows of the input */
    int64_t rows;
    const float *col_amax;   /* [n]: max |x_c| over every calibration token */
    const g4q_smooth_linear *lin;
    int n_lin;               /* 1 .. G4Q_SMOOTH_MAX_LINEARS */
    g4q_smooth_qdq_fn qdq;
    void *user;
    g4q_actq act;            /* the engine's activation quantization (its static scale, for NVFP4
                              * and FP8_TENSOR, from the smoothed amax as the export computes it) */
    int grid;                /* α steps; 0 means 10 */
} g4q_smooth_problem;

typedef struct g4q_smooth_result {
    float alpha;      /* the chosen α */
    double loss0;     /* loss at α = 0 (no scaling) */
    double loss;      /* loss at the chosen α */
    float amax;       /* max_c col_amax_c ÷ s_c: the smoothed input's amax */
} g4q_smooth_result;

/* Fills s [n] with the chosen factors (all 1 when α = 0 wins). Errors: G4Q_ERR_INVALID for an
 * empty problem, G4Q_ERR_NUMERIC naming `name` for non-finite samples or amaxes, G4Q_ERR_NOMEM;
 * the qdq callback's errors. */
g4q_status g4q_smooth_search(g4q_ctx *ctx, const char *name, const g4q_smooth_problem *p, float *s,
                             g4q_smooth_result *out);

/* The smoothed input Hessian in place: H[i][j] ÷= s_i · s_j, the Hessian of x ÷ s. H is held as
 * a g4q_hess of n inputs with this block (quant.h): [n, n], or its diagonal blocks (the padding
 * past n is left as it is). */
void g4q_smooth_hessian(float *H, int64_t n, int block, const float *s);

#ifdef __cplusplus
}
#endif
#endif
