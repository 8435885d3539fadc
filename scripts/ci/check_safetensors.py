#!/usr/bin/env python3
"""Independent safetensors oracle for gemma4q's reader and writer (uses the Python `safetensors`
package and numpy; nothing from gemma4q).

  check_safetensors.py list FILE_OR_DIR   one line per tensor, "tensor NAME DTYPE [d0,d1] SHA256"
                                          (sha256 of the raw little-endian bytes), and one per
                                          metadata entry, "meta KEY VALUE"
  check_safetensors.py write FILE [SEED]  writes a file with safetensors.numpy.save_file

A directory is read through model.safetensors, else model.safetensors.index.json's weight_map.
Names, dtypes and shapes come from safetensors' safe_open. Bytes come from safe_open's numpy
tensors for the dtypes numpy has; BF16 and F8_E4M3 (no numpy type) are cut from the file by the
header's data_offsets, and for the numpy dtypes the two byte sources are checked to agree.
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

NUMPY_DTYPES = {"F32", "F16", "I8", "U8", "I32", "I64"}


def files_of(path):
    if not os.path.isdir(path):
        return [path]
    single = os.path.join(path, "model.safetensors")
    if os.path.exists(single):
        return [single]
    with open(os.path.join(path, "model.safetensors.index.json"), encoding="utf-8") as fh:
        weight_map = json.load(fh)["weight_map"]
    return [os.path.join(path, s) for s in sorted(set(weight_map.values()))]


def list_file(path, out):
    with open(path, "rb") as fh:
        blob = fh.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    start = 8 + n
    with safe_open(path, framework="numpy") as f:
        for name in f.keys():
            sl = f.get_slice(name)
            dtype, shape = sl.get_dtype(), list(sl.get_shape())
            entry = header[name]
            assert entry["dtype"] == dtype and entry["shape"] == shape, name
            b, e = entry["data_offsets"]
            raw = blob[start + b:start + e]
            if dtype in NUMPY_DTYPES:
                arr = f.get_tensor(name)
                assert list(arr.shape) == shape, name
                data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
                assert data == raw, f"{name}: numpy bytes differ from the file's bytes"
            else:
                data = raw
            dims = ",".join(str(d) for d in shape)
            out.append(f"tensor {name} {dtype} [{dims}] {hashlib.sha256(data).hexdigest()}")
        for k, v in (f.metadata() or {}).items():
            out.append(f"meta {k} {v}")


def write_file(path, seed):
    rng = np.random.default_rng(seed)
    tensors = {
        "py.f32": rng.standard_normal((3, 5)).astype(np.float32),
        "py.f16": rng.standard_normal(7).astype(np.float16),
        "py.i8": rng.integers(-128, 128, 15).astype(np.int8),
        "py.u8": rng.integers(0, 256, (2, 3, 4)).astype(np.uint8),
        "py.i32": rng.integers(-2**31, 2**31, 17).astype(np.int32),
        "py.i64": rng.integers(-2**62, 2**62, 1).astype(np.int64),
        "py.scalar": np.array(1.5, dtype=np.float32),
        "py.empty": np.zeros((0, 3), dtype=np.float32),
        "py.unicod\u00e9": rng.standard_normal((2, 129)).astype(np.float32),
    }
    save_file(tensors, path, metadata={"producer": "python-safetensors", "format": "np"})


def main():
    sys.stdout.reconfigure(encoding="utf-8")
    if len(sys.argv) >= 3 and sys.argv[1] == "list":
        out = []
        for p in files_of(sys.argv[2]):
            list_file(p, out)
        print("\n".join(out))
    elif len(sys.argv) >= 3 and sys.argv[1] == "write":
        write_file(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1234)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
