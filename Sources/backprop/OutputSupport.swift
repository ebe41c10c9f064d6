// `@preconcurrency` for C's `stdout`, a global that Swift 6 cannot prove is used from one thread
// (read only in `finishOutput()`, once the command has run).
#if canImport(Glibc)
    @preconcurrency import Glibc
#elseif canImport(Darwin)
    @preconcurrency import Darwin
#endif
import ArgumentParser
import BackpropData
import Foundation
import Synchronization

/// The check on every path argument, input or output, made before any work starts: an empty one
/// names no file (reading it would fail as `Error: : no such file`, naming neither the option nor
/// the file; writing it would take it for the current folder).
enum PathArgument {
    /// Throws a `ValidationError` naming `option` when `path` is given and empty.
    static func checkNotEmpty(_ path: String?, option: String) throws {
        if path == "" { throw ValidationError("\(option): expected a file path, found an empty one") }
    }
}

/// Checks on output paths made before any work starts, so that a long run does not end in an
/// error about where to write its result.
enum OutputPath {
    /// Throws a `ValidationError` unless `path` could be written atomically now: it is not empty,
    /// its folder (the folder of the file a symbolic link points to) exists and is writable, `path`
    /// is not a folder or a device, and its name fits the file system's limit.
    /// (`BackpropCommand.main` has registered the raw arguments, so that a name that is not UTF-8
    /// is checked, and later written, as the bytes given: see `FileSystemPath`.)
    ///
    /// A path that is standard output or standard error (`/dev/stdout`, a link to it, the file
    /// standard output is redirected to) is refused as such: a rename cannot replace a stream, and
    /// replacing the file would lose what the command prints into it.
    static func check(_ path: String, option: String) throws {
        try PathArgument.checkNotEmpty(path, option: option)
        let destination = OutputDestination.of(path)
        if destination == .standardOutput || destination == .standardError {
            let stream = destination == .standardOutput ? "standard output" : "standard error"
            throw ValidationError(
                "\(option) \(path): is \(stream); expected a regular file, which is replaced atomically")
        }
        do {
            try checkAtomicWrite(to: path)
        } catch let error as DataError {
            throw ValidationError("\(option) \(path): \(error.problem)")
        }
    }
}

/// Numbers as JSON spells them (no `nan` or `inf`: those become `null`).
enum JSONNumber {
    static func format(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        return "\(value)"
    }
}

/// Standard output or standard error, written with `write(2)`: a write that fails (the stream is
/// closed, the disk full, the reader gone) is recorded, never a trap.
///
/// `FileHandle.write(_:)` stops the process on any error; `print` loses it in stdio's buffer.
/// A long run asks ``failure`` between two steps and stops as after SIGTERM (see `Interruption`).
/// After the first failure, writes to the stream are skipped.
final class StandardStream: Sendable {
    static let output = StandardStream(descriptor: STDOUT_FILENO, name: "standard output")
    static let error = StandardStream(descriptor: STDERR_FILENO, name: "standard error")

    let descriptor: Int32
    /// `standard output` or `standard error`, as messages name it.
    let name: String
    /// The `errno` of the first failed write, or 0.
    fileprivate let failedWith = Atomic<Int32>(0)

    private init(descriptor: Int32, name: String) {
        self.descriptor = descriptor
        self.name = name
    }

    /// Whether the stream was closed when the process started (its first write fails).
    fileprivate let closed = Atomic<Bool>(false)

    /// Notes which of standard output and standard error are closed (`>&-`), and puts `/dev/null`
    /// in their place, so that no file opened later takes their number and receives what was
    /// meant for them (nor does `FileHandle` stop the process writing to them). The first write
    /// to a closed stream fails, as it would have.
    ///
    /// Standard output gets `/dev/null` opened for reading only, so that `print` fails too (its
    /// error shows at ``finishOutput()``); standard error gets it for writing, so that a write
    /// through `FileHandle` does not stop the process.
    static func prepare() {
        for stream in [output, error] where fcntl(stream.descriptor, F_GETFD) < 0 && errno == EBADF {
            stream.closed.store(true, ordering: .sequentiallyConsistent)
            let null = open("/dev/null", stream.descriptor == STDOUT_FILENO ? O_RDONLY : O_WRONLY)
            if null >= 0 && null != stream.descriptor {
                dup2(null, stream.descriptor)
                close(null)
            }
        }
    }

    /// Writes `text` as UTF-8, retrying short and interrupted writes; records the first failure.
    func write(_ text: String) {
        guard failure == nil else { return }
        if closed.load(ordering: .sequentiallyConsistent) {
            failedWith.store(EBADF, ordering: .sequentiallyConsistent)
            return
        }
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { buffer in
            var written = 0
            while written < buffer.count {
                let result = Foundation.write(descriptor, buffer.baseAddress! + written, buffer.count - written)
                if result < 0 {
                    let code = errno
                    if code == EINTR { continue }
                    failedWith.store(code, ordering: .sequentiallyConsistent)
                    return
                }
                written += result
            }
        }
    }

    /// The `errno` of the first failed write (`EPIPE`, `ENOSPC`, `EBADF` for a closed stream), if any.
    var failure: Int32? {
        let code = failedWith.load(ordering: .sequentiallyConsistent)
        return code == 0 ? nil : code
    }

    /// `standard output: cannot write: broken pipe`, or nil if every write succeeded.
    var failureDescription: String? {
        guard let failure else { return nil }
        let reason: String
        switch failure {
        case EBADF: reason = "it is closed"
        case EPIPE: reason = "broken pipe (the reader has exited)"
        case Self.unknownFailure: reason = "a write failed, the output is incomplete"
        default: reason = String(cString: strerror(failure)).lowercased()
        }
        return "\(name): cannot write: \(reason)"
    }

    /// The exit status after a failed write: `128 + SIGPIPE` for a broken pipe (what a shell sees
    /// of a process that SIGPIPE ends), 1 otherwise.
    var failureStatus: Int32 {
        failure == EPIPE ? 128 + SIGPIPE : 1
    }
}

extension StandardStream {
    /// What `main` does before parsing: SIGPIPE ignored, so that a write to a reader that has
    /// gone fails with `EPIPE` (reported, see ``finishOutput()``) instead of ending the process
    /// unseen; SIGXFSZ likewise, so that a write past a file-size limit (`ulimit -f`) fails with
    /// `EFBIG` and is reported naming the file (a save's temporary file then removed) instead of
    /// killing the process and leaving that file behind; closed streams noted (``prepare()``).
    static func prepareProcess() {
        signal(SIGPIPE, SIG_IGN)
        signal(SIGXFSZ, SIG_IGN)
        prepare()
    }

    /// What `main` does after the command has run: flushes what `print` has buffered and, if
    /// standard output could not be written (by `print` or through ``output``), says so in one
    /// line on stderr and exits with ``failureStatus``.
    static func finishOutput() {
        // `print` writes through C's `stdout`: a failure while it wrote sets the stream's error
        // flag (glibc drops the bytes it could not write); one in the last flush sets `errno`.
        if fflush(stdout) != 0 {
            output.record(errno)
        } else if ferror(stdout) != 0 {
            let closed = output.closed.load(ordering: .sequentiallyConsistent)
            output.record(closed ? EBADF : output.likelyFailure() ?? unknownFailure)
        }
        if let description = output.failureDescription {
            error.write("Error: \(description)\n")
            exit(output.failureStatus)
        }
    }

    /// The failure of a write whose `errno` is lost (an earlier `print`).
    private static let unknownFailure: Int32 = -1

    /// What a failed write whose `errno` is lost most likely met, read from the stream's state
    /// now: a pipe or socket whose reader has gone (`poll` reports `POLLERR`: `EPIPE`), a regular
    /// file at the file-size limit (`ulimit -f`: `EFBIG`) or on a full file system (`ENOSPC`), or
    /// `/dev/full` (`ENOSPC`); `nil` when none of these holds.
    private func likelyFailure() -> Int32? {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { return nil }
        let kind = status.st_mode & S_IFMT
        if kind == S_IFIFO || kind == S_IFSOCK {
            var request = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
            if poll(&request, 1, 0) == 1 && request.revents & Int16(POLLERR) != 0 { return EPIPE }
        } else if kind == S_IFREG {
            var limit = rlimit()
            #if canImport(Glibc)
                let known = getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limit) == 0
            #else
                let known = getrlimit(RLIMIT_FSIZE, &limit) == 0
            #endif
            // (RLIM_INFINITY, which Swift does not import here, is 2⁶⁴ - 1 in Linux, 2⁶³ - 1 in macOS.)
            let bound = UInt64(limit.rlim_cur)
            if known && bound < UInt64(Int64.max) && UInt64(max(status.st_size, 0)) >= bound { return EFBIG }
            var space = statvfs()
            if fstatvfs(descriptor, &space) == 0 && space.f_bavail == 0 { return ENOSPC }
        } else if kind == S_IFCHR {
            // `/dev/full` (Linux's character device 1, 7), whose every write fails with ENOSPC.
            #if os(Linux)
                if status.st_rdev == (1 << 8 | 7) { return ENOSPC }
            #endif
        }
        return nil
    }

    /// Records `code` as the failure, unless one is recorded already.
    private func record(_ code: Int32) {
        _ = failedWith.compareExchange(expected: 0, desired: code, ordering: .sequentiallyConsistent)
    }
}

/// Throws a `ValidationError` when the output `path` of `option` is one of the files the command
/// reads (`inputs`: each input's option and path, if given), after `.`, `..` and symbolic links:
/// writing it would replace what was read. `export` checks its own `OUT` against `MODEL` so.
func checkOutputIsNotAnInput(_ path: String, option: String, inputs: [(option: String, path: String?)]) throws {
    for input in inputs {
        guard let inputPath = input.path, ExportCommand.samePath(path, inputPath) else { continue }
        throw ValidationError(
            "\(option) \(path) is the \(input.option) file; writing it would replace what \(input.option) gives")
    }
}

/// Throws a `ValidationError` when the output `path` of `option` is one of the four data files the
/// command reads from `data` (`--data`, else `$BACKPROP_DATA`, else Debian's folder; plain or
/// `.gz`): the same file through a symbolic link, or another name of it (a hard link). Writing it
/// would replace the data set (`--plot plot.svg`, a link to a label file, did, exit 0). Nothing is
/// checked for an output that does not exist yet.
func checkOutputIsNotData(_ path: String, option: String, data: String?) throws {
    guard let output = fileIdentity(path) else { return }
    let directory = FashionMNIST.resolveDirectory(data)
    for name in FashionMNIST.fileNames.flatMap({ [$0, $0 + ".gz"] }) {
        let file = directory + "/" + name
        guard let input = fileIdentity(file), input == output else { continue }
        throw ValidationError(
            "\(option) \(path) is the data file \(file); writing it would replace the data the command reads")
    }
}

/// The device and inode of the file at `path`, after symbolic links; `nil` if there is none.
private func fileIdentity(_ path: String) -> [UInt64]? {
    guard let bytes = try? FileSystemPath.bytes(of: path) else { return nil }
    var status = stat()
    guard bytes.withCPath({ stat($0, &status) }) == 0 else { return nil }
    return [UInt64(status.st_dev), UInt64(status.st_ino)]
}

/// Throws a `ValidationError` unless the output `path` of `option` ends in one of `suffixes` (the
/// first names the kind in the message): a page or a graph written over a file of another kind
/// (a data file, a checkpoint) by a mistyped argument would lose it.
func checkOutputSuffix(_ path: String, option: String, suffixes: [String]) throws {
    guard suffixes.contains(where: { path.lowercased().hasSuffix($0) }) else {
        throw ValidationError(
            "\(option) \(path): expected a file name ending in \(suffixes.joined(separator: " or "))")
    }
}

/// What an output path names now, for an option that may write to a stream (`explain --html`,
/// `--dot`): a file, replaced atomically (a temporary file, then a rename, so that a reader never
/// sees half of it); or a stream, which a rename cannot replace and which is written straight to.
enum OutputDestination: Equatable {
    /// A regular file, or nothing yet (a new file), or what `OutputPath.check` refuses (a folder,
    /// a block device, a socket).
    case file
    /// Standard output: `-`, `/dev/stdout`, or any path that is the file or pipe that standard
    /// output writes to (`--dot out.dot > out.dot`: replacing the file would lose what the
    /// command prints, which goes to the file replaced).
    case standardOutput
    /// Standard error: `/dev/stderr`, or any path that is what standard error writes to.
    case standardError
    /// A pipe or FIFO, or a character device (`/dev/null`, a terminal).
    case stream

    /// What `path` names, following symbolic links (`/dev/stdout` is one, to `/proc/self/fd/1`).
    static func of(_ path: String) -> OutputDestination {
        if path == "-" { return .standardOutput }
        guard let bytes = try? FileSystemPath.bytes(of: path) else { return .file }
        var status = stat()
        guard bytes.withCPath({ stat($0, &status) }) == 0 else { return .file }
        // Where both streams are one terminal, the name tells which is meant.
        var streams = [(STDOUT_FILENO, Self.standardOutput), (STDERR_FILENO, .standardError)]
        if ["/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"].contains(path) { streams.reverse() }
        for (descriptor, destination) in streams {
            var stream = stat()
            if fstat(descriptor, &stream) == 0 && stream.st_dev == status.st_dev && stream.st_ino == status.st_ino {
                return destination
            }
        }
        let kind = status.st_mode & S_IFMT
        return kind == S_IFIFO || kind == S_IFCHR ? .stream : .file
    }
}

/// An output option that names a file or a stream (``OutputDestination``): checked before any
/// work (``check(_:option:suffixes:)``), opened before any work when it is a stream (so that a
/// FIFO without a reader, say, is refused before the work rather than after it), and written at
/// the end (``write(_:)``).
final class OutputTarget {
    let path: String
    let option: String
    let destination: OutputDestination
    /// The open stream of a ``OutputDestination/stream``, else -1.
    private let descriptor: Int32

    /// Throws a `ValidationError` naming `option` unless `path` can be written now: a stream, or
    /// a file that `OutputPath.check` accepts, whose name ends in one of `suffixes` (a stream has
    /// no name to check: `--dot /dev/stdout` is not written over a data file).
    static func check(_ path: String, option: String, suffixes: [String]) throws {
        try PathArgument.checkNotEmpty(path, option: option)
        guard OutputDestination.of(path) == .file else { return }
        try OutputPath.check(path, option: option)
        try checkOutputSuffix(path, option: option, suffixes: suffixes)
    }

    /// The output `path` of `option`; a stream is opened now.
    ///
    /// A FIFO is opened without waiting: one that no process reads is refused (writing it would
    /// wait for a reader for ever).
    /// - Throws: `CommandLineError` naming `option` and `path` when the stream cannot be opened.
    init(_ path: String, option: String) throws {
        self.path = path
        self.option = option
        destination = .of(path)
        guard destination == .stream else {
            descriptor = -1
            return
        }
        let bytes = try FileSystemPath.bytes(of: path) + [0]
        let opened = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { characters in
                characters.baseAddress.map { open($0, O_WRONLY | O_NONBLOCK | O_CLOEXEC) } ?? -1
            }
        }
        if opened < 0 {
            let code = errno
            let reason =
                code == ENXIO
                ? "is a FIFO that no process reads; start its reader first (writing would wait for one)"
                : "cannot write: " + String(cString: strerror(code)).lowercased()
            throw CommandLineError("\(option) \(path): \(reason)")
        }
        // Blocking again: a pipe's reader that is slower than the writer is waited for.
        let flags = fcntl(opened, F_GETFL)
        if flags >= 0 { _ = fcntl(opened, F_SETFL, flags & ~O_NONBLOCK) }
        descriptor = opened
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// Writes `text`: to a file atomically (the Data layer's `writeAtomically`: a temporary file
    /// in the same folder, fsync, rename), to a stream straight.
    ///
    /// A failure to write standard output is reported as every other (`StandardStream`, at the
    /// end of the command).
    /// - Throws: `CommandLineError` naming `option` and `path` when the file or stream cannot be
    ///   written.
    func write(_ text: String) throws {
        switch destination {
        case .file:
            do {
                try writeAtomically(Array(text.utf8), to: path)
            } catch let error as DataError {
                throw CommandLineError("\(option): \(error)")
            }
        case .standardOutput:
            StandardStream.output.write(text)
        case .standardError, .stream:
            // A closed standard error was filled with /dev/null (``StandardStream/prepare()``):
            // writing there would lose the page and still say it was written.
            if destination == .standardError && StandardStream.error.closed.load(ordering: .sequentiallyConsistent) {
                throw CommandLineError("\(option) \(path): cannot write: standard error is closed")
            }
            try writeStraight(text, to: destination == .stream ? descriptor : STDERR_FILENO)
        }
    }

    /// Writes every byte of `text` to `descriptor`, retrying short and interrupted writes.
    private func writeStraight(_ text: String, to descriptor: Int32) throws {
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                Foundation.write(descriptor, buffer.baseAddress.map { $0 + written }, buffer.count - written)
            }
            if result < 0 {
                let code = errno
                if code == EINTR { continue }
                let reason = code == EPIPE ? "broken pipe (the reader has exited)" : String(cString: strerror(code))
                throw CommandLineError("\(option) \(path): cannot write: \(reason.lowercased())")
            }
            written += result
        }
    }
}

/// "all 3 tensors", or "the 1 tensor" for one: the end of `near`'s and `gradcheck`'s verdict lines.
func allTensors(_ count: Int) -> String {
    count == 1 ? "the 1 tensor" : "all \(count) tensors"
}
