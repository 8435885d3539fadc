#!/usr/bin/env bash
# End-to-end time and memory of the calibrated algorithms on the 12b preset (GPU machine): for each
# recipe below, gemma4q-quantize with read and write included (page cache warm after the first
# run), then gemma4q-inspect --check on the export. Prints one markdown row per recipe: wall
# seconds, calibration seconds (of which quantizing layer by layer), peak GPU memory of the whole
# job, peak host RSS, output GB, check result.
# Usage: scripts/bench/gptq_12b.sh MODEL_DIR WORK_DIR [SAMPLES SEQ_LEN]   (default 512 x 1024)
set -euo pipefail
model=${1:?usage: gptq_12b.sh MODEL_DIR WORK_DIR [SAMPLES SEQ_LEN]}
work=${2:?work dir}
samples=${3:-512} seq=${4:-1024}
here=$(cd "$(dirname "$0")/../.." && pwd)
PATH="$here/build:$PATH"
b=$here/scripts/bench/recipes
mkdir -p "$work"
recipes=(${RECIPES:-$b/int4-all-gptq.yaml $b/int4-all-gptq-algo.yaml $b/w4a16-nvfp4-mse.yaml \
    $b/w4a16-nvfp4-imatrix.yaml $b/w4a16-nvfp4-hessian.yaml})
echo "| recipe | calibration | wall s | calibration s (layer quantize s) | peak GPU GB | peak RSS GB | out GB | check |"
echo "|---|---|---|---|---|---|---|---|"
for r in "${recipes[@]}"; do
    n=$(basename "$r" .yaml)
    out=$work/$n
    t0=$(date +%s.%N)
    gemma4q-quantize --model "$model" --recipe "$r" --out "$out" --device cuda --force --quiet \
        --calib-samples "$samples" --calib-seq-len "$seq" --json "$work/$n.json"
    t1=$(date +%s.%N)
    chk=$(gemma4q-inspect --check "$out" 2>&1 | tail -n 1)
    rm -rf "$out"
    python3 - "$n" "$t0" "$t1" "$work/$n.json" "$chk" <<'PY'
import json, sys
n, t0, t1, path, chk = sys.argv[1:]
j = json.load(open(path))
r = j["result"]
c = j.get("calibration")
cal = "none" if not c else "%d x %d" % (c["samples"], c["seq_len"])
cs = "-" if not c else "%.1f (%.1f)" % (c["seconds"], r.get("layer_quantize_seconds", 0.0))
print("| %s | %s | %.1f | %s | %.2f | %.2f | %.2f | %s |" % (
    n, cal, float(t1) - float(t0), cs, r["job_peak_gpu_bytes"] / 1e9,
    r["peak_rss_bytes"] / 1e9, r["bytes_out"] / 1e9, chk))
PY
done
