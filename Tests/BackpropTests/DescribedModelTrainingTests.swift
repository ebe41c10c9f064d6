import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropNetwork
@testable import BackpropTraining

// Training any model given by a description (`--layers`): batches of images, the convnet's
// training loop, evaluation mode, checkpoints of every layer, validation and resume.

/// Examples `(n, c, h, w)` of normal noise whose class is the brightest quadrant of the first
/// channel (0 top left, 1 top right, 2 bottom left, 3 bottom right): a convnet can learn it.
private func quadrantData(_ n: Int, channels: Int = 1, size: Int = 8, seed: UInt64) -> (x: Tensor, y: Tensor) {
    var generator = RandomGenerator(seed: seed)
    let x = Tensor.randn([n, channels, size, size], generator: &generator)  // (n, c, h, w)
    let half = size / 2
    let labels = (0..<n).map { row -> Float in
        var sums = [Float](repeating: 0, count: 4)
        for i in 0..<size {
            for j in 0..<size { sums[(i / half) * 2 + j / half] += x[row, 0, i, j] }
        }
        return Float(sums.indices.max { sums[$0] < sums[$1] }!)
    }
    return (x, Tensor(labels))
}

/// A model of `text` for examples of `inputShape`, drawn from `seed`.
private func describedModel(
    _ text: String, inputShape: [Int], loss: any Loss = CrossEntropy(), seed: UInt64 = 1
) throws -> Model {
    var generator = RandomGenerator(seed: seed)
    return try Model(
        description: ModelDescription(parsing: text), inputShape: inputShape, loss: loss, generator: &generator)
}

/// Every parameter's and buffer's values, by name.
private func stateValues(_ model: Model) -> [String: [Float]] {
    Dictionary(uniqueKeysWithValues: (model.namedParameters + model.namedBuffers).map { ($0.name, $0.tensor.values) })
}

@Suite("Training described models")
struct DescribedModelTrainingTests {
    // MARK: - Batches of images

    @Test func batchesOfImagesGatherWholeExamplesAsADirectCopyDoes() {
        let (n, c, h, w) = (11, 2, 3, 4)
        let rowSize = c * h * w
        let x = Tensor(shape: [n, c, h, w], values: (0..<(n * rowSize)).map(Float.init))
        let y = Tensor((0..<n).map(Float.init))
        let batches = Batches(x: x, y: y, batchSize: 4)
        batches.shuffle(seed: 3, epoch: 1)
        var seen: [Int] = []
        for index in 0..<batches.count {
            let (xb, yb) = batches.batch(index)
            let rows = Array(batches.order[(index * 4)..<Swift.min(index * 4 + 4, n)])
            #expect(xb.shape == [rows.count, c, h, w])
            // A direct copy, element by element, of the rows the order names.
            let expected = rows.flatMap { row in (0..<rowSize).map { Float(row * rowSize + $0) } }
            #expect(xb.values == expected, "batch \(index)")
            #expect(yb.values == rows.map(Float.init))
            seen += rows
        }
        #expect(seen.sorted() == Array(0..<n))
        #expect(batches.batch(2).x.shape == [3, c, h, w], "the last batch holds the 3 rows left")
    }

    // MARK: - The MLP keeps its results

    /// 320 training and 64 validation rows of 784 normal inputs, labelled by their largest of
    /// the first ten inputs.
    static func mlpData() -> (train: (x: Tensor, y: Tensor), valid: (x: Tensor, y: Tensor)) {
        var generator = RandomGenerator(seed: 7)
        let x = Tensor.randn([320, 784], generator: &generator)
        let xValid = Tensor.randn([64, 784], generator: &generator)
        func labels(_ x: Tensor) -> Tensor {
            Tensor((0..<x.shape[0]).map { row in Float((0..<10).max { x[row, $0] < x[row, $1] }!) })
        }
        return ((x, labels(x)), (xValid, labels(xValid)))
    }

    /// The epochs' losses and accuracies, and the weights, after training `configuration` (or
    /// the model `make` builds, as before descriptions) on `data`.
    static func run(
        _ configuration: TrainingConfiguration, on data: (train: (x: Tensor, y: Tensor), valid: (x: Tensor, y: Tensor)),
        model make: ((inout RandomGenerator) -> Model)? = nil
    ) throws -> (results: [Float], weights: [[Float]]) {
        let trainer: Trainer
        if let make {
            var generator = RandomGenerator(seed: configuration.seed)
            let model = make(&generator)
            trainer = Trainer(
                model: model,
                optimizer: configuration.optimizer.make(
                    parameters: model.parameters, learningRate: configuration.learningRate,
                    weightDecay: configuration.weightDecay),
                schedule: configuration.schedule, epochs: configuration.epochs, batchSize: configuration.batchSize,
                seed: configuration.seed,
                train: data.train, valid: data.valid)
        } else {
            trainer = Trainer(configuration: configuration, classes: 10, train: data.train, valid: data.valid)
        }
        let history = try trainer.fit()
        return (
            history.flatMap { [$0.trainLoss, $0.validLoss, $0.validAccuracy] }, trainer.model.parameters.map(\.values)
        )
    }

    @Test func theDefaultMLPTrainsAsItDidBeforeDescriptions() throws {
        // Recorded with the code before model descriptions: bit for bit the same on the machine
        // that recorded them (OpenBLAS); a tolerance for other machines' matrix kernels.
        let results = try Self.run(TrainingConfiguration(epochs: 2), on: Self.mlpData()).results
        let recorded: [Float] = [2.8491387, 2.351193, 0.140625, 1.4933571, 2.3206015, 0.140625]
        expectAllNear(results, recorded.map(Double.init), tolerance: 0, relative: 1e-4, "losses and accuracies")
    }

    @Test func theMLPOfHiddenAndOfLayersMLPAreTheRunOfModelMLP() throws {
        // Smaller rows, the same code: the run `Model.mlp` and the plain initialiser give (as
        // before descriptions), the configuration's, and `--layers` naming the same network.
        let data = Self.mlpData()
        let small = ((data.train.x.rows(0..<96), data.train.y.rows(0..<96)), data.valid)
        let configuration = TrainingConfiguration(hidden: [32, 16], epochs: 2, batchSize: 40)
        let before = try Self.run(configuration, on: small) { generator in
            Model.mlp(sizes: [784, 32, 16, 10], loss: CrossEntropy(), generator: &generator)
        }
        let hidden = try Self.run(configuration, on: small)
        var described = configuration
        described.layers = "lin 32, relu, lin 16, relu, lin 10"
        let layers = try Self.run(described, on: small)
        #expect(hidden.results == before.results && hidden.weights == before.weights)
        #expect(layers.results == before.results && layers.weights == before.weights)
    }

    @Test func settingsWithoutLayersEncodeAndDecodeAsBefore() throws {
        let old =
            #"{"batch_size":32,"epochs":3,"hidden":[16,8],"learning_rate":0.01,"loss":"cross-entropy","#
            + #""optimizer":"adam","schedule":"one-cycle","seed":42,"weight_decay":0.1}"#
        let decoded = try TrainingCheckpoint.decode(TrainingConfiguration.self, old)
        #expect(decoded.layers == nil)
        #expect(decoded == TrainingConfiguration(hidden: [16, 8], epochs: 3, batchSize: 32, learningRate: 0.01))
        #expect(try TrainingCheckpoint.encode(decoded) == old, "an MLP's settings are written as before")
        var described = decoded
        described.layers = "cnn"
        let text = try TrainingCheckpoint.encode(described)
        #expect(text.contains(#""layers":"cnn""#))
        #expect(try TrainingCheckpoint.decode(TrainingConfiguration.self, text) == described)
    }

    // MARK: - Flips

    @Test func flippedBatchesReverseEachPixelRowOfAboutHalfTheExamplesFromTheSeed() {
        let (n, c, h, w) = (40, 2, 3, 5)
        let rowSize = c * h * w
        let x = Tensor(shape: [n, c, h, w], values: (0..<(n * rowSize)).map(Float.init))
        let y = Tensor((0..<n).map(Float.init))
        let plain = Batches(x: x, y: y, batchSize: 16)
        plain.shuffle(seed: 5, epoch: 2)
        let batches = Batches(x: x, y: y, batchSize: 16)
        batches.flipWidth = w
        batches.shuffle(seed: 5, epoch: 2)
        #expect(batches.order == plain.order, "flips draw from their own generator")
        let flips = batches.flipped
        #expect(flips.count == n && (10...30).contains(flips.filter { $0 }.count), "\(flips)")
        for index in 0..<batches.count {
            let (xb, yb) = batches.batch(index)
            let positions = (index * 16)..<Swift.min(index * 16 + 16, n)
            // Each example by hand: its pixel rows (runs of w values), reversed when flipped.
            let expected = positions.flatMap { position -> [Float] in
                let row = batches.order[position]
                return (0..<(c * h)).flatMap { line -> [Float] in
                    let pixels = (0..<w).map { Float(row * rowSize + line * w + $0) }
                    return flips[position] ? Array(pixels.reversed()) : pixels
                }
            }
            #expect(xb.values == expected, "batch \(index)")
            #expect(yb.values == positions.map { Float(batches.order[$0]) })
        }
        let again = Batches(x: x, y: y, batchSize: 16)
        again.flipWidth = w
        again.shuffle(seed: 5, epoch: 2)
        #expect(again.flipped == flips, "the same seed and epoch give the same flips")
        again.shuffle(seed: 5, epoch: 3)
        #expect(again.flipped != flips, "another epoch draws others")
    }

    @Test func flipsAreSavedOnlyWhenOnAndNeedImages() throws {
        var configuration = TrainingConfiguration(layers: "conv 2 3, relu, flatten, lin 10")
        #expect(!(try TrainingCheckpoint.encode(configuration).contains("flip")))
        configuration.flip = true
        let text = try TrainingCheckpoint.encode(configuration)
        #expect(text.contains(#""flip":true"#))
        #expect(try TrainingCheckpoint.decode(TrainingConfiguration.self, text) == configuration)
        try configuration.validate(imageShape: [1, 28, 28])
        for layers in [nil, "lin 32, relu, lin 10"] {
            let mlp = TrainingConfiguration(layers: layers, flip: true)
            #expect(throws: TrainingSettingError.self) { try mlp.validate(imageShape: [1, 28, 28]) }
            do {
                try mlp.validate(imageShape: [1, 28, 28])
            } catch {
                #expect(error.option == "--flip" && error.problem.contains("rows of 784 values"), "\(error)")
            }
        }
    }

    // MARK: - A convnet trains

    @Test func aTinyConvnetLearns() throws {
        let train = quadrantData(64, seed: 1)
        let valid = quadrantData(32, seed: 2)
        let configuration = TrainingConfiguration(
            epochs: 6, batchSize: 16, learningRate: 1e-2, weightDecay: 0.01, seed: 3,
            layers: "conv 4 3 pad 1, relu, maxpool 2, flatten, lin 10")
        try configuration.validate(imageShape: [1, 8, 8], classes: 10, limit: 96)
        let trainer = Trainer(configuration: configuration, classes: 10, train: train, valid: valid)
        #expect(trainer.model.layers.first is Conv2d)
        let losses = try trainer.fit().map(\.trainLoss)
        #expect(losses.count == 6)
        #expect(losses.last! < losses.first! * 0.7, "training loss by epoch: \(losses)")
        #expect(losses.allSatisfy { $0.isFinite })
    }

    // MARK: - Evaluation mode

    @Test func evaluateRunsInEvaluationModeAndRestoresTheModes() throws {
        let model = try describedModel("lin 16, batchnorm, relu, dropout 0.5, lin 3", inputShape: [5])
        var generator = RandomGenerator(seed: 4)
        let x = Tensor.randn([12, 5], generator: &generator)
        let y = Tensor((0..<12).map { Float($0 % 3) })
        _ = model(x, y)  // one training forward: the running statistics move
        let norm = try #require(model.layers[1] as? BatchNorm)
        let running = stateValues(model)
        let result = evaluate(model, x: x, y: y, batchSize: 5)
        // The reference: the same model switched to evaluation by hand, in one batch.
        model.eval()
        let expected = GradMode.withNoGrad { model(x, y).item() }
        #expect(abs(result.loss - expected) <= 1e-5 * abs(expected), "\(result.loss) against \(expected)")
        #expect(stateValues(model) == running, "evaluation leaves the running statistics alone")
        // Back in training mode after evaluate, as before it; and an evaluating model stays so.
        model.train()
        _ = evaluate(model, x: x, y: y)
        #expect(norm.isTraining && (model.layers[3] as? Dropout)?.isTraining == true)
        model.eval()
        _ = evaluate(model, x: x, y: y)
        #expect(!norm.isTraining && (model.layers[3] as? Dropout)?.isTraining == false)
    }

    // MARK: - Checkpoints of every layer

    /// Every layer kind: conv and lin with and without bias, batch norm over channels and over
    /// features, both pools, dropout, and every activation.
    static let everyLayer =
        "conv 4 3 pad 1, batchnorm, relu, maxpool 2, conv 3 3 nobias, tanh, avgpool 2 stride 1, flatten, "
        + "lin 12 nobias, batchnorm, leakyrelu 0.2, dropout 0.3, lin 8, sigmoid, lin 8, gelu, lin 6, leakyrelu, lin 4"

    /// The every-layer model after a few training steps (the running statistics are no longer
    /// 0 and 1), and its data.
    static func trainedEveryLayerModel() throws -> (model: Model, x: Tensor, y: Tensor) {
        let (x, y) = quadrantData(24, channels: 2, size: 10, seed: 5)
        let configuration = TrainingConfiguration(
            epochs: 2, batchSize: 8, learningRate: 1e-2, seed: 6, layers: everyLayer)
        let trainer = Trainer(configuration: configuration, classes: 4, train: (x, y), valid: (x, y))
        try trainer.fit()
        return (trainer.model, x, y)
    }

    @Test func everyLayerRoundTripsWithItsBuffersAndPredictsTheSame() throws {
        let (model, x, _) = try Self.trainedEveryLayerModel()
        let runningMean = try #require(model.namedBuffers.first { $0.name == "layers.1.running_mean" }).tensor
        #expect(runningMean.values.contains { $0 != 0 }, "the running mean moved")
        try withTemporaryFolder { folder in
            let path = folder + "/every.safetensors"
            try Checkpoint.save(model, to: path, metadata: ["note": "test"], inputShape: [2, 10, 10])
            let file = try Safetensors.read(path: path)
            let canonical = try ModelDescription(parsing: Self.everyLayer).description
            #expect(
                file.metadata == [
                    "format": "backprop-model", "layers": canonical, "input_shape": "2,10,10",
                    "loss": "cross_entropy", "note": "test",
                ])
            let names = (model.namedParameters + model.namedBuffers).map(\.name)
            #expect(Set(file.names) == Set(names))
            #expect(names.contains("layers.4.w") && !names.contains("layers.4.b"), "conv nobias has no b")
            #expect(names.contains("layers.8.w") && !names.contains("layers.8.b"), "lin nobias has no b")
            #expect(file.tensors["layers.0.w"]?.shape == [4, 2, 3, 3])
            #expect(file.tensors["layers.9.running_var"]?.shape == [12])

            let loaded = try Checkpoint.load(path: path)
            #expect(try Checkpoint.modelDescription(of: loaded) == ModelDescription(parsing: Self.everyLayer))
            #expect(stateValues(loaded) == stateValues(model))
            model.eval()
            let expected = GradMode.withNoGrad { model.predict(x).values }
            #expect(GradMode.withNoGrad { loaded.predict(x).values } == expected, "loaded in evaluation mode")
            #expect(try Checkpoint.inputShape(path: path) == [2, 10, 10])

            // Into a fresh model of the same description, drawn from another seed.
            let fresh = try describedModel(Self.everyLayer, inputShape: [2, 10, 10], seed: 99)
            try Checkpoint.load(path: path, into: fresh)
            fresh.eval()
            #expect(GradMode.withNoGrad { fresh.predict(x).values } == expected)

            // Without an input shape, the one the model last ran on.
            try Checkpoint.save(model, to: path)
            #expect(try Safetensors.read(path: path).metadata["input_shape"] == "2,10,10")
        }
    }

    @Test func anMLPIsStillWrittenInTheMLPFormatAndOtherVectorModelsInTheNew() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/m.safetensors"
            try Checkpoint.save(try describedModel("lin 5, relu, lin 3", inputShape: [6]), to: path)
            let mlp = try Safetensors.read(path: path)
            #expect(mlp.metadata["format"] == "backprop-mlp" && mlp.metadata["sizes"] == "6,5,3")
            #expect(mlp.names == ["layers.0.b", "layers.0.w", "layers.2.b", "layers.2.w"])

            let tanh = try describedModel("lin 5, tanh, lin 1", inputShape: [6], loss: Mse())
            try Checkpoint.save(tanh, to: path)
            let file = try Safetensors.read(path: path)
            #expect(
                file.metadata == [
                    "format": "backprop-model", "layers": "lin 5, tanh, lin 1", "input_shape": "6", "loss": "mse",
                ])
            let loaded = try Checkpoint.load(path: path)
            #expect(loaded.loss is Mse && loaded.layers[1] is Tanh)
            #expect(stateValues(loaded) == stateValues(tanh))
        }
    }

    @Test func aConvnetOfUnknownInputShapeIsNotSaved() throws {
        let model = try describedModel("conv 2 3, relu, flatten, lin 10", inputShape: [1, 6, 6])
        try withTemporaryFolder { folder in
            #expect {
                try Checkpoint.save(model, to: folder + "/m.safetensors")
            } throws: { error in
                "\(error)".contains("the shape of its examples is unknown")
            }
            #expect {
                try Checkpoint.save(model, to: folder + "/m.safetensors", inputShape: [1, 7, 7])
            } throws: { error in
                "\(error)".contains("it holds layers.3.w [32, 10] where the description gives layers.3.w [50, 10]")
            }
            let written = try FileManager.default.contentsOfDirectory(atPath: folder)
            #expect(written.isEmpty, "nothing written: \(written)")
        }
    }

    // MARK: - Damaged checkpoints

    /// A checkpoint of the conv-batchnorm model, with `edit` applied to its metadata and tensors.
    static func editedModelFile(
        at path: String, _ edit: (inout [String: String], inout [String: Tensor]) -> Void
    ) throws {
        let model = try describedModel("conv 3 3, batchnorm, relu, flatten, lin 4", inputShape: [1, 5, 5])
        try Checkpoint.save(model, to: path, inputShape: [1, 5, 5])
        try editSafetensors(at: path, edit)
    }

    @Test(
        "a missing, extra, misshapen or damaged tensor, or broken metadata, is named",
        arguments: [
            ("missing", "no tensor 'layers.1.running_var'"),
            ("extra", "holds tensor 'layers.2.w', which the model \"conv 3 3, batchnorm, relu, flatten, lin 4\""),
            ("misshapen", "tensor 'layers.0.w' has shape [3, 1, 2, 2], expected [3, 1, 3, 3]"),
            ("nan", "tensor 'layers.1.running_var' holds NaN at [2]; Backprop never saves"),
            ("layers", "metadata 'layers' is not a model description: --layers: entry 2 \"batchnorm 3\""),
            ("misfit", "metadata 'layers' does not fit 'input_shape' 1,2,2: --layers: entry 1 \"conv 3 3\""),
            ("shape", "metadata 'input_shape' is '1,x,5', expected positive sizes such as 1,28,28"),
            // Sizes from the file that would build a model of hundreds of GiB, or overflow: refused
            // before anything is built (they used to run out of memory, or trap).
            ("huge", "metadata 'layers' with 'input_shape' 1,100000,100000 gives a model of 119995200088 parameters, "),
            (
                "overflow",
                "entry 4 \"flatten\" flattens its input [3, 3037000498, 3037000498] to more values than can be"
            ),
            ("padding", "entry 1 \"conv 3 3 pad 4611686018427387904\" pads its input [1, 5, 5] by 4611686018427387904"),
            ("loss", "metadata 'loss' is 'hinge', expected 'cross_entropy' or 'mse'"),
        ])
    func damagedModelCheckpoints(damage: String, message: String) throws {
        try withTemporaryFolder { folder in
            let path = folder + "/m.safetensors"
            try Self.editedModelFile(at: path) { metadata, tensors in
                switch damage {
                case "missing": tensors["layers.1.running_var"] = nil
                case "extra": tensors["layers.2.w"] = Tensor.zeros(2)
                case "misshapen": tensors["layers.0.w"] = Tensor.zeros([3, 1, 2, 2])
                case "nan":
                    let copy = tensors["layers.1.running_var"]!.copy()
                    copy.withUnsafeMutableBufferPointer { $0[2] = .nan }
                    tensors["layers.1.running_var"] = copy
                case "layers": metadata["layers"] = "conv 3 3, batchnorm 3, relu, flatten, lin 4"
                case "misfit": metadata["input_shape"] = "1,2,2"
                case "shape": metadata["input_shape"] = "1,x,5"
                case "huge": metadata["input_shape"] = "1,100000,100000"
                case "overflow": metadata["input_shape"] = "1,3037000500,3037000500"
                case "padding": metadata["layers"] = "conv 3 3 pad 4611686018427387904, batchnorm, relu, flatten, lin 4"
                default: metadata["loss"] = "hinge"
                }
            }
            expectDataError(containing: [path, message]) { try Checkpoint.load(path: path) }
            if ["missing", "extra", "misshapen", "nan"].contains(damage) {
                let model = try describedModel("conv 3 3, batchnorm, relu, flatten, lin 4", inputShape: [1, 5, 5])
                let before = stateValues(model)
                expectDataError(containing: [path, message]) { try Checkpoint.load(path: path, into: model) }
                #expect(stateValues(model) == before, "the model is left unchanged")
            }
        }
    }

    @Test func loadingIntoAnotherModelSaysWhatDiffers() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/m.safetensors"
            try Self.editedModelFile(at: path) { _, _ in }
            let other = try describedModel("conv 3 3, relu, flatten, lin 4", inputShape: [1, 5, 5])
            expectDataError(containing: [
                path,
                "holds the model \"conv 3 3, batchnorm, relu, flatten, lin 4\" (cross_entropy, examples of shape "
                    + "[1, 5, 5]), expected the model \"conv 3 3, relu, flatten, lin 4\" (cross_entropy)",
            ]) { try Checkpoint.load(path: path, into: other) }
            var generator = RandomGenerator(seed: 8)
            let mlp = Model.mlp(sizes: [25, 4], loss: CrossEntropy(), generator: &generator)
            expectDataError(containing: [path, "holds the model \"conv 3 3", "expected 25-4 relu cross_entropy"]) {
                try Checkpoint.load(path: path, into: mlp)
            }
        }
    }

    @Test func oldMLPCheckpointsStillLoad() throws {
        // make_mlp_fixture.py wrote the file by hand, in the format of the first checkpoints.
        let path = fixturePath("mlp_5_4_3_3.safetensors")
        let model = try Checkpoint.load(path: path)
        #expect(model.sizes == [5, 4, 3, 3])
        #expect(try Checkpoint.inputShape(path: path) == [5])
        var generator = RandomGenerator(seed: 8)
        let fresh = Model.mlp(sizes: [5, 4, 3, 3], loss: CrossEntropy(), generator: &generator)
        try Checkpoint.load(path: path, into: fresh)
        #expect(fresh.parameters.map(\.values) == model.parameters.map(\.values))
        let io = try Safetensors.read(path: fixturePath("mlp_5_4_3_3_io.safetensors"))
        expectAllNear(fresh.predict(try io.tensor("x")), try io.tensor("out"), tolerance: 1e-6, "out")
    }

    // MARK: - Validation

    @Test(
        "bad --layers settings are named by --layers (or --batch-size for what a batch cannot hold)",
        arguments: [
            ("conv x 3", [1, 28, 28], LossKind.crossEntropy, "--layers", "entry 1 \"conv x 3\": expected an output"),
            ("conv 8 3, relu, lin 10", [1, 28, 28], .crossEntropy, "--layers", "entry 3 \"lin 10\""),
            ("conv 8 3, flatten, lin 7", [1, 28, 28], .crossEntropy, "--layers", "the last layer gives [7]"),
            ("conv 8 3, flatten, lin 10", [1, 28, 28], .mse, "--layers", "expected [1] (the one prediction"),
            ("conv 8 3, relu", [1, 28, 28], .crossEntropy, "--layers", "gives [8, 26, 26] per example"),
            ("conv 8 30, flatten, lin 10", [1, 28, 28], .crossEntropy, "--layers", "larger than its input"),
            (
                "conv 8 3 pad 4611686018427387904, flatten, lin 10", [1, 28, 28], .crossEntropy, "--layers",
                "larger than can be counted"
            ),
            (
                "lin 3037000500, lin 3037000500, lin 10", [784], .crossEntropy, "--layers",
                "entry 2 \"lin 3037000500\" makes sizes larger than can be counted"
            ),
            ("lin 4000000000, lin 10", [784], .crossEntropy, "--layers", "this machine has"),
            ("conv 4096 3 pad 1, flatten, lin 10", [1, 28, 28], .crossEntropy, "--batch-size", "this machine has"),
            ("lin 8, batchnorm, relu, lin 10", [784], .crossEntropy, "--batch-size", "batches of 1 row"),
        ])
    func badLayers(text: String, imageShape: [Int], loss: LossKind, option: String, fragment: String) {
        var configuration = TrainingConfiguration(batchSize: 60_000, loss: loss, layers: text)
        if fragment == "batches of 1 row" { configuration.batchSize = 1 }
        do {
            try configuration.validate(imageShape: imageShape, classes: 10)
            Issue.record("\(text): no error")
        } catch {
            #expect(error.option == option, "\(error)")
            #expect(error.description.hasPrefix(option + ": "), "\(error)")
            #expect(error.problem.contains(fragment), "\(error) lacks '\(fragment)'")
        }
    }

    @Test func goodLayersValidate() throws {
        for preset in ["cnn", "mlp"] {
            try TrainingConfiguration(layers: preset).validate()
        }
        try TrainingConfiguration(loss: .mse, layers: "seed").validate()
        try TrainingConfiguration(layers: "conv 8 3, flatten, lin 10").validate(imageShape: [1, 28, 28])
        #expect(try TrainingConfiguration(layers: "cnn").modelInputShape(imageShape: [1, 28, 28]) == [1, 28, 28])
        #expect(try TrainingConfiguration(layers: "mlp").modelInputShape(imageShape: [1, 28, 28]) == [784])
        #expect(try TrainingConfiguration().modelInputShape(imageShape: [1, 28, 28]) == [784])
        // A last batch of one row is refused for batch norm over features only.
        let oneLeft = TrainingConfiguration(batchSize: 9, layers: "lin 8, batchnorm, relu, lin 10")
        #expect(throws: TrainingSettingError.self) { try oneLeft.validate(limit: 12) }  // 10 training rows
        try TrainingConfiguration(batchSize: 9, layers: "conv 2 3, batchnorm, flatten, lin 10").validate(limit: 12)
    }

    @Test func thePresetsCarryTheSettingsTheyWereTunedWith() {
        #expect(TrainingConfiguration.recipe(layers: "cnn").weightDecay == 0.3)
        #expect(TrainingConfiguration.recipe(layers: " CNN ").weightDecay == 0.3)
        #expect(TrainingConfiguration.recipe(layers: "cnn").layers == "cnn")
        for layers in [nil, "mlp", "seed", "conv 8 3, flatten, lin 10"] {
            var expected = TrainingConfiguration()
            expected.layers = layers
            #expect(TrainingConfiguration.recipe(layers: layers) == expected, "\(layers ?? "nil")")
        }
        #expect(ModelDescription.presetName(" Cnn") == "cnn" && ModelDescription.presetName("cnn2") == nil)
    }

    // MARK: - Resume

    @Test func aDescribedRunResumesToTheSameResult() throws {
        let (x, y) = quadrantData(40, seed: 9)
        let valid = quadrantData(16, seed: 10)
        let configuration = TrainingConfiguration(
            epochs: 3, batchSize: 16, learningRate: 1e-2, seed: 11,
            layers: "conv 3 3 pad 1, batchnorm, relu, avgpool 2, flatten, dropout 0.2, lin 6, batchnorm, gelu, lin 10",
            flip: true)
        let whole = Trainer(configuration: configuration, classes: 10, train: (x, y), valid: valid)
        let expected = try whole.fit()

        try withTemporaryFolder { folder in
            let path = folder + "/run.safetensors"
            let first = Trainer(configuration: configuration, classes: 10, train: (x, y), valid: valid)
            try first.fit(shouldStop: { first.epoch == 1 })
            try TrainingCheckpoint.save(first, configuration: configuration, limit: nil, to: path)
            let file = try Safetensors.read(path: path)
            #expect(file.metadata["format"] == "backprop-model" && file.metadata["input_shape"] == "1,8,8")
            #expect(file.names.contains("layers.1.running_mean") && file.names.contains("optimizer.0.m"))
            let state = try TrainingCheckpoint.readState(path: path)
            #expect(state.configuration == configuration)

            let resumed = Trainer(configuration: state.configuration, classes: 10, train: (x, y), valid: valid)
            try TrainingCheckpoint.restore(resumed, from: path)
            let history = try resumed.fit()
            #expect(history.map(\.trainLoss) == expected.map(\.trainLoss))
            #expect(history.map(\.validLoss) == expected.map(\.validLoss))
            #expect(stateValues(resumed.model) == stateValues(whole.model), "weights and running statistics")
        }
    }

    @Test func aResumedDescribedRunChecksItsSettings() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/run.safetensors"
            let (x, y) = quadrantData(24, seed: 12)
            let configuration = TrainingConfiguration(
                epochs: 2, batchSize: 8, layers: "conv 2 3, relu, flatten, lin 10")
            let trainer = Trainer(configuration: configuration, classes: 10, train: (x, y), valid: (x, y))
            try trainer.fit(shouldStop: { trainer.epoch == 1 })
            try TrainingCheckpoint.save(trainer, configuration: configuration, limit: nil, to: path)
            let file = try Safetensors.read(path: path)
            var metadata = file.metadata
            metadata["training"] = metadata["training"]!.replacingOccurrences(
                of: "lin 10", with: "lin 7")
            try Safetensors.write(file.tensors, metadata: metadata, to: path)
            expectDataError(containing: [path, "holds a setting out of range: --layers: the last layer gives [7]"]) {
                try TrainingCheckpoint.readState(path: path)
            }
        }
    }
}
