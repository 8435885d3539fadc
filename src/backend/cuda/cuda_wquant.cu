// The weight quantizer on the GPU (backend/wquant.h): one weight at a time, uploaded, quantized
// with the kernels of quant_kernels.cu / quant_ct_kernels.cu / gptq_cuda.cu (byte-identical to the
// CPU reference for round to nearest) and copied back into the job's output buffers. The
// per-format part (wq_quantize_device) is shared with the pipeline of cuda_wquant_pipe.cu.
#include <cstdlib>
#include <cstring>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_wquant_internal.h"
#include "backend/cuda/quant_ct_cuda.h"
#include "backend/cuda/quant_cuda.h"
#include "backend/wquant.h"
#include "base/sys.h"

struct g4q_wquant_gpu {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas; // GPTQ's factorization; created on first use
    wq_mem mem;
    wq_buf win, hess;    // the input bf16 and the input Hessian
    uint64_t hess_key;   // the key of the Hessian in hess (g4q_hess.key; 0: none kept)
    // GPTQ's inverse factor of that Hessian (fp32 [cols, cols]) with the damping it was made
    // with, and scratch for the factorization's dead columns
    wq_buf ufac, udead;
    uint64_t ufac_key;
    double ufac_damp;
    wq_exec x;           // the outputs' device buffers and host scratch (malloc'd)
};

// ---- buffers ----

void wq_mem_add(wq_mem *m, size_t bytes)
{
    if (m->mu) pthread_mutex_lock(m->mu);
    m->held += bytes;
    if (m->held > m->peak) m->peak = m->held;
    if (m->mu) pthread_mutex_unlock(m->mu);
}

void wq_mem_sub(wq_mem *m, size_t bytes)
{
    if (m->mu) pthread_mutex_lock(m->mu);
    m->held -= bytes;
    if (m->mu) pthread_mutex_unlock(m->mu);
}

void wq_mem_note(wq_mem *m, size_t transient)
{
    if (m->mu) pthread_mutex_lock(m->mu);
    if (m->held + transient > m->peak) m->peak = m->held + transient;
    if (m->mu) pthread_mutex_unlock(m->mu);
}

g4q_status wq_dev_ensure(g4q_ctx *ctx, wq_mem *mem, wq_buf *b, size_t bytes, const char *what)
{
    if (b->cap >= bytes) return G4Q_OK;
    wq_dev_free(mem, b);
    const size_t want = bytes + bytes / 8; // some headroom against regrowth
    cudaError_t e = cudaMalloc(&b->p, want);
    if (e != cudaSuccess) {
        b->p = nullptr;
        (void)cudaGetLastError(); // an allocation failure is not sticky: clear it
        return g4q_fail(ctx, G4Q_ERR_CUDA,
                        "GPU quantizer: cannot allocate %.1f MB of device memory for %s (%.1f MB "
                        "held): %s",
                        want / 1e6, what, mem->held / 1e6, cudaGetErrorString(e));
    }
    b->cap = want;
    wq_mem_add(mem, want);
    return G4Q_OK;
}

void wq_dev_free(wq_mem *mem, wq_buf *b)
{
    if (b->p) {
        cudaFree(b->p);
        wq_mem_sub(mem, b->cap);
    }
    b->p = nullptr;
    b->cap = 0;
}

g4q_status wq_host_ensure(g4q_ctx *ctx, wq_buf *b, size_t bytes, bool pinned, const char *what)
{
    if (b->cap >= bytes) return G4Q_OK;
    wq_host_free(b, pinned);
    const size_t want = bytes ? bytes : 1;
    if (pinned) {
        cudaError_t e = cudaHostAlloc(&b->p, want, cudaHostAllocDefault);
        if (e != cudaSuccess) {
            b->p = nullptr;
            (void)cudaGetLastError();
            return g4q_fail(ctx, G4Q_ERR_CUDA,
                            "GPU quantizer: cannot allocate %.1f MB of pinned host memory for %s: "
                            "%s",
                            want / 1e6, what, cudaGetErrorString(e));
        }
    } else if (!(b->p = malloc(want))) {
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "GPU quantizer: cannot allocate %.1f MB for %s",
                        want / 1e6, what);
    }
    b->cap = want;
    return G4Q_OK;
}

void wq_host_free(wq_buf *b, bool pinned)
{
    if (b->p) {
        if (pinned)
            cudaFreeHost(b->p);
        else
            free(b->p);
    }
    b->p = nullptr;
    b->cap = 0;
}

int wq_gpu_device(const g4q_wquant_gpu *q)
{
    return q->device;
}

void wq_gpu_note_peak(g4q_wquant_gpu *q, size_t pipe_peak)
{
    wq_mem_note(&q->mem, pipe_peak);
}

// ---- the quantizer object ----

extern "C" g4q_status g4q_wquant_gpu_create(g4q_ctx *ctx, g4q_wquant_gpu **out)
{
    *out = nullptr;
    g4q_wquant_gpu *q = static_cast<g4q_wquant_gpu *>(calloc(1, sizeof *q));
    if (!q) return g4q_fail(ctx, G4Q_ERR_NOMEM, "out of memory");
    cudaError_t e = cudaGetDevice(&q->device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&q->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(q);
        return g4q_fail(ctx, G4Q_ERR_CUDA, "cannot create a CUDA stream: %s",
                        cudaGetErrorString(e));
    }
    q->x.stream = q->stream;
    q->x.blas = &q->blas;
    q->x.mem = &q->mem;
    q->x.hpinned = false;
    *out = q;
    return G4Q_OK;
}

extern "C" void g4q_wquant_gpu_free(g4q_wquant_gpu *q)
{
    if (!q) return;
    wq_dev_free(&q->mem, &q->win);
    wq_dev_free(&q->mem, &q->hess);
    wq_dev_free(&q->mem, &q->ufac);
    wq_dev_free(&q->mem, &q->udead);
    for (int i = 0; i < 2; i++) {
        wq_dev_free(&q->mem, &q->x.dout[i]);
        wq_host_free(&q->x.hscratch[i], q->x.hpinned);
    }
    if (q->blas) cublasDestroy(q->blas);
    cudaStreamDestroy(q->stream);
    free(q);
}

extern "C" size_t g4q_wquant_gpu_peak_bytes(const g4q_wquant_gpu *q)
{
    return q ? q->mem.peak : 0;
}

extern "C" int g4q_wquant_gpu_supports(const g4q_wquant_job *job)
{
    switch (job->format) {
    case G4Q_LAYOUT_NVFP4_MO:
    case G4Q_LAYOUT_FP8_BLOCK:
    case G4Q_LAYOUT_INT4_GPTQ:
    case G4Q_LAYOUT_INT4_CT:
        return 1;
    case G4Q_LAYOUT_NVFP4_CT: // max scales, round to nearest (the CPU refuses the other methods)
        return !job->gptq && job->method == G4Q_SCALE_MAX;
    default:
        return 0;
    }
}

// ---- one job on the device ----

// Counts GPTQ's transient working memory (gptq_cuda.cu allocates it per tensor) in the peak.
static void note_gptq(wq_mem *m, int64_t rows, int64_t cols)
{
    const size_t nn = (size_t)cols * (size_t)cols;
    const size_t factor = 16 * nn, loop = 4 * nn + 4 * (size_t)rows * (size_t)(cols + 128);
    wq_mem_note(m, factor > loop ? factor : loop);
}

static g4q_status int4_job(g4q_ctx *ctx, wq_exec *x, const g4q_wquant_job *job, const uint16_t *d_w,
                           const g4q_hess *d_H)
{
    const g4q_layout *l = g4q_layout_get(job->format);
    const int group = l->group;
    const g4q_dtype sdt = l->t[g4q_layout_index(l, G4Q_LROLE_SCALES)].dtype;
    const int64_t rows = job->rows, cols = job->cols;
    int64_t groups = g4q_int4_group_count(cols, group);
    size_t nq = (size_t)(rows * cols), ns = (size_t)(rows * groups) * sizeof(float);
    G4Q_TRY(wq_dev_ensure(ctx, x->mem, &x->dout[0], nq, "INT4 codes"));
    G4Q_TRY(wq_dev_ensure(ctx, x->mem, &x->dout[1], ns, "INT4 scales"));
    int8_t *d_q = static_cast<int8_t *>(x->dout[0].p);
    float *d_s = static_cast<float *>(x->dout[1].p);
    if (job->gptq)
        G4Q_TRY(g4q_cuda_gptq_int4(ctx, job->name, *x->blas, d_w, rows, cols, group, job->method,
                                   sdt, g4q_hess_full(d_H), job->gptq_opts, d_q, d_s, x->stream));
    else
        G4Q_TRY(g4q_cuda_int4_quantize_h(ctx, job->name, d_w, rows, cols, group, job->method, sdt,
                                         d_H, d_q, d_s, x->stream));
    G4Q_TRY(wq_host_ensure(ctx, &x->hscratch[0], nq, x->hpinned, "INT4 codes"));
    G4Q_TRY(wq_host_ensure(ctx, &x->hscratch[1], ns, x->hpinned, "INT4 scales"));
    int8_t *hq = static_cast<int8_t *>(x->hscratch[0].p);
    float *hs = static_cast<float *>(x->hscratch[1].p);
    G4Q_CUDA_CHECK(cudaMemcpyAsync(hq, d_q, nq, cudaMemcpyDeviceToHost, x->stream));
    G4Q_CUDA_CHECK(cudaMemcpyAsync(hs, d_s, ns, cudaMemcpyDeviceToHost, x->stream));
    G4Q_CUDA_CHECK(cudaStreamSynchronize(x->stream));
    G4Q_TRY(g4q_wquant_pack_int4(ctx, job, hq, hs));
    if (job->deq) g4q_wquant_dequant(job, hq, hs);
    return G4Q_OK;
}

// Device buffers 0 and 1 sized for layout tensors 0 and 1 (codes, block scales).
static g4q_status ensure2(g4q_ctx *ctx, wq_exec *x, const g4q_wquant_job *job)
{
    const g4q_layout *l = g4q_layout_get(job->format);
    for (int k = 0; k < 2; k++)
        G4Q_TRY(wq_dev_ensure(ctx, x->mem, &x->dout[k],
                              g4q_layout_nbytes(&l->t[k], job->rows, job->cols, l->group),
                              k ? "block scales" : "codes"));
    return G4Q_OK;
}

// Copies layout tensors 0 and 1 back from device buffers 0 and 1 into job->out.
static g4q_status fetch2(g4q_ctx *ctx, wq_exec *x, const g4q_wquant_job *job)
{
    const g4q_layout *l = g4q_layout_get(job->format);
    for (int k = 0; k < 2; k++)
        G4Q_CUDA_CHECK(cudaMemcpyAsync(job->out[k], x->dout[k].p,
                                       g4q_layout_nbytes(&l->t[k], job->rows, job->cols, l->group),
                                       cudaMemcpyDeviceToHost, x->stream));
    G4Q_CUDA_CHECK(cudaStreamSynchronize(x->stream));
    return G4Q_OK;
}

g4q_status wq_quantize_device(g4q_ctx *ctx, wq_exec *x, const g4q_wquant_job *job,
                              const uint16_t *d_w, const g4q_hess *d_H)
{
    const char *name = job->name;
    const int64_t rows = job->rows, cols = job->cols;
    const size_t numel = (size_t)rows * (size_t)cols;
    const bool gptq = job->gptq != 0;
    if (gptq) { // (the GPTQ functions refuse a missing Hessian themselves)
        if (!x->blas)
            return g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': GPTQ here needs a cuBLAS handle",
                            name);
        if (!*x->blas && cublasCreate(x->blas) != CUBLAS_STATUS_SUCCESS) {
            *x->blas = nullptr;
            return g4q_fail(ctx, G4Q_ERR_CUDA, "cannot create a cuBLAS handle");
        }
        if (d_H) note_gptq(x->mem, rows, cols);
    }
    const g4q_scale_method m = job->method;
    cudaStream_t s = x->stream;
    switch (job->format) {
    case G4Q_LAYOUT_NVFP4_MO:
    case G4Q_LAYOUT_NVFP4_CT: {
        float amax = job->group_amax;
        if (!job->fused) G4Q_TRY(g4q_cuda_amax_bf16(ctx, name, d_w, numel, &amax, s));
        G4Q_TRY(ensure2(ctx, x, job));
        uint8_t *d_p = static_cast<uint8_t *>(x->dout[0].p);
        uint8_t *d_s = static_cast<uint8_t *>(x->dout[1].p);
        float *global = static_cast<float *>(job->out[2]); // weight_scale_2 / weight_global_scale
        if (job->format == G4Q_LAYOUT_NVFP4_CT)
            G4Q_TRY(g4q_cuda_nvfp4_quantize_ct(ctx, name, d_w, rows, cols, amax, d_p, d_s, global,
                                               s));
        else if (gptq)
            G4Q_TRY(g4q_cuda_gptq_nvfp4(ctx, name, *x->blas, d_w, rows, cols, amax, m,
                                        g4q_hess_full(d_H), job->gptq_opts, d_p, d_s, global, s));
        else
            G4Q_TRY(g4q_cuda_nvfp4_quantize_h(ctx, name, d_w, rows, cols, amax, m, d_H, d_p, d_s,
                                              global, s));
        G4Q_TRY(fetch2(ctx, x, job));
        break;
    }
    case G4Q_LAYOUT_FP8_BLOCK: {
        G4Q_TRY(ensure2(ctx, x, job));
        uint8_t *d_c = static_cast<uint8_t *>(x->dout[0].p);
        float *d_s = static_cast<float *>(x->dout[1].p);
        G4Q_TRY(
            gptq ? g4q_cuda_gptq_fp8_blocks(ctx, name, *x->blas, d_w, rows, cols, m,
                                            g4q_hess_full(d_H), job->gptq_opts, d_c, d_s, s)
                 : g4q_cuda_fp8_quantize_blocks_h(ctx, name, d_w, rows, cols, m, d_H, d_c, d_s, s));
        G4Q_TRY(fetch2(ctx, x, job));
        break;
    }
    case G4Q_LAYOUT_INT4_GPTQ:
    case G4Q_LAYOUT_INT4_CT:
        return int4_job(ctx, x, job, d_w, d_H);
    default:
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': no CUDA kernel for %s", name,
                        g4q_layout_name(job->format));
    }
    if (job->deq) g4q_wquant_dequant(job, nullptr, nullptr);
    return G4Q_OK;
}

extern "C" g4q_status g4q_wquant_gpu_run(g4q_ctx *ctx, g4q_wquant_gpu *q, const g4q_wquant_job *job)
{
    G4Q_TRY(g4q_wquant_check(ctx, job));
    if (!g4q_wquant_gpu_supports(job))
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "tensor '%s': no CUDA kernel for %s", job->name,
                        g4q_layout_name(job->format));
    const size_t wbytes = (size_t)job->rows * (size_t)job->cols * sizeof(uint16_t);
    G4Q_TRY(wq_dev_ensure(ctx, &q->mem, &q->win, wbytes, "the weight"));
    G4Q_CUDA_CHECK(cudaMemcpyAsync(q->win.p, job->w, wbytes, cudaMemcpyHostToDevice, q->stream));
    // job->H's entries as they are (every one, or the diagonal blocks) on the device; a job whose
    // key names the Hessian already there (the layer's q/k/v, gate/up) uploads nothing
    g4q_hess d_H{};
    const uint64_t key = job->H ? job->H->key : 0;
    if (job->H) {
        if (!key || key != q->hess_key) {
            const size_t hb = g4q_hess_count(job->H->n, job->H->block) * sizeof(float);
            q->hess_key = q->ufac_key = 0;
            G4Q_TRY(wq_dev_ensure(ctx, &q->mem, &q->hess, hb, "the Hessian"));
            G4Q_CUDA_CHECK(
                cudaMemcpyAsync(q->hess.p, job->H->h, hb, cudaMemcpyHostToDevice, q->stream));
            q->hess_key = key;
        }
        d_H = {static_cast<const float *>(q->hess.p), job->H->n, job->H->block, key};
    }
    g4q_wquant_job j = *job;
    g4q_gptq_opts go = job->gptq_opts ? *job->gptq_opts : g4q_gptq_opts{};
    if (job->gptq && job->H && key && !go.U) { // the factor, made once per key (same bytes)
        const double damp = go.damp > 0.0 ? go.damp : 0.01;
        if (q->ufac_key != key || q->ufac_damp != damp) {
            const int64_t n = job->cols;
            q->ufac_key = 0;
            if (!q->blas && cublasCreate(&q->blas) != CUBLAS_STATUS_SUCCESS) {
                q->blas = nullptr;
                return g4q_fail(ctx, G4Q_ERR_CUDA, "cannot create a cuBLAS handle");
            }
            G4Q_TRY(wq_dev_ensure(ctx, &q->mem, &q->ufac, (size_t)(n * n) * sizeof(float),
                                  "GPTQ's inverse factor"));
            G4Q_TRY(wq_dev_ensure(ctx, &q->mem, &q->udead, (size_t)n, "GPTQ's dead columns"));
            wq_mem_note(&q->mem, (size_t)(n * n) * 16); // the factorization's fp64 work memory
            const double t0 = g4q_now_seconds();
            G4Q_TRY(g4q_cuda_gptq_factor(ctx, job->name, q->blas, d_H.h, n, damp,
                                         static_cast<float *>(q->ufac.p),
                                         static_cast<uint8_t *>(q->udead.p), q->stream));
            q->ufac_key = key, q->ufac_damp = damp;
            g4q_log(ctx, G4Q_LOG_DEBUG, "%s: GPTQ inverse factor of %lld inputs: %.3f s", job->name,
                    (long long)n, g4q_now_seconds() - t0);
        }
        go.U = static_cast<const float *>(q->ufac.p);
        j.gptq_opts = &go;
    }
    return wq_quantize_device(ctx, &q->x, &j, static_cast<const uint16_t *>(q->win.p),
                              job->H ? &d_H : nullptr);
}
