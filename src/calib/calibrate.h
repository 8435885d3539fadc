/*
 * Activation calibration (max): runs calibration samples through the BF16 model and keeps, per
 * decoder layer, the running max of |x| at every observation site of the forward pass
 * (src/model/forward.h: the inputs of q/k/v, o, gate/up and down, and K/V at the cache-write
 * point). This is ModelOpt's "max" calibration observed on the unquantized model: every layer sees
 * the BF16 model's activations, never quantized ones. Optionally (g4q_calib_hooks) it also sums
 * each layer's Linear input Hessians and hands them to a hook when the layer is done (the one
 * pass of GPTQ and Hessian-weighted scale search, src/pipeline/quantize.h), and in sequential
 * mode calibrates each layer on the quantized model's outputs of the layers before it.
 *
 * Semantics (what the recipe's numbers mean here):
 *   - every token of every sample counts, the <bos> at position 0 included; samples are exactly
 *     seq_len real tokens (src/calib/dataset.h), so there is no padding to exclude;
 *   - each sample runs on its own from position 0 with an empty KV cache (causal attention sees
 *     only its own sample), as one chunk;
 *   - the model runs layer by layer (g4q_forward_layer): all samples are embedded into buffers
 *     of their own, then each layer is bound, run over every sample and freed, so the device
 *     holds one layer's weights (two while the next is copied ahead, see "Weights") plus
 *     samples x seq_len x hidden activations (4 GB in bf16 for the 12B at 512 x 1024), never
 *     the whole model. Per sample this computes what a whole-model forward computes (bit for
 *     bit on the CPU backend, where no op is fused);
 *   - Weights: layer 0 is bound before its run; every later layer l + 1 is staged while layer l
 *     is bound (backend memory allocated: the device holds two layers' weights at once) and
 *     copied by a helper thread (pthreads) while layer l runs (g4q_forward_stage_layer /
 *     g4q_forward_stage_upload, backend weight_bind_deferred / weight_upload); the thread is
 *     joined before layer l is released, its errors are returned as g4q_calib_run's, and no
 *     thread outlives the call. Only the moment of the copy changes, not the bytes: results are
 *     identical to binding each layer when its turn comes (what a backend without deferred
 *     binding, e.g. CUDA's F32 mode, does). Sequential mode binds the hook's replacement weights
 *     the plain way;
 *   - samples run one after another; calibration.batch does not change the result (the amax is a
 *     max over tokens, independent of how samples are grouped) and is recorded in the manifest;
 *   - the amax of a site is the backend's amax of the activation buffer (act_dtype: fp32 on the
 *     CPU backend, bf16 on CUDA), so CPU and GPU exports can differ in the last bits of
 *     input_scale; on one device the result is deterministic (any thread count).
 */
#ifndef G4Q_CALIB_CALIBRATE_H
#define G4Q_CALIB_CALIBRATE_H

#include <stdint.h>

#include "calib/dataset.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/weights.h"
#include "quant/quant.h"
#include "runtime/session.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_calib_result {
    int n_layers;
    float amax[G4Q_MAX_LAYERS][G4Q_OBS_COUNT];     /* max |x| per layer and site */
    uint64_t tokens[G4Q_MAX_LAYERS][G4Q_OBS_COUNT]; /* tokens (rows) observed there */
    uint64_t total_tokens;                          /* samples * seq_len */
    double seconds;
    /* Of `seconds`, the time the calibrating thread spent binding weights, i.e. on the critical
     * path (see "Weights" above): layer 0's bind, each later layer's staging (allocation) and any
     * wait for its copy, and in sequential mode the rebinding with the hook's weights. */
    double bind_seconds;
    /* The prefetch thread's time copying layers 1 .. n_layers-1 ahead, beside the layers' runs
     * (overlapped, so not on the critical path except where bind_seconds waited for it); 0 on a
     * backend without deferred binding. */
    double prefetch_seconds;
    /* Identity of the data, for the manifest (copied from g4q_calib_data). */
    char dataset[256];
    char text_sha256[G4Q_SHA256_HEX];
    char ids_sha256[G4Q_SHA256_HEX];
    int samples, seq_len, batch;
    uint64_t seed;
    char device[16];
    size_t peak_device_bytes; /* the backend's peak memory during the run (0: not tracked) */
    int sequential;           /* layers were calibrated on the quantized model's outputs */
} g4q_calib_result;

/* One decoder layer's statistics beyond the amaxes, handed to g4q_calib_hooks.layer_done once the
 * layer has seen every sample. */
typedef struct g4q_calib_layer {
    int layer;
    /* For the sites in hooks->hessian_sites: H = Σ x·xᵀ over every calibration token x of the
     * input of each Linear site (ATTN_IN: q/k/v; O_IN; MLP_IN: gate/up; DOWN_IN), accumulated
     * on the backend in fp32 (backend.h gram: in token order on the CPU, one cuBLAS GEMM per
     * sample on CUDA) and downloaded to host memory, held as quant.h's g4q_hess: n inputs,
     * block g4q_hess_block(n, hooks->hessian_block[site]) (every entry, or the diagonal blocks
     * alone); hess[site].h NULL elsewhere. Valid only during the call. */
    g4q_hess hess[G4Q_OBS_COUNT];
    uint64_t tokens; /* tokens each Hessian sums */
    /* For the sites in hooks->sample_sites: act[site] = act_rows[site] rows of the site's
     * activations (fp32 [act_rows, act_dim] row-major: the backend's values widened), taken from
     * the samples as g4q_calib_sample_span says, and col_amax[site] [act_dim] = max |x_c| per input
     * channel over every calibration token. Host memory valid only during the call; NULL elsewhere. */
    const float *act[G4Q_OBS_COUNT];
    const float *col_amax[G4Q_OBS_COUNT];
    int act_rows[G4Q_OBS_COUNT], act_dim[G4Q_OBS_COUNT];
} g4q_calib_layer;

/* What g4q_calib_run does beyond the amaxes (all zero: amaxes only). */
typedef struct g4q_calib_hooks {
    /* Linear input sites whose Hessians each layer accumulates (g4q_calib_layer), as a mask of
     * 1u << site over ATTN_IN, O_IN, MLP_IN, DOWN_IN; 0: none. Only the sites asked for are
     * computed (the down_proj input's Hessian is the widest by far). */
    unsigned hessian_sites;
    /* Per site, the part of its Hessian that is summed and handed over (backend.h gram's
     * block): 0, every entry; b > 0, only the diagonal b x b blocks. For sites whose
     * consumers read no more (the weighted scale searches read the diagonal or blocks of 16 or
     * 128): the work per sample falls from O(tokens·n²) to O(tokens·n·b), and the memory
     * moved per layer from n² floats to n·b. */
    int hessian_block[G4Q_OBS_COUNT];
    /* Linear input sites whose activations each layer samples (g4q_calib_layer.act, col_amax), a
     * mask as hessian_sites, and the rows to sample per site (> 0 when the mask is not 0). */
    unsigned sample_sites;
    int sample_rows;
    /* Sequential mode (GPTQ's): layer_done must fill *replace with the layer's weights as the
     * quantized model has them (BF16 tensors: the dequantized Linears, the rest unchanged), and
     * the layer is run again on its inputs with them, so that layer l+1 is calibrated on the
     * quantized model's outputs of layer l. Off (ModelOpt's semantics, the default): every
     * layer sees the BF16 model's activations. replace's tensors must stay valid until the next
     * layer_done call or the end of g4q_calib_run. Costs a second pass over each layer and a
     * copy of the residual stream (samples x seq_len x hidden activations). */
    int sequential;
    /* Called after each layer (may be NULL unless sequential); replace is NULL unless
     * sequential. An error stops the run and is returned. */
    g4q_status (*layer_done)(void *user, const g4q_calib_layer *layer,
                             g4q_layer_weights *replace);
    void *user;
} g4q_calib_hooks;

/* Runs every sample of d through s and fills *out. s is a BF16 session (s->qlin all BF16) opened
 * with stream_layers and max_chunk >= seq_len, else G4Q_ERR_INVALID; its embedding is released
 * and its KV cache (re)reserved to seq_len positions. batch is only recorded (see above); hooks
 * may be NULL. A progress bar counts layers. Errors: those of the forward pass and the hooks; the
 * activations not fitting (naming their size); G4Q_ERR_NUMERIC if an amax is NaN or infinite
 * (naming layer and site). */
g4q_status g4q_calib_run(g4q_ctx *ctx, g4q_session *s, const g4q_calib_data *d, int batch,
                         const g4q_calib_hooks *hooks, g4q_calib_result *out);

/* The rows of sample j (of `samples`, each seq_len tokens) that calibration samples for
 * g4q_calib_layer.act when `rows` rows are asked for in all: [*first, *first + *count), spread
 * deterministically over the positions; *count is 0 for the samples after the quota is filled.
 * The sampled rows of all samples together number min(rows, samples * seq_len). */
void g4q_calib_sample_span(int j, int samples, int seq_len, int rows, int *first, int *count);

/* The observation site whose buffer is the input of a Linear of this role (Q/K/V_PROJ: ATTN_IN,
 * O_PROJ: O_IN, GATE/UP_PROJ: MLP_IN, DOWN_PROJ: DOWN_IN), or -1 for other roles. */
int g4q_calib_site_of_role(g4q_weight_role role);

/* The input amax of the Linear `module` (layer, role). G4Q_ERR_NEEDS_CALIBRATION naming the module
 * when it has no site (e.g. a multimodal Linear) or saw no tokens: scales are never invented. */
g4q_status g4q_calib_input_amax(g4q_ctx *ctx, const g4q_calib_result *r, int layer,
                                g4q_weight_role role, const char *module, float *amax);

/* The amax of K or V (site G4Q_OBS_K / G4Q_OBS_V) of a layer, with the same no-token error. */
g4q_status g4q_calib_kv_amax(g4q_ctx *ctx, const g4q_calib_result *r, int layer,
                             g4q_obs_site site, float *amax);

/* The calibration as a cJSON object for the manifest (dataset, sha256s, samples, seq_len, batch,
 * seed, tokens, device, and "amax": {site name: [per-layer amax]}); NULL when out of memory.
 * Caller owns it. */
struct cJSON *g4q_calib_to_cjson(const g4q_calib_result *r);

#ifdef __cplusplus
}
#endif
#endif
