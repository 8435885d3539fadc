#!/usr/bin/env bash
# Builds gemma4q and runs its CPU tests, then builds the libFuzzer targets with clang and runs
# each for a bounded time. GPU tests (label gpu) are not run here: scripts/gpu/check.sh tests.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build -DG4Q_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build -L cpu --output-on-failure -j"$jobs"
if command -v clang >/dev/null; then
    cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DG4Q_CUDA=OFF -DG4Q_FUZZ=ON \
        -DG4Q_WERROR=ON -DG4Q_FUZZ_SECONDS="${G4Q_FUZZ_SECONDS:-35}" >/dev/null
    cmake --build build-fuzz -j"$jobs" --target fuzzers
    ctest --test-dir build-fuzz -L fuzz --output-on-failure
else
    echo "test.sh: clang not found, fuzzers not run" >&2
    exit 1
fi
