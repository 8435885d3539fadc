/*
 * Private to src/backend/cuda (C++ / nvcc only): the concrete buffer, weight and state types,
 * device-memory accounting, the element access used by kernels templated on the activation type,
 * and the op entry points that live in the per-family .cu files.
 */
#ifndef G4Q_BACKEND_CUDA_INTERNAL_H
#define G4Q_BACKEND_CUDA_INTERNAL_H

#include <cuda_bf16.h>
#include <stdint.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_check.h"

struct g4q_buf {
    g4q_dtype dtype; /* G4Q_DT_BF16 or G4Q_DT_F32 */
    size_t count;    /* elements */
    size_t bytes;    /* allocated device bytes */
    void *data;      /* device memory, count elements of dtype */
};

struct g4q_bweight {
    g4q_wformat format; /* BF16, or a packed format (BF16 mode only, cuda_qgemm.cu) */
    int64_t rows, cols;
    size_t bytes;     /* device bytes of data (BF16 mode) or f32 (F32 mode) */
    uint16_t *data;   /* device bf16 [rows, cols]; NULL in F32 mode */
    float *f32;       /* F32 mode only: the bf16 weight widened to fp32 [rows, cols] */
    const char *name; /* not owned (the caller's desc->name) */
    /* Packed formats (format != BF16, BF16 mode only; cuda_qgemm.cu): data holds the packed
     * codes (`bytes` bytes, the device layout of cuda_qgemm.cu), qscale the device scales. */
    void *qscale;
    size_t qscale_bytes;
    float qg, qr; /* NVFP4: the stored scale2 and, for the reciprocal form, fl32(1/scale2) */
    int qmode;    /* QG_* bits (cuda_qlayout.h): NVFP4 division, no-GEMV (NaN) weights */
    int group;    /* INT4: inputs per scale */
    float qtensor; /* FP8 per tensor: the one scale (the grid in qscale repeats it); 0 otherwise */
    g4q_actq act;    /* activation quantization of the matmul (backend.h, src/quant/actq.h) */
    float act_scale; /* its scale */
    /* weight_bind_deferred: the caller's host bytes still to be copied into data by
     * weight_upload (cuda_upload.cu); NULL once they are on the device. */
    const void *pending;
};

#define G4Q_CUDA_STEP_MAX_HEADS 1024 /* query heads the decode attention supports */

typedef struct g4q_cuda_state {
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws; /* cuBLAS workspace (fixed, so graph capture would be possible) */
    size_t blas_ws_bytes;
    void *scratch; /* attention scratch, grown on demand */
    size_t scratch_bytes;
    float *amax_dev;  /* one float for amax results */
    unsigned long long *pick_dev; /* argmax: the best key and the first NaN index */
    int32_t *ids_dev; /* token ids for embed, ids_cap entries */
    size_t ids_cap;
    size_t cur, peak;    /* device bytes held now / at most */
    int *pos_dev;        /* step position (backend member step_pos), one int */
    unsigned *step_done; /* decode attention: per query head, ranges done (zero between ops) */
    int pdl;             /* launch the decode-path kernels with programmatic dependent launch */
    int gemv_kpr;        /* GEMV warps per row: 0 chooses by shape; 1, 2, 4 (8) force; -1: the
                            packed GEMV without its one-wave rule (benchmarks) */
    int qfuse;           /* packed matmul3 / matmul_geglu in one launch (G4Q_CUDA_FUSE, default 1) */
    int attn_fused;      /* decode attention in one kernel where it fits (G4Q_CUDA_ATTN_FUSED) */
    int sm_count, smem_optin; /* the device's SMs and opt-in shared memory per block, bytes */
    uint16_t *stage;     /* pinned host memory for bf16 upload / download conversion rounds */
    int capturing;       /* a graph recording is open on the stream */
    uint64_t epoch;      /* device frees so far: graphs recorded at an older epoch are stale */
    int f32;             /* F32 mode (G4Q_CUDA_F32): fp32 activations, no bf16 rounding anywhere */
    int device;          /* the CUDA device (weight_upload sets it on its own thread) */
    /* weight_upload (cuda_upload.cu), made by the first weight_bind_deferred: its stream, two
     * pinned host buffers the bytes pass through in turn, and the event of each buffer's last
     * copy. Used only by the one weight_upload running at a time. */
    cudaStream_t up_stream;
    void *up_stage[2];
    cudaEvent_t up_done[2];
} g4q_cuda_state;

static inline g4q_cuda_state *g4q_cuda_st(const g4q_backend *be)
{
    return (g4q_cuda_state *)be->state;
}

/* cudaMalloc with accounting; bytes 0 gives NULL. Errors name `what`. */
/* A new host-side weight record for desc d (format, shape, name set; no device memory yet).
 * Fails with INVALID naming the weight when the shape or data pointer is empty. */
g4q_status g4q_cuda_weight_new(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight **out);

g4q_status g4q_cuda_alloc(g4q_backend *be, size_t bytes, const char *what, void **out);
void g4q_cuda_release(g4q_backend *be, void *p, size_t bytes);
/* Copies `bytes` host bytes (pageable or pinned, any alignment) to device memory on the backend's
 * stream and waits for the copy, so that kernels on that stream see the data. (A plain cudaMemcpy
 * from pageable memory may return before its DMA lands and is not ordered with the backend's
 * non-blocking stream.) Errors name `what`. */
g4q_status g4q_cuda_upload_bytes(g4q_backend *be, void *dst, const void *src, size_t bytes,
                                 const char *what);
/* Deferred binding (backend.h weight_bind_deferred / weight_upload, cuda_upload.cu; BF16 mode)
 * and the release of what it made (stream, pinned buffers, events) at destroy. */
g4q_status g4q_cuda_weight_bind_deferred(g4q_backend *be, const g4q_weight_desc *d,
                                         g4q_bweight **out);
g4q_status g4q_cuda_weight_upload(g4q_backend *be, g4q_bweight *w, g4q_ctx *ctx);
void g4q_cuda_upload_destroy(g4q_backend *be);
/* Makes the attention scratch at least `bytes` long (grows by reallocation). */
g4q_status g4q_cuda_scratch(g4q_backend *be, size_t bytes, void **out);

/* Element access for kernels templated on the activation type T: __nv_bfloat16 (BF16 mode) or
 * float (F32 mode). g4q_ld widens to fp32; g4q_cvt<T> stores an fp32 value as T (round to nearest
 * even for bf16); g4q_rnd<T> is the rounding to T's precision, i.e. a bf16 rounding point of
 * docs/gemma4.md §4.9 in BF16 mode and the identity in F32 mode. Weights follow the mode too:
 * g4q_cuda_wdata<T> is the bf16 data or the fp32 widened copy. */
static __device__ __forceinline__ float g4q_ld(__nv_bfloat16 v)
{
    return __bfloat162float(v);
}
static __device__ __forceinline__ float g4q_ld(float v)
{
    return v;
}
template <typename T> __device__ __forceinline__ T g4q_cvt(float v);
template <> __device__ __forceinline__ __nv_bfloat16 g4q_cvt<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ float g4q_cvt<float>(float v)
{
    return v;
}
template <typename T> static __device__ __forceinline__ float g4q_rnd(float v)
{
    return g4q_ld(g4q_cvt<T>(v));
}
/* RoPE (docs/gemma4.md §4.6) as every CUDA kernel takes it: θ = fp32(fp32(pos) · inv_freq), its
 * cos and sin in double rounded to fp32 (as the CPU reference), then to T's precision. */
static __device__ __forceinline__ float g4q_rope_angle(float pos, float inv_freq)
{
    return __fmul_rn(pos, inv_freq);
}
template <typename T> static __device__ __forceinline__ float g4q_rope_cos(float th)
{
    return g4q_rnd<T>((float)cos((double)th));
}
template <typename T> static __device__ __forceinline__ float g4q_rope_sin(float th)
{
    return g4q_rnd<T>((float)sin((double)th));
}
/* gelu_tanh(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) in fp32: the one expression of every
 * GeGLU (geglu kernels, the GEMVs with GeGLU in their epilogue); rounding is the caller's. */
static __device__ __forceinline__ float g4q_gelu_tanh(float x)
{
    const float k0 = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k0 * (x + 0.044715f * x * x * x)));
}
/* Two consecutive elements (p 4-byte aligned for bf16, 8-byte for fp32) widened to fp32. */
static __device__ __forceinline__ float2 g4q_ld2(const __nv_bfloat16 *p)
{
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(p));
}
static __device__ __forceinline__ float2 g4q_ld2(const float *p)
{
    return *reinterpret_cast<const float2 *>(p);
}
/* Eight consecutive elements (p 16-byte aligned for bf16, 32-byte for fp32) widened to fp32. */
static __device__ __forceinline__ void g4q_ld8(const __nv_bfloat16 *p, float f[8])
{
    uint4 v = *reinterpret_cast<const uint4 *>(p);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&v);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}
static __device__ __forceinline__ void g4q_ld8(const float *p, float f[8])
{
    const float4 a = reinterpret_cast<const float4 *>(p)[0];
    const float4 b = reinterpret_cast<const float4 *>(p)[1];
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}
template <typename T> inline const T *g4q_cuda_wdata(const g4q_bweight *w);
template <> inline const __nv_bfloat16 *g4q_cuda_wdata<__nv_bfloat16>(const g4q_bweight *w)
{
    return reinterpret_cast<const __nv_bfloat16 *>(w->data);
}
template <> inline const float *g4q_cuda_wdata<float>(const g4q_bweight *w)
{
    return w->f32;
}

/* Programmatic dependent launch (PDL, sm_90; CUDA graphs keep it). A kernel started with
 * g4q_cuda_launch may begin while the kernel before it on the stream is still finishing, so that
 * its blocks are scheduled and its constant inputs loaded during the other's tail. Such a kernel
 * calls g4q_pdl_trigger() (lets the next kernel start early too) and then g4q_pdl_wait() in every
 * thread before it touches any memory that earlier work writes or reads: activations, caches,
 * scratch, the step position. Only bound weights (constant while ops run) may be read before the
 * wait. With the backend's pdl flag off (environment G4Q_CUDA_PDL=0) it is a plain launch and
 * both calls are no-ops. */
static __device__ __forceinline__ void g4q_pdl_trigger()
{
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}
static __device__ __forceinline__ void g4q_pdl_wait()
{
    asm volatile("griddepcontrol.wait;" ::: "memory");
}
template <typename... KArgs, typename... Args>
static inline cudaError_t g4q_cuda_launch(const g4q_backend *be, void (*kernel)(KArgs...),
                                          dim3 grid, dim3 block, size_t smem, Args... args)
{
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = ((const g4q_cuda_state *)be->state)->stream;
    cfg.attrs = &attr;
    cfg.numAttrs = ((const g4q_cuda_state *)be->state)->pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

/* Launch shape helper: blocks of `threads` covering n items. */
static inline unsigned g4q_cuda_blocks(size_t n, unsigned threads)
{
    return (unsigned)((n + threads - 1) / threads);
}

g4q_status g4q_cuda_matmul(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                           int n);
/* Packed weights (cuda_qgemm.cu): binding of the NVFP4 / FP8_BLOCK / INT4 formats of backend.h
 * (G4Q_ERR_UNSUPPORTED outside the bf16 mode), release of their device memory (not of w itself),
 * and the matmul for such a weight or for any weight with an activation quantization (bf16 x
 * and y; buffers already checked by the caller). */
g4q_status g4q_cuda_qweight_bind(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight **out);
void g4q_cuda_qweight_release(g4q_backend *be, g4q_bweight *w);
g4q_status g4q_cuda_qmatmul(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                            int n);
/* The packed decode GEMV over several weights in one launch (cuda_qgemv.cu), the same sums as
 * g4q_cuda_qmatmul's: whether weights a and b can share a launch at n tokens (both take the
 * decode GEMV; same format, cols, group and scale mode; not turned off by G4Q_CUDA_FUSE=0);
 * y[i] = x · w[i]ᵀ for nw = 2 or 3 such weights (matmul3); y = geglu(x · wgᵀ, x · wuᵀ) for a
 * gate and an up weight of one shape. */
bool g4q_cuda_qgemv_fits(const g4q_backend *be, const g4q_bweight *a, const g4q_bweight *b, int n);
g4q_status g4q_cuda_qgemv3(g4q_backend *be, const g4q_buf *x, int n, g4q_buf *const *y,
                           const g4q_bweight *const *w, int nw);
g4q_status g4q_cuda_qgemv_geglu(g4q_backend *be, g4q_buf *y, const g4q_buf *x,
                                const g4q_bweight *wg, const g4q_bweight *wu, int n);
g4q_status g4q_cuda_rmsnorm(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                            int rows, int n, float eps);
g4q_status g4q_cuda_rope(g4q_backend *be, g4q_buf *x, const g4q_buf *inv_freq, int T, int heads,
                         int hd, int pos0);
g4q_status g4q_cuda_attention(g4q_backend *be, g4q_buf *out, const g4q_buf *q, const g4q_buf *k_new,
                              const g4q_buf *v_new, const g4q_buf *kc, const g4q_buf *vc, int cap,
                              int n_past, int T, int nh, int nkv, int hd, int window, float scale);
g4q_status g4q_cuda_kv_store(g4q_backend *be, g4q_buf *kc, g4q_buf *vc, const g4q_buf *k_new,
                             const g4q_buf *v_new, int cap, int n_past, int T, int nkv, int hd);
g4q_status g4q_cuda_geglu(g4q_backend *be, g4q_buf *y, const g4q_buf *gate, const g4q_buf *up,
                          size_t count);
g4q_status g4q_cuda_add_scaled(g4q_backend *be, g4q_buf *h, const g4q_buf *a, size_t count,
                               float scale);
g4q_status g4q_cuda_softcap(g4q_backend *be, g4q_buf *x, size_t count, float cap);
g4q_status g4q_cuda_embed(g4q_backend *be, g4q_buf *y, const g4q_bweight *table, const int32_t *ids,
                          int T, float scale);
g4q_status g4q_cuda_amax(g4q_backend *be, const g4q_buf *x, size_t count, float *amax);
g4q_status g4q_cuda_argmax(g4q_backend *be, const g4q_buf *x, size_t n, const g4q_buf *mask,
                           int32_t *id, int32_t *nan_at);
g4q_status g4q_cuda_amax_into(g4q_backend *be, const g4q_buf *x, size_t count, g4q_buf *acc,
                              size_t index);
g4q_status g4q_cuda_col_amax_into(g4q_backend *be, const g4q_buf *x, int rows, int cols,
                                  g4q_buf *acc);
g4q_status g4q_cuda_gram(g4q_backend *be, g4q_buf *H, const g4q_buf *x, int rows, int n, int block,
                         int accumulate);
/* Evaluation ops (cuda_eval.cu): backend.h fp8_roundtrip and logit_stats. */
g4q_status g4q_cuda_fp8_roundtrip(g4q_backend *be, g4q_buf *x, size_t count, float scale);
g4q_status g4q_cuda_logit_stats(g4q_backend *be, const g4q_buf *a, const g4q_buf *b,
                                const int32_t *target, int rows, int V, double (*out)[5]);

g4q_status g4q_cuda_matmul3(g4q_backend *be, const g4q_buf *x, int n, g4q_buf *y0,
                            const g4q_bweight *w0, g4q_buf *y1, const g4q_bweight *w1, g4q_buf *y2,
                            const g4q_bweight *w2);
g4q_status g4q_cuda_matmul_geglu(g4q_backend *be, g4q_buf *y, g4q_buf *tmp, const g4q_buf *x,
                                 const g4q_bweight *wg, const g4q_bweight *wu, int n);
g4q_status g4q_cuda_qkv_norm_rope(g4q_backend *be, g4q_buf *q, g4q_buf *k, g4q_buf *v, int v_from_k,
                                  const g4q_bweight *qw, const g4q_bweight *kw,
                                  const g4q_buf *inv_freq, int T, int nh, int nkv, int hd, int pos0,
                                  float eps);
g4q_status g4q_cuda_norm_add_norm(g4q_backend *be, g4q_buf *h, g4q_buf *a,
                                  const g4q_bweight *w_post, float scale, g4q_buf *out,
                                  const g4q_bweight *w_next, int rows, int n, float eps);
/* Decode attention (T = 1) with n_past read from the step position (cuda_attention_step.cu).
 * With store non-zero it also writes the new token's K and V into slot n_past mod cap of kc and
 * vc, as kv_store would afterwards (that slot is never a visible key, see the .cu). */
g4q_status g4q_cuda_attention_step(g4q_backend *be, g4q_buf *out, const g4q_buf *q,
                                   const g4q_buf *k_new, const g4q_buf *v_new, const g4q_buf *kc,
                                   const g4q_buf *vc, int cap, int nh, int nkv, int hd, int window,
                                   float scale, int store);
/* attention then kv_store (backend.h attention_store); fused for a decode step. */
g4q_status g4q_cuda_attention_store(g4q_backend *be, g4q_buf *out, const g4q_buf *q,
                                    const g4q_buf *k_new, const g4q_buf *v_new, g4q_buf *kc,
                                    g4q_buf *vc, int cap, int n_past, int T, int nh, int nkv,
                                    int hd, int window, float scale);
g4q_status g4q_cuda_step_pos(g4q_backend *be, int n_past);
g4q_status g4q_cuda_graph_begin(g4q_backend *be);
g4q_status g4q_cuda_graph_end(g4q_backend *be, g4q_graph **out);
g4q_status g4q_cuda_graph_launch(g4q_backend *be, g4q_graph *g, int *stale);
void g4q_cuda_graph_free(g4q_backend *be, g4q_graph *g);

/* Checks that buf is a BF16 buffer of at least n elements (internal invariant). */
static inline int g4q_cuda_bf16_ok(const g4q_buf *b, size_t n)
{
    return b && b->dtype == G4Q_DT_BF16 && n <= b->count;
}

/* Checks that buf is an activation buffer of the backend's mode (act_dtype) of at least n
 * elements (internal invariant). */
static inline int g4q_cuda_act_ok(const g4q_backend *be, const g4q_buf *b, size_t n)
{
    return b && b->dtype == be->act_dtype && n <= b->count;
}

/* F32 mode (cuda_f32.cu): weight binding (BF16 only, widened to fp32 on the device), freeing,
 * and the fp32 GEMM (cuBLAS, fp32 compute, no TF32). */
g4q_status g4q_cuda_weight_bind_f32(g4q_backend *be, const g4q_weight_desc *desc,
                                    g4q_bweight **out);
void g4q_cuda_weight_free_f32(g4q_backend *be, g4q_bweight *w);
g4q_status g4q_cuda_matmul_f32(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                               int n);

#endif
