#!/usr/bin/env bash
# The runs of bench/results/h200_2026-12-03-c.md in one call on the GPU machine, most important
# first (the call may be cut short): the GPU tests; on the 12b preset quantize end to end
# (nvfp4-mlp-only with its 512 x 1024 calibration, then two weight-only recipes), generate,
# prefill/decode, the I/O floor; the calibration profile of the 12b preset cut to 4 layers; and,
# with LC_EXPORT set and the trained referee in /tmp/ts, GPTQ W4A16 against llm-compressor's
# (scripts/peers/gptq_vs_llmcompressor.sh). Tools from BIN (default build/).
# Usage: scripts/bench/h200_session_c.sh [BIN]
set -uo pipefail
bin=${1:-build}
G4Q_TOOLS=$bin . scripts/gpu/env.sh >/dev/null
for t in test_backend_gpu test_quant_gpu test_gptq_gpu; do
    echo "$t: $($t 2>&1 | grep -E 'passed|FAIL' | tail -3)"
done
gemma4q-mkmodel --preset 12b --out /tmp/m12 --quiet | tail -1
bash scripts/bench/quantize.sh /tmp/m12 /tmp/q cuda recipes/nvfp4-mlp-only.yaml \
    scripts/bench/recipes/w4a16-nvfp4-mse.yaml recipes/fp8-block.yaml 2>&1 | grep -E "bench|gemma4q:"
python3 -c "import json; c=json.load(open('/tmp/q/nvfp4-mlp-only.report.json'))['calibration']; print('calibration', c['seconds'], 's, binding weights', c['bind_seconds'], 's')"
gemma4q-inspect --check /tmp/q/nvfp4-mlp-only | tail -1
rm -rf /tmp/q
gemma4q-run generate --model /tmp/m12 --prompt "The quick brown fox" --max-tokens 256 2>&1 >/dev/null | tail -2
test_backend_gpu --bench /tmp/m12 1024 64 2>&1 | grep -iE "prefill|decode" | head -4
bash scripts/bench/io_floor.sh /tmp/m12 /tmp/w 8
rm -rf /tmp/m12
gemma4q-mkmodel --preset 12b --layers 4 --out /tmp/m4 --quiet >/dev/null
PROFILE_SAMPLES=2 bash scripts/bench/profile_calib.sh /tmp/m4 recipes/nvfp4-mlp-only.yaml /tmp/pc 2>&1 | head -24
rm -rf /tmp/m4 /tmp/pc
if [ -d /tmp/ts ] && [ -n "${LC_EXPORT:-}" ]; then
    VARIANTS="max-gptq mse-gptq max-rtn max-gptq-seq" SAMPLES=128 SEQ_LEN=512 \
        bash scripts/peers/gptq_vs_llmcompressor.sh /tmp/ts /tmp/ts/heldout.txt /tmp/lcq cuda 2>&1 | tail -9
fi
