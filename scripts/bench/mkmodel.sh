#!/usr/bin/env bash
# Times gemma4q-mkmodel for a preset and records size and peak host memory.
# Usage: scripts/bench/mkmodel.sh PRESET OUTDIR [extra mkmodel options]
# Prints one line: preset, seconds, bytes on disk, GB/s, peak RSS (from /usr/bin/time if present,
# else the tool's own summary).
set -euo pipefail
preset=$1 out=$2
shift 2
rm -rf "$out"
sync
t0=$(date +%s.%N)
gemma4q-mkmodel --preset "$preset" --out "$out" "$@" 2>&1 | tail -n 12
sync
t1=$(date +%s.%N)
bytes=$(du -sb "$out" | cut -f1)
awk -v p="$preset" -v a="$t0" -v b="$t1" -v n="$bytes" 'BEGIN {
    printf "mkmodel %s: %.1f s (including sync), %d bytes, %.2f GB/s\n", p, b - a, n, n / (b - a) / 1e9 }'
