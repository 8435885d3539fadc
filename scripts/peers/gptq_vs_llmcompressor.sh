#!/usr/bin/env bash
# GPTQ INT4 W4A16 (group 128, symmetric) against llm-compressor's GPTQModifier on the same
# calibration token ids, judged by KL divergence against the BF16 model.
#   1. gemma4q-quantize --dump-calib writes the ids of the recipes' calibration section
#      (SAMPLES x SEQ_LEN tokens of builtin:default, or of CALIB);
#   2. llmcompressor_export.py --format w4a16_gptq quantizes MODEL_DIR on exactly those ids
#      (compressed-tensors pack-quantized), timed; gemma4q-inspect --check checks its export;
#   3. gemma4q quantizes MODEL_DIR with each variant (compressed-tensors, int4, every text Linear
#      "model.language_model.layers.*.{self_attn,mlp}.*_proj", the same calibration section),
#      timed: max-gptq (the min-max scales of llm-compressor's observer), mse-gptq, max-rtn;
#      VARIANTS="... max-gptq-seq" adds GPTQ with calibration.sequential (every layer calibrated
#      on the quantized outputs of the layers before, as llm-compressor's sequential pipeline);
#   4. gemma4q-run compare (window 512, stride 256) runs each export against MODEL_DIR on TEXT,
#      one after another, and one markdown row per export is printed (also WORK_DIR/table.md).
# LC_EXPORT=DIR skips step 2 and compares an llm-compressor export made earlier (e.g. on another
# machine, from the ids.bin of step 1: they depend only on the recipe and the tokenizer).
# CALIB=DATASET calibrates on another dataset than builtin:default (a .txt or .jsonl path, e.g. the
# in-domain text of scripts/calib/debian_man.py). DEVICE (cpu, cuda or auto, default auto) is used
# by every step. Python: $PYTHON, else the
# repository's .venv, else python3, with llm-compressor installed (README.md). Everything else
# lands in WORK_DIR: recipes, ids.bin, the exports, their logs and compare JSONs.
# Usage: scripts/peers/gptq_vs_llmcompressor.sh MODEL_DIR TEXT WORK_DIR [DEVICE]
set -euo pipefail
model=${1:?usage: gptq_vs_llmcompressor.sh MODEL_DIR TEXT WORK_DIR [DEVICE]}
text=${2:?text file} work=${3:?work dir} dev=${4:-auto}
samples=${SAMPLES:-128} seq_len=${SEQ_LEN:-512} calib=${CALIB:-builtin:default}
variants=${VARIANTS:-max-gptq mse-gptq max-rtn}
here=$(cd "$(dirname "$0")/../.." && pwd)
PATH="$here/build:$PATH"
py=${PYTHON:-}
[ -n "$py" ] || { [ -x "$here/.venv/bin/python" ] && py=$here/.venv/bin/python; } || py=python3
pydev=()
[ "$dev" = auto ] || pydev=(--device "$dev")
mkdir -p "$work"

now() { date +%s.%N; }
since() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }

# recipe NAME SCALE_SEARCH ALGORITHM [SEQUENTIAL]: WORK_DIR/NAME.yaml
recipe() {
    cat >"$work/$1.yaml" <<EOF
name: ct-int4-$1
description: INT4 W4A16 g128 (compressed-tensors pack-quantized), all text Linears, $2, $3
export: compressed-tensors
rules:
  - pattern: "model.language_model.layers.*.{self_attn,mlp}.*_proj"
    weights: int4
    scale_search: $2
    algorithm: $3
kv_cache:
  format: none
calibration:
  dataset: $calib
  samples: $samples
  seq_len: $seq_len
EOF
    [ -z "${4:-}" ] || echo "  sequential: true" >>"$work/$1.yaml"
}
for v in $variants; do
    case $v in
    max-gptq) recipe "$v" max gptq ;;
    mse-gptq) recipe "$v" mse gptq ;;
    max-rtn) recipe "$v" max rtn ;;
    mse-rtn) recipe "$v" mse rtn ;;
    max-gptq-seq) recipe "$v" max gptq seq ;;
    *) echo "unknown variant $v (max-gptq mse-gptq max-rtn mse-rtn max-gptq-seq)" >&2; exit 2 ;;
    esac
done
first=${variants%% *}

# 1. The calibration ids (every variant's calibration section is the same, so are its ids).
gemma4q-quantize --model "$model" --recipe "$work/$first.yaml" --dump-calib "$work/ids.bin" \
    --dry-run --quiet >/dev/null

# 2. llm-compressor GPTQ W4A16 on those ids (or the export given in LC_EXPORT).
lc=${LC_EXPORT:-$work/lc-w4a16-gptq}
lc_secs=-
if [ -z "${LC_EXPORT:-}" ]; then
    t0=$(now)
    "$py" "$here/scripts/peers/llmcompressor_export.py" --model "$model" --out "$lc" \
        --format w4a16_gptq "${pydev[@]}" --calib "$work/ids.bin:$seq_len" >"$work/lc-w4a16-gptq.log" 2>&1 ||
        { tail -n 20 "$work/lc-w4a16-gptq.log" >&2; exit 1; }
    lc_secs=$(since "$t0")
fi
lc_ver=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["tool"])' "$lc/peer_run.json")
lc_dev=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["device"])' "$lc/peer_run.json")
if gemma4q-inspect --check "$lc" >"$work/lc-w4a16-gptq.check" 2>&1; then
    echo "gemma4q-inspect --check lc-w4a16-gptq: $(tail -n 1 "$work/lc-w4a16-gptq.check")"
else
    echo "gemma4q-inspect --check lc-w4a16-gptq FAILED:" >&2
    tail -n 20 "$work/lc-w4a16-gptq.check" >&2
fi

# 3. gemma4q on the same calibration section.
declare -A secs gdev
for v in $variants; do
    t0=$(now)
    gemma4q-quantize --model "$model" --recipe "$work/$v.yaml" --out "$work/g4q-$v" \
        --device "$dev" --force --json "$work/g4q-$v.json" >"$work/g4q-$v.log" 2>&1 ||
        { tail -n 20 "$work/g4q-$v.log" >&2; exit 1; }
    secs[$v]=$(since "$t0")
    gdev[$v]=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["device"])' \
        "$work/g4q-$v.json" 2>/dev/null || echo "$dev")
    ids=$(python3 -c 'import json, sys; c = json.load(open(sys.argv[1])).get("calibration"); print(c["ids_sha256"] if c else "-")' \
        "$work/g4q-$v.json" 2>/dev/null || echo "?")
    echo "gemma4q $v: ${secs[$v]} s (calibration ids sha256 $ids)"
done
echo "calibration ids given to llm-compressor: sha256 $(sha256sum "$work/ids.bin" | cut -c1-64)"

# 4. KL against the BF16 model, one export after another.
table=$work/table.md
{
    echo "| tool / variant | KL mean | KL p99 | top-1 | ppl (BF16 ppl) | quantize s | device |"
    echo "|---|---|---|---|---|---|---|"
} >"$table"
row() { # NAME DIR SECONDS DEVICE
    local j=$work/compare-$(basename "$2").json
    gemma4q-run compare --model "$model" --quantized "$2" --file "$text" --window 512 \
        --stride 256 --device "$dev" --json --quiet >"$j" ||
        { echo "| $1 | compare failed | | | | $3 | $4 |" >>"$table"; return; }
    python3 - "$1" "$j" "$3" "$4" >>"$table" <<'PY'
import json, sys
name, path, secs, dev = sys.argv[1:]
j = json.load(open(path))
print("| %s | %.5f | %.4f | %.2f%% | %.3f (%.3f) | %s | %s |" % (
    name, j["kl_mean"], j["kl_p99"], 100 * j["top1_agreement"], j["ppl_cand"], j["ppl_ref"],
    secs, dev))
PY
}
row "$lc_ver GPTQ W4A16 (minmax, sequential)" "$lc" "$lc_secs" "$lc_dev"
for v in $variants; do
    row "gemma4q $v" "$work/g4q-$v" "${secs[$v]}" "${gdev[$v]}"
done
cat "$table"
