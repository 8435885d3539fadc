/*
 * Tests of src/io/safetensors: writer -> reader round trips (single file and shards, every dtype,
 * scalars, empty tensors, random data in random write order), checkpoint folders, release(), and
 * hostile inputs that must each fail with a specific status and a message naming the file and
 * tensor.
 *
 * Extra modes for the Python cross-check (tests/cli_safetensors_python.sh):
 *   test_safetensors --write-sample DIR   writes a sharded sample checkpoint and lists it
 *   test_safetensors --list FILE_OR_DIR   lists a file or checkpoint
 * A listing has one line per tensor, "tensor NAME DTYPE [d0,d1] SHA256", and one per metadata
 * entry, "meta KEY VALUE".
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sha256.h"
#include "base/sys.h"
#include "io/safetensors.h"
#include "testutil.h"

#define LABEL "hostile.safetensors"

/* ---- helpers ---- */

static void write_bytes(const char *path, const void *data, size_t n)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    if (g4q_write_file(&ctx, path, data, n) != G4Q_OK) {
        fprintf(stderr, "%s\n", g4q_ctx_error(&ctx));
        exit(1);
    }
}

/* An image: u64 header length hlen, the JSON text, then ndata bytes of data. */
static unsigned char *make_image(uint64_t hlen, const char *json, size_t ndata, size_t *len)
{
    size_t jn = strlen(json);
    *len = 8 + jn + ndata;
    unsigned char *p = malloc(*len + 1);
    for (int k = 0; k < 8; k++)
        p[k] = (unsigned char)(hlen >> (8 * k));
    memcpy(p + 8, json, jn);
    for (size_t i = 0; i < ndata; i++)
        p[8 + jn + i] = (unsigned char)(i * 37 + 11);
    return p;
}

static int contains(const char *hay, const char *needle)
{
    return needle == NULL || strstr(hay, needle) != NULL;
}

/* Opens an image in memory and checks the status and that the message names the file, the tensor
 * (when given) and a phrase (when given). */
static void expect_image(const char *what, const unsigned char *img, size_t len, g4q_status want,
                         const char *tensor, const char *phrase)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_st_file *f = (g4q_st_file *)&ctx; /* must be reset to NULL */
    g4q_status st = g4q_st_open_memory(&ctx, LABEL, img, len, &f);
    const char *msg = g4q_ctx_error(&ctx);
    CHECK_MSG(st == want, "%s: got %s, want %s (%s)", what, g4q_status_name(st),
              g4q_status_name(want), msg);
    if (want != G4Q_OK) {
        CHECK_MSG(f == NULL, "%s: handle not NULL on error", what);
        CHECK_MSG(contains(msg, LABEL), "%s: message does not name the file: %s", what, msg);
        char tn[300];
        snprintf(tn, sizeof tn, "tensor '%s'", tensor ? tensor : "");
        CHECK_MSG(!tensor || contains(msg, tn), "%s: message does not name %s: %s", what, tn,
                  msg);
        CHECK_MSG(contains(msg, phrase), "%s: message lacks '%s': %s", what, phrase, msg);
        if (getenv("G4Q_TEST_VERBOSE"))
            printf("  %-28s %s: %s\n", what, g4q_status_name(st), msg);
    }
    g4q_st_close(st == G4Q_OK ? f : NULL);
}

static void expect_json(const char *what, const char *json, size_t ndata, g4q_status want,
                        const char *tensor, const char *phrase)
{
    size_t len;
    unsigned char *img = make_image(strlen(json), json, ndata, &len);
    expect_image(what, img, len, want, tensor, phrase);
    free(img);
}

/* ---- round trips ---- */

typedef struct ref_tensor {
    char name[64];
    g4q_dtype dtype;
    int ndim;
    int64_t shape[G4Q_MAX_DIMS];
    uint64_t nbytes;
    unsigned char *data;
} ref_tensor;

static int make_refs(ref_tensor *r, int max, uint64_t *rng)
{
    static const int64_t sizes[] = {1, 7, 15, 17, 127, 129};
    int n = 0;
    for (int dt = 0; dt < G4Q_DT_COUNT; dt++) {
        for (int v = 0; v < 4 && n < max; v++) {
            ref_tensor *t = &r[n];
            memset(t, 0, sizeof *t);
            snprintf(t->name, sizeof t->name, "model.layers.%d.%s.v%d", n, g4q_dtype_name(dt), v);
            t->dtype = (g4q_dtype)dt;
            if (v == 0) {
                t->ndim = 0; /* scalar */
            } else if (v == 3 && dt % 3 == 0) {
                t->ndim = 2; /* empty */
                t->shape[0] = 0;
                t->shape[1] = 5;
            } else {
                t->ndim = 1 + (int)(g4q_test_rand(rng) % 3);
                for (int d = 0; d < t->ndim; d++)
                    t->shape[d] = sizes[g4q_test_rand(rng) % 6];
            }
            uint64_t numel = 1;
            for (int d = 0; d < t->ndim; d++)
                numel *= (uint64_t)t->shape[d];
            t->nbytes = numel * g4q_dtype_size(t->dtype);
            t->data = malloc(t->nbytes + 1);
            for (uint64_t k = 0; k < t->nbytes; k++)
                t->data[k] = (unsigned char)g4q_test_rand(rng);
            n++;
        }
    }
    /* A name with non-ASCII UTF-8 and characters that JSON escapes. */
    ref_tensor *t = &r[n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "unicod\xc3\xa9.\xe2\x82\xac \"q\\\t");
    t->dtype = G4Q_DT_BF16;
    t->ndim = 1;
    t->shape[0] = 3;
    t->nbytes = 6;
    t->data = malloc(6);
    for (int k = 0; k < 6; k++)
        t->data[k] = (unsigned char)g4q_test_rand(rng);
    return n;
}

/* Writes the refs, each in random-sized chunks in a random order. */
static g4q_status write_refs(g4q_ctx *ctx, const char *dir, uint64_t shard_bytes,
                             const ref_tensor *r, int n, uint64_t *rng)
{
    const char *kv[] = {"producer", "gemma4q test", "quote\"key", "line\nvalue", NULL};
    g4q_st_writer_opts o = {.shard_bytes = shard_bytes, .metadata_kv = kv};
    g4q_st_writer *w;
    G4Q_TRY(g4q_stw_create(ctx, dir, &o, &w));
    g4q_status st = G4Q_OK;
    for (int i = 0; i < n && st == G4Q_OK; i++) {
        size_t idx = 99;
        st = g4q_stw_declare(w, r[i].name, r[i].dtype, r[i].ndim, r[i].shape, &idx);
        CHECK_EQ_INT(idx, i);
    }
    if (st == G4Q_OK)
        st = g4q_stw_begin(w);
    /* Tensors in reverse order; within each, chunks back to front. */
    for (int i = n - 1; i >= 0 && st == G4Q_OK; i--) {
        uint64_t end = r[i].nbytes;
        while (end > 0 && st == G4Q_OK) {
            uint64_t len = 1 + g4q_test_rand(rng) % 64;
            uint64_t b = end > len ? end - len : 0;
            st = g4q_stw_write(w, (size_t)i, b, r[i].data + b, end - b);
            end = b;
        }
    }
    if (st == G4Q_OK)
        st = g4q_stw_finish(w);
    g4q_stw_free(w);
    return st;
}

static void check_ckpt_against(const g4q_ckpt *c, const ref_tensor *r, int n, const char *what)
{
    CHECK_EQ_INT(g4q_ckpt_count(c), n);
    uint64_t total = 0;
    const g4q_tensor *all = g4q_ckpt_tensor(c, 0);
    for (size_t i = 0; i < g4q_ckpt_count(c); i++)
        CHECK(g4q_ckpt_tensor(c, i) == &all[i]); /* one contiguous array */
    CHECK(g4q_ckpt_tensor(c, g4q_ckpt_count(c)) == NULL);
    for (int i = 0; i < n; i++) {
        const g4q_tensor *t = g4q_ckpt_find(c, r[i].name);
        if (!CHECK_MSG(t != NULL, "%s: tensor '%s' not found", what, r[i].name))
            continue;
        CHECK(strcmp(t->name, r[i].name) == 0);
        CHECK_EQ_INT(t->dtype, r[i].dtype);
        CHECK_EQ_INT(t->ndim, r[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            CHECK_EQ_INT(t->shape[d], r[i].shape[d]);
        CHECK_EQ_INT(t->nbytes, r[i].nbytes);
        CHECK_EQ_INT(t->numel * g4q_dtype_size(t->dtype), t->nbytes);
        CHECK_MSG(t->nbytes == 0 || memcmp(t->data, r[i].data, t->nbytes) == 0,
                  "%s: tensor '%s' data differ", what, r[i].name);
        const g4q_st_file *f = g4q_ckpt_file(c, (size_t)t->file);
        CHECK(f != NULL && (const unsigned char *)t->data ==
                               (const unsigned char *)g4q_st_tensor(f, 0)->data -
                                   g4q_st_tensor(f, 0)->file_offset + t->file_offset);
        CHECK(g4q_st_find(f, r[i].name) != NULL);
        total += r[i].nbytes;
    }
    CHECK_EQ_INT(g4q_ckpt_data_bytes(c), total);
    CHECK(g4q_ckpt_find(c, "no.such.tensor") == NULL);
    CHECK(g4q_ckpt_find(c, "") == NULL);
    for (size_t s = 0; s < g4q_ckpt_file_count(c); s++) {
        const g4q_st_file *f = g4q_ckpt_file(c, s);
        const char *fmt = g4q_st_metadata(f, "format");
        CHECK(fmt && strcmp(fmt, "pt") == 0);
        CHECK(strcmp(g4q_st_metadata_key(f, 0), "format") == 0);
        const char *p = g4q_st_metadata(f, "producer");
        CHECK(p && strcmp(p, "gemma4q test") == 0);
        p = g4q_st_metadata(f, "quote\"key");
        CHECK(p && strcmp(p, "line\nvalue") == 0);
        CHECK(g4q_st_metadata(f, "absent") == NULL);
        CHECK_EQ_INT(g4q_st_metadata_count(f), 3);
        /* Data offset order within the file; data start 8-byte aligned. */
        for (size_t i = 1; i < g4q_st_count(f); i++)
            CHECK(g4q_st_tensor(f, i)->file_offset >= g4q_st_tensor(f, i - 1)->file_offset);
        if (g4q_st_count(f))
            CHECK(g4q_st_tensor(f, 0)->file_offset % 8 == 0);
    }
}

static void test_roundtrip(uint64_t shard_bytes, const char *tag)
{
    uint64_t rng = g4q_test_seed() ^ shard_bytes;
    ref_tensor r[40];
    int n = make_refs(r, 39, &rng);
    char dir[4096];
    g4q_test_tmpdir(dir, sizeof dir, tag);
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    CHECK_STATUS(write_refs(&ctx, dir, shard_bytes, r, n, &rng), G4Q_OK);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    int sharded = g4q_path_exists(path);
    CHECK_EQ_INT(sharded, shard_bytes != 0);
    g4q_ckpt *c = NULL;
    if (CHECK_STATUS(g4q_ckpt_open(&ctx, dir, &c), G4Q_OK)) {
        check_ckpt_against(c, r, n, tag);
        if (shard_bytes) {
            CHECK(g4q_ckpt_file_count(c) > 2);
            for (size_t s = 0; s < g4q_ckpt_file_count(c); s++) {
                const g4q_st_file *f = g4q_ckpt_file(c, s);
                uint64_t bytes = 0;
                size_t nonempty = 0;
                for (size_t i = 0; i < g4q_st_count(f); i++) {
                    bytes += g4q_st_tensor(f, i)->nbytes;
                    nonempty += g4q_st_tensor(f, i)->nbytes > 0;
                }
                CHECK_MSG(bytes <= shard_bytes || nonempty == 1,
                          "shard %zu holds %llu bytes", s, (unsigned long long)bytes);
                char want[64];
                snprintf(want, sizeof want, "model-%05zu-of-%05zu.safetensors", s + 1,
                         g4q_ckpt_file_count(c));
                CHECK(contains(g4q_st_path(f), want));
            }
            /* The index's total_size is the data byte count. */
            char *text;
            size_t len;
            if (CHECK_STATUS(g4q_read_file(&ctx, path, 1 << 20, &text, &len), G4Q_OK)) {
                char want[64];
                snprintf(want, sizeof want, "\"total_size\": %llu",
                         (unsigned long long)g4q_ckpt_data_bytes(c));
                CHECK(contains(text, want));
                free(text);
            }
        } else {
            CHECK_EQ_INT(g4q_ckpt_file_count(c), 1);
        }
        /* release() drops pages but the data stay readable and unchanged. */
        for (size_t i = 0; i < g4q_ckpt_count(c); i++)
            g4q_ckpt_release(c, g4q_ckpt_tensor(c, i));
        check_ckpt_against(c, r, n, "after release");
        g4q_ckpt_release_all(c);
        check_ckpt_against(c, r, n, "after release_all");
        g4q_ckpt_close(c);
    } else {
        printf("  %s\n", g4q_ctx_error(&ctx));
    }
    for (int i = 0; i < n; i++)
        free(r[i].data);
    g4q_ckpt_close(NULL);
    g4q_st_close(NULL);
    g4q_stw_free(NULL);
}

/* A 4 MB tensor: release() really drops pages (RSS falls) and the data come back intact. */
static void test_release_big(void)
{
    char dir[4096];
    g4q_test_tmpdir(dir, sizeof dir, "st-release");
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    uint64_t rng = g4q_test_seed() + 7;
    size_t n = 4u << 20;
    unsigned char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)g4q_test_rand(&rng);
    g4q_st_writer *w;
    CHECK_STATUS(g4q_stw_create(&ctx, dir, NULL, &w), G4Q_OK);
    int64_t shape[1] = {(int64_t)n};
    CHECK_STATUS(g4q_stw_declare(w, "big", G4Q_DT_U8, 1, shape, NULL), G4Q_OK);
    CHECK_STATUS(g4q_stw_begin(w), G4Q_OK);
    CHECK_STATUS(g4q_stw_write(w, 0, 0, data, n), G4Q_OK);
    CHECK_STATUS(g4q_stw_finish(w), G4Q_OK);
    g4q_stw_free(w);
    g4q_ckpt *c;
    if (!CHECK_STATUS(g4q_ckpt_open(&ctx, dir, &c), G4Q_OK))
        return;
    const g4q_tensor *t = g4q_ckpt_find(c, "big");
    CHECK(memcmp(t->data, data, n) == 0);
    uint64_t before = g4q_rss_bytes();
    g4q_ckpt_release(c, t);
    uint64_t after = g4q_rss_bytes();
    CHECK_MSG(before == 0 || after + (2u << 20) < before, "RSS %llu -> %llu after release",
              (unsigned long long)before, (unsigned long long)after);
    CHECK(memcmp(t->data, data, n) == 0);
    /* release_all (one madvise per shard) drops them as well. */
    before = g4q_rss_bytes();
    g4q_ckpt_release_all(c);
    after = g4q_rss_bytes();
    CHECK_MSG(before == 0 || after + (2u << 20) < before, "RSS %llu -> %llu after release_all",
              (unsigned long long)before, (unsigned long long)after);
    CHECK(memcmp(t->data, data, n) == 0);
    g4q_ckpt_close(c);
    free(data);
}

/* ---- writer misuse ---- */

static void test_writer_errors(void)
{
    char dir[4096];
    g4q_test_tmpdir(dir, sizeof dir, "st-werr");
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_st_writer *w;
    int64_t shape[2] = {4, 3};
    const char *msg = g4q_ctx_error(&ctx);

    CHECK_STATUS(g4q_stw_create(&ctx, "/nonexistent/dir", NULL, &w), G4Q_ERR_NOT_FOUND);
    CHECK(w == NULL);

    /* Incomplete tensor at finish. */
    CHECK_STATUS(g4q_stw_create(&ctx, dir, NULL, &w), G4Q_OK);
    CHECK_STATUS(g4q_stw_declare(w, "a", G4Q_DT_F32, 2, shape, NULL), G4Q_OK);
    CHECK_STATUS(g4q_stw_declare(w, "b", G4Q_DT_I8, 2, shape, NULL), G4Q_OK);
    CHECK_STATUS(g4q_stw_declare(w, "", G4Q_DT_I8, 2, shape, NULL), G4Q_ERR_INVALID);
    CHECK_STATUS(g4q_stw_declare(w, "__metadata__", G4Q_DT_I8, 2, shape, NULL), G4Q_ERR_INVALID);
    CHECK_STATUS(g4q_stw_declare(w, "bad\xc0\xaf", G4Q_DT_I8, 2, shape, NULL), G4Q_ERR_INVALID);
    int64_t neg[1] = {-1};
    CHECK_STATUS(g4q_stw_declare(w, "neg", G4Q_DT_I8, 1, neg, NULL), G4Q_ERR_INVALID);
    CHECK_STATUS(g4q_stw_write(w, 0, 0, "x", 1), G4Q_ERR_INVALID); /* before begin */
    CHECK_STATUS(g4q_stw_begin(w), G4Q_OK);
    CHECK_STATUS(g4q_stw_declare(w, "late", G4Q_DT_I8, 2, shape, NULL), G4Q_ERR_INVALID);
    unsigned char buf[48] = {0};
    CHECK_STATUS(g4q_stw_write(w, 0, 0, buf, 48), G4Q_OK);
    CHECK_STATUS(g4q_stw_write(w, 0, 10, buf, 1), G4Q_ERR_INVALID); /* twice */
    CHECK(contains(msg, "tensor 'a'") && contains(msg, "twice"));
    CHECK_STATUS(g4q_stw_write(w, 1, 0, buf, 13), G4Q_ERR_INVALID); /* past the end */
    CHECK(contains(msg, "tensor 'b'") && contains(msg, "model.safetensors"));
    CHECK_STATUS(g4q_stw_write(w, 1, UINT64_MAX, buf, 2), G4Q_ERR_INVALID);
    CHECK_STATUS(g4q_stw_write(w, 2, 0, buf, 1), G4Q_ERR_INVALID); /* no such index */
    CHECK_STATUS(g4q_stw_write(w, 1, 4, buf, 4), G4Q_OK);
    CHECK_STATUS(g4q_stw_write(w, 1, 0, buf, 5), G4Q_ERR_INVALID); /* overlaps [4, 8) */
    CHECK_STATUS(g4q_stw_write(w, 1, 7, buf, 2), G4Q_ERR_INVALID);
    CHECK_STATUS(g4q_stw_write(w, 1, 9, buf, 3), G4Q_OK);
    CHECK_STATUS(g4q_stw_finish(w), G4Q_ERR_INVALID);
    CHECK(contains(msg, "tensor 'b'") && contains(msg, "7 of 12 bytes"));
    CHECK_STATUS(g4q_stw_write(w, 1, 0, buf, 4), G4Q_OK);
    CHECK_STATUS(g4q_stw_write(w, 1, 8, buf, 1), G4Q_OK);
    CHECK_STATUS(g4q_stw_finish(w), G4Q_OK);
    g4q_stw_free(w);

    /* Repeated names fail at begin; repeated metadata keys at create. */
    CHECK_STATUS(g4q_stw_create(&ctx, dir, NULL, &w), G4Q_OK);
    CHECK_STATUS(g4q_stw_declare(w, "x", G4Q_DT_F32, 2, shape, NULL), G4Q_OK);
    CHECK_STATUS(g4q_stw_declare(w, "x", G4Q_DT_F32, 0, NULL, NULL), G4Q_OK);
    CHECK_STATUS(g4q_stw_begin(w), G4Q_ERR_INVALID);
    CHECK(contains(msg, "'x'"));
    g4q_stw_free(w);
    const char *kv[] = {"k", "1", "k", "2", NULL};
    g4q_st_writer_opts o = {.metadata_kv = kv};
    CHECK_STATUS(g4q_stw_create(&ctx, dir, &o, &w), G4Q_ERR_INVALID);

    /* A full disk fails at begin: RLIMIT_FSIZE makes posix_fallocate fail with EFBIG. */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {1u << 20, old.rlim_max};
    if (setrlimit(RLIMIT_FSIZE, &small) == 0) {
        CHECK_STATUS(g4q_stw_create(&ctx, dir, NULL, &w), G4Q_OK);
        int64_t big[1] = {4 << 20};
        CHECK_STATUS(g4q_stw_declare(w, "big", G4Q_DT_U8, 1, big, NULL), G4Q_OK);
        CHECK_STATUS(g4q_stw_begin(w), G4Q_ERR_NOSPACE);
        CHECK_MSG(contains(msg, "model.safetensors"), "%s", msg);
        CHECK_STATUS(g4q_stw_write(w, 0, 0, buf, 1), G4Q_ERR_INVALID);
        g4q_stw_free(w);
        setrlimit(RLIMIT_FSIZE, &old);
    }
    signal(SIGXFSZ, prev);
}

/* ---- hostile files ---- */

static void test_utf8(void)
{
    static const char *good[] = {"", "abc", "\xc3\xa9", "\xe2\x82\xac", "\xef\xbf\xbf",
                                 "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf"};
    static const char *bad[] = {"\x80",         "\xc0\xaf",         "\xc1\xbf",
                                "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xed\xa0\x80",
                                "\xed\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
                                "\xff",         "\xc3",             "\xe2\x82",
                                "\xf0\x9f\x98", "\xc3\x28"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        CHECK_MSG(g4q_st_utf8_check(good[i], strlen(good[i])) == strlen(good[i]), "good %zu", i);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char s[16];
        snprintf(s, sizeof s, "ab%s", bad[i]);
        CHECK_MSG(g4q_st_utf8_check(s, strlen(s)) == 2, "bad %zu", i);
    }
}

/* One header entry as JSON text. */
#define E(name, dt, shape, off)                                                                    \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}"

static void test_hostile_header(void)
{
    size_t len;
    unsigned char *img;
    const char *ok = "{" E("w", "BF16", "[3,2]", "[0,12]") "}";
    expect_json("valid", ok, 12, G4Q_OK, NULL, NULL);
    expect_json("empty object", "{}", 0, G4Q_OK, NULL, NULL);
    expect_json("empty + trailing", "{}", 3, G4Q_ERR_FORMAT, NULL, "trailing");
    expect_json("padded", "{}      ", 0, G4Q_OK, NULL, NULL);

    /* Header length. */
    img = make_image(1, "{}", 0, &len);
    expect_image("length 1", img, len, G4Q_ERR_FORMAT, NULL, "too small");
    free(img);
    img = make_image(strlen(ok) + 13, ok, 12, &len);
    expect_image("length past file", img, len, G4Q_ERR_FORMAT, NULL, "past the end");
    free(img);
    img = make_image(UINT64_C(1) << 63, ok, 12, &len);
    expect_image("length 2^63", img, len, G4Q_ERR_FORMAT, NULL, "limit");
    free(img);
    img = make_image(UINT64_MAX, ok, 12, &len);
    expect_image("length 2^64-1", img, len, G4Q_ERR_FORMAT, NULL, "limit");
    free(img);
    for (size_t cut = 0; cut < 8; cut++) {
        img = make_image(strlen(ok), ok, 12, &len);
        expect_image("shorter than 8", img, cut, G4Q_ERR_FORMAT, NULL, "too short");
        free(img);
    }

    /* JSON shape. */
    expect_json("not JSON", "{\"w\":", 0, G4Q_ERR_FORMAT, NULL, "not valid JSON");
    expect_json("not JSON 2", "hello", 0, G4Q_ERR_FORMAT, NULL, "not valid JSON");
    expect_json("junk after JSON", "{} {}", 0, G4Q_ERR_FORMAT, NULL, "junk");
    expect_json("array", "[1,2]", 0, G4Q_ERR_FORMAT, NULL, "not a JSON object");
    expect_json("string", "\"abc\"", 0, G4Q_ERR_FORMAT, NULL, "not a JSON object");
    expect_json("NUL in header", "{\"a\x01\":1}", 0, G4Q_ERR_FORMAT, NULL, "control");
    expect_json("overlong name", "{\"w\xc0\xaf\":{}}", 0, G4Q_ERR_FORMAT, NULL, "UTF-8");
    expect_json("surrogate name", "{\"w\xed\xa0\x80\":{}}", 0, G4Q_ERR_FORMAT, NULL, "UTF-8");
    expect_json("> U+10FFFF name", "{\"w\xf4\x90\x80\x80\":{}}", 0, G4Q_ERR_FORMAT, NULL,
                "UTF-8");
    expect_json("bad escape surrogate", "{\"w\\ud800\":{}}", 0, G4Q_ERR_FORMAT, NULL, NULL);
    for (int depth = 900; depth <= 2000; depth += 1100) { /* below and above cJSON's limit */
        char *deep = malloc(2 * (size_t)depth + 16);
        if (!deep)
            break;
        size_t k = (size_t)sprintf(deep, "{\"w\":");
        for (int i = 0; i < depth; i++)
            deep[k++] = '[';
        for (int i = 0; i < depth; i++)
            deep[k++] = ']';
        strcpy(deep + k, "}");
        expect_json("deep nesting", deep, 0, G4Q_ERR_FORMAT, depth < 1000 ? "w" : NULL, NULL);
        free(deep);
    }
    expect_json("entry not object", "{\"w\":[1]}", 0, G4Q_ERR_FORMAT, "w", "not a JSON object");
}

/* Hostile tensor entries: dtype, shape, data_offsets, keys, metadata. */
static void test_hostile_entries(void)
{
    /* dtype. */
    expect_json("unknown dtype", "{" E("w", "F64", "[1]", "[0,8]") "}", 8, G4Q_ERR_UNSUPPORTED,
                "w", "F64");
    expect_json("dtype number", "{\"w\":{\"dtype\":1,\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                G4Q_ERR_FORMAT, "w", "dtype");
    expect_json("lowercase dtype", "{" E("w", "bf16", "[1]", "[0,2]") "}", 2,
                G4Q_ERR_UNSUPPORTED, "w", NULL);

    /* shape. */
    expect_json("negative dim", "{" E("w", "U8", "[-1]", "[0,0]") "}", 0, G4Q_ERR_FORMAT, "w",
                "dim 0");
    expect_json("fractional dim", "{" E("w", "U8", "[2,1.5]", "[0,3]") "}", 3, G4Q_ERR_FORMAT,
                "w", "dim 1");
    expect_json("huge dim", "{" E("w", "U8", "[1e300]", "[0,1]") "}", 1, G4Q_ERR_FORMAT, "w",
                "dim 0");
    expect_json("dim 2^64", "{" E("w", "U8", "[18446744073709551616]", "[0,1]") "}", 1,
                G4Q_ERR_FORMAT, "w", NULL);
    expect_json("numel overflow",
                "{" E("w", "F32", "[4294967296,4294967296,2]", "[0,8]") "}", 8, G4Q_ERR_FORMAT,
                "w", "2^64");
    expect_json("bytes overflow", "{" E("w", "I64", "[4294967296,536870912]", "[0,8]") "}", 8,
                G4Q_ERR_FORMAT, "w", "2^64");
    expect_json("zero dim beats overflow",
                "{" E("w", "F32", "[0,9007199254740992,9007199254740992]", "[0,0]") "}", 0,
                G4Q_OK, NULL, NULL);
    expect_json("too many dims", "{" E("w", "U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", 1,
                G4Q_ERR_UNSUPPORTED, "w", "dims");
    expect_json("shape not array", "{" E("w", "U8", "3", "[0,3]") "}", 3, G4Q_ERR_FORMAT, "w",
                "shape");
    expect_json("shape string dim", "{" E("w", "U8", "[\"3\"]", "[0,3]") "}", 3, G4Q_ERR_FORMAT,
                "w", "dim 0");

    /* data_offsets. */
    expect_json("offset 1e300", "{" E("w", "U8", "[1]", "[0,1e300]") "}", 1, G4Q_ERR_FORMAT, "w",
                "data_offsets[1]");
    expect_json("offset 2^64", "{" E("w", "U8", "[1]", "[18446744073709551616,0]") "}", 1,
                G4Q_ERR_FORMAT, "w", "data_offsets[0]");
    expect_json("offset negative", "{" E("w", "U8", "[1]", "[-1,0]") "}", 1, G4Q_ERR_FORMAT, "w",
                "data_offsets[0]");
    expect_json("offset fractional", "{" E("w", "U8", "[1]", "[0,0.5]") "}", 1, G4Q_ERR_FORMAT,
                "w", "data_offsets[1]");
    expect_json("end < begin", "{" E("w", "U8", "[0]", "[5,2]") "}", 5, G4Q_ERR_FORMAT, "w",
                "before");
    expect_json("three offsets", "{" E("w", "U8", "[1]", "[0,1,2]") "}", 1, G4Q_ERR_FORMAT, "w",
                "two numbers");
    expect_json("offsets string", "{" E("w", "U8", "[1]", "[0,\"1\"]") "}", 1, G4Q_ERR_FORMAT,
                "w", "data_offsets[1]");
    expect_json("wrong byte size", "{" E("x", "BF16", "[3,2]", "[0,10]") "}", 10,
                G4Q_ERR_FORMAT, "x", "hold 10 bytes, shape [3, 2] of BF16 needs 12");
    expect_json("overlap",
                "{" E("a", "U8", "[4]", "[0,4]") "," E("b", "U8", "[4]", "[2,6]") "}", 6,
                G4Q_ERR_FORMAT, "b", "overlap tensor 'a'");
    expect_json("gap", "{" E("a", "U8", "[4]", "[0,4]") "," E("b", "U8", "[4]", "[5,9]") "}", 9,
                G4Q_ERR_FORMAT, "b", "gap");
    expect_json("not from 0", "{" E("a", "U8", "[4]", "[1,5]") "}", 5, G4Q_ERR_FORMAT, "a",
                "gap");
    expect_json("past file end", "{" E("a", "U8", "[4]", "[0,4]") "}", 3, G4Q_ERR_FORMAT, "a",
                "past the end");
    expect_json("trailing bytes", "{" E("a", "U8", "[4]", "[0,4]") "}", 5, G4Q_ERR_FORMAT, NULL,
                "1 trailing bytes");
    expect_json("unsorted is fine",
                "{" E("b", "U8", "[4]", "[4,8]") "," E("a", "U8", "[4]", "[0,4]") "}", 8, G4Q_OK,
                NULL, NULL);

    /* Keys. */
    expect_json("duplicate name",
                "{" E("a", "U8", "[4]", "[0,4]") "," E("a", "U8", "[4]", "[4,8]") "}", 8,
                G4Q_ERR_FORMAT, "a", "twice");
    expect_json("missing dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                G4Q_ERR_FORMAT, "w", "missing key 'dtype'");
    expect_json("missing shape", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1,
                G4Q_ERR_FORMAT, "w", "missing key 'shape'");
    expect_json("missing offsets", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, G4Q_ERR_FORMAT,
                "w", "missing key 'data_offsets'");
    expect_json("extra key",
                "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1,
                G4Q_ERR_FORMAT, "w", "unexpected key 'x'");
    expect_json("repeated key",
                "{\"w\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                1, G4Q_ERR_FORMAT, "w", "twice");
    expect_json("metadata number", "{\"__metadata__\":{\"a\":\"b\",\"n\":1}}", 0, G4Q_ERR_FORMAT,
                NULL, "'n'");
    expect_json("metadata nested", "{\"__metadata__\":{\"o\":{}}}", 0, G4Q_ERR_FORMAT, NULL,
                "'o'");
    expect_json("metadata array", "{\"__metadata__\":[]}", 0, G4Q_ERR_FORMAT, NULL,
                "__metadata__");
    expect_json("metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, G4Q_ERR_FORMAT,
                NULL, "twice");
    expect_json("metadata key twice", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0,
                G4Q_ERR_FORMAT, NULL, "'k'");
    expect_json("metadata ok", "{\"__metadata__\":{\"k\":\"a\"}," E("w", "I8", "[]", "[0,1]") "}",
                1, G4Q_OK, NULL, NULL);
}

/* A file the writer produced, cut short at several points: each a clean format error. */
static void test_truncated_files(void)
{
    char dir[4096];
    g4q_test_tmpdir(dir, sizeof dir, "st-trunc");
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_st_writer *w;
    CHECK_STATUS(g4q_stw_create(&ctx, dir, NULL, &w), G4Q_OK);
    int64_t shape[2] = {5, 7};
    unsigned char data[70];
    for (int i = 0; i < 70; i++)
        data[i] = (unsigned char)(i * 13);
    CHECK_STATUS(g4q_stw_declare(w, "t0", G4Q_DT_BF16, 2, shape, NULL), G4Q_OK);
    CHECK_STATUS(g4q_stw_declare(w, "t1", G4Q_DT_BF16, 2, shape, NULL), G4Q_OK);
    CHECK_STATUS(g4q_stw_begin(w), G4Q_OK);
    CHECK_STATUS(g4q_stw_write(w, 0, 0, data, 70), G4Q_OK);
    CHECK_STATUS(g4q_stw_write(w, 1, 0, data, 70), G4Q_OK);
    CHECK_STATUS(g4q_stw_finish(w), G4Q_OK);
    g4q_stw_free(w);
    char path[4200], cut[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    char *img;
    size_t len;
    if (!CHECK_STATUS(g4q_read_file(&ctx, path, 1 << 20, &img, &len), G4Q_OK))
        return;
    size_t hdr = len - 140;
    size_t points[] = {0, 1, 7, 8, 9, hdr / 2, hdr - 1, hdr, hdr + 1, hdr + 70, len - 1};
    for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
        write_bytes(cut, img, points[i]);
        g4q_st_file *f;
        g4q_status st = g4q_st_open(&ctx, cut, &f);
        CHECK_MSG(st == G4Q_ERR_FORMAT, "cut at %zu: %s (%s)", points[i], g4q_status_name(st),
                  g4q_ctx_error(&ctx));
        CHECK_MSG(contains(g4q_ctx_error(&ctx), cut), "cut at %zu: %s", points[i],
                  g4q_ctx_error(&ctx));
        if (st == G4Q_OK)
            g4q_st_close(f);
    }
    /* Trailing junk on a real file. */
    img = realloc(img, len + 1);
    img[len] = 'x';
    write_bytes(cut, img, len + 1);
    g4q_st_file *f;
    CHECK_STATUS(g4q_st_open(&ctx, cut, &f), G4Q_ERR_FORMAT);
    CHECK(contains(g4q_ctx_error(&ctx), "trailing"));
    write_bytes(cut, img, len);
    if (CHECK_STATUS(g4q_st_open(&ctx, cut, &f), G4Q_OK)) {
        CHECK(g4q_st_is_mapped(f));
        CHECK_EQ_INT(g4q_st_count(f), 2);
        CHECK(memcmp(g4q_st_find(f, "t1")->data, data, 70) == 0);
        g4q_st_close(f);
    }
    free(img);
    CHECK_STATUS(g4q_st_open(&ctx, "/nonexistent/x.safetensors", &f), G4Q_ERR_NOT_FOUND);
    CHECK(contains(g4q_ctx_error(&ctx), "/nonexistent/x.safetensors"));
    CHECK_STATUS(g4q_st_open(&ctx, dir, &f), G4Q_ERR_IO); /* a directory */
}

/* Writes DIR/NAME holding the given tensors (U8 [n] each, contiguous). */
static void write_shard(const char *dir, const char *name, const char *const *tensors, int n)
{
    char json[1024] = "{", path[4200];
    for (int i = 0; i < n; i++) {
        size_t k = strlen(json);
        snprintf(json + k, sizeof json - k,
                 "%s\"%s\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[%d,%d]}", i ? "," : "",
                 tensors[i], 2 * i, 2 * i + 2);
    }
    strcat(json, "}");
    size_t len;
    unsigned char *img = make_image(strlen(json), json, (size_t)(2 * n), &len);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_bytes(path, img, len);
    free(img);
}

static void expect_index(const char *what, const char *index_json, g4q_status want,
                         const char *phrase1, const char *phrase2)
{
    char dir[4096], path[4200];
    g4q_test_tmpdir(dir, sizeof dir, "st-index");
    static const char *const s1[] = {"a", "b"}, *const s2[] = {"c"};
    write_shard(dir, "s1.safetensors", s1, 2);
    write_shard(dir, "s2.safetensors", s2, 1);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_bytes(path, index_json, strlen(index_json));
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_ckpt *c = NULL;
    g4q_status st = g4q_ckpt_open(&ctx, dir, &c);
    const char *msg = g4q_ctx_error(&ctx);
    CHECK_MSG(st == want, "%s: got %s, want %s (%s)", what, g4q_status_name(st),
              g4q_status_name(want), msg);
    if (want != G4Q_OK) {
        CHECK_MSG(c == NULL, "%s: handle not NULL", what);
        CHECK_MSG(contains(msg, phrase1) && contains(msg, phrase2), "%s: '%s' / '%s' not in: %s",
                  what, phrase1 ? phrase1 : "", phrase2 ? phrase2 : "", msg);
        if (getenv("G4Q_TEST_VERBOSE"))
            printf("  %-28s %s: %s\n", what, g4q_status_name(st), msg);
    } else if (c) {
        CHECK_EQ_INT(g4q_ckpt_count(c), 3);
        CHECK_EQ_INT(g4q_ckpt_file_count(c), 2);
        CHECK_EQ_INT(g4q_ckpt_data_bytes(c), 6);
        CHECK(g4q_ckpt_find(c, "c") && g4q_ckpt_find(c, "c")->file == 1);
        CHECK(g4q_ckpt_tensor(c, 0) && strcmp(g4q_ckpt_tensor(c, 0)->name, "a") == 0);
    }
    g4q_ckpt_close(c);
}

static void test_hostile_index(void)
{
    expect_index("good index",
                 "{\"metadata\":{\"total_size\":6},\"weight_map\":{\"c\":\"s2.safetensors\","
                 "\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}",
                 G4Q_OK, NULL, NULL);
    expect_index("missing shard",
                 "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                 "\"c\":\"s3.safetensors\"}}",
                 G4Q_ERR_NOT_FOUND, "s3.safetensors", "index.json");
    expect_index("not in shard",
                 "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                 "\"c\":\"s2.safetensors\",\"d\":\"s2.safetensors\"}}",
                 G4Q_ERR_FORMAT, "tensor 'd'", "s2.safetensors");
    expect_index("wrong shard",
                 "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\","
                 "\"c\":\"s2.safetensors\"}}",
                 G4Q_ERR_FORMAT, "tensor 'b'", "s2.safetensors");
    expect_index("not listed",
                 "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s2.safetensors\"}}",
                 G4Q_ERR_FORMAT, "tensor 'b'", "not in weight_map");
    expect_index("dot-dot shard",
                 "{\"weight_map\":{\"a\":\"../s1.safetensors\",\"b\":\"s1.safetensors\","
                 "\"c\":\"s2.safetensors\"}}",
                 G4Q_ERR_FORMAT, "tensor 'a'", "plain file name");
    expect_index("absolute shard", "{\"weight_map\":{\"a\":\"/etc/passwd\"}}", G4Q_ERR_FORMAT,
                 "tensor 'a'", "plain file name");
    expect_index("dot-dot alone", "{\"weight_map\":{\"a\":\"..\"}}", G4Q_ERR_FORMAT, "tensor 'a'",
                 NULL);
    expect_index("shard not string", "{\"weight_map\":{\"a\":1}}", G4Q_ERR_FORMAT, "tensor 'a'",
                 NULL);
    expect_index("listed twice",
                 "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\","
                 "\"c\":\"s2.safetensors\",\"a\":\"s2.safetensors\"}}",
                 G4Q_ERR_FORMAT, "tensor 'a'", "twice");
    expect_index("no weight_map", "{\"metadata\":{}}", G4Q_ERR_FORMAT, "index.json",
                 "weight_map");
    expect_index("index not JSON", "{\"weight_map\":", G4Q_ERR_FORMAT, "index.json", NULL);
    expect_index("index bad UTF-8", "{\"weight_map\":{\"\xff\":\"s1.safetensors\"}}",
                 G4Q_ERR_FORMAT, "index.json", "UTF-8");

    char dir[4096];
    g4q_test_tmpdir(dir, sizeof dir, "st-empty");
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_ckpt *c;
    CHECK_STATUS(g4q_ckpt_open(&ctx, dir, &c), G4Q_ERR_NOT_FOUND);
    CHECK(contains(g4q_ctx_error(&ctx), dir));
    CHECK_STATUS(g4q_ckpt_open(&ctx, "/nonexistent/model", &c), G4Q_ERR_NOT_FOUND);
}

/* ---- listing and the sample checkpoint (for the Python cross-check) ---- */

static void print_tensor(const g4q_tensor *t)
{
    char hex[G4Q_SHA256_HEX];
    g4q_sha256_hex(t->data, (size_t)t->nbytes, hex);
    printf("tensor %s %s [", t->name, g4q_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++)
        printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
    printf("] %s\n", hex);
}

static void print_metadata(const g4q_st_file *f)
{
    for (size_t i = 0; i < g4q_st_metadata_count(f); i++) {
        const char *k = g4q_st_metadata_key(f, i);
        printf("meta %s %s\n", k, g4q_st_metadata(f, k));
    }
}

static int list_path(const char *path)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_status st;
    if (g4q_is_dir(path)) {
        g4q_ckpt *c;
        if ((st = g4q_ckpt_open(&ctx, path, &c)) == G4Q_OK) {
            for (size_t i = 0; i < g4q_ckpt_count(c); i++)
                print_tensor(g4q_ckpt_tensor(c, i));
            for (size_t s = 0; s < g4q_ckpt_file_count(c); s++)
                print_metadata(g4q_ckpt_file(c, s));
            g4q_ckpt_close(c);
        }
    } else {
        g4q_st_file *f;
        if ((st = g4q_st_open(&ctx, path, &f)) == G4Q_OK) {
            for (size_t i = 0; i < g4q_st_count(f); i++)
                print_tensor(g4q_st_tensor(f, i));
            print_metadata(f);
            g4q_st_close(f);
        }
    }
    if (st != G4Q_OK)
        fprintf(stderr, "error: %s\n", g4q_ctx_error(&ctx));
    return st == G4Q_OK ? 0 : 1;
}

static int write_sample(const char *dir)
{
    static const struct {
        const char *name;
        g4q_dtype dt;
        int ndim;
        int64_t shape[3];
    } spec[] = {
        {"model.embed_tokens.weight", G4Q_DT_BF16, 2, {17, 8}},
        {"model.layers.0.mlp.weight", G4Q_DT_F8_E4M3, 2, {3, 43}},
        {"model.layers.0.mlp.weight_scale", G4Q_DT_F32, 0, {0}},
        {"model.layers.0.bias", G4Q_DT_F16, 1, {7}},
        {"model.layers.0.q_u8", G4Q_DT_U8, 2, {3, 5}},
        {"model.layers.0.q_i8", G4Q_DT_I8, 1, {15}},
        {"model.layers.1.idx", G4Q_DT_I32, 3, {2, 3, 4}},
        {"model.layers.1.count", G4Q_DT_I64, 1, {1}},
        {"model.layers.1.empty", G4Q_DT_F32, 2, {0, 4}},
        {"model.unicod\xc3\xa9", G4Q_DT_BF16, 1, {2}},
    };
    const char *kv[] = {"producer", "gemma4q-test", NULL};
    g4q_st_writer_opts o = {.shard_bytes = 64, .metadata_kv = kv};
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_st_writer *w;
    g4q_status st = g4q_mkdir_p(&ctx, dir);
    if (st == G4Q_OK)
        st = g4q_stw_create(&ctx, dir, &o, &w);
    if (st != G4Q_OK) {
        fprintf(stderr, "error: %s\n", g4q_ctx_error(&ctx));
        return 1;
    }
    size_t n = sizeof spec / sizeof *spec;
    for (size_t i = 0; i < n && st == G4Q_OK; i++)
        st = g4q_stw_declare(w, spec[i].name, spec[i].dt, spec[i].ndim, spec[i].shape, NULL);
    if (st == G4Q_OK)
        st = g4q_stw_begin(w);
    for (size_t i = 0; i < n && st == G4Q_OK; i++) {
        uint64_t bytes = g4q_dtype_size(spec[i].dt);
        for (int d = 0; d < spec[i].ndim; d++)
            bytes *= (uint64_t)spec[i].shape[d];
        unsigned char buf[512];
        for (uint64_t k = 0; k < bytes; k++)
            buf[k] = (unsigned char)(k * 31 + i * 17 + 5);
        st = g4q_stw_write(w, i, 0, buf, bytes);
    }
    if (st == G4Q_OK)
        st = g4q_stw_finish(w);
    g4q_stw_free(w);
    if (st != G4Q_OK) {
        fprintf(stderr, "error: %s\n", g4q_ctx_error(&ctx));
        return 1;
    }
    return list_path(dir);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-sample") == 0)
        return write_sample(argv[2]);
    if (argc == 3 && strcmp(argv[1], "--list") == 0)
        return list_path(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--write-sample DIR | --list FILE_OR_DIR]\n", argv[0]);
        return 2;
    }
    test_utf8();
    test_roundtrip(0, "st-single");
    test_roundtrip(300, "st-sharded");
    test_roundtrip(1, "st-tiny-shards");
    test_release_big();
    test_writer_errors();
    test_hostile_header();
    test_hostile_entries();
    test_truncated_files();
    test_hostile_index();
    return g4q_test_finish();
}
