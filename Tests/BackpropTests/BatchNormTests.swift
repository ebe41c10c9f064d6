import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropNetwork

// BatchNorm against its definition evaluated in Double: the forward, the running statistics, and
// the gradients of `Σ out · r` by central finite differences of that definition (with respect to
// the input, `w` and `b`); and the layer's hand-written `.g` against autograd's `.grad` from the
// recorded composition. Features `(n, c)` and channels `(n, c, h, w)`, training and evaluation.

/// BatchNorm's forward straight from its definition, in Double, on an input viewed as
/// `(n, c, s)` (`s = h · w`, or 1 for features).
struct BatchNormReference {
    let n: Int
    let c: Int
    let spatial: Int

    init(shape: [Int]) {
        n = shape[0]
        c = shape[1]
        spatial = shape.count == 4 ? shape[2] * shape[3] : 1
    }

    /// The flat indices of channel `channel`'s values.
    func indices(of channel: Int) -> [Int] {
        (0..<n).flatMap { row in (0..<spatial).map { (row * c + channel) * spatial + $0 } }
    }

    /// Per channel: `mean = Σx / N`, `var = Σ(x - mean)² / N` (biased).
    func statistics(_ x: [Double]) -> (mean: [Double], variance: [Double]) {
        let count = Double(n * spatial)
        let means = (0..<c).map { channel in indices(of: channel).map { x[$0] }.reduce(0, +) / count }
        let variances = (0..<c).map { channel in
            indices(of: channel).map { (x[$0] - means[channel]) * (x[$0] - means[channel]) }.reduce(0, +) / count
        }
        return (means, variances)
    }

    /// `w · (x - mean) / √(var + eps) + b`, per channel.
    func forward(
        _ x: [Double], w: [Double], b: [Double], mean: [Double], variance: [Double], eps: Double
    ) -> [Double] {
        var out = x
        for channel in 0..<c {
            for i in indices(of: channel) {
                out[i] = w[channel] * (x[i] - mean[channel]) / (variance[channel] + eps).squareRoot() + b[channel]
            }
        }
        return out
    }
}

/// Copies `values` into `tensor` in place.
func assign(_ values: [Float], to tensor: Tensor) {
    tensor.withUnsafeMutableBufferPointer { buffer in
        for i in buffer.indices { buffer[i] = values[i] }
    }
}

/// The values of `tensor` in Double.
func doubles(_ tensor: Tensor) -> [Double] { tensor.values.map(Double.init) }

@Suite("BatchNorm: forward, running statistics, backward, autograd, finite differences")
struct BatchNormTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let shape: [Int]
        let isTraining: Bool

        var testDescription: String { "\(isTraining ? "training" : "evaluation") \(shape)" }
    }

    static let cases = [
        Case(shape: [6, 4], isTraining: true),
        Case(shape: [3, 2, 4, 3], isTraining: true),
        Case(shape: [1, 3, 5, 5], isTraining: true),  // batch 1: the channel's values are its pixels
        Case(shape: [2, 1, 3, 3], isTraining: true),  // one channel
        Case(shape: [6, 4], isTraining: false),
        Case(shape: [3, 2, 4, 3], isTraining: false),
        Case(shape: [1, 3, 2, 5], isTraining: false),
    ]

    /// A layer with random `w`, `b` and running statistics, the same for the same seed.
    static func makeLayer(features: Int, seed: UInt64) -> BatchNorm {
        var generator = RandomGenerator(seed: seed)
        let layer = BatchNorm(features: features)
        assign(uniform([features], in: 0.5...2, generator: &generator).values, to: layer.w)
        assign(uniform([features], in: -1...1, generator: &generator).values, to: layer.b)
        assign(uniform([features], in: -1...1, generator: &generator).values, to: layer.runningMean)
        assign(uniform([features], in: 0.5...2, generator: &generator).values, to: layer.runningVar)
        return layer
    }

    @Test(
        "out against the definition in Double, .g against its finite differences and autograd's .grad",
        arguments: cases)
    func forwardAndBackward(_ testCase: Case) throws {
        let shape = testCase.shape
        let reference = BatchNormReference(shape: shape)
        var generator = RandomGenerator(seed: 1310)
        let x = uniform(shape, in: -2...3, generator: &generator)
        let r = uniform(shape, in: -1...1, generator: &generator)  // out.g
        let layer = Self.makeLayer(features: reference.c, seed: 1311)
        layer.isTraining = testCase.isTraining
        let w = doubles(layer.w)
        let b = doubles(layer.b)
        let running = (mean: doubles(layer.runningMean), variance: doubles(layer.runningVar))
        let eps = Double(layer.eps)

        // The definition, and the loss Σ out · r as a function of x, w and b.
        func definition(_ x: [Double], _ w: [Double], _ b: [Double]) -> [Double] {
            let statistics = testCase.isTraining ? reference.statistics(x) : running
            return reference.forward(x, w: w, b: b, mean: statistics.mean, variance: statistics.variance, eps: eps)
        }
        func loss(_ out: [Double]) -> Double { zip(out, doubles(r)).map { $0 * $1 }.reduce(0, +) }

        // The fast path.
        let out = layer(x)
        #expect(out.isLeaf && out.shape == shape)
        expectNear(out, definition(doubles(x), w, b), relativeTolerance: 1e-5, absoluteTolerance: 1e-5, "out")
        out.g = r
        layer.backward()
        let xGradient = centralDifferences({ loss(definition($0, w, b)) }, at: doubles(x))
        let wGradient = centralDifferences({ loss(definition(doubles(x), $0, b)) }, at: w)
        let bGradient = centralDifferences({ loss(definition(doubles(x), w, $0)) }, at: b)
        expectNear(x.g, xGradient, relativeTolerance: 1e-4, absoluteTolerance: 1e-5, "inp.g")
        expectNear(layer.w.g, wGradient, relativeTolerance: 1e-4, absoluteTolerance: 1e-5, "w.g")
        expectNear(layer.b.g, bGradient, relativeTolerance: 1e-4, absoluteTolerance: 1e-5, "b.g")

        // The running statistics after one step: moved towards the batch's (unbiased variance) in
        // training, unchanged in evaluation.
        if testCase.isTraining {
            let batch = reference.statistics(doubles(x))
            let count = Double(reference.n * reference.spatial)
            expectNear(layer.runningMean, zip(running.mean, batch.mean).map { 0.9 * $0 + 0.1 * $1 }, "running mean")
            let unbiased = batch.variance.map { $0 * count / (count - 1) }
            expectNear(layer.runningVar, zip(running.variance, unbiased).map { 0.9 * $0 + 0.1 * $1 }, "running var")
        } else {
            #expect(doubles(layer.runningMean) == running.mean && doubles(layer.runningVar) == running.variance)
        }

        // The recorded path, on a layer in the same state: the same values, the same running
        // statistics, and autograd's gradients equal the layer's.
        let recordingLayer = Self.makeLayer(features: reference.c, seed: 1311)
        recordingLayer.isTraining = testCase.isTraining
        let recorded = x.copy()
        for tensor in [recorded, recordingLayer.w, recordingLayer.b] { tensor.requiresGrad = true }
        let recordedOut = recordingLayer(recorded)
        #expect(!recordedOut.isLeaf && recordedOut.shape == shape)
        expectNear(recordedOut, out, relativeTolerance: 1e-5, absoluteTolerance: 1e-5, "recorded out")
        expectNear(recordingLayer.runningMean, layer.runningMean, relativeTolerance: 1e-6, absoluteTolerance: 1e-7)
        expectNear(recordingLayer.runningVar, layer.runningVar, relativeTolerance: 1e-6, absoluteTolerance: 1e-7)
        (recordedOut * r).sum().backward()
        recordedOut.g = r
        GradMode.withNoGrad { recordingLayer.backward() }
        for (name, tensor) in [("inp", recorded), ("w", recordingLayer.w), ("b", recordingLayer.b)] {
            expectNear(
                tensor.g, try #require(tensor.grad), relativeTolerance: 1e-4, absoluteTolerance: 1e-5,
                "\(name).g against .grad")
        }
    }

    @Test("the running statistics after several steps, on both paths, then evaluation normalises with them")
    func runningStatistics() {
        let shape = [5, 3, 2, 2]
        let reference = BatchNormReference(shape: shape)
        var generator = RandomGenerator(seed: 1312)
        let batches = (0..<4).map { step in
            // Each channel with its own mean and spread, changing from step to step.
            let x = uniform(shape, in: -1...1, generator: &generator).values
            return Tensor(
                shape: shape,
                values: x.indices.map { i in
                    let channel = (i / reference.spatial) % reference.c
                    return Float(channel + 1) * x[i] + Float(step) - Float(channel)
                })
        }
        // The direct computation: running = (1 - momentum) running + momentum batch, unbiased var.
        let momentum = 0.2
        var runningMean = [Double](repeating: 0, count: 3)
        var runningVar = [Double](repeating: 1, count: 3)
        let count = Double(reference.n * reference.spatial)
        for x in batches {
            let batch = reference.statistics(doubles(x))
            for channel in 0..<3 {
                runningMean[channel] = (1 - momentum) * runningMean[channel] + momentum * batch.mean[channel]
                runningVar[channel] =
                    (1 - momentum) * runningVar[channel] + momentum * batch.variance[channel] * count / (count - 1)
            }
        }
        for recording in [false, true] {
            let layer = BatchNorm(features: 3, eps: 1e-3, momentum: 0.2)
            #expect(layer.eps == 1e-3 && layer.momentum == 0.2)
            for x in batches {
                x.requiresGrad = recording
                #expect(layer(x).isLeaf == !recording)
            }
            let path = recording ? "recorded" : "fast"
            expectNear(layer.runningMean, runningMean, relativeTolerance: 1e-5, absoluteTolerance: 1e-6, "\(path) mean")
            expectNear(layer.runningVar, runningVar, relativeTolerance: 1e-5, absoluteTolerance: 1e-6, "\(path) var")
            layer.isTraining = false
            let x = batches[0]
            let out = layer(x)
            let expected = reference.forward(
                doubles(x), w: [1, 1, 1], b: [0, 0, 0], mean: runningMean, variance: runningVar, eps: 1e-3)
            expectNear(out, expected, relativeTolerance: 1e-5, absoluteTolerance: 1e-5, "\(path) evaluation")
            expectNear(layer.runningMean, runningMean, relativeTolerance: 1e-5, absoluteTolerance: 1e-6)
        }
    }

    @Test("in training, each channel of out has mean b and variance w² · var / (var + eps)", arguments: [false, true])
    func outputStatistics(recording: Bool) {
        let shape = [16, 3, 4, 4]
        let reference = BatchNormReference(shape: shape)
        var generator = RandomGenerator(seed: 1313)
        let x = uniform(shape, in: -3...5, generator: &generator)
        x.requiresGrad = recording
        let layer = Self.makeLayer(features: 3, seed: 1314)
        let out = doubles(layer(x))
        let batch = reference.statistics(doubles(x))
        let outStatistics = reference.statistics(out)
        let w = doubles(layer.w)
        let eps = Double(layer.eps)
        expectNear(Tensor(outStatistics.mean.map(Float.init)), doubles(layer.b), absoluteTolerance: 1e-5)
        let expectedVariance = (0..<3).map { w[$0] * w[$0] * batch.variance[$0] / (batch.variance[$0] + eps) }
        expectNear(
            Tensor(outStatistics.variance.map(Float.init)), expectedVariance, relativeTolerance: 1e-4,
            absoluteTolerance: 0)
    }

    @Test("parameters w, b and buffers running_mean, running_var, by name; PyTorch's initial values")
    func namesAndInitialValues() {
        let layer = BatchNorm(features: 3)
        #expect(layer.parameters.count == 2 && layer.parameters[0] === layer.w && layer.parameters[1] === layer.b)
        #expect(layer.namedParameters.map(\.name) == ["w", "b"])
        #expect(layer.namedParameters[0].tensor === layer.w && layer.namedParameters[1].tensor === layer.b)
        #expect(layer.buffers.map(\.name) == ["running_mean", "running_var"])
        #expect(layer.buffers[0].tensor === layer.runningMean && layer.buffers[1].tensor === layer.runningVar)
        #expect(layer.w.values == [1, 1, 1] && layer.b.values == [0, 0, 0])
        #expect(layer.runningMean.values == [0, 0, 0] && layer.runningVar.values == [1, 1, 1])
        #expect(layer.eps == 1e-5 && layer.momentum == 0.1 && layer.isTraining)
        let asLayer: any Layer = layer
        #expect(asLayer.buffers.map(\.name) == ["running_mean", "running_var"])
    }

    @Test("BatchNorm stops on a rank-3 input, naming the shape")
    func rankThreeInput() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = BatchNorm(features: 2)(Tensor.zeros(2, 2, 3))
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("BatchNorm") && message.contains("[2, 2, 3]"), "\(message)")
    }

    @Test("BatchNorm stops on the wrong number of channels, naming the shape and the features")
    func wrongChannels() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = BatchNorm(features: 3)(Tensor.zeros(4, 2, 5, 5))
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("[4, 2, 5, 5]") && message.contains("3 features"), "\(message)")
    }

    @Test("BatchNorm stops in training on one value per channel, as PyTorch")
    func oneValuePerChannel() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = BatchNorm(features: 3)(Tensor.zeros(1, 3))
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("more than 1 value per channel") && message.contains("[1, 3]"), "\(message)")
    }

    @Test(
        "an empty batch in evaluation: an empty out and inp.g, zero w.g and b.g", arguments: [[0, 3], [0, 3, 2, 2]])
    func emptyBatchInEvaluation(_ shape: [Int]) {
        let layer = BatchNorm(features: 3)
        layer.isTraining = false
        let out = layer(Tensor.zeros(shape))
        out.g = Tensor.zeros(shape)
        layer.backward()
        #expect(out.shape == shape && layer.inp.g.shape == shape)
        #expect(layer.w.g.values == [0, 0, 0] && layer.b.g.values == [0, 0, 0])
    }

    @Test(
        "the same bits on one, two and three threads, with the images split over the threads",
        arguments: [[128, 32, 7, 7], [64, 16, 14, 14], [300, 512]])
    func sameBitsOnAnyThreads(_ shape: [Int]) throws {
        // Each of these has at least two pieces' worth of values (`BatchNorm.valuesPerPiece`), so
        // on two threads each thread sums and normalises some of the blocks of images.
        #expect(shape.reduce(1, *) >= 2 * BatchNorm.valuesPerPiece)
        let before = Parallel.workers
        defer { Parallel.setWorkers(before) }
        var results: [[[Float]]] = []
        for threads in [1, 2, 3] {
            Parallel.setWorkers(threads)
            var generator = RandomGenerator(seed: 77)
            let x = Tensor.randn(shape, generator: &generator) * 3 + 1
            let gradient = Tensor.randn(shape, generator: &generator)
            let layer = Self.makeLayer(features: shape[1], seed: 78)
            var values: [[Float]] = []
            for training in [true, false] {
                layer.isTraining = training
                let out = layer(x)
                out.g = gradient
                layer.backward()
                values += [out.values, layer.inp.g!.values, layer.w.g!.values, layer.b.g!.values]
            }
            values += [layer.runningMean.values, layer.runningVar.values]
            results.append(values)
        }
        #expect(results[0] == results[1] && results[0] == results[2])
    }
}

@Suite("BatchNorm's kernels: the same bits as the loops of their formulas")
struct BatchNormKernelTests {
    /// Lane j of four adds the elements i ≡ j mod 4 in order; then 0 + lane 0 + … + lane 3; then
    /// the tail in order: the documented order, written as plain loops.
    private func laneSum(_ count: Int, _ term: (Int) -> Double) -> Double {
        var lanes = [Double](repeating: 0, count: 4)
        let whole = count / 4 * 4
        for i in 0..<whole { lanes[i % 4] += term(i) }
        var total = 0.0
        for lane in lanes { total += lane }
        for i in whole..<count { total += term(i) }
        return total
    }

    /// The layer's statistics and its `w.g`, `b.g`: each plane's sum in the kernels' order, summed
    /// per block of `BatchNorm.imagesPerBlock` images from 0, and the blocks' sums from 0 in order,
    /// written as plain loops; 21 images make blocks of 8, 8 and 5.
    @Test("the layer sums its planes per block of images, then the blocks in order")
    func layerSumsInBlocksOfImages() {
        let (n, c, spatial) = (21, 3, 6)
        #expect(BatchNorm.imagesPerBlock == 8)
        var generator = RandomGenerator(seed: 91)
        var values = (0..<(n * c * spatial)).map { _ in
            Float(generator.nextUniform() * 2000 - 1000) * (generator.nextUniform() < 0.5 ? 1e-3 : 1)
        }
        // Channel 0, where the order shows: 2⁶⁰ in image 0, 32 in each of images 8 to 15, -2⁶⁰ in
        // image 16, zeros elsewhere. Added one image at a time, each 32 is lost against 2⁶⁰ (half its
        // spacing is 128) and the sum is 0; summed in their block first, they make 256, which is kept.
        for image in 0..<n {
            for i in 0..<spatial { values[image * c * spatial + i] = 0 }
        }
        values[0] = 0x1p60
        for image in 8..<16 { values[image * c * spatial] = 32 }
        values[16 * c * spatial] = -0x1p60
        let gradient = (0..<values.count).map { _ in Float(generator.nextUniform() * 2 - 1) }
        let x = Tensor(shape: [n, c, 2, 3], values: values)
        let layer = BatchNorm(features: c)
        let out = layer(x)
        out.g = Tensor(shape: x.shape, values: gradient)
        layer.backward()
        /// Σ over the batch of `term(i)` for the elements `i` of each image's plane of `channel`.
        func blocked(_ channel: Int, _ term: (Int) -> Double) -> Double {
            var total = 0.0
            for block in stride(from: 0, to: n, by: 8) {
                var partial = 0.0
                for image in block..<Swift.min(n, block + 8) {
                    let start = (image * c + channel) * spatial
                    partial += laneSum(spatial) { term(start + $0) }
                }
                total += partial
            }
            return total
        }
        let count = Double(n * spatial)
        #expect(blocked(0) { Double(values[$0]) } == 256)
        for channel in 0..<c {
            let mean = blocked(channel) { Double(values[$0]) } / count
            let variance = blocked(channel) { (Double(values[$0]) - mean) * (Double(values[$0]) - mean) } / count
            let invStd = 1 / (Float(variance) + layer.eps).squareRoot()
            #expect(layer.mean.values[channel] == Float(mean), "channel \(channel)")
            #expect(layer.invStd.values[channel] == invStd, "channel \(channel)")
            let (meanF, g) = (Float(mean), gradient)
            #expect(layer.b.g.values[channel] == Float(blocked(channel) { Double(g[$0]) }))
            #expect(
                layer.w.g.values[channel] == Float(blocked(channel) { Double(g[$0] * ((values[$0] - meanF) * invStd)) })
            )
        }
    }

    /// BatchNorm1d's input `(n, c)`, one value per image and feature, through the kernels over whole
    /// rows: per feature, the sums over each block of rows in row order, the blocks in order, then
    /// `out` and `inp.g`, each operation rounded as written, against the same plain loops; 21 rows
    /// make blocks of 8, 8 and 5, and 13 features end on no vector's edge.
    @Test("BatchNorm1d: sums per block of rows in order, out and inp.g, the bits of the formulas' loops")
    func featureRowsMatchFormulas() {
        let (n, c) = (21, 13)
        var generator = RandomGenerator(seed: 92)
        var values = (0..<(n * c)).map { _ in
            Float(generator.nextUniform() * 2000 - 1000) * (generator.nextUniform() < 0.5 ? 1e-3 : 1)
        }
        // Feature 4: 2⁶⁰ in row 0, 32 in rows 8 to 15, -2⁶⁰ in row 16, zeros elsewhere; the 32s are
        // kept only if summed in their block first (see `layerSumsInBlocksOfImages`).
        for row in 0..<n { values[row * c + 4] = 0 }
        values[4] = 0x1p60
        for row in 8..<16 { values[row * c + 4] = 32 }
        values[16 * c + 4] = -0x1p60
        let gradient = (0..<values.count).map { _ in Float(generator.nextUniform() * 2 - 1) }
        let layer = BatchNormTests.makeLayer(features: c, seed: 93)
        let out = layer(Tensor(shape: [n, c], values: values))
        out.g = Tensor(shape: [n, c], values: gradient)
        layer.backward()
        func blocked(_ feature: Int, _ term: (Int) -> Double) -> Double {
            var total = 0.0
            for block in stride(from: 0, to: n, by: 8) {
                var partial = 0.0
                for row in block..<Swift.min(n, block + 8) { partial += term(row * c + feature) }
                total += partial
            }
            return total
        }
        #expect(blocked(4) { Double(values[$0]) } == 256)
        let (w, b) = (layer.w.values, layer.b.values)
        for k in 0..<c {
            let mean = blocked(k) { Double(values[$0]) } / Double(n)
            let variance = blocked(k) { (Double(values[$0]) - mean) * (Double(values[$0]) - mean) } / Double(n)
            let (meanF, invStd) = (Float(mean), 1 / (Float(variance) + layer.eps).squareRoot())
            #expect(layer.mean.values[k] == meanF && layer.invStd.values[k] == invStd, "feature \(k)")
            let xhat = { (i: Int) -> Float in (values[i] - meanF) * invStd }
            let sumG = blocked(k) { Double(gradient[$0]) }
            let sumGXhat = blocked(k) { Double(gradient[$0] * xhat($0)) }
            #expect(layer.b.g.values[k] == Float(sumG) && layer.w.g.values[k] == Float(sumGXhat), "feature \(k)")
            let scale = w[k] * invStd
            let (meanG, meanGXhat) = (Float(sumG / Double(n)), Float(sumGXhat / Double(n)))
            for row in 0..<n {
                let i = row * c + k
                let product = (values[i] - meanF) * scale
                #expect(out.values[i] == product + b[k], "out[\(row), \(k)]")
                let centered = (gradient[i] - meanG) - xhat(i) * meanGXhat
                #expect(layer.inp.g.values[i] == scale * centered, "inp.g[\(row), \(k)]")
            }
        }
    }

    @Test("sums, normalisation and input gradient, for lengths 0 to 21 and 196", arguments: Array(0...21) + [196])
    func kernelsMatchFormulas(_ count: Int) {
        var generator = RandomGenerator(seed: UInt64(40 + count))
        // Values far from 0 and of mixed sizes, so that a different order of additions shows.
        let x = (0..<count).map { _ in
            Float(generator.nextUniform() * 2000 - 1000) * (generator.nextUniform() < 0.5 ? 1e-3 : 1)
        }
        let g = (0..<count).map { _ in Float(generator.nextUniform() * 2 - 1) }
        let (mean, invStd, meanG, meanGXhat, scale, shift): (Float, Float, Float, Float, Float, Float) =
            (3.25, 0.37, -0.011, 0.023, 1.7, -0.4)
        x.withUnsafeBufferPointer { xs in
            g.withUnsafeBufferPointer { gs in
                let (xp, gp) = (
                    xs.baseAddress ?? UnsafePointer(bitPattern: 64)!, gs.baseAddress ?? UnsafePointer(bitPattern: 64)!
                )
                #expect(BatchNormKernels.total(xp, count: count) == laneSum(count) { Double(x[$0]) })
                let center = 12.5
                #expect(
                    BatchNormKernels.squaredDeviations(xp, count: count, from: center)
                        == laneSum(count) { (Double(x[$0]) - center) * (Double(x[$0]) - center) })
                let sums = BatchNormKernels.gradientSums(gp, xp, count: count, mean: mean, invStd: invStd)
                #expect(sums.0 == laneSum(count) { Double(g[$0]) })
                #expect(sums.1 == laneSum(count) { Double(g[$0] * ((x[$0] - mean) * invStd)) })
                var out = [Float](repeating: .nan, count: count)
                out.withUnsafeMutableBufferPointer {
                    BatchNormKernels.normalize(
                        xp, into: $0.baseAddress ?? UnsafeMutablePointer(bitPattern: 64)!, count: count, mean: mean,
                        scale: scale, shift: shift)
                }
                // Each operation rounded to Float as written: (x − mean) · scale, then + shift.
                let normalized = (0..<count).map { i -> Float in
                    let product = (x[i] - mean) * scale
                    return product + shift
                }
                #expect(out == normalized)
                out.withUnsafeMutableBufferPointer {
                    BatchNormKernels.inputGradient(
                        gp, xp, into: $0.baseAddress ?? UnsafeMutablePointer(bitPattern: 64)!, count: count, mean: mean,
                        invStd: invStd, meanG: meanG, meanGXhat: meanGXhat, scale: scale)
                }
                let gradient = (0..<count).map { i -> Float in
                    let xhat = (x[i] - mean) * invStd
                    let product = xhat * meanGXhat
                    let centered = (g[i] - meanG) - product
                    return scale * centered
                }
                #expect(out == gradient)
            }
        }
    }
}
