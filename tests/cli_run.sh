# gemma4q-run end to end on a tiny synthetic model (CPU): tokenize/detokenize round trip, logits
# (size, finite, identical across runs and thread counts), perplexity against an independent
# numpy computation from the logits, greedy/sampled generation determinism, chat, info, a
# quantization config over BF16 weights (runs as BF16, with a warning), and error cases. One
# real-data tokenizer check on the Gemma 3 tokenizer (docs/gemma4.md §7.5; fails when the shared
# data are missing). Quantized exports: cli_compare.sh.
# Usage: bash cli_run.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
B=$1
RUN=$B/gemma4q-run
MK=$B/gemma4q-mkmodel
T=$(mktemp -d "${TMPDIR:-/tmp}/cli_run.XXXXXX")
trap 'rm -rf "$T"' EXIT
pass=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*"; exit 1; }
. "$2/tests/python_oracle.sh" # PY, need_py
need_py "numpy, tokenizers"
M=$T/tiny
"$MK" --preset tiny --seed 3 --out "$M" --quiet >/dev/null
TOK=$M/tokenizer.json

# --- help ---
"$RUN" --help | grep -q "detokenize" || fail "--help does not list the subcommands"
"$RUN" ppl --help | grep -q -- "--stride" || fail "ppl --help does not list --stride"
"$RUN" generate --help | grep -q -- "--top-p" || fail "generate --help does not list --top-p"
ok "--help lists subcommands and options"

# --- tokenize / detokenize ---
TEXT="The quick brown fox jumps over the lazy dog. Hello world, 𝔘 and tabs	here."
ids=$("$RUN" tokenize --tokenizer "$TOK" --text "$TEXT")
echo "$ids" | grep -Eq '^[0-9]+(,[0-9]+)+$' || fail "tokenize output: '$ids'"
back=$("$RUN" detokenize --tokenizer "$TOK" --ids "$ids")
[ "$back" = "$TEXT" ] || fail "round trip: '$back' != '$TEXT'"
printf '%s' "$TEXT" >"$T/t.txt"
[ "$("$RUN" tokenize --tokenizer "$TOK" --file "$T/t.txt")" = "$ids" ] || fail "--file differs from --text"
ok "tokenize/detokenize round trip ($(echo "$ids" | tr ',' '\n' | wc -l) ids), --file = --text"
want=$("$PY" -c "
import sys; from tokenizers import Tokenizer
t = Tokenizer.from_file(sys.argv[1]); print(','.join(map(str, t.encode(sys.argv[2], add_special_tokens=False).ids)))" "$TOK" "$TEXT")
[ "$ids" = "$want" ] || fail "ids differ from Python tokenizers: $ids vs $want"
ok "ids equal Python tokenizers' on the tiny tokenizer"
G3=${G4Q_SHARED_DIR:-}/data/gemma3-tokenizer.json.gz
[ -n "${G4Q_SHARED_DIR:-}" ] && [ -f "$G3" ] ||
    fail "Gemma 3 tokenizer '$G3' not found: set G4Q_SHARED_DIR to the shared data folder that \
holds data/gemma3-tokenizer.json.gz (cmake -DG4Q_SHARED_DIR=DIR; default <source>/../shared)"
got=$("$RUN" tokenize --tokenizer "$G3" --text "Hello world")
[ "$got" = "9259,1902" ] || fail "Gemma 3 'Hello world': $got, expected 9259,1902 (gemma4.md 7.5)"
ok "Gemma 3 tokenizer: 'Hello world' -> 9259,1902"

# --- logits ---
LIDS=2,17,42,1000,5,6,7,8,9,10,11,12
"$RUN" logits --model "$M" --ids $LIDS --out "$T/l1.bin" --device cpu --quiet
"$RUN" logits --model "$M" --ids $LIDS --out "$T/l2.bin" --device cpu --quiet
"$RUN" logits --model "$M" --ids $LIDS --out "$T/l3.bin" --device cpu --quiet --threads 1
"$RUN" logits --model "$M" --ids $LIDS --out "$T/l4.bin" --device cpu --quiet --threads 2
[ "$(stat -c %s "$T/l1.bin")" = $((12 * 2048 * 4)) ] || fail "logits file size $(stat -c %s "$T/l1.bin")"
cmp -s "$T/l1.bin" "$T/l2.bin" || fail "two runs give different logits"
"$PY" - "$T" <<'EOF' || fail "logits not finite or threads 1 vs 2 differ"
import sys, numpy as np
d = sys.argv[1]
a = np.fromfile(d + "/l3.bin", dtype="<f4").reshape(12, 2048)
b = np.fromfile(d + "/l4.bin", dtype="<f4").reshape(12, 2048)
assert np.isfinite(a).all() and np.isfinite(b).all()
assert np.abs(a).max() <= 30.0 + 1e-4, "softcap 30 exceeded"
rel = np.linalg.norm(a - b) / np.linalg.norm(b)
assert rel <= 1e-5, rel
print("  threads 1 vs 2: relative difference %.3g" % rel)
EOF
ok "logits: 12 x 2048 float32, finite, |x| <= 30, same bytes twice, threads 1 vs 2 within 1e-5"
"$RUN" logits --help | grep -q -- "--precision" || fail "logits --help does not list --precision"
"$RUN" logits --model "$M" --ids $LIDS --out "$T/l5.bin" --device cpu --precision fp32 --quiet
cmp -s "$T/l1.bin" "$T/l5.bin" || fail "--precision fp32 on the cpu differs from the default"
ok "--precision fp32 on the cpu: the same bytes as the default (the cpu computes in fp32)"

# --- perplexity vs numpy on the logits of one prefill ---
"$PY" -c "
import random; random.seed(5); w = 'the quick brown fox jumps over a lazy dog while model weights drift'.split()
print(' '.join(random.choice(w) for _ in range(150)))" >"$T/p.txt"
pids="2,$("$RUN" tokenize --tokenizer "$TOK" --file "$T/p.txt")"
n=$(echo "$pids" | tr ',' '\n' | wc -l)
"$RUN" ppl --model "$M" --file "$T/p.txt" --window 512 --stride 512 --quiet >"$T/p1.txt"
"$RUN" logits --model "$M" --ids "$pids" --out "$T/pl.bin" --quiet
"$PY" - "$T" "$pids" <<'EOF' || fail "ppl differs from numpy on the logits"
import sys, math, numpy as np
d, ids = sys.argv[1], [int(x) for x in sys.argv[2].split(",")]
lg = np.fromfile(d + "/pl.bin", dtype="<f4").reshape(len(ids), -1).astype(np.float64)
m = lg.max(axis=1, keepdims=True)
lse = (m[:, 0] + np.log(np.exp(lg - m).sum(axis=1)))
nll = sum(lse[t - 1] - lg[t - 1, ids[t]] for t in range(1, len(ids)))
out = dict(l.split(None, 1) for l in open(d + "/p1.txt").read().splitlines())
got = float(out["nll_sum"])
assert abs(got - nll) <= 1e-6 * abs(nll) + 1e-4, (got, nll)
assert out["tokens"].startswith("%d (%d scored" % (len(ids), len(ids) - 1)), out["tokens"]
print("  nll_sum %.6f, numpy %.6f, ppl %s" % (got, nll, out["perplexity"]))
EOF
ok "ppl (one window of $n tokens) equals numpy's NLL from the logits"
"$RUN" ppl --model "$M" --file "$T/p.txt" --window 64 --stride 16 --quiet >"$T/p2.txt"
"$RUN" ppl --model "$M" --file "$T/p.txt" --window 64 --stride 16 --quiet --threads 1 >"$T/p3.txt"
grep -q "^tokens *$n ($((n - 1)) scored" "$T/p2.txt" || fail "strided scored count: $(cat "$T/p2.txt")"
ppl=$(awk '/^perplexity/ {print $2}' "$T/p2.txt")
"$PY" -c "import math,sys; x=float(sys.argv[1]); assert math.isfinite(x) and x > 1" "$ppl" || fail "ppl $ppl"
a=$(awk '/^nll_sum/ {print $2}' "$T/p2.txt")
b=$(awk '/^nll_sum/ {print $2}' "$T/p3.txt")
"$PY" -c "import sys; a,b=map(float,sys.argv[1:]); assert abs(a-b) <= 1e-5*abs(b), (a,b)" "$a" "$b" ||
    fail "strided ppl differs between runs/threads: $a vs $b"
"$RUN" ppl --model "$M" --file "$T/p.txt" --window 64 --stride 16 --quiet >"$T/p4.txt"
cmp -s "$T/p2.txt" "$T/p4.txt" || fail "strided ppl not reproducible"
ok "strided ppl (window 64, stride 16): all $((n - 1)) tokens scored, finite ($ppl), reproducible"

# --- generate ---
"$RUN" generate --model "$M" --prompt "The quick brown fox" --max-tokens 24 --quiet >"$T/g1.txt" 2>"$T/g1.err"
"$RUN" generate --model "$M" --prompt "The quick brown fox" --max-tokens 24 --quiet >"$T/g2.txt" 2>/dev/null
cmp -s "$T/g1.txt" "$T/g2.txt" || fail "greedy generation differs between runs"
[ -s "$T/g1.txt" ] || fail "greedy generation printed nothing"
grep -q "prompt tokens 5, generated tokens" "$T/g1.err" || fail "stats: $(cat "$T/g1.err")"
grep -q "decode .* tok/s" "$T/g1.err" || fail "no decode tok/s: $(cat "$T/g1.err")"
ok "greedy generate is deterministic: '$(head -c 60 "$T/g1.txt")'"
"$RUN" generate --model "$M" --prompt "Hello" --max-tokens 16 --temperature 0.8 --top-k 40 --top-p 0.9 --seed 11 --quiet >"$T/s1.txt" 2>/dev/null
"$RUN" generate --model "$M" --prompt "Hello" --max-tokens 16 --temperature 0.8 --top-k 40 --top-p 0.9 --seed 11 --quiet >"$T/s2.txt" 2>/dev/null
cmp -s "$T/s1.txt" "$T/s2.txt" || fail "seeded sampling differs between runs"
ok "seeded sampling is reproducible"
"$RUN" generate --model "$M" --chat --system "Be brief." --prompt "Hi there" --max-tokens 8 --quiet >"$T/c.txt" 2>"$T/c.err"
grep -Eq "prompt tokens [0-9]+, generated tokens [1-8] " "$T/c.err" || fail "chat: $(cat "$T/c.err")"
ok "generate --chat works ($(grep -o 'prompt tokens [0-9]*' "$T/c.err"))"

# --- info, quantized refusal ---
"$RUN" info --model "$M" >"$T/info.txt"
grep -q "6 layers (5 sliding, 1 full)" "$T/info.txt" || fail "info: $(cat "$T/info.txt")"
grep -q "96 tensors" "$T/info.txt" || fail "info tensors: $(cat "$T/info.txt")"
grep -q "quantization none" "$T/info.txt" || fail "info quantization: $(cat "$T/info.txt")"
ok "info"
cp -r "$M" "$T/q"
echo '{"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", "group_size": 16}}' >"$T/q/hf_quant_config.json"
"$RUN" info --model "$T/q" | grep -q 'quantization (hf_quant_config.json) .*NVFP4' || fail "info on a quantized folder"
"$RUN" logits --model "$T/q" --ids $LIDS --out "$T/q.bin" --device cpu 2>"$T/err.txt" ||
    fail "quantized config with BF16 weights: $(cat "$T/err.txt")"
grep -q "declares a quantization, but every Linear is stored BF16" "$T/err.txt" ||
    fail "quantized config with BF16 weights: no warning: $(cat "$T/err.txt")"
cmp -s "$T/q.bin" "$T/l1.bin" || fail "quantized config with BF16 weights: logits differ from the BF16 model"
ok "quantization config over BF16 weights: info shows it, logits run as BF16 with a warning"
# --- errors ---
expect_err() { # expect_err PATTERN ARGS...
    local pat=$1
    shift
    set +e
    "$RUN" "$@" >/dev/null 2>"$T/err.txt"
    local rc=$?
    set -e
    [ $rc -ne 0 ] || fail "'$*' succeeded"
    grep -q -- "$pat" "$T/err.txt" || fail "'$*': message lacks '$pat': $(cat "$T/err.txt")"
    ok "'$*' -> exit $rc: $(grep -m1 'error:' "$T/err.txt")"
}
expect_err "'x' is not a token id" logits --model "$M" --ids 2,x,3 --out "$T/e.bin"
expect_err "is not a token id" logits --model "$M" --ids 2,,3 --out "$T/e.bin"
expect_err "is not a token id" logits --model "$M" --ids -1 --out "$T/e.bin"
expect_err "outside the vocabulary of 2048" logits --model "$M" --ids 2,5000 --out "$T/e.bin"
expect_err "outside the vocabulary" detokenize --tokenizer "$TOK" --ids 1,99999
expect_err "model folder not found" logits --model "$T/nope" --ids 2 --out "$T/e.bin"
expect_err "model folder not found" info --model "$T/nope"
expect_err "$T/nope.json" tokenize --tokenizer "$T/nope.json" --text hi
expect_err "longer than the context of 8" generate --model "$M" --prompt "$TEXT" --ctx 8
expect_err "unknown subcommand 'bogus'" bogus
expect_err "unknown option '--window'" generate --model "$M" --prompt hi --window 3
expect_err "exactly one of --text and --file" tokenize --tokenizer "$TOK"
expect_err "stride" ppl --model "$M" --file "$T/p.txt" --window 16 --stride 32
: >"$T/empty.txt"
expect_err "at least 2" ppl --model "$M" --file "$T/empty.txt"
expect_err "precision bf16 needs the CUDA backend" logits --model "$M" --ids 2 --out "$T/e.bin" \
    --device cpu --precision bf16
expect_err "expected bf16 or fp32" logits --model "$M" --ids 2 --out "$T/e.bin" --precision fp16
echo "cli_run: $pass passed, 0 failed"
