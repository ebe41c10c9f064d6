import Backprop
import Foundation

/// Trains a 784-128-64-10 MLP with the library's `Trainer`, saves it, loads it back as a program
/// that only predicts would, and checks the loaded model's predictions and accuracy; then writes
/// it as ONNX and reads it back.
func trainSaveLoadPredict(_ data: FashionMNIST, _ checks: inout Checks) throws {
    // The recipe's defaults (Adam, one-cycle schedule, batches of 128), for three epochs.
    let configuration = TrainingConfiguration(hidden: [128, 64], epochs: 3)
    let trainer = Trainer(
        configuration: configuration, classes: 10, train: (data.xTrain, data.yTrain),
        valid: (data.xValid, data.yValid))
    try trainer.fit(onEpoch: printEpoch)

    // Save: the weights, the architecture and the inputs' normalisation, in one safetensors file.
    let path = temporaryPath("mlp")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try Checkpoint.save(trainer.model, to: path, normalization: (data.trainMean, data.trainStd))

    // Load, as a program that only predicts would: the model, and the normalisation its inputs need.
    let saved = try Checkpoint.load(from: path)
    let test = try FashionMNIST(
        directory: data.directory, limit: UsingBackprop.rows, normalization: saved.normalization)
    let logits = GradMode.withNoGrad { saved.model.predict(test.xTest) }  // (nTest, 10)
    let predicted = logits.argmax(1)
    for i in 0..<3 {
        print(
            "test image \(i): predicted \(FashionMNIST.classNames[predicted[i]]), "
                + "is \(FashionMNIST.classNames[test.testLabels[i]])")
    }
    let testAccuracy = accuracy(logits, test.yTest)
    print("test accuracy of the loaded model: \(format(testAccuracy)) on \(test.testLabels.count) images")

    let trainedLogits = GradMode.withNoGrad { trainer.model.predict(data.xTest) }
    checks.expect(logits.values == trainedLogits.values, "the loaded MLP predicts exactly as the trained one")
    checks.expect(testAccuracy > 0.75, "the MLP learned (test accuracy \(format(testAccuracy)) > 0.75)")

    // Out to ONNX (what ONNX Runtime or another framework reads) and back in: the same model.
    let onnxPath = temporaryPath("mlp") + ".onnx"
    defer { try? FileManager.default.removeItem(atPath: onnxPath) }
    try ONNXExport.write(
        trainer.model, to: onnxPath, inputShape: [784], normalization: (data.trainMean, data.trainStd))
    let imported = try ONNXImport.read(path: onnxPath)
    print(
        "read back from ONNX: \(imported.description), normalisation \(imported.normalization.map { "\($0)" } ?? "none")"
    )
    let importedLogits = GradMode.withNoGrad { imported.model.predict(test.xTest) }
    checks.expect(
        importedLogits.values == logits.values && imported.normalization?.mean == data.trainMean,
        "the model written to ONNX and read back predicts exactly as the saved one")
}

/// Prints one line per epoch: its losses, validation accuracy and time.
func printEpoch(_ record: EpochRecord) {
    print(
        "epoch \(record.epoch): train loss \(format(record.trainLoss)), valid accuracy "
            + "\(format(record.validAccuracy)), \(format(record.seconds)) s")
}

/// A path in the temporary folder for a checkpoint named `name`, unique to this process.
func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory
        .appendingPathComponent("using-backprop-\(ProcessInfo.processInfo.processIdentifier)-\(name).safetensors")
        .path
}

/// `0.8412`: four decimals.
func format(_ value: some BinaryFloatingPoint) -> String {
    String(format: "%.4f", Double(value))
}
