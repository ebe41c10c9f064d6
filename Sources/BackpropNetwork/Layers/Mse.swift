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
    /// - Precondition: `inp` without its dimensions of size 1 has `targ`'s shape: the seed's
    ///   `(n, 1)` output and `(n)` targets, or any shapes alike but for such dimensions (`(1, n)`
    ///   and `(n)`, `(n, c)` and `(n, c)`), or one element each.
    public func callAsFunction(_ inp: Tensor, _ targ: Tensor) -> Tensor {
        precondition(
            inp.squeeze().shape == targ.shape || (inp.count == 1 && targ.count == 1),
            "Mse: output of shape \(inp.shape) does not fit targets of shape \(targ.shape) (expected the same shape "
                + "but for dimensions of size 1, such as (n, 1) and (n))")
        self.inp = inp
        self.targ = targ
        self.out = mse(inp, targ)
        return out
    }

    /// The backward pass: `inp.g = 2 (inp.squeeze() - targ).unsqueeze(-1) / n`  // (n, 1)
    ///
    /// For the seed's `(n, 1)` output and `(n)` targets this is the seed's line. In general the
    /// loss is the mean of `targ.count` squares, so `inp.g = 2 (inp.squeeze() - targ) / targ.count`,
    /// in `inp`'s shape (the same numbers for `(n, 1)`, where `targ.count` is `n`).
    ///
    /// It writes `inp.g`, not `out.g`: the loss's input is the model's output, so this is the
    /// gradient of the loss with respect to the model's output, where backpropagation starts.
    ///
    /// One pass over memory (`Tensor.fusedMSEGradient`), with the same result as the seed's line,
    /// which runs wherever the fused loop does not apply.
    public func backward() {
        checkReadyForBackward()
        // inp.g = 2 * (inp.squeeze() - targ).unsqueeze(-1) / Float(inp.shape[0]), for any shapes
        // `callAsFunction` accepts: the mean is over targ.count squares, and inp.g has inp's shape.
        inp.g =
            Tensor.fusedMSEGradient(inp, targ)
            ?? (2 * (inp.squeeze() - targ) / Float(targ.count)).reshape(inp.shape)
    }
}
