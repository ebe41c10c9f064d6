import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropNetwork
import BackpropONNX
@testable import BackpropTraining

// Files Backprop wrote are read back by Backprop as they are: a state_dict of `backprop export
// --format pytorch` without --layers. Files damaged after they were written are refused with the
// file, the tensor or setting, what was expected and what was found: a batch norm's negative
// running variance, a setting of `training` out of its type's range.

@Suite("Checkpoints read back: exported state_dicts, running variances, settings out of range")
struct CheckpointReadBackTests {
    /// `backprop evaluate --json` of `model` on the data in `folder`: its test accuracy and loss.
    private func evaluate(
        _ model: String, data folder: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (accuracy: Double, loss: Double) {
        let result = try runBackprop(["evaluate", "--model", model, "--data", folder, "--json"])
        #expect(result.status == 0, "evaluate \(model): \(result.standardError)", sourceLocation: sourceLocation)
        let object = try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any]
        let accuracy = try #require(object?["test_accuracy"] as? Double, sourceLocation: sourceLocation)
        let loss = try #require(object?["test_loss"] as? Double, sourceLocation: sourceLocation)
        return (accuracy, loss)
    }

    /// Runs `backprop` with `arguments` and expects it to succeed.
    @discardableResult
    private func succeed(
        _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> CommandResult {
        let result = try runBackprop(arguments)
        #expect(
            result.status == 0, "backprop \(arguments.joined(separator: " ")): \(result.standardError)",
            sourceLocation: sourceLocation)
        return result
    }

    @Test(
        "a state_dict that backprop export wrote is evaluated, exported and trained from without --layers",
        arguments: [
            ["--hidden", "8"], ["--layers", "conv 4 3 pad 1, batchnorm, relu, maxpool 2, flatten, lin 10"],
        ])
    func exportedStateDictIsReadBack(network: [String]) throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 8)  // 4×4 images
            let (original, exported) = (folder + "/model.safetensors", folder + "/exported.safetensors")
            try succeed(["train"] + network + ["--data", folder, "--epochs", "1", "--save", original])
            try succeed(["export", original, "--format", "pytorch", exported])
            #expect(try Checkpoint.isBackpropCheckpoint(path: exported))

            // The library: the same model, inputs and normalisation, and the same logits, bit for bit.
            let saved = try Checkpoint.load(from: original)
            let read = try Checkpoint.load(from: exported)
            #expect(try Checkpoint.modelDescription(of: read.model) == Checkpoint.modelDescription(of: saved.model))
            #expect(read.inputShape == saved.inputShape)
            #expect(try Checkpoint.inputShape(path: exported) == saved.inputShape)
            #expect(read.normalization.map { [$0.mean, $0.std] } == saved.normalization.map { [$0.mean, $0.std] })
            var generator = RandomGenerator(seed: 2)
            let x = Tensor.randn([5] + saved.inputShape, generator: &generator)
            #expect(read.model.predict(x).values == saved.model.predict(x).values)

            // evaluate: the original checkpoint's accuracy and loss.
            let reference = try evaluate(original, data: folder)
            let evaluated = try evaluate(exported, data: folder)
            #expect(evaluated.accuracy == reference.accuracy && evaluated.loss == reference.loss)

            // export again: the same tensors and metadata; to ONNX: the same accuracy.
            let again = folder + "/again.safetensors"
            try succeed(["export", exported, "--format", "pytorch", again])
            let (first, second) = (try Safetensors.read(path: exported), try Safetensors.read(path: again))
            #expect(first.names == second.names && first.metadata == second.metadata)
            for name in first.names {
                #expect((try first.tensor(name)).values == (try second.tensor(name)).values, "\(name)")
            }
            let onnx = folder + "/exported.onnx"
            try succeed(["export", exported, "--format", "onnx", onnx])
            let fromONNX = try evaluate(onnx, data: folder)
            #expect(fromONNX.accuracy == reference.accuracy)
            #expect(abs(fromONNX.loss - reference.loss) <= 1e-4 * abs(reference.loss), "\(fromONNX) \(reference)")

            // gradcheck --init: the same network and weights, so the same report (the seconds aside).
            func gradcheck(_ model: String) throws -> NSDictionary {
                let result = try runBackprop(["gradcheck", "--init", model, "--data", folder, "--rows", "8", "--json"])
                #expect(result.status == 0, "\(result.standardError)")
                let report = try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8))
                var dictionary = try #require(report as? [String: Any])
                dictionary["seconds"] = nil
                return dictionary as NSDictionary
            }
            #expect(try gradcheck(exported) == gradcheck(original))

            // train --init: the file's own network, starting from its weights (a rate too small to move them).
            let started = folder + "/started.safetensors"
            try succeed([
                "train", "--init", exported, "--data", folder, "--epochs", "1", "--lr", "1e-9", "--save", started,
            ])
            let trained = try Checkpoint.load(path: started)
            #expect(try Checkpoint.modelDescription(of: trained) == Checkpoint.modelDescription(of: saved.model))
            for (parameter, reference) in zip(trained.namedParameters, saved.model.namedParameters) {
                expectAllNear(parameter.tensor, reference.tensor, tolerance: 1e-6, parameter.name)
            }
        }
    }

    @Test("another network than the exported one is refused by train --init, naming both")
    func exportedStateDictOfAnotherNetwork() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 8)
            let (original, exported) = (folder + "/model.safetensors", folder + "/exported.safetensors")
            try succeed(["train", "--hidden", "8", "--data", folder, "--epochs", "1", "--save", original])
            try succeed(["export", original, "--format", "pytorch", exported])
            let held = "holds the PyTorch state_dict of the model \"lin 8, relu, lin 10\" (cross_entropy, examples of "
            for (network, expected) in [
                (["--hidden", "9"], "expected a 16-9-10 relu cross_entropy model"),
                (["--layers", "lin 8, tanh, lin 10"], "expected the model \"lin 8, tanh, lin 10\" (cross_entropy)"),
            ] {
                let result = try runBackprop(
                    ["train", "--init", exported, "--data", folder, "--epochs", "1"] + network)
                #expect(result.status == 1 && !result.crashed)
                #expect(
                    result.standardError == "Error: \(exported): \(held)shape [16]), \(expected)\n",
                    "\(result.standardError)")
            }
        }
    }

    @Test("a state_dict that PyTorch wrote (no Backprop metadata) still needs --layers")
    func stateDictOfPyTorchNeedsLayers() throws {
        let path = fixturePath("pytorch_mlp.safetensors")
        #expect(!(try Checkpoint.isBackpropCheckpoint(path: path)))
        let result = try runBackprop(["evaluate", "--model", path, "--limit", "10"])
        #expect(result.status == 1 && !result.crashed)
        #expect(
            result.standardError
                == "Error: \(path): is not a Backprop checkpoint: expected format 'backprop-mlp' or 'backprop-model', "
                + "found format 'pt'; a PyTorch state_dict is read with --layers, which gives its architecture (such "
                + "as 'lin 256, relu, lin 10'; README, \"PyTorch interop\")\n")
        // Backprop's description alone, without the shape of an example, is not one Backprop wrote.
        try withTemporaryFolder { folder in
            let copy = folder + "/layers-only.safetensors"
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            try editSafetensors(at: copy) { metadata, _ in metadata["layers"] = PyTorchInteropTests.mlpLayers }
            #expect(!(try Checkpoint.isBackpropCheckpoint(path: copy)))
        }
    }

    // MARK: - Running variances

    /// The message for a running variance of -0.5 in channel 2 of the tensor `name` of `path`.
    private static func negativeVariance(_ path: String, _ name: String) -> String {
        "\(path): tensor '\(name)' holds the running variance -0.5 for channel 2 with eps 1e-05; expected "
            + "running_var ≥ 0 and running_var + eps > 0 (a batch norm divides by √(running_var + eps)), so the "
            + "file is damaged"
    }

    @Test("a negative running variance is refused by evaluate and export, which write nothing")
    func negativeRunningVarianceIsRefused() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 8)
            let model = try PyTorchInteropTests.convnet(seed: 3)
            let checkpoint = folder + "/model.safetensors"
            try Checkpoint.save(model, to: checkpoint, inputShape: [1, 8, 8])
            try editSafetensors(at: checkpoint) { _, tensors in
                let variance = tensors["layers.1.running_var"]?.copy()
                variance?.withUnsafeMutableBufferPointer { $0[2] = -0.5 }
                tensors["layers.1.running_var"] = variance
            }
            // The same in a state_dict of backprop export (written from a model that holds it).
            let norm = try #require(model.layers[1] as? BatchNorm)
            norm.runningVar.withUnsafeMutableBufferPointer { $0[2] = -0.5 }
            let exported = folder + "/exported.safetensors"
            try Checkpoint.savePyTorch(model, to: exported, inputShape: [1, 8, 8])

            for (path, name) in [(checkpoint, "layers.1.running_var"), (exported, "1.running_var")] {
                let message = "Error: " + Self.negativeVariance(path, name) + "\n"
                let before = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
                for arguments in [
                    ["evaluate", "--model", path, "--data", folder],
                    ["export", path, "--format", "pytorch", folder + "/out.safetensors"],
                    ["export", path, "--format", "onnx", folder + "/out.onnx"],
                    [
                        "train", "--init", path, "--data", folder, "--epochs", "1", "--save",
                        folder + "/run.safetensors",
                    ],
                ] {
                    let result = try runBackprop(arguments)
                    #expect(result.status == 1 && !result.crashed, "\(arguments)")
                    #expect(result.standardError == message, "\(arguments)")
                    #expect(result.standardOutput.isEmpty, "\(arguments)")
                }
                #expect(Set(try FileManager.default.contentsOfDirectory(atPath: folder)) == before)
                #expect(throws: DataError.self) { try Checkpoint.load(path: path) }
            }

            // Checkpoint.load(path:into:) refuses it and leaves the model as it was.
            let target = try PyTorchInteropTests.convnet(seed: 4)
            let values = (target.namedParameters + target.namedBuffers).map(\.tensor.values)
            do {
                try Checkpoint.load(path: checkpoint, into: target)
                Issue.record("no error")
            } catch let error as DataError {
                #expect(error.description == Self.negativeVariance(checkpoint, "layers.1.running_var"))
            }
            #expect((target.namedParameters + target.namedBuffers).map(\.tensor.values) == values)
        }
    }

    @Test("a running variance of 0 is refused under eps 0, and read under a positive eps")
    func zeroRunningVarianceNeedsAPositiveEps() throws {
        try withTemporaryFolder { folder in
            for (eps, refused) in [("0", true), ("1e-05", false)] {
                var generator = RandomGenerator(seed: 1)
                let model = try Model(
                    description: ModelDescription(parsing: "batchnorm eps \(eps), lin 10"), inputShape: [4],
                    loss: CrossEntropy(), generator: &generator)
                let norm = try #require(model.layers[0] as? BatchNorm)
                norm.runningVar.withUnsafeMutableBufferPointer { $0[3] = 0 }
                let path = folder + "/eps\(eps).safetensors"
                try Checkpoint.save(model, to: path)
                if refused {
                    do {
                        _ = try Checkpoint.load(path: path)
                        Issue.record("eps \(eps): no error")
                    } catch let error as DataError {
                        #expect(
                            error.problem.hasPrefix(
                                "tensor 'layers.0.running_var' holds the running variance 0.0 for channel 3 with eps 0.0;"
                            ),
                            "\(error)")
                    }
                } else {
                    #expect(throws: Never.self) { try Checkpoint.load(path: path) }
                }
            }
        }
    }

    // MARK: - Settings out of range

    @Test(
        "a setting of \"training\" out of its type's range is named, with the range and the value found",
        arguments: [
            (
                "\"seed\":42", "\"seed\":-1",
                "metadata \"training\" holds a setting out of range: \"seed\" (--seed): expected a whole number from 0 "
                    + "to 18446744073709551615, found -1"
            ),
            (
                "\"seed\":42", "\"seed\":1e30",
                "metadata \"training\" holds a setting out of range: \"seed\" (--seed): expected a whole number from 0 "
                    + "to 18446744073709551615, found 1e+30"
            ),
            (
                "\"seed\":42", "\"seed\":18446744073709551616",
                "metadata \"training\" holds a setting out of range: \"seed\" (--seed): expected a whole number from 0 "
                    + "to 18446744073709551615, found 18446744073709551616"
            ),
            (
                "\"epochs\":3", "\"epochs\":1e30",
                "metadata \"training\" holds a setting out of range: \"epochs\" (--epochs): expected a whole number "
                    + "from 1 to 9223372036854775807, found 1e+30"
            ),
            (
                "\"learning_rate\":0.01", "\"learning_rate\":1e39",
                "metadata \"training\" holds a setting out of range: \"learning_rate\" (--lr): expected a number from "
                    + "-3.4028235e+38 to 3.4028235e+38, found 1e+39"
            ),
            (
                "\"hidden\":[16,8]", "\"hidden\":[16,1e30]",
                "metadata \"training\" holds a setting out of range: \"hidden\" (--hidden) size 1: expected a whole "
                    + "number from 1 to 9223372036854775807, found 1e+30"
            ),
            ("\"seed\":42,", "", "metadata \"training\" is not valid settings: no \"seed\""),
            // Foundation's own words named Swift types: "Expected to decode Array<Any> but found a
            // dictionary instead.", "Cannot get value of type Int -- found null value instead".
            (
                "\"hidden\":[16,8]", "\"hidden\":{\"a\":1}",
                "metadata \"training\" is not valid settings: \"hidden\": expected a list, found a dictionary"
            ),
            (
                "\"hidden\":[16,8]", "\"hidden\":[16,\"8\"]",
                "metadata \"training\" is not valid settings: \"hidden\" [1]: expected a whole number, found a string"
            ),
            (
                "\"seed\":42", "\"seed\":null",
                "metadata \"training\" is not valid settings: \"seed\": expected a whole number, found null"
            ),
            ("\"seed\":42", "\"seed\":42,,", "metadata \"training\" is not valid JSON: '{\"batch_size\":32,"),
        ])
    func settingsOutOfTheirTypesRange(original: String, replacement: String, message: String) throws {
        let problem = try SizesAndResumeTests.trainingSettingsProblem(replacing: original, with: replacement)
        #expect(problem?.hasPrefix(message) == true, "\(problem ?? "no error")")
    }

    @Test("train --resume names a seed out of range, and a number of the history out of range")
    func resumeNamesANumberOutOfRange() throws {
        try withTemporaryFolder { folder in
            let path = folder + "/run.safetensors"
            try SizesAndResumeTests.editedCheckpoint(at: path) { metadata, _ in
                metadata["training"] = metadata["training"]?.replacingOccurrences(
                    of: "\"seed\":42", with: "\"seed\":-1")
            }
            let result = try runBackprop(["train", "--resume", path])
            #expect(result.status == 1 && !result.crashed)
            #expect(
                result.standardError
                    == "Error: \(path): metadata \"training\" holds a setting out of range: \"seed\" (--seed): expected "
                    + "a whole number from 0 to 18446744073709551615, found -1\n")

            try SizesAndResumeTests.editedCheckpoint(at: path) { metadata, _ in
                metadata["history"] = metadata["history"]?.replacingOccurrences(
                    of: "\"train_loss\":", with: "\"train_loss\":1e39,\"ignored\":")
            }
            let history = try runBackprop(["train", "--resume", path])
            #expect(history.status == 1 && !history.crashed)
            #expect(
                history.standardError
                    == "Error: \(path): metadata \"history\" holds a number out of range: record 0 \"train_loss\": "
                    + "expected a number from -3.4028235e+38 to 3.4028235e+38, found 1e+39\n")
        }
    }
}
