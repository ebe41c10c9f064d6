import Testing

@testable import backprop

/// `backprop evaluate` chooses how many images to run at once from the memory the model's layer
/// outputs take: 8 bytes per output float per image (each layer's output and about as much again),
/// within a quarter of the machine's memory.
@Test func evaluateFitsItsBatchIntoAQuarterOfTheMemory() {
    let gib: UInt64 = 1 << 30
    // The MLP 784-256-128-10 (ReLUs between: 784 floats of outputs an image) keeps its 1,000 rows.
    #expect(EvaluateCommand.evaluationBatch(defaultBatch: 1000, floatsPerImage: 784, memory: 16 * gib) == 1000)
    // 300,000 ReLUs of 784 values: 1.75 GiB an image; a quarter of 24 GiB holds 3.
    let deep = 300_000 * 785
    #expect(EvaluateCommand.evaluationBatch(defaultBatch: 1000, floatsPerImage: deep, memory: 24 * gib) == 3)
    #expect(EvaluateCommand.evaluationBatch(defaultBatch: 128, floatsPerImage: deep, memory: 8 * gib) == 1)
    // One image's outputs past the quarter, or past what an Int counts: none fits.
    #expect(EvaluateCommand.evaluationBatch(defaultBatch: 1000, floatsPerImage: deep, memory: 6 * gib) == nil)
    #expect(EvaluateCommand.evaluationBatch(defaultBatch: 1000, floatsPerImage: nil, memory: 64 * gib) == nil)
    #expect(EvaluateCommand.evaluationBatch(defaultBatch: 1000, floatsPerImage: Int.max / 2, memory: .max) == nil)
}
