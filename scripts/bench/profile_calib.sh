#!/usr/bin/env bash
# Where calibration's time goes. Runs gemma4q-quantize on MODEL_DIR with RECIPE twice:
#   1. unprofiled, SAMPLES x SEQ_LEN calibration tokens (the recipe's own when unset), and prints
#      the tool's calibration seconds and tokens per second (the JSON report);
#   2. under ncu (kernel durations, one kernel at a time) with PROFILE_SAMPLES samples (default 4),
#      summarised by scripts/bench/profile_summary.py --all: GEMMs, attention, the rest, and the
#      kernels by total time. Comparing the kernel time per token with step 1's wall time per
#      token splits the run into GPU work and what the host adds (launches, synchronisations,
#      uploads).
# Usage: scripts/bench/profile_calib.sh MODEL_DIR RECIPE [WORK_DIR]
#   e.g. MODEL_DIR = gemma4q-mkmodel --preset 12b --layers 4; needs ncu and gemma4q-quantize.
set -euo pipefail
model=${1:?usage: profile_calib.sh MODEL_DIR RECIPE [WORK_DIR]}
recipe=${2:?recipe}
work=${3:-/tmp/profile_calib}
here=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$work"
over=()
[ -z "${SAMPLES:-}" ] || over+=(--calib-samples "$SAMPLES")
[ -z "${SEQ_LEN:-}" ] || over+=(--calib-seq-len "$SEQ_LEN")
gemma4q-quantize --model "$model" --recipe "$recipe" --out "$work/out" --force --quiet \
    --device cuda "${over[@]}" --json "$work/report.json"
python3 - "$work/report.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["calibration"]
print("calibration: %d x %d tokens in %.2f s (binding weights %.2f s, copied ahead %.2f s) = "
      "%.0f tok/s = %.1f us per token, peak GPU %.2f GB"
      % (c["samples"], c["seq_len"], c["seconds"], c["bind_seconds"],
         c.get("prefetch_seconds", 0), c["tokens"] / c["seconds"],
         1e6 * c["seconds"] / c["tokens"], c.get("peak_device_bytes", 0) / 1e9))
PY
ps=${PROFILE_SAMPLES:-4}
seq=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["calibration"]["seq_len"])' \
    "$work/report.json")
ncu --csv --cache-control none --clock-control none --metrics gpu__time_duration.sum \
    gemma4q-quantize --model "$model" --recipe "$recipe" --out "$work/out" --force --quiet \
    --device cuda --calib-samples "$ps" ${SEQ_LEN:+--calib-seq-len "$SEQ_LEN"} \
    >"$work/ncu.raw" 2>&1 || { tail -n 20 "$work/ncu.raw"; exit 1; }
grep -E '^"' "$work/ncu.raw" >"$work/ncu.csv"
python3 "$here/scripts/bench/profile_summary.py" --all "$work/ncu.csv" $((ps * seq))
