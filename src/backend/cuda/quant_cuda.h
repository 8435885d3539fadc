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
#include "quant/gptq.h"
#include "quant/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* amax of n bf16 values on the device (exact); NaN/inf fail with G4Q_ERR_NUMERIC. */
g4q_status g4q_cuda_amax_bf16(g4q_ctx *ctx, const char *name, const uint16_t *d_w, size_t n,
                              float *amax, void *stream);

/* The checks every device NVFP4 quantizer makes after its shape check: the fused group's
 * global_amax finite (else NUMERIC), d_w 16-byte and d_packed 8-byte aligned (else INVALID), and
 * the tensor's own amax, taken on the device, not above global_amax (else INVALID; NaN/inf
 * weights NUMERIC). Messages name tensor `nm`. */
g4q_status g4q_cuda_nvfp4_check(g4q_ctx *ctx, const char *nm, const uint16_t *d_w, int64_t rows,
                                int64_t cols, float global_amax, const uint8_t *d_packed,
                                void *stream);

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

/*
 * Hessian-weighted variants (quant.h, "Hessian-weighted scale searches"): as the CPU `_h`
 * functions, byte for byte, with d_H->h in device memory (every entry or diagonal blocks, as
 * quant.h g4q_hess; d_H NULL allowed for the non-weighted methods, which then run exactly as the
 * functions above). The diagonal or diagonal blocks are gathered on the device, checked and
 * normalised on the host by g4q_hess_normalize (temporary device memory: cols floats for
 * imatrix, about cols · bs for hessian with bs 16 / 128 / group), then the per-block searches of
 * quant/blockq.h run on the device.
 */
g4q_status g4q_cuda_nvfp4_quantize_h(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                     int64_t rows, int64_t cols, float global_amax,
                                     g4q_scale_method method, const g4q_hess *d_H,
                                     uint8_t *d_packed, uint8_t *d_scales, float *wsf2,
                                     void *stream);

g4q_status g4q_cuda_fp8_quantize_blocks_h(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                          int64_t rows, int64_t cols, g4q_scale_method method,
                                          const g4q_hess *d_H, uint8_t *d_q, float *d_scales,
                                          void *stream);

g4q_status g4q_cuda_int4_quantize_h(g4q_ctx *ctx, const char *name, const uint16_t *d_w,
                                    int64_t rows, int64_t cols, int group, g4q_scale_method method,
                                    g4q_dtype scale_dtype, const g4q_hess *d_H, int8_t *d_q,
                                    float *d_scales, void *stream);

/* The weights of H that a weighted method m reads (quant.h compact layout, block size bs),
 * gathered from d_H (d_H->h device memory, g4q_hess_check'ed against cols), normalised on the host
 * by g4q_hess_normalize and uploaded: *d_hw (device, freed by the caller with cudaFreeAsync on
 * stream), or NULL for the unweighted methods. */
g4q_status g4q_cuda_hess_weights(g4q_ctx *ctx, const char *name, g4q_scale_method m,
                                 const g4q_hess *d_H, int64_t cols, int bs, void *stream,
                                 float **d_hw);

/* ---- GPTQ (quant/gptq.h) on the device: gptq_cuda.cu ----
 * `blas` is a cublasHandle_t (set to `stream`); d_H the input Hessian fp32 [cols, cols] on the
 * device; o as on the CPU (o->U a device pointer). The column loop is the CPU reference's
 * arithmetic, so with the CPU's U (o->U) the outputs are byte-identical to the CPU functions of
 * the same name; with U computed here (blocked fp64 Cholesky, another summation order) a code
 * can differ where a weight sits on a rounding boundary. Lazy batches of 128 columns only (o->block
 * 0 or 128); INT4 groups must divide 128. Working memory: two fp64 [cols, cols] for the factor,
 * then fp32 U [cols, cols] and W [rows, cols]. */

/* U [n, n] fp32 (upper, zeros below) and dead [n] (device) of g4q_gptq_inverse_factor. */
g4q_status g4q_cuda_gptq_factor(g4q_ctx *ctx, const char *name, void *blas, const float *d_H,
                                int64_t n, double damp, float *d_U, uint8_t *d_dead,
                                void *stream);

g4q_status g4q_cuda_gptq_int4(g4q_ctx *ctx, const char *name, void *blas, const uint16_t *d_w,
                              int64_t rows, int64_t cols, int group, g4q_scale_method method,
                              g4q_dtype scale_dtype, const float *d_H, const g4q_gptq_opts *o,
                              int8_t *d_q, float *d_scales, void *stream);

/* ModelOpt convention only (compressed-tensors NVFP4 GPTQ runs on the CPU). */
g4q_status g4q_cuda_gptq_nvfp4(g4q_ctx *ctx, const char *name, void *blas, const uint16_t *d_w,
                               int64_t rows, int64_t cols, float global_amax,
                               g4q_scale_method method, const float *d_H, const g4q_gptq_opts *o,
                               uint8_t *d_packed, uint8_t *d_scales, float *wsf2, void *stream);

g4q_status g4q_cuda_gptq_fp8_blocks(g4q_ctx *ctx, const char *name, void *blas,
                                    const uint16_t *d_w, int64_t rows, int64_t cols,
                                    g4q_scale_method method, const float *d_H,
                                    const g4q_gptq_opts *o, uint8_t *d_q, float *d_scales,
                                    void *stream);

#ifdef __cplusplus
}
#endif
#endif
