// Packed-weight matmul of the CUDA backend (src/backend/cuda/cuda_qgemm.cu) against the CPU
// backend and an fp64 reference, for every packed format and flag of backend.h: random bf16
// weights are quantized with src/quant, the same packed bytes are bound on both backends, and
// y = x · Wᵀ is compared for n = 1, 2, 3, 4 (decode GEMV), 7 and 64 (prefill path) tokens on
// fresh random x, with shapes that hit the GEMV's tails: rows not a multiple of its 16-row tiles,
// columns that end inside a 64- or 32-column superblock or a 256-column iteration, partial FP8
// blocks, INT4 groups of 8, 16, 24, 32, 40, 48, 64, 96, 128 and 1024 (each of the GEMV's group
// classes), long rows split across warps, and columns that are not a multiple of 16 (prefill).
// NVFP4 block scales that are negative, zero (with non-zero codes) or subnormal, and NaN codes or
// scales (which send a weight to the prefill path at every n), are checked too. The prefill
// widening (g4q_cuda_qslice) is also held bit for bit to ql_value per element, on every weight
// above and on row windows that start and end inside 16-row tiles (r0 = 0, 3, 9, 16, rows - 1),
// checking which kernel it takes (the fallback for NaN weights and FP8 with cols % 8 != 0) and
// that nothing past the window is written. The fused decode ops (matmul3, matmul_geglu) on packed
// weights equal the plain ops bit for bit. Also: invalid descriptors are refused.
// With --bench, GEMV, prefill widening and n = 1024 matmul timings of the 12B's largest shapes
// for BF16 and each packed format; with
// --bench-model DIR [PROMPT [STEPS]], decode (logits downloaded every step; then greedy, the pick
// on the device as in `gemma4q-run generate`) and prefill tokens/s of a checkpoint folder, BF16 or
// quantized (scripts/bench/forward_quant_gpu.sh runs it on the 12B in each format); with the
// environment G4Q_BENCH_SKIP, decode steps with classes of ops left out (timing only, see
// skip_parse; scripts/bench/decode_shares.sh).
//
// Tolerance. Both backends sum the products of the same fp32 weights in fp32 in different orders
// (the GPU decode GEMV on tensor cores with the block, group or global scale applied to partial
// sums, which changes only the rounding), each within γ = 2·in·FLT_EPSILON of Σ|w·x| (the γ_n
// bound used by test_backend_gpu); the GPU rounds its sum once to bf16 (BF16_U = 2^-8). So
//   |gpu − cpu| <= BF16_U·|cpu| + (2 + BF16_U)·γ·Σ|w·x|,
// and the same bound against the fp64 sum of the src/quant dequantized weights.
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_qlayout.h"
#include "base/bf16.h"
#include "base/sys.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/qlinear.h"
#include "quant/actq.h"
#include "quant/quant.h"
#include "model/kvcache.h"
extern "C" {
#include "testutil.h"
}

static const double BF16_U = 1.0 / 256.0;
static g4q_ctx g_ctx;
static uint64_t g_rng;

typedef std::vector<float> vecf;

/* A quantized weight: the packed bytes (kept alive for the CPU binding) and its descriptor. */
struct qweight {
    const char *what;
    g4q_weight_desc d = {};
    std::vector<uint8_t> data, scale;
    float scale2 = 0;
    vecf deq; /* fp32 [rows, cols] from the src/quant decoders */
    bool nogemv = false; /* NaN codes or scales: the GPU takes the prefill path at every n */
};

enum variant { NVFP4_MO, NVFP4_CT, FP8_BLOCK, FP8_TENSOR, INT4_CT, INT4_GPTQ, VARIANTS };

static std::vector<uint16_t> rand_weights(int64_t rows, int64_t cols)
{
    std::vector<uint16_t> w((size_t)(rows * cols));
    for (auto &v : w) {
        double x = g4q_test_normal(&g_rng) * 0.05;
        if (g4q_test_rand(&g_rng) % 97 == 0) x *= 8; /* a few outliers per row */
        v = g4q_f32_to_bf16((float)x);
    }
    return w;
}

/* Quantizes w into variant v; returns false (nothing to test) when the shape does not fit. */
static bool make_qweight(variant v, const std::vector<uint16_t> &w, int64_t rows, int64_t cols,
                         int group, g4q_dtype sdt, qweight *q)
{
    g4q_ctx *ctx = &g_ctx;
    const size_t n = (size_t)(rows * cols);
    float amax = 0;
    CHECK_STATUS(g4q_quant_amax_bf16(ctx, "w", w.data(), n, &amax), G4Q_OK);
    q->d.rows = rows, q->d.cols = cols, q->d.name = "qtest";
    q->deq.assign(n, 0.0f);
    switch (v) {
    case NVFP4_MO:
    case NVFP4_CT:
        if (cols % 16) return false;
        q->data.resize(n / 2), q->scale.resize(n / 16);
        if (v == NVFP4_MO) {
            q->what = "nvfp4 modelopt";
            CHECK_STATUS(g4q_nvfp4_quantize(ctx, "w", w.data(), rows, cols, amax, G4Q_SCALE_MAX,
                                            q->data.data(), q->scale.data(), &q->scale2),
                         G4Q_OK);
            g4q_nvfp4_dequantize(q->data.data(), q->scale.data(), q->scale2, rows, cols,
                                 q->deq.data());
        } else {
            q->what = "nvfp4 compressed-tensors";
            CHECK_STATUS(g4q_nvfp4_quantize_ct(ctx, "w", w.data(), rows, cols, amax,
                                               q->data.data(), q->scale.data(), &q->scale2),
                         G4Q_OK);
            g4q_nvfp4_ct_dequantize(q->data.data(), q->scale.data(), q->scale2, rows, cols,
                                    q->deq.data());
            q->d.flags = G4Q_WD_GLOBAL_RECIPROCAL;
        }
        q->d.format = G4Q_WF_NVFP4;
        q->d.scale2 = &q->scale2;
        break;
    case FP8_BLOCK:
    case FP8_TENSOR: {
        q->data.resize(n);
        q->d.format = G4Q_WF_FP8_BLOCK;
        if (v == FP8_BLOCK) {
            q->what = "fp8 128x128";
            q->scale.resize(g4q_fp8_block_count(rows, cols) * sizeof(float));
            CHECK_STATUS(g4q_fp8_quantize_blocks(ctx, "w", w.data(), rows, cols, G4Q_SCALE_MAX,
                                                 q->data.data(), (float *)q->scale.data()),
                         G4Q_OK);
            g4q_fp8_dequantize_blocks(q->data.data(), (const float *)q->scale.data(), rows, cols,
                                      q->deq.data());
        } else {
            q->what = "fp8 per tensor";
            q->scale.resize(sizeof(float));
            CHECK_STATUS(g4q_fp8_quantize_tensor(ctx, "w", w.data(), rows, cols, amax,
                                                 G4Q_FP8_ROUND_EXACT, q->data.data(),
                                                 (float *)q->scale.data()),
                         G4Q_OK);
            g4q_fp8_dequantize_tensor(q->data.data(), *(const float *)q->scale.data(), rows, cols,
                                      q->deq.data());
            q->d.flags = G4Q_WD_FP8_PER_TENSOR;
        }
        break;
    }
    default: {
        if (cols % group || (v == INT4_GPTQ && (rows % 8 || sdt != G4Q_DT_F16))) return false;
        const size_t ng = (size_t)(cols / group);
        std::vector<int8_t> qv(n);
        vecf sc((size_t)rows * ng);
        CHECK_STATUS(g4q_int4_quantize(ctx, "w", w.data(), rows, cols, group, G4Q_SCALE_MAX, sdt,
                                       qv.data(), sc.data()),
                     G4Q_OK);
        g4q_int4_dequantize(qv.data(), sc.data(), rows, cols, group, q->deq.data());
        q->data.resize(n / 2);
        q->d.format = G4Q_WF_INT4;
        q->d.group = group;
        q->d.scale_dtype = sdt;
        if (v == INT4_CT) {
            q->what = sdt == G4Q_DT_F16 ? "int4 ct f16" : sdt == G4Q_DT_BF16 ? "int4 ct bf16"
                                                                              : "int4 ct f32";
            q->scale.resize(sc.size() * g4q_dtype_size(sdt));
            CHECK_STATUS(g4q_int4_pack_ct(ctx, "w", qv.data(), sc.data(), rows, cols, group, sdt,
                                          (int32_t *)q->data.data(), q->scale.data()),
                         G4Q_OK);
        } else {
            q->what = "int4 gptq";
            q->scale.resize(sc.size() * 2);
            std::vector<int32_t> qz(ng * (size_t)(rows / 8)), gidx((size_t)cols);
            CHECK_STATUS(g4q_int4_pack_gptq(ctx, "w", qv.data(), sc.data(), rows, cols, group,
                                            (int32_t *)q->data.data(), qz.data(),
                                            (uint16_t *)q->scale.data(), gidx.data()),
                         G4Q_OK);
            q->d.flags = G4Q_WD_INT4_GPTQ;
        }
        break;
    }
    }
    q->d.data = q->data.data();
    q->d.scale = q->scale.data();
    return true;
}

static vecf run(g4q_backend *be, const qweight &q, const vecf &x, int n)
{
    const size_t ny = (size_t)n * (size_t)q.d.rows;
    vecf y(ny, NAN);
    g4q_bweight *w = nullptr;
    g4q_buf *bx = nullptr, *by = nullptr;
    if (!CHECK_STATUS(be->weight_bind(be, &q.d, &w), G4Q_OK)) return y;
    CHECK_STATUS(be->buf_alloc(be, be->act_dtype, x.size(), &bx), G4Q_OK);
    CHECK_STATUS(be->buf_alloc(be, be->act_dtype, ny, &by), G4Q_OK);
    CHECK_STATUS(be->upload(be, bx, 0, x.data(), x.size()), G4Q_OK);
    CHECK_STATUS(be->matmul(be, by, bx, w, n), G4Q_OK);
    CHECK_STATUS(be->download(be, by, 0, y.data(), ny), G4Q_OK);
    be->weight_free(be, w);
    be->buf_free(be, bx);
    be->buf_free(be, by);
    return y;
}

/* ---- the prefill widening, bit for bit ---- */

/* The reference: __float2bfloat16_rn(ql_value) per element, as bits. */
template <int FMT>
static __global__ void ref_slice_kernel(const qlayout L, const void *data, const void *scale,
                                        int tensor, int64_t r0, size_t count, uint16_t *out)
{
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const int64_t r = r0 + (int64_t)(i / (size_t)L.cols), c = (int64_t)(i % (size_t)L.cols);
    out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(ql_value<FMT>(L, data, scale, tensor, r, c)));
}

/* g4q_cuda_qslice of row windows of q (bound on gpu) against ref_slice_kernel: every bit of the
 * window, and the guard past it untouched (0xABAB). */
static void check_slices(g4q_backend *gpu, const qweight &q)
{
    g4q_bweight *w = nullptr;
    if (!CHECK_STATUS(gpu->weight_bind(gpu, &q.d, &w), G4Q_OK)) return;
    const int64_t R = q.d.rows, C = q.d.cols;
    const bool fast = !q.nogemv && C % 8 == 0;
    CHECK_MSG(g4q_cuda_qslice_fast(w) == fast, "%s [%lld, %lld]: fast path %d, want %d", q.what,
              (long long)R, (long long)C, (int)g4q_cuda_qslice_fast(w), (int)fast);
    const qlayout L = ql_make(w->format, w->rows, w->cols, w->group);
    const int tensor = w->qtensor > 0.0f;
    cudaStream_t st = g4q_cuda_st(gpu)->stream;
    const size_t cap = (size_t)(R * C) + 64; /* elements, with a guard past the largest window */
    uint16_t *dq = nullptr, *dr = nullptr;
    if (!CHECK(cudaMalloc(&dq, cap * 2) == cudaSuccess &&
               cudaMalloc(&dr, cap * 2) == cudaSuccess)) {
        cudaFree(dq);
        gpu->weight_free(gpu, w);
        return;
    }
    std::vector<uint16_t> hq(cap), hr(cap);
    const int64_t wins[][2] = {{0, R}, {16, R - 16}, {3, R - 5}, {9, 14}, {R - 1, 1}};
    for (const auto &win : wins) {
        const int64_t r0 = win[0], nr = win[1];
        if (nr < 1 || r0 + nr > R) continue;
        const size_t n = (size_t)(nr * C);
        cudaMemsetAsync(dq, 0xAB, cap * 2, st);
        CHECK_STATUS(g4q_cuda_qslice(gpu, w, r0, nr, (__nv_bfloat16 *)dq), G4Q_OK);
        const unsigned b = (unsigned)((n + 255) / 256);
        const void *d = w->data, *sc = w->qscale;
        if (w->format == G4Q_WF_NVFP4)
            ref_slice_kernel<G4Q_WF_NVFP4><<<b, 256, 0, st>>>(L, d, sc, tensor, r0, n, dr);
        else if (w->format == G4Q_WF_FP8_BLOCK)
            ref_slice_kernel<G4Q_WF_FP8_BLOCK><<<b, 256, 0, st>>>(L, d, sc, tensor, r0, n, dr);
        else
            ref_slice_kernel<G4Q_WF_INT4><<<b, 256, 0, st>>>(L, d, sc, tensor, r0, n, dr);
        if (!CHECK(cudaStreamSynchronize(st) == cudaSuccess &&
                   cudaMemcpy(hq.data(), dq, cap * 2, cudaMemcpyDeviceToHost) == cudaSuccess &&
                   cudaMemcpy(hr.data(), dr, n * 2, cudaMemcpyDeviceToHost) == cudaSuccess))
            break;
        size_t bad = 0, first = 0, guard = 0;
        for (size_t i = 0; i < n; i++)
            if (hq[i] != hr[i] && !bad++) first = i;
        for (size_t i = n; i < cap; i++)
            guard += hq[i] != 0xABABu;
        CHECK_MSG(!bad && !guard,
                  "%s [%lld, %lld] group %d rows %lld + %lld (%s): %zu of %zu differ from ql_value "
                  "(first at row %lld col %lld: 0x%04x, want 0x%04x), %zu written past the window",
                  q.what, (long long)R, (long long)C, q.d.group, (long long)r0, (long long)nr,
                  fast ? "fast" : "fallback", bad, n,
                  (long long)(r0 + (int64_t)(first / (size_t)C)), (long long)(first % (size_t)C),
                  hq[first], hr[first], guard);
    }
    cudaFree(dq);
    cudaFree(dr);
    gpu->weight_free(gpu, w);
}

static void check_case(g4q_backend *cpu, g4q_backend *gpu, const qweight &q, int n)
{
    const int64_t out = q.d.rows, in = q.d.cols;
    vecf x((size_t)n * (size_t)in);
    for (auto &v : x)
        v = g4q_round_bf16((float)g4q_test_normal(&g_rng));
    const vecf yc = run(cpu, q, x, n), yg = run(gpu, q, x, n);
    /* The reference multiplies Q(x) (actq.h, computed here on the host) by alpha. */
    vecf xq = x;
    for (int t = 0; t < n; t++)
        g4q_actq_row(q.d.act, q.d.act_scale, &xq[(size_t)t * (size_t)in], in);
    const double alpha = g4q_actq_alpha(q.d.act, q.d.act_scale);
    /* The tensor-core path (n > 4, in % 16 != 0, or an activation quantization) rounds FP8-block
     * and INT4 weights, and FP8_GROUP activations, to bf16 (relative BF16_U = 2^-8 per product each:
     * bf16 keeps 8 significant bits, so round-to-nearest moves a value by up to 2^-8 of it);
     * compressed-tensors NVFP4 applies fl32(1/global) as a factor instead of dividing. */
    const bool tc = n > 4 || in % 16 || q.d.act != G4Q_ACTQ_NONE || q.nogemv;
    double round = 0;
    if (tc && ((q.d.format == G4Q_WF_FP8_BLOCK && !(q.d.flags & G4Q_WD_FP8_PER_TENSOR)) ||
               q.d.format == G4Q_WF_INT4))
        round += BF16_U;
    if (tc && q.d.act == G4Q_ACTQ_FP8_GROUP) round += BF16_U;
    if (tc && (q.d.flags & G4Q_WD_GLOBAL_RECIPROCAL)) round += 2 * FLT_EPSILON;
    const double gamma = 2.0 * (double)in * FLT_EPSILON;
    int bad_cpu = 0, bad_ref = 0;
    double worst = 0;
    size_t wi = 0;
    double wref = 0;
    for (int t = 0; t < n; t++)
        for (int64_t o = 0; o < out; o++) {
            double ref = 0, mag = 0;
            const float *wr = &q.deq[(size_t)(o * in)], *xr = &xq[(size_t)t * (size_t)in];
            for (int64_t k = 0; k < in; k++)
                ref += (double)wr[k] * xr[k], mag += std::fabs((double)wr[k] * xr[k]);
            ref *= alpha, mag *= alpha;
            const size_t i = (size_t)t * (size_t)out + (size_t)o;
            if (std::isnan(ref)) { /* a NaN weight in the row: NaN on both backends */
                if (!std::isnan(yc[i])) bad_cpu++;
                if (!std::isnan(yg[i])) bad_ref++;
                continue;
            }
            const double slack = ((2.0 + BF16_U) * gamma + round) * mag;
            const double e_cpu = std::fabs((double)yg[i] - yc[i]);
            const double t_cpu = BF16_U * std::fabs((double)yc[i]) + slack;
            const double e_ref = std::fabs((double)yg[i] - ref);
            const double t_ref = BF16_U * std::fabs(ref) + slack;
            if (!(e_cpu <= t_cpu)) bad_cpu++;
            if (!(e_ref <= t_ref)) bad_ref++;
            const double ratio = t_cpu > 0 ? e_cpu / t_cpu : (e_cpu > 0 ? INFINITY : 0);
            if (ratio > worst || ratio != ratio) worst = ratio, wi = i, wref = ref;
        }
    CHECK_MSG(!bad_cpu && !bad_ref,
              "%s act %d [%lld, %lld] group %d n %d: %d off vs cpu, %d off vs fp64 (worst at %zu: "
              "cpu %g gpu %g fp64 %g, err/tol %.3g)",
              q.what, (int)q.d.act, (long long)out, (long long)in, q.d.group, n, bad_cpu, bad_ref, wi, yc[wi],
              yg[wi], wref, worst);
}

static void test_formats(g4q_backend *cpu, g4q_backend *gpu)
{
    struct shape {
        int64_t rows, cols;
        int group;
        bool gemv_only; /* n = 1 and 4, no activation quantization (a large weight) */
    };
    /* rows % 16 and cols % 256 vary; {24, 15360} splits rows across 8 warps of 7-8 iterations;
     * {21, 292} is FP8 only (cols % 8 != 0: the per-element widening); {6400, 2048}: 400 row
     * tiles, whose 8 warps per tile would take 400 blocks, more than one wave on an H200's 132
     * SMs, so NVFP4 and FP8 take 4 (the GEMV's one-wave rule, 200 blocks); decode sizes only */
    const shape shapes[] = {{136, 256, 128}, {300, 272, 16},  {8, 40, 8},      {129, 3840, 128},
                            {1024, 1024, 32}, {1, 16, 8},     {40, 352, 32},   {24, 176, 16},
                            {72, 960, 64},    {50, 1536, 96}, {33, 624, 48},   {17, 144, 24},
                            {20, 1024, 1024}, {24, 15360, 128}, {9, 1280, 40}, {21, 292, 8},
                            {6400, 2048, 128, true}};
    const g4q_dtype sdts[] = {G4Q_DT_F16, G4Q_DT_BF16, G4Q_DT_F32};
    const int ns[] = {1, 2, 3, 4, 7, 64};
    for (const shape &s : shapes) {
        const std::vector<uint16_t> w = rand_weights(s.rows, s.cols);
        for (int v = 0; v < VARIANTS; v++) {
            const int nsdt = v == INT4_CT ? 3 : 1;
            for (int k = 0; k < nsdt; k++) {
                qweight q;
                if (!make_qweight((variant)v, w, s.rows, s.cols, s.group, sdts[k], &q)) continue;
                check_slices(gpu, q);
                if (s.gemv_only) {
                    for (int n : {1, 4})
                        check_case(cpu, gpu, q, n);
                    continue;
                }
                for (int n : ns)
                    check_case(cpu, gpu, q, n);
                /* Engine numerics: each activation quantization in front of this weight. */
                const g4q_actq acts[] = {G4Q_ACTQ_NVFP4, G4Q_ACTQ_FP8_TENSOR, G4Q_ACTQ_FP8_GROUP};
                for (g4q_actq a : acts) {
                    if (a == G4Q_ACTQ_NVFP4 && s.cols % 16) continue;
                    q.d.act = a;
                    q.d.act_scale = a == G4Q_ACTQ_NVFP4 ? 4.0f / 2688.0f : 4.0f / 448.0f;
                    for (int n : {1, 7, 64})
                        check_case(cpu, gpu, q, n);
                }
                q.d.act = G4Q_ACTQ_NONE;
            }
        }
    }
}

/* ---- fused decode GEMVs: matmul3 (q, k, v in one launch) and matmul_geglu (gate and up with
 * GeGLU) on packed weights are the same sums as matmul, so they must equal the GPU's own plain
 * ops bit for bit (plain matmul is checked against the CPU and fp64 above). Weights of different
 * formats do not share a launch and take the plain ops. */
static std::vector<uint16_t> dl_bits(g4q_backend *be, g4q_buf *b, size_t n)
{
    vecf f(n);
    CHECK_STATUS(be->download(be, b, 0, f.data(), n), G4Q_OK);
    std::vector<uint16_t> r(n);
    for (size_t i = 0; i < n; i++)
        r[i] = g4q_f32_to_bf16(f[i]); /* exact: the values are bf16 */
    return r;
}

static void check_fused(g4q_backend *gpu, const qweight *q[3], int n)
{
    const int64_t in = q[0]->d.cols;
    vecf x((size_t)n * (size_t)in);
    for (auto &v : x)
        v = g4q_round_bf16((float)g4q_test_normal(&g_rng));
    g4q_bweight *w[3] = {};
    g4q_buf *bx = nullptr, *y[3] = {}, *z[3] = {}, *tmp = nullptr;
    bool ok = CHECK_STATUS(gpu->buf_alloc(gpu, gpu->act_dtype, x.size(), &bx), G4Q_OK) &&
              CHECK_STATUS(gpu->upload(gpu, bx, 0, x.data(), x.size()), G4Q_OK);
    for (int i = 0; i < 3 && ok; i++) {
        const size_t ny = (size_t)n * (size_t)q[i]->d.rows;
        ok = CHECK_STATUS(gpu->weight_bind(gpu, &q[i]->d, &w[i]), G4Q_OK) &&
             CHECK_STATUS(gpu->buf_alloc(gpu, gpu->act_dtype, ny, &y[i]), G4Q_OK) &&
             CHECK_STATUS(gpu->buf_alloc(gpu, gpu->act_dtype, ny, &z[i]), G4Q_OK);
    }
    if (ok) {
        for (int nw = 2; nw <= 3; nw++) {
            CHECK_STATUS(gpu->matmul3(gpu, bx, n, y[0], w[0], y[1], w[1], nw == 3 ? y[2] : nullptr,
                                      nw == 3 ? w[2] : nullptr),
                         G4Q_OK);
            for (int i = 0; i < nw; i++) {
                const size_t ny = (size_t)n * (size_t)q[i]->d.rows;
                CHECK_STATUS(gpu->matmul(gpu, z[i], bx, w[i], n), G4Q_OK);
                CHECK_MSG(dl_bits(gpu, y[i], ny) == dl_bits(gpu, z[i], ny),
                          "matmul3 %s/%s/%s n %d: weight %d differs from matmul", q[0]->what,
                          q[1]->what, q[2]->what, n, i);
            }
        }
        if (q[1]->d.rows == q[0]->d.rows) { /* gate = w[0], up = w[1] */
            const size_t ny = (size_t)n * (size_t)q[0]->d.rows;
            CHECK_STATUS(gpu->buf_alloc(gpu, gpu->act_dtype, ny, &tmp), G4Q_OK);
            CHECK_STATUS(gpu->matmul_geglu(gpu, y[0], tmp, bx, w[0], w[1], n), G4Q_OK);
            CHECK_STATUS(gpu->matmul(gpu, z[0], bx, w[0], n), G4Q_OK);
            CHECK_STATUS(gpu->matmul(gpu, z[1], bx, w[1], n), G4Q_OK);
            CHECK_STATUS(gpu->geglu(gpu, z[0], z[0], z[1], ny), G4Q_OK);
            CHECK_MSG(dl_bits(gpu, y[0], ny) == dl_bits(gpu, z[0], ny),
                      "matmul_geglu %s/%s n %d differs from matmul, matmul, geglu", q[0]->what,
                      q[1]->what, n);
        }
    }
    gpu->buf_free(gpu, bx), gpu->buf_free(gpu, tmp);
    for (int i = 0; i < 3; i++)
        gpu->weight_free(gpu, w[i]), gpu->buf_free(gpu, y[i]), gpu->buf_free(gpu, z[i]);
}

static void test_fused(g4q_backend *gpu)
{
    /* rows: q and the gate/up pair share 40 rows (two tiles and a half); k and v differ. cols
     * 3840 / group 128: several warps per tile; 352 / 32: one iteration short of a superblock. */
    const int64_t rows[3] = {40, 40, 24};
    const int64_t colss[2] = {352, 3840};
    const int groups[2] = {32, 128};
    for (int c = 0; c < 2; c++)
        for (int v = 0; v < VARIANTS; v++) {
            qweight qs[3];
            const qweight *q[3] = {&qs[0], &qs[1], &qs[2]};
            bool made = true;
            for (int i = 0; i < 3 && made; i++)
                made = make_qweight((variant)v, rand_weights(rows[i], colss[c]), rows[i],
                                    colss[c], groups[c], G4Q_DT_F16, &qs[i]);
            if (!made) continue;
            for (int n = 1; n <= 4; n++)
                check_fused(gpu, q, n);
        }
    /* mixed formats: NVFP4 q, FP8 k and v */
    qweight a, b, d;
    if (make_qweight(NVFP4_MO, rand_weights(40, 352), 40, 352, 32, G4Q_DT_F16, &a) &&
        make_qweight(FP8_BLOCK, rand_weights(40, 352), 40, 352, 32, G4Q_DT_F16, &b) &&
        make_qweight(FP8_BLOCK, rand_weights(24, 352), 24, 352, 32, G4Q_DT_F16, &d)) {
        const qweight *q[3] = {&a, &b, &d};
        check_fused(gpu, q, 1);
    }
}

/* NVFP4 block scales the quantizers never write (negative, zero with non-zero codes, E4M3
 * subnormal) and NaN codes or scales, on both backends; the reference decodes the same bytes. */
static void test_edges(g4q_backend *cpu, g4q_backend *gpu)
{
    const int64_t rows = 40, cols = 352;
    const std::vector<uint16_t> w = rand_weights(rows, cols);
    for (int v = NVFP4_MO; v <= NVFP4_CT; v++)
        for (int nan = 0; nan < 2; nan++) {
            qweight q;
            if (!make_qweight((variant)v, w, rows, cols, 0, G4Q_DT_F16, &q)) continue;
            for (size_t b = 0; b < q.scale.size(); b++) {
                uint8_t &s = q.scale[b];
                if (b % 7 == 3) s |= 0x80;                          /* negative */
                if (b % 11 == 5) s = 0x00;                          /* zero, codes kept */
                if (b % 13 == 6) s = 0x80;                          /* negative zero */
                if (b % 17 == 2) s = (uint8_t)(1 + b % 7);          /* subnormal */
                if (b % 19 == 4) s = (uint8_t)(0x80 | (1 + b % 7)); /* negative subnormal */
            }
            if (nan) q.scale[q.scale.size() / 3] = 0x7F, q.nogemv = true;
            if (v == NVFP4_MO)
                g4q_nvfp4_dequantize(q.data.data(), q.scale.data(), q.scale2, rows, cols,
                                     q.deq.data());
            else
                g4q_nvfp4_ct_dequantize(q.data.data(), q.scale.data(), q.scale2, rows, cols,
                                        q.deq.data());
            check_slices(gpu, q);
            for (int n : {1, 2, 3, 4, 7})
                check_case(cpu, gpu, q, n);
        }
    qweight q;
    if (make_qweight(FP8_BLOCK, w, rows, cols, 0, G4Q_DT_F16, &q)) {
        q.data[(size_t)(rows / 2) * (size_t)cols + 77] = 0xFF; /* NaN code */
        q.nogemv = true;
        g4q_fp8_dequantize_blocks(q.data.data(), (const float *)q.scale.data(), rows, cols,
                                  q.deq.data());
        check_slices(gpu, q);
        for (int n : {1, 2, 3, 4, 7})
            check_case(cpu, gpu, q, n);
    }
}

static void test_invalid(g4q_backend *gpu)
{
    std::vector<uint8_t> bytes(4096, 0x11);
    const float one = 1.0f, zero = 0.0f;
    g4q_bweight *w = nullptr;
    g4q_weight_desc d = {};
    d.rows = 8, d.cols = 24, d.data = bytes.data(), d.scale = bytes.data(), d.scale2 = &one;
    d.name = "bad";
    d.format = G4Q_WF_NVFP4; /* 24 % 16 != 0 */
    CHECK_STATUS(gpu->weight_bind(gpu, &d, &w), G4Q_ERR_INVALID);
    d.cols = 32, d.scale2 = &zero;
    CHECK_STATUS(gpu->weight_bind(gpu, &d, &w), G4Q_ERR_INVALID);
    d.scale2 = &one, d.flags = G4Q_WD_INT4_GPTQ;
    CHECK_STATUS(gpu->weight_bind(gpu, &d, &w), G4Q_ERR_INVALID);
    d.format = G4Q_WF_INT4, d.flags = 0, d.group = 12, d.scale_dtype = G4Q_DT_F16;
    CHECK_STATUS(gpu->weight_bind(gpu, &d, &w), G4Q_ERR_INVALID);
    d.group = 16, d.scale_dtype = G4Q_DT_I32;
    CHECK_STATUS(gpu->weight_bind(gpu, &d, &w), G4Q_ERR_INVALID);
    d.format = G4Q_WF_FP8_BLOCK, d.scale = nullptr;
    CHECK_STATUS(gpu->weight_bind(gpu, &d, &w), G4Q_ERR_INVALID);
    d.format = (g4q_wformat)99;
    CHECK_STATUS(gpu->weight_bind(gpu, &d, &w), G4Q_ERR_UNSUPPORTED);
    CHECK(w == nullptr);
}

/* ---- --bench: GEMV time and bytes read per second, BF16 and each packed format ---- */

/* Seconds per call of f (one warm-up call; the backend's stream drained around the timing). */
template <typename F>
static double bench_time(g4q_backend *gpu, int reps, F f)
{
    cudaStream_t st = g4q_cuda_st(gpu)->stream;
    f();
    cudaStreamSynchronize(st);
    const double a = g4q_now_seconds();
    for (int r = 0; r < reps; r++)
        f();
    cudaStreamSynchronize(st);
    return (g4q_now_seconds() - a) / reps;
}

static void bench_shape(g4q_backend *gpu, int64_t rows, int64_t cols)
{
    const int BN = 1024; /* prefill tokens */
    const std::vector<uint16_t> w = rand_weights(rows, cols);
    g4q_buf *x = nullptr, *y = nullptr;
    vecf xv((size_t)cols * BN);
    for (auto &v : xv)
        v = (float)g4q_test_normal(&g_rng);
    gpu->buf_alloc(gpu, gpu->act_dtype, (size_t)cols * BN, &x);
    gpu->buf_alloc(gpu, gpu->act_dtype, (size_t)rows * BN, &y);
    gpu->upload(gpu, x, 0, xv.data(), xv.size());
    for (int v = -1; v < VARIANTS; v++) {
        qweight q;
        size_t bytes = (size_t)(rows * cols) * 2;
        if (v < 0) {
            q.what = "bf16";
            q.d.format = G4Q_WF_BF16, q.d.rows = rows, q.d.cols = cols, q.d.data = w.data();
            q.d.name = "bench";
        } else {
            if (!make_qweight((variant)v, w, rows, cols, 128, G4Q_DT_F16, &q)) continue;
            bytes = q.data.size() + q.scale.size();
        }
        g4q_bweight *bw = nullptr;
        if (gpu->weight_bind(gpu, &q.d, &bw) != G4Q_OK) {
            printf("bench %s: %s\n", q.what, g4q_ctx_error(&g_ctx));
            continue;
        }
        for (int n = 1; n <= 4; n++) {
            float one;
            const int reps = 50;
            gpu->matmul(gpu, y, x, bw, n);
            gpu->download(gpu, y, 0, &one, 1);
            const double a = g4q_now_seconds();
            for (int r = 0; r < reps; r++)
                gpu->matmul(gpu, y, x, bw, n);
            gpu->download(gpu, y, 0, &one, 1);
            const double t = (g4q_now_seconds() - a) / reps;
            printf("bench gemv %-26s %6lld x %-6lld n %d: %7.1f us = %5.0f GB/s of weight bytes\n",
                   q.what, (long long)rows, (long long)cols, n, t * 1e6, (double)bytes / t / 1e9);
        }
        /* prefill: the bf16 widening of the whole weight, then the matmul at BN tokens */
        __nv_bfloat16 *ws = nullptr;
        if (v >= 0 && cudaMalloc(&ws, (size_t)(rows * cols) * 2) == cudaSuccess) {
            const qlayout L = ql_make(bw->format, rows, cols, bw->group);
            const double t = bench_time(gpu, 20, [&] { g4q_cuda_qslice(gpu, bw, 0, rows, ws); });
            const double moved = (double)(L.code_bytes + L.scale_bytes) + (double)(rows * cols) * 2;
            printf("bench widen %-25s %6lld x %-6lld: %7.1f us = %5.0f GB/s (%.3f bytes read + "
                   "written per weight, %s kernel)\n",
                   q.what, (long long)rows, (long long)cols, t * 1e6, moved / t / 1e9,
                   moved / (double)(rows * cols), g4q_cuda_qslice_fast(bw) ? "fast" : "fallback");
            cudaFree(ws);
        }
        const double t = bench_time(gpu, 10, [&] { gpu->matmul(gpu, y, x, bw, BN); });
        printf("bench prefill %-23s %6lld x %-6lld n %d: %7.1f us = %5.0f TFLOP/s\n", q.what,
               (long long)rows, (long long)cols, BN, t * 1e6,
               2.0 * (double)(rows * cols) * BN / t / 1e12);
        gpu->weight_free(gpu, bw);
    }
    gpu->buf_free(gpu, x);
    gpu->buf_free(gpu, y);
}

/* ---- --bench-model DIR: a whole checkpoint (BF16 or quantized) through g4q_forward ---- */

static double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

/* G4Q_BENCH_SKIP: a decode step with classes of ops left out, for timing only (the logits are
 * wrong). ncu runs kernels one at a time, so what a class of ops costs inside the replayed step
 * graph, where programmatic dependent launch overlaps neighbours, is measured by leaving it out of
 * the single-token ops and timing the step again (scripts/bench/decode_shares.sh). Classes,
 * comma-separated: qkv (the q/k/v projection), norm_rope (the q/k/v norms and RoPE), attention, o,
 * norms (both residual norms), gate_up (with GeGLU), down, head. The backend's members are wrapped
 * (skip_*); weights are told apart by their tensor names when they are bound. */
enum {
    SK_QKV = 1,
    SK_NORM_ROPE = 2,
    SK_ATTN = 4,
    SK_O = 8,
    SK_NORMS = 16,
    SK_GATE_UP = 32,
    SK_DOWN = 64,
    SK_HEAD = 128
};
static g4q_backend g_inner; /* the wrapped backend's own members */
static unsigned g_skip;
static std::vector<std::pair<const g4q_bweight *, unsigned>> g_wclass;

/* The classes of list as SK_* bits; UINT_MAX for an unknown name. */
static unsigned skip_parse(const char *list)
{
    static const char *names[] = {"qkv",   "norm_rope", "attention", "o",
                                  "norms", "gate_up",   "down",      "head"};
    unsigned m = 0;
    for (const char *p = list; p && *p;) {
        const size_t len = strcspn(p, ",");
        unsigned i = 0;
        while (i < 8 && !(strlen(names[i]) == len && strncmp(p, names[i], len) == 0))
            i++;
        if (i == 8) return UINT_MAX;
        m |= 1u << i;
        p += len + (p[len] == ',');
    }
    return m;
}
static void skip_note(const g4q_weight_desc *d, g4q_bweight *w)
{
    const char *n = d->name ? d->name : "";
    const unsigned c = strstr(n, "o_proj")         ? SK_O
                       : strstr(n, "down_proj")    ? SK_DOWN
                       : strstr(n, "embed_tokens") ? SK_HEAD
                                                   : 0u;
    g_wclass.push_back({w, c});
}
static unsigned skip_class(const g4q_bweight *w)
{
    for (auto &e : g_wclass)
        if (e.first == w) return e.second;
    return 0;
}
static g4q_status skip_bind(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight **out)
{
    const g4q_status st = g_inner.weight_bind(be, d, out);
    if (st == G4Q_OK) skip_note(d, *out);
    return st;
}
static g4q_status skip_bind_deferred(g4q_backend *be, const g4q_weight_desc *d, g4q_bweight **out)
{
    const g4q_status st = g_inner.weight_bind_deferred(be, d, out);
    if (st == G4Q_OK) skip_note(d, *out);
    return st;
}
static g4q_status skip_matmul(g4q_backend *be, g4q_buf *y, const g4q_buf *x, const g4q_bweight *w,
                              int n)
{
    return n == 1 && (g_skip & skip_class(w)) ? G4Q_OK : g_inner.matmul(be, y, x, w, n);
}
static g4q_status skip_matmul3(g4q_backend *be, const g4q_buf *x, int n, g4q_buf *y0,
                               const g4q_bweight *w0, g4q_buf *y1, const g4q_bweight *w1,
                               g4q_buf *y2, const g4q_bweight *w2)
{
    return n == 1 && (g_skip & SK_QKV) ? G4Q_OK : g_inner.matmul3(be, x, n, y0, w0, y1, w1, y2, w2);
}
static g4q_status skip_geglu(g4q_backend *be, g4q_buf *y, g4q_buf *tmp, const g4q_buf *x,
                             const g4q_bweight *wg, const g4q_bweight *wu, int n)
{
    return n == 1 && (g_skip & SK_GATE_UP) ? G4Q_OK
                                           : g_inner.matmul_geglu(be, y, tmp, x, wg, wu, n);
}
static g4q_status skip_norm_rope(g4q_backend *be, g4q_buf *q, g4q_buf *k, g4q_buf *v, int v_from_k,
                                 const g4q_bweight *qw, const g4q_bweight *kw,
                                 const g4q_buf *inv_freq, int T, int nh, int nkv, int hd, int pos0,
                                 float eps)
{
    return T == 1 && (g_skip & SK_NORM_ROPE)
               ? G4Q_OK
               : g_inner.qkv_norm_rope(be, q, k, v, v_from_k, qw, kw, inv_freq, T, nh, nkv, hd,
                                       pos0, eps);
}
static g4q_status skip_norms(g4q_backend *be, g4q_buf *h, g4q_buf *a, const g4q_bweight *w_post,
                             float scale, g4q_buf *out, const g4q_bweight *w_next, int rows, int n,
                             float eps)
{
    return rows == 1 && (g_skip & SK_NORMS)
               ? G4Q_OK
               : g_inner.norm_add_norm(be, h, a, w_post, scale, out, w_next, rows, n, eps);
}
static g4q_status skip_attention(g4q_backend *be, g4q_buf *out, const g4q_buf *q,
                                 const g4q_buf *k_new, const g4q_buf *v_new, g4q_buf *kc,
                                 g4q_buf *vc, int cap, int n_past, int T, int nh, int nkv, int hd,
                                 int window, float scale)
{
    return T == 1 && (g_skip & SK_ATTN)
               ? G4Q_OK
               : g_inner.attention_store(be, out, q, k_new, v_new, kc, vc, cap, n_past, T, nh, nkv,
                                         hd, window, scale);
}
/* The wrapper of be for the classes in g_skip (be itself must still be freed). */
static g4q_backend *skip_wrap(g4q_backend *be)
{
    static g4q_backend wrap;
    g_inner = *be;
    wrap = *be;
    wrap.weight_bind = skip_bind;
    if (be->weight_bind_deferred) wrap.weight_bind_deferred = skip_bind_deferred;
    wrap.matmul = skip_matmul;
    if (be->matmul3) wrap.matmul3 = skip_matmul3;
    if (be->matmul_geglu) wrap.matmul_geglu = skip_geglu;
    if (be->qkv_norm_rope) wrap.qkv_norm_rope = skip_norm_rope;
    if (be->norm_add_norm) wrap.norm_add_norm = skip_norms;
    if (be->attention_store) wrap.attention_store = skip_attention;
    return &wrap;
}

static int bench_model(const char *dir, int prompt, int steps)
{
    g4q_config cfg;
    g4q_ckpt *ck = nullptr;
    g4q_weights w;
    g4q_qlinears *ql = (g4q_qlinears *)calloc(1, sizeof *ql);
    g4q_backend *be = nullptr;
    g4q_forward *f = nullptr;
    g4q_kvcache *kv = nullptr;
    const double t0 = g4q_now_seconds();
    g4q_status st = ql ? G4Q_OK : G4Q_ERR_NOMEM;
    g_skip = skip_parse(getenv("G4Q_BENCH_SKIP"));
    if (g_skip == UINT_MAX)
        st = g4q_fail(&g_ctx, G4Q_ERR_INVALID,
                      "G4Q_BENCH_SKIP=%s: unknown class (qkv norm_rope attention o norms gate_up "
                      "down head)",
                      getenv("G4Q_BENCH_SKIP"));
    if (st == G4Q_OK) st = g4q_config_load(&g_ctx, dir, &cfg);
    if (st == G4Q_OK) st = g4q_ckpt_open(&g_ctx, dir, &ck);
    if (st == G4Q_OK)
        st = g4q_qlinears_bind(&g_ctx, &cfg, g4q_ckpt_tensor(ck, 0), g4q_ckpt_count(ck), dir, &w,
                               ql);
    if (st == G4Q_OK) st = g4q_backend_cuda_create(&g_ctx, &be);
    g4q_backend *run = st == G4Q_OK && g_skip ? skip_wrap(be) : be; /* what the forward uses */
    if (st == G4Q_OK) st = g4q_forward_create_q(&g_ctx, run, &cfg, &w, ql, NULL, prompt, &f);
    if (st == G4Q_OK) st = g4q_kvcache_create(&g_ctx, run, &cfg, prompt + 2 * steps + 8, &kv);
    const double t_load = g4q_now_seconds() - t0;
    std::vector<int32_t> ids((size_t)prompt + steps + 8);
    const int V = st == G4Q_OK ? cfg.vocab_size : 1;
    for (auto &x : ids)
        x = (int32_t)(g4q_test_rand(&g_rng) % (uint64_t)(V > 16 ? V - 16 : 1)) + 3;
    vecf logits((size_t)V);
    std::vector<double> pre, dec;
    for (int r = 0; r < 3 && st == G4Q_OK; r++) { /* 1 warm-up + 2 timed prefills */
        g4q_kvcache_reset(kv);
        const double a = g4q_now_seconds();
        st = g4q_forward_run(f, kv, ids.data(), prompt, 1, logits.data());
        if (r) pre.push_back(g4q_now_seconds() - a);
    }
    for (int s = 0; s < steps + 8 && st == G4Q_OK; s++) { /* 8 warm-up decode steps */
        const double a = g4q_now_seconds();
        st = g4q_forward_run(f, kv, &ids[(size_t)prompt + s], 1, 1, logits.data());
        if (s >= 8) dec.push_back(g4q_now_seconds() - a);
    }
    /* as `gemma4q-run generate` decodes greedily: the pick on the device, no logits download
     * (steps more tokens of context; not with G4Q_BENCH_SKIP, whose head may be left out) */
    std::vector<double> dev;
    int32_t next = ids[(size_t)prompt + steps + 7];
    for (int s = 0; s < steps && st == G4Q_OK && !g_skip; s++) {
        int32_t nan_at = -1, pick = -1;
        const double a = g4q_now_seconds();
        st = g4q_forward_step_greedy(f, kv, next, nullptr, &pick, &nan_at);
        dev.push_back(g4q_now_seconds() - a);
        next = pick >= 0 ? pick : 3;
    }
    if (st != G4Q_OK) {
        fprintf(stderr, "bench-model: %s\n", g4q_ctx_error(&g_ctx));
    } else {
        char fmts[256] = "";
        for (int k = 0; k < G4Q_QL_COUNT; k++)
            if (ql->count[k])
                snprintf(fmts + strlen(fmts), sizeof fmts - strlen(fmts), "%s%zu %s",
                         fmts[0] ? ", " : "", ql->count[k],
                         g4q_qlinear_format_name((g4q_qlinear_format)k));
        const double tp = median(pre), td = median(dec);
        printf("bench-model %s: Linears %s; load+bind %.1f s\n", dir, fmts, t_load);
        printf("bench-model prefill %d tokens: median %.1f ms = %.0f tok/s\n", prompt, tp * 1e3,
               prompt / tp);
        printf("bench-model decode (context %d..%d): median %.2f ms/token = %.1f tok/s%s%s\n",
               prompt, prompt + steps + 8, td * 1e3, 1.0 / td, g_skip ? ", left out: " : "",
               g_skip ? getenv("G4Q_BENCH_SKIP") : "");
        const double tg = median(dev);
        if (!dev.empty())
            printf("bench-model greedy (pick on the device, context %d..%d): median %.2f ms/token "
                   "= %.1f tok/s\n",
                   prompt + steps + 8, prompt + 2 * steps + 8, tg * 1e3, 1.0 / tg);
        printf("bench-model peak GPU memory (backend) %.2f GB\n", (double)be->mem_peak(be) / 1e9);
    }
    g4q_kvcache_free(kv);
    g4q_forward_free(f);
    g4q_backend_free(be);
    g4q_ckpt_close(ck);
    free(ql);
    return st == G4Q_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    g4q_ctx_init(&g_ctx);
    g_rng = g4q_test_seed();
    if (argc >= 3 && strcmp(argv[1], "--bench-model") == 0)
        return bench_model(argv[2], argc >= 4 ? atoi(argv[3]) : 512, argc >= 5 ? atoi(argv[4]) : 64);
    g4q_backend *cpu = nullptr, *gpu = nullptr;
    if (!CHECK_STATUS(g4q_backend_cuda_create(&g_ctx, &gpu), G4Q_OK)) {
        printf("cuda backend: %s\n", g4q_ctx_error(&g_ctx));
        return g4q_test_finish();
    }
    if (argc >= 2 && strcmp(argv[1], "--bench") == 0) {
        bench_shape(gpu, 15360, 3840);
        bench_shape(gpu, 3840, 15360);
        bench_shape(gpu, 4096, 3840);
        g4q_backend_free(gpu);
        return 0;
    }
    CHECK_STATUS(g4q_backend_cpu_create(&g_ctx, &cpu), G4Q_OK);
    test_invalid(gpu);
    test_formats(cpu, gpu);
    test_edges(cpu, gpu);
    test_fused(gpu);
    printf("cuda backend peak device memory: %.1f MB\n", (double)gpu->mem_peak(gpu) / 1e6);
    g4q_backend_free(gpu);
    g4q_backend_free(cpu);
    return g4q_test_finish();
}
