// Shared by the CUDA-backend GPU tests (test_backend_gpu.cu: ops, deferred binding, --bench;
// test_model_gpu.cu: whole models): the CPU/GPU backend pair, random bf16-exact inputs, the
// tolerance comparison and the model loader. The tolerance conventions are test_backend_gpu.cu's
// file comment. Each test executable includes this once.
#ifndef G4Q_TESTS_BACKEND_PAIR_H
#define G4Q_TESTS_BACKEND_PAIR_H
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <pthread.h>
#include <vector>

#include "backend/cpu/cpu.h"
#include "backend/cuda/cuda_backend.h"
#include "runtime/sample.h"
#include "base/bf16.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/synth.h"
#include "model/weights.h"
#include "model/kvcache.h"
extern "C" {
#include "testutil.h"
}

static const double BF16_U = 1.0 / 256.0;  /* unit roundoff of bf16: 2^-(8 significant bits) */
static const double F32_EPS = FLT_EPSILON; /* 2^-23: one fp32 ulp relative, 2x the unit roundoff */
static const double LIBM_ULPS = 4;         /* expf / tanhf: 2 ulp on each side */
static g4q_ctx g_ctx;
static uint64_t g_rng;

typedef std::vector<float> vecf;

static inline vecf randv(size_t n, double mean, double sigma)
{
    vecf v(n);
    for (auto &x : v)
        x = g4q_round_bf16((float)(mean + sigma * g4q_test_normal(&g_rng)));
    return v;
}

struct pair_be {
    g4q_backend *cpu, *gpu;
    double u; /* unit roundoff of the GPU's stores: BF16_U (BF16 mode) or 0 (F32 mode) */
};

static inline g4q_buf *mk(g4q_backend *be, const vecf &v, size_t n = 0)
{
    g4q_buf *b = nullptr;
    size_t cnt = v.empty() ? n : v.size();
    CHECK_STATUS(be->buf_alloc(be, be->act_dtype, cnt, &b), G4Q_OK);
    if (!v.empty()) CHECK_STATUS(be->upload(be, b, 0, v.data(), v.size()), G4Q_OK);
    return b;
}

static inline vecf get(g4q_backend *be, const g4q_buf *b, size_t n)
{
    vecf v(n);
    CHECK_STATUS(be->download(be, b, 0, v.data(), n), G4Q_OK);
    return v;
}

static inline g4q_bweight *bindw(g4q_backend *be, const std::vector<uint16_t> &w, int64_t rows,
                          int64_t cols)
{
    g4q_weight_desc d = {};
    d.format = G4Q_WF_BF16, d.rows = rows, d.cols = cols, d.data = w.data(), d.name = "test";
    g4q_bweight *out = nullptr;
    CHECK_STATUS(be->weight_bind(be, &d, &out), G4Q_OK);
    return out;
}

static inline std::vector<uint16_t> to_bf16(const vecf &v)
{
    std::vector<uint16_t> o(v.size());
    for (size_t i = 0; i < v.size(); i++)
        o[i] = g4q_f32_to_bf16(v[i]);
    return o;
}

/* Counts |gpu - cpu| > tol(i) and reports the worst ratio; NaN counts as bad. */
template <typename F> static void compare(const char *what, const vecf &cpu, const vecf &gpu, F tol)
{
    int bad = 0;
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < cpu.size(); i++) {
        double e = std::fabs((double)gpu[i] - cpu[i]), t = tol(i);
        if (!(e <= t)) bad++;
        if (e / t > worst || e != e) worst = e / t, wi = i;
    }
    CHECK_MSG(!bad, "%s: %d of %zu off (worst at %zu: cpu %g gpu %g, err/tol %.3g)", what, bad,
              cpu.size(), wi, cpu[wi], gpu[wi], worst);
}

struct model {
    g4q_config cfg;
    g4q_ckpt *ck = nullptr;
    g4q_weights w;
};

static inline g4q_status model_load(const char *dir, model *m)
{
    G4Q_TRY(g4q_config_load(&g_ctx, dir, &m->cfg));
    G4Q_TRY(g4q_ckpt_open(&g_ctx, dir, &m->ck));
    return g4q_weights_bind(&g_ctx, &m->cfg, g4q_ckpt_tensor(m->ck, 0), g4q_ckpt_count(m->ck), dir,
                            &m->w);
}

/* The CPU reference and the CUDA backend in BF16 mode into p (p->u stays as given); false, with
 * the reason printed and nothing left open, when there is no usable GPU (a failed check). */
static inline bool pair_open(pair_be *p)
{
    CHECK_STATUS(g4q_backend_cpu_create(&g_ctx, &p->cpu), G4Q_OK);
    if (CHECK_STATUS(g4q_backend_cuda_create(&g_ctx, &p->gpu), G4Q_OK)) return true;
    printf("cuda backend: %s\n", g4q_ctx_error(&g_ctx));
    g4q_backend_free(p->cpu);
    return false;
}

/* The CUDA backend in F32 mode (no bf16 rounding: u = 0) paired with the CPU backend cpu into p32;
 * false, with a failed check, when it cannot be made (p32->gpu then NULL). */
static inline bool pair_open_f32(g4q_backend *cpu, pair_be *p32)
{
    *p32 = {cpu, nullptr, 0.0};
    g4q_cuda_opts o32 = {G4Q_CUDA_F32, 0};
    return CHECK_STATUS(g4q_backend_cuda_create_opts(&g_ctx, &o32, &p32->gpu), G4Q_OK);
}

#endif
