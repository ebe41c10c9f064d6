import Foundation
import Testing

@testable import BackpropCore
@testable import backprop
@testable import BackpropData
@testable import BackpropNetwork
@testable import BackpropTraining

// Issue 12, families 8 and 4: a failing check prints its report and exits 1 without an `Error:`
// line; a negative number is named as such, not as a missing value; `bench --rows` beyond the
// data set, a model whose weights are not finite, images of 0 pixels, tensors with a dimension
// of 0, a training set too small to split and an empty test set are one-line errors.

/// Runs `backprop arguments` (with `{dir}` replaced by `folder`) and checks the catalogue's
/// contract: not killed by a signal, a non-zero status, nothing on stdout, one `Error: …` line on
/// stderr holding each of `fragments`, and no file added to or removed from `folder`.
private func expectOneLineError(
    _ arguments: [String], in folder: String, _ fragments: [String], environment: [String: String]? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let before = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
    let arguments = arguments.map { $0.replacingOccurrences(of: "{dir}", with: folder) }
    let run = try runBackprop(arguments, environment: environment)
    #expect(!run.crashed, "\(arguments) was killed by a signal: \(run.standardError)", sourceLocation: sourceLocation)
    #expect(run.status != 0, "\(arguments) exited with 0", sourceLocation: sourceLocation)
    #expect(run.standardOutput.isEmpty, "\(arguments) printed: \(run.standardOutput)", sourceLocation: sourceLocation)
    let lines = run.standardError.split(separator: "\n", omittingEmptySubsequences: false)
    #expect(
        lines.count == 2 && lines[0].hasPrefix("Error: ") && lines[1].isEmpty,
        "\(arguments): stderr is not one `Error: …` line: \(run.standardError)", sourceLocation: sourceLocation)
    for fragment in fragments.map({ $0.replacingOccurrences(of: "{dir}", with: folder) }) {
        #expect(
            run.standardError.contains(fragment), "\(arguments): \"\(run.standardError)\" lacks \"\(fragment)\"",
            sourceLocation: sourceLocation)
    }
    let after = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
    #expect(after == before, "\(arguments) left \(after.subtracting(before))", sourceLocation: sourceLocation)
}

/// A data set in `folder`: `train` training and `test` test images of `height × width` pixels
/// (gzip), labels `i mod 10`.
private func writeDataset(in folder: String, train: Int = 12, test: Int = 3, height: Int = 2, width: Int = 2) throws {
    let pixels = height * width
    try IDX.write(
        (0..<train * pixels).map { UInt8($0 * 5 % 256) }, shape: [train, height, width],
        to: folder + "/train-images-idx3-ubyte.gz")
    try IDX.write((0..<train).map { UInt8($0 % 10) }, shape: [train], to: folder + "/train-labels-idx1-ubyte.gz")
    try IDX.write(
        (0..<test * pixels).map { UInt8($0 * 7 % 256) }, shape: [test, height, width],
        to: folder + "/t10k-images-idx3-ubyte.gz")
    try IDX.write((0..<test).map { UInt8($0 % 10) }, shape: [test], to: folder + "/t10k-labels-idx1-ubyte.gz")
}

/// A checkpoint of a 4-3-10 model at `folder/name`, as `backprop train --save` writes one for
/// images of 2×2 pixels, with `edit` applied to its tensors.
private func writeCheckpoint(
    in folder: String, name: String = "m.safetensors", _ edit: (inout [String: Tensor]) -> Void = { _ in }
) throws {
    var generator = RandomGenerator(seed: 5)
    let model = Model.mlp(sizes: [4, 3, 10], loss: CrossEntropy(), generator: &generator)
    let path = folder + "/" + name
    try Checkpoint.save(model, to: path, metadata: ["input_mean": "0.5", "input_std": "0.25"])
    let file = try Safetensors.read(path: path)
    var tensors = file.tensors
    edit(&tensors)
    try Safetensors.write(tensors, metadata: file.metadata, to: path)
}

/// `tensor` with its element `index` (counting row-major) set to `value`.
private func replacing(_ tensor: Tensor?, at index: Int, with value: Float) -> Tensor {
    var values = tensor!.values
    values[index] = value
    return Tensor(shape: tensor!.shape, values: values)
}

/// The seed's inputs `x` (4, 3) and `y` (4) at `folder/inputs.safetensors` and the weights of a
/// 3-2-1 model at `folder/weights.safetensors`, each value multiplied by `scale`.
private func writeSeedFiles(in folder: String, scale: Float = 1) throws {
    let x = Tensor(shape: [4, 3], values: (0..<12).map { Float($0 % 5 - 2) * scale })
    try Safetensors.write(["x": x, "y": Tensor([0, 1, 2, 3])], to: folder + "/inputs.safetensors")
    let weights: [String: Tensor] = [
        "w1": Tensor(shape: [3, 2], values: (0..<6).map { Float($0 * 3 % 7 - 3) * scale }),
        "b1": Tensor([0.5, 0.5]), "w2": Tensor(shape: [2, 1], values: [scale, -scale]), "b2": Tensor([0]),
    ]
    try Safetensors.write(weights, to: folder + "/weights.safetensors")
}

/// The environment of this process with `BACKPROP_DATA` set to `folder`.
private func environment(data folder: String) -> [String: String] {
    var environment = ProcessInfo.processInfo.environment
    environment[FashionMNIST.environmentVariable] = folder
    return environment
}

@Suite("Bad inputs: messages (failing checks, negative numbers, bench --rows, non-finite models)")
struct MessagesTests {
    @Test("a failing near prints its report on stdout and exits 1, with nothing on stderr")
    func failingNearExitsOneWithItsReport() throws {
        try withTemporaryFolder { folder in
            try Safetensors.write(["w": Tensor([1, 2, 3])], to: folder + "/actual.safetensors")
            try Safetensors.write(["w": Tensor([1, 2, 4])], to: folder + "/expected.safetensors")
            let run = try runBackprop(["near", folder + "/actual.safetensors", folder + "/expected.safetensors"])
            #expect(!run.crashed)
            #expect(run.status == 1)
            #expect(run.standardError.isEmpty, "stderr: \(run.standardError)")
            #expect(run.standardOutput.contains("w: not near: 1 of 3 elements out of tolerance; worst at [2]"))
            #expect(run.standardOutput.hasSuffix("NOT NEAR\n"), "\(run.standardOutput)")
            // A name given twice is compared once: "all 2 tensors" counted w twice.
            try Safetensors.write(["w": Tensor([1, 2, 3])], to: folder + "/expected.safetensors")
            let twice = try runBackprop([
                "near", folder + "/actual.safetensors", folder + "/expected.safetensors", "--tensors", "w, w",
            ])
            #expect(twice.status == 0, "\(twice.standardOutput)")
            #expect(twice.standardOutput.hasSuffix("NEAR: the 1 tensor\n"), "\(twice.standardOutput)")
        }
    }

    @Test("a failing gradcheck prints its table on stdout and exits 1, with nothing on stderr")
    func failingGradcheckExitsOneWithItsReport() throws {
        try withTemporaryFolder { folder in
            // Values of 1e3 make the loss about 1e19, too large for Float finite differences.
            try writeSeedFiles(in: folder, scale: 1e3)
            let arguments = [
                "gradcheck", "--tensors", folder + "/inputs.safetensors", "--init", folder + "/weights.safetensors",
            ]
            for json in [false, true] {
                let run = try runBackprop(arguments + (json ? ["--json"] : []))
                #expect(!run.crashed)
                #expect(run.status == 1)
                #expect(run.standardError.isEmpty, "stderr: \(run.standardError)")
                if json {
                    #expect(run.standardOutput.contains("\"passed\" : false"), "\(run.standardOutput)")
                } else {
                    #expect(run.standardOutput.contains("FAIL: "), "\(run.standardOutput)")
                }
            }
            // The same files at scale 1 pass: the failure above is the values', not the files'.
            try writeSeedFiles(in: folder)
            let passing = try runBackprop(arguments)
            #expect(passing.status == 0 && passing.standardOutput.contains("PASS: all 5 tensors"))
        }
    }

    @Test(
        "a negative number is read as the option's value and refused as out of range",
        arguments: [
            (["gradcheck", "--rows", "-5"], "--rows must be at least 1, got -5"),
            (["gradcheck", "--samples", "-3"], "--samples must be at least 1, got -3"),
            (
                ["gradcheck", "--seed", "-1"],
                "--seed: expected a whole number from 0 to 18446744073709551615, found '-1'"
            ),
            (["bench", "--runs", "-5"], "--runs must be at least 1, got -5"),
            (["bench", "--rows", "-5"], "--rows must be at least 10, got -5"),
            (["explain", "--rows", "-3"], "--rows: expected a number of rows from 1 to 50000, found -3"),
            (
                ["explain", "--seed", "-3"],
                "--seed: expected a whole number from 0 to 18446744073709551615, found '-3'"
            ),
            (
                ["near", "a.safetensors", "b.safetensors", "--absolute-tolerance", "-1"],
                "--absolute-tolerance: expected a number ≥ 0, found -1"
            ),
            (
                ["near", "a.safetensors", "b.safetensors", "--relative-tolerance", "-0.5"],
                "--relative-tolerance: expected a number ≥ 0, found -0.5"
            ),
        ])
    func negativeNumbersAreNamed(_ arguments: [String], _ message: String) throws {
        try withTemporaryFolder { folder in
            try expectOneLineError(arguments, in: folder, ["Error: " + message])
            let run = try runBackprop(arguments)
            #expect(!run.standardError.contains("Missing value"))
        }
    }

    @Test("bench --rows beyond the training rows of a data set that exists is an error naming both")
    func benchRowsBeyondTheDataSet() throws {
        try withTemporaryFolder { folder in
            try writeDataset(in: folder)  // 12 images: 10 train, 2 validate
            let message = "Error: --rows 20: the training set in {dir} has only 10 rows"
            let bench = ["bench", "--rows", "20", "--runs", "1", "--only", "seed"]
            try expectOneLineError(bench + ["--data", "{dir}"], in: folder, [message])
            // The folder named by BACKPROP_DATA, or installed by default, is held to the same.
            try expectOneLineError(bench, in: folder, [message], environment: environment(data: folder))
            // Within the data set, it runs on it.
            let within = try runBackprop(["bench", "--rows", "10", "--runs", "1", "--only", "seed", "--data", folder])
            #expect(within.status == 0, "\(within.standardError)")
            #expect(within.standardOutput.hasPrefix("backprop bench: fashion-mnist inputs, 10 rows"))
        }
    }

    @Test("bench without --data falls back to random inputs when the data set is not installed, not elsewhere")
    func benchFallsBackWhenNoDataSetIsInstalled() throws {
        try withTemporaryFolder { folder in
            // The default folder, not installed (here one of the test's own), and --synthetic.
            let missing = folder + "/not-installed"
            #expect(BenchCommand.usesRandomInputs(synthetic: false, directory: missing, defaultDirectory: missing))
            #expect(BenchCommand.usesRandomInputs(synthetic: true, directory: folder, defaultDirectory: missing))
            // A folder named on purpose (--data, $BACKPROP_DATA) is read, or its absence is an error.
            try writeDataset(in: folder)
            #expect(!BenchCommand.usesRandomInputs(synthetic: false, directory: folder, defaultDirectory: missing))
            #expect(!BenchCommand.usesRandomInputs(synthetic: false, directory: missing, defaultDirectory: folder))
            let run = try runBackprop(
                ["bench", "--rows", "20", "--runs", "1", "--only", "seed"], environment: environment(data: missing))
            #expect(!run.crashed && run.status == 1, "\(run.standardError)")
            #expect(run.standardError.hasPrefix("Error: \(missing): no such folder"), "\(run.standardError)")
        }
    }

    @Test("a checkpoint whose loss does not fit its outputs is refused, not run into a precondition")
    func lossThatDoesNotFitTheOutputs() throws {
        try withTemporaryFolder { folder in
            try writeDataset(in: folder)
            let evaluate = ["evaluate", "--data", "{dir}", "--model"]
            // Ten outputs with the mean squared error (which compares each output with a target).
            try writeCheckpoint(in: folder, name: "mse10.safetensors")
            try editSafetensors(at: folder + "/mse10.safetensors") { metadata, _ in metadata["loss"] = "mse" }
            try expectOneLineError(
                evaluate + ["{dir}/mse10.safetensors"], in: folder,
                [
                    "Error: {dir}/mse10.safetensors: the model gives 10 outputs with a mean squared error loss; "
                        + "expected 10 outputs with cross-entropy, or 1 with the mean squared error"
                ])
            // One output (the seed's regression) with cross-entropy over ten classes.
            var generator = RandomGenerator(seed: 5)
            let one = Model.mlp(sizes: [4, 3, 1], loss: CrossEntropy(), generator: &generator)
            try Checkpoint.save(one, to: folder + "/ce1.safetensors")
            try expectOneLineError(
                evaluate + ["{dir}/ce1.safetensors"], in: folder,
                [
                    "Error: {dir}/ce1.safetensors: the model gives 1 output with a cross-entropy loss; expected 10 "
                        + "outputs with cross-entropy, or 1 with the mean squared error"
                ])
            // The same model with the mean squared error is the seed's regression, and evaluates.
            let regression = Model.mlp(sizes: [4, 3, 1], loss: Mse(), generator: &generator)
            try Checkpoint.save(regression, to: folder + "/mse1.safetensors")
            let run = try runBackprop(["evaluate", "--data", folder, "--model", folder + "/mse1.safetensors"])
            #expect(run.status == 0 && !run.crashed, "\(run.standardError)")
        }
    }

    @Test("gradcheck --tensors takes x as images for a network that starts with a convolution")
    func gradcheckTakesImagesFromTensors() throws {
        try withTemporaryFolder { folder in
            var generator = RandomGenerator(seed: 9)
            let x = Tensor.randn([4, 1, 6, 6], generator: &generator)
            let y = Tensor([0, 2, 1, 2])
            try Safetensors.write(["x": x, "y": y], to: folder + "/images.safetensors")
            let layers = "conv 2 3, relu, flatten, lin 3"
            let run = try runBackprop([
                "gradcheck", "--tensors", folder + "/images.safetensors", "--layers", layers, "--samples", "4",
            ])
            #expect(run.status == 0 && !run.crashed, "\(run.standardError)\n\(run.standardOutput)")
            // The same x as rows: named once as a --layers problem, with the shape it was given.
            try Safetensors.write(["x": x.reshape([4, 36]), "y": y], to: folder + "/rows.safetensors")
            let rows = try runBackprop(["gradcheck", "--tensors", folder + "/rows.safetensors", "--layers", layers])
            // Status 64, a usage error, as explain's: gradcheck's 1 means a gradient failed its check.
            #expect(rows.status == 64 && !rows.crashed)
            #expect(rows.standardError.hasPrefix("Error: --layers: entry 1 \"conv 2 3\""), "\(rows.standardError)")
            #expect(rows.standardError.contains("(for inputs of shape [36] from 4 rows of"), "\(rows.standardError)")
        }
    }

    @Test("values that used to be ignored or to run without end: BACKPROP_THREADS, near --tensors '', bench --runs")
    func valuesThatUsedToPassSilently() throws {
        var environment = ProcessInfo.processInfo.environment
        for value in ["abc", "0", "-3", "65", "99999999999999999999"] {
            environment["BACKPROP_THREADS"] = value
            let run = try runBackprop(["explain", "--rows", "1"], environment: environment)
            #expect(!run.crashed && run.status != 0, "BACKPROP_THREADS=\(value)")
            #expect(
                run.standardError
                    == "Error: BACKPROP_THREADS: expected a number of threads from 1 to 64, found '\(value)'\n",
                "\(run.standardError)")
        }
        let near = try runBackprop(["near", "a.safetensors", "b.safetensors", "--tensors", " , "])
        #expect(near.standardError == "Error: --tensors: expected tensor names, comma-separated, found ' , '\n")
        let bench = try runBackprop(["bench", "--runs", "1001"])
        #expect(bench.standardError.hasPrefix("Error: --runs: expected at most 1000"), "\(bench.standardError)")
    }

    @Test("gradcheck of a network whose output does not fit its loss is refused, as explain refuses it")
    func gradcheckOfAnOutputThatDoesNotFitTheLoss() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 2)
            let cases: [([String], String)] = [
                (
                    ["--layers", "conv 2 3, relu"],
                    "Error: --layers: the model's output per example is [2, 2, 2]; the loss expects one vector "
                        + "per example (end with flatten and lin)\n"
                ),
                (
                    ["--layers", "lin 10", "--loss", "mse"],
                    "Error: --loss mse: expected a model with 1 output per example (the seed's regression), the "
                        + "model gives [10]\n"
                ),
                (
                    ["--layers", "lin 1", "--loss", "cross-entropy"],
                    "Error: --loss cross-entropy: y holds 4.0, but cross-entropy over the network's 1 outputs needs "
                        + "classes 0…0 (a network of one output takes --loss mse)\n"
                ),
            ]
            for (arguments, message) in cases {
                // (Both used to stop in the loss's precondition.)
                // Status 64, a usage error, as explain's: gradcheck's 1 means a gradient failed its check.
                let run = try runBackprop(["gradcheck", "--data", folder, "--rows", "4"] + arguments)
                #expect(!run.crashed && run.status == 64, "\(arguments): \(run.standardError)")
                #expect(run.standardError == message, "\(arguments)")
            }
            // A checkpoint's input shape whose pixels overflow Int: a mismatch, not a trap.
            let path = folder + "/m.safetensors"
            var generator = RandomGenerator(seed: 1)
            let model = try Model(
                description: ModelDescription(parsing: "conv 2 3, relu"), inputShape: [1, 4, 4], loss: CrossEntropy(),
                generator: &generator)
            try Checkpoint.save(model, to: path, inputShape: [1, 4, 4])
            try editSafetensors(at: path) { metadata, _ in metadata["input_shape"] = "1,3037000500,3037000500" }
            let evaluated = try runBackprop(["evaluate", "--model", path, "--data", folder])
            #expect(!evaluated.crashed && evaluated.status == 1)
            #expect(
                evaluated.standardError.hasPrefix(
                    "Error: \(path): the model takes inputs of shape [1, 3037000500, 3037000500], but the images in"),
                "\(evaluated.standardError)")
        }
    }

    @Test("explain and gradcheck take a convnet's images at the data folder's size, not 28×28")
    func imagesOfTheDataFoldersSize() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 4)  // 4×4 images
            let layers = ["--layers", "conv 2 3, flatten, lin 10", "--data", folder]
            // (Both used to stop reshaping the rows into 28×28 images.)
            let explained = try runBackprop(["explain"] + layers)
            #expect(!explained.crashed && explained.status == 0, "\(explained.standardError)")
            #expect(explained.standardOutput.contains("x [5, 1, 4, 4]"))
            #expect(!explained.standardOutput.contains("did not set"))
            let checked = try runBackprop(["gradcheck", "--rows", "6"] + layers)
            #expect(!checked.crashed && checked.status == 0, "\(checked.standardError)")
            #expect(checked.standardOutput.contains("PASS: all 5 tensors"), "\(checked.standardOutput)")
        }
    }

    @Test("explain and gradcheck of one row through a batch norm of one value per channel are refused")
    func oneRowThroughABatchNorm() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 5)  // 4×4 images
            for (layers, entry) in [
                ("batchnorm, lin 10", "entry 1"), ("conv 2 4, batchnorm, flatten, lin 10", "entry 2"),
            ] {
                for command in ["explain", "gradcheck"] {
                    // (Both used to stop in BatchNorm's precondition: one value per channel.)
                    let run = try runBackprop([command, "--layers", layers, "--rows", "1", "--data", folder])
                    #expect(!run.crashed && run.status != 0, "\(command) \(layers): \(run.standardError)")
                    #expect(
                        run.standardError == "Error: --rows 1: \(entry) \"batchnorm\" sees one value per channel in "
                            + "each row, and a batch norm in training needs at least 2 rows\n", "\(command) \(layers)")
                }
            }
            // Over channels of several values, one row is enough.
            let spatial = try runBackprop(
                ["explain", "--layers", "conv 2 3, batchnorm, flatten, lin 10", "--rows", "1", "--data", folder])
            #expect(spatial.status == 0, "\(spatial.standardError)")
        }
    }

    @Test("an empty path names its option, in every command that reads or writes one")
    func emptyPaths() throws {
        let inputs: [([String], String)] = [
            (["evaluate", "--model", ""], "--model"), (["seed", "--tensors", ""], "--tensors"),
            (["seed", "--init", ""], "--init"), (["gradcheck", "--tensors", ""], "--tensors"),
            (["gradcheck", "--init", ""], "--init"), (["export", "", "--format", "onnx", "out.onnx"], "<MODEL>"),
            (["near", "", "b.safetensors"], "<actual>"), (["near", "a.safetensors", ""], "<expected>"),
        ]
        let outputs: [([String], String)] = [
            (["train", "--save", ""], "--save"), (["train", "--plot", ""], "--plot"),
            (["train", "--resume", "r.safetensors", "--save", ""], "--save"),
            (["seed", "--save", ""], "--save"), (["gradcheck", "--layers", "lin 10", "--save", ""], "--save"),
            (["explain", "--html", ""], "--html"), (["explain", "--dot", ""], "--dot"),
            (["export", "model.safetensors", "--format", "onnx", ""], "OUT"),
        ]
        for (arguments, option) in inputs + outputs {
            let run = try runBackprop(arguments)
            #expect(!run.crashed && run.status != 0, "\(arguments)")
            #expect(
                run.standardError.hasPrefix("Error: \(option): expected a file path, found an empty one"),
                "\(arguments): \(run.standardError)")
        }
    }

    /// `seed --save` and `gradcheck --save` write gradients: to the file of `--tensors` or `--init`
    /// (through `./` or a symbolic link too) they would replace the inputs they were computed from.
    @Test("a --save that would replace the command's own --tensors or --init file is refused, and the file is kept")
    func saveThatWouldReplaceAnInputIsRefused() throws {
        try withTemporaryFolder { folder in
            let x = Tensor(shape: [4, 3], values: (0..<12).map { Float($0) / 12 })
            let inputs = folder + "/xs.safetensors"
            try Safetensors.write(["x": x, "y": Tensor([0, 1, 0, 1])], to: inputs)
            #expect(symlink(inputs, folder + "/link.safetensors") == 0)
            let before = try Data(contentsOf: URL(fileURLWithPath: inputs))
            let cases: [([String], String)] = [
                (["seed", "--tensors", inputs, "--save", inputs], "--save \(inputs) is the --tensors file"),
                (
                    ["seed", "--tensors", inputs, "--save", folder + "/./xs.safetensors"],
                    "--save \(folder)/./xs.safetensors is the --tensors file"
                ),
                (
                    [
                        "gradcheck", "--tensors", inputs, "--layers", "lin 1", "--loss", "mse", "--save",
                        folder + "/link.safetensors",
                    ],
                    "--save \(folder)/link.safetensors is the --tensors file"
                ),
                (
                    ["gradcheck", "--init", inputs, "--layers", "lin 1", "--save", inputs],
                    "--save \(inputs) is the --init file; writing it would replace what --init gives"
                ),
            ]
            for (arguments, message) in cases {
                let run = try runBackprop(arguments)
                #expect(run.status != 0 && !run.crashed, "\(arguments)")
                #expect(run.standardError.hasPrefix("Error: " + message), "\(arguments): \(run.standardError)")
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: inputs)) == before)
            // Another file is written as before.
            let saved = try runBackprop(["seed", "--tensors", inputs, "--save", folder + "/grads.safetensors"])
            #expect(saved.status == 0, "\(saved.standardError)")
        }
    }

    /// `train --plot` through a symbolic link to the `--save`, `--resume` or `--init` file: the plot,
    /// written after the checkpoint, replaced the model (exit 0, "saved model to …"); and `--save`
    /// naming the `--init` file replaced the weights it started from. Refused before any work
    /// (`--data` names no folder: the message about the outputs comes first).
    /// `seed --tensors` of finite inputs so large that the products overflow Float: it printed
    /// `loss inf` and NaN gradients, exit 0, and `--save` wrote them. Now an error; nothing saved.
    @Test("seed on inputs whose products overflow Float is an error naming the file; nothing is saved")
    func seedThatOverflowsSavesNothing() throws {
        try withTemporaryFolder { folder in
            let inputs = folder + "/xy.safetensors"
            try Safetensors.write(
                ["x": Tensor([[1, 3e38, 3], [4, 5, 6]]), "y": Tensor([1, 2])], to: inputs)
            let saved = folder + "/out.safetensors"
            let run = try runBackprop(["seed", "--tensors", inputs, "--save", saved])
            #expect(run.status == 1 && !run.crashed, "\(run.status): \(run.standardError)")
            #expect(
                run.standardError.hasPrefix(
                    "Error: \(inputs): the loss is infinite; the inputs are finite, but the "
                        + "forward or backward pass overflows Float"), "\(run.standardError)")
            #expect(run.standardError.contains("the largest |x| is 3e+38"), "\(run.standardError)")
            #expect(!FileManager.default.fileExists(atPath: saved))
        }
    }

    /// An output that is one of the data files (a symbolic link, or a hard link, to one): `train
    /// --plot`, `--save`, `explain --html`, `seed --save`, `gradcheck --save` replaced the data set
    /// the command read, with exit 0. Refused before any work, the data untouched.
    @Test("an output that is one of the data files under another name is refused, the data untouched")
    func outputsThatAreDataFilesAreRefused() throws {
        try withTemporaryFolder { folder in
            let data = folder + "/data"
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: false)
            try writeDataset(in: data)
            let labels = data + "/train-labels-idx1-ubyte.gz"
            let before = try Data(contentsOf: URL(fileURLWithPath: labels))
            #expect(symlink("data/train-labels-idx1-ubyte.gz", folder + "/plot.svg") == 0)
            #expect(symlink(data + "/t10k-images-idx3-ubyte.gz", folder + "/page.html") == 0)
            #expect(link(labels, folder + "/hard.safetensors") == 0)
            let cases: [([String], String)] = [
                (["train", "--plot", folder + "/plot.svg"], "--plot \(folder)/plot.svg is the data file \(labels)"),
                (
                    ["train", "--save", folder + "/hard.safetensors"],
                    "--save \(folder)/hard.safetensors is the data file"
                ),
                (["explain", "--html", folder + "/page.html"], "--html \(folder)/page.html is the data file"),
                (
                    ["seed", "--save", folder + "/hard.safetensors"],
                    "--save \(folder)/hard.safetensors is the data file"
                ),
                (
                    ["gradcheck", "--layers", "mlp", "--save", folder + "/hard.safetensors"],
                    "--save \(folder)/hard.safetensors is the data file \(labels)"
                ),
            ]
            for (arguments, message) in cases {
                let run = try runBackprop(arguments + ["--data", data])
                #expect(run.status == 64 && !run.crashed, "\(arguments): \(run.status)")
                #expect(run.standardError.hasPrefix("Error: " + message), "\(arguments): \(run.standardError)")
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: labels)) == before)
        }
    }

    @Test("train's --plot and --save may not be the checkpoint, --resume or --init file under another name")
    func trainOutputsThatWouldReplaceAnotherFileAreRefused() throws {
        try withTemporaryFolder { folder in
            let model = folder + "/model.safetensors"
            try Safetensors.write(["x": Tensor([1, 2])], to: model)
            #expect(symlink(model, folder + "/plot.svg") == 0)
            let before = try Data(contentsOf: URL(fileURLWithPath: model))
            let plot = folder + "/plot.svg"
            let noData = ["--data", folder + "/no-data-needed"]
            let cases: [([String], String)] = [
                (["train", "--save", model, "--plot", plot], "--plot \(plot) is the --save file \(model)"),
                (["train", "--resume", model, "--plot", plot], "--plot \(plot) is the --resume file"),
                (["train", "--init", model, "--plot", plot], "--plot \(plot) is the --init file"),
                (
                    ["train", "--init", model, "--save", folder + "/./model.safetensors"],
                    "--save \(folder)/./model.safetensors is the --init file; writing it would replace what --init gives"
                ),
            ]
            for (arguments, message) in cases {
                let run = try runBackprop(arguments + noData)
                #expect(run.status != 0 && !run.crashed, "\(arguments)")
                #expect(run.standardError.hasPrefix("Error: " + message), "\(arguments): \(run.standardError)")
            }
            #expect(try Data(contentsOf: URL(fileURLWithPath: model)) == before)
        }
    }

    /// `--normalize -0.5,1`: a negative mean was read as an option, and the parser said the value
    /// was missing. It reaches the check of MEAN,STD (a negative mean is allowed).
    @Test("--normalize takes a negative mean after a space, in every command that has it")
    func normalizeTakesANegativeMean() throws {
        let commands = [
            ["train", "--data", "/no/such/folder"],
            ["evaluate", "--model", "m.safetensors", "--data", "/no/such/folder"],
            ["export", "m.safetensors", "--format", "onnx", "o.onnx"],
        ]
        for command in commands {
            let run = try runBackprop(command + ["--normalize", "-0.5,0"])
            #expect(run.status != 0 && !run.crashed, "\(command)")
            #expect(
                run.standardError.hasPrefix("Error: --normalize: expected MEAN,STD with a finite mean and a positive"),
                "\(command): \(run.standardError)")
        }
    }

    /// `seed --tensors` used to print `loss -nan` and save NaN gradients, and `gradcheck --tensors`
    /// to report every gradient as failing its check.
    @Test("--tensors inputs or targets that are not finite are named, with the tensor and the element")
    func nonFiniteTensorsAreNamed() throws {
        try withTemporaryFolder { folder in
            var values = (0..<12).map { Float($0) / 12 }
            values[5] = .nan
            let path = folder + "/xn.safetensors"
            try Safetensors.write(["x": Tensor(shape: [4, 3], values: values), "y": Tensor([0, 1, 0, 1])], to: path)
            let targets = folder + "/yn.safetensors"
            try Safetensors.write(
                ["x": Tensor(shape: [4, 3], values: (0..<12).map { Float($0) }), "y": Tensor([0, 1, -.infinity, 1])],
                to: targets)
            for (arguments, message) in [
                (["seed", "--tensors", path], "\(path): tensor 'x' holds NaN at [1, 2]; expected finite inputs"),
                (
                    ["gradcheck", "--tensors", targets, "--layers", "lin 1", "--loss", "mse"],
                    "\(targets): tensor 'y' holds an infinity at [2]; expected finite inputs and targets"
                ),
            ] {
                let run = try runBackprop(arguments)
                #expect(run.status == 1 && !run.crashed, "\(arguments)")
                #expect(run.standardError.hasPrefix("Error: " + message), "\(arguments): \(run.standardError)")
            }
        }
    }

    /// A normalisation whose normalised pixels overflow Float (a mean of 1e39, a deviation of
    /// 1e-45) gave a NaN loss at the first step, blamed on the learning rate; now it is named where
    /// it is given: `--normalize`, or a checkpoint's metadata.
    @Test("a normalisation that takes pixels out of Float's range is named, on the command line and in a checkpoint")
    func normalisationsThatOverflowFloatAreNamed() throws {
        for (value, found) in [("0,1e-45", "(1/255 − mean) / std is inf"), ("1e39,1", "(0/255 − mean) / std is -inf")] {
            let run = try runBackprop(["train", "--epochs", "1", "--limit", "60", "--normalize", value])
            #expect(run.status != 0 && !run.crashed)
            #expect(
                run.standardError.hasPrefix(
                    "Error: --normalize: expected MEAN,STD that keep the normalised pixels finite floats, found "
                        + "'\(value)': \(found) in Float"),
                "\(value): \(run.standardError)")
        }
        try withTemporaryFolder { folder in
            let path = folder + "/tiny.safetensors"
            try Safetensors.write(["w": Tensor([1])], metadata: ["input_mean": "0", "input_std": "1e-45"], to: path)
            #expect(throws: DataError.self) { try Checkpoint.readNormalization(Safetensors.read(path: path)) }
            do {
                _ = try Checkpoint.readNormalization(Safetensors.read(path: path))
            } catch let error as DataError {
                #expect(
                    error.description
                        == "\(path): metadata 'input_mean' '0' and 'input_std' '1e-45' normalise pixel 1/255 to inf in "
                        + "Float; expected a normalisation that keeps the inputs finite")
            }
        }
    }

    /// The message was cut at the first line break, so `no\nsuch.safetensors` gave `Error: no`.
    @Test("a line break in a path or a value is written \\n in the one-line error, not cut there")
    func lineBreaksInArgumentsAreEscaped() throws {
        let missing = try runBackprop(["evaluate", "--model", "no\nsuch.safetensors"])
        #expect(missing.status == 1 && missing.standardError == "Error: no\\nsuch.safetensors: no such file\n")
        let layers = try runBackprop(["train", "--layers", "lin 10\nrelu"])
        #expect(layers.status != 0)
        #expect(
            layers.standardError.hasPrefix("Error: --layers: entry 1 \"lin 10\\nrelu\": "), "\(layers.standardError)")
        #expect(layers.standardError.split(separator: "\n").count == 1)
    }

    @Test("test images of another shape than the training images are refused, even with as many pixels")
    func testImagesOfAnotherShape() throws {
        try withTemporaryFolder { folder in
            try writeDataset(in: folder, height: 2, width: 2)
            try IDX.write(
                (0..<12).map { UInt8($0) }, shape: [3, 1, 4], to: folder + "/t10k-images-idx3-ubyte.gz")
            try writeCheckpoint(in: folder)
            try expectOneLineError(
                ["evaluate", "--data", "{dir}", "--model", "{dir}/m.safetensors"], in: folder,
                [
                    "Error: {dir}/t10k-images-idx3-ubyte.gz: images are 1×4 pixels but those of "
                        + "{dir}/train-images-idx3-ubyte.gz are 2×2"
                ])
        }
    }

    @Test("evaluate of a model with a NaN or an infinity in a weight names the file and the tensor")
    func evaluateRefusesNonFiniteWeights() throws {
        try withTemporaryFolder { folder in
            try writeDataset(in: folder)
            try writeCheckpoint(in: folder, name: "nan.safetensors") { tensors in
                tensors["layers.0.w"] = replacing(tensors["layers.0.w"], at: 5, with: .nan)
            }
            try writeCheckpoint(in: folder, name: "inf.safetensors") { tensors in
                tensors["layers.2.b"] = replacing(tensors["layers.2.b"], at: 3, with: -.infinity)
            }
            let evaluate = ["evaluate", "--data", "{dir}", "--model"]
            try expectOneLineError(
                evaluate + ["{dir}/nan.safetensors"], in: folder,
                ["Error: {dir}/nan.safetensors: tensor 'layers.0.w'", "NaN", "[1, 2]"])
            try expectOneLineError(
                evaluate + ["{dir}/inf.safetensors"], in: folder,
                ["Error: {dir}/inf.safetensors: tensor 'layers.2.b'", "infinity", "[3]"])
            // Finite weights too large for Float give a NaN loss: named, not reported as a result.
            try writeCheckpoint(in: folder, name: "huge.safetensors") { tensors in
                for (name, tensor) in tensors where name.hasPrefix("layers.") {
                    tensors[name] = Tensor(shape: tensor.shape, values: tensor.values.map { $0 * 1e30 })
                }
            }
            try expectOneLineError(
                evaluate + ["{dir}/huge.safetensors"], in: folder,
                [
                    "Error: {dir}/huge.safetensors: the test loss on the 3 images in {dir} is",
                    "the model's tensors are finite but its outputs are not: weights too large",
                ])
            // A normalisation that overflows Float: the metadata is named when it is read, not the
            // weights (nor, as before, the loss it would give).
            try writeCheckpoint(in: folder, name: "tiny.safetensors")
            try editSafetensors(at: folder + "/tiny.safetensors") { metadata, _ in metadata["input_std"] = "1e-45" }
            try expectOneLineError(
                evaluate + ["{dir}/tiny.safetensors"], in: folder,
                [
                    "Error: {dir}/tiny.safetensors: metadata 'input_mean'", "and 'input_std' '1e-45' normalise pixel",
                    "in Float; expected a normalisation that keeps the inputs finite",
                ])
            // The unedited checkpoint evaluates.
            try writeCheckpoint(in: folder)
            let good = try runBackprop(["evaluate", "--data", folder, "--model", folder + "/m.safetensors"])
            #expect(good.status == 0 && good.standardOutput.hasPrefix("test accuracy "), "\(good.standardError)")
        }
    }
}

@Suite("Bad inputs: degenerate shapes (0-pixel images, 0-sized tensors, too few rows)")
struct DegenerateShapesTests {
    @Test(
        "images of 0 pixels are refused by every command that reads them, naming the file",
        arguments: [
            (0, 0, "train-images-idx3-ubyte.gz: holds images of 0×0 pixels; expected at least 1×1"),
            (2, 0, "train-images-idx3-ubyte.gz: holds images of 2×0 pixels; expected at least 1×1"),
            (0, 3, "train-images-idx3-ubyte.gz: holds images of 0×3 pixels; expected at least 1×1"),
        ])
    func imagesOfZeroPixels(_ height: Int, _ width: Int, _ message: String) throws {
        try withTemporaryFolder { folder in
            try writeDataset(in: folder, height: height, width: width)
            try writeCheckpoint(in: folder)
            for command in [
                ["train", "--epochs", "1", "--hidden", "4"], ["evaluate", "--model", "{dir}/m.safetensors"],
                ["seed"], ["gradcheck"], ["explain", "--rows", "1"],
                ["bench", "--rows", "10", "--runs", "1", "--only", "seed"],
            ] {
                try expectOneLineError(command + ["--data", "{dir}"], in: folder, ["{dir}/" + message])
            }
            expectDataError(containing: [folder + "/" + message]) { try FashionMNIST(directory: folder) }
        }
    }

    @Test("test images of 0 pixels are named too")
    func testImagesOfZeroPixels() throws {
        try withTemporaryFolder { folder in
            try writeDataset(in: folder)
            try IDX.write([], shape: [3, 0, 0], to: folder + "/t10k-images-idx3-ubyte.gz")
            try expectOneLineError(
                ["train", "--data", "{dir}", "--epochs", "1"], in: folder,
                ["{dir}/t10k-images-idx3-ubyte.gz: holds images of 0×0 pixels"])
        }
    }

    @Test(
        "tensors with a dimension of 0 in --tensors or --init are refused as seed refuses them",
        arguments: [
            (["x": [0, 3], "y": [0]], "inputs", "tensor 'x' has shape [0, 3], expected [n, m] with n, m > 0"),
            (["x": [4, 0], "y": [4]], "inputs", "tensor 'x' has shape [4, 0], expected [n, m] with n, m > 0"),
            (
                ["w1": [3, 0], "b1": [0], "w2": [0, 1], "b2": [1]], "weights",
                "tensor 'w1' has shape [3, 0], expected [3, n] with n > 0 (a layer of 0 units)"
            ),
            (
                ["w1": [3, 2], "b1": [2], "w2": [2, 0], "b2": [0]], "weights",
                "tensor 'w2' has shape [2, 0], expected [2, n] with n > 0 (a layer of 0 units)"
            ),
        ] as [([String: [Int]], String, String)])
    func tensorsWithAZeroDimension(_ shapes: [String: [Int]], _ role: String, _ message: String) throws {
        try withTemporaryFolder { folder in
            try writeSeedFiles(in: folder)
            let path = folder + "/\(role).safetensors"
            try Safetensors.write(shapes.mapValues { Tensor.zeros($0) }, to: path)
            let files = ["--tensors", "{dir}/inputs.safetensors", "--init", "{dir}/weights.safetensors"]
            for command in ["gradcheck", "seed"] {
                try expectOneLineError([command] + files, in: folder, ["Error: {dir}/\(role).safetensors: " + message])
            }
            let file = try Safetensors.read(path: path)
            expectDataError(containing: [message]) {
                if role == "inputs" { _ = try file.inputsAndTargets() } else { _ = try file.linearWeights(inputs: 3) }
            }
        }
    }

    @Test("seed --init reads its two layers as gradcheck --init does, with one output")
    func seedWeightsAreCheckedAsGradcheckChecksThem() throws {
        try withTemporaryFolder { folder in
            try writeSeedFiles(in: folder)
            let seed = ["seed", "--tensors", "{dir}/inputs.safetensors", "--init", "{dir}/weights.safetensors"]
            let wide: [String: Tensor] = [
                "w1": Tensor.zeros([3, 2]), "b1": Tensor.zeros([2]), "w2": Tensor.zeros([2, 3]),
                "b2": Tensor.zeros([3]),
            ]
            try Safetensors.write(wide, to: folder + "/weights.safetensors")
            let message =
                "weights.safetensors: tensor 'w2' has shape [2, 3], expected [2, 1] (the last layer gives 1 output"
            try expectOneLineError(seed, in: folder, [message])
            try expectOneLineError(
                ["gradcheck", "--tensors", "{dir}/inputs.safetensors", "--init", "{dir}/weights.safetensors"],
                in: folder, [message])
            try Safetensors.write(
                ["w1": Tensor.zeros([3, 2]), "b1": Tensor.zeros([2]), "b2": Tensor.zeros([1])],
                to: folder + "/weights.safetensors")
            try expectOneLineError(seed, in: folder, ["weights.safetensors: no tensor 'w2'; the file holds b1, b2, w1"])
        }
    }

    @Test("a training set too small to split off validation is named, by --limit when the limit cut it")
    func trainingSetTooSmallToSplit() throws {
        try withTemporaryFolder { folder in
            try writeDataset(in: folder, train: 5)
            try expectOneLineError(
                ["train", "--data", "{dir}", "--epochs", "1", "--hidden", "4"], in: folder,
                [
                    "Error: {dir}/train-images-idx3-ubyte.gz: holds 5 images, too few to split",
                    "at least 6 are needed (5 leave 5 to train and 0 to validate)",
                ])
            try expectOneLineError(
                ["train", "--data", "{dir}", "--epochs", "1", "--limit", "100"], in: folder,
                ["Error: {dir}/train-images-idx3-ubyte.gz: holds 5 images, too few to split"])
            try expectOneLineError(
                ["train", "--data", "{dir}", "--epochs", "1", "--limit", "3"], in: folder,
                ["Error: --limit: expected at least 6 images (one sixth validate), found 3"])
            // The library says the same, and names --limit when the limit is what cut the rows.
            expectDataError(containing: ["--limit: expected at least 6 images (one sixth validate), found 3"]) {
                try FashionMNIST(directory: folder, limit: 3)
            }
            expectDataError(containing: ["holds 5 images, too few to split"]) {
                try FashionMNIST(directory: folder, limit: 6)
            }
            // Commands that use no validation rows still read a small data set.
            let data = try FashionMNIST(directory: folder, requiresValidation: false)
            #expect(data.xTrain.shape == [5, 4] && data.xValid.shape == [0, 4])
        }
    }

    @Test("an empty test set is an error for train and evaluate, not an accuracy of 0 images")
    func emptyTestSet() throws {
        try withTemporaryFolder { folder in
            try writeDataset(in: folder, test: 0)
            try writeCheckpoint(in: folder)
            let message = "Error: {dir}/t10k-images-idx3-ubyte.gz: holds no images; at least one is needed to test"
            try expectOneLineError(
                ["train", "--data", "{dir}", "--epochs", "1", "--hidden", "4"], in: folder, [message])
            try expectOneLineError(
                ["evaluate", "--data", "{dir}", "--model", "{dir}/m.safetensors"], in: folder, [message])
        }
    }
}
