// The CUDA backend's evaluation ops against the CPU backend on fresh random data (backend.h
// fp8_roundtrip, logit_stats). The matmul with activation quantizations is compared in
// test_qgemm_gpu.
//   fp8_roundtrip: bf16 inputs, the GPU's result is the CPU's rounded to bf16, exactly.
//   logit_stats: bf16 logits [rows, V] of two correlated "models"; KL and NLL agree to 1e-6
//   relative (double sums in another order), the argmaxes exactly (first index on ties); the same
//   call twice gives the same bits (deterministic).
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu.h"
#include "backend/cuda/cuda_backend.h"
#include "base/bf16.h"
#include "quant/actq.h"
extern "C" {
#include "testutil.h"
}

static g4q_ctx g_ctx;
static uint64_t g_rng;

static g4q_buf *put(g4q_backend *be, const std::vector<float> &v)
{
    g4q_buf *b = nullptr;
    CHECK_STATUS(be->buf_alloc(be, be->act_dtype, v.size(), &b), G4Q_OK);
    CHECK_STATUS(be->upload(be, b, 0, v.data(), v.size()), G4Q_OK);
    return b;
}

static void test_roundtrip(g4q_backend *cpu, g4q_backend *gpu)
{
    const float scales[] = {1.0f, 0.0371f, 3.5f};
    for (float sc : scales) {
        std::vector<float> x(100003);
        for (auto &v : x)
            v = g4q_round_bf16((float)(g4q_test_normal(&g_rng) * (g4q_test_rand(&g_rng) % 5 ? 1 : 40)));
        g4q_buf *bc = put(cpu, x), *bg = put(gpu, x);
        CHECK_STATUS(cpu->fp8_roundtrip(cpu, bc, x.size(), sc), G4Q_OK);
        CHECK_STATUS(gpu->fp8_roundtrip(gpu, bg, x.size(), sc), G4Q_OK);
        std::vector<float> yc(x.size()), yg(x.size());
        CHECK_STATUS(cpu->download(cpu, bc, 0, yc.data(), x.size()), G4Q_OK);
        CHECK_STATUS(gpu->download(gpu, bg, 0, yg.data(), x.size()), G4Q_OK);
        int bad = 0;
        for (size_t i = 0; i < x.size(); i++)
            bad += yg[i] != g4q_round_bf16(yc[i]);
        CHECK_MSG(bad == 0, "fp8_roundtrip scale %g: %d of %zu differ", (double)sc, bad, x.size());
        cpu->buf_free(cpu, bc);
        gpu->buf_free(gpu, bg);
    }
}

static void test_logit_stats(g4q_backend *cpu, g4q_backend *gpu)
{
    const int sizes[][2] = {{7, 262144}, {300, 8192}, {3, 100}};
    for (const auto &sz : sizes) {
        const int R = sz[0], V = sz[1];
        std::vector<float> a((size_t)R * V), b(a.size());
        for (size_t i = 0; i < a.size(); i++) {
            a[i] = g4q_round_bf16((float)(g4q_test_normal(&g_rng) * 3));
            b[i] = g4q_round_bf16(a[i] + (float)(g4q_test_normal(&g_rng) * 0.2));
        }
        a[5] = a[9] = 30.0f; /* a tie in row 0: the first index wins */
        std::vector<int32_t> tgt(R);
        for (auto &t : tgt)
            t = (int32_t)(g4q_test_rand(&g_rng) % (uint64_t)V);
        g4q_buf *ca = put(cpu, a), *cb = put(cpu, b), *ga = put(gpu, a), *gb = put(gpu, b);
        std::vector<double> sc((size_t)R * 5), sg(sc.size()), sg2(sc.size());
        CHECK_STATUS(cpu->logit_stats(cpu, ca, cb, tgt.data(), R, V, (double(*)[5])sc.data()), G4Q_OK);
        CHECK_STATUS(gpu->logit_stats(gpu, ga, gb, tgt.data(), R, V, (double(*)[5])sg.data()), G4Q_OK);
        CHECK_STATUS(gpu->logit_stats(gpu, ga, gb, tgt.data(), R, V, (double(*)[5])sg2.data()), G4Q_OK);
        int bad = 0;
        for (int r = 0; r < R; r++) {
            const double *c = &sc[(size_t)r * 5], *g = &sg[(size_t)r * 5];
            bool ok = std::fabs(c[0] - g[0]) <= 1e-6 * std::fabs(c[0]) + 1e-12 &&
                      std::fabs(c[1] - g[1]) <= 1e-6 * std::fabs(c[1]) + 1e-9 &&
                      std::fabs(c[2] - g[2]) <= 1e-6 * std::fabs(c[2]) + 1e-9 && c[3] == g[3] &&
                      c[4] == g[4];
            if (!ok && bad++ < 3)
                CHECK_MSG(0, "V %d row %d: cpu {%.10g %.10g %.10g %g %g} gpu {%.10g %.10g %.10g %g %g}",
                          V, r, c[0], c[1], c[2], c[3], c[4], g[0], g[1], g[2], g[3], g[4]);
        }
        CHECK_MSG(bad == 0, "logit_stats V %d: %d rows differ", V, bad);
        CHECK_MSG(sc[3] == 5 && sg[3] == 5, "tie: argmax cpu %g gpu %g, expected 5", sc[3], sg[3]);
        CHECK_MSG(std::memcmp(sg.data(), sg2.data(), sg.size() * sizeof(double)) == 0,
                  "logit_stats V %d: two calls differ", V);
        cpu->buf_free(cpu, ca), cpu->buf_free(cpu, cb), gpu->buf_free(gpu, ga), gpu->buf_free(gpu, gb);
    }
}

int main()
{
    g4q_ctx_init(&g_ctx);
    g_ctx.log_level = G4Q_LOG_ERROR;
    g_rng = g4q_test_seed();
    g4q_backend *cpu = nullptr, *gpu = nullptr;
    CHECK_STATUS(g4q_backend_cpu_create(&g_ctx, &cpu), G4Q_OK);
    if (!CHECK_STATUS(g4q_backend_cuda_create(&g_ctx, &gpu), G4Q_OK)) {
        fprintf(stderr, "no CUDA GPU: %s\n", g4q_ctx_error(&g_ctx));
        return g4q_test_finish();
    }
    test_roundtrip(cpu, gpu);
    test_logit_stats(cpu, gpu);
    g4q_backend_free(gpu);
    g4q_backend_free(cpu);
    return g4q_test_finish();
}
