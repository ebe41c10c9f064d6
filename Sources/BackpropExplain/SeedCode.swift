import BackpropCore
import BackpropNetwork
import Foundation

// What the walkthrough shows of each kind of layer: the seed's Python lines for its forward and
// backward passes, and the letter that names its instances (`L1`, `R`, `L2`, as the seed does).
//
// The lines are text for the reader; nothing here runs them. What a step actually did is observed
// on the objects by `Trace`; the narration puts each observed `.g` write next to the seed's line
// that explains it, and says so when a layer has no such line.
//
// The layers beyond the seed (convolution, pooling, flatten, the other activations, dropout and
// batch norm) have no lines in the seed: they show the Python of their own doc comments, in the
// seed's style (SeedCode+Layers.swift), and the walkthrough calls those "the layer's" lines.
//
// Naming rule (`SeedCode.layerNames(for:)`): each layer is named by its kind's letter (`L` for
// `Lin`, `R` for `ReLU`, `C` for `Conv2d`, `BN` for `BatchNorm`, ...: SeedCode+Layers.swift; the
// type's name for other kinds), numbered from 1 in model order when the model has more than one
// layer of that kind. The seed's model gives `L1, R, L2`; a model with two hidden layers gives
// `L1, R1, L2, R2, L3`; the `cnn` preset `C1, BN1, R1, MP1, C2, ...`. The loss is always `loss`.
// A numbered `Lin` also gets the seed's names for its parameters: `L1.w` is `w1`, `L1.b` is `b1`.

/// How the walkthrough shows one kind of layer or loss: its class in the seed, the letter that names
/// its instances, its parameters' field names and the seed's lines for its forward and backward.
///
/// Lines use `self.` as the seed's methods do; ``instantiate(_:as:)`` replaces it with a layer's
/// name (`self.inp.g` becomes `L2.inp.g`).
struct SeedCode: Sendable {
    /// The class name in the seed: `"Lin"`, `"Relu"`, `"Mse"`.
    let className: String
    /// The letter that names instances: `"L"` gives `L1`, `L2`.
    let letter: String
    /// The field names of the layer's `parameters`, in order: `["w", "b"]` for `Lin`.
    let parameterFields: [String]
    /// The body of the forward method (`__call__`), on one line; empty when unknown.
    let forward: String
    /// What the forward computes, written with `self.`: `self.out = lin(self.inp, self.w, self.b)`;
    /// empty when unknown.
    let result: String
    /// The backward method's lines, one per gradient written; empty when unknown.
    let backward: [GradientLine]
    /// Whose lines these are, as the walkthrough says it: `"the seed's"` for the seed's kinds,
    /// `"the layer's"` for the layers the seed does not have.
    let origin: String
    /// The constructor's arguments after the parameters, as Python writes them: `["padding=1"]`
    /// shows `Conv2d(C1.w, C1.b, padding=1)`; empty for the seed's kinds.
    let arguments: [String]
    /// What the forward keeps for the backward besides `inp` and `out`, one line each with
    /// `self.`: `self.cols = unfold(self.inp, 3, padding=1)`; empty for the seed's kinds.
    let kept: [GradientLine]
    /// Lines the backward runs before its gradient lines (a name it uses, a note), with `self.`;
    /// empty for the seed's kinds.
    let backwardPreamble: [String]

    /// A kind's lines; `origin` is the seed's, and the others empty, unless given.
    init(
        className: String, letter: String, parameterFields: [String], forward: String, result: String,
        backward: [GradientLine], origin: String = "the seed's", arguments: [String] = [],
        kept: [GradientLine] = [], backwardPreamble: [String] = []
    ) {
        self.className = className
        self.letter = letter
        self.parameterFields = parameterFields
        self.forward = forward
        self.result = result
        self.backward = backward
        self.origin = origin
        self.arguments = arguments
        self.kept = kept
        self.backwardPreamble = backwardPreamble
    }

    /// One line of a backward pass in the seed's Python, and the field whose `.g` it writes (or,
    /// in ``kept``, the field the forward stores).
    struct GradientLine: Sendable, Equatable {
        /// The field whose gradient the line writes: `"inp"`, `"w"`, `"b"`.
        let field: String
        /// The line, with `self.` where the layer refers to itself:
        /// `self.w.g = self.inp.t() @ self.out.g`.
        let line: String
    }

    /// Whether the seed's lines are known for this kind (false for a layer the walkthrough only
    /// observes).
    var isKnown: Bool { !forward.isEmpty }

    /// `line` with `self.` replaced by `name.`: `instantiate("self.out.g", as: "L2")` is `L2.out.g`.
    static func instantiate(_ line: String, as name: String) -> String {
        line.replacingOccurrences(of: "self.", with: name + ".")
    }

    /// The seed's line that writes `field`'s gradient, if this kind has one.
    func gradientLine(for field: String) -> GradientLine? {
        backward.first { $0.field == field }
    }

    /// The description of `object`'s kind: its own if it conforms to ``SeedCodeDescribing``,
    /// else a description with no lines, the type's name as letter and its parameters by the
    /// names the layer gives them (`namedParameters`, the names its checkpoint stores: `scale`
    /// of `ScaledTanh`).
    static func of(_ object: AnyObject) -> SeedCode {
        if let described = object as? any SeedCodeDescribing {
            return described.seedCode
        }
        let name = String(describing: type(of: object))
        let fields = (object as? any Layer)?.namedParameters.map(\.name) ?? []
        return SeedCode(
            className: name, letter: name, parameterFields: fields, forward: "", result: "", backward: [])
    }

    /// The seed's name of a parameter of a numbered `Lin`: `w1` for field `w` of `L1`; nil for other
    /// layers and for a lone `Lin` (named `L`).
    static func seedName(of field: String, in layer: any Layer, named name: String) -> String? {
        guard layer is Lin, name.count > 1 else { return nil }
        return field + name.dropFirst()
    }

    /// The names of a model's layers, by the rule at the top of this file: `["L1", "R", "L2"]` for
    /// the seed's model.
    static func layerNames(for layers: [any Layer]) -> [String] {
        let letters = layers.map { of($0).letter }
        var total: [String: Int] = [:]
        for letter in letters { total[letter, default: 0] += 1 }
        var seen: [String: Int] = [:]
        return letters.map { letter in
            seen[letter, default: 0] += 1
            return total[letter]! > 1 ? "\(letter)\(seen[letter]!)" : letter
        }
    }
}

/// A layer or loss whose lines the walkthrough can show.
///
/// `Lin`, `ReLU` and `Mse` conform below, the other layers in SeedCode+Layers.swift; a new layer
/// conforms by giving its ``SeedCode``. A layer that does not conform is still traced and
/// narrated from what it does to the objects, without its lines.
protocol SeedCodeDescribing: AnyObject {
    /// The lines and names for this object: its kind's, with its own settings (a convolution's
    /// stride and padding, dropout's probability, training or evaluation).
    var seedCode: SeedCode { get }
    /// The tensors the forward keeps for the backward, besides `inp` and `out`, by the fields of
    /// ``SeedCode/kept`` (a convolution's `cols`, dropout's `mask`); none unless given.
    var keptForBackward: [(field: String, tensor: Tensor)] { get }
}

extension SeedCodeDescribing {
    /// None: the seed's kinds keep only `inp` and `out`.
    var keptForBackward: [(field: String, tensor: Tensor)] { [] }
}

extension Lin: SeedCodeDescribing {
    /// The seed's `Lin`: `self.out = lin(inp, self.w, self.b)` and its three gradients (two when
    /// ``Lin/needsInputGradient`` is off: then the backward says so, and writes no `inp.g`). Without
    /// a bias (`Lin(w)`): `self.out = inp @ self.w`, and no `b.g`.
    var seedCode: SeedCode {
        var gradients = [
            SeedCode.GradientLine(field: "inp", line: "self.inp.g = self.out.g @ self.w.t()"),
            SeedCode.GradientLine(field: "w", line: "self.w.g = self.inp.t() @ self.out.g"),
        ]
        if hasBias { gradients.append(SeedCode.GradientLine(field: "b", line: "self.b.g = self.out.g.sum(0)")) }
        return SeedCode(
            className: "Lin", letter: "L", parameterFields: hasBias ? ["w", "b"] : ["w"],
            forward: hasBias
                ? "self.inp = inp; self.out = lin(inp, self.w, self.b)" : "self.inp = inp; self.out = inp @ self.w",
            result: hasBias
                ? "self.out = lin(self.inp, self.w, self.b) = self.inp @ self.w + self.b"
                : "self.out = self.inp @ self.w",
            backward: needsInputGradient ? gradients : Array(gradients.dropFirst()),
            backwardPreamble: needsInputGradient ? [] : [SeedCode.skippedInputGradient])
    }
}

extension SeedCode {
    /// The note a first layer's backward shows when it skips `inp.g` (its `needsInputGradient`
    /// is off, as training sets it: the input is the data, and nobody reads `x.g`).
    static let skippedInputGradient = "# no self.inp.g: needsInputGradient is off (the input is the data)"
}

extension ReLU: SeedCodeDescribing {
    /// The seed's `Relu`: `self.out = inp.clamp_min(0.)` and `inp.g = (inp > 0) * out.g`.
    var seedCode: SeedCode {
        SeedCode(
            className: "Relu", letter: "R", parameterFields: [],
            forward: "self.inp = inp; self.out = inp.clamp_min(0.)",
            result: "self.out = self.inp.clamp_min(0.)",
            backward: [
                SeedCode.GradientLine(field: "inp", line: "self.inp.g = (self.inp>0).float() * self.out.g")
            ])
    }
}

extension Mse: SeedCodeDescribing {
    /// The seed's `Mse`: `self.out = mse(inp, targ)` and the gradient it writes into `inp.g`.
    var seedCode: SeedCode {
        SeedCode(
            className: "Mse", letter: "loss", parameterFields: [],
            forward: "self.inp, self.targ = inp, targ; self.out = mse(inp, targ)",
            result: "self.out = mse(self.inp, self.targ) = ((self.inp.squeeze() - self.targ)**2).mean()",
            backward: [
                SeedCode.GradientLine(
                    field: "inp",
                    line: "self.inp.g = 2. * (self.inp.squeeze() - self.targ).unsqueeze(-1) / self.inp.shape[0]")
            ])
    }
}

extension CrossEntropy: SeedCodeDescribing {
    /// The lesson's cross-entropy: `self.out = nll(log_softmax(inp), targ)` and the gradient it
    /// writes into `inp.g`.
    var seedCode: SeedCode {
        SeedCode(
            className: "CrossEntropy", letter: "loss", parameterFields: [],
            forward: "self.inp, self.targ = inp, targ; self.out = nll(log_softmax(inp), targ)",
            result: "self.out = nll(log_softmax(self.inp), self.targ)",
            backward: [
                SeedCode.GradientLine(
                    field: "inp",
                    line: "self.inp.g = (softmax(self.inp) - onehot(self.targ)) / self.inp.shape[0]")
            ])
    }
}
