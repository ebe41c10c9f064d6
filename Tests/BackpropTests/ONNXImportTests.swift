import Foundation
import SwiftProtobuf
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropNetwork
@testable import BackpropONNX
@testable import BackpropTraining

// ONNX import: the files torch.onnx.export wrote (fixtures of make_onnx_import_fixtures.py, both
// exporters, batch norms folded and not, a fixed batch, a final LogSoftmax or Softmax) read to
// ONNX Runtime's outputs and PyTorch's logits; ONNXExport's files read back to the same model; the
// errors that name what cannot be read; mutated files that end in an error, never a trap; and the
// command line reading ONNX where it reads models.

@Suite("ONNX import")
struct ONNXImportTests {
    /// The fixtures, without `.onnx`.
    static let files = [
        "onnx_import_mlp_legacy", "onnx_import_mlp_dynamo", "onnx_import_mlp_external", "onnx_import_convnet_folded",
        "onnx_import_convnet_unfolded", "onnx_import_convnet_dynamo", "onnx_import_convnet_fixed_batch",
        "onnx_import_softmax_head", "onnx_import_viewnet_legacy", "onnx_import_viewnet_dynamo",
        "onnx_import_viewnet_unfolded", "onnx_import_convnet_unoptimized", "onnx_import_bnnet_unfolded",
        "onnx_import_bnnet_unoptimized",
    ]

    /// The inputs, PyTorch's logits and ONNX Runtime's outputs (see make_onnx_import_fixtures.py).
    static func io() throws -> SafetensorsFile {
        try Safetensors.read(path: fixturePath("onnx_import_io.safetensors"))
    }

    /// `log_softmax` (`log: true`) or `softmax` of each row, in Double: the reference for the
    /// final operator the importer leaves out.
    static func softmaxRows(_ z: Tensor, log: Bool) -> [Double] {
        let columns = z.shape[1]
        let values = z.values.map(Double.init)
        return stride(from: 0, to: values.count, by: columns).flatMap { start -> [Double] in
            let row = values[start..<(start + columns)]
            let top = row.max()!
            let logSum = top + Foundation.log(row.reduce(0) { $0 + exp($1 - top) })
            return row.map { log ? $0 - logSum : exp($0 - logSum) }
        }
    }

    @Test("reads what torch.onnx.export wrote: the layers, and ONNX Runtime's outputs", arguments: files)
    func readsPyTorchExports(file: String) throws {
        try Self.expectReadsExport(file, io: try Self.io())
    }

    /// Reads the fixture `file` (without `.onnx`) and expects the layers, PyTorch's logits and ONNX
    /// Runtime's outputs that `io` holds for it (see make_onnx_import_fixtures.py).
    static func expectReadsExport(
        _ file: String, io: SafetensorsFile, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let key = try #require(io.metadata["\(file).model"])
        let imported = try ONNXImport.read(path: fixturePath(file + ".onnx"))
        #expect(
            imported.description.description == io.metadata["\(file).layers"], sourceLocation: sourceLocation)
        let x = try #require(io.tensors["\(key).x"], sourceLocation: sourceLocation)
        #expect(imported.inputShape == Array(x.shape.dropFirst()), sourceLocation: sourceLocation)
        #expect(imported.normalization == nil, sourceLocation: sourceLocation)
        let last = io.metadata["\(file).operators"]?.components(separatedBy: ", ").last
        let dropped = last == "LogSoftmax" || last == "Softmax" ? last : nil
        #expect(imported.droppedOutputOperator == dropped, sourceLocation: sourceLocation)

        let logits = imported.model.predict(x)
        // PyTorch's logits in float64 from the state_dict's weights (a folded batch norm's weights
        // were rounded to float32 by the exporter: a little more room).
        let reference = try #require(io.tensors["\(key).logits"], sourceLocation: sourceLocation)
        expectAllNear(logits, reference, tolerance: 2e-5, "logits", sourceLocation: sourceLocation)
        // ONNX Runtime's output of the file itself, through the final operator left out.
        let output = try #require(io.tensors["\(file).output"], sourceLocation: sourceLocation)
        let expected =
            dropped.map { Self.softmaxRows(logits, log: $0 == "LogSoftmax") } ?? logits.values.map(Double.init)
        expectAllNear(output.values, expected, tolerance: 1e-5, "ONNX Runtime's output", sourceLocation: sourceLocation)
    }

    // MARK: - Padding: Pad of zeros, auto_pad

    /// The padding fixtures Backprop reads, without `.onnx` (make_onnx_import_fixtures.py, Pads).
    static let padFiles = [
        "onnx_import_padnet_opset9", "onnx_import_padnet_same", "onnx_import_zeropadnet_opset11",
        "onnx_import_zeropad1_opset11", "onnx_import_zeropadconvnet_opset9", "onnx_import_zeropadconvnet_opset11",
        "onnx_import_zeropadconvnet_unfolded",
    ]

    /// Each file's Pad nodes and the paddings of its convolutions (then pools) once read: a Pad
    /// of zeros is the padding of the Conv or AveragePool after it.
    static let padForms: [String: (pads: Int, paddings: [Int])] = [
        "onnx_import_padnet_opset9": (1, [1, 2, 0]),
        "onnx_import_padnet_same": (0, [1, 2, 0]),
        "onnx_import_zeropadnet_opset11": (1, [0, 0]),
        "onnx_import_zeropad1_opset11": (1, [1]),
        "onnx_import_zeropadconvnet_opset9": (4, [2, 2, 1]),
        "onnx_import_zeropadconvnet_opset11": (3, [2, 2, 1]),
        "onnx_import_zeropadconvnet_unfolded": (3, [2, 2, 1]),  // pads computed with Mul and Sub too
    ]

    @Test(
        "reads a Pad (opset 9, opset 11 computed) into the Conv or AveragePool after it, and SAME_UPPER, as PyTorch wrote",
        arguments: padFiles)
    func readsPyTorchPadding(file: String) throws {
        let io = try Safetensors.read(path: fixturePath("onnx_import_pad_io.safetensors"))
        try Self.expectReadsExport(file, io: io)
        let operators = try #require(io.metadata["\(file).operators"]).components(separatedBy: ", ")
        let form = try #require(Self.padForms[file])
        // What the files hold: the forms these tests are about.
        #expect(operators.count { $0 == "Pad" } == form.pads)
        let imported = try ONNXImport.read(path: fixturePath(file + ".onnx"))
        let paddings =
            imported.model.layers.compactMap { ($0 as? Conv2d)?.padding }
            + imported.model.layers.compactMap { ($0 as? AvgPool2d)?.padding }
        #expect(paddings == form.paddings)
    }

    /// ResNet's stem pool and an average over its padding's zeros; averages that leave their
    /// padding out (AveragePool's count_include_pad 0: each mean over the window's elements).
    @Test(
        "reads PyTorch's padded pools: MaxPool2d(3, 2, 1), AvgPool2d(3, 1, 1), AvgPool2d(count_include_pad=False)",
        arguments: [
            (
                "onnx_import_poolpadnet",
                "conv 4 3 pad 1, maxpool 3 stride 2 pad 1, avgpool 3 stride 1 pad 1, flatten, lin 10"
            ),
            (
                "onnx_import_poolexcludenet",
                "conv 4 3 pad 1, avgpool 3 stride 1 pad 1 excludepad, avgpool 2 pad 1 excludepad, flatten, lin 10"
            ),
        ])
    func readsPyTorchPoolPadding(file: String, layers: String) throws {
        let io = try Safetensors.read(path: fixturePath("onnx_import_pad_io.safetensors"))
        try Self.expectReadsExport(file, io: io)
        let imported = try ONNXImport.read(path: fixturePath(file + ".onnx"))
        #expect(imported.description.description == layers)
    }

    @Test("refuses, naming the node, a Pad before a max pool, a Pad on two sides, and an even kernel's SAME padding")
    func refusesPyTorchPadding() throws {
        expectDataError(containing: [
            "onnx_import_pad_refused_maxpool.onnx: node 16 (\"/0/Pad\", Pad) pads each image by 1 on every side with "
                + "zeros, and node 17 (MaxPool) reads it (a MaxPool pads with -inf, not zeros"
        ]) {
            try ONNXImport.read(path: fixturePath("onnx_import_pad_refused_maxpool.onnx"))
        }
        expectDataError(containing: [
            "onnx_import_pad_refused_asymmetric.onnx: node 16 (\"/0/Pad\", Pad) pads [n] + [1, 8, 8] by "
                + "[0, 0, 1, 1, 0, 0, 0, 0]; Backprop reads a Pad of zeros only when it pads the height and width of "
                + "images by the same amount on every side (nn.ZeroPad2d(p))"
        ]) {
            try ONNXImport.read(path: fixturePath("onnx_import_pad_refused_asymmetric.onnx"))
        }
        expectDataError(containing: [
            "onnx_import_pad_refused_same_even.onnx: node 0 (\"/0/Conv\", Conv) pads automatically (SAME_UPPER) by "
                + "[1, 1, 2, 2] for its 8×8 input, not the same on every side; Backprop pads every side by the same amount"
        ]) {
            try ONNXImport.read(path: fixturePath("onnx_import_pad_refused_same_even.onnx"))
        }
    }

    static func string(_ name: String, _ value: String) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        attribute.name = name
        attribute.type = .string
        attribute.s = Data(value.utf8)
        return attribute
    }

    static func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        attribute.name = name
        attribute.type = .ints
        attribute.ints = values.map(Int64.init)
        return attribute
    }

    /// An int64 initializer.
    static func int64s(_ name: String, _ values: [Int]) -> Onnx_TensorProto {
        var tensor = Onnx_TensorProto()
        tensor.name = name
        tensor.dataType = 7
        tensor.dims = [Int64(values.count)]
        tensor.int64Data = values.map(Int64.init)
        return tensor
    }

    @Test("a Pad of zeros is the identity in every form: attribute, initializer, Constant nodes, axes")
    func readsPadsOfZeros() throws {
        var generator = RandomGenerator(seed: 12)
        let x = Tensor.randn([2, 2, 3, 3], generator: &generator)
        let reference = x.values.map { Double(Swift.max($0, 0)) }  // relu(x)
        let tail = [Self.node("Relu", ["p"], "r"), Self.node("Flatten", ["r"], "y")]
        func model(_ pad: [Onnx_NodeProto], _ opset: Int64, _ initializers: [Onnx_TensorProto] = []) -> Onnx_ModelProto
        {
            var proto = Self.graph(nodes: pad + tail, initializers: [], inputShape: [2, 3, 3], opset: opset)
            proto.graph.initializer = initializers
            return proto
        }
        func constant(_ name: String, _ attribute: Onnx_AttributeProto) -> Onnx_NodeProto {
            var node = Self.node("Constant", [], name, [attribute])
            node.name = name
            return node
        }
        let zeros = Self.ints("value_ints", [0, 0, 0, 0, 0, 0, 0, 0])
        let forms: [(String, Onnx_ModelProto)] = [
            (
                "opset 9, pads an attribute",
                model(
                    [
                        Self.node(
                            "Pad", ["x"], "p",
                            [Self.string("mode", "constant"), Self.ints("pads", [0, 0, 0, 0, 0, 0, 0, 0])])
                    ], 9)
            ),
            (
                "opset 11, pads and value initializers",
                model(
                    [Self.node("Pad", ["x", "pads", "value"], "p")], 11,
                    [Self.int64s("pads", [0, 0, 0, 0, 0, 0, 0, 0]), Self.int64s("value", [0])])
            ),
            (
                "opset 13, pads and value from Constant nodes",
                model(
                    [
                        constant("pads", zeros), constant("value", Self.float("value_float", 0)),
                        Self.node("Pad", ["x", "pads", "value"], "p", [Self.string("mode", "reflect")]),
                    ], 13)
            ),
            (
                "opset 18, pads of the axes [2, 3], no value",
                model(
                    [Self.node("Pad", ["x", "pads", "", "axes"], "p")], 18,
                    [Self.int64s("pads", [0, 0, 0, 0]), Self.int64s("axes", [2, 3])])
            ),
        ]
        for (form, proto) in forms {
            let imported = try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "pad.onnx")
            #expect(imported.description.description == "relu, flatten", "\(form)")
            expectAllNear(imported.model.predict(x).values, reference, tolerance: 0, form)
        }
        // A Pad that pads before a Relu (no layer to take its padding), a cropping Pad, and pads that
        // are not constants: refused, naming the node.
        let padding = model(
            [Self.node("Pad", ["x"], "p", [Self.ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])])], 9)
        expectDataError(containing: [
            "pad.onnx: node 0 (\"pad\", Pad) pads each image by 1 on every side with zeros, and node 1 (Relu) reads "
                + "it; Backprop has no padding layer: it reads a Pad of zeros only into the Conv or AveragePool right "
                + "after it, as their padding"
        ]) {
            try ONNXImport.model(fromBytes: try padding.serializedBytes(), path: "pad.onnx")
        }
        var cropping = forms[1].1
        cropping.graph.initializer[0].int64Data = [0, 0, 0, -1, 0, 0, 0, 0]
        cropping.graph.node[0].input.removeLast()  // its value, an int64 0, is not read for pads of zeros only
        expectDataError(containing: [
            "node 0 (\"pad\", Pad) pads [n] + [2, 3, 3] by [0, 0, 0, -1, 0, 0, 0, 0]; Backprop reads a Pad of zeros "
                + "only when"
        ]) {
            try ONNXImport.model(fromBytes: try cropping.serializedBytes(), path: "pad.onnx")
        }
        var computed = forms[1].1
        computed.graph.node[0].input[1] = "elsewhere"
        expectDataError(containing: ["(\"pad\", Pad) reads its pads from \"elsewhere\", which is not a constant"]) {
            try ONNXImport.model(fromBytes: try computed.serializedBytes(), path: "pad.onnx")
        }
        var attributeAtOpset11 = forms[0].1
        attributeAtOpset11.opsetImport[0].version = 11
        expectDataError(containing: ["(\"pad\", Pad) has 1 inputs; expected 2 to 4"]) {
            try ONNXImport.model(fromBytes: try attributeAtOpset11.serializedBytes(), path: "pad.onnx")
        }
    }

    @Test("a Pad of zeros that pads is the padding of the Conv after it, in every form; other Pads are refused")
    func readsPadsIntoTheConvolutionAfter() throws {
        var generator = RandomGenerator(seed: 14)
        let x = Tensor.randn([2, 2, 5, 5], generator: &generator)
        let (w, b) = (Tensor.randn([3, 2, 3, 3], generator: &generator), Tensor.randn([3], generator: &generator))
        /// `pad` nodes, then a Conv (3×3, `convAttributes`) and a Flatten, over [2, 5, 5].
        func model(
            _ pad: [Onnx_NodeProto], _ opset: Int64, _ initializers: [Onnx_TensorProto] = [],
            conv convAttributes: [Onnx_AttributeProto] = [Self.ints("pads", [1, 1, 1, 1])]
        ) -> Onnx_ModelProto {
            let tail = [
                Self.node("Conv", [pad.last?.output[0] ?? "x", "w", "b"], "c", convAttributes),
                Self.node("Flatten", ["c"], "y"),
            ]
            var proto = Self.graph(
                nodes: pad + tail, initializers: [("w", w), ("b", b)], inputShape: [2, 5, 5], opset: opset)
            proto.graph.initializer += initializers
            return proto
        }
        var value = Onnx_TensorProto()
        (value.name, value.dataType, value.floatData) = ("value", 1, [0])
        // (form, model, the convolution's padding in all)
        let forms: [(String, Onnx_ModelProto, Int)] = [
            (
                "opset 9, pads an attribute, Conv pads 1",
                model([Self.node("Pad", ["x"], "p", [Self.ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])])], 9), 2
            ),
            (
                "opset 11, pads and value initializers, Conv without pads",
                model(
                    [Self.node("Pad", ["x", "pads", "value"], "p")], 11,
                    [Self.int64s("pads", [0, 0, 2, 2, 0, 0, 2, 2]), value], conv: []), 2
            ),
            (
                "opset 18, pads of the axes [-1, 2], Conv auto_pad SAME_UPPER of the padded images",
                model(
                    [Self.node("Pad", ["x", "pads", "", "axes"], "p")], 18,
                    [Self.int64s("pads", [1, 1, 1, 1]), Self.int64s("axes", [-1, 2])],
                    conv: [Self.string("auto_pad", "SAME_UPPER")]), 2
            ),
            (
                "two Pads and an Identity, Conv stride 2",
                model(
                    [
                        Self.node("Pad", ["x"], "p", [Self.ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])]),
                        Self.node("Identity", ["p"], "i"),
                        Self.node("Pad", ["i"], "q", [Self.ints("pads", [0, 0, 2, 2, 0, 0, 2, 2])]),
                    ], 9, conv: [Self.ints("strides", [2, 2])]), 3
            ),
        ]
        for (form, proto, pad) in forms {
            let imported = try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "pad.onnx")
            let stride = form.contains("stride 2") ? 2 : 1
            #expect(
                imported.description.description
                    == "conv 3 3\(stride == 2 ? " stride 2" : "") pad \(pad), flatten", "\(form)")
            let reference = Self.convolved(x, w, b, stride: stride, pad: pad)
            expectAllNear(imported.model.predict(x).values, reference, tolerance: 1e-5, form)
        }
        // Not zeros, or padding that is not the same on every side of the images: refused.
        var nonzero = forms[1].1
        nonzero.graph.initializer[3].floatData = [0.5]
        var reflect = forms[0].1
        reflect.graph.node[0].attribute.append(Self.string("mode", "reflect"))
        var channels = forms[0].1
        channels.graph.node[0].attribute[0].ints = [0, 1, 1, 1, 0, 1, 1, 1]
        var sides = forms[2].1
        sides.graph.initializer[2].int64Data = [1, 1, 1, 2]
        var axesTwice = forms[2].1
        axesTwice.graph.initializer[3].int64Data = [3, -1]
        let refused: [(Onnx_ModelProto, String)] = [
            (nonzero, "pads by [0, 0, 2, 2, 0, 0, 2, 2] with the value 0.5; Backprop reads a Pad of zeros only"),
            (reflect, "pads by [0, 0, 1, 1, 0, 0, 1, 1] with mode \"reflect\"; Backprop reads a Pad of zeros only"),
            (channels, "pads [n] + [2, 5, 5] by [0, 1, 1, 1, 0, 1, 1, 1]; Backprop reads a Pad of zeros only when"),
            (sides, "pads [n] + [2, 5, 5] by [1, 1, 1, 2]; Backprop reads a Pad of zeros only when"),
            (axesTwice, "lists an axis twice in its axes [3, -1]"),
        ]
        for (proto, message) in refused {
            expectDataError(containing: ["pad.onnx: node 0 (\"pad\", Pad) " + message]) {
                try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "pad.onnx")
            }
        }
        // A Pad at the graph's end, and one before an AveragePool that leaves its own padding out.
        var last = Self.graph(
            nodes: [Self.node("Pad", ["x"], "y", [Self.ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])])], initializers: [],
            inputShape: [2, 5, 5], opset: 9)
        expectDataError(containing: [
            "pad.onnx: node 0 (\"pad\", Pad) pads each image by 1 on every side with zeros, "
                + "and it is the graph's output; Backprop has no padding layer"
        ]) {
            try ONNXImport.model(fromBytes: try last.serializedBytes(), path: "pad.onnx")
        }
        last.graph.node = [
            Self.node("Pad", ["x"], "p", [Self.ints("pads", [0, 0, 1, 1, 0, 0, 1, 1])]),
            Self.node(
                "AveragePool", ["p"], "y",
                [
                    Self.ints("kernel_shape", [5, 5]), Self.ints("pads", [1, 1, 1, 1]),
                    Self.int("count_include_pad", 0),
                ]),
        ]
        expectDataError(containing: [
            "pad.onnx: node 1 (\"averagepool\", AveragePool) pads by 1 more, left out of each mean (count_include_pad "
                + "0), after a Pad of zeros by 1, which counts"
        ]) {
            try ONNXImport.model(fromBytes: try last.serializedBytes(), path: "pad.onnx")
        }
        last.graph.node[1].attribute[2].i = 1
        #expect(
            try ONNXImport.model(fromBytes: try last.serializedBytes(), path: "pad.onnx").description.description
                == "avgpool 5 stride 1 pad 2")
    }

    /// The convolution of `x` (n, c, h, w) by `w` (o, c, k, k) plus `b`, over `x` padded by `pad`
    /// zeros on every side, moved by `stride`; computed directly, in Double.
    static func convolved(_ x: Tensor, _ w: Tensor, _ b: Tensor, stride: Int, pad: Int) -> [Double] {
        let (n, c, h, width) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (outputs, k) = (w.shape[0], w.shape[2])
        let (xs, ws) = (x.values, w.values)
        let (rows, columns) = ((h + 2 * pad - k) / stride + 1, (width + 2 * pad - k) / stride + 1)
        var result: [Double] = []
        for example in 0..<n {
            for output in 0..<outputs {
                for row in 0..<rows {
                    for column in 0..<columns {
                        var sum = Double(b[output])
                        for channel in 0..<c {
                            for u in 0..<k {
                                for v in 0..<k {
                                    let (y, z) = (row * stride + u - pad, column * stride + v - pad)
                                    guard (0..<h).contains(y), (0..<width).contains(z) else { continue }
                                    sum +=
                                        Double(xs[((example * c + channel) * h + y) * width + z])
                                        * Double(ws[((output * c + channel) * k + u) * k + v])
                                }
                            }
                        }
                        result.append(sum)
                    }
                }
            }
        }
        return result
    }

    @Test("auto_pad SAME_UPPER or SAME_LOWER is read as the pad it amounts to when equal on every side, else refused")
    func readsAutoPadsThatAreEqual() throws {
        var generator = RandomGenerator(seed: 13)
        /// A Conv (2 filters of `k`×`k`, stride `stride`, auto_pad `autoPad`) then Flatten over [1, h, w].
        func conv(_ k: Int, stride: Int, _ autoPad: String, h: Int, w: Int) -> (Onnx_ModelProto, Tensor, Tensor) {
            let weights = Tensor.randn([2, 1, k, k], generator: &generator)
            let bias = Tensor.randn([2], generator: &generator)
            let attributes = [Self.string("auto_pad", autoPad), Self.ints("strides", [stride, stride])]
            let proto = Self.graph(
                nodes: [Self.node("Conv", ["x", "w", "b"], "c", attributes), Self.node("Flatten", ["c"], "y")],
                initializers: [("w", weights), ("b", bias)], inputShape: [1, h, w])
            return (proto, weights, bias)
        }
        // (kernel, stride, auto_pad, size, the pad on each side, the description read): ONNX's total
        // padding along an axis of size s is (⌈s / stride⌉ - 1) · stride + k - s.
        let equal: [(Int, Int, String, Int, Int, String)] = [
            (3, 1, "SAME_UPPER", 6, 1, "conv 2 3 pad 1, flatten"),  // PyTorch's padding='same'
            (5, 1, "SAME_LOWER", 6, 2, "conv 2 5 pad 2, flatten"),
            (4, 2, "SAME_UPPER", 8, 1, "conv 2 4 stride 2 pad 1, flatten"),  // (4 - 1) · 2 + 4 - 8 = 2
            (2, 2, "SAME_LOWER", 8, 0, "conv 2 2 stride 2, flatten"),  // 0: windows that tile the map
            (1, 3, "SAME_UPPER", 7, 0, "conv 2 1 stride 3, flatten"),  // (3 - 1) · 3 + 1 - 7 = 0
        ]
        for (k, stride, autoPad, size, pad, description) in equal {
            let (proto, w, b) = conv(k, stride: stride, autoPad, h: size, w: size)
            let imported = try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "same.onnx")
            #expect(imported.description.description == description)
            let x = Tensor.randn([2, 1, size, size], generator: &generator)
            let reference = Self.convolved(x, w, b, stride: stride, pad: pad)
            expectAllNear(imported.model.predict(x).values, reference, tolerance: 1e-5, description)
        }
        // Padding that differs between sides: refused, with the pads ONNX gives [top, left, bottom, right].
        let unequal: [(Int, Int, String, Int, Int, String)] = [
            (4, 1, "SAME_UPPER", 8, 8, "pads automatically (SAME_UPPER) by [1, 1, 2, 2] for its 8×8 input"),
            (4, 1, "SAME_LOWER", 8, 8, "pads automatically (SAME_LOWER) by [2, 2, 1, 1] for its 8×8 input"),
            (3, 2, "SAME_UPPER", 8, 8, "pads automatically (SAME_UPPER) by [0, 0, 1, 1] for its 8×8 input"),
            (3, 2, "SAME_UPPER", 9, 8, "pads automatically (SAME_UPPER) by [1, 0, 1, 1] for its 9×8 input"),
        ]
        for (k, stride, autoPad, h, w, message) in unequal {
            let (proto, _, _) = conv(k, stride: stride, autoPad, h: h, w: w)
            expectDataError(containing: [
                "same.onnx: node 0 (\"conv\", Conv) " + message
                    + ", not the same on every side; Backprop pads every side by the same amount"
            ]) {
                try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "same.onnx")
            }
        }
        // A kernel smaller than its stride can leave less than nothing to pad: (7 - 1) · 4 + 1 - 28 = -3.
        // ONNX Runtime then moves the windows; it was read as no padding.
        let (shifted, _, _) = conv(1, stride: 4, "SAME_UPPER", h: 28, w: 28)
        expectDataError(containing: [
            "same.onnx: node 0 (\"conv\", Conv) pads automatically (SAME_UPPER) by -3 in all for its 28×28 input (a "
                + "kernel of 1 moved by 4): less than nothing, which moves its windows; Backprop pads every side by the "
                + "same amount"
        ]) {
            try ONNXImport.model(fromBytes: try shifted.serializedBytes(), path: "same.onnx")
        }
        let (unknown, _, _) = conv(3, stride: 1, "SAME", h: 6, w: 6)
        expectDataError(containing: [
            "(\"conv\", Conv) has auto_pad \"SAME\"; expected NOTSET, VALID, SAME_UPPER or SAME_LOWER"
        ]) {
            try ONNXImport.model(fromBytes: try unknown.serializedBytes(), path: "same.onnx")
        }
    }

    @Test("a pool's auto_pad SAME_UPPER or SAME_LOWER is read where it pads every side alike, else refused")
    func poolAutoPads() throws {
        func pool(
            _ k: Int, stride: Int, _ autoPad: String, size: Int, op: String = "MaxPool", countsPadding: Bool? = nil,
            pads: [Int]? = nil
        ) -> Onnx_ModelProto {
            var attributes = [
                Self.ints("kernel_shape", [k, k]), Self.ints("strides", [stride, stride]),
                Self.string("auto_pad", autoPad),
            ]
            if let pads { attributes.append(Self.ints("pads", pads)) }
            if let countsPadding { attributes.append(Self.int("count_include_pad", countsPadding ? 1 : 0)) }
            return Self.graph(
                nodes: [Self.node(op, ["x"], "m", attributes), Self.node("Flatten", ["m"], "y")],
                initializers: [], inputShape: [1, size, size])
        }
        // 2×2 windows moved by 2 tile a 4×4 map: (2 - 1) · 2 + 2 - 4 = 0, no padding.
        var generator = RandomGenerator(seed: 14)
        let x = Tensor.randn([2, 1, 4, 4], generator: &generator)
        let tiled = try ONNXImport.model(
            fromBytes: try pool(2, stride: 2, "SAME_LOWER", size: 4).serializedBytes(), path: "pool.onnx")
        #expect(tiled.description.description == "maxpool 2, flatten")
        let reference = (0..<2).flatMap { n in
            (0..<2).flatMap { row in
                (0..<2).map { column in
                    [0, 1, 4, 5].map { Double(x.values[n * 16 + row * 8 + column * 2 + $0]) }.max()!
                }
            }
        }
        expectAllNear(tiled.model.predict(x).values, reference, tolerance: 0, "max pool")
        expectDataError(containing: [
            "pool.onnx: node 0 (\"maxpool\", MaxPool) pads automatically (SAME_UPPER) by [0, 0, 1, 1] for its 5×5 "
                + "input, not the same on every side; Backprop's pools pad every side alike"
        ]) {
            try ONNXImport.model(
                fromBytes: try pool(2, stride: 2, "SAME_UPPER", size: 5).serializedBytes(), path: "pool.onnx")
        }
        // 3×3 windows moved by 1 over a 4×4 map: 1 on every side, the padding never the maximum.
        let same = try ONNXImport.model(
            fromBytes: try pool(3, stride: 1, "SAME_UPPER", size: 4).serializedBytes(), path: "pool.onnx")
        #expect(same.description.description == "maxpool 3 stride 1 pad 1, flatten")
        let negative = -(x.abs() + 1)  // a zero padding would win every window
        let clipped = (0..<2).flatMap { n in
            (0..<4).flatMap { row in
                (0..<4).map { column in
                    let rows = Swift.max(row - 1, 0)...Swift.min(row + 1, 3)
                    let columns = Swift.max(column - 1, 0)...Swift.min(column + 1, 3)
                    return rows.flatMap { r in columns.map { Double(negative.values[n * 16 + r * 4 + $0]) } }.max()!
                }
            }
        }
        expectAllNear(same.model.predict(negative).values, clipped, tolerance: 0, "max pool padded")
        // An average over the padding: PyTorch's count_include_pad 1 counts it as zeros, ONNX's default 0
        // leaves it out (avgpool … excludepad): each mean over the window's elements in the map.
        let average = try ONNXImport.model(
            fromBytes: try pool(3, stride: 1, "SAME_LOWER", size: 4, op: "AveragePool", countsPadding: true)
                .serializedBytes(), path: "pool.onnx")
        #expect(average.description.description == "avgpool 3 stride 1 pad 1, flatten")
        let excluding = try ONNXImport.model(
            fromBytes: try pool(3, stride: 1, "SAME_UPPER", size: 4, op: "AveragePool").serializedBytes(),
            path: "pool.onnx")
        #expect(excluding.description.description == "avgpool 3 stride 1 pad 1 excludepad, flatten")
        func means(countingPadding: Bool) -> [Double] {
            (0..<2).flatMap { n in
                (0..<4).flatMap { row in
                    (0..<4).map { column in
                        let rows = Swift.max(row - 1, 0)...Swift.min(row + 1, 3)
                        let columns = Swift.max(column - 1, 0)...Swift.min(column + 1, 3)
                        let window = rows.flatMap { r in columns.map { Double(x.values[n * 16 + r * 4 + $0]) } }
                        return window.reduce(0, +) / Double(countingPadding ? 9 : window.count)
                    }
                }
            }
        }
        expectAllNear(average.model.predict(x).values, means(countingPadding: true), tolerance: 1e-6, "counted")
        expectAllNear(excluding.model.predict(x).values, means(countingPadding: false), tolerance: 1e-6, "left out")
        // PyTorch's rule: at most half the kernel, so that every window holds an element of the map.
        expectDataError(containing: [
            "pool.onnx: node 0 (\"maxpool\", MaxPool) pads its 2×2 windows by 2; Backprop's pools (as PyTorch's) "
                + "pad by at most half the kernel, 1"
        ]) {
            try ONNXImport.model(
                fromBytes: try pool(2, stride: 2, "NOTSET", size: 4, pads: [2, 2, 2, 2]).serializedBytes(),
                path: "pool.onnx")
        }
    }

    @Test("the fixtures' batch norms: kept by do_constant_folding=False, folded by default")
    func batchNormsAsExported() throws {
        let unfolded = try ONNXImport.read(path: fixturePath("onnx_import_convnet_unfolded.onnx"))
        let norms = unfolded.model.layers.compactMap { $0 as? BatchNorm }
        #expect(norms.count == 3)
        // Running statistics read, not left at 0 and 1.
        for norm in norms {
            #expect(norm.runningMean.values.contains { $0 != 0 })
            #expect(norm.runningVar.values.contains { $0 != 1 })
        }
        #expect(!unfolded.model.layers.contains { ($0 as? Dropout)?.isTraining == true })
    }

    @Test(
        "a batch norm's own eps and momentum (ONNX's is 1 - PyTorch's) reach the layer",
        arguments: ["onnx_import_bnnet_unfolded", "onnx_import_bnnet_unoptimized"])
    func batchNormSettings(file: String) throws {
        let imported = try ONNXImport.read(path: fixturePath(file + ".onnx"))
        let norms = imported.model.layers.compactMap { $0 as? BatchNorm }
        // nn.BatchNorm2d(4, eps=1e-3, momentum=0.01) and nn.BatchNorm1d(12, eps=0.01, momentum=0.3).
        #expect(norms.map(\.eps) == [0.001, 0.01])
        #expect(norms.map(\.momentum) == [0.01, 0.3])
        #expect(norms.map { $0.w.count } == [4, 12])
    }

    @Test("PyTorch's momentum from ONNX's: the shortest decimal whose 1 - m, as a Float, is ONNX's")
    func momentumFromONNX() {
        // torch.onnx.export writes float32(1 - m) for nn.BatchNorm's momentum m.
        for m: Double in [0.1, 0.01, 0.3, 0.001, 0.5, 0, 1, 0.123456, 1e-5] {
            #expect(GraphReader.pyTorchMomentum(Float(1 - m)) == Float(m), "\(m)")
        }
        #expect(GraphReader.pyTorchMomentum(0.9) == 0.1)
        #expect(GraphReader.pyTorchMomentum(0.9).map { Float(1 - Double($0)) } == 0.9)
        #expect(GraphReader.pyTorchMomentum(-0.5) == nil)
        #expect(GraphReader.pyTorchMomentum(1.5) == nil)
        #expect(GraphReader.pyTorchMomentum(.nan) == nil)
    }

    // MARK: - ONNXExport's files read back

    @Test("reads back what ONNXExport writes: the same layers, tensors, dropout and normalisation")
    func readsBackExports() throws {
        let ownSettings = "conv 4 3 pad 1, batchnorm eps 0.001 momentum 0.01, relu, flatten, lin 10, batchnorm eps 0.02"
        // A flatten of what is flat already is a layer too: the layers after it keep their indices.
        let flatAgain = "conv 2 3, flatten, flatten, lin 8, flatten, dropout 0.5, lin 10"
        for layers in [ONNXExportTests.mlpLayers, ONNXExportTests.convnetLayers, ownSettings, flatAgain] {
            let description = try ModelDescription(parsing: layers)
            let model = try ONNXExportTests.model(layers, seed: 3)
            let inputShape = description.inputShape(channels: 1, height: 28, width: 28)
            let normalization = (mean: 0.28604060411453247, std: 0.3530242443084717)
            let bytes = try ONNXExport.model(model, inputShape: inputShape, normalization: normalization)
            let imported = try ONNXImport.model(fromBytes: [UInt8](bytes), path: "model.onnx")
            #expect(imported.description == description)
            #expect(imported.inputShape == inputShape)
            #expect(imported.normalization?.mean == normalization.mean)
            #expect(imported.normalization?.std == normalization.std)
            let original = model.namedParameters + model.namedBuffers
            let read = imported.model.namedParameters + imported.model.namedBuffers
            #expect(original.map(\.name) == read.map(\.name))
            for (a, b) in zip(original, read) {
                #expect(a.tensor.values == b.tensor.values, "\(a.name)")
            }
            // Without a normalisation the graph takes x itself.
            let plain = try ONNXExport.model(model, inputShape: inputShape)
            #expect(try ONNXImport.model(fromBytes: [UInt8](plain), path: "plain.onnx").normalization == nil)
        }
    }

    @Test("a graph whose input has no shape takes the first Lin's inputs; Gemm's options and MatMul + Add")
    func linearForms() throws {
        // x • B + C three ways: Gemm with transB, MatMul + Add, MatMul alone (zero bias).
        var generator = RandomGenerator(seed: 11)
        let w = Tensor.randn([5, 3], generator: &generator)  // (nIn, nOut)
        let b = Tensor.randn([3], generator: &generator)
        let x = Tensor.randn([4, 5], generator: &generator)
        let reference = (0..<4).flatMap { i in
            (0..<3).map { j in (0..<5).reduce(Double(b[j])) { $0 + Double(x[i, $1]) * Double(w[$1, j]) } }
        }
        let transposed = w.t().contiguous()
        let gemm = Self.graph(
            nodes: [Self.node("Gemm", ["x", "wt", "b"], "y", [Self.int("transB", 1)])],
            initializers: [("wt", transposed), ("b", b)], inputShape: nil)
        let matMulAdd = Self.graph(
            nodes: [Self.node("MatMul", ["x", "w"], "p"), Self.node("Add", ["b", "p"], "y")],
            initializers: [("w", w), ("b", b)], inputShape: [5])
        for (name, proto) in [("Gemm", gemm), ("MatMul + Add", matMulAdd)] {
            let imported = try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "\(name).onnx")
            #expect(imported.description.description == "lin 3")
            #expect(imported.inputShape == [5])
            expectAllNear(imported.model.predict(x).values, reference, tolerance: 1e-5, name)
        }
        // Pixels / 255 first (torchvision's ToTensor() in the model): the normalisation (0, 1).
        var scale = Self.graph(
            nodes: [
                Self.node("Div", ["x", "scale"], "s"),
                Self.node("Gemm", ["s", "wt", "b"], "y", [Self.int("transB", 1)]),
            ],
            initializers: [("scale", Tensor(shape: [], values: [255])), ("wt", transposed), ("b", b)], inputShape: [5])
        let scaled = try ONNXImport.model(fromBytes: try scale.serializedBytes(), path: "scaled.onnx")
        #expect(scaled.description.description == "lin 3")
        #expect(scaled.normalization?.mean == 0 && scaled.normalization?.std == 1)
        scale.graph.initializer[0].floatData = [100]
        expectDataError(containing: ["scaled.onnx: node 0 (\"div\", Div) divides by 100.0, not 255"]) {
            try ONNXImport.model(fromBytes: try scale.serializedBytes(), path: "scaled.onnx")
        }
        // The normalisation with Constant nodes between its steps (the TorchScript exporter's), and
        // (pixels / 255 - mean) without a deviation.
        func constantNode(_ name: String, _ value: Float) -> Onnx_NodeProto {
            var node = Self.node("Constant", [], name)
            var attribute = Onnx_AttributeProto()
            attribute.name = "value_float"
            attribute.type = .float
            attribute.f = value
            node.attribute = [attribute]
            return node
        }
        let gemmNode = Self.node("Gemm", ["c", "wt", "b"], "y", [Self.int("transB", 1)])
        let interleaved = Self.graph(
            nodes: [
                constantNode("k255", 255), Self.node("Div", ["x", "k255"], "s"), constantNode("m", 0.25),
                Self.node("Sub", ["s", "m"], "d"), constantNode("sd", 0.5), Self.node("Div", ["d", "sd"], "c"),
                gemmNode,
            ], initializers: [("wt", transposed), ("b", b)], inputShape: [5])
        let normalized = try ONNXImport.model(fromBytes: try interleaved.serializedBytes(), path: "norm.onnx")
        #expect(normalized.normalization?.mean == 0.25 && normalized.normalization?.std == 0.5)
        let centered = Self.graph(
            nodes: [constantNode("m", 0.25), Self.node("Sub", ["x", "m"], "c"), gemmNode],
            initializers: [("wt", transposed), ("b", b)], inputShape: [5])
        // Without Div 255 first, the input's scale is unknown: refused rather than guessed.
        expectDataError(containing: [
            "centered.onnx: node 1 (\"sub\", Sub) subtracts 0.25 from the input before any layer"
        ]) {
            try ONNXImport.model(fromBytes: try centered.serializedBytes(), path: "centered.onnx")
        }
        var scaledCentered = centered
        scaledCentered.graph.node.insert(
            contentsOf: [constantNode("k255", 255), Self.node("Div", ["x", "k255"], "s")], at: 0)
        scaledCentered.graph.node[3].input[0] = "s"
        let centeredModel = try ONNXImport.model(fromBytes: try scaledCentered.serializedBytes(), path: "centered.onnx")
        #expect(centeredModel.normalization?.mean == 0.25 && centeredModel.normalization?.std == 1)
        // Divided twice before the mean: what came before is named.
        let twice = Self.graph(
            nodes: [
                constantNode("k255", 255), Self.node("Div", ["x", "k255"], "s"), constantNode("sd", 0.5),
                Self.node("Div", ["s", "sd"], "c"), gemmNode,
            ], initializers: [("wt", transposed), ("b", b)], inputShape: [5])
        expectDataError(containing: [
            "twice.onnx: node 3 (\"div\", Div) divides by 0.5 after a division by 255: Backprop reads Div and Sub"
        ]) {
            try ONNXImport.model(fromBytes: try twice.serializedBytes(), path: "twice.onnx")
        }
        // x @ W + 0.5, as torch.onnx.export writes it: MatMul, Constant, Add.
        let constantBetween = Self.graph(
            nodes: [
                Self.node("MatMul", ["x", "w"], "p"), constantNode("half", 0.5), Self.node("Add", ["p", "half"], "y"),
            ],
            initializers: [("w", w)], inputShape: [5])
        let halfBias = try ONNXImport.model(fromBytes: try constantBetween.serializedBytes(), path: "half.onnx")
        #expect(halfBias.description.description == "lin 3")
        let halfReference = (0..<4).flatMap { i in
            (0..<3).map { j in (0..<5).reduce(0.5) { $0 + Double(x[i, $1]) * Double(w[$1, j]) } }
        }
        expectAllNear(halfBias.model.predict(x).values, halfReference, tolerance: 1e-5, "MatMul, Constant, Add")
        // A node that reads the chain's value second (1 - x): named as that, not as a branch.
        let reversed = Self.graph(
            nodes: [
                constantNode("one", 1), Self.node("Sub", ["one", "x"], "s"), Self.node("MatMul", ["s", "w"], "y"),
            ],
            initializers: [("w", w)], inputShape: [5])
        expectDataError(containing: [
            "reversed.onnx: node 1 (\"sub\", Sub) reads the chain's value \"x\" as its input 2 of 2, after \"one\": "
                + "Backprop reads a node whose first input is the chain's value"
        ]) {
            try ONNXImport.model(fromBytes: try reversed.serializedBytes(), path: "reversed.onnx")
        }
        let matMul = Self.graph(
            nodes: [Self.node("MatMul", ["x", "w"], "y")], initializers: [("w", w)], inputShape: [5])
        let alone = try ONNXImport.model(fromBytes: try matMul.serializedBytes(), path: "matmul.onnx")
        // A MatMul alone is a Lin without a bias, as PyTorch's nn.Linear(bias=False) exports.
        #expect(alone.description.description == "lin 3 nobias")
        #expect((alone.model.layers[0] as? Lin)?.hasBias == false)
    }

    // MARK: - What cannot be read

    /// A graph of `nodes` from the input `x` (`[n] + inputShape`, or no shape) to `y`, opset 20.
    static func graph(
        nodes: [Onnx_NodeProto], initializers: [(String, Tensor)], inputShape: [Int]?, opset: Int64 = 20
    ) -> Onnx_ModelProto {
        var proto = Onnx_ModelProto()
        proto.irVersion = 9
        var set = Onnx_OperatorSetIdProto()
        set.version = opset
        proto.opsetImport = [set]
        var graph = Onnx_GraphProto()
        graph.node = nodes
        graph.initializer = initializers.map { name, tensor in
            var proto = Onnx_TensorProto()
            proto.name = name
            proto.dims = tensor.shape.map(Int64.init)
            proto.dataType = 1
            proto.floatData = tensor.values
            return proto
        }
        var input = Onnx_ValueInfoProto()
        input.name = "x"
        input.type.tensorType.elemType = 1
        if let inputShape {
            var batch = Onnx_TensorShapeProto.Dimension()
            batch.dimParam = "n"
            input.type.tensorType.shape.dim =
                [batch]
                + inputShape.map { size in
                    var dimension = Onnx_TensorShapeProto.Dimension()
                    dimension.dimValue = Int64(size)
                    return dimension
                }
        }
        var output = Onnx_ValueInfoProto()
        output.name = "y"
        graph.input = [input]
        graph.output = [output]
        proto.graph = graph
        return proto
    }

    static func node(
        _ op: String, _ inputs: [String], _ output: String, _ attributes: [Onnx_AttributeProto] = []
    )
        -> Onnx_NodeProto
    {
        var node = Onnx_NodeProto()
        node.opType = op
        node.name = op.lowercased()
        node.input = inputs
        node.output = [output]
        node.attribute = attributes
        return node
    }

    static func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        attribute.name = name
        attribute.type = .int
        attribute.i = Int64(value)
        return attribute
    }

    /// ONNXExport's graph of the convnet, changed by `change`, read; expects an error naming
    /// `fragments`.
    func expectRefused(
        _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation,
        _ change: (inout Onnx_ModelProto) -> Void
    ) throws {
        let model = try ONNXExportTests.model(ONNXExportTests.convnetLayers, seed: 5)
        var proto = try ONNXExport.modelProto(
            model, inputShape: [1, 28, 28], normalization: (0.25, 0.5), metadata: [:])
        change(&proto)
        let bytes: [UInt8] = try proto.serializedBytes()
        expectDataError(containing: ["bad.onnx"] + fragments, sourceLocation: sourceLocation) {
            try ONNXImport.model(fromBytes: bytes, path: "bad.onnx")
        }
    }

    /// The index of the node named `name` in ONNXExport's graph.
    static func index(_ proto: Onnx_ModelProto, _ name: String) -> Int {
        proto.graph.node.firstIndex { $0.name == name }!
    }

    @Test("refuses, naming the node and what it expected, every graph it cannot read")
    func refusesWhatItCannotRead() throws {
        // (The convnet: layers.0 Conv, 1 BatchNormalization, 2 Relu, 3 MaxPool, 4 Conv, 5 BatchNormalization,
        // 6 LeakyRelu, 7 AveragePool, 8 Flatten, 9 Dropout, 10 Gemm, 11 BatchNormalization, 12 Gelu, ….)
        try expectRefused(["node 5 (\"layers.2\", Softplus) is not an operator Backprop reads"]) {
            $0.graph.node[Self.index($0, "layers.2")].opType = "Softplus"
        }
        try expectRefused(["(\"layers.4\", Conv) reads \"x\" where the chain's value is \"layers.3.out\""]) {
            $0.graph.node[Self.index($0, "layers.4")].input[0] = "x"
        }
        // External data: outside the model's folder, or missing.
        for (location, fragment) in [
            ("../weights.bin", "tensor \"layers.0.w\" is stored in \"../weights.bin\", outside the model's folder"),
            (".", "tensor \"layers.0.w\" is stored in \".\", which is the model's folder, not a file in it"),
            (
                "no-such-weights.bin",
                "no-such-weights.bin: no such file (the external data of tensor \"layers.0.w\" of bad.onnx)"
            ),
        ] {
            try expectRefused([fragment]) {
                let i = $0.graph.initializer.firstIndex { $0.name == "layers.0.w" }!
                $0.graph.initializer[i].dataLocation = .external
                var entry = Onnx_StringStringEntryProto()
                entry.key = "location"
                entry.value = location
                $0.graph.initializer[i].externalData = [entry]
            }
        }
        try expectRefused(["tensor \"layers.0.w\" holds int64 values; Backprop reads float32 and float64"]) {
            let i = $0.graph.initializer.firstIndex { $0.name == "layers.0.w" }!
            $0.graph.initializer[i].dataType = 7
        }
        try expectRefused(["tensor \"layers.0.b\" has 15 bytes of data for 4 values of 4 bytes"]) {
            let i = $0.graph.initializer.firstIndex { $0.name == "layers.0.b" }!
            $0.graph.initializer[i].rawData.removeLast()
        }
        try expectRefused(["(\"layers.0\", Conv) has NaN in its weights at index 7"]) {
            let i = $0.graph.initializer.firstIndex { $0.name == "layers.0.w" }!
            $0.graph.initializer[i].rawData.replaceSubrange(28..<32, with: [0x00, 0x00, 0xc0, 0x7f])
        }
        try expectRefused(["(\"layers.1\", BatchNormalization) has epsilon -0.001; expected a finite number >= 0"]) {
            let i = Self.index($0, "layers.1")
            $0.graph.node[i].attribute = [Self.float("epsilon", -0.001)]
        }
        try expectRefused([
            "(\"layers.1\", BatchNormalization) has momentum 1.5; expected a number in [0, 1] (PyTorch's 1 - momentum)"
        ]) {
            let i = Self.index($0, "layers.1")
            $0.graph.node[i].attribute = [Self.float("momentum", 1.5)]
        }
        // Five outputs (opsets 9-13, TrainingMode.TRAINING): the batch's statistics, not the running ones.
        try expectRefused([
            "(\"layers.1\", BatchNormalization) has 5 outputs, the batch's statistics among them: it normalises in "
                + "training mode"
        ]) {
            $0.graph.node[Self.index($0, "layers.1")].output += ["mean", "var", "saved_mean", "saved_var"]
        }
        // A negative running variance (or 0 with epsilon 0) would give NaN outputs.
        try expectRefused([
            "(\"layers.1\", BatchNormalization) has the running variance -0.5 for channel 2 with epsilon",
            "expected running_var + epsilon > 0, with running_var ≥ 0",
        ]) {
            let name = $0.graph.node[Self.index($0, "layers.1")].input[4]
            let i = $0.graph.initializer.firstIndex { $0.name == name }!
            $0.graph.initializer[i].rawData.replaceSubrange(8..<12, with: [0x00, 0x00, 0x00, 0xbf])
        }
        try expectRefused(["(\"layers.12\", Gelu) approximates GELU (\"tanh\")"]) {
            let i = Self.index($0, "layers.12")
            var approximate = Onnx_AttributeProto()
            approximate.name = "approximate"
            approximate.type = .string
            approximate.s = Data("tanh".utf8)
            $0.graph.node[i].attribute = [approximate]
        }
        try expectRefused(["(\"layers.0\", Conv) is a grouped convolution"]) {
            $0.graph.node[Self.index($0, "layers.0")].attribute.append(Self.int("group", 2))
        }
        try expectRefused(["(\"layers.3\", MaxPool) rounds its output size up (ceil_mode 1)"]) {
            $0.graph.node[Self.index($0, "layers.3")].attribute.append(Self.int("ceil_mode", 1))
        }
        try expectRefused(["(\"layers.0\", Conv) has pads [1, 1, 0, 0]; Backprop pads every side by the same amount"]) {
            let i = Self.index($0, "layers.0")
            var pads = Onnx_AttributeProto()
            pads.name = "pads"
            pads.type = .ints
            pads.ints = [1, 1, 0, 0]
            $0.graph.node[i].attribute.removeAll { $0.name == "pads" }
            $0.graph.node[i].attribute.append(pads)
        }
        try expectRefused(["(\"layers.8\", Reshape) reshapes [n] + [6, 3, 3] to [5, -1]"]) {
            let i = Self.index($0, "layers.8")
            $0.graph.node[i].opType = "Reshape"
            $0.graph.node[i].attribute = []
            $0.graph.node[i].input.append("target")
            var target = Onnx_TensorProto()
            target.name = "target"
            target.dims = [2]
            target.dataType = 7
            target.int64Data = [5, -1]
            $0.graph.initializer.append(target)
        }
        try expectRefused(["(\"layers.10\", Gemm) takes 54 features per example", "[6, 3, 3] (flatten first)"]) {
            // Flatten left out: the Gemm reads the pool's images.
            let flatten = Self.index($0, "layers.8")
            $0.graph.node[Self.index($0, "layers.9")].input[0] = "layers.7.out"
            $0.graph.node.remove(at: flatten)
        }
        // An empty tensor whose strides would overflow (the IDX reader's fuzzing found the same class).
        try expectRefused(["tensor \"layers.0.b\" has the dimensions [0, 815, 2332557312, 33554432], too large"]) {
            let i = $0.graph.initializer.firstIndex { $0.name == "layers.0.b" }!
            $0.graph.initializer[i].dims = [0, 815, 2_332_557_312, 33_554_432]
            $0.graph.initializer[i].rawData = Data()
        }
        try expectRefused(["uses ONNX opset 8; Backprop reads opset 9 or later"]) {
            $0.opsetImport[0].version = 8
        }
        try expectRefused(["has 2 inputs besides its weights (\"pixels\", \"extra\")"]) {
            var extra = Onnx_ValueInfoProto()
            extra.name = "extra"
            $0.graph.input.append(extra)
        }
        try expectRefused(["has 2 outputs"]) {
            var extra = Onnx_ValueInfoProto()
            extra.name = "layers.3.out"
            $0.graph.output.append(extra)
        }
        try expectRefused(["(\"normalize.scale\", Div) divides by 256.0, not 255"]) {
            let i = $0.graph.initializer.firstIndex { $0.name == "pixel_scale" }!
            $0.graph.initializer[i].rawData = Data([0, 0, 0x80, 0x43])  // 256
        }
        try expectRefused(["is an operator of the domain \"com.microsoft\""]) {
            $0.graph.node[Self.index($0, "layers.2")].domain = "com.microsoft"
        }
        try expectRefused(["is not an ONNX model with a graph: it holds no nodes"]) { $0.graph.node = [] }
        expectDataError(containing: ["junk.onnx: is not an ONNX model (its protobuf does not decode"]) {
            try ONNXImport.model(fromBytes: [0xff, 0xff, 0xff, 0xff], path: "junk.onnx")
        }
        // A safetensors file is not ONNX, whatever its name says.
        expectDataError(containing: ["pytorch_mlp.safetensors: is not an ONNX model"]) {
            try ONNXImport.read(path: fixturePath("pytorch_mlp.safetensors"))
        }
        #expect(!ONNXImport.looksLikeONNX(path: fixturePath("pytorch_mlp.safetensors")))
        #expect(ONNXImport.looksLikeONNX(path: fixturePath("onnx_import_mlp_legacy.onnx")))
    }

    @Test(
        "reads nn.GELU below opset 20 (TorchScript, dynamo) and AdaptiveMaxPool2d(1) (dynamo) as PyTorch wrote them",
        arguments: [
            "onnx_import_geluerfnet_opset17", "onnx_import_geluerfnet_dynamo18", "onnx_import_adaptivemaxnet_dynamo",
        ])
    func readsPyTorchGELUAndGlobalMaxPool(file: String) throws {
        let io = try Safetensors.read(path: fixturePath("onnx_import_pad_io.safetensors"))
        try Self.expectReadsExport(file, io: io)
        let operators = try #require(io.metadata["\(file).operators"])
        // What the files hold: the forms these tests are about.
        #expect(operators.contains(file.contains("gelu") ? "Erf" : "ReduceMax"))
    }

    @Test(
        "reads nn.SiLU and torch.sigmoid(x) * x (Sigmoid, Mul) as silu, as TorchScript and dynamo wrote them",
        arguments: ["onnx_import_silunet_opset17", "onnx_import_silunet_dynamo18"])
    func readsPyTorchSiLU(file: String) throws {
        let io = try Safetensors.read(path: fixturePath("onnx_import_pad_io.safetensors"))
        try Self.expectReadsExport(file, io: io)
        // What the files hold: each SiLU as a Sigmoid and a Mul, the Mul's operands in both orders.
        let model = try Onnx_ModelProto(serializedBytes: try Data(contentsOf: fixtureURL(file + ".onnx")))
        let products = model.graph.node.filter { $0.opType == "Mul" }
        let sigmoids = Set(model.graph.node.filter { $0.opType == "Sigmoid" }.flatMap(\.output))
        #expect(products.count == 2 && products.map { sigmoids.contains($0.input[0]) } == [false, true])
    }

    @Test(
        "reads nn.ReLU6, nn.Hardtanh and torch.clamp(x, min=0) (Clip, or dynamo's Max) as relu6, hardtanh and relu",
        arguments: ["onnx_import_clipnet_opset9", "onnx_import_clipnet_opset17", "onnx_import_clipnet_dynamo18"])
    func readsPyTorchClip(file: String) throws {
        let io = try Safetensors.read(path: fixturePath("onnx_import_pad_io.safetensors"))
        try Self.expectReadsExport(file, io: io)
        #expect(io.metadata["\(file).operators"]?.contains("Clip") == true)
    }

    @Test("a Clip at one side (but min 0), of no width or at neither side, and Max with another value are refused")
    func refusesOtherClips() throws {
        func clip(_ inputs: [String], _ attributes: [Onnx_AttributeProto] = [], opset: Int64 = 20) -> Onnx_ModelProto {
            Self.graph(
                nodes: [Self.node("Clip", inputs, "c", attributes), Self.node("Flatten", ["c"], "y")],
                initializers: [
                    ("zero", Tensor(shape: [], values: [0])), ("two", Tensor(shape: [], values: [2])),
                    ("pair", Tensor([1, 2])),
                ], inputShape: [5], opset: opset)
        }
        for (proto, message) in [
            (clip(["x", "", "two"]), "clips at one side only (max 2.0)"),
            (clip(["x", "two"]), "clips at one side only (min 2.0)"),
            (
                clip(["x", "two", "zero"]),
                "clips to [2.0, 0.0]; Backprop's hardtanh expects finite bounds with min < max"
            ),
            (clip(["x", "two", "two"]), "clips to [2.0, 2.0]"),
            (clip(["x"]), "clips at neither side (the identity)"),
            (clip(["x", "pair", "two"]), "has a lower bound (min) of shape [2]; expected a scalar"),
            (clip(["x"], [Self.float("max", 2)], opset: 9), "clips at one side only (max 2.0)"),
        ] {
            expectDataError(containing: ["clip.onnx: node 0 (\"clip\", Clip) \(message)"]) {
                try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "clip.onnx")
            }
        }
        // Both bounds as attributes (before opset 11), and min 0 alone as an input: hardtanh, relu.
        let attributes = clip(["x"], [Self.float("min", -0.5), Self.float("max", 0.5)], opset: 9)
        let read = try ONNXImport.model(fromBytes: try attributes.serializedBytes(), path: "clip.onnx")
        #expect(read.description.description == "hardtanh -0.5 0.5, flatten")
        #expect(read.model.predict(Tensor([[-1, -0.25, 0, 0.75, 3]])).values == [-0.5, -0.25, 0, 0.5, 0.5])
        let relu = try ONNXImport.model(fromBytes: try clip(["x", "zero"]).serializedBytes(), path: "clip.onnx")
        #expect(relu.description.description == "relu, flatten")
        let max = Self.graph(
            nodes: [Self.node("Max", ["x", "two"], "m"), Self.node("Flatten", ["m"], "y")],
            initializers: [("two", Tensor(shape: [], values: [2]))], inputShape: [5])
        expectDataError(
            containing: [
                "clip.onnx: node 0 (\"max\", Max) takes the maximum with 2.0; Backprop reads Max only of the chain's "
                    + "value and 0, as relu"
            ]
        ) {
            try ONNXImport.model(fromBytes: try max.serializedBytes(), path: "clip.onnx")
        }
    }

    @Test("SiLU is read in either order and with Constants between; a Sigmoid's other products are not SiLU")
    func readsSiLUForms() throws {
        var generator = RandomGenerator(seed: 16)
        let x = Tensor.randn([3, 5], generator: &generator) * 4
        let reference = x.values.map { Double($0) / (1 + exp(-Double($0))) }  // x σ(x) in Double
        var constant = Self.node("Constant", [], "c", [Self.float("value_float", 2)])
        constant.name = "c"
        for (form, nodes) in [
            ("x · σ", [Self.node("Sigmoid", ["x"], "s"), Self.node("Mul", ["x", "s"], "m")]),
            (
                "σ · x, a Constant between",
                [Self.node("Sigmoid", ["x"], "s"), constant, Self.node("Mul", ["s", "x"], "m")]
            ),
        ] {
            let proto = Self.graph(nodes: nodes + [Self.node("Flatten", ["m"], "y")], initializers: [], inputShape: [5])
            let imported = try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "silu.onnx")
            #expect(imported.description.description == "silu, flatten", "\(form)")
            expectAllNear(imported.model.predict(x).values, reference, tolerance: 1e-6, form)
        }
        // σ(x) · σ(x) and σ(x) · 2 are not SiLU: the Sigmoid is the layer, and the Mul is refused.
        for product in [Self.node("Mul", ["s", "s"], "m"), Self.node("Mul", ["s", "c"], "m")] {
            let proto = Self.graph(
                nodes: [Self.node("Sigmoid", ["x"], "s"), constant, product, Self.node("Flatten", ["m"], "y")],
                initializers: [], inputShape: [5])
            expectDataError(containing: ["silu.onnx: node 2 (\"mul\", Mul)"]) {
                try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "silu.onnx")
            }
        }
        // The sigmoid read again after the Mul: a branch.
        let branch = Self.graph(
            nodes: [
                Self.node("Sigmoid", ["x"], "s"), Self.node("Mul", ["x", "s"], "m"), Self.node("Add", ["m", "s"], "y"),
            ], initializers: [], inputShape: [5])
        expectDataError(containing: ["silu.onnx: node 2 (\"add\", Add) reads an earlier value of the chain again"]) {
            try ONNXImport.model(fromBytes: try branch.serializedBytes(), path: "silu.onnx")
        }
    }

    @Test("the exact GELU written as Div, Erf, Add, Mul, Mul (exporters below opset 20) is read as gelu, in any order")
    func readsGELUWrittenWithErf() throws {
        var generator = RandomGenerator(seed: 15)
        let x = Tensor.randn([3, 5], generator: &generator) * 3
        // GELU in Double from libm's erf: x · (1 + erf(x / √2)) / 2.
        let reference = x.values.map { Double($0) * (1 + erf(Double($0) / 2.0.squareRoot())) / 2 }
        func scalar(_ name: String, _ value: Float) -> Onnx_TensorProto {
            var tensor = Onnx_TensorProto()
            (tensor.name, tensor.dataType, tensor.floatData) = (name, 1, [value])
            return tensor
        }
        func constant(_ name: String, _ value: Float) -> Onnx_NodeProto {
            var node = Self.node("Constant", [], name, [Self.float("value_float", value)])
            node.name = name
            return node
        }
        let (sqrt2, half) = (Float(2).squareRoot(), Float(0.5))
        // (form, nodes, initializers)
        let forms: [(String, [Onnx_NodeProto], [Onnx_TensorProto])] = [
            (
                "TorchScript: Constant nodes between, x · (1 + erf) then · 0.5",
                [
                    constant("c0", sqrt2), Self.node("Div", ["x", "c0"], "d"), Self.node("Erf", ["d"], "e"),
                    constant("c1", 1), Self.node("Add", ["e", "c1"], "a"), Self.node("Mul", ["x", "a"], "m"),
                    constant("c2", half), Self.node("Mul", ["m", "c2"], "g"), Self.node("Flatten", ["g"], "y"),
                ], []
            ),
            (
                "dynamo: initializers, 0.5 · (1 + erf) then x ·, operands swapped",
                [
                    Self.node("Div", ["x", "s"], "d"), Self.node("Erf", ["d"], "e"),
                    Self.node("Add", ["one", "e"], "a"),
                    Self.node("Mul", ["h", "a"], "m"), Self.node("Mul", ["m", "x"], "g"),
                    Self.node("Flatten", ["g"], "y"),
                ], [scalar("s", sqrt2), scalar("one", 1), scalar("h", half)]
            ),
            (
                "x · 1/√2 for the division",
                [
                    Self.node("Mul", ["s", "x"], "d"), Self.node("Erf", ["d"], "e"),
                    Self.node("Add", ["e", "one"], "a"),
                    Self.node("Mul", ["a", "x"], "m"), Self.node("Mul", ["h", "m"], "g"),
                    Self.node("Flatten", ["g"], "y"),
                ], [scalar("s", Float(0.5).squareRoot()), scalar("one", 1), scalar("h", half)]
            ),
            (
                // As torch.onnx.export writes `y * 0.5 * (1 + torch.erf(y / math.sqrt(2)))`.
                "x · 0.5 first, written by hand",
                [
                    Self.node("Mul", ["x", "h"], "p"), constant("c0", sqrt2), Self.node("Div", ["x", "c0"], "d"),
                    Self.node("Erf", ["d"], "e"), Self.node("Add", ["e", "one"], "a"),
                    Self.node("Mul", ["p", "a"], "g"),
                    Self.node("Flatten", ["g"], "y"),
                ], [scalar("one", 1), scalar("h", half)]
            ),
        ]
        for (form, nodes, initializers) in forms {
            var proto = Self.graph(nodes: nodes, initializers: [], inputShape: [5])
            proto.graph.initializer = initializers
            let imported = try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "gelu.onnx")
            #expect(imported.description.description == "gelu, flatten", "\(form)")
            expectAllNear(imported.model.predict(x).values, reference, tolerance: 1e-6, form)
        }
        // Other constants: refused, saying which; another operator after the Add: not this form.
        var other = Self.graph(nodes: forms[1].1, initializers: [], inputShape: [5])
        other.graph.initializer = [scalar("s", sqrt2), scalar("one", 1), scalar("h", 0.25)]
        expectDataError(containing: [
            "gelu.onnx: node 0 (\"div\", Div) begins GELU's form x · (1 + erf(x / √2)) · 0.5 (Div, Erf, Add, Mul, Mul), "
                + "but with the constants 1.4142135, 1.0, 0.25 where √2, 1 and 0.5 belong"
        ]) {
            try ONNXImport.model(fromBytes: try other.serializedBytes(), path: "gelu.onnx")
        }
        var halfFirst = Self.graph(nodes: forms[3].1, initializers: [], inputShape: [5])
        halfFirst.graph.initializer = [scalar("one", 1), scalar("h", 0.4)]
        expectDataError(containing: [
            "gelu.onnx: node 0 (\"mul\", Mul) begins GELU's form x · (1 + erf(x / √2)) · 0.5 (Mul, Div, Erf, Add, Mul), "
                + "but with the constants 1.4142135, 1.0, 0.4 where √2, 1 and 0.5 belong"
        ]) {
            try ONNXImport.model(fromBytes: try halfFirst.serializedBytes(), path: "gelu.onnx")
        }
        // x · 0.5 then a Mul of it and something else than the Add: not this form (refused later).
        var unrelated = Self.graph(nodes: forms[3].1, initializers: [], inputShape: [5])
        unrelated.graph.initializer = [scalar("one", 1), scalar("h", half)]
        unrelated.graph.node[5].input = ["p", "e"]
        #expect(throws: (any Error).self) {
            try ONNXImport.model(fromBytes: try unrelated.serializedBytes(), path: "gelu.onnx")
        }
        var sub = other
        sub.graph.node[2].opType = "Sub"
        expectDataError(containing: [
            "gelu.onnx: node 0 (\"div\", Div) divides by 1.4142135, not 255"
        ]) {
            try ONNXImport.model(fromBytes: try sub.serializedBytes(), path: "gelu.onnx")
        }
    }

    /// `summary` of each plane (`h × w` values) of images `x` `[n, c, h, w]`, in order.
    static func perPlane(_ x: Tensor, _ summary: (ArraySlice<Float>) -> Double) -> [Double] {
        let (values, size) = (x.values, x.shape[2] * x.shape[3])
        return (0..<(x.shape[0] * x.shape[1])).map { summary(values[($0 * size)..<($0 * size + size)]) }
    }

    @Test("a global max pool (GlobalMaxPool; ReduceMax over height and width, as dynamo writes AdaptiveMaxPool2d(1))")
    func readsGlobalMaxPools() throws {
        var generator = RandomGenerator(seed: 16)
        let x = Tensor.randn([2, 3, 4, 4], generator: &generator)
        let reference = Self.perPlane(x) { Double($0.max()!) }
        var axes = Onnx_TensorProto()
        (axes.name, axes.dataType, axes.dims, axes.int64Data) = ("axes", 7, [2], [-2, -1])
        let forms: [(String, [Onnx_NodeProto], String)] = [
            (
                "GlobalMaxPool", [Self.node("GlobalMaxPool", ["x"], "p"), Self.node("Flatten", ["p"], "y")],
                "maxpool 4, flatten"
            ),
            (
                "ReduceMax keepdims 1, axes an input",
                [Self.node("ReduceMax", ["x", "axes"], "p"), Self.node("Flatten", ["p"], "y")], "maxpool 4, flatten"
            ),
            (
                "ReduceMax keepdims 0", [Self.node("ReduceMax", ["x", "axes"], "y", [Self.int("keepdims", 0)])],
                "maxpool 4, flatten"
            ),
        ]
        for (form, nodes, description) in forms {
            var proto = Self.graph(nodes: nodes, initializers: [], inputShape: [3, 4, 4], opset: 18)
            proto.graph.initializer = [axes]
            let imported = try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "max.onnx")
            #expect(imported.description.description == description, "\(form)")
            expectAllNear(imported.model.predict(x).values, reference, tolerance: 0, form)
        }
        var overChannels = Self.graph(
            nodes: [Self.node("ReduceMax", ["x", "axes"], "y")], initializers: [], inputShape: [3, 4, 4], opset: 18)
        axes.int64Data = [1]
        axes.dims = [1]
        overChannels.graph.initializer = [axes]
        expectDataError(containing: [
            "(\"reducemax\", ReduceMax) takes the maximum of [n] + [3, 4, 4] over the axes [1]; Backprop reads a "
                + "ReduceMax only over the height and width of images [n, c, h, w] (a global max pool)"
        ]) {
            try ONNXImport.model(fromBytes: try overChannels.serializedBytes(), path: "max.onnx")
        }
    }

    @Test("y.view(x.size(0), -1) with x an earlier value (TorchScript's Shape of the input) is a flatten")
    func readsAViewSizedByAnEarlierValue() throws {
        var generator = RandomGenerator(seed: 18)
        let x = Tensor.randn([2, 3, 4, 4], generator: &generator)
        let reference = Self.perPlane(x) { plane in plane.reduce(0.0) { $0 + Double($1) } / Double(plane.count) }
        var tensors: [Onnx_TensorProto] = []
        for (name, values) in [("zero", [Int64(0)]), ("axis", [0]), ("rest", [-1])] {
            var tensor = Onnx_TensorProto()
            (tensor.name, tensor.dataType, tensor.int64Data) = (name, 7, values)
            tensor.dims = name == "zero" ? [] : [1]
            tensors.append(tensor)
        }
        let nodes = [
            Self.node("GlobalAveragePool", ["x"], "p"), Self.node("Shape", ["x"], "s"),
            Self.node("Gather", ["s", "zero"], "n"), Self.node("Unsqueeze", ["n", "axis"], "n1"),
            Self.node("Concat", ["n1", "rest"], "target", [Self.int("axis", 0)]),
            Self.node("Reshape", ["p", "target"], "y"),
        ]
        var proto = Self.graph(nodes: nodes, initializers: [], inputShape: [3, 4, 4], opset: 13)
        proto.graph.initializer = tensors
        let imported = try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "view.onnx")
        #expect(imported.description.description == "avgpool 4, flatten")
        expectAllNear(imported.model.predict(x).values, reference, tolerance: 1e-6, "view")
    }

    /// `y.view(*y.shape[:1], -1)` and nn.Flatten(2), as the TorchScript exporter writes them: a
    /// Slice of the shape. The first is a flatten; the second, a view into `[n, c, h·w]`, is
    /// refused naming that shape (it was refused as "computes with a shape in a way Backprop does
    /// not read", naming nothing).
    @Test("a Slice of a shape gives a Reshape its sizes: y.view(*y.shape[:1], -1) is a flatten")
    func readsAViewSizedByASliceOfTheShape() throws {
        var generator = RandomGenerator(seed: 19)
        let x = Tensor.randn([2, 3, 4, 4], generator: &generator)
        func graph(end: Int) throws -> [UInt8] {
            var tensors: [Onnx_TensorProto] = []
            for (name, values) in [("start", [Int64(0)]), ("end", [Int64(end)]), ("axis", [0]), ("rest", [-1])] {
                var tensor = Onnx_TensorProto()
                (tensor.name, tensor.dataType, tensor.int64Data, tensor.dims) = (name, 7, values, [1])
                tensors.append(tensor)
            }
            let nodes = [
                Self.node("Shape", ["x"], "s"), Self.node("Slice", ["s", "start", "end", "axis"], "kept"),
                Self.node("Concat", ["kept", "rest"], "target", [Self.int("axis", 0)]),
                Self.node("Reshape", ["x", "target"], "y"),
            ]
            var proto = Self.graph(nodes: nodes, initializers: [], inputShape: [3, 4, 4], opset: 13)
            proto.graph.initializer = tensors
            return try proto.serializedBytes()
        }
        let imported = try ONNXImport.model(fromBytes: try graph(end: 1), path: "view.onnx")
        #expect(imported.description.description == "flatten")
        #expect(imported.model.predict(x).values == x.values)
        expectDataError(containing: ["view.onnx: node 3 (\"reshape\", Reshape)", "[n, 3, -1]"]) {
            try ONNXImport.model(fromBytes: try graph(end: 2), path: "view.onnx")
        }
    }

    @Test("a GELU approximated with tanh below opset 20 (Tanh with a cube of x) is refused saying so")
    func refusesTanhGELUSayingSo() throws {
        var three = Onnx_TensorProto()
        (three.name, three.dataType, three.floatData) = ("three", 1, [3])
        let nodes = [
            Self.node("Pow", ["x", "three"], "cube"), Self.node("Add", ["x", "cube"], "inner"),
            Self.node("Tanh", ["inner"], "t"), Self.node("Mul", ["x", "t"], "y"),
        ]
        var proto = Self.graph(nodes: nodes, initializers: [], inputShape: [5], opset: 13)
        proto.graph.initializer = [three]
        expectDataError(containing: [
            "tanh.onnx: node 0 (\"pow\", Pow) is not an operator Backprop reads (Tanh with a cube of x is how a GELU "
                + "approximated with tanh, nn.GELU(approximate='tanh'), is written below opset 20; Backprop's GELU is "
                + "the exact one, nn.GELU())"
        ]) {
            try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "tanh.onnx")
        }
        // The TorchScript exporter's cube, x · x · x, and its 0.044715: the branch is named so too.
        var coefficient = Onnx_TensorProto()
        (coefficient.name, coefficient.dataType, coefficient.floatData) = ("c", 1, [0.044715])
        let torchScript = [
            Self.node("Mul", ["x", "x"], "square"), Self.node("Mul", ["square", "x"], "cube"),
            Self.node("Mul", ["cube", "c"], "scaled"), Self.node("Add", ["x", "scaled"], "inner"),
            Self.node("Tanh", ["inner"], "y"),
        ]
        var branching = Self.graph(nodes: torchScript, initializers: [], inputShape: [5], opset: 13)
        branching.graph.initializer = [coefficient]
        expectDataError(containing: ["nn.GELU(approximate='tanh')"]) {
            try ONNXImport.model(fromBytes: try branching.serializedBytes(), path: "tanh.onnx")
        }
    }

    @Test(
        "a batch norm's scale and bias expanded to Shape(x)[1:2] (dynamo, optimize=False, affine=False) are constants")
    func readsBatchNormWithExpandedScale() throws {
        var generator = RandomGenerator(seed: 17)
        let x = Tensor.randn([4, 3], generator: &generator)
        let mean = Tensor(shape: [3], values: [0.5, -1, 2])
        let variance = Tensor(shape: [3], values: [1.5, 0.25, 4])
        var tensors: [Onnx_TensorProto] = []
        for (name, values) in [("one", [Float(1)]), ("zero", [0]), ("mean", mean.values), ("var", variance.values)] {
            var tensor = Onnx_TensorProto()
            (tensor.name, tensor.dataType, tensor.floatData) = (name, 1, values)
            tensor.dims = values.count == 1 ? [] : [3]
            tensors.append(tensor)
        }
        let nodes = [
            Self.node("CastLike", ["one", "x"], "one_x"), Self.node("CastLike", ["zero", "x"], "zero_x"),
            Self.node("Shape", ["x"], "channels", [Self.int("start", 1), Self.int("end", 2)]),
            Self.node("Expand", ["one_x", "channels"], "scale"), Self.node("Expand", ["zero_x", "channels"], "bias"),
            Self.node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], "y"),
        ]
        var proto = Self.graph(nodes: nodes, initializers: [], inputShape: [3], opset: 18)
        proto.graph.initializer = tensors
        let imported = try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "bn.onnx")
        #expect(imported.description.description == "batchnorm")
        let reference = x.values.enumerated().map { index, value in
            (Double(value) - Double(mean.values[index % 3])) / (Double(variance.values[index % 3]) + 1e-5).squareRoot()
        }
        expectAllNear(imported.model.predict(x).values, reference, tolerance: 1e-6, "batch norm")
        // Expanded to sizes with the batch's among them: not a constant, refused naming the node.
        proto.graph.node[2].attribute = [Self.int("end", 2)]
        expectDataError(containing: [
            "bn.onnx: node 3 (\"expand\", Expand) computes with the float32 constant \"one_x\" and sizes of the chain "
                + "value's shape (the batch size among them"
        ]) {
            try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "bn.onnx")
        }
    }

    @Test("refuses global pools over maps that are not square, and shapes computed otherwise than a flatten")
    func refusesOtherPoolsAndShapes() throws {
        func read(_ nodes: [Onnx_NodeProto], _ initializers: [(String, Tensor)] = [], _ shape: [Int]) throws {
            let proto = Self.graph(nodes: nodes, initializers: initializers, inputShape: shape)
            _ = try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "pool.onnx")
        }
        expectDataError(containing: [
            "(\"globalaveragepool\", GlobalAveragePool) averages whole maps of [n] + [2, 3, 5]"
        ]) {
            try read([Self.node("GlobalAveragePool", ["x"], "y")], [], [2, 3, 5])
        }
        var axes = Onnx_AttributeProto()
        axes.name = "axes"
        axes.type = .ints
        axes.ints = [1]
        expectDataError(containing: ["(\"reducemean\", ReduceMean) averages [n] + [2, 4, 4] over the axes [1]"]) {
            try read([Self.node("ReduceMean", ["x"], "y", [axes])], [], [2, 4, 4])
        }
        // x.view(x.size(0), 2, -1): not a flatten.
        let nodes = [
            Self.node("Shape", ["x"], "s"), Self.node("Gather", ["s", "zero"], "n"),
            Self.node("Unsqueeze", ["n", "axis"], "n1"),
            Self.node("Concat", ["n1", "rest"], "target", [Self.int("axis", 0)]),
            Self.node("Reshape", ["x", "target"], "y"),
        ]
        let proto = Self.graph(nodes: nodes, initializers: [], inputShape: [2, 4, 4])
        var withConstants = proto
        for (name, values) in [("zero", [Int64(0)]), ("axis", [0]), ("rest", [2, -1])] {
            var tensor = Onnx_TensorProto()
            tensor.name = name
            tensor.dataType = 7
            tensor.dims = name == "zero" ? [] : [Int64(values.count)]
            tensor.int64Data = values
            withConstants.graph.initializer.append(tensor)
        }
        expectDataError(containing: ["(\"reshape\", Reshape) reshapes [n] + [2, 4, 4] to [n, 2, -1]"]) {
            _ = try ONNXImport.model(fromBytes: try withConstants.serializedBytes(), path: "view.onnx")
        }
        // Constant work with an input missing is an error, not a fold that reads past the inputs.
        for op in ["Reshape", "Expand", "Gather"] {
            var broken = withConstants
            broken.graph.node.insert(Self.node(op, ["rest"], "folded"), at: 0)
            expectDataError(containing: ["(\"\(op.lowercased())\", \(op)) has 1 inputs; expected 2"]) {
                _ = try ONNXImport.model(fromBytes: try broken.serializedBytes(), path: "view.onnx")
            }
        }
        // The same with [-1] after the batch: a flatten.
        withConstants.graph.initializer[2].dims = [1]
        withConstants.graph.initializer[2].int64Data = [-1]
        let flat = try ONNXImport.model(fromBytes: try withConstants.serializedBytes(), path: "view.onnx")
        #expect(flat.description.description == "flatten")
    }

    /// `n, c, h, w = y.shape; y.reshape(n, c * h * w)`, as the TorchScript exporter writes it: the
    /// sizes gathered from `Shape` and multiplied (`Mul`). It was refused as a graph that is not a
    /// chain ("reads "ch" where the chain's value is "x""), which named the wrong cause.
    @Test("a flatten whose target multiplies sizes taken from Shape is read; a product with the batch size is refused")
    func flattenTargetAsAProductOfSizes() throws {
        func model(multiplying first: String) throws -> ONNXImportedModel {
            let nodes = [
                Self.node("Shape", ["x"], "s"), Self.node("Gather", ["s", "zero"], "n"),
                Self.node("Gather", ["s", "one"], "c"), Self.node("Gather", ["s", "two"], "h"),
                Self.node("Gather", ["s", "three"], "w"), Self.node("Mul", [first, "h"], "ch"),
                Self.node("Mul", ["ch", "w"], "chw"), Self.node("Unsqueeze", ["n", "axis"], "n1"),
                Self.node("Unsqueeze", ["chw", "axis"], "f1"),
                Self.node("Concat", ["n1", "f1"], "target", [Self.int("axis", 0)]),
                Self.node("Reshape", ["x", "target"], "y"),
            ]
            var proto = Self.graph(nodes: nodes, initializers: [], inputShape: [2, 4, 3])
            for (name, value) in [("zero", Int64(0)), ("one", 1), ("two", 2), ("three", 3), ("axis", 0)] {
                var tensor = Onnx_TensorProto()
                tensor.name = name
                tensor.dataType = 7
                tensor.dims = name == "axis" ? [1] : []
                tensor.int64Data = [value]
                proto.graph.initializer.append(tensor)
            }
            return try ONNXImport.model(fromBytes: try proto.serializedBytes(), path: "sizes.onnx")
        }
        let flat = try model(multiplying: "c")
        #expect(flat.description.description == "flatten")
        let x = Tensor(shape: [2, 2, 4, 3], values: (0..<48).map(Float.init))
        #expect(flat.model.predict(x).shape == [2, 24])
        #expect(flat.model.predict(x).values == x.values)
        expectDataError(containing: [
            "(\"mul\", Mul) computes with a shape in a way Backprop does not read (n · 4)"
        ]) {
            _ = try model(multiplying: "n")
        }
    }

    static func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        attribute.name = name
        attribute.type = .float
        attribute.f = value
        return attribute
    }

    @Test("mutated and truncated files end in an error or a model, never a trap")
    func mutatedFilesNeverTrap() throws {
        var generator = RandomGenerator(seed: 21)
        var outcomes = (models: 0, errors: 0)
        for file in [
            "onnx_import_convnet_unfolded", "onnx_import_convnet_dynamo", "onnx_import_mlp_legacy",
            "onnx_import_zeropadnet_opset11", "onnx_import_poolpadnet", "onnx_import_zeropadconvnet_unfolded",
            "onnx_import_geluerfnet_opset17", "onnx_import_silunet_dynamo18", "onnx_import_clipnet_opset17",
        ] {
            let original = [UInt8](try Data(contentsOf: fixtureURL(file + ".onnx")))
            for trial in 0..<150 {
                var bytes = original
                if trial % 10 == 0 {
                    bytes = Array(bytes.prefix(generator.nextIndex(below: bytes.count)))
                } else {
                    for _ in 0...generator.nextIndex(below: 4) {
                        let at = generator.nextIndex(below: bytes.count)
                        bytes[at] = UInt8(generator.nextIndex(below: 256))
                    }
                }
                do {
                    let imported = try ONNXImport.model(fromBytes: bytes, path: "mutated.onnx")
                    // What reads must run: one example through the model (unless a mutated input
                    // shape asks for a large one).
                    if imported.inputShape.reduce(1, *) <= 1 << 20 {
                        _ = imported.model.predict(Tensor.zeros([1] + imported.inputShape))
                    }
                    outcomes.models += 1
                } catch is DataError {
                    outcomes.errors += 1
                }
            }
        }
        #expect(outcomes.errors > 100 && outcomes.models > 10, "\(outcomes)")
    }

    // MARK: - The command line

    @Test("external data through a symbolic link is read only when the link leads inside the model's folder")
    func externalDataThroughASymbolicLink() throws {
        let model = fixturePath("onnx_import_mlp_external.onnx")
        let expected = try ONNXImport.read(path: model).model.namedParameters.map(\.tensor.values)
        try withTemporaryFolder { folder in
            let manager = FileManager.default
            try manager.createDirectory(atPath: folder + "/model", withIntermediateDirectories: false)
            try manager.copyItem(atPath: model, toPath: folder + "/model/m.onnx")
            // The data where the link's name is, through a link that leads out of the folder.
            try manager.copyItem(atPath: model + ".data", toPath: folder + "/outside.data")
            try manager.createSymbolicLink(
                atPath: folder + "/model/onnx_import_mlp_external.onnx.data", withDestinationPath: "../outside.data")
            expectDataError(containing: [
                "is stored in \"onnx_import_mlp_external.onnx.data\", a symbolic link to",
                "outside.data, outside the model's folder",
            ]) {
                try ONNXImport.read(path: folder + "/model/m.onnx")
            }
            // A link to a file inside the folder is read.
            try manager.removeItem(atPath: folder + "/model/onnx_import_mlp_external.onnx.data")
            try manager.moveItem(atPath: folder + "/outside.data", toPath: folder + "/model/weights.bin")
            try manager.createSymbolicLink(
                atPath: folder + "/model/onnx_import_mlp_external.onnx.data", withDestinationPath: "weights.bin")
            let read = try ONNXImport.read(path: folder + "/model/m.onnx")
            #expect(read.model.namedParameters.map(\.tensor.values) == expected)
        }
    }

    @Test("backprop evaluate, train --init and export read ONNX models")
    func commandLineReadsONNX() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 4)  // 4×4 images: 16 pixels, as the MLP fixture takes
            let path = fixturePath("onnx_import_mlp_dynamo.onnx")
            let layers = "lin 12, gelu, lin 12, leakyrelu 0.2, lin 8, tanh, lin 8, sigmoid, lin 10"
            let evaluated = try runBackprop(["evaluate", "--model", path, "--data", folder])
            #expect(evaluated.status == 0, "\(evaluated.standardError)")
            // The same model as a PyTorch state_dict, evaluated with --layers: the same result.
            let exported = try runBackprop(["export", path, "--format", "pytorch", folder + "/mlp.safetensors"])
            #expect(exported.status == 0, "\(exported.standardError)")
            #expect(exported.standardError.isEmpty, "\(exported.standardError)")
            // A file that ends in a Softmax: the model written gives the logits, and export says so
            // (it said nothing, and the ONNX written gave other outputs than the file read).
            let softmax = fixturePath("onnx_import_softmax_head.onnx")
            let headless = try runBackprop(["export", softmax, "--format", "onnx", folder + "/head.onnx"])
            #expect(headless.status == 0, "\(headless.standardError)")
            #expect(
                headless.standardError
                    == "note: \(softmax) ends in a Softmax over the classes, which is left out: the model written gives "
                    + "the logits before it (Backprop's models end in logits; apply softmax to its output for the "
                    + "file's)\n")
            let viaStateDict = try runBackprop([
                "evaluate", "--model", folder + "/mlp.safetensors", "--layers", layers, "--data", folder,
            ])
            #expect(viaStateDict.status == 0, "\(viaStateDict.standardError)")
            let result = { (output: String) in output.components(separatedBy: ", model").first ?? "" }
            #expect(evaluated.standardOutput.hasPrefix("test accuracy "))
            #expect(result(evaluated.standardOutput) == result(viaStateDict.standardOutput))

            let wrong = try runBackprop(["evaluate", "--model", path, "--layers", "lin 10", "--data", folder])
            #expect(wrong.status == 1 && !wrong.crashed)
            #expect(
                wrong.standardError
                    == "Error: \(path): holds the model '\(layers)', not --layers 'lin 10' (an ONNX model gives its own "
                    + "architecture: leave --layers out)\n")

            // train --init: the file's weights, with dropout in --layers (exporters leave it out).
            let withDropout = layers.replacingOccurrences(of: "sigmoid, lin 10", with: "sigmoid, dropout 0.5, lin 10")
            let trained = try runBackprop([
                "train", "--layers", withDropout, "--init", path, "--data", folder, "--epochs", "1", "--lr", "1e-9",
                "--save", folder + "/run.safetensors",
            ])
            #expect(trained.status == 0, "\(trained.standardError)")
            let saved = try Checkpoint.load(path: folder + "/run.safetensors")
            let original = try ONNXImport.read(path: path).model
            for (a, b) in zip(original.namedParameters, saved.namedParameters) {
                expectAllNear(b.tensor, a.tensor, tolerance: 1e-6, b.name)
            }
            // Without --layers, the graph's own network.
            let own = try runBackprop([
                "train", "--init", path, "--data", folder, "--epochs", "1", "--lr", "1e-9",
                "--save", folder + "/own.safetensors",
            ])
            #expect(own.status == 0, "\(own.standardError)")
            let ownSaved = try Checkpoint.load(path: folder + "/own.safetensors")
            #expect(try Checkpoint.modelDescription(of: ownSaved) == ModelDescription(parsing: layers))
            for (a, b) in zip(original.namedParameters, ownSaved.namedParameters) {
                expectAllNear(b.tensor, a.tensor, tolerance: 1e-6, b.name)
            }
            let misfit = try runBackprop([
                "train", "--layers", "lin 12, relu, lin 10", "--init", path, "--data", folder, "--epochs", "1",
            ])
            #expect(misfit.status == 1 && !misfit.crashed)
            #expect(
                misfit.standardError.hasPrefix(
                    "Error: \(path): holds the model '\(layers)' for examples of shape [16], not --layers 'lin 12, relu, lin 10'"
                ))
        }
    }
}
