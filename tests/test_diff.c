/* Export diff (export/diff.h): two small checkpoints written here, with planted differences whose
 * effect is computed independently (by hand from the E2M1/E4M3 tables of formats.md §1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/bf16.h"
#include "base/sys.h"
#include "export/diff.h"
#include "quant/codecs.h"
#include "quant/quant.h"
#include "testutil.h"

typedef struct tensor_spec {
    const char *name;
    g4q_dtype dtype;
    int ndim;
    int64_t shape[2];
    const void *data;
    size_t nbytes;
} tensor_spec;

static void write_ckpt(g4q_ctx *ctx, const char *dir, const tensor_spec *t, int n,
                       const char *config)
{
    g4q_st_writer *w = NULL;
    CHECK_STATUS(g4q_mkdir_p(ctx, dir), G4Q_OK);
    CHECK_STATUS(g4q_stw_create(ctx, dir, NULL, &w), G4Q_OK);
    for (int i = 0; i < n; i++)
        CHECK_STATUS(g4q_stw_declare(w, t[i].name, t[i].dtype, t[i].ndim, t[i].shape, NULL),
                     G4Q_OK);
    CHECK_STATUS(g4q_stw_begin(w), G4Q_OK);
    for (int i = 0; i < n; i++)
        CHECK_STATUS(g4q_stw_write(w, (size_t)i, 0, t[i].data, t[i].nbytes), G4Q_OK);
    CHECK_STATUS(g4q_stw_finish(w), G4Q_OK);
    g4q_stw_free(w);
    char path[4096];
    CHECK_STATUS(g4q_path_join(ctx, path, sizeof path, dir, "config.json"), G4Q_OK);
    CHECK_STATUS(g4q_write_file(ctx, path, config, strlen(config)), G4Q_OK);
}

/* A: NVFP4 module m (ModelOpt layout) + a BF16 tensor + a tensor only in A.
 * B: the same module with one nibble and one block scale changed, the BF16 tensor as F32 (a
 * dtype mismatch), and a tensor only in B. Sizes sweep awkward row counts. */
static void test_dirs(g4q_ctx *ctx, uint64_t *rng, int64_t rows, int64_t cols)
{
    size_t n = (size_t)(rows * cols);
    uint16_t *w = malloc(n * 2);
    uint8_t *pa = malloc(n / 2), *pb = malloc(n / 2), *sa = malloc(n / 16), *sb = malloc(n / 16);
    float wsf2, amax, f32v[4] = {1, 2, 3, 4};
    uint16_t bf[4] = {0x3f80, 0x4000, 0x4040, 0x4080};
    for (size_t i = 0; i < n; i++)
        w[i] = g4q_f32_to_bf16((float)g4q_test_normal(rng));
    CHECK_STATUS(g4q_quant_amax_bf16(ctx, "w", w, n, &amax), G4Q_OK);
    CHECK_STATUS(g4q_nvfp4_quantize(ctx, "w", w, rows, cols, amax, G4Q_SCALE_MAX, pa, sa, &wsf2),
                 G4Q_OK);
    memcpy(pb, pa, n / 2);
    memcpy(sb, sa, n / 16);
    /* Plant: element (r, 2j) low nibble -> code 7 (6.0) in B; block scale of row r2, block 0. */
    /* j >= 8: the changed element lies outside block 0, whose scale is the other plant. */
    int64_t r = (int64_t)(g4q_test_rand(rng) % (uint64_t)rows);
    int64_t j = 8 + (int64_t)(g4q_test_rand(rng) % (uint64_t)(cols / 2 - 8));
    int64_t r2 = (r + 1) % rows;
    uint8_t old_nib = pa[r * cols / 2 + j] & 15u, new_nib = old_nib == 7u ? 0u : 7u;
    pb[r * cols / 2 + j] = (uint8_t)((pa[r * cols / 2 + j] & 0xF0u) | new_nib);
    sb[r2 * cols / 16] = (uint8_t)(sa[r2 * cols / 16] == 0x38 ? 0x40 : 0x38);
    /* Expected largest dequantized difference, from the tables. */
    double s_elem = g4q_e4m3_decode(sa[r * cols / 16 + (2 * j) / 16]) * (double)wsf2;
    double d1 = fabs((g4q_e2m1_decode(new_nib) - g4q_e2m1_decode(old_nib)) * s_elem);
    double d2 = 0.0, sa2 = g4q_e4m3_decode(sa[r2 * cols / 16]);
    double sb2 = g4q_e4m3_decode(sb[r2 * cols / 16]);
    for (int k = 0; k < 16; k++) {
        uint8_t byte = pa[r2 * cols / 2 + k / 2];
        uint8_t nib = (uint8_t)((k & 1) ? byte >> 4 : byte & 15u);
        double d = fabs(g4q_e2m1_decode(nib) * (sa2 - sb2) * (double)wsf2);
        d2 = d > d2 ? d : d2;
    }
    double want = d1 > d2 ? d1 : d2;

    tensor_spec ta[] = {
        {"m.weight", G4Q_DT_U8, 2, {rows, cols / 2}, pa, n / 2},
        {"m.weight_scale", G4Q_DT_F8_E4M3, 2, {rows, cols / 16}, sa, n / 16},
        {"m.weight_scale_2", G4Q_DT_F32, 0, {0, 0}, &wsf2, 4},
        {"norm.weight", G4Q_DT_BF16, 1, {4, 0}, bf, 8},
        {"only_a", G4Q_DT_F32, 1, {4, 0}, f32v, 16},
    };
    tensor_spec tb[] = {
        {"m.weight", G4Q_DT_U8, 2, {rows, cols / 2}, pb, n / 2},
        {"m.weight_scale", G4Q_DT_F8_E4M3, 2, {rows, cols / 16}, sb, n / 16},
        {"m.weight_scale_2", G4Q_DT_F32, 0, {0, 0}, &wsf2, 4},
        {"norm.weight", G4Q_DT_F32, 1, {4, 0}, f32v, 16},
        {"only_b", G4Q_DT_F32, 1, {4, 0}, f32v, 16},
    };
    char da[4096], db[4096];
    g4q_test_tmpdir(da, sizeof da, "diff_a");
    g4q_test_tmpdir(db, sizeof db, "diff_b");
    write_ckpt(ctx, da, ta, 5,
               "{\"quantization_config\": {\"quant_algo\": \"NVFP4\", \"ignore\": [\"lm_head\"], "
               "\"producer\": {\"name\": \"x\"}}}");
    write_ckpt(ctx, db, tb, 5,
               "{\"quantization_config\": {\"quant_algo\": \"NVFP4\", \"ignore\": [\"lm_head\", "
               "\"y\"], \"producer\": {\"name\": \"z\"}, \"extra\": 1}}");
    g4q_diff_summary s;
    CHECK_STATUS(g4q_diff_dirs(ctx, da, db, NULL, &s), G4Q_OK);
    CHECK_EQ_INT(s.common, 4);
    CHECK_EQ_INT(s.only_a, 1);
    CHECK_EQ_INT(s.only_b, 1);
    CHECK_EQ_INT(s.mismatched, 1);
    CHECK_EQ_INT(s.identical, 1); /* weight_scale_2 */
    CHECK_EQ_INT(s.different, 2);
    CHECK_EQ_INT(s.bytes_different, 2);
    CHECK_EQ_INT(s.modules_compared, 1);
    CHECK_MSG(fabs(s.max_dequant_diff - want) <= 1e-6 * want + 1e-30,
              "rows %lld: max dequant diff %.9g, expected %.9g", (long long)rows,
              s.max_dequant_diff, want);
    /* ignore (array length), producer.name, extra. */
    CHECK_EQ_INT(s.json_differences, 3);

    /* A folder against itself: no differences at all. */
    CHECK_STATUS(g4q_diff_dirs(ctx, da, da, NULL, &s), G4Q_OK);
    CHECK_EQ_INT(s.identical, 5);
    CHECK(s.different == 0 && s.mismatched == 0 && s.only_a == 0 && s.only_b == 0);
    CHECK(s.modules_compared == 0 && s.json_differences == 0);
    free(w);
    free(pa);
    free(pb);
    free(sa);
    free(sb);
}

static void test_json(void)
{
    cJSON *a = cJSON_Parse("{\"a\": 1, \"b\": [1, 2, {\"c\": null}], \"d\": \"x\", \"e\": 2.0}");
    cJSON *b = cJSON_Parse("{\"a\": 1.0, \"b\": [1, 3, {\"c\": false}], \"f\": true, \"e\": 2}");
    /* b[1], b[2].c, d only in A, f only in B; a and e equal as numbers. */
    CHECK_EQ_INT(g4q_diff_json(a, b, "root", NULL), 4);
    CHECK_EQ_INT(g4q_diff_json(a, a, "root", NULL), 0);
    CHECK_EQ_INT(g4q_diff_json(a, NULL, "root", NULL), 1);
    CHECK_EQ_INT(g4q_diff_json(NULL, NULL, "root", NULL), 0);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

static void test_missing_dir(g4q_ctx *ctx)
{
    g4q_diff_summary s;
    char d[4096];
    g4q_test_tmpdir(d, sizeof d, "diff_missing");
    strncat(d, "/nope", sizeof d - strlen(d) - 1);
    CHECK(g4q_diff_dirs(ctx, d, d, NULL, &s) != G4Q_OK);
}

int main(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed();
    static const int64_t rows[] = {1, 7, 17, 129};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        test_dirs(&ctx, &rng, rows[i], i % 2 ? 48 : 160);
    test_json();
    test_missing_dir(&ctx);
    return g4q_test_finish();
}
