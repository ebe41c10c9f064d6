import BackpropCore

// The seed's layers: each stores what it was called with (`inp`) and what it returned (`out`),
// and its `backward()` writes the seed's hand-written gradients into `.g`.
//
// Dimension letters, used in the shape comments of every layer:
//   n   rows (the batch: 50,000 for the seed's full batch)
//   m   inputs per row (784 pixels)
//   nh  hidden units (50 in the seed)
//   c   outputs or classes (1 for the seed's regression, 10 for classification)

/// A layer of the seed: a callable object that remembers its input and output, and whose
/// `backward()` turns `out.g` into `inp.g` (and its parameters' `.g`).
public protocol Layer: AnyObject {
    /// The tensor the last call received (the very object, not a copy).
    var inp: Tensor! { get }
    /// The tensor the last call returned.
    var out: Tensor! { get }
    /// The tensors this layer learns (`[w, b]` for `Lin`, none for `ReLU`).
    var parameters: [Tensor] { get }
    /// Runs the layer on `inp`, storing `inp` and the result `out`.
    func callAsFunction(_ inp: Tensor) -> Tensor
    /// Writes `inp.g` (and each parameter's `.g`) from `out.g`.
    /// - Precondition: the layer was called, and `out.g` was set by the layer after it.
    func backward()
}

/// A loss of the seed: called with the model's output and the targets, it returns a scalar, and
/// its `backward()` starts backpropagation by writing `inp.g`.
public protocol Loss: AnyObject {
    /// The model's output the last call received (the very object).
    var inp: Tensor! { get }
    /// The targets the last call received.
    var targ: Tensor! { get }
    /// The loss the last call returned (a scalar).
    var out: Tensor! { get }
    /// Computes the loss of `inp` against `targ`, storing all three.
    func callAsFunction(_ inp: Tensor, _ targ: Tensor) -> Tensor
    /// Writes `inp.g`, the gradient of the loss with respect to the model's output.
    func backward()
}
