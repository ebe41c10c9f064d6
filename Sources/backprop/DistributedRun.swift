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
                let group = try joinedAtStart ?? MPIReplicaGroup.join()
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

    #if MPI
        /// The run ``agreeOnCommand(_:)`` joined before the arguments were parsed, for `train`.
        nonisolated(unsafe) private static var joinedAtStart: MPIReplicaGroup?
    #endif

    /// Under a launcher that started several processes (`mpirun -np N`, N > 1), in a build with
    /// MPI: joins the run before anything else, whatever the command, and stops every process,
    /// rank 0 saying why, unless all were given the same subcommand and none asks only for help or
    /// the version (`arguments` as the process got them). Then a command other than `train`
    /// leaves the run at once (`MPI_Finalize`, every process together) and runs on its own.
    ///
    /// Without it, a process that ended with status 0 before joining (`--help`, `--version`, a
    /// quick `seed --help` given to one process of an MPMD line `mpirun -np 1 backprop train : -np
    /// 1 backprop train --help`) left the others waiting in `MPI_Init` for ever: Open MPI does not
    /// notice such an end. Processes that fail later end with a non-zero status, which it does.
    static func agreeOnCommand(_ arguments: [String]) throws {
        #if MPI
            guard let launched = Distributed.launchedProcessCount, launched > 1 else { return }
            let group: MPIReplicaGroup
            do {
                group = try MPIReplicaGroup.join()
            } catch {
                throw CommandLineError("\(error)")
            }
            let given = Array(arguments.dropFirst())
            let subcommand = given.first { !$0.hasPrefix("-") } ?? ""
            let onlyPrints = given.contains { ["-h", "--help", "--version"].contains($0) } || subcommand == "help"
            let key = subcommand + (onlyPrints ? " (help or version only)" : "")
            var hash = FNV1a()
            for byte in key.utf8 { hash.combine(UInt64(byte)) }
            guard group.allEqual(hash.value) else {
                guard group.rank == 0 else {
                    group.finish()
                    Foundation.exit(1)
                }
                throw CommandLineError(
                    "mpirun -np \(group.count): the processes were given different commands (on rank 0: "
                        + "\(key.isEmpty ? "none" : "'\(key)'")); give every process the same command")
            }
            if subcommand == "train" && !onlyPrints {
                joinedAtStart = group
            } else {
                group.finish()
            }
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
