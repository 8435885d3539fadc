// GPTQ and the Hessian on the GPU against their CPU references, on fresh random data each run:
//   - backend gram (H = xᵀx, and += with accumulate) on CUDA (bf16 and F32 activations) equals
//     the CPU backend's to fp32 summation-order rounding;
//   - the GPU inverse factor U agrees with g4q_gptq_inverse_factor to fp64-then-fp32 rounding,
//     with the same dead columns;
//   - given the CPU's U, the GPU column loop gives byte-identical outputs for INT4 g128 (max, mse
//     and hessian scales, f16 and bf16), NVFP4 (ModelOpt, max, mse and hessian) and FP8 128x128
//     blocks (max, imatrix), with dead input columns;
//   - with its own U, the GPU's codes agree with the CPU's almost everywhere, and its layer
//     output error Σ_t ||(W − Ŵ)·x_t||² is within 1% of the CPU's.
#include <cmath>
#include <cstring>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/quant_cuda.h"
#include "base/bf16.h"
#include "quant/gptq.h"
#include "quant/quant.h"
extern "C" {
#include "testutil.h"
}

#define CU(x) CHECK_MSG((x) == cudaSuccess, "%s failed", #x)

static uint64_t rng;

enum { ROWS = 256, COLS = 640, NTOK = 1200 };

template <typename T> static T *upload(const std::vector<T> &h)
{
    T *d = nullptr;
    CU(cudaMalloc(&d, h.size() * sizeof(T) + 16));
    CU(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

template <typename T> static std::vector<T> download(const T *d, size_t n)
{
    std::vector<T> h(n);
    CU(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

struct Data {
    std::vector<uint16_t> w;
    std::vector<float> x, H;
};

// W normal with outliers; x AR(1)-correlated with channel scales 0.2..5 and two dead channels.
static Data make_data()
{
    Data d;
    d.w.resize((size_t)ROWS * COLS);
    d.x.resize((size_t)NTOK * COLS);
    d.H.assign((size_t)COLS * COLS, 0.0f);
    for (auto &v : d.w) {
        double a = 0.02 * g4q_test_normal(&rng);
        if (g4q_test_uniform(&rng) < 0.002) a *= 12.0;
        v = g4q_f32_to_bf16((float)a);
    }
    std::vector<float> scale(COLS);
    for (auto &s : scale)
        s = (float)(0.2 * pow(25.0, g4q_test_uniform(&rng)));
    scale[7] = scale[300] = 0.0f;
    for (int t = 0; t < NTOK; t++) {
        double prev = 0.0;
        for (int c = 0; c < COLS; c++) {
            prev = 0.85 * prev + g4q_test_normal(&rng);
            d.x[(size_t)t * COLS + c] = (float)prev * scale[c];
        }
    }
    std::vector<double> acc((size_t)COLS * COLS, 0.0);
    for (int t = 0; t < NTOK; t++)
        for (int i = 0; i < COLS; i++)
            for (int j = 0; j <= i; j++)
                acc[(size_t)i * COLS + j] +=
                    (double)d.x[(size_t)t * COLS + i] * d.x[(size_t)t * COLS + j];
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j <= i; j++)
            d.H[(size_t)i * COLS + j] = d.H[(size_t)j * COLS + i] = (float)acc[(size_t)i * COLS + j];
    return d;
}

static void test_gram()
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_backend *cpu = nullptr, *gpu = nullptr, *g32 = nullptr;
    g4q_cuda_opts o32 = {};
    o32.precision = G4Q_CUDA_F32;
    if (!CHECK_STATUS(g4q_backend_cpu_create(&ctx, &cpu), G4Q_OK) ||
        !CHECK_STATUS(g4q_backend_cuda_create(&ctx, &gpu), G4Q_OK) ||
        !CHECK_STATUS(g4q_backend_cuda_create_opts(&ctx, &o32, &g32), G4Q_OK))
        return;
    const int rows = 333, n = 200;
    std::vector<float> x((size_t)rows * n);
    for (auto &v : x) // bf16-exact inputs, so that both activation types hold the same values
        v = g4q_bf16_to_f32(g4q_f32_to_bf16((float)g4q_test_normal(&rng)));
    std::vector<double> ref((size_t)n * n, 0.0);
    for (int t = 0; t < rows; t++)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                ref[(size_t)i * n + j] += 2.0 * x[(size_t)t * n + i] * x[(size_t)t * n + j];
    g4q_backend *bes[3] = {cpu, gpu, g32};
    // block 0: every entry; 16 and 40 divide n; 64 and 7 leave a shorter last block
    for (int block : {0, 16, 40, 64, 7, 1})
        for (g4q_backend *be : bes) {
            g4q_buf *bx = nullptr, *bh = nullptr;
            CHECK_STATUS(be->buf_alloc(be, be->act_dtype, x.size(), &bx), G4Q_OK);
            CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, (size_t)n * n, &bh), G4Q_OK);
            CHECK_STATUS(be->upload(be, bx, 0, x.data(), x.size()), G4Q_OK);
            std::vector<float> h((size_t)n * n, 7.0f); // stale values the first call must clear
            CHECK_STATUS(be->upload(be, bh, 0, h.data(), h.size()), G4Q_OK);
            CHECK_STATUS(be->gram(be, bh, bx, rows, n, block, 0), G4Q_OK);
            CHECK_STATUS(be->gram(be, bh, bx, rows, n, block, 1), G4Q_OK); // twice: 2 xᵀx
            // held as quant.h's g4q_hess: [n, n], or the diagonal blocks compact
            const size_t count = g4q_hess_count(n, block);
            CHECK_STATUS(be->download(be, bh, 0, h.data(), count), G4Q_OK);
            const int bw = block ? block : n, nblk = (n + bw - 1) / bw;
            auto at = [&](int i, int j) -> float & {
                return h[(size_t)(i / bw) * bw * bw + (size_t)(i % bw) * bw + (size_t)(j % bw)];
            };
            double worst = 0.0;
            int sym = 1, zero = 1;
            for (int kb = 0; kb < nblk; kb++)
                for (int i = kb * bw; i < kb * bw + bw; i++)
                    for (int j = kb * bw; j < kb * bw + bw; j++) {
                        if (i >= n || j >= n) { // the padding of a shorter last block
                            zero &= at(i, j) == 0.0f;
                            continue;
                        }
                        sym &= at(i, j) == at(j, i);
                        const double scale = sqrt(ref[(size_t)i * n + i] * ref[(size_t)j * n + j]);
                        worst = fmax(worst, fabs(at(i, j) - ref[(size_t)i * n + j]) / scale);
                    }
            CHECK_MSG(worst < 1e-5, "%s gram block %d: relative error %g", be->name, block, worst);
            CHECK_MSG(sym, "%s gram block %d: H is not exactly symmetric", be->name, block);
            CHECK_MSG(zero, "%s gram block %d: the padding past n is not 0", be->name, block);
            be->buf_free(be, bx);
            be->buf_free(be, bh);
        }
    for (g4q_backend *be : bes)
        be->destroy(be);
}

// Σ_t ||(W − Ŵ)·x_t||² in fp64.
static double out_err(const Data &d, const std::vector<float> &deq)
{
    double e = 0.0;
    for (int t = 0; t < NTOK; t += 3) // every third token keeps the test quick
        for (int r = 0; r < ROWS; r++) {
            double s = 0.0;
            for (int c = 0; c < COLS; c++)
                s += ((double)g4q_bf16_to_f32(d.w[(size_t)r * COLS + c]) - deq[(size_t)r * COLS + c]) *
                     d.x[(size_t)t * COLS + c];
            e += s * s;
        }
    return e;
}

enum Fmt {
    INT4_MAX_F16,
    INT4_MSE_BF16,
    INT4_HESS_F16,
    NVFP4_MAX,
    NVFP4_MSE,
    NVFP4_HESS,
    FP8_MAX,
    FP8_IMATRIX,
    NFMT
};
static const char *const fmt_name[NFMT] = {"int4 max f16",  "int4 mse bf16",  "int4 hessian",
                                           "nvfp4 max",     "nvfp4 mse",      "nvfp4 hessian",
                                           "fp8-block max", "fp8-block imatrix"};
static const g4q_scale_method fmt_method[NFMT] = {
    G4Q_SCALE_MAX, G4Q_SCALE_MSE, G4Q_SCALE_HESSIAN, G4Q_SCALE_MAX,
    G4Q_SCALE_MSE, G4Q_SCALE_HESSIAN, G4Q_SCALE_MAX, G4Q_SCALE_IMATRIX};
static bool is_int4(Fmt f) { return f <= INT4_HESS_F16; }
static bool is_fp8(Fmt f) { return f >= FP8_MAX; }

struct Out {
    std::vector<uint8_t> codes; // INT4: int8 q; NVFP4: packed; FP8: E4M3
    std::vector<uint8_t> scales;
    float g = 0.0f;
    std::vector<float> deq;
};

static void dequant(Fmt f, Out &o)
{
    o.deq.resize((size_t)ROWS * COLS);
    if (is_int4(f))
        g4q_int4_dequantize(reinterpret_cast<const int8_t *>(o.codes.data()),
                            reinterpret_cast<const float *>(o.scales.data()), ROWS, COLS, 128,
                            o.deq.data());
    else if (is_fp8(f))
        g4q_fp8_dequantize_blocks(o.codes.data(), reinterpret_cast<const float *>(o.scales.data()),
                                  ROWS, COLS, o.deq.data());
    else
        g4q_nvfp4_dequantize(o.codes.data(), o.scales.data(), o.g, ROWS, COLS, o.deq.data());
}

static size_t code_bytes(Fmt f)
{
    return !is_int4(f) && !is_fp8(f) ? (size_t)ROWS * COLS / 2 : (size_t)ROWS * COLS;
}

static size_t scale_bytes(Fmt f)
{
    if (!is_int4(f) && !is_fp8(f)) return (size_t)ROWS * COLS / 16;
    if (is_fp8(f)) return sizeof(float) * ((ROWS + 127) / 128) * ((COLS + 127) / 128);
    return sizeof(float) * (size_t)ROWS * (COLS / 128);
}

static g4q_status run_cpu(g4q_ctx *ctx, Fmt f, const Data &d, float amax, const g4q_gptq_opts *o,
                          Out &out)
{
    out.codes.assign(code_bytes(f), 0);
    out.scales.assign(scale_bytes(f), 0);
    g4q_status st;
    const g4q_scale_method m = fmt_method[f];
    if (is_int4(f))
        st = g4q_gptq_int4(ctx, "w", d.w.data(), ROWS, COLS, 128, m,
                           f == INT4_MSE_BF16 ? G4Q_DT_BF16 : G4Q_DT_F16, d.H.data(), o,
                           reinterpret_cast<int8_t *>(out.codes.data()),
                           reinterpret_cast<float *>(out.scales.data()));
    else if (is_fp8(f))
        st = g4q_gptq_fp8_blocks(ctx, "w", d.w.data(), ROWS, COLS, m, d.H.data(), o,
                                 out.codes.data(), reinterpret_cast<float *>(out.scales.data()));
    else
        st = g4q_gptq_nvfp4(ctx, "w", d.w.data(), ROWS, COLS, amax, m, d.H.data(), o,
                            out.codes.data(), out.scales.data(), &out.g);
    if (st == G4Q_OK) dequant(f, out);
    return st;
}

static g4q_status run_gpu(g4q_ctx *ctx, cublasHandle_t blas, Fmt f, const uint16_t *d_w,
                          const float *d_H, float amax, const g4q_gptq_opts *o, Out &out)
{
    uint8_t *d_c = nullptr, *d_s = nullptr;
    CU(cudaMalloc(&d_c, code_bytes(f)));
    CU(cudaMalloc(&d_s, scale_bytes(f)));
    const g4q_scale_method m = fmt_method[f];
    g4q_status st;
    if (is_int4(f))
        st = g4q_cuda_gptq_int4(ctx, "w", blas, d_w, ROWS, COLS, 128, m,
                                f == INT4_MSE_BF16 ? G4Q_DT_BF16 : G4Q_DT_F16, d_H, o,
                                reinterpret_cast<int8_t *>(d_c), reinterpret_cast<float *>(d_s),
                                nullptr);
    else if (is_fp8(f))
        st = g4q_cuda_gptq_fp8_blocks(ctx, "w", blas, d_w, ROWS, COLS, m, d_H, o, d_c,
                                      reinterpret_cast<float *>(d_s), nullptr);
    else
        st = g4q_cuda_gptq_nvfp4(ctx, "w", blas, d_w, ROWS, COLS, amax, m, d_H, o, d_c, d_s,
                                 &out.g, nullptr);
    out.codes = download(d_c, code_bytes(f));
    out.scales = download(d_s, scale_bytes(f));
    cudaFree(d_c);
    cudaFree(d_s);
    if (st == G4Q_OK) dequant(f, out);
    return st;
}

static void test_gptq()
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    cublasHandle_t blas;
    if (!CHECK(cublasCreate(&blas) == CUBLAS_STATUS_SUCCESS)) return;
    Data d = make_data();
    float amax = 0.0f;
    CHECK_STATUS(g4q_quant_amax_bf16(&ctx, "w", d.w.data(), d.w.size(), &amax), G4Q_OK);
    uint16_t *d_w = upload(d.w);
    float *d_H = upload(d.H);

    // The inverse factor.
    std::vector<float> U((size_t)COLS * COLS);
    std::vector<uint8_t> dead(COLS);
    CHECK_STATUS(g4q_gptq_inverse_factor(&ctx, "w", d.H.data(), COLS, 0.01, U.data(), dead.data()),
                 G4Q_OK);
    float *d_U = nullptr;
    uint8_t *d_dead = nullptr;
    CU(cudaMalloc(&d_U, U.size() * sizeof(float)));
    CU(cudaMalloc(&d_dead, COLS));
    CHECK_STATUS(g4q_cuda_gptq_factor(&ctx, "w", blas, d_H, COLS, 0.01, d_U, d_dead, nullptr),
                 G4Q_OK);
    std::vector<float> gU = download(d_U, U.size());
    std::vector<uint8_t> gdead = download(d_dead, (size_t)COLS);
    double worst = 0.0;
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j < COLS; j++) {
            const size_t k = (size_t)i * COLS + j;
            worst = fmax(worst, fabs((double)gU[k] - U[k]) / fabs((double)U[(size_t)i * COLS + i]));
        }
    CHECK_MSG(worst < 1e-5, "GPU inverse factor differs from the CPU's by %g (relative)", worst);
    CHECK(gdead == dead && dead[7] == 1 && dead[300] == 1 && dead[8] == 0);
    cudaFree(d_U);
    d_U = upload(U);

    for (int fi = 0; fi < NFMT; fi++) {
        const Fmt f = (Fmt)fi;
        Out cpu, gpu_same, gpu_own;
        g4q_gptq_opts with_u = {};
        with_u.U = U.data();
        g4q_gptq_opts with_du = {};
        with_du.U = d_U;
        if (!CHECK_STATUS(run_cpu(&ctx, f, d, amax, &with_u, cpu), G4Q_OK) ||
            !CHECK_STATUS(run_gpu(&ctx, blas, f, d_w, d_H, amax, &with_du, gpu_same), G4Q_OK) ||
            !CHECK_STATUS(run_gpu(&ctx, blas, f, d_w, d_H, amax, nullptr, gpu_own), G4Q_OK))
            continue;
        CHECK_MSG(cpu.codes == gpu_same.codes && cpu.scales == gpu_same.scales && cpu.g == gpu_same.g,
                  "%s: the GPU column loop with the CPU's U is not byte-identical", fmt_name[f]);
        size_t same = 0;
        for (size_t k = 0; k < cpu.codes.size(); k++)
            same += cpu.codes[k] == gpu_own.codes[k];
        const double agree = (double)same / (double)cpu.codes.size();
        const double ec = out_err(d, cpu.deq), eg = out_err(d, gpu_own.deq);
        CHECK_MSG(agree > 0.98, "%s: GPU codes agree with the CPU's on %.4f only", fmt_name[f],
                  agree);
        CHECK_MSG(fabs(eg / ec - 1.0) < 0.01, "%s: output error GPU %g vs CPU %g", fmt_name[f], eg,
                  ec);
        printf("%-14s codes agree %.5f, output error GPU/CPU %.5f\n", fmt_name[f], agree, eg / ec);
    }
    cudaFree(d_w);
    cudaFree(d_H);
    cudaFree(d_U);
    cudaFree(d_dead);
    cublasDestroy(blas);
}

int main(void)
{
    rng = g4q_test_seed();
    test_gram();
    test_gptq();
    return g4q_test_finish();
}
