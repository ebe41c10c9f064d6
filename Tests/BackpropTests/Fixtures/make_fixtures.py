#!/usr/bin/env python3
"""Write the safetensors fixtures that the Swift tests check Backprop against.

numpy only: the safetensors files are written by hand (struct + json), not with the safetensors
package, so that they are an independent reference for Backprop's reader. Run from anywhere:

    python3 Tests/BackpropTests/Fixtures/make_fixtures.py

Files
-----
seed_small.safetensors   n=16, m=10, nh=5
seed_wide.safetensors    n=7,  m=3,  nh=11

    The inputs of the seed's model (fast.ai 02_fully_connected) and its expected results.
    Inputs, drawn from a fixed numpy seed and stored as F32:
        x (n, m), y (n), w1 (m, nh), b1 (nh), w2 (nh, 1), b2 (1)
    The inputs are redrawn until every ReLU input l1 is at least 1e-3 away from 0 and both signs
    occur, so that float32 rounding cannot flip a ReLU and the mask (l1 > 0) is exercised.
    Expected results, computed in float64 from the float32 inputs by the seed's formulas, stored
    as F32:
        l1 = x @ w1 + b1;  r = max(l1, 0);  out = r @ w2 + b2
        loss = mean((out.squeeze() - y)**2)                          -> "loss" (1)
        out  (the model output, L2.out)                              -> "out"  (n, 1)
        out.g = 2 * (out.squeeze() - y)[:, None] / n
        w2.g = r.T @ out.g;  b2.g = out.g.sum(0)                     -> "w2.g" (nh, 1), "b2.g" (1)
        r.g  = out.g @ w2.T;  l1.g = (l1 > 0) * r.g
        w1.g = x.T @ l1.g;   b1.g = l1.g.sum(0)                      -> "w1.g" (m, nh), "b1.g" (nh)
        x.g  = l1.g @ w1.T                                           -> "x.g"  (n, m)

python_written.safetensors
    Proves compatibility with files written outside Backprop: several dtypes, a __metadata__
    entry, names stored in sorted order, header padded with spaces to a multiple of 8.
        __metadata__ = {"format": "pt", "written_by": "make_fixtures.py"}
        "bf16"   BF16 shape [2]     values [1.5, -3.0]
        "f16"    F16  shape [3]     values [1.0, -2.5, 2**-24]   (2**-24 is F16's smallest subnormal)
        "f32"    F32  shape [2, 3]  values [[0, 1, 2], [3, 4, 5]] / 4  = 0, 0.25, ..., 1.25
        "f64"    F64  shape [3]     values [0.5, -1.25, 0.1]      (0.1 reads as Float(0.1))
        "i64"    I64  shape [2, 2]  values [[-3, 0], [7, 123456]]
        "scalar" F32  shape []      value  42.0
        "u8"     U8   shape [4]     values [0, 1, 128, 255]
"""

import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (dtype string, numpy array already of that dtype, or raw bytes + shape)}."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    chunks = []
    offset = 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for chunk in chunks:
            f.write(chunk)


def f32(array):
    array = np.ascontiguousarray(array, dtype="<f4")
    return ("F32", array.shape, array.tobytes())


def seed_fixture(name, n, m, nh, seed):
    rng = np.random.default_rng(seed)
    while True:
        x = rng.standard_normal((n, m)).astype(np.float32)
        y = rng.standard_normal(n).astype(np.float32)
        w1 = (rng.standard_normal((m, nh)) / np.sqrt(m)).astype(np.float32)
        b1 = (0.1 * rng.standard_normal(nh)).astype(np.float32)
        w2 = (rng.standard_normal((nh, 1)) / np.sqrt(nh)).astype(np.float32)
        b2 = (0.1 * rng.standard_normal(1)).astype(np.float32)
        # float64 from here on, from exactly the float32 values stored in the file.
        X, Y, W1, B1, W2, B2 = (a.astype(np.float64) for a in (x, y, w1, b1, w2, b2))
        l1 = X @ W1 + B1
        if np.abs(l1).min() >= 1e-3 and (l1 > 0).any() and (l1 < 0).any():
            break

    r = np.maximum(l1, 0)
    out = r @ W2 + B2
    diff = out.squeeze(-1) - Y
    loss = np.mean(diff**2)
    out_g = 2 * diff[:, None] / n
    w2_g = r.T @ out_g
    b2_g = out_g.sum(0)
    r_g = out_g @ W2.T
    l1_g = (l1 > 0) * r_g
    w1_g = X.T @ l1_g
    b1_g = l1_g.sum(0)
    x_g = l1_g @ W1.T

    tensors = {
        "x": f32(x), "y": f32(y), "w1": f32(w1), "b1": f32(b1), "w2": f32(w2), "b2": f32(b2),
        "loss": f32([loss]), "out": f32(out),
        "x.g": f32(x_g), "w1.g": f32(w1_g), "b1.g": f32(b1_g), "w2.g": f32(w2_g), "b2.g": f32(b2_g),
    }
    metadata = {"n": str(n), "m": str(m), "nh": str(nh), "numpy_seed": str(seed), "written_by": "make_fixtures.py"}
    write_safetensors(os.path.join(HERE, name), tensors, metadata)
    print(f"{name}: n={n} m={m} nh={nh} loss={loss:.6f} relu inputs >0: {(l1 > 0).sum()}/{l1.size}")


def python_written_fixture():
    bf16_source = np.array([1.5, -3.0], dtype="<f4")
    bf16 = (bf16_source.view("<u4") >> 16).astype("<u2")  # exact: both values fit in 8 mantissa bits
    tensors = {
        "bf16": ("BF16", [2], bf16.tobytes()),
        "f16": ("F16", [3], np.array([1.0, -2.5, 2.0**-24], dtype="<f2").tobytes()),
        "f32": f32(np.arange(6).reshape(2, 3) / 4),
        "f64": ("F64", [3], np.array([0.5, -1.25, 0.1], dtype="<f8").tobytes()),
        "i64": ("I64", [2, 2], np.array([[-3, 0], [7, 123456]], dtype="<i8").tobytes()),
        "scalar": ("F32", [], np.array(42.0, dtype="<f4").tobytes()),
        "u8": ("U8", [4], np.array([0, 1, 128, 255], dtype=np.uint8).tobytes()),
    }
    write_safetensors(
        os.path.join(HERE, "python_written.safetensors"),
        tensors,
        {"format": "pt", "written_by": "make_fixtures.py"},
    )
    print("python_written.safetensors")


def main():
    seed_fixture("seed_small.safetensors", n=16, m=10, nh=5, seed=2)
    seed_fixture("seed_wide.safetensors", n=7, m=3, nh=11, seed=11)
    python_written_fixture()


if __name__ == "__main__":
    main()
