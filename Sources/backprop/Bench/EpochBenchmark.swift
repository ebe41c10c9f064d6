import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining

/// Times one epoch of minibatch training with the layers' hand-written backward pass:
///
///     for xb, yb in shuffled batches:
///         loss = model(xb, yb); model.backward(); opt.step(); opt.zero_grad()
///
/// which is the loop a PyTorch user writes (`Benchmarks/minibatch_epoch_torch.py` is that loop in
/// PyTorch). The shuffle and the gathering of each batch are timed too; validation is not.
struct EpochBenchmark {
    /// A model, optimizer and batch size to time.
    struct Recipe: Sendable {
        /// The layer sizes, input first (`[784, 50, 10]`).
        var sizes: [Int]
        /// The optimizer.
        var optimizer: OptimizerKind
        /// Its learning rate (constant: no schedule).
        var learningRate: Float
        /// The rows per minibatch.
        var batchSize: Int
        /// A model description (`--layers` text) to train instead of the MLP of ``sizes``; its
        /// inputs are the rows as 28×28 images when it starts with a convolution.
        var layers: String?
        /// Decoupled weight decay.
        var weightDecay: Float = 0

        /// The minibatch epoch: 784-50-10, cross-entropy, SGD, batch 64.
        static let minibatch = Recipe(sizes: [784, 50, 10], optimizer: .sgd, learningRate: 0.1, batchSize: 64)
        /// The deeper model: 784-256-128-10, cross-entropy, Adam, batch 64.
        static let mlp = Recipe(sizes: [784, 256, 128, 10], optimizer: .adam, learningRate: 1e-3, batchSize: 64)

        /// The `cnn` preset, the convnet of `Benchmarks/cnn_epoch_torch.py` (its peer): two 3×3
        /// convolutions of 16 and 32 channels, each pooled, then batch norm and ReLU, a 256-wide
        /// hidden layer with dropout; cross-entropy, AdamW at 3e-3 with weight decay 0.3, batch 128
        /// (Docs/ConvnetRecipe.md).
        static let cnn = Recipe(
            sizes: [784, 10], optimizer: .adam, learningRate: 3e-3, batchSize: 128,
            layers: "cnn", weightDecay: 0.3)

        /// Creates a recipe.
        init(
            sizes: [Int], optimizer: OptimizerKind, learningRate: Float, batchSize: Int, layers: String? = nil,
            weightDecay: Float = 0
        ) {
            self.sizes = sizes
            self.optimizer = optimizer
            self.learningRate = learningRate
            self.batchSize = batchSize
            self.layers = layers
            self.weightDecay = weightDecay
        }
    }

    /// The training inputs. // (N, m)
    let x: Tensor
    /// The training targets, class indices as Float. // (N)
    let y: Tensor
    /// What is trained.
    let recipe: Recipe

    /// Prepares the benchmark.
    /// - Precondition: `x (N, m)` with `m == recipe.sizes[0]`, `y (N)` of class indices below
    ///   `recipe.sizes.last`.
    init(x: Tensor, y: Tensor, recipe: Recipe) {
        precondition(
            x.rank == 2 && y.shape == [x.shape[0]] && recipe.sizes.first == x.shape[1],
            "EpochBenchmark: x \(x.shape) and y \(y.shape) do not fit sizes \(recipe.sizes)")
        self.x = x
        self.y = y
        self.recipe = recipe
    }

    /// Trains one untimed warm-up epoch, then `runs` timed ones; returns each timed epoch's seconds
    /// and the mean training loss of the last.
    /// - Precondition: `runs > 0`.
    func run(runs: Int = 3, seed: UInt64 = 0) -> (seconds: [Double], loss: Float) {
        precondition(runs > 0, "EpochBenchmark.run: runs must be positive, got \(runs)")
        let (model, optimizer, batches) = setUp(seed: seed)
        var seconds: [Double] = []
        var loss: Float = 0
        for epoch in 0...runs {
            let start = Timing.now()
            batches.shuffle(seed: seed, epoch: epoch)
            var total = 0.0
            for step in 0..<batches.count {
                let (xb, yb) = batches.batch(step)
                total += Double(model(xb, yb).item()) * Double(yb.count)
                model.backward()
                optimizer.step()
                optimizer.zeroGrad()
            }
            let end = Timing.now()
            if epoch > 0 { seconds.append(end - start) }
            loss = Float(total / Double(batches.rowCount))
        }
        return (seconds, loss)
    }

    /// Where an epoch's time goes, layer by layer (see ``StepBreakdown``), over `runs` epochs
    /// after a warm-up one.
    func breakdown(runs: Int = 1, seed: UInt64 = 0) -> StepBreakdown {
        let (model, optimizer, batches) = setUp(seed: seed)
        return StepBreakdown.measure(model: model, optimizer: optimizer, batches: batches, runs: runs)
    }

    /// The recipe's model, drawn from `seed`, its optimizer and the batches of the rows.
    private func setUp(seed: UInt64) -> (Model, any Optimizer, Batches) {
        var generator = RandomGenerator(seed: seed)
        let model: Model
        var x = self.x
        if let described = recipe.describedModel(generator: &generator) {
            x = x.reshape([x.shape[0]] + described.inputShape)
            model = described.model
        } else {
            model = Model.mlp(sizes: recipe.sizes, loss: CrossEntropy(), generator: &generator)
        }
        let optimizer = recipe.optimizer.make(
            parameters: model.parameters, learningRate: recipe.learningRate, weightDecay: recipe.weightDecay)
        let batches = Batches(x: x, y: y, batchSize: recipe.batchSize)
        return (model, optimizer, batches)
    }
}

extension EpochBenchmark.Recipe {
    /// The model of ``layers`` for 28×28 single-channel images, drawn from `generator`, with its
    /// description and the shape of one example; `nil` for an MLP recipe (no `layers`).
    func describedModel(
        generator: inout RandomGenerator
    ) -> (model: Model, description: ModelDescription, inputShape: [Int])? {
        guard let layers else { return nil }
        // A recipe of the benchmark's own (BenchmarkTests builds them), or `--layers` after
        // `BenchCommand.modelRecipe()` checked that it parses, fits the 28×28 rows that
        // BenchCommand checks the data for and ends in 10 scores: these cannot fail.
        let description = try! ModelDescription(parsing: layers)
        let inputShape = description.inputShape(channels: 1, height: 28, width: 28)
        let model = try! Model(
            description: description, inputShape: inputShape, loss: CrossEntropy(), generator: &generator)
        return (model, description, inputShape)
    }
}
