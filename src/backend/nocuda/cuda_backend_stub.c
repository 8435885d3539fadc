/* The CUDA backend constructors for builds without CUDA (G4Q_CUDA=OFF). */
#include "backend/cuda/cuda_backend.h"

g4q_status g4q_backend_cuda_create_opts(g4q_ctx *ctx, const g4q_cuda_opts *opts, g4q_backend **out)
{
    (void)opts;
    *out = NULL;
    return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                    "cuda backend: this build has no CUDA support (configure with -DG4Q_CUDA=ON)");
}

g4q_status g4q_backend_cuda_create(g4q_ctx *ctx, g4q_backend **out)
{
    return g4q_backend_cuda_create_opts(ctx, NULL, out);
}

int g4q_cuda_attention_fused(g4q_backend *be, int cap, int nh, int nkv, int hd)
{
    (void)be, (void)cap, (void)nh, (void)nkv, (void)hd;
    return 0;
}
