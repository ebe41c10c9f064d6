import Foundation

// Creating tensors: filled with a value, counting, or drawn at random (from a generator passed
// in, or from the process-wide default generator; see Random.swift).

extension Tensor {
    /// A tensor of the given shape filled with `value` (PyTorch's `torch.full`); `[]` gives a
    /// scalar.
    /// - Precondition: no size is negative.
    public static func full(_ shape: [Int], _ value: Float) -> Tensor {
        let result = Tensor(uninitializedShape: shape)
        result.pointer.update(repeating: value, count: result.count)
        return result
    }

    /// A tensor filled with `value`, its shape listed: `Tensor.full(2, 3, value: 7)`.
    public static func full(_ shape: Int..., value: Float) -> Tensor { full(shape, value) }

    /// A tensor filled with `value`, of the shape of `other` (PyTorch's `full_like`).
    public static func full(like other: Tensor, value: Float) -> Tensor { full(other.shape, value) }

    /// A tensor of zeros (PyTorch's `torch.zeros`), its shape listed: `Tensor.zeros(2, 3)`.
    public static func zeros(_ shape: Int...) -> Tensor { full(shape, 0) }

    /// A tensor of zeros with the shape given as an array.
    public static func zeros(_ shape: [Int]) -> Tensor { full(shape, 0) }

    /// A tensor of ones (PyTorch's `torch.ones`), its shape listed: `Tensor.ones(2, 3)`.
    public static func ones(_ shape: Int...) -> Tensor { full(shape, 1) }

    /// A tensor of ones with the shape given as an array.
    public static func ones(_ shape: [Int]) -> Tensor { full(shape, 1) }

    /// A tensor of zeros with the shape of `other` (PyTorch's `zeros_like`).
    public static func zeros(like other: Tensor) -> Tensor { full(other.shape, 0) }

    /// A tensor of ones with the shape of `other` (PyTorch's `ones_like`).
    public static func ones(like other: Tensor) -> Tensor { full(other.shape, 1) }

    /// The vector `[0, 1, …, end - 1]` (PyTorch's `torch.arange(end)`), shape `[end]`.
    /// - Precondition: `end >= 0`.
    public static func arange(_ end: Int) -> Tensor {
        precondition(end >= 0, "arange: end \(end) is negative")
        return arange(from: 0, to: Float(end))
    }

    /// The vector `[start, start + step, …]` of the values below `end` (above it for a negative
    /// step), PyTorch's `torch.arange(start, end, step)`; `end` itself is left out.
    ///
    /// There are `⌈(end - start) / step⌉` values, element `i` being `start + i · step` computed
    /// in Double and rounded once: `arange(from: 0, to: 1, by: 0.25)` is `[0, 0.25, 0.5, 0.75]`.
    /// A last value that rounds to `end` (or past it) is left out too, as `end` is: the Floats
    /// nearest 0.3 and 0.1 have a quotient just above 3, yet `arange(from: 0, to: 0.3, by: 0.1)`
    /// is `[0, 0.1, 0.2]`, as PyTorch's and NumPy's.
    ///
    /// NOTE: PyTorch counts `⌈(end - start) / step⌉` in the Doubles it is given and keeps a last
    /// value that rounds to `end`: `torch.arange(1, 1.3, 0.1)` has 4 values, the last 1.3. Here
    /// `end` is never a value: `arange(from: 1, to: 1.3, by: 0.1)` is `[1, 1.1, 1.2]` (as
    /// `torch.arange` of the same three Floats).
    /// - Precondition: `step` is not 0 and points from `start` towards `end` (or `start == end`,
    ///   which gives an empty vector); otherwise stops naming the three values. More values than
    ///   memory can address end as a tensor too large does.
    public static func arange(from start: Float, to end: Float, by step: Float = 1) -> Tensor {
        precondition(
            step != 0 && step.isFinite && start.isFinite && end.isFinite,
            "arange: step \(step) from \(start) to \(end) must be finite and non-zero")
        precondition(
            (end - start).sign == step.sign || start == end,
            "arange: step \(step) points away from \(end), starting at \(start)")
        let element = { (i: Int) in Float(Double(start) + Double(i) * Double(step)) }
        let quotient = ((Double(end) - Double(start)) / Double(step)).rounded(.up)
        guard quotient < Double(Int.max / MemoryLayout<Float>.stride) else {
            Tensor.outOfMemory(
                "arange from \(start) to \(end) by \(step): \(quotient) values, more than memory can address")
        }
        var count = Int(quotient)
        while count > 0, step > 0 ? element(count - 1) >= end : element(count - 1) <= end { count -= 1 }
        let result = Tensor(uninitializedShape: [count])
        for i in 0..<count { result.pointer[i] = element(i) }
        return result
    }

    /// Samples of the standard normal distribution (PyTorch's `torch.randn`), drawn row-major
    /// from `generator`: the same seed gives the same tensor on every machine.
    public static func randn(_ shape: [Int], generator: inout RandomGenerator) -> Tensor {
        let result = Tensor(uninitializedShape: shape)
        for i in 0..<result.count { result.pointer[i] = Float(generator.nextNormal()) }
        return result
    }

    /// Samples of the uniform distribution on `[0, 1)` (PyTorch's `torch.rand`), drawn row-major
    /// from `generator`.
    public static func rand(_ shape: [Int], generator: inout RandomGenerator) -> Tensor {
        let result = Tensor(uninitializedShape: shape)
        // A Double within 2⁻²⁵ of 1 rounds to the Float 1, which `[0, 1)` leaves out (`log(1 - u)`
        // would be -∞): it is taken as the largest Float below 1.
        for i in 0..<result.count { result.pointer[i] = Swift.min(Float(generator.nextUniform()), Float(1).nextDown) }
        return result
    }

    /// Samples of the standard normal distribution (PyTorch's `torch.randn(shape)`), drawn from
    /// the process-wide default generator (``RandomGenerator/withDefault(_:)``: seed
    /// ``RandomGenerator/defaultSeed`` at launch, reseeded by ``manualSeed(_:)``).
    ///
    /// A program that draws from one thread gets the same tensors on every run and machine. Each
    /// call draws all its values at once, under a lock, so calls from several threads are safe,
    /// but which thread gets which numbers then depends on timing: pass a generator of your own
    /// (`randn(_:generator:)`) where that matters.
    public static func randn(_ shape: [Int]) -> Tensor {
        RandomGenerator.withDefault { randn(shape, generator: &$0) }
    }

    /// Standard normal samples from the default generator, the shape listed: `Tensor.randn(2, 3)`.
    public static func randn(_ shape: Int...) -> Tensor { randn(shape) }

    /// Samples of the uniform distribution on `[0, 1)` (PyTorch's `torch.rand(shape)`), drawn
    /// from the process-wide default generator (see `randn(_:)` for its seed and
    /// threads).
    public static func rand(_ shape: [Int]) -> Tensor {
        RandomGenerator.withDefault { rand(shape, generator: &$0) }
    }

    /// Uniform samples from the default generator, the shape listed: `Tensor.rand(2, 3)`.
    public static func rand(_ shape: Int...) -> Tensor { rand(shape) }

    /// Reseeds the process-wide default generator that `randn(_:)` and
    /// `rand(_:)` draw from (PyTorch's `torch.manual_seed`).
    public static func manualSeed(_ seed: UInt64) {
        RandomGenerator.withDefault { $0 = RandomGenerator(seed: seed) }
    }

    /// A copy of this tensor's values in new storage, cut from autograd's graph (PyTorch's
    /// `clone().detach()`).
    public func copy() -> Tensor {
        let result = Tensor(uninitializedShape: shape)
        withUnsafeBufferPointer { source in
            if count > 0 { result.pointer.update(from: source.baseAddress!, count: count) }
        }
        return result
    }

    /// The same values, as a tensor that autograd does not track (PyTorch's `detach()`).
    public func detach() -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset)
    }
}
