import CKernels
import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropNetwork
@testable import BackpropTraining

// Issue 12, families 1 and 2: sizes that cannot be had are errors before the work starts (or a
// clean exit where memory runs out), and the settings a checkpoint carries to `--resume` are
// checked exactly as the command line's are.

/// Runs `backprop arguments` under `ulimit -v kibibytes`, with a time limit.
private func runUnderMemoryLimit(_ kibibytes: Int, _ arguments: [String], seconds: Int = 20) throws -> CommandResult {
    let quoted = arguments.map { "'\($0)'" }.joined(separator: " ")
    return try runProgram(
        "/bin/sh",
        ["-c", "ulimit -v \(kibibytes); exec timeout -s KILL \(seconds) '\(backpropExecutable().path)' \(quoted)"])
}

@Suite("Bad inputs: sizes that cannot be had, settings read from a checkpoint")
struct SizesAndResumeTests {
    static let valid = TrainingConfiguration(hidden: [16, 8], epochs: 3, batchSize: 32, learningRate: 0.01)

    @Test("every setting out of range is named by its option, with what was expected and found")
    func settingsOutOfRange() {
        var cases: [(TrainingConfiguration, Int?, String, String)] = []
        func with(_ change: (inout TrainingConfiguration) -> Void) -> TrainingConfiguration {
            var configuration = Self.valid
            change(&configuration)
            return configuration
        }
        cases.append((with { $0.epochs = 0 }, nil, "--epochs", "expected a positive number, found 0"))
        cases.append((with { $0.batchSize = -3 }, nil, "--batch-size", "expected a positive number, found -3"))
        cases.append((with { $0.learningRate = .nan }, nil, "--lr", "expected a positive number, found nan"))
        cases.append((with { $0.learningRate = 0 }, nil, "--lr", "expected a positive number, found 0.0"))
        cases.append((with { $0.weightDecay = -1 }, nil, "--weight-decay", "found -1.0 with --lr 0.01"))
        cases.append((with { $0.weightDecay = 200 }, nil, "--weight-decay", "--lr × --weight-decay < 1"))
        cases.append((with { $0.hidden = [16, 0] }, nil, "--hidden", "positive sizes such as 256,128, found 0"))
        cases.append((Self.valid, 5, "--limit", "expected at least 6 images (one sixth validate), found 5"))
        cases.append((with { $0.epochs = Int.max / 2 }, nil, "--epochs", "expected at most"))
        cases.append((with { $0.hidden = [1 << 20, 1 << 20] }, nil, "--hidden", "this machine has"))
        cases.append((with { $0.hidden = [Int.max / 2, 4] }, nil, "--hidden", "more parameters than can be counted"))
        // A hidden layer whose weights fit in memory but whose batch of 60,000 rows does not:
        // about 12,700 bytes of parameters and state per unit, 480,000 bytes of a batch per unit.
        let units = Int(ProcessInfo.processInfo.physicalMemory / 100_000)
        cases.append(
            (
                with {
                    $0.hidden = [units]; $0.batchSize = Int.max
                }, nil, "--batch-size", "for the layers' outputs"
            ))
        for (configuration, limit, option, fragment) in cases {
            do {
                try configuration.validate(limit: limit)
                Issue.record("\(option) \(fragment): no error")
            } catch {
                #expect(error.option == option, "\(error)")
                #expect(error.description.hasPrefix(option + ": "), "\(error)")
                #expect(error.problem.contains(fragment), "\(error) lacks '\(fragment)'")
            }
        }
        #expect(throws: Never.self) { try Self.valid.validate(limit: 6) }
        #expect(throws: Never.self) { try TrainingConfiguration().validate() }  // the default recipe
        #expect(throws: Never.self) { try TrainingConfiguration().validate(limit: Int.max) }
    }

    @Test("a batch size as large as an Int gives one batch of every row, without overflow")
    func hugeBatchSize() {
        let x = Tensor(shape: [10, 3], values: (0..<30).map(Float.init))
        let batches = Batches(x: x, y: Tensor((0..<10).map(Float.init)), batchSize: Int.max)
        #expect(batches.count == 1)
        #expect(batches.batch(0).x.shape == [10, 3])
        #expect(Batches(x: x, y: Tensor((0..<10).map(Float.init)), batchSize: 3).count == 4)
    }

    /// A folder of fewer images than Fashion-MNIST's: the batch-norm check counts the training rows
    /// it holds (600 read, 500 train), not the 50,000 of the full set. Batches of 499 leave a last
    /// batch of one row, which a batch norm over features cannot train on; `train` used to meet it
    /// in `BatchNorm`'s precondition (a trap), as `--resume` of a run saved on other data did.
    @Test("train counts the rows of the data folder it was given when it checks the batches a batch norm sees")
    func batchNormCheckCountsTheFolder() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 21)
            let run = try runBackprop([
                "train", "--data", folder, "--epochs", "1", "--batch-size", "499", "--layers", "batchnorm, lin 10",
            ])
            #expect(run.status == 1 && !run.crashed, "\(run.standardError)")
            #expect(
                run.standardError.hasPrefix("Error: --batch-size: the last batch of each epoch (500 training rows)"),
                "\(run.standardError)")
            #expect(run.standardError.contains("(for the 500 training images of shape [1, 4, 4] in \(folder)"))
            let fits = try runBackprop([
                "train", "--data", folder, "--epochs", "1", "--batch-size", "498", "--layers", "batchnorm, lin 10",
            ])
            #expect(fits.status == 0, "\(fits.standardError)")
        }
    }

    /// A training checkpoint of `valid`'s run after one epoch, with `edit` applied to its
    /// metadata and tensors, rewritten at `path`.
    static func editedCheckpoint(
        at path: String, _ edit: (inout [String: String], inout [String: Tensor]) -> Void
    ) throws {
        var generator = RandomGenerator(seed: 3)
        let x = Tensor.randn([64, 12], generator: &generator)
        let y = Tensor((0..<64).map { Float($0 % 10) })
        let trainer = Trainer(configuration: Self.valid, classes: 10, train: (x, y), valid: (x, y))
        try trainer.fit(shouldStop: { trainer.epoch == 1 })
        try TrainingCheckpoint.save(trainer, configuration: Self.valid, limit: nil, to: path)
        try editSafetensors(at: path, edit)
    }

    @Test(
        "settings read from a checkpoint are checked as the command line checks them",
        arguments: [
            ("\"epochs\":3", "\"epochs\":0", "--epochs: expected a positive number, found 0"),
            ("\"batch_size\":32", "\"batch_size\":-1", "--batch-size: expected a positive number, found -1"),
            ("\"weight_decay\":0.1", "\"weight_decay\":1000", "--weight-decay: expected a number ≥ 0"),
            ("\"hidden\":[16,8]", "\"hidden\":[16,-8]", "--hidden: expected comma-separated positive sizes"),
        ])
    func resumedSettingsAreChecked(original: String, replacement: String, message: String) throws {
        let problem = try Self.trainingSettingsProblem(replacing: original, with: replacement)
        #expect(problem?.contains("holds a setting out of range: " + message) == true, "\(problem ?? "no error")")
    }

    /// What `TrainingCheckpoint.readState` says of a checkpoint whose `training` metadata has
    /// `original` replaced by `replacement` (`nil` if it reads), after checking that the error names
    /// the file.
    static func trainingSettingsProblem(replacing original: String, with replacement: String) throws -> String? {
        try withTemporaryFolder { folder in
            let path = folder + "/run.safetensors"
            try editedCheckpoint(at: path) { metadata, _ in
                let training = metadata["training"] ?? ""
                #expect(training.contains(original), "\(training) lacks \(original)")
                metadata["training"] = training.replacingOccurrences(of: original, with: replacement)
            }
            do {
                _ = try TrainingCheckpoint.readState(path: path)
                return nil
            } catch let error as DataError {
                #expect(error.path == path)
                return error.problem
            }
        }
    }

    @Test("a NaN in the weights or the optimizer's state is named, with the tensor and the element")
    func nonFiniteValuesInACheckpointAreNamed() throws {
        for (name, value, word) in [("layers.0.w", Float.nan, "NaN"), ("optimizer.0.m", Float.infinity, "an infinity")]
        {
            try withTemporaryFolder { folder in
                let path = folder + "/run.safetensors"
                var found = true
                try Self.editedCheckpoint(at: path) { _, tensors in
                    guard let tensor = tensors[name] else {
                        found = false
                        return
                    }
                    let copy = tensor.copy()
                    copy.withUnsafeMutableBufferPointer { $0[13] = value }
                    tensors[name] = copy
                }
                try #require(found, "the checkpoint has no tensor \(name)")
                var generator = RandomGenerator(seed: 3)
                let x = Tensor.randn([64, 12], generator: &generator)
                let y = Tensor((0..<64).map { Float($0 % 10) })
                let trainer = Trainer(configuration: Self.valid, classes: 10, train: (x, y), valid: (x, y))
                do {
                    try TrainingCheckpoint.restore(trainer, from: path)
                    Issue.record("\(name): no error")
                } catch let error as DataError {
                    #expect(error.path == path)
                    #expect(error.problem.contains("tensor '\(name)' holds \(word) at"), "\(error)")
                    #expect(error.problem.contains("the file is damaged"), "\(error)")
                }
                if name.hasPrefix("layers.") {
                    #expect(throws: DataError.self) { try Checkpoint.load(path: path) }
                }
            }
        }
    }

    @Test(
        "under a tight ulimit -v, --version exits at once and a run too large fails with one line",
        .enabled(if: !underSanitizer, "the sanitizers reserve terabytes of address space: no ulimit -v"),
        .enabled(if: fashionMNISTInstalled, "needs Fashion-MNIST"))
    func memoryLimits() throws {
        let version = try runUnderMemoryLimit(200_000, ["--version"], seconds: 20)
        #expect(version.status == 0 && !version.crashed, "\(version.standardError)")
        #expect(version.standardOutput.contains("0.1.0"))
        // The seed's full-batch step needs about 400 MiB: under 400 MB of address space it cannot
        // have its gradients, and says so.
        let seed = try runUnderMemoryLimit(400_000, ["seed"], seconds: 60)
        #expect(!seed.crashed, "\(seed.standardError)")
        #expect(seed.status == 1, "\(seed.standardError)")
        let lines = seed.standardError.split(separator: "\n")
        #expect(lines.count == 1, "\(seed.standardError)")
        #expect(seed.standardError.hasPrefix("Error: out of memory: could not allocate"), "\(seed.standardError)")
        // The advice in seed's own options (it was `--limit, --rows`, which seed does not take).
        #expect(
            seed.standardError.hasSuffix("try a smaller --hidden, or --tensors with fewer rows\n"),
            "\(seed.standardError)")
    }

    @Test(
        "OpenBLAS starts no threads: with no room for a thread's stack the tool runs, whatever OPENBLAS_NUM_THREADS says",
        .enabled(if: !underSanitizer, "the sanitizers reserve terabytes of address space: no ulimit -v"))
    func noOpenBLASThreads() throws {
        // OpenBLAS used to start a thread per core as it loaded, before `main`, and to raise SIGINT
        // (status 130, two lines from OpenBLAS) when it could not: each thread's stack takes the
        // stack limit. The tool's start-up (CStartup) now runs before OpenBLAS loads.
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 14)
            let executable = backpropExecutable().path
            let settings = ["env -u OPENBLAS_NUM_THREADS", "env OPENBLAS_NUM_THREADS=2", "env OPENBLAS_NUM_THREADS=1"]
            for environment in settings {
                for command in ["--version", "train --data '\(folder)' --epochs 1"] {
                    let result = try runProgram(
                        "/bin/sh",
                        [
                            "-c",
                            "ulimit -s 500000; ulimit -v 400000; "
                                + "exec \(environment) timeout -s KILL 60 '\(executable)' \(command)",
                        ])
                    #expect(result.status == 0 && !result.crashed, "\(environment) \(command): \(result.standardError)")
                    #expect(!result.standardError.contains("OpenBLAS"), "\(environment): \(result.standardError)")
                    if command == "--version" { #expect(result.standardOutput == "0.1.0\n") }
                }
            }
        }
    }

    @Test("past a file-size limit (ulimit -f), a save or the output fails with one line, and leaves no file")
    func fileSizeLimit() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 12)
            // 100 KiB: the checkpoint of the default MLP, with Adam's state, is about 460 KiB.
            func underLimit(_ command: String, kibibytes: Int = 100) throws -> CommandResult {
                try runProgram(
                    "/bin/sh", ["-c", "ulimit -f \(kibibytes); exec '\(backpropExecutable().path)' \(command)"])
            }
            let save = try underLimit("train --data '\(folder)' --epochs 1 --save '\(folder)/run.safetensors'")
            // It used to be killed by SIGXFSZ, leaving `.run.safetensors.tmp-…` behind.
            #expect(save.status == 1 && !save.crashed, "\(save.status) \(save.standardError)")
            #expect(
                save.standardError
                    == "Error: \(folder)/run.safetensors: cannot write: file too large; the run stopped after epoch 1 "
                    + "of 1, nothing saved\n")

            let left = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains("run.") }
            #expect(left.isEmpty, "\(left)")
            // Standard output into a file past the limit (1 KiB; the walkthrough is about 8 KiB): named as
            // any failed write of it is.
            let output = try underLimit("explain --data '\(folder)' --rows 6 > '\(folder)/explained.txt'", kibibytes: 1)
            #expect(output.status == 1 && !output.crashed, "\(output.status) \(output.standardError)")
            // (What `print` failed on is not kept by C's stdio: the file found at the limit says it.)
            #expect(output.standardError == "Error: standard output: cannot write: file too large\n")
        }
    }

    /// The last save, after the test, adds the test results to the file the last epoch's save
    /// wrote; when only it fails, the error said nothing of the finished run or of that file.
    @Test("a last save that fails past a file-size limit says the run finished and what the file holds")
    func lastSaveFails() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 12)
            let path = folder + "/run.safetensors"
            let arguments = ["train", "--data", folder, "--epochs", "1", "--hidden", "8", "--save", path]
            let whole = try runBackprop(arguments)
            #expect(whole.status == 0, "\(whole.standardError)")
            // The last file's size, less part of what its test results add: the epoch's file fits
            // (its history's timing varies by a few bytes), the last does not.
            let size = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
            let metadata = try Safetensors.read(path: path).metadata
            let results = try #require(metadata["test_accuracy"]).count + (metadata["valid_accuracy"] ?? "").count + 34
            try FileManager.default.removeItem(atPath: path)
            let quoted = arguments.map { "'\($0)'" }.joined(separator: " ")
            let run = try runProgram(
                "/bin/sh",
                ["-c", "exec prlimit --fsize=\(size - results / 2) '\(backpropExecutable().path)' \(quoted)"])
            #expect(run.status == 1 && !run.crashed, "\(run.standardError)")
            #expect(
                run.standardError.hasPrefix(
                    "Error: \(path): cannot write: file too large; the run finished all 1 epochs, "),
                "\(run.standardError)")
            #expect(
                run.standardError.hasSuffix(
                    ": \(path) holds epoch 1 with the optimizer's state, without the test results\n"),
                "\(run.standardError)")
            #expect(try TrainingCheckpoint.readState(path: path).completedEpochs == 1)
            #expect(try Safetensors.read(path: path).metadata["test_accuracy"] == nil)
            let left = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".tmp-") }
            #expect(left.isEmpty, "\(left)")
        }
    }

    @Test(
        "under a small stack limit (ulimit -s), the commands run as usual",
        .enabled(if: !underSanitizer, "the sanitizers' own stack use is not the program's"))
    func smallStackLimit() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 13)
            // 32 and 64 KiB (the usual limit is 8 MiB; at 8 KiB even /bin/true cannot start). train
            // overflowed its stack under 64 KiB (SIGSEGV): the command now runs on a thread of its own.
            for kibibytes in [32, 64] {
                for command in [
                    "train --data '\(folder)' --epochs 1 --layers 'conv 4 3 pad 1, relu, maxpool 2, flatten, lin 10'",
                    "train --data '\(folder)' --epochs 1 --save '\(folder)/run.safetensors'",
                    "evaluate --data '\(folder)' --model '\(folder)/run.safetensors'",
                    "explain --data '\(folder)' --rows 4",
                    "gradcheck --data '\(folder)' --rows 4",
                ] {
                    let run = try runProgram(
                        "/bin/sh",
                        ["-c", "ulimit -s \(kibibytes); exec '\(backpropExecutable().path)' \(command)"])
                    #expect(
                        run.status == 0 && !run.crashed,
                        "ulimit -s \(kibibytes), \(command): status \(run.status)\n\(run.standardError.prefix(2000))")
                }
            }
        }
    }

    /// Just above what loading the program takes, the libraries' initialisers or the parsing of
    /// the arguments ran out of memory: SIGILL, SIGSEGV or an abort, in bands a few hundred KiB wide.
    @Test(
        "just above the address space loading takes, the tool starts or says in one line that it cannot",
        .enabled(if: !underSanitizer, "the sanitizers reserve terabytes of address space: no ulimit -v"))
    func startUnderATightMemoryLimit() throws {
        // The loader's own limit (status 127, its message), found in steps of 1 MB, then 20 MB above
        // it in steps of 100 KB.
        var loading = 60_000
        while try runUnderMemoryLimit(loading, ["--version"]).status == 127 && loading < 1_000_000 { loading += 1_000 }
        var outcomes: Set<Int32> = []
        for kibibytes in stride(from: loading - 1_000, through: loading + 20_000, by: 100) {
            let run = try runUnderMemoryLimit(kibibytes, ["--version"])
            let context = "ulimit -v \(kibibytes): status \(run.status)\n\(run.standardError.prefix(500))"
            #expect(!run.crashed && [0, 1, 127].contains(run.status), "\(context)")
            if run.status == 1 {
                #expect(
                    run.standardError
                        == "Error: out of memory: the address space limit (ulimit -v) leaves less than 16 MiB to run "
                        + "the command in; raise the limit\n", "\(context)")
            }
            outcomes.insert(run.status)
        }
        #expect(outcomes.isSuperset(of: [0, 1]), "\(outcomes)")
    }

    /// A 20 GB sparse file was read whole (and a 4 GB one took 4 GB and 9 s) before its header
    /// was found not to be JSON; under `ulimit -v` it ran out of memory instead of saying so.
    @Test(
        "a large safetensors file that is not one is refused from its header, before its bulk is read",
        .enabled(if: !underSanitizer, "the sanitizers reserve terabytes of address space: no ulimit -v"))
    func largeFileRefusedFromItsHeader() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/sparse.safetensors"
            #expect(FileManager.default.createFile(atPath: path, contents: nil))
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.truncate(atOffset: 3 << 30)  // 3 GiB of zeros, sparse: a header length of 0
            try handle.close()
            for command in [["near", path, path], ["evaluate", "--model", path]] {
                let run = try runUnderMemoryLimit(1_000_000, command, seconds: 60)
                #expect(!run.crashed && run.status != 0, "\(command): \(run.standardError)")
                #expect(
                    run.standardError.contains("header is not valid JSON") && !run.standardError.contains("memory"),
                    "\(command): \(run.standardError)")
            }
        }
    }

    /// Under a small `ulimit -s` the command runs on a thread of its own; where that thread could
    /// not be started (`ulimit -u`) it ran on the small stack, and overflowed it (SIGSEGV).
    @Test("a thread that cannot be started is an error, not a run on a small stack")
    func stackThreadRefused() throws {
        // A stack no mapping can give: the thread is not created, and the function says why.
        #expect(bp_run_on_stack(1 << 50, { _ in fatalError("ran without its thread") }, nil) != 0)
        // The whole tool, as a user who may start one process (root ignores ulimit -u).
        let setpriv = "/usr/bin/setpriv"
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: setpriv), !underSanitizer else { return }
        let run = try runProgram(
            setpriv,
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/bash", "-c",
                "ulimit -s 32; ulimit -u 1; exec '\(backpropExecutable().path)' --version",
            ])
        #expect(!run.crashed && run.status == 1, "status \(run.status): \(run.standardError.prefix(500))")
        #expect(
            run.standardError.hasPrefix(
                "Error: the stack limit (ulimit -s) is 32 KiB, and a thread with a stack of 8 MiB, on which a command "
                    + "runs under a smaller limit, could not be started (Resource temporarily unavailable)"),
            "\(run.standardError)")
    }

    @Test(
        "under any memory limit, train ends: it finishes, or says in one line that memory ran out",
        .enabled(if: !underSanitizer, "the sanitizers reserve terabytes of address space: no ulimit -v"),
        .enabled(if: fashionMNISTInstalled, "needs Fashion-MNIST"))
    func memoryLimitSweep() throws {
        // From too little to load the data (a Swift array: checked before it is made) through too
        // little for OpenBLAS's work buffers (which it would otherwise retry for ever, spinning)
        // to enough, in steps small enough to meet the allocations in between (a product's packing
        // buffer, allocated in C on whichever thread runs the product, once aborted here). Each limit
        // gets a fresh process; none may trap or hang. The convolutions' scratch gets a sweep of
        // its own, from a network that starts with one. (Below about 130 MB the program does not
        // reach `main`: the loader cannot map its libraries, or OpenBLAS, as it loads, cannot
        // start its threads and raises SIGINT; so the sweep starts at 140 MB.)
        // `--hidden 512`: its validation, `(200, 784) • (784, 512)`, goes to BLAS (the default MLP's
        // products, at most 256 columns wide, all run Backprop's kernels, which need no such buffers).
        var outcomes: Set<String> = []
        let mlp = ["train", "--epochs", "1", "--limit", "1200", "--hidden", "512"]
        let convnet = [
            "train", "--layers", "conv 8 3 pad 1, relu, maxpool 2, flatten, lin 10", "--epochs", "1", "--limit", "300",
        ]
        let runs =
            stride(from: 140_000, through: 330_000, by: 10_000).map { ($0, mlp) }
            + stride(from: 380_000, through: 730_000, by: 50_000).map { ($0, mlp) }
            + stride(from: 140_000, through: 240_000, by: 10_000).map { ($0, convnet) }
        for (kibibytes, arguments) in runs {
            let run = try runUnderMemoryLimit(kibibytes, arguments, seconds: 60)
            let context =
                "ulimit -v \(kibibytes), \(arguments.joined(separator: " ")): status \(run.status)\n\(run.standardError)"
            #expect(!run.crashed && (run.status == 0 || run.status == 1), "\(context)")
            if run.status == 1 {
                #expect(run.standardError.split(separator: "\n").count == 1, "\(context)")
                // (Or, at the low end, too little address space left to start: CStartup.)
                #expect(run.standardError.hasPrefix("Error: out of memory: "), "\(context)")
                if run.standardError.contains("work buffers of OpenBLAS") {
                    outcomes.insert("blas")
                    #expect(
                        run.standardError.hasSuffix(
                            "try fewer threads (--threads 1, or BACKPROP_THREADS=1): OpenBLAS maps a buffer of 128 MiB for each "
                                + "thread that multiplies\n"))
                }
                if run.standardError.contains("contents of") { outcomes.insert("array") }
            } else {
                outcomes.insert("trained")
            }
        }
        // The sweep reached each kind of ending (it is wide enough to meet the two new checks).
        #expect(outcomes.contains("trained"), "\(outcomes)")
        if MatMulKernel.hasBLAS { #expect(outcomes.contains("blas"), "\(outcomes)") }
    }

    /// Where a limit leaves room for OpenBLAS's work buffers by a little, the probe before them
    /// passed but memory went before the buffers were mapped, and OpenBLAS retried the mapping
    /// for ever (a helper's sweep: `bench --only matmul` at `ulimit -v` 545000-555000 spun at
    /// 100% of a core, every time). The reservation now gives up after 10 s and says so.
    @Test(
        "under limits that barely leave room for OpenBLAS's buffers, bench ends: it runs, or says memory ran out",
        .enabled(if: !underSanitizer, "the sanitizers reserve terabytes of address space: no ulimit -v"))
    func benchMemoryLimitSweep() throws {
        let arguments = ["bench", "--only", "matmul", "--rows", "1000", "--runs", "1", "--synthetic"]
        // A run takes 3-37 s in a debug build (10 s of it where the reservation gives up; 90 runs
        // of this sweep alone, beside a build); beside the rest of the suite, one took over 90 s
        // (CI, 2026-12-07). A spin never ends, so a generous limit still catches it.
        for kibibytes in stride(from: 520_000, through: 580_000, by: 10_000) {
            let run = try runUnderMemoryLimit(kibibytes, arguments, seconds: 240)
            let context = "ulimit -v \(kibibytes): status \(run.status)\n\(run.standardError)"
            #expect(!run.crashed && (run.status == 0 || run.status == 1), "\(context)")
            if run.status == 1 {
                #expect(run.standardError.split(separator: "\n").count == 1, "\(context)")
                #expect(run.standardError.hasPrefix("Error: out of memory: "), "\(context)")
            }
        }
    }

    /// The gradient check of a deep stack of ReLUs keeps each layer's pieces and the list of
    /// the inputs on a kink (zeros pass on as zeros: millions of them), arrays that Swift would
    /// trap on when the memory is refused. They are asked for first, so every limit ends with one
    /// line, or with the check done.
    @Test(
        "under any memory limit, gradcheck of a deep network ends: it checks, or says in one line that memory ran out",
        .enabled(if: !underSanitizer, "the sanitizers reserve terabytes of address space: no ulimit -v"),
        .enabled(if: fashionMNISTInstalled, "needs Fashion-MNIST"))
    func gradcheckMemoryLimitSweep() throws {
        let layers = String(repeating: "relu, ", count: 4000) + "lin 10"
        var outcomes: Set<String> = []
        // Around the limits where the kinks' list was refused here (500,000 KiB: 47.5 MiB for it),
        // and one where the check runs (each run at this end takes about 10 s in a debug build
        // alone, and ten times that beside the rest of the suite: a generous limit for a hang).
        for kibibytes in Array(stride(from: 450_000, through: 575_000, by: 25_000)) + [650_000] {
            let run = try runUnderMemoryLimit(
                kibibytes, ["gradcheck", "--rows", "2", "--samples", "1", "--layers", layers], seconds: 400)
            let context = "ulimit -v \(kibibytes): status \(run.status)\n\(run.standardError.prefix(1000))"
            #expect(!run.crashed && (run.status == 0 || run.status == 1), "\(context)")
            if run.status == 1 {
                #expect(run.standardError.split(separator: "\n").count == 1, "\(context)")
                #expect(run.standardError.hasPrefix("Error: out of memory: could not allocate"), "\(context)")
                if run.standardError.contains("the list of the kinks checked") { outcomes.insert("kinks") }
            } else {
                outcomes.insert("checked")
            }
        }
        #expect(outcomes.contains("checked"), "\(outcomes)")
    }
}
