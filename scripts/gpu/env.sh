# Sourced by scripts that run on the GPU machine: finds the carried libraries and the build.
# Usage: [G4Q_TOOLS=DIR] . scripts/gpu/env.sh   (from the repository root)
#   G4Q_TOOLS: a folder of built tools to run: copied into build/ (unless it is build), and build/
#   put first on PATH. (A variable, not an argument: `.` without arguments passes on the caller's.)
export LD_LIBRARY_PATH="$PWD/.devlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$PWD/.gpubin:$PWD/build:$PATH"
export PYTHONUNBUFFERED=1
export OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ -n "${G4Q_TOOLS:-}" ]; then
    mkdir -p build
    [ "$G4Q_TOOLS" = build ] || cp "$G4Q_TOOLS"/* build/
    export PATH="$PWD/build:$PATH"
fi
