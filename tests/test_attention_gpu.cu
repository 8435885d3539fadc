// The CUDA backend's attention against the CPU reference backend (prefill chunks and decode steps,
// both precisions of the CUDA backend), its KV-cache store, the fused attention_store, and the
// decode step's fused attention kernel against its two-kernel form bit for bit. Tolerances as in
// test_backend_gpu.cu (its file comment); shared helpers: backend_pair.h.
#include "backend_pair.h"

/* ---- attention. Scores are rounded (|Δs| <= u·|s|), which moves each probability by a factor
 * within exp(±2·u·smax) (numerator and the sum); p is rounded (u) and the output once more
 * (u·|out|). With Σp = 1: |Δout| <= (2·u·smax + u)·vmax·1.01 + u·|out|, smax and vmax taken over
 * the row's visible keys in double here. fp32 terms, for nk visible keys: each score's dot
 * product differs by ds <= hd·F32_EPS·Σ|q·k| (its largest over the keys); that moves p by a
 * factor within exp(±2·ds); exp(s - max) differs by LIBM_ULPS ulp plus the rounding of s - max
 * (F32_EPS·smax) on either side; the sum of nk exponentials by nk·F32_EPS, 1/sum and ·(1/sum) by
 * 2·F32_EPS; Σ p·v by nk·F32_EPS·vmax. Together, relative to vmax:
 * 2·ds + 2·F32_EPS·smax + (2·nk + LIBM_ULPS + 2)·F32_EPS (nk counted with the GPU's split
 * partials: nk + nk/64 + 1). */
struct att_case {
    int cap, n_past, T, nh, nkv, hd, window;
};

/* step: the GPU reads n_past from its step position (G4Q_STEP_POS, T == 1 only). */
static void test_attention_case(pair_be p, const att_case &c, bool step = false)
{
    const size_t row = (size_t)c.nkv * c.hd;
    vecf q = randv((size_t)c.T * c.nh * c.hd, 0, 0.25), kn = randv((size_t)c.T * row, 0, 0.25),
         vn = randv((size_t)c.T * row, 0, 1.0), kc = randv((size_t)c.cap * row, 0, 0.25),
         vc = randv((size_t)c.cap * row, 0, 1.0);
    const size_t on = (size_t)c.T * c.nh * c.hd;
    vecf r[2];
    g4q_backend *bes[2] = {p.cpu, p.gpu};
    for (int b = 0; b < 2; b++) {
        g4q_backend *be = bes[b];
        g4q_buf *bq = mk(be, q), *bkn = mk(be, kn), *bvn = mk(be, vn), *bkc = mk(be, kc),
                *bvc = mk(be, vc), *bo = mk(be, {}, on);
        int np = c.n_past;
        if (step && be == p.gpu) {
            CHECK_STATUS(be->step_pos(be, c.n_past), G4Q_OK);
            np = G4Q_STEP_POS;
        }
        CHECK_STATUS(be->attention(be, bo, bq, bkn, bvn, bkc, bvc, c.cap, np, c.T, c.nh, c.nkv,
                                   c.hd, c.window, 1.0f),
                     G4Q_OK);
        r[b] = get(be, bo, on);
        g4q_buf *all[] = {bq, bkn, bvn, bkc, bvc, bo};
        for (auto *x : all)
            be->buf_free(be, x);
    }
    /* Per-row smax / vmax over the visible keys: cached positions max(0, n_past-cap)..n_past-1
     * in slot p % cap, then the chunk. */
    std::vector<double> smax((size_t)c.T * c.nh), vmax((size_t)c.T * c.nh),
        f32t((size_t)c.T * c.nh);
    const int group = c.nh / c.nkv;
    for (int t = 0; t < c.T; t++)
        for (int h = 0; h < c.nh; h++) {
            const int pq = c.n_past + t, g = h / group;
            double sm = 0, vm = 0, qk = 0;
            int nk = 0;
            for (int pos = std::max(0, c.n_past - c.cap); pos <= pq; pos++) {
                if (c.window > 0 && pq - pos >= c.window) continue;
                const float *k = pos < c.n_past ? &kc[(size_t)(pos % c.cap) * row + g * c.hd]
                                                : &kn[(size_t)(pos - c.n_past) * row + g * c.hd];
                const float *v = pos < c.n_past ? &vc[(size_t)(pos % c.cap) * row + g * c.hd]
                                                : &vn[(size_t)(pos - c.n_past) * row + g * c.hd];
                double s = 0, sa = 0;
                for (int d = 0; d < c.hd; d++) {
                    const double qd = q[((size_t)t * c.nh + h) * c.hd + d];
                    s += qd * k[d], sa += std::fabs(qd * k[d]);
                    vm = std::max(vm, (double)std::fabs(v[d]));
                }
                sm = std::max(sm, std::fabs(s)), qk = std::max(qk, sa), nk++;
            }
            const size_t rw = (size_t)t * c.nh + h;
            smax[rw] = sm, vmax[rw] = vm;
            const double nks = nk + nk / 64 + 1;
            f32t[rw] = vm * (2 * c.hd * F32_EPS * qk + 2 * F32_EPS * sm +
                             (2 * nks + LIBM_ULPS + 2) * F32_EPS);
        }
    char what[120];
    snprintf(what, sizeof what, "attention%s cap %d n_past %d T %d nh %d nkv %d hd %d window %d",
             step ? " (step position)" : "", c.cap, c.n_past, c.T, c.nh, c.nkv, c.hd, c.window);
    compare(what, r[0], r[1], [&](size_t i) {
        size_t rw = i / c.hd;
        return (2 * p.u * smax[rw] + p.u) * vmax[rw] * 1.01 + p.u * std::fabs(r[0][i]) + f32t[rw] +
               1e-30;
    });
}

static void test_attention(pair_be p)
{
    const att_case cases[] = {
        {8, 0, 7, 4, 2, 256, 8},            /* window 8, chunk inside it */
        {8, 13, 20, 4, 2, 256, 8},          /* wrapped ring, chunk crossing the window */
        {1024, 1500, 1, 16, 8, 256, 1024},  /* 12B sliding decode on a wrapped ring */
        {2048, 1000, 1, 16, 1, 512, 0},     /* 12B full decode, MQA, hd 512 */
        {129, 0, 129, 4, 1, 512, 0},        /* prefill, full, hd 512 */
        {1024, 700, 129, 16, 8, 256, 1024}, /* chunk crossing the window over a partial cache */
        {1024, 0, 1, 2, 1, 256, 1024},      /* first token */
        {16, 40, 33, 2, 2, 10, 16},         /* head_dim not a multiple of 8 (scalar path) */
        {7, 3, 1, 3, 3, 64, 0},             /* MHA, tiny */
        {512, 0, 300, 8, 4, 128, 128},      /* tensor-core path: window inside a long chunk */
        {256, 400, 100, 8, 2, 64, 128},     /* tensor-core path: wrapped ring + chunk, fp32 sum */
        {2048, 0, 600, 4, 2, 256, 256},     /* tensor-core path: window much shorter than the chunk */
        {64, 100, 90, 4, 1, 512, 0},        /* tensor-core path: hd 512 over a wrapped ring */
        {100, 30, 17, 2, 1, 256, 0},        /* tensor-core path: shortest chunk, partial cache */
    };
    for (auto &c : cases)
        test_attention_case(p, c);
    /* Decode with the step position: wrapped rings, windows, MQA with 16 heads, hd % 8 != 0,
     * the first token, a ring exactly full; query heads per KV head 1, 2, 3, 4, 8 and 16 (the
     * scores kernel is compiled per common group size, 3 takes the generic one). */
    const att_case step_cases[] = {
        {1024, 1500, 1, 16, 8, 256, 1024}, {2048, 1000, 1, 16, 1, 512, 0},
        {1024, 0, 1, 2, 1, 256, 1024},     {7, 3, 1, 3, 3, 64, 0},
        {16, 40, 1, 2, 2, 10, 16},         {16, 16, 1, 4, 1, 128, 16},
        {300, 299, 1, 16, 1, 512, 0},      {64, 200, 1, 4, 2, 64, 64},
        {64, 50, 1, 6, 2, 64, 32},         {128, 100, 1, 8, 1, 64, 0}, /* groups 3 and 8 */
    };
    if (p.gpu->step_pos) /* BF16 mode only */
        for (auto &c : step_cases)
            test_attention_case(p, c, true);
}

/* ---- kv_store: a copy, bit-exact (T crossing the capacity keeps the last cap rows). */
static void test_kv_store(pair_be p)
{
    const int cases[][5] = {{8, 13, 20, 2, 256}, {1024, 1500, 1, 8, 256}, {16, 3, 5, 1, 10}};
    for (auto &c : cases) {
        int cap = c[0], n_past = c[1], T = c[2], nkv = c[3], hd = c[4];
        size_t row = (size_t)nkv * hd;
        vecf kc = randv(cap * row, 0, 1), vc = randv(cap * row, 0, 1), kn = randv(T * row, 0, 1),
             vn = randv(T * row, 0, 1);
        vecf rk[2], rv[2];
        g4q_backend *bes[2] = {p.cpu, p.gpu};
        for (int b = 0; b < 2; b++) {
            g4q_backend *be = bes[b];
            g4q_buf *a = mk(be, kc), *bb = mk(be, vc), *x = mk(be, kn), *y = mk(be, vn);
            CHECK_STATUS(be->kv_store(be, a, bb, x, y, cap, n_past, T, nkv, hd), G4Q_OK);
            if (be == p.gpu && T == 1 && be->step_pos) { /* the step position: the same slot */
                g4q_buf *a2 = mk(be, kc), *b2 = mk(be, vc);
                CHECK_STATUS(be->step_pos(be, n_past), G4Q_OK);
                CHECK_STATUS(be->kv_store(be, a2, b2, x, y, cap, G4Q_STEP_POS, 1, nkv, hd), G4Q_OK);
                CHECK_MSG(get(be, a2, kc.size()) == get(be, a, kc.size()) &&
                              get(be, b2, vc.size()) == get(be, bb, vc.size()),
                          "kv_store step position cap %d n_past %d differs", cap, n_past);
                be->buf_free(be, a2), be->buf_free(be, b2);
            }
            rk[b] = get(be, a, kc.size()), rv[b] = get(be, bb, vc.size());
            be->buf_free(be, a), be->buf_free(be, bb), be->buf_free(be, x), be->buf_free(be, y);
        }
        CHECK_MSG(rk[0] == rk[1] && rv[0] == rv[1], "kv_store cap %d n_past %d T %d differs", cap,
                  n_past, T);
    }
}

/* ---- attention_store: attention then kv_store, fused for a decode step (the new K/V row is
 * written inside the attention kernels and the last block of each head sums the ranges). Must
 * equal the two plain ops bit for bit, output and caches, on every call: the step cases run three
 * times each, one after another, into output buffers filled with NaN, so a per-head counter left
 * non-zero by an earlier call would leave NaN behind. Also a prefill chunk (the plain path). */
static void test_attention_store(g4q_backend *be)
{
    const att_case cases[] = {
        {1024, 1500, 1, 16, 8, 256, 1024}, {2048, 1000, 1, 16, 1, 512, 0},
        {1024, 0, 1, 2, 1, 256, 1024},     {16, 40, 1, 2, 2, 10, 16},
        {16, 16, 1, 4, 1, 128, 16},        {64, 200, 1, 4, 2, 64, 64},
        {1024, 1023, 1, 16, 8, 256, 1024}, {8, 13, 20, 4, 2, 256, 8},
    };
    for (const att_case &c : cases) {
        const size_t row = (size_t)c.nkv * c.hd, on = (size_t)c.T * c.nh * c.hd;
        const vecf q = randv(on, 0, 0.25), kn = randv((size_t)c.T * row, 0, 0.25),
                   vn = randv((size_t)c.T * row, 0, 1.0), kc = randv((size_t)c.cap * row, 0, 0.25),
                   vc = randv((size_t)c.cap * row, 0, 1.0), nan(on, NAN);
        const bool step = c.T == 1;
        const int np = step ? G4Q_STEP_POS : c.n_past;
        g4q_buf *bq = mk(be, q), *bkn = mk(be, kn), *bvn = mk(be, vn);
        vecf ref[3];
        for (int call = 0; call < (step ? 4 : 2); call++) {
            g4q_buf *bkc = mk(be, kc), *bvc = mk(be, vc), *bo = mk(be, nan);
            if (step) CHECK_STATUS(be->step_pos(be, c.n_past), G4Q_OK);
            if (call == 0) {
                CHECK_STATUS(be->attention(be, bo, bq, bkn, bvn, bkc, bvc, c.cap, np, c.T, c.nh,
                                           c.nkv, c.hd, c.window, 1.0f),
                             G4Q_OK);
                CHECK_STATUS(be->kv_store(be, bkc, bvc, bkn, bvn, c.cap, np, c.T, c.nkv, c.hd),
                             G4Q_OK);
            } else {
                CHECK_STATUS(be->attention_store(be, bo, bq, bkn, bvn, bkc, bvc, c.cap, np, c.T,
                                                 c.nh, c.nkv, c.hd, c.window, 1.0f),
                             G4Q_OK);
            }
            vecf got[3] = {get(be, bo, on), get(be, bkc, kc.size()), get(be, bvc, vc.size())};
            for (int i = 0; i < 3; i++) {
                if (call == 0) {
                    ref[i] = got[i];
                    continue;
                }
                size_t bad = 0;
                for (size_t j = 0; j < got[i].size(); j++)
                    bad += memcmp(&got[i][j], &ref[i][j], sizeof(float)) != 0;
                CHECK_MSG(bad == 0,
                          "attention_store cap %d n_past %d T %d nh %d nkv %d hd %d, call %d: "
                          "%zu of %zu %s values differ from attention + kv_store",
                          c.cap, c.n_past, c.T, c.nh, c.nkv, c.hd, call, bad, got[i].size(),
                          i == 0   ? "output"
                          : i == 1 ? "K cache"
                                   : "V cache");
            }
            be->buf_free(be, bkc), be->buf_free(be, bvc), be->buf_free(be, bo);
        }
        be->buf_free(be, bq), be->buf_free(be, bkn), be->buf_free(be, bvn);
    }
}

/* ---- the decode step's attention in one kernel (cuda_attention_step.cu): taken for the 12B's
 * sliding and global geometries and every case here (test_attention's step cases then check it
 * against the CPU), not taken for head dims that are not a multiple of 8, grids too large to be
 * resident at once, or when turned off. Here: three calls in a row into NaN-filled outputs give
 * the same output bit for bit (its per-KV-head counters are back at zero after each call), the
 * caches equal the two-kernel form's bit for bit (the store is a copy), and the output stays
 * within a few bf16 units of the two-kernel form's (other fp32 orders; the CPU bound is
 * test_attention's). */
static void test_attention_fused(g4q_backend *gpu)
{
    g4q_backend *two = nullptr;
    g4q_cuda_opts o2 = {G4Q_CUDA_BF16, 1};
    if (!CHECK_STATUS(g4q_backend_cuda_create_opts(&g_ctx, &o2, &two), G4Q_OK)) return;
    const att_case cases[] = {
        {1024, 1500, 1, 16, 8, 256, 1024}, {1024, 1023, 1, 16, 8, 256, 1024},
        {1024, 0, 1, 2, 1, 256, 1024},     {1024, 40, 1, 16, 8, 256, 1024},
        {1100, 1090, 1, 16, 4, 512, 0},    {300, 299, 1, 4, 4, 512, 0},
        {64, 200, 1, 4, 2, 64, 64},        {64, 50, 1, 6, 2, 64, 32},
        {16, 16, 1, 4, 1, 128, 16},        {7, 3, 1, 3, 3, 64, 0},
        {2048, 1000, 1, 16, 1, 512, 0},    {1100, 1090, 1, 16, 1, 512, 0},
        {128, 100, 1, 8, 1, 64, 0},        {300, 299, 1, 16, 1, 512, 0},
    };
    for (const att_case &c : cases) {
        CHECK_MSG(g4q_cuda_attention_fused(gpu, c.cap, c.nh, c.nkv, c.hd) &&
                      !g4q_cuda_attention_fused(two, c.cap, c.nh, c.nkv, c.hd),
                  "cap %d nh %d nkv %d hd %d: expected the fused kernel on one backend only", c.cap,
                  c.nh, c.nkv, c.hd);
        const size_t row = (size_t)c.nkv * c.hd, on = (size_t)c.nh * c.hd;
        const vecf q = randv(on, 0, 0.25), kn = randv(row, 0, 0.25), vn = randv(row, 0, 1.0),
                   kc = randv((size_t)c.cap * row, 0, 0.25),
                   vc = randv((size_t)c.cap * row, 0, 1.0), nan(on, NAN);
        vecf ref[2][3];
        g4q_backend *bes[2] = {two, gpu};
        for (int b = 0; b < 2; b++)
            for (int call = 0; call < 3; call++) {
                g4q_backend *be = bes[b];
                g4q_buf *bq = mk(be, q), *bkn = mk(be, kn), *bvn = mk(be, vn), *bkc = mk(be, kc),
                        *bvc = mk(be, vc), *bo = mk(be, nan);
                CHECK_STATUS(be->step_pos(be, c.n_past), G4Q_OK);
                CHECK_STATUS(be->attention_store(be, bo, bq, bkn, bvn, bkc, bvc, c.cap,
                                                 G4Q_STEP_POS, 1, c.nh, c.nkv, c.hd, c.window,
                                                 1.0f),
                             G4Q_OK);
                const vecf now[3] = {get(be, bo, on), get(be, bkc, kc.size()),
                                     get(be, bvc, vc.size())};
                for (int i = 0; i < 3; i++) {
                    if (call == 0) ref[b][i] = now[i];
                    /* every call of a form alike; the caches alike across the forms */
                    const vecf &want = i == 0 ? ref[b][0] : ref[0][i];
                    size_t bad = 0;
                    for (size_t j = 0; j < now[i].size(); j++)
                        bad += memcmp(&now[i][j], &want[j], sizeof(float)) != 0;
                    CHECK_MSG(bad == 0,
                              "step attention cap %d n_past %d nh %d nkv %d hd %d, %s form call "
                              "%d: %zu of %zu %s values differ",
                              c.cap, c.n_past, c.nh, c.nkv, c.hd, b ? "fused" : "two-kernel", call,
                              bad, now[i].size(),
                              i == 0   ? "output"
                              : i == 1 ? "K cache"
                                       : "V cache");
                }
                g4q_buf *all[] = {bq, bkn, bvn, bkc, bvc, bo};
                for (auto *x : all)
                    be->buf_free(be, x);
            }
        double amax = 0, dmax = 0;
        for (size_t j = 0; j < on; j++) {
            amax = std::max(amax, (double)std::fabs(ref[0][0][j]));
            dmax = std::max(dmax, (double)std::fabs(ref[1][0][j] - ref[0][0][j]));
        }
        CHECK_MSG(dmax <= 4 * BF16_U * amax,
                  "step attention cap %d n_past %d nh %d nkv %d hd %d: fused vs two kernels max "
                  "|diff| %.3g (max |out| %.3g)",
                  c.cap, c.n_past, c.nh, c.nkv, c.hd, dmax, amax);
    }
    CHECK(!g4q_cuda_attention_fused(gpu, 16, 2, 2, 10));       /* hd % 8 != 0 */
    CHECK(!g4q_cuda_attention_fused(gpu, 131072, 16, 1, 512)); /* 4097 blocks do not fit */
    g4q_backend_free(two);
}

int main(void)
{
    g4q_ctx_init(&g_ctx);
    g_rng = g4q_test_seed();
    pair_be p = {nullptr, nullptr, BF16_U};
    if (!pair_open(&p)) return g4q_test_finish();
    test_attention(p);
    test_kv_store(p);
    test_attention_store(p.gpu);
    test_attention_fused(p.gpu);
    g4q_backend_free(p.gpu);
    pair_be p32;
    if (pair_open_f32(p.cpu, &p32)) {
        test_attention(p32);
        test_kv_store(p32);
        CHECK(!g4q_cuda_attention_fused(p32.gpu, 1024, 16, 8, 256));
    }
    g4q_backend_free(p32.gpu);
    g4q_backend_free(p.cpu);
    return g4q_test_finish();
}
