#include "runtime/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "backend/cpu/cpu.h"
#include "backend/cuda/cuda_backend.h"
#include "base/sys.h"
#include "text/chat.h"

static g4q_status read_json(g4q_ctx *ctx, const char *path, cJSON **out)
{
    char *text = NULL;
    *out = NULL;
    G4Q_TRY(g4q_read_file(ctx, path, 64u << 20, &text, NULL));
    *out = cJSON_Parse(text);
    free(text);
    if (!*out) return g4q_fail(ctx, G4Q_ERR_FORMAT, "%s: not valid JSON", path);
    return G4Q_OK;
}

g4q_status g4q_session_quant_config(g4q_ctx *ctx, const char *dir, char **json, const char **source)
{
    *json = NULL;
    *source = NULL;
    static const struct {
        const char *file, *key;
    } where[] = {{"hf_quant_config.json", "quantization"}, {"config.json", "quantization_config"}};
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        char path[4096];
        G4Q_TRY(g4q_path_join(ctx, path, sizeof path, dir, where[i].file));
        if (!g4q_path_exists(path)) continue;
        cJSON *root;
        G4Q_TRY(read_json(ctx, path, &root));
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, where[i].key);
        if (q && !cJSON_IsNull(q)) {
            *json = cJSON_PrintUnformatted(q);
            *source = where[i].file;
        }
        cJSON_Delete(root);
        if (*source && !*json) return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", path);
        if (*json) return G4Q_OK;
    }
    return G4Q_OK;
}

/* Stop ids and suppressed ids from generation_config.json (optional). */
static g4q_status load_generation_config(g4q_session *s)
{
    char path[4096];
    G4Q_TRY(g4q_path_join(s->ctx, path, sizeof path, s->dir, "generation_config.json"));
    if (!g4q_path_exists(path)) {
        s->stop_ids[0] = s->cfg->eos_id;
        s->n_stop = 1;
        return G4Q_OK;
    }
    s->has_generation_config = 1;
    G4Q_TRY(g4q_chat_stop_ids(s->ctx, path, s->stop_ids, G4Q_SESSION_MAX_IDS, &s->n_stop));
    cJSON *root;
    G4Q_TRY(read_json(s->ctx, path, &root));
    const cJSON *sup = cJSON_GetObjectItemCaseSensitive(root, "suppress_tokens");
    g4q_status st = G4Q_OK;
    if (sup && !cJSON_IsNull(sup) && !cJSON_IsArray(sup))
        st = g4q_fail(s->ctx, G4Q_ERR_FORMAT, "%s: suppress_tokens: expected a list of ids", path);
    const cJSON *it;
    const cJSON *list = cJSON_IsArray(sup) ? sup : NULL;
    cJSON_ArrayForEach(it, list)
    {
        if (st != G4Q_OK) break;
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (v < 0 || v != (double)(int64_t)v) {
            st = g4q_fail(s->ctx, G4Q_ERR_FORMAT,
                          "%s: suppress_tokens: expected non-negative integers", path);
        } else if (v < s->cfg->vocab_size) { /* ids the vocabulary does not have are ignored */
            if (s->n_suppress == G4Q_SESSION_MAX_IDS)
                st = g4q_fail(s->ctx, G4Q_ERR_FORMAT, "%s: suppress_tokens: more than %d ids", path,
                              G4Q_SESSION_MAX_IDS);
            else
                s->suppress_ids[s->n_suppress++] = (int32_t)v;
        }
    }
    cJSON_Delete(root);
    return st;
}

/* Logs what the checkpoint's Linears are stored as, and the ways the runtime departs from it. */
static void describe_quantization(g4q_session *s, const char *qsrc)
{
    const g4q_qlinears *q = s->qlin;
    size_t nq = g4q_qlinears_quantized(q);
    if (nq == 0) {
        if (qsrc)
            G4Q_WARN(s->ctx,
                     "%s: %s declares a quantization, but every Linear is stored BF16; "
                     "running it as a BF16 model",
                     s->dir, qsrc);
        return;
    }
    char list[256] = "";
    size_t len = 0;
    for (int f = 1; f < G4Q_QL_COUNT && len < sizeof list; f++)
        if (q->count[f])
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%zu %s", len ? ", " : "",
                                    q->count[f], g4q_qlinear_format_name((g4q_qlinear_format)f));
    G4Q_INFO(s->ctx, "%s: quantized Linears: %s; %zu BF16", s->dir, list, q->count[G4Q_QL_BF16]);
}

/* Whether the quantization config declares an FP8 KV cache (session.h). */
static int declares_fp8_kv(const char *quant_json)
{
    cJSON *q = quant_json ? cJSON_Parse(quant_json) : NULL;
    if (!q) return 0;
    const cJSON *algo = cJSON_GetObjectItemCaseSensitive(q, "kv_cache_quant_algo");
    const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(q, "kv_cache_scheme");
    const int on = (cJSON_IsString(algo) && strcmp(algo->valuestring, "FP8") == 0) ||
                   (scheme && !cJSON_IsNull(scheme));
    cJSON_Delete(q);
    return on;
}

/* The activation quantization an engine of mode e applies in front of Linear q. */
static g4q_actq engine_actq(g4q_emulate e, const g4q_qlinear *q)
{
    if (e == G4Q_EMULATE_NONE) return G4Q_ACTQ_NONE;
    switch (q->format) {
    case G4Q_QL_NVFP4_MO:
    case G4Q_QL_NVFP4_CT:
        return e == G4Q_EMULATE_SM100 && q->has_input_scale ? G4Q_ACTQ_NVFP4 : G4Q_ACTQ_NONE;
    case G4Q_QL_FP8_BLOCK:
        return G4Q_ACTQ_FP8_GROUP;
    case G4Q_QL_FP8_TENSOR:
        return q->has_input_scale ? G4Q_ACTQ_FP8_TENSOR : G4Q_ACTQ_NONE;
    default:
        return G4Q_ACTQ_NONE;
    }
}

/* Resolves the engine numerics (session.h) and sets every Linear's activation quantization. */
static void set_emulation(g4q_session *s, g4q_emulate want)
{
    g4q_qlinears *q = s->qlin;
    const int declared = declares_fp8_kv(s->quant_json);
    int w4a4 = 0;
    for (int L = 0; L < q->n_layers; L++)
        for (int i = 0; i < G4Q_MAX_LAYER_LINEARS; i++) {
            const g4q_qlinear *ql = &q->layers[L][i];
            w4a4 |= (ql->format == G4Q_QL_NVFP4_MO || ql->format == G4Q_QL_NVFP4_CT) &&
                    ql->has_input_scale;
        }
    if (want == G4Q_EMULATE_AUTO)
        want = w4a4 ? G4Q_EMULATE_SM100
                    : (g4q_qlinears_quantized(q) || declared ? G4Q_EMULATE_SM90 : G4Q_EMULATE_NONE);
    s->emulate = want;
    s->kv_fp8 = want != G4Q_EMULATE_NONE && declared;
    size_t n[4] = {0};
    for (int L = 0; L < q->n_layers; L++)
        for (int i = 0; i < G4Q_MAX_LAYER_LINEARS; i++) {
            g4q_qlinear *ql = &q->layers[L][i];
            if (ql->format == G4Q_QL_BF16) continue;
            ql->desc.act = engine_actq(want, ql);
            ql->desc.act_scale = ql->input_scale;
            n[ql->desc.act]++;
        }
    if (!g4q_qlinears_quantized(q) && !declared) return; /* a BF16 model: nothing to say */
    G4Q_INFO(s->ctx,
             "%s: emulate %s: activations NVFP4 on %zu Linears, FP8 dynamic 1x128 on %zu, FP8 "
             "static on %zu, unquantized on %zu; KV cache %s",
             s->dir, g4q_emulate_name(want), n[G4Q_ACTQ_NVFP4], n[G4Q_ACTQ_FP8_GROUP],
             n[G4Q_ACTQ_FP8_TENSOR], n[G4Q_ACTQ_NONE],
             s->kv_fp8 ? (q->n_kv_scales ? "FP8 (calibrated scales)" : "FP8 (scale 1.0)")
                       : (declared ? "not FP8 (mode none)" : "not quantized"));
}

/* Turns the FP8 KV cache on when the mode says so, with the checkpoint's scales (1.0 where
 * absent). */
static g4q_status set_kv(g4q_session *s)
{
    if (!s->kv_fp8) return G4Q_OK;
    float ks[G4Q_MAX_LAYERS], vs[G4Q_MAX_LAYERS];
    for (int L = 0; L < s->cfg->n_layers; L++) {
        ks[L] = s->qlin->k_scale[L] > 0.0f ? s->qlin->k_scale[L] : 1.0f;
        vs[L] = s->qlin->v_scale[L] > 0.0f ? s->qlin->v_scale[L] : 1.0f;
    }
    return g4q_forward_set_kv_fp8(s->fwd, ks, vs);
}

g4q_status g4q_session_parse_emulate(g4q_ctx *ctx, const char *text, g4q_emulate *out)
{
    static const g4q_emulate all[] = {G4Q_EMULATE_AUTO, G4Q_EMULATE_NONE, G4Q_EMULATE_SM90,
                                      G4Q_EMULATE_SM100};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(text, g4q_emulate_name(all[i])) == 0) {
            *out = all[i];
            return G4Q_OK;
        }
    return g4q_fail(ctx, G4Q_ERR_USAGE, "--emulate '%s': expected auto, none, sm90 or sm100",
                    text);
}

const char *g4q_emulate_name(g4q_emulate e)
{
    switch (e) {
    case G4Q_EMULATE_NONE:
        return "none";
    case G4Q_EMULATE_SM90:
        return "sm90";
    case G4Q_EMULATE_SM100:
        return "sm100";
    default:
        return "auto";
    }
}

g4q_status g4q_session_parse_precision(g4q_ctx *ctx, const char *text, g4q_precision *out)
{
    if (strcmp(text, "bf16") == 0)
        *out = G4Q_PRECISION_BF16;
    else if (strcmp(text, "fp32") == 0)
        *out = G4Q_PRECISION_F32;
    else if (strcmp(text, "auto") == 0)
        *out = G4Q_PRECISION_AUTO;
    else
        return g4q_fail(ctx, G4Q_ERR_USAGE, "--precision '%s': expected bf16 or fp32", text);
    return G4Q_OK;
}

const char *g4q_precision_name(g4q_precision p)
{
    return p == G4Q_PRECISION_BF16 ? "bf16" : p == G4Q_PRECISION_F32 ? "fp32" : "auto";
}

/* The backend of the resolved device in the requested precision (see session.h, "Precision"). */
static g4q_status create_backend(g4q_session *s, g4q_precision want, g4q_backend *lent)
{
    g4q_ctx *ctx = s->ctx;
    if (lent) {
        s->be = lent;
        s->be_borrowed = 1;
        s->device = strcmp(lent->name, "cpu") == 0 ? G4Q_DEVICE_CPU : G4Q_DEVICE_CUDA;
        s->precision = lent->act_dtype == G4Q_DT_BF16 ? G4Q_PRECISION_BF16 : G4Q_PRECISION_F32;
        return G4Q_OK;
    }
    if (want != G4Q_PRECISION_AUTO && want != G4Q_PRECISION_BF16 && want != G4Q_PRECISION_F32)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s: unknown precision %d", s->dir, (int)want);
    if (s->device == G4Q_DEVICE_CUDA) {
        g4q_cuda_opts co = {want == G4Q_PRECISION_F32 ? G4Q_CUDA_F32 : G4Q_CUDA_BF16, 0};
        s->precision = want == G4Q_PRECISION_F32 ? G4Q_PRECISION_F32 : G4Q_PRECISION_BF16;
        return g4q_backend_cuda_create_opts(ctx, &co, &s->be);
    }
    if (want == G4Q_PRECISION_BF16)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "%s: precision bf16 needs the CUDA backend: the CPU backend computes in "
                        "fp32 only (use --precision fp32, or --device cuda)",
                        s->dir);
    s->precision = G4Q_PRECISION_F32;
    return g4q_backend_cpu_create(ctx, &s->be);
}

static void release_mapped(void *ckpt)
{
    g4q_ckpt_release_all((const g4q_ckpt *)ckpt);
}

static g4q_status open_parts(g4q_session *s, const g4q_session_opts *o)
{
    g4q_ctx *ctx = s->ctx;
    if (!g4q_is_dir(s->dir))
        return g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "%s: model folder not found", s->dir);
    char path[4096];
    G4Q_TRY(g4q_path_join(ctx, path, sizeof path, s->dir, "config.json"));
    if (!g4q_path_exists(path))
        return g4q_fail(ctx, G4Q_ERR_NOT_FOUND, "%s: no config.json", s->dir);
    G4Q_TRY(g4q_config_load(ctx, path, s->cfg));
    G4Q_TRY(g4q_session_quant_config(ctx, s->dir, &s->quant_json, &s->quant_source));
    G4Q_TRY(g4q_ckpt_open(ctx, s->dir, &s->ckpt));
    G4Q_TRY(g4q_qlinears_bind(ctx, s->cfg, g4q_ckpt_tensor(s->ckpt, 0), g4q_ckpt_count(s->ckpt),
                              s->dir, s->weights, s->qlin));
    describe_quantization(s, s->quant_source);
    G4Q_TRY(load_generation_config(s));
    G4Q_TRY(g4q_path_join(ctx, path, sizeof path, s->dir, "tokenizer.json"));
    if (g4q_path_exists(path)) G4Q_TRY(g4q_tok_load(ctx, path, &s->tok));
    if (!o->backend) G4Q_TRY(g4q_device_select(ctx, o->device, &s->device, NULL));
    G4Q_TRY(create_backend(s, o->precision, o->backend));
    if (o->stream_layers)
        return g4q_forward_create_streamed(ctx, s->be, s->cfg, s->weights, s->max_chunk, &s->fwd);
    if ((unsigned)o->emulate > G4Q_EMULATE_SM100)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s: unknown emulation mode %d", s->dir,
                        (int)o->emulate);
    set_emulation(s, o->emulate);
    /* A GPU holds its own copy of every weight: the mapped pages leave the resident set after each
     * layer is bound (they are paged in again only if read), so host memory holds about one layer.
     * The CPU backend computes from the mapping itself. */
    const g4q_bind_hook release = {release_mapped, s->ckpt};
    G4Q_TRY(g4q_forward_create_q(ctx, s->be, s->cfg, s->weights, s->qlin,
                                 s->device == G4Q_DEVICE_CUDA ? &release : NULL, s->max_chunk,
                                 &s->fwd));
    return set_kv(s);
}

g4q_status g4q_session_open(g4q_ctx *ctx, const char *dir, const g4q_session_opts *opts,
                            g4q_session **out)
{
    *out = NULL;
    g4q_session_opts defaults = {.device = G4Q_DEVICE_AUTO};
    const g4q_session_opts *o = opts ? opts : &defaults;
    if (o->max_chunk < 0)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "session: max_chunk %d < 0", o->max_chunk);
    g4q_session *s = calloc(1, sizeof *s);
    if (s) {
        s->cfg = calloc(1, sizeof *s->cfg);
        s->weights = calloc(1, sizeof *s->weights);
        s->qlin = calloc(1, sizeof *s->qlin);
    }
    if (!s || !s->cfg || !s->weights || !s->qlin) {
        g4q_session_free(s);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", dir);
    }
    s->ctx = ctx;
    s->max_chunk = o->max_chunk ? o->max_chunk : 256;
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    if (len >= sizeof s->dir) {
        g4q_session_free(s);
        return g4q_fail(ctx, G4Q_ERR_INVALID, "model folder path too long");
    }
    memcpy(s->dir, dir, len);
    g4q_status st = open_parts(s, o);
    if (st != G4Q_OK) {
        g4q_session_free(s);
        return st;
    }
    *out = s;
    return G4Q_OK;
}

void g4q_session_free(g4q_session *s)
{
    if (!s) return;
    g4q_kvcache_free(s->kv);
    g4q_forward_free(s->fwd);
    if (!s->be_borrowed) g4q_backend_free(s->be);
    g4q_tok_free(s->tok);
    g4q_ckpt_close(s->ckpt);
    free(s->weights);
    free(s->qlin);
    free(s->quant_json);
    free(s->cfg);
    free(s);
}

g4q_status g4q_session_reserve(g4q_session *s, int max_ctx)
{
    if (max_ctx < 1 || max_ctx > s->cfg->max_position_embeddings)
        return g4q_fail(s->ctx, G4Q_ERR_INVALID,
                        "%s: a context of %d tokens is outside 1..%ld (max_position_embeddings)",
                        s->dir, max_ctx, s->cfg->max_position_embeddings);
    if (s->kv && s->kv->max_ctx == max_ctx) {
        g4q_kvcache_reset(s->kv);
        return G4Q_OK;
    }
    g4q_kvcache_free(s->kv);
    s->kv = NULL;
    return g4q_kvcache_create(s->ctx, s->be, s->cfg, max_ctx, &s->kv);
}

g4q_status g4q_session_check_ids(g4q_session *s, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->cfg->vocab_size)
            return g4q_fail(s->ctx, G4Q_ERR_INVALID,
                            "token id %ld (index %zu) is outside the vocabulary of %d",
                            (long)ids[i], i, s->cfg->vocab_size);
    return G4Q_OK;
}

g4q_status g4q_session_logits(g4q_session *s, const int32_t *ids, int n, int first_scored, int rows,
                              g4q_logits_fn fn, void *user)
{
    if (n < 1 || first_scored < 0 || first_scored > n)
        return g4q_fail(s->ctx, G4Q_ERR_INVALID, "session: %d tokens, first scored %d", n,
                        first_scored);
    if (!s->kv || s->kv->max_ctx < n)
        return g4q_fail(s->ctx, G4Q_ERR_INVALID,
                        "session: %d tokens need a context of at least %d (reserved: %d)", n, n,
                        s->kv ? s->kv->max_ctx : 0);
    G4Q_TRY(g4q_session_check_ids(s, ids, (size_t)n));
    if (rows <= 0) rows = s->max_chunk;
    g4q_kvcache_reset(s->kv);
    if (first_scored > 0) G4Q_TRY(g4q_forward_run(s->fwd, s->kv, ids, first_scored, 1, NULL));
    if (first_scored == n) return G4Q_OK;
    const size_t V = (size_t)s->cfg->vocab_size;
    float *logits = malloc((size_t)rows * V * sizeof *logits);
    if (!logits)
        return g4q_fail(s->ctx, G4Q_ERR_NOMEM, "session: out of memory for %d x %zu logits", rows,
                        V);
    g4q_status st = G4Q_OK;
    for (int t0 = first_scored; t0 < n && st == G4Q_OK; t0 += rows) {
        int c = n - t0 < rows ? n - t0 : rows;
        st = g4q_forward_run(s->fwd, s->kv, ids + t0, c, 0, logits);
        if (st == G4Q_OK) st = fn(user, t0, c, logits);
    }
    free(logits);
    return st;
}
