#!/usr/bin/env python3
"""Check a `backprop export --format onnx` file with ONNX Runtime itself (ONNXExportTests.swift).

    python3 check_onnx_export.py SCRIPT IO MODEL

SCRIPT is the Python that `backprop export --format onnx` printed: it opens the exported model in
an `onnxruntime.InferenceSession` and defines `logits(pixels)`, which feeds Fashion-MNIST pixels
to the graph's input and returns its output. IO is a safetensors file holding `pixels` (n, ...)
(Fashion-MNIST bytes 0-255 stored as F32) and `logits` (n, classes), the outputs Backprop
computed for them. This script runs SCRIPT, then `logits(pixels)`, prints the largest absolute
difference, and exits 0 when it is at most 1e-4 (the goal of the export: ONNX Runtime gives
Backprop's logits).

Where the `onnx` package is installed, MODEL (the exported file) also goes through `onnx.checker.check_model`
with `full_check=True` (the schema, the operator set, and shape inference); without it that step
is skipped and says so. Exit status 2 when onnxruntime is not importable, so that the Swift test
can skip.
"""

import sys

import numpy as np
from safetensors_numpy import read_safetensors

try:
    import onnxruntime  # noqa: F401
except ImportError:
    print("onnxruntime is not importable", file=sys.stderr)
    sys.exit(2)

TOLERANCE = 1e-4


def check_schema(path):
    """Runs onnx.checker on the model file at `path`, if the onnx package is installed."""
    try:
        import onnx
    except ImportError:
        return "onnx.checker skipped (onnx is not installed)"
    onnx.checker.check_model(onnx.load(path), full_check=True)
    return "onnx.checker passed"


def main():
    script_path, io_path, model_path = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(script_path) as f:
        script = f.read()
    namespace = {"__name__": "exported"}
    exec(compile(script, script_path, "exec"), namespace)
    logits = namespace["logits"]
    checked = check_schema(model_path)
    io = read_safetensors(io_path)
    found = np.asarray(logits(io["pixels"])).astype(np.float64)
    expected = io["logits"].astype(np.float64)
    if found.shape != expected.shape:
        print(f"logits have shape {list(found.shape)}, Backprop's {list(expected.shape)}")
        sys.exit(1)
    difference = np.abs(found - expected).max()
    print(f"largest difference {difference:.3g} over {expected.size} logits (limit {TOLERANCE:g}); {checked}")
    sys.exit(0 if difference <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
