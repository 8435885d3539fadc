#!/usr/bin/env bash
# The runs of bench/results/h200_2026-12-03-e.md in one call on the GPU machine, most important
# first (the call may be cut short): the GPU tests; the packed-weight widening and GEMV benches;
# on the 12b preset: the I/O floor (scripts/bench/io_floor.sh), quantize end to end (three
# weight-only recipes, then nvfp4-mlp-only with its 512 x 1024 calibration), decode and prefill in
# BF16 and per packed format (scripts/bench/forward_quant_gpu.sh); then, given the trained referee
# (REFEREE_DIR), the smoothing / GPTQ quality variants (scripts/bench/quality_variants.sh) on a
# development text (DEV_TEXT) and its held-out text; last the CPU/GPU export identity test on the
# tiny preset. Tools from BIN (default build/).
# Usage: scripts/bench/h200_session_e.sh [BIN [REFEREE_DIR DEV_TEXT]]
set -uo pipefail
bin=${1:-build} ref=${2:-} dev=${3:-}
G4Q_TOOLS=$bin . scripts/gpu/env.sh >/dev/null
for t in test_qgemm_gpu test_wquant_pipe_gpu test_export_pipe_gpu test_backend_gpu test_model_gpu test_quant_gpu \
    test_calibrate_gpu test_gptq_gpu test_eval_gpu; do
    [ -x build/$t ] && echo "$t: $(build/$t 2>&1 | grep -E 'passed|FAIL' | tail -4)"
done
build/test_qgemm_gpu --bench 2>&1 | grep -E "^bench (widen|prefill|gemv .* n 1:)"
[ -d /tmp/m12 ] || gemma4q-mkmodel --preset 12b --out /tmp/m12 --quiet | tail -1
bash scripts/bench/io_floor.sh /tmp/m12 /tmp/w 8
rm -rf /tmp/w
bash scripts/bench/quantize.sh /tmp/m12 /tmp/q cuda recipes/nvfp4a16.yaml \
    scripts/bench/recipes/w4a16-nvfp4-mse.yaml recipes/fp8-block.yaml recipes/nvfp4-mlp-only.yaml \
    2>&1 | grep -E "bench|gemma4q:"
python3 -c "import json; c=json.load(open('/tmp/q/nvfp4-mlp-only.report.json'))['calibration']; print('calibration', c['seconds'], 's, binding weights', c['bind_seconds'], 's')"
gemma4q-inspect --check /tmp/q/nvfp4-mlp-only | tail -1
rm -rf /tmp/q
bash scripts/bench/forward_quant_gpu.sh build /tmp/m12 /tmp/m12q 1024 64 >/tmp/fq.txt 2>&1
grep -E "^SUMMARY" /tmp/fq.txt
if [ -n "$ref" ]; then
    bash scripts/bench/quality_variants.sh "$ref" /tmp/qv cuda "$dev" "$ref/heldout.txt"
fi
G4Q_IDENTITY_PRESET=tiny bash tests/cli_export_identity_gpu.sh build . 2>&1 | tail -3
