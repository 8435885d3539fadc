/* Shared helpers of the CPU quantizers: tensor amax and method names. */
#include "quant/quant.h"

#include <omp.h>
#include <string.h>

const char *g4q_scale_method_name(g4q_scale_method m)
{
    switch (m) {
    case G4Q_SCALE_MAX:
        return "max";
    case G4Q_SCALE_MSE:
        return "mse";
    case G4Q_SCALE_FOUR_OVER_SIX:
        return "four_over_six";
    }
    return "unknown";
}

/* For finite bf16 values |x| orders like the integer (x & 0x7fff), so the amax is an exact integer
 * max and independent of the thread count; 0x7f80 and above are inf/NaN. */
g4q_status g4q_quant_amax_bf16(g4q_ctx *ctx, const char *name, const uint16_t *w, size_t n,
                               float *amax)
{
    unsigned m = 0;
    int nt = ctx->threads > 0 ? ctx->threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) reduction(max : m) num_threads(nt)
    for (size_t i = 0; i < n; i++) {
        unsigned a = w[i] & 0x7fffu;
        m = a > m ? a : m;
    }
    if (m >= 0x7f80u) {
        size_t i = 0;
        while (i < n && (w[i] & 0x7fffu) < 0x7f80u)
            i++;
        return g4q_fail(ctx, G4Q_ERR_NUMERIC, "tensor '%s': element %zu is %s (bf16 0x%04x)",
                        name ? name : "?", i, (w[i] & 0x7fffu) == 0x7f80u ? "infinite" : "NaN",
                        (unsigned)w[i]);
    }
    uint32_t bits = (uint32_t)m << 16;
    float f;
    memcpy(&f, &bits, 4);
    *amax = f;
    return G4Q_OK;
}
