import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropNetwork
@testable import BackpropTraining

// `mpirun -np N backprop train` (issue 15), end to end: real processes, Open MPI's all-reduce,
// signals. These run in a build with the MPI trait (`swift test --traits OpenBLAS,MPI`, as CI
// does) where `mpirun` is installed; the default build checks that it refuses to run under mpirun.
// DataParallelTests checks the same arithmetic with threads, in every build.

#if MPI
    /// `mpirun`, found on the PATH, or nil.
    private let mpirun: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/mpirun" }.first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }()

    /// The environment of a run: Open MPI refuses root without these (CI runs as root).
    private func mpiEnvironment(data folder: String) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        environment["BACKPROP_DATA"] = folder
        environment.removeValue(forKey: "BACKPROP_THREADS")
        return environment
    }

    /// `mpirun -np N backprop ARGUMENTS`, waited for.
    private func runMPI(_ processes: Int, _ arguments: [String], data folder: String) throws -> CommandResult {
        try runProgram(
            mpirun!, ["-np", "\(processes)", "--oversubscribe", backpropExecutable().path] + arguments,
            environment: mpiEnvironment(data: folder))
    }

    /// The tensors of a checkpoint, by name, as Doubles.
    private func checkpointTensors(_ path: String) throws -> [String: [Double]] {
        let file = try Safetensors.read(path: path)
        var tensors: [String: [Double]] = [:]
        for name in file.names { tensors[name] = try file.tensor(name).values.map(Double.init) }
        return tensors
    }

    /// The largest difference between two checkpoints' tensors (weights, batch norm's buffers and
    /// the optimizer's state), relative to each tensor's largest value (at least 1).
    private func largestDifference(_ a: String, _ b: String) throws -> (name: String, value: Double) {
        let (x, y) = (try checkpointTensors(a), try checkpointTensors(b))
        #expect(Set(x.keys) == Set(y.keys))
        var worst = ("", 0.0)
        for (name, values) in x {
            guard let other = y[name], other.count == values.count else {
                Issue.record("\(name) differs in shape")
                continue
            }
            let scale = max(1, values.map(abs).max() ?? 0)
            let difference = zip(values, other).map { abs($0 - $1) }.max() ?? 0
            if difference / scale > worst.1 { worst = (name, difference / scale) }
        }
        return worst
    }

    /// `train --json`'s test accuracy.
    private func testAccuracy(_ result: CommandResult) throws -> Double {
        let object = try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any]
        return try #require(object?["test_accuracy"] as? Double, "no test_accuracy in \(result.standardOutput)")
    }

    /// A run in the background whose output goes to files, for the tests that signal it.
    private final class BackgroundRun {
        let process = Process()
        let output: String
        let error: String

        init(_ processes: Int, _ arguments: [String], data folder: String, in directory: String) throws {
            output = directory + "/out.txt"
            error = directory + "/err.txt"
            FileManager.default.createFile(atPath: output, contents: nil)
            FileManager.default.createFile(atPath: error, contents: nil)
            // Through `env --default-signal`: a test runner may start its children with SIGINT ignored,
            // and mpirun (unlike backprop) does not restore it.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments =
                ["--default-signal=INT,TERM", mpirun!, "-np", "\(processes)", backpropExecutable().path] + arguments
            process.environment = mpiEnvironment(data: folder)
            process.standardOutput = FileHandle(forWritingAtPath: output)
            process.standardError = FileHandle(forWritingAtPath: error)
            try process.run()
        }

        /// Waits until the output contains `text` (true), or the run ends or `seconds` pass (false).
        func waitForOutput(_ text: String, seconds: Double) -> Bool {
            let deadline = Date(timeIntervalSinceNow: seconds)
            while Date() < deadline {
                if (try? String(contentsOfFile: output, encoding: .utf8))?.contains(text) == true { return true }
                if !process.isRunning { return false }
                usleep(20_000)
            }
            return false
        }

        /// Waits for mpirun to end, at most `seconds`; returns its status, or nil if it is still running
        /// (then kills it).
        func waitForExit(seconds: Double) -> Int32? {
            let deadline = Date(timeIntervalSinceNow: seconds)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning {
                process.terminate()
                return nil
            }
            return process.terminationStatus
        }

        /// The processes mpirun started (its children running `backprop`; `env` became mpirun).
        var ranks: [Int32] {
            let id = process.processIdentifier
            let children = (try? String(contentsOfFile: "/proc/\(id)/task/\(id)/children", encoding: .utf8)) ?? ""
            return children.split(separator: " ").compactMap { Int32($0) }
        }

        var errorText: String { (try? String(contentsOfFile: error, encoding: .utf8)) ?? "" }
    }

    /// Runs of a data set of random 4×4 images (600 training, 60 test): an MLP, and a convnet
    /// with batch norm over channels, dropout and flips.
    private let distributedNetworks = [
        ["--layers", "lin 32, relu, lin 10"],
        ["--layers", "conv 4 3 pad 1 nobias, batchnorm, relu, maxpool 2, flatten, dropout 0.25, lin 10", "--flip"],
    ]

    @Suite(.serialized, .enabled(if: mpirun != nil, "mpirun is not installed (apt-get install openmpi-bin)"))
    struct DistributedTrainingTests {
        /// Two processes, and three, train to the one-process run's weights (bound: 2e-4 of each
        /// tensor's largest value, optimizer state included), with the same test accuracy within 0.002,
        /// and hold the same bits after every step (`--check-replicas` stops the run if not). Batches
        /// of 32 over 500 rows: the last has 20 rows (shards 10/10 and 7/7/6).
        @Test(arguments: 0..<distributedNetworks.count)
        func processesTrainToTheOneProcessWeights(network: Int) throws {
            try withTemporaryFolder { folder in
                try writeRandomDataset(in: folder, seed: 3)
                let common =
                    distributedNetworks[network] + ["--epochs", "3", "--batch-size", "32", "--seed", "4", "--json"]
                let alone = try runProgram(
                    backpropExecutable().path, ["train", "--save", folder + "/one.safetensors"] + common,
                    environment: mpiEnvironment(data: folder))
                #expect(alone.status == 0, "\(alone.standardError)")
                for processes in [2, 3] {
                    let path = folder + "/n\(processes).safetensors"
                    let run = try runMPI(
                        processes, ["train", "--save", path, "--check-replicas"] + common, data: folder)
                    #expect(run.status == 0, "\(run.standardError)")
                    let (name, difference) = try largestDifference(folder + "/one.safetensors", path)
                    #expect(difference < 2e-4, "\(processes) processes: \(name) differs by \(difference) of its scale")
                    #expect(abs(try testAccuracy(run) - testAccuracy(alone)) <= 0.002)
                    // One JSON report (rank 0 alone writes), naming the processes.
                    #expect(run.standardOutput.split(separator: "\n").count == 1, "\(run.standardOutput)")
                    #expect(run.standardOutput.contains("\"processes\":\(processes)"))
                }
            }
        }

        /// SIGKILL to one process: mpirun ends the others and exits non-zero within 30 s, naming the
        /// lost rank, and the last checkpoint reads whole.
        @Test func aKilledProcessEndsTheRunAndTheCheckpointStaysWhole() throws {
            try withTemporaryFolder { folder in
                try writeRandomDataset(in: folder, seed: 3)
                let path = folder + "/run.safetensors"
                let run = try BackgroundRun(
                    2, ["train", "--layers", "lin 32, relu, lin 10", "--epochs", "100000", "--save", path],
                    data: folder, in: folder)
                #expect(run.waitForOutput("epoch      2/", seconds: 120), "no second epoch: \(run.errorText)")
                let ranks = run.ranks
                try #require(ranks.count == 2, "mpirun's children: \(ranks)")
                let killed = Date()
                kill(ranks[1], SIGKILL)
                let status = run.waitForExit(seconds: 30)
                #expect(status != nil && status != 0, "mpirun: status \(String(describing: status))")
                #expect(Date().timeIntervalSince(killed) < 30)
                // Open MPI's mpirun names the rank it lost and how it ended.
                #expect(
                    (run.errorText.contains("rank 0") || run.errorText.contains("rank 1"))
                        && run.errorText.contains("signal 9"), "\(run.errorText)")
                let state = try TrainingCheckpoint.readState(path: path)
                #expect(state.completedEpochs >= 1)
                _ = try Checkpoint.load(path: path)
            }
        }

        /// SIGINT to mpirun stops every process at the same step (mpirun passes SIGTERM on); the
        /// checkpoint of the last completed epoch stays, and `--resume` with two processes ends with
        /// the very weights of the uninterrupted two-process run, with one process with them to the
        /// bound above. (SGD at a small rate: some 4,700 steps of Adam on random labels grow the
        /// rounding differences of one process's sums past any fixed bound; SGD's do not.)
        @Test func anInterruptedRunResumesWithAnyNumberOfProcesses() throws {
            try withTemporaryFolder { folder in
                try writeRandomDataset(in: folder, seed: 3)
                let settings = [
                    "train", "--layers", distributedNetworks[1][1], "--flip", "--epochs", "300", "--batch-size", "32",
                    "--seed", "6", "--optimizer", "sgd", "--lr", "0.02",
                ]
                let full = try runMPI(2, settings + ["--save", folder + "/full.safetensors"], data: folder)
                #expect(full.status == 0, "\(full.standardError)")

                let path = folder + "/run.safetensors"
                let run = try BackgroundRun(2, settings + ["--save", path], data: folder, in: folder)
                #expect(run.waitForOutput("epoch   2/300", seconds: 120), "no second epoch: \(run.errorText)")
                kill(run.process.processIdentifier, SIGINT)
                let status = run.waitForExit(seconds: 30)
                #expect(status != nil && status != 0)
                try #require(
                    run.errorText.contains("interrupted by SIGTERM") && run.errorText.contains("--resume \(path)"),
                    "\(run.errorText)")
                let state = try TrainingCheckpoint.readState(path: path)
                try #require(
                    state.completedEpochs >= 2 && state.completedEpochs < 300, "\(state.completedEpochs) epochs")

                let copy = folder + "/one.safetensors"
                try FileManager.default.copyItem(atPath: path, toPath: copy)
                let two = try runMPI(2, ["train", "--resume", path], data: folder)
                #expect(two.status == 0, "\(two.standardError)")
                let bits = try largestDifference(folder + "/full.safetensors", path)
                #expect(bits.value == 0, "resumed on two processes: \(bits.name) differs by \(bits.value)")

                let one = try runProgram(
                    backpropExecutable().path, ["train", "--resume", copy], environment: mpiEnvironment(data: folder))
                #expect(one.status == 0, "\(one.standardError)")
                let near = try largestDifference(folder + "/full.safetensors", copy)
                #expect(near.value < 2e-4, "resumed on one process: \(near.name) differs by \(near.value)")
            }
        }

        /// A batch too small to share: the last batch of each epoch must have a row for every
        /// process; the error says which settings to change.
        @Test func aBatchSmallerThanTheProcessesIsRefused() throws {
            try withTemporaryFolder { folder in
                try writeRandomDataset(in: folder, seed: 3)
                // 500 training rows in batches of 166: the last has 2 rows, for 3 processes.
                let run = try runMPI(3, ["train", "--epochs", "1", "--batch-size", "166"], data: folder)
                #expect(run.status != 0)
                #expect(run.standardError.contains("the last batch of each epoch has 2 rows"), "\(run.standardError)")
                let tiny = try runMPI(2, ["train", "--epochs", "1", "--batch-size", "1"], data: folder)
                #expect(tiny.status != 0)
                #expect(
                    tiny.standardError.contains("every batch of --batch-size 1 has fewer rows than the 2 processes"),
                    "\(tiny.standardError)")
            }
        }

        /// Processes that would train different networks, or on batches of other counts, are
        /// stopped before the first sum with one line from rank 0 naming what differs (a network
        /// of another size corrupted the heap; other batch counts ended in MPI's own abort).
        @Test(arguments: [
            (["--hidden", "16"], "their networks differ"), (["--limit", "400"], "their batches differ"),
            (["--lr", "0.2"], "their --lr settings differ (on rank 0: "),
            (["--seed", "9"], "their --seed settings differ"),
            // --check-replicas on one process added collective calls the others never made (an MPI
            // abort, or a hang); --json or a --plot path on another than rank 0 was ignored unseen.
            (["--check-replicas"], "their --check-replicas settings differ (on rank 0: not given)"),
            (["--json"], "their --json settings differ"),
            (["--plot", "rank1.svg"], "their --plot paths differ (on rank 0: not given)"),
        ])
        func processesThatDifferAreStopped(odd: [String], says: String) throws {
            try withTemporaryFolder { folder in
                try writeRandomDataset(in: folder, seed: 4)
                let train = [backpropExecutable().path, "train", "--epochs", "1", "--batch-size", "50"]
                let run = try runProgram(
                    mpirun!, ["-np", "1", "--oversubscribe"] + train + [":", "-np", "1"] + train + odd,
                    environment: mpiEnvironment(data: folder))
                #expect(run.status != 0)
                #expect(run.standardError.contains(says), "\(run.standardError)")
                #expect(!run.standardError.contains("crashed"), "\(run.standardError)")
            }
        }

        /// A process that only prints its help or version and ends (status 0) before joining MPI
        /// left the others waiting in MPI_Init for ever; now every process joins first and they
        /// agree on the command. The same command everywhere runs as before.
        @Test func processesGivenOtherCommandsAreStopped() throws {
            try withTemporaryFolder { folder in
                try writeRandomDataset(in: folder, seed: 6)
                let train = [backpropExecutable().path, "train", "--epochs", "1", "--batch-size", "50"]
                // --help-hidden and the completion script end as --help does (they ended without
                // MPI_Finalize, and Open MPI's own report said nothing of why).
                for odd in [["--help"], ["--version"], ["--help-hidden"], ["--generate-completion-script", "bash"]] {
                    let run = try runProgram(
                        mpirun!, ["-np", "1", "--oversubscribe"] + train + [":", "-np", "1"] + train + odd,
                        environment: mpiEnvironment(data: folder), timeout: 120)
                    #expect(run.status != 0)
                    #expect(
                        run.standardError.contains(
                            "mpirun -np 2: some processes were given an option that only prints (--help, --version, a "
                                + "completion script) and others not (rank 0 was not, with the command 'train')"),
                        "\(odd): \(run.standardError)")
                }
                let other = try runProgram(
                    mpirun!,
                    ["-np", "1", "--oversubscribe"] + train + [":", "-np", "1", backpropExecutable().path, "seed"],
                    environment: mpiEnvironment(data: folder), timeout: 120)
                #expect(other.status != 0)
                #expect(other.standardError.contains("given different commands"), "\(other.standardError)")
                // Every process asking for the version: each prints it, and the run ends well.
                let version = try runMPI(2, ["--version"], data: folder)
                #expect(version.status == 0, "\(version.standardError)")
                #expect(version.standardOutput.split(separator: "\n").count == 2, "\(version.standardOutput)")
            }
        }

        /// Data of the same size and statistics whose labels differ (each shifted by one class)
        /// trained without a word, to a model of neither data set: the images and labels are hashed.
        @Test func processesWithOtherLabelsAreStopped() throws {
            try withTemporaryFolder { folder in
                let (same, other) = (folder + "/same", folder + "/other")
                for path in [same, other] {
                    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                    try writeRandomDataset(in: path, seed: 5)
                }
                let labels = try IDX.read(path: other + "/train-labels-idx1-ubyte")
                try IDX.write(
                    labels.payload.map { ($0 + 1) % 10 }, shape: [labels.payload.count],
                    to: other + "/train-labels-idx1-ubyte")
                let train = [backpropExecutable().path, "train", "--epochs", "1", "--batch-size", "50", "--data"]
                let run = try runProgram(
                    mpirun!, ["-np", "1", "--oversubscribe"] + train + [same, ":", "-np", "1"] + train + [other],
                    environment: mpiEnvironment(data: folder))
                #expect(run.status != 0)
                #expect(run.standardError.contains("their data differ"), "\(run.standardError)")
                #expect(run.standardError.contains("images and labels hashed to"), "\(run.standardError)")
            }
        }
    }
#else
    /// Started by mpirun among several processes, a build without MPI support refuses to train
    /// (each process would train alone and write the same files), and says how to build one. It
    /// refuses `--help` and every other command too: ending with status 0 without joining left a
    /// process of an MPI build on the same MPMD line waiting in MPI_Init for ever (a helper's find).
    @Test func withoutMPISupportARunUnderMPIRunIsRefused() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 3)
            var environment = ProcessInfo.processInfo.environment
            environment["OMPI_COMM_WORLD_SIZE"] = "2"
            environment["BACKPROP_DATA"] = folder
            for arguments in [
                ["train", "--epochs", "1", "--save", folder + "/run.safetensors"], ["train", "--help"], ["--version"],
                ["seed"],
            ] {
                let run = try runBackprop(arguments, environment: environment)
                #expect(run.status == 1, "\(arguments)")
                #expect(run.standardError.contains("built without MPI support"), "\(arguments): \(run.standardError)")
                #expect(run.standardError.contains("--traits OpenBLAS,MPI"))
                #expect(run.standardOutput.isEmpty, "\(arguments): \(run.standardOutput)")
            }
            #expect(!FileManager.default.fileExists(atPath: folder + "/run.safetensors"))
        }
    }
#endif
