#!/usr/bin/env python3
"""Compare gemma4q-run's logits with transformers on a gemma4q-mkmodel checkpoint (GPU machine).

    python3 scripts/oracle/compare_transformers.py --model DIR --binary build/gemma4q-run \
        [--lengths 16,1100,2048] [--devices cpu,cuda] [--cuda-precisions fp32,bf16] [--check-fp64]

For each length L: ids = <bos> + L-1 seeded random ids (the image/audio/video soft-token ids are
left out: transformers maps them to <pad> before the lookup, docs/gemma4.md §4.1). Then

  reference fp32: Gemma4UnifiedForConditionalGeneration.from_pretrained(DIR, dtype=float32,
                  attn_implementation="eager"), on the GPU when there is one (TF32 off)
  reference bf16: the same with dtype=bfloat16 (GPU), the numerics our CUDA path follows (§4.9)
  ours:           `gemma4q-run logits --device D --precision P` for each D of --devices: the cpu
                  in fp32 (its only precision), cuda in each P of --cuda-precisions (fp32: the
                  CUDA backend's F32 mode, no bf16 rounding; bf16: its default, the §4.9 roundings)

and reports, per length:
  fp32 ref vs ours cpu, ours cuda-fp32: relative error ||a-b|| / ||b|| over all logits (target
                                  < 1e-3), max |a-b|, top-1 agreement
  bf16 ref vs ours cuda-bf16:     top-1 agreement (target >= 99%), max |a-b|
  fp32 ref vs ours cuda-bf16:     the same numbers, no target (what the bf16 path costs)
  bf16 ref vs fp32 ref:           the same numbers, for scale (how far bf16 itself moves)
  --check-fp64: fp32 ref vs an fp64 transformers forward (the model is well conditioned when this
                is far below 1e-3).
Lengths above the sliding window (1024 on the 12b preset, 64 on tiny) exercise the window mask and
the ring cache. Prints a table; writes $OUT/compare_transformers.json when OUT is set. Exits 1 if a
target is missed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers.models.gemma4_unified import Gemma4UnifiedForConditionalGeneration

REL_TARGET = 1e-3  # fp32 reference vs our fp32 CPU / CUDA paths
TOP1_TARGET = 0.99  # bf16 reference vs our bf16 CUDA path


def make_ids(config, length, seed):
    text = config.get("text_config", config)
    vocab = text["vocab_size"]
    banned = {config.get(k) for k in ("image_token_id", "audio_token_id", "video_token_id")}
    rng = np.random.default_rng(seed)
    ids = [text.get("bos_token_id", 2)]
    while len(ids) < length:
        x = int(rng.integers(3, vocab))
        if x not in banned:
            ids.append(x)
    return ids


@torch.no_grad()
def reference(model_dir, dtype, id_lists, device):
    model = Gemma4UnifiedForConditionalGeneration.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="eager").eval().to(device)
    out = []
    for ids in id_lists:
        x = torch.tensor([ids], device=device)
        out.append(model(input_ids=x, use_cache=False).logits[0].float().cpu().numpy())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def ours(binary, model_dir, ids, device, precision, vocab):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "logits.bin")
        cmd = [binary, "logits", "--model", model_dir, "--ids", ",".join(map(str, ids)),
               "--out", path, "--device", device, "--precision", precision, "--quiet"]
        subprocess.run(cmd, check=True)
        return np.fromfile(path, dtype="<f4").reshape(len(ids), vocab)


def compare(a, b):
    """a vs reference b: relative error, max |diff|, top-1 agreement."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return {"rel": float(np.linalg.norm(a64 - b64) / np.linalg.norm(b64)),
            "max_abs": float(np.abs(a64 - b64).max()),
            "top1": float((a.argmax(-1) == b.argmax(-1)).mean()),
            "finite": bool(np.isfinite(a).all())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a gemma4q-mkmodel folder")
    ap.add_argument("--binary", required=True, help="the gemma4q-run executable")
    ap.add_argument("--lengths", default="16,1100,2048", help="comma-separated sequence lengths")
    ap.add_argument("--devices", default="cpu,cuda", help="our devices to run: cpu, cuda or both")
    ap.add_argument("--cuda-precisions", default="fp32,bf16",
                    help="precisions of our cuda runs: fp32, bf16 or both")
    ap.add_argument("--check-fp64", action="store_true", help="also compare fp32 with fp64")
    a = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu = "cuda" if torch.cuda.is_available() else "cpu"
    config = json.load(open(os.path.join(a.model, "config.json")))
    vocab = config.get("text_config", config)["vocab_size"]
    lengths = [int(x) for x in a.lengths.split(",")]
    devices = [d for d in a.devices.split(",") if d]
    cuda_precisions = [p for p in a.cuda_precisions.split(",") if p]
    if not set(cuda_precisions) <= {"fp32", "bf16"}:
        ap.error("--cuda-precisions: expected fp32, bf16 or both")
    runs = [(d, p) for d in devices for p in (cuda_precisions if d == "cuda" else ["fp32"])]
    id_lists = [make_ids(config, n, seed=n) for n in lengths]

    ref32 = reference(a.model, torch.float32, id_lists, gpu)
    ref16 = reference(a.model, torch.bfloat16, id_lists, gpu) if gpu == "cuda" else None
    ref64 = reference(a.model, torch.float64, id_lists, gpu) if a.check_fp64 else None

    rows, failed = [], False
    for i, n in enumerate(lengths):
        def add(what, r, target):
            nonlocal failed
            ok = r["finite"] and (target is None or target(r))
            failed |= not ok
            rows.append({"length": n, "comparison": what, **r,
                         "status": "-" if target is None else ("PASS" if ok else "FAIL")})
        for d, p in runs:
            mine = ours(a.binary, a.model, id_lists[i], d, p, vocab)
            name = d if d == "cpu" else f"{d}-{p}"
            if p == "fp32":
                add(f"fp32 ref vs ours {name}", compare(mine, ref32[i]),
                    lambda r: r["rel"] < REL_TARGET)
            else:
                add(f"fp32 ref vs ours {name}", compare(mine, ref32[i]), None)
                if ref16 is not None:
                    add(f"bf16 ref vs ours {name}", compare(mine, ref16[i]),
                        lambda r: r["top1"] >= TOP1_TARGET)
        if ref16 is not None:
            add("bf16 ref vs fp32 ref", compare(ref16[i], ref32[i]), None)
        if ref64 is not None:
            add("fp32 ref vs fp64 ref", compare(ref32[i], ref64[i]),
                lambda r: r["rel"] < REL_TARGET)

    print(f"model {a.model}, vocab {vocab}, reference on {gpu}")
    print(f"{'length':>6}  {'comparison':<28} {'rel err':>10} {'max|diff|':>10} {'top-1':>7}  "
          "status")
    for r in rows:
        print(f"{r['length']:>6}  {r['comparison']:<28} {r['rel']:>10.3g} {r['max_abs']:>10.3g} "
              f"{100 * r['top1']:>6.2f}%  {r['status']}")
    if os.environ.get("OUT"):
        os.makedirs(os.environ["OUT"], exist_ok=True)
        with open(os.path.join(os.environ["OUT"], "compare_transformers.json"), "w") as f:
            json.dump({"model": a.model, "vocab": vocab, "lengths": lengths, "devices": devices,
                       "cuda_precisions": cuda_precisions,
                       "targets": {"rel": REL_TARGET, "top1": TOP1_TARGET}, "rows": rows}, f,
                      indent=2)
    print("FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
