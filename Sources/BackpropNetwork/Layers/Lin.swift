import BackpropCore

/// The seed's linear layer: `out = inp • w + b`, and its hand-written backward.
///
/// ```python
/// class Lin():
///     def __init__(self, w, b): self.w,self.b = w,b
///     def __call__(self, inp):
///         self.inp = inp
///         self.out = lin(inp, self.w, self.b)
///         return self.out
///     def backward(self):
///         self.inp.g = self.out.g @ self.w.t()
///         self.w.g = self.inp.t() @ self.out.g
///         self.b.g = self.out.g.sum(0)
/// ```
public final class Lin: Layer {
    /// The weights. // (nIn, nOut)
    public let w: Tensor
    /// The bias. // (nOut)
    public let b: Tensor
    /// The input of the last call (the very object passed in). // (n, nIn)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, nOut)
    public private(set) var out: Tensor!
    /// Whether `backward()` computes `inp.g` (the seed's always does; the default).
    ///
    /// Off for a first layer whose input is the data: nobody reads `x.g`, and `out.g • wᵀ` is the
    /// largest product of a training step's backward pass (`Model.mlp` turns it off there).
    public var needsInputGradient = true

    /// Creates the layer around the given weights and bias (kept, not copied: after
    /// `backward()`, `w.g` and `b.g` are on the very tensors passed here).
    /// - Precondition: `w` is a matrix and `b` has `w.shape[1]` elements.
    public init(_ w: Tensor, _ b: Tensor) {
        precondition(w.rank == 2, "Lin: weights must be a matrix, got shape \(w.shape)")
        precondition(
            b.count == w.shape[1],
            "Lin: bias of shape \(b.shape) does not fit weights of shape \(w.shape) (expected [\(w.shape[1])])")
        self.w = w
        self.b = b
    }

    /// `[w, b]`.
    public var parameters: [Tensor] { [w, b] }

    /// The forward pass: stores `inp`, computes `out = lin(inp, w, b)`, returns `out`.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        self.out = lin(inp, w, b)
        return out
    }

    /// The backward pass, reading `out.g` (written by the next layer, as its `inp.g`):
    /// - `inp.g = out.g • wᵀ`   // (n, nIn)
    /// - `w.g = inpᵀ • out.g`   // (nIn, nOut)
    /// - `b.g = Σ_rows out.g`   // (nOut)
    ///
    /// `inp.g` is skipped when ``needsInputGradient`` is off.
    public func backward() {
        checkReadyForBackward()
        if needsInputGradient { inp.g = out.g • w.t() }
        w.g = inp.t() • out.g
        b.g = out.g.sum(0)
    }
}
