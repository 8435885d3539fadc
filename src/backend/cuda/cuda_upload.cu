// CUDA backend: deferred weight binding (backend.h weight_bind_deferred / weight_upload), BF16
// mode only (F32 mode leaves both members NULL).
//
// weight_bind_deferred runs on the backend's thread: weight_bind's checks, the device memory
// (accounted in mem_peak), and on first use the upload machinery: a non-blocking stream of its
// own, two pinned host buffers of UP_CHUNK bytes and an event per buffer.
//
// weight_upload may run on another thread while the compute stream works. It copies the caller's
// bytes (pageable, typically the memory-mapped checkpoint) through the two pinned buffers in turn:
//   wait for buffer b's previous DMA (its event) -> memcpy the next chunk into b ->
//   cudaMemcpyAsync b -> device on the upload stream -> record b's event
// so that the host copy of one chunk overlaps the DMA of the other, then waits for the stream.
// The device receives the host bytes unchanged: the same bytes weight_bind's upload gives. It
// never touches be->ctx, the memory accounting or the compute stream (they belong to the
// backend's thread), and the upload stream is non-blocking, so its copies run beside the kernels
// of the compute stream; the caller orders the return before the weight's first use.
#include <cstdlib>
#include <cstring>

#include "backend/cuda/cuda_internal.h"

#define UP_CHUNK ((size_t)16 << 20) /* bytes per pinned buffer (two of them) */

/* The upload stream, pinned buffers and events, each made once (a failure leaves the others for
 * a retry and for g4q_cuda_upload_destroy). */
static g4q_status up_init(g4q_backend *be)
{
    g4q_ctx *ctx = be->ctx;
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (!s->up_stream)
        G4Q_CUDA_CHECK(cudaStreamCreateWithFlags(&s->up_stream, cudaStreamNonBlocking));
    for (int b = 0; b < 2; b++) {
        if (!s->up_done[b])
            G4Q_CUDA_CHECK(cudaEventCreateWithFlags(&s->up_done[b], cudaEventDisableTiming));
        if (s->up_stage[b]) continue;
        cudaError_t e = cudaHostAlloc(&s->up_stage[b], UP_CHUNK, cudaHostAllocDefault);
        if (e != cudaSuccess) {
            cudaGetLastError();
            s->up_stage[b] = NULL;
            return g4q_fail(ctx, e == cudaErrorMemoryAllocation ? G4Q_ERR_NOMEM : G4Q_ERR_CUDA,
                            "cuda backend: pinned upload buffer of %zu bytes: %s", UP_CHUNK,
                            cudaGetErrorString(e));
        }
    }
    return G4Q_OK;
}

g4q_status g4q_cuda_weight_bind_deferred(g4q_backend *be, const g4q_weight_desc *d,
                                         g4q_bweight **out)
{
    *out = NULL;
    const char *name = d->name ? d->name : "(unnamed)";
    if (d->format != G4Q_WF_BF16 || d->act != G4Q_ACTQ_NONE)
        return g4q_fail(be->ctx, G4Q_ERR_UNSUPPORTED,
                        "cuda backend: weight '%s': deferred binding takes plain BF16 weights only",
                        name);
    G4Q_TRY(up_init(be));
    g4q_bweight *w;
    G4Q_TRY(g4q_cuda_weight_new(be, d, &w));
    w->bytes = (size_t)d->rows * (size_t)d->cols * sizeof(uint16_t);
    g4q_status st = g4q_cuda_alloc(be, w->bytes, name, (void **)&w->data);
    if (st != G4Q_OK) {
        free(w);
        return st;
    }
    w->pending = d->data;
    *out = w;
    return G4Q_OK;
}

g4q_status g4q_cuda_weight_upload(g4q_backend *be, g4q_bweight *w, g4q_ctx *ctx)
{
    if (!w->pending) return G4Q_OK;
    g4q_cuda_state *s = g4q_cuda_st(be);
    const char *src = (const char *)w->pending;
    char *dst = (char *)w->data;
    cudaError_t e = cudaSetDevice(s->device); /* this thread may not have chosen one */
    for (size_t off = 0, i = 0; off < w->bytes && e == cudaSuccess; off += UP_CHUNK, i++) {
        const int b = (int)(i & 1);
        const size_t m = w->bytes - off < UP_CHUNK ? w->bytes - off : UP_CHUNK;
        e = cudaEventSynchronize(s->up_done[b]); /* buffer b's previous DMA has read it */
        if (e != cudaSuccess) break;
        memcpy(s->up_stage[b], src + off, m);
        e = cudaMemcpyAsync(dst + off, s->up_stage[b], m, cudaMemcpyHostToDevice, s->up_stream);
        if (e == cudaSuccess) e = cudaEventRecord(s->up_done[b], s->up_stream);
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(s->up_stream);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cudaStreamSynchronize(s->up_stream); /* no copy may still be writing w */
        return g4q_fail(ctx, G4Q_ERR_CUDA, "cuda backend: weight '%s': upload of %zu bytes: %s",
                        w->name, w->bytes, cudaGetErrorString(e));
    }
    w->pending = NULL;
    return G4Q_OK;
}

void g4q_cuda_upload_destroy(g4q_backend *be)
{
    g4q_cuda_state *s = g4q_cuda_st(be);
    if (s->up_stream) cudaStreamSynchronize(s->up_stream);
    for (int b = 0; b < 2; b++) {
        if (s->up_done[b]) cudaEventDestroy(s->up_done[b]);
        if (s->up_stage[b]) cudaFreeHost(s->up_stage[b]);
        s->up_done[b] = NULL;
        s->up_stage[b] = NULL;
    }
    if (s->up_stream) cudaStreamDestroy(s->up_stream);
    s->up_stream = NULL;
}
