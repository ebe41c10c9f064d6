import BackpropCore
import BackpropData
import BackpropNetwork

/// Minibatches of a dataset, in an order shuffled afresh for each epoch from a seed.
///
/// Batch `i` holds rows `order[i·batchSize ..< (i+1)·batchSize]` of `x` and `y` (the last batch
/// may be smaller). A row of `x` is everything after its first dimension: a vector of `m` pixels
/// for an MLP's `(N, m)`, an image for a convnet's `(N, c, h, w)`. The rows are gathered into
/// buffers that are reused from batch to batch, so a training step allocates nothing for its data.
///
/// With more than one thread (`Threads.count`), each call of ``batch(_:)`` also starts gathering
/// the next batch's rows in the background (`BackgroundWork`): the thread pool's helpers copy
/// them while the step's serial parts keep the caller busy, and the next call takes them (doing
/// itself whatever the helpers did not get to). The batches are the same either way.
///
/// NOTE: the tensors that ``batch(_:)`` returns are overwritten from the next call on. A model's
/// `inp` stays valid through its forward and backward pass, which is all a training step needs;
/// keep a `copy()` to hold on to a batch longer. `x` must not change while batches are drawn.
public final class Batches {
    /// The inputs, one row per example. // (N, m) or (N, c, h, w)
    public let x: Tensor
    /// The targets, one per example (class indices or values, as Float). // (N)
    public let y: Tensor
    /// The rows per batch (the last batch may have fewer).
    public let batchSize: Int
    /// The order of the rows for the current epoch.
    public private(set) var order: [Int]
    /// When set, the width of the images' rows: each epoch's ``shuffle(seed:epoch:)`` also draws
    /// which examples are flipped left to right (each with probability ½), and ``batch(_:)``
    /// reverses every run of `flipWidth` values of those (every pixel row of every channel).
    /// Seeded data augmentation: the flips depend on the seed and the epoch only, as the order
    /// does, so a resumed run draws the same ones. `nil` (the default): no flips.
    /// - Precondition (when set): positive, and it divides the size of a row of `x`.
    public var flipWidth: Int? {
        didSet {
            if let width = flipWidth {
                let rowSize = x.count / Swift.max(x.shape[0], 1)
                precondition(
                    width > 0 && rowSize % width == 0,
                    "Batches: flip width \(width) does not divide rows of \(rowSize) values (x \(x.shape))")
            }
            flipped = []
        }
    }
    /// Whether the example at each position of the epoch's order is flipped (empty: none).
    public private(set) var flipped: [Bool] = []
    /// Reused buffers for full batches (two, used in turn, so that the next batch can be gathered
    /// while the current one is in use) and for the smaller last one.
    private var fullBatches: [(x: Tensor, y: Tensor)]  // (batchSize, …), (batchSize)
    private var lastBatch: (x: Tensor, y: Tensor)?  // (N mod batchSize, …), (N mod batchSize)
    /// Which of `fullBatches` the last full batch was returned in.
    private var lastFull = 1
    /// The next batch, being gathered in the background: its first position in the order, its
    /// buffers (as many rows as it has), the work, and the row indices the work reads.
    private var ahead: (start: Int, buffers: (x: Tensor, y: Tensor), work: BackgroundWork)?
    private let aheadIndices: UnsafeMutablePointer<Int>

    /// Creates the batches, in the rows' own order until ``shuffle(seed:epoch:)`` is called.
    /// - Precondition: `x` has rank at least 2 (`(N, m)`, `(N, c, h, w)`, …) and `y` has `N`
    ///   elements; `batchSize > 0`.
    public init(x: Tensor, y: Tensor, batchSize: Int) {
        precondition(x.rank >= 2, "Batches: inputs must be rows (N, m) or (N, c, h, w), got shape \(x.shape)")
        precondition(y.count == x.shape[0], "Batches: \(y.count) targets for \(x.shape[0]) input rows")
        precondition(batchSize > 0, "Batches: batch size \(batchSize) must be positive")
        self.x = x.contiguous()
        self.y = y.contiguous()
        self.batchSize = batchSize
        self.order = Array(0..<x.shape[0])
        let rows = Swift.min(batchSize, x.shape[0])
        self.fullBatches = (0..<2).map { _ in
            (Tensor(uninitializedShape: Self.shape(x, rows: rows)), Tensor(uninitializedShape: [rows]))
        }
        self.aheadIndices = .allocateScratch(capacity: Swift.max(rows, 1), for: "the row indices of a batch")
    }

    deinit {
        ahead?.work.finish()
        aheadIndices.deallocate()
    }

    /// The shape of `rows` rows of `x`: `x`'s shape with `rows` first.
    private static func shape(_ x: Tensor, rows: Int) -> [Int] {
        [rows] + x.shape.dropFirst()
    }

    /// The number of examples, `N`.
    public var rowCount: Int { x.shape[0] }

    /// The number of batches per epoch: `⌈N / batchSize⌉`.
    public var count: Int { rowCount / batchSize + (rowCount % batchSize == 0 ? 0 : 1) }  // no overflow

    /// The rows of the epoch's last batch, its smallest: `batchSize`, or `N mod batchSize` when
    /// that is not 0 (all `N` rows when `N < batchSize`).
    public var smallestBatchRows: Int {
        rowCount % batchSize == 0 ? Swift.min(batchSize, rowCount) : rowCount % batchSize
    }

    /// Sets the order for `epoch` (counting from 0): a permutation drawn from a generator seeded
    /// with `seed` and `epoch` only, so that any epoch's order can be recomputed (to resume a run)
    /// and the same seed gives the same batches on every machine.
    public func shuffle(seed: UInt64, epoch: Int) {
        dropAhead()
        var generator = RandomGenerator(seed: Batches.epochSeed(seed: seed, epoch: epoch))
        order = generator.permutation(rowCount)
        if flipWidth != nil {
            // A generator of its own, so the order is the same with flips as without.
            var coins = RandomGenerator(seed: Batches.epochSeed(seed: seed ^ 0x5EED_F11B_0000_0001, epoch: epoch))
            flipped = (0..<rowCount).map { _ in coins.nextUniform() < 0.5 }
        }
    }

    /// The seed of epoch `epoch`'s shuffle: `seed` mixed with the epoch number.
    static func epochSeed(seed: UInt64, epoch: Int) -> UInt64 {
        seed ^ (UInt64(truncatingIfNeeded: epoch + 1) &* 0x9E37_79B9_7F4A_7C15)
    }

    /// Batch `index` of the current order: `(x (b, …), y (b))` (`x (b, m)` or `(b, c, h, w)`), in
    /// reused buffers.
    /// - Precondition: `0 ≤ index < count`.
    public func batch(_ index: Int) -> (x: Tensor, y: Tensor) {
        precondition(index >= 0 && index < count, "Batches: batch \(index) out of range 0..<\(count)")
        let start = index * batchSize
        let rows = Swift.min(batchSize, rowCount - start)
        let batch = gather(from: start, rows: rows)
        if index + 1 < count { gatherAhead(from: start + rows, rows: Swift.min(batchSize, rowCount - start - rows)) }
        return batch
    }

    /// Rows `shard` of batch `index` (positions within the batch, as `ReplicaGroup.shard(of:)`
    /// gives a replica's): `(x (s, …), y (s))` with `s = shard.count`, the same values as those
    /// rows of ``batch(_:)``, flips included, in reused buffers.
    /// - Precondition: `0 ≤ index < count`; `shard` is a non-empty range within the batch's rows.
    public func batch(_ index: Int, rows shard: Range<Int>) -> (x: Tensor, y: Tensor) {
        precondition(index >= 0 && index < count, "Batches: batch \(index) out of range 0..<\(count)")
        let start = index * batchSize
        let rows = Swift.min(batchSize, rowCount - start)
        precondition(
            !shard.isEmpty && shard.lowerBound >= 0 && shard.upperBound <= rows,
            "Batches: rows \(shard) out of the \(rows) rows of batch \(index)")
        dropAhead()
        let batch = gather(from: start + shard.lowerBound, rows: shard.count)
        // The same rows of the next batch.
        let next = Swift.min(start + batchSize + shard.lowerBound, rowCount)
        prefetch(from: next, rows: Swift.min(shard.count, rowCount - next))
        return batch
    }

    /// Asks the processor to start fetching the first two cache lines of the rows at positions
    /// `start ..< start + rows` of the order, so that they are on their way while this step
    /// computes and the next call's copying finds them sooner.
    private func prefetch(from start: Int, rows: Int) {
        order.withUnsafeBufferPointer { order in
            Tensor.prefetchRows(x, UnsafeBufferPointer(rebasing: order[start..<(start + rows)]), lines: 2)
        }
    }

    /// The buffers for a batch of `rows` rows: a full batch takes the full buffers not returned
    /// last (the caller may still be reading those), a smaller one the last batch's.
    private func freeBuffers(rows: Int) -> (x: Tensor, y: Tensor) {
        if rows == fullBatches[0].x.shape[0] { return fullBatches[1 - lastFull] }
        if lastBatch == nil || lastBatch!.x.shape[0] != rows {
            lastBatch = (Tensor(uninitializedShape: Self.shape(x, rows: rows)), Tensor(uninitializedShape: [rows]))
        }
        return lastBatch!
    }

    /// The floats of `x` per row.
    private var rowSize: Int { x.count / Swift.max(rowCount, 1) }

    /// Starts gathering the rows of the batch at positions `start ..< start + rows` in the
    /// background (`x` and the buffers are this object's; `aheadIndices` is not touched until the
    /// work is finished), with more than one thread and rows worth it (at least 4096 floats);
    /// otherwise only prefetches them.
    private func gatherAhead(from start: Int, rows: Int) {
        dropAhead()
        guard Threads.count > 1 && rows * rowSize >= 4096 else {
            prefetch(from: start, rows: rows)
            return
        }
        let buffers = freeBuffers(rows: rows)
        for row in 0..<rows { aheadIndices[row] = order[start + row] }
        let work = Tensor.startGatheringRows(x, aheadIndices, count: rows, into: buffers.x)
        ahead = (start, buffers, work)
    }

    /// Finishes and forgets the background gathering, if any (its rows are not the next wanted).
    private func dropAhead() {
        ahead?.work.finish()
        ahead = nil
    }

    /// The examples at positions `start ..< start + rows` of the epoch's order, gathered (and
    /// flipped) into free buffers: those gathered in the background when they are these rows.
    private func gather(from start: Int, rows: Int) -> (x: Tensor, y: Tensor) {
        let buffers: (x: Tensor, y: Tensor)
        if let ahead, ahead.start == start, ahead.buffers.x.shape[0] == rows {
            ahead.work.finish()
            buffers = ahead.buffers
            self.ahead = nil
        } else {
            dropAhead()
            buffers = freeBuffers(rows: rows)
            order.withUnsafeBufferPointer { order in
                Tensor.gatherRows(x, UnsafeBufferPointer(rebasing: order[start..<(start + rows)]), into: buffers.x)
            }
        }
        if buffers.x === fullBatches[0].x { lastFull = 0 } else if buffers.x === fullBatches[1].x { lastFull = 1 }
        order.withUnsafeBufferPointer { order in
            Tensor.gatherRows(y, UnsafeBufferPointer(rebasing: order[start..<(start + rows)]), into: buffers.y)
        }
        if let width = flipWidth, !flipped.isEmpty {
            let values = buffers.x.pointer
            for row in 0..<rows where flipped[start + row] {
                for line in stride(from: row * rowSize, to: (row + 1) * rowSize, by: width) {
                    var pixels = UnsafeMutableBufferPointer(start: values + line, count: width)
                    pixels.reverse()
                }
            }
        }
        return buffers
    }
}
