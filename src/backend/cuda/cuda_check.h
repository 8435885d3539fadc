/*
 * The one CUDA / cuBLAS error-check macro pair. Use inside functions that take a g4q_ctx *ctx and
 * return g4q_status; after every kernel launch use G4Q_CUDA_CHECK(cudaGetLastError()).
 */
#ifndef G4Q_BACKEND_CUDA_CHECK_H
#define G4Q_BACKEND_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "base/ctx.h"

#define G4Q_CUDA_CHECK(expr)                                                                       \
    do {                                                                                           \
        cudaError_t g4q_cu_err_ = (expr);                                                          \
        if (g4q_cu_err_ != cudaSuccess)                                                            \
            return g4q_fail(ctx, G4Q_ERR_CUDA, "%s:%d: %s: %s", __FILE__, __LINE__, #expr,         \
                            cudaGetErrorString(g4q_cu_err_));                                      \
    } while (0)

#define G4Q_CUBLAS_CHECK(expr)                                                                     \
    do {                                                                                           \
        cublasStatus_t g4q_cb_err_ = (expr);                                                       \
        if (g4q_cb_err_ != CUBLAS_STATUS_SUCCESS)                                                  \
            return g4q_fail(ctx, G4Q_ERR_CUDA, "%s:%d: %s: %s", __FILE__, __LINE__, #expr,         \
                            cublasGetStatusString(g4q_cb_err_));                                   \
    } while (0)

#endif
