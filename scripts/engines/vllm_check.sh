#!/usr/bin/env bash
# Every gemma4q export format through the real vLLM engine: quantizes the BF16 referee with each
# recipe, runs vLLM's prompt logprobs and gemma4q-run's logits on the same token ids, and prints
# one markdown row per export on stdout (| export | format | loads | vLLM kernel | top-1
# agreement | max abs Δlogprob | mean abs Δlogprob | ppl vLLM | ppl gemma4q |), progress on stderr.
# The table also goes to WORK_DIR/vllm_table.md, the details to WORK_DIR/vllm_check.json, each vLLM
# log to WORK_DIR/NAME.vllm.log (scripts/engines/vllm_check.py says what each column means and how
# positions are paired). An export that fails to load is a row saying why; the others go on.
# Usage (GPU machine, repository root, after `. scripts/gpu/env.sh` and the vLLM kit's install.sh):
#   scripts/engines/vllm_check.sh MODEL_DIR WORK_DIR [NAME...]
#   NAME: export names (space or comma separated; none or "all" = every one): bf16,
#     modelopt-nvfp4-mlp-only, modelopt-nvfp4, modelopt-w4a16-nvfp4, fp8-pb-wo, fp8-pb-wo-kv,
#     ct-nvfp4, ct-int4, ct-int4-mlp-only, gptq-int4, gptq-int4-mlp-only; and, only when named,
#     fp8-pb-wo-nokv (fp8-pb-wo without the FP8 KV cache)
#   environment: VSITE (vLLM kit site dir, default /tmp/vsite), JOBS (vLLM processes at once,
#     default 3), TEXT_BYTES (default 8192 bytes of MODEL_DIR/heldout.txt), MAX_TOKENS (1024),
#     DEADLINE (seconds after which no export starts, default 0 = none), HARD_STOP (seconds after
#     which running vLLM processes are killed, default 0 = none), DEVICE (cuda), EMULATE (sm90),
#     QUANT_OPTS (extra gemma4q-quantize options), VLLM_CHECK_OPTS (extra vllm_check.py run
#     options, e.g. --fake-vllm for a CPU test without vLLM, --redo, --retry-failed), PYTHON.
# Work already in WORK_DIR (exports, logits, vLLM results for the same ids) is reused, so a list
# of exports can be split over several calls; the table lists every export done so far.
# e.g. DEADLINE=420 HARD_STOP=560 scripts/engines/vllm_check.sh /tmp/ts /tmp/vc
# Getting there (2026-12-03): build the kit here with ../shared/tools/vllm/make-kit.sh .vkit (an
#   ignored folder; four parts call1..call4 of <= 50 MiB), pack the three tools and .devlibs into
#   one small tar (.vkit/g4q1) and the referee as an xz tar split in two (.vkit/g4q3, g4q4); then
#   four back-to-back device runs carrying call1+g4q1, call2, call3+g4q3, call4+g4q4, each copying
#   into /tmp (vstage, vstage2, g4q) and the last one unpacking /tmp/ts, running install.sh and this
#   script with PATH/LD_LIBRARY_PATH at /tmp/g4q (all 11 default exports took 201 s with JOBS=3).
set -euo pipefail
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
case ${1:-} in -h | --help) usage; exit 0 ;; esac
[ $# -ge 2 ] || { usage >&2; exit 2; }
model=$1 work=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
# builtin:default calibration text for tools that live outside the repository (e.g. /tmp/g4q/.gpubin)
export G4Q_CALIB_DIR=${G4Q_CALIB_DIR:-$(cd "$here/../.." && pwd)/calib}
py=${PYTHON:-python3}
die() { echo "vllm_check.sh: $*" >&2; exit 2; }
[ -f "$model/config.json" ] || die "$model/config.json: no such model"
for t in gemma4q-quantize gemma4q-run; do
    command -v "$t" >/dev/null || die "$t not on PATH (. scripts/gpu/env.sh)"
done
opts=${VLLM_CHECK_OPTS:-}
vsite=${VSITE:-/tmp/vsite}
case " $opts " in
*" --fake-vllm "*) ;;
*) [ -d "$vsite/vllm" ] || die "no vLLM in $vsite (run the vLLM kit's install.sh)" ;;
esac
mkdir -p "$work"
# shellcheck disable=SC2086
exec "$py" "$here/vllm_check.py" run --model "$model" --work "$work" --names "$@" \
    --vsite "$vsite" --jobs "${JOBS:-3}" --text-bytes "${TEXT_BYTES:-8192}" \
    --max-tokens "${MAX_TOKENS:-1024}" --deadline "${DEADLINE:-0}" --hard-stop "${HARD_STOP:-0}" \
    --device "${DEVICE:-cuda}" --emulate "${EMULATE:-sm90}" --quant-opts "${QUANT_OPTS:-}" $opts
