// Device probe through the CUDA runtime. Also creates and destroys a cuBLAS handle when a GPU is
// present, so that "GPU present" means "GPU usable by the CUDA backend".
#include <cstdio>
#include <cstring>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/device.h"

extern "C" void g4q_device_probe(g4q_device_info *info)
{
    memset(info, 0, sizeof *info);
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
        snprintf(info->why_none, sizeof info->why_none, "%s",
                 err != cudaSuccess ? cudaGetErrorString(err) : "no device");
        cudaGetLastError(); /* clear the sticky error for later calls */
        return;
    }
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        snprintf(info->why_none, sizeof info->why_none, "cannot read device properties");
        return;
    }
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        snprintf(info->why_none, sizeof info->why_none, "cuBLAS initialisation failed");
        return;
    }
    cublasDestroy(h);
    info->count = n;
    snprintf(info->name, sizeof info->name, "%s", prop.name);
    info->total_memory = prop.totalGlobalMem;
    info->cc_major = prop.major;
    info->cc_minor = prop.minor;
}
