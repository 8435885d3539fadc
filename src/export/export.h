/*
 * Runs a quantization plan: reads the input checkpoint layer by layer, quantizes where the
 * weights are (CUDA when selected, else the CPU reference; both give identical bytes), streams the
 * tensors into the output shards, and writes the format's JSON files (hf_quant_config.json,
 * config.json quantization_config, quantize_config.json), copies the tokenizer, template and
 * generation files, and writes manifest.json (resolved recipe, tool version, input identity, the
 * sha256 of every output tensor). Everything goes to OUT.partial, renamed to OUT at the end; on
 * any error OUT.partial is removed and OUT is untouched.
 */
#ifndef G4Q_EXPORT_EXPORT_H
#define G4Q_EXPORT_EXPORT_H

#include <stdint.h>

#include "backend/device.h"
#include "calib/calibrate.h"
#include "export/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_export_opts {
    const char *out_dir;    /* OUT */
    int overwrite;          /* replace an existing OUT at commit */
    uint64_t shard_bytes;   /* 0: one model.safetensors */
    g4q_device_kind device; /* G4Q_DEVICE_CPU or G4Q_DEVICE_CUDA (already resolved) */
    /* Activation amaxes (src/calib/calibrate.h); required when plan->needs_calibration, else
     * ignored. Scales written from it (all F32 [], formats.md): NVFP4 W4A4 input_scale =
     * fl32(amax · R2688) with amax the max over the item's fused group (§2.2, §2.7: members get
     * bit-identical values); FP8 input_scale = fl32(amax · R448) (§3); KV k_scale / v_scale =
     * fl32(amax · R448) of K / V at the cache-write point (§7). A Linear without observed tokens
     * is G4Q_ERR_NEEDS_CALIBRATION; compressed-tensors input_global_scale is UNSUPPORTED. */
    const g4q_calib_result *calib;
    /* Items quantized before the export, with their calibration Hessians (GPTQ, weighted scale
     * search: src/pipeline/quantize.h), indexed like plan->items: ready[i], when non-NULL, holds
     * item i's weight outputs (plan.h order and sizes), written as they are; for a kept item,
     * its new bytes (a tensor that absorbed smoothing factors). NULL: none. An item that needs a
     * Hessian and is not ready is G4Q_ERR_NEEDS_CALIBRATION. */
    void **const *ready;
} g4q_export_opts;

typedef struct g4q_export_stats {
    size_t tensors_out;
    uint64_t bytes_in, bytes_out;
    double seconds;
    uint64_t peak_rss;      /* bytes, whole process */
    uint64_t peak_gpu;      /* bytes of device memory this run allocated at most (0 on CPU) */
} g4q_export_stats;

/* Executes `plan` (built from ckpt's tensors, cfg and the recipe it names) into opts->out_dir.
 * The input folder's config.json is carried over byte for byte with quantization_config added. */
g4q_status g4q_export_run(g4q_ctx *ctx, const g4q_plan *plan, const g4q_ckpt *ckpt,
                          const g4q_config *cfg, const g4q_export_opts *opts,
                          g4q_export_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
