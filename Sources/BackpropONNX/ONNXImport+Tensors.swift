import BackpropCore
import BackpropData
import Foundation

// An ONNX TensorProto's values: float32 or float64 (read as Float) for weights, int32 or int64 for
// shapes and modes, stored little-endian in raw_data or in the typed repeated field, in the file.

/// Reads the values of `TensorProto`s (internal to ``ONNXImport``), in the model file or in the
/// external data files beside it.
final class TensorReader {
    /// The model file, for error messages; external data files are found in its folder.
    let path: String
    /// The external data files read so far, by their `location`.
    private var externalFiles: [String: [UInt8]] = [:]

    init(path: String) {
        self.path = path
    }

    /// The tensor's dimensions and element count, checked: no negative size, no overflow.
    ///
    /// - Throws: ``DataError`` naming the file, the tensor, its dimensions and the size found: a
    ///   negative one, or sizes whose product (or strides) does not fit an `Int`.
    private func shape(_ tensor: Onnx_TensorProto, name: String) throws -> (dims: [Int], count: Int) {
        var count = 1
        // The product with each 0 counted as 1: a tensor's strides, which must not overflow even
        // when a 0 makes it empty (as IDX.byteCount checks for the other readers).
        var strides = 1
        var dims: [Int] = []
        if let index = tensor.dims.firstIndex(where: { $0 < 0 }) {
            throw DataError(
                path: path,
                problem: "tensor \(quoted(name)) has the dimensions \(tensor.dims); expected sizes of 0 or more, found "
                    + "\(tensor.dims[index]) at dimension \(index)")
        }
        for size in tensor.dims {
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(clamping: size))
            let (stride, strideOverflow) = strides.multipliedReportingOverflow(by: Swift.max(Int(clamping: size), 1))
            guard !overflow, !strideOverflow else {
                throw DataError(
                    path: path,
                    problem: "tensor \(quoted(name)) has the dimensions \(tensor.dims), too large to address")
            }
            count = product
            strides = stride
            dims.append(Int(size))
        }
        if tensor.hasSegment {
            throw DataError(
                path: path, problem: "tensor \(quoted(name)) is stored in segments; Backprop reads whole tensors")
        }
        return (dims, count)
    }

    /// The tensor's dimensions, checked as its values are when read.
    ///
    /// - Throws: ``DataError`` naming the file, the tensor and the size found, for a negative
    ///   size or sizes too large to address.
    func dimensions(_ tensor: Onnx_TensorProto, name: String) throws -> [Int] {
        try shape(tensor, name: name).dims
    }

    /// The float32 or float64 tensor as a `Tensor` of its dimensions.
    func floats(_ tensor: Onnx_TensorProto, name: String) throws -> Tensor {
        let (dims, count) = try shape(tensor, name: name)
        let values: [Float]
        switch tensor.dataType {
        case 1:  // FLOAT
            values =
                try rawValues(tensor, name: name, count: count, width: 4) {
                    Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: $1, as: UInt32.self)))
                }
                ?? checked(tensor.floatData, name: name, count: count)
        case 11:  // DOUBLE
            values =
                try rawValues(tensor, name: name, count: count, width: 8) {
                    Float(
                        Double(bitPattern: UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: $1, as: UInt64.self))))
                } ?? checked(tensor.doubleData, name: name, count: count).map(Float.init)
        default:
            throw DataError(
                path: path,
                problem: "tensor \(quoted(name)) holds \(dataTypeName(tensor.dataType)) values; Backprop reads float32 "
                    + "and float64 weights")
        }
        return Tensor(shape: dims, values: values)
    }

    /// The int64, int32 or bool tensor's values, in order.
    func integers(_ tensor: Onnx_TensorProto, name: String) throws -> [Int] {
        let (_, count) = try shape(tensor, name: name)
        switch tensor.dataType {
        case 7:  // INT64
            return try rawValues(tensor, name: name, count: count, width: 8) {
                Int(Int64(littleEndian: $0.loadUnaligned(fromByteOffset: $1, as: Int64.self)))
            }
                ?? checked(tensor.int64Data, name: name, count: count).map { Int($0) }
        case 6, 9:  // INT32, BOOL (bools are stored in int32_data, or one byte each raw)
            let width = tensor.dataType == 9 ? 1 : 4
            return try rawValues(tensor, name: name, count: count, width: width) { bytes, offset in
                width == 1
                    ? Int(bytes[offset])
                    : Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
            } ?? checked(tensor.int32Data, name: name, count: count).map { Int($0) }
        default:
            throw DataError(
                path: path,
                problem: "tensor \(quoted(name)) holds \(dataTypeName(tensor.dataType)) values; expected int64 or int32"
            )
        }
    }

    /// The values in `raw_data`, each `width` bytes decoded by `decode` from the bytes and the
    /// value's byte offset (unaligned: raw_data need not be), or `nil` when the tensor keeps them in
    /// its typed field instead.
    private func rawValues<Value>(
        _ tensor: Onnx_TensorProto, name: String, count: Int, width: Int,
        decode: (UnsafeRawBufferPointer, Int) -> Value
    ) throws -> [Value]? {
        let raw: Data
        if tensor.dataLocation == .external {
            raw = try externalBytes(tensor, name: name)
        } else {
            guard tensor.hasRawData else { return nil }
            raw = tensor.rawData
        }
        guard raw.count / width == count, raw.count % width == 0 else {
            throw DataError(
                path: path,
                problem: "tensor \(quoted(name)) has \(raw.count) bytes of data for \(count) values of \(width) bytes")
        }
        return raw.withUnsafeBytes { bytes in (0..<count).map { decode(bytes, $0 * width) } }
    }

    /// The bytes of a tensor stored outside the model (`data_location` EXTERNAL): `length` bytes
    /// (default: to the end) from `offset` (default 0) of the file `location`, a path relative to
    /// the model's folder that stays inside it, as the ONNX specification says.
    private func externalBytes(_ tensor: Onnx_TensorProto, name: String) throws -> Data {
        let entries = Dictionary(
            tensor.externalData.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
        guard let location = entries["location"], !location.isEmpty else {
            throw DataError(
                path: path, problem: "tensor \(quoted(name)) is stored outside the file but names no location")
        }
        let parts = location.split(separator: "/", omittingEmptySubsequences: false)
        guard !location.hasPrefix("/"), !parts.contains("..") else {
            throw DataError(
                path: path,
                problem: "tensor \(quoted(name)) is stored in \(quoted(location)), outside the model's folder; "
                    + "ONNX external data lies beside the model")
        }
        let folder = (path as NSString).deletingLastPathComponent
        let file = folder.isEmpty ? location : folder + "/" + location
        // A symbolic link beside the model may point anywhere: where it leads must stay inside too.
        func resolved(_ path: String) -> String {
            URL(fileURLWithPath: path.isEmpty ? "." : path).standardizedFileURL.resolvingSymlinksInPath().path
        }
        let (realFolder, realFile) = (resolved(folder), resolved(file))
        guard realFile != realFolder else {
            // `.` or `sub/..`: the model's folder itself, not a file in it.
            throw DataError(
                path: path,
                problem: "tensor \(quoted(name)) is stored in \(quoted(location)), which is the model's folder, not "
                    + "a file in it")
        }
        guard realFile.hasPrefix(realFolder == "/" ? "/" : realFolder + "/") else {
            throw DataError(
                path: path,
                problem: "tensor \(quoted(name)) is stored in \(quoted(location)), a symbolic link to \(realFile), "
                    + "outside the model's folder; ONNX external data lies beside the model")
        }
        let bytes: [UInt8]
        if let read = externalFiles[location] {
            bytes = read
        } else {
            do {
                bytes = try Gzip.readFile(path: file, maxBytes: ONNXImport.maxExternalBytes)
            } catch let error as DataError {
                throw DataError(
                    path: error.path,
                    problem: "\(error.problem) (the external data of tensor \(quoted(name)) of \(path))")
            }
            externalFiles[location] = bytes
        }
        let offset = try entries["offset"].map { try number($0, "offset", name) } ?? 0
        guard offset <= bytes.count else {
            throw DataError(
                path: file,
                problem:
                    "holds \(bytes.count) bytes; tensor \(quoted(name)) of \(path) starts past them, at offset \(offset)"
            )
        }
        let length = try entries["length"].map { try number($0, "length", name) } ?? max(0, bytes.count - offset)
        guard offset <= bytes.count, length <= bytes.count - offset else {
            throw DataError(
                path: file,
                problem:
                    "holds \(bytes.count) bytes; tensor \(quoted(name)) of \(path) is \(length) bytes from offset \(offset)"
            )
        }
        return Data(bytes[offset..<(offset + length)])
    }

    /// An external data entry's `offset` or `length`: a non-negative integer.
    private func number(_ text: String, _ key: String, _ name: String) throws -> Int {
        guard let value = Int(text), value >= 0 else {
            throw DataError(path: path, problem: "tensor \(quoted(name)) has the external data \(key) \(quoted(text))")
        }
        return value
    }

    /// `values`, when it holds `count` of them.
    private func checked<Value>(_ values: [Value], name: String, count: Int) throws -> [Value] {
        guard values.count == count else {
            throw DataError(
                path: path, problem: "tensor \(quoted(name)) holds \(values.count) values for its \(count) elements")
        }
        return values
    }
}

/// ONNX's name of a `TensorProto.DataType` value (`float32`, `int64`, …).
func dataTypeName(_ type: Int32) -> String {
    let names: [Int32: String] = [
        0: "undefined", 1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
        8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64",
        15: "complex128", 16: "bfloat16",
    ]
    return names[type] ?? "type \(type)"
}
