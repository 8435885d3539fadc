#!/usr/bin/env bash
# Short GPU verification when device time is scarce: the GPU test programs, the transformers
# oracle on tiny and on the 12b shape cut to 6 layers (CPU, CUDA fp32, CUDA bf16), and the decode
# benchmark of a quantized 12B shape. Results under $OUT.
set -uo pipefail
. scripts/gpu/env.sh
work=${WORK:-/tmp/g4q}
mkdir -p "$work"
log() { printf '\n=== %s\n' "$*"; }
bin=$(command -v gemma4q-run)
for t in test_backend_gpu test_qgemm_gpu; do
    log "$t"; "$t" 2>&1 | grep -E "FAIL|passed|model|relative" | tail -n 12
done
log "oracle: tiny"
gemma4q-mkmodel --preset tiny --out "$work/tiny" --force --quiet >/dev/null
python3 scripts/oracle/compare_transformers.py --model "$work/tiny" --binary "$bin" \
    --lengths 16,300 --devices cpu,cuda --check-fp64 2>&1 | grep -v "Loading weights"
cp "$OUT/compare_transformers.json" "$OUT/oracle_tiny.json" 2>/dev/null
log "oracle: 12b shape, 6 layers"
gemma4q-mkmodel --preset 12b --layers 6 --out "$work/m12b6" --force --quiet >/dev/null
python3 scripts/oracle/compare_transformers.py --model "$work/m12b6" --binary "$bin" \
    --lengths 1100 --devices cpu,cuda 2>&1 | grep -v "Loading weights"
cp "$OUT/compare_transformers.json" "$OUT/oracle_12b6_1100.json" 2>/dev/null
python3 scripts/oracle/compare_transformers.py --model "$work/m12b6" --binary "$bin" \
    --lengths 2048 --devices cuda 2>&1 | grep -v "Loading weights"
cp "$OUT/compare_transformers.json" "$OUT/oracle_12b6_2048.json" 2>/dev/null
