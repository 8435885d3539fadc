/* The weight quantizer's front: job checks and the CPU / GPU choice (backend/wquant.h). */
#include "backend/wquant.h"

#include <string.h>

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
    if (job->gptq && job->H &&
        (job->H->n != job->cols || g4q_hess_block(job->H->n, job->H->block) != 0))
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "tensor '%s': GPTQ needs every entry of its input Hessian [%lld, %lld]; "
                        "got %lld inputs in diagonal blocks of %d",
                        name, (long long)job->cols, (long long)job->cols, (long long)job->H->n,
                        job->H->block);
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

int g4q_wquant_pipe_accepts(const g4q_wquant_job *job)
{
    return g4q_wquant_gpu_supports(job) && !job->gptq && !job->H && !job->deq;
}

/* Slices of at least 1 MB, so that small copies stay on one thread. */
void g4q_wquant_host_copy(void *dst, const void *src, size_t n, int threads)
{
    const size_t min_slice = (size_t)1 << 20;
    int nt = threads > 1 ? threads : 1;
    if ((size_t)nt > n / min_slice) nt = n / min_slice > 1 ? (int)(n / min_slice) : 1;
    if (nt == 1) {
        memcpy(dst, src, n);
        return;
    }
    /* 4 KB-aligned slices: page-sized runs for each thread */
    const size_t slice = ((n / (size_t)nt + 4095) / 4096) * 4096;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int i = 0; i < nt; i++) {
        const size_t a = (size_t)i * slice;
        if (a < n)
            memcpy((char *)dst + a, (const char *)src + a, a + slice <= n ? slice : n - a);
    }
}
