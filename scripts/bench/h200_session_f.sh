#!/usr/bin/env bash
# The runs of bench/results/h200_2026-12-03-f.md in one call on the GPU machine: the GPU tests
# this session touched; on the 12b preset (made here), decode and prefill in BF16 and per packed
# format with this session's packed decode fusions off (G4Q_CUDA_FUSE=0: one launch per packed
# q/k/v and gate/up weight) and on; then the per-kernel decode step of the 12b cut to 4 layers,
# NVFP4 (scripts/bench/profile_decode.sh), and the BF16 prefill's (profile_prefill.sh). Tools
# from BIN (default build/). Usage: scripts/bench/h200_session_f.sh [BIN]
set -uo pipefail
bin=${1:-build}
G4Q_TOOLS=$bin . scripts/gpu/env.sh >/dev/null
for t in test_qgemm_gpu test_backend_gpu test_model_gpu; do
    [ -x build/$t ] && echo "$t: $(build/$t 2>&1 | grep -E 'passed|FAIL' | tail -4)"
done
[ -d /tmp/m12 ] || gemma4q-mkmodel --preset 12b --out /tmp/m12 --quiet | tail -1
for r in recipes/nvfp4a16.yaml recipes/fp8-block.yaml scripts/bench/recipes/int4-all-gptq.yaml; do
    n=$(basename "$r" .yaml)
    [ -d /tmp/q-$n ] || gemma4q-quantize --quiet --model /tmp/m12 --recipe "$r" --out /tmp/q-$n --device cuda
done
for m in /tmp/m12 /tmp/q-nvfp4a16 /tmp/q-fp8-block /tmp/q-int4-all-gptq; do
    for fz in 0 1; do
        echo "$(basename $m) fuse=$fz: $(G4Q_CUDA_FUSE=$fz test_qgemm_gpu --bench-model $m 1024 64 |
            grep -E 'decode|prefill' | sed 's/bench-model //' | tr '\n' ' ')"
    done
done
[ -d /tmp/m4 ] || gemma4q-mkmodel --preset 12b --layers 4 --out /tmp/m4 --quiet | tail -1
[ -d /tmp/q4 ] || gemma4q-quantize --quiet --model /tmp/m4 --recipe recipes/nvfp4a16.yaml --out /tmp/q4 --device cuda
bash scripts/bench/profile_decode.sh /tmp/q4 1024 /tmp/pd.csv
bash scripts/bench/profile_prefill.sh /tmp/m4 1024 /tmp/pp.csv
