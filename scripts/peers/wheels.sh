#!/usr/bin/env bash
# Downloads the wheels the peer drivers need on the GPU machine (Python 3.12, manylinux x86_64),
# which already has torch 2.11, transformers 5.17, safetensors, numpy, accelerate,
# huggingface_hub, pandas, pyarrow, psutil, requests, scipy, rich, regex, xxhash, py-cpuinfo,
# nvidia-ml-py, ninja, pyyaml. One version of each package (llm-compressor 0.14.0.1 pins
# auto-round <= 0.15.1). Usage: scripts/peers/wheels.sh [DEST]   (default: REPO/.whl, git-ignored)
# On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:-$root/.whl}
mkdir -p "$dest"
pkgs=(
  nvidia-modelopt==0.47.0 omegaconf==2.4.0 pulp==3.3.2
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
  llmcompressor==0.14.0.1 compressed-tensors==0.19.0 auto-round==0.15.1
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 loguru==0.7.3
)
py=${PYTHON:-python3}
for p in "${pkgs[@]}"; do
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$dest" "$p"
done
ls -l "$dest" | awk 'NR > 1 {printf "%10d  %s\n", $5, $9}'
du -sh "$dest"
