/// Building models of any depth: `Lin`, `ReLU`, `Lin`, `ReLU`, …, `Lin`, then a loss.
extension Model {
    /// A multilayer perceptron with the given layer sizes, initialised as the lesson does.
    ///
    /// `sizes: [m, nh, c]` gives the seed's `[Lin(w1, b1), ReLU(), Lin(w2, b2)]`; `[784, 256, 128, 10]`
    /// gives `[Lin, ReLU, Lin, ReLU, Lin]`. Each `Lin` but the last is followed by a `ReLU` and gets
    /// Kaiming weights `randn(nIn, nOut) * sqrt(2 / nIn)`; the last gets `randn(nIn, nOut) / sqrt(nIn)`.
    /// Biases start at zero. Weights are drawn layer by layer, row-major, from `generator`.
    ///
    /// The first layer's `needsInputGradient` is off: its input is the data, whose gradient
    /// nobody reads, and skipping it saves the largest product of the backward pass.
    /// - Precondition: at least two sizes, all positive.
    public static func mlp(sizes: [Int], loss: any Loss, generator: inout RandomGenerator) -> Model {
        precondition(sizes.count >= 2, "Model.mlp: needs at least an input and an output size, got \(sizes)")
        precondition(sizes.allSatisfy { $0 > 0 }, "Model.mlp: sizes must be positive, got \(sizes)")
        var layers: [any Layer] = []
        for index in 0..<(sizes.count - 1) {
            let nIn = sizes[index]
            let nOut = sizes[index + 1]
            let isLast = index == sizes.count - 2
            let w = kaimingNormal(nIn, nOut, gain: isLast ? 1 : 2, generator: &generator)  // (nIn, nOut)
            let b = Tensor.zeros([nOut])  // (nOut)
            let layer = Lin(w, b)
            layer.needsInputGradient = index > 0
            layers.append(layer)
            if !isLast { layers.append(ReLU()) }
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
