#!/usr/bin/env python3
"""Summary of an ncu kernel-duration CSV of g4q_forward prefills (scripts/bench/profile_prefill.sh)
or of a whole program run (scripts/bench/profile_calib.sh).

Usage: profile_summary.py CSV MODEL_DIR PROMPT
       profile_summary.py --all CSV [TOKENS]
       profile_summary.py --decode CSV

--decode (scripts/bench/profile_decode.sh) keeps the last pass (the last decode step) and lists
its kernels in launch order with their durations, then the same shares and per-kernel totals.

Splits the kernel sequence into forward passes at each embed_kernel, keeps the second pass of more
than 8 kernels (the first timed prefill after the warm-up), and prints the time share of
GEMMs (cuBLAS kernels and the decode GEMVs), packed-weight slices and activation quantization,
attention, and everything else, then each distinct GEMM kernel's total time. With a BF16 model the
GEMM TFLOP/s is computed from the Linear weights of the checkpoint header (2 * PROMPT * rows * cols
per Linear; the tied lm_head is left out: the bench computes only the last row's logits).
"""
import csv
import json
import os
import re
import struct
import sys

CATS = [
    ("gemm", re.compile(r"gemm|xmma|cutlass|nvjet|gemv|Kernel2|splitK", re.I)),
    ("slice/actq", re.compile(r"qslice|actq")),
    ("attention", re.compile(r"scores_kernel|softmax_kernel|pv_kernel|finish_kernel|kv_store|step_fused")),
]


def category(name):
    for c, rx in CATS:
        if rx.search(name):
            return c
    return "other"


def passes(rows):
    cur, out = [], []
    for name, dur in rows:
        if re.search(r"\bembed_kernel", name) and cur:
            out.append(cur)
            cur = []
        cur.append((name, dur))
    if cur:
        out.append(cur)
    return out


def linear_flops(model, prompt):
    """2 * prompt * (rows * cols) over every BF16 *_proj.weight of model.safetensors(.index)."""
    if not os.path.isdir(model):
        return None
    files = [f for f in os.listdir(model) if f.endswith(".safetensors")]
    total = 0
    for f in files:
        with open(os.path.join(model, f), "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            hdr = json.loads(fh.read(n))
        for k, v in hdr.items():
            if k == "__metadata__" or not k.endswith("_proj.weight") or "language_model" not in k:
                continue
            if v["dtype"] != "BF16" or len(v["shape"]) != 2:
                return None  # an export: packed weights
            total += v["shape"][0] * v["shape"][1]
    return 2.0 * prompt * total


def read_rows(path):
    rows = []
    with open(path) as fh:
        for r in csv.DictReader(fh):
            if r.get("Metric Name") != "gpu__time_duration.sum":
                continue
            unit = r.get("Metric Unit", "nsecond")
            v = float(r["Metric Value"].replace(",", ""))
            scale = {"ns": 1e-9, "nsecond": 1e-9, "us": 1e-6, "usecond": 1e-6, "ms": 1e-3,
                     "msecond": 1e-3, "s": 1.0, "second": 1.0}[unit]
            rows.append((r["Kernel Name"], v * scale))
    return rows


def short(name):
    """A kernel's name without "void " and its parameter list."""
    return re.sub(r"^void |\(.*", "", name)


def by_category(p):
    """Kernel time per category of CATS (seconds)."""
    by = {}
    for n, d in p:
        by[category(n)] = by.get(category(n), 0.0) + d
    return by


def print_shares(by, total, unit):
    """Each category's time in ms or us and its share of total."""
    scale, fmt = (1e3, "%8.2f ms") if unit == "ms" else (1e6, "%8.1f us")
    for c in ("gemm", "slice/actq", "attention", "other"):
        if c in by:
            print(("  %-11s " + fmt + "  %5.1f%%") % (c, by[c] * scale, 100 * by[c] / total))


def by_kernel(p, top=14):
    names = {}
    for n, d in p:
        key = short(n)[:90]
        c, t = names.get(key, (0, 0.0))
        names[key] = (c + 1, t + d)
    print("  kernels by total time:")
    for key, (c, t) in sorted(names.items(), key=lambda kv: -kv[1][1])[:top]:
        print("    %8.2f ms  %5d x  %s" % (t * 1e3, c, key))


def whole_run(path, tokens):
    """Every kernel of the run: category shares, and per token when TOKENS is given."""
    p = read_rows(path)
    total = sum(d for _, d in p)
    print("whole run: %d kernels, %.2f ms of kernel time (one at a time)%s"
          % (len(p), total * 1e3, " = %.1f us per token" % (1e6 * total / tokens) if tokens else ""))
    print_shares(by_category(p), total, "ms")
    by_kernel(p, 24)


def decode_step(path):
    """The last pass of the run (one decode step), kernel by kernel."""
    ps = passes(read_rows(path))
    if not ps:
        sys.exit("profile_summary: no kernels in %s" % path)
    p = ps[-1]
    total = sum(d for _, d in p)
    print("decode step: %d kernels, %.1f us of kernel time (one at a time, no overlap)"
          % (len(p), total * 1e6))
    for n, d in p:
        print("  %8.1f us  %s" % (d * 1e6, short(n)[:80]))
    print_shares(by_category(p), total, "us")
    by_kernel(p, 20)


def main():
    if sys.argv[1] == "--decode":
        decode_step(sys.argv[2])
        return
    if sys.argv[1] == "--all":
        whole_run(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
        return
    path, model, prompt = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rows = read_rows(path)
    ps = [p for p in passes(rows) if len(p) > 8]
    if len(ps) < 2:
        sys.exit("profile_summary: fewer than two forward passes in %s" % path)
    p = ps[1]
    total = sum(d for _, d in p)
    by = by_category(p)
    print("prefill %d tokens, %s: %d kernels, %.2f ms of kernel time (one at a time) = %.0f tok/s"
          % (prompt, os.path.basename(model.rstrip("/")), len(p), total * 1e3, prompt / total))
    print_shares(by, total, "ms")
    fl = linear_flops(model, prompt)
    if fl and by.get("gemm"):
        print("  Linear GEMMs: %.2f TFLOP in %.2f ms = %.0f TFLOP/s" % (fl / 1e12, by["gemm"] * 1e3,
                                                                   fl / by["gemm"] / 1e12))
    by_kernel(p)


main()
