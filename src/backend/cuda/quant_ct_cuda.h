/*
 * The compressed-tensors NVFP4 quantizer on the device (formats.md §6): the bytes of
 * g4q_nvfp4_quantize_ct (quant/quant.h), which runs the same per-block function
 * (g4q_nvfp4_block_ct of quant/blockq.h) on the CPU. Kernels in quant_ct_kernels.cu.
 *
 * Pointers named d_* are device pointers owned by the caller, with the shapes of the CPU
 * function; `stream` is a cudaStream_t (NULL = the default stream), synchronised before return.
 */
#ifndef G4Q_BACKEND_CUDA_QUANT_CT_CUDA_H
#define G4Q_BACKEND_CUDA_QUANT_CT_CUDA_H

#include <stdint.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* As g4q_nvfp4_quantize_ct: d_w bf16 [rows, cols] (cols % 16 == 0, 16-byte aligned),
 * d_packed u8 [rows, cols / 2] (8-byte aligned), d_scales E4M3 [rows, cols / 16], and
 * *global_scale (host) = g4q_nvfp4_ct_global_scale(global_amax). The same checks in the same
 * order (shape, buffers, global amax finite, the tensor's amax on the device: NaN/inf
 * G4Q_ERR_NUMERIC, above global_amax G4Q_ERR_INVALID, an infinite global scale NUMERIC), plus
 * alignment (INVALID) and G4Q_ERR_CUDA. */
g4q_status g4q_cuda_nvfp4_quantize_ct(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                      int64_t rows, int64_t cols, float global_amax,
                                      uint8_t *d_packed, uint8_t *d_scales, float *global_scale,
                                      void *stream);

#ifdef __cplusplus
}
#endif
#endif
