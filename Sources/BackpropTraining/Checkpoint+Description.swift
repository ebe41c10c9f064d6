import BackpropCore
import BackpropData
import BackpropNetwork

// Checkpoints of models given by a description (`backprop-model`): the description and input
// shape a model is saved with, and the model a file's metadata builds.

/// The model a checkpoint's metadata declares.
enum StoredModel: CustomStringConvertible {
    /// An MLP checkpoint (`backprop-mlp`).
    case mlp(ModelArchitecture)
    /// A described model's checkpoint (`backprop-model`): its description, the shape of one
    /// example and the loss (`cross_entropy` or `mse`).
    case described(ModelDescription, inputShape: [Int], loss: String)
    /// A PyTorch `state_dict` that `Checkpoint.savePyTorch` (`backprop export --format pytorch`)
    /// wrote: format `pt`, with the description, the shape of one example and the loss in its
    /// metadata, and PyTorch's keys and layouts for its tensors (see `PyTorchStateDict`).
    case exported(ModelDescription, inputShape: [Int], loss: String)

    /// `a 784-256-10 relu cross_entropy model`, `the model "conv 4 3, relu, flatten, lin 10"
    /// (cross_entropy, examples of shape [1, 8, 8])`, `the PyTorch state_dict of the model "…" (…)`.
    var description: String {
        switch self {
        case .mlp(let architecture): "a \(architecture) model"
        case .described(let description, let inputShape, let loss):
            "the model \"\(description)\" (\(loss), examples of shape \(inputShape))"
        case .exported(let description, let inputShape, let loss):
            "the PyTorch state_dict of the model \"\(description)\" (\(loss), examples of shape \(inputShape))"
        }
    }
}

extension Checkpoint {
    /// The shape of one example that the model saved at `path` takes: `[m]` for an MLP of `m`
    /// inputs, the stored `input_shape` (`[1, 28, 28]`) for a described model.
    ///
    /// A caller holding images `(N, c, h, w)` or rows `(N, m)` reshapes them to
    /// `[N] + inputShape(path:)` before giving them to the model of ``load(from:layers:)``.
    /// - Throws: `DataError` naming `path` as ``load(from:layers:)`` does for its metadata.
    public static func inputShape(path: String) throws -> [Int] {
        switch try readStoredModel(Safetensors.read(path: path)) {
        case .mlp(let architecture): [architecture.sizes[0]]
        case .described(_, let inputShape, _), .exported(_, let inputShape, _): inputShape
        }
    }

    /// The description that names `model`'s layers, one entry per layer (`Conv2d` gives `conv`,
    /// `Lin` gives `lin`, …, a `SavableLayer` its kind and arguments), so that building it
    /// gives a model of the same shapes.
    ///
    /// - Throws: `CheckpointError` naming the first layer that no entry describes (a layer type
    ///   of your own that is not a `SavableLayer`, a convolution with a kernel that is not
    ///   square, a batch norm with another `eps` or `momentum` than the description builds), or a
    ///   `SavableLayer` whose kind is not a valid word or clashes with a built-in layer's, or
    ///   whose arguments are not one word each.
    public static func modelDescription(of model: Model) throws -> ModelDescription {
        let entries = try model.layers.enumerated().map { index, layer in
            if let entry = entry(describing: layer) { return entry }
            guard let savable = layer as? any SavableLayer else {
                throw CheckpointError(
                    "cannot save layer \(index), a \(type(of: layer)): no model description names it "
                        + "(a layer of your own saves when it conforms to SavableLayer)")
            }
            return try customEntry(describing: savable, index: index)
        }
        return ModelDescription(entries: entries)
    }

    /// The entry `KIND ARG1 ARG2 …` of a layer of your own.
    /// - Throws: `CheckpointError` naming the layer when its kind or an argument would not parse
    ///   back to it.
    private static func customEntry(describing layer: any SavableLayer, index: Int) throws -> ModelDescription.Entry {
        let type = type(of: layer)
        if let problem = ModelDescription.kindProblem(type.kind) {
            throw CheckpointError("cannot save layer \(index), a \(type): \(problem)")
        }
        let arguments = layer.arguments
        if let bad = arguments.first(where: { $0.isEmpty || $0.contains { $0.isWhitespace || $0 == "," } }) {
            throw CheckpointError(
                "cannot save layer \(index), a \(type): its argument \"\(bad)\" is not one word (each of "
                    + "\(arguments) must be non-empty, without whitespace or commas)")
        }
        return .custom(ModelDescription.CustomLayerType(type), arguments: arguments)
    }

    /// The `SavableLayer` types among `model`'s layers.
    static func savableLayerTypes(of model: Model) -> [any SavableLayer.Type] {
        var seen: Set<ObjectIdentifier> = []
        var types: [any SavableLayer.Type] = []
        for layer in model.layers {
            guard let type = type(of: layer) as? any SavableLayer.Type else { continue }
            if seen.insert(ObjectIdentifier(type)).inserted { types.append(type) }
        }
        return types
    }

    /// The description entry of `layer`, or `nil` if there is none.
    private static func entry(describing layer: any Layer) -> ModelDescription.Entry? {
        switch layer {
        case let conv as Conv2d:
            guard conv.w.shape[2] == conv.w.shape[3] else { return nil }
            return .conv(
                out: conv.w.shape[0], kernel: conv.w.shape[2], stride: conv.stride, padding: conv.padding,
                bias: conv.b != nil)
        case let pool as MaxPool2d: return .maxPool(kernel: pool.kernel, stride: pool.stride, padding: pool.padding)
        case let pool as AvgPool2d:
            return .avgPool(
                kernel: pool.kernel, stride: pool.stride, padding: pool.padding, countIncludePad: pool.countIncludePad)
        case is Flatten: return .flatten
        case let lin as Lin: return .lin(out: lin.w.shape[1], bias: lin.hasBias)
        case is ReLU: return .relu
        case is Tanh: return .tanh
        case is Sigmoid: return .sigmoid
        case let leaky as LeakyReLU: return .leakyReLU(slope: leaky.slope)
        case is GELU: return .gelu
        case is SiLU: return .silu
        case let hardtanh as Hardtanh: return .hardtanh(min: hardtanh.min, max: hardtanh.max)
        case let dropout as Dropout: return .dropout(p: dropout.p)
        case let norm as BatchNorm: return .batchNorm(eps: norm.eps, momentum: norm.momentum)
        default: return nil
        }
    }

    /// The checkpoint name of `model`'s loss: `cross_entropy` or `mse`.
    /// - Throws: `CheckpointError` for another loss.
    static func lossName(of model: Model) throws -> String {
        switch model.loss {
        case is CrossEntropy: "cross_entropy"
        case is Mse: "mse"
        default: throw CheckpointError("cannot save a model whose loss is \(type(of: model.loss))")
        }
    }

    /// What a `backprop-model` checkpoint of `model` stores besides its tensors: the
    /// description, the shape of one example, and the loss, checked against the model's tensors.
    ///
    /// The input shape is `inputShape` if given, else `[m]` for a model that starts with a `Lin`
    /// of `m` inputs, else the shape of the examples the model last ran on.
    /// - Throws: `CheckpointError` when a layer or the loss cannot be described, the input
    ///   shape is unknown, or the description built for it gives other tensors than the model's.
    static func describedModel(
        of model: Model, inputShape: [Int]?
    ) throws -> (description: ModelDescription, inputShape: [Int], loss: String) {
        let loss = try lossName(of: model)
        let description = try modelDescription(of: model)
        guard let inputShape = inputShape ?? knownInputShape(of: model, description) else {
            throw CheckpointError(
                "cannot save the model \"\(description)\": the shape of its examples is unknown "
                    + "(give inputShape, or run the model once)")
        }
        // The description, built for that shape, must give the model's very tensors.
        var generator = RandomGenerator(seed: 0)
        let built: Model
        do {
            built = try Model(
                description: description, inputShape: inputShape, loss: makeLoss(loss), generator: &generator)
        } catch {
            throw CheckpointError(
                "cannot save the model \"\(description)\" for examples of shape \(inputShape): \(error)")
        }
        let expected = (built.namedParameters + built.namedBuffers).map { ($0.name, $0.tensor.shape) }
        let found = (model.namedParameters + model.namedBuffers).map { ($0.name, $0.tensor.shape) }
        for index in 0..<Swift.max(expected.count, found.count) {
            let wanted = index < expected.count ? "\(expected[index].0) \(expected[index].1)" : "nothing"
            let held = index < found.count ? "\(found[index].0) \(found[index].1)" : "nothing"
            guard wanted == held else {
                throw CheckpointError(
                    "cannot save the model \"\(description)\" for examples of shape \(inputShape): it holds \(held) "
                        + "where the description gives \(wanted)")
            }
        }
        return (description, inputShape, loss)
    }

    /// ` (layer I, a ScaledTanh built by ScaledTanh(arguments: ["1.5"]))` when the tensor `key`
    /// (`layers.I.NAME`) belongs to a layer of your own, whose `init(arguments:)` gave the
    /// expected shape; else nothing.
    private static func builtBy(_ key: String, in model: Model) -> String {
        let parts = key.split(separator: ".")
        guard parts.count >= 3, parts[0] == "layers", let index = Int(parts[1]), model.layers.indices.contains(index),
            let layer = model.layers[index] as? any SavableLayer
        else { return "" }
        let type = type(of: layer)
        return " (layer \(index), a \(type) built by \(type)(arguments: \(layer.arguments)))"
    }

    /// The shape of one example `model` takes, when it can be known without being told: `[m]`
    /// for a model whose first weighted layer is a `Lin` of `m` inputs with nothing spatial
    /// before it, else the shape of the examples it last ran on.
    private static func knownInputShape(of model: Model, _ description: ModelDescription) -> [Int]? {
        if description.inputShape(channels: 1, height: 1, width: 1).count == 1,
            let lin = model.layers.first(where: { $0 is Lin }) as? Lin
        {
            return [lin.w.shape[0]]
        }
        if let first = model.layers.first, let inp = first.inp, inp.rank >= 2 {
            return Array(inp.shape.dropFirst())
        }
        return nil
    }

    /// The description, input shape and loss in the metadata of a `backprop-model` checkpoint, or
    /// of a `state_dict` that ``savePyTorch(_:to:inputShape:metadata:)`` wrote (the same entries),
    /// its layers of your own built by the types in `layers` or the registered ones.
    /// - Throws: `DataError` naming the file and the metadata entry that is missing or malformed,
    ///   or the layer kind that no type in `layers` or registered has.
    static func readDescribedModel(
        _ file: SafetensorsFile, layers: [any SavableLayer.Type] = []
    ) throws -> (description: ModelDescription, inputShape: [Int], loss: String) {
        guard let text = file.metadata["layers"] else {
            throw DataError(
                path: file.path,
                problem: "metadata has no 'layers' (expected a model description such as "
                    + "\"conv 8 3, relu, flatten, lin 10\")")
        }
        let description: ModelDescription
        do {
            description = try ModelDescription(parsing: text, layers: layers)
        } catch {
            if let kind = error.unknownKind {
                throw DataError(
                    path: file.path,
                    problem: "holds a layer of kind \"\(kind)\", which is not registered: register the "
                        + "SavableLayer type whose kind is \"\(kind)\" with ModelDescription.register(_:), or pass "
                        + "it to Checkpoint.load(from:layers:) (metadata 'layers': \"\(text)\")")
            }
            throw DataError(path: file.path, problem: "metadata 'layers' is not a model description: \(error)")
        }
        guard let shapeText = file.metadata["input_shape"] else {
            throw DataError(path: file.path, problem: "metadata has no 'input_shape' (expected e.g. \"1,28,28\")")
        }
        let parts = shapeText.split(separator: ",", omittingEmptySubsequences: false)
        let inputShape = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, inputShape.count == parts.count, inputShape.allSatisfy({ $0 > 0 }) else {
            throw DataError(
                path: file.path,
                problem: "metadata 'input_shape' is '\(shapeText)', expected positive sizes such as 1,28,28")
        }
        return (description, inputShape, try readLoss(file))
    }

    /// The model `description` builds for `inputShape`, its weights still those of the build.
    /// - Throws: `DataError` naming the file when the description does not fit the shape, or
    ///   gives the model far more parameters than the file holds values (`input_shape` sets the
    ///   sizes after a flatten: a wrong one would build a model of any size before its tensors are
    ///   found not to fit).
    static func buildModel(
        _ file: SafetensorsFile, _ description: ModelDescription, inputShape: [Int], loss: String
    ) throws -> Model {
        let shapeText = inputShape.map(String.init).joined(separator: ",")
        var generator = RandomGenerator(seed: 0)
        do {
            // One far larger than the file is not built (a wrong input shape).
            let parameters = try description.parameterCount(inputShape: inputShape)
            if let held = valuesFarTooFew(for: parameters, in: file) {
                throw DataError(
                    path: file.path,
                    problem: "metadata 'layers' with 'input_shape' \(shapeText) gives a model of \(parameters) "
                        + "parameters, but the file holds \(held) values")
            }
            return try Model(
                description: description, inputShape: inputShape, loss: makeLoss(loss), generator: &generator)
        } catch let error as ModelDescriptionError {
            throw DataError(
                path: file.path, problem: "metadata 'layers' does not fit 'input_shape' \(shapeText): \(error)")
        }
    }

    /// How many values `file` holds, when they are far too few for a model of `parameters`
    /// parameters (more than twice as many, and a million more), else `nil`.
    ///
    /// A model near the file's size is built, and its tensors compared one by one, naming the first
    /// that does not fit; one far larger cannot fit the file, and building it first would cost its
    /// whole size (a wrong description or input shape can ask for any size).
    static func valuesFarTooFew(for parameters: Int, in file: SafetensorsFile) -> Int? {
        let held = file.tensors.values.reduce(0) { $0 + $1.count }
        return parameters <= 2 * held + (1 << 20) ? nil : held
    }

    /// Copies every parameter and buffer of `file` into `model` (`layers.I.NAME`, as
    /// `Model.namedParameters` and `Model.namedBuffers` name them).
    /// - Throws: `DataError` naming the file and the first tensor that is missing, misshapen,
    ///   not finite, or that `model` (`the model "…"`) does not have, or a batch norm's running
    ///   variance that is negative (see ``checkRunningVariance(_:named:eps:path:)``). On error the
    ///   model is unchanged.
    static func copyTensors(_ file: SafetensorsFile, into model: Model, describedAs name: String) throws {
        let named = model.namedParameters + model.namedBuffers
        var pairs: [(source: Tensor, destination: Tensor)] = []
        for (key, tensor) in named {
            do {
                pairs.append((try finiteTensor(file, key, shape: tensor.shape), tensor))
            } catch let error as DataError {
                throw DataError(path: error.path, problem: error.problem + builtBy(key, in: model))
            }
        }
        try checkNoExtraTensors(file, expected: Set(named.map(\.name)), model: name)
        for (index, layer) in model.layers.enumerated() {
            guard let norm = layer as? BatchNorm else { continue }
            let key = "layers.\(index).running_var"
            guard let source = pairs.first(where: { $0.destination === norm.runningVar })?.source else { continue }
            try checkRunningVariance(source, named: key, eps: norm.eps, path: file.path)
        }
        copy(pairs)
    }
}
