/* Backend-neutral helpers of backend.h. */
#include "backend/backend.h"

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
