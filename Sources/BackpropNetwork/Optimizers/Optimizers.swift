import BackpropCore
import Foundation

// Optimizers update the parameters in place from the gradients that the layers' `backward()`
// wrote into `.g` (or, for a parameter without one, autograd's `.grad`, so that PyTorch's
// `loss.backward(); optimizer.step()` works as written). Each keeps its state (momentum, Adam's
// moments) as named tensors, so that a training run can be saved between two steps and resumed.
//
// Weight decay is decoupled (Loshchilov and Hutter, "Decoupled Weight Decay Regularization",
// 2019, PyTorch's AdamW): before the update, every weight matrix shrinks by `w ← w - lr·wd·w`.
// It is not added to the gradient, so it does not pass through momentum or Adam's scaling. For
// plain SGD the two forms are the same. Parameters of rank 1 (biases, batch norm's scale and
// shift) are not decayed; every parameter of rank 2 or more is, so a `Lin` bias given as a row
// `(1, nOut)` is decayed as a matrix (give biases as `(nOut)`, as every built-in layer does).

/// Something that updates parameters from their gradients `.g` (or `.grad` where `.g` is `nil`).
public protocol Optimizer: AnyObject {
    /// The tensors updated in place, in the order the state names refer to them.
    var parameters: [Tensor] { get }
    /// The step size `lr`: the one home of the learning rate. A `Trainer` takes the value it holds
    /// when the trainer is made as its schedule's peak, and sets it before every step.
    var learningRate: Float { get set }
    /// The decoupled weight decay `wd` in `w ← w - lr·wd·w`, applied to the parameters of rank 2
    /// or more only (weight matrices and kernels; not vectors such as biases).
    var weightDecay: Float { get set }
    /// Updates every parameter from its `.g`, or from autograd's `.grad` where `.g` is `nil`.
    /// - Precondition: each parameter has a `.g` or a `.grad` of its own shape.
    func step()
    /// The optimizer's state as named tensors (`"0.velocity"`, `"3.m"`, `"step"`): what must be
    /// saved, besides the parameters, to resume training exactly.
    var state: [String: Tensor] { get }
    /// Restores the state saved by ``state``.
    /// - Throws: `OptimizerStateError` naming a missing tensor or a wrong shape.
    func loadState(_ state: [String: Tensor]) throws
}

extension Optimizer {
    /// Forgets the gradients (`.g = nil` and `.grad = nil` on every parameter), PyTorch's
    /// `zero_grad(set_to_none=True)`.
    ///
    /// The seed's `backward()` assigns `.g` rather than adding to it, so for `.g` this is hygiene:
    /// a parameter that the next backward pass forgets to write cannot be updated with a stale
    /// gradient (the step stops instead). Autograd's `backward()` adds into `.grad`, as PyTorch's
    /// does, so with autograd this is needed between steps, as in PyTorch.
    public func zeroGrad() {
        for parameter in parameters {
            parameter.g = nil
            parameter.grad = nil
        }
    }
}

/// An optimizer state that does not fit the parameters it is loaded into.
public struct OptimizerStateError: Error, CustomStringConvertible {
    /// What is missing or wrong, naming the tensor, the expected and the found shape.
    public let description: String
}

/// The optimizers the command line offers.
public enum OptimizerKind: String, CaseIterable, Sendable, Codable {
    /// Plain stochastic gradient descent: `w ← w - lr·g`.
    case sgd
    /// SGD with momentum 0.9: `v ← 0.9·v + g`, `w ← w - lr·v`.
    case momentum
    /// Adam with β₁ = 0.9, β₂ = 0.999, ε = 1e-8.
    case adam

    /// A new optimizer of this kind over `parameters`.
    public func make(parameters: [Tensor], learningRate: Float, weightDecay: Float) -> any Optimizer {
        switch self {
        case .sgd: SGD(parameters, learningRate: learningRate, momentum: 0, weightDecay: weightDecay)
        case .momentum: SGD(parameters, learningRate: learningRate, momentum: 0.9, weightDecay: weightDecay)
        case .adam: Adam(parameters, learningRate: learningRate, weightDecay: weightDecay)
        }
    }
}

/// Stochastic gradient descent, with optional momentum (PyTorch's `torch.optim.SGD`, but for
/// weight decay: decoupled here, as the note at the top of this file says, where PyTorch's SGD adds
/// `wd·w` to the gradient; the two agree without momentum, up to rounding).
///
/// With momentum `μ`, for each parameter `w` with gradient `g`:
/// - `w ← w - lr·wd·w` (matrices only, when `wd > 0`)
/// - `v ← μ·v + g` (`v` starts at 0, so the first step has `v = g`)
/// - `w ← w - lr·v`
///
/// With `μ = 0`, this is the lesson's `w -= lr * w.g`.
public final class SGD: Optimizer {
    /// The tensors updated in place (their `.g` is read, else their `.grad`).
    public let parameters: [Tensor]
    /// The step size `lr` (a `Trainer` sets it before each step from its schedule).
    public var learningRate: Float
    /// The decoupled weight decay `wd` (matrices only).
    public var weightDecay: Float
    /// The momentum `μ`; 0 for plain SGD.
    public let momentum: Float
    /// One velocity per parameter, of its shape (none when `momentum == 0`).
    private var velocities: [Tensor]

    /// Creates the optimizer.
    /// - Precondition: every parameter is contiguous; `learningRate`, `momentum` and
    ///   `weightDecay` are not negative.
    public init(_ parameters: [Tensor], learningRate: Float, momentum: Float = 0, weightDecay: Float = 0) {
        checkHyperparameters(parameters, learningRate: learningRate, weightDecay: weightDecay, name: "SGD")
        precondition(momentum >= 0 && momentum < 1, "SGD: momentum \(momentum) must be in [0, 1)")
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.velocities = momentum > 0 ? parameters.map { Tensor.zeros(like: $0) } : []
    }

    /// Updates every parameter from its `.g` (else its `.grad`) by the formulas above.
    /// - Precondition: each parameter has a `.g` or a `.grad` of its own shape.
    public func step() {
        let lr = learningRate
        let mu = momentum
        for (index, w) in parameters.enumerated() {
            let decay = decayFactor(w, learningRate: learningRate, weightDecay: weightDecay)
            let velocity = momentum > 0 ? velocities[index].pointer : nil
            withGradient(of: w) { values, gradient in
                let (values, gradient) = (values.baseAddress!, gradient.baseAddress!)
                // One pass per element (Step.c: eight lanes at a time, each element's operations those
                // of the formulas above in order), large parameters on every core, one piece each: the
                // piece whose gradient that core computed (each element's update is the same either
                // way).
                Parallel.forEachThreadRange(w.count, minimumPerPiece: Optimizers.parallelPiece, grain: 8) { range in
                    let start = range.lowerBound
                    OptimizerKernels.sgd(
                        values + start, velocity: velocity.map { $0 + start }, gradient + start, count: range.count,
                        decay: decay, learningRate: lr, momentum: mu)
                }
            }
        }
    }

    /// `"i.velocity"` for each parameter `i` (nothing without momentum).
    public var state: [String: Tensor] {
        var result: [String: Tensor] = [:]
        for (index, velocity) in velocities.enumerated() { result["\(index).velocity"] = velocity }
        return result
    }

    /// Restores the tensors that ``state`` returned.
    /// - Throws: `OptimizerStateError` naming a missing tensor or one of the wrong shape.
    public func loadState(_ state: [String: Tensor]) throws {
        for index in velocities.indices {
            try copyState(state, name: "\(index).velocity", into: velocities[index])
        }
    }
}

/// Adam (Kingma and Ba, 2015), with decoupled weight decay (AdamW), as PyTorch computes it.
///
/// For each parameter `w` with gradient `g`, at step `t` (counting from 1):
/// - `w ← w - lr·wd·w` (matrices only, when `wd > 0`)
/// - `m ← β₁·m + (1 - β₁)·g`, `v ← β₂·v + (1 - β₂)·g²`
/// - `w ← w - (lr / (1 - β₁ᵗ)) · m / (√v / √(1 - β₂ᵗ) + ε)`
///
/// (PyTorch's arithmetic, except that `√v` is multiplied by `1 / √(1 - β₂ᵗ)`: one division per
/// element rather than two, which differs from PyTorch in the last bit at most.)
public final class Adam: Optimizer {
    /// The tensors updated in place (their `.g` is read, else their `.grad`).
    public let parameters: [Tensor]
    /// The step size `lr` (a `Trainer` sets it before each step from its schedule).
    public var learningRate: Float
    /// The decoupled weight decay `wd` (matrices only).
    public var weightDecay: Float
    /// The decay of the first moment, `β₁` (a Double, as PyTorch keeps it, so that `1 - β₂` is
    /// 0.001 and not the 0.00099998713 of `1 - Float(0.999)`).
    public let beta1: Double
    /// The decay of the second moment, `β₂`.
    public let beta2: Double
    /// Added to the denominator so that it is never 0, `ε`.
    public let epsilon: Float
    /// The number of steps taken, `t`.
    public private(set) var stepCount = 0
    /// The first moments `m`, one per parameter, of its shape.
    private let firstMoments: [Tensor]
    /// The second moments `v`, one per parameter, of its shape.
    private let secondMoments: [Tensor]

    /// Creates the optimizer; the moments start at zero.
    /// - Precondition: every parameter is contiguous; the hyperparameters are in range
    ///   (`0 ≤ β < 1`, `ε > 0`, `lr ≥ 0`, `wd ≥ 0`).
    public init(
        _ parameters: [Tensor], learningRate: Float, beta1: Double = 0.9, beta2: Double = 0.999,
        epsilon: Float = 1e-8, weightDecay: Float = 0
    ) {
        checkHyperparameters(parameters, learningRate: learningRate, weightDecay: weightDecay, name: "Adam")
        precondition(
            beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "Adam: betas (\(beta1), \(beta2)) must be in [0, 1)")
        precondition(epsilon > 0, "Adam: epsilon \(epsilon) must be positive")
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.firstMoments = parameters.map { Tensor.zeros(like: $0) }
        self.secondMoments = parameters.map { Tensor.zeros(like: $0) }
    }

    /// Updates every parameter from its `.g` (else its `.grad`) by the formulas above.
    /// - Precondition: each parameter has a `.g` or a `.grad` of its own shape.
    public func step() {
        stepCount += 1
        let t = Double(stepCount)
        let stepSize = Float(Double(learningRate) / (1 - Foundation.pow(beta1, t)))
        // √v̂ = √v / √(1 - β₂ᵗ), multiplied by the reciprocal (one division per element, not two).
        let inverseCorrection2 = Float(1 / (1 - Foundation.pow(beta2, t)).squareRoot())
        let (beta1, beta2) = (Float(self.beta1), Float(self.beta2))
        let (oneMinusBeta1, oneMinusBeta2) = (Float(1 - self.beta1), Float(1 - self.beta2))
        for (index, w) in parameters.enumerated() {
            let decay = decayFactor(w, learningRate: learningRate, weightDecay: weightDecay)
            let m = firstMoments[index].pointer
            let v = secondMoments[index].pointer
            let constants = OptimizerKernels.AdamStep(
                beta1: beta1, beta2: beta2, oneMinusBeta1: oneMinusBeta1, oneMinusBeta2: oneMinusBeta2, decay: decay,
                stepSize: stepSize, inverseCorrection2: inverseCorrection2, epsilon: epsilon)
            withGradient(of: w) { values, gradient in
                // One pass per element (Optimizers.c: eight lanes at a time, each element's operations
                // those of the formulas above in order), large parameters on every core, in pieces that
                // the cores take as they come free. What slows it in training is writing the lines of
                // `w` that the other core read in the forward product (`Benchmarks/adam_sharing.sh`:
                // 28 µs for half the MLP's first matrix, 87-110 µs after the other core read it). One
                // piece per core cannot avoid that while the forward cuts `w` by columns (the MLP epoch
                // measured the same), and a core that loses its time slice would delay it more.
                let (values, gradient) = (values.baseAddress!, gradient.baseAddress!)
                Parallel.forEachRange(w.count, minimumPerPiece: Optimizers.parallelPiece, grain: 8) { range in
                    let start = range.lowerBound
                    OptimizerKernels.adam(
                        values + start, m + start, v + start, gradient + start, count: range.count, step: constants)
                }
            }
        }
    }

    /// `"i.m"` and `"i.v"` for each parameter `i`, and `"step"` (a scalar holding `t`).
    public var state: [String: Tensor] {
        var result: [String: Tensor] = ["step": Tensor(Float(stepCount))]
        for index in parameters.indices {
            result["\(index).m"] = firstMoments[index]
            result["\(index).v"] = secondMoments[index]
        }
        return result
    }

    /// Restores the tensors that ``state`` returned.
    /// - Throws: `OptimizerStateError` naming a missing tensor or one of the wrong shape.
    public func loadState(_ state: [String: Tensor]) throws {
        // `Int(exactly:)`: a whole number that an Int holds (3e38 is whole, and converting it
        // with `Int(_:)` would trap).
        guard let step = state["step"], step.count == 1, step.item() >= 0, let count = Int(exactly: step.item())
        else {
            let found = state["step"].map { $0.count == 1 ? ", found \($0.item())" : ", found shape \($0.shape)" } ?? ""
            throw OptimizerStateError(
                description: "Adam state: missing or invalid \"step\" (expected a whole number of steps taken, "
                    + "from 0 to \(Int.max - 1)\(found))")
        }
        for index in parameters.indices {
            try copyState(state, name: "\(index).m", into: firstMoments[index])
            try copyState(state, name: "\(index).v", into: secondMoments[index])
            // A negative second moment (a damaged file) makes its square root NaN at the next step,
            // which then reads as a diverging run.
            let v = secondMoments[index]
            if let element = (0..<v.count).first(where: { !(v.pointer[$0] >= 0) }) {
                throw OptimizerStateError(
                    description: "optimizer state: tensor \"\(index).v\" holds \(v.pointer[element]) at element "
                        + "\(element); expected Adam's second moments, averages of squares, which are never negative")
            }
        }
        stepCount = count
    }
}

// MARK: - Shared steps

/// Stops unless the parameters can be updated in place and the hyperparameters make sense.
private func checkHyperparameters(_ parameters: [Tensor], learningRate: Float, weightDecay: Float, name: String) {
    precondition(
        learningRate >= 0 && learningRate.isFinite,
        "\(name): learning rate \(learningRate) must be a non-negative number")
    precondition(
        weightDecay >= 0 && weightDecay.isFinite, "\(name): weight decay \(weightDecay) must be a non-negative number")
    for (index, parameter) in parameters.enumerated() {
        precondition(
            parameter.isContiguous, "\(name): parameter \(index) of shape \(parameter.shape) is a non-contiguous view")
    }
}

/// Settings shared by the optimizers.
enum Optimizers {
    /// Parameters with at least twice this many elements are updated on every core: by SGD one
    /// piece each (`Parallel.forEachThreadRange`), so that a core updates the rows of a weight
    /// matrix whose gradient it computed and which it reads in the next forward product; by Adam
    /// in pieces of at least this many.
    static let parallelPiece = 1 << 14
}

/// The factor `1 - lr·wd` that decoupled weight decay multiplies a matrix by before its update;
/// 1 for vectors (biases), which are not decayed.
private func decayFactor(_ w: Tensor, learningRate: Float, weightDecay: Float) -> Float {
    w.rank >= 2 ? 1 - learningRate * weightDecay : 1
}

/// Calls `body` with the parameter's values (to update) and its gradient: `.g`, which the layers'
/// `backward()` writes, else autograd's `.grad`.
private func withGradient(
    of w: Tensor, _ body: (UnsafeMutableBufferPointer<Float>, UnsafeBufferPointer<Float>) -> Void
) {
    guard let g = w.g ?? w.grad else {
        preconditionFailure(
            "optimizer step: a parameter of shape \(w.shape) has no gradient: neither .g (the layers' backward()) "
                + "nor .grad (autograd's loss.backward())")
    }
    precondition(g.shape == w.shape, "optimizer step: gradient of shape \(g.shape) for a parameter of shape \(w.shape)")
    g.withUnsafeBufferPointer { gradient in
        w.withUnsafeMutableBufferPointer { values in body(values, gradient) }
    }
}

/// Copies the saved tensor `name` into `destination`, checking that it exists and fits.
private func copyState(_ state: [String: Tensor], name: String, into destination: Tensor) throws {
    guard let source = state[name] else {
        throw OptimizerStateError(description: "optimizer state: missing tensor \"\(name)\"")
    }
    guard source.shape == destination.shape else {
        throw OptimizerStateError(
            description: "optimizer state: tensor \"\(name)\" has shape \(source.shape), expected \(destination.shape)")
    }
    source.withUnsafeBufferPointer { values in
        for i in values.indices { destination.pointer[i] = values[i] }
    }
}
