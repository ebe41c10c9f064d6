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
    /// `--hidden` or `--limit`.
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
    /// - the run's sizes can be had: the steps (`epochs × ⌈rows / batchSize⌉`) and the model's
    ///   parameters count without overflow, and the parameters with their gradients and the
    ///   optimizer's state, and one batch's activations, fit in the machine's memory.
    /// - Parameters:
    ///   - inputs: the inputs per row (784 for Fashion-MNIST's images).
    ///   - classes: the outputs (10 classes; 1 for the seed's regression).
    ///   - limit: the rows read, if limited.
    /// - Throws: ``TrainingSettingError`` naming the first setting out of range.
    public func validate(inputs: Int = 784, classes: Int = 10, limit: Int? = nil) throws(TrainingSettingError) {
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
        try checkMemory(inputs: inputs, classes: classes, rows: rows)
    }

    /// The sizes' part of ``validate(inputs:classes:limit:)``: counts in overflow-checked
    /// arithmetic, bytes against the machine's memory.
    private func checkMemory(inputs: Int, classes: Int, rows: Int) throws(TrainingSettingError) {
        let widths = [inputs] + hidden + [classes]
        let hiddenText = hidden.map(String.init).joined(separator: ",")
        var parameters = 0  // Σ (nIn · nOut + nOut)
        for (nIn, nOut) in zip(widths, widths.dropFirst()) {
            let (weights, overflow) = nIn.multipliedReportingOverflow(by: nOut)
            let (sum, overflow2) = parameters.addingReportingOverflow(weights)
            let (withBias, overflow3) = sum.addingReportingOverflow(nOut)
            if overflow || overflow2 || overflow3 {
                throw TrainingSettingError(
                    option: "--hidden",
                    problem: "a model of sizes \(hiddenText) has more parameters than can be counted")
            }
            parameters = withBias
        }
        // Weights, their gradients, and up to two moments (Adam): four floats per parameter.
        let (parameterBytes, overflow) = parameters.multipliedReportingOverflow(by: 4 * MemoryLayout<Float>.stride)
        // One batch: each layer's output and its gradient, for every width after the input.
        let batchRows = Swift.min(batchSize, rows)
        let activationFloats = widths.dropFirst().reduce(0) { total, width in
            total.addingReportingOverflow(width).overflow ? Int.max : total + width
        }
        let (activationBytes, overflow2) = batchRows.multipliedReportingOverflow(
            by: activationFloats.multipliedReportingOverflow(by: 2 * MemoryLayout<Float>.stride).partialValue)
        let memory = ProcessInfo.processInfo.physicalMemory
        func gibibytes(_ bytes: Int) -> String { String(format: "%.1f GiB", Double(bytes) / Double(1 << 30)) }
        let available = gibibytes(Int(clamping: memory))
        if overflow || UInt64(parameterBytes) > memory {
            throw TrainingSettingError(
                option: "--hidden",
                problem: "a model of sizes \(hiddenText) has \(parameters) parameters, which with their gradients "
                    + "and the optimizer's state need \(overflow ? "more than can be counted" : gibibytes(parameterBytes)); "
                    + "this machine has \(available)")
        }
        if overflow2 || activationFloats == Int.max || UInt64(activationBytes) > memory - UInt64(parameterBytes) {
            throw TrainingSettingError(
                option: "--batch-size",
                problem:
                    "batches of \(batchRows) rows need \(overflow2 ? "more than can be counted" : gibibytes(activationBytes)) "
                    + "for the layers' outputs and gradients; this machine has \(available)")
        }
    }
}
