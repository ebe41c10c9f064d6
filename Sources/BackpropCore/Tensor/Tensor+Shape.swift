// Views: new tensors that share this tensor's storage, with another shape or order.

extension Tensor {
    /// The transpose of a matrix, as a view that shares storage (PyTorch's `t()`).
    ///
    /// Shape `(r, c)` becomes `(c, r)` without copying; matrix products read the view through
    /// BLAS's transpose flag. A vector or a scalar is returned as a view of itself.
    /// - Precondition: rank 2 or less.
    public func t() -> Tensor {
        precondition(rank <= 2, "t(): expects a tensor of rank ≤ 2, got shape \(shape)")
        if rank < 2 {
            return Tensor(storage: storage, shape: shape, strides: strides, offset: offset)
                .recorded(.reshape, self)
        }
        return Tensor(
            storage: storage, shape: [shape[1], shape[0]], strides: [strides[1], strides[0]],
            offset: offset
        ).recorded(.transpose, self)
    }

    /// The same values with every dimension of size 1 removed (PyTorch's `squeeze()`).
    ///
    /// `(n, 1)` becomes `(n)`: the seed's `mse` squeezes its input so that `output - target`
    /// does not broadcast `(n, 1)` against `(n)` into `(n, n)`.
    public func squeeze() -> Tensor {
        let kept = shape.indices.filter { shape[$0] != 1 }
        return view(shape: kept.map { shape[$0] }, strides: kept.map { strides[$0] })
    }

    /// The same values with dimension `dim` removed if its size is 1 (PyTorch's `squeeze(dim)`).
    ///
    /// A negative `dim` counts from the end. A dimension whose size is not 1 is kept, as in
    /// PyTorch.
    /// - Precondition: `dim` names a dimension.
    public func squeeze(_ dim: Int) -> Tensor {
        if let line = scalarAsLine(dim, operation: "squeeze") { return line.squeeze(0) }
        let axis = normalizedAxis(dim, rank: rank, operation: "squeeze")
        guard shape[axis] == 1 else { return view(shape: shape, strides: strides) }
        var newShape = shape
        var newStrides = strides
        newShape.remove(at: axis)
        newStrides.remove(at: axis)
        return view(shape: newShape, strides: newStrides)
    }

    /// The same values with a dimension of size 1 inserted at `dim` (PyTorch's `unsqueeze(dim)`).
    ///
    /// `dim` ranges over `-(rank + 1) ... rank`; `-1` appends a last dimension, so `(n)` becomes
    /// `(n, 1)` as in the seed's `Mse.backward`.
    public func unsqueeze(_ dim: Int) -> Tensor {
        let axis = normalizedAxis(dim, rank: rank + 1, operation: "unsqueeze")
        var newShape = shape
        var newStrides = strides
        let innerStride = axis < rank ? strides[axis] * shape[axis] : 1
        newShape.insert(1, at: axis)
        newStrides.insert(innerStride, at: axis)
        return view(shape: newShape, strides: newStrides)
    }

    /// The same values with another shape of the same element count (PyTorch's `reshape`).
    ///
    /// One size may be `-1`, inferred from the others. A contiguous tensor is viewed without
    /// copying; a non-contiguous one (a transposed view) is copied first.
    /// - Precondition: the element counts agree.
    public func reshape(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            precondition(
                known > 0 && count % known == 0,
                "reshape: cannot view shape \(shape) (\(count) elements) as \(newShape)")
            resolved[inferred] = count / known
        }
        precondition(
            resolved.allSatisfy { $0 >= 0 } && resolved.reduce(1, *) == count,
            "reshape: cannot view shape \(shape) (\(count) elements) as \(newShape)")
        let source = contiguous()
        return Tensor(
            storage: source.storage, shape: resolved,
            strides: Tensor.contiguousStrides(for: resolved), offset: source.offset
        ).recorded(.reshape, self)
    }

    /// The same values with another shape (`reshape` with the sizes listed).
    public func reshape(_ sizes: Int...) -> Tensor { reshape(sizes) }

    /// A view with the given layout, recorded for autograd as a reshape.
    private func view(shape newShape: [Int], strides newStrides: [Int]) -> Tensor {
        Tensor(storage: storage, shape: newShape, strides: newStrides, offset: offset)
            .recorded(.reshape, self)
    }
}

/// `dim` as an index in `0..<rank`, counting negative values from the end (PyTorch's rule).
/// - Precondition: `-rank <= dim < rank`; otherwise stops naming the operation and the range
///   (for a scalar, PyTorch's `[-1, 0]`: the operations that reduce along a dimension read a
///   scalar as a line of one, ``Tensor/scalarAsLine(_:operation:)``).
func normalizedAxis(_ dim: Int, rank: Int, operation: String) -> Int {
    let axis = dim < 0 ? dim + rank : dim
    let range = Swift.max(rank, 1)
    precondition(
        axis >= 0 && axis < rank,
        "\(operation): dimension \(dim) out of range (expected to be in range of [\(-range), \(range - 1)])")
    return axis
}

extension Tensor {
    /// For a scalar (rank 0), the scalar as a line of one value (`[1]`, recorded as a reshape),
    /// which the operations along a dimension reduce to a scalar again: PyTorch reads a scalar's
    /// `dim` 0 or -1 so (`torch.tensor(3.).sum(0)` is `tensor(3.)`). `nil` for other ranks.
    /// - Precondition: for a scalar, `dim` is 0 or -1.
    func scalarAsLine(_ dim: Int, operation: String) -> Tensor? {
        guard rank == 0 else { return nil }
        precondition(
            dim == 0 || dim == -1, "\(operation): dimension \(dim) out of range (expected to be in range of [-1, 0])")
        return reshape([1])
    }
}
