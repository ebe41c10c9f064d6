import Foundation

extension Model {
    /// A multi-layer perceptron of the seed's kind, initialised as the lesson does:
    /// `Lin, ReLU, Lin, ReLU, ..., Lin` through the given widths, then `loss`.
    ///
    /// `sizes = [m, nh, c]` gives the seed's `Model(w1, b1, w2, b2)`; `[m, nh1, nh2, c]` a network
    /// with two hidden layers. Each `Lin` followed by a ReLU gets Kaiming weights
    /// `randn(nIn, nOut) · √(2 / nIn)`, the last one `randn(nIn, nOut) / √nIn` (the lesson's `w2`);
    /// every bias starts at zero. Weights are drawn in layer order from `generator`, so that
    /// `sizes = [m, nh, 1]` gives exactly the weights of `SeedProgram.Weights.kaiming`.
    /// - Precondition: at least two sizes, all positive.
    public static func kaiming(sizes: [Int], loss: any Loss, generator: inout RandomGenerator) -> Model {
        precondition(sizes.count >= 2, "Model.kaiming: needs at least an input and an output size, got \(sizes)")
        precondition(sizes.allSatisfy { $0 > 0 }, "Model.kaiming: sizes must be positive, got \(sizes)")
        var layers: [any Layer] = []
        for index in 0..<(sizes.count - 1) {
            let nIn = sizes[index]
            let nOut = sizes[index + 1]
            let isLast = index == sizes.count - 2
            // Computed as SeedProgram.Weights.kaiming does, so that sizes [m, nh, 1] give its weights.
            let draw = Tensor.randn([nIn, nOut], generator: &generator)
            let w =
                isLast
                ? draw / Float(Double(nIn).squareRoot())
                : draw * Float((2.0 / Double(nIn)).squareRoot())  // (nIn, nOut)
            let b = Tensor.zeros([nOut])  // (nOut)
            layers.append(Lin(w, b))
            if !isLast { layers.append(ReLU()) }
        }
        return Model(layers: layers, loss: loss)
    }
}
