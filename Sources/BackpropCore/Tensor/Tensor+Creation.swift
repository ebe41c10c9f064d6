extension Tensor {
    /// A tensor of the given shape filled with `value`.
    public static func full(_ shape: [Int], _ value: Float) -> Tensor {
        let result = Tensor(uninitializedShape: shape)
        result.pointer.update(repeating: value, count: result.count)
        return result
    }

    /// A tensor of zeros (PyTorch's `torch.zeros`).
    public static func zeros(_ shape: Int...) -> Tensor { full(shape, 0) }

    /// A tensor of zeros with the shape given as an array.
    public static func zeros(_ shape: [Int]) -> Tensor { full(shape, 0) }

    /// A tensor of ones (PyTorch's `torch.ones`).
    public static func ones(_ shape: Int...) -> Tensor { full(shape, 1) }

    /// A tensor of ones with the shape given as an array.
    public static func ones(_ shape: [Int]) -> Tensor { full(shape, 1) }

    /// A tensor of zeros with the shape of `other` (PyTorch's `zeros_like`).
    public static func zeros(like other: Tensor) -> Tensor { full(other.shape, 0) }

    /// Samples of the standard normal distribution (PyTorch's `torch.randn`), drawn row-major
    /// from `generator`: the same seed gives the same tensor on every machine.
    public static func randn(_ shape: [Int], generator: inout RandomGenerator) -> Tensor {
        let result = Tensor(uninitializedShape: shape)
        for i in 0..<result.count { result.pointer[i] = Float(generator.nextNormal()) }
        return result
    }

    /// Samples of the uniform distribution on `[0, 1)` (PyTorch's `torch.rand`).
    public static func rand(_ shape: [Int], generator: inout RandomGenerator) -> Tensor {
        let result = Tensor(uninitializedShape: shape)
        for i in 0..<result.count { result.pointer[i] = Float(generator.nextUniform()) }
        return result
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
