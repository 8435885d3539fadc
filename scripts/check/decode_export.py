#!/usr/bin/env python3
"""Independent decoder of gemma4q exports (test oracle; numpy only).

Usage: decode_export.py EXPORT_DIR ORIGINAL_BF16_DIR [--quiet] [--json FILE]

Reads both folders with its own safetensors reader (single file or sharded with
model.safetensors.index.json), detects the export format from hf_quant_config.json /
config.json quantization_config, dequantizes every quantized Linear from the bytes alone with
E2M1 / E4M3 / INT4 decoders written from docs/formats.md (not gemma4q's C code), and compares
against the original BF16 weights. Every other tensor must be bit-identical to the input.

Formats: ModelOpt NVFP4 / W4A16_NVFP4 (§2), FP8 (§3), fp8_pb_wo (§4); compressed-tensors
nvfp4-pack-quantized (§6) and pack-quantized (§5.3); GPTQ v1 (§5.2).

Per element bounds (x = w / D is the weight in units of its effective scale D):
  NVFP4   D = E4M3(block scale) * weight_scale_2 (ModelOpt) or / weight_global_scale (CT).
          |x| <= 6: |w - dq| <= half the E2M1 spacing at |x| times D (spacing 0.5 below 2,
          1 in [2, 4), 2 in [4, 6]); |x| > 6 (clipped: E4M3 rounding of the block scale, the
          2^-9/448 clamps or an MSE scale below the max): dq = sign(w) * 6D and the error is
          exactly |w| - 6D.
  FP8     D = the tensor or 128x128 block scale. |x| <= 448: |err| <= half an E4M3 ulp at |x|
          times D (ulp 2^(floor(log2|x|) - 3), 2^-9 below 2^-6); |x| > 448 (clipped: the MSE
          multiplier search may choose a scale below amax/448): dq = sign(w) * 448 D and the
          error is exactly |w| - 448 D.
  INT4    D = the group scale. q = clamp(round(x), -8, 7): for -8.5 <= x <= 7.5 |err| <= D/2;
          beyond (clipped: the scale was rounded to f16/bf16 below amax/7.5, or an MSE clip),
          dq = 7D (x > 7.5) or -8D (x < -8.5) and the error is exactly |w| - 7D or |w| - 8D.
The quantizers divide in fp32 (w / denom with denom an fp32 product), which can move a decision
by about 2^-23 relative; REL_SLACK covers that, and dequantization here is exact in float64.

Relative Frobenius error ||w - dq|| / ||w||: the uniform rounding-error model says each element's
error is spread evenly over one grid spacing, variance step^2 / 12, so the expected error is
E = sqrt(sum_i step(x_i)^2 D_i^2 / 12). Evaluated with the IDEAL max scales (D = block or group
amax / grid top: 16-blocks / 6 for NVFP4, tensor or 128x128 amax / 448 for FP8, 128-groups / 7.5
for INT4) it is what round-to-nearest with exact max scales achieves, and the check requires
rel <= MODEL_FACTOR * E / ||w||. For iid Gaussian weights this reduces to fixed numbers:
  NVFP4   16 Gaussian values: E[max|z|] ~ 2 sigma -> 6, so sigma ~ 3 grid units; 50% of the
          elements below 2 (step 0.5), 32% in [2, 4) (step 1), 14% in [4, 6] (step 2): error
          variance ~ 0.083 against 9 -> rel ~ 0.096 (Monte Carlo with E4M3-rounded scales: 0.095).
  FP8     3 mantissa bits: step 2^-3 of the binade -> rel ~ 0.026 (Monte Carlo 0.026).
  INT4    g128: E[max|z|] over 128 ~ 2.9 sigma -> step 0.39 sigma, rel ~ 0.112 (MC 0.111).
The model overestimates NVFP4 (many elements near zero round with less than a uniform error) and
is close for FP8 and INT4 (MC ratios actual/model 0.78, 0.95, 0.99), so MODEL_FACTOR = 1.3 leaves
room for E4M3/f16 rounding of the scales (<= 6.25% step) and sampling noise, while an export whose
scales are inflated (coarser steps than the amax needs) or whose codes are wrong fails. Unlike a
fixed Gaussian number, the model also covers the synthetic and real weights' outlier input
columns, which inflate whole INT4 groups (the tiny model's MLP reaches rel ~ 0.27 with E ~ 0.30).
"""
import json
import math
import os
import struct
import sys

try:
    import numpy as np
except ImportError:  # the CI script prints SKIP when numpy is missing
    print("SKIP: numpy is not installed", file=sys.stderr)
    sys.exit(77)

MODEL_FACTOR = 1.3
REL_SLACK = 2.0 ** -20

# ---------------------------------------------------------------- safetensors reader

DTYPES = {"BF16": ("<u2", 2), "F16": ("<f2", 2), "F32": ("<f4", 4), "F8_E4M3": ("u1", 1),
          "U8": ("u1", 1), "I8": ("i1", 1), "I32": ("<i4", 4), "I64": ("<i8", 8)}


class Tensor:
    def __init__(self, name, dtype, shape, raw):
        self.name, self.dtype, self.shape, self.raw = name, dtype, tuple(shape), raw

    def array(self):
        """The elements as numpy (BF16 as uint16 words, F8 as uint8 bytes)."""
        npdt, _ = DTYPES[self.dtype]
        return np.frombuffer(self.raw, dtype=npdt).reshape(self.shape)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, en = e["data_offsets"]
        n = 1
        for d in e["shape"]:
            n *= d
        if en - b != n * DTYPES[e["dtype"]][1] or base + en > len(data):
            raise ValueError(f"{path}: tensor '{name}': inconsistent offsets")
        out[name] = Tensor(name, e["dtype"], e["shape"], data[base + b:base + en])
    return out


def read_checkpoint(folder):
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        index = json.load(f)
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        out.update(read_safetensors(os.path.join(folder, shard)))
    return out


# ---------------------------------------------------------------- element decoders (formats.md §1)

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float64)


def e4m3_value(b):
    """float8_e4m3fn byte -> value: s eeee mmm, bias 7, e = 0 subnormal, 0x7F/0xFF NaN."""
    s = -1.0 if b & 0x80 else 1.0
    e, m = (b >> 3) & 0xF, b & 7
    if e == 0xF and m == 7:
        return math.nan
    if e == 0:
        return s * m / 8.0 * 2.0 ** -6
    return s * (1.0 + m / 8.0) * 2.0 ** (e - 7)


E4M3 = np.array([e4m3_value(b) for b in range(256)], dtype=np.float64)


def bf16_to_f64(words):
    return (words.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def float_array(t):
    a = t.array()
    return bf16_to_f64(a) if t.dtype == "BF16" else a.astype(np.float64)


def unpack_nibbles_rows(packed):
    """uint8 [out, in/2] -> codes [out, in]; the even element is the low nibble."""
    codes = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.uint8)
    codes[:, 0::2] = packed & 0xF
    codes[:, 1::2] = packed >> 4
    return codes


def unpack_int32_nibbles(words, axis_len):
    """int32 [..., k] -> nibbles [..., 8k]; element 8i+j in bits 4j..4j+3 of word i."""
    u = words.astype(np.int64) & 0xFFFFFFFF
    shifts = np.arange(8, dtype=np.int64) * 4
    nib = (u[..., None] >> shifts) & 0xF
    return nib.reshape(*u.shape[:-1], u.shape[-1] * 8)[..., :axis_len]


# ---------------------------------------------------------------- dequantizers: (dq, D, kind)


def dq_nvfp4(ts, m, out, inn, ct):
    codes = unpack_nibbles_rows(ts[m + (".weight_packed" if ct else ".weight")].array())
    sc = E4M3[ts[m + ".weight_scale"].array()]
    g = float(ts[m + (".weight_global_scale" if ct else ".weight_scale_2")].array().reshape(-1)[0])
    blk = sc / g if ct else sc * g
    D = np.repeat(blk, 16, axis=1)
    return E2M1[codes] * D, D


def dq_fp8_tensor(ts, m, out, inn):
    s = float(ts[m + ".weight_scale"].array().reshape(-1)[0])
    D = np.full((out, inn), s)
    return E4M3[ts[m + ".weight"].array()] * D, D


def dq_fp8_block(ts, m, out, inn):
    sc = ts[m + ".weight_scale"].array().astype(np.float64)
    sc = sc.reshape(sc.shape[0], sc.shape[2]) if sc.ndim == 4 else sc
    D = np.repeat(np.repeat(sc, 128, axis=0), 128, axis=1)[:out, :inn]
    return E4M3[ts[m + ".weight"].array()] * D, D


def dq_gptq(ts, m, out, inn):
    q = unpack_int32_nibbles(ts[m + ".qweight"].array().T, inn)  # [out, in]
    zeros = unpack_int32_nibbles(ts[m + ".qzeros"].array(), out) + 1  # [in/128, out]
    scales = ts[m + ".scales"].array().astype(np.float64)  # f16 [in/128, out]
    g_idx = ts[m + ".g_idx"].array().astype(np.int64)  # [in]
    D = scales[g_idx, :].T  # [out, in]
    Z = zeros[g_idx, :].T
    return (q - Z) * D, D


def dq_ct_int4(ts, m, out, inn):
    q = unpack_int32_nibbles(ts[m + ".weight_packed"].array(), inn) - 8
    D = np.repeat(float_array(ts[m + ".weight_scale"]), 128, axis=1)[:, :inn]
    return q * D, D


# ---------------------------------------------------------------- bounds


def half_step_e2m1(x):
    return np.where(x < 2, 0.25, np.where(x < 4, 0.5, 1.0))


def half_ulp_e4m3(x):
    _, k = np.frexp(x)  # x = f * 2^k, f in [0.5, 1): floor(log2 x) = k - 1
    e = np.maximum(k - 1, -6)
    return np.ldexp(1.0, e - 3) / 2


def grid(x, kind):
    """(half spacing, top magnitudes for w >= 0 and w < 0) of the element grid at |x|."""
    if kind == "nvfp4":
        return half_step_e2m1(np.minimum(x, 6.0)), 6.0, 6.0
    if kind == "fp8":
        return half_ulp_e4m3(np.minimum(x, 448.0)), 448.0, 448.0
    return np.full(x.shape, 0.5), 7.0, 8.0


def scaled(w, D):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(D > 0, np.abs(w) / np.where(D > 0, D, 1.0), np.inf)


def model_error(w, D, kind):
    """Uniform rounding-error model: sqrt(sum step^2 D^2 / 12) (zero-scale elements excluded)."""
    x = scaled(w, D)
    half, _, _ = grid(np.where(np.isfinite(x), x, 0.0), kind)
    return math.sqrt(float(np.sum(np.where(D > 0, (2 * half * D) ** 2, 0.0))) / 12.0)


def ideal_scales(w, kind, block_fp8):
    """Exact max scales: block/group amax over the grid top (no rounding of the scale)."""
    out, inn = w.shape
    aw = np.abs(w)
    if kind == "nvfp4":
        return np.repeat(aw.reshape(out, inn // 16, 16).max(axis=2) / 6.0, 16, axis=1)
    if kind == "int4":
        g = -(-inn // 128)
        pad = np.zeros((out, g * 128))
        pad[:, :inn] = aw
        return np.repeat(pad.reshape(out, g, 128).max(axis=2) / 7.5, 128, axis=1)[:, :inn]
    if not block_fp8:
        return np.full(w.shape, aw.max() / 448.0)
    R, C = -(-out // 128), -(-inn // 128)
    pad = np.zeros((R * 128, C * 128))
    pad[:out, :inn] = aw
    am = pad.reshape(R, 128, C, 128).max(axis=(1, 3))
    return np.repeat(np.repeat(am / 448.0, 128, axis=0), 128, axis=1)[:out, :inn]


def element_check(w, dq, D, kind):
    """Per-element bounds of the module docstring. Returns (n_bad, n_clipped, max |err| / D,
    first_bad_text)."""
    err = np.abs(w - dq)
    aw = np.abs(w)
    x = scaled(w, D)
    half, top_pos, top_neg = grid(np.where(np.isfinite(x), x, 0.0), kind)
    top = np.where(w >= 0, top_pos, top_neg)
    lim = top + (0.5 if kind == "int4" else 0.0)
    clipped = (x > lim * (1 + REL_SLACK)) & (D > 0)
    tol = REL_SLACK * (aw + D)
    ok_in = err <= half * D + tol
    exact_clip = np.abs(err - (aw - top * D)) <= tol
    same_sign = dq * w >= 0
    ok = np.where(clipped, exact_clip & same_sign, ok_in) & np.isfinite(dq)
    ok |= (aw == 0) & (dq == 0)
    bad = ~ok
    nbad = int(bad.sum())
    first = ""
    if nbad:
        r, c = np.argwhere(bad)[0]
        first = (f"[{r},{c}] w={w[r, c]:.9g} dq={dq[r, c]:.9g} D={D[r, c]:.9g} "
                 f"x={x[r, c]:.6g}")
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.where(D > 0, err / np.where(D > 0, D, 1.0), np.where(err > 0, np.inf, 0.0))
    return nbad, int(clipped.sum()), float(norm.max()) if norm.size else 0.0, first


# ---------------------------------------------------------------- format detection


def detect(folder):
    cfg = json.load(open(os.path.join(folder, "config.json")))
    qc = cfg.get("quantization_config") or {}
    hfp = os.path.join(folder, "hf_quant_config.json")
    if os.path.exists(hfp) or qc.get("quant_method") == "modelopt":
        q = json.load(open(hfp))["quantization"] if os.path.exists(hfp) else qc
        algo = str(q.get("quant_algo", "")).upper()
        return {"NVFP4": "mo-nvfp4", "W4A16_NVFP4": "mo-nvfp4", "FP8": "mo-fp8",
                "FP8_PB_WO": "mo-fp8-block"}.get(algo, "unknown:" + algo)
    if qc.get("quant_method") == "compressed-tensors":
        return {"nvfp4-pack-quantized": "ct-nvfp4", "pack-quantized": "ct-int4"}.get(
            qc.get("format"), "unknown:" + str(qc.get("format")))
    if qc.get("quant_method") == "gptq":
        return "gptq"
    return "unknown"


# suffix that marks a quantized module, kind, dequantizer, all suffixes of the format
FORMATS = {
    "mo-nvfp4": (".weight_scale_2", "nvfp4", lambda ts, m, o, i: dq_nvfp4(ts, m, o, i, False),
                 [".weight", ".weight_scale", ".weight_scale_2", ".input_scale"]),
    "ct-nvfp4": (".weight_global_scale", "nvfp4", lambda ts, m, o, i: dq_nvfp4(ts, m, o, i, True),
                 [".weight_packed", ".weight_scale", ".weight_global_scale", ".input_global_scale"]),
    "mo-fp8": (".input_scale", "fp8", dq_fp8_tensor, [".weight", ".weight_scale", ".input_scale"]),
    "mo-fp8-block": (".weight_scale", "fp8", dq_fp8_block, [".weight", ".weight_scale"]),
    "gptq": (".qweight", "int4", dq_gptq, [".qweight", ".qzeros", ".scales", ".g_idx"]),
    "ct-int4": (".weight_shape", "int4", dq_ct_int4, [".weight_packed", ".weight_scale", ".weight_shape"]),
}


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    quiet = "--quiet" in argv
    json_out = None
    if "--json" in argv:
        json_out = argv[argv.index("--json") + 1]
        args.remove(json_out)
    if len(args) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    exp_dir, orig_dir = args
    fmt = detect(exp_dir)
    if fmt not in FORMATS:
        print(f"FAIL: {exp_dir}: format {fmt} is not decoded here")
        return 1
    marker, kind, dequant, suffixes = FORMATS[fmt]
    ex, orig = read_checkpoint(exp_dir), read_checkpoint(orig_dir)
    modules = sorted(n[:-len(marker)] for n in ex if n.endswith(marker)
                     and orig.get(n[:-len(marker)] + ".weight") is not None
                     and orig[n[:-len(marker)] + ".weight"].dtype == "BF16")
    failures, rows = [], []
    consumed = set()
    for m in modules:
        w_t = orig[m + ".weight"]
        out, inn = w_t.shape
        w = bf16_to_f64(w_t.array())
        try:
            dq, D = dequant(ex, m, out, inn)
        except (KeyError, ValueError) as e:
            failures.append(f"{m}: cannot decode: {e!r}")
            continue
        consumed.update(m + s for s in suffixes)
        nbad, nclip, maxnorm, first = element_check(w, dq, D, kind)
        wn = float(np.linalg.norm(w))
        rel = float(np.linalg.norm(w - dq)) / wn if wn else 0.0
        model_rel = model_error(w, ideal_scales(w, kind, fmt == "mo-fp8-block"), kind) / wn if wn else 0.0
        bound = MODEL_FACTOR * model_rel
        ok = nbad == 0 and rel <= max(bound, 1e-12)
        rows.append((m, f"{out}x{inn}", rel, model_rel, bound, maxnorm, nclip, nbad, ok))
        if nbad:
            failures.append(f"{m}: {nbad} elements outside the {kind} bound, first {first}")
        if rel > bound:
            failures.append(f"{m}: relative error {rel:.4f} above the bound {bound:.4f}")
    # Kept tensors: bit-identical.
    kept_bad = 0
    for name, t in ex.items():
        if name in consumed:
            continue
        o = orig.get(name)
        if o is None:
            failures.append(f"{name}: in the export but neither a quantized tensor nor an input tensor")
            kept_bad += 1
        elif o.dtype != t.dtype or o.shape != t.shape or o.raw != t.raw:
            failures.append(f"{name}: kept tensor differs from the input ({t.dtype} {t.shape} vs "
                            f"{o.dtype} {o.shape})")
            kept_bad += 1
    for name in orig:
        if name not in ex and not (name.endswith(".weight") and name[:-7] in modules):
            failures.append(f"{name}: input tensor missing from the export")
    n_kept = len([n for n in ex if n not in consumed])
    if not quiet:
        print(f"{'module':<58} {'shape':>10} {'rel err':>8} {'ideal':>8} {'bound':>8} "
              f"{'max|e|/D':>9} {'clipped':>7} {'bad':>5}")
        for m, shp, rel, mr, b, mx, nc, nb, ok in rows:
            print(f"{m:<58} {shp:>10} {rel:8.5f} {mr:8.5f} {b:8.5f} {mx:9.4f} {nc:7d} {nb:5d}"
                  f"{'' if ok else '  FAIL'}")
    for f in failures:
        print("FAIL:", f)
    worst = max((r[2] for r in rows), default=0.0)
    status = "PASS" if not failures and rows else "FAIL"
    if not rows:
        print("FAIL: no quantized module found")
    print(f"{status}: {exp_dir}: format {fmt}, {len(rows)} quantized modules decoded "
          f"(worst relative error {worst:.5f}), {n_kept} kept tensors bit-identical"
          f"{'' if not kept_bad else f' except {kept_bad}'}")
    if json_out:
        with open(json_out, "w") as f:
            json.dump({"format": fmt, "status": status, "failures": failures,
                       "modules": [{"module": r[0], "shape": r[1], "rel_err": r[2],
                                    "model_rel_err": r[3], "bound": r[4], "max_err_over_scale": r[5],
                                    "clipped": r[6], "bad": r[7]} for r in rows]}, f, indent=1)
    return 0 if status == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
