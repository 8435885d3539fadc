/* A planned tensor as a weight-quantizer job (quantize_item.h). */
#include "export/quantize_item.h"

#include <string.h>

g4q_scale_method g4q_plan_item_method(const g4q_plan_item *it)
{
    switch (it->decision.search) {
    case G4Q_RECIPE_SEARCH_MSE:
        return G4Q_SCALE_MSE;
    case G4Q_RECIPE_SEARCH_FOUR_OVER_SIX:
        return G4Q_SCALE_FOUR_OVER_SIX;
    case G4Q_RECIPE_SEARCH_IMATRIX:
        return G4Q_SCALE_IMATRIX;
    case G4Q_RECIPE_SEARCH_HESSIAN:
        return G4Q_SCALE_HESSIAN;
    default:
        return G4Q_SCALE_MAX;
    }
}

g4q_status g4q_quantize_item_job(g4q_ctx *ctx, const g4q_plan_item *it, float group_amax,
                                 const g4q_hess *H, float *deq, g4q_wquant_job *job)
{
    const g4q_tensor *t = it->src;
    if (t->dtype != G4Q_DT_BF16 || t->ndim != 2)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': quantization needs a 2-D BF16 weight",
                        t->name);
    const g4q_layout *l = g4q_layout_get((g4q_layout_format)it->format);
    const int nw = g4q_plan_item_weight_outputs(it);
    *job = (g4q_wquant_job){
        .format = (g4q_layout_format)it->format,
        .name = t->name,
        .rows = t->shape[0],
        .cols = t->shape[1],
        .method = g4q_plan_item_method(it),
        .gptq = it->decision.algo == G4Q_RECIPE_ALGO_GPTQ,
        .gptq_opts = NULL,
        .fused = it->group >= 0,
        .group_amax = it->group >= 0 ? group_amax : 0.0f,
        .w = t->data,
        .H = H,
        .deq = deq,
    };
    /* The plan's weight outputs are the layout's tensors, in its order (plan.c). */
    for (int k = 0; k < nw; k++)
        if (!l || k >= l->n || (int)it->out[k].kind != (int)l->t[k].role)
            return g4q_fail(ctx, G4Q_ERR_INTERNAL, "'%s': output %d is not the %s layout's",
                            it->module, k, g4q_layout_name(job->format));
    return G4Q_OK;
}

g4q_status g4q_quantize_item(g4q_ctx *ctx, g4q_wquant_gpu *gpu, const g4q_plan_item *it,
                             float group_amax, const g4q_hess *H, void *const *bufs, float *deq)
{
    g4q_wquant_job job;
    G4Q_TRY(g4q_quantize_item_job(ctx, it, group_amax, H, deq, &job));
    const int nw = g4q_plan_item_weight_outputs(it);
    for (int k = 0; k < nw; k++)
        job.out[k] = bufs[k];
    return g4q_wquant_run(ctx, gpu, &job);
}
