import BackpropCore
import Foundation
import Synchronization

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one, never
/// a half-written file.
///
/// The bytes go to a temporary file in the same folder (`.<name>.tmp-<pid>-<random>`), which is
/// flushed to disk with `fsync(2)` and then renamed over `path` with `rename(2)`, an atomic step on
/// POSIX file systems. The folder is then synced too, so the rename survives a crash. Checkpoints,
/// safetensors files, reports and plots all go through this function. Temporary files of the same
/// name that a killed writer left behind (their process is gone) are removed first.
///
/// A symbolic link at `path` is followed: the file it points to is replaced, and the link stays
/// (as editors and compilers do). The path is passed to the system as the bytes the user gave
/// (see `FileSystemPath`), so a name that is not UTF-8 is written exactly. A name too long to
/// leave room for the temporary file's suffix gets a shortened temporary name.
///
/// - Parameters:
///   - bytes: the complete new content of the file.
///   - path: the destination; its folder must exist. An existing regular file there is replaced.
/// - Throws: ``DataError`` naming `path` if the folder does not exist or is not writable, the
///   target is a folder or not a regular file, the disk is full, or the rename fails. The
///   temporary file is removed on every failure.
public func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    try bytes.withUnsafeBytes { buffer in
        try AtomicWriter.write(buffer, to: path)
    }
}

/// Writes `data` to `path` atomically, as the `[UInt8]` version of this function does.
///
/// - Throws: ``DataError`` naming `path`, as the `[UInt8]` version does.
public func writeAtomically(_ data: Data, to path: String) throws {
    try data.withUnsafeBytes { buffer in
        try AtomicWriter.write(buffer, to: path)
    }
}

/// Checks, before any work, that ``writeAtomically(_:to:)-([UInt8],_)`` could write `path` now.
///
/// Follows a symbolic link at `path` as the write does, then checks that the folder exists, is a
/// folder and is writable, that the target is not a folder nor anything else but a regular file,
/// and that the name fits the file system's limit (`NAME_MAX`, 255 bytes on Linux).
///
/// - Throws: ``DataError`` naming `path`; its ``DataError/problem`` reads after an option's name
///   (`the folder DIR does not exist`, `is a folder, expected a file path`).
public func checkAtomicWrite(to path: String) throws {
    let target = try AtomicWriter.resolve(path)
    let folder = target.folderForMessages
    var status = stat()
    let found = target.folder.withCPath { stat($0, &status) } == 0
    if !found {
        let code = errno
        if code == ENOTDIR {
            throw DataError(path: path, problem: "\(folder) is not a folder")
        }
        if code == ELOOP {
            throw DataError(path: path, problem: "the folder \(folder) is reached through a symbolic link that loops")
        }
        if code == ENAMETOOLONG {
            throw DataError(
                path: path,
                problem: "the path of its folder is \(target.folder.count) bytes long, more than the system takes "
                    + "(\(PATH_MAX - 1))")
        }
        throw DataError(path: path, problem: "the folder \(folder) does not exist")
    }
    if (status.st_mode & S_IFMT) != S_IFDIR {
        throw DataError(path: path, problem: "\(folder) is not a folder")
    }
    if let kind = AtomicWriter.nonRegularKind(of: target.path) {
        let problem = kind == "a folder" ? "is a folder, expected a file path" : "is \(kind), expected a regular file"
        throw DataError(path: path, problem: problem)
    }
    if target.folder.withCPath({ access($0, W_OK | X_OK) }) != 0 {
        throw DataError(path: path, problem: "the folder \(folder) is not writable")
    }
}

/// Removes the temporary file of the atomic write in progress, if there is one, for a signal
/// handler that is about to end the process with `_exit(2)`.
///
/// Async-signal-safe: one atomic exchange and one `unlink(2)`. Without it, a second Ctrl-C during
/// a save would leave `.<name>.tmp-<pid>-<random>` behind (the next write of the same file would
/// remove it, but only then).
package func removeTemporaryFileOfAtomicWrite() {
    let address = AtomicWriter.inProgress.exchange(0, ordering: .sequentiallyConsistent)
    if let temporary = UnsafePointer<CChar>(bitPattern: address) { unlink(temporary) }
}

/// File paths as the system sees them: bytes, which need not be UTF-8.
///
/// Swift reads the command line into `String`s and replaces each byte that is not UTF-8 with
/// U+FFFD, so the name `caf\xE9.svg` would come back as `caf\u{FFFD}.svg`, another file. The
/// command line registers its raw arguments here (`registerCommandLineArguments()`), and the
/// value of `$BACKPROP_DATA`; the writer then passes the registered bytes of such a path to the
/// system instead of the string's.
package enum FileSystemPath {
    /// The raw bytes of each argument that is not valid UTF-8, by the UTF-8 of its repaired
    /// string; `nil` where two different arguments repair to the same string.
    private static let registered = Locked<[[UInt8]: [UInt8]?]>([:])

    /// The arguments are registered once.
    private static let commandLineRegistered: Void = {
        for index in 1..<Int(CommandLine.argc) {
            guard let argument = CommandLine.unsafeArgv[index] else { continue }
            let bytes = Array(UnsafeRawBufferPointer(start: argument, count: strlen(argument)))
            register(bytes)
            // `--option=value`: the value alone too (`=` is ASCII, never part of a repaired byte).
            if bytes.starts(with: Array("--".utf8)), let equals = bytes.firstIndex(of: UInt8(ascii: "=")) {
                register(Array(bytes[(equals + 1)...]))
            }
        }
        // The data folder may come from the environment, which Swift repairs the same way (an
        // existing folder was reported as "no such folder").
        if let value = getenv(FashionMNIST.environmentVariable) {
            register(Array(UnsafeRawBufferPointer(start: value, count: strlen(value))))
        }
    }()

    /// Registers every command-line argument that is not valid UTF-8 (once; later calls do nothing).
    package static func registerCommandLineArguments() {
        commandLineRegistered
    }

    /// Registers `bytes` as the spelling of the string Swift decodes them to, if they are not UTF-8.
    package static func register(_ bytes: [UInt8]) {
        guard String(validating: bytes, as: UTF8.self) == nil else { return }
        let repaired = Array(String(decoding: bytes, as: UTF8.self).utf8)
        registered.withLock { table in
            if let existing = table[repaired], existing != bytes {
                table[repaired] = .some(nil)
            } else {
                table[repaired] = bytes
            }
        }
    }

    /// The bytes to pass to the system for `path`: the registered raw bytes, else its UTF-8.
    ///
    /// A path that starts with a registered folder (`DIR/name`, where `DIR` was an argument) gets
    /// that folder's raw bytes, the longest such folder first.
    ///
    /// - Throws: ``DataError`` if two arguments that are not UTF-8 read as `path` (the file meant
    ///   cannot be told), or if `path` holds a NUL byte.
    package static func bytes(of path: String) throws -> [UInt8] {
        let utf8 = Array(path.utf8)
        if utf8.contains(0) {
            throw DataError(path: path, problem: "the path holds a NUL byte, which no file name can")
        }
        let slash = UInt8(ascii: "/")
        let found = registered.withLock { table in
            table.filter { key, _ in
                utf8.starts(with: key)
                    && (utf8.count == key.count || utf8[key.count] == slash || key.last == slash)
            }.max { $0.key.count < $1.key.count }
        }
        guard let (key, raw) = found else { return utf8 }
        guard let raw else {
            throw DataError(
                path: path,
                problem: "two arguments that are not valid UTF-8 read as this name; cannot tell which file is meant")
        }
        return raw + utf8[key.count...]
    }
}

extension [UInt8] {
    /// Calls `body` with the bytes as a NUL-terminated C string.
    package func withCPath<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try (self + [0]).withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }
}

/// The steps of an atomic write: temporary file, write, fsync, rename (internal).
enum AtomicWriter {
    /// Where a write lands, with symbolic links followed: its folder and file name, as bytes.
    struct Target {
        /// The resolved path (`folder/name`).
        let path: [UInt8]
        let folder: [UInt8]
        let name: [UInt8]
        var folderForMessages: String { String(decoding: folder, as: UTF8.self) }
    }

    /// The address of the temporary file's name while a write is in progress, else 0 (a
    /// `strdup`ed C string; freed by the writer, or left to the process's end by a signal handler
    /// that took it). An address, not a pointer, because pointers are not `Sendable`.
    static let inProgress = Atomic<Int>(0)

    /// Bytes the temporary name adds to the file name: `.`, `.tmp-`, a pid of up to 10 digits,
    /// `-` and 16 hexadecimal digits.
    static let temporarySuffixLength = 1 + 5 + 10 + 1 + 16

    static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        let target = try resolve(path)
        let folder = target.folderForMessages
        try checkFolder(target.folder, for: path)
        if let kind = nonRegularKind(of: target.path) {
            let reason = kind == "a folder" ? "a folder is in the way" : "it is \(kind), not a regular file"
            throw DataError(path: path, problem: "cannot replace the file: " + reason)
        }
        let stem = temporaryStem(of: target)
        removeStaleTemporaries(stem: stem, in: target.folder)

        let random = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let suffix = Array("\(getpid())-\(String(repeating: "0", count: 16 - random.count) + random)".utf8)
        let temporary = target.folder + Array("/".utf8) + stem + suffix
        // Published before it exists: a signal between its creation and its publication would
        // otherwise leave it behind (removing a name not yet created is harmless).
        publish(temporary)
        defer { unpublish() }
        // A file replaced keeps its permissions (a private checkpoint, 0600, stays private: the
        // temporary file is created with them, never wider, and set to them exactly); a new one
        // gets 0644 less the umask, as `open` would make it.
        var status = stat()
        let existing = target.path.withCPath { stat($0, &status) } == 0 ? mode_t(status.st_mode) & 0o777 : nil
        let descriptor = temporary.withCPath { open($0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, existing ?? 0o644) }
        if descriptor < 0 {
            let code = errno
            throw DataError(path: path, problem: "cannot write: " + describe(code, folder: folder))
        }
        if let existing { _ = fchmod(descriptor, existing) }
        do {
            try writeAll(bytes, to: descriptor, path: path)
            if fsync(descriptor) != 0 {
                let code = errno
                throw DataError(path: path, problem: "cannot write: fsync failed: " + message(code))
            }
        } catch {
            close(descriptor)
            _ = temporary.withCPath { unlink($0) }
            throw error
        }
        if close(descriptor) != 0 {
            let code = errno
            _ = temporary.withCPath { unlink($0) }
            throw DataError(path: path, problem: "cannot write: close failed: " + message(code))
        }
        let renamed = temporary.withCPath { from in target.path.withCPath { to in rename(from, to) } }
        if renamed != 0 {
            let code = errno
            _ = temporary.withCPath { unlink($0) }
            let reason = code == EISDIR ? "a folder is in the way" : message(code)
            throw DataError(path: path, problem: "cannot replace the file: " + reason)
        }
        syncFolder(target.folder)
    }

    /// Records `temporary` for `removeTemporaryFileOfAtomicWrite()`.
    private static func publish(_ temporary: [UInt8]) {
        let copy = temporary.withCPath { strdup($0) }
        let previous = inProgress.exchange(Int(bitPattern: copy), ordering: .sequentiallyConsistent)
        free(UnsafeMutableRawPointer(bitPattern: previous))
    }

    /// Forgets the temporary file (renamed or removed by now).
    private static func unpublish() {
        let previous = inProgress.exchange(0, ordering: .sequentiallyConsistent)
        free(UnsafeMutableRawPointer(bitPattern: previous))
    }

    /// `path` as bytes (see `FileSystemPath`), with symbolic links at its end followed (a link
    /// relative to its folder), split into folder (`.` if none is given) and file name.
    ///
    /// - Throws: ``DataError`` if the path names a folder (`dir/`), the links loop, or the name is
    ///   longer than the file system allows.
    static func resolve(_ path: String) throws -> Target {
        var current = try FileSystemPath.bytes(of: path)
        var links = 0
        while isSymbolicLink(current) {
            links += 1
            if links > 40 {
                throw DataError(path: path, problem: "cannot write: too many levels of symbolic links")
            }
            guard let destination = readLink(current) else { break }
            if destination.first == UInt8(ascii: "/") {
                current = destination
            } else {
                current = split(current).folder + Array("/".utf8) + destination
            }
        }
        let (folder, name) = split(current)
        if name.isEmpty || name == Array(".".utf8) || name == Array("..".utf8) {
            throw DataError(path: path, problem: "cannot write: the path names a folder, not a file")
        }
        let limit = nameLimit(of: folder)
        if name.count > limit {
            throw DataError(
                path: path, problem: "the file name is \(name.count) bytes long; the file system allows \(limit)")
        }
        return Target(path: current, folder: folder, name: name)
    }

    /// `.<name>.tmp-`, with the name cut short enough that the whole temporary name fits the
    /// file system's limit (the same cut for every writer of the name, so stale files are found).
    static func temporaryStem(of target: Target) -> [UInt8] {
        let room = nameLimit(of: target.folder) - temporarySuffixLength
        let name = target.name.count > room ? Array(target.name.prefix(Swift.max(room, 1))) : target.name
        return Array(".".utf8) + name + Array(".tmp-".utf8)
    }

    /// The longest file name in `folder` (`NAME_MAX`, 255 where the system does not say).
    private static func nameLimit(of folder: [UInt8]) -> Int {
        let limit = folder.withCPath { pathconf($0, Int32(_PC_NAME_MAX)) }
        return limit > 0 ? limit : 255
    }

    private static func isSymbolicLink(_ path: [UInt8]) -> Bool {
        var status = stat()
        return path.withCPath { lstat($0, &status) } == 0 && (status.st_mode & S_IFMT) == S_IFLNK
    }

    private static func readLink(_ path: [UInt8]) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = path.withCPath { link in
            buffer.withUnsafeMutableBytes { raw in
                readlink(link, raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
            }
        }
        return count > 0 ? Array(buffer.prefix(count)) : nil
    }

    /// What `path` is if it exists and is not a regular file (`a folder`, `a FIFO`, …); nil if it
    /// is a regular file or does not exist.
    static func nonRegularKind(of path: [UInt8]) -> String? {
        var status = stat()
        guard path.withCPath({ stat($0, &status) }) == 0 else { return nil }
        switch status.st_mode & S_IFMT {
        case S_IFREG: return nil
        case S_IFDIR: return "a folder"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        default: return "not a regular file"
        }
    }

    /// Removes the temporary files that writers killed mid-write left in `folder` (`<stem><pid>-…`
    /// whose process no longer exists), best effort.
    ///
    /// A process killed by SIGKILL between creating its temporary file and renaming it cannot
    /// clean up; the next write of the same file does. Files of living processes are left alone:
    /// they may be writing right now.
    static func removeStaleTemporaries(stem: [UInt8], in folder: [UInt8]) {
        guard let directory = folder.withCPath({ opendir($0) }) else { return }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw in
                Array(raw.prefix(while: { $0 != 0 }))
            }
            guard name.starts(with: stem) else { continue }
            let rest = name.dropFirst(stem.count)
            guard let dash = rest.firstIndex(of: UInt8(ascii: "-")),
                let pid = pid_t(String(decoding: rest[..<dash], as: UTF8.self)), pid > 0
            else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                _ = (folder + Array("/".utf8) + name).withCPath { unlink($0) }
            }
        }
    }

    /// Splits `path` into its folder (`.` if none is given) and file name.
    private static func split(_ path: [UInt8]) -> (folder: [UInt8], name: [UInt8]) {
        guard let slash = path.lastIndex(of: UInt8(ascii: "/")) else { return (Array(".".utf8), path) }
        let name = Array(path[(slash + 1)...])
        let folder = slash == 0 ? Array("/".utf8) : Array(path[..<slash])
        return (folder, name)
    }

    /// Checks that `folder` exists and is a folder, so the error says so instead of a bare ENOENT.
    private static func checkFolder(_ folder: [UInt8], for path: String) throws {
        var status = stat()
        let shown = String(decoding: folder, as: UTF8.self)
        if folder.withCPath({ stat($0, &status) }) != 0 {
            let code = errno
            throw DataError(path: path, problem: "cannot write: " + describe(code, folder: shown))
        }
        if (status.st_mode & S_IFMT) != S_IFDIR {
            throw DataError(path: path, problem: "cannot write: '\(shown)' is not a folder")
        }
    }

    /// Writes every byte, retrying short writes and interrupted calls.
    ///
    /// At most 1 MiB per call: a signal waits for the `write(2)` to a file under way, so a second
    /// Ctrl-C during the save of a large checkpoint acts within one chunk, not after all of it.
    private static func writeAll(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32, path: String) throws {
        guard let base = bytes.baseAddress else { return }
        let chunk = 1 << 20
        var written = 0
        while written < bytes.count {
            let result = Foundation.write(descriptor, base + written, Swift.min(chunk, bytes.count - written))
            if result < 0 {
                let code = errno
                if code == EINTR { continue }
                throw DataError(path: path, problem: "cannot write: " + message(code))
            }
            written += result
        }
    }

    /// Flushes the folder entry of the renamed file (best effort: some file systems refuse).
    private static func syncFolder(_ folder: [UInt8]) {
        let descriptor = folder.withCPath { open($0, O_RDONLY | O_CLOEXEC) }
        if descriptor < 0 { return }
        _ = fsync(descriptor)
        close(descriptor)
    }

    /// A message for a failure to create a file in `folder`.
    private static func describe(_ code: Int32, folder: String) -> String {
        switch code {
        case ENOENT: return "folder '\(folder)' does not exist"
        case ENAMETOOLONG: return "the path is longer than the system takes (\(PATH_MAX - 1) bytes)"
        case ENOTDIR: return "'\(folder)' is not a folder"
        case EACCES, EPERM: return "folder '\(folder)' is not writable (permission denied)"
        case EROFS: return "folder '\(folder)' is on a read-only file system"
        default: return message(code)
        }
    }

    /// The system's message for `code`, lower-cased to sit inside a sentence.
    private static func message(_ code: Int32) -> String {
        String(cString: strerror(code)).lowercased()
    }
}
