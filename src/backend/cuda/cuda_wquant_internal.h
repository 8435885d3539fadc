// Shared by the GPU weight quantizer (cuda_wquant.cu) and its pipeline (cuda_wquant_pipe.cu):
// device and host buffers that grow on demand with the device bytes counted, and the
// quantization of one job whose weight is already on the device. C++ (nvcc) only.
#ifndef G4Q_BACKEND_CUDA_WQUANT_INTERNAL_H
#define G4Q_BACKEND_CUDA_WQUANT_INTERNAL_H

#include <pthread.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/wquant.h"

// Device bytes held now and at most; mu (may be NULL) guards them when several threads allocate.
struct wq_mem {
    size_t held, peak;
    pthread_mutex_t *mu;
};

void wq_mem_add(wq_mem *m, size_t bytes);
void wq_mem_sub(wq_mem *m, size_t bytes);
void wq_mem_note(wq_mem *m, size_t transient); // a peak of held + transient (GPTQ's work memory)

// A buffer that grows: device memory (cudaMalloc, counted in mem), or pinned host memory
// (cudaHostAlloc) when pinned, or malloc'd host memory.
struct wq_buf {
    void *p;
    size_t cap;
};

// Device buffer b holds at least `bytes` (some headroom is added on growth); the old contents are
// lost. `what` names it in the message of a failure (G4Q_ERR_CUDA, with the sizes).
g4q_status wq_dev_ensure(g4q_ctx *ctx, wq_mem *mem, wq_buf *b, size_t bytes, const char *what);
void wq_dev_free(wq_mem *mem, wq_buf *b);
// Host buffer: pinned (cudaHostAlloc, G4Q_ERR_CUDA on failure) or malloc'd (G4Q_ERR_NOMEM).
g4q_status wq_host_ensure(g4q_ctx *ctx, wq_buf *b, size_t bytes, bool pinned, const char *what);
void wq_host_free(wq_buf *b, bool pinned);

// Where a job runs on the device: its stream, the lazily created cuBLAS handle (GPTQ; may be
// NULL when the caller never runs GPTQ), device buffers 0 (codes) and 1 (scales) of the outputs,
// and host scratch 0 (INT4 codes int8 [rows, cols]) and 1 (INT4 fp32 scales) with hpinned saying
// whether those are pinned.
struct wq_exec {
    cudaStream_t stream;
    cublasHandle_t *blas;
    wq_mem *mem;
    wq_buf dout[2];
    wq_buf hscratch[2];
    bool hpinned;
};

// Quantizes job (g4q_wquant_gpu_supports; g4q_wquant_check passed) whose weight bf16
// [rows, cols] is at d_w on the device (and job->H, held as it is, at d_H->h when job->H, else
// d_H NULL), filling the job's host outputs job->out (and job->deq) exactly as
// g4q_wquant_gpu_run does. The copies back are ordered on x->stream, which is synchronised
// before return. Errors as g4q_wquant_gpu_run.
g4q_status wq_quantize_device(g4q_ctx *ctx, wq_exec *x, const g4q_wquant_job *job,
                              const uint16_t *d_w, const g4q_hess *d_H);

// The device of a GPU quantizer, and adding a pipe's peak of device bytes to its own (at the
// pipe's end: the quantizer's held bytes plus the pipe's peak).
int wq_gpu_device(const g4q_wquant_gpu *q);
void wq_gpu_note_peak(g4q_wquant_gpu *q, size_t pipe_peak);

#endif
