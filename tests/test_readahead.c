/* Read-ahead on a thread (src/io/readahead.h), over a memory-mapped file as the export uses it:
 * the thread touches exactly the ranges the window allows ahead of the caller, no more, skips the
 * ones the caller passed, leaves the data as they were, and stops cleanly whether blocked, busy or
 * done. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "base/sha256.h"
#include "io/readahead.h"
#include "testutil.h"

enum { N_RANGES = 24 };

static void nap_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (up to 10 s) until the thread has touched `want` bytes, then a little longer, and returns
 * what it has touched: more than `want` means it ran past the window. */
static uint64_t settle(g4q_readahead *ra, uint64_t want)
{
    for (int i = 0; i < 10000 && g4q_readahead_done_bytes(ra) < want; i++)
        nap_ms(1);
    nap_ms(20);
    return g4q_readahead_done_bytes(ra);
}

/* Marks the ranges the thread may touch with the caller at range `at` (window w) in `touched`
 * and returns the bytes of every marked range: ranges passed before being reached stay unmarked
 * (skipped). */
static uint64_t allowed_bytes(const g4q_range *r, size_t at, uint64_t w, int *touched)
{
    uint64_t ahead = 0, sum = 0;
    for (size_t i = at; i < N_RANGES; i++) {
        if (i > at && ahead + r[i].n > w) break;
        ahead += r[i].n;
        touched[i] = 1;
    }
    for (size_t i = 0; i < N_RANGES; i++)
        sum += touched[i] ? r[i].n : 0;
    return sum;
}

static void test_window(void)
{
    char dir[4096], path[4200];
    g4q_test_tmpdir(dir, sizeof dir, "readahead");
    snprintf(path, sizeof path, "%s/data.bin", dir);
    uint64_t rng = g4q_test_seed();
    g4q_range r[N_RANGES];
    size_t total = 0, len[N_RANGES];
    for (int i = 0; i < N_RANGES; i++) {
        len[i] = (size_t)(g4q_test_rand(&rng) % 300000); /* some empty, most several pages */
        if (i == 3) len[i] = 0;
        total += len[i];
    }
    unsigned char *bytes = malloc(total ? total : 1);
    CHECK(bytes != NULL);
    for (size_t i = 0; i < total; i++)
        bytes[i] = (unsigned char)g4q_test_rand(&rng);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    CHECK(fd >= 0 && write(fd, bytes, total) == (ssize_t)total);
    const unsigned char *map = mmap(NULL, total, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(map != MAP_FAILED);
    size_t off = 0;
    for (int i = 0; i < N_RANGES; i++) {
        r[i].p = map + off;
        r[i].n = len[i];
        off += len[i];
    }
    const uint64_t w = 700000;
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_readahead *ra;
    CHECK_STATUS(g4q_readahead_start(&ctx, r, N_RANGES, w, &ra), G4Q_OK);
    /* at 0: the prefix within the window; then the caller moves on in uneven steps, some past
     * ranges the thread has not reached (skipped) */
    int touched[N_RANGES] = {0};
    uint64_t want = allowed_bytes(r, 0, w, touched);
    CHECK_MSG(settle(ra, want) == want, "at 0: touched %llu, window allows %llu",
              (unsigned long long)g4q_readahead_done_bytes(ra), (unsigned long long)want);
    const size_t steps[] = {1, 2, 5, 6, 11, 17, 23};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        const size_t at = steps[k];
        g4q_readahead_at(ra, at);
        want = allowed_bytes(r, at, w, touched);
        const uint64_t got = settle(ra, want);
        CHECK_MSG(got == want, "at %zu: touched %llu, window allows %llu", at,
                  (unsigned long long)got, (unsigned long long)want);
    }
    g4q_readahead_at(ra, 2); /* going back is ignored */
    g4q_readahead_at(ra, N_RANGES);
    CHECK(settle(ra, want) == want);
    g4q_readahead_stop(ra);
    CHECK(memcmp(map, bytes, total) == 0);

    /* the caller jumps past everything: the skipped ranges are never touched */
    CHECK_STATUS(g4q_readahead_start(&ctx, r, N_RANGES, 1, &ra), G4Q_OK);
    g4q_readahead_at(ra, N_RANGES);
    nap_ms(50);
    CHECK(g4q_readahead_done_bytes(ra) <= r[0].n);
    g4q_readahead_stop(ra);

    /* stopped while waiting for the caller, and with nothing to do */
    CHECK_STATUS(g4q_readahead_start(&ctx, r, N_RANGES, 1, &ra), G4Q_OK);
    nap_ms(5);
    g4q_readahead_stop(ra);
    CHECK_STATUS(g4q_readahead_start(&ctx, NULL, 0, 0, &ra), G4Q_OK);
    g4q_readahead_stop(ra);
    g4q_readahead_stop(NULL);
    g4q_readahead_at(NULL, 3);
    munmap((void *)map, total);
    close(fd);
    unlink(path);
    free(bytes);
}

int main(void)
{
    test_window();
    return g4q_test_finish();
}
