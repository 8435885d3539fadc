# Calibration end to end on a tiny synthetic model (CPU): the W4A4 recipes nvfp4-mlp-only and nvfp4
# fp8-block with calibrated KV scales and an FP8 W8A8 recipe run with a small --calib-samples/--calib-seq-len
# override and pass `gemma4q-inspect --check`; every NVFP4 input_scale is fl32(amax · R2688), every FP8 one fl32(amax · R448), and every
# k_scale/v_scale fl32(amax · R448) of the amaxes in the --json report (recomputed in numpy, bit
# for bit; test_calibrate checks the amaxes themselves against an independent forward); fused
# groups share input_scale bit-exactly; --dump-calib writes the ids whose sha256 the manifest
# records; --threads 1 and 2 give byte-identical exports; gemma4q-run compare runs the W4A4 export
# (with NVFP4 activations, and says so); a missing dataset fails clearly and leaves nothing.
# Usage: bash cli_calibrate.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
B=$1
S=$2
Q=$B/gemma4q-quantize
I=$B/gemma4q-inspect
T=$(mktemp -d "${TMPDIR:-/tmp}/cli_calibrate.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*"; exit 1; }
sums() { (cd "$1" && find . -type f | sort | xargs sha256sum); }
. "$2/tests/python_oracle.sh" # PY, need_py
need_py numpy
CAL=(--calib-samples 3 --calib-seq-len 40)

"$B/gemma4q-mkmodel" --preset tiny --seed 5 --out "$T/m" --quiet >/dev/null
sed 's/^  scales: cast .*/  scales: calibrated/' "$S/recipes/fp8-block.yaml" >"$T/fp8-block-kv.yaml"
grep -q 'scales: calibrated' "$T/fp8-block-kv.yaml" || fail "could not make the KV recipe"
cat >"$T/fp8-w8a8.yaml" <<'Y'
name: fp8-w8a8
export: modelopt
rules:
  - pattern: "model.language_model.layers.*.{self_attn,mlp}.*_proj"
    weights: fp8
    activations: fp8
calibration:
  dataset: builtin:default
  samples: 8
  seq_len: 64
Y

for r in nvfp4-mlp-only nvfp4 fp8-block-kv fp8-w8a8; do
    R=$S/recipes/$r.yaml
    [ -f "$R" ] || R=$T/$r.yaml
    "$Q" --model "$T/m" --recipe "$R" --out "$T/$r" "${CAL[@]}" --json "$T/$r.json" \
        --dump-calib "$T/$r.ids" 2>"$T/$r.log" || fail "$r: quantize: $(cat "$T/$r.log")"
    grep -q 'calibration 3 x 40 tokens of builtin:default' "$T/$r.log" ||
        fail "$r: no calibration line in the summary: $(cat "$T/$r.log")"
    "$I" --check "$T/$r" >"$T/$r.check" || fail "$r: inspect --check: $(cat "$T/$r.check")"
    ok "$r: calibrated and exported; inspect --check: $(tail -1 "$T/$r.check")"
    "$PY" - "$T/$r" "$T/$r.json" "$T/$r.ids" <<'PY' || fail "$r: scale recomputation"
import hashlib, re, sys
import json, struct
import numpy as np
def load_file(path):
    """The F32 [] tensors of a safetensors file, and the names of all (None for others)."""
    f = open(path, "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
    out = {}
    for k, e in h.items():
        if k == "__metadata__": continue
        out[k] = None
        if e["dtype"] == "F32" and e["shape"] == []:
            f.seek(8 + n + e["data_offsets"][0]); out[k] = np.frombuffer(f.read(4), "<f4").reshape(())
    return out
out, rep, ids = sys.argv[1:4]
t = load_file(out + "/model.safetensors")
cal = json.load(open(rep))["calibration"]
man = json.load(open(out + "/manifest.json"))["calibration"]
raw = open(ids, "rb").read()
a = np.frombuffer(raw, "<i4").reshape(cal["samples"], cal["seq_len"])
assert (a[:, 0] == 2).all(), "every sample starts with <bos>"
assert hashlib.sha256(raw).hexdigest() == man["ids_sha256"] == cal["ids_sha256"]
assert man["dataset"] == "builtin:default" and man["samples"] == 3 and man["seq_len"] == 40
R2688, R448 = np.float32(1 / 2688), np.float32(1 / 448)
assert R2688.view(np.uint32) == 0x39C30C31 and R448.view(np.uint32) == 0x3B124925
site = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "o_proj": "o_in",
        "gate_proj": "mlp_in", "up_proj": "mlp_in", "down_proj": "down_in"}
amax = {k: [np.float32(x) for x in v] for k, v in cal["amax"].items()}
n = 0
groups = {}
for name, v in t.items():
    m = re.match(r".*layers\.(\d+)\.\w+\.(\w+)\.(input_scale|k_scale|v_scale)$", name)
    if not m:
        continue
    l, mod, kind = int(m.group(1)), m.group(2), m.group(3)
    assert v.dtype == np.float32 and v.shape == (), name
    if kind == "input_scale":
        nvfp4 = name.replace("input_scale", "weight_scale_2") in t
        want = amax[site[mod]][l] * (R2688 if nvfp4 else R448)
        groups.setdefault((l, site[mod]), set()).add(v.tobytes())
    else:
        want = amax["k" if kind == "k_scale" else "v"][l] * R448
    assert v.tobytes() == np.float32(want).tobytes(), (name, float(v), float(want))
    n += 1
assert n > 0
assert all(len(s) == 1 for s in groups.values()), "fused members differ"
print("  %d scales equal fl32(amax * R) bit for bit; %d input groups share one value" % (n, len(groups)))
PY
    ok "$r: $("$PY" -c 'import json,sys; c=json.load(open(sys.argv[1]))["calibration"]; print("ids sha256", c["ids_sha256"][:12], "- scales recomputed")' "$T/$r.json")"
done

# full layers (k_eq_v) carry v_proj.v_scale although they have no v_proj
"$PY" - "$T/fp8-block-kv" <<'PY' || fail "KV scale names"
import sys
import json, struct
import numpy as np
def load_file(path):
    """The F32 [] tensors of a safetensors file, and the names of all (None for others)."""
    f = open(path, "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
    out = {}
    for k, e in h.items():
        if k == "__metadata__": continue
        out[k] = None
        if e["dtype"] == "F32" and e["shape"] == []:
            f.seek(8 + n + e["data_offsets"][0]); out[k] = np.frombuffer(f.read(4), "<f4").reshape(())
    return out
t = load_file(sys.argv[1] + "/model.safetensors")
c = json.load(open(sys.argv[1] + "/config.json"))["text_config"]
for l, kind in enumerate(c["layer_types"]):
    p = "model.language_model.layers.%d.self_attn." % l
    assert p + "k_proj.k_scale" in t and p + "v_proj.v_scale" in t, l
    assert (p + "v_proj.weight" in t) == (kind == "sliding_attention"), l
PY
ok "fp8-block-kv: k_scale/v_scale on every layer, v_proj.v_scale on the full layer too"

# determinism: other processes, 1 and 2 threads
for th in 1 2; do
    "$Q" --model "$T/m" --recipe "$S/recipes/nvfp4.yaml" --out "$T/nvfp4.t$th" "${CAL[@]}" \
        --threads $th --quiet 2>/dev/null || fail "--threads $th failed"
    [ "$(sums "$T/nvfp4")" = "$(sums "$T/nvfp4.t$th")" ] ||
        fail "--threads $th differs: $(diff <(sums "$T/nvfp4") <(sums "$T/nvfp4.t$th"))"
done
ok "nvfp4: byte-identical exports with --threads 1 and 2 (calibration included)"

# gemma4q-run compare runs the W4A4 export with its target's numerics (sm100), and says so
head -c 3000 "$S/calib/default.txt" >"$T/p.txt"
"$B/gemma4q-run" compare --model "$T/m" --quantized "$T/nvfp4" --file "$T/p.txt" --window 64 \
    --json >"$T/cmp.json" 2>"$T/cmp.err" || fail "compare: $(cat "$T/cmp.err")"
grep -q 'emulate sm100: activations NVFP4 on [1-9]' "$T/cmp.err" ||
    fail "compare does not run the W4A4 export with NVFP4 activations: $(cat "$T/cmp.err")"
ok "gemma4q-run compare on the W4A4 export: $(grep -o 'emulate sm100.*' "$T/cmp.err" | cut -c1-100)"

# a missing dataset fails clearly and leaves nothing
sed 's|dataset: builtin:default.*|dataset: builtin:nonexistent|' "$S/recipes/nvfp4.yaml" >"$T/bad.yaml"
if "$Q" --model "$T/m" --recipe "$T/bad.yaml" --out "$T/bad" "${CAL[@]}" 2>"$T/bad.err"; then
    fail "missing dataset: succeeded"
fi
grep -q "builtin:nonexistent' not found" "$T/bad.err" || fail "missing dataset: $(cat "$T/bad.err")"
[ ! -e "$T/bad" ] && [ ! -e "$T/bad.partial" ] || fail "missing dataset left output behind"
ok "missing dataset: $(grep -m1 error "$T/bad.err")"

echo "$pass passed, 0 failed"
