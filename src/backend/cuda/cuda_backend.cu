// CUDA backend: creation and destruction (BF16 or F32 mode), device memory with peak accounting,
// upload / download / copy_rows, weight binding. The ops live in cuda_gemm.cu, cuda_norm.cu,
// cuda_rope.cu, cuda_attention.cu and cuda_elementwise.cu; F32 mode's weights and GEMM in
// cuda_f32.cu; deferred binding (weight_bind_deferred / weight_upload) in cuda_upload.cu.
#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_internal.h"
#include "base/bf16.h"

#define CUBLAS_WS_BYTES ((size_t)32 << 20)
#define HOST_CHUNK ((size_t)1 << 20) /* elements converted per round through the pinned stage */

g4q_status g4q_cuda_alloc(g4q_backend *be, size_t bytes, const char *what, void **out)
{
    g4q_ctx *ctx = be->ctx;
    *out = NULL;
    if (bytes == 0) return G4Q_OK;
    cudaError_t e = cudaMalloc(out, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        *out = NULL;
        return g4q_fail(ctx, e == cudaErrorMemoryAllocation ? G4Q_ERR_NOMEM : G4Q_ERR_CUDA,
                        "cuda backend: %s: cannot allocate %zu bytes of device memory: %s", what,
                        bytes, cudaGetErrorString(e));
    }
    g4q_cuda_state *s = g4q_cuda_st(be);
    s->cur += bytes;
    if (s->cur > s->peak) s->peak = s->cur;
    return G4Q_OK;
}

void g4q_cuda_release(g4q_backend *be, void *p, size_t bytes)
{
    if (!p) return;
    cudaFree(p);
    g4q_cuda_st(be)->cur -= bytes;
    g4q_cuda_st(be)->epoch++;
}

g4q_status g4q_cuda_upload_bytes(g4q_backend *be, void *dst, const void *src, size_t bytes,
                                 const char *what)
{
    cudaStream_t st = g4q_cuda_st(be)->stream;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    if (e != cudaSuccess)
        return g4q_fail(be->ctx, G4Q_ERR_CUDA, "cuda backend: %s: upload of %zu bytes: %s", what,
                        bytes, cudaGetErrorString(e));
    return G4Q_OK;
}

g4q_status g4q_cuda_scratch(g4q_backend *be, size_t bytes, void **out)
{
    g4q_cuda_state *s = g4q_cuda_st(be);
    g4q_ctx *ctx = be->ctx;
    if (bytes > s->scratch_bytes) {
        if (s->capturing)
            return g4q_fail(ctx, G4Q_ERR_INTERNAL,
                            "cuda backend: attention scratch must grow while recording a graph "
                            "(run the sequence once before recording it)");
        G4Q_CUDA_CHECK(cudaStreamSynchronize(s->stream)); /* pending kernels may use it */
        g4q_cuda_release(be, s->scratch, s->scratch_bytes);
        s->scratch = NULL;
        s->scratch_bytes = 0;
        size_t want = bytes + bytes / 4; /* some headroom against repeated growth */
        G4Q_TRY(g4q_cuda_alloc(be, want, "attention scratch", &s->scratch));
        s->scratch_bytes = want;
    }
    *out = s->scratch;
    return G4Q_OK;
}

static void cuda_destroy(g4q_backend *be)
{
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (s) {
        if (s->stream) cudaStreamSynchronize(s->stream);
        g4q_cuda_upload_destroy(be);
        g4q_cuda_release(be, s->scratch, s->scratch_bytes);
        g4q_cuda_release(be, s->blas_ws, s->blas_ws_bytes);
        g4q_cuda_release(be, s->amax_dev, sizeof(float));
        g4q_cuda_release(be, s->pick_dev, 2 * sizeof(unsigned long long));
        g4q_cuda_release(be, s->ids_dev, s->ids_cap * sizeof(int32_t));
        g4q_cuda_release(be, s->pos_dev, sizeof(int));
        g4q_cuda_release(be, s->step_done, G4Q_CUDA_STEP_MAX_HEADS * sizeof(unsigned));
        if (s->stage) cudaFreeHost(s->stage);
        if (s->blas) cublasDestroy(s->blas);
        if (s->stream) cudaStreamDestroy(s->stream);
        free(s);
    }
    free(be);
}

static size_t cuda_mem_peak(g4q_backend *be)
{
    return g4q_cuda_st(be)->peak;
}

static g4q_status cuda_buf_alloc(g4q_backend *be, g4q_dtype dtype, size_t count, g4q_buf **out)
{
    *out = NULL;
    if (dtype != G4Q_DT_F32 && dtype != G4Q_DT_BF16)
        return g4q_fail(be->ctx, G4Q_ERR_UNSUPPORTED, "cuda backend: %s buffers are not supported",
                        g4q_dtype_name(dtype));
    g4q_buf *b = (g4q_buf *)calloc(1, sizeof *b);
    if (!b) return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "cuda backend: out of host memory");
    b->dtype = dtype;
    b->count = count;
    b->bytes = count * g4q_dtype_size(dtype);
    g4q_status st = g4q_cuda_alloc(be, b->bytes, "buffer", &b->data);
    if (st != G4Q_OK) {
        free(b);
        return st;
    }
    *out = b;
    return G4Q_OK;
}

static void cuda_buf_free(g4q_backend *be, g4q_buf *buf)
{
    if (!buf) return;
    cudaStreamSynchronize(g4q_cuda_st(be)->stream);
    g4q_cuda_release(be, buf->data, buf->bytes);
    free(buf);
}

static g4q_status cuda_upload(g4q_backend *be, g4q_buf *dst, size_t off, const float *src,
                              size_t count)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (off > dst->count || count > dst->count - off)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda upload: [%zu, +%zu) outside %zu", off, count,
                        dst->count);
    if (!count) return G4Q_OK;
    if (dst->dtype == G4Q_DT_F32) {
        G4Q_CUDA_CHECK(cudaMemcpyAsync((float *)dst->data + off, src, count * sizeof(float),
                                       cudaMemcpyHostToDevice, s->stream));
        G4Q_CUDA_CHECK(cudaStreamSynchronize(s->stream));
        return G4Q_OK;
    }
    size_t chunk = count < HOST_CHUNK ? count : HOST_CHUNK;
    uint16_t *tmp = s->stage;
    cudaError_t e = cudaSuccess;
    for (size_t done = 0; done < count && e == cudaSuccess; done += chunk) {
        size_t m = count - done < chunk ? count - done : chunk;
        for (size_t i = 0; i < m; i++)
            tmp[i] = g4q_f32_to_bf16(src[done + i]);
        e = cudaMemcpyAsync((uint16_t *)dst->data + off + done, tmp, m * sizeof(uint16_t),
                            cudaMemcpyHostToDevice, s->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(s->stream); /* before reusing stage */
    }
    G4Q_CUDA_CHECK(e);
    return G4Q_OK;
}

static g4q_status cuda_download(g4q_backend *be, const g4q_buf *src, size_t off, float *dst,
                                size_t count)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (off > src->count || count > src->count - off)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda download: [%zu, +%zu) outside %zu", off, count,
                        src->count);
    G4Q_CUDA_CHECK(cudaStreamSynchronize(s->stream));
    if (!count) return G4Q_OK;
    if (src->dtype == G4Q_DT_F32) {
        G4Q_CUDA_CHECK(cudaMemcpy(dst, (const float *)src->data + off, count * sizeof(float),
                                  cudaMemcpyDeviceToHost));
        return G4Q_OK;
    }
    size_t chunk = count < HOST_CHUNK ? count : HOST_CHUNK;
    uint16_t *tmp = s->stage;
    cudaError_t e = cudaSuccess;
    for (size_t done = 0; done < count && e == cudaSuccess; done += chunk) {
        size_t m = count - done < chunk ? count - done : chunk;
        e = cudaMemcpy(tmp, (const uint16_t *)src->data + off + done, m * sizeof(uint16_t),
                       cudaMemcpyDeviceToHost);
        for (size_t i = 0; e == cudaSuccess && i < m; i++)
            dst[done + i] = g4q_bf16_to_f32(tmp[i]);
    }
    G4Q_CUDA_CHECK(e);
    return G4Q_OK;
}

static g4q_status cuda_copy_rows(g4q_backend *be, g4q_buf *dst, size_t dst_row, const g4q_buf *src,
                                 size_t src_row, size_t nrows, size_t row_len)
{
    g4q_ctx *ctx = be->ctx;
    if ((dst_row + nrows) * row_len > dst->count || (src_row + nrows) * row_len > src->count ||
        dst->dtype != src->dtype)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "cuda copy_rows: rows out of range");
    size_t es = g4q_dtype_size(dst->dtype);
    if (!nrows || !row_len) return G4Q_OK;
    G4Q_CUDA_CHECK(cudaMemcpyAsync((char *)dst->data + dst_row * row_len * es,
                                   (const char *)src->data + src_row * row_len * es,
                                   nrows * row_len * es, cudaMemcpyDeviceToDevice,
                                   g4q_cuda_st(be)->stream));
    return G4Q_OK;
}

g4q_status g4q_cuda_weight_new(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight **out)
{
    const char *name = d->name ? d->name : "(unnamed)";
    *out = NULL;
    if (d->rows <= 0 || d->cols <= 0 || !d->data)
        return g4q_fail(be->ctx, G4Q_ERR_INVALID, "cuda backend: weight '%s': empty", name);
    G4Q_TRY(g4q_weight_desc_check_act(be->ctx, "cuda", d));
    g4q_bweight *w = (g4q_bweight *)calloc(1, sizeof *w);
    if (!w) return g4q_fail(be->ctx, G4Q_ERR_NOMEM, "cuda backend: weight '%s'", name);
    w->format = d->format;
    w->rows = d->rows;
    w->cols = d->cols;
    w->name = name;
    w->act = d->act;
    w->act_scale = d->act_scale;
    *out = w;
    return G4Q_OK;
}

static g4q_status cuda_weight_bind(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight **out)
{
    g4q_ctx *ctx = be->ctx;
    *out = NULL;
    const char *name = d->name ? d->name : "(unnamed)";
    if (d->format != G4Q_WF_BF16 && d->format < G4Q_WF_COUNT)
        return g4q_cuda_qweight_bind(be, d, out); /* packed: cuda_qgemm.cu */
    if (d->format != G4Q_WF_BF16)
        return g4q_fail(ctx, G4Q_ERR_UNSUPPORTED,
                        "cuda backend: weight '%s': format %s is not supported yet", name,
                        g4q_wformat_name(d->format));
    g4q_bweight *w;
    G4Q_TRY(g4q_cuda_weight_new(be, d, &w));
    w->bytes = (size_t)d->rows * (size_t)d->cols * sizeof(uint16_t);
    g4q_status st = g4q_cuda_alloc(be, w->bytes, name, (void **)&w->data);
    if (st == G4Q_OK) st = g4q_cuda_upload_bytes(be, w->data, d->data, w->bytes, name);
    if (st != G4Q_OK) {
        g4q_cuda_release(be, w->data, w->bytes);
        free(w);
        return st;
    }
    *out = w;
    return G4Q_OK;
}

static void cuda_weight_free(g4q_backend *be, g4q_bweight *w)
{
    if (!w) return;
    cudaStreamSynchronize(g4q_cuda_st(be)->stream);
    g4q_cuda_release(be, w->data, w->bytes);
    g4q_cuda_release(be, w->qscale, w->qscale_bytes); /* packed formats */
    free(w);
}

static g4q_status cuda_init_state(g4q_backend *be, const g4q_cuda_opts *opts)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return g4q_fail(ctx, G4Q_ERR_CUDA, "cuda backend: no usable GPU: %s",
                        e != cudaSuccess ? cudaGetErrorString(e) : "no device");
    }
    G4Q_CUDA_CHECK(cudaSetDevice(0));
    s->device = 0;
    G4Q_CUDA_CHECK(cudaDeviceGetAttribute(&s->sm_count, cudaDevAttrMultiProcessorCount, 0));
    G4Q_CUDA_CHECK(
        cudaDeviceGetAttribute(&s->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
    G4Q_CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    G4Q_CUBLAS_CHECK(cublasCreate(&s->blas));
    G4Q_CUBLAS_CHECK(cublasSetStream(s->blas, s->stream));
    G4Q_TRY(g4q_cuda_alloc(be, CUBLAS_WS_BYTES, "cuBLAS workspace", &s->blas_ws));
    s->blas_ws_bytes = CUBLAS_WS_BYTES;
    G4Q_CUBLAS_CHECK(cublasSetWorkspace(s->blas, s->blas_ws, s->blas_ws_bytes));
    G4Q_CUBLAS_CHECK(cublasSetMathMode(s->blas, CUBLAS_DEFAULT_MATH));
    G4Q_TRY(g4q_cuda_alloc(be, sizeof(float), "amax result", (void **)&s->amax_dev));
    G4Q_TRY(g4q_cuda_alloc(be, 2 * sizeof(unsigned long long), "argmax result",
                           (void **)&s->pick_dev));
    G4Q_TRY(g4q_cuda_alloc(be, sizeof(int), "step position", (void **)&s->pos_dev));
    G4Q_CUDA_CHECK(cudaMemset(s->pos_dev, 0, sizeof(int)));
    G4Q_CUDA_CHECK(cudaMallocHost((void **)&s->stage, HOST_CHUNK * sizeof(uint16_t)));
    G4Q_TRY(g4q_cuda_alloc(be, G4Q_CUDA_STEP_MAX_HEADS * sizeof(unsigned), "attention counters",
                           (void **)&s->step_done));
    G4Q_CUDA_CHECK(cudaMemset(s->step_done, 0, G4Q_CUDA_STEP_MAX_HEADS * sizeof(unsigned)));
    const char *pdl = getenv("G4Q_CUDA_PDL");
    s->pdl = !(pdl && strcmp(pdl, "0") == 0);
    const char *kpr = getenv("G4Q_CUDA_GEMV_KPR");
    s->gemv_kpr = kpr ? atoi(kpr) : 0;
    /* G4Q_CUDA_FUSE=0 (benchmarks: before / after in one session) gives packed weights one
     * launch each in matmul3 / matmul_geglu. */
    const char *fuse = getenv("G4Q_CUDA_FUSE");
    s->qfuse = !(fuse && strcmp(fuse, "0") == 0);
    /* G4Q_CUDA_ATTN_FUSED=0: the decode attention always takes its two-kernel form. */
    const char *afused = getenv("G4Q_CUDA_ATTN_FUSED");
    s->attn_fused = !(afused && strcmp(afused, "0") == 0) && !(opts && opts->attention_two_kernels);
    return G4Q_OK;
}

extern "C" g4q_status g4q_backend_cuda_create(g4q_ctx *ctx, g4q_backend **out)
{
    return g4q_backend_cuda_create_opts(ctx, NULL, out);
}

/* F32 mode: fp32 activations, the F32 weight binding and GEMM of cuda_f32.cu, and none of the
 * bf16-only decode-step members (the model falls back to the plain ops). */
static void cuda_set_f32(g4q_backend *be)
{
    be->name = "cuda-fp32";
    be->act_dtype = G4Q_DT_F32;
    be->weight_bind = g4q_cuda_weight_bind_f32;
    be->weight_free = g4q_cuda_weight_free_f32;
    be->weight_bind_deferred = NULL; /* the widening bind has no deferred form */
    be->weight_upload = NULL;
    be->matmul = g4q_cuda_matmul_f32;
    be->matmul3 = NULL;
    be->matmul_geglu = NULL;
    be->qkv_norm_rope = NULL;
    be->norm_add_norm = NULL;
    be->attention_store = NULL;
    be->step_pos = NULL;
    be->graph_begin = NULL;
    be->graph_end = NULL;
    be->graph_launch = NULL;
    be->graph_free = NULL;
    g4q_cuda_st(be)->f32 = 1;
}

extern "C" g4q_status g4q_backend_cuda_create_opts(g4q_ctx *ctx, const g4q_cuda_opts *opts,
                                                   g4q_backend **out)
{
    *out = NULL;
    const g4q_cuda_precision prec = opts ? opts->precision : G4Q_CUDA_BF16;
    if (prec != G4Q_CUDA_BF16 && prec != G4Q_CUDA_F32)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "cuda backend: unknown precision %d", (int)prec);
    g4q_backend *be = (g4q_backend *)calloc(1, sizeof *be);
    g4q_cuda_state *s = (g4q_cuda_state *)calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        return g4q_fail(ctx, G4Q_ERR_NOMEM, "cuda backend: out of memory");
    }
    be->name = "cuda";
    be->act_dtype = G4Q_DT_BF16;
    be->ctx = ctx;
    be->state = s;
    be->destroy = cuda_destroy;
    be->buf_alloc = cuda_buf_alloc;
    be->buf_free = cuda_buf_free;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->copy_rows = cuda_copy_rows;
    be->weight_bind = cuda_weight_bind;
    be->weight_free = cuda_weight_free;
    be->weight_bind_deferred = g4q_cuda_weight_bind_deferred;
    be->weight_upload = g4q_cuda_weight_upload;
    be->matmul = g4q_cuda_matmul;
    be->rmsnorm = g4q_cuda_rmsnorm;
    be->rope = g4q_cuda_rope;
    be->attention = g4q_cuda_attention;
    be->kv_store = g4q_cuda_kv_store;
    be->geglu = g4q_cuda_geglu;
    be->add_scaled = g4q_cuda_add_scaled;
    be->softcap = g4q_cuda_softcap;
    be->embed = g4q_cuda_embed;
    be->amax = g4q_cuda_amax;
    be->amax_into = g4q_cuda_amax_into;
    be->col_amax_into = g4q_cuda_col_amax_into;
    be->argmax = g4q_cuda_argmax;
    be->gram = g4q_cuda_gram;
    be->fp8_roundtrip = g4q_cuda_fp8_roundtrip;
    be->logit_stats = g4q_cuda_logit_stats;
    be->mem_peak = cuda_mem_peak;
    be->matmul3 = g4q_cuda_matmul3;
    be->matmul_geglu = g4q_cuda_matmul_geglu;
    be->qkv_norm_rope = g4q_cuda_qkv_norm_rope;
    be->norm_add_norm = g4q_cuda_norm_add_norm;
    be->attention_store = g4q_cuda_attention_store;
    be->step_pos = g4q_cuda_step_pos;
    be->graph_begin = g4q_cuda_graph_begin;
    be->graph_end = g4q_cuda_graph_end;
    be->graph_launch = g4q_cuda_graph_launch;
    be->graph_free = g4q_cuda_graph_free;
    if (prec == G4Q_CUDA_F32) cuda_set_f32(be);
    g4q_status st = cuda_init_state(be, opts);
    if (st != G4Q_OK) {
        cuda_destroy(be);
        return st;
    }
    *out = be;
    return G4Q_OK;
}
