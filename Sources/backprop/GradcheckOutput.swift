import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import Foundation

/// How `backprop gradcheck` prints a ``GradientCheckReport``: an aligned table with notes, or JSON.
enum GradcheckOutput {
    /// The table, one row per tensor, then what was left out and why rows failed.
    static func text(_ report: GradientCheckReport, sizes: [Int], source: String, seconds: Double) -> String {
        text(report, model: architecture(sizes), source: source, seconds: seconds)
    }

    /// The table for a model named `model` (an architecture or a model description).
    static func text(_ report: GradientCheckReport, model: String, source: String, seconds: Double) -> String {
        var lines: [String] = []
        lines.append("gradcheck: \(model) on \(source)")
        lines.append("loss \(number(Double(report.loss))), checked in \(String(format: "%.2f", seconds)) s")
        lines.append("")

        let header = [
            "tensor", "shape", "max |manual - autograd|", "rel err manual vs FD", "rel err autograd vs FD",
            "elements checked", "status",
        ]
        var table = [header]
        for row in report.rows {
            let total = row.shape.reduce(1, *)
            table.append([
                row.name,
                "\(row.shape)",
                row.manualShape == row.shape
                    ? number(row.maxManualAutogradDifference) : "shape \(row.manualShape.map { "\($0)" } ?? "none")",
                row.manualVersusFiniteDifferences.map { number($0.maxRelativeError) } ?? "-",
                number(row.autogradVersusFiniteDifferences.maxRelativeError),
                "\(row.checkedElements) of \(total)",
                row.passed ? "pass" : "FAIL",
            ])
        }
        lines += aligned(table)
        lines.append("")

        let options = report.options
        lines.append(
            "manual vs autograd: test_near, |g - grad| <= \(number(Double(options.absoluteTolerance))) × max|grad| "
                + "+ \(number(Double(options.relativeTolerance))) × |grad|")
        lines.append(
            "vs finite differences (FD): max |gradient - estimate| / max |gradient| over the elements checked, "
                + "pass <= \(number(options.finiteDifferenceTolerance)); large tensors sampled (\(options.samples) "
                + "elements, seed \(options.seed))")
        let oneSided = report.rows.reduce(0) { $0 + $1.oneSidedElements }
        let atZero = report.rows.reduce(0) { $0 + $1.excludedAtZero }
        let crossing = report.rows.reduce(0) { $0 + $1.excludedCrossing }
        if report.reluInputsAtZero > 0 {
            lines.append(
                "ReLU inputs exactly 0: \(report.reluInputsAtZero); their derivative is taken as 0, which finite "
                    + "differences cannot measure: \(atZero) elements that move them were excluded")
        } else {
            lines.append("ReLU inputs exactly 0: none")
        }
        lines.append(
            "ReLU inputs crossing 0 within the step: \(oneSided) elements checked one-sided, "
                + "\(crossing) excluded (crossing on both sides)")

        let failed = report.rows.filter { !$0.passed }
        if failed.isEmpty {
            lines.append("PASS: all \(report.rows.count) tensors")
        } else {
            lines.append("")
            for row in failed {
                for problem in row.problems { lines.append("\(row.name): \(problem)") }
            }
            lines.append(
                "FAIL: \(failed.count) of \(report.rows.count) tensors (\(failed.map(\.name).joined(separator: ", ")))")
        }
        return lines.joined(separator: "\n")
    }

    /// The report as JSON, with the model and the data it ran on.
    static func json(_ report: GradientCheckReport, sizes: [Int], source: String, seconds: Double) throws -> String {
        try json(report, model: architecture(sizes), sizes: sizes, source: source, seconds: seconds)
    }

    /// The report as JSON for a model named `model`.
    static func json(
        _ report: GradientCheckReport, model: String, sizes: [Int], source: String, seconds: Double
    ) throws -> String {
        struct Output: Encodable {
            let model: String
            let sizes: [Int]
            let data: String
            let seconds: Double
            let report: GradientCheckReport
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let output = Output(model: model, sizes: sizes, data: source, seconds: seconds, report: report)
        return String(decoding: try encoder.encode(output), as: UTF8.self)
    }

    /// `Lin(784, 50), ReLU, Lin(50, 1), Mse` for sizes `[784, 50, 1]`.
    static func architecture(_ sizes: [Int]) -> String {
        var layers: [String] = []
        for k in 1..<sizes.count {
            if k > 1 { layers.append("ReLU") }
            layers.append("Lin(\(sizes[k - 1]), \(sizes[k]))")
        }
        return (layers + ["Mse"]).joined(separator: ", ")
    }

    /// A number in a few significant digits: `0`, `3.1e-04`, `27.31`.
    static func number(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value == 0 { return "0" }
        let magnitude = abs(value)
        if magnitude >= 1e5 || magnitude < 1e-2 { return String(format: "%.1e", value) }
        return String(format: "%.4g", value)
    }

    /// The cells padded so that columns line up, two spaces apart.
    static func aligned(_ table: [[String]]) -> [String] {
        let widths = (0..<table[0].count).map { column in table.map { $0[column].count }.max() ?? 0 }
        return table.map { cells in
            zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
    }
}
