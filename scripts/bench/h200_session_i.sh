#!/usr/bin/env bash
# The runs of bench/results/h200_2026-12-04-i.md on the GPU machine (PARTS picks them, default all):
#   tests    the GPU tests of the decode path
#   models   the 12b preset and its nvfp4a16, fp8-block and INT4 (GPTQ layout) exports, in /tmp
#   decode   decode and prefill of each, context 1024, with the decode attention as two kernels
#            (G4Q_CUDA_ATTN_FUSED=0) and fused, both in the same call
#   profile  the decode step's kernels (ncu, one at a time) of the 12b cut to 4 layers, NVFP4
#            (three sliding layers and a global one), with the attention in both forms
# Usage: scripts/bench/h200_session_i.sh [BIN]   (BIN: the built tools and test programs)
set -uo pipefail
bin=${1:-build}
G4Q_TOOLS=$bin . scripts/gpu/env.sh >/dev/null
parts=${PARTS:-tests models decode profile}
for p in $parts; do
    case $p in
    tests)
        bash scripts/gpu/check.sh \
            tests:test_attention_gpu,test_backend_gpu,test_model_gpu,test_qgemm_gpu,test_eval_gpu ;;
    models)
        [ -d /tmp/m12 ] || gemma4q-mkmodel --preset 12b --out /tmp/m12 --quiet | tail -1
        for r in recipes/nvfp4a16.yaml recipes/fp8-block.yaml scripts/bench/recipes/int4-all-gptq.yaml; do
            n=$(basename "$r" .yaml)
            [ -d /tmp/q-$n ] || gemma4q-quantize --quiet --model /tmp/m12 --recipe "$r" \
                --out /tmp/q-$n --device cuda
        done ;;
    decode)
        for m in ${MODELS:-/tmp/m12 /tmp/q-nvfp4a16 /tmp/q-fp8-block /tmp/q-int4-all-gptq}; do
            for af in 0 1; do
                echo "$(basename $m) attn_fused=$af: $(G4Q_CUDA_ATTN_FUSED=$af test_qgemm_gpu \
                    --bench-model $m 1024 64 | grep -E 'decode|prefill' | sed 's/bench-model //' |
                    tr '\n' ' ')"
            done
        done ;;
    profile)
        [ -d /tmp/m4 ] || gemma4q-mkmodel --preset 12b --layers 4 --out /tmp/m4 --quiet | tail -1
        [ -d /tmp/q4 ] || gemma4q-quantize --quiet --model /tmp/m4 --recipe recipes/nvfp4a16.yaml \
            --out /tmp/q4 --device cuda
        for af in 0 1; do
            echo "attn_fused=$af"
            G4Q_CUDA_ATTN_FUSED=$af bash scripts/bench/profile_decode.sh /tmp/q4 1024 /tmp/pd$af.csv
        done ;;
    *) echo "unknown part $p (tests models decode profile)" >&2; exit 2 ;;
    esac
done
