/* Tests of src/base: status table, arenas, SHA-256, bf16/f16 conversion, output directories. */
#include <math.h>
#include <string.h>

#include "base/arena.h"
#include "base/bf16.h"
#include "base/outdir.h"
#include "base/sha256.h"
#include "base/sys.h"
#include "testutil.h"

static void test_status(void)
{
    CHECK(strcmp(g4q_status_name(G4Q_OK), "G4Q_OK") == 0);
    CHECK(strcmp(g4q_status_name(G4Q_ERR_FORMAT), "G4Q_ERR_FORMAT") == 0);
    CHECK_EQ_INT(g4q_status_exit_code(G4Q_OK), 0);
    for (int s = 1; s < G4Q_STATUS_COUNT; s++)
        CHECK_MSG(g4q_status_exit_code((g4q_status)s) != 0, "%s exits 0", g4q_status_name(s));
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_status st = g4q_fail(&ctx, G4Q_ERR_SHAPE, "%s: tensor '%s'", "f.safetensors", "w");
    CHECK_STATUS(st, G4Q_ERR_SHAPE);
    CHECK(strcmp(g4q_ctx_error(&ctx), "f.safetensors: tensor 'w'") == 0);
    g4q_error_prefix(&ctx, "loading %s", "model");
    CHECK(strcmp(g4q_ctx_error(&ctx), "loading model: f.safetensors: tensor 'w'") == 0);
}

static void test_arena(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_arena a;
    CHECK_STATUS(g4q_arena_init(&ctx, &a, "test", 1000), G4Q_OK);
    char *p = g4q_arena_alloc(&a, 10, 1);
    double *d = g4q_arena_alloc(&a, sizeof(double) * 4, _Alignof(double));
    CHECK(p && d);
    CHECK(((uintptr_t)d % _Alignof(double)) == 0);
    size_t mark = g4q_arena_mark(&a);
    CHECK(g4q_arena_alloc(&a, 900, 1) != NULL);
    size_t peak = a.peak;
    g4q_arena_rewind(&a, mark);
    CHECK(a.used == mark);
    CHECK(a.peak == peak);
    CHECK(g4q_arena_alloc(&a, 2000, 1) == NULL);
    void *q;
    CHECK_STATUS(g4q_arena_take(&ctx, &a, 5000, 8, &q), G4Q_ERR_NOMEM);
    CHECK(strstr(g4q_ctx_error(&ctx), "test") != NULL);
    g4q_arena_free(&a);
    g4q_arena_free(NULL);
}

static void test_sha256(void)
{
    char hex[G4Q_SHA256_HEX];
    g4q_sha256_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    /* Incremental updates give the same digest as one call. */
    g4q_sha256 h;
    g4q_sha256_init(&h);
    g4q_sha256_update(&h, "a", 1);
    g4q_sha256_update(&h, "bc", 2);
    char hex2[G4Q_SHA256_HEX];
    g4q_sha256_final(&h, NULL, hex2);
    CHECK(strcmp(hex, hex2) == 0);
}

static void test_halves(void)
{
    uint64_t rng = g4q_test_seed();
    CHECK_EQ_INT(g4q_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(g4q_f32_to_bf16(g4q_bits_f32(0x3f808000u)), 0x3f80); /* tie -> even */
    CHECK_EQ_INT(g4q_f32_to_bf16(g4q_bits_f32(0x3f818000u)), 0x3f82); /* tie -> even (up) */
    CHECK_EQ_INT(g4q_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ_INT(g4q_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_INT(g4q_f32_to_f16(1e6f), 0x7c00);
    CHECK_EQ_INT(g4q_f32_to_f16(g4q_bits_f32(0x33800000u)), 0x0001); /* 2^-24 */
    /* Every f16 value converts to f32 and back unchanged. */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff))
            continue; /* NaN */
        if (g4q_f32_to_f16(g4q_f16_to_f32((uint16_t)h)) != h)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* Random floats: the f16 rounding is the nearest representable value. */
    bad = 0;
    for (int i = 0; i < 100000; i++) {
        float x = (float)(g4q_test_normal(&rng) * pow(2.0, (double)(g4q_test_rand(&rng) % 30) - 20));
        uint16_t h = g4q_f32_to_f16(x);
        double err = fabs((double)g4q_f16_to_f32(h) - x);
        double e1 = fabs((double)g4q_f16_to_f32((uint16_t)(h + 1)) - x);
        double e2 = (h & 0x7fff) ? fabs((double)g4q_f16_to_f32((uint16_t)(h - 1)) - x) : INFINITY;
        if (fabs(x) < 65504 && (err > e1 || err > e2))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_outdir(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char dir[4096], out[4200], file[4400];
    g4q_test_tmpdir(dir, sizeof dir, "outdir");
    snprintf(out, sizeof out, "%s/OUT", dir);
    g4q_outdir od;
    CHECK_STATUS(g4q_outdir_begin(&ctx, &od, out, 0), G4Q_OK);
    CHECK_STATUS(g4q_outdir_path(&ctx, &od, "a.txt", file, sizeof file), G4Q_OK);
    CHECK_STATUS(g4q_write_file(&ctx, file, "x", 1), G4Q_OK);
    CHECK(!g4q_path_exists(out));
    g4q_outdir_abort(&od);
    CHECK(!g4q_path_exists(od.partial_path));
    CHECK(!g4q_path_exists(out));
    CHECK_STATUS(g4q_outdir_begin(&ctx, &od, out, 0), G4Q_OK);
    CHECK_STATUS(g4q_outdir_commit(&ctx, &od), G4Q_OK);
    CHECK(g4q_is_dir(out));
    CHECK_STATUS(g4q_outdir_begin(&ctx, &od, out, 0), G4Q_ERR_EXISTS);
    CHECK_STATUS(g4q_remove_tree(&ctx, dir), G4Q_OK);
}

int main(void)
{
    test_status();
    test_arena();
    test_sha256();
    test_halves();
    test_outdir();
    return g4q_test_finish();
}
