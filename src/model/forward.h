/*
 * The Gemma 4 text forward pass (docs/gemma4.md §4), written once against backend.h.
 *
 * A g4q_forward binds a model's weights to a backend and holds the scratch activations for
 * chunks of up to max_chunk tokens. g4q_forward_run() takes T tokens at absolute positions
 * kv->n_past .. kv->n_past+T-1 (0-based; <bos> is position 0), runs them through all layers in
 * chunks of at most max_chunk tokens, appends their K/V to the cache and returns the logits.
 * Prefill is one call with the prompt; decode is one call per token with T = 1. Both go through
 * the same code, so prefill + decode equals one long prefill up to the GEMM reduction order.
 *
 * Per layer (§4.3, §4.5): input_layernorm; q/k(/v) projections; per-head q_norm, k_norm (learned)
 * and v_norm (no weight) where v comes from v_proj on sliding layers and from the RAW k_proj
 * output on k_eq_v full layers; RoPE on q and k with the layer type's inv_freq table; attention
 * with scale 1.0 over the cache plus the chunk (causal; sliding layers also q - k < window),
 * THEN the chunk is stored in the cache; o_proj; post_attention_layernorm; residual add;
 * pre_feedforward_layernorm; down(gelu_tanh(gate) * up); post_feedforward_layernorm; residual
 * add; the whole residual stream times layer_scalar. Then the final norm, logits = h · Eᵀ with
 * the tied embedding E, and tanh soft-capping at final_logit_softcapping.
 *
 * Numerics follow the backend: the CPU backend computes everything in fp32 without bf16
 * rounding of activations (to compare against transformers run in fp32).
 *
 * RoPE tables are built exactly as transformers does in fp32 (§4.6):
 *   inv_freq[i] = 1.0f / powf(theta_f32, (float)(2i) / (float)hd)   for i < rope_angles,
 *   inv_freq[i] = 0                                                  for rope_angles <= i < hd/2,
 * i.e. torch's 1.0 / (base ** (arange(0, 2n, 2, int64).float() / dim)) with C float arithmetic
 * (powf may differ from torch's pow by an ulp on some entries). The proportional (full) layers
 * use the full head dim (512) as the denominator.
 */
#ifndef G4Q_MODEL_FORWARD_H
#define G4Q_MODEL_FORWARD_H

#include <stdint.h>

#include "backend/backend.h"
#include "model/config.h"
#include "model/weights.h"
#include "model/kvcache.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_forward g4q_forward;

/* Binds every text weight of `w` to `be` (all BF16) and allocates scratch for chunks of
 * max_chunk >= 1 tokens. cfg, w and the tensor data must outlive the result; be too. Tensor
 * problems (NULL slot, wrong dtype or element count) give G4Q_ERR_SHAPE naming the tensor. */
g4q_status g4q_forward_create(g4q_ctx *ctx, g4q_backend *be, const g4q_config *cfg,
                              const g4q_weights *w, int max_chunk, g4q_forward **out);

/* Called by g4q_forward_create_q after the embedding and final norm, then after each layer, have
 * been bound: e.g. a caller whose backend keeps its own copy of the weights drops the host pages
 * they were read from, so that host memory holds about one layer at a time. */
typedef struct g4q_bind_hook {
    void (*fn)(void *user);
    void *user;
} g4q_bind_hook;

/* g4q_forward_create for a checkpoint with quantized Linears (src/model/qlinear.h): each
 * projection whose ql entry is not G4Q_QL_BF16 is bound from its packed descriptor (the
 * backend's weight_bind; a backend without that format gives G4Q_ERR_UNSUPPORTED naming the
 * module), the others from w as BF16. ql (NULL = all BF16) and the tensor data it points into
 * must outlive the result. hook may be NULL. */
typedef struct g4q_qlinears g4q_qlinears;
g4q_status g4q_forward_create_q(g4q_ctx *ctx, g4q_backend *be, const g4q_config *cfg,
                                const g4q_weights *w, const g4q_qlinears *ql,
                                const g4q_bind_hook *hook, int max_chunk, g4q_forward **out);

void g4q_forward_free(g4q_forward *f); /* NULL is a no-op */

/* Layer-streamed use, for calibrating a model larger than the device memory one layer at a time
 * (src/calib/calibrate.c): the caller keeps the residual stream of every sequence in its own
 * buffers and runs the model layer by layer, binding each layer's weights only while it runs.
 *
 * g4q_forward_create_streamed binds the embedding and the final norm (all BF16, the checkpoint
 * fully BF16) and no layer; g4q_forward_run refuses such a forward (G4Q_ERR_INVALID).
 * g4q_forward_bind_layer / g4q_forward_release_layer bind and free layer l's weights (binding a
 * bound layer is a no-op); g4q_forward_release_embed frees the embedding once every sequence is
 * embedded. g4q_forward_embed writes the scaled embeddings of ids[0..T) into h [T, hidden]
 * (act_dtype, T <= max_chunk). g4q_forward_layer runs bound layer l on the residual rows h
 * [T, hidden] in place (T <= max_chunk) at positions kv->n_past .. kv->n_past+T-1, storing their
 * K/V in layer l's cache and calling the observer at layer l's sites; it leaves kv->n_past alone
 * (the other layers have not run). One sequence run through every layer this way computes what
 * g4q_forward_run computes for it when max_chunk covers it, except that each layer's input norm
 * is the plain rmsnorm op (a backend's fused norm_add_norm may sum in another order). */
g4q_status g4q_forward_create_streamed(g4q_ctx *ctx, g4q_backend *be, const g4q_config *cfg,
                                       const g4q_weights *w, int max_chunk, g4q_forward **out);
g4q_status g4q_forward_bind_layer(g4q_forward *f, int l);
/* Binds layer l (which must not be bound) from lw instead of the forward's own weights, all
 * BF16 (sequential calibration runs a layer again with its quantized-dequantized Linears);
 * lw's tensors must outlive the binding (the CPU backend keeps pointers). */
g4q_status g4q_forward_bind_layer_from(g4q_forward *f, int l, const g4q_layer_weights *lw);
void g4q_forward_release_layer(g4q_forward *f, int l);
void g4q_forward_release_embed(g4q_forward *f);

/* Staged binding: the next layer's weights are copied while the current layer runs.
 *
 * g4q_forward_stage_layer binds layer l (not bound; no other layer staged; a layer-streamed
 * forward, else G4Q_ERR_INVALID) through the backend's weight_bind_deferred: shapes are checked
 * and backend memory is allocated now, on the caller's thread, but nothing is copied. On a backend
 * without deferred binding it does nothing (returns OK; g4q_forward_staged stays -1) and
 * g4q_forward_bind_layer binds the plain way later. On an error nothing stays staged.
 * g4q_forward_stage_upload copies the staged layer's bytes into place (weight_upload; nothing
 * staged: OK). It may run on ANOTHER thread while the caller goes on using f and its backend for
 * other layers (g4q_forward_layer, binding and releasing other layers), as long as nothing touches
 * the staged layer (no bind, release, stage or free of f) until it has returned and the caller has
 * synchronised with it (pthread_join); errors go to ctx, that thread's context, which must not be
 * f's. The copied bytes are those g4q_forward_bind_layer would bind: results are identical.
 * g4q_forward_bind_layer on the staged layer completes it (uploads, on the calling thread,
 * whatever stage_upload did not, so stage_upload is optional) and makes it bound; on an error the
 * layer is released. g4q_forward_release_layer of the staged layer frees it unbound.
 * g4q_forward_layer refuses a staged layer. The staged layer takes backend memory like a bound
 * one, so staging l + 1 while l is bound holds two layers' weights. */
g4q_status g4q_forward_stage_layer(g4q_forward *f, int l);
g4q_status g4q_forward_stage_upload(g4q_forward *f, g4q_ctx *ctx);
/* The staged layer, or -1 when none. */
int g4q_forward_staged(const g4q_forward *f);
g4q_status g4q_forward_embed(g4q_forward *f, const int32_t *ids, int T, g4q_buf *h);
g4q_status g4q_forward_layer(g4q_forward *f, g4q_kvcache *kv, int l, g4q_buf *h, int T);
/* 1 for a forward made by g4q_forward_create_streamed. */
int g4q_forward_streamed(const g4q_forward *f);

/* Runs ids[0..T) (T >= 1) at positions kv->n_past .. and advances kv->n_past by T. kv must have
 * been created for the same config and backend, with room for n_past + T positions
 * (G4Q_ERR_INVALID otherwise, nothing run). Token ids outside [0, vocab) are G4Q_ERR_INVALID.
 * logits (host memory, may be NULL to only fill the cache) receives fp32 values after softcap:
 * [T, vocab] row t for position n_past + t, or with last_only just [vocab] for the last one.
 * On an error during the run the cache contents are undefined (reset it). */
g4q_status g4q_forward_run(g4q_forward *f, g4q_kvcache *kv, const int32_t *ids, int T,
                           int last_only, float *logits);

/* One greedy decode step on the device: runs token id like g4q_forward_run(f, kv, &id, 1, 1,
 * logits) and, instead of downloading the logits, picks from them with the backend's argmax:
 * *next is what g4q_sample_argmax(logits, vocab, mask) gives on the downloaded row (-1: nothing
 * selectable), *nan_at the lowest id whose logit is NaN (-1 if none). mask: [vocab] bytes,
 * non-zero = suppressed, or NULL; uploaded again whenever its contents change. Backends without
 * argmax or step positions, and a forward with an observer, give G4Q_ERR_UNSUPPORTED before
 * anything runs (use g4q_forward_run and the host sampler). */
g4q_status g4q_forward_step_greedy(g4q_forward *f, g4q_kvcache *kv, int32_t id,
                                   const uint8_t *mask, int32_t *next, int32_t *nan_at);

/* Runs ids[0..T) (1 <= T <= max_chunk) like g4q_forward_run and leaves the logits of every row on
 * the backend: logits is a buffer of this backend with room for [T, vocab] act_dtype values
 * (after softcap), row t for position n_past + t. For scoring on the device (compare). */
g4q_status g4q_forward_run_logits(g4q_forward *f, g4q_kvcache *kv, const int32_t *ids, int T,
                                  g4q_buf *logits);
/* FP8 KV-cache emulation (docs/formats.md §7): with k_scale/v_scale [n_layers] (finite, > 0)
 * every chunk's K and V are rounded through E4M3 at the cache-write point, k = fl32(E4M3(k / ks)
 * · ks) (backend op fp8_roundtrip), before they are attended to and stored, as an engine with an
 * FP8 cache computes. NULL turns it off. The backend must have fp8_roundtrip
 * (G4Q_ERR_UNSUPPORTED otherwise). */
g4q_status g4q_forward_set_kv_fp8(g4q_forward *f, const float *k_scale, const float *v_scale);
/* Decode steps (T == 1) on a backend with step positions and graphs (CUDA) are recorded once per
 * KV cache and replayed; on (the default) or off (every op launched one by one, same results
 * bit for bit). */
void g4q_forward_set_graphs(g4q_forward *f, int on);

/* Observation sites of the forward pass (for calibration, src/calib/calibrate.h). Each is a
 * buffer of `rows` tokens x `cols` values (act_dtype, rows = the chunk's tokens) as it is about to
 * be consumed:
 *   ATTN_IN   input of q/k/v_proj: input_layernorm(h)                       [C, hidden]
 *   O_IN      input of o_proj: the attention output                          [C, heads * hd]
 *   MLP_IN    input of gate/up_proj: pre_feedforward_layernorm(h)            [C, hidden]
 *   DOWN_IN   input of down_proj: gelu_tanh(gate) * up                       [C, intermediate]
 *   K         keys at the cache-write point: rope(k_norm(k_proj x))          [C, kv_heads * hd]
 *   V         values at the cache-write point: v_norm(v_proj x), or v_norm of the raw k_proj
 *             output on k_eq_v (full) layers                                 [C, kv_heads * hd] */
#define G4Q_OBS_SITE_TABLE(X)                                                                      \
    X(G4Q_OBS_ATTN_IN, "attn_in")                                                                  \
    X(G4Q_OBS_O_IN, "o_in")                                                                        \
    X(G4Q_OBS_MLP_IN, "mlp_in")                                                                    \
    X(G4Q_OBS_DOWN_IN, "down_in")                                                                  \
    X(G4Q_OBS_K, "k")                                                                              \
    X(G4Q_OBS_V, "v")
#define G4Q_X_ENUM(e, s) e,
typedef enum { G4Q_OBS_SITE_TABLE(G4Q_X_ENUM) G4Q_OBS_COUNT } g4q_obs_site;
#undef G4Q_X_ENUM

/* "attn_in", ...; "?" out of range. */
const char *g4q_obs_site_name(g4q_obs_site s);

/* A callback invoked at every site of every layer run (g4q_forward_run, g4q_forward_layer), in
 * layer order and, within a layer, in the order ATTN_IN, K, V, O_IN, MLP_IN, DOWN_IN. x is valid only during the call and
 * must not be modified; the callback may run backend ops that read it (be->amax). A non-OK return
 * stops the run and is passed on. */
typedef struct g4q_forward_observer {
    g4q_status (*fn)(void *user, int layer, g4q_obs_site site, const g4q_buf *x, int rows,
                     int cols);
    void *user;
} g4q_forward_observer;

/* Installs obs (copied; NULL removes it). While one is installed, T == 1 runs take the chunked
 * path instead of recorded decode graphs (same results), since observers read buffers. */
void g4q_forward_set_observer(g4q_forward *f, const g4q_forward_observer *obs);

/* Fills inv_freq[0 .. lc->head_dim/2) with the layer's RoPE table as described above. */
void g4q_forward_rope_table(const g4q_layer_config *lc, float *inv_freq);

#ifdef __cplusplus
}
#endif
#endif
