/*
 * Minimal test support: checks that print both values, a per-run random seed (printed, and
 * settable with G4Q_TEST_SEED to reproduce a failure), temporary folders, and the closing line
 * "N passed, N failed" that CI reads.
 */
#ifndef G4Q_TESTS_TESTUTIL_H
#define G4Q_TESTS_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>

#include "base/ctx.h"
#include "base/sys.h"

extern int g4q_test_passed;
extern int g4q_test_failed;

#define CHECK(cond)                                                                                \
    g4q_test_check(!!(cond), __FILE__, __LINE__, "%s", #cond)
#define CHECK_MSG(cond, ...) g4q_test_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define CHECK_EQ_INT(a, b)                                                                         \
    g4q_test_check((long long)(a) == (long long)(b), __FILE__, __LINE__, "%s == %s (%lld vs %lld)", \
                   #a, #b, (long long)(a), (long long)(b))
#define CHECK_STATUS(st, want) g4q_test_check_status((st), (want), __FILE__, __LINE__, #st)

/* Records one check; prints the message on failure. Returns cond. */
int g4q_test_check(int cond, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Checks a status (evaluated once by the macro) and prints both names on failure. */
int g4q_test_check_status(g4q_status got, g4q_status want, const char *file, int line,
                          const char *expr);

/* Seed for this run: G4Q_TEST_SEED if set, else from the clock; printed once. */
uint64_t g4q_test_seed(void);
/* splitmix64 step: deterministic stream from a state. */
uint64_t g4q_test_rand(uint64_t *state);
/* Uniform in [0, 1). */
double g4q_test_uniform(uint64_t *state);
/* Standard normal. */
double g4q_test_normal(uint64_t *state);

/* Makes a fresh empty directory under the build tree (or /tmp) and writes its path to buf. */
void g4q_test_tmpdir(char *buf, size_t n, const char *tag);

/* Prints "N passed, N failed" and returns the process exit code. */
int g4q_test_finish(void);

#endif
