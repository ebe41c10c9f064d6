import BackpropCore
import BackpropNetwork
import Foundation

// A small picture of a tensor's values for the HTML walkthrough: the tensor is pooled (block means)
// down to at most `rows × columns` cells, each coloured on a diverging scale (blue negative, white
// zero, red positive) relative to the largest magnitude. Cells of one colour are drawn as one SVG
// path, so that a heat map of `w1 (784, 50)` costs a few kilobytes, not one element per cell.

/// A tensor's values pooled to a small grid and coloured, drawable as SVG.
struct HeatMap {
    /// The pooled values, row-major. // (rows, columns)
    let cells: [Double]
    /// The grid's rows.
    let rows: Int
    /// The grid's columns.
    let columns: Int
    /// The largest magnitude among the cells: the scale's end.
    let scale: Double

    /// How many colour steps each side of zero.
    static let levels = 8

    /// Pools `tensor` (a scalar, vector or matrix; higher ranks are seen as `(first, rest)`) to at
    /// most `maxRows × maxColumns` cells by block means.
    init(_ tensor: Tensor, maxRows: Int = 12, maxColumns: Int = 24) {
        let height = tensor.rank >= 2 ? tensor.shape[0] : 1
        let width = tensor.rank == 0 ? 1 : tensor.count / Swift.max(height, 1)
        let rows = Swift.max(1, Swift.min(height, maxRows))
        let columns = Swift.max(1, Swift.min(width, maxColumns))
        var cells = [Double](repeating: 0, count: rows * columns)
        tensor.withUnsafeBufferPointer { values in
            guard !values.isEmpty else { return }
            for row in 0..<rows {
                let rowStart = row * height / rows
                let rowEnd = Swift.max((row + 1) * height / rows, rowStart + 1)
                for column in 0..<columns {
                    let columnStart = column * width / columns
                    let columnEnd = Swift.max((column + 1) * width / columns, columnStart + 1)
                    var sum = 0.0
                    for r in rowStart..<rowEnd {
                        for c in columnStart..<columnEnd { sum += Double(values[r * width + c]) }
                    }
                    cells[row * columns + column] = sum / Double((rowEnd - rowStart) * (columnEnd - columnStart))
                }
            }
        }
        self.cells = cells
        self.rows = rows
        self.columns = columns
        let largest = cells.map { Swift.abs($0) }.filter(\.isFinite).max() ?? 0
        scale = largest
    }

    /// The colour step of a value: `-levels...levels`, 0 for zero (and for NaN).
    func level(_ value: Double) -> Int {
        guard scale > 0, value.isFinite else { return 0 }
        return Int((value / scale * Double(HeatMap.levels)).rounded())
    }

    /// The colour of a step: from blue (`-levels`) through near-white (0) to red (`levels`).
    static func color(level: Int) -> String {
        let color = rgb(fraction: Double(level) / Double(levels))
        return String(format: "#%02x%02x%02x", Int(color.red), Int(color.green), Int(color.blue))
    }

    /// The colour of a value on the diverging scale, given as a fraction of the scale's end: blue
    /// at -1, near-white at 0, red at 1 (beyond ±1, the end's colour).
    static func rgb(fraction: Double) -> (red: UInt8, green: UInt8, blue: UInt8) {
        let white = (247.0, 247.0, 247.0)
        let red = (178.0, 24.0, 43.0)
        let blue = (33.0, 102.0, 172.0)
        let end = fraction < 0 ? blue : red
        let t = fraction.isFinite ? Swift.min(Swift.abs(fraction), 1) : 0
        func mix(_ a: Double, _ b: Double) -> UInt8 { UInt8((a + (b - a) * t).rounded()) }
        return (mix(white.0, end.0), mix(white.1, end.1), mix(white.2, end.2))
    }

    /// SVG paths filling the rectangle at `(x, y)` of the given size, one path per colour.
    func svg(x: Double, y: Double, width: Double, height: Double) -> String {
        let cellWidth = width / Double(columns)
        let cellHeight = height / Double(rows)
        var pathsByLevel: [Int: String] = [:]
        for row in 0..<rows {
            for column in 0..<columns {
                let left = x + Double(column) * cellWidth
                let top = y + Double(row) * cellHeight
                pathsByLevel[level(cells[row * columns + column]), default: ""] +=
                    "M\(SVG.number(left)) \(SVG.number(top))h\(SVG.number(cellWidth))"
                    + "v\(SVG.number(cellHeight))h-\(SVG.number(cellWidth))z"
            }
        }
        return pathsByLevel.keys.sorted().map { level in
            SVG.element("path", ["fill": HeatMap.color(level: level), "d": pathsByLevel[level]!])
        }.joined()
    }
}
