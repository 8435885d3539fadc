/*
 * The CPU backend: host memory, fp32 activations and KV caches, fp32 accumulation, OpenMP over
 * rows / output features with ctx->threads threads (0 = the OpenMP default). Weights (BF16 and
 * every packed format of backend.h) are widened to fp32 on the fly, 16 rows at a time into a
 * per-thread scratch; nothing is expanded to a full fp32 copy. Buffers are F32 only.
 */
#ifndef G4Q_BACKEND_CPU_CPU_H
#define G4Q_BACKEND_CPU_CPU_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates a CPU backend reporting errors to ctx (which must outlive it). Free with
 * g4q_backend_free(). */
g4q_status g4q_backend_cpu_create(g4q_ctx *ctx, g4q_backend **out);

#ifdef __cplusplus
}
#endif
#endif
