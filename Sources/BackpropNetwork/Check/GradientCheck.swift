import BackpropCore
import Foundation

// The gradient check: every gradient of a model computed three ways, on the same tensor objects.
//
// 1. manual     the seed's hand-written backward: `loss = model(x, y); model.backward()` → `.g`
// 2. autograd   the same forward, recorded, then `loss.backward()` → `.grad`
// 3. finite     finite differences of the loss (FiniteDifferences.swift), on every element of a
//    differences small tensor and a seeded sample of a large one
//
// A tensor passes when its `.g` has its shape, `.g` is near `.grad` (the lesson's `test_near`),
// and both are near the finite differences. Dropout keeps one mask throughout, and batch norm's
// running statistics are put back afterwards. `.g` and `.grad` may differ by their rounding, measured
// by the same backward passes with the loss's gradient scaled; a tensor whose gradient is zero but
// for rounding (a convolution's bias before a batch norm) is measured against finite differences
// relative to the model's largest gradient rather than its own.
//
// Kinks. The finite differences differentiate the loss with the pieces of every piecewise layer
// (ReLU, LeakyReLU, max pooling: a `PiecewiseLayer`) frozen at the point checked: ReLU keeps its
// mask, max pooling its winners (`freezesPieces`). That function equals the loss wherever no piece
// changes and has no kink anywhere, so a central difference at the full step measures the
// derivative the backward computes, even where the step crosses kinks of the loss. In a deep net
// it nearly always does: a batch norm couples every element of a channel, so moving one input
// element moves every ReLU and max pooling input of its channels a little, and some cross a kink.
// Where the point itself sits on a kink (a ReLU input exactly 0, a tied maximum: the loss has no
// derivative there), the frozen piece is the one the backward differentiates, so the estimate
// checks the backward's convention; the report counts such kinks and the elements that move them.
//
// Rounding. The layers compute in Float, so the loss the finite differences see carries a
// rounding error δ (measured on the cnn preset against a Float64 forward: about 1e-7 on a loss of
// 3.3, different at every perturbed point since every activation is rounded anew), which costs
// each estimate up to about δ / h; for an input element of a deep net, whose gradient is small,
// that is several percent of the gradient at a step h/8 (and up to 4 times more for a one-sided
// difference), what the check once fell back to near kinks. With the pieces frozen there is no
// kink to keep away from, so the step is 2h (h = ε^(1/3) · max(1, |x|), ε the Float epsilon),
// which halves that error, and every element is estimated a second time at h: the difference of
// the two measures the error of the estimate (see `GradientCheck.estimate`). An element passes
// when its gradient is within the tolerance plus three times that measured error. The loss of
// the finite differences is summed in Double (LossInDouble.swift).

/// Tolerances and sampling of ``gradientCheck(_:x:y:options:)``.
public struct GradientCheckOptions: Sendable, Equatable, Codable {
    /// How many elements finite differences check in a tensor with more elements than this
    /// (chosen at random from ``seed``); smaller tensors are checked whole.
    public var samples: Int
    /// The seed of the sample of elements.
    public var seed: UInt64
    /// The relative tolerance of `.g` against `.grad` (`test_near`'s `1e-3`).
    public var relativeTolerance: Float
    /// The absolute tolerance of `.g` against `.grad`, per unit of the tensor's largest
    /// `|.grad|` element (`test_near`'s `1e-5`, scaled so that the check means the same for
    /// gradients of any size, as they shrink with the number of rows).
    public var absoluteTolerance: Float
    /// The largest error against finite differences that passes, per unit of the tensor's largest
    /// gradient, beyond the estimates' measured rounding noise (see
    /// ``GradientCheckRow/FiniteDifferenceComparison``).
    public var finiteDifferenceTolerance: Double
    /// The noise allowance of an estimate in units of its measured error `|D(2h) - D(h)|`
    /// (floored at the tensor's median of it; see ``GradientCheckRow/FiniteDifferenceComparison``).
    public var noiseFactor: Double
    /// The largest noise allowance finite differences may have, per unit of the larger of the
    /// tensor's largest gradient and its largest estimate: beyond it they cannot tell a right
    /// gradient from a wrong one, and the row fails, saying so (``GradientCheckRow/noisyElements``).
    public var noiseLimit: Double

    /// The defaults: 64 samples, seed 0, `test_near`'s tolerances against autograd (`1e-3`
    /// relative, `1e-5` absolute), `1e-2` against finite differences plus three times their
    /// measured error (which for a Float forward is about `1e-5` to `1e-2` of the largest
    /// gradient); a row whose allowances go above a tenth of its largest gradient fails, since
    /// finite differences cannot check it.
    public init(
        samples: Int = 64, seed: UInt64 = 0, relativeTolerance: Float = 1e-3, absoluteTolerance: Float = 1e-5,
        finiteDifferenceTolerance: Double = 1e-2, noiseFactor: Double = 3, noiseLimit: Double = 0.1
    ) {
        self.samples = samples
        self.seed = seed
        self.relativeTolerance = relativeTolerance
        self.absoluteTolerance = absoluteTolerance
        self.finiteDifferenceTolerance = finiteDifferenceTolerance
        self.noiseFactor = noiseFactor
        self.noiseLimit = noiseLimit
    }
}

/// One tensor of a gradient check: its three gradients compared.
public struct GradientCheckRow: Sendable, Codable {
    /// The tensor's name: `x`, `w1`, `b1`, `w2`, `b2`, … for the seed's layers, else `x`,
    /// `layers.0.w`, `layers.0.b`, … .
    public let name: String
    /// The tensor's shape.
    public let shape: [Int]
    /// The shape of the seed's `.g` on this tensor (`nil` if the manual backward did not set it).
    public let manualShape: [Int]?
    /// The largest `|.g - .grad|` (NaN when `.g` is missing or of another shape).
    public let maxManualAutogradDifference: Double
    /// `.g` against `.grad`, as `test_near` (`nil` when `.g` is missing).
    public let manualVersusAutograd: NearReport?
    /// How many elements finite differences checked.
    public let checkedElements: Int
    /// How many of them move a piecewise layer onto another piece at `x ± 2h` (a ReLU input
    /// crosses 0, a pooling window's maximum moves): estimated, as every element, on the pieces
    /// frozen at the point checked, each continued past its kink.
    public let crossingElements: Int
    /// How many of them move a layer that sits exactly on a kink at the point checked onto a
    /// different piece at `x + 2h` and at `x - 2h` (a ReLU input exactly 0, a tied maximum): the
    /// loss has no derivative there, and the estimate on the frozen pieces checks the backward's
    /// convention (ReLU's derivative 0 at 0, the first of tied maxima).
    public let atKinkElements: Int
    /// How many of them have a noise allowance (see ``GradientCheckRow/FiniteDifferenceComparison``)
    /// above ``GradientCheckOptions/noiseLimit`` times the larger of the tensor's largest gradient
    /// and its largest estimate: finite differences cannot check them, and the row fails unless
    /// this is 0 (a loss too large or too rough for the Float forward, not a wrong gradient).
    public let noisyElements: Int
    /// `.g` against the finite differences (`nil` when `.g` is missing or of another shape).
    public let manualVersusFiniteDifferences: FiniteDifferenceComparison?
    /// `.grad` against the finite differences.
    public let autogradVersusFiniteDifferences: FiniteDifferenceComparison
    /// Why the row fails, one sentence each; empty when it passes.
    public let problems: [String]
    /// Whether every comparison of this row passed (``problems`` is empty).
    public let passed: Bool

    /// A gradient against finite differences, on the elements checked.
    ///
    /// With `S = max_i max(|gradient_i|, |estimate_i|)` over the elements checked (or the model's
    /// largest gradient, for a gradient zero but for rounding), and `a_i` the measured error of
    /// estimate `i` (its noise allowance: `noiseFactor · max(|D_i(2h) - D_i(h)|, m)`, `m` the
    /// median of `|D(2h) - D(h)|` over the tensor's elements estimated, ``GradientCheckOptions``'s
    /// `noiseFactor` 3 by default), an element passes when
    ///
    ///     |gradient_i - estimate_i|  <=  finiteDifferenceTolerance · S  +  a_i.
    public struct FiniteDifferenceComparison: Sendable, Codable {
        /// The largest error relative to the size of the gradient:
        /// `max_i |gradient_i - estimate_i| / S` over the elements checked (0 when none were or
        /// all are 0; NaN when a value is).
        ///
        /// Measured against the tensor's largest element rather than each element's own size:
        /// the finite differences' rounding error is about the same for every element of a
        /// tensor, so an element whose gradient is nearly 0 would otherwise show a large relative
        /// error that means nothing.
        public let maxRelativeError: Double
        /// The largest noise allowance, `max_i a_i / S`: how far above the tolerance the finite
        /// differences let an element be, because they cannot measure closer.
        public let maxRelativeNoise: Double
        /// The element furthest beyond its allowance, `max_i (|gradient_i - estimate_i| - a_i)`
        /// (the closest to it when all pass): its index.
        public let worstIndex: [Int]?
        /// The gradient at ``worstIndex``.
        public let worstGradient: Double?
        /// The finite-difference estimate at ``worstIndex``.
        public let worstEstimate: Double?
        /// The noise allowance `a_i` at ``worstIndex``.
        public let worstNoise: Double?
        /// Whether every element is within tolerance plus its allowance.
        public let passed: Bool
    }
}

/// The kinks of one piecewise layer at the point checked.
public struct GradientCheckKinks: Sendable, Codable, Equatable {
    /// The layer's position in `model.layers`.
    public let layer: Int
    /// The layer's type: `ReLU`, `LeakyReLU`, `MaxPool2d`, or one's own.
    public let kind: String
    /// How many of its elements sit exactly on a kink (a negative code of ``PiecewiseLayer/pieces``):
    /// inputs exactly 0 for ReLU and LeakyReLU, windows whose maximum is tied for max pooling.
    public let count: Int
}

/// The result of ``gradientCheck(_:x:y:options:)``: one row per tensor, and the kinks met.
public struct GradientCheckReport: Sendable, Codable {
    /// The loss at the given weights.
    public let loss: Float
    /// One row per tensor: `x`, then each layer's parameters (not its buffers).
    public let rows: [GradientCheckRow]
    /// Per piecewise layer, how many of its elements sit exactly on a kink at the point checked
    /// (ReLU and LeakyReLU inputs exactly 0, tied maxima of max pooling): there the loss has no
    /// derivative, and the backward's is a convention, the one of the piece the finite
    /// differences keep frozen.
    public let kinks: [GradientCheckKinks]
    /// The options the check ran with.
    public let options: GradientCheckOptions

    /// Whether every row passed.
    public let passed: Bool

    /// How many elements sit exactly on a kink, over all piecewise layers.
    public var kinkCount: Int { kinks.reduce(0) { $0 + $1.count } }
}

/// Checks a model's hand-written gradients against autograd and finite differences.
///
/// On the very tensors given (so that `.g` and `.grad` can be compared on the same objects):
/// 1. evaluates the loss at `x` and the weights, and reads the pieces of every
///    ``PiecewiseLayer`` there (ReLU's and LeakyReLU's input signs, max pooling's maxima); from
///    then on every `Dropout` keeps the mask of that forward pass (`freezesMask`), and every
///    piecewise layer its pieces (`freezesPieces`: ReLU's mask, max pooling's winners), so that
///    every later forward pass computes the same function, one without kinks;
/// 2. estimates the gradient of that function by central differences for each tensor (every
///    element of a small one, a seeded sample of `options.samples` elements of a large one),
///    `D(2h)` with ``finiteDifferenceStep(at:)``'s `h`, and `D(h)` for its error; the function
///    equals the loss where no piece changes, so its derivative at the point is the loss's (or,
///    where the point sits on a kink, the one of the piece the backward differentiates);
/// 3. turns the pieces loose again, sets `requiresGrad` on `x` and the parameters, runs
///    `loss = model(x, y)`, then the seed's `model.backward()` (recording off) for `.g`, then
///    `loss.backward()` for `.grad`;
///    (before that, the same with the loss's gradient scaled by 0.8 and by 1.3, which measures
///    how far rounding moves each gradient);
/// 4. compares `.g` with `.grad` (``near(_:_:relativeTolerance:absoluteTolerance:)``, on the
///    tensor's own scale, allowing four times that rounding) and each with the finite
///    differences, relative to the tensor's largest gradient, or to the model's largest when the
///    tensor's is below a millionth of it or the finite differences find it zero (a gradient zero
///    but for rounding), allowing each element its measured error
///    (``GradientCheckRow/FiniteDifferenceComparison``).
///
/// The loss of the finite differences is computed by the model's layers in Float and, for `Mse`
/// and `CrossEntropy`, summed in Double from the model's output, so that its rounding stays far
/// below the differences measured (other losses are evaluated in Float). Afterwards
/// `requiresGrad` is as it was, `.grad` and `.g` hold the gradients, and the layers hold the
/// forward pass of step 3. The model's buffers (batch norm's running statistics) hold what they
/// held before, and each dropout's `freezesMask`, each piecewise layer's `freezesPieces` (when on,
/// on the pieces of step 3) and the `firstTrainableLayer`'s `needsInputGradient` (turned on for `x.g`) are
/// as they were. The layers' modes
/// are not changed: a model in training mode is checked in training mode (batch norm on the
/// batch's statistics, dropout with a mask).
///
/// Rows are named `x`, then, for a model of the seed's layers (`Lin`, `ReLU` and layers of one's
/// own), `w1`, `b1`, `w2`, `b2`, … for a `Lin` and layers with two parameters and `p3.1`, `p3.2`, …
/// for others (the third layer with parameters); for a model with any other layer of this
/// library (`Conv2d`, `BatchNorm`, `Tanh`, …), by their checkpoint names `layers.I.NAME`
/// (``Model/namedParameters``).
/// - Parameters:
///   - model: the model, whose layers' `backward()` write `.g`.
///   - x: the inputs, `(n, m)` or `(n, c, h, w)`, contiguous.
///   - y: the targets, as the model's loss expects them (`(n)` for `Mse` and `CrossEntropy`).
///   - options: sampling and tolerances.
/// - Precondition: `x` and every parameter are contiguous, and the shapes fit the model
///   (callers validate user files before).
public func gradientCheck(
    _ model: Model, x: Tensor, y: Tensor, options: GradientCheckOptions = GradientCheckOptions()
) -> GradientCheckReport {
    let named = GradientCheck.namedTensors(model, x: x)
    for (name, tensor) in named {
        precondition(tensor.isContiguous, "gradientCheck: \(name) of shape \(tensor.shape) is a non-contiguous view")
    }
    let state = GradientCheck.SavedState(model, tensors: named.map(\.tensor))
    defer { state.restore() }

    // 1. The pieces at the given point, recording off; dropout masks and pieces frozen from then on.
    let pieces = GradMode.withNoGrad {
        _ = GradientCheck.loss(model, x: x, y: y)
        return GradientCheck.Pieces(model)
    }
    state.freezeDropoutMasks()
    state.freezePieces(true)

    // 2. Finite differences, element by element.
    var estimates: [GradientCheck.Estimates] = []
    for (k, (_, tensor)) in named.enumerated() {
        var generator = RandomGenerator(seed: options.seed &+ UInt64(k))
        let coordinates = finiteDifferenceCoordinates(
            count: tensor.count, samples: options.samples, generator: &generator)
        var result = GradientCheck.Estimates()
        for index in coordinates {
            GradientCheck.estimate(
                model, x: x, y: y, tensor: tensor, index: index, pieces: pieces, into: &result)
        }
        estimates.append(result)
    }
    state.freezePieces(false)

    // 3. The manual and the autograd gradients, from one recorded forward pass; before it, the
    // same passes with the loss's gradient scaled (`GradientCheck.roundingScales`), whose
    // gradients, scaled back, differ from these by their rounding alone.
    for (_, tensor) in named { tensor.requiresGrad = true }
    func backwardPasses(scale: Float) -> Tensor {
        for (_, tensor) in named {
            tensor.zeroGrad()
            tensor.g = nil
        }
        let loss = model(x, y)
        GradMode.withNoGrad { model.backward(scalingLossGradientBy: scale) }
        (scale == 1 ? loss : loss * scale).backward()
        return loss
    }
    let scaled = GradientCheck.roundingScales.map { scale in
        _ = backwardPasses(scale: scale)
        return (scale, named.map { ($0.tensor.g?.values, $0.tensor.grad?.values) })
    }
    let loss = backwardPasses(scale: 1)

    // 4. The comparisons.
    let largestGradient = named.reduce(Float(0)) { Swift.max($0, GradientCheck.largestMagnitude($1.tensor.grad)) }
    var rows: [GradientCheckRow] = []
    for (k, ((name, tensor), estimate)) in zip(named, estimates).enumerated() {
        let rounding = scaled.reduce(0.0) { noise, pass in
            Swift.max(
                noise, GradientCheck.rounding(of: tensor.g, scaled: pass.1[k].0, by: pass.0),
                GradientCheck.rounding(of: tensor.grad, scaled: pass.1[k].1, by: pass.0))
        }
        rows.append(
            GradientCheck.row(
                name: name, tensor: tensor, estimates: estimate, largestGradient: largestGradient, loss: loss.item(),
                rounding: rounding, options: options))
    }
    return GradientCheckReport(
        loss: loss.item(), rows: rows, kinks: pieces.kinkCounts, options: options,
        passed: rows.allSatisfy(\.passed))
}

/// The steps of ``gradientCheck(_:x:y:options:)``.
enum GradientCheck {
    /// `x`, then every parameter, with its name (each tensor object once): the seed's names
    /// (`w1`, `b1`, …) for a model of the seed's layers, checkpoint names (`layers.I.NAME`)
    /// otherwise.
    static func namedTensors(_ model: Model, x: Tensor) -> [(name: String, tensor: Tensor)] {
        var result: [(name: String, tensor: Tensor)] = [("x", x)]
        var seen: Set<ObjectIdentifier> = [ObjectIdentifier(x)]
        if !usesSeedNames(model) {
            for (name, parameter) in model.namedParameters where seen.insert(ObjectIdentifier(parameter)).inserted {
                result.append((name, parameter))
            }
            return result
        }
        var layerNumber = 0
        for layer in model.layers where !layer.parameters.isEmpty {
            layerNumber += 1
            let parameters = layer.parameters
            for (i, parameter) in parameters.enumerated() where seen.insert(ObjectIdentifier(parameter)).inserted {
                if parameters.count == 2 || layer is Lin {  // (a Lin without a bias: `w1` alone)
                    result.append((i == 0 ? "w\(layerNumber)" : "b\(layerNumber)", parameter))
                } else {
                    result.append(("p\(layerNumber).\(i + 1)", parameter))
                }
            }
        }
        return result
    }

    /// Whether the rows keep the seed's names: no layer is one of the library's layers beyond the
    /// seed's `Lin` and `ReLU` (layers of one's own, such as the tests' deliberately wrong ones,
    /// keep them too), so that the seed's reports read as they always have.
    static func usesSeedNames(_ model: Model) -> Bool {
        !model.layers.contains { layer in
            layer is Conv2d || layer is MaxPool2d || layer is AvgPool2d || layer is Flatten || layer is Dropout
                || layer is BatchNorm || layer is Tanh || layer is Sigmoid || layer is LeakyReLU || layer is GELU
                || layer is SiLU || layer is Hardtanh
        }
    }

    /// What the check changes on the model for its duration, and puts back: `requiresGrad` of the
    /// tensors checked, the buffers' values, each dropout's `freezesMask`, each piecewise layer's
    /// `freezesPieces` (turned off until the check freezes them), and the first trainable layer's
    /// `needsInputGradient` (on, so that the manual backward writes `x.g`).
    struct SavedState {
        let tensors: [Tensor]
        let requiresGrad: [Bool]
        let buffers: [(tensor: Tensor, values: [Float])]
        let dropouts: [(layer: Dropout, freezesMask: Bool)]
        let piecewise: [(layer: any PiecewiseLayer, freezesPieces: Bool)]
        let first: (layer: any InputGradientSkipping, needsInputGradient: Bool)?

        /// Saves the state, turns the first trainable layer's input gradient on and every piecewise layer's
        /// frozen pieces off.
        init(_ model: Model, tensors: [Tensor]) {
            self.tensors = tensors
            requiresGrad = tensors.map(\.requiresGrad)
            buffers = model.namedBuffers.map { ($0.tensor, $0.tensor.values) }
            dropouts = model.layers.compactMap { $0 as? Dropout }.map { ($0, $0.freezesMask) }
            piecewise = model.layers.compactMap { $0 as? any PiecewiseLayer }.map { ($0, $0.freezesPieces) }
            first = model.firstTrainableLayer.map { ($0, $0.needsInputGradient) }
            first?.layer.needsInputGradient = true
            freezePieces(false)
        }

        /// Makes every dropout reuse the mask of its last forward pass.
        func freezeDropoutMasks() {
            for (layer, _) in dropouts { layer.freezesMask = true }
        }

        /// Freezes every piecewise layer on the pieces of its last forward pass, or lets them
        /// loose.
        func freezePieces(_ frozen: Bool) {
            for (layer, _) in piecewise { layer.freezesPieces = frozen }
        }

        /// Puts everything back as it was when saved.
        func restore() {
            for (tensor, flag) in zip(tensors, requiresGrad) { tensor.requiresGrad = flag }
            for (tensor, values) in buffers {
                tensor.withUnsafeMutableBufferPointer { buffer in
                    for i in buffer.indices { buffer[i] = values[i] }
                }
            }
            for (layer, flag) in dropouts { layer.freezesMask = flag }
            for (layer, flag) in piecewise { layer.freezesPieces = flag }
            if let (layer, flag) = first { layer.needsInputGradient = flag }
        }
    }

    /// The pieces of every ``PiecewiseLayer`` at the point checked, to tell when a perturbation
    /// moves one onto another piece (across a kink of the loss) or moves one that sits exactly on
    /// a kink.
    struct Pieces {
        /// The model's piecewise layers.
        let layers: [any PiecewiseLayer]
        /// Their positions in `model.layers`.
        let positions: [Int]
        /// For each, its pieces at the point checked.
        let codes: [[Int32]]
        /// The (layer, element) positions of the pieces that are on a kink there (negative codes).
        let kinks: [(layer: Int, element: Int)]
        /// Per piecewise layer, how many of its pieces are on a kink.
        let kinkCounts: [GradientCheckKinks]

        /// Reads the pieces from the layers' last forward pass (call right after one).
        init(_ model: Model) {
            let piecewise = model.layers.enumerated().compactMap { index, layer in
                (layer as? any PiecewiseLayer).map { (index, $0) }
            }
            layers = piecewise.map(\.1)
            positions = piecewise.map(\.0)
            // One code per element of each layer's output, kept for the whole check: a deep stack
            // of small layers adds up (300,000 ReLUs of 2 × 784 are 1.9 GB), so ask first.
            let codeBytes = layers.reduce(0) { $0 + 4 * ($1.out?.count ?? 0) + 32 }
            Tensor.checkAllocatable(bytes: codeBytes, for: "the pieces of the piecewise layers")
            codes = layers.map(\.pieces)
            kinkCounts = zip(layers, zip(positions, codes)).map { layer, entry in
                GradientCheckKinks(
                    layer: entry.0, kind: "\(type(of: layer))", count: entry.1.reduce(0) { $0 + ($1 < 0 ? 1 : 0) })
            }
            // A deep stack of ReLUs can sit on millions of kinks (each layer's zeros pass on as
            // zeros): ask for the list's memory first, as the arrays sized from outside do.
            let total = kinkCounts.reduce(0) { $0 + $1.count }
            Tensor.checkAllocatable(
                bytes: total * MemoryLayout<(layer: Int, element: Int)>.stride, for: "the list of the kinks checked")
            var kinks: [(layer: Int, element: Int)] = []
            kinks.reserveCapacity(total)
            for (layer, codes) in codes.enumerated() {
                for (element, code) in codes.enumerated() where code < 0 { kinks.append((layer, element)) }
            }
            self.kinks = kinks
        }

        /// After a forward pass: whether a piece changed, and which of the pieces that were on a
        /// kink changed (as positions in ``kinks``).
        func compare() -> Change {
            var change = Change()
            var kink = 0  // the position in `kinks` of the next negative code
            for (layer, original) in codes.enumerated() {
                let now = layers[layer].pieces
                guard now != original else {
                    kink += kinkCounts[layer].count
                    continue
                }
                change.crossed = true
                for (element, code) in original.enumerated() where code < 0 {
                    if now[element] != code { change.movedKinks.insert(kink) }
                    kink += 1
                }
            }
            return change
        }

        /// What changed after a forward pass at a perturbed point.
        struct Change {
            /// Whether any piece differs from the point checked.
            var crossed = false
            /// Which pieces that were on a kink differ (positions in ``Pieces/kinks``).
            var movedKinks: Set<Int> = []
        }
    }

    /// The finite differences of one tensor, and the kinks their steps met.
    struct Estimates {
        /// The row-major positions estimated.
        var indices: [Int] = []
        /// The estimates `D(2h)`, in the order of `indices`.
        var values: [Double] = []
        /// `|D(2h) - D(h)|` for each, in the order of `indices`.
        var differences: [Double] = []
        /// How many move a piece at `x ± 2h` (estimated on the frozen pieces all the same).
        var crossing = 0
        /// How many move a layer sitting exactly on a kink onto other pieces, both ways.
        var atKink = 0

        /// Each estimate's noise allowance, `a_i = factor · max(|D_i(2h) - D_i(h)|, m)`, `m` the
        /// median of `|D(2h) - D(h)|` over the elements estimated.
        func allowances(factor: Double) -> [Double] {
            let sorted = differences.sorted()
            guard !sorted.isEmpty else { return [] }
            let middle = sorted.count / 2
            let median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
            return differences.map { factor * Swift.max($0, median) }
        }
    }

    /// Estimates one element by central differences of the loss on the frozen pieces, at twice the
    /// step `h` of ``finiteDifferenceStep(at:)`` and at `h`: `D(2h)` is the estimate, and
    /// `|D(2h) - D(h)|` measures its error. With `δ` the rounding error of the loss evaluated and
    /// `c h²` the truncation error of `D(h)` (`c = ∂³loss/∂x³ / 6`),
    ///
    ///     D(2h) = ∂loss/∂x + 4 c h² ± δ / 2h
    ///     D(h)  = ∂loss/∂x +   c h² ± δ / h
    ///
    /// so `|D(2h) - D(h)|` is `3 c h²` where truncation dominates, and about `δ / h`, twice the
    /// estimate's own rounding error, where rounding does. The rounding is not independent noise
    /// from one point to the next, though, so this is a measurement, not a bound: on convnets with
    /// batch norm and on MLPs (`x` of the cnn preset, of `conv 8 3 pad 1, batchnorm, relu,
    /// maxpool 2, flatten, lin 10` on 64 and 512 rows, of the mlp preset on 256 rows; every
    /// parameter; 64 elements each), `|D(2h) - ∂loss/∂x|` was at most 1.93 times the larger of
    /// the element's `|D(2h) - D(h)|` and its median over the tensor for the inputs, where rounding
    /// dominates, and at most 2.9 times for parameters whose error was below `1e-4` of their
    /// largest gradient anyway; hence ``GradientCheckOptions/noiseFactor`` 3.
    ///
    /// Also counts whether the element moves a piece at `x ± 2h`, and whether it moves a layer
    /// sitting exactly on a kink onto other pieces on both sides (a ReLU input exactly 0 moved up
    /// and down, a tie broken either way). A kink moved on one side only is not a kink of the
    /// loss along this element: a max pooling window of ReLU zeros is tied, yet the loss is
    /// smooth until one of them turns positive.
    static func estimate(
        _ model: Model, x: Tensor, y: Tensor, tensor: Tensor, index: Int, pieces: Pieces,
        into result: inout Estimates
    ) {
        var events: [Pieces.Change] = []
        let evaluate = {
            let value = loss(model, x: x, y: y)
            events.append(pieces.compare())
            return value
        }
        let h = finiteDifferenceStep(at: tensor.withUnsafeBufferPointer { $0[index] })
        let estimate = finiteDifference(of: evaluate, withRespectTo: tensor, at: index, scheme: .central, step: 2 * h)
        let (above, below) = (events[0], events[1])  // at x + 2h and x - 2h
        if above.crossed || below.crossed { result.crossing += 1 }
        if !above.movedKinks.isDisjoint(with: below.movedKinks) { result.atKink += 1 }
        let finer = finiteDifference(
            of: { loss(model, x: x, y: y) }, withRespectTo: tensor, at: index, scheme: .central, step: h)
        result.indices.append(index)
        result.values.append(estimate)
        result.differences.append(estimate == finer ? 0 : Swift.abs(estimate - finer))
    }

    /// The model's loss at the current values, for finite differences: the layers in Float, and
    /// the loss summed in Double from the model's output where the loss can
    /// (``LossInDouble``), else in Float.
    static func loss(_ model: Model, x: Tensor, y: Tensor) -> Double {
        let out = model.predict(x)
        if let loss = model.loss as? any LossInDouble, let value = loss.lossInDouble(out, y) { return value }
        return Double(model.loss(out, y).item())
    }

    /// The largest gradient of a tensor, relative to the largest of the model's, at or below which
    /// finite differences take the tensor's gradient for zero but for rounding (see
    /// ``row(name:tensor:estimates:largestGradient:loss:rounding:options:)``).
    static let negligibleGradient: Float = 1e-6

    /// The factors the loss's gradient is scaled by in the backward passes that measure each
    /// gradient's rounding: not powers of two, so that every product and sum after the first
    /// rounds differently, and two of them, so that one draw that happens to round alike does not
    /// hide the rounding.
    static let roundingScales: [Float] = [0.8, 1.3]

    /// The manual-against-autograd allowance, in units of the measured rounding (``rounding(of:scaled:by:)``):
    /// the two gradients round independently, each by about what the measurement sees.
    static let roundingFactor: Double = 4

    /// The least measured rounding, as a share of a gradient's largest element, that lets a gradient
    /// below ``negligibleGradient`` of the largest be compared with autograd at the largest's scale.
    /// A gradient that is rounding (a cancellation) moves by a good part of itself when scaled; a
    /// product of small numbers moves by about Float's epsilon, 1.2e-7, of itself.
    static let roundingShare: Double = 1e-3

    /// `max_i |scaled_i / scale - gradient_i|`, in Double: how far a gradient moves when the
    /// backward pass computes `scale` times it (rounding alone, in exact arithmetic nothing); 0
    /// when either is missing or of another size.
    static func rounding(of gradient: Tensor?, scaled: [Float]?, by scale: Float) -> Double {
        guard let gradient, let scaled, gradient.count == scaled.count else { return 0 }
        let values = gradient.values
        var largest = 0.0
        for (a, b) in zip(values, scaled) {
            let difference = Swift.abs(Double(b) / Double(scale) - Double(a))
            if !(difference <= largest) { largest = difference }  // NaN propagates
        }
        return largest
    }

    /// Whether every element of `tensor` is finite (`true` for none).
    static func allFinite(_ tensor: Tensor?) -> Bool {
        guard let tensor else { return true }
        return tensor.withUnsafeBufferPointer { values in values.allSatisfy(\.isFinite) }
    }

    /// The largest `|element|` of `tensor` (0 for `nil`).
    static func largestMagnitude(_ tensor: Tensor?) -> Float {
        guard let tensor else { return 0 }
        return tensor.withUnsafeBufferPointer { values in values.reduce(Float(0)) { Swift.max($0, Swift.abs($1)) } }
    }

    /// Compares one tensor's `.g`, `.grad` and finite differences.
    ///
    /// NOTE: a gradient that is exactly zero in exact arithmetic (a convolution's bias before a
    /// batch norm, which subtracts every channel's mean) comes out of Float as rounding, and its
    /// finite differences as their own noise: relative to the tensor's own (zero) scale, they
    /// would never agree. The rounding is about `1e-8` of the model's largest gradient for
    /// autograd, but a Float sum over every position of the batch for the manual backward's
    /// `b.g = Σ out.g` (measured: `3.4e-6` of the largest gradient for `conv 8 3 pad 1,
    /// batchnorm, …` on 64 rows of 28×28, 50,176 terms per channel).
    ///
    /// `.g` against `.grad`: `test_near`'s tolerances on the tensor's own scale, and each element
    /// may also differ by ``roundingFactor`` times `rounding`, the largest change of either
    /// gradient when the backward passes compute it scaled (measured by
    /// ``gradientCheck(_:x:y:options:)``). The model's largest gradient is the scale instead when
    /// the tensor's gradient is below ``negligibleGradient`` of the largest or finite differences
    /// find it zero, and its measured rounding is at least ``roundingShare`` of it. A small
    /// gradient computed without cancellation (the first layer's, for inputs of 1e-7, which
    /// finite differences of a Float forward do not see) moves by Float's epsilon of itself, and
    /// is checked at its own scale: a negated or transposed one passed when every such tensor was
    /// compared at the largest's scale.
    ///
    /// Against finite differences, the tensor is measured against `largestGradient` (the largest
    /// `|.grad|` over all tensors checked) instead of its own largest element when every element
    /// of `.grad` and `.g` is at most ``negligibleGradient`` times it, or when finite differences
    /// find it zero: every estimate within its noise allowance of 0, and every element of `.grad`
    /// and `.g` within the largest allowance (the gradient is below what finite differences of a
    /// Float forward can measure).
    ///
    /// A loss or a gradient that is not finite fails the row: the tolerances scale with the
    /// largest gradient, and an infinite one passed anything (a negated `w.g` under a loss of inf).
    static func row(
        name: String, tensor: Tensor, estimates estimated: Estimates, largestGradient: Float, loss: Float,
        rounding: Double = 0, options: GradientCheckOptions
    ) -> GradientCheckRow {
        var problems: [String] = []
        let autograd: Tensor = tensor.grad ?? Tensor.zeros(tensor.shape)
        let manual: Tensor? = tensor.g
        if tensor.grad == nil {
            problems.append("autograd did not reach \(name) (the loss does not depend on it)")
        }
        if !loss.isFinite {
            problems.append("the loss is \(loss): gradients and finite differences of it cannot be compared")
        } else if !largestGradient.isFinite || !allFinite(autograd) || !allFinite(manual) {
            problems.append(
                "\(name).grad, \(name).g or the largest gradient of the model (\(Near.format(Double(largestGradient)))) "
                    + "is not finite: such gradients cannot be compared")
        }

        // Manual against autograd.
        var nearReport: NearReport?
        var maxDifference = Double.nan
        let ownScale = largestMagnitude(autograd)
        let gradientScale = Double(Swift.max(ownScale, largestMagnitude(manual)))
        let allowances = estimated.allowances(factor: options.noiseFactor)
        let measuredZero =
            !allowances.isEmpty && zip(estimated.values, allowances).allSatisfy { Swift.abs($0) <= $1 }
            && gradientScale <= allowances.max()!
        let isNegligible = gradientScale <= Double(negligibleGradient * largestGradient) || measuredZero
        let scale = isNegligible ? largestGradient : ownScale
        // Against autograd, a tiny gradient is taken for rounding only if its measured rounding is
        // a noticeable part of it: one computed without cancellation is checked at its own scale.
        let roundingLike = isNegligible && rounding >= roundingShare * gradientScale
        if let manual {
            let allowance = Swift.max(
                Double(options.absoluteTolerance * (roundingLike ? largestGradient : ownScale)),
                roundingFactor * (rounding.isFinite ? rounding : 0))
            let report = near(
                manual, autograd, relativeTolerance: options.relativeTolerance,
                absoluteTolerance: Float(Swift.min(allowance, Double(Float.greatestFiniteMagnitude))))
            nearReport = report
            if manual.shape != tensor.shape {
                problems.append("manual \(name).g has shape \(manual.shape), expected \(tensor.shape)")
            } else {
                maxDifference = report.maxAbsoluteError
                if !report.isNear { problems.append("manual \(name).g against autograd: \(report)") }
            }
        } else {
            problems.append("the manual backward did not set \(name).g")
        }

        // Whether finite differences can tell: every allowance within noiseLimit of the scale, the
        // largest of the gradient and of the estimates (a gradient wrongly near zero does not make
        // the estimates look noisy; estimates that are all noise do).
        let noiseScale = estimated.values.reduce(Double(scale)) { Swift.max($0, Swift.abs($1)) }
        let noisy = allowances.filter { !($0 <= options.noiseLimit * noiseScale) }
        if !noisy.isEmpty {
            problems.append(
                "finite differences cannot check \(name): \(noisy.count) of \(allowances.count) estimates have a "
                    + "measured noise above \(Near.format(options.noiseLimit)) × the largest gradient or estimate "
                    + "(up to \(Near.format(noisy.max() ?? .nan)) against \(Near.format(noiseScale)); the loss is too "
                    + "large or too rough for the Float forward)")
        }
        let checked = FiniteDifferenceEstimates(
            indices: estimated.indices, values: estimated.values, allowances: allowances)

        // Each against finite differences.
        let floor = isNegligible ? Double(largestGradient) : 0
        let autogradComparison = compare(
            autograd, name: "autograd \(name).grad", estimates: checked, floor: floor, options: options,
            problems: &problems)
        var manualComparison: GradientCheckRow.FiniteDifferenceComparison?
        if let manual, manual.shape == tensor.shape {
            manualComparison = compare(
                manual, name: "manual \(name).g", estimates: checked, floor: floor, options: options,
                problems: &problems)
        }
        return GradientCheckRow(
            name: name, shape: tensor.shape, manualShape: manual?.shape, maxManualAutogradDifference: maxDifference,
            manualVersusAutograd: nearReport, checkedElements: checked.indices.count,
            crossingElements: estimated.crossing, atKinkElements: estimated.atKink, noisyElements: noisy.count,
            manualVersusFiniteDifferences: manualComparison, autogradVersusFiniteDifferences: autogradComparison,
            problems: problems, passed: problems.isEmpty)
    }

    /// The estimates a comparison uses: positions, values and noise allowances, in one order.
    struct FiniteDifferenceEstimates {
        var indices: [Int] = []
        var values: [Double] = []
        var allowances: [Double] = []
    }

    /// `gradient` against the finite-difference `estimates`, relative to the largest of them or
    /// `floor` if larger, `S`: appends a problem unless every element has
    /// `|gradient_i - estimate_i| <= finiteDifferenceTolerance · S + allowance_i`.
    static func compare(
        _ gradient: Tensor, name: String, estimates: FiniteDifferenceEstimates, floor: Double = 0,
        options: GradientCheckOptions, problems: inout [String]
    ) -> GradientCheckRow.FiniteDifferenceComparison {
        let indices = estimates.indices
        var largest = floor
        var differences: [Double] = []
        gradient.withUnsafeBufferPointer { values in
            for (k, index) in indices.enumerated() {
                let (value, estimate) = (Double(values[index]), estimates.values[k])
                differences.append(value == estimate ? 0 : Swift.abs(value - estimate))
                largest = Swift.max(largest, Swift.abs(value), Swift.abs(estimate))
            }
        }
        guard !indices.isEmpty else {
            return .init(
                maxRelativeError: 0, maxRelativeNoise: 0, worstIndex: nil, worstGradient: nil, worstEstimate: nil,
                worstNoise: nil, passed: true)
        }
        // The worst element is the furthest beyond its allowance; a NaN is worse than any number.
        var worst = 0
        var worstExcess = -Double.infinity
        var maxDifference = 0.0
        var maxAllowance = 0.0
        for k in indices.indices {
            let excess = differences[k] - estimates.allowances[k]
            if (excess.isNaN && !worstExcess.isNaN) || excess > worstExcess {
                worst = k
                worstExcess = excess
            }
            if differences[k].isNaN || differences[k] > maxDifference { maxDifference = differences[k] }
            maxAllowance = Swift.max(maxAllowance, estimates.allowances[k])
        }
        let relative = { (value: Double) in value == 0 ? 0 : value / largest }
        let maxError = relative(maxDifference)
        let passed = worstExcess <= options.finiteDifferenceTolerance * largest
        let index = indices[worst]
        let value = Double(gradient.withUnsafeBufferPointer { $0[index] })
        let worstIndex = Near.index(ofFlat: index, in: gradient.shape)
        let (estimate, allowance) = (estimates.values[worst], estimates.allowances[worst])
        if !passed {
            problems.append(
                "\(name) against finite differences: \(Near.format(value)) against \(Near.format(estimate)) "
                    + "at \(worstIndex), relative error \(Near.format(relative(differences[worst]))) > "
                    + "\(Near.format(options.finiteDifferenceTolerance)) + the estimate's noise "
                    + "\(Near.format(relative(allowance)))")
        }
        return .init(
            maxRelativeError: maxError, maxRelativeNoise: relative(maxAllowance), worstIndex: worstIndex,
            worstGradient: value, worstEstimate: estimate, worstNoise: allowance, passed: passed)
    }
}
