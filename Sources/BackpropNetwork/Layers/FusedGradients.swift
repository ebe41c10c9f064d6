import BackpropCore

// Fused kernels for the seed's backward expressions: each computes in one pass over memory what
// the seed writes as a chain of elementwise operations, with the same arithmetic in the same
// order, so the result is bit for bit the chain's. The layers call them where the seed's line
// stands (the line stays next to the call); tests compare each against the chain it replaces.
//
// They apply where the chain is a plain loop (contiguous operands of the expected shapes) and
// autograd is not watching; anywhere else the layers evaluate the seed's chain itself.

extension Tensor {
    /// The seed's ReLU gradient `(inp > 0).float() * g`, in one pass, or `nil` where the fused
    /// loop does not apply (shapes differ, a view, autograd recording).
    ///
    /// Element `i` is `(inp[i] > 0 ? 1 : 0) * g[i]`: the mask times the gradient, as the chain
    /// computes it (so `0 * ∞` is NaN here too).
    static func fusedReLUGradient(_ inp: Tensor, _ g: Tensor) -> Tensor? {
        guard inp.shape == g.shape, inp.isContiguous, g.isContiguous, !wouldRecord(inp, g) else { return nil }
        let result = Tensor(uninitializedShape: inp.shape)
        let input = inp.pointer
        let gradient = g.pointer
        let out = result.pointer
        Parallel.forEachRange(result.count, minimumPerPiece: elementwiseMinimumPerWorker) { range in
            for i in range {
                let mask: Float = input[i] > 0 ? 1 : 0
                out[i] = mask * gradient[i]
            }
        }
        return result
    }

    /// The seed's MSE gradient `2 * (inp.squeeze() - targ).unsqueeze(-1) / n`, in one pass, or
    /// `nil` where the fused loop does not apply.
    ///
    /// Shapes: `inp (n, 1)` or `(n)` and `targ (n)`, with `n > 1`, give `inp`'s shape. Element `i` is
    /// `(2 * (inp[i] - targ[i])) / n`, rounded at each step as the chain rounds it.
    static func fusedMSEGradient(_ inp: Tensor, _ targ: Tensor) -> Tensor? {
        let n = inp.shape.first ?? 0
        guard n > 1, inp.shape == [n, 1] || inp.shape == [n], targ.shape == [n],
            inp.isContiguous, targ.isContiguous, !wouldRecord(inp, targ)
        else { return nil }
        let result = Tensor(uninitializedShape: inp.shape)
        let input = inp.pointer
        let target = targ.pointer
        let out = result.pointer
        let rows = Float(inp.shape[0])
        for i in 0..<n {
            out[i] = 2 * (input[i] - target[i]) / rows
        }
        return result
    }
}
