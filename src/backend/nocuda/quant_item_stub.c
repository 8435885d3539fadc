/* The exporter's GPU path in builds without CUDA: never available. */
#include "export/quantize_item.h"

g4q_status g4q_gpu_quantizer_create(g4q_ctx *ctx, g4q_gpu_quantizer **out)
{
    *out = NULL;
    return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "this build has no CUDA backend");
}

void g4q_gpu_quantizer_free(g4q_gpu_quantizer *q)
{
    (void)q;
}

size_t g4q_gpu_quantizer_peak_bytes(const g4q_gpu_quantizer *q)
{
    (void)q;
    return 0;
}

int g4q_gpu_quantizer_supports(const g4q_plan_item *it)
{
    (void)it;
    return 0;
}

g4q_status g4q_quantize_item_cuda(g4q_ctx *ctx, g4q_gpu_quantizer *q, const g4q_plan_item *it,
                                  float group_amax, const float *H, void **bufs, float *deq)
{
    (void)q, (void)group_amax, (void)H, (void)bufs, (void)deq;
    return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED, "%s: this build has no CUDA backend", it->src->name);
}
