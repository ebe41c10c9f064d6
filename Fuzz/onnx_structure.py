#!/usr/bin/env python3
"""Structure-aware fuzzing of the ONNX import, through the command line.

Takes the ONNX fixtures (Tests/BackpropTests/Fixtures/onnx_import_*.onnx), changes one to three
things in a node of one of them (its operator, an input removed, added or renamed, an attribute
removed, set to an odd value or added, the node removed, its output renamed), writes the model and
runs `backprop export MODEL --format onnx OUT` on it. Every run must end with status 0 or 1 (a
model, or one line `Error: ...`): any other status, or "Fatal error" on stderr, is a crash, and the
file is kept as crash-N.onnx in the output folder. Byte-level mutation (ONNXImportTests and
libFuzzer-style runs) rarely reaches these paths; this does (it found the constant folding's read
past a node's inputs within 3,000 runs).

    python3 Fuzz/onnx_structure.py BACKPROP [--seed S] [--runs N] [--out DIR]

Needs the `onnx` package (pip install onnx). BACKPROP is a built executable, e.g.
.build/release/backprop.
"""

import argparse
import copy
import glob
import math
import os
import random
import subprocess

import onnx
from onnx import helper

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Tests", "BackpropTests", "Fixtures")
OPERATORS = [
    "Gemm", "MatMul", "Add", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Flatten",
    "Reshape", "Dropout", "BatchNormalization", "Relu", "Tanh", "Sigmoid", "Mul", "Clip", "LeakyRelu", "Gelu", "Identity",
    "Constant", "LogSoftmax", "Softmax", "Shape", "Gather", "Squeeze", "Unsqueeze", "Concat", "Cast", "CastLike",
    "Transpose", "Expand", "Div", "Sub",
]


def mutate(model, rng):
    """Changes one to three things in random nodes of `model`, in place."""
    graph = model.graph
    names = [t.name for t in graph.initializer] + [o for n in graph.node for o in n.output]
    names += [i.name for i in graph.input] + ["", "nowhere"]
    for _ in range(rng.randint(1, 3)):
        if not graph.node:
            return
        node = rng.choice(graph.node)
        change = rng.randrange(9)
        if change == 0:
            node.op_type = rng.choice(OPERATORS)
        elif change == 1 and node.input:
            del node.input[rng.randrange(len(node.input))]
        elif change == 2:
            node.input.append(rng.choice(names))
        elif change == 3 and node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice(names)
        elif change == 4 and node.attribute:
            del node.attribute[rng.randrange(len(node.attribute))]
        elif change == 5 and node.attribute:
            attribute = rng.choice(node.attribute)
            if attribute.type == onnx.AttributeProto.INTS:
                attribute.ints[:] = [rng.choice([-3, -1, 0, 1, 2, 3, 7, 1 << 40]) for _ in range(rng.randint(0, 5))]
            elif attribute.type == onnx.AttributeProto.INT:
                attribute.i = rng.choice([-3, -1, 0, 1, 2, 3, 1 << 40])
            elif attribute.type == onnx.AttributeProto.FLOAT:
                attribute.f = rng.choice([0.0, -1.0, 1e-3, math.nan, math.inf, 0.5])
        elif change == 6:
            graph.node.remove(node)
        elif change == 7 and node.output:
            node.output[0] = rng.choice(names)
        elif change == 8:
            node.attribute.append(rng.choice([
                helper.make_attribute("axis", rng.choice([-2, 0, 1, 2, 5])),
                helper.make_attribute("perm", [1, 0]),
                helper.make_attribute("to", rng.choice([1, 6, 7, 10, 11])),
                helper.make_attribute("axes", [rng.choice([-1, 0, 1, 2])]),
                helper.make_attribute("start", -1),
                helper.make_attribute("value_ints", [rng.choice([-1, 0, 3])]),
            ]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("backprop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--out", default=os.path.join(HERE, "..", ".build-fuzz", "onnx-structure"))
    options = parser.parse_args()
    os.makedirs(options.out, exist_ok=True)
    rng = random.Random(options.seed)
    # External data stays beside its fixture: load it into the model, so that each mutant is whole.
    models = [onnx.load(path) for path in sorted(glob.glob(os.path.join(FIXTURES, "onnx_import_*.onnx")))]
    statuses, crashes = {}, 0
    model_path = os.path.join(options.out, "model.onnx")
    for _ in range(options.runs):
        model = copy.deepcopy(rng.choice(models))
        mutate(model, rng)
        with open(model_path, "wb") as file:
            file.write(model.SerializeToString())
        run = subprocess.run(
            [options.backprop, "export", model_path, "--format", "onnx", os.path.join(options.out, "out.onnx")],
            capture_output=True, text=True, timeout=60)
        statuses[run.returncode] = statuses.get(run.returncode, 0) + 1
        if run.returncode not in (0, 1) or "Fatal error" in run.stderr:
            crashes += 1
            os.replace(model_path, os.path.join(options.out, f"crash-{crashes}.onnx"))
            print(f"crash {crashes}: status {run.returncode}: {run.stderr[-400:]}")
    print(f"{options.runs} runs, statuses {dict(sorted(statuses.items()))}, {crashes} crashes")
    raise SystemExit(1 if crashes else 0)


if __name__ == "__main__":
    main()
