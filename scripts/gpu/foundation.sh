#!/usr/bin/env bash
# GPU-machine checks for the foundation and quantize issues, in one call:
#   GPU unit tests (label gpu), synthetic checkpoints loaded by transformers, the 12b preset's
#   write time and size, and the 12B quantization benchmark with CPU/GPU byte equality on the
#   small preset. Run from the repository root on the GPU machine with the build carried:
#   bash scripts/gpu/foundation.sh   (results under $OUT)
set -uo pipefail
. scripts/gpu/env.sh
log() { printf '\n=== %s\n' "$*"; }
work=${WORK:-/tmp/g4q}
mkdir -p "$work"

log "GPU unit tests"
for t in build/test_*_gpu; do [ -x "$t" ] && { "$t" 2>&1 | tail -n 5; echo "$t exit $?"; }; done

log "tiny preset in transformers"
gemma4q-mkmodel --preset tiny --out "$work/tiny" --force --quiet
python3 scripts/oracle/load_check.py "$work/tiny" 2>&1 | tail -n 20

log "CPU and GPU give the same bytes (small preset, every weight-only recipe)"
gemma4q-mkmodel --preset small --out "$work/small" --force --quiet
for r in recipes/nvfp4a16.yaml recipes/int4-mlp-only.yaml recipes/fp8-block.yaml \
         scripts/bench/recipes/w4a16-nvfp4-mse.yaml; do
    n=$(basename "$r" .yaml)
    gemma4q-quantize --model "$work/small" --recipe "$r" --out "$work/s-cpu-$n" --device cpu --quiet --force
    gemma4q-quantize --model "$work/small" --recipe "$r" --out "$work/s-gpu-$n" --device cuda --quiet --force
    if cmp -s "$work/s-cpu-$n/model.safetensors" "$work/s-gpu-$n/model.safetensors" &&
       cmp -s "$work/s-cpu-$n/manifest.json" "$work/s-gpu-$n/manifest.json"; then
        echo "identical cpu/gpu: $n"
    else
        echo "DIFFERENT cpu/gpu: $n"
    fi
done

log "12b preset: write time and size"
scripts/bench/mkmodel.sh 12b "$work/m12b" 2>&1 | tail -n 14
gemma4q-inspect --summary "$work/m12b"

log "12B quantization benchmark (GPU)"
scripts/bench/quantize.sh "$work/m12b" "$work/q12b" cuda 2>&1
cp "$work"/q12b/*.report.json "$OUT/" 2>/dev/null || true

if [ "${LOAD_12B:-1}" = 1 ]; then
    log "12b preset in transformers (bf16 and fp32 load, forward)"
    python3 scripts/oracle/load_check.py "$work/m12b" --max-fp64-params 0 2>&1 | tail -n 20
fi
df -h "$work" | tail -n 1
