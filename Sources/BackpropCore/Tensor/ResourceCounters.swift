import CKernels

/// Running totals of what the tensor core has done since the process started, read before and
/// after a piece of work to see what it cost: `bench`'s breakdown of a training step (issue 16).
package struct ResourceCounters: Equatable, Sendable {
    /// Tensor storages allocated (each new tensor's values; views share one).
    package var allocations: Int
    /// Their bytes.
    package var allocatedBytes: Int
    /// Parallel loops handed to the thread pool's helpers (`bp_parallel_for` with more than one
    /// thread; loops run on the caller alone are not counted).
    package var poolDispatches: Int
    /// Of those, the loops that found a helper asleep and woke it.
    package var poolWakeUps: Int
    /// Nanoseconds the callers of those loops waited for their helpers after the last index was
    /// taken (a helper that joined late, or whose piece took longer).
    package var poolWaitNanoseconds: Int

    /// The totals now.
    package static var now: ResourceCounters {
        ResourceCounters(
            allocations: Storage.allocations.load(ordering: .relaxed),
            allocatedBytes: Storage.allocatedByteCount.load(ordering: .relaxed),
            poolDispatches: bp_parallel_dispatch_count(), poolWakeUps: bp_parallel_wake_count(),
            poolWaitNanoseconds: bp_parallel_wait_nanoseconds())
    }

    /// What happened between `earlier` and `self`.
    package static func - (later: ResourceCounters, earlier: ResourceCounters) -> ResourceCounters {
        ResourceCounters(
            allocations: later.allocations - earlier.allocations,
            allocatedBytes: later.allocatedBytes - earlier.allocatedBytes,
            poolDispatches: later.poolDispatches - earlier.poolDispatches,
            poolWakeUps: later.poolWakeUps - earlier.poolWakeUps,
            poolWaitNanoseconds: later.poolWaitNanoseconds - earlier.poolWaitNanoseconds)
    }
}
