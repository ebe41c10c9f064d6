import BackpropCore
import Foundation

/// The element types an IDX file can hold, named by the third byte of its magic number.
///
/// MNIST and Fashion-MNIST use only ``uint8`` (pixels 0…255, labels 0…9); the others are part of
/// the format (http://yann.lecun.com/exdb/mnist/) and cost little to read. Multi-byte elements
/// are stored big-endian.
public enum IDXDataType: UInt8, Sendable, CustomStringConvertible {
    /// Unsigned byte (`0x08`).
    case uint8 = 0x08
    /// Signed byte (`0x09`).
    case int8 = 0x09
    /// Signed 16-bit integer, big-endian (`0x0B`).
    case int16 = 0x0B
    /// Signed 32-bit integer, big-endian (`0x0C`).
    case int32 = 0x0C
    /// IEEE 754 single precision, big-endian (`0x0D`).
    case float32 = 0x0D
    /// IEEE 754 double precision, big-endian (`0x0E`).
    case float64 = 0x0E

    /// The size of one element in bytes.
    public var byteSize: Int {
        switch self {
        case .uint8, .int8: return 1
        case .int16: return 2
        case .int32, .float32: return 4
        case .float64: return 8
        }
    }

    /// The type's name as error messages print it (`uint8`, `float32`, …).
    public var description: String {
        switch self {
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .int16: return "int16"
        case .int32: return "int32"
        case .float32: return "float32"
        case .float64: return "float64"
        }
    }
}

/// The contents of an IDX file: element type, shape, and the raw big-endian payload.
///
/// ``IDX/read(path:maxItems:maxBytes:)`` makes these after checking that the header and the data
/// agree; ``tensor()`` and ``integers()`` convert the payload.
public struct IDXFile: Sendable {
    /// The file this was read from.
    public let path: String
    /// The element type the header declares.
    public let dataType: IDXDataType
    /// The shape of the data read: ``declaredShape`` with the first dimension cut to `maxItems`.
    public let shape: [Int]
    /// The shape the header declares (the whole file).
    public let declaredShape: [Int]
    /// The elements read, row-major, each `dataType.byteSize` bytes, big-endian.
    public let payload: [UInt8]

    /// The number of elements read (the product of ``shape``).
    public var count: Int { shape.reduce(1, *) }

    /// The elements as a `Float` tensor of shape ``shape``, values unchanged (pixels stay 0…255).
    ///
    /// Integers convert exactly up to 2²⁴; `float64` rounds to the nearest `Float`.
    public func tensor() -> Tensor {
        let result = Tensor(uninitializedShape: shape)
        let destination = result.pointer
        let total = count
        payload.withUnsafeBytes { source in
            switch dataType {
            case .uint8:
                for i in 0..<total { destination[i] = Float(source[i]) }
            case .int8:
                for i in 0..<total { destination[i] = Float(Int8(bitPattern: source[i])) }
            case .int16:
                for i in 0..<total {
                    let bits = UInt16(bigEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    destination[i] = Float(Int16(bitPattern: bits))
                }
            case .int32:
                for i in 0..<total {
                    let bits = UInt32(bigEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                    destination[i] = Float(Int32(bitPattern: bits))
                }
            case .float32:
                for i in 0..<total {
                    let bits = UInt32(bigEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                    destination[i] = Float(bitPattern: bits)
                }
            case .float64:
                for i in 0..<total {
                    let bits = UInt64(bigEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                    destination[i] = Float(Double(bitPattern: bits))
                }
            }
        }
        return result
    }

    /// The elements as integers, row-major (labels, for instance).
    ///
    /// - Throws: ``DataError`` naming the file if it holds `float32` or `float64` values.
    public func integers() throws -> [Int] {
        let total = count
        return try payload.withUnsafeBytes { source in
            switch dataType {
            case .uint8:
                return source.map { Int($0) }
            case .int8:
                return source.map { Int(Int8(bitPattern: $0)) }
            case .int16:
                return (0..<total).map { i in
                    let bits = UInt16(bigEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    return Int(Int16(bitPattern: bits))
                }
            case .int32:
                return (0..<total).map { i in
                    let bits = UInt32(bigEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                    return Int(Int32(bitPattern: bits))
                }
            case .float32, .float64:
                throw DataError(path: path, problem: "holds \(dataType) values where integers were expected")
            }
        }
    }
}

/// Reads and writes the IDX format of MNIST and Fashion-MNIST, plain or gzip-compressed.
///
/// Layout: a magic number `00 00 <type> <rank>`, then `rank` big-endian `UInt32` dimension sizes,
/// then the elements row-major. `train-images-idx3-ubyte` is `00 00 08 03`, `60000 28 28`, then
/// 47,040,000 pixel bytes.
public enum IDX {
    /// Reads an IDX file, inflating it first if it is gzip (decided by content, not by name).
    ///
    /// The header is read and checked before any payload buffer is allocated: a header claiming
    /// more data than the file holds is rejected without allocating the claimed size.
    ///
    /// - Parameters:
    ///   - path: the file, for example `train-images-idx3-ubyte.gz`.
    ///   - maxItems: read only the first `maxItems` entries of the first dimension (images, labels).
    ///     Reading stops there, so a gzip file is inflated only that far (and at most zlib's
    ///     read-ahead, about 128 KiB, beyond); the rest of the file is then not checked. `nil` reads
    ///     everything and checks that the size matches exactly.
    ///   - maxBytes: the largest payload accepted (``Gzip/defaultMaxBytes`` unless given).
    /// - Returns: the element type, the shapes read and declared, and the payload.
    /// - Throws: ``DataError`` naming `path` when the file is missing, shorter than its header, not
    ///   IDX (magic not `00 00`), of an unknown element type, declares 0 dimensions, or holds less
    ///   (or, when reading everything, more) data than the header declares.
    public static func read(
        path: String, maxItems: Int? = nil, maxBytes: Int = Gzip.defaultMaxBytes
    ) throws
        -> IDXFile
    {
        if let maxItems { precondition(maxItems >= 0, "IDX.read: negative maxItems \(maxItems)") }
        let reader = try DecompressingReader(path: path)
        let held = reader.isGzip ? "inflates to" : "holds"

        let magic = try reader.readBytes(upTo: 4)
        if magic.count < 4 {
            throw DataError(
                path: path, problem: "file \(held) \(magic.count) bytes, shorter than the 4-byte IDX magic number")
        }
        if magic[0] != 0 || magic[1] != 0 {
            let found = magic.map { hex($0) }.joined(separator: " ")
            throw DataError(
                path: path, problem: "not an IDX file: magic number is \(found), expected 00 00 <type> <rank>")
        }
        guard let dataType = IDXDataType(rawValue: magic[2]) else {
            throw DataError(
                path: path,
                problem: "unsupported IDX element type 0x\(hex(magic[2])); expected 08 (uint8), 09 (int8), "
                    + "0b (int16), 0c (int32), 0d (float32) or 0e (float64)")
        }
        let rank = Int(magic[3])
        if rank == 0 {
            throw DataError(path: path, problem: "IDX header declares 0 dimensions; expected at least 1")
        }

        let headerSize = 4 + 4 * rank
        let sizes = try reader.readBytes(upTo: 4 * rank)
        if sizes.count < 4 * rank {
            throw DataError(
                path: path,
                problem: "file ends inside the IDX header: \(rank) dimensions need \(headerSize) header bytes "
                    + "but the file \(held) \(4 + sizes.count) bytes")
        }
        let declaredShape = (0..<rank).map { axis in bigEndianSize(sizes, at: 4 * axis) }
        let shapeText = declaredShape.map(String.init).joined(separator: "×")
        guard let declaredBytes = byteCount(declaredShape, elementSize: dataType.byteSize) else {
            throw DataError(path: path, problem: "header declares shape \(shapeText), too large to address")
        }
        let claim = "header says \(shapeText) \(dataType) values (\(declaredBytes) bytes)"

        var shape = declaredShape
        if let maxItems { shape[0] = min(maxItems, declaredShape[0]) }
        let neededBytes = byteCount(shape, elementSize: dataType.byteSize)!  // at most declaredBytes
        let reading = maxItems == nil ? "" : "; reading the first \(shape[0]) needs \(neededBytes) bytes"
        if neededBytes > maxBytes {
            throw DataError(path: path, problem: "\(claim)\(reading), more than the limit of \(maxBytes) bytes")
        }

        // A plain file's size is known: check it before allocating anything.
        if !reader.isGzip {
            let available = reader.fileSize - headerSize
            if available < neededBytes || (maxItems == nil && available != declaredBytes) {
                throw DataError(path: path, problem: "\(claim)\(reading) but the file holds \(available) bytes of data")
            }
        }

        let payload = try reader.readBytes(upTo: neededBytes)
        if payload.count < neededBytes {
            throw DataError(
                path: path, problem: "\(claim)\(reading) but the file \(held) \(payload.count) bytes of data")
        }
        if maxItems == nil && reader.isGzip {
            let extra = try reader.readBytes(upTo: 1)
            if !extra.isEmpty {
                throw DataError(
                    path: path, problem: "\(claim) but the file inflates to more than \(declaredBytes) bytes of data")
            }
        }
        return IDXFile(path: path, dataType: dataType, shape: shape, declaredShape: declaredShape, payload: payload)
    }

    /// Encodes `bytes` as an IDX file of `uint8` elements with the given shape.
    ///
    /// - Returns: the magic `00 00 08 <rank>`, the big-endian sizes, then `bytes`.
    /// - Precondition: `shape` has 1 to 255 dimensions, each below 2³², whose product is
    ///   `bytes.count`.
    public static func encode(_ bytes: [UInt8], shape: [Int]) -> [UInt8] {
        precondition((1...255).contains(shape.count), "IDX.encode: shape \(shape) must have 1 to 255 dimensions")
        for size in shape {
            precondition(size >= 0 && size <= Int(UInt32.max), "IDX.encode: dimension \(size) in \(shape) out of range")
        }
        precondition(
            byteCount(shape, elementSize: 1) == bytes.count,
            "IDX.encode: shape \(shape) does not hold \(bytes.count) bytes")
        var encoded: [UInt8] = [0, 0, IDXDataType.uint8.rawValue, UInt8(shape.count)]
        encoded.reserveCapacity(4 + 4 * shape.count + bytes.count)
        for size in shape {
            for shift in [24, 16, 8, 0] {
                encoded.append(UInt8(truncatingIfNeeded: size >> shift))
            }
        }
        encoded += bytes
        return encoded
    }

    /// Writes `bytes` as an IDX file of `uint8` elements, gzip-compressed if asked, atomically.
    ///
    /// - Parameters:
    ///   - bytes: the elements, row-major.
    ///   - shape: the dimension sizes, outermost first (`[n, 28, 28]` for images, `[n]` for labels).
    ///   - path: the destination.
    ///   - gzip: whether to compress; `nil` (the default) compresses when `path` ends in `.gz`.
    /// - Throws: ``DataError`` naming `path` if it cannot be written (see ``writeAtomically(_:to:)-([UInt8],_)``).
    /// - Precondition: as for ``encode(_:shape:)``.
    public static func write(_ bytes: [UInt8], shape: [Int], to path: String, gzip: Bool? = nil) throws {
        let encoded = encode(bytes, shape: shape)
        let compress = gzip ?? path.hasSuffix(".gz")
        try writeAtomically(compress ? Gzip.compress(encoded) : encoded, to: path)
    }

    /// The number of bytes `shape` holds, or `nil` if it, or a tensor's strides for it, overflow `Int`.
    ///
    /// The strides multiply the dimensions with each 0 counted as 1, so `[0, 2³¹, 2³¹, 2³¹]` holds
    /// 0 bytes but cannot be a tensor's shape: it is refused too (found by fuzzing, see
    /// `Docs/Fuzzing.md`).
    static func byteCount(_ shape: [Int], elementSize: Int) -> Int? {
        var total = elementSize
        var strideProduct = elementSize
        for size in shape {
            let (product, overflow) = total.multipliedReportingOverflow(by: size)
            let (stride, strideOverflow) = strideProduct.multipliedReportingOverflow(by: Swift.max(size, 1))
            if overflow || strideOverflow { return nil }
            total = product
            strideProduct = stride
        }
        return total
    }

    /// The big-endian `UInt32` at `offset` in `bytes`, as an `Int`.
    private static func bigEndianSize(_ bytes: [UInt8], at offset: Int) -> Int {
        var size = 0
        for byte in bytes[offset..<offset + 4] {
            size = size << 8 | Int(byte)
        }
        return size
    }

    /// Two lower-case hex digits.
    private static func hex(_ byte: UInt8) -> String {
        byte < 16 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
    }
}
