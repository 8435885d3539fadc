# Sourced by scripts that run on the GPU machine: finds the carried libraries and the build.
# Usage: . scripts/gpu/env.sh   (from the repository root)
export LD_LIBRARY_PATH="$PWD/.devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PWD/.gpubin:$PWD/build:$PATH"
export PYTHONUNBUFFERED=1
export OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
