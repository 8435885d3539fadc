// GPU path of the exporter: one planned tensor at a time, uploaded, quantized with the kernels of
// quant_kernels.cu (byte-identical to the CPU reference) and copied back into the output buffers.
#include <cstdlib>
#include <cstring>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/quant_cuda.h"
#include "export/quantize_item.h"
#include "quant/quant.h"

struct g4q_gpu_quantizer {
    cudaStream_t stream;
    cublasHandle_t blas; // GPTQ's factorization; created on first use
    void *buf[4];    // 0: input bf16, 1: codes, 2: scales, 3: the input Hessian (GPTQ)
    size_t cap[4];
    size_t held, peak;
};

// Counts GPTQ's transient working memory (gptq_cuda.cu allocates it per tensor) in the peak.
static void note_gptq(g4q_gpu_quantizer *q, int64_t rows, int64_t cols)
{
    const size_t nn = (size_t)cols * (size_t)cols;
    const size_t factor = 16 * nn, loop = 4 * nn + 4 * (size_t)rows * (size_t)(cols + 128);
    const size_t w = q->held + (factor > loop ? factor : loop);
    if (w > q->peak) q->peak = w;
}

static g4q_status ensure(g4q_ctx *ctx, g4q_gpu_quantizer *q, int i, size_t bytes)
{
    if (q->cap[i] >= bytes)
        return G4Q_OK;
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
    if (q->held > q->peak)
        q->peak = q->held;
    return G4Q_OK;
}

extern "C" g4q_status g4q_gpu_quantizer_create(g4q_ctx *ctx, g4q_gpu_quantizer **out)
{
    *out = nullptr;
    g4q_gpu_quantizer *q = static_cast<g4q_gpu_quantizer *>(calloc(1, sizeof *q));
    if (!q)
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    cudaError_t e = cudaStreamCreateWithFlags(&q->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(q);
        return g4q_fail(ctx, G4Q_ERR_CUDA, "cannot create a CUDA stream: %s", cudaGetErrorString(e));
    }
    *out = q;
    return G4Q_OK;
}

extern "C" void g4q_gpu_quantizer_free(g4q_gpu_quantizer *q)
{
    if (!q)
        return;
    for (int i = 0; i < 4; i++)
        if (q->buf[i])
            cudaFree(q->buf[i]);
    if (q->blas) cublasDestroy(q->blas);
    cudaStreamDestroy(q->stream);
    free(q);
}

extern "C" size_t g4q_gpu_quantizer_peak_bytes(const g4q_gpu_quantizer *q)
{
    return q ? q->peak : 0;
}

extern "C" int g4q_gpu_quantizer_supports(const g4q_plan_item *it)
{
    switch (it->format) {
    case G4Q_PF_NVFP4_MO:
    case G4Q_PF_FP8_BLOCK:
    case G4Q_PF_INT4_GPTQ:
    case G4Q_PF_INT4_CT:
        return 1;
    default:
        return 0;
    }
}

static g4q_scale_method method_of(const g4q_plan_item *it) { return g4q_plan_item_method(it); }

static g4q_status int4_item(g4q_ctx *ctx, g4q_gpu_quantizer *q, const g4q_plan_item *it,
                            int64_t rows, int64_t cols, const float *d_H, void **bufs, float *deq)
{
    const int group = 128;
    int64_t groups = g4q_int4_group_count(cols, group);
    size_t nq = (size_t)(rows * cols), ns = (size_t)(rows * groups) * sizeof(float);
    G4Q_TRY(ensure(ctx, q, 1, nq));
    G4Q_TRY(ensure(ctx, q, 2, ns));
    g4q_dtype sdt = it->format == G4Q_PF_INT4_GPTQ ? G4Q_DT_F16 : G4Q_DT_BF16;
    const uint16_t *d_w = static_cast<const uint16_t *>(q->buf[0]);
    int8_t *d_q = static_cast<int8_t *>(q->buf[1]);
    float *d_s = static_cast<float *>(q->buf[2]);
    if (it->decision.algo == G4Q_RECIPE_ALGO_GPTQ)
        G4Q_TRY(g4q_cuda_gptq_int4(ctx, it->src->name, q->blas, d_w, rows, cols, group,
                                   method_of(it), sdt, d_H, NULL, d_q, d_s, q->stream));
    else
        G4Q_TRY(g4q_cuda_int4_quantize_h(ctx, it->src->name, d_w, rows, cols, group,
                                         method_of(it), sdt, d_H, d_q, d_s, q->stream));
    int8_t *hq = static_cast<int8_t *>(malloc(nq));
    float *hs = static_cast<float *>(malloc(ns));
    g4q_status st = (hq && hs) ? G4Q_OK : g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    if (st == G4Q_OK && (cudaMemcpy(hq, q->buf[1], nq, cudaMemcpyDeviceToHost) != cudaSuccess ||
                         cudaMemcpy(hs, q->buf[2], ns, cudaMemcpyDeviceToHost) != cudaSuccess))
        st = g4q_fail(ctx, G4Q_ERR_CUDA, "%s: copying INT4 codes back failed", it->src->name);
    if (st == G4Q_OK)
        st = g4q_quantize_item_pack_int4(ctx, it, hq, hs, bufs);
    if (st == G4Q_OK && deq) g4q_quantize_item_dequant(it, bufs, hq, hs, deq);
    free(hq);
    free(hs);
    return st;
}

// Copies outputs 0 and 1 back from device buffers 1 and 2.
static g4q_status fetch2(g4q_ctx *ctx, g4q_gpu_quantizer *q, const g4q_plan_item *it, void **bufs)
{
    G4Q_CUDA_CHECK(cudaMemcpy(bufs[0], q->buf[1], it->out[0].nbytes, cudaMemcpyDeviceToHost));
    G4Q_CUDA_CHECK(cudaMemcpy(bufs[1], q->buf[2], it->out[1].nbytes, cudaMemcpyDeviceToHost));
    return G4Q_OK;
}

extern "C" g4q_status g4q_quantize_item_cuda(g4q_ctx *ctx, g4q_gpu_quantizer *q,
                                             const g4q_plan_item *it, float group_amax,
                                             const float *H, void **bufs, float *deq)
{
    const g4q_tensor *t = it->src;
    if (t->dtype != G4Q_DT_BF16 || t->ndim != 2)
        return g4q_fail(ctx, G4Q_ERR_SHAPE, "tensor '%s': quantization needs a 2-D BF16 weight",
                        t->name);
    int64_t rows = t->shape[0], cols = t->shape[1];
    G4Q_TRY(ensure(ctx, q, 0, t->nbytes));
    G4Q_CUDA_CHECK(cudaMemcpyAsync(q->buf[0], t->data, t->nbytes, cudaMemcpyHostToDevice,
                                   q->stream));
    const uint16_t *d_w = static_cast<const uint16_t *>(q->buf[0]);
    const float *d_H = nullptr;
    if (H) {
        const size_t hb = (size_t)cols * (size_t)cols * sizeof(float);
        G4Q_TRY(ensure(ctx, q, 3, hb));
        G4Q_CUDA_CHECK(cudaMemcpyAsync(q->buf[3], H, hb, cudaMemcpyHostToDevice, q->stream));
        d_H = static_cast<const float *>(q->buf[3]);
        if (!q->blas && it->decision.algo == G4Q_RECIPE_ALGO_GPTQ) {
            if (cublasCreate(&q->blas) != CUBLAS_STATUS_SUCCESS)
                return g4q_fail(ctx, G4Q_ERR_CUDA, "cannot create a cuBLAS handle");
        }
        if (it->decision.algo == G4Q_RECIPE_ALGO_GPTQ) note_gptq(q, rows, cols);
    }
    const bool gptq = it->decision.algo == G4Q_RECIPE_ALGO_GPTQ;
    g4q_status st = G4Q_OK;
    switch (it->format) {
    case G4Q_PF_NVFP4_MO: {
        float amax = group_amax;
        if (it->group < 0)
            G4Q_TRY(g4q_cuda_amax_bf16(ctx, t->name, d_w, t->numel, &amax, q->stream));
        G4Q_TRY(ensure(ctx, q, 1, it->out[0].nbytes));
        G4Q_TRY(ensure(ctx, q, 2, it->out[1].nbytes));
        uint8_t *d_p = static_cast<uint8_t *>(q->buf[1]), *d_s = static_cast<uint8_t *>(q->buf[2]);
        float *wsf2 = static_cast<float *>(bufs[2]);
        G4Q_TRY(gptq ? g4q_cuda_gptq_nvfp4(ctx, t->name, q->blas, d_w, rows, cols, amax,
                                           method_of(it), d_H, NULL, d_p, d_s, wsf2, q->stream)
                     : g4q_cuda_nvfp4_quantize_h(ctx, t->name, d_w, rows, cols, amax,
                                                 method_of(it), d_H, d_p, d_s, wsf2, q->stream));
        st = fetch2(ctx, q, it, bufs);
        break;
    }
    case G4Q_PF_FP8_BLOCK: {
        G4Q_TRY(ensure(ctx, q, 1, it->out[0].nbytes));
        G4Q_TRY(ensure(ctx, q, 2, it->out[1].nbytes));
        uint8_t *d_c = static_cast<uint8_t *>(q->buf[1]);
        float *d_s = static_cast<float *>(q->buf[2]);
        G4Q_TRY(gptq ? g4q_cuda_gptq_fp8_blocks(ctx, t->name, q->blas, d_w, rows, cols,
                                                method_of(it), d_H, NULL, d_c, d_s, q->stream)
                     : g4q_cuda_fp8_quantize_blocks_h(ctx, t->name, d_w, rows, cols,
                                                      method_of(it), d_H, d_c, d_s, q->stream));
        st = fetch2(ctx, q, it, bufs);
        break;
    }
    case G4Q_PF_INT4_GPTQ:
    case G4Q_PF_INT4_CT:
        return int4_item(ctx, q, it, rows, cols, d_H, bufs, deq);
    default:
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': no CUDA kernel for %s", t->name,
                        g4q_plan_format_name(it->format));
    }
    if (st == G4Q_OK && deq) g4q_quantize_item_dequant(it, bufs, NULL, NULL, deq);
    return st;
}
