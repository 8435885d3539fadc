/*
 * Private to src/backend/cpu: the concrete buffer and weight types and the op entry points that
 * live in separate files (cpu_matmul.c, cpu_attention.c).
 */
#ifndef G4Q_BACKEND_CPU_INTERNAL_H
#define G4Q_BACKEND_CPU_INTERNAL_H

#include <stdint.h>

#include "backend/backend.h"

struct g4q_buf {
    size_t count;
    float *data; /* count fp32 values, 64-byte aligned */
};

struct g4q_bweight {
    g4q_wformat format;
    int64_t rows, cols;
    const uint16_t *data; /* bf16 [rows, cols], not owned */
    const char *name;
};

/* Number of OpenMP threads for an op doing about `work` multiply-adds or element updates: 1
 * below G4Q_CPU_PAR_MIN (waking a team costs more than it saves, and spinning threads hurt on
 * a busy machine), else ctx->threads (0 = the OpenMP default). */
#define G4Q_CPU_PAR_MIN 32768
int g4q_cpu_threads(const g4q_backend *be, size_t work);

g4q_status g4q_cpu_matmul(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                          int n);
g4q_status g4q_cpu_rope(g4q_backend *be, g4q_buf *x, const g4q_buf *inv_freq, int T, int heads,
                        int hd, int pos0);
g4q_status g4q_cpu_attention(g4q_backend *be, g4q_buf *out, const g4q_buf *q, const g4q_buf *k_new,
                             const g4q_buf *v_new, const g4q_buf *kc, const g4q_buf *vc, int cap,
                             int n_past, int T, int nh, int nkv, int hd, int window, float scale);
g4q_status g4q_cpu_kv_store(g4q_backend *be, g4q_buf *kc, g4q_buf *vc, const g4q_buf *k_new,
                            const g4q_buf *v_new, int cap, int n_past, int T, int nkv, int hd);

#endif
