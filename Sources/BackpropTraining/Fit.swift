import BackpropCore
import BackpropData
import BackpropNetwork
import Foundation

// The training loop: minibatches, the layers' hand-written forward and backward, an optimizer
// step, and a validation pass after each epoch.
//
//   for epoch in epochs:
//       for xb, yb in shuffled batches:
//           loss = model(xb, yb); model.backward(); opt.step(); opt.zero_grad()
//       validate
//
// The loop can stop between two steps (`shouldStop`) and keeps where it is (`epoch`, `step`,
// the optimizer's named state), so that a run can be saved and resumed.

/// The losses a configuration can train with.
public enum LossKind: String, CaseIterable, Sendable, Codable {
    /// Softmax cross-entropy over `c` outputs, one per class (`CrossEntropy`).
    case crossEntropy = "cross-entropy"
    /// The seed's mean squared error of one output against the class number (`Mse`).
    case mse

    /// A new loss of this kind.
    public func make() -> any Loss {
        switch self {
        case .crossEntropy: CrossEntropy()
        case .mse: Mse()
        }
    }

    /// The model's outputs for `classes` classes: `classes` for cross-entropy, 1 for the seed's
    /// regression.
    public func outputs(classes: Int) -> Int {
        self == .mse ? 1 : classes
    }
}

/// The settings of a training run, with the best recipe found as defaults (see Training.md).
public struct TrainingConfiguration: Sendable, Codable, Equatable {
    /// The hidden layers' sizes, first to last (`[256, 128]` for 784-256-128-10).
    public var hidden: [Int]
    /// The number of passes over the training set.
    public var epochs: Int
    /// The rows per minibatch.
    public var batchSize: Int
    /// The peak learning rate (`--lr`): the optimizer that ``Trainer/init(configuration:classes:train:valid:)``
    /// makes starts with it, and the schedule scales it step by step.
    public var learningRate: Float
    /// The optimizer.
    public var optimizer: OptimizerKind
    /// The decoupled weight decay (see `Optimizers.swift`).
    public var weightDecay: Float
    /// How the learning rate changes over the run.
    public var schedule: LearningRateSchedule
    /// The seed of the initial weights and of every epoch's shuffle.
    public var seed: UInt64
    /// The loss (cross-entropy, or the seed's MSE).
    public var loss: LossKind
    /// The model as a description (`--layers`: `conv 32 3 pad 1, relu, …, lin 10`, or a preset name
    /// such as `cnn`; see `ModelDescription`), or `nil` for the MLP that ``hidden`` gives.
    ///
    /// Stored as given; a configuration saved before descriptions existed has none (an MLP).
    public var layers: String?
    /// Whether each epoch flips a seeded random half of the training images left to right
    /// (`--flip`; see `Batches.flipWidth`). Validation and test images are never flipped.
    ///
    /// A configuration saved before flips existed has none.
    public var flip: Bool

    /// Creates a configuration; every setting defaults to the recipe's.
    public init(
        hidden: [Int] = [256, 128], epochs: Int = 15, batchSize: Int = 128, learningRate: Float = 3e-3,
        optimizer: OptimizerKind = .adam, weightDecay: Float = 0.1, schedule: LearningRateSchedule = .oneCycle,
        seed: UInt64 = 42, loss: LossKind = .crossEntropy, layers: String? = nil, flip: Bool = false
    ) {
        self.flip = flip
        self.hidden = hidden
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.optimizer = optimizer
        self.weightDecay = weightDecay
        self.schedule = schedule
        self.seed = seed
        self.loss = loss
        self.layers = layers
    }
}

extension TrainingConfiguration {
    private enum Keys: String, CodingKey {
        case hidden, epochs, batchSize, learningRate, optimizer, weightDecay, schedule, seed, loss, layers, flip
    }

    /// Decodes a configuration; `layers` and `flip`, which older checkpoints lack, default to
    /// none and `false`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        self.init(
            hidden: try container.decode([Int].self, forKey: .hidden),
            epochs: try container.decode(Int.self, forKey: .epochs),
            batchSize: try container.decode(Int.self, forKey: .batchSize),
            learningRate: try container.decode(Float.self, forKey: .learningRate),
            optimizer: try container.decode(OptimizerKind.self, forKey: .optimizer),
            weightDecay: try container.decode(Float.self, forKey: .weightDecay),
            schedule: try container.decode(LearningRateSchedule.self, forKey: .schedule),
            seed: try container.decode(UInt64.self, forKey: .seed),
            loss: try container.decode(LossKind.self, forKey: .loss),
            layers: try container.decodeIfPresent(String.self, forKey: .layers),
            flip: try container.decodeIfPresent(Bool.self, forKey: .flip) ?? false)
    }

    /// Encodes every setting; `layers` only when given and `flip` only when on, so a run without
    /// them is written as before they existed.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(hidden, forKey: .hidden)
        try container.encode(epochs, forKey: .epochs)
        try container.encode(batchSize, forKey: .batchSize)
        try container.encode(learningRate, forKey: .learningRate)
        try container.encode(optimizer, forKey: .optimizer)
        try container.encode(weightDecay, forKey: .weightDecay)
        try container.encode(schedule, forKey: .schedule)
        try container.encode(seed, forKey: .seed)
        try container.encode(loss, forKey: .loss)
        try container.encodeIfPresent(layers, forKey: .layers)
        if flip { try container.encode(flip, forKey: .flip) }
    }
}

/// What one epoch achieved.
public struct EpochRecord: Sendable, Codable, Equatable {
    /// The epoch, counting from 1.
    public var epoch: Int
    /// The mean training loss over the epoch's steps (each weighted by its rows).
    public var trainLoss: Float
    /// The loss on the validation set after the epoch.
    public var validLoss: Float
    /// The accuracy on the validation set after the epoch.
    public var validAccuracy: Float
    /// The learning rate of the epoch's last step.
    public var learningRate: Float
    /// The wall-clock seconds the epoch took, validation included.
    public var seconds: Double
}

/// Where a training run is, reported after every step.
public struct StepProgress: Sendable {
    /// The epoch, counting from 1.
    public var epoch: Int
    /// The steps done in this epoch (1 after the first).
    public var step: Int
    /// The steps in an epoch.
    public var stepsPerEpoch: Int
    /// The mean training loss of this epoch so far.
    public var runningLoss: Float
    /// The seconds since the run started.
    public var elapsed: Double
}

/// Why training stopped before its end.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    /// The loss became NaN or infinite at `step` (counting from 1) of `epoch` (counting from 1);
    /// `step` is the epoch's last when the validation loss was the first to blow up.
    /// `learningRate` is that step's, `peakLearningRate` the schedule's peak (the `--lr` given).
    case diverged(epoch: Int, step: Int, loss: Float, learningRate: Float, peakLearningRate: Float)
    /// In a data-parallel run checked with ``Trainer/checksReplicas``: after `step` (counting
    /// from 1) of `epoch`, the replicas' weights were not the same bits.
    case replicasDiffer(epoch: Int, step: Int)
    /// The loss became NaN at `step` of `epoch` (as in ``diverged(epoch:step:loss:learningRate:peakLearningRate:)``)
    /// because the `BatchNorm` at `layer` (its index in `Model.layers`), whose `eps` is 0,
    /// normalised a channel whose variance was 0: `1 / √(0 + 0)` is infinite and `(x - mean) · ∞`
    /// is `0 · ∞`, NaN. A lower learning rate would not help; a positive `eps` does.
    case zeroVariance(epoch: Int, step: Int, layer: Int)
    /// The loss of the run's first step was NaN or infinite: the model's starting weights gave it
    /// on the first batch, before the optimizer took any step, so a lower learning rate would not
    /// help (inputs that overflow, such as pixels normalised with a huge mean, or weights that do).
    case notFiniteAtStart(loss: Float)

    /// One line that names the epoch and step and suggests what to do.
    public var description: String {
        switch self {
        case .diverged(let epoch, let step, let loss, let learningRate, let peak):
            let value = loss.isNaN ? "NaN" : (loss > 0 ? "infinite" : "-infinite")
            let rate =
                learningRate == peak
                ? "learning rate \(shortNumber(peak))"
                : "learning rate \(shortNumber(learningRate)) at that step, peak \(shortNumber(peak))"
            return "training diverged at epoch \(epoch), step \(step): the loss is \(value) (\(rate)); "
                + "try a lower learning rate, e.g. --lr \(shortNumber(peak / 10))"
        case .notFiniteAtStart(let loss):
            let value = loss.isNaN ? "NaN" : (loss > 0 ? "infinite" : "-infinite")
            return "the loss of the first batch is \(value), before any step of the optimizer (the learning rate "
                + "has not acted yet): the inputs or the starting weights give it; check the data and its "
                + "normalisation (--normalize), or the weights (--init)"
        case .zeroVariance(let epoch, let step, let layer):
            return "training diverged at epoch \(epoch), step \(step): the loss is NaN because layer \(layer) "
                + "(batchnorm eps 0) divided by a variance of 0 (a channel with the same value everywhere in the "
                + "batch, or a running variance of 0); give it a positive eps, e.g. 'batchnorm eps 1e-5' "
                + "(PyTorch's default)"
        case .replicasDiffer(let epoch, let step):
            return "the processes' weights differ after epoch \(epoch), step \(step): every process must take the "
                + "same step (same data, same settings and the same build on every host)"
        }
    }
}

/// `0.001`, `10`, `1e-05`: a number as short as `%g` writes it.
private func shortNumber(_ value: Float) -> String {
    String(format: "%g", Double(value))
}

/// The loss and accuracy of `model` on `(x, y)`, in batches of `batchSize` rows, in evaluation
/// mode.
///
/// The loss is the mean over all rows (each batch's mean weighted by its rows). Dropout is off and
/// batch norm normalises with its running statistics (`Model.eval()`); afterwards every layer is
/// back in the mode it was in.
///
/// The default batch is ``defaultEvaluationBatch(for:)``'s: 1,000 rows, or 128 for a model with
/// convolutions.
/// - Precondition: `x (N, …)` and `y (N)` fit the model; `batchSize > 0`.
public func evaluate(_ model: Model, x: Tensor, y: Tensor, batchSize: Int? = nil) -> (loss: Float, accuracy: Float) {
    let (lossSum, correct) = evaluationSums(model, x: x, y: y, batchSize: batchSize)
    let rows = x.shape[0]
    if rows == 0 { return (0, 0) }
    return (Float(lossSum / Double(rows)), Float(correct) / Float(rows))
}

/// ``evaluate(_:x:y:batchSize:)`` shared by the replicas of a data-parallel run: each evaluates
/// its shard of the rows (`ReplicaGroup.shard(of:)`), and the sums of the losses and of the
/// correct predictions are summed over the group. Every replica gets the same result: the
/// accuracy of the whole set exactly, the loss up to the order of summation.
/// - Precondition: as ``evaluate(_:x:y:batchSize:)``'s; every replica calls it with the same
///   `x` and `y` and the same weights.
public func evaluate(
    _ model: Model, x: Tensor, y: Tensor, batchSize: Int? = nil, replicas: any ReplicaGroup
) -> (loss: Float, accuracy: Float) {
    let rows = x.shape[0]
    let shard = replicas.shard(of: rows)
    var sums = [0.0, 0.0]
    if !shard.isEmpty {
        let (lossSum, correct) = evaluationSums(model, x: x.rows(shard), y: y.rows(shard), batchSize: batchSize)
        sums = [lossSum, Double(correct)]
    }
    sums = replicas.summed(sums)
    if rows == 0 { return (0, 0) }
    return (Float(sums[0] / Double(rows)), Float(sums[1]) / Float(rows))
}

/// The sum over the rows of the loss (each batch's mean times its rows, in Double) and the
/// number of correct predictions, in evaluation mode.
private func evaluationSums(_ model: Model, x: Tensor, y: Tensor, batchSize: Int?) -> (loss: Double, correct: Int) {
    let batchSize = batchSize ?? defaultEvaluationBatch(for: model)
    precondition(batchSize > 0, "evaluate: batch size \(batchSize) must be positive")
    let rows = x.shape[0]
    if rows == 0 { return (0, 0) }
    let x = x.contiguous()
    let y = y.contiguous()
    var lossSum = 0.0
    var correct = 0
    let modes = model.layers.map { ($0 as? any ModeDependentLayer)?.isTraining }
    model.eval()
    defer {
        for (layer, isTraining) in zip(model.layers, modes) {
            if let layer = layer as? any ModeDependentLayer, let isTraining { layer.isTraining = isTraining }
        }
    }
    GradMode.withNoGrad {
        for start in stride(from: 0, to: rows, by: batchSize) {
            let range = start..<Swift.min(start + batchSize, rows)
            let yb = y.rows(range)
            let loss = model(x.rows(range), yb).item()
            lossSum += Double(loss) * Double(range.count)
            correct += correctCount(model.loss.inp, yb)
        }
    }
    return (lossSum, correct)
}

/// The rows per batch ``evaluate(_:x:y:batchSize:)`` takes by default: 1,000, or 128 when the
/// model has a convolution.
///
/// A convolution unfolds each image into its windows, `cIn·kh·kw × oh·ow` floats (113 KB per
/// image for a 16 → 32-channel 3×3 convolution over 14×14 maps): 1,000 images would take 113 MB
/// for that alone, and more for the 28×28 maps before it. Batches of the training size keep the
/// peak memory that of a training step, and reuse its buffers.
public func defaultEvaluationBatch(for model: Model) -> Int {
    model.layers.contains { $0 is Conv2d } ? 128 : 1000
}

/// A training run in progress: a model, an optimizer, a schedule, the data, and how far it got.
///
/// The optimizer owns the learning rate, as in PyTorch: the schedule scales from the learning
/// rate the optimizer holds when the trainer is made (``peakLearningRate``), and sets
/// `optimizer.learningRate` before every step to `schedule.learningRate(peak:step:totalSteps:)`.
public final class Trainer {
    /// The model being trained.
    public let model: Model
    /// The optimizer updating `model.parameters`; the schedule sets its `learningRate` before
    /// every step.
    public let optimizer: any Optimizer
    /// The learning-rate schedule.
    public let schedule: LearningRateSchedule
    /// The peak learning rate the schedule scales: the optimizer's `learningRate` when the
    /// trainer was made.
    public let peakLearningRate: Float
    /// The number of epochs of the whole run.
    public let epochs: Int
    /// The seed of each epoch's shuffle.
    public let seed: UInt64
    /// The training minibatches.
    public let batches: Batches
    /// The validation inputs. // (nValid, m) or (nValid, c, h, w)
    public let xValid: Tensor
    /// The validation targets. // (nValid)
    public let yValid: Tensor

    /// The replicas of a data-parallel run this trainer is one of (`ReplicaGroup`), or `nil`
    /// (one process, the default).
    ///
    /// With a group, every replica runs the same trainer (same configuration, data and seed) and
    /// each step is the one-process step, shared: each replica takes its shard of the batch
    /// (`batches.batch(_:rows:)`), runs forward and `backward(scalingLossGradientBy: n_r / B)`, and
    /// the gradients are summed over the group in one fused buffer (one `sum` per step, with the
    /// loss in it) before the same optimizer step everywhere. Before each step the replicas agree
    /// whether to go on (a sum of their stop requests: one number), so that a stop asked by any of
    /// them (`shouldStop`) stops all at the same step, as one process would stop there. Batch norm sums its
    /// statistics over the group and dropout keeps its rows of the whole batch's mask, so the run
    /// is the one-process run up to the order of float sums. Validation is shared the same way.
    /// - Precondition: set before the first step; every batch has at least one row per replica.
    public var replicas: (any ReplicaGroup)? {
        didSet {
            precondition(step == 0, "Trainer.replicas: set it between two epochs (before the first step, or resuming)")
            if let replicas {
                let smallest = batches.smallestBatchRows
                precondition(
                    smallest >= replicas.count,
                    "Trainer.replicas: a batch of \(smallest) rows cannot be shared by \(replicas.count) replicas")
            }
            for layer in model.layers {
                (layer as? BatchNorm)?.replicas = replicas
                (layer as? Dropout)?.batchShard = nil
            }
        }
    }
    /// In a data-parallel run, whether every step ends by checking that the replicas hold the
    /// same bits (a checksum of every parameter and buffer, compared over the group): a test of
    /// the claim that they do, at the cost of one small exchange per step.
    public var checksReplicas = false
    /// The seconds spent in training steps (forward, backward, the sum over the replicas and the
    /// optimizer; not validation), over every ``fit(onStep:onEpoch:shouldStop:)`` call.
    public private(set) var stepSeconds = 0.0
    /// The steps those seconds count.
    public private(set) var stepsTaken = 0
    /// Of ``stepSeconds``, the seconds spent summing the gradients over the replicas (waiting for
    /// the slowest included): the all-reduce's share of a data-parallel step.
    public private(set) var replicaSumSeconds = 0.0
    /// The gradients of every parameter, then the shard's loss sum: the one buffer summed over
    /// the replicas at each step.
    private var fusedBuffer: [Float] = []

    /// The epochs completed.
    public private(set) var epoch = 0
    /// The steps done in the current (incomplete) epoch.
    public private(set) var step = 0
    /// One record per completed epoch.
    public private(set) var history: [EpochRecord] = []
    /// The current epoch's loss so far: sum of (batch loss × rows) and rows.
    private var epochLossSum = 0.0
    private var epochRows = 0
    private var epochSeconds = 0.0

    /// A run of `epochs` epochs over `train`, validated on `valid`, at the peak learning rate
    /// that `optimizer` holds (`Adam(model.parameters, learningRate: 3e-3)`).
    ///
    /// The schedule step `s` of `S` sets `optimizer.learningRate = schedule.learningRate(peak:
    /// peakLearningRate, step: s, totalSteps: S)`: `.constant` keeps the optimizer's rate.
    /// - Precondition: `train.x (N, …)` (`(N, m)`, `(N, c, h, w)`), `train.y (N)`, `valid` alike;
    ///   `epochs > 0`; the model fits the data (its first layer takes the rows of `x`).
    public init(
        model: Model, optimizer: any Optimizer, schedule: LearningRateSchedule, epochs: Int, batchSize: Int,
        seed: UInt64, train: (x: Tensor, y: Tensor), valid: (x: Tensor, y: Tensor)
    ) {
        precondition(epochs > 0, "Trainer: epochs \(epochs) must be positive")
        precondition(train.x.shape[0] > 0, "Trainer: no training rows")
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule
        self.peakLearningRate = optimizer.learningRate
        self.epochs = epochs
        self.seed = seed
        self.batches = Batches(x: train.x, y: train.y, batchSize: batchSize)
        self.xValid = valid.x.contiguous()
        self.yValid = valid.y.contiguous()
    }

    /// The learning rate has one home, the optimizer: give it there.
    @available(*, unavailable, message: "the optimizer owns the learning rate: give it to the optimizer only")
    public convenience init(
        model: Model, optimizer: any Optimizer, schedule: LearningRateSchedule, learningRate: Float, epochs: Int,
        batchSize: Int, seed: UInt64, train: (x: Tensor, y: Tensor), valid: (x: Tensor, y: Tensor)
    ) {
        fatalError("unavailable")
    }

    /// A run of `configuration`: its model, initialised from `configuration.seed`, and its
    /// optimizer, made with `configuration.learningRate` (the schedule's peak).
    ///
    /// The model is `configuration.layers`' description built for the rows of `train.x` (a
    /// convnet takes `(N, c, h, w)`, a description starting with `lin` `(N, m)`), or, without a
    /// description, an MLP `[m] + hidden + [classes]` with cross-entropy (`[m] + hidden + [1]` with
    /// the seed's MSE), as `Model.mlp` builds it.
    /// - Precondition: `configuration.layers` parses and fits the rows of `train.x` (as
    ///   ``TrainingConfiguration/validate(imageShape:classes:limit:trainingRows:)`` checks); without it,
    ///   `train.x` is a matrix `(N, m)`.
    public convenience init(
        configuration: TrainingConfiguration, classes: Int, train: (x: Tensor, y: Tensor), valid: (x: Tensor, y: Tensor)
    ) {
        var generator = RandomGenerator(seed: configuration.seed)
        let model: Model
        do {
            model = try configuration.makeModel(
                inputShape: Array(train.x.shape.dropFirst()), classes: classes, generator: &generator)
        } catch {
            preconditionFailure("Trainer: \(error)")
        }
        let optimizer = configuration.optimizer.make(
            parameters: model.parameters, learningRate: configuration.learningRate,
            weightDecay: configuration.weightDecay)
        self.init(
            model: model, optimizer: optimizer, schedule: configuration.schedule, epochs: configuration.epochs,
            batchSize: configuration.batchSize, seed: configuration.seed, train: train, valid: valid)
        if configuration.flip {
            precondition(
                train.x.rank >= 3, "Trainer: flips need images (N, c, h, w), got rows of shape \(train.x.shape)")
            batches.flipWidth = train.x.shape.last!
        }
    }

    /// Whether every epoch has run.
    public var isFinished: Bool { epoch >= epochs }

    /// Continues a run saved after `history.count` completed epochs (see `TrainingCheckpoint`):
    /// the next ``fit(onStep:onEpoch:shouldStop:)`` starts at epoch `history.count + 1`, with that
    /// epoch's shuffle and learning rate, as the uninterrupted run would have.
    ///
    /// The model's weights and the optimizer's state must be restored separately.
    /// - Precondition: no step has run yet, and `history` has at most ``epochs`` records.
    public func resume(history: [EpochRecord]) {
        precondition(epoch == 0 && step == 0, "Trainer.resume: the run has already started")
        precondition(
            history.count <= epochs, "Trainer.resume: \(history.count) epochs done, but the run has \(epochs)")
        self.history = history
        self.epoch = history.count
    }

    /// Trains until the last epoch ends or `shouldStop` (asked before each step) says stop.
    ///
    /// The model trains in training mode (`Model.train()`: dropout drops, batch norm uses each
    /// batch's statistics); each epoch's validation runs in evaluation mode (see
    /// ``evaluate(_:x:y:batchSize:)``). When it returns or throws, the model is in evaluation mode
    /// (`Model.eval()`), as fastai's `fit` leaves it: `model.predict(x)` is then deterministic and
    /// leaves batch norm's running statistics alone; call `Model.train()` before steps of your own.
    ///
    /// After each step `onStep` is called; after each epoch's validation, `onEpoch`. Returns the
    /// history of every completed epoch. Calling it again continues where it stopped.
    /// - Throws: `TrainingError.diverged` when the training or validation loss is NaN or infinite,
    ///   naming the epoch and step; the parameters are then those of the step before.
    @discardableResult
    public func fit(
        onStep: (StepProgress) -> Void = { _ in }, onEpoch: (EpochRecord) -> Void = { _ in },
        shouldStop: () -> Bool = { false }
    ) throws -> [EpochRecord] {
        let stepsPerEpoch = batches.count
        // Saturating: a library caller may ask for more steps than an Int counts (the command line
        // refuses such settings in TrainingConfiguration.validate).
        let (product, overflow) = stepsPerEpoch.multipliedReportingOverflow(by: epochs)
        let totalSteps = overflow ? Int.max : product
        let started = ContinuousClock.now
        model.train()
        // However it ends, in evaluation mode, as fastai's `fit` leaves its model (validation last):
        // `predict` after it is deterministic and leaves batch norm's statistics alone.
        defer { model.eval() }
        while epoch < epochs {
            if step == 0 {
                batches.shuffle(seed: seed, epoch: epoch)
                // Each epoch's dropout masks depend only on the seed, the epoch and the layer, as the
                // shuffle does: a resumed run draws the same masks.
                for (index, layer) in model.layers.enumerated() {
                    guard let dropout = layer as? Dropout else { continue }
                    let layerSeed = seed ^ (UInt64(index + 1) &* 0xD1B5_4A32_D192_ED03)
                    dropout.reseed(Batches.epochSeed(seed: layerSeed, epoch: epoch))
                }
            }
            let epochStarted = ContinuousClock.now
            while step < stepsPerEpoch {
                // With replicas, a stop asked by any of them stops all, before anyone starts the step
                // (its forward pass would move batch norm's running statistics).
                let stop = shouldStop()
                if replicas.map({ $0.summed([stop ? 1 : 0])[0] > 0 }) ?? stop {
                    epochSeconds += seconds(since: epochStarted)
                    return history
                }
                let (base, late) = epoch.multipliedReportingOverflow(by: stepsPerEpoch)
                let runStep = late || base > totalSteps - step ? totalSteps : base + step  // from the run's start
                let learningRate = schedule.learningRate(peak: peakLearningRate, step: runStep, totalSteps: totalSteps)
                optimizer.learningRate = learningRate
                let stepStarted = ContinuousClock.now
                let lossSum: Double
                let rows: Int
                if let replicas {
                    (lossSum, rows) = replicatedGradients(replicas)
                    let loss = Float(lossSum / Double(rows))
                    guard loss.isFinite else {
                        throw divergence(
                            epoch: epoch + 1, step: step + 1, loss: loss, learningRate: learningRate,
                            peakLearningRate: peakLearningRate, atStart: runStep == 0)
                    }
                } else {
                    let (xb, yb) = batches.batch(step)
                    let loss = model(xb, yb).item()
                    guard loss.isFinite else {
                        throw divergence(
                            epoch: epoch + 1, step: step + 1, loss: loss, learningRate: learningRate,
                            peakLearningRate: peakLearningRate, atStart: runStep == 0)
                    }
                    model.backward()
                    (lossSum, rows) = (Double(loss) * Double(yb.count), yb.count)
                }
                optimizer.step()
                optimizer.zeroGrad()
                if checksReplicas, let replicas, !replicas.allEqual(weightChecksum()) {
                    throw TrainingError.replicasDiffer(epoch: epoch + 1, step: step + 1)
                }
                epochLossSum += lossSum
                epochRows += rows
                step += 1
                stepSeconds += seconds(since: stepStarted)
                stepsTaken += 1
                onStep(
                    StepProgress(
                        epoch: epoch + 1, step: step, stepsPerEpoch: stepsPerEpoch,
                        runningLoss: Float(epochLossSum / Double(epochRows)), elapsed: seconds(since: started)))
            }
            let (validLoss, validAccuracy) =
                replicas.map { evaluate(model, x: xValid, y: yValid, replicas: $0) }
                ?? evaluate(model, x: xValid, y: yValid)
            guard validLoss.isFinite else {
                throw divergence(
                    epoch: epoch + 1, step: stepsPerEpoch, loss: validLoss, learningRate: optimizer.learningRate,
                    peakLearningRate: peakLearningRate)
            }
            epochSeconds += seconds(since: epochStarted)
            let record = EpochRecord(
                epoch: epoch + 1, trainLoss: Float(epochLossSum / Double(epochRows)), validLoss: validLoss,
                validAccuracy: validAccuracy, learningRate: optimizer.learningRate, seconds: epochSeconds)
            history.append(record)
            epoch += 1
            step = 0
            epochLossSum = 0
            epochRows = 0
            epochSeconds = 0
            onEpoch(record)
        }
        return history
    }

    /// The error for a loss that is not finite: ``TrainingError/zeroVariance(epoch:step:layer:)``
    /// when a batch norm with `eps` 0 has just normalised with an infinite `1 / √var` (the last
    /// forward pass, the one that gave the loss), ``TrainingError/notFiniteAtStart(loss:)`` for the
    /// training loss of the run's first step (`atStart`), else
    /// ``TrainingError/diverged(epoch:step:loss:learningRate:peakLearningRate:)``.
    private func divergence(
        epoch: Int, step: Int, loss: Float, learningRate: Float, peakLearningRate: Float, atStart: Bool = false
    ) -> TrainingError {
        for (index, layer) in model.layers.enumerated() {
            if let norm = layer as? BatchNorm, norm.eps == 0, let invStd = norm.invStd,
                invStd.values.contains(where: { !$0.isFinite })
            {
                return .zeroVariance(epoch: epoch, step: step, layer: index)
            }
        }
        if atStart { return .notFiniteAtStart(loss: loss) }
        return .diverged(
            epoch: epoch, step: step, loss: loss, learningRate: learningRate, peakLearningRate: peakLearningRate)
    }

    /// This replica's part of step `step`: forward and backward on its shard of the batch, its
    /// gradients scaled to its share (`n_r / B`), then every gradient and the loss sum summed over
    /// the group in one buffer, and the sums written back as the parameters' `.g`. Returns the
    /// batch's loss sum and rows.
    private func replicatedGradients(_ replicas: any ReplicaGroup) -> (lossSum: Double, rows: Int) {
        let batchRows = Swift.min(batches.batchSize, batches.rowCount - step * batches.batchSize)
        let shard = replicas.shard(of: batchRows)
        for layer in model.layers {
            (layer as? Dropout)?.batchShard = (shard, batchRows)
        }
        let (xb, yb) = batches.batch(step, rows: shard)
        let loss = model(xb, yb).item()
        model.backward(scalingLossGradientBy: Float(shard.count) / Float(batchRows))
        let parameters = optimizer.parameters
        let size = parameters.reduce(0) { $0 + $1.count } + 1
        if fusedBuffer.count != size { fusedBuffer = [Float](repeating: 0, count: size) }
        fusedBuffer.withUnsafeMutableBufferPointer { buffer in
            var offset = 0
            for parameter in parameters {
                guard let gradient = parameter.g else {
                    preconditionFailure("Trainer: a parameter of shape \(parameter.shape) has no .g after backward()")
                }
                gradient.contiguous().withUnsafeBufferPointer { values in
                    _ = UnsafeMutableBufferPointer(rebasing: buffer[offset..<(offset + values.count)])
                        .initialize(from: values)
                }
                offset += parameter.count
            }
            buffer[offset] = loss * Float(shard.count)
            let started = ContinuousClock.now
            replicas.sum(buffer)
            replicaSumSeconds += seconds(since: started)
            offset = 0
            for parameter in parameters {
                let summed = Tensor(uninitializedShape: parameter.shape)
                summed.withUnsafeMutableBufferPointer { values in
                    _ = values.initialize(from: buffer[offset..<(offset + values.count)])
                }
                parameter.g = summed
                offset += parameter.count
            }
        }
        return (Double(fusedBuffer[size - 1]), batchRows)
    }

    /// In a data-parallel run, the first thing its replicas do not share, or `nil` (also with no
    /// ``replicas``): every replica calls it before the first step, since a replica whose network
    /// or batches differ would sum a gradient of another size (a corrupt heap, or MPI's own abort)
    /// or take other steps. Compared in order: the network (its parameters' shapes), the batches
    /// (rows and their count), each of `settings` (named as the message will: "their NAME differ")
    /// and `data` as the caller describes them, the epochs done, the starting weights
    /// (``weightChecksum()``, which differs where replicas resumed or started from different files)
    /// and the optimizer's state (which a resumed run carries on with). The value returned is this
    /// replica's. Every replica must pass as many `settings`, in the same order.
    public func replicaDifference(
        settings: [(name: String, value: String)], data: String
    ) -> (
        name: String, value: String
    )? {
        guard let replicas else { return nil }
        let shapes = model.layers.flatMap { $0.parameters + $0.buffers.map(\.tensor) }.map(\.shape)
        let values = shapes.reduce(0) { $0 + $1.reduce(1, *) }
        return replicas.firstDifference(
            among: [
                ("networks", "\(shapes.count) tensors of parameters and buffers, \(values) values, shapes \(shapes)"),
                ("batches", "\(batches.rowCount) training rows in \(batches.count) batches of \(batches.batchSize)"),
            ] + settings + [
                ("epochs done", "\(epoch)"),
                ("data", data),
                ("starting weights", "checksum \(weightChecksum())"),
                ("optimizer states", "checksum \(optimizerChecksum())"),
            ])
    }

    /// A 64-bit FNV-1a hash of the optimizer's state (Adam's moments, its step count: what
    /// `--resume` reads from a checkpoint), its tensors in the order of their names.
    public func optimizerChecksum() -> UInt64 {
        var hash = FNV1a()
        let state = optimizer.state
        for name in state.keys.sorted() {
            for byte in name.utf8 { hash.combine(UInt64(byte)) }
            combineBits(of: state[name]!, into: &hash)
        }
        return hash.value
    }

    /// A 64-bit FNV-1a hash of the bits of every parameter and buffer (batch norm's running
    /// statistics), in the model's order.
    public func weightChecksum() -> UInt64 {
        var hash = FNV1a()
        for tensor in model.layers.flatMap({ $0.parameters + $0.buffers.map(\.tensor) }) {
            combineBits(of: tensor, into: &hash)
        }
        return hash.value
    }

    /// Mixes the bits of every element of `tensor`, in order, into `hash`.
    private func combineBits(of tensor: Tensor, into hash: inout FNV1a) {
        tensor.contiguous().withUnsafeBufferPointer { values in
            for value in values { hash.combine(UInt64(value.bitPattern)) }
        }
    }
}

/// The seconds from `instant` to now.
private func seconds(since instant: ContinuousClock.Instant) -> Double {
    let duration = instant.duration(to: .now)
    return Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18
}
