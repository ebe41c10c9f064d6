import BackpropCore

/// The seed's program, end to end: the weights of `Model(w1, b1, w2, b2)`, one forward pass
/// `loss = model(xTrain, yTrain)` and one `model.backward()`, timed.
public struct SeedProgram {
    /// The weights of the seed's model.
    public struct Weights {
        /// First layer's weights. // (m, nh)
        public var w1: Tensor
        /// First layer's bias. // (nh)
        public var b1: Tensor
        /// Second layer's weights. // (nh, 1)
        public var w2: Tensor
        /// Second layer's bias. // (1)
        public var b2: Tensor

        /// Creates the weights from given tensors.
        /// - Precondition: `w1 (m, nh)`, `b1 (nh)`, `w2 (nh, 1)`, `b2 (1)`.
        public init(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) {
            let nh = w1.shape.count == 2 ? w1.shape[1] : -1
            precondition(
                w1.rank == 2 && b1.shape == [nh] && w2.shape == [nh, 1] && b2.shape == [1],
                "SeedProgram.Weights: shapes w1 \(w1.shape), b1 \(b1.shape), w2 \(w2.shape), b2 \(b2.shape) do not fit (m, nh), (nh), (nh, 1), (1)"
            )
            self.w1 = w1
            self.b1 = b1
            self.w2 = w2
            self.b2 = b2
        }

        /// The lesson's Kaiming initialisation: `w1 = randn(m, nh) * sqrt(2/m)`,
        /// `w2 = randn(nh, 1) / sqrt(nh)`, zero biases.
        public static func kaiming(inputs m: Int, hidden nh: Int, generator: inout RandomGenerator) -> Weights {
            let layers = Model.kaimingInitialization(sizes: [m, nh, 1], generator: &generator)
            return Weights(w1: layers[0].w, b1: layers[0].b, w2: layers[1].w, b2: layers[1].b)
        }
    }

    /// What one run of the seed's program produced.
    public struct Result {
        /// The loss, `model(x, y)`.
        public let loss: Tensor
        /// The model's output `L2.out`. // (n, 1)
        public let out: Tensor
        /// Every gradient by name, in the seed's order: `x.g`, `w1.g`, `b1.g`, `w2.g`, `b2.g`.
        public let gradients: [(name: String, tensor: Tensor)]
        /// Milliseconds spent in `model(x, y)`.
        public let forwardMilliseconds: Double
        /// Milliseconds spent in `model.backward()`.
        public let backwardMilliseconds: Double
        /// The model, with every layer's `inp`, `out` and `.g` as the run left them.
        public let model: Model
    }

    /// The inputs. // (n, m)
    public let x: Tensor
    /// The targets. // (n)
    public let y: Tensor
    /// The weights.
    public let weights: Weights

    /// Prepares the program on inputs `x (n, m)`, targets `y (n)` and the given weights.
    /// - Precondition: the shapes fit each other.
    public init(x: Tensor, y: Tensor, weights: Weights) {
        precondition(
            x.rank == 2 && y.shape == [x.shape[0]],
            "SeedProgram: x \(x.shape) and y \(y.shape) do not fit (n, m) and (n)")
        precondition(weights.w1.shape[0] == x.shape[1], "SeedProgram: w1 \(weights.w1.shape) does not fit x \(x.shape)")
        self.x = x
        self.y = y
        self.weights = weights
    }

    /// Runs `loss = model(x, y)` then `model.backward()`, timing each.
    public func run() -> Result {
        let model = Model(weights.w1, weights.b1, weights.w2, weights.b2)
        let clock = ContinuousClock()
        let start = clock.now
        let loss = model(x, y)
        let middle = clock.now
        model.backward()
        let end = clock.now
        return Result(
            loss: loss, out: model.loss.inp,
            gradients: [
                ("x.g", x.g), ("w1.g", weights.w1.g), ("b1.g", weights.b1.g), ("w2.g", weights.w2.g),
                ("b2.g", weights.b2.g),
            ],
            forwardMilliseconds: milliseconds(middle - start), backwardMilliseconds: milliseconds(end - middle),
            model: model)
    }

    /// A duration in milliseconds.
    private func milliseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}
