/* The weight quantizer's front: job checks and the CPU / GPU choice (backend/wquant.h). */
#include "backend/wquant.h"

g4q_status g4q_wquant_check(g4q_ctx *ctx, const g4q_wquant_job *job)
{
    const char *name = job->name ? job->name : "(unnamed)";
    const g4q_layout *l = g4q_layout_get(job->format);
    if (!l)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': format %s is not a quantized format",
                        name, g4q_layout_name(job->format));
    if (!job->w || job->rows < 1 || job->cols < 1)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': no weight [%lld, %lld] to quantize",
                        name, (long long)job->rows, (long long)job->cols);
    for (int k = 0; k < l->n; k++)
        if (!g4q_layout_role_calibrated(l->t[k].role) && !job->out[k])
            return g4q_fail(ctx, G4Q_ERR_INVALID, "tensor '%s': no buffer for its %s (%s)", name,
                            l->t[k].suffix, l->name);
    return G4Q_OK;
}

g4q_status g4q_wquant_run(g4q_ctx *ctx, g4q_wquant_gpu *gpu, const g4q_wquant_job *job)
{
    if (gpu && g4q_wquant_gpu_supports(job)) return g4q_wquant_gpu_run(ctx, gpu, job);
    return g4q_wquant_cpu(ctx, job);
}
