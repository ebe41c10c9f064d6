import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// Interrupted training loses nothing: a run stopped between two epochs and resumed from its
// checkpoint ends with the very weights of the uninterrupted run (bit for bit), SIGINT and
// SIGTERM stop `backprop train` cleanly with the last completed epoch saved, and SIGKILL at any
// moment leaves a checkpoint that reads whole.

// MARK: - The library: save, restore, continue

/// A small classification problem: `n` rows of `m` features, 10 classes, from `seed`.
private func syntheticData(rows n: Int, features m: Int, seed: UInt64) -> (x: Tensor, y: Tensor) {
    var generator = RandomGenerator(seed: seed)
    let x = Tensor.randn([n, m], generator: &generator)
    let y = Tensor((0..<n).map { _ in Float(generator.nextIndex(below: 10)) })
    return (x, y)
}

/// The bit patterns of every weight of `model`, layer by layer.
private func weightBits(_ model: Model) -> [[UInt32]] {
    model.parameters.map { $0.values.map(\.bitPattern) }
}

/// The history without the seconds (which differ from run to run).
private func losses(_ history: [EpochRecord]) -> [[Float]] {
    history.map { [Float($0.epoch), $0.trainLoss, $0.validLoss, $0.validAccuracy, $0.learningRate] }
}

@Test(arguments: [OptimizerKind.adam, .sgd, .momentum])
func trainingResumedFromACheckpointEndsWithTheUninterruptedWeights(optimizer: OptimizerKind) throws {
    let train = syntheticData(rows: 200, features: 12, seed: 1)
    let valid = syntheticData(rows: 40, features: 12, seed: 2)
    let configuration = TrainingConfiguration(
        hidden: [16, 8], epochs: 5, batchSize: 32, learningRate: 0.01, optimizer: optimizer, weightDecay: 0.01,
        schedule: .oneCycle, seed: 7)

    let uninterrupted = Trainer(configuration: configuration, classes: 10, train: train, valid: valid)
    try uninterrupted.fit()

    try withTemporaryFolder { folder in
        let path = folder + "/run.safetensors"
        let first = Trainer(configuration: configuration, classes: 10, train: train, valid: valid)
        try first.fit(shouldStop: { first.epoch == 2 })
        #expect(first.epoch == 2 && first.step == 0)
        try TrainingCheckpoint.save(first, configuration: configuration, limit: 240, to: path)

        let state = try TrainingCheckpoint.readState(path: path)
        #expect(state.configuration == configuration)
        #expect(state.completedEpochs == 2)
        #expect(state.limit == 240)
        #expect(state.history == first.history)  // Float and Double survive JSON exactly

        // A fresh run, built from the settings alone, then restored: other weights until restored.
        let resumed = Trainer(configuration: state.configuration, classes: 10, train: train, valid: valid)
        #expect(weightBits(resumed.model) != weightBits(first.model))
        try TrainingCheckpoint.restore(resumed, from: path)
        #expect(weightBits(resumed.model) == weightBits(first.model))
        #expect(resumed.epoch == 2)
        try resumed.fit()

        #expect(weightBits(resumed.model) == weightBits(uninterrupted.model))
        #expect(losses(resumed.history) == losses(uninterrupted.history))
        // The model alone still loads from a training checkpoint (as `backprop evaluate` reads it).
        #expect(try Checkpoint.load(path: path).sizes == [12, 16, 8, 10])
    }
}

@Test func restoringWithoutTheOptimizerStateWouldNotMatch() throws {
    // The control for the test above: the optimizer's state is what makes the runs agree.
    let train = syntheticData(rows: 200, features: 12, seed: 1)
    let valid = syntheticData(rows: 40, features: 12, seed: 2)
    let configuration = TrainingConfiguration(hidden: [16], epochs: 3, batchSize: 32, learningRate: 0.01, seed: 7)
    let uninterrupted = Trainer(configuration: configuration, classes: 10, train: train, valid: valid)
    try uninterrupted.fit()
    try withTemporaryFolder { folder in
        let path = folder + "/model.safetensors"
        let first = Trainer(configuration: configuration, classes: 10, train: train, valid: valid)
        try first.fit(shouldStop: { first.epoch == 1 })
        try Checkpoint.save(first.model, to: path)  // weights only
        let resumed = Trainer(configuration: configuration, classes: 10, train: train, valid: valid)
        try Checkpoint.load(path: path, into: resumed.model)
        resumed.resume(history: first.history)
        try resumed.fit()
        #expect(weightBits(resumed.model) != weightBits(uninterrupted.model))
        // And a model-only file is refused for resuming, with a message that says why.
        expectDataError(containing: [path, "holds no \"training\" settings: it is a model, not a training run"]) {
            try TrainingCheckpoint.readState(path: path)
        }
    }
}

@Test func restoreRefusesACheckpointOfAnotherRun() throws {
    let train = syntheticData(rows: 64, features: 6, seed: 3)
    let configuration = TrainingConfiguration(hidden: [8], epochs: 2, batchSize: 16, seed: 1)
    try withTemporaryFolder { folder in
        let path = folder + "/run.safetensors"
        let trainer = Trainer(configuration: configuration, classes: 10, train: train, valid: train)
        try trainer.fit(shouldStop: { trainer.epoch == 1 })
        try TrainingCheckpoint.save(trainer, configuration: configuration, limit: nil, to: path)

        var wider = configuration
        wider.hidden = [9]
        let other = Trainer(configuration: wider, classes: 10, train: train, valid: train)
        expectDataError(containing: [path, "holds a 6-8-10 relu cross_entropy model, expected 6-9-10"]) {
            try TrainingCheckpoint.restore(other, from: path)
        }
        var sgd = configuration
        sgd.optimizer = .sgd
        let otherOptimizer = Trainer(configuration: sgd, classes: 10, train: train, valid: train)
        expectDataError(containing: [
            path, "holds optimizer state optimizer.0.m,", "expected none (another optimizer?)",
        ]) {
            try TrainingCheckpoint.restore(otherOptimizer, from: path)
        }
    }
}

// MARK: - The command line: SIGINT, SIGTERM, SIGKILL, --resume

/// `backprop train` on the random data set, `epochs` epochs, checkpoints in `save`.
private func trainArguments(data: String, epochs: Int, save: String) -> [String] {
    ["train", "--data", data, "--hidden", "16", "--epochs", String(epochs), "--batch-size", "50", "--save", save]
}

/// A `backprop` process started in the background, its stdout readable as it comes.
private final class RunningBackprop {
    let process = Process()
    private let output = Pipe()
    private let error = Pipe()
    private var outputSoFar = Data()

    init(_ arguments: [String]) throws {
        process.executableURL = backpropExecutable()
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = error
        try process.run()
    }

    /// Reads stdout until it contains `text` (true) or ends (false).
    func waitForOutput(containing text: String) -> Bool {
        while !String(decoding: outputSoFar, as: UTF8.self).contains(text) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { return false }
            outputSoFar.append(chunk)
        }
        return true
    }

    func send(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for the end; returns the status (or signal), whether a signal ended it, and stderr.
    func finish() -> (status: Int32, bySignal: Bool, standardError: String) {
        outputSoFar.append(output.fileHandleForReading.readDataToEndOfFile())
        let errorText = String(decoding: error.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, process.terminationReason == .uncaughtSignal, errorText)
    }
}

/// The weights of the checkpoint at `path`, by name, as bit patterns.
private func checkpointWeights(_ path: String) throws -> [String: [UInt32]] {
    let file = try Safetensors.read(path: path)
    var weights: [String: [UInt32]] = [:]
    for name in file.names where name.hasPrefix("layers.") {
        weights[name] = try file.tensor(name).values.map(\.bitPattern)
    }
    return weights
}

/// The signals the test sends, and the names the message gives them. SIGPWR (a UPS's power
/// failure) and the real-time signals (as `kill -s RTMIN+3` sends) were not caught, and their
/// default action, ending the process, left the save's temporary file.
#if os(Linux)
    private let stopSignalNames = [
        SIGINT: "SIGINT", SIGTERM: "SIGTERM", SIGPWR: "SIGPWR", __libc_current_sigrtmin() + 3: "SIGRTMIN+3",
        __libc_current_sigrtmax(): "SIGRTMIN+\(__libc_current_sigrtmax() - __libc_current_sigrtmin())",
    ]
#else
    private let stopSignalNames = [SIGINT: "SIGINT", SIGTERM: "SIGTERM"]
#endif

@Test(arguments: stopSignalNames.keys.sorted())
func trainStoppedBySignalSavesTheLastEpochAndResumesToTheSameWeights(signal: Int32) throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 11)
        let epochs = 40
        let reference = folder + "/reference.safetensors"
        let uninterrupted = try runBackprop(trainArguments(data: folder, epochs: epochs, save: reference))
        #expect(uninterrupted.status == 0, "\(uninterrupted.standardError)")

        let path = folder + "/run.safetensors"
        let run = try RunningBackprop(trainArguments(data: folder, epochs: epochs, save: path))
        #expect(run.waitForOutput(containing: "epoch  1/\(epochs)"))
        run.send(signal)
        let stopped = run.finish()
        #expect(!stopped.bySignal, "killed by the signal instead of stopping: \(stopped.standardError)")
        #expect(stopped.status == 128 + signal)

        let state = try TrainingCheckpoint.readState(path: path)
        let done = state.completedEpochs
        #expect(done >= 1 && done < epochs, "\(done) epochs done")
        let name = try #require(stopSignalNames[signal])
        #expect(
            stopped.standardError.hasPrefix("interrupted by \(name) in epoch \(done + 1) of \(epochs), step ")
                || stopped.standardError.hasPrefix("interrupted by \(name) after epoch \(done) of \(epochs): "),
            "\(stopped.standardError)")
        #expect(
            stopped.standardError.hasSuffix(
                ": \(path) holds epoch \(done) with the optimizer's state; continue with: backprop train --resume \(path)\n"
            ), "\(stopped.standardError)")
        #expect(stopped.standardError.split(separator: "\n").count == 1)
        // Only the checkpoint was written: no temporary file is left.
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: folder)).isSuperset(of: ["run.safetensors"]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).allSatisfy { !$0.contains(".tmp-") })

        let resumed = try runBackprop(["train", "--resume", path, "--data", folder])
        #expect(resumed.status == 0, "\(resumed.standardError)")
        #expect(resumed.standardOutput.contains(" \(done + 1)/\(epochs)  train loss"), "\(resumed.standardOutput)")
        #expect(!resumed.standardOutput.contains(" \(done)/\(epochs)  train loss"), "\(resumed.standardOutput)")
        #expect(try checkpointWeights(path) == checkpointWeights(reference))
        #expect(try TrainingCheckpoint.readState(path: path).completedEpochs == epochs)
    }
}

/// `ulimit -St 1`: the kernel sends SIGXCPU after a second of CPU time (the hard limit stays
/// unlimited), which used to kill `train` (status 152, by the signal) with the epoch in progress
/// lost and nothing said; it now stops as for SIGTERM, with the last epoch saved.
@Test func trainPastItsSoftCPUTimeLimitStopsAndSaves() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 12)
        let epochs = 100_000
        let path = folder + "/run.safetensors"
        let arguments = trainArguments(data: folder, epochs: epochs, save: path).map { "'\($0)'" }
        let stopped = try runProgram(
            "/bin/sh",
            [
                "-c",
                "ulimit -St 1; exec timeout -s KILL 120 '\(backpropExecutable().path)' "
                    + arguments.joined(separator: " "),
            ])
        #expect(!stopped.crashed, "killed by the signal instead of stopping: \(stopped.standardError)")
        #expect(stopped.status == 128 + SIGXCPU, "\(stopped.standardError)")
        let done = try TrainingCheckpoint.readState(path: path).completedEpochs
        #expect(done >= 1 && done < epochs, "\(done) epochs done")
        #expect(
            stopped.standardError.hasPrefix("interrupted by SIGXCPU (the CPU-time limit, ulimit -t) "),
            "\(stopped.standardError)")
        #expect(
            stopped.standardError.hasSuffix(
                ": \(path) holds epoch \(done) with the optimizer's state; continue with: backprop train --resume \(path)\n"
            ), "\(stopped.standardError)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).allSatisfy { !$0.contains(".tmp-") })
    }
}

@Test func trainKilledAtAnyMomentLeavesAWholeCheckpoint() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 11)
        let epochs = 60
        let reference = folder + "/reference.safetensors"
        let started = Date()
        #expect(try runBackprop(trainArguments(data: folder, epochs: epochs, save: reference)).status == 0)
        // How long a whole run takes on this machine and build (tenths of a second in release):
        // the kills below fall within it.
        let lifetime = Date().timeIntervalSince(started)

        // Kill the run at moments spread over its life (loading, training, writing checkpoints),
        // each time resuming from whatever the file holds; the file must always read whole.
        let path = folder + "/run.safetensors"
        var generator = RandomGenerator(seed: 5)
        var kills = 0
        var previous = 0
        for _ in 0..<12 {
            let exists = FileManager.default.fileExists(atPath: path)
            let arguments =
                exists
                ? ["train", "--resume", path, "--data", folder]
                : trainArguments(data: folder, epochs: epochs, save: path)
            let run = try RunningBackprop(arguments)
            usleep(UInt32(lifetime * (0.05 + 0.8 * generator.nextUniform()) * 1e6))
            run.send(SIGKILL)
            let ended = run.finish()
            if ended.bySignal { kills += 1 }
            if FileManager.default.fileExists(atPath: path) {
                let state = try TrainingCheckpoint.readState(path: path)  // throws if the file is broken
                #expect(state.completedEpochs >= previous, "the checkpoint went back in time")
                previous = state.completedEpochs
                _ = try checkpointWeights(path)
            }
            if previous == epochs { break }
        }
        #expect(kills > 0, "no run was killed: the runs were too fast for the test")
        // Finish the run: the same weights as the run never killed.
        let finishedHere = previous < epochs
        if finishedHere {
            let arguments =
                previous == 0 && !FileManager.default.fileExists(atPath: path)
                ? trainArguments(data: folder, epochs: epochs, save: path)
                : ["train", "--resume", path, "--data", folder]
            let finished = try runBackprop(arguments)
            #expect(finished.status == 0, "\(finished.standardError)")
        }
        #expect(try checkpointWeights(path) == checkpointWeights(reference))
        // The temporary files of killed writers were removed by the writes after them (when the
        // last write was not itself killed).
        if finishedHere {
            let left = try FileManager.default.contentsOfDirectory(atPath: folder)
            #expect(left.allSatisfy { !$0.contains(".tmp-") }, "\(left)")
        }
    }
}

@Test func trainResumeRefusesSettingsThatDifferFromTheCheckpoint() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 11)
        let path = folder + "/run.safetensors"
        #expect(try runBackprop(trainArguments(data: folder, epochs: 2, save: path)).status == 0)
        let cases: [([String], String)] = [
            (["train", "--resume", path, "--data", folder, "--epochs", "5"], "--epochs 5 differs from 2 in \(path)"),
            (
                ["train", "--resume", path, "--data", folder, "--hidden", "32"],
                "--hidden 32 is the network 'lin 32, relu, lin 10', but \(path) holds a run of 'lin 16, relu, lin 10'"
            ),
            // Typed, the defaults must agree too (they used to count as not given).
            (["train", "--resume", path, "--data", folder, "--epochs", "15"], "--epochs 15 differs from 2 in \(path)"),
            (["train", "--resume", path, "--data", folder], "the run is complete (2 of 2 epochs)"),
            (["train", "--resume", folder + "/none.safetensors"], "none.safetensors: no such file"),
        ]
        for (arguments, fragment) in cases {
            let run = try runBackprop(arguments)
            #expect(!run.crashed && run.status != 0, "\(arguments)")
            #expect(run.standardError.contains(fragment), "\(arguments): \(run.standardError)")
        }
    }
}

/// Options that agree with the checkpoint are accepted: the same network typed another way
/// (`--layers` for the run of `--hidden`: it used to be "--layers … differs from  in …"), and a
/// preset's weight decay left out (the cnn preset's 0.3 used to be compared with the MLP's 0.1).
@Test func trainResumeAcceptsOptionsThatAgreeWithTheCheckpoint() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 12)
        let path = folder + "/run.safetensors"
        #expect(try runBackprop(trainArguments(data: folder, epochs: 1, save: path)).status == 0)
        // The run made to have three epochs, one done.
        try editSafetensors(at: path) { metadata, _ in
            metadata["training"] = metadata["training"]?.replacingOccurrences(of: "\"epochs\":1", with: "\"epochs\":3")
        }
        for extra in [
            ["--hidden", "16"], ["--layers", "lin 16, relu, lin 10"], ["--epochs", "3", "--batch-size", "50"],
        ] {
            let copy = folder + "/copy.safetensors"
            try? FileManager.default.removeItem(atPath: copy)
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            let run = try runBackprop(["train", "--resume", copy, "--data", folder] + extra)
            #expect(run.status == 0 && !run.crashed, "\(extra): \(run.standardError)")
        }
        let convnet = folder + "/cnn.safetensors"
        #expect(
            try runBackprop([
                "train", "--data", folder, "--layers", "cnn", "--weight-decay", "0.05",
                "--epochs", "1", "--batch-size", "50", "--save", convnet,
            ]).status == 0)
        try editSafetensors(at: convnet) { metadata, _ in
            metadata["training"] = metadata["training"]?.replacingOccurrences(of: "\"epochs\":1", with: "\"epochs\":2")
        }
        let resumed = try runBackprop(
            ["train", "--resume", convnet, "--data", folder, "--layers", "cnn"])
        #expect(resumed.status == 0 && !resumed.crashed, "\(resumed.standardError)")
    }
}

/// `train --init` of an MSE checkpoint, or of its ONNX export (one output), fine-tunes with MSE:
/// it used to take cross-entropy and blame --layers.
@Test func trainInitTakesTheCheckpointsLoss() throws {
    try withTemporaryFolder { folder in
        try writeRandomDataset(in: folder, seed: 13)
        let model = folder + "/mse.safetensors"
        let trained = try runBackprop([
            "train", "--data", folder, "--hidden", "8", "--loss", "mse", "--epochs", "1", "--batch-size", "50",
            "--save", model,
        ])
        #expect(trained.status == 0, "\(trained.standardError)")
        let onnx = folder + "/mse.onnx"
        #expect(try runBackprop(["export", model, "--format", "onnx", onnx]).status == 0)
        for initial in [model, onnx] {
            let run = try runBackprop(["train", "--data", folder, "--init", initial, "--epochs", "1", "--json"])
            #expect(run.status == 0 && !run.crashed, "\(initial): \(run.standardError)")
        }
        let refused = try runBackprop(
            ["train", "--data", folder, "--init", model, "--epochs", "1", "--loss", "cross-entropy"])
        #expect(refused.status != 0 && refused.standardError.contains("cross-entropy"), "\(refused.standardError)")
    }
}
