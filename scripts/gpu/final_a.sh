#!/usr/bin/env bash
# GPU verification, part A: the GPU test programs and the transformers oracle (tiny, small, 12b
# shape cut to 6 layers) in both CUDA precisions. Results under $OUT.
set -uo pipefail
. scripts/gpu/env.sh
log() { printf '\n=== %s\n' "$*"; }
for t in test_backend_gpu test_quant_gpu test_qgemm_gpu; do
    log "$t"; "$t" 2>&1 | grep -E "FAIL|passed|model|relative" | tail -n 12
done
bash scripts/gpu/oracle_only.sh
