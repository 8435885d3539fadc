#!/usr/bin/env bash
# The runs of bench/results/h200_2026-12-04-h.md on the GPU machine, in one call: the GPU tests of
# the Hessian paths, then the 12b end-to-end timings of the W4A4 / W4A16 MSE and imatrix recipes.
# Usage: scripts/bench/h200_session_h.sh [BIN]   (BIN: the built tools and test_*_gpu programs)
set -uo pipefail
G4Q_TOOLS=${1:-build} . scripts/gpu/env.sh >/dev/null
bash scripts/gpu/check.sh \
    tests:test_quant_gpu,test_gptq_gpu,test_calibrate_gpu,test_wquant_pipe_gpu,test_export_pipe_gpu
[ -d /tmp/m12 ] || gemma4q-mkmodel --preset 12b --out /tmp/m12 --quiet | tail -1
b=scripts/bench/recipes
RECIPES="recipes/nvfp4-mlp-only.yaml $b/nvfp4-mlp-only-imatrix.yaml $b/w4a16-nvfp4-mse.yaml \
    $b/w4a16-nvfp4-imatrix.yaml" bash scripts/bench/gptq_12b.sh /tmp/m12 /tmp/g12
