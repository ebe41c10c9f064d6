import Backprop
import Foundation

/// Checks `Swish`'s hand-written backward with the library's gradient check, in a small model
/// `Lin(784 → 32), Swish(32), Lin(32 → 10)` with cross-entropy, on 32 training images.
///
/// `gradientCheck` computes every gradient three ways on the same tensors: the layers' `.g`
/// (`model.backward()`), autograd's `.grad` (`loss.backward()` through the recorded forward), and
/// finite differences of the loss; `.g` must be near both.
func checkCustomLayer(_ data: FashionMNIST, _ checks: inout Checks) {
    var generator = RandomGenerator(seed: 1)
    let model = swishModel(hidden: 32, generator: &generator)
    let x = data.xTrain.rows(0..<32).contiguous()  // (32, 784)
    let y = data.yTrain.rows(0..<32).contiguous()  // (32)
    let report = gradientCheck(model, x: x, y: y)
    for row in report.rows {
        print(
            "\(row.name) \(row.shape): .g against .grad \(String(format: "%.1e", row.maxManualAutogradDifference)), "
                + "\(row.checkedElements) elements against finite differences: \(row.passed ? "pass" : "FAIL")")
    }
    checks.expect(
        report.passed, "gradientCheck passes Swish's backward",
        detail: report.rows.flatMap(\.problems).joined(separator: "; "))
}

/// `Lin(784 → hidden), Swish(hidden), Lin(hidden → 10)` with cross-entropy, its weights drawn
/// from `generator` (variance `1 / fan-in`).
func swishModel(hidden: Int, generator: inout RandomGenerator) -> Model {
    let w1 = Tensor.randn([784, hidden], generator: &generator) / Float(784).squareRoot()  // (784, nh)
    let w2 = Tensor.randn([hidden, 10], generator: &generator) / Float(hidden).squareRoot()  // (nh, 10)
    return Model(
        layers: [Lin(w1, Tensor.zeros([hidden])), Swish(features: hidden), Lin(w2, Tensor.zeros([10]))],
        loss: CrossEntropy())
}

/// Trains `Lin(784 → 128), Swish(128), Lin(128 → 10)` with the library's `Trainer`, saves it,
/// loads it (the checkpoint names `Swish` by its kind, so the type is registered first) and checks
/// that the loaded model holds the trained `β` and predicts exactly as the trained one.
func trainSaveLoadCustomLayer(_ data: FashionMNIST, _ checks: inout Checks) throws {
    var generator = RandomGenerator(seed: 2)
    let model = swishModel(hidden: 128, generator: &generator)
    // The optimizer holds the learning rate (the schedule's peak); the trainer schedules it.
    let optimizer = Adam(model.parameters, learningRate: 3e-3, weightDecay: 0.1)
    let trainer = Trainer(
        model: model, optimizer: optimizer, schedule: .oneCycle, epochs: 2, batchSize: 128, seed: 2,
        train: (data.xTrain, data.yTrain), valid: (data.xValid, data.yValid))
    try trainer.fit(onEpoch: printEpoch)

    let path = temporaryPath("swish")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try Checkpoint.save(model, to: path, normalization: (data.trainMean, data.trainStd))
    let layers = try Safetensors.read(path: path).metadata["layers"] ?? "?"
    print("saved as \"\(layers)\"")

    ModelDescription.register(Swish.self)  // once, before loading a checkpoint that names it
    let loaded = try Checkpoint.load(from: path).model

    let trainedBeta = (model.layers[1] as! Swish).beta
    let loadedBeta = (loaded.layers[1] as? Swish)?.beta
    checks.expect(loadedBeta?.values == trainedBeta.values, "the loaded Swish holds the trained β")
    checks.expect(trainedBeta.values != Array(repeating: 1, count: 128), "training changed β")
    let logits = GradMode.withNoGrad { loaded.predict(data.xTest) }  // (nTest, 10)
    let trainedLogits = GradMode.withNoGrad { model.predict(data.xTest) }
    checks.expect(logits.values == trainedLogits.values, "the loaded Swish model predicts exactly as the trained one")
    let testAccuracy = accuracy(logits, data.yTest)
    checks.expect(testAccuracy > 0.75, "the Swish model learned (test accuracy \(format(testAccuracy)) > 0.75)")
}
