import ArgumentParser
import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropONNX
import BackpropTraining
import Foundation

/// `backprop evaluate`: the test accuracy of a model saved by `backprop train --save` or exported by
/// `backprop export`, or of a PyTorch `state_dict` with its architecture from `--layers`.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Print the test accuracy of a saved model on the Fashion-MNIST test images (t10k).",
        discussion: """
            Reads the architecture from the checkpoint's metadata, builds the model, loads its \
            weights, and runs it on the 10,000 test images, normalised with the mean and standard \
            deviation the model was trained with (stored in the checkpoint; for a checkpoint \
            without them, those of the training images). A state_dict that `backprop export --format \
            pytorch` wrote holds its architecture too. A PyTorch state_dict saved as safetensors by \
            PyTorch (no Backprop metadata) is read with the architecture of --layers: entry I is index I \
            of the nn.Sequential (I.weight, I.bias, …; nn.Linear weights are [out, in]). An ONNX \
            model (a file ending in .onnx, or any ONNX protobuf) whose graph is a chain of Backprop's \
            layers gives its own architecture, as `backprop export --format onnx` or torch.onnx.export \
            of an nn.Sequential writes it (README, "ONNX import").
            """
    )

    @Option(
        help: """
            A safetensors checkpoint written by `backprop train --save` or `backprop export`, a PyTorch \
            state_dict, or an ONNX model.
            """)
    var model: String

    @Option(
        help: """
            The architecture of a PyTorch state_dict, as a model description ('conv 16 3 pad 1, relu, \
            maxpool 2, flatten, lin 10') or a preset; layer I is the nn.Sequential's index I.
            """)
    var layers: String?

    @Option(
        // `.unconditional`: `--normalize -0.5,1` reads a negative mean, not a missing value.
        parsing: .unconditional,
        help: """
            MEAN,STD: normalise the pixels / 255 with this mean and standard deviation (default: the \
            model's, else the training images'); 0,1 gives pixels in 0…1, as torchvision's ToTensor().
            """)
    var normalize: String?

    @Option(
        help: "Folder with the Fashion-MNIST files (default: $BACKPROP_DATA, else /usr/share/datasets/fashion-mnist).")
    var data: String?

    @Option(parsing: .unconditional, help: "Use only the first N test images (and N training images).")
    var limit: Int?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        try PathArgument.checkNotEmpty(model, option: "--model")
        if let limit, limit < 1 { throw ValidationError("--limit: expected at least 1 image, found \(limit)") }
        _ = try parsedLayers()
        _ = try parsedNormalization()
    }

    func run() throws {
        // The file is read once: an ONNX model, else a safetensors file whose model (a Backprop
        // checkpoint's) and normalisation are taken first, and a state_dict's weights once the
        // images' shape is known for --layers.
        let onnx = ONNXImport.looksLikeONNX(path: model) ? try loadONNX() : nil
        let file = try onnx == nil ? Safetensors.read(path: model) : nil
        let checkpoint = try onnx.map { ($0.model, $0.inputShape) } ?? file.flatMap(loadCheckpoint)
        // An ONNX model's own normalisation (or none) when it is one, else the checkpoint's.
        let stored = try onnx.map(\.normalization) ?? file.flatMap(Checkpoint.readNormalization)
        let given = try parsedNormalization()
        Self.noteReplaced(stored, by: given, written: normalize, in: model)
        let normalization = given ?? stored
        // The training rows only give the normalisation of an old checkpoint: no validation split.
        let dataset = try FashionMNIST(
            directory: FashionMNIST.resolveDirectory(data), limit: limit, normalization: normalization,
            requiresValidation: false)
        let (network, inputShape) = try checkpoint ?? loadStateDict(file, imageShape: dataset.imageShape)
        let sizes = network.sizes
        let pixels = dataset.xTest.shape[1]
        guard checkedProduct(inputShape) == pixels, inputShape.count != 3 || inputShape == dataset.imageShape else {
            throw CommandLineError(
                "\(model): the model takes inputs of shape \(inputShape), but the images in \(dataset.directory) "
                    + "have shape \(dataset.imageShape) (\(pixels) pixels)")
        }
        let description = try? Checkpoint.modelDescription(of: network)
        // Each layer's output shape for one image (`nil` for a model without a description).
        let shapes = try? description?.shapes(input: inputShape)
        let outputs = shapes?.last ?? [sizes.last ?? 0]
        guard outputs == [FashionMNIST.classNames.count] || outputs == [1] else {
            throw CommandLineError(
                "\(model): the model has \(outputs.map(String.init).joined(separator: "×")) outputs, expected "
                    + "\(FashionMNIST.classNames.count) classes (or 1 for the seed's regression)")
        }
        // Ten classes need cross-entropy over ten outputs; one output is the seed's regression (mse).
        if (outputs == [1]) != (network.loss is Mse) {
            throw CommandLineError(
                "\(model): the model gives \(outputs.map(String.init).joined(separator: "×")) output"
                    + "\(outputs == [1] ? "" : "s") with a \(network.loss is Mse ? "mean squared error" : "cross-entropy") "
                    + "loss; expected \(FashionMNIST.classNames.count) outputs with cross-entropy, or 1 with the mean "
                    + "squared error (the seed's regression)")
        }
        let x = dataset.xTest.reshape([dataset.xTest.shape[0]] + inputShape)
        let batchSize = try evaluationBatch(network, layerShapes: shapes)
        let test = evaluate(network, x: x, y: dataset.yTest, batchSize: batchSize)
        // The tensors are finite (`Checkpoint.load` checks them), but large weights can still
        // overflow, and so can an extreme normalisation (a mean of 1e300, a deviation of 1e-45).
        guard test.loss.isFinite else {
            let finiteInputs = dataset.xTest.values.allSatisfy(\.isFinite)
            let inputs = finiteInputs ? "" : "the normalised test images are not finite, "
            throw CommandLineError(
                "\(model): the test loss on the \(dataset.yTest.count) images in \(dataset.directory) is "
                    + "\(test.loss.isNaN ? "NaN" : "infinite"); \(inputs)the model's tensors are finite but its outputs "
                    + "are not: weights too large, or inputs normalised with mean \(dataset.trainMean) and standard "
                    + "deviation \(dataset.trainStd) out of their range")
        }
        // An MLP (`Lin`, `ReLU`, …, `Lin`) by its sizes, as it always was; any other network by its
        // description (the sizes of its linear layers would hide its convolutions and batch norms).
        let isMLP = (try? Checkpoint.architecture(of: network)) != nil
        if json {
            let report = EvaluateReport(
                testAccuracy: test.accuracy, testLoss: test.loss, images: dataset.yTest.count,
                sizes: isMLP ? sizes : nil, layers: isMLP ? nil : description?.description, model: model)
            print(try encodeJSON(report))
        } else {
            let architecture =
                isMLP ? sizes.map(String.init).joined(separator: "-") : "'\(description?.description ?? "")'"
            print(
                "test accuracy \(format(test.accuracy, 4)) (\(dataset.yTest.count) images), test loss "
                    + "\(format(test.loss, 4)), model \(architecture) from \(model)")
        }
    }
}

extension EvaluateCommand {
    /// The rows per batch of the evaluation: ``defaultEvaluationBatch(for:)``'s, or fewer as
    /// ``evaluationBatch(defaultBatch:floatsPerImage:memory:)`` allows.
    /// - Throws: `CommandLineError` naming `--model` when one image's outputs alone need more.
    /// `layerShapes`: each layer's output shape for one image, if the model has a description.
    private func evaluationBatch(_ network: Model, layerShapes shapes: [[Int]]?) throws -> Int {
        let batch = defaultEvaluationBatch(for: network)
        guard let shapes else { return batch }
        let perImage = shapes.reduce(Int?(0)) { checkedSum($0, checkedProduct($1)) }
        let memory = ProcessInfo.processInfo.physicalMemory
        guard let rows = Self.evaluationBatch(defaultBatch: batch, floatsPerImage: perImage, memory: memory) else {
            let bytes = checkedProduct([perImage, 2 * MemoryLayout<Float>.stride])
            throw CommandLineError(
                "\(model): the outputs of the model's \(shapes.count) layers for one image need "
                    + "\(bytes.map(Tensor.describe(bytes:)) ?? "more than can be counted"), a quarter of this "
                    + "machine's \(Tensor.describe(bytes: Int(clamping: memory))) at most can go to them")
        }
        return rows
    }

    /// `defaultBatch`, or fewer rows when a batch's layer outputs would take more than a quarter of
    /// `memory`; `nil` when one image's do. Each layer keeps its output (`floatsPerImage` counts
    /// all layers' for one image; `nil` when they overflow an `Int`), and about as much again (a
    /// mask, a layer's input kept as its own copy): 8 bytes per float. A deep model in a small file
    /// (300,000 ReLUs of 784 values: 0.9 GB per image) is evaluated a few images at a time instead
    /// of growing until the system stops it (21 GB in batches of 12).
    static func evaluationBatch(defaultBatch: Int, floatsPerImage: Int?, memory: UInt64) -> Int? {
        let budget = Int(clamping: memory / 4)
        guard let bytes = checkedProduct([floatsPerImage, 2 * MemoryLayout<Float>.stride]), bytes <= budget else {
            return nil
        }
        return Swift.max(1, Swift.min(defaultBatch, budget / Swift.max(bytes, 1)))
    }

    /// The model of the Backprop checkpoint `file` (read from `--model`; a state_dict that `backprop
    /// export` wrote is one) and the shape of one example it takes ([784] for an MLP, [1, 28, 28]
    /// for a convnet), or `nil` for a PyTorch state_dict given with `--layers`.
    private func loadCheckpoint(_ file: SafetensorsFile) throws -> (Model, [Int])? {
        let description = try parsedLayers()
        let isCheckpoint = Checkpoint.isBackpropCheckpoint(file)
        if description != nil, !isCheckpoint { return nil }
        let saved: SavedModel
        do {
            saved = try Checkpoint.load(from: file)
        } catch let error as DataError where !isCheckpoint {
            throw CommandLineError(
                "\(error.description); a PyTorch state_dict is read with --layers, which gives its architecture "
                    + "(such as 'lin 256, relu, lin 10'; README, \"PyTorch interop\")")
        }
        try Self.checkSameNetwork(
            try? Checkpoint.modelDescription(of: saved.model), as: description, in: model,
            holder: "a Backprop checkpoint")
        return (saved.model, saved.inputShape)
    }

    /// The ONNX model `--model`, which must be the one `--layers` describes if given.
    private func loadONNX() throws -> ONNXImportedModel {
        let imported = try ONNXImport.read(path: model)
        try Self.checkSameNetwork(imported.description, as: try parsedLayers(), in: model, holder: "an ONNX model")
        return imported
    }

    /// Throws unless `--layers` (`given`) is absent or is the network `stored` that the file `path`
    /// holds (`holder`: `a Backprop checkpoint`, `an ONNX model`).
    static func checkSameNetwork(
        _ stored: ModelDescription?, as given: ModelDescription?, in path: String, holder: String
    ) throws {
        guard let given, let stored, stored != given else { return }
        throw CommandLineError(
            "\(path): holds the model '\(stored)', not --layers '\(given)' (\(holder) gives its own "
                + "architecture: leave --layers out)")
    }

    /// The model `--layers` describes for images of `imageShape`, with the weights of the PyTorch
    /// state_dict `file` (read from `--model`), and the shape of one example it takes.
    private func loadStateDict(_ file: SafetensorsFile?, imageShape: [Int]) throws -> (Model, [Int]) {
        guard let file, let description = try parsedLayers() else {
            preconditionFailure("a state_dict is a safetensors file, read with --layers")
        }
        return try Self.loadStateDict(
            file, description: description, imageShape: imageShape,
            images: "the \(imageShape) images in the data")
    }

    /// The model `description` gives for images of `imageShape` (`[c, h, w]`), with the weights of
    /// the PyTorch state_dict `file`, and the shape of one example it takes: MSE for one output,
    /// else cross-entropy. `images` names the images in the error of a description that does not
    /// fit them (`the [1, 28, 28] images in the data`); that error is a `ValidationError`.
    static func loadStateDict(
        _ file: SafetensorsFile, description: ModelDescription, imageShape: [Int], images: String
    ) throws -> (Model, [Int]) {
        let inputShape =
            imageShape.count == 3
            ? description.inputShape(channels: imageShape[0], height: imageShape[1], width: imageShape[2])
            : imageShape
        let outputs: [Int]
        do {
            outputs = try description.shapes(input: inputShape).last ?? inputShape
        } catch {
            // A usage error (status 64), as train's for the same --layers: the options do not fit.
            throw ValidationError("\(error) (for \(images))")
        }
        let loss: any Loss = outputs == [1] ? Mse() : CrossEntropy()
        let network = try Checkpoint.loadPyTorch(
            file, description: description, inputShape: inputShape, loss: loss,
            describedAs: "--layers '\(description)'")
        return (network, inputShape)
    }

    /// `--layers`, parsed, or `nil` when not given.
    private func parsedLayers() throws -> ModelDescription? { try parseLayers(layers) }

    /// `--normalize MEAN,STD`, parsed, or `nil` when not given.
    private func parsedNormalization() throws -> (mean: Double, std: Double)? {
        try normalize.map(Self.normalization(parsing:))
    }

    /// Says on stderr that `--normalize`'s `given` normalisation replaces a different one that the
    /// model at `path` stores (its own training images', or the one in its ONNX graph): the
    /// results then differ from the model's own, and a mistyped value would otherwise go unseen.
    static func noteReplaced(
        _ stored: (mean: Double, std: Double)?, by given: (mean: Double, std: Double)?, written text: String?,
        in path: String
    ) {
        guard let stored, let given, let text, stored != given else { return }
        StandardStream.error.write(
            "note: --normalize \(text) replaces the normalisation \(path) stores "
                + "(mean \(stored.mean), std \(stored.std))\n")
    }

    /// `--normalize MEAN,STD` (here and in `export`): a finite mean and a positive standard
    /// deviation, or a `ValidationError` naming the option and what was found.
    static func normalization(parsing normalize: String) throws -> (mean: Double, std: Double) {
        let parts = normalize.split(separator: ",", omittingEmptySubsequences: false).map {
            Double($0.trimmingCharacters(in: .whitespaces))
        }
        guard parts.count == 2, let mean = parts[0], let std = parts[1], mean.isFinite, std.isFinite, std > 0 else {
            throw ValidationError(
                "--normalize: expected MEAN,STD with a finite mean and a positive standard deviation "
                    + "(such as 0.286,0.353), found '\(normalize)'")
        }
        if let (byte, value) = FashionMNIST.nonFiniteNormalizedPixel(mean: mean, std: std) {
            throw ValidationError(
                "--normalize: expected MEAN,STD that keep the normalised pixels finite floats, found '\(normalize)': "
                    + "(\(byte)/255 − mean) / std is \(value) in Float")
        }
        return (mean, std)
    }
}

/// The `--json` output of `backprop evaluate`: `sizes` for an MLP (`[784, 256, 128, 10]`), `layers`
/// (its description) for any other network.
struct EvaluateReport: Encodable {
    var testAccuracy: Float
    var testLoss: Float
    var images: Int
    var sizes: [Int]?
    var layers: String?
    var model: String
}
