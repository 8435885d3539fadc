#!/usr/bin/env bash
# The runs of bench/results/h200_2026-12-03-d.md in one call on the GPU machine, most important
# first (the call may be cut short): the GPU tests; the calibration profile of the 12b preset cut to
# 4 layers (scripts/bench/profile_calib.sh) and the prefill profile of the same model; on the 12b
# preset: quantize end to end (nvfp4-mlp-only with its 512 x 1024 calibration, then two weight-only
# recipes), BF16 prefill/decode, then decode and prefill per packed format
# (scripts/bench/forward_quant_gpu.sh, which also prints the GEMV alone per format).
# Tools from BIN (default build/). Usage: scripts/bench/h200_session_d.sh [BIN]
set -uo pipefail
bin=${1:-build}
G4Q_TOOLS=$bin . scripts/gpu/env.sh >/dev/null
for t in test_backend_gpu test_quant_gpu test_gptq_gpu test_qgemm_gpu test_eval_gpu test_calibrate_gpu; do
    [ -x build/$t ] && echo "$t: $(build/$t 2>&1 | grep -E 'passed|FAIL' | tail -4)"
done
gemma4q-mkmodel --preset 12b --layers 4 --out /tmp/m4 --quiet >/dev/null
PROFILE_SAMPLES=2 bash scripts/bench/profile_calib.sh /tmp/m4 recipes/nvfp4-mlp-only.yaml /tmp/pc 2>&1 | head -24
PROFILE_KERNELS=2000 bash scripts/bench/profile_prefill.sh /tmp/m4 1024 /tmp/prefill.csv 2>&1 | head -24
rm -rf /tmp/m4 /tmp/pc
gemma4q-mkmodel --preset 12b --out /tmp/m12 --quiet | tail -1
bash scripts/bench/quantize.sh /tmp/m12 /tmp/q cuda recipes/nvfp4-mlp-only.yaml \
    scripts/bench/recipes/w4a16-nvfp4-mse.yaml recipes/fp8-block.yaml 2>&1 | grep -E "bench|gemma4q:"
python3 -c "import json; c=json.load(open('/tmp/q/nvfp4-mlp-only.report.json'))['calibration']; print('calibration', c['seconds'], 's, binding weights', c['bind_seconds'], 's')"
gemma4q-inspect --check /tmp/q/nvfp4-mlp-only | tail -1
rm -rf /tmp/q
test_backend_gpu --bench /tmp/m12 1024 64 2>&1 | grep -iE "prefill|decode" | head -4
bash scripts/bench/forward_quant_gpu.sh build /tmp/m12 /tmp/m12q 1024 64 2>&1 | grep -E "^bench gemv|SUMMARY|quantize"
