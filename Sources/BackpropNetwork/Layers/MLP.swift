import BackpropCore

/// Building models of any depth: `Lin`, `ReLU`, `Lin`, `ReLU`, …, `Lin`, then a loss.
extension Model {
    /// A multilayer perceptron with the given layer sizes and loss, initialised as the lesson does.
    ///
    /// `sizes: [m, nh, c]` gives the seed's `[Lin(w1, b1), ReLU(), Lin(w2, b2)]`; `[784, 256, 128, 10]`
    /// gives `[Lin, ReLU, Lin, ReLU, Lin]`. The weights are ``kaimingInitialization(sizes:generator:)``'s:
    /// `randn(nIn, nOut) · sqrt(2 / nIn)` for each `Lin` followed by a `ReLU`, `randn / sqrt(nIn)`
    /// for the last, zero biases, drawn layer by layer from `generator`.
    ///
    /// The first layer's `needsInputGradient` is off (``skipsInputGradient()``): its input is the
    /// data, whose gradient nobody reads, and skipping it saves the largest product of the
    /// backward pass.
    /// - Precondition: at least two sizes, all positive.
    public static func mlp(sizes: [Int], loss: any Loss, generator: inout RandomGenerator) -> Model {
        precondition(sizes.count >= 2, "Model.mlp: needs at least an input and an output size, got \(sizes)")
        precondition(sizes.allSatisfy { $0 > 0 }, "Model.mlp: sizes must be positive, got \(sizes)")
        let model = Model(linears: kaimingInitialization(sizes: sizes, generator: &generator), loss: loss)
        model.skipsInputGradient()
        return model
    }

    /// Turns off the ``firstTrainableLayer``'s `needsInputGradient`: its input is the data (or
    /// what layers that learn nothing made of it), whose gradient nobody reads in training, and
    /// `out.g • wᵀ` is the largest product of an MLP's backward pass (`fold(g • W)` a third of a
    /// convolution's). Every later layer still writes its `inp.g`; ``backward()`` stops after it.
    public func skipsInputGradient() {
        firstTrainableLayer?.needsInputGradient = false
    }

    /// The sizes of the model's linear layers, input first: `[784, 50, 1]` for the seed's model.
    ///
    /// Empty if the model has no `Lin` layer.
    public var sizes: [Int] {
        let linear = layers.compactMap { $0 as? Lin }
        guard let first = linear.first else { return [] }
        return [first.w.shape[0]] + linear.map { $0.w.shape[1] }
    }
}
