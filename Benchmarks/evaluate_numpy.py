#!/usr/bin/env python3
"""Test accuracy of a Backprop checkpoint, computed with numpy alone.

Reads the safetensors file written by `backprop train --save` without Backprop and without the
safetensors library (8-byte header length, JSON header, raw little-endian F32 data), reads the
Fashion-MNIST test images, normalises them with the training mean and standard deviation stored
in the checkpoint's metadata, runs the MLP (x @ w + b, ReLU between layers) and prints the test
accuracy, to compare with `backprop evaluate --model FILE`.

    python3 Benchmarks/evaluate_numpy.py model.safetensors [--data DIR] [--json]
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np


def read_safetensors(path):
    """Returns ({name: array}, metadata) from a safetensors file."""
    with open(path, "rb") as f:
        (header_length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_length))
        data = f.read()
    metadata = header.pop("__metadata__", {})
    dtypes = {"F32": "<f4", "F64": "<f8"}
    tensors = {}
    for name, entry in header.items():
        start, end = entry["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=dtypes[entry["dtype"]])
        tensors[name] = array.reshape(entry["shape"]).astype(np.float32)
    return tensors, metadata


def read_idx(directory, name):
    """The array in an IDX file (plain or .gz), for example t10k-images-idx3-ubyte."""
    path = os.path.join(directory, name)
    opener = open if os.path.exists(path) else gzip.open
    path = path if os.path.exists(path) else path + ".gz"
    with opener(path, "rb") as f:
        content = f.read()
    rank = content[3]
    shape = struct.unpack(">" + "I" * rank, content[4 : 4 + 4 * rank])
    return np.frombuffer(content[4 + 4 * rank :], dtype=np.uint8).reshape(shape)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a checkpoint written by backprop train --save")
    parser.add_argument(
        "--data",
        default=os.environ.get("BACKPROP_DATA") or "/usr/share/datasets/fashion-mnist",
        help="folder with the Fashion-MNIST files",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--limit", type=int, default=None, help="use only the first LIMIT test images")
    arguments = parser.parse_args()

    tensors, metadata = read_safetensors(arguments.model)
    if metadata.get("format") != "backprop-mlp":
        sys.exit(f"{arguments.model}: not a Backprop MLP checkpoint (format {metadata.get('format')!r})")
    # The linear layers, in the order of the model's layer list: layers.0, layers.2, ...
    # (a checkpoint written during training also holds optimizer.* tensors; they are skipped)
    indices = sorted({int(name.split(".")[1]) for name in tensors if name.startswith("layers.")})
    layers = [(tensors[f"layers.{i}.w"], tensors[f"layers.{i}.b"]) for i in indices]

    images = read_idx(arguments.data, "t10k-images-idx3-ubyte")
    labels = read_idx(arguments.data, "t10k-labels-idx1-ubyte").astype(np.int64)
    if arguments.limit is not None:
        images, labels = images[: arguments.limit], labels[: arguments.limit]
    mean = np.float32(float(metadata["input_mean"]))
    std = np.float32(float(metadata["input_std"]))
    x = (images.reshape(len(images), -1).astype(np.float32) / np.float32(255) - mean) / std

    for index, (w, b) in enumerate(layers):
        x = x @ w + b
        if index < len(layers) - 1:
            x = np.maximum(x, 0)
    if x.shape[1] == 1:
        predictions = np.rint(x[:, 0]).astype(np.int64)
    else:
        predictions = x.argmax(axis=1)
    accuracy = float((predictions == labels).mean())

    if arguments.json:
        print(json.dumps({"test_accuracy": accuracy, "images": len(labels)}))
    else:
        sizes = [layers[0][0].shape[0]] + [w.shape[1] for w, _ in layers]
        print(f"test accuracy {accuracy:.4f} ({len(labels)} images), model {'-'.join(map(str, sizes))} (numpy)")


if __name__ == "__main__":
    main()
