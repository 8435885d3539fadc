#!/usr/bin/env bash
# The duration of every kernel of `test_qgemm_gpu --bench-model MODEL_DIR PROMPT STEPS`, measured
# one kernel at a time by ncu, as CSV rows into OUT_CSV (ncu's whole output in OUT_CSV.raw).
# Extra ncu options (e.g. --launch-count N) follow OUT_CSV. test_qgemm_gpu is taken from PATH, else
# build/. Shared by profile_prefill.sh and profile_decode.sh.
# Usage: scripts/bench/ncu_bench_model.sh MODEL_DIR PROMPT STEPS OUT_CSV [NCU_OPTION...]
set -euo pipefail
model=${1:?usage: ncu_bench_model.sh MODEL_DIR PROMPT STEPS OUT_CSV [NCU_OPTION...]}
prompt=${2:?prompt tokens} steps=${3:?decode steps} csv=${4:?output csv}
shift 4
here=$(cd "$(dirname "$0")/../.." && pwd)
tq=$(command -v test_qgemm_gpu || echo "$here/build/test_qgemm_gpu")
ncu --csv --cache-control none --clock-control none --metrics gpu__time_duration.sum "$@" \
    "$tq" --bench-model "$model" "$prompt" "$steps" >"$csv.raw" 2>&1 || true
grep -E '^"' "$csv.raw" >"$csv" || { tail -n 20 "$csv.raw"; exit 1; }
