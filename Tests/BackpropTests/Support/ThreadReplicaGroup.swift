import Foundation
import Testing

@testable import BackpropNetwork

// Replicas of a data-parallel run as threads of the test process: the `ReplicaGroup` that MPI's
// processes form, with sums over threads instead. What the group computes does not depend on how
// it travels, so the sharding, batch norm's shared statistics and the fused gradient sum are
// checked here without MPI, in every `swift test`; DistributedTrainingTests checks the MPI group.

/// Where the replica threads meet: each deposits its values, waits for the others, and reads all
/// of them (in rank order), so that every replica computes the same sums.
final class ThreadReplicaHub: @unchecked Sendable {
    let count: Int
    private let condition = NSCondition()
    private var round = 0
    private var arrived = 0
    private var pending: [[UInt64]]
    /// Each completed round's deposits, until every replica has read them.
    private var completed: [Int: (deposits: [[UInt64]], readers: Int)] = [:]

    init(count: Int) {
        self.count = count
        pending = Array(repeating: [], count: count)
    }

    /// Every replica's `values` (as bit patterns), in rank order; stops the test process if the
    /// others do not come within 60 s (a replica that stopped calling: a bug, not a hang).
    func exchange(rank: Int, _ values: [UInt64]) -> [[UInt64]] {
        condition.lock()
        defer { condition.unlock() }
        let myRound = round
        pending[rank] = values
        arrived += 1
        if arrived == count {
            completed[myRound] = (pending, 0)
            pending = Array(repeating: [], count: count)
            arrived = 0
            round += 1
            condition.broadcast()
        } else {
            let deadline = Date(timeIntervalSinceNow: 60)
            while completed[myRound] == nil {
                if !condition.wait(until: deadline) {
                    preconditionFailure("ThreadReplicaHub: replica \(rank) waited 60 s for the others")
                }
            }
        }
        var entry = completed[myRound]!
        entry.readers += 1
        completed[myRound] = entry.readers == count ? nil : entry
        return entry.deposits
    }
}

/// One replica (thread) of a ``ThreadReplicaHub``: sums are over the replicas in rank order.
/// Used by its own thread only (unchecked: a test's stop closure on that thread reads its rank).
final class ThreadReplica: ReplicaGroup, @unchecked Sendable {
    let rank: Int
    let hub: ThreadReplicaHub
    var count: Int { hub.count }
    /// The number of sums of each kind this replica took part in.
    private(set) var floatSums = 0
    private(set) var doubleSums = 0

    init(rank: Int, hub: ThreadReplicaHub) {
        self.rank = rank
        self.hub = hub
    }

    func sum(_ values: UnsafeMutableBufferPointer<Double>) {
        doubleSums += 1
        let all = hub.exchange(rank: rank, values.map(\.bitPattern))
        for i in values.indices {
            var total = 0.0
            for deposit in all { total += Double(bitPattern: deposit[i]) }
            values[i] = total
        }
    }

    func sum(_ values: UnsafeMutableBufferPointer<Float>) {
        floatSums += 1
        let all = hub.exchange(rank: rank, values.map { UInt64($0.bitPattern) })
        for i in values.indices {
            var total: Float = 0
            for deposit in all { total += Float(bitPattern: UInt32(deposit[i])) }
            values[i] = total
        }
    }

    func allEqual(_ value: UInt64) -> Bool {
        let all = hub.exchange(rank: rank, [value])
        return all.allSatisfy { $0 == [value] }
    }
}

/// Runs `body` on `count` threads, one replica each, and returns their results in rank order.
func runReplicas<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (ThreadReplica) throws -> T) throws -> [T] {
    let hub = ThreadReplicaHub(count: count)
    let results = ResultsBox<T>(count: count)
    let done = DispatchGroup()
    for rank in 0..<count {
        done.enter()
        let thread = Thread {
            results.set(rank, Result { try body(ThreadReplica(rank: rank, hub: hub)) })
            done.leave()
        }
        thread.stackSize = 8 << 20
        thread.start()
    }
    done.wait()
    return try results.values.map { try $0!.get() }
}

/// The replicas' results, filled from their threads.
private final class ResultsBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Result<T, any Error>?]
    init(count: Int) { stored = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ result: Result<T, any Error>) { lock.withLock { stored[index] = result } }
    var values: [Result<T, any Error>?] { lock.withLock { stored } }
}
