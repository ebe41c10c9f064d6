import Foundation
import Synchronization
import Testing

/// What a run of the built `backprop` executable printed and how it exited.
struct CommandResult {
    let status: Int32
    let standardOutput: String
    let standardError: String
    /// Whether the process ended by a signal (a crash) rather than exiting.
    let crashed: Bool
}

/// The `backprop` executable SwiftPM built next to the test binary.
func backpropExecutable() -> URL {
    Bundle.main.bundleURL.appendingPathComponent("backprop")
}

/// Runs `backprop` with `arguments` and waits for it.
func runBackprop(_ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
    try runProgram(backpropExecutable().path, arguments, environment: environment)
}

/// Whether `python3` with numpy can run here (for the tests that use a numpy script as the peer).
let numpyAvailable: Bool = {
    (try? runProgram("/usr/bin/env", ["python3", "-c", "import numpy"]).status) == 0
}()

/// Runs the program at `path` with `arguments` and waits for it, at most `timeout` seconds: a
/// program still running then is killed (SIGKILL), and its result says so on its standard error,
/// so that a hung child fails its test instead of hanging the whole run. (The default, 30 minutes,
/// is longer than `.ci/run` lets a test step run, so that in CI its watchdog, which prints the
/// stacks of every process of the step, the child's included, comes first.)
func runProgram(
    _ path: String, _ arguments: [String], environment: [String: String]? = nil, timeout: TimeInterval = 1800
) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    // Read both pipes at once: a child that fills one (64 KiB: a sanitizer's reports on standard
    // error, say) while the other is read to its end would block for ever.
    let errorData = Mutex(Data())
    let errorRead = DispatchGroup()
    DispatchQueue.global().async(group: errorRead) {
        let data = error.fileHandleForReading.readDataToEndOfFile()
        errorData.withLock { $0 = data }
    }
    let killed = Atomic<Bool>(false)
    let pid = process.processIdentifier
    let watchdog = DispatchWorkItem {
        guard process.isRunning else { return }
        killed.store(true, ordering: .sequentiallyConsistent)
        kill(pid, SIGKILL)
    }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    errorRead.wait()
    process.waitUntilExit()
    watchdog.cancel()
    var standardError = String(decoding: errorData.withLock { $0 }, as: UTF8.self)
    if killed.load(ordering: .sequentiallyConsistent) {
        standardError += "\n(runProgram: \(path) \(arguments) still ran after \(Int(timeout)) s; killed)\n"
    }
    return CommandResult(
        status: process.terminationStatus,
        standardOutput: String(decoding: outputData, as: UTF8.self),
        standardError: standardError,
        crashed: process.terminationReason == .uncaughtSignal)
}

/// Whether this test process (and so the `backprop` it runs, built the same way) runs under the
/// address or the thread sanitizer: their shadow memory inflates a process's memory several times,
/// and the address sanitizer cannot run under `ulimit -v` at all.
let underSanitizer: Bool = {
    let handle = dlopen(nil, RTLD_NOW)
    return dlsym(handle, "__asan_init") != nil || dlsym(handle, "__tsan_init") != nil
}()
