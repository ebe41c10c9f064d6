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
///
/// `Lin(w)` makes one without a bias, PyTorch's `nn.Linear(nIn, nOut, bias=False)`: `out = inp • w`,
/// and its backward has no `b.g` (the description's `lin N nobias`; a linear layer before a batch
/// norm, whose own shift makes a bias redundant).
public final class Lin: InputGradientSkipping {
    /// The weights. // (nIn, nOut)
    public let w: Tensor
    /// The bias. // (nOut)
    ///
    /// For a layer made without one (``hasBias`` false), zeros that the layer does not add, learn
    /// or save: it is not in ``parameters``, and `b.g` stays `nil`.
    public let b: Tensor
    /// Whether the layer adds (and learns) its bias ``b``: `true` for `Lin(w, b)`, `false` for
    /// `Lin(w)`.
    public let hasBias: Bool
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
    /// - Precondition: `w` is a matrix `(nIn, nOut)` and `b` is `(nOut)`, or `(1, nOut)` (a row,
    ///   which broadcasts the same way; `b.g` then has that shape too, and an optimizer's weight
    ///   decay, which spares vectors only, decays it).
    public init(_ w: Tensor, _ b: Tensor) {
        precondition(w.rank == 2, "Lin: weights must be a matrix, got shape \(w.shape)")
        precondition(
            b.shape == [w.shape[1]] || b.shape == [1, w.shape[1]],
            "Lin: bias of shape \(b.shape) does not fit weights of shape \(w.shape) (expected [\(w.shape[1])])")
        self.w = w
        self.b = b
        self.hasBias = true
    }

    /// Creates a layer without a bias around the given weights (kept, not copied): `out = inp • w`.
    /// - Precondition: `w` is a matrix.
    public init(_ w: Tensor) {
        precondition(w.rank == 2, "Lin: weights must be a matrix, got shape \(w.shape)")
        self.w = w
        self.b = Tensor.zeros([w.shape[1]])
        self.hasBias = false
    }

    /// `[w, b]`, or `[w]` without a bias.
    public var parameters: [Tensor] { hasBias ? [w, b] : [w] }

    /// The forward pass: stores `inp`, computes `out = lin(inp, w, b)` (`inp • w` without a bias),
    /// returns `out`.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        self.out = hasBias ? lin(inp, w, b) : inp • w
        return out
    }

    /// The backward pass, reading `out.g` (written by the next layer, as its `inp.g`):
    /// - `inp.g = out.g • wᵀ`   // (n, nIn)
    /// - `w.g = inpᵀ • out.g`   // (nIn, nOut)
    /// - `b.g = Σ_rows out.g`   // (nOut), with a bias (in `b`'s shape, for a `(1, nOut)` one)
    ///
    /// `inp.g` is skipped when ``needsInputGradient`` is off (and set to `nil`: an earlier pass's
    /// would be stale).
    public func backward() {
        checkReadyForBackward()
        inp.g = needsInputGradient ? out.g • w.t() : nil
        w.g = inp.t() • out.g
        if hasBias { b.g = b.rank == 1 ? out.g.sum(0) : out.g.sum(0, keepDim: true) }
    }
}
