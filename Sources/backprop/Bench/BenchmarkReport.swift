import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining

/// Everything `backprop bench` measured, in the shape its `--json` output takes.
///
/// Keys: `seed_step_ms` (the median full-batch step), `seed_step` (its breakdown),
/// `minibatch_epoch_s` (784-50-10, SGD, batch 64), `mlp_epoch_s` (784-256-128-10, Adam, batch 64),
/// `cnn_epoch_s` (the convnet), `cnn_epoch_by_layer` (its epoch by layer: `name`, `forward_ms`,
/// `backward_ms`, `forward_flops`, `backward_flops`, the pool's counts),
/// `minibatch_step_breakdown`, `mlp_step_breakdown` and `model_step_breakdown` (``StepBreakdown``: `parts`
/// as for the convnet, `batches_ms`, `steps`, `allocations_per_step`, `allocated_mb_per_step`,
/// `pool_dispatches_per_step`, `pool_wakeups_per_step`), `cnn_conv_layers` (each of its convolutions: `name`, `entry`,
/// `input_shape`, `weight_shape`, `stride`, `padding`, `bias`, `input_gradient`, `forward_ms`,
/// `backward_ms`, `forward_gflops`, `backward_gflops`, and `errors`, tensor → relative error
/// against the reference loops), `matmul_gflops` (shape → route → GFLOP/s), `matmul_error`
/// (shape → route → relative error against the reference loops), `data`, `rows`, `runs`,
/// `machine`; with `--layers`, `model` (`layers`, `optimizer`, `batch_size`, as strings) and
/// `model_epoch_s`. A part that was not run is absent.
///
/// With the machine's limits measured: `peak` (``MachinePeak``: `fma_gflops`, `bandwidth_gbps`,
/// …), `floors` (workload → ``WorkloadFloor``: `flops`, `bytes`, `arithmetic_ms`, `memory_ms`,
/// `floor_ms`, `bound`, `time_ms`, `ratio`; the workloads `seed_step`, `minibatch_epoch`,
/// `mlp_epoch`, `cnn_epoch`, `model_epoch`, and `matmul_forward`, `matmul_input_gradient`,
/// `matmul_weight_gradient` for Backprop's `•`), and `matmul_floor_ratio` (shape → route → time
/// over the floor, for every route timed on the full shape), and `steadiness` (`before` and
/// `after` the workloads, each a ``Steadiness``: `product_median_over_best`, `slow_phase`,
/// `threads`, …).
struct BenchmarkReport: Encodable {
    /// The machine.
    var machine = Machine.current
    /// Where the inputs came from: `fashion-mnist` or `synthetic`.
    var data: String
    /// Rows of the full batch (50,000 in the seed).
    var rows: Int
    /// Timed runs per measurement.
    var runs: Int
    /// The seed step and its breakdown.
    var seedStep: SeedStepBenchmark.Result?
    /// Median seconds of one minibatch epoch (784-50-10, SGD, batch 64).
    var minibatchEpochSeconds: Double?
    /// Median seconds of one epoch of 784-256-128-10 with Adam, batch 64.
    var mlpEpochSeconds: Double?
    /// One epoch of the convnet of `EpochBenchmark.Recipe.cnn`, in seconds.
    var cnnEpochSeconds: Double?
    /// Each convolution of the convnet, forward and backward, checked against the reference loops.
    var cnnConvLayers: [ConvLayerBenchmark.Measurement] = []
    /// The convnet's epoch layer by layer (milliseconds forward and backward per epoch).
    var cnnStepBreakdown: StepBreakdown?
    /// The minibatch and MLP epochs taken apart the same way, with the batch gathering and the
    /// allocations and thread-pool loops per step.
    var minibatchStepBreakdown: StepBreakdown?
    var mlpStepBreakdown: StepBreakdown?
    /// The network of `--layers` and how it trains (`nil` without it), one epoch's median seconds,
    /// and that epoch layer by layer.
    var model: EpochBenchmark.Recipe?
    var modelEpochSeconds: Double?
    var modelStepBreakdown: StepBreakdown?
    /// Each convolution of the `--layers` network, as ``cnnConvLayers`` for the convnet.
    var modelConvLayers: [ConvLayerBenchmark.Measurement] = []
    /// GFLOP/s of each route on each of the seed's product shapes.
    var matmul: [MatMulBenchmark.Measurement] = []
    /// The machine's FMA rate and memory bandwidth, which set the floors.
    var peak: MachinePeak?
    /// Whether products ran at their usual speed just before the workloads and just after
    /// (measured with the limits; `nil` without AVX2).
    var steadinessBefore: Steadiness?
    var steadinessAfter: Steadiness?

    /// An empty report for a run on `data` with `rows` rows and `runs` runs per measurement.
    init(data: String, rows: Int, runs: Int) {
        self.data = data
        self.rows = rows
        self.runs = runs
    }

    private enum CodingKeys: String, CodingKey {
        case machine, data, rows, runs
        case seedStepMilliseconds = "seed_step_ms"
        case seedStep = "seed_step"
        case minibatchEpochSeconds = "minibatch_epoch_s"
        case mlpEpochSeconds = "mlp_epoch_s"
        case cnnEpochSeconds = "cnn_epoch_s"
        case cnnConvLayers = "cnn_conv_layers"
        case cnnStepBreakdown = "cnn_epoch_by_layer"
        case minibatchStepBreakdown = "minibatch_step_breakdown"
        case mlpStepBreakdown = "mlp_step_breakdown"
        case model
        case modelEpochSeconds = "model_epoch_s"
        case modelStepBreakdown = "model_step_breakdown"
        case modelConvLayers = "model_conv_layers"
        case matmulGflops = "matmul_gflops"
        case matmulError = "matmul_error"
        case peak, floors, steadiness
        case matmulFloorRatio = "matmul_floor_ratio"
    }

    /// Each measured workload against its floor on ``peak``, in the order `backprop bench` runs
    /// them (none without ``peak``): `seed_step`, `minibatch_epoch`, `mlp_epoch`, `cnn_epoch`,
    /// `model_epoch` (`--layers`, timed last), then `matmul_NAME` for each product shape, timed by
    /// Backprop's `•` (the `matmul` route).
    var floors: [(name: String, floor: WorkloadFloor)] {
        guard let peak else { return [] }
        var floors: [(String, WorkloadFloor)] = []
        if let seedStep {
            let seconds = seedStep.stepMilliseconds / 1000
            floors.append(("seed_step", WorkloadFloor(cost: seedStep.cost, peak: peak, measuredSeconds: seconds)))
        }
        var epochs: [(String, EpochBenchmark.Recipe, Double?)] = [
            ("minibatch_epoch", .minibatch, minibatchEpochSeconds), ("mlp_epoch", .mlp, mlpEpochSeconds),
            ("cnn_epoch", .cnn, cnnEpochSeconds),
        ]
        if let model { epochs.append(("model_epoch", model, modelEpochSeconds)) }
        for case let (name, recipe, seconds?) in epochs {
            floors.append((name, WorkloadFloor(cost: .epoch(recipe, rows: rows), peak: peak, measuredSeconds: seconds)))
        }
        for measurement in matmul {
            guard let floor = MatMulBenchmark.floor(measurement, route: "matmul", peak: peak) else { continue }
            floors.append(("matmul_\(measurement.shape.name)", floor))
        }
        return floors
    }

    /// Writes the report under the keys the peer runner reads (`seed_step_ms`,
    /// `minibatch_epoch_s`, `mlp_epoch_s`, `cnn_conv_layers`, `matmul_gflops`, …); a part not measured is left out.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(machine, forKey: .machine)
        try container.encode(data, forKey: .data)
        try container.encode(rows, forKey: .rows)
        try container.encode(runs, forKey: .runs)
        try container.encodeIfPresent(seedStep?.stepMilliseconds, forKey: .seedStepMilliseconds)
        try container.encodeIfPresent(seedStep, forKey: .seedStep)
        try container.encodeIfPresent(minibatchEpochSeconds, forKey: .minibatchEpochSeconds)
        try container.encodeIfPresent(mlpEpochSeconds, forKey: .mlpEpochSeconds)
        try container.encodeIfPresent(cnnEpochSeconds, forKey: .cnnEpochSeconds)
        if !cnnConvLayers.isEmpty { try container.encode(cnnConvLayers, forKey: .cnnConvLayers) }
        try container.encodeIfPresent(cnnStepBreakdown?.parts, forKey: .cnnStepBreakdown)
        try container.encodeIfPresent(minibatchStepBreakdown, forKey: .minibatchStepBreakdown)
        try container.encodeIfPresent(mlpStepBreakdown, forKey: .mlpStepBreakdown)
        if let model {
            let settings = [
                "layers": model.layers ?? "", "optimizer": model.optimizer.rawValue, "batch_size": "\(model.batchSize)",
            ]
            try container.encode(settings, forKey: .model)
        }
        try container.encodeIfPresent(modelEpochSeconds, forKey: .modelEpochSeconds)
        try container.encodeIfPresent(modelStepBreakdown, forKey: .modelStepBreakdown)
        if !modelConvLayers.isEmpty { try container.encode(modelConvLayers, forKey: .modelConvLayers) }
        if !matmul.isEmpty {
            var gflops: [String: [String: Double]] = [:]
            var errors: [String: [String: Double]] = [:]
            for measurement in matmul {
                gflops[measurement.shape.name] = measurement.gflops
                errors[measurement.shape.name] = measurement.errors
            }
            try container.encode(gflops, forKey: .matmulGflops)
            try container.encode(errors, forKey: .matmulError)
        }
        try container.encodeIfPresent(peak, forKey: .peak)
        var steadiness: [String: Steadiness] = [:]
        steadiness["before"] = steadinessBefore
        steadiness["after"] = steadinessAfter
        if !steadiness.isEmpty { try container.encode(steadiness, forKey: .steadiness) }
        if let peak {
            let floors = Dictionary(uniqueKeysWithValues: self.floors.map { ($0.name, $0.floor) })
            try container.encode(floors, forKey: .floors)
            if !matmul.isEmpty {
                var ratios: [String: [String: Double]] = [:]
                for measurement in matmul {
                    ratios[measurement.shape.name] = measurement.gflops.keys.reduce(into: [:]) { shapeRatios, route in
                        shapeRatios[route] = MatMulBenchmark.floor(measurement, route: route, peak: peak)?.ratio
                    }
                }
                try container.encode(ratios, forKey: .matmulFloorRatio)
            }
        }
    }
}
