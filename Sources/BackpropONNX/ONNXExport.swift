import BackpropCore
import BackpropData
import BackpropNetwork
import Foundation
import SwiftProtobuf

// A model as an ONNX graph that ONNX Runtime runs to Backprop's logits. One node per layer, named
// after the layer's checkpoint prefix, its tensors the checkpoint's, under the checkpoint's names:
//
//     pixels (n, …) ─Div 255─▶ ─Sub input_mean─▶ ─Div input_std─▶ x      (with a normalisation)
//     x ─layers.0─▶ layers.0.out ─layers.1─▶ … ─layers.L─▶ logits (n, c)
//
//     Backprop layer I                   ONNX node layers.I (opset 20)               initializers
//     Lin                                Gemm(inp, w, b)  = inp • w + b              layers.I.w (nIn, nOut), not
//                                        (Gemm(inp, w) without a bias)               transposed; layers.I.b (nOut)
//                                                                                    if any
//     Conv2d(stride: s, padding: p)      Conv, kernel_shape [kh, kw], strides [s, s],
//                                        pads [p, p, p, p]                           layers.I.w (cOut, cIn, kh, kw),
//                                                                                    layers.I.b (cOut) if any
//     MaxPool2d(kernel: k, stride: s,    MaxPool, kernel_shape [k, k], strides [s, s],
//       padding: p)                      pads [p, p, p, p] if p > 0
//     AvgPool2d(kernel: k, stride: s,    AveragePool, the same, count_include_pad 1 if
//       padding: p, countIncludePad:)    p > 0 and countIncludePad (the padding's zeros in
//                                        each mean), else 0
//     Flatten                            Flatten, axis 1
//     Dropout(p:)                        Dropout(inp, ratio), inference: the identity  layers.I.ratio ()
//     BatchNorm (n, c) or (n, c, h, w)   BatchNormalization, epsilon eps, inference   layers.I.w, layers.I.b,
//                                        (running statistics; momentum 1 - momentum) layers.I.running_mean, _var (c)
//     ReLU, Tanh, Sigmoid                Relu, Tanh, Sigmoid
//     LeakyReLU(slope:)                  LeakyRelu, alpha slope
//     GELU                               Gelu (exact: approximate "none"; new in opset 20)
//     SiLU                               Sigmoid (node layers.I.sigmoid), then Mul(inp, it)
//     Hardtanh(min:max:) (ReLU6)         Clip(inp, min, max)                         layers.I.min, layers.I.max ()
//
// Pools round down (ceil_mode 0), as Backprop's; without padding every window is whole, so the
// mean is over kernel² elements whatever count_include_pad says.

/// Writes a Backprop model as an ONNX model (protobuf, opset 20) that ONNX Runtime runs to the
/// same logits as `Model.predict(_:)` in evaluation mode.
///
/// The graph's input is named ``pixelsInputName`` (`pixels`) when a normalisation is given: the
/// raw pixel values `0…255` as float32, of shape `[n] + inputShape` (`[n, 1, 28, 28]` for a
/// convnet on Fashion-MNIST, `[n, 784]` for an MLP), with `n` dynamic; the graph computes
/// `x = (pixels / 255 - mean) / std`, in that order and in Float, as `backprop evaluate` prepares
/// the images. Without a normalisation the input is ``modelInputName`` (`x`), the model's own input
/// of the same shape. The output ``outputName`` (`logits`) has shape `[n] + the last layer's shape`
/// (`[n, 10]`); no softmax is applied.
///
/// Dropout is the identity and batch norm uses its running statistics, whatever mode the model is
/// in: the graph is the model as `backprop evaluate` runs it. Each layer is one node named
/// `layers.I` (a `SiLU` is two: `layers.I.sigmoid`, then the `Mul` `layers.I`), its output `layers.I.out` and its tensors `layers.I.w`, `layers.I.b`, … as in
/// Backprop's checkpoints and in the same layouts (a `Lin`'s `w` is `(nIn, nOut)`: `Gemm`'s `B`,
/// not transposed); the table at the top of `ONNXExport.swift` lists every layer's operator.
public enum ONNXExport {
    /// The ONNX operator set the graph uses: 20, the first with `Gelu` (ONNX 1.15; ONNX Runtime
    /// 1.17 and later run it).
    public static let opsetVersion = 20
    /// The ONNX IR version of the file: 9, the version that came with opset 20.
    public static let irVersion = 9
    /// The graph's input when it normalises: pixels `0…255`, float32, `[n] + inputShape`.
    public static let pixelsInputName = "pixels"
    /// The graph's input when it does not normalise: the model's input, float32, `[n] + inputShape`.
    public static let modelInputName = "x"
    /// The graph's output: the last layer's output, float32, `[n, c]` (logits for classification).
    public static let outputName = "logits"

    /// The name of the graph's input: ``pixelsInputName`` with a normalisation, else
    /// ``modelInputName``.
    public static func inputName(normalizing: Bool) -> String {
        normalizing ? pixelsInputName : modelInputName
    }

    /// The ONNX operator of each of `model`'s layers, in order: `Conv`, `BatchNormalization`,
    /// `Relu`, `MaxPool`, `Flatten`, `Dropout`, `Gemm`, … (see the table at the top of
    /// `ONNXExport.swift`).
    ///
    /// - Throws: ``ONNXExportError`` naming the first layer that has no ONNX operator (a layer
    ///   type of the user's own).
    public static func operators(of model: Model) throws -> [String] {
        try model.layers.enumerated().map { index, layer in try operatorName(of: layer, index: index) }
    }

    /// The serialized ONNX model (`ModelProto`) of `model`.
    ///
    /// - Parameters:
    ///   - model: a model of Backprop's layers (`Lin`, `Conv2d`, `MaxPool2d`, `AvgPool2d`,
    ///     `Flatten`, `Dropout`, `BatchNorm`, `ReLU`, `Tanh`, `Sigmoid`, `LeakyReLU`, `GELU`, `SiLU`, `Hardtanh`);
    ///     its mode does not matter (see ``ONNXExport``).
    ///   - inputShape: the shape of one example, `[1, 28, 28]` or `[784]` (see
    ///     `Checkpoint.inputShape(path:)`); the graph's input is `[n] + inputShape`.
    ///   - normalization: the mean and standard deviation of the training pixels after `/ 255`
    ///     (`Checkpoint.normalization(path:)`), put at the front of the graph so that it takes raw
    ///     pixels; `nil` for a graph that takes the model's input as it is.
    ///   - metadata: entries for the model's `metadata_props` (the command line adds `layers`, the
    ///     model description); `input_shape`, and `input_mean` and `input_std` with a
    ///     normalisation, are added here.
    /// - Returns: the bytes of the `.onnx` file.
    /// - Throws: ``ONNXExportError`` naming the layer that has no ONNX operator or does not fit the
    ///   shape it receives (`layer 0, Lin(784 → 10), expects examples of shape [784], found
    ///   [1, 28, 28]`), an input shape that is empty or has a size below 1, a normalisation that
    ///   is not finite (or a standard deviation that is not positive), a tensor that holds NaN or
    ///   an infinity, or weights of more than 2 GiB (a protobuf message's limit).
    public static func model(
        _ model: Model, inputShape: [Int], normalization: (mean: Double, std: Double)? = nil,
        metadata: [String: String] = [:]
    ) throws -> Data {
        // A protobuf message holds at most 2 GiB - 1 bytes, and this writer keeps the weights in
        // the file (no external data): a larger model is refused before the graph is built (it
        // used to take a minute and end in SwiftProtobuf's `missingRequiredFields`).
        try checkFitsOneMessage(
            weightBytes: model.layers.reduce(0) { total, layer in
                (layer.parameters + layer.buffers.map(\.tensor)).reduce(total) { $0 + $1.count * 4 }
            })
        let proto = try modelProto(model, inputShape: inputShape, normalization: normalization, metadata: metadata)
        do {
            return try proto.serializedBytes()
        } catch {
            throw ONNXExportError("the model could not be encoded as protobuf: \(error)")
        }
    }

    /// Throws unless weights of `weightBytes` bytes fit in one protobuf message, with a MiB left
    /// for the graph, the names and the metadata.
    static func checkFitsOneMessage(weightBytes: Int) throws {
        guard weightBytes > Int(Int32.max) - (1 << 20) else { return }
        throw ONNXExportError(
            "the model's weights take \(weightBytes) bytes, more than an ONNX file holds without external data "
                + "(a protobuf message is at most 2 GiB, 2147483647 bytes); export it as a safetensors state_dict "
                + "(backprop export --format pytorch), which has no such limit")
    }

    /// Writes ``model(_:inputShape:normalization:metadata:)`` to `path`, atomically (see
    /// `writeAtomically(_:to:)`): readers see the old file or the whole new one.
    ///
    /// - Parameters:
    ///   - model: the model, as for ``model(_:inputShape:normalization:metadata:)``.
    ///   - path: the destination, conventionally ending in `.onnx`; its folder must exist.
    ///   - inputShape: the shape of one example.
    ///   - normalization: the inputs' mean and standard deviation after `/ 255`, or `nil`.
    ///   - metadata: more `metadata_props` entries.
    /// - Throws: ``ONNXExportError`` as ``model(_:inputShape:normalization:metadata:)`` does, before
    ///   anything is written; `DataError` naming `path` when it cannot be written (the file there,
    ///   if any, is then left as it was).
    public static func write(
        _ model: Model, to path: String, inputShape: [Int], normalization: (mean: Double, std: Double)? = nil,
        metadata: [String: String] = [:]
    ) throws {
        let bytes = try self.model(model, inputShape: inputShape, normalization: normalization, metadata: metadata)
        try writeAtomically(bytes, to: path)
    }

    /// The `ModelProto` of `model` (see ``model(_:inputShape:normalization:metadata:)``).
    static func modelProto(
        _ model: Model, inputShape: [Int], normalization: (mean: Double, std: Double)?, metadata: [String: String]
    ) throws -> Onnx_ModelProto {
        guard !inputShape.isEmpty, inputShape.allSatisfy({ $0 > 0 }) else {
            throw ONNXExportError(
                "the input shape per example \(inputShape) must have at least one dimension, all of size at least 1")
        }
        guard !model.layers.isEmpty else { throw ONNXExportError("the model has no layers") }
        var graph = GraphBuilder()
        var entries = metadata
        entries["input_shape"] = inputShape.map(String.init).joined(separator: ",")
        let input = inputName(normalizing: normalization != nil)
        var current = input
        if let normalization {
            try graph.addNormalization(mean: normalization.mean, std: normalization.std, input: input, output: "x")
            current = "x"
            entries["input_mean"] = "\(normalization.mean)"
            entries["input_std"] = "\(normalization.std)"
        }
        var shape = inputShape
        for (index, layer) in model.layers.enumerated() {
            let output = index == model.layers.count - 1 ? outputName : "layers.\(index).out"
            shape = try graph.addLayer(layer, index: index, input: current, output: output, shape: shape)
            current = output
        }

        var proto = Onnx_ModelProto()
        proto.irVersion = Int64(irVersion)
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = Int64(opsetVersion)
        proto.opsetImport = [opset]
        proto.producerName = "Backprop"
        proto.docString = "A Backprop model; its layers are the nodes layers.0, layers.1, …, in order."
        proto.metadataProps = entries.sorted { $0.key < $1.key }.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        var graphProto = Onnx_GraphProto()
        graphProto.name = "backprop"
        if let layers = metadata["layers"] { graphProto.docString = layers }
        graphProto.node = graph.nodes
        graphProto.initializer = graph.initializers
        let inputDocumentation =
            normalization.map { "pixels 0…255; the graph computes x = (pixels / 255 - \($0.mean)) / \($0.std)" }
            ?? "the model's input x, as it was trained on"
        graphProto.input = [valueInfo(input, shape: inputShape, documentation: inputDocumentation)]
        graphProto.output = [valueInfo(outputName, shape: shape, documentation: "the last layer's output")]
        proto.graph = graphProto
        return proto
    }

    /// A float32 tensor's name and type: `[n] + shape`, the batch dimension `n` dynamic.
    private static func valueInfo(_ name: String, shape: [Int], documentation: String) -> Onnx_ValueInfoProto {
        var batch = Onnx_TensorShapeProto.Dimension()
        batch.dimParam = "n"
        let dimensions = shape.map { size in
            var dimension = Onnx_TensorShapeProto.Dimension()
            dimension.dimValue = Int64(size)
            return dimension
        }
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensorType.shape.dim = [batch] + dimensions
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type.tensorType = tensorType
        info.docString = documentation
        return info
    }
}

/// A model that cannot be written as ONNX: a layer without an ONNX operator, a shape that does not
/// fit, a normalisation or a tensor that is not finite.
public struct ONNXExportError: Error, CustomStringConvertible {
    /// What is wrong, naming the layer (`layer 3, a MyLayer, has no ONNX operator`).
    public let description: String

    /// Creates the error.
    public init(_ description: String) { self.description = description }
}
