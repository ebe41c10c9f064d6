import BackpropCore
import BackpropNetwork
import Foundation

// Each layer as its ONNX node, with its tensors as initializers (the table at the top of
// ONNXExport.swift), and the shape of one example after it, checked as the layer would check it.

extension ONNXExport {
    /// The ONNX operator of `layer` (`Sigmoid, Mul` for the two nodes of a `SiLU`), or an error
    /// naming layer `index` when it has none.
    static func operatorName(of layer: any Layer, index: Int) throws -> String {
        switch layer {
        case is Lin: "Gemm"
        case is Conv2d: "Conv"
        case is MaxPool2d: "MaxPool"
        case is AvgPool2d: "AveragePool"
        case is Flatten: "Flatten"
        case is Dropout: "Dropout"
        case is BatchNorm: "BatchNormalization"
        case is ReLU: "Relu"
        case is Tanh: "Tanh"
        case is Sigmoid: "Sigmoid"
        case is LeakyReLU: "LeakyRelu"
        case is GELU: "Gelu"
        case is SiLU: "Sigmoid, Mul"  // two nodes: ONNX has no SiLU operator
        case is Hardtanh: "Clip"
        default: throw ONNXExportError("layer \(index), a \(type(of: layer)), has no ONNX operator")
        }
    }
}

/// The nodes and initializers of a graph, in the order they are added.
struct GraphBuilder {
    /// The nodes, in the order they run.
    private(set) var nodes: [Onnx_NodeProto] = []
    /// The constant tensors the nodes read (weights, running statistics, scalars).
    private(set) var initializers: [Onnx_TensorProto] = []

    /// `x = (input / 255 - mean) / std`, in three nodes and in Float, as FashionMNIST computes
    /// each pixel: `Div` by `pixel_scale` (255), `Sub` `input_mean`, `Div` by `input_std`.
    /// - Throws: ``ONNXExportError`` when the mean is not finite or the standard deviation is not
    ///   a positive finite number.
    mutating func addNormalization(mean: Double, std: Double, input: String, output: String) throws {
        guard mean.isFinite, std.isFinite, std > 0, Float(std) > 0 else {
            throw ONNXExportError(
                "the normalisation (mean \(mean), standard deviation \(std)) must have a finite mean and a positive "
                    + "standard deviation")
        }
        try addInitializer("pixel_scale", Tensor(shape: [], values: [255]))
        try addInitializer("input_mean", Tensor(shape: [], values: [Float(mean)]))
        try addInitializer("input_std", Tensor(shape: [], values: [Float(std)]))
        addNode("Div", name: "normalize.scale", inputs: [input, "pixel_scale"], output: "pixels_scaled")
        addNode("Sub", name: "normalize.center", inputs: ["pixels_scaled", "input_mean"], output: "pixels_centered")
        addNode("Div", name: "normalize.standardize", inputs: ["pixels_centered", "input_std"], output: output)
    }

    /// Adds layer `index` as the node `layers.index` from `input` to `output`, with its tensors, and
    /// returns the shape of one example after it.
    ///
    /// - Parameter shape: the shape of one example before the layer.
    /// - Throws: ``ONNXExportError`` when the layer has no ONNX operator, does not fit `shape`, or
    ///   holds a tensor that is not finite.
    mutating func addLayer(_ layer: any Layer, index: Int, input: String, output: String, shape: [Int]) throws -> [Int]
    {
        let op = try ONNXExport.operatorName(of: layer, index: index)
        let name = "layers.\(index)"
        // The error for a layer (`what`) that expects examples of shape `expected`, not `shape`.
        func mismatch(_ what: String, expects expected: String) -> ONNXExportError {
            ONNXExportError("layer \(index), \(what), expects examples of shape \(expected), found \(shape)")
        }
        switch layer {
        case let lin as Lin:
            let (nIn, nOut) = (lin.w.shape[0], lin.w.shape[1])
            guard shape == [nIn] else { throw mismatch("Lin(\(nIn) → \(nOut))", expects: "[\(nIn)]") }
            try addInitializer(name + ".w", lin.w)  // (nIn, nOut): Gemm's B, as it is
            var inputs = [input, name + ".w"]
            if lin.hasBias {
                try addInitializer(name + ".b", lin.b)  // (nOut)
                inputs.append(name + ".b")
            }
            addNode(op, name: name, inputs: inputs, output: output)
            return [nOut]
        case let conv as Conv2d:
            let (cOut, cIn) = (conv.w.shape[0], conv.w.shape[1])
            let (kh, kw) = conv.kernel
            let (s, p) = (conv.stride, conv.padding)
            let what = "Conv2d(\(cIn) → \(cOut), kernel \(kh)×\(kw), padding \(p))"
            guard shape.count == 3, shape[0] == cIn else {
                throw mismatch(what, expects: "[\(cIn), h, w]")
            }
            guard kh <= shape[1] + 2 * p, kw <= shape[2] + 2 * p else {
                throw mismatch(what, expects: "[\(cIn), h, w] with h ≥ \(kh - 2 * p) and w ≥ \(kw - 2 * p)")
            }
            try addInitializer(name + ".w", conv.w)  // (cOut, cIn, kh, kw)
            var inputs = [input, name + ".w"]
            if let b = conv.b {
                try addInitializer(name + ".b", b)  // (cOut)
                inputs.append(name + ".b")
            }
            addNode(
                op, name: name, inputs: inputs, output: output,
                attributes: [
                    .ints("kernel_shape", [kh, kw]), .ints("strides", [s, s]), .ints("pads", [p, p, p, p]),
                ])
            return [cOut, (shape[1] + 2 * p - kh) / s + 1, (shape[2] + 2 * p - kw) / s + 1]
        case let pool as MaxPool2d:
            return try addPool(
                op, name: name, "MaxPool2d(\(pool.pythonArguments))", kernel: pool.kernel, stride: pool.stride,
                padding: pool.padding, countIncludePad: true, input: input, output: output, shape: shape,
                mismatch: mismatch)
        case let pool as AvgPool2d:
            return try addPool(
                op, name: name, "AvgPool2d(\(pool.pythonArguments))", kernel: pool.kernel, stride: pool.stride,
                padding: pool.padding, countIncludePad: pool.countIncludePad, input: input, output: output,
                shape: shape, mismatch: mismatch)
        case is Flatten:
            addNode(op, name: name, inputs: [input], output: output, attributes: [.int("axis", 1)])
            return [shape.reduce(1, *)]
        case let dropout as Dropout:
            // Without its training_mode input, Dropout is the identity (inference).
            try addInitializer(name + ".ratio", Tensor(shape: [], values: [dropout.p]))
            addNode(op, name: name, inputs: [input, name + ".ratio"], output: output)
            return shape
        case let norm as BatchNorm:
            let c = norm.w.count
            guard (shape.count == 1 || shape.count == 3), shape[0] == c else {
                throw mismatch("BatchNorm(features: \(c))", expects: "[\(c)] or [\(c), h, w]")
            }
            for (suffix, tensor) in [
                ("w", norm.w), ("b", norm.b), ("running_mean", norm.runningMean), ("running_var", norm.runningVar),
            ] {
                try addInitializer("\(name).\(suffix)", tensor)  // (c)
            }
            // Inference (no training_mode): (inp - running_mean) / √(running_var + epsilon) · w + b.
            // ONNX's momentum weighs the running statistics (`running · momentum + batch · (1 -
            // momentum)`), PyTorch's the batch: 1 - momentum, as torch.onnx.export writes it (only
            // training reads it; ONNXImport reads it back).
            addNode(
                op, name: name,
                inputs: [input, name + ".w", name + ".b", name + ".running_mean", name + ".running_var"],
                output: output,
                attributes: [.float("epsilon", norm.eps), .float("momentum", Float(1 - Double(norm.momentum)))])
            return shape
        case let leaky as LeakyReLU:
            addNode(op, name: name, inputs: [input], output: output, attributes: [.float("alpha", leaky.slope)])
            return shape
        case is GELU:
            addNode(op, name: name, inputs: [input], output: output, attributes: [.string("approximate", "none")])
            return shape
        case let hardtanh as Hardtanh:
            // Clip's bounds are inputs from opset 11.
            try addInitializer(name + ".min", Tensor(shape: [], values: [hardtanh.min]))
            try addInitializer(name + ".max", Tensor(shape: [], values: [hardtanh.max]))
            addNode(op, name: name, inputs: [input, name + ".min", name + ".max"], output: output)
            return shape
        case is SiLU:
            // x · sigmoid(x), as torch.onnx.export writes nn.SiLU: `layers.I.sigmoid`, then the
            // node `layers.I` multiplies.
            addNode("Sigmoid", name: name + ".sigmoid", inputs: [input], output: name + ".sigmoid")
            addNode("Mul", name: name, inputs: [input, name + ".sigmoid"], output: output)
            return shape
        default:  // ReLU, Tanh, Sigmoid: elementwise, no attributes.
            addNode(op, name: name, inputs: [input], output: output)
            return shape
        }
    }

    /// A `MaxPool` or `AveragePool` node, padded alike on every side and rounding down, as
    /// Backprop's pools; an average's padding counted (`count_include_pad` 1) or left out (0).
    private mutating func addPool(
        _ op: String, name: String, _ what: String, kernel: Int, stride: Int, padding: Int, countIncludePad: Bool,
        input: String, output: String, shape: [Int], mismatch: (String, String) -> ONNXExportError
    ) throws -> [Int] {
        let smallest = kernel - 2 * padding
        guard shape.count == 3, smallest <= shape[1], smallest <= shape[2] else {
            throw mismatch(what, "[c, h, w] with h ≥ \(smallest) and w ≥ \(smallest)")
        }
        var attributes: [Attribute] = [.ints("kernel_shape", [kernel, kernel]), .ints("strides", [stride, stride])]
        if padding > 0 { attributes.append(.ints("pads", [padding, padding, padding, padding])) }
        // The mean is over kernel² elements, the padding counted as zeros (PyTorch's default), or
        // over the window's elements in the image (`excludepad`, ONNX's default); without padding
        // every window is whole and the two readings agree.
        if op == "AveragePool" {
            attributes.append(.int("count_include_pad", padding > 0 && countIncludePad ? 1 : 0))
        }
        addNode(op, name: name, inputs: [input], output: output, attributes: attributes)
        return [
            shape[0], (shape[1] + 2 * padding - kernel) / stride + 1, (shape[2] + 2 * padding - kernel) / stride + 1,
        ]
    }

    /// An attribute of a node.
    enum Attribute {
        case int(String, Int)
        case ints(String, [Int])
        case float(String, Float)
        case string(String, String)

        var proto: Onnx_AttributeProto {
            var attribute = Onnx_AttributeProto()
            switch self {
            case .int(let name, let value):
                attribute.name = name
                attribute.type = .int
                attribute.i = Int64(value)
            case .ints(let name, let values):
                attribute.name = name
                attribute.type = .ints
                attribute.ints = values.map(Int64.init)
            case .float(let name, let value):
                attribute.name = name
                attribute.type = .float
                attribute.f = value
            case .string(let name, let value):
                attribute.name = name
                attribute.type = .string
                attribute.s = Data(value.utf8)
            }
            return attribute
        }
    }

    /// Appends the node `op` (default domain) from `inputs` to `output`.
    private mutating func addNode(
        _ op: String, name: String, inputs: [String], output: String, attributes: [Attribute] = []
    ) {
        var node = Onnx_NodeProto()
        node.opType = op
        node.name = name
        node.input = inputs
        node.output = [output]
        node.attribute = attributes.map(\.proto)
        nodes.append(node)
    }

    /// Appends `tensor` as the float32 initializer `name`, its values little-endian in `raw_data`.
    /// - Throws: ``ONNXExportError`` naming `name` when a value is NaN or infinite.
    private mutating func addInitializer(_ name: String, _ tensor: Tensor) throws {
        let bits = tensor.withUnsafeBufferPointer { values in
            values.allSatisfy(\.isFinite) ? values.map { $0.bitPattern.littleEndian } : nil
        }
        guard let bits else { throw ONNXExportError("\(name) holds NaN or infinite values") }
        var proto = Onnx_TensorProto()
        proto.name = name
        proto.dims = tensor.shape.map(Int64.init)
        proto.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        proto.rawData = bits.withUnsafeBytes { Data($0) }
        initializers.append(proto)
    }
}
