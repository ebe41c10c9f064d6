import BackpropCore
import BackpropNetwork
import BackpropTraining
import Foundation

// The training plot of `backprop train --plot`, written with SVG.swift: coordinates with one
// decimal, every element on its own line.

/// A training run's history drawn as an SVG image: the training and validation loss per epoch on
/// the left, the validation accuracy per epoch on the right, each with labelled axes and ticks.
///
/// The result is one standalone SVG document of 960 × 420 user units, ending in a line break. It
/// is self-contained (no scripts, no external fonts) and opens in any browser. `title` is written
/// as text (escaped). Non-finite values are left out of the lines. An empty history gives empty
/// axes.
public func trainingPlotSVG(_ history: [EpochRecord], title: String) -> String {
    let width = 960
    let height = 420
    let epochs = history.map { Double($0.epoch) }
    let lossPanel = PlotPanel(
        frame: (x: 80, y: 60, width: 360, height: 260), title: "Loss", xLabel: "epoch", yLabel: "loss",
        series: [
            PlotSeries(
                name: "training", color: "#1f77b4", points: Array(zip(epochs, history.map { Double($0.trainLoss) }))),
            PlotSeries(
                name: "validation", color: "#ff7f0e", points: Array(zip(epochs, history.map { Double($0.validLoss) }))),
        ])
    let accuracyPanel = PlotPanel(
        frame: (x: 560, y: 60, width: 360, height: 260), title: "Validation accuracy", xLabel: "epoch",
        yLabel: "accuracy",
        series: [
            PlotSeries(
                name: "validation", color: "#2ca02c",
                points: Array(zip(epochs, history.map { Double($0.validAccuracy) })))
        ])
    let background = SVG.element("rect", ["width": "100%", "height": "100%", "fill": "white"])
    let heading = SVG.element(
        "text", ["x": "\(width / 2)", "y": "28", "text-anchor": "middle", "font-size": "16"], text: title)
    let svg = SVG.element(
        "svg",
        [
            "xmlns": "http://www.w3.org/2000/svg", "width": "\(width)", "height": "\(height)",
            "viewBox": "0 0 \(width) \(height)", "font-family": "Helvetica, Arial, sans-serif", "font-size": "12",
        ],
        children: [background, heading, lossPanel.svg(), accuracyPanel.svg()], layout: .onePerLine)
    return svg + "\n"
}

/// One line of a plot: `(x, y)` points joined in order, with circles at the points.
struct PlotSeries {
    let name: String
    let color: String
    let points: [(Double, Double)]
}

/// A chart with axes, ticks, labels, a title and a legend.
struct PlotPanel {
    let frame: (x: Double, y: Double, width: Double, height: Double)
    let title: String
    let xLabel: String
    let yLabel: String
    let series: [PlotSeries]

    /// The chart as one SVG group, an element per line.
    func svg() -> String {
        let finite = series.flatMap(\.points).filter { $0.0.isFinite && $0.1.isFinite }
        let xTicks = niceTicks(low: 1, high: Swift.max(finite.map(\.0).max() ?? 1, 2), integers: true)
        var yLow = finite.map(\.1).min() ?? 0
        var yHigh = finite.map(\.1).max() ?? 1
        if yHigh - yLow < 1e-9 { (yLow, yHigh) = (yLow - 0.5, yHigh + 0.5) }
        let yTicks = niceTicks(low: yLow, high: yHigh, integers: false)
        let (x0, x1) = (xTicks.first!, xTicks.last!)
        let (y0, y1) = (yTicks.first!, yTicks.last!)
        func px(_ x: Double) -> Double { frame.x + (x - x0) / (x1 - x0) * frame.width }
        func py(_ y: Double) -> Double { frame.y + frame.height - (y - y0) / (y1 - y0) * frame.height }

        var elements: [String] = []
        elements.append(text(frame.x + frame.width / 2, frame.y - 12, title, anchor: "middle", size: 14))
        // Grid and ticks.
        let yDigits = decimals(for: yTicks)
        for y in yTicks {
            elements.append(line(frame.x, py(y), frame.x + frame.width, py(y), color: "#e5e5e5"))
            elements.append(text(frame.x - 6, py(y) + 4, String(format: "%.\(yDigits)f", y), anchor: "end"))
        }
        for x in xTicks {
            elements.append(line(px(x), frame.y + frame.height, px(x), frame.y + frame.height + 5, color: "#333"))
            elements.append(text(px(x), frame.y + frame.height + 18, String(Int(x)), anchor: "middle"))
        }
        // Axes and their labels.
        elements.append(
            line(frame.x, frame.y + frame.height, frame.x + frame.width, frame.y + frame.height, color: "#333"))
        elements.append(line(frame.x, frame.y, frame.x, frame.y + frame.height, color: "#333"))
        elements.append(
            text(frame.x + frame.width / 2, frame.y + frame.height + 38, xLabel, anchor: "middle", size: 13))
        let labelX = frame.x - 58
        let labelY = frame.y + frame.height / 2
        elements.append(
            text(labelX, labelY, yLabel, anchor: "middle", size: 13, rotation: "rotate(-90 \(f(labelX)) \(f(labelY)))"))
        // Lines, points and legend.
        for (index, curve) in series.enumerated() {
            let points = curve.points.filter { $0.0.isFinite && $0.1.isFinite }
            if !points.isEmpty {
                let path = points.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
                elements.append(
                    SVG.element(
                        "polyline", ["fill": "none", "stroke": curve.color, "stroke-width": "2", "points": path]))
                for point in points {
                    elements.append(
                        SVG.element(
                            "circle", ["cx": f(px(point.0)), "cy": f(py(point.1)), "r": "3", "fill": curve.color]))
                }
            }
            // The legend sits under the axis label, one entry after another, clear of the lines.
            let legendY = frame.y + frame.height + 62
            let legendX = frame.x + Double(index) * 120
            elements.append(line(legendX, legendY - 4, legendX + 20, legendY - 4, color: curve.color, width: 2))
            elements.append(text(legendX + 26, legendY, curve.name, anchor: "start"))
        }
        return SVG.element("g", children: elements, layout: .onePerLine)
    }

    /// `<line>` from `(x1, y1)` to `(x2, y2)`.
    private func line(
        _ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, color: String, width: Double = 1
    ) -> String {
        SVG.element(
            "line",
            ["x1": f(x1), "y1": f(y1), "x2": f(x2), "y2": f(y2), "stroke": color, "stroke-width": f(width)])
    }

    /// `<text>` at `(x, y)`, turned by the `transform` `rotation` if given.
    private func text(
        _ x: Double, _ y: Double, _ content: String, anchor: String, size: Int = 12, rotation: String? = nil
    ) -> String {
        var attributes: SVG.Attributes = ["x": f(x), "y": f(y), "text-anchor": anchor, "font-size": "\(size)"]
        if let rotation { attributes.append("transform", rotation) }
        return SVG.element("text", attributes, text: content)
    }

    /// A coordinate, as the plot writes them: one decimal.
    private func f(_ value: Double) -> String { SVG.number(value, .tenths) }
}

/// Round tick values covering `low…high`, 1, 2 or 5 times a power of ten apart (about 5 ticks).
func niceTicks(low: Double, high: Double, integers: Bool) -> [Double] {
    let span = Swift.max(high - low, 1e-12)
    let rough = span / 5
    let magnitude = Foundation.pow(10, Foundation.floor(Foundation.log10(rough)))
    var step = [1.0, 2.0, 5.0, 10.0].map { $0 * magnitude }.first { $0 >= rough } ?? 10 * magnitude
    if integers { step = Swift.max(step.rounded(), 1) }
    let first = Foundation.floor(low / step) * step
    let last = Foundation.ceil(high / step) * step
    var ticks: [Double] = []
    var value = first
    while value <= last + step / 2 {
        ticks.append(value)
        value += step
    }
    return ticks
}

/// The digits after the point that tell the ticks apart.
private func decimals(for ticks: [Double]) -> Int {
    guard ticks.count > 1 else { return 2 }
    let step = ticks[1] - ticks[0]
    return Swift.max(0, Int(Foundation.ceil(-Foundation.log10(step) - 1e-9)))
}
