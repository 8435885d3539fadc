#!/usr/bin/env python3
"""Runs gemma4q exports through the real vLLM engine and compares vLLM's prompt logprobs with
gemma4q-run's logits on the same token ids (GPU machine; the driver itself needs only numpy).

    python3 scripts/engines/vllm_check.py run --model DIR --work DIR [--names a,b,c] [options]
    (scripts/engines/vllm_check.sh wraps this with the environment of the GPU machine)

For each export name (EXPORTS below, in that order unless --names picks some; OPTIONAL ones only
when named):
  1. WORK/NAME = gemma4q-quantize --model MODEL --recipe RECIPE --device DEV --quiet --force
     (skipped when WORK/NAME/config.json exists; bf16 is MODEL itself);
  2. WORK/NAME.g4q.f32 = gemma4q-run logits on the ids, --emulate EMULATE (default sm90, as vLLM
     runs on Hopper) for quantized exports, no --emulate for bf16: float32 [n, vocab];
  3. WORK/NAME.vllm.json = one fresh `vllm-child` subprocess (so each export gets a clean GPU):
     LLM(model=WORK/NAME, TRITON_ATTN, enforce_eager, language_model_only, ...) and one generate
     of TokensPrompt(ids) with max_tokens=1, prompt_logprobs=TOPK, logprobs=TOPK; it records the
     load time, cache dtype, quantization, and per position the top-TOPK (token, logprob, rank);
     its log is WORK/NAME.vllm.log (the Linear kernels are read from it). Up to --jobs children run
     at once (each with kv_cache_memory_bytes set, so vLLM skips its memory profiling, which
     concurrent processes would disturb). A child that fails records loaded=false and the reason;
     the other exports go on.
The ids: the first --text-bytes bytes of --text (default MODEL/heldout.txt), cut back to the last
newline, tokenized once by `gemma4q-run tokenize`, <bos> prepended, capped at --max-tokens; saved
as WORK/ids.json and reused by every export (and by a later call, if the same).

Alignment: gemma4q-run logits row r is the distribution after ids[0..r], i.e. for ids[r+1].
vLLM's prompt_logprobs[p] (p >= 1; entry 0 is None) is the distribution for ids[p] given ids[:p],
so row r pairs with prompt_logprobs[r+1] for r < n-1, and the last row with the logprobs of the one
sampled token. The comparison checks this: every prompt_logprobs[p] must hold ids[p], and top-1
agreement at shifts -1 and +1 is reported next to shift 0 (a wrong pairing shows up there).

Per export it prints one markdown row
  | export | format | loads | vLLM kernel | top-1 agreement | max abs Δlogprob |
    mean abs Δlogprob | ppl vLLM | ppl gemma4q |   (one line)
where, over all n positions, top-1 agreement counts positions whose gemma4q argmax is vLLM's
top-1 token (ties count as agreement: vLLM's logprobs come from bf16 logits, so its top-1 can be
one of several equal tokens; the JSON also has the strict count), and Δlogprob =
gemma4q log_softmax (float64) minus vLLM's logprob for each of vLLM's top-TOPK tokens; ppl is over
the n-1 prompt tokens after <bos>, from each engine's logprob of the actual token. All rows (every
export of WORK that has a vLLM result, plus those asked for) go to WORK/vllm_table.md and, with the
details, to WORK/vllm_check.json.

Other subcommands: `compare --ids F --logits F --vllm F` (one comparison, JSON on stdout);
`vllm-child` (internal). `run --fake-vllm` writes each NAME.vllm.json from gemma4q's own logits in
vLLM's convention instead of starting vLLM (a CPU test of the pipeline: expect 100% and Δ 0).
"""
import argparse
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (recipe relative to the repository root, or None for the model itself)
EXPORTS = {
    "bf16": None,
    "modelopt-nvfp4-mlp-only": "recipes/nvfp4-mlp-only.yaml",
    "modelopt-nvfp4": "recipes/nvfp4.yaml",
    "modelopt-w4a16-nvfp4": "scripts/engines/recipes/modelopt-w4a16-nvfp4.yaml",
    "fp8-pb-wo": "recipes/fp8-block.yaml",
    "fp8-pb-wo-kv": "scripts/engines/recipes/fp8-pb-wo-kv.yaml",
    "ct-nvfp4": "recipes/nvfp4a16.yaml",
    "ct-int4": "scripts/engines/recipes/ct-int4.yaml",
    "ct-int4-mlp-only": "scripts/engines/recipes/ct-int4-mlp-only.yaml",
    "gptq-int4": "scripts/bench/recipes/int4-all-gptq.yaml",
    "gptq-int4-mlp-only": "recipes/int4-mlp-only.yaml",
}
# Only when named: fp8-pb-wo without the FP8 KV cache, to tell the two apart.
OPTIONAL = {
    "fp8-pb-wo-nokv": "scripts/engines/recipes/fp8-pb-wo-nokv.yaml",
}
ALL = {**EXPORTS, **OPTIONAL}

HEADER = ("| export | format | loads | vLLM kernel | top-1 agreement | max abs Δlogprob "
          "| mean abs Δlogprob | ppl vLLM | ppl gemma4q |")
RULE = "|---|---|---|---|---|---|---|---|---|"


def log(msg):
    print(f"vllm_check: {msg}", file=sys.stderr, flush=True)


def sha256_ids(ids):
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def text_config(model_dir):
    c = read_json(os.path.join(model_dir, "config.json"))
    return c.get("text_config", c)


# ----------------------------------------------------------------------------------------------
# token ids


def make_ids(args):
    """The ids of the first args.text_bytes bytes of the text (cut at a newline), <bos> first."""
    tc = text_config(args.model)
    text_path = args.text or os.path.join(args.model, "heldout.txt")
    with open(text_path, "rb") as f:
        raw = f.read(args.text_bytes)
    cut = raw.rfind(b"\n")
    if cut > 0 and len(raw) == args.text_bytes:
        raw = raw[:cut + 1]
    raw.decode("utf-8")  # a cut inside a character is an error, not silently dropped bytes
    slice_path = os.path.join(args.work, "text.txt")
    with open(slice_path, "wb") as f:
        f.write(raw)
    out = subprocess.run([args.run, "tokenize", "--tokenizer",
                          os.path.join(args.model, "tokenizer.json"), "--file", slice_path],
                         check=True, capture_output=True, text=True).stdout.strip()
    ids = [int(t) for t in out.split(",") if t.strip()]
    ids = [int(tc.get("bos_token_id", 2))] + ids
    full = len(ids)
    ids = ids[:args.max_tokens]
    limit = int(tc.get("max_position_embeddings", 1 << 30))
    if len(ids) + 1 > limit:
        sys.exit(f"vllm_check: {len(ids)} ids do not fit max_position_embeddings {limit}")
    meta = {"text": os.path.abspath(text_path), "text_bytes": len(raw), "tokens_in_slice": full,
            "n_ids": len(ids), "ids_sha256": sha256_ids(ids), "ids": ids}
    path = os.path.join(args.work, "ids.json")
    if os.path.exists(path) and read_json(path).get("ids_sha256") != meta["ids_sha256"]:
        log("ids differ from the previous WORK/ids.json: earlier results with other ids are redone")
    write_json(path, meta)
    return ids


# ----------------------------------------------------------------------------------------------
# comparison (numpy only)


def log_softmax64(logits):
    import numpy as np
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))


def vllm_rows(vj, n):
    """vLLM's distributions in gemma4q's row order: row r (after ids[0..r]) is prompt_logprobs[r+1]
    for r < n-1 and the sampled token's logprobs for r = n-1 (None when absent)."""
    plp = vj["prompt_logprobs"]
    if len(plp) != n or plp[0] is not None:
        raise ValueError(f"prompt_logprobs has {len(plp)} entries (want {n}, the first None)")
    return [plp[r + 1] for r in range(n - 1)] + [vj.get("sample_logprobs")]


def compare(ids, logits, vj, topk=20):
    """Compares gemma4q's float32 logits [n, vocab] with a vLLM result (vllm-child's JSON)."""
    import numpy as np
    n = len(ids)
    if logits.shape[0] != n:
        raise ValueError(f"logits have {logits.shape[0]} rows, ids {n}")
    lp = log_softmax64(logits)
    rows = vllm_rows(vj, n)
    # The convention itself: prompt_logprobs[p] must hold the prompt token ids[p].
    missing = sum(1 for p in range(1, n) if ids[p] not in {e[0] for e in vj["prompt_logprobs"][p]})
    g_arg = lp.argmax(axis=1)
    g_max = lp.max(axis=1)
    agree = strict = vties = total = 0
    deltas = []
    worst = (0.0, -1, -1)
    top1 = [None] * n
    for r, entries in enumerate(rows):
        if not entries:
            continue
        top = sorted(entries, key=lambda e: -e[1])[:topk]  # the prompt token may ride along
        t1 = top[0][0]
        top1[r] = t1
        total += 1
        # vLLM's logprobs come from bf16 logits, so its top-1 can be a tie it broke arbitrarily
        tied = {e[0] for e in top if e[1] == top[0][1]}
        vties += int(len(tied) > 1)
        strict += int(g_arg[r] == t1)
        agree += int(g_arg[r] in tied or lp[r, t1] == g_max[r])
        for tok, vlp, _rank in top:
            d = lp[r, tok] - vlp
            deltas.append(abs(d))
            if abs(d) > worst[0]:
                worst = (abs(d), r, tok)

    def shifted(s):  # agreement of gemma4q row r with vLLM's row r + s
        a = t = 0
        for r in range(n):
            q = r + s
            if 0 <= q < n and top1[q] is not None:
                t += 1
                a += int(g_arg[r] == top1[q])
        return a / t if t else None

    nll_v = [-next(e[1] for e in vj["prompt_logprobs"][p] if e[0] == ids[p])
             for p in range(1, n) if ids[p] in {e[0] for e in vj["prompt_logprobs"][p]}]
    nll_g = [-lp[p - 1, ids[p]] for p in range(1, n)]
    d = np.array(deltas) if deltas else np.zeros(1)
    return {
        "positions": total,
        "top1_agree": agree,
        "top1_agreement": agree / total if total else None,
        "top1_agree_strict": strict,
        "vllm_top1_ties": vties,
        "top1_agreement_shift": {"-1": shifted(-1), "0": shifted(0), "+1": shifted(1)},
        "prompt_token_missing": missing,
        "max_abs_dlogprob": float(d.max()),
        "mean_abs_dlogprob": float(d.mean()),
        "worst": {"row": worst[1], "token": worst[2], "abs_dlogprob": worst[0]},
        "ppl_vllm": float(np.exp(np.mean(nll_v))) if len(nll_v) == n - 1 and n > 1 else None,
        "ppl_gemma4q": float(np.exp(np.mean(nll_g))) if n > 1 else None,
    }


def fake_vllm(ids, logits, topk, name):
    """A vllm-child result made from gemma4q's logits in vLLM's convention (for CPU tests)."""
    import numpy as np
    lp = log_softmax64(logits)
    order = np.argsort(-lp, axis=1, kind="stable")
    rank = np.empty_like(order)
    rows = np.arange(lp.shape[0])[:, None]
    rank[rows, order] = np.arange(1, lp.shape[1] + 1)[None, :]

    def entries(r, extra=None):
        toks = list(order[r, :topk])
        if extra is not None and extra not in toks:
            toks = [extra] + toks
        return [[int(t), float(lp[r, t]), int(rank[r, t])] for t in toks]

    n = len(ids)
    return {"name": name, "loaded": True, "fake": True, "load_s": 0.0, "generate_s": 0.0,
            "n_ids": n, "ids_sha256": sha256_ids(ids), "cache_dtype": "n/a (fake)",
            "quantization": None, "error": None,
            "prompt_logprobs": [None] + [entries(p - 1, ids[p]) for p in range(1, n)],
            "sample_logprobs": entries(n - 1)}


# ----------------------------------------------------------------------------------------------
# what the export is and what vLLM chose


def safetensors_names(d):
    names = []
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors"):
            with open(os.path.join(d, fn), "rb") as f:
                size = int.from_bytes(f.read(8), "little")
                names += [k for k in json.loads(f.read(size)) if k != "__metadata__"]
    return names


def describe_format(d):
    q = read_json(os.path.join(d, "config.json")).get("quantization_config")
    if not q:
        return "BF16"
    method = q.get("quant_method", "?")
    if method == "modelopt":
        s = "ModelOpt " + str(q.get("quant_algo"))
        if q.get("kv_cache_scheme") or q.get("kv_cache_quant_algo"):
            scaled = any(k.endswith((".k_scale", ".v_scale")) for k in safetensors_names(d))
            s += ", KV FP8 " + ("(k/v scales)" if scaled else "(cast)")
        return s
    if method == "compressed-tensors":
        w = next(iter(q.get("config_groups", {}).values()), {}).get("weights") or {}
        return f"CT {q.get('format')} ({w.get('type')}{w.get('num_bits')} g{w.get('group_size')})"
    if method == "gptq":
        return f"GPTQ int{q.get('bits')} g{q.get('group_size')}"
    return method


KERNEL_RES = [re.compile(r"Selected (\w+) for (\S+)"),
              re.compile(r"Using (\w+) for (\S+(?: \S+)?)"),
              re.compile(r"\b(\w*(?:Marlin|Machete|Cutlass|CUTLASS|Triton|Fp8|FP8|Fp4|FP4)\w*"
                         r"(?:Kernel|LinearMethod|Linear|Method|Op))\b")]


def kernels_from_log(path):
    """Unique kernel / linear-method class names that the vLLM log mentions, in order."""
    seen = []
    lines = []
    if not os.path.exists(path):
        return seen, lines
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if "data type to store kv cache" in line:
                lines.append(line.strip()[-200:])
                continue
            hit = False
            for rx in KERNEL_RES:
                for m in rx.finditer(line):
                    k = m.group(1)
                    if k[:1].isupper() and k not in seen:
                        seen.append(k)
                    hit = True
            if hit:
                lines.append(line.strip()[-240:])
    uniq = list(dict.fromkeys(lines))
    return seen, uniq[:40]


def log_tail(path, n=6):
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [ln.rstrip() for ln in f if ln.strip()]
    errs = [ln for ln in lines if re.search(r"Error|error|Exception|CUDA", ln)]
    return " / ".join((errs or lines)[-n:])[-600:]


# ----------------------------------------------------------------------------------------------
# the vLLM side (child process)


def vllm_child(args):
    for k, v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
                 "DO_NOT_TRACK": "1", "VLLM_USE_DEEP_GEMM": "0",
                 "VLLM_USE_FLASHINFER_SAMPLER": "0", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}.items():
        os.environ.setdefault(k, v)
    ids = read_json(args.ids)["ids"]
    res = {"name": args.name, "dir": args.dir, "loaded": False, "generated": False,
           "n_ids": len(ids), "ids_sha256": sha256_ids(ids), "error": None}

    def done(code):
        write_json(args.out, res)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # the result is written: skip vLLM's teardown at interpreter exit

    t0 = time.time()
    try:
        import torch
        import vllm
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
        res["versions"] = {"vllm": vllm.__version__, "torch": torch.__version__}
        print(f"vllm_check child: {args.name}: vllm {vllm.__version__}, torch {torch.__version__}",
              flush=True)
        llm = LLM(model=args.dir, tokenizer=args.dir, dtype="bfloat16", seed=0,
                  enforce_eager=True,                            # no torch.compile, no graphs
                  attention_config={"backend": "TRITON_ATTN"},   # head_dim 512 on full layers
                  language_model_only=True,                      # text only
                  max_model_len=len(ids) + args.len_margin,
                  max_num_seqs=1, enable_prefix_caching=False,
                  gpu_memory_utilization=args.gpu_mem,
                  kv_cache_memory_bytes=args.kv_bytes,           # skips memory profiling
                  skip_tokenizer_init=args.skip_tokenizer_init,
                  max_logprobs=max(20, args.topk))
    except BaseException as e:  # noqa: BLE001 - any load failure is a result, not a crash
        res["load_s"] = round(time.time() - t0, 1)
        res["error"] = f"{type(e).__name__}: {e}"[-1500:]
        import traceback
        traceback.print_exc()
        done(3)
    res["loaded"] = True
    res["load_s"] = round(time.time() - t0, 1)
    try:
        cfg = llm.llm_engine.vllm_config
        res["cache_dtype"] = str(cfg.cache_config.cache_dtype)
        res["quantization"] = cfg.model_config.quantization
    except Exception as e:  # noqa: BLE001
        res["cache_dtype"] = f"? ({type(e).__name__})"
    print(f"vllm_check child: {args.name}: loaded in {res['load_s']} s, "
          f"quantization {res.get('quantization')}, kv cache dtype {res.get('cache_dtype')}",
          flush=True)
    t1 = time.time()
    try:
        sp = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=args.topk,
                            logprobs=args.topk, detokenize=False)
        out = llm.generate([TokensPrompt(prompt_token_ids=ids)], sp, use_tqdm=False)[0]

        def conv(d):
            if d is None:
                return None
            return [[int(t), float(lp.logprob), None if lp.rank is None else int(lp.rank)]
                    for t, lp in d.items()]

        res["prompt_logprobs"] = [conv(d) for d in out.prompt_logprobs]
        c = out.outputs[0]
        res["sample_logprobs"] = conv(c.logprobs[0]) if c.logprobs else None
        res["sampled_token"] = int(c.token_ids[0]) if c.token_ids else None
        res["generated"] = True
    except BaseException as e:  # noqa: BLE001
        res["error"] = f"generate: {type(e).__name__}: {e}"[-1500:]
        import traceback
        traceback.print_exc()
        done(4)
    res["generate_s"] = round(time.time() - t1, 2)
    done(0)


# ----------------------------------------------------------------------------------------------
# the driver


def run_tool(cmd, log_path):
    with open(log_path, "a", encoding="utf-8") as lf:
        shown = [a if len(a) < 200 else a[:60] + f"...({a.count(',') + 1} ids)" for a in cmd]
        lf.write("$ " + " ".join(shown) + "\n")
        lf.flush()
        return subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT).returncode


class Export:
    def __init__(self, name, args):
        self.name = name
        self.recipe = ALL[name]
        self.dir = args.model if self.recipe is None else os.path.join(args.work, name)
        self.base = os.path.join(args.work, name)
        self.vjson = self.base + ".vllm.json"
        self.vlog = self.base + ".vllm.log"
        self.logits = self.base + ".g4q.f32"
        self.error = None          # quantize / gemma4q failure
        self.quantize_s = None
        self.proc = None
        self.started = None
        self.note = None           # "not run (deadline)" and the like


def prepare(e, args, ids):
    """Quantizes (unless done) and runs gemma4q-run logits (unless done). Sets e.error."""
    glog = e.base + ".g4q.log"
    if e.recipe is not None and not os.path.exists(os.path.join(e.dir, "config.json")):
        t0 = time.time()
        cmd = [args.quantize, "--model", args.model, "--recipe", os.path.join(REPO, e.recipe),
               "--out", e.dir, "--device", args.device, "--quiet", "--force"] + args.quant_opts
        if run_tool(cmd, glog) != 0:
            e.error = f"gemma4q-quantize failed: {log_tail(glog, 3)}"
            return
        e.quantize_s = round(time.time() - t0, 1)
    vocab = int(text_config(e.dir)["vocab_size"])
    want = len(ids) * vocab * 4
    if not (os.path.exists(e.logits) and os.path.getsize(e.logits) == want
            and read_text(e.logits + ".sha") == args.ids_sha):
        cmd = [args.run, "logits", "--model", e.dir, "--ids", ",".join(map(str, ids)),
               "--out", e.logits, "--device", args.device, "--quiet"]
        if e.recipe is not None:
            cmd += ["--emulate", args.emulate]
        if run_tool(cmd, glog) != 0 or os.path.getsize(e.logits) != want:
            e.error = f"gemma4q-run logits failed: {log_tail(glog, 3)}"
            return
        with open(e.logits + ".sha", "w") as f:
            f.write(args.ids_sha)


def have_vllm_result(e, args):
    if args.redo or not os.path.exists(e.vjson):
        return False
    try:
        vj = read_json(e.vjson)
    except ValueError:
        return False
    return vj.get("ids_sha256") == args.ids_sha and (vj.get("loaded") or not args.retry_failed)


def start_child(e, args, ids_path):
    if args.fake_vllm:
        import numpy as np
        ids = read_json(ids_path)["ids"]
        logits = np.fromfile(e.logits, dtype=np.float32).reshape(len(ids), -1)
        write_json(e.vjson, fake_vllm(ids, logits, args.topk, e.name))
        return
    env = dict(os.environ)
    if args.vsite:
        env["PYTHONPATH"] = args.vsite + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [sys.executable, os.path.abspath(__file__), "vllm-child", "--name", e.name,
           "--dir", e.dir, "--ids", ids_path, "--out", e.vjson, "--topk", str(args.topk),
           "--gpu-mem", str(args.gpu_mem), "--kv-bytes", str(args.kv_bytes),
           "--len-margin", str(args.len_margin)]
    if args.skip_tokenizer_init:
        cmd.append("--skip-tokenizer-init")
    if os.path.exists(e.vjson):
        os.remove(e.vjson)
    lf = open(e.vlog, "w", encoding="utf-8")
    e.proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True)
    lf.close()
    e.started = time.time()
    log(f"{e.name}: vLLM child started (pid {e.proc.pid})")


def stop_child(e, why):
    try:
        os.killpg(e.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    e.proc.wait()
    e.proc = None
    return why


def reap(e, args, now, hard_stop):
    """Checks one running child; returns True when it is finished (or was stopped)."""
    if e.proc.poll() is None:
        if now - e.started > args.child_timeout:
            secs = round(now - e.started)
            stop_child(e, "timeout")
            if not os.path.exists(e.vjson):  # a child that wrote its result but hung is fine
                write_json(e.vjson, {"name": e.name, "loaded": False, "ids_sha256": args.ids_sha,
                                     "error": f"no result after {secs} s (--child-timeout); "
                                              f"log: {log_tail(e.vlog)}"})
            log(f"{e.name}: vLLM child stopped after {secs} s (--child-timeout)")
            return True
        if hard_stop and now > hard_stop:
            stop_child(e, "hard stop")
            e.note = "not finished (hard stop; rerun to do it)"
            return True
        return False
    rc = e.proc.returncode
    e.proc = None
    if not os.path.exists(e.vjson):  # a hard crash (signal, CUDA abort) writes no result
        write_json(e.vjson, {"name": e.name, "loaded": False, "ids_sha256": args.ids_sha,
                             "error": f"child exited {rc} without a result: {log_tail(e.vlog)}"})
    log(f"{e.name}: vLLM child done (exit {rc}, {round(time.time() - e.started)} s)")
    return True


def row_for(e, args, ids):
    """The table row and the JSON record of one export."""
    rec = {"export": e.name, "recipe": e.recipe, "dir": e.dir, "quantize_s": e.quantize_s}
    fmt = "?"
    if os.path.exists(os.path.join(e.dir, "config.json")):
        try:
            fmt = describe_format(e.dir)
        except (OSError, ValueError, KeyError) as x:
            fmt = f"? ({x})"
    rec["format"] = fmt
    kernels, klines = kernels_from_log(e.vlog)
    rec["kernels"], rec["kernel_log_lines"] = kernels, klines
    cells = [e.name, fmt, "", "", "", "", "", "", ""]
    vj = read_json(e.vjson) if os.path.exists(e.vjson) else None
    if vj is not None and (vj.get("ids_sha256") != args.ids_sha or e.note):
        vj = None  # for other ids, or an earlier result of an export this run did not redo
    if e.error:
        cells[2] = f"not tried: {e.error}"[:300]
    elif vj is None:
        cells[2] = e.note or "not run"
    elif not vj.get("loaded"):
        cells[2] = "no: " + str(vj.get("error"))[:300].replace("|", "/").replace("\n", " ")
    else:
        cells[2] = f"yes ({vj.get('load_s')} s)"
    rec["vllm"] = {k: v for k, v in (vj or {}).items()
                   if k not in ("prompt_logprobs", "sample_logprobs")}
    kv = (vj or {}).get("cache_dtype")
    cells[3] = (", ".join(kernels) or "-") if vj and vj.get("loaded") else ""
    if vj is None:
        rec["kernels"], rec["kernel_log_lines"] = [], []
    if kv:
        cells[3] += f"; KV {kv}"
    if vj and vj.get("loaded") and not vj.get("generated", True):
        cells[2] += "; generate failed: " + str(vj.get("error"))[:200].replace("|", "/")
    if vj and vj.get("prompt_logprobs") and os.path.exists(e.logits) and not e.error:
        import numpy as np
        logits = np.fromfile(e.logits, dtype=np.float32).reshape(len(ids), -1)
        c = compare(ids, logits, vj, args.topk)
        rec["compare"] = c
        cells[4] = f"{100 * c['top1_agreement']:.2f}% ({c['top1_agree']}/{c['positions']})"
        cells[5] = f"{c['max_abs_dlogprob']:.4f}"
        cells[6] = f"{c['mean_abs_dlogprob']:.5f}"
        cells[7] = "" if c["ppl_vllm"] is None else f"{c['ppl_vllm']:.3f}"
        cells[8] = f"{c['ppl_gemma4q']:.3f}"
        s = c["top1_agreement_shift"]
        if c["prompt_token_missing"] or (s["-1"] or 0) > s["0"] or (s["+1"] or 0) > s["0"]:
            cells[4] += f" ALIGNMENT? shifts {s}, prompt token missing {c['prompt_token_missing']}"
    return "| " + " | ".join(cells) + " |", rec


def cmd_run(args):
    t_start = time.time()
    os.makedirs(args.work, exist_ok=True)
    args.work = os.path.abspath(args.work)
    args.model = os.path.abspath(args.model)
    names_in = [n for part in args.names for n in part.split(",") if n]
    names = names_in + (list(EXPORTS) if not names_in or "all" in names_in else [])
    names = [n for n in ALL if n in names]  # table order, duplicates dropped
    bad = [n for n in names_in if n not in ALL and n != "all"]
    if bad:
        print(f"vllm_check: unknown export {bad}; known: {', '.join(ALL)}", file=sys.stderr)
        return 2
    args.quant_opts = args.quant_opts.split() if args.quant_opts else []
    ids = make_ids(args)
    args.ids_sha = sha256_ids(ids)
    ids_path = os.path.join(args.work, "ids.json")
    log(f"{len(ids)} ids (sha256 {args.ids_sha[:16]}), exports: {' '.join(names)}")
    hard_stop = t_start + args.hard_stop if args.hard_stop else 0
    exports = [Export(n, args) for n in names]
    running = []

    def poll(block_until_below):
        while True:
            now = time.time()
            running[:] = [e for e in running if not reap(e, args, now, hard_stop)]
            if len(running) < block_until_below:
                return
            time.sleep(0.5)

    for e in exports:
        if have_vllm_result(e, args) and os.path.exists(e.logits):
            log(f"{e.name}: vLLM result already in {e.vjson}")
            prepare(e, args, ids)  # only checks that the logits are for these ids
            continue
        if args.deadline and time.time() - t_start > args.deadline:
            e.note = "not run (deadline; rerun to do it)"
            continue
        prepare(e, args, ids)
        if e.error:
            log(f"{e.name}: {e.error}")
            continue
        if have_vllm_result(e, args):
            log(f"{e.name}: vLLM result already in {e.vjson}")
            continue
        poll(args.jobs)  # wait for a free slot
        if args.deadline and time.time() - t_start > args.deadline:
            e.note = "not run (deadline; rerun to do it)"
            continue
        start_child(e, args, ids_path)
        if e.proc is not None:
            running.append(e)
    poll(1)

    # every export of WORK with a result for these ids, in EXPORTS order, plus those asked for
    table_names = [n for n in ALL if n in names or (
        os.path.exists(os.path.join(args.work, n + ".vllm.json"))
        and read_json(os.path.join(args.work, n + ".vllm.json")).get("ids_sha256") == args.ids_sha)]
    by_name = {e.name: e for e in exports}
    rows, recs = [], []
    print(HEADER)
    print(RULE)
    for n in table_names:
        row, rec = row_for(by_name.get(n) or Export(n, args), args, ids)
        print(row, flush=True)
        rows.append(row)
        recs.append(rec)
    with open(os.path.join(args.work, "vllm_table.md"), "w", encoding="utf-8") as f:
        f.write(f"vLLM vs gemma4q-run (--emulate {args.emulate} for quantized exports, "
                f"--device {args.device}) on {len(ids)} ids of "
                f"{os.path.basename(args.text or 'heldout.txt')} "
                f"(ids sha256 {args.ids_sha[:16]}); top-{args.topk} logprobs per position\n\n")
        f.write("\n".join([HEADER, RULE] + rows) + "\n")
    write_json(os.path.join(args.work, "vllm_check.json"),
               {"model": args.model, "n_ids": len(ids), "ids_sha256": args.ids_sha,
                "emulate": args.emulate, "device": args.device, "topk": args.topk,
                "fake_vllm": args.fake_vllm, "seconds": round(time.time() - t_start, 1),
                "exports": recs})
    log(f"done in {time.time() - t_start:.0f} s: {args.work}/vllm_table.md, vllm_check.json")
    return 0


def cmd_compare(args):
    import numpy as np
    ids = read_json(args.ids)["ids"]
    logits = np.fromfile(args.logits, dtype=np.float32).reshape(len(ids), -1)
    print(json.dumps(compare(ids, logits, read_json(args.vllm), args.topk), indent=1))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="quantize, run both engines, compare, print the table")
    r.add_argument("--model", required=True, help="the BF16 referee model folder")
    r.add_argument("--work", required=True, help="folder for exports, logits, results")
    r.add_argument("--names", nargs="*", default=[],
                   help="export names (space or comma separated; default all but the optional "
                   "ones): " + ", ".join(EXPORTS) + "; optional: " + ", ".join(OPTIONAL))
    r.add_argument("--text", help="text file (default MODEL/heldout.txt)")
    r.add_argument("--text-bytes", type=int, default=8192)
    r.add_argument("--max-tokens", type=int, default=1024, help="cap on the ids, <bos> included")
    r.add_argument("--device", default="cuda", help="gemma4q-quantize / gemma4q-run --device")
    r.add_argument("--emulate", default="sm90", help="gemma4q-run --emulate for quantized exports")
    r.add_argument("--quant-opts", default="", help="extra gemma4q-quantize options (one string)")
    r.add_argument("--quantize", default="gemma4q-quantize", help="the gemma4q-quantize binary")
    r.add_argument("--run", default="gemma4q-run", help="the gemma4q-run binary")
    r.add_argument("--vsite", default=os.environ.get("VSITE", "/tmp/vsite"),
                   help="site dir of the vLLM kit, put first on the children's PYTHONPATH")
    r.add_argument("--jobs", type=int, default=3, help="vLLM children at once")
    r.add_argument("--topk", type=int, default=20)
    r.add_argument("--gpu-mem", type=float, default=0.3, help="vLLM gpu_memory_utilization")
    r.add_argument("--kv-bytes", type=int, default=1 << 30, help="vLLM kv_cache_memory_bytes")
    r.add_argument("--len-margin", type=int, default=16, help="max_model_len = n_ids + this")
    r.add_argument("--skip-tokenizer-init", action="store_true")
    r.add_argument("--child-timeout", type=float, default=300, help="seconds per vLLM child")
    r.add_argument("--deadline", type=float, default=0,
                   help="start no export after this many seconds (0: none)")
    r.add_argument("--hard-stop", type=float, default=0,
                   help="kill running children after this many seconds, no result kept (0: none)")
    r.add_argument("--redo", action="store_true", help="rerun vLLM even where a result exists")
    r.add_argument("--retry-failed", action="store_true",
                   help="rerun vLLM where an earlier result is a failure")
    r.add_argument("--fake-vllm", action="store_true",
                   help="no vLLM: results from gemma4q's own logits (pipeline test)")
    c = sub.add_parser("compare", help="compare one gemma4q logits file with one vLLM result")
    c.add_argument("--ids", required=True, help="ids.json")
    c.add_argument("--logits", required=True, help="float32 [n, vocab] from gemma4q-run logits")
    c.add_argument("--vllm", required=True, help="NAME.vllm.json")
    c.add_argument("--topk", type=int, default=20)
    k = sub.add_parser("vllm-child", help="(internal) one vLLM load + generate")
    k.add_argument("--name", required=True)
    k.add_argument("--dir", required=True)
    k.add_argument("--ids", required=True)
    k.add_argument("--out", required=True)
    k.add_argument("--topk", type=int, default=20)
    k.add_argument("--gpu-mem", type=float, default=0.3)
    k.add_argument("--kv-bytes", type=int, default=1 << 30)
    k.add_argument("--len-margin", type=int, default=16)
    k.add_argument("--skip-tokenizer-init", action="store_true")
    args = ap.parse_args()
    if args.cmd == "run":
        return cmd_run(args)
    if args.cmd == "compare":
        return cmd_compare(args)
    return vllm_child(args)


if __name__ == "__main__":
    sys.exit(main())
