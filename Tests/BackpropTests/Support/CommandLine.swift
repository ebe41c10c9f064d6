import Foundation
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

/// Runs the program at `path` with `arguments` and waits for it.
func runProgram(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    // Read both pipes before waiting, so that a large output cannot fill a pipe and block.
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(
        status: process.terminationStatus,
        standardOutput: String(decoding: outputData, as: UTF8.self),
        standardError: String(decoding: errorData, as: UTF8.self),
        crashed: process.terminationReason == .uncaughtSignal)
}

/// Whether this test process (and so the `backprop` it runs, built the same way) runs under the
/// address or the thread sanitizer: their shadow memory inflates a process's memory several times,
/// and the address sanitizer cannot run under `ulimit -v` at all.
let underSanitizer: Bool = {
    let handle = dlopen(nil, RTLD_NOW)
    return dlsym(handle, "__asan_init") != nil || dlsym(handle, "__tsan_init") != nil
}()
