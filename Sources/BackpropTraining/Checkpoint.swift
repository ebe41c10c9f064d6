import BackpropCore
import BackpropData
import BackpropNetwork
import Foundation

/// What a checkpoint says about the model it holds, stored in the safetensors `__metadata__`.
///
/// An MLP is `Lin`, `ReLU`, `Lin`, …, `Lin` and a loss, so its linear layers' sizes say the rest:
/// `sizes: [784, 256, 128, 10]` is `[Lin(784→256), ReLU, Lin(256→128), ReLU, Lin(128→10)]`.
public struct ModelArchitecture: Equatable, Sendable, CustomStringConvertible {
    /// The linear layers' sizes, input first.
    public var sizes: [Int]
    /// The activation between linear layers (`"relu"`, the only one).
    public var activation: String
    /// The loss: `"cross_entropy"` or `"mse"`.
    public var loss: String

    /// Creates an architecture description.
    public init(sizes: [Int], activation: String = "relu", loss: String) {
        self.sizes = sizes
        self.activation = activation
        self.loss = loss
    }

    /// `784-256-128-10 relu cross_entropy`.
    public var description: String {
        sizes.map(String.init).joined(separator: "-") + " \(activation) \(loss)"
    }
}

/// What a checkpoint holds: the model, ready to predict, and what its inputs must look like.
///
/// Made by `Checkpoint.load(from:layers:)`.
public struct SavedModel {
    /// The model, in evaluation mode, with the checkpoint's weights and buffers.
    public let model: Model
    /// The shape of one example the model takes: `[m]` for an MLP of `m` inputs, the stored
    /// `input_shape` (`[1, 28, 28]`) for a described model. Give the model `[n] + inputShape`.
    public let inputShape: [Int]
    /// The mean and standard deviation the model's inputs were normalised with in training
    /// (`x̂ = (x − mean) / std`, applied to pixels / 255 by `FashionMNIST(directory:normalization:)`),
    /// or `nil` when the checkpoint stores none (one written before checkpoints stored it, or
    /// saved without it).
    public let normalization: (mean: Double, std: Double)?
}

/// Saving and loading trained models as safetensors files that any framework can read.
///
/// Every tensor is named `layers.I.NAME` after the index `I` of its layer in `model.layers` and
/// its name in the layer, as PyTorch's `nn.Sequential` names its state dict. Two formats:
///
/// - An MLP (`Lin`, `ReLU`, …, `Lin`) is written as it always was: `layers.i.w` `(nIn, nOut)`
///   and `layers.i.b` `(nOut)` for each `Lin` (for 784-256-128-10, `layers.0.*`, `layers.2.*`
///   and `layers.4.*`; the ReLUs are layers 1 and 3), the forward pass `x • w + b` with a ReLU
///   after every layer but the last, and in `__metadata__`
///
///       {"format": "backprop-mlp", "sizes": "784,256,128,10", "activation": "relu",
///        "loss": "cross_entropy", "layers": "lin,relu,lin,relu,lin", …}
///
/// - Any other model whose layers a `ModelDescription` names (convolutions, pools, batch norm,
///   dropout, the other activations) holds every parameter and buffer (`layers.0.w`
///   `(cOut, cIn, kh, kw)`, `layers.0.b`, `layers.1.running_mean`, `layers.1.running_var`, …;
///   see `Model.namedParameters` and `Model.namedBuffers`), and in `__metadata__`
///
///       {"format": "backprop-model", "layers": "conv 32 3 pad 1, batchnorm, relu, …, lin 10",
///        "input_shape": "1,28,28", "loss": "cross_entropy", …}
///
///   the description's canonical text and the shape of one example, from which loading builds
///   the model before it copies the tensors in.
///
/// Layers of your own (`SavableLayer`) are entries of the description, `KIND ARG1 ARG2 …`,
/// with their `Layer.namedParameters` and `Layer.buffers` stored like the built-in layers'.
///
/// Both formats store the inputs' normalisation when it is given (`input_mean`, `input_std`: the
/// model takes `(x − mean) / std`), and carry whatever else the caller adds (the command line
/// adds the training settings). Files are written atomically (see `writeAtomically`).
///
/// ```swift
/// try Checkpoint.save(model, to: "model.safetensors", normalization: (data.trainMean, data.trainStd))
/// let saved = try Checkpoint.load(from: "model.safetensors", layers: [ScaledTanh.self])
/// let logits = saved.model.predict(x)  // x normalised with saved.normalization
/// ```
public enum Checkpoint {
    /// The `format` metadata value of Backprop's MLP checkpoints.
    public static let format = "backprop-mlp"
    /// The `format` metadata value of checkpoints of models given by a description.
    public static let modelFormat = "backprop-model"
    /// The `format` metadata value of PyTorch `state_dict`s (`safetensors.torch.save_file` writes
    /// it); ``savePyTorch(_:to:inputShape:metadata:)`` writes it too, with `layers` and
    /// `input_shape`, which make the file one that Backprop reads without being told its layers.
    public static let pyTorchFormat = "pt"

    /// The architecture of `model`.
    /// - Throws: `CheckpointError` if the model is not `Lin`, `ReLU`, …, `Lin` (each with a bias)
    ///   with a `CrossEntropy` or `Mse` loss.
    public static func architecture(of model: Model) throws -> ModelArchitecture {
        let loss: String
        switch model.loss {
        case is CrossEntropy: loss = "cross_entropy"
        case is Mse: loss = "mse"
        default: throw CheckpointError("cannot save a model whose loss is \(type(of: model.loss))")
        }
        let expected = layerNames(linearLayers: model.layers.count / 2 + 1)
        let found = try model.layers.map { layer -> String in
            switch layer {
            case let lin as Lin where lin.hasBias: return "lin"
            case is ReLU: return "relu"
            case is Lin: throw CheckpointError("an MLP's linear layers all have a bias")
            default: throw CheckpointError("cannot save a model with a \(type(of: layer)) layer")
            }
        }
        guard found == expected else {
            throw CheckpointError(
                "cannot save layers \(found.joined(separator: ",")); expected \(expected.joined(separator: ","))")
        }
        return ModelArchitecture(sizes: model.sizes, loss: loss)
    }

    /// Writes `model`'s weights and architecture to `path`, atomically.
    ///
    /// An MLP is written in the `backprop-mlp` format; any other model that a description names,
    /// in the `backprop-model` format with its parameters and buffers (see ``Checkpoint``).
    /// - Parameters:
    ///   - model: an MLP (`Lin`, `ReLU`, …, `Lin`), or a model of the layers a `ModelDescription`
    ///     names (as `Model(description:inputShape:loss:generator:)` builds) and of layers of your
    ///     own (`SavableLayer`); with a `CrossEntropy` or `Mse` loss.
    ///   - path: the destination; its folder must exist.
    ///   - normalization: the mean and standard deviation the model's inputs were normalised with
    ///     (`x̂ = (x − mean) / std`; `FashionMNIST`'s `trainMean` and `trainStd`), stored as
    ///     `input_mean` and `input_std` so that ``load(from:layers:)`` returns them and `backprop
    ///     evaluate` normalises with them; `nil` stores none.
    ///   - metadata: more `__metadata__` entries (they cannot replace the architecture's, nor give
    ///     `input_mean` or `input_std` besides `normalization`).
    ///   - optimizerState: an optimizer's named state (see `Optimizer.state`), stored as
    ///     `optimizer.<name>` so that a run can resume (see `TrainingCheckpoint`); models loaded
    ///     with ``load(from:layers:)`` ignore it.
    ///   - inputShape: the shape of one example (`[1, 28, 28]`), stored for a described model.
    ///     `nil`: the shape the model last ran on, or `[m]` for a model that starts with a `Lin`
    ///     of `m` inputs. An MLP ignores it.
    /// - Throws: `CheckpointError` if a weight or buffer is NaN or infinite (so that a diverged
    ///   run never replaces a good file), or the model cannot be saved (a layer no description
    ///   names, a `SavableLayer` whose kind or arguments do not make an entry, an unknown input
    ///   shape, tensors that do not fit the description), or the normalisation is not a finite
    ///   mean and a positive standard deviation, or is given twice; `DataError` naming `path` if it
    ///   cannot be written. On any error the file at `path` is left as it was.
    public static func save(
        _ model: Model, to path: String, normalization: (mean: Double, std: Double)? = nil,
        metadata: [String: String] = [:], optimizerState: [String: Tensor] = [:], inputShape: [Int]? = nil
    ) throws {
        var entries = metadata
        if let normalization {
            try checkNormalization(normalization, metadata: metadata)
            entries[meanKey] = "\(normalization.mean)"
            entries[stdKey] = "\(normalization.std)"
        }
        var tensors: [String: Tensor] = [:]
        let named: [(name: String, tensor: Tensor)]
        if let architecture = try? architecture(of: model) {
            named = model.layers.enumerated().flatMap { index, layer in
                guard let lin = layer as? Lin else { return [(name: String, tensor: Tensor)]() }
                return [("layers.\(index).w", lin.w), ("layers.\(index).b", lin.b)]
            }
            entries["format"] = format
            entries["sizes"] = architecture.sizes.map(String.init).joined(separator: ",")
            entries["activation"] = architecture.activation
            entries["loss"] = architecture.loss
            entries["layers"] = layerNames(linearLayers: architecture.sizes.count - 1).joined(separator: ",")
        } else {
            let saved = try describedModel(of: model, inputShape: inputShape)
            named = model.namedParameters + model.namedBuffers
            entries["format"] = modelFormat
            entries["layers"] = saved.description.description
            entries["input_shape"] = saved.inputShape.map(String.init).joined(separator: ",")
            entries["loss"] = saved.loss
            for key in ["sizes", "activation"] { entries[key] = nil }
        }
        for (key, tensor) in named {
            let finite = tensor.withUnsafeBufferPointer { values in values.allSatisfy(\.isFinite) }
            guard finite else {
                throw CheckpointError(
                    "\(path): not written, because \(key) holds NaN or infinite values (the run diverged)")
            }
            tensors[key] = tensor
        }
        for (name, tensor) in optimizerState {
            tensors[optimizerPrefix + name] = tensor
        }
        try Safetensors.write(tensors, metadata: entries, to: path)
    }

    /// The model built from the checkpoint at `path` (its architecture, then its weights), the
    /// shape of one example it takes, and the normalisation its inputs need.
    ///
    /// An MLP checkpoint gives the MLP; a `backprop-model` checkpoint, or a `state_dict` that
    /// ``savePyTorch(_:to:inputShape:metadata:)`` wrote (`backprop export --format pytorch`), gives
    /// the model its description builds for its input shape, with every parameter and buffer
    /// copied in, in evaluation mode (dropout off, batch norm on its running statistics: ready to predict;
    /// `train()` it to go on training). A layer of your own in the description is built by the
    /// type of its kind in `layers`, else by the one registered (`ModelDescription.register(_:)`),
    /// and its stored tensors must have the names and shapes of the layer its
    /// `init(arguments:)` builds.
    /// - Parameters:
    ///   - path: a checkpoint written by ``save(_:to:normalization:metadata:optimizerState:inputShape:)``.
    ///   - layers: `SavableLayer` types the checkpoint may hold besides the registered ones.
    /// - Throws: `DataError` naming `path` when the file cannot be read, is not a Backprop
    ///   checkpoint, its metadata is malformed (naming the entry), names a layer kind neither in
    ///   `layers` nor registered (saying to register it), or its tensors do not fit the
    ///   architecture it declares (naming the missing, extra or misshapen tensor, with the
    ///   expected and the found shape, or the first value that is not finite, or a batch norm's
    ///   negative running variance), or its normalisation is malformed (as ``normalization(path:)``
    ///   says). A PyTorch `state_dict` without Backprop's description of it (one that PyTorch
    ///   wrote) is not a Backprop checkpoint: read it with ``loadPyTorch(path:description:inputShape:loss:)``.
    public static func load(from path: String, layers: [any SavableLayer.Type] = []) throws -> SavedModel {
        try load(from: Safetensors.read(path: path), layers: layers)
    }

    /// ``load(from:layers:)`` for a checkpoint already read (`Safetensors.read(path:)`), so that a
    /// caller that also wants its normalisation or its weights for another model reads it once.
    package static func load(from file: SafetensorsFile, layers: [any SavableLayer.Type] = []) throws -> SavedModel {
        let stored = try readStoredModel(file, layers: layers)
        let normalization = try readNormalization(file)
        switch stored {
        case .mlp(let architecture):
            let model = try loadMLP(file, architecture)
            return SavedModel(model: model, inputShape: [architecture.sizes[0]], normalization: normalization)
        case .described(let description, let inputShape, let lossName):
            let model = try buildModel(file, description, inputShape: inputShape, loss: lossName)
            try copyTensors(file, into: model, describedAs: "the model \"\(description)\"")
            model.eval()
            return SavedModel(model: model, inputShape: inputShape, normalization: normalization)
        case .exported(let description, let inputShape, let lossName):
            let model = try buildModel(file, description, inputShape: inputShape, loss: lossName)
            try PyTorchStateDict.load(file, into: model, describedAs: "the model \"\(description)\"")
            model.eval()
            return SavedModel(model: model, inputShape: inputShape, normalization: normalization)
        }
    }

    /// The model built from the checkpoint at `path`: ``load(from:layers:)``'s model alone.
    /// - Throws: as ``load(from:layers:)`` does.
    public static func load(path: String, layers: [any SavableLayer.Type] = []) throws -> Model {
        try load(from: path, layers: layers).model
    }

    /// The MLP of `architecture`, with the weights of `file`.
    private static func loadMLP(_ file: SafetensorsFile, _ architecture: ModelArchitecture) throws -> Model {
        let loss: any Loss = architecture.loss == "mse" ? Mse() : CrossEntropy()
        var linears: [(w: Tensor, b: Tensor)] = []
        for index in 0..<(architecture.sizes.count - 1) {
            let nIn = architecture.sizes[index]
            let nOut = architecture.sizes[index + 1]
            let w = try finiteTensor(file, "layers.\(2 * index).w", shape: [nIn, nOut])  // (nIn, nOut)
            let b = try finiteTensor(file, "layers.\(2 * index).b", shape: [nOut])  // (nOut)
            linears.append((w.contiguous(), b.contiguous()))
        }
        try checkNoExtraTensors(
            file, expected: Set(linears.indices.flatMap { ["layers.\(2 * $0).w", "layers.\(2 * $0).b"] }),
            model: "the architecture \(file.metadata["sizes"] ?? "")")
        let model = Model(linears: linears, loss: loss)
        model.skipsInputGradient()
        return model
    }

    /// The mean and standard deviation that normalised the model's training inputs, as
    /// `backprop train` stores them in the metadata (`input_mean`, `input_std`), or `nil` for a
    /// checkpoint without them.
    ///
    /// - Throws: `DataError` naming `path` when the file cannot be read, or when it holds one of
    ///   the two values and not the other, or a value that is not a finite number (a standard
    ///   deviation must also be positive).
    public static func normalization(path: String) throws -> (mean: Double, std: Double)? {
        try readNormalization(Safetensors.read(path: path))
    }

    /// The metadata keys of the inputs' normalisation.
    static let meanKey = "input_mean"
    static let stdKey = "input_std"

    /// The normalisation in `file`'s metadata (see ``normalization(path:)``), for a file already
    /// read.
    package static func readNormalization(_ file: SafetensorsFile) throws -> (mean: Double, std: Double)? {
        let path = file.path
        let meanText = file.metadata[meanKey]
        let stdText = file.metadata[stdKey]
        if meanText == nil && stdText == nil { return nil }
        guard let meanText, let stdText else {
            let (present, missing) = meanText == nil ? (stdKey, meanKey) : (meanKey, stdKey)
            throw DataError(path: path, problem: "metadata has '\(present)' but no '\(missing)'")
        }
        guard let mean = Double(meanText), mean.isFinite else {
            throw DataError(path: path, problem: "metadata 'input_mean' is '\(meanText)', expected a finite number")
        }
        guard let std = Double(stdText), std.isFinite, std > 0 else {
            throw DataError(path: path, problem: "metadata 'input_std' is '\(stdText)', expected a positive number")
        }
        if let (byte, value) = FashionMNIST.nonFiniteNormalizedPixel(mean: mean, std: std) {
            throw DataError(
                path: path,
                problem:
                    "metadata 'input_mean' '\(meanText)' and 'input_std' '\(stdText)' normalise pixel \(byte)/255 to "
                    + "\(value) in Float; expected a normalisation that keeps the inputs finite")
        }
        return (mean, std)
    }

    /// Throws unless `normalization` is a finite mean and a positive, finite standard deviation,
    /// and `metadata` does not give one of its own.
    static func checkNormalization(_ normalization: (mean: Double, std: Double), metadata: [String: String]) throws {
        guard normalization.mean.isFinite, normalization.std.isFinite, normalization.std > 0 else {
            throw CheckpointError(
                "cannot save the normalisation mean \(normalization.mean), std \(normalization.std): expected a finite "
                    + "mean and a positive standard deviation")
        }
        if let key = [meanKey, stdKey].first(where: { metadata[$0] != nil }) {
            throw CheckpointError(
                "cannot save the normalisation twice: metadata holds '\(key)' too (give it as normalization only)")
        }
    }

    /// Copies the checkpoint's weights (and buffers) into `model`, whose architecture must be
    /// the file's.
    ///
    /// An MLP takes an MLP checkpoint of its sizes; another model a `backprop-model` checkpoint of
    /// its description, every parameter and buffer of the model's shape. A `state_dict` that
    /// ``savePyTorch(_:to:inputShape:metadata:)`` wrote must hold the model's description (an MLP's
    /// too: `lin 256, relu, lin 10`). A file without Backprop's metadata is read as the PyTorch
    /// `state_dict` of the `nn.Sequential` of the model's layers (see ``PyTorchStateDict``). The
    /// model's mode is left as it was.
    /// - Throws: `DataError` naming `path` and saying what does not fit: `holds a 784-50-1 relu mse
    ///   model, expected 784-256-128-10 relu cross_entropy`, another description, a missing, extra
    ///   or misshapen tensor, one that is not finite, or a batch norm's negative running variance
    ///   (for a `state_dict`, the keys and shapes as `PyTorchStateDict.load(_:into:describedAs:)`
    ///   names them). On error the model is unchanged.
    public static func load(path: String, into model: Model) throws {
        try load(path: path, into: model, describedAs: nil)
    }

    /// ``load(path:into:)``, naming the model as `name` (`--layers '…'`) in the errors about a
    /// PyTorch `state_dict` (`nil`: `the model '…'`).
    package static func load(path: String, into model: Model, describedAs name: String?) throws {
        try load(Safetensors.read(path: path), into: model, describedAs: name)
    }

    /// ``load(path:into:describedAs:)`` for a file already read (`Safetensors.read(path:)`); its
    /// errors name the file's path.
    package static func load(_ file: SafetensorsFile, into model: Model, describedAs name: String?) throws {
        let path = file.path
        if !isBackpropCheckpoint(file) {
            let modelName =
                name ?? (try? modelDescription(of: model)).map { "the model '\($0)'" } ?? "the model"
            try PyTorchStateDict.load(file, into: model, describedAs: modelName)
            return
        }
        // The model's own layer types read the file's entries of their kinds: no registration needed.
        let found = try readStoredModel(file, layers: savableLayerTypes(of: model))
        if case .exported(let description, _, let loss) = found {
            // Any model whose layers have PyTorch modules, an MLP too: by its description.
            let expected = try modelDescription(of: model)
            let expectedLoss = try lossName(of: model)
            guard description == expected, loss == expectedLoss else {
                let expectedText =
                    (try? architecture(of: model)).map { "a \($0) model" }
                    ?? "the model \"\(expected)\" (\(expectedLoss))"
                throw DataError(path: path, problem: "holds \(found), expected \(expectedText)")
            }
            try PyTorchStateDict.load(file, into: model, describedAs: "the model \"\(description)\"")
            return
        }
        if let expected = try? architecture(of: model) {
            guard case .mlp(let architecture) = found, architecture == expected else {
                throw DataError(path: path, problem: "holds \(found), expected \(expected)")
            }
            var pairs: [(source: Tensor, destination: Tensor)] = []
            for (index, layer) in model.layers.enumerated() {
                guard let lin = layer as? Lin else { continue }
                pairs.append((try finiteTensor(file, "layers.\(index).w", shape: lin.w.shape), lin.w))
                pairs.append((try finiteTensor(file, "layers.\(index).b", shape: lin.b.shape), lin.b))
            }
            copy(pairs)
            return
        }
        let expected = try modelDescription(of: model)
        let expectedLoss = try lossName(of: model)
        guard case .described(let description, _, let loss) = found, description == expected, loss == expectedLoss
        else {
            throw DataError(
                path: path, problem: "holds \(found), expected the model \"\(expected)\" (\(expectedLoss))")
        }
        try copyTensors(file, into: model, describedAs: "the model \"\(description)\"")
    }

    /// The tensor `name` of `file`, of shape `shape` (or any shape if `nil`), with every value
    /// finite.
    ///
    /// ``save(_:to:normalization:metadata:optimizerState:inputShape:)`` never writes a NaN or an infinity, so
    /// one in a checkpoint means the file was damaged or written by something else: it is named
    /// as such, rather than left to surface as a NaN loss blamed on the first epoch that uses it.
    /// - Throws: `DataError` naming the file, the tensor and the first element that is not finite.
    static func finiteTensor(_ file: SafetensorsFile, _ name: String, shape: [Int]? = nil) throws -> Tensor {
        let tensor = try shape.map { try file.tensor(name, shape: $0) } ?? file.tensor(name)
        if let (value, index) = firstNonFinite(tensor) {
            // A finite Double past Float's range (a float64 state_dict's 1e300) reads as an
            // infinity: the file holds a number, only not one a Float can. (Every integer dtype
            // fits in Float's range.)
            let wide = file.dtypes[name] == "F64" && value.isInfinite
            throw DataError(
                path: file.path,
                problem: wide
                    ? "tensor '\(name)' (F64) holds a value at \(index) beyond the largest Float "
                        + "(\(Float.greatestFiniteMagnitude)); expected weights that fit in Float"
                    : "tensor '\(name)' holds \(value.isNaN ? "NaN" : "an infinity") at \(index); Backprop never "
                        + "saves a value that is not finite, so the file is damaged")
        }
        return tensor
    }

    /// Throws unless every value of `tensor`, the running variance `name` (`layers.1.running_var`)
    /// of a batch norm whose `eps` is `eps`, is at least 0 with `running_var + eps > 0`.
    ///
    /// Evaluation divides by `√(running_var + eps)`: a negative variance gives NaN outputs (or
    /// large ones, for a variance just below `-eps`), which would be blamed on the weights' size.
    /// Training never makes one (it averages variances, which are at least 0), so the file was
    /// damaged or written by something else.
    /// - Throws: `DataError` naming `path`, the tensor, the first value that does not fit, its
    ///   channel, and the layer's `eps`.
    static func checkRunningVariance(_ tensor: Tensor, named name: String, eps: Float, path: String) throws {
        let values = tensor.contiguous().values
        guard let channel = values.firstIndex(where: { !($0 >= 0 && $0 + eps > 0) }) else { return }
        throw DataError(
            path: path,
            problem: "tensor '\(name)' holds the running variance \(values[channel]) for channel \(channel) "
                + "with eps \(eps); expected running_var ≥ 0 and running_var + eps > 0 (a batch norm divides by "
                + "√(running_var + eps)), so the file is damaged")
    }

    /// The architecture an MLP checkpoint declares in its metadata.
    /// - Throws: `DataError` naming the file when the metadata is missing or malformed.
    static func readArchitecture(_ file: SafetensorsFile) throws -> ModelArchitecture {
        guard file.metadata["format"] == format else {
            throw DataError(
                path: file.path,
                problem: "is not a Backprop MLP checkpoint: expected format '\(format)', found \(foundFormat(file))")
        }
        guard let sizesText = file.metadata["sizes"] else {
            throw DataError(path: file.path, problem: "metadata has no 'sizes' (expected e.g. \"784,256,128,10\")")
        }
        let sizes = sizesText.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard sizes.count >= 2, sizes.count == sizesText.split(separator: ",").count, sizes.allSatisfy({ $0 > 0 })
        else {
            throw DataError(
                path: file.path,
                problem: "metadata 'sizes' is '\(sizesText)', expected at least two positive sizes such as 784,256,10")
        }
        let activation = file.metadata["activation"] ?? "relu"
        guard activation == "relu" else {
            throw DataError(path: file.path, problem: "metadata 'activation' is '\(activation)', expected 'relu'")
        }
        let loss = try readLoss(file)
        return ModelArchitecture(sizes: sizes, activation: activation, loss: loss)
    }

    /// The model a checkpoint of either format, or a `state_dict` that
    /// ``savePyTorch(_:to:inputShape:metadata:)`` wrote, declares in its metadata, its layers of
    /// your own built by the types in `layers` or the registered ones.
    /// - Throws: `DataError` naming the file when it is not a Backprop checkpoint (a `state_dict`
    ///   without Backprop's `layers` and `input_shape`, say), or the metadata is missing or
    ///   malformed.
    static func readStoredModel(_ file: SafetensorsFile, layers: [any SavableLayer.Type] = []) throws -> StoredModel {
        if isExportedStateDict(file) {
            let stored = try readDescribedModel(file, layers: layers)
            return .exported(stored.description, inputShape: stored.inputShape, loss: stored.loss)
        }
        switch file.metadata["format"] {
        case format: return .mlp(try readArchitecture(file))
        case modelFormat:
            let stored = try readDescribedModel(file, layers: layers)
            return .described(stored.description, inputShape: stored.inputShape, loss: stored.loss)
        default:
            throw DataError(
                path: file.path,
                problem: "is not a Backprop checkpoint: expected format '\(format)' or '\(modelFormat)', "
                    + "found \(foundFormat(file))")
        }
    }

    /// `format 'pt'`, or `no format in its metadata`.
    private static func foundFormat(_ file: SafetensorsFile) -> String {
        file.metadata["format"].map { "format '\($0)'" } ?? "no format in its metadata"
    }

    /// The metadata's `loss`: `cross_entropy` (also when absent, as the first checkpoints) or `mse`.
    static func readLoss(_ file: SafetensorsFile) throws -> String {
        let loss = file.metadata["loss"] ?? "cross_entropy"
        guard loss == "cross_entropy" || loss == "mse" else {
            throw DataError(path: file.path, problem: "metadata 'loss' is '\(loss)', expected 'cross_entropy' or 'mse'")
        }
        return loss
    }

    /// The loss called `name` in a checkpoint (see `readLoss(_:)`).
    static func makeLoss(_ name: String) -> any Loss {
        name == "mse" ? Mse() : CrossEntropy()
    }

    /// Copies each source tensor into its destination, element by element.
    package static func copy(_ pairs: [(source: Tensor, destination: Tensor)]) {
        for (source, destination) in pairs {
            let source = source.contiguous()
            source.withUnsafeBufferPointer { values in
                destination.withUnsafeMutableBufferPointer { target in
                    for i in values.indices { target[i] = values[i] }
                }
            }
        }
    }

    /// The prefix of the optimizer's state tensors in a checkpoint (`optimizer.0.m`, `optimizer.step`).
    static let optimizerPrefix = "optimizer."

    /// Throws naming the first tensor `model` (`the architecture 784,256,10`) does not account
    /// for (the optimizer's state aside).
    static func checkNoExtraTensors(_ file: SafetensorsFile, expected: Set<String>, model: String) throws {
        let unexpected = { (name: String) in !expected.contains(name) && !name.hasPrefix(optimizerPrefix) }
        if let extra = file.names.first(where: unexpected) {
            throw DataError(path: file.path, problem: "holds tensor '\(extra)', which \(model) does not have")
        }
    }

    /// `["lin", "relu", "lin", …, "lin"]` for `count` linear layers.
    private static func layerNames(linearLayers count: Int) -> [String] {
        (0..<count).flatMap { $0 == count - 1 ? ["lin"] : ["lin", "relu"] }
    }
}

/// A model that cannot be saved as a checkpoint, said in one line.
public struct CheckpointError: Error, CustomStringConvertible {
    /// What is wrong.
    public let description: String

    /// Creates the error.
    public init(_ description: String) { self.description = description }
}
