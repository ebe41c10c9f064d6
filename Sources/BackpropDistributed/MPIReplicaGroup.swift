import BackpropNetwork
import Foundation

#if MPI
    import CMPI
#endif

// Data-parallel training over MPI, as Horovod and MLX's distributed backend do it: every process
// (rank) computes its shard of each batch, and one MPI_Allreduce per step sums the gradients
// (see `Trainer.replicas`). Open MPI launches the processes (`mpirun -np N backprop train ...`),
// on one host or across a hostfile's; this file only joins the run and sums.
//
// MPI support is the package trait `MPI` (`swift build --traits MPI`), off by default: without it
// this module only recognises that mpirun started the process, so that the tool can refuse to
// train N independent copies that would write one checkpoint.

/// Data-parallel runs: whether this build can join one, and whether this process was started as
/// part of one.
public enum Distributed {
    /// Whether this build has MPI support (the package trait `MPI`).
    public static var isAvailable: Bool {
        #if MPI
            return true
        #else
            return false
        #endif
    }

    /// The number of processes an MPI launcher started this process among (`mpirun -np N`),
    /// read from the environment the launcher sets (Open MPI's `OMPI_COMM_WORLD_SIZE`, MPICH's
    /// and PMIx's `PMI_SIZE`), or `nil` when no launcher started it.
    public static var launchedProcessCount: Int? {
        let environment = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"] {
            if let text = environment[key], let count = Int(text), count > 0 { return count }
        }
        return nil
    }
}

/// An error joining a data-parallel run.
public struct DistributedError: Error, CustomStringConvertible {
    /// What went wrong and what to do.
    public let description: String
}

#if MPI
    /// The processes of an MPI run (`MPI_COMM_WORLD`) as a `ReplicaGroup`: sums are
    /// `MPI_Allreduce(MPI_SUM)` in place, which gives every process the same bits.
    ///
    /// Made once per process by ``join()`` (MPI is initialised once); ``finish()`` ends it.
    /// Only the thread that joined calls MPI (`MPI_THREAD_FUNNELED`).
    public final class MPIReplicaGroup: ReplicaGroup {
        /// This process's rank, `0 ..< count`.
        public let rank: Int
        /// The number of processes.
        public let count: Int
        /// The number of processes on this host (sharing its cores).
        public let localCount: Int
        private var finished = false

        private init() {
            rank = Int(bp_mpi_rank())
            count = Int(bp_mpi_size())
            localCount = Int(max(1, bp_mpi_local_size()))
        }

        /// Joins the run this process was started in (`MPI_Init_thread`), once per process.
        /// - Throws: `DistributedError` when MPI cannot start, or was started before.
        public static func join() throws -> MPIReplicaGroup {
            guard bp_mpi_initialized() == 0 else {
                throw DistributedError(description: "MPI: already initialised in this process")
            }
            let status = bp_mpi_init()
            guard status == MPI_SUCCESS else {
                throw DistributedError(description: "MPI_Init_thread failed with error \(status)")
            }
            return MPIReplicaGroup()
        }

        /// The most values one MPI call takes (its count is a C `int`).
        private static let chunk = Int(Int32.max)

        /// Replaces every value by its sum over the processes (`MPI_Allreduce`, `MPI_SUM`, in place),
        /// in calls of at most `Int32.max` values. Every process must call it with as many values.
        public func sum(_ values: UnsafeMutableBufferPointer<Double>) {
            guard let base = values.baseAddress else { return }
            for start in stride(from: 0, to: values.count, by: Self.chunk) {
                let status = bp_mpi_sum_doubles(base + start, Int32(min(Self.chunk, values.count - start)))
                check(status, "MPI_Allreduce")
            }
        }

        /// Replaces every value by its sum over the processes (`MPI_Allreduce`, `MPI_SUM`, in place),
        /// in calls of at most `Int32.max` values. Every process must call it with as many values.
        public func sum(_ values: UnsafeMutableBufferPointer<Float>) {
            guard let base = values.baseAddress else { return }
            for start in stride(from: 0, to: values.count, by: Self.chunk) {
                let status = bp_mpi_sum_floats(base + start, Int32(min(Self.chunk, values.count - start)))
                check(status, "MPI_Allreduce")
            }
        }

        /// Whether every process passed the same `value`: its minimum and maximum over the processes
        /// (two `MPI_Allreduce` calls) are equal. Every process gets the same answer.
        public func allEqual(_ value: UInt64) -> Bool {
            var (smallest, largest): (UInt64, UInt64) = (0, 0)
            check(bp_mpi_min_max(value, &smallest, &largest), "MPI_Allreduce")
            return smallest == largest
        }

        /// Leaves the run (`MPI_Finalize`): every process calls it once at its end; later sums stop.
        public func finish() {
            guard !finished else { return }
            finished = true
            _ = bp_mpi_finalize()
        }

        /// Ends every process of the run with `code` (`MPI_Abort`), for an error after which this
        /// process cannot take part in the next sum.
        public func abort(code: Int32) -> Never {
            bp_mpi_abort(code)
            exit(code)
        }

        /// MPI's default error handler ends the run on an error; a handler that returns is not
        /// installed, so a status other than success is a broken promise of the library.
        private func check(_ status: Int32, _ call: String) {
            precondition(!finished, "MPIReplicaGroup: \(call) after finish()")
            if status != MPI_SUCCESS {
                // `write(2)`, not `FileHandle.write`, which traps when standard error cannot be written.
                let line = "rank \(rank): \(call) failed with error \(status)\n"
                _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
                bp_mpi_abort(1)
            }
        }
    }
#endif
