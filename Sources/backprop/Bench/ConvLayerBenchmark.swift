import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining

/// Measures GFLOP/s of each convolution of a convnet recipe, forward and backward, one layer at a
/// time (issue 13).
///
/// The layers are found by building the recipe's model; each is timed as a fresh `Conv2d` of the
/// same weight shape, stride and padding, with random weights and bias, on a random input of the
/// shape it gets in the model, `[n, cIn, h, w]` for the recipe's batch size `n`. Its
/// `needsInputGradient` is the model's (off for a first layer, whose input is the data). Nothing
/// requires gradients, so autograd records nothing and the layer runs its own kernels. With
/// `oh`, `ow` the output size, the floating-point operations are:
/// - forward `out = cols • Wᵀ + b`: `2 n cOut (cIn kh kw) (oh ow)`;
/// - backward: the same for `w.g`, and the same again for `inp.g` when it is computed (`b.g`,
///   `n cOut oh ow` additions, is left out).
///
/// Before timing, every layer is checked on ``checkBatch`` images against reference loops in
/// Double written straight from the definition (``referenceForward(_:weights:bias:stride:padding:)``
/// and ``referenceBackward(_:input:weights:stride:padding:)``), as ``MatMulBenchmark`` checks
/// its routes.
struct ConvLayerBenchmark {
    /// One convolution of the recipe's model, where it sits and what it gets.
    struct Layer: Sendable, Encodable {
        /// The layer's name in the model's checkpoints, `layers.I` (`I` its index from 0).
        let name: String
        /// The description entry it was built from (`conv 16 3 pad 1`).
        let entry: String
        /// The input shape at the layer's position, for the timed batch. // (n, cIn, h, w)
        let inputShape: [Int]
        /// The kernels' shape. // (cOut, cIn, kh, kw)
        let weightShape: [Int]
        /// The step between windows.
        let stride: Int
        /// The zeros added on each side.
        let padding: Int
        /// Whether the layer has a bias.
        let bias: Bool
        /// Whether its `backward()` computes `inp.g` (off for the first layer, as in the model).
        let needsInputGradient: Bool

        /// The output shape, `[n, cOut, oh, ow]` with `oh = (h + 2 padding - kh) / stride + 1`.
        var outputShape: [Int] {
            let oh = (inputShape[2] + 2 * padding - weightShape[2]) / stride + 1
            let ow = (inputShape[3] + 2 * padding - weightShape[3]) / stride + 1
            return [inputShape[0], weightShape[0], oh, ow]
        }

        /// Floating-point operations of the forward pass: `2 n cOut (cIn kh kw) (oh ow)`.
        var forwardFlops: Double {
            let output = outputShape
            let window = weightShape[1] * weightShape[2] * weightShape[3]
            return 2 * Double(output[0]) * Double(output[1]) * Double(window) * Double(output[2] * output[3])
        }

        /// Floating-point operations of the backward pass: the forward's for `w.g`, twice that
        /// with `inp.g`.
        var backwardFlops: Double { needsInputGradient ? 2 * forwardFlops : forwardFlops }

        /// The same layer for a batch of `n` images.
        func withBatch(_ n: Int) -> Layer {
            Layer(
                name: name, entry: entry, inputShape: [n] + inputShape.dropFirst(), weightShape: weightShape,
                stride: stride, padding: padding, bias: bias, needsInputGradient: needsInputGradient)
        }

        private enum CodingKeys: String, CodingKey {
            case name, entry, stride, padding, bias
            case inputShape = "input_shape"
            case weightShape = "weight_shape"
            case needsInputGradient = "input_gradient"
        }
    }

    /// What one layer measured.
    struct Measurement: Sendable, Encodable {
        /// The layer measured.
        let layer: Layer
        /// Median milliseconds of `conv(inp)`.
        let forwardMilliseconds: Double
        /// Median milliseconds of `conv.backward()`.
        let backwardMilliseconds: Double
        /// ``Layer/forwardFlops`` over the forward's median seconds, in GFLOP/s.
        let forwardGflops: Double
        /// ``Layer/backwardFlops`` over the backward's median seconds, in GFLOP/s.
        let backwardGflops: Double
        /// Tensor → `max |fast - reference| / max |reference|` on the check batch: `out`, `w.g`,
        /// `b.g` (with a bias), `inp.g` (when the layer computes it).
        let errors: [String: Double]

        /// The largest of ``errors``.
        var worstError: Double { errors.values.max() ?? 0 }

        /// Writes the layer's fields, then the measurements, flat in one object.
        func encode(to encoder: any Encoder) throws {
            try layer.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(forwardMilliseconds, forKey: .forwardMilliseconds)
            try container.encode(backwardMilliseconds, forKey: .backwardMilliseconds)
            try container.encode(forwardGflops, forKey: .forwardGflops)
            try container.encode(backwardGflops, forKey: .backwardGflops)
            try container.encode(errors, forKey: .errors)
        }

        private enum CodingKeys: String, CodingKey {
            case errors
            case forwardMilliseconds = "forward_ms"
            case backwardMilliseconds = "backward_ms"
            case forwardGflops = "forward_gflops"
            case backwardGflops = "backward_gflops"
        }
    }

    /// Images in the reference check unless told otherwise.
    static let defaultCheckBatch = 2

    /// The convolutions measured, with the timed batch's input shapes.
    let layers: [Layer]
    /// Images in the reference check.
    let checkBatch: Int

    /// A benchmark of the convolutions of `recipe`'s model at batch `batchSize` (the recipe's
    /// own when `nil`), checked on `checkBatch` images. A recipe without `layers` (an MLP) has no
    /// convolutions.
    init(recipe: EpochBenchmark.Recipe = .cnn, batchSize: Int? = nil, checkBatch: Int = defaultCheckBatch) {
        self.layers = ConvLayerBenchmark.convolutions(of: recipe, batchSize: batchSize ?? recipe.batchSize)
        self.checkBatch = checkBatch
    }

    /// The convolutions of `recipe`'s model on 28×28 single-channel images, in layer order, their
    /// input shapes for a batch of `batchSize` (none for an MLP recipe).
    static func convolutions(of recipe: EpochBenchmark.Recipe, batchSize: Int) -> [Layer] {
        var generator = RandomGenerator(seed: 0)
        guard let (model, description, inputShape) = recipe.describedModel(generator: &generator) else { return [] }
        // The recipe's own layers fit its input (describedModel built them), so this cannot fail.
        let inputs = [inputShape] + (try! description.shapes(input: inputShape)).dropLast()
        return model.layers.enumerated().compactMap { i, layer in
            guard let conv = layer as? Conv2d else { return nil }
            return Layer(
                name: "layers.\(i)", entry: description.entries[i].description, inputShape: [batchSize] + inputs[i],
                weightShape: conv.w.shape, stride: conv.stride, padding: conv.padding, bias: conv.b != nil,
                needsInputGradient: conv.needsInputGradient)
        }
    }

    /// Checks, then times every layer: forward and backward, each the median of `runs` after a
    /// warm-up.
    func run(runs: Int = 3) -> [Measurement] {
        layers.enumerated().map { index, layer in
            let seed = UInt64(10 * index)
            let (checkConv, checkInput, checkGradient) = ConvLayerBenchmark.operands(
                layer.withBatch(checkBatch), seed: seed)
            let errors = ConvLayerBenchmark.check(checkConv, input: checkInput, outputGradient: checkGradient)
            let (conv, input, gradient) = ConvLayerBenchmark.operands(layer, seed: seed + 1)
            let forward = Timing.median(Timing.measure(runs: runs) { _ = conv(input) })
            conv.out.g = gradient
            let backward = Timing.median(Timing.measure(runs: runs) { conv.backward() })
            return Measurement(
                layer: layer, forwardMilliseconds: forward * 1e3, backwardMilliseconds: backward * 1e3,
                forwardGflops: layer.forwardFlops / forward * 1e-9,
                backwardGflops: layer.backwardFlops / backward * 1e-9,
                errors: errors)
        }
    }

    /// A fresh `Conv2d` shaped as `layer` with random weights and bias, a random input of
    /// `layer.inputShape` and a random output gradient of `layer.outputShape`; none requires
    /// gradients.
    static func operands(_ layer: Layer, seed: UInt64) -> (conv: Conv2d, input: Tensor, outputGradient: Tensor) {
        var generator = RandomGenerator(seed: seed)
        let w = Tensor.randn(layer.weightShape, generator: &generator)  // (cOut, cIn, kh, kw)
        let b = layer.bias ? Tensor.randn([layer.weightShape[0]], generator: &generator) : nil  // (cOut)
        let conv = Conv2d(w, b, stride: layer.stride, padding: layer.padding)
        conv.needsInputGradient = layer.needsInputGradient
        let input = Tensor.randn(layer.inputShape, generator: &generator)  // (n, cIn, h, w)
        let gradient = Tensor.randn(layer.outputShape, generator: &generator)  // (n, cOut, oh, ow)
        return (conv, input, gradient)
    }

    /// Runs `conv` forward on `x` and backward from `g`, and returns each result's error against
    /// the reference loops: `out`, `w.g`, `b.g` (with a bias), `inp.g` (when `conv` computes it).
    static func check(_ conv: Conv2d, input x: Tensor, outputGradient g: Tensor) -> [String: Double] {
        let out = conv(x)
        conv.out.g = g
        conv.backward()
        let forward = referenceForward(x, weights: conv.w, bias: conv.b, stride: conv.stride, padding: conv.padding)
        let backward = referenceBackward(g, input: x, weights: conv.w, stride: conv.stride, padding: conv.padding)
        var errors = [
            "out": relativeError(out, forward.values),
            "w.g": relativeError(conv.w.g, backward.w),
        ]
        if let b = conv.b { errors["b.g"] = relativeError(b.g, backward.b) }
        if conv.needsInputGradient { errors["inp.g"] = relativeError(x.g, backward.inp) }
        return errors
    }

    /// The convolution from its definition, in Double, with zeros outside the image:
    ///
    ///     out[i, o, oy, ox] = b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · x[i, c, oy·s − p + ky, ox·s − p + kx]
    ///
    /// for `s` the stride and `p` the padding; `oh = (h + 2p − kh) / s + 1`, `ow` likewise.
    /// - Precondition: `x (n, cIn, h, w)`, `w (cOut, cIn, kh, kw)`, `b (cOut)` if any.
    /// - Returns: the output's shape `[n, cOut, oh, ow]` and its values, row-major.
    static func referenceForward(
        _ x: Tensor, weights w: Tensor, bias b: Tensor?, stride s: Int, padding p: Int
    ) -> (shape: [Int], values: [Double]) {
        precondition(x.rank == 4 && w.rank == 4 && x.shape[1] == w.shape[1], "referenceForward: \(x.shape), \(w.shape)")
        let (n, cIn, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (cOut, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let (oh, ow) = ((h + 2 * p - kh) / s + 1, (wd + 2 * p - kw) / s + 1)
        let xv = x.values.map(Double.init)
        let wv = w.values.map(Double.init)
        let bv = b?.values.map(Double.init) ?? [Double](repeating: 0, count: cOut)
        var out = [Double](repeating: 0, count: n * cOut * oh * ow)
        for i in 0..<n {
            for o in 0..<cOut {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        var sum = bv[o]
                        for c in 0..<cIn {
                            for ky in 0..<kh {
                                let iy = oy * s - p + ky
                                guard iy >= 0 && iy < h else { continue }
                                for kx in 0..<kw {
                                    let ix = ox * s - p + kx
                                    guard ix >= 0 && ix < wd else { continue }
                                    sum +=
                                        wv[((o * cIn + c) * kh + ky) * kw + kx] * xv[((i * cIn + c) * h + iy) * wd + ix]
                                }
                            }
                        }
                        out[((i * cOut + o) * oh + oy) * ow + ox] = sum
                    }
                }
            }
        }
        return ([n, cOut, oh, ow], out)
    }

    /// The convolution's gradients from their definitions, in Double, for `g` the output's
    /// gradient and `(iy, ix) = (oy·s − p + ky, ox·s − p + kx)` (terms outside the image are zero):
    ///
    ///     w.g[o, c, ky, kx] = Σ_{i, oy, ox} g[i, o, oy, ox] · x[i, c, iy, ix]
    ///     b.g[o]            = Σ_{i, oy, ox} g[i, o, oy, ox]
    ///     inp.g[i, c, iy, ix] = Σ over (o, ky, kx, oy, ox) landing on (iy, ix) of g[i, o, oy, ox] · w[o, c, ky, kx]
    ///
    /// `inp.g`'s sum is gathered by visiting every term once and adding it where it lands.
    /// - Precondition: `g (n, cOut, oh, ow)`, `x (n, cIn, h, w)`, `w (cOut, cIn, kh, kw)` that fit.
    /// - Returns: `w.g`, `b.g` and `inp.g`, each row-major in its tensor's shape.
    static func referenceBackward(
        _ g: Tensor, input x: Tensor, weights w: Tensor, stride s: Int, padding p: Int
    ) -> (w: [Double], b: [Double], inp: [Double]) {
        let (n, cIn, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (cOut, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let (oh, ow) = ((h + 2 * p - kh) / s + 1, (wd + 2 * p - kw) / s + 1)
        precondition(g.shape == [n, cOut, oh, ow], "referenceBackward: g \(g.shape), x \(x.shape), w \(w.shape)")
        let xv = x.values.map(Double.init)
        let wv = w.values.map(Double.init)
        let gv = g.values.map(Double.init)
        var wg = [Double](repeating: 0, count: w.count)
        var bg = [Double](repeating: 0, count: cOut)
        var inpg = [Double](repeating: 0, count: x.count)
        for i in 0..<n {
            for o in 0..<cOut {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        let gradient = gv[((i * cOut + o) * oh + oy) * ow + ox]
                        bg[o] += gradient
                        for c in 0..<cIn {
                            for ky in 0..<kh {
                                let iy = oy * s - p + ky
                                guard iy >= 0 && iy < h else { continue }
                                for kx in 0..<kw {
                                    let ix = ox * s - p + kx
                                    guard ix >= 0 && ix < wd else { continue }
                                    let wi = ((o * cIn + c) * kh + ky) * kw + kx
                                    let xi = ((i * cIn + c) * h + iy) * wd + ix
                                    wg[wi] += gradient * xv[xi]
                                    inpg[xi] += gradient * wv[wi]
                                }
                            }
                        }
                    }
                }
            }
        }
        return (wg, bg, inpg)
    }

    /// `max |result - reference| / max |reference|`, as ``MatMulBenchmark/relativeError(_:_:)``,
    /// except that a NaN in `result` gives NaN (which fails every `error < limit`).
    /// - Precondition: `result` has `reference.count` elements.
    static func relativeError(_ result: Tensor, _ reference: [Double]) -> Double {
        let r = result.values
        precondition(r.count == reference.count, "relativeError: \(r.count) values against \(reference.count)")
        var worst = 0.0
        var scale = 0.0
        for i in 0..<reference.count {
            // A NaN, once met, is kept: `max` would drop it.
            let d = abs(Double(r[i]) - reference[i])
            if d.isNaN || d > worst { worst = d }
            scale = Swift.max(scale, abs(reference[i]))
        }
        return worst / Swift.max(scale, .leastNormalMagnitude)
    }
}
