#!/usr/bin/env python3
"""Write the fixture that the checkpoint and cross-entropy tests check Backprop against.

numpy only; the safetensors file is written by hand (struct + json), independently of Backprop's
writer, in the layout of `backprop train --save`. Run from anywhere:

    python3 Tests/BackpropTests/Fixtures/make_mlp_fixture.py

mlp_5_4_3_3.safetensors
    A Backprop MLP checkpoint 5-4-3-3 (Lin, ReLU, Lin, ReLU, Lin; cross-entropy), with
        __metadata__ = {"format": "backprop-mlp", "sizes": "5,4,3,3", "activation": "relu",
                        "loss": "cross_entropy", "layers": "lin,relu,lin,relu,lin"}
        layers.0.w (5, 4), layers.0.b (4), layers.2.w (4, 3), layers.2.b (3),
        layers.4.w (3, 3), layers.4.b (3)                              F32, drawn from seed 7
    and, for the tests (not part of a real checkpoint, so they live in mlp_5_4_3_3_io):

mlp_5_4_3_3_io.safetensors
    x (6, 5) inputs and targ (6) class indices as F32, and the expected results computed in
    float64 from the float32 weights:
        h1 = x @ w0 + b0;  r1 = max(h1, 0);  h2 = r1 @ w2 + b2;  r2 = max(h2, 0)
        out = r2 @ w4 + b4                                               -> "out" (6, 3)
        loss = mean(logsumexp(out) - out[i, targ[i]])                    -> "loss" (1)
        out.g = (softmax(out) - onehot(targ)) / n                        -> "out.g" (6, 3)
        then the seed's backward through Lin and ReLU                   -> "layers.K.w.g", "layers.K.b.g"
    Inputs are redrawn until every ReLU input is at least 1e-3 away from 0, so float32 rounding
    cannot flip a mask.
"""
import json
import os
import struct

import numpy as np

FOLDER = os.path.dirname(os.path.abspath(__file__))


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: float array}; written as little-endian F32, names sorted, header padded."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    chunks = []
    offset = 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype="<f4")
        data = array.tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for chunk in chunks:
            f.write(chunk)


def main():
    sizes = [5, 4, 3, 3]
    n = 6
    rng = np.random.default_rng(7)
    while True:
        weights = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = (rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in)).astype(np.float32)
            b = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
            weights.append((w, b))
        x = rng.standard_normal((n, sizes[0])).astype(np.float32)
        targ = rng.integers(0, sizes[-1], n)
        # Forward in float64 from the float32 values.
        activations = [x.astype(np.float64)]
        pre = []
        h = activations[0]
        for i, (w, b) in enumerate(weights):
            z = h @ w.astype(np.float64) + b.astype(np.float64)
            pre.append(z)
            h = np.maximum(z, 0) if i < len(weights) - 1 else z
            activations.append(h)
        if all(np.abs(z).min() > 1e-3 for z in pre[:-1]):
            break

    out = activations[-1]
    m = out.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(out - m).sum(axis=1, keepdims=True)))[:, 0]
    loss = np.mean(lse - out[np.arange(n), targ])
    softmax = np.exp(out - lse[:, None])
    onehot = np.eye(sizes[-1])[targ]
    g = (softmax - onehot) / n

    io = {"x": x, "targ": targ.astype(np.float32), "out": out, "loss": np.array([loss]), "out.g": g}
    # The seed's backward: Lin then ReLU, last layer first.
    for i in reversed(range(len(weights))):
        w, b = weights[i]
        k = 2 * i
        io[f"layers.{k}.w.g"] = activations[i].T @ g
        io[f"layers.{k}.b.g"] = g.sum(axis=0)
        g = g @ w.astype(np.float64).T
        if i > 0:
            g = (pre[i - 1] > 0) * g

    checkpoint = {}
    for i, (w, b) in enumerate(weights):
        checkpoint[f"layers.{2 * i}.w"] = w
        checkpoint[f"layers.{2 * i}.b"] = b
    metadata = {
        "format": "backprop-mlp",
        "sizes": ",".join(map(str, sizes)),
        "activation": "relu",
        "loss": "cross_entropy",
        "layers": "lin,relu,lin,relu,lin",
    }
    write_safetensors(os.path.join(FOLDER, "mlp_5_4_3_3.safetensors"), checkpoint, metadata)
    write_safetensors(
        os.path.join(FOLDER, "mlp_5_4_3_3_io.safetensors"), io, {"written_by": "make_mlp_fixture.py"}
    )


if __name__ == "__main__":
    main()
