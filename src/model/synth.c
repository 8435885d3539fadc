#include "model/synth.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"
#include "base/progress.h"
#include "io/json_write.h"
#include "base/sys.h"
#include "io/json_write.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/synth_tok.h"
#include "model/weights.h"

/* ---- presets ---- */

g4q_status g4q_synth_preset(g4q_ctx *ctx, const char *name, g4q_synth_spec *out)
{
    memset(out, 0, sizeof *out);
    if (strcmp(name, "tiny") == 0) {
        /* Layers 0-4 sliding, 5 full. The full layer has the larger head dim and one KV head,
         * like the 12B; a window of 64 lets short test sequences cross it. */
        *out = (g4q_synth_spec){.n_layers = 6, .hidden = 256, .intermediate = 512, .vocab = 2048,
                                .n_heads = 4, .n_kv_heads = 2, .head_dim = 64,
                                .global_head_dim = 128, .sliding_window = 64,
                                .max_position_embeddings = 4096};
    } else if (strcmp(name, "small") == 0) {
        *out = (g4q_synth_spec){.n_layers = 12, .hidden = 512, .intermediate = 1024,
                                .vocab = 8192, .n_heads = 8, .n_kv_heads = 4, .head_dim = 64,
                                .global_head_dim = 128, .sliding_window = 128,
                                .max_position_embeddings = 8192};
    } else if (strcmp(name, "12b") == 0) {
        *out = (g4q_synth_spec){.n_layers = 48, .hidden = 3840, .intermediate = 15360,
                                .vocab = 262144, .n_heads = 16, .n_kv_heads = 8, .head_dim = 256,
                                .global_head_dim = 512, .sliding_window = 1024,
                                .max_position_embeddings = 262144};
    } else {
        return g4q_fail(ctx, G4Q_ERR_USAGE, "unknown preset '%s' (valid: tiny, small, 12b)", name);
    }
    snprintf(out->preset, sizeof out->preset, "%s", name);
    return G4Q_OK;
}

g4q_status g4q_synth_validate(g4q_ctx *ctx, const g4q_synth_spec *s)
{
    if (s->n_layers < 1 || s->n_layers > G4Q_MAX_LAYERS)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "layers %d: expected 1..%d", s->n_layers,
                        G4Q_MAX_LAYERS);
    if (s->hidden < 128 || s->hidden % 128 != 0 || s->hidden > 65536)
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "hidden %d: expected a multiple of 128 between 128 and 65536", s->hidden);
    if (s->n_heads < 1 || s->hidden % s->n_heads != 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "hidden %d: not a multiple of the %d heads",
                        s->hidden, s->n_heads);
    if (s->intermediate < 128 || s->intermediate % 128 != 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "intermediate %d: expected a multiple of 128",
                        s->intermediate);
    if (s->n_kv_heads < 1 || s->n_heads % s->n_kv_heads != 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%d KV heads do not divide %d heads",
                        s->n_kv_heads, s->n_heads);
    if (s->head_dim < 8 || s->head_dim % 8 != 0 || s->global_head_dim < 8 ||
        s->global_head_dim % 8 != 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "head dims %d/%d: expected multiples of 8",
                        s->head_dim, s->global_head_dim);
    if (s->vocab < G4Q_SYNTH_MIN_VOCAB || s->vocab > G4Q_SYNTH_MAX_VOCAB)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "vocab %d: expected %d..%d", s->vocab,
                        G4Q_SYNTH_MIN_VOCAB, G4Q_SYNTH_MAX_VOCAB);
    if (s->sliding_window < 1)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "sliding window %d: expected >= 1",
                        s->sliding_window);
    return G4Q_OK;
}

g4q_status g4q_synth_override(g4q_ctx *ctx, g4q_synth_spec *s, int layers, int hidden, int vocab)
{
    if (layers < 0)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "--layers %d: expected 1..%d", layers, G4Q_MAX_LAYERS);
    if (hidden < 0)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "--hidden %d: expected a multiple of 128", hidden);
    if (vocab < 0)
        return g4q_fail(ctx, G4Q_ERR_USAGE, "--vocab %d: expected %d..%d", vocab,
                        G4Q_SYNTH_MIN_VOCAB, G4Q_SYNTH_MAX_VOCAB);
    if (layers)
        s->n_layers = layers;
    if (hidden && hidden != s->hidden) {
        if (hidden % 128 != 0)
            return g4q_fail(ctx, G4Q_ERR_USAGE, "--hidden %d: expected a multiple of 128", hidden);
        long inter = (long)s->intermediate * hidden / s->hidden;
        inter = (inter + 127) / 128 * 128;
        s->intermediate = (int)(inter < 128 ? 128 : inter);
        s->hidden = hidden;
    }
    if (vocab)
        s->vocab = vocab;
    g4q_status st = g4q_synth_validate(ctx, s);
    if (st != G4Q_OK)
        ctx->err_code = st = G4Q_ERR_USAGE;
    return st;
}

void g4q_synth_mm_ids_of(int vocab, g4q_synth_mm_ids *o)
{
    if (vocab >= 262144) {
        *o = (g4q_synth_mm_ids){.boi = 255999, .boa = 256000, .image = 258880, .audio = 258881,
                                .eoi = 258882, .eoa = 258883, .video = 258884};
    } else {
        int t = vocab - 7;
        *o = (g4q_synth_mm_ids){.boi = t, .boa = t + 1, .image = t + 2, .audio = t + 3,
                                .eoi = t + 4, .eoa = t + 5, .video = t + 6};
    }
}

/* ---- config.json ---- */

/* Keys are added in sorted order at every level, as transformers writes them (sort_keys). */
g4q_status g4q_synth_config_json(g4q_ctx *ctx, const g4q_synth_spec *s, cJSON **out)
{
    g4q_synth_mm_ids mm;
    g4q_synth_mm_ids_of(s->vocab, &mm);
    cJSON *root = cJSON_CreateObject();
    cJSON *tc = cJSON_CreateObject();
    cJSON *vc = cJSON_CreateObject();
    cJSON *ac = cJSON_CreateObject();
    cJSON *rope = cJSON_CreateObject();
    cJSON *rs = cJSON_CreateObject();
    cJSON *rf = cJSON_CreateObject();
    const char *arch = "Gemma4UnifiedForConditionalGeneration";
    cJSON *types = cJSON_CreateArray();
    if (!root || !tc || !vc || !ac || !rope || !rs || !rf || !types)
        goto oom;

    cJSON_AddItemToObject(root, "architectures", cJSON_CreateStringArray(&arch, 1));
    cJSON_AddNumberToObject(ac, "audio_embed_dim", 640);
    cJSON_AddStringToObject(ac, "model_type", "gemma4_unified_audio");
    cJSON_AddItemToObject(root, "audio_config", ac);
    ac = NULL;
    cJSON_AddNumberToObject(root, "audio_token_id", mm.audio);
    cJSON_AddNumberToObject(root, "boa_token_id", mm.boa);
    cJSON_AddNumberToObject(root, "boi_token_id", mm.boi);
    cJSON_AddStringToObject(root, "dtype", "bfloat16");
    cJSON_AddNumberToObject(root, "eoa_token_index", mm.eoa);
    cJSON_AddNumberToObject(root, "eoi_token_id", mm.eoi);
    cJSON_AddNumberToObject(root, "image_token_id", mm.image);
    cJSON_AddStringToObject(root, "model_type", "gemma4_unified");

    cJSON_AddFalseToObject(tc, "attention_bias");
    cJSON_AddTrueToObject(tc, "attention_k_eq_v");
    cJSON_AddNumberToObject(tc, "bos_token_id", 2);
    cJSON_AddNumberToObject(tc, "eos_token_id", 1);
    cJSON_AddItemToObject(tc, "final_logit_softcapping", g4q_json_create_float(30.0));
    cJSON_AddNumberToObject(tc, "global_head_dim", s->global_head_dim);
    cJSON_AddNumberToObject(tc, "head_dim", s->head_dim);
    cJSON_AddStringToObject(tc, "hidden_activation", "gelu_pytorch_tanh");
    cJSON_AddNumberToObject(tc, "hidden_size", s->hidden);
    cJSON_AddNumberToObject(tc, "intermediate_size", s->intermediate);
    for (int i = 0; i < s->n_layers; i++) {
        int full = (i % 6 == 5) || i == s->n_layers - 1;
        cJSON_AddItemToArray(types,
                             cJSON_CreateString(full ? "full_attention" : "sliding_attention"));
    }
    cJSON_AddItemToObject(tc, "layer_types", types);
    types = NULL;
    cJSON_AddNumberToObject(tc, "max_position_embeddings", (double)s->max_position_embeddings);
    cJSON_AddStringToObject(tc, "model_type", "gemma4_unified_text");
    cJSON_AddNumberToObject(tc, "num_attention_heads", s->n_heads);
    cJSON_AddNumberToObject(tc, "num_global_key_value_heads", 1);
    cJSON_AddNumberToObject(tc, "num_hidden_layers", s->n_layers);
    cJSON_AddNumberToObject(tc, "num_key_value_heads", s->n_kv_heads);
    cJSON_AddNumberToObject(tc, "num_kv_shared_layers", 0);
    cJSON_AddNumberToObject(tc, "pad_token_id", 0);
    cJSON_AddItemToObject(tc, "rms_norm_eps", g4q_json_create_float(1e-6));
    cJSON_AddItemToObject(rf, "partial_rotary_factor", g4q_json_create_float(0.25));
    cJSON_AddItemToObject(rf, "rope_theta", g4q_json_create_float(1000000.0));
    cJSON_AddStringToObject(rf, "rope_type", "proportional");
    cJSON_AddItemToObject(rope, "full_attention", rf);
    rf = NULL;
    cJSON_AddItemToObject(rs, "rope_theta", g4q_json_create_float(10000.0));
    cJSON_AddStringToObject(rs, "rope_type", "default");
    cJSON_AddItemToObject(rope, "sliding_attention", rs);
    rs = NULL;
    cJSON_AddItemToObject(tc, "rope_parameters", rope);
    rope = NULL;
    cJSON_AddNumberToObject(tc, "sliding_window", s->sliding_window);
    cJSON_AddTrueToObject(tc, "tie_word_embeddings");
    cJSON_AddStringToObject(tc, "use_bidirectional_attention", "vision");
    cJSON_AddFalseToObject(tc, "use_double_wide_mlp");
    cJSON_AddNumberToObject(tc, "vocab_size", s->vocab);
    cJSON_AddItemToObject(root, "text_config", tc);
    tc = NULL;

    cJSON_AddTrueToObject(root, "tie_word_embeddings");
    cJSON_AddStringToObject(root, "torch_dtype", "bfloat16");
    cJSON_AddNumberToObject(root, "video_token_id", mm.video);
    /* The multimodal embedder works at the text width, like the 12B (3840 everywhere). */
    cJSON_AddNumberToObject(vc, "mm_embed_dim", s->hidden);
    cJSON_AddNumberToObject(vc, "mm_posemb_size", 1120);
    cJSON_AddStringToObject(vc, "model_type", "gemma4_unified_vision");
    cJSON_AddNumberToObject(vc, "output_proj_dims", s->hidden);
    cJSON_AddNumberToObject(vc, "patch_size", 16);
    cJSON_AddNumberToObject(vc, "pooling_kernel_size", 3);
    cJSON_AddItemToObject(root, "vision_config", vc);
    *out = root;
    return G4Q_OK;
oom:
    cJSON_Delete(root);
    cJSON_Delete(tc);
    cJSON_Delete(vc);
    cJSON_Delete(ac);
    cJSON_Delete(rope);
    cJSON_Delete(rs);
    cJSON_Delete(rf);
    cJSON_Delete(types);
    return g4q_fail(ctx, G4Q_ERR_NOMEM, "config.json: out of memory");
}

/* ---- the value generator ----
 *
 * Counter-based: the 64-bit key of a tensor is a hash of (seed, tensor name), and element e of a
 * normal-distributed tensor comes from pair p = e / 2 through one splitmix64 step on
 * key + (p + 1) * golden ratio, turned into two normals by Box-Muller (e even: the cosine branch,
 * e odd: the sine branch). Hashing the name rather than the position in the list keeps a tensor's
 * values when the layer count is overridden (`--layers 2` of the 12b gives the 12b's first layers).
 * log/sin/cos are computed from basic IEEE operations (below), so the bytes depend neither on the
 * thread count and chunking nor on the machine's libm.
 *
 * Distributions (d = hidden size; every choice keeps the forward pass well conditioned):
 *  - Linear [out, in]: N(0, sigma^2) x row scale x column scale. Row scales exp(0.2 z) give the
 *    per-output-channel spread of trained weights. Column scales exp(0.15 z), plus
 *    clamp(in / 256, 2, 16) outlier input channels scaled 5-20x, imitate Gemma's outlier channels
 *    (what makes per-group scaling and MSE scale search matter). sigma = gain / sqrt(sum of
 *    squared ordinary column scales) ~ gain / sqrt(fan_in), so the bulk of the weights has std
 *    gain / sqrt(fan_in) and a unit-RMS input gives outputs of RMS ~gain; the outlier columns
 *    add on top (x1.2-1.5 in RMS for these counts).
 *    q/k/v are RMS-normalised after the projection and o/down are followed by a post-norm, so
 *    their gain does not reach the residual stream; gain 1. gate/up see the pre-feedforward
 *    norm's output, whose RMS is sqrt(E[w^2]) ~ 3.4 for the NORM_IN weights below; gain 0.4 puts
 *    the GELU input at std ~1.4, where GELU is really non-linear but nothing saturates.
 *  - embed_tokens: N(0, (1.5/sqrt(d))^2), 0.024 for the 12B. After the x bf16(sqrt(d)) input scale
 *    the first residual has RMS ~1.5, comparable to one block's update. As the tied output head,
 *    logit = sum_j x_j w_j E_vj with x unit-RMS (final norm), so logits have std
 *    ~1.5 x RMS(final norm weight) ~ 4: the top logit of a large vocabulary lands around 15-20,
 *    inside the softcap's (30) near-linear range.
 *  - input/pre-feedforward norm weights (x*w form, applied as stored): 1 + 7u^3, u uniform:
 *    range [1, 8], most channels near 1-2 and a few large ones: the massive-activation channels
 *    of trained models.
 *  - Conditioning. A random deep residual network is chaotic unless each block only nudges the
 *    residual stream: when a block's update is as large as the stream (the first version of this
 *    generator), bf16 rounding alone changed transformers' own top-1 prediction at every position
 *    of a 48-layer model, and all positions collapsed onto one predicted token. Measured with
 *    transformers 5.17 (CPU, 64 tokens, 48 layers of the small preset's width), bf16 vs fp32: that
 *    version gave top-1 agreement 0.00 and relative logit difference 1.10; this one gives 0.97
 *    and 0.035, with diverse predictions (24 distinct top-1 tokens of 64, none copying the input;
 *    mean top probability 0.30). The choices:
 *  - layer_scalar: layer 0 in [0.05, 0.1] (a report puts the real 12B's layer 0 at 0.053), later
 *    layers in [0.85, 1.0]. Each layer ends with h = s (h + a + m); the stream keeps its scale
 *    over 48 layers (the product of the later scalars stays above ~1e-2 of layer 1's), far above
 *    the RMSNorm epsilon.
 *  - post-attention/post-feedforward norm weights: 0.3 x (0.5 + 2.5u^2) in layer 0, where the
 *    update adds to the embedding (RMS ~1.5), and 0.0225 x (0.5 + 2.5u^2) in later layers, i.e.
 *    scaled by ~layer 0's scalar, since the stream they add to has shrunk by that factor. Every
 *    block then changes the stream by a modest fraction, like the residual updates of trained
 *    models, and the final state is still far from the input embedding (no copying).
 *  - q_norm/k_norm weights: 0.35 hd^-1/4 x (0.8 + 0.8u). The score is sum over hd of q_i k_i with
 *    q, k unit-RMS per head times these weights and a scaling of exactly 1.0; for unrelated q
 *    and k its std is sqrt(hd) x w_q w_k ~ 0.1-0.3, and for aligned ones up to sqrt(hd) c^2 ~ 5
 *    (hd 512): soft attention; peakier attention made the model more chaotic.
 *  - final norm: 2.25 + 3u in [2.25, 5.25]: logits of std ~5.7, top logits around 20, inside the
 *    softcap's (30) near-linear range.
 *  - multimodal: LayerNorm weights 1 + 0.1z, biases and position embeddings N(0, 0.02^2),
 *    projections as Linear. Text-only inference never reads them.
 */

#define GOLDEN 0x9e3779b97f4a7c15ull

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return mix64(mix64(seed + GOLDEN) ^ h);
}

/* log, sin and cos from IEEE basic operations only (no libm, no fused multiply-add), so the
 * generated bytes are the same on every machine and compiler, not just on every thread count.
 * Accurate to ~1e-15, far below the bf16 rounding of the result. */
#if defined(__clang__) /* GCC in ISO C mode (-std=c17) already uses -ffp-contract=off */
#pragma STDC FP_CONTRACT OFF
#endif

static inline double det_log(double x) /* x > 0 and normal */
{
    uint64_t bits;
    memcpy(&bits, &x, 8); /* x = m 2^e with m in [0.5, 1), exactly (frexp without the call) */
    int e = (int)((bits >> 52) & 0x7ff) - 1022;
    bits = (bits & 0x800fffffffffffffull) | (1022ull << 52);
    double m;
    memcpy(&m, &bits, 8);
    if (m < 0.70710678118654752) {
        m *= 2.0;
        e--;
    }
    /* log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: the series to s^17 */
    double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double t = 1.0 / 15 + s2 * (1.0 / 17);
    t = 1.0 / 13 + s2 * t;
    t = 1.0 / 11 + s2 * t;
    t = 1.0 / 9 + s2 * t;
    t = 1.0 / 7 + s2 * t;
    t = 1.0 / 5 + s2 * t;
    t = 1.0 / 3 + s2 * t;
    return (double)e * 0.6931471805599453 + 2.0 * s * (1.0 + s2 * t);
}

/* cos and sin of 2 pi u for u in [0, 1): quadrant k, remainder x in [-pi/4, pi/4], Taylor series
 * to x^16 (error < 1e-15). */
static inline void det_sincos_turn(double u, double *cs, double *sn)
{
    double t = u * 4.0; /* exact */
    int k = (int)(t + 0.5);
    double x = (t - (double)k) * 1.5707963267948966, x2 = x * x;
    double s = 1.0 / 1307674368000.0;           /* 1/15! */
    s = 1.0 / 6227020800.0 - x2 * s;            /* 1/13! */
    s = 1.0 / 39916800.0 - x2 * s;              /* 1/11! */
    s = 1.0 / 362880.0 - x2 * s;                /* 1/9! */
    s = 1.0 / 5040.0 - x2 * s;                  /* 1/7! */
    s = 1.0 / 120.0 - x2 * s;                   /* 1/5! */
    s = 1.0 / 6.0 - x2 * s;                     /* 1/3! */
    s = x - x * x2 * s;
    double c = 1.0 / 20922789888000.0;          /* 1/16! */
    c = 1.0 / 87178291200.0 - x2 * c;           /* 1/14! */
    c = 1.0 / 479001600.0 - x2 * c;             /* 1/12! */
    c = 1.0 / 3628800.0 - x2 * c;               /* 1/10! */
    c = 1.0 / 40320.0 - x2 * c;                 /* 1/8! */
    c = 1.0 / 720.0 - x2 * c;                   /* 1/6! */
    c = 1.0 / 24.0 - x2 * c;                    /* 1/4! */
    c = 1.0 / 2.0 - x2 * c;
    c = 1.0 - x2 * c;
    /* rotate by k quarter turns: k = 0 (c, s), 1 (-s, c), 2 (-c, -s), 3 (s, -c) */
    double a = (k & 1) ? s : c, b = (k & 1) ? c : s;
    *cs = ((k + 1) & 2) ? -a : a;
    *sn = (k & 2) ? -b : b;
}

/* The two normals of pair p of stream `key`. */
static inline void normal_pair(uint64_t key, uint64_t p, double *z0, double *z1)
{
    uint64_t h = mix64(key + (p + 1) * GOLDEN);
    double u1 = ((double)(h >> 32) + 0.5) * (1.0 / 4294967296.0); /* (0, 1) */
    double u2 = (double)(h & 0xffffffffu) * (1.0 / 4294967296.0);  /* [0, 1) */
    double r = sqrt(-2.0 * det_log(u1));
    double cs, sn;
    det_sincos_turn(u2, &cs, &sn);
    *z0 = r * cs;
    *z1 = r * sn;
}

/* Normals number [first, first + n) of stream `key`. */
static void normals(uint64_t key, uint64_t first, size_t n, float *z)
{
    uint64_t e = first, end = first + n;
    size_t i = 0;
    double a, b;
    if (e < end && (e & 1)) {
        normal_pair(key, e >> 1, &a, &b);
        z[i++] = (float)b;
        e++;
    }
    for (; e + 1 < end; e += 2) {
        normal_pair(key, e >> 1, &a, &b);
        z[i++] = (float)a;
        z[i++] = (float)b;
    }
    if (e < end) {
        normal_pair(key, e >> 1, &a, &b);
        z[i] = (float)a;
    }
}

/* Uniform in [0, 1) number e of stream `key` (a different stream from the normals). */
static inline double uniform(uint64_t key, uint64_t e)
{
    return (double)(mix64((key ^ 0x5eed5eed5eed5eedull) + (e + 1) * GOLDEN) >> 11) *
           (1.0 / 9007199254740992.0);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Kind and Linear gain of a tensor name; -1 when unknown. */
static int classify(const char *name, float *gain)
{
    static const struct {
        const char *suffix;
        g4q_synth_kind kind;
        float gain;
    } rules[] = {
        {"embed_tokens.weight", G4Q_SYNTH_EMBED, 0},
        {"mlp.gate_proj.weight", G4Q_SYNTH_LINEAR, 0.4f},
        {"mlp.up_proj.weight", G4Q_SYNTH_LINEAR, 0.4f},
        {"_proj.weight", G4Q_SYNTH_LINEAR, 1.0f}, /* q k v o down, embedding_projection */
        {"embedding_projection.weight", G4Q_SYNTH_LINEAR, 1.0f},
        {"patch_dense.weight", G4Q_SYNTH_LINEAR, 1.0f},
        {"input_layernorm.weight", G4Q_SYNTH_NORM_IN, 0},
        {"pre_feedforward_layernorm.weight", G4Q_SYNTH_NORM_IN, 0},
        {"post_attention_layernorm.weight", G4Q_SYNTH_NORM_POST, 0},
        {"post_feedforward_layernorm.weight", G4Q_SYNTH_NORM_POST, 0},
        {"q_norm.weight", G4Q_SYNTH_QK_NORM, 0},
        {"k_norm.weight", G4Q_SYNTH_QK_NORM, 0},
        {"layer_scalar", G4Q_SYNTH_SCALAR, 0},
        {"model.language_model.norm.weight", G4Q_SYNTH_NORM_FINAL, 0},
        {".bias", G4Q_SYNTH_MM_SMALL, 0},
        {"pos_embedding", G4Q_SYNTH_MM_SMALL, 0},
        {"_ln1.weight", G4Q_SYNTH_MM_SCALE, 0},
        {"_ln2.weight", G4Q_SYNTH_MM_SCALE, 0},
        {"pos_norm.weight", G4Q_SYNTH_MM_SCALE, 0},
    };
    if (strcmp(name, "model.norm.weight") == 0) /* text-only prefix */
        return G4Q_SYNTH_NORM_FINAL;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (ends_with(name, rules[i].suffix)) {
            *gain = rules[i].gain;
            return (int)rules[i].kind;
        }
    return -1;
}

g4q_status g4q_synth_gen_init(g4q_ctx *ctx, uint64_t seed, const char *name, int ndim,
                              const int64_t *shape, g4q_synth_gen *g)
{
    memset(g, 0, sizeof *g);
    float gain = 0;
    int kind = classify(name, &gain);
    if (kind < 0)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': no synthetic distribution for it",
                        name);
    g->kind = (g4q_synth_kind)kind;
    g->key = hash_name(seed, name);
    const char *lp = strstr(name, "layers.");
    g->layer = lp ? atoi(lp + 7) : -1;
    g->rows = ndim > 0 ? shape[0] : 1;
    g->cols = 1;
    for (int i = 1; i < ndim; i++)
        g->cols *= shape[i];
    if (g->kind == G4Q_SYNTH_LINEAR && ndim != 2)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': a Linear weight must be 2-D", name);
    switch (g->kind) {
    case G4Q_SYNTH_EMBED:
        g->sigma = (float)(1.5 / sqrt((double)g->cols));
        break;
    case G4Q_SYNTH_MM_SMALL:
        g->sigma = 0.02f;
        break;
    case G4Q_SYNTH_QK_NORM: /* the head dim is the tensor's length */
        g->sigma = (float)pow((double)g->rows, -0.25);
        break;
    case G4Q_SYNTH_LINEAR: {
        g->row_scale = malloc((size_t)g->rows * sizeof(float));
        g->col_scale = malloc((size_t)g->cols * sizeof(float));
        float *tmp = malloc((size_t)(g->rows > g->cols ? g->rows : g->cols) * sizeof(float));
        if (!g->row_scale || !g->col_scale || !tmp) {
            free(tmp);
            g4q_synth_gen_free(g);
            return g4q_fail(ctx, G4Q_ERR_NOMEM, "tensor '%s': out of memory", name);
        }
        uint64_t rkey = mix64(g->key ^ 0x726f777363616c65ull);
        uint64_t ckey = mix64(g->key ^ 0x636f6c7363616c65ull);
        normals(rkey, 0, (size_t)g->rows, tmp);
        for (int64_t r = 0; r < g->rows; r++)
            g->row_scale[r] = (float)exp(0.2 * tmp[r]);
        normals(ckey, 0, (size_t)g->cols, tmp);
        for (int64_t c = 0; c < g->cols; c++)
            g->col_scale[c] = (float)exp(0.15 * tmp[c]);
        free(tmp);
        double ss = 0; /* normalise over the ordinary columns; outliers come on top */
        for (int64_t c = 0; c < g->cols; c++)
            ss += (double)g->col_scale[c] * g->col_scale[c];
        int64_t n_out = g->cols / 256;
        n_out = n_out < 2 ? 2 : n_out > 16 ? 16 : n_out;
        for (int64_t j = 0; j < n_out; j++) {
            int64_t c = (int64_t)(mix64(ckey + (uint64_t)j * GOLDEN) % (uint64_t)g->cols);
            g->col_scale[c] = (float)(5.0 + 15.0 * uniform(ckey, (uint64_t)j));
        }
        g->sigma = (float)(gain / sqrt(ss));
        break;
    }
    default:
        break;
    }
    return G4Q_OK;
}

void g4q_synth_gen_free(g4q_synth_gen *g)
{
    if (!g)
        return;
    free(g->row_scale);
    free(g->col_scale);
    g->row_scale = g->col_scale = NULL;
}

/* Scales of the post-norm weights (the size of each block's update of the residual stream) and
 * of q_norm/k_norm; see "Distributions" above for why. */
#define POST_SCALE_0 0.3       /* layer 0: updates relative to the embedding */
#define POST_SCALE_LATER 0.0225 /* later layers: 0.3 x ~0.075, layer 0's scalar */
#define QK_SCALE 0.35

/* Per-element values of the vector kinds, from one uniform each. */
static float vector_value(const g4q_synth_gen *g, uint64_t e)
{
    double u = uniform(g->key, e);
    switch (g->kind) {
    case G4Q_SYNTH_NORM_IN:
        return (float)(1.0 + 7.0 * u * u * u);
    case G4Q_SYNTH_NORM_POST:
        return (float)((g->layer >= 1 ? POST_SCALE_LATER : POST_SCALE_0) * (0.5 + 2.5 * u * u));
    case G4Q_SYNTH_NORM_FINAL:
        return (float)(2.25 + 3.0 * u);
    case G4Q_SYNTH_QK_NORM:
        return (float)(QK_SCALE * g->sigma * (0.8 + 0.8 * u));
    case G4Q_SYNTH_SCALAR:
        return (float)(g->layer == 0 ? 0.05 + 0.05 * u : 0.85 + 0.15 * u);
    default:
        return 0.0f;
    }
}

void g4q_synth_gen_fill(const g4q_synth_gen *g, uint64_t first, uint64_t n, uint16_t *out)
{
    enum { BLOCK = 2048 };
    float z[BLOCK];
    int normal_kind = g->kind == G4Q_SYNTH_LINEAR || g->kind == G4Q_SYNTH_EMBED ||
                      g->kind == G4Q_SYNTH_MM_SMALL || g->kind == G4Q_SYNTH_MM_SCALE;
    if (!normal_kind) {
        for (uint64_t i = 0; i < n; i++)
            out[i] = g4q_f32_to_bf16(vector_value(g, first + i));
        return;
    }
    for (uint64_t done = 0; done < n;) {
        size_t m = n - done < BLOCK ? (size_t)(n - done) : BLOCK;
        uint64_t e0 = first + done;
        normals(g->key, e0, m, z);
        uint16_t *o = out + done;
        if (g->kind == G4Q_SYNTH_LINEAR) {
            uint64_t r = e0 / (uint64_t)g->cols, c = e0 % (uint64_t)g->cols;
            for (size_t i = 0; i < m; i++) {
                o[i] = g4q_f32_to_bf16(g->sigma * g->row_scale[r] * g->col_scale[c] * z[i]);
                if (++c == (uint64_t)g->cols) {
                    c = 0;
                    r++;
                }
            }
        } else if (g->kind == G4Q_SYNTH_MM_SCALE) {
            for (size_t i = 0; i < m; i++)
                o[i] = g4q_f32_to_bf16(1.0f + 0.1f * z[i]);
        } else {
            for (size_t i = 0; i < m; i++)
                o[i] = g4q_f32_to_bf16(g->sigma * z[i]);
        }
        done += m;
    }
}

/* ---- writing a checkpoint ---- */

#define CHUNK_ELEMS ((uint64_t)16 << 20) /* 32 MB of bf16 per chunk, two chunks in flight */
#define BLOCK_ELEMS ((uint64_t)64 << 10) /* one OpenMP work item */

typedef struct stream_state {
    g4q_st_writer *w;
    const g4q_weight_spec *specs;
    size_t n;
    uint64_t seed;
    int threads;
} stream_state;

/* Generates every tensor chunk by chunk, with OpenMP threads filling chunk c while one of them
 * writes chunk c-1, so generation and disk writes overlap. */
static g4q_status stream_tensors(g4q_ctx *ctx, const stream_state *ss, uint64_t total_bytes)
{
    uint16_t *buf[2] = {malloc(CHUNK_ELEMS * 2), malloc(CHUNK_ELEMS * 2)};
    g4q_synth_gen gen;
    memset(&gen, 0, sizeof gen);
    g4q_status st = G4Q_OK;
    if (!buf[0] || !buf[1]) {
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory for %llu-byte generation buffers",
                      (unsigned long long)(CHUNK_ELEMS * 2));
        goto done;
    }
    g4q_progress prog;
    g4q_progress_begin(&prog, ctx, "weights", "B", total_bytes);
    int nt = ss->threads > 0 ? ss->threads : omp_get_max_threads();
    size_t prev_t = 0;
    uint64_t prev_off = 0, prev_n = 0, done_bytes = 0;
    int slot = 0, have_prev = 0;
    for (size_t t = 0; t < ss->n && st == G4Q_OK; t++) {
        const g4q_weight_spec *sp = &ss->specs[t];
        st = g4q_synth_gen_init(ctx, ss->seed, sp->name, sp->ndim, sp->shape, &gen);
        for (uint64_t off = 0; off < sp->numel && st == G4Q_OK; off += CHUNK_ELEMS) {
            uint64_t cn = sp->numel - off < CHUNK_ELEMS ? sp->numel - off : CHUNK_ELEMS;
            long nblocks = (long)((cn + BLOCK_ELEMS - 1) / BLOCK_ELEMS);
            uint16_t *dst = buf[slot];
            const uint16_t *src = buf[slot ^ 1];
            g4q_status wst = G4Q_OK;
#pragma omp parallel num_threads(nt)
            {
#pragma omp single nowait
                if (have_prev)
                    wst = g4q_stw_write(ss->w, prev_t, prev_off * 2, src, prev_n * 2);
#pragma omp for schedule(dynamic, 1)
                for (long b = 0; b < nblocks; b++) {
                    uint64_t b0 = (uint64_t)b * BLOCK_ELEMS;
                    uint64_t bn = cn - b0 < BLOCK_ELEMS ? cn - b0 : BLOCK_ELEMS;
                    g4q_synth_gen_fill(&gen, off + b0, bn, dst + b0);
                }
            }
            st = wst;
            if (have_prev)
                done_bytes += prev_n * 2;
            g4q_progress_update(&prog, done_bytes);
            prev_t = t;
            prev_off = off;
            prev_n = cn;
            have_prev = 1;
            slot ^= 1;
        }
        g4q_synth_gen_free(&gen);
    }
    if (st == G4Q_OK && have_prev) {
        st = g4q_stw_write(ss->w, prev_t, prev_off * 2, buf[slot ^ 1], prev_n * 2);
        done_bytes += prev_n * 2;
    }
    if (st == G4Q_OK) {
        g4q_progress_update(&prog, done_bytes);
        g4q_progress_end(&prog);
    }
done:
    g4q_synth_gen_free(&gen);
    free(buf[0]);
    free(buf[1]);
    return st;
}

static g4q_status count_files(g4q_ctx *ctx, const char *dir, g4q_synth_result *res)
{
    DIR *d = opendir(dir);
    if (!d)
        return g4q_fail(ctx, G4Q_ERR_IO, "%s: cannot list: %s", dir, strerror(errno));
    res->n_files = res->n_shards = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        res->n_files++;
        if (ends_with(e->d_name, ".safetensors"))
            res->n_shards++;
    }
    closedir(d);
    return G4Q_OK;
}

/* Writes the tensors of cfg into dir. */
static g4q_status write_weights(g4q_ctx *ctx, const g4q_synth_spec *s, const char *dir,
                                uint64_t shard_bytes, const g4q_weight_spec *specs, size_t n,
                                uint64_t total_bytes)
{
    static const char *const meta[] = {"format", "pt", NULL};
    g4q_st_writer_opts opts = {.shard_bytes = shard_bytes, .metadata_kv = meta};
    g4q_st_writer *w = NULL;
    G4Q_TRY(g4q_stw_create(ctx, dir, &opts, &w));
    g4q_status st = G4Q_OK;
    for (size_t i = 0; i < n && st == G4Q_OK; i++) {
        size_t idx = 0;
        st = g4q_stw_declare(w, specs[i].name, G4Q_DT_BF16, specs[i].ndim, specs[i].shape, &idx);
        if (st == G4Q_OK && idx != i)
            st = g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': writer index %zu, expected %zu",
                          specs[i].name, idx, i);
    }
    if (st == G4Q_OK)
        st = g4q_stw_begin(w);
    if (st == G4Q_OK) {
        stream_state ss = {.w = w, .specs = specs, .n = n, .seed = s->seed,
                           .threads = ctx->threads};
        st = stream_tensors(ctx, &ss, total_bytes);
    }
    if (st == G4Q_OK)
        st = g4q_stw_finish(w);
    g4q_stw_free(w);
    return st;
}

g4q_status g4q_synth_write(g4q_ctx *ctx, const g4q_synth_spec *s, const char *dir,
                           uint64_t shard_bytes, int dry_run, g4q_synth_result *res)
{
    memset(res, 0, sizeof *res);
    G4Q_TRY(g4q_synth_validate(ctx, s));
    cJSON *cj = NULL;
    char *text = NULL;
    g4q_config *cfg = NULL;
    g4q_weight_spec *specs = NULL;
    char path[4096];
    G4Q_TRY(g4q_synth_config_json(ctx, s, &cj));
    g4q_status st = g4q_json_print(ctx, cj, 2, 0, &text);
    if (st == G4Q_OK && !(cfg = malloc(sizeof *cfg)))
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "config: out of memory");
    /* The parser, not this file, decides the shapes. */
    if (st == G4Q_OK)
        st = g4q_config_parse(ctx, "config.json (synthetic)", text, cfg);
    size_t n = 0;
    if (st == G4Q_OK) {
        n = g4q_weights_expected_count(cfg);
        if (!(specs = calloc(n, sizeof *specs)))
            st = g4q_fail(ctx, G4Q_ERR_NOMEM, "tensor list: out of memory");
    }
    if (st == G4Q_OK) {
        n = g4q_weights_expected(cfg, G4Q_ORDER_FILE, specs);
        res->n_tensors = n;
        for (size_t i = 0; i < n; i++)
            res->params += specs[i].numel;
        res->bytes = res->params * 2;
    }
    if (st == G4Q_OK && !dry_run) {
        st = g4q_path_join(ctx, path, sizeof path, dir, "config.json");
        if (st == G4Q_OK)
            st = g4q_json_write_file(ctx, path, cj, 2);
        if (st == G4Q_OK)
            st = write_weights(ctx, s, dir, shard_bytes, specs, n, res->bytes);
        if (st == G4Q_OK)
            st = g4q_synth_tok_write_tokenizer(ctx, dir, s->vocab);
        if (st == G4Q_OK)
            st = g4q_synth_tok_write_side_files(ctx, dir, s->vocab);
        if (st == G4Q_OK)
            st = count_files(ctx, dir, res);
    }
    cJSON_Delete(cj);
    free(text);
    free(cfg);
    free(specs);
    return st;
}
