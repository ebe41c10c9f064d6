import CKernels

// Reordering dimensions: a view, like `t()`, for any rank.

extension Tensor {
    /// The same values with the dimensions reordered, as a view that shares storage (PyTorch's
    /// `permute(dims)`).
    ///
    /// Dimension `i` of the result is dimension `dims[i]` of this tensor: `[n, h, w, c]` permuted
    /// by `[0, 3, 1, 2]` is `[n, c, h, w]` (NHWC to NCHW). No values move; `contiguous()` copies
    /// them into the new order. Negative entries count from the end.
    ///
    /// Autograd's derivative is the inverse permutation of the gradient.
    /// - Precondition: `dims` lists every dimension exactly once; otherwise stops naming `dims`
    ///   and the shape.
    public func permute(_ dims: [Int]) -> Tensor {
        precondition(
            dims.count == rank, "permute: \(dims) does not list the \(rank) dimensions of shape \(shape)")
        let axes = dims.map { normalizedAxis($0, rank: rank, operation: "permute") }
        precondition(
            Set(axes).count == rank, "permute: \(dims) repeats a dimension (shape \(shape)); expected each once")
        let (newShape, newStrides) = (axes.map { shape[$0] }, axes.map { strides[$0] })
        return Tensor(storage: storage, shape: newShape, strides: newStrides, offset: offset)
            .recorded(.permute(axes), self)
    }

    /// The permutation that undoes `dims`: `x.permute(dims).permute(inverse)` has `x`'s layout.
    static func inversePermutation(_ dims: [Int]) -> [Int] {
        var inverse = [Int](repeating: 0, count: dims.count)
        for (position, axis) in dims.enumerated() { inverse[axis] = position }
        return inverse
    }
}

extension Tensor {
    /// `permute(dims).contiguous()`: the same values in the same new tensor, recorded the same way,
    /// copied faster where the permutation is a batch of matrix transposes.
    ///
    /// That is the case when `dims` keeps some leading dimensions and swaps two groups of the
    /// others, as the convolutions' NCHW to NHWC (`[0, 2, 3, 1]`) and back (`[0, 3, 1, 2]`): each
    /// `[rows, columns]` matrix of the batch is transposed by `bp_transpose` (Im2col.c) in 8 × 8
    /// blocks in registers, the batch split over the cores. ``contiguous()`` copies element
    /// by element in the result's order, reading the source far apart.
    /// - Precondition: as ``permute(_:)``.
    package func permutedContiguous(_ dims: [Int]) -> Tensor {
        let view = permute(dims)
        guard isContiguous, let (batch, rows, columns) = Tensor.batchedTranspose(shape, dims: dims) else {
            return view.contiguous()
        }
        let result = Tensor(uninitializedShape: view.shape)
        let (x, y) = (UnsafePointer(pointer), result.pointer)
        let avx2: Int32 = Tensor.skinnyKernelIsAvailable ? 1 : 0
        Parallel.forEachRange(batch, minimumPerPiece: Swift.max(1, (1 << 16) / Swift.max(rows * columns, 1))) {
            matrices in
            bp_transpose(x, y, rows, columns, matrices.lowerBound, matrices.upperBound, avx2)
        }
        return result.recorded(.reshape, view)
    }

    /// `(batch, rows, columns)` when permuting `shape` by `dims` transposes a batch of matrices:
    /// `dims` is `0..<b`, then `s..<rank`, then `b..<s` for some `b < s < rank`; else `nil`.
    private static func batchedTranspose(_ shape: [Int], dims: [Int]) -> (Int, Int, Int)? {
        let axes = dims.map { $0 < 0 ? $0 + shape.count : $0 }
        guard let b = axes.indices.first(where: { axes[$0] != $0 }) else { return nil }
        let s = axes[b]
        guard s > b, axes == Array(0..<b) + Array(s..<shape.count) + Array(b..<s) else { return nil }
        return (shape[..<b].reduce(1, *), shape[b..<s].reduce(1, *), shape[s...].reduce(1, *))
    }
}
