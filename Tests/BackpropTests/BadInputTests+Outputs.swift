import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropTraining

// Output that cannot be written, and output paths (Docs/BadInputs.md, "Output that cannot be
// written" and "Output paths"): a closed, full or broken standard output stops `backprop train`
// as SIGTERM does, after saving the finished epoch, with a non-zero status and never a trap; an
// output path is checked before any work, written as the bytes given, through a symbolic link to
// the file it points to, and leaves no temporary file.

// MARK: - Helpers

/// `backprop train` on the small data set in `folder`, `epochs` epochs, checkpoints in `save`.
private func trainArguments(_ folder: String, epochs: Int, save: String) -> [String] {
    ["train", "--data", folder, "--hidden", "16", "--epochs", String(epochs), "--batch-size", "50", "--save", save]
}

/// Runs `backprop` with `arguments` through `/bin/sh`, `redirection` (`>&-`, `>/dev/full`) applied.
private func runBackpropRedirected(_ arguments: [String], _ redirection: String) throws -> CommandResult {
    try runProgram("/bin/sh", ["-c", "exec \"$0\" \"$@\" " + redirection, backpropExecutable().path] + arguments)
}

/// The names in `folder` as the file system holds them (bytes, not necessarily UTF-8).
private func rawNames(in folder: String) -> Set<[UInt8]> {
    guard let directory = opendir(folder) else { return [] }
    defer { closedir(directory) }
    var names: Set<[UInt8]> = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: &entry.pointee.d_name) { Array($0.prefix(while: { $0 != 0 })) }
        if name != [46] && name != [46, 46] { names.insert(name) }
    }
    return names
}

/// Expects that `folder` holds no temporary file of an atomic write.
private func expectNoTemporaryFile(in folder: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let left = rawNames(in: folder).filter { String(decoding: $0, as: UTF8.self).contains(".tmp-") }
    #expect(left.isEmpty, "temporary files left: \(left)", sourceLocation: sourceLocation)
}

/// Expects the checkpoint at `path` to read whole with `epochs` completed epochs, and
/// `backprop evaluate` to load it.
private func expectCheckpoint(
    _ path: String, epochs: Int, data: String, sourceLocation: SourceLocation = #_sourceLocation
) throws {
    #expect(
        try TrainingCheckpoint.readState(path: path).completedEpochs == epochs, sourceLocation: sourceLocation)
    let evaluated = try runBackprop(["evaluate", "--model", path, "--data", data])
    #expect(evaluated.status == 0, "evaluate: \(evaluated.standardError)", sourceLocation: sourceLocation)
    #expect(evaluated.standardOutput.hasPrefix("test accuracy "), sourceLocation: sourceLocation)
}

// MARK: - Output that cannot be written

@Test func trainWritingIntoAPipeWithoutAReaderSavesTheEpochAndSaysSo() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 3)
        let path = folder + "/run.safetensors"
        let process = Process()
        process.executableURL = backpropExecutable()
        process.arguments = trainArguments(folder, epochs: 3, save: path)
        // A pipe whose reader has exited before the first line: every write fails with EPIPE.
        let output = Pipe()
        try output.fileHandleForReading.close()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        try output.fileHandleForWriting.close()
        let errorText = String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit, "killed by a signal: \(errorText)")
        #expect(process.terminationStatus == 128 + SIGPIPE)
        #expect(
            errorText
                == "Error: standard output: cannot write: broken pipe (the reader has exited); stopped after "
                + "epoch 1 of 3: \(path) holds epoch 1 with the optimizer's state; continue with: backprop train "
                + "--resume \(path)\n")
        try expectCheckpoint(path, epochs: 1, data: folder)
        expectNoTemporaryFile(in: folder)
    }
}

@Test(arguments: [
    (">&-", "standard output: cannot write: it is closed"),
    (">/dev/full", "standard output: cannot write: no space left on device"),
])
func trainWithStandardOutputUnwritableSavesTheEpochAndSaysSo(redirection: String, message: String) throws {
    if redirection.contains("/dev/full") && !FileManager.default.fileExists(atPath: "/dev/full") {
        return  // no /dev/full on this system
    }
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 3)
        let path = folder + "/run.safetensors"
        let run = try runBackpropRedirected(trainArguments(folder, epochs: 3, save: path), redirection)
        #expect(!run.crashed, "killed by a signal: \(run.standardError)")
        #expect(run.status == 1)
        #expect(
            run.standardError
                == "Error: \(message); stopped after epoch 1 of 3: \(path) holds epoch 1 with the optimizer's "
                + "state; continue with: backprop train --resume \(path)\n")
        try expectCheckpoint(path, epochs: 1, data: folder)
        expectNoTemporaryFile(in: folder)
    }
}

@Test func trainWithStandardErrorClosedUnderJSONStopsAfterTheEpochWithStatus1() throws {
    // With --json the progress goes to stderr: closed, its first line fails.
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 3)
        let path = folder + "/run.safetensors"
        let run = try runBackpropRedirected(trainArguments(folder, epochs: 3, save: path) + ["--json"], "2>&-")
        #expect(!run.crashed)
        #expect(run.status == 1)
        #expect(run.standardOutput.isEmpty, "the report of a run that stopped: \(run.standardOutput)")
        try expectCheckpoint(path, epochs: 1, data: folder)
        expectNoTemporaryFile(in: folder)
    }
}

/// `explain --html /dev/stderr` (or `--dot`) with standard error closed: the page went to the
/// /dev/null that fills the closed descriptor, and the command said it wrote it, exit 0.
@Test(arguments: ["--html", "--dot"])
func explainToAClosedStandardErrorFails(option: String) throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 3)
        let run = try runBackpropRedirected(
            ["explain", "--data", folder, "--rows", "2", option, "/dev/stderr"], "2>&-")
        #expect(!run.crashed)
        #expect(run.status == 1, "\(run.status): \(run.standardOutput)")
        #expect(!run.standardOutput.contains("Wrote"), "\(run.standardOutput)")
    }
}

@Test func trainWithStandardOutputClosedAfterTheRunSaysTheRunIsSaved() throws {
    // With --json, stdout is written once, at the end: the run is complete and saved.
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 3)
        let path = folder + "/run.safetensors"
        let run = try runBackpropRedirected(trainArguments(folder, epochs: 2, save: path) + ["--json"], ">&-")
        #expect(!run.crashed)
        #expect(run.status == 1)
        #expect(
            run.standardError.hasSuffix(
                "Error: standard output: cannot write: it is closed; \(path) holds the finished run\n"),
            "\(run.standardError)")
        try expectCheckpoint(path, epochs: 2, data: folder)
    }
}

/// SIGHUP, and SIGQUIT (Ctrl-\), which the Swift runtime's backtracer used to take: it printed a
/// "Program crashed" report and training went on. So did the crash signals sent by another
/// process (`kill -ABRT`, `kill -SEGV`), and the run then ended with status 0.
@Test(arguments: [SIGHUP, SIGQUIT, SIGABRT, SIGSEGV])
func trainStoppedBySIGHUPOrSIGQUITSavesTheLastEpochLikeSIGTERM(signal: Int32) throws {
    let name = [SIGHUP: "SIGHUP", SIGQUIT: "SIGQUIT", SIGABRT: "SIGABRT", SIGSEGV: "SIGSEGV"][signal]!
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 3)
        let path = folder + "/run.safetensors"
        let process = Process()
        process.executableURL = backpropExecutable()
        process.arguments = trainArguments(folder, epochs: 40, save: path)
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        // Wait for the first epoch's line, then hang up.
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains("epoch  1/40") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            seen.append(chunk)
        }
        kill(process.processIdentifier, signal)
        _ = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit, "killed by \(name) instead of stopping: \(errorText)")
        #expect(process.terminationStatus == 128 + signal)
        let done = try TrainingCheckpoint.readState(path: path).completedEpochs
        #expect(done >= 1 && done < 40)
        #expect(errorText.hasPrefix("interrupted by \(name) "), "\(errorText)")
        #expect(
            errorText.hasSuffix(
                ": \(path) holds epoch \(done) with the optimizer's state; "
                    + "continue with: backprop train --resume \(path)\n"), "\(errorText)")
        expectNoTemporaryFile(in: folder)
    }
}

/// The other commands end as by default when another process sends a crash signal, without the
/// Swift runtime's crash report (it printed one, and `seed --save` went on to status 0).
@Test func benchSentACrashSignalEndsByItWithoutACrashReport() throws {
    let process = Process()
    process.executableURL = backpropExecutable()
    process.arguments = ["bench", "--only", "seed", "--synthetic", "--runs", "1000", "--no-limits"]
    let error = Pipe()
    process.standardOutput = FileHandle.nullDevice
    process.standardError = error
    try process.run()
    Thread.sleep(forTimeInterval: 1.5)
    kill(process.processIdentifier, SIGABRT)
    let errorText = String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGABRT, "\(errorText)")
    #expect(!errorText.contains("crashed"), "\(errorText)")
}

// MARK: - Output paths

/// Runs `backprop` with `arguments` and expects one `Error:` line containing `fragment`, a
/// non-zero exit without a signal, and no file added to `folder`.
private func expectRefused(
    _ arguments: [String], in folder: String, saying fragment: String, sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let before = rawNames(in: folder)
    let run = try runBackprop(arguments)
    #expect(!run.crashed && run.status != 0, "\(arguments): \(run.standardError)", sourceLocation: sourceLocation)
    #expect(run.standardOutput.isEmpty, "\(arguments) printed \(run.standardOutput)", sourceLocation: sourceLocation)
    #expect(
        run.standardError.hasPrefix("Error: ") && run.standardError.split(separator: "\n").count == 1,
        "\(arguments): \(run.standardError)", sourceLocation: sourceLocation)
    #expect(
        run.standardError.contains(fragment), "\(arguments): \"\(run.standardError)\" lacks \"\(fragment)\"",
        sourceLocation: sourceLocation)
    #expect(rawNames(in: folder) == before, "\(arguments) left files", sourceLocation: sourceLocation)
}

/// A path longer than the system takes (PATH_MAX, 4096 bytes) to a folder that exists: the
/// outputs said "the folder … does not exist", and --data "no such folder".
@Test func pathsLongerThanTheSystemTakesAreNamedSo() throws {
    try withTemporaryFolder { folder in
        // 22 nested folders of 200 bytes: 4,421 bytes, made one `cd` at a time.
        let name = String(repeating: "d", count: 200)
        let long = Array(repeating: name, count: 22).joined(separator: "/")
        let made = try runProgram(
            "/bin/bash",
            ["-c", "cd \"$1\" && for i in $(seq 22); do mkdir \(name) && cd -P \(name) || exit 1; done", "sh", folder])
        #expect(made.status == 0, "\(made.standardError)")
        // rm(1) removes what Foundation's removal, by full paths, cannot.
        defer { _ = try? runProgram("/bin/rm", ["-rf", folder + "/" + name]) }
        func run(_ arguments: [String]) throws -> CommandResult {
            try runProgram(
                "/bin/sh",
                ["-c", "cd \"$1\" && shift && exec \"$@\"", "sh", folder, backpropExecutable().path] + arguments)
        }
        let html = try run(["explain", "--rows", "2", "--html", long + "/e.html"])
        #expect(html.status != 0 && !html.crashed, "\(html.standardError)")
        #expect(
            html.standardError.contains("the path of its folder is 4421 bytes long, more than the system takes (4095)"),
            "\(html.standardError)")
        let data = try run(["train", "--epochs", "1", "--data", long])
        #expect(data.status == 1 && !data.crashed, "\(data.standardError)")
        #expect(
            data.standardError.contains("the path is 4421 bytes long, more than the system takes (4095)"),
            "\(data.standardError)")
    }
}

@Test func outputPathsThatCannotBeWrittenAreRefusedBeforeAnyWork() throws {
    // `--data` names a folder that does not exist: an error about the output proves it came first.
    try withTemporaryFolder { folder in
        let noData = ["--data", folder + "/no-data-needed"]
        let long = String(repeating: "m", count: 250) + ".safetensors"  // 262 bytes
        try expectRefused(
            ["train", "--save", folder + "/" + long] + noData, in: folder,
            saying: "--save \(folder)/\(long): the file name is 262 bytes long; the file system allows 255")
        try expectRefused(
            ["seed", "--save", folder + "/" + long], in: folder, saying: "the file name is 262 bytes long")
        #expect(mkfifo(folder + "/fifo.svg", 0o644) == 0)
        try expectRefused(
            ["train", "--plot", folder + "/fifo.svg"] + noData, in: folder,
            saying: "--plot \(folder)/fifo.svg: is a FIFO, expected a regular file")
        // (`explain --dot /dev/null`, a stream, is written straight to: ExplainOutputTests.)
        #expect(mkdir(folder + "/folder.dot", 0o755) == 0)
        try expectRefused(
            ["explain", "--dot", folder + "/folder.dot"], in: folder,
            saying: "--dot \(folder)/folder.dot: is a folder, expected a file path")
        #expect(symlink("no/such/folder/run.safetensors", folder + "/dangling.safetensors") == 0)
        try expectRefused(
            ["train", "--save", folder + "/dangling.safetensors"] + noData, in: folder,
            saying: "--save \(folder)/dangling.safetensors: the folder \(folder)/no/such/folder does not exist")
    }
}

@Test func aNameUpToTheLimitIsWrittenThoughItsTemporaryNameWouldBeLonger() throws {
    try withTemporaryFolder { folder in
        let name = String(repeating: "n", count: 243) + ".safetensors"  // 255 bytes, the limit
        try writeAtomically([1, 2, 3], to: folder + "/" + name)
        try writeAtomically([4, 5], to: folder + "/" + name)
        #expect(rawNames(in: folder) == [Array(name.utf8)])
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))) == [4, 5])
    }
}

@Test func trainWithASaveNameOf240BytesTrainsAndSaves() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 3)
        let path = folder + "/" + String(repeating: "r", count: 228) + ".safetensors"
        let run = try runBackprop(trainArguments(folder, epochs: 2, save: path))
        #expect(run.status == 0, "\(run.standardError)")
        try expectCheckpoint(path, epochs: 2, data: folder)
        expectNoTemporaryFile(in: folder)
    }
}

@Test func writingThroughASymbolicLinkReplacesItsTargetAndResumeFollowsIt() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 3)
        try FileManager.default.createDirectory(atPath: folder + "/runs", withIntermediateDirectories: false)
        let link = folder + "/latest.safetensors"
        let target = folder + "/runs/run.safetensors"
        #expect(symlink("runs/run.safetensors", link) == 0)  // relative to the link's folder
        let stopped = try runProgram(
            "/bin/sh",
            ["-c", "exec \"$0\" \"$@\" >&-", backpropExecutable().path] + trainArguments(folder, epochs: 3, save: link))
        #expect(stopped.status == 1, "\(stopped.standardError)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == "runs/run.safetensors")
        #expect(try TrainingCheckpoint.readState(path: target).completedEpochs == 1)

        let resumed = try runBackprop(["train", "--resume", link, "--data", folder])
        #expect(resumed.status == 0, "\(resumed.standardError)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == "runs/run.safetensors")
        #expect(try TrainingCheckpoint.readState(path: target).completedEpochs == 3)
        #expect(rawNames(in: folder + "/runs") == [Array("run.safetensors".utf8)])
        expectNoTemporaryFile(in: folder)
    }
}

@Test func outputNamesThatAreNotUTF8AreWrittenAsTheBytesGiven() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 3)
        // `caf\xE9` (Latin-1) and `p\xFF`: neither is UTF-8; Swift would read both with U+FFFD.
        let script =
            "exec \"$0\" train --data \"$1\" --hidden 16 --epochs 1 --batch-size 50 "
            + "--save \"$1/$(printf 'caf\\351').safetensors\" --plot=\"$1/$(printf 'p\\377').svg\""
        let run = try runProgram("/bin/sh", ["-c", script, backpropExecutable().path, folder])
        #expect(run.status == 0, "\(run.standardError)")
        let names = rawNames(in: folder)
        #expect(names.contains(Array("caf".utf8) + [0xE9] + Array(".safetensors".utf8)), "\(names)")
        #expect(names.contains([UInt8(ascii: "p"), 0xFF] + Array(".svg".utf8)), "\(names)")
        // Not the UTF-8 of U+FFFD, the replacement character, which a String would have put there.
        #expect(!names.contains { $0.firstRange(of: [0xEF, 0xBF, 0xBD]) != nil }, "\(names)")
        expectNoTemporaryFile(in: folder)
    }
}

/// The Python that `export` prints names an output that is not UTF-8 so that Python opens that
/// very file (`\udce9`, surrogateescape); it used to name `caf\u{FFFD}`, a file that does not exist.
@Test func exportScriptsNameAnOutputThatIsNotUTF8AsPythonOpensIt() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 4)
        let model = folder + "/m.safetensors"
        let trained = try runBackprop(
            ["train", "--data", folder, "--hidden", "8", "--epochs", "1", "--batch-size", "50", "--save", model])
        #expect(trained.status == 0, "\(trained.standardError)")
        for (format, suffix) in [("pytorch", "safetensors"), ("onnx", "onnx")] {
            let script =
                "exec \"$0\" export \"$1/m.safetensors\" --format \(format) \"$1/$(printf 'caf\\351').\(suffix)\""
            let run = try runProgram("/bin/sh", ["-c", script, backpropExecutable().path, folder])
            #expect(run.status == 0, "\(run.standardError)")
            // The literal the script opens, evaluated by Python: it must name the file written.
            let line = try #require(
                run.standardOutput.split(separator: "\n").first { $0.contains("(\"") && $0.contains("caf") },
                "\(run.standardOutput)")
            let literal = try #require(line.firstRange(of: "\"").map { line[$0.lowerBound...] }).prefix { $0 != ")" }
            #expect(literal.contains("\\udce9"), "\(line)")
            let check = try runProgram(
                "/usr/bin/env", ["python3", "-c", "import os, sys; sys.exit(0 if os.path.isfile(\(literal)) else 1)"])
            #expect(check.status == 0, "\(format): \(line): \(check.standardError)")
        }
    }
}

/// Starts `backprop train` with a large model on 5 rows (quick epochs, slow 50 MB saves), sends
/// SIGINT as soon as a save's temporary file appears and again every millisecond while it runs
/// (at most 200 times), and waits. Returns whether a second signal ended the process (nothing on
/// stderr: the first one's stop, which prints its line, had not come yet).
private func interruptTwiceDuringASave(in folder: String) throws -> Bool {
    let process = Process()
    process.executableURL = backpropExecutable()
    process.arguments =
        trainArguments(folder, epochs: 40, save: folder + "/big.safetensors") + [
            "--hidden", "2048,2048", "--limit", "6",
        ]
    let error = Pipe()
    process.standardOutput = FileHandle.nullDevice
    process.standardError = error
    try process.run()
    let deadline = Date().addingTimeInterval(60)
    var seen = false
    while process.isRunning && Date() < deadline {
        if rawNames(in: folder).contains(where: { String(decoding: $0, as: UTF8.self).contains(".tmp-") }) {
            // Signals of one kind do not queue: two sent before the process runs again arrive as
            // one (on a loaded machine, a fixed 2 ms between them often was not enough).
            for _ in 0..<200 where process.isRunning {
                kill(process.processIdentifier, SIGINT)
                usleep(1000)
            }
            seen = true
            break
        }
        usleep(500)
    }
    if !seen { process.terminate() }
    let errorText = String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(seen, "no save was seen in progress")
    #expect(process.terminationReason == .exit, "killed by the signal")
    #expect(process.terminationStatus == 128 + SIGINT)
    return errorText.isEmpty
}

@Test func aSecondSignalDuringASaveLeavesNoTemporaryFile() throws {
    // The second signal ends the process at once; its handler removes the save's temporary file
    // first. Up to 3 tries, until the second signal has come before the end of the save.
    var endedBySecondSignal = false
    for _ in 0..<3 where !endedBySecondSignal {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 3)
            endedBySecondSignal = try interruptTwiceDuringASave(in: folder)
            expectNoTemporaryFile(in: folder)
        }
    }
    #expect(endedBySecondSignal, "the saves ended before the second signal each time")
}

@Test func theTemporaryFileOfAKilledWriterOfALongNameIsStillRemoved() throws {
    // Its temporary name was cut to fit 255 bytes: `.` + the first 222 bytes + `.tmp-<pid>-<16 hex>`
    // (room for a pid of 10 digits); the next write of the same name finds and removes it.
    let finished = Process()
    finished.executableURL = URL(fileURLWithPath: "/bin/true")
    try finished.run()
    finished.waitUntilExit()
    try withTemporaryFolder { folder in
        let name = String(repeating: "k", count: 243) + ".safetensors"  // 255 bytes
        let stale = "." + name.prefix(222) + ".tmp-\(finished.processIdentifier)-0123456789abcdef"
        try writeBytes([1], to: folder + "/" + stale)
        try writeAtomically([2], to: folder + "/" + name)
        #expect(rawNames(in: folder) == [Array(name.utf8)])
    }
}

@Test func aSignalDuringASaveOfSeedLeavesNoTemporaryFile() throws {
    // Commands that do not poll for a stop (`seed`, `explain`, `evaluate`, …) end at the first
    // signal, killed by it as by default; their handler first removes the temporary file of a
    // save in progress. `seed --save` of a 20,000 × 784 `x.g` (63 MB) is slow enough to be caught
    // in the middle: the test waits for the temporary file to appear, then sends SIGINT.
    var caught = false
    for _ in 0..<3 where !caught {
        try withTemporaryFolder { folder in
            var generator = RandomGenerator(seed: 5)
            let inputs = folder + "/inputs.safetensors"
            try Safetensors.write(
                [
                    "x": Tensor.randn([20_000, 784], generator: &generator),
                    "y": Tensor.randn([20_000], generator: &generator),
                ],
                to: inputs)
            let process = Process()
            process.executableURL = backpropExecutable()
            process.arguments = ["seed", "--tensors", inputs, "--hidden", "4", "--save", folder + "/seed.safetensors"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(60)
            while process.isRunning && Date() < deadline {
                if rawNames(in: folder).contains(where: { String(decoding: $0, as: UTF8.self).contains(".tmp-") }) {
                    kill(process.processIdentifier, SIGINT)
                    caught = true
                    break
                }
                usleep(200)
            }
            process.waitUntilExit()
            if caught {
                #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGINT)
            }
            expectNoTemporaryFile(in: folder)
        }
    }
    #expect(caught, "no save was seen in progress")
}

@Test func helpAndVersionToAnUnwritableStandardOutputFail() throws {
    // ArgumentParser prints --help and --version itself and exits 0; backprop writes them through
    // its checked stream, so that a closed or full standard output is an error as for any output.
    for (arguments, redirection, message) in [
        (["--version"], ">/dev/full", "Error: standard output: cannot write: no space left on device"),
        (["--help"], ">&-", "Error: standard output: cannot write: it is closed"),
        (["train", "--help"], ">/dev/full", "Error: standard output: cannot write: no space left on device"),
    ] {
        let run = try runBackpropRedirected(arguments, redirection)
        #expect(!run.crashed && run.status == 1, "\(arguments) \(redirection): status \(run.status)")
        #expect(run.standardError == message + "\n", "\(arguments) \(redirection): \(run.standardError)")
    }
    let version = try runBackprop(["--version"])
    #expect(version.status == 0 && version.standardOutput == "0.1.0\n" && version.standardError.isEmpty)
    // A command's report too (`near`, which passes here: status 0 with a writable output).
    try withTemporaryFolder { folder in
        let file = folder + "/a.safetensors"
        try Safetensors.write(["w": Tensor([1, 2, 3])], to: file)
        let passed = try runBackprop(["near", file, file])
        #expect(passed.status == 0, "\(passed.standardError)")
        let full = try runBackpropRedirected(["near", file, file], ">/dev/full")
        #expect(!full.crashed && full.status == 1, "status \(full.status)")
        #expect(
            full.standardError == "Error: standard output: cannot write: no space left on device\n",
            "\(full.standardError)")
        // Printed through `print`, whose failed write loses its errno: /dev/full is still named as
        // full ("a write failed, the output is incomplete" before).
        try writeRandomDataset(in: folder, seed: 4)
        let explained = try runBackpropRedirected(["explain", "--rows", "4", "--data", folder], ">/dev/full")
        #expect(!explained.crashed && explained.status == 1, "status \(explained.status)")
        #expect(
            explained.standardError == "Error: standard output: cannot write: no space left on device\n",
            "\(explained.standardError)")
    }
}

@Test func aDataFolderWhoseNameIsNotUTF8IsRead() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 3)
        // `data\xE9` (Latin-1): Swift reads the argument with U+FFFD, which names no folder.
        let script =
            "d=\"$1/data$(printf '\\351')\"; mkdir \"$d\" && cp \"$1\"/*-ubyte \"$d\"/ && "
            + "exec \"$0\" train --data \"$d\" --hidden 16 --epochs 1 --batch-size 50"
        let run = try runProgram("/bin/sh", ["-c", script, backpropExecutable().path, folder])
        #expect(run.status == 0, "\(run.standardError)")
        #expect(run.standardOutput.contains("test accuracy"), "\(run.standardOutput)")
        #expect(rawNames(in: folder).contains(Array("data".utf8) + [0xE9]))
        // The same folder from $BACKPROP_DATA, which Swift repairs alike: it was "no such folder".
        let fromEnvironment = try runProgram(
            "/bin/sh",
            [
                "-c",
                "BACKPROP_DATA=\"$1/data$(printf '\\351')\" exec \"$0\" train --hidden 16 --epochs 1 --batch-size 50",
                backpropExecutable().path, folder,
            ])
        #expect(fromEnvironment.status == 0, "\(fromEnvironment.standardError)")
        #expect(fromEnvironment.standardOutput.contains("test accuracy"), "\(fromEnvironment.standardOutput)")
    }
}
