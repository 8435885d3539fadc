/* Tests of src/model/weights: the expected layout against the tensor lists transformers 5.17
 * wrote (tests/data/gemma4_tiny*_names.txt), the exact parameter counts of gemma4.md §6.5, and
 * binding of in-memory tensor arrays: complete (shuffled), missing, extra, mis-shaped, wrong
 * dtype, v_proj on a k_eq_v full layer, lm_head, duplicates, wrong prefix, many problems. */
#include <stdlib.h>
#include <string.h>

#include "model/weights.h"
#include "testutil.h"

static char *read_data(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/%s", G4Q_SOURCE_DIR, name);
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char *text = NULL;
    size_t len;
    if (g4q_read_file(&ctx, path, 1 << 20, &text, &len) != G4Q_OK) {
        fprintf(stderr, "cannot read %s: %s\n", path, g4q_ctx_error(&ctx));
        exit(1);
    }
    return text;
}

static g4q_config *load_config(const char *name)
{
    g4q_config *c = malloc(sizeof *c);
    char *s = read_data(name);
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    ctx.log_level = G4Q_LOG_ERROR;
    if (g4q_config_parse(&ctx, name, s, c) != G4Q_OK) {
        fprintf(stderr, "%s\n", g4q_ctx_error(&ctx));
        exit(1);
    }
    free(s);
    return c;
}

/* Without vision_config / audio_config: the text-only count of gemma4.md §6.5. */
static g4q_config *load_config_text(const char *name)
{
    g4q_config *c = load_config(name);
    c->has_vision = c->has_audio = c->has_multimodal = 0;
    return c;
}

static g4q_weight_spec *expected(const g4q_config *c, g4q_weight_order order, size_t *n)
{
    *n = g4q_weights_expected_count(c);
    g4q_weight_spec *s = malloc(*n * sizeof *s);
    size_t m = g4q_weights_expected(c, order, s);
    CHECK_EQ_INT(m, *n);
    return s;
}

static void test_12b_counts(void)
{
    g4q_config *c = load_config("gemma4_12b_config.json");
    size_t n;
    g4q_weight_spec *s = expected(c, G4Q_ORDER_MODULE, &n);
    CHECK_EQ_INT(n, 677); /* gemma4.md §6.2: 677 tensors */
    uint64_t total = 0, linear = 0, layer0 = 0, layer5 = 0;
    for (size_t i = 0; i < n; i++) {
        total += s[i].numel;
        if (s[i].role >= G4Q_W_Q_PROJ && s[i].role <= G4Q_W_DOWN_PROJ &&
            s[i].role != G4Q_W_Q_NORM && s[i].role != G4Q_W_K_NORM)
            linear += s[i].numel;
        if (s[i].layer == 0) layer0 += s[i].numel;
        if (s[i].layer == 5) layer5 += s[i].numel;
        CHECK_EQ_INT(s[i].dtype, G4Q_DT_BF16);
    }
    /* gemma4.md §6.5, exact. */
    CHECK_EQ_INT(total, 11959730224ULL);
    CHECK_EQ_INT(total * 2, 23919460448ULL);
    CHECK_EQ_INT(linear, 10899947520ULL);
    CHECK_EQ_INT(layer0, 224148993ULL);
    CHECK_EQ_INT(layer5, 241844225ULL);
    CHECK_EQ_INT(s[0].numel, 1006632960ULL);
    free(s);

    g4q_config *t = load_config_text("gemma4_12b_config_517.json");
    s = expected(t, G4Q_ORDER_FILE, &n);
    CHECK_EQ_INT(n, 666);
    total = 0;
    for (size_t i = 0; i < n; i++)
        total += s[i].numel;
    CHECK_EQ_INT(total, 11907350320ULL);
    for (size_t i = 1; i < n; i++)
        CHECK(strcmp(s[i - 1].name, s[i].name) < 0);
    free(s);

    /* Layer linears: 7 on sliding layers, 6 on k_eq_v full layers, with groups and shapes. */
    g4q_linear lin[G4Q_MAX_LAYER_LINEARS];
    CHECK_EQ_INT(g4q_weights_layer_linears(c, 0, lin), 7);
    CHECK(lin[0].role == G4Q_W_Q_PROJ && lin[0].group == G4Q_GROUP_QKV);
    CHECK(strcmp(lin[2].module, "self_attn.v_proj") == 0 && strcmp(lin[2].group_name, "qkv") == 0);
    CHECK(lin[3].role == G4Q_W_O_PROJ && lin[3].group == G4Q_GROUP_NONE && !lin[3].group_name);
    CHECK(lin[4].group == G4Q_GROUP_GATE_UP && lin[5].group == G4Q_GROUP_GATE_UP);
    CHECK(lin[6].role == G4Q_W_DOWN_PROJ && lin[6].out_features == 3840 &&
          lin[6].in_features == 15360);
    CHECK_EQ_INT(lin[1].out_features, 2048);
    CHECK_EQ_INT(g4q_weights_layer_linears(c, 5, lin), 6);
    CHECK_EQ_INT(lin[0].out_features, 8192);
    CHECK_EQ_INT(lin[1].out_features, 512);
    CHECK(lin[2].role == G4Q_W_O_PROJ && lin[2].in_features == 8192);
    uint64_t lin_total = 0;
    for (int L = 0; L < c->n_layers; L++) {
        int m = g4q_weights_layer_linears(c, L, lin);
        for (int i = 0; i < m; i++)
            lin_total += (uint64_t)lin[i].out_features * (uint64_t)lin[i].in_features;
    }
    CHECK_EQ_INT(lin_total, 10899947520ULL);
    free(c);
    free(t);
}

/* The FILE-order list equals what save_pretrained wrote (name, dtype, shape), line by line. */
static void compare_names(const char *config, const char *names)
{
    g4q_config *c = load_config(config);
    size_t n;
    g4q_weight_spec *s = expected(c, G4Q_ORDER_FILE, &n);
    char *text = read_data(names);
    size_t i = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), i++) {
        char mine[256];
        int k = 0;
        if (i < n) {
            k = snprintf(mine, sizeof mine, "%s %s ", s[i].name, g4q_dtype_name(s[i].dtype));
            for (int d = 0; d < s[i].ndim; d++)
                k += snprintf(mine + k, sizeof mine - (size_t)k, "%s%lld", d ? "," : "",
                              (long long)s[i].shape[d]);
        }
        CHECK_MSG(i < n && strcmp(mine, line) == 0, "%s line %zu: transformers '%s', ours '%s'",
                  names, i + 1, line, i < n ? mine : "(none)");
    }
    CHECK_EQ_INT(i, n);
    free(text);
    free(s);
    free(c);
}

static g4q_tensor *make_tensors(const g4q_weight_spec *s, size_t n, size_t extra)
{
    g4q_tensor *t = calloc(n + extra, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        t[i].name = s[i].name;
        t[i].dtype = s[i].dtype;
        t[i].ndim = s[i].ndim;
        for (int d = 0; d < s[i].ndim; d++)
            t[i].shape[d] = s[i].shape[d];
        t[i].numel = s[i].numel;
        t[i].nbytes = s[i].numel * 2;
    }
    return t;
}

static g4q_status bind(const g4q_config *c, const g4q_tensor *t, size_t n, g4q_weights *w,
                       g4q_ctx *ctx)
{
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    g4q_ctx_init(ctx);
    ctx->log_stream = devnull; /* problems are logged at ERROR: keep the test output short */
    return g4q_weights_bind(ctx, c, t, n, "ckpt", w);
}

static void expect_msg(const g4q_ctx *ctx, const char *a, const char *b)
{
    const char *m = g4q_ctx_error(ctx);
    if (!m) m = "";
    CHECK_MSG(strncmp(m, "ckpt: ", 6) == 0, "label: %s", m);
    if (a) CHECK_MSG(strstr(m, a) != NULL, "message lacks '%s': %s", a, m);
    if (b) CHECK_MSG(strstr(m, b) != NULL, "message lacks '%s': %s", b, m);
}

static void test_bind_ok(const char *config, uint64_t *rng)
{
    g4q_config *c = load_config(config);
    size_t n;
    g4q_weight_spec *s = expected(c, G4Q_ORDER_MODULE, &n);
    g4q_tensor *t = make_tensors(s, n, 0);
    for (size_t i = n - 1; i > 0; i--) { /* any order is accepted */
        size_t j = g4q_test_rand(rng) % (i + 1);
        g4q_tensor tmp = t[i];
        t[i] = t[j];
        t[j] = tmp;
    }
    g4q_weights *w = malloc(sizeof *w);
    g4q_ctx ctx;
    CHECK_STATUS(bind(c, t, n, w, &ctx), G4Q_OK);
    CHECK(w->embed_tokens && strstr(w->embed_tokens->name, "embed_tokens.weight"));
    CHECK(w->norm && strcmp(w->norm->name + strlen(c->prefix), "norm.weight") == 0);
    CHECK_EQ_INT(w->n_layers, c->n_layers);
    CHECK_EQ_INT(w->n_multimodal, (c->has_vision ? 10 : 0) + (c->has_audio ? 1 : 0));
    for (int i = 0; i < w->n_multimodal; i++)
        CHECK(w->multimodal[i] != NULL);
    for (int L = 0; L < c->n_layers; L++) {
        for (int r = 0; r < G4Q_LAYER_ROLES; r++) {
            const g4q_tensor *x = g4q_weights_get(w, L, (g4q_weight_role)r);
            if (r == G4Q_W_V_PROJ && !c->layers[L].has_v_proj) {
                CHECK(x == NULL);
                continue;
            }
            char want[128];
            snprintf(want, sizeof want, "%slayers.%d.%s", c->prefix, L,
                     g4q_weight_role_suffix((g4q_weight_role)r));
            CHECK_MSG(x && strcmp(x->name, want) == 0, "layer %d role %d: %s", L, r,
                      x ? x->name : "NULL");
        }
        const g4q_layer_weights *lw = &w->layers[L];
        CHECK(lw->q_proj && lw->q_proj->shape[0] == (int64_t)c->n_heads * c->layers[L].head_dim);
        CHECK(lw->layer_scalar && lw->layer_scalar->numel == 1);
        CHECK(lw->post_feedforward_layernorm && lw->input_layernorm && lw->down_proj);
    }
    free(w);
    free(t);
    free(s);
    free(c);
}

static void test_bind_problems(uint64_t *rng)
{
    g4q_config *c = load_config("gemma4_tiny_config.json");
    size_t n;
    g4q_weight_spec *s = expected(c, G4Q_ORDER_MODULE, &n);
    g4q_weights *w = malloc(sizeof *w);
    g4q_ctx ctx;
    g4q_tensor *t;

    /* One missing, at a random position. */
    size_t k = g4q_test_rand(rng) % n;
    t = make_tensors(s, n, 0);
    t[k] = t[n - 1];
    CHECK_STATUS(bind(c, t, n - 1, w, &ctx), G4Q_ERR_NOT_FOUND);
    expect_msg(&ctx, s[k].name, "missing");
    expect_msg(&ctx, "1 weight problem:", "expected BF16 [");
    free(t);

    /* One extra. */
    t = make_tensors(s, n, 1);
    t[n] = t[3];
    t[n].name = "model.language_model.layers.2.self_attn.rotary.weight";
    CHECK_STATUS(bind(c, t, n + 1, w, &ctx), G4Q_ERR_FORMAT);
    expect_msg(&ctx, "layers.2.self_attn.rotary.weight", "unexpected");
    free(t);

    /* One wrong shape (transposed o_proj of layer 5: [128, 256] -> [256, 128]). */
    t = make_tensors(s, n, 0);
    for (size_t i = 0; i < n; i++) {
        if (s[i].layer == 5 && s[i].role == G4Q_W_O_PROJ) {
            t[i].shape[0] = s[i].shape[1];
            t[i].shape[1] = s[i].shape[0];
        }
    }
    CHECK_STATUS(bind(c, t, n, w, &ctx), G4Q_ERR_SHAPE);
    expect_msg(&ctx, "layers.5.self_attn.o_proj.weight': shape [256, 128], expected [128, 256]",
               NULL);
    free(t);

    /* One wrong dtype, and one wrong rank (layer_scalar as a 0-d scalar). */
    t = make_tensors(s, n, 0);
    k = g4q_test_rand(rng) % n;
    t[k].dtype = G4Q_DT_F32;
    CHECK_STATUS(bind(c, t, n, w, &ctx), G4Q_ERR_SHAPE);
    expect_msg(&ctx, s[k].name, "dtype F32, expected BF16");
    t[k].dtype = G4Q_DT_BF16;
    for (size_t i = 0; i < n; i++)
        if (s[i].role == G4Q_W_LAYER_SCALAR && s[i].layer == 3) t[i].ndim = 0;
    CHECK_STATUS(bind(c, t, n, w, &ctx), G4Q_ERR_SHAPE);
    expect_msg(&ctx, "layers.3.layer_scalar': shape [], expected [1]", NULL);
    free(t);

    /* v_proj on the k_eq_v full layer 5, lm_head while tied, a duplicate. */
    t = make_tensors(s, n, 3);
    t[n] = t[1];
    t[n].name = "model.language_model.layers.5.self_attn.v_proj.weight";
    CHECK_STATUS(bind(c, t, n + 1, w, &ctx), G4Q_ERR_FORMAT);
    expect_msg(&ctx, "layers.5.self_attn.v_proj.weight': unexpected", "attention_k_eq_v");
    t[n].name = "lm_head.weight";
    CHECK_STATUS(bind(c, t, n + 1, w, &ctx), G4Q_ERR_FORMAT);
    expect_msg(&ctx, "'lm_head.weight': unexpected", "tied");
    t[n] = t[7];
    CHECK_STATUS(bind(c, t, n + 1, w, &ctx), G4Q_ERR_FORMAT);
    expect_msg(&ctx, s[7].name, "given twice");
    t[n].name = "model.language_model.layers.6.mlp.up_proj.weight";
    CHECK_STATUS(bind(c, t, n + 1, w, &ctx), G4Q_ERR_FORMAT);
    expect_msg(&ctx, "layer 6 is beyond", NULL);
    /* A mix of kinds: FORMAT. */
    t[0].dtype = G4Q_DT_F16;
    CHECK_STATUS(bind(c, t, n + 1, w, &ctx), G4Q_ERR_FORMAT);
    expect_msg(&ctx, "2 weight problems", "dtype F16");
    free(t);

    /* Many problems: the 11 multimodal tensors and layers 1-2 (28) missing: 39 counted, 10 listed.
     */
    t = make_tensors(s, n, 0);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i].role != G4Q_W_MULTIMODAL && s[i].layer != 1 && s[i].layer != 2) t[m++] = t[i];
    size_t dropped = n - m;
    CHECK_EQ_INT(dropped, 39);
    CHECK_STATUS(bind(c, t, m, w, &ctx), G4Q_ERR_NOT_FOUND);
    char buf[64];
    snprintf(buf, sizeof buf, "%zu weight problems", dropped);
    expect_msg(&ctx, buf, "more (all are logged)");
    /* listed + "and N more" account for every problem, and most of the 10 fit. */
    const char *msg = g4q_ctx_error(&ctx), *more = strstr(msg, "; and ");
    size_t listed = 0, rest = 0;
    for (const char *q = msg; (q = strstr(q, "': missing (")) != NULL; q++)
        listed++;
    CHECK(more && sscanf(more, "; and %zu more", &rest) == 1);
    CHECK_MSG(listed >= 8 && listed <= 10 && listed + rest == dropped, "listed %zu, more %zu",
              listed, rest);
    CHECK(strlen(g4q_ctx_error(&ctx)) < G4Q_ERR_MSG_MAX - 1);
    free(t);
    free(s);

    /* Text-only config given a ConditionalGeneration checkpoint: the prefix is named. */
    g4q_config *tc = load_config("gemma4_tinytext_config.json");
    t = make_tensors((s = expected(c, G4Q_ORDER_FILE, &n)), n, 0);
    CHECK_STATUS(bind(tc, t, n, w, &ctx), G4Q_ERR_FORMAT);
    expect_msg(&ctx, "start with 'model.'", "weight problems");
    free(t);
    free(s);
    /* Multimodal tensors without vision/audio configs. */
    t = make_tensors((s = expected(c, G4Q_ORDER_MODULE, &n)), n, 0);
    g4q_config *nomm = load_config("gemma4_tiny_config.json");
    nomm->has_vision = nomm->has_audio = nomm->has_multimodal = 0;
    CHECK_STATUS(bind(nomm, t, n, w, &ctx), G4Q_ERR_FORMAT);
    expect_msg(&ctx, "model.vision_embedder.pos_embedding", "no vision_config/audio_config");
    free(t);
    free(s);
    free(nomm);
    free(tc);
    free(w);
    free(c);
}

/* Random configs: the expected count matches the list, names are unique, binding round-trips. */
static void test_random_layouts(uint64_t *rng)
{
    g4q_config *c = load_config("gemma4_tiny_config.json");
    static const int sizes[] = {1, 2, 5, 6, 7, 11, 12, 13, 17, 48, 127, 129, 256};
    for (size_t it = 0; it < sizeof sizes / sizeof sizes[0]; it++) {
        c->n_layers = sizes[it];
        for (int L = 0; L < c->n_layers; L++) {
            int full = (L % 6 == 5) || L == c->n_layers - 1;
            c->layers[L].type = full ? G4Q_LAYER_FULL : G4Q_LAYER_SLIDING;
            c->layers[L].head_dim = full ? 64 : 32;
            c->layers[L].n_kv_heads = full ? 1 : 2;
            c->layers[L].has_v_proj = !full || (g4q_test_rand(rng) & 1);
        }
        size_t n;
        g4q_weight_spec *s = expected(c, G4Q_ORDER_FILE, &n);
        for (size_t i = 1; i < n; i++)
            CHECK(strcmp(s[i - 1].name, s[i].name) < 0);
        g4q_tensor *t = make_tensors(s, n, 0);
        g4q_weights *w = malloc(sizeof *w);
        g4q_ctx ctx;
        CHECK_STATUS(bind(c, t, n, w, &ctx), G4Q_OK);
        for (int L = 0; L < c->n_layers; L++)
            CHECK((w->layers[L].v_proj != NULL) == c->layers[L].has_v_proj);
        free(w);
        free(t);
        free(s);
    }
    free(c);
}

int main(void)
{
    uint64_t rng = g4q_test_seed();
    test_12b_counts();
    compare_names("gemma4_tiny_config.json", "gemma4_tiny_names.txt");
    compare_names("gemma4_tinytext_config.json", "gemma4_tinytext_names.txt");
    test_bind_ok("gemma4_12b_config.json", &rng);
    test_bind_ok("gemma4_tiny_config.json", &rng);
    test_bind_ok("gemma4_tinytext_config.json", &rng);
    test_bind_problems(&rng);
    test_random_layouts(&rng);
    return g4q_test_finish();
}
