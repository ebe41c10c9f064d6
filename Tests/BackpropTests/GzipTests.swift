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

// MARK: - Members built by hand

// The tests below read gzip members written here byte by byte (RFC 1952, holding stored deflate
// blocks, RFC 1951 section 3.2.4), with a bit-by-bit CRC-32: a reference independent of zlib,
// whose content, CRC and cut points are known exactly. (Python's gzip module reads them as such.)

/// CRC-32 as gzip uses it (reflected polynomial 0xedb88320), one bit at a time.
private func referenceCRC32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xffff_ffff
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xedb8_8320 : crc >> 1 }
    }
    return ~crc
}

/// `value`'s `count` low bytes, least significant first.
private func littleEndian(_ value: UInt32, count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}

/// The size of a member's header (10 bytes) and its first stored block's header (5 bytes).
private let headerBytes = 15

/// One gzip member holding `bytes` uncompressed: header, stored blocks of up to 65535 bytes, trailer.
private func storedMember(_ bytes: [UInt8]) -> [UInt8] {
    // 1f 8b, method 8 (deflate), no flags, mtime 0, no extra flags, OS 255 (unknown).
    var member: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]
    var start = 0
    repeat {
        let end = min(start + 0xffff, bytes.count)
        let length = UInt32(end - start)
        // BFINAL (1 on the last block), BTYPE 00 (stored), then LEN and its one's complement NLEN.
        member += [end == bytes.count ? 1 : 0] + littleEndian(length, count: 2) + littleEndian(~length, count: 2)
        member += bytes[start..<end]
        start = end
    } while start < bytes.count
    return member + littleEndian(referenceCRC32(bytes), count: 4) + littleEndian(UInt32(bytes.count), count: 4)
}

/// `count` bytes of a pattern that repeats every 251 bytes.
private func pattern(_ count: Int) -> [UInt8] {
    (0..<count).map { UInt8($0 % 251) }
}

/// Writes `bytes` to `name` in a new folder and runs `body` with the file's path.
private func withFile(_ bytes: [UInt8], name: String = "data.gz", _ body: (String) throws -> Void) throws {
    try withTemporaryFolder { folder in
        let path = folder + "/" + name
        try writeBytes(bytes, to: path)
        try body(path)
    }
}

@Test func referenceCRC32MatchesTheStandardCheckValue() {
    // The check value of CRC-32/ISO-HDLC (gzip's CRC) for the ASCII digits 1 to 9.
    #expect(referenceCRC32(Array("123456789".utf8)) == 0xcbf4_3926)
    #expect(storedMember([]).count == headerBytes + 8)
}

@Test func gzipReadsConcatenatedMembersAsTheirConcatenation() throws {
    let first = Array("the first member, ".utf8)
    let second = pattern(3000)
    try withFile(storedMember(first) + storedMember(second)) { path in
        #expect(try Gzip.readFile(path: path) == first + second)
        // A byte at a time too, so that reads end inside each member and at the boundary.
        let reader = try DecompressingReader(path: path)
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while try reader.read(into: &byte, count: 1) == 1 { bytes.append(byte) }
        #expect(bytes == first + second)
        #expect(reader.produced == first.count + second.count)
    }
    // An empty member in the middle adds nothing; a zlib-compressed member reads as well.
    let third = Gzip.compress(pattern(500), level: 9)
    try withFile(storedMember(first) + storedMember([]) + storedMember(second) + third) { path in
        let bytes = try Gzip.readFile(path: path)
        #expect(bytes == first + second + pattern(500))
    }
}

@Test func gzipNamesTheFileForACorruptCRCOrATruncatedFile() throws {
    let content = pattern(100)
    let member = storedMember(content)
    var badCRC = member
    badCRC[member.count - 8] ^= 0x01
    try withFile(badCRC) { path in
        expectDataError(containing: [path + ": corrupt gzip data: incorrect data check"]) {
            try Gzip.readFile(path: path)
        }
    }
    // In the second member: the first member's bytes do not make the error go away.
    try withFile(storedMember(Array("fine".utf8)) + badCRC) { path in
        expectDataError(containing: [path + ": corrupt gzip data: incorrect data check"]) {
            try Gzip.readFile(path: path)
        }
    }
    var badLength = member
    badLength[member.count - 4] ^= 0x01
    try withFile(badLength) { path in
        expectDataError(containing: [path + ": corrupt gzip data: incorrect length check"]) {
            try Gzip.readFile(path: path)
        }
    }
    // Cut inside the header, inside the data (after 40 of its bytes) and inside the trailer.
    for (kept, output) in [(9, 0), (headerBytes + 40, 40), (member.count - 3, 100)] {
        try withFile(Array(member.prefix(kept))) { path in
            expectDataError(
                containing: [path + ": truncated gzip stream: the file ends after \(output) bytes of output"]
            ) {
                try Gzip.readFile(path: path)
            }
        }
    }
}

@Test func gzipNamesAFileCutWhereAReadEnds() throws {
    // Without its trailer, the data ends with the file: a read that takes exactly the last byte
    // (1 MiB reads of 2 MiB here; IDX asks for the exact payload) must not mistake that for the end.
    let content = pattern(2 << 20)
    try withFile(Array(storedMember(content).dropLast(8))) { path in
        expectDataError(containing: [path + ": truncated gzip stream: the file ends after 2097152 bytes of output"]) {
            try Gzip.readFile(path: path)
        }
    }
    let idx = IDX.encode(content, shape: [2048, 1024])
    for compressed in [storedMember(idx), Gzip.compress(idx, level: 1), Gzip.compress(idx, level: 9)] {
        try withFile(Array(compressed.dropLast(8)), name: "cut-idx.gz") { path in
            let message = "truncated gzip stream: the file ends after \(idx.count) bytes of output"
            expectDataError(containing: [path + ": " + message]) {
                try IDX.read(path: path)
            }
        }
    }
}

@Test func gzipStopsReadingAtTheCap() throws {
    let content = pattern(3000)
    let member = storedMember(content)
    try withFile(member) { path in
        let bytes = try Gzip.readFile(path: path, maxBytes: 3000)
        #expect(bytes == content)  // the cap itself is allowed
        expectDataError(containing: [path + ": gzip data inflates to more than the limit of 2999 bytes"]) {
            try Gzip.readFile(path: path, maxBytes: 2999)
        }
    }
    // 2 MiB with a wrong CRC, and without the trailer: reading to the end finds either. With a cap
    // of 1000 bytes the error is the cap's, so reading stopped before the end (zlib reads ahead at
    // most twice its 64 KiB buffer of output).
    let large = storedMember(pattern(2 << 20))
    var badCRC = large
    badCRC[large.count - 8] ^= 0x01
    let cut = Array(large.dropLast(8))
    for (bytes, atTheEnd) in [(badCRC, "incorrect data check"), (cut, "truncated gzip stream: the file ends after")] {
        try withFile(bytes) { path in
            expectDataError(containing: [path + ": gzip data inflates to more than the limit of 1000 bytes"]) {
                try Gzip.readFile(path: path, maxBytes: 1000)
            }
            expectDataError(containing: [path + ": ", atTheEnd]) {
                try Gzip.readFile(path: path)
            }
        }
    }
    // The same through the IDX reader, whose payload limit is checked against the header's claim.
    let idx = IDX.encode(content, shape: [30, 10, 10])
    let twoMembers = storedMember(Array(idx.prefix(1000))) + storedMember(Array(idx.dropFirst(1000)))
    try withFile(twoMembers, name: "x-idx.gz") { path in
        let file = try IDX.read(path: path)
        #expect(file.payload == content)
        expectDataError(containing: [path, "(3000 bytes), more than the limit of 2000 bytes"]) {
            try IDX.read(path: path, maxBytes: 2000)
        }
    }
}

@Test func gzipRejectsAnythingButAMemberAfterTheLastMember() throws {
    let member = storedMember(pattern(40))
    let expected = "where another member (1f 8b) or the end of the file was expected"
    // After one member, after two, a lone 1f, zero padding: zlib's gzread would ignore each.
    let cases: [(trailing: [UInt8], first: String)] = [
        ([0x42], "0x42"), ([0x1f], "0x1f"), ([0, 0, 0, 0], "0x0"), ([0x1f, 0x00], "0x1f"),
    ]
    for (trailing, first) in cases {
        for members in [member, member + storedMember([7])] {
            try withFile(members + trailing) { path in
                expectDataError(
                    containing: [path + ": corrupt gzip data: byte \(first) follows the gzip stream", expected]
                ) {
                    try Gzip.readFile(path: path)
                }
            }
        }
    }
    // Bytes that start as a member are read as one, and fail as one.
    try withFile(member + Array(member.prefix(12))) { path in
        expectDataError(containing: [path + ": truncated gzip stream: the file ends after 40 bytes of output"]) {
            try Gzip.readFile(path: path)
        }
    }
    try withFile(member + [0x1f, 0x8b, 9] + Array(member.dropFirst(3))) { path in
        expectDataError(containing: [path + ": corrupt gzip data: unknown compression method"]) {
            try Gzip.readFile(path: path)
        }
    }
}
