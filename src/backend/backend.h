/*
 * The backend interface: the small set of tensor ops the Gemma 4 forward pass is written against
 * (see docs/architecture.md §4.1, "One model, two backends"). A backend is a struct of function
 * pointers plus an opaque state; the model code (src/model/forward.c) never sees how or where the
 * ops run.
 *
 * Backends:
 *   CPU  (src/backend/cpu/): host memory, activations fp32, fp32 accumulation, OpenMP. The
 *        readable reference; compared against transformers run in fp32.
 *   CUDA (src/backend/cuda/, cuda_backend.h): device memory, activations bf16 (act_dtype),
 *        cuBLAS GEMMs / own GEMV with fp32 accumulation and one bf16 rounding per op output,
 *        matching docs/gemma4.md §4.9 (attention rounds scores and probabilities to bf16).
 *        Its F32 mode (g4q_backend_cuda_create_opts) has fp32 activations and no bf16 rounding:
 *        the CPU backend's numerics on the GPU, for comparison with transformers in fp32.
 *
 * Buffers. A g4q_buf is an opaque array of `count` elements of one dtype living where the backend
 * computes (host memory on the CPU, device memory on CUDA). Activations use the backend's
 * act_dtype (G4Q_DT_F32 on the CPU and CUDA F32, G4Q_DT_BF16 on CUDA); small tables (RoPE
 * inv_freq) are F32.
 * Every op computes internally in fp32 and writes its result in the buffer's dtype. Shapes below
 * are in elements, row-major; "[T, n]" means T rows of n contiguous elements. Unless an op says
 * otherwise its output may not alias its inputs.
 *
 * Weights. Parameters (linear weights, norm weights, the embedding table) are bound once with
 * weight_bind, which returns a g4q_bweight. The CPU backend keeps a pointer to the caller's bytes
 * (no copy: they must outlive the binding, e.g. the checkpoint mapping); CUDA copies them to the
 * device. Packed formats are dequantized inside the GEMM (never expanded to a full-size copy).
 * weight_bind_deferred + weight_upload split a BF16 bind so that the copy can happen on another
 * thread while the backend computes.
 *
 * Errors. Ops return g4q_status and report through the g4q_ctx given at creation. Shape arguments
 * come from the model code (validated against the config there), so backends only assert them.
 *
 * Threading: one backend object is used by one thread at a time; it parallelises internally. The
 * one exception is weight_upload, which another thread may run alongside (see there).
 */
#ifndef G4Q_BACKEND_BACKEND_H
#define G4Q_BACKEND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"
#include "io/dtype.h"
#include "quant/actq.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Storage format of a bound weight W[rows = out, cols = in] (docs/formats.md). Every packed
 * format is dequantized inside the GEMM, a few rows or one tile at a time, into fp32 values that
 * are bit-identical to the src/quant decoders (quant.h), or applies a block / group / global
 * scale to an fp32 partial sum of exact products (the CUDA decode GEMVs, cuda_qgemm.cu), so a
 * backend's matmul differs from x · dequant(W)ᵀ only by the order and rounding of its fp32 sums:
 *
 *   G4Q_WF_BF16: data bf16 [rows, cols].
 *
 *   G4Q_WF_NVFP4 (§2.1, §6): cols % 16 == 0.
 *       data   u8 [rows, cols/2]: element (r, 2j) in the LOW nibble of byte (r, j), (r, 2j+1) in
 *              the high nibble; nibbles are E2M1 codes.
 *       scale  E4M3 bytes [rows, cols/16], plain row-major.
 *       scale2 one fp32 (may be unaligned: read it with memcpy).
 *       w[r, c] = fl32(fl32(E2M1(code) · E4M3(scale[r, c/16])) · scale2)   (ModelOpt
 *                 weight_scale_2; the inner product is exact), or with G4Q_WD_GLOBAL_RECIPROCAL
 *                 (compressed-tensors weight_global_scale, the reciprocal convention)
 *                 w[r, c] = fl32(fl32(E2M1 · E4M3) ÷ scale2)   (fp32 division: 1/scale2 is not
 *                 exact in fp32, so the flag cannot be folded into the scale at bind time).
 *
 *   G4Q_WF_FP8_BLOCK (§4, and §3 with a flag):
 *       data   E4M3 bytes [rows, cols].
 *       scale  fp32 [ceil(rows/128), ceil(cols/128)] row-major (fp8_pb_wo's [R, 1, C, 1] has the
 *              same bytes); partial edge blocks allowed. With G4Q_WD_FP8_PER_TENSOR, scale is ONE
 *              fp32 for the whole tensor (ModelOpt FP8 per-tensor weights).
 *       w[r, c] = fl32(E4M3(data[r, c]) · scale[r/128, c/128]).
 *
 *   G4Q_WF_INT4 (§5.2, §5.3): symmetric signed q in [-8, 7] stored as the nibble q + 8, eight
 *       nibbles per little-endian 32-bit word, the first element in bits 0..3. `group` inputs per
 *       scale (group % 8 == 0, cols % group == 0, cols % 8 == 0); scale_dtype F16, BF16 or F32.
 *       Default layout (compressed-tensors pack-quantized, "row-major"):
 *         data  int32 [rows, cols/8]      word [r, i] holds q[r, 8i .. 8i+7]
 *         scale scale_dtype [rows, cols/group]
 *       With G4Q_WD_INT4_GPTQ (GPTQ v1, "transposed"):
 *         data  int32 [cols/8, rows]      word [i, r] holds q[r, 8i .. 8i+7]
 *         scale scale_dtype [cols/group, rows]
 *         (qzeros are not passed: the loader accepts only the symmetric 0x77777777 words, i.e.
 *         zero point 8, and g_idx only as i / group.)
 *       w[r, c] = fl32((float)q · scale).
 */
typedef enum {
    G4Q_WF_BF16 = 0,
    G4Q_WF_NVFP4 = 1,
    G4Q_WF_FP8_BLOCK = 2,
    G4Q_WF_INT4 = 3,
    G4Q_WF_COUNT
} g4q_wformat;

/* g4q_weight_desc.flags */
#define G4Q_WD_GLOBAL_RECIPROCAL 1u /* NVFP4: scale2 is compressed-tensors' weight_global_scale */
#define G4Q_WD_FP8_PER_TENSOR 2u    /* FP8_BLOCK: scale is one fp32 for the whole tensor */
#define G4Q_WD_INT4_GPTQ 4u         /* INT4: GPTQ transposed layout */

/* Describes weight bytes in host memory to bind. Unused fields are 0 / NULL. The pointers may be
 * unaligned (safetensors data offsets are not aligned): backends read multi-byte values with
 * memcpy or copy them first. */
typedef struct g4q_weight_desc {
    g4q_wformat format;
    int64_t rows;          /* out features (1 for a norm weight vector) */
    int64_t cols;          /* in features (length of a norm weight vector) */
    const void *data;      /* format-specific packed elements, see g4q_wformat */
    const void *scale;     /* block / group scales (packed formats) */
    const void *scale2;    /* global/second-level scale (NVFP4): one fp32 */
    int group;             /* inputs per scale group (INT4), 0 otherwise */
    const char *name;      /* tensor name for messages; not owned */
    unsigned flags;        /* G4Q_WD_* */
    g4q_dtype scale_dtype; /* INT4: F16, BF16 or F32 scales; ignored otherwise */
    /* Engine emulation (src/quant/actq.h): the activation quantization the matmul applies to x
     * before multiplying, with its scale (the input scale for NVFP4 and FP8_TENSOR). NONE (0)
     * for a plain matmul. */
    g4q_actq act;
    float act_scale;
} g4q_weight_desc;

typedef struct g4q_buf g4q_buf;         /* defined by each backend */
typedef struct g4q_bweight g4q_bweight; /* defined by each backend */
typedef struct g4q_backend g4q_backend;
typedef struct g4q_graph g4q_graph; /* a recorded op sequence (graph_begin) */

struct g4q_backend {
    const char *name;    /* "cpu", "cuda" */
    g4q_dtype act_dtype; /* activation buffers and KV caches: F32 (cpu, cuda-fp32), BF16 (cuda) */
    g4q_ctx *ctx;        /* errors are reported here; not owned */
    void *state;         /* backend-private */

    /* Frees the backend and its state (buffers and weights must be freed before). */
    void (*destroy)(g4q_backend *be);

    /* ---- memory ---- */
    /* A buffer of `count` elements of dtype (F32 or BF16), uninitialised. */
    g4q_status (*buf_alloc)(g4q_backend *be, g4q_dtype dtype, size_t count, g4q_buf **out);
    void (*buf_free)(g4q_backend *be, g4q_buf *buf); /* NULL is a no-op */
    /* Copies host fp32 src[0..count) into buf elements [off, off+count), converting to the
     * buffer's dtype (round to nearest even for BF16). */
    g4q_status (*upload)(g4q_backend *be, g4q_buf *dst, size_t off, const float *src, size_t count);
    /* Copies buf elements [off, off+count) to host fp32 dst. Waits for pending work. */
    g4q_status (*download)(g4q_backend *be, const g4q_buf *src, size_t off, float *dst,
                           size_t count);
    /* dst rows [dst_row, dst_row+nrows) = src rows [src_row, ...), rows of `row_len` elements. */
    g4q_status (*copy_rows)(g4q_backend *be, g4q_buf *dst, size_t dst_row, const g4q_buf *src,
                            size_t src_row, size_t nrows, size_t row_len);

    /* Binds a weight (see the file comment for ownership). Unsupported formats give
     * G4Q_ERR_UNSUPPORTED naming desc->name; a desc inconsistent with its format (shape not a
     * multiple of the block, missing scale, bad group or scale_dtype, non-finite or non-positive
     * scale2) gives G4Q_ERR_INVALID naming it. Norm weights and the embedding table are BF16. */
    g4q_status (*weight_bind)(g4q_backend *be, const g4q_weight_desc *desc, g4q_bweight **out);
    void (*weight_free)(g4q_backend *be, g4q_bweight *w); /* NULL is a no-op */

    /* Deferred binding (optional: both members NULL or both set; NULL in CUDA's F32 mode). It
     * splits weight_bind into the part that must run on the backend's thread and the copy, which
     * another thread can do while the backend computes, so that a layer-streamed caller
     * (src/calib) moves the next layer's weights while the current layer runs.
     *
     * weight_bind_deferred: weight_bind for a BF16 desc without activation quantization (anything
     *   else: G4Q_ERR_UNSUPPORTED naming desc->name), with weight_bind's checks and errors; the
     *   weight's memory is allocated now (CUDA: device memory, counted in mem_peak), but no byte
     *   of desc->data is read yet. *out is PENDING: only weight_upload and weight_free may be
     *   given it. desc->data must stay valid and unchanged until weight_upload returned OK (and,
     *   as for weight_bind, on the CPU for the binding's lifetime).
     * weight_upload: copies a pending weight's bytes into place; afterwards it is an ordinary
     *   bound weight whose contents equal weight_bind's bit for bit. A weight that is not pending
     *   (uploaded already) is a no-op. It may run on another thread than the one using the
     *   backend, concurrently with any member except destroy, weight_free of this weight and a
     *   second weight_upload (at most one runs at a time per backend); it never touches be->ctx
     *   and reports errors (naming the weight) to `ctx`, the calling thread's own context. When
     *   it returns OK the copy is complete (CUDA: on the device, visible to every op enqueued
     *   after the return), so the caller only has to order that return before the weight's first
     *   use (e.g. pthread_join). On an error the weight stays pending (free it, or upload again).
     *   CPU: the weight points at desc->data as with weight_bind; the upload touches its pages
     *   (faults a mapped checkpoint in ahead of the matmuls). CUDA (BF16 mode): the bytes go
     *   through two small pinned host buffers on a copy stream of their own. */
    g4q_status (*weight_bind_deferred)(g4q_backend *be, const g4q_weight_desc *desc,
                                       g4q_bweight **out);
    g4q_status (*weight_upload)(g4q_backend *be, g4q_bweight *w, g4q_ctx *ctx);

    /* ---- ops ---- */
    /* y[n, rows(W)] = x[n, cols(W)] · Wᵀ, fp32 accumulation, W dequantized on the fly as
     * described at g4q_wformat (never expanded to a full-size copy). A weight bound with an
     * activation quantization (desc.act) computes y = alpha · (Q(x) · Wᵀ) with Q and alpha of
     * src/quant/actq.h, applied to each row of x (x itself is not modified).
     * CUDA (BF16 mode) runs rows beyond its GEMV sizes on tensor cores: the packed weight is
     * widened to bf16 a slice at a time (NVFP4 as E2M1 · E4M3, exact, with the global scale in
     * the GEMM's alpha; FP8 and INT4 values rounded to bf16 as Marlin-class kernels do) and Q(x)
     * is stored as bf16 (exact for NVFP4 and FP8_TENSOR; FP8_GROUP's q · d is rounded). */
    g4q_status (*matmul)(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                         int n);

    /* RMSNorm over each of `rows` rows of length n (Gemma 4 form, docs/gemma4.md §4.2):
     *   y = x · (mean(x²) + eps)^(-1/2) · w   computed in fp32; w is a bound [1, n] weight
     * applied as stored (x·w, not x·(1+w)), or NULL for no weight (v_norm). Per-head norms
     * (q/k/v_norm) pass rows = T·heads, n = head_dim. y may equal x (in place). */
    g4q_status (*rmsnorm)(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                          int rows, int n, float eps);

    /* Rotate-half RoPE in place on x[T, heads, hd] for positions pos0 .. pos0+T-1.
     * inv_freq: F32 buffer of hd/2 entries (zeros for unrotated angles). For angle i < hd/2:
     *   θ = fp32(fp32(p) · inv_freq[i]), c = cos θ, s = sin θ,
     *   y[i] = x[i]·c − x[i+hd/2]·s,  y[i+hd/2] = x[i+hd/2]·c + x[i]·s.
     * (CUDA in BF16 mode rounds c, s and each product/sum to bf16 as in §4.6.) */
    g4q_status (*rope)(g4q_backend *be, g4q_buf *x, const g4q_buf *inv_freq, int T, int heads,
                       int hd, int pos0);

    /* Attention of a chunk of T new tokens at positions n_past .. n_past+T-1 over the cache plus
     * the chunk itself; the cache is NOT modified (kv_store does that afterwards, which avoids the
     * chunked-prefill trap of docs/gemma4.md §5).
     *   q[T, nh, hd]; k_new, v_new [T, nkv, hd] (k after k_norm+RoPE, v after v_norm);
     *   kc, vc [cap, nkv, hd]: position p lives in slot p mod cap; the cached positions are
     *   max(0, n_past-cap) .. n_past-1;
     *   out[T, nh·hd], head-major (column h·hd + j).
     * Query head h uses KV head h / (nh/nkv). Key k is visible to query q iff k <= q and, when
     * window > 0, q − k < window. score = (q·k)·scale, softmax in fp32 over visible keys. */
    g4q_status (*attention)(g4q_backend *be, g4q_buf *out, const g4q_buf *q, const g4q_buf *k_new,
                            const g4q_buf *v_new, const g4q_buf *kc, const g4q_buf *vc, int cap,
                            int n_past, int T, int nh, int nkv, int hd, int window, float scale);

    /* Writes k_new, v_new [T, nkv, hd] for positions n_past .. n_past+T-1 into slots p mod cap of
     * kc, vc [cap, nkv, hd]. When T > cap only the last cap positions are kept. */
    g4q_status (*kv_store)(g4q_backend *be, g4q_buf *kc, g4q_buf *vc, const g4q_buf *k_new,
                           const g4q_buf *v_new, int cap, int n_past, int T, int nkv, int hd);

    /* GeGLU: y[i] = gelu_tanh(gate[i]) · up[i] for i < count, with
     * gelu_tanh(x) = 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))). y may equal gate or up. */
    g4q_status (*geglu)(g4q_backend *be, g4q_buf *y, const g4q_buf *gate, const g4q_buf *up,
                        size_t count);

    /* Residual: h[i] = (h[i] + a[i]) · scale for i < count (scale = layer_scalar or 1.0).
     * (CUDA in BF16 mode rounds the sum and then the product to bf16, two roundings, §4.3.) */
    g4q_status (*add_scaled)(g4q_backend *be, g4q_buf *h, const g4q_buf *a, size_t count,
                             float scale);

    /* Final logit soft-capping in place: x = tanh(x / cap) · cap. */
    g4q_status (*softcap)(g4q_backend *be, g4q_buf *x, size_t count, float cap);

    /* Embedding: y[t, :] = table[ids[t], :] · scale for t < T. ids are host memory and must
     * already be checked against rows(table); table is a bound [vocab, d] weight. */
    g4q_status (*embed)(g4q_backend *be, g4q_buf *y, const g4q_bweight *table, const int32_t *ids,
                        int T, float scale);

    /* FP8 KV-cache emulation in place: x[i] = fl32(E4M3_sat(x[i] / scale) · scale) for
     * i < count (src/quant/actq.h g4q_fp8_roundtrip), then rounded to the buffer's dtype. */
    g4q_status (*fp8_roundtrip)(g4q_backend *be, g4q_buf *x, size_t count, float scale);

    /* Next-token statistics of two models' logits on the same positions, for compare: a and b
     * are [rows, V] (act_dtype, after softcap), target[rows] the actual next ids (host memory,
     * each in [0, V)). Per row r, with P = softmax(a[r]) and Q = softmax(b[r]) in double over
     * log-sum-exp: out[r] = {KL(P || Q), −log P(target), −log Q(target), argmax a, argmax b}
     * (first index on ties), written to host memory. Deterministic: the same inputs give the
     * same bits. */
    g4q_status (*logit_stats)(g4q_backend *be, const g4q_buf *a, const g4q_buf *b,
                              const int32_t *target, int rows, int V, double (*out)[5]);

    /* The greedy choice over one row of logits x[0..n) (act_dtype), as g4q_sample_argmax
     * (src/runtime/sample.h) chooses on the downloaded row: *id = the index of the largest value
     * whose mask element is 0 (mask: F32 [n], non-zero = suppressed; NULL: none), the lowest
     * index on ties, -1 when nothing is selectable (every value masked or -inf); *nan_at = the
     * lowest index holding a NaN, masked or not, -1 if none. Waits for the result. */
    g4q_status (*argmax)(g4q_backend *be, const g4q_buf *x, size_t n, const g4q_buf *mask,
                         int32_t *id, int32_t *nan_at);

    /* *amax = max |x[i]| over i < count (0 for count 0; NaN propagates), returned to the host. */
    g4q_status (*amax)(g4q_backend *be, const g4q_buf *x, size_t count, float *amax);
    /* acc[index] = max(acc[index], max |x[i]| over i < count), queued on the backend without
     * waiting for it (amax above returns to the host and waits): calibration sums a layer's
     * sites this way and downloads them once. acc: an F32 buffer whose elements start >= 0
     * (e.g. uploaded zeros); a NaN in x makes acc[index] NaN, and it stays NaN. */
    g4q_status (*amax_into)(g4q_backend *be, const g4q_buf *x, size_t count, g4q_buf *acc,
                            size_t index);
    /* acc[c] = max(acc[c], max over r < rows of |x[r, c]|) for c < cols: the per-channel amax of
     * a Linear input x [rows, cols] (act_dtype), queued like amax_into, with its NaN rule per
     * element. acc: an F32 buffer of >= cols elements, each >= 0 (e.g. uploaded zeros). */
    g4q_status (*col_amax_into)(g4q_backend *be, const g4q_buf *x, int rows, int cols,
                                g4q_buf *acc);

    /* H [n, n] = xᵀ·x (accumulate 0) or H += xᵀ·x (accumulate 1) over the `rows` rows of x
     * [rows, n]: the input Hessian Σ x·xᵀ of a Linear (src/calib), held as quant.h's g4q_hess
     * of n inputs with block g4q_hess_block(n, block). H is an F32 buffer of at least
     * g4q_hess_count(n, block) elements; x has act_dtype. Products are exact in fp32 for bf16
     * inputs; sums are fp32.
     * block 0 (or >= n): every entry, [n, n], both triangles written (exactly symmetric).
     * block b in [1, n): only the diagonal b x b blocks (entries with i / b == j / b; the last
     * block is shorter when b does not divide n), compact as g4q_hess says, each block exactly
     * symmetric: for a consumer that reads no more (the weighted scale searches, quant.h),
     * O(rows·n·b) work and n·b floats instead of O(rows·n²) and n². The padding past n is set
     * to 0 (accumulate 0) or left as it is (accumulate 1).
     * CPU: every entry adds its rows in order to the stored value (deterministic, any thread
     * count), so a block entry is bit-identical to the same entry of the full product. CUDA: one
     * cuBLAS GEMM (CUBLAS_COMPUTE_32F, beta = accumulate), for blocks a strided batched GEMM
     * over the diagonal blocks (plus one for a shorter last block): deterministic on one GPU, but
     * summed in another order than the CPU's. */
    g4q_status (*gram)(g4q_backend *be, g4q_buf *H, const g4q_buf *x, int rows, int n, int block,
                       int accumulate);

    /* ---- reporting (may be NULL) ---- */
    /* Peak bytes of backend memory held at once since creation (buffers, weights, workspaces):
     * device memory for CUDA. NULL where the backend does not track it (the CPU backend). */
    size_t (*mem_peak)(g4q_backend *be);

    /* ---- decode steps (all may be NULL; the model then uses the ops above) ----
     * Fused ops compute exactly what the sequence of plain ops in their comment computes, with
     * the same bf16 rounding points (docs/gemma4.md §4.9); only fp32 summation orders may differ.
     * They exist to cut kernel launches per decode token. */

    /* y0 = x·W0ᵀ, y1 = x·W1ᵀ and (W2 non-NULL) y2 = x·W2ᵀ for n rows of x: three matmuls in one
     * pass (q/k/v). All weights have the same cols. */
    g4q_status (*matmul3)(g4q_backend *be, const g4q_buf *x, int n, g4q_buf *y0,
                          const g4q_bweight *w0, g4q_buf *y1, const g4q_bweight *w1, g4q_buf *y2,
                          const g4q_bweight *w2);

    /* y = geglu(x·Wgᵀ, x·Wuᵀ) for n rows ([n, rows(Wg)]); tmp [n, rows(Wu)] is scratch the
     * backend may use for x·Wuᵀ. Equals matmul(y, Wg); matmul(tmp, Wu); geglu(y, y, tmp). */
    g4q_status (*matmul_geglu)(g4q_backend *be, g4q_buf *y, g4q_buf *tmp, const g4q_buf *x,
                               const g4q_bweight *wg, const g4q_bweight *wu, int n);

    /* Per-head norms and RoPE of the attention inputs q[T, nh, hd], k, v [T, nkv, hd], in place:
     *   v = rmsnorm(v_from_k ? k : v, NULL)        (v_from_k: the RAW k, before k_norm)
     *   q = rope(rmsnorm(q, qw)), k = rope(rmsnorm(k, kw))    at positions pos0 .. pos0+T-1
     * i.e. rmsnorm(v, ..., T·nkv, hd); rmsnorm(q, q, qw, T·nh, hd); rmsnorm(k, k, kw, T·nkv, hd);
     * rope(q, inv_freq, T, nh, hd, pos0); rope(k, ...). pos0 may be G4Q_STEP_POS. */
    g4q_status (*qkv_norm_rope)(g4q_backend *be, g4q_buf *q, g4q_buf *k, g4q_buf *v, int v_from_k,
                                const g4q_bweight *qw, const g4q_bweight *kw,
                                const g4q_buf *inv_freq, int T, int nh, int nkv, int hd, int pos0,
                                float eps);

    /* The residual update between two norms, per row of n (rows rows):
     *   a = rmsnorm(a, w_post); h = (h + a) · scale; out = rmsnorm(h, w_next)
     * i.e. rmsnorm(a, a, w_post); add_scaled(h, a, rows·n, scale); rmsnorm(out, h, w_next).
     * out NULL (w_next ignored) skips the last norm. out may equal a; a's contents are undefined
     * afterwards unless out == a. */
    g4q_status (*norm_add_norm)(g4q_backend *be, g4q_buf *h, g4q_buf *a, const g4q_bweight *w_post,
                                float scale, g4q_buf *out, const g4q_bweight *w_next, int rows,
                                int n, float eps);

    /* attention(out, q, k_new, v_new, kc, vc, cap, n_past, T, ...) followed by
     * kv_store(kc, vc, k_new, v_new, cap, n_past, T, nkv, hd): the new chunk is attended to and
     * then stored in the cache. */
    g4q_status (*attention_store)(g4q_backend *be, g4q_buf *out, const g4q_buf *q,
                                  const g4q_buf *k_new, const g4q_buf *v_new, g4q_buf *kc,
                                  g4q_buf *vc, int cap, int n_past, int T, int nh, int nkv, int hd,
                                  int window, float scale);

    /* Step position: sets the device-side position that rope (pos0), attention and kv_store
     * (n_past) use when passed G4Q_STEP_POS instead of a position. Enqueued in order with the
     * ops, so a recorded graph that reads it serves every step. attention and kv_store accept
     * G4Q_STEP_POS only for T == 1. */
    g4q_status (*step_pos)(g4q_backend *be, int n_past);

    /* Graph capture of an op sequence. graph_begin starts recording: the ops after it are only
     * recorded (nothing runs, no op may download, amax or embed) until graph_end returns the
     * recording in *out. graph_launch runs it; when device memory was freed since the recording
     * (buffers the recording points into may be gone) it runs nothing and sets *stale = 1
     * (0 otherwise): free the graph and record again. A failed graph_begin/graph_end leaves no
     * recording open. */
    g4q_status (*graph_begin)(g4q_backend *be);
    g4q_status (*graph_end)(g4q_backend *be, g4q_graph **out);
    g4q_status (*graph_launch)(g4q_backend *be, g4q_graph *g, int *stale);
    void (*graph_free)(g4q_backend *be, g4q_graph *g); /* NULL is a no-op */
};

/* Position argument meaning "the backend's step position" (backend member step_pos). */
#define G4Q_STEP_POS (-1)

/* "bf16", "nvfp4", "fp8_block", "int4". */
const char *g4q_wformat_name(g4q_wformat f);

/* Checks desc's activation quantization (act, act_scale) for weight_bind: G4Q_ERR_INVALID naming
 * `backend` and the weight for an unknown mode, a scale that is not finite and > 0 where the mode
 * uses one, or NVFP4 activations with in features not a multiple of 16. */
g4q_status g4q_weight_desc_check_act(g4q_ctx *ctx, const char *backend, const g4q_weight_desc *d);

/* The CPU reference of logit_stats for one row: a, b [V] fp32, out as logit_stats describes
 * (maxima first, then Σ exp in double in index order, KL summed in index order). */
void g4q_logit_row_stats(const float *a, const float *b, int V, int32_t target, double out[5]);

/* Frees a backend (be->destroy); NULL is a no-op. */
void g4q_backend_free(g4q_backend *be);

#ifdef __cplusplus
}
#endif
#endif
