import BackpropCore

/// The seed's mean squared error loss, and its hand-written backward.
///
/// ```python
/// class Mse():
///     def __call__(self, inp, targ):
///         self.inp,self.targ = inp,targ
///         self.out = mse(inp, targ)
///         return self.out
///     def backward(self):
///         self.inp.g = 2. * (self.inp.squeeze() - self.targ).unsqueeze(-1) / self.inp.shape[0]
/// ```
public final class Mse: Loss {
    /// The model's output from the last call (the very object). // (n, 1)
    public private(set) var inp: Tensor!
    /// The targets from the last call. // (n)
    public private(set) var targ: Tensor!
    /// The loss from the last call. // () a scalar
    public private(set) var out: Tensor!

    /// Creates the loss.
    public init() {}

    /// The forward pass: stores `inp` and `targ`, computes `out = mse(inp, targ)`, returns `out`.
    /// - Precondition: `inp` is `(n, 1)` or `(n)` and `targ` has `n` elements.
    public func callAsFunction(_ inp: Tensor, _ targ: Tensor) -> Tensor {
        precondition(
            inp.squeeze().shape == targ.shape || (inp.count == 1 && targ.count == 1),
            "Mse: output of shape \(inp.shape) does not fit targets of shape \(targ.shape) (expected (n, 1) and (n))")
        self.inp = inp
        self.targ = targ
        self.out = mse(inp, targ)
        return out
    }

    /// The backward pass: `inp.g = 2 (inp.squeeze() - targ).unsqueeze(-1) / n`  // (n, 1)
    ///
    /// It writes `inp.g`, not `out.g`: the loss's input is the model's output, so this is the
    /// gradient of the loss with respect to the model's output, where backpropagation starts.
    ///
    /// One pass over memory (`Tensor.fusedMSEGradient`), with the same result as the seed's line,
    /// which runs wherever the fused loop does not apply.
    public func backward() {
        checkReadyForBackward()
        // inp.g = 2 * (inp.squeeze() - targ).unsqueeze(-1) / Float(inp.shape[0])
        inp.g =
            Tensor.fusedMSEGradient(inp, targ) ?? 2 * (inp.squeeze() - targ).unsqueeze(-1) / Float(inp.shape[0])
    }
}
