/*
 * Private to src/backend/cuda (C++ / nvcc only): the concrete buffer, weight and state types,
 * device-memory accounting, and the op entry points that live in the per-family .cu files.
 */
#ifndef G4Q_BACKEND_CUDA_INTERNAL_H
#define G4Q_BACKEND_CUDA_INTERNAL_H

#include <cuda_bf16.h>
#include <stdint.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_check.h"

struct g4q_buf {
    g4q_dtype dtype; /* G4Q_DT_BF16 or G4Q_DT_F32 */
    size_t count;    /* elements */
    size_t bytes;    /* allocated device bytes */
    void *data;      /* device memory, count elements of dtype */
};

struct g4q_bweight {
    g4q_wformat format; /* G4Q_WF_BF16 only for now */
    int64_t rows, cols;
    size_t bytes;
    uint16_t *data;   /* device bf16 [rows, cols] */
    const char *name; /* not owned (the caller's desc->name) */
};

typedef struct g4q_cuda_state {
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws; /* cuBLAS workspace (fixed, so graph capture would be possible) */
    size_t blas_ws_bytes;
    void *scratch; /* attention scratch, grown on demand */
    size_t scratch_bytes;
    float *amax_dev;  /* one float for amax results */
    int32_t *ids_dev; /* token ids for embed, ids_cap entries */
    size_t ids_cap;
    size_t cur, peak; /* device bytes held now / at most */
    int *pos_dev;     /* step position (backend member step_pos), one int */
    int capturing;    /* a graph recording is open on the stream */
    uint64_t epoch;   /* device frees so far: graphs recorded at an older epoch are stale */
} g4q_cuda_state;

static inline g4q_cuda_state *g4q_cuda_st(const g4q_backend *be)
{
    return (g4q_cuda_state *)be->state;
}

/* cudaMalloc with accounting; bytes 0 gives NULL. Errors name `what`. */
g4q_status g4q_cuda_alloc(g4q_backend *be, size_t bytes, const char *what, void **out);
void g4q_cuda_release(g4q_backend *be, void *p, size_t bytes);
/* Makes the attention scratch at least `bytes` long (grows by reallocation). */
g4q_status g4q_cuda_scratch(g4q_backend *be, size_t bytes, void **out);

/* Launch shape helper: blocks of `threads` covering n items. */
static inline unsigned g4q_cuda_blocks(size_t n, unsigned threads)
{
    return (unsigned)((n + threads - 1) / threads);
}

g4q_status g4q_cuda_matmul(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                           int n);
g4q_status g4q_cuda_rmsnorm(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                            int rows, int n, float eps);
g4q_status g4q_cuda_rope(g4q_backend *be, g4q_buf *x, const g4q_buf *inv_freq, int T, int heads,
                         int hd, int pos0);
g4q_status g4q_cuda_attention(g4q_backend *be, g4q_buf *out, const g4q_buf *q, const g4q_buf *k_new,
                              const g4q_buf *v_new, const g4q_buf *kc, const g4q_buf *vc, int cap,
                              int n_past, int T, int nh, int nkv, int hd, int window, float scale);
g4q_status g4q_cuda_kv_store(g4q_backend *be, g4q_buf *kc, g4q_buf *vc, const g4q_buf *k_new,
                             const g4q_buf *v_new, int cap, int n_past, int T, int nkv, int hd);
g4q_status g4q_cuda_geglu(g4q_backend *be, g4q_buf *y, const g4q_buf *gate, const g4q_buf *up,
                          size_t count);
g4q_status g4q_cuda_add_scaled(g4q_backend *be, g4q_buf *h, const g4q_buf *a, size_t count,
                               float scale);
g4q_status g4q_cuda_softcap(g4q_backend *be, g4q_buf *x, size_t count, float cap);
g4q_status g4q_cuda_embed(g4q_backend *be, g4q_buf *y, const g4q_bweight *table, const int32_t *ids,
                          int T, float scale);
g4q_status g4q_cuda_amax(g4q_backend *be, const g4q_buf *x, size_t count, float *amax);

g4q_status g4q_cuda_matmul3(g4q_backend *be, const g4q_buf *x, int n, g4q_buf *y0,
                            const g4q_bweight *w0, g4q_buf *y1, const g4q_bweight *w1, g4q_buf *y2,
                            const g4q_bweight *w2);
g4q_status g4q_cuda_matmul_geglu(g4q_backend *be, g4q_buf *y, g4q_buf *tmp, const g4q_buf *x,
                                 const g4q_bweight *wg, const g4q_bweight *wu, int n);
g4q_status g4q_cuda_qkv_norm_rope(g4q_backend *be, g4q_buf *q, g4q_buf *k, g4q_buf *v, int v_from_k,
                                  const g4q_bweight *qw, const g4q_bweight *kw,
                                  const g4q_buf *inv_freq, int T, int nh, int nkv, int hd, int pos0,
                                  float eps);
g4q_status g4q_cuda_norm_add_norm(g4q_backend *be, g4q_buf *h, g4q_buf *a,
                                  const g4q_bweight *w_post, float scale, g4q_buf *out,
                                  const g4q_bweight *w_next, int rows, int n, float eps);
/* Decode attention (T = 1) with n_past read from the step position (cuda_attention_step.cu). */
g4q_status g4q_cuda_attention_step(g4q_backend *be, g4q_buf *out, const g4q_buf *q,
                                   const g4q_buf *k_new, const g4q_buf *v_new, const g4q_buf *kc,
                                   const g4q_buf *vc, int cap, int nh, int nkv, int hd, int window,
                                   float scale);
g4q_status g4q_cuda_step_pos(g4q_backend *be, int n_past);
g4q_status g4q_cuda_graph_begin(g4q_backend *be);
g4q_status g4q_cuda_graph_end(g4q_backend *be, g4q_graph **out);
g4q_status g4q_cuda_graph_launch(g4q_backend *be, g4q_graph *g, int *stale);
void g4q_cuda_graph_free(g4q_backend *be, g4q_graph *g);

/* Checks that buf is a BF16 buffer of at least n elements (internal invariant). */
static inline int g4q_cuda_bf16_ok(const g4q_buf *b, size_t n)
{
    return b && b->dtype == G4Q_DT_BF16 && n <= b->count;
}

#endif
