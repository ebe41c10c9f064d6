import ArgumentParser
import Backprop
import Foundation

/// `backprop train`: trains an MLP on Fashion-MNIST with the layers' hand-written backward.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train an MLP on Fashion-MNIST with minibatches, cross-entropy and an optimizer.",
        discussion: """
            Trains on the first 50,000 training images, validates on the other 10,000 after each \
            epoch, and reports the accuracy on the 10,000 test images (t10k) at the end. The \
            defaults are the best recipe found (see Training.md).
            """
    )

    private static let recipe = TrainingConfiguration()

    @Option(help: "Hidden layer sizes, comma-separated (e.g. 256,128).")
    var hidden: String = recipe.hidden.map(String.init).joined(separator: ",")

    @Option(help: "Passes over the training set.")
    var epochs: Int = recipe.epochs

    @Option(help: "Rows per minibatch.")
    var batchSize: Int = recipe.batchSize

    @Option(name: .customLong("lr"), help: "Peak learning rate.")
    var learningRate: Float = recipe.learningRate

    @Option(help: "Optimizer: \(OptimizerKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var optimizer: String = recipe.optimizer.rawValue

    @Option(help: "Decoupled weight decay on the weight matrices.")
    var weightDecay: Float = recipe.weightDecay

    @Option(help: "Learning-rate schedule: \(LearningRateSchedule.allCases.map(\.rawValue).joined(separator: ", ")).")
    var schedule: String = recipe.schedule.rawValue

    @Option(help: "Seed of the initial weights and of the shuffles.")
    var seed: UInt64 = recipe.seed

    @Option(help: "Folder with the Fashion-MNIST files (default: $BACKPROP_DATA, else /usr/share/datasets/fashion-mnist).")
    var data: String?

    @Option(help: "Use only the first N training images (5/6 train, 1/6 validate) and N test images, for quick trials.")
    var limit: Int?

    @Option(help: "Write the trained model to this safetensors file.")
    var save: String?

    @Option(help: "Write an SVG plot of the losses and the validation accuracy to this file.")
    var plot: String?

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false

    func validate() throws {
        if let limit, limit < 6 { throw ValidationError("--limit: expected at least 6 images (one sixth validate), found \(limit)") }
        if let save { try checkOutput(save, option: "--save", suffix: ".safetensors") }
        if let plot { try checkOutput(plot, option: "--plot", suffix: ".svg") }
        _ = try parsedConfiguration()
    }

    func run() throws {
        let started = ContinuousClock.now
        let configuration = try parsedConfiguration()
        let dataset = try FashionMNIST(directory: FashionMNIST.resolveDirectory(data), limit: limit)
        let trainer = Trainer(
            configuration: configuration, classes: FashionMNIST.classNames.count,
            train: (dataset.xTrain, dataset.yTrain), valid: (dataset.xValid, dataset.yValid))

        // Text goes to stdout, or to stderr when stdout carries the JSON.
        let textOutput = json ? FileHandle.standardError : FileHandle.standardOutput
        let progress = ProgressDisplay(
            output: textOutput, isTerminal: isatty(json ? STDERR_FILENO : STDOUT_FILENO) == 1,
            totalEpochs: configuration.epochs)
        do {
            try trainer.fit(onStep: progress.step, onEpoch: progress.epoch)
        } catch let error as TrainingError {
            progress.clear()
            let kept = save.map { " (\($0) was not written)" } ?? ""
            throw CommandLineError(error.description + kept)
        }
        let test = evaluate(trainer.model, x: dataset.xTest, y: dataset.yTest)
        let last = trainer.history.last!

        if let save {
            var metadata = [
                "input_mean": "\(dataset.trainMean)", "input_std": "\(dataset.trainStd)",
                "test_accuracy": "\(test.accuracy)", "valid_accuracy": "\(last.validAccuracy)",
            ]
            metadata["training"] = try encodeJSON(configuration)
            try Checkpoint.save(trainer.model, to: save, metadata: metadata)
        }
        if let plot {
            let sizes = trainer.model.sizes.map(String.init).joined(separator: "-")
            let title = "Fashion-MNIST, MLP \(sizes), \(configuration.optimizer.rawValue), "
                + "test accuracy \(format(test.accuracy, 4))"
            try writeAtomically(Data(trainingPlotSVG(trainer.history, title: title).utf8), to: plot)
        }
        let seconds = started.duration(to: .now).seconds
        if json {
            let report = TrainReport(
                testAccuracy: test.accuracy, testLoss: test.loss, validAccuracy: last.validAccuracy,
                validLoss: last.validLoss, seconds: seconds, sizes: trainer.model.sizes,
                configuration: configuration, epochs: trainer.history)
            print(try encodeJSON(report))
        } else {
            textOutput.write(
                "test accuracy \(format(test.accuracy, 4)) (\(dataset.yTest.count) images), test loss "
                    + "\(format(test.loss, 4)), \(format(seconds, 1)) s\n")
            if let save { textOutput.write("saved model to \(save)\n") }
            if let plot { textOutput.write("wrote plot to \(plot)\n") }
        }
    }

    /// The options as a configuration, or an error naming the option, the expected and the found value.
    private func parsedConfiguration() throws -> TrainingConfiguration {
        var configuration = TrainingConfiguration()
        configuration.hidden = try parseSizes(hidden, option: "--hidden")
        guard epochs > 0 else { throw ValidationError("--epochs: expected a positive number, found \(epochs)") }
        configuration.epochs = epochs
        guard batchSize > 0 else {
            throw ValidationError("--batch-size: expected a positive number, found \(batchSize)")
        }
        configuration.batchSize = batchSize
        guard learningRate > 0, learningRate.isFinite else {
            throw ValidationError("--lr: expected a positive number, found \(learningRate)")
        }
        configuration.learningRate = learningRate
        guard let kind = OptimizerKind(rawValue: optimizer) else {
            throw ValidationError(
                "--optimizer: expected one of \(OptimizerKind.allCases.map(\.rawValue).joined(separator: ", ")), found '\(optimizer)'")
        }
        configuration.optimizer = kind
        guard weightDecay >= 0, weightDecay.isFinite, learningRate * weightDecay < 1 else {
            throw ValidationError(
                "--weight-decay: expected a number ≥ 0 with lr × weight decay < 1, found \(weightDecay)")
        }
        configuration.weightDecay = weightDecay
        guard let scheduleKind = LearningRateSchedule(rawValue: schedule) else {
            throw ValidationError(
                "--schedule: expected one of \(LearningRateSchedule.allCases.map(\.rawValue).joined(separator: ", ")), found '\(schedule)'")
        }
        configuration.schedule = scheduleKind
        configuration.seed = seed
        return configuration
    }
}

/// The `--json` output of `backprop train`.
struct TrainReport: Encodable {
    var testAccuracy: Float
    var testLoss: Float
    var validAccuracy: Float
    var validLoss: Float
    var seconds: Double
    var sizes: [Int]
    var configuration: TrainingConfiguration
    var epochs: [EpochRecord]
}

/// `value` as one line of JSON, keys in snake_case and sorted.
func encodeJSON(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// Parses `"256,128"` into `[256, 128]`, or throws naming the option.
func parseSizes(_ text: String, option: String) throws -> [Int] {
    if text.trimmingCharacters(in: .whitespaces).isEmpty { return [] }
    let parts = text.split(separator: ",", omittingEmptySubsequences: false)
    var sizes: [Int] = []
    for part in parts {
        guard let size = Int(part.trimmingCharacters(in: .whitespaces)), size > 0 else {
            throw ValidationError("\(option): expected comma-separated positive sizes such as 256,128, found '\(text)'")
        }
        sizes.append(size)
    }
    return sizes
}

/// Checks, before any work, that `path` has the expected suffix and can be written.
func checkOutput(_ path: String, option: String, suffix: String) throws {
    guard path.hasSuffix(suffix) else {
        throw ValidationError("\(option) \(path): expected a file name ending in \(suffix)")
    }
    try OutputPath.check(path, option: option)
}

/// `value` with `digits` digits after the point.
func format(_ value: Float, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }

/// `value` with `digits` digits after the point.
func format(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }

extension Duration {
    /// The duration in seconds.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

extension FileHandle {
    /// Writes `text` as UTF-8.
    func write(_ text: String) { write(Data(text.utf8)) }
}
