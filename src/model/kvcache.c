/* KV cache allocation (layout in kvcache.h). */
#include <stdlib.h>

#include "io/dtype.h"
#include "model/kvcache.h"

g4q_status g4q_kvcache_create(g4q_ctx *ctx, g4q_backend *be, const g4q_config *cfg, int max_ctx,
                              g4q_kvcache **out)
{
    *out = NULL;
    if (max_ctx < 1 || (cfg->max_position_embeddings > 0 && max_ctx > cfg->max_position_embeddings))
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "kv cache: max context %d outside 1 .. max_position_embeddings %ld",
                        max_ctx, cfg->max_position_embeddings);
    if (cfg->n_layers < 1 || cfg->n_layers > G4Q_MAX_LAYERS)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "kv cache: %d layers", cfg->n_layers);
    g4q_kvcache *kv = calloc(1, sizeof *kv);
    if (!kv) return g4q_fail(ctx, G4Q_ERR_NOMEM, "kv cache: out of memory");
    kv->be = be;
    kv->n_layers = cfg->n_layers;
    kv->max_ctx = max_ctx;
    size_t esize = g4q_dtype_size(be->act_dtype);
    for (int l = 0; l < cfg->n_layers; l++) {
        const g4q_layer_config *lc = &cfg->layers[l];
        g4q_kv_layer *kl = &kv->layers[l];
        kl->cap = max_ctx;
        if (lc->type == G4Q_LAYER_SLIDING && cfg->sliding_window > 0 &&
            cfg->sliding_window < max_ctx)
            kl->cap = cfg->sliding_window;
        kl->nkv = lc->n_kv_heads;
        kl->hd = lc->head_dim;
        size_t n = (size_t)kl->cap * (size_t)kl->nkv * (size_t)kl->hd;
        g4q_status st = be->buf_alloc(be, be->act_dtype, n, &kl->k);
        if (st == G4Q_OK) st = be->buf_alloc(be, be->act_dtype, n, &kl->v);
        if (st != G4Q_OK) {
            g4q_error_prefix(ctx, "kv cache: layer %d", l);
            g4q_kvcache_free(kv);
            return st;
        }
        kv->bytes += 2 * n * esize;
    }
    *out = kv;
    return G4Q_OK;
}

void g4q_kvcache_reset(g4q_kvcache *kv)
{
    kv->n_past = 0;
}

void g4q_kvcache_free(g4q_kvcache *kv)
{
    if (!kv) return;
    for (int l = 0; l < kv->n_layers; l++) {
        kv->be->buf_free(kv->be, kv->layers[l].k);
        kv->be->buf_free(kv->be, kv->layers[l].v);
    }
    free(kv);
}
