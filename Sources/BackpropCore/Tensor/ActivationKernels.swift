import CKernels

/// The activations that rest on `exp`, a vector of elements at a time (`bp_activation`, in
/// Sources/CKernels/Activations.c): four (AVX2) or eight (AVX-512) elements widened to Double, the
/// formula there, one rounding to Float; the same bits on every CPU and wherever a range starts.
///
/// About 2.5 ns an element on one core (6 for GELU), where the C library's `expf`, `tanhf` and
/// `erff`, one at a time, take 6-30 (and Swift closures around them more). Each is within one ulp of
/// the correctly rounded Float (nearly always equal to it).
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
        /// `out = x · Φ(x)`, `Φ` the standard normal distribution function, from its tail
        /// `Φ(x) = erfc(-x/√2) / 2` (GELU's exact form).
        case gelu
        /// `out = g · (Φ(x) + x · φ(x))`, `φ(x) = e^(-x²/2) / √(2π)`: GELU's `inp.g` from `out.g`.
        case geluBackward

        /// Whether the kind reads `g`, the output's gradient.
        var needsGradient: Bool { self == .siluBackward || self == .geluBackward }

        var code: Int32 {
            switch self {
            case .sigmoid: Int32(BP_ACTIVATION_SIGMOID)
            case .silu: Int32(BP_ACTIVATION_SILU)
            case .siluBackward: Int32(BP_ACTIVATION_SILU_BACKWARD)
            case .tanh: Int32(BP_ACTIVATION_TANH)
            case .gelu: Int32(BP_ACTIVATION_GELU)
            case .geluBackward: Int32(BP_ACTIVATION_GELU_BACKWARD)
            }
        }
    }

    /// `out[i] = kind(x[i])` (with `g[i]` for ``Kind/siluBackward`` and ``Kind/geluBackward``, which need `g`), for
    /// `i` in `0..<count`. `vectors: false` takes the scalar path, the reference the tests compare
    /// the vector paths with (the same bits).
    package static func apply(
        _ kind: Kind, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>? = nil,
        into out: UnsafeMutablePointer<Float>, count: Int, vectors: Bool = true
    ) {
        precondition(!kind.needsGradient || g != nil, "ActivationKernels.apply: \(kind) needs g")
        bp_activation(kind.code, x, g, out, count, vectors ? 1 : 0)
    }
}
