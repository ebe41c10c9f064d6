import ArgumentParser
import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import Foundation

/// `backprop explain`: the seed's walkthrough, generated from a live run of the seed's program.
struct ExplainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explain",
        abstract: "Walk through loss = model(x, targ); model.backward() step by step, from the live objects.",
        discussion: """
            Runs the seed's model (or any model given by --layers, a convnet too) on the first rows of \
            Fashion-MNIST and prints, for every step of the forward and backward passes, the line of code \
            that runs, which object each inp, out and .g is, and where each gradient comes from, every \
            relation checked on the objects.
            """
    )

    @Option(
        help: "Folder with the Fashion-MNIST files (default: $BACKPROP_DATA, else /usr/share/datasets/fashion-mnist).")
    var data: String?

    // `.unconditional` on the numbers: `--rows -5` reads -5 (refused by `validate()`), not a missing value.
    @Option(parsing: .unconditional, help: "How many training rows to run on (small keeps the values readable).")
    var rows: Int = 5

    @Option(
        help: "Hidden layer widths: one (the seed's model: 50, the default) or several separated by commas (50,20).")
    var hidden: String?

    @Option(
        help: """
            The model instead, as a description (conv 8 3 pad 1, relu, maxpool 2, flatten, lin 10) or a preset \
            (seed, mlp, cnn); a model that starts with conv, a pool or flatten reads each row as a 1×28×28 image.
            """)
    var layers: String?

    @Option(help: "The loss: mse (the seed's; the default for one output) or cross-entropy (the default for several).")
    var loss: String?

    @Option(parsing: .unconditional, help: "Seed of the random weights.")
    var seed: UInt64 = 42

    @Flag(help: "Add the mean and standard deviation of the activations after every layer.")
    var stats = false

    @Option(
        help: """
            Also write the walkthrough as one self-contained web page to this file (- or /dev/stdout: to \
            standard output, instead of the walkthrough's text).
            """)
    var html: String?

    @Option(
        help: """
            Also write autograd's computation graph in Graphviz DOT to this file (- or /dev/stdout: to standard \
            output, instead of the walkthrough's text: backprop explain --dot - | dot -Tsvg).
            """)
    var dot: String?

    func validate() throws {
        guard rows >= 1 && rows <= 50_000 else {
            throw ValidationError("--rows: expected a number of rows from 1 to 50000, found \(rows)")
        }
        _ = try parseLoss()
        if layers != nil {
            guard hidden == nil else {
                throw ValidationError(
                    "--hidden and --layers: expected one of them (--hidden 50 is --layers 'lin 50, relu, lin 1')")
            }
            _ = try parsedDescription()
        } else {
            _ = try parseHidden()
        }
        if let html { try OutputTarget.check(html, option: "--html", suffixes: [".html", ".htm"]) }
        if let dot { try OutputTarget.check(dot, option: "--dot", suffixes: [".dot", ".gv"]) }
        for (option, path) in [("--html", html), ("--dot", dot)] {
            if let path, OutputDestination.of(path) == .file {
                try checkOutputIsNotData(path, option: option, data: data)
            }
        }
        if let html, let dot {
            let destination = OutputDestination.of(html)
            if destination == .file && ExportCommand.samePath(html, dot) {
                throw ValidationError(
                    "--html \(html) and --dot \(dot): the same file; the graph would replace the page")
            }
            if destination == .standardOutput && OutputDestination.of(dot) == .standardOutput {
                throw ValidationError(
                    "--html \(html) and --dot \(dot): both write to standard output; expected at most one there, "
                        + "as the page and the graph would be mixed in one stream")
            }
        }
    }

    func run() throws {
        // The outputs first: a stream that cannot be opened is refused before the work.
        let htmlOutput = try html.map { try OutputTarget($0, option: "--html") }
        let dotOutput = try dot.map { try OutputTarget($0, option: "--dot") }
        // An output on standard output is all that standard output carries.
        let quiet = [htmlOutput, dotOutput].contains { $0?.destination == .standardOutput }
        let (rowsX, targ, imageShape) = try loadRows()
        var inputs =
            "the first \(rows == 1 ? "row" : "\(rows) rows") of Fashion-MNIST's x_train and y_train "
            + "(normalised with the whole training set's mean and std, as the seed does)"
        let model: Model
        let x: Tensor
        if layers != nil {
            let (description, shape, lossKind) = try described(imageShape: imageShape)
            if let problem = WalkthroughChecks.batchNorms(description, inputShape: shape, rows: rows) {
                throw ValidationError(problem)
            }
            x = rowsX.reshape([rows] + shape)
            if shape.count == 3 {
                inputs += ", each row viewed as a \(shape.map(String.init).joined(separator: "×")) image"
            }
            model = try describedModel(description, inputShape: shape, lossKind: lossKind)
        } else {
            x = rowsX
            model = mlp(inputs: x.shape[1], widths: try parseHidden(), lossKind: try parseLoss() ?? "mse")
        }

        let trace = Trace.record(model: model, x: x, targ: targ)
        let narration = Narration(trace: trace, statistics: stats, inputs: inputs)
        if !quiet { print(narration.text, terminator: "") }

        if let htmlOutput {
            try htmlOutput.write(HTMLReport(narration: narration).html)
            if !quiet { print("\nWrote the walkthrough page to \(htmlOutput.path)") }
        }
        if let dotOutput {
            let graph = ComputationGraph.record(model: model, x: x, targ: targ)
            try dotOutput.write(graph.dot)
            if !quiet { print("Wrote the computation graph (\(graph.nodes.count) nodes) to \(dotOutput.path)") }
        }
    }

    /// The seed's layers through `widths`, then the loss the user chose (on 10 class scores for
    /// cross-entropy). For one hidden width, exactly the weights `backprop seed` draws with the
    /// same --seed.
    private func mlp(inputs: Int, widths: [Int], lossKind: String) -> Model {
        let classes = lossKind == "mse" ? 1 : 10
        var generator = RandomGenerator(seed: seed)
        let linears = Model.kaimingInitialization(sizes: [inputs] + widths + [classes], generator: &generator)
        let loss: any Loss = lossKind == "mse" ? Mse() : CrossEntropy()
        return Model(layers: Model(linears: linears).layers, loss: loss)
    }

    /// The model `--layers` describes, its weights drawn from --seed, in training mode. The
    /// walkthrough computes `x.g` as the seed does, so the first layer's `needsInputGradient`
    /// (which training turns off) is on.
    private func describedModel(_ description: ModelDescription, inputShape: [Int], lossKind: String) throws -> Model {
        var generator = RandomGenerator(seed: seed)
        let loss: any Loss = lossKind == "mse" ? Mse() : CrossEntropy()
        let model: Model
        do {
            model = try Model(description: description, inputShape: inputShape, loss: loss, generator: &generator)
        } catch {
            throw CommandLineError(error.description)
        }
        model.firstTrainableLayer?.needsInputGradient = true
        return model
    }

    /// The most layers `--layers` may give `explain`.
    static let mostLayers = 1000

    /// `--layers`, parsed, of at most ``mostLayers`` layers.
    private func parsedDescription() throws -> ModelDescription {
        let description: ModelDescription
        do {
            description = try ModelDescription(parsing: layers ?? "")
        } catch {
            throw ValidationError(error.description)
        }
        // Every step keeps a snapshot of every slot: memory grows with the square of the layers
        // (2,000 layers hold about a gigabyte), and no walkthrough of more is read.
        guard description.entries.count <= Self.mostLayers else {
            throw ValidationError(
                "--layers: expected at most \(Self.mostLayers) layers for a walkthrough, found "
                    + "\(description.entries.count) (train and gradcheck take any number)")
        }
        return description
    }

    /// `--layers`: the description, the shape of one example (`imageShape`, the data folder's
    /// `[1, 28, 28]`, for a model that starts with a convolution; its pixels `[784]` otherwise), and
    /// the loss (`--loss`, else mse for one output, cross-entropy for several).
    /// - Throws: a `ValidationError` naming `--layers` or `--loss` when the description does not
    ///   parse, does not fit the images, or does not end in what the loss needs.
    private func described(imageShape: [Int]) throws -> (description: ModelDescription, inputShape: [Int], loss: String)
    {
        let description = try parsedDescription()
        let shape = description.inputShape(channels: imageShape[0], height: imageShape[1], width: imageShape[2])
        let output: [Int]
        do {
            output = try description.shapes(input: shape).last ?? shape
        } catch {
            throw ValidationError(error.description)
        }
        if let problem = WalkthroughChecks.oneVectorPerExample(output, option: "--layers") {
            throw ValidationError(problem)
        }
        let lossKind = try parseLoss() ?? (output == [1] ? "mse" : "cross-entropy")
        if lossKind == "mse" && output != [1] {
            throw ValidationError(
                "--loss mse: expected a model with 1 output per example (the seed's regression), --layers gives \(output)"
            )
        }
        if lossKind == "cross-entropy" && output[0] < 10 {
            throw ValidationError(
                "--layers: cross-entropy on Fashion-MNIST's 10 classes expects at least 10 outputs per example, "
                    + "the model gives \(output)")
        }
        return (description, shape, lossKind)
    }

    /// `--hidden 50` or `--hidden 50,20`: positive widths (50 when not given).
    private func parseHidden() throws -> [Int] {
        let hidden = self.hidden ?? "50"
        let parts = hidden.split(separator: ",", omittingEmptySubsequences: false)
        let widths = parts.map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, widths.allSatisfy({ ($0 ?? 0) > 0 && ($0 ?? 0) <= 4096 }) else {
            throw ValidationError(
                "--hidden: expected positive widths up to 4096 separated by commas (50 or 50,20), found '\(hidden)'")
        }
        return widths.map { $0! }
    }

    /// `--loss`: `mse` or `cross-entropy`, `nil` when not given.
    private func parseLoss() throws -> String? {
        switch loss {
        case nil: return nil
        case "mse": return loss
        case "cross-entropy": return loss
        default:
            throw ValidationError("--loss: expected mse or cross-entropy, found '\(loss ?? "")'")
        }
    }

    /// The first `--rows` rows of the data folder's training images, their labels, and the shape
    /// of an image `[c, h, w]`, prepared as the seed prepares `x_train`: the whole training set is
    /// read so that the rows are normalised with its mean and standard deviation, exactly as in a
    /// full run, and only then cut.
    private func loadRows() throws -> (x: Tensor, targ: Tensor, imageShape: [Int]) {
        let directory = FashionMNIST.resolveDirectory(data)
        // A `DataError` names the folder or file (which may come from BACKPROP_DATA rather than
        // --data), as in the other commands' messages.
        let dataset = try FashionMNIST(directory: directory, requiresValidation: false)
        let available = dataset.xTrain.shape[0]
        guard rows <= available else {
            throw CommandLineError(
                "--rows: expected at most \(available) (the training rows in \(directory)), found \(rows)")
        }
        let columns = dataset.xTrain.shape[1]
        let x = dataset.xTrain.withUnsafeBufferPointer { values in
            Tensor(shape: [rows, columns], values: Array(values[0..<(rows * columns)]))
        }
        let targ = Tensor(Array(dataset.yTrain.values[0..<rows]))
        return (x, targ, dataset.imageShape)
    }
}
