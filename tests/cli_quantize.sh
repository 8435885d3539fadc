# gemma4q-quantize end to end on a tiny synthetic model: three public recipes (nvfp4a16,
# int4-mlp-only, fp8-block) pass `gemma4q-inspect --check` and the independent Python decoder
# (scripts/check/decode_export.py; fails when numpy is missing); --dry-run writes nothing; --json
# writes a valid report; the same recipe in another process with --threads 1 and 2 gives
# byte-identical files; bad inputs fail clearly and leave nothing; a
# sharded input gives the same tensor hashes as the single file; a compressed-tensors MLP-only
# export ignores the absent v_proj of k_eq_v layers, and --check refuses it without that entry.
# Usage: bash cli_quantize.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
B=$1
S=$2
Q=$B/gemma4q-quantize
I=$B/gemma4q-inspect
T=$(mktemp -d "${TMPDIR:-/tmp}/cli_quantize.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*"; exit 1; }
sums() { (cd "$1" && find . -type f | sort | xargs sha256sum); }
# nothing_left OUT: neither OUT nor OUT.partial exists.
nothing_left() { [ ! -e "$1" ] && [ ! -e "$1.partial" ]; }
# expect_error WHAT PATTERN OUT -- command...: fails non-zero, stderr matches, leaves nothing.
expect_error() {
    local what=$1 pat=$2 out=$3
    shift 4
    if "$@" >"$T/err.out" 2>"$T/err.txt"; then fail "$what: succeeded"; fi
    grep -q -- "$pat" "$T/err.txt" || fail "$what: stderr lacks '$pat': $(cat "$T/err.txt")"
    nothing_left "$out" || fail "$what: left $out or $out.partial behind"
    ok "$what: $(grep -m1 error "$T/err.txt")"
}

. "$2/tests/python_oracle.sh" # PY, need_py
need_py numpy

"$B/gemma4q-mkmodel" --preset tiny --seed 3 --out "$T/m" --quiet >/dev/null
"$B/gemma4q-mkmodel" --preset tiny --seed 3 --shard-size 4MB --out "$T/msh" --quiet >/dev/null

for r in nvfp4a16 int4-mlp-only fp8-block; do
    R=$S/recipes/$r.yaml
    # --- dry run: the plan on stdout, nothing written ---
    "$Q" --model "$T/m" --recipe "$R" --out "$T/$r.dry" --dry-run --json "$T/$r.dry.json" \
        >"$T/$r.plan" 2>/dev/null || fail "$r: --dry-run failed"
    nothing_left "$T/$r.dry" || fail "$r: --dry-run wrote $T/$r.dry"
    grep -q '^total: ' "$T/$r.plan" || fail "$r: --dry-run printed no plan totals"
    grep -q -- '-> model.language_model.layers.0.mlp.down_proj' "$T/$r.plan" ||
        fail "$r: --dry-run plan lists no quantized outputs"
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["dry_run"] is True and r["plan"]["tensors"]' \
        "$T/$r.dry.json" || fail "$r: --dry-run --json report invalid"
    ok "$r: --dry-run prints the plan ($(grep '^total: ' "$T/$r.plan" | cut -c1-60)...) and writes nothing"

    # --- the export ---
    "$Q" --model "$T/m" --recipe "$R" --out "$T/$r" --json "$T/$r.json" --quiet 2>/dev/null ||
        fail "$r: quantize failed"
    [ -e "$T/$r.partial" ] && fail "$r: .partial left behind"
    "$PY" - "$T/$r.json" <<'EOF' || fail "$r: --json report invalid"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["dry_run"] is False and r["result"]["tensors_out"] > 0, r
assert r["plan"]["quantized_modules"] > 0
EOF
    ok "$r: quantized; --json report valid"
    "$I" --check "$T/$r" >"$T/$r.check" || fail "$r: inspect --check: $(cat "$T/$r.check")"
    "$I" --check --json "$T/$r" >"$T/$r.check.json" || fail "$r: inspect --check --json failed"
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["ok"] and r["problem_count"] == 0' \
        "$T/$r.check.json" || fail "$r: --check --json report"
    ok "$r: inspect --check: $(tail -1 "$T/$r.check") ($(sed -n 's/.*format \([^;]*\);.*/\1/p' "$T/$r.check"))"
    "$PY" "$S/scripts/check/decode_export.py" "$T/$r" "$T/m" --quiet >"$T/$r.dec" ||
        fail "$r: Python decoder: $(cat "$T/$r.dec")"
    ok "$r: $(tail -1 "$T/$r.dec" | sed "s|$T/||")"

    # --- determinism: other processes, 1 and 2 threads ---
    for th in 1 2; do
        "$Q" --model "$T/m" --recipe "$R" --out "$T/$r.t$th" --threads $th --quiet 2>/dev/null ||
            fail "$r: --threads $th failed"
        [ "$(sums "$T/$r")" = "$(sums "$T/$r.t$th")" ] ||
            fail "$r: --threads $th output differs: $(diff <(sums "$T/$r") <(sums "$T/$r.t$th"))"
    done
    ok "$r: byte-identical files with --threads 1 and 2 ($(ls "$T/$r" | wc -l) files, manifest included)"
    rm -rf "$T/$r.t1" "$T/$r.t2"
done

# --- sharded input: the same tensors ---
"$Q" --model "$T/msh" --recipe "$S/recipes/nvfp4a16.yaml" --out "$T/sh" --quiet 2>/dev/null ||
    fail "sharded input: quantize failed"
"$PY" - "$T/nvfp4a16/manifest.json" "$T/sh/manifest.json" <<'EOF' || fail "sharded input: tensor hashes differ"
import json, sys
a, b = (json.load(open(p))["tensors"] for p in sys.argv[1:3])
assert a == b, [k for k in a if a[k] != b.get(k)][:5]
print("  %d tensor hashes equal" % len(a))
EOF
ok "sharded input ($(ls "$T/msh" | grep -c 'model-.*safetensors') shards) gives the same tensor hashes"

# (calibration recipes: tests/cli_calibrate.sh)

# --- bad inputs ---
R=$S/recipes/fp8-block.yaml
expect_error "missing --model dir" "nonexistent" "$T/o1" -- "$Q" --model "$T/nonexistent" --recipe "$R" --out "$T/o1"
mkdir "$T/trunc"
cp "$T/m"/*.json "$T/m"/*.jinja "$T/trunc/"
head -c 1000000 "$T/m/model.safetensors" >"$T/trunc/model.safetensors"
expect_error "truncated model.safetensors" "model.safetensors" "$T/o2" -- "$Q" --model "$T/trunc" --recipe "$R" --out "$T/o2"
cp -r "$T/m" "$T/nan"
"$PY" - "$T/nan/model.safetensors" <<'EOF'
import json, struct, sys
with open(sys.argv[1], "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    e = json.loads(f.read(n))["model.language_model.layers.2.mlp.up_proj.weight"]
    f.seek(8 + n + e["data_offsets"][0] + 2 * 1000)
    f.write(struct.pack("<H", 0x7FC0))  # bf16 NaN at element 1000
EOF
expect_error "NaN weight" "up_proj.weight'.*NaN" "$T/o3" -- "$Q" --model "$T/nan" --recipe "$R" --out "$T/o3"
sed 's/^export: modelopt/export: modelopt\nscale_serch: max/' "$R" >"$T/bad.yaml"
expect_error "unknown recipe key" "unknown key 'scale_serch'" "$T/o4" -- "$Q" --model "$T/m" --recipe "$T/bad.yaml" --out "$T/o4"
before=$(sums "$T/fp8-block")
if "$Q" --model "$T/m" --recipe "$R" --out "$T/fp8-block" >/dev/null 2>"$T/err.txt"; then
    fail "existing OUT without --force: succeeded"
fi
grep -q "already exists" "$T/err.txt" || fail "existing OUT: $(cat "$T/err.txt")"
[ "$(sums "$T/fp8-block")" = "$before" ] && [ ! -e "$T/fp8-block.partial" ] ||
    fail "existing OUT was modified"
ok "existing OUT without --force: $(grep -m1 error "$T/err.txt")"

# --- the checker sees a broken export ---
cp -r "$T/nvfp4a16" "$T/broken"
"$PY" - "$T/broken/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["quantization_config"]["ignore"].remove("model.embed_audio.embedding_projection")
json.dump(c, open(sys.argv[1], "w"), indent=2)
EOF
if "$I" --check "$T/broken" >"$T/broken.txt" 2>&1; then fail "--check passed a broken export"; fi
grep -q 'PROBLEM \[excludes-cover\] model.embed_audio.embedding_projection' "$T/broken.txt" ||
    fail "--check: $(cat "$T/broken.txt")"
ok "--check fails on an ignore list without embed_audio"

# --- compressed-tensors, MLP only: the absent v_proj of k_eq_v layers is ignored like q/k_proj ---
# (vLLM looks up q_proj, k_proj and v_proj of a fused qkv_proj in `ignore` and refuses the model
# when they disagree, even where v_proj has no tensor.)
printf '%s\n' 'name: ct-int4-mlp' 'export: compressed-tensors' 'rules:' \
    '  - pattern: "model.language_model.layers.*.mlp.*_proj"' '    weights: int4' >"$T/ct-mlp.yaml"
"$Q" --model "$T/m" --recipe "$T/ct-mlp.yaml" --out "$T/ct-mlp" --quiet 2>/dev/null ||
    fail "ct-int4-mlp: quantize failed"
"$I" --check "$T/ct-mlp" >"$T/ct-mlp.check" ||
    fail "ct-int4-mlp: inspect --check: $(cat "$T/ct-mlp.check")"
cp -r "$T/ct-mlp" "$T/ct-mlp-broken"
"$PY" - "$T/ct-mlp/config.json" "$T/ct-mlp-broken/config.json" <<'EOF' || fail "ct-int4-mlp ignore"
import json, sys
c = json.load(open(sys.argv[1]))
tc, ignore = c["text_config"], c["quantization_config"]["ignore"]
full = [i for i, t in enumerate(tc["layer_types"]) if t == "full_attention"]
assert tc["attention_k_eq_v"] and full, "the tiny model has k_eq_v full layers"
absent = ["model.language_model.layers.%d.self_attn.v_proj" % i for i in full]
missing = [a for a in absent if a not in ignore]
assert not missing, "ignore lacks the absent v_proj of k_eq_v layers: %s" % missing
ignore.remove(absent[0])
json.dump(c, open(sys.argv[2], "w"), indent=2)
EOF
if "$I" --check "$T/ct-mlp-broken" >"$T/ct-mlp-broken.txt" 2>&1; then
    fail "--check passed a CT ignore list without an absent v_proj"
fi
grep -q 'PROBLEM \[fused-ignore\] model.language_model.layers.5.self_attn.v_proj' \
    "$T/ct-mlp-broken.txt" ||
    fail "--check: $(cat "$T/ct-mlp-broken.txt")"
ok "ct-int4-mlp: ignore names the absent v_proj of k_eq_v layers; --check fails without it"

echo "$pass passed, 0 failed"
