// The GPU pipeline of the weight quantizer (backend/wquant.h, "The GPU pipeline") and the kernels
// it brought, against the CPU reference on fresh random data:
//   - the compressed-tensors NVFP4 kernel (quant_ct_cuda.h) vs g4q_nvfp4_quantize_ct, byte for
//     byte, on awkward shapes, with the same refusals;
//   - the device amax vs g4q_quant_amax_bf16: equal values, NaN and infinity refused;
//   - g4q_wquant_gpu_run (restructured around the shared device part) vs g4q_wquant_cpu;
//   - jobs whose Hessian has a key (kept on the device with GPTQ's factor) vs unkeyed jobs;
//   - streams of random units through the pipe (every format it takes, fused units of 1 to 3,
//     chunks smaller than a weight and not a divisor of it, results held back and released out of
//     order so that the pipe waits for output slots) vs g4q_wquant_cpu on the same jobs: identical
//     bytes, results in submission order, input_done exactly once per job;
//   - failures: NaN in a fused unit (the CPU's group-amax message, no prefix) and in a lone job
//     (the CPU's message after `where`), refused submissions, a pipe freed with work in flight;
//   - timing of a 12B-like stream (printed, not checked).
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "backend/cuda/quant_ct_cuda.h"
#include "backend/cuda/quant_cuda.h"
#include "backend/wquant.h"
#include "base/bf16.h"
#include "quant/quant.h"
extern "C" {
#include "testutil.h"
}

#define CU(expr) CHECK_MSG((expr) == cudaSuccess, "%s failed", #expr)

static void fill(std::vector<uint16_t> &w, uint64_t *rng)
{
    const int laplace = (int)(g4q_test_rand(rng) & 1);
    const double scale = 0.002 + 0.05 * g4q_test_uniform(rng); // tensors of different amax
    for (auto &x : w) {
        double v = laplace ? -scale * std::log(1.0 - g4q_test_uniform(rng)) *
                                 (g4q_test_uniform(rng) < 0.5 ? -1 : 1)
                           : scale * g4q_test_normal(rng);
        x = g4q_f32_to_bf16((float)v);
    }
    if (w.size() >= 64) {
        std::memset(w.data(), 0, 32); // a zero block
        w[20] = 0x8000;               // -0.0
        w[40] = 0x0081;               // a subnormal
    }
}

template <typename T> static T *upload(const std::vector<T> &h)
{
    T *d = nullptr;
    CU(cudaMalloc(&d, h.size() * sizeof(T)));
    CU(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

template <typename T> static std::vector<T> download(const T *d, size_t n)
{
    std::vector<T> h(n);
    CU(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

// ---- the compressed-tensors NVFP4 kernel ----

static void compare_ct(int64_t R, int64_t C, uint64_t *rng)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    const size_t n = (size_t)(R * C);
    std::vector<uint16_t> w(n);
    fill(w, rng);
    uint16_t *d_w = upload(w);
    float amax = 0;
    CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w.data(), n, &amax), G4Q_OK);
    uint8_t *d_p, *d_s;
    CU(cudaMalloc(&d_p, n / 2));
    CU(cudaMalloc(&d_s, n / 16));
    const float gs[3] = {amax, amax * 1.3f, amax * 8.0f}; // own, fused (larger) group amaxes
    for (float G : gs) {
        std::vector<uint8_t> p(n / 2), s(n / 16);
        float g = 0, gg = 0;
        CHECK_STATUS(g4q_nvfp4_quantize_ct(&ctx, "w", w.data(), R, C, G, p.data(), s.data(), &g),
                     G4Q_OK);
        CHECK_STATUS(g4q_cuda_nvfp4_quantize_ct(&ctx, "w", d_w, R, C, G, d_p, d_s, &gg, nullptr),
                     G4Q_OK);
        CHECK_MSG(g == gg && download(d_p, n / 2) == p && download(d_s, n / 16) == s,
                  "NVFP4 compressed-tensors [%lld, %lld] G %.9g: GPU bytes differ (gs %.9g / %.9g)",
                  (long long)R, (long long)C, (double)G, (double)g, (double)gg);
    }
    // the same refusals: a group amax below the tensor's, a non-finite one
    float g = 0;
    if (amax > 0) {
        CHECK_STATUS(g4q_cuda_nvfp4_quantize_ct(&ctx, "w", d_w, R, C, amax * 0.5f, d_p, d_s, &g,
                                                nullptr),
                     G4Q_ERR_INVALID);
    }
    CHECK_STATUS(g4q_cuda_nvfp4_quantize_ct(&ctx, "w", d_w, R, C, INFINITY, d_p, d_s, &g, nullptr),
                 G4Q_ERR_NUMERIC);
    cudaFree(d_p);
    cudaFree(d_s);
    cudaFree(d_w);
}

// Values a bf16 amax can trip over: the largest finite value, its negative, subnormals only, all
// zeros; NaN and infinity anywhere are refused on both sides.
static void amax_edges(uint64_t *rng)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    const size_t n = 4099;
    std::vector<uint16_t> w(n);
    const uint16_t specials[5] = {0x7f7f, 0xff7f, 0x0001, 0x8000, 0x3f80};
    for (uint16_t sp : specials) {
        fill(w, rng);
        for (auto &x : w)
            x &= 0x807f; // subnormal or zero
        w[(size_t)(g4q_test_rand(rng) % n)] = sp;
        uint16_t *d_w = upload(w);
        float a = -1, ga = -2;
        CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w.data(), n, &a), G4Q_OK);
        CHECK_STATUS(g4q_cuda_amax_bf16(&ctx, "w", d_w, n, &ga, nullptr), G4Q_OK);
        CHECK_MSG(a == ga, "amax with 0x%04x: CPU %.9g, GPU %.9g", sp, (double)a, (double)ga);
        cudaFree(d_w);
    }
    const uint16_t bad[4] = {0x7fc0, 0xffc1, 0x7f80, 0xff80};
    for (uint16_t b : bad) {
        fill(w, rng);
        w[(size_t)(g4q_test_rand(rng) % n)] = b;
        uint16_t *d_w = upload(w);
        float a;
        CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w.data(), n, &a), G4Q_ERR_NUMERIC);
        CHECK_STATUS(g4q_cuda_amax_bf16(&ctx, "w", d_w, n, &a, nullptr), G4Q_ERR_NUMERIC);
        cudaFree(d_w);
    }
}

// ---- the pipe ----

// One job of a test stream: its weight, its CPU reference outputs, what came back.
struct tjob {
    std::vector<uint16_t> w;
    g4q_wquant_job job;
    std::vector<std::vector<uint8_t>> ref; // per layout tensor (empty: calibrated)
    int input_done = 0;
    std::string where;
};

static void count_input_done(void *arg)
{
    static_cast<tjob *>(arg)->input_done++;
}

struct fmt_case {
    g4q_layout_format f;
    g4q_scale_method m;
};

static const fmt_case k_cases[] = {
    {G4Q_LAYOUT_NVFP4_MO, G4Q_SCALE_MAX},     {G4Q_LAYOUT_NVFP4_MO, G4Q_SCALE_MSE},
    {G4Q_LAYOUT_NVFP4_MO, G4Q_SCALE_FOUR_OVER_SIX}, {G4Q_LAYOUT_NVFP4_CT, G4Q_SCALE_MAX},
    {G4Q_LAYOUT_FP8_BLOCK, G4Q_SCALE_MAX},    {G4Q_LAYOUT_FP8_BLOCK, G4Q_SCALE_MSE},
    {G4Q_LAYOUT_INT4_GPTQ, G4Q_SCALE_MAX},    {G4Q_LAYOUT_INT4_GPTQ, G4Q_SCALE_MSE},
    {G4Q_LAYOUT_INT4_CT, G4Q_SCALE_MAX},      {G4Q_LAYOUT_INT4_CT, G4Q_SCALE_MSE},
};

// A shape the format allows, awkward where it may be.
static void random_shape(g4q_layout_format f, uint64_t *rng, int64_t *R, int64_t *C, int big)
{
    const int64_t r = 1 + (int64_t)(g4q_test_rand(rng) % (big ? 700 : 150));
    const int64_t c = 1 + (int64_t)(g4q_test_rand(rng) % (big ? 24 : 6));
    switch (f) {
    case G4Q_LAYOUT_NVFP4_MO:
    case G4Q_LAYOUT_NVFP4_CT:
        *R = r, *C = 16 * (c * 7 + 1); // in % 16
        break;
    case G4Q_LAYOUT_FP8_BLOCK:
        *R = r + 3, *C = 100 * c + 29; // partial 128x128 blocks
        break;
    default:
        *R = 8 * ((r + 7) / 8), *C = 128 * c; // INT4: out % 8, in % 128
        break;
    }
}

// The CPU reference outputs of job (fused: with group amax G).
static void reference(tjob *t, int fused, float G)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    const g4q_layout *l = g4q_layout_get(t->job.format);
    g4q_wquant_job j = t->job;
    t->ref.assign(G4Q_LAYOUT_MAX_TENSORS, {});
    for (int k = 0; k < l->n; k++) {
        if (g4q_layout_role_calibrated(l->t[k].role)) continue;
        t->ref[k].resize(g4q_layout_nbytes(&l->t[k], j.rows, j.cols, l->group));
        j.out[k] = t->ref[k].data();
    }
    if (fused) {
        j.fused = 1;
        j.group_amax = G;
    }
    CHECK_STATUS(g4q_wquant_cpu(&ctx, &j), G4Q_OK);
}

// Checks a result against its job's reference; releases nothing.
static void check_result(const g4q_wquant_pipe_result &r, const tjob *t)
{
    const g4q_layout *l = g4q_layout_get(t->job.format);
    int n = 0;
    for (int k = 0; k < G4Q_LAYOUT_MAX_TENSORS; k++) {
        const bool want = k < l->n && !g4q_layout_role_calibrated(l->t[k].role);
        n += want;
        if (!CHECK_MSG((r.out[k] != nullptr) == want && r.nbytes[k] == t->ref[k].size(),
                       "%s output %d: %p, %llu bytes (want %zu)", t->job.name, k, r.out[k],
                       (unsigned long long)r.nbytes[k], t->ref[k].size()))
            continue;
        if (want)
            CHECK_MSG(std::memcmp(r.out[k], t->ref[k].data(), t->ref[k].size()) == 0,
                      "%s [%lld, %lld] %s %s: output %d (%s) differs from the CPU's", t->job.name,
                      (long long)t->job.rows, (long long)t->job.cols,
                      g4q_layout_name(t->job.format), g4q_scale_method_name(t->job.method), k,
                      l->t[k].suffix);
    }
    CHECK_EQ_INT(r.n_out, n);
}

// g4q_wquant_gpu_run (one job at a time: the calibration's layer hook uses it) on every case the
// pipe takes, compressed-tensors NVFP4 included, vs the CPU; with deq, the decoded weights too.
static void sync_run(uint64_t *rng)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_wquant_gpu *gpu = nullptr;
    if (!CHECK_STATUS(g4q_wquant_gpu_create(&ctx, &gpu), G4Q_OK)) return;
    for (const fmt_case &fc : k_cases) {
        tjob t;
        int64_t R, C;
        random_shape(fc.f, rng, &R, &C, 0);
        t.w.resize((size_t)(R * C));
        fill(t.w, rng);
        t.job = g4q_wquant_job{};
        t.job.format = fc.f;
        t.job.name = "w";
        t.job.rows = R;
        t.job.cols = C;
        t.job.method = fc.m;
        t.job.w = t.w.data();
        const int fused = (fc.f == G4Q_LAYOUT_NVFP4_MO || fc.f == G4Q_LAYOUT_NVFP4_CT) &&
                          (g4q_test_rand(rng) & 1);
        float G = 0;
        CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", t.w.data(), t.w.size(), &G), G4Q_OK);
        G *= 1.25f;
        reference(&t, fused, G);
        std::vector<float> deq_cpu(t.w.size()), deq_gpu(t.w.size());
        {
            g4q_wquant_job j = t.job; // the CPU's deq from its own outputs
            std::vector<std::vector<uint8_t>> o = t.ref;
            for (int k = 0; k < G4Q_LAYOUT_MAX_TENSORS; k++)
                j.out[k] = o[k].empty() ? nullptr : o[k].data();
            j.fused = fused;
            j.group_amax = G;
            j.deq = deq_cpu.data();
            CHECK_STATUS(g4q_wquant_cpu(&ctx, &j), G4Q_OK);
        }
        std::vector<std::vector<uint8_t>> got(G4Q_LAYOUT_MAX_TENSORS);
        g4q_wquant_job j = t.job;
        for (int k = 0; k < G4Q_LAYOUT_MAX_TENSORS; k++) {
            got[k].resize(t.ref[k].size());
            j.out[k] = got[k].empty() ? nullptr : got[k].data();
        }
        j.fused = fused;
        j.group_amax = G;
        j.deq = deq_gpu.data();
        CHECK(g4q_wquant_gpu_supports(&j));
        CHECK_STATUS(g4q_wquant_gpu_run(&ctx, gpu, &j), G4Q_OK);
        CHECK_MSG(got == t.ref && deq_gpu == deq_cpu,
                  "g4q_wquant_gpu_run %s %s [%lld, %lld]%s: differs from the CPU",
                  g4q_layout_name(fc.f), g4q_scale_method_name(fc.m), (long long)R, (long long)C,
                  fused ? " fused" : "");
    }
    g4q_wquant_gpu_free(gpu);
}

// Hessian keys (quant.h g4q_hess.key): jobs that name their Hessian by a key reuse the one on the
// device and GPTQ's factor of it, and give exactly the bytes of unkeyed jobs, over a sequence
// that switches Hessians (so a key must also be re-uploaded after another one): GPTQ INT4, GPTQ
// NVFP4 and an imatrix search.
static void hessian_keys(uint64_t *rng)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_wquant_gpu *keyed = nullptr, *plain = nullptr;
    if (!CHECK_STATUS(g4q_wquant_gpu_create(&ctx, &keyed), G4Q_OK) ||
        !CHECK_STATUS(g4q_wquant_gpu_create(&ctx, &plain), G4Q_OK)) {
        g4q_wquant_gpu_free(keyed);
        return;
    }
    const int64_t R = 96, C = 256, T = 300;
    std::vector<float> Hs[2];
    for (auto &H : Hs) { // x·xᵀ over T random tokens: positive definite
        std::vector<float> x((size_t)(T * C));
        for (auto &v : x)
            v = (float)g4q_test_normal(rng);
        H.assign((size_t)(C * C), 0.0f);
        for (int64_t i = 0; i < C; i++)
            for (int64_t j = 0; j < C; j++) {
                double a = 0.0;
                for (int64_t t = 0; t < T; t++)
                    a += (double)x[(size_t)(t * C + i)] * x[(size_t)(t * C + j)];
                H[(size_t)(i * C + j)] = (float)a;
            }
    }
    struct step {
        g4q_layout_format f;
        g4q_scale_method m;
        int gptq, h;
    };
    const step steps[] = {
        {G4Q_LAYOUT_INT4_GPTQ, G4Q_SCALE_MAX, 1, 0},    {G4Q_LAYOUT_INT4_GPTQ, G4Q_SCALE_MAX, 1, 0},
        {G4Q_LAYOUT_NVFP4_MO, G4Q_SCALE_MSE, 1, 0},     {G4Q_LAYOUT_INT4_CT, G4Q_SCALE_MSE, 1, 1},
        {G4Q_LAYOUT_NVFP4_MO, G4Q_SCALE_IMATRIX, 0, 1}, {G4Q_LAYOUT_INT4_GPTQ, G4Q_SCALE_MAX, 1, 0},
        {G4Q_LAYOUT_NVFP4_MO, G4Q_SCALE_MSE, 1, 1}};
    int n = 0;
    for (const step &sp : steps) {
        std::vector<uint16_t> w((size_t)(R * C));
        fill(w, rng);
        const g4q_layout *l = g4q_layout_get(sp.f);
        std::vector<std::vector<uint8_t>> out[2];
        for (int v = 0; v < 2; v++) {
            const g4q_hess h{Hs[sp.h].data(), C, 0, v ? 0 : 100u + (uint64_t)sp.h};
            g4q_wquant_job j{};
            j.format = sp.f;
            j.name = "w";
            j.rows = R;
            j.cols = C;
            j.method = sp.m;
            j.gptq = sp.gptq;
            j.w = w.data();
            j.H = &h;
            out[v].assign(G4Q_LAYOUT_MAX_TENSORS, {});
            for (int k = 0; k < l->n; k++) {
                if (g4q_layout_role_calibrated(l->t[k].role)) continue;
                out[v][k].resize(g4q_layout_nbytes(&l->t[k], R, C, l->group));
                j.out[k] = out[v][k].data();
            }
            CHECK_STATUS(g4q_wquant_gpu_run(&ctx, v ? plain : keyed, &j), G4Q_OK);
        }
        CHECK_MSG(out[0] == out[1], "step %d (%s %s%s, H%d): keyed bytes differ", n,
                  g4q_layout_name(sp.f), sp.gptq ? "gptq " : "", g4q_scale_method_name(sp.m), sp.h);
        n++;
    }
    g4q_wquant_gpu_free(keyed);
    g4q_wquant_gpu_free(plain);
}

// A GPU quantizer and a pipe over it (o NULL: the defaults); false, nothing left open, on failure.
static bool pipe_open(g4q_ctx *ctx, const g4q_wquant_pipe_opts *o, g4q_wquant_gpu **gpu,
                      g4q_wquant_pipe **p)
{
    if (!CHECK_STATUS(g4q_wquant_gpu_create(ctx, gpu), G4Q_OK)) return false;
    if (CHECK_STATUS(g4q_wquant_pipe_create(ctx, *gpu, o, p), G4Q_OK)) return true;
    g4q_wquant_gpu_free(*gpu);
    return false;
}

// A random stream of units through a pipe with small buffers; results are held back (up to
// `hold` at a time, the output slots then run out) and released in random order.
static void pipe_stream(uint64_t *rng, int n_units, size_t chunk, int copy_threads, int big)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_wquant_pipe_opts o = {};
    o.chunk_bytes = chunk;
    o.copy_threads = copy_threads;
    g4q_wquant_gpu *gpu = nullptr;
    g4q_wquant_pipe *p = nullptr;
    if (!pipe_open(&ctx, &o, &gpu, &p)) return;
    std::vector<tjob *> jobs; // in submission order
    std::vector<g4q_wquant_pipe_result> held;
    size_t next_result = 0;
    auto take = [&](const g4q_wquant_pipe_result &r) {
        CHECK_MSG(next_result < jobs.size() && r.tag == jobs[next_result],
                  "result %zu out of order", next_result);
        if (next_result < jobs.size()) check_result(r, jobs[next_result]);
        next_result++;
        held.push_back(r);
        // keep up to all but one output slot's worth of results (the pipe then waits for us;
        // holding every slot while waiting for room would break the contract: it deadlocks)
        while (held.size() > (size_t)(g4q_test_rand(rng) % G4Q_WQUANT_PIPE_OUT_SLOTS)) {
            size_t i = (size_t)(g4q_test_rand(rng) % held.size());
            for (int k = 0; k < held[i].n_out; k++)
                g4q_wquant_pipe_release(held[i].hold);
            held.erase(held.begin() + (long)i);
        }
    };
    for (int u = 0; u < n_units; u++) {
        const fmt_case fc = k_cases[g4q_test_rand(rng) % (sizeof k_cases / sizeof *k_cases)];
        const bool nvfp4 = fc.f == G4Q_LAYOUT_NVFP4_MO || fc.f == G4Q_LAYOUT_NVFP4_CT;
        const int n = nvfp4 ? 1 + (int)(g4q_test_rand(rng) % 3) : 1;
        const int fused = nvfp4 && (n > 1 || (g4q_test_rand(rng) & 1));
        g4q_wquant_pipe_item items[G4Q_WQUANT_PIPE_MAX_UNIT];
        std::memset(items, 0, sizeof items);
        float G = 0;
        std::vector<tjob *> unit;
        for (int i = 0; i < n; i++) {
            tjob *t = new tjob;
            int64_t R, C;
            random_shape(fc.f, rng, &R, &C, big);
            if (i > 0 && nvfp4) C = unit[0]->job.cols; // fused shards share their input
            t->w.resize((size_t)(R * C));
            fill(t->w, rng);
            char name[64];
            snprintf(name, sizeof name, "u%d.m%d", u, i);
            t->where = std::string("file-") + name;
            t->job = g4q_wquant_job{};
            t->job.format = fc.f;
            t->job.name = strdup(name);
            t->job.rows = R;
            t->job.cols = C;
            t->job.method = fc.m;
            t->job.w = t->w.data();
            float a;
            g4q_ctx c2;
            g4q_ctx_init(&c2);
            CHECK_STATUS(g4q_quant_amax_bf16(&c2, name, t->w.data(), t->w.size(), &a), G4Q_OK);
            G = a > G ? a : G;
            unit.push_back(t);
        }
        for (int i = 0; i < n; i++) {
            reference(unit[i], fused, G);
            items[i].job = unit[i]->job;
            items[i].tag = unit[i];
            items[i].where = unit[i]->where.c_str();
            items[i].input_done = count_input_done;
            items[i].input_arg = unit[i];
        }
        // wait for room, taking results meanwhile
        for (;;) {
            g4q_wquant_pipe_result r;
            int got = 0;
            if (!CHECK_STATUS(g4q_wquant_pipe_wait(&ctx, p, n, &r, &got), G4Q_OK)) break;
            if (!got) break;
            take(r);
        }
        if (!CHECK_STATUS(g4q_wquant_pipe_submit(&ctx, p, items, n, fused), G4Q_OK)) {
            printf("  %s\n", g4q_ctx_error(&ctx));
            break;
        }
        for (auto *t : unit)
            jobs.push_back(t);
    }
    for (;;) {
        g4q_wquant_pipe_result r;
        int got = 0;
        if (!CHECK_STATUS(g4q_wquant_pipe_wait(&ctx, p, 0, &r, &got), G4Q_OK)) {
            printf("  %s\n", g4q_ctx_error(&ctx));
            break;
        }
        if (!got) break;
        take(r);
    }
    CHECK_EQ_INT(next_result, jobs.size());
    for (auto &r : held)
        for (int k = 0; k < r.n_out; k++)
            g4q_wquant_pipe_release(r.hold);
    g4q_wquant_pipe_free(p);
    for (auto *t : jobs) {
        CHECK_EQ_INT(t->input_done, 1);
        free(const_cast<char *>(t->job.name));
        delete t;
    }
    CHECK(g4q_wquant_gpu_peak_bytes(gpu) > 0);
    g4q_wquant_gpu_free(gpu);
}

// NaN in the second member of a fused unit, then in a lone job: the CPU's failures.
static void pipe_nan(uint64_t *rng)
{
    for (int lone = 0; lone < 2; lone++) {
        g4q_ctx ctx, cpu;
        g4q_ctx_init(&ctx);
        g4q_ctx_init(&cpu);
        g4q_wquant_gpu *gpu = nullptr;
        g4q_wquant_pipe *p = nullptr;
        if (!pipe_open(&ctx, nullptr, &gpu, &p)) return;
        const int n = lone ? 1 : 3;
        std::vector<tjob> t(n);
        g4q_wquant_pipe_item items[3];
        std::memset(items, 0, sizeof items);
        const char *names[3] = {"layers.1.q_proj.weight", "layers.1.k_proj.weight",
                                "layers.1.v_proj.weight"};
        for (int i = 0; i < n; i++) {
            t[i].w.resize(64 * 256);
            fill(t[i].w, rng);
            t[i].job.format = G4Q_LAYOUT_NVFP4_MO;
            t[i].job.name = names[i];
            t[i].job.rows = 64;
            t[i].job.cols = 256;
            t[i].job.method = G4Q_SCALE_MAX;
            t[i].job.w = t[i].w.data();
            items[i].job = t[i].job;
            items[i].tag = &t[i];
            items[i].where = "model.safetensors";
            items[i].input_done = count_input_done;
            items[i].input_arg = &t[i];
        }
        const int bad = lone ? 0 : 1;
        t[bad].w[1000 + g4q_test_rand(rng) % 3000] = 0x7fc1;
        float a;
        CHECK_STATUS(g4q_quant_amax_bf16(&cpu, names[bad], t[bad].w.data(), t[bad].w.size(), &a),
                     G4Q_ERR_NUMERIC);
        const std::string want = lone ? std::string("model.safetensors: ") + g4q_ctx_error(&cpu)
                                      : std::string(g4q_ctx_error(&cpu));
        CHECK_STATUS(g4q_wquant_pipe_submit(&ctx, p, items, n, !lone), G4Q_OK);
        g4q_wquant_pipe_result r;
        int got = 0;
        g4q_status st;
        while ((st = g4q_wquant_pipe_wait(&ctx, p, 0, &r, &got)) == G4Q_OK && got) {
            CHECK_MSG(0, "a result came back from a unit with NaN");
            for (int k = 0; k < r.n_out; k++)
                g4q_wquant_pipe_release(r.hold);
        }
        CHECK_STATUS(st, G4Q_ERR_NUMERIC);
        CHECK_MSG(want == g4q_ctx_error(&ctx), "NaN message: '%s', the CPU's: '%s'",
                  g4q_ctx_error(&ctx), want.c_str());
        // sticky: later calls say the same
        CHECK_STATUS(g4q_wquant_pipe_submit(&ctx, p, items, 1, 0), G4Q_ERR_NUMERIC);
        g4q_wquant_pipe_free(p);
        for (auto &x : t)
            CHECK_EQ_INT(x.input_done, 1);
        g4q_wquant_gpu_free(gpu);
    }
}

// Submissions the pipe refuses, and a pipe freed with jobs in flight and results not taken.
static void pipe_refusals_and_free(uint64_t *rng)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_wquant_gpu *gpu = nullptr;
    g4q_wquant_pipe *p = nullptr;
    if (!pipe_open(&ctx, nullptr, &gpu, &p)) return;
    std::vector<tjob> t(G4Q_WQUANT_PIPE_MAX_JOBS + 1);
    std::vector<g4q_wquant_pipe_item> items(t.size());
    for (size_t i = 0; i < t.size(); i++) {
        t[i].w.resize(512 * 1024);
        fill(t[i].w, rng);
        t[i].job.format = G4Q_LAYOUT_FP8_BLOCK;
        t[i].job.name = "w";
        t[i].job.rows = 512;
        t[i].job.cols = 1024;
        t[i].job.method = G4Q_SCALE_MSE;
        t[i].job.w = t[i].w.data();
        items[i] = g4q_wquant_pipe_item{};
        items[i].job = t[i].job;
        items[i].input_done = count_input_done;
        items[i].input_arg = &t[i];
    }
    g4q_wquant_pipe_item x = items[0];
    x.job.gptq = 1;
    CHECK_STATUS(g4q_wquant_pipe_submit(&ctx, p, &x, 1, 0), G4Q_ERR_INVALID); // GPTQ
    x = items[0];
    x.job.format = G4Q_LAYOUT_FP8_TENSOR;
    CHECK_STATUS(g4q_wquant_pipe_submit(&ctx, p, &x, 1, 0), G4Q_ERR_INVALID); // no kernel
    x = items[0];
    x.job.format = G4Q_LAYOUT_NVFP4_CT;
    x.job.method = G4Q_SCALE_MSE;
    CHECK_STATUS(g4q_wquant_pipe_submit(&ctx, p, &x, 1, 0), G4Q_ERR_INVALID); // CT: max only
    CHECK_STATUS(g4q_wquant_pipe_submit(&ctx, p, items.data(), 2, 0), G4Q_ERR_INVALID); // not fused
    CHECK_STATUS(g4q_wquant_pipe_submit(&ctx, p, items.data(), 4, 1), G4Q_ERR_INVALID); // > 3
    // submitted until there is no room (the pipe may have finished some meanwhile): refused,
    // not blocked
    size_t accepted = 0;
    for (size_t i = 0; i < t.size(); i++) {
        g4q_status st = g4q_wquant_pipe_submit(&ctx, p, &items[i], 1, 0);
        if (st != G4Q_OK) {
            CHECK_STATUS(st, G4Q_ERR_INVALID);
            CHECK_MSG(strstr(g4q_ctx_error(&ctx), "no room") != nullptr, "%s",
                      g4q_ctx_error(&ctx));
            break;
        }
        accepted++;
    }
    CHECK(accepted >= 1);
    g4q_wquant_pipe_free(p); // with work in flight and no result taken
    for (size_t i = 0; i < accepted; i++)
        CHECK_EQ_INT(t[i].input_done, 1);
    for (size_t i = accepted; i < t.size(); i++)
        CHECK_EQ_INT(t[i].input_done, 0);
    g4q_wquant_gpu_free(gpu);
}

static double secs_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// 12B-like stream: 48 x (gate, up [15360, 3840] fused; down [3840, 15360]) NVFP4 max, from one
// pageable host copy of each shape, through the pipe vs one g4q_wquant_gpu_run at a time.
static void timings(uint64_t *rng)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    const int64_t R = 15360, C = 3840;
    std::vector<uint16_t> w((size_t)(R * C));
    fill(w, rng);
    std::vector<uint8_t> o0(w.size() / 2), o1(w.size() / 16);
    float o2;
    g4q_wquant_gpu *gpu = nullptr;
    if (!CHECK_STATUS(g4q_wquant_gpu_create(&ctx, &gpu), G4Q_OK)) return;
    const int layers = 16;
    const double gb = layers * 3.0 * (double)w.size() * 2 / 1e9;
    const g4q_layout_format fs[2] = {G4Q_LAYOUT_NVFP4_MO, G4Q_LAYOUT_NVFP4_CT};
    for (auto f : fs) {
        g4q_wquant_job job = {};
        job.format = f;
        job.name = "w";
        job.method = G4Q_SCALE_MAX;
        job.w = w.data();
        job.out[0] = o0.data();
        job.out[1] = o1.data();
        job.out[2] = &o2;
        auto t0 = std::chrono::steady_clock::now();
        for (int l = 0; l < layers * 3; l++) {
            job.rows = l % 3 == 2 ? C : R;
            job.cols = l % 3 == 2 ? R : C;
            CHECK_STATUS(g4q_wquant_gpu_run(&ctx, gpu, &job), G4Q_OK);
        }
        const double t_sync = secs_since(t0);
        g4q_wquant_pipe_opts o = {};
        o.max_w_bytes = w.size() * 2;
        o.max_out_bytes = w.size() / 2 + w.size() / 16 + 1024;
        o.copy_threads = 4;
        g4q_wquant_pipe *p = nullptr;
        if (!CHECK_STATUS(g4q_wquant_pipe_create(&ctx, gpu, &o, &p), G4Q_OK)) break;
        t0 = std::chrono::steady_clock::now();
        for (int l = 0; l < layers && g4q_test_failed == 0; l++) {
            for (int part = 0; part < 2; part++) {
                const int n = part == 0 ? 2 : 1;
                g4q_wquant_pipe_item items[2] = {};
                for (int i = 0; i < n; i++) {
                    items[i].job = job;
                    items[i].job.rows = part == 0 ? R : C;
                    items[i].job.cols = part == 0 ? C : R;
                }
                for (;;) {
                    g4q_wquant_pipe_result r;
                    int got = 0;
                    if (!CHECK_STATUS(g4q_wquant_pipe_wait(&ctx, p, n, &r, &got), G4Q_OK) || !got)
                        break;
                    for (int k = 0; k < r.n_out; k++)
                        g4q_wquant_pipe_release(r.hold);
                }
                CHECK_STATUS(g4q_wquant_pipe_submit(&ctx, p, items, n, n > 1), G4Q_OK);
            }
        }
        for (;;) {
            g4q_wquant_pipe_result r;
            int got = 0;
            if (!CHECK_STATUS(g4q_wquant_pipe_wait(&ctx, p, 0, &r, &got), G4Q_OK) || !got) break;
            for (int k = 0; k < r.n_out; k++)
                g4q_wquant_pipe_release(r.hold);
        }
        const double t_pipe = secs_since(t0);
        g4q_wquant_pipe_free(p);
        printf("  %s max, %d x (gate, up, down) of the 12B, %.2f GB bf16: one at a time %.2f s "
               "(%.1f GB/s), pipe %.2f s (%.1f GB/s)\n",
               g4q_layout_name(f), layers, gb, t_sync, gb / t_sync, t_pipe, gb / t_pipe);
    }
    printf("  peak device memory %.2f GB\n", g4q_wquant_gpu_peak_bytes(gpu) / 1e9);
    g4q_wquant_gpu_free(gpu);
}

int main()
{
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device\n");
        CHECK_MSG(0, "test_wquant_pipe_gpu needs a GPU");
        return g4q_test_finish();
    }
    uint64_t rng = g4q_test_seed();
    const int64_t shapes[][2] = {{1, 16}, {7, 48}, {129, 144}, {300, 400}, {17, 4096},
                                 {1024, 2048}, {127, 3840}};
    for (auto &sh : shapes)
        compare_ct(sh[0], sh[1], &rng);
    amax_edges(&rng);
    sync_run(&rng);
    hessian_keys(&rng);
    // small chunks (odd sizes, so every weight spans several and ends mid-chunk), one copy thread
    pipe_stream(&rng, 40, 3000, 1, 0);
    // MB-sized weights with parallel staging copies and chunks smaller than a weight
    pipe_stream(&rng, 24, (1u << 20) + 4096 + 64, 3, 1);
    // default chunks
    pipe_stream(&rng, 16, 0, 2, 1);
    pipe_nan(&rng);
    pipe_refusals_and_free(&rng);
    timings(&rng);
    return g4q_test_finish();
}
