#include "backend/device.h"

#include <string.h>

g4q_status g4q_device_parse(g4q_ctx *ctx, const char *text, g4q_device_kind *out)
{
    if (strcmp(text, "auto") == 0)
        *out = G4Q_DEVICE_AUTO;
    else if (strcmp(text, "cpu") == 0)
        *out = G4Q_DEVICE_CPU;
    else if (strcmp(text, "cuda") == 0)
        *out = G4Q_DEVICE_CUDA;
    else
        return g4q_fail(ctx, G4Q_ERR_USAGE, "--device '%s': expected auto, cpu or cuda", text);
    return G4Q_OK;
}

const char *g4q_device_name(g4q_device_kind k)
{
    return k == G4Q_DEVICE_CUDA ? "cuda" : k == G4Q_DEVICE_CPU ? "cpu" : "auto";
}

g4q_status g4q_device_select(g4q_ctx *ctx, g4q_device_kind requested, g4q_device_kind *chosen,
                             g4q_device_info *info)
{
    g4q_device_info local;
    if (!info)
        info = &local;
    memset(info, 0, sizeof *info);
    if (requested == G4Q_DEVICE_CPU) {
        *chosen = G4Q_DEVICE_CPU;
        return G4Q_OK;
    }
    g4q_device_probe(info);
    if (info->count > 0) {
        *chosen = G4Q_DEVICE_CUDA;
        G4Q_DEBUG(ctx, "using CUDA device 0: %s (sm_%d%d, %.1f GiB)", info->name, info->cc_major,
                  info->cc_minor, (double)info->total_memory / (1u << 30));
        return G4Q_OK;
    }
    if (requested == G4Q_DEVICE_CUDA)
        return g4q_fail(ctx, G4Q_ERR_CUDA, "--device cuda: no usable CUDA GPU (%s)", info->why_none);
    *chosen = G4Q_DEVICE_CPU;
    G4Q_INFO(ctx, "no CUDA GPU (%s); using the CPU path", info->why_none);
    return G4Q_OK;
}
