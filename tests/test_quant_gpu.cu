// GPU quantizers (backend/cuda/quant_cuda.h) against the CPU reference (quant/quant.h): identical
// bytes on fresh random data, awkward shapes, every method (the Hessian-weighted `_h` variants with
// a random H too); plus timings on Gemma-4-12B shapes.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cuda_runtime.h>

#include "backend/cuda/quant_cuda.h"
#include "base/bf16.h"
#include "quant/quant.h"
extern "C" {
#include "testutil.h"
}

#define CU(expr) CHECK_MSG((expr) == cudaSuccess, "%s failed", #expr)

static void fill(std::vector<uint16_t> &w, uint64_t *rng, int laplace)
{
    for (auto &x : w) {
        double v = laplace ? -0.007 * std::log(1.0 - g4q_test_uniform(rng)) *
                                 (g4q_test_uniform(rng) < 0.5 ? -1 : 1)
                           : 0.02 * g4q_test_normal(rng);
        x = g4q_f32_to_bf16((float)v);
    }
    if (w.size() >= 64) {
        std::memset(w.data(), 0, 32); // a zero block / partial zero group
        w[20] = 0x8000;               // -0.0
        w[40] = 0x0081;               // a tiny value
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

static void compare(int64_t R, int64_t C, uint64_t *rng)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    size_t n = (size_t)(R * C);
    std::vector<uint16_t> w(n);
    fill(w, rng, (int)(g4q_test_rand(rng) & 1));
    uint16_t *d_w = upload(w);
    float amax = 0, gamax = 0;
    CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w.data(), n, &amax), G4Q_OK);
    CHECK_STATUS(g4q_cuda_amax_bf16(&ctx, "w", d_w, n, &gamax, nullptr), G4Q_OK);
    CHECK(amax == gamax);
    const g4q_scale_method ms[3] = {G4Q_SCALE_MAX, G4Q_SCALE_MSE, G4Q_SCALE_FOUR_OVER_SIX};
    if (C % 16 == 0) {
        std::vector<uint8_t> p(n / 2), s(n / 16);
        uint8_t *d_p, *d_s;
        CU(cudaMalloc(&d_p, n / 2));
        CU(cudaMalloc(&d_s, n / 16));
        float G = (g4q_test_rand(rng) & 1) ? amax : amax * 1.3f;
        for (auto m : ms) {
            float ws = 0, gws = 0;
            CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "w", w.data(), R, C, G, m, p.data(), s.data(),
                                            &ws),
                         G4Q_OK);
            CHECK_STATUS(g4q_cuda_nvfp4_quantize(&ctx, "w", d_w, R, C, G, m, d_p, d_s, &gws,
                                                 nullptr),
                         G4Q_OK);
            CHECK_MSG(ws == gws && download(d_p, n / 2) == p && download(d_s, n / 16) == s,
                      "NVFP4 %s [%lld, %lld]: GPU bytes differ", g4q_scale_method_name(m),
                      (long long)R, (long long)C);
        }
        cudaFree(d_p);
        cudaFree(d_s);
    }
    for (int k = 0; k < 2; k++) {
        size_t nb = g4q_fp8_block_count(R, C);
        std::vector<uint8_t> q(n);
        std::vector<float> s(nb);
        uint8_t *d_q;
        float *d_s;
        CU(cudaMalloc(&d_q, n));
        CU(cudaMalloc(&d_s, nb * 4));
        CHECK_STATUS(g4q_fp8_quantize_blocks(&ctx, "w", w.data(), R, C, ms[k], q.data(), s.data()),
                     G4Q_OK);
        CHECK_STATUS(g4q_cuda_fp8_quantize_blocks(&ctx, "w", d_w, R, C, ms[k], d_q, d_s, nullptr),
                     G4Q_OK);
        CHECK_MSG(download(d_q, n) == q && download(d_s, nb) == s,
                  "FP8 blocks %s [%lld, %lld]: GPU bytes differ", g4q_scale_method_name(ms[k]),
                  (long long)R, (long long)C);
        cudaFree(d_q);
        cudaFree(d_s);
        size_t ns = (size_t)(R * g4q_int4_group_count(C, 128));
        std::vector<int8_t> iq(n);
        std::vector<float> is(ns);
        int8_t *d_iq;
        CU(cudaMalloc(&d_iq, n));
        CU(cudaMalloc(&d_s, ns * 4));
        const g4q_dtype dts[2] = {G4Q_DT_F16, G4Q_DT_BF16};
        for (auto dt : dts) {
            CHECK_STATUS(g4q_int4_quantize(&ctx, "w", w.data(), R, C, 128, ms[k], dt, iq.data(),
                                           is.data()),
                         G4Q_OK);
            CHECK_STATUS(g4q_cuda_int4_quantize(&ctx, "w", d_w, R, C, 128, ms[k], dt, d_iq, d_s,
                                                nullptr),
                         G4Q_OK);
            CHECK_MSG(download(d_iq, n) == iq && download(d_s, ns) == is,
                      "INT4 %s %s [%lld, %lld]: GPU bytes differ", g4q_scale_method_name(ms[k]),
                      g4q_dtype_name(dt), (long long)R, (long long)C);
        }
        cudaFree(d_iq);
        cudaFree(d_s);
    }
    cudaFree(d_w);
}

// A random correlated input Hessian H = XᵀX (fp32 [C, C]) of T tokens with heavy columns (c % 7 ==
// 3, eight times larger) and dead ones (c % 11 == 4: always zero).
static std::vector<float> random_hessian(int64_t C, uint64_t *rng)
{
    const int64_t T = 96;
    std::vector<double> X((size_t)(T * C));
    for (int64_t t = 0; t < T; t++) {
        double f = g4q_test_normal(rng), prev = g4q_test_normal(rng);
        for (int64_t c = 0; c < C; c++) {
            double z = g4q_test_normal(rng), x = z + 0.8 * prev + 0.5 * f;
            prev = z;
            X[(size_t)(t * C + c)] = c % 11 == 4 ? 0.0 : c % 7 == 3 ? 8.0 * x : x;
        }
    }
    std::vector<float> H((size_t)(C * C));
    for (int64_t i = 0; i < C; i++)
        for (int64_t j = i; j < C; j++) {
            double a = 0;
            for (int64_t t = 0; t < T; t++)
                a += X[(size_t)(t * C + i)] * X[(size_t)(t * C + j)];
            H[(size_t)(i * C + j)] = H[(size_t)(j * C + i)] = (float)a;
        }
    return H;
}

// The Hessian-weighted variants (imatrix, hessian): CPU `_h` vs CUDA `_h`, byte for byte, on
// fresh random weights and a random H; H == NULL refused on the GPU as on the CPU.
static void compare_h(int64_t R, int64_t C, uint64_t *rng)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    size_t n = (size_t)(R * C);
    std::vector<uint16_t> w(n);
    fill(w, rng, (int)(g4q_test_rand(rng) & 1));
    std::vector<float> H = random_hessian(C, rng);
    uint16_t *d_w = upload(w);
    float *d_H = upload(H);
    // H's diagonal 128 x 128 blocks as the calibration hands them over (quant.h g4q_hess), which
    // hold every search's blocks (16, 128, 32 and 128): the same bytes as with the whole H. (Up
    // to 128 inputs one block is the whole H: g4q_hess_block gives 0.)
    const int bw = g4q_hess_block(C, 128) ? 128 : (int)C;
    const int64_t nb = (C + bw - 1) / bw;
    std::vector<float> Hc((size_t)(nb * bw * bw), 0.0f);
    for (int64_t i = 0; i < C; i++)
        for (int64_t j = i / bw * bw; j < C && j < i / bw * bw + bw; j++)
            Hc[(size_t)((i / bw) * bw * bw + (i % bw) * bw + j % bw)] = H[(size_t)(i * C + j)];
    float *d_Hc = upload(Hc);
    const g4q_hess hv{H.data(), C, 0, 0}, dhv{d_H, C, 0, 0}, dhc{d_Hc, C, 128, 0};
    float amax = 0;
    CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", w.data(), n, &amax), G4Q_OK);
    const g4q_scale_method ms[2] = {G4Q_SCALE_IMATRIX, G4Q_SCALE_HESSIAN};
    for (auto m : ms) {
        const char *mn = g4q_scale_method_name(m);
        if (C % 16 == 0) {
            std::vector<uint8_t> p(n / 2), s(n / 16);
            uint8_t *d_p, *d_s;
            CU(cudaMalloc(&d_p, n / 2));
            CU(cudaMalloc(&d_s, n / 16));
            float ws = 0, gws = 0;
            CHECK_STATUS(g4q_nvfp4_quantize_h(&ctx, "w", w.data(), R, C, amax, m, &hv, p.data(),
                                              s.data(), &ws),
                         G4Q_OK);
            for (const g4q_hess *dh : {&dhv, &dhc}) {
                CHECK_STATUS(g4q_cuda_nvfp4_quantize_h(&ctx, "w", d_w, R, C, amax, m, dh, d_p, d_s,
                                                       &gws, nullptr),
                             G4Q_OK);
                CHECK_MSG(ws == gws && download(d_p, n / 2) == p && download(d_s, n / 16) == s,
                          "NVFP4 %s [%lld, %lld], H blocks %d: GPU bytes differ", mn, (long long)R,
                          (long long)C, dh->block);
            }
            CHECK_STATUS(g4q_cuda_nvfp4_quantize_h(&ctx, "mlp.n", d_w, R, C, amax, m, nullptr,
                                                   d_p, d_s, &gws, nullptr),
                         G4Q_ERR_INVALID);
            CHECK(strstr(g4q_ctx_error(&ctx), "mlp.n") != nullptr);
            cudaFree(d_p);
            cudaFree(d_s);
        }
        size_t nbf = g4q_fp8_block_count(R, C);
        std::vector<uint8_t> q(n);
        std::vector<float> s(nbf);
        uint8_t *d_q;
        float *d_s;
        CU(cudaMalloc(&d_q, n));
        CU(cudaMalloc(&d_s, nbf * 4));
        CHECK_STATUS(
            g4q_fp8_quantize_blocks_h(&ctx, "w", w.data(), R, C, m, &hv, q.data(), s.data()),
            G4Q_OK);
        for (const g4q_hess *dh : {&dhv, &dhc}) {
            CHECK_STATUS(
                g4q_cuda_fp8_quantize_blocks_h(&ctx, "w", d_w, R, C, m, dh, d_q, d_s, nullptr),
                G4Q_OK);
            CHECK_MSG(download(d_q, n) == q && download(d_s, nbf) == s,
                      "FP8 blocks %s [%lld, %lld], H blocks %d: GPU bytes differ", mn, (long long)R,
                      (long long)C, dh->block);
        }
        CHECK_STATUS(g4q_cuda_fp8_quantize_blocks_h(&ctx, "w", d_w, R, C, m, nullptr, d_q, d_s,
                                                    nullptr),
                     G4Q_ERR_INVALID);
        cudaFree(d_q);
        cudaFree(d_s);
        const int groups[2] = {128, 32};
        const g4q_dtype dts[2] = {G4Q_DT_F16, G4Q_DT_BF16};
        for (int k = 0; k < 2; k++) {
            size_t ns = (size_t)(R * g4q_int4_group_count(C, groups[k]));
            std::vector<int8_t> iq(n);
            std::vector<float> is(ns);
            int8_t *d_iq;
            CU(cudaMalloc(&d_iq, n));
            CU(cudaMalloc(&d_s, ns * 4));
            CHECK_STATUS(g4q_int4_quantize_h(&ctx, "w", w.data(), R, C, groups[k], m, dts[k], &hv,
                                             iq.data(), is.data()),
                         G4Q_OK);
            for (const g4q_hess *dh : {&dhv, &dhc}) {
                CHECK_STATUS(g4q_cuda_int4_quantize_h(&ctx, "w", d_w, R, C, groups[k], m, dts[k],
                                                      dh, d_iq, d_s, nullptr),
                             G4Q_OK);
                CHECK_MSG(download(d_iq, n) == iq && download(d_s, ns) == is,
                          "INT4 g%d %s %s [%lld, %lld], H blocks %d: GPU bytes differ", groups[k],
                          mn, g4q_dtype_name(dts[k]), (long long)R, (long long)C, dh->block);
            }
            CHECK_STATUS(g4q_cuda_int4_quantize_h(&ctx, "w", d_w, R, C, groups[k], m, dts[k],
                                                  nullptr, d_iq, d_s, nullptr),
                         G4Q_ERR_INVALID);
            cudaFree(d_iq);
            cudaFree(d_s);
        }
    }
    // a bad diagonal is refused on the GPU as on the CPU
    H[0] = -1.0f;
    CU(cudaMemcpy(d_H, H.data(), 4, cudaMemcpyHostToDevice));
    {
        int8_t *d_iq;
        float *d_s;
        CU(cudaMalloc(&d_iq, n));
        CU(cudaMalloc(&d_s, (size_t)(R * g4q_int4_group_count(C, 128)) * 4));
        CHECK_STATUS(g4q_cuda_int4_quantize_h(&ctx, "w", d_w, R, C, 128, G4Q_SCALE_IMATRIX,
                                              G4Q_DT_F16, &dhv, d_iq, d_s, nullptr),
                     G4Q_ERR_NUMERIC);
        // blocks of 16 do not hold the 128-column groups' hessian blocks
        const g4q_hess d16{d_Hc, C, 16, 0};
        if (C > 128) {
            CHECK_STATUS(g4q_cuda_int4_quantize_h(&ctx, "mlp.g", d_w, R, C, 128, G4Q_SCALE_HESSIAN,
                                                  G4Q_DT_F16, &d16, d_iq, d_s, nullptr),
                         G4Q_ERR_INVALID);
            CHECK(strstr(g4q_ctx_error(&ctx), "mlp.g") != nullptr);
        }
        cudaFree(d_iq);
        cudaFree(d_s);
    }
    cudaFree(d_w);
    cudaFree(d_H);
    cudaFree(d_Hc);
}

static double secs_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Timings on the largest Gemma-4-12B Linear shape (gate/up [15360, 3840]).
static void timings(uint64_t *rng)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    const int64_t R = 15360, C = 3840;
    size_t n = (size_t)(R * C);
    std::vector<uint16_t> w(n);
    fill(w, rng, 0);
    uint16_t *d_w = upload(w);
    uint8_t *d_a, *d_b;
    float *d_f;
    CU(cudaMalloc(&d_a, n));
    CU(cudaMalloc(&d_b, n / 16 + 16));
    CU(cudaMalloc(&d_f, (size_t)(R * C / 128) * 4));
    float amax, ws;
    CHECK_STATUS(g4q_cuda_amax_bf16(&ctx, "w", d_w, n, &amax, nullptr), G4Q_OK);
    const g4q_scale_method ms[3] = {G4Q_SCALE_MAX, G4Q_SCALE_MSE, G4Q_SCALE_FOUR_OVER_SIX};
    for (auto m : ms) {
        auto t0 = std::chrono::steady_clock::now();
        CHECK_STATUS(g4q_cuda_nvfp4_quantize(&ctx, "w", d_w, R, C, amax, m, d_a, d_b, &ws, nullptr),
                     G4Q_OK);
        printf("  GPU nvfp4 %-14s [15360, 3840]: %.1f ms\n", g4q_scale_method_name(m),
               1e3 * secs_since(t0));
    }
    for (int k = 0; k < 2; k++) {
        auto t0 = std::chrono::steady_clock::now();
        CHECK_STATUS(g4q_cuda_fp8_quantize_blocks(&ctx, "w", d_w, R, C, ms[k], d_a, d_f, nullptr),
                     G4Q_OK);
        printf("  GPU fp8-block %-10s [15360, 3840]: %.1f ms\n", g4q_scale_method_name(ms[k]),
               1e3 * secs_since(t0));
        t0 = std::chrono::steady_clock::now();
        CHECK_STATUS(g4q_cuda_int4_quantize(&ctx, "w", d_w, R, C, 128, ms[k], G4Q_DT_F16,
                                            (int8_t *)d_a, d_f, nullptr),
                     G4Q_OK);
        printf("  GPU int4 %-15s [15360, 3840]: %.1f ms\n", g4q_scale_method_name(ms[k]),
               1e3 * secs_since(t0));
    }
    // the weighted searches, with a random H [3840, 3840]
    {
        std::vector<float> H = random_hessian(C, rng);
        float *d_Hf = upload(H);
        const g4q_hess dhv{d_Hf, C, 0, 0}, *d_H = &dhv;
        const g4q_scale_method wm[2] = {G4Q_SCALE_IMATRIX, G4Q_SCALE_HESSIAN};
        for (auto m : wm) {
            auto t0 = std::chrono::steady_clock::now();
            CHECK_STATUS(g4q_cuda_nvfp4_quantize_h(&ctx, "w", d_w, R, C, amax, m, d_H, d_a, d_b,
                                                   &ws, nullptr),
                         G4Q_OK);
            printf("  GPU nvfp4 %-14s [15360, 3840]: %.1f ms\n", g4q_scale_method_name(m),
                   1e3 * secs_since(t0));
            t0 = std::chrono::steady_clock::now();
            CHECK_STATUS(g4q_cuda_fp8_quantize_blocks_h(&ctx, "w", d_w, R, C, m, d_H, d_a, d_f,
                                                        nullptr),
                         G4Q_OK);
            printf("  GPU fp8-block %-10s [15360, 3840]: %.1f ms\n", g4q_scale_method_name(m),
                   1e3 * secs_since(t0));
            t0 = std::chrono::steady_clock::now();
            CHECK_STATUS(g4q_cuda_int4_quantize_h(&ctx, "w", d_w, R, C, 128, m, G4Q_DT_F16, d_H,
                                                  (int8_t *)d_a, d_f, nullptr),
                         G4Q_OK);
            printf("  GPU int4 %-15s [15360, 3840]: %.1f ms\n", g4q_scale_method_name(m),
                   1e3 * secs_since(t0));
        }
        cudaFree(d_Hf);
    }
    // one CPU reference timing for scale
    std::vector<uint8_t> p(n / 2), s(n / 16);
    auto t0 = std::chrono::steady_clock::now();
    CHECK_STATUS(g4q_nvfp4_quantize(&ctx, "w", w.data(), R, C, amax, G4Q_SCALE_MSE, p.data(),
                                    s.data(), &ws),
                 G4Q_OK);
    printf("  CPU nvfp4 mse [15360, 3840]: %.1f ms\n", 1e3 * secs_since(t0));
    cudaFree(d_w);
    cudaFree(d_a);
    cudaFree(d_b);
    cudaFree(d_f);
}

int main()
{
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device\n");
        CHECK_MSG(0, "test_quant_gpu needs a GPU");
        return g4q_test_finish();
    }
    uint64_t rng = g4q_test_seed();
    const int64_t shapes[][2] = {{1, 16}, {7, 48}, {129, 144}, {300, 400}, {256, 384},
                                 {1024, 2048}, {5, 1}, {129, 257}};
    for (auto &sh : shapes)
        compare(sh[0], sh[1], &rng);
    // weighted variants (the CPU reference of hessian is O(cols · bs) per row, so smaller shapes)
    const int64_t hshapes[][2] = {{1, 16}, {7, 48}, {129, 144}, {300, 400}, {5, 1}, {129, 257}};
    for (auto &sh : hshapes)
        compare_h(sh[0], sh[1], &rng);
    timings(&rng);
    return g4q_test_finish();
}
