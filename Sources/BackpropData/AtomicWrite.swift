import BackpropCore
import Foundation

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one, never
/// a half-written file.
///
/// The bytes go to a temporary file in the same folder (`.<name>.tmp-<pid>-<random>`), which is
/// flushed to disk with `fsync(2)` and then renamed over `path` with `rename(2)`, an atomic step on
/// POSIX file systems. The folder is then synced too, so the rename survives a crash. Checkpoints,
/// safetensors files, reports and plots all go through this function. Temporary files of the same
/// name that a killed writer left behind (their process is gone) are removed first.
///
/// - Parameters:
///   - bytes: the complete new content of the file.
///   - path: the destination; its folder must exist. An existing file there is replaced.
/// - Throws: ``DataError`` naming `path` if the folder does not exist or is not writable, the disk
///   is full, or the rename fails. The temporary file is removed on every failure.
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

/// The steps of an atomic write: temporary file, write, fsync, rename (internal).
enum AtomicWriter {
    static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
        let (folder, name) = try split(path)
        try checkFolder(folder, for: path)
        removeStaleTemporaries(of: name, in: folder)

        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let temporary = folder + "/." + name + ".tmp-\(getpid())-" + suffix
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if descriptor < 0 {
            let code = errno
            throw DataError(path: path, problem: "cannot write: " + describe(code, folder: folder))
        }
        do {
            try writeAll(bytes, to: descriptor, path: path)
            if fsync(descriptor) != 0 {
                let code = errno
                throw DataError(path: path, problem: "cannot write: fsync failed: " + message(code))
            }
        } catch {
            close(descriptor)
            unlink(temporary)
            throw error
        }
        if close(descriptor) != 0 {
            let code = errno
            unlink(temporary)
            throw DataError(path: path, problem: "cannot write: close failed: " + message(code))
        }
        if rename(temporary, path) != 0 {
            let code = errno
            unlink(temporary)
            let reason = code == EISDIR ? "a folder is in the way" : message(code)
            throw DataError(path: path, problem: "cannot replace the file: " + reason)
        }
        syncFolder(folder)
    }

    /// Removes the temporary files that writers of `name` killed mid-write left in `folder`
    /// (`.<name>.tmp-<pid>-<random>` whose process no longer exists), best effort.
    ///
    /// A process killed by SIGKILL between creating its temporary file and renaming it cannot
    /// clean up; the next write of the same file does. Files of living processes are left alone:
    /// they may be writing right now.
    static func removeStaleTemporaries(of name: String, in folder: String) {
        let prefix = "." + name + ".tmp-"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for entry in entries where entry.hasPrefix(prefix) {
            let rest = entry.dropFirst(prefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = pid_t(rest[..<dash]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                unlink(folder + "/" + entry)
            }
        }
    }

    /// Splits `path` into its folder (`.` if none is given) and file name.
    private static func split(_ path: String) throws -> (folder: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let name = String(path[path.index(after: slash)...])
        if name.isEmpty || name == "." || name == ".." {
            throw DataError(path: path, problem: "cannot write: the path names a folder, not a file")
        }
        let folder = slash == path.startIndex ? "/" : String(path[..<slash])
        return (folder, name)
    }

    /// Checks that `folder` exists and is a folder, so the error says so instead of a bare ENOENT.
    private static func checkFolder(_ folder: String, for path: String) throws {
        var status = stat()
        if stat(folder, &status) != 0 {
            let code = errno
            throw DataError(path: path, problem: "cannot write: " + describe(code, folder: folder))
        }
        if (status.st_mode & S_IFMT) != S_IFDIR {
            throw DataError(path: path, problem: "cannot write: '\(folder)' is not a folder")
        }
    }

    /// Writes every byte, retrying short writes and interrupted calls.
    private static func writeAll(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32, path: String) throws {
        guard let base = bytes.baseAddress else { return }
        var written = 0
        while written < bytes.count {
            let result = Foundation.write(descriptor, base + written, bytes.count - written)
            if result < 0 {
                let code = errno
                if code == EINTR { continue }
                throw DataError(path: path, problem: "cannot write: " + message(code))
            }
            written += result
        }
    }

    /// Flushes the folder entry of the renamed file (best effort: some file systems refuse).
    private static func syncFolder(_ folder: String) {
        let descriptor = open(folder, O_RDONLY | O_CLOEXEC)
        if descriptor < 0 { return }
        _ = fsync(descriptor)
        close(descriptor)
    }

    /// A message for a failure to create a file in `folder`.
    private static func describe(_ code: Int32, folder: String) -> String {
        switch code {
        case ENOENT: return "folder '\(folder)' does not exist"
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
