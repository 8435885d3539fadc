// The CUDA backend (src/backend/cuda) against the CPU reference backend (src/backend/cpu), op by
// op on fresh random data and awkward sizes, then a whole random model through g4q_forward on
// both; plus, with --bench MODEL_DIR, the decode / prefill benchmark of scripts/bench/forward_gpu.sh.
//
// Inputs are rounded to bf16 first, so both backends see the same values; the CPU computes in fp32
// without rounding activations, the GPU rounds where the bf16 reference does (docs/gemma4.md
// §4.9). Tolerances count those roundings: BF16_U = 2^-8 is the unit roundoff of bf16 (8
// significant bits), so one rounding moves a value by at most BF16_U·|value|.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu.h"
#include "backend/cuda/cuda_backend.h"
#include "base/bf16.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/synth.h"
#include "model/weights.h"
#include "runtime/kvcache.h"
extern "C" {
#include "testutil.h"
}

static const double BF16_U = 1.0 / 256.0; /* unit roundoff of bf16: 2^-(8 significant bits) */
static g4q_ctx g_ctx;
static uint64_t g_rng;

typedef std::vector<float> vecf;

static vecf randv(size_t n, double mean, double sigma)
{
    vecf v(n);
    for (auto &x : v)
        x = g4q_round_bf16((float)(mean + sigma * g4q_test_normal(&g_rng)));
    return v;
}

struct pair_be {
    g4q_backend *cpu, *gpu;
};

static g4q_buf *mk(g4q_backend *be, const vecf &v, size_t n = 0)
{
    g4q_buf *b = nullptr;
    size_t cnt = v.empty() ? n : v.size();
    CHECK_STATUS(be->buf_alloc(be, be->act_dtype, cnt, &b), G4Q_OK);
    if (!v.empty()) CHECK_STATUS(be->upload(be, b, 0, v.data(), v.size()), G4Q_OK);
    return b;
}

static vecf get(g4q_backend *be, const g4q_buf *b, size_t n)
{
    vecf v(n);
    CHECK_STATUS(be->download(be, b, 0, v.data(), n), G4Q_OK);
    return v;
}

static g4q_bweight *bindw(g4q_backend *be, const std::vector<uint16_t> &w, int64_t rows,
                          int64_t cols)
{
    g4q_weight_desc d = {};
    d.format = G4Q_WF_BF16, d.rows = rows, d.cols = cols, d.data = w.data(), d.name = "test";
    g4q_bweight *out = nullptr;
    CHECK_STATUS(be->weight_bind(be, &d, &out), G4Q_OK);
    return out;
}

static std::vector<uint16_t> to_bf16(const vecf &v)
{
    std::vector<uint16_t> o(v.size());
    for (size_t i = 0; i < v.size(); i++)
        o[i] = g4q_f32_to_bf16(v[i]);
    return o;
}

/* Counts |gpu - cpu| > tol(i) and reports the worst ratio; NaN counts as bad. */
template <typename F>
static void compare(const char *what, const vecf &cpu, const vecf &gpu, F tol)
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

/* ---- matmul: the GPU rounds each output once (BF16_U·|y|); both sum in fp32 in different
 * orders, each within 2·in·FLT_EPSILON·Σ|w·x| of the exact sum (γ_n bound, as test_forward). */
static void test_matmul(pair_be p)
{
    const int sizes[][3] = {{1, 15360, 3840}, {1, 7, 15}, {2, 129, 256}, {3, 33, 64},
                            {4, 17, 24},      {7, 129, 127}, {129, 257, 512}, {5, 1, 8}};
    for (auto &s : sizes) {
        int n = s[0], out = s[1], in = s[2];
        vecf w = randv((size_t)out * in, 0, 0.05), x = randv((size_t)n * in, 0, 1.0);
        auto wb = to_bf16(w);
        vecf r[2];
        g4q_backend *bes[2] = {p.cpu, p.gpu};
        for (int b = 0; b < 2; b++) {
            g4q_backend *be = bes[b];
            g4q_buf *bx = mk(be, x), *by = mk(be, {}, (size_t)n * out);
            g4q_bweight *bw = bindw(be, wb, out, in);
            CHECK_STATUS(be->matmul(be, by, bx, bw, n), G4Q_OK);
            r[b] = get(be, by, (size_t)n * out);
            be->weight_free(be, bw), be->buf_free(be, bx), be->buf_free(be, by);
        }
        char what[64];
        snprintf(what, sizeof what, "matmul n %d out %d in %d", n, out, in);
        compare(what, r[0], r[1], [&](size_t i) {
            int t = (int)(i / out), o = (int)(i % out);
            double mag = 0;
            for (int k = 0; k < in; k++)
                mag += std::fabs((double)w[(size_t)o * in + k] * x[(size_t)t * in + k]);
            return BF16_U * std::fabs(r[0][i]) + 4.0 * in * FLT_EPSILON * mag + 1e-30;
        });
    }
}

/* ---- rmsnorm: one output rounding plus a few fp32 roundings: 1.01·BF16_U·|y| + 8 eps. */
static void test_rmsnorm(pair_be p)
{
    const int sizes[][2] = {{1, 1}, {7, 256}, {129, 512}, {3, 3840}, {33, 64}, {2, 15360}};
    for (auto &s : sizes)
        for (int with_w = 0; with_w < 2; with_w++) {
            int rows = s[0], n = s[1];
            vecf x = randv((size_t)rows * n, 0, 3.0), w = randv((size_t)n, 1.0, 0.5);
            auto wb = to_bf16(w);
            vecf r[2];
            g4q_backend *bes[2] = {p.cpu, p.gpu};
            for (int b = 0; b < 2; b++) {
                g4q_backend *be = bes[b];
                g4q_buf *bx = mk(be, x);
                g4q_bweight *bw = with_w ? bindw(be, wb, 1, n) : nullptr;
                CHECK_STATUS(be->rmsnorm(be, bx, bx, bw, rows, n, 1e-6f), G4Q_OK);
                r[b] = get(be, bx, x.size());
                be->weight_free(be, bw), be->buf_free(be, bx);
            }
            char what[64];
            snprintf(what, sizeof what, "rmsnorm %d x %d weight %d", rows, n, with_w);
            compare(what, r[0], r[1], [&](size_t i) {
                return 1.01 * BF16_U * std::fabs(r[0][i]) + 8 * FLT_EPSILON * std::fabs(r[0][i]) +
                       1e-30;
            });
        }
}

/* ---- rope: c and s rounded (BF16_U each), two products rounded, the sum rounded: the output of
 * a pair (a, b) moves by at most 4·BF16_U·(|a| + |b|). Unrotated dims must be bit-exact. */
static void test_rope(pair_be p)
{
    struct {
        int hd, angles, T, heads, pos0;
        double theta;
    } cases[] = {{512, 64, 3, 2, 97, 1e6}, {256, 128, 7, 8, 0, 1e4}, {256, 128, 1, 16, 5000, 1e4},
                 {64, 32, 129, 1, 3, 1e4}, {10, 3, 5, 3, 1, 1e4}};
    for (auto &c : cases) {
        g4q_layer_config lc = {};
        lc.head_dim = c.hd, lc.rope_angles = c.angles, lc.rope.theta = c.theta;
        vecf tab((size_t)c.hd / 2);
        g4q_forward_rope_table(&lc, tab.data());
        size_t n = (size_t)c.T * c.heads * c.hd;
        vecf x = randv(n, 0, 1.0);
        vecf r[2];
        g4q_backend *bes[2] = {p.cpu, p.gpu};
        for (int b = 0; b < 2; b++) {
            g4q_backend *be = bes[b];
            g4q_buf *bx = mk(be, x), *bt = nullptr;
            CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, tab.size(), &bt), G4Q_OK);
            CHECK_STATUS(be->upload(be, bt, 0, tab.data(), tab.size()), G4Q_OK);
            CHECK_STATUS(be->rope(be, bx, bt, c.T, c.heads, c.hd, c.pos0), G4Q_OK);
            r[b] = get(be, bx, n);
            be->buf_free(be, bx), be->buf_free(be, bt);
        }
        const int half = c.hd / 2;
        int moved = 0;
        for (size_t i = 0; i < n; i++)
            if ((int)(i % half) >= c.angles % (half + 1) && (int)((i % c.hd) % half) >= c.angles)
                moved += r[1][i] != x[i];
        char what[80];
        snprintf(what, sizeof what, "rope hd %d angles %d T %d pos0 %d", c.hd, c.angles, c.T,
                 c.pos0);
        CHECK_MSG(!moved, "%s: %d unrotated values changed", what, moved);
        compare(what, r[0], r[1], [&](size_t i) {
            size_t base = i / c.hd * c.hd;
            int j = (int)(i % c.hd) % half;
            return 4 * BF16_U * (std::fabs(x[base + j]) + std::fabs(x[base + j + half])) + 1e-30;
        });
    }
}
