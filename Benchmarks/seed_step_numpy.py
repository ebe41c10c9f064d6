#!/usr/bin/env python3
"""Time the seed's full-batch step in numpy: the peer that Backprop's `bench` compares against.

The seed is fast.ai's 02_fully_connected: a Lin -> ReLU -> Lin model fitted by MSE to the class
index, with a hand-written backward pass. This script runs it the way a numpy user writes it:
float32 throughout, matrix products through numpy's BLAS, no needless copies (the transposes
`x.T`, `r.T`, `w1.T` are views that BLAS reads as transposed).

Data, prepared as Backprop's FashionMNIST does:
    the training file's first 50,000 rows, pixels / 255, normalised with the mean and standard
    deviation (ddof=1, as PyTorch's x_train.std()) of those 50,000 rows; y = the class index.
Weights (Kaiming for w1, as in the lesson): w1 = randn(784, 50) * sqrt(2/784),
w2 = randn(50, 1) / sqrt(50), b1 = b2 = 0; numpy seed 0.

One step = forward (l1, r, out, loss) + backward (out.g, w2.g, b2.g, r.g, l1.g, w1.g, b1.g and
x.g = l1.g @ w1.T, which the seed computes too). After --warmup untimed steps, --runs steps are
timed; the medians are printed:

    numpy seed step: median X ms (forward Y ms, backward Z ms)

or, with --json, {"seed_step_ms": X, "forward_ms": Y, "backward_ms": Z, "rows": 50000, "runs": N}.

Usage: python3 Benchmarks/seed_step_numpy.py [--data DIR] [--runs N] [--warmup N] [--json]
The data folder is --data, else $BACKPROP_DATA, else /usr/share/datasets/fashion-mnist.
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import time

import numpy as np

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
TRAIN_ROWS = 50_000
HIDDEN = 50


def read_idx(folder, name):
    """The payload of an IDX uint8 file (plain or .gz) and its shape."""
    for candidate in (os.path.join(folder, name), os.path.join(folder, name + ".gz")):
        if os.path.exists(candidate):
            opener = gzip.open if candidate.endswith(".gz") else open
            with opener(candidate, "rb") as f:
                raw = f.read()
            rank = raw[3]
            shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)
    sys.exit(f"{folder}: missing {name}.gz or {name} (give --data DIR or set BACKPROP_DATA)")


def load(folder):
    images = read_idx(folder, "train-images-idx3-ubyte")
    labels = read_idx(folder, "train-labels-idx1-ubyte")
    x_train = images[:TRAIN_ROWS].reshape(TRAIN_ROWS, -1).astype(np.float32) / np.float32(255)
    y_train = labels[:TRAIN_ROWS].astype(np.float32)
    train_mean, train_std = x_train.mean(), x_train.std(ddof=1)
    x_train = (x_train - train_mean) / train_std  # the lesson's normalize(x, m, s)
    return x_train, y_train


def forward(x, y, w1, b1, w2, b2):
    l1 = x @ w1 + b1  # (n, nh)
    r = np.maximum(l1, 0)  # (n, nh)
    out = r @ w2 + b2  # (n, 1)
    diff = out.squeeze(-1) - y  # (n)
    loss = (diff * diff).mean()
    return l1, r, out, diff, loss


def backward(x, w1, w2, l1, r, diff):
    n = x.shape[0]
    out_g = (np.float32(2 / n) * diff)[:, None]  # Mse.backward: 2 (out.squeeze() - targ) / n, (n, 1)
    w2_g = r.T @ out_g  # Lin.backward (L2): w.g = inp.T @ out.g, (nh, 1)
    b2_g = out_g.sum(0)  # b.g = out.g.sum(0), (1)
    r_g = out_g @ w2.T  # inp.g = out.g @ w.T, (n, nh)
    l1_g = (l1 > 0) * r_g  # ReLU.backward, (n, nh)
    w1_g = x.T @ l1_g  # Lin.backward (L1), (m, nh)
    b1_g = l1_g.sum(0)  # (nh)
    x_g = l1_g @ w1.T  # (n, m)
    return x_g, w1_g, b1_g, w2_g, b2_g


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder with the Fashion-MNIST files")
    parser.add_argument("--runs", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    folder = args.data or os.environ.get("BACKPROP_DATA") or DEFAULT_DATA
    x, y = load(folder)
    m = x.shape[1]
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((m, HIDDEN)) * np.sqrt(2 / m)).astype(np.float32)
    b1 = np.zeros(HIDDEN, dtype=np.float32)
    w2 = (rng.standard_normal((HIDDEN, 1)) / np.sqrt(HIDDEN)).astype(np.float32)
    b2 = np.zeros(1, dtype=np.float32)

    forward_times, backward_times, step_times = [], [], []
    for run in range(args.warmup + args.runs):
        start = time.perf_counter()
        l1, r, out, diff, loss = forward(x, y, w1, b1, w2, b2)
        middle = time.perf_counter()
        grads = backward(x, w1, w2, l1, r, diff)
        end = time.perf_counter()
        assert all(g.dtype == np.float32 for g in grads) and loss.dtype == np.float32
        if run >= args.warmup:
            forward_times.append((middle - start) * 1000)
            backward_times.append((end - middle) * 1000)
            step_times.append((end - start) * 1000)

    result = {
        "seed_step_ms": statistics.median(step_times),
        "forward_ms": statistics.median(forward_times),
        "backward_ms": statistics.median(backward_times),
        "rows": int(x.shape[0]),
        "runs": args.runs,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"numpy seed step: median {result['seed_step_ms']:.2f} ms "
            f"(forward {result['forward_ms']:.2f} ms, backward {result['backward_ms']:.2f} ms)"
        )


if __name__ == "__main__":
    main()
