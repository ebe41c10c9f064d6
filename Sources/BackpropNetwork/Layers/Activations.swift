import BackpropCore
import Foundation

// The activations beyond the seed's ReLU: Tanh, Sigmoid, LeakyReLU, GELU, SiLU and Hardtanh
// (ReLU6). Each works on a tensor of any shape, elementwise, and is built like `ReLU`: the layer
// stores `inp` and `out`, and its `backward()` writes `inp.g` from `out.g` with the derivative in
// its doc comment.
//
// Each forward has two paths, as `lin` has:
// - autograd recording (`Tensor.wouldRecord(inp)`): the function composed of recorded primitives
//   (`exp`, `erf`, `clampMin`, arithmetic), so that `.grad` comes from their derivatives and
//   comparing it with the layer's `.g` checks the hand-written backward;
// - otherwise one pass over memory, with no temporaries (Sigmoid, SiLU, Tanh and GELU through
//   `ActivationKernels`: vectors of elements in Double, rounded once to Float).
// The free functions `sigmoid(_:)`, `leakyReLU(_:slope:)`, `gelu(_:)` and `silu(_:)` hold both
// paths; the layers call them. (`Tanh` has no free function: `tanh` is the C library's name for numbers.)

/// The logistic sigmoid of every element: `sigmoid(x) = 1 / (1 + e^(-x))` (PyTorch's
/// `torch.sigmoid`).
///
/// Autograd records `1 / (1 + exp(-max(x, -80)))`. Where nothing is recorded, one numerically
/// stable pass: `1 / (1 + e^(-x))` for `x ≥ 0`, `e^x / (1 + e^x)` for `x < 0`, in Double, rounded
/// once (`ActivationKernels`: within an ulp of the correctly rounded value).
///
/// NOTE: the clamp keeps autograd finite: for `x < -88`, `e^(-x)` overflows to infinity and the
/// derivative of `exp` would multiply `0 · ∞ = NaN`. Below -80 the recorded sigmoid is
/// `1 / (1 + e^80) ≈ 2e-35` with gradient 0, where the true values are smaller still.
public func sigmoid(_ x: Tensor) -> Tensor {
    if Tensor.wouldRecord(x) {
        return 1 / (1 + (-x.clampMin(-80)).exp())
    }
    return Tensor.mapElements(x, kernel: .sigmoid)
}

/// The leaky rectified linear unit of every element: `leakyReLU(x) = x` where `x > 0`, else
/// `slope · x` (PyTorch's `F.leaky_relu(x, negative_slope)`).
///
/// Autograd records `max(x, 0) + slope · (x - max(x, 0))`, that is `max(x, 0) + slope · min(x, 0)`:
/// the same values, bit for bit, as the one pass that runs where nothing is recorded, and at
/// `x == 0` the derivative `slope`, as PyTorch's backward takes it.
public func leakyReLU(_ x: Tensor, slope: Float = 0.01) -> Tensor {
    if Tensor.wouldRecord(x) {
        let positive = x.clampMin(0)  // max(x, 0)
        return positive + slope * (x - positive)  // + slope * min(x, 0)
    }
    return Tensor.mapElements(x, LeakyReLU.Function(slope: slope))
}

/// The Gaussian error linear unit of every element, in its exact form:
/// `gelu(x) = x · Φ(x) = 0.5 · x · (1 + erf(x / √2))` (PyTorch's `F.gelu(x)`, approximate `'none'`).
///
/// Autograd records `x * 0.5 * (erf(x / √2) + 1)` (see `Tensor.erf()`). Where nothing is recorded,
/// one pass in Double from the tail, `Φ(x) = erfc(-x/√2) / 2`, rounded once (`ActivationKernels`:
/// within an ulp of the correctly rounded value). The two differ far left: below x ≈ -5.5,
/// `1 + erf` is 0 in Float, so the recorded form (and PyTorch's) gives 0 where the pass gives the
/// tiny true value (gelu(-8) ≈ -5·10⁻¹⁵).
public func gelu(_ x: Tensor) -> Tensor {
    if Tensor.wouldRecord(x) {
        return x * 0.5 * ((x / Float(2).squareRoot()).erf() + 1)
    }
    return Tensor.mapElements(x, kernel: .gelu)
}

/// The sigmoid-weighted linear unit of every element, also called swish:
/// `silu(x) = x · sigmoid(x) = x / (1 + e^(-x))` (PyTorch's `F.silu(x)`).
///
/// Autograd records `x * sigmoid(x)` (see ``sigmoid(_:)``, whose recorded form it uses); the
/// pass that runs where nothing is recorded multiplies `x` by the same stable one-pass sigmoid, in
/// Double, and rounds once.
public func silu(_ x: Tensor) -> Tensor {
    if Tensor.wouldRecord(x) {
        return x * sigmoid(x)
    }
    return Tensor.mapElements(x, kernel: .silu)
}

/// The hyperbolic tangent as a layer: `out = tanh(inp)`, and its hand-written backward
/// (PyTorch's `nn.Tanh`).
///
/// Forward: `out = tanh(inp) = (e^inp - e^-inp) / (e^inp + e^-inp)`.
/// Backward: `inp.g = out.g · (1 - out²)`, read from the stored `out`.
///
/// Autograd records `tanh(x) = 2 · sigmoid(2x) - 1` (see ``sigmoid(_:)``), whose derivative is
/// the chain of `exp`'s and the divisions', not the formula above. Where nothing is recorded,
/// `±(1 - e^(-2|x|)) / (1 + e^(-2|x|))` in Double, rounded once (`ActivationKernels`: within an
/// ulp of the correctly rounded value, `±1` for large `|x|`).
public final class Tanh: Layer {
    /// The input of the last call (the very object passed in). // (n, …)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, …), the shape of inp
    public private(set) var out: Tensor!

    /// Creates the layer (it has no parameters).
    public init() {}

    /// None: Tanh learns nothing.
    public var parameters: [Tensor] { [] }

    /// The forward pass: stores `inp`, computes `out = tanh(inp)`, returns `out`.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        if Tensor.wouldRecord(inp) {
            out = 2 * sigmoid(2 * inp) - 1
        } else {
            out = Tensor.mapElements(inp, kernel: .tanh)
        }
        return out
    }

    /// The backward pass: `inp.g = out.g · (1 - out²)`  // (n, …)
    public func backward() {
        checkReadyForBackward()
        inp.g = Tensor.mapElements(out, out.g, operation: "Tanh.backward", Gradient())
    }

    /// `g · (1 - y²)` for `y = out`, `g = out.g`: the backward pass of one element.
    struct Gradient: ElementwiseBinaryFunction {
        func callAsFunction(_ y: Float, _ g: Float) -> Float { g * (1 - y * y) }
    }
}

/// The logistic sigmoid as a layer: `out = 1 / (1 + e^(-inp))`, and its hand-written backward
/// (PyTorch's `nn.Sigmoid`).
///
/// Forward: `out = sigmoid(inp)` (see ``sigmoid(_:)`` for both paths).
/// Backward: `inp.g = out.g · out · (1 - out)`, read from the stored `out`.
public final class Sigmoid: Layer {
    /// The input of the last call (the very object passed in). // (n, …)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, …), the shape of inp
    public private(set) var out: Tensor!

    /// Creates the layer (it has no parameters).
    public init() {}

    /// None: Sigmoid learns nothing.
    public var parameters: [Tensor] { [] }

    /// The forward pass: stores `inp`, computes `out = sigmoid(inp)`, returns `out`.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        self.out = sigmoid(inp)
        return out
    }

    /// The backward pass: `inp.g = out.g · out · (1 - out)`  // (n, …)
    public func backward() {
        checkReadyForBackward()
        inp.g = Tensor.mapElements(out, out.g, operation: "Sigmoid.backward", Gradient())
    }

    /// `g · y · (1 - y)` for `y = out`, `g = out.g`: the backward pass of one element.
    struct Gradient: ElementwiseBinaryFunction {
        func callAsFunction(_ y: Float, _ g: Float) -> Float { g * y * (1 - y) }
    }
}

/// The leaky rectified linear unit as a layer: `out = inp` where `inp > 0`, else `slope · inp`,
/// and its hand-written backward (PyTorch's `nn.LeakyReLU(negative_slope=0.01)`).
///
/// Forward: `out = leakyReLU(inp, slope)` (see ``leakyReLU(_:slope:)`` for both paths).
/// Backward: `inp.g = out.g` where `inp > 0`, else `slope · out.g`.
///
/// NOTE: at exactly `inp == 0` the derivative is undefined; the backward takes `slope`, as
/// PyTorch's does (and as the recorded composition's derivative does). ``pieces`` marks those
/// elements for the gradient check.
public final class LeakyReLU: Layer, PiecewiseLayer {
    /// The slope for negative inputs (PyTorch's `negative_slope`, 0.01 unless given).
    public let slope: Float
    /// The input of the last call (the very object passed in). // (n, …)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, …), the shape of inp
    public private(set) var out: Tensor!

    /// Creates the layer with the given negative slope (it has no parameters).
    public init(slope: Float = 0.01) {
        self.slope = slope
    }

    /// None: LeakyReLU learns nothing.
    public var parameters: [Tensor] { [] }

    /// After a forward pass, per element of `inp` (row-major): `1` where `inp > 0`, `0` where
    /// `inp < 0`, `-1` at the kink `inp == 0`.
    /// - Precondition: the layer was called.
    public var pieces: [Int32] {
        precondition(inp != nil, "LeakyReLU.pieces: call the layer first")
        return Tensor.signPieces(inp)
    }

    /// When `true`, calls compute `out = slopes · inp` with the slope of each element (`1` where
    /// the input was positive, else `slope`) in the last call before it was turned on, and
    /// `backward()` gives `inp.g = slopes · out.g`; for the gradient check (see
    /// ``PiecewiseLayer/freezesPieces``).
    /// - Precondition: the layer was called before it is turned on.
    public var freezesPieces = false {
        didSet {
            guard freezesPieces != oldValue else { return }
            precondition(!freezesPieces || inp != nil, "LeakyReLU.freezesPieces: call the layer first")
            frozenSlopes = freezesPieces ? Tensor.pieceMultipliers(inp, positive: 1, negative: slope) : nil
        }
    }

    /// Each element's slope, `1` or `slope`, while ``freezesPieces`` is on.
    private var frozenSlopes: Tensor?

    /// The forward pass: stores `inp`, computes `out = leakyReLU(inp, slope)` (`slopes · inp` with
    /// the pieces frozen), returns `out`.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        if let frozenSlopes {
            self.out = Tensor.onFrozenPieces(inp, frozenSlopes, layer: "LeakyReLU")
        } else {
            self.out = leakyReLU(inp, slope: slope)
        }
        return out
    }

    /// The backward pass: `inp.g = (inp > 0 ? 1 : slope) · out.g`  // (n, …)
    /// (the frozen slopes' `slopes · out.g` with the pieces frozen).
    public func backward() {
        checkReadyForBackward()
        if let frozenSlopes {
            inp.g = Tensor.mapElements(frozenSlopes, out.g, operation: "LeakyReLU.backward") { m, g in m * g }
            return
        }
        inp.g = Tensor.mapElements(inp, out.g, operation: "LeakyReLU.backward", Gradient(slope: slope))
    }

    /// `x` where `x > 0`, else `slope · x`: the forward pass of one element.
    struct Function: ElementwiseFunction {
        let slope: Float
        func callAsFunction(_ x: Float) -> Float { x > 0 ? x : slope * x }
    }

    /// `g` where `x > 0`, else `slope · g`, for `x = inp`, `g = out.g`: the backward pass of one element.
    struct Gradient: ElementwiseBinaryFunction {
        let slope: Float
        func callAsFunction(_ x: Float, _ g: Float) -> Float { x > 0 ? g : slope * g }
    }
}

/// The Gaussian error linear unit as a layer, exact form: `out = inp · Φ(inp)`, with `Φ` the
/// standard normal distribution function, and its hand-written backward (PyTorch's `nn.GELU()`).
///
/// Forward: `out = 0.5 · inp · (1 + erf(inp / √2))` (see ``gelu(_:)`` for both paths).
/// Backward: `inp.g = out.g · (Φ(inp) + inp · φ(inp))`, where `Φ(x) = 0.5 (1 + erf(x / √2))` and
/// `φ(x) = e^(-x²/2) / √(2π)` is the normal density (in Double, as the forward pass, and rounded
/// once to Float).
public final class GELU: Layer {
    /// The input of the last call (the very object passed in). // (n, …)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, …), the shape of inp
    public private(set) var out: Tensor!

    /// Creates the layer (it has no parameters).
    public init() {}

    /// None: GELU learns nothing.
    public var parameters: [Tensor] { [] }

    /// The forward pass: stores `inp`, computes `out = gelu(inp)`, returns `out`.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        self.out = gelu(inp)
        return out
    }

    /// The backward pass: `inp.g = out.g · (Φ(inp) + inp · φ(inp))`  // (n, …)
    public func backward() {
        checkReadyForBackward()
        inp.g = Tensor.mapElements(inp, out.g, kernel: .geluBackward, operation: "GELU.backward")
    }
}

/// The sigmoid-weighted linear unit (swish) as a layer: `out = inp · sigmoid(inp)`, and its
/// hand-written backward (PyTorch's `nn.SiLU()`).
///
/// Forward: `out = inp · σ(inp)`, `σ(x) = 1 / (1 + e^(-x))` (see ``silu(_:)`` for both paths).
/// Backward: `inp.g = out.g · σ(inp) · (1 + inp · (1 - σ(inp)))`, the product rule
/// `σ(x) + x · σ'(x)` with `σ' = σ · (1 - σ)`; `σ(inp)` is computed again from the stored `inp`
/// (in Double, as the forward pass does, and the product rounded once to Float).
public final class SiLU: Layer {
    /// The input of the last call (the very object passed in). // (n, …)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, …), the shape of inp
    public private(set) var out: Tensor!

    /// Creates the layer (it has no parameters).
    public init() {}

    /// None: SiLU learns nothing.
    public var parameters: [Tensor] { [] }

    /// The forward pass: stores `inp`, computes `out = silu(inp)`, returns `out`.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        self.out = silu(inp)
        return out
    }

    /// The backward pass: `inp.g = out.g · σ(inp) · (1 + inp · (1 - σ(inp)))`  // (n, …)
    public func backward() {
        checkReadyForBackward()
        inp.g = Tensor.mapElements(inp, out.g, kernel: .siluBackward, operation: "SiLU.backward")
    }
}

/// The hard hyperbolic tangent as a layer: `inp` clamped to `[min, max]`, and its hand-written
/// backward (PyTorch's `nn.Hardtanh(min_val, max_val)`; with `min: 0, max: 6`, `nn.ReLU6()`).
///
/// Forward: `out = min(max(inp, min), max)` (autograd records `inp.clamp(min:max:)`).
/// Backward: `inp.g = out.g` where `min < inp < max`, else `0`.
///
/// NOTE: at exactly `inp == min` or `inp == max` the derivative is undefined; the backward takes
/// `0`, as PyTorch's `hardtanh_backward` does (and as the recorded clamp's derivative does).
/// ``pieces`` marks those elements for the gradient check.
public final class Hardtanh: Layer, PiecewiseLayer {
    /// The lower bound (PyTorch's `min_val`, -1 unless given; 0 for ReLU6).
    public let min: Float
    /// The upper bound (PyTorch's `max_val`, 1 unless given; 6 for ReLU6).
    public let max: Float
    /// The input of the last call (the very object passed in). // (n, …)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, …), the shape of inp
    public private(set) var out: Tensor!

    /// Creates the layer with the given bounds (it has no parameters): `Hardtanh()` is PyTorch's
    /// `nn.Hardtanh()`, `Hardtanh(min: 0, max: 6)` its `nn.ReLU6()`.
    /// - Precondition: both bounds are finite and `min < max` (PyTorch's check).
    public init(min: Float = -1, max: Float = 1) {
        precondition(
            min.isFinite && max.isFinite && min < max,
            "Hardtanh: expects finite bounds with min < max, got \(min), \(max)")
        self.min = min
        self.max = max
    }

    /// None: Hardtanh learns nothing.
    public var parameters: [Tensor] { [] }

    /// Whether `x` is strictly inside `[low, high]`, where the gradient passes (not at a bound).
    @inline(__always)
    private static func passes(_ x: Float, _ low: Float, _ high: Float) -> Bool { x > low && x < high }

    /// After a forward pass, per element of `inp` (row-major): `1` where `min < inp < max`, `0`
    /// where `inp < min`, `2` where `inp > max`, `-1` at the kinks `inp == min` and `inp == max`
    /// (and where `inp` is NaN).
    /// - Precondition: the layer was called.
    public var pieces: [Int32] {
        precondition(inp != nil, "Hardtanh.pieces: call the layer first")
        let (low, high) = (min, max)
        return inp.values.map { x in Self.passes(x, low, high) ? 1 : x < low ? 0 : x > high ? 2 : -1 }
    }

    /// When `true`, calls compute `out = slopes · inp + offsets` with each element's piece of the
    /// last call before it was turned on (slope `1` and offset `0` where the input was strictly
    /// inside the bounds, else slope `0` and the bound it was clamped to), and `backward()` gives
    /// `inp.g = slopes · out.g`; for the gradient check (see ``PiecewiseLayer/freezesPieces``).
    /// - Precondition: the layer was called before it is turned on.
    public var freezesPieces = false {
        didSet {
            guard freezesPieces != oldValue else { return }
            precondition(!freezesPieces || inp != nil, "Hardtanh.freezesPieces: call the layer first")
            guard freezesPieces else {
                frozen = nil
                return
            }
            let (low, high) = (min, max)
            frozen = (
                Tensor.mapElements(inp) { x in Self.passes(x, low, high) ? 1 : 0 },
                Tensor.mapElements(inp) { x in Self.passes(x, low, high) ? 0 : x <= low ? low : high }
            )
        }
    }

    /// Each element's slope (`1` or `0`) and offset (`0` or its bound) while ``freezesPieces`` is on.
    private var frozen: (slopes: Tensor, offsets: Tensor)?

    /// The forward pass: stores `inp`, computes `out = inp.clamp(min: min, max: max)`
    /// (`slopes · inp + offsets` with the pieces frozen), returns `out`.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        if let frozen {
            out = Tensor.onFrozenPieces(inp, frozen.slopes, layer: "Hardtanh") + frozen.offsets
        } else {
            out = inp.clamp(min: min, max: max)
        }
        return out
    }

    /// The backward pass: `inp.g = (min < inp < max ? 1 : 0) · out.g`  // (n, …)
    /// (the frozen slopes' `slopes · out.g` with the pieces frozen).
    public func backward() {
        checkReadyForBackward()
        if let frozen {
            inp.g = Tensor.mapElements(frozen.slopes, out.g, operation: "Hardtanh.backward") { m, g in m * g }
            return
        }
        inp.g = Tensor.mapElements(inp, out.g, operation: "Hardtanh.backward", Gradient(low: min, high: max))
    }

    /// `g` where `low < x < high`, else `0`, for `x = inp`, `g = out.g`: the backward pass of one element.
    struct Gradient: ElementwiseBinaryFunction {
        let low: Float
        let high: Float
        func callAsFunction(_ x: Float, _ g: Float) -> Float { Hardtanh.passes(x, low, high) ? g : 0 }
    }
}

// MARK: - One-pass elementwise loops

extension Tensor {
    /// `operation` of every element of `x`, in one pass into a new contiguous tensor of its
    /// shape, split over threads (``Tensor/elementwiseMinimumPerWorker`` elements at least each).
    /// Never recorded: for the layers' fast paths and their backward passes.
    ///
    /// NOTE: generic over the function's type, not a closure (see `ElementwiseFunction`): a
    /// closure would be called for every element (2-3 ns), where a type's `callAsFunction` is
    /// specialised into the loop and vectorised (0.2 ns an element).
    static func mapElements<Operation: ElementwiseFunction>(
        _ x: Tensor, _ operation: Operation
    ) -> Tensor {
        let source = x.contiguous()
        let result = Tensor(uninitializedShape: x.shape)
        let input = source.pointer
        let out = result.pointer
        withExtendedLifetime(source) {
            Parallel.forEachRange(result.count, minimumPerPiece: elementwiseMinimumPerWorker) { range in
                for i in range { out[i] = operation(input[i]) }
            }
        }
        return result
    }

    /// `operation` of every element of `x` as a closure, for the paths where speed does not matter
    /// (frozen pieces, the gradient check): the generic `mapElements` with the closure wrapped.
    static func mapElements(
        _ x: Tensor, _ operation: (Float) -> Float
    ) -> Tensor {
        withoutActuallyEscaping(operation) { operation in
            mapElements(x, ClosureFunction(operation))
        }
    }

    /// The elements a helper thread takes at least for an ``ActivationKernels`` pass (about 2.5 ns
    /// an element on one core): about 20 µs of work, more than a wake-up costs, so that a batch's
    /// activations of 128 × 128 already split.
    static let activationKernelMinimumPerWorker = 1 << 13

    /// The activation `kernel` of every element of `x` (and of `g`, the output's gradient, for
    /// ``ActivationKernels/Kind/siluBackward`` and ``ActivationKernels/Kind/geluBackward``; see
    /// ``ActivationKernels``), in one pass into a new
    /// contiguous tensor of `x`'s shape, split over threads. Never recorded.
    /// - Precondition: `g`, if given, has the shape of `x`; otherwise stops naming `operation` and both.
    static func mapElements(
        _ x: Tensor, _ g: Tensor? = nil, kernel: ActivationKernels.Kind, operation name: String = "activation"
    ) -> Tensor {
        if let g { precondition(x.shape == g.shape, "\(name): shapes \(x.shape) and \(g.shape) differ") }
        let sourceX = x.contiguous()
        let sourceG = g?.contiguous()
        let result = Tensor(uninitializedShape: x.shape)
        let inputX = sourceX.pointer
        let inputG = sourceG?.pointer
        let out = result.pointer
        withExtendedLifetime((sourceX, sourceG)) {
            Parallel.forEachRange(result.count, minimumPerPiece: activationKernelMinimumPerWorker) { range in
                let start = range.lowerBound
                ActivationKernels.apply(
                    kernel, inputX + start, inputG.map { UnsafePointer($0 + start) }, into: out + start,
                    count: range.count)
            }
        }
        return result
    }

    /// `operation(a[i], b[i])` for every element, in one pass into a new contiguous tensor of
    /// their shape. Never recorded. (Generic over the function's type for speed, as
    /// the one-tensor `mapElements` is.)
    /// - Precondition: `a` and `b` have the same shape; otherwise stops naming `operation` and both.
    static func mapElements<Operation: ElementwiseBinaryFunction>(
        _ a: Tensor, _ b: Tensor, operation name: String,
        _ operation: Operation
    ) -> Tensor {
        precondition(a.shape == b.shape, "\(name): shapes \(a.shape) and \(b.shape) differ")
        let sourceA = a.contiguous()
        let sourceB = b.contiguous()
        let result = Tensor(uninitializedShape: a.shape)
        let inputA = sourceA.pointer
        let inputB = sourceB.pointer
        let out = result.pointer
        withExtendedLifetime((sourceA, sourceB)) {
            Parallel.forEachRange(result.count, minimumPerPiece: elementwiseMinimumPerWorker) { range in
                for i in range { out[i] = operation(inputA[i], inputB[i]) }
            }
        }
        return result
    }

    /// `operation(a[i], b[i])` for every element as a closure, where speed does not matter (as
    /// the one-tensor `mapElements` that takes a closure).
    /// - Precondition: `a` and `b` have the same shape; otherwise stops naming `operation` and both.
    static func mapElements(
        _ a: Tensor, _ b: Tensor, operation name: String,
        _ operation: (Float, Float) -> Float
    ) -> Tensor {
        withoutActuallyEscaping(operation) { operation in
            mapElements(a, b, operation: name, ClosureBinaryFunction(operation))
        }
    }

    /// Per element of `x`, the slope of the piece of a ReLU-like function it falls on: `positive`
    /// where `x > 0`, `negative` elsewhere (the kink `x == 0` included, as the backward takes it).
    static func pieceMultipliers(_ x: Tensor, positive: Float, negative: Float) -> Tensor {
        mapElements(x) { value in value > 0 ? positive : negative }
    }

    /// A ReLU-like function on frozen pieces: `multipliers · x` (recorded as a product with a
    /// constant when autograd records `x`).
    /// - Precondition: the shapes agree; otherwise stops naming `layer` and both shapes.
    static func onFrozenPieces(_ x: Tensor, _ multipliers: Tensor, layer: String) -> Tensor {
        precondition(
            x.shape == multipliers.shape,
            "\(layer): input of shape \(x.shape) does not fit the pieces frozen at shape \(multipliers.shape)")
        if Tensor.wouldRecord(x) { return x * multipliers }
        return mapElements(x, multipliers, operation: layer) { value, m in m * value }
    }

    /// Per element of `x` (row-major), the piece of a ReLU-like function it falls on: `1` where
    /// `x > 0`, `0` where `x < 0`, `-1` at the kink `x == 0` (and where `x` is NaN).
    static func signPieces(_ x: Tensor) -> [Int32] {
        x.values.map { value in value > 0 ? 1 : value < 0 ? 0 : -1 }
    }
}
