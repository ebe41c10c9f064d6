import BackpropCore

// A model description: a network as one line of text, the form `--layers` takes on the command
// line and checkpoints store.
//
//     conv 32 3 pad 1, relu, maxpool 2, flatten, lin 128, relu, dropout 0.25, lin 10
//
// Entries are separated by commas; each is a layer name, then its numbers, then its options as
// `key value` pairs (any order). Names and options are case-insensitive.
//
//     conv OUT K [stride S] [pad P] [nobias]   Conv2d, K×K kernels      (stride 1, pad 0, bias)
//     maxpool K [stride S] [pad P]             MaxPool2d, P <= K/2      (stride K, pad 0)
//     avgpool K [stride S] [pad P] [excludepad]
//                                              AvgPool2d, P <= K/2      (stride K, pad 0, the
//                                              padding counted in each mean unless excludepad)
//     flatten                                  Flatten
//     lin OUT [nobias]                         Lin                      (bias)
//     relu | tanh | sigmoid | gelu | silu      the activations
//     leakyrelu [SLOPE]                        LeakyReLU                (slope 0.01)
//     hardtanh [MIN MAX] | relu6               Hardtanh, MIN < MAX      (-1 and 1; relu6: 0 and 6)
//     dropout P                                Dropout, 0 <= P < 1
//     batchnorm [eps E] [momentum M]           BatchNorm                (eps 1e-5, momentum 0.1)
//     KIND [ARG …]                             a layer of your own: a SavableLayer whose kind is
//                                              KIND, built by init(arguments: [ARG, …])
//
// Input sizes (a conv's cIn, a lin's nIn, batchnorm's features) come from the input shape.
// Shapes below are per example (without the batch dimension n): [c, h, w] for images, [m] for
// vectors.

/// A network as a list of layers, with a text form (`conv 32 3 pad 1, relu, maxpool 2, flatten,
/// lin 10`) that parses, prints and builds the layers.
///
/// The syntax is in the comment at the top of `ModelDescription.swift` (and in the README).
/// Parameters of the model it builds are named `layers.I.NAME`, `I` the entry's position from 0.
public struct ModelDescription: Equatable, Sendable, CustomStringConvertible {
    /// One layer of a description, with its sizes and options (input sizes are inferred).
    public enum Entry: Equatable, Sendable {
        /// `conv OUT K [stride S] [pad P] [nobias]`: a ``Conv2d`` with `out` K×K kernels.
        case conv(out: Int, kernel: Int, stride: Int, padding: Int, bias: Bool)
        /// `maxpool K [stride S] [pad P]`: a ``MaxPool2d``.
        case maxPool(kernel: Int, stride: Int, padding: Int = 0)
        /// `avgpool K [stride S] [pad P] [excludepad]`: an ``AvgPool2d``, the padding counted as
        /// zeros in each mean, or left out with `excludepad` (PyTorch's `count_include_pad=False`).
        case avgPool(kernel: Int, stride: Int, padding: Int = 0, countIncludePad: Bool = true)
        /// `flatten`: a ``Flatten``.
        case flatten
        /// `lin OUT [nobias]`: a ``Lin`` with `out` outputs, with a bias unless `nobias`
        /// (`Lin(w)`, PyTorch's `nn.Linear(..., bias=False)`).
        case lin(out: Int, bias: Bool = true)
        /// `relu`: a ``ReLU``.
        case relu
        /// `tanh`: a ``Tanh``.
        case tanh
        /// `sigmoid`: a ``Sigmoid``.
        case sigmoid
        /// `leakyrelu [SLOPE]`: a ``LeakyReLU``.
        case leakyReLU(slope: Float)
        /// `gelu`: a ``GELU``.
        case gelu
        /// `silu`: a ``SiLU``.
        case silu
        /// `hardtanh [MIN MAX]`: a ``Hardtanh``, `inp` clamped to `[min, max]` (-1 and 1 unless
        /// given); `relu6` is `hardtanh 0 6`, and prints so.
        case hardtanh(min: Float, max: Float)
        /// `dropout P`: a ``Dropout`` with drop probability `p`.
        case dropout(p: Float)
        /// `batchnorm [eps E] [momentum M]`: a ``BatchNorm`` over the features or channels of its
        /// input, `x̂ = (x - mean) / √(var + eps)`, its running statistics moved by `momentum`
        /// (PyTorch's defaults: eps 1e-5, momentum 0.1; `.batchNorm()` has them).
        case batchNorm(eps: Float = BatchNorm.defaultEps, momentum: Float = BatchNorm.defaultMomentum)
        /// `KIND ARG1 ARG2 …`: a layer of your own, built by `type.init(arguments: arguments)`
        /// (see ``SavableLayer``).
        case custom(CustomLayerType, arguments: [String])
    }

    /// The layers, first to last.
    public var entries: [Entry]

    /// A description of the given layers.
    public init(entries: [Entry]) {
        self.entries = entries
    }

    /// The preset that `text` names (in any case, with spaces around it), or `nil` when it is not
    /// a preset's name.
    public static func presetName(_ text: String) -> String? {
        let trimmed = text.trimmingWhitespace().lowercased()
        return presets.first { $0.name == trimmed }?.name
    }

    /// Parses the text form, or a preset name (`seed`, `mlp`, `cnn`; see ``presets``).
    ///
    /// An entry whose first word is not a built-in layer name is a layer of your own: the
    /// ``SavableLayer`` in `layers` whose kind it is, else the one registered for it (see
    /// ``register(_:)``); the words after it are its arguments, as written.
    /// - Parameters:
    ///   - text: the description, such as `conv 8 3, relu, flatten, lin 10`.
    ///   - layers: layer types of your own that this description may name, besides the registered
    ///     ones (they win over a registered type of the same kind).
    /// - Throws: ``ModelDescriptionError`` naming the entry (from 1), its text, what was expected,
    ///   the character (from 1, in `text`) and the token found there, e.g.
    ///   `--layers: entry 3 "maxpool x": expected a kernel size (a positive integer) at character 27, found "x"`;
    ///   for a word that is neither a layer name nor a known kind, its ``ModelDescriptionError/unknownKind``.
    /// - Precondition: each type in `layers` has a valid kind (as ``register(_:)`` requires), and
    ///   no two share one.
    public init(parsing text: String, layers: [any SavableLayer.Type] = []) throws(ModelDescriptionError) {
        var given: [String: any SavableLayer.Type] = [:]
        for type in layers {
            if let problem = Self.kindProblem(type.kind) {
                preconditionFailure("ModelDescription(parsing:layers:): \(type): \(problem)")
            }
            if let other = given[type.kind], ObjectIdentifier(other) != ObjectIdentifier(type) {
                preconditionFailure(
                    "ModelDescription(parsing:layers:): \(other) and \(type) both have the kind \"\(type.kind)\"")
            }
            given[type.kind] = type
        }
        let trimmed = text.trimmingWhitespace().lowercased()
        if let preset = Self.presets.first(where: { $0.name == trimmed }) {
            self = try ModelDescriptionParser(text: preset.text, layers: given).parse()
        } else {
            self = try ModelDescriptionParser(text: text, layers: given).parse()
        }
    }

    /// The named descriptions `--layers` accepts: `seed` (the seed's 784-50-1 network, for MSE),
    /// `mlp` (the default multilayer perceptron, `Model.mlp`'s 784-256-128-10), and `cnn` (the
    /// convnet recipe for 28×28 images, trained with weight decay 0.3: Docs/ConvnetRecipe.md; it
    /// pools before batch norm and ReLU, which then work on maps a quarter the size).
    public static let presets: [(name: String, text: String)] = [
        ("seed", "lin 50, relu, lin 1"),
        ("mlp", "lin 256, relu, lin 128, relu, lin 10"),
        (
            "cnn",
            "conv 16 3 pad 1, maxpool 2, batchnorm, relu, conv 32 3 pad 1, maxpool 2, batchnorm, relu, flatten, "
                + "dropout 0.25, lin 256, relu, dropout 0.25, lin 10"
        ),
    ]

    /// The canonical text: entries joined by `", "`, options only where they differ from the
    /// defaults (`conv 32 3 pad 1`, `maxpool 2`, `leakyrelu`). Parsing it gives the same description.
    public var description: String {
        entries.map(\.description).joined(separator: ", ")
    }

    /// The per-example input shape this description takes for images of c×h×w: `[c, h, w]` when
    /// the first layer that cares about shapes is spatial (conv, maxpool, avgpool, flatten),
    /// `[c*h*w]` when it is a `lin` or there is none.
    public func inputShape(channels: Int, height: Int, width: Int) -> [Int] {
        for entry in entries {
            switch entry {
            case .conv, .maxPool, .avgPool, .flatten: return [channels, height, width]
            case .lin: return [channels * height * width]
            default: continue
            }
        }
        return [channels * height * width]
    }

    /// Each layer's per-example output shape, for a per-example input shape (`[1, 28, 28]` for a
    /// Fashion-MNIST image given to a convnet, `[784]` to an MLP).
    ///
    /// `conv` and the pools give `[c, oh, ow]` with `oh = (h + 2 pad - k) / stride + 1`; `flatten`
    /// gives `[c*h*w]`; `lin OUT` gives `[OUT]`; the others keep their input's shape.
    /// - Throws: ``ModelDescriptionError`` when the input shape is empty or has a size below 1, or
    ///   naming the layer (entry number and text) whose input does not fit: a `lin` after images
    ///   without `flatten`, a `conv` or pool on vectors, a kernel larger than the padded image,
    ///   a `batchnorm` on neither `[c]` nor `[c, h, w]`; or naming an entry built in code with a
    ///   number the text form would not accept (`.lin(out: 0)`, `.dropout(p: 1)`,
    ///   `.batchNorm(eps: -1)`), so that ``makeLayers(inputShape:generator:)`` never builds a
    ///   layer from it.
    public func shapes(input: [Int]) throws(ModelDescriptionError) -> [[Int]] {
        guard !input.isEmpty, input.allSatisfy({ $0 > 0 }) else {
            throw ModelDescriptionError(
                description: "--layers: the input shape per example \(input) must have at least one dimension, "
                    + "all of size at least 1")
        }
        var shapes: [[Int]] = []
        var shape = input
        for (i, entry) in entries.enumerated() {
            shape = try entry.outputShape(input: shape, entryNumber: i + 1)
            shapes.append(shape)
        }
        return shapes
    }

    /// The layers, initialised, drawn from `generator`.
    ///
    /// - `lin OUT` after `[m]`: `Lin(w, b)`, `w = randn(m, OUT) · sqrt(2 / m)` when a nonlinearity
    ///   follows before the next `lin` or `conv` (dropout, batchnorm, flatten and pools are skipped
    ///   over), else `randn(m, OUT) / sqrt(m)` (the last layer), `b = 0` (`Lin(w)` with `nobias`): exactly
    ///   `Model.kaimingInitialization`, so `mlp` gives `Model.mlp`'s weights for the same seed;
    /// - `conv OUT K` after `[c, h, w]`: `Conv2d(w, b)`, `w = randn(OUT, c, K, K)` scaled the same
    ///   way with fan-in `c·K·K`, `b = 0` (or none with `nobias`);
    /// - `batchnorm`: `BatchNorm(features: c, eps: E, momentum: M)`, `w = 1`, `b = 0`, running mean 0
    ///   and variance 1;
    /// - `dropout P`: `Dropout(p: P, seed: s)`, each `s` a `generator.next()` drawn AFTER all the
    ///   weights, in layer order, so that adding or removing dropout leaves the weights unchanged;
    /// - a layer of your own: `type.init(arguments:)`, which draws nothing from `generator` (a
    ///   nonlinearity of your own does not count as one for the Kaiming gain above).
    ///
    /// Weights are drawn in layer order, each row-major; nothing else is drawn before the dropout
    /// seeds. Every layer is in training mode.
    /// - Throws: ``ModelDescriptionError`` as ``shapes(input:)`` does.
    public func makeLayers(
        inputShape: [Int], generator: inout RandomGenerator
    ) throws(ModelDescriptionError) -> [any Layer] {
        let outputs = try shapes(input: inputShape)
        let inputs = [inputShape] + outputs.dropLast()
        // 1. The weights, in layer order.
        var weights: [Int: Tensor] = [:]
        for (i, entry) in entries.enumerated() {
            switch entry {
            case .conv(let out, let kernel, _, _, _):
                let cIn = inputs[i][0]
                let draw = Tensor.randn([out, cIn, kernel, kernel], generator: &generator)  // (cOut, cIn, kh, kw)
                weights[i] = Self.kaimingScaled(draw, fanIn: cIn * kernel * kernel, rectified: isRectified(after: i))
            case .lin(let out, _):
                let nIn = inputs[i][0]
                let draw = Tensor.randn([nIn, out], generator: &generator)  // (nIn, nOut)
                weights[i] = Self.kaimingScaled(draw, fanIn: nIn, rectified: isRectified(after: i))
            default:
                continue
            }
        }
        // 2. The layers, with the dropout seeds drawn after every weight.
        var layers: [any Layer] = []
        for (i, entry) in entries.enumerated() {
            switch entry {
            case .conv(let out, _, let stride, let padding, let bias):
                layers.append(Conv2d(weights[i]!, bias ? Tensor.zeros([out]) : nil, stride: stride, padding: padding))
            case .maxPool(let kernel, let stride, let padding):
                layers.append(MaxPool2d(kernel: kernel, stride: stride, padding: padding))
            case .avgPool(let kernel, let stride, let padding, let countIncludePad):
                layers.append(
                    AvgPool2d(kernel: kernel, stride: stride, padding: padding, countIncludePad: countIncludePad))
            case .flatten: layers.append(Flatten())
            case .lin(let out, let bias): layers.append(bias ? Lin(weights[i]!, Tensor.zeros([out])) : Lin(weights[i]!))
            case .relu: layers.append(ReLU())
            case .tanh: layers.append(Tanh())
            case .sigmoid: layers.append(Sigmoid())
            case .leakyReLU(let slope): layers.append(LeakyReLU(slope: slope))
            case .gelu: layers.append(GELU())
            case .silu: layers.append(SiLU())
            case .hardtanh(let min, let max): layers.append(Hardtanh(min: min, max: max))
            case .dropout(let p): layers.append(Dropout(p: p, seed: generator.next()))
            case .batchNorm(let eps, let momentum):
                layers.append(BatchNorm(features: inputs[i][0], eps: eps, momentum: momentum))
            case .custom: layers.append(try entry.makeCustomLayer(entryNumber: i + 1))
            }
        }
        return layers
    }

    /// The index of the first batch norm that sees one value per channel in each example (its
    /// input is `[c]`, or `[c, 1, 1]`), or `nil`: in training such a layer needs at least two
    /// examples in a batch (``BatchNorm``'s precondition).
    /// - Throws: ``ModelDescriptionError`` as ``shapes(input:)`` does.
    package func firstBatchNormOfOneValuePerExample(input: [Int]) throws(ModelDescriptionError) -> Int? {
        let inputs = [input] + (try shapes(input: input)).dropLast()
        return entries.indices.first { index in
            guard case .batchNorm = entries[index] else { return false }
            return inputs[index].dropFirst().allSatisfy { $0 == 1 }
        }
    }

    /// How many numbers the layers learn for the given per-example input shape (weights, biases,
    /// batch norm's `w` and `b`; not its running statistics).
    /// - Throws: ``ModelDescriptionError`` as ``shapes(input:)`` does.
    public func parameterCount(inputShape: [Int]) throws(ModelDescriptionError) -> Int {
        let outputs = try shapes(input: inputShape)
        let inputs = [inputShape] + outputs.dropLast()
        var count: Int? = 0
        for (entry, input) in zip(entries, inputs) {
            switch entry {
            case .conv(let out, let kernel, _, _, let bias):
                count = checkedSum(count, checkedSum(checkedProduct([out, input[0], kernel, kernel]), bias ? out : 0))
            case .lin(let out, let bias):
                count = checkedSum(count, checkedSum(checkedProduct([input[0], out]), bias ? out : 0))
            case .batchNorm: count = checkedSum(count, checkedProduct([2, input[0]]))
            case .custom:
                let parameters = try entry.makeCustomLayer(entryNumber: 0).parameters
                count = parameters.reduce(count) { checkedSum($0, $1.count) }
            default: break
            }
        }
        guard let count else {
            throw ModelDescriptionError(
                description: "--layers: '\(self)' has more parameters than can be counted for inputs \(inputShape)")
        }
        return count
    }

    /// Whether the weighted layer at `index` feeds a nonlinearity (relu, leakyrelu, gelu, silu,
    /// hardtanh, tanh, sigmoid) before the next weighted layer: then its weights get Kaiming's gain `sqrt(2)`.
    func isRectified(after index: Int) -> Bool {
        for entry in entries[(index + 1)...] {
            switch entry {
            case .conv, .lin: return false
            case .relu, .leakyReLU, .gelu, .silu, .hardtanh, .tanh, .sigmoid: return true
            case .maxPool, .avgPool, .flatten, .dropout, .batchNorm, .custom: continue
            }
        }
        return false
    }

    /// `draw · sqrt(2 / fanIn)` when `rectified`, else `draw / sqrt(fanIn)`: the very operations
    /// of `Model.kaimingInitialization`, so that the results agree bit for bit.
    static func kaimingScaled(_ draw: Tensor, fanIn: Int, rectified: Bool) -> Tensor {
        let fanIn = Double(fanIn)
        return rectified ? draw * Float((2 / fanIn).squareRoot()) : draw / Float(fanIn.squareRoot())
    }
}

/// A model description that cannot be parsed, or that does not fit its input shape.
///
/// The message names the entry (its number from 1 and its text), what was expected, and the
/// character and token where parsing stopped, e.g.
/// `--layers: entry 3 "maxpool x": expected a kernel size (a positive integer) at character 27, found "x"`.
public struct ModelDescriptionError: Error, CustomStringConvertible, Equatable {
    /// The message, ready for the user.
    public let description: String
    /// The first word of an entry that is neither a built-in layer name nor the kind of a known
    /// ``SavableLayer`` (lowercased), when that is what stopped parsing; else `nil`.
    public let unknownKind: String?

    /// An error with the given message.
    public init(description: String, unknownKind: String? = nil) {
        self.description = description
        self.unknownKind = unknownKind
    }
}

// MARK: - Text form

extension ModelDescription.Entry: CustomStringConvertible {
    /// The entry's canonical text (`conv 32 3 pad 1`, `maxpool 2`, `dropout 0.25`).
    public var description: String {
        switch self {
        case .conv(let out, let kernel, let stride, let padding, let bias):
            var text = "conv \(out) \(kernel)"
            if stride != 1 { text += " stride \(stride)" }
            if padding != 0 { text += " pad \(padding)" }
            if !bias { text += " nobias" }
            return text
        case .maxPool(let kernel, let stride, let padding):
            return "maxpool " + Self.windowText(kernel: kernel, stride: stride, padding: padding)
        case .avgPool(let kernel, let stride, let padding, let countIncludePad):
            return "avgpool " + Self.windowText(kernel: kernel, stride: stride, padding: padding)
                + (countIncludePad ? "" : " excludepad")
        case .flatten: return "flatten"
        case .lin(let out, let bias): return "lin \(out)" + (bias ? "" : " nobias")
        case .relu: return "relu"
        case .tanh: return "tanh"
        case .sigmoid: return "sigmoid"
        case .leakyReLU(let slope):
            return slope == ModelDescriptionParser.defaultSlope ? "leakyrelu" : "leakyrelu \(slope)"
        case .gelu: return "gelu"
        case .silu: return "silu"
        case .hardtanh(let min, let max):
            if (min, max) == (0, 6) { return "relu6" }
            return (min, max) == (-1, 1) ? "hardtanh" : "hardtanh \(min) \(max)"
        case .dropout(let p): return "dropout \(p)"
        case .batchNorm(let eps, let momentum):
            var text = "batchnorm"
            if eps != BatchNorm.defaultEps { text += " eps \(eps)" }
            if momentum != BatchNorm.defaultMomentum { text += " momentum \(momentum)" }
            return text
        case .custom(let type, let arguments): return ([type.type.kind] + arguments).joined(separator: " ")
        }
    }

    /// A pool's numbers and options: `K [stride S] [pad P]`, the defaults left out.
    private static func windowText(kernel: Int, stride: Int, padding: Int) -> String {
        "\(kernel)" + (stride == kernel ? "" : " stride \(stride)") + (padding == 0 ? "" : " pad \(padding)")
    }

    /// What is out of the range the text form accepts, for an entry built in code (the parser
    /// builds none), or `nil`: the layers' initialisers would stop on it.
    var outOfRange: String? {
        func atLeast(_ minimum: Int, _ values: [(String, Int)]) -> String? {
            values.first { $0.1 < minimum }.map { "has \($0.0) \($0.1); expected an integer >= \(minimum)" }
        }
        switch self {
        case .conv(let out, let kernel, let stride, let padding, _):
            return atLeast(1, [("out", out), ("kernel", kernel), ("stride", stride)])
                ?? atLeast(0, [("padding", padding)])
        case .maxPool(let kernel, let stride, let padding), .avgPool(let kernel, let stride, let padding, _):
            return atLeast(1, [("kernel", kernel), ("stride", stride)]) ?? atLeast(0, [("padding", padding)])
                ?? (padding <= kernel / 2 ? nil : "has padding \(padding); expected at most half its kernel \(kernel)")
        case .lin(let out, _):
            return atLeast(1, [("out", out)])
        case .leakyReLU(let slope):
            return slope.isFinite ? nil : "has slope \(slope); expected a finite number"
        case .hardtanh(let min, let max):
            return min.isFinite && max.isFinite && min < max
                ? nil : "has bounds \(min) and \(max); expected finite numbers with min < max"
        case .dropout(let p):
            return p >= 0 && p < 1 ? nil : "has p \(p); expected 0 <= p < 1"
        case .batchNorm(let eps, let momentum):
            if !(eps >= 0 && eps.isFinite) { return "has eps \(eps); expected a finite number >= 0" }
            return momentum >= 0 && momentum <= 1 ? nil : "has momentum \(momentum); expected 0 <= momentum <= 1"
        case .flatten, .relu, .tanh, .sigmoid, .gelu, .silu, .custom:
            return nil
        }
    }

    /// The layer of your own that this `.custom` entry describes, built by its type's
    /// `init(arguments:)`.
    /// - Throws: naming the entry (`entryNumber` from 1; 0 leaves the number out) and the
    ///   initialiser's error.
    package func makeCustomLayer(entryNumber: Int) throws(ModelDescriptionError) -> any SavableLayer {
        guard case .custom(let type, let arguments) = self else {
            preconditionFailure("makeCustomLayer: \(self) is a built-in layer")
        }
        do {
            return try type.type.init(arguments: arguments)
        } catch {
            let entry = entryNumber > 0 ? "entry \(entryNumber) " : ""
            throw ModelDescriptionError(
                description: "--layers: \(entry)\"\(self)\": \(type)(arguments: \(arguments)) failed: \(error)")
        }
    }

    /// The per-example output shape for a per-example input shape.
    /// - Throws: naming the entry when the input does not fit.
    func outputShape(input: [Int], entryNumber: Int) throws(ModelDescriptionError) -> [Int] {
        func failure(_ problem: String) -> ModelDescriptionError {
            ModelDescriptionError(description: "--layers: entry \(entryNumber) \"\(self)\" \(problem)")
        }
        if let problem = outOfRange { throw failure(problem) }
        switch self {
        case .conv(let out, let kernel, let stride, let padding, _):
            guard input.count == 3 else {
                throw failure(
                    "expects images [c, h, w] per example, but its input is \(input) "
                        + "(a model starting with conv takes inputs [n, c, h, w])")
            }
            guard let h = checkedSum(input[1], checkedProduct([2, padding])),
                let w = checkedSum(input[2], checkedProduct([2, padding]))
            else { throw failure("pads its input \(input) by \(padding) to a size that cannot be counted") }
            guard kernel <= h && kernel <= w else {
                throw failure(
                    "has a \(kernel)×\(kernel) kernel, larger than its input \(input) padded to \(h)×\(w)")
            }
            return [out, (h - kernel) / stride + 1, (w - kernel) / stride + 1]
        case .maxPool(let kernel, let stride, let padding), .avgPool(let kernel, let stride, let padding, _):
            guard input.count == 3 else {
                throw failure("expects images [c, h, w] per example, but its input is \(input)")
            }
            guard let h = checkedSum(input[1], 2 * padding), let w = checkedSum(input[2], 2 * padding) else {
                throw failure("pads its input \(input) by \(padding) to a size that cannot be counted")
            }
            // The padding lets any kernel fit; its windows must still be countable (an average
            // divides by kernel², the recorded path unfolds kernel² elements per window).
            guard checkedProduct([input[0], kernel, kernel]) != nil else {
                throw failure("has a \(kernel)×\(kernel) window, more elements than can be counted")
            }
            guard kernel <= h && kernel <= w else {
                let padded = padding == 0 ? "" : " padded to \(h)×\(w)"
                throw failure(
                    "has a \(kernel)×\(kernel) window, larger than its input \(input) of \(input[1])×\(input[2])\(padded)"
                )
            }
            return [input[0], (h - kernel) / stride + 1, (w - kernel) / stride + 1]
        case .flatten:
            guard let size = checkedProduct(input) else {
                throw failure("flattens its input \(input) to more values than can be counted")
            }
            return [size]
        case .lin(let out, _):
            guard input.count == 1 else {
                throw failure("expects one vector per example, but its input is \(input) (put flatten before it)")
            }
            return [out]
        case .batchNorm:
            guard input.count == 1 || input.count == 3 else {
                throw failure("expects [c] or [c, h, w] per example, but its input is \(input)")
            }
            return input
        case .relu, .tanh, .sigmoid, .leakyReLU, .gelu, .silu, .hardtanh, .dropout:
            return input
        case .custom(let type, _):
            let layer = try makeCustomLayer(entryNumber: entryNumber)
            do {
                return try layer.outputShape(input: input)
            } catch {
                throw failure("does not take its input \(input): \(type).outputShape(input:) failed: \(error)")
            }
        }
    }
}

/// Parses the text form of a ``ModelDescription``, keeping every token's position for errors.
struct ModelDescriptionParser {
    /// LeakyReLU's slope when none is given (PyTorch's `negative_slope`).
    static let defaultSlope: Float = 0.01
    /// The layer names, in the order error messages list them.
    static let names = [
        "conv", "maxpool", "avgpool", "flatten", "lin", "relu", "tanh", "sigmoid", "leakyrelu", "gelu", "silu",
        "hardtanh", "relu6", "dropout", "batchnorm",
    ]

    /// A word of the text and the position of its first character (from 1).
    struct Token {
        let text: String
        let position: Int
    }

    /// One comma-separated entry: its words, its trimmed text, and where it ends.
    struct Segment {
        let tokens: [Token]
        let text: String
        /// The position just after its last character (where "the end of the entry" is).
        let end: Int
    }

    let text: String
    /// Layer types of your own that the text may name besides the registered ones, by kind.
    var layers: [String: any SavableLayer.Type] = [:]

    /// The entries of `text`.
    func parse() throws(ModelDescriptionError) -> ModelDescription {
        let segments = split()
        if segments.count == 1 && segments[0].tokens.isEmpty {
            throw ModelDescriptionError(
                description: "--layers: the description is empty: expected layers (e.g. \"lin 50, relu, lin 1\") "
                    + "or a preset (\(ModelDescription.presets.map(\.name).joined(separator: ", ")))")
        }
        var entries: [ModelDescription.Entry] = []
        for (i, segment) in segments.enumerated() {
            var reader = EntryReader(segment: segment, number: i + 1, layers: layers)
            entries.append(try reader.entry())
        }
        return ModelDescription(entries: entries)
    }

    /// The entries of the text, split at commas, each split into words at whitespace.
    func split() -> [Segment] {
        var segments: [Segment] = []
        var tokens: [Token] = []
        var word = ""
        var wordStart = 0
        var segmentText = ""
        var position = 0
        func endWord() {
            if !word.isEmpty { tokens.append(Token(text: word, position: wordStart)) }
            word = ""
        }
        func endSegment(at end: Int) {
            endWord()
            segments.append(Segment(tokens: tokens, text: segmentText.trimmingWhitespace(), end: end))
            tokens = []
            segmentText = ""
        }
        for character in text {
            position += 1
            if character == "," {
                endSegment(at: position)
                continue
            }
            segmentText.append(character)
            if character.isWhitespace {
                endWord()
            } else {
                if word.isEmpty { wordStart = position }
                word.append(character)
            }
        }
        endSegment(at: position + 1)
        return segments
    }

    /// Reads one entry's words in order.
    struct EntryReader {
        let segment: Segment
        let number: Int
        /// Layer types of your own given besides the registered ones, by kind.
        let layers: [String: any SavableLayer.Type]
        var next = 0

        init(segment: Segment, number: Int, layers: [String: any SavableLayer.Type] = [:]) {
            self.segment = segment
            self.number = number
            self.layers = layers
        }

        /// The error at the next word: what was expected there, and what was found.
        func failure(expected: String, found: String? = nil, unknownKind: String? = nil) -> ModelDescriptionError {
            let (position, foundText): (Int, String)
            if next < segment.tokens.count {
                position = segment.tokens[next].position
                foundText = found ?? "\"\(segment.tokens[next].text)\""
            } else {
                position = segment.end
                foundText = segment.tokens.isEmpty ? "nothing" : "the end of the entry"
            }
            return ModelDescriptionError(
                description: "--layers: entry \(number) \"\(segment.text)\": expected \(expected) "
                    + "at character \(position), found \(foundText)",
                unknownKind: unknownKind)
        }

        /// The next word, lowercased, if any.
        var peek: String? { next < segment.tokens.count ? segment.tokens[next].text.lowercased() : nil }

        /// The next word as an integer from `minimum` to `maximum`, described as `what` in errors.
        mutating func integer(
            _ what: String, minimum: Int, maximum: Int = .max
        ) throws(ModelDescriptionError) -> Int {
            var condition = minimum == 1 ? "a positive integer" : "an integer >= \(minimum)"
            if maximum < .max { condition = "an integer from \(minimum) to \(maximum), half the kernel" }
            guard let word = peek, let value = Int(word), value >= minimum, value <= maximum else {
                throw failure(expected: "\(what) (\(condition))")
            }
            next += 1
            return value
        }

        /// The next word as a finite number passing `isValid`, described as `what` in errors.
        mutating func number(_ what: String, _ isValid: (Float) -> Bool) throws(ModelDescriptionError) -> Float {
            guard let word = peek, let value = Float(word), value.isFinite, isValid(value) else {
                throw failure(expected: what)
            }
            next += 1
            return value
        }

        /// The `key value` options among `allowed` (each at most once), until the end of the entry;
        /// a padding of at most `maximumPadding`.
        mutating func options(
            _ allowed: [String], maximumPadding: Int = .max
        ) throws(ModelDescriptionError) -> [String: Int] {
            var found: [String: Int] = [:]
            let flags: Set = ["nobias", "excludepad"]
            let list = allowed.map { flags.contains($0) ? $0 : "\($0) N" }.joined(separator: ", ")
            while let word = peek {
                guard allowed.contains(word) else {
                    throw failure(expected: "an option (\(list)) or the end of the entry")
                }
                guard found[word] == nil else {
                    throw failure(expected: "each option at most once", found: "\"\(word)\" a second time")
                }
                next += 1
                switch word {
                case "nobias", "excludepad": found[word] = 0
                case "pad": found[word] = try integer("a padding", minimum: 0, maximum: maximumPadding)
                default: found[word] = try integer("a stride", minimum: 1)
                }
            }
            return found
        }

        /// Nothing more in the entry.
        func end(_ name: String, takes: String) throws(ModelDescriptionError) {
            if peek != nil { throw failure(expected: "the end of the entry (\(name) takes \(takes))") }
        }

        /// The entry.
        mutating func entry() throws(ModelDescriptionError) -> ModelDescription.Entry {
            let names = ModelDescriptionParser.names.joined(separator: ", ")
            guard let name = peek else { throw failure(expected: "a layer name (\(names))") }
            guard ModelDescriptionParser.names.contains(name) else {
                guard let type = layers[name] ?? ModelDescription.registeredType(kind: name) else {
                    throw failure(expected: "a layer name (\(names))", unknownKind: name)
                }
                // A layer of your own: every word after its kind is an argument, as written.
                let arguments = segment.tokens[(next + 1)...].map(\.text)
                next = segment.tokens.count
                return .custom(ModelDescription.CustomLayerType(type), arguments: arguments)
            }
            next += 1
            switch name {
            case "conv":
                let out = try integer("an output channel count", minimum: 1)
                let kernel = try integer("a kernel size", minimum: 1)
                let options = try options(["stride", "pad", "nobias"])
                return .conv(
                    out: out, kernel: kernel, stride: options["stride"] ?? 1, padding: options["pad"] ?? 0,
                    bias: options["nobias"] == nil)
            case "maxpool", "avgpool":
                let kernel = try integer("a kernel size", minimum: 1)
                // PyTorch's rule: every window holds an element of the input.
                let allowed = name == "maxpool" ? ["stride", "pad"] : ["stride", "pad", "excludepad"]
                let options = try options(allowed, maximumPadding: kernel / 2)
                let (stride, padding) = (options["stride"] ?? kernel, options["pad"] ?? 0)
                return name == "maxpool"
                    ? .maxPool(kernel: kernel, stride: stride, padding: padding)
                    : .avgPool(
                        kernel: kernel, stride: stride, padding: padding, countIncludePad: options["excludepad"] == nil)
            case "lin":
                let out = try integer("an output size", minimum: 1)
                return .lin(out: out, bias: try options(["nobias"])["nobias"] == nil)
            case "leakyrelu":
                var slope = ModelDescriptionParser.defaultSlope
                if peek != nil {
                    slope = try number("a negative slope (a number) or the end of the entry") { _ in true }
                }
                try end(name, takes: "at most one number, its slope")
                return .leakyReLU(slope: slope)
            case "hardtanh":
                var (min, max): (Float, Float) = (-1, 1)
                if peek != nil {
                    min = try number("a lower bound (a number) or the end of the entry") { _ in true }
                    max = try number("an upper bound (a number above \(min))") { $0 > min }
                }
                try end(name, takes: "two numbers, its bounds, or none")
                return .hardtanh(min: min, max: max)
            case "batchnorm":
                var (eps, momentum): (Float?, Float?) = (nil, nil)
                while peek != nil {
                    guard let word = peek, word == "eps" || word == "momentum" else {
                        throw failure(expected: "an option (eps E, momentum M) or the end of the entry")
                    }
                    guard (word == "eps" ? eps : momentum) == nil else {
                        throw failure(expected: "each option at most once", found: "\"\(word)\" a second time")
                    }
                    next += 1
                    if word == "eps" {
                        eps = try number("an epsilon (a number >= 0)") { $0 >= 0 }
                    } else {
                        momentum = try number("a momentum (a number m with 0 <= m <= 1)") { $0 >= 0 && $0 <= 1 }
                    }
                }
                return .batchNorm(
                    eps: eps ?? BatchNorm.defaultEps,
                    momentum: momentum ?? BatchNorm.defaultMomentum)
            case "dropout":
                let p = try number("a dropout probability (a number p with 0 <= p < 1)") { $0 >= 0 && $0 < 1 }
                try end(name, takes: "one number, its probability")
                return .dropout(p: p)
            default:
                try end(name, takes: "no numbers or options")
                let simple: [String: ModelDescription.Entry] = [
                    "flatten": .flatten, "relu": .relu, "tanh": .tanh, "sigmoid": .sigmoid, "gelu": .gelu,
                    "silu": .silu, "relu6": .hardtanh(min: 0, max: 6),
                ]
                return simple[name]!
            }
        }
    }
}

extension String {
    /// The string without leading and trailing whitespace.
    fileprivate func trimmingWhitespace() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
