// attention_step_nr (backend.h): a decode step's q/k norms, RoPE, attention and cache store in
// one op, against qkv_norm_rope followed by attention_store (both checked against the CPU
// reference in test_backend_gpu.cu) on the CUDA backend: the output, both caches and the normed
// V row must be equal bit for bit. Head sizes 256 and 512 (the 12B's sliding and full layers) take
// the fused kernels, others the two ops. Caches before and after wrapping (n_past >= cap), the
// first step (empty cache), K = V layers, query-head groups with and without a compiled kernel;
// each fused case runs three times into NaN-filled outputs, so that a per-head counter left
// behind by an earlier call would show.
#include "backend_pair.h"

struct step_case {
    int cap, n_past, nh, nkv, hd, window, v_from_k;
};

static void run_case(g4q_backend *be, const step_case &c)
{
    const size_t row = (size_t)c.nkv * c.hd, on = (size_t)c.nh * c.hd;
    const float eps = 1e-6f;
    g4q_layer_config lc = {};
    lc.head_dim = c.hd, lc.rope_angles = c.hd / 4, lc.rope.theta = 1e6;
    vecf tab((size_t)c.hd / 2);
    g4q_forward_rope_table(&lc, tab.data());
    const vecf q = randv(on, 0, 1.0), kn = randv(row, 0, 1.0), vn = randv(row, 0, 1.0),
               kc = randv((size_t)c.cap * row, 0, 0.25), vc = randv((size_t)c.cap * row, 0, 1.0),
               nan(on, NAN);
    const auto qw = to_bf16(randv((size_t)c.hd, 1.0, 0.3)), kw = to_bf16(randv((size_t)c.hd, 1.0, 0.3));
    g4q_bweight *wq = bindw(be, qw, 1, c.hd), *wk = bindw(be, kw, 1, c.hd);
    g4q_buf *bt = nullptr;
    CHECK_STATUS(be->buf_alloc(be, G4Q_DT_F32, tab.size(), &bt), G4Q_OK);
    CHECK_STATUS(be->upload(be, bt, 0, tab.data(), tab.size()), G4Q_OK);
    vecf ref[4];
    for (int call = 0; call < 4; call++) {
        g4q_buf *bq = mk(be, q), *bkn = mk(be, kn), *bvn = mk(be, vn), *bkc = mk(be, kc),
                *bvc = mk(be, vc), *bo = mk(be, nan);
        CHECK_STATUS(be->step_pos(be, c.n_past), G4Q_OK);
        if (call == 0) {
            CHECK_STATUS(be->qkv_norm_rope(be, bq, bkn, bvn, c.v_from_k, wq, wk, bt, 1, c.nh, c.nkv,
                                           c.hd, G4Q_STEP_POS, eps),
                         G4Q_OK);
            CHECK_STATUS(be->attention_store(be, bo, bq, bkn, bvn, bkc, bvc, c.cap, G4Q_STEP_POS, 1,
                                             c.nh, c.nkv, c.hd, c.window, 1.0f),
                         G4Q_OK);
        } else {
            CHECK_STATUS(be->attention_step_nr(be, bo, bq, bkn, bvn, c.v_from_k, wq, wk, bt, eps,
                                               bkc, bvc, c.cap, c.nh, c.nkv, c.hd, c.window, 1.0f),
                         G4Q_OK);
        }
        vecf got[4] = {get(be, bo, on), get(be, bkc, kc.size()), get(be, bvc, vc.size()),
                       get(be, bvn, row)};
        for (int i = 0; i < 4; i++) {
            if (call == 0) {
                ref[i] = got[i];
                continue;
            }
            size_t bad = 0, nans = 0;
            for (size_t j = 0; j < got[i].size(); j++) {
                bad += memcmp(&got[i][j], &ref[i][j], sizeof(float)) != 0;
                nans += std::isnan(got[i][j]);
            }
            static const char *const what[] = {"output", "K cache", "V cache", "normed V"};
            CHECK_MSG(bad == 0 && nans == 0,
                      "attention_step_nr cap %d n_past %d nh %d nkv %d hd %d window %d v_from_k "
                      "%d, call %d: %zu of %zu %s values differ from qkv_norm_rope + "
                      "attention_store (%zu NaN)",
                      c.cap, c.n_past, c.nh, c.nkv, c.hd, c.window, c.v_from_k, call, bad,
                      got[i].size(), what[i], nans);
        }
        g4q_buf *all[] = {bq, bkn, bvn, bkc, bvc, bo};
        for (auto *b : all)
            be->buf_free(be, b);
    }
    be->weight_free(be, wq), be->weight_free(be, wk), be->buf_free(be, bt);
}

int main(void)
{
    g4q_ctx_init(&g_ctx);
    g_rng = g4q_test_seed();
    g4q_backend *be = nullptr;
    if (!CHECK_STATUS(g4q_backend_cuda_create(&g_ctx, &be), G4Q_OK)) {
        printf("cuda backend: %s\n", g4q_ctx_error(&g_ctx));
        return g4q_test_finish();
    }
    CHECK(be->attention_step_nr != nullptr);
    const step_case cases[] = {
        {1024, 1500, 16, 8, 256, 1024, 0}, /* the 12B's sliding layer, cache wrapped */
        {1024, 1023, 16, 8, 256, 1024, 0}, /* the step that fills the cache */
        {1024, 0, 16, 8, 256, 1024, 0},    /* the first token */
        {2048, 1000, 16, 1, 512, 0, 1},    /* the 12B's full layer: K = V, 16 heads per KV head */
        {512, 700, 16, 2, 512, 512, 0},    /* group 8 at head_dim 512, wrapped cache */
        {64, 90, 6, 2, 256, 64, 1},        /* group 3: the kernel with the group at run time */
        {64, 200, 4, 2, 64, 64, 0},        /* head_dim 64: the two ops */
        {16, 40, 4, 4, 128, 16, 1},        /* head_dim 128: the two ops */
    };
    for (const step_case &c : cases)
        if (be->attention_step_nr) run_case(be, c);
    g4q_backend_free(be);
    return g4q_test_finish();
}
