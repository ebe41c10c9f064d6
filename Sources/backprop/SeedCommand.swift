import ArgumentParser
import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import Foundation

/// `backprop seed`: the seed's program, one forward and one backward pass of `Model`.
///
///     model = Model(w1, b1, w2, b2)
///     loss = model(x_train, y_train)
///     model.backward()
struct SeedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed",
        abstract: "Run the seed's program: loss = model(xTrain, yTrain); model.backward().",
        discussion: """
            Builds Model(w1, b1, w2, b2) with the lesson's Kaiming initialisation (or the weights \
            in --init), runs the forward pass on the first 50,000 Fashion-MNIST training images \
            (or the x and y in --tensors), then model.backward(), and prints the loss, every \
            gradient's shape and norm, and the times.
            """
    )

    @Option(
        name: .long, help: "Folder of the IDX files (default: $BACKPROP_DATA, else /usr/share/datasets/fashion-mnist).")
    var data: String?

    @Option(name: .long, help: "A safetensors file holding x (n×m) and y (n) to use instead of the data set.")
    var tensors: String?

    @Option(
        name: .long, help: "A safetensors file holding w1, b1, w2, b2 to start from (the hidden size comes from w1).")
    var `init`: String?

    // `.unconditional`: `--hidden -5` reads -5 (and is refused by `validate()`), not a missing value.
    @Option(name: .long, parsing: .unconditional, help: "Hidden units (the seed's nh) for Kaiming initialisation.")
    var hidden: Int = 50

    @Option(name: .long, parsing: .unconditional, help: "Seed of the random generator for the initial weights.")
    var seed: UInt64 = 42

    @Option(name: .long, help: "Write loss, out, x.g, w1.g, b1.g, w2.g, b2.g to this safetensors file.")
    var save: String?

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        try PathArgument.checkNotEmpty(tensors, option: "--tensors")
        try PathArgument.checkNotEmpty(`init`, option: "--init")
        guard hidden > 0 else { throw ValidationError("--hidden must be a positive number of units, got \(hidden)") }
        if data != nil && tensors != nil {
            throw ValidationError("--data and --tensors both give the inputs; use one")
        }
        if let save {
            // A safetensors file, named as `train --save` and `gradcheck --save` name theirs: a
            // mistyped argument (`--save x`) would otherwise write 157 MB under a bare name.
            try checkOutput(save, option: "--save", suffix: ".safetensors")
            try checkOutputIsNotAnInput(save, option: "--save", inputs: [("--tensors", tensors), ("--init", `init`)])
            if tensors == nil { try checkOutputIsNotData(save, option: "--save", data: data) }
        }
    }

    func run() throws {
        let (x, y, source) = try loadInputs()
        let weights = try loadWeights(inputs: x.shape[1])
        let result = SeedProgram(x: x, y: y, weights: weights).run()
        // The inputs and weights are finite (their readers check), but large ones can overflow
        // Float in the products: a loss of inf and NaN gradients, which nothing should save.
        let overflowed = result.gradients.filter { !$0.tensor.isAllFinite }.map(\.name)
        guard result.loss.item().isFinite, overflowed.isEmpty else {
            let what =
                result.loss.item().isFinite
                ? "the gradients \(overflowed.joined(separator: ", ")) are not finite"
                : "the loss is \(result.loss.item().isNaN ? "NaN" : "infinite")"
            throw CommandLineError(
                "\(source): \(what); the inputs\(self.`init` == nil ? "" : " and the --init weights") are finite, but "
                    + "the forward or backward pass overflows Float (values too large: the largest |x| is "
                    + "\(x.abs().max().item())); nothing was saved")
        }
        if let save {
            var saved: [String: Tensor] = ["loss": result.loss.reshape([1]), "out": result.out]
            for (name, tensor) in result.gradients { saved[name] = tensor }
            try Safetensors.write(saved, metadata: ["program": "backprop seed", "inputs": source], to: save)
        }
        if json {
            printJSON(result)
        } else {
            printText(result, source: source, hiddenUnits: weights.w1.shape[1])
        }
    }

    /// `x` and `y` from --tensors (checked as `gradcheck --tensors` checks them: no dimension of
    /// 0), or the seed's preparation of the data set.
    private func loadInputs() throws -> (x: Tensor, y: Tensor, source: String) {
        if let tensors {
            let (x, y) = try Safetensors.read(path: tensors).inputsAndTargets()
            return (x, y, tensors)
        }
        let directory = FashionMNIST.resolveDirectory(data)
        let dataset = try FashionMNIST(directory: directory, requiresValidation: false)
        return (dataset.xTrain, dataset.yTrain, directory)
    }

    /// The weights from --init (checked as `gradcheck --init` checks them: two layers, no
    /// dimension of 0, one output), or the lesson's Kaiming initialisation.
    private func loadWeights(inputs m: Int) throws -> SeedProgram.Weights {
        guard let path = self.`init` else {
            var generator = RandomGenerator(seed: seed)
            return .kaiming(inputs: m, hidden: hidden, generator: &generator)
        }
        let linears = try Safetensors.read(path: path).linearWeights(inputs: m, layers: 2, outputs: 1)
        return SeedProgram.Weights(w1: linears[0].w, b1: linears[0].b, w2: linears[1].w, b2: linears[1].b)
    }

    private func printText(_ result: SeedProgram.Result, source: String, hiddenUnits: Int) {
        let x = result.gradients[0].tensor
        print("model = Model(w1, b1, w2, b2)   # \(x.shape[1])-\(hiddenUnits)-1, inputs from \(source)")
        print("loss = model(xTrain, yTrain)    # \(x.shape[0]) rows")
        print("model.backward()")
        print("")
        print("loss  \(result.loss.item())")
        print("")
        print("gradient  shape          norm")
        for (name, tensor) in result.gradients {
            let shape = "[" + tensor.shape.map(String.init).joined(separator: ", ") + "]"
            print(
                name.padding(toLength: 10, withPad: " ", startingAt: 0)
                    + shape.padding(toLength: 15, withPad: " ", startingAt: 0) + String(format: "%.6e", tensor.norm()))
        }
        print("")
        print(String(format: "forward   %8.2f ms", result.forwardMilliseconds))
        print(String(format: "backward  %8.2f ms", result.backwardMilliseconds))
        if let save { print("saved     \(save)") }
    }

    private func printJSON(_ result: SeedProgram.Result) {
        var gradients: [String] = []
        for (name, tensor) in result.gradients {
            let shape = tensor.shape.map(String.init).joined(separator: ", ")
            gradients.append("\"\(name)\": {\"shape\": [\(shape)], \"norm\": \(JSONNumber.format(tensor.norm()))}")
        }
        print(
            "{\"loss\": \(JSONNumber.format(Double(result.loss.item()))), "
                + "\"forward_ms\": \(JSONNumber.format(result.forwardMilliseconds)), "
                + "\"backward_ms\": \(JSONNumber.format(result.backwardMilliseconds)), "
                + "\"gradients\": {\(gradients.joined(separator: ", "))}}")
    }
}
