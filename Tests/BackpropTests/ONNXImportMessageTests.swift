import Foundation
import SwiftProtobuf
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropNetwork
@testable import BackpropONNX

// The messages of ONNX import for values out of range that used to read oddly (Docs/BadInputs.md,
// "ONNX models"): an opset far past any release, a Gemm's transA or transB other than 0 or 1, a
// negative dimension in a tensor or in the graph's input, a pool's kernel of 0 or of the wrong
// form. Each names the file, the node or tensor and the attribute, what was expected and what was
// found. The graphs are built here with the package's protobuf types.

@Suite("ONNX import: messages for values out of range")
struct ONNXImportMessageTests {
    /// `x (n, 4)` → `Gemm(x, w, b (3))` → `y`, `w` (4, 3) unless given: a graph that reads.
    static func gemmGraph(
        _ attributes: [Onnx_AttributeProto] = [], weights: Tensor? = nil, opset: Int64 = 20
    ) -> Onnx_ModelProto {
        let w = weights ?? Tensor(shape: [4, 3], values: (0..<12).map { Float($0) / 10 })
        let b = Tensor([0.5, -0.5, 0.25])
        return ONNXImportTests.graph(
            nodes: [ONNXImportTests.node("Gemm", ["x", "w", "b"], "y", attributes)],
            initializers: [("w", w), ("b", b)], inputShape: [4], opset: opset)
    }

    /// Reads `proto` as `model.onnx`; expects an error containing each of `fragments`.
    static func expectRefused(
        _ proto: Onnx_ModelProto, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let bytes: [UInt8] = try proto.serializedBytes()
        expectDataError(containing: ["model.onnx: "] + fragments, sourceLocation: sourceLocation) {
            try ONNXImport.model(fromBytes: bytes, path: "model.onnx")
        }
    }

    @Test("an opset beyond any release is named with the range read, not as too old")
    func opsetFarBeyondAnyRelease() throws {
        try Self.expectRefused(
            Self.gemmGraph(opset: 1 << 62),
            [
                "uses ONNX opset 4611686018427387904 (its opset_import for the default domain), which no ONNX "
                    + "release defines; expected an opset from 9 to 1000 (ONNXExport writes 20)"
            ])
        try Self.expectRefused(
            Self.gemmGraph(opset: 1001), ["uses ONNX opset 1001", "expected an opset from 9 to 1000"])
        try Self.expectRefused(Self.gemmGraph(opset: 8), ["uses ONNX opset 8; Backprop reads opset 9 or later"])
        // The bounds themselves read.
        for opset: Int64 in [9, 1000] {
            let read = try ONNXImport.model(fromBytes: try Self.gemmGraph(opset: opset).serializedBytes(), path: "m")
            #expect(read.description.description == "lin 3")
        }
    }

    @Test("a Gemm's transA or transB other than 0 or 1 is named with the value found")
    func gemmTransposeFlagsOtherThanZeroOrOne() throws {
        try Self.expectRefused(
            Self.gemmGraph([ONNXImportTests.int("transB", 5)]),
            ["node 0 (\"gemm\", Gemm) has the attribute transB 5; expected 0 or 1"])
        try Self.expectRefused(
            Self.gemmGraph([ONNXImportTests.int("transB", -1)]), ["(\"gemm\", Gemm) has the attribute transB -1"])
        try Self.expectRefused(
            Self.gemmGraph([ONNXImportTests.int("transA", 2)]),
            ["node 0 (\"gemm\", Gemm) has the attribute transA 2; expected 0 or 1"])
        try Self.expectRefused(
            Self.gemmGraph([ONNXImportTests.int("transA", 1)]), ["(\"gemm\", Gemm) transposes its input (transA 1)"])
        // transB 1: the weights (nOut, nIn), as nn.Linear stores them.
        let w = Tensor(shape: [4, 3], values: (0..<12).map { Float($0) / 10 })
        let transposed = Self.gemmGraph([ONNXImportTests.int("transB", 1)], weights: w.t().contiguous())
        let read = try ONNXImport.model(fromBytes: try transposed.serializedBytes(), path: "m")
        #expect(read.description.description == "lin 3")
        #expect((read.model.layers[0] as? Lin)?.w.values == w.values)
    }

    @Test("a negative dimension is named as such, in a tensor and in the graph's input")
    func negativeDimensions() throws {
        var proto = Self.gemmGraph()
        proto.graph.initializer[0].dims = [-4, 3]
        try Self.expectRefused(
            proto, ["tensor \"w\" has the dimensions [-4, 3]; expected sizes of 0 or more, found -4 at dimension 0"])
        proto = Self.gemmGraph()
        proto.graph.initializer[1].dims = [3, -1]
        try Self.expectRefused(proto, ["tensor \"b\" has the dimensions [3, -1]", "found -1 at dimension 1"])
        // Sizes too large to address are still told apart from negative ones.
        proto = Self.gemmGraph()
        proto.graph.initializer[0].dims = [1 << 40, 1 << 40]
        try Self.expectRefused(proto, ["tensor \"w\" has the dimensions [1099511627776, 1099511627776], too large"])
        proto = Self.gemmGraph()
        proto.graph.input[0].type.tensorType.shape.dim[1].dimValue = -4
        try Self.expectRefused(proto, ["its input \"x\" has a dimension of -4; expected sizes from 1"])
    }

    @Test("a pool's kernel of 0, of one size, not square or missing, and strides of 0, are named")
    func poolKernelsOutOfRange() throws {
        // `x (n, 1, 8, 8)` → MaxPool → `y`.
        func pool(_ attributes: [Onnx_AttributeProto]) -> Onnx_ModelProto {
            ONNXImportTests.graph(
                nodes: [ONNXImportTests.node("MaxPool", ["x"], "y", attributes)], initializers: [],
                inputShape: [1, 8, 8])
        }
        try Self.expectRefused(
            pool([ONNXImportTests.ints("kernel_shape", [0, 0])]),
            ["node 0 (\"maxpool\", MaxPool) has the kernel_shape [0, 0]; expected sizes from 1 to 16777216, found 0"])
        try Self.expectRefused(
            pool([ONNXImportTests.ints("kernel_shape", [2, -3])]),
            ["has the kernel_shape [2, -3]; expected sizes", "found -3"])
        try Self.expectRefused(
            pool([ONNXImportTests.ints("kernel_shape", [2])]),
            ["(\"maxpool\", MaxPool) has the kernel_shape [2]; expected two sizes [k, k]", "found 1"])
        try Self.expectRefused(
            pool([ONNXImportTests.ints("kernel_shape", [2, 3])]),
            ["(\"maxpool\", MaxPool) has the kernel_shape [2, 3]; Backprop's pools have square kernels [k, k]"])
        try Self.expectRefused(
            pool([]), ["(\"maxpool\", MaxPool) has no kernel_shape; expected the attribute kernel_shape [k, k]"])
        try Self.expectRefused(
            pool([ONNXImportTests.ints("kernel_shape", [2, 2]), ONNXImportTests.ints("strides", [0, 0])]),
            ["(\"maxpool\", MaxPool) has strides [0, 0]; expected sizes from 1 to 16777216, found 0"])
        try Self.expectRefused(
            pool([ONNXImportTests.ints("kernel_shape", [2, 2]), ONNXImportTests.int("ceil_mode", 7)]),
            ["(\"maxpool\", MaxPool) has the attribute ceil_mode 7; expected 0 or 1"])
        // A 2×2 kernel reads.
        let read = try ONNXImport.model(
            fromBytes: try pool([
                ONNXImportTests.ints("kernel_shape", [2, 2]), ONNXImportTests.ints("strides", [2, 2]),
            ]).serializedBytes(),
            path: "m")
        #expect(read.description.description == "maxpool 2")
    }

    @Test("backprop evaluate names the file and the opset, one line, no trap")
    func commandLineNamesTheFile() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 1)
            let path = folder + "/model.onnx"
            try writeBytes(try Self.gemmGraph(opset: 1 << 62).serializedBytes(), to: path)
            let run = try runBackprop(["evaluate", "--model", path, "--data", folder])
            #expect(!run.crashed && run.status == 1, "\(run.standardError)")
            #expect(
                run.standardError
                    == "Error: \(path): uses ONNX opset 4611686018427387904 (its opset_import for the default domain), "
                    + "which no ONNX release defines; expected an opset from 9 to 1000 (ONNXExport writes 20)\n")
        }
    }

    /// `x` → `Div 255` → `Sub mean` → `Div std` → `Gemm` (4 → 3): the normalisation Backprop's
    /// export writes, before one layer.
    static func normalizedGraph(mean: Float, std: Float) -> Onnx_ModelProto {
        let w = Tensor(shape: [4, 3], values: (0..<12).map { Float($0) / 10 })
        return ONNXImportTests.graph(
            nodes: [
                ONNXImportTests.node("Div", ["x", "scale"], "scaled"),
                ONNXImportTests.node("Sub", ["scaled", "mean"], "centered"),
                ONNXImportTests.node("Div", ["centered", "std"], "normalized"),
                ONNXImportTests.node("Gemm", ["normalized", "w", "b"], "y"),
            ],
            initializers: [
                ("scale", Tensor([255])), ("mean", Tensor([mean])), ("std", Tensor([std])), ("w", w),
                ("b", Tensor([0.5, -0.5, 0.25])),
            ],
            inputShape: [4])
    }

    @Test("a normalisation whose deviation takes a pixel out of Float's range is named, not trained to NaN")
    func normalisationThatOverflowsFloat() throws {
        // Pixel 87 is the first to pass Float's 3.4e38: 87 / 255 / 1e-39 (it used to read, then train
        // to a NaN loss blamed on the learning rate).
        try Self.expectRefused(
            Self.normalizedGraph(mean: 0, std: 1e-39),
            [
                "divides by the standard deviation", "after subtracting the mean 0.0, which takes pixel 87/255 to inf",
                "expected a normalisation that keeps the inputs finite",
            ])
        // A small deviation that keeps every pixel finite reads, with its values.
        let read = try ONNXImport.model(
            fromBytes: try Self.normalizedGraph(mean: 0.25, std: 0.01).serializedBytes(), path: "m")
        #expect(read.normalization.map { abs($0.mean - 0.25) < 1e-6 && abs($0.std - 0.01) < 1e-8 } == true)
    }
}
