#!/usr/bin/env bash
# Copies the built tools and GPU test programs (not the object files) into .gpubin/, small enough
# to carry to the GPU machine. There: `cp .gpubin/* build/` or put .gpubin on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
rm -rf .gpubin && mkdir -p .gpubin
cp "$build"/gemma4q-* .gpubin/
for t in "$build"/test_*_gpu; do [ -x "$t" ] && cp "$t" .gpubin/; done
du -sh .gpubin
