import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import Foundation

/// Shows a training run's progress: a redrawn bar with the running loss and the time left on a
/// terminal, one plain line per epoch otherwise.
///
/// A failed write is recorded by the stream (see `StandardStream`), never a trap: the run asks
/// the stream between two steps and stops.
final class ProgressDisplay {
    private let output: StandardStream
    private let isTerminal: Bool
    private let totalEpochs: Int
    /// When the bar was last drawn (it is redrawn at most ten times a second).
    private var lastDrawn = -Double.infinity
    private var barShown = false

    init(output: StandardStream, isTerminal: Bool, totalEpochs: Int) {
        self.output = output
        self.isTerminal = isTerminal
        self.totalEpochs = totalEpochs
    }

    /// After each step: redraws the bar on a terminal.
    func step(_ progress: StepProgress) {
        guard isTerminal else { return }
        if progress.elapsed - lastDrawn < 0.1 && progress.step != progress.stepsPerEpoch { return }
        lastDrawn = progress.elapsed
        let done = (progress.epoch - 1) * progress.stepsPerEpoch + progress.step
        let total = totalEpochs * progress.stepsPerEpoch
        let remaining = progress.elapsed / Double(done) * Double(total - done)
        let width = 30
        let filled = width * progress.step / progress.stepsPerEpoch
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let epochWidth = String(totalEpochs).count
        output.write(
            "\r\u{1B}[2Kepoch \(pad(progress.epoch, epochWidth))/\(totalEpochs) \(bar) "
                + "\(progress.step)/\(progress.stepsPerEpoch)  loss \(format(progress.runningLoss, 4))  "
                + "left \(clockTime(remaining))")
        barShown = true
    }

    /// After each epoch: one line with the epoch's losses, accuracy and seconds.
    func epoch(_ record: EpochRecord) {
        clear()
        let epochWidth = String(totalEpochs).count
        output.write(
            "epoch \(pad(record.epoch, epochWidth))/\(totalEpochs)  train loss \(format(record.trainLoss, 4))  "
                + "valid loss \(format(record.validLoss, 4))  valid accuracy \(format(record.validAccuracy, 4))  "
                + "\(format(record.seconds, 1)) s\n")
    }

    /// Erases the bar, if one is shown.
    func clear() {
        if barShown { output.write("\r\u{1B}[2K") }
        barShown = false
    }

    private func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: " ", count: Swift.max(0, width - text.count)) + text
    }

    /// `m:ss`.
    private func clockTime(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let total = Int(seconds.rounded())
        return "\(total / 60):" + (total % 60 < 10 ? "0" : "") + "\(total % 60)"
    }
}
