#!/usr/bin/env python3
"""Time one epoch of convnet training in PyTorch eager: the peer of `backprop bench`'s CNN epoch.

The network is `--layers cnn`'s recipe (`DEFAULT_LAYERS` in `cnn_recipe_torch.py`, in Backprop's
model-description syntax), on the same data as Backprop: the first 50,000 Fashion-MNIST training
images as [n, 1, 28, 28], pixels / 255 normalised by their mean and standard deviation (ddof=1),
prepared without large temporaries (`load_images`).
The loop a PyTorch user writes:

    model.train()
    for each epoch: perm = randperm(n)
        for each batch of 128 rows of perm:
            loss = cross_entropy(model(x[idx]), y[idx]); opt.zero_grad(); loss.backward(); opt.step()

with AdamW (decoupled weight decay 0.1 on tensors of rank >= 2, lr 3e-3 constant: the schedule
costs nothing). After --warmup untimed epochs, --runs epochs are timed and the median printed:

    torch cnn epoch: median X s (threads T, peak RSS M MiB)

or, with --json, {"cnn_epoch_s": X, "threads": T, "torch": VERSION, "peak_rss_mib": M} (the peak
resident memory of the whole process, from resource.getrusage, so it includes PyTorch itself).

With --layers-timing, each conv layer of the network is also timed alone on a batch of --batch
images of its input shape: the forward (`conv(x)`), and the backward (the gradients of the input,
the weight and the bias from a given output gradient, the forward's graph kept). FLOPs: a forward
is 2*n*cOut*oh*ow*cIn*kh*kw, a backward twice that (input and weight gradients). Printed as

    torch conv layers.4 [128, 16, 14, 14] -> [128, 32, 14, 14]: forward A ms (B GFLOP/s), backward C ms (D GFLOP/s)

or, with --json, a list under "conv_layers". Without PyTorch installed it prints that it skipped
(with --json: {"skipped": "..."}) and exits 0.

Usage: python3 Benchmarks/cnn_epoch_torch.py [--data DIR] [--runs N] [--warmup N] [--threads T]
       [--layers SPEC] [--batch N] [--layers-timing] [--json]
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnn_recipe_torch import DEFAULT_LAYERS, DEFAULTS, build_model, make_optimizer  # noqa: E402
from seed_step_numpy import DEFAULT_DATA, TRAIN_ROWS, read_idx  # noqa: E402  (the same IDX reader)


def load_images(torch, folder):
    """The first 50,000 training images as float32 [n, 1, 28, 28], (x / 255 - mean) / std, and labels.

    As `seed_step_numpy.load`, but without float64 or full-size temporaries, so that the peak RSS
    measures training rather than loading: the mean and standard deviation (ddof=1) of x / 255 come
    exactly from the histogram of the pixel bytes, and the float32 tensor is normalised in place.
    """
    images = read_idx(folder, "train-images-idx3-ubyte")[:TRAIN_ROWS]
    labels = read_idx(folder, "train-labels-idx1-ubyte")[:TRAIN_ROWS]
    pixels = torch.from_numpy(images.copy()).reshape(-1)  # uint8, 39 MB
    counts = torch.bincount(pixels, minlength=256).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64) / 255
    total = counts.sum()
    mean = float((counts * values).sum() / total)
    std = float(((counts * (values - mean) ** 2).sum() / (total - 1)) ** 0.5)
    x = pixels.to(torch.float32).reshape(-1, 1, 28, 28)
    del pixels
    x.div_(255).sub_(mean).div_(std)
    return x, torch.from_numpy(labels.copy()).long()


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def time_epochs(torch, model, opt, x, y, batch, runs, warmup):
    loss_func = torch.nn.functional.cross_entropy
    n = x.shape[0]
    model.train()
    seconds = []
    for epoch in range(warmup + runs):
        start = time.perf_counter()
        perm = torch.randperm(n)
        total = 0.0
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            xb, yb = x[idx], y[idx]
            loss = loss_func(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        if epoch >= warmup:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def time_conv_layers(torch, model, convs, batch, repeats=20, warmup=3):
    """Each conv alone: forward and backward medians (ms) and GFLOP/s, on random inputs."""
    results = []
    generator = torch.Generator().manual_seed(0)
    for conv in convs:
        layer = model[conv["index"]]
        x = torch.randn(batch, conv["c_in"], conv["h"], conv["w"], generator=generator).requires_grad_()
        with torch.no_grad():
            out_shape = layer(x).shape
        grad_out = torch.randn(out_shape, generator=generator)
        params = [p for p in layer.parameters()]

        forward_times = []
        with torch.no_grad():
            for run in range(warmup + repeats):
                start = time.perf_counter()
                layer(x)
                if run >= warmup:
                    forward_times.append(time.perf_counter() - start)
        out = layer(x)
        backward_times = []
        for run in range(warmup + repeats):
            start = time.perf_counter()
            torch.autograd.grad(out, [x] + params, grad_out, retain_graph=True)
            if run >= warmup:
                backward_times.append(time.perf_counter() - start)
        flops = 2 * batch * conv["c_out"] * conv["oh"] * conv["ow"] * conv["c_in"] * conv["k"] * conv["k"]
        forward_s, backward_s = statistics.median(forward_times), statistics.median(backward_times)
        results.append({
            "layer": f"layers.{conv['index']}",
            "input": [batch, conv["c_in"], conv["h"], conv["w"]],
            "output": list(out_shape),
            "kernel": conv["k"],
            "stride": conv["stride"],
            "padding": conv["pad"],
            "forward_ms": forward_s * 1e3,
            "forward_gflops": flops / forward_s / 1e9,
            "backward_ms": backward_s * 1e3,
            "backward_gflops": 2 * flops / backward_s / 1e9,
        })
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder with the Fashion-MNIST files")
    parser.add_argument("--runs", type=int, default=3, help="timed epochs (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first (default 1)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: PyTorch's, all cores)")
    parser.add_argument("--layers", default=DEFAULT_LAYERS, help="the network (default: the cnn recipe)")
    parser.add_argument("--batch", type=int, default=DEFAULTS["batch"], help="rows per batch (default 128)")
    parser.add_argument("--layers-timing", action="store_true", help="also time each conv layer alone")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    try:
        import torch
    except ImportError:
        reason = "PyTorch is not installed (pip install torch)"
        print(json.dumps({"skipped": reason}) if args.json else f"torch cnn epoch: skipped: {reason}")
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = args.data or os.environ.get("BACKPROP_DATA") or DEFAULT_DATA
    x, y = load_images(torch, folder)
    model, _, convs = build_model(torch, args.layers, torch.Generator().manual_seed(0))
    torch.manual_seed(0)  # dropout masks
    opt = make_optimizer(torch, model, "adam", DEFAULTS["lr"], DEFAULTS["weight_decay"])

    result = {"cnn_epoch_s": time_epochs(torch, model, opt, x, y, args.batch, args.runs, args.warmup)}
    if args.layers_timing:
        result["conv_layers"] = time_conv_layers(torch, model, convs, args.batch)
    result.update({"threads": torch.get_num_threads(), "torch": torch.__version__, "peak_rss_mib": peak_rss_mib()})
    if args.json:
        print(json.dumps(result))
        return
    print(f"torch cnn epoch: median {result['cnn_epoch_s']:.3f} s "
          f"(threads {result['threads']}, peak RSS {result['peak_rss_mib']:.0f} MiB)")
    for conv in result.get("conv_layers", []):
        print(f"torch conv {conv['layer']} {conv['input']} -> {conv['output']}: "
              f"forward {conv['forward_ms']:.2f} ms ({conv['forward_gflops']:.1f} GFLOP/s), "
              f"backward {conv['backward_ms']:.2f} ms ({conv['backward_gflops']:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
