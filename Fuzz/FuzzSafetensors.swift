// libFuzzer target for the safetensors reader (and the strict JSON parser under it), built by
// Scripts/fuzz.sh into the module BackpropData, together with its sources (so that it can call the
// internal `Safetensors.decode`), on top of a BackpropCore module built from Sources/BackpropCore
// (and the C kernels); not part of the Swift package.
//
// Each input is written to a file and read with `Safetensors.read`; every tensor is then looked
// up by name and by shape. A `DataError` is the expected answer to a malformed file; anything else
// (a crash, a trap, an error of another type, an out-of-bounds access) is a bug.

import BackpropCore
import Foundation

/// The file each input is written to (one per fuzzing process).
private let inputPath = FuzzInput.path(for: "safetensors")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzInput.write(data, size, to: inputPath)
    do {
        let file = try Safetensors.read(path: inputPath)
        for name in file.names {
            let tensor = try file.tensor(name)
            _ = try file.tensor(name, shape: tensor.shape)
            precondition(file.dtypes[name] != nil, "safetensors fuzz: no dtype for '\(name)'")
            precondition(
                tensor.count == tensor.shape.reduce(1, *), "safetensors fuzz: '\(name)' count \(tensor.count)")
        }
        // Writing what was read must give a file that reads back to the same shapes.
        let again = try decodeEncoded(Safetensors.encode(file.tensors, metadata: file.metadata))
        precondition(again.names == file.names, "safetensors fuzz: names changed in a round trip")
        precondition(again.metadata == file.metadata, "safetensors fuzz: metadata changed in a round trip")
    } catch is DataError {
        // The expected answer to a malformed file.
    } catch {
        fatalError("safetensors fuzz: unexpected error type \(type(of: error)): \(error)")
    }
    return 0
}

/// Reads back the bytes `Safetensors.encode` made, through the same checks as a file.
private func decodeEncoded(_ bytes: [UInt8]) throws -> SafetensorsFile {
    let headerLength = Int(bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
    return try Safetensors.decode(
        header: Array(bytes[8..<8 + headerLength]), data: bytes[(8 + headerLength)...], path: "round trip")
}
