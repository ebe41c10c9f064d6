import BackpropCore
import Foundation

/// The tensors and metadata of a safetensors file, read into memory.
///
/// Made by ``Safetensors/read(path:)``; every tensor has been converted to `Float`.
public struct SafetensorsFile {
    /// The file these tensors were read from (named in every error).
    public let path: String
    /// The tensors by name, converted to `Float` whatever their stored dtype.
    public let tensors: [String: Tensor]
    /// The dtype each tensor was stored as (`F32`, `F64`, `I64`, …), by name.
    public let dtypes: [String: String]
    /// The `__metadata__` entries (string to string); empty if the file has none.
    public let metadata: [String: String]

    /// The tensor names, sorted as the file stores them (by UTF-8 bytes).
    public var names: [String] { tensors.keys.sorted(by: Safetensors.byteOrder) }

    /// The tensor called `name`.
    ///
    /// - Throws: ``DataError`` naming the file and the missing name, and listing the names the
    ///   file does hold: `no tensor 'w3'; the file holds b1, b2, w1, w2`.
    public func tensor(_ name: String) throws -> Tensor {
        guard let tensor = tensors[name] else {
            let held = names.isEmpty ? "no tensors" : names.joined(separator: ", ")
            throw DataError(path: path, problem: "no tensor '\(name)'; the file holds \(held)")
        }
        return tensor
    }

    /// The tensor called `name`, checked to have the `expected` shape.
    ///
    /// - Throws: ``DataError`` naming the file if the tensor is missing (see ``tensor(_:)``) or has
    ///   another shape: `tensor 'w1' has shape [784, 50], expected [784, 64]`.
    public func tensor(_ name: String, shape expected: [Int]) throws -> Tensor {
        let tensor = try tensor(name)
        if tensor.shape != expected {
            throw DataError(path: path, problem: "tensor '\(name)' has shape \(tensor.shape), expected \(expected)")
        }
        return tensor
    }
}

/// Reads and writes the safetensors format (Hugging Face), the checkpoint format of Backprop.
///
/// Layout: an 8-byte little-endian `UInt64` header length `N`; `N` bytes of JSON header,
///
///     {"__metadata__": {"key": "value"},
///      "w1": {"dtype": "F32", "shape": [784, 50], "data_offsets": [0, 156800]}, …}
///
/// then the tensors' raw little-endian bytes. `data_offsets` count from the first byte after the
/// header. Backprop writes `F32` (and `I64` where asked), tensors in name order, the header padded
/// with spaces to a multiple of 8 bytes, as the Python library does.
public enum Safetensors {
    /// The largest header accepted, in bytes (100 MB), as the Python library limits it.
    static let maxHeaderBytes = 100_000_000

    /// The dtypes ``read(path:)`` converts to `Float`, with their sizes in bytes.
    static let readableDTypes: [String: Int] = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
        "I64": 8, "I32": 4, "I16": 2, "I8": 1,
        "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
    ]

    /// Reads a safetensors file and converts every tensor to `Float`.
    ///
    /// `F32` is copied exactly; `F64` rounds to nearest; `F16` and `BF16` widen exactly; integers
    /// convert exactly up to 2²⁴ in magnitude and round beyond; `BOOL` gives 0 or 1.
    ///
    /// - Parameter path: the file to read.
    /// - Returns: the tensors, their stored dtypes, and the `__metadata__`.
    /// - Throws: ``DataError`` naming the file (and the tensor, where one is at fault) when the file
    ///   is missing or shorter than 8 bytes; the header length exceeds the file or 100 MB; the
    ///   header is not a JSON object; an entry lacks `dtype`, `shape` or `data_offsets` or has them
    ///   of the wrong type; a dtype is not readable; a dimension is negative; `data_offsets` is not
    ///   `[begin, end]` with `begin ≤ end ≤` the data size; the byte length is not the shape's
    ///   element count times the dtype size; two tensors' bytes overlap; or `__metadata__` holds
    ///   anything but strings.
    public static func read(path: String) throws -> SafetensorsFile {
        let file = try FileInput(path: path)
        var lengthBytes = [UInt8](repeating: 0, count: 8)
        let got = try lengthBytes.withUnsafeMutableBytes { try file.read(into: $0.baseAddress!, count: 8) }
        if got < 8 {
            throw DataError(path: path, problem: "file is \(got) bytes, shorter than the 8-byte header length")
        }
        let headerLength = lengthBytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        if file.size < 8 {
            throw DataError(path: path, problem: "file grew from \(file.size) bytes while it was being read")
        }
        let following = UInt64(file.size - 8)
        if headerLength > following || headerLength > UInt64(maxHeaderBytes), let format = foreignFormat(lengthBytes) {
            throw DataError(path: path, problem: format)
        }
        if headerLength > following {
            throw DataError(
                path: path,
                problem: "header length says \(headerLength) bytes but only \(following) bytes follow the 8-byte length"
            )
        }
        if headerLength > UInt64(maxHeaderBytes) {
            throw DataError(
                path: path, problem: "header length \(headerLength) is larger than the limit of \(maxHeaderBytes) bytes"
            )
        }
        // The header first, checked against the size of what follows it, then only that: a file
        // that is not safetensors (or a sparse file of 20 GB) is refused before its bulk is read.
        let header = try readBytes(file, count: Int(headerLength), path: path)
        let dataSize = Int(following - headerLength)
        let (metadata, entries) = try parseHeader(header, dataSize: dataSize, path: path)
        Tensor.checkAllocatable(bytes: dataSize, for: "the contents of \(path)")
        let data = try readBytes(file, count: dataSize, path: path)
        return decode(metadata: metadata, entries: entries, data: data, path: path)
    }

    /// The next `count` bytes of `file`.
    /// - Throws: ``DataError`` if the file ends before them (it shrank while it was being read).
    private static func readBytes(_ file: FileInput, count: Int, path: String) throws -> [UInt8] {
        var read = 0
        let bytes = try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { read = try file.read(into: base, count: count) }
            initialized = read
        }
        if read < count {
            throw DataError(path: path, problem: "file shrank while it was being read")
        }
        return bytes
    }

    /// What a file that is not safetensors is, from its first 8 bytes, when they say so: a zip archive
    /// (`torch.save` since PyTorch 1.6, `.pt` and `.pth` files) or a pickle (older `torch.save`), and
    /// how to write the state_dict as safetensors instead. `nil` for anything else.
    static func foreignFormat(_ bytes: [UInt8]) -> String? {
        let howTo =
            "Backprop reads a state_dict as safetensors: in Python, `from safetensors.torch import save_file; "
            + "save_file(model.state_dict(), \"model.safetensors\")`"
        if bytes.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
            return "expected a safetensors file, found a zip archive (as torch.save writes a .pt or .pth file); "
                + howTo
        }
        // A pickle starts with PROTO (0x80) and its version, 2 to 5.
        if bytes.count >= 2, bytes[0] == 0x80, (2...5).contains(bytes[1]) {
            return "expected a safetensors file, found a Python pickle (as an older torch.save writes); " + howTo
        }
        return nil
    }

    /// Writes `tensors` as `F32` (or the dtype `dtypes` gives) and `metadata` to a safetensors
    /// file, atomically.
    ///
    /// The tensors are stored in name order (UTF-8 byte order, as the Python library sorts them),
    /// each as its row-major values, little-endian.
    ///
    /// - Parameters:
    ///   - tensors: the tensors by name; views (for example `w.t()`) are written as their values.
    ///   - metadata: free-form strings stored under `__metadata__` (omitted when empty).
    ///   - dtypes: the dtype of the tensors not stored as `F32`, by name: `I64` (PyTorch's
    ///     `long`, as a batch norm's `num_batches_tracked`), each value converted exactly.
    ///   - path: the destination; its folder must exist.
    /// - Throws: ``DataError`` naming `path` if it cannot be written (see ``writeAtomically(_:to:)-([UInt8],_)``).
    /// - Precondition: no tensor is called `__metadata__`; every dtype given is `F32` or `I64`, and
    ///   an `I64` tensor holds integers of magnitude below 2⁶³.
    public static func write(
        _ tensors: [String: Tensor], metadata: [String: String] = [:], dtypes: [String: String] = [:],
        to path: String
    ) throws {
        try writeAtomically(encode(tensors, metadata: metadata, dtypes: dtypes), to: path)
    }

    /// The dtypes ``encode(_:metadata:dtypes:)`` writes, with their sizes in bytes.
    static let writableDTypes: [String: Int] = ["F32": 4, "I64": 8]

    /// The bytes of a safetensors file holding `tensors` as `F32` (or the dtype `dtypes` gives:
    /// `I64`), and `metadata`.
    ///
    /// - Returns: header length, header (compact JSON padded with spaces to a multiple of 8), data.
    /// - Precondition: no tensor is called `__metadata__`; every dtype given is `F32` or `I64`, and
    ///   an `I64` tensor holds integers of magnitude below 2⁶³.
    public static func encode(
        _ tensors: [String: Tensor], metadata: [String: String] = [:], dtypes: [String: String] = [:]
    ) -> [UInt8] {
        precondition(tensors["__metadata__"] == nil, "Safetensors.encode: '__metadata__' cannot name a tensor")
        for (name, dtype) in dtypes {
            precondition(
                writableDTypes[dtype] != nil, "Safetensors.encode: cannot write dtype \(dtype) (tensor '\(name)')")
        }
        let names = tensors.keys.sorted(by: byteOrder)

        var entries: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted(by: byteOrder).map { key in
                JSONText.quoted(key) + ":" + JSONText.quoted(metadata[key]!)
            }
            entries.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
        }
        var offset = 0
        for name in names {
            let tensor = tensors[name]!
            let dtype = dtypes[name] ?? "F32"
            let end = offset + tensor.count * writableDTypes[dtype]!
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            entries.append(
                JSONText.quoted(name)
                    + ":{\"dtype\":\"\(dtype)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        var header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        header += [UInt8](repeating: UInt8(ascii: " "), count: (8 - header.count % 8) % 8)

        let total = 8 + header.count + offset
        Tensor.checkAllocatable(bytes: total, for: "a safetensors file")
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.storeBytes(of: UInt64(header.count).littleEndian, toByteOffset: 0, as: UInt64.self)
            header.withUnsafeBytes { source in
                UnsafeMutableRawBufferPointer(rebasing: raw[8..<8 + header.count]).copyMemory(from: source)
            }
            var position = 8 + header.count
            for name in names {
                let isInteger = dtypes[name] == "I64"
                tensors[name]!.withUnsafeBufferPointer { values in
                    for value in values {
                        if isInteger {
                            precondition(
                                value.rounded() == value && abs(value) < 0x1p63,
                                "Safetensors.encode: tensor '\(name)' holds \(value), not an I64 value")
                            raw.storeBytes(of: Int64(value).littleEndian, toByteOffset: position, as: Int64.self)
                            position += 8
                        } else {
                            raw.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: position, as: UInt32.self)
                            position += 4
                        }
                    }
                }
            }
            initialized = total
        }
    }

    /// Orders strings by their UTF-8 bytes, as Rust (and so the Python library) sorts names.
    static func byteOrder(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }
}
