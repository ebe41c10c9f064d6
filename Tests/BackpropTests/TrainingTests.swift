import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// Minibatches, the training loop on real Fashion-MNIST rows, determinism, divergence, the plot.
@Suite("Training")
struct TrainingTests {
    // MARK: - Batches

    /// Rows `[i, 100 + i]` with target `i`, so that every batch says which rows it holds.
    static func numberedRows(_ n: Int) -> (x: Tensor, y: Tensor) {
        let x = Tensor(shape: [n, 2], values: (0..<n).flatMap { [Float($0), Float(100 + $0)] })
        return (x, Tensor((0..<n).map(Float.init)))
    }

    /// The targets of every batch of the current order, batch after batch.
    static func rowsVisited(_ batches: Batches) -> [[Int]] {
        (0..<batches.count).map { index in
            let (x, y) = batches.batch(index)
            for row in 0..<y.count {
                #expect(x[row, 0] == y[row] && x[row, 1] == 100 + y[row], "inputs and targets gathered together")
            }
            return y.values.map { Int($0) }
        }
    }

    @Test func batchesVisitEveryRowOncePerEpochInShuffledOrder() {
        let (x, y) = Self.numberedRows(10)
        let batches = Batches(x: x, y: y, batchSize: 4)
        #expect(batches.count == 3)
        #expect(Self.rowsVisited(batches) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])

        batches.shuffle(seed: 1, epoch: 0)
        let epoch0 = Self.rowsVisited(batches)
        #expect(epoch0.map(\.count) == [4, 4, 2])
        #expect(epoch0.flatMap { $0 }.sorted() == Array(0..<10))
        #expect(epoch0.flatMap { $0 } != Array(0..<10))

        batches.shuffle(seed: 1, epoch: 1)
        let epoch1 = Self.rowsVisited(batches)
        #expect(epoch1.flatMap { $0 }.sorted() == Array(0..<10))
        #expect(epoch1 != epoch0, "each epoch has its own order")

        // The order depends on the seed and the epoch only: recomputing it gives the same batches.
        batches.shuffle(seed: 1, epoch: 0)
        #expect(Self.rowsVisited(batches) == epoch0)
        batches.shuffle(seed: 2, epoch: 0)
        #expect(Self.rowsVisited(batches) != epoch0)
    }

    // MARK: - Real data

    /// 1,000 training and 200 validation rows of Fashion-MNIST (the first 1,200 of the file).
    static func realData() throws -> FashionMNIST {
        try FashionMNIST(directory: fashionMNISTFolder, limit: 1200)
    }

    @Test(.enabled(if: fashionMNISTInstalled, fashionMNISTMissingNote))
    func shortRunOnRealDataLearns() throws {
        let data = try Self.realData()
        let configuration = TrainingConfiguration(
            hidden: [64], epochs: 6, batchSize: 50, learningRate: 3e-3, optimizer: .adam, weightDecay: 0.01,
            schedule: .oneCycle, seed: 1)
        let trainer = Trainer(
            configuration: configuration, classes: 10, train: (data.xTrain, data.yTrain),
            valid: (data.xValid, data.yValid))
        var steps = 0
        let history = try trainer.fit(onStep: { _ in steps += 1 })
        #expect(steps == 6 * 20)
        #expect(history.count == 6)
        #expect(
            history.last!.trainLoss < history.first!.trainLoss * 0.7, "training loss falls: \(history.map(\.trainLoss))"
        )
        #expect(
            history.last!.validLoss < history.first!.validLoss, "validation loss falls: \(history.map(\.validLoss))")
        // Chance is 0.1; 1,000 images and six epochs of an MLP reach about 0.8.
        #expect(history.last!.validAccuracy >= 0.75, "validation accuracy \(history.last!.validAccuracy)")
        let test = evaluate(trainer.model, x: data.xTest, y: data.yTest)
        #expect(test.accuracy >= 0.7, "test accuracy \(test.accuracy) on \(data.yTest.count) images")
    }

    @Test(.enabled(if: fashionMNISTInstalled, fashionMNISTMissingNote))
    func seedsMSEModelLossFallsEveryEpoch() throws {
        // The seed's 784-50-1 regression of the class number, on 300 training rows.
        let data = try FashionMNIST(directory: fashionMNISTFolder, limit: 360)
        var generator = RandomGenerator(seed: 42)
        let model = Model.mlp(sizes: [784, 50, 1], loss: Mse(), generator: &generator)
        let trainer = Trainer(
            model: model, optimizer: SGD(model.parameters, learningRate: 0.005), schedule: .constant, epochs: 5,
            batchSize: 30, seed: 42, train: (data.xTrain, data.yTrain), valid: (data.xValid, data.yValid))
        let losses = try trainer.fit().map(\.trainLoss)
        for (before, after) in zip(losses, losses.dropFirst()) {
            #expect(after < before, "MSE training loss by epoch: \(losses)")
        }
        #expect(losses.last! < losses.first! / 2, "MSE training loss by epoch: \(losses)")
    }

    @Test(.enabled(if: fashionMNISTInstalled, fashionMNISTMissingNote))
    func sameSeedGivesTheSameLossesAndWeightsBitForBit() throws {
        let data = try Self.realData()
        func run(seed: UInt64) throws -> (history: [EpochRecord], weights: [[Float]]) {
            let configuration = TrainingConfiguration(
                hidden: [32, 16], epochs: 2, batchSize: 64, learningRate: 2e-3, seed: seed)
            let trainer = Trainer(
                configuration: configuration, classes: 10, train: (data.xTrain, data.yTrain),
                valid: (data.xValid, data.yValid))
            let history = try trainer.fit()
            return (history, trainer.model.parameters.map(\.values))
        }
        let first = try run(seed: 5)
        let second = try run(seed: 5)
        let other = try run(seed: 6)
        #expect(first.history.map(\.trainLoss) == second.history.map(\.trainLoss))
        #expect(first.history.map(\.validLoss) == second.history.map(\.validLoss))
        #expect(first.weights == second.weights)
        #expect(first.weights != other.weights, "another seed, other weights")
    }

    // MARK: - The learning rate

    /// The optimizer owns the learning rate: the trainer's schedule scales from the rate the
    /// optimizer holds, and sets it before every step; a configuration's goes to its optimizer.
    @Test func theScheduleScalesTheOptimizersLearningRate() throws {
        var generator = RandomGenerator(seed: 3)
        let x = Tensor.randn([32, 4], generator: &generator)
        let y = Tensor((0..<32).map { Float($0 % 3) })
        let model = Model.mlp(sizes: [4, 5, 3], loss: CrossEntropy(), generator: &generator)
        let optimizer = Adam(model.parameters, learningRate: 0.02)
        let trainer = Trainer(
            model: model, optimizer: optimizer, schedule: .oneCycle, epochs: 2, batchSize: 8, seed: 1,
            train: (x, y), valid: (x, y))
        #expect(trainer.peakLearningRate == 0.02)
        var rates: [Float] = []
        try trainer.fit(onStep: { _ in rates.append(optimizer.learningRate) })
        let expected = (0..<8).map { LearningRateSchedule.oneCycle.learningRate(peak: 0.02, step: $0, totalSteps: 8) }
        #expect(rates == expected)

        let configuration = TrainingConfiguration(hidden: [5], epochs: 1, batchSize: 8, learningRate: 0.007, seed: 1)
        let configured = Trainer(configuration: configuration, classes: 3, train: (x, y), valid: (x, y))
        #expect(configured.peakLearningRate == 0.007 && configured.optimizer.learningRate == 0.007)
    }

    // MARK: - Divergence

    @Test func divergenceStopsNamingTheEpochAndStep() throws {
        // The seed's MSE model with a learning rate far too large: the loss overflows in a few steps.
        var generator = RandomGenerator(seed: 3)
        let x = Tensor.randn([64, 8], generator: &generator)
        let y = Tensor((0..<64).map { Float($0 % 10) })
        let model = Model.mlp(sizes: [8, 16, 1], loss: Mse(), generator: &generator)
        let trainer = Trainer(
            model: model, optimizer: SGD(model.parameters, learningRate: 10), schedule: .constant, epochs: 3,
            batchSize: 16, seed: 1, train: (x, y), valid: (x, y))
        var completedSteps = 0
        do {
            try trainer.fit(onStep: { _ in completedSteps += 1 })
            Issue.record("training with learning rate 10 did not diverge")
        } catch let error as TrainingError {
            guard case .diverged(let epoch, let step, let loss, let learningRate, let peak) = error else {
                Issue.record("expected the divergence named with its step, got \(error)")
                return
            }
            // The step named is the one after the last completed step.
            #expect((epoch - 1) * 4 + step == completedSteps + 1)
            #expect(!loss.isFinite)
            #expect(learningRate == 10 && peak == 10)
            #expect(error.description.contains("diverged at epoch \(epoch), step \(step)"))
            #expect(error.description.contains("(learning rate 10); try a lower learning rate, e.g. --lr 1"))
        }
        // Every parameter is still finite: the optimizer never stepped on the broken loss.
        #expect(model.parameters.allSatisfy { $0.values.allSatisfy { $0.isFinite } })
    }

    @Test func zeroVarianceWithEpsZeroIsNamedNotBlamedOnTheLearningRate() throws {
        // Feature 3 is 0 in every row: its batch variance is 0. With eps 0, BatchNorm computes
        // (0 - 0) · 1/√0 = 0 · ∞ = NaN at the first step, whatever the learning rate.
        func run(eps: Float) throws -> (error: TrainingError?, model: Model) {
            var generator = RandomGenerator(seed: 5)
            var values = Tensor.randn([64, 8], generator: &generator).values
            for row in 0..<64 { values[row * 8 + 3] = 0 }
            let x = Tensor(shape: [64, 8], values: values)
            let y = Tensor((0..<64).map { Float($0 % 10) })
            let lin = Lin(Tensor.randn([8, 10], generator: &generator) * 0.1, Tensor.zeros([10]))
            let model = Model(layers: [ReLU(), BatchNorm(features: 8, eps: eps), lin], loss: CrossEntropy())
            let trainer = Trainer(
                model: model, optimizer: SGD(model.parameters, learningRate: 1e-3), schedule: .constant, epochs: 1,
                batchSize: 16, seed: 1, train: (x, y), valid: (x, y))
            do {
                _ = try trainer.fit()
                return (nil, model)
            } catch let error as TrainingError {
                return (error, model)
            }
        }
        let (error, model) = try run(eps: 0)
        #expect(error == .zeroVariance(epoch: 1, step: 1, layer: 1))
        #expect(error?.description.contains("because layer 1 (batchnorm eps 0) divided by a variance of 0") == true)
        #expect(error?.description.contains("lower learning rate") == false)
        #expect(model.parameters.allSatisfy { $0.values.allSatisfy { $0.isFinite } })
        // PyTorch's eps trains on the same data: the constant feature normalises to 0.
        #expect(try run(eps: BatchNorm.defaultEps).error == nil)
    }

    /// Inputs that overflow the first product (pixels normalised with a mean of -3e38) give a
    /// loss that is not finite at the very first batch: the learning rate has not acted yet, and
    /// the advice to lower it (which a helper found) could not help.
    @Test func aLossNotFiniteAtTheFirstBatchIsNotBlamedOnTheLearningRate() throws {
        func run(scale: Float, epochs: Int = 1) throws -> TrainingError? {
            var generator = RandomGenerator(seed: 6)
            let x = Tensor.randn([64, 8], generator: &generator) * scale
            let y = Tensor((0..<64).map { Float($0 % 10) })
            let model = Model(
                layers: [Lin(Tensor.randn([8, 10], generator: &generator), Tensor.zeros([10]))], loss: CrossEntropy())
            let trainer = Trainer(
                model: model, optimizer: SGD(model.parameters, learningRate: 1e-3), schedule: .constant,
                epochs: epochs, batchSize: 16, seed: 1, train: (x, y), valid: (x, y))
            do {
                _ = try trainer.fit()
                return nil
            } catch let error as TrainingError {
                return error
            }
        }
        let error = try #require(try run(scale: Float.greatestFiniteMagnitude / 2))
        guard case .notFiniteAtStart = error else {
            Issue.record("expected notFiniteAtStart, got \(error)")
            return
        }
        #expect(error.description.hasPrefix("the loss of the first batch is "), "\(error)")
        #expect(error.description.contains("before any step of the optimizer") && !error.description.contains("lower"))
        // (A learning rate too large diverges at a later step, and keeps its advice:
        // divergenceStopsNamingTheEpochAndStep.)
    }

    // MARK: - Plot

    @Test func plotHasLabelledAxesAndOnePointPerEpochAndSeries() {
        let history = (1...4).map { epoch in
            EpochRecord(
                epoch: epoch, trainLoss: 1 / Float(epoch), validLoss: 1.2 / Float(epoch),
                validAccuracy: 0.7 + 0.05 * Float(epoch), learningRate: 0.001, seconds: 1)
        }
        let svg = trainingPlotSVG(history, title: "a < b & c")
        #expect(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\""))
        #expect(svg.hasSuffix("</svg>\n"))
        #expect(svg.contains(">a &lt; b &amp; c</text>"), "the title is escaped")
        for label in [">epoch</text>", ">loss</text>", ">accuracy</text>", ">training</text>", ">validation</text>"] {
            #expect(svg.contains(label), "missing \(label)")
        }
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 3)
        #expect(svg.components(separatedBy: "<circle").count - 1 == 12)
    }

    @Test func niceTicksAreRoundNumbersCoveringTheRange() {
        #expect(
            niceTicks(low: 0.83, high: 0.91, integers: false).map { ($0 * 100).rounded() } == [82, 84, 86, 88, 90, 92])
        #expect(niceTicks(low: 1, high: 15, integers: true) == [0, 5, 10, 15])
    }
}

/// After `fit`, the model is in evaluation mode, as after fastai's `fit`: predictions are the same
/// twice and leave batch norm's running statistics alone (it used to stay in training mode, so a
/// model with dropout predicted differently each time and every prediction moved the statistics).
@Test func fitEndsInEvaluationMode() throws {
    var generator = RandomGenerator(seed: 21)
    let x = Tensor.randn([96, 12], generator: &generator)
    let y = Tensor((0..<96).map { Float($0 % 10) })
    let configuration = TrainingConfiguration(
        epochs: 2, batchSize: 32, learningRate: 0.01, optimizer: .adam, weightDecay: 0, seed: 4,
        layers: "lin 16, batchnorm, relu, dropout 0.3, lin 10")
    let trainer = Trainer(configuration: configuration, classes: 10, train: (x, y), valid: (x, y))
    _ = try trainer.fit()
    let modes = trainer.model.layers.compactMap { ($0 as? any ModeDependentLayer)?.isTraining }
    #expect(modes == [false, false], "batch norm and dropout: \(modes)")
    let statistics = trainer.model.layers.flatMap { $0.buffers.map(\.tensor.values) }
    let first = GradMode.withNoGrad { trainer.model.predict(x) }.values
    let second = GradMode.withNoGrad { trainer.model.predict(x) }.values
    #expect(first == second)
    #expect(trainer.model.layers.flatMap { $0.buffers.map(\.tensor.values) } == statistics)
}
