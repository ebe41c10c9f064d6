import BackpropDistributed
import BackpropNetwork
import Foundation

/// The data-parallel run `train` is part of, when `mpirun` started it: the process group, and
/// whether this process is the one that prints and writes files (rank 0).
struct DistributedRun {
    /// The processes of the run; `nil` when this process trains alone.
    let group: (any ReplicaGroup)?
    /// The number of the run's processes on this host.
    let localCount: Int
    /// Ends the process's part in the run (MPI_Finalize).
    private let finishGroup: () -> Void

    /// Whether this process prints progress and writes checkpoints and plots: rank 0, or a
    /// process that trains alone.
    var isLeader: Bool { (group?.rank ?? 0) == 0 }

    /// Joins the run that `mpirun` started this process in, or trains alone when no launcher did.
    /// - Throws: `CommandLineError` when a launcher started several processes but this build has
    ///   no MPI support (each would train alone and write the same files), or MPI cannot start.
    static func join() throws -> DistributedRun {
        guard let launched = Distributed.launchedProcessCount else {
            return DistributedRun(group: nil, localCount: 1, finishGroup: {})
        }
        #if MPI
            do {
                let group = try MPIReplicaGroup.join()
                return DistributedRun(group: group, localCount: group.localCount, finishGroup: group.finish)
            } catch {
                throw CommandLineError("\(error)")
            }
        #else
            if launched > 1 {
                throw CommandLineError(
                    "mpirun started \(launched) processes, but this backprop was built without MPI support: each "
                        + "would train alone and write the same files. Build it with the MPI trait: swift build -c "
                        + "release --traits OpenBLAS,MPI (README, \"Training on several processes\")")
            }
            return DistributedRun(group: nil, localCount: 1, finishGroup: {})
        #endif
    }

    /// Ends this process's part in the run; call once, at the end, on every process.
    func finish() { finishGroup() }

    /// The threads each process uses when neither `--threads` nor `$BACKPROP_THREADS` says: the
    /// host's cores shared by its processes (at least 1, at most 8).
    var defaultThreads: Int {
        max(1, min(8, ProcessInfo.processInfo.activeProcessorCount / max(localCount, 1)))
    }
}
