#!/usr/bin/env python3
"""Quantize a checkpoint with llm-compressor (oneshot + QuantizationModifier), saved as
compressed-tensors.

  llmcompressor_export.py --model DIR --out DIR --format NAME [--device cpu|cuda] [--calib FILE]

Formats (llm-compressor preset schemes; weight-only, so no calibration pass is needed):
  nvfp4a16   scheme NVFP4A16: NVFP4 weights (16-blocks, FP8 scales, global scale), nvfp4-pack-quantized
  w4a16      scheme W4A16: INT4 symmetric, group 128, round to nearest, pack-quantized
Quantized: every text-tower Linear. Kept BF16: lm_head and the multimodal embedders (as
gemma4q's peer recipes in scripts/peers/recipes/).
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SCHEMES = {"nvfp4a16": "NVFP4A16", "w4a16": "W4A16"}
IGNORE = ["lm_head", "re:.*embed_vision.*", "re:.*embed_audio.*", "re:.*vision_embedder.*"]


def main():
    args = common.parse_args("llm-compressor", SCHEMES)
    import llmcompressor
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    rows = common.load_calib(args.calib)
    meter = common.Meter(args.device)
    model = common.load_model(args.model, args.device)
    recipe = QuantizationModifier(targets="Linear", scheme=SCHEMES[args.format], ignore=IGNORE)
    kwargs = {}
    if rows is not None:
        from datasets import Dataset
        kwargs = {"dataset": Dataset.from_dict({"input_ids": rows}),
                  "num_calibration_samples": len(rows)}
    oneshot(model=model, recipe=recipe, **kwargs)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    model.save_pretrained(args.out, save_compressed=True)
    print(f"llmcompressor {llmcompressor.__version__}: {args.format} -> {args.out}", file=sys.stderr)
    meter.report(f"llmcompressor-{llmcompressor.__version__}", args.format, args.out)


if __name__ == "__main__":
    main()
