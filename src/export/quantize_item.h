/*
 * One planned tensor -> its output buffers, through the weight quantizer of backend/wquant.h: the
 * plan item is translated into a g4q_wquant_job (format, shape, scale method, algorithm, the fused
 * group's amax, the weight, the Hessian, the buffers) and run on the GPU quantizer when it has a
 * kernel for the format, else on the CPU. The bytes are the same either way (wquant.h says where
 * GPTQ may differ). Input and KV scales are not produced here (calibration, export.c).
 */
#ifndef G4Q_EXPORT_QUANTIZE_ITEM_H
#define G4Q_EXPORT_QUANTIZE_ITEM_H

#include "backend/wquant.h"
#include "export/plan.h"
#include "quant/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The quantizer method of an item's scale_search (max, mse, four-over-six, imatrix, hessian). */
g4q_scale_method g4q_plan_item_method(const g4q_plan_item *it);

/* Quantizes a planned item (format != G4Q_PF_KEEP; its input a 2-D BF16 weight, else
 * G4Q_ERR_SHAPE) on gpu when non-NULL and supported, else on the CPU.
 *   group_amax  the fused group's shared amax when it->group >= 0 (else ignored: the tensor's own
 *               amax is used).
 *   H           the input Hessian of in inputs (src/calib; quant.h g4q_hess: every entry for
 *               GPTQ, the diagonal blocks g4q_plan_item_hessian_block asks for at least for the
 *               weighted searches) for an item that needs one (g4q_plan_item_needs_hessian),
 *               else NULL.
 *   bufs        bufs[k] receives output k of the item, for its g4q_plan_item_weight_outputs(it)
 *               weight outputs (plan.h order and sizes, which are the layout's: quant/layout.h).
 *   deq         NULL, or fp32 [out, in]: the dequantized weight as the export's decoders give it
 *               (sequential calibration runs the layer again with it). */
g4q_status g4q_quantize_item(g4q_ctx *ctx, g4q_wquant_gpu *gpu, const g4q_plan_item *it,
                             float group_amax, const g4q_hess *H, void *const *bufs, float *deq);

/* The job of g4q_quantize_item without its output buffers (job->out all NULL; the caller
 * points out[0 .. g4q_plan_item_weight_outputs(it)) at them, or hands the job to the GPU pipe of
 * backend/wquant.h, which brings its own). job->name and job->w point into it->src. Errors as
 * g4q_quantize_item's before the quantizer runs (G4Q_ERR_SHAPE, INTERNAL). */
g4q_status g4q_quantize_item_job(g4q_ctx *ctx, const g4q_plan_item *it, float group_amax,
                                 const g4q_hess *H, float *deq, g4q_wquant_job *job);

#ifdef __cplusplus
}
#endif
#endif
