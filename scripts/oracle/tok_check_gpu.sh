# Tokenizer oracle on the GPU machine, where Python `tokenizers` 0.23 is installed:
#  1. scripts/oracle/tok_compare.py (the C tokenizer through BUILD/test_tokenizer vs HF on its
#     built-in varied text set);
#  2. `gemma4q-run tokenize` vs HF on a few texts (the tool's path: file reading, id printing).
# Usage (from the repository root): bash scripts/oracle/tok_check_gpu.sh [BUILD_DIR] [TOKENIZER]
#   BUILD_DIR  default build (needs test_tokenizer and gemma4q-run built)
#   TOKENIZER  default $G4Q_SHARED_DIR/data/gemma3-tokenizer.json.gz (G4Q_SHARED_DIR default shared)
# Logs and vectors go to $OUT (scripts/gpu/env.sh sets it). Exit status 0 when everything agrees.
set -euo pipefail
. scripts/gpu/env.sh
B=${1:-build}
TOKJ=${2:-${G4Q_SHARED_DIR:-shared}/data/gemma3-tokenizer.json.gz}
for f in "$B/test_tokenizer" "$B/gemma4q-run"; do
    [ -x "$f" ] || { echo "missing $f: build it first (cmake --build $B --target $(basename "$f"))"; exit 2; }
done
[ -f "$TOKJ" ] || { echo "missing tokenizer $TOKJ (give its path as the second argument)"; exit 2; }

python3 scripts/oracle/tok_compare.py --tokenizer "$TOKJ" --bin "$B/test_tokenizer" \
    --write-vectors "$OUT/tok_vectors.txt" 2>&1 | tee "$OUT/tok_compare.log"

python3 - "$B/gemma4q-run" "$TOKJ" <<'EOF' 2>&1 | tee "$OUT/tok_run_compare.log"
import gzip, os, subprocess, sys, tempfile
from tokenizers import Tokenizer
run, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
tok = Tokenizer.from_str((gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode())
texts = ["Hello world", "Hello  world ", "a\n\nb", "\U0001F600 \U0001D518 \x07",
         "<start_of_turn>user\nHi<end_of_turn>\n", "The café costs 3,50 € — ok?\tTabs\t\tend.\n"]
bad = 0
with tempfile.TemporaryDirectory() as d:
    for i, t in enumerate(texts):
        f = os.path.join(d, "t%d.txt" % i)
        open(f, "w", encoding="utf-8").write(t)
        out = subprocess.run([run, "tokenize", "--tokenizer", path, "--file", f], check=True,
                             capture_output=True, text=True).stdout.strip()
        got = [int(x) for x in out.split(",")] if out else []
        want = tok.encode(t, add_special_tokens=False).ids
        bad += got != want
        print("%s  %r -> %s%s" % ("PASS" if got == want else "FAIL", t, got,
                                  "" if got == want else " (HF: %s)" % want))
print("FAIL" if bad else "PASS")
sys.exit(1 if bad else 0)
EOF
