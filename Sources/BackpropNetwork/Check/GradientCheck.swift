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
// and both are near the finite differences. Where a piecewise layer (ReLU, LeakyReLU, max pooling:
// a `PiecewiseLayer`) changes piece within the step (a kink of the loss), the difference is taken
// on the other side, or with a smaller step; elements that move a layer sitting exactly on a kink
// (a ReLU input exactly 0, a tied maximum) onto other pieces both ways are left out, and the
// report counts them. Dropout
// keeps one mask throughout, and batch norm's running statistics are put back afterwards.
// The loss of the finite differences is summed in Double (LossInDouble.swift). A tensor whose
// gradient is zero but for rounding (a convolution's bias before a batch norm) is measured
// against the model's largest gradient rather than its own.

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
    /// The largest relative error against finite differences that passes (see
    /// ``GradientCheckRow/FiniteDifferenceComparison/maxRelativeError``).
    public var finiteDifferenceTolerance: Double

    /// The defaults: 64 samples, seed 0, `test_near`'s tolerances against autograd (`1e-3`
    /// relative, `1e-5` absolute), `1e-2` against finite differences (whose own error in single
    /// precision is about `1e-4` to `1e-3` of the largest gradient).
    public init(
        samples: Int = 64, seed: UInt64 = 0, relativeTolerance: Float = 1e-3, absoluteTolerance: Float = 1e-5,
        finiteDifferenceTolerance: Double = 1e-2
    ) {
        self.samples = samples
        self.seed = seed
        self.relativeTolerance = relativeTolerance
        self.absoluteTolerance = absoluteTolerance
        self.finiteDifferenceTolerance = finiteDifferenceTolerance
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
    /// How many of them by a one-sided difference, because a piecewise layer changes piece
    /// within the step on the other side (a ReLU input crosses 0, a pooling window's maximum
    /// moves).
    public let oneSidedElements: Int
    /// How many sampled elements were left out because moving them up and down moves a layer
    /// that sits exactly on a kink onto a different piece each way (a ReLU input exactly 0, where
    /// the derivative is 0 by convention; a tied maximum), where finite differences are
    /// meaningless.
    public let excludedAtZero: Int
    /// How many sampled elements were left out because a piecewise layer changes piece on both
    /// sides, within the step and within a step eight times smaller.
    public let excludedCrossing: Int
    /// `excludedAtZero + excludedCrossing`.
    public let excludedElements: Int
    /// `.g` against the finite differences (`nil` when `.g` is missing or of another shape).
    public let manualVersusFiniteDifferences: FiniteDifferenceComparison?
    /// `.grad` against the finite differences.
    public let autogradVersusFiniteDifferences: FiniteDifferenceComparison
    /// Why the row fails, one sentence each; empty when it passes.
    public let problems: [String]
    /// Whether every comparison of this row passed (``problems`` is empty).
    public let passed: Bool

    /// A gradient against finite differences, on the elements checked.
    public struct FiniteDifferenceComparison: Sendable, Codable {
        /// The largest error relative to the size of the gradient:
        /// `max_i |gradient_i - estimate_i| / max_i max(|gradient_i|, |estimate_i|)` over the
        /// elements checked (0 when none were or all are 0; NaN when a value is).
        ///
        /// Measured against the tensor's largest element rather than each element's own size:
        /// the finite differences' rounding error is about the same for every element of a
        /// tensor, so an element whose gradient is nearly 0 would otherwise show a large relative
        /// error that means nothing.
        public let maxRelativeError: Double
        /// The element with that error: its index, the gradient and the estimate.
        public let worstIndex: [Int]?
        /// The gradient at ``worstIndex``.
        public let worstGradient: Double?
        /// The finite-difference estimate at ``worstIndex``.
        public let worstEstimate: Double?
    }
}

/// The result of ``gradientCheck(_:x:y:options:)``: one row per tensor, and what was left out.
public struct GradientCheckReport: Sendable, Codable {
    /// The loss at the given weights.
    public let loss: Float
    /// One row per tensor: `x`, then each layer's parameters (not its buffers).
    public let rows: [GradientCheckRow]
    /// How many elements of the piecewise layers sit exactly on a kink at the point checked
    /// (ReLU and LeakyReLU inputs exactly 0, tied maxima of max pooling): there the derivative is
    /// a convention, and finite differences through them are meaningless.
    public let reluInputsAtZero: Int
    /// The options the check ran with.
    public let options: GradientCheckOptions

    /// Whether every row passed.
    public let passed: Bool
    /// How many sampled elements were left out, over all rows.
    public let excludedElements: Int
}

/// Checks a model's hand-written gradients against autograd and finite differences.
///
/// On the very tensors given (so that `.g` and `.grad` can be compared on the same objects):
/// 1. evaluates the loss at `x` and the weights, and reads the pieces of every
///    ``PiecewiseLayer`` there (ReLU's and LeakyReLU's input signs, max pooling's winners); from
///    then on every `Dropout` keeps the mask of that forward pass (`freezesMask`), so that every
///    later forward pass computes the same function;
/// 2. estimates the gradient of the loss by finite differences for each tensor (every element
///    of a small one, a seeded sample of `options.samples` elements of a large one): central
///    differences when no piece changes at `x ± h`; a one-sided difference on the side where
///    none changes when pieces change on the other; the same with a smaller step when they
///    change on both sides; elements are left out when pieces still change on both sides, or
///    when they move a layer that sits exactly on a kink at `x` (a negative piece: ReLU's input
///    exactly 0, a tied maximum) onto different pieces at `x + h` and `x - h`, where the
///    backward's convention cannot be measured;
/// 3. sets `requiresGrad` on `x` and the parameters, runs `loss = model(x, y)`, then the seed's
///    `model.backward()` (recording off) for `.g`, then `loss.backward()` for `.grad`;
/// 4. compares `.g` with `.grad` (``near(_:_:relativeTolerance:absoluteTolerance:)``) and each
///    with the finite differences, relative to the tensor's largest gradient, or to the model's
///    largest when the tensor's is below a millionth of it (a gradient zero but for rounding).
///
/// The loss of the finite differences is computed by the model's layers in Float and, for `Mse`
/// and `CrossEntropy`, summed in Double from the model's output, so that its rounding stays far
/// below the differences measured (other losses are evaluated in Float). Afterwards
/// `requiresGrad` is as it was, `.grad` and `.g` hold the gradients, and the layers hold the
/// forward pass of step 3. The model's buffers (batch norm's running statistics) hold what they
/// held before, and each dropout's `freezesMask` and the first layer's `needsInputGradient`
/// (turned on for `x.g`) are as they were. The layers' modes are not changed: a model in training
/// mode is checked in training mode (batch norm on the batch's statistics, dropout with a mask).
///
/// Rows are named `x`, then, for a model of the seed's layers (`Lin`, `ReLU` and layers of one's
/// own), `w1`, `b1`, `w2`, `b2`, … for layers with two parameters (a `Lin`) and `p3.1`, `p3.2`, …
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

    // 1. The pieces at the given point, recording off; dropout masks frozen from then on.
    let pieces = GradMode.withNoGrad {
        _ = GradientCheck.loss(model, x: x, y: y)
        return GradientCheck.Pieces(model)
    }
    state.freezeDropoutMasks()

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

    // 3. The manual and the autograd gradients, from one recorded forward pass.
    for (_, tensor) in named {
        tensor.requiresGrad = true
        tensor.zeroGrad()
        tensor.g = nil
    }
    let loss = model(x, y)
    GradMode.withNoGrad { model.backward() }
    loss.backward()

    // 4. The comparisons.
    let largestGradient = named.reduce(Float(0)) { Swift.max($0, GradientCheck.largestMagnitude($1.tensor.grad)) }
    var rows: [GradientCheckRow] = []
    for ((name, tensor), estimate) in zip(named, estimates) {
        rows.append(
            GradientCheck.row(
                name: name, tensor: tensor, estimates: estimate, largestGradient: largestGradient, options: options))
    }
    return GradientCheckReport(
        loss: loss.item(), rows: rows, reluInputsAtZero: pieces.kinks.count, options: options,
        passed: rows.allSatisfy(\.passed), excludedElements: rows.reduce(0) { $0 + $1.excludedElements })
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
                if parameters.count == 2 {
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
        }
    }

    /// What the check changes on the model for its duration, and puts back: `requiresGrad` of the
    /// tensors checked, the buffers' values, each dropout's `freezesMask`, and the first layer's
    /// `needsInputGradient` (on, so that the manual backward writes `x.g`).
    struct SavedState {
        let tensors: [Tensor]
        let requiresGrad: [Bool]
        let buffers: [(tensor: Tensor, values: [Float])]
        let dropouts: [(layer: Dropout, freezesMask: Bool)]
        let firstLin: (layer: Lin, needsInputGradient: Bool)?
        let firstConv: (layer: Conv2d, needsInputGradient: Bool)?

        /// Saves the state, and turns the first layer's input gradient on.
        init(_ model: Model, tensors: [Tensor]) {
            self.tensors = tensors
            requiresGrad = tensors.map(\.requiresGrad)
            buffers = model.namedBuffers.map { ($0.tensor, $0.tensor.values) }
            dropouts = model.layers.compactMap { $0 as? Dropout }.map { ($0, $0.freezesMask) }
            firstLin = (model.layers.first as? Lin).map { ($0, $0.needsInputGradient) }
            firstConv = (model.layers.first as? Conv2d).map { ($0, $0.needsInputGradient) }
            firstLin?.layer.needsInputGradient = true
            firstConv?.layer.needsInputGradient = true
        }

        /// Makes every dropout reuse the mask of its last forward pass.
        func freezeDropoutMasks() {
            for (layer, _) in dropouts { layer.freezesMask = true }
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
            if let (layer, flag) = firstLin { layer.needsInputGradient = flag }
            if let (layer, flag) = firstConv { layer.needsInputGradient = flag }
        }
    }

    /// The pieces of every ``PiecewiseLayer`` at the point checked, to tell when a perturbation
    /// moves one onto another piece (across a kink of the loss) or moves one that sits exactly on
    /// a kink.
    struct Pieces {
        /// The model's piecewise layers.
        let layers: [any PiecewiseLayer]
        /// For each, its pieces at the point checked.
        let codes: [[Int32]]
        /// The (layer, element) positions of the pieces that are on a kink there (negative codes).
        let kinks: [(layer: Int, element: Int)]

        /// Reads the pieces from the layers' last forward pass (call right after one).
        init(_ model: Model) {
            layers = model.layers.compactMap { $0 as? any PiecewiseLayer }
            codes = layers.map(\.pieces)
            var kinks: [(layer: Int, element: Int)] = []
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
                let changed = now != original
                if changed { change.crossed = true }
                for (element, code) in original.enumerated() where code < 0 {
                    if changed && now[element] != code { change.movedKinks.insert(kink) }
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

    /// The finite differences of one tensor, and what was left out.
    struct Estimates {
        /// The row-major positions estimated.
        var indices: [Int] = []
        /// The estimates, in the order of `indices`.
        var values: [Double] = []
        /// How many were one-sided (a piece changed on one side).
        var oneSided = 0
        /// How many were left out because they move a layer sitting exactly on a kink, both ways.
        var excludedAtZero = 0
        /// How many were left out because pieces changed on both sides.
        var excludedCrossing = 0
    }

    /// How much smaller the step of the second attempt is, when pieces change within the first
    /// step on both sides.
    static let retryStepDivisor: Float = 8

    /// Estimates one element by finite differences: central if no piece changes within the step,
    /// one-sided on the side where none does; if pieces change on both sides, the same again with
    /// a step ``retryStepDivisor`` times smaller. Left out if that fails too, or if the element
    /// moves a layer that sits exactly on a kink onto other pieces on both sides (a ReLU input
    /// exactly 0 moved up and down, a tie broken either way).
    ///
    /// A kink moved on one side only counts as a piece changing on that side: a max pooling
    /// window of ReLU zeros is tied, yet the loss is smooth until one of them turns positive.
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
        let fullStep = finiteDifferenceStep(at: tensor.withUnsafeBufferPointer { $0[index] })
        for step in [fullStep, fullStep / retryStepDivisor] {
            events = []
            let central = finiteDifference(of: evaluate, withRespectTo: tensor, at: index, scheme: .central, step: step)
            if !events[0].movedKinks.isDisjoint(with: events[1].movedKinks) {
                result.excludedAtZero += 1
                return
            }
            let (above, below) = (events[0].crossed, events[1].crossed)
            if !above && !below {
                result.indices.append(index)
                result.values.append(central)
                return
            }
            if above && below { continue }
            events = []
            let scheme: FiniteDifferenceScheme = above ? .backward : .forward
            let oneSided = finiteDifference(of: evaluate, withRespectTo: tensor, at: index, scheme: scheme, step: step)
            if !events.contains(where: \.crossed) {
                result.indices.append(index)
                result.values.append(oneSided)
                result.oneSided += 1
                return
            }
        }
        result.excludedCrossing += 1
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
    /// the tensor's gradient is zero but for rounding (see ``row(name:tensor:estimates:largestGradient:options:)``).
    static let negligibleGradient: Float = 1e-6

    /// The largest `|element|` of `tensor` (0 for `nil`).
    static func largestMagnitude(_ tensor: Tensor?) -> Float {
        guard let tensor else { return 0 }
        return tensor.withUnsafeBufferPointer { values in values.reduce(Float(0)) { Swift.max($0, Swift.abs($1)) } }
    }

    /// Compares one tensor's `.g`, `.grad` and finite differences.
    ///
    /// NOTE: a gradient that is exactly zero in exact arithmetic (a convolution's bias before a
    /// batch norm, which subtracts every channel's mean) comes out of Float as rounding, about
    /// `1e-8` of the model's largest gradient, and its finite differences as their own noise,
    /// about `1e-6`: relative to the tensor's own (zero) scale, they would never agree. When every
    /// element of `.grad` and `.g` is at most ``negligibleGradient`` times `largestGradient` (the
    /// largest `|.grad|` over all tensors checked), the tensor is measured against
    /// `largestGradient` instead of its own largest element, in both comparisons.
    static func row(
        name: String, tensor: Tensor, estimates estimated: Estimates, largestGradient: Float,
        options: GradientCheckOptions
    ) -> GradientCheckRow {
        let indices = estimated.indices
        let estimates = estimated.values
        var problems: [String] = []
        let autograd: Tensor = tensor.grad ?? Tensor.zeros(tensor.shape)
        let manual: Tensor? = tensor.g
        if tensor.grad == nil {
            problems.append("autograd did not reach \(name) (the loss does not depend on it)")
        }

        // Manual against autograd.
        var nearReport: NearReport?
        var maxDifference = Double.nan
        let ownScale = largestMagnitude(autograd)
        let isNegligible = Swift.max(ownScale, largestMagnitude(manual)) <= negligibleGradient * largestGradient
        let scale = isNegligible ? largestGradient : ownScale
        if let manual {
            let report = near(
                manual, autograd, relativeTolerance: options.relativeTolerance,
                absoluteTolerance: options.absoluteTolerance * scale)
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

        // Each against finite differences.
        let floor = isNegligible ? Double(largestGradient) : 0
        let autogradComparison = compare(
            autograd, name: "autograd \(name).grad", indices: indices, estimates: estimates, floor: floor,
            options: options, problems: &problems)
        var manualComparison: GradientCheckRow.FiniteDifferenceComparison?
        if let manual, manual.shape == tensor.shape {
            manualComparison = compare(
                manual, name: "manual \(name).g", indices: indices, estimates: estimates, floor: floor,
                options: options, problems: &problems)
        }
        return GradientCheckRow(
            name: name, shape: tensor.shape, manualShape: manual?.shape, maxManualAutogradDifference: maxDifference,
            manualVersusAutograd: nearReport, checkedElements: indices.count,
            oneSidedElements: estimated.oneSided, excludedAtZero: estimated.excludedAtZero,
            excludedCrossing: estimated.excludedCrossing,
            excludedElements: estimated.excludedAtZero + estimated.excludedCrossing,
            manualVersusFiniteDifferences: manualComparison, autogradVersusFiniteDifferences: autogradComparison,
            problems: problems, passed: problems.isEmpty)
    }

    /// `gradient` against the finite-difference `estimates` at `indices`, relative to the largest
    /// of them or `floor` if larger; appends a problem when the largest relative error is above
    /// tolerance.
    static func compare(
        _ gradient: Tensor, name: String, indices: [Int], estimates: [Double], floor: Double = 0,
        options: GradientCheckOptions, problems: inout [String]
    ) -> GradientCheckRow.FiniteDifferenceComparison {
        var worst = -1
        var maxDifference = 0.0
        var largest = floor
        gradient.withUnsafeBufferPointer { values in
            for (k, index) in indices.enumerated() {
                let value = Double(values[index])
                let difference = value == estimates[k] ? 0 : Swift.abs(value - estimates[k])
                largest = Swift.max(largest, Swift.abs(value), Swift.abs(estimates[k]))
                // A NaN is worse than any number, and stays the worst.
                let isWorse = worst < 0 || (difference.isNaN && !maxDifference.isNaN) || difference > maxDifference
                if isWorse {
                    maxDifference = difference
                    worst = k
                }
            }
        }
        let maxError = maxDifference == 0 ? 0 : maxDifference / largest
        guard worst >= 0 else {
            return .init(maxRelativeError: 0, worstIndex: nil, worstGradient: nil, worstEstimate: nil)
        }
        let index = indices[worst]
        let value = Double(gradient.withUnsafeBufferPointer { $0[index] })
        let worstIndex = Near.index(ofFlat: index, in: gradient.shape)
        if !(maxError <= options.finiteDifferenceTolerance) {
            problems.append(
                "\(name) against finite differences: relative error \(Near.format(maxError)) > "
                    + "\(Near.format(options.finiteDifferenceTolerance)) at \(worstIndex): "
                    + "\(Near.format(value)) against \(Near.format(estimates[worst]))")
        }
        return .init(
            maxRelativeError: maxError, worstIndex: worstIndex, worstGradient: value, worstEstimate: estimates[worst])
    }
}
