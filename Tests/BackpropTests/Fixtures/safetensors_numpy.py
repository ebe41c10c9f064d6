"""A safetensors file as numpy arrays, for the check scripts beside it (check_pytorch_export.py,
check_onnx_export.py), written from the format's description (an 8-byte little-endian header
length, a JSON header of dtype, shape and data_offsets per tensor, then the data), independently
of Backprop's own reader and of the safetensors package, which these machines may not have."""

import json
import struct

import numpy as np

DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}


def read_safetensors(path):
    """{name: numpy array} of a safetensors file (F32, F64 and I64 only)."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    start = 8 + length
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data[start + begin : start + end], dtype=DTYPES[entry["dtype"]])
        arrays[name] = array.reshape(entry["shape"]).copy()
    return arrays
