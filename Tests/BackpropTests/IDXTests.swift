import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// The fixtures come from Fixtures/make_idx.py (Python's struct and gzip, not Backprop's writer).

/// The pixel values in every tiny-images fixture: 0, 20, 40, ..., 220.
private let tinyPixels: [UInt8] = (0..<12).map { UInt8(20 * $0) }

@Test(arguments: ["tiny-images-idx3-ubyte", "tiny-images-idx3-ubyte.gz", "tiny-multimember-idx3-ubyte.gz"])
func idxReadsPythonWrittenImages(name: String) throws {
    let file = try IDX.read(path: fixturePath(name))
    #expect(file.dataType == .uint8)
    #expect(file.shape == [3, 2, 2])
    #expect(file.declaredShape == [3, 2, 2])
    #expect(file.payload == tinyPixels)
    let tensor = file.tensor()
    #expect(tensor.shape == [3, 2, 2])
    #expect(tensor.values == tinyPixels.map { Float($0) })
}

@Test func idxReadsLabelsAsIntegers() throws {
    let file = try IDX.read(path: fixturePath("tiny-labels-idx1-ubyte.gz"))
    #expect(file.shape == [3])
    #expect(try file.integers() == [9, 0, 3])
}

@Test func idxReadsOtherElementTypesBigEndian() throws {
    let int16 = try IDX.read(path: fixturePath("tiny-int16-idx2"))
    #expect(int16.dataType == .int16)
    #expect(int16.shape == [2, 3])
    #expect(try int16.integers() == [-300, -1, 0, 1, 300, 32767])
    #expect(int16.tensor().values == [-300, -1, 0, 1, 300, 32767])

    let float32 = try IDX.read(path: fixturePath("tiny-float32-idx1"))
    #expect(float32.tensor().values == [0.5, -1.25, 1e30])
    expectDataError(containing: ["tiny-float32-idx1", "float32 values where integers were expected"]) {
        try float32.integers()
    }

    let float64 = try IDX.read(path: fixturePath("tiny-float64-idx1"))
    #expect(float64.tensor().values == [Float(0.1), -2])
}

@Test(arguments: ["tiny-images-idx3-ubyte", "tiny-images-idx3-ubyte.gz"])
func idxReadsOnlyTheFirstItemsWhenAsked(name: String) throws {
    let file = try IDX.read(path: fixturePath(name), maxItems: 2)
    #expect(file.shape == [2, 2, 2])
    #expect(file.declaredShape == [3, 2, 2])
    #expect(file.payload == Array(tinyPixels[..<8]))
    // Asking for more items than the file holds reads them all.
    #expect(try IDX.read(path: fixturePath(name), maxItems: 10).shape == [3, 2, 2])
}

@Test(arguments: ["plain-idx3-ubyte", "compressed-idx3-ubyte.gz"])
func idxWriteThenReadRoundTrips(name: String) throws {
    try withTemporaryFolder { folder in
        let path = folder + "/" + name
        let bytes = (0..<(5 * 4 * 3)).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
        try IDX.write(bytes, shape: [5, 4, 3], to: path)
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(Array(raw.prefix(2)) == (name.hasSuffix(".gz") ? Gzip.magic : [0, 0]))
        let file = try IDX.read(path: path)
        #expect(file.shape == [5, 4, 3])
        #expect(file.payload == bytes)
    }
}

@Test func idxRejectsAMissingFile() {
    expectDataError(containing: ["/nonexistent/train-images-idx3-ubyte.gz", "no such file"]) {
        try IDX.read(path: "/nonexistent/train-images-idx3-ubyte.gz")
    }
}

@Test func idxRejectsAFolder() throws {
    try withTemporaryFolder { folder in
        expectDataError(containing: [folder, "is a folder, not a file"]) {
            try IDX.read(path: folder)
        }
    }
}

/// Writes `bytes` to a file called `name` in a new folder, then expects `IDX.read` to fail with
/// a message containing the path and each of `fragments`.
private func expectIDXError(
    _ bytes: [UInt8], name: String = "bad-idx", maxItems: Int? = nil, maxBytes: Int = Gzip.defaultMaxBytes,
    containing fragments: [String], sourceLocation: SourceLocation = #_sourceLocation
) throws {
    try withTemporaryFolder { folder in
        let path = folder + "/" + name
        try writeBytes(bytes, to: path)
        expectDataError(containing: [path] + fragments, sourceLocation: sourceLocation) {
            try IDX.read(path: path, maxItems: maxItems, maxBytes: maxBytes)
        }
    }
}

/// An IDX header: magic `00 00 <type> <rank>` and big-endian sizes.
private func header(type: UInt8 = 0x08, _ shape: [Int]) -> [UInt8] {
    var bytes: [UInt8] = [0, 0, type, UInt8(shape.count)]
    for size in shape {
        bytes += [UInt8(size >> 24 & 0xff), UInt8(size >> 16 & 0xff), UInt8(size >> 8 & 0xff), UInt8(size & 0xff)]
    }
    return bytes
}

@Test func idxRejectsAFileShorterThanTheMagic() throws {
    try expectIDXError([0, 0], containing: ["holds 2 bytes, shorter than the 4-byte IDX magic number"])
    try expectIDXError([], containing: ["holds 0 bytes"])
}

@Test func idxRejectsAWrongMagicNumber() throws {
    try expectIDXError(
        [0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 0],
        containing: ["not an IDX file", "magic number is 50 4b 03 04", "expected 00 00"])
}

@Test func idxRejectsAnUnknownElementType() throws {
    try expectIDXError(header(type: 0x07, [1]) + [0], containing: ["unsupported IDX element type 0x07"])
}

@Test func idxRejectsZeroDimensions() throws {
    try expectIDXError([0, 0, 8, 0], containing: ["declares 0 dimensions"])
}

@Test func idxRejectsAFileEndingInsideTheHeader() throws {
    try expectIDXError(
        Array(header([60000, 28, 28]).prefix(9)),
        containing: ["ends inside the IDX header", "3 dimensions need 16 header bytes", "holds 9 bytes"])
}

@Test func idxRejectsAHeaderClaimingMoreDataThanTheFileHolds() throws {
    // 60000 images of 28×28 claimed, 1000 bytes present: rejected before allocating 47 MB.
    let bytes = header([60000, 28, 28]) + [UInt8](repeating: 7, count: 1000)
    let claim = "header says 60000×28×28 uint8 values (47040000 bytes) but the file"
    try expectIDXError(bytes, containing: [claim + " holds 1000 bytes of data"])
    try expectIDXError(
        Gzip.compress(bytes), name: "bad-idx.gz", containing: [claim + " inflates to 1000 bytes of data"])
}

@Test func idxRejectsAFileHoldingMoreDataThanTheHeaderSays() throws {
    let bytes = header([3, 2, 2]) + tinyPixels + [99]
    try expectIDXError(bytes, containing: ["header says 3×2×2 uint8 values (12 bytes)", "holds 13 bytes of data"])
    try expectIDXError(Gzip.compress(bytes), name: "bad-idx.gz", containing: ["inflates to more than 12 bytes"])
    // Reading only the first items does not look past them.
    let firstTwo = try withTemporaryFolder { folder in
        let path = folder + "/extra-idx"
        try writeBytes(bytes, to: path)
        return try IDX.read(path: path, maxItems: 2)
    }
    #expect(firstTwo.payload == Array(tinyPixels[..<8]))
}

@Test func idxRejectsAShapeTooLargeToAddress() throws {
    try expectIDXError(
        header([0xffff_ffff, 0xffff_ffff, 0xffff_ffff]), containing: ["too large to address"])
}

@Test func idxRejectsMoreDataThanTheLimit() throws {
    try expectIDXError(
        header([3, 2, 2]) + tinyPixels, maxBytes: 10,
        containing: ["(12 bytes), more than the limit of 10 bytes"])
}

@Test func idxRejectsATruncatedGzipStream() throws {
    let compressed = try [UInt8](Data(contentsOf: fixtureURL("tiny-images-idx3-ubyte.gz")))
    try expectIDXError(Array(compressed.dropLast(6)), name: "cut.gz", containing: ["truncated gzip stream"])
    try expectIDXError(Gzip.magic, name: "magic-only.gz", containing: ["truncated gzip stream"])
}

@Test func idxRejectsCorruptGzipData() throws {
    var compressed = Gzip.compress(header([64]) + [UInt8](repeating: 1, count: 64))
    compressed[compressed.count - 6] ^= 0xff  // inside the CRC-32: the data no longer matches it
    try expectIDXError(compressed, name: "crc.gz", containing: ["corrupt gzip data: incorrect data check"])
    var header = Gzip.compress([1, 2, 3])
    header[2] = 9  // compression method 9 does not exist
    try expectIDXError(header, name: "method.gz", containing: ["corrupt gzip data: unknown compression method"])
}
