# gemma4q-mkmodel end to end: determinism (same seed, thread counts), seeds matter, sharding,
# the refusal to overwrite, usage errors, the 12b sizes (docs/gemma4.md §6.5), and the
# tokenizer loading in Python tokenizers (fails when it is not installed).
# Usage: bash cli_mkmodel.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
B=$1
MK=$B/gemma4q-mkmodel
T=$(mktemp -d "${TMPDIR:-/tmp}/cli_mkmodel.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*"; exit 1; }
sums() { (cd "$1" && find . -type f | sort | xargs sha256sum); }
PY=${G4Q_PYTHON:-python3}
# need_py MODULES: the oracle's Python modules import, or the test fails saying what to install.
need_py() {
    "$PY" -c "import $1" 2>/dev/null || fail "the Python oracle needs $1, which $PY cannot import: \
run scripts/install-deps.sh (it puts numpy, tokenizers, safetensors in .venv, which CMake hands to \
the tests), or point G4Q_PYTHON at a python3 that has them (cmake -DG4Q_PYTHON=PATH)"
}
need_py tokenizers

# --- determinism ---
"$MK" --preset tiny --seed 7 --out "$T/a" --quiet >"$T/a.txt"
"$MK" --preset tiny --seed 7 --out "$T/b" --quiet --threads 1 >/dev/null
"$MK" --preset tiny --seed 7 --out "$T/c" --quiet --threads 2 >/dev/null
"$MK" --preset tiny --seed 8 --out "$T/d" --quiet >/dev/null
want="./chat_template.jinja ./config.json ./generation_config.json ./model.safetensors ./tokenizer.json ./tokenizer_config.json"
got=$(cd "$T/a" && find . -type f | sort | tr '\n' ' ' | sed 's/ $//')
[ "$got" = "$want" ] || fail "files: '$got', expected '$want'"
ok "tiny writes the six files of a Hugging Face folder"
grep -q '^tensors *96$' "$T/a.txt" || fail "tiny: expected 96 tensors: $(cat "$T/a.txt")"
grep -q '^peak RSS' "$T/a.txt" || fail "no peak RSS in the summary"
ok "summary"
[ "$(sums "$T/a")" = "$(sums "$T/b")" ] || fail "same seed, default vs 1 thread: files differ"
[ "$(sums "$T/a")" = "$(sums "$T/c")" ] || fail "same seed, 1 vs 2 threads: files differ"
ok "same seed gives byte-identical files (threads default, 1, 2)"
cmp -s "$T/a/model.safetensors" "$T/d/model.safetensors" && fail "seeds 7 and 8 give the same weights"
cmp -s "$T/a/tokenizer.json" "$T/d/tokenizer.json" || fail "the tokenizer depends on the seed"
ok "another seed gives other weights (same tokenizer)"
[ -e "$T/a.partial" ] && fail "a.partial left behind"
if head -c 200000 "$T/a/model.safetensors" | grep -q lm_head; then fail "lm_head present"; fi
ok "no lm_head, no .partial"

# --- sharding: same tensors, same bytes ---
"$MK" --preset tiny --seed 7 --shard-size 3MB --out "$T/e" --quiet >/dev/null
[ -f "$T/e/model.safetensors.index.json" ] || fail "sharded: no index"
ls "$T/e"/model-0000*-of-0000*.safetensors >/dev/null || fail "sharded: no model-0000i-of-0000N files"
[ -e "$T/e/model.safetensors" ] && fail "sharded: model.safetensors present too"
"$PY" - "$T/a" "$T/e" <<'EOF' || fail "sharded tensors differ from the single file"
import json, struct, sys, os
def tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        b = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        for k, v in json.loads(b[8:8 + n]).items():
            if k != "__metadata__":
                s, e = v["data_offsets"]
                out[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return out
a, e = tensors(sys.argv[1]), tensors(sys.argv[2])
idx = json.load(open(os.path.join(sys.argv[2], "model.safetensors.index.json")))
assert sorted(idx["weight_map"]) == sorted(e), "index does not list exactly the tensors"
assert a == e, "tensors differ"
print("  %d tensors identical in %d shards" % (len(e), len(set(idx["weight_map"].values()))))
EOF
ok "sharded variant: index present, same tensors and bytes"

# --- existing output, --force ---
before=$(sums "$T/a")
set +e
"$MK" --preset tiny --seed 8 --out "$T/a" --quiet >/dev/null 2>"$T/err.txt"
rc=$?
set -e
[ $rc -ne 0 ] || fail "overwriting an existing OUT without --force succeeded"
grep -q "already exists" "$T/err.txt" || fail "no clear message: $(cat "$T/err.txt")"
[ "$(sums "$T/a")" = "$before" ] || fail "existing OUT was modified"
[ -e "$T/a.partial" ] && fail "a.partial left behind after refusal"
ok "existing OUT without --force fails and is left untouched ($(cat "$T/err.txt" | head -1))"
"$MK" --preset tiny --seed 8 --out "$T/a" --quiet --force >/dev/null
[ "$(sums "$T/a")" = "$(sums "$T/d")" ] || fail "--force did not replace OUT"
ok "--force replaces OUT"

# --- usage errors: clear message, nothing left under OUT ---
expect_usage() { # expect_usage PATTERN ARGS...
    local pat=$1
    shift
    set +e
    "$MK" "$@" >/dev/null 2>"$T/err.txt"
    local rc=$?
    set -e
    [ $rc -eq 2 ] || fail "'$*': exit $rc, expected 2 (usage): $(cat "$T/err.txt")"
    grep -q -- "$pat" "$T/err.txt" || fail "'$*': message lacks '$pat': $(cat "$T/err.txt")"
    [ -e "$T/x" ] || [ -e "$T/x.partial" ] && fail "'$*': left files under OUT"
    ok "'$*' -> $(head -1 "$T/err.txt")"
}
expect_usage "unknown option '--bogus'" --bogus --out "$T/x"
expect_usage "multiple of 128" --hidden 200 --out "$T/x"
expect_usage "unknown preset 'huge'" --preset huge --out "$T/x"
expect_usage "vocab 100" --vocab 100 --out "$T/x"
expect_usage "layers -3: expected 1..256" --layers -3 --out "$T/x"
expect_usage "layers 300: expected 1..256" --layers 300 --out "$T/x"
expect_usage "--seed" --seed abc --out "$T/x"
expect_usage "--out DIR is required" --preset tiny
"$MK" --help | grep -q -- "--shard-size" || fail "--help does not list --shard-size"
ok "--help lists the options"

# --- the 12b shape: exact sizes without writing, and a cut-down build ---
"$MK" --preset 12b --dry-run >"$T/12b.txt"
grep -q '^params *11959730224$' "$T/12b.txt" || fail "12b params: $(cat "$T/12b.txt")"
grep -q '^bytes *23919460448 ' "$T/12b.txt" || fail "12b bytes: $(cat "$T/12b.txt")"
grep -q '^tensors *677$' "$T/12b.txt" || fail "12b tensors: $(cat "$T/12b.txt")"
ok "12b dry run: 11959730224 params, 23919460448 bytes, 677 tensors (docs/gemma4.md 6.5)"
"$MK" --preset 12b --layers 2 --vocab 4096 --out "$T/f" --quiet >"$T/f.txt"
grep -q '"hidden_size": 3840' "$T/f/config.json" || fail "12b --layers 2: hidden"
grep -q '"global_head_dim": 512' "$T/f/config.json" || fail "12b --layers 2: global_head_dim"
# layer 0 sliding (14), layer 1 full as the last layer (13), embed + norm, 11 multimodal
grep -Eq '^tensors +40$' "$T/f.txt" || fail "12b --layers 2: $(cat "$T/f.txt")"
ok "12b --layers 2 --vocab 4096 builds ($(grep bytes "$T/f.txt"))"

# --- the tokenizer in Python tokenizers ---
"$PY" - "$T/a" <<'EOF' || fail "tokenizer.json does not load or encode as expected"
import sys
from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
assert t.get_vocab_size() == 2048, t.get_vocab_size()
text = "The quick brown fox jumps over the lazy dog. Hello world, this is a test."
enc = t.encode(text, add_special_tokens=False)
assert t.decode(enc.ids) == text, t.decode(enc.ids)
multi = [tok for tok in enc.tokens if len(tok.replace("\u2581", "")) > 1]
assert len(multi) >= 8, enc.tokens
ids = t.encode("<bos><|turn>user\nHi<turn|>\n", add_special_tokens=False).ids
assert ids[:2] == [2, 105] and 106 in ids and ids[-1] == 107, ids
b = t.encode("\U0001D518", add_special_tokens=False).tokens  # not in the vocab: 4 byte tokens
assert b == ["<0xF0>", "<0x9D>", "<0x94>", "<0x98>"], b
print("  tokens:", enc.tokens[:12])
EOF
ok "tokenizer.json loads in Python tokenizers; English text gives multi-character merges"
echo "cli_mkmodel: $pass passed, 0 failed"
