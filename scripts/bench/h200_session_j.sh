#!/usr/bin/env bash
# The runs of bench/results/h200_2026-12-04-j.md on the GPU machine (PARTS picks them, default all):
#   tests    every GPU test program (scripts/gpu/check.sh tests)
#   models   the 12b preset and its nvfp4a16, fp8-block and INT4 (GPTQ layout) exports, in /tmp
#   shares   what each class of decode ops costs inside the replayed step (decode_shares.sh),
#            NVFP4 and BF16
#   io       the I/O floor for 13 GB of output, then fp8-block and nvfp4a16 quantize twice each
#   prefill  prefill of 1024 and 2048 tokens, BF16
#   decode   decode at context 1024 of each format
# Usage: scripts/bench/h200_session_j.sh [BIN]   (BIN: the built tools and test programs)
set -uo pipefail
bin=${1:-build}
G4Q_TOOLS=$bin . scripts/gpu/env.sh >/dev/null
parts=${PARTS:-tests models shares io prefill decode}
quantize_timed() { # RECIPE OUT
    rm -rf "$2"
    local t0
    t0=$(date +%s.%N)
    gemma4q-quantize --quiet --model /tmp/m12 --recipe "$1" --out "$2" --device cuda
    python3 -c "import sys, time; print('quantize %s %.2f s' % (sys.argv[1], time.time() - float(sys.argv[2])))" \
        "$(basename "$1" .yaml)" "$t0"
}
for p in $parts; do
    case $p in
    tests) bash scripts/gpu/check.sh tests ;;
    models) PARTS=models bash scripts/bench/h200_session_i.sh "$bin" ;; # the same four models
    shares)
        for m in /tmp/q-nvfp4a16 /tmp/m12; do
            echo "== $m"
            bash scripts/bench/decode_shares.sh "$m" 1024 attention norm_rope norms head \
                qkv,o,gate_up,down norm_rope,attention,norms | grep -v 'test seed'
        done ;;
    io)
        bash scripts/bench/io_floor.sh /tmp/m12 /tmp/w 13
        for i in 1 2; do
            quantize_timed recipes/fp8-block.yaml /tmp/qt
            quantize_timed recipes/nvfp4a16.yaml /tmp/qt
        done
        rm -rf /tmp/qt ;;
    prefill)
        for n in 1024 2048; do
            test_qgemm_gpu --bench-model /tmp/m12 $n 8 | grep prefill
        done ;;
    decode)
        for m in /tmp/m12 /tmp/q-nvfp4a16 /tmp/q-fp8-block /tmp/q-int4-all-gptq; do
            echo "$(basename $m): $(test_qgemm_gpu --bench-model $m 1024 64 | grep decode)"
        done ;;
    *) echo "unknown part $p (tests models shares io prefill decode)" >&2; exit 2 ;;
    esac
done
