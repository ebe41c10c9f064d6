import BackpropCore

/// Dropout: in training, zeroes each element with probability `p` and scales the rest by
/// `1 / (1 - p)`, so that the expected output is the input; in evaluation, the identity
/// (PyTorch's `nn.Dropout(p)`, "inverted" dropout).
///
/// Forward (training): `out = inp · mask / (1 - p)`, with `mask` of the shape of `inp`, each
/// element 1 with probability `1 - p` and 0 otherwise (Bernoulli(1 - p), from 32-bit uniform
/// samples), drawn anew at each call from the layer's own generator (seeded: the same seed gives
/// the same masks).
/// Backward (training): `inp.g = out.g · mask / (1 - p)`.
/// Evaluation (``isTraining`` false): `out = inp` (a view of it) and `inp.g = out.g`.
///
/// Autograd records `inp * mask / (1 - p)` (the mask a constant); where nothing is recorded, the
/// same arithmetic in one pass. ``freezesMask`` keeps the last mask for the next calls, so that
/// the gradient check's finite differences see the same function as its backward pass.
public final class Dropout: Layer, ModeDependentLayer {
    /// The probability of zeroing an element, in `[0, 1)`.
    public let p: Float
    /// `true` (the default) to drop elements, `false` for the identity (evaluation).
    public var isTraining = true
    /// When `true`, training calls reuse the last mask instead of drawing a new one (a new one is
    /// drawn if there is none yet).
    public var freezesMask = false
    /// In a data-parallel run (see `ReplicaGroup`), this replica's rows of the whole batch and the
    /// batch's row count; `nil` (the default) when the input is the whole batch. Training calls
    /// then draw the mask of the whole batch, `(batchRows, …)`, as a one-process run would, and
    /// keep `rows` of it: every replica draws the same numbers, and the replicas' masks together
    /// are the one-process mask.
    public var batchShard: (rows: Range<Int>, batchRows: Int)?
    /// The mask of the last training call: 1 for a kept element, 0 for a dropped one; `nil`
    /// before the first. // (n, …), the shape of inp
    public private(set) var mask: Tensor?
    /// The input of the last call (the very object passed in). // (n, …)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, …), the shape of inp
    public private(set) var out: Tensor!

    /// The layer's own random numbers, for the masks.
    private var generator: RandomGenerator
    /// Whether the last call dropped (training) or passed `inp` through (evaluation): what
    /// `backward()` undoes, whatever ``isTraining`` says by then.
    private var droppedInLastCall = false

    /// Creates the layer with drop probability `p`, its masks drawn from a generator seeded with
    /// `seed`.
    /// - Precondition: `0 ≤ p < 1`.
    public init(p: Float, seed: UInt64 = 0) {
        precondition(p >= 0 && p < 1, "Dropout: p = \(p) must be in [0, 1)")
        self.p = p
        self.generator = RandomGenerator(seed: seed)
    }

    /// Starts the masks again from a generator seeded with `seed`: the training loop reseeds every
    /// dropout layer at the start of each epoch from the run's seed, the epoch and the layer's
    /// position, so that a run resumed at an epoch draws the masks the uninterrupted run would.
    public func reseed(_ seed: UInt64) {
        generator = RandomGenerator(seed: seed)
    }

    /// None: Dropout learns nothing.
    public var parameters: [Tensor] { [] }

    /// The forward pass: stores `inp`; in training draws a mask (unless ``freezesMask`` keeps the
    /// last one) and computes `out = inp · mask / (1 - p)`; in evaluation `out` is `inp` itself,
    /// viewed. Returns `out`.
    /// - Precondition: a frozen mask has the shape of `inp`.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        droppedInLastCall = isTraining
        guard isTraining else {
            out = inp.reshape(inp.shape)
            return out
        }
        let mask: Tensor
        if freezesMask, let frozen = self.mask {
            precondition(
                frozen.shape == inp.shape,
                "Dropout: the frozen mask of shape \(frozen.shape) does not fit the input of shape \(inp.shape)")
            mask = frozen
        } else if let shard = batchShard {
            precondition(
                inp.rank >= 1 && shard.rows.count == inp.shape[0] && shard.rows.lowerBound >= 0
                    && shard.rows.upperBound <= shard.batchRows,
                "Dropout: the shard \(shard.rows) of a batch of \(shard.batchRows) rows does not fit the input of "
                    + "shape \(inp.shape)")
            mask = drawMask([shard.batchRows] + inp.shape.dropFirst()).rows(shard.rows).contiguous()
            self.mask = mask
        } else {
            mask = drawMask(inp.shape)
            self.mask = mask
        }
        let keep = 1 - p
        if Tensor.wouldRecord(inp) {
            out = inp * mask / keep
        } else {
            out = Dropout.masked(inp, mask, keep: keep, operation: "Dropout")
        }
        return out
    }

    /// The backward pass: `inp.g = out.g · mask / (1 - p)` in training, `inp.g = out.g` in
    /// evaluation  // (n, …)
    public func backward() {
        checkReadyForBackward()
        guard droppedInLastCall, let mask else {
            inp.g = out.g.reshape(inp.shape)
            return
        }
        let keep = 1 - p
        inp.g = Dropout.masked(out.g, mask, keep: keep, operation: "Dropout.backward")
    }

    /// `x · mask / keep`, element by element, in a new tensor: the loop written out, so that it
    /// is vectorised (a closure handed to `Tensor.mapElements` would be called per element).
    /// - Precondition: `x` and `mask` have the same shape; otherwise stops naming `operation`.
    private static func masked(_ x: Tensor, _ mask: Tensor, keep: Float, operation: String) -> Tensor {
        precondition(x.shape == mask.shape, "\(operation): shapes \(x.shape) and \(mask.shape) differ")
        let (source, maskValues) = (x.contiguous(), mask.contiguous())
        let result = Tensor(uninitializedShape: x.shape)
        let (input, kept, out) = (source.pointer, maskValues.pointer, result.pointer)
        withExtendedLifetime((source, maskValues)) {
            Parallel.forEachRange(result.count, minimumPerPiece: Tensor.elementwiseMinimumPerWorker) { range in
                for i in range { out[i] = input[i] * kept[i] / keep }
            }
        }
        return result
    }

    /// Elements of a mask drawn from one generator (``drawMask(_:)``): the blocks are drawn in
    /// parallel, and their number depends on the mask's size alone.
    static let maskBlock = 4096

    /// A new mask: each element 1 with probability `1 - p`, else 0. Each call takes one 64-bit
    /// draw `s` from the layer's generator; the mask's elements, row-major, fall in blocks of
    /// ``maskBlock``, and block `b` draws from its own `RandomGenerator(seed: s ^ b)`: each 64-bit
    /// draw gives two uniform 32-bit samples `u` (low half first), and an element is kept when
    /// `u ≥ p · 2³²` (`p` rounded to a multiple of 2⁻³²). The blocks do not depend on the number
    /// of threads, so neither does the mask.
    ///
    /// (One stream for the whole mask was a serial stretch of 0.4 ms a step in the cnn preset's
    /// `dropout` of 200,704 values, long enough for the pool's helper to fall asleep: the next
    /// layer then waited about 140 µs for it to wake, on Zen 1.)
    private func drawMask(_ shape: [Int]) -> Tensor {
        let mask = Tensor(uninitializedShape: shape)
        // At most 2³² - 2⁸: the largest Float below 1 is 1 - 2⁻²⁴.
        let threshold = UInt32((Double(p) * 0x1p32).rounded())
        let seed = generator.next()
        let count = mask.count
        let block = Dropout.maskBlock
        let blocks = (count + block - 1) / block
        let one = Float(1).bitPattern
        // Each block's samples are written over its elements, then turned into the bits of 1 or
        // 0 in place: a loop without branches that the compiler vectorises. (Compared one by one
        // as drawn, each element was a branch taken at random: three times the draw's cost.)
        mask.pointer.withMemoryRebound(to: UInt32.self, capacity: count) { bits in
            // A block takes about 10 µs (2.5 ns an element on Zen 1): four of them are worth a thread.
            Parallel.forEachRange(blocks, minimumPerPiece: 4) { range in
                for index in range {
                    var random = RandomGenerator(seed: seed ^ UInt64(index))
                    let start = index * block
                    let length = Swift.min(block, count - start)
                    let samples = bits + start
                    var i = 0
                    while i + 1 < length {
                        let draw = random.next()
                        samples[i] = UInt32(truncatingIfNeeded: draw)
                        samples[i + 1] = UInt32(truncatingIfNeeded: draw >> 32)
                        i += 2
                    }
                    if i < length { samples[i] = UInt32(truncatingIfNeeded: random.next()) }
                    for j in 0..<length { samples[j] = samples[j] >= threshold ? one : 0 }
                }
            }
        }
        return mask
    }
}
