import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining
@testable import backprop

/// The benchmark code runs on tiny sizes and reports what it promises. (No timing is asserted:
/// tests run on busy machines.)
@Suite("Benchmarks")
struct BenchmarkTests {
    @Test func seedStepReportsEveryPart() {
        let (x, y) = SeedStepBenchmark.syntheticData(rows: 60, inputs: 20)
        let result = SeedStepBenchmark(x: x, y: y, hidden: 5).run(runs: 2)
        for value in [
            result.stepMilliseconds, result.forwardMilliseconds, result.backwardMilliseconds,
            result.forwardProductsMilliseconds, result.backwardProductsMilliseconds, result.elementwiseMilliseconds,
        ] {
            #expect(value.isFinite && value >= 0)
        }
        #expect(y.values.allSatisfy { $0 >= 0 && $0 < 10 && $0 == $0.rounded() })
    }

    /// Every route is checked against the reference loops before it is timed.
    @Test func matmulRoutesAgreeWithTheReference() {
        let measurements = MatMulBenchmark(rows: 40, checkRows: 30).run(runs: 1)
        #expect(measurements.map(\.shape.name) == ["forward", "input_gradient", "weight_gradient"])
        for measurement in measurements {
            #expect(measurement.gflops["matmul"] != nil && measurement.gflops["blocked"] != nil)
            #expect(measurement.gflops["reference"] != nil)
            #expect(!measurement.errors.isEmpty)
            for (route, error) in measurement.errors {
                #expect(error < 1e-5, "\(measurement.shape.name) \(route): error \(error)")
            }
        }
    }

    @Test func epochTrainsOnTinyData() {
        var generator = RandomGenerator(seed: 5)
        let x = Tensor.randn([130, 20], generator: &generator)
        let y = Tensor((0..<130).map { _ in Float(generator.nextIndex(below: 3)) })
        let recipe = EpochBenchmark.Recipe(sizes: [20, 8, 3], optimizer: .sgd, learningRate: 0.1, batchSize: 64)
        let (seconds, loss) = EpochBenchmark(x: x, y: y, recipe: recipe).run(runs: 2)
        #expect(seconds.count == 2)
        #expect(loss.isFinite && loss > 0)
    }

    /// The convnet recipe parses, fits 28×28 rows and trains (its peer is `cnn_epoch_torch.py`).
    @Test func cnnEpochTrainsOnTinyData() {
        var generator = RandomGenerator(seed: 6)
        let x = Tensor.randn([150, 784], generator: &generator)
        let y = Tensor((0..<150).map { _ in Float(generator.nextIndex(below: 10)) })
        let (seconds, loss) = EpochBenchmark(x: x, y: y, recipe: .cnn).run(runs: 1)
        #expect(seconds.count == 1)
        #expect(loss.isFinite && loss > 0)
    }

    /// The JSON report has the keys `Benchmarks/run_peers.py` reads.
    @Test func reportHasTheDocumentedKeys() throws {
        var report = BenchmarkReport(data: "synthetic", rows: 40, runs: 1)
        let (x, y) = SeedStepBenchmark.syntheticData(rows: 40, inputs: 12)
        report.seedStep = SeedStepBenchmark(x: x, y: y, hidden: 4).run(runs: 1)
        report.minibatchEpochSeconds = 0.5
        report.mlpEpochSeconds = 1.5
        report.matmul = MatMulBenchmark(rows: 20, checkRows: 10).run(runs: 1)
        let object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
        for key in ["seed_step_ms", "seed_step", "minibatch_epoch_s", "mlp_epoch_s", "matmul_gflops", "machine"] {
            #expect(object[key] != nil, "missing \(key)")
        }
        let gflops = try #require(object["matmul_gflops"] as? [String: [String: Double]])
        #expect(Set(gflops.keys) == ["forward", "input_gradient", "weight_gradient"])
    }

    /// `backprop bench --json` on a few synthetic rows: one JSON object with every part.
    @Test func commandPrintsOneJSONObject() throws {
        let result = try runBackprop(["bench", "--rows", "60", "--runs", "1", "--synthetic", "--json"])
        #expect(result.status == 0, "stderr: \(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n")
        #expect(lines.count == 1)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any])
        for key in ["seed_step_ms", "minibatch_epoch_s", "mlp_epoch_s", "matmul_gflops"] {
            #expect(object[key] != nil, "missing \(key)")
        }
        #expect(object["data"] as? String == "synthetic")
    }

    /// Bad options stop with one line that names the option.
    @Test(arguments: [
        ["--runs", "0"], ["--rows", "3"], ["--only", "everything"], ["--synthetic", "--data", "/tmp"],
    ])
    func commandRejectsBadOptions(arguments: [String]) throws {
        let result = try runBackprop(["bench"] + arguments)
        #expect(result.status != 0 && !result.crashed)
        let lines = result.standardError.split(separator: "\n")
        #expect(lines.count == 1, "stderr: \(result.standardError)")
        #expect(result.standardError.contains(arguments[0].hasPrefix("--s") ? "--synthetic" : arguments[0]))
    }
}
