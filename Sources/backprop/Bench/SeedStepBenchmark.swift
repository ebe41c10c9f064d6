import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining

/// Times the seed's full-batch step: `loss = model(xTrain, yTrain); model.backward()`.
///
/// The step is three `(n, m) × (m, nh)`-sized matrix products (forward `x • w1`, backward
/// `out.g • w1ᵀ` for `x.g` and `xᵀ • out.g` for `w1.g`), three small ones for the second layer,
/// and elementwise work on `(n, nh)`: ReLU, its gradient, the bias gradients, the loss.
struct SeedStepBenchmark {
    /// Median milliseconds of the step and of its parts.
    struct Result: Sendable, Encodable {
        /// The whole step, forward and backward.
        var stepMilliseconds: Double
        /// `model(x, y)`.
        var forwardMilliseconds: Double
        /// `model.backward()`.
        var backwardMilliseconds: Double
        /// The forward pass's products with their biases: `lin(x, w1, b1)`, `lin(r, w2, b2)`.
        var forwardProductsMilliseconds: Double
        /// The backward pass's products: `out.g • wᵀ` and `inpᵀ • out.g` for both layers.
        var backwardProductsMilliseconds: Double
        /// The step's FLOPs and bytes, from its shapes (``WorkloadCost/seedStep(rows:inputs:hidden:)``).
        var cost: WorkloadCost
        /// The step minus its products: ReLU, the gradients of ReLU, of the loss and of the biases,
        /// the loss itself, and allocating the results.
        var elementwiseMilliseconds: Double {
            Swift.max(0, stepMilliseconds - forwardProductsMilliseconds - backwardProductsMilliseconds)
        }

        private enum CodingKeys: String, CodingKey {
            case stepMilliseconds = "step_ms"
            case forwardMilliseconds = "forward_ms"
            case backwardMilliseconds = "backward_ms"
            case forwardProductsMilliseconds = "forward_products_ms"
            case backwardProductsMilliseconds = "backward_products_ms"
        }

        /// Writes the times under these JSON keys: `step_ms`, `forward_ms`,
        /// `backward_ms`, `forward_products_ms`, `backward_products_ms`, `elementwise_ms`.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(stepMilliseconds, forKey: .stepMilliseconds)
            try container.encode(forwardMilliseconds, forKey: .forwardMilliseconds)
            try container.encode(backwardMilliseconds, forKey: .backwardMilliseconds)
            try container.encode(forwardProductsMilliseconds, forKey: .forwardProductsMilliseconds)
            try container.encode(backwardProductsMilliseconds, forKey: .backwardProductsMilliseconds)
            var extra = encoder.container(keyedBy: ExtraKeys.self)
            try extra.encode(elementwiseMilliseconds, forKey: .elementwise)
        }

        private enum ExtraKeys: String, CodingKey {
            case elementwise = "elementwise_ms"
        }
    }

    /// The inputs. // (n, m)
    let x: Tensor
    /// The targets. // (n)
    let y: Tensor
    /// The model, initialised as in the lesson.
    let model: Model

    /// Prepares a benchmark on `x (n, m)` and `y (n)` with a Kaiming-initialised seed model of
    /// `hidden` units.
    /// - Precondition: `x` is a matrix and `y` has one value per row.
    init(x: Tensor, y: Tensor, hidden: Int = 50, seed: UInt64 = 0) {
        precondition(
            x.rank == 2 && y.shape == [x.shape[0]],
            "SeedStepBenchmark: x \(x.shape) and y \(y.shape) do not fit (n, m) and (n)")
        self.x = x
        self.y = y
        var generator = RandomGenerator(seed: seed)
        let weights = SeedProgram.Weights.kaiming(inputs: x.shape[1], hidden: hidden, generator: &generator)
        model = Model(weights.w1, weights.b1, weights.w2, weights.b2)
    }

    /// Synthetic data of the seed's size: `x` standard normal `(n, m)`, `y` integer labels
    /// 0...9 as Float `(n)`.
    static func syntheticData(
        rows n: Int = 50_000, inputs m: Int = 784, seed: UInt64 = 1
    ) -> (x: Tensor, y: Tensor) {
        var generator = RandomGenerator(seed: seed)
        let x = Tensor.randn([n, m], generator: &generator)
        let y = Tensor((0..<n).map { _ in Float(generator.nextIndex(below: 10)) })
        return (x, y)
    }

    /// Runs the step once to warm up, then `runs` times, and returns the medians; then times the
    /// step's products alone, on the tensors the step left.
    /// - Precondition: `runs > 0`.
    func run(runs: Int = 7) -> Result {
        precondition(runs > 0, "SeedStepBenchmark.run: runs must be positive, got \(runs)")
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
        let l1 = model.layers[0] as! Lin
        let l2 = model.layers[2] as! Lin
        let r = l2.inp!
        let g1 = l1.out.g!
        let g2 = l2.out.g!
        let forwardProducts = Timing.measure(runs: runs) {
            _ = lin(x, l1.w, l1.b)
            _ = lin(r, l2.w, l2.b)
        }
        let backwardProducts = Timing.measure(runs: runs) {
            _ = g1 • l1.w.t()
            _ = x.t() • g1
            _ = g2 • l2.w.t()
            _ = r.t() • g2
        }
        return Result(
            stepMilliseconds: Timing.median(step) * 1000,
            forwardMilliseconds: Timing.median(forward) * 1000,
            backwardMilliseconds: Timing.median(backward) * 1000,
            forwardProductsMilliseconds: Timing.median(forwardProducts) * 1000,
            backwardProductsMilliseconds: Timing.median(backwardProducts) * 1000,
            cost: .seedStep(rows: x.shape[0], inputs: x.shape[1], hidden: l1.w.shape[1]))
    }
}
