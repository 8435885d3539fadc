#!/usr/bin/env bash
# The runs of bench/results/h200_2026-12-04-k.md that the code in the tree can repeat, on the GPU
# machine (PARTS picks them, default all):
#   tests    test_qgemm_gpu and test_model_gpu (the decode GEMV changed; the others did not)
#   models   the 12b preset and its nvfp4a16, fp8-block and INT4 (GPTQ layout) exports, in /tmp
#   gemv     the 15360 x 3840 packed GEMVs with and without the one-wave rule (G4Q_CUDA_GEMV_KPR=-1)
#   decode   decode at context 1024 of each packed format, with and without the rule, in the
#            order A B B A (the first run of a pair in one call tends to be slower)
# The other rows of the results file came from binaries that are not in the tree any more (the
# persistent MLP launch of af45de0, register depths and occupancies built with other constants);
# the file names their commits and settings.
# Usage: scripts/bench/h200_session_k.sh [BIN]   (BIN: the built tools and test programs)
set -uo pipefail
bin=${1:-build}
G4Q_TOOLS=$bin . scripts/gpu/env.sh >/dev/null
parts=${PARTS:-tests models gemv decode}
for p in $parts; do
    case $p in
    tests) bash scripts/gpu/check.sh tests:test_qgemm_gpu,test_model_gpu ;;
    models) PARTS=models bash scripts/bench/h200_session_i.sh "$bin" ;;
    gemv)
        for k in -1 0; do
            G4Q_CUDA_GEMV_KPR=$k test_qgemm_gpu --bench |
                grep -E "gemv (nvfp4 modelopt|fp8 128x128|int4 gptq) +15360 x 3840 +n 1" | sed "s/^/kpr=$k /"
        done ;;
    decode)
        for m in /tmp/q-nvfp4a16 /tmp/q-fp8-block /tmp/q-int4-all-gptq; do
            for k in -1 0 0 -1; do
                echo "$(basename $m) kpr=$k: $(G4Q_CUDA_GEMV_KPR=$k test_qgemm_gpu --bench-model $m 1024 64 |
                    grep decode | sed 's/bench-model //')"
            done
        done ;;
    *) echo "unknown part $p (tests models gemv decode)" >&2; exit 2 ;;
    esac
done
