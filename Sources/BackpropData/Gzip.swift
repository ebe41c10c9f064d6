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
        Tensor.checkAllocatable(bytes: bound, for: "compressed data")
        return bytes.withUnsafeBufferPointer { source in
            [UInt8](unsafeUninitializedCapacity: bound) { output, written in
                stream.pointee.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
                stream.pointee.avail_in = uInt(source.count)
                stream.pointee.next_out = output.baseAddress
                stream.pointee.avail_out = uInt(bound)
                let result = deflate(stream, Z_FINISH)
                precondition(result == Z_STREAM_END, "Gzip.compress: deflate returned \(result)")
                written = bound - Int(stream.pointee.avail_out)
                // The buffers belong to these closures: leave no pointer to them in the stream.
                stream.pointee.next_in = nil
                stream.pointee.next_out = nil
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
///
/// Gzip files are read with zlib's own gz* file functions (`gzdopen`, `gzread`, `gzerror`), so
/// that the maintained library, not code of ours, parses the headers, follows concatenated
/// members and checks each member's CRC-32 and length. Plain files are read as they are.
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
    /// zlib's reader (gzip files only), on a duplicate of `file`'s descriptor that `gzclose_r`
    /// closes; `nil` for a plain file.
    private let gzip: gzFile?
    /// The name zlib gives the descriptor in its messages (`<fd:5>`), which are prefixed by it.
    private let zlibName: String
    /// Whether `gzread` has reported the end of the data and the end has been checked.
    private var ended = false
    /// Whether `gzread` has been asked again after its first report of the end (see `inflate`).
    private var askedAgain = false
    /// The most `gzread` is asked for at once: its count is an `unsigned`, the request an `Int`.
    private static let chunkSize = 1 << 20
    /// zlib's input buffer; for a read smaller than twice this it inflates that much output ahead.
    private static let zlibBufferSize: UInt32 = 1 << 16

    /// Opens `path` and looks at its first two bytes to decide whether it is gzip.
    ///
    /// - Throws: ``DataError`` if the file cannot be opened or zlib cannot start.
    init(path: String) throws {
        let file = try FileInput(path: path)
        self.file = file
        var magic: [UInt8] = [0, 0]
        let found = try magic.withUnsafeMutableBytes { bytes in
            try file.read(into: bytes.baseAddress!, count: 2, at: 0)
        }
        isGzip = found == 2 && magic == Gzip.magic
        guard isGzip else {
            gzip = nil
            zlibName = ""
            return
        }
        let descriptor = try file.duplicateDescriptor()
        guard let gzip = gzdopen(descriptor, "rb") else {
            close(descriptor)  // gzdopen closes the descriptor only once it has succeeded
            throw DataError(path: path, problem: "out of memory while opening the gzip data")
        }
        let status = gzbuffer(gzip, DecompressingReader.zlibBufferSize)
        precondition(status == 0, "DecompressingReader: gzbuffer failed before any read")
        self.gzip = gzip
        zlibName = "<fd:\(descriptor)>"
    }

    deinit {
        if let gzip { gzclose_r(gzip) }
    }

    /// Reads up to `count` decompressed bytes into `buffer`; fewer only when the data ends.
    ///
    /// - Returns: the number of bytes written to `buffer` (0 once the data has ended).
    /// - Throws: ``DataError`` for a truncated or corrupt gzip stream, data after the last gzip
    ///   member that is not another member, or a failed read.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        let result = isGzip ? try inflate(into: buffer, count: count) : try file.read(into: buffer, count: count)
        produced += result
        return result
    }

    /// Reads up to `limit` decompressed bytes into a new array; fewer only when the data ends.
    ///
    /// The array grows as data arrives: a claimed size is never allocated up front.
    /// - Returns: the bytes read.
    /// - Throws: as ``read(into:count:)``.
    func readBytes(upTo limit: Int) throws -> [UInt8] {
        if !isGzip {
            // A plain file's size is known: read straight into an array of the right size.
            let expected = min(limit, file.size - produced)
            Tensor.checkAllocatable(bytes: expected, for: "the contents of \(path)")
            var filled = 0
            let bytes = try [UInt8](unsafeUninitializedCapacity: max(expected, 0)) { buffer, initialized in
                if let base = buffer.baseAddress { filled = try read(into: base, count: expected) }
                initialized = filled
            }
            return bytes
        }
        let chunk = UnsafeMutableRawPointer(
            UnsafeMutablePointer<UInt8>.allocateScratch(
                capacity: DecompressingReader.chunkSize, for: "a buffer to decompress \(path)"))
        defer { chunk.deallocate() }
        var bytes: [UInt8] = []
        // A guess from the compressed size; the array doubles past it if needed.
        let guess = min(limit, max(1 << 16, file.size.multipliedReportingOverflow(by: 4).partialValue))
        Tensor.checkAllocatable(bytes: guess, for: "the decompressed contents of \(path)")
        bytes.reserveCapacity(guess)
        while bytes.count < limit {
            let wanted = min(DecompressingReader.chunkSize, limit - bytes.count)
            let got = try read(into: chunk, count: wanted)
            if got == 0 { break }
            if bytes.count + got > bytes.capacity {
                // The array is about to double (and for a moment hold both copies).
                let grown = bytes.capacity.multipliedReportingOverflow(by: 2).partialValue
                Tensor.checkAllocatable(bytes: grown, for: "the decompressed contents of \(path)")
            }
            bytes.append(contentsOf: UnsafeRawBufferPointer(start: chunk, count: got))
        }
        return bytes
    }

    /// Gzip files: `gzread` in chunks until `count` bytes are out or the data has ended.
    ///
    /// The end is checked: the last member must be whole, and only members may follow members.
    private func inflate(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        guard let gzip else { return 0 }
        var written = 0
        while written < count && !ended {
            try ReadingInterruption.poll()
            let wanted = min(count - written, DecompressingReader.chunkSize)
            let got = gzread(gzip, buffer + written, UInt32(wanted))
            let code = errno
            if got < 0 { throw zlibError(gzip, errno: code, output: produced + written) }
            written += Int(got)
            if Int(got) < wanted {
                // Fewer bytes than asked for: the data has ended, whole or cut short (Z_BUF_ERROR).
                var status: Int32 = Z_OK
                _ = gzerror(gzip, &status)
                if status != Z_OK { throw zlibError(gzip, errno: code, output: produced + written) }
                if !askedAgain {
                    // gzread reports a stream cut short where the file ends as its end, without
                    // Z_BUF_ERROR, when a read has just taken the last output byte the input gave;
                    // asked again with the end-of-file flag cleared, it looks, and sees the cut.
                    askedAgain = true
                    gzclearerr(gzip)
                    continue
                }
                try checkNothingFollowsTheLastMember(output: produced + written)
                ended = true
            }
        }
        return written
    }

    /// A ``DataError`` for the error `gzread` last reported, which `gzerror` describes.
    ///
    /// - Parameters:
    ///   - errno: `errno` right after the failing `gzread` (zlib leaves it for `Z_ERRNO`).
    ///   - output: how many bytes had been inflated, for a truncated stream.
    private func zlibError(_ gzip: gzFile, errno code: Int32, output: Int) -> DataError {
        var status: Int32 = Z_OK
        // zlib's message is "<fd:5>: incorrect data check"; the path replaces the descriptor's name.
        var message = String(cString: gzerror(gzip, &status))
        if message.hasPrefix(zlibName + ": ") { message.removeFirst(zlibName.count + 2) }
        switch status {
        case Z_BUF_ERROR:
            return DataError(
                path: path, problem: "truncated gzip stream: the file ends after \(output) bytes of output")
        case Z_DATA_ERROR:
            return DataError(path: path, problem: "corrupt gzip data: \(message)")
        case Z_MEM_ERROR:
            return DataError(path: path, problem: "out of memory while inflating gzip data")
        case Z_ERRNO:
            return DataError(path: path, problem: FileInput.describe(errno: code, opening: false))
        default:
            return DataError(path: path, problem: "zlib could not read the gzip data: \(message) (status \(status))")
        }
    }

    /// Throws if anything but another member follows the last gzip member.
    ///
    /// The one piece done by hand: `gzread` ignores what follows the last member unless it starts
    /// with `1f 8b` (zlib.h: "trailing garbage is ignored"), and no gz* function tells where the
    /// members end. A file whose last 4 bytes are the output's size mod 2³² ends as a single-member
    /// file does (the member's trailer), and passes without more work; for any other file the
    /// members are inflated again, the output discarded, to find where the last one ends. (Bytes
    /// after the last member that end with that size, a 2⁻³² chance for random bytes, also pass.)
    /// - Parameter output: the size of the whole inflated data.
    /// - Throws: ``DataError`` `corrupt gzip data: byte 0x… follows the gzip stream …`.
    private func checkNothingFollowsTheLastMember(output: Int) throws {
        var tail: UInt32 = 0
        if output > 0 && file.size >= 4 {
            let got = try withUnsafeMutableBytes(of: &tail) { bytes in
                try file.read(into: bytes.baseAddress!, count: 4, at: file.size - 4)
            }
            if got == 4 && UInt32(littleEndian: tail) == UInt32(truncatingIfNeeded: output) { return }
        }
        let end = try endOfTheLastMember()
        var next: UInt8 = 0
        if try file.read(into: &next, count: 1, at: end) == 1 {
            throw DataError(
                path: path,
                problem: "corrupt gzip data: byte 0x\(String(next, radix: 16)) follows the gzip stream "
                    + "where another member (1f 8b) or the end of the file was expected")
        }
    }

    /// The offset in the file just past the last gzip member: where members stop following each
    /// other (by zlib's rule, the next two bytes are not `1f 8b`), found by inflating them again.
    ///
    /// - Returns: the offset, at most the file's size.
    /// - Throws: ``DataError`` if the members do not inflate (the file changed since `gzread` read it).
    private func endOfTheLastMember() throws -> Int {
        let bufferSize = 1 << 16
        let input = UnsafeMutablePointer<UInt8>.allocateScratch(capacity: bufferSize, for: "a buffer to read \(path)")
        let output = UnsafeMutablePointer<UInt8>.allocateScratch(
            capacity: bufferSize, for: "a buffer to decompress \(path)")
        // zlib keeps a pointer back to the stream, so the stream needs an address that does not move.
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer {
            inflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
            output.deallocate()
            input.deallocate()
        }
        // windowBits 15 + 16: a 32 KiB window, gzip wrapper only (as gzread reads members).
        let status = inflateInit2_(stream, 15 + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        if status != Z_OK {
            throw DataError(path: path, problem: "zlib could not start inflating (status \(status))")
        }
        var offset = 0  // where the next read from the file starts
        while true {
            try ReadingInterruption.poll()
            if stream.pointee.avail_in == 0 {
                let got = try file.read(into: input, count: bufferSize, at: offset)
                if got == 0 {
                    throw DataError(path: path, problem: "truncated gzip stream: the file changed while being read")
                }
                offset += got
                stream.pointee.next_in = input
                stream.pointee.avail_in = uInt(got)
            }
            stream.pointee.next_out = output
            stream.pointee.avail_out = uInt(bufferSize)
            let result = CZlib.inflate(stream, Z_NO_FLUSH)
            if result == Z_STREAM_END {
                let end = offset - Int(stream.pointee.avail_in)
                var next: (UInt8, UInt8) = (0, 0)
                let got = try withUnsafeMutableBytes(of: &next) { bytes in
                    try file.read(into: bytes.baseAddress!, count: 2, at: end)
                }
                if got < 2 || next != (Gzip.magic[0], Gzip.magic[1]) { return end }
                inflateReset(stream)
            } else if result != Z_OK {
                let message = stream.pointee.msg.map { String(cString: $0) } ?? "zlib status \(result)"
                throw DataError(path: path, problem: "corrupt gzip data: \(message)")
            }
        }
    }
}
