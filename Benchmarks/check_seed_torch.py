#!/usr/bin/env python3
"""Check `backprop seed --tensors --init --save` against PyTorch autograd, for random shapes.

For each case: write x, y, w1, b1, w2, b2 (random shapes) to safetensors, run the seed's program
through the built `backprop`, and compare its saved loss, out and gradients with PyTorch autograd
on the same inputs (float32, as the seed's lesson). Prints the worst relative error per tensor;
exits 1 if any exceeds 1e-4. Skips (exit 0) when PyTorch is not installed.

    swift build -c release
    python3 Benchmarks/check_seed_torch.py [.build/release/backprop]
"""
import json, os, struct, subprocess, sys, tempfile

import numpy as np

try:
    import torch
except ImportError:
    print("check_seed_torch: PyTorch is not installed; skipped")
    sys.exit(0)


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + begin : 8 + n + end], dtype="<f4").reshape(entry["shape"])
    return out


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else ".build/release/backprop"
    rng = np.random.default_rng(2026)
    worst_overall = 0.0
    for case in range(6):
        n, m, nh = (int(v) for v in rng.integers([1, 1, 1], [300, 200, 80]))
        t = {
            "x": rng.standard_normal((n, m)).astype(np.float32),
            "y": rng.standard_normal(n).astype(np.float32),
            "w1": (rng.standard_normal((m, nh)) * np.sqrt(2 / m)).astype(np.float32),
            "b1": (rng.standard_normal(nh) * 0.1).astype(np.float32),
            "w2": (rng.standard_normal((nh, 1)) / np.sqrt(nh)).astype(np.float32),
            "b2": (rng.standard_normal(1) * 0.1).astype(np.float32),
        }
        with tempfile.TemporaryDirectory() as folder:
            inputs, saved = os.path.join(folder, "in.safetensors"), os.path.join(folder, "out.safetensors")
            write_safetensors(inputs, t)
            subprocess.run([binary, "seed", "--tensors", inputs, "--init", inputs, "--save", saved], check=True, capture_output=True)
            ours = read_safetensors(saved)
        p = {k: torch.tensor(v, requires_grad=True) for k, v in t.items()}
        out = torch.clamp_min(p["x"] @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]
        out.retain_grad()
        loss = ((out.squeeze(-1) - p["y"]) ** 2).mean()
        loss.backward()
        reference = {"loss": loss.detach().reshape(1), "out": out.detach()}
        reference.update({k + ".g": p[k].grad for k in ["x", "w1", "b1", "w2", "b2"]})
        errors = {}
        for name, value in reference.items():
            value = value.numpy()
            scale = max(float(np.abs(value).max()), 1e-30)
            errors[name] = float(np.abs(ours[name] - value).max()) / scale
        worst = max(errors.values())
        worst_overall = max(worst_overall, worst)
        print(f"n={n:3d} m={m:3d} nh={nh:2d}  worst relative error {worst:.2e}  " + " ".join(f"{k}:{v:.1e}" for k, v in errors.items()))
    print(f"worst over all cases: {worst_overall:.2e} (limit 1e-4)")
    sys.exit(0 if worst_overall < 1e-4 else 1)


main()
