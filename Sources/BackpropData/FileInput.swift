import BackpropCore
import Foundation

/// A regular file opened for reading, with errors that name it (internal to `Data/`).
///
/// A thin layer over `open(2)`, `fstat(2)`, `read(2)` and `pread(2)`: it knows the file's size
/// before anything is allocated, which lets the readers reject a header that claims more data than
/// the file holds.
///
/// Only regular files are read. A pipe, a FIFO, a device or a socket has no size to check a header
/// against, and a FIFO without a writer would block `open(2)` for ever (with the signal handlers of
/// `backprop train` installed, even Ctrl-C would not end the wait): each is refused, by its kind,
/// before anything is read from it. A regular file that reports a size of 0 but holds bytes (as the
/// files under `/proc` do) is refused too, since its size cannot be trusted.
final class FileInput {
    /// The path as the caller gave it, for error messages.
    let path: String
    /// The size of the file on disk, in bytes.
    let size: Int
    /// The open file descriptor; closed in `deinit`.
    private let descriptor: Int32

    /// Opens `path` for reading.
    ///
    /// The kind of file is checked with `stat(2)` before it is opened, and again with `fstat(2)`
    /// on the descriptor, which is opened with `O_NONBLOCK` (cleared afterwards), so that a path
    /// replaced by a FIFO in between cannot block either.
    /// - Throws: ``DataError`` `no such file`, `permission denied`, `is a folder, not a file`,
    ///   `is a FIFO or pipe, not a regular file` (and likewise for a character device, a block
    ///   device and a socket), `reports a size of 0 but is not empty`, or the system's message for
    ///   any other failure.
    init(path: String) throws {
        self.path = path
        // The bytes the user gave, which need not be UTF-8 (see `FileSystemPath`).
        let bytes = try FileSystemPath.bytes(of: path)
        var status = stat()
        // A failed stat is left for open to report, in the same words as any failed open.
        if bytes.withCPath({ stat($0, &status) }) == 0, let problem = FileInput.refusal(mode: status.st_mode) {
            throw DataError(path: path, problem: problem)
        }
        let descriptor = bytes.withCPath { open($0, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
        if descriptor < 0 {
            let code = errno
            if code == ENOENT || code == ELOOP, let problem = FileInput.brokenLink(bytes) {
                throw DataError(path: path, problem: problem)
            }
            throw DataError(path: path, problem: FileInput.describe(errno: code, opening: true))
        }
        func fail(_ problem: String) -> DataError {
            close(descriptor)
            return DataError(path: path, problem: problem)
        }
        if fstat(descriptor, &status) != 0 {
            throw fail(FileInput.describe(errno: errno, opening: true))
        }
        if let problem = FileInput.refusal(mode: status.st_mode) { throw fail(problem) }
        let flags = fcntl(descriptor, F_GETFL)
        if flags < 0 || fcntl(descriptor, F_SETFL, flags & ~O_NONBLOCK) != 0 {
            throw fail(FileInput.describe(errno: errno, opening: true))
        }
        if status.st_size == 0 {
            // The files under /proc report 0 bytes whatever they hold.
            var byte: UInt8 = 0
            let got = pread(descriptor, &byte, 1, 0)
            if got < 0 { throw fail(FileInput.describe(errno: errno, opening: false)) }
            if got > 0 {
                throw fail("reports a size of 0 but is not empty (as files under /proc do); copy it to a regular file")
            }
        }
        self.descriptor = descriptor
        self.size = Int(status.st_size)
    }

    /// Why a file of this kind (`st_mode`) is not read, or `nil` for a regular file.
    private static func refusal(mode: mode_t) -> String? {
        switch mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFDIR: return "is a folder, not a file"
        case S_IFIFO: return "is a FIFO or pipe, not a regular file"
        case S_IFCHR: return "is a character device, not a regular file"
        case S_IFBLK: return "is a block device, not a regular file"
        case S_IFSOCK: return "is a socket, not a regular file"
        default: return "is not a regular file (file type 0o\(String(mode & S_IFMT, radix: 8)))"
        }
    }

    deinit { close(descriptor) }

    /// Why the symbolic link at `path` (bytes, see `FileSystemPath`) leads to no file, or `nil`
    /// when `path` is not a symbolic link or its target exists: `is a symbolic link to TARGET,
    /// which does not exist` (a relative target followed by where it leads from the link's
    /// folder), or `is a symbolic link that loops (…)`.
    ///
    /// A dangling link named like an expected file is not "missing": the user made it and
    /// should hear where it points.
    static func brokenLink(_ path: [UInt8]) -> String? {
        var status = stat()
        guard path.withCPath({ lstat($0, &status) }) == 0, status.st_mode & S_IFMT == S_IFLNK else { return nil }
        if path.withCPath({ stat($0, &status) }) == 0 { return nil }
        if errno == ELOOP {
            return "is a symbolic link that loops (too many levels of symbolic links); expected a link to a file"
        }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = path.withCPath { link in
            buffer.withUnsafeMutableBufferPointer { characters in
                guard let base = characters.baseAddress else { return -1 }
                return readlink(link, base, characters.count)
            }
        }
        guard count > 0 else { return "is a symbolic link to a path that does not exist" }
        let target = buffer.prefix(count).map { UInt8(bitPattern: $0) }
        var shown = String(decoding: target, as: UTF8.self)
        var resolved = target
        if target.first != UInt8(ascii: "/"), let slash = path.lastIndex(of: UInt8(ascii: "/")) {
            resolved = Array(path[...slash]) + target
            shown += " (\(String(decoding: resolved, as: UTF8.self)))"
        }
        // A link to a link that leads nowhere: the target exists, as a link.
        if resolved.withCPath({ lstat($0, &status) }) == 0 {
            return "is a symbolic link to \(shown), which leads to no file (a chain of links that ends nowhere)"
        }
        return "is a symbolic link to \(shown), which does not exist"
    }

    /// Reads up to `count` bytes into `buffer`, retrying short reads; fewer only at end of file.
    ///
    /// - Returns: the number of bytes read (0 at end of file).
    /// - Throws: ``DataError`` with the system's message if `read(2)` fails; whatever the
    ///   ``ReadingInterruption`` check throws.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        try readFully(count) { done, wanted in Foundation.read(descriptor, buffer + done, wanted) }
    }

    /// Reads up to `count` bytes at byte `offset` of the file into `buffer`, without moving the
    /// position that ``read(into:count:)`` reads from; fewer only at end of file.
    ///
    /// - Returns: the number of bytes read (0 when `offset` is at or past the end of the file).
    /// - Throws: ``DataError`` with the system's message if `pread(2)` fails; whatever the
    ///   ``ReadingInterruption`` check throws.
    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws -> Int {
        try readFully(count) { done, wanted in pread(descriptor, buffer + done, wanted, off_t(offset + done)) }
    }

    /// The most one `read(2)` is asked for, so that a large read checks ``ReadingInterruption``
    /// every few milliseconds.
    private static let chunkSize = 1 << 24

    /// Calls `call` (one `read(2)` or `pread(2)` of `wanted` bytes, given the bytes done so far)
    /// until `count` bytes are read or the file ends, retrying after a signal (`EINTR`).
    private func readFully(_ count: Int, _ call: (_ done: Int, _ wanted: Int) -> Int) throws -> Int {
        var total = 0
        while total < count {
            if total > 0 { try ReadingInterruption.poll() }
            let result = call(total, min(count - total, FileInput.chunkSize))
            if result < 0 {
                if errno == EINTR { continue }
                throw DataError(path: path, problem: FileInput.describe(errno: errno, opening: false))
            }
            if result == 0 { break }
            total += result
        }
        return total
    }

    /// A second descriptor for the open file (closed on `exec`), for a reader that closes it itself.
    ///
    /// It shares the file position with this one: while the other descriptor reads, use only
    /// ``read(into:count:at:)`` here.
    /// - Returns: the new descriptor; the caller owns it and must close it.
    /// - Throws: ``DataError`` with the system's message if `fcntl(2)` fails (out of descriptors).
    func duplicateDescriptor() throws -> Int32 {
        let duplicate = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
        if duplicate < 0 {
            throw DataError(path: path, problem: FileInput.describe(errno: errno, opening: true))
        }
        return duplicate
    }

    /// A short, lower-case message for a failed system call.
    static func describe(errno code: Int32, opening: Bool) -> String {
        switch code {
        case ENOENT: return opening ? "no such file" : "file vanished while reading"
        case EACCES: return "permission denied"
        case EISDIR: return "is a folder, not a file"
        default: return String(cString: strerror(code)).lowercased()
        }
    }
}

/// A check that the long reading loops make between two chunks, so that a request to stop
/// (Ctrl-C while a large gzip file inflates) is noticed within a few milliseconds.
///
/// The library installs no signal handler of its own: without a check installed, reading runs to
/// its end. A program that handles SIGINT itself installs a check that throws (or exits) once the
/// signal has arrived; `backprop` does, after installing its handler:
///
///     ReadingInterruption.install { if let signal = Interruption.requested { Foundation.exit(128 + signal) } }
///
/// The check runs on the reading thread, never in a signal handler: before each chunk of at most
/// 1 MiB of gzip output (64 KiB while the end of the last member is sought), and between chunks of
/// 16 MiB of a plain file.
package enum ReadingInterruption {
    /// The installed check, or `nil`.
    private static let check = Locked<(@Sendable () throws -> Void)?>(nil)

    /// Installs `check` (replacing any earlier one); `nil` removes it.
    ///
    /// - Parameter check: called between chunks; what it throws stops the read and reaches the caller.
    package static func install(_ check: (@Sendable () throws -> Void)?) {
        self.check.withLock { $0 = check }
    }

    /// Calls the installed check, if any.
    ///
    /// - Throws: whatever the check throws.
    static func poll() throws {
        let body = check.load()
        try body?()
    }
}
