/*
 * A runtime session: one model folder opened for inference (config, checkpoint mapping, bound
 * weights, a backend on the chosen device, the forward pass, a KV cache, the tokenizer and the
 * generation settings). It is what gemma4q-run's generate / ppl / logits subcommands stand on.
 *
 * Files read from DIR:
 *   config.json              required (src/model/config.h)
 *   model.safetensors[.index.json] + shards, required: a BF16 model or a quantized export
 *                            (ModelOpt NVFP4 / W4A16_NVFP4 / FP8 / fp8_pb_wo, compressed-tensors
 *                            nvfp4-pack-quantized / pack-quantized, GPTQ v1). The stored form of
 *                            each Linear is detected from its tensors (src/model/qlinear.h), not
 *                            from the JSON; packed weights stay packed and are dequantized
 *                            inside the backend's GEMM.
 *   tokenizer.json           optional: s->tok is NULL when absent
 *   generation_config.json   optional: "eos_token_id" (int or list) gives the stop ids (else the
 *                            config's eos id), "suppress_tokens" the ids masked before sampling
 *                            (ids outside [0, vocab) are ignored, docs/gemma4.md §7.4)
 * Engine numerics (opts.emulate, docs/formats.md §9): a quantized checkpoint runs as an engine
 * runs it on the chosen GPU generation; every Linear's activation quantization is set on its
 * weight descriptor (backend.h, src/quant/actq.h) and the KV cache is rounded through FP8:
 *   NONE   weight-only everywhere (activations and the KV cache in the backend's dtype).
 *   SM90   Hopper as vLLM runs each format: NVFP4 weight-only (Marlin; input scales ignored),
 *          INT4 weight-only, fp8_pb_wo as W8A8 with dynamic per-token 1x128 FP8 activations,
 *          FP8 per-tensor with an input_scale as static W8A8; an FP8 KV cache when declared.
 *   SM100  Blackwell: as SM90, and NVFP4 Linears with an input scale quantize their
 *          activations to NVFP4 (W4A4) with it as the global scale.
 *   AUTO   the export's own target: SM100 when a Linear is NVFP4 W4A4, else SM90 when anything
 *          is quantized or an FP8 KV cache is declared, else NONE.
 * "An FP8 KV cache is declared": hf_quant_config.json kv_cache_quant_algo "FP8", or
 * config.json quantization_config.kv_cache_scheme / kv_cache_quant_algo set. Its scales are the
 * checkpoint's k_scale / v_scale per layer, 1.0 where absent (a cast cache). The mode used and
 * what it does are said once on stderr (INFO).
 * A folder that declares a quantization but stores every Linear BF16 runs as BF16 with a
 * warning.
 *
 * Device: "auto" takes the CUDA GPU when one is usable (src/backend/device.h), else the CPU
 * backend; "cuda" creates src/backend/cuda/cuda_backend.h's backend (G4Q_ERR_CUDA without a usable
 * GPU; G4Q_ERR_UNSUPPORTED in builds without CUDA).
 * Precision: AUTO is the device's own (bf16 on CUDA, fp32 on the CPU); F32 on CUDA creates its
 * F32 mode (fp32 activations, weights widened to fp32: twice the device memory, BF16 checkpoints
 * only); BF16 on the CPU backend, which computes in fp32 only, is G4Q_ERR_UNSUPPORTED.
 *
 * Threading: a session is used by one thread at a time.
 */
#ifndef G4Q_RUNTIME_SESSION_H
#define G4Q_RUNTIME_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "backend/device.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/qlinear.h"
#include "model/weights.h"
#include "model/kvcache.h"
#include "text/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define G4Q_SESSION_MAX_IDS 64 /* stop ids / suppressed ids kept at most */

/* Numeric precision of the forward pass (see "Precision" above). */
typedef enum {
    G4Q_PRECISION_AUTO = 0, /* bf16 on CUDA, fp32 on the CPU */
    G4Q_PRECISION_BF16 = 1, /* CUDA only: the bf16 reference's rounding points */
    G4Q_PRECISION_F32 = 2   /* CPU, or CUDA's F32 mode */
} g4q_precision;

/* Engine numerics (see "Engine numerics" above). */
typedef enum {
    G4Q_EMULATE_AUTO = 0,
    G4Q_EMULATE_NONE = 1,
    G4Q_EMULATE_SM90 = 2,
    G4Q_EMULATE_SM100 = 3
} g4q_emulate;

typedef struct g4q_session_opts {
    g4q_device_kind device;  /* requested device: AUTO, CPU or CUDA */
    int max_chunk;           /* tokens per forward chunk (scratch size); 0 = 256 */
    g4q_precision precision; /* requested precision; AUTO (0) = the device's own */
    int stream_layers;       /* bind no layer: a layer-streamed forward (src/model/forward.h),
                                for calibration; the checkpoint must be all BF16 */
    g4q_emulate emulate;     /* engine numerics; AUTO (0) = the export's own target */
    g4q_backend *backend;    /* run on this existing backend (borrowed, must outlive the
                                session; device and precision are then its own), or NULL */
} g4q_session_opts;

typedef struct g4q_session {
    g4q_ctx *ctx;             /* not owned */
    char dir[4096];           /* the model folder */
    g4q_config *cfg;          /* owned */
    g4q_ckpt *ckpt;           /* owned; tensor data mapped, not copied */
    g4q_weights *weights;     /* owned; points into ckpt (quantized Linears' slots are NULL) */
    g4q_qlinears *qlin;       /* owned; stored form of every Linear, points into ckpt */
    char *quant_json;         /* owned; the quantization config as compact JSON, or NULL */
    const char *quant_source; /* static: the file quant_json came from, or NULL */
    g4q_device_kind device;   /* the resolved device: CPU or CUDA */
    g4q_precision precision;  /* the resolved precision: BF16 (CUDA) or F32 */
    g4q_backend *be;          /* owned unless opts.backend lent it */
    int be_borrowed;          /* be belongs to the caller */
    g4q_emulate emulate;      /* the resolved engine numerics: NONE, SM90 or SM100 */
    int kv_fp8;               /* the KV cache runs in FP8 (an engine mode, declared) */
    g4q_forward *fwd;         /* owned */
    g4q_kvcache *kv;          /* owned; NULL until g4q_session_reserve */
    g4q_tok *tok;             /* owned; NULL when the folder has no tokenizer.json */
    int max_chunk;
    int32_t stop_ids[G4Q_SESSION_MAX_IDS]; /* generation stop ids */
    size_t n_stop;
    int32_t suppress_ids[G4Q_SESSION_MAX_IDS]; /* in-vocab ids masked before sampling */
    size_t n_suppress;
    int has_generation_config; /* 1 when generation_config.json was read */
} g4q_session;

/* Parses "bf16", "fp32" or "auto"; anything else is G4Q_ERR_USAGE naming the value. */
g4q_status g4q_session_parse_precision(g4q_ctx *ctx, const char *text, g4q_precision *out);

/* Parses "auto", "none", "sm90" or "sm100"; anything else is G4Q_ERR_USAGE naming the value. */
g4q_status g4q_session_parse_emulate(g4q_ctx *ctx, const char *text, g4q_emulate *out);
/* "auto", "none", "sm90", "sm100". */
const char *g4q_emulate_name(g4q_emulate e);
/* "auto", "bf16", "fp32". */
const char *g4q_precision_name(g4q_precision p);

/* Opens the model folder `dir` as described above. On success *out owns everything; free it with
 * g4q_session_free. Errors name the file: NOT_FOUND (folder/config/checkpoint missing), FORMAT,
 * SHAPE (weights), NUMERIC (a bad global scale), UNSUPPORTED (a packed form the runtime or the
 * backend does not run -- any packed form in CUDA fp32 mode --, model feature, CUDA backend not
 * built, precision bf16 on the CPU), CUDA. */
g4q_status g4q_session_open(g4q_ctx *ctx, const char *dir, const g4q_session_opts *opts,
                            g4q_session **out);

void g4q_session_free(g4q_session *s); /* NULL is a no-op */

/* Makes s->kv a cache of exactly max_ctx positions (1 <= max_ctx <= max_position_embeddings,
 * else G4Q_ERR_INVALID naming both), reset to n_past = 0. An existing cache of the same size is
 * reused. */
g4q_status g4q_session_reserve(g4q_session *s, int max_ctx);

/* Called with the logits of rows t0 .. t0+n-1 of a sequence: logits is [n, vocab] fp32 (after
 * softcap), valid only during the call. A non-OK return stops the run and is passed on. */
typedef g4q_status (*g4q_logits_fn)(void *user, int t0, int n, const float *logits);

/* Runs ids[0..n) from position 0 (the cache is reset first and must hold n positions: call
 * g4q_session_reserve) in pieces of at most `rows` tokens (0 = max_chunk), handing each piece's
 * logits to fn. Rows [0, first_scored) are only run into the cache and not handed out. Host memory
 * for logits: rows x vocab floats. Ids outside [0, vocab) give G4Q_ERR_INVALID before anything
 * runs, naming the index and the id. */
g4q_status g4q_session_logits(g4q_session *s, const int32_t *ids, int n, int first_scored, int rows,
                              g4q_logits_fn fn, void *user);

/* Checks ids[0..n) against the model vocabulary: G4Q_ERR_INVALID "token id X (index i) is outside
 * the vocabulary of V" for the first bad one. */
g4q_status g4q_session_check_ids(g4q_session *s, const int32_t *ids, size_t n);

/* The quantization config of a folder, without opening the weights: hf_quant_config.json's
 * "quantization" object, else config.json's "quantization_config". *json receives a malloc'd
 * compact JSON text (caller frees) and *source the file it came from (static string), or both
 * NULL when the folder is not quantized. Malformed JSON is G4Q_ERR_FORMAT naming the file. */
g4q_status g4q_session_quant_config(g4q_ctx *ctx, const char *dir, char **json,
                                    const char **source);

#ifdef __cplusplus
}
#endif
#endif
