#!/usr/bin/env python3
"""Independent numpy check of one NVFP4 W4A4 Linear as a Blackwell engine computes it.

Reads what `test_actq --dump DIR` wrote (x [n, cols] fp32, the ModelOpt NVFP4 weight: packed
nibbles, E4M3 block scales, weight_scale_2, and input_scale) and gemma4q's output y [n, rows],
recomputes y from the format description alone (docs/formats.md §1, §2, §2.8), and compares.

Activations (vLLM's scaled_fp4_quant with global scale G = 1/input_scale), per block of 16:
  sf = E4M3(G * (amax * (1/6))), q = E2M1(x * 1/(sf * input_scale)), x_hat = E2M1(q) * sf
and y = (x_hat . (E2M1(w) * E4M3(ws))^T) * input_scale * weight_scale_2, here in float64 after
float32 rounding of the scale arithmetic. E4M3 and E2M1 rounding are done by nearest-value search
over the code tables (ties to the even code), not by the bit tricks gemma4q uses.
Usage: w4a4_linear.py DIR ROWS COLS N
"""
import sys

import numpy as np

f32 = np.float32
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=np.float64)


def e4m3_values():
    v = []
    for code in range(0x7F):  # 0x7F is NaN
        e, m = code >> 3, code & 7
        v.append(m / 8 * 2.0**-6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))
    return np.array(v)


E4M3 = e4m3_values()


def nearest(table, a):
    """Index of the nearest table value to a >= 0 (saturating), ties to the even index."""
    a = min(a, table[-1])
    i = int(np.searchsorted(table, a))
    if i == 0:
        return 0
    if i >= len(table):
        return len(table) - 1
    lo, hi = table[i - 1], table[i]
    if a - lo < hi - a:
        return i - 1
    if hi - a < a - lo:
        return i
    return i - 1 if (i - 1) % 2 == 0 else i


def e4m3(x):
    return np.sign(x) * E4M3[nearest(E4M3, abs(float(x)))]


def e2m1(x):
    return np.sign(x) * E2M1[nearest(E2M1, abs(float(x)))]


def main():
    d, rows, cols, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    x = np.fromfile(f"{d}/x.f32", dtype=np.float32).reshape(n, cols)
    packed = np.fromfile(f"{d}/packed.u8", dtype=np.uint8).reshape(rows, cols // 2)
    scales = np.fromfile(f"{d}/scales.u8", dtype=np.uint8).reshape(rows, cols // 16)
    wsf2 = float(np.fromfile(f"{d}/wsf2.f32", dtype=np.float32)[0])
    s = np.fromfile(f"{d}/input_scale.f32", dtype=np.float32)[0]
    y = np.fromfile(f"{d}/y.f32", dtype=np.float32).reshape(n, rows)

    nib = np.empty((rows, cols), dtype=np.uint8)
    nib[:, 0::2] = packed & 15
    nib[:, 1::2] = packed >> 4
    wv = np.where(nib & 8, -1.0, 1.0) * E2M1[nib & 7]
    sv = np.array([E4M3[c & 0x7F] * (-1 if c & 0x80 else 1) for c in scales.ravel()]).reshape(
        rows, cols // 16)
    w = wv * np.repeat(sv, 16, axis=1)

    G = f32(1) / s
    xh = np.zeros((n, cols))
    for t in range(n):
        for b in range(cols // 16):
            blk = x[t, 16 * b:16 * b + 16]
            amax = f32(np.max(np.abs(blk)))
            sf = e4m3(f32(G * f32(amax * f32(f32(1) / f32(6)))))
            if sf == 0:
                continue
            os_ = f32(1) / f32(f32(sf) * s)
            xh[t, 16 * b:16 * b + 16] = [e2m1(f32(v * os_)) * sf for v in blk]
    ref = (xh @ w.T) * float(s) * wsf2
    mag = (np.abs(xh) @ np.abs(w).T) * float(s) * wsf2
    err = np.abs(y - ref)
    tol = 1e-5 * mag + 1e-30
    bad = int(np.sum(err > tol))
    print(f"w4a4 linear: {n}x{cols} -> {rows}, max |y - ref| {err.max():.3g}, "
          f"max err/|ref| {np.max(err / (np.abs(ref) + 1e-30)):.3g}, outside tolerance: {bad}")
    # the activation quantization mattered (x_hat != x somewhere), so the check is not vacuous
    assert np.max(np.abs(xh * float(s) - x)) > 0, "x_hat equals x: nothing was quantized"
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
