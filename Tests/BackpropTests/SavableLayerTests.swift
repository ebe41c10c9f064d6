import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropNetwork
@testable import BackpropTraining

// Layers of your own in descriptions and checkpoints (`SavableLayer`), and the inputs'
// normalisation that checkpoints store.

/// `out = tanh(scale · inp / runningMax)` on rows `(n, c)`, with a learnable `scale` `(c)` and a
/// buffer `running_max` `(c)`: the largest `|inp|` of each feature seen in training (from 1).
/// Its arguments carry its shape: `scaledtanh C SCALE`.
final class ScaledTanh: SavableLayer, ModeDependentLayer {
    static let kind = "scaledtanh"
    let features: Int
    let initialScale: Float
    /// The learnable scale. // (c)
    let scale: Tensor
    /// The largest `|inp|` seen in training, per feature. // (c)
    let runningMax: Tensor
    var isTraining = true
    private(set) var inp: Tensor!  // (n, c)
    private(set) var out: Tensor!  // (n, c)

    init(features: Int, scale: Float) {
        self.features = features
        self.initialScale = scale
        self.scale = Tensor.full([features], scale)
        self.runningMax = Tensor.ones([features])
    }

    convenience init(arguments: [String]) throws {
        guard arguments.count == 2, let features = Int(arguments[0]), features > 0, let scale = Float(arguments[1])
        else { throw ScaledTanhError(description: "expected FEATURES SCALE, found \(arguments)") }
        self.init(features: features, scale: scale)
    }

    var arguments: [String] { ["\(features)", "\(initialScale)"] }
    var parameters: [Tensor] { [scale] }
    var namedParameters: [(name: String, tensor: Tensor)] { [("scale", scale)] }
    var buffers: [(name: String, tensor: Tensor)] { [("running_max", runningMax)] }

    func outputShape(input: [Int]) throws -> [Int] {
        guard input == [features] else {
            throw ScaledTanhError(description: "expected \([features]) per example, found \(input)")
        }
        return input
    }

    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        if isTraining {
            let seen = inp.abs().max(0).values
            runningMax.withUnsafeMutableBufferPointer { running in
                for i in running.indices { running[i] = Swift.max(running[i], seen[i]) }
            }
        }
        out = (inp * (scale / runningMax)).tanh()
        return out
    }

    /// `d = out.g · (1 − out²)`; `inp.g = d · scale / runningMax`; `scale.g = Σ_rows d · inp / runningMax`.
    func backward() {
        checkReadyForBackward()
        let d = out.g * (1 - out * out)
        inp.g = d * (scale / runningMax)
        scale.g = (d * inp).sum(0) / runningMax
    }
}

struct ScaledTanhError: Error, CustomStringConvertible {
    let description: String
}

/// A layer of your own that no test registers.
final class UnregisteredDouble: SavableLayer {
    static let kind = "unregistered-double"
    private(set) var inp: Tensor!
    private(set) var out: Tensor!
    init() {}
    convenience init(arguments: [String]) throws { self.init() }
    var arguments: [String] { [] }
    var parameters: [Tensor] { [] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        out = inp * 2
        return out
    }
    func backward() { inp.g = out.g * 2 }
}

/// A layer of your own whose kind is a built-in layer's.
final class ClashingReLU: SavableLayer {
    static let kind = "relu"
    private(set) var inp: Tensor!
    private(set) var out: Tensor!
    init() {}
    convenience init(arguments: [String]) throws { self.init() }
    var arguments: [String] { [] }
    var parameters: [Tensor] { [] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        out = inp.clampMin(0)
        return out
    }
    func backward() { inp.g = (inp > 0) * out.g }
}

/// A second type of the kind `scaledtanh`, whose arguments are not one word each.
final class OtherScaledTanh: SavableLayer {
    static let kind = "scaledtanh"
    private(set) var inp: Tensor!
    private(set) var out: Tensor!
    init() {}
    convenience init(arguments: [String]) throws { self.init() }
    var arguments: [String] { ["two words"] }
    var parameters: [Tensor] { [] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        out = inp.tanh()
        return out
    }
    func backward() { inp.g = out.g * (1 - out * out) }
}

/// Every parameter's and buffer's values, by name.
private func stateValues(_ model: Model) -> [String: [Float]] {
    Dictionary(uniqueKeysWithValues: (model.namedParameters + model.namedBuffers).map { ($0.name, $0.tensor.values) })
}

@Suite("Layers of your own and normalisation in checkpoints")
struct SavableLayerTests {
    /// A convnet with a `ScaledTanh` among the built-in layers, for examples `[1, 5, 5]`.
    static let text = "conv 2 3 pad 1, batchnorm, relu, flatten, lin 6, scaledtanh 6 1.5, dropout 0.2, lin 3"

    /// The model of ``text`` (its ScaledTanh passed explicitly, not registered) after three SGD
    /// steps in training mode: the weights, batch norm's statistics and the layer's scale and
    /// running maximum have all moved.
    static func trainedModel() throws -> (model: Model, x: Tensor) {
        var generator = RandomGenerator(seed: 3)
        let description = try ModelDescription(parsing: text, layers: [ScaledTanh.self])
        let model = try Model(
            description: description, inputShape: [1, 5, 5], loss: CrossEntropy(), generator: &generator)
        let x = Tensor.randn([8, 1, 5, 5], generator: &generator)
        let y = Tensor((0..<8).map { Float($0 % 3) })
        let optimizer = SGD(model.parameters, learningRate: 0.1)
        for _ in 0..<3 {
            _ = model(x, y)
            model.backward()
            optimizer.step()
            optimizer.zeroGrad()
        }
        return (model, x)
    }

    @Test func aLayerOfYourOwnSavesAndLoadsAmongBuiltInLayers() throws {
        let (model, x) = try Self.trainedModel()
        let layer = try #require(model.layers[5] as? ScaledTanh)
        #expect(layer.scale.values != [Float](repeating: 1.5, count: 6), "the scale learned")
        #expect(layer.runningMax.values.contains { $0 != 1 }, "the running maximum moved")
        try withTemporaryFolder { folder in
            let path = folder + "/own.safetensors"
            try Checkpoint.save(model, to: path, normalization: (0.25, 0.5))
            let file = try Safetensors.read(path: path)
            #expect(file.metadata["format"] == "backprop-model")
            #expect(file.metadata["layers"] == Self.text)
            #expect(file.metadata["input_mean"] == "0.25" && file.metadata["input_std"] == "0.5")
            #expect(file.tensors["layers.5.scale"]?.shape == [6] && file.tensors["layers.5.running_max"]?.shape == [6])

            let saved = try Checkpoint.load(from: path, layers: [ScaledTanh.self])
            #expect(saved.inputShape == [1, 5, 5])
            #expect(saved.normalization?.mean == 0.25 && saved.normalization?.std == 0.5)
            let loaded = saved.model
            #expect(stateValues(loaded) == stateValues(model))
            let loadedLayer = try #require(loaded.layers[5] as? ScaledTanh)
            let modes = loaded.layers.compactMap { ($0 as? any ModeDependentLayer)?.isTraining }
            #expect(modes == [false, false, false], "batch norm, ScaledTanh and dropout load in evaluation mode")
            #expect(!loadedLayer.isTraining)
            loaded.train()
            #expect(loadedLayer.isTraining, "train() reaches a layer of your own")
            loaded.eval()
            #expect(try Checkpoint.modelDescription(of: loaded).description == Self.text)
            model.eval()
            let expected = GradMode.withNoGrad { model.predict(x).values }
            #expect(GradMode.withNoGrad { loaded.predict(x).values } == expected, "the same outputs, bit for bit")

            // Into a fresh model of the same layers: its own types read the file, unregistered.
            var generator = RandomGenerator(seed: 99)
            let fresh = try Model(
                description: ModelDescription(parsing: Self.text, layers: [ScaledTanh.self]), inputShape: [1, 5, 5],
                loss: CrossEntropy(), generator: &generator)
            try Checkpoint.load(path: path, into: fresh)
            fresh.eval()
            #expect(GradMode.withNoGrad { fresh.predict(x).values } == expected)
        }
    }

    @Test func aRegisteredKindParsesPrintsAndLoadsWithoutBeingPassed() throws {
        ModelDescription.register(ScaledTanh.self)
        ModelDescription.register(ScaledTanh.self)  // again: nothing happens
        let description = try ModelDescription(parsing: "lin 4, ScaledTanh 4 2.5, lin 2")
        #expect(description.entries[1] == .custom(.init(ScaledTanh.self), arguments: ["4", "2.5"]))
        #expect(description.description == "lin 4, scaledtanh 4 2.5, lin 2")
        #expect(try ModelDescription(parsing: description.description) == description)
        #expect(try description.shapes(input: [3]) == [[4], [4], [2]])
        #expect(try description.parameterCount(inputShape: [3]) == 3 * 4 + 4 + 4 + 4 * 2 + 2)
        let (model, x) = try Self.trainedModel()
        try withTemporaryFolder { folder in
            let path = folder + "/own.safetensors"
            try Checkpoint.save(model, to: path)
            let loaded = try Checkpoint.load(path: path)
            #expect(stateValues(loaded) == stateValues(model))
            model.eval()
            #expect(GradMode.withNoGrad { loaded.predict(x).values == model.predict(x).values })
        }
    }

    @Test func anUnregisteredKindIsRefusedSayingToRegisterIt() throws {
        var generator = RandomGenerator(seed: 1)
        let model = Model(
            layers: [Lin(Tensor.randn([3, 2], generator: &generator), Tensor.zeros([2])), UnregisteredDouble()],
            loss: Mse())
        #expect(throws: ModelDescriptionError.self) { try ModelDescription(parsing: "lin 2, unregistered-double") }
        do {
            _ = try ModelDescription(parsing: "lin 2, unregistered-double")
        } catch {
            #expect(error.unknownKind == "unregistered-double")
        }
        try withTemporaryFolder { folder in
            let path = folder + "/own.safetensors"
            try Checkpoint.save(model, to: path)  // saving needs no registration
            #expect(try Safetensors.read(path: path).metadata["layers"] == "lin 2, unregistered-double")
            expectDataError(containing: [
                path, "holds a layer of kind \"unregistered-double\", which is not registered",
                "ModelDescription.register(_:)", "Checkpoint.load(from:layers:)",
            ]) { try Checkpoint.load(path: path) }
            let loaded = try Checkpoint.load(from: path, layers: [UnregisteredDouble.self]).model
            #expect(loaded.layers[1] is UnregisteredDouble)
            #expect(loaded.parameters.map(\.values) == model.parameters.map(\.values))
        }
    }

    @Test func tensorsThatDoNotFitTheRebuiltLayerAreNamedWithBothShapes() throws {
        let (model, _) = try Self.trainedModel()
        try withTemporaryFolder { folder in
            let path = folder + "/own.safetensors"
            let cases: [(edit: (inout [String: String], inout [String: Tensor]) -> Void, message: String)] = [
                (
                    { _, tensors in tensors["layers.5.scale"] = Tensor.zeros([7]) },
                    "tensor 'layers.5.scale' has shape [7], expected [6] (layer 5, a ScaledTanh built by "
                        + "ScaledTanh(arguments: [\"6\", \"1.5\"]))"
                ),
                ({ _, tensors in tensors["layers.5.running_max"] = nil }, "no tensor 'layers.5.running_max'"),
                (
                    { _, tensors in tensors["layers.5.extra"] = Tensor.zeros([1]) },
                    "holds tensor 'layers.5.extra', which the model"
                ),
                (
                    { metadata, _ in metadata["layers"] = Self.text.replacingOccurrences(of: "6 1.5", with: "7 1.5") },
                    "entry 6 \"scaledtanh 7 1.5\" does not take its input [6]"
                ),
                (
                    { metadata, _ in metadata["layers"] = Self.text.replacingOccurrences(of: "6 1.5", with: "x") },
                    "ScaledTanh(arguments: [\"x\"]) failed: expected FEATURES SCALE"
                ),
            ]
            for (edit, message) in cases {
                try Checkpoint.save(model, to: path)
                try editSafetensors(at: path, edit)
                expectDataError(containing: [path, message]) {
                    try Checkpoint.load(from: path, layers: [ScaledTanh.self])
                }
            }
        }
    }

    @Test func kindsAndArgumentsThatWouldNotParseBackAreNotSaved() throws {
        var generator = RandomGenerator(seed: 1)
        let lin = Lin(Tensor.randn([3, 2], generator: &generator), Tensor.zeros([2]))
        try withTemporaryFolder { folder in
            let path = folder + "/own.safetensors"
            for (layer, message) in [
                (ClashingReLU() as any Layer, "the kind \"relu\" is a built-in layer's"),
                (OtherScaledTanh(), "its argument \"two words\" is not one word"),
            ] {
                let model = Model(layers: [lin, layer], loss: Mse())
                #expect {
                    try Checkpoint.save(model, to: path)
                } throws: { error in
                    (error as? CheckpointError)?.description.contains(message) == true
                }
                #expect(!FileManager.default.fileExists(atPath: path))
            }
        }
    }

    @Test func aKindRegisteredByAnotherTypeStops() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            ModelDescription.register(ScaledTanh.self)
            ModelDescription.register(OtherScaledTanh.self)
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("the kind \"scaledtanh\" is already registered by ScaledTanh"), "\(message)")
    }

    @Test func aBuiltInKindCannotBeRegistered() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            ModelDescription.register(ClashingReLU.self)
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("the kind \"relu\" is a built-in layer's"), "\(message)")
    }

    // MARK: - Normalisation

    @Test func theNormalizationRoundTripsAndIsGivenOnce() throws {
        var generator = RandomGenerator(seed: 1)
        let model = Model.mlp(sizes: [4, 3, 2], loss: CrossEntropy(), generator: &generator)
        try withTemporaryFolder { folder in
            let path = folder + "/m.safetensors"
            try Checkpoint.save(model, to: path, normalization: (0.2860405969887955, 0.35302424451492237))
            let saved = try Checkpoint.load(from: path)
            #expect(saved.normalization?.mean == 0.2860405969887955)
            #expect(saved.normalization?.std == 0.35302424451492237)
            #expect(saved.inputShape == [4])
            #expect(try Checkpoint.normalization(path: path)! == (0.2860405969887955, 0.35302424451492237))

            try Checkpoint.save(model, to: path)
            #expect(try Checkpoint.load(from: path).normalization == nil)

            for (normalization, metadata, message) in [
                ((0.3, 0.0), [:], "expected a finite mean and a positive standard deviation"),
                ((Double.nan, 1.0), [:], "expected a finite mean and a positive standard deviation"),
                ((0.3, 0.4), ["input_std": "0.4"], "metadata holds 'input_std' too"),
            ] {
                #expect {
                    try Checkpoint.save(model, to: path, normalization: normalization, metadata: metadata)
                } throws: { error in
                    (error as? CheckpointError)?.description.contains(message) == true
                }
            }
        }
    }

    /// `backprop evaluate` normalises the test images with the checkpoint's normalisation unless
    /// `--normalize` says otherwise.
    @Test func evaluateUsesTheStoredNormalization() throws {
        var generator = RandomGenerator(seed: 7)
        let model = Model.mlp(sizes: [16, 8, 10], loss: CrossEntropy(), generator: &generator)
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 3)
            let path = folder + "/m.safetensors"
            try Checkpoint.save(model, to: path, normalization: (0.25, 0.5))
            func testLoss(_ options: [String]) throws -> Double {
                let result = try runBackprop(["evaluate", "--model", path, "--data", folder, "--json"] + options)
                #expect(result.status == 0, "stderr: \(result.standardError)")
                let object = try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8))
                return try #require((object as? [String: Any])?["test_loss"] as? Double)
            }
            let data = try FashionMNIST(directory: folder, normalization: (0.25, 0.5), requiresValidation: false)
            let expected = evaluate(model, x: data.xTest, y: data.yTest).loss
            let stored = try testLoss([])
            #expect(abs(stored - Double(expected)) <= 1e-5 * abs(Double(expected)), "\(stored) against \(expected)")
            #expect(try testLoss(["--normalize", "0.25,0.5"]) == stored)
            #expect(try testLoss(["--normalize", "0,1"]) != stored, "--normalize wins over the stored one")
        }
    }

    /// Checkpoints written before `save` took the normalisation: without it (the library's), and
    /// with it given as metadata (the command line's) load, the first without normalisation.
    @Test func checkpointsOfTheOldFormatStillLoad() throws {
        var generator = RandomGenerator(seed: 5)
        let model = Model.mlp(sizes: [4, 3, 2], loss: CrossEntropy(), generator: &generator)
        let lins = model.layers.compactMap { $0 as? Lin }
        let tensors = [
            "layers.0.w": lins[0].w, "layers.0.b": lins[0].b, "layers.2.w": lins[1].w, "layers.2.b": lins[1].b,
        ]
        let oldMetadata = [
            "format": "backprop-mlp", "sizes": "4,3,2", "activation": "relu", "loss": "cross_entropy",
            "layers": "lin,relu,lin",
        ]
        try withTemporaryFolder { folder in
            let path = folder + "/old.safetensors"
            try Safetensors.write(tensors, metadata: oldMetadata, to: path)
            let saved = try Checkpoint.load(from: path)
            #expect(saved.normalization == nil)
            #expect(saved.model.parameters.map(\.values) == model.parameters.map(\.values))

            try Safetensors.write(
                tensors, metadata: oldMetadata.merging(["input_mean": "0.5", "input_std": "0.25"]) { $1 }, to: path)
            #expect(try Checkpoint.load(from: path).normalization! == (0.5, 0.25))
        }
        // The first checkpoints' fixture, written by make_mlp_fixture.py.
        let fixture = try Checkpoint.load(from: fixturePath("mlp_5_4_3_3.safetensors"))
        #expect(fixture.normalization == nil && fixture.inputShape == [5])
    }
}
