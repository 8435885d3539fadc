#!/usr/bin/env bash
# Decode / prefill speed of the CUDA forward pass on the same model in BF16 and quantized forms:
# quantizes MODEL_DIR with recipes/nvfp4a16.yaml (NVFP4 compressed-tensors), recipes/fp8-block.yaml
# (FP8 128x128, ModelOpt) and scripts/bench/recipes/int4-all-gptq.yaml (INT4 group 128, GPTQ), all
# on every text-tower Linear, then runs `test_qgemm_gpu --bench-model` on each folder and prints
# one line per form (decode tok/s at batch 1, prefill tok/s, peak GPU memory). Before that,
# `test_qgemm_gpu --bench` prints the GEMV alone per format on the 12B's largest shapes.
# Usage: scripts/bench/forward_quant_gpu.sh BUILD_DIR [MODEL_DIR [OUT_ROOT [PROMPT [STEPS]]]]
#   MODEL_DIR defaults to /tmp/m12b (made with `gemma4q-mkmodel --preset 12b` when missing),
#   OUT_ROOT to /tmp/m12b-q; existing quantized folders are reused (delete them to redo).
set -euo pipefail
build=${1:?usage: forward_quant_gpu.sh BUILD_DIR [MODEL_DIR [OUT_ROOT [PROMPT [STEPS]]]]}
model=${2:-/tmp/m12b}
root=${3:-/tmp/m12b-q}
prompt=${4:-512}
steps=${5:-64}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
if [ ! -f "$model/config.json" ]; then
    "$build/gemma4q-mkmodel" --preset 12b --out "$model" | tail -n 4
fi
mkdir -p "$root"
declare -A recipe=(
    [nvfp4]="$src/recipes/nvfp4a16.yaml"
    [fp8-block]="$src/recipes/fp8-block.yaml"
    [int4]="$here/recipes/int4-all-gptq.yaml"
)
for q in nvfp4 fp8-block int4; do
    if [ ! -f "$root/$q/config.json" ]; then
        t0=$(date +%s)
        rm -rf "$root/$q" "$root/$q.partial"
        "$build/gemma4q-quantize" --quiet --model "$model" --recipe "${recipe[$q]}" \
            --out "$root/$q" --device cuda
        echo "quantize $q: $(( $(date +%s) - t0 )) s, $(du -sh "$root/$q" | cut -f1)"
    fi
done
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
"$build/test_qgemm_gpu" --bench
for pair in "bf16:$model" "nvfp4:$root/nvfp4" "fp8-block:$root/fp8-block" "int4:$root/int4"; do
    name=${pair%%:*} dir=${pair#*:}
    out=$("$build/test_qgemm_gpu" --bench-model "$dir" "$prompt" "$steps")
    echo "$out"
    dec=$(echo "$out" | sed -n 's/.*decode.*= \([0-9.]*\) tok\/s.*/\1/p')
    pre=$(echo "$out" | sed -n 's/.*prefill.*= \([0-9.]*\) tok\/s.*/\1/p')
    echo "SUMMARY $name: decode $dec tok/s, prefill $pre tok/s"
done
