#!/usr/bin/env bash
# Parity with ModelOpt for the formats that calibrate (W4A4, W8A8, FP8 KV scales), on the tiny
# preset: gemma4q calibrates and quantizes, writes the calibration ids it used (--dump-calib),
# ModelOpt calibrates on exactly those ids, and gemma4q-inspect --diff lines the two exports up
# (full diff in $OUT/parity-RECIPE-DEVICE.txt, its last lines printed). Pairs (gemma4q recipe :
# modelopt_export.py format): recipes/nvfp4 : nvfp4 (NVFP4_DEFAULT_CFG), and from
# scripts/peers/recipes/ mo-nvfp4-mlp-only : nvfp4_mlp_only, mo-nvfp4-mse : nvfp4_mse,
# mo-fp8 : fp8 (FP8_DEFAULT_CFG), mo-nvfp4-mlp-only-kv : nvfp4_mlp_only+kv (FP8_KV_CFG).
# GPU machine, repository root, after `. scripts/gpu/env.sh` with the peer wheels on PYTHONPATH
# (README.md). Usage: scripts/peers/calib_parity.sh WORK [SAMPLES] [SEQ_LEN] [DEVICES] [PAIRS]
set -uo pipefail
work=$1 n=${2:-16} len=${3:-256} devices=${4:-cuda cpu}
p=scripts/peers/recipes
pairs=${5:-recipes/nvfp4.yaml:nvfp4 $p/mo-nvfp4-mlp-only.yaml:nvfp4_mlp_only $p/mo-nvfp4-mse.yaml:nvfp4_mse $p/mo-fp8.yaml:fp8 $p/mo-nvfp4-mlp-only-kv.yaml:nvfp4_mlp_only+kv}
out=${OUT:-$work}
mkdir -p "$work" "$out"
gemma4q-mkmodel --preset tiny --out "$work/tiny" --force --quiet >/dev/null || exit 1
for pair in $pairs; do
    recipe=${pair%%:*} fmt=${pair#*:}
    name=$(basename "$recipe" .yaml)
    for dev in $devices; do
        printf '\n=== %s: gemma4q (%s) vs ModelOpt %s (cuda), %s x %s calibration tokens\n' \
            "$name" "$dev" "$fmt" "$n" "$len"
        gemma4q-quantize --model "$work/tiny" --recipe "$recipe" --out "$work/g-$name-$dev" \
            --device "$dev" --calib-samples "$n" --calib-seq-len "$len" \
            --dump-calib "$work/ids-$name-$dev.bin" --force --quiet || continue
        [ "$dev" = cuda ] || cmp -s "$work/ids-$name-cuda.bin" "$work/ids-$name-$dev.bin" ||
            echo "calibration ids differ between devices"
        [ -d "$work/mo-$name" ] ||
            python3 scripts/peers/modelopt_export.py --model "$work/tiny" --out "$work/mo-$name" \
                --format "$fmt" --device cuda --calib "$work/ids-$name-$dev.bin:$len" 2>&1 |
            tail -n 1
        gemma4q-inspect --diff "$work/mo-$name" "$work/g-$name-$dev" >"$out/parity-$name-$dev.txt"
        grep -v -E "^(DIFF|DEQUANT) .*input_scale" "$out/parity-$name-$dev.txt" | cut -c1-240 |
            tail -n 12
    done
done
