#!/usr/bin/env bash
# The GPU machine's check. Build here with CUDA, `scripts/gpu/pack.sh` (tools and test_*_gpu
# programs into .gpubin/), carry .gpubin and .devlibs, and run from the repository root there:
#
#   scripts/gpu/check.sh [PART[:SUB,SUB...] ...]      (no PART: all)
#
#   tests    the GPU-labelled tests: every test_*_gpu program (.gpubin/, else build/) and every
#            tests/cli_*_gpu.sh, among them cli_export_identity_gpu.sh (every recipe's export made
#            with --device cpu and --device cuda, compared byte for byte). One PASS/FAIL line per
#            test, then "tests: N passed, M failed". SUB: test names (test_qgemm_gpu, ...).
#   memcheck the GPU test programs under compute-sanitizer's memcheck (out-of-bounds and misaligned
#            device accesses, which a value check can miss), each under a time limit
#            (MEMCHECK_SECONDS, default 120: memcheck slows kernels many times); a program cut by
#            the limit fails the part, with a line saying whether memcheck had found errors. SUB: test
#            names (default test_model_gpu, test_attention_gpu, test_qgemm_gpu, test_backend_gpu).
#            Not part of all; not yet run on the GPU machine when written (session n).
#   oracle   transformers against gemma4q-run on the same ids (scripts/oracle/compare_transformers.py):
#              tiny, small  16, 100 and 300 tokens; CPU, CUDA fp32 and bf16; fp64 conditioning
#              12b6         the 12b shape cut to 6 layers, 16 and 1100 tokens (CPU and CUDA),
#                           2048 tokens (CUDA)
#              load         scripts/oracle/load_check.py on tiny (keys, values, tokenizer, forward)
#              load12b      load_check.py on the full 12b preset (not in the default)
#   bench    the README's "Measured" rows, on the 12b preset in WORK/m12b (made when missing):
#              mkmodel        scripts/bench/mkmodel.sh 12b (rewrites WORK/m12b; write time)
#              quantize       scripts/bench/quantize.sh, cuda (NVFP4 MSE sweep, FP8 blocks), then
#                             gemma4q-inspect --check on both exports (deleted afterwards)
#              forward        scripts/bench/forward_gpu.sh: BF16 decode / prefill / GEMVs;
#                             BENCH_CONFIGS="PDL:KPR ..." runs it once per backend knob setting
#                             (G4Q_CUDA_PDL, G4Q_CUDA_GEMV_KPR; e.g. "1:0 0:0")
#              calib          scripts/bench/quantize.sh with recipes/nvfp4.yaml: W4A4, 512 x 1024
#                             calibration tokens (the export is deleted afterwards)
#              generate       gemma4q-run generate, BF16, 200 new tokens on cuda
#              forward-quant  scripts/bench/forward_quant_gpu.sh: NVFP4 / FP8 128x128 / INT4 decode
#                             and prefill (quantizes into WORK/m12b-q once, reused after)
#   profile  kernel durations of a short 12B BF16 decode: nsys when installed (kernel summary),
#            else ncu (each decode kernel of two graph-replayed steps; PROFILE_SKIP launches
#            skipped first, default 1500). CSV in OUT/profile.csv. Only when asked for.
#   peers    the peer tools (ModelOpt, llm-compressor, auto-round); need their wheels in .whl/
#            (scripts/peers/wheels.sh makes it; carry it too) or already importable:
#              table   scripts/bench/peers_12b.sh: the README's speed and memory table (12b)
#              parity  scripts/peers/calib_parity.sh WORK/tp 16 256: calibrated formats, tiny
#   all      tests oracle bench, then peers if the peer wheels are there.
#   -h, --help  this text.
#
# Examples: scripts/gpu/check.sh tests
#           scripts/gpu/check.sh bench:mkmodel,quantize,forward
#           BENCH_CONFIGS="1:0 0:0" scripts/gpu/check.sh bench:forward profile
# Environment: WORK (default /tmp/g4q) holds the models and exports: the 12b preset is 24 GB and
#   bench keeps about 55 GB there (m12b, m12b-q); OUT (scripts/gpu/env.sh: default ./out) gets one
#   log per part, OUT/PART.log, with every command's full output; the console gets a few summary
#   lines per step. Exit status 0 when every step of every part passed. The parts take minutes
#   each (bench the longest: with a time limit per command, run its steps in several calls).
set -uo pipefail
case ${1:-} in -h | --help) sed -n '2,/^set /p' "$0" | sed -e '/^set /d' -e 's/^# \{0,1\}//'; exit 0 ;; esac
for p in "$@"; do
    case ${p%%:*} in
    tests | memcheck | oracle | bench | profile | peers | all) ;;
    *) echo "check.sh: unknown part '$p' (see --help)" >&2; exit 2 ;;
    esac
done
cd "$(dirname "$0")/../.." || exit 2
# shellcheck source=scripts/gpu/env.sh
. scripts/gpu/env.sh
WORK=${WORK:-/tmp/g4q}
mkdir -p "$WORK" "$OUT"
exec 3>&1
tmp=$WORK/.step.out
failed_parts=()
part_ok=1

# say LINE: to the console and to the part's log.
say() { printf '%s\n' "$*" >&3; printf '%s\n' "$*"; }

# shown FILE: FILE as a terminal would show it (progress bars: their last state).
shown() { sed -e 's/\r$//' -e 's/.*\r//' "$1"; }

# run NAME PATTERN CMD...: runs CMD, its whole output to the part's log; prints "ok NAME" or
# "FAIL NAME" with the time, then CMD's lines matching PATTERN (extended regex), indented.
run() {
    local name=$1 pat=$2 t0=$SECONDS rc
    shift 2
    printf '\n=== %s: %s\n' "$name" "$*"
    "$@" >"$tmp" 2>&1
    rc=$?
    shown "$tmp"
    if [ "$rc" -eq 0 ]; then
        say "ok   $name ($((SECONDS - t0)) s)"
    else
        say "FAIL $name (exit $rc, $((SECONDS - t0)) s)"
        part_ok=0
    fi
    [ -z "$pat" ] || shown "$tmp" | grep -E -- "$pat" | head -n 24 | cut -c1-200 |
        sed 's/^/     /' >&3
    return "$rc"
}

# mkmodel PRESET DIR [options]: a synthetic checkpoint, made when missing.
mkmodel() {
    [ -f "$2/config.json" ] && return 0
    run "mkmodel $1${3:+ ${*:3}}" '' gemma4q-mkmodel --preset "$1" --out "$2" --force --quiet "${@:3}"
}

# ---------------------------------------------------------------- tests
part_tests() {
    local subs=$1 names=() seen=" " f n pass=0 fail=0 line bindir rc
    bindir=$(dirname "$(command -v gemma4q-quantize)")
    for f in .gpubin/test_*_gpu build/test_*_gpu tests/cli_*_gpu.sh; do
        [ -e "$f" ] || continue
        n=$(basename "$f" .sh)
        case $seen in *" $n "*) continue ;; esac
        [ -z "$subs" ] || case ",$subs," in *",$n,"*) ;; *) continue ;; esac
        seen="$seen$n "
        names+=("$f")
    done
    if [ -z "$subs" ] && ! compgen -G '.gpubin/test_*_gpu' >/dev/null &&
        ! compgen -G 'build/test_*_gpu' >/dev/null; then
        say "FAIL tests: no test_*_gpu programs in .gpubin/ or build/ (a CUDA build, then scripts/gpu/pack.sh)"
        fail=1
        part_ok=0
    fi
    if [ ${#names[@]} -eq 0 ]; then
        say "FAIL tests: none found (${subs:-nothing in .gpubin/, build/ or tests/cli_*_gpu.sh})"
        return 1
    fi
    for f in "${names[@]}"; do
        n=$(basename "$f" .sh)
        # Scripts: their FAIL lines and the calibrated recipes' scale differences (to record).
        if [ "${f%.sh}" != "$f" ]; then
            run "$n" '^FAIL|^problem|^ok: .*calibrates' bash "$f" "$bindir" "$PWD"
        else
            G4Q_BINARY_DIR=$WORK G4Q_SOURCE_DIR=$PWD run "$n" 'FAIL' "$f"
        fi
        rc=$?
        line=$(shown "$tmp" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
        if [ "$rc" -eq 0 ] && [ -n "$line" ]; then
            pass=$((pass + 1))
            say "     $line"
        else
            fail=$((fail + 1))
            part_ok=0
            say "     ${line:-no 'N passed, N failed' line}"
        fi
    done
    say "tests: $pass passed, $fail failed"
}

# ---------------------------------------------------------------- oracle
# oracle_cmp NAME DIR ARGS...: compare_transformers.py, then one line per comparison (worst case
# over the lengths) on the console; the JSON goes to the log.
oracle_cmp() {
    local name=$1 dir=$2 o=$WORK/oracle-out
    shift 2
    mkdir -p "$o" && rm -f "$o/compare_transformers.json"
    OUT=$o run "oracle $name" '' python3 scripts/oracle/compare_transformers.py \
        --model "$dir" --binary "$(command -v gemma4q-run)" "$@"
    [ -f "$o/compare_transformers.json" ] || return 0
    cat "$o/compare_transformers.json"
    python3 - "$o/compare_transformers.json" <<'EOF' | sed 's/^/     /' >&3
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
seen = {}
for r in rows:
    s = seen.setdefault(r["comparison"], {"rel": 0, "max_abs": 0, "top1": 1, "status": set(), "n": []})
    s["rel"], s["max_abs"] = max(s["rel"], r["rel"]), max(s["max_abs"], r["max_abs"])
    s["top1"] = min(s["top1"], r["top1"])
    s["status"].add(r["status"])
    s["n"].append(str(r["length"]))
for c, s in seen.items():
    st = "FAIL" if "FAIL" in s["status"] else ("PASS" if "PASS" in s["status"] else "-")
    print("%-28s rel %.3g, max|diff| %.3g, top-1 %.2f%% (lengths %s) %s"
          % (c, s["rel"], s["max_abs"], 100 * s["top1"], ",".join(s["n"]), st))
EOF
}

part_oracle() {
    local subs=${1:-tiny,small,12b6,load} s
    python3 -c 'import torch, transformers' 2>/dev/null || {
        say "FAIL oracle: python3 cannot import torch and transformers"
        return 1
    }
    for s in ${subs//,/ }; do
        case $s in
        tiny | small)
            mkmodel "$s" "$WORK/$s" &&
                oracle_cmp "$s" "$WORK/$s" --lengths 16,100,300 --devices cpu,cuda --check-fp64
            ;;
        12b6)
            mkmodel 12b "$WORK/m12b6" --layers 6 &&
                oracle_cmp "12b6" "$WORK/m12b6" --lengths 16,1100 --devices cpu,cuda &&
                oracle_cmp "12b6 2048" "$WORK/m12b6" --lengths 2048 --devices cuda
            ;;
        load)
            mkmodel tiny "$WORK/tiny" &&
                run "load_check tiny" '^(FAIL|PASS)' python3 scripts/oracle/load_check.py "$WORK/tiny"
            ;;
        load12b)
            mkmodel 12b "$WORK/m12b" &&
                run "load_check 12b" '^(FAIL|PASS|SKIP)' timeout "${LOAD_12B_SECONDS:-300}" \
                    python3 scripts/oracle/load_check.py "$WORK/m12b" --max-fp64-params 0
            ;;
        *) say "FAIL oracle: unknown step '$s'"; part_ok=0 ;;
        esac
    done
}

# ---------------------------------------------------------------- bench
part_bench() {
    local subs=${1:-mkmodel,quantize,forward,calib,generate,forward-quant} s q cfg
    local bindir m=$WORK/m12b
    bindir=$(dirname "$(command -v gemma4q-quantize)")
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null
    for s in ${subs//,/ }; do
        case $s in
        mkmodel)
            run "bench mkmodel 12b" '^mkmodel|peak RSS' scripts/bench/mkmodel.sh 12b "$m"
            ;;
        quantize)
            mkmodel 12b "$m" || continue
            run "bench quantize 12B" '^bench quantize|peak' \
                scripts/bench/quantize.sh "$m" "$WORK/q12b" cuda
            for q in "$WORK"/q12b/*/; do
                [ -d "$q" ] && run "inspect --check $(basename "$q")" 'checks' gemma4q-inspect --check "$q"
            done
            cat "$WORK"/q12b/*.report.json 2>/dev/null
            rm -rf "$WORK/q12b"
            ;;
        forward)
            mkmodel 12b "$m" || continue
            if [ -z "${BENCH_CONFIGS:-}" ]; then
                run "bench forward BF16" '^bench (model|prefill|decode|peak)' \
                    scripts/bench/forward_gpu.sh "$bindir" "$m" 1024 64
            fi
            for cfg in ${BENCH_CONFIGS:-}; do
                G4Q_CUDA_PDL=${cfg%%:*} G4Q_CUDA_GEMV_KPR=${cfg#*:} \
                    run "bench forward BF16, G4Q_CUDA_PDL=${cfg%%:*} G4Q_CUDA_GEMV_KPR=${cfg#*:}" \
                    '^bench (prefill|decode|peak)' scripts/bench/forward_gpu.sh "$bindir" "$m" 1024 64
            done
            ;;
        calib)
            mkmodel 12b "$m" || continue
            run "bench W4A4 calibration 12B" '^bench quantize|calibration|peak' \
                scripts/bench/quantize.sh "$m" "$WORK/q12b" cuda recipes/nvfp4.yaml
            cat "$WORK"/q12b/*.report.json 2>/dev/null
            rm -rf "$WORK/q12b"
            ;;
        generate)
            mkmodel 12b "$m" || continue
            run "bench generate 12B BF16" 'decode' gemma4q-run generate --model "$m" \
                --prompt "The quick brown fox" --max-tokens 200 --device cuda
            ;;
        forward-quant)
            mkmodel 12b "$m" || continue
            run "bench forward quantized" '^SUMMARY|^quantize |^bench-model peak' \
                scripts/bench/forward_quant_gpu.sh "$bindir" "$m" "$WORK/m12b-q" 1024 64
            ;;
        *) say "FAIL bench: unknown step '$s'"; part_ok=0 ;;
        esac
    done
    df -h "$WORK" | tail -n 1
}

# ---------------------------------------------------------------- profile
part_profile() {
    local m=$WORK/m12b nsys f
    mkmodel 12b "$m" || return 1
    nsys=$(command -v nsys)
    for f in /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys; do
        [ -n "$nsys" ] || [ ! -x "$f" ] || nsys=$f
    done
    if [ -n "$nsys" ]; then
        run "profile: nsys, decode kernels (graph nodes traced)" '' "$nsys" profile -q \
            -o "$WORK/dec" -f true -t cuda --cuda-graph-trace=node \
            test_backend_gpu --bench "$m" 256 16 noparts &&
            "$nsys" stats -q --report cuda_gpu_kern_sum --format csv "$WORK/dec.nsys-rep" \
                >"$OUT/profile.csv" 2>&1
        head -n 30 "$OUT/profile.csv" | cut -c1-220 >&3
    else
        # ncu: the duration of each decode kernel of two graph-replayed steps, run one by one
        # (no overlap between kernels), clocks and caches left alone. The filter skips the
        # prefills' cuBLAS and attention kernels; PROFILE_SKIP kernels of it come before the
        # decode steps (4 prefills of 256 tokens and 2 recorded steps).
        run "profile: ncu, decode kernel durations" '' ncu --csv --cache-control none \
            --clock-control none --metrics gpu__time_duration.sum \
            -k 'regex:gemv_kernel|step_|norm_add_norm|qkv_norm_rope|rmsnorm|softcap' \
            --launch-skip "${PROFILE_SKIP:-1500}" --launch-count 870 \
            test_backend_gpu --bench "$m" 256 16 noparts
        cp "$tmp" "$OUT/profile.csv"
        say "     $(grep -c gpu__time_duration "$OUT/profile.csv") kernels in OUT/profile.csv"
    fi
}

# ---------------------------------------------------------------- peers
peers_present() { python3 -c 'import modelopt, llmcompressor, auto_round' 2>/dev/null || compgen -G '.whl/*.whl' >/dev/null; }

peers_env() {
    python3 -c 'import modelopt, llmcompressor, auto_round' 2>/dev/null && return 0
    if ! compgen -G '.whl/*.whl' >/dev/null; then
        say "FAIL peers: no peer wheels: run scripts/peers/wheels.sh on the build machine and carry .whl (scripts/peers/README.md)"
        return 1
    fi
    [ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl || { say "FAIL peers: the wheels in .whl/ did not install"; return 1; }
    export PYTHONPATH=/tmp/site
}

part_peers() {
    local subs=${1:-table,parity} s o=$WORK/peers-out
    peers_env || return 1
    rm -rf "$o" && mkdir -p "$o"
    for s in ${subs//,/ }; do
        case $s in
        table)
            OUT=$o run "peers table 12b" "^(gemma4q|modelopt|llmc|autoround)"$'\t'"|FAILED|did not install" \
                scripts/bench/peers_12b.sh "$WORK" model g4q:recipes/nvfp4.yaml modelopt:nvfp4 \
                g4q:scripts/peers/recipes/mo-w4a16-nvfp4.yaml modelopt:w4a16_nvfp4 \
                g4q:recipes/nvfp4a16.yaml llmc:nvfp4a16 g4q:scripts/peers/recipes/ct-w4a16-int4.yaml \
                llmc:w4a16 g4q:scripts/bench/recipes/int4-all-gptq.yaml autoround:int4_rtn
            ! grep -q -E '^FAILED|did not install' "$tmp" || {
                say "FAIL peers table: a step failed (its log is folded in below)"
                part_ok=0
            }
            ;;
        parity)
            OUT=$o run "peers calibrated parity, tiny" '^=== |^summary' \
                scripts/peers/calib_parity.sh "$WORK/tp" 16 256
            ;;
        *) say "FAIL peers: unknown step '$s'"; part_ok=0 ;;
        esac
    done
    # The scripts' own files (peers.tsv, export configs, parity diffs), folded into this log.
    find "$o" -type f | sort | while read -r f; do printf '\n==> %s <==\n' "${f#"$o"/}"; cat "$f"; done
}

# ---------------------------------------------------------------- memcheck
part_memcheck() {
    local subs=${1:-test_model_gpu,test_attention_gpu,test_qgemm_gpu,test_backend_gpu} n f rc
    local limit=${MEMCHECK_SECONDS:-120}
    if ! command -v compute-sanitizer >/dev/null; then
        say "FAIL memcheck: compute-sanitizer not on PATH"
        part_ok=0
        return 1
    fi
    for n in ${subs//,/ }; do
        f=.gpubin/$n
        [ -x "$f" ] || f=build/$n
        if [ ! -x "$f" ]; then
            say "FAIL memcheck $n: no .gpubin/$n or build/$n"
            part_ok=0
            continue
        fi
        G4Q_BINARY_DIR=$WORK G4Q_SOURCE_DIR=$PWD run "memcheck $n" 'ERROR SUMMARY|Invalid|passed, ' \
            timeout "$limit" compute-sanitizer --tool memcheck --error-exitcode 99 --print-limit 20 "$f"
        rc=$?
        # timeout's 124: say whether memcheck had reported anything before the limit
        if [ "$rc" -eq 124 ] && ! grep -q -E 'Invalid|ERROR SUMMARY: [1-9]' "$tmp"; then
            say "     cut after $limit s, no memcheck error up to then (counted as failed: not a pass)"
        fi
    done
}

# ---------------------------------------------------------------- main
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(all)
expanded=()
for p in "${parts[@]}"; do
    if [ "$p" = all ]; then
        expanded+=(tests oracle bench)
        if peers_present; then expanded+=(peers); else echo "all: no peer wheels (.whl/), peers left out"; fi
    else
        expanded+=("$p")
    fi
done
logged=" "
for p in "${expanded[@]}"; do
    name=${p%%:*} subs=
    [ "$name" = "$p" ] || subs=${p#*:}
    printf '\n##### %s\n' "$p"
    case $logged in *" $name "*) ;; *) : >"$OUT/$name.log"; logged="$logged$name " ;; esac
    part_ok=1
    "part_$name" "$subs" >>"$OUT/$name.log" 2>&1 || part_ok=0
    [ "$part_ok" = 1 ] || failed_parts+=("$p")
done
rm -f "$tmp"
if [ ${#failed_parts[@]} -eq 0 ]; then
    echo "check.sh: ${expanded[*]}: all passed (logs in $OUT)"
else
    echo "check.sh: failed: ${failed_parts[*]} (logs in $OUT)"
    exit 1
fi
