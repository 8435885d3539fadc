# Activation-aware smoothing (rule key `smoothing: awq`, src/pipeline/smooth_layer.h) through
# gemma4q-quantize on the trained referee (../shared/data/trained-small, CPU), NVFP4 W4A4 on the
# MLP Linears:
#   - the export passes gemma4q-inspect --check;
#   - the factors are folded where smooth_layer.h says: every layer's pre_feedforward_layernorm
#     weight changed, input_layernorm and post_feedforward_layernorm are the input's bytes;
#   - the smoothed model still computes the model: its KL on a held-out slice is within 1.5x of
#     the unsmoothed export's (a wrong fold, e.g. a factor applied twice, is far outside);
#   - without the key the bytes are those of the same recipe without it (smoothing none is a no-op).
# Usage: bash cli_smooth.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
B=$1
S=$2
PY=${G4Q_PYTHON:-python3} # the standard library is enough
SH=${G4Q_SHARED_DIR:-$S/../shared}
M=$SH/data/trained-small
[ -f "$M/model.safetensors" ] || {
    echo "FAIL: the trained referee $M is missing: set G4Q_SHARED_DIR (cmake -DG4Q_SHARED_DIR=DIR)"
    exit 1
}
T=$(mktemp -d "${TMPDIR:-/tmp}/cli_smooth.XXXXXX")
trap 'rm -rf "$T"' EXIT
head -c 6000 "$M/heldout.txt" >"$T/t.txt"
recipe() { # NAME SMOOTHING-LINE
    cat >"$T/$1.yaml" <<EOF
name: $1
export: modelopt
rules:
  - pattern: "model.language_model.layers.*.mlp.*_proj"
    weights: nvfp4
    scale_search: max
    activations: nvfp4
$2
calibration:
  dataset: builtin:default
  samples: 4
  seq_len: 256
EOF
}
recipe plain ""
recipe none "    smoothing: none"
recipe awq "    smoothing: awq"
Q() { "$B/gemma4q-quantize" --model "$M" --recipe "$T/$1.yaml" --out "$T/$1" --device cpu --quiet; }
Q plain
Q none
Q awq
fail=0
"$B/gemma4q-inspect" --check "$T/awq" >"$T/awq.check" 2>&1 ||
    { echo "FAIL: inspect --check awq:"; cat "$T/awq.check"; fail=1; }
cmp -s "$T/plain/model.safetensors" "$T/none/model.safetensors" ||
    { echo "FAIL: smoothing none changed the weights"; fail=1; }
"$PY" - "$M/model.safetensors" "$T/awq/model.safetensors" <<'EOF' || fail=1
import json, struct, sys
def tensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    return {k: raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
            for k, v in head.items() if k != "__metadata__"}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
pre = "model.language_model.layers."
layers = sorted({int(k[len(pre):].split(".")[0]) for k in a if k.startswith(pre)})
bad = 0
for l in layers:
    for norm, want_changed in (("pre_feedforward_layernorm", True), ("input_layernorm", False),
                               ("post_feedforward_layernorm", False)):
        k = f"{pre}{l}.{norm}.weight"
        changed = a[k] != b[k]
        if changed != want_changed:
            print(f"FAIL: {k} {'changed' if changed else 'unchanged'}")
            bad += 1
print(f"norm folding: {len(layers)} layers checked, {bad} wrong")
sys.exit(1 if bad or not layers else 0)
EOF
kl() {
    "$B/gemma4q-run" compare --model "$M" --quantized "$T/$1" --file "$T/t.txt" --window 512 \
        --stride 256 --device cpu --json --quiet | sed -n 's/.*"kl_mean": *\([^,]*\),*/\1/p'
}
k0=$(kl plain)
k1=$(kl awq)
echo "KL: unsmoothed $k0, smoothed $k1"
awk -v a="$k1" -v b="$k0" 'BEGIN { exit !(a > 0 && a < 1.5 * b) }' ||
    { echo "FAIL: smoothed KL $k1 is not within 1.5x of the unsmoothed $k0"; fail=1; }
[ $fail = 0 ] && echo "4 passed, 0 failed"
exit $fail
