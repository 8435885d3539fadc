#!/usr/bin/env bash
# The quality table: every recipe in recipes/ plus max / MSE / 4-over-6 variants of the ModelOpt
# NVFP4 ones, quantized from a BF16 model and compared with it by gemma4q-run compare on a text,
# once weight-only (--emulate none) and once with the export's engine numerics (--emulate auto:
# sm100 for W4A4, sm90 otherwise). Prints one markdown row per (export, mode): KL mean and 99th
# percentile, top-1 agreement, perplexity of the reference and the candidate.
# Usage: scripts/bench/quality.sh MODEL_DIR TEXT_FILE WORK_DIR [DEVICE] [WINDOW] [STRIDE]
#   e.g. scripts/bench/quality.sh ../shared/data/trained-small ../shared/data/trained-small/heldout.txt /tmp/q
# Needs gemma4q-quantize and gemma4q-run on PATH (or in build/). Extra quantize options (e.g. a
# smaller calibration for a CPU run) can be given in QUANT_OPTS.
set -euo pipefail
model=$1 text=$2 work=$3 dev=${4:-auto} win=${5:-512} stride=${6:-256}
here=$(cd "$(dirname "$0")/../.." && pwd)
PATH="$here/build:$PATH"
mkdir -p "$work"
# variant NAME RECIPE SCALE_SEARCH: a copy of RECIPE with every scale_search set to SCALE_SEARCH
variant() {
    sed "s/scale_search: .*/scale_search: $3/; s/^name: .*/name: $1/" "$2" >"$work/$1.yaml"
    echo "$work/$1.yaml"
}
recipes=()
for r in "$here"/recipes/*.yaml; do recipes+=("$r"); done
for s in max mse four-over-six; do
    recipes+=("$(variant "nvfp4-$s" "$here/recipes/nvfp4.yaml" "$s")")
    recipes+=("$(variant "nvfp4-mlp-only-$s" "$here/recipes/nvfp4-mlp-only.yaml" "$s")")
done
echo "| export | recipe | emulate | KL mean | KL p99 | top-1 | ppl ref | ppl cand | Δppl |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in "${recipes[@]}"; do
    n=$(basename "$r" .yaml)
    out="$work/$n"
    # shellcheck disable=SC2086
    [ -f "$out/manifest.json" ] || gemma4q-quantize --model "$model" --recipe "$r" --out "$out" \
        --device "$dev" --quiet --force ${QUANT_OPTS:-} >/dev/null
    for mode in none auto; do
        gemma4q-run compare --model "$model" --quantized "$out" --file "$text" --window "$win" \
            --stride "$stride" --device "$dev" --emulate "$mode" --json --quiet >"$work/$n.$mode.json"
        python3 - "$work/$n.$mode.json" "$n" "$(basename "$r")" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {j['emulate']} | {j['kl_mean']:.5f} | {j['kl_p99']:.4f} "
      f"| {100 * j['top1_agreement']:.2f}% | {j['ppl_ref']:.3f} | {j['ppl_cand']:.3f} "
      f"| {j['ppl_cand'] - j['ppl_ref']:+.3f} |")
PY
    done
done
