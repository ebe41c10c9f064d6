import Foundation

// Elementwise functions beyond arithmetic: tanh, the logistic sigmoid, the absolute value, sine and
// cosine, and clamping to an interval. Each is
// one recorded operation whose derivative is its own formula in `Derivatives.swift` (not composed
// from `exp` and division, as BackpropNetwork's `Tanh` and `Sigmoid` layers record theirs).

extension Tensor {
    /// The hyperbolic tangent of every element: `tanh(x) = (eˣ - e⁻ˣ) / (eˣ + e⁻ˣ)` (PyTorch's
    /// `tanh`).
    ///
    /// Each element is the C library's `tanhf`; the result lies in `[-1, 1]` and is NaN where `x`
    /// is. Autograd's derivative: `∂ tanh(x) = 1 - tanh²(x)`, computed from the output.
    public func tanh() -> Tensor {
        mapValues { Foundation.tanh($0) }.recorded(.tanh, self)
    }

    /// The logistic sigmoid of every element: `σ(x) = 1 / (1 + e⁻ˣ)` (PyTorch's `sigmoid`).
    ///
    /// Computed as `1 / (1 + e⁻ˣ)` for `x ≥ 0` and `eˣ / (1 + eˣ)` below, so that no `exp`
    /// overflows: the result lies in `[0, 1]`, 0 and 1 only where Float rounds to them. Autograd's
    /// derivative: `∂ σ(x) = σ(x) (1 - σ(x))`, computed from the output.
    public func sigmoid() -> Tensor {
        mapValues { value in
            if value >= 0 { return 1 / (1 + Foundation.exp(-value)) }
            let e = Foundation.exp(value)
            return e / (1 + e)
        }
        .recorded(.sigmoid, self)
    }

    /// The absolute value of every element, `|x|` (PyTorch's `abs`).
    ///
    /// NOTE: `|x|` has no derivative at 0; autograd uses `sign(x)`, which is 0 there, as PyTorch
    /// does: `∂|x| = 1` for `x > 0`, `-1` for `x < 0`, `0` at `x = 0`.
    public func abs() -> Tensor {
        mapValues(Arithmetic.Magnitude()).recorded(.abs, self)
    }

    /// The sine of every element, in radians (PyTorch's `sin`).
    ///
    /// Each element is the C library's `sinf`. Autograd's derivative: `∂ sin(x) = cos(x)`.
    public func sin() -> Tensor {
        mapValues { Foundation.sin($0) }.recorded(.sin, self)
    }

    /// The cosine of every element, in radians (PyTorch's `cos`).
    ///
    /// Each element is the C library's `cosf`. Autograd's derivative: `∂ cos(x) = -sin(x)`.
    public func cos() -> Tensor {
        mapValues { Foundation.cos($0) }.recorded(.cos, self)
    }

    /// Every element clamped into `[min, max]`: `min(max(x, min), max)` (PyTorch's `clamp`); a
    /// bound left `nil` does not apply, so `clamp(max: 1)` is PyTorch's `clamp_max(1)`.
    ///
    /// Where `min > max` every element becomes `max`, as in PyTorch. NaN stays NaN.
    ///
    /// NOTE: autograd passes the gradient where `min < x < max` and blocks it elsewhere, the
    /// bounds included, as PyTorch 2's `clamp` does (and ``clampMin(_:)``, as the seed's ReLU).
    /// A bound left `nil` blocks nothing: `clamp(max: 1)` passes the gradient at `x = -∞`.
    /// - Precondition: at least one bound is given, and neither is NaN.
    public func clamp(min lower: Float? = nil, max upper: Float? = nil) -> Tensor {
        precondition(lower != nil || upper != nil, "clamp: give min:, max: or both")
        precondition(!(lower?.isNaN ?? false) && !(upper?.isNaN ?? false), "clamp: a bound is NaN")
        let (low, high) = (lower ?? -.infinity, upper ?? .infinity)
        return mapValues(Arithmetic.Clamp(low: low, high: high)).recorded(.clamp(lower, upper), self)
    }
}
