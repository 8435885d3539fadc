#!/usr/bin/env bash
# Benchmarks the CUDA forward pass (src/backend/cuda) on a model folder: decode tokens/s at batch 1
# (median over STEPS steps after 8 warm-up steps), prefill tokens/s of a PROMPT-token prompt (median
# of 3 after one warm-up) and the backend's peak GPU memory. The benchmark itself is the
# `--bench` mode of the gpu test program, so it needs no separate build target.
# Usage: scripts/bench/forward_gpu.sh BUILD_DIR [MODEL_DIR [PROMPT [STEPS]]]
#   MODEL_DIR defaults to /tmp/m12b, generated with `gemma4q-mkmodel --preset 12b` (24 GB) when
#   missing. Needs an NVIDIA GPU with about 30 GB of memory for the 12B.
set -euo pipefail
build=${1:?usage: forward_gpu.sh BUILD_DIR [MODEL_DIR [PROMPT [STEPS]]]}
model=${2:-/tmp/m12b}
prompt=${3:-1024}
steps=${4:-64}
if [ ! -f "$model/config.json" ]; then
    t0=$(date +%s)
    "$build/gemma4q-mkmodel" --preset 12b --out "$model" | tail -n 4
    echo "mkmodel 12b: $(( $(date +%s) - t0 )) s"
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
"$build/test_backend_gpu" --bench "$model" "$prompt" "$steps"
