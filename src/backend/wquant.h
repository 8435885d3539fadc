/*
 * The weight quantizer: one BF16 matrix W [rows = out, cols = in] into the stored tensors of a
 * quantized format (quant/layout.h), on the CPU or on a CUDA GPU, with the same bytes.
 *
 * It knows nothing of plans, recipes or checkpoints: a g4q_wquant_job says what to quantize and
 * where the results go (src/export/quantize_item.c builds one from a plan item).
 *
 *   CPU  (backend/cpu/cpu_wquant.c): the reference quantizers of quant/quant.h (round to nearest
 *        with a scale search) and quant/gptq.h (GPTQ). Every format.
 *   CUDA (backend/cuda/cuda_wquant.cu): the kernels of backend/cuda/quant_cuda.h, for the formats
 *        g4q_wquant_gpu_supports accepts (NVFP4 ModelOpt, FP8 128x128 blocks, INT4 GPTQ and
 *        compressed-tensors). Round to nearest gives the CPU's bytes exactly (the per-block code is
 *        quant/blockq.h on both, docs/architecture.md §4.3). GPTQ runs the CPU's column loop,
 *        but its inverse Hessian factor is computed in another order (quant_cuda.h), so a code
 *        can differ where a weight sits on a rounding boundary.
 *   Without CUDA (backend/nocuda/wquant_stub.c) g4q_wquant_gpu_create fails with
 *        G4Q_ERR_UNSUPPORTED and the CPU does the work.
 *
 * The GPU quantizer is created once per run and reused for every tensor: its device buffers (the
 * weight, the codes, the scales, the Hessian) grow on demand and are kept; it reports the most
 * device memory it held at once (GPTQ's transient working memory included).
 */
#ifndef G4Q_BACKEND_WQUANT_H
#define G4Q_BACKEND_WQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"
#include "quant/gptq.h"
#include "quant/layout.h"
#include "quant/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_wquant_job {
    g4q_layout_format format; /* a quantized format (not G4Q_LAYOUT_BF16) */
    const char *name;         /* the weight's name, for messages */
    int64_t rows, cols;       /* out and in features (the quantizers check their shape rules) */
    g4q_scale_method method;  /* the scale search (quant/quant.h) */
    int gptq;                 /* 0: round to nearest; 1: GPTQ (quant/gptq.h), needs H */
    const g4q_gptq_opts *gptq_opts; /* GPTQ options; NULL: the defaults (quant/gptq.h) */
    /* Formats with a per-tensor scale (layout role G4Q_LROLE_GLOBAL: NVFP4, FP8 per tensor):
     * fused 1 when W belongs to a fused group whose members share one global amax (formats.md
     * §2.7), group_amax (>= W's max |w|); fused 0: W's own max |w| is taken. Others: unused. */
    int fused;
    float group_amax;
    const uint16_t *w; /* bf16 [rows, cols] row-major, host memory */
    const float *H;    /* the input Hessian fp32 [cols, cols] host memory, for GPTQ and the
                          imatrix / hessian scale searches; NULL otherwise */
    /* Host output buffers: out[k] receives tensor k of g4q_layout_get(format)->t, in its written
     * dtype and shape for (rows, cols, the layout's group) (g4q_layout_nbytes bytes), for every
     * k whose role is not calibrated (g4q_layout_role_calibrated: those entries are ignored). */
    void *out[G4Q_LAYOUT_MAX_TENSORS];
    float *deq; /* NULL, or fp32 [rows, cols]: the dequantized result as the quant/quant.h
                   decoders give it from the outputs (e.g. for sequential calibration) */
} g4q_wquant_job;

/* Checks what every implementation relies on: a quantized format, w, positive rows and cols, an
 * output buffer for every quantizer-written tensor. G4Q_ERR_INVALID naming the job otherwise. */
g4q_status g4q_wquant_check(g4q_ctx *ctx, const g4q_wquant_job *job);

/* Quantizes on the CPU (any format). Errors: those of the quantizers (shape rules, non-finite
 * weights, a Hessian a weighted method or GPTQ needs), G4Q_ERR_UNSUPPORTED for a scale search
 * the format does not define (compressed-tensors NVFP4 and FP8 per tensor: max only), NOMEM. */
g4q_status g4q_wquant_cpu(g4q_ctx *ctx, const g4q_wquant_job *job);

typedef struct g4q_wquant_gpu g4q_wquant_gpu;

/* A GPU quantizer on the current device (its own stream); G4Q_ERR_UNSUPPORTED without CUDA. */
g4q_status g4q_wquant_gpu_create(g4q_ctx *ctx, g4q_wquant_gpu **out);
void g4q_wquant_gpu_free(g4q_wquant_gpu *q); /* NULL is a no-op */
/* Most device memory held at once, bytes; 0 for NULL. */
size_t g4q_wquant_gpu_peak_bytes(const g4q_wquant_gpu *q);
/* 1 if the job's format has a CUDA kernel (0 in builds without CUDA). */
int g4q_wquant_gpu_supports(const g4q_wquant_job *job);
/* Uploads w (and H), quantizes on the GPU and fills the job's outputs (and deq) as
 * g4q_wquant_cpu does; errors as the CPU's, plus G4Q_ERR_CUDA. */
g4q_status g4q_wquant_gpu_run(g4q_ctx *ctx, g4q_wquant_gpu *q, const g4q_wquant_job *job);

/* On gpu when it is non-NULL and supports the job, else on the CPU. */
g4q_status g4q_wquant_run(g4q_ctx *ctx, g4q_wquant_gpu *gpu, const g4q_wquant_job *job);

/* ---- shared by the implementations (backend/cpu/cpu_wquant.c) ---- */

/* Packs INT4 codes q int8 [rows, cols] and fp32 group scales [rows, cols / group] (exact in the
 * layout's scale dtype) into the job's INT4 outputs (GPTQ v1 or compressed-tensors). */
g4q_status g4q_wquant_pack_int4(g4q_ctx *ctx, const g4q_wquant_job *job, const int8_t *q,
                                const float *scales);

/* Fills job->deq (which must be non-NULL) from the filled outputs; INT4 from its unpacked codes
 * and fp32 scales (q, scales), the other formats from job->out (q, scales unused). */
void g4q_wquant_dequant(const g4q_wquant_job *job, const int8_t *q, const float *scales);

#ifdef __cplusplus
}
#endif
#endif
