#!/usr/bin/env bash
# The transformers oracle on the GPU machine (issue: runtime): synthetic checkpoints (tiny, small,
# and the 12b shape cut to 6 layers) through transformers 5.17 and gemma4q-run on the same ids,
# at lengths crossing the sliding window; then the full 12b preset through load_check.py, the
# CUDA op tests and the forward benchmark. Results under $OUT.
set -uo pipefail
. scripts/gpu/env.sh
work=${WORK:-/tmp/g4q}
mkdir -p "$work"
log() { printf '\n=== %s\n' "$*"; }
bin=$(command -v gemma4q-run)

log "CUDA op tests"
test_backend_gpu 2>&1 | tail -n 8

bash scripts/gpu/oracle_only.sh

log "12b preset in transformers (load, weights equal the file, forward in fp32 and bf16)"
gemma4q-mkmodel --preset 12b --out "$work/m12b" --force --quiet >/dev/null
timeout "${LOAD_12B_SECONDS:-240}" python3 scripts/oracle/load_check.py "$work/m12b" \
    --max-fp64-params 0 2>&1 | grep -v "Loading weights"
df -h "$work" | tail -n 1
