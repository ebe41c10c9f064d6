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
// and both are near the finite differences. Where a ReLU input crosses 0 within the step (a kink
// of the loss), the difference is taken on the other side, or with a smaller step; elements that
// move a ReLU input sitting exactly at 0 are left out, and the report counts them.

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
    /// The tensor's name: `x`, `w1`, `b1`, `w2`, `b2`, … .
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
    /// How many of them by a one-sided difference, because a ReLU input crosses 0 within the
    /// step on the other side.
    public let oneSidedElements: Int
    /// How many sampled elements were left out because moving them moves a ReLU input that is
    /// exactly 0 (where the derivative is 0 by convention and finite differences meaningless).
    public let excludedAtZero: Int
    /// How many sampled elements were left out because a ReLU input crosses 0 on both sides,
    /// within the step and within a step eight times smaller.
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
    /// One row per tensor: `x`, then each layer's parameters.
    public let rows: [GradientCheckRow]
    /// How many elements of the ReLU layers' inputs are exactly 0: there the derivative is taken
    /// as 0 by convention, and finite differences through them are meaningless.
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
/// 1. evaluates the loss at `x` and the weights, and the ReLU inputs' signs there;
/// 2. estimates the gradient of the loss by finite differences for each tensor (every element
///    of a small one, a seeded sample of `options.samples` elements of a large one): central
///    differences, or one-sided ones on the side where no ReLU input changes sign within the
///    step, or the same with a smaller step; elements are left out when an input still crosses
///    0 on both sides, or when they move a ReLU input that is exactly 0 (the convention
///    ReLU'(0) = 0 cannot be measured);
/// 3. sets `requiresGrad` on `x` and the parameters, runs `loss = model(x, y)`, then the seed's
///    `model.backward()` (recording off) for `.g`, then `loss.backward()` for `.grad`;
/// 4. compares `.g` with `.grad` (``near(_:_:relativeTolerance:absoluteTolerance:)``) and each
///    with the finite differences.
///
/// The loss of the finite differences is computed by the model's layers in Float and, when the
/// loss is `Mse`, averaged in Double from the model's output, so that its rounding stays far
/// below the differences measured. Afterwards `requiresGrad` is as it was, `.grad` and `.g` hold
/// the gradients, and the layers hold the forward pass of step 3.
///
/// Rows are named `x`, then `w1`, `b1`, `w2`, `b2`, … for layers with two parameters (a `Lin`),
/// `p3.1`, `p3.2`, … for others (the third layer with parameters).
/// - Parameters:
///   - model: the model, whose layers' `backward()` write `.g`.
///   - x: the inputs, `(n, m)`, contiguous.
///   - y: the targets, as the model's loss expects them (`(n)` for `Mse`).
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
    let savedRequiresGrad = named.map(\.tensor.requiresGrad)
    defer {
        for ((_, tensor), flag) in zip(named, savedRequiresGrad) { tensor.requiresGrad = flag }
    }

    // 1. The ReLU inputs' signs at the given point, recording off.
    let signs = GradMode.withNoGrad {
        _ = GradientCheck.loss(model, x: x, y: y)
        return GradientCheck.ReLUSigns(model)
    }

    // 2. Finite differences, element by element.
    var estimates: [GradientCheck.Estimates] = []
    for (k, (_, tensor)) in named.enumerated() {
        var generator = RandomGenerator(seed: options.seed &+ UInt64(k))
        let coordinates = finiteDifferenceCoordinates(
            count: tensor.count, samples: options.samples, generator: &generator)
        var result = GradientCheck.Estimates()
        for index in coordinates {
            GradientCheck.estimate(
                model, x: x, y: y, tensor: tensor, index: index, signs: signs, into: &result)
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
    var rows: [GradientCheckRow] = []
    for ((name, tensor), estimate) in zip(named, estimates) {
        rows.append(GradientCheck.row(name: name, tensor: tensor, estimates: estimate, options: options))
    }
    return GradientCheckReport(
        loss: loss.item(), rows: rows, reluInputsAtZero: signs.zeros.count, options: options,
        passed: rows.allSatisfy(\.passed), excludedElements: rows.reduce(0) { $0 + $1.excludedElements })
}

/// The steps of ``gradientCheck(_:x:y:options:)``.
enum GradientCheck {
    /// `x`, then every parameter, with its name (each tensor object once).
    static func namedTensors(_ model: Model, x: Tensor) -> [(name: String, tensor: Tensor)] {
        var result: [(name: String, tensor: Tensor)] = [("x", x)]
        var seen: Set<ObjectIdentifier> = [ObjectIdentifier(x)]
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

    /// The signs of every ReLU layer's input at the point checked, to tell when a perturbation
    /// moves one across 0 (where the loss has a kink) or moves one that is exactly 0.
    struct ReLUSigns {
        /// The model's ReLU layers.
        let relus: [ReLU]
        /// For each, whether each input element is positive at the point checked.
        let positive: [[Bool]]
        /// The (layer, element) positions of the inputs that are exactly 0 there.
        let zeros: [(layer: Int, element: Int)]

        /// Reads the signs from the layers' current inputs (call right after a forward pass).
        init(_ model: Model) {
            relus = model.layers.compactMap { $0 as? ReLU }
            var positive: [[Bool]] = []
            var zeros: [(layer: Int, element: Int)] = []
            for (layer, relu) in relus.enumerated() {
                let values = relu.inp.values
                positive.append(values.map { $0 > 0 })
                for (element, value) in values.enumerated() where value == 0 { zeros.append((layer, element)) }
            }
            self.positive = positive
            self.zeros = zeros
        }

        /// After a forward pass: whether an input changed sign, and whether an input that was
        /// exactly 0 moved.
        func compare() -> (crossed: Bool, movedZero: Bool) {
            var crossed = false
            for (relu, signs) in zip(relus, positive) where !crossed {
                crossed = relu.inp.withUnsafeBufferPointer { values in
                    zip(values, signs).contains { ($0 > 0) != $1 }
                }
            }
            let movedZero = zeros.contains { zero in
                relus[zero.layer].inp.withUnsafeBufferPointer { $0[zero.element] } != 0
            }
            return (crossed, movedZero)
        }
    }

    /// The finite differences of one tensor, and what was left out.
    struct Estimates {
        /// The row-major positions estimated.
        var indices: [Int] = []
        /// The estimates, in the order of `indices`.
        var values: [Double] = []
        /// How many were one-sided (a ReLU input crossed 0 on one side).
        var oneSided = 0
        /// How many were left out because they move a ReLU input that is exactly 0.
        var excludedAtZero = 0
        /// How many were left out because a ReLU input crossed 0 on both sides.
        var excludedCrossing = 0
    }

    /// How much smaller the step of the second attempt is, when a ReLU input crosses 0 within
    /// the first step on both sides.
    static let retryStepDivisor: Float = 8

    /// Estimates one element by finite differences: central if no ReLU input crosses 0 within
    /// the step, one-sided on the side where none does; if one does on both sides, the same
    /// again with a step ``retryStepDivisor`` times smaller. Left out if that fails too, or if the
    /// element moves a ReLU input that is exactly 0.
    static func estimate(
        _ model: Model, x: Tensor, y: Tensor, tensor: Tensor, index: Int, signs: ReLUSigns,
        into result: inout Estimates
    ) {
        var events: [(crossed: Bool, movedZero: Bool)] = []
        let evaluate = {
            let value = loss(model, x: x, y: y)
            events.append(signs.compare())
            return value
        }
        let fullStep = finiteDifferenceStep(at: tensor.withUnsafeBufferPointer { $0[index] })
        for step in [fullStep, fullStep / retryStepDivisor] {
            events = []
            let central = finiteDifference(of: evaluate, withRespectTo: tensor, at: index, scheme: .central, step: step)
            if events.contains(where: \.movedZero) {
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
            if !events.contains(where: { $0.crossed || $0.movedZero }) {
                result.indices.append(index)
                result.values.append(oneSided)
                result.oneSided += 1
                return
            }
        }
        result.excludedCrossing += 1
    }

    /// The model's loss at the current values, for finite differences: the layers in Float, and
    /// for `Mse` the mean of squares in Double from the model's output.
    static func loss(_ model: Model, x: Tensor, y: Tensor) -> Double {
        let out = model.predict(x)
        guard model.loss is Mse, out.count == y.count else { return Double(model.loss(out, y).item()) }
        return out.withUnsafeBufferPointer { output in
            y.withUnsafeBufferPointer { target in
                var total = 0.0
                for i in 0..<output.count {
                    let difference = Double(output[i]) - Double(target[i])
                    total += difference * difference
                }
                return total / Double(output.count)
            }
        }
    }

    /// Compares one tensor's `.g`, `.grad` and finite differences.
    static func row(
        name: String, tensor: Tensor, estimates estimated: Estimates, options: GradientCheckOptions
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
        if let manual {
            let scale = autograd.withUnsafeBufferPointer { values in
                values.reduce(Float(0)) { Swift.max($0, Swift.abs($1)) }
            }
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
        let autogradComparison = compare(
            autograd, name: "autograd \(name).grad", indices: indices, estimates: estimates, options: options,
            problems: &problems)
        var manualComparison: GradientCheckRow.FiniteDifferenceComparison?
        if let manual, manual.shape == tensor.shape {
            manualComparison = compare(
                manual, name: "manual \(name).g", indices: indices, estimates: estimates, options: options,
                problems: &problems)
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

    /// `gradient` against the finite-difference `estimates` at `indices`; appends a problem when
    /// the largest relative error is above tolerance.
    static func compare(
        _ gradient: Tensor, name: String, indices: [Int], estimates: [Double], options: GradientCheckOptions,
        problems: inout [String]
    ) -> GradientCheckRow.FiniteDifferenceComparison {
        var worst = -1
        var maxDifference = 0.0
        var largest = 0.0
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
