# Orderings of quantization quality that must hold on the trained referee model
# (../shared/data/trained-small, CPU): on a slice of its held-out text,
#   - FP8 128x128 blocks (fp8-block, sm90 numerics) has a lower KL than NVFP4 W4A16 (nvfp4a16);
#   - NVFP4 W4A4 (nvfp4) with sm100 numerics has a higher KL than the same export run weight-only
#     (--emulate none): the activation quantization costs something the weight-only run hides.
# Only orderings are asserted, no tuned values.
# Usage: bash cli_quality.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
B=$1
S=$2
SH=${G4Q_SHARED_DIR:-$S/../shared}
M=$SH/data/trained-small
[ -f "$M/model.safetensors" ] || {
    echo "FAIL: the trained referee $M is missing: set G4Q_SHARED_DIR (cmake -DG4Q_SHARED_DIR=DIR)"
    exit 1
}
T=$(mktemp -d "${TMPDIR:-/tmp}/cli_quality.XXXXXX")
trap 'rm -rf "$T"' EXIT
head -c 6000 "$M/heldout.txt" >"$T/t.txt"
Q() { "$B/gemma4q-quantize" --model "$M" --out "$T/$1" --recipe "$S/recipes/$1.yaml" --quiet "${@:2}"; }
Q fp8-block
Q nvfp4a16
Q nvfp4 --calib-samples 16 --calib-seq-len 256
kl() { # EXPORT MODE
    "$B/gemma4q-run" compare --model "$M" --quantized "$T/$1" --file "$T/t.txt" --window 512 \
        --stride 256 --emulate "$2" --json --quiet | sed -n 's/.*"kl_mean": *\([^,]*\),*/\1/p'
}
fp8=$(kl fp8-block sm90)
nv=$(kl nvfp4a16 auto)
w4a4=$(kl nvfp4 sm100)
wo=$(kl nvfp4 none)
echo "KL: fp8-block sm90 $fp8, nvfp4a16 $nv, nvfp4 sm100 $w4a4, nvfp4 none $wo"
awk -v a="$fp8" -v b="$nv" 'BEGIN { exit !(a > 0 && a < b) }' ||
    { echo "FAIL: fp8-block KL $fp8 is not below nvfp4a16's $nv"; exit 1; }
awk -v a="$w4a4" -v b="$wo" 'BEGIN { exit !(b > 0 && a > b) }' ||
    { echo "FAIL: W4A4 with sm100 (KL $w4a4) is not worse than weight-only ($wo)"; exit 1; }
echo "2 passed, 0 failed"
