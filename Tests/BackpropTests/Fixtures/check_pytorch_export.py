#!/usr/bin/env python3
"""Check a `backprop export --format pytorch` file with PyTorch itself (PyTorchInteropTests.swift).

    python3 check_pytorch_export.py SCRIPT IO

SCRIPT is the Python that `backprop export` printed: it builds the nn.Sequential, calls
`model.load_state_dict(load_file(OUT))` (strict, so a missing, extra or misshapen key fails), and
defines `prepare(pixels)`, the input normalisation. IO is a safetensors file holding `pixels`
(n, ...) (Fashion-MNIST bytes 0-255 stored as F32) and `logits` (n, classes), the outputs Backprop
computed for them. This script runs SCRIPT, then `model(prepare(pixels))`, and exits 0 when every
logit is within 1e-5 (absolute, plus 1e-5 relative) of Backprop's, printing the largest difference.

The `safetensors` package is used when it is installed; otherwise `load_file` is a reader written
here (an 8-byte little-endian header length, a JSON header, the raw little-endian data).
Exit status 2 when torch is not importable, so that the Swift test can skip.
"""

import sys
import types

import numpy as np
from safetensors_numpy import read_safetensors

try:
    import torch
except ImportError:
    print("torch is not importable", file=sys.stderr)
    sys.exit(2)


def load_file(path):
    """`safetensors.torch.load_file`, for machines without the package."""
    return {name: torch.from_numpy(array) for name, array in read_safetensors(path).items()}


def main():
    script_path, io_path = sys.argv[1], sys.argv[2]
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        package = types.ModuleType("safetensors")
        package.torch = types.ModuleType("safetensors.torch")
        package.torch.load_file = load_file
        sys.modules["safetensors"] = package
        sys.modules["safetensors.torch"] = package.torch
    with open(script_path) as f:
        script = f.read()
    namespace = {"__name__": "exported"}
    exec(compile(script, script_path, "exec"), namespace)
    model, prepare = namespace["model"], namespace["prepare"]
    io = read_safetensors(io_path)
    with torch.no_grad():
        logits = model(prepare(io["pixels"])).numpy().astype(np.float64)
    expected = io["logits"].astype(np.float64)
    if logits.shape != expected.shape:
        print(f"logits have shape {list(logits.shape)}, Backprop's {list(expected.shape)}")
        sys.exit(1)
    difference = np.abs(logits - expected)
    allowed = 1e-5 + 1e-5 * np.abs(expected)
    print(f"largest difference {difference.max():.3g} over {expected.size} logits")
    sys.exit(0 if (difference <= allowed).all() else 1)


if __name__ == "__main__":
    main()
