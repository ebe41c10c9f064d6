import BackpropCore
import Foundation

/// A regular file opened for reading, with errors that name it (internal to `Data/`).
///
/// A thin layer over `open(2)`, `fstat(2)`, `read(2)` and `pread(2)`: it knows the file's size
/// before anything is allocated, which lets the readers reject a header that claims more data than
/// the file holds.
final class FileInput {
    /// The path as the caller gave it, for error messages.
    let path: String
    /// The size of the file on disk, in bytes.
    let size: Int
    /// The open file descriptor; closed in `deinit`.
    private let descriptor: Int32

    /// Opens `path` for reading.
    ///
    /// - Throws: ``DataError`` `no such file`, `permission denied`, `is a folder, not a file`, or
    ///   the system's message for any other failure.
    init(path: String) throws {
        self.path = path
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        if descriptor < 0 {
            throw DataError(path: path, problem: FileInput.describe(errno: errno, opening: true))
        }
        var status = stat()
        if fstat(descriptor, &status) != 0 {
            let code = errno
            close(descriptor)
            throw DataError(path: path, problem: FileInput.describe(errno: code, opening: true))
        }
        if (status.st_mode & S_IFMT) == S_IFDIR {
            close(descriptor)
            throw DataError(path: path, problem: "is a folder, not a file")
        }
        self.descriptor = descriptor
        self.size = Int(status.st_size)
    }

    deinit { close(descriptor) }

    /// Reads up to `count` bytes into `buffer`, retrying short reads; fewer only at end of file.
    ///
    /// - Returns: the number of bytes read (0 at end of file).
    /// - Throws: ``DataError`` with the system's message if `read(2)` fails.
    func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
        try readFully(count) { done in Foundation.read(descriptor, buffer + done, count - done) }
    }

    /// Reads up to `count` bytes at byte `offset` of the file into `buffer`, without moving the
    /// position that ``read(into:count:)`` reads from; fewer only at end of file.
    ///
    /// - Returns: the number of bytes read (0 when `offset` is at or past the end of the file).
    /// - Throws: ``DataError`` with the system's message if `pread(2)` fails.
    func read(into buffer: UnsafeMutableRawPointer, count: Int, at offset: Int) throws -> Int {
        try readFully(count) { done in pread(descriptor, buffer + done, count - done, off_t(offset + done)) }
    }

    /// Calls `call` (one `read(2)` or `pread(2)` given the bytes done so far) until `count` bytes
    /// are read or the file ends, retrying after a signal (`EINTR`).
    private func readFully(_ count: Int, _ call: (_ done: Int) -> Int) throws -> Int {
        var total = 0
        while total < count {
            let result = call(total)
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
