import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropNetwork
@testable import BackpropTraining

// Data-parallel training (issue 15), with the replicas as threads (ThreadReplicaGroup.swift):
// every replica's share of a step, put together, is the one-process step. The reference is always
// the one-process computation (itself checked against autograd and finite differences elsewhere);
// the replicas sum in another order, so values agree to float rounding, and masks and accuracies
// exactly.

// MARK: - Shards

@Test func shardsCoverTheBatchInOrderAndDifferByAtMostOneRow() {
    for count in 1...7 {
        for rows in count...61 {
            // Deal the rows one at a time to the replicas in turn: replica r gets as many as it would
            // in a card game; the shards are then consecutive runs of those sizes.
            var sizes = [Int](repeating: 0, count: count)
            for row in 0..<rows { sizes[row % count] += 1 }
            var start = 0
            for rank in 0..<count {
                let shard = ThreadReplica.shard(rank, of: count, rows: rows)
                #expect(shard == start..<(start + sizes[rank]), "rank \(rank) of \(count), \(rows) rows")
                start += sizes[rank]
            }
            #expect(start == rows)
        }
    }
}

// MARK: - Layers that see the whole batch

/// `values[range of rows]` of a row-major `(n, …)` tensor's values.
private func rowValues(_ tensor: Tensor, _ rows: Range<Int>) -> [Float] {
    tensor.rows(rows).contiguous().values
}

/// Batch norm in three replicas (shards 3, 2, 2 of 7 images; 1, 1, 1 of 3 feature rows; and 8, 8, 7
/// of 23 rows of 13 features, through the kernels over whole rows) normalises with the whole
/// batch's statistics: its outputs, `inp.g`, running statistics and summed `w.g`, `b.g` are the
/// one-process layer's.
@Test(arguments: [[7, 3, 4, 5], [3, 4], [23, 13]])
func batchNormInReplicasIsBatchNormOverTheWholeBatch(shape: [Int]) throws {
    let n = shape[0]
    var generator = RandomGenerator(seed: 31)
    let x = Tensor.randn(shape, generator: &generator) * 2 + 0.5
    let outG = Tensor.randn(shape, generator: &generator)
    let whole = BatchNorm(features: shape[1])
    let wholeOut = whole(x)
    wholeOut.g = outG
    whole.backward()
    let (xValues, gValues) = (x.values, outG.values)
    let expected = (
        out: wholeOut.values, inpG: whole.inp.g!.values, wG: whole.w.g!.values, bG: whole.b.g!.values,
        mean: whole.runningMean.values, variance: whole.runningVar.values
    )
    let rowSize = x.count / n

    let shares = try runReplicas(3) { group in
        let rows = group.shard(of: n)
        let layer = BatchNorm(features: shape[1])
        layer.replicas = group
        let slice = Array(xValues[rows.lowerBound * rowSize..<rows.upperBound * rowSize])
        let out = layer(Tensor(shape: [rows.count] + shape.dropFirst(), values: slice))
        out.g = Tensor(
            shape: out.shape, values: Array(gValues[rows.lowerBound * rowSize..<rows.upperBound * rowSize]))
        layer.backward()
        return (
            out: out.values, inpG: layer.inp.g!.values, wG: layer.w.g!.values, bG: layer.b.g!.values,
            mean: layer.runningMean.values, variance: layer.runningVar.values
        )
    }
    expectAllNear(shares.flatMap(\.out), expected.out.map(Double.init), tolerance: 1e-5, "out")
    expectAllNear(shares.flatMap(\.inpG), expected.inpG.map(Double.init), tolerance: 1e-5, "inp.g")
    for (name, parts, whole) in [("w.g", shares.map(\.wG), expected.wG), ("b.g", shares.map(\.bG), expected.bG)] {
        let summed = (0..<whole.count).map { i in parts.reduce(0.0) { $0 + Double($1[i]) } }
        expectAllNear(summed.map(Float.init), whole.map(Double.init), tolerance: 1e-4, "summed \(name)")
    }
    for share in shares {
        expectAllNear(share.mean, expected.mean.map(Double.init), tolerance: 1e-6, "running_mean")
        expectAllNear(share.variance, expected.variance.map(Double.init), tolerance: 1e-6, "running_var")
        #expect(share.mean == shares[0].mean && share.variance == shares[0].variance, "replicas differ")
    }
}

/// Dropout in replicas draws the whole batch's mask and keeps its rows: the replicas' masks,
/// put together, are the one-process masks, bit for bit, call after call.
@Test func dropoutInReplicasKeepsItsRowsOfTheWholeBatchMask() throws {
    let (n, features) = (11, 7)
    let whole = Dropout(p: 0.3, seed: 9)
    let x = Tensor.ones([n, features])
    let expected = (0..<3).map { _ in
        _ = whole(x)
        return whole.mask!.values
    }
    let shares = try runReplicas(4) { group in
        let layer = Dropout(p: 0.3, seed: 9)
        let rows = group.shard(of: n)
        layer.batchShard = (rows, n)
        return (0..<3).map { _ in
            _ = layer(Tensor.ones([rows.count, features]))
            return layer.mask!.values
        }
    }
    for call in 0..<3 {
        #expect(shares.flatMap { $0[call] } == expected[call], "call \(call)")
    }
}

// MARK: - Training

/// `rows` examples of a learnable problem: images `(rows, 1, 6, 6)` (or their 36 pixels) whose
/// class is the strongest of 10 fixed random projections, from `seed`.
private func problem(rows: Int, seed: UInt64, images: Bool) -> (x: Tensor, y: Tensor) {
    var generator = RandomGenerator(seed: 1234)
    let projection = Tensor.randn([36, 10], generator: &generator)
    var data = RandomGenerator(seed: seed)
    let x = Tensor.randn([rows, 36], generator: &data)
    let scores: [Float] = x.matmul(projection).values
    var y: [Float] = []
    for row in 0..<rows {
        let classScores = Array(scores[(row * 10)..<(row * 10 + 10)])
        y.append(Float(classScores.firstIndex(of: classScores.max()!)!))
    }
    return (images ? x.reshape([rows, 1, 6, 6]) : x, Tensor(y))
}

/// What a trainer ends with: its weights and buffers, its history and its checksum.
private struct TrainedState: Sendable {
    var tensors: [[Float]]
    var history: [[Float]]
    var checksum: UInt64
    var floatSums: Int
}

/// Trains `layers` on the problem, alone (`replica` nil) or as one replica of a group.
private func train(
    layers: String, images: Bool, epochs: Int = 3, batchSize: Int = 16, flip: Bool = false,
    optimizer: OptimizerKind = .adam, replica: ThreadReplica?, shouldStop: (@Sendable (Trainer) -> Bool)? = nil
) throws -> TrainedState {
    let configuration = TrainingConfiguration(
        epochs: epochs, batchSize: batchSize, learningRate: optimizer == .adam ? 0.01 : 0.1, optimizer: optimizer,
        weightDecay: 0.01, seed: 5, layers: layers, flip: flip)
    let trainer = Trainer(
        configuration: configuration, classes: 10, train: problem(rows: 203, seed: 1, images: images),
        valid: problem(rows: 41, seed: 2, images: images))
    if let replica {
        trainer.replicas = replica
        trainer.checksReplicas = true
    }
    try trainer.fit(shouldStop: { shouldStop?(trainer) ?? false })
    let tensors = trainer.model.layers.flatMap { $0.parameters + $0.buffers.map(\.tensor) }.map(\.values)
    let history = trainer.history.map { [$0.trainLoss, $0.validLoss, $0.validAccuracy] }
    return TrainedState(
        tensors: tensors, history: history, checksum: trainer.weightChecksum(), floatSums: replica?.floatSums ?? 0)
}

/// The largest difference between two lists of tensors, relative to each tensor's largest value
/// (at least 1).
private func largestRelativeDifference(_ a: [[Float]], _ b: [[Float]]) -> Double {
    zip(a, b).map { x, y in
        let scale = max(1, x.map { abs(Double($0)) }.max() ?? 0)
        return zip(x, y).map { abs(Double($0) - Double($1)) }.max(by: <).map { $0 / scale } ?? 0
    }.max() ?? 0
}

/// Networks with every layer that needs the whole batch: batch norm over features and over
/// channels, dropout, a convolution, flips.
private let replicatedNetworks: [(layers: String, images: Bool, flip: Bool)] = [
    ("lin 24, relu, lin 10", false, false),
    ("lin 24, relu, batchnorm, dropout 0.2, lin 10", false, false),
    ("conv 4 3 pad 1 nobias, batchnorm, relu, maxpool 2, flatten, dropout 0.25, lin 10", true, true),
]

/// Two and three replicas train to the one-process weights: 203 rows in batches of 16 (the last
/// of 11 rows, shards 6/5 and 4/4/3), three epochs of Adam, and of SGD (which, unlike Adam, is
/// not blind to a gradient's scale: a wrong share `n_r / B` would show). Every replica holds the same bits
/// after every step (`checksReplicas`), and sums once per step (one fused buffer).
///
/// The bound: 2e-4 of each tensor's largest value (at least 1), and the losses to 2e-4, after
/// 39 steps whose sums differ from one process's only in order (float rounding, about 1e-7
/// relative per sum, grown by training). No bias here feeds batch norm directly: such a bias has
/// a gradient that is zero but for rounding, so Adam moves it by rounding noise (batch norm
/// subtracts it again, so the training outputs do not depend on it), and it would differ between
/// any two summation orders.
@Test(arguments: 0..<replicatedNetworks.count, [(2, OptimizerKind.adam), (3, .adam), (2, .sgd), (3, .sgd)])
func replicasTrainToTheOneProcessWeights(network: Int, run: (replicas: Int, optimizer: OptimizerKind)) throws {
    let (layers, images, flip) = replicatedNetworks[network]
    let optimizer = run.optimizer
    let alone = try train(layers: layers, images: images, flip: flip, optimizer: optimizer, replica: nil)
    let shares = try runReplicas(run.replicas) {
        try train(layers: layers, images: images, flip: flip, optimizer: optimizer, replica: $0)
    }
    let steps = 3 * 13
    for share in shares {
        #expect(share.tensors == shares[0].tensors, "replicas hold different weights")
        #expect(share.checksum == shares[0].checksum)
        #expect(share.floatSums == steps, "one fused sum of the gradients per step")
    }
    let difference = largestRelativeDifference(alone.tensors, shares[0].tensors)
    #expect(difference < 2e-4, "\(layers): weights differ by \(difference) of their scale from one process's")
    for (a, b) in zip(alone.history, shares[0].history) {
        #expect(abs(a[0] - b[0]) < 2e-4 && abs(a[1] - b[1]) < 2e-4, "losses \(a) against \(b)")
        #expect(abs(a[2] - b[2]) <= 1.0 / 41 + 1e-6, "valid accuracy \(a[2]) against \(b[2])")
    }
}

/// A stop asked by one replica stops them all at the same step, before anyone takes it: the same
/// weights everywhere, those of the one-process run stopped there.
@Test func aStopAskedByOneReplicaStopsEveryReplicaAtTheSameStep() throws {
    let layers = "lin 24, relu, batchnorm, lin 10"
    let alone = try train(layers: layers, images: false, replica: nil, shouldStop: { $0.epoch == 1 && $0.step == 5 })
    let shares = try runReplicas(2) { replica in
        try train(
            layers: layers, images: false, replica: replica,
            shouldStop: { replica.rank == 1 && $0.epoch == 1 && $0.step == 5 })
    }
    #expect(shares[0].tensors == shares[1].tensors)
    #expect(shares[0].history.count == 1 && shares[1].history.count == 1)
    #expect(largestRelativeDifference(alone.tensors, shares[0].tensors) < 2e-4)
}

/// A small fixed MLP for the problem's 36 pixels.
private func model() -> Model {
    var generator = RandomGenerator(seed: 8)
    return Model(
        layers: [
            Lin(Tensor.randn([36, 16], generator: &generator) * 0.3, Tensor.zeros([16])), ReLU(),
            Lin(Tensor.randn([16, 10], generator: &generator) * 0.3, Tensor.zeros([10])),
        ], loss: CrossEntropy())
}

/// Shared evaluation: each replica evaluates its rows and the sums are shared; the accuracy is the
/// whole set's exactly, the loss to rounding.
@Test func evaluationSharedByReplicasIsTheWholeSetsEvaluation() throws {
    let data = problem(rows: 97, seed: 3, images: false)
    let expected = evaluate(model(), x: data.x, y: data.y, batchSize: 10)
    let shares = try runReplicas(3) { group in
        let data = problem(rows: 97, seed: 3, images: false)
        let result = evaluate(model(), x: data.x, y: data.y, batchSize: 10, replicas: group)
        return [result.loss, result.accuracy]
    }
    for share in shares {
        #expect(share[1] == expected.accuracy)
        #expect(abs(share[0] - expected.loss) < 1e-5)
        #expect(share == shares[0])
    }
}

// MARK: - Agreement before the first step

/// Replicas that would train different networks, batches, settings, data or starting weights are
/// told so, all of them the same first difference, before any gradient is summed (under MPI a
/// network of another size corrupted the heap); replicas that agree are told nothing.
@Test(arguments: ["same", "networks", "batches", "settings", "data", "starting weights", "optimizer states"])
func replicasAgreeBeforeTheFirstStep(differing: String) throws {
    let answers = try runReplicas(3) { replica -> String? in
        let odd = replica.rank == 2
        let layers = differing == "networks" && odd ? "lin 20, relu, lin 10" : "lin 24, relu, lin 10"
        let seed: UInt64 = differing == "starting weights" && odd ? 6 : 5
        let configuration = TrainingConfiguration(
            epochs: 2, batchSize: 16, learningRate: 0.01, optimizer: .adam, weightDecay: 0.01, seed: seed,
            layers: layers)
        let rows = differing == "batches" && odd ? 190 : 203
        let trainer = Trainer(
            configuration: configuration, classes: 10, train: problem(rows: rows, seed: 1, images: false),
            valid: problem(rows: 41, seed: 2, images: false))
        trainer.replicas = replica
        if differing == "optimizer states" && odd {
            // A --resume file whose weights agree but whose Adam state does not (a step further).
            var state = trainer.optimizer.state
            state["step"] = Tensor(Float(2))
            try trainer.optimizer.loadState(state)
        }
        let settings = differing == "settings" && odd ? "lr 0.02" : "lr 0.01"
        let data = differing == "data" && odd ? "mean 0.3" : "mean 0.2"
        return trainer.replicaDifference(settings: [("settings", settings)], data: data)?.name
    }
    // The seed draws the starting weights; a seed that differs in the settings would say "settings"
    // first, so here the seed stands in for another --init file, and is not in the settings text.
    let expected: String? = differing == "same" ? nil : differing
    #expect(answers == [expected, expected, expected])
}
