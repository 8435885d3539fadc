/*
 * The JSON files of each export format (formats.md §5.2, §5.3, §6, §8): config.json with
 * quantization_config (the input's config.json carried over byte for byte, the new member
 * appended), hf_quant_config.json for ModelOpt, quantize_config.json for GPTQ. The ModelOpt
 * exclude list is summarised as ModelOpt does (§8.3) and verified against vLLM's matching rules
 * (§8.6) before anything is written.
 *
 * The compressed-tensors `ignore` list names every BF16 Linear exactly, then lm_head. vLLM checks
 * every shard name of a fused qkv_proj against it, including v_proj on k_eq_v layers, which have
 * no v_proj tensor; so such a layer's absent v_proj is listed when its q_proj and k_proj stay
 * BF16, and left out when they are quantized (§5.3).
 */
#ifndef G4Q_EXPORT_CONFIGS_H
#define G4Q_EXPORT_CONFIGS_H

#include <cjson/cJSON.h>

#include "base/outdir.h"
#include "export/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The quantization_config object for config.json (caller frees). `cfg` is the model the plan was
 * built for: its prefix names GPTQ's block, and the layers' has_v_proj tell which absent v_proj
 * the compressed-tensors ignore list names. */
g4q_status g4q_export_quant_config(g4q_ctx *ctx, const g4q_plan *p, const g4q_config *cfg,
                                   cJSON **out);

/* hf_quant_config.json for ModelOpt exports (caller frees); NULL for other formats. */
g4q_status g4q_export_hf_quant_config(g4q_ctx *ctx, const g4q_plan *p, cJSON **out);

/* Writes every JSON file of the plan's export format into the partial output folder. */
g4q_status g4q_export_write_configs(g4q_ctx *ctx, const g4q_plan *p, const g4q_config *cfg,
                                    const char *input_config_json, const g4q_outdir *od);

#ifdef __cplusplus
}
#endif
#endif
