import ArgumentParser
import BackpropCore
import BackpropData
import BackpropNetwork
import BackpropONNX
import BackpropTraining
import Foundation

/// `backprop export MODEL --format pytorch|onnx OUT`: a saved model as a PyTorch `state_dict` or an
/// ONNX model, and the Python that runs it.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a saved model as a PyTorch state_dict or an ONNX model, and print the Python that runs it.",
        discussion: """
            Reads a checkpoint written by `backprop train --save` (an MLP or any --layers network), a \
            state_dict that `backprop export --format pytorch` wrote, an ONNX model whose graph is a \
            chain of Backprop's layers (README, "ONNX import"), or a state_dict that PyTorch wrote, with \
            --layers describing its nn.Sequential (README, "PyTorch interop"). \
            --format pytorch writes OUT, the state_dict of the matching nn.Sequential: key I.weight for \
            layer I, nn.Linear weights transposed to [out, in], batch norms with num_batches_tracked; \
            it prints a Python script that builds that nn.Sequential, loads OUT with load_state_dict, and \
            normalises the inputs as the model was trained (so that it gives Backprop's logits). \
            --format onnx writes OUT, an ONNX model (opset 20) that ONNX Runtime runs to Backprop's \
            logits: input "pixels" (0 to 255, float32, [n, C, H, W], or [n, C·H·W] for a model that starts \
            with lin: [n, 1, 28, 28] or [n, 784] for Fashion-MNIST), normalised in the graph as the model \
            was trained ("x", already normalised, for a checkpoint that stores no normalisation when \
            --normalize gives none), output "logits" [n, classes]; it prints the Python that runs it.
            """
    )

    /// The formats `--format` names, and the suffix each output file takes.
    static let formats = [(name: "pytorch", suffix: ".safetensors"), (name: "onnx", suffix: ".onnx")]

    @Argument(
        help: ArgumentHelp(
            "A checkpoint written by `backprop train --save` or `backprop export`, or an ONNX model of Backprop's layers.",
            valueName: "MODEL"))
    var model: String

    @Option(help: "The format of OUT: pytorch (a safetensors state_dict) or onnx (an ONNX model, opset 20).")
    var format: String

    @Argument(
        help: ArgumentHelp(
            "The file to write (atomically), ending in .safetensors for pytorch, .onnx for onnx.", valueName: "OUT"))
    var output: String

    @Option(
        help: """
            The network of a state_dict that PyTorch wrote (no Backprop metadata), as train --layers takes \
            it, such as 'lin 256, relu, lin 10': entry I is index I of the nn.Sequential, for images of \
            --input-shape. A file that holds its own network must hold this one.
            """)
    var layers: String?

    @Option(
        help: """
            C,H,W: the images the --layers network takes (default: Fashion-MNIST's 1,28,28; rows of C×H×W \
            values when it starts with lin).
            """)
    var inputShape: String?

    @Option(
        // `.unconditional`: `--normalize -0.5,1` reads a negative mean, not a missing value.
        parsing: .unconditional,
        help: """
            MEAN,STD: the normalisation of the pixels / 255 the model was trained with, written into OUT \
            and the Python (onnx: into the graph) in place of MODEL's own; for a model that stores none \
            (an ONNX model from PyTorch, say), whose inputs are otherwise taken as already normalised.
            """)
    var normalize: String?

    func validate() throws {
        try PathArgument.checkNotEmpty(model, option: "<MODEL>")
        guard let suffix = Self.formats.first(where: { $0.name == format })?.suffix else {
            let names = Self.formats.map(\.name).joined(separator: " or ")
            throw ValidationError("--format: expected \(names), found '\(format)'")
        }
        if let normalize { _ = try EvaluateCommand.normalization(parsing: normalize) }
        _ = try parsedLayers()
        _ = try parsedImageShape()
        if inputShape != nil && layers == nil {
            throw ValidationError(
                "--input-shape: only with --layers (a file that holds its network holds its input shape)")
        }
        try checkOutput(output, option: "OUT", suffix: suffix)
        if Self.samePath(model, output) {
            throw ValidationError("OUT \(output) is MODEL; writing it would replace the checkpoint")
        }
    }

    func run() throws {
        if format == "onnx" {
            try runONNX()
            return
        }
        let (network, inputShape, normalization) = try loadModel()
        var metadata: [String: String] = [:]
        if let normalization {
            metadata["input_mean"] = "\(normalization.mean)"
            metadata["input_std"] = "\(normalization.std)"
        }
        do {
            try Checkpoint.savePyTorch(network, to: output, inputShape: inputShape, metadata: metadata)
        } catch let error as CheckpointError {
            throw CommandLineError("\(model): cannot export: \(error)")
        }
        let script = try pythonScript(network, inputShape: inputShape, normalization: normalization)
        StandardStream.output.write(script)
    }

    /// The model in ``model`` (a checkpoint, an ONNX model, or a PyTorch state_dict of the network
    /// `--layers` describes), the shape of one example, and the normalisation of its inputs:
    /// `--normalize`'s, else the one the file stores, if any.
    func loadModel() throws -> (Model, inputShape: [Int], normalization: (mean: Double, std: Double)?) {
        let given = try normalize.map(EvaluateCommand.normalization(parsing:))
        let description = try parsedLayers()
        if ONNXImport.looksLikeONNX(path: model) {
            let imported = try ONNXImport.read(path: model)
            try EvaluateCommand.checkSameNetwork(
                imported.description, as: description, in: model, holder: "an ONNX model")
            EvaluateCommand.noteReplaced(imported.normalization, by: given, written: normalize, in: model)
            if let dropped = imported.droppedOutputOperator {
                // The model written gives other outputs than the file read: say so (evaluate and
                // train read the same logits, to the same accuracy and cross-entropy).
                StandardStream.error.write(
                    "note: \(model) ends in a \(dropped) over the classes, which is left out: the model written gives "
                        + "the logits before it (Backprop's models end in logits; apply "
                        + "\(dropped == "LogSoftmax" ? "log_softmax" : "softmax") to its output for the file's)\n")
            }
            return (imported.model, imported.inputShape, given ?? imported.normalization)
        }
        let file = try Safetensors.read(path: model)  // (one read: the model, its input shape and normalisation)
        if let description, !Checkpoint.isBackpropCheckpoint(file) {
            // PyTorch's own state_dict: the network of --layers, for the images of --input-shape.
            let image = try parsedImageShape()
            let (network, inputShape) = try EvaluateCommand.loadStateDict(
                file, description: description, imageShape: image,
                images: inputShape.map { "--input-shape \($0)" }
                    ?? "images of \(image.map(String.init).joined(separator: "×")), the default --input-shape")
            let stored = try Checkpoint.readNormalization(file)
            EvaluateCommand.noteReplaced(stored, by: given, written: normalize, in: model)
            return (network, inputShape, given ?? stored)
        }
        let saved: SavedModel
        do {
            saved = try Checkpoint.load(from: file)
        } catch let error as DataError where !Checkpoint.isBackpropCheckpoint(file) {
            throw CommandLineError(
                "\(error.description); a state_dict that PyTorch wrote is read with --layers, which gives its "
                    + "architecture (such as 'lin 256, relu, lin 10'; README, \"PyTorch interop\")")
        }
        try EvaluateCommand.checkSameNetwork(
            try? Checkpoint.modelDescription(of: saved.model), as: description, in: model,
            holder: "a Backprop checkpoint")
        EvaluateCommand.noteReplaced(saved.normalization, by: given, written: normalize, in: model)
        return (saved.model, saved.inputShape, given ?? saved.normalization)
    }

    /// `--input-shape` as `[c, h, w]`, by default Fashion-MNIST's `[1, 28, 28]`.
    private func parsedImageShape() throws -> [Int] {
        guard let inputShape else { return [1, 28, 28] }
        let sizes = inputShape.split(separator: ",", omittingEmptySubsequences: false).map {
            Int($0.trimmingCharacters(in: .whitespaces))
        }
        guard sizes.count == 3, let c = sizes[0], let h = sizes[1], let w = sizes[2], c > 0, h > 0, w > 0,
            c <= 1 << 16, h <= 1 << 16, w <= 1 << 16
        else {
            throw ValidationError(
                "--input-shape: expected C,H,W, three sizes from 1 to 65536 such as 1,28,28, found '\(inputShape)'")
        }
        return [c, h, w]
    }

    /// `--layers`, parsed, or `nil` when not given.
    private func parsedLayers() throws -> ModelDescription? { try parseLayers(layers) }

    /// The Python that builds the `nn.Sequential` of `network`, loads ``output`` into it, and
    /// prepares Fashion-MNIST pixels as the model was trained on them.
    private func pythonScript(
        _ network: Model, inputShape: [Int], normalization: (mean: Double, std: Double)?
    ) throws -> String {
        let modules = try PyTorchStateDict.modules(of: network, inputShape: inputShape)
        let description = try Checkpoint.modelDescription(of: network)
        let shapes = try description.shapes(input: inputShape)
        let tensorCount = try PyTorchStateDict.tensors(of: network).tensors.count
        let layerLines = zip(modules, shapes).enumerated().map { index, pair in
            "    \(pair.0),  # \(index): [n, \(pair.1.map(String.init).joined(separator: ", "))]"
        }
        let shapeText = inputShape.map(String.init).joined(separator: ", ")
        let normalizationLines: [String]
        if let normalization {
            normalizationLines = [
                "# The inputs as the model was trained on them: pixels / 255, then normalised with the training",
                "# images' mean and standard deviation (" + (normalize == nil ? "stored in \(model)" : "--normalize")
                    + ").",
                "MEAN, STD = \(normalization.mean), \(normalization.std)",
            ]
        } else {
            normalizationLines = [
                "# \(model) stores no normalisation: set MEAN and STD to the mean and standard deviation of",
                "# the training pixels / 255 (backprop evaluate computes them from the training images), or",
                "# give them to backprop export --normalize MEAN,STD.",
                "MEAN, STD = 0.0, 1.0",
            ]
        }
        let lines =
            [
                "# backprop export: wrote \(output), the state_dict (\(tensorCount) tensors) of the nn.Sequential",
                "# below, from \(model) ('\(description)').",
                "import torch",
                "from torch import nn",
                "from safetensors.torch import load_file  # pip install safetensors",
                "",
                "model = nn.Sequential(",
            ] + layerLines + [
                ")",
                "model.load_state_dict(load_file(\(Self.pythonPath(output))))",
                "model.eval()  # dropout off, batch norm on its running statistics, as backprop evaluate runs it",
                "",
            ] + normalizationLines + [
                "",
                "",
                "def prepare(pixels):",
                "    \"\"\"Pixels 0 to 255 (n images) as the model's input [n, \(shapeText)].\"\"\"",
                "    x = torch.as_tensor(pixels, dtype=torch.float32) / 255",
                "    return ((x - MEAN) / STD).reshape(-1, \(shapeText))",
                "",
                "",
                "# logits = model(prepare(images))  # torchvision: ToTensor(), then Normalize((MEAN,), (STD,))",
            ]
        return lines.map(Self.pythonComment).joined(separator: "\n") + "\n"
    }

    /// `line` as it is, unless it is a comment (`# …`, where the file and model names go): then
    /// with every control character as `\xNN`, so that a name holding a line break (`$'a\nprint(1)'`)
    /// stays in its comment instead of becoming a line of code.
    static func pythonComment(_ line: String) -> String {
        guard line.hasPrefix("#") else { return line }
        var safe = ""
        for scalar in line.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x85 || scalar.value == 0x2028
                || scalar.value == 0x2029
            {
                safe += String(format: "\\x%02x", scalar.value)
            } else {
                safe.unicodeScalars.append(scalar)
            }
        }
        return safe
    }

    /// `text` as a Python string literal: double quotes, with backslashes, quotes and control
    /// characters escaped.
    static func pythonString(_ text: String) -> String {
        var literal = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": literal += "\\\\"
            case "\"": literal += "\\\""
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                literal += String(format: "\\x%02x", scalar.value)
            default: literal.unicodeScalars.append(scalar)
            }
        }
        return literal + "\""
    }

    /// A file's path as a Python string literal that opens that very file: a name that is not
    /// UTF-8 (written under its exact bytes, `FileSystemPath`) has each byte that does not decode
    /// written `\udcXX`, as Python's `os.fsdecode` spells it on POSIX (surrogateescape), so that
    /// `open()` encodes it back to the same bytes. (Swift's decoding would put U+FFFD there, a
    /// name no file has.)
    static func pythonPath(_ path: String) -> String {
        guard let bytes = try? FileSystemPath.bytes(of: path), String(validating: bytes, as: UTF8.self) == nil else {
            return pythonString(path)
        }
        var literal = "\""
        var index = 0
        while index < bytes.count {
            let lead = bytes[index]
            let length =
                lead < 0x80 ? 1 : lead >> 5 == 0b110 ? 2 : lead >> 4 == 0b1110 ? 3 : lead >> 3 == 0b11110 ? 4 : 0
            if length > 0, index + length <= bytes.count,
                let piece = String(validating: bytes[index..<(index + length)], as: UTF8.self)
            {
                literal += pythonString(piece).dropFirst().dropLast()
                index += length
            } else {
                literal += String(format: "\\udc%02x", lead)
                index += 1
            }
        }
        return literal + "\""
    }

    /// Whether `a` and `b` name the same file (after `..`, `.` and symbolic links).
    static func samePath(_ a: String, _ b: String) -> Bool {
        func resolved(_ path: String) -> String {
            URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        }
        return resolved(a) == resolved(b)
    }
}
