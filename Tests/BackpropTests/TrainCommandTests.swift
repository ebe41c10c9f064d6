import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// `backprop train` and `backprop evaluate` as a user runs them (the built executable), on the
/// first few hundred Fashion-MNIST images.
@Suite("backprop train and evaluate", .enabled(if: fashionMNISTInstalled, fashionMNISTMissingNote))
struct TrainCommandTests {
    /// A quick run: 500 training, 100 validation and 600 test images, a small network.
    static let quick = ["--limit", "600", "--hidden", "32", "--epochs", "2", "--batch-size", "50", "--seed", "3"]

    static func parseJSON(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any], sourceLocation: sourceLocation)
    }

    @Test func jsonReportsTestAndValidationAccuracyAndEachEpoch() throws {
        let result = try runBackprop(["train"] + Self.quick + ["--json"])
        #expect(result.status == 0, "stderr: \(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n")
        #expect(lines.count == 1, "stdout holds one JSON object: \(result.standardOutput)")
        let report = try Self.parseJSON(result.standardOutput)
        let testAccuracy = try #require(report["test_accuracy"] as? Double)
        #expect(testAccuracy > 0.5 && testAccuracy <= 1)
        #expect(report["valid_accuracy"] is Double)
        #expect(report["seconds"] is Double)
        let epochs = try #require(report["epochs"] as? [[String: Any]])
        #expect(epochs.count == 2)
        #expect(epochs.first?["epoch"] as? Int == 1)
        for key in ["train_loss", "valid_loss", "valid_accuracy", "seconds"] {
            #expect(epochs.first?[key] is Double, "epoch entry lacks \(key)")
        }
        // Not a terminal: the progress is one plain line per epoch on stderr, no bar.
        #expect(result.standardError.contains("epoch 1/2  train loss"))
        #expect(!result.standardError.contains("\r"))
    }

    /// `--hidden ''`: no hidden layer, one Lin from the pixels to the classes (softmax regression),
    /// as the help says; it learns.
    @Test func noHiddenLayersIsOneLin() throws {
        let arguments = ["--limit", "600", "--epochs", "2", "--batch-size", "50", "--seed", "3", "--json"]
        let result = try runBackprop(["train", "--hidden", ""] + arguments)
        #expect(result.status == 0, "stderr: \(result.standardError)")
        let report = try Self.parseJSON(result.standardOutput)
        #expect(report["sizes"] as? [Int] == [784, 10])
        #expect(try #require(report["test_accuracy"] as? Double) > 0.5)
    }

    /// The products of the default network (784-256-128-10, batch 128) are split into pieces
    /// that do not depend on the number of threads, so one thread and two give the same weights:
    /// the same losses and accuracies to the last bit.
    @Test func oneThreadAndTwoGiveTheSameResults() throws {
        let arguments = ["train", "--limit", "600", "--epochs", "2", "--seed", "5", "--json"]
        let one = try runBackprop(arguments + ["--threads", "1"])
        let two = try runBackprop(arguments + ["--threads", "2"])
        #expect(one.status == 0 && two.status == 0, "stderr: \(one.standardError) \(two.standardError)")
        var reports = try [one, two].map { try Self.parseJSON($0.standardOutput) }
        let steps = reports.map { $0["steps"] as? [String: Any] }
        // 2 epochs of 500 rows in batches of 128: 8 steps.
        #expect(steps[0]?["count"] as? Int == 8 && steps[1]?["count"] as? Int == 8, "\(steps)")
        #expect(steps[0]?["threads"] as? Int == 1 && steps[1]?["threads"] as? Int == 2, "\(steps)")
        for index in reports.indices {
            reports[index]["seconds"] = nil
            reports[index]["steps"] = nil  // the seconds of the steps, and the threads
            reports[index]["epochs"] = (reports[index]["epochs"] as? [[String: Any]])?.map { epoch in
                epoch.filter { $0.key != "seconds" }
            }
        }
        #expect(reports[0]["test_loss"] is Double)
        #expect(NSDictionary(dictionary: reports[0]).isEqual(to: reports[1]), "\(reports[0]) vs \(reports[1])")
    }

    /// `--layers cnn` trains with the weight decay its recipe was tuned with (0.3) unless
    /// `--weight-decay` is given; other networks keep the default 0.1. Read back from the
    /// checkpoint's settings.
    @Test func thePresetsWeightDecayIsTheDefaultForItsNetwork() throws {
        try withTemporaryFolder { folder in
            for (extra, expected) in [
                (["--layers", "cnn"], Float(0.3)), (["--layers", "cnn", "--weight-decay", "0.05"], 0.05),
                (["--layers", "conv 2 3, flatten, lin 10"], 0.1),
            ] {
                let path = folder + "/run.safetensors"
                let run = try runBackprop(
                    ["train", "--limit", "300", "--epochs", "1", "--batch-size", "50", "--save", path] + extra)
                #expect(run.status == 0, "\(extra): \(run.standardError)")
                #expect(try TrainingCheckpoint.readState(path: path).configuration.weightDecay == expected, "\(extra)")
            }
        }
    }

    @Test func textPrintsOneLinePerEpochThenTheTestAccuracy() throws {
        let result = try runBackprop(["train"] + Self.quick)
        #expect(result.status == 0, "stderr: \(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.count == 3, "\(lines)")
        #expect(lines[0].hasPrefix("epoch 1/2  train loss "))
        #expect(lines[0].contains("valid loss ") && lines[0].contains("valid accuracy ") && lines[0].hasSuffix(" s"))
        #expect(lines[2].hasPrefix("test accuracy "))
        #expect(lines[2].contains("(600 images)"))
    }

    @Test func savedModelEvaluatesToTheSameTestAccuracy() throws {
        try withTemporaryFolder { folder in
            let model = folder + "/model.safetensors"
            let plot = folder + "/loss.svg"
            let trained = try runBackprop(["train"] + Self.quick + ["--json", "--save", model, "--plot", plot])
            #expect(trained.status == 0, "stderr: \(trained.standardError)")
            let trainReport = try Self.parseJSON(trained.standardOutput)

            let evaluated = try runBackprop(["evaluate", "--model", model, "--limit", "600", "--json"])
            #expect(evaluated.status == 0, "stderr: \(evaluated.standardError)")
            let evaluateReport = try Self.parseJSON(evaluated.standardOutput)
            let accuracy = try #require(evaluateReport["test_accuracy"] as? Double)
            #expect(accuracy == trainReport["test_accuracy"] as? Double)
            #expect(evaluateReport["sizes"] as? [Int] == [784, 32, 10] && evaluateReport["layers"] == nil)

            let file = try Safetensors.read(path: model)
            #expect(file.metadata["sizes"] == "784,32,10")
            #expect(file.metadata["input_mean"] != nil && file.metadata["input_std"] != nil)
            let svg = try String(contentsOfFile: plot, encoding: .utf8)
            #expect(svg.hasPrefix("<svg") && svg.contains(">epoch</text>"))
        }
    }

    /// A network other than an MLP (here a linear layer without a bias before a batch norm) is
    /// named by its description in `evaluate`'s report, text and JSON, not by its linear layers'
    /// sizes; and `evaluate` gives the test accuracy `train` reported.
    @Test func evaluateNamesADescribedNetworkByItsLayers() throws {
        try withTemporaryFolder { folder in
            let model = folder + "/model.safetensors"
            let layers = "lin 32 nobias, batchnorm, relu, lin 10"
            let trained = try runBackprop(
                ["train", "--limit", "600", "--epochs", "1", "--layers", layers, "--json", "--save", model])
            #expect(trained.status == 0, "stderr: \(trained.standardError)")
            let evaluated = try runBackprop(["evaluate", "--model", model, "--limit", "600", "--json"])
            let report = try Self.parseJSON(evaluated.standardOutput)
            #expect(report["layers"] as? String == layers && report["sizes"] == nil, "\(report)")
            #expect(
                report["test_accuracy"] as? Double == (try Self.parseJSON(trained.standardOutput))["test_accuracy"]
                    as? Double)
            let text = try runBackprop(["evaluate", "--model", model, "--limit", "600"])
            #expect(text.standardOutput.contains(", model '\(layers)' from \(model)"), "\(text.standardOutput)")
        }
    }

    /// Another framework reads the checkpoint: numpy alone (`Benchmarks/evaluate_numpy.py`, which
    /// parses the safetensors bytes and runs the forward pass itself) gives the same accuracy.
    @Test(.enabled(if: numpyAvailable, "python3 with numpy is not installed"))
    func numpyReadsTheSavedModelToTheSameAccuracy() throws {
        try withTemporaryFolder { folder in
            let model = folder + "/model.safetensors"
            let trained = try runBackprop(["train"] + Self.quick + ["--save", model])
            #expect(trained.status == 0, "stderr: \(trained.standardError)")
            let evaluated = try runBackprop(["evaluate", "--model", model, "--limit", "600", "--json"])
            let ours = try #require(try Self.parseJSON(evaluated.standardOutput)["test_accuracy"] as? Double)
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("Benchmarks/evaluate_numpy.py").path
            let python = try runProgram("/usr/bin/env", ["python3", script, model, "--limit", "600", "--json"])
            #expect(python.status == 0, "stderr: \(python.standardError)")
            let theirs = try #require(try Self.parseJSON(python.standardOutput)["test_accuracy"] as? Double)
            #expect(abs(ours - theirs) < 1e-6, "backprop evaluate \(ours), numpy \(theirs)")
        }
    }

    /// `evaluate` normalises with the statistics stored in the checkpoint, not with those of the
    /// training images it happens to read: a model trained on the first 500 images, evaluated with
    /// `--limit 1200` (whose 1000 training images have another mean), gives what numpy gives with
    /// the stored statistics.
    @Test(.enabled(if: numpyAvailable, "python3 with numpy is not installed"))
    func evaluateUsesTheNormalizationStoredInTheCheckpoint() throws {
        try withTemporaryFolder { folder in
            let model = folder + "/model.safetensors"
            let trained = try runBackprop(["train"] + Self.quick + ["--save", model])
            #expect(trained.status == 0, "stderr: \(trained.standardError)")
            let evaluated = try runBackprop(["evaluate", "--model", model, "--limit", "1200", "--json"])
            #expect(evaluated.status == 0, "stderr: \(evaluated.standardError)")
            let ours = try #require(try Self.parseJSON(evaluated.standardOutput)["test_accuracy"] as? Double)
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("Benchmarks/evaluate_numpy.py").path
            let python = try runProgram("/usr/bin/env", ["python3", script, model, "--limit", "1200", "--json"])
            #expect(python.status == 0, "stderr: \(python.standardError)")
            let theirs = try #require(try Self.parseJSON(python.standardOutput)["test_accuracy"] as? Double)
            #expect(abs(ours - theirs) < 1e-6, "backprop evaluate \(ours), numpy \(theirs)")
        }
    }

    @Test func divergenceNamesEpochAndStepAndKeepsTheGoodCheckpoint() throws {
        try withTemporaryFolder { folder in
            let model = folder + "/model.safetensors"
            let good = try runBackprop(["train"] + Self.quick + ["--save", model])
            #expect(good.status == 0, "stderr: \(good.standardError)")
            let before = try Data(contentsOf: URL(fileURLWithPath: model))

            let diverged = try runBackprop(
                ["train"] + Self.quick + [
                    "--optimizer", "sgd", "--schedule", "constant", "--lr", "1e5", "--weight-decay", "0", "--save",
                    model,
                ])
            #expect(diverged.status == 1)
            #expect(!diverged.crashed)
            let message = diverged.standardError.split(separator: "\n").last.map(String.init) ?? ""
            #expect(message.hasPrefix("Error: training diverged at epoch "), "\(diverged.standardError)")
            #expect(message.contains(", step ") && message.contains("try a lower learning rate"))
            #expect(message.hasSuffix("(nothing was written to \(model))"))
            #expect(try Data(contentsOf: URL(fileURLWithPath: model)) == before)
        }
    }

    /// A resumed run that stops before its first epoch ends names the file that holds the state
    /// (the one resumed from), not the --save file it has not written (it used to say that file
    /// held the epoch, and suggest resuming from a file that did not exist).
    @Test func aResumedRunThatStopsEarlyNamesTheFileThatHoldsItsState() throws {
        try withTemporaryFolder { folder in
            let (first, second) = (folder + "/a.safetensors", folder + "/b.safetensors")
            let trained = try runBackprop(
                ["train", "--limit", "600", "--hidden", "32", "--epochs", "1", "--optimizer", "sgd", "--save", first])
            #expect(trained.status == 0, "stderr: \(trained.standardError)")
            // The run made to have two epochs, the second at a rate that diverges at once.
            try editSafetensors(at: first) { metadata, _ in
                var training =
                    (try? JSONSerialization.jsonObject(with: Data((metadata["training"] ?? "").utf8)))
                    as? [String: Any] ?? [:]
                training["epochs"] = 2
                training["learning_rate"] = 1e5
                training["schedule"] = "constant"
                training["weight_decay"] = 0
                metadata["training"] = String(
                    decoding: (try? JSONSerialization.data(withJSONObject: training)) ?? Data(), as: UTF8.self)
            }
            let resumed = try runBackprop(["train", "--resume", first, "--save", second])
            #expect(resumed.status == 1 && !resumed.crashed, "\(resumed.standardError)")
            #expect(
                resumed.standardError.hasSuffix(
                    "(\(first) holds epoch 1, the last before the divergence; nothing was written to \(second) yet)\n"),
                "\(resumed.standardError)")
            #expect(!FileManager.default.fileExists(atPath: second))
        }
    }

    @Test func theSeedsMSEModelTrainsFromTheCommandLine() throws {
        try withTemporaryFolder { folder in
            let model = folder + "/seed.safetensors"
            let arguments = [
                "--limit", "600", "--hidden", "50", "--loss", "mse", "--epochs", "4", "--batch-size", "25",
            ]
            let result = try runBackprop(["train"] + arguments + ["--json", "--save", model])
            #expect(result.status == 0, "stderr: \(result.standardError)")
            let report = try Self.parseJSON(result.standardOutput)
            #expect(report["sizes"] as? [Int] == [784, 50, 1])
            let losses = try #require(report["epochs"] as? [[String: Any]]).compactMap { $0["train_loss"] as? Double }
            #expect(losses.count == 4)
            for (before, after) in zip(losses, losses.dropFirst()) {
                #expect(after < before, "MSE training loss by epoch: \(losses)")
            }
            let evaluated = try runBackprop(["evaluate", "--model", model, "--limit", "600", "--json"])
            #expect(evaluated.status == 0, "stderr: \(evaluated.standardError)")
            #expect(
                try Self.parseJSON(evaluated.standardOutput)["test_accuracy"] as? Double == report["test_accuracy"]
                    as? Double)
        }
    }

    @Test(arguments: [
        (["--hidden", "256,x"], "--hidden: expected comma-separated positive sizes such as 256,128, found '256,x'"),
        (["--optimizer", "rmsprop"], "--optimizer: expected one of sgd, momentum, adam, found 'rmsprop'"),
        (["--epochs", "0"], "--epochs: expected a positive number, found 0"),
        (["--lr=-1"], "--lr: expected a positive number, found -1.0"),
        (
            ["--save", "/no/such/folder/m.safetensors"],
            "--save /no/such/folder/m.safetensors: the folder /no/such/folder does not exist"
        ),
        (["--plot", "plot.png"], "--plot plot.png: expected a file name ending in .svg"),
        (["--loss", "hinge"], "--loss: expected one of cross-entropy, mse, found 'hinge'"),
        (["--threads", "0"], "--threads: expected 1 to 64, found 0"),
        (["--limit", "5"], "--limit: expected at least 6 images (one sixth validate), found 5"),
        (["--init", ""], "--init: expected a file path, found an empty one"),
        (["--resume", ""], "--resume: expected a file path, found an empty one"),
    ])
    func badOptionsGiveOneLineNamingTheOption(arguments: [String], message: String) throws {
        let result = try runBackprop(["train"] + arguments)
        #expect(result.status != 0 && !result.crashed)
        #expect(result.standardError == "Error: \(message)\n")
        #expect(result.standardOutput.isEmpty)
    }

    @Test("gradcheck --init of a train --save checkpoint checks the trained network, optimizer state aside")
    func gradcheckOfATrainedCheckpoint() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/run.safetensors"
            let trained = try runBackprop([
                "train", "--limit", "60", "--layers", "lin 8, relu, lin 10", "--epochs", "1", "--save", path,
            ])
            #expect(trained.status == 0, "\(trained.standardError)")
            #expect(try Safetensors.read(path: path).names.contains { $0.hasPrefix("optimizer.") })
            let run = try runBackprop(["gradcheck", "--init", path, "--rows", "8", "--json"])
            #expect(run.status == 0 && !run.crashed, "\(run.standardError)")
            let report = try Self.parseJSON(run.standardOutput)
            #expect((report["report"] as? [String: Any])?["passed"] as? Bool == true, "\(run.standardOutput)")
            #expect(run.standardOutput.contains("lin 8, relu, lin 10"), "\(run.standardOutput)")
        }
    }

    @Test("train --init of a checkpoint, without --layers or --hidden, trains the checkpoint's own network")
    func trainTakesTheNetworkOfItsInit() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 11)
            let layers = "conv 3 3 pad 1, batchnorm, relu, maxpool 2, flatten, dropout 0.25, lin 6 nobias, relu, lin 10"
            let base = try runBackprop([
                "train", "--layers", layers, "--data", folder, "--epochs", "1", "--save", folder + "/base.safetensors",
            ])
            #expect(base.status == 0, "\(base.standardError)")
            // A learning rate so small that the weights stay the file's.
            let tuned = try runBackprop([
                "train", "--init", folder + "/base.safetensors", "--data", folder, "--epochs", "1", "--lr", "1e-9",
                "--save", folder + "/tuned.safetensors",
            ])
            #expect(tuned.status == 0, "\(tuned.standardError)")
            let before = try Checkpoint.load(path: folder + "/base.safetensors")
            let after = try Checkpoint.load(path: folder + "/tuned.safetensors")
            #expect(try Checkpoint.modelDescription(of: after) == ModelDescription(parsing: layers))
            #expect(before.namedParameters.map(\.name) == after.namedParameters.map(\.name))
            for (a, b) in zip(before.namedParameters, after.namedParameters) {
                expectAllNear(b.tensor, a.tensor, tolerance: 1e-6, b.name)
            }
            // The same checkpoint on Fashion-MNIST's 28×28 images: refused, naming both shapes.
            let saved = folder + "/base.safetensors"
            let otherImages = try runBackprop(["train", "--init", saved, "--limit", "60", "--epochs", "1"])
            #expect(otherImages.status == 1 && !otherImages.crashed)
            #expect(
                otherImages.standardError.hasPrefix("Error: \(saved): the model takes inputs of shape [1, 4, 4], but ")
                    && otherImages.standardError.hasSuffix(" have shape [1, 28, 28]\n"), "\(otherImages.standardError)")
            let checked = try runBackprop(["gradcheck", "--init", saved, "--rows", "4"])
            #expect(checked.status == 1 && !checked.crashed)
            #expect(
                checked.standardError.hasPrefix(
                    "Error: --init \(saved): the model takes inputs of shape [1, 4, 4], but ")
                    && checked.standardError.hasSuffix(") have shape [1, 28, 28]\n"), "\(checked.standardError)")
            // A network given on the command line is still the one trained: --hidden's MLP does not fit.
            let misfit = try runBackprop([
                "train", "--init", folder + "/base.safetensors", "--hidden", "8", "--data", folder, "--epochs", "1",
            ])
            #expect(misfit.status == 1 && !misfit.crashed)
            #expect(
                misfit.standardError.hasPrefix("Error: \(folder)/base.safetensors: holds the model \"\(layers)\"")
                    && misfit.standardError.contains("expected 16-8-10"), "\(misfit.standardError)")
        }
    }

    @Test func evaluatingAFileThatIsNotACheckpointSaysSo() throws {
        let path = fixturePath("python_written.safetensors")
        let result = try runBackprop(["evaluate", "--model", path, "--limit", "10"])
        #expect(result.status == 1 && !result.crashed)
        #expect(
            result.standardError
                == "Error: \(path): is not a Backprop checkpoint: expected format 'backprop-mlp' or 'backprop-model', found format 'pt'; "
                + "a PyTorch state_dict is read with --layers, which gives its architecture (such as 'lin 256, relu, "
                + "lin 10'; README, \"PyTorch interop\")\n"
        )
    }
}
