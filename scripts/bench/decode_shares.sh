#!/usr/bin/env bash
# What each class of a decode step's ops costs inside the replayed step graph. ncu times kernels
# one at a time, so it cannot show what programmatic dependent launch overlaps; instead
# `test_qgemm_gpu --bench-model` leaves a class of single-token ops out (G4Q_BENCH_SKIP; the logits
# are then wrong, the timing is what counts) and the step is timed again. Prints the step's ms per
# token with each class left out and the difference to the whole step, per layer in us.
# Classes: qkv norm_rope attention o norms gate_up down head (comma-joined: left out together).
# Usage: scripts/bench/decode_shares.sh MODEL_DIR [PROMPT [CLASS...]]
#   needs test_qgemm_gpu on PATH or in build/; default classes: each alone, then all GEMVs and all
#   other ops of a layer.
set -euo pipefail
model=${1:?usage: decode_shares.sh MODEL_DIR [PROMPT [CLASS...]]}
prompt=${2:-1024}
shift $(($# < 2 ? $# : 2))
classes=${*:-qkv norm_rope attention o norms gate_up down head qkv,o,gate_up,down norm_rope,attention,norms}
here=$(cd "$(dirname "$0")/../.." && pwd)
tq=$(command -v test_qgemm_gpu || echo "$here/build/test_qgemm_gpu")
layers=$(python3 -c 'import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
print(c.get("text_config", c)["num_hidden_layers"])' "$model")
step_ms() {
    G4Q_BENCH_SKIP="$1" "$tq" --bench-model "$model" "$prompt" 64 |
        sed -n 's/.*decode (context.*median \([0-9.]*\) ms\/token.*/\1/p'
}
base=$(step_ms "")
printf '%-32s %8s ms/token  (%s layers)\n' "nothing left out" "$base" "$layers"
for c in $classes; do
    t=$(step_ms "$c")
    awk -v c="$c" -v t="$t" -v b="$base" -v l="$layers" \
        'BEGIN { printf "%-32s %8.2f ms/token  %6.1f us per layer\n", c, t, (b - t) * 1000 / l }'
done
