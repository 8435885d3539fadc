#!/usr/bin/env bash
# Quantization quality of algorithm and scale-search variants on a trained model: for each
# variant below it writes a recipe (same calibration for all: 128 x 512 tokens of builtin:default, or of CALIB),
# quantizes MODEL_DIR with it (timed), compares the export with the BF16 model on each TEXT file
# (gemma4q-run compare, window 512 stride 256, the export's engine numerics) and prints one
# markdown row: KL mean per text, then top-1 agreement and perplexity on the last text, and the
# KL change against the family's baseline (the first variant of its family) on every text.
# Choose variants on a development text and report them on the held-out one: pass the dev text
# first and the held-out text last.
# CALIB=DATASET calibrates on another dataset (a .txt or .jsonl path; scripts/calib/debian_man.py
# writes in-domain text for the trained referee); ONLY=REGEX runs the variants whose
# "family|name" matches.
# Usage: scripts/bench/quality_variants.sh MODEL_DIR WORK_DIR DEVICE TEXT [TEXT...]
set -euo pipefail
model=${1:?usage: quality_variants.sh MODEL_DIR WORK_DIR DEVICE TEXT [TEXT...]}
work=${2:?work dir} dev=${3:?device}
shift 3
texts=("$@")
[ ${#texts[@]} -ge 1 ] || { echo "give at least one text file" >&2; exit 2; }
here=$(cd "$(dirname "$0")/../.." && pwd)
PATH="$here/build:$PATH"
mkdir -p "$work"
ALL='model.language_model.layers.*.{self_attn,mlp}.*_proj'
MLP='model.language_model.layers.*.mlp.*_proj'
# The W4A16 family has no KV-cache quantization, as the public W4A16 recipe (recipes/nvfp4a16.yaml);
# until 2026-12-03 (g) it had an FP8 KV cache (cast), which added a fixed error to every variant.
# family|name|export|pattern|weights|scale_search|algorithm|activations|kv|sequential[|smoothing]
variants=(
    "int4|rtn max|gptq|$ALL|int4|max|rtn|none|none|false"
    "int4|gptq max|gptq|$ALL|int4|max|gptq|none|none|false"
    "int4|gptq mse|gptq|$ALL|int4|mse|gptq|none|none|false"
    "int4|hessian|gptq|$ALL|int4|hessian|rtn|none|none|false"
    "int4|gptq hessian|gptq|$ALL|int4|hessian|gptq|none|none|false"
    "int4|gptq max seq|gptq|$ALL|int4|max|gptq|none|none|true"
    "int4|gptq hessian seq|gptq|$ALL|int4|hessian|gptq|none|none|true"
    "w4a16|rtn mse|modelopt|$ALL|nvfp4|mse|rtn|none|none|false"
    "w4a16|imatrix|modelopt|$ALL|nvfp4|imatrix|rtn|none|none|false"
    "w4a16|hessian|modelopt|$ALL|nvfp4|hessian|rtn|none|none|false"
    "w4a16|gptq mse|modelopt|$ALL|nvfp4|mse|gptq|none|none|false"
    "w4a16|gptq hessian|modelopt|$ALL|nvfp4|hessian|gptq|none|none|false"
    "w4a16|gptq mse seq|modelopt|$ALL|nvfp4|mse|gptq|none|none|true"
    "w4a16|gptq hessian seq|modelopt|$ALL|nvfp4|hessian|gptq|none|none|true"
    "w4a4|rtn mse|modelopt|$MLP|nvfp4|mse|rtn|nvfp4|fp8|false"
    "w4a4|imatrix|modelopt|$MLP|nvfp4|imatrix|rtn|nvfp4|fp8|false"
    "w4a4|hessian|modelopt|$MLP|nvfp4|hessian|rtn|nvfp4|fp8|false"
    "w4a4|gptq mse|modelopt|$MLP|nvfp4|mse|gptq|nvfp4|fp8|false"
    "w4a4|gptq hessian|modelopt|$MLP|nvfp4|hessian|gptq|nvfp4|fp8|false"
    "w4a4|gptq mse seq|modelopt|$MLP|nvfp4|mse|gptq|nvfp4|fp8|true"
    "w4a4|gptq hessian seq|modelopt|$MLP|nvfp4|hessian|gptq|nvfp4|fp8|true"
    "int4|awq gptq mse|gptq|$ALL|int4|mse|gptq|none|none|false|awq"
    "w4a16|awq mse|modelopt|$ALL|nvfp4|mse|rtn|none|none|false|awq"
    "w4a16|awq gptq mse|modelopt|$ALL|nvfp4|mse|gptq|none|none|false|awq"
    "w4a16|awq gptq hessian|modelopt|$ALL|nvfp4|hessian|gptq|none|none|false|awq"
    "w4a16|awq gptq hessian seq|modelopt|$ALL|nvfp4|hessian|gptq|none|none|true|awq"
    "w4a4|awq mse|modelopt|$MLP|nvfp4|mse|rtn|nvfp4|fp8|false|awq"
    "w4a4|awq gptq mse|modelopt|$MLP|nvfp4|mse|gptq|nvfp4|fp8|false|awq"
    "w4a4|awq gptq hessian|modelopt|$MLP|nvfp4|hessian|gptq|nvfp4|fp8|false|awq"
)
only=${ONLY:-} # a regex over "family|name" to run a subset
calib=${CALIB:-builtin:default}
recipe() { # FILE EXPORT PATTERN WEIGHTS SEARCH ALGO ACT KV SEQ SMOOTHING
    {
        echo "name: variant"
        echo "export: $2"
        echo "rules:"
        echo "  - pattern: \"$3\""
        echo "    weights: $4"
        echo "    scale_search: $5"
        echo "    algorithm: $6"
        echo "    activations: $7"
        [ "${10:-none}" = none ] || echo "    smoothing: ${10}"
        [ "$8" = none ] || printf 'kv_cache:\n  format: fp8\n  scales: cast\n'
        printf 'calibration:\n  dataset: %s\n  samples: 128\n  seq_len: 512\n' "$calib"
        echo "  sequential: $9"
    } >"$1"
}
hdr="| family | variant |"
sep="|---|---|"
for t in "${texts[@]}"; do hdr+=" KL $(basename "$t") |"; sep+="---|"; done
echo "$hdr top-1 | ppl | KL change | quantize s |"
echo "$sep---|---|---|---|"
declare -A base
for v in "${variants[@]}"; do
    IFS='|' read -r fam name exp pat wt srch algo act kv seq smooth <<<"$v"
    [[ -z "$only" || "$fam|$name" =~ $only ]] || continue
    slug=$(echo "$fam-$name" | tr ' ' '-')
    recipe "$work/$slug.yaml" "$exp" "$pat" "$wt" "$srch" "$algo" "$act" "$kv" "$seq" "${smooth:-none}"
    t0=$(date +%s.%N)
    gemma4q-quantize --model "$model" --recipe "$work/$slug.yaml" --out "$work/$slug" \
        --device "$dev" --quiet --force
    secs=$(python3 -c "print($(date +%s.%N) - $t0)")
    row="| $fam | $name |" kls=() top1="" ppl=""
    for t in "${texts[@]}"; do
        read -r kl top1 ppl < <(gemma4q-run compare --model "$model" --quantized "$work/$slug" \
            --file "$t" --window 512 --stride 256 --device "$dev" --json --quiet |
            python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["kl_mean"], j["top1_agreement"], j["ppl_cand"])')
        kls+=("$kl")
        row+=" $(printf %.5f "$kl") |"
    done
    [ -n "${base[$fam]:-}" ] || base[$fam]="${kls[*]}"
    read -r -a b <<<"${base[$fam]}"
    change=""
    for i in "${!kls[@]}"; do
        change+="$(python3 -c "print('%+.1f%%' % (100 * (${kls[$i]} / ${b[$i]} - 1)))") "
    done
    printf '%s %.2f%% | %.3f | %s| %.1f |\n' "$row" "$(python3 -c "print($top1 * 100)")" "$ppl" "$change" "$secs"
done
