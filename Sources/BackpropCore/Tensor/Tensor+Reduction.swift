import CKernels
import Foundation

// Reductions. Sums accumulate in Double and round once to Float at the end, so they are at least
// as accurate as NumPy's pairwise float32 sums and do not depend on the order of threads.

extension Tensor {
    /// The sum over dimension `dim` (PyTorch's `sum(dim)`), which is removed unless `keepDim`.
    ///
    /// The seed's `b.g = out.g.sum(0)` sums a `(n, out)` gradient over its rows into `(out)`.
    /// - Precondition: `dim` names a dimension (negative values count from the end; a scalar's
    ///   are 0 and -1, as in PyTorch, and give the scalar).
    public func sum(_ dim: Int, keepDim: Bool = false) -> Tensor {
        if let line = scalarAsLine(dim, operation: "sum") { return line.sum(0) }
        let axis = normalizedAxis(dim, rank: rank, operation: "sum")
        return reduce(axis: axis, keepDim: keepDim, scale: 1).recorded(.sum(axis: axis, keepDim: keepDim), self)
    }

    /// The sum of all elements, as a scalar tensor (shape `[]`).
    public func sum() -> Tensor {
        Tensor(Float(sumInDouble())).recorded(.sumAll, self)
    }

    /// The mean of all elements, as a scalar tensor (shape `[]`): `Σx / count`.
    /// - Precondition: the tensor is not empty.
    public func mean() -> Tensor {
        precondition(count > 0, "mean(): tensor of shape \(shape) is empty")
        return Tensor(Float(sumInDouble() / Double(count))).recorded(.meanAll, self)
    }

    /// The mean over dimension `dim`, which is removed unless `keepDim`.
    /// - Precondition: `dim` names a non-empty dimension.
    public func mean(_ dim: Int, keepDim: Bool = false) -> Tensor {
        if let line = scalarAsLine(dim, operation: "mean") { return line.mean(0) }
        let axis = normalizedAxis(dim, rank: rank, operation: "mean")
        precondition(shape[axis] > 0, "mean(\(dim)): dimension \(dim) of shape \(shape) is empty")
        return reduce(axis: axis, keepDim: keepDim, scale: 1 / Double(shape[axis]))
            .recorded(.mean(axis: axis, keepDim: keepDim), self)
    }

    /// The largest element along `dim` (PyTorch's `max(dim).values`), removed unless `keepDim`.
    ///
    /// Autograd sends the gradient to the first position that holds the maximum. A line that
    /// holds a NaN gives NaN, as in PyTorch (and as ``max()``), with its gradient at the first NaN.
    /// - Precondition: `dim` names a non-empty dimension.
    public func max(_ dim: Int, keepDim: Bool = false) -> Tensor {
        if let line = scalarAsLine(dim, operation: "max") { return line.max(0) }
        let axis = normalizedAxis(dim, rank: rank, operation: "max")
        precondition(shape[axis] > 0, "max(\(dim)): dimension \(dim) of shape \(shape) is empty")
        let result = reduceLines(axis: axis, keepDim: keepDim) { line, count, stride in
            var best = line[0]
            for k in 1..<count where !best.isNaN {
                let value = line[k * stride]
                if value.isNaN || value > best { best = value }
            }
            return best
        }
        return result.recorded(.max(axis: axis, keepDim: keepDim), self)
    }

    /// The smallest element along `dim` (PyTorch's `min(dim).values`), removed unless `keepDim`.
    ///
    /// Autograd sends the gradient to the first position that holds the minimum. A line that
    /// holds a NaN gives NaN, as in PyTorch, with its gradient at the first NaN.
    /// - Precondition: `dim` names a non-empty dimension.
    public func min(_ dim: Int, keepDim: Bool = false) -> Tensor {
        if let line = scalarAsLine(dim, operation: "min") { return line.min(0) }
        let axis = normalizedAxis(dim, rank: rank, operation: "min")
        precondition(shape[axis] > 0, "min(\(dim)): dimension \(dim) of shape \(shape) is empty")
        let result = reduceLines(axis: axis, keepDim: keepDim) { line, count, stride in
            var best = line[0]
            for k in 1..<count where !best.isNaN {
                let value = line[k * stride]
                if value.isNaN || value < best { best = value }
            }
            return best
        }
        return result.recorded(.min(axis: axis, keepDim: keepDim), self)
    }

    /// The index of the largest element along `dim`, for each position of the other dimensions.
    ///
    /// For a `(n, c)` matrix of scores, `argmax(1)` gives each row's predicted class. At a tie,
    /// the first position wins; the first NaN wins over any number, as in PyTorch.
    /// - Precondition: `dim` names a dimension that is not empty, unless the others are.
    public func argmax(_ dim: Int) -> [Int] {
        bestIndices(dim, operation: "argmax", isBetter: >)
    }

    /// The index of the smallest element along `dim`, for each position of the other dimensions.
    /// At a tie, the first position wins; the first NaN wins over any number.
    /// - Precondition: `dim` names a dimension that is not empty, unless the others are.
    public func argmin(_ dim: Int) -> [Int] {
        bestIndices(dim, operation: "argmin", isBetter: <)
    }

    /// For each line along `dim`, the first NaN's index, else the first index whose value no later
    /// one `isBetter` than.
    private func bestIndices(_ dim: Int, operation: String, isBetter: (Float, Float) -> Bool) -> [Int] {
        if let line = scalarAsLine(dim, operation: operation) {
            return line.bestIndices(0, operation: operation, isBetter: isBetter)
        }
        let axis = normalizedAxis(dim, rank: rank, operation: operation)
        let (outer, size, inner) = splitAround(axis)
        precondition(
            size > 0 || outer * inner == 0, "\(operation)(\(dim)): dimension \(dim) of shape \(shape) is empty")
        let source = contiguous()
        let input = source.pointer
        var result = [Int](repeating: 0, count: outer * inner)
        withExtendedLifetime(source) {
            for o in 0..<outer {
                for i in 0..<inner {
                    var bestIndex = 0
                    var best = input[o * size * inner + i]
                    for k in 1..<Swift.max(size, 1) where !best.isNaN {
                        let value = input[(o * size + k) * inner + i]
                        if value.isNaN || isBetter(value, best) {
                            best = value
                            bestIndex = k
                        }
                    }
                    result[o * inner + i] = bestIndex
                }
            }
        }
        return result
    }

    /// The largest element, as a scalar tensor (shape `[]`; PyTorch's `max()`). NaN if any
    /// element is NaN, as in PyTorch.
    ///
    /// NOTE: at a tie, autograd shares the gradient evenly among the elements that equal the
    /// maximum, as PyTorch's `max()` does (`max(dim)` gives it all to the first instead).
    /// - Precondition: the tensor is not empty.
    public func max() -> Tensor {
        Tensor(extremeElement(operation: "max()", isBetter: >).value).recorded(.maxAll, self)
    }

    /// The smallest element, as a scalar tensor (shape `[]`; PyTorch's `min()`). NaN if any
    /// element is NaN.
    ///
    /// NOTE: at a tie, autograd shares the gradient evenly among the elements that equal the
    /// minimum, as PyTorch's `min()` does.
    /// - Precondition: the tensor is not empty.
    public func min() -> Tensor {
        Tensor(extremeElement(operation: "min()", isBetter: <).value).recorded(.minAll, self)
    }

    /// The row-major position of the largest element, over all elements (PyTorch's `argmax()`):
    /// the first one at a tie, the first NaN if there is one. `m[i, j]` of a `(r, c)` matrix is
    /// position `i * c + j`.
    /// - Precondition: the tensor is not empty.
    public func argmax() -> Int {
        extremeElement(operation: "argmax()", isBetter: >).index
    }

    /// The row-major position of the smallest element, over all elements (PyTorch's
    /// `argmin()`): the first one at a tie, the first NaN if there is one.
    /// - Precondition: the tensor is not empty.
    public func argmin() -> Int {
        extremeElement(operation: "argmin()", isBetter: <).index
    }

    /// The first element that no other `isBetter` than, and its row-major position; the first NaN
    /// if there is one (a NaN compares false with everything).
    private func extremeElement(operation: String, isBetter: (Float, Float) -> Bool) -> (value: Float, index: Int) {
        precondition(count > 0, "\(operation): tensor of shape \(shape) is empty")
        return withUnsafeBufferPointer { values in
            var bestIndex = 0
            for i in values.indices {
                if values[i].isNaN { return (values[i], i) }
                if isBetter(values[i], values[bestIndex]) { bestIndex = i }
            }
            return (values[bestIndex], bestIndex)
        }
    }

    /// `log Σ exp(x)` along `dim`, computed stably as `m + log Σ exp(x - m)` with `m` the maximum,
    /// so that large values neither overflow nor lose precision.
    ///
    /// Its derivative is the softmax along `dim`.
    public func logSumExp(_ dim: Int, keepDim: Bool = false) -> Tensor {
        if let line = scalarAsLine(dim, operation: "logSumExp") { return line.logSumExp(0) }
        let axis = normalizedAxis(dim, rank: rank, operation: "logSumExp")
        let result = reduceLines(axis: axis, keepDim: keepDim) { line, count, stride in
            let (m, total) = Tensor.maximumAndExponentialSum(line, count: count, stride: stride)
            return m.isFinite ? m + Float(Foundation.log(total)) : m
        }
        return result.recorded(.logSumExp(axis: axis, keepDim: keepDim), self)
    }

    /// The largest `m` of `count` values `stride` apart, and `Σ exp(x - m)` over them in Double
    /// (`x - m` is exact in Double and at most 0, so no `exp` overflows): the stable core of
    /// log-sum-exp and softmax, here once for ``logSumExp(_:keepDim:)`` and the fused
    /// cross-entropy kernels.
    ///
    /// Where `m` is not finite (a row of `-∞`, an `∞`, a NaN) the sum is NaN. When `exponentials`
    /// is given, `exp(x_j - m)` is also stored in `exponentials[j]`.
    @inline(__always)
    package static func maximumAndExponentialSum(
        _ x: UnsafePointer<Float>, count: Int, stride: Int = 1, exponentials: UnsafeMutablePointer<Double>? = nil
    ) -> (maximum: Float, sum: Double) {
        // A NaN is the maximum, as in PyTorch (`Swift.max` would skip it: a line of NaN and -∞ gave
        // -∞, one of NaN and ∞ gave ∞).
        var m = -Float.infinity
        for j in 0..<count {
            let value = x[j * stride]
            m = value > m || value.isNaN ? value : m
        }
        guard m.isFinite else {
            exponentials?.update(repeating: .nan, count: count)
            return (m, .nan)
        }
        var total = 0.0
        for j in 0..<count {
            let e = Foundation.exp(Double(x[j * stride]) - Double(m))
            exponentials?[j] = e
            total += e
        }
        return (m, total)
    }

    /// The softmax parts of `rows` rows of `classes` logits at once, for the fused cross-entropy of
    /// a training step: each row's maximum `maxima[i] = m_i`, `exponentials[i, j] = exp(x[i, j] - m_i)`
    /// and `sums[i] = Σ_j exponentials[i, j]` (in index order), in Double. A row whose maximum is not
    /// finite gets NaN exponentials and sum, as in ``maximumAndExponentialSum(_:count:stride:exponentials:)``.
    ///
    /// The exponentials run 8 (AVX-512) or 4 (AVX2) at a time (`bp_softmax_rows` in
    /// `Sources/CKernels/Softmax.c`): a minibatch's 640 take about a microsecond, where the C
    /// library's `exp`, one at a time, takes three. Each is within one unit in the last place of
    /// the correctly rounded value (as the library's is), and the same bits on every CPU.
    package static func softmaxRows(
        _ x: UnsafePointer<Float>, rows: Int, classes: Int, maxima: UnsafeMutablePointer<Float>,
        sums: UnsafeMutablePointer<Double>, exponentials: UnsafeMutablePointer<Double>
    ) {
        bp_softmax_rows(x, rows, classes, maxima, sums, exponentials)
    }

    /// One exponential `exp(t)`, `t ≤ 0`, as ``softmaxRows(_:rows:classes:maxima:sums:exponentials:)``
    /// computes it (its scalar path; tests compare it with the C library's `exp`).
    package static func softmaxExponential(_ t: Double) -> Double {
        bp_exp_nonpositive(t)
    }

    /// A tensor with `axis` reduced: each element is `reduce(line, count, stride)` over one line of
    /// values along `axis` (`line[k * stride]` for `k` in `0..<count`), read from a contiguous copy.
    private func reduceLines(
        axis: Int, keepDim: Bool, _ reduce: (_ line: UnsafePointer<Float>, _ count: Int, _ stride: Int) -> Float
    ) -> Tensor {
        let (outer, size, inner) = splitAround(axis)
        let source = contiguous()
        let result = Tensor(uninitializedShape: reducedShape(axis: axis, keepDim: keepDim))
        let input = source.pointer
        let out = result.pointer
        withExtendedLifetime(source) {
            for o in 0..<outer {
                for i in 0..<inner {
                    out[o * inner + i] = reduce(input + o * size * inner + i, size, inner)
                }
            }
        }
        return result
    }

    /// The sizes before, at, and after `axis`, for loops over a contiguous copy.
    func splitAround(_ axis: Int) -> (outer: Int, size: Int, inner: Int) {
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        return (outer, shape[axis], inner)
    }

    /// The shape after reducing `axis`.
    func reducedShape(axis: Int, keepDim: Bool) -> [Int] {
        var result = shape
        if keepDim { result[axis] = 1 } else { result.remove(at: axis) }
        return result
    }

    /// Sums along `axis` in Double, multiplies by `scale`, and rounds to Float.
    ///
    /// A long sum over the first axis (the seed's `b.g = out.g.sum(0)` over 50,000 rows) is cut
    /// into blocks of ``reductionBlockRows`` rows, summed on all cores, and the blocks' sums added
    /// in order: the blocks do not depend on the number of cores, so neither does the result.
    private func reduce(axis: Int, keepDim: Bool, scale: Double) -> Tensor {
        let (outer, size, inner) = splitAround(axis)
        let source = contiguous()
        let result = Tensor(uninitializedShape: reducedShape(axis: axis, keepDim: keepDim))
        let input = source.pointer
        let out = result.pointer
        let blockRows = Tensor.reductionBlockRows
        if outer == 1 && size > blockRows && inner > 0 {
            let blocks = (size + blockRows - 1) / blockRows
            let partial = UnsafeMutablePointer<Double>.allocateScratch(
                capacity: blocks * inner, for: "a sum's scratch memory")
            defer { partial.deallocate() }
            withExtendedLifetime(source) {
                Parallel.forEachRange(blocks, minimumPerPiece: size * inner >= 1 << 18 ? 1 : blocks) { range in
                    for block in range {
                        let rows = (block * blockRows)..<Swift.min(size, (block + 1) * blockRows)
                        Tensor.sumRows(
                            input + rows.lowerBound * inner, rows: rows.count, columns: inner,
                            into: partial + block * inner)
                    }
                }
            }
            for i in 0..<inner {
                var total = 0.0
                for block in 0..<blocks { total += partial[block * inner + i] }
                out[i] = Float(total * scale)
            }
            return result
        }
        let accumulator = UnsafeMutablePointer<Double>.allocateScratch(
            capacity: Swift.max(inner, 1), for: "a sum's scratch memory")
        defer { accumulator.deallocate() }
        withExtendedLifetime(source) {
            for o in 0..<outer {
                Tensor.sumRows(input + o * size * inner, rows: size, columns: inner, into: accumulator)
                for i in 0..<inner { out[o * inner + i] = Float(accumulator[i] * scale) }
            }
        }
        return result
    }

    /// Rows per block of a long reduction over the first axis.
    static let reductionBlockRows = 4096

    /// `sums[i] = Σ_r rows[r * columns + i]`, in Double, row after row (`bp_sum_columns`: the same
    /// chain per column, four columns per instruction with AVX2).
    private static func sumRows(
        _ rows: UnsafePointer<Float>, rows count: Int, columns: Int, into sums: UnsafeMutablePointer<Double>
    ) {
        bp_sum_columns(rows, count, columns, sums)
    }

    /// The sum of all elements in Double.
    func sumInDouble() -> Double {
        let source = contiguous()
        let input = source.pointer
        return withExtendedLifetime(source) {
            // Four accumulators let the loop vectorise; the order is fixed, so the result is too.
            var partial = (0.0, 0.0, 0.0, 0.0)
            let blocks = count / 4
            for block in 0..<blocks {
                let i = block * 4
                partial.0 += Double(input[i])
                partial.1 += Double(input[i + 1])
                partial.2 += Double(input[i + 2])
                partial.3 += Double(input[i + 3])
            }
            var total = (partial.0 + partial.1) + (partial.2 + partial.3)
            for i in (blocks * 4)..<count { total += Double(input[i]) }
            return total
        }
    }

    /// Whether no element is infinite or NaN.
    package var isAllFinite: Bool {
        let source = contiguous()
        let input = source.pointer
        return withExtendedLifetime(source) {
            // x · 0 is 0 for a finite x and NaN for ±∞ and NaN: one sum without branches, which
            // vectorises (IEEE arithmetic does not let the compiler drop the multiplication).
            var zeros = (Float(0), Float(0), Float(0), Float(0))
            let blocks = count / 4
            for block in 0..<blocks {
                let i = block * 4
                zeros.0 += input[i] * 0
                zeros.1 += input[i + 1] * 0
                zeros.2 += input[i + 2] * 0
                zeros.3 += input[i + 3] * 0
            }
            var total = (zeros.0 + zeros.1) + (zeros.2 + zeros.3)
            for i in (blocks * 4)..<count { total += input[i] * 0 }
            return total == 0
        }
    }
}

extension Tensor {
    /// The Euclidean (Frobenius) norm of all elements, `sqrt(Σ x²)`, accumulated in Double.
    public func norm() -> Double {
        return withUnsafeBufferPointer { values in
            var total = 0.0
            for value in values { total += Double(value) * Double(value) }
            return total.squareRoot()
        }
    }
}
