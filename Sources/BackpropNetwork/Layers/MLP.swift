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
    /// The first layer's `needsInputGradient` is off: its input is the data, whose gradient
    /// nobody reads, and skipping it saves the largest product of the backward pass.
    /// - Precondition: at least two sizes, all positive.
    public static func mlp(sizes: [Int], loss: any Loss, generator: inout RandomGenerator) -> Model {
        precondition(sizes.count >= 2, "Model.mlp: needs at least an input and an output size, got \(sizes)")
        precondition(sizes.allSatisfy { $0 > 0 }, "Model.mlp: sizes must be positive, got \(sizes)")
        var layers: [any Layer] = []
        for (index, pair) in kaimingInitialization(sizes: sizes, generator: &generator).enumerated() {
            if index > 0 { layers.append(ReLU()) }
            let layer = Lin(pair.w, pair.b)  // w (nIn, nOut), b (nOut)
            layer.needsInputGradient = index > 0
            layers.append(layer)
        }
        return Model(layers: layers, loss: loss)
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
