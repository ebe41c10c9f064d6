import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// MARK: - Round trips

@Test func safetensorsWriteThenReadRoundTripsBitForBit() throws {
    let special: [Float] = [
        0, -0.0, 1, -1, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 0.1,
    ]
    let tensors: [String: Tensor] = [
        "w1": Tensor(shape: [4, 3], values: (0..<12).map { Float($0) * 0.37 - 2 }),
        "b1": Tensor(shape: [3], values: [0.5, -0.25, 3e-8]),
        "special": Tensor(shape: [2, 5], values: special),
        "scalar": Tensor(7.5),
        "empty": Tensor(shape: [0, 3], values: []),
        "x.g": Tensor(shape: [1, 1, 2], values: [1e30, -1e-30]),
    ]
    let metadata = ["epoch": "3", "note": "quotes \" backslash \\ newline \n tab \t bell \u{07} ünïcode ✓"]
    try withTemporaryFolder { folder in
        let path = folder + "/model.safetensors"
        try Safetensors.write(tensors, metadata: metadata, to: path)
        let file = try Safetensors.read(path: path)
        #expect(file.metadata == metadata)
        #expect(file.names == ["b1", "empty", "scalar", "special", "w1", "x.g"])
        for (name, tensor) in tensors {
            let read = try file.tensor(name)
            #expect(read.shape == tensor.shape, "\(name)")
            #expect(read.values.map(\.bitPattern) == tensor.values.map(\.bitPattern), "\(name)")
            #expect(file.dtypes[name] == "F32")
        }
    }
}

@Test func safetensorsEncodesTheLayoutThePythonLibraryWrites() {
    let bytes = Safetensors.encode(
        ["b": Tensor([1, 2]), "a": Tensor(shape: [1, 1], values: [-2])], metadata: ["format": "pt"])
    let headerLength = Int(bytes[0]) | Int(bytes[1]) << 8  // small: the other 6 bytes are 0
    #expect(bytes[2..<8].allSatisfy { $0 == 0 })
    #expect(headerLength % 8 == 0)
    let header = String(decoding: bytes[8..<8 + headerLength], as: UTF8.self)
    let json =
        #"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"#
        + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
    #expect(header == json + String(repeating: " ", count: headerLength - json.utf8.count))
    // Data: -2, 1, 2 as little-endian F32.
    #expect(Array(bytes[(8 + headerLength)...]) == [0, 0, 0, 0xc0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40])
}

@Test func safetensorsReadsTheFilePythonWrote() throws {
    // Values documented in Fixtures/make_fixtures.py.
    let file = try Safetensors.read(path: fixturePath("python_written.safetensors"))
    #expect(file.metadata == ["format": "pt", "written_by": "make_fixtures.py"])
    #expect(file.names == ["bf16", "f16", "f32", "f64", "i64", "scalar", "u8"])
    #expect(
        file.dtypes == [
            "bf16": "BF16", "f16": "F16", "f32": "F32", "f64": "F64", "i64": "I64", "scalar": "F32", "u8": "U8",
        ])
    #expect(try file.tensor("bf16", shape: [2]).values == [1.5, -3])
    #expect(try file.tensor("f16", shape: [3]).values == [1, -2.5, 0x1p-24])
    #expect(try file.tensor("f32", shape: [2, 3]).values == [0, 0.25, 0.5, 0.75, 1, 1.25])
    #expect(try file.tensor("f64", shape: [3]).values == [0.5, -1.25, Float(0.1)])
    #expect(try file.tensor("i64", shape: [2, 2]).values == [-3, 0, 7, 123456])
    #expect(try file.tensor("scalar", shape: []).values == [42])
    #expect(try file.tensor("u8", shape: [4]).values == [0, 1, 128, 255])
}

@Test(arguments: [("seed_small.safetensors", 16, 10, 5), ("seed_wide.safetensors", 7, 3, 11)])
func safetensorsReadsTheSeedFixtures(name: String, n: Int, m: Int, nh: Int) throws {
    let file = try Safetensors.read(path: fixturePath(name))
    let shapes: [String: [Int]] = [
        "x": [n, m], "y": [n], "w1": [m, nh], "b1": [nh], "w2": [nh, 1], "b2": [1],
        "loss": [1], "out": [n, 1], "x.g": [n, m], "w1.g": [m, nh], "b1.g": [nh], "w2.g": [nh, 1], "b2.g": [1],
    ]
    #expect(Set(file.names) == Set(shapes.keys))
    for (tensorName, shape) in shapes {
        _ = try file.tensor(tensorName, shape: shape)
    }
    #expect(file.metadata["n"] == String(n))
}

@Test func safetensorsHalfPrecisionWidensExactly() {
    #expect(Safetensors.floatFromHalf(0x3c00) == 1)
    #expect(Safetensors.floatFromHalf(0xc100) == -2.5)
    #expect(Safetensors.floatFromHalf(0x0001) == 0x1p-24)  // smallest subnormal
    #expect(Safetensors.floatFromHalf(0x03ff) == 1023 * 0x1p-24)  // largest subnormal
    #expect(Safetensors.floatFromHalf(0x7bff) == 65504)  // largest finite
    #expect(Safetensors.floatFromHalf(0x8000).bitPattern == (-0.0 as Float).bitPattern)
    #expect(Safetensors.floatFromHalf(0x7c00) == .infinity)
    #expect(Safetensors.floatFromHalf(0xfc00) == -.infinity)
    #expect(Safetensors.floatFromHalf(0x7e00).isNaN)
}

// MARK: - Looking tensors up

@Test func safetensorsNamesAMissingTensorAndListsTheOthers() throws {
    let file = try Safetensors.read(path: fixturePath("seed_wide.safetensors"))
    expectDataError(
        containing: ["seed_wide.safetensors", "no tensor 'w3'", "the file holds b1, b1.g, b2, b2.g, loss, out, w1,"]
    ) {
        try file.tensor("w3")
    }
}

@Test func safetensorsNamesAShapeMismatch() throws {
    let file = try Safetensors.read(path: fixturePath("seed_wide.safetensors"))
    expectDataError(containing: ["seed_wide.safetensors: tensor 'w1' has shape [3, 11], expected [3, 64]"]) {
        try file.tensor("w1", shape: [3, 64])
    }
}

// MARK: - Malformed files

/// The bytes of a safetensors file with the given header text and data; `headerLength`
/// overrides the true length to make a lying file.
private func safetensorsBytes(_ header: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> [UInt8] {
    let text = Array(header.utf8)
    var bytes: [UInt8] = []
    withUnsafeBytes(of: (headerLength ?? UInt64(text.count)).littleEndian) { bytes += $0 }
    return bytes + text + data
}

/// Writes `bytes` to a file in a new folder and expects `Safetensors.read` to fail with a message
/// containing the path and each of `fragments`.
private func expectSafetensorsError(
    _ bytes: [UInt8], containing fragments: [String], sourceLocation: SourceLocation = #_sourceLocation
) throws {
    try withTemporaryFolder { folder in
        let path = folder + "/bad.safetensors"
        try writeBytes(bytes, to: path)
        expectDataError(containing: [path + ": "] + fragments, sourceLocation: sourceLocation) {
            try Safetensors.read(path: path)
        }
    }
}

/// A one-tensor header entry for `w`.
private func entry(_ fields: String) -> String {
    #"{"w":{"# + fields + "}}"
}

@Test func safetensorsRejectsAFileShorterThanTheHeaderLength() throws {
    try expectSafetensorsError([1, 2, 3], containing: ["file is 3 bytes, shorter than the 8-byte header length"])
}

@Test func safetensorsRejectsAHeaderLongerThanTheFile() throws {
    try expectSafetensorsError(
        safetensorsBytes("{}", headerLength: 1000),
        containing: ["header length says 1000 bytes but only 2 bytes follow"])
    try expectSafetensorsError(
        safetensorsBytes("{}", headerLength: .max), containing: ["header length says 18446744073709551615 bytes"])
}

/// The files `torch.save` writes (fixtures of make_torch_save_fixtures.py) are named for what they
/// are, with the way to write safetensors instead, not reported as a header length past the end.
@Test(arguments: [
    ("torch_save_state_dict.pt", "found a zip archive (as torch.save writes a .pt or .pth file)"),
    ("torch_save_legacy.pth", "found a Python pickle (as an older torch.save writes)"),
])
func safetensorsNamesTheFilesTorchSaveWrites(name: String, found: String) {
    expectDataError(containing: [name, "expected a safetensors file, " + found, "save_file(model.state_dict()"]) {
        try Safetensors.read(path: fixturePath(name))
    }
}

@Test func safetensorsRejectsAHeaderLargerThan100MB() throws {
    try withTemporaryFolder { folder in
        // A sparse file: 100 MB + 16 bytes on paper, a few bytes on disk.
        let path = folder + "/huge.safetensors"
        try writeBytes(safetensorsBytes("{}", headerLength: 100_000_008), to: path)
        #expect(truncate(path, 100_000_016) == 0)
        expectDataError(containing: [path, "header length 100000008 is larger than the limit of 100000000 bytes"]) {
            try Safetensors.read(path: path)
        }
    }
}

@Test func safetensorsRejectsAHeaderThatIsNotAJSONObject() throws {
    try expectSafetensorsError(
        safetensorsBytes(#"{"w": "#), containing: ["header is not valid JSON", "unexpected end"])
    try expectSafetensorsError(safetensorsBytes(#"{"a":{},}"#), containing: ["header is not valid JSON"])
    try expectSafetensorsError(safetensorsBytes(#"{"a":{},"a":{}}"#), containing: ["duplicate key \"a\""])
    try expectSafetensorsError(safetensorsBytes("[1, 2]"), containing: ["header is an array, not a JSON object"])
    // {"<0xff>":1}: a key that is not UTF-8.
    let notUTF8: [UInt8] = [8, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d, 0x20]
    try expectSafetensorsError(notUTF8, containing: ["header is not valid JSON: a string is not valid UTF-8"])
}

@Test func safetensorsRejectsEntriesMissingFields() throws {
    try expectSafetensorsError(
        safetensorsBytes(#"{"w": 3}"#), containing: ["tensor 'w': the entry is a number, expected an object"])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""shape":[1],"data_offsets":[0,4]"#), data: [0, 0, 0, 0]),
        containing: ["tensor 'w': the entry has no \"dtype\""])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","data_offsets":[0,4]"#), data: [0, 0, 0, 0]),
        containing: ["tensor 'w': the entry has no \"shape\""])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","shape":[1]"#), data: [0, 0, 0, 0]),
        containing: ["tensor 'w': the entry has no \"data_offsets\""])
}

@Test func safetensorsRejectsFieldsOfTheWrongType() throws {
    let data: [UInt8] = [0, 0, 0, 0]
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":32,"shape":[1],"data_offsets":[0,4]"#), data: data),
        containing: ["tensor 'w': \"dtype\" is a number, expected a string"])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","shape":"1","data_offsets":[0,4]"#), data: data),
        containing: ["tensor 'w': \"shape\" is a string, expected an array of integers"])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","shape":[1.0],"data_offsets":[0,4]"#), data: data),
        containing: ["tensor 'w': \"shape\" [1.0] holds 1.0, which is not an integer"])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","shape":[true],"data_offsets":[0,4]"#), data: data),
        containing: ["holds true, which is not an integer"])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","shape":[1],"data_offsets":[4]"#), data: data),
        containing: ["tensor 'w': \"data_offsets\" is [4], expected [begin, end]"])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","shape":[1],"data_offsets":{"begin":0}"#), data: data),
        containing: ["tensor 'w': \"data_offsets\" is {…}, expected [begin, end]"])
    try expectSafetensorsError(
        safetensorsBytes(#"{"__metadata__":{"epoch":3}}"#),
        containing: ["\"__metadata__\" entry 'epoch' is a number, expected a string"])
}

@Test func safetensorsRejectsAnUnsupportedDType() throws {
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]"#), data: [0]),
        containing: ["unsupported dtype F8_E4M3 for tensor 'w' (Backprop reads F32"])
}

@Test func safetensorsRejectsANegativeDimension() throws {
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","shape":[2,-3],"data_offsets":[0,4]"#), data: [0, 0, 0, 0]),
        containing: ["tensor 'w': negative dimension in shape [2, -3]"])
}

@Test func safetensorsRejectsBadDataOffsets() throws {
    let data = [UInt8](repeating: 0, count: 24)
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","shape":[0],"data_offsets":[8,4]"#), data: data),
        containing: ["tensor 'w': data_offsets [8, 4] do not satisfy 0 ≤ begin ≤ end"])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","shape":[100],"data_offsets":[0,400]"#), data: data),
        containing: ["tensor 'w': data_offsets [0, 400] reach past the end of the data (24 bytes after the header)"])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F32","shape":[2,3],"data_offsets":[0,20]"#), data: data),
        containing: ["tensor 'w': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] span 20"])
    try expectSafetensorsError(
        safetensorsBytes(entry(#""dtype":"F64","shape":[4611686018427387904,4],"data_offsets":[0,8]"#), data: data),
        containing: ["tensor 'w': shape [4611686018427387904, 4] is too large to address"])
}

@Test func safetensorsRejectsOverlappingTensors() throws {
    let header =
        #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"#
        + #""b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#
    try expectSafetensorsError(
        safetensorsBytes(header, data: [UInt8](repeating: 0, count: 24)),
        containing: ["tensors 'a' and 'b' overlap: data_offsets [0, 16] and [8, 24]"])
}

@Test func safetensorsAcceptsEmptyTensorsAnywhere() throws {
    let header =
        #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
        + #""e":{"dtype":"F32","shape":[0,5],"data_offsets":[2,2]}}"#
    try withTemporaryFolder { folder in
        let path = folder + "/empty.safetensors"
        try writeBytes(safetensorsBytes(header, data: [0, 0, 0x80, 0x3f]), to: path)
        let file = try Safetensors.read(path: path)
        #expect(try file.tensor("a").values == [1])
        #expect(try file.tensor("e").shape == [0, 5])
    }
}

@Test func safetensorsRejectsAMissingFile() {
    expectDataError(containing: ["/no/such/model.safetensors: no such file"]) {
        try Safetensors.read(path: "/no/such/model.safetensors")
    }
}

@Test func safetensorsWriteNamesAMissingFolder() {
    expectDataError(containing: ["/no/such/folder/model.safetensors", "does not exist"]) {
        try Safetensors.write(["w": Tensor([1])], to: "/no/such/folder/model.safetensors")
    }
}
