/*
 * One planned tensor -> its output buffers. bufs[k] receives output k of the item (plan.h order
 * and sizes: e.g. NVFP4 ModelOpt: packed codes, block scales, weight_scale_2). Input scales are not
 * produced here (calibration).
 */
#ifndef G4Q_EXPORT_QUANTIZE_ITEM_H
#define G4Q_EXPORT_QUANTIZE_ITEM_H

#include "export/plan.h"
#include "quant/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CPU reference path. group_amax: the fused group's shared amax when it->group >= 0 (else
 * ignored: the tensor's own amax is used). H: the input Hessian fp32 [in, in] (src/calib) for an
 * item that needs one (g4q_plan_item_needs_hessian; src/quant/gptq.h), else NULL. deq (may be
 * NULL) receives the dequantized weight, fp32 [out, in], as the export's decoders give it
 * (src/quant/quant.h): sequential calibration runs the layer again with it. */
g4q_status g4q_quantize_item_cpu(g4q_ctx *ctx, const g4q_plan_item *it, float group_amax,
                                 const float *H, void **bufs, float *deq);

/* The quantizer method of an item's scale_search (max, mse, four-over-six, imatrix, hessian). */
g4q_scale_method g4q_plan_item_method(const g4q_plan_item *it);

/* Packs INT4 codes q [rows, cols] and fp32 group scales (128 per group, already exact in the
 * format's scale dtype) into the GPTQ or compressed-tensors outputs of the item. Shared by the
 * CPU and CUDA paths. */
g4q_status g4q_quantize_item_pack_int4(g4q_ctx *ctx, const g4q_plan_item *it, const int8_t *q,
                                       const float *scales, void **bufs);

/* ---- GPU path (CUDA builds; elsewhere create() fails with G4Q_ERR_UNSUPPORTED) ---- */

typedef struct g4q_gpu_quantizer g4q_gpu_quantizer;

/* Device buffers for one tensor at a time, grown on demand; reports its peak. */
g4q_status g4q_gpu_quantizer_create(g4q_ctx *ctx, g4q_gpu_quantizer **out);
void g4q_gpu_quantizer_free(g4q_gpu_quantizer *q); /* NULL is a no-op */
/* Most device memory held at once, bytes. */
size_t g4q_gpu_quantizer_peak_bytes(const g4q_gpu_quantizer *q);

/* 1 if the item's format, scale search and algorithm have a CUDA kernel (else quantize it on the
 * CPU). RTN: the bytes are the same either way. GPTQ: the same column loop, but its inverse
 * Hessian factor is computed in another order (src/backend/cuda/quant_cuda.h), so a code can
 * differ where a weight sits on a rounding boundary. */
int g4q_gpu_quantizer_supports(const g4q_plan_item *it);

/* Uploads the item's BF16 weight (and H, as for the CPU path), quantizes it on the GPU and fills
 * bufs (and deq when non-NULL) as the CPU path does. */
g4q_status g4q_quantize_item_cuda(g4q_ctx *ctx, g4q_gpu_quantizer *q, const g4q_plan_item *it,
                                  float group_amax, const float *H, void **bufs, float *deq);

/* Dequantizes the weight outputs of an item (bufs as filled above) into deq fp32 [out, in];
 * INT4 from its codes and fp32 group scales before packing (q, scales), others from bufs. */
void g4q_quantize_item_dequant(const g4q_plan_item *it, void *const *bufs, const int8_t *q,
                               const float *scales, float *deq);

#ifdef __cplusplus
}
#endif
#endif
