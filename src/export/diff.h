/*
 * Export diff: lines up two checkpoint folders (a gemma4q export and a peer tool's, or any two)
 * tensor by tensor and JSON key by JSON key, for byte-parity work (scripts/peers/).
 *
 * Tensors are matched by exact name. For each name in both: a dtype or shape mismatch, or else
 * identical bytes, or the count of differing bytes. Every module of A (named by a codes tensor:
 * weight, weight_packed, qweight) is classified on both sides through the stored-layout table
 * (quant/layout.h: ModelOpt NVFP4, compressed-tensors NVFP4, FP8 per tensor, FP8 blocks, GPTQ,
 * compressed-tensors INT4; every tensor of the format present with an accepted dtype and shape,
 * the shape inferred from the codes). Quantized on both sides in different formats or shapes:
 * one FORMAT line. Same format, bytes differ: both sides are dequantized with the src/quant
 * decoders and the largest |a - b| is reported with its element. JSON: config.json's quantization_config, hf_quant_config.json and
 * quantize_config.json (or auto-round's quantization_config.json) are compared recursively; every
 * key only in A, only in B or with different values is one line ("file:path.to.key").
 */
#ifndef G4Q_EXPORT_DIFF_H
#define G4Q_EXPORT_DIFF_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "io/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_diff_summary {
    size_t only_a, only_b; /* tensor names in one folder only */
    size_t common;         /* names in both */
    size_t identical;      /* common tensors with identical dtype, shape and bytes */
    size_t mismatched;     /* common tensors with a different dtype or shape */
    size_t different;      /* same dtype and shape, some bytes differ */
    uint64_t bytes_compared, bytes_different;
    size_t modules_compared; /* quantized modules dequantized on both sides */
    double max_dequant_diff; /* largest |a - b| over those modules (0 when none) */
    size_t json_differences; /* JSON keys only in one file or with different values */
} g4q_diff_summary;

/* Compares the tensors of two opened checkpoints; one line per difference is printed to `out`
 * (may be NULL). Never fails on differences; an error only for out-of-memory. */
g4q_status g4q_diff_tensors(g4q_ctx *ctx, const g4q_ckpt *a, const g4q_ckpt *b, FILE *out,
                            g4q_diff_summary *sum);

/* Compares two JSON values recursively; `path` names the root in the printed lines. Returns the
 * number of differences (keys only in one, different types or values; arrays element by element,
 * numbers equal when their doubles are equal). */
size_t g4q_diff_json(const cJSON *a, const cJSON *b, const char *path, FILE *out);

/* Opens both folders, runs g4q_diff_tensors and the JSON comparisons, prints a summary line.
 * Errors: unreadable folders or malformed files (naming them). */
g4q_status g4q_diff_dirs(g4q_ctx *ctx, const char *dir_a, const char *dir_b, FILE *out,
                         g4q_diff_summary *sum);

#ifdef __cplusplus
}
#endif
#endif
