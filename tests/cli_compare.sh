# gemma4q-run on quantized exports of a tiny synthetic model (CPU): the three public recipes
# (nvfp4a16 = compressed-tensors NVFP4, int4-mlp-only = GPTQ, fp8-block = ModelOpt fp8_pb_wo) plus
# ModelOpt W4A16_NVFP4 and compressed-tensors pack-quantized INT4 from ad-hoc recipes.
#   - generate works on each and is deterministic;
#   - compare: BF16 against itself gives KL exactly 0 and top-1 agreement 1; each export gives a
#     finite positive KL; fp8-block's KL is below the 4-bit formats'; compare --json is valid and
#     its perplexities equal `ppl`'s for the same window and stride;
#   - independent oracle: scripts/check/dequant_bf16.py writes a BF16 model holding bf16(dequant)
#     of each export, decoded in numpy from docs/formats.md; the runtime's quantized model, run
#     weight-only (--emulate none), must be far closer to it than to the original (a wrong layout
#     or binding would not be);
#   - W4A4: input_scale tensors added to the W4A16 export change nothing with --emulate none (KL
#     exactly 0 against it); by default (sm100) the activations are quantized (KL > 0), said once;
#   - broken exports fail with messages naming the tensor.
# Usage: bash cli_compare.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
B=$1
S=$2
RUN=$B/gemma4q-run
T=$(mktemp -d "${TMPDIR:-/tmp}/cli_compare.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*"; exit 1; }
. "$2/tests/python_oracle.sh" # PY, need_py
need_py numpy

M=$T/m
"$B/gemma4q-mkmodel" --preset tiny --seed 3 --out "$M" --quiet >/dev/null
"$PY" -c "
import random; random.seed(5); w = 'the quick brown fox jumps over a lazy dog while model weights drift and numbers round to nearest even'.split()
print(' '.join(random.choice(w) for _ in range(160)))" >"$T/p.txt"
mkrecipe() { # NAME EXPORT WEIGHTS
    printf 'name: %s\nexport: %s\nrules:\n  - pattern: "model.language_model.layers.*.{self_attn,mlp}.*_proj"\n    weights: %s\n    scale_search: max\n' \
        "$1" "$2" "$3" >"$T/$1.yaml"
}
mkrecipe mo-w4a16 modelopt nvfp4
mkrecipe ct-int4 compressed-tensors int4
R_nvfp4a16=$S/recipes/nvfp4a16.yaml
R_int4_mlp_only=$S/recipes/int4-mlp-only.yaml
R_fp8_block=$S/recipes/fp8-block.yaml
R_mo_w4a16=$T/mo-w4a16.yaml
R_ct_int4=$T/ct-int4.yaml
RECIPES="nvfp4a16 int4-mlp-only fp8-block mo-w4a16 ct-int4"
# kl_of FILE: the kl_mean of a compare --json output
field() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# --- BF16 against itself: exactly zero ---
"$RUN" compare --model "$M" --quantized "$M" --file "$T/p.txt" --window 128 --json --quiet >"$T/self.json"
"$PY" - "$T/self.json" <<'EOF' || fail "BF16 vs itself: $(cat "$T/self.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["kl_mean"] == 0 and r["kl_max"] == 0, r
assert r["top1_agreement"] == 1.0 and r["top1_agree"] == r["scored"] > 0, r
assert r["ppl_ref"] == r["ppl_cand"], r
EOF
ok "compare BF16 vs itself: KL exactly 0, top-1 agreement 1.0 over $(field "$T/self.json" scored) positions"
"$RUN" ppl --model "$M" --file "$T/p.txt" --window 128 --stride 64 --quiet >"$T/ppl.txt"
"$PY" - "$T/self.json" "$T/ppl.txt" <<'EOF' || fail "compare's ppl differs from ppl's"
import json, sys
r = json.load(open(sys.argv[1]))
p = dict(l.split(None, 1) for l in open(sys.argv[2]).read().splitlines())
assert abs(r["ppl_ref"] - float(p["perplexity"])) <= 1e-6 * r["ppl_ref"], (r["ppl_ref"], p)
EOF
ok "compare's perplexity equals ppl's (window 128, stride 64)"

for r in $RECIPES; do
    var=R_${r//-/_}
    "$B/gemma4q-quantize" --model "$M" --recipe "${!var}" --out "$T/$r" --quiet 2>/dev/null ||
        fail "$r: quantize failed"
    # --- generate ---
    "$RUN" generate --model "$T/$r" --prompt "The quick brown fox" --max-tokens 16 --device cpu \
        >"$T/$r.g1" 2>"$T/$r.gerr" || fail "$r: generate: $(cat "$T/$r.gerr")"
    "$RUN" generate --model "$T/$r" --prompt "The quick brown fox" --max-tokens 16 --device cpu \
        --quiet >"$T/$r.g2" 2>/dev/null
    cmp -s "$T/$r.g1" "$T/$r.g2" || fail "$r: greedy generation differs between runs"
    grep -q "generated tokens 16" "$T/$r.gerr" || fail "$r: generate stats: $(cat "$T/$r.gerr")"
    grep -q "quantized Linears: " "$T/$r.gerr" || fail "$r: no quantization summary: $(cat "$T/$r.gerr")"
    ok "$r: generate ($(grep -o 'quantized Linears: .*' "$T/$r.gerr")): '$(head -c 40 "$T/$r.g1")'"
    # --- compare against BF16 ---
    "$RUN" compare --model "$M" --quantized "$T/$r" --file "$T/p.txt" --window 128 --json --quiet \
        >"$T/$r.json" || fail "$r: compare failed"
    "$PY" - "$T/$r.json" <<'EOF' || fail "$r: compare: $(cat "$T/$r.json")"
import json, math, sys
r = json.load(open(sys.argv[1]))
for k in ("kl_mean", "kl_max", "ppl_ref", "ppl_cand", "top1_agreement"):
    assert math.isfinite(r[k]), k
assert r["kl_mean"] > 0 and r["kl_max"] >= r["kl_mean"], r
assert 0 <= r["top1_agreement"] <= 1, r
EOF
    ok "$r: compare: KL $(field "$T/$r.json" kl_mean), top-1 $(field "$T/$r.json" top1_agreement), ppl $(field "$T/$r.json" ppl_ref) -> $(field "$T/$r.json" ppl_cand)"
    # --- oracle: bf16(dequant) model decoded in numpy ---
    "$PY" "$S/scripts/check/dequant_bf16.py" "$T/$r" "$M" "$T/$r.deq" >/dev/null ||
        fail "$r: dequant_bf16.py failed"
    "$RUN" compare --model "$T/$r.deq" --quantized "$T/$r" --file "$T/p.txt" --window 128 \
        --emulate none --json --quiet >"$T/$r.deq.json" ||
        fail "$r: compare with the dequantized model failed"
    "$PY" - "$T/$r.json" "$T/$r.deq.json" <<'EOF' || fail "$r: the runtime's quantized model is not the decoded export"
import json, sys
a, d = (json.load(open(p)) for p in sys.argv[1:])
# bf16 rounding of the dequantized weights (2^-9 relative) against 4/8-bit quantization error:
# measured ratios are ~1e-3; a layout or binding error would make them comparable.
assert d["kl_mean"] < 0.05 * a["kl_mean"], (d["kl_mean"], a["kl_mean"])
assert d["top1_agreement"] > 0.9 and d["top1_agreement"] >= a["top1_agreement"], (d, a)
EOF
    ok "$r: quantized model vs numpy bf16(dequant) model: KL $(field "$T/$r.deq.json" kl_mean), top-1 $(field "$T/$r.deq.json" top1_agreement)"
done
"$PY" - "$T" <<'EOF' || fail "fp8-block's KL is not below the 4-bit formats'"
import json, sys
kl = {r: json.load(open(f"{sys.argv[1]}/{r}.json"))["kl_mean"]
      for r in ("fp8-block", "nvfp4a16", "mo-w4a16", "int4-mlp-only", "ct-int4")}
assert all(kl["fp8-block"] < kl[r] for r in kl if r != "fp8-block"), kl
print("  KL:", ", ".join(f"{k} {v:.4g}" for k, v in sorted(kl.items(), key=lambda x: x[1])))
EOF
ok "fp8-block has the smallest KL"

# --- W4A4: input scales are validated and ignored (weight-only) ---
"$PY" - "$T/mo-w4a16" "$T/mo-w4a4" <<'EOF' || fail "cannot build the W4A4 variant"
import json, os, shutil, struct, sys
src, dst = sys.argv[1:]
shutil.copytree(src, dst)
p = os.path.join(dst, "model.safetensors")
data = open(p, "rb").read()
(hlen,) = struct.unpack("<Q", data[:8])
h = json.loads(data[8:8 + hlen])
body = bytearray(data[8 + hlen:])
for name in [n for n in h if n.endswith(".weight_scale_2")]:
    m = name[: -len(".weight_scale_2")]
    h[m + ".input_scale"] = {"dtype": "F32", "shape": [], "data_offsets": [len(body), len(body) + 4]}
    body += struct.pack("<f", 0.01)
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + bytes(body))
EOF
"$RUN" compare --model "$T/mo-w4a16" --quantized "$T/mo-w4a4" --file "$T/p.txt" --window 128 \
    --emulate none --json >"$T/a4.json" 2>"$T/a4.err" || fail "W4A4: compare failed: $(cat "$T/a4.err")"
[ "$(field "$T/a4.json" kl_mean)" = "0" ] || fail "W4A4 vs W4A16, --emulate none: KL $(field "$T/a4.json" kl_mean)"
ok "W4A4 export with --emulate none runs weight-only (KL 0 against W4A16)"
"$RUN" compare --model "$T/mo-w4a16" --quantized "$T/mo-w4a4" --file "$T/p.txt" --window 128 \
    --json >"$T/a4e.json" 2>"$T/a4e.err" || fail "W4A4: compare failed: $(cat "$T/a4e.err")"
[ "$(field "$T/a4e.json" emulate)" = "sm100" ] || fail "W4A4: default mode $(field "$T/a4e.json" emulate), expected sm100"
[ "$(grep -c "emulate sm100: activations NVFP4 on" "$T/a4e.err")" = 1 ] ||
    fail "W4A4: the engine mode is not said exactly once: $(cat "$T/a4e.err")"
"$PY" -c "import sys; k=float(sys.argv[1]); sys.exit(0 if k > 0 else 1)" "$(field "$T/a4e.json" kl_mean)" ||
    fail "W4A4 default (sm100): KL $(field "$T/a4e.json" kl_mean), expected > 0 (activations quantized)"
ok "W4A4 export defaults to sm100 (NVFP4 activations): KL $(field "$T/a4e.json" kl_mean) against W4A16, said once"

# --- broken exports: clear errors naming the tensor ---
breakit() { # NAME SRC PYTHON-STATEMENT-ON-h (the header dict; tensors may be deleted or retyped
    # with the same byte size); the data are repacked without gaps.
    "$PY" - "$2" "$T/$1" "$3" <<'EOF'
import json, os, shutil, struct, sys
src, dst, expr = sys.argv[1:]
shutil.copytree(src, dst)
p = os.path.join(dst, "model.safetensors")
data = open(p, "rb").read()
(hlen,) = struct.unpack("<Q", data[:8])
h = json.loads(data[8:8 + hlen])
exec(expr)
body = bytearray()
for name, e in sorted(((n, e) for n, e in h.items() if n != "__metadata__"),
                      key=lambda x: x[1]["data_offsets"][0]):
    b, en = e["data_offsets"]
    e["data_offsets"] = [len(body), len(body) + en - b]
    body += data[8 + hlen + b:8 + hlen + en]
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + bytes(body))
EOF
}
expect_err() { # DIR PATTERN
    set +e
    "$RUN" logits --model "$1" --ids 2,3 --out "$T/e.bin" --device cpu >/dev/null 2>"$T/err.txt"
    local rc=$?
    set -e
    [ $rc -ne 0 ] || fail "$1: succeeded"
    grep -q -- "$2" "$T/err.txt" || fail "$1: message lacks '$2': $(cat "$T/err.txt")"
    ok "$(basename "$1"): exit $rc: $(grep -m1 'error:' "$T/err.txt" | sed "s|$T/||g")"
}
L0=model.language_model.layers.0
breakit no_ws2 "$T/mo-w4a16" "del h['$L0.mlp.up_proj.weight_scale_2']"
expect_err "$T/no_ws2" "tensor '$L0.mlp.up_proj.weight_scale_2' missing"
breakit bad_scale "$T/fp8-block" "h['$L0.self_attn.q_proj.weight_scale']['dtype'] = 'I32'"
expect_err "$T/bad_scale" "tensor '$L0.self_attn.q_proj.weight_scale': I32"
breakit no_scales "$T/int4-mlp-only" "del h['$L0.mlp.down_proj.scales']"
expect_err "$T/no_scales" "'$L0.mlp.down_proj.scales' missing"
echo "cli_compare: $pass passed, 0 failed"
