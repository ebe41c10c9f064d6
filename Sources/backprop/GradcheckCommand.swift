import ArgumentParser
import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import Foundation

/// `backprop gradcheck`: the seed's hand-written gradients against autograd and finite
/// differences, one row per tensor; exit status 1 if any row fails.
struct GradcheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradcheck",
        abstract: "Check the seed's hand-written gradients (.g) against autograd (.grad) and finite differences.",
        discussion: """
            Runs loss = model(x, y); model.backward() for the seed's .g, loss.backward() for autograd's \
            .grad on the same tensors, and finite differences of the loss, then prints one row per \
            tensor (x, w1, b1, w2, b2, ...). Exits with status 1 if any row fails.

            Data: the first --rows rows of the seed's xTrain (Fashion-MNIST, prepared as the seed \
            prepares it), or x and y from --tensors FILE.safetensors. Weights: the lesson's Kaiming \
            initialisation from --seed (the same weights as backprop seed with the same seed), or \
            w1, b1, w2, b2, ... from --init FILE.safetensors.

            Any network: --layers SPEC (a model description such as 'conv 4 3 pad 1, relu, maxpool 2, \
            flatten, lin 10', or a preset: seed, mlp, cnn) checks every parameter (rows named \
            layers.I.NAME) and the input; a network that starts with a convolution takes x as \
            [n, 1, 28, 28] (or as stored in --tensors). --init then holds the parameters by those names, \
            and --save FILE writes the loss, each parameter's .g (as NAME.g) and x.g.
            """
    )

    @Option(
        help: "Folder of the Fashion-MNIST files (default: $BACKPROP_DATA, else /usr/share/datasets/fashion-mnist).")
    var data: String?

    // `.unconditional` on the numbers: `--rows -5` reads -5 (refused by `validate()`), not a missing value.
    @Option(
        parsing: .unconditional,
        help: "Rows to check on: the first N rows of the data (default: 64 of Fashion-MNIST, all of --tensors).")
    var rows: Int?

    @Option(
        help:
            "Hidden layer widths, comma-separated: 50 is the seed's model, 64,32 a deeper one (default: 50, or as stored in --init)."
    )
    var hidden: String?

    @Option(
        help: """
            The network as a model description or a preset name (seed, mlp, cnn) instead of --hidden; \
            parameters named layers.I.NAME.
            """)
    var layers: String?

    @Option(help: "The loss with --layers: cross-entropy (default when the network has several outputs) or mse.")
    var loss: String?

    @Option(help: "With --layers: write the loss, each parameter's .g (as NAME.g) and x.g to this safetensors file.")
    var save: String?

    @Option(
        parsing: .unconditional,
        help: "Seed of the initial weights (without --init; as backprop seed's) and of the elements sampled.")
    var seed: UInt64 = 42

    @Option(help: "A safetensors file holding x (n, m) and y (n) to check on, instead of Fashion-MNIST.")
    var tensors: String?

    @Option(
        name: .customLong("init"),
        help: """
            A safetensors file holding the weights w1, b1, w2, b2, ... to check at (with --layers: \
            layers.I.NAME), or a checkpoint of backprop train --save, which gives its own network.
            """)
    var initFile: String?

    @Option(
        parsing: .unconditional,
        help: "Elements checked by finite differences in each tensor larger than this (smaller ones are checked whole)."
    )
    var samples: Int = 64

    @Flag(help: "Print the table as JSON.")
    var json = false

    func validate() throws {
        try PathArgument.checkNotEmpty(tensors, option: "--tensors")
        try PathArgument.checkNotEmpty(initFile, option: "--init")
        if let rows, rows < 1 { throw ValidationError("--rows must be at least 1, got \(rows)") }
        if samples < 1 { throw ValidationError("--samples must be at least 1, got \(samples)") }
        if let hidden { _ = try Self.parseWidths(hidden) }
        if data != nil && tensors != nil {
            throw ValidationError("--data and --tensors both give the inputs; use one")
        }
        if layers != nil && hidden != nil {
            throw ValidationError("--hidden and --layers both choose the network; use one")
        }
        if let loss { _ = try parseChoice(loss, option: "--loss") as LossKind }
        if layers == nil && (loss != nil || save != nil) {
            throw ValidationError(
                "--\(loss != nil ? "loss" : "save") needs --layers (the seed's model is checked with MSE)")
        }
        if let layers {
            do {
                _ = try ModelDescription(parsing: layers)
            } catch {
                throw ValidationError(
                    error.description.hasPrefix("--layers") ? error.description : "--layers: \(error)")
            }
        }
        if let save {
            try checkOutput(save, option: "--save", suffix: ".safetensors")
            try checkOutputIsNotAnInput(
                save, option: "--save", inputs: [("--tensors", tensors), ("--init", initFile)])
            if tensors == nil { try checkOutputIsNotData(save, option: "--save", data: data) }
        }
    }

    func run() throws {
        if let layers { return try runDescribed(try ModelDescription(parsing: layers), from: "--layers") }
        // A checkpoint of `train --save` (or `Checkpoint.save`) gives its own architecture.
        if hidden == nil, let initFile {
            let file = try Safetensors.read(path: initFile)
            if Checkpoint.isBackpropCheckpoint(file) {
                let saved = try Checkpoint.load(from: file)
                return try runDescribed(
                    try Checkpoint.modelDescription(of: saved.model), from: "--init \(initFile)",
                    storedInputShape: saved.inputShape)
            }
        }
        let (x, y, source, _) = try loadData()
        let m = x.shape[1]
        let linears = try loadWeights(inputs: m)
        let sizes = [m] + linears.map { $0.w.shape[1] }
        let model = Model(linears: linears)

        let started = Date()
        let report = gradientCheck(model, x: x, y: y, options: GradientCheckOptions(samples: samples, seed: seed))
        let seconds = Date().timeIntervalSince(started)

        if json {
            print(try GradcheckOutput.json(report, sizes: sizes, source: source, seconds: seconds))
        } else {
            print(GradcheckOutput.text(report, sizes: sizes, source: source, seconds: seconds))
        }
        if !report.passed { throw ExitCode(1) }
    }

    /// The check of a network given by `--layers`: every parameter by its name and the input.
    /// `option` names where the network comes from in errors (`--layers`, `--init FILE`);
    /// `storedInputShape` is the shape of one example that a checkpoint's model takes.
    private func runDescribed(
        _ description: ModelDescription, from option: String, storedInputShape: [Int]? = nil
    ) throws {
        var (x, y, source, imageShape) = try loadData()
        let inputShape: [Int]
        if let imageShape {  // rows of the data folder's images, whatever their size
            inputShape = description.inputShape(channels: imageShape[0], height: imageShape[1], width: imageShape[2])
            x = x.reshape([x.shape[0]] + inputShape)
        } else {
            inputShape = Array(x.shape.dropFirst())
        }
        if let storedInputShape, storedInputShape != inputShape {
            throw CommandLineError(
                "\(option): the model takes inputs of shape \(storedInputShape), but the inputs (\(source)) have "
                    + "shape \(inputShape)")
        }
        let shapes: [[Int]]
        do {
            shapes = try description.shapes(input: inputShape)
        } catch {
            let text = "\(error)".hasPrefix("--layers") ? "\(error)" : "--layers: \(error)"
            throw ValidationError("\(text) (for inputs of shape \(inputShape) from \(source))")
        }
        // Options that do not fit the network or the data are usage errors (status 64, as in
        // explain), so that status 1 means one thing: a gradient failed its check.
        let output = shapes.last ?? inputShape
        if let problem = WalkthroughChecks.oneVectorPerExample(output, option: option) {
            throw ValidationError(problem)
        }
        if let problem = WalkthroughChecks.batchNorms(description, inputShape: inputShape, rows: x.shape[0]) {
            throw ValidationError(problem)
        }
        let outputs = output[0]
        let lossKind: LossKind =
            try loss.map { try parseChoice($0, option: "--loss") } ?? (outputs == 1 ? .mse : .crossEntropy)
        if lossKind == .mse && outputs != 1 {
            throw ValidationError(
                "--loss mse: expected a model with 1 output per example (the seed's regression), the model gives \(output)"
            )
        }
        if lossKind == .crossEntropy {
            let bad = y.withUnsafeBufferPointer { values in
                values.first { !($0 >= 0 && $0 < Float(outputs) && $0.rounded() == $0) }
            }
            if let bad {
                throw ValidationError(
                    "--loss cross-entropy: y holds \(bad), but cross-entropy over the network's \(outputs) outputs needs "
                        + "classes 0…\(outputs - 1)\(outputs == 1 ? " (a network of one output takes --loss mse)" : "")"
                )
            }
        }
        var generator = RandomGenerator(seed: seed)
        let model = try Model(
            description: description, inputShape: inputShape, loss: lossKind.make(), generator: &generator)
        if let initFile { try loadNamedParameters(into: model, from: initFile) }

        let started = Date()
        let report = gradientCheck(model, x: x, y: y, options: GradientCheckOptions(samples: samples, seed: seed))
        let seconds = Date().timeIntervalSince(started)
        let name = "'\(description)' (\(lossKind.rawValue))"
        if json {
            print(try GradcheckOutput.json(report, model: name, sizes: model.sizes, source: source, seconds: seconds))
        } else {
            print(GradcheckOutput.text(report, model: name, source: source, seconds: seconds))
        }
        if let save { try saveGradients(model, x: x, y: y, to: save) }
        if !report.passed { throw ExitCode(1) }
    }

    /// Copies `layers.I.NAME` tensors (parameters, and buffers where present) from `path` into
    /// `model`, checking each shape; a parameter missing from the file is an error. A state_dict
    /// that `backprop export --format pytorch` wrote is read as `Checkpoint.load(path:into:)` reads
    /// it (its description must be the model's). The
    /// optimizer's state that `train --save` keeps beside them (`optimizer.*`) is not read.
    private func loadNamedParameters(into model: Model, from path: String) throws {
        let file = try Safetensors.read(path: path)
        // `backprop export --format pytorch`'s file: PyTorch's names, read by the checkpoint loader.
        if Checkpoint.isExportedStateDict(file) { return try Checkpoint.load(file, into: model, describedAs: nil) }
        let (parameters, buffers) = (model.namedParameters, model.namedBuffers)
        let known = Set((parameters + buffers).map(\.name))
        if let extra = file.names.first(where: { !known.contains($0) && !$0.hasPrefix("optimizer.") }) {
            throw DataError(
                path: path,
                problem: "holds '\(extra)', which the network has no parameter of; expected "
                    + parameters.map(\.name).joined(separator: ", "))
        }
        if let (name, tensor) = parameters.first(where: { !file.names.contains($0.name) }) {
            throw DataError(path: path, problem: "has no tensor '\(name)' (shape \(tensor.shape))")
        }
        // Every parameter, and the buffers the file holds (running statistics start at 0 and 1).
        for (name, tensor) in parameters + buffers where file.names.contains(name) {
            Checkpoint.copy([(try file.tensor(name, shape: tensor.shape), tensor)])
        }
    }

    /// `loss = model(x, y); model.backward()` with the hand-written backward, then the loss, every
    /// parameter's `.g` as `NAME.g` and `x.g`, written atomically to `path`.
    private func saveGradients(_ model: Model, x: Tensor, y: Tensor, to path: String) throws {
        model.firstTrainableLayer?.needsInputGradient = true
        for dropout in model.layers.compactMap({ $0 as? Dropout }) { dropout.reseed(seed) }
        let lossValue = GradMode.withNoGrad { model(x, y) }
        GradMode.withNoGrad { model.backward() }
        var tensors: [String: Tensor] = ["loss": lossValue.reshape([1])]
        for (name, tensor) in model.namedParameters {
            guard let g = tensor.g else { throw CommandLineError("\(name).g was not written by backward()") }
            tensors[name + ".g"] = g
        }
        guard let xg = x.g else { throw CommandLineError("x.g was not written by backward()") }
        tensors["x.g"] = xg
        try Safetensors.write(tensors, to: path)
    }

    /// `x` `(n, m)`, `y` `(n)`, a sentence saying where they come from, and the shape of an image
    /// `[c, h, w]` when they are rows of the data folder's images (`nil` for `--tensors`).
    private func loadData() throws -> (x: Tensor, y: Tensor, source: String, imageShape: [Int]?) {
        if let tensors {
            let file = try Safetensors.read(path: tensors)
            // A network of --layers may start with a convolution: x as images [n, c, h, w].
            let (x, y) = try file.inputsAndTargets(images: layers != nil)
            let available = x.shape[0]
            let count = rows ?? available
            if count > available {
                throw CommandLineError("--rows \(count): \(tensors) holds only \(available) rows in x \(x.shape)")
            }
            return (x.rows(0..<count).copy(), y.rows(0..<count).copy(), "\(count) rows of \(tensors)", nil)
        }
        let directory = FashionMNIST.resolveDirectory(data)
        let dataset = try FashionMNIST(directory: directory, requiresValidation: false)
        let available = dataset.xTrain.shape[0]
        let count = rows ?? 64
        if count > available {
            throw CommandLineError("--rows \(count): the training set in \(directory) has only \(available) rows")
        }
        let (x, y) = (dataset.xTrain.rows(0..<count).copy(), dataset.yTrain.rows(0..<count).copy())
        return (x, y, "the first \(count) rows of Fashion-MNIST's xTrain (\(directory))", dataset.imageShape)
    }

    /// The weights from `--init`, checked against `--hidden` if both are given, or the seed's
    /// initialisation for `--hidden` (default 50).
    private func loadWeights(inputs m: Int) throws -> [(w: Tensor, b: Tensor)] {
        let widths = try hidden.map(Self.parseWidths)
        guard let initFile else {
            var generator = RandomGenerator(seed: seed)
            return Model.kaimingInitialization(sizes: [m] + (widths ?? [50]) + [1], generator: &generator)
        }
        // One output: the seed's model regresses one number per row.
        let linears = try Safetensors.read(path: initFile).linearWeights(inputs: m, outputs: 1)
        let stored = linears.dropLast().map { $0.w.shape[1] }
        if let widths, widths != stored {
            throw CommandLineError(
                "--hidden \(widths.map(String.init).joined(separator: ",")) does not match \(initFile), "
                    + "whose hidden widths are \(stored.map(String.init).joined(separator: ","))")
        }
        return linears
    }

    /// The widths in `--hidden`, like `64,32`.
    static func parseWidths(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let widths = parts.map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, widths.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError(
                "--hidden expects positive widths separated by commas, like 50 or 64,32; got '\(text)'")
        }
        return widths.map { $0! }
    }
}
