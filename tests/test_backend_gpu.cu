// The CUDA backend (src/backend/cuda) against the CPU reference backend (src/backend/cpu), op by
// op on fresh random data and awkward sizes (attention: test_attention_gpu.cu; whole models:
// test_model_gpu.cu); deferred weight
// binding (an upload on another thread) against weight_bind, byte for byte; plus, with --bench
// MODEL_DIR [PROMPT [STEPS [noparts]]], the decode / prefill benchmark of
// scripts/bench/forward_gpu.sh. The op suite runs twice: against the BF16 mode and against the F32
// mode (G4Q_CUDA_F32) of the CUDA backend. Shared helpers: backend_pair.h.
//
// Inputs are rounded to bf16 first, so both backends see the same values; the CPU computes in fp32
// without rounding activations, the GPU in BF16 mode rounds where the bf16 reference does
// (docs/gemma4.md §4.9). Tolerances count those roundings: pair_be.u is the unit roundoff of the
// GPU's stores, BF16_U = 2^-8 (8 significant bits: one rounding moves a value by at most
// BF16_U·|value|) in BF16 mode and 0 in F32 mode. On top of that come fp32 terms that hold in both
// modes and are all that is left in F32 mode: with F32_EPS = FLT_EPSILON = 2^-23 = 2u (u the fp32
// unit roundoff), an fp32 sum of n terms in any order is within γ_n·Σ|terms| <= n·u·Σ|terms| of
// the exact sum (first order), so two backends summing in different orders differ by at most
// n·F32_EPS·Σ|terms|; an fp32 library function (expf, tanhf) is within 2 ulp on either side
// (CUDA's documented bound, and glibc's), and one ulp of v is at most F32_EPS·|v|.
#include "backend_pair.h"

/* ---- matmul: the GPU rounds each output once (u·|y|); both sum in fp32 in different orders,
 * each within γ_in·Σ|w·x| of the exact sum, counted twice over here (4·in·F32_EPS, as
 * test_forward) for cuBLAS's unknown blocking. */
static void test_matmul(pair_be p)
{
    /* The GEMV (n <= 4) takes 1, 2 or 4 warps per row by row count: 15360 and 8200 rows 1,
     * 5000 and 4100 rows 2, fewer 4 (cuda_gemm.cu). */
    const int sizes[][3] = {{1, 15360, 3840}, {1, 8200, 264}, {1, 5000, 264},  {3, 4100, 136},
                            {1, 3840, 1536},  {1, 7, 15},     {2, 129, 256},   {3, 33, 64},
                            {4, 17, 24},      {7, 129, 127},  {129, 257, 512}, {5, 1, 8}};
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
            return p.u * std::fabs(r[0][i]) + 4.0 * in * F32_EPS * mag + 1e-30;
        });
    }
}

/* ---- rmsnorm: one output rounding (u·|y|; 1.01 for the fp32 below it) plus fp32: the GPU sums
 * squares in fp32 over a depth of at most ceil(n/64) serial steps + 10 tree levels (64 threads at
 * least, 32-lane and up to 32-warp trees), so mean(x²) is within depth·u relative and its
 * inverse square root within depth·u/2 = depth·F32_EPS/4; the CPU sums in double. Both then take
 * about 6 fp32 roundings (/n, +eps, sqrt, 1/, ·inv, ·w): 6·F32_EPS for the two sides together. */
static double rms_depth_eps(int n)
{
    return ((n + 63) / 64 + 10) / 4.0 + 6.0;
}

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
                return (1.01 * p.u + rms_depth_eps(n) * F32_EPS) * std::fabs(r[0][i]) + 1e-30;
            });
        }
}

/* ---- rope: c and s rounded (u each), two products rounded, the sum rounded: the output of a
 * pair (a, b) moves by at most 4·u·(|a| + |b|). Unrotated dims must be bit-exact. In F32 mode
 * both backends evaluate the same fp32 expression on the same fp32 θ, so only cos/sin may differ:
 * CUDA's double cos/sin (<= 2 double ulp) may round to the neighbouring fp32 value in rare near
 * ties, one ulp of c or s: F32_EPS·(|a| + |b|). */
static void test_rope(pair_be p)
{
    struct {
        int hd, angles, T, heads, pos0;
        double theta;
    } cases[] = {{512, 64, 3, 2, 97, 1e6},
                 {256, 128, 7, 8, 0, 1e4},
                 {256, 128, 1, 16, 5000, 1e4},
                 {64, 32, 129, 1, 3, 1e4},
                 {10, 3, 5, 3, 1, 1e4}};
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
            if ((int)(i % c.hd) % half >= c.angles) moved += r[1][i] != x[i];
        char what[80];
        snprintf(what, sizeof what, "rope hd %d angles %d T %d pos0 %d", c.hd, c.angles, c.T,
                 c.pos0);
        CHECK_MSG(!moved, "%s: %d unrotated values changed", what, moved);
        compare(what, r[0], r[1], [&](size_t i) {
            size_t base = i / c.hd * c.hd;
            int j = (int)(i % c.hd) % half;
            return (4 * p.u + F32_EPS) * (std::fabs(x[base + j]) + std::fabs(x[base + j + half])) +
                   1e-30;
        });
    }
}

/* GeGLU's fp32 difference between the backends for gate x and up v (see the file comment):
 * z = k0·(x + 0.044715·x³) takes 5 roundings on either side (no cancellation: same signs), so
 * |Δz| <= 5·F32_EPS·|z|; tanh moves by at most |Δz| (slope <= 1) plus LIBM_ULPS ulp of t;
 * 1 + t, 0.5·x·(1+t) and ·v add a rounding each on either side. */
static double geglu_f32_tol(double x, double v)
{
    const double z = 0.7978845608028654 * (x + 0.044715 * x * x * x), t = std::tanh(z);
    const double dt = 5 * F32_EPS * std::fabs(z) + LIBM_ULPS * F32_EPS * std::fabs(t);
    const double g = 0.5 * x * (1 + t);
    const double dg = 0.5 * std::fabs(x) * (dt + F32_EPS * (1 + t)) + F32_EPS * std::fabs(g);
    return (dg + F32_EPS * std::fabs(g)) * std::fabs(v);
}

/* ---- element-wise ops, rounding counts from the file comments of cuda_elementwise.cu. In F32
 * mode add_scaled and embed evaluate the same fp32 expression as the CPU (exact), GeGLU and
 * softcap differ only through tanhf (geglu_f32_tol; softcap: LIBM_ULPS ulp of tanh, times cap
 * rounded once more). */
static void test_elementwise(pair_be p)
{
    const size_t counts[] = {1, 7, 129, 129 * 1024 + 7};
    g4q_backend *bes[2] = {p.cpu, p.gpu};
    for (size_t n : counts) {
        vecf g = randv(n, 0, 2.0), u = randv(n, 0, 2.0), big = randv(n, 0, 20.0);
        vecf rg[2], ra[2], ra1[2], rs[2];
        float am[2];
        vecf acc_r[2]; /* amax_into: {whole, prefix over 5.0, NaN then more} */
        vecf with_nan = big;
        with_nan[n / 2] = NAN;
        for (int b = 0; b < 2; b++) {
            g4q_backend *be = bes[b];
            g4q_buf *bg = mk(be, g), *bu = mk(be, u), *bh = mk(be, u), *bh1 = mk(be, u),
                    *bs = mk(be, big);
            CHECK_STATUS(be->geglu(be, bg, bg, bu, n), G4Q_OK); /* y aliases gate */
            CHECK_STATUS(be->add_scaled(be, bh, bs, n, 0.37f), G4Q_OK);
            CHECK_STATUS(be->add_scaled(be, bh1, bs, n, 1.0f), G4Q_OK);
            CHECK_STATUS(be->amax(be, bs, n, &am[b]), G4Q_OK);
            const float acc0[3] = {0.0f, 5.0f, 0.0f};
            g4q_buf *acc = nullptr, *bn = mk(be, with_nan);
            CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, 3, &acc), G4Q_OK);
            CHECK_STATUS(be->upload(be, acc, 0, acc0, 3), G4Q_OK);
            CHECK_STATUS(be->amax_into(be, bs, n, acc, 0), G4Q_OK);
            CHECK_STATUS(be->amax_into(be, bs, n, acc, 0), G4Q_OK);
            CHECK_STATUS(be->amax_into(be, bs, n / 2 + 1, acc, 1), G4Q_OK);
            CHECK_STATUS(be->amax_into(be, bn, n, acc, 2), G4Q_OK);
            CHECK_STATUS(be->amax_into(be, bs, n, acc, 2), G4Q_OK);
            CHECK_STATUS(be->amax_into(be, bs, n, acc, 3), G4Q_ERR_INTERNAL); /* out of range */
            acc_r[b] = get(be, acc, 3);
            be->buf_free(be, acc);
            be->buf_free(be, bn);
            CHECK_STATUS(be->softcap(be, bs, n, 30.0f), G4Q_OK);
            rg[b] = get(be, bg, n), ra[b] = get(be, bh, n), ra1[b] = get(be, bh1, n);
            rs[b] = get(be, bs, n);
            g4q_buf *all[] = {bg, bu, bh, bh1, bs};
            for (auto *x : all)
                be->buf_free(be, x);
        }
        char w[64];
        snprintf(w, sizeof w, "geglu %zu", n); /* gelu rounded, product rounded */
        const double bf = p.u > 0;             /* the bf16 mode's allowance for tanhf differences */
        compare(w, rg[0], rg[1], [&](size_t i) {
            return 2.02 * p.u * std::fabs(rg[0][i]) + bf * 1e-6 * std::fabs(u[i]) +
                   geglu_f32_tol(g[i], u[i]) + 1e-30;
        });
        snprintf(w, sizeof w, "add_scaled %zu", n); /* sum rounded, product rounded */
        compare(w, ra[0], ra[1],
                [&](size_t i) { return 2.02 * p.u * std::fabs(ra[0][i]) + 1e-30; });
        compare(w, ra1[0], ra1[1],
                [&](size_t i) { return 1.01 * p.u * std::fabs(ra1[0][i]) + 1e-30; });
        /* x/cap rounded (moves tanh by <= u·|x|/cap, times cap), tanh rounded, ×cap rounded */
        snprintf(w, sizeof w, "softcap %zu", n);
        compare(w, rs[0], rs[1], [&](size_t i) {
            return p.u * std::fabs(big[i]) + 2.02 * p.u * std::fabs(rs[0][i]) +
                   (LIBM_ULPS + 1) * F32_EPS * std::fabs(rs[0][i]) + 1e-30;
        });
        CHECK_MSG(am[0] == am[1], "amax %zu: cpu %g gpu %g", n, am[0], am[1]);
        /* argmax: a tie at the maximum (lowest index wins), -inf, NaN and a mask */
        {
            vecf v = big;
            const size_t hi = n / 3, lo = n / 7;
            v[hi] = 1000.0f, v[lo] = 1000.0f;
            vecf maskv(n, 0.0f);
            maskv[lo] = 1.0f;
            int32_t id[2][3], nan_at[2][3];
            for (int b = 0; b < 2; b++) {
                g4q_backend *be = bes[b];
                g4q_buf *bv = mk(be, v), *bm = nullptr, *binf = mk(be, vecf(n, -INFINITY));
                CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, n, &bm), G4Q_OK);
                CHECK_STATUS(be->upload(be, bm, 0, maskv.data(), n), G4Q_OK);
                CHECK_STATUS(be->argmax(be, bv, n, nullptr, &id[b][0], &nan_at[b][0]), G4Q_OK);
                CHECK_STATUS(be->argmax(be, bv, n, bm, &id[b][1], &nan_at[b][1]), G4Q_OK);
                CHECK_STATUS(be->argmax(be, binf, n, nullptr, &id[b][2], &nan_at[b][2]), G4Q_OK);
                be->buf_free(be, bv), be->buf_free(be, bm), be->buf_free(be, binf);
            }
            std::vector<uint8_t> mb(n, 0);
            mb[lo] = 1;
            const int32_t want[3] = {g4q_sample_argmax(v.data(), (int)n, nullptr),
                                     g4q_sample_argmax(v.data(), (int)n, mb.data()), -1};
            for (int b = 0; b < 2; b++)
                for (int k = 0; k < 3; k++)
                    CHECK_MSG(id[b][k] == want[k] && nan_at[b][k] == -1,
                              "argmax %zu case %d (%s): %d (NaN at %d), want %d", n, k,
                              b ? "gpu" : "cpu", (int)id[b][k], (int)nan_at[b][k], (int)want[k]);
            for (int b = 0; b < 2; b++) {
                g4q_backend *be = bes[b];
                g4q_buf *bn = mk(be, with_nan);
                int32_t i1 = -2, n1 = -2;
                CHECK_STATUS(be->argmax(be, bn, n, nullptr, &i1, &n1), G4Q_OK);
                CHECK_MSG(n1 == (int32_t)(n / 2), "argmax %zu (%s): NaN at %d, want %zu", n,
                          b ? "gpu" : "cpu", (int)n1, n / 2);
                be->buf_free(be, bn);
            }
        }
        float pre = 5.0f;
        for (size_t i = 0; i < n / 2 + 1; i++)
            pre = std::fmax(pre, std::fabs(big[i]));
        for (int b = 0; b < 2; b++)
            CHECK_MSG(acc_r[b][0] == am[0] && acc_r[b][1] == pre && std::isnan(acc_r[b][2]),
                      "amax_into %zu (%s): %g %g %g, want %g %g NaN", n, b ? "gpu" : "cpu",
                      acc_r[b][0], acc_r[b][1], acc_r[b][2], am[0], pre);
    }
    /* embed: one rounding of E[id]·scale */
    const int V = 1000, d = 3840, T = 7;
    vecf tab = randv((size_t)V * d, 0, 0.05);
    auto tb = to_bf16(tab);
    int32_t ids[T];
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)(g4q_test_rand(&g_rng) % V);
    vecf re[2];
    for (int b = 0; b < 2; b++) {
        g4q_backend *be = bes[b];
        g4q_bweight *bw = bindw(be, tb, V, d);
        g4q_buf *by = mk(be, {}, (size_t)T * d);
        CHECK_STATUS(be->embed(be, by, bw, ids, T, 62.0f), G4Q_OK);
        re[b] = get(be, by, (size_t)T * d);
        be->weight_free(be, bw), be->buf_free(be, by);
    }
    compare("embed", re[0], re[1],
            [&](size_t i) { return 1.01 * p.u * std::fabs(re[0][i]) + 1e-30; });
    /* A packed weight without its scales is refused by name: INVALID in bf16 mode, which runs
     * packed formats (test_qgemm_gpu), UNSUPPORTED in fp32 mode, which does not. */
    g4q_weight_desc dsc = {};
    dsc.format = G4Q_WF_NVFP4, dsc.rows = 16, dsc.cols = 16, dsc.data = tb.data(),
    dsc.name = "w.nvfp4";
    g4q_bweight *bw = nullptr;
    g4q_status bst = p.gpu->weight_bind(p.gpu, &dsc, &bw);
    CHECK_MSG(bst == G4Q_ERR_INVALID || bst == G4Q_ERR_UNSUPPORTED,
              "packed bind without scales: %s", g4q_status_name(bst));
    CHECK(strstr(g4q_ctx_error(&g_ctx), "w.nvfp4") != nullptr);
}

/* ---- col_amax_into: the per-channel amax of [rows, cols] activations, accumulated onto a
 * pre-filled acc, with a NaN in one column; bf16-exact values, so both backends must agree with
 * the host's max exactly. */
static void test_col_amax(pair_be p)
{
    const int shapes[][2] = {{1, 1}, {37, 5}, {200, 3840}, {1024, 17}};
    g4q_backend *bes[2] = {p.cpu, p.gpu};
    for (const auto &sh : shapes) {
        const int rows = sh[0], cols = sh[1];
        vecf x = randv((size_t)rows * cols, 0, 3.0), acc0((size_t)cols + 1, 0.0f);
        for (int c = 0; c < cols; c += 3)
            acc0[c] = 2.5f; /* a previous sample's amax */
        const int nan_col = cols / 2;
        x[(size_t)(rows - 1) * cols + nan_col] = NAN;
        vecf want(acc0);
        for (int c = 0; c < cols; c++) {
            for (int r = 0; r < rows; r++)
                want[c] = std::fmax(want[c], std::fabs(x[(size_t)r * cols + c]));
            if (c == nan_col) want[c] = NAN;
        }
        for (int b = 0; b < 2; b++) {
            g4q_backend *be = bes[b];
            g4q_buf *bx = mk(be, x), *acc = nullptr;
            CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, acc0.size(), &acc), G4Q_OK);
            CHECK_STATUS(be->upload(be, acc, 0, acc0.data(), acc0.size()), G4Q_OK);
            CHECK_STATUS(be->col_amax_into(be, bx, rows, cols, acc), G4Q_OK);
            CHECK_STATUS(be->col_amax_into(be, bx, rows, cols + 2, acc), G4Q_ERR_INTERNAL);
            const vecf got = get(be, acc, acc0.size());
            int bad = 0;
            for (int c = 0; c <= cols; c++) /* acc[cols] is past the columns: untouched */
                bad += !(got[c] == want[c] || (std::isnan(got[c]) && std::isnan(want[c])));
            CHECK_MSG(bad == 0, "col_amax_into [%d, %d] (%s): %d columns differ", rows, cols,
                      b ? "gpu" : "cpu", bad);
            be->buf_free(be, bx), be->buf_free(be, acc);
        }
    }
}

/* ---- fused decode ops (backend.h "decode steps"). matmul3 and matmul_geglu run the same GEMV
 * sums as matmul, so they must equal the GPU's own plain ops bit for bit. The norm fusions sum
 * squares in another fp32 order (inv may move by an fp32 ulp, a normed value by one bf16 ulp in
 * rare ties), so they are compared with the plain GPU sequence within 2 bf16 ulps of the values
 * involved; the plain ops themselves are checked against the CPU above. */
static void test_fused_gemv(g4q_backend *be)
{
    const int ns[] = {1, 2, 4, 7};
    for (int n : ns) {
        const int in = 136, r[3] = {40, 17, 9};
        vecf x = randv((size_t)n * in, 0, 1.0);
        g4q_buf *bx = mk(be, x), *y[3], *z[3];
        g4q_bweight *w[3];
        for (int i = 0; i < 3; i++) {
            w[i] = bindw(be, to_bf16(randv((size_t)r[i] * in, 0, 0.1)), r[i], in);
            y[i] = mk(be, {}, (size_t)n * r[i]), z[i] = mk(be, {}, (size_t)n * r[i]);
        }
        for (int with2 = 0; with2 < 2; with2++) {
            CHECK_STATUS(be->matmul3(be, bx, n, y[0], w[0], y[1], w[1], with2 ? y[2] : nullptr,
                                     with2 ? w[2] : nullptr),
                         G4Q_OK);
            for (int i = 0; i < 2 + with2; i++) {
                CHECK_STATUS(be->matmul(be, z[i], bx, w[i], n), G4Q_OK);
                CHECK_MSG(get(be, y[i], (size_t)n * r[i]) == get(be, z[i], (size_t)n * r[i]),
                          "matmul3 n %d weight %d differs from matmul", n, i);
            }
        }
        /* gate/up: same shape; tmp and the reference's up output are [n, r0] */
        g4q_bweight *wu = bindw(be, to_bf16(randv((size_t)r[0] * in, 0, 0.1)), r[0], in);
        g4q_buf *tmp = mk(be, {}, (size_t)n * r[0]), *zu = mk(be, {}, (size_t)n * r[0]);
        CHECK_STATUS(be->matmul_geglu(be, y[0], tmp, bx, w[0], wu, n), G4Q_OK);
        CHECK_STATUS(be->matmul(be, z[0], bx, w[0], n), G4Q_OK);
        CHECK_STATUS(be->matmul(be, zu, bx, wu, n), G4Q_OK);
        CHECK_STATUS(be->geglu(be, z[0], z[0], zu, (size_t)n * r[0]), G4Q_OK);
        CHECK_MSG(get(be, y[0], (size_t)n * r[0]) == get(be, z[0], (size_t)n * r[0]),
                  "matmul_geglu n %d differs from matmul, matmul, geglu", n);
        be->weight_free(be, wu), be->buf_free(be, bx), be->buf_free(be, tmp), be->buf_free(be, zu);
        for (int i = 0; i < 3; i++)
            be->weight_free(be, w[i]), be->buf_free(be, y[i]), be->buf_free(be, z[i]);
    }
}

static void compare_ulps(const char *what, const vecf &ref, const vecf &got, double ulps)
{
    compare(what, ref, got, [&](size_t i) { return ulps * BF16_U * std::fabs(ref[i]) + 1e-30; });
}

static void test_fused_norms(g4q_backend *be)
{
    const float eps = 1e-6f;
    /* qkv_norm_rope: T, nh, nkv, hd, angles, pos0, step */
    const int cases[][7] = {{1, 16, 8, 256, 128, 1500, 1},
                            {1, 16, 1, 512, 64, 70000, 1},
                            {5, 4, 2, 64, 32, 3, 0},
                            {37, 16, 8, 256, 128, 0, 0}, /* prefill-like */
                            {7, 5, 2, 128, 64, 11, 0},   /* heads not a multiple of 4 */
                            {3, 3, 3, 10, 3, 0, 0},      /* the block version */
                            /* T >= 16: the angles' table and the 16-byte kernel, 1 to 32 lanes a
                             * head, heads that do not fill the last block */
                            {20, 16, 1, 512, 64, 5, 0},
                            {18, 7, 2, 128, 64, 0, 0},
                            {17, 5, 2, 64, 32, 9, 0},
                            {16, 4, 1, 32, 16, 3, 0},
                            {16, 3, 3, 16, 8, 2, 0}};
    for (auto &c : cases)
        for (int from_k = 0; from_k < 2; from_k++) {
            const int T = c[0], nh = c[1], nkv = c[2], hd = c[3];
            g4q_layer_config lc = {};
            lc.head_dim = hd, lc.rope_angles = c[4], lc.rope.theta = 1e4;
            vecf tab((size_t)hd / 2);
            g4q_forward_rope_table(&lc, tab.data());
            vecf q = randv((size_t)T * nh * hd, 0, 2.0), k = randv((size_t)T * nkv * hd, 0, 2.0),
                 v = randv((size_t)T * nkv * hd, 0, 2.0);
            auto qw = to_bf16(randv((size_t)hd, 1.0, 0.3));
            auto kw = to_bf16(randv((size_t)hd, 1.0, 0.3));
            vecf r[2][3];
            for (int fused = 0; fused < 2; fused++) {
                g4q_buf *bq = mk(be, q), *bk = mk(be, k), *bv = mk(be, v), *bt = nullptr;
                g4q_bweight *wq = bindw(be, qw, 1, hd), *wk = bindw(be, kw, 1, hd);
                CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, tab.size(), &bt), G4Q_OK);
                CHECK_STATUS(be->upload(be, bt, 0, tab.data(), tab.size()), G4Q_OK);
                int pos = c[5];
                if (c[6]) {
                    CHECK_STATUS(be->step_pos(be, c[5]), G4Q_OK);
                    pos = G4Q_STEP_POS;
                }
                if (fused) {
                    CHECK_STATUS(be->qkv_norm_rope(be, bq, bk, bv, from_k, wq, wk, bt, T, nh, nkv,
                                                   hd, pos, eps),
                                 G4Q_OK);
                } else {
                    CHECK_STATUS(be->rmsnorm(be, bv, from_k ? bk : bv, nullptr, T * nkv, hd, eps),
                                 G4Q_OK);
                    CHECK_STATUS(be->rmsnorm(be, bq, bq, wq, T * nh, hd, eps), G4Q_OK);
                    CHECK_STATUS(be->rmsnorm(be, bk, bk, wk, T * nkv, hd, eps), G4Q_OK);
                    CHECK_STATUS(be->rope(be, bq, bt, T, nh, hd, pos), G4Q_OK);
                    CHECK_STATUS(be->rope(be, bk, bt, T, nkv, hd, pos), G4Q_OK);
                }
                r[fused][0] = get(be, bq, q.size()), r[fused][1] = get(be, bk, k.size());
                r[fused][2] = get(be, bv, v.size());
                be->weight_free(be, wq), be->weight_free(be, wk);
                g4q_buf *all[] = {bq, bk, bv, bt};
                for (auto *x : all)
                    be->buf_free(be, x);
            }
            char what[96];
            snprintf(what, sizeof what, "qkv_norm_rope T %d nh %d nkv %d hd %d v_from_k %d", T, nh,
                     nkv, hd, from_k);
            /* a rotated value mixes two normed values: bounded by both magnitudes */
            for (int b = 0; b < 2; b++) {
                const vecf &ref = r[0][b];
                compare(what, ref, r[1][b], [&](size_t i) {
                    size_t base = i / hd * hd, j = i % hd % (hd / 2);
                    return 4 * BF16_U *
                               (std::fabs(ref[base + j]) + std::fabs(ref[base + j + hd / 2])) +
                           1e-30;
                });
            }
            compare_ulps(what, r[0][2], r[1][2], 2.02);
        }
    /* norm_add_norm on rows x n: scale 1, a layer scalar, and without the last norm */
    const int shapes[][2] = {{1, 3840}, {5, 256}, {3, 100}};
    for (auto &sh : shapes)
        for (int variant = 0; variant < 3; variant++) {
            const int rows = sh[0], n = sh[1];
            const float scale = variant == 1 ? 0.37f : 1.0f;
            const bool with_out = variant != 2;
            vecf h = randv((size_t)rows * n, 0, 3.0), a = randv((size_t)rows * n, 0, 3.0);
            auto wp = to_bf16(randv((size_t)n, 1.0, 0.5));
            auto wn = to_bf16(randv((size_t)n, 1.0, 0.5));
            vecf rh[2], ro[2];
            for (int fused = 0; fused < 2; fused++) {
                g4q_buf *bh = mk(be, h), *ba = mk(be, a);
                g4q_bweight *w1 = bindw(be, wp, 1, n), *w2 = bindw(be, wn, 1, n);
                if (fused) {
                    CHECK_STATUS(be->norm_add_norm(be, bh, ba, w1, scale, with_out ? ba : nullptr,
                                                   w2, rows, n, eps),
                                 G4Q_OK);
                } else {
                    CHECK_STATUS(be->rmsnorm(be, ba, ba, w1, rows, n, eps), G4Q_OK);
                    CHECK_STATUS(be->add_scaled(be, bh, ba, h.size(), scale), G4Q_OK);
                    if (with_out) CHECK_STATUS(be->rmsnorm(be, ba, bh, w2, rows, n, eps), G4Q_OK);
                }
                rh[fused] = get(be, bh, h.size()), ro[fused] = get(be, ba, a.size());
                be->weight_free(be, w1), be->weight_free(be, w2);
                be->buf_free(be, bh), be->buf_free(be, ba);
            }
            char what[80];
            snprintf(what, sizeof what, "norm_add_norm %d x %d variant %d (h)", rows, n, variant);
            compare(what, rh[0], rh[1], [&](size_t i) {
                return 2.02 * BF16_U * (std::fabs(rh[0][i]) + std::fabs(h[i])) + 1e-30;
            });
            if (with_out) {
                snprintf(what, sizeof what, "norm_add_norm %d x %d variant %d (out)", rows, n,
                         variant);
                compare_ulps(what, ro[0], ro[1], 4.04);
            }
        }
}

/* ---- deferred binding (weight_bind_deferred, then weight_upload on another thread while the
 * compute stream runs matmuls of another weight) gives the bytes weight_bind gives. embed with
 * scale 1 reads a weight's rows back unrounded (bf16 -> bf16 on CUDA, bf16 -> fp32 on the CPU),
 * so every row must equal the host values bit for bit on both backends; a matmul with the
 * deferred weight equals the plain one's bit for bit (same kernels, same bytes), and so do the
 * matmuls that ran during the upload. Sizes: tiny, odd, and 36.9 MB (three rounds through CUDA's
 * two 16 MiB pinned buffers); the host bytes start at an odd address, as safetensors data may. */
struct upload_arg {
    g4q_backend *be;
    g4q_bweight *w;
    g4q_ctx ctx;
    g4q_status st;
};

static void *upload_thread(void *p)
{
    upload_arg *a = (upload_arg *)p;
    a->st = a->be->weight_upload(a->be, a->w, &a->ctx);
    return nullptr;
}

static vecf embed_all(g4q_backend *be, const g4q_bweight *w, int64_t rows, int64_t cols)
{
    std::vector<int32_t> ids((size_t)rows);
    for (int64_t r = 0; r < rows; r++)
        ids[(size_t)r] = (int32_t)r;
    g4q_buf *y = mk(be, {}, (size_t)(rows * cols));
    CHECK_STATUS(be->embed(be, y, w, ids.data(), (int)rows, 1.0f), G4Q_OK);
    vecf out = get(be, y, (size_t)(rows * cols));
    be->buf_free(be, y);
    return out;
}

static size_t count_diff(const vecf &a, const vecf &b)
{
    size_t n = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); i++)
        n += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return n + (a.size() != b.size());
}

static void test_deferred(pair_be p)
{
    const int64_t sizes[][2] = {{1, 7}, {3, 129}, {17, 1000}, {4100, 4500}};
    const int N = 33; /* matmul rows: the cuBLAS path */
    for (auto &sz : sizes) {
        const int64_t rows = sz[0], cols = sz[1];
        const size_t n = (size_t)(rows * cols);
        vecf v = randv(n, 0, 1.0), x = randv((size_t)N * (size_t)cols, 0, 1.0);
        std::vector<unsigned char> host(2 * n + 1); /* the bf16 bytes at host.data() + 1 */
        for (size_t i = 0; i < n; i++) {
            const uint16_t b = g4q_f32_to_bf16(v[i]);
            memcpy(&host[1 + 2 * i], &b, 2);
        }
        g4q_weight_desc d = {};
        d.format = G4Q_WF_BF16, d.rows = rows, d.cols = cols, d.data = host.data() + 1;
        d.name = "deferred";
        vecf rows_of[2];
        g4q_backend *bes[2] = {p.cpu, p.gpu};
        for (int b = 0; b < 2; b++) {
            g4q_backend *be = bes[b];
            g4q_bweight *wd = nullptr, *wp = nullptr;
            if (!CHECK_STATUS(be->weight_bind_deferred(be, &d, &wd), G4Q_OK) ||
                !CHECK_STATUS(be->weight_bind(be, &d, &wp), G4Q_OK)) {
                be->weight_free(be, wd), be->weight_free(be, wp);
                continue;
            }
            g4q_buf *bx = mk(be, x), *y0 = mk(be, {}, (size_t)N * rows),
                    *y1 = mk(be, {}, (size_t)N * rows);
            CHECK_STATUS(be->matmul(be, y0, bx, wp, N), G4Q_OK);
            vecf ref = get(be, y0, (size_t)N * rows);
            upload_arg a = {be, wd, {}, G4Q_ERR_INTERNAL};
            g4q_ctx_init(&a.ctx);
            pthread_t th;
            const bool threaded = CHECK(pthread_create(&th, nullptr, upload_thread, &a) == 0);
            for (int r = 0; r < 20; r++) /* queued on the compute stream during the upload */
                CHECK_STATUS(be->matmul(be, y0, bx, wp, N), G4Q_OK);
            if (threaded) pthread_join(th, nullptr);
            CHECK_MSG(a.st == G4Q_OK, "%s: weight_upload on a thread: %s", be->name,
                      g4q_ctx_error(&a.ctx));
            CHECK_STATUS(be->weight_upload(be, wd, &g_ctx), G4Q_OK); /* uploaded: a no-op */
            CHECK_STATUS(be->matmul(be, y1, bx, wd, N), G4Q_OK);
            const size_t dm = count_diff(ref, get(be, y1, (size_t)N * rows)),
                         dc = count_diff(ref, get(be, y0, (size_t)N * rows));
            rows_of[b] = embed_all(be, wd, rows, cols);
            const size_t de = count_diff(rows_of[b], embed_all(be, wp, rows, cols));
            size_t dh = 0;
            for (size_t i = 0; i < n; i++)
                dh += memcmp(&rows_of[b][i], &v[i], sizeof(float)) != 0;
            CHECK_MSG(!dm && !dc && !de && !dh,
                      "%s deferred [%lld, %lld]: matmul %zu, concurrent matmuls %zu, rows vs plain "
                      "bind %zu, vs host %zu values differ",
                      be->name, (long long)rows, (long long)cols, dm, dc, de, dh);
            be->weight_free(be, wd), be->weight_free(be, wp);
            be->buf_free(be, bx), be->buf_free(be, y0), be->buf_free(be, y1);
            /* uploaded on the calling thread, and freed without an upload */
            CHECK_STATUS(be->weight_bind_deferred(be, &d, &wd), G4Q_OK);
            CHECK_STATUS(be->weight_upload(be, wd, &g_ctx), G4Q_OK);
            CHECK(count_diff(rows_of[b], embed_all(be, wd, rows, cols)) == 0);
            be->weight_free(be, wd);
            CHECK_STATUS(be->weight_bind_deferred(be, &d, &wd), G4Q_OK);
            be->weight_free(be, wd);
        }
        CHECK_MSG(count_diff(rows_of[0], rows_of[1]) == 0, "deferred [%lld, %lld]: cpu vs cuda",
                  (long long)rows, (long long)cols);
    }
    /* only plain BF16 weights */
    std::vector<uint16_t> w16(64 * 32, 0x3f80);
    g4q_weight_desc d = {};
    d.format = G4Q_WF_BF16, d.rows = 64, d.cols = 32, d.data = w16.data(), d.name = "act";
    d.act = G4Q_ACTQ_FP8_TENSOR, d.act_scale = 1.0f;
    g4q_bweight *w = nullptr;
    CHECK_STATUS(p.gpu->weight_bind_deferred(p.gpu, &d, &w), G4Q_ERR_UNSUPPORTED);
    d.act = G4Q_ACTQ_NONE, d.format = G4Q_WF_FP8_BLOCK, d.scale = w16.data();
    CHECK_STATUS(p.gpu->weight_bind_deferred(p.gpu, &d, &w), G4Q_ERR_UNSUPPORTED);
    CHECK(w == nullptr);
    printf("deferred binding: %zu shapes, thread uploads beside matmuls: same bytes as weight_bind "
           "on cpu and cuda\n",
           sizeof sizes / sizeof sizes[0]);
}

/* ---------------------------------------------------------------- --bench MODEL_DIR */

static double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

/* Decode cost parts: the GEMV alone on the 12B's largest shapes (GB/s of weight read), and the
 * cost of one small launch (add_scaled on d = 3840), each averaged over many back-to-back calls. */
static void bench_parts(g4q_backend *be)
{
    const int64_t shapes[][2] = {{15360, 3840}, {3840, 15360}, {4096, 3840}, {262144, 3840}};
    for (auto &sh : shapes) {
        std::vector<uint16_t> w((size_t)(sh[0] * sh[1]));
        for (size_t i = 0; i < w.size(); i++)
            w[i] = g4q_f32_to_bf16((float)(g4q_test_normal(&g_rng) * 0.02));
        g4q_bweight *bw = bindw(be, w, sh[0], sh[1]);
        g4q_buf *x = mk(be, randv((size_t)sh[1], 0, 1)), *y = mk(be, {}, (size_t)sh[0]);
        float one;
        const int reps = 50;
        be->matmul(be, y, x, bw, 1);
        be->download(be, y, 0, &one, 1);
        double a = g4q_now_seconds();
        for (int r = 0; r < reps; r++)
            be->matmul(be, y, x, bw, 1);
        be->download(be, y, 0, &one, 1);
        double t = (g4q_now_seconds() - a) / reps;
        printf("bench gemv %lld x %lld: %.1f us = %.0f GB/s\n", (long long)sh[0], (long long)sh[1],
               t * 1e6, (double)w.size() * 2 / t / 1e9);
        be->weight_free(be, bw), be->buf_free(be, x), be->buf_free(be, y);
    }
    if (be->matmul_geglu) { /* gate and up of the 12B in one launch */
        std::vector<uint16_t> w((size_t)15360 * 3840);
        for (size_t i = 0; i < w.size(); i++)
            w[i] = g4q_f32_to_bf16((float)(g4q_test_normal(&g_rng) * 0.02));
        g4q_bweight *wg = bindw(be, w, 15360, 3840), *wu = bindw(be, w, 15360, 3840);
        g4q_buf *x = mk(be, randv(3840, 0, 1)), *y = mk(be, {}, 15360), *t = mk(be, {}, 15360);
        float one;
        be->matmul_geglu(be, y, t, x, wg, wu, 1);
        be->download(be, y, 0, &one, 1);
        double a = g4q_now_seconds();
        for (int r = 0; r < 50; r++)
            be->matmul_geglu(be, y, t, x, wg, wu, 1);
        be->download(be, y, 0, &one, 1);
        double tt = (g4q_now_seconds() - a) / 50;
        printf("bench gemv+geglu 2 x 15360 x 3840: %.1f us = %.0f GB/s\n", tt * 1e6,
               (double)w.size() * 4 / tt / 1e9);
        be->weight_free(be, wg), be->weight_free(be, wu);
        be->buf_free(be, x), be->buf_free(be, y), be->buf_free(be, t);
    }
    g4q_buf *h = mk(be, randv(3840, 0, 1)), *a2 = mk(be, randv(3840, 0, 1));
    float one;
    double a = g4q_now_seconds();
    for (int r = 0; r < 2000; r++)
        be->add_scaled(be, h, a2, 3840, 1.0f);
    be->download(be, h, 0, &one, 1);
    printf("bench small launch (add_scaled 3840): %.2f us each\n",
           (g4q_now_seconds() - a) / 2000 * 1e6);
    be->buf_free(be, h), be->buf_free(be, a2);
}

static int bench(const char *dir, int prompt, int steps, bool parts)
{
    model m;
    double t0 = g4q_now_seconds();
    g4q_backend *be = nullptr;
    g4q_forward *f = nullptr;
    g4q_kvcache *kv = nullptr;
    g4q_status st = model_load(dir, &m);
    if (st == G4Q_OK) st = g4q_backend_cuda_create(&g_ctx, &be);
    if (st == G4Q_OK) st = g4q_forward_create(&g_ctx, be, &m.cfg, &m.w, prompt, &f);
    if (st == G4Q_OK) st = g4q_kvcache_create(&g_ctx, be, &m.cfg, prompt + steps + 40, &kv);
    const int V = m.cfg.vocab_size;
    std::vector<int32_t> ids((size_t)prompt + steps + 40);
    for (auto &x : ids)
        x = (int32_t)(g4q_test_rand(&g_rng) % (uint64_t)(V - 16)) + 3;
    vecf logits(V);
    double t_load = g4q_now_seconds() - t0;
    std::vector<double> pre, dec;
    /* Prefill: 1 warm-up + 3 timed. Each run ends with the logits download, which synchronises,
     * so host time brackets the device work exactly. */
    for (int r = 0; r < 4 && st == G4Q_OK; r++) {
        g4q_kvcache_reset(kv);
        double a = g4q_now_seconds();
        st = g4q_forward_run(f, kv, ids.data(), prompt, 1, logits.data());
        if (r) pre.push_back(g4q_now_seconds() - a);
    }
    for (int s = 0; s < steps + 8 && st == G4Q_OK; s++) {
        double a = g4q_now_seconds();
        st = g4q_forward_run(f, kv, &ids[(size_t)prompt + s], 1, 1, logits.data());
        if (s >= 8) dec.push_back(g4q_now_seconds() - a);
    }
    /* the same steps launched op by op (no graph), 8 warm-up + 16 timed, for the launch cost */
    std::vector<double> dec_direct;
    if (f) g4q_forward_set_graphs(f, 0);
    for (int s = steps + 8; s < steps + 32 && st == G4Q_OK; s++) {
        double a = g4q_now_seconds();
        st = g4q_forward_run(f, kv, &ids[(size_t)prompt + s], 1, 1, logits.data());
        if (s >= steps + 16) dec_direct.push_back(g4q_now_seconds() - a);
    }
    if (st != G4Q_OK) {
        fprintf(stderr, "bench: %s\n", g4q_ctx_error(&g_ctx));
    } else {
        double tp = median(pre), td = median(dec);
        printf("bench model %s: load+bind %.1f s\n", dir, t_load);
        printf("bench prefill %d tokens: median %.1f ms = %.0f tok/s\n", prompt, tp * 1e3,
               prompt / tp);
        printf("bench decode (context %d..%d): median %.2f ms/token = %.1f tok/s (min %.2f ms)\n",
               prompt, prompt + steps + 8, td * 1e3, 1.0 / td,
               *std::min_element(dec.begin(), dec.end()) * 1e3);
        printf("bench decode without graph replay (ops launched one by one): median %.2f ms/token "
               "= %.1f tok/s\n",
               median(dec_direct) * 1e3, 1.0 / median(dec_direct));
        printf("bench peak GPU memory (backend) %.2f GB, KV cache %.3f GB\n",
               (double)be->mem_peak(be) / 1e9, (double)kv->bytes / 1e9);
        if (parts) bench_parts(be);
    }
    g4q_kvcache_free(kv);
    g4q_forward_free(f);
    g4q_backend_free(be);
    g4q_ckpt_close(m.ck);
    return st == G4Q_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    g4q_ctx_init(&g_ctx);
    g_rng = g4q_test_seed();
    if (argc >= 3 && strcmp(argv[1], "--bench") == 0)
        return bench(argv[2], argc >= 4 ? atoi(argv[3]) : 1024, argc >= 5 ? atoi(argv[4]) : 64,
                     !(argc >= 6 && strcmp(argv[5], "noparts") == 0));
    pair_be p = {nullptr, nullptr, BF16_U};
    if (!pair_open(&p)) return g4q_test_finish();
    test_matmul(p);
    test_rmsnorm(p);
    test_rope(p);
    test_elementwise(p);
    test_col_amax(p);
    test_deferred(p);
    test_fused_gemv(p.gpu);
    test_fused_norms(p.gpu);
    printf("cuda backend peak device memory: %.1f MB\n", (double)p.gpu->mem_peak(p.gpu) / 1e6);
    g4q_backend_free(p.gpu);
    /* F32 mode: the same op suite with u = 0 (no bf16 rounding), then the whole model. */
    pair_be p32;
    if (pair_open_f32(p.cpu, &p32)) {
        test_matmul(p32);
        test_rmsnorm(p32);
        test_rope(p32);
        test_elementwise(p32);
        test_col_amax(p32);
        printf("cuda-fp32 backend peak device memory: %.1f MB\n",
               (double)p32.gpu->mem_peak(p32.gpu) / 1e6);
    }
    g4q_backend_free(p32.gpu);
    g4q_cuda_opts bad = {(g4q_cuda_precision)7, 0};
    g4q_backend *none = nullptr;
    CHECK_STATUS(g4q_backend_cuda_create_opts(&g_ctx, &bad, &none), G4Q_ERR_INVALID);
    CHECK(none == nullptr);
    g4q_backend_free(p.cpu);
    return g4q_test_finish();
}
