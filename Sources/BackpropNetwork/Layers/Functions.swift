import BackpropCore

// The seed's free functions, in the seed's words.

/// A linear layer's forward pass: `lin(x, w, b) = x • w + b` (the seed's `def lin(x, w, b): return x@w + b`).
///
/// Shapes: `x (n, m)`, `w (m, nh)`, `b (nh)` give `(n, nh)`.
///
/// Autograd records the seed's two operations, the product `x • w` and the broadcast add `+ b`,
/// each with its own derivative: nothing in the graph restates `Lin.backward`, so comparing `.g`
/// with `.grad` checks the layer. Where autograd is not recording (the seed's manual path), the
/// product and the bias are one pass: the matrix-product kernel starts each row of the result
/// from `b`, the same arithmetic as `x • w + b` without a temporary.
/// - Precondition: the shapes fit; otherwise stops naming them.
public func lin(_ x: Tensor, _ w: Tensor, _ b: Tensor) -> Tensor {
    Tensor.checkMatmulShapes(x, w, operation: "lin")
    let rows = x.shape[0]
    let columns = w.shape[1]
    precondition(
        b.count == columns && b.rank <= 2 && b.shape.last == columns,
        "lin: bias of shape \(b.shape) does not fit x \(x.shape) • w \(w.shape) (expected [\(columns)])")
    if Tensor.wouldRecord(x, w, b) { return x • w + b }
    let result = Tensor(uninitializedShape: [rows, columns])
    Tensor.gemm(x, w, into: result, accumulate: false, bias: b, kernel: .fast)
    return result
}

/// The rectified linear unit: `relu(x) = max(x, 0)`, the seed's `inp.clamp_min(0.)`.
public func relu(_ x: Tensor) -> Tensor {
    x.clampMin(0)
}

/// Mean squared error: `mse(output, target) = mean((output.squeeze() - target)²)` (the seed's
/// `def mse(output, targ): return ((output.squeeze()-targ)**2).mean()`).
///
/// Shapes: `output (n, 1)` and `target (n)` give a scalar.
/// NOTE: without `squeeze()`, `(n, 1) - (n)` broadcasts to `(n, n)` and the loss is silently wrong.
public func mse(_ output: Tensor, _ target: Tensor) -> Tensor {
    ((output.squeeze() - target) ** 2).mean()
}
