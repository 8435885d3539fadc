# GPTQ through gemma4q-quantize on the trained referee (../shared/data/trained-small, CPU): the
# Linears with algorithm gptq are quantized inside the calibration pass, layer by layer
# (src/pipeline/quantize.h). On the attention and gate/up Linears (the narrow ones, so that the
# CPU reference stays quick), INT4 g128:
#   - the GPTQ export passes gemma4q-inspect --check, and a second run gives the same bytes;
#   - sequential calibration (calibration.sequential: true) gives another valid export, and its
#     manifest says so;
#   - on a slice of the held-out text, both GPTQ exports have a lower KL than round-to-nearest
#     with the same scale rule (an ordering only, no tuned value).
# Usage: bash cli_gptq.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
B=$1
S=$2
SH=${G4Q_SHARED_DIR:-$S/../shared}
M=$SH/data/trained-small
[ -f "$M/model.safetensors" ] || {
    echo "FAIL: the trained referee $M is missing: set G4Q_SHARED_DIR (cmake -DG4Q_SHARED_DIR=DIR)"
    exit 1
}
T=$(mktemp -d "${TMPDIR:-/tmp}/cli_gptq.XXXXXX")
trap 'rm -rf "$T"' EXIT
head -c 6000 "$M/heldout.txt" >"$T/t.txt"
recipe() { # NAME ALGORITHM SEQUENTIAL
    cat >"$T/$1.yaml" <<EOF
name: $1
export: gptq
rules:
  - pattern: "model.language_model.layers.*.self_attn.*_proj"
    weights: int4
    scale_search: max
    algorithm: $2
  - pattern: "model.language_model.layers.*.mlp.{gate,up}_proj"
    weights: int4
    scale_search: max
    algorithm: $2
calibration:
  dataset: builtin:default
  samples: 8
  seq_len: 256
  sequential: $3
EOF
}
recipe rtn rtn false
recipe gptq gptq false
recipe seq gptq true
Q() { "$B/gemma4q-quantize" --model "$M" --recipe "$T/$1.yaml" --out "$T/${2:-$1}" --device cpu --quiet; }
Q rtn
Q gptq
Q gptq gptq2
Q seq
fail=0
for e in gptq seq; do
    "$B/gemma4q-inspect" --check "$T/$e" >"$T/$e.check" 2>&1 ||
        { echo "FAIL: inspect --check $e:"; cat "$T/$e.check"; fail=1; }
done
cmp -s "$T/gptq/model.safetensors" "$T/gptq2/model.safetensors" ||
    { echo "FAIL: two GPTQ runs wrote different weights"; fail=1; }
grep -q '"sequential": *true' "$T/seq/manifest.json" ||
    { echo "FAIL: the sequential export's manifest does not say sequential"; fail=1; }
cmp -s "$T/gptq/model.safetensors" "$T/seq/model.safetensors" &&
    { echo "FAIL: sequential calibration changed nothing"; fail=1; }
kl() {
    "$B/gemma4q-run" compare --model "$M" --quantized "$T/$1" --file "$T/t.txt" --window 512 \
        --stride 256 --device cpu --json --quiet | sed -n 's/.*"kl_mean": *\([^,]*\),*/\1/p'
}
rtn=$(kl rtn)
gptq=$(kl gptq)
seq=$(kl seq)
echo "KL: rtn $rtn, gptq $gptq, gptq sequential $seq"
for v in "gptq $gptq" "sequential $seq"; do
    set -- $v
    awk -v a="$2" -v b="$rtn" 'BEGIN { exit !(a > 0 && a < b) }' ||
        { echo "FAIL: $1 KL $2 is not below round-to-nearest's $rtn"; fail=1; }
done
[ $fail = 0 ] && echo "6 passed, 0 failed"
exit $fail
