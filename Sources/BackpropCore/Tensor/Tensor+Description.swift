import Foundation

extension Tensor: CustomStringConvertible {
    /// A preview in PyTorch's style: `tensor([[ 0.1000, -2.0000], ...], shape: [50000, 784])`.
    ///
    /// At most three leading and three trailing entries are shown along each dimension, with
    /// `...` between, so that large tensors stay readable.
    public var description: String {
        "tensor(\(preview()), shape: \(shape))"
    }

    /// The values as nested brackets, eliding the middle of long dimensions.
    /// - Parameter edge: how many entries to keep at each end of a dimension.
    public func preview(edge: Int = 3) -> String {
        if shape.isEmpty { return Tensor.format(item()) }
        let source = contiguous()
        return source.previewDimension(0, base: 0, edge: edge)
    }

    private func previewDimension(_ axis: Int, base: Int, edge: Int) -> String {
        let size = shape[axis]
        let step = strides[axis]
        var shown: [Int?] = []
        if size <= 2 * edge {
            shown = Array(0..<size)
        } else {
            shown = Array(0..<edge) + [nil] + Array((size - edge)..<size)
        }
        let parts = shown.map { index -> String in
            guard let index else { return "..." }
            if axis == rank - 1 { return Tensor.format(storage.pointer[offset + base + index * step]) }
            return previewDimension(axis + 1, base: base + index * step, edge: edge)
        }
        return "[" + parts.joined(separator: ", ") + "]"
    }

    /// One value with four decimals, or in scientific notation when very large or small.
    package static func format(_ value: Float) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        let magnitude = Swift.abs(value)
        if magnitude != 0 && (magnitude >= 1e5 || magnitude < 1e-4) {
            return String(format: "%.4e", Double(value))
        }
        return String(format: "%.4f", Double(value))
    }
}
