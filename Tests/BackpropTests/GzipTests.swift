import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

@Test func gzipReadsPlainFilesAsTheyAre() throws {
    let bytes = try Gzip.readFile(path: fixturePath("tiny-images-idx3-ubyte"))
    #expect(bytes.count == 28)
    #expect(Array(bytes.prefix(4)) == [0, 0, 8, 3])
}

@Test func gzipInflatesSingleAndMultiMemberFiles() throws {
    let plain = try Gzip.readFile(path: fixturePath("tiny-images-idx3-ubyte"))
    #expect(try Gzip.readFile(path: fixturePath("tiny-images-idx3-ubyte.gz")) == plain)
    #expect(try Gzip.readFile(path: fixturePath("tiny-multimember-idx3-ubyte.gz")) == plain)
}

@Test func gzipCompressThenReadRoundTripsLargeData() throws {
    // Larger than the reader's input and output chunks, so refills and growth are exercised.
    // 1 MiB of xorshift noise (incompressible: the gzip file is larger than one input chunk), then
    // 2 MiB of a short repeating pattern (more output than one output chunk).
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    var bytes = [UInt8](repeating: 0, count: 3 << 20)
    bytes.withUnsafeMutableBufferPointer { buffer in
        for i in 0..<(1 << 20) {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            buffer[i] = UInt8(truncatingIfNeeded: state)
        }
        for i in (1 << 20)..<buffer.count { buffer[i] = UInt8(i % 13) }
    }
    try withTemporaryFolder { folder in
        let path = folder + "/big.gz"
        try writeAtomically(Gzip.compress(bytes), to: path)
        #expect(try Gzip.readFile(path: path) == bytes)
    }
}

@Test func gzipStopsABombAtTheLimit() throws {
    try withTemporaryFolder { folder in
        let path = folder + "/bomb.gz"
        try writeAtomically(Gzip.compress([UInt8](repeating: 0, count: 1 << 20), level: 9), to: path)
        expectDataError(containing: [path, "inflates to more than the limit of 1000 bytes"]) {
            try Gzip.readFile(path: path, maxBytes: 1000)
        }
        let plain = folder + "/plain"
        try writeBytes([UInt8](repeating: 0, count: 2000), to: plain)
        expectDataError(containing: [plain, "holds 2000 bytes, more than the limit of 1000 bytes"]) {
            try Gzip.readFile(path: plain, maxBytes: 1000)
        }
    }
}

@Test func gzipRejectsDataAfterTheLastMember() throws {
    try withTemporaryFolder { folder in
        let path = folder + "/trailing.gz"
        try writeBytes(Gzip.compress([1, 2, 3]) + [0x42], to: path)
        expectDataError(containing: [path, "corrupt gzip data: byte 0x42 follows the gzip stream"]) {
            try Gzip.readFile(path: path)
        }
    }
}

@Test func gzipRejectsAMissingFile() {
    expectDataError(containing: ["/no/such/file.gz: no such file"]) {
        try Gzip.readFile(path: "/no/such/file.gz")
    }
}
