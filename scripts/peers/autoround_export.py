#!/usr/bin/env python3
"""Quantize a checkpoint with auto-round, exported in GPTQ (auto_gptq v1) format.

  autoround_export.py --model DIR --out DIR --format NAME [--device cpu|cuda] [--calib FILE]

Formats:
  int4_mlp_rtn   INT4 symmetric, group 128, iters=0 and disable_opt_rtn
                 (plain round to nearest: no tuning, no calibration data), MLP
                 projections only (attention and everything else kept 16-bit), like gemma4q's
                 recipes/int4-mlp-only.yaml
  int4_rtn       the same on every text-tower projection
"""
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FORMATS = {"int4_mlp_rtn": r"\.mlp\.", "int4_rtn": r"\.(mlp|self_attn)\."}


def main():
    args = common.parse_args("auto-round", FORMATS)
    import torch
    import auto_round
    from auto_round import AutoRound
    from transformers import AutoTokenizer

    meter = common.Meter(args.device)
    model = common.load_model(args.model, args.device)
    tok = AutoTokenizer.from_pretrained(args.model)
    keep = re.compile(r"model\.language_model\.layers\.\d+" + FORMATS[args.format])
    # Every Linear outside the selection stays 16-bit (auto-round's layer_config, bits 16).
    layer_config = {n: {"bits": 16} for n, m in model.named_modules()
                    if isinstance(m, torch.nn.Linear) and not keep.search(n)}
    ar = AutoRound(model, tok, bits=4, group_size=128, sym=True, iters=0,
                   disable_opt_rtn=True, layer_config=layer_config, device_map=args.device,
                   low_cpu_mem_usage=False)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    ar.quantize_and_save(args.out, format="auto_gptq")
    # auto-round writes into OUT/<model>-w4g128/: move that folder's files up to OUT.
    subs = [d for d in os.listdir(args.out) if os.path.isdir(os.path.join(args.out, d))]
    if len(subs) == 1 and not os.path.exists(os.path.join(args.out, "config.json")):
        for f in os.listdir(os.path.join(args.out, subs[0])):
            os.rename(os.path.join(args.out, subs[0], f), os.path.join(args.out, f))
        os.rmdir(os.path.join(args.out, subs[0]))
    print(f"auto-round {auto_round.__version__}: {args.format} -> {args.out}", file=sys.stderr)
    meter.report(f"auto-round-{auto_round.__version__}", args.format, args.out)


if __name__ == "__main__":
    main()
