#!/usr/bin/env bash
# The transformers oracle only (tiny, small, 12b shape cut to 6 layers); see oracle.sh.
set -uo pipefail
. scripts/gpu/env.sh
work=${WORK:-/tmp/g4q}
mkdir -p "$work"
log() { printf '\n=== %s\n' "$*"; }
bin=$(command -v gemma4q-run)
for m in tiny small; do
    log "oracle: $m"
    gemma4q-mkmodel --preset $m --out "$work/$m" --force --quiet >/dev/null
    python3 scripts/oracle/compare_transformers.py --model "$work/$m" --binary "$bin" \
        --lengths 16,100,300 --devices cpu,cuda --check-fp64 2>&1 | grep -v "Loading weights"
    cp "$OUT/compare_transformers.json" "$OUT/oracle_$m.json" 2>/dev/null
done

log "oracle: 12b shape, 6 layers"
gemma4q-mkmodel --preset 12b --layers 6 --out "$work/m12b6" --force --quiet >/dev/null
python3 scripts/oracle/compare_transformers.py --model "$work/m12b6" --binary "$bin" \
    --lengths 16,1100 --devices cpu,cuda 2>&1 | grep -v "Loading weights"
cp "$OUT/compare_transformers.json" "$OUT/oracle_12b6_cpu.json" 2>/dev/null
python3 scripts/oracle/compare_transformers.py --model "$work/m12b6" --binary "$bin" \
    --lengths 2048 --devices cuda 2>&1 | grep -v "Loading weights"
cp "$OUT/compare_transformers.json" "$OUT/oracle_12b6_2048.json" 2>/dev/null

