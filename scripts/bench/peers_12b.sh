#!/usr/bin/env bash
# The speed and memory table of issue 5: gemma4q and the peers (ModelOpt, llm-compressor,
# auto-round), each end to end from its command line (start, load, calibrate where the format
# needs it, quantize, export), on one synthetic 12b checkpoint, one after another on one GPU.
#
# Usage (GPU machine, repository root, after `. scripts/gpu/env.sh`; carry .gpubin .devlibs .whl):
#   scripts/bench/peers_12b.sh WORK STEP ...
# Steps, run in the order given:
#   model                 gemma4q-mkmodel --preset 12b into WORK/m12b (skipped when present)
#   g4q:RECIPE.yaml       gemma4q-quantize --device cuda (the nvfp4 and GPTQ recipes also write
#                         the calibration ids they used to WORK/calib.bin, and their seq_len to
#                         WORK/calib.seq, for the peers; CALIB_SAMPLES / CALIB_SEQ_LEN override
#                         the recipe's calibration size)
#   modelopt:FORMAT       scripts/peers/modelopt_export.py (W4A4 formats get --calib WORK/calib.bin)
#   llmc:FORMAT           scripts/peers/llmcompressor_export.py (w4a16_gptq gets --calib
#                         WORK/calib.bin: run a g4q GPTQ step first)
#   autoround:FORMAT      scripts/peers/autoround_export.py
# Every step prints and appends to $OUT/peers.tsv one line: tool, format, wall seconds, peak GPU
# memory in MiB as nvidia-smi sees it (sampled every 100 ms: the whole process, CUDA context
# included, the same measure for every tool), output bytes. The export is deleted afterwards
# (disk); its configuration files are kept under $OUT/exports/.
set -uo pipefail
work=$1
shift
here=$(cd "$(dirname "$0")/../.." && pwd)
model=$work/m12b
mkdir -p "$work" "$OUT/exports"
tsv=$OUT/peers.tsv
[ -f "$tsv" ] || printf 'tool\tformat\twall_s\tpeak_gpu_mib\toutput_bytes\n' >"$tsv"

peers_env() {
    if [ ! -d /tmp/site ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$here"/.whl/*.whl || return 1
    fi
    export PYTHONPATH=/tmp/site
}

# timed TOOL FORMAT OUTDIR CMD...: runs CMD with a memory sampler, records the line.
timed() {
    local tool=$1 fmt=$2 out=$3
    shift 3
    rm -rf "$out" "$out.partial"
    local smi=$work/smi.$$
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$smi" &
    local sampler=$!
    local t0 t1 rc
    t0=$(date +%s.%N)
    "$@" >"$work/log.$tool.$fmt" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    local peak bytes
    peak=$(sort -n "$smi" | tail -n 1)
    bytes=$(du -sb "$out" 2>/dev/null | cut -f1)
    tail -n 4 "$work/log.$tool.$fmt" | tr -d '\r' | cut -c1-300
    if [ "$rc" -ne 0 ]; then
        echo "FAILED ($rc): $tool $fmt"
        cp "$work/log.$tool.$fmt" "$OUT/" 2>/dev/null
        return "$rc"
    fi
    awk -v t="$tool" -v f="$fmt" -v a="$t0" -v b="$t1" -v p="$peak" -v n="${bytes:-0}" \
        'BEGIN { printf "%s\t%s\t%.1f\t%s\t%s\n", t, f, b - a, p, n }' | tee -a "$tsv"
    mkdir -p "$OUT/exports/$tool-$fmt"
    for f in config.json hf_quant_config.json quantize_config.json peer_run.json; do
        [ -f "$out/$f" ] && cp "$out/$f" "$OUT/exports/$tool-$fmt/"
    done
    rm -rf "$out"
}

for step in "$@"; do
    kind=${step%%:*} arg=${step#*:}
    printf '\n=== %s\n' "$step"
    case $kind in
    model)
        [ -f "$model/config.json" ] ||
            gemma4q-mkmodel --preset 12b --out "$model" --quiet >/dev/null || exit 1
        ;;
    g4q)
        name=$(basename "$arg" .yaml)
        extra=()
        case $name in nvfp4 | nvfp4-mlp-only | *gptq*) extra=(--dump-calib "$work/calib.bin") ;; esac
        [ -n "${CALIB_SAMPLES:-}" ] && extra+=(--calib-samples "$CALIB_SAMPLES")
        [ -n "${CALIB_SEQ_LEN:-}" ] && extra+=(--calib-seq-len "$CALIB_SEQ_LEN")
        timed gemma4q "$name" "$work/q" gemma4q-quantize --model "$model" --recipe "$arg" \
            --out "$work/q" --device cuda --force "${extra[@]}" --json "$OUT/g4q-$name.json"
        python3 -c 'import json,sys; c=json.load(open(sys.argv[1])).get("calibration");
print(c["seq_len"] if c else "")' "$OUT/g4q-$name.json" >"$work/calib.seq" 2>/dev/null
        ;;
    modelopt | llmc | autoround)
        peers_env || { echo "peer wheels did not install"; continue; }
        script=$here/scripts/peers/$(case $kind in modelopt) echo modelopt_export.py ;;
            llmc) echo llmcompressor_export.py ;; autoround) echo autoround_export.py ;; esac)
        calib=()
        [ "$kind" = modelopt ] && case $arg in nvfp4* | fp8 | *+kv)
            calib=(--calib "$work/calib.bin:1024") ;; esac
        [ "$kind" = llmc ] && case $arg in *gptq)
            calib=(--calib "$work/calib.bin:$(cat "$work/calib.seq")") ;; esac
        timed "$kind" "$arg" "$work/p" python3 "$script" --model "$model" --out "$work/p" \
            --format "$arg" --device cuda "${calib[@]}"
        ;;
    *) echo "unknown step $step" ;;
    esac
done
cat "$tsv"
