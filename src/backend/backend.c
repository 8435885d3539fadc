/* Backend-neutral helpers of backend.h. */
#include "backend/backend.h"

#include <math.h>

const char *g4q_wformat_name(g4q_wformat f)
{
    switch (f) {
    case G4Q_WF_BF16:
        return "bf16";
    case G4Q_WF_NVFP4:
        return "nvfp4";
    case G4Q_WF_FP8_BLOCK:
        return "fp8_block";
    case G4Q_WF_INT4:
        return "int4";
    default:
        return "unknown";
    }
}

void g4q_backend_free(g4q_backend *be)
{
    if (be) be->destroy(be);
}

g4q_status g4q_weight_desc_check_act(g4q_ctx *ctx, const char *backend, const g4q_weight_desc *d)
{
    const char *name = d->name ? d->name : "(unnamed)";
    if ((unsigned)d->act > G4Q_ACTQ_FP8_GROUP)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "%s backend: weight '%s': unknown activation mode %d",
                        backend, name, (int)d->act);
    if ((d->act == G4Q_ACTQ_NVFP4 || d->act == G4Q_ACTQ_FP8_TENSOR) &&
        !(isfinite(d->act_scale) && d->act_scale > 0.0f))
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "%s backend: weight '%s': activation scale %g, expected finite > 0",
                        backend, name, (double)d->act_scale);
    if (d->act == G4Q_ACTQ_NVFP4 && d->cols % G4Q_ACTQ_NVFP4_BLOCK)
        return g4q_fail(ctx, G4Q_ERR_INVALID,
                        "%s backend: weight '%s': NVFP4 activations need in features %% 16 == 0",
                        backend, name);
    return G4Q_OK;
}

void g4q_logit_row_stats(const float *a, const float *b, int V, int32_t target, double out[5])
{
    double ma = -INFINITY, mb = -INFINITY;
    int aa = 0, ab = 0;
    for (int v = 0; v < V; v++) {
        if (a[v] > ma) ma = a[v], aa = v;
        if (b[v] > mb) mb = b[v], ab = v;
    }
    double sa = 0.0, sb = 0.0;
    for (int v = 0; v < V; v++) {
        sa += exp((double)a[v] - ma);
        sb += exp((double)b[v] - mb);
    }
    const double la = ma + log(sa), lb = mb + log(sb);
    double kl = 0.0;
    for (int v = 0; v < V; v++) {
        const double lpa = (double)a[v] - la, lpb = (double)b[v] - lb;
        kl += exp(lpa) * (lpa - lpb);
    }
    out[0] = kl;
    out[1] = la - (double)a[target];
    out[2] = lb - (double)b[target];
    out[3] = aa;
    out[4] = ab;
}
