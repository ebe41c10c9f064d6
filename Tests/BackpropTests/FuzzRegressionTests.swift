import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// What the fuzzers (Scripts/fuzz.sh, Docs/Fuzzing.md) found, kept as tests, and a replay of the
// committed corpus through the same checks the fuzz targets make, so that `swift test` sees a
// reader regress on any input the fuzzers once reached without building the fuzzers.

/// The repository's `Fuzz/` folder, found from this file's path.
private let fuzzFolder = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fuzz").path

/// The files in `Fuzz/<subfolder>`, sorted; empty if the folder is absent.
private func fuzzInputs(_ subfolder: String) -> [String] {
    let folder = fuzzFolder + "/" + subfolder
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
    return names.sorted().map { folder + "/" + $0 }
}

/// Reads `path` as the IDX fuzz target does: a `DataError` or a consistent file, nothing else.
private func replayIDX(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) {
    for maxItems in [nil, 2] as [Int?] {
        do {
            let file = try IDX.read(path: path, maxItems: maxItems)
            #expect(file.tensor().shape == file.shape, sourceLocation: sourceLocation)
            #expect(file.payload.count == file.count * file.dataType.byteSize, sourceLocation: sourceLocation)
        } catch is DataError {
        } catch {
            Issue.record("\(path): \(type(of: error)) is not a DataError: \(error)", sourceLocation: sourceLocation)
        }
    }
}

/// Reads `path` as the safetensors fuzz target does.
private func replaySafetensors(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let file = try Safetensors.read(path: path)
        for name in file.names {
            let tensor = try file.tensor(name)
            #expect(try file.tensor(name, shape: tensor.shape) === tensor, sourceLocation: sourceLocation)
        }
    } catch is DataError {
    } catch {
        Issue.record("\(path): \(type(of: error)) is not a DataError: \(error)", sourceLocation: sourceLocation)
    }
}

@Test func fuzzCorpusAndRegressionsReplayWithoutACrash() throws {
    let idx = fuzzInputs("corpus/idx") + fuzzInputs("regressions").filter { $0.contains("/idx-") }
    let safetensors =
        fuzzInputs("corpus/safetensors") + fuzzInputs("regressions").filter { $0.contains("/safetensors-") }
    try #require(idx.count >= 10 && safetensors.count >= 8, "the committed corpus is missing from \(fuzzFolder)")
    for path in idx { replayIDX(path) }
    for path in safetensors { replaySafetensors(path) }
}

// MARK: - Crashes found by fuzzing

/// Found by the IDX fuzzer: a shape with a 0 dimension holds 0 bytes, so its size passed, but the
/// strides of a tensor of that shape (each 0 counted as 1) overflowed `Int` and trapped.
/// Fuzz/regressions/idx-stride-overflow is the input libFuzzer wrote.
@Test func idxRejectsAnEmptyShapeWhoseStridesOverflow() throws {
    try withTemporaryFolder { folder in
        let path = folder + "/strides-idx"
        // float32, shape 0 × 815 × 2332557312 × 0 × 33554432: 0 elements.
        let header: [UInt8] = [
            0, 0, 0x0d, 5, 0, 0, 0, 0, 0, 0, 0x03, 0x2f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0,
        ]
        try writeBytes(header, to: path)
        expectDataError(containing: [path, "header declares shape 0×815×2332557312×0×33554432, too large to address"]) {
            try IDX.read(path: path)
        }
    }
    // An empty shape whose strides fit is still read, as an empty tensor.
    try withTemporaryFolder { folder in
        let path = folder + "/empty-idx"
        try writeBytes([0, 0, 0x08, 2, 0, 0, 0, 0, 0, 0, 0, 28], to: path)
        let file = try IDX.read(path: path)
        #expect(file.shape == [0, 28])
        #expect(file.tensor().count == 0)
    }
}

/// The same trap reached through a safetensors header: an empty tensor with huge dimensions.
@Test func safetensorsRejectsAnEmptyShapeWhoseStridesOverflow() throws {
    let header = #"{"w":{"dtype":"F32","shape":[0,2147483648,2147483648,2147483648],"data_offsets":[0,0]}}"#
    var bytes: [UInt8] = []
    withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes += $0 }
    bytes += Array(header.utf8)
    try withTemporaryFolder { folder in
        let path = folder + "/strides.safetensors"
        try writeBytes(bytes, to: path)
        expectDataError(
            containing: [path, "tensor 'w': shape [0, 2147483648, 2147483648, 2147483648] is too large to address"]
        ) {
            try Safetensors.read(path: path)
        }
    }
}
