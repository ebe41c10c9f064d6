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
            "FD noise", "elements checked", "status",
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
                number(row.autogradVersusFiniteDifferences.maxRelativeNoise),
                "\(row.checkedElements) of \(total)",
                row.passed ? "pass" : "FAIL",
            ])
        }
        lines += aligned(table)
        lines.append("")
        lines += footnotes(report)

        let failed = report.rows.filter { !$0.passed }
        if failed.isEmpty {
            lines.append("PASS: \(allTensors(report.rows.count))")
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

    /// What the columns mean, and what the finite differences met: kinks, crossings, noise.
    static func footnotes(_ report: GradientCheckReport) -> [String] {
        let options = report.options
        var lines: [String] = []
        lines.append(
            "manual vs autograd: test_near, |g - grad| <= \(number(Double(options.absoluteTolerance))) × max|grad| "
                + "+ \(number(Double(options.relativeTolerance))) × |grad|, or 4 × their measured rounding where larger "
                + "(the backward passes run again with the loss's gradient × 0.8 and × 1.3); for a gradient that is "
                + "rounding (below a millionth of the model's largest, or zero to FD, and moved by a thousandth of "
                + "itself or more by that rounding), max|grad| is the model's largest")
        lines.append(
            "vs finite differences (FD): central differences D(2h) of the loss (summed in Double), h = ε^(1/3) × "
                + "max(1, |element|), with every ReLU mask and max-pool winner frozen at the point checked (no kink "
                + "within the step); rel err = max |gradient - D(2h)| / max |gradient|; large tensors sampled "
                + "(\(options.samples) elements, seed \(options.seed))")
        let noisy = report.rows.reduce(0) { $0 + $1.noisyElements }
        lines.append(
            "FD noise: the Float rounding of the loss, measured per element as \(number(options.noiseFactor)) × "
                + "max(|D(2h) - D(h)|, the tensor's median of it), the largest shown / max |gradient|; an element "
                + "passes when |gradient - D(2h)| <= \(number(options.finiteDifferenceTolerance)) × max |gradient| + "
                + "its noise; a noise above \(number(options.noiseLimit)) × max(|gradient|, |D|) fails its row, FD "
                + "cannot check it: \(noisy == 0 ? "none" : "\(noisy) elements")")
        let crossing = report.rows.reduce(0) { $0 + $1.crossingElements }
        let atKink = report.rows.reduce(0) { $0 + $1.atKinkElements }
        let kinks = report.kinkCount > 0 ? kinkSummary(report.kinks) : "none"
        lines.append(
            "kinks at the point checked: \(kinks), where the frozen piece is the backward's convention; \(atKink) "
                + "elements checked move one both ways; the steps of \(crossing) cross a kink (checked on the frozen "
                + "pieces)")
        return lines
    }

    /// `12 ReLU inputs exactly 0 (layers 2, 6), 3 max-pool ties (layer 3)`: the kinks by kind.
    static func kinkSummary(_ kinks: [GradientCheckKinks]) -> String {
        var kinds: [String] = []
        var byKind: [String: (count: Int, layers: [Int])] = [:]
        for entry in kinks {
            if byKind[entry.kind] == nil { kinds.append(entry.kind) }
            byKind[entry.kind, default: (0, [])].count += entry.count
            if entry.count > 0 { byKind[entry.kind, default: (0, [])].layers.append(entry.layer) }
        }
        return kinds.compactMap { kind -> String? in
            guard let (count, layers) = byKind[kind], count > 0 else { return nil }
            let what: String
            switch kind {
            case "ReLU", "LeakyReLU": what = "\(kind) inputs exactly 0"
            case "MaxPool2d": what = "max-pool ties"
            default: what = "\(kind) kinks"
            }
            let positions = layers.map(String.init).joined(separator: ", ")
            return "\(count) \(what) (\(layers.count == 1 ? "layer" : "layers") \(positions))"
        }.joined(separator: ", ")
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
