#!/usr/bin/env bash
# Installs what gemma4q needs to build and test on Debian 12 (run as root or with sudo): the
# Debian packages, then the tests' independent Python oracles (numpy, tokenizers, safetensors)
# into a virtual environment .venv at the repository root (Debian's python3 refuses system-wide
# pip installs, PEP 668); CMake hands .venv/bin/python3 to the tests (G4Q_PYTHON).
# The CUDA toolkit (nvcc, cuBLAS) is expected in /usr/local/cuda; it is not installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_ apt-get update -qq
$sudo_ apt-get install -y -qq --no-install-recommends \
    cmake make gcc g++ pkg-config python3 python3-venv \
    libcjson-dev libarchive-dev libyaml-dev nettle-dev \
    clang libclang-rt-14-dev >/dev/null
if [ ! -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
    echo "install-deps: no CUDA toolkit found (nvcc); cmake will build the CPU-only product" >&2
fi
# The tests' Python oracles, in .venv (made with python3 on PATH; G4Q_PYTHON_BASE overrides).
base=${G4Q_PYTHON_BASE:-python3}
if ! .venv/bin/python3 -c 'import sys' 2>/dev/null; then
    "$base" -m venv --clear .venv || {
        echo "install-deps: '$base -m venv .venv' failed (Debian: apt-get install python3-venv)" >&2
        exit 1
    }
fi
.venv/bin/python3 -m pip install -q --disable-pip-version-check numpy tokenizers safetensors || {
    echo "install-deps: pip install numpy tokenizers safetensors into .venv failed" >&2
    exit 1
}
.venv/bin/python3 -c 'import numpy, tokenizers, safetensors' || {
    echo "install-deps: .venv/bin/python3 cannot import numpy, tokenizers, safetensors" >&2
    exit 1
}
echo "install-deps: done (tests' Python: $PWD/.venv/bin/python3)"
