/* The CPU-side pieces of the weight quantizer's GPU pipe (backend/wquant.h), which run on any
 * machine: the staging copy on several threads (every byte, any size, any thread count), which
 * jobs the pipe takes, and the refusals that need no GPU. The pipe itself is tested against the
 * CPU quantizers in test_wquant_pipe_gpu.cu and, through the exporter, test_export_pipe_gpu.c. */
#include <stdlib.h>
#include <string.h>

#include "backend/wquant.h"
#include "testutil.h"

static void host_copy(uint64_t *rng)
{
    const size_t sizes[] = {0, 1, 4095, 4096, 4097, (1u << 20) - 3, (1u << 20) + 5,
                            (3u << 20) + 12345, 9u << 20};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        const size_t n = sizes[s];
        unsigned char *src = malloc(n + 1), *dst = malloc(n + 2);
        if (!CHECK(src && dst)) return;
        for (size_t i = 0; i < n; i++)
            src[i] = (unsigned char)g4q_test_rand(rng);
        for (int threads = 0; threads <= 5; threads++) {
            memset(dst, 0xa5, n + 2);
            g4q_wquant_host_copy(dst + 1, src, n, threads);
            CHECK_MSG(memcmp(dst + 1, src, n) == 0 && dst[0] == 0xa5 && dst[n + 1] == 0xa5,
                      "host copy of %zu bytes on %d threads", n, threads);
        }
        free(src);
        free(dst);
    }
}

static void accepts(void)
{
    static uint16_t w[16];
    g4q_wquant_job j = {.format = G4Q_LAYOUT_NVFP4_MO, .name = "w", .rows = 1, .cols = 16,
                        .method = G4Q_SCALE_MAX, .w = w};
    const int gpu = g4q_wquant_gpu_supports(&j); /* 0 in builds without CUDA */
    CHECK_EQ_INT(g4q_wquant_pipe_accepts(&j), gpu);
    j.gptq = 1;
    CHECK_EQ_INT(g4q_wquant_pipe_accepts(&j), 0);
    j.gptq = 0;
    float H[256] = {0};
    const g4q_hess hv = {.h = H, .n = 16};
    j.H = &hv;
    CHECK_EQ_INT(g4q_wquant_pipe_accepts(&j), 0);
    j.H = NULL;
    float deq[16];
    j.deq = deq;
    CHECK_EQ_INT(g4q_wquant_pipe_accepts(&j), 0);
    j.deq = NULL;
    j.format = G4Q_LAYOUT_NVFP4_CT; /* compressed-tensors: max scales only */
    CHECK_EQ_INT(g4q_wquant_pipe_accepts(&j), gpu);
    j.method = G4Q_SCALE_MSE;
    CHECK_EQ_INT(g4q_wquant_pipe_accepts(&j), 0);
    j.method = G4Q_SCALE_MAX;
    j.format = G4Q_LAYOUT_FP8_TENSOR; /* no kernel */
    CHECK_EQ_INT(g4q_wquant_pipe_accepts(&j), 0);
    const g4q_layout_format others[] = {G4Q_LAYOUT_FP8_BLOCK, G4Q_LAYOUT_INT4_GPTQ,
                                        G4Q_LAYOUT_INT4_CT};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        j.format = others[i];
        CHECK_EQ_INT(g4q_wquant_pipe_accepts(&j), gpu);
    }
}

static void refusals(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_wquant_pipe *p = (g4q_wquant_pipe *)1;
    g4q_status st = g4q_wquant_pipe_create(&ctx, NULL, NULL, &p);
    CHECK(st != G4Q_OK && p == NULL); /* no GPU quantizer (INVALID; UNSUPPORTED without CUDA) */
    g4q_wquant_pipe_free(NULL);
}

int main(void)
{
    uint64_t rng = g4q_test_seed();
    host_copy(&rng);
    accepts();
    refusals();
    return g4q_test_finish();
}
