#!/usr/bin/env python3
"""Write the fixture that checks `matmul` beyond two matrices: vectors and broadcast batches.

numpy only, float64, independent of Backprop. The products are numpy's `np.matmul`, whose shape
rules (a vector is a row on the left and a column on the right, that dimension dropped; leading
dimensions are a batch, broadcast) are the ones `torch.matmul` documents. The gradients do not use
any formula: L = sum(matmul(a, b) * out_g) is linear in each operand, so the gradient with respect
to one element of `a` is L with `a` replaced by the one-hot tensor of that element (exact in
float64, no finite differences). Run from anywhere:

    python3 Tests/BackpropTests/Fixtures/make_matmul_fixtures.py

Each case NAME of matmul_batched.safetensors holds
    NAME.a, NAME.b          the operands (F32, drawn from a fixed seed)
    NAME.out                np.matmul(a, b) computed in float64 from the F32 values, stored F32
    NAME.out.g              the upstream gradient (random normal)
    NAME.a.g, NAME.b.g      the gradients of sum(out * out.g)
and the file's __metadata__ maps NAME to "a=SHAPE b=SHAPE" for the Swift test's own table.
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
from make_fixtures import write_safetensors  # noqa: E402  (the hand-written safetensors writer)

# (name, shape of a, shape of b)
CASES = [
    ("batch_times_matrix", (3, 2, 4), (4, 5)),
    ("matrix_times_batch", (2, 4), (3, 4, 5)),
    ("batch_times_batch", (3, 2, 4), (3, 4, 5)),
    ("broadcast_both", (2, 1, 3, 4), (3, 4, 2)),
    ("broadcast_ones", (1, 3, 2), (4, 2, 3)),
    ("vector_times_matrix", (4,), (4, 5)),
    ("matrix_times_vector", (3, 4), (4,)),
    ("vector_times_vector", (4,), (4,)),
    ("vector_times_batch", (5,), (2, 5, 3)),
    ("batch_times_vector", (2, 3, 4), (4,)),
    ("inner_size_one", (2, 3, 1), (2, 1, 4)),
    ("inner_size_zero", (2, 3, 0), (0, 4)),
]


def f32(array):
    array = np.asarray(array, dtype="<f4", order="C")  # (np.ascontiguousarray makes a scalar 1-D)
    return ("F32", array.shape, array.tobytes())


def loss(a, b, out_g):
    return float(np.sum(np.matmul(a, b) * out_g))


def one_hot_gradient(shape, place):
    """The gradient of the linear map `place(one_hot)` over every element of `shape`."""
    gradient = np.zeros(shape)
    for index in np.ndindex(*shape):
        basis = np.zeros(shape)
        basis[index] = 1
        gradient[index] = place(basis)
    return gradient


def main():
    rng = np.random.default_rng(2026)
    tensors, metadata = {}, {}
    for name, shape_a, shape_b in CASES:
        a = rng.uniform(-1, 1, shape_a).astype(np.float32).astype(np.float64)
        b = rng.uniform(-1, 1, shape_b).astype(np.float32).astype(np.float64)
        out = np.matmul(a, b)
        out_g = rng.normal(size=out.shape).astype(np.float32).astype(np.float64)
        a_g = one_hot_gradient(shape_a, lambda basis: loss(basis, b, out_g))
        b_g = one_hot_gradient(shape_b, lambda basis: loss(a, basis, out_g))
        for key, value in [("a", a), ("b", b), ("out", out), ("out.g", out_g), ("a.g", a_g), ("b.g", b_g)]:
            tensors[f"{name}.{key}"] = f32(value)
        metadata[name] = f"a={list(shape_a)} b={list(shape_b)}"
    path = os.path.join(HERE, "matmul_batched.safetensors")
    write_safetensors(path, tensors, metadata)
    print(f"wrote {path}: {len(CASES)} cases")


if __name__ == "__main__":
    main()
