/*
 * CUDA weight quantizers: the same bytes as the CPU reference of quant/quant.h (they run the same
 * per-block code, quant/blockq.h, with correctly rounded fp32/fp64 intrinsics), on device memory.
 *
 * All pointers named d_* are device pointers owned by the caller, with the shapes and layouts of
 * the CPU functions of the same name. `stream` is a cudaStream_t (NULL = the default stream); the
 * functions synchronise the stream before returning (they read back a scalar or an error flag).
 * Errors: as the CPU versions (shape, non-finite weights, global amax below the tensor's), plus
 * G4Q_ERR_CUDA for runtime failures.
 */
#ifndef G4Q_BACKEND_CUDA_QUANT_CUDA_H
#define G4Q_BACKEND_CUDA_QUANT_CUDA_H

#include <stdint.h>

#include "base/ctx.h"
#include "io/dtype.h"
#include "quant/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* amax of n bf16 values on the device (exact); NaN/inf fail with G4Q_ERR_NUMERIC. */
g4q_status g4q_cuda_amax_bf16(g4q_ctx *ctx, const char *name, const uint16_t *d_w, size_t n,
                              float *amax, void *stream);

/* As g4q_nvfp4_quantize (max, mse, four_over_six); *wsf2 is written on the host. d_w must be
 * 16-byte and d_packed 8-byte aligned (cudaMalloc memory is). */
g4q_status g4q_cuda_nvfp4_quantize(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                   int64_t rows, int64_t cols, float global_amax,
                                   g4q_scale_method method, uint8_t *d_packed, uint8_t *d_scales,
                                   float *wsf2, void *stream);

/* As g4q_fp8_quantize_blocks (max, mse); d_scales fp32 [ceil(rows/128), ceil(cols/128)]. */
g4q_status g4q_cuda_fp8_quantize_blocks(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                        int64_t rows, int64_t cols, g4q_scale_method method,
                                        uint8_t *d_q, float *d_scales, void *stream);

/* As g4q_int4_quantize: d_q int8 [rows, cols], d_scales fp32 [rows, ceil(cols/group)]. */
g4q_status g4q_cuda_int4_quantize(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                  int64_t rows, int64_t cols, int group, g4q_scale_method method,
                                  g4q_dtype scale_dtype, int8_t *d_q, float *d_scales,
                                  void *stream);

#ifdef __cplusplus
}
#endif
#endif
