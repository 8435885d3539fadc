/*
 * libFuzzer target for the loader of quantized checkpoints (g4q_qlinears_bind, what gemma4q-run
 * does with a third-party export): any byte string goes through g4q_st_open_memory and, when it
 * is a safetensors image, through g4q_qlinears_bind for a fixed two-layer model
 * (tests/data/fuzz_qlinear_config.json: one sliding layer, one full layer with attention_k_eq_v).
 * An error must leave a message. A checkpoint that binds must describe every quantized Linear
 * with the projection's shape and with data and scales that lie wholly inside the image, since
 * the backends read rows x cols of them without checking again.
 * Seeds (tests/corpus/fuzz_qlinear): that model quantized by the public recipes (NVFP4 ModelOpt
 * W4A4 and compressed-tensors W4A16, FP8 128x128, INT4 GPTQ, NVFP4 MLP-only with an FP8 KV cache;
 * scripts/fuzz/qlinear_seeds.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/qlinear.h"
#include "model/weights.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static g4q_config cfg;
static g4q_qlinears q; /* large: static */
static g4q_weights w;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    if (g4q_config_load(&ctx, G4Q_SOURCE_DIR "/tests/data/fuzz_qlinear_config.json", &cfg) !=
        G4Q_OK) {
        fprintf(stderr, "fuzz_qlinear: %s\n", g4q_ctx_error(&ctx));
        abort();
    }
    return 0;
}

/* The shape [rows, cols] of projection slot s (q, k, v, o, gate, up, down) of layer L. */
static void slot_shape(int L, int s, int64_t *rows, int64_t *cols)
{
    const g4q_layer_config *l = &cfg.layers[L];
    const int64_t d = cfg.hidden, qd = (int64_t)cfg.n_heads * l->head_dim,
                  kvd = (int64_t)l->n_kv_heads * l->head_dim, f = cfg.intermediate;
    const int64_t r[7] = {qd, kvd, kvd, d, f, f, d}, c[7] = {d, d, d, qd, d, d, f};
    *rows = r[s], *cols = c[s];
}

/* Whether [p, p + n) lies inside the image. */
static int inside(const void *p, uint64_t n, const uint8_t *data, size_t size)
{
    const uint8_t *b = p;
    return b >= data && b <= data + size && n <= (uint64_t)(data + size - b);
}

/* Bytes of data and scales a backend reads for desc d (backend.h, g4q_wformat). */
static void extents(const g4q_weight_desc *d, uint64_t *data_bytes, uint64_t *scale_bytes,
                    uint64_t *scale2_bytes)
{
    const uint64_t r = (uint64_t)d->rows, c = (uint64_t)d->cols;
    *scale2_bytes = 0;
    switch (d->format) {
    case G4Q_WF_NVFP4:
        *data_bytes = r * c / 2, *scale_bytes = r * (c / 16), *scale2_bytes = 4;
        return;
    case G4Q_WF_FP8_BLOCK:
        *data_bytes = r * c;
        *scale_bytes =
            d->flags & G4Q_WD_FP8_PER_TENSOR ? 4 : 4 * ((r + 127) / 128) * ((c + 127) / 128);
        return;
    case G4Q_WF_INT4:
        *data_bytes = r * c / 2;
        *scale_bytes = r * (c / (uint64_t)d->group) * g4q_dtype_size(d->scale_dtype);
        return;
    default:
        *data_bytes = r * c * 2, *scale_bytes = 0;
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    ctx.log_level = G4Q_LOG_ERROR;
    g4q_st_file *f = NULL;
    if (g4q_st_open_memory(&ctx, "fuzz.safetensors", data, size, &f) != G4Q_OK) return 0;
    const g4q_status st =
        g4q_qlinears_bind(&ctx, &cfg, g4q_st_tensor(f, 0), g4q_st_count(f), "fuzz", &w, &q);
    if (st != G4Q_OK) {
        if (ctx.err[0] == '\0') abort(); /* an error must leave a message */
        g4q_st_close(f);
        return 0;
    }
    size_t total = 0;
    for (int fmt = 0; fmt < G4Q_QL_COUNT; fmt++)
        total += q.count[fmt];
    if (q.n_layers != cfg.n_layers || total != q.count[G4Q_QL_BF16] + g4q_qlinears_quantized(&q))
        abort();
    for (int L = 0; L < cfg.n_layers; L++)
        for (int s = 0; s < 7; s++) {
            const g4q_qlinear *ql = &q.layers[L][s];
            if (ql->format == G4Q_QL_BF16) continue;
            const g4q_weight_desc *d = &ql->desc;
            int64_t rows, cols;
            slot_shape(L, s, &rows, &cols);
            if (d->rows != rows || d->cols != cols || (unsigned)d->format >= G4Q_WF_COUNT ||
                d->format == G4Q_WF_BF16)
                abort(); /* a quantized Linear with the projection's shape */
            if (d->format == G4Q_WF_INT4 &&
                (d->group <= 0 || d->group % 8 != 0 || cols % d->group != 0))
                abort();
            uint64_t nd, ns, ns2;
            extents(d, &nd, &ns, &ns2);
            if (!inside(d->data, nd, data, size) || !inside(d->scale, ns, data, size) ||
                (ns2 && !inside(d->scale2, ns2, data, size)))
                abort(); /* what a backend reads lies in the checkpoint */
        }
    g4q_st_close(f);
    return 0;
}
