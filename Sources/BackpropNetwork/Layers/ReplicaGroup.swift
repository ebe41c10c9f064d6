import BackpropCore

/// The processes (replicas) of a data-parallel run: each holds the same model and computes its
/// shard of every batch; what one layer must know of the whole batch, it asks the group for.
///
/// Data parallelism as Horovod and MLX's distributed backend do it: every replica draws the same
/// global batch of `B` rows, takes its shard of `n_r` rows (``shard(of:)``), runs forward and
/// backward on it, and the gradients are summed over the replicas before each takes the same
/// optimizer step. Two layers need the whole batch inside a step: `BatchNorm`, whose statistics
/// are over the batch (it sums its per-channel sums over the group), and `Dropout`, whose mask a
/// one-process run draws for the whole batch (each replica draws it and keeps its rows).
///
/// The network does not know how the sums travel: an MPI implementation lives in
/// `BackpropDistributed`, one of threads in the tests.
public protocol ReplicaGroup: AnyObject {
    /// This replica's number, `0 ..< count`.
    var rank: Int { get }
    /// The number of replicas.
    var count: Int { get }
    /// Replaces every value by its sum over all replicas (every replica gets the same bits).
    /// Every replica must call it, in the same order, with the same number of values.
    func sum(_ values: UnsafeMutableBufferPointer<Double>)
    /// Replaces every value by its sum over all replicas (every replica gets the same bits).
    /// Every replica must call it, in the same order, with the same number of values.
    func sum(_ values: UnsafeMutableBufferPointer<Float>)
    /// Whether every replica passed the same `value` (a checksum of its weights, say); every
    /// replica gets the same answer.
    func allEqual(_ value: UInt64) -> Bool
}

extension ReplicaGroup {
    /// This replica's rows of a batch of `rows` rows: the batch cut into ``count`` consecutive
    /// shards whose sizes differ by at most one, the larger first
    /// (`⌊rows / count⌋ + 1` for the first `rows mod count`).
    public func shard(of rows: Int) -> Range<Int> {
        Self.shard(rank, of: count, rows: rows)
    }

    /// Replica `rank`'s rows of a batch of `rows` rows split over `count` replicas (see
    /// ``shard(of:)``).
    public static func shard(_ rank: Int, of count: Int, rows: Int) -> Range<Int> {
        let (base, extra) = rows.quotientAndRemainder(dividingBy: count)
        let start = rank * base + Swift.min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    /// The first of `items` whose value is not the same on every replica, with this replica's
    /// value, or `nil` when all agree; every replica gets the same answer.
    ///
    /// Each item is compared by a 64-bit FNV-1a hash of its UTF-8 text, one ``allEqual(_:)`` per
    /// item, all of them called whatever the answers: every replica must pass as many items, in
    /// the same order. (Swift's own `hashValue` differs between processes by design.)
    public func firstDifference(among items: [(name: String, value: String)]) -> (name: String, value: String)? {
        var first: (name: String, value: String)?
        for item in items {
            var hash = FNV1a()
            for byte in item.value.utf8 { hash.combine(UInt64(byte)) }
            if !allEqual(hash.value) && first == nil { first = item }
        }
        return first
    }

    /// `values` summed over the replicas, in a new array.
    public func summed(_ values: [Double]) -> [Double] {
        var values = values
        values.withUnsafeMutableBufferPointer { sum($0) }
        return values
    }
}

/// The 64-bit FNV-1a hash, one word at a time: what replicas compare instead of their data (a
/// checksum of the weights, a hash of a setting's text), the same in every process.
package struct FNV1a {
    /// The hash of the words combined so far.
    package private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    package init() {}

    /// Mixes `word` into the hash.
    package mutating func combine(_ word: UInt64) {
        value = (value ^ word) &* 0x0000_0100_0000_01B3
    }
}
