# Sourced by the cli_*.sh tests that use a Python oracle (needs `fail` defined first):
# PY is the interpreter CMake hands over (G4Q_PYTHON, the .venv of scripts/install-deps.sh), and
# need_py MODULES makes the test fail, saying what to install, when they do not import.
PY=${G4Q_PYTHON:-python3}
need_py() {
    "$PY" -c "import $1" 2>/dev/null || fail "the Python oracle needs $1, which $PY cannot import: \
run scripts/install-deps.sh (it puts numpy, tokenizers, safetensors in .venv, which CMake hands to \
the tests), or point G4Q_PYTHON at a python3 that has them (cmake -DG4Q_PYTHON=PATH)"
}
