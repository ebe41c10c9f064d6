// Indexing. Four forms, told apart by the argument's type or label, so that none can be taken
// for another:
//
//     t[i, j, …]        a Float: one element, one index per dimension (Tensor.swift)
//     t[row: i]         a Tensor: row i, shape (n, …) → (…), a view
//     t[a..<b]          a Tensor: rows a..<b (also a..., ..<b, a...b), shape (b - a, …), a view
//     t[rows: [i, j]]   a Tensor: those rows in that order, shape (count, …), a copy
//
// NOTE: PyTorch's `t[0]` is a row of a matrix; here `t[0]` is the element subscript, a Float, for
// a vector only. On a matrix it stops with a message that points to `t[row: 0]`. A subscript
// whose result type depended on the rank could not be typed, and one `t[i]` returning a Tensor
// beside `t[i, j]` returning a Float would change the meaning of `v[0]` on every vector.
// The views share storage with `t`: a change through either shows in the other. Autograd records
// all three (`rows(_:)` in Tensor+Rows.swift does the work).

extension Tensor {
    /// Row `index` of this tensor (PyTorch's `t[i]`), as a view that shares storage.
    ///
    /// Shapes: `(n, …)` gives `(…)`; a row of a matrix is a vector, an element of a vector is a
    /// scalar tensor (shape `[]`). Autograd's derivative puts the gradient back into that row.
    /// - Precondition: rank at least 1, and `index` in `0..<shape[0]`; otherwise stops naming
    ///   the index and the shape.
    public subscript(row index: Int) -> Tensor {
        precondition(rank >= 1, "t[row: \(index)]: a scalar has no rows (shape \(shape))")
        precondition(
            index >= 0 && index < shape[0],
            "t[row: \(index)]: row \(index) out of range 0..<\(shape[0]) for shape \(shape)")
        return rows(index..<(index + 1)).squeeze(0)
    }

    /// Rows `range` of this tensor (PyTorch's `t[a:b]`), as a view that shares storage.
    ///
    /// Any range of `Int` works: `t[1..<3]`, `t[1...2]`, `t[2...]`, `t[..<2]`. Shapes: `(n, …)`
    /// gives `(range.count, …)`. The same as `rows(_ range:)`.
    /// - Precondition: rank at least 1, and the range lies within `0..<shape[0]`; otherwise stops
    ///   naming the range and the shape.
    public subscript<R: RangeExpression<Int>>(_ range: R) -> Tensor {
        // Relative to an unbounded collection, so that `5...` on 3 rows is reported, not trapped
        // in `Range`'s own initializer.
        let bounds = range.relative(to: 0..<Int.max)
        let written = bounds.upperBound == Int.max ? "\(bounds.lowerBound)..." : "\(bounds)"
        precondition(rank >= 1, "t[\(written)]: a scalar has no rows (shape \(shape))")
        let upper = bounds.upperBound == Int.max ? shape[0] : bounds.upperBound
        precondition(
            bounds.lowerBound >= 0 && bounds.lowerBound <= upper && upper <= shape[0],
            "t[\(written)]: rows \(written) out of range 0..<\(shape[0]) for shape \(shape)")
        return rows(bounds.lowerBound..<upper)
    }

    /// Rows `indices` of this tensor, in that order, copied into a new tensor (PyTorch's
    /// `t[[i, j]]`, `index_select(0, …)`). An index may repeat.
    ///
    /// Shapes: `(n, …)` gives `(indices.count, …)`. The same as `rows(_ indices:)`; autograd
    /// adds each row of the gradient into the row it was taken from.
    /// - Precondition: rank at least 1, and every index in `0..<shape[0]`; otherwise stops naming
    ///   the index, its position and the range.
    public subscript(rows indices: [Int]) -> Tensor {
        rows(indices)
    }
}
