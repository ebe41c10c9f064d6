import BackpropCore
import Foundation

// Finite differences: the gradient checked against nothing but the loss itself.
//
//     central    ∂loss/∂x_i  ≈  (loss(x + h e_i) - loss(x - h e_i)) / 2h
//     forward    ∂loss/∂x_i  ≈  (-3 loss(x) + 4 loss(x + h e_i) - loss(x + 2h e_i)) / 2h
//     backward   ∂loss/∂x_i  ≈  (3 loss(x) - 4 loss(x - h e_i) + loss(x - 2h e_i)) / 2h
//
// All three are exact for a quadratic and have an error of order h² otherwise; the one-sided ones
// serve where the loss has a kink on the other side of x (a ReLU input crossing 0, a max pooling
// window whose maximum moves).
// One coordinate of a Float tensor is moved in place, the loss is evaluated by a closure that
// returns a Double, and the coordinate is put back bit for bit. The positions actually evaluated
// are Float values (x + h rounded), so the formulas are applied to those exact positions
// (Lagrange's interpolation formula, in Double): the rounding of x ± h adds no error.
//
// Error bound. If the closure returns the loss with an absolute error of at most δ, and
// |∂³loss/∂x_i³| <= M near x, then
//
//     |central difference - ∂loss/∂x_i|  <=  δ / h  +  M h² / 6
//     |one-sided difference - ∂loss/∂x_i|  <=  4 δ / h  +  M h² / 3
//
// (rounding, divided by the step, plus the truncation of Taylor's series). The step used here is
// h = ε^(1/3) · max(1, |x_i|) with ε = 2⁻²³ the Float machine epsilon, about 4.9e-3 · max(1, |x_i|),
// which balances the two terms when δ is of the order of ε · |loss| (a loss computed in Float).
// Two things make the estimate better than that in practice:
// - the closure returns a Double: a loss accumulated in Double has δ far below ε · |loss|, and only
//   the part of the computation that the coordinate touches changes at all;
// - the seed's model (Lin, ReLU, Mse) is piecewise quadratic in any one coordinate: M = 0 unless
//   a ReLU input changes sign between the points evaluated.
// `gradientCheck` goes further: it freezes the pieces of every `PiecewiseLayer` (ReLU, LeakyReLU,
// MaxPool2d) at the point checked, so that no kink lies between the points; uses the step 2h,
// since the step need not stay clear of kinks any more; and measures each estimate's error by
// comparing it with the one at step h (GradientCheck.swift). In a deep Float network δ is not
// small: the layers' roundings change at every perturbed point (about 1e-7 on a loss of 3.3 for
// the cnn preset), and the one-sided formulas below multiply its bound by 4.

/// The points a finite difference evaluates, around an element `x` with step `h`.
public enum FiniteDifferenceScheme: String, Sendable, Codable, CaseIterable {
    /// `x + h` and `x - h`: `(loss(x + h) - loss(x - h)) / 2h`, the most accurate.
    case central
    /// `x`, `x + h`, `x + 2h`: `(-3 loss(x) + 4 loss(x + h) - loss(x + 2h)) / 2h`, for a kink
    /// below `x`.
    case forward
    /// `x`, `x - h`, `x - 2h`: `(3 loss(x) - 4 loss(x - h) + loss(x - 2h)) / 2h`, for a kink
    /// above `x`.
    case backward

    /// The multiples of `h` evaluated, in order.
    var offsets: [Float] {
        switch self {
        case .central: [1, -1]
        case .forward: [0, 1, 2]
        case .backward: [0, -1, -2]
        }
    }
}

/// The step of a finite difference at an element of value `value`:
/// `h = ε^(1/3) · max(1, |value|)`, with `ε` the Float machine epsilon (about `4.9e-3` for
/// values of magnitude up to 1).
public func finiteDifferenceStep(at value: Float) -> Float {
    Float(Foundation.cbrt(Double(Float.ulpOfOne))) * Swift.max(1, Swift.abs(value))
}

/// A finite difference of `loss` with respect to element `index` of `tensor`: an estimate of
/// `∂loss/∂tensor[index]` from the loss at the points of `scheme` (step from
/// ``finiteDifferenceStep(at:)``).
///
/// The element is changed in place for each evaluation, in the order of
/// the scheme's offsets, and restored exactly afterwards. `loss` runs with autograd's
/// recording off (nothing it computes enters a graph), and must read `tensor` afresh each time it
/// is called (a forward pass that uses the tensor object, not a copy of its values). The error
/// bound is in the comment at the top of this file.
/// - Parameters:
///   - loss: evaluates the scalar loss, in Double.
///   - tensor: the contiguous tensor to perturb (an input or a parameter).
///   - index: the element's row-major position, in `0..<tensor.count`.
///   - scheme: which points to evaluate; central by default.
///   - step: `h`; ``finiteDifferenceStep(at:)`` of the element when `nil`. A smaller step
///     crosses fewer kinks and rounds more (the bound's `δ / h`).
/// - Returns: the estimate of `∂loss/∂tensor[index]`.
/// - Precondition: `tensor` is contiguous, `index` is in range and `step` is positive; otherwise
///   stops naming them.
public func finiteDifference(
    of loss: () -> Double, withRespectTo tensor: Tensor, at index: Int, scheme: FiniteDifferenceScheme = .central,
    step: Float? = nil
) -> Double {
    precondition(
        tensor.isContiguous, "finiteDifference: tensor of shape \(tensor.shape) is a non-contiguous view")
    precondition(
        index >= 0 && index < tensor.count,
        "finiteDifference: element \(index) out of range for shape \(tensor.shape) (\(tensor.count) elements)")
    let element = tensor.pointer + index
    let original = element.pointee
    let step = step ?? finiteDifferenceStep(at: original)
    precondition(step > 0, "finiteDifference: step \(step) must be positive")
    let positions = scheme.offsets.map { original + $0 * step }
    let losses: [Double] = GradMode.withNoGrad {
        defer { element.pointee = original }
        return positions.map { position in
            element.pointee = position
            return loss()
        }
    }
    return lagrangeDerivative(at: Double(original), positions: positions.map(Double.init), values: losses)
}

/// Finite differences of `loss` with respect to several elements of `tensor`, one after another
/// (see ``finiteDifference(of:withRespectTo:at:scheme:step:)``).
/// - Parameters:
///   - loss: the scalar to differentiate, recomputed after each change of `tensor`.
///   - tensor: the tensor whose elements are moved (and put back).
///   - indices: row-major positions; every element when `nil`.
///   - scheme: the points evaluated around each element (central by default).
/// - Returns: one estimate per position, in the order given.
public func finiteDifferences(
    of loss: () -> Double, withRespectTo tensor: Tensor, at indices: [Int]? = nil,
    scheme: FiniteDifferenceScheme = .central
) -> [Double] {
    (indices ?? Array(0..<tensor.count)).map {
        finiteDifference(of: loss, withRespectTo: tensor, at: $0, scheme: scheme)
    }
}

/// The derivative at `x` of the polynomial through the points `(positions[k], values[k])`
/// (two or three points): the finite-difference formulas above, for positions that are not
/// exactly evenly spaced because they were rounded to Float.
func lagrangeDerivative(at x: Double, positions p: [Double], values f: [Double]) -> Double {
    switch p.count {
    case 2:
        return (f[0] - f[1]) / (p[0] - p[1])
    case 3:
        // d/dx of Σ f_k Π_{j≠k} (x - p_j) / (p_k - p_j)
        var total = 0.0
        for k in 0..<3 {
            let (i, j) = ((k + 1) % 3, (k + 2) % 3)
            total += f[k] * ((x - p[i]) + (x - p[j])) / ((p[k] - p[i]) * (p[k] - p[j]))
        }
        return total
    default:
        preconditionFailure("lagrangeDerivative: expects two or three points, got \(p.count)")
    }
}

/// The elements a finite-difference check looks at: every one of a small tensor, a seeded random
/// sample of a large one.
///
/// - Parameters:
///   - count: the tensor's number of elements.
///   - samples: the most positions to return; when `count <= samples`, all of `0..<count`.
///   - generator: the source of the sample (the same state gives the same positions everywhere).
/// - Returns: distinct positions in increasing order.
/// - Precondition: `count` and `samples` are non-negative.
func finiteDifferenceCoordinates(
    count: Int, samples: Int, generator: inout RandomGenerator
) -> [Int] {
    precondition(
        count >= 0 && samples >= 0, "finiteDifferenceCoordinates: negative count \(count) or samples \(samples)")
    if count <= samples { return Array(0..<count) }
    // A partial Fisher–Yates shuffle: the first `samples` draws of a random permutation, with
    // the swaps kept in a dictionary so that a huge tensor costs no memory of its size.
    var swapped: [Int: Int] = [:]
    var chosen: [Int] = []
    chosen.reserveCapacity(samples)
    for i in 0..<samples {
        let j = i + generator.nextIndex(below: count - i)
        let atJ = swapped[j] ?? j
        swapped[j] = swapped[i] ?? i
        chosen.append(atJ)
    }
    return chosen.sorted()
}
