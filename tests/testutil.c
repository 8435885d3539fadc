#include "testutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int g4q_test_passed;
int g4q_test_failed;

int g4q_test_check(int cond, const char *file, int line, const char *fmt, ...)
{
    if (cond) {
        g4q_test_passed++;
        return 1;
    }
    g4q_test_failed++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 0;
}

int g4q_test_check_status(g4q_status got, g4q_status want, const char *file, int line,
                          const char *expr)
{
    return g4q_test_check(got == want, file, line, "%s: got %s, want %s", expr,
                          g4q_status_name(got), g4q_status_name(want));
}

uint64_t g4q_test_seed(void)
{
    static uint64_t seed;
    static int have;
    if (!have) {
        const char *e = getenv("G4Q_TEST_SEED");
        if (e && *e) {
            seed = strtoull(e, NULL, 0);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
        }
        have = 1;
        fprintf(stderr, "test seed: G4Q_TEST_SEED=%llu\n", (unsigned long long)seed);
    }
    return seed;
}

uint64_t g4q_test_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double g4q_test_uniform(uint64_t *state)
{
    return (double)(g4q_test_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

double g4q_test_normal(uint64_t *state)
{
    double u1 = g4q_test_uniform(state), u2 = g4q_test_uniform(state);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void g4q_test_tmpdir(char *buf, size_t n, const char *tag)
{
    const char *base = getenv("G4Q_BINARY_DIR");
    char root[4096];
    snprintf(root, sizeof root, "%s/test-tmp", base && *base ? base : "/tmp");
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_mkdir_p(&ctx, root);
    snprintf(buf, n, "%s/%s-XXXXXX", root, tag);
    if (!mkdtemp(buf)) {
        perror(buf);
        exit(1);
    }
}

int g4q_test_finish(void)
{
    printf("%d passed, %d failed\n", g4q_test_passed, g4q_test_failed);
    return g4q_test_failed ? 1 : 0;
}
