#!/usr/bin/env bash
# GPU verification, part B: the 12b preset's write time, the 12B quantization benchmark with the
# export checker on its outputs, and the forward benchmarks (BF16 and quantized). Results in $OUT.
set -uo pipefail
. scripts/gpu/env.sh
work=${WORK:-/tmp/g4q}
mkdir -p "$work"
log() { printf '\n=== %s\n' "$*"; }
log "12b preset"
scripts/bench/mkmodel.sh 12b "$work/m12b" 2>&1 | tail -n 4
log "12B quantization benchmark (GPU)"
scripts/bench/quantize.sh "$work/m12b" "$work/q12b" cuda 2>&1
cp "$work"/q12b/*.report.json "$OUT/" 2>/dev/null
for q in "$work"/q12b/*/; do gemma4q-inspect --check "$q" 2>&1 | tail -n 1; done
log "forward benchmark, BF16"
test_backend_gpu --bench "$work/m12b" 1024 64 2>&1 | tail -n 14
log "forward benchmark, quantized"
for q in "$work"/q12b/*/; do test_qgemm_gpu --bench-model "$q" 2>&1 | grep -E "SUMMARY|peak|error" ; done
