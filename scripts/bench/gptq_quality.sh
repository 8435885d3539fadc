#!/usr/bin/env bash
# GPTQ against round-to-nearest on a trained model: quantizes MODEL_DIR with each baseline recipe
# and its GPTQ variant (scripts/bench/recipes/*-gptq*.yaml), compares both with the BF16 model on
# TEXT_FILE (gemma4q-run compare, window 512 stride 256, the export's engine numerics) and prints
# one markdown row per pair: KL mean / p99, top-1, perplexity, and the KL reduction. The W4A4
# baseline is calibrated on the same 128 x 512 tokens as its variant.
# Usage: scripts/bench/gptq_quality.sh MODEL_DIR TEXT_FILE WORK_DIR [DEVICE]
set -euo pipefail
model=${1:?usage: gptq_quality.sh MODEL_DIR TEXT_FILE WORK_DIR [DEVICE]}
text=${2:?text file} work=${3:?work dir} dev=${4:-auto}
here=$(cd "$(dirname "$0")/../.." && pwd)
PATH="$here/build:$PATH"
b=$here/scripts/bench/recipes
mkdir -p "$work"
pairs=(
    "int4-all-gptq|$b/int4-all-gptq.yaml||$b/int4-all-gptq-algo.yaml"
    "w4a16-nvfp4-mse|$b/w4a16-nvfp4-mse.yaml||$b/w4a16-nvfp4-mse-gptq.yaml"
    "nvfp4-mlp-only|$here/recipes/nvfp4-mlp-only.yaml|--calib-samples 128 --calib-seq-len 512|$b/nvfp4-mlp-only-gptq.yaml"
)
# kl NAME RECIPE OPTS: quantize (timed) and compare; prints "kl p99 top1 ppl_ref ppl_cand seconds"
kl() {
    local out=$work/$1 t0
    t0=$(date +%s)
    # shellcheck disable=SC2086
    gemma4q-quantize --model "$model" --recipe "$2" --out "$out" --device "$dev" --quiet --force $3 >/dev/null
    local secs=$(($(date +%s) - t0))
    gemma4q-run compare --model "$model" --quantized "$out" --file "$text" --window 512 \
        --stride 256 --device "$dev" --json --quiet |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["kl_mean"], j["kl_p99"], j["top1_agreement"], j["ppl_ref"], j["ppl_cand"], j["emulate"], end=" ")'
    echo "$secs"
}
echo "| baseline | KL (RTN) | KL p99 | top-1 | ppl | with GPTQ: KL | KL p99 | top-1 | ppl | KL change | emulate | quantize s (RTN / GPTQ) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for p in "${pairs[@]}"; do
    IFS='|' read -r name base opts var <<<"$p"
    read -r k0 p0 t0 r0 c0 e0 s0 <<<"$(kl "$name" "$base" "$opts")"
    read -r k1 p1 t1 r1 c1 e1 s1 <<<"$(kl "$name-gptq" "$var" "")"
    python3 - "$name" "$k0" "$p0" "$t0" "$c0" "$k1" "$p1" "$t1" "$c1" "$e1" "$s0" "$s1" <<'PY'
import sys
n, k0, p0, t0, c0, k1, p1, t1, c1, e, s0, s1 = sys.argv[1:]
k0, p0, t0, c0, k1, p1, t1, c1 = map(float, (k0, p0, t0, c0, k1, p1, t1, c1))
print("| %s | %.5f | %.4f | %.2f%% | %.3f | %.5f | %.4f | %.2f%% | %.3f | %+.1f%% | %s | %s / %s |"
      % (n, k0, p0, 100 * t0, c0, k1, p1, 100 * t1, c1, 100 * (k1 / k0 - 1), e, s0, s1))
PY
done
