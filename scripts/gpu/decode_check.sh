#!/usr/bin/env bash
# The decode work's GPU check in one call: the GPU test programs, then the 12B BF16 forward
# benchmark under backend knobs (BENCH_CONFIGS="PDL:KPR ...", default "1:0 0:0": programmatic
# dependent launch on/off with the GEMV's warps per row chosen by shape), and a kernel profile of
# a short decode when nsys is installed. Carry .gpubin (scripts/gpu/pack.sh) and .devlibs.
# Usage: scripts/gpu/decode_check.sh [tests|bench|profile ...]   (default: all three)
set -uo pipefail
. scripts/gpu/env.sh
work=${WORK:-/tmp/g4q}
mkdir -p "$work"
log() { printf '\n=== %s\n' "$*"; }
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(tests bench profile)
model12b() {
    [ -f "$work/m12b/config.json" ] ||
        gemma4q-mkmodel --preset 12b --out "$work/m12b" --quiet >/dev/null
}
for part in "${parts[@]}"; do
    case $part in
    tests)
        for t in test_backend_gpu test_qgemm_gpu test_quant_gpu; do
            log "$t"
            "$t" >"$OUT/$t.log" 2>&1
            echo "exit $?"
            grep -E "FAIL|passed|graph:|model" "$OUT/$t.log" | tail -n 12
        done
        ;;
    bench)
        model12b
        # Backend knobs per run (cuda_internal.h): PDL on/off, GEMV warps per row (0: by shape).
        for cfg in ${BENCH_CONFIGS:-1:0 0:0}; do
            log "forward benchmark, BF16 12B, G4Q_CUDA_PDL=${cfg%%:*} G4Q_CUDA_GEMV_KPR=${cfg#*:}"
            G4Q_CUDA_PDL=${cfg%%:*} G4Q_CUDA_GEMV_KPR=${cfg#*:} \
                test_backend_gpu --bench "$work/m12b" 1024 64 2>&1 | grep bench
        done
        ;;
    profile)
        nsys=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)
        if [ -z "$nsys" ]; then
            # ncu: the duration of each decode kernel of two graph-replayed steps, run one by one
            # (no overlap between kernels), clocks and caches left alone. The filter skips the
            # prefills' cuBLAS and attention kernels; PROFILE_SKIP kernels of it come before the
            # decode steps (4 prefills of 256 tokens and 2 recorded steps).
            model12b
            log "profile: ncu, decode kernel durations -> \$OUT/ncu.csv"
            ncu --csv --cache-control none --clock-control none \
                --metrics gpu__time_duration.sum \
                -k 'regex:gemv_kernel|step_|norm_add_norm|qkv_norm_rope|rmsnorm|softcap' \
                --launch-skip "${PROFILE_SKIP:-1500}" --launch-count 870 \
                test_backend_gpu --bench "$work/m12b" 256 16 noparts >"$OUT/ncu.csv" 2>&1
            echo "exit $?, $(grep -c gpu__time_duration "$OUT/ncu.csv") kernels"
            continue
        fi
        model12b
        log "profile: $nsys, decode kernels (graph nodes traced)"
        "$nsys" profile -q -o "$work/dec" -f true -t cuda --cuda-graph-trace=node \
            test_backend_gpu --bench "$work/m12b" 256 16 noparts >/dev/null 2>&1
        "$nsys" stats -q --report cuda_gpu_kern_sum --format csv "$work/dec.nsys-rep" \
            >"$OUT/kern_sum.csv" 2>&1
        head -n 30 "$OUT/kern_sum.csv" | cut -c1-220
        ;;
    esac
done
