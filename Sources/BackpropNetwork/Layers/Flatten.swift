import BackpropCore

/// Flattens each example into a vector (PyTorch's `nn.Flatten()`): the bridge from convolutions'
/// images to `Lin`'s rows.
///
/// ```python
/// class Flatten():
///     def __call__(self, inp):
///         self.inp = inp
///         self.out = inp.view(inp.shape[0], -1)
///         return self.out
///     def backward(self): self.inp.g = self.out.g.view(self.inp.shape)
/// ```
///
/// Shapes: `inp (n, d1, d2, …)` gives `out (n, d1 * d2 * …)`; no value moves.
public final class Flatten: Layer {
    /// The input of the last call (the very object passed in). // (n, d1, d2, …)
    public private(set) var inp: Tensor!
    /// The output of the last call, a view of the same values. // (n, d1 * d2 * …)
    public private(set) var out: Tensor!

    /// Creates the layer (it has no parameters).
    public init() {}

    /// None: flattening learns nothing.
    public var parameters: [Tensor] { [] }

    /// The forward pass: stores `inp`, computes `out = inp.reshape([n, -1])`, returns `out`.
    /// - Precondition: `inp` has at least one dimension; otherwise stops naming its shape.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        precondition(inp.rank >= 1, "Flatten: expects input of shape [n, ...], got shape \(inp.shape)")
        self.inp = inp
        out = inp.reshape([inp.shape[0], inp.shape.dropFirst().reduce(1, *)])
        return out
    }

    /// The backward pass: the same gradients, in the input's shape:
    /// - `inp.g = out.g.reshape(inp.shape)`   // (n, d1, d2, …)
    public func backward() {
        checkReadyForBackward()
        inp.g = out.g.reshape(inp.shape)
    }
}
