# One NVFP4 W4A4 Linear of the CPU backend (test_actq --dump) against an independent numpy
# computation from the format description (scripts/check/w4a4_linear.py).
# Usage: bash cli_actq_numpy.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
B=$1
S=$2
PY=${G4Q_PYTHON:-python3}
"$PY" -c "import numpy" 2>/dev/null || {
    echo "FAIL: the numpy oracle needs numpy, which $PY cannot import: run scripts/install-deps.sh"
    exit 1
}
T=$(mktemp -d "${TMPDIR:-/tmp}/cli_actq.XXXXXX")
trap 'rm -rf "$T"' EXIT
out=$("$B/test_actq" --dump "$T")
echo "$out" | tail -n 2
dims=$(echo "$out" | sed -n 's/^dump: rows \([0-9]*\) cols \([0-9]*\) n \([0-9]*\) .*/\1 \2 \3/p')
[ -n "$dims" ] || { echo "FAIL: test_actq wrote no dump"; exit 1; }
# shellcheck disable=SC2086
"$PY" "$S/scripts/check/w4a4_linear.py" "$T" $dims
echo "1 passed, 0 failed"
