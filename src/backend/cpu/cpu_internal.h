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

/* A bound weight. Data and scales point at the caller's bytes (not owned, possibly unaligned);
 * `lut` is the only memory the binding owns. */
struct g4q_bweight {
    g4q_wformat format;
    int64_t rows, cols;
    const void *data;      /* see g4q_wformat: bf16 [rows, cols] or the packed codes */
    const void *scale;     /* packed formats: block / group scales */
    unsigned flags;        /* G4Q_WD_* */
    int group;             /* INT4 */
    g4q_dtype scale_dtype; /* INT4 */
    /* Owned decode table. NVFP4: [256][16] fp32, entry [s][c] = the weight value of nibble c in
     * a block whose scale byte is s (scale2 already applied exactly as g4q_wformat says). FP8:
     * [256] fp32 E4M3 values. NULL for BF16 and INT4. */
    float *lut;
    const char *name;
    g4q_actq act;    /* activation quantization applied by the matmul (src/quant/actq.h) */
    float act_scale; /* its scale */
    int pending;     /* weight_bind_deferred: its pages are still to be touched (weight_upload) */
};

/* Widens rows [r0, r0+nr) of W to fp32 wf[nr, cols] (cpu_weights.c), the values of g4q_wformat. */
void g4q_cpu_decode_rows(const g4q_bweight *w, int64_t r0, int nr, float *wf);

/* Validates a packed desc and fills the packed fields of *w (cpu_weights.c). */
g4q_status g4q_cpu_bind_packed(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight *w);

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
