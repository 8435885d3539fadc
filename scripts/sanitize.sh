#!/usr/bin/env bash
# Builds the CPU-only product with AddressSanitizer and UndefinedBehaviorSanitizer (float-to-int
# overflow included) in build-san/ and runs the CPU tests there; any report fails its test
# (UBSan halts on the first). Slow: the CLI tests run 5-15x longer than in build/ (their time
# limits are scaled up); 30 minutes on 2 cores in all (2026-12-05). Not part of CI
# (scripts/test.sh runs the fuzzers under both sanitizers instead).
# Usage: scripts/sanitize.sh [CTEST_ARGS...]   e.g. scripts/sanitize.sh -R test_quant
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build-san -DG4Q_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DG4Q_SANITIZE="address;undefined;float-cast-overflow" -DG4Q_TEST_TIMEOUT_SCALE=8 >/dev/null
cmake --build build-san -j"$jobs"
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    ctest --test-dir build-san -L cpu --output-on-failure -j"$jobs" "$@"
