import ArgumentParser
import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import Foundation

/// `backprop bench`: how fast the seed's step, training and matrix products run.
///
/// Each measurement is the median of `--runs` timed runs after a warm-up. Use a release build
/// (`swift run -c release backprop bench`); `Benchmarks/run_peers.py` runs it alternately with the
/// numpy and PyTorch peers and prints the ratios. First it measures the machine's limits (the FMA
/// rate on Backprop's threads, the memory bandwidth: ``MachinePeak``), and reports each workload's
/// time against its floor (``WorkloadFloor``).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the seed step, training epochs and matrix products (use a release build).",
        discussion: """
            Parts: seed (the full-batch step, forward and backward, with a breakdown), minibatch \
            (one epoch of 784-50-10, cross-entropy, SGD, batch 64), mlp (one epoch of \
            784-256-128-10 with Adam, batch 64), cnn (one epoch of a small convnet on the rows as \
            28×28 images, AdamW, batch 128: the network of Benchmarks/cnn_epoch_torch.py; then each \
            of its convolutions forward and backward in GFLOP/s, each checked against reference loops \
            first), matmul (GFLOP/s of each matrix-product kernel on the seed's three shapes, each \
            checked against the reference loops first). Before them, the machine's limits: the \
            rate of a loop of independent FMAs on all of Backprop's threads (AVX-512 and AVX2 where \
            the processor has them; measured again after the workloads, keeping the faster), and \
            the memory bandwidth (a read and STREAM's triad); each workload's floor is max(FLOPs / \
            FMA rate, bytes / bandwidth), printed with the ratio time / floor. The inputs \
            are the first --rows Fashion-MNIST training images, or random numbers of the same \
            shape with --synthetic, or when neither --data nor $BACKPROP_DATA is given and the data \
            set is not installed. \
            A data set with fewer than --rows training images is an error. With --layers, one \
            epoch of any network (a model description as train --layers takes it) is timed the same \
            way, against its floor and layer by layer; alone unless --only names parts too.
            """
    )

    /// The parts of the benchmark.
    enum Part: String, CaseIterable, ExpressibleByArgument {
        case seed, minibatch, mlp, cnn, matmul
    }

    // `.unconditional` on the numbers: `--runs -5` reads -5 (refused by `validate()`), not a missing value.
    @Option(parsing: .unconditional, help: "Timed runs per measurement (the median is reported).")
    var runs: Int = 7

    @Option(
        parsing: .unconditional,
        help: "Rows of the full batch and of the training set (at most 50000 from Fashion-MNIST).")
    var rows: Int = 50_000

    @Option(
        name: .long, parsing: .upToNextOption,
        help: ArgumentHelp(
            "The parts to run: \(Part.allCases.map(\.rawValue).joined(separator: ", ")) "
                + "(default: all; none with --layers)."))
    var only: [Part] = []

    @Option(
        name: .long, help: "Folder of the IDX files (default: $BACKPROP_DATA, else /usr/share/datasets/fashion-mnist).")
    var data: String?

    @Option(
        help: ArgumentHelp(
            "Time one epoch of this network: a model description as train --layers takes it, such as "
                + "'lin 512, relu, lin 10' or cnn (and the parts --only names, if any).",
            valueName: "description"))
    var layers: String?

    // `.unconditional`: `--batch-size -3` reads -3 (refused by the settings' check), not a missing value.
    @Option(parsing: .unconditional, help: "Rows per minibatch for --layers (default: train's, 128).")
    var batchSize: Int?

    @Option(
        help: ArgumentHelp(
            "The optimizer for --layers: \(OptimizerKind.allCases.map(\.rawValue).joined(separator: ", ")) "
                + "(default: train's, adam)."))
    var optimizer: String?

    @Flag(help: "Use random inputs of the seed's shape instead of Fashion-MNIST.")
    var synthetic = false

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Flag(
        name: .customLong("no-limits"),
        help: ArgumentHelp(
            "Do not measure the machine's limits (no floors): their 256 MiB memory buffer would count in "
                + "this run's peak memory."))
    var noLimits = false

    /// Runs of each measurement of the machine's limits (the best is kept): a few, fewer for a
    /// quick `--runs 1`.
    private var peakRuns: Int { min(3, runs) }

    /// Seconds of each ``Steadiness`` check, before and after the workloads: about a second
    /// (about 50 windows of each kind a thread), less for a quick `--runs 1`.
    private var steadinessSeconds: Double { 0.35 * Double(peakRuns) }

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1, got \(runs)") }
        guard runs <= 1000 else {
            throw ValidationError("--runs: expected at most 1000 (the median of 7 is steady), got \(runs)")
        }
        guard rows >= 10 else { throw ValidationError("--rows must be at least 10, got \(rows)") }
        if synthetic && data != nil { throw ValidationError("--synthetic and --data both choose the inputs; use one") }
        if layers == nil, let option = batchSize != nil ? "--batch-size" : optimizer != nil ? "--optimizer" : nil {
            throw ValidationError("\(option) sets how --layers trains; give --layers too")
        }
        _ = try modelRecipe()
    }

    /// The recipe of `--layers` with `--batch-size` and `--optimizer` (else `train`'s defaults
    /// for that network: its learning rate and weight decay too), checked as `train` checks its
    /// settings, for one epoch over `--rows` rows; `nil` without `--layers`.
    /// - Throws: `ValidationError` naming the option: a description that does not parse, does not
    ///   fit 28×28 images or does not end in 10 scores; a batch size that is not positive or that
    ///   leaves a batch norm over features one row; a model larger than memory.
    func modelRecipe() throws -> EpochBenchmark.Recipe? {
        guard let layers else { return nil }
        var configuration = TrainingConfiguration.recipe(layers: layers)
        configuration.epochs = 1
        if let batchSize { configuration.batchSize = batchSize }
        if let optimizer { configuration.optimizer = try parseChoice(optimizer, option: "--optimizer") }
        do {
            try configuration.validate(
                imageShape: FashionMNIST.imageShape, classes: FashionMNIST.classNames.count, limit: rows,
                trainingRows: rows)
        } catch {
            throw ValidationError(error.description)
        }
        // A batch of more rows than there are is the whole of them, as in `train` (the convolutions'
        // benchmark allocated --batch-size 100000 images for 10 rows: 15 GB).
        return EpochBenchmark.Recipe(
            sizes: [FashionMNIST.imageShape.reduce(1, *), FashionMNIST.classNames.count],
            optimizer: configuration.optimizer, learningRate: configuration.learningRate,
            batchSize: min(configuration.batchSize, rows), layers: layers, weightDecay: configuration.weightDecay)
    }

    func run() throws {
        let model = try modelRecipe()
        let parts = only.isEmpty ? (model == nil ? Part.allCases : []) : only
        let (x, y, source) = try inputs()
        // The epochs' models (784-… MLPs, the convnet) take 28×28 images; the seed step and the
        // products take rows of any width.
        if let part = parts.first(where: { [.minibatch, .mlp, .cnn].contains($0) }), x.shape[1] != 784 {
            throw CommandLineError(
                "--only \(part.rawValue): the \(source) rows have \(x.shape[1]) pixels; its model takes 784 (28×28 images)"
            )
        }
        if model != nil, x.shape[1] != 784 {
            throw CommandLineError(
                "--layers: the \(source) rows have \(x.shape[1]) pixels; the network takes 784 (28×28 images)")
        }
        var report = BenchmarkReport(data: source, rows: x.shape[0], runs: runs)
        if !noLimits {
            report.peak = MachinePeak.measure(runs: peakRuns)
            report.steadinessBefore = Steadiness.measure(seconds: steadinessSeconds)
        }
        for part in parts {
            switch part {
            case .seed:
                report.seedStep = SeedStepBenchmark(x: x, y: y).run(runs: runs)
            case .minibatch:
                let seconds = EpochBenchmark(x: x, y: y, recipe: .minibatch).run(runs: max(1, runs / 2)).seconds
                report.minibatchEpochSeconds = Timing.median(seconds)
                report.minibatchStepBreakdown = EpochBenchmark(x: x, y: y, recipe: .minibatch).breakdown(runs: 1)
            case .mlp:
                let seconds = EpochBenchmark(x: x, y: y, recipe: .mlp).run(runs: max(1, runs / 2)).seconds
                report.mlpEpochSeconds = Timing.median(seconds)
                report.mlpStepBreakdown = EpochBenchmark(x: x, y: y, recipe: .mlp).breakdown(runs: 1)
            case .cnn:
                let seconds = EpochBenchmark(x: x, y: y, recipe: .cnn).run(runs: max(1, runs / 4)).seconds
                report.cnnEpochSeconds = Timing.median(seconds)
                report.cnnConvLayers = ConvLayerBenchmark(recipe: .cnn).run(runs: max(1, runs / 2))
                report.cnnStepBreakdown = EpochBenchmark(x: x, y: y, recipe: .cnn).breakdown(runs: 1)
            case .matmul:
                report.matmul = MatMulBenchmark(rows: x.shape[0], checkRows: min(500, x.shape[0])).run(runs: runs)
            }
        }
        if let model {
            let seconds = EpochBenchmark(x: x, y: y, recipe: model).run(runs: max(1, runs / 2)).seconds
            report.model = model
            report.modelEpochSeconds = Timing.median(seconds)
            report.modelConvLayers = ConvLayerBenchmark(recipe: model).run(runs: max(1, runs / 2))
            report.modelStepBreakdown = EpochBenchmark(x: x, y: y, recipe: model).breakdown(runs: 1)
        }
        // The FMA loop once more, after the workloads: a floor from a moment when the host slowed
        // the loop would be too high (``MachinePeak/keepingFasterFMA(_:runs:)``).
        if let peak = report.peak {
            report.peak = peak.keepingFasterFMA(MachinePeak.measureFMARates(runs: peakRuns), runs: peakRuns)
            report.steadinessAfter = Steadiness.measure(seconds: steadinessSeconds)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            printText(report)
        }
    }

    /// Whether bench runs on random inputs: with `--synthetic`, or when the data folder is the
    /// default one (neither `--data` nor `$BACKPROP_DATA` given) and the data set is not installed
    /// there. A folder named on purpose must work: one from `$BACKPROP_DATA` that is not there
    /// used to fall back to random inputs without a word.
    static func usesRandomInputs(
        synthetic: Bool, directory: String, defaultDirectory: String = FashionMNIST.defaultDirectory
    ) -> Bool {
        synthetic || (directory == defaultDirectory && !FashionMNIST.filesExist(in: directory))
    }

    /// The first `rows` Fashion-MNIST training images and labels, or random ones with
    /// `--synthetic` or when neither `--data` nor `$BACKPROP_DATA` is given and the data set is
    /// not installed.
    ///
    /// - Throws: `CommandLineError` naming `--rows`, the folder and the rows it has when the data
    ///   set holds fewer training rows than `--rows`; `DataError` when its files are malformed.
    private func inputs() throws -> (x: Tensor, y: Tensor, source: String) {
        let directory = FashionMNIST.resolveDirectory(data)
        if Self.usesRandomInputs(synthetic: synthetic, directory: directory) {
            let (x, y) = SeedStepBenchmark.syntheticData(rows: rows)
            return (x, y, "synthetic")
        }
        // The loader keeps the last sixth of what it reads for validation: read a fifth more.
        let (limit, overflow) = rows.addingReportingOverflow(rows / 5 + 6)
        let dataset = try FashionMNIST(directory: directory, limit: overflow ? nil : limit, requiresValidation: false)
        let available = dataset.xTrain.shape[0]
        guard available >= rows else {
            throw CommandLineError(
                "--rows \(rows): the training set in \(directory) has only \(available) rows "
                    + "(the last sixth of its images validates)")
        }
        return (dataset.xTrain.rows(0..<rows), dataset.yTrain.rows(0..<rows), "fashion-mnist")
    }

    /// An epoch by layer: each part's forward and backward milliseconds per epoch (with the FMA
    /// rate `fmaGflops`, a product's time also as a multiple of its floor, `FLOPs / rate`), the
    /// batch gathering, and per step the allocations and the thread pool's loops (the counts only
    /// where they are measured: the minibatch and MLP epochs).
    private func printBreakdown(_ title: String, _ breakdown: StepBreakdown, fmaGflops: Double?) {
        let digits = breakdown.totalMilliseconds < 2000 ? 1 : 0
        print(
            "\(title) epoch by layer (each call timed, \(breakdown.steps) steps; total "
                + "\(format(breakdown.totalMilliseconds / 1000, digits: 3)) s):")
        for part in breakdown.parts {
            let name = part.name.padding(toLength: 22, withPad: " ", startingAt: 0)
            // `1.21× floor` after a product's time: its FLOPs at the FMA rate.
            let ofFloor = { (milliseconds: Double, flops: Double) -> String in
                guard let fmaGflops, fmaGflops > 0, flops > 0 else { return "" }
                return " (\(format(milliseconds / (flops / fmaGflops * 1e-6), digits: 2))× floor)"
            }
            let forward =
                "forward \(format(part.forwardMilliseconds, digits: digits)) ms"
                + ofFloor(part.forwardMilliseconds, part.forwardFlops)
            let backward =
                part.name == "optimizer"
                ? ""
                : ", backward \(format(part.backwardMilliseconds, digits: digits)) ms"
                    + ofFloor(part.backwardMilliseconds, part.backwardFlops)
            // The pool's share, where a part waited for a helper or woke one at all.
            let pool =
                part.poolWaitMicrosecondsPerStep < 0.05 && part.poolWakeUpsPerStep < 0.005
                ? ""
                : "; a step: \(format(part.poolWaitMicrosecondsPerStep, digits: 1)) µs waiting, "
                    + "\(format(part.poolWakeUpsPerStep, digits: 2)) wake-ups"
            print("  \(name) \(forward)\(backward)\(pool)")
        }
        print(
            "  " + "batches".padding(toLength: 22, withPad: " ", startingAt: 0)
                + " gathering \(format(breakdown.batchMilliseconds, digits: digits)) ms")
        print(
            "  per step: \(format(breakdown.allocationsPerStep, digits: 1)) tensors allocated "
                + "(\(format(breakdown.allocatedMegabytesPerStep, digits: 2)) MB), "
                + "\(format(breakdown.poolDispatchesPerStep, digits: 1)) loops on the thread pool, "
                + "\(format(breakdown.poolWakeUpsPerStep, digits: 1)) of them waking a helper, "
                + "\(format(breakdown.poolWaitMicrosecondsPerStep, digits: 1)) µs waiting for helpers")
    }

    private func printText(_ report: BenchmarkReport) {
        print("backprop bench: \(report.data) inputs, \(report.rows) rows, median of \(report.runs) runs")
        print(
            "machine: \(report.machine.cpu), \(report.machine.cores) cores, \(report.machine.blas); "
                + "Backprop's kernels: \(report.machine.kernels)")
        if let peak = report.peak { printLimits(peak) }
        printSteadiness(before: report.steadinessBefore, after: report.steadinessAfter)
        let floors = Dictionary(uniqueKeysWithValues: report.floors.map { ($0.name, $0.floor) })
        if let step = report.seedStep {
            print(
                "seed step: \(format(step.stepMilliseconds)) ms (forward \(format(step.forwardMilliseconds)) ms, "
                    + "backward \(format(step.backwardMilliseconds)) ms)\(floorText(floors["seed_step"]))")
            print(
                "  forward products \(format(step.forwardProductsMilliseconds)) ms, backward products "
                    + "\(format(step.backwardProductsMilliseconds)) ms, elementwise \(format(step.elementwiseMilliseconds)) ms"
            )
        }
        if let seconds = report.minibatchEpochSeconds {
            print(
                "minibatch epoch (784-50-10, SGD, batch 64): \(format(seconds, digits: 3)) s"
                    + floorText(floors["minibatch_epoch"], inSeconds: true))
        }
        if let seconds = report.mlpEpochSeconds {
            print(
                "mlp epoch (784-256-128-10, Adam, batch 64): \(format(seconds, digits: 3)) s\(floorText(floors["mlp_epoch"], inSeconds: true))"
            )
        }
        if let seconds = report.cnnEpochSeconds {
            print(
                "cnn epoch (the cnn preset: conv 16, conv 32, lin 256; AdamW, batch 128): \(format(seconds, digits: 3)) s"
                    + floorText(floors["cnn_epoch"], inSeconds: true))
        }
        if let model = report.model, let seconds = report.modelEpochSeconds {
            print(
                "model epoch (\(model.layers ?? ""); \(model.optimizer.rawValue), batch \(model.batchSize)): "
                    + "\(format(seconds, digits: 3)) s" + floorText(floors["model_epoch"], inSeconds: true))
        }
        for (title, layers) in [("cnn", report.cnnConvLayers), ("model", report.modelConvLayers)]
        where !layers.isEmpty {
            let batch = layers[0].layer.inputShape[0]
            let checked = ConvLayerBenchmark.defaultCheckBatch
            print("\(title) convolutions (batch \(batch), checked on \(checked) images first):")
            for measurement in layers { print("  " + convLine(measurement)) }
        }
        for (title, breakdown) in [
            ("minibatch", report.minibatchStepBreakdown), ("mlp", report.mlpStepBreakdown),
            ("cnn", report.cnnStepBreakdown), ("model", report.modelStepBreakdown),
        ] {
            guard let breakdown else { continue }
            printBreakdown(title, breakdown, fmaGflops: report.peak?.fmaGflops)
        }
        if !report.matmul.isEmpty {
            print("matmul GFLOP/s (reference on \(min(500, report.rows)) rows):")
            let routes = ["matmul", "skinny", "blas", "blocked", "reference"]
            let floorColumns = report.peak == nil ? [] : ["floor ms", "bound", "matmul ×"]
            print(
                "  " + "shape".padding(toLength: 40, withPad: " ", startingAt: 0)
                    + routes.map { pad($0) }.joined() + floorColumns.map { pad($0, width: 11) }.joined())
            for measurement in report.matmul {
                let shape = measurement.shape
                let label = "\(shape.expression) (\(shape.m)×\(shape.k)×\(shape.n))"
                let cells = routes.map { pad(measurement.gflops[$0].map { format($0) } ?? "-") }
                var floorCells: [String] = []
                if let floor = floors["matmul_\(shape.name)"] {
                    floorCells = [format(floor.seconds * 1000, digits: 2), floor.bound, format(floor.ratio, digits: 2)]
                }
                print(
                    "  " + label.padding(toLength: 40, withPad: " ", startingAt: 0) + cells.joined()
                        + floorCells.map { pad($0, width: 11) }.joined())
            }
        }
    }

    /// `layers.0 conv 1→16 3×3 pad 1, [128, 1, 28, 28]: forward 1.23 ms (45.6 GFLOP/s), backward …`.
    private func convLine(_ measurement: ConvLayerBenchmark.Measurement) -> String {
        let layer = measurement.layer
        let (cOut, cIn, kh, kw) = (
            layer.weightShape[0], layer.weightShape[1], layer.weightShape[2], layer.weightShape[3]
        )
        var label = "\(layer.name) conv \(cIn)→\(cOut) \(kh)×\(kw)"
        if layer.stride != 1 { label += " stride \(layer.stride)" }
        if layer.padding != 0 { label += " pad \(layer.padding)" }
        let backwardNote = layer.needsInputGradient ? "" : ", no inp.g"
        let forward = format(measurement.forwardMilliseconds, digits: 2)
        let backward = format(measurement.backwardMilliseconds, digits: 2)
        return "\(label), \(layer.inputShape): forward \(forward) ms (\(format(measurement.forwardGflops)) GFLOP/s), "
            + "backward \(backward) ms (\(format(measurement.backwardGflops)) GFLOP/s\(backwardNote)), "
            + "checked: error \(String(format: "%.1e", measurement.worstError))"
    }

    /// `limits (2 threads; FMA best of 6 runs, before and after the workloads; memory best of 9
    /// passes): FMA 181.2 GFLOP/s (avx512 181.2, avx2 178.9); memory 15.5 GB/s (read 15.5, triad
    /// 12.0; 256 MiB)` and how the floors use them.
    private func printLimits(_ peak: MachinePeak) {
        let kernels = peak.fma.map { "\($0.kernel.rawValue) \(format($0.gflops))" }.joined(separator: ", ")
        print(
            "limits (\(peak.threads) threads; FMA best of \(peak.fmaRuns) runs, before and after the workloads; "
                + "memory best of \(MachinePeak.bandwidthPassesPerRun * peakRuns) passes): FMA \(format(peak.fmaGflops)) GFLOP/s (\(kernels)); "
                + "memory \(format(peak.bandwidthGBps)) GB/s (read \(format(peak.readGBps)), triad "
                + "\(format(peak.triadGBps)); \(peak.bufferBytes >> 20) MiB)")
        print("floor = max(FLOPs / FMA rate, bytes / bandwidth); ratio = time / floor")
    }

    /// `steadiness (…)`, then for each check `before: products at 0.86, 0.45 of the FMA loop's best
    /// in the median window (0.88, 0.81 at best), …` thread by thread, then what the slowest
    /// thread says about the floor ratios; nothing when neither check was measured.
    private func printSteadiness(before: Steadiness?, after: Steadiness?) {
        let checks = [("before", before), ("after", after)].compactMap { name, check in check.map { (name, $0) } }
        guard let first = checks.first?.1 else { return }
        print(
            "steadiness (each thread alternates \(format(Steadiness.windowSeconds * 1000, digits: 0)) ms of the FMA loop "
                + "and of (\(Steadiness.rows), \(Steadiness.depth)) • (\(Steadiness.depth), \(Steadiness.columns)) in its "
                + "caches, \(format(first.seconds, digits: 2)) s before and after the workloads; thread by thread):")
        let list = { (values: [Double]) in values.map { format($0, digits: 2) }.joined(separator: ", ") }
        for (name, check) in checks {
            print(
                "  \(name): products at \(list(check.threads.map(\.productMedianShareOfFMA))) of the FMA loop's best "
                    + "in the median window (\(list(check.threads.map(\.productBestShareOfFMA))) at best); "
                    + "the FMA loop's median at \(list(check.threads.map { $0.fmaMedian / $0.fmaBest })) of its best")
        }
        for (name, check) in checks where check.isSlowPhase {
            print(
                "  a slow phase \(name) the workloads: a thread's products ran at "
                    + "\(format(check.productSteadiness, digits: 2)) of their own best in the median window "
                    + "(other tenants share the caches)")
        }
        let share = checks.map(\.1.productMedianShareOfFMA).min()!
        print(
            "  work made of products could not run nearer its floor than \(format(1 / share, digits: 2))× "
                + "in the slower of these checks")
    }

    /// `; floor 65.3 ms (arithmetic 65.3 ms: 11.78 GFLOP; memory 30.4 ms: 470 MB), 1.79× floor`
    /// (the times in seconds, to 3 digits, when `inSeconds`), or nothing without a floor.
    private func floorText(_ floor: WorkloadFloor?, inSeconds: Bool = false) -> String {
        guard let floor else { return "" }
        let time = { (seconds: Double) in
            inSeconds ? "\(format(seconds, digits: 3)) s" : "\(format(seconds * 1000)) ms"
        }
        let gigaflops = format(floor.cost.flops * 1e-9, digits: 2)
        let megabytes = format(floor.cost.bytes * 1e-6, digits: 0)
        return "; floor \(time(floor.seconds)) (arithmetic \(time(floor.arithmeticSeconds)): \(gigaflops) GFLOP; "
            + "memory \(time(floor.memorySeconds)): \(megabytes) MB), \(format(floor.ratio, digits: 2))× floor"
    }

    private func format(_ value: Double, digits: Int = 1) -> String {
        String(format: "%.\(digits)f", value)
    }

    private func pad(_ text: String, width: Int = 10) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
