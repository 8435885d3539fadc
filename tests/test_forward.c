/*
 * Tests of the CPU backend ops (src/backend/cpu) and the Gemma 4 forward pass (src/model/forward)
 * with its KV cache (src/model/kvcache).
 *
 * (a) Each op against a straightforward double-precision reference written here.
 * (b) A whole random model built in memory (6 layers, window 8, a k_eq_v full layer with a larger
 *     head_dim) against an independent naive double-precision forward straight from
 *     docs/gemma4.md §4 (tests/refmodel.c, no code shared with src/).
 * (c) Prefill + token-by-token decode, and chunked prefill, against one long prefill, at lengths
 *     crossing the sliding window.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/cpu.h"
#include "base/bf16.h"
#include "model/forward.h"
#include "runtime/sample.h"
#include "refmodel.h"
#include "model/kvcache.h"
#include "testutil.h"

static g4q_ctx g_ctx;
static uint64_t g_rng;

/* ---------------------------------------------------------------- helpers */

static float randn(double sigma)
{
    return (float)(g4q_test_normal(&g_rng) * sigma);
}

static uint16_t *rand_bf16(size_t n, double mean, double sigma)
{
    uint16_t *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = g4q_f32_to_bf16((float)mean + randn(sigma));
    return p;
}

static float *rand_f32(size_t n, double sigma)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = randn(sigma);
    return p;
}

static double bf(const uint16_t *p, size_t i)
{
    return (double)g4q_bf16_to_f32(p[i]);
}

static g4q_buf *buf_from(g4q_backend *be, const float *src, size_t n)
{
    g4q_buf *b = NULL;
    CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, n, &b), G4Q_OK);
    if (src) CHECK_STATUS(be->upload(be, b, 0, src, n), G4Q_OK);
    return b;
}

static float *buf_to(g4q_backend *be, const g4q_buf *b, size_t n)
{
    float *p = malloc(n * sizeof *p);
    CHECK_STATUS(be->download(be, b, 0, p, n), G4Q_OK);
    return p;
}

static g4q_bweight *bind_bf16(g4q_backend *be, const uint16_t *data, int64_t rows, int64_t cols)
{
    g4q_weight_desc d = {
        .format = G4Q_WF_BF16, .rows = rows, .cols = cols, .data = data, .name = "test"};
    g4q_bweight *w = NULL;
    CHECK_STATUS(be->weight_bind(be, &d, &w), G4Q_OK);
    return w;
}

/* ---------------------------------------------------------------- (a) ops */

/* fp32 dot products of length n accumulate at most about n rounding errors of FLT_EPSILON/2 each
 * on partial sums bounded by Σ|w·x| (the classic γ_n bound); 2·n·eps leaves room for the widening
 * and a different summation order. */
static void test_matmul(g4q_backend *be)
{
    const int sizes[][3] = {{1, 1, 1},     {1, 7, 15},    {7, 17, 15},
                            {3, 129, 127}, {17, 33, 256}, {5, 16, 129}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s][0], out = sizes[s][1], in = sizes[s][2];
        uint16_t *w = rand_bf16((size_t)out * in, 0.0, 1.0);
        float *x = rand_f32((size_t)n * in, 1.0);
        g4q_buf *bx = buf_from(be, x, (size_t)n * in), *by = buf_from(be, NULL, (size_t)n * out);
        g4q_bweight *bw = bind_bf16(be, w, out, in);
        CHECK_STATUS(be->matmul(be, by, bx, bw, n), G4Q_OK);
        float *y = buf_to(be, by, (size_t)n * out);
        int bad = 0;
        double worst = 0;
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++) {
                double ref = 0, mag = 0;
                for (int k = 0; k < in; k++) {
                    double p = bf(w, (size_t)o * in + k) * x[(size_t)i * in + k];
                    ref += p;
                    mag += fabs(p);
                }
                double err = fabs(y[(size_t)i * out + o] - ref), tol = 2.0 * in * FLT_EPSILON * mag;
                worst = fmax(worst, err / (mag + 1e-30));
                bad += err > tol;
            }
        CHECK_MSG(!bad, "matmul n %d out %d in %d: %d outputs off (worst err/Σ|wx| %.3g)", n, out,
                  in, bad, worst);
        free(w), free(x), free(y);
        be->weight_free(be, bw), be->buf_free(be, bx), be->buf_free(be, by);
    }
}

/* RMSNorm: a handful of fp32 roundings per element (mean, rsqrt, two products): 8 eps relative. */
static void test_rmsnorm(g4q_backend *be)
{
    const int sizes[][2] = {{1, 1}, {3, 7}, {16, 16}, {5, 129}, {2, 3840}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int with_w = 0; with_w < 2; with_w++) {
            int rows = sizes[s][0], n = sizes[s][1];
            float *x = rand_f32((size_t)rows * n, 3.0);
            uint16_t *w = rand_bf16((size_t)n, 1.0, 0.5);
            g4q_buf *bx = buf_from(be, x, (size_t)rows * n);
            g4q_bweight *bw = with_w ? bind_bf16(be, w, 1, n) : NULL;
            const float eps = 1e-6f;
            CHECK_STATUS(be->rmsnorm(be, bx, bx, bw, rows, n, eps), G4Q_OK); /* in place */
            float *y = buf_to(be, bx, (size_t)rows * n);
            int bad = 0;
            for (int r = 0; r < rows; r++) {
                double ss = 0;
                for (int i = 0; i < n; i++)
                    ss += (double)x[r * n + i] * x[r * n + i];
                double inv = 1.0 / sqrt(ss / n + eps);
                for (int i = 0; i < n; i++) {
                    double ref = x[r * n + i] * inv * (with_w ? bf(w, i) : 1.0);
                    bad += fabs(y[r * n + i] - ref) > 8 * FLT_EPSILON * fabs(ref) + 1e-30;
                }
            }
            CHECK_MSG(!bad, "rmsnorm rows %d n %d weight %d: %d values off", rows, n, with_w, bad);
            free(x), free(w), free(y);
            be->weight_free(be, bw), be->buf_free(be, bx);
        }
    }
}

/* RoPE. θ is formed in fp32 from an fp32 inv_freq (about 2 eps relative error from powf and the
 * division) times p (0.5 eps more), so |Δθ| <= 3·eps·θ; the output error is then at most
 * (|a| + |b|)·(|Δθ| + 4 eps) for the rotated pair (a, b). */
static void check_rope(g4q_backend *be, int hd, int angles, double theta, int T, int heads,
                       int pos0)
{
    g4q_layer_config lc = {.head_dim = hd, .rope_angles = angles, .rope = {.theta = theta}};
    const int half = hd / 2;
    float *tab = malloc(sizeof(float) * (size_t)half);
    g4q_forward_rope_table(&lc, tab);
    int bad_tab = 0;
    for (int i = 0; i < half; i++) {
        double ref = i < angles ? pow(theta, -2.0 * i / hd) : 0.0;
        bad_tab += fabs(tab[i] - ref) > 2 * FLT_EPSILON * ref || (i >= angles && tab[i] != 0.0f);
    }
    CHECK_MSG(!bad_tab, "rope table hd %d: %d entries off", hd, bad_tab);
    size_t n = (size_t)T * heads * hd;
    float *x = rand_f32(n, 1.0);
    g4q_buf *bx = buf_from(be, x, n), *bt = buf_from(be, tab, (size_t)half);
    CHECK_STATUS(be->rope(be, bx, bt, T, heads, hd, pos0), G4Q_OK);
    float *y = buf_to(be, bx, n);
    int bad = 0, moved = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < heads; h++) {
            const float *xv = x + ((size_t)t * heads + h) * hd;
            const float *yv = y + ((size_t)t * heads + h) * hd;
            double p = pos0 + t;
            for (int i = 0; i < half; i++) {
                double a = xv[i], b = xv[i + half];
                if (i >= angles) { /* untouched, bit for bit */
                    moved += memcmp(&yv[i], &xv[i], 4) != 0 ||
                             memcmp(&yv[i + half], &xv[i + half], 4) != 0;
                    continue;
                }
                double th = p * pow(theta, -2.0 * i / hd), c = cos(th), s = sin(th);
                double tol = (fabs(a) + fabs(b)) * (3 * FLT_EPSILON * th + 4 * FLT_EPSILON);
                bad += fabs(yv[i] - (a * c - b * s)) > tol;
                bad += fabs(yv[i + half] - (b * c + a * s)) > tol;
            }
        }
    CHECK_MSG(!bad && !moved,
              "rope hd %d angles %d T %d pos0 %d: %d off, %d unrotated dims changed", hd, angles, T,
              pos0, bad, moved);
    free(tab), free(x), free(y);
    be->buf_free(be, bx), be->buf_free(be, bt);
}

static void test_rope(g4q_backend *be)
{
    /* Proportional full layer of the 12B: 64 of 256 angles, denominator 512; dims 64..255 and
     * 320..511 must pass through unchanged. */
    check_rope(be, 512, 64, 1e6, 3, 2, 97);
    check_rope(be, 256, 128, 1e4, 4, 3, 0); /* default sliding layer */
    check_rope(be, 8, 4, 1e4, 7, 5, 11);
    check_rope(be, 32, 4, 1e6, 5, 1, 1000);
}

/* Attention over a ring cache of `cap` slots holding positions < n_past, plus a chunk of T. */
static void check_attention(g4q_backend *be, int cap, int n_past, int T, int nh, int nkv, int hd,
                            int window)
{
    const int P = n_past + T; /* every position's k, v, generated once */
    const size_t row = (size_t)nkv * hd;
    float *K = rand_f32((size_t)P * row, 1.0), *V = rand_f32((size_t)P * row, 1.0);
    float *q = rand_f32((size_t)T * nh * hd, 0.6);
    float *kc = calloc((size_t)cap * row, sizeof(float)),
          *vc = calloc((size_t)cap * row, sizeof(float));
    for (int p = (n_past - cap > 0 ? n_past - cap : 0); p < n_past; p++) {
        memcpy(kc + (size_t)(p % cap) * row, K + (size_t)p * row, row * sizeof(float));
        memcpy(vc + (size_t)(p % cap) * row, V + (size_t)p * row, row * sizeof(float));
    }
    g4q_buf *bq = buf_from(be, q, (size_t)T * nh * hd),
            *bo = buf_from(be, NULL, (size_t)T * nh * hd);
    g4q_buf *bk = buf_from(be, K + (size_t)n_past * row, (size_t)T * row);
    g4q_buf *bv = buf_from(be, V + (size_t)n_past * row, (size_t)T * row);
    g4q_buf *bkc = buf_from(be, kc, (size_t)cap * row), *bvc = buf_from(be, vc, (size_t)cap * row);
    CHECK_STATUS(
        be->attention(be, bo, bq, bk, bv, bkc, bvc, cap, n_past, T, nh, nkv, hd, window, 1.0f),
        G4Q_OK);
    float *o = buf_to(be, bo, (size_t)T * nh * hd);
    int bad = 0;
    double *sc = malloc(sizeof(double) * (size_t)P);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            int qp = n_past + t, kvh = h / (nh / nkv);
            const float *qv = q + ((size_t)t * nh + h) * hd;
            double mx = -INFINITY, sum = 0, smax = 0;
            for (int k = 0; k < P; k++) {
                int vis = k <= qp && (window <= 0 || qp - k < window);
                sc[k] = -INFINITY;
                if (!vis) continue;
                double s = 0;
                for (int j = 0; j < hd; j++)
                    s += (double)qv[j] * K[(size_t)k * row + (size_t)kvh * hd + j];
                sc[k] = s;
                mx = fmax(mx, s);
                smax = fmax(smax, fabs(s));
            }
            for (int k = 0; k < P; k++)
                sum += sc[k] == -INFINITY ? 0 : exp(sc[k] - mx);
            /* Scores carry ~hd·eps·|s| absolute error, which exp turns into relative error of
             * the probabilities; the weighted sum adds ~P·eps. Outputs are bounded by max|v|. */
            double tol = (4.0 * hd * FLT_EPSILON * (smax + 1) + 4.0 * P * FLT_EPSILON) * 5.0;
            for (int j = 0; j < hd; j++) {
                double ref = 0;
                for (int k = 0; k < P; k++)
                    if (sc[k] != -INFINITY)
                        ref += exp(sc[k] - mx) / sum * V[(size_t)k * row + (size_t)kvh * hd + j];
                bad += fabs(o[((size_t)t * nh + h) * hd + j] - ref) > tol;
            }
        }
    CHECK_MSG(!bad, "attention cap %d n_past %d T %d nh %d nkv %d hd %d window %d: %d off", cap,
              n_past, T, nh, nkv, hd, window, bad);
    /* kv_store keeps the last cap positions, each in slot p mod cap. */
    CHECK_STATUS(be->kv_store(be, bkc, bvc, bk, bv, cap, n_past, T, nkv, hd), G4Q_OK);
    float *kc2 = buf_to(be, bkc, (size_t)cap * row), *vc2 = buf_to(be, bvc, (size_t)cap * row);
    int wrong = 0;
    for (int p = (P - cap > 0 ? P - cap : 0); p < P; p++) {
        wrong += memcmp(kc2 + (size_t)(p % cap) * row, K + (size_t)p * row, row * 4) != 0;
        wrong += memcmp(vc2 + (size_t)(p % cap) * row, V + (size_t)p * row, row * 4) != 0;
    }
    CHECK_MSG(!wrong, "kv_store cap %d n_past %d T %d: %d slots wrong", cap, n_past, T, wrong);
    free(K), free(V), free(q), free(kc), free(vc), free(o), free(sc), free(kc2), free(vc2);
    g4q_buf *bs[] = {bq, bo, bk, bv, bkc, bvc};
    for (int i = 0; i < 6; i++)
        be->buf_free(be, bs[i]);
}

static void test_attention(g4q_backend *be)
{
    check_attention(be, 8, 0, 20, 4, 2, 16, 8);  /* one prefill longer than the window */
    check_attention(be, 8, 13, 5, 4, 2, 16, 8);  /* chunk after a wrapped ring */
    check_attention(be, 8, 21, 1, 4, 2, 16, 8);  /* decode */
    check_attention(be, 8, 3, 12, 6, 3, 8, 8);   /* chunk longer than the ring */
    check_attention(be, 40, 17, 7, 4, 1, 32, 0); /* full layer, MQA */
    check_attention(be, 1, 0, 1, 1, 1, 1, 0);
}

static void test_elementwise(g4q_backend *be)
{
    const size_t n = 1031;
    float *g = rand_f32(n, 2.0), *u = rand_f32(n, 1.0), *x = rand_f32(n, 50.0);
    g4q_buf *bg = buf_from(be, g, n), *bu = buf_from(be, u, n), *bx = buf_from(be, x, n);
    CHECK_STATUS(be->geglu(be, bg, bg, bu, n), G4Q_OK);
    CHECK_STATUS(be->softcap(be, bx, n, 30.0f), G4Q_OK);
    float *y = buf_to(be, bg, n), *sx = buf_to(be, bx, n);
    int bad_g = 0, bad_s = 0;
    for (size_t i = 0; i < n; i++) {
        double a = g[i];
        double ref = 0.5 * a * (1 + tanh(sqrt(2 / M_PI) * (a + 0.044715 * a * a * a))) * u[i];
        bad_g += fabs(y[i] - ref) > 8 * FLT_EPSILON * fabs(a * u[i]) + 1e-30;
        double sref = tanh(x[i] / 30.0) * 30.0;
        bad_s += fabs(sx[i] - sref) > 8 * FLT_EPSILON * 30.0;
    }
    CHECK_MSG(!bad_g, "geglu: %d values off", bad_g);
    CHECK_MSG(!bad_s, "softcap: %d values off", bad_s);
    /* add_scaled, amax */
    CHECK_STATUS(be->upload(be, bg, 0, g, n), G4Q_OK);
    CHECK_STATUS(be->add_scaled(be, bg, bu, n, 0.375f), G4Q_OK);
    float *h = buf_to(be, bg, n);
    int bad_a = 0;
    double am = 0;
    for (size_t i = 0; i < n; i++) {
        bad_a += h[i] != (g[i] + u[i]) * 0.375f;
        am = fmax(am, fabs(g[i]));
    }
    CHECK_MSG(!bad_a, "add_scaled: %d values off", bad_a);
    CHECK_STATUS(be->upload(be, bg, 0, g, n), G4Q_OK);
    float amax = -1;
    CHECK_STATUS(be->amax(be, bg, n, &amax), G4Q_OK);
    CHECK_MSG(amax == (float)am, "amax %g vs %g", amax, am);
    /* argmax: as g4q_sample_argmax on the same values (tie at the maximum, a mask, NaN) */
    {
        float *v = malloc(n * sizeof *v), *mf = calloc(n, sizeof *mf);
        uint8_t *mb = calloc(n, 1);
        memcpy(v, g, n * sizeof *v);
        v[n / 3] = v[n / 5] = 1e6f;
        mf[n / 5] = 1.0f, mb[n / 5] = 1;
        g4q_buf *bv = buf_from(be, v, n), *bm = buf_from(be, mf, n);
        int32_t id = -2, nan_at = -2;
        CHECK_STATUS(be->argmax(be, bv, n, NULL, &id, &nan_at), G4Q_OK);
        CHECK_MSG(id == g4q_sample_argmax(v, (int)n, NULL) && id == (int32_t)(n / 5) &&
                      nan_at == -1, "argmax %d, NaN at %d", id, nan_at);
        CHECK_STATUS(be->argmax(be, bv, n, bm, &id, &nan_at), G4Q_OK);
        CHECK_MSG(id == g4q_sample_argmax(v, (int)n, mb) && id == (int32_t)(n / 3),
                  "masked argmax %d", id);
        v[7] = NAN;
        CHECK_STATUS(be->upload(be, bv, 0, v, n), G4Q_OK);
        CHECK_STATUS(be->argmax(be, bv, n, NULL, &id, &nan_at), G4Q_OK);
        CHECK_MSG(nan_at == 7 && id == (int32_t)(n / 5), "argmax with NaN: %d, NaN at %d", id,
                  nan_at);
        be->buf_free(be, bv), be->buf_free(be, bm);
        free(v), free(mf), free(mb);
    }
    /* amax_into: max into an element, NaN sticks */
    const float acc0[3] = {0.0f, 1e30f, 0.0f}, nan1 = NAN;
    g4q_buf *acc = buf_from(be, acc0, 3);
    CHECK_STATUS(be->amax_into(be, bg, n, acc, 0), G4Q_OK);
    CHECK_STATUS(be->amax_into(be, bg, n, acc, 1), G4Q_OK);
    CHECK_STATUS(be->upload(be, bg, n - 1, &nan1, 1), G4Q_OK);
    CHECK_STATUS(be->amax_into(be, bg, n, acc, 2), G4Q_OK);
    CHECK_STATUS(be->upload(be, bg, 0, g, n), G4Q_OK);
    CHECK_STATUS(be->amax_into(be, bg, n, acc, 2), G4Q_OK);
    CHECK_STATUS(be->amax_into(be, bg, n, acc, 3), G4Q_ERR_INTERNAL);
    float *ha = buf_to(be, acc, 3);
    CHECK_MSG(ha[0] == (float)am && ha[1] == 1e30f && isnan(ha[2]),
              "amax_into %g %g %g, want %g 1e30 NaN", ha[0], ha[1], ha[2], am);
    free(ha);
    be->buf_free(be, acc);
    /* embed */
    const int vocab = 37, d = 19, T = 6;
    uint16_t *E = rand_bf16((size_t)vocab * d, 0, 1);
    g4q_bweight *bE = bind_bf16(be, E, vocab, d);
    int32_t ids[6] = {0, 36, 5, 5, 17, 1};
    g4q_buf *be_out = buf_from(be, NULL, (size_t)T * d);
    CHECK_STATUS(be->embed(be, be_out, bE, ids, T, 9.8125f), G4Q_OK);
    float *eo = buf_to(be, be_out, (size_t)T * d);
    int bad_e = 0;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++)
            bad_e += eo[t * d + i] != (float)(bf(E, (size_t)ids[t] * d + i) * 9.8125);
    CHECK_MSG(!bad_e, "embed: %d values off", bad_e);
    g4q_weight_desc nv = {.format = G4Q_WF_NVFP4, .rows = 1, .cols = 16, .data = E, .name = "q"};
    g4q_bweight *bad_w = NULL;
    /* NVFP4 without its scales is refused (packed formats: tests/test_forward_quant.c). */
    CHECK_STATUS(be->weight_bind(be, &nv, &bad_w), G4Q_ERR_INVALID);
    nv.format = G4Q_WF_COUNT;
    CHECK_STATUS(be->weight_bind(be, &nv, &bad_w), G4Q_ERR_UNSUPPORTED);
    free(g), free(u), free(x), free(y), free(sx), free(h), free(E), free(eo);
    be->buf_free(be, bg), be->buf_free(be, bu), be->buf_free(be, bx), be->buf_free(be, be_out);
    be->weight_free(be, bE);
}

/* ---------------------------------------------------------------- (b) a model in memory */

/* g4q_refmodel (refmodel.h): the model and its independent double-precision forward. */

/* max |x - ref| / max |ref| */
static double rel_err_d(const float *x, const double *ref, size_t n)
{
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs(x[i] - ref[i]));
        m = fmax(m, fabs(ref[i]));
    }
    return e / m;
}

static double rel_err_f(const float *x, const float *ref, size_t n)
{
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs((double)x[i] - ref[i]));
        m = fmax(m, fabs((double)ref[i]));
    }
    return e / m;
}

/* Runs ids[0..T) from an empty cache in calls of `step` tokens, with a forward of max_chunk. */
static float *run_model(g4q_backend *be, const g4q_refmodel *m, const int32_t *ids, int T,
                        int max_chunk, int step)
{
    g4q_forward *f = NULL;
    g4q_kvcache *kv = NULL;
    const size_t V = (size_t)m->cfg.vocab_size;
    float *logits = calloc((size_t)T * V, sizeof(float));
    if (!CHECK_STATUS(g4q_forward_create(&g_ctx, be, &m->cfg, &m->w, max_chunk, &f), G4Q_OK) ||
        !CHECK_STATUS(g4q_kvcache_create(&g_ctx, be, &m->cfg, 64, &kv), G4Q_OK)) {
        fprintf(stderr, "%s\n", g4q_ctx_error(&g_ctx));
        g4q_forward_free(f);
        return logits;
    }
    for (int t = 0; t < T; t += step) {
        int n = T - t < step ? T - t : step;
        if (!CHECK_STATUS(g4q_forward_run(f, kv, ids + t, n, 0, logits + (size_t)t * V), G4Q_OK))
            fprintf(stderr, "%s\n", g4q_ctx_error(&g_ctx));
    }
    CHECK_EQ_INT(kv->n_past, T);
    g4q_kvcache_free(kv);
    g4q_forward_free(f);
    return logits;
}

#define MODEL_REL_TOL 1e-4 /* fp32 forward vs double reference (brief: relative error < 1e-4) */
/* Same fp32 code on different chunkings: only summation-order noise (simd lanes, alignment). */
#define CONSIST_REL_TOL 1e-5

static void test_model(g4q_backend *be)
{
    g4q_refmodel *m = malloc(sizeof *m);
    g4q_refmodel_build(m, &g_rng, 6, 96, 160, 301, 4, 2, 16, 32, 8);
    const int T = 30;
    const size_t V = (size_t)m->cfg.vocab_size;
    int32_t ids[30];
    for (int t = 0; t < T; t++)
        ids[t] = (int32_t)(g4q_test_rand(&g_rng) % V);
    ids[0] = 2;
    double *ref = malloc(sizeof(double) * T * V);
    g4q_refmodel_forward(m, ids, T, NULL, ref);
    float *one = run_model(be, m, ids, T, 64, T);
    double e = rel_err_d(one, ref, (size_t)T * V);
    printf("model vs double reference: max rel err %.3g over %d x %zu logits\n", e, T, V);
    CHECK_MSG(e < MODEL_REL_TOL, "forward vs double reference: rel err %.3g", e);
    double lo = 1e9, hi = -1e9; /* the logits are not degenerate */
    for (size_t i = 0; i < (size_t)T * V; i++)
        lo = fmin(lo, ref[i]), hi = fmax(hi, ref[i]);
    CHECK_MSG(hi - lo > 5.0, "logit range %.3g .. %.3g too narrow", lo, hi);

    /* (c) prefill + decode, chunked prefill, and chunks via the call pattern. */
    const int prefill[] = {1, 5, 8, 12};
    for (size_t i = 0; i < sizeof prefill / sizeof prefill[0]; i++) {
        g4q_forward *f = NULL;
        g4q_kvcache *kv = NULL;
        float *lg = calloc((size_t)T * V, sizeof(float));
        CHECK_STATUS(g4q_forward_create(&g_ctx, be, &m->cfg, &m->w, 16, &f), G4Q_OK);
        CHECK_STATUS(g4q_kvcache_create(&g_ctx, be, &m->cfg, T, &kv), G4Q_OK);
        CHECK_STATUS(g4q_forward_run(f, kv, ids, prefill[i], 0, lg), G4Q_OK);
        for (int t = prefill[i]; t < T; t++) /* decode with last_only */
            CHECK_STATUS(g4q_forward_run(f, kv, ids + t, 1, 1, lg + (size_t)t * V), G4Q_OK);
        double ed = rel_err_f(lg, one, (size_t)T * V);
        CHECK_MSG(ed < CONSIST_REL_TOL, "prefill %d + decode vs one prefill: rel err %.3g",
                  prefill[i], ed);
        /* The context is full now: one more token is refused. */
        CHECK_STATUS(g4q_forward_run(f, kv, ids, 1, 1, lg), G4Q_ERR_INVALID);
        g4q_kvcache_free(kv);
        g4q_forward_free(f);
        free(lg);
    }
    float *chunk5 = run_model(be, m, ids, T, 5, T); /* forward splits into chunks of 5 */
    double ec = rel_err_f(chunk5, one, (size_t)T * V);
    CHECK_MSG(ec < CONSIST_REL_TOL, "max_chunk 5 vs one prefill: rel err %.3g", ec);
    float *calls5 = run_model(be, m, ids, T, 64, 5); /* the caller feeds chunks of 5 */
    double ek = rel_err_f(calls5, one, (size_t)T * V);
    CHECK_MSG(ek < CONSIST_REL_TOL, "calls of 5 vs one prefill: rel err %.3g", ek);
    float *calls7 = run_model(be, m, ids, T, 3, 7); /* both, not aligned with the window */
    double e7 = rel_err_f(calls7, one, (size_t)T * V);
    CHECK_MSG(e7 < CONSIST_REL_TOL, "calls of 7, max_chunk 3 vs one prefill: rel err %.3g", e7);
    printf("consistency rel err: decode-after-prefill ok, chunks of 5 %.3g, calls of 5 %.3g, "
           "calls of 7/chunk 3 %.3g\n",
           ec, ek, e7);

    /* last_only gives the last row; bad ids are refused. */
    g4q_forward *f = NULL;
    g4q_kvcache *kv = NULL;
    CHECK_STATUS(g4q_forward_create(&g_ctx, be, &m->cfg, &m->w, 32, &f), G4Q_OK);
    CHECK_STATUS(g4q_kvcache_create(&g_ctx, be, &m->cfg, 64, &kv), G4Q_OK);
    float *last = malloc(sizeof(float) * V);
    CHECK_STATUS(g4q_forward_run(f, kv, ids, T, 1, last), G4Q_OK);
    double el = rel_err_f(last, one + (size_t)(T - 1) * V, V);
    CHECK_MSG(el < CONSIST_REL_TOL, "last_only vs full logits: rel err %.3g", el);
    int32_t badid = (int32_t)V;
    CHECK_STATUS(g4q_forward_run(f, kv, &badid, 1, 1, last), G4Q_ERR_INVALID);
    CHECK(strstr(g4q_ctx_error(&g_ctx), "vocabulary") != NULL);
    g4q_kvcache_reset(kv);
    CHECK_STATUS(g4q_forward_run(f, kv, ids, 3, 1, NULL), G4Q_OK);
    CHECK_EQ_INT(kv->n_past, 3);
    g4q_kvcache_free(kv);
    g4q_forward_free(f);

    /* A missing tensor is reported by name. */
    g4q_refmodel *broken = malloc(sizeof *broken);
    memcpy(broken, m, sizeof *m);
    broken->w.layers[2].up_proj = NULL;
    CHECK_STATUS(g4q_forward_create(&g_ctx, be, &broken->cfg, &broken->w, 4, &f), G4Q_ERR_SHAPE);
    CHECK(strstr(g4q_ctx_error(&g_ctx), "up_proj") != NULL);
    free(broken);

    free(ref), free(one), free(chunk5), free(calls5), free(calls7), free(last);
    g4q_refmodel_free(m);
    free(m);
}

/* A 100-token prompt on a model the size of the "tiny" synthetic preset. */
static void test_speed(g4q_backend *be)
{
    g4q_refmodel *m = malloc(sizeof *m);
    g4q_refmodel_build(m, &g_rng, 6, 256, 1024, 2048, 4, 2, 64, 128, 32);
    int32_t ids[100];
    for (int t = 0; t < 100; t++)
        ids[t] = (int32_t)(g4q_test_rand(&g_rng) % 2048);
    g4q_forward *f = NULL;
    g4q_kvcache *kv = NULL;
    CHECK_STATUS(g4q_forward_create(&g_ctx, be, &m->cfg, &m->w, 128, &f), G4Q_OK);
    CHECK_STATUS(g4q_kvcache_create(&g_ctx, be, &m->cfg, 128, &kv), G4Q_OK);
    float *lg = malloc(sizeof(float) * 100 * 2048);
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_STATUS(g4q_forward_run(f, kv, ids, 100, 0, lg), G4Q_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int t = 0; t < 20; t++)
        CHECK_STATUS(g4q_forward_run(f, kv, ids + t, 1, 1, lg), G4Q_OK);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    double pre = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double dec = (double)(t2.tv_sec - t1.tv_sec) + 1e-9 * (double)(t2.tv_nsec - t1.tv_nsec);
    printf(
        "speed (6 layers, d 256, vocab 2048): prefill 100 tokens %.1f ms, decode %.2f ms/token\n",
        pre * 1e3, dec * 1e3 / 20);
    CHECK_MSG(pre < 5.0, "prefill of 100 tokens took %.2f s", pre); /* loose: CI machines vary */
    free(lg);
    g4q_kvcache_free(kv);
    g4q_forward_free(f);
    g4q_refmodel_free(m);
    free(m);
}

int main(void)
{
    g4q_ctx_init(&g_ctx);
    g_rng = g4q_test_seed();
    g4q_backend *be = NULL;
    if (!CHECK_STATUS(g4q_backend_cpu_create(&g_ctx, &be), G4Q_OK)) return g4q_test_finish();
    test_matmul(be);
    test_rmsnorm(be);
    test_rope(be);
    test_attention(be);
    test_elementwise(be);
    test_model(be);
    test_speed(be);
    g4q_backend_free(be);
    return g4q_test_finish();
}
