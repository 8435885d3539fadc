#!/usr/bin/env bash
# GPU runs prepared in session l (which had no GPU machine), run in session n: numbers in
# bench/results/h200_2026-12-05-n.md. On the GPU machine, PARTS picks them (default: all, in order):
#   tests   test_qgemm_gpu, test_model_gpu and test_backend_gpu of the tree: the first GPU run of
#           the one-wave rule of the packed decode GEMV (ec34fe6) and of the 16-byte prefill kernel
#           of the q/k/v norms and RoPE (qkv_norm_rope_vec_kernel)
#   ring    the ring variants of scripts/bench/ring_variants.sh (RING: their folder) run as tests
#           (each checks the GEMV against the CPU backend; R0 is the tree's code, tested by tests)
#   models  the 12b preset and its nvfp4a16 export in /tmp (kept while the machine stays warm)
#   gemv    the NVFP4 decode GEMVs of each variant (test_qgemm_gpu --bench, n = 1)
#   decode  12b nvfp4a16 decode at context 1024 with each variant, in the order
#           R0 R4 R3 R3 R4 R0 (the first of a pair in one call tends to be slower); then
#           the tree's decode of nvfp4a16 and BF16 with the logits downloaded every step and
#           greedy with the pick on the device (as `gemma4q-run generate`)
#   prefill the q/k/v norms + RoPE kernel and its angles' table in a 1024-token prefill of the 12b
#           cut to 6 layers (ncu, scripts/bench/profile_prefill.sh; session j: 22.5 + 4.2 us per
#           sliding layer for the warp kernel), and 12b BF16 prefill tok/s three times
#   formats the tree's decode of the public fp8-block and int4-mlp-only exports, with nvfp4a16 and
#           BF16 between them, twice each (session n; needs models first)
#   ncu     where the tree's NVFP4 GEMV (15360 x 3840, n = 1) stalls, per SASS instruction: ncu's
#           source counters (warp stall sampling) into OUT/qv_src.ncu-rep and, as CSV, the source
#           page into OUT/qv_src_sass.csv (session k has the kernel-wide stall totals only)
# A part takes minutes (tests ~4, ring ~3, models + gemv + decode ~6, ncu + prefill ~5): one or
# two per call.
# Usage: [PARTS=...] [RING=DIR] scripts/bench/h200_session_l.sh [BIN]
#   BIN: the built tools and test programs of the tree (default build)
set -uo pipefail
bin=${1:-build}
ring=${RING:-.dev/ring}
G4Q_TOOLS=$bin . scripts/gpu/env.sh >/dev/null
parts=${PARTS:-tests ring models gemv decode formats ncu prefill}
variants="R0 R4 R3"
# export RECIPE: /tmp/q-RECIPE, the 12b preset quantized with recipes/RECIPE.yaml (made when missing)
export_of() {
    [ -d /tmp/q-$1 ] || gemma4q-quantize --quiet --model /tmp/m12 --recipe recipes/$1.yaml \
        --out /tmp/q-$1 --device cuda
}
# tree_decode MODEL...: the tree's decode of each, logits downloaded and greedy on the device
tree_decode() {
    for m; do
        test_qgemm_gpu --bench-model $m 1024 64 | grep -E "decode|greedy" | sed "s|^|$(basename $m) |"
    done
}
for p in $parts; do
    case $p in
    tests) bash scripts/gpu/check.sh tests:test_qgemm_gpu,test_model_gpu,test_backend_gpu ;;
    ring)
        for v in R4 R3; do
            echo "tq_$v: $(timeout 300 "$ring/tq_$v" 2>&1 | tail -1)"
        done ;;
    models)
        [ -d /tmp/m12 ] || gemma4q-mkmodel --preset 12b --out /tmp/m12 --quiet | tail -1
        export_of nvfp4a16 ;;
    gemv)
        for v in $variants; do
            "$ring/tq_$v" --bench | grep -E "gemv nvfp4 modelopt .* n 1" | sed "s/^/$v /"
        done ;;
    decode)
        for v in R0 R4 R3 R3 R4 R0; do
            echo "$v: $("$ring/tq_$v" --bench-model /tmp/q-nvfp4a16 1024 64 | grep decode |
                sed 's/bench-model //')"
        done
        tree_decode /tmp/q-nvfp4a16 /tmp/m12 ;;
    formats)
        export_of fp8-block && export_of int4-mlp-only
        tree_decode /tmp/q-fp8-block /tmp/q-int4-mlp-only /tmp/q-nvfp4a16 /tmp/m12 /tmp/q-fp8-block \
            /tmp/q-int4-mlp-only ;;
    ncu)
        ncu --section SourceCounters --section WarpStateStats -k regex:qv_kernel --launch-count 1 \
            -f -o "$OUT/qv_src" "$ring/tq_R0" --bench >"$OUT/qv_src.log" 2>&1
        ncu --import "$OUT/qv_src.ncu-rep" --page source --print-source sass --csv \
            >"$OUT/qv_src_sass.csv" 2>&1
        echo "ncu: $(wc -l <"$OUT/qv_src_sass.csv") rows in $OUT/qv_src_sass.csv"
        head -2 "$OUT/qv_src_sass.csv" | cut -c1-400 ;;
    prefill)
        [ -d /tmp/m12b6 ] || gemma4q-mkmodel --preset 12b --layers 6 --out /tmp/m12b6 --quiet | tail -1
        bash scripts/bench/profile_prefill.sh /tmp/m12b6 1024 "$OUT/prefill.csv" | head -20
        grep -E "qkv_norm_rope|rope_table" "$OUT/prefill.csv" | tail -4 | cut -c1-300
        [ -d /tmp/m12 ] || gemma4q-mkmodel --preset 12b --out /tmp/m12 --quiet | tail -1
        for r in 1 2 3; do test_qgemm_gpu --bench-model /tmp/m12 1024 8 | grep "prefill"; done ;;
    *) echo "unknown part $p (tests ring models gemv decode formats ncu prefill)" >&2; exit 2 ;;
    esac
done
