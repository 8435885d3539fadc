#!/usr/bin/env bash
# Where a decode step's time goes: ncu measures every kernel of a short run of
# `test_qgemm_gpu --bench-model MODEL_DIR PROMPT 4` (three prefills of PROMPT tokens, then 12 decode
# steps, each replaying the recorded step graph), one kernel at a time, and
# scripts/bench/profile_summary.py --decode lists the last step's kernels in launch order.
# ncu serializes the kernels, so programmatic dependent launch overlaps nothing here: the sum is
# an upper bound of the step, and the gap to the measured step is what the overlap saves.
# Usage: scripts/bench/profile_decode.sh MODEL_DIR [PROMPT] [OUT_CSV]
#   MODEL_DIR: BF16 or an export, e.g. the 12b preset cut to 4 layers (gemma4q-mkmodel --preset 12b
#   --layers 4); needs ncu, and test_qgemm_gpu on PATH or in build/.
set -euo pipefail
model=${1:?usage: profile_decode.sh MODEL_DIR [PROMPT] [OUT_CSV]}
prompt=${2:-1024}
csv=${3:-/tmp/profile_decode.csv}
here=$(cd "$(dirname "$0")/../.." && pwd)
"$here/scripts/bench/ncu_bench_model.sh" "$model" "$prompt" 4 "$csv"
python3 "$here/scripts/bench/profile_summary.py" --decode "$csv"
