import BackpropCore
import Foundation

/// Checking a safetensors header and converting the tensors it describes (internal).
extension Safetensors {
    /// One tensor's header entry, after validation: its bytes are `data[begin..<end]`.
    struct Entry {
        let name: String
        let dtype: String
        let shape: [Int]
        let begin: Int
        let end: Int
    }

    /// The JSON header, checked against the size of the data that follows it, before that data is
    /// read: the metadata and each tensor's entry.
    ///
    /// - Parameters:
    ///   - header: the `N` header bytes (JSON, possibly padded with spaces).
    ///   - dataSize: the bytes after the header; `data_offsets` count from its first byte.
    ///   - path: the file, for error messages.
    /// - Throws: ``DataError`` as described in ``read(path:)``.
    static func parseHeader(
        _ header: [UInt8], dataSize: Int, path: String
    ) throws -> (metadata: [String: String], entries: [Entry]) {
        let root: JSONValue
        do {
            root = try JSONParser.parse(header)
        } catch {
            throw DataError(
                path: path, problem: "header is not valid JSON: \(error.reason) (at byte \(error.offset) of the header)"
            )
        }
        guard case .object(let members) = root else {
            throw DataError(path: path, problem: "header is \(root.kind), not a JSON object")
        }

        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (key, value) in members {
            if key == "__metadata__" {
                metadata = try parseMetadata(value, path: path)
            } else {
                entries.append(try parseEntry(name: key, value, dataSize: dataSize, path: path))
            }
        }
        try checkOverlaps(entries, path: path)
        return (metadata, entries)
    }

    /// Every tensor of `entries` converted from `data` (everything after the header), as
    /// ``parseHeader(_:dataSize:path:)`` checked them against its size.
    static func decode(
        metadata: [String: String], entries: [Entry], data: [UInt8], path: String
    ) -> SafetensorsFile {
        var tensors: [String: Tensor] = [:]
        var dtypes: [String: String] = [:]
        data.withUnsafeBytes { all in
            for entry in entries {
                tensors[entry.name] = convert(entry, UnsafeRawBufferPointer(rebasing: all[entry.begin..<entry.end]))
                dtypes[entry.name] = entry.dtype
            }
        }
        return SafetensorsFile(path: path, tensors: tensors, dtypes: dtypes, metadata: metadata)
    }

    /// `__metadata__` must be an object whose values are all strings.
    private static func parseMetadata(_ value: JSONValue, path: String) throws -> [String: String] {
        guard case .object(let members) = value else {
            throw DataError(path: path, problem: "\"__metadata__\" is \(value.kind), expected an object of strings")
        }
        var metadata: [String: String] = [:]
        for (key, item) in members {
            guard case .string(let text) = item else {
                throw DataError(
                    path: path, problem: "\"__metadata__\" entry '\(key)' is \(item.kind), expected a string")
            }
            metadata[key] = text
        }
        return metadata
    }

    /// Checks one tensor's `dtype`, `shape` and `data_offsets` against each other and the data size.
    private static func parseEntry(name: String, _ value: JSONValue, dataSize: Int, path: String) throws -> Entry {
        func failure(_ problem: String) -> DataError {
            DataError(path: path, problem: "tensor '\(name)': \(problem)")
        }
        guard case .object(let fields) = value else {
            throw failure("the entry is \(value.kind), expected an object with dtype, shape and data_offsets")
        }
        func field(_ key: String) throws -> JSONValue {
            guard let found = fields.first(where: { $0.key == key }) else {
                throw failure("the entry has no \"\(key)\"")
            }
            return found.value
        }

        let dtypeValue = try field("dtype")
        guard case .string(let dtype) = dtypeValue else {
            throw failure("\"dtype\" is \(dtypeValue.kind), expected a string such as \"F32\"")
        }
        guard let elementSize = readableDTypes[dtype] else {
            let others = readableDTypes.keys.filter { $0 != "F32" }.sorted().joined(separator: ", ")
            throw DataError(
                path: path,
                problem: "unsupported dtype \(dtype) for tensor '\(name)' (Backprop reads F32, and converts \(others))")
        }

        let shapeValue = try field("shape")
        guard case .array(let dimensions) = shapeValue else {
            throw failure("\"shape\" is \(shapeValue.kind), expected an array of integers")
        }
        var shape: [Int] = []
        for dimension in dimensions {
            guard case .integer(let size) = dimension else {
                throw failure("\"shape\" \(shapeValue.brief) holds \(dimension.brief), which is not an integer")
            }
            shape.append(size)
        }
        if shape.contains(where: { $0 < 0 }) {
            throw failure("negative dimension in shape \(shape)")
        }

        let offsetsValue = try field("data_offsets")
        guard case .array(let offsets) = offsetsValue, offsets.count == 2,
            case .integer(let begin) = offsets[0], case .integer(let end) = offsets[1]
        else {
            throw failure("\"data_offsets\" is \(offsetsValue.brief), expected [begin, end] with two integers")
        }
        if begin < 0 || begin > end {
            throw failure("data_offsets [\(begin), \(end)] do not satisfy 0 ≤ begin ≤ end")
        }
        if end > dataSize {
            throw failure(
                "data_offsets [\(begin), \(end)] reach past the end of the data (\(dataSize) bytes after the header)")
        }
        guard let needed = IDX.byteCount(shape, elementSize: elementSize) else {
            throw failure("shape \(shape) is too large to address")
        }
        if end - begin != needed {
            throw failure(
                "shape \(shape) of \(dtype) needs \(needed) bytes but data_offsets [\(begin), \(end)] span \(end - begin)"
            )
        }
        return Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    /// Rejects two tensors whose byte ranges share a byte (empty tensors share none).
    private static func checkOverlaps(_ entries: [Entry], path: String) throws {
        let ranges = entries.filter { $0.begin < $0.end }.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for (previous, next) in zip(ranges, ranges.dropFirst()) where next.begin < previous.end {
            throw DataError(
                path: path,
                problem: "tensors '\(previous.name)' and '\(next.name)' overlap: data_offsets "
                    + "[\(previous.begin), \(previous.end)] and [\(next.begin), \(next.end)]")
        }
    }

    /// The entry's little-endian elements as a `Float` tensor.
    private static func convert(_ entry: Entry, _ source: UnsafeRawBufferPointer) -> Tensor {
        let tensor = Tensor(uninitializedShape: entry.shape)
        let destination = tensor.pointer
        let count = tensor.count
        func load<T: FixedWidthInteger>(_ i: Int, _ type: T.Type) -> T {
            T(littleEndian: source.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
        }
        switch entry.dtype {
        case "F32": for i in 0..<count { destination[i] = Float(bitPattern: load(i, UInt32.self)) }
        case "F64": for i in 0..<count { destination[i] = Float(Double(bitPattern: load(i, UInt64.self))) }
        case "F16": for i in 0..<count { destination[i] = floatFromHalf(load(i, UInt16.self)) }
        case "BF16": for i in 0..<count { destination[i] = Float(bitPattern: UInt32(load(i, UInt16.self)) << 16) }
        case "I64": for i in 0..<count { destination[i] = Float(load(i, Int64.self)) }
        case "I32": for i in 0..<count { destination[i] = Float(load(i, Int32.self)) }
        case "I16": for i in 0..<count { destination[i] = Float(load(i, Int16.self)) }
        case "I8": for i in 0..<count { destination[i] = Float(load(i, Int8.self)) }
        case "U64": for i in 0..<count { destination[i] = Float(load(i, UInt64.self)) }
        case "U32": for i in 0..<count { destination[i] = Float(load(i, UInt32.self)) }
        case "U16": for i in 0..<count { destination[i] = Float(load(i, UInt16.self)) }
        case "U8": for i in 0..<count { destination[i] = Float(load(i, UInt8.self)) }
        case "BOOL": for i in 0..<count { destination[i] = load(i, UInt8.self) != 0 ? 1 : 0 }
        default:
            preconditionFailure("Safetensors.convert: dtype \(entry.dtype) passed validation but has no conversion")
        }
        return tensor
    }

    /// Widens an IEEE 754 half-precision value (`F16`) to `Float`, exactly.
    static func floatFromHalf(_ bits: UInt16) -> Float {
        let sign: Float = bits & 0x8000 != 0 ? -1 : 1
        let exponent = Int(bits >> 10 & 0x1f)
        let mantissa = UInt32(bits & 0x3ff)
        switch exponent {
        case 0:  // zero or subnormal: mantissa × 2⁻²⁴
            return sign * Float(mantissa) * 0x1p-24
        case 31:  // infinity or NaN
            return Float(bitPattern: UInt32(bits & 0x8000) << 16 | 0x7f80_0000 | mantissa << 13)
        default:  // normal: rebias the exponent from 15 to 127
            return Float(bitPattern: UInt32(bits & 0x8000) << 16 | UInt32(exponent + 112) << 23 | mantissa << 13)
        }
    }
}
