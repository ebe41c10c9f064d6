// Taking rows: a range of the first dimension as a view, or chosen rows gathered into a copy.
// Minibatches, the first rows of a data set and a batch's examples all come through here.

import CKernels

extension Tensor {
    /// Rows `range` of this tensor (elements, for a vector), as a view that shares storage
    /// (PyTorch's `x[a:b]`).
    ///
    /// Shapes: `(n, …)` gives `(range.count, …)`. Autograd's derivative puts the gradient back
    /// into those rows, zero elsewhere.
    /// - Precondition: rank at least 1, and `range` lies within `0..<shape[0]`.
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1, "rows: a scalar has no rows (shape \(shape))")
        precondition(
            range.lowerBound >= 0 && range.upperBound <= shape[0],
            "rows: \(range) out of range for shape \(shape)")
        var newShape = shape
        newShape[0] = range.count
        return Tensor(
            storage: storage, shape: newShape, strides: strides, offset: offset + range.lowerBound * strides[0]
        )
        .recorded(.rows(start: range.lowerBound), self)
    }

    /// Rows `indices` of this tensor, in that order, copied into a new contiguous tensor
    /// (PyTorch's `x[indices]`, `index_select(0, indices)`). An index may repeat.
    ///
    /// Shapes: `(n, …)` gives `(indices.count, …)`. Autograd's derivative adds each row of the
    /// gradient into the row it was taken from.
    /// - Precondition: rank at least 1, and every index lies within `0..<shape[0]`.
    public func rows(_ indices: [Int]) -> Tensor {
        precondition(rank >= 1, "rows: a scalar has no rows (shape \(shape))")
        var newShape = shape
        newShape[0] = indices.count
        let result = Tensor(uninitializedShape: newShape)
        indices.withUnsafeBufferPointer { Tensor.gatherRows(self, $0, into: result) }
        return result.recorded(.gatherRows(indices), self)
    }

    /// Copies rows `indices` of `source` into `destination`, in order, on every core for large
    /// copies (the rows of a minibatch lie scattered over the training set, mostly outside the
    /// caches: two cores keep twice as many on the way). Autograd does not see this copy.
    /// - Precondition: `destination` is contiguous, of `source`'s shape with `indices.count` rows,
    ///   and every index lies within `0..<source.shape[0]`.
    package static func gatherRows(_ source: Tensor, _ indices: UnsafeBufferPointer<Int>, into destination: Tensor) {
        checkGathering(source, indices, into: destination)
        let source = source.contiguous()
        let rowSize = source.shape.dropFirst().reduce(1, *)
        let from = source.pointer
        let to = destination.pointer
        withExtendedLifetime(source) {
            Parallel.forEachRange(indices.count, minimumPerPiece: Swift.max(1, (16 << 10) / Swift.max(rowSize, 1))) {
                range in
                // Each row copied while the one four rows on is fetched (Step.c).
                bp_gather_rows(
                    to + range.lowerBound * rowSize, from, indices.baseAddress! + range.lowerBound, range.count,
                    indices.count - range.lowerBound, rowSize)
            }
        }
    }

    /// Stops unless rows `indices` of `source` fit `destination` (contiguous, of `source`'s shape with
    /// `indices.count` rows) and every index lies within `0..<source.shape[0]`, naming what does not.
    private static func checkGathering(_ source: Tensor, _ indices: UnsafeBufferPointer<Int>, into destination: Tensor)
    {
        precondition(
            destination.isContiguous && destination.rank == source.rank && destination.shape[0] == indices.count
                && Array(destination.shape.dropFirst()) == Array(source.shape.dropFirst()),
            "rows: \(indices.count) rows of \(source.shape) do not fit a destination of shape \(destination.shape)")
        let rowCount = source.shape[0]
        for (position, index) in indices.enumerated() where index < 0 || index >= rowCount {
            preconditionFailure("rows: index \(index) at position \(position) out of range 0..<\(rowCount)")
        }
    }

    /// Starts copying rows `indices[0..<count]` of `source` into `destination`, in order, in the
    /// background (``BackgroundWork``: the thread pool's helpers copy pieces of about 8 K floats
    /// in their idle moments); the copy is complete once the returned work's `finish()` returns.
    /// Until then neither `indices`, `source` nor `destination` may change, and all three must
    /// stay alive (the caller keeps them). Autograd does not see this copy.
    /// - Precondition: as ``gatherRows(_:_:into:)``'s, and `source` is contiguous.
    package static func startGatheringRows(
        _ source: Tensor, _ indices: UnsafePointer<Int>, count: Int, into destination: Tensor
    ) -> BackgroundWork {
        precondition(source.isContiguous, "rows: the source of shape \(source.shape) is not contiguous")
        checkGathering(source, UnsafeBufferPointer(start: indices, count: count), into: destination)
        let rowSize = source.shape.dropFirst().reduce(1, *)
        let rowsPerPiece = Swift.max(1, 8192 / Swift.max(rowSize, 1))
        let (from, to) = (UnsafePointer(source.pointer), destination.pointer)
        return BackgroundWork((count + rowsPerPiece - 1) / rowsPerPiece) { piece in
            let first = piece * rowsPerPiece
            let rows = Swift.min(rowsPerPiece, count - first)
            bp_gather_rows(to + first * rowSize, from, indices + first, rows, count - first, rowSize)
        }
    }

    /// Asks the processor to start fetching the first `lines` cache lines (64 bytes each) of rows
    /// `indices` of `source`, and changes nothing: a minibatch's next rows, requested now, arrive
    /// sooner when they are gathered.
    /// - Precondition: `source` is contiguous and every index lies within `0..<source.shape[0]`.
    package static func prefetchRows(_ source: Tensor, _ indices: UnsafeBufferPointer<Int>, lines: Int) {
        precondition(source.isContiguous, "prefetchRows: the source of shape \(source.shape) is not contiguous")
        let rowCount = source.shape[0]
        for index in indices where index < 0 || index >= rowCount {
            preconditionFailure("prefetchRows: index \(index) out of range 0..<\(rowCount)")
        }
        guard let first = indices.baseAddress, !indices.isEmpty else { return }
        let rowSize = source.shape.dropFirst().reduce(1, *)
        withExtendedLifetime(source) { bp_prefetch_rows(source.pointer, first, indices.count, rowSize, lines) }
    }
}
