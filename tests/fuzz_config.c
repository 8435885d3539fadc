/*
 * libFuzzer target for the config.json parser: any byte string (up to its first NUL) goes through
 * g4q_config_parse. An error must leave a message; a config that parses must hold what the model
 * code relies on without checking again (model/config.h): every count positive, each layer's
 * head_dim even and its KV heads dividing the query heads, RoPE angles within half the head_dim,
 * the last layer full, finite epsilon and softcap.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = malloc(size + 1);
    if (json == NULL) return 0;
    memcpy(json, data, size);
    json[size] = '\0';
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    ctx.log_level = G4Q_LOG_ERROR; /* warnings (a last layer forced to full) are not findings */
    static g4q_config c;           /* 256 layers: too large for the fuzzer's stack frames */
    const g4q_status st = g4q_config_parse(&ctx, "fuzz/config.json", json, &c);
    free(json);
    if (st != G4Q_OK) {
        if (ctx.err[0] == '\0') abort(); /* an error must leave a message */
        return 0;
    }
    if (c.n_layers < 1 || c.n_layers > G4Q_MAX_LAYERS || c.hidden < 1 || c.intermediate < 1 ||
        c.vocab_size < 1 || c.n_heads < 1 || c.sliding_window < 1 || c.prefix == NULL)
        abort();
    if (!(c.rms_norm_eps > 0.0) || !isfinite(c.rms_norm_eps) ||
        !(c.final_logit_softcapping >= 0.0) || !isfinite(c.final_logit_softcapping) ||
        !isfinite(c.embed_scale))
        abort();
    if (c.bos_id < 0 || c.bos_id >= c.vocab_size || c.eos_id < 0 || c.eos_id >= c.vocab_size ||
        c.pad_id < 0 || c.pad_id >= c.vocab_size)
        abort();
    if (g4q_config_count_layers(&c, G4Q_LAYER_SLIDING) +
                g4q_config_count_layers(&c, G4Q_LAYER_FULL) !=
            c.n_layers ||
        c.layers[c.n_layers - 1].type != G4Q_LAYER_FULL)
        abort();
    for (int i = 0; i < c.n_layers; i++) {
        const g4q_layer_config *l = &c.layers[i];
        if (l->head_dim < 2 || l->head_dim % 2 != 0 || l->n_kv_heads < 1 ||
            c.n_heads % l->n_kv_heads != 0 || l->rope_angles < 0 ||
            l->rope_angles > l->head_dim / 2)
            abort();
        if (!(l->rope.theta > 0.0) || !isfinite(l->rope.theta)) abort();
    }
    return 0;
}
