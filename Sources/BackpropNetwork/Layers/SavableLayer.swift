import BackpropCore

// Layers of your own in model descriptions and checkpoints: a layer names itself with a word
// (its kind) and the arguments that build it again, and a registry maps the words back to types.
//
//     lin 64, scaledtanh 1.5, lin 10        (scaledtanh: ScaledTanh.kind, 1.5: its arguments)

/// A layer of your own that model descriptions name and checkpoints save and load.
///
/// In a description the layer is the entry `KIND ARG1 ARG2 …` (``SavableLayer/kind``, then
/// ``SavableLayer/arguments``). Saving a model writes that entry into the checkpoint's
/// description and the layer's tensors as `layers.I.NAME`, from ``Layer/namedParameters`` and
/// ``Layer/buffers``. Loading parses the entry, builds the layer with
/// ``SavableLayer/init(arguments:)`` (tensors of the right shapes; their values do not matter),
/// checks every stored tensor's name and shape against the fresh layer's, and copies the values
/// in. A layer that is also a ``ModeDependentLayer`` is loaded in evaluation mode, as every
/// layer is.
///
/// Loading needs the type: register it once (``ModelDescription/register(_:)``), or pass it where
/// the model is loaded (`Checkpoint.load(from:layers:)`).
///
/// ```swift
/// /// out = tanh(scale · inp), with a learnable scale. // scale: (1)
/// final class ScaledTanh: SavableLayer {
///     static let kind = "scaledtanh"
///     let initialScale: Float
///     let scale: Tensor  // (1)
///     private(set) var inp: Tensor!
///     private(set) var out: Tensor!
///
///     init(scale: Float) {
///         initialScale = scale
///         self.scale = Tensor([scale])
///     }
///     convenience init(arguments: [String]) throws {
///         guard arguments.count == 1, let scale = Float(arguments[0]) else {
///             throw ScaledTanhError(arguments: arguments)
///         }
///         self.init(scale: scale)
///     }
///     /// The scale's starting value: the stored `scale` replaces it on loading.
///     var arguments: [String] { ["\(initialScale)"] }
///     …
/// }
///
/// ModelDescription.register(ScaledTanh.self)
/// ```
///
/// Arguments that carry shapes (a weight's sizes) are the layer's business: whatever
/// ``SavableLayer/init(arguments:)`` needs to build tensors of the shapes it saved must be in
/// ``SavableLayer/arguments``.
///
/// The type's conformance cannot be isolated to an actor (`SendableMetatype`): the registry hands
/// the type to any thread.
public protocol SavableLayer: Layer, SendableMetatype {
    /// The layer's word in a model description: lowercase, one word without commas, and not a
    /// built-in layer's (`conv`, `lin`, `relu`, …) or a preset's (`seed`, `mlp`, `cnn`).
    static var kind: String { get }

    /// The words after ``kind`` in the layer's description entry (`["1.5"]` for
    /// `scaledtanh 1.5`): all that ``init(arguments:)`` needs to build the layer again. Each is
    /// one word, without whitespace or commas.
    var arguments: [String] { get }

    /// Builds the layer from the ``arguments`` a layer of this type gave, with parameters and
    /// buffers of the shapes that layer had (their values are then loaded by name).
    ///
    /// - Throws: any error, when the arguments do not describe a layer; a description or
    ///   checkpoint that holds them is then refused with the entry named.
    init(arguments: [String]) throws

    /// The shape of one output example for one input example (per-example shapes, without the
    /// batch dimension `n`): `[c]` for vectors, `[c, h, w]` for images.
    ///
    /// By default the input shape (an elementwise layer). A layer that changes the shape says
    /// how, so that a description can infer the input size of the layer after it.
    /// - Throws: any error, when the layer cannot take that input.
    func outputShape(input: [Int]) throws -> [Int]
}

extension SavableLayer {
    /// The input shape: an elementwise layer keeps it.
    public func outputShape(input: [Int]) throws -> [Int] { input }
}

// MARK: - The registry

extension ModelDescription {
    /// The layers registered with ``register(_:)``, by kind.
    private static let registry = Locked<[String: CustomLayerType]>([:])

    /// Makes `type`'s ``SavableLayer/kind`` a layer name that every description parses from now
    /// on (`ModelDescription(parsing:)`, and so the checkpoints that `Checkpoint.load` reads), in
    /// any thread. Registering the same type again does nothing.
    ///
    /// - Precondition: the kind is lowercase, one word without commas (`a-z`, `0-9`, `_`, `-`, starting
    ///   with a letter), not a built-in layer name (`conv`, `lin`, `relu`, …) or a preset
    ///   (`seed`, `mlp`, `cnn`), and not registered by another type.
    public static func register(_ type: any SavableLayer.Type) {
        let kind = type.kind
        if let problem = kindProblem(kind) {
            preconditionFailure("ModelDescription.register(\(type)): \(problem)")
        }
        registry.withLock { registered in
            if let other = registered[kind], other != CustomLayerType(type) {
                preconditionFailure(
                    "ModelDescription.register(\(type)): the kind \"\(kind)\" is already registered by \(other.type)")
            }
            registered[kind] = CustomLayerType(type)
        }
    }

    /// The registered type of kind `kind` (lowercase), if any.
    static func registeredType(kind: String) -> (any SavableLayer.Type)? {
        registry.withLock { $0[kind]?.type }
    }

    /// Why `kind` cannot name a layer of your own, or `nil` if it can.
    package static func kindProblem(_ kind: String) -> String? {
        let letters = Set("abcdefghijklmnopqrstuvwxyz")
        let allowed = letters.union("0123456789_-")
        guard let first = kind.first, letters.contains(first), kind.allSatisfy({ allowed.contains($0) }) else {
            return "the kind \"\(kind)\" must be one lowercase word of a-z, 0-9, '_' and '-', starting with a letter"
        }
        if ModelDescriptionParser.names.contains(kind) {
            return "the kind \"\(kind)\" is a built-in layer's"
        }
        if presets.contains(where: { $0.name == kind }) {
            return "the kind \"\(kind)\" is a preset's name"
        }
        return nil
    }

    /// A ``SavableLayer`` type, compared by identity (the type a ``Entry/custom(_:arguments:)`` entry builds).
    public struct CustomLayerType: Hashable, Sendable, CustomStringConvertible {
        /// The layer type.
        public let type: any SavableLayer.Type

        /// Wraps `type`.
        public init(_ type: any SavableLayer.Type) {
            self.type = type
        }

        /// Whether both are the same type.
        public static func == (lhs: Self, rhs: Self) -> Bool {
            ObjectIdentifier(lhs.type) == ObjectIdentifier(rhs.type)
        }

        /// Hashes the type's identity.
        public func hash(into hasher: inout Hasher) {
            hasher.combine(ObjectIdentifier(type))
        }

        /// The type's name.
        public var description: String { "\(type)" }
    }
}
