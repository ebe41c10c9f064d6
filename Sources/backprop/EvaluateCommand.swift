import ArgumentParser
import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import Foundation

/// `backprop evaluate`: the test accuracy of a model saved by `backprop train --save`.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Print the test accuracy of a saved model on the Fashion-MNIST test images (t10k).",
        discussion: """
            Reads the architecture from the checkpoint's metadata, builds the model, loads its \
            weights, and runs it on the 10,000 test images, normalised with the mean and standard \
            deviation the model was trained with (stored in the checkpoint; for a checkpoint \
            without them, those of the training images).
            """
    )

    @Option(help: "A safetensors checkpoint written by `backprop train --save`.")
    var model: String

    @Option(
        help: "Folder with the Fashion-MNIST files (default: $BACKPROP_DATA, else /usr/share/datasets/fashion-mnist).")
    var data: String?

    @Option(parsing: .unconditional, help: "Use only the first N test images (and N training images).")
    var limit: Int?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit: expected at least 1 image, found \(limit)") }
    }

    func run() throws {
        let network = try Checkpoint.load(path: model)
        let normalization = try Checkpoint.normalization(path: model)
        // The training rows only give the normalisation of an old checkpoint: no validation split.
        let dataset = try FashionMNIST(
            directory: FashionMNIST.resolveDirectory(data), limit: limit, normalization: normalization,
            requiresValidation: false)
        let sizes = network.sizes
        // One example as the model takes it: [784] for an MLP, [1, 28, 28] for a convnet.
        let inputShape = try Checkpoint.inputShape(path: model)
        let pixels = dataset.xTest.shape[1]
        guard inputShape.reduce(1, *) == pixels, inputShape.count != 3 || inputShape == dataset.imageShape else {
            throw CommandLineError(
                "\(model): the model takes inputs of shape \(inputShape), but the images in \(dataset.directory) "
                    + "have shape \(dataset.imageShape) (\(pixels) pixels)")
        }
        let description = try? Checkpoint.modelDescription(of: network)
        let outputs = (try? description?.shapes(input: inputShape).last) ?? [sizes.last ?? 0]
        guard outputs == [FashionMNIST.classNames.count] || outputs == [1] else {
            throw CommandLineError(
                "\(model): the model has \(outputs.map(String.init).joined(separator: "×")) outputs, expected "
                    + "\(FashionMNIST.classNames.count) classes (or 1 for the seed's regression)")
        }
        let x = dataset.xTest.reshape([dataset.xTest.shape[0]] + inputShape)
        let test = evaluate(network, x: x, y: dataset.yTest)
        // The weights are finite (`Checkpoint.load` checks them), but large ones can still overflow.
        guard test.loss.isFinite else {
            throw CommandLineError(
                "\(model): the test loss on the \(dataset.yTest.count) images in \(dataset.directory) is "
                    + "\(test.loss.isNaN ? "NaN" : "infinite"); the weights are finite but too large to give finite outputs"
            )
        }
        if json {
            let report = EvaluateReport(
                testAccuracy: test.accuracy, testLoss: test.loss, images: dataset.yTest.count, sizes: sizes,
                layers: inputShape.count == 1 ? nil : description?.description, model: model)
            print(try encodeJSON(report))
        } else {
            let architecture =
                inputShape.count == 1
                ? sizes.map(String.init).joined(separator: "-") : "'\(description?.description ?? "")'"
            print(
                "test accuracy \(format(test.accuracy, 4)) (\(dataset.yTest.count) images), test loss "
                    + "\(format(test.loss, 4)), model \(architecture) from \(model)")
        }
    }
}

/// The `--json` output of `backprop evaluate`.
struct EvaluateReport: Encodable {
    var testAccuracy: Float
    var testLoss: Float
    var images: Int
    var sizes: [Int]
    var layers: String?
    var model: String
}
