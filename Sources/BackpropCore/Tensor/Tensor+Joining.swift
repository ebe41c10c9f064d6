// Joining tensors: `cat` along an existing dimension, `stack` along a new one. The result is a
// new contiguous tensor; autograd gives each input its slice of the gradient.

extension Tensor {
    /// The tensors joined along dimension `dim` (PyTorch's `torch.cat`).
    ///
    /// Shapes: every tensor has the same rank and the same sizes outside `dim`; the result's size
    /// along `dim` is the sum of theirs. Joining `(2, 3)` and `(4, 3)` along 0 gives `(6, 3)`;
    /// `(2, 3)` and `(2, 1)` along 1 give `(2, 4)`. Autograd's derivative gives each input the
    /// slice of the gradient where its values went.
    /// - Parameters:
    ///   - tensors: at least one tensor, of rank at least 1.
    ///   - dim: the dimension to join along; negative values count from the end.
    /// - Precondition: the shapes fit; otherwise stops naming the mismatched tensor's position and
    ///   both shapes.
    public static func cat(_ tensors: [Tensor], dim: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "cat: expects at least one tensor, got none")
        let first = tensors[0]
        precondition(first.rank >= 1, "cat: cannot join scalars (shape []); use stack")
        let axis = normalizedAxis(dim, rank: first.rank, operation: "cat")
        var shape = first.shape
        shape[axis] = 0
        for (position, tensor) in tensors.enumerated() {
            var expected = first.shape
            if tensor.rank == first.rank { expected[axis] = tensor.shape[axis] }
            precondition(
                tensor.shape == expected,
                "cat: tensor \(position) has shape \(tensor.shape) and tensor 0 has shape \(first.shape): sizes "
                    + "must match except in dimension \(dim)")
            shape[axis] += tensor.shape[axis]
        }
        let result = Tensor(uninitializedShape: shape)
        let (outer, total, inner) = result.splitAround(axis)
        var start = 0  // where the next input begins along the axis
        for tensor in tensors {
            let source = tensor.detach().contiguous()
            let block = tensor.shape[axis] * inner  // one input's values for one outer position
            withExtendedLifetime(source) {
                for o in 0..<outer where block > 0 {
                    (result.pointer + (o * total + start) * inner).update(
                        from: source.pointer + o * block, count: block)
                }
            }
            start += tensor.shape[axis]
        }
        return result.recorded(.cat(axis: axis), inputs: tensors)
    }

    /// The tensors stacked along a new dimension `dim` (PyTorch's `torch.stack`).
    ///
    /// Shapes: every tensor has the same shape `s`; the result has `s` with `tensors.count`
    /// inserted at `dim`, so three `(2, 3)` tensors stack into `(3, 2, 3)` along 0 and `(2, 3, 3)`
    /// along -1. Recorded as each tensor's `unsqueeze(dim)` and a ``cat(_:dim:)``.
    /// - Parameters:
    ///   - tensors: at least one tensor.
    ///   - dim: where the new dimension goes, in `-(rank + 1)...rank`.
    /// - Precondition: the shapes are equal; otherwise stops naming the mismatched tensor's
    ///   position and both shapes.
    public static func stack(_ tensors: [Tensor], dim: Int = 0) -> Tensor {
        precondition(!tensors.isEmpty, "stack: expects at least one tensor, got none")
        let first = tensors[0]
        for (position, tensor) in tensors.enumerated() where tensor.shape != first.shape {
            preconditionFailure(
                "stack: tensor \(position) has shape \(tensor.shape) and tensor 0 has shape \(first.shape): "
                    + "shapes must be equal")
        }
        let axis = normalizedAxis(dim, rank: first.rank + 1, operation: "stack")
        return cat(tensors.map { $0.unsqueeze(axis) }, dim: axis)
    }
}
