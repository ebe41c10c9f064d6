#!/usr/bin/env python3
"""Write the fixtures that check importing ONNX files exported by PyTorch into Backprop models.

PyTorch builds three nn.Sequential models from a fixed seed (every batch norm gets a weight, bias and
running statistics of its own, away from 1, 0, 0 and 1), puts them in evaluation mode and exports
them with `torch.onnx.export`, opset 20 (so that nn.GELU is a single `Gelu` node), input named
"input", output named "output", once per exporter setting below. ONNX Runtime (CPUExecutionProvider)
then computes each file's output on fixed inputs, and PyTorch computes, in float64 from exactly the
stored float32 weights, the logits the imported Backprop model should give (the model's output before
a final LogSoftmax/Softmax, which the importer drops since Backprop's cross-entropy applies it). The
script fails when an export fails, when a file does not pass `onnx.checker.check_model(full_check=True)`,
or when ONNX Runtime and PyTorch differ by more than 1e-5. Run once where torch, onnx, onnxscript and
onnxruntime are installed (CI does not have them; the files are committed):

    python3 Tests/BackpropTests/Fixtures/make_onnx_import_fixtures.py

Models
------
mlp           make_pytorch_fixtures.py's mlp(), input [n, 16] -> output [n, 10] (no final softmax: its output is its logits)
convnet       CONVNET below, input [n, 1, 16, 16] -> [4, 16, 16] conv pad 1 -> [4, 8, 8] maxpool 2
              -> [6, 4, 4] conv stride 2 pad 1 -> [6, 2, 2] avgpool 2 -> flatten 24 -> lin 12
              -> lin 10 -> LogSoftmax -> output [n, 10].  (16x16 rather than 8x8 images, so that the
              average pool still sees 2x2 and the flatten orders channels, rows and columns.)
softmax_head  SOFTMAX_HEAD below, input [n, 1, 8, 8] -> flatten 64 -> lin 10 -> Softmax -> [n, 10]
bnnet         BNNET below, input [n, 1, 8, 8] -> [4, 8, 8] conv pad 1 -> BatchNorm2d(eps=1e-3, momentum=0.01)
              -> [4, 4, 4] maxpool 2 -> flatten 64 -> lin 12 nobias -> BatchNorm1d(eps=0.01, momentum=0.3) -> lin 10
              (PyTorch's other batch norm settings, as models ported from Keras have them)
viewnet       ViewNet below (an nn.Module, not an nn.Sequential), input [n, 1, 12, 12] -> [4, 12, 12] conv
              pad 1 -> [4, 6, 6] max pool 2 -> [6, 4, 4] conv -> [6, 1, 1] AdaptiveAvgPool2d(1)
              -> x.view(x.size(0), -1) 6 -> lin 10 nobias

Files
-----
onnx_import_mlp_legacy.onnx           mlp, TorchScript exporter (dynamo=False), batch dim "batch"
onnx_import_mlp_dynamo.onnx           mlp, torch.export exporter (dynamo=True), batch Dim "batch"
onnx_import_convnet_folded.onnx       convnet, TorchScript exporter, constant folding on (default):
                                      the batch norms after the convolutions are folded into them
onnx_import_convnet_unfolded.onnx     convnet, TorchScript exporter, do_constant_folding=False:
                                      every batch norm stays a BatchNormalization node
onnx_import_convnet_dynamo.onnx       convnet, torch.export exporter, batch Dim "batch" (its
                                      optimizer fuses every batch norm into the Conv/Gemm before it;
                                      nn.Flatten becomes a Reshape to the initializer [-1, 24])
onnx_import_convnet_fixed_batch.onnx  convnet, torch.export exporter, no dynamic dim: input [3, 1, 16, 16],
                                      the Reshape's shape is [3, 24]
onnx_import_softmax_head.onnx         softmax_head, TorchScript exporter, batch dim "batch"
onnx_import_viewnet_legacy.onnx       viewnet, TorchScript exporter: GlobalAveragePool, and the view as
                                      Shape, Gather, Unsqueeze, Concat (with Constant nodes), Reshape
onnx_import_viewnet_dynamo.onnx       viewnet, torch.export exporter: ReduceMean over axes [2, 3] (or
                                      [-2, -1]), the view a Reshape to a constant
onnx_import_viewnet_unfolded.onnx     viewnet, TorchScript exporter, do_constant_folding=False: the
                                      Linear without bias as Transpose(weight) and MatMul, the view's -1
                                      through an Unsqueeze of a Constant
onnx_import_convnet_unoptimized.onnx  convnet, torch.export exporter, optimize=False: batch norms kept,
                                      the bias-free conv's zero bias built by Shape, Expand and CastLike
                                      of constants, flatten a Reshape to a Concat of computed sizes
onnx_import_bnnet_unfolded.onnx       bnnet, TorchScript exporter, do_constant_folding=False: epsilon and
                                      momentum (ONNX's, 1 - PyTorch's) attributes on each BatchNormalization
onnx_import_bnnet_unoptimized.onnx    bnnet, torch.export exporter, optimize=False
onnx_import_mlp_external.onnx         mlp, torch.export exporter with external_data=True (its default):
    (+ onnx_import_mlp_external.onnx.data)  the weights in the .data file beside it, by location,
                                      offset and length
    Every other file holds its weights (external_data=False); each is what torch wrote, without the exporter's
    debugging notes (metadata_props and value_info, see strip_debug_metadata). In evaluation
    mode both exporters drop nn.Dropout, so no file has a Dropout node.

onnx_import_io.safetensors
    Tensors (F32):
        mlp.x (5, 16), mlp.logits (5, 10)
        convnet.x (3, 1, 16, 16), convnet.logits (3, 10)
        softmax_head.x (3, 1, 8, 8), softmax_head.logits (3, 10)
        viewnet.x (3, 1, 12, 12), viewnet.logits (3, 10)
        FILE.output (n, 10) for each file above (FILE = its name without .onnx): ONNX Runtime's
            output for KEY.x, KEY the file's model (so log-probabilities for the convnet files,
            probabilities for the softmax head).
    KEY.x are standard normal draws (numpy seed 14); KEY.logits come from PyTorch in float64.
    __metadata__, for each FILE:
        FILE.model      mlp, convnet, softmax_head, bnnet or viewnet
        FILE.operators  the graph's node op_types in order, separated by ", "
        FILE.layers     the Backprop model description the importer should produce for the file,
                        derived from the graph's nodes by `layers` below; entries separated by ", ":
                        conv OUT K [stride S] [pad P] [nobias], maxpool K [stride S] [pad P],
                        avgpool K [stride S] [pad P] [excludepad] (excludepad where the padding is left out of
                        the mean: count_include_pad 0),
                        flatten, lin OUT [nobias], relu, tanh, sigmoid, leakyrelu SLOPE, gelu, dropout P,
                        batchnorm [eps E] [momentum M] (E and M the PyTorch module's own eps and momentum,
                        written where they differ from 1e-5 and 0.1; the script checks that the node's
                        epsilon is E and its momentum 1 - M, in float32); nothing for Identity/Constant
                        nodes or a final LogSoftmax/Softmax.

Pads (written by `--pads-only` alone, or after everything else; from seeds of their own, the same either way)
----
Forms of padding the TorchScript exporter writes for models Backprop reads, each file with its weights:

padnet        PADNET below, input [n, 1, 8, 8] -> [4, 8, 8] conv 3 padding='same' -> [4, 4, 4] avgpool 2
              -> [6, 4, 4] conv 5 padding='same' -> flatten 96 -> lin 10
zeropadnet    ZEROPADNET below, input [n, 1, 8, 8] -> nn.ZeroPad2d(0) -> [4, 6, 6] conv 3 -> [4, 3, 3] avgpool 2
              -> flatten 36 -> lin 10
poolpadnet    POOLPADNET below, input [n, 1, 8, 8] -> [4, 8, 8] conv 3 padding 1 -> [4, 4, 4] maxpool 3 stride 2
              padding 1 -> [4, 4, 4] avgpool 3 stride 1 padding 1 (count_include_pad) -> flatten 64 -> lin 10
poolexcludenet POOLEXCLUDENET below, input [n, 1, 8, 8] -> [4, 8, 8] conv 3 padding 1 -> [4, 8, 8] avgpool 3
              stride 1 padding 1 count_include_pad=False -> [4, 5, 5] avgpool 2 stride 2 padding 1
              count_include_pad=False (corner windows of one element) -> flatten 100 -> lin 10
zeropad1      nn.ZeroPad2d(1), nn.Conv2d(1, 2, 3), nn.Flatten(): [n, 1, 8, 8] -> [n, 128]
silunet       SILUNET below, input [n, 1, 8, 8] -> [2, 8, 8] conv 3 padding 1 -> nn.SiLU -> flatten 128 -> lin 10
              -> torch.sigmoid(x) * x -> lin 10
clipnet       CLIPNET below, input [n, 1, 8, 8] -> [2, 8, 8] conv 3 padding 1 -> nn.ReLU6 -> flatten 128
              -> lin 10 -> nn.Hardtanh(-2, 3) -> lin 10 -> torch.clamp(x, min=0) -> lin 10
geluerfnet    GELUERFNET below, input [n, 1, 8, 8] -> [2, 6, 6] conv 3 -> gelu -> flatten 72 -> lin 10 -> gelu
              -> lin 10
adaptivemaxnet ADAPTIVEMAXNET below, input [n, 1, 8, 8] -> [3, 8, 8] conv 3 padding 1 -> relu
              -> AdaptiveMaxPool2d(1) -> flatten 3 -> lin 10
zeropadconvnet ZEROPADCONVNET below, input [n, 1, 8, 8] -> nn.ZeroPad2d(1) -> [4, 10, 10] conv 3 padding 1
              -> relu -> nn.ZeroPad2d(1) twice -> [6, 6, 6] conv 3 stride 2 -> [6, 4, 4] avgpool 2 stride 2
              padding 1 (count_include_pad) -> flatten 96 -> lin 10

onnx_import_padnet_opset9.onnx         padnet, opset 9: each Conv auto_pad SAME_UPPER (no pads), and a Pad of
                                       zeros (pads an attribute) before the AveragePool
onnx_import_padnet_same.onnx           padnet, opset 20: auto_pad SAME_UPPER, no Pad
onnx_import_zeropadnet_opset11.onnx    zeropadnet, opset 11: a Pad of zeros whose pads are computed from
                                       Constant nodes (ConstantOfShape, Concat, Reshape, Slice, Transpose,
                                       Reshape, Cast), its constant_value a Constant
onnx_import_poolpadnet.onnx            poolpadnet, opset 20: MaxPool and AveragePool with pads [1, 1, 1, 1],
                                       the AveragePool's count_include_pad 1
onnx_import_poolexcludenet.onnx        poolexcludenet, opset 20: two AveragePools with pads [1, 1, 1, 1] and
                                       count_include_pad 0
onnx_import_zeropad1_opset11.onnx      zeropad1, opset 11: a Pad of [0, 0, 1, 1, 0, 0, 1, 1], computed as
                                       above, before a Conv without pads
onnx_import_zeropadconvnet_opset9.onnx zeropadconvnet, opset 9: Pads with pads attributes before each Conv
                                       (one after two) and before the AveragePool (its padding counted)
onnx_import_zeropadconvnet_opset11.onnx zeropadconvnet, opset 11: the Pads' pads computed; the
                                       AveragePool's own pads [1, 1, 1, 1] with count_include_pad 1
onnx_import_zeropadconvnet_unfolded.onnx zeropadconvnet, opset 11, do_constant_folding=False: the pads'
                                       arithmetic also with Mul and Sub of constants
onnx_import_geluerfnet_opset17.onnx    geluerfnet, opset 17: each GELU as Div, Erf, Add, Mul (x), Mul (0.5)
onnx_import_geluerfnet_dynamo18.onnx   geluerfnet by the dynamo exporter, opset 18: Mul (0.5) before Mul (x)
onnx_import_adaptivemaxnet_dynamo.onnx adaptivemaxnet by the dynamo exporter, opset 18: ReduceMax over [-2, -1]
onnx_import_silunet_opset17.onnx       silunet, opset 17: Sigmoid, Mul(x, sigmoid), then Sigmoid, Mul(sigmoid, x)
onnx_import_silunet_dynamo18.onnx      silunet by the dynamo exporter, opset 18: the same
onnx_import_clipnet_opset9.onnx        clipnet, opset 9: each Clip's bounds as attributes (min alone for the clamp)
onnx_import_clipnet_opset17.onnx       clipnet, opset 17: the bounds as Constant nodes' outputs
onnx_import_clipnet_dynamo18.onnx      clipnet by the dynamo exporter, opset 18: the bounds as initializers, and
                                       the clamp as Max(x, 0)
and three files that Backprop refuses (no outputs stored):
onnx_import_pad_refused_same_even.onnx nn.Conv2d(1, 2, 4, padding='same'), nn.Flatten(), opset 20: auto_pad
                                       SAME_UPPER with an even kernel, pads [1, 1, 2, 2] on the 8x8 input
onnx_import_pad_refused_maxpool.onnx   nn.ZeroPad2d(1), nn.MaxPool2d(2), nn.Flatten(), opset 11: zeros that a
                                       max pool's padding (-inf) is not
onnx_import_pad_refused_asymmetric.onnx nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(1, 2, 3), nn.Flatten(),
                                       opset 11: pads on the left and top only

onnx_import_pad_io.safetensors
    As onnx_import_io.safetensors, for padnet, zeropadnet, poolpadnet, poolexcludenet, zeropad1,
    zeropadconvnet, geluerfnet, adaptivemaxnet, silunet and clipnet (KEY.x (3, 1, 8, 8), numpy seed 15;
    KEY.logits (3, 10), zeropad1's (3, 128)) and the seventeen files they read from (FILE.output; FILE.model, FILE.operators,
    FILE.layers), with FILE.model and FILE.operators for the three refused files.
"""

import argparse
import copy
import math
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import numpy_helper
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import write_safetensors  # noqa: E402
from make_pytorch_fixtures import mlp  # noqa: E402  (the same MLP as the state_dict fixtures')

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 20
TOLERANCE = 1e-5
BATCH_AXES = {"input": {0: "batch"}, "output": {0: "batch"}}


def convnet():
    """The convnet, for images [1, 16, 16]."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # [4, 16, 16]
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),  # [4, 8, 8]
        nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),  # [6, 4, 4]
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AvgPool2d(2),  # [6, 2, 2]
        nn.Flatten(),  # [24]
        nn.Dropout(0.25),
        nn.Linear(6 * 2 * 2, 12),
        nn.BatchNorm1d(12),
        nn.ReLU(),
        nn.Linear(12, 10),
        nn.LogSoftmax(dim=1),
    )


def bnnet():
    """Batch norms with eps and momentum of their own, for images [1, 8, 8]."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # [4, 8, 8]
        nn.BatchNorm2d(4, eps=1e-3, momentum=0.01),
        nn.ReLU(),
        nn.MaxPool2d(2),  # [4, 4, 4]
        nn.Flatten(),  # [64]
        nn.Linear(64, 12, bias=False),  # (the batch norm after it shifts: a bias would add nothing)
        nn.BatchNorm1d(12, eps=0.01, momentum=0.3),
        nn.ReLU(),
        nn.Linear(12, 10),
    )


def softmax_head():
    """flatten, lin 10, then Softmax; for images [1, 8, 8]."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Softmax(dim=1))


class ViewNet(nn.Module):
    """The idioms of PyTorch's tutorials outside an nn.Sequential, for images [1, 12, 12]:
    nn.AdaptiveAvgPool2d(1) (GlobalAveragePool, or ReduceMean over h and w) and
    x.view(x.size(0), -1) (Shape, Gather, Unsqueeze, Concat and Reshape from the TorchScript exporter)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)  # [4, 12, 12], then max pool 2: [4, 6, 6]
        self.conv2 = nn.Conv2d(4, 6, 3)  # [6, 4, 4]
        self.pool = nn.AdaptiveAvgPool2d(1)  # [6, 1, 1]
        self.fc = nn.Linear(6, 10, bias=False)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(x.view(x.size(0), -1))


def padnet():
    """Convolutions with padding='same' and an average pool (a Pad of zeros at opset 9), images [1, 8, 8]."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding="same"),  # [4, 8, 8]
        nn.ReLU(),
        nn.AvgPool2d(2),  # [4, 4, 4]
        nn.Conv2d(4, 6, 5, padding="same"),  # [6, 4, 4]
        nn.ReLU(),
        nn.Flatten(),  # [96]
        nn.Linear(96, 10),
    )


def zeropadnet():
    """nn.ZeroPad2d(0) (a Pad of zeros) before a convolution, images [1, 8, 8]."""
    return nn.Sequential(
        nn.ZeroPad2d(0),
        nn.Conv2d(1, 4, 3),  # [4, 6, 6]
        nn.ReLU(),
        nn.AvgPool2d(2),  # [4, 3, 3]
        nn.Flatten(),  # [36]
        nn.Linear(36, 10),
    )


def poolpadnet():
    """Pools with padding, images [1, 8, 8]: ResNet's stem pool (its padding never the maximum, the
    convolution's outputs negative in places) and an average over its padding's zeros."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # [4, 8, 8]
        nn.MaxPool2d(3, stride=2, padding=1),  # [4, 4, 4]
        nn.AvgPool2d(3, stride=1, padding=1),  # [4, 4, 4]
        nn.Flatten(),  # [64]
        nn.Linear(64, 10),
    )


def poolexcludenet():
    """Average pools that leave their padding out of each mean (count_include_pad=False), images
    [1, 8, 8]: edge and corner windows divided by the elements they cover (down to one)."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # [4, 8, 8]
        nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),  # [4, 8, 8]
        nn.AvgPool2d(2, stride=2, padding=1, count_include_pad=False),  # [4, 5, 5]
        nn.Flatten(),  # [100]
        nn.Linear(100, 10),
    )


def zeropad1():
    """A Pad that pads, before a convolution that does not (read as the convolution's padding)."""
    return nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(1, 2, 3), nn.Flatten())


def same_even():
    """padding='same' with an even kernel, which pads one side more (refused)."""
    return nn.Sequential(nn.Conv2d(1, 2, 4, padding="same"), nn.Flatten())


def zeropadconvnet():
    """Pads of zeros folded into what follows, images [1, 8, 8]: nn.ZeroPad2d before a padded
    convolution, two in a row before another, and nn.AvgPool2d's counted padding (at opset 9 a Pad)."""
    return nn.Sequential(
        nn.ZeroPad2d(1),  # [1, 10, 10]
        nn.Conv2d(1, 4, 3, padding=1),  # [4, 10, 10]
        nn.ReLU(),
        nn.ZeroPad2d(1),
        nn.ZeroPad2d(1),  # [4, 14, 14]
        nn.Conv2d(4, 6, 3, stride=2),  # [6, 6, 6]
        nn.AvgPool2d(2, stride=2, padding=1),  # [6, 4, 4]
        nn.Flatten(),
        nn.Linear(96, 10),
    )


def geluerfnet():
    """nn.GELU below opset 20, which both exporters write as Div, Erf, Add, Mul, Mul, images [1, 8, 8]."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 3),  # [2, 6, 6]
        nn.GELU(),
        nn.Flatten(),
        nn.Linear(72, 10),
        nn.GELU(),
        nn.Linear(10, 10),
    )


def adaptivemaxnet():
    """nn.AdaptiveMaxPool2d(1), which the dynamo exporter writes as ReduceMax, images [1, 8, 8]."""
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(3, 10))


class SigmoidTimesX(nn.Module):
    """SiLU written by hand with the sigmoid first, `torch.sigmoid(x) * x`: Mul(sigmoid, x)."""

    def forward(self, x):
        return torch.sigmoid(x) * x


def silunet():
    """nn.SiLU and SiLU by hand, which both exporters write as Sigmoid and Mul, images [1, 8, 8]."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),  # [2, 8, 8]
        nn.SiLU(),
        nn.Flatten(),
        nn.Linear(128, 10),
        SigmoidTimesX(),
        nn.Linear(10, 10),
    )


class ClampAtZero(nn.Module):
    """`torch.clamp(x, min=0)`: a Clip with a lower bound alone, which is a ReLU."""

    def forward(self, x):
        return torch.clamp(x, min=0)


def clipnet():
    """nn.ReLU6, nn.Hardtanh(-2, 3) and torch.clamp(x, min=0), which exporters write as Clip, images [1, 8, 8]."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),  # [2, 8, 8]
        nn.ReLU6(),
        nn.Flatten(),
        nn.Linear(128, 10),
        nn.Hardtanh(-2.0, 3.0),
        nn.Linear(10, 10),
        ClampAtZero(),
        nn.Linear(10, 10),
    )


def zeropad_maxpool():
    """A Pad of zeros before a max pool, which pads with -inf (refused)."""
    return nn.Sequential(nn.ZeroPad2d(1), nn.MaxPool2d(2), nn.Flatten())


def zeropad_asymmetric():
    """A Pad of zeros on two sides only (refused)."""
    return nn.Sequential(nn.ZeroPad2d((1, 0, 1, 0)), nn.Conv2d(1, 2, 3), nn.Flatten())


# key: (builder, input shape)
PAD_MODELS = {
    "padnet": (padnet, (3, 1, 8, 8)),
    "zeropadnet": (zeropadnet, (3, 1, 8, 8)),
    "zeropad1": (zeropad1, (3, 1, 8, 8)),
    "same_even": (same_even, (3, 1, 8, 8)),
    "poolpadnet": (poolpadnet, (3, 1, 8, 8)),
    "poolexcludenet": (poolexcludenet, (3, 1, 8, 8)),
    # new ones last: the others' weights and inputs stay as they were
    "zeropadconvnet": (zeropadconvnet, (3, 1, 8, 8)),
    "zeropad_maxpool": (zeropad_maxpool, (3, 1, 8, 8)),
    "zeropad_asymmetric": (zeropad_asymmetric, (3, 1, 8, 8)),
    "geluerfnet": (geluerfnet, (3, 1, 8, 8)),
    "adaptivemaxnet": (adaptivemaxnet, (3, 1, 8, 8)),
    "silunet": (silunet, (3, 1, 8, 8)),
    "clipnet": (clipnet, (3, 1, 8, 8)),
}

# (file name without .onnx, model key, opset); all by the TorchScript exporter, batch dim "batch"
PAD_EXPORTS = [
    ("onnx_import_padnet_opset9", "padnet", 9),
    ("onnx_import_padnet_same", "padnet", 20),
    ("onnx_import_zeropadnet_opset11", "zeropadnet", 11),
    ("onnx_import_poolpadnet", "poolpadnet", 20),
    ("onnx_import_poolexcludenet", "poolexcludenet", 20),
    ("onnx_import_zeropad1_opset11", "zeropad1", 11),
    ("onnx_import_zeropadconvnet_opset9", "zeropadconvnet", 9),
    ("onnx_import_zeropadconvnet_opset11", "zeropadconvnet", 11),
    ("onnx_import_zeropadconvnet_unfolded", "zeropadconvnet", 11, "legacy_unfolded"),
    ("onnx_import_geluerfnet_opset17", "geluerfnet", 17),
    ("onnx_import_geluerfnet_dynamo18", "geluerfnet", 18, "dynamo"),
    ("onnx_import_adaptivemaxnet_dynamo", "adaptivemaxnet", 18, "dynamo"),
    ("onnx_import_silunet_opset17", "silunet", 17),
    ("onnx_import_silunet_dynamo18", "silunet", 18, "dynamo"),
    ("onnx_import_clipnet_opset9", "clipnet", 9),
    ("onnx_import_clipnet_opset17", "clipnet", 17),
    ("onnx_import_clipnet_dynamo18", "clipnet", 18, "dynamo"),
]
PAD_REFUSED = [
    ("onnx_import_pad_refused_same_even", "same_even", 20),
    ("onnx_import_pad_refused_maxpool", "zeropad_maxpool", 11),
    ("onnx_import_pad_refused_asymmetric", "zeropad_asymmetric", 11),
]

# key: (builder, input shape)
MODELS = {
    "mlp": (mlp, (5, 16)),
    "convnet": (convnet, (3, 1, 16, 16)),
    "softmax_head": (softmax_head, (3, 1, 8, 8)),
    "viewnet": (ViewNet, (3, 1, 12, 12)),
    "bnnet": (bnnet, (3, 1, 8, 8)),
}

# (file name without .onnx, model key, exporter setting)
EXPORTS = [
    ("onnx_import_mlp_legacy", "mlp", "legacy"),
    ("onnx_import_mlp_dynamo", "mlp", "dynamo"),
    ("onnx_import_mlp_external", "mlp", "dynamo_external"),
    ("onnx_import_convnet_folded", "convnet", "legacy"),
    ("onnx_import_convnet_unfolded", "convnet", "legacy_unfolded"),
    ("onnx_import_convnet_dynamo", "convnet", "dynamo"),
    ("onnx_import_convnet_fixed_batch", "convnet", "dynamo_fixed_batch"),
    ("onnx_import_softmax_head", "softmax_head", "legacy"),
    ("onnx_import_viewnet_legacy", "viewnet", "legacy"),
    ("onnx_import_viewnet_dynamo", "viewnet", "dynamo"),
    ("onnx_import_viewnet_unfolded", "viewnet", "legacy_unfolded"),
    ("onnx_import_convnet_unoptimized", "convnet", "dynamo_unoptimized"),
    ("onnx_import_bnnet_unfolded", "bnnet", "legacy_unfolded"),
    ("onnx_import_bnnet_unoptimized", "bnnet", "dynamo_unoptimized"),
]


def give_batch_norms_statistics(model, generator):
    """Batch norms with weights, biases and running statistics away from 1, 0, 0 and 1."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = module.num_features
                module.weight.copy_(1 + 0.3 * torch.randn(c, generator=generator))
                module.bias.copy_(0.2 * torch.randn(c, generator=generator))
                module.running_mean.copy_(0.3 * torch.randn(c, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                module.num_batches_tracked.fill_(7)


def strip_debug_metadata(onnx_model):
    """Drops the exporter's debugging notes (the dynamo exporter's metadata_props hold stack traces
    with the writing machine's paths, most of each file); the graph and its tensors stay as written."""
    graph = onnx_model.graph
    for item in list(graph.node) + list(graph.input) + list(graph.output) + list(graph.value_info) + list(
        graph.initializer
    ):
        del item.metadata_props[:]
    del graph.value_info[:]


def export(model, x, path, setting, opset=OPSET):
    """Exports `model` (in eval mode) for the example input `x` to `path`; raises when anything fails."""
    for stale in (path, path + ".data"):
        if os.path.exists(stale):
            os.remove(stale)
    common = dict(opset_version=opset, input_names=["input"], output_names=["output"], verbose=False)
    example = (torch.from_numpy(x),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "You are using the legacy ... exporter"
        if setting == "legacy":
            torch.onnx.export(model, example, path, dynamo=False, dynamic_axes=BATCH_AXES, **common)
        elif setting == "legacy_unfolded":
            torch.onnx.export(
                model, example, path, dynamo=False, dynamic_axes=BATCH_AXES, do_constant_folding=False, **common)
        elif setting == "dynamo":
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                model, example, path, dynamo=True, external_data=False, dynamic_shapes=({0: batch},), **common)
        elif setting == "dynamo_external":
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                model, example, path, dynamo=True, external_data=True, dynamic_shapes=({0: batch},), **common)
        elif setting == "dynamo_unoptimized":
            batch = torch.export.Dim("batch")
            torch.onnx.export(
                model, example, path, dynamo=True, external_data=False, optimize=False, dynamic_shapes=({0: batch},),
                **common)
        elif setting == "dynamo_fixed_batch":
            torch.onnx.export(model, example, path, dynamo=True, external_data=False, **common)
        else:
            raise ValueError(f"unknown export setting {setting}")
    if not os.path.exists(path):
        raise RuntimeError(f"torch.onnx.export wrote no {path}")
    if os.path.exists(path + ".data") != (setting == "dynamo_external"):
        raise RuntimeError(f"torch.onnx.export wrote {path}.data for {setting}, or did not")
    onnx_model = onnx.load(path, load_external_data=False)  # external tensors stay where they are
    strip_debug_metadata(onnx_model)
    onnx.save_model(onnx_model, path)
    onnx.checker.check_model(onnx_model, full_check=True)
    opsets = {entry.domain: entry.version for entry in onnx_model.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != opset:
        raise RuntimeError(f"{path} has opsets {opsets}, not {opset}")
    return onnx_model


def short(value):
    """A float32 attribute the short way: 0.2, not 0.20000000298023224."""
    return str(np.float32(value))


def batch_norm_entry(node, attributes, module):
    """`batchnorm [eps E] [momentum M]` from the PyTorch module behind a BatchNormalization node, after
    checking that the node carries its settings (ONNX's momentum weighs the running statistics: 1 - M)."""
    if np.float32(attributes.get("epsilon", 1e-5)) != np.float32(module.eps):
        raise ValueError(f"{node.name}: epsilon {attributes.get('epsilon')} is not the module's {module.eps}")
    if np.float32(attributes.get("momentum", 0.9)) != np.float32(1 - module.momentum):
        raise ValueError(f"{node.name}: momentum {attributes.get('momentum')} is not 1 - {module.momentum}")
    entry = "batchnorm"
    entry += f" eps {module.eps!r}" if module.eps != 1e-5 else ""
    entry += f" momentum {module.momentum!r}" if module.momentum != 0.1 else ""
    return entry


def computed(model, name, x):
    """The value `name` that the ONNX `model` computes for the input `x`, by ONNX Runtime (made a graph output)."""
    probe = copy.deepcopy(model)
    probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([name], {"input": x})[0]


def same_pads(auto_pad, size, kernel, stride):
    """ONNX's auto_pad SAME_UPPER / SAME_LOWER along one axis of `size`: (begin, end)."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if auto_pad == "SAME_UPPER" else (large, small)


def layers(model, norms, x=None):
    """The Backprop description of the ONNX `model`'s graph, node by node; raises on anything unmapped.
    `norms` are the PyTorch model's batch norms in order: each BatchNormalization node is the next one
    (a graph that folded some has fewer nodes; then every module must have the default settings).
    `x`, the input, lets ONNX Runtime compute a Pad's pads when the graph computes them."""
    nodes = [node for node in model.graph.node if node.op_type == "BatchNormalization"]
    if len(nodes) != len(norms) and any(norm.eps != 1e-5 or norm.momentum != 0.1 for norm in norms):
        raise ValueError("batch norms with settings of their own were folded: export them unfolded")
    norms = list(norms) if len(nodes) == len(norms) else [nn.BatchNorm1d(1)] * len(nodes)
    graph = onnx.shape_inference.infer_shapes(model).graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    shapes = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
    outputs = {value.name for value in graph.output}
    derived = set()  # values computed from shapes and constants, not from the input's values
    entries = []
    pending = 0  # a Pad of zeros read, by how much it pads each side, for the Conv or AveragePool after it
    gelu = {"step": 0}  # how far into GELU's Div, Erf, Add, Mul, Mul, and the value it reads
    sigmoid = {}  # the last Sigmoid's input and output, for SiLU's Mul of the two

    def gelu_step(node, op):
        """Reads the next node of GELU's Erf form (True), or None when `node` is not it."""
        def scalar(name):
            return float(np.asarray(constants[name]).reshape(-1)[0]) if name in constants and np.size(constants[name]) == 1 else None
        other = [name for name in node.input if name in constants]
        step = gelu["step"]
        if step == 0 and op == "Div" and len(other) == 1 and abs(scalar(other[0]) - math.sqrt(2)) < 1e-6:
            gelu.update(step=1, x=node.input[0], out=node.output[0])
        elif step == 1 and op == "Erf" and node.input[0] == gelu["out"]:
            gelu.update(step=2, out=node.output[0])
        elif step == 2 and op == "Add" and gelu["out"] in node.input and len(other) == 1 and scalar(other[0]) == 1:
            gelu.update(step=3, out=node.output[0])
        elif step in (3, 4) and op == "Mul" and gelu["out"] in node.input:
            operand = [name for name in node.input if name != gelu["out"]][0]
            if operand != gelu["x"] and scalar(operand) != 0.5:
                raise ValueError(f"{node.name}: Mul by {operand} in GELU's form")
            gelu.update(step=step + 1, out=node.output[0])
            if step == 4:
                entries.append("gelu")
                gelu.update(step=0)
        else:
            if step != 0:
                raise ValueError(f"{node.name}: {op} interrupts GELU's form at step {step}")
            return None
        return True

    for node in graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type

        def square(name, default=None):
            values = list(attributes.get(name, default))
            if len(set(values)) != 1:
                raise ValueError(f"{node.name}: {op} {name} {values} is not square")
            return values[0]

        def pads():
            values = list(attributes.get("pads", [0, 0, 0, 0]))
            auto_pad = attributes.get("auto_pad", b"NOTSET")
            auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
            if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                kernel, stride = square("kernel_shape"), square("strides", [1, 1])
                sides = [same_pads(auto_pad, size, kernel, stride) for size in shapes[node.input[0]][2:]]
                values = [begin for begin, _ in sides] + [end for _, end in sides]
            elif auto_pad not in ("NOTSET", "VALID"):
                raise ValueError(f"{node.name}: {op} auto_pad {auto_pad}")
            if len(set(values)) != 1:
                raise ValueError(f"{node.name}: {op} pads {values} are not symmetric")
            return values[0]

        if op in ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Expand", "Cast", "CastLike") or (
            op == "Reshape" and node.input[0] in derived
        ):
            derived.add(node.output[0])  # the arithmetic of x.view(x.size(0), -1)'s target, or of a zero bias
        elif op == "Constant":
            if "value" in attributes:
                constants[node.output[0]] = numpy_helper.to_array(attributes["value"])
            else:  # value_int(s), value_float(s)
                constants[node.output[0]] = np.array(next(iter(attributes.values())))
        elif gelu_step(node, op) is not None:
            pass  # a step of GELU's x · (1 + erf(x / √2)) · 0.5; the last appends "gelu"
        elif op in ("ConstantOfShape", "Slice") or (op == "Transpose" and node.input[0] in derived) or (
                op in ("Add", "Sub", "Mul") and all(name in constants or name in derived for name in node.input)):
            derived.add(node.output[0])  # the arithmetic of a Pad's pads
        elif op == "Pad":
            if "pads" in attributes:
                values = list(attributes["pads"])
            else:
                values = [int(v) for v in computed(model, node.input[1], x)]
            mode = attributes.get("mode", b"constant")
            value = attributes.get("value", 0.0) if "pads" in attributes else (
                float(computed(model, node.input[2], x)) if len(node.input) > 2 and node.input[2] else 0.0)
            if any(values) and (mode not in (b"constant", "constant") or value != 0 or len(values) != 8
                                or any(values[i] for i in (0, 1, 4, 5)) or len(set(values[i] for i in (2, 3, 6, 7))) != 1):
                raise ValueError(f"{node.name}: Pad {values} ({mode}, {value}) is not nn.ZeroPad2d(p)")
            pending += values[2]
        elif op == "Identity":
            if node.input[0] in constants:
                constants[node.output[0]] = constants[node.input[0]]
        elif op == "Gemm":
            weight = constants[node.input[1]]
            if (attributes.get("alpha", 1.0) != 1.0 or attributes.get("beta", 1.0) != 1.0
                    or attributes.get("transA", 0) != 0 or len(node.input) not in (2, 3)):
                raise ValueError(f"{node.name}: Gemm {attributes} is not a Linear")
            entry = f"lin {weight.shape[0] if attributes.get('transB', 0) else weight.shape[1]}"
            entries.append(entry + (" nobias" if len(node.input) < 3 or node.input[2] in ("", *derived) else ""))
        elif op == "Conv":
            weight = constants[node.input[1]]
            if attributes.get("group", 1) != 1 or set(attributes.get("dilations", [1, 1])) != {1}:
                raise ValueError(f"{node.name}: Conv {attributes} is grouped or dilated")
            kernel = square("kernel_shape", weight.shape[2:])
            stride, pad = square("strides", [1, 1]), pads() + pending
            pending = 0
            entry = f"conv {weight.shape[0]} {kernel}"
            entry += f" stride {stride}" if stride != 1 else ""
            entry += f" pad {pad}" if pad != 0 else ""
            # A bias the graph computes (a zero filled to [out] by Expand) is no parameter: the module had none.
            entry += " nobias" if len(node.input) < 3 or node.input[2] in ("", *derived) else ""
            entries.append(entry)
        elif op in ("MaxPool", "AveragePool"):
            if attributes.get("ceil_mode", 0) != 0 or set(attributes.get("dilations", [1, 1])) != {1}:
                raise ValueError(f"{node.name}: {op} {attributes} is not a plain pool")
            kernel, stride, pad = square("kernel_shape"), square("strides", [1, 1]), pads()
            excludes = pad and op == "AveragePool" and attributes.get("count_include_pad", 0) != 1
            if pending and (op == "MaxPool" or excludes):
                raise ValueError(f"{node.name}: {op} (pads {pad}, excluded {excludes}) after a Pad of zeros")
            pad, pending = pad + pending, 0
            name = "maxpool" if op == "MaxPool" else "avgpool"
            entries.append(
                f"{name} {kernel}" + (f" stride {stride}" if stride != kernel else "") + (f" pad {pad}" if pad else "")
                + (" excludepad" if excludes else ""))
        elif op == "Flatten":
            if attributes.get("axis", 1) != 1:
                raise ValueError(f"{node.name}: Flatten axis {attributes['axis']}")
            entries.append("flatten")
        elif op == "Reshape" and node.input[1] not in constants:
            if len(shapes[node.output[0]]) != 2:
                raise ValueError(f"{node.name}: Reshape to a computed shape of rank {len(shapes[node.output[0]])}")
            entries.append("flatten")
        elif op == "Reshape":
            target = [int(v) for v in constants[node.input[1]]]
            source = shapes[node.input[0]]
            features = math.prod(source[1:]) if all(isinstance(d, int) for d in source[1:]) else None
            if len(target) != 2 or target[0] not in (-1, source[0]) or target[1] not in (features, -1) \
                    or target == [-1, -1]:
                raise ValueError(f"{node.name}: Reshape {source} to {target} does not flatten")
            entries.append("flatten")
        elif op == "Transpose" and node.input[0] in constants:
            constants[node.output[0]] = constants[node.input[0]].T  # a weight, transposed by an unfolded graph
        elif op == "MatMul":
            entries.append(f"lin {constants[node.input[1]].shape[1]} nobias")  # unless an Add follows
        elif op == "Add" and any(name in constants for name in node.input):
            if not entries[-1].endswith(" nobias"):
                raise ValueError(f"{node.name}: an Add of a constant that follows no MatMul")
            entries[-1] = entries[-1].removesuffix(" nobias")  # the bias after a MatMul
        elif op in ("GlobalAveragePool", "ReduceMean", "GlobalMaxPool", "ReduceMax"):
            source = shapes[node.input[0]]
            axes = attributes.get("axes") or [int(v) for v in constants.get(node.input[1] if len(node.input) > 1 else "", [])]
            reduces = op.startswith("Reduce")
            if len(source) != 4 or source[2] != source[3] or (reduces and sorted(a % 4 for a in axes) != [2, 3]):
                raise ValueError(f"{node.name}: {op} over {source} is not a square global pool")
            entries.append(f"{'maxpool' if 'Max' in op else 'avgpool'} {source[2]}")
            if reduces and attributes.get("keepdims", 1) == 0:
                entries.append("flatten")
        elif op == "Mul" and sigmoid and sorted(node.input) == sorted([sigmoid["x"], sigmoid["out"]]) \
                and entries[-1] == "sigmoid":
            entries[-1] = "silu"  # x · sigmoid(x), the Sigmoid read just before
        elif op in ("Relu", "Tanh", "Sigmoid"):
            entries.append(op.lower())
            if op == "Sigmoid":
                sigmoid.update(x=node.input[0], out=node.output[0])
        elif op == "Gelu":
            if attributes.get("approximate", b"none") not in (b"none", "none"):
                raise ValueError(f"{node.name}: Gelu approximate {attributes['approximate']}")
            entries.append("gelu")
        elif op == "Clip":
            if "min" in attributes or "max" in attributes:  # before opset 11
                low, high = attributes.get("min"), attributes.get("max")
            else:
                given = [name if name else None for name in list(node.input[1:]) + [None, None]][:2]
                low, high = (None if name is None else float(constants[name]) for name in given)
            if low is not None and high is not None and low < high:
                entries.append("relu6" if (low, high) == (0, 6) else "hardtanh" if (low, high) == (-1, 1)
                               else f"hardtanh {short(low)} {short(high)}")
            elif low == 0 and high is None:
                entries.append("relu")
            else:
                raise ValueError(f"{node.name}: Clip to [{low}, {high}]")
        elif op == "Max" and len(node.input) == 2 and node.input[1] in constants \
                and constants[node.input[1]].size == 1 and float(constants[node.input[1]]) == 0:
            entries.append("relu")  # max(x, 0): torch.clamp(x, min=0) by the dynamo exporter
        elif op == "LeakyRelu":
            entries.append(f"leakyrelu {short(attributes.get('alpha', 0.01))}")
        elif op == "Dropout":
            if len(node.input) > 1 and node.input[1] != "":
                ratio = float(constants[node.input[1]])
            else:
                ratio = attributes.get("ratio", 0.5)
            entries.append(f"dropout {short(ratio)}")
        elif op == "BatchNormalization":
            entries.append(batch_norm_entry(node, attributes, norms.pop(0)))
        elif op in ("LogSoftmax", "Softmax"):
            if node.output[0] not in outputs or attributes.get("axis", -1) not in (1, -1):
                raise ValueError(f"{node.name}: {op} is not the final softmax over the classes")
        else:
            raise ValueError(f"{node.name}: no Backprop layer for {op}")
        computes_constants = node.output[0] in derived or node.output[0] in constants
        if pending and op not in ("Pad", "Identity", "Constant", "ConstantOfShape", "Concat", "Reshape", "Slice",
                                  "Transpose", "Cast") and not computes_constants:
            raise ValueError(f"{node.name}: {op} reads a Pad of zeros")
    if pending:
        raise ValueError("a Pad of zeros ends the graph")
    return ", ".join(entries)


def f32(array):
    array = np.ascontiguousarray(array, dtype="<f4")
    return ("F32", array.shape, array.tobytes())


def logits(model, x):
    """The outputs before a final LogSoftmax/Softmax, in float64 from the float32 weights, in eval mode."""
    final = isinstance(model, nn.Sequential) and isinstance(model[-1], (nn.LogSoftmax, nn.Softmax))
    body = model[:-1] if final else model
    reference = body.double().eval()
    with torch.no_grad():
        out = reference(torch.from_numpy(x.astype(np.float64))).numpy()
    model.float()
    return out


def finish(model, z):
    """What the whole model gives for its logits `z` (float64): applies a final LogSoftmax/Softmax."""
    shifted = z - z.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    last = model[-1] if isinstance(model, nn.Sequential) else None
    if isinstance(last, nn.LogSoftmax):
        return log_probabilities
    if isinstance(last, nn.Softmax):
        return np.exp(log_probabilities)
    return z


def write_pads():
    """The fixtures of padding forms (see Pads above), from seeds of their own."""
    torch.manual_seed(15)
    rng = np.random.default_rng(15)
    models, inputs = {}, {}
    for key, (build, shape) in PAD_MODELS.items():
        models[key] = build().eval()
        inputs[key] = rng.standard_normal(shape).astype(np.float32)

    io, metadata = {}, {}
    for key in ("padnet", "zeropadnet", "poolpadnet", "poolexcludenet", "zeropad1", "zeropadconvnet", "geluerfnet",
                "adaptivemaxnet", "silunet", "clipnet"):
        io[f"{key}.x"] = f32(inputs[key])
        io[f"{key}.logits"] = f32(logits(models[key], inputs[key]))
    for name, key, opset, *setting in PAD_EXPORTS + PAD_REFUSED:
        path = os.path.join(HERE, name + ".onnx")
        onnx_model = export(models[key], inputs[key], path, (setting or ["legacy"])[0], opset=opset)
        operators = ", ".join(node.op_type for node in onnx_model.graph.node)
        metadata[f"{name}.model"] = key
        metadata[f"{name}.operators"] = operators
        print(f"{name}.onnx ({os.path.getsize(path)} bytes, opset {opset})\n    operators: {operators}")
        if (name, key, opset, *setting) in PAD_REFUSED:
            continue
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        output = session.run(["output"], {"input": inputs[key]})[0]
        expected = logits(models[key], inputs[key])
        difference = np.abs(output.astype(np.float64) - expected).max()
        if output.dtype != np.float32 or output.shape != expected.shape or not difference <= TOLERANCE:
            raise RuntimeError(f"{name}: ONNX Runtime gives {output.dtype} {list(output.shape)}, "
                               f"{difference:.3g} from PyTorch's {list(expected.shape)} (limit {TOLERANCE:g})")
        io[f"{name}.output"] = f32(output)
        metadata[f"{name}.layers"] = layers(onnx_model, [], inputs[key])
        print(f"    layers:    {metadata[f'{name}.layers']} (ORT vs PyTorch {difference:.2g})")
    write_safetensors(os.path.join(HERE, "onnx_import_pad_io.safetensors"), io, metadata)
    print("wrote onnx_import_pad_io.safetensors")


def main():
    parser = argparse.ArgumentParser(description="Writes the ONNX import fixtures.")
    parser.add_argument("--pads-only", action="store_true", help="write only the fixtures of padding forms")
    if parser.parse_args().pads_only:
        write_pads()
        return
    generator = torch.Generator().manual_seed(14)
    torch.manual_seed(14)
    rng = np.random.default_rng(14)
    models, inputs = {}, {}
    for key, (build, shape) in MODELS.items():
        models[key] = build()
        give_batch_norms_statistics(models[key], generator)
        models[key].eval()
        inputs[key] = rng.standard_normal(shape).astype(np.float32)

    io, metadata = {}, {}
    for key, model in models.items():
        io[f"{key}.x"] = f32(inputs[key])
        io[f"{key}.logits"] = f32(logits(model, inputs[key]))
    for name, key, setting in EXPORTS:
        path = os.path.join(HERE, name + ".onnx")
        onnx_model = export(models[key], inputs[key], path, setting)
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        output = session.run(["output"], {"input": inputs[key]})[0]
        expected = finish(models[key], logits(models[key], inputs[key]))
        difference = np.abs(output.astype(np.float64) - expected).max()
        if output.dtype != np.float32 or output.shape != expected.shape or not difference <= TOLERANCE:
            raise RuntimeError(f"{name}: ONNX Runtime gives {output.dtype} {list(output.shape)}, "
                               f"{difference:.3g} from PyTorch's {list(expected.shape)} (limit {TOLERANCE:g})")
        io[f"{name}.output"] = f32(output)
        operators = ", ".join(node.op_type for node in onnx_model.graph.node)
        norms = [m for m in models[key].modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
        description = layers(onnx_model, norms)
        metadata[f"{name}.model"] = key
        metadata[f"{name}.operators"] = operators
        metadata[f"{name}.layers"] = description
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in onnx_model.graph.input[0].type.tensor_type.shape.dim]
        print(f"{name}.onnx ({os.path.getsize(path)} bytes, ir_version {onnx_model.ir_version}, "
              f"opset {OPSET}, input {dims}, ORT vs PyTorch {difference:.2g})")
        print(f"    operators: {operators}")
        print(f"    layers:    {description}")
    write_safetensors(os.path.join(HERE, "onnx_import_io.safetensors"), io, metadata)
    print("wrote onnx_import_io.safetensors")
    write_pads()


if __name__ == "__main__":
    main()
