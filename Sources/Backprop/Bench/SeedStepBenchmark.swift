/// Times the seed's full-batch step: `loss = model(xTrain, yTrain); model.backward()`.
///
/// The step is three `(n, m) × (m, nh)`-sized matrix products (forward `x • w1`, backward
/// `out.g • w1ᵀ` for `x.g` and `xᵀ • out.g` for `w1.g`) plus elementwise work on `(n, nh)`.
public struct SeedStepBenchmark {
    /// Median milliseconds of each part of the step.
    public struct Result: Sendable {
        /// The whole step, forward and backward.
        public var stepMilliseconds: Double
        /// `model(x, y)`.
        public var forwardMilliseconds: Double
        /// `model.backward()`.
        public var backwardMilliseconds: Double
        /// The three large matrix products alone (`x • w1`, `g • w1ᵀ`, `xᵀ • g`).
        public var productsMilliseconds: Double
        /// The step minus the three products: bias, ReLU, loss, their gradients, small products.
        public var otherMilliseconds: Double { stepMilliseconds - productsMilliseconds }
    }

    /// The inputs `(n, m)`.
    public let x: Tensor
    /// The targets `(n)`.
    public let y: Tensor
    /// The model, initialised as in the lesson.
    public let model: Model

    /// Prepares a benchmark on `x` and `y` with a Kaiming-initialised seed model of `hidden` units.
    public init(x: Tensor, y: Tensor, hidden: Int = 50, seed: UInt64 = 0) {
        self.x = x
        self.y = y
        var generator = RandomGenerator(seed: seed)
        let m = x.shape[1]
        let w1 = Tensor.randn([m, hidden], generator: &generator) * Float(2.0 / Double(m)).squareRoot()
        let w2 = Tensor.randn([hidden, 1], generator: &generator) / Float(hidden).squareRoot()
        model = Model(w1, Tensor.zeros(hidden), w2, Tensor.zeros(1))
    }

    /// Runs the step `runs` times after a warm-up and returns the medians.
    public func run(runs: Int = 7) -> Result {
        var forward: [Double] = []
        var backward: [Double] = []
        var step: [Double] = []
        _ = model(x, y)
        model.backward()
        for _ in 0..<runs {
            let start = Timing.now()
            _ = model(x, y)
            let middle = Timing.now()
            model.backward()
            let end = Timing.now()
            forward.append(middle - start)
            backward.append(end - middle)
            step.append(end - start)
        }
        let w1 = model.parameters[0]
        let g = Tensor.zeros(x.shape[0], w1.shape[1])
        let products = Timing.measure(runs: runs) {
            _ = x • w1
            _ = g • w1.t()
            _ = x.t() • g
        }
        return Result(
            stepMilliseconds: Timing.median(step) * 1000,
            forwardMilliseconds: Timing.median(forward) * 1000,
            backwardMilliseconds: Timing.median(backward) * 1000,
            productsMilliseconds: Timing.median(products) * 1000)
    }
}
