// `torch.matmul`'s shapes beyond two matrices: vectors become a row or a column (reshapes that
// autograd records), and batches of matrices are one recorded operation, `.batchedMatmul`, that
// runs one product per matrix of the broadcast batch on the kernels of `MatMul.swift`.

extension Tensor {
    /// `a • b` for operands that are not both matrices (``matmul(_:kernel:)``'s other cases).
    static func generalMatmul(_ a: Tensor, _ b: Tensor, kernel: MatMulKernel) -> Tensor {
        precondition(
            a.rank >= 1 && b.rank >= 1,
            "matmul: expects tensors of one dimension or more, got shapes \(a.shape) and \(b.shape)")
        let (k, inner) = (a.shape[a.rank - 1], b.shape[b.rank == 1 ? 0 : b.rank - 2])
        precondition(
            k == inner, "matmul: shapes \(a.shape) and \(b.shape) cannot be multiplied (\(k) ≠ \(inner))")
        let left = a.rank == 1 ? a.reshape([1, a.shape[0]]) : a
        let right = b.rank == 1 ? b.reshape([b.shape[0], 1]) : b
        var product =
            left.rank == 2 && right.rank == 2
            ? left.matmul(right, kernel: kernel) : batchedMatmul(left, right, kernel: kernel, shapes: (a, b))
        // Drop the dimensions that stood in for a vector: the row of the left, the column of the right.
        if a.rank == 1 {
            var shape = product.shape
            shape.remove(at: shape.count - 2)
            product = product.reshape(shape)
        }
        if b.rank == 1 { product = product.reshape(Array(product.shape.dropLast())) }
        return product
    }

    /// The batched product of `a (…, n, k)` and `b (…, k, m)`, both of rank 2 or more, their batch
    /// dimensions broadcast: `(…, n, m)`. `shapes` are the operands as the caller gave them, for
    /// messages.
    static func batchedMatmul(
        _ a: Tensor, _ b: Tensor, kernel: MatMulKernel, shapes: (Tensor, Tensor)? = nil
    ) -> Tensor {
        let (shownA, shownB) = shapes.map { ($0.0.shape, $0.1.shape) } ?? (a.shape, b.shape)
        let (n, k) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (inner, m) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        precondition(
            k == inner, "matmul: shapes \(shownA) and \(shownB) cannot be multiplied (\(k) ≠ \(inner))")
        let batch = Broadcasting.shape(
            Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2)), operation: "matmul of \(shownA) and \(shownB)")
        let result = Tensor(uninitializedShape: batch + [n, m])
        let count = batch.reduce(1, *)
        if count == 0 || n == 0 || m == 0 { return result.recorded(.batchedMatmul, a, b) }
        // Each operand's matrices must be row- or column-major to be read in place.
        let left = a.hasMatrixLayoutInLastTwo ? a : a.contiguous()
        let right = b.hasMatrixLayoutInLastTwo ? b : b.contiguous()
        let leftStrides = Broadcasting.strides(of: left, expandedTo: batch + [n, k])
        let rightStrides = Broadcasting.strides(of: right, expandedTo: batch + [k, m])
        let route = kernel.route(m: n, n: m, k: k)
        withExtendedLifetime((left, right)) {
            var index = [Int](repeating: 0, count: batch.count)
            for matrix in 0..<count {
                var (offsetA, offsetB) = (0, 0)
                for axis in 0..<batch.count {
                    offsetA += index[axis] * leftStrides[axis]
                    offsetB += index[axis] * rightStrides[axis]
                }
                gemm(
                    left.matrixOperand(at: offsetA), right.matrixOperand(at: offsetB),
                    into: result.pointer + matrix * n * m, accumulate: false, route: route)
                // The next batch index, the last dimension fastest.
                var axis = batch.count - 1
                while axis >= 0 {
                    index[axis] += 1
                    if index[axis] < batch[axis] { break }
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
        return result.recorded(.batchedMatmul, a, b)
    }

    /// Whether the matrices in the last two dimensions are row- or column-major.
    private var hasMatrixLayoutInLastTwo: Bool {
        let (rows, columns) = (shape[rank - 2], shape[rank - 1])
        return strides[rank - 1] == 1 || columns == 1 || strides[rank - 2] == 1 || rows == 1
    }

    /// The matrix in the last two dimensions that starts `offset` elements past this tensor's
    /// first, as the kernels read it; the layout must be one ``hasMatrixLayoutInLastTwo`` accepts.
    private func matrixOperand(at offset: Int) -> MatrixOperand {
        let (rows, columns) = (shape[rank - 2], shape[rank - 1])
        let (rowStride, columnStride) = (strides[rank - 2], strides[rank - 1])
        let start = UnsafePointer(pointer + offset)
        if columnStride == 1 || columns == 1 {
            return MatrixOperand(
                pointer: start, rows: rows, columns: columns, leading: Swift.max(rowStride, columns, 1),
                transposed: false)
        }
        return MatrixOperand(
            pointer: start, rows: rows, columns: columns, leading: Swift.max(columnStride, rows, 1), transposed: true)
    }

    /// The matrices in the last two dimensions transposed, as a view (`transpose(-2, -1)`).
    func transposedMatrices() -> Tensor {
        var dims = Array(0..<rank)
        dims.swapAt(rank - 2, rank - 1)
        return permute(dims)
    }
}
