#!/usr/bin/env python3
"""Writes a BF16 model whose quantized Linears are replaced by their dequantized weights (test oracle).

Usage: dequant_bf16.py EXPORT_DIR ORIGINAL_BF16_DIR OUT_DIR

OUT_DIR becomes a copy of ORIGINAL_BF16_DIR (single-file checkpoint) in which the `.weight` of
every Linear that EXPORT_DIR stores quantized holds bf16(dequant) instead, decoded by
decode_export.py's numpy decoders (written from docs/formats.md, not from gemma4q's C code). The
runtime's quantized model and this BF16 model differ only by the bf16 rounding of the
dequantized weights (relative 2^-9), so their logits must be far closer to each other than
either is to the original: a test of the runtime's packed-weight binding independent of its code.
"""
import json
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode_export as de  # noqa: E402
import numpy as np  # noqa: E402


def to_bf16(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def main(argv):
    if len(argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    exp_dir, orig_dir, out_dir = argv[1:]
    fmt = de.detect(exp_dir)
    if fmt not in de.FORMATS:
        print(f"{exp_dir}: format {fmt} is not decoded here", file=sys.stderr)
        return 1
    marker, _, dequant, _ = de.FORMATS[fmt]
    ex = de.read_checkpoint(exp_dir)
    src = os.path.join(orig_dir, "model.safetensors")
    data = bytearray(open(src, "rb").read())
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen])
    n = 0
    for name in sorted(ex):
        if not name.endswith(marker):
            continue
        m = name[:-len(marker)]
        e = header.get(m + ".weight")
        if e is None or e["dtype"] != "BF16":
            continue
        out, inn = e["shape"]
        dq, _ = dequant(ex, m, out, inn)
        b, en = e["data_offsets"]
        data[8 + hlen + b:8 + hlen + en] = to_bf16(dq).tobytes()
        n += 1
    shutil.copytree(orig_dir, out_dir)
    with open(os.path.join(out_dir, "model.safetensors"), "wb") as f:
        f.write(data)
    print(f"{out_dir}: {n} Linears replaced by bf16(dequant) ({fmt})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
