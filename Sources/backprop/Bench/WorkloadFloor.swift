import BackpropCore
import BackpropNetwork

/// The least work a benchmark's workload does, counted from its shapes: the floating-point
/// operations of its matrix products and convolutions, and the bytes it cannot help moving
/// between memory and the processor.
///
/// FLOPs are `2 ×` the multiply-adds of the products (the work an FMA does); elementwise work
/// (ReLU, the losses, batch norm, pooling, the optimizers' updates) is left out, a few percent of
/// the products. Bytes are the traffic no order of the work avoids: the tensors too large for the
/// caches, read or written once each time the algorithm must touch them; the weights, the
/// optimizer's state and a minibatch's tensors are left out. Both are lower bounds, so the floor
/// built on them (``WorkloadFloor``) is one too.
struct WorkloadCost: Sendable, Equatable {
    /// Floating-point operations: 2 per multiply-add of the products.
    let flops: Double
    /// Bytes moved between memory and the processor.
    let bytes: Double

    /// The seed's full-batch step, `loss = model(x, y); model.backward()`, with `x.g`, for
    /// `x (n, m)` and `nh` hidden units (one output):
    ///
    ///     forward   x • w1 (n·m·nh), r • w2 (n·nh·1)
    ///     backward  out.g • w2ᵀ (n·1·nh), rᵀ • out.g (nh·n·1),
    ///               x.g = out.g • w1ᵀ (n·nh·m), w1.g = xᵀ • out.g (m·n·nh)
    ///     FLOPs = 2 (3·n·m·nh + 3·n·nh)      (11.78 G for 50000 × 784, nh 50)
    ///     bytes = 3·n·m·4                    (x read by the forward product and again by w1.g's,
    ///                                          x.g written: 470 MB; the (n, nh) tensors are left out)
    static func seedStep(rows n: Int, inputs m: Int, hidden nh: Int) -> WorkloadCost {
        let (n, m, nh) = (Double(n), Double(m), Double(nh))
        return WorkloadCost(flops: 2 * (3 * n * m * nh + 3 * n * nh), bytes: 3 * n * m * 4)
    }

    /// One epoch of `recipe` over `rows` examples (`N`), forward and backward, in batches (the
    /// count of batches does not matter: each example goes through the products once).
    ///
    /// For each layer with a product, `P` its multiply-adds per example in the forward pass:
    ///
    ///     Lin (in → out)                                  P = in·out
    ///     Conv2d (cIn → cOut, kh × kw, output oh × ow)    P = cOut·(cIn·kh·kw)·(oh·ow)
    ///
    /// the backward pass does `P` again for `w.g`, and again for `inp.g` unless the layer skips it
    /// (`needsInputGradient` off: the first layer that learns, whose input is the data, or what
    /// layers that learn nothing made of it; `Model.firstTrainableLayer`):
    ///
    ///     FLOPs = 2·N·Σ P·(3, or 2 for the first layer that learns)
    ///     bytes = N·(m + 1)·4       (the m pixels and the label of each example, read once
    ///                                 when the batches are gathered)
    ///
    /// 784-50-10: 2·N·(784·50·2 + 50·10·3) = 7.99 G; 784-256-128-10: 50.4 G; the `cnn` preset:
    /// 414.7 G (N = 50000).
    static func epoch(_ recipe: EpochBenchmark.Recipe, rows: Int) -> WorkloadCost {
        var generator = RandomGenerator(seed: 0)
        let model: Model
        let outputShapes: [[Int]]  // per example, after each layer
        if let described = recipe.describedModel(generator: &generator) {
            model = described.model
            // The recipe's own layers fit its input (describedModel built them), so this cannot fail.
            outputShapes = try! described.description.shapes(input: described.inputShape)
        } else {
            model = Model.mlp(sizes: recipe.sizes, loss: CrossEntropy(), generator: &generator)
            outputShapes = []
        }
        var perExample = 0.0  // multiply-adds, forward and backward
        for (index, layer) in model.layers.enumerated() {
            let output = outputShapes.isEmpty ? [] : outputShapes[index]
            guard let layerMultiplyAdds = multiplyAdds(of: layer, outputShape: output) else { continue }
            perExample += layerMultiplyAdds.forward + layerMultiplyAdds.backward
        }
        let n = Double(rows)
        return WorkloadCost(flops: 2 * n * perExample, bytes: n * Double(recipe.sizes[0] + 1) * 4)
    }

    /// One layer's multiply-adds for one example, forward and backward (see
    /// ``epoch(_:rows:)``), or `nil` for a layer without a product (ReLU, pooling, …):
    ///
    ///     Lin (in → out)                                  forward P = in·out
    ///     Conv2d (cIn → cOut, kh × kw, output oh × ow)    forward P = cOut·(cIn·kh·kw)·(oh·ow)
    ///     backward = P for `w.g`, + P for `inp.g` unless `needsInputGradient` is off
    ///
    /// `outputShape` is one example's output, `(cOut, oh, ow)` (read only for a `Conv2d`).
    static func multiplyAdds(of layer: any Layer, outputShape: [Int]) -> (forward: Double, backward: Double)? {
        let forward: Double
        let needsInputGradient: Bool
        if let lin = layer as? Lin {
            forward = Double(lin.w.shape[0] * lin.w.shape[1])  // in·out
            needsInputGradient = lin.needsInputGradient
        } else if let conv = layer as? Conv2d, outputShape.count == 3 {
            let window = conv.w.shape[1] * conv.w.shape[2] * conv.w.shape[3]  // cIn·kh·kw
            forward = Double(outputShape[0] * window * outputShape[1] * outputShape[2])
            needsInputGradient = conv.needsInputGradient
        } else {
            return nil
        }
        return (forward, forward * (needsInputGradient ? 2 : 1))
    }

    /// One product `(m, k) • (k, n)`:
    ///
    ///     FLOPs = 2·m·k·n
    ///     bytes = 4·(m·k + k·n + m·n)     (A and B read once, C written once)
    static func product(_ shape: MatMulBenchmark.Shape) -> WorkloadCost {
        let (m, k, n) = (Double(shape.m), Double(shape.k), Double(shape.n))
        return WorkloadCost(flops: 2 * m * k * n, bytes: 4 * (m * k + k * n + m * n))
    }
}

/// A workload's measured time against the least time the machine's limits allow it:
///
///     floor = max(FLOPs / FMA rate, bytes / bandwidth)        ratio = time / floor
///
/// with the rate and the bandwidth of ``MachinePeak`` (its fastest FMA kernel, its faster
/// stream). The larger term names what binds: `arithmetic` or `memory`.
struct WorkloadFloor: Sendable, Encodable {
    /// The work counted.
    let cost: WorkloadCost
    /// `FLOPs / FMA rate`.
    let arithmeticSeconds: Double
    /// `bytes / bandwidth`.
    let memorySeconds: Double
    /// The time measured.
    let measuredSeconds: Double

    /// The larger of the two bounds.
    var seconds: Double { Swift.max(arithmeticSeconds, memorySeconds) }

    /// `arithmetic` when the FMA rate binds, else `memory`.
    var bound: String { arithmeticSeconds >= memorySeconds ? "arithmetic" : "memory" }

    /// `measured / floor`: 1 at the machine's limit.
    var ratio: Double { measuredSeconds / seconds }

    /// The floor of `cost` on `peak`, for a workload measured at `measuredSeconds`.
    init(cost: WorkloadCost, peak: MachinePeak, measuredSeconds: Double) {
        self.cost = cost
        self.arithmeticSeconds = cost.flops / (peak.fmaGflops * 1e9)
        self.memorySeconds = cost.bytes / (peak.bandwidthGBps * 1e9)
        self.measuredSeconds = measuredSeconds
    }

    private enum CodingKeys: String, CodingKey {
        case flops, bytes, bound, ratio
        case arithmeticMilliseconds = "arithmetic_ms"
        case memoryMilliseconds = "memory_ms"
        case floorMilliseconds = "floor_ms"
        case timeMilliseconds = "time_ms"
    }

    /// Writes `flops`, `bytes`, `arithmetic_ms`, `memory_ms`, `floor_ms` (the larger), `bound`,
    /// `time_ms` (measured) and `ratio` (`time_ms / floor_ms`).
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(cost.flops, forKey: .flops)
        try container.encode(cost.bytes, forKey: .bytes)
        try container.encode(arithmeticSeconds * 1000, forKey: .arithmeticMilliseconds)
        try container.encode(memorySeconds * 1000, forKey: .memoryMilliseconds)
        try container.encode(seconds * 1000, forKey: .floorMilliseconds)
        try container.encode(bound, forKey: .bound)
        try container.encode(measuredSeconds * 1000, forKey: .timeMilliseconds)
        try container.encode(ratio, forKey: .ratio)
    }
}
