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
    /// The parameters by their checkpoint names (`w`, `b` by default; see the extension below).
    var namedParameters: [(name: String, tensor: Tensor)] { get }
    /// The tensors the layer keeps but does not learn, by name (none by default).
    var buffers: [(name: String, tensor: Tensor)] { get }
    /// Runs the layer on `inp`, storing `inp` and the result `out`.
    func callAsFunction(_ inp: Tensor) -> Tensor
    /// Writes `inp.g` (and each parameter's `.g`) from `out.g`.
    /// - Precondition: the layer was called, and `out.g` was set by the layer after it.
    func backward()
}

/// A layer whose `backward()` can leave out `inp.g` (``Lin``, ``Conv2d``): the first layer that
/// learns, whose input is the data (or what layers that learn nothing made of it), whose gradient
/// training never reads. See ``Model/firstTrainableLayer``.
public protocol InputGradientSkipping: Layer {
    /// Whether `backward()` computes `inp.g` (the default); when off it writes only the
    /// parameters' `.g`.
    var needsInputGradient: Bool { get set }
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

// MARK: - Backward before forward

extension Layer {
    /// Stops, naming the layer, unless `backward()` can run: a call stored `out`, and the layer
    /// after this one (or the loss) wrote `out.g` in its own `backward()`.
    ///
    /// Every layer of the library calls it first in `backward()`; a layer of your own can too.
    /// - Precondition: the layer was called (else `Lin.backward(): no forward pass yet; call the
    ///   layer on an input first`) and `out.g` is set (else `Lin.backward(): out.g is not set; …`).
    public func checkReadyForBackward() {
        guard let out else {
            preconditionFailure("\(Self.self).backward(): no forward pass yet; call the layer on an input first")
        }
        precondition(
            out.g != nil,
            "\(Self.self).backward(): out.g is not set; the layer after this one (or the loss) writes it in its "
                + "backward(): call model.backward(), or set out.g before calling backward()")
    }
}

extension Loss {
    /// Stops, naming the loss, unless `backward()` can run: a call stored `inp` and `targ`.
    ///
    /// Every loss of the library calls it first in `backward()`; a loss of your own can too.
    /// - Precondition: the loss was called (else `Mse.backward(): no forward pass yet; call the loss
    ///   on an output and targets first`).
    public func checkReadyForBackward() {
        precondition(
            inp != nil && targ != nil,
            "\(Self.self).backward(): no forward pass yet; call the loss on an output and targets first")
    }
}

// MARK: - Names, buffers, modes and pieces

extension Layer {
    /// The parameters by their checkpoint names: `w` and `b` for the first two (a `Lin`'s
    /// weights and bias), `p2`, `p3`, … (the position in ``parameters``) past two.
    ///
    /// Layers whose parameters are named otherwise implement it (a `Conv2d` without bias: `w`).
    public var namedParameters: [(name: String, tensor: Tensor)] {
        parameters.enumerated().map { i, tensor in
            (i < 2 ? ["w", "b"][i] : "p\(i)", tensor)
        }
    }

    /// The tensors this layer keeps but does not learn, by name (none by default; `BatchNorm`'s
    /// `running_mean` and `running_var`). Checkpoints store them; optimisers and the gradient
    /// check leave them alone.
    public var buffers: [(name: String, tensor: Tensor)] { [] }
}

/// A layer that computes differently in training and in evaluation (`Dropout`, `BatchNorm`).
///
/// `Model.train()` and `Model.eval()` set ``isTraining`` on every such layer of a model.
public protocol ModeDependentLayer: Layer {
    /// `true` in training (the default: dropout drops, batch norm uses the batch's statistics),
    /// `false` in evaluation (dropout is the identity, batch norm uses its running statistics).
    var isTraining: Bool { get set }
}

/// A layer that is piecewise smooth in its input: each output element is computed on one of
/// several smooth pieces (ReLU: `0` or `inp`), with kinks between them.
///
/// The gradient check differentiates the loss by finite differences with every such layer's
/// pieces frozen (``freezesPieces``): each piece continued smoothly past its kinks, so that the
/// loss has no kink within the step and a central difference measures the derivative the backward
/// computes. It reads ``pieces`` after each forward to see which kinks a step crosses, and leaves
/// out the elements that move a layer sitting exactly on a kink (a negative code) onto other
/// pieces both ways, where the derivative is a convention.
public protocol PiecewiseLayer: Layer {
    /// After a forward pass, one code per element of the layer's result (in row-major order)
    /// naming the piece its input falls on; a negative code means exactly on a kink (where the
    /// derivative is undefined and the backward makes a conventional choice). With
    /// ``freezesPieces`` on, still the pieces of the last input, not the frozen ones.
    ///
    /// `ReLU`, `LeakyReLU`: `1` where `inp > 0`, `0` where `inp < 0`, `-1` where `inp == 0`.
    /// `MaxPool2d`: per output element, the window offset of the maximum, `-1` where it is tied.
    var pieces: [Int32] { get }

    /// When `true`, calls compute every output element on the piece the last call before turning
    /// it on used for that element, continued past its kinks, instead of on the piece the input
    /// falls on; `backward()` differentiates that same function. Off by default.
    ///
    /// ReLU keeps its mask `inp > 0` (`out = mask · inp`), LeakyReLU its slope per element
    /// (`1` or `slope`), max pooling its winners (`out` = the input at the winner's position).
    /// At the input of that last call, the frozen function equals the layer's own; nearby it is
    /// the smooth continuation of the pieces there, whose derivative is the backward's.
    /// - Precondition: turning it on needs a call before (the pieces to keep); a frozen call
    ///   needs an input of the shape of that call's.
    var freezesPieces: Bool { get set }
}
