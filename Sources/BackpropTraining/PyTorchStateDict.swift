import BackpropCore
import BackpropData
import BackpropNetwork

// PyTorch's names and layouts for a model's tensors: the `state_dict` of the `nn.Sequential` that
// holds the same layers in the same order, so that layer I of a model description is index I of
// the `nn.Sequential`.
//
//     Backprop (layer I)                          PyTorch (nn.Sequential index I)
//     Lin        layers.I.w  (nIn, nOut)          nn.Linear    I.weight  (nOut, nIn)   transposed
//                layers.I.b  (nOut), if any                    I.bias    (nOut), unless bias=False
//     Conv2d     layers.I.w  (cOut, cIn, kh, kw)  nn.Conv2d    I.weight  (cOut, cIn, kh, kw)
//                layers.I.b  (cOut), if any                    I.bias    (cOut), unless bias=False
//     BatchNorm  layers.I.w, layers.I.b  (c)      nn.BatchNorm1d/2d  I.weight, I.bias  (c)
//                layers.I.running_mean, _var (c)               I.running_mean, I.running_var  (c)
//                (none)                                        I.num_batches_tracked ()  I64
//
// `num_batches_tracked` is ignored on reading (with momentum 0.1 PyTorch does not use it) and
// written as 0. The other layers (pools, flatten, dropout, the activations) have no tensors.

/// The `state_dict` of the `nn.Sequential` that matches a Backprop model: its keys, layouts and
/// modules, written and read as safetensors.
///
/// Key `I.weight` is the weight of layer `I` (`layers.I.w` in Backprop's checkpoints); a `Lin`'s
/// `w` `(nIn, nOut)` is transposed to `nn.Linear`'s `weight` `(nOut, nIn)`; a convolution's weight
/// `(cOut, cIn, kh, kw)` is the same in both. See the table at the top of `PyTorchStateDict.swift`.
public enum PyTorchStateDict {
    /// One tensor of a model's `state_dict`: the PyTorch key, and the Backprop tensor it holds.
    public struct Entry {
        /// PyTorch's key: `0.weight`, `1.running_mean`.
        public let key: String
        /// Backprop's checkpoint name of the same tensor: `layers.0.w`, `layers.1.running_mean`.
        public let name: String
        /// The model's tensor (in Backprop's layout).
        public let tensor: Tensor
        /// Whether PyTorch stores the transpose of `tensor`: a `Lin`'s `w`.
        public let isTransposed: Bool
        /// The index of the layer in the model and in the `nn.Sequential`.
        public let layer: Int
        /// The shape PyTorch stores: `tensor`'s, reversed for a transposed weight.
        public var shape: [Int] { isTransposed ? tensor.shape.reversed() : tensor.shape }
    }

    /// The dtypes a weight may be stored as (each read as `Float`; see `Safetensors.read(path:)`).
    static let floatingDTypes = ["F32", "F64", "F16", "BF16"]

    /// Every tensor of `model`'s `state_dict`, in layer order (`num_batches_tracked` aside, which
    /// has no Backprop tensor).
    ///
    /// - Throws: `CheckpointError` naming the first layer that has tensors but no PyTorch module
    ///   (a layer type of its own).
    public static func entries(of model: Model) throws -> [Entry] {
        var entries: [Entry] = []
        for (index, layer) in model.layers.enumerated() {
            func entry(_ key: String, _ name: String, _ tensor: Tensor, transposed: Bool = false) -> Entry {
                Entry(
                    key: "\(index).\(key)", name: "layers.\(index).\(name)", tensor: tensor, isTransposed: transposed,
                    layer: index)
            }
            switch layer {
            case let lin as Lin:
                entries.append(entry("weight", "w", lin.w, transposed: true))
                if lin.hasBias { entries.append(entry("bias", "b", lin.b)) }
            case let conv as Conv2d:
                entries.append(entry("weight", "w", conv.w))
                if let b = conv.b { entries.append(entry("bias", "b", b)) }
            case let norm as BatchNorm:
                entries += [
                    entry("weight", "w", norm.w), entry("bias", "b", norm.b),
                    entry("running_mean", "running_mean", norm.runningMean),
                    entry("running_var", "running_var", norm.runningVar),
                ]
            default:
                guard layer.namedParameters.isEmpty && layer.buffers.isEmpty else {
                    throw CheckpointError(
                        "layer \(index), a \(type(of: layer)), has no PyTorch module to hold its tensors")
                }
            }
        }
        return entries
    }

    /// The PyTorch module of each of `model`'s layers: `nn.Conv2d(1, 16, 3, padding=1)`,
    /// `nn.BatchNorm2d(16)`, `nn.ReLU()`, `nn.MaxPool2d(2)`, `nn.Flatten()`, `nn.Dropout(0.25)`,
    /// `nn.Linear(1568, 128)`, `nn.LeakyReLU(0.2)`, `nn.GELU()` (exact, as Backprop's), `nn.SiLU()`, `nn.ReLU6()`, ….
    ///
    /// A batch norm is `nn.BatchNorm2d` when the layer before it that sets the shape is a
    /// convolution or a pool (or, first, when `inputShape` is `[c, h, w]`), else `nn.BatchNorm1d`.
    /// A batch norm's `eps` and `momentum` are written where they differ from PyTorch's defaults
    /// (`nn.BatchNorm2d(16, eps=0.001, momentum=0.01)`), as Python reads the shortest decimal that
    /// gives the same Float.
    /// - Parameters:
    ///   - model: the model.
    ///   - inputShape: the shape of one example, for a batch norm that comes before any layer
    ///     that sets the shape; `nil`: the shape the model last ran on, else vectors.
    /// - Throws: `CheckpointError` naming the first layer that has no PyTorch module.
    public static func modules(of model: Model, inputShape: [Int]? = nil) throws -> [String] {
        var spatial = (inputShape ?? model.layers.first?.inp.map { Array($0.shape.dropFirst()) })?.count == 3
        return try model.layers.enumerated().map { index, layer in
            switch layer {
            case let lin as Lin:
                spatial = false
                return "nn.Linear(\(lin.w.shape[0]), \(lin.w.shape[1])" + (lin.hasBias ? ")" : ", bias=False)")
            case let conv as Conv2d:
                spatial = true
                let (kh, kw) = conv.kernel
                var text = "nn.Conv2d(\(conv.w.shape[1]), \(conv.w.shape[0]), \(kh == kw ? "\(kh)" : "(\(kh), \(kw))")"
                if conv.stride != 1 { text += ", stride=\(conv.stride)" }
                if conv.padding != 0 { text += ", padding=\(conv.padding)" }
                if conv.b == nil { text += ", bias=False" }
                return text + ")"
            case let pool as MaxPool2d:
                spatial = true
                return "nn.MaxPool2d(\(pool.pythonArguments))"
            case let pool as AvgPool2d:
                spatial = true
                return "nn.AvgPool2d(\(pool.pythonArguments))"
            case is Flatten:
                spatial = false
                return "nn.Flatten()"
            case let norm as BatchNorm:
                var text = "nn.BatchNorm\(spatial ? "2d" : "1d")(\(norm.w.count)"
                if norm.eps != BatchNorm.defaultEps { text += ", eps=\(norm.eps)" }
                if norm.momentum != BatchNorm.defaultMomentum { text += ", momentum=\(norm.momentum)" }
                return text + ")"
            case is ReLU: return "nn.ReLU()"
            case is Tanh: return "nn.Tanh()"
            case is Sigmoid: return "nn.Sigmoid()"
            case let leaky as LeakyReLU: return "nn.LeakyReLU(\(leaky.slope))"
            case is GELU: return "nn.GELU()"
            case is SiLU: return "nn.SiLU()"
            case let hardtanh as Hardtanh:
                if (hardtanh.min, hardtanh.max) == (0, 6) { return "nn.ReLU6()" }
                if (hardtanh.min, hardtanh.max) == (-1, 1) { return "nn.Hardtanh()" }
                return "nn.Hardtanh(\(hardtanh.min), \(hardtanh.max))"
            case let dropout as Dropout: return "nn.Dropout(\(dropout.p))"
            default:
                throw CheckpointError("layer \(index), a \(type(of: layer)), has no PyTorch module")
            }
        }
    }

    /// The tensors of `model`'s `state_dict` by PyTorch key, in PyTorch's layouts, and the dtype of
    /// those not stored as `F32` (`I.num_batches_tracked`, 0, `I64`, for each batch norm `I`).
    ///
    /// A `Lin`'s weight is its `w.t()` (a view, written as its values).
    /// - Throws: `CheckpointError` as ``entries(of:)`` does.
    public static func tensors(of model: Model) throws -> (tensors: [String: Tensor], dtypes: [String: String]) {
        var tensors: [String: Tensor] = [:]
        var dtypes: [String: String] = [:]
        for entry in try entries(of: model) {
            tensors[entry.key] = entry.isTransposed ? entry.tensor.t() : entry.tensor
        }
        for (index, layer) in model.layers.enumerated() where layer is BatchNorm {
            tensors["\(index).num_batches_tracked"] = Tensor(shape: [], values: [0])
            dtypes["\(index).num_batches_tracked"] = "I64"
        }
        return (tensors, dtypes)
    }

    /// Writes `model`'s `state_dict` to `path` as safetensors, atomically: the file that
    /// `nn.Sequential(…).load_state_dict(safetensors.torch.load_file(path))` accepts, the modules
    /// being ``modules(of:inputShape:)``.
    ///
    /// - Parameters:
    ///   - model: a model of the layers PyTorch has (see ``modules(of:inputShape:)``).
    ///   - path: the destination; its folder must exist.
    ///   - metadata: the `__metadata__` (PyTorch ignores it).
    /// - Throws: `CheckpointError` for a layer without a PyTorch module, or a weight that is NaN
    ///   or infinite; `DataError` naming `path` if it cannot be written.
    public static func write(_ model: Model, to path: String, metadata: [String: String] = [:]) throws {
        _ = try modules(of: model)
        let (tensors, dtypes) = try tensors(of: model)
        for (key, tensor) in tensors {
            let finite = tensor.withUnsafeBufferPointer { values in values.allSatisfy(\.isFinite) }
            guard finite else {
                throw CheckpointError("\(path): not written, because \(key) holds NaN or infinite values")
            }
        }
        try Safetensors.write(tensors, metadata: metadata, dtypes: dtypes, to: path)
    }

    /// Copies the `state_dict` at `path` into `model`, whose layers are the `nn.Sequential`'s.
    ///
    /// - Throws: `DataError` naming `path` as `load(_:into:describedAs:)` does; `CheckpointError`
    ///   for a model layer without a PyTorch module. On error the model is unchanged.
    public static func load(path: String, into model: Model) throws {
        let name = (try? Checkpoint.modelDescription(of: model)).map { "the model '\($0)'" } ?? "the model"
        try load(Safetensors.read(path: path), into: model, describedAs: name)
    }

    /// Copies the `state_dict` in `file` into `model`, transposing `nn.Linear` weights; `model`
    /// (`describedAs`, e.g. `--layers 'lin 128, relu, lin 10'`) is named in every error.
    ///
    /// - Throws: `DataError` naming the file when keys are missing or unexpected (naming them all,
    ///   each missing one with its shape and module, each unexpected one with the layer at its
    ///   index), a tensor has another shape (`0.weight has shape [64, 784]; --layers '…' expects
    ///   [128, 784] (nn.Linear(784, 128))`), is not stored as F32, F64, F16 or BF16, or holds a
    ///   value that is not finite, or a batch norm's `running_var` holds a negative variance (see
    ///   `Checkpoint.checkRunningVariance(_:named:eps:path:)`). On error the model is unchanged.
    package static func load(_ file: SafetensorsFile, into model: Model, describedAs name: String) throws {
        let entries = try entries(of: model)
        let modules = try modules(of: model)
        try checkKeys(file, entries, modules, model: model, describedAs: name)
        var pairs: [(source: Tensor, destination: Tensor)] = []
        for entry in entries {
            let stored = file.tensors[entry.key]!
            let dtype = file.dtypes[entry.key] ?? "F32"
            guard floatingDTypes.contains(dtype) else {
                throw DataError(
                    path: file.path,
                    problem: "\(entry.key) is stored as \(dtype); expected \(floatingDTypes.joined(separator: ", "))")
            }
            guard stored.shape == entry.shape else {
                var problem =
                    "\(entry.key) has shape \(stored.shape); \(name) expects \(entry.shape) (\(modules[entry.layer]))"
                if entry.isTransposed && stored.shape == entry.tensor.shape {
                    problem += "; nn.Linear stores [out, in], this is [in, out]"
                }
                throw DataError(path: file.path, problem: problem)
            }
            try checkFinite(stored, entry.key, file.path, dtype: file.dtypes[entry.key])
            if let norm = model.layers[entry.layer] as? BatchNorm, entry.tensor === norm.runningVar {
                try Checkpoint.checkRunningVariance(stored, named: entry.key, eps: norm.eps, path: file.path)
            }
            pairs.append((entry.isTransposed ? stored.t() : stored, entry.tensor))
        }
        Checkpoint.copy(pairs)
    }

    /// Throws naming every key `entries` expects that `file` lacks, and every key of `file` that
    /// they do not account for (a batch norm's `num_batches_tracked` aside).
    private static func checkKeys(
        _ file: SafetensorsFile, _ entries: [Entry], _ modules: [String], model: Model, describedAs name: String
    ) throws {
        var known = Set(entries.map(\.key))
        for (index, layer) in model.layers.enumerated() where layer is BatchNorm {
            known.insert("\(index).num_batches_tracked")
        }
        let missing = entries.filter { file.tensors[$0.key] == nil }
        let unexpected = file.names.filter { !known.contains($0) }
        if missing.isEmpty && unexpected.isEmpty { return }
        var parts: [String] = []
        if !missing.isEmpty {
            let layers = Dictionary(grouping: missing, by: \.layer).sorted { $0.key < $1.key }
            let text = layers.map { layer, keys in
                keys.map { "\($0.key) \($0.shape)" }.joined(separator: ", ") + " (\(modules[layer]))"
            }
            parts.append("missing " + text.joined(separator: ", "))
            // A bias-free nn.Linear: its weight is there, its bias is not.
            if let bias = missing.first(where: {
                $0.key.hasSuffix(".bias") && modules[$0.layer].hasPrefix("nn.Linear")
                    && file.tensors["\($0.layer).weight"] != nil
            }) {
                parts.append("an nn.Linear(bias=False) is 'lin \(bias.shape[0]) nobias' in a model description")
            }
        }
        if !unexpected.isEmpty {
            // Grouped by why they fit no layer: the layer at their index, past the last layer, or
            // a prefix that is not an index.
            let groups = Dictionary(grouping: unexpected) { key in
                unexpectedReason(key.split(separator: ".").first.map(String.init) ?? key, modules)
            }
            let text = groups.sorted { $0.value[0].utf8.lexicographicallyPrecedes($1.value[0].utf8) }.map {
                reason, keys in keys.joined(separator: ", ") + " (" + reason + ")"
            }
            parts.append("unexpected " + text.joined(separator: ", "))
        }
        throw DataError(path: file.path, problem: "does not fit \(name): " + parts.joined(separator: "; "))
    }

    /// Why keys starting `prefix.` fit no layer: `layer 1 is nn.ReLU()`, `the model has 3 layers`,
    /// or a prefix that is not an index.
    private static func unexpectedReason(_ prefix: String, _ modules: [String]) -> String {
        guard let index = Int(prefix) else {
            return "an nn.Sequential's keys start with the layer's index; this one starts with '\(prefix).'"
        }
        guard modules.indices.contains(index) else {
            return "the model has \(modules.count) layers, 0 to \(modules.count - 1)"
        }
        return "layer \(index) is \(modules[index])"
    }

    /// Throws naming the file, the key and the first element of `tensor` that is not finite; for
    /// a tensor stored as F64 (the one dtype wider than Float's range), an infinity is a value past
    /// Float's range.
    private static func checkFinite(_ tensor: Tensor, _ key: String, _ path: String, dtype: String?) throws {
        guard let (value, index) = firstNonFinite(tensor) else { return }
        if value.isInfinite, dtype == "F64" {
            throw DataError(
                path: path,
                problem: "\(key) (F64) holds a value at \(index) beyond the largest Float "
                    + "(\(Float.greatestFiniteMagnitude)); expected weights that fit in Float")
        }
        throw DataError(path: path, problem: "\(key) holds \(value.isNaN ? "NaN" : "an infinity") at \(index)")
    }
}
