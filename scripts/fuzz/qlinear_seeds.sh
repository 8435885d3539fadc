#!/usr/bin/env bash
# Remakes the seeds of tests/fuzz_qlinear.c: the model of scripts/fuzz/micro_model.py quantized
# by each public recipe (patterns moved to the text-only names "model.layers.*", rules for absent
# multimodal modules dropped, calibration cut to 2 x 16 tokens), one model.safetensors each into
# tests/corpus/fuzz_qlinear/RECIPE.safetensors. Needs build/ (gemma4q-quantize) and .venv.
# Usage: scripts/fuzz/qlinear_seeds.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir "$t/m"
.venv/bin/python scripts/fuzz/micro_model.py "$t/m"
out=tests/corpus/fuzz_qlinear
mkdir -p "$out"
for r in nvfp4 nvfp4a16 fp8-block int4-mlp-only nvfp4-mlp-only; do
    sed 's/model\.language_model\.layers/model.layers/g; s/samples: 512/samples: 2/;
         s/seq_len: 1024/seq_len: 16/; s/batch: 4/batch: 1/' "recipes/$r.yaml" |
        awk '/pattern: "model\.vision_embedder/ {skip = 1; next} skip && /^    / {next} {skip = 0; print}' \
            > "$t/$r.yaml"
    build/gemma4q-quantize --model "$t/m" --recipe "$t/$r.yaml" --out "$t/q-$r" --quiet --device cpu
    cp "$t/q-$r/model.safetensors" "$out/$r.safetensors"
    echo "$out/$r.safetensors: $(stat -c %s "$out/$r.safetensors") bytes"
done
