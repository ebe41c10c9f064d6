import BackpropCore
import BackpropData
import BackpropNetwork
import Foundation

// The walk along an ONNX graph's chain of nodes, each turned into a layer of a model description
// with its tensors (the table at the top of ONNXImport.swift).

/// One layer read from the graph: its description entry and its tensors in Backprop's layouts.
private struct ReadLayer {
    var entry: ModelDescription.Entry
    /// `w`, `b`, and for batch norm `running_mean`, `running_var`; by name.
    var tensors: [String: Tensor] = [:]
}

/// Reads a `ModelProto`'s graph as a chain of layers (internal to ``ONNXImport``).
struct GraphReader {
    private let proto: Onnx_ModelProto
    private let graph: Onnx_GraphProto
    private let path: String
    /// The version of the default operator set the model imports.
    private let opset: Int
    /// The constant tensors by name: the initializers, then the outputs of `Constant` nodes.
    private var constants: [String: Onnx_TensorProto] = [:]
    /// Reads the constants' values (and the external files that hold some).
    private let tensors: TensorReader
    /// Integer vectors computed from the chain value's shape (`Shape`, `Gather`, `Unsqueeze`,
    /// `Concat`, …), by name: the target of `x.view(x.size(0), -1)` as the exporters write it.
    private var shapeValues: [String: [ShapeValue]] = [:]
    /// Constants that the graph fills with zeros from one value (`Expand`), not parameters: the
    /// bias that `torch.onnx.export(dynamo=True, optimize=False)` writes for a convolution without
    /// one. A convolution that adds such a bias is read as `nobias`, as its module was.
    private var filledZeros: Set<String> = []
    /// One example's shape at each value of the chain read so far, by name: a `Shape` of an
    /// earlier value reads the batch size as well (`y.view(x.size(0), -1)` with `x` the input).
    private var chainShapes: [String: [Int]] = [:]

    /// The largest kernel, stride or padding an attribute may give (far past any real model, and
    /// small enough that no shape arithmetic on it overflows).
    private static let largestAttribute = 1 << 24

    /// The newest operator set version read: far past any ONNX release's.
    static let newestOpset: Int64 = 1000

    init(_ proto: Onnx_ModelProto, path: String) throws {
        self.proto = proto
        self.path = path
        tensors = TensorReader(path: path)
        guard proto.hasGraph, !proto.graph.node.isEmpty else {
            throw DataError(path: path, problem: "is not an ONNX model with a graph: it holds no nodes")
        }
        graph = proto.graph
        let versions = proto.opsetImport.filter { $0.domain.isEmpty || $0.domain == "ai.onnx" }.map(\.version)
        guard let version = versions.max() else {
            throw DataError(path: path, problem: "imports no version of the default ONNX operator set (opset_import)")
        }
        guard version >= 9 else {
            throw DataError(
                path: path,
                problem: "uses ONNX opset \(version); Backprop reads opset 9 or later (ONNXExport writes 20)")
        }
        // No ONNX release defines an operator set near 1000 (ONNXExport writes 20): a larger
        // version is a damaged or hand-made file, and the bound keeps `Int(version)` exact.
        guard version <= GraphReader.newestOpset else {
            throw DataError(
                path: path,
                problem: "uses ONNX opset \(version) (its opset_import for the default domain), which no ONNX release "
                    + "defines; expected an opset from 9 to \(GraphReader.newestOpset) (ONNXExport writes 20)")
        }
        opset = Int(version)
        if let sparse = graph.sparseInitializer.first {
            throw DataError(
                path: path,
                problem: "holds the sparse initializer \(quoted(sparse.values.name)); Backprop reads dense tensors only"
            )
        }
        for initializer in graph.initializer {
            guard constants.updateValue(initializer, forKey: initializer.name) == nil else {
                throw DataError(path: path, problem: "holds two initializers named \(quoted(initializer.name))")
            }
        }
    }

    /// The model the graph describes (see ``ONNXImport/model(fromBytes:path:loss:)``).
    mutating func read(loss: (any Loss)?) throws -> ONNXImportedModel {
        let (input, batch, inputShape) = try graphInput()
        guard graph.output.count == 1 else {
            throw DataError(
                path: path,
                problem:
                    "has \(graph.output.count) outputs (\(graph.output.map { quoted($0.name) }.joined(separator: ", "))); "
                    + "a model has one, its logits")
        }
        let output = graph.output[0].name
        var current = input
        var chain: Set<String> = [input]  // the chain's values so far
        var shape = inputShape  // one example's shape after the layers so far; nil until known
        var layers: [ReadLayer] = []
        var normalizing = NormalizationStep.none
        var dropped: String?
        // A Pad of zeros read, by how much it pads, for the Conv or AveragePool right after it.
        var pendingPad: (padding: Int, at: NodeContext)?
        let nodes = graph.node
        var index = 0
        while index < nodes.count {
            let node = nodes[index]
            let at = NodeContext(node: node, index: index, path: path)
            if let shape { chainShapes[current] = shape }
            if dropped != nil {
                throw at.fail(
                    "follows the graph's final \(dropped!); a LogSoftmax or Softmax is read only as the last node")
            }
            if !node.domain.isEmpty && node.domain != "ai.onnx" {
                throw at.fail(
                    "is an operator of the domain \(quoted(node.domain)); Backprop reads the default ONNX operators only"
                )
            }
            if node.opType == "Constant" {
                try readConstant(node, at)
                index += 1
                continue
            }
            if try readConstantWork(node, at, current: current, shape: shape) {
                index += 1
                continue
            }
            // Before the chain's checks: the GELU's nodes read the chain value twice, either side.
            if let gelu = try readErfGELU(at: index, input: current) {
                if let pad = pendingPad { throw pad.at.fail(Self.unfoldedPad(pad.padding, readBy: at)) }
                if case .centered(let mean) = normalizing { normalizing = .done(mean: mean, std: 1) }
                layers.append(ReadLayer(entry: .gelu))
                chain.insert(gelu.output)
                (current, index) = (gelu.output, gelu.next)
                continue
            }
            // SiLU, x · sigmoid(x): its Mul reads the chain value again.
            if let silu = try readSigmoidSiLU(at: index, input: current) {
                if let pad = pendingPad { throw pad.at.fail(Self.unfoldedPad(pad.padding, readBy: at)) }
                if case .centered(let mean) = normalizing { normalizing = .done(mean: mean, std: 1) }
                layers.append(ReadLayer(entry: .silu))
                chain.formUnion([silu.sigmoid, silu.output])
                (current, index) = (silu.output, silu.next)
                continue
            }
            guard node.input.first == current else {
                let read = node.input.first ?? ""
                if !chain.contains(read), let position = node.input.firstIndex(of: current) {
                    // `Sub(1, x)`: nothing branches, but no layer reads its input as a later operand.
                    throw at.fail(
                        "reads the chain's value \(quoted(current)) as its input \(position + 1) of \(node.input.count), "
                            + "after \(quoted(read)): Backprop reads a node whose first input is the chain's value (as "
                            + "a layer's input), so \(node.opType) of a constant and x has no layer")
                }
                let tanhGELU = writesTanhGELU ? "; " + Self.tanhGELUNote : ""
                let branch =
                    chain.contains(read) || node.input.dropFirst().contains { $0 != current && chain.contains($0) }
                    ? " (the graph branches: an earlier value is read again, as in a residual connection x + f(x) or an "
                        + "activation written as x · f(x) other than SiLU's x · sigmoid(x)\(tanhGELU))" : ""
                throw at.fail(
                    "reads \(quoted(read)) where the chain's value is \(quoted(current))\(branch): Backprop reads a graph "
                        + "that is a chain of layers (an nn.Sequential), each node reading the one before")
            }
            if node.input.dropFirst().contains(where: chain.contains) {
                throw at.fail(
                    "reads an earlier value of the chain again (the graph branches, as in a residual connection x + f(x) "
                        + "or an activation written as x · f(x) other than SiLU's x · sigmoid(x)\(writesTanhGELU ? "; " + Self.tanhGELUNote : "")): "
                        + "Backprop reads a chain of layers")
            }
            guard let next = node.output.first, !next.isEmpty else { throw at.fail("has no output") }
            chain.insert(next)
            if case .centered(let mean) = normalizing, node.opType != "Div" {
                normalizing = .done(mean: mean, std: 1)  // (x - mean), not divided
            }
            if let pad = pendingPad, !["Identity", "Pad", "Conv", "AveragePool"].contains(node.opType) {
                throw pad.at.fail(Self.unfoldedPad(pad.padding, readBy: at))
            }
            let padding = pendingPad?.padding ?? 0
            switch node.opType {
            case "Identity":
                try at.expectInputs(1...1)
            case "Pad":
                let more = try readPad(node, at, shape: padded(shape, by: padding))
                if more > 0 {
                    // nn.ZeroPad2d twice in a row: one padding, their sum.
                    pendingPad = (padding + more, pendingPad?.at ?? at)
                }
            case "Div" where layers.isEmpty, "Sub" where layers.isEmpty:
                normalizing = try readNormalization(node, at, after: normalizing)
            case "Gemm":
                let layer = try readGemm(node, at, shape: &shape, first: layers.isEmpty)
                layers.append(layer)
            case "MatMul":
                var layer = try readMatMul(node, at, shape: &shape, first: layers.isEmpty)
                // An Add of a bias of the product's width right after it, Constant nodes allowed
                // between (torch.onnx.export writes `x @ W + 0.5` as MatMul, Constant, Add), is
                // the layer's bias.
                var add = index + 1
                while add < nodes.count, nodes[add].opType == "Constant" { add += 1 }
                if add < nodes.count, nodes[add].opType == "Add", nodes[add].input.contains(next) {
                    for constant in (index + 1)..<add {
                        try readConstant(
                            nodes[constant], NodeContext(node: nodes[constant], index: constant, path: path))
                    }
                    if let bias = try addedBias(nodes[add], index: add, to: next, width: shape![0]) {
                        layer.entry = .lin(out: bias.count, bias: true)
                        layer.tensors["b"] = bias
                        current = nodes[add].output[0]
                        index = add + 1
                    } else {
                        current = next  // the Add is read next, as any node (the Constants are read)
                        index = add
                    }
                    layers.append(layer)
                    continue
                }
                layers.append(layer)
            case "Conv":
                layers.append(try readConv(node, at, shape: &shape, padded: padding))
                pendingPad = nil
            case "MaxPool", "AveragePool":
                layers.append(try readPool(node, at, shape: &shape, padded: padding))
                pendingPad = nil
            case "GlobalAveragePool", "ReduceMean", "GlobalMaxPool", "ReduceMax":
                let (layer, keepsDimensions) = try readGlobalPool(node, at, shape: &shape)
                layers.append(layer)
                if !keepsDimensions {
                    layers.append(ReadLayer(entry: .flatten))
                    shape = [shape![0]]
                }
            case "Flatten":
                try at.expectInputs(1...1)
                let rank = try known(shape, at).count + 1
                let axis = try at.int("axis", default: 1)
                guard axis == 1 || axis == 1 - rank else {
                    throw at.fail("flattens from axis \(axis); Backprop's flatten keeps the batch axis (axis 1)")
                }
                // A layer even where its input is flat already (the identity): `lin 8, flatten, lin 10`
                // reads back with its layers where they were, so their indices (layers.I) stay.
                layers.append(ReadLayer(entry: .flatten))
                shape = [shape!.reduce(1, *)]
            case "Reshape":
                if try readReshape(node, at, shape: shape, batch: batch) {
                    layers.append(ReadLayer(entry: .flatten))
                    shape = [shape!.reduce(1, *)]
                }
            case "Dropout":
                layers.append(try readDropout(node, at))
            case "Clip":
                layers.append(try readClip(node, at))
            case "Max":
                // `Max(x, 0)`: the dynamo exporter's torch.clamp(x, min=0), a ReLU.
                try at.expectInputs(2...2)
                let bound = try floatInput(at, 1, "other operand")
                guard bound.count == 1, bound.item() == 0 else {
                    let shown = bound.count == 1 ? "\(bound.item())" : "a tensor of shape \(bound.shape)"
                    throw at.fail(
                        "takes the maximum with \(shown); Backprop reads Max only of the chain's value and 0, as relu")
                }
                layers.append(ReadLayer(entry: .relu))
            case "BatchNormalization":
                layers.append(try readBatchNorm(node, at, shape: shape))
            case "Relu", "Tanh", "Sigmoid":
                try at.expectInputs(1...1)
                let entries: [String: ModelDescription.Entry] = ["Relu": .relu, "Tanh": .tanh, "Sigmoid": .sigmoid]
                layers.append(ReadLayer(entry: entries[node.opType]!))
            case "LeakyRelu":
                try at.expectInputs(1...1)
                let slope = try at.float("alpha", default: 0.01)
                guard slope.isFinite else { throw at.fail("has the slope (alpha) \(slope); expected a finite number") }
                layers.append(ReadLayer(entry: .leakyReLU(slope: slope)))
            case "Gelu":
                try at.expectInputs(1...1)
                let approximate = try at.string("approximate", default: "none")
                guard approximate == "none" else {
                    throw at.fail(
                        "approximates GELU (\(quoted(approximate))); Backprop's GELU is the exact one (\"none\")")
                }
                layers.append(ReadLayer(entry: .gelu))
            case "LogSoftmax", "Softmax":
                try at.expectInputs(1...1)
                let rank = try known(shape, at).count + 1
                let axis = try at.int("axis", default: opset >= 13 ? -1 : 1)
                guard rank == 2, axis == 1 || axis == -1 else {
                    throw at.fail(
                        "takes the \(node.opType) over axis \(axis) of [n] + \(shape!); Backprop reads one only over "
                            + "the classes of [n, classes], as the last node")
                }
                dropped = node.opType
            default:
                let hint =
                    writesTanhGELU
                    ? " (" + Self.tanhGELUNote + ")"
                    : nodes.contains { $0.opType == "Erf" }
                        ? " (a GELU written as Erf and arithmetic in another form than x · (1 + erf(x / √2)) · 0.5 in "
                            + "the orders nn.GELU's exporters write, or x · 0.5 · (1 + erf(x / √2)): export with "
                            + "opset_version=20 for one Gelu node)" : ""
                throw at.fail(
                    "is not an operator Backprop reads\(hint); it reads Gemm, MatMul (+ Add), Conv, MaxPool, "
                        + "AveragePool, GlobalAveragePool, GlobalMaxPool, ReduceMean and ReduceMax (over height and "
                        + "width), Flatten, Reshape (as a flatten), Dropout, BatchNormalization, Relu, Tanh, Sigmoid, "
                        + "LeakyRelu, Gelu (or Div, Erf, Add, Mul, Mul as the exact GELU), Sigmoid and Mul as SiLU, Clip, Max (with 0), "
                        + "Identity, "
                        + "Pad (of zeros), "
                        + "Constant, and a final LogSoftmax or Softmax")
            }
            current = next
            index += 1
        }
        guard current == output else {
            throw DataError(
                path: path,
                problem: "ends its chain of nodes at \(quoted(current)), but its output is \(quoted(output))")
        }
        if let pad = pendingPad { throw pad.at.fail(Self.unfoldedPad(pad.padding, readBy: nil)) }
        guard !layers.isEmpty else {
            throw DataError(path: path, problem: "holds no layer Backprop reads (only \(nodes.map(\.opType)))")
        }
        guard let exampleShape = inputShape ?? inferredInputShape(layers) else {
            throw DataError(
                path: path,
                problem:
                    "its input gives no fixed shape per example, and its first layer (\(layers[0].entry)) does not "
                    + "tell it; export with a fixed shape for all but the batch dimension")
        }
        return try build(
            layers, inputShape: exampleShape, loss: loss, normalization: normalizing.normalization, dropped: dropped)
    }

    /// The graph's one input that is not an initializer: its name, its batch size if fixed, and
    /// the shape of one example (`nil` when the graph does not say).
    private func graphInput() throws -> (name: String, batch: Int?, shape: [Int]?) {
        let inputs = graph.input.filter { constants[$0.name] == nil }
        guard inputs.count == 1 else {
            let names = inputs.map { quoted($0.name) }.joined(separator: ", ")
            throw DataError(
                path: path,
                problem: "has \(inputs.count) inputs besides its weights (\(names)); a model has one, its examples")
        }
        let input = inputs[0]
        guard input.type.tensorType.elemType == 1 || !input.type.tensorType.hasElemType else {
            throw DataError(
                path: path,
                problem: "its input \(quoted(input.name)) holds \(dataTypeName(input.type.tensorType.elemType)) "
                    + "values; Backprop models take float32")
        }
        guard input.type.tensorType.hasShape else { return (input.name, nil, nil) }
        let dimensions = input.type.tensorType.shape.dim
        guard dimensions.count >= 2 else {
            throw DataError(
                path: path,
                problem: "its input \(quoted(input.name)) has \(dimensions.count) dimensions; expected [n, features] "
                    + "or [n, channels, height, width]")
        }
        var shape: [Int] = []
        var elements = 1
        for dimension in dimensions.dropFirst() {
            guard case .dimValue(let size)? = dimension.value else { return (input.name, nil, nil) }
            let (product, overflow) = elements.multipliedReportingOverflow(by: Int(clamping: size))
            guard size >= 1, !overflow, product <= Int(Int32.max) else {
                throw DataError(
                    path: path,
                    problem: "its input \(quoted(input.name)) has a dimension of \(size); expected sizes from 1 "
                        + "with at most \(Int32.max) values per example")
            }
            elements = product
            shape.append(Int(size))
        }
        var batch: Int?
        if case .dimValue(let size)? = dimensions[0].value, size >= 1 { batch = Int(clamping: size) }
        return (input.name, batch, shape)
    }

    /// The example shape a graph without one on its input takes: `[nIn]` when it starts with a
    /// fully connected layer.
    private func inferredInputShape(_ layers: [ReadLayer]) -> [Int]? {
        guard case .lin = layers[0].entry, let w = layers[0].tensors["w"] else { return nil }
        return [w.shape[0]]
    }

    /// The model of `layers` with their tensors, in evaluation mode.
    private func build(
        _ layers: [ReadLayer], inputShape: [Int], loss: (any Loss)?, normalization: (mean: Double, std: Double)?,
        dropped: String?
    ) throws -> ONNXImportedModel {
        let description = ModelDescription(entries: layers.map(\.entry))
        let outputs: [Int]
        do {
            outputs = try description.shapes(input: inputShape).last ?? inputShape
        } catch {
            throw DataError(path: path, problem: "its layers '\(description)' do not fit its input: \(error)")
        }
        let loss = loss ?? (outputs == [1] ? Mse() : CrossEntropy())
        var generator = RandomGenerator(seed: 0)
        let model: Model
        do {
            model = try Model(description: description, inputShape: inputShape, loss: loss, generator: &generator)
        } catch {
            throw DataError(path: path, problem: "its layers '\(description)' do not fit its input: \(error)")
        }
        for (layer, read) in zip(model.layers, layers) {
            // The layer's tensors by the names its checkpoints give them (`w`, `b`, `running_mean`, …).
            for (name, destination) in layer.namedParameters + layer.buffers {
                guard let source = read.tensors[name] else { continue }
                precondition(
                    source.shape == destination.shape, "ONNXImport: \(name) \(source.shape) for \(destination.shape)")
                let values = source.contiguous()
                values.withUnsafeBufferPointer { from in
                    destination.withUnsafeMutableBufferPointer { to in
                        for i in from.indices { to[i] = from[i] }
                    }
                }
            }
        }
        model.eval()
        return ONNXImportedModel(
            model: model, description: description, inputShape: inputShape,
            normalization: normalization.map { exactNormalization($0) }, droppedOutputOperator: dropped)
    }

    /// The metadata's `input_mean` and `input_std` (ONNXExport writes them in full) when they
    /// round to the graph's Float constants, else the constants.
    private func exactNormalization(_ read: (mean: Double, std: Double)) -> (mean: Double, std: Double) {
        let entries = Dictionary(
            proto.metadataProps.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        if let mean = entries["input_mean"].flatMap(Double.init), let std = entries["input_std"].flatMap(Double.init),
            Float(mean) == Float(read.mean), Float(std) == Float(read.std)
        {
            return (mean, std)
        }
        return read
    }

    // MARK: - The nodes

    /// Records a `Constant` node's value as a constant tensor.
    private mutating func readConstant(_ node: Onnx_NodeProto, _ at: NodeContext) throws {
        guard node.output.count == 1, !node.output[0].isEmpty, node.attribute.count == 1 else {
            throw at.fail("is a Constant without exactly one output and one value")
        }
        let attribute = node.attribute[0]
        var tensor = Onnx_TensorProto()
        switch attribute.name {
        case "value": tensor = attribute.t
        case "value_float":
            tensor.dataType = 1
            tensor.floatData = [attribute.f]
        case "value_floats":
            tensor.dataType = 1
            tensor.dims = [Int64(attribute.floats.count)]
            tensor.floatData = attribute.floats
        case "value_int":
            tensor.dataType = 7
            tensor.int64Data = [attribute.i]
        case "value_ints":
            tensor.dataType = 7
            tensor.dims = [Int64(attribute.ints.count)]
            tensor.int64Data = attribute.ints
        default:
            throw at.fail("holds a \(quoted(attribute.name)) value; Backprop reads tensors, floats and integers")
        }
        guard constants.updateValue(tensor, forKey: node.output[0]) == nil else {
            throw at.fail("names its output \(quoted(node.output[0])), as another constant is named")
        }
    }

    /// The constant tensor that input `position` of the node names, as floats.
    private func floatInput(_ at: NodeContext, _ position: Int, _ what: String) throws -> Tensor {
        let name = at.node.input[position]
        guard let tensor = constants[name] else {
            throw at.fail("reads its \(what) from \(quoted(name)), which is not a constant (an initializer)")
        }
        return try tensors.floats(tensor, name: name)
    }

    /// What Backprop reads as the normalisation of the input.
    private var normalizationForms: String {
        "Backprop reads Div and Sub by constants only before the first layer, as the normalisation "
            + "(pixels / 255 - mean) / std that its ONNX export writes, or pixels / 255"
    }

    /// The normalisation after `node`, a `Div` or `Sub` by a one-element constant before the first
    /// layer: `Div` 255 scales pixels (mean 0, deviation 1 so far), `Sub` the mean, then `Div` the
    /// standard deviation.
    private func readNormalization(
        _ node: Onnx_NodeProto, _ at: NodeContext, after step: NormalizationStep
    ) throws
        -> NormalizationStep
    {
        try at.expectInputs(2...2)
        let constant = try floatInput(at, 1, node.opType == "Sub" ? "mean" : "divisor")
        guard constant.count == 1 else {
            throw at.fail("divides or subtracts a tensor of shape \(constant.shape): \(normalizationForms)")
        }
        let value = constant.item()
        switch (step, node.opType) {
        case (.none, "Div"):
            guard value == 255 else { throw at.fail("divides by \(value), not 255: \(normalizationForms)") }
            return .scaled
        case (.none, "Sub"):
            // Without the Div by 255 the input's scale is unknown (0…1, or 0…255?): reading it as a
            // normalisation of pixels / 255 could silently be wrong.
            throw at.fail(
                "subtracts \(value) from the input before any layer, without dividing by 255 first: Backprop reads "
                    + "a normalisation of pixels / 255 only; export the model without it, and give `backprop evaluate` "
                    + "--normalize MEAN,STD")
        case (.scaled, "Sub"):
            guard value.isFinite else { throw at.fail("subtracts the mean \(value); expected a finite number") }
            return .centered(mean: value)
        case (.centered(let mean), "Div"):
            guard value.isFinite, value > 0 else {
                throw at.fail("divides by the standard deviation \(value); expected a positive finite number")
            }
            // A deviation so small that a pixel leaves Float's range would train to a NaN loss.
            if let (byte, pixel) = FashionMNIST.nonFiniteNormalizedPixel(mean: Double(mean), std: Double(value)) {
                throw at.fail(
                    "divides by the standard deviation \(value) after subtracting the mean \(mean), which takes pixel "
                        + "\(byte)/255 to \(pixel) in Float; expected a normalisation that keeps the inputs finite")
            }
            return .done(mean: mean, std: value)
        default:
            let done: String
            switch step {
            case .none: done = "nothing"
            case .scaled: done = "a division by 255"
            case .centered: done = "a division by 255 and a subtraction of the mean"
            case .done: done = "the whole normalisation, (pixels / 255 - mean) / std"
            }
            throw at.fail(
                "\(node.opType == "Div" ? "divides by" : "subtracts") \(value) after \(done): \(normalizationForms)")
        }
    }

    /// Whether `node` (a `Gemm` or a `Conv`) adds a bias: its third input is given, and is not a
    /// zero the graph fills in (as a dynamo export writes a module's missing bias).
    private func hasBiasInput(_ node: Onnx_NodeProto) -> Bool {
        node.input.count == 3 && !node.input[2].isEmpty && !filledZeros.contains(node.input[2])
    }

    /// `Gemm(x, B, C)` as a `Lin`: `w = B` or `Bᵀ` (`transB`), `b = C`.
    private func readGemm(
        _ node: Onnx_NodeProto, _ at: NodeContext, shape: inout [Int]?, first: Bool
    ) throws
        -> ReadLayer
    {
        try at.expectInputs(2...3)
        let (alpha, beta) = (try at.float("alpha", default: 1), try at.float("beta", default: 1))
        guard alpha == 1 else {
            throw at.fail("scales its product by alpha \(alpha); Backprop's Lin computes x • w + b")
        }
        guard try !at.flag("transA", default: false) else {
            throw at.fail("transposes its input (transA 1); Backprop's Lin computes x • w + b")
        }
        let b = try floatInput(at, 1, "weights")
        guard b.rank == 2 else { throw at.fail("has weights of shape \(b.shape); expected a matrix") }
        let w = try at.flag("transB", default: false) ? b.t().contiguous() : b  // (nIn, nOut)
        let hasBias = hasBiasInput(node)
        guard beta == 1 || !hasBias else {
            throw at.fail("scales its bias by beta \(beta); Backprop's Lin adds it as it is")
        }
        let bias = hasBias ? try biasVector(try floatInput(at, 2, "bias"), width: w.shape[1], at) : nil
        return try linear(w: w, b: bias, at, shape: &shape, first: first)
    }

    /// `MatMul(x, B)` as a `Lin`: `w = B`, without a bias unless an `Add` of one follows.
    private func readMatMul(
        _ node: Onnx_NodeProto, _ at: NodeContext, shape: inout [Int]?, first: Bool
    ) throws
        -> ReadLayer
    {
        try at.expectInputs(2...2)
        let w = try floatInput(at, 1, "weights")
        guard w.rank == 2 else {
            throw at.fail("multiplies by a tensor of shape \(w.shape); Backprop's Lin multiplies by a matrix")
        }
        return try linear(w: w, b: nil, at, shape: &shape, first: first)
    }

    /// The bias `node` adds to `value` (the output of a `MatMul` of width `width`), or `nil` when
    /// `node` is not such an `Add`.
    private func addedBias(_ node: Onnx_NodeProto, index: Int, to value: String, width: Int) throws -> Tensor? {
        guard node.opType == "Add", node.domain.isEmpty || node.domain == "ai.onnx", node.input.count == 2,
            node.output.count == 1, !node.output[0].isEmpty
        else { return nil }
        let other: String
        if node.input[0] == value {
            other = node.input[1]
        } else if node.input[1] == value {
            other = node.input[0]
        } else {
            return nil
        }
        guard let tensor = constants[other] else { return nil }
        let at = NodeContext(node: node, index: index, path: path)
        return try biasVector(try tensors.floats(tensor, name: other), width: width, at)
    }

    /// A bias of shape `(width)`, `(1, width)`, `(1)` or `()` as a vector of `width` values.
    private func biasVector(_ c: Tensor, width: Int, _ at: NodeContext) throws -> Tensor {
        if c.shape == [width] { return c }
        if c.shape == [1, width] { return c.reshape([width]) }
        if c.count == 1 && c.rank <= 1 { return Tensor.full([width], c.item()) }
        throw at.fail("adds a bias of shape \(c.shape); expected [\(width)]")
    }

    /// The `Lin` of `w (nIn, nOut)` and `b`, after examples of `shape` (learnt from `w` for the
    /// graph's first layer when the input has no shape).
    private func linear(w: Tensor, b: Tensor?, _ at: NodeContext, shape: inout [Int]?, first: Bool) throws -> ReadLayer
    {
        let (nIn, nOut) = (w.shape[0], w.shape[1])
        guard nIn >= 1, nOut >= 1 else { throw at.fail("has weights of shape \(w.shape); expected no empty dimension") }
        if shape == nil && first { shape = [nIn] }
        let current = try known(shape, at)
        guard current == [nIn] else {
            throw at.fail(
                "takes \(nIn) features per example, but its input is [n] + \(current)"
                    + (current.count > 1 ? " (flatten first)" : ""))
        }
        var layer = ReadLayer(entry: .lin(out: nOut, bias: b != nil))
        layer.tensors["w"] = try finite(w, at, "weights")
        if let b { layer.tensors["b"] = try finite(b, at, "bias") }
        shape = [nOut]
        return layer
    }

    /// `Conv` as a `Conv2d`, after a Pad of zeros by `padded` (0: none), which its padding takes.
    private func readConv(
        _ node: Onnx_NodeProto, _ at: NodeContext, shape: inout [Int]?, padded before: Int
    ) throws -> ReadLayer {
        try at.expectInputs(2...3)
        let w = try floatInput(at, 1, "weights")
        guard w.rank == 4, w.count > 0 else {
            throw at.fail("has weights of shape \(w.shape); expected [cOut, cIn, k, k]")
        }
        let (cOut, cIn, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
        guard try at.int("group", default: 1) == 1 else {
            throw at.fail("is a grouped convolution; Backprop's has one group")
        }
        guard try at.ints("dilations", default: [1, 1]).allSatisfy({ $0 == 1 }) else {
            throw at.fail("is dilated; Backprop's convolution is not")
        }
        let kernel = try at.ints("kernel_shape", default: [kh, kw])
        guard kernel == [kh, kw] else {
            throw at.fail("has the kernel_shape \(kernel), but its weights \(w.shape) have a \(kh)×\(kw) kernel")
        }
        guard kh == kw else { throw at.fail("has a \(kh)×\(kw) kernel; Backprop's kernels are square") }
        let stride = try equalPair(at, "strides", default: 1)
        // SAME padding is computed for the padded images.
        let padding =
            try before
            + equalPads(
                at, kernel: kh, stride: stride, shape: padded(shape, by: before),
                refusal: "Backprop pads every side by the same amount")
        let current = try known(shape, at)
        guard current.count == 3, current[0] == cIn else {
            throw at.fail("takes images of \(cIn) channels (weights \(w.shape)), but its input is [n] + \(current)")
        }
        guard kh <= current[1] + 2 * padding, kw <= current[2] + 2 * padding else {
            throw at.fail("has a \(kh)×\(kw) kernel larger than its padded \(current[1])×\(current[2]) input")
        }
        let hasBias = hasBiasInput(node)
        var layer = ReadLayer(
            entry: .conv(out: cOut, kernel: kh, stride: stride, padding: padding, bias: hasBias))
        layer.tensors["w"] = try finite(w, at, "weights")
        if hasBias {
            let b = try floatInput(at, 2, "bias")
            guard b.shape == [cOut] else { throw at.fail("has a bias of shape \(b.shape); expected [\(cOut)]") }
            layer.tensors["b"] = try finite(b, at, "bias")
        }
        let output = [cOut, (current[1] + 2 * padding - kh) / stride + 1, (current[2] + 2 * padding - kw) / stride + 1]
        let (area, overflow) = output[1].multipliedReportingOverflow(by: output[2])
        let (values, overflowAgain) = area.multipliedReportingOverflow(by: cOut)
        guard !overflow, !overflowAgain, values <= Int(Int32.max) else {
            throw at.fail("gives examples of \(output); Backprop reads at most \(Int32.max) values per example")
        }
        shape = output
        return layer
    }

    /// `MaxPool` or `AveragePool` as a `MaxPool2d` or `AvgPool2d`; an `AveragePool` after a Pad
    /// of zeros by `padded` (0: none) counts that padding in each mean.
    private func readPool(
        _ node: Onnx_NodeProto, _ at: NodeContext, shape: inout [Int]?, padded before: Int
    ) throws -> ReadLayer {
        try at.expectInputs(1...1)
        guard node.output.dropFirst().allSatisfy(\.isEmpty) || node.opType == "MaxPool" else {
            throw at.fail("has \(node.output.count) outputs; expected one")
        }
        let k = try poolKernel(at)
        let stride = try equalPair(at, "strides", default: 1)
        guard try at.ints("dilations", default: [1, 1]).allSatisfy({ $0 == 1 }) else {
            throw at.fail("is dilated; Backprop's pools are not")
        }
        let own = try equalPads(
            at, kernel: k, stride: stride, shape: padded(shape, by: before),
            refusal: "Backprop's pools pad every side alike")
        // ONNX's default leaves the padding out of a window's mean (`avgpool … excludepad`);
        // torch.onnx.export writes 1 for nn.AvgPool2d's default, which counts it as zeros.
        var countIncludePad = try node.opType == "MaxPool" || at.flag("count_include_pad", default: false)
        if before > 0 {
            // A Pad's zeros are elements of each window: they count.
            guard own == 0 || countIncludePad else {
                throw at.fail(
                    "pads by \(own) more, left out of each mean (count_include_pad 0), after a Pad of zeros by "
                        + "\(before), which counts: no pool of Backprop's counts part of its padding")
            }
            countIncludePad = true
        }
        let padding = before + own
        if padding > 0 {
            let autoPad = try at.string("auto_pad", default: "NOTSET")
            let how =
                before > 0
                ? " (\(before) of it by the Pad of zeros before it)"
                : autoPad == "NOTSET" ? "" : " (auto_pad \(autoPad))"
            guard padding <= k / 2 else {
                throw at.fail(
                    "pads its \(k)×\(k) windows by \(padding)\(how); Backprop's pools (as PyTorch's) pad by at most "
                        + "half the kernel, \(k / 2)")
            }
        }
        guard try !at.flag("ceil_mode", default: false) else {
            throw at.fail("rounds its output size up (ceil_mode 1); Backprop's pools round down")
        }
        let current = try known(shape, at)
        guard current.count == 3, k <= current[1] + 2 * padding, k <= current[2] + 2 * padding else {
            let padded = padding == 0 ? "" : " padded by \(padding)"
            throw at.fail(
                "pools \(k)×\(k) windows, but its input is [n] + \(current)\(padded); expected [c, h, w] with h, w ≥ "
                    + "\(k - 2 * padding)")
        }
        shape = [current[0], (current[1] + 2 * padding - k) / stride + 1, (current[2] + 2 * padding - k) / stride + 1]
        let entry: ModelDescription.Entry =
            node.opType == "MaxPool"
            ? .maxPool(kernel: k, stride: stride, padding: padding)
            : .avgPool(kernel: k, stride: stride, padding: padding, countIncludePad: countIncludePad || padding == 0)
        return ReadLayer(entry: entry)
    }

    /// Whether a `Reshape` flattens each example (`true`) or leaves a flat one as it is (`false`).
    private func readReshape(_ node: Onnx_NodeProto, _ at: NodeContext, shape: [Int]?, batch: Int?) throws -> Bool {
        try at.expectInputs(2...2)
        let current = try known(shape, at)
        let name = node.input[1]
        let target: [ShapeValue]
        if let computed = shapeValues[name] {
            target = computed
        } else if let tensor = constants[name] {
            target = try tensors.integers(tensor, name: name).map { .size($0) }
        } else {
            throw at.fail(
                "reads its target shape from \(quoted(name)), which is neither a constant nor computed from a shape")
        }
        let size = current.reduce(1, *)
        let allowZero = try at.flag("allowzero", default: false)
        let keepsBatch =
            target.count == 2
            && (target[0] == .batch || target[0] == .size(-1) || (target[0] == .size(0) && !allowZero)
                || batch.map { target[0] == .size($0) } == true)
        let flattens = keepsBatch && (target[1] == .size(size) || (target[1] == .size(-1) && target[0] != .size(-1)))
        guard flattens else {
            throw at.fail(
                "reshapes [n] + \(current) to [\(target.map(\.description).joined(separator: ", "))]; Backprop reads a Reshape only as a flatten "
                    + "to [n, \(size)]")
        }
        return current.count > 1
    }

    /// Computes, and records, what a node computes from constants and from the chain value's shape
    /// alone, and returns `true`; returns `false` for a node that reads the chain value itself.
    ///
    /// Exporters that do not fold constants (`do_constant_folding=False`, `optimize=False`) leave
    /// such nodes in the graph: a transposed weight (`Transpose`), a zero bias (`Shape`, `Expand`,
    /// `CastLike`), and the target of `x.view(x.size(0), -1)`, whose batch size is not known until
    /// the graph runs (`Shape`, `Gather`, `Squeeze`, `Unsqueeze`, `Concat`): integer vectors with
    /// the batch size open are ``ShapeValue`` lists. The TorchScript exporter computes a `Pad`'s
    /// pads from opset 11 so (`ConstantOfShape`, `Concat`, `Reshape`, `Slice`, `Transpose`, `Cast`).
    private mutating func readConstantWork(
        _ node: Onnx_NodeProto, _ at: NodeContext, current: String, shape: [Int]?
    )
        throws -> Bool
    {
        let inputs = node.input.filter { !$0.isEmpty }
        guard let first = inputs.first, let output = node.output.first, !output.isEmpty else { return false }
        let foldable: Set<String> = [
            "Shape", "Gather", "Squeeze", "Unsqueeze", "Concat", "Cast", "CastLike", "Identity", "Reshape",
            "Transpose", "Expand", "ConstantOfShape", "Slice",
        ]
        // `Mul` of sizes: the flatten `y.reshape(n, c * h * w)` with `n, c, h, w = y.shape`; `Add`,
        // `Sub` and `Mul` of constants alone: the arithmetic of a Pad's pads, unfolded.
        let sizeProduct = node.opType == "Mul" && inputs.contains(where: { shapeValues[$0] != nil })
        let constantArithmetic =
            ["Add", "Sub", "Mul"].contains(node.opType) && inputs.count == 2
            && inputs.allSatisfy { constants[$0] != nil }
        guard foldable.contains(node.opType) || sizeProduct || constantArithmetic else { return false }
        if node.opType == "Shape" && first == current {
            let dimensions = [ShapeValue.batch] + (try known(shape, at)).map { .size($0) }
            shapeValues[output] = try sliced(dimensions, at)
            return true
        }
        if node.opType == "Shape", let earlier = chainShapes[first] {
            // The shape of an earlier value of the chain: the same batch size, its own sizes.
            shapeValues[output] = try sliced([ShapeValue.batch] + earlier.map { .size($0) }, at)
            return true
        }
        // CastLike's second input gives only a type: the chain value's is float.
        let dataInputs = node.opType == "CastLike" ? [first] : inputs
        guard dataInputs.allSatisfy({ constants[$0] != nil || shapeValues[$0] != nil }) else { return false }
        if node.opType == "Expand", dataInputs.count == 2, constants[first] != nil,
            let sizes = shapeValues[dataInputs[1]]?.map(\.knownSize), !sizes.contains(nil)
        {
            // A constant expanded to sizes of the chain value's shape, all known: a constant (the
            // scale and bias of BatchNorm(affine=False) as `torch.onnx.export(dynamo=True,
            // optimize=False)` writes them: 1 and 0 expanded to the channels of Shape(x)[1:2]).
            var target = Onnx_TensorProto()
            (target.dataType, target.dims, target.int64Data) = (7, [Int64(sizes.count)], sizes.map { Int64($0!) })
            let name = output + "\u{0}shape"  // a name no node of the file's can have (a NUL in it)
            constants[name] = target
            defer { constants[name] = nil }
            let folded = try fold(node, at, inputs: [first, name])
            constants[output] = folded
            if let values = try? tensors.floats(folded, name: output).values, values.allSatisfy({ $0 == 0 }) {
                filledZeros.insert(output)
            }
            return true
        }
        if dataInputs.contains(where: { shapeValues[$0] != nil }) {
            shapeValues[output] = try shapeArithmetic(node, at, inputs: dataInputs)
        } else {
            let folded = try fold(node, at, inputs: inputs)
            constants[output] = folded
            let fills =
                node.opType == "Expand"
                || (["Identity", "Cast", "CastLike"].contains(node.opType) && filledZeros.contains(first))
            if fills, let values = try? tensors.floats(folded, name: output).values, values.allSatisfy({ $0 == 0 }) {
                filledZeros.insert(output)
            }
        }
        return true
    }

    /// `values[start..<end]` with `Shape`'s `start` and `end` attributes (negative from the end).
    private func sliced<Value>(_ values: [Value], _ at: NodeContext) throws -> [Value] {
        let rank = values.count
        func clamp(_ value: Int) -> Int { Swift.min(Swift.max(value < 0 ? value + rank : value, 0), rank) }
        let (start, end) = (clamp(try at.int("start", default: 0)), clamp(try at.int("end", default: rank)))
        return start < end ? Array(values[start..<end]) : []
    }

    /// The integer vector a node computes from shape vectors and integer constants.
    private func shapeArithmetic(_ node: Onnx_NodeProto, _ at: NodeContext, inputs: [String]) throws -> [ShapeValue] {
        func values(_ name: String) throws -> [ShapeValue] {
            if let values = shapeValues[name] { return values }
            guard [6, 7, 9].contains(constants[name]!.dataType) else {
                throw at.fail(
                    "computes with the \(dataTypeName(constants[name]!.dataType)) constant \(quoted(name)) and sizes of "
                        + "the chain value's shape (the batch size among them, unknown until the graph runs); Backprop "
                        + "computes such nodes from integers")
            }
            return try tensors.integers(constants[name]!, name: name).map { .size($0) }
        }
        let first = try values(inputs[0])
        switch node.opType {
        case "Squeeze", "Unsqueeze", "Cast", "CastLike", "Identity", "Reshape", "Expand":
            return first  // the same numbers, as a scalar or a vector
        case "Slice" where inputs.dropFirst().allSatisfy({ shapeValues[$0] == nil }):
            // Sizes of a shape by constant bounds (`x.shape[:2]`, as nn.Flatten(2) is written).
            return try slicePositions(at, dims: [first.count], what: "a shape")[0].map { first[$0] }
        case "Concat":
            guard try at.int("axis", default: 0) == 0 else {
                throw at.fail("concatenates shapes along an axis other than 0")
            }
            return try inputs.flatMap(values)
        case "Gather":
            guard inputs.count == 2, try at.int("axis", default: 0) == 0, shapeValues[inputs[1]] == nil else {
                throw at.fail("gathers from a shape other than by constant indices along axis 0")
            }
            return try tensors.integers(constants[inputs[1]]!, name: inputs[1]).map { index in
                let position = index < 0 ? index + first.count : index
                guard first.indices.contains(position) else {
                    throw at.fail("gathers index \(index) of a shape of \(first.count) values")
                }
                return first[position]
            }
        case "Mul":
            // Sizes times sizes, element by element (or by one value); the batch size is open, so
            // a product with it is not a size Backprop can check.
            guard inputs.count == 2 else { throw at.fail("has \(inputs.count) inputs; expected 2") }
            let second = try values(inputs[1])
            guard first.count == second.count || first.count == 1 || second.count == 1 else {
                throw at.fail("multiplies shapes of \(first.count) and \(second.count) values")
            }
            return try (0..<Swift.max(first.count, second.count)).map { index in
                let (a, b) = (first[first.count == 1 ? 0 : index], second[second.count == 1 ? 0 : index])
                guard case .size(let x) = a, case .size(let y) = b, x >= 0, y >= 0 else {
                    throw at.fail("computes with a shape in a way Backprop does not read (\(a) · \(b))")
                }
                let (product, overflow) = x.multipliedReportingOverflow(by: y)
                guard !overflow else { throw at.fail("multiplies the sizes \(x) and \(y) past Int's range") }
                return .size(product)
            }
        default:
            throw at.fail(
                "computes with a shape in a way Backprop does not read (\(node.opType) of sizes); it reads the sizes "
                    + "that give a Reshape its target as Shape, Gather, Slice, Concat, Unsqueeze, Squeeze, Cast and Mul "
                    + "compute them, as y.view(y.size(0), -1) and y.flatten(1) are exported")
        }
    }

    /// The inputs each operator that ``fold(_:_:inputs:)`` computes takes.
    private static let foldedInputCounts: [String: ClosedRange<Int>] = [
        "Reshape": 2...2, "Expand": 2...2, "Gather": 2...2, "Transpose": 1...1, "Shape": 1...1, "Identity": 1...1,
        "Cast": 1...1, "Squeeze": 1...2, "Unsqueeze": 1...2, "ConstantOfShape": 1...1, "Add": 2...2, "Sub": 2...2,
        "Mul": 2...2,
    ]

    /// The constant a node computes from constants alone (see ``readConstantWork``).
    private func fold(_ node: Onnx_NodeProto, _ at: NodeContext, inputs: [String]) throws -> Onnx_TensorProto {
        let first = constants[inputs[0]]!
        let isInteger = [6, 7, 9].contains(first.dataType)
        if let range = Self.foldedInputCounts[node.opType], !range.contains(inputs.count) {
            throw at.fail(
                "has \(inputs.count) inputs; expected \(range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound) or \(range.upperBound)")"
            )
        }
        // The first input's values and dimensions, as integers or floats.
        func integers(_ name: String) throws -> [Int] { try tensors.integers(constants[name]!, name: name) }
        let dims = try tensors.dimensions(first, name: inputs[0])
        // Products of dimensions from the file, checked: an overflow is an error, not a trap.
        func product(_ sizes: [Int]) throws -> Int {
            try sizes.reduce(1) { total, size in
                let (value, overflow) = total.multipliedReportingOverflow(by: size)
                guard !overflow, size >= 0 else { throw at.fail("has a constant of dimensions \(sizes)") }
                return value
            }
        }
        // A float as an integer, when it is one that fits.
        func integer(_ value: Float) throws -> Int {
            guard value.isFinite, abs(value) < 0x1p62 else { throw at.fail("casts \(value) to an integer") }
            return Int(value)
        }
        func result(_ dims: [Int], integers values: [Int]) -> Onnx_TensorProto {
            var tensor = Onnx_TensorProto()
            tensor.dataType = 7
            tensor.dims = dims.map(Int64.init)
            tensor.int64Data = values.map(Int64.init)
            return tensor
        }
        func result(_ dims: [Int], floats values: [Float]) -> Onnx_TensorProto {
            var tensor = Onnx_TensorProto()
            tensor.dataType = 1
            tensor.dims = dims.map(Int64.init)
            tensor.floatData = values
            return tensor
        }
        // The same values with new dimensions, in the first input's kind (integer or float).
        func reshaped(_ newDims: [Int]) throws -> Onnx_TensorProto {
            guard newDims.count <= 64, try product(newDims) == product(dims) else {
                throw at.fail("reshapes a constant of \(dims) to \(newDims)")
            }
            return isInteger
                ? result(newDims, integers: try integers(inputs[0]))
                : result(newDims, floats: try tensors.floats(first, name: inputs[0]).values)
        }
        // The axes of Squeeze and Unsqueeze: the second input (opset 13) or the attribute.
        func axes() throws -> [Int] {
            let axes = inputs.count > 1 ? try integers(inputs[1]) : try at.ints("axes", default: [])
            guard axes.count <= 64 else { throw at.fail("has \(axes.count) axes") }
            return axes
        }
        switch node.opType {
        case "Shape":
            return result([], integers: try sliced(dims, at)).withDims { [$0.int64Data.count] }
        case "Identity":
            return first
        case "Cast", "CastLike":
            let target =
                node.opType == "Cast"
                ? try at.int("to", default: 1) : Int(constants[inputs.count > 1 ? inputs[1] : ""]?.dataType ?? 1)
            if [6, 7, 9].contains(Int32(target)) {
                return result(
                    dims,
                    integers: isInteger
                        ? try integers(inputs[0]) : try tensors.floats(first, name: inputs[0]).values.map(integer))
            }
            return result(
                dims,
                floats: isInteger
                    ? try integers(inputs[0]).map(Float.init) : try tensors.floats(first, name: inputs[0]).values)
        case "Squeeze":
            let axes = try axes().map { $0 < 0 ? $0 + dims.count : $0 }
            return try reshaped(
                dims.enumerated().filter { axes.isEmpty ? $0.element != 1 : !axes.contains($0.offset) }.map(\.element))
        case "Unsqueeze":
            var newDims = dims
            for axis in try axes().map({ $0 < 0 ? $0 + dims.count + 1 : $0 }).sorted() {
                guard (0...newDims.count).contains(axis) else { throw at.fail("unsqueezes axis \(axis) of \(dims)") }
                newDims.insert(1, at: axis)
            }
            return try reshaped(newDims)
        case "Reshape":
            var target = try integers(inputs[1])
            guard target.count <= 64 else { throw at.fail("reshapes a constant to \(target.count) dimensions") }
            for (i, size) in target.enumerated() where size == 0 && i < dims.count { target[i] = dims[i] }
            if let open = target.firstIndex(of: -1) {
                let known = try product(target.enumerated().filter { $0.offset != open }.map(\.element))
                target[open] = known > 0 ? try product(dims) / known : 0
            }
            return try reshaped(target)
        case "Concat":
            guard dims.count == 1, try at.int("axis", default: 0) == 0 else {
                throw at.fail("concatenates constants other than vectors along axis 0")
            }
            if isInteger {
                let values = try inputs.flatMap(integers)
                return result([values.count], integers: values)
            }
            let values = try inputs.flatMap { try tensors.floats(constants[$0]!, name: $0).values }
            return result([values.count], floats: values)
        case "Gather":
            guard dims.count == 1, inputs.count == 2, try at.int("axis", default: 0) == 0 else {
                throw at.fail("gathers from a constant other than a vector along axis 0")
            }
            let indices = try integers(inputs[1])
            func pick<Value>(_ values: [Value]) throws -> [Value] {
                try indices.map { index in
                    let position = index < 0 ? index + values.count : index
                    guard values.indices.contains(position) else {
                        throw at.fail("gathers index \(index) of \(values.count)")
                    }
                    return values[position]
                }
            }
            let shape = [Int](constants[inputs[1]]!.dims.map { Int($0) })
            return isInteger
                ? result(shape, integers: try pick(try integers(inputs[0])))
                : result(shape, floats: try pick(try tensors.floats(first, name: inputs[0]).values))
        case "Transpose":
            let permutation = try at.ints("perm", default: Array((0..<dims.count).reversed()))
            guard dims.count == 2, permutation == [1, 0] else {
                throw at.fail(
                    "transposes a constant of \(dims) by \(permutation); Backprop folds only a matrix's transpose")
            }
            if isInteger {
                let values = try integers(inputs[0])
                let (rows, columns) = (dims[0], dims[1])
                return result(
                    [columns, rows],
                    integers: (0..<columns).flatMap { j in (0..<rows).map { values[$0 * columns + j] } })
            }
            return result(
                [dims[1], dims[0]], floats: try tensors.floats(first, name: inputs[0]).t().contiguous().values)
        case "ConstantOfShape":
            // A shape filled with the one value of the attribute `value` (float 0 without it).
            let target = try integers(inputs[0])
            guard target.count <= 64, target.allSatisfy({ $0 >= 0 }), try product(target) <= 1 << 24 else {
                throw at.fail("fills a constant of the shape \(target); Backprop folds at most \(1 << 24) values")
            }
            let filled = try product(target)
            guard let value = try at.tensor("value") else {
                return result(target, floats: [Float](repeating: 0, count: filled))
            }
            let name = (at.node.output.first ?? "") + " (value)"
            if [6, 7, 9].contains(value.dataType) {
                let values = try tensors.integers(value, name: name)
                guard values.count == 1 else { throw at.fail("fills with \(values.count) values; expected one") }
                return result(target, integers: [Int](repeating: values[0], count: filled))
            }
            let values = try tensors.floats(value, name: name)
            guard values.count == 1 else { throw at.fail("fills with \(values.count) values; expected one") }
            return result(target, floats: [Float](repeating: values.item(), count: filled))
        case "Slice":
            return try slice(at, dims: dims, isInteger: isInteger)
        case "Add", "Sub", "Mul":
            // Element by element, one side a single value or both of the same dimensions; both
            // integers (checked for overflow) or both floats.
            let second = constants[inputs[1]]!
            let secondDims = try tensors.dimensions(second, name: inputs[1])
            let (count, secondCount) = (try product(dims), try product(secondDims))
            guard dims == secondDims || count == 1 || secondCount == 1,
                [6, 7, 9].contains(second.dataType) == isInteger
            else {
                throw at.fail(
                    "computes with constants of \(dims) and \(secondDims) (\(dataTypeName(first.dataType)), "
                        + "\(dataTypeName(second.dataType))); Backprop folds such arithmetic of one kind, element by "
                        + "element or by one value")
            }
            let resultDims = count >= secondCount ? dims : secondDims
            let total = Swift.max(count, secondCount)
            if isInteger {
                let (a, b) = (try integers(inputs[0]), try integers(inputs[1]))
                return result(
                    resultDims,
                    integers: try (0..<total).map { index in
                        let (x, y) = (a[count == 1 ? 0 : index], b[secondCount == 1 ? 0 : index])
                        let (value, overflow) =
                            node.opType == "Add"
                            ? x.addingReportingOverflow(y)
                            : node.opType == "Sub"
                                ? x.subtractingReportingOverflow(y) : x.multipliedReportingOverflow(by: y)
                        guard !overflow else { throw at.fail("computes \(x) and \(y) past Int's range") }
                        return value
                    })
            }
            let (a, b) = (
                try tensors.floats(first, name: inputs[0]).values, try tensors.floats(second, name: inputs[1]).values
            )
            return result(
                resultDims,
                floats: (0..<total).map { index in
                    let (x, y) = (a[count == 1 ? 0 : index], b[secondCount == 1 ? 0 : index])
                    return node.opType == "Add" ? x + y : node.opType == "Sub" ? x - y : x * y
                })
        case "Expand":
            // A one-element constant filled to the shape (the zero bias of a convolution without one).
            let target = try integers(inputs[1])
            let count = try product(dims)
            guard count == 1, target.count <= 64, target.allSatisfy({ $0 >= 1 }), try product(target) <= 1 << 24 else {
                throw at.fail(
                    "expands a constant of \(dims) to \(target); Backprop folds only one value filled to a shape")
            }
            let filled = try product(target)
            if isInteger {
                return result(target, integers: [Int](repeating: try integers(inputs[0])[0], count: filled))
            }
            return result(
                target, floats: [Float](repeating: try tensors.floats(first, name: inputs[0]).item(), count: filled))
        default:
            throw at.fail("is not a constant computation Backprop folds")
        }
    }

    /// A `Slice` of a constant: its data, `starts`, `ends`, `axes` and `steps` the node's inputs
    /// (opset 10; before, attributes without steps), each a constant; `dims` are the data's
    /// dimensions. Negative positions count from the end, and positions past either end stop at it.
    private func slice(_ at: NodeContext, dims: [Int], isInteger: Bool) throws -> Onnx_TensorProto {
        // The data, as many values as its dimensions give (so each dimension is at most their count).
        let name = at.node.input[0]
        let integers = isInteger ? try tensors.integers(constants[name]!, name: name) : []
        let floats = isInteger ? [] : try tensors.floats(constants[name]!, name: name).values
        guard integers.count + floats.count > 0 else {
            throw at.fail("slices an empty constant of \(dims)")
        }
        let kept = try slicePositions(at, dims: dims, what: "a constant")
        // Each kept value's offset in the data (row-major), in order.
        var offsets = [0]
        var span = integers.count + floats.count
        for axis in 0..<dims.count {
            span /= dims[axis]
            offsets = offsets.flatMap { base in kept[axis].map { base + $0 * span } }
        }
        let shape = kept.map(\.count)
        return isInteger
            ? Self.constant(shape, integers: offsets.map { integers[$0] })
            : Self.constant(shape, floats: offsets.map { floats[$0] })
    }

    /// The positions a `Slice` keeps along each axis of data of dimensions `dims` (`what` names
    /// the data in messages): its starts, ends, axes and steps, constant inputs (attributes before
    /// opset 10), with ONNX's clamping of starts and ends past either end.
    private func slicePositions(_ at: NodeContext, dims: [Int], what: String) throws -> [[Int]] {
        let names = at.node.input
        func given(_ position: Int) throws -> [Int]? {
            guard position < names.count, !names[position].isEmpty, let tensor = constants[names[position]] else {
                return nil
            }
            return try tensors.integers(tensor, name: names[position])
        }
        var (starts, ends, axes, steps): ([Int]?, [Int]?, [Int]?, [Int]?)
        if opset >= 10 {
            try at.expectInputs(3...5)
            (starts, ends, axes, steps) = (try given(1), try given(2), try given(3), try given(4))
        } else {
            try at.expectInputs(1...1)
            starts = try at.ints("starts", default: [])
            ends = try at.ints("ends", default: [])
            axes = try at.ints("axes", default: [])
        }
        guard let starts, let ends, ends.count == starts.count, !starts.isEmpty else {
            throw at.fail("slices \(what) without as many starts as ends")
        }
        let rank = dims.count
        let axisList = (axes.flatMap { $0.isEmpty ? nil : $0 } ?? Array(0..<starts.count)).map {
            $0 < 0 ? $0 + rank : $0
        }
        let stepList = steps ?? [Int](repeating: 1, count: starts.count)
        guard rank >= 1, axisList.count == starts.count,
            stepList.count == starts.count, Set(axisList).count == axisList.count,
            axisList.allSatisfy({ (0..<rank).contains($0) }), !stepList.contains(0)
        else {
            throw at.fail(
                "slices \(what) of \(dims) along the axes \(axes ?? []) by the steps \(stepList); expected a "
                    + "tensor that is not empty, distinct axes of it and non-zero steps, one for each start")
        }
        // The positions kept along each axis.
        var kept = dims.map { Array(0..<$0) }
        for (i, axis) in axisList.enumerated() {
            let size = dims[axis]
            let step = Swift.min(Swift.max(stepList[i], -size), size)  // a longer step keeps only the start
            func clamped(_ value: Int) -> Int {
                let position = value < 0 ? value + size : value
                return step > 0 ? Swift.min(Swift.max(position, 0), size) : Swift.min(Swift.max(position, -1), size - 1)
            }
            kept[axis] = Array(Swift.stride(from: clamped(starts[i]), to: clamped(ends[i]), by: step))
        }
        return kept
    }

    /// An int64 constant of `dims` holding `values`.
    private static func constant(_ dims: [Int], integers values: [Int]) -> Onnx_TensorProto {
        var tensor = Onnx_TensorProto()
        tensor.dataType = 7
        tensor.dims = dims.map(Int64.init)
        tensor.int64Data = values.map(Int64.init)
        return tensor
    }

    /// A float32 constant of `dims` holding `values`.
    private static func constant(_ dims: [Int], floats values: [Float]) -> Onnx_TensorProto {
        var tensor = Onnx_TensorProto()
        tensor.dataType = 1
        tensor.dims = dims.map(Int64.init)
        tensor.floatData = values
        return tensor
    }

    /// `GlobalAveragePool`, or `ReduceMean` over the height and width (PyTorch's
    /// `AdaptiveAvgPool2d(1)`), as an `AvgPool2d` whose window is the whole (square) map;
    /// `GlobalMaxPool` or `ReduceMax` so (`AdaptiveMaxPool2d(1)`, which the dynamo exporter writes
    /// as `ReduceMax`) as a `MaxPool2d`; and whether the reduced dimensions are kept (`keepdims`;
    /// if not, a flatten follows).
    private func readGlobalPool(
        _ node: Onnx_NodeProto, _ at: NodeContext, shape: inout [Int]?
    ) throws
        -> (ReadLayer, keepsDimensions: Bool)
    {
        let current = try known(shape, at)
        var keeps = true
        let isMax = node.opType == "ReduceMax" || node.opType == "GlobalMaxPool"
        let what = isMax ? "takes the maximum of" : "averages"
        if node.opType == "ReduceMean" || node.opType == "ReduceMax" {
            try at.expectInputs(1...2)
            let axes: [Int]
            if node.input.count == 2 && !node.input[1].isEmpty {
                guard let tensor = constants[node.input[1]] else {
                    throw at.fail("reads its axes from \(quoted(node.input[1])), which is not a constant")
                }
                axes = try tensors.integers(tensor, name: node.input[1])
            } else {
                axes = try at.ints("axes", default: [])
            }
            let rank = current.count + 1
            guard Set(axes.map { $0 < 0 ? $0 + rank : $0 }) == [2, 3], rank == 4 else {
                throw at.fail(
                    "\(what) [n] + \(current) over the axes \(axes); Backprop reads a \(node.opType) only over the "
                        + "height and width of images [n, c, h, w] (a global \(isMax ? "max" : "average") pool)")
            }
            keeps = try at.flag("keepdims", default: true)
        } else {
            try at.expectInputs(1...1)
        }
        guard current.count == 3, current[1] == current[2] else {
            throw at.fail(
                "\(what) whole maps of [n] + \(current); Backprop's \(isMax ? "maxpool" : "avgpool") takes square "
                    + "windows, so square maps [c, k, k]")
        }
        shape = [current[0], 1, 1]
        let k = current[1]
        return (ReadLayer(entry: isMax ? .maxPool(kernel: k, stride: k) : .avgPool(kernel: k, stride: k)), keeps)
    }

    /// `Dropout` as a `Dropout` of its ratio (the identity in evaluation).
    private func readDropout(_ node: Onnx_NodeProto, _ at: NodeContext) throws -> ReadLayer {
        try at.expectInputs(1...3)
        var ratio: Float = 0.5
        if opset >= 12 {
            if node.input.count >= 2 && !node.input[1].isEmpty {
                let value = try floatInput(at, 1, "ratio")
                guard value.count == 1 else { throw at.fail("has a ratio of shape \(value.shape); expected a scalar") }
                ratio = value.item()
            }
            if node.input.count == 3 && !node.input[2].isEmpty {
                let name = node.input[2]
                guard let tensor = constants[name], try tensors.integers(tensor, name: name) == [0]
                else {
                    throw at.fail(
                        "runs in training mode or reads its mode from \(quoted(name)); Backprop reads inference graphs")
                }
            }
        } else {
            ratio = try at.float("ratio", default: 0.5)
        }
        guard ratio >= 0 && ratio < 1 else { throw at.fail("drops with ratio \(ratio); expected 0 ≤ ratio < 1") }
        return ReadLayer(entry: .dropout(p: ratio))
    }

    /// `Clip` with both bounds (`nn.Hardtanh(min, max)`, `nn.ReLU6()`, `torch.clamp(x, min, max)`)
    /// as `hardtanh MIN MAX`, or with the lower bound 0 alone (`torch.clamp(x, min=0)`) as `relu`;
    /// the bounds are attributes before opset 11, then constant inputs (an empty name: none).
    private func readClip(_ node: Onnx_NodeProto, _ at: NodeContext) throws -> ReadLayer {
        try at.expectInputs(1...3)
        var (low, high): (Float?, Float?) = (nil, nil)
        if opset >= 11 {
            func bound(_ position: Int, _ what: String) throws -> Float? {
                guard node.input.count > position, !node.input[position].isEmpty else { return nil }
                let value = try floatInput(at, position, what)
                guard value.count == 1 else {
                    throw at.fail("has a \(what) of shape \(value.shape); expected a scalar")
                }
                return value.item()
            }
            (low, high) = (try bound(1, "lower bound (min)"), try bound(2, "upper bound (max)"))
        } else {
            // The attributes' defaults are the extremes of float32: no bound (below).
            (low, high) = (
                try at.float("min", default: -.greatestFiniteMagnitude),
                try at.float("max", default: .greatestFiniteMagnitude)
            )
        }
        if low == -.infinity || low == -.greatestFiniteMagnitude { low = nil }
        if high == .infinity || high == .greatestFiniteMagnitude { high = nil }
        switch (low, high) {
        case (let low?, let high?):
            guard low.isFinite, high.isFinite, low < high else {
                throw at.fail("clips to [\(low), \(high)]; Backprop's hardtanh expects finite bounds with min < max")
            }
            return ReadLayer(entry: .hardtanh(min: low, max: high))
        case (0?, nil):
            return ReadLayer(entry: .relu)
        case (nil, nil):
            throw at.fail(
                "clips at neither side (the identity); Backprop reads a Clip with both bounds (hardtanh) or with min 0 alone (relu)"
            )
        default:
            let side = low.map { "min \($0)" } ?? "max \(high!)"
            throw at.fail(
                "clips at one side only (\(side)); Backprop reads a Clip with both bounds (hardtanh, relu6) or with min 0 "
                    + "alone (relu)")
        }
    }

    /// Whether the graph holds `Tanh` and either `Pow` (the dynamo exporter's cube) or the constant
    /// 0.044715 (the TorchScript exporter cubes with `Mul`): how nn.GELU(approximate='tanh') is
    /// written below opset 20, `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`.
    private var writesTanhGELU: Bool {
        guard graph.node.contains(where: { $0.opType == "Tanh" }) else { return false }
        if graph.node.contains(where: { $0.opType == "Pow" }) { return true }
        let constantNodes = graph.node.filter { $0.opType == "Constant" }.flatMap { node in
            node.attribute.filter { $0.name == "value" }.map(\.t)
        }
        return (graph.initializer + constantNodes).contains { tensor in
            guard let values = try? tensors.floats(tensor, name: tensor.name), values.count == 1 else { return false }
            return abs(values.item() - 0.044715) <= 1e-6
        }
    }

    /// What a refusal says of a graph that ``writesTanhGELU``.
    static let tanhGELUNote =
        "Tanh with a cube of x is how a GELU approximated with tanh, nn.GELU(approximate='tanh'), is written below "
        + "opset 20; "
        + "Backprop's GELU is the exact one, nn.GELU()"

    /// The exact GELU written as arithmetic, `x · (1 + erf(x / √2)) · 0.5`, which exporters write
    /// below opset 20 (ONNX's `Gelu` is an operator from opset 20): the nodes from `start` on,
    /// `Div(x, √2)` (or `Mul(x, 1/√2)`), `Erf`, `Add` of 1, then `Mul` by `x` and `Mul` by 0.5 in
    /// either order (the TorchScript exporter multiplies by `x` first, the dynamo exporter by 0.5),
    /// or, as `x · 0.5 · (1 + erf(x / √2))` written by hand is exported, `Mul(x, 0.5)` first and a
    /// `Mul` of it and the `Add` last; `Constant` nodes between them allowed, each operand on either
    /// side. Returns the last `Mul`'s output and the index of the node after it, or `nil` when the
    /// nodes do not have that form; a form with other constants is refused.
    private mutating func readErfGELU(at start: Int, input x: String) throws -> (output: String, next: Int)? {
        let nodes = graph.node
        /// The operand of a two-input `node` other than `value`, when `value` is one of them.
        func other(_ node: Onnx_NodeProto, _ value: String) -> String? {
            guard node.input.count == 2, node.output.count >= 1 else { return nil }
            return node.input[0] == value ? node.input[1] : node.input[1] == value ? node.input[0] : nil
        }
        /// Whether `node` is the form's scaling of `x`: `Div(x, c)` or `Mul(x, c)` (either side).
        func scales(_ node: Onnx_NodeProto) -> Bool {
            (node.opType == "Div" || node.opType == "Mul") && other(node, x) != nil
                && (node.opType == "Mul" || node.input[0] == x)
        }
        var index = start + 1
        var skipped: [Int] = []  // the Constant nodes between
        func next() -> Onnx_NodeProto? {
            while index < nodes.count && nodes[index].opType == "Constant" {
                skipped.append(index)
                index += 1
            }
            guard index < nodes.count else { return nil }
            index += 1
            return nodes[index - 1]
        }
        // `Mul(x, 0.5)` first when the node after it scales `x` too (in the other orders the node
        // after the scaling is the Erf).
        var halfFirst: Onnx_NodeProto?
        if nodes[start].opType == "Mul", other(nodes[start], x) != nil, let second = next(), scales(second) {
            halfFirst = nodes[start]
        } else {
            (index, skipped) = (start + 1, [])
        }
        let first = halfFirst == nil ? nodes[start] : nodes[index - 1]
        guard scales(first), let scaleName = other(first, x),
            let erf = next(), erf.opType == "Erf", erf.input == [first.output[0]], erf.output.count >= 1,
            let add = next(), add.opType == "Add", let oneName = other(add, erf.output[0]),
            let product = next(), product.opType == "Mul", let productOperand = other(product, add.output[0])
        else { return nil }
        let halfName: String
        let last: Onnx_NodeProto
        if let halfFirst {
            guard productOperand == halfFirst.output[0], let name = other(halfFirst, x) else { return nil }
            (halfName, last) = (name, product)
        } else {
            guard let following = next(), following.opType == "Mul",
                let lastOperand = other(following, product.output[0])
            else { return nil }
            last = following
            if productOperand == x {
                halfName = lastOperand
            } else if lastOperand == x {
                halfName = productOperand
            } else {
                return nil
            }
        }
        for constant in skipped {
            try readConstant(nodes[constant], NodeContext(node: nodes[constant], index: constant, path: path))
        }
        func scalar(_ name: String) throws -> Float? {
            guard let tensor = constants[name] else { return nil }
            let values = try tensors.floats(tensor, name: name)
            return values.count == 1 ? values.item() : nil
        }
        let expectedScale: Float = first.opType == "Div" ? Float(2).squareRoot() : Float(0.5).squareRoot()
        let (scale, one, half) = (try scalar(scaleName), try scalar(oneName), try scalar(halfName))
        guard let scale, let one, let half, abs(scale - expectedScale) <= 1e-6, one == 1, half == 0.5 else {
            let shown = [scale, one, half].map { $0.map { "\($0)" } ?? "not a constant" }.joined(separator: ", ")
            let form = halfFirst == nil ? "\(first.opType), Erf, Add, Mul, Mul" : "Mul, \(first.opType), Erf, Add, Mul"
            throw NodeContext(node: nodes[start], index: start, path: path).fail(
                "begins GELU's form x · (1 + erf(x / √2)) · 0.5 (\(form)), but with the "
                    + "constants \(shown) where \(first.opType == "Div" ? "√2" : "1/√2"), 1 and 0.5 belong; Backprop reads "
                    + "that form only as the exact GELU")
        }
        return (last.output[0], index)
    }

    /// SiLU written as `x · sigmoid(x)`, as both exporters write `nn.SiLU` and `F.silu` (ONNX has
    /// no SiLU operator) and as `y * torch.sigmoid(y)` is exported: the node at `start` is
    /// `Sigmoid(x)`, and the next node (`Constant` nodes between allowed) a `Mul` of `x` and its
    /// output, either side. Returns the sigmoid's and the `Mul`'s outputs and the index of the node
    /// after the `Mul`, or `nil` when the nodes do not have that form (a `Sigmoid` alone is read
    /// as the layer).
    private mutating func readSigmoidSiLU(
        at start: Int, input x: String
    ) throws -> (sigmoid: String, output: String, next: Int)? {
        let nodes = graph.node
        let sigmoid = nodes[start]
        guard sigmoid.opType == "Sigmoid", sigmoid.input == [x], let s = sigmoid.output.first, !s.isEmpty, s != x
        else { return nil }
        var index = start + 1
        while index < nodes.count && nodes[index].opType == "Constant" { index += 1 }
        guard index < nodes.count else { return nil }
        let product = nodes[index]
        guard product.opType == "Mul", product.input.count == 2, Set(product.input) == [x, s],
            let output = product.output.first, !output.isEmpty
        else { return nil }
        for constant in (start + 1)..<index {
            try readConstant(nodes[constant], NodeContext(node: nodes[constant], index: constant, path: path))
        }
        return (s, output, index + 1)
    }

    /// Why a Pad of zeros by `padding` that no `Conv` or `AveragePool` takes is refused: the
    /// node that reads it (`nil`: the graph's output).
    private static func unfoldedPad(_ padding: Int, readBy reader: NodeContext?) -> String {
        let read =
            reader.map { "node \($0.index) (\($0.node.opType)) reads it" } ?? "it is the graph's output"
        let maxPool =
            reader?.node.opType == "MaxPool" ? " (a MaxPool pads with -inf, not zeros: its padding is not this)" : ""
        return "pads each image by \(padding) on every side with zeros, and \(read)\(maxPool); Backprop has no padding "
            + "layer: it reads a Pad of zeros only into the Conv or AveragePool right after it, as their padding"
    }

    /// A `Pad` of zeros, as the padding it adds on every side of each image: 0 when all its pads
    /// are 0 (the identity, read as nothing), `p` for `nn.ZeroPad2d(p)` (pads `[0, 0, p, p, 0, 0,
    /// p, p]` of images `[n, c, h, w]`). Backprop has no padding layer: the `Conv` or
    /// `AveragePool` right after the Pad takes `p` into its own padding (see `read`), so
    /// `ZeroPad2d(1), Conv2d(…, padding=1)` reads as a convolution padded by 2. The TorchScript
    /// exporter writes such a Pad for `nn.ZeroPad2d` at every opset, and for `nn.AvgPool2d(k, s, p)`
    /// (its padding counted in each mean) at opset 9; a Pad of zeros before each AveragePool at
    /// opsets 9 and 10. Its pads are an attribute before opset 11, then the second input (a
    /// constant, or computed from constants), with the `constant_value` third and (opset 18)
    /// `axes` fourth. Refused: another value or `mode` than zeros, padding that differs between
    /// sides or touches the batch or channel axes, or cropping (negative pads).
    private func readPad(_ node: Onnx_NodeProto, _ at: NodeContext, shape: [Int]?) throws -> Int {
        let pads: [Int]
        var axes: [Int]?
        var value: Float = 0
        if opset >= 11 {
            try at.expectInputs(2...4)
            let name = node.input[1]
            guard let tensor = constants[name] else {
                throw at.fail("reads its pads from \(quoted(name)), which is not a constant")
            }
            pads = try tensors.integers(tensor, name: name)
            if pads.allSatisfy({ $0 == 0 }) { return 0 }  // the identity, whatever its value
            if node.input.count >= 3 && !node.input[2].isEmpty {
                let name = node.input[2]
                guard let tensor = constants[name] else {
                    throw at.fail("reads its constant_value from \(quoted(name)), which is not a constant")
                }
                let values = try tensors.floats(tensor, name: name)
                guard values.count == 1 else {
                    throw at.fail("has a constant_value of shape \(values.shape); expected one value")
                }
                value = values.item()
            }
            if node.input.count == 4 && !node.input[3].isEmpty {
                let name = node.input[3]
                guard let tensor = constants[name] else {
                    throw at.fail("reads its axes from \(quoted(name)), which is not a constant")
                }
                axes = try tensors.integers(tensor, name: name)
            }
        } else {
            try at.expectInputs(1...1)
            pads = try at.ints("pads", default: [])
            value = try at.float("value", default: 0)
        }
        guard !pads.isEmpty else { throw at.fail("has no pads") }
        if pads.allSatisfy({ $0 == 0 }) { return 0 }
        let shown = pads.count <= 16 ? "\(pads)" : "[\(pads.prefix(16).map(String.init).joined(separator: ", ")), …]"
        let mode = try at.string("mode", default: "constant")
        guard mode == "constant" && value == 0 else {
            let how = mode == "constant" ? "the value \(value)" : "mode \(quoted(mode))"
            throw at.fail(
                "pads by \(shown) with \(how); Backprop reads a Pad of zeros only (nn.ZeroPad2d), into the Conv or "
                    + "AveragePool after it")
        }
        let current = try known(shape, at)
        let rank = current.count + 1
        let listed = try (axes ?? Array(0..<rank)).map { axis in
            guard (-rank..<rank).contains(axis) else {
                throw at.fail("pads the axis \(axis) of a value of rank \(rank)")
            }
            return axis < 0 ? axis + rank : axis
        }
        guard Set(listed).count == listed.count else { throw at.fail("lists an axis twice in its axes \(axes!)") }
        guard pads.count == 2 * listed.count else {
            throw at.fail("has \(pads.count) pads for \(listed.count) axes; expected \(2 * listed.count)")
        }
        var (begins, ends) = ([Int](repeating: 0, count: rank), [Int](repeating: 0, count: rank))
        for (position, axis) in listed.enumerated() {
            (begins[axis], ends[axis]) = (pads[position], pads[position + listed.count])
        }
        guard rank == 4, begins[0...1].allSatisfy({ $0 == 0 }), ends[0...1].allSatisfy({ $0 == 0 }),
            let padding = begins.last, Set(begins[2...] + ends[2...]) == [padding], padding > 0,
            padding <= GraphReader.largestAttribute
        else {
            throw at.fail(
                "pads [n] + \(current) by \(shown); Backprop reads a Pad of zeros only when it pads the height and "
                    + "width of images by the same amount on every side (nn.ZeroPad2d(p)), into the Conv or AveragePool "
                    + "after it")
        }
        return padding
    }

    /// `shape` (one example's, `[c, h, w]`) after a Pad of `padding` on every side of each image.
    private func padded(_ shape: [Int]?, by padding: Int) -> [Int]? {
        guard padding > 0, let shape, shape.count == 3 else { return shape }
        return [shape[0], shape[1] + 2 * padding, shape[2] + 2 * padding]
    }

    /// PyTorch's momentum for ONNX's (which weighs the running statistics, PyTorch's the batch):
    /// the shortest decimal `m` whose `1 - m`, rounded to a Float as the exporters write it, is
    /// `onnx` (so `0.9` gives `0.1`, not `0.100000024`), or `nil` outside [0, 1].
    static func pyTorchMomentum(_ onnx: Float) -> Float? {
        guard onnx >= 0 && onnx <= 1 else { return nil }
        let exact = 1 - Double(onnx)
        for digits in 1...9 {
            if let candidate = Float(String(format: "%.\(digits)g", exact)), Float(1 - Double(candidate)) == onnx {
                return candidate
            }
        }
        return Float(exact)
    }

    /// `BatchNormalization` in inference as a `BatchNorm` with its running statistics, its
    /// epsilon and its momentum (as PyTorch's).
    private func readBatchNorm(_ node: Onnx_NodeProto, _ at: NodeContext, shape: [Int]?) throws -> ReadLayer {
        try at.expectInputs(5...5)
        guard try !at.flag("training_mode", default: false) else {
            throw at.fail("normalises in training mode; Backprop reads inference graphs")
        }
        // Before opset 14 a node with the batch's statistics among its outputs (5 of them, as
        // torch.onnx.export writes in TrainingMode.TRAINING) normalises by that batch's statistics,
        // not the running ones: ONNX Runtime's numbers would not be Backprop's.
        let statistics = node.output.dropFirst().filter { !$0.isEmpty }.count
        guard statistics == 0 else {
            throw at.fail(
                "has \(statistics + 1) outputs, the batch's statistics among them: it normalises in training mode "
                    + "(by each batch's mean and variance); Backprop reads inference graphs (one output)")
        }
        let epsilon = try at.float("epsilon", default: 1e-5)
        guard epsilon >= 0 && epsilon.isFinite else {
            throw at.fail("has epsilon \(epsilon); expected a finite number >= 0")
        }
        let onnxMomentum = try at.float("momentum", default: 0.9)
        guard let momentum = Self.pyTorchMomentum(onnxMomentum) else {
            throw at.fail("has momentum \(onnxMomentum); expected a number in [0, 1] (PyTorch's 1 - momentum)")
        }
        let current = try known(shape, at)
        guard current.count == 1 || current.count == 3 else {
            throw at.fail("normalises [n] + \(current); Backprop's batch norm takes [n, c] or [n, c, h, w]")
        }
        var layer = ReadLayer(entry: .batchNorm(eps: epsilon, momentum: momentum))
        for (position, name) in [(1, "w"), (2, "b"), (3, "running_mean"), (4, "running_var")] {
            let tensor = try floatInput(at, position, name == "w" ? "scale" : name == "b" ? "bias" : name)
            guard tensor.shape == [current[0]] else {
                throw at.fail(
                    "has a \(name) of shape \(tensor.shape) for \(current[0]) channels; expected [\(current[0])]")
            }
            layer.tensors[name] = try finite(tensor, at, name)
        }
        // The output divides by √(running_var + ε): a negative variance, or 0 with ε 0, gives NaN.
        if let channel = layer.tensors["running_var"]!.values.firstIndex(where: { $0 < 0 || $0 + epsilon <= 0 }) {
            let variance = layer.tensors["running_var"]!.values[channel]
            throw at.fail(
                "has the running variance \(variance) for channel \(channel) with epsilon \(epsilon); expected "
                    + "running_var + epsilon > 0, with running_var ≥ 0")
        }
        return layer
    }

    // MARK: - Helpers

    /// The side `k` of a pool's square window, its `kernel_shape` `[k, k]`, at most
    /// ``largestAttribute``.
    ///
    /// - Throws: an error naming the node and the `kernel_shape` found: missing (ONNX requires
    ///   it), not two sizes, a size below 1 or too large, or not square.
    private func poolKernel(_ at: NodeContext) throws -> Int {
        let kernel = try at.ints("kernel_shape", default: [])
        guard !kernel.isEmpty else {
            throw at.fail("has no kernel_shape; expected the attribute kernel_shape [k, k], which ONNX requires")
        }
        guard kernel.count == 2 else {
            throw at.fail(
                "has the kernel_shape \(kernel); expected two sizes [k, k] (a window over height and width), found "
                    + "\(kernel.count)")
        }
        let largest = GraphReader.largestAttribute
        if let bad = kernel.first(where: { !(1...largest).contains($0) }) {
            throw at.fail("has the kernel_shape \(kernel); expected sizes from 1 to \(largest), found \(bad)")
        }
        guard kernel[0] == kernel[1] else {
            throw at.fail("has the kernel_shape \(kernel); Backprop's pools have square kernels [k, k]")
        }
        return kernel[0]
    }

    /// An attribute pair `[a, a]` (strides), at most ``largestAttribute``.
    private func equalPair(_ at: NodeContext, _ name: String, default value: Int) throws -> Int {
        let pair = try at.ints(name, default: [value, value])
        let largest = GraphReader.largestAttribute
        if let bad = pair.first(where: { !(1...largest).contains($0) }) {
            throw at.fail("has \(name) \(pair); expected sizes from 1 to \(largest), found \(bad)")
        }
        guard pair.count == 2, pair[0] == pair[1] else {
            throw at.fail("has \(name) \(pair); Backprop reads equal ones [s, s], s ≥ 1")
        }
        return pair[0]
    }

    /// The padding on every side of a `Conv` or pool (a `kernel`×`kernel` window moved by
    /// `stride`): its `pads` when they are four equal values; none for `auto_pad` VALID; and for
    /// `auto_pad` SAME_UPPER or SAME_LOWER the padding ONNX defines for the images of `shape`
    /// (`[c, h, w]`), when it is the same on every side. Along each axis of size `in` that padding
    /// is `max((⌈in / stride⌉ - 1) · stride + kernel - in, 0)` in all, half before and half after,
    /// the odd one after (SAME_UPPER) or before (SAME_LOWER): `(kernel - 1) / 2` on each side for
    /// stride 1 and an odd kernel (PyTorch's `padding='same'`). `refusal` ends the error for
    /// automatic padding that differs between sides.
    private func equalPads(
        _ at: NodeContext, kernel: Int, stride: Int, shape: [Int]?, refusal: String
    ) throws -> Int {
        let autoPad = try at.string("auto_pad", default: "NOTSET")
        if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
            // The pads attribute, if any, is not read: ONNX gives a node one or the other.
            let current = try known(shape, at)
            guard current.count == 3 else {
                throw at.fail("pads automatically (\(autoPad)) examples [n] + \(current); expected images [n, c, h, w]")
            }
            var (begins, ends) = ([Int](), [Int]())
            for size in current[1...2] {
                let total = ((size + stride - 1) / stride - 1) * stride + kernel - size
                // A kernel smaller than the stride can leave less than nothing to pad: ONNX Runtime
                // then moves the windows (its first at 1, 5, 9, … for a 1×1 kernel moved by 4 over
                // 28), which no padding of Backprop's does.
                guard total >= 0 else {
                    throw at.fail(
                        "pads automatically (\(autoPad)) by \(total) in all for its \(current[1])×\(current[2]) input "
                            + "(a kernel of \(kernel) moved by \(stride)): less than nothing, which moves its windows; "
                            + "\(refusal)")
                }
                let (half, rest) = (total / 2, total - total / 2)
                begins.append(autoPad == "SAME_UPPER" ? half : rest)
                ends.append(autoPad == "SAME_UPPER" ? rest : half)
            }
            let pads = begins + ends
            guard Set(pads).count == 1 else {
                throw at.fail(
                    "pads automatically (\(autoPad)) by \(pads) for its \(current[1])×\(current[2]) input, not the "
                        + "same on every side; \(refusal) (a stride of 1 and an odd kernel would)")
            }
            return pads[0]
        }
        guard autoPad == "NOTSET" || autoPad == "VALID" else {
            throw at.fail("has auto_pad \(quoted(autoPad)); expected NOTSET, VALID, SAME_UPPER or SAME_LOWER")
        }
        let pads = try at.ints("pads", default: [0, 0, 0, 0])
        guard pads.count == 4, Set(pads).count == 1 else {
            throw at.fail("has pads \(pads); Backprop pads every side by the same amount")
        }
        guard (0...GraphReader.largestAttribute).contains(pads[0]) else {
            throw at.fail("has pads \(pads); expected 0 to \(GraphReader.largestAttribute)")
        }
        return autoPad == "VALID" ? 0 : pads[0]
    }

    /// `shape`, or an error when the graph's input did not give it and no layer set it yet.
    private func known(_ shape: [Int]?, _ at: NodeContext) throws -> [Int] {
        guard let shape else {
            throw at.fail("comes before the example's shape is known: the graph's input gives no shape per example")
        }
        return shape
    }

    /// `tensor`, or an error naming the node and the first value that is not finite.
    private func finite(_ tensor: Tensor, _ at: NodeContext, _ what: String) throws -> Tensor {
        let bad = tensor.withUnsafeBufferPointer { values in values.firstIndex { !$0.isFinite }.map { ($0, values[$0]) }
        }
        if let (index, value) = bad {
            throw at.fail("has \(value.isNaN ? "NaN" : "an infinity") in its \(what) at index \(index)")
        }
        return tensor
    }
}

/// How far the graph's first nodes have normalised the input.
enum NormalizationStep {
    /// No normalisation (yet).
    case none
    /// `Div` 255: pixels scaled to 0…1.
    case scaled
    /// `Sub` the mean, waiting for the `Div` by the standard deviation (1 if none follows).
    case centered(mean: Float)
    /// `(x - mean) / std`.
    case done(mean: Float, std: Float)

    /// The normalisation read, if any: `(0, 1)` after `Div` 255 alone.
    var normalization: (mean: Double, std: Double)? {
        switch self {
        case .none: nil
        case .scaled: (0, 1)
        case .centered(let mean): (Double(mean), 1)
        case .done(let mean, let std): (Double(mean), Double(std))
        }
    }
}

/// One value of an integer vector computed from a shape: the batch size, which the graph leaves
/// open, or a number.
enum ShapeValue: Equatable, CustomStringConvertible {
    case batch
    case size(Int)

    /// The size, or `nil` for the batch size (unknown until the graph runs).
    var knownSize: Int? {
        if case .size(let value) = self { return value }
        return nil
    }

    var description: String {
        switch self {
        case .batch: "n"
        case .size(let value): "\(value)"
        }
    }
}

/// A node and where it is, for reading its attributes and naming it in errors.
struct NodeContext {
    let node: Onnx_NodeProto
    let index: Int
    let path: String

    /// The error `node I (NAME, OP) problem`, naming the file.
    func fail(_ problem: String) -> DataError {
        let name = node.name.isEmpty ? "" : quoted(node.name) + ", "
        let position = index >= 0 ? "node \(index) " : "node "
        return DataError(path: path, problem: "\(position)(\(name)\(node.opType)) \(problem)")
    }

    /// Throws unless the node has a count of inputs in `range`.
    func expectInputs(_ range: ClosedRange<Int>) throws {
        guard range.contains(node.input.count) else {
            throw fail(
                "has \(node.input.count) inputs; expected \(range.lowerBound == range.upperBound ? "\(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)")"
            )
        }
    }

    private func attribute(_ name: String) -> Onnx_AttributeProto? {
        node.attribute.first { $0.name == name }
    }

    /// The tensor attribute `name`, or `nil` when the node has none.
    func tensor(_ name: String) throws -> Onnx_TensorProto? {
        guard let attribute = attribute(name) else { return nil }
        guard attribute.type == .tensor || (!attribute.hasType && attribute.hasT) else {
            throw fail("has the attribute \(name) of type \(attribute.type); expected a tensor")
        }
        return attribute.t
    }

    func int(_ name: String, default value: Int) throws -> Int {
        guard let attribute = attribute(name) else { return value }
        guard attribute.type == .int || (!attribute.hasType && attribute.hasI) else {
            throw fail("has the attribute \(name) of type \(attribute.type); expected an integer")
        }
        return Int(attribute.i)
    }

    /// The integer attribute `name` that ONNX defines as 0 or 1 (`transA`, `transB`, `ceil_mode`,
    /// `keepdims`, …), as a `Bool`; `value` when the node has none.
    ///
    /// - Throws: an error naming the node, the attribute and the value found when it is another
    ///   number (`has the attribute transB 5; expected 0 or 1`).
    func flag(_ name: String, default value: Bool) throws -> Bool {
        let found = try int(name, default: value ? 1 : 0)
        guard found == 0 || found == 1 else {
            throw fail("has the attribute \(name) \(found); expected 0 or 1")
        }
        return found == 1
    }

    func ints(_ name: String, default value: [Int]) throws -> [Int] {
        guard let attribute = attribute(name) else { return value }
        guard attribute.type == .ints || !attribute.hasType else {
            throw fail("has the attribute \(name) of type \(attribute.type); expected integers")
        }
        return attribute.ints.map { Int($0) }
    }

    func float(_ name: String, default value: Float) throws -> Float {
        guard let attribute = attribute(name) else { return value }
        guard attribute.type == .float || (!attribute.hasType && attribute.hasF) else {
            throw fail("has the attribute \(name) of type \(attribute.type); expected a float")
        }
        return attribute.f
    }

    func string(_ name: String, default value: String) throws -> String {
        guard let attribute = attribute(name) else { return value }
        guard attribute.type == .string || !attribute.hasType, let text = String(data: attribute.s, encoding: .utf8)
        else {
            throw fail("has the attribute \(name) of type \(attribute.type); expected a string")
        }
        return text
    }
}

/// `name` in double quotes, its control characters escaped, cut at 80 characters.
func quoted(_ name: String) -> String {
    let shown = name.count > 80 ? String(name.prefix(77)) + "…" : name
    return shown.debugDescription
}

extension Onnx_TensorProto {
    /// The tensor with the dimensions `dims` gives for it.
    fileprivate func withDims(_ dims: (Onnx_TensorProto) -> [Int]) -> Onnx_TensorProto {
        var tensor = self
        tensor.dims = dims(self).map(Int64.init)
        return tensor
    }
}
