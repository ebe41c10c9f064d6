import CKernels
import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropNetwork
@testable import backprop

/// `backprop bench`'s floors: the machine's limits (the FMA loops count every multiply-add; the
/// rates and bandwidths come out positive), each workload's FLOPs and bytes against a count of
/// its products written out here, and the report's `floor`, `ratio` and JSON keys. (No rate is
/// asserted beyond being positive: tests run on busy machines.)
@Suite("Benchmark floors")
struct BenchmarkFloorTests {
    /// The FMA kernels this processor runs (the plain C one always).
    static let kernels = MachinePeak.Kernel.allCases.filter(\.isAvailable)

    /// With `a = b = 1` from zeros, every lane of every accumulator counts the loop's trips: the
    /// kernel did `trips × accumulators × lanes` multiply-adds, as it returns.
    @Test(arguments: kernels)
    func fmaKernelDoesOneMultiplyAddPerLanePerTrip(kernel: MachinePeak.Kernel) {
        let width = kernel.accumulators * kernel.lanes
        var accumulators = [Float](repeating: 0, count: width)
        let trips = 1_000
        let multiplyAdds = accumulators.withUnsafeMutableBufferPointer { pointer in
            kernel.run(trips: trips, a: 1, b: 1, accumulators: pointer.baseAddress!)
        }
        #expect(multiplyAdds == trips * width)
        #expect(accumulators.allSatisfy { $0 == Float(trips) }, "\(kernel): \(accumulators)")
        // acc · a + b from where it was: 1000 · 2 + 3, once; no trips leave it alone.
        accumulators.withUnsafeMutableBufferPointer { pointer in
            #expect(kernel.run(trips: 1, a: 2, b: 3, accumulators: pointer.baseAddress!) == width)
            #expect(kernel.run(trips: 0, a: 2, b: 3, accumulators: pointer.baseAddress!) == 0)
        }
        #expect(accumulators.allSatisfy { $0 == 2_003 }, "\(kernel): \(accumulators)")
    }

    /// The widest kernels the processor has are the ones measured: AVX-512 and AVX2 where it
    /// has them, the plain C loop only where it has neither.
    @Test func measuredKernelsAreTheWidestAvailable() {
        let available = MachinePeak.Kernel.available
        #expect(!available.isEmpty)
        #expect(available.contains(.avx2) == Tensor.skinnyKernelIsAvailable)
        #expect(available.contains(.portable) == !(available.contains(.avx2) || available.contains(.avx512)))
    }

    /// A short measurement on every thread: a positive, finite rate, a whole number of calls of
    /// the loop on each thread, and exactly `accumulators × lanes` multiply-adds per trip.
    @Test(arguments: kernels)
    func fmaRateIsPositiveAndCountsItsTrips(kernel: MachinePeak.Kernel) {
        let rate = MachinePeak.measureFMA(kernel, seconds: 0.005, runs: 2)
        #expect(rate.gflops.isFinite && rate.gflops > 0, "\(kernel): \(rate.gflops) GFLOP/s")
        #expect(rate.trips % MachinePeak.tripsPerCall == 0)
        #expect(rate.trips >= Threads.count * MachinePeak.tripsPerCall)
        #expect(rate.multiplyAdds == rate.trips * kernel.accumulators * kernel.lanes)
        #expect(rate.gflops == 2 * Double(rate.multiplyAdds) / rate.seconds * 1e-9)
    }

    /// The read and the triad on a small buffer: positive, finite GB/s.
    @Test func bandwidthIsPositive() {
        let (read, triad) = MachinePeak.measureBandwidth(bytes: 4 << 20, passes: 2)
        #expect(read.isFinite && read > 0, "read \(read) GB/s")
        #expect(triad.isFinite && triad > 0, "triad \(triad) GB/s")
    }

    /// The memory loops compute what they claim (so they read and write what they claim): the
    /// exclusive or of every word, and `b + s · c` at every element, tails included.
    @Test func memoryLoopsComputeTheirResults() {
        for count in [0, 1, 3, 4, 5, 17, 64, 1_000] {
            let words = (0..<count).map { UInt64($0) &* 0x9E37_79B9_7F4A_7C15 }
            let expected = words.reduce(0, ^)
            #expect(words.withUnsafeBufferPointer { bp_peak_read($0.baseAddress, count) } == expected, "\(count)")
            let b = (0..<count).map { Float($0) }
            let c = (0..<count).map { Float(2 * $0 + 1) }
            var a = [Float](repeating: -1, count: count)
            a.withUnsafeMutableBufferPointer { a in bp_peak_triad(a.baseAddress, b, c, 0.5, count) }
            #expect(a == (0..<count).map { b[$0] + 0.5 * c[$0] }, "\(count)")
        }
    }

    /// The seed step's six products, written out: `2 Σ m·k·n` (11.78 GFLOP for the seed's
    /// shapes, the 11.8 G), and x read twice and x.g written once.
    @Test func seedStepCostCountsItsSixProducts() {
        let (n, m, nh) = (50_000, 784, 50)
        let products = [
            (n, m, nh),  // x • w1
            (n, nh, 1),  // r • w2
            (n, 1, nh),  // out.g • w2ᵀ (r.g)
            (nh, n, 1),  // rᵀ • out.g (w2.g)
            (n, nh, m),  // out.g • w1ᵀ (x.g)
            (m, n, nh),  // xᵀ • out.g (w1.g)
        ]
        let cost = WorkloadCost.seedStep(rows: n, inputs: m, hidden: nh)
        #expect(cost.flops == Double(2 * products.reduce(0) { $0 + $1.0 * $1.1 * $1.2 }))
        #expect(cost.flops == 11_775_000_000)
        #expect(cost.bytes == Double(3 * n * m * 4))
    }

    /// `2 Σ m·k·n` over the products of one epoch of minibatches of `batch` rows (the last one
    /// short), each layer `(in, out)` doing `inp • w`, `inpᵀ • out.g` and, when `inputGradient`,
    /// `out.g • wᵀ`, counted batch by batch.
    func epochFlops(rows: Int, batch: Int, layers: [(in: Int, out: Int, inputGradient: Bool)]) -> Double {
        var multiplyAdds = 0
        for start in stride(from: 0, to: rows, by: batch) {
            let b = min(batch, rows - start)
            for layer in layers {
                multiplyAdds += b * layer.in * layer.out  // forward: (b, in) • (in, out)
                multiplyAdds += layer.in * b * layer.out  // w.g: (in, b) • (b, out)
                if layer.inputGradient { multiplyAdds += b * layer.out * layer.in }  // inp.g: (b, out) • (out, in)
            }
        }
        return Double(2 * multiplyAdds)
    }

    /// The two MLP epochs against their products counted batch by batch (the first layer writes
    /// no `inp.g`): 7.99 and 50.4 GFLOP for 50,000 rows, the 8.0 G and 50 G.
    @Test func mlpEpochCostsCountTheirProducts() {
        for rows in [50_000, 130] {
            let minibatch = WorkloadCost.epoch(.minibatch, rows: rows)
            #expect(
                minibatch.flops
                    == epochFlops(rows: rows, batch: 64, layers: [(784, 50, false), (50, 10, true)]), "\(rows)")
            let mlp = WorkloadCost.epoch(.mlp, rows: rows)
            #expect(
                mlp.flops
                    == epochFlops(
                        rows: rows, batch: 64, layers: [(784, 256, false), (256, 128, true), (128, 10, true)]),
                "\(rows)")
            // The rows and their labels, read once.
            #expect(minibatch.bytes == Double(rows * 785 * 4) && mlp.bytes == minibatch.bytes)
        }
        #expect(WorkloadCost.epoch(.minibatch, rows: 50_000).flops == 7_990_000_000)
        #expect(WorkloadCost.epoch(.mlp, rows: 50_000).flops == 50_355_200_000)
    }

    /// The convnet's epoch: its two convolutions (as `ConvLayerBenchmark` counts them, and by hand)
    /// and its two linear layers, forward and backward; 414.7 GFLOP for 50,000 rows.
    @Test func cnnEpochCostCountsConvolutionsAndLinearLayers() {
        let rows = 50_000
        // Per image: conv 1→16 3×3 on 28×28 (no inp.g: its input is the data), conv 16→32 3×3 on
        // 14×14, then lin 32·7·7 → 256 and lin 256 → 10.
        let conv1 = 16 * (1 * 3 * 3) * (28 * 28)
        let conv2 = 32 * (16 * 3 * 3) * (14 * 14)
        let linear = epochFlops(rows: rows, batch: 128, layers: [(32 * 7 * 7, 256, true), (256, 10, true)])
        let expected = Double(2 * rows * (2 * conv1 + 3 * conv2)) + linear
        let cost = WorkloadCost.epoch(.cnn, rows: rows)
        #expect(cost.flops == expected)
        #expect(cost.flops == 414_720_000_000)
        let convolutions = ConvLayerBenchmark(recipe: .cnn, batchSize: rows).layers
        #expect(
            Double(2 * rows * (2 * conv1 + 3 * conv2))
                == convolutions.reduce(0) { $0 + $1.forwardFlops + $1.backwardFlops })
        #expect(cost.bytes == Double(rows * 785 * 4))
    }

    /// A product reads A and B and writes C once: `2 m k n` FLOPs, `4 (mk + kn + mn)` bytes.
    @Test func productCostIsItsShape() {
        for shape in MatMulBenchmark.seedShapes() {
            let cost = WorkloadCost.product(shape)
            #expect(cost.flops == shape.flops)
            #expect(cost.bytes == Double(4 * (shape.m * shape.k + shape.k * shape.n + shape.m * shape.n)))
        }
    }

    /// A machine of 100 GFLOP/s and 10 GB/s (read 10, triad 8).
    static let peak = MachinePeak(
        threads: 2,
        fma: [
            .init(kernel: .avx2, gflops: 90, multiplyAdds: 45, trips: 1, seconds: 1),
            .init(kernel: .avx512, gflops: 100, multiplyAdds: 50, trips: 1, seconds: 1),
        ],
        readGBps: 10, triadGBps: 8, bufferBytes: 1 << 28, lastLevelCacheBytes: 1 << 25)

    /// Measuring the FMA loop again keeps, for each kernel, the faster of the two rates, so that
    /// a floor set in a moment when the host slowed the loop comes down; the bandwidth is kept,
    /// and the runs add up. A workload timed at 0.15 s against the slowed loop's floor of 0.2 s
    /// (a ratio under 1) is then 1.5× its floor.
    @Test func measuringTheLoopAgainKeepsTheFasterRate() throws {
        let slowed = MachinePeak(
            threads: 2,
            fma: [
                .init(kernel: .avx512, gflops: 50, multiplyAdds: 25, trips: 1, seconds: 1),
                .init(kernel: .avx2, gflops: 40, multiplyAdds: 20, trips: 1, seconds: 1),
            ],
            fmaRuns: 3, readGBps: 10, triadGBps: 8, bufferBytes: 1 << 28, lastLevelCacheBytes: 1 << 25)
        let cost = WorkloadCost(flops: 1e10, bytes: 1e8)
        let before = WorkloadFloor(cost: cost, peak: slowed, measuredSeconds: 0.15)
        #expect(abs(before.ratio - 0.75) < 1e-12)
        let again = [
            MachinePeak.FMARate(kernel: .avx512, gflops: 100, multiplyAdds: 50, trips: 2, seconds: 1),
            MachinePeak.FMARate(kernel: .avx2, gflops: 30, multiplyAdds: 15, trips: 2, seconds: 1),
        ]
        let merged = slowed.keepingFasterFMA(again, runs: 3)
        #expect(merged.fma.map(\.kernel) == [.avx512, .avx2])
        #expect(merged.fma.map(\.gflops) == [100, 40])
        #expect(merged.fma[0].trips == 2 && merged.fma[1].trips == 1)
        #expect(merged.fmaGflops == 100 && merged.best.kernel == .avx512)
        #expect(merged.fmaRuns == 6 && merged.readGBps == 10 && merged.triadGBps == 8 && merged.threads == 2)
        let after = WorkloadFloor(cost: cost, peak: merged, measuredSeconds: 0.15)
        #expect(abs(after.ratio - 1.5) < 1e-12)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(merged)) as? [String: Any]
        #expect(json?["fma_runs"] as? Int == 6)
        #expect(json?["fma_gflops"] as? Double == 100)
    }

    /// `floor = max(FLOPs / rate, bytes / bandwidth)` with the fastest kernel and stream, and
    /// `ratio = time / floor`, the binding side named.
    @Test func floorIsTheLargerBoundAndRatioTheTimeOverIt() {
        let peak = BenchmarkFloorTests.peak
        #expect(peak.fmaGflops == 100 && peak.best.kernel == .avx512 && peak.bandwidthGBps == 10)
        let memoryBound = WorkloadFloor(
            cost: WorkloadCost(flops: 2e9, bytes: 5e8), peak: peak, measuredSeconds: 0.1)
        #expect(abs(memoryBound.arithmeticSeconds - 0.02) < 1e-15)
        #expect(abs(memoryBound.memorySeconds - 0.05) < 1e-15)
        #expect(memoryBound.seconds == memoryBound.memorySeconds && memoryBound.bound == "memory")
        #expect(abs(memoryBound.ratio - 2) < 1e-12)
        let arithmeticBound = WorkloadFloor(
            cost: WorkloadCost(flops: 1e10, bytes: 1e8), peak: peak, measuredSeconds: 0.15)
        #expect(arithmeticBound.bound == "arithmetic" && abs(arithmeticBound.seconds - 0.1) < 1e-15)
        #expect(abs(arithmeticBound.ratio - 1.5) < 1e-12)
    }

    /// The report's new keys: `peak`, `floors` for every workload measured, each with
    /// `ratio = time_ms / floor_ms` and `floor_ms` the larger bound, and `matmul_floor_ratio` for
    /// the routes timed on the full shapes; the older keys are still there.
    @Test func reportWritesFloorsNextToTheTimes() throws {
        var report = BenchmarkReport(data: "synthetic", rows: 40, runs: 1)
        let (x, y) = SeedStepBenchmark.syntheticData(rows: 40, inputs: 12)
        report.seedStep = SeedStepBenchmark(x: x, y: y, hidden: 4).run(runs: 1)
        report.minibatchEpochSeconds = 0.5
        report.mlpEpochSeconds = 1.5
        report.cnnEpochSeconds = 3
        report.matmul = MatMulBenchmark(rows: 20, checkRows: 10).run(runs: 1)
        report.peak = BenchmarkFloorTests.peak
        let object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
        for key in ["seed_step_ms", "seed_step", "minibatch_epoch_s", "mlp_epoch_s", "matmul_gflops", "machine"] {
            #expect(object[key] != nil, "missing \(key)")
        }
        let peak = try #require(object["peak"] as? [String: Any])
        #expect(peak["fma_gflops"] as? Double == 100 && peak["fma_kernel"] as? String == "avx512")
        #expect(peak["bandwidth_gbps"] as? Double == 10)
        #expect((peak["fma_by_kernel"] as? [String: Any]).map { Set($0.keys) } == ["avx2", "avx512"])
        let floors = try #require(object["floors"] as? [String: [String: Any]])
        #expect(
            Set(floors.keys) == [
                "seed_step", "minibatch_epoch", "mlp_epoch", "cnn_epoch", "matmul_forward", "matmul_input_gradient",
                "matmul_weight_gradient",
            ])
        for (name, floor) in floors {
            try BenchmarkFloorTests.expectConsistent(floor, name: name)
        }
        let stepMilliseconds = try #require(floors["seed_step"]?["time_ms"] as? Double)
        #expect(abs(stepMilliseconds - report.seedStep!.stepMilliseconds) <= 1e-12 * stepMilliseconds)
        let seedFlops: Double = 2 * (3 * 40 * 12 * 4 + 3 * 40 * 4)  // 2 (3·n·m·nh + 3·n·nh)
        #expect(floors["seed_step"]?["flops"] as? Double == seedFlops)
        #expect(floors["mlp_epoch"]?["time_ms"] as? Double == 1500)
        #expect(floors["minibatch_epoch"]?["flops"] as? Double == WorkloadCost.epoch(.minibatch, rows: 40).flops)
        let ratios = try #require(object["matmul_floor_ratio"] as? [String: [String: Double]])
        let gflops = try #require(object["matmul_gflops"] as? [String: [String: Double]])
        for (shape, routes) in gflops {
            let timedRoutes = Set(routes.keys).subtracting(["reference"])
            #expect(ratios[shape].map { Set($0.keys) } == timedRoutes, "\(shape)")
        }
        #expect(ratios["forward"]?["matmul"] == floors["matmul_forward"]?["ratio"] as? Double)
    }

    /// A report without the machine's limits writes none of the new keys.
    @Test func reportWithoutPeakHasNoFloors() throws {
        var report = BenchmarkReport(data: "synthetic", rows: 40, runs: 1)
        report.mlpEpochSeconds = 1.5
        #expect(report.floors.isEmpty)
        let object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
        #expect(object["peak"] == nil && object["floors"] == nil && object["matmul_floor_ratio"] == nil)
    }

    /// `backprop bench --json` measures the limits and writes a floor for each part it ran;
    /// the text output prints the limits and each time's floor and ratio.
    @Test func commandReportsTheFloors() throws {
        let arguments = ["bench", "--rows", "60", "--runs", "1", "--synthetic", "--only", "seed", "minibatch"]
        let json = try runBackprop(arguments + ["--json"])
        #expect(json.status == 0, "stderr: \(json.standardError)")
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        let peak = try #require(object["peak"] as? [String: Any])
        for key in ["fma_gflops", "read_gbps", "triad_gbps", "bandwidth_gbps"] {
            let value = try #require(peak[key] as? Double, "peak: missing \(key)")
            #expect(value.isFinite && value > 0, "\(key): \(value)")
        }
        #expect((peak["threads"] as? Int ?? 0) >= 1)
        // --runs 1: one run of each FMA loop before the workloads and one after.
        #expect(peak["fma_runs"] as? Int == 2)
        let floors = try #require(object["floors"] as? [String: [String: Any]])
        #expect(Set(floors.keys) == ["seed_step", "minibatch_epoch"])
        for (name, floor) in floors {
            try BenchmarkFloorTests.expectConsistent(floor, name: name)
        }
        let stepMilliseconds = try #require(object["seed_step_ms"] as? Double)
        let floorTime = try #require(floors["seed_step"]?["time_ms"] as? Double)
        #expect(abs(floorTime - stepMilliseconds) <= 1e-12 * stepMilliseconds)
        // The minibatch's breakdown counts each layer's FLOPs, by hand for 60 rows of 784-50-10:
        // layers.0 2·60·784·50 = 4,704,000 forward and as many for w.g (no inp.g: the data);
        // layers.2 2·60·50·10 = 60,000 forward, twice that backward.
        let breakdown = try #require(object["minibatch_step_breakdown"] as? [String: Any])
        let parts = try #require(breakdown["parts"] as? [[String: Any]])
        #expect(parts.map { $0["forward_flops"] as? Double } == [4_704_000, 0, 60_000, 0, 0])
        #expect(parts.map { $0["backward_flops"] as? Double } == [4_704_000, 0, 120_000, 0, 0])
        let text = try runBackprop(arguments)
        #expect(text.status == 0, "stderr: \(text.standardError)")
        let lines = text.standardOutput.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("limits (") && $0.contains("GFLOP/s") && $0.contains("GB/s") })
        for prefix in ["seed step:", "minibatch epoch"] {
            let line = try #require(lines.first { $0.hasPrefix(prefix) }, "no line \(prefix)")
            #expect(line.contains("; floor ") && line.hasSuffix("× floor"), "\(line)")
        }
        // Each product's time against its own floor; ReLU has none.
        let linLine = try #require(lines.first { $0.hasPrefix("  layers.0 Lin") })
        #expect(linLine.contains("ms (") && linLine.contains("× floor), backward "), "\(linLine)")
        let reluLine = try #require(lines.first { $0.hasPrefix("  layers.1 ReLU") })
        #expect(!reluLine.contains("floor"), "\(reluLine)")

        // The steadiness check, before and after the workloads, where the product kernel runs.
        guard Tensor.skinnyKernelIsAvailable else {
            #expect(object["steadiness"] == nil)
            return
        }
        let steadiness = try #require(object["steadiness"] as? [String: [String: Any]])
        #expect(Set(steadiness.keys) == ["before", "after"])
        for (name, check) in steadiness {
            let share = try #require(check["product_median_over_fma_best"] as? Double, "\(name)")
            #expect(share.isFinite && share > 0, "\(name): \(share)")
            #expect((check["threads"] as? [Any])?.count == peak["threads"] as? Int, "\(name)")
            #expect(check["slow_phase"] is Bool, "\(name)")
        }
        #expect(lines.contains { $0.hasPrefix("steadiness (") })
        #expect(lines.contains { $0.hasPrefix("  before: products at ") })
        #expect(lines.contains { $0.hasPrefix("  after: products at ") })
        #expect(lines.contains { $0.contains("could not run nearer its floor than") })
    }

    /// `backprop bench --layers` times one epoch of any described network, alone (no other part
    /// unless `--only` names it), with its floor and its breakdown; the FLOPs by hand for 60 rows
    /// of `conv 4 3, relu, flatten, lin 10` on 28×28 images: the convolution makes 4 × 26 × 26
    /// outputs of 1·3·3 multiply-adds each, 2·60·24,336 = 2,920,320 FLOPs forward and as many for
    /// `w.g` (no `inp.g`: the data); the classifier 2·60·2704·10 = 3,244,800 forward, twice that
    /// backward.
    @Test func commandTimesADescribedNetworkAgainstItsFloor() throws {
        let arguments = [
            "bench", "--rows", "60", "--runs", "1", "--synthetic", "--layers", "conv 4 3, relu, flatten, lin 10",
            "--batch-size", "16", "--optimizer", "momentum",
        ]
        let json = try runBackprop(arguments + ["--json"])
        #expect(json.status == 0, "stderr: \(json.standardError)")
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        #expect(object["seed_step_ms"] == nil && object["mlp_epoch_s"] == nil && object["matmul_gflops"] == nil)
        #expect(
            object["model"] as? [String: String]
                == ["layers": "conv 4 3, relu, flatten, lin 10", "optimizer": "momentum", "batch_size": "16"])
        let seconds = try #require(object["model_epoch_s"] as? Double)
        #expect(seconds > 0 && seconds.isFinite)
        let floors = try #require(object["floors"] as? [String: [String: Any]])
        #expect(Set(floors.keys) == ["model_epoch"])
        let floor = try #require(floors["model_epoch"])
        try BenchmarkFloorTests.expectConsistent(floor, name: "model_epoch")
        #expect(floor["flops"] as? Double == Double(2 * 2_920_320 + 3 * 3_244_800))
        #expect(floor["bytes"] as? Double == Double(60 * 785 * 4))  // each row's 784 pixels and label, once
        let breakdown = try #require(object["model_step_breakdown"] as? [String: Any])
        #expect(breakdown["steps"] as? Int == 4)  // 60 rows in batches of 16
        let parts = try #require(breakdown["parts"] as? [[String: Any]])
        #expect(
            parts.map { $0["name"] as? String } == [
                "layers.0 Conv2d", "layers.1 ReLU", "layers.2 Flatten", "layers.3 Lin", "loss", "optimizer",
            ])
        #expect(parts.map { $0["forward_flops"] as? Double } == [2_920_320, 0, 0, 3_244_800, 0, 0])
        #expect(parts.map { $0["backward_flops"] as? Double } == [2_920_320, 0, 0, 6_489_600, 0, 0])
        // Its one convolution timed alone at the batch size, after the check against the
        // reference loops in Double.
        let convs = try #require(object["model_conv_layers"] as? [[String: Any]])
        #expect(convs.count == 1)
        let conv = try #require(convs.first)
        #expect(conv["name"] as? String == "layers.0")
        #expect(conv["input_shape"] as? [Int] == [16, 1, 28, 28] && conv["weight_shape"] as? [Int] == [4, 1, 3, 3])
        #expect(conv["input_gradient"] as? Bool == false)
        let errors = try #require(conv["errors"] as? [String: Double])
        #expect(Set(errors.keys) == ["out", "w.g", "b.g"] && errors.values.allSatisfy { $0 < 1e-5 }, "\(errors)")
        #expect((conv["forward_gflops"] as? Double).map { $0 > 0 && $0.isFinite } == true)
        let text = try runBackprop(arguments + ["--only", "minibatch"])
        #expect(text.status == 0, "stderr: \(text.standardError)")
        let lines = text.standardOutput.split(separator: "\n")
        let line = try #require(
            lines.first { $0.hasPrefix("model epoch (conv 4 3, relu, flatten, lin 10; momentum, batch 16): ") })
        #expect(line.contains("; floor ") && line.hasSuffix("× floor"), "\(line)")
        #expect(lines.contains { $0.hasPrefix("minibatch epoch (784-50-10") })
        #expect(lines.contains { $0.hasPrefix("model epoch by layer (each call timed, 4 steps") })
        #expect(lines.contains { $0.hasPrefix("model convolutions (batch 16, checked on 2 images first):") })
        #expect(lines.contains { $0.hasPrefix("  layers.0 conv 1→4 3×3, [16, 1, 28, 28]: forward ") })
    }

    /// `bench` names the instructions the kernels use: AVX-512 where the processor has it, AVX2
    /// where `BACKPROP_NO_AVX512` is set.
    @Test func commandNamesTheKernelsInstructionsAndObeysNoAVX512() throws {
        let arguments = [
            "bench", "--rows", "60", "--runs", "1", "--synthetic", "--only", "seed", "--no-limits", "--json",
        ]
        func kernels(_ environment: [String: String]?) throws -> String? {
            let run = try runBackprop(arguments, environment: environment)
            #expect(run.status == 0, "stderr: \(run.standardError)")
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any])
            return (object["machine"] as? [String: Any])?["kernels"] as? String
        }
        let widest =
            Tensor.skinnyKernelIsAvailable
            ? (Tensor.SkinnyInstructionSet.avx512.isAvailable ? "avx512" : "avx2") : "none"
        #expect(try kernels(nil) == widest)
        var environment = ProcessInfo.processInfo.environment
        environment["BACKPROP_NO_AVX512"] = "1"
        #expect(try kernels(environment) == (Tensor.skinnyKernelIsAvailable ? "avx2" : "none"))
    }

    @Test func commandWithoutLimitsReportsNoFloors() throws {
        let arguments = [
            "bench", "--rows", "60", "--runs", "1", "--synthetic", "--only", "seed", "--no-limits", "--json",
        ]
        let json = try runBackprop(arguments)
        #expect(json.status == 0, "stderr: \(json.standardError)")
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
        #expect(object["peak"] == nil && object["floors"] == nil && object["steadiness"] == nil)
        #expect(object["seed_step_ms"] is Double)
    }

    /// One workload's floor in the JSON: every key, `floor_ms` the larger bound, `bound` naming
    /// it, `ratio = time_ms / floor_ms`.
    static func expectConsistent(
        _ floor: [String: Any], name: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        var values: [String: Double] = [:]
        for key in ["flops", "bytes", "arithmetic_ms", "memory_ms", "floor_ms", "time_ms", "ratio"] {
            values[key] = try #require(floor[key] as? Double, "\(name): missing \(key)", sourceLocation: sourceLocation)
        }
        let (arithmetic, memory) = (values["arithmetic_ms"]!, values["memory_ms"]!)
        #expect(values["floor_ms"] == max(arithmetic, memory), "\(name)", sourceLocation: sourceLocation)
        #expect(
            floor["bound"] as? String == (arithmetic >= memory ? "arithmetic" : "memory"), "\(name)",
            sourceLocation: sourceLocation)
        let ratio = values["time_ms"]! / values["floor_ms"]!
        #expect(abs(values["ratio"]! - ratio) <= 1e-12 * ratio, "\(name)", sourceLocation: sourceLocation)
        #expect(values["flops"]! > 0 && values["bytes"]! > 0, "\(name)", sourceLocation: sourceLocation)
    }
}
