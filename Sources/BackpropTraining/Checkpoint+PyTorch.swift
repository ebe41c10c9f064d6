import BackpropCore
import BackpropData
import BackpropNetwork

// Checkpoints and PyTorch state_dicts: a safetensors file without Backprop's metadata is read as
// the state_dict of the nn.Sequential a model description names (see `PyTorchStateDict`), and a
// model is written as one, with its description, so that Backprop reads it back as it is.

extension Checkpoint {
    /// Whether `file` holds its own architecture: a Backprop checkpoint (its metadata's `format` is
    /// `backprop-mlp` or `backprop-model`), or a `state_dict` that
    /// ``savePyTorch(_:to:inputShape:metadata:)`` wrote (see ``isExportedStateDict(_:)``); any
    /// other safetensors file is read as a PyTorch `state_dict`, with a description.
    package static func isBackpropCheckpoint(_ file: SafetensorsFile) -> Bool {
        file.metadata["format"] == format || file.metadata["format"] == modelFormat || isExportedStateDict(file)
    }

    /// Whether `file` is a `state_dict` that ``savePyTorch(_:to:inputShape:metadata:)`` wrote
    /// (`backprop export --format pytorch`): format `pt`, with Backprop's `layers` and
    /// `input_shape` in its metadata. One that PyTorch wrote has neither.
    package static func isExportedStateDict(_ file: SafetensorsFile) -> Bool {
        file.metadata["format"] == pyTorchFormat && file.metadata["layers"] != nil
            && file.metadata["input_shape"] != nil
    }

    /// Whether the safetensors file at `path` holds its own architecture: a Backprop checkpoint,
    /// or a `state_dict` that ``savePyTorch(_:to:inputShape:metadata:)`` wrote; any other (a
    /// PyTorch `state_dict` that PyTorch wrote) needs one from a description.
    /// - Throws: `DataError` naming `path` when it is not a readable safetensors file.
    public static func isBackpropCheckpoint(path: String) throws -> Bool {
        isBackpropCheckpoint(try Safetensors.read(path: path))
    }

    /// The model `description` builds for examples of shape `inputShape`, with the weights of the
    /// PyTorch `state_dict` at `path`, in evaluation mode.
    ///
    /// Layer `I` of the description is index `I` of the `nn.Sequential` that saved the file:
    /// `lin 128` reads `I.weight` `(128, nIn)` (transposed into `w` `(nIn, 128)`) and `I.bias`,
    /// `conv` its `weight` and `bias`, `batchnorm` its `weight`, `bias`, `running_mean` and
    /// `running_var` (`num_batches_tracked` is ignored); see ``PyTorchStateDict``.
    /// - Parameters:
    ///   - path: a safetensors `state_dict` (`safetensors.torch.save_file(model.state_dict(), path)`).
    ///   - description: the layers, as `--layers` gives them.
    ///   - inputShape: the shape of one example: `[1, 28, 28]` for a convnet on Fashion-MNIST,
    ///     `[784]` for an MLP (see `ModelDescription.inputShape(channels:height:width:)`).
    ///   - loss: the loss after the last layer.
    /// - Throws: `ModelDescriptionError` when the description does not fit `inputShape`;
    ///   `DataError` naming `path` when it cannot be read, or its keys, shapes, dtypes or values
    ///   do not fit the description (see `PyTorchStateDict.load(_:into:describedAs:)`), or the
    ///   description has far more parameters than the file holds values (then it is not built).
    public static func loadPyTorch(
        path: String, description: ModelDescription, inputShape: [Int], loss: any Loss = CrossEntropy()
    ) throws -> Model {
        try loadPyTorch(
            path: path, description: description, inputShape: inputShape, loss: loss,
            describedAs: "the model '\(description)'")
    }

    /// ``loadPyTorch(path:description:inputShape:loss:)``, naming the description in errors as
    /// `name` (`--layers '…'`).
    package static func loadPyTorch(
        path: String, description: ModelDescription, inputShape: [Int], loss: any Loss, describedAs name: String
    ) throws -> Model {
        try loadPyTorch(
            Safetensors.read(path: path), description: description, inputShape: inputShape, loss: loss,
            describedAs: name)
    }

    /// ``loadPyTorch(path:description:inputShape:loss:describedAs:)`` for a file already read
    /// (`Safetensors.read(path:)`).
    package static func loadPyTorch(
        _ file: SafetensorsFile, description: ModelDescription, inputShape: [Int], loss: any Loss,
        describedAs name: String
    ) throws -> Model {
        // One far larger than the file is not built (`lin 20000000`, or a wrong input shape).
        let parameters = try description.parameterCount(inputShape: inputShape)
        if let held = valuesFarTooFew(for: parameters, in: file) {
            throw DataError(
                path: file.path,
                problem: "does not fit \(name): for inputs of shape \(inputShape) it has \(parameters) parameters, "
                    + "but the file holds \(held) values")
        }
        var generator = RandomGenerator(seed: 0)
        let model = try Model(description: description, inputShape: inputShape, loss: loss, generator: &generator)
        try PyTorchStateDict.load(file, into: model, describedAs: name)
        model.eval()
        return model
    }

    /// Writes `model` as the PyTorch `state_dict` of its `nn.Sequential`, atomically (see
    /// `PyTorchStateDict.write(_:to:metadata:)`), with Backprop's description of it in the metadata
    /// (`format` `pt`, `layers`, `input_shape`, `loss`, and the caller's `metadata`, such as the
    /// inputs' normalisation `input_mean` and `input_std`).
    ///
    /// PyTorch ignores the metadata; Backprop reads the file back as it is, without being told its
    /// layers (``load(from:layers:)``, `backprop evaluate`, `export` and `train --init`).
    ///
    /// - Parameters:
    ///   - model: a model whose layers a description names (an MLP too).
    ///   - path: the destination; its folder must exist.
    ///   - inputShape: the shape of one example (see ``save(_:to:normalization:metadata:optimizerState:inputShape:)``).
    ///   - metadata: more `__metadata__` entries.
    /// - Throws: `CheckpointError` when a layer has no PyTorch module, the input shape is unknown,
    ///   or a weight is not finite; `DataError` naming `path` if it cannot be written.
    public static func savePyTorch(
        _ model: Model, to path: String, inputShape: [Int]? = nil, metadata: [String: String] = [:]
    ) throws {
        let saved = try describedModel(of: model, inputShape: inputShape)
        var entries = metadata
        entries["format"] = pyTorchFormat
        entries["layers"] = saved.description.description
        entries["input_shape"] = saved.inputShape.map(String.init).joined(separator: ",")
        entries["loss"] = saved.loss
        try PyTorchStateDict.write(model, to: path, metadata: entries)
    }
}
