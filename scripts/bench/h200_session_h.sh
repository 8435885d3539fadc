#!/usr/bin/env bash
# The runs of bench/results/h200_2026-12-04-h.md on the GPU machine (split over calls there, by
# the 10-minute limit; PARTS picks them, default all):
#   tests    the GPU tests of the Hessian and GPTQ paths
#   12b      the 12b end-to-end timings of the W4A4 / W4A16 MSE and imatrix recipes and of INT4
#            GPTQ on every Linear, 512 x 1024 calibration tokens
#   peers    gemma4q's and llm-compressor's GPTQ W4A16 on the 12b, 128 x 1024 tokens, the same ids
#            (carry .whl: scripts/peers/wheels.sh)
#   quality  the referee's INT4 and NVFP4 W4A16 GPTQ against RTN on its held-out text (REFEREE)
# Usage: scripts/bench/h200_session_h.sh [BIN [REFEREE]]   (BIN: the built tools and test programs)
set -uo pipefail
bin=${1:-build} ref=${2:-../shared/data/trained-small}
G4Q_TOOLS=$bin . scripts/gpu/env.sh >/dev/null
parts=${PARTS:-tests 12b peers quality}
b=scripts/bench/recipes
for p in $parts; do
    case $p in
    tests)
        bash scripts/gpu/check.sh \
            tests:test_quant_gpu,test_gptq_gpu,test_calibrate_gpu,test_wquant_pipe_gpu,test_export_pipe_gpu ;;
    12b)
        [ -d /tmp/m12 ] || gemma4q-mkmodel --preset 12b --out /tmp/m12 --quiet | tail -1
        RECIPES="recipes/nvfp4-mlp-only.yaml $b/nvfp4-mlp-only-imatrix.yaml $b/w4a16-nvfp4-mse.yaml \
            $b/w4a16-nvfp4-imatrix.yaml $b/int4-all-gptq-algo.yaml" \
            bash scripts/bench/gptq_12b.sh /tmp/m12 /tmp/g12 ;;
    peers)
        CALIB_SAMPLES=128 CALIB_SEQ_LEN=1024 bash scripts/bench/peers_12b.sh /tmp/pw model \
            g4q:scripts/peers/recipes/ct-w4a16-int4-gptq.yaml llmc:w4a16_gptq ;;
    quality)
        CALIB=builtin:default ONLY='^(int4\|(rtn max|gptq mse)|w4a16\|(rtn mse|gptq mse))$' \
            bash scripts/bench/quality_variants.sh "$ref" /tmp/qv cuda "$ref/heldout.txt" ;;
    *) echo "unknown part $p (tests 12b peers quality)" >&2; exit 2 ;;
    esac
done
