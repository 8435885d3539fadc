#!/usr/bin/env bash
# Speed and host memory of validation on the GPU: gemma4q-run compare of a BF16 model (both models
# resident on one backend) against each export given, on the first BYTES of a text, whole windows
# of WINDOW tokens (stride = window: every position scored once). Prints per export the scoring
# time and scored tokens/s that compare reports, the wall time of the whole command (loading
# included) and its peak host RSS (/usr/bin/time), and keeps compare's JSON in WORK.
# Usage: scripts/bench/compare_gpu.sh MODEL_DIR TEXT_FILE WORK_DIR EXPORT_DIR...
#   environment: BYTES (default 61440), WINDOW (1024), EMULATE (auto), G4Q_BIN (default build/)
# e.g. scripts/bench/compare_gpu.sh /tmp/m12b calib/default.txt /tmp/cmp /tmp/m12b-q/nvfp4
set -euo pipefail
model=${1:?usage: compare_gpu.sh MODEL_DIR TEXT_FILE WORK_DIR EXPORT_DIR...}
text=${2:?text file} work=${3:?work dir}
shift 3
[ $# -ge 1 ] || { echo "compare_gpu.sh: no export folder given" >&2; exit 2; }
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${G4Q_BIN:-$here/build}
run=$bin/gemma4q-run
[ -x "$run" ] || run=$(command -v gemma4q-run)
mkdir -p "$work"
head -c "${BYTES:-61440}" "$text" >"$work/text.txt"
for q in "$@"; do
    n=$(basename "$q")
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$work/$n.rss" "$run" compare --model "$model" --quantized "$q" \
        --file "$work/text.txt" --window "${WINDOW:-1024}" --stride "${WINDOW:-1024}" \
        --device cuda --emulate "${EMULATE:-auto}" --json --quiet >"$work/$n.json"
    wall=$(python3 -c "import time; print(time.time() - $t0)")
    python3 - "$work/$n.json" "$n" "$(cat "$work/$n.rss")" "$wall" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
n, rss_kb, wall = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
print("compare %s (emulate %s): %d scored tokens, scoring %.2f s = %.0f tok/s; whole command "
      "%.1f s; peak RSS %.2f GB; KL %.5f, top-1 %.4f"
      % (n, j.get("emulate", "?"), j["scored"], j["seconds"], j["scored"] / j["seconds"], wall,
         rss_kb / 1e6, j["kl_mean"], j["top1_agreement"]))
PY
done
