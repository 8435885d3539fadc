// The weight quantizer on the GPU (backend/wquant.h): one weight at a time, uploaded, quantized
// with the kernels of quant_kernels.cu / gptq_cuda.cu (byte-identical to the CPU reference for
// round to nearest) and copied back into the job's output buffers.
#include <cstdlib>
#include <cstring>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/quant_cuda.h"
#include "backend/wquant.h"

struct g4q_wquant_gpu {
    cudaStream_t stream;
    cublasHandle_t blas; // GPTQ's factorization; created on first use
    void *buf[4];        // 0: input bf16, 1: codes, 2: scales, 3: the input Hessian
    size_t cap[4];
    size_t held, peak;
};

// Counts GPTQ's transient working memory (gptq_cuda.cu allocates it per tensor) in the peak.
static void note_gptq(g4q_wquant_gpu *q, int64_t rows, int64_t cols)
{
    const size_t nn = (size_t)cols * (size_t)cols;
    const size_t factor = 16 * nn, loop = 4 * nn + 4 * (size_t)rows * (size_t)(cols + 128);
    const size_t w = q->held + (factor > loop ? factor : loop);
    if (w > q->peak) q->peak = w;
}

static g4q_status ensure(g4q_ctx *ctx, g4q_wquant_gpu *q, int i, size_t bytes)
{
    if (q->cap[i] >= bytes) return G4Q_OK;
    if (q->buf[i]) {
        G4Q_CUDA_CHECK(cudaFree(q->buf[i]));
        q->held -= q->cap[i];
        q->buf[i] = nullptr;
        q->cap[i] = 0;
    }
    size_t want = bytes + bytes / 8; // some headroom against regrowth
    G4Q_CUDA_CHECK(cudaMalloc(&q->buf[i], want));
    q->cap[i] = want;
    q->held += want;
    if (q->held > q->peak) q->peak = q->held;
    return G4Q_OK;
}

extern "C" g4q_status g4q_wquant_gpu_create(g4q_ctx *ctx, g4q_wquant_gpu **out)
{
    *out = nullptr;
    g4q_wquant_gpu *q = static_cast<g4q_wquant_gpu *>(calloc(1, sizeof *q));
    if (!q) return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    cudaError_t e = cudaStreamCreateWithFlags(&q->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(q);
        return g4q_fail(ctx, G4Q_ERR_CUDA, "cannot create a CUDA stream: %s",
                        cudaGetErrorString(e));
    }
    *out = q;
    return G4Q_OK;
}

extern "C" void g4q_wquant_gpu_free(g4q_wquant_gpu *q)
{
    if (!q) return;
    for (int i = 0; i < 4; i++)
        if (q->buf[i]) cudaFree(q->buf[i]);
    if (q->blas) cublasDestroy(q->blas);
    cudaStreamDestroy(q->stream);
    free(q);
}

extern "C" size_t g4q_wquant_gpu_peak_bytes(const g4q_wquant_gpu *q)
{
    return q ? q->peak : 0;
}

extern "C" int g4q_wquant_gpu_supports(const g4q_wquant_job *job)
{
    switch (job->format) {
    case G4Q_LAYOUT_NVFP4_MO:
    case G4Q_LAYOUT_FP8_BLOCK:
    case G4Q_LAYOUT_INT4_GPTQ:
    case G4Q_LAYOUT_INT4_CT:
        return 1;
    default:
        return 0;
    }
}

static g4q_status int4_job(g4q_ctx *ctx, g4q_wquant_gpu *q, const g4q_wquant_job *job,
                           const float *d_H)
{
    const g4q_layout *l = g4q_layout_get(job->format);
    const int group = l->group;
    const g4q_dtype sdt = l->t[g4q_layout_index(l, G4Q_LROLE_SCALES)].dtype;
    const int64_t rows = job->rows, cols = job->cols;
    int64_t groups = g4q_int4_group_count(cols, group);
    size_t nq = (size_t)(rows * cols), ns = (size_t)(rows * groups) * sizeof(float);
    G4Q_TRY(ensure(ctx, q, 1, nq));
    G4Q_TRY(ensure(ctx, q, 2, ns));
    const uint16_t *d_w = static_cast<const uint16_t *>(q->buf[0]);
    int8_t *d_q = static_cast<int8_t *>(q->buf[1]);
    float *d_s = static_cast<float *>(q->buf[2]);
    if (job->gptq)
        G4Q_TRY(g4q_cuda_gptq_int4(ctx, job->name, q->blas, d_w, rows, cols, group, job->method,
                                   sdt, d_H, job->gptq_opts, d_q, d_s, q->stream));
    else
        G4Q_TRY(g4q_cuda_int4_quantize_h(ctx, job->name, d_w, rows, cols, group, job->method, sdt,
                                         d_H, d_q, d_s, q->stream));
    int8_t *hq = static_cast<int8_t *>(malloc(nq));
    float *hs = static_cast<float *>(malloc(ns));
    g4q_status st = (hq && hs) ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    if (st == G4Q_OK && (cudaMemcpy(hq, q->buf[1], nq, cudaMemcpyDeviceToHost) != cudaSuccess ||
                         cudaMemcpy(hs, q->buf[2], ns, cudaMemcpyDeviceToHost) != cudaSuccess))
        st = g4q_fail(ctx, G4Q_ERR_CUDA, "%s: copying INT4 codes back failed", job->name);
    if (st == G4Q_OK) st = g4q_wquant_pack_int4(ctx, job, hq, hs);
    if (st == G4Q_OK && job->deq) g4q_wquant_dequant(job, hq, hs);
    free(hq);
    free(hs);
    return st;
}

// Copies layout tensors 0 and 1 (codes, block scales) back from device buffers 1 and 2.
static g4q_status fetch2(g4q_ctx *ctx, g4q_wquant_gpu *q, const g4q_wquant_job *job)
{
    const g4q_layout *l = g4q_layout_get(job->format);
    for (int k = 0; k < 2; k++)
        G4Q_CUDA_CHECK(cudaMemcpy(job->out[k], q->buf[1 + k],
                                  g4q_layout_nbytes(&l->t[k], job->rows, job->cols, l->group),
                                  cudaMemcpyDeviceToHost));
    return G4Q_OK;
}

// Device buffers 1 and 2 sized for layout tensors 0 and 1.
static g4q_status ensure2(g4q_ctx *ctx, g4q_wquant_gpu *q, const g4q_wquant_job *job)
{
    const g4q_layout *l = g4q_layout_get(job->format);
    for (int k = 0; k < 2; k++)
        G4Q_TRY(ensure(ctx, q, 1 + k, g4q_layout_nbytes(&l->t[k], job->rows, job->cols, l->group)));
    return G4Q_OK;
}

extern "C" g4q_status g4q_wquant_gpu_run(g4q_ctx *ctx, g4q_wquant_gpu *q, const g4q_wquant_job *job)
{
    G4Q_TRY(g4q_wquant_check(ctx, job));
    const char *name = job->name;
    const int64_t rows = job->rows, cols = job->cols;
    const size_t numel = (size_t)rows * (size_t)cols, wbytes = numel * sizeof(uint16_t);
    G4Q_TRY(ensure(ctx, q, 0, wbytes));
    G4Q_CUDA_CHECK(cudaMemcpyAsync(q->buf[0], job->w, wbytes, cudaMemcpyHostToDevice, q->stream));
    const uint16_t *d_w = static_cast<const uint16_t *>(q->buf[0]);
    const float *d_H = nullptr;
    const bool gptq = job->gptq != 0;
    if (job->H) {
        const size_t hb = (size_t)cols * (size_t)cols * sizeof(float);
        G4Q_TRY(ensure(ctx, q, 3, hb));
        G4Q_CUDA_CHECK(cudaMemcpyAsync(q->buf[3], job->H, hb, cudaMemcpyHostToDevice, q->stream));
        d_H = static_cast<const float *>(q->buf[3]);
        if (!q->blas && gptq) {
            if (cublasCreate(&q->blas) != CUBLAS_STATUS_SUCCESS)
                return g4q_fail(ctx, G4Q_ERR_CUDA, "cannot create a cuBLAS handle");
        }
        if (gptq) note_gptq(q, rows, cols);
    }
    const g4q_scale_method m = job->method;
    g4q_status st = G4Q_OK;
    switch (job->format) {
    case G4Q_LAYOUT_NVFP4_MO: {
        float amax = job->group_amax;
        if (!job->fused) G4Q_TRY(g4q_cuda_amax_bf16(ctx, name, d_w, numel, &amax, q->stream));
        G4Q_TRY(ensure2(ctx, q, job));
        uint8_t *d_p = static_cast<uint8_t *>(q->buf[1]), *d_s = static_cast<uint8_t *>(q->buf[2]);
        float *wsf2 = static_cast<float *>(job->out[2]);
        G4Q_TRY(gptq ? g4q_cuda_gptq_nvfp4(ctx, name, q->blas, d_w, rows, cols, amax, m, d_H,
                                           job->gptq_opts, d_p, d_s, wsf2, q->stream)
                     : g4q_cuda_nvfp4_quantize_h(ctx, name, d_w, rows, cols, amax, m, d_H, d_p, d_s,
                                                 wsf2, q->stream));
        st = fetch2(ctx, q, job);
        break;
    }
    case G4Q_LAYOUT_FP8_BLOCK: {
        G4Q_TRY(ensure2(ctx, q, job));
        uint8_t *d_c = static_cast<uint8_t *>(q->buf[1]);
        float *d_s = static_cast<float *>(q->buf[2]);
        G4Q_TRY(gptq ? g4q_cuda_gptq_fp8_blocks(ctx, name, q->blas, d_w, rows, cols, m, d_H,
                                                job->gptq_opts, d_c, d_s, q->stream)
                     : g4q_cuda_fp8_quantize_blocks_h(ctx, name, d_w, rows, cols, m, d_H, d_c, d_s,
                                                      q->stream));
        st = fetch2(ctx, q, job);
        break;
    }
    case G4Q_LAYOUT_INT4_GPTQ:
    case G4Q_LAYOUT_INT4_CT:
        return int4_job(ctx, q, job, d_H);
    default:
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': no CUDA kernel for %s", name,
                        g4q_layout_name(job->format));
    }
    if (st == G4Q_OK && job->deq) g4q_wquant_dequant(job, nullptr, nullptr);
    return st;
}
