// libFuzzer target for the IDX reader (and the gzip inflation under it), built by Scripts/fuzz.sh
// into the module BackpropData, together with its sources, on top of a BackpropCore module built
// from Sources/BackpropCore (and the C kernels); not part of the Swift package.
//
// Each input is written to a file and read with `IDX.read`, whole and in part, then converted.
// A `DataError` is the expected answer to a malformed file; anything else (a crash, a trap, an
// error of another type, a leak or an out-of-bounds access that AddressSanitizer sees) is a bug.

import BackpropCore
import Foundation

/// The file each input is written to (one per fuzzing process).
private let inputPath = FuzzInput.path(for: "idx")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDX(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzInput.write(data, size, to: inputPath)
    // The default payload limit (2 GiB), so that a header claiming up to 2 GiB passes the limit
    // and reaches the size checks. Scripts/fuzz.sh runs with -malloc_limit_mb=64: a reader that
    // allocated what a header claims, before seeing the data, would be reported. (Inputs are at
    // most 4 KiB, and deflate inflates 4 KiB to at most about 4 MiB, so no honest read comes near.)
    for maxItems in [nil, 2] as [Int?] {
        do {
            let file = try IDX.read(path: inputPath, maxItems: maxItems)
            let tensor = file.tensor()
            precondition(tensor.shape == file.shape, "IDX fuzz: tensor shape \(tensor.shape) != \(file.shape)")
            precondition(
                file.payload.count == file.count * file.dataType.byteSize,
                "IDX fuzz: payload of \(file.payload.count) bytes for shape \(file.shape) of \(file.dataType)")
            if let integers = try? file.integers() {
                precondition(integers.count == file.count, "IDX fuzz: \(integers.count) integers for \(file.count)")
            }
        } catch is DataError {
            // The expected answer to a malformed file.
        } catch {
            fatalError("IDX fuzz: unexpected error type \(type(of: error)): \(error)")
        }
    }
    return 0
}
