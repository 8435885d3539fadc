/* The GPU weight quantizer and its pipe in builds without CUDA: never available
 * (backend/wquant.h). */
#include "backend/wquant.h"

g4q_status g4q_wquant_gpu_create(g4q_ctx *ctx, g4q_wquant_gpu **out)
{
    *out = NULL;
    return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "this build has no CUDA backend");
}

void g4q_wquant_gpu_free(g4q_wquant_gpu *q)
{
    (void)q;
}

size_t g4q_wquant_gpu_peak_bytes(const g4q_wquant_gpu *q)
{
    (void)q;
    return 0;
}

int g4q_wquant_gpu_supports(const g4q_wquant_job *job)
{
    (void)job;
    return 0;
}

g4q_status g4q_wquant_gpu_run(g4q_ctx *ctx, g4q_wquant_gpu *q, const g4q_wquant_job *job)
{
    (void)q;
    return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "%s: this build has no CUDA backend", job->name);
}

g4q_status g4q_wquant_pipe_create(g4q_ctx *ctx, g4q_wquant_gpu *gpu,
                                  const g4q_wquant_pipe_opts *opts, g4q_wquant_pipe **out)
{
    (void)gpu;
    (void)opts;
    *out = NULL;
    return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "this build has no CUDA backend");
}

g4q_status g4q_wquant_pipe_submit(g4q_ctx *ctx, g4q_wquant_pipe *p,
                                  const g4q_wquant_pipe_item *items, int n, int fused)
{
    (void)p;
    (void)items;
    (void)n;
    (void)fused;
    return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "this build has no CUDA backend");
}

g4q_status g4q_wquant_pipe_wait(g4q_ctx *ctx, g4q_wquant_pipe *p, int need,
                                g4q_wquant_pipe_result *res, int *got)
{
    (void)p;
    (void)need;
    (void)res;
    *got = 0;
    return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "this build has no CUDA backend");
}

void g4q_wquant_pipe_release(void *hold)
{
    (void)hold;
}

void g4q_wquant_pipe_free(g4q_wquant_pipe *p)
{
    (void)p;
}
