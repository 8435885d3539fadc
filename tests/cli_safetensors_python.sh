#!/bin/bash
# Cross-checks src/io/safetensors against the independent Python safetensors package: the C and
# Python listings (names, dtypes, shapes, sha256 of the bytes, metadata) must agree for
# (a) a sharded checkpoint written by the C writer and (b) a file written by Python.
# Usage: bash tests/cli_safetensors_python.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$1
SRC=$2
fail() { echo "FAIL: $*"; exit 1; }
. "$2/tests/python_oracle.sh" # PY, need_py
need_py "safetensors, numpy"
T="$BUILD/test_safetensors"
if [ ! -x "$T" ]; then
    echo "FAIL: $T not built (cmake --build $BUILD --target test_safetensors)"
    exit 1
fi
CHK="$SRC/scripts/ci/check_safetensors.py"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cli_st_py.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export LC_ALL=C

compare() { # what, c listing, python listing
    sort -u "$2" >"$2.sorted"
    sort -u "$3" >"$3.sorted"
    if [ "$(grep -c '^tensor ' "$2.sorted")" -lt 5 ]; then
        echo "FAIL: $1: C listing has too few tensors"
        cat "$2.sorted"
        exit 1
    fi
    if ! diff -u "$2.sorted" "$3.sorted"; then
        echo "FAIL: $1: C and Python listings differ"
        exit 1
    fi
    echo "ok: $1 ($(grep -c '^tensor ' "$2.sorted") tensors agree)"
}

# (a) C writes a sharded checkpoint; both list it.
"$T" --write-sample "$tmp/c" >"$tmp/a_c.txt"
nshards=$(ls "$tmp/c" | grep -c '^model-[0-9]*-of-[0-9]*\.safetensors$' || true)
if [ "$nshards" -lt 2 ] || [ ! -f "$tmp/c/model.safetensors.index.json" ]; then
    echo "FAIL: expected a sharded checkpoint, got: $(ls "$tmp/c")"
    exit 1
fi
"$PY" "$CHK" list "$tmp/c" >"$tmp/a_py.txt"
compare "C-written checkpoint, $nshards shards" "$tmp/a_c.txt" "$tmp/a_py.txt"

# (b) Python writes a file; both list it.
"$PY" "$CHK" write "$tmp/py.safetensors" 4242
"$T" --list "$tmp/py.safetensors" >"$tmp/b_c.txt"
"$PY" "$CHK" list "$tmp/py.safetensors" >"$tmp/b_py.txt"
compare "Python-written file" "$tmp/b_c.txt" "$tmp/b_py.txt"

# (c) The same file as a checkpoint folder.
mkdir "$tmp/pydir"
cp "$tmp/py.safetensors" "$tmp/pydir/model.safetensors"
"$T" --list "$tmp/pydir" >"$tmp/c_c.txt"
compare "Python-written folder" "$tmp/c_c.txt" "$tmp/b_py.txt"
echo "PASS"
