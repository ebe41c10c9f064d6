import CKernels

/// The activations that rest on `exp`, a vector of elements at a time (`bp_activation`, in
/// Sources/CKernels/Activations.c): four (AVX2) or eight (AVX-512) elements widened to Double, the
/// formula there, one rounding to Float; the same bits on every CPU and wherever a range starts.
///
/// About 2.5 ns an element on one core, where the C library's `expf` and `tanhf`, one at a time,
/// take 6-30 (and Swift closures around them more). Sigmoid, SiLU and tanh are within one ulp of the
/// correctly rounded Float (nearly always equal to it).
package enum ActivationKernels {
    /// Which activation: the `BP_ACTIVATION_*` constants.
    package enum Kind {
        /// `out = 1 / (1 + e^-x)`.
        case sigmoid
        /// `out = x · sigmoid(x)`.
        case silu
        /// `out = g · s · (1 + x · (1 - s))` with `s = sigmoid(x)`: SiLU's `inp.g` from `out.g`.
        case siluBackward
        /// `out = tanh(x)`.
        case tanh

        var code: Int32 {
            switch self {
            case .sigmoid: Int32(BP_ACTIVATION_SIGMOID)
            case .silu: Int32(BP_ACTIVATION_SILU)
            case .siluBackward: Int32(BP_ACTIVATION_SILU_BACKWARD)
            case .tanh: Int32(BP_ACTIVATION_TANH)
            }
        }
    }

    /// `out[i] = kind(x[i])` (with `g[i]` for ``Kind/siluBackward``, which needs `g`), for
    /// `i` in `0..<count`. `vectors: false` takes the scalar path, the reference the tests compare
    /// the vector paths with (the same bits).
    package static func apply(
        _ kind: Kind, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>? = nil,
        into out: UnsafeMutablePointer<Float>, count: Int, vectors: Bool = true
    ) {
        precondition(kind != .siluBackward || g != nil, "ActivationKernels.apply: siluBackward needs g")
        bp_activation(kind.code, x, g, out, count, vectors ? 1 : 0)
    }
}
