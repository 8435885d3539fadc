/*
 * Private to src/backend/cuda (nvcc only): the geometry of a prefill attention call, shared by
 * the materialised-scores kernels (cuda_attention.cu) and the flash kernel
 * (cuda_attention_flash.cu).
 *
 * Keys: j < nc are cache slots 0..nc-1 (nc = min(n_past, cap); slot j holds the position p with
 * p ≡ j mod cap among the cached positions lo_c = max(0, n_past-cap) .. n_past-1), j >= nc are
 * the chunk's new rows (position n_past + j - nc). A key at position p is visible to the query at
 * position pq iff p <= pq and (window <= 0 or pq - p < window). K and V rows are [.., nkv, hd]
 * bf16 (or fp32 in F32 mode); queries [T, nh, hd]; query head h reads KV head h / group.
 */
#ifndef G4Q_BACKEND_CUDA_ATTENTION_GEOM_H
#define G4Q_BACKEND_CUDA_ATTENTION_GEOM_H

#include "backend/cuda/cuda_internal.h"

typedef struct att_geom {
    int T, nh, nkv, hd, group, cap, n_past, nc, nkeys, lo_c, window;
} att_geom;

/* The geometry of a chunk of T queries after n_past cached positions (window <= 0: none). */
static inline att_geom att_make(int T, int nh, int nkv, int hd, int cap, int n_past, int window)
{
    att_geom g;
    g.T = T, g.nh = nh, g.nkv = nkv, g.hd = hd, g.group = nh / nkv, g.cap = cap;
    g.n_past = n_past, g.nc = n_past < cap ? n_past : cap, g.window = window;
    g.lo_c = n_past - cap > 0 ? n_past - cap : 0;
    g.nkeys = g.nc + T;
    return g;
}

static __device__ __forceinline__ int key_pos(const att_geom &g, int j)
{
    if (j >= g.nc) return g.n_past + (j - g.nc);
    int r = (j - g.lo_c % g.cap + g.cap) % g.cap;
    return g.lo_c + r;
}

static __device__ __forceinline__ bool visible(const att_geom &g, int pq, int p)
{
    return p <= pq && (g.window <= 0 || pq - p < g.window);
}

template <typename T>
static __device__ __forceinline__ const T *key_row(const att_geom &g, const T *cache,
                                                   const T *fresh, int j, int kvh)
{
    if (j < g.nc) return cache + ((size_t)j * g.nkv + kvh) * g.hd;
    return fresh + ((size_t)(j - g.nc) * g.nkv + kvh) * g.hd;
}

/* The prefill flash kernel (cuda_attention_flash.cu): whether a chunk of T query rows at head_dim
 * hd takes it on be (BF16 mode, T >= 16, hd 64, 128, 256 or 512, not turned off by
 * G4Q_CUDA_ATTN_FLASH=0 or the backend option), and the op for such a chunk (bf16 buffers
 * checked by the caller). */
bool g4q_cuda_flash_takes(const g4q_backend *be, int T, int hd);
g4q_status g4q_cuda_flash_attention(g4q_backend *be, const att_geom &g, g4q_buf *out,
                                    const g4q_buf *q, const g4q_buf *k_new, const g4q_buf *v_new,
                                    const g4q_buf *kc, const g4q_buf *vc, float scale);

#endif
