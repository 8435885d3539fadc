#!/usr/bin/env python3
"""Quantize a checkpoint with NVIDIA ModelOpt (mtq.quantize + export_hf_checkpoint).

  modelopt_export.py --model DIR --out DIR --format NAME [--device cpu|cuda] [--calib FILE]

Formats (ModelOpt preset configs, unchanged unless noted):
  w4a16_nvfp4       W4A16_NVFP4_CFG (weight-only, max)
  w4a16_nvfp4_mse   W4A16_NVFP4_CFG with static weight blocks and the 126-code FP8 scale sweep
                    (algorithm {"method": "mse", "fp8_scale_sweep": true}) -- weight-only
  fp8_pb_wo         FP8_2D_BLOCKWISE_WEIGHT_ONLY_CFG (128x128 blocks, max)
  fp8_pb_wo_mse     the same with algorithm "mse" (39-multiplier search)
  nvfp4             NVFP4_DEFAULT_CFG (W4A4; needs --calib)
  nvfp4_mlp_only    NVFP4_MLP_ONLY_CFG (W4A4; needs --calib)
  nvfp4_mse         NVFP4_W4A4_WEIGHT_MSE_FP8_SWEEP_CFG (W4A4; needs --calib)
  fp8               FP8_DEFAULT_CFG (W8A8 per tensor; needs --calib)
Append "+kv" (e.g. nvfp4_mlp_only+kv) to add FP8_KV_CFG (FP8 KV cache).
"""
import copy
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def preset(name):
    import modelopt.torch.quantization as mtq
    table = {
        "w4a16_nvfp4": (mtq.W4A16_NVFP4_CFG, None, False),
        "w4a16_nvfp4_mse": (mtq.W4A16_NVFP4_CFG, {"method": "mse", "fp8_scale_sweep": True}, False),
        "fp8_pb_wo": (mtq.FP8_2D_BLOCKWISE_WEIGHT_ONLY_CFG, None, False),
        "fp8_pb_wo_mse": (mtq.FP8_2D_BLOCKWISE_WEIGHT_ONLY_CFG, "mse", False),
        "nvfp4": (mtq.NVFP4_DEFAULT_CFG, None, True),
        "nvfp4_mlp_only": (mtq.NVFP4_MLP_ONLY_CFG, None, True),
        "nvfp4_mse": (mtq.NVFP4_W4A4_WEIGHT_MSE_FP8_SWEEP_CFG, None, True),
        "fp8": (mtq.FP8_DEFAULT_CFG, None, True),
    }
    base, algorithm, needs_calib = table[name]
    cfg = copy.deepcopy(base)
    if algorithm is not None:
        cfg["algorithm"] = algorithm
    if isinstance(algorithm, dict) and algorithm.get("fp8_scale_sweep"):
        # The sweep applies to static NVFP4 weight quantizers only (as in the W4A4 MSE preset).
        for e in cfg["quant_cfg"]:
            if e.get("quantizer_name", "").endswith("weight_quantizer") and "cfg" in e:
                e["cfg"]["block_sizes"]["type"] = "static"
    return cfg, needs_calib


FORMATS = ["w4a16_nvfp4", "w4a16_nvfp4_mse", "fp8_pb_wo", "fp8_pb_wo_mse", "nvfp4",
           "nvfp4_mlp_only", "nvfp4_mse", "fp8"]
FORMATS += [f + "+kv" for f in FORMATS]


def main():
    args = common.parse_args("NVIDIA ModelOpt", FORMATS)
    import torch
    import modelopt
    import modelopt.torch.quantization as mtq
    from modelopt.torch.export import export_hf_checkpoint

    name, kv = args.format.removesuffix("+kv"), args.format.endswith("+kv")
    cfg, needs_calib = preset(name)
    if kv:
        cfg["quant_cfg"] = list(cfg["quant_cfg"]) + list(mtq.FP8_KV_CFG["quant_cfg"])
    rows = common.load_calib(args.calib)
    if (needs_calib or kv) and rows is None:
        raise SystemExit(f"--format {args.format} quantizes activations: pass --calib FILE")

    meter = common.Meter(args.device)
    model = common.load_model(args.model, args.device)
    mtq.quantize(model, cfg, forward_loop=common.forward_loop_for(rows, args.device))
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    with torch.inference_mode():
        export_hf_checkpoint(model, export_dir=args.out)
    print(f"modelopt {modelopt.__version__}: {args.format} -> {args.out}", file=sys.stderr)
    meter.report(f"modelopt-{modelopt.__version__}", args.format, args.out)


if __name__ == "__main__":
    main()
