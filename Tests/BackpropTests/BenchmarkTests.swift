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

    /// The breakdown of an epoch (issue 16): every layer's forward and backward, the loss, the
    /// optimizer, the batch gathering, and per step the tensors allocated: at least the output of
    /// each of the 3 layers, the loss and `w.g`, `b.g` of each `Lin` and `inp.g` of the layers after
    /// the first, 3 + 1 + 4 + 2 = 10 storages, every one at least 4 bytes.
    @Test func epochBreakdownTimesEveryPartAndCountsTheAllocations() {
        var generator = RandomGenerator(seed: 5)
        let x = Tensor.randn([130, 20], generator: &generator)
        let y = Tensor((0..<130).map { _ in Float(generator.nextIndex(below: 3)) })
        let recipe = EpochBenchmark.Recipe(sizes: [20, 8, 3], optimizer: .sgd, learningRate: 0.1, batchSize: 64)
        let breakdown = EpochBenchmark(x: x, y: y, recipe: recipe).breakdown(runs: 1)
        #expect(breakdown.parts.map(\.name) == ["layers.0 Lin", "layers.1 ReLU", "layers.2 Lin", "loss", "optimizer"])
        #expect(breakdown.steps == 3)
        #expect(breakdown.allocationsPerStep >= 10, "\(breakdown.allocationsPerStep) allocations per step")
        #expect(breakdown.allocatedMegabytesPerStep * 1e6 >= 40)
        #expect(breakdown.poolDispatchesPerStep >= breakdown.poolWakeUpsPerStep)
        #expect(breakdown.poolWaitMicrosecondsPerStep >= 0)
        for part in breakdown.parts {
            #expect(part.forwardMilliseconds >= 0 && part.backwardMilliseconds >= 0)
            #expect(part.poolWaitMicrosecondsPerStep >= 0 && part.poolWakeUpsPerStep >= 0)
        }
        // One run: the parts' pool counts are shares of the step's (the batch gathering may add).
        let partsWait = breakdown.parts.map(\.poolWaitMicrosecondsPerStep).reduce(0, +)
        let partsWakeUps = breakdown.parts.map(\.poolWakeUpsPerStep).reduce(0, +)
        #expect(partsWait <= breakdown.poolWaitMicrosecondsPerStep + 1e-9)
        #expect(partsWakeUps <= breakdown.poolWakeUpsPerStep + 1e-9)
        #expect(breakdown.totalMilliseconds >= breakdown.batchMilliseconds)
        // The products' FLOPs, counted by hand for 130 rows: layers.0 (20 → 8, the first layer:
        // no inp.g) 2·130·20·8 = 41,600 forward and the same for w.g; layers.2 (8 → 3) 2·130·8·3 =
        // 6,240 forward and twice that backward (w.g and inp.g); none for ReLU, the loss or SGD.
        #expect(breakdown.parts.map(\.forwardFlops) == [41_600, 0, 6_240, 0, 0])
        #expect(breakdown.parts.map(\.backwardFlops) == [41_600, 0, 12_480, 0, 0])
    }

    /// A flatten before the first Lin: the Lin skips inp.g all the same, and the breakdown runs
    /// the backward passes down to it only (it ran the flatten's, which stopped on its unset out.g).
    @Test func epochBreakdownStopsAtTheFirstLayerThatLearns() {
        var generator = RandomGenerator(seed: 5)
        let x = Tensor.randn([130, 784], generator: &generator)  // a recipe of layers takes 28×28 images
        let y = Tensor((0..<130).map { _ in Float(generator.nextIndex(below: 3)) })
        let recipe = EpochBenchmark.Recipe(
            sizes: [784, 3], optimizer: .sgd, learningRate: 0.1, batchSize: 64, layers: "flatten, lin 8, relu, lin 3")
        let breakdown = EpochBenchmark(x: x, y: y, recipe: recipe).breakdown(runs: 1)
        #expect(
            breakdown.parts.map(\.name) == [
                "layers.0 Flatten", "layers.1 Lin", "layers.2 ReLU", "layers.3 Lin", "loss", "optimizer",
            ])
        #expect(breakdown.parts[0].backwardMilliseconds == 0)
        // layers.1 (784 → 8, no inp.g): 2·130·784·8 = 1,630,720 forward and the same for w.g.
        #expect(breakdown.parts.map(\.forwardFlops) == [0, 1_630_720, 0, 6_240, 0, 0])
        #expect(breakdown.parts.map(\.backwardFlops) == [0, 1_630_720, 0, 12_480, 0, 0])
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

    /// Both convolutions of the convnet recipe are found, checked against the reference loops and
    /// timed (issue 13).
    @Test func convLayersAgreeWithTheReference() {
        let benchmark = ConvLayerBenchmark(recipe: .cnn, batchSize: 4)
        #expect(benchmark.layers.map(\.name) == ["layers.0", "layers.4"])
        #expect(benchmark.layers.map(\.inputShape) == [[4, 1, 28, 28], [4, 16, 14, 14]])
        #expect(benchmark.layers.map(\.weightShape) == [[16, 1, 3, 3], [32, 16, 3, 3]])
        #expect(benchmark.layers.map(\.needsInputGradient) == [false, true])
        let measurements = benchmark.run(runs: 1)
        #expect(measurements.count == 2)
        for measurement in measurements {
            let name = measurement.layer.name
            for value in [measurement.forwardGflops, measurement.backwardGflops] {
                #expect(value.isFinite && value > 0, "\(name): \(value) GFLOP/s")
            }
            let expected: Set =
                measurement.layer.needsInputGradient ? ["out", "w.g", "b.g", "inp.g"] : ["out", "w.g", "b.g"]
            #expect(Set(measurement.errors.keys) == expected, "\(name)")
            for (tensor, error) in measurement.errors {
                #expect(error < 1e-5, "\(name) \(tensor): error \(error)")
            }
        }
        // The first layer's backward is w.g alone: as many operations as its forward.
        #expect(benchmark.layers[0].backwardFlops == benchmark.layers[0].forwardFlops)
        #expect(benchmark.layers[1].backwardFlops == 2 * benchmark.layers[1].forwardFlops)
        // 2 n cOut (cIn kh kw) (oh ow) = 2 · 4 · 16 · (1 · 3 · 3) · (28 · 28)
        #expect(benchmark.layers[0].forwardFlops == 903_168)
    }

    /// The reference loops against sums done by hand: a 3×3 image, a 2×2 kernel, bias 0.5 and
    /// `out.g = 1`, without padding at stride 1, then with padding 1 at stride 2.
    @Test func convReferenceMatchesHandComputedSums() {
        let x = Tensor(shape: [1, 1, 3, 3], values: [1, 2, 3, 4, 5, 6, 7, 8, 9])
        let w = Tensor(shape: [1, 1, 2, 2], values: [1, 2, 3, 4])
        let b = Tensor([0.5])
        // out[oy, ox] = 1·x[oy, ox] + 2·x[oy, ox+1] + 3·x[oy+1, ox] + 4·x[oy+1, ox+1] + 0.5
        let plain = ConvLayerBenchmark.referenceForward(x, weights: w, bias: b, stride: 1, padding: 0)
        #expect(plain.shape == [1, 1, 2, 2])
        #expect(plain.values == [37.5, 47.5, 67.5, 77.5])
        let ones = Tensor(shape: [1, 1, 2, 2], values: [1, 1, 1, 1])
        let gradients = ConvLayerBenchmark.referenceBackward(ones, input: x, weights: w, stride: 1, padding: 0)
        // w.g[ky, kx]: the sum of the 2×2 block of x at (ky, kx); inp.g: the kernels covering each pixel.
        #expect(gradients.w == [12, 16, 24, 28])
        #expect(gradients.b == [4])
        #expect(gradients.inp == [1, 3, 2, 4, 10, 6, 3, 7, 4])
        // Padded by 1, stride 2: windows at rows and columns -1…0 and 1…2.
        let strided = ConvLayerBenchmark.referenceForward(x, weights: w, bias: nil, stride: 2, padding: 1)
        #expect(strided.shape == [1, 1, 2, 2])
        // 4·1; 3·2 + 4·3; 2·4 + 4·7; 1·5 + 2·6 + 3·8 + 4·9
        #expect(strided.values == [4, 18, 36, 77])
        let stridedGradients = ConvLayerBenchmark.referenceBackward(ones, input: x, weights: w, stride: 2, padding: 1)
        // x[1, 1]; x[1, 0] + x[1, 2]; x[0, 1] + x[2, 1]; x[0, 0] + x[0, 2] + x[2, 0] + x[2, 2]
        #expect(stridedGradients.w == [5, 10, 10, 20])
        // Each pixel is in exactly one window, under the kernel element w[ky, kx] it meets there.
        #expect(stridedGradients.inp == [4, 3, 4, 2, 1, 2, 4, 3, 4])
    }

    /// The check catches a wrong result: one perturbed element of the fast output is an error
    /// well above the tests' limit, and a strided convolution agrees with the reference.
    @Test func convCheckCatchesAWrongOutput() {
        let layer = ConvLayerBenchmark.Layer(
            name: "layers.0", entry: "conv 4 3 stride 2 pad 1", inputShape: [2, 3, 7, 7], weightShape: [4, 3, 3, 3],
            stride: 2, padding: 1, bias: true, needsInputGradient: true)
        let (conv, x, g) = ConvLayerBenchmark.operands(layer, seed: 9)
        let errors = ConvLayerBenchmark.check(conv, input: x, outputGradient: g)
        #expect(errors.count == 4 && errors.values.allSatisfy { $0 < 1e-5 }, "\(errors)")
        let reference = ConvLayerBenchmark.referenceForward(x, weights: conv.w, bias: conv.b, stride: 2, padding: 1)
        #expect(reference.shape == [2, 4, 4, 4])
        var values = conv(x).values
        values[17] += 0.01 * Float(reference.values.map(abs).max()!)
        let wrong = Tensor(shape: reference.shape, values: values)
        #expect(ConvLayerBenchmark.relativeError(wrong, reference.values) > 1e-3)
        values[17] = .nan
        #expect(
            !(ConvLayerBenchmark.relativeError(Tensor(shape: reference.shape, values: values), reference.values) < 1e-5)
        )
    }

    /// The JSON report has the keys `Benchmarks/run_peers.py` reads.
    @Test func reportHasTheDocumentedKeys() throws {
        var report = BenchmarkReport(data: "synthetic", rows: 40, runs: 1)
        let (x, y) = SeedStepBenchmark.syntheticData(rows: 40, inputs: 12)
        report.seedStep = SeedStepBenchmark(x: x, y: y, hidden: 4).run(runs: 1)
        report.minibatchEpochSeconds = 0.5
        report.mlpEpochSeconds = 1.5
        report.matmul = MatMulBenchmark(rows: 20, checkRows: 10).run(runs: 1)
        report.cnnConvLayers = ConvLayerBenchmark(recipe: .cnn, batchSize: 2).run(runs: 1)
        let object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
        for key in ["seed_step_ms", "seed_step", "minibatch_epoch_s", "mlp_epoch_s", "matmul_gflops", "machine"] {
            #expect(object[key] != nil, "missing \(key)")
        }
        let gflops = try #require(object["matmul_gflops"] as? [String: [String: Double]])
        #expect(Set(gflops.keys) == ["forward", "input_gradient", "weight_gradient"])
        let layers = try #require(object["cnn_conv_layers"] as? [[String: Any]])
        #expect(layers.map { $0["name"] as? String } == ["layers.0", "layers.4"])
        for key in ["input_shape", "weight_shape", "forward_gflops", "backward_gflops", "forward_ms", "errors"] {
            #expect(layers[0][key] != nil, "cnn_conv_layers: missing \(key)")
        }
    }

    /// `backprop bench --json` on a few synthetic rows: one JSON object with every part.
    @Test func commandPrintsOneJSONObject() throws {
        let result = try runBackprop(["bench", "--rows", "60", "--runs", "1", "--synthetic", "--json"])
        #expect(result.status == 0, "stderr: \(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n")
        #expect(lines.count == 1)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any])
        for key in [
            "seed_step_ms", "minibatch_epoch_s", "mlp_epoch_s", "matmul_gflops", "minibatch_step_breakdown",
            "mlp_step_breakdown",
        ] {
            #expect(object[key] != nil, "missing \(key)")
        }
        #expect(object["data"] as? String == "synthetic")
        let breakdown = try #require(object["mlp_step_breakdown"] as? [String: Any])
        for key in ["parts", "batches_ms", "steps", "allocations_per_step", "pool_dispatches_per_step"] {
            #expect(breakdown[key] != nil, "mlp_step_breakdown: missing \(key)")
        }
        let parts = try #require(breakdown["parts"] as? [[String: Any]])
        #expect(parts.count == 7)  // 5 layers, the loss, the optimizer
        for part in parts {
            for key in ["name", "forward_ms", "backward_ms", "pool_wait_us_per_step", "pool_wakeups_per_step"] {
                #expect(part[key] != nil, "mlp_step_breakdown part: missing \(key)")
            }
        }
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

    /// `--batch-size` past `--rows` is the whole of them, as in `train`: the convolutions' benchmark
    /// took the batch as given (--batch-size 100000 for 10 rows: 15 GB, then killed).
    @Test func aBatchLargerThanTheRowsIsTheRows() throws {
        let result = try runBackprop([
            "bench", "--synthetic", "--no-limits", "--rows", "10", "--runs", "1", "--layers",
            "conv 2 3, flatten, lin 10",
            "--batch-size", "100000000", "--json",
        ])
        #expect(result.status == 0 && !result.crashed, "stderr: \(result.standardError)")
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any])
        let layers = try #require(object["model_conv_layers"] as? [[String: Any]], "\(object.keys.sorted())")
        #expect((layers.first?["input_shape"] as? [Int])?.first == 10, "\(layers)")
    }

    /// A network for `--layers` that `train` would refuse, or its settings without it, stop
    /// `bench` before it loads anything, with one line that names the option at fault.
    @Test(arguments: [
        (["--layers", "lin 5"], "--layers: the last layer gives [5] per example, expected [10]"),
        (["--layers", "lin 10, frob"], "--layers: entry 2 \"frob\""),
        (["--layers", "conv 8 30, lin 10"], "--layers"),
        (["--layers", "lin 10", "--batch-size", "0"], "--batch-size: expected a positive number, found 0"),
        (["--layers", "lin 10", "--optimizer", "adamw"], "--optimizer: expected one of sgd, momentum, adam"),
        (["--batch-size", "8"], "--batch-size sets how --layers trains; give --layers too"),
        (["--optimizer", "sgd"], "--optimizer sets how --layers trains"),
        (
            ["--layers", "lin 64, batchnorm, relu, lin 10", "--rows", "10", "--batch-size", "3"],
            "--batch-size: the last batch of each epoch (10 training rows)"
        ),
    ])
    func commandRejectsABadNetwork(arguments: [String], message: String) throws {
        let result = try runBackprop(["bench", "--synthetic", "--no-limits"] + arguments)
        #expect(result.status != 0 && !result.crashed)
        #expect(result.standardOutput.isEmpty)
        let lines = result.standardError.split(separator: "\n")
        #expect(lines.count == 1 && result.standardError.contains(message), "stderr: \(result.standardError)")
    }
}
