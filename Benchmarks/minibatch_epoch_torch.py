#!/usr/bin/env python3
"""Time one epoch of minibatch training in PyTorch eager: the peer of `backprop bench`'s epochs.

The loop a PyTorch user writes, on the same data as Backprop (the first 50,000 Fashion-MNIST
training images, prepared as `seed_step_numpy.py` prepares them):

    for each epoch: perm = randperm(n)
        for each batch of 64 rows of perm:
            loss = cross_entropy(model(x[idx]), y[idx]); loss.backward(); opt.step(); opt.zero_grad()

Recipes (as `backprop bench`): minibatch = 784-50-10, SGD lr 0.1; mlp = 784-256-128-10, Adam
lr 1e-3; both batch 64, cross-entropy, no weight decay. PyTorch uses its default threads (all
cores). After --warmup untimed epochs, --runs epochs are timed; the medians are printed:

    torch minibatch epoch: median X s
    torch mlp epoch: median Y s

or, with --json, {"minibatch_epoch_s": X, "mlp_epoch_s": Y, "threads": T, "torch": VERSION}.
Without PyTorch installed it prints that it skipped (with --json: {"skipped": "..."}) and exits 0.

Usage: python3 Benchmarks/minibatch_epoch_torch.py [--data DIR] [--runs N] [--warmup N]
       [--only minibatch|mlp ...] [--json]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seed_step_numpy import DEFAULT_DATA, load  # noqa: E402  (the same data preparation)

RECIPES = {
    "minibatch": {"sizes": [784, 50, 10], "optimizer": "sgd", "lr": 0.1},
    "mlp": {"sizes": [784, 256, 128, 10], "optimizer": "adam", "lr": 1e-3},
}
BATCH = 64


def make_model(torch, sizes):
    layers = []
    for index in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[index], sizes[index + 1]))
        if index < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def time_epochs(torch, x, y, recipe, runs, warmup):
    torch.manual_seed(0)
    model = make_model(torch, recipe["sizes"])
    if recipe["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=recipe["lr"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    loss_func = torch.nn.functional.cross_entropy
    n = x.shape[0]
    seconds = []
    for epoch in range(warmup + runs):
        start = time.perf_counter()
        perm = torch.randperm(n)
        total = 0.0
        for i in range(0, n, BATCH):
            idx = perm[i : i + BATCH]
            xb, yb = x[idx], y[idx]
            loss = loss_func(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            total += loss.item() * len(yb)
        if epoch >= warmup:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder with the Fashion-MNIST files")
    parser.add_argument("--runs", type=int, default=3, help="timed epochs per recipe (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first (default 1)")
    parser.add_argument("--only", nargs="+", choices=sorted(RECIPES), help="recipes to run (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    try:
        import torch
    except ImportError:
        reason = "PyTorch is not installed (pip install torch)"
        print(json.dumps({"skipped": reason}) if args.json else f"torch minibatch epoch: skipped: {reason}")
        return

    folder = args.data or os.environ.get("BACKPROP_DATA") or DEFAULT_DATA
    x_np, y_np = load(folder)
    x = torch.from_numpy(x_np)
    y = torch.from_numpy(y_np).long()
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    for name in args.only or ["minibatch", "mlp"]:
        result[f"{name}_epoch_s"] = time_epochs(torch, x, y, RECIPES[name], args.runs, args.warmup)
    if args.json:
        print(json.dumps(result))
    else:
        for name in args.only or ["minibatch", "mlp"]:
            print(f"torch {name} epoch: median {result[f'{name}_epoch_s']:.3f} s")


if __name__ == "__main__":
    main()
