/* The GPU weight quantizer in builds without CUDA: never available (backend/wquant.h). */
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
