#!/usr/bin/env python3
"""Write the fixtures that check reading PyTorch state_dicts (PyTorchInteropTests.swift).

PyTorch builds two nn.Sequential models from a fixed seed, gives their batch norms running
statistics of their own, and saves each state_dict as safetensors, as `safetensors.torch.save_file`
would (written by hand here with `write_safetensors` from make_fixtures.py, so that the
`safetensors` package is not needed). The logits of a few fixed inputs are computed by PyTorch in
float64 from exactly the stored float32 weights, in evaluation mode (dropout off, batch norm on its
running statistics). Run once where torch is installed (CI does not have it; the files are committed):

    python3 Tests/BackpropTests/Fixtures/make_pytorch_fixtures.py

Files
-----
pytorch_mlp.safetensors        the state_dict of MLP below (F32), __metadata__ {"format": "pt"}
pytorch_mlp_f64.safetensors    the same state_dict stored as F64, no metadata
pytorch_convnet.safetensors    the state_dict of CONVNET below (F32; num_batches_tracked as I64
                               scalars, shape []), no metadata
pytorch_io.safetensors         mlp.x (5, 16), mlp.logits (5, 10); convnet.x (3, 1, 8, 8),
                               convnet.logits (3, 10); __metadata__ "mlp.layers" and
                               "convnet.layers": the Backprop model descriptions of the two models

Layouts (what Backprop maps):  nn.Linear weight (out, in), bias (out) unless bias=False; nn.Conv2d weight
(out, in, kh, kw), bias (out); nn.BatchNorm1d/2d weight, bias, running_mean, running_var (c),
num_batches_tracked (); keys "I.NAME", I the index in the nn.Sequential.
"""

import os
import sys

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import write_safetensors  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

MLP_LAYERS = "lin 12, gelu, lin 12, leakyrelu 0.2, lin 8, tanh, lin 8, sigmoid, dropout 0.5, lin 10"
CONVNET_LAYERS = (
    "conv 4 3 pad 1, batchnorm, relu, maxpool 2, conv 6 3 stride 2 pad 1 nobias, batchnorm, relu, "
    "avgpool 2, flatten, dropout 0.25, lin 12 nobias, batchnorm, relu, lin 10"
)


def mlp():
    """The model MLP_LAYERS describes, for inputs of 16."""
    return nn.Sequential(
        nn.Linear(16, 12),
        nn.GELU(),
        nn.Linear(12, 12),
        nn.LeakyReLU(0.2),
        nn.Linear(12, 8),
        nn.Tanh(),
        nn.Linear(8, 8),
        nn.Sigmoid(),
        nn.Dropout(0.5),
        nn.Linear(8, 10),
    )


def convnet():
    """The model CONVNET_LAYERS describes, for images [1, 8, 8]."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # [4, 8, 8]
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),  # [4, 4, 4]
        nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),  # [6, 2, 2]
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AvgPool2d(2),  # [6, 1, 1]
        nn.Flatten(),  # [6]
        nn.Dropout(0.25),
        nn.Linear(6, 12, bias=False),
        nn.BatchNorm1d(12),
        nn.ReLU(),
        nn.Linear(12, 10),
    )


def give_batch_norms_statistics(model, generator):
    """Batch norms with weights, biases and running statistics away from 1, 0, 0 and 1."""
    with torch.no_grad():
        for module in model:
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = module.num_features
                module.weight.copy_(1 + 0.3 * torch.randn(c, generator=generator))
                module.bias.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_mean.copy_(0.3 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                module.num_batches_tracked.fill_(7)


def state_dict_entries(model, dtype):
    """The state_dict as write_safetensors takes it: floats as `dtype` (F32 or F64), longs as I64."""
    entries = {}
    for key, tensor in model.state_dict().items():
        array = tensor.detach().cpu().numpy()
        if array.dtype == np.int64:
            entries[key] = ("I64", array.shape, np.ascontiguousarray(array, dtype="<i8").tobytes())
        elif dtype == "F64":
            entries[key] = ("F64", array.shape, np.ascontiguousarray(array, dtype="<f8").tobytes())
        else:
            entries[key] = ("F32", array.shape, np.ascontiguousarray(array, dtype="<f4").tobytes())
    return entries


def f32(array):
    array = np.ascontiguousarray(array, dtype="<f4")
    return ("F32", array.shape, array.tobytes())


def logits(model, x):
    """The model's outputs for float32 inputs `x`, in float64 from the float32 weights, in eval mode."""
    reference = model.double().eval()
    with torch.no_grad():
        out = reference(torch.from_numpy(x.astype(np.float64))).numpy()
    model.float()
    return out


def main():
    generator = torch.Generator().manual_seed(14)
    torch.manual_seed(14)
    mlp_model = mlp()
    convnet_model = convnet()
    give_batch_norms_statistics(convnet_model, generator)
    # Round every weight to float32 (it is already) and keep those exact values for the logits.
    rng = np.random.default_rng(14)
    mlp_x = rng.standard_normal((5, 16)).astype(np.float32)
    convnet_x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)

    write_safetensors(
        os.path.join(HERE, "pytorch_mlp.safetensors"), state_dict_entries(mlp_model, "F32"), {"format": "pt"})
    write_safetensors(os.path.join(HERE, "pytorch_mlp_f64.safetensors"), state_dict_entries(mlp_model, "F64"))
    write_safetensors(os.path.join(HERE, "pytorch_convnet.safetensors"), state_dict_entries(convnet_model, "F32"))
    io = {
        "mlp.x": f32(mlp_x),
        "mlp.logits": f32(logits(mlp_model, mlp_x)),
        "convnet.x": f32(convnet_x),
        "convnet.logits": f32(logits(convnet_model, convnet_x)),
    }
    write_safetensors(
        os.path.join(HERE, "pytorch_io.safetensors"), io, {"mlp.layers": MLP_LAYERS, "convnet.layers": CONVNET_LAYERS})
    print("wrote pytorch_mlp.safetensors, pytorch_mlp_f64.safetensors, pytorch_convnet.safetensors, "
          "pytorch_io.safetensors")


if __name__ == "__main__":
    main()
