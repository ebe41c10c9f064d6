import BackpropCore

// Reading the seed's tensors out of a safetensors file, with every name and shape checked: the
// inputs and targets (`x`, `y`) and the weights of a model of Lin layers (`w1`, `b1`, `w2`, `b2`,
// …), as `backprop gradcheck --tensors FILE --init FILE` takes them. Errors name the file, the
// tensor, and the shape expected and found.

/// The first element of `tensor` (row-major) that is NaN or infinite, and its index, or `nil`.
package func firstNonFinite(_ tensor: Tensor) -> (value: Float, index: [Int])? {
    guard let bad = tensor.withUnsafeBufferPointer({ values in values.firstIndex { !$0.isFinite } }) else {
        return nil
    }
    var index: [Int] = []
    var rest = bad
    for size in tensor.shape.reversed() {
        index.insert(rest % size, at: 0)
        rest /= size
    }
    return (tensor.withUnsafeBufferPointer { $0[bad] }, index)
}

extension SafetensorsFile {
    /// The inputs `x` `(n, m)` (or, with `images`, also `(n, c, h, w)`) and targets `y` `(n)`
    /// stored in this file.
    ///
    /// `y` may also be stored as `(n, 1)` (a column, as a model outputs it); it is returned as
    /// `(n)`, the shape the seed's `Mse` expects.
    /// - Throws: ``DataError`` naming the file when `x` or `y` is missing (listing the tensors the
    ///   file holds), `x` is not a matrix (or images) or has a dimension of 0, or `y` does not
    ///   hold one target per row of `x`, or either holds NaN or an infinity.
    public func inputsAndTargets(images: Bool = false) throws -> (x: Tensor, y: Tensor) {
        let x = try tensor("x")
        guard x.rank == 2 || (images && x.rank == 4) else {
            let expected = images ? "a matrix (n, m) or images (n, c, h, w)" : "a matrix (n, m)"
            throw DataError(path: path, problem: "tensor 'x' has shape \(x.shape), expected \(expected)")
        }
        guard !x.shape.contains(0) else {
            let expected = x.rank == 2 ? "[n, m] with n, m > 0" : "[n, c, h, w], each > 0"
            throw DataError(path: path, problem: "tensor 'x' has shape \(x.shape), expected \(expected)")
        }
        let y = try tensor("y")
        let rows = x.shape[0]
        guard y.shape == [rows] || y.shape == [rows, 1] else {
            throw DataError(
                path: path,
                problem: "tensor 'y' has shape \(y.shape), expected [\(rows)] (one target per row of x \(x.shape))")
        }
        // NaN or an infinity among the inputs would surface as a NaN loss, or as every gradient
        // "failing" its check: name it here.
        for (name, tensor) in [("x", x), ("y", y)] {
            if let (value, index) = firstNonFinite(tensor) {
                throw DataError(
                    path: path,
                    problem: "tensor '\(name)' holds \(value.isNaN ? "NaN" : "an infinity") at \(index); expected "
                        + "finite inputs and targets")
            }
        }
        return (x, y.reshape([rows]))
    }

    /// The weights of a chain of Lin layers stored as `w1`, `b1`, `w2`, `b2`, …, `wK`, `bK`, for
    /// inputs of width `inputs`.
    ///
    /// Shapes: `w1 (inputs, n1)`, `b1 (n1)`, `w2 (n1, n2)`, `b2 (n2)`, …: each layer's width is the
    /// next one's input. The chain ends at the first `k` with no `wk`. Other tensors (`x`, `y`,
    /// `loss`, gradients) are ignored, so one file may hold data and weights together.
    /// - Parameters:
    ///   - inputs: the width `m` of the inputs, which `w1` must take.
    ///   - layers: read exactly this many layers (`w1` … `w<layers>`, each required; any further
    ///     ones are ignored), or `nil` for the whole chain.
    ///   - outputs: the width the last layer must have (1 for the seed's regression), or `nil`
    ///     for any.
    /// - Throws: ``DataError`` naming the file when `w1` is missing (or, with `layers`, any
    ///   `wk`), a `wk` is not a matrix, does not take the previous width, has 0 columns, or has
    ///   no `bk` of shape `(n_k)`, the last layer does not have `outputs` columns, or (without
    ///   `layers`) `b(K+1)` exists without `w(K+1)`.
    public func linearWeights(inputs: Int, layers: Int? = nil, outputs: Int? = nil) throws -> [(w: Tensor, b: Tensor)] {
        var result: [(w: Tensor, b: Tensor)] = []
        var width = inputs
        var k = 1
        while layers.map({ k <= $0 }) ?? (k == 1 || tensors["w\(k)"] != nil) {
            let w = try tensor("w\(k)")
            guard w.rank == 2, w.shape[0] == width else {
                let source = k == 1 ? "the inputs' width" : "the width of w\(k - 1)"
                throw DataError(
                    path: path,
                    problem: "tensor 'w\(k)' has shape \(w.shape), expected [\(width), n] (\(source) is \(width))")
            }
            guard w.shape[1] > 0 else {
                throw DataError(
                    path: path,
                    problem:
                        "tensor 'w\(k)' has shape \(w.shape), expected [\(width), n] with n > 0 (a layer of 0 units)")
            }
            let isLast = layers.map { k == $0 } ?? (tensors["w\(k + 1)"] == nil)
            if isLast, let outputs, w.shape[1] != outputs {
                throw DataError(
                    path: path,
                    problem: "tensor 'w\(k)' has shape \(w.shape), expected [\(width), \(outputs)] "
                        + "(the last layer gives \(outputs) output\(outputs == 1 ? "" : "s") per row)")
            }
            let b = try tensor("b\(k)", shape: [w.shape[1]])
            result.append((w, b))
            width = w.shape[1]
            k += 1
        }
        if layers == nil && tensors["b\(k)"] != nil {
            throw DataError(path: path, problem: "tensor 'b\(k)' has no 'w\(k)' to go with it")
        }
        return result
    }
}
