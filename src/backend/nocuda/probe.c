/* Device probe for builds without the CUDA backend (G4Q_CUDA=OFF, e.g. the fuzzing build). */
#include <stdio.h>
#include <string.h>

#include "backend/device.h"

void g4q_device_probe(g4q_device_info *info)
{
    memset(info, 0, sizeof *info);
    snprintf(info->why_none, sizeof info->why_none, "this build has no CUDA backend");
}
