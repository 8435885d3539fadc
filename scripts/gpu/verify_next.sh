#!/usr/bin/env bash
# What the session of 2026-11-22 could not re-run on the GPU before its device time ran out:
# the GPU test programs on the final code, calibration on CUDA (tiny: CPU vs GPU export, then the
# 12B with the public nvfp4-mlp-only recipe at reduced calibration size, timed), and the CUDA
# decode/prefill benchmark. Carry .gpubin (scripts/gpu/pack.sh) and .devlibs. Results in $OUT.
set -uo pipefail
. scripts/gpu/env.sh
work=${WORK:-/tmp/g4q}
mkdir -p "$work"
log() { printf '\n=== %s\n' "$*"; }
for t in test_backend_gpu test_qgemm_gpu test_quant_gpu; do
    log "$t"; "$t" 2>&1 | grep -E "FAIL|passed|model|relative" | tail -n 12
done
log "calibration, tiny: CPU and CUDA exports (input scales may differ in the last bits)"
gemma4q-mkmodel --preset tiny --out "$work/tiny" --force --quiet >/dev/null
for d in cpu cuda; do
    gemma4q-quantize --model "$work/tiny" --recipe recipes/nvfp4-mlp-only.yaml --out "$work/t-$d" \
        --device $d --calib-samples 16 --calib-seq-len 256 --force --quiet
    gemma4q-inspect --check "$work/t-$d" | tail -n 1
done
gemma4q-inspect --diff "$work/t-cpu" "$work/t-cuda" | tail -n 5
log "12B, nvfp4-mlp-only with 64 x 1024 calibration tokens (the recipe asks 512 x 1024)"
[ -f "$work/m12b/config.json" ] || gemma4q-mkmodel --preset 12b --out "$work/m12b" --quiet >/dev/null
gemma4q-quantize --model "$work/m12b" --recipe recipes/nvfp4-mlp-only.yaml --out "$work/q-mlp" \
    --device cuda --calib-samples 64 --force --json "$OUT/nvfp4-mlp-only.report.json" 2>&1 |
    grep -v $'\r' | tail -n 4
gemma4q-inspect --check "$work/q-mlp" | tail -n 1
log "forward benchmark, BF16 12B"
test_backend_gpu --bench "$work/m12b" 1024 64 2>&1 | tail -n 14
