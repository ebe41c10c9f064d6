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
        parsing: .unconditional,
        help: "Seed of the initial weights (without --init; as backprop seed's) and of the elements sampled.")
    var seed: UInt64 = 42

    @Option(help: "A safetensors file holding x (n, m) and y (n) to check on, instead of Fashion-MNIST.")
    var tensors: String?

    @Option(name: .customLong("init"), help: "A safetensors file holding the weights w1, b1, w2, b2, ... to check at.")
    var initFile: String?

    @Option(
        parsing: .unconditional,
        help: "Elements checked by finite differences in each tensor larger than this (smaller ones are checked whole)."
    )
    var samples: Int = 64

    @Flag(help: "Print the table as JSON.")
    var json = false

    func validate() throws {
        if let rows, rows < 1 { throw ValidationError("--rows must be at least 1, got \(rows)") }
        if samples < 1 { throw ValidationError("--samples must be at least 1, got \(samples)") }
        if let hidden { _ = try Self.parseWidths(hidden) }
        if data != nil && tensors != nil {
            throw ValidationError("--data and --tensors both give the inputs; use one")
        }
    }

    func run() throws {
        let (x, y, source) = try loadData()
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

    /// `x` `(n, m)`, `y` `(n)`, and a sentence saying where they come from.
    private func loadData() throws -> (x: Tensor, y: Tensor, source: String) {
        if let tensors {
            let file = try Safetensors.read(path: tensors)
            let (x, y) = try file.inputsAndTargets()
            let available = x.shape[0]
            let count = rows ?? available
            if count > available {
                throw CommandLineError("--rows \(count): \(tensors) holds only \(available) rows in x \(x.shape)")
            }
            return (x.rows(0..<count).copy(), y.rows(0..<count).copy(), "\(count) rows of \(tensors)")
        }
        let directory = FashionMNIST.resolveDirectory(data)
        let dataset = try FashionMNIST(directory: directory, requiresValidation: false)
        let available = dataset.xTrain.shape[0]
        let count = rows ?? 64
        if count > available {
            throw CommandLineError("--rows \(count): the training set in \(directory) has only \(available) rows")
        }
        let (x, y) = (dataset.xTrain.rows(0..<count).copy(), dataset.yTrain.rows(0..<count).copy())
        return (x, y, "the first \(count) rows of Fashion-MNIST's xTrain (\(directory))")
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
