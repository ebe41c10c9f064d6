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
            if launched > 1 { throw withoutMPISupport(launched) }
            return DistributedRun(group: nil, localCount: 1, finishGroup: {})
        #endif
    }

    /// Why a build without MPI support does nothing under a launcher that started `launched > 1`
    /// processes: it cannot join them, so each would train alone and write the same files; and
    /// one that ended well without joining (`--help`) left any process with MPI support on the same
    /// line waiting in `MPI_Init` for ever (Open MPI does not notice such an end; it does notice a
    /// status of 1).
    static func withoutMPISupport(_ launched: Int) -> CommandLineError {
        CommandLineError(
            "mpirun started \(launched) processes, but this backprop was built without MPI support: it cannot join "
                + "the others, and each would train alone and write the same files. Build it with the MPI trait: "
                + "swift build -c release --traits OpenBLAS,MPI (README, \"Training on several processes\")")
    }

    /// The options after which the argument parser only prints (help, the version, a completion
    /// script) and ends: a process given one takes no part in training.
    static func onlyPrints(_ arguments: [String]) -> Bool {
        arguments.contains { argument in
            ["-h", "--help", "--help-hidden", "--version", "--experimental-dump-help"].contains(argument)
                || argument.hasPrefix("--generate-completion-script")
        }
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
    ///
    /// A build without MPI support cannot join: under such a launcher it refuses every command,
    /// `--help` too, with status 1, which Open MPI notices (an MPMD line may mix both builds).
    static func agreeOnCommand(_ arguments: [String]) throws {
        guard let launched = Distributed.launchedProcessCount, launched > 1 else { return }
        #if MPI
            let group: MPIReplicaGroup
            do {
                group = try MPIReplicaGroup.join()
            } catch {
                throw CommandLineError("\(error)")
            }
            let given = Array(arguments.dropFirst())
            let subcommand = given.first { !$0.hasPrefix("-") } ?? ""
            let printing = onlyPrints(given) || subcommand == "help"
            var hash = FNV1a()
            for byte in subcommand.utf8 { hash.combine(UInt64(byte)) }
            // Both comparisons on every process, whatever the first's answer.
            let sameCommand = group.allEqual(hash.value)
            let samePrinting = group.allEqual(printing ? 1 : 0)
            guard sameCommand && samePrinting else {
                guard group.rank == 0 else {
                    group.finish()
                    Foundation.exit(1)
                }
                let command = subcommand.isEmpty ? "none" : "'\(subcommand)'"
                throw CommandLineError(
                    sameCommand
                        ? "mpirun -np \(group.count): some processes were given an option that only prints (--help, "
                            + "--version, a completion script) and others not (rank 0 \(printing ? "was" : "was not"), "
                            + "with the command \(command)); give every process the same command and options"
                        : "mpirun -np \(group.count): the processes were given different commands (on rank 0: "
                            + "\(command)\(printing ? ", with an option that only prints" : "")); give every process the "
                            + "same command")
            }
            if subcommand == "train" && !printing {
                joinedAtStart = group
            } else {
                group.finish()
            }
        #else
            throw withoutMPISupport(launched)
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
