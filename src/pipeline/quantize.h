/*
 * The quantization job as one library call: calibration (when the plan needs it) and export,
 * with the Linears that need their calibration input Hessian (algorithm gptq) quantized inside
 * the calibration pass, layer by layer, as soon as the layer has seen every sample:
 *
 *   for each decoder layer L (src/calib/calibrate.h, layer-streamed):
 *     bind L's weights; run every sample through L, summing the amaxes and, when needed, the
 *     input Hessians H = Σ x·xᵀ of q/k/v (one), o, gate/up (one) and down on the backend (fp32);
 *     quantize L's Hessian items on the same device (GPTQ: src/quant/gptq.h on the CPU,
 *     src/backend/cuda/quant_cuda.h on the GPU) and keep their packed outputs in host memory;
 *     in sequential mode quantize every quantized Linear of L and run L again with the
 *     dequantized weights, so that L+1 is calibrated on the quantized model's outputs;
 *   then the export (src/export/export.h) writes every tensor, taking the kept outputs as they are.
 *
 * So no Hessian outlives its layer (the 12B's would take 53 GB in fp32), and device memory holds
 * one layer's weights, the calibration activations (twice in sequential mode) and one Linear's
 * GPTQ working set. Host memory holds the packed outputs of the Hessian items until the export.
 */
#ifndef G4Q_PIPELINE_QUANTIZE_H
#define G4Q_PIPELINE_QUANTIZE_H

#include "backend/device.h"
#include "calib/calibrate.h"
#include "calib/dataset.h"
#include "export/export.h"
#include "export/plan.h"
#include "io/safetensors.h"
#include "model/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_quantize_job {
    const char *model_dir;   /* the input checkpoint folder (the calibration session opens it) */
    const g4q_plan *plan;    /* built from the recipe for ckpt and cfg */
    const g4q_ckpt *ckpt;
    const g4q_config *cfg;
    /* Token ids for calibration; required when plan->needs_calibration, else ignored. */
    const g4q_calib_data *calib_data;
    int sequential;          /* calibrate layer L+1 on the quantized outputs of layer L */
    g4q_export_opts export;  /* out_dir, overwrite, shard_bytes, device (resolved); calib and
                              * ready are filled in by g4q_quantize_run */
} g4q_quantize_job;

typedef struct g4q_quantize_report {
    g4q_export_stats stats;     /* of the export step */
    int calibrated;             /* calib below is valid */
    g4q_calib_result calib;     /* the calibration's amaxes, identity and timing */
    size_t layer_items;         /* tensors quantized inside the calibration pass */
    double layer_quant_seconds; /* time spent on them */
    size_t peak_gpu;            /* GPU memory of the whole job at most (calibration, then the
                                 * layer quantizer and the export's), bytes; 0 on the CPU */
} g4q_quantize_report;

/* Runs the job (see the file comment). Errors: those of the calibration, the quantizers and the
 * export; OUT is untouched on any error (the export's contract). Progress goes to ctx. */
g4q_status g4q_quantize_run(g4q_ctx *ctx, const g4q_quantize_job *job, g4q_quantize_report *out);

#ifdef __cplusplus
}
#endif
#endif
