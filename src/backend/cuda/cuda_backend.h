/*
 * The CUDA backend (backend.h): device memory on GPU 0. One stream, one cuBLAS handle, all held in
 * the backend state. Two precisions, chosen at creation (g4q_cuda_opts):
 *
 * BF16 (the default, g4q_backend_cuda_create): bf16 activations and KV caches, fp32 math inside
 * every op and one bf16 rounding per op output where the bf16 reference rounds (docs/gemma4.md
 * §4.9) -- what transformers computes in bf16. Described op by op below.
 *
 * F32 (G4Q_CUDA_F32, name "cuda-fp32"): fp32 activations and KV caches (act_dtype G4Q_DT_F32),
 * the same kernels instantiated for fp32 with every bf16 rounding point removed, so each op
 * computes what the CPU backend computes up to fp32 summation order: RoPE cos/sin from the same
 * fp32 θ, scores and probabilities unrounded, residual and softcap unrounded. For comparing the
 * GPU path with transformers run in fp32. Weights: BF16 only (packed formats give
 * G4Q_ERR_UNSUPPORTED), widened to an fp32 copy on the device at weight_bind, so weights take
 * TWICE the device memory of BF16 mode (fine for test and oracle models, 48 GB for the 12B);
 * matmul is cublasGemmEx in fp32 with CUBLAS_COMPUTE_32F (IEEE fp32, never TF32) for every n.
 * The decode-step members (matmul3, matmul_geglu, qkv_norm_rope, norm_add_norm, step_pos and
 * graph recording) are NULL: the model runs the plain ops, one launch each.
 *
 * BF16 mode in detail:
 *
 *   matmul     n <= 4 tokens: own bandwidth-bound GEMV (16-byte weight loads, fp32 sums);
 *              otherwise cublasGemmEx, BF16 in/out, CUBLAS_COMPUTE_32F.
 *   rmsnorm    one block per row, sum of squares in fp32.
 *   rope       c = bf16(cos θ), s = bf16(sin θ) and the three roundings of §4.6.
 *   attention  scores bf16(bf16(q·k) · scale) for the visible keys, fp32 softmax rounded to
 *              bf16, P·V summed in fp32 and rounded once, as HF eager attention does; chunks of
 *              16+ rows compute q·k and P·V as batched cuBLAS GEMMs (cuda_attention.cu). Scratch
 *              grows on demand.
 *   geglu      bf16(bf16(gelu_tanh(g)) · u); add_scaled bf16(bf16(h + a) · s); softcap
 *              bf16(bf16(tanh(bf16(x / cap))) · cap); embed bf16(E[id] · scale).
 *
 * Decode steps: matmul3 / matmul_geglu (one GEMV launch over q,k,v or gate+up with GeGLU, BF16
 * or packed weights of one format), qkv_norm_rope, norm_add_norm, the step position (rope /
 * kv_store / T = 1 attention read n_past from device memory: cuda_attention_step.cu; the
 * attention runs as one kernel where its blocks fit on the device at once) and graph recording on
 * the stream (cuda_fused.cu).
 * A graph is stale once any device memory was freed after it was recorded.
 *
 * Weights: G4Q_WF_BF16 (copied to the device at weight_bind) and, in BF16 mode, the packed NVFP4,
 * FP8 128x128 / per-tensor and INT4 formats (cuda_qgemm.cu: decoded in the GEMV, widened to bf16
 * slices for tensor-core GEMMs, never expanded whole); F32 mode gives G4Q_ERR_UNSUPPORTED for
 * packed weights, naming the tensor. mem_peak reports the device bytes held at peak.
 * Deferred binding (backend.h weight_bind_deferred / weight_upload, BF16 mode; NULL in F32 mode):
 * the device memory is allocated on the backend's thread, and the upload, on any one thread at a
 * time, copies the bytes through two 16 MiB pinned host buffers on a non-blocking stream of its
 * own, beside the compute stream (cuda_upload.cu).
 * A plain C header: builds without CUDA link a stub that returns G4Q_ERR_UNSUPPORTED.
 */
#ifndef G4Q_BACKEND_CUDA_CUDA_BACKEND_H
#define G4Q_BACKEND_CUDA_CUDA_BACKEND_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    G4Q_CUDA_BF16 = 0, /* bf16 activations, the bf16 reference's rounding points (default) */
    G4Q_CUDA_F32 = 1   /* fp32 activations and weights, no bf16 rounding (see above) */
} g4q_cuda_precision;

typedef struct g4q_cuda_opts {
    g4q_cuda_precision precision;
    /* Non-zero: the decode-step attention always runs as its two kernels, never the fused one
     * (tests and benchmarks compare them; the environment G4Q_CUDA_ATTN_FUSED=0 does the same). */
    int attention_two_kernels;
} g4q_cuda_opts;

/* Creates the CUDA backend on device 0 reporting errors to ctx (which must outlive it), in the
 * precision of opts (NULL: BF16). No usable GPU gives G4Q_ERR_CUDA; an unknown precision
 * G4Q_ERR_INVALID; a build without CUDA G4Q_ERR_UNSUPPORTED. Free with g4q_backend_free() after
 * every buffer and weight of it. */
g4q_status g4q_backend_cuda_create_opts(g4q_ctx *ctx, const g4q_cuda_opts *opts, g4q_backend **out);

/* g4q_backend_cuda_create_opts with precision BF16. */
g4q_status g4q_backend_cuda_create(g4q_ctx *ctx, g4q_backend **out);
/* Whether a decode step's attention (T = 1 at the step position) over a cache of cap slots with
 * nh query heads, nkv KV heads and head_dim hd runs as the one fused kernel on be
 * (cuda_attention_step.cu); 0 on any other backend. For tests. */
int g4q_cuda_attention_fused(g4q_backend *be, int cap, int nh, int nkv, int hd);

#ifdef __cplusplus
}
#endif
#endif
