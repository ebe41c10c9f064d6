import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// The catalogue of bad inputs (Docs/BadInputs.md), end to end: each case runs the built `backprop`
// on a bad file or bad arguments and checks the contract every entry shares:
//
//   - the process exits with a non-zero status; it is not killed by a signal (a crash or a trap);
//   - stderr is ONE line, `Error: …`, naming the file or option and what was found;
//   - stdout is empty, and the folder holds no output file and no temporary file afterwards.
//
// The readers' own tests (IDXTests, SafetensorsTests, FashionMNISTTests, GzipTests) check each
// message in detail; these check what the user sees.

/// One bad input: what to put in a fresh folder, the arguments (with `{dir}` for that folder),
/// and the fragments the error line must contain.
struct BadInput: Sendable, CustomTestStringConvertible {
    let name: String
    let arguments: [String]
    let fragments: [String]
    /// Writes the input files into the folder (nothing by default).
    let prepare: @Sendable (String) throws -> Void

    init(
        _ name: String, _ arguments: [String], expect fragments: [String],
        prepare: @escaping @Sendable (String) throws -> Void = { _ in }
    ) {
        self.name = name
        self.arguments = arguments
        self.fragments = fragments
        self.prepare = prepare
    }

    var testDescription: String { name }
}

/// Runs `backprop` on `input` in a new folder and checks the shared contract (see the top of
/// this file).
private func expectCleanFailure(_ input: BadInput, sourceLocation: SourceLocation = #_sourceLocation) throws {
    try withTemporaryFolder { folder in
        try input.prepare(folder)
        let before = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
        let arguments = input.arguments.map { $0.replacingOccurrences(of: "{dir}", with: folder) }
        let run = try runBackprop(arguments)
        #expect(
            !run.crashed, "\(arguments) was killed by a signal: \(run.standardError)", sourceLocation: sourceLocation)
        #expect(run.status != 0, "\(arguments) exited with 0", sourceLocation: sourceLocation)
        #expect(
            run.standardOutput.isEmpty, "\(arguments) printed: \(run.standardOutput)", sourceLocation: sourceLocation)
        let lines = run.standardError.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(
            lines.count == 2 && lines[0].hasPrefix("Error: ") && lines[1].isEmpty,
            "\(arguments): stderr is not one `Error: …` line: \(run.standardError)", sourceLocation: sourceLocation)
        for fragment in input.fragments.map({ $0.replacingOccurrences(of: "{dir}", with: folder) }) {
            #expect(
                run.standardError.contains(fragment), "\(arguments): \"\(run.standardError)\" lacks \"\(fragment)\"",
                sourceLocation: sourceLocation)
        }
        let after = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
        #expect(after == before, "\(arguments) left \(after.subtracting(before))", sourceLocation: sourceLocation)
    }
}

// MARK: - Inputs

/// 12 training and 3 test images of 2×2 pixels with labels `i mod 10`, in `folder`, gzip or not;
/// `replace` substitutes the bytes of one file (named without `.gz`).
private func writeDataset(in folder: String, replace: [String: [UInt8]] = [:], gzip: Bool = true) throws {
    let contents: [String: ([UInt8], [Int])] = [
        "train-images-idx3-ubyte": ((0..<48).map { UInt8($0 * 5) }, [12, 2, 2]),
        "train-labels-idx1-ubyte": ((0..<12).map { UInt8($0 % 10) }, [12]),
        "t10k-images-idx3-ubyte": ((0..<12).map { UInt8($0 * 7) }, [3, 2, 2]),
        "t10k-labels-idx1-ubyte": ([7, 8, 9], [3]),
    ]
    for (name, (bytes, shape)) in contents {
        let path = folder + "/" + name + (gzip ? ".gz" : "")
        if let replacement = replace[name] {
            try writeBytes(replacement, to: path)
        } else {
            try IDX.write(bytes, shape: shape, to: path, gzip: gzip)
        }
    }
}

/// An IDX header: magic `00 00 08 <rank>` and big-endian sizes.
private func idxHeader(_ shape: [Int]) -> [UInt8] {
    var bytes: [UInt8] = [0, 0, 8, UInt8(shape.count)]
    for size in shape {
        bytes += [UInt8(size >> 24 & 0xff), UInt8(size >> 16 & 0xff), UInt8(size >> 8 & 0xff), UInt8(size & 0xff)]
    }
    return bytes
}

/// A safetensors file from header text and data; `headerLength` overrides the true length.
private func safetensors(_ header: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> [UInt8] {
    let text = Array(header.utf8)
    var bytes: [UInt8] = []
    withUnsafeBytes(of: (headerLength ?? UInt64(text.count)).littleEndian) { bytes += $0 }
    return bytes + text + data
}

/// Writes `bytes` as `{dir}/bad.safetensors`.
private func badSafetensors(_ bytes: [UInt8]) -> @Sendable (String) throws -> Void {
    { folder in try writeBytes(bytes, to: folder + "/bad.safetensors") }
}

/// The seed's inputs x (4, 3) and y (4), and weights for 3 inputs and 2 hidden units without
/// `dropped`, or with `w1` of shape `w1Shape`.
private func seedFiles(dropping dropped: String? = nil, w1Shape: [Int] = [3, 2]) -> @Sendable (String) throws -> Void {
    { folder in
        try Safetensors.write(
            ["x": Tensor(shape: [4, 3], values: (0..<12).map { Float($0) / 10 }), "y": Tensor([0, 1, 2, 3])],
            to: folder + "/inputs.safetensors")
        var weights: [String: Tensor] = [
            "w1": Tensor.full(w1Shape, 0.5), "b1": Tensor.zeros([2]), "w2": Tensor.full([2, 1], 0.25),
            "b2": Tensor.zeros([1]),
        ]
        if let dropped { weights[dropped] = nil }
        try Safetensors.write(weights, to: folder + "/weights.safetensors")
    }
}

/// `backprop seed` on the data set in `{dir}`, asked to save its result there too.
private let seedOnData = ["seed", "--data", "{dir}", "--save", "{dir}/out.safetensors"]
/// `backprop seed` on `{dir}/bad.safetensors` as its inputs.
private let seedOnBadTensors = ["seed", "--tensors", "{dir}/bad.safetensors", "--save", "{dir}/out.safetensors"]
/// `backprop seed` on good inputs with `{dir}/weights.safetensors` as its initial weights.
private let seedWithWeights = [
    "seed", "--tensors", "{dir}/inputs.safetensors", "--init", "{dir}/weights.safetensors",
    "--save", "{dir}/out.safetensors",
]

/// A valid tensor entry, for the header cases that break something else.
private let entryW = #""w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#

// MARK: - IDX and the data folder

private let idxCases: [BadInput] = [
    BadInput("missing folder", ["seed", "--data", "{dir}/nowhere"], expect: ["{dir}/nowhere: no such folder"]),
    BadInput(
        "folder without the expected files", seedOnData,
        expect: ["{dir}: missing train-images-idx3-ubyte.gz or train-images-idx3-ubyte"]
    ) { folder in
        try writeBytes([1], to: folder + "/readme.txt")
    },
    BadInput("missing file", seedOnData, expect: ["missing t10k-labels-idx1-ubyte.gz"]) { folder in
        try writeDataset(in: folder)
        try FileManager.default.removeItem(atPath: folder + "/t10k-labels-idx1-ubyte.gz")
    },
    BadInput("truncated gzip", seedOnData, expect: ["train-images-idx3-ubyte.gz: truncated gzip stream"]) { folder in
        let whole = Gzip.compress(idxHeader([12, 2, 2]) + [UInt8](repeating: 3, count: 48))
        try writeDataset(in: folder, replace: ["train-images-idx3-ubyte": Array(whole.dropLast(8))])
    },
    BadInput("corrupt gzip", seedOnData, expect: ["train-labels-idx1-ubyte.gz: corrupt gzip data"]) { folder in
        var bytes = Gzip.compress(idxHeader([12]) + [UInt8](repeating: 1, count: 12))
        bytes[bytes.count - 6] ^= 0xff  // the CRC-32 no longer matches
        try writeDataset(in: folder, replace: ["train-labels-idx1-ubyte": bytes])
    },
    BadInput("wrong magic number", seedOnData, expect: ["t10k-images-idx3-ubyte: not an IDX file"]) { folder in
        try writeDataset(
            in: folder, replace: ["t10k-images-idx3-ubyte": Array("PK\u{3}\u{4} not idx".utf8)], gzip: false)
    },
    BadInput(
        "header claims more data than the file holds", seedOnData,
        expect: ["train-images-idx3-ubyte: header says 60000×28×28 uint8 values (47040000 bytes)", "holds 48 bytes"]
    ) { folder in
        let lying = idxHeader([60000, 28, 28]) + [UInt8](repeating: 3, count: 48)
        try writeDataset(in: folder, replace: ["train-images-idx3-ubyte": lying], gzip: false)
    },
    BadInput(
        "images and labels of different counts", seedOnData,
        expect: ["train-labels-idx1-ubyte: holds 11 labels but", "holds 12 images"]
    ) { folder in
        try writeDataset(
            in: folder, replace: ["train-labels-idx1-ubyte": idxHeader([11]) + [UInt8](repeating: 1, count: 11)],
            gzip: false)
    },
    BadInput(
        "label outside 0–9", seedOnData, expect: ["train-labels-idx1-ubyte: label at index 4 is 10, outside 0…9"]
    ) { folder in
        try writeDataset(
            in: folder, replace: ["train-labels-idx1-ubyte": idxHeader([12]) + [1, 2, 3, 4, 10, 5, 6, 7, 8, 9, 0, 1]],
            gzip: false)
    },
]

@Test(arguments: idxCases)
func badIDXInputFailsCleanly(_ input: BadInput) throws {
    try expectCleanFailure(input)
}

// MARK: - safetensors

private let safetensorsCases: [BadInput] = [
    BadInput(
        "missing file", ["seed", "--tensors", "{dir}/none.safetensors"],
        expect: ["{dir}/none.safetensors: no such file"]),
    BadInput(
        "header length beyond the file", seedOnBadTensors,
        expect: ["bad.safetensors: header length says 4096 bytes but only 2 bytes follow"],
        prepare: badSafetensors(safetensors("{}", headerLength: 4096))),
    BadInput(
        "header that is not JSON", seedOnBadTensors, expect: ["bad.safetensors: header is not valid JSON"],
        prepare: badSafetensors(safetensors(#"{"x": {"dtype": "F32",}"#))),
    BadInput(
        "header entry lacking a field", seedOnBadTensors,
        expect: ["bad.safetensors: tensor 'x': the entry has no \"shape\""],
        prepare: badSafetensors(safetensors(#"{"x":{"dtype":"F32","data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))),
    BadInput(
        "unknown dtype", seedOnBadTensors, expect: ["bad.safetensors: unsupported dtype F8_E5M2 for tensor 'x'"],
        prepare: badSafetensors(safetensors(#"{"x":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[0,1]}}"#, data: [0]))),
    BadInput(
        "offsets out of bounds", seedOnBadTensors,
        expect: ["bad.safetensors: tensor 'x': data_offsets [0, 64] reach past the end of the data (4 bytes"],
        prepare: badSafetensors(
            safetensors(#"{"x":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}"#, data: [0, 0, 0, 0]))),
    BadInput(
        "overlapping offsets", seedOnBadTensors,
        expect: ["bad.safetensors: tensors 'w' and 'x' overlap: data_offsets [0, 4] and [0, 8]"],
        prepare: badSafetensors(
            safetensors(
                "{" + entryW + #","x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                data: [UInt8](repeating: 0, count: 8)))),
    BadInput(
        "missing tensor", seedWithWeights,
        expect: ["weights.safetensors: no tensor 'b2'; the file holds b1, w1, w2"],
        prepare: seedFiles(dropping: "b2")),
    BadInput(
        "tensor of the wrong shape for the model", seedWithWeights,
        expect: ["weights.safetensors: tensor 'w1' has shape [5, 2], expected [3, n] (the inputs' width is 3)"],
        prepare: seedFiles(w1Shape: [5, 2])),
]

@Test(arguments: safetensorsCases)
func badSafetensorsInputFailsCleanly(_ input: BadInput) throws {
    try expectCleanFailure(input)
}

// MARK: - Command line

private let commandLineCases: [BadInput] = [
    BadInput("unknown subcommand", ["frobnicate"], expect: ["frobnicate"]),
    BadInput("unknown option", ["seed", "--frobnicate", "3"], expect: ["--frobnicate"]),
    BadInput("option without its value", ["seed", "--hidden"], expect: ["--hidden"]),
    BadInput("zero hidden units", ["seed", "--hidden", "0"], expect: ["--hidden must be a positive number", "got 0"]),
    BadInput(
        "negative hidden units", ["seed", "--hidden", "-5"], expect: ["--hidden must be a positive number", "got -5"]),
    BadInput("malformed --hidden", ["seed", "--hidden", "50,abc"], expect: ["--hidden", "50,abc"]),
    BadInput(
        "negative seed", ["seed", "--seed", "-1"],
        expect: ["--seed: expected a whole number from 0 to 18446744073709551615, found '-1'"]),
    BadInput(
        "output in a folder that does not exist", ["seed", "--save", "{dir}/no/such/out.safetensors"],
        expect: ["--save {dir}/no/such/out.safetensors: the folder {dir}/no/such does not exist"]),
    BadInput(
        "output in a folder that is a file", ["seed", "--save", "{dir}/file/out.safetensors"],
        expect: ["--save {dir}/file/out.safetensors: {dir}/file is not a folder"]
    ) { folder in
        try writeBytes([1], to: folder + "/file")
    },
    BadInput(
        "output path that is a folder", ["seed", "--save", "{dir}/out.safetensors"],
        expect: ["--save {dir}/out.safetensors: is a folder"]
    ) { folder in
        try FileManager.default.createDirectory(atPath: folder + "/out.safetensors", withIntermediateDirectories: false)
    },
    BadInput(
        "output that is not a safetensors file", ["seed", "--save", "{dir}/gradients"],
        expect: ["--save {dir}/gradients: expected a file name ending in .safetensors"]),
    BadInput(
        "output in a folder that cannot be written", ["seed", "--save", "/proc/self/out.safetensors"],
        expect: ["--save /proc/self/out.safetensors: the folder /proc/self is not writable"]),
]

/// `backprop train` with everything valid but the options added.
private func train(_ options: String...) -> [String] {
    ["train", "--data", "{dir}/no-data-needed"] + options
}

// `--epochs 0`, `--hidden 256,x`, `--optimizer rmsprop`, `--lr=-1` and `--save` into a missing folder
// are in TrainCommandTests.badOptionsGiveOneLineNamingTheOption.
private let trainCommandLineCases: [BadInput] = [
    BadInput("train: unknown option", train("--epoch", "3"), expect: ["Unknown option '--epoch'"]),
    BadInput(
        "train: negative epochs", train("--epochs", "-3"), expect: ["--epochs: expected a positive number, found -3"]),
    BadInput(
        "train: zero batch size", train("--batch-size", "0"),
        expect: ["--batch-size: expected a positive number, found 0"]),
    BadInput(
        "train: negative batch size", train("--batch-size", "-128"),
        expect: ["--batch-size: expected a positive number, found -128"]),
    BadInput("train: zero learning rate", train("--lr", "0"), expect: ["--lr: expected a positive number, found 0.0"]),
    BadInput(
        "train: negative learning rate", train("--lr", "-0.1"), expect: ["--lr: expected a positive number, found -0.1"]
    ),
    BadInput(
        "train: learning rate not a number", train("--lr", "fast"),
        expect: ["--lr: expected a number (such as 0.003 or 1e-3), found 'fast'"]),
    BadInput(
        "train: infinite learning rate", train("--lr", "inf"), expect: ["--lr: expected a positive number, found inf"]),
    BadInput(
        "train: zero in --hidden", train("--hidden", "256,0"),
        expect: ["--hidden: expected comma-separated positive sizes such as 256,128, found '256,0'"]),
    BadInput(
        "train: negative --hidden", train("--hidden", "-64"),
        expect: ["--hidden: expected comma-separated positive sizes such as 256,128, found '-64'"]),
    BadInput(
        "train: negative weight decay", train("--weight-decay", "-1"),
        expect: ["--weight-decay: expected a number ≥ 0", "found -1.0"]),
    BadInput(
        "train: unknown schedule", train("--schedule", "step"), expect: ["--schedule: expected one of", "found 'step'"]),
    BadInput(
        "train: too small --limit", train("--limit", "0"), expect: ["--limit: expected at least 6 images", "found 0"]),
    BadInput(
        "train: output that cannot be written", train("--save", "/proc/self/model.safetensors"),
        expect: ["--save /proc/self/model.safetensors: the folder /proc/self is not writable"]),
    BadInput(
        "train: plot in a folder that does not exist", train("--plot", "{dir}/no/such/plot.svg"),
        expect: ["--plot {dir}/no/such/plot.svg: the folder {dir}/no/such does not exist"]),
    BadInput(
        "train: data folder missing", ["train", "--data", "{dir}/nowhere", "--epochs", "1"],
        expect: ["{dir}/nowhere: no such folder"]),
    BadInput(
        "train: --resume of a file that does not exist", train("--resume", "{dir}/none.safetensors"),
        expect: ["{dir}/none.safetensors: no such file"]),
    BadInput(
        "train: --resume of a model without training state", train("--resume", "{dir}/weights.safetensors"),
        expect: ["weights.safetensors: holds no \"training\" settings: it is a model, not a training run to resume"],
        prepare: seedFiles()),
    BadInput(
        "evaluate: zero --limit", ["evaluate", "--model", "{dir}/m.safetensors", "--limit", "0"],
        expect: ["--limit: expected at least 1 image, found 0"]),
    BadInput(
        "evaluate: a file that is not a checkpoint", ["evaluate", "--model", "{dir}/weights.safetensors"],
        expect: ["weights.safetensors: is not a Backprop checkpoint"], prepare: seedFiles()),
    BadInput(
        "evaluate: a checkpoint whose normalisation is broken", ["evaluate", "--model", "{dir}/m.safetensors"],
        expect: ["m.safetensors: metadata 'input_std' is '0', expected a positive number"],
        prepare: { folder in
            var generator = RandomGenerator(seed: 1)
            let model = Model.mlp(sizes: [784, 4, 10], loss: CrossEntropy(), generator: &generator)
            try Checkpoint.save(
                model, to: folder + "/m.safetensors", metadata: ["input_mean": "0.28", "input_std": "0"])
        }),
]

// `explain`'s bad arguments are in ExplainTests.
private let checkCommandLineCases: [BadInput] = [
    BadInput("gradcheck: zero rows", ["gradcheck", "--rows", "0"], expect: ["--rows must be at least 1, got 0"]),
    BadInput(
        "gradcheck: negative samples", ["gradcheck", "--samples=-3"], expect: ["--samples must be at least 1, got -3"]),
    BadInput(
        "gradcheck: malformed --hidden", ["gradcheck", "--hidden", "64,,32"],
        expect: ["--hidden expects positive widths separated by commas, like 50 or 64,32; got '64,,32'"]),
    BadInput(
        "gradcheck: --data and --tensors", ["gradcheck", "--data", "{dir}", "--tensors", "{dir}/inputs.safetensors"],
        expect: ["--data and --tensors both give the inputs; use one"]),
    BadInput(
        "gradcheck: inputs that are not safetensors", ["gradcheck", "--tensors", "{dir}/bad.safetensors"],
        expect: ["bad.safetensors: header length says"], prepare: badSafetensors(Array("not a safetensors file".utf8))),
    BadInput(
        "near: missing file", ["near", "{dir}/none.safetensors", "{dir}/weights.safetensors"],
        expect: ["{dir}/none.safetensors: no such file"], prepare: seedFiles()),
    BadInput(
        "near: negative tolerance",
        ["near", "{dir}/weights.safetensors", "{dir}/weights.safetensors", "--relative-tolerance=-1"],
        expect: ["--relative-tolerance: expected a number ≥ 0, found -1"], prepare: seedFiles()),
    BadInput(
        "near: a tolerance past Float's range (it would pass everything)",
        ["near", "{dir}/weights.safetensors", "{dir}/weights.safetensors", "--absolute-tolerance", "1e40"],
        expect: ["--absolute-tolerance: expected a number ≥ 0, found 1e40, beyond the largest Float"],
        prepare: seedFiles()),
    BadInput(
        "near: a tolerance that is not a number",
        ["near", "{dir}/weights.safetensors", "{dir}/weights.safetensors", "--relative-tolerance", "nan"],
        expect: ["--relative-tolerance: expected a number ≥ 0, found nan, which is not a number"],
        prepare: seedFiles()),
    BadInput(
        "near: no tensor in common", ["near", "{dir}/inputs.safetensors", "{dir}/weights.safetensors"],
        expect: ["have no tensor name in common"], prepare: seedFiles()),
]

@Test(arguments: checkCommandLineCases)
func badCheckCommandLineFailsCleanly(_ input: BadInput) throws {
    try expectCleanFailure(input)
}

@Test(arguments: trainCommandLineCases)
func badTrainCommandLineFailsCleanly(_ input: BadInput) throws {
    try expectCleanFailure(input)
}

@Test(arguments: commandLineCases)
func badCommandLineFailsCleanly(_ input: BadInput) throws {
    try expectCleanFailure(input)
}

@Test(.enabled(if: geteuid() != 0, "root writes into read-only folders"))
func outputInAReadOnlyFolderFailsCleanly() throws {
    try withTemporaryFolder { folder in
        let locked = folder + "/locked"
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: false)
        chmod(locked, 0o555)
        defer { chmod(locked, 0o755) }
        let run = try runBackprop(["seed", "--save", locked + "/out.safetensors"])
        #expect(!run.crashed && run.status != 0)
        #expect(run.standardError.contains("the folder \(locked) is not writable"), "\(run.standardError)")
    }
}
