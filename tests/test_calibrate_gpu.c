/*
 * Calibration on the CUDA backend with the prefetch thread (src/calib/calibrate.h, "Weights":
 * layer l + 1 staged and copied by a helper thread while layer l runs) against the same run with
 * deferred binding switched off (every layer bound when its turn comes), on the tiny synthetic
 * model, plain and sequential: the amaxes, token counts and Hessians are identical bit for bit
 * (only the moment of each weight copy differs), and the device memory peak grows by at most one
 * layer's weights. Prints both runs' binding and prefetch times.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_backend.h"
#include "base/bf16.h"
#include "calib/calibrate.h"
#include "model/synth.h"
#include "runtime/session.h"
#include "calib_hook.h"
#include "testutil.h"

static g4q_ctx g_ctx;
static uint64_t g_rng;

/* The largest layer's weight bytes of a session's model. */
static size_t max_layer_bytes(const g4q_session *s)
{
    size_t best = 0;
    for (int l = 0; l < s->weights->n_layers; l++) {
        const g4q_layer_weights *w = &s->weights->layers[l];
        const g4q_tensor *t[] = {w->q_proj,
                                 w->k_proj,
                                 w->v_proj,
                                 w->o_proj,
                                 w->gate_proj,
                                 w->up_proj,
                                 w->down_proj,
                                 w->q_norm,
                                 w->k_norm,
                                 w->input_layernorm,
                                 w->post_attention_layernorm,
                                 w->pre_feedforward_layernorm,
                                 w->post_feedforward_layernorm};
        size_t b = 0;
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            b += t[i] ? (size_t)t[i]->nbytes : 0;
        best = b > best ? b : best;
    }
    return best;
}

/* One calibration on a fresh CUDA backend, with or without deferred binding. */
static g4q_status run(const char *dir, const g4q_calib_data *d, int deferred, int sequential,
                      g4q_calib_result *r, hook_state *hs, size_t *layer_bytes)
{
    g4q_backend *be = NULL;
    G4Q_TRY(g4q_backend_cuda_create(&g_ctx, &be));
    if (!deferred) be->weight_bind_deferred = NULL, be->weight_upload = NULL;
    memset(hs, 0, sizeof *hs);
    g4q_session_opts so = {.max_chunk = d->seq_len, .stream_layers = 1, .backend = be};
    g4q_session *s = NULL;
    g4q_status st = g4q_session_open(&g_ctx, dir, &so, &s);
    const g4q_calib_hooks hooks = {.hessian_sites = 1u << G4Q_OBS_ATTN_IN | 1u << G4Q_OBS_O_IN |
                                                    1u << G4Q_OBS_MLP_IN | 1u << G4Q_OBS_DOWN_IN,
                                   .sequential = sequential,
                                   .layer_done = hook_on_layer,
                                   .user = hs};
    if (st == G4Q_OK) {
        *layer_bytes = max_layer_bytes(s);
        st = g4q_calib_run(&g_ctx, s, d, 1, &hooks, r);
        CHECK_EQ_INT(g4q_forward_staged(s->fwd), -1);
    }
    g4q_session_free(s);
    g4q_backend_free(be);
    hook_release(hs);
    return st;
}

int main(void)
{
    g4q_ctx_init(&g_ctx);
    g_ctx.log_level = G4Q_LOG_ERROR;
    g_rng = g4q_test_seed();
    char dir[2048];
    g4q_test_tmpdir(dir, sizeof dir, "calibrate_gpu");
    g4q_synth_spec spec;
    g4q_synth_result res;
    if (!CHECK_STATUS(g4q_synth_preset(&g_ctx, "tiny", &spec), G4Q_OK)) return g4q_test_finish();
    spec.seed = g4q_test_rand(&g_rng);
    if (!CHECK_STATUS(g4q_synth_write(&g_ctx, &spec, dir, 0, 0, &res), G4Q_OK))
        return g4q_test_finish();
    g4q_calib_data d;
    memset(&d, 0, sizeof d);
    d.samples = 4, d.seq_len = 64;
    snprintf(d.name, sizeof d.name, "test");
    d.ids = malloc(sizeof(int32_t) * (size_t)(d.samples * d.seq_len));
    for (int i = 0; i < d.samples * d.seq_len; i++)
        d.ids[i] =
            i % d.seq_len ? (int32_t)(g4q_test_rand(&g_rng) % (uint64_t)(spec.vocab - 16)) + 3 : 2;
    g4q_calib_result *r = calloc(2, sizeof *r);
    hook_state *hs = calloc(2, sizeof *hs);
    for (int seq = 0; seq < 2; seq++) {
        size_t layer_bytes = 0;
        int ok = 1;
        for (int k = 0; k < 2; k++)
            if (!CHECK_STATUS(run(dir, &d, k, seq, &r[k], &hs[k], &layer_bytes), G4Q_OK)) {
                printf("calibration on cuda: %s\n", g4q_ctx_error(&g_ctx));
                ok = 0;
            }
        if (!ok) break;
        const int same = memcmp(r[0].amax, r[1].amax, sizeof r[0].amax) == 0 &&
                         memcmp(r[0].tokens, r[1].tokens, sizeof r[0].tokens) == 0 &&
                         memcmp(hs[0].digest, hs[1].digest, sizeof hs[0].digest) == 0;
        CHECK_MSG(same, "%s: prefetched calibration differs from plain binds",
                  seq ? "sequential" : "plain");
        CHECK_MSG(r[1].peak_device_bytes <= r[0].peak_device_bytes + layer_bytes,
                  "peak device memory %zu with prefetch, %zu without, layer %zu bytes",
                  r[1].peak_device_bytes, r[0].peak_device_bytes, layer_bytes);
        CHECK(r[0].prefetch_seconds == 0 && r[1].prefetch_seconds > 0);
        printf("calibrate_gpu%s (%d layers, %d x %d tokens): prefetch vs plain binds: amaxes, "
               "tokens, Hessians %s; bind %.4f s vs %.4f s, prefetch thread %.4f s; peak %.2f vs "
               "%.2f MB (a layer: %.2f MB)\n",
               seq ? " sequential" : "", r[0].n_layers, d.samples, d.seq_len,
               same ? "identical" : "DIFFER", r[1].bind_seconds, r[0].bind_seconds,
               r[1].prefetch_seconds, (double)r[1].peak_device_bytes / 1e6,
               (double)r[0].peak_device_bytes / 1e6, (double)layer_bytes / 1e6);
    }
    free(d.ids);
    free(r), free(hs);
    return g4q_test_finish();
}
