#!/usr/bin/env python3
"""Quantize a checkpoint with llm-compressor (oneshot + QuantizationModifier or GPTQModifier),
saved as compressed-tensors.

  llmcompressor_export.py --model DIR --out DIR --format NAME [--device cpu|cuda] [--calib FILE]

Formats (llm-compressor preset schemes):
  nvfp4a16    scheme NVFP4A16: NVFP4 weights (16-blocks, FP8 scales, global scale),
              nvfp4-pack-quantized; weight-only, no calibration pass needed
  w4a16       scheme W4A16: INT4 symmetric, group 128, round to nearest, pack-quantized
  w4a16_gptq  scheme W4A16 through GPTQModifier(dampening_frac=0.01, block_size=128,
              actorder=None): the same layout as w4a16, codes chosen by GPTQ on the calibration
              ids (--calib is required). llm-compressor's defaults otherwise: the minmax weight
              observer fixes every group scale from the BF16 weights before GPTQ runs, and the
              sequential pipeline calibrates decoder layer by decoder layer on the quantized
              outputs of the layers before (propagate_error=True). Samples are taken in file order
              (shuffle_calibration_samples=False), one per batch.
Quantized: every text-tower Linear. Kept BF16: lm_head and the multimodal embedders (as
gemma4q's peer recipes in scripts/peers/recipes/).
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SCHEMES = {"nvfp4a16": "NVFP4A16", "w4a16": "W4A16", "w4a16_gptq": "W4A16"}
GPTQ = {"w4a16_gptq": dict(dampening_frac=0.01, block_size=128, actorder=None)}
IGNORE = ["lm_head", "re:.*embed_vision.*", "re:.*embed_audio.*", "re:.*vision_embedder.*"]


def main():
    args = common.parse_args("llm-compressor", SCHEMES)
    import llmcompressor
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    rows = common.load_calib(args.calib)
    if args.format in GPTQ and rows is None:
        raise SystemExit(f"{args.format}: GPTQ needs calibration ids (--calib)")
    meter = common.Meter(args.device)
    model = common.load_model(args.model, args.device)
    if args.format in GPTQ:
        recipe = GPTQModifier(targets="Linear", scheme=SCHEMES[args.format], ignore=IGNORE,
                              **GPTQ[args.format])
    else:
        recipe = QuantizationModifier(targets="Linear", scheme=SCHEMES[args.format],
                                      ignore=IGNORE)
    kwargs = {}
    if rows is not None:
        from datasets import Dataset
        from transformers import AutoTokenizer
        # The ids are already tokens; the tokenizer is passed as the processor because oneshot
        # wants one with a dataset, and the AutoProcessor of the multimodal Gemma 4 classes
        # would need torchvision.
        kwargs = {"dataset": Dataset.from_dict({"input_ids": rows}),
                  "processor": AutoTokenizer.from_pretrained(args.model),
                  "num_calibration_samples": len(rows), "shuffle_calibration_samples": False}
    oneshot(model=model, recipe=recipe, **kwargs)
    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    model.save_pretrained(args.out, save_compressed=True)
    print(f"llmcompressor {llmcompressor.__version__}: {args.format} -> {args.out}", file=sys.stderr)
    meter.report(f"llmcompressor-{llmcompressor.__version__}", args.format, args.out)


if __name__ == "__main__":
    main()
