/*
 * The CUDA backend (backend.h): device memory on GPU 0, bf16 activations and KV caches, fp32
 * math inside every op and one bf16 rounding per op output where the bf16 reference rounds
 * (docs/gemma4.md §4.9). One stream, one cuBLAS handle, all held in the backend state.
 *
 *   matmul     n <= 4 tokens: own bandwidth-bound GEMV (16-byte weight loads, fp32 sums);
 *              otherwise cublasGemmEx, BF16 in/out, CUBLAS_COMPUTE_32F.
 *   rmsnorm    one block per row, sum of squares in fp32.
 *   rope       c = bf16(cos θ), s = bf16(sin θ) and the three roundings of §4.6.
 *   attention  scores bf16(q·k) for the visible keys, fp32 softmax rounded to bf16, P·V summed in
 *              fp32 and rounded once, as HF eager attention does. Scratch grows on demand.
 *   geglu      bf16(bf16(gelu_tanh(g)) · u); add_scaled bf16(bf16(h + a) · s); softcap
 *              bf16(bf16(tanh(bf16(x / cap))) · cap); embed bf16(E[id] · scale).
 *
 * Decode steps: matmul3 / matmul_geglu (one GEMV launch over q,k,v or gate+up with GeGLU),
 * qkv_norm_rope, norm_add_norm, the step position (rope / kv_store / T = 1 attention read n_past
 * from device memory: cuda_attention_step.cu) and graph recording on the stream (cuda_fused.cu).
 * A graph is stale once any device memory was freed after it was recorded.
 *
 * Weights: only G4Q_WF_BF16 so far (copied to the device at weight_bind); the packed formats
 * give G4Q_ERR_UNSUPPORTED naming the tensor. mem_peak reports the device bytes held at peak.
 * A plain C header: builds without CUDA link a stub that returns G4Q_ERR_UNSUPPORTED.
 */
#ifndef G4Q_BACKEND_CUDA_CUDA_BACKEND_H
#define G4Q_BACKEND_CUDA_CUDA_BACKEND_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates the CUDA backend on device 0 reporting errors to ctx (which must outlive it). No usable
 * GPU gives G4Q_ERR_CUDA; a build without CUDA gives G4Q_ERR_UNSUPPORTED. Free with
 * g4q_backend_free() after every buffer and weight of it. */
g4q_status g4q_backend_cuda_create(g4q_ctx *ctx, g4q_backend **out);

#ifdef __cplusplus
}
#endif
#endif
