"""Shared helpers of the peer drivers: argument parsing, calibration token ids, timing.

Calibration file (--calib FILE): JSON, a list of lists of token ids, e.g. [[2, 105, 2364], ...],
or the binary that `gemma4q-quantize --dump-calib FILE` writes (int32 little-endian
[samples, seq_len], no header) given as FILE:SEQ_LEN, so every tool sees gemma4q's exact samples.
Every driver and gemma4q feed exactly these ids, one list per batch row; with no file the
weight-only formats run without a forward pass (weights are calibrated from themselves).
"""
import argparse
import json
import os
import resource
import time

import torch


def parse_args(tool, formats):
    ap = argparse.ArgumentParser(description=f"Quantize a Hugging Face checkpoint with {tool}.")
    ap.add_argument("--model", required=True, help="input BF16 checkpoint folder")
    ap.add_argument("--out", required=True, help="output folder (replaced if it exists)")
    ap.add_argument("--format", required=True, choices=sorted(formats), help="recipe to run")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    choices=["cpu", "cuda"])
    ap.add_argument("--calib", help="JSON list of lists of calibration token ids, or "
                    "BIN:SEQ_LEN for a gemma4q-quantize --dump-calib file")
    return ap.parse_args()


def load_calib(path):
    if not path:
        return None
    if ":" in path and path.rsplit(":", 1)[1].isdigit():
        import numpy as np
        file, seq_len = path.rsplit(":", 1)
        ids = np.fromfile(file, dtype="<i4")
        if int(seq_len) <= 0 or ids.size % int(seq_len):
            raise SystemExit(f"{file}: {ids.size} ids is not a multiple of seq_len {seq_len}")
        return ids.reshape(-1, int(seq_len)).tolist()
    with open(path) as f:
        rows = json.load(f)
    if not rows or not all(isinstance(r, list) and r for r in rows):
        raise SystemExit(f"{path}: expected a non-empty list of non-empty lists of token ids")
    return rows


def forward_loop_for(rows, device):
    """A forward loop over the calibration rows (one sequence per call), or None."""
    if rows is None:
        return None

    def loop(model):
        with torch.no_grad():
            for r in rows:
                model(input_ids=torch.tensor([r], device=device))
    return loop


def load_model(path, device):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    return model.to(device).eval()


class Meter:
    """Wall time and peak memory (process RSS; GPU peak when on CUDA) of one run."""

    def __init__(self, device):
        self.device = device
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()

    def report(self, tool, fmt, out):
        secs = time.perf_counter() - self.t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        gpu = torch.cuda.max_memory_allocated() if self.device == "cuda" else 0
        line = {"tool": tool, "format": fmt, "out": out, "device": self.device,
                "seconds": round(secs, 3), "peak_rss_bytes": rss, "peak_gpu_bytes": gpu}
        print(json.dumps(line))
        with open(os.path.join(out, "peer_run.json"), "w") as f:
            json.dump(line, f, indent=2)
