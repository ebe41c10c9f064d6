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
            Runs the seed's model on the first rows of Fashion-MNIST and prints, for every step of the \
            forward and backward passes, the line of code that runs, which object each inp, out and \
            .g is, and where each gradient comes from, every relation checked on the objects.
            """
    )

    @Option(
        help: "Folder with the Fashion-MNIST files (default: $BACKPROP_DATA, else /usr/share/datasets/fashion-mnist).")
    var data: String?

    // `.unconditional` on the numbers: `--rows -5` reads -5 (refused by `validate()`), not a missing value.
    @Option(parsing: .unconditional, help: "How many training rows to run on (small keeps the values readable).")
    var rows: Int = 5

    @Option(help: "Hidden layer widths: one (the seed's model: 50) or several separated by commas (50,20).")
    var hidden: String = "50"

    @Option(help: "The loss: mse (the seed's) or cross-entropy.")
    var loss: String = "mse"

    @Option(parsing: .unconditional, help: "Seed of the random weights.")
    var seed: UInt64 = 42

    @Flag(help: "Add the mean and standard deviation of the activations after every layer.")
    var stats = false

    @Option(help: "Also write the walkthrough as one self-contained web page to this file.")
    var html: String?

    @Option(help: "Also write autograd's computation graph in Graphviz DOT to this file.")
    var dot: String?

    func validate() throws {
        _ = try parseHidden()
        guard rows >= 1 && rows <= 50_000 else {
            throw ValidationError("--rows: expected a number of rows from 1 to 50000, found \(rows)")
        }
        _ = try parseLoss()
        if let html { try OutputPath.check(html, option: "--html") }
        if let dot { try OutputPath.check(dot, option: "--dot") }
    }

    func run() throws {
        let widths = try parseHidden()
        let lossKind = try parseLoss()
        let (x, targ) = try loadRows()
        let classes = lossKind == "mse" ? 1 : 10
        var generator = RandomGenerator(seed: seed)
        // For one hidden width, exactly the weights `backprop seed` draws with the same --seed.
        let linears = Model.kaimingInitialization(sizes: [x.shape[1]] + widths + [classes], generator: &generator)
        // The seed's layers, then the loss the user chose (on 10 class scores for cross-entropy).
        let loss: any Loss = lossKind == "mse" ? Mse() : CrossEntropy()
        let model = Model(layers: Model(linears: linears).layers, loss: loss)

        let trace = Trace.record(model: model, x: x, targ: targ)
        let inputs =
            "the first \(rows == 1 ? "row" : "\(rows) rows") of Fashion-MNIST's x_train and y_train "
            + "(normalised with the whole training set's mean and std, as the seed does)"
        let narration = Narration(trace: trace, statistics: stats, inputs: inputs)
        print(narration.text, terminator: "")

        if let html {
            try write(HTMLReport(narration: narration).html, to: html, option: "--html")
            print("\nWrote the walkthrough page to \(html)")
        }
        if let dot {
            let graph = ComputationGraph.record(model: model, x: x, targ: targ)
            try write(graph.dot, to: dot, option: "--dot")
            print("Wrote the computation graph (\(graph.nodes.count) nodes) to \(dot)")
        }
    }

    /// `--hidden 50` or `--hidden 50,20`: positive widths.
    private func parseHidden() throws -> [Int] {
        let parts = hidden.split(separator: ",", omittingEmptySubsequences: false)
        let widths = parts.map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, widths.allSatisfy({ ($0 ?? 0) > 0 && ($0 ?? 0) <= 4096 }) else {
            throw ValidationError(
                "--hidden: expected positive widths up to 4096 separated by commas (50 or 50,20), found '\(hidden)'")
        }
        return widths.map { $0! }
    }

    private func parseLoss() throws -> String {
        switch loss {
        case "mse": return loss
        case "cross-entropy": return loss
        default:
            throw ValidationError("--loss: expected mse or cross-entropy, found '\(loss)'")
        }
    }

    /// The first `rows` rows of the training set, prepared as the seed prepares `x_train`: the
    /// whole training set is read so that the rows are normalised with its mean and standard
    /// deviation, exactly as in a full run, and only then cut.
    private func loadRows() throws -> (x: Tensor, targ: Tensor) {
        let directory = FashionMNIST.resolveDirectory(data)
        let dataset: FashionMNIST
        do {
            dataset = try FashionMNIST(directory: directory, requiresValidation: false)
        } catch let error as DataError {
            throw CommandLineError("--data: \(error)")
        }
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
        return (x, targ)
    }

    /// Writes `text` to `path` atomically (the Data layer's `writeAtomically`: a temporary file in
    /// the same folder, fsync, rename), so a reader never sees half a page.
    private func write(_ text: String, to path: String, option: String) throws {
        do {
            try writeAtomically(Array(text.utf8), to: path)
        } catch let error as DataError {
            throw CommandLineError("\(option): \(error)")
        }
    }
}
