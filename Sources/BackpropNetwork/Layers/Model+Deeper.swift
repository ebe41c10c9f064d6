import BackpropCore

// Models deeper than the seed's, built from the seed's own layers, and the lesson's way of
// drawing their weights. `backprop gradcheck --hidden 64,32` checks these.

extension Model {
    /// A multilayer perceptron of the seed's layers: `Lin, ReLU, Lin, ReLU, …, Lin`, then `Mse`.
    ///
    /// `Model(linears: [(w1, b1), (w2, b2)])` is the seed's `Model(w1, b1, w2, b2)`; each further
    /// pair adds a ReLU and a Lin. Shapes: `w_k (n_{k-1}, n_k)`, `b_k (n_k)`, the last `n_k` = 1.
    /// - Precondition: at least one pair; consecutive weights fit (`w_k.shape[0] ==
    ///   w_{k-1}.shape[1]`); otherwise stops naming both shapes.
    public convenience init(linears: [(w: Tensor, b: Tensor)], loss: any Loss = Mse()) {
        precondition(!linears.isEmpty, "Model(linears:): needs at least one (w, b) pair")
        for k in 1..<linears.count {
            let (previous, w) = (linears[k - 1].w, linears[k].w)
            precondition(
                w.rank == 2 && previous.shape[1] == w.shape[0],
                "Model(linears:): w\(k + 1) of shape \(w.shape) does not follow w\(k) of shape \(previous.shape)")
        }
        var layers: [any Layer] = []
        for (k, pair) in linears.enumerated() {
            if k > 0 { layers.append(ReLU()) }
            layers.append(Lin(pair.w, pair.b))  // w (nIn, nOut), b (nOut)
        }
        self.init(layers: layers, loss: loss)
    }

    /// The lesson's Kaiming initialisation, for a chain of Lin layers of widths `sizes`
    /// (`[m, nh…, c]`, `[784, 50, 1]` for the seed's model): `w_k = randn(n_{k-1}, n_k) ·
    /// sqrt(2 / n_{k-1})` for each layer followed by a ReLU, `randn / sqrt(n_{k-1})` for the last,
    /// zero biases.
    ///
    /// Weights are drawn in order, `w1` first, row-major, from `generator`;
    /// `SeedProgram.Weights.kaiming(inputs: m, hidden: nh, generator:)` is this with `[m, nh, 1]`,
    /// so that one seed gives the same model to `backprop seed` and `backprop gradcheck`.
    /// - Precondition: at least two sizes, all positive.
    public static func kaimingInitialization(
        sizes: [Int], generator: inout RandomGenerator
    ) -> [(w: Tensor, b: Tensor)] {
        precondition(
            sizes.count >= 2 && sizes.allSatisfy { $0 > 0 },
            "kaimingInitialization: expects at least two positive sizes, got \(sizes)")
        var result: [(w: Tensor, b: Tensor)] = []
        for k in 1..<sizes.count {
            let fanIn = Double(sizes[k - 1])
            let draw = Tensor.randn([sizes[k - 1], sizes[k]], generator: &generator)
            let isLast = k == sizes.count - 1
            let w = isLast ? draw / Float(fanIn.squareRoot()) : draw * Float((2 / fanIn).squareRoot())
            result.append((w, Tensor.zeros([sizes[k]])))
        }
        return result
    }
}
