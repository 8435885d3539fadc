#!/usr/bin/env bash
# Times gemma4q-quantize end to end (read, quantize, write) on one model for several recipes and
# prints one line per recipe: wall seconds, peak host RSS, peak GPU memory (the tool's summary),
# output size. Usage: scripts/bench/quantize.sh MODEL_DIR OUT_ROOT [DEVICE] [RECIPE ...]
# Default recipes: the weight-only ones with an MSE search.
set -euo pipefail
model=$1 root=$2 device=${3:-auto}
shift $(( $# >= 3 ? 3 : $# ))
here=$(cd "$(dirname "$0")" && pwd)
recipes=("$@")
[ ${#recipes[@]} -gt 0 ] || recipes=("$here/recipes/w4a16-nvfp4-mse.yaml" "$here/../../recipes/fp8-block.yaml")
for r in "${recipes[@]}"; do
    name=$(basename "$r" .yaml)
    out="$root/$name"
    rm -rf "$out" "$out.partial"
    t0=$(date +%s.%N)
    gemma4q-quantize --model "$model" --recipe "$r" --out "$out" --device "$device" \
        --json "$root/$name.report.json" 2>&1 | grep -v '^\r' | tail -n 3
    t1=$(date +%s.%N)
    awk -v r="$name" -v d="$device" -v a="$t0" -v b="$t1" -v n="$(du -sb "$out" | cut -f1)" \
        'BEGIN { printf "bench quantize %-20s device %-4s wall %6.1f s  output %6.2f GB\n", r, d, b - a, n / 1e9 }'
done
