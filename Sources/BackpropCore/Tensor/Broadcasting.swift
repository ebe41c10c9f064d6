/// NumPy broadcasting, as PyTorch does it.
///
/// Two shapes are aligned at their last dimension; each pair of sizes must be equal, or one of
/// them 1 (a missing leading dimension counts as 1). The result takes the larger size of each pair.
/// For example `(n, 1)` and `(n)` broadcast to `(n, n)`: the trap that the seed's `mse` avoids
/// with `squeeze()`.
enum Broadcasting {
    /// The shape that `a` and `b` broadcast to.
    /// - Precondition: the shapes are compatible; otherwise stops with a message naming both
    ///   (`operation` says which operation was attempted).
    static func shape(_ a: [Int], _ b: [Int], operation: String) -> [Int] {
        let rank = max(a.count, b.count)
        var result = [Int](repeating: 1, count: rank)
        for axis in 0..<rank {
            let sizeA = axis < rank - a.count ? 1 : a[axis - (rank - a.count)]
            let sizeB = axis < rank - b.count ? 1 : b[axis - (rank - b.count)]
            if sizeA == sizeB || sizeB == 1 {
                result[axis] = sizeA
            } else if sizeA == 1 {
                result[axis] = sizeB
            } else {
                preconditionFailure(
                    "\(operation): shapes \(a) and \(b) cannot be broadcast together "
                        + "(dimension \(axis) of the result: \(sizeA) against \(sizeB))")
            }
        }
        return result
    }

    /// The strides that read `tensor` as if it had shape `target` (0 along broadcast dimensions).
    static func strides(of tensor: Tensor, expandedTo target: [Int]) -> [Int] {
        let lead = target.count - tensor.rank
        var result = [Int](repeating: 0, count: target.count)
        for axis in 0..<tensor.rank where tensor.shape[axis] != 1 || target[axis + lead] == 1 {
            result[axis + lead] = tensor.strides[axis]
        }
        return result
    }
}

extension Tensor {
    /// Applies `operation` elementwise to `a` and `b` broadcast together, into a new tensor.
    ///
    /// Fast paths cover the layouts the layers produce (same shape, a scalar, a bias row added to
    /// every row); any other layout takes the general strided loop.
    /// Generic over the operation's type so that each operation gets loops of its own, vectorised
    /// (see ``ElementwiseFunction``).
    static func broadcastBinary<Operation: ElementwiseBinaryFunction>(
        _ a: Tensor, _ b: Tensor, name: String, _ operation: Operation
    ) -> Tensor {
        let shape = a.shape == b.shape ? a.shape : Broadcasting.shape(a.shape, b.shape, operation: name)
        let result = Tensor(uninitializedShape: shape)
        let count = result.count
        if count == 0 { return result }
        let out = result.pointer
        let aContiguous = a.isContiguous && a.shape == shape
        let bContiguous = b.isContiguous && b.shape == shape
        if aContiguous && bContiguous {
            let pa = a.pointer
            let pb = b.pointer
            Parallel.forEachRange(count, minimumPerPiece: elementwiseMinimumPerWorker) { range in
                for i in range { out[i] = operation(pa[i], pb[i]) }
            }
            return result
        }
        if aContiguous && b.count == 1 {
            let pa = a.pointer
            let scalar = b.storage.pointer[b.offset]
            Parallel.forEachRange(count, minimumPerPiece: elementwiseMinimumPerWorker) { range in
                for i in range { out[i] = operation(pa[i], scalar) }
            }
            return result
        }
        if a.count == 1 && bContiguous {
            let scalar = a.storage.pointer[a.offset]
            let pb = b.pointer
            Parallel.forEachRange(count, minimumPerPiece: elementwiseMinimumPerWorker) { range in
                for i in range { out[i] = operation(scalar, pb[i]) }
            }
            return result
        }
        let columns = shape.last!
        // A row vector (the bias) added to every row of a contiguous matrix.
        if aContiguous && b.isContiguous && b.count == columns && (b.rank == 1 || b.shape.last == columns) {
            let pa = a.pointer
            let pb = b.pointer
            for row in 0..<(count / columns) {
                let base = row * columns
                for j in 0..<columns { out[base + j] = operation(pa[base + j], pb[j]) }
            }
            return result
        }
        // The general case: walk the result row-major, reading each input through its strides.
        let stridesA = Broadcasting.strides(of: a, expandedTo: shape)
        let stridesB = Broadcasting.strides(of: b, expandedTo: shape)
        let rank = shape.count
        var index = [Int](repeating: 0, count: rank)
        var positionA = a.offset
        var positionB = b.offset
        let pa = a.storage.pointer
        let pb = b.storage.pointer
        let innerA = stridesA[rank - 1]
        let innerB = stridesB[rank - 1]
        var written = 0
        while written < count {
            for j in 0..<columns {
                out[written + j] = operation(pa[positionA + j * innerA], pb[positionB + j * innerB])
            }
            written += columns
            var axis = rank - 2
            while axis >= 0 {
                index[axis] += 1
                positionA += stridesA[axis]
                positionB += stridesB[axis]
                if index[axis] < shape[axis] { break }
                positionA -= stridesA[axis] * shape[axis]
                positionB -= stridesB[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
        }
        return result
    }

    /// Applies `operation` to every element, into a new contiguous tensor of the same shape: a
    /// loop of its own for each operation's type, vectorised where the operation allows (see
    /// ``ElementwiseFunction``).
    func mapValues<Operation: ElementwiseFunction>(_ operation: Operation) -> Tensor {
        let source = contiguous()
        let result = Tensor(uninitializedShape: shape)
        let input = source.pointer
        let out = result.pointer
        withExtendedLifetime(source) {
            Parallel.forEachRange(count, minimumPerPiece: Tensor.elementwiseMinimumPerWorker) { range in
                for i in range { out[i] = operation(input[i]) }
            }
        }
        return result
    }

    /// Applies the closure `operation` to every element (called for each, as ``ClosureFunction``
    /// says): for operations whose own cost dwarfs a call's (`exp`, `erf`, `pow`) and for paths
    /// where speed does not matter.
    func mapValues(_ operation: (Float) -> Float) -> Tensor {
        withoutActuallyEscaping(operation) { operation in mapValues(ClosureFunction(operation)) }
    }

    /// Elementwise loops shorter than twice this stay on one thread (a worker costs a few
    /// microseconds to start; 128 Ki elements take about as long to stream through).
    package static let elementwiseMinimumPerWorker = 1 << 17
}
