import BackpropCore

/// Batch normalisation: normalises each feature (input `(n, c)`) or channel (input
/// `(n, c, h, w)`) to mean 0 and variance 1 over the batch, then scales by `w` and shifts by `b`
/// (PyTorch's `nn.BatchNorm1d(c)` and `nn.BatchNorm2d(c)`, with `w` as `weight`, `b` as `bias`).
///
/// Per channel, over its `N = n` (or `n · h · w`) values `x`:
/// - training: `mean = Σx / N`, `var = Σ(x - mean)² / N` (biased), and the running statistics
///   move towards the batch's: `runningMean = (1 - momentum) · runningMean + momentum · mean`,
///   `runningVar = (1 - momentum) · runningVar + momentum · var · N / (N - 1)` (unbiased, as
///   PyTorch's `running_var`);
/// - evaluation (``isTraining`` false): `mean = runningMean`, `var = runningVar`, unchanged;
/// - `xhat = (x - mean) / √(var + eps)`, `out = w · xhat + b`.
///
/// The backward, written out (the classic exercise), per channel:
/// - `b.g = Σ out.g`
/// - `w.g = Σ out.g · xhat`
/// - training: `inp.g = w / √(var + eps) / N · (N · out.g - Σ out.g - xhat · Σ(out.g · xhat))`,
///   since `mean` and `var` depend on every `x` of the channel;
/// - evaluation: `inp.g = out.g · w / √(runningVar + eps)` (the statistics are constants).
///
/// Autograd records the forward composed of `mean`, `-`, `*`, `sqrt`, `/` and `+` over the
/// input viewed as `(n, c, h·w)` (means over dimension 2, then 0), so `.grad` comes from those
/// primitives' derivatives, not from the formulas above. Where nothing is recorded, passes over
/// blocks of 8 images: the statistics in Double (summed per block, then over the blocks in order),
/// then the output; for an `(n, c)` input each pass takes whole rows of features at once.
public final class BatchNorm: Layer, ModeDependentLayer {
    /// The scale, PyTorch's `weight` (gamma), ones at first. // (c)
    public let w: Tensor
    /// The shift, PyTorch's `bias` (beta), zeros at first. // (c)
    public let b: Tensor
    /// The running mean, zeros at first, updated in place by training calls. // (c)
    public let runningMean: Tensor
    /// The running (unbiased) variance, ones at first, updated in place by training calls. // (c)
    public let runningVar: Tensor
    /// Added to the variance before the square root, for stability (PyTorch's default 1e-5).
    public let eps: Float
    /// How far each training call moves the running statistics towards the batch's (0.1).
    public let momentum: Float
    /// PyTorch's default `eps`, 1e-5 (`nn.BatchNorm2d(c)`).
    public static let defaultEps: Float = 1e-5
    /// PyTorch's default `momentum`, 0.1.
    public static let defaultMomentum: Float = 0.1
    /// `true` (the default) to normalise with the batch's statistics and update the running
    /// ones; `false` to normalise with the running statistics (evaluation).
    public var isTraining = true
    /// The replicas of a data-parallel run whose shards make up the batch, or `nil` (one
    /// process). When set, training calls normalise with the statistics of the whole batch, as a
    /// one-process run would (PyTorch's `SyncBatchNorm`): the per-channel sums `Σx` and
    /// `Σ(x - mean)²` and the value counts are summed over the group, and so, in `backward()`, are
    /// `Σ out.g` and `Σ out.g · xhat` for `inp.g`. `w.g` and `b.g` stay this replica's share, to be
    /// summed with the other parameters' gradients. Every replica must call the layer at each step.
    public var replicas: (any ReplicaGroup)?
    /// The input of the last call (the very object passed in). // (n, c) or (n, c, h, w)
    public private(set) var inp: Tensor!
    /// The output of the last call. // the shape of inp
    public private(set) var out: Tensor!
    /// The mean the last call normalised with: the batch's in training, the running one in
    /// evaluation. // (c)
    public private(set) var mean: Tensor!
    /// `1 / √(var + eps)` for the variance the last call normalised with. // (c)
    public private(set) var invStd: Tensor!

    /// Whether the last call normalised with the batch's statistics (what `backward()` differentiates).
    private var usedBatchStatistics = true
    /// The group the last training call's statistics were summed over, and the whole batch's
    /// value count per channel (`N`).
    private var usedReplicas: (group: any ReplicaGroup, count: Int)?

    /// Creates the layer for `features` features or channels: `w` ones, `b` zeros, running mean
    /// zeros, running variance ones (PyTorch's initialisation).
    /// - Precondition: `features > 0`, `eps ≥ 0`, `0 ≤ momentum ≤ 1`.
    public init(features: Int, eps: Float = BatchNorm.defaultEps, momentum: Float = BatchNorm.defaultMomentum) {
        precondition(features > 0, "BatchNorm: features must be positive, got \(features)")
        precondition(eps >= 0, "BatchNorm: eps must not be negative, got \(eps)")
        precondition(momentum >= 0 && momentum <= 1, "BatchNorm: momentum must be in [0, 1], got \(momentum)")
        w = Tensor.ones([features])
        b = Tensor.zeros([features])
        runningMean = Tensor.zeros([features])
        runningVar = Tensor.ones([features])
        self.eps = eps
        self.momentum = momentum
    }

    /// `[w, b]`.
    public var parameters: [Tensor] { [w, b] }

    /// `w` and `b`, PyTorch's `weight` and `bias`.
    public var namedParameters: [(name: String, tensor: Tensor)] { [("w", w), ("b", b)] }

    /// `running_mean` and `running_var`: kept in checkpoints, never learned.
    public var buffers: [(name: String, tensor: Tensor)] {
        [("running_mean", runningMean), ("running_var", runningVar)]
    }

    /// The forward pass: stores `inp`, normalises each channel (with the batch's statistics in
    /// training, updating the running ones; with the running ones in evaluation), returns
    /// `out = w · xhat + b`.
    /// - Precondition: `inp` is `(n, c)` or `(n, c, h, w)` with `c` the layer's features; in
    ///   training, each channel has more than one value (as PyTorch requires).
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        let (n, c, spatial) = split(inp)
        self.inp = inp
        usedBatchStatistics = isTraining
        usedReplicas = nil
        if isTraining, let replicas {
            let (statistics, count) = synchronizedForward(inp, n: n, c: c, spatial: spatial, replicas: replicas)
            usedReplicas = (replicas, count)
            updateRunningStatistics(statistics, count: count)
            return out
        }
        if isTraining {
            precondition(
                n * spatial > 1,
                "BatchNorm: expected more than 1 value per channel when training, got input of shape \(inp.shape)")
        }
        let statistics: (mean: [Double], variance: [Double])
        if Tensor.wouldRecord(inp, w, b) {
            statistics = recordedForward(inp, n: n, c: c, spatial: spatial)
        } else {
            statistics = fastForward(inp, n: n, c: c, spatial: spatial)
        }
        if isTraining { updateRunningStatistics(statistics, count: n * spatial) }
        return out
    }

    /// The backward pass, per channel, with `xhat = (inp - mean) · invStd` and `N` values:
    /// - `b.g = Σ out.g`   // (c)
    /// - `w.g = Σ out.g · xhat`   // (c)
    /// - training: `inp.g = w · invStd / N · (N · out.g - Σ out.g - xhat · Σ(out.g · xhat))`
    /// - evaluation: `inp.g = out.g · w · invStd`   // the shape of inp
    public func backward() {
        checkReadyForBackward()
        let (n, c, spatial) = split(inp)
        let count = n * spatial
        let x = inp.contiguous()
        let g = out.g.contiguous()
        precondition(g.shape == x.shape, "BatchNorm.backward: out.g of shape \(g.shape) does not fit \(x.shape)")
        let inputGradient = Tensor(uninitializedShape: x.shape)
        let weightGradient = Tensor(uninitializedShape: [c])
        let biasGradient = Tensor(uninitializedShape: [c])
        let batchStatistics = usedBatchStatistics
        if batchStatistics, let used = usedReplicas {
            synchronizedBackward(x, g, n: n, c: c, spatial: spatial, group: used.group, total: used.count)
            return
        }
        let meanValues = mean.values
        let invStdValues = invStd.values
        // Σ out.g and Σ out.g · xhat per channel, in Double, by blocks of images (`blockSums`).
        let sums = withExtendedLifetime((x, g)) {
            blockSums(n: n, c: c, spatial: spatial) { images, first, second in
                BatchNormKernels.addGradientSums(
                    g.pointer, x.pointer, images: images, channels: c, spatial: spatial, mean: meanValues,
                    invStd: invStdValues, into: first, second)
            }
        }
        for channel in 0..<c {
            biasGradient.pointer[channel] = Float(sums.first[channel])
            weightGradient.pointer[channel] = Float(sums.second[channel])
        }
        let scales = zip(w.values, invStdValues).map { $0 * $1 }
        // inp.g = w · invStd / N · (N · out.g - Σ out.g - xhat · Σ(out.g · xhat)), computed as
        // w · invStd · (out.g - Σ out.g / N - xhat · Σ(out.g · xhat) / N) in training.
        let meanG = sums.first.map { Float($0 / Double(count)) }
        let meanGXhat = sums.second.map { Float($0 / Double(count)) }
        withExtendedLifetime((x, g)) {
            let (input, gradient, result) = (x.pointer, g.pointer, inputGradient.pointer)
            Parallel.forEachRange(n, minimumPerPiece: imagesPerPiece(c: c, spatial: spatial)) { images in
                if batchStatistics {
                    BatchNormKernels.inputGradient(
                        gradient, input, into: result, images: images, channels: c, spatial: spatial,
                        mean: meanValues, invStd: invStdValues, meanG: meanG, meanGXhat: meanGXhat, scale: scales)
                    return
                }
                for image in images {
                    for channel in 0..<c {
                        // Evaluation: inp.g = out.g · w · invStd
                        let (start, scale) = ((image * c + channel) * spatial, scales[channel])
                        for i in start..<start + spatial { result[i] = gradient[i] * scale }
                    }
                }
            }
        }
        inp.g = inputGradient
        w.g = weightGradient
        b.g = biasGradient
    }

    // MARK: - The two forward paths

    /// The forward composed of recorded primitives, over `inp` viewed as `(n, c, h·w)`; sets
    /// `out`, `mean` and `invStd`, and returns the statistics it normalised with.
    private func recordedForward(
        _ inp: Tensor, n: Int, c: Int, spatial: Int
    ) -> (mean: [Double], variance: [Double]) {
        let x = inp.reshape([n, c, spatial])  // (n, c, h·w)
        let mean: Tensor  // (1, c, 1)
        let variance: Tensor  // (1, c, 1)
        if isTraining {
            mean = x.mean(2, keepDim: true).mean(0, keepDim: true)
            let centered = x - mean
            variance = (centered * centered).mean(2, keepDim: true).mean(0, keepDim: true)
        } else {
            mean = runningMean.reshape([1, c, 1])
            variance = runningVar.reshape([1, c, 1])
        }
        let xhat = (x - mean) / (variance + eps).sqrt()  // (n, c, h·w)
        out = (xhat * w.reshape([1, c, 1]) + b.reshape([1, c, 1])).reshape(inp.shape)
        let meanValues = mean.values
        let varianceValues = variance.values
        self.mean = Tensor(shape: [c], values: meanValues)
        self.invStd = Tensor(shape: [c], values: varianceValues.map { 1 / ($0 + eps).squareRoot() })
        return (meanValues.map(Double.init), varianceValues.map(Double.init))
    }

    /// The forward in passes over blocks of ``imagesPerBlock`` images (the statistics in Double,
    /// then the output), with nothing recorded; sets `out`, `mean` and `invStd`, and returns the
    /// statistics it normalised with.
    ///
    /// Each pass cuts the batch by images, as the layers around it do (a convolution, a pooling,
    /// an elementwise layer), so that each core reads mostly what it wrote; cut by channels, every
    /// core read every image, half of them from the other core's cache.
    private func fastForward(_ inp: Tensor, n: Int, c: Int, spatial: Int) -> (mean: [Double], variance: [Double]) {
        let x = inp.contiguous()
        let result = Tensor(uninitializedShape: inp.shape)
        let means: [Double]
        let variances: [Double]
        let count = n * spatial
        if isTraining {
            // mean = Σx / N, var = Σ(x - mean)² / N, in Double.
            let sums = blockSums(n: n, c: c, spatial: spatial) { images, first, _ in
                BatchNormKernels.addTotals(x.pointer, images: images, channels: c, spatial: spatial, into: first)
            }
            let batchMeans = sums.first.map { $0 / Double(count) }
            let squares = blockSums(n: n, c: c, spatial: spatial) { images, first, _ in
                BatchNormKernels.addSquaredDeviations(
                    x.pointer, images: images, channels: c, spatial: spatial, from: batchMeans, into: first)
            }
            means = batchMeans
            variances = squares.first.map { $0 / Double(count) }
        } else {
            means = runningMean.values.map(Double.init)
            variances = runningVar.values.map(Double.init)
        }
        let meanValues = means.map { Float($0) }
        let invStdValues = variances.map { 1 / (Float($0) + eps).squareRoot() }
        // out = w · (x - mean) · invStd + b
        let scales = zip(w.values, invStdValues).map { $0 * $1 }
        let shifts = b.values
        withExtendedLifetime(x) {
            let (input, output) = (x.pointer, result.pointer)
            Parallel.forEachRange(n, minimumPerPiece: imagesPerPiece(c: c, spatial: spatial)) { images in
                BatchNormKernels.normalize(
                    input, into: output, images: images, channels: c, spatial: spatial, mean: meanValues,
                    scale: scales, shift: shifts)
            }
        }
        out = result
        mean = Tensor(shape: [c], values: meanValues)
        invStd = Tensor(shape: [c], values: invStdValues)
        return (means, variances)
    }

    /// Images per block of a sum over the batch: each block sums, per channel, `plane(start)` over
    /// its images in order (from 0), and the channel's sum is `0 + block 0 + block 1 + …`. Fixed,
    /// so that the sums do not depend on the number of threads, which take whole blocks.
    ///
    /// Cut by images, each core reads mostly what the layer before wrote on it. Cut by channels,
    /// as before, each core read every image, half from the other core's cache: the cnn preset's
    /// two batch norms took 728-860 ms an epoch forward and backward, 469-552 ms in blocks
    /// (`bench --only cnn`, five alternating pairs of runs on Zen 1; BENCHMARKS.md).
    static let imagesPerBlock = 8

    /// Per channel, two sums over the batch, in blocks of ``imagesPerBlock`` images (see there):
    /// `block(images, first, second)` adds each image's values of the block into the block's
    /// sums, zeros at first (`first[channel]`, `second[channel]`, image by image in order); a
    /// channel's sum is then `0 + block 0 + block 1 + …`.
    private func blockSums(
        n: Int, c: Int, spatial: Int,
        _ block: (
            _ images: Range<Int>, _ first: UnsafeMutablePointer<Double>, _ second: UnsafeMutablePointer<Double>
        ) -> Void
    ) -> (first: [Double], second: [Double]) {
        let size = Self.imagesPerBlock
        let blocks = (n + size - 1) / size
        // Block b's sums: first at [2bc, 2bc + c), second at [2bc + c, 2bc + 2c).
        var partial = [Double](repeating: 0, count: blocks * c * 2)
        partial.withUnsafeMutableBufferPointer { partial in
            let base = partial.baseAddress  // nil only for an empty batch, which has no blocks
            let perPiece = Swift.max(1, imagesPerPiece(c: c, spatial: spatial) / size)
            Parallel.forEachRange(blocks, minimumPerPiece: perPiece) { range in
                for b in range {
                    block(b * size..<Swift.min(n, (b + 1) * size), base! + 2 * b * c, base! + 2 * b * c + c)
                }
            }
        }
        var sums = (first: [Double](repeating: 0, count: c), second: [Double](repeating: 0, count: c))
        for b in 0..<blocks {
            for channel in 0..<c {
                sums.first[channel] += partial[2 * b * c + channel]
                sums.second[channel] += partial[2 * b * c + c + channel]
            }
        }
        return sums
    }

    /// How many images one thread's piece holds: at least ``valuesPerPiece`` values.
    private func imagesPerPiece(c: Int, spatial: Int) -> Int {
        Swift.max(1, Self.valuesPerPiece / Swift.max(c * spatial, 1))
    }

    // MARK: - Data-parallel training: the statistics of the whole batch

    /// The training forward of one replica of a data-parallel run: the per-channel sums over its
    /// rows are summed over `replicas`, so that `mean = Σx / N` and `var = Σ(x - mean)² / N` are
    /// the whole batch's (`N` values per channel over all replicas); then `out` as in one process.
    /// Sets `out`, `mean` and `invStd`; returns the statistics and `N`.
    /// - Precondition: the whole batch has more than one value per channel.
    private func synchronizedForward(
        _ inp: Tensor, n: Int, c: Int, spatial: Int, replicas: any ReplicaGroup
    ) -> (statistics: (mean: [Double], variance: [Double]), count: Int) {
        let x = inp.contiguous()
        let result = Tensor(uninitializedShape: inp.shape)
        // Σx per channel over this replica's values, then the count of values: one sum for both.
        var sums = [Double](repeating: 0, count: c + 1)
        var squares = [Double](repeating: 0, count: c)
        var means = [Double](repeating: 0, count: c)
        withExtendedLifetime(x) {
            let input = x.pointer
            sums.withUnsafeMutableBufferPointer { sums in
                if spatial == 1 {  // whole rows: per channel the same additions in row order, from 0
                    BatchNormKernels.addTotals(input, images: 0..<n, channels: c, spatial: 1, into: sums.baseAddress!)
                } else {
                    Parallel.forEachRange(c, minimumPerPiece: channelsPerPiece(count: n * spatial)) { channels in
                        for channel in channels {
                            var sum = 0.0
                            for row in 0..<n {
                                sum += BatchNormKernels.total(input + (row * c + channel) * spatial, count: spatial)
                            }
                            sums[channel] = sum
                        }
                    }
                }
                sums[c] = Double(n * spatial)
                replicas.sum(sums)
            }
            let total = sums[c]
            precondition(
                total > 1,
                "BatchNorm: expected more than 1 value per channel when training, got \(Int(total)) over all "
                    + "replicas (input of shape \(inp.shape) here)")
            for channel in 0..<c { means[channel] = sums[channel] / total }
            squares.withUnsafeMutableBufferPointer { squares in
                if spatial == 1 {
                    BatchNormKernels.addSquaredDeviations(
                        input, images: 0..<n, channels: c, spatial: 1, from: means, into: squares.baseAddress!)
                } else {
                    Parallel.forEachRange(c, minimumPerPiece: channelsPerPiece(count: n * spatial)) { channels in
                        for channel in channels {
                            var sum = 0.0
                            for row in 0..<n {
                                sum += BatchNormKernels.squaredDeviations(
                                    input + (row * c + channel) * spatial, count: spatial, from: means[channel])
                            }
                            squares[channel] = sum
                        }
                    }
                }
                replicas.sum(squares)
            }
        }
        let total = Int(sums[c])
        let variances = squares.map { $0 / Double(total) }
        let meanTensor = Tensor(shape: [c], values: means.map { Float($0) })
        let invStdTensor = Tensor(shape: [c], values: variances.map { 1 / (Float($0) + eps).squareRoot() })
        let (weights, biases, invStds) = (w.values, b.values, invStdTensor.values)
        withExtendedLifetime(x) {
            let (input, output) = (x.pointer, result.pointer)
            if spatial == 1 {
                let (meanValues, scales) = (meanTensor.values, zip(weights, invStds).map { $0 * $1 })
                Parallel.forEachRange(n, minimumPerPiece: imagesPerPiece(c: c, spatial: 1)) { rows in
                    BatchNormKernels.normalize(
                        input, into: output, images: rows, channels: c, spatial: 1, mean: meanValues, scale: scales,
                        shift: biases)
                }
                return
            }
            Parallel.forEachRange(c, minimumPerPiece: channelsPerPiece(count: n * spatial)) { channels in
                for channel in channels {
                    // out = w · (x - mean) · invStd + b
                    let scale = weights[channel] * invStds[channel]
                    for row in 0..<n {
                        let start = (row * c + channel) * spatial
                        BatchNormKernels.normalize(
                            input + start, into: output + start, count: spatial, mean: Float(means[channel]),
                            scale: scale, shift: biases[channel])
                    }
                }
            }
        }
        out = result
        mean = meanTensor
        invStd = invStdTensor
        return ((means, variances), total)
    }

    /// The training backward of one replica: `b.g = Σ out.g` and `w.g = Σ out.g · xhat` over its
    /// own rows (its share of the batch's gradient), and `inp.g` with the sums of the whole batch,
    /// `inp.g = w · invStd · (out.g - Σ out.g / N - xhat · Σ(out.g · xhat) / N)`, the sums and
    /// `N` (`total`) over every replica.
    private func synchronizedBackward(
        _ x: Tensor, _ g: Tensor, n: Int, c: Int, spatial: Int, group: any ReplicaGroup, total: Int
    ) {
        let inputGradient = Tensor(uninitializedShape: x.shape)
        // [Σ out.g per channel, Σ out.g · xhat per channel], this replica's rows.
        var sums = [Double](repeating: 0, count: 2 * c)
        let (meanValues, invStdValues, weights) = (mean.values, invStd.values, w.values)
        withExtendedLifetime((x, g)) {
            let (input, gradient, result) = (x.pointer, g.pointer, inputGradient.pointer)
            sums.withUnsafeMutableBufferPointer { sums in
                if spatial == 1 {  // whole rows: per channel the same additions in row order, from 0
                    BatchNormKernels.addGradientSums(
                        gradient, input, images: 0..<n, channels: c, spatial: 1, mean: meanValues,
                        invStd: invStdValues, into: sums.baseAddress!, sums.baseAddress! + c)
                    return
                }
                Parallel.forEachRange(c, minimumPerPiece: channelsPerPiece(count: n * spatial)) { channels in
                    for channel in channels {
                        var sumG = 0.0
                        var sumGXhat = 0.0
                        for row in 0..<n {
                            let start = (row * c + channel) * spatial
                            let (g, gXhat) = BatchNormKernels.gradientSums(
                                gradient + start, input + start, count: spatial, mean: meanValues[channel],
                                invStd: invStdValues[channel])
                            sumG += g
                            sumGXhat += gXhat
                        }
                        sums[channel] = sumG
                        sums[c + channel] = sumGXhat
                    }
                }
            }
            b.g = Tensor(shape: [c], values: sums[0..<c].map { Float($0) })
            w.g = Tensor(shape: [c], values: sums[c...].map { Float($0) })
            sums.withUnsafeMutableBufferPointer { group.sum($0) }
            if spatial == 1 {
                let meanG = sums[0..<c].map { Float($0 / Double(total)) }
                let meanGXhat = sums[c...].map { Float($0 / Double(total)) }
                let scales = zip(weights, invStdValues).map { $0 * $1 }
                Parallel.forEachRange(n, minimumPerPiece: imagesPerPiece(c: c, spatial: 1)) { rows in
                    BatchNormKernels.inputGradient(
                        gradient, input, into: result, images: rows, channels: c, spatial: 1, mean: meanValues,
                        invStd: invStdValues, meanG: meanG, meanGXhat: meanGXhat, scale: scales)
                }
                return
            }
            Parallel.forEachRange(c, minimumPerPiece: channelsPerPiece(count: n * spatial)) { channels in
                for channel in channels {
                    let meanG = Float(sums[channel] / Double(total))
                    let meanGXhat = Float(sums[c + channel] / Double(total))
                    for row in 0..<n {
                        let start = (row * c + channel) * spatial
                        BatchNormKernels.inputGradient(
                            gradient + start, input + start, into: result + start, count: spatial,
                            mean: meanValues[channel], invStd: invStdValues[channel], meanG: meanG,
                            meanGXhat: meanGXhat, scale: weights[channel] * invStdValues[channel])
                    }
                }
            }
        }
        inp.g = inputGradient
    }

    // MARK: - Helpers

    /// `running = (1 - momentum) · running + momentum · batch`, with the unbiased variance
    /// `var · N / (N - 1)` for `runningVar` (PyTorch's update), in place.
    private func updateRunningStatistics(_ statistics: (mean: [Double], variance: [Double]), count: Int) {
        let momentum = momentum
        let correction = Double(count) / Double(count - 1)
        runningMean.withUnsafeMutableBufferPointer { running in
            for channel in running.indices {
                running[channel] = (1 - momentum) * running[channel] + momentum * Float(statistics.mean[channel])
            }
        }
        runningVar.withUnsafeMutableBufferPointer { running in
            for channel in running.indices {
                let unbiased = Float(statistics.variance[channel] * correction)
                running[channel] = (1 - momentum) * running[channel] + momentum * unbiased
            }
        }
    }

    /// `(n, c, h·w)` for an input `(n, c)` (`h·w = 1`) or `(n, c, h, w)`.
    /// - Precondition: the rank is 2 or 4 and `c` is the layer's features.
    private func split(_ inp: Tensor) -> (n: Int, c: Int, spatial: Int) {
        precondition(
            inp.rank == 2 || inp.rank == 4,
            "BatchNorm: expects an input of shape (n, c) or (n, c, h, w), got \(inp.shape)")
        precondition(
            inp.shape[1] == w.count,
            "BatchNorm: input of shape \(inp.shape) has \(inp.shape[1]) channels, the layer \(w.count) features")
        return (inp.shape[0], inp.shape[1], inp.rank == 4 ? inp.shape[2] * inp.shape[3] : 1)
    }

    /// How many channels one thread's piece holds, so that a piece has enough work to pay for
    /// the thread (each channel is `count` values): at least ``valuesPerPiece`` values.
    private func channelsPerPiece(count: Int) -> Int {
        Swift.max(1, Self.valuesPerPiece / Swift.max(count, 1))
    }

    /// The fewest values in a thread's piece: 64 Ki. A value costs this layer a few nanoseconds
    /// (two or three passes, the sums in Double), several times an elementwise operation's, so a
    /// piece pays for a thread at half the elementwise minimum (128 Ki). At that minimum the cnn
    /// preset's second batch norm (`[128, 32, 7, 7]`, 200 Ki values) ran on one core; now on both
    /// (`bench --only cnn`, four alternating runs: that layer 658-764 -> 415-554 ms an epoch, the
    /// first one unchanged). A piece holds whole channels (data-parallel replicas) or whole blocks
    /// of images (``imagesPerBlock``), so the split changes no bits.
    static let valuesPerPiece = 1 << 16
}
