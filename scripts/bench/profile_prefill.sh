#!/usr/bin/env bash
# Where a prefill's time goes: ncu measures every kernel of one warm prefill of PROMPT tokens through
# g4q_forward (test_qgemm_gpu --bench-model, which runs a warm-up prefill, then two timed ones),
# one kernel at a time, and scripts/bench/profile_summary.py groups the durations into GEMMs
# (cuBLAS, with TFLOP/s against the model's Linear FLOPs), packed-weight slices, attention and the
# rest. Usage: scripts/bench/profile_prefill.sh MODEL_DIR [PROMPT] [OUT_CSV]
#   MODEL_DIR: BF16 or an export (e.g. the 12b preset cut to 6 layers: gemma4q-mkmodel --preset 12b
#   --layers 6); needs ncu, and test_qgemm_gpu on PATH or in build/.
set -euo pipefail
model=${1:?usage: profile_prefill.sh MODEL_DIR [PROMPT] [OUT_CSV]}
prompt=${2:-1024}
csv=${3:-/tmp/profile_prefill.csv}
here=$(cd "$(dirname "$0")/../.." && pwd)
# Kernels per prefill: count them in an unprofiled pass would need a tracer; instead profile the
# first two prefills (warm-up, then timed) and let the summary keep the second.
"$here/scripts/bench/ncu_bench_model.sh" "$model" "$prompt" 0 "$csv" \
    --launch-count "${PROFILE_KERNELS:-4000}"
python3 "$here/scripts/bench/profile_summary.py" "$csv" "$model" "$prompt"
