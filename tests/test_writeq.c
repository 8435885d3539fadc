/* The export's write queue (src/export/writeq.h): every byte and hash as a plain sequential write
 * gives them, whatever the thread count and in-flight limit; NaN refused by name; an error stops
 * the queue, frees what it owned and runs every done callback. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/sha256.h"
#include "export/writeq.h"
#include "io/safetensors.h"
#include "testutil.h"

enum { N_TENSORS = 40 };

static atomic_int g_done;
static void count_done(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_done, 1);
}

/* Writes N_TENSORS random tensors through a queue, reads them back, compares bytes and hashes. */
static void test_roundtrip(int threads, uint64_t max_inflight, uint64_t shard_bytes)
{
    char dir[4096], tag[64];
    snprintf(tag, sizeof tag, "writeq-%d-%llu", threads, (unsigned long long)max_inflight);
    g4q_test_tmpdir(dir, sizeof dir, tag);
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() + (uint64_t)threads * 131 + max_inflight;
    unsigned char *data[N_TENSORS];
    size_t len[N_TENSORS];
    char hash[N_TENSORS][G4Q_SHA256_HEX], want[G4Q_SHA256_HEX];
    g4q_st_writer *w;
    g4q_st_writer_opts o = {.shard_bytes = shard_bytes};
    CHECK_STATUS(g4q_stw_create(&ctx, dir, &o, &w), G4Q_OK);
    for (int i = 0; i < N_TENSORS; i++) {
        len[i] = 2 * (size_t)(g4q_test_rand(&rng) % 40000); /* BF16 elements, some empty */
        data[i] = malloc(len[i] ? len[i] : 1);
        uint16_t *v = (uint16_t *)data[i];
        for (size_t k = 0; k < len[i] / 2; k++)
            v[k] = (uint16_t)(g4q_test_rand(&rng) & 0x3fffu); /* finite */
        char name[32];
        snprintf(name, sizeof name, "t%02d", i);
        int64_t shape[1] = {(int64_t)(len[i] / 2)};
        CHECK_STATUS(g4q_stw_declare(w, name, G4Q_DT_BF16, 1, shape, NULL), G4Q_OK);
    }
    CHECK_STATUS(g4q_stw_begin(w), G4Q_OK);
    g4q_writeq *q;
    atomic_store(&g_done, 0);
    if (!CHECK_STATUS(g4q_writeq_create(&ctx, w, threads, max_inflight, &q), G4Q_OK)) return;
    for (int i = 0; i < N_TENSORS; i++) {
        /* odd tensors: the queue owns a copy; even ones: the caller keeps data */
        unsigned char *copy = NULL;
        if (i % 2) {
            copy = malloc(len[i] ? len[i] : 1);
            memcpy(copy, data[i], len[i]);
        }
        g4q_writeq_job j = {.index = (size_t)i, .data = copy ? copy : data[i], .nbytes = len[i],
                            .hash_hex = hash[i], .owned = copy,
                            .check_bf16 = i % 3 == 0 ? "checked" : NULL, .done = count_done};
        CHECK_STATUS(g4q_writeq_put(q, &j), G4Q_OK);
    }
    CHECK_STATUS(g4q_writeq_finish(q), G4Q_OK);
    g4q_writeq_free(q);
    CHECK_EQ_INT(atomic_load(&g_done), N_TENSORS);
    CHECK_STATUS(g4q_stw_finish(w), G4Q_OK);
    g4q_stw_free(w);
    g4q_ckpt *c;
    if (!CHECK_STATUS(g4q_ckpt_open(&ctx, dir, &c), G4Q_OK)) return;
    int bad_bytes = 0, bad_hash = 0;
    for (int i = 0; i < N_TENSORS; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%02d", i);
        const g4q_tensor *t = g4q_ckpt_find(c, name);
        bad_bytes += !t || t->nbytes != len[i] || (len[i] && memcmp(t->data, data[i], len[i]));
        g4q_sha256_hex(data[i], len[i], want);
        bad_hash += strcmp(want, hash[i]) != 0;
        free(data[i]);
    }
    CHECK_MSG(!bad_bytes, "threads %d, limit %llu: %d tensors differ", threads,
              (unsigned long long)max_inflight, bad_bytes);
    CHECK_MSG(!bad_hash, "threads %d, limit %llu: %d hashes differ", threads,
              (unsigned long long)max_inflight, bad_hash);
    g4q_ckpt_close(c);
}

/* A NaN in a checked job fails the queue with the job's name; later puts fail, and every owned
 * buffer is freed and every done callback run all the same. */
static void test_nan_stops(void)
{
    char dir[4096];
    g4q_test_tmpdir(dir, sizeof dir, "writeq-nan");
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_st_writer *w;
    CHECK_STATUS(g4q_stw_create(&ctx, dir, NULL, &w), G4Q_OK);
    int64_t shape[1] = {1000};
    for (int i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        CHECK_STATUS(g4q_stw_declare(w, name, G4Q_DT_BF16, 1, shape, NULL), G4Q_OK);
    }
    CHECK_STATUS(g4q_stw_begin(w), G4Q_OK);
    g4q_writeq *q;
    atomic_store(&g_done, 0);
    if (!CHECK_STATUS(g4q_writeq_create(&ctx, w, 2, 0, &q), G4Q_OK)) return;
    uint16_t *bad = calloc(1000, 2);
    bad[617] = 0x7fc1; /* NaN */
    g4q_writeq_job j = {.index = 0, .data = bad, .nbytes = 2000, .owned = bad,
                        .check_bf16 = "model.layers.0.mlp.up_proj.weight", .done = count_done};
    CHECK_STATUS(g4q_writeq_put(q, &j), G4Q_OK);
    g4q_status st = G4Q_OK;
    int put = 1;
    for (int i = 1; i < 8 && st == G4Q_OK; i++, put++) {
        uint16_t *ok = calloc(1000, 2);
        g4q_writeq_job k = {.index = (size_t)i, .data = ok, .nbytes = 2000, .owned = ok,
                            .done = count_done};
        st = g4q_writeq_put(q, &k);
    }
    if (st == G4Q_OK) st = g4q_writeq_finish(q);
    CHECK_STATUS(st, G4Q_ERR_NUMERIC);
    CHECK_MSG(strstr(g4q_ctx_error(&ctx), "up_proj") && strstr(g4q_ctx_error(&ctx), "617"),
              "message: %s", g4q_ctx_error(&ctx));
    g4q_writeq_free(q);
    CHECK_EQ_INT(atomic_load(&g_done), put);
    CHECK_STATUS(g4q_stw_finish(w), G4Q_ERR_INVALID); /* marked failed */
    g4q_stw_free(w);
}

/* A claim the writer refuses (a tensor written twice) fails at put, on the caller's thread. */
static void test_claim_refused(void)
{
    char dir[4096];
    g4q_test_tmpdir(dir, sizeof dir, "writeq-claim");
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_st_writer *w;
    CHECK_STATUS(g4q_stw_create(&ctx, dir, NULL, &w), G4Q_OK);
    int64_t shape[1] = {16};
    CHECK_STATUS(g4q_stw_declare(w, "only", G4Q_DT_U8, 1, shape, NULL), G4Q_OK);
    CHECK_STATUS(g4q_stw_begin(w), G4Q_OK);
    g4q_writeq *q;
    atomic_store(&g_done, 0);
    if (!CHECK_STATUS(g4q_writeq_create(&ctx, w, 1, 0, &q), G4Q_OK)) return;
    unsigned char b[16] = {1, 2, 3};
    g4q_writeq_job j = {.index = 0, .data = b, .nbytes = 16, .done = count_done};
    CHECK_STATUS(g4q_writeq_put(q, &j), G4Q_OK);
    CHECK_STATUS(g4q_writeq_put(q, &j), G4Q_ERR_INVALID);
    CHECK_MSG(strstr(g4q_ctx_error(&ctx), "written twice"), "message: %s", g4q_ctx_error(&ctx));
    j.index = 5;
    CHECK_STATUS(g4q_writeq_put(q, &j), G4Q_ERR_INVALID);
    CHECK_STATUS(g4q_writeq_finish(q), G4Q_OK);
    g4q_writeq_free(q);
    CHECK_EQ_INT(atomic_load(&g_done), 3);
    CHECK_STATUS(g4q_stw_finish(w), G4Q_OK);
    g4q_stw_free(w);
}

int main(void)
{
    test_roundtrip(1, 0, 0);
    test_roundtrip(4, 0, 0);
    test_roundtrip(3, 50000, 200000); /* most puts wait for room; several shards */
    test_roundtrip(8, 1, 0);          /* one job at a time */
    test_nan_stops();
    test_claim_refused();
    return g4q_test_finish();
}
