import Foundation
import SwiftProtobuf
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropNetwork
@testable import BackpropONNX
@testable import BackpropTraining

// ONNX export: the graph decoded with SwiftProtobuf (opset, input and output, the nodes in order,
// every initializer equal to the model's tensor), the errors that name what cannot be exported,
// `backprop export --format onnx`, and, where onnxruntime is installed, ONNX Runtime running the
// export to Backprop's logits (check_onnx_export.py runs the Python the command printed).

/// Whether `python3` can import onnxruntime and numpy here (for the tests that run ONNX Runtime).
let onnxRuntimeAvailable: Bool = {
    (try? runProgram("/usr/bin/env", ["python3", "-c", "import onnxruntime, numpy"]).status) == 0
}()

/// Whether CI runs here (`CI` set): CI installs onnxruntime (.ci/run), so there its absence fails
/// rather than skips the tests that need it.
let onnxRuntimeTestsRun = onnxRuntimeAvailable || ProcessInfo.processInfo.environment["CI"] != nil

let onnxRuntimeMissingNote: Comment =
    "onnxruntime is not installed here (python3 -c 'import onnxruntime' fails; pip install onnxruntime)"

@Suite("ONNX export")
struct ONNXExportTests {
    /// An MLP with every activation, dropout and a batch norm over features.
    static let mlpLayers =
        "lin 24, gelu, lin 16, leakyrelu 0.2, dropout 0.5, lin 16, batchnorm, tanh, lin 12, sigmoid, lin 12, silu, "
        + "lin 12, relu6, lin 12, hardtanh -2.0 3.0, lin 10"
    /// A convnet with every layer kind: convolutions with and without bias, stride and padding,
    /// batch norms over channels and over features, both pools (the average one's windows
    /// overlapping), flatten, dropout and every activation.
    static let convnetLayers =
        "conv 4 3 pad 1, batchnorm, relu, maxpool 2, conv 6 3 stride 2 pad 1 nobias, batchnorm, leakyrelu 0.2, "
        + "avgpool 3 stride 2, flatten, dropout 0.25, lin 16 nobias, batchnorm, gelu, lin 12, tanh, lin 12, sigmoid, lin 10"
    /// Pools with padding: ResNet's stem pool, an average over its padding's zeros, and one that
    /// leaves its padding out (`count_include_pad` 0).
    static let paddedPoolLayers =
        "conv 4 3 pad 1, maxpool 3 stride 2 pad 1, avgpool 3 stride 1 pad 1, avgpool 2 stride 1 pad 1 excludepad, "
        + "flatten, lin 10"
    static let convnetOperators = [
        "Conv", "BatchNormalization", "Relu", "MaxPool", "Conv", "BatchNormalization", "LeakyRelu", "AveragePool",
        "Flatten", "Dropout", "Gemm", "BatchNormalization", "Gelu", "Gemm", "Tanh", "Gemm", "Sigmoid", "Gemm",
    ]

    /// The model `layers` describes for Fashion-MNIST (`[784]` or `[1, 28, 28]`), drawn from `seed`,
    /// with every bias and batch norm away from its initial value, in evaluation mode.
    static func model(_ layers: String, seed: UInt64) throws -> Model {
        let description = try ModelDescription(parsing: layers)
        var generator = RandomGenerator(seed: seed)
        let model = try Model(
            description: description, inputShape: description.inputShape(channels: 1, height: 28, width: 28),
            loss: CrossEntropy(), generator: &generator)
        for (name, tensor) in model.namedParameters + model.namedBuffers {
            let normal = { Float(generator.nextNormal()) }
            let value: () -> Float
            switch String(name.split(separator: ".").last!) {
            case "b": value = { 0.1 * normal() }
            case "running_mean": value = { 0.3 * normal() }
            case "running_var": value = { 0.5 + 0.3 * abs(normal()) }
            case "w" where tensor.rank == 1: value = { 1 + 0.3 * normal() }  // a batch norm's scale
            default: continue  // the weights as drawn
            }
            tensor.withUnsafeMutableBufferPointer { values in
                for i in values.indices { values[i] = value() }
            }
        }
        model.eval()
        return model
    }

    /// The shape of one example a model of `layers` takes on Fashion-MNIST.
    static func inputShape(_ layers: String) throws -> [Int] {
        try ModelDescription(parsing: layers).inputShape(channels: 1, height: 28, width: 28)
    }

    /// `bytes` decoded as a ModelProto.
    static func decode(_ bytes: Data) throws -> Onnx_ModelProto {
        try Onnx_ModelProto(serializedBytes: bytes)
    }

    /// The values of a float32 initializer, from its little-endian `raw_data`.
    static func values(_ tensor: Onnx_TensorProto) -> [Float] {
        let bytes = [UInt8](tensor.rawData)
        return stride(from: 0, to: bytes.count, by: 4).map { i in
            Float(
                bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16
                    | UInt32(bytes[i + 3]) << 24)
        }
    }

    /// The attribute `name` of `node`.
    static func attribute(_ node: Onnx_NodeProto, _ name: String) throws -> Onnx_AttributeProto {
        try #require(node.attribute.first { $0.name == name }, "\(node.name) has no attribute \(name)")
    }

    /// `[n] + shape` of a graph input or output: the batch dimension's name, then the sizes.
    static func dimensions(_ info: Onnx_ValueInfoProto) -> [String] {
        info.type.tensorType.shape.dim.map { $0.dimParam.isEmpty ? "\($0.dimValue)" : $0.dimParam }
    }

    /// Weights past a protobuf message's 2 GiB are refused before the graph is built (a model of
    /// 700,000 hidden units took a minute, then failed with SwiftProtobuf's `missingRequiredFields`);
    /// 2,007,040,000 bytes (640,000 units, a file the helper checked in ONNX Runtime) still fit.
    @Test("weights past a protobuf message's 2 GiB are refused, naming the limit")
    func weightsPastTwoGibibytes() throws {
        try ONNXExport.checkFitsOneMessage(weightBytes: 640_000 * 795 * 4)
        do {
            try ONNXExport.checkFitsOneMessage(weightBytes: 700_000 * 795 * 4)
            Issue.record("2,226,000,000 bytes of weights were accepted")
        } catch let error as ONNXExportError {
            #expect(error.description.contains("2226000000 bytes"), "\(error)")
            #expect(error.description.contains("2147483647"), "\(error)")
        }
    }

    // MARK: - The graph

    @Test("a convnet's graph: opset 20, pixels normalised in the graph, one node per layer, in order")
    func convnetGraph() throws {
        let model = try Self.model(Self.convnetLayers, seed: 1)
        let proto = try Self.decode(
            ONNXExport.model(
                model, inputShape: [1, 28, 28], normalization: (0.25, 0.5),
                metadata: ["layers": Self.convnetLayers]))
        #expect(proto.irVersion == 9)
        #expect(proto.opsetImport.map { "\($0.domain):\($0.version)" } == [":20"])
        #expect(proto.producerName == "Backprop")
        let metadata = Dictionary(uniqueKeysWithValues: proto.metadataProps.map { ($0.key, $0.value) })
        #expect(
            metadata == [
                "input_mean": "0.25", "input_std": "0.5", "input_shape": "1,28,28", "layers": Self.convnetLayers,
            ])

        let graph = proto.graph
        #expect(graph.input.map(\.name) == ["pixels"])
        #expect(graph.input.map(Self.dimensions) == [["n", "1", "28", "28"]])
        #expect(graph.input[0].type.tensorType.elemType == 1)  // FLOAT
        #expect(graph.output.map(\.name) == ["logits"])
        #expect(graph.output.map(Self.dimensions) == [["n", "10"]])
        #expect(graph.node.map(\.opType) == ["Div", "Sub", "Div"] + Self.convnetOperators)
        #expect(try ONNXExport.operators(of: model) == Self.convnetOperators)
        // A chain: pixels → x → layers.0.out → … → logits, each node named after its layer.
        let layerNodes = Array(graph.node.dropFirst(3))
        #expect(graph.node[0].input == ["pixels", "pixel_scale"] && graph.node[2].output == ["x"])
        for (index, node) in layerNodes.enumerated() {
            #expect(node.name == "layers.\(index)")
            #expect(node.input.first == (index == 0 ? "x" : "layers.\(index - 1).out"))
            #expect(node.output == [index == layerNodes.count - 1 ? "logits" : "layers.\(index).out"])
        }
        let initializers = Dictionary(uniqueKeysWithValues: graph.initializer.map { ($0.name, $0) })
        #expect(initializers["pixel_scale"].map(Self.values) == [255])
        #expect(initializers["input_mean"].map(Self.values) == [0.25])
        #expect(initializers["input_std"].map(Self.values) == [0.5])
        #expect(initializers["layers.9.ratio"].map(Self.values) == [0.25])
        #expect(initializers["layers.9.ratio"]?.dims == [])
    }

    @Test("every parameter and buffer is an initializer of the same name, shape and values (Lin's w not transposed)")
    func initializersAreTheModelsTensors() throws {
        let model = try Self.model(Self.convnetLayers, seed: 2)
        let graph = try Self.decode(ONNXExport.model(model, inputShape: [1, 28, 28])).graph
        let initializers = Dictionary(uniqueKeysWithValues: graph.initializer.map { ($0.name, $0) })
        let named = model.namedParameters + model.namedBuffers
        #expect(named.count == 22)
        for (name, tensor) in named {
            let stored = try #require(initializers[name], "no initializer \(name)")
            #expect(stored.dataType == 1, "\(name)")
            #expect(stored.dims == tensor.shape.map(Int64.init), "\(name)")
            #expect(Self.values(stored) == tensor.values, "\(name)")
        }
        // Inputs are named after the checkpoint: Gemm(inp, w (nIn, nOut), b), without a bias
        // Gemm(inp, w) and Conv(inp, w).
        let gemm = graph.node[10]
        #expect(gemm.input == ["layers.9.out", "layers.10.w"])
        #expect(initializers["layers.10.w"]?.dims == [54, 16])
        #expect(graph.node[13].input == ["layers.12.out", "layers.13.w", "layers.13.b"])
        #expect(!gemm.attribute.contains { $0.name == "transB" })
        #expect(graph.node[4].input == ["layers.3.out", "layers.4.w"])
        #expect(
            graph.node[1].input == [
                "layers.0.out", "layers.1.w", "layers.1.b", "layers.1.running_mean", "layers.1.running_var",
            ])
        #expect(Set(initializers.keys).subtracting(named.map(\.name)) == ["layers.9.ratio"])
    }

    @Test("each layer's attributes: kernels, strides, pads, epsilon, slope, exact GELU, no-padding average")
    func attributes() throws {
        let model = try Self.model(Self.convnetLayers, seed: 3)
        let nodes = try Self.decode(ONNXExport.model(model, inputShape: [1, 28, 28])).graph.node
        #expect(try Self.attribute(nodes[0], "kernel_shape").ints == [3, 3])
        #expect(try Self.attribute(nodes[0], "strides").ints == [1, 1])
        #expect(try Self.attribute(nodes[0], "pads").ints == [1, 1, 1, 1])
        #expect(try Self.attribute(nodes[4], "strides").ints == [2, 2])
        #expect(try Self.attribute(nodes[1], "epsilon").f == 1e-5)
        #expect(try Self.attribute(nodes[1], "momentum").f == 0.9)  // ONNX's: 1 - PyTorch's 0.1
        #expect(try Self.attribute(nodes[3], "kernel_shape").ints == [2, 2])
        #expect(try Self.attribute(nodes[3], "strides").ints == [2, 2])
        #expect(try Self.attribute(nodes[6], "alpha").f == 0.2)
        #expect(try Self.attribute(nodes[7], "kernel_shape").ints == [3, 3])
        #expect(try Self.attribute(nodes[7], "strides").ints == [2, 2])
        #expect(try Self.attribute(nodes[7], "count_include_pad").i == 0)
        #expect(try Self.attribute(nodes[8], "axis").i == 1)
        #expect(try Self.attribute(nodes[12], "approximate").s == Data("none".utf8))
        for node in nodes where node.opType == "MaxPool" || node.opType == "AveragePool" {
            #expect(!node.attribute.contains { $0.name == "pads" || $0.name == "ceil_mode" })
        }
        // Padded pools: an average that counts its padding (1), and one that leaves it out (0).
        let padded = try Self.decode(
            ONNXExport.model(try Self.model(Self.paddedPoolLayers, seed: 3), inputShape: [1, 28, 28])
        ).graph.node
        let averages = padded.filter { $0.opType == "AveragePool" }
        #expect(try averages.map { try Self.attribute($0, "pads").ints } == [[1, 1, 1, 1], [1, 1, 1, 1]])
        #expect(try averages.map { try Self.attribute($0, "count_include_pad").i } == [1, 0])
    }

    @Test("without a normalisation the graph takes the model's input x, and the MLP's is [n, 784]")
    func mlpWithoutNormalization() throws {
        let model = try Self.model(Self.mlpLayers, seed: 4)
        let graph = try Self.decode(ONNXExport.model(model, inputShape: [784])).graph
        #expect(graph.input.map(\.name) == ["x"])
        #expect(graph.input.map(Self.dimensions) == [["n", "784"]])
        #expect(
            graph.node.map(\.opType) == [
                "Gemm", "Gelu", "Gemm", "LeakyRelu", "Dropout", "Gemm", "BatchNormalization", "Tanh", "Gemm",
                "Sigmoid", "Gemm", "Sigmoid", "Mul", "Gemm", "Clip", "Gemm", "Clip", "Gemm",
            ])
        #expect(graph.node[0].input == ["x", "layers.0.w", "layers.0.b"])
        // SiLU, x · sigmoid(x): the Sigmoid and the Mul both read the layer's input.
        #expect(graph.node[11].name == "layers.11.sigmoid" && graph.node[11].input == ["layers.10.out"])
        #expect(graph.node[12].name == "layers.11" && graph.node[12].input == ["layers.10.out", "layers.11.sigmoid"])
        #expect(graph.node[12].output == ["layers.11.out"])
        // Hardtanh, relu6 among them: Clip with its bounds as scalar initializers (inputs from opset 11).
        let initializers = Dictionary(uniqueKeysWithValues: graph.initializer.map { ($0.name, $0) })
        #expect(graph.node[14].input == ["layers.12.out", "layers.13.min", "layers.13.max"])
        #expect(graph.node[16].input == ["layers.14.out", "layers.15.min", "layers.15.max"])
        #expect(
            try ["layers.13.min", "layers.13.max", "layers.15.min", "layers.15.max"].map {
                try Self.values(#require(initializers[$0]))
            } == [[0], [6], [-2], [3]])
        #expect(initializers["layers.15.min"]?.dims == [])
        #expect(!graph.initializer.contains { $0.name == "input_mean" || $0.name == "pixel_scale" })
    }

    @Test("the same model gives the same bytes, and write() writes them")
    func deterministicAndWritten() throws {
        let model = try Self.model(Self.mlpLayers, seed: 5)
        let first = try ONNXExport.model(model, inputShape: [784], normalization: (0.3, 0.4))
        #expect(try ONNXExport.model(model, inputShape: [784], normalization: (0.3, 0.4)) == first)
        try withTemporaryFolder { folder in
            try ONNXExport.write(model, to: folder + "/model.onnx", inputShape: [784], normalization: (0.3, 0.4))
            #expect(try Data(contentsOf: URL(fileURLWithPath: folder + "/model.onnx")) == first)
        }
    }

    // MARK: - What cannot be exported

    /// A layer of the user's own, which has no ONNX operator.
    final class Doubling: Layer {
        var inp: Tensor!
        var out: Tensor!
        var parameters: [Tensor] { [] }
        func callAsFunction(_ inp: Tensor) -> Tensor {
            self.inp = inp
            out = inp * 2
            return out
        }
        func backward() { inp.g = out.g * 2 }
    }

    /// Expects `body` to throw an `ONNXExportError` whose description is `message`.
    private func expectExportError(
        _ message: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        do {
            try body()
            Issue.record("no error; expected \(message)", sourceLocation: sourceLocation)
        } catch let error as ONNXExportError {
            #expect(error.description == message, sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(error); expected the ONNXExportError \(message)", sourceLocation: sourceLocation)
        }
    }

    @Test("a layer without an operator, a shape that does not fit, a NaN, a bad normalisation are named")
    func errors() throws {
        let lin = Lin(Tensor.ones([784, 10]), Tensor.zeros([10]))
        let custom = Model(layers: [lin, Doubling()], loss: CrossEntropy())
        expectExportError("layer 1, a Doubling, has no ONNX operator") {
            _ = try ONNXExport.model(custom, inputShape: [784])
        }
        expectExportError("layer 1, a Doubling, has no ONNX operator") { _ = try ONNXExport.operators(of: custom) }
        let mlp = Model(layers: [lin, ReLU()], loss: CrossEntropy())
        expectExportError("layer 0, Lin(784 → 10), expects examples of shape [784], found [1, 28, 28]") {
            _ = try ONNXExport.model(mlp, inputShape: [1, 28, 28])
        }
        let convnet = try Self.model(Self.convnetLayers, seed: 6)
        expectExportError(
            "layer 0, Conv2d(1 → 4, kernel 3×3, padding 1), expects examples of shape [1, h, w], found [3, 28, 28]"
        ) { _ = try ONNXExport.model(convnet, inputShape: [3, 28, 28]) }
        expectExportError(
            "layer 7, AvgPool2d(3, stride=2), expects examples of shape [c, h, w] with h ≥ 3 and w ≥ 3, "
                + "found [6, 2, 2]"
        ) { _ = try ONNXExport.model(convnet, inputShape: [1, 8, 8]) }
        expectExportError("the input shape per example [] must have at least one dimension, all of size at least 1") {
            _ = try ONNXExport.model(mlp, inputShape: [])
        }
        expectExportError(
            "the normalisation (mean 0.25, standard deviation 0.0) must have a finite mean and a positive standard "
                + "deviation"
        ) { _ = try ONNXExport.model(mlp, inputShape: [784], normalization: (0.25, 0)) }
        lin.w.withUnsafeMutableBufferPointer { $0[7] = .nan }
        expectExportError("layers.0.w holds NaN or infinite values") {
            _ = try ONNXExport.model(mlp, inputShape: [784])
        }
        try withTemporaryFolder { folder in
            let path = folder + "/model.onnx"
            expectExportError("layers.0.w holds NaN or infinite values") {
                try ONNXExport.write(mlp, to: path, inputShape: [784])
            }
            #expect(!FileManager.default.fileExists(atPath: path))
            lin.w.withUnsafeMutableBufferPointer { $0[7] = 1 }
            #expect(
                throws: DataError(
                    path: folder + "/none/model.onnx", problem: "cannot write: folder '\(folder)/none' does not exist")
            ) {
                try ONNXExport.write(mlp, to: folder + "/none/model.onnx", inputShape: [784])
            }
        }
    }

    // MARK: - backprop export --format onnx

    /// Saves `model` as a Backprop checkpoint in `folder` (with the normalisation `(0.25, 0.5)`
    /// unless `normalized` is false), runs `backprop export --format onnx` on it, and returns the
    /// command's result; the model is written to `folder/model.onnx`.
    private func export(
        _ model: Model, inputShape: [Int], normalized: Bool = true, in folder: String
    ) throws
        -> CommandResult
    {
        try Checkpoint.save(
            model, to: folder + "/model.safetensors",
            metadata: normalized ? ["input_mean": "0.25", "input_std": "0.5"] : [:], inputShape: inputShape)
        return try runBackprop([
            "export", folder + "/model.safetensors", "--format", "onnx", folder + "/model.onnx",
        ])
    }

    @Test("backprop export --format onnx writes the model and prints the Python that runs it")
    func exportCommand() throws {
        let model = try Self.model(Self.convnetLayers, seed: 7)
        try withTemporaryFolder { folder in
            let result = try export(model, inputShape: [1, 28, 28], in: folder)
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardError.isEmpty)
            let python = result.standardOutput
            for line in [
                "# backprop export: wrote \(folder)/model.onnx, an ONNX model (opset 20) of \(folder)/model.safetensors "
                    + "('\(Self.convnetLayers)'):",
                "#   pixels [n, 1, 28, 28] -> (pixels / 255 - mean) / std -> "
                    + Self.convnetOperators.joined(separator: ", ") + " -> logits [n, 10]",
                "session = ort.InferenceSession(\"\(folder)/model.onnx\")",
                "    the model was trained, (pixels / 255 - 0.25) / 0.5. Returns the",
                "    x = np.asarray(pixels, dtype=np.float32).reshape(-1, 1, 28, 28)",
                "    return session.run([\"logits\"], {\"pixels\": x})[0]",
            ] {
                #expect(python.contains(line), "the Python has no line \"\(line)\":\n\(python)")
            }
            let written = try Self.decode(Data(contentsOf: URL(fileURLWithPath: folder + "/model.onnx")))
            #expect(written.graph.node.count == 3 + model.layers.count)
            let metadata = Dictionary(uniqueKeysWithValues: written.metadataProps.map { ($0.key, $0.value) })
            #expect(metadata["layers"] == Self.convnetLayers && metadata["input_mean"] == "0.25")
            #expect(
                written.graph.initializer.first { $0.name == "layers.0.w" }.map(Self.values)
                    == model.layers[0].parameters[0].values)
        }
    }

    @Test(
        "backprop export --format onnx refuses a bad OUT, another format, a missing model, a state_dict",
        arguments: [
            (
                ["{dir}/model.safetensors", "--format", "onnx", "{dir}/out.safetensors"],
                "Error: OUT {dir}/out.safetensors: expected a file name ending in .onnx\n"
            ),
            (
                ["{dir}/model.safetensors", "--format", "onnx", "{dir}/missing/out.onnx"],
                "Error: OUT {dir}/missing/out.onnx: the folder {dir}/missing does not exist\n"
            ),
            (
                ["{dir}/model.safetensors", "--format", "onnx", "{dir}/folder.onnx"],
                "Error: OUT {dir}/folder.onnx: is a folder, expected a file path\n"
            ),
            (
                ["{dir}/model.safetensors", "--format", "ONNX", "{dir}/out.onnx"],
                "Error: --format: expected pytorch or onnx, found 'ONNX'\n"
            ),
            (
                ["{dir}/none.safetensors", "--format", "onnx", "{dir}/out.onnx"],
                "Error: {dir}/none.safetensors: no such file\n"
            ),
            (
                ["{dir}/pt.safetensors", "--format", "onnx", "{dir}/out.onnx"],
                "Error: {dir}/pt.safetensors: is not a Backprop checkpoint: expected format 'backprop-mlp' or "
                    + "'backprop-model', found format 'pt'; a state_dict that PyTorch wrote is read with --layers, "
                    + "which gives its architecture (such as 'lin 256, relu, lin 10'; README, \"PyTorch interop\")\n"
            ),
        ])
    func exportErrors(arguments: [String], message: String) throws {
        try withTemporaryFolder { folder in
            try Checkpoint.save(try Self.model(Self.mlpLayers, seed: 1), to: folder + "/model.safetensors")
            try FileManager.default.createDirectory(atPath: folder + "/folder.onnx", withIntermediateDirectories: false)
            try FileManager.default.copyItem(
                atPath: fixturePath("pytorch_mlp.safetensors"), toPath: folder + "/pt.safetensors")
            let before = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
            let filled = arguments.map { $0.replacingOccurrences(of: "{dir}", with: folder) }
            let result = try runBackprop(["export"] + filled)
            #expect(result.status != 0 && !result.crashed)
            #expect(result.standardError == message.replacingOccurrences(of: "{dir}", with: folder))
            #expect(result.standardOutput.isEmpty)
            #expect(Set(try FileManager.default.contentsOfDirectory(atPath: folder)) == before)
        }
    }

    // MARK: - ONNX Runtime

    /// Runs check_onnx_export.py on the Python `script` that `backprop export` printed for
    /// `folder/model.onnx`, with `pixels` and Backprop's `logits` for them; expects ONNX Runtime's
    /// logits within 1e-4 of Backprop's, and returns what the script printed.
    @discardableResult
    static func expectONNXRuntimeAgrees(
        script: String, pixels: Tensor, logits: Tensor, in folder: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> String {
        try script.write(toFile: folder + "/run_onnx.py", atomically: false, encoding: .utf8)
        try Safetensors.write(["pixels": pixels, "logits": logits], to: folder + "/io.safetensors")
        let check = try runProgram(
            "/usr/bin/env",
            [
                "python3", fixturePath("check_onnx_export.py"), folder + "/run_onnx.py", folder + "/io.safetensors",
                folder + "/model.onnx",
            ])
        #expect(
            check.status == 0, "check_onnx_export.py: \(check.standardOutput)\(check.standardError)",
            sourceLocation: sourceLocation)
        return check.standardOutput
    }

    /// `count` images of seeded random pixels 0…255, of shape `[count] + inputShape`.
    static func randomPixels(_ count: Int, inputShape: [Int], seed: UInt64) -> Tensor {
        var generator = RandomGenerator(seed: seed)
        let size = count * inputShape.reduce(1, *)
        return Tensor(
            shape: [count] + inputShape, values: (0..<size).map { _ in Float(generator.nextIndex(below: 256)) })
    }

    /// `(pixels / 255 - mean) / std` in Float, as FashionMNIST normalises each pixel.
    static func normalize(_ pixels: Tensor, mean: Double, std: Double) -> Tensor {
        let (m, s) = (Float(mean), Float(std))
        return Tensor(shape: pixels.shape, values: pixels.values.map { ($0 / 255 - m) / s })
    }

    @Test(
        "ONNX Runtime runs the export to Backprop's logits (max |difference| ≤ 1e-4), 256 images",
        .enabled(if: onnxRuntimeTestsRun, onnxRuntimeMissingNote),
        arguments: [("mlp", true), ("convnet", true), ("mlp", false), ("padded pools", true)])
    func onnxRuntimeAgrees(model name: String, normalized: Bool) throws {
        let layers = ["mlp": Self.mlpLayers, "convnet": Self.convnetLayers, "padded pools": Self.paddedPoolLayers][
            name]!
        let model = try Self.model(layers, seed: 8)
        let inputShape = try Self.inputShape(layers)
        try withTemporaryFolder { folder in
            let result = try export(model, inputShape: inputShape, normalized: normalized, in: folder)
            #expect(result.status == 0, "\(result.standardError)")
            let pixels = Self.randomPixels(256, inputShape: inputShape, seed: 9)
            // Without a stored normalisation the printed Python normalises with MEAN, STD = 0, 1.
            let x = Self.normalize(pixels, mean: normalized ? 0.25 : 0, std: normalized ? 0.5 : 1)
            try Self.expectONNXRuntimeAgrees(
                script: result.standardOutput, pixels: pixels, logits: model.predict(x), in: folder)
        }
    }

    @Test(
        "ONNX Runtime gives Backprop's logits on the whole Fashion-MNIST test set, for briefly trained models",
        .enabled(
            if: ProcessInfo.processInfo.environment["BACKPROP_ONNX_FULL_TEST_SET"] != nil,
            "set BACKPROP_ONNX_FULL_TEST_SET=1 to run it (it trains two models for an epoch on 5,000 images)"),
        .enabled(if: onnxRuntimeAvailable, onnxRuntimeMissingNote),
        .enabled(if: fashionMNISTInstalled, fashionMNISTMissingNote),
        arguments: ["mlp", "convnet"])
    func onnxRuntimeAgreesOnTheTestSet(model name: String) throws {
        let layers = name == "mlp" ? Self.mlpLayers : Self.convnetLayers
        try withTemporaryFolder { folder in
            let trained = try runBackprop([
                "train", "--layers", layers, "--epochs", "1", "--limit", "6000", "--seed", "1",
                "--save", folder + "/model.safetensors",
            ])
            #expect(trained.status == 0, "\(trained.standardError)")
            let exported = try runBackprop([
                "export", folder + "/model.safetensors", "--format", "onnx", folder + "/model.onnx",
            ])
            #expect(exported.status == 0, "\(exported.standardError)")
            // The test images as `backprop evaluate` reads and normalises them, and their raw pixels.
            let path = folder + "/model.safetensors"
            let model = try Checkpoint.load(path: path)
            let inputShape = try Checkpoint.inputShape(path: path)
            let data = try FashionMNIST(
                directory: fashionMNISTFolder, normalization: try Checkpoint.normalization(path: path),
                requiresValidation: false)
            let count = data.yTest.count
            let logits = model.predict(data.xTest.reshape([count] + inputShape))
            let pixels = try IDX.read(path: fashionMNISTFolder + "/t10k-images-idx3-ubyte.gz").tensor()
            let printed = try Self.expectONNXRuntimeAgrees(
                script: exported.standardOutput, pixels: pixels.reshape([count] + inputShape), logits: logits,
                in: folder)
            print("ONNX Runtime against Backprop, \(name), \(count) test images: \(printed)")
        }
    }
}
