import BackpropCore
import BackpropNetwork
import Foundation

// One check of the training settings, for every way they arrive: `backprop train`'s options and
// the settings a checkpoint carries to `--resume`. A setting that is out of range, or a run whose
// sizes cannot be had (a product that overflows `Int`, more memory than the machine has), is an
// error before any work starts, never a trap in the middle of it.

/// A training setting out of range: the setting, named by the command-line option that sets it,
/// and what was expected and found.
public struct TrainingSettingError: Error, Equatable, CustomStringConvertible {
    /// The option that sets it: `--epochs`, `--batch-size`, `--lr`, `--weight-decay`,
    /// `--hidden`, `--layers` or `--limit`.
    public let option: String
    /// What was expected, and what was found.
    public let problem: String

    /// `--epochs: expected a positive number, found 0`.
    public var description: String { "\(option): \(problem)" }
}

extension TrainingConfiguration {
    /// The most training rows a run reads (Fashion-MNIST's 60,000, MNIST's too), for the bound on
    /// the number of steps when no limit is given.
    static let maximumRows = 60_000

    /// Checks every setting, as `backprop train` checks its options and `--resume` the settings a
    /// checkpoint holds.
    ///
    /// - `epochs`, `batchSize` and every hidden size positive; `learningRate` positive and finite;
    ///   `weightDecay` at least 0, finite, with `learningRate × weightDecay < 1` (each step
    ///   multiplies the weights by `1 − lr·wd`); `limit`, if given, at least 6 rows (a sixth of
    ///   them validate);
    /// - ``layers``, if given, parses, fits the examples (each layer's input has the shape it
    ///   takes, see `ModelDescription.shapes(input:)`), and ends in the loss's outputs: `[classes]`
    ///   for cross-entropy, `[1]` for MSE; no batch of one row reaches a batch norm that would
    ///   see one value per channel;
    /// - the run's sizes can be had: the steps (`epochs × ⌈rows / batchSize⌉`) and the model's
    ///   parameters count without overflow, and the parameters with their gradients and the
    ///   optimizer's state, and one batch's activations (each layer's output and its gradient,
    ///   and a convolution's unfolded columns and theirs), fit in the machine's memory;
    /// - ``flip`` only for a network that takes images (`[c, h, w]`).
    /// - Parameters:
    ///   - imageShape: the shape of one example as the data holds it: `[1, 28, 28]` for
    ///     Fashion-MNIST's images, `[m]` for rows of `m` inputs (see
    ///     ``modelInputShape(imageShape:)`` for what the model takes).
    ///   - classes: the classes (10); the model's outputs are `classes` for cross-entropy and 1
    ///     for the seed's MSE.
    ///   - limit: the rows read, if limited.
    ///   - trainingRows: the rows an epoch trains on, when the caller knows them (`backprop bench`
    ///     trains on all it reads); else the five sixths of the rows read that `train` keeps.
    /// - Throws: ``TrainingSettingError`` naming the first setting out of range.
    public func validate(
        imageShape: [Int] = [1, 28, 28], classes: Int = 10, limit: Int? = nil, trainingRows: Int? = nil
    ) throws(TrainingSettingError) {
        func fail(_ option: String, _ problem: String) -> TrainingSettingError {
            TrainingSettingError(option: option, problem: problem)
        }
        if let bad = hidden.first(where: { $0 <= 0 }) {
            throw fail("--hidden", "expected comma-separated positive sizes such as 256,128, found \(bad)")
        }
        guard epochs > 0 else { throw fail("--epochs", "expected a positive number, found \(epochs)") }
        guard batchSize > 0 else { throw fail("--batch-size", "expected a positive number, found \(batchSize)") }
        guard learningRate > 0, learningRate.isFinite else {
            throw fail("--lr", "expected a positive number, found \(learningRate)")
        }
        guard weightDecay >= 0, weightDecay.isFinite, learningRate * weightDecay < 1 else {
            throw fail(
                "--weight-decay",
                "expected a number ≥ 0 with --lr × --weight-decay < 1 (each step multiplies the weights by "
                    + "1 − lr·wd), found \(weightDecay) with --lr \(learningRate)")
        }
        if let limit, limit < 6 {
            throw fail("--limit", "expected at least 6 images (one sixth validate), found \(limit)")
        }
        let rows = Swift.min(limit ?? Self.maximumRows, Self.maximumRows)
        let stepsPerEpoch = rows / batchSize + (rows % batchSize == 0 ? 0 : 1)
        if epochs.multipliedReportingOverflow(by: Swift.max(stepsPerEpoch, 1)).overflow {
            throw fail("--epochs", "expected at most \(Int.max / Swift.max(stepsPerEpoch, 1)), found \(epochs)")
        }
        let outputs = loss.outputs(classes: classes)
        let sizes: ModelSizes
        if let description = try modelDescription() {
            sizes = try Self.describedSizes(
                description, inputShape: modelInputShape(imageShape: imageShape), outputs: outputs, loss: loss)
            try checkBatchNorm(sizes, trainingRows: trainingRows ?? rows - rows / 6)
        } else {
            sizes = mlpSizes(inputs: checkedProduct(imageShape) ?? Int.max, outputs: outputs)
        }
        try checkMemory(sizes, rows: rows)
        if flip {
            let takes =
                try modelDescription() == nil
                ? [checkedProduct(imageShape) ?? Int.max]
                : try modelInputShape(imageShape: imageShape)
            guard takes.count >= 3 else {
                throw fail(
                    "--flip",
                    "expected a network that takes images (one starting with conv or a pooling layer), "
                        + "found one that takes rows of \(takes.map(String.init).joined(separator: "×")) values")
            }
        }
    }

    /// Checks the settings for rows of `inputs` inputs (an MLP's `[m]`); see
    /// ``validate(imageShape:classes:limit:trainingRows:)``.
    /// - Throws: ``TrainingSettingError`` naming the first setting out of range.
    public func validate(inputs: Int, classes: Int = 10, limit: Int? = nil) throws(TrainingSettingError) {
        try validate(imageShape: [inputs], classes: classes, limit: limit)
    }

    /// What the memory check needs to know of a model, counted without overflow (`nil`: more
    /// than an `Int` counts).
    struct ModelSizes {
        /// The option that chose the model: `--hidden` or `--layers`.
        var option: String
        /// The model, as the error messages name it: `a model of sizes 256,128`.
        var name: String
        /// The learnable numbers.
        var parameters: Int?
        /// Per example: every layer's output, and every convolution's unfolded columns.
        var activationsPerRow: Int?
        /// Per layer, whether it is a batch norm that sees one value per channel per example.
        var batchNormOnVectors: [Bool]
    }

    /// The MLP `[inputs] + hidden + [outputs]`'s sizes.
    private func mlpSizes(inputs: Int, outputs: Int) -> ModelSizes {
        let widths = [inputs] + hidden + [outputs]
        var parameters: Int? = 0  // Σ (nIn · nOut + nOut)
        var activations: Int? = 0  // Σ nOut
        for (nIn, nOut) in zip(widths, widths.dropFirst()) {
            parameters = checkedSum(parameters, checkedSum(checkedProduct([nIn, nOut]), nOut))
            activations = checkedSum(activations, nOut)
        }
        return ModelSizes(
            option: "--hidden", name: "a model of sizes \(hidden.map(String.init).joined(separator: ","))",
            parameters: parameters, activationsPerRow: activations, batchNormOnVectors: [])
    }

    /// The described model's sizes for examples of shape `inputShape`, after checking that it
    /// fits them and ends in `[outputs]`.
    static func describedSizes(
        _ description: ModelDescription, inputShape: [Int], outputs: Int, loss: LossKind
    ) throws(TrainingSettingError) -> ModelSizes {
        // The shapes, counted here in overflow-checked arithmetic before the description computes
        // them, so that absurd sizes are an error rather than a trap.
        var shape = inputShape
        var parameters: Int? = 0
        var activations: Int? = 0
        var batchNormOnVectors: [Bool] = []
        for (index, entry) in description.entries.enumerated() {
            guard let (next, weights, columns) = countedOutput(entry, input: shape) else {
                throw TrainingSettingError(
                    option: "--layers",
                    problem: "entry \(index + 1) \"\(entry)\" makes sizes larger than can be counted "
                        + "for examples of shape \(inputShape) (the shape before it is \(shape))")
            }
            if next.isEmpty { break }  // does not fit: `shapes(input:)` below says why
            parameters = checkedSum(parameters, weights)
            activations = checkedSum(activations, checkedSum(checkedProduct(next), columns))
            let isBatchNorm = if case .batchNorm = entry { true } else { false }
            batchNormOnVectors.append(isBatchNorm && shape.dropFirst().allSatisfy { $0 == 1 })
            shape = next
        }
        let shapes: [[Int]]
        do {
            shapes = try description.shapes(input: inputShape)
        } catch {
            throw TrainingSettingError(layersError: error)
        }
        let last = shapes.last ?? inputShape
        guard last == [outputs] else {
            let expected =
                loss == .mse
                ? "[1] (the one prediction the seed's MSE compares with the class number)"
                : "[\(outputs)] (one score per class for cross-entropy)"
            throw TrainingSettingError(
                option: "--layers",
                problem: "the last layer gives \(last) per example, expected \(expected); end with lin \(outputs)")
        }
        return ModelSizes(
            option: "--layers", name: "the model \"\(description)\"", parameters: parameters,
            activationsPerRow: activations, batchNormOnVectors: batchNormOnVectors)
    }

    /// `entry`'s output shape for `input` (empty if it does not fit), its learnable numbers and
    /// its unfolded columns per example; `nil` when a count overflows.
    private static func countedOutput(
        _ entry: ModelDescription.Entry, input: [Int]
    ) -> (shape: [Int], parameters: Int, columns: Int)? {
        switch entry {
        case .conv(let out, let kernel, let stride, let padding, let bias):
            guard input.count == 3 else { return ([], 0, 0) }
            guard let (oh, ow) = windows(input, kernel: kernel, stride: stride, padding: padding) else { return nil }
            if oh < 1 || ow < 1 { return ([], 0, 0) }
            guard let weights = checkedSum(checkedProduct([out, input[0], kernel, kernel]), bias ? out : 0),
                let columns = checkedProduct([oh, ow, input[0], kernel, kernel]),
                checkedProduct([out, oh, ow]) != nil
            else { return nil }
            return ([out, oh, ow], weights, columns)
        case .maxPool(let kernel, let stride, let padding), .avgPool(let kernel, let stride, let padding, _):
            guard input.count == 3 else { return ([], 0, 0) }
            guard let (oh, ow) = windows(input, kernel: kernel, stride: stride, padding: padding) else { return nil }
            return oh < 1 || ow < 1 ? ([], 0, 0) : ([input[0], oh, ow], 0, 0)
        case .flatten:
            guard let size = checkedProduct(input) else { return nil }
            return ([size], 0, 0)
        case .lin(let out, let bias):
            guard input.count == 1 else { return ([], 0, 0) }
            guard let weights = checkedSum(checkedProduct([input[0], out]), bias ? out : 0) else { return nil }
            return ([out], weights, 0)
        case .batchNorm:
            guard input.count == 1 || input.count == 3 else { return ([], 0, 0) }
            guard let weights = checkedProduct([2, input[0]]) else { return nil }
            return (input, weights, 0)
        case .relu, .tanh, .sigmoid, .leakyReLU, .gelu, .silu, .hardtanh, .dropout:
            return (input, 0, 0)
        case .custom:
            // A layer of your own: built to ask its output shape and count its parameters.
            guard let layer = try? entry.makeCustomLayer(entryNumber: 0),
                let shape = try? layer.outputShape(input: input)
            else { return ([], 0, 0) }
            return (shape, layer.parameters.reduce(0) { $0 + $1.count }, 0)
        }
    }

    /// The windows `(oh, ow)` of a `kernel`×`kernel` window moved by `stride` over `[c, h, w]`
    /// padded by `padding`: `(h + 2·padding − kernel) / stride + 1` (below 1 when the window does
    /// not fit); `nil` when the padded size overflows.
    private static func windows(_ input: [Int], kernel: Int, stride: Int, padding: Int) -> (Int, Int)? {
        guard let h = checkedSum(input[1], checkedProduct([2, padding])),
            let w = checkedSum(input[2], checkedProduct([2, padding]))
        else { return nil }
        guard kernel <= h && kernel <= w else { return (0, 0) }
        return ((h - kernel) / stride + 1, (w - kernel) / stride + 1)
    }

    /// Refuses a run whose batches of one row (`batchSize` 1, or a last batch of one row) would
    /// reach a batch norm over features, which needs two values per channel in training.
    private func checkBatchNorm(_ sizes: ModelSizes, trainingRows: Int) throws(TrainingSettingError) {
        guard sizes.batchNormOnVectors.contains(true) else { return }
        let lastBatch = trainingRows % batchSize
        if batchSize == 1 || lastBatch == 1 {
            let which =
                batchSize == 1 ? "batches of 1 row" : "the last batch of each epoch (\(trainingRows) training rows)"
            throw TrainingSettingError(
                option: "--batch-size",
                problem: "\(which) would give a batch norm over features one value per channel (it needs at "
                    + "least two to train), found \(batchSize)")
        }
    }

    /// The sizes' part of ``validate(imageShape:classes:limit:trainingRows:)``: bytes against the machine's
    /// memory.
    private func checkMemory(_ sizes: ModelSizes, rows: Int) throws(TrainingSettingError) {
        guard let parameters = sizes.parameters else {
            throw TrainingSettingError(
                option: sizes.option, problem: "\(sizes.name) has more parameters than can be counted")
        }
        // Weights, their gradients, and up to two moments (Adam): four floats per parameter.
        let parameterBytes = checkedProduct([parameters, 4, MemoryLayout<Float>.stride])
        // One batch: each layer's output and its gradient (and a convolution's columns and theirs).
        let batchRows = Swift.min(batchSize, rows)
        let activationBytes = sizes.activationsPerRow.flatMap {
            checkedProduct([batchRows, $0, 2, MemoryLayout<Float>.stride])
        }
        let memory = ProcessInfo.processInfo.physicalMemory
        func gibibytes(_ bytes: Int) -> String { String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) }
        let available = gibibytes(Int(clamping: memory))
        guard let parameterBytes, UInt64(parameterBytes) <= memory else {
            throw TrainingSettingError(
                option: sizes.option,
                problem: "\(sizes.name) has \(parameters) parameters, which with their gradients "
                    + "and the optimizer's state need \(parameterBytes.map(gibibytes) ?? "more than can be counted"); "
                    + "this machine has \(available)")
        }
        guard let activationBytes, UInt64(activationBytes) <= memory - UInt64(parameterBytes) else {
            throw TrainingSettingError(
                option: "--batch-size",
                problem:
                    "batches of \(batchRows) rows need \(activationBytes.map(gibibytes) ?? "more than can be counted") "
                    + "for the layers' outputs and gradients; this machine has \(available)")
        }
    }
}
