import Foundation
import Synchronization
import Testing

@testable import BackpropCore
@testable import BackpropData

// Inputs that are not regular files, and compressed data that inflates far (issue 12, families 3
// and 7), end to end and in the readers.
//
//   - A FIFO, a pipe, a character device, a socket or a file under /proc given as any input file
//     is refused at once, by its kind, in one line; nothing blocks, nothing traps.
//   - A gzip bomb (a small `.gz` inflating to hundreds of megabytes) read with `--limit` costs the
//     rows used, in memory and in time; a reading loop stops between two chunks when the check
//     installed in `ReadingInterruption` throws (how Ctrl-C reaches it).
//
// The runs here use `posix_spawn` and `wait4` rather than `Process`, for a timeout (a hang fails
// the test instead of stalling the suite) and for the child's own peak memory (`ru_maxrss`).

// MARK: - Running the executable with a timeout

/// How a run of `backprop` ended, with its peak memory and its duration.
private struct TimedRun {
    /// The exit status, or `nil` if the process ended by a signal or was killed at the timeout.
    let status: Int32?
    /// The signal that ended the process, or `nil` if it exited.
    let signal: Int32?
    let standardOutput: String
    let standardError: String
    /// Wall-clock time from the spawn to the end.
    let seconds: Double
    /// The child's peak resident memory, in KiB: the largest `VmHWM` of `/proc/PID/status` seen
    /// while it ran (polled every 5 ms), or `ru_maxrss` if it ended before the first poll.
    ///
    /// Not `ru_maxrss` alone: `posix_spawn` starts the child in the parent's memory (vfork), and
    /// Linux carries that memory's high-water mark across `exec` into the child's `ru_maxrss`,
    /// so it reports the test runner's peak when that is larger (838 MB under the address
    /// sanitizer, where the train run itself used a few tens). `VmHWM` is the high-water mark of
    /// the child's own memory, which starts afresh at `exec`.
    let peakKiB: Int
    /// Whether the run was killed at the timeout.
    let timedOut: Bool
}

/// Runs the built `backprop` with `arguments`, killing it (SIGKILL) after `timeout` seconds.
///
/// - Parameters:
///   - standardInput: the descriptor to give as the child's standard input (`/dev/null` if `nil`).
///   - signal: a signal to send the child `after` seconds, if given.
///   - signalOnceCaught: send `signal` only once the child has a handler for it as well (for a
///     command that handles it, whose handling is what the test checks).
private func runTimed(
    _ arguments: [String], standardInput: Int32? = nil, timeout: Double = 30,
    signal: (number: Int32, after: Double)? = nil, signalOnceCaught: Bool = false
) throws -> TimedRun {
    try withTemporaryFolder { logs in
        let outputPath = logs + "/stdout"
        let errorPath = logs + "/stderr"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let standardInput {
            posix_spawn_file_actions_adddup2(&actions, standardInput, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        // As a shell starts a command: no signal blocked, the default action for each.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        for number in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { sigaddset(&signals, number) }
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let executable = backpropExecutable().path
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let started = ContinuousClock.now
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        try #require(spawned == 0, "posix_spawn failed: \(String(cString: strerror(spawned)))")

        var status: Int32 = 0
        var usage = rusage()
        var timedOut = false
        var signalled = false
        var polledPeakKiB: Int?
        while true {
            if let highWater = highWaterKiB(of: pid) { polledPeakKiB = Swift.max(polledPeakKiB ?? 0, highWater) }
            let done = wait4(pid, &status, WNOHANG, &usage)
            if done == pid { break }
            try #require(done == 0 || errno == EINTR, "wait4 failed: \(String(cString: strerror(errno)))")
            let elapsed = started.duration(to: .now).seconds
            if let signal, !signalled, elapsed >= signal.after,
                !signalOnceCaught || catches(signal.number, pid: pid)
            {
                kill(pid, signal.number)
                signalled = true
            }
            if elapsed > timeout && !timedOut {
                kill(pid, SIGKILL)
                timedOut = true
            }
            usleep(5_000)
        }
        let seconds = started.duration(to: .now).seconds
        let terminatingSignal = status & 0x7f
        return TimedRun(
            status: terminatingSignal == 0 ? (status >> 8) & 0xff : nil,
            signal: terminatingSignal == 0 ? nil : terminatingSignal,
            standardOutput: try String(contentsOfFile: outputPath, encoding: .utf8),
            standardError: try String(contentsOfFile: errorPath, encoding: .utf8),
            seconds: seconds, peakKiB: polledPeakKiB ?? usage.ru_maxrss, timedOut: timedOut)
    }
}

/// The value of field `name` (such as `VmHWM`) in `/proc/PID/status`, without its label, or `nil`
/// when it cannot be read (the process has ended, or no procfs).
private func statusField(_ name: String, of pid: pid_t) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") })
    else { return nil }
    return line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces)
}

/// Whether process `pid` has installed a handler for `signal` (its bit in `SigCgt` of
/// `/proc/PID/status`): a command that handles Ctrl-C does so from its first line, but a loaded
/// machine (the sanitizer builds, tests in parallel) can take longer than a test's delay to get there.
private func catches(_ signal: Int32, pid: pid_t) -> Bool {
    guard let field = statusField("SigCgt", of: pid), let mask = UInt64(field, radix: 16) else { return false }
    return mask & (1 << UInt64(signal - 1)) != 0
}

/// `VmHWM` of `/proc/PID/status` in KiB (the peak resident memory of the process's own address
/// space), or `nil` when it cannot be read (the process has ended, or no procfs).
private func highWaterKiB(of pid: pid_t) -> Int? {
    guard let field = statusField("VmHWM", of: pid), let number = field.split(separator: " ").first else { return nil }
    return Int(number)
}

extension Duration {
    fileprivate var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) * 1e-18
    }
}

/// Checks the catalogue's contract on `run`: exit status 1, not a signal, not a timeout, nothing
/// on stdout, and one `Error: …` line on stderr that holds every one of `fragments`.
private func expectOneLineError(
    _ run: TimedRun, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(!run.timedOut, "the run hung (killed after the timeout)", sourceLocation: sourceLocation)
    #expect(
        run.signal == nil, "killed by signal \(run.signal ?? 0): \(run.standardError)", sourceLocation: sourceLocation)
    #expect(run.status == 1, "exit status \(String(describing: run.status))", sourceLocation: sourceLocation)
    #expect(run.standardOutput.isEmpty, "stdout: \(run.standardOutput)", sourceLocation: sourceLocation)
    let lines = run.standardError.split(separator: "\n", omittingEmptySubsequences: false)
    #expect(
        lines.count == 2 && lines[0].hasPrefix("Error: ") && lines[1].isEmpty,
        "stderr is not one `Error: …` line: \(run.standardError)", sourceLocation: sourceLocation)
    for fragment in fragments {
        #expect(
            run.standardError.contains(fragment), "\"\(run.standardError)\" lacks \"\(fragment)\"",
            sourceLocation: sourceLocation)
    }
}

// MARK: - Inputs that are not regular files

/// Makes a FIFO at `path` (no writer ever opens it).
private func makeFIFO(_ path: String) throws {
    try #require(mkfifo(path, 0o644) == 0, "mkfifo \(path): \(String(cString: strerror(errno)))")
}

/// Makes a listening Unix-domain socket at `path`; returns its descriptor (the caller closes it).
private func makeSocket(_ path: String) throws -> Int32 {
    let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    try #require(descriptor >= 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    try #require(bytes.count < MemoryLayout.size(ofValue: address.sun_path), "socket path too long: \(path)")
    withUnsafeMutableBytes(of: &address.sun_path) { target in
        target.copyBytes(from: bytes)
        target[bytes.count] = 0
    }
    let bound = withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    try #require(bound == 0, "bind \(path): \(String(cString: strerror(errno)))")
    return descriptor
}

/// The kinds of special file, each with how to make it in a folder (or where it is) and the
/// words the error must use.
struct SpecialInputFile: Sendable, CustomTestStringConvertible {
    let name: String
    /// Makes the file (or a symbolic link to it) at the given path.
    let make: @Sendable (String) throws -> Void
    let problem: String
    var testDescription: String { name }
}

private let specialFiles: [SpecialInputFile] = [
    SpecialInputFile(
        name: "FIFO without a writer", make: { try makeFIFO($0) }, problem: "is a FIFO or pipe, not a regular file"),
    SpecialInputFile(
        name: "/dev/zero",
        make: { try FileManager.default.createSymbolicLink(atPath: $0, withDestinationPath: "/dev/zero") },
        problem: "is a character device, not a regular file"),
    SpecialInputFile(
        name: "/dev/null",
        make: { try FileManager.default.createSymbolicLink(atPath: $0, withDestinationPath: "/dev/null") },
        problem: "is a character device, not a regular file"),
    SpecialInputFile(
        name: "/proc/self/status",
        make: { try FileManager.default.createSymbolicLink(atPath: $0, withDestinationPath: "/proc/self/status") },
        problem: "reports a size of 0 but is not empty (as files under /proc do); copy it to a regular file"),
]

/// Every command and option that reads a file, with `{file}` where the special file goes.
private let inputOptions: [[String]] = [
    ["seed", "--tensors", "{file}"],
    ["seed", "--tensors", "{dir}/xy.safetensors", "--init", "{file}"],
    ["gradcheck", "--tensors", "{file}"],
    ["gradcheck", "--tensors", "{dir}/xy.safetensors", "--init", "{file}"],
    ["near", "{file}", "{dir}/xy.safetensors"],
    ["near", "{dir}/xy.safetensors", "{file}"],
    ["evaluate", "--model", "{file}", "--data", "{dir}/data"],
    ["train", "--resume", "{file}", "--data", "{dir}/data", "--save", "{dir}/out.safetensors"],
    ["train", "--data", "{dir}/data", "--limit", "12", "--epochs", "1"],
]

/// 12 tiny training and 3 test images of 2×2 pixels in `folder`/data, gzip, and
/// `xy.safetensors` (x of 4×3, y of 4) in `folder`.
private func prepareInputs(in folder: String) throws {
    try FileManager.default.createDirectory(atPath: folder + "/data", withIntermediateDirectories: false)
    try IDX.write((0..<48).map { UInt8($0 * 5) }, shape: [12, 2, 2], to: folder + "/data/train-images-idx3-ubyte.gz")
    try IDX.write((0..<12).map { UInt8($0 % 10) }, shape: [12], to: folder + "/data/train-labels-idx1-ubyte.gz")
    try IDX.write((0..<12).map { UInt8($0 * 7) }, shape: [3, 2, 2], to: folder + "/data/t10k-images-idx3-ubyte.gz")
    try IDX.write([7, 8, 9], shape: [3], to: folder + "/data/t10k-labels-idx1-ubyte.gz")
    let x = Tensor((0..<12).map { Float($0) / 12 }).reshape([4, 3])
    try Safetensors.write(["x": x, "y": Tensor([0, 1, 2, 3])], to: folder + "/xy.safetensors")
}

@Test(arguments: specialFiles, inputOptions)
func aSpecialFileGivenAsAnyInputIsRefusedAtOnce(special: SpecialInputFile, options: [String]) throws {
    try withTemporaryFolder { folder in
        try prepareInputs(in: folder)
        let isDataFile = !options.contains("{file}")
        let path = isDataFile ? folder + "/data/train-images-idx3-ubyte.gz" : folder + "/special"
        if isDataFile { try FileManager.default.removeItem(atPath: path) }
        try special.make(path)
        let before = Set(try FileManager.default.subpathsOfDirectory(atPath: folder))
        let arguments = options.map {
            $0.replacingOccurrences(of: "{file}", with: path).replacingOccurrences(of: "{dir}", with: folder)
        }
        let run = try runTimed(arguments, timeout: 20)
        expectOneLineError(run, ["Error: \(path): \(special.problem)"])
        #expect(run.seconds < 10, "\(arguments) took \(run.seconds) s")
        let after = Set(try FileManager.default.subpathsOfDirectory(atPath: folder))
        #expect(after == before, "\(arguments) left \(after.subtracting(before))")
    }
}

@Test func aSocketGivenAsAnInputIsRefused() throws {
    try withTemporaryFolder { folder in
        try prepareInputs(in: folder)
        let path = folder + "/s"
        let descriptor = try makeSocket(path)
        defer { close(descriptor) }
        let run = try runTimed(["near", path, folder + "/xy.safetensors"], timeout: 20)
        expectOneLineError(run, ["Error: \(path): is a socket, not a regular file"])
    }
}

@Test func aPipeOnStandardInputIsRefusedWithoutWaitingForItsWriter() throws {
    // /dev/stdin is the pipe itself; its writer stays open and silent, so a read would block.
    var ends: [Int32] = [0, 0]
    try #require(pipe(&ends) == 0)
    defer {
        close(ends[0])
        close(ends[1])
    }
    try withTemporaryFolder { folder in
        try prepareInputs(in: folder)
        let run = try runTimed(
            ["seed", "--tensors", "/dev/stdin", "--init", folder + "/xy.safetensors"], standardInput: ends[0],
            timeout: 20)
        expectOneLineError(run, ["Error: /dev/stdin: is a FIFO or pipe, not a regular file"])
    }
}

@Test func theReadersRefuseSpecialFilesByKind() throws {
    try withTemporaryFolder { folder in
        let fifo = folder + "/fifo"
        try makeFIFO(fifo)
        let cases: [(path: String, problem: String)] = [
            (fifo, "is a FIFO or pipe, not a regular file"),
            ("/dev/zero", "is a character device, not a regular file"),
            ("/dev/urandom", "is a character device, not a regular file"),
            ("/dev/null", "is a character device, not a regular file"),
            (
                "/proc/self/status",
                "reports a size of 0 but is not empty (as files under /proc do); copy it to a regular file"
            ),
        ]
        for (path, problem) in cases {
            let expected = DataError(path: path, problem: problem)
            #expect(throws: expected) { try IDX.read(path: path) }
            #expect(throws: expected) { try IDX.read(path: path, maxItems: 1) }
            #expect(throws: expected) { try Gzip.readFile(path: path) }
            #expect(throws: expected) { try Safetensors.read(path: path) }
        }
    }
}

@Test func anEmptyRegularFileIsStillReadAsEmpty() throws {
    // The check for /proc files reads one byte of a file of size 0; a truly empty file passes it.
    try withTemporaryFolder { folder in
        let path = folder + "/empty"
        try writeBytes([], to: path)
        #expect(try Gzip.readFile(path: path) == [])
        #expect(
            throws: DataError(path: path, problem: "file holds 0 bytes, shorter than the 4-byte IDX magic number")
        ) { try IDX.read(path: path) }
        #expect(throws: DataError(path: path, problem: "file is 0 bytes, shorter than the 8-byte header length")) {
            try Safetensors.read(path: path)
        }
    }
}

// MARK: - Gzip bombs

/// An IDX header for `uint8` values of `shape`: `00 00 08 <rank>`, then the big-endian sizes.
private func idxHeader(_ shape: [Int]) -> [UInt8] {
    var header: [UInt8] = [0, 0, IDXDataType.uint8.rawValue, UInt8(shape.count)]
    for size in shape {
        for shift in [24, 16, 8, 0] { header.append(UInt8(truncatingIfNeeded: size >> shift)) }
    }
    return header
}

/// A gzip file of about 1 KiB per MiB of output: an IDX header for `shape`, then `mebibytes` MiB
/// of zeros, as one member for the header and one (the same, repeated) per MiB of zeros.
private func gzipBomb(shape: [Int], mebibytes: Int) -> [UInt8] {
    var file = Gzip.compress(idxHeader(shape), level: 9)
    let member = Gzip.compress([UInt8](repeating: 0, count: 1 << 20), level: 9)
    file.reserveCapacity(file.count + mebibytes * member.count)
    for _ in 0..<mebibytes { file += member }
    return file
}

@Test func aGzipBombInflatesPastItsCompressedSize() throws {
    // The control for the tests below: the bomb is real, 16 MiB of output from about 16 KiB.
    try withTemporaryFolder { folder in
        let path = folder + "/bomb.gz"
        let bomb = gzipBomb(shape: [16 << 20], mebibytes: 16)
        #expect(bomb.count < 32 << 10)
        try writeBytes(bomb, to: path)
        let file = try IDX.read(path: path)
        #expect(file.shape == [16 << 20] && file.payload.count == 16 << 20)
        #expect(file.payload.max() == 0)
    }
}

@Test func trainWithALimitReadsOnlyTheRowsItUsesOfAGzipBomb() throws {
    // Each images file declares 1,000,000 images of 28×28 (784 MB, within the 2 GiB cap) and
    // inflates to as much; --limit 60 must cost 60 images, in time and in memory.
    try withTemporaryFolder { folder in
        let images = gzipBomb(shape: [1_000_000, 28, 28], mebibytes: 748)
        let labels = gzipBomb(shape: [1_000_000], mebibytes: 1)
        for split in ["train", "t10k"] {
            try writeBytes(images, to: folder + "/\(split)-images-idx3-ubyte.gz")
            try writeBytes(labels, to: folder + "/\(split)-labels-idx1-ubyte.gz")
        }
        let run = try runTimed(
            ["train", "--data", folder, "--limit", "60", "--epochs", "1", "--hidden", "8"], timeout: 60)
        #expect(!run.timedOut && run.signal == nil)
        #expect(run.status == 0, "\(run.standardError)")
        #expect(run.standardOutput.contains("(60 images)"), "\(run.standardOutput)")
        #expect(run.seconds < 10, "took \(run.seconds) s")
        // The whole of one images file is 784 MB; the run, BLAS and all, stays far below (under a
        // sanitizer, whose shadow memory inflates every process, still below the file).
        #expect(run.peakKiB < (underSanitizer ? 700 : 200) << 10, "peak memory \(run.peakKiB) KiB")
    }
}

/// Counts the polls made on the thread that installed it, and throws on the `stopAt`-th.
private final class StopAfter: Sendable {
    struct Stop: Error {}
    let polls = Atomic<Int>(0)
    let stopAt: Int
    /// The thread whose polls count (other tests read files at the same time, on other threads).
    private let thread = pthread_self()

    init(stopAt: Int) { self.stopAt = stopAt }

    func poll() throws {
        guard pthread_equal(pthread_self(), thread) != 0 else { return }
        let count = polls.add(1, ordering: .relaxed).newValue
        if count >= stopAt { throw Stop() }
    }
}

/// The reading check is one global: the tests that install it run one at a time (run side by
/// side, one's `install` replaced the other's, which then read its whole 1 GiB bomb and failed).
@Suite(.serialized)
struct InstalledReadingCheckTests {
    @Test func aReadingLoopStopsAtTheNextChunkOnceTheInstalledCheckThrows() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/bomb.gz"
            try writeBytes(gzipBomb(shape: [1 << 30], mebibytes: 1024), to: path)
            let stopper = StopAfter(stopAt: 20)
            ReadingInterruption.install { try stopper.poll() }
            defer { ReadingInterruption.install(nil) }
            let started = ContinuousClock.now
            // Not #expect(throws:), which prints what was read when nothing is thrown: 1 GiB of text.
            do {
                let read = try IDX.read(path: path)
                Issue.record("IDX.read returned \(read.payload.count) bytes; expected StopAfter.Stop")
            } catch is StopAfter.Stop {}
            #expect(stopper.polls.load(ordering: .relaxed) == 20)
            #expect(started.duration(to: .now).seconds < 1)

            let again = StopAfter(stopAt: 5)
            ReadingInterruption.install { try again.poll() }
            do {
                let read = try Gzip.readFile(path: path)
                Issue.record("Gzip.readFile returned \(read.count) bytes; expected StopAfter.Stop")
            } catch is StopAfter.Stop {}
            #expect(again.polls.load(ordering: .relaxed) == 5)
        }
    }

    /// A gzip file of one member of labels followed by 100,000 empty members (2 MB): the reading
    /// loop polls the installed check once per member. Each poll used to wrap the stored check in one
    /// more layer of thunks, so the time grew with the square of the members (`train` on such a file
    /// ran for minutes, and with 200,000 members overflowed the stack); now it reads in a moment.
    @Test func pollingTheCheckOncePerGzipMemberDoesNotPileUp() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/train-labels-idx1-ubyte.gz"
            let labels = [UInt8](repeating: 3, count: 10)
            let empty = Gzip.compress([])
            var bytes = Gzip.compress(idxHeader([10]) + labels)
            bytes.reserveCapacity(bytes.count + 100_000 * empty.count)
            for _ in 0..<100_000 { bytes += empty }
            try writeBytes(bytes, to: path)
            let counter = StopAfter(stopAt: Int.max)
            ReadingInterruption.install { try counter.poll() }
            defer { ReadingInterruption.install(nil) }
            let read = try IDX.read(path: path)
            #expect(read.shape == [10] && read.payload == labels)
            #expect(counter.polls.load(ordering: .relaxed) >= 100_000)
        }
    }
}

/// A data folder whose images files are 1 GiB each (1024 images of 1024×1024 pixels, within the
/// 2 GiB cap), from about 1 MB of gzip, with 1024 labels of class 0.
private func writeGigabyteBombDataset(in folder: String) throws {
    let images = gzipBomb(shape: [1024, 1024, 1024], mebibytes: 1024)
    let labels = Gzip.compress(idxHeader([1024]) + [UInt8](repeating: 0, count: 1024))
    for split in ["train", "t10k"] {
        try writeBytes(images, to: folder + "/\(split)-images-idx3-ubyte.gz")
        try writeBytes(labels, to: folder + "/\(split)-labels-idx1-ubyte.gz")
    }
}

@Test func ctrlCEndsACommandWithoutAHandlerWhileAGzipBombInflates() throws {
    // `seed` reads the whole training set (its statistics normalise the rows) and installs no
    // handler: SIGINT's default action ends it at once, mid-inflation.
    try withTemporaryFolder { folder in
        try writeGigabyteBombDataset(in: folder)
        let run = try runTimed(["seed", "--data", folder], timeout: 5, signal: (SIGINT, 0.3))
        #expect(!run.timedOut)
        #expect(run.signal == SIGINT, "status \(String(describing: run.status)): \(run.standardError)")
        #expect(run.seconds < 1.3, "took \(run.seconds) s")
    }
}

@Test(arguments: [0, 0.3])
func ctrlCStopsTrainWithinASecondWhileAGzipBombInflates(after delay: Double) throws {
    // The images read in full (no --limit): `train` handles SIGINT (it finishes the step and saves),
    // so SIGINT 0.3 s in must reach the reading loop and end the run within a second, not after
    // the inflation. Sent the moment `train` has a handler (delay 0), it is `train`'s own handler
    // that answers, with status 130: there once was a moment in which another one killed the run.
    try withTemporaryFolder { folder in
        try writeGigabyteBombDataset(in: folder)
        let run = try runTimed(
            ["train", "--data", folder, "--epochs", "1", "--hidden", "8"], timeout: 5, signal: (SIGINT, delay),
            signalOnceCaught: true)
        #expect(!run.timedOut && run.signal == nil, "killed by signal \(run.signal ?? 0)")
        #expect(run.status == 128 + SIGINT, "\(run.standardError)")
        #expect(run.seconds < 1.3, "took \(run.seconds) s")
        #expect(run.peakKiB < 1 << 20, "peak memory \(run.peakKiB) KiB")
    }
}
