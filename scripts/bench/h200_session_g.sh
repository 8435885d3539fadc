#!/usr/bin/env bash
# The runs of bench/results/h200_2026-12-03-g.md on the GPU machine (split over calls there, by
# the 10-minute limit; PARTS picks them, default all): the referee's quality variants on both
# calibration sets, its W4A4 error budget, GPTQ against llm-compressor on the in-domain ids, and
# the 12b timings of the calibrated recipes. Prepared on the development machine (Debian 12,
# man pages installed) and carried:
#   python3 scripts/calib/debian_man.py ../shared/data/trained-small/heldout.txt CALIB.jsonl
#   scripts/peers/gptq_vs_llmcompressor.sh's steps 1-2 with CALIB=CALIB.jsonl, DEVICE=cpu (its
#   LC export; llm-compressor runs on the CPU there)
# Usage: scripts/bench/h200_session_g.sh REFEREE_DIR DEV_TEXT CALIB.jsonl LC_EXPORT [BIN]
set -uo pipefail
ref=${1:?usage: h200_session_g.sh REFEREE_DIR DEV_TEXT CALIB.jsonl LC_EXPORT [BIN]}
dev=${2:?dev text} calib=${3:?calibration jsonl} lc=${4:?llm-compressor export} bin=${5:-build}
parts=${PARTS:-quality budget peers 12b}
G4Q_TOOLS=$bin . scripts/gpu/env.sh >/dev/null
qv=scripts/bench/quality_variants.sh
for p in $parts; do
    case $p in
    quality)
        O='^(w4a16\|(rtn mse|hessian|gptq mse|gptq hessian|gptq hessian seq)|int4\|(rtn max|gptq mse)|w4a4\|(rtn mse|gptq hessian))$'
        for c in builtin:default "$calib"; do
            echo "== calibration $c"
            CALIB=$c ONLY="$O" bash $qv "$ref" /tmp/qv cuda "$dev" "$ref/heldout.txt"
        done
        O='^(w4a4\|(rtn mse|gptq mse|gptq mse seq|gptq hessian seq|awq mse|awq gptq mse|awq gptq hessian)|w4a16\|(rtn mse|gptq mse seq|awq gptq mse|gptq hessian seq))$'
        CALIB=$calib ONLY="$O" bash $qv "$ref" /tmp/qv cuda "$dev" "$ref/heldout.txt" ;;
    budget) # the w4a4 rtn mse export of the last quality run, under each engine numerics
        for emu in none sm90 sm100; do
            for t in "$dev" "$ref/heldout.txt"; do
                echo "w4a4 rtn mse emulate $emu $(basename "$t"): $(gemma4q-run compare --model "$ref" \
                    --quantized /tmp/qv/w4a4-rtn-mse --file "$t" --window 512 --stride 256 \
                    --device cuda --emulate $emu --json --quiet |
                    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["kl_mean"], j["top1_agreement"])')"
            done
        done ;;
    peers)
        CALIB=$calib LC_EXPORT=$lc VARIANTS="max-gptq mse-gptq max-rtn max-gptq-seq" \
            bash scripts/peers/gptq_vs_llmcompressor.sh "$ref" "$ref/heldout.txt" /tmp/lcg cuda ;;
    12b)
        [ -d /tmp/m12 ] || gemma4q-mkmodel --preset 12b --out /tmp/m12 --quiet | tail -1
        b=scripts/bench/recipes
        RECIPES="$b/int4-all-gptq-algo.yaml $b/w4a16-nvfp4-gptq.yaml $b/w4a16-nvfp4-mse.yaml \
            $b/w4a16-nvfp4-imatrix.yaml recipes/nvfp4-mlp-only.yaml $b/nvfp4-mlp-only-imatrix.yaml" \
            bash scripts/bench/gptq_12b.sh /tmp/m12 /tmp/g12 ;;
    *) echo "unknown part $p (quality budget peers 12b)" >&2; exit 2 ;;
    esac
done
