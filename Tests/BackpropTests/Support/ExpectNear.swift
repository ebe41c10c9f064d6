import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// Expects `actual` to be near `expected`, element by element, as the lesson's `test_near`:
/// `|actual - expected| <= absoluteTolerance + relativeTolerance * |expected|`.
///
/// On failure the issue names the worst element, both values and the error (see ``NearReport``),
/// at the caller's line. Returns the report so a test can check more about it.
@discardableResult
func expectNear(
    _ actual: Tensor, _ expected: Tensor, relativeTolerance: Float = 1e-3, absoluteTolerance: Float = 1e-5,
    _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation
) -> NearReport {
    let report = near(actual, expected, relativeTolerance: relativeTolerance, absoluteTolerance: absoluteTolerance)
    let prefix = comment.map { "\($0): " } ?? ""
    #expect(report.isNear, "\(prefix)\(report)", sourceLocation: sourceLocation)
    return report
}

/// Expects `actual` to be near values given as Double (a finite-difference estimate, or values
/// a test writes out), reshaped to `actual`'s shape.
@discardableResult
func expectNear(
    _ actual: Tensor, _ expected: [Double], relativeTolerance: Float = 1e-3, absoluteTolerance: Float = 1e-5,
    _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation
) -> NearReport {
    let reference = Tensor(shape: actual.shape, values: expected.map { Float($0) })
    return expectNear(
        actual, reference, relativeTolerance: relativeTolerance, absoluteTolerance: absoluteTolerance, comment,
        sourceLocation: sourceLocation)
}
