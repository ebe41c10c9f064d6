import BackpropCore
import Foundation

// The lesson's `test_near(a, b)`: are two tensors equal up to rounding? As PyTorch's
// `torch.allclose(a, b, rtol=1e-3, atol=1e-5)`, element by element:
//
//     |actual - expected| <= absoluteTolerance + relativeTolerance * |expected|
//
// with one difference: a report that says which element is furthest out, by how much, and how
// many others are out too, so that a failing check points at the culprit.

/// The result of comparing two tensors with ``near(_:_:relativeTolerance:absoluteTolerance:)``:
/// whether every element is within tolerance, and the worst element.
public struct NearReport: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The shape of the tensor under test.
    public let actualShape: [Int]
    /// The shape of the reference.
    public let expectedShape: [Int]
    /// The relative tolerance of the comparison.
    public let relativeTolerance: Float
    /// The absolute tolerance of the comparison.
    public let absoluteTolerance: Float
    /// How many elements were compared (0 when the shapes differ).
    public let count: Int
    /// How many elements are out of tolerance (a NaN on either side always is).
    public let mismatches: Int
    /// The worst element: the one furthest out of tolerance (or, when all are within it, the
    /// one closest to its limit). `nil` when the shapes differ or the tensors are empty.
    public let worst: Element?
    /// The largest `|actual - expected|` over all elements (NaN if an element is NaN, 0 if none).
    public let maxAbsoluteError: Double

    /// One element of the comparison.
    public struct Element: Sendable, Equatable, Codable {
        /// Its index, one entry per dimension (`[]` for a scalar).
        public let index: [Int]
        /// Its value in the tensor under test.
        public let actual: Float
        /// Its value in the reference.
        public let expected: Float
        /// `|actual - expected|`, computed in Double.
        public let absoluteError: Double
        /// `absoluteTolerance + relativeTolerance * |expected|`: the most `absoluteError` may be.
        public let allowedError: Double
    }

    /// Whether the shapes agree and every element is within tolerance.
    public let isNear: Bool

    /// One line: whether the tensors are near, and the worst element with both values and the
    /// error, e.g. `not near: 3 of 39200 elements out of tolerance; worst at [12, 7]: 0.51234
    /// against 0.51300, |difference| 6.6e-04 > 5.3e-04 (atol 1e-05 + rtol 1e-03 × |expected|)`.
    public var description: String {
        if actualShape != expectedShape {
            return "not near: shapes differ, \(actualShape) against expected \(expectedShape)"
        }
        let tolerance =
            "atol \(Near.format(Double(absoluteTolerance))) + rtol \(Near.format(Double(relativeTolerance))) × |expected|"
        guard let worst else { return "near: no elements to compare (shape \(actualShape))" }
        let values =
            "\(Near.format(Double(worst.actual))) against \(Near.format(Double(worst.expected))), "
            + "|difference| \(Near.format(worst.absoluteError))"
        if isNear {
            return "near: all \(count) elements within \(tolerance); closest to the limit at \(worst.index): \(values)"
        }
        return "not near: \(mismatches) of \(count) elements out of tolerance; worst at \(worst.index): \(values) "
            + "> \(Near.format(worst.allowedError)) (\(tolerance))"
    }
}

/// Compares two tensors element by element, as the lesson's `test_near` (PyTorch's
/// `torch.allclose`), and reports the worst element.
///
/// An element passes when `|actual - expected| <= absoluteTolerance + relativeTolerance *
/// |expected|`, computed in Double; `expected` is the reference. NaN never passes (not even against
/// NaN); infinities pass only against the same infinity.
///
/// - Parameters:
///   - actual: the tensor under test.
///   - expected: the reference, of the same shape (no broadcasting: a shape that differs is
///     reported, not an error, since a gradient of the wrong shape is a bug to show).
///   - relativeTolerance: the allowed error per unit of `|expected|` (`1e-3`, as `test_near`).
///   - absoluteTolerance: the allowed error near zero (`1e-5`, as `test_near`).
/// - Returns: the report; ``NearReport/isNear`` says whether every element passed.
/// - Precondition: both tolerances are non-negative.
public func near(
    _ actual: Tensor, _ expected: Tensor, relativeTolerance: Float = 1e-3, absoluteTolerance: Float = 1e-5
) -> NearReport {
    precondition(
        relativeTolerance >= 0 && absoluteTolerance >= 0,
        "near: tolerances must be non-negative, got relative \(relativeTolerance) and absolute \(absoluteTolerance)")
    guard actual.shape == expected.shape else {
        return NearReport(
            actualShape: actual.shape, expectedShape: expected.shape, relativeTolerance: relativeTolerance,
            absoluteTolerance: absoluteTolerance, count: 0, mismatches: 0, worst: nil, maxAbsoluteError: .nan,
            isNear: false)
    }
    let rtol = Double(relativeTolerance)
    let atol = Double(absoluteTolerance)
    var mismatches = 0
    var maxAbsoluteError = 0.0
    // The worst element is the one with the largest ratio of error to allowed error.
    var worstPosition = -1
    var worstRatio = -Double.infinity
    var worstValues: (actual: Float, expected: Float) = (0, 0)
    actual.withUnsafeBufferPointer { a in
        expected.withUnsafeBufferPointer { b in
            for i in 0..<a.count {
                let x = Double(a[i])
                let y = Double(b[i])
                // Equal values (infinities included) have no error; an infinity against anything
                // else has an infinite one, which no tolerance allows.
                let error = x == y ? 0 : Swift.abs(x - y)
                let allowed = y.isInfinite ? 0 : atol + rtol * Swift.abs(y)
                let ratio: Double
                if error.isNaN {
                    ratio = .infinity
                } else if allowed > 0 {
                    ratio = error / allowed
                } else {
                    ratio = error > 0 ? .infinity : 0
                }
                if !(error <= allowed) { mismatches += 1 }
                if error.isNaN || error > maxAbsoluteError { maxAbsoluteError = error }
                if ratio > worstRatio || worstPosition < 0 {
                    worstRatio = ratio
                    worstPosition = i
                    worstValues = (a[i], b[i])
                }
            }
        }
    }
    var worst: NearReport.Element?
    if worstPosition >= 0 {
        let index = Near.index(ofFlat: worstPosition, in: actual.shape)
        let (x, y) = worstValues
        let error = x == y ? 0 : Swift.abs(Double(x) - Double(y))
        worst = NearReport.Element(
            index: index, actual: x, expected: y, absoluteError: error,
            allowedError: y.isInfinite ? 0 : atol + rtol * Swift.abs(Double(y)))
    }
    return NearReport(
        actualShape: actual.shape, expectedShape: expected.shape, relativeTolerance: relativeTolerance,
        absoluteTolerance: absoluteTolerance, count: actual.count, mismatches: mismatches, worst: worst,
        maxAbsoluteError: maxAbsoluteError, isNear: mismatches == 0)
}

/// Helpers shared by the checks.
enum Near {
    /// The index, one entry per dimension, of the element at row-major position `flat`.
    static func index(ofFlat flat: Int, in shape: [Int]) -> [Int] {
        var index = [Int](repeating: 0, count: shape.count)
        var rest = flat
        for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] > 0 {
            index[axis] = rest % shape[axis]
            rest /= shape[axis]
        }
        return index
    }

    /// A number in a few significant digits: `0.51234`, `6.6e-04`.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        let magnitude = Swift.abs(value)
        if magnitude != 0 && (magnitude >= 1e5 || magnitude < 1e-3) {
            return String(format: "%.2e", value)
        }
        return String(format: "%.5g", value)
    }
}
