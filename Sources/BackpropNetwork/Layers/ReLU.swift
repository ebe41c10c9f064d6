import BackpropCore

/// The seed's rectified linear unit: `out = max(inp, 0)`, and its hand-written backward.
///
/// ```python
/// class Relu():
///     def __call__(self, inp):
///         self.inp = inp
///         self.out = inp.clamp_min(0.)
///         return self.out
///     def backward(self): self.inp.g = (self.inp>0).float() * self.out.g
/// ```
public final class ReLU: Layer, PiecewiseLayer {
    /// The input of the last call (the very object passed in). // (n, nh)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, nh)
    public private(set) var out: Tensor!

    /// Creates the layer (it has no parameters).
    public init() {}

    /// None: ReLU learns nothing.
    public var parameters: [Tensor] { [] }

    /// After a forward pass, per element of `inp` (row-major): `1` where `inp > 0`, `0` where
    /// `inp < 0`, `-1` at the kink `inp == 0` (where the backward takes the gradient as 0).
    /// - Precondition: the layer was called.
    public var pieces: [Int32] {
        precondition(inp != nil, "ReLU.pieces: call the layer first")
        return Tensor.signPieces(inp)
    }

    /// When `true`, calls compute `out = mask · inp` with the mask `inp > 0` of the last call
    /// before it was turned on (each element stays on its piece), and `backward()` gives
    /// `inp.g = mask · out.g`; for the gradient check (see ``PiecewiseLayer/freezesPieces``).
    /// - Precondition: the layer was called before it is turned on.
    public var freezesPieces = false {
        didSet {
            guard freezesPieces != oldValue else { return }
            precondition(!freezesPieces || inp != nil, "ReLU.freezesPieces: call the layer first")
            frozenMask = freezesPieces ? Tensor.pieceMultipliers(inp, positive: 1, negative: 0) : nil
        }
    }

    /// `1` where the input was positive, `0` elsewhere, while ``freezesPieces`` is on.
    private var frozenMask: Tensor?

    /// The forward pass: stores `inp`, computes `out = inp.clampMin(0)` (`mask · inp` with the
    /// pieces frozen), returns `out`.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        if let frozenMask {
            self.out = Tensor.onFrozenPieces(inp, frozenMask, layer: "ReLU")
        } else {
            self.out = inp.clampMin(0)
        }
        return out
    }

    /// The backward pass: `inp.g = (inp > 0) * out.g`  // (n, nh)
    ///
    /// NOTE: at exactly `inp == 0` the gradient is taken as 0 (the derivative is undefined
    /// there; PyTorch makes the same choice). Finite differences cannot check such points.
    ///
    /// The mask and the product are one pass over memory (`Tensor.fusedReLUGradient`), with the
    /// same result as the seed's line, which runs wherever the fused loop does not apply.
    public func backward() {
        checkReadyForBackward()
        if let frozenMask {
            inp.g = Tensor.mapElements(frozenMask, out.g, operation: "ReLU.backward") { m, g in m * g }
            return
        }
        // inp.g = (inp > 0).float() * out.g
        inp.g = Tensor.fusedReLUGradient(inp, out.g) ?? (inp > 0).float() * out.g
    }
}
