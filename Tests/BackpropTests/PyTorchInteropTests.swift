import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropNetwork
import BackpropONNX
@testable import BackpropTraining

// PyTorch state_dicts: reading the ones PyTorch wrote (fixtures of make_pytorch_fixtures.py, with
// PyTorch's logits), the errors that name what does not fit, `backprop export` and its round trip,
// and, where torch is installed, PyTorch loading an export with load_state_dict(strict=True).

/// Whether `python3` can import torch here (for the test that runs PyTorch on an export).
let torchAvailable: Bool = {
    (try? runProgram("/usr/bin/env", ["python3", "-c", "import torch, numpy"]).status) == 0
}()

@Suite("PyTorch interop")
struct PyTorchInteropTests {
    /// The inputs, PyTorch's logits and the descriptions in `pytorch_io.safetensors`.
    static func io() throws -> SafetensorsFile {
        try Safetensors.read(path: fixturePath("pytorch_io.safetensors"))
    }
    static let mlpLayers = "lin 12, gelu, lin 12, leakyrelu 0.2, lin 8, tanh, lin 8, sigmoid, dropout 0.5, lin 10"
    static let convnetLayers =
        "conv 4 3 pad 1, batchnorm, relu, maxpool 2, conv 6 3 stride 2 pad 1 nobias, batchnorm, relu, avgpool 2, "
        + "flatten, dropout 0.25, lin 12 nobias, batchnorm, relu, lin 10"

    /// The fixture's state_dict `name` read as the model `layers` describes for `inputShape`.
    static func load(_ name: String, _ layers: String, inputShape: [Int]) throws -> Model {
        try Checkpoint.loadPyTorch(
            path: fixturePath(name), description: ModelDescription(parsing: layers), inputShape: inputShape)
    }

    @Test("the fixture's descriptions are the ones these tests use")
    func fixtureDescriptions() throws {
        #expect(try Self.io().metadata["mlp.layers"] == Self.mlpLayers)
        #expect(try Self.io().metadata["convnet.layers"] == Self.convnetLayers)
    }

    @Test(
        "an MLP's state_dict (nn.Linear transposed, GELU, LeakyReLU, Tanh, Sigmoid, Dropout) gives PyTorch's logits",
        arguments: ["pytorch_mlp.safetensors", "pytorch_mlp_f64.safetensors"])
    func mlpGivesPyTorchsLogits(file: String) throws {
        let model = try Self.load(file, Self.mlpLayers, inputShape: [16])
        let logits = model.predict(try Self.io().tensor("mlp.x"))
        expectAllNear(logits, try Self.io().tensor("mlp.logits"), tolerance: 1e-5, relative: 1e-5, "logits")
    }

    @Test("a convnet's state_dict with batch norms (1d and 2d), pools and a conv without bias gives PyTorch's logits")
    func convnetGivesPyTorchsLogits() throws {
        let model = try Self.load("pytorch_convnet.safetensors", Self.convnetLayers, inputShape: [1, 8, 8])
        let logits = model.predict(try Self.io().tensor("convnet.x"))
        expectAllNear(logits, try Self.io().tensor("convnet.logits"), tolerance: 1e-5, relative: 1e-5, "logits")
        // The running statistics came from the file (a new batch norm has 0 and 1).
        let norm = try #require(model.layers[1] as? BatchNorm)
        let file = try Safetensors.read(path: fixturePath("pytorch_convnet.safetensors"))
        #expect(norm.runningVar.values == (try file.tensor("1.running_var")).values)
    }

    @Test("Checkpoint.load(path:into:) reads a state_dict into a model of the same layers, leaving its mode")
    func loadIntoReadsAStateDict() throws {
        var generator = RandomGenerator(seed: 5)
        let model = try Model(
            description: ModelDescription(parsing: Self.mlpLayers), inputShape: [16], loss: CrossEntropy(),
            generator: &generator)
        try Checkpoint.load(path: fixturePath("pytorch_mlp.safetensors"), into: model)
        let file = try Safetensors.read(path: fixturePath("pytorch_mlp.safetensors"))
        let lin = try #require(model.layers[2] as? Lin)
        #expect(lin.w.shape == [12, 12])
        #expect(lin.w.values == (try file.tensor("2.weight")).t().contiguous().values)
        #expect(lin.b.values == (try file.tensor("2.bias")).values)
        #expect((model.layers[8] as? Dropout)?.isTraining == true)
    }

    /// Writes the MLP fixture's tensors, changed by `change`, to a file and expects loading it as
    /// `layers` to throw naming the file and each of `fragments`.
    private func expectLoadError(
        _ change: (inout [String: Tensor], inout [String: String]) -> Void, layers: String = mlpLayers,
        _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        var tensors = try Safetensors.read(path: fixturePath("pytorch_mlp.safetensors")).tensors
        var dtypes: [String: String] = [:]
        change(&tensors, &dtypes)
        try withTemporaryFolder { folder in
            let path = folder + "/model.safetensors"
            try Safetensors.write(tensors, dtypes: dtypes, to: path)
            expectDataError(containing: [path + ": "] + fragments, sourceLocation: sourceLocation) {
                try Checkpoint.loadPyTorch(
                    path: path, description: ModelDescription(parsing: layers), inputShape: [16])
            }
        }
    }

    @Test("a shape, a key or a dtype that does not fit is named, with the expected shape and the module")
    func errorsNameWhatDoesNotFit() throws {
        // A layer of another size.
        try expectLoadError(
            { _, _ in }, layers: Self.mlpLayers.replacingOccurrences(of: "lin 12, gelu", with: "lin 11, gelu"),
            ["0.weight has shape [12, 16]; the model 'lin 11, gelu, ", "expects [11, 16] (nn.Linear(16, 11))"])
        try expectLoadError(
            { _, _ in }, layers: Self.mlpLayers.replacingOccurrences(of: "lin 8, tanh", with: "lin 9, tanh"),
            ["4.weight has shape [8, 12]; the model", "expects [9, 12] (nn.Linear(12, 9))"])
        // Backprop's layout [in, out] where nn.Linear stores [out, in].
        try expectLoadError(
            { tensors, _ in tensors["0.weight"] = Tensor.zeros(16, 12) },
            [
                "0.weight has shape [16, 12];",
                "expects [12, 16] (nn.Linear(16, 12)); nn.Linear stores [out, in], this is [in, out]",
            ])
        // Missing and unexpected keys, all of them.
        try expectLoadError(
            { tensors, _ in tensors["9.bias"] = nil },
            [
                "does not fit the model 'lin 12, gelu, ", "missing 9.bias [10] (nn.Linear(8, 10)); ",
                "an nn.Linear(bias=False) is 'lin 10 nobias' in a model description",
            ])
        // The other way: a bias where the description has none.
        try expectLoadError(
            { _, _ in },
            layers: Self.mlpLayers.replacingOccurrences(of: "lin 8, sigmoid", with: "lin 8 nobias, sigmoid"),
            ["unexpected 6.bias (layer 6 is nn.Linear(8, 8, bias=False))"])
        try expectLoadError(
            { tensors, _ in
                tensors["1.weight"] = Tensor.zeros(3)
                tensors["12.bias"] = Tensor.zeros(3)
            },
            ["unexpected 1.weight (layer 1 is nn.GELU()), 12.bias (the model has 10 layers, 0 to 9)"])
        try expectLoadError(
            { tensors, _ in
                tensors = Dictionary(uniqueKeysWithValues: tensors.map { ("model." + $0.key, $0.value) })
            },
            [
                "missing 0.weight [12, 16], 0.bias [12] (nn.Linear(16, 12)), 2.weight",
                "unexpected model.0.bias, model.0.weight",
                "(an nn.Sequential's keys start with the layer's index; this one starts with 'model.')",
            ])
        // A dtype that holds no weights, and values that are not finite.
        try expectLoadError(
            { tensors, dtypes in
                tensors["0.bias"] = Tensor.zeros(12)
                dtypes["0.bias"] = "I64"
            }, ["0.bias is stored as I64; expected F32, F64, F16, BF16"])
        try expectLoadError(
            { tensors, _ in tensors["4.bias"] = Tensor([0, 0, 0, .nan, 0, 0, 0, 0]) }, ["4.bias holds NaN at [3]"])
    }

    /// A float64 state_dict whose weight is 1e300: finite in the file, an infinity as a Float. It
    /// was reported as "holds an infinity", which the file does not.
    @Test("an F64 weight past Float's range is named as such, not as an infinity in the file")
    func float64WeightPastFloatsRange() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/wide.safetensors"
            let weights: [Double] = [0.5, 1e300, -2, 3]
            let header =
                #"{"0.weight":{"dtype":"F64","shape":[2,2],"data_offsets":[0,32]},"#
                + #""0.bias":{"dtype":"F64","shape":[2],"data_offsets":[32,48]}}"#
            var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) } + Array(header.utf8)
            for value in weights + [0, 0] { bytes += withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
            try writeBytes(bytes, to: path)
            expectDataError(containing: [
                path + ": 0.weight (F64) holds a value at [0, 1] beyond the largest Float (3.4028235e+38)"
            ]) {
                try Checkpoint.loadPyTorch(path: path, description: ModelDescription(parsing: "lin 2"), inputShape: [2])
            }
            // The same in a checkpoint's tensors, which Backprop writes as F32 only.
            expectDataError(containing: [
                path + ": tensor '0.weight' (F64) holds a value at [0, 1] beyond the largest Float"
            ]) {
                try Checkpoint.finiteTensor(try Safetensors.read(path: path), "0.weight")
            }
        }
    }

    @Test("a model given a state_dict it does not fit is left unchanged")
    func failedLoadLeavesTheModel() throws {
        var generator = RandomGenerator(seed: 5)
        let model = try Model(
            description: ModelDescription(parsing: "lin 12, gelu, lin 12, leakyrelu 0.2, lin 8, tanh, lin 9"),
            inputShape: [16], loss: CrossEntropy(), generator: &generator)
        let before = model.parameters.map(\.values)
        #expect(throws: DataError.self) {
            try Checkpoint.load(path: fixturePath("pytorch_mlp.safetensors"), into: model)
        }
        #expect(model.parameters.map(\.values) == before)
    }

    /// The convnet of the fixture, drawn from `seed`, with batch norms away from their new values.
    static func convnet(seed: UInt64) throws -> Model {
        var generator = RandomGenerator(seed: seed)
        let model = try Model(
            description: ModelDescription(parsing: convnetLayers), inputShape: [1, 8, 8], loss: CrossEntropy(),
            generator: &generator)
        for case let norm as BatchNorm in model.layers {
            for (tensor, scale, offset) in [
                (norm.w, 0.3, 1.0), (norm.b, 0.2, 0), (norm.runningMean, 0.3, 0), (norm.runningVar, 0.1, 1),
            ] {
                tensor.withUnsafeMutableBufferPointer { values in
                    for i in values.indices { values[i] = Float(offset + scale * abs(generator.nextNormal())) }
                }
            }
        }
        model.eval()
        return model
    }

    @Test("export, then reload: the same weights and buffers bit for bit, in PyTorch's keys and layouts")
    func exportRoundTrip() throws {
        let model = try Self.convnet(seed: 3)
        try withTemporaryFolder { folder in
            let path = folder + "/exported.safetensors"
            try Checkpoint.savePyTorch(
                model, to: path, inputShape: [1, 8, 8], metadata: ["input_mean": "0.25", "input_std": "0.5"])
            let file = try Safetensors.read(path: path)
            #expect(
                file.names == [
                    "0.bias", "0.weight", "1.bias", "1.num_batches_tracked", "1.running_mean", "1.running_var",
                    "1.weight", "10.weight", "11.bias", "11.num_batches_tracked", "11.running_mean",
                    "11.running_var", "11.weight", "13.bias", "13.weight", "4.weight", "5.bias",
                    "5.num_batches_tracked", "5.running_mean", "5.running_var", "5.weight",
                ])
            #expect(file.dtypes["1.num_batches_tracked"] == "I64" && file.dtypes["0.weight"] == "F32")
            #expect((try file.tensor("1.num_batches_tracked")).shape == [])
            let lin = try #require(model.layers[10] as? Lin)
            #expect((try file.tensor("10.weight")).values == lin.w.t().contiguous().values)
            #expect(file.metadata["format"] == "pt" && file.metadata["layers"] == Self.convnetLayers)
            #expect(file.metadata["input_shape"] == "1,8,8" && file.metadata["input_mean"] == "0.25")
            #expect(try Checkpoint.normalization(path: path)! == (0.25, 0.5))

            let loaded = try Checkpoint.loadPyTorch(
                path: path, description: ModelDescription(parsing: Self.convnetLayers), inputShape: [1, 8, 8])
            let names = { (model: Model) in (model.namedParameters + model.namedBuffers).map(\.name) }
            let values = { (model: Model) in (model.namedParameters + model.namedBuffers).map(\.tensor.values) }
            #expect(names(loaded) == names(model))
            #expect(values(loaded) == values(model))
            let x = try Self.io().tensor("convnet.x")
            #expect(loaded.predict(x).values == model.predict(x).values)
        }
    }

    @Test("the modules of every layer, as PyTorch spells them")
    func modules() throws {
        let model = try Self.convnet(seed: 1)
        #expect(
            try PyTorchStateDict.modules(of: model, inputShape: [1, 8, 8]) == [
                "nn.Conv2d(1, 4, 3, padding=1)", "nn.BatchNorm2d(4)", "nn.ReLU()", "nn.MaxPool2d(2)",
                "nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)", "nn.BatchNorm2d(6)", "nn.ReLU()",
                "nn.AvgPool2d(2)", "nn.Flatten()", "nn.Dropout(0.25)", "nn.Linear(6, 12, bias=False)",
                "nn.BatchNorm1d(12)",
                "nn.ReLU()", "nn.Linear(12, 10)",
            ])
        let mlp = try Self.load("pytorch_mlp.safetensors", Self.mlpLayers, inputShape: [16])
        #expect(
            try PyTorchStateDict.modules(of: mlp) == [
                "nn.Linear(16, 12)", "nn.GELU()", "nn.Linear(12, 12)", "nn.LeakyReLU(0.2)", "nn.Linear(12, 8)",
                "nn.Tanh()", "nn.Linear(8, 8)", "nn.Sigmoid()", "nn.Dropout(0.5)", "nn.Linear(8, 10)",
            ])
        // Pools' padding.
        var generator = RandomGenerator(seed: 1)
        let silu = Model(
            layers: try ModelDescription(parsing: "lin 4, silu, relu6, hardtanh, hardtanh -2 0.5, lin 2").makeLayers(
                inputShape: [3], generator: &generator),
            loss: CrossEntropy())
        #expect(
            try PyTorchStateDict.modules(of: silu) == [
                "nn.Linear(3, 4)", "nn.SiLU()", "nn.ReLU6()", "nn.Hardtanh()", "nn.Hardtanh(-2.0, 0.5)",
                "nn.Linear(4, 2)",
            ])
        let pools = Model(
            layers: try ModelDescription(parsing: Self.paddedPoolLayers).makeLayers(
                inputShape: [1, 8, 8], generator: &generator), loss: CrossEntropy())
        #expect(
            try PyTorchStateDict.modules(of: pools, inputShape: [1, 8, 8]) == [
                "nn.Conv2d(1, 4, 3, padding=1)", "nn.MaxPool2d(3, stride=2, padding=1)",
                "nn.AvgPool2d(3, stride=1, padding=1)", "nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False)",
                "nn.Flatten()", "nn.Linear(100, 10)",
            ])
        // A batch norm's own eps and momentum, as keyword arguments where they are not PyTorch's defaults.
        generator = RandomGenerator(seed: 1)
        let settings = try ModelDescription(
            parsing: "conv 4 3 pad 1, batchnorm eps 0.001 momentum 0.01, relu, flatten, lin 3, batchnorm eps 0.0001")
        let own = Model(
            layers: try settings.makeLayers(inputShape: [1, 8, 8], generator: &generator), loss: CrossEntropy())
        #expect(
            try PyTorchStateDict.modules(of: own, inputShape: [1, 8, 8]) == [
                "nn.Conv2d(1, 4, 3, padding=1)", "nn.BatchNorm2d(4, eps=0.001, momentum=0.01)", "nn.ReLU()",
                "nn.Flatten()", "nn.Linear(256, 3)", "nn.BatchNorm1d(3, eps=0.0001)",
            ])
    }

    /// Saves the fixture's convnet (seed 3) as a Backprop checkpoint in `folder` with a
    /// normalisation, runs `backprop export` on it, and returns the model and the command's result.
    private func exportConvnet(in folder: String, model: Model? = nil) throws -> (Model, CommandResult) {
        let model = try model ?? Self.convnet(seed: 3)
        try Checkpoint.save(
            model, to: folder + "/model.safetensors", metadata: ["input_mean": "0.25", "input_std": "0.5"],
            inputShape: [1, 8, 8])
        let result = try runBackprop([
            "export", folder + "/model.safetensors", "--format", "pytorch", folder + "/exported.safetensors",
        ])
        return (model, result)
    }

    @Test("backprop export writes the state_dict and prints the Python of its nn.Sequential and normalisation")
    func exportCommand() throws {
        try withTemporaryFolder { folder in
            let (model, result) = try exportConvnet(in: folder)
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardError.isEmpty)
            let python = result.standardOutput
            for line in [
                "model = nn.Sequential(", "    nn.Conv2d(1, 4, 3, padding=1),  # 0: [n, 4, 8, 8]",
                "    nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),  # 4: [n, 6, 2, 2]",
                "    nn.BatchNorm1d(12),  # 11: [n, 12]", "    nn.Linear(12, 10),  # 13: [n, 10]",
                "model.load_state_dict(load_file(\"\(folder)/exported.safetensors\"))", "model.eval()",
                "MEAN, STD = 0.25, 0.5", "    return ((x - MEAN) / STD).reshape(-1, 1, 8, 8)",
            ] {
                #expect(python.contains(line), "the Python has no line \"\(line)\":\n\(python)")
            }
            let loaded = try Checkpoint.loadPyTorch(
                path: folder + "/exported.safetensors", description: ModelDescription(parsing: Self.convnetLayers),
                inputShape: [1, 8, 8])
            #expect(loaded.parameters.map(\.values) == model.parameters.map(\.values))
        }
    }

    @Test(
        "backprop export --layers converts PyTorch's own state_dict, in both formats, to PyTorch's logits",
        arguments: [
            ("pytorch_mlp.safetensors", mlpLayers, "1,4,4", "mlp"),
            ("pytorch_convnet.safetensors", convnetLayers, "1,8,8", "convnet"),
        ])
    func exportConvertsAStateDictWithLayers(file: String, layers: String, shape: String, name: String) throws {
        try withTemporaryFolder { folder in
            let path = fixturePath(file)
            let (x, logits) = (try Self.io().tensor(name + ".x"), try Self.io().tensor(name + ".logits"))
            // To ONNX, read back by the ONNX importer: no normalisation given, so the graph takes x as it is.
            let onnx = folder + "/model.onnx"
            let toONNX = try runBackprop([
                "export", path, "--format", "onnx", onnx, "--layers", layers, "--input-shape", shape,
            ])
            #expect(toONNX.status == 0, "\(toONNX.standardError)")
            let imported = try ONNXImport.read(path: onnx)
            expectAllNear(imported.model.predict(x), logits, tolerance: 1e-5, relative: 1e-5, "ONNX logits")
            // To a state_dict of Backprop's, read back without --layers.
            let exported = folder + "/model.safetensors"
            let toPyTorch = try runBackprop([
                "export", path, "--format", "pytorch", exported, "--layers", layers, "--input-shape", shape,
            ])
            #expect(toPyTorch.status == 0, "\(toPyTorch.standardError)")
            let saved = try Checkpoint.load(from: exported)
            expectAllNear(saved.model.predict(x), logits, tolerance: 1e-5, relative: 1e-5, "state_dict logits")
        }
    }

    @Test("backprop export of PyTorch's own state_dict needs --layers; --input-shape needs it; a misfit is named")
    func exportOfAStateDictNamesWhatIsMissing() throws {
        try withTemporaryFolder { folder in
            let path = fixturePath("pytorch_mlp.safetensors")
            let out = folder + "/model.onnx"
            let bare = try runBackprop(["export", path, "--format", "onnx", out])
            #expect(bare.status == 1 && !bare.crashed)
            #expect(bare.standardError.contains("a state_dict that PyTorch wrote is read with --layers"))
            let shapeAlone = try runBackprop(["export", path, "--format", "onnx", out, "--input-shape", "1,4,4"])
            #expect(shapeAlone.status != 0 && !shapeAlone.crashed)
            #expect(
                shapeAlone.standardError.contains("--input-shape: only with --layers"), "\(shapeAlone.standardError)")
            let badShape = try runBackprop([
                "export", path, "--format", "onnx", out, "--layers", "lin 10", "--input-shape", "1,4",
            ])
            #expect(badShape.standardError.contains("--input-shape: expected C,H,W"), "\(badShape.standardError)")
            // A kernel larger than the images of --input-shape names the option, as it was typed.
            let small = try runBackprop([
                "export", path, "--format", "onnx", out, "--layers", "conv 4 5, flatten, lin 10", "--input-shape",
                "1, 3,3",
            ])
            #expect(small.status == 64 && !small.crashed)  // a usage error, as train's for the same --layers
            #expect(
                small.standardError.hasSuffix(
                    "larger than its input [1, 3, 3] padded to 3×3 (for --input-shape 1, 3,3)\n"),
                "\(small.standardError)")
            // Fashion-MNIST's 28×28 by default: the fixture's first layer takes 16 inputs, not 784.
            let misfit = try runBackprop(["export", path, "--format", "onnx", out, "--layers", Self.mlpLayers])
            #expect(misfit.status == 1 && !misfit.crashed)
            #expect(misfit.standardError.hasPrefix("Error: \(path): "), "\(misfit.standardError)")
            #expect(misfit.standardError.contains("[12, 784]"), "\(misfit.standardError)")
            // A description far larger than the file is refused before it is built (63 GB here).
            let huge = try runBackprop([
                "export", path, "--format", "onnx", out, "--layers", "lin 20000000, relu, lin 10", "--input-shape",
                "1,28,28",
            ])
            #expect(huge.status == 1 && !huge.crashed)
            #expect(
                huge.standardError
                    == "Error: \(path): does not fit --layers 'lin 20000000, relu, lin 10': for inputs of shape [784] "
                    + "it has 15900000010 parameters, but the file holds 626 values\n", "\(huge.standardError)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty)
        }
    }

    @Test("backprop export --normalize gives a model that stores no normalisation one, in both formats")
    func exportNormalize() throws {
        try withTemporaryFolder { folder in
            let model = try Self.convnet(seed: 5)
            try Checkpoint.save(model, to: folder + "/model.safetensors", inputShape: [1, 8, 8])
            #expect(try Checkpoint.normalization(path: folder + "/model.safetensors") == nil)
            let pytorch = try runBackprop([
                "export", folder + "/model.safetensors", "--format", "pytorch", folder + "/out.safetensors",
                "--normalize", "0.25,0.5",
            ])
            #expect(pytorch.status == 0, "\(pytorch.standardError)")
            #expect(pytorch.standardOutput.contains("MEAN, STD = 0.25, 0.5"), "\(pytorch.standardOutput)")
            #expect(pytorch.standardOutput.contains("images' mean and standard deviation (--normalize)."))
            #expect(!pytorch.standardOutput.contains("stores no normalisation"))
            let stored = try #require(try Checkpoint.normalization(path: folder + "/out.safetensors"))
            #expect(stored.mean == 0.25 && stored.std == 0.5)

            // ONNX: the graph now normalises (input "pixels"), with the given mean and deviation.
            let onnx = try runBackprop([
                "export", folder + "/model.safetensors", "--format", "onnx", folder + "/out.onnx",
                "--normalize", "0.25,0.5",
            ])
            #expect(onnx.status == 0, "\(onnx.standardError)")
            let imported = try ONNXImport.read(path: folder + "/out.onnx")
            let normalization = try #require(imported.normalization)
            #expect(normalization.mean == 0.25 && normalization.std == 0.5)
            #expect(onnx.standardOutput.contains("\"pixels\""), "\(onnx.standardOutput)")

            // Without the option, the same checkpoint exports without one, and says so.
            let plain = try runBackprop([
                "export", folder + "/model.safetensors", "--format", "pytorch", folder + "/plain.safetensors",
            ])
            #expect(plain.status == 0, "\(plain.standardError)")
            #expect(plain.standardOutput.contains("stores no normalisation"))
            #expect(plain.standardOutput.contains("backprop export --normalize MEAN,STD"))
            #expect(try Checkpoint.normalization(path: folder + "/plain.safetensors") == nil)
        }
    }

    @Test(
        "backprop export refuses another format, and writing over the model",
        arguments: [
            (
                ["--format", "keras", "{dir}/out.safetensors"],
                "Error: --format: expected pytorch or onnx, found 'keras'\n"
            ),
            (
                ["--format", "pytorch", "{dir}/out.pt"],
                "Error: OUT {dir}/out.pt: expected a file name ending in .safetensors\n"
            ),
            (
                ["--format", "pytorch", "{dir}/model.safetensors"],
                "Error: OUT {dir}/model.safetensors is MODEL; writing it would replace the checkpoint\n"
            ),
            (
                ["--format", "onnx", "{dir}/out.onnx", "--normalize", "0.3,0"],
                "Error: --normalize: expected MEAN,STD with a finite mean and a positive standard deviation "
                    + "(such as 0.286,0.353), found '0.3,0'\n"
            ),
        ])
    func exportErrors(arguments: [String], message: String) throws {
        try withTemporaryFolder { folder in
            try Checkpoint.save(try Self.convnet(seed: 1), to: folder + "/model.safetensors", inputShape: [1, 8, 8])
            let filled = arguments.map { $0.replacingOccurrences(of: "{dir}", with: folder) }
            let result = try runBackprop(["export", folder + "/model.safetensors"] + filled)
            #expect(result.status != 0 && !result.crashed)
            #expect(result.standardError == message.replacingOccurrences(of: "{dir}", with: folder))
        }
    }

    /// File names holding line breaks went into the printed Python's `#` comments as they were:
    /// a name `a⏎print("INJECTED")⏎#.onnx` put a line of code in the script.
    @Test("a file name with a line break stays in the printed Python's comments, in both formats")
    func namesWithLineBreaksStayInComments() throws {
        try withTemporaryFolder { folder in
            let model = try Self.convnet(seed: 3)
            let path = folder + "/m\nprint(\"MODEL\")\n#.safetensors"
            try Checkpoint.save(model, to: path, inputShape: [1, 8, 8])
            for (format, suffix) in [("onnx", ".onnx"), ("pytorch", ".safetensors")] {
                let output = folder + "/a\nprint(\"INJECTED\")\n#" + suffix
                let result = try runBackprop(["export", path, "--format", format, output])
                #expect(result.status == 0, "\(format): \(result.standardError)")
                let code = result.standardOutput.split(separator: "\n").filter { !$0.hasPrefix("#") }
                #expect(!code.contains { $0.hasPrefix("print(") }, "\(format): \(result.standardOutput)")
                #expect(result.standardOutput.contains("#.safetensors"), "\(format): the names are still shown")
                #expect(result.standardOutput.contains("\\x0aprint(\"INJECTED\")"), "\(format)")
            }
        }
    }

    /// A convnet with padded pools (ResNet's stem pool; an average over its padding's zeros, and one
    /// that leaves its padding out: count_include_pad=False).
    static let paddedPoolLayers =
        "conv 4 3 pad 1, maxpool 3 stride 2 pad 1, avgpool 3 stride 1 pad 1, avgpool 2 stride 1 pad 1 excludepad, "
        + "flatten, lin 10"

    @Test(
        "PyTorch loads the export with load_state_dict(strict=True) and gives Backprop's logits",
        .enabled(if: torchAvailable, "PyTorch is not installed here (python3 -c 'import torch' fails)"),
        arguments: [
            convnetLayers, paddedPoolLayers, "conv 4 3 pad 1, silu, maxpool 2, flatten, lin 12, silu, lin 10",
            "conv 4 3 pad 1, relu6, maxpool 2, flatten, lin 12, hardtanh -0.5 0.25, lin 10",
        ])
    func pytorchAgreesWithTheExport(layers: String) throws {
        var generator = RandomGenerator(seed: 5)
        let other = try Model(
            description: ModelDescription(parsing: layers), inputShape: [1, 8, 8], loss: CrossEntropy(),
            generator: &generator)
        try withTemporaryFolder { folder in
            let (model, result) = try exportConvnet(in: folder, model: layers == Self.convnetLayers ? nil : other)
            #expect(result.status == 0, "\(result.standardError)")
            try result.standardOutput.write(toFile: folder + "/model.py", atomically: false, encoding: .utf8)
            // Pixels 0…255, normalised as FashionMNIST does: (p / 255 - mean) / std, in Float.
            var generator = RandomGenerator(seed: 9)
            let pixels = Tensor(
                shape: [4, 1, 8, 8], values: (0..<256).map { _ in Float(generator.nextIndex(below: 256)) })
            let x = Tensor(shape: pixels.shape, values: pixels.values.map { ($0 / 255 - Float(0.25)) / Float(0.5) })
            try Safetensors.write(["pixels": pixels, "logits": model.predict(x)], to: folder + "/io.safetensors")
            let check = try runProgram(
                "/usr/bin/env",
                ["python3", fixturePath("check_pytorch_export.py"), folder + "/model.py", folder + "/io.safetensors"])
            #expect(check.status == 0, "check_pytorch_export.py: \(check.standardOutput)\(check.standardError)")
        }
    }

    // MARK: - The command line reads state_dicts

    @Test("backprop evaluate reads a state_dict with --layers, and names what does not fit")
    func evaluateReadsAStateDict() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 4)  // 4×4 images: 16 pixels, as the MLP fixture takes
            let path = fixturePath("pytorch_mlp.safetensors")
            let evaluated = try runBackprop([
                "evaluate", "--model", path, "--layers", Self.mlpLayers, "--data", folder, "--normalize", "0,1",
            ])
            #expect(evaluated.status == 0, "\(evaluated.standardError)")
            #expect(evaluated.standardOutput.hasPrefix("test accuracy "))
            #expect(evaluated.standardOutput.contains("(60 images)"))

            let wrong = try runBackprop([
                "evaluate", "--model", path, "--layers", "lin 12, relu, lin 10", "--data", folder,
            ])
            #expect(wrong.status == 1 && !wrong.crashed)
            #expect(
                wrong.standardError
                    == "Error: \(path): does not fit --layers 'lin 12, relu, lin 10': unexpected 4.bias, 4.weight, "
                    + "6.bias, 6.weight, 9.bias, 9.weight (the model has 3 layers, 0 to 2)\n")
            // A network that cannot take the data's images: a usage error (64), as train's is.
            let misfit = try runBackprop([
                "evaluate", "--model", path, "--layers", "conv 2 5, flatten, lin 10", "--data", folder,
            ])
            #expect(misfit.status == 64 && !misfit.crashed)
            #expect(
                misfit.standardError
                    == "Error: --layers: entry 1 \"conv 2 5\" has a 5×5 kernel, larger than its input [1, 4, 4] "
                    + "padded to 4×4 (for the [1, 4, 4] images in the data)\n", "\(misfit.standardError)")
            let bad = try runBackprop(["evaluate", "--model", path, "--layers", "lin 12", "--normalize", "0"])
            #expect(bad.standardError.hasPrefix("Error: --normalize: expected MEAN,STD with a finite mean"))
            // torch.save's own file: named as such, with the way to write safetensors.
            let saved = fixturePath("torch_save_state_dict.pt")
            let pickled = try runBackprop(["evaluate", "--model", saved, "--layers", "lin 2", "--data", folder])
            #expect(pickled.status == 1 && !pickled.crashed)
            #expect(
                pickled.standardError.hasPrefix(
                    "Error: \(saved): expected a safetensors file, found a zip archive (as torch.save writes"),
                "\(pickled.standardError)")
        }
    }

    @Test("backprop train --init starts from a state_dict's weights; --init and --resume are refused together")
    func trainStartsFromAStateDict() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 4)
            let path = fixturePath("pytorch_mlp.safetensors")
            // A learning rate so small that the weights stay those of the file.
            let trained = try runBackprop([
                "train", "--layers", Self.mlpLayers, "--init", path, "--data", folder, "--epochs", "1", "--lr", "1e-9",
                "--save", folder + "/run.safetensors",
            ])
            #expect(trained.status == 0, "\(trained.standardError)")
            let saved = try Checkpoint.load(path: folder + "/run.safetensors")
            let file = try Safetensors.read(path: path)
            let lin = try #require(saved.layers[9] as? Lin)
            expectAllNear(lin.w, (try file.tensor("9.weight")).t().contiguous(), tolerance: 1e-6, "layers.9.w")

            let both = try runBackprop([
                "train", "--layers", Self.mlpLayers, "--init", path, "--resume", folder + "/run.safetensors",
            ])
            #expect(both.standardError == "Error: --init and --resume both give the starting weights; use one\n")
            let misfit = try runBackprop(["train", "--init", path, "--data", folder, "--epochs", "1"])
            #expect(
                misfit.standardError.hasPrefix("Error: \(path): does not fit the MLP of --hidden: unexpected 6.bias"))
        }
    }

    @Test("train goes on with the normalisation --init's model or --resume's run stores, or --normalize's")
    func trainKeepsTheStartingModelsNormalization() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 5)
            func normalization(_ name: String) throws -> (mean: Double, std: Double)? {
                try Checkpoint.normalization(path: folder + "/" + name)
            }
            func train(_ arguments: [String]) throws -> CommandResult {
                try runBackprop(["train", "--hidden", "8", "--data", folder, "--epochs", "1"] + arguments)
            }
            // The images' own statistics of 500 random bytes are near 0.5, 0.29: nothing like these.
            let base = try train(["--normalize", "0.25,2", "--save", folder + "/base.safetensors"])
            #expect(base.status == 0, "\(base.standardError)")
            #expect(try normalization("base.safetensors")! == (0.25, 2))
            let tuned = try train(["--init", folder + "/base.safetensors", "--save", folder + "/tuned.safetensors"])
            #expect(tuned.status == 0, "\(tuned.standardError)")
            #expect(try normalization("tuned.safetensors")! == (0.25, 2))
            let pixels = try train([
                "--init", folder + "/base.safetensors", "--normalize", "0,1", "--save", folder + "/pixels.safetensors",
            ])
            #expect(pixels.status == 0, "\(pixels.standardError)")
            #expect(try normalization("pixels.safetensors")! == (0, 1))

            // evaluate says when --normalize replaces the stored normalisation, and not when it is the same.
            let evaluated = try runBackprop([
                "evaluate", "--model", folder + "/tuned.safetensors", "--data", folder, "--normalize", "0,1",
            ])
            #expect(evaluated.status == 0, "\(evaluated.standardError)")
            #expect(
                evaluated.standardError
                    == "note: --normalize 0,1 replaces the normalisation \(folder)/tuned.safetensors stores (mean 0.25, std 2.0)\n"
            )
            let same = try runBackprop([
                "evaluate", "--model", folder + "/tuned.safetensors", "--data", folder, "--normalize", "0.25,2",
            ])
            #expect(same.status == 0 && same.standardError.isEmpty, "\(same.standardError)")

            // A run of two epochs stopped after the first, resumed: its normalisation, not another.
            var generator = RandomGenerator(seed: 5)
            let configuration = TrainingConfiguration(hidden: [8], epochs: 2, batchSize: 50, learningRate: 0.01)
            let x = Tensor.randn([60, 16], generator: &generator)
            let y = Tensor((0..<60).map { Float($0 % 10) })
            let trainer = Trainer(configuration: configuration, classes: 10, train: (x, y), valid: (x, y))
            try trainer.fit(shouldStop: { trainer.epoch == 1 })
            let run = folder + "/run.safetensors"
            try TrainingCheckpoint.save(
                trainer, configuration: configuration, limit: nil, to: run, normalization: (0.25, 2))
            let changed = try runBackprop(["train", "--resume", run, "--data", folder, "--normalize", "0,1"])
            #expect(
                changed.standardError
                    == "Error: --normalize 0,1 differs from 0.25,2.0 in \(run); --resume continues the run as it was started\n"
            )
            let resumed = try runBackprop(["train", "--resume", run, "--data", folder])
            #expect(resumed.status == 0, "\(resumed.standardError)")
            #expect(try normalization("run.safetensors")! == (0.25, 2))
        }
    }
}
