import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// Expects every value of `actual` within `tolerance` of `expected` (absolute, plus `relative`
/// times the expected magnitude), reporting the first index that is not.
func expectAllNear(
    _ actual: [Float], _ expected: [Double], tolerance: Double = 1e-5, relative: Double = 0,
    _ what: String = "values", sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(
        actual.count == expected.count, "\(what): \(actual.count) values, expected \(expected.count)",
        sourceLocation: sourceLocation)
    for (index, (a, e)) in zip(actual, expected).enumerated() {
        let allowed = tolerance + relative * abs(e)
        if !(abs(Double(a) - e) <= allowed) {
            Issue.record("\(what)[\(index)] = \(a), expected \(e) ± \(allowed)", sourceLocation: sourceLocation)
            return
        }
    }
}

/// Expects every value of `actual` within `tolerance` of the same position in `expected`.
func expectAllNear(
    _ actual: Tensor, _ expected: Tensor, tolerance: Double = 1e-5, relative: Double = 0,
    _ what: String = "values", sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(
        actual.shape == expected.shape, "\(what): shape \(actual.shape), expected \(expected.shape)",
        sourceLocation: sourceLocation)
    expectAllNear(
        actual.values, expected.values.map(Double.init), tolerance: tolerance, relative: relative, what,
        sourceLocation: sourceLocation)
}

/// The real Fashion-MNIST folder, and whether its files are installed.
let fashionMNISTFolder = FashionMNIST.defaultDirectory
let fashionMNISTInstalled = FileManager.default.fileExists(
    atPath: fashionMNISTFolder + "/train-images-idx3-ubyte.gz")
let fashionMNISTMissingNote: Comment =
    "Fashion-MNIST is not installed at /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)"
