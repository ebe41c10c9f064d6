import Foundation

// Elementwise functions beyond arithmetic: tanh, the logistic sigmoid, the absolute value. Each is
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
        mapValues { Swift.abs($0) }.recorded(.abs, self)
    }
}
