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

/// A data set in the Fashion-MNIST layout in `folder`: 600 training and 60 test images of 4×4
/// random pixels with random labels, drawn from `seed` (the model learns little; only
/// reproducibility matters).
func writeRandomDataset(in folder: String, seed: UInt64) throws {
    var generator = RandomGenerator(seed: seed)
    func bytes(_ count: Int, below limit: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(generator.nextIndex(below: limit)) }
    }
    try IDX.write(bytes(600 * 16, below: 256), shape: [600, 4, 4], to: folder + "/train-images-idx3-ubyte")
    try IDX.write(bytes(600, below: 10), shape: [600], to: folder + "/train-labels-idx1-ubyte")
    try IDX.write(bytes(60 * 16, below: 256), shape: [60, 4, 4], to: folder + "/t10k-images-idx3-ubyte")
    try IDX.write(bytes(60, below: 10), shape: [60], to: folder + "/t10k-labels-idx1-ubyte")
}

/// Reads the safetensors file at `path`, lets `edit` change its metadata and tensors, and writes
/// it back in place (tests that damage a checkpoint on purpose).
func editSafetensors(
    at path: String, _ edit: (inout [String: String], inout [String: Tensor]) -> Void
) throws {
    let file = try Safetensors.read(path: path)
    var metadata = file.metadata
    var tensors = file.tensors
    edit(&metadata, &tensors)
    try Safetensors.write(tensors, metadata: metadata, to: path)
}
