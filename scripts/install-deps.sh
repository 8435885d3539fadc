#!/usr/bin/env bash
# Installs what gemma4q needs to build and test on Debian 12 (run as root or with sudo).
# The CUDA toolkit (nvcc, cuBLAS) is expected in /usr/local/cuda; it is not installed here.
set -euo pipefail
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_ apt-get update -qq
$sudo_ apt-get install -y -qq --no-install-recommends \
    cmake make gcc g++ pkg-config python3 python3-pip \
    libcjson-dev libarchive-dev libyaml-dev nettle-dev \
    clang libclang-rt-14-dev >/dev/null
if [ ! -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
    echo "install-deps: no CUDA toolkit found (nvcc); configure with -DG4Q_CUDA=OFF for a CPU-only build" >&2
fi
# Independent oracles used by some tests (Python safetensors and tokenizers); optional.
python3 -m pip install -q --disable-pip-version-check tokenizers safetensors numpy 2>/dev/null ||
    echo "install-deps: pip packages not installed; the Python cross-checks will be skipped" >&2
echo "install-deps: done"
