import CKernels

/// The optimizers' updates in one pass over a stretch of a parameter (Sources/CKernels/Optimizers.c,
/// Step.c): eight elements at a time where the CPU has AVX2 (Adam: sixteen with AVX-512), each
/// operation rounded as written (no fused multiply-add), the same bits on every CPU.
package enum OptimizerKernels {
    /// Adam's constants for one step (see ``adam(_:_:_:_:count:step:)``).
    package typealias AdamStep = BPAdamStep

    /// `m = β₁·m + (1−β₁)·g`, `v = β₂·v + (1−β₂)·(g·g)`,
    /// `w = w·decay − stepSize·(m / (√v·inverseCorrection2 + ε))`, for `count` elements.
    package static func adam(
        _ w: UnsafeMutablePointer<Float>, _ m: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>,
        _ g: UnsafePointer<Float>, count: Int, step: AdamStep
    ) {
        withUnsafePointer(to: step) { bp_adam_update(w, m, v, g, count, $0) }
    }

    /// SGD's update of `count` elements (Step.c): without `velocity`, `w = w·decay − lr·g`; with it,
    /// `velocity = momentum·velocity + g`, then `w = w·decay − lr·velocity`.
    package static func sgd(
        _ w: UnsafeMutablePointer<Float>, velocity: UnsafeMutablePointer<Float>?, _ g: UnsafePointer<Float>,
        count: Int, decay: Float, learningRate: Float, momentum: Float
    ) {
        bp_sgd_update(w, velocity, g, count, decay, learningRate, momentum)
    }
}
