import BackpropCore
import BackpropData
import BackpropNetwork
import Foundation
import SwiftProtobuf

// An ONNX model read back as a Backprop model: the graph must be a chain, one node after another
// from the graph's input to its output (what `torch.onnx.export` writes for an `nn.Sequential`, and
// what ONNXExport writes), and each node one of Backprop's layers:
//
//     ONNX node (default domain, opset 9 or later)         Backprop layer (model description)
//     Gemm(x, B, C), alpha 1, beta 1, transA 0              Lin: w = B (nIn, nOut), or Bᵀ with transB 1;
//                                                           b = C (nOut) or 0              lin OUT
//     MatMul(x, B), then Add(·, C) if C is (nOut)           Lin: w = B, b = C or 0         lin OUT
//     Conv: square kernel, equal strides and pads,          Conv2d, w (cOut, cIn, k, k),
//       dilations 1, group 1                                b (cOut) if given              conv OUT K [stride S] [pad P] [nobias]
//       (auto_pad SAME_UPPER/SAME_LOWER where it pads
//       every side equally, as padding='same' does
//       with an odd kernel: pad (k - 1) / 2)
//     MaxPool, AveragePool: square kernel, equal pads of    MaxPool2d, AvgPool2d           maxpool K [stride S] [pad P],
//       at most K/2 (AveragePool's counted in the mean                                     avgpool … [excludepad]
//       with count_include_pad 1, else left out), equal
//       strides, ceil_mode 0, dilations 1 (auto_pad
//       SAME_* where it pads every side equally)
//     GlobalAveragePool; ReduceMean over axes [2, 3]        AvgPool2d of the whole map     avgpool K
//       of square maps [c, K, K]                            (+ flatten without keepdims)
//     GlobalMaxPool; ReduceMax so                           MaxPool2d of the whole map     maxpool K
//     Flatten axis 1; Reshape to [-1, K], [0, -1], [0, K]   Flatten                        flatten
//       or [batch, K] where K is the example's size, a
//       constant or computed by Shape, Gather, Unsqueeze,
//       Concat (x.view(x.size(0), -1))
//     Dropout (its ratio an input or an attribute)          Dropout(p: ratio)              dropout P
//     BatchNormalization, inference                         BatchNorm, its four tensors,   batchnorm [eps E] [momentum M]
//                                                           eps, 1 - momentum
//     Relu, Tanh, Sigmoid, LeakyRelu alpha, Gelu (exact)    the activation                 relu, tanh, …, leakyrelu A, gelu
//     Div(x, √2) or Mul(x, 1/√2), Erf, Add 1, Mul x and     GELU                           gelu
//       Mul 0.5 in either order (opsets below 20)
//     Sigmoid(x), then Mul of x and it (either side)        SiLU                           silu
//     Clip with both bounds (attributes before opset 11,    Hardtanh                       hardtanh MIN MAX, relu6
//       then constant inputs); Clip with min 0 alone,       ReLU                           relu
//       Max(x, 0)
//     Identity, Constant                                    nothing (a Constant's tensor is a constant)
//     Pad whose pads are all 0 (attribute before opset 11,  nothing (the identity; the TorchScript exporter
//       then a constant input, or one computed from         writes one before AveragePool at opset 9 and 10)
//       constants)
//     Pad of zeros by p on every side of the images         p more padding for that layer  conv … pad P+p,
//       (nn.ZeroPad2d(p)), right before a Conv or an        (the average counts it)        avgpool … pad P+p
//       AveragePool (its padding counted, or none)
//     LogSoftmax, Softmax over the last axis, last node     nothing: Backprop's loss takes the logits
//     Div 255, Sub mean, Div std, first nodes (ONNXExport's  the input's normalisation
//       pixels → x); or Div 255 alone                       (mean 0, deviation 1)
//
// Everything else, and any node that reads a tensor other than the previous node's output and
// constants, is refused with an error naming the node, its operator and what was expected.

/// A model read from an ONNX file by ``ONNXImport``: the model, its description and input shape,
/// and the normalisation the graph applies to its input, if any.
public struct ONNXImportedModel {
    /// The model, in evaluation mode, with the graph's weights; its loss is `CrossEntropy` unless
    /// the caller chose another (a single output gets `Mse`).
    public let model: Model
    /// The model's layers as a model description (`conv 4 3 pad 1, batchnorm, relu, …, lin 10`).
    public let description: ModelDescription
    /// The shape of one example the model takes: the graph input's shape without its first
    /// (batch) dimension, `[784]` or `[1, 28, 28]`.
    public let inputShape: [Int]
    /// The normalisation `x = (pixels / 255 - mean) / std` the graph starts with, as ONNXExport
    /// writes it for a model trained on normalised pixels, or `nil` when the graph takes the
    /// model's input as it is.
    public let normalization: (mean: Double, std: Double)?
    /// The operator of a final `LogSoftmax` or `Softmax` that was left out (the model gives the
    /// logits before it), or `nil`.
    public let droppedOutputOperator: String?
}

/// Reads an ONNX model (protobuf, opset 9 or later) whose graph is a chain of Backprop's layers:
/// the files ``ONNXExport`` writes, and the ones `torch.onnx.export` writes for an `nn.Sequential`
/// of `Linear`, `Conv2d`, `MaxPool2d`, `AvgPool2d`, `Flatten`, `Dropout`, `BatchNorm1d`/`2d`,
/// `ReLU`, `ReLU6`, `Hardtanh`, `Tanh`, `Sigmoid`, `LeakyReLU`, `GELU` (below opset 20 as `Erf` and
/// arithmetic) and `SiLU` (`Sigmoid` and `Mul`), with or
/// without a final `LogSoftmax` or `Softmax`, by either of its exporters; also an `nn.Module` whose
/// `forward` chains those and `nn.AdaptiveAvgPool2d(1)` and `x.view(x.size(0), -1)`; a
/// `Conv2d` with `padding='same'` and an odd kernel (`auto_pad` SAME_UPPER) is read as the
/// convolution with that padding, a `Pad` of zeros that pads (`nn.ZeroPad2d(p)`, and
/// `nn.AvgPool2d(k, s, p)` at opset 9) as padding of the `Conv` or `AveragePool` right after it,
/// and a `Pad` whose pads are 0 (before `AveragePool` at opset 9 and 10) is left out.
///
/// The model gives the graph's output for the same input up to float rounding (the same
/// operations in Float; a `Softmax` or `LogSoftmax` at the end is left out, since Backprop's loss
/// takes the logits). The table at the top of `ONNXImport.swift` lists each operator's layer.
public enum ONNXImport {
    /// The largest file read: protobuf messages are limited to 2 GiB.
    public static let maxBytes = 2 << 30
    /// The largest external data file read (the tensors of a model too large for one protobuf).
    public static let maxExternalBytes = 64 << 30

    /// The model in the ONNX file at `path`.
    ///
    /// - Parameters:
    ///   - path: an `.onnx` file.
    ///   - loss: the loss after the last layer; by default `Mse` for a model with one output,
    ///     `CrossEntropy` otherwise.
    /// - Throws: `DataError` naming `path`: it cannot be read, is not an ONNX model, its graph is
    ///   not a chain of layers Backprop has (naming the node, its operator and what was expected),
    ///   a weight does not fit its layer or holds a value that is not finite, or a tensor is stored
    ///   in a type other than float32, float64 or (for shapes) int32 and int64; `DataError` naming
    ///   an external data file (weights stored beside the model, as `torch.onnx.export` writes them
    ///   in `MODEL.onnx.data`) that cannot be read or is shorter than a tensor's place in it.
    public static func read(path: String, loss: (any Loss)? = nil) throws -> ONNXImportedModel {
        let bytes = try Gzip.readFile(path: path, maxBytes: maxBytes)
        return try model(fromBytes: bytes, path: path, loss: loss)
    }

    /// The model in the serialized ONNX `ModelProto` `bytes`, read from `path` (named in errors).
    ///
    /// - Throws: as ``read(path:loss:)`` does.
    public static func model(
        fromBytes bytes: [UInt8], path: String, loss: (any Loss)? = nil
    ) throws
        -> ONNXImportedModel
    {
        let proto: Onnx_ModelProto
        do {
            proto = try Onnx_ModelProto(serializedBytes: bytes)
        } catch {
            throw DataError(path: path, problem: "is not an ONNX model (its protobuf does not decode: \(error))")
        }
        var reader = try GraphReader(proto, path: path)
        return try reader.read(loss: loss)
    }

    /// Whether the file at `path` should be read as ONNX rather than safetensors: its name ends in
    /// `.onnx`, or its first byte is the tag of `ModelProto.ir_version` (field 1, a varint: `08`)
    /// and its ninth is not the `{` a safetensors header starts with.
    public static func looksLikeONNX(path: String) -> Bool {
        if path.lowercased().hasSuffix(".onnx") { return true }
        // Non-blocking, and regular files only: a FIFO without a writer must not stop us here.
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return false }
        var head = [UInt8](repeating: 0, count: 9)
        let got = head.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, 9, 0) }
        return got == 9 && head[0] == 0x08 && head[8] != UInt8(ascii: "{")
    }
}
