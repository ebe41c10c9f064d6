import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// Checkpoints: the round trip, the file's layout as other frameworks read it, and errors that
/// say what does not fit.
@Suite("Checkpoints")
struct CheckpointTests {
    static func model(sizes: [Int], loss: any Loss = CrossEntropy(), seed: UInt64 = 1) -> Model {
        var generator = RandomGenerator(seed: seed)
        let model = Model.mlp(sizes: sizes, loss: loss, generator: &generator)
        // Non-zero biases, so that the round trip checks them too.
        for case let lin as Lin in model.layers {
            lin.b.withUnsafeMutableBufferPointer { values in
                for i in values.indices { values[i] = Float(generator.nextNormal()) }
            }
        }
        return model
    }

    @Test func roundTripKeepsEveryWeightBitForBit() throws {
        let model = Self.model(sizes: [6, 5, 4, 3])
        try withTemporaryFolder { folder in
            let path = folder + "/model.safetensors"
            try Checkpoint.save(model, to: path, metadata: ["note": "test"])
            let loaded = try Checkpoint.load(path: path)
            #expect(loaded.sizes == [6, 5, 4, 3])
            #expect(loaded.layers.map { $0 is Lin } == [true, false, true, false, true])
            #expect(loaded.loss is CrossEntropy)
            #expect(loaded.parameters.map(\.values) == model.parameters.map(\.values))
            #expect(loaded.parameters.map(\.shape) == model.parameters.map(\.shape))
            var generator = RandomGenerator(seed: 2)
            let x = Tensor.randn([7, 6], generator: &generator)
            #expect(loaded.predict(x).values == model.predict(x).values)
        }
    }

    /// A batch norm's own eps and momentum are in the stored description, and come back: the loaded
    /// model normalises as the saved one (eps 0.5 moves the outputs far from eps 1e-5's).
    @Test func batchNormSettingsRoundTrip() throws {
        let text = "lin 5, batchnorm eps 0.5 momentum 0.01, relu, lin 3, batchnorm"
        var generator = RandomGenerator(seed: 4)
        let model = Model(
            layers: try ModelDescription(parsing: text).makeLayers(inputShape: [6], generator: &generator),
            loss: CrossEntropy())
        let x = Tensor.randn([9, 6], generator: &generator)
        _ = model(x, Tensor((0..<9).map { Float($0 % 3) }))  // moves the running statistics by 0.01
        model.eval()
        try withTemporaryFolder { folder in
            let path = folder + "/model.safetensors"
            try Checkpoint.save(model, to: path)
            let loaded = try Checkpoint.load(path: path)
            #expect(try Checkpoint.modelDescription(of: loaded) == ModelDescription(parsing: text))
            let norms = loaded.layers.compactMap { $0 as? BatchNorm }
            #expect(norms.map(\.eps) == [0.5, 1e-5])
            #expect(norms.map(\.momentum) == [0.01, 0.1])
            loaded.eval()
            #expect(loaded.predict(x).values == model.predict(x).values)
        }
    }

    /// The normalisation a model was trained with comes back from the metadata; a checkpoint
    /// without it gives nil, and a broken one says which value is wrong.
    @Test func normalizationIsReadFromTheMetadata() throws {
        let model = Self.model(sizes: [6, 5, 3])
        try withTemporaryFolder { folder in
            let path = folder + "/model.safetensors"
            try Checkpoint.save(model, to: path, metadata: ["input_mean": "0.28604", "input_std": "0.35302"])
            let stats = try #require(try Checkpoint.normalization(path: path))
            #expect(stats.mean == 0.28604 && stats.std == 0.35302)

            try Checkpoint.save(model, to: path)
            #expect(try Checkpoint.normalization(path: path) == nil)

            for (metadata, fragment) in [
                (["input_mean": "0.3"], "has 'input_mean' but no 'input_std'"),
                (["input_mean": "x", "input_std": "0.3"], "'input_mean' is 'x', expected a finite number"),
                (["input_mean": "0.3", "input_std": "0"], "'input_std' is '0', expected a positive number"),
                (["input_mean": "0.3", "input_std": "nan"], "'input_std' is 'nan', expected a positive number"),
            ] {
                try Checkpoint.save(model, to: path, metadata: metadata)
                _ = expectDataError(containing: [path, fragment]) { try Checkpoint.normalization(path: path) }
            }
        }
    }

    @Test func fileNamesTensorsByLayerIndexAndDescribesTheArchitecture() throws {
        let model = Self.model(sizes: [6, 5, 4, 3])
        try withTemporaryFolder { folder in
            let path = folder + "/model.safetensors"
            try Checkpoint.save(model, to: path, metadata: ["note": "test"])
            let file = try Safetensors.read(path: path)
            #expect(file.names == ["layers.0.b", "layers.0.w", "layers.2.b", "layers.2.w", "layers.4.b", "layers.4.w"])
            #expect(file.tensors["layers.0.w"]?.shape == [6, 5])
            #expect(file.tensors["layers.4.b"]?.shape == [3])
            #expect(file.dtypes.values.allSatisfy { $0 == "F32" })
            #expect(
                file.metadata == [
                    "format": "backprop-mlp", "sizes": "6,5,4,3", "activation": "relu", "loss": "cross_entropy",
                    "layers": "lin,relu,lin,relu,lin", "note": "test",
                ])
        }
    }

    @Test func loadsACheckpointWrittenByNumpy() throws {
        // make_mlp_fixture.py wrote the file by hand and computed the outputs in float64.
        let model = try Checkpoint.load(path: fixturePath("mlp_5_4_3_3.safetensors"))
        #expect(model.sizes == [5, 4, 3, 3])
        let io = try Safetensors.read(path: fixturePath("mlp_5_4_3_3_io.safetensors"))
        expectAllNear(model.predict(try io.tensor("x")), try io.tensor("out"), tolerance: 1e-6, "out")
    }

    @Test func theSeedsMSEModelRoundTrips() throws {
        let model = Self.model(sizes: [784, 50, 1], loss: Mse())
        try withTemporaryFolder { folder in
            let path = folder + "/seed.safetensors"
            try Checkpoint.save(model, to: path)
            let loaded = try Checkpoint.load(path: path)
            #expect(loaded.loss is Mse)
            #expect(loaded.parameters.map(\.values) == model.parameters.map(\.values))
        }
    }

    @Test func loadingIntoAModelOfAnotherArchitectureSaysWhatDiffers() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/model.safetensors"
            try Checkpoint.save(Self.model(sizes: [6, 5, 4, 3]), to: path)
            let other = Self.model(sizes: [6, 8, 3], seed: 9)
            let before = other.parameters.map(\.values)
            expectDataError(
                containing: [path, "holds a 6-5-4-3 relu cross_entropy model, expected 6-8-3 relu cross_entropy"]
            ) {
                try Checkpoint.load(path: path, into: other)
            }
            #expect(other.parameters.map(\.values) == before, "the model is left unchanged")

            let same = Self.model(sizes: [6, 5, 4, 3], seed: 9)
            try Checkpoint.load(path: path, into: same)
            #expect(same.parameters.map(\.values) == Self.model(sizes: [6, 5, 4, 3]).parameters.map(\.values))
        }
    }

    @Test func aTensorOfTheWrongShapeIsNamed() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/bad.safetensors"
            let tensors: [String: Tensor] = [
                "layers.0.w": Tensor.zeros(6, 4), "layers.0.b": Tensor.zeros(5),
                "layers.2.w": Tensor.zeros(5, 3), "layers.2.b": Tensor.zeros(3),
            ]
            try Safetensors.write(tensors, metadata: ["format": "backprop-mlp", "sizes": "6,5,3"], to: path)
            expectDataError(containing: [path, "tensor 'layers.0.w' has shape [6, 4], expected [6, 5]"]) {
                try Checkpoint.load(path: path)
            }
        }
    }

    @Test func aMissingTensorIsNamed() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/short.safetensors"
            let tensors: [String: Tensor] = ["layers.0.w": Tensor.zeros(6, 5), "layers.0.b": Tensor.zeros(5)]
            try Safetensors.write(tensors, metadata: ["format": "backprop-mlp", "sizes": "6,5,3"], to: path)
            expectDataError(containing: [path, "no tensor 'layers.2.w'"]) {
                try Checkpoint.load(path: path)
            }
        }
    }

    @Test func aFileThatIsNotACheckpointSaysSo() {
        // make_fixtures.py wrote this file with format "pt".
        let path = fixturePath("python_written.safetensors")
        expectDataError(containing: [
            path, "is not a Backprop checkpoint: expected format 'backprop-mlp' or 'backprop-model', found format 'pt'",
        ]) {
            try Checkpoint.load(path: path)
        }
    }

    @Test func nonFiniteWeightsAreNeverWrittenOverAGoodFile() throws {
        let model = Self.model(sizes: [6, 5, 3])
        try withTemporaryFolder { folder in
            let path = folder + "/good.safetensors"
            try Checkpoint.save(model, to: path)
            let good = try Data(contentsOf: URL(fileURLWithPath: path))
            let lin = try #require(model.layers[2] as? Lin)
            lin.w[1, 2] = .nan
            #expect {
                try Checkpoint.save(model, to: path)
            } throws: { error in
                "\(error)".contains("layers.2.w holds NaN or infinite values")
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == good)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["good.safetensors"])
        }
    }
}
