import BackpropCore
import CZlib
import Foundation

/// Reads files that may be gzip-compressed, and compresses bytes to gzip, through zlib.
///
/// MNIST and Fashion-MNIST ship as `.gz` files; the readers here accept both the compressed and
/// the plain file, deciding by the gzip magic bytes `1f 8b` rather than by the file name.
public enum Gzip {
    /// The two bytes every gzip member starts with: `1f 8b`.
    public static let magic: [UInt8] = [0x1f, 0x8b]

    /// The default cap on a file's decompressed size: 2 GiB.
    ///
    /// A gzip "bomb" of a few kilobytes can inflate to many gigabytes; the cap stops reading there.
    public static let defaultMaxBytes = 2 << 30

    /// Reads the whole file at `path`, inflating it if it starts with the gzip magic `1f 8b`.
    ///
    /// Multi-member gzip files (several gzip streams one after another, as `cat a.gz b.gz` makes)
    /// inflate to the concatenation of their members. A file without the magic is returned as is.
    ///
    /// - Parameters:
    ///   - path: the file to read.
    ///   - maxBytes: the largest decompressed size accepted (``defaultMaxBytes`` unless given).
    /// - Returns: the file's bytes, decompressed.
    /// - Throws: ``DataError`` naming `path`: `no such file`, `truncated gzip stream`,
    ///   `corrupt gzip data: <zlib's message>`, data after the last gzip member that is not another
    ///   member, or a content larger than `maxBytes`.
    public static func readFile(path: String, maxBytes: Int = defaultMaxBytes) throws -> [UInt8] {
        precondition(maxBytes >= 0, "Gzip.readFile: negative maxBytes \(maxBytes)")
        let reader = try DecompressingReader(path: path)
        if !reader.isGzip && reader.fileSize > maxBytes {
            throw DataError(
                path: path,
                problem: "file holds \(reader.fileSize) bytes, more than the limit of \(maxBytes) bytes")
        }
        let (limit, overflow) = maxBytes.addingReportingOverflow(1)
        let bytes = try reader.readBytes(upTo: overflow ? Int.max : limit)
        if bytes.count > maxBytes {
            throw DataError(
                path: path,
                problem: "gzip data inflates to more than the limit of \(maxBytes) bytes")
        }
        return bytes
    }

    /// Compresses `bytes` into a single gzip member (what `gzip` writes), for writing `.gz` files.
    ///
    /// - Parameters:
    ///   - bytes: the data to compress.
    ///   - level: zlib's compression level, 0 (store) to 9 (smallest); 6 is gzip's default.
    /// - Returns: the gzip member: a 10-byte header, the deflate stream, then CRC-32 and size.
    /// - Precondition: `level` is in 0...9 and `bytes` is smaller than 4 GiB.
    public static func compress(_ bytes: [UInt8], level: Int = 6) -> [UInt8] {
        precondition((0...9).contains(level), "Gzip.compress: level \(level) is not in 0...9")
        precondition(bytes.count < Int(UInt32.max), "Gzip.compress: \(bytes.count) bytes is 4 GiB or more")
        // zlib keeps a pointer back to the stream, so the stream needs an address that does not move.
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer {
            deflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
        }
        // windowBits 15 + 16: a 32 KiB window, wrapped as gzip rather than zlib.
        let status = deflateInit2_(
            stream, Int32(level), Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
            zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        precondition(status == Z_OK, "Gzip.compress: deflateInit2 failed with status \(status)")
        let bound = Int(deflateBound(stream, uLong(bytes.count)))
        return bytes.withUnsafeBufferPointer { source in
            [UInt8](unsafeUninitializedCapacity: bound) { output, written in
                stream.pointee.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
                stream.pointee.avail_in = uInt(source.count)
                stream.pointee.next_out = output.baseAddress
                stream.pointee.avail_out = uInt(bound)
                let result = deflate(stream, Z_FINISH)
                precondition(result == Z_STREAM_END, "Gzip.compress: deflate returned \(result)")
                written = bound - Int(stream.pointee.avail_out)
            }
        }
    }
}

/// Reads a file's bytes in order, inflating them on the way if the file is gzip (internal).
///
/// The readers (`IDX`, `Gzip.readFile`) pull exactly the bytes they need: an IDX reader reads the
/// header first, checks the sizes it claims, and only then reads the payload, so a header that
/// lies is caught before a large buffer is allocated, and reading only the first rows of a file
/// stops inflating early.
final class DecompressingReader {
    /// The file's path, for error messages.
    var path: String { file.path }
    /// Whether the file starts with the gzip magic `1f 8b`.
    let isGzip: Bool
    /// The size of the file on disk (compressed, if it is gzip).
    var fileSize: Int { file.size }
    /// How many (decompressed) bytes ``read(into:count:)`` has returned so far.
    private(set) var produced = 0

    private let file: FileInput
    /// Compressed input not yet consumed: `input[inputStart..<inputEnd]` (plain files use it too,
    /// for the bytes read while looking for the magic).
    private let input: UnsafeMutablePointer<UInt8>
    private static let inputCapacity = 1 << 18
    private var inputStart = 0
    private var inputEnd = 0
    private var fileAtEnd = false
    /// The zlib stream (gzip files only), at an address that does not move.
    private let stream: UnsafeMutablePointer<z_stream>?
    /// Whether the last gzip member has ended and nothing follows it.
    private var streamEnded = false

    /// Opens `path` and looks at its first bytes to decide whether it is gzip.
    ///
    /// - Throws: ``DataError`` if the file cannot be opened or zlib cannot start.
    init(path: String) throws {
        file = try FileInput(path: path)
        input = UnsafeMutablePointer<UInt8>.allocate(capacity: DecompressingReader.inputCapacity)
        inputEnd = try file.read(into: input, count: DecompressingReader.inputCapacity)
        fileAtEnd = inputEnd < DecompressingReader.inputCapacity
        isGzip = inputEnd >= 2 && input[0] == Gzip.magic[0] && input[1] == Gzip.magic[1]
        if isGzip {
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            stream.pointee.next_in = input
            stream.pointee.avail_in = uInt(inputEnd)
            // windowBits 15 + 32: a 32 KiB window, and detect the gzip (or zlib) wrapper.
            let status = inflateInit2_(stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
            if status != Z_OK {
                stream.deinitialize(count: 1)
                stream.deallocate()
                input.deallocate()
                throw DataError(path: path, problem: "zlib could not start inflating (status \(status))")
            }
            self.stream = stream
        } else {
            stream = nil
        }
    }

    deinit {
        if let stream {
            inflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
        }
        input.deallocate()
    }

    /// Reads up to `count` decompressed bytes into `buffer`; fewer only when the data ends.
    ///
    /// - Returns: the number of bytes written to `buffer` (0 once the data has ended).
    /// - Throws: ``DataError`` for a truncated or corrupt gzip stream, or a failed read.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        let result = isGzip ? try inflate(into: buffer, count: count) : try copy(into: buffer, count: count)
        produced += result
        return result
    }

    /// Reads up to `limit` decompressed bytes into a new array; fewer only when the data ends.
    ///
    /// The array grows as data arrives: a claimed size is never allocated up front.
    /// - Throws: as ``read(into:count:)``.
    func readBytes(upTo limit: Int) throws -> [UInt8] {
        if !isGzip {
            // A plain file's size is known: read straight into an array of the right size.
            let expected = min(limit, file.size - produced)
            var filled = 0
            let bytes = try [UInt8](unsafeUninitializedCapacity: max(expected, 0)) { buffer, initialized in
                if let base = buffer.baseAddress { filled = try read(into: base, count: expected) }
                initialized = filled
            }
            return bytes
        }
        let chunkSize = 1 << 20
        let chunk = UnsafeMutableRawPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { chunk.deallocate() }
        var bytes: [UInt8] = []
        // A guess from the compressed size; the array doubles past it if needed.
        bytes.reserveCapacity(min(limit, max(1 << 16, file.size.multipliedReportingOverflow(by: 4).partialValue)))
        while bytes.count < limit {
            let wanted = min(chunkSize, limit - bytes.count)
            let got = try read(into: chunk, count: wanted)
            if got == 0 { break }
            bytes.append(contentsOf: UnsafeRawBufferPointer(start: chunk, count: got))
        }
        return bytes
    }

    /// Plain files: the bytes buffered while looking for the magic, then straight from the file.
    private func copy(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        let buffered = min(count, inputEnd - inputStart)
        if buffered > 0 {
            buffer.copyMemory(from: input + inputStart, byteCount: buffered)
            inputStart += buffered
        }
        if buffered == count || fileAtEnd { return buffered }
        return buffered + (try file.read(into: buffer + buffered, count: count - buffered))
    }

    /// Gzip files: inflate until `count` bytes are out or the last member has ended.
    private func inflate(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        guard let stream else { return 0 }
        var written = 0
        while written < count && !streamEnded {
            if stream.pointee.avail_in == 0 && !fileAtEnd { try refill() }
            let room = min(count - written, Int(UInt32.max))
            stream.pointee.next_out = (buffer + written).assumingMemoryBound(to: UInt8.self)
            stream.pointee.avail_out = uInt(room)
            let status = CZlib.inflate(stream, Z_NO_FLUSH)
            written += room - Int(stream.pointee.avail_out)
            switch status {
            case Z_OK:
                continue
            case Z_STREAM_END:
                try startNextMember()
            case Z_BUF_ERROR:
                // No progress was possible: zlib needs input that the file does not have.
                if stream.pointee.avail_in == 0 && fileAtEnd {
                    throw DataError(
                        path: path,
                        problem: "truncated gzip stream: the file ends after \(produced + written) bytes of output")
                }
                if stream.pointee.avail_in != 0 {
                    throw DataError(path: path, problem: "corrupt gzip data: zlib made no progress")
                }
            case Z_MEM_ERROR:
                throw DataError(path: path, problem: "out of memory while inflating gzip data")
            default:
                throw DataError(path: path, problem: "corrupt gzip data: \(zlibMessage(stream, status))")
            }
        }
        return written
    }

    /// After a member ends: reset for the next member, or mark the end if nothing follows.
    private func startNextMember() throws {
        guard let stream else { return }
        if stream.pointee.avail_in == 0 && !fileAtEnd { try refill() }
        if stream.pointee.avail_in == 0 {
            streamEnded = true
            return
        }
        let next = stream.pointee.next_in[0]
        if next != Gzip.magic[0] {
            throw DataError(
                path: path,
                problem: "corrupt gzip data: byte 0x\(String(next, radix: 16)) follows the gzip stream "
                    + "where another member (1f 8b) or the end of the file was expected")
        }
        inflateReset(stream)
    }

    /// Reads the next chunk of compressed input from the file.
    private func refill() throws {
        guard let stream else { return }
        let got = try file.read(into: input, count: DecompressingReader.inputCapacity)
        if got < DecompressingReader.inputCapacity { fileAtEnd = true }
        stream.pointee.next_in = input
        stream.pointee.avail_in = uInt(got)
    }

    /// zlib's message for the last error, or the status code if it left none.
    private func zlibMessage(_ stream: UnsafeMutablePointer<z_stream>, _ status: Int32) -> String {
        if let message = stream.pointee.msg { return String(cString: message) }
        return "zlib status \(status)"
    }
}
