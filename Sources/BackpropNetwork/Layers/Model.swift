import BackpropCore

/// The seed's model: a list of layers and a loss, run forward by calling it and backward by
/// `backward()`.
///
/// ```python
/// class Model():
///     def __init__(self, w1, b1, w2, b2):
///         self.layers = [Lin(w1,b1), Relu(), Lin(w2,b2)]
///         self.loss = Mse()
///     def __call__(self, x, targ):
///         for l in self.layers: x = l(x)
///         return self.loss(x, targ)
///     def backward(self):
///         self.loss.backward()
///         for l in reversed(self.layers): l.backward()
/// ```
public final class Model {
    /// The layers, first to last (the seed's `[L1, R, L2]`).
    public let layers: [any Layer]
    /// The loss (the seed's `Mse()`).
    public let loss: any Loss

    /// The seed's model: `layers = [Lin(w1, b1), ReLU(), Lin(w2, b2)]`, `loss = Mse()`.
    ///
    /// Shapes: `w1 (m, nh)`, `b1 (nh)`, `w2 (nh, 1)`, `b2 (1)`.
    public convenience init(_ w1: Tensor, _ b1: Tensor, _ w2: Tensor, _ b2: Tensor) {
        self.init(layers: [Lin(w1, b1), ReLU(), Lin(w2, b2)], loss: Mse())
    }

    /// A model of any depth: the given layers, then the loss.
    public init(layers: [any Layer], loss: any Loss) {
        self.layers = layers
        self.loss = loss
    }

    /// Every layer's parameters, first layer first (`[w1, b1, w2, b2]` for the seed's model).
    public var parameters: [Tensor] { layers.flatMap(\.parameters) }

    /// The first layer that learns, when it can leave out its `inp.g` (a ``Lin`` or ``Conv2d``):
    /// its input is the data, or what layers that learn nothing (`flatten`, pools, dropout,
    /// activations) made of it, so its `inp.g` and theirs are the data's gradient, which training
    /// never reads. `nil` when the first layer that learns is another kind (a batch norm) or
    /// there is none.
    ///
    /// Training turns its ``InputGradientSkipping/needsInputGradient`` off
    /// (``skipsInputGradient()``); ``backward()`` then stops after it, the layers before it left
    /// without gradients. The gradient check and the walkthrough turn it on, to show `x.g`.
    public var firstTrainableLayer: (any InputGradientSkipping)? {
        firstTrainableIndex.flatMap { layers[$0] as? any InputGradientSkipping }
    }

    /// The index of the first layer with parameters, if any.
    private var firstTrainableIndex: Int? { layers.firstIndex { !$0.parameters.isEmpty } }

    /// The index of the first layer whose `backward()` runs in ``backward()``: that of the
    /// ``firstTrainableLayer`` when its `needsInputGradient` is off (the layers before it learn
    /// nothing, and their gradients would be the data's), else 0. A loop that runs the layers'
    /// backward passes itself stops there too.
    public var firstBackwardIndex: Int {
        guard let index = firstTrainableIndex, let layer = layers[index] as? any InputGradientSkipping,
            !layer.needsInputGradient
        else { return 0 }
        return index
    }

    /// The forward pass: each layer's output is the next one's input, and the last one's output
    /// goes to the loss with the targets. Returns the loss.
    public func callAsFunction(_ x: Tensor, _ targ: Tensor) -> Tensor {
        loss(predict(x), targ)
    }

    /// The layers alone, without the loss: the model's output (logits, or the seed's prediction).
    ///
    /// Shapes: `x (n, m)` gives `(n, c)`. Each layer stores `inp` and `out` as in a training call.
    /// - Parameters:
    ///   - x: the inputs. // (n, m)
    ///   - observe: called right after each layer ran, with its index, the tensor passed to it and
    ///     the tensor it returned (the explainer photographs every step here); by default nothing.
    public func predict(
        _ x: Tensor,
        afterEachLayer observe: (_ index: Int, _ passed: Tensor, _ returned: Tensor) -> Void = { _, _, _ in }
    ) -> Tensor {
        var x = x
        for (index, l) in layers.enumerated() {
            let passed = x
            x = l(x)
            observe(index, passed, x)
        }
        return x
    }

    /// The backward pass: the loss writes the gradient of the model's output, then each layer,
    /// last to first, turns its `out.g` into its `inp.g` (down to ``firstBackwardIndex``: where
    /// the first layer that learns skips its `inp.g`, the layers before it, which learn nothing,
    /// are left without gradients: their `inp.g`, the data's `x.g` among them, are set to `nil`,
    /// so that none is left over from a pass that computed them).
    /// - Precondition: the model was called with inputs and targets (`loss = model(x, y)`), and
    ///   each layer's `backward()` wrote the `inp.g` that is the `out.g` of the layer before it;
    ///   otherwise stops naming the layer (`Model.backward(): layer 1 (ReLU): out.g was not set by
    ///   layer 2 (Lin)'s backward(); …`).
    public func backward() {
        backward(scalingLossGradientBy: 1)
    }

    /// The backward pass with the loss's gradient scaled: `loss.inp.g · scale` goes back through
    /// the layers, so every `.g` is `scale` times ``backward()``'s.
    ///
    /// Data-parallel training (see `ReplicaGroup`): a replica's loss is the mean over its `n_r`
    /// rows, the whole batch's the mean over `B = Σ n_r`, so with `scale = n_r / B` each replica's
    /// gradients are its share of the batch's, and their sum is the one-process gradient.
    /// - Precondition: as ``backward()``'s.
    public func backward(scalingLossGradientBy scale: Float) {
        precondition(
            loss.inp != nil,
            "Model.backward(): no forward pass yet; call the model on inputs and targets first (loss = model(x, y))")
        loss.backward()
        if scale != 1, let g = loss.inp.g { loss.inp.g = g * scale }
        let first = firstBackwardIndex
        for (index, l) in layers.enumerated().reversed() where index >= first {
            precondition(
                l.out != nil,
                "Model.backward(): layer \(index) (\(type(of: l))) has no forward pass; call the model on inputs and "
                    + "targets first (loss = model(x, y))")
            precondition(l.out.g != nil, unsetGradientMessage(index, l, after: index + 1 < layers.count))
            l.backward()
        }
        for l in layers[..<first] where l.inp != nil { l.inp.g = nil }
    }

    /// Why layer `index` has no `out.g`: the one after it (or the loss) did not write it.
    private func unsetGradientMessage(_ index: Int, _ layer: any Layer, after hasNext: Bool) -> String {
        let writer = hasNext ? "layer \(index + 1) (\(type(of: layers[index + 1])))" : "the loss (\(type(of: loss)))"
        return
            "Model.backward(): layer \(index) (\(type(of: layer))): out.g was not set by \(writer)'s backward(); its "
            + "backward() must write inp.g on the very tensor this layer returned"
    }
}
