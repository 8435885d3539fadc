#!/usr/bin/env bash
# Builds (here, no GPU needed) the test_qgemm_gpu variants that time the NVFP4 decode GEMV with a
# cp.async ring in shared memory (commit 4a8d43c, removed from the tree in 152640b) against the
# register pipeline of the tree; scripts/bench/h200_session_l.sh runs them on the GPU machine.
#   tq_R0    the tree (ring off)
#   tq_R4    ring of 4 slots (3 iterations ahead), 2 blocks per SM
#   tq_R3    ring of 3 slots, 2 blocks per SM
# (Three blocks per SM, which the ring's 72-84 registers would allow, is not a variant: the 12B's
# launches have 240-256 blocks of 8 warps (gate/up after the one-wave rule, o, down, q/k/v), so
# no SM would get a third block; that needs ~396 blocks or bigger blocks.)
# Each variant is the whole test program: run without arguments it checks the GEMV against the
# CPU backend; with --bench / --bench-model it times it.
# Usage: scripts/bench/ring_variants.sh OUTDIR [WORKTREE]   (WORKTREE default /tmp/g4q-ring)
set -euo pipefail
out=$(realpath -m "${1:?usage: ring_variants.sh OUTDIR [WORKTREE]}")
wt=${2:-/tmp/g4q-ring}
cd "$(dirname "$0")/../.."
rm -rf "$wt"
git worktree prune
git worktree add -f --detach "$wt" HEAD >/dev/null
cd "$wt"
git cherry-pick -n 4a8d43c >/dev/null
f=src/backend/cuda/cuda_qgemv.cu
# QV_RING (settable in the patch) and QV_RD (made settable here) are set per variant
sed -i 's/^#define QV_RD 4$/#ifndef QV_RD\n#define QV_RD 4\n#endif/' $f
[ "$(grep -c '^#ifndef QV_R' $f)" = 2 ] || { echo "ring_variants.sh: $f no longer takes the ring patch" >&2; exit 1; }
cmake -S . -B build -DG4Q_WERROR=ON >/dev/null
mkdir -p "$out"
for v in "R0 0 4" "R4 1 4" "R3 1 3"; do
    set -- $v
    sed -i "/^#ifndef QV_RING/{n;s/.*/#define QV_RING $2/}; /^#ifndef QV_RD/{n;s/.*/#define QV_RD $3/}" $f
    cmake --build build -j"$(nproc)" --target test_qgemm_gpu >/dev/null
    cp build/test_qgemm_gpu "$out/tq_$1"
    echo "built $out/tq_$1 (QV_RING $2, QV_RD $3)"
done
cd - >/dev/null
git worktree remove --force "$wt"
