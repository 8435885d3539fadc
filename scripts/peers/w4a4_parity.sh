#!/usr/bin/env bash
# W4A4 parity with ModelOpt on the tiny preset: gemma4q calibrates and quantizes with the public
# W4A4 recipes, writes the calibration ids it used (--dump-calib), ModelOpt calibrates on exactly
# those ids, and gemma4q-inspect --diff lines the two exports up. GPU machine, repository root,
# after `. scripts/gpu/env.sh` and with the peer wheels installed on PYTHONPATH (README.md).
# Usage: scripts/peers/w4a4_parity.sh WORK [SAMPLES] [SEQ_LEN]
set -uo pipefail
work=$1 n=${2:-16} len=${3:-256}
mkdir -p "$work"
gemma4q-mkmodel --preset tiny --out "$work/tiny" --force --quiet >/dev/null || exit 1
for pair in nvfp4:nvfp4 nvfp4-mlp-only:nvfp4_mlp_only; do
    recipe=${pair%%:*} fmt=${pair#*:}
    for dev in cuda cpu; do
        printf '\n=== %s: gemma4q (%s) vs ModelOpt (cuda), %s x %s calibration tokens\n' \
            "$recipe" "$dev" "$n" "$len"
        gemma4q-quantize --model "$work/tiny" --recipe "recipes/$recipe.yaml" \
            --out "$work/g-$recipe-$dev" --device "$dev" --calib-samples "$n" \
            --calib-seq-len "$len" --dump-calib "$work/ids-$recipe-$dev.bin" --force --quiet ||
            continue
        cmp -s "$work/ids-$recipe-cuda.bin" "$work/ids-$recipe-$dev.bin" ||
            echo "calibration ids differ between devices"
        [ -d "$work/mo-$recipe" ] ||
            python3 scripts/peers/modelopt_export.py --model "$work/tiny" --out "$work/mo-$recipe" \
                --format "$fmt" --device cuda --calib "$work/ids-$recipe-cuda.bin:$len" 2>&1 |
            tail -n 2
        gemma4q-inspect --diff "$work/mo-$recipe" "$work/g-$recipe-$dev" | tail -n 40
    done
done
