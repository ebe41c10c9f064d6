import Foundation

// Special functions, elementwise: the error function, which the exact GELU needs
// (`gelu(x) = 0.5 x (1 + erf(x / √2))`). Recorded for autograd like the arithmetic in
// `Tensor+Elementwise.swift`; the derivative is in `Derivatives.swift`.

extension Tensor {
    /// The error function of every element: `erf(x) = 2/√π ∫₀ˣ e^(-t²) dt` (PyTorch's `erf`).
    ///
    /// Each element is the C library's single-precision `erff`, accurate to within an ulp or two;
    /// the result lies in `[-1, 1]`, is `±1` beyond `|x| ≈ 3.9`, and is NaN where `x` is.
    /// Autograd's derivative: `∂ erf(x) = 2/√π · e^(-x²)`.
    public func erf() -> Tensor {
        mapValues { Foundation.erf($0) }.recorded(.erf, self)
    }
}
