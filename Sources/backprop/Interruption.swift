import BackpropData
import CStartup
import Foundation
import Synchronization

/// Ctrl-C (SIGINT), Ctrl-\ (SIGQUIT), SIGTERM, SIGHUP, SIGXCPU (the soft CPU-time limit of
/// `ulimit -St` was reached), and SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF and, on Linux,
/// SIGPWR, SIGSTKFLT, SIGIO and the real-time signals that no library has taken (whose default
/// action also ends the process, and would leave a save's temporary file), turned into a request that a long run polls
/// between two steps. (SIGPIPE is ignored for every command, by `StandardStream.prepareProcess()`:
/// a write to a reader that has gone fails with `EPIPE`, and the run stops as it does for the
/// others.)
///
/// Once training runs (``startPolling()``), the first signal only records itself; the run stops at
/// its next step boundary, saves what it must and exits with `128 + signal` (130 for SIGINT, 131
/// for SIGQUIT, 143 for SIGTERM, 129 for SIGHUP, 152 for SIGXCPU, as shells expect). (Past a hard
/// CPU-time limit the kernel sends SIGKILL, which no program can catch: with `ulimit -t`, which
/// sets both limits to the same value, the run is killed at once, and the last checkpoint on disk
/// is what remains.) A second signal ends the process at once, with the same status, after
/// removing the temporary file of a save in progress: the last checkpoint on disk is whole either
/// way, since every file is written atomically.
enum Interruption {
    /// The signal received, or 0.
    private static let received = Atomic<Int32>(0)

    /// Whether the run polls ``requested`` yet (``startPolling()``). Before, while `train` reads
    /// its files and builds the model, nothing polls and there is nothing to save: a signal ends
    /// the process at once (a long read, such as a checkpoint with a large header, would otherwise
    /// swallow the first signal).
    private static let polling = Atomic<Bool>(false)

    /// The signals that stop a run. SIGQUIT among them: left to the Swift runtime, whose backtracer
    /// handles it, Ctrl-\ printed a "Program crashed" report of 60 lines, and the command went on.
    /// The others are every other signal whose default action ends the process, but the crash
    /// signals (SIGSEGV, SIGILL, SIGABRT, …: `bp_handle_sent_fault_signals` takes those only when
    /// another process sends them); the real-time ones (SIGRTMIN…SIGRTMAX, Linux) only while
    /// their action is still the default when the list is first read: a library that uses one
    /// has set its own handler, which is left alone.
    static let stopSignals: [Int32] = {
        var signals = [SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGXCPU, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF]
        #if os(Linux)
            // Ignored by default on macOS (SIGIO), or not there (SIGPWR, SIGSTKFLT, real-time ones).
            signals += [SIGPWR, SIGSTKFLT, SIGIO]
            signals += realTimeSignals.filter { number in
                var action = sigaction()
                return sigaction(number, nil, &action) == 0 && action.__sigaction_handler.sa_handler == nil
            }
        #endif
        return signals
    }()

    #if os(Linux)
        /// SIGRTMIN…SIGRTMAX (34…64 with glibc, which keeps the two below for its threads).
        static var realTimeSignals: ClosedRange<Int32> { __libc_current_sigrtmin()...__libc_current_sigrtmax() }
    #endif

    /// From now on the first signal is a request that the run polls (see ``install()``).
    static func startPolling() { polling.store(true, ordering: .sequentiallyConsistent) }

    /// Installs the handler for the ``stopSignals``, and unblocks them; also for the crash signals
    /// (SIGABRT, SIGSEGV, …) when another process sends them (`bp_handle_sent_fault_signals`:
    /// the Swift runtime printed a crash report, and the run went on to status 0).
    static func install() {
        unblockStopSignals()
        let handler: @convention(c) (Int32) -> Void = { number in
            // Only async-signal-safe work here: lock-free atomics, unlink and _exit.
            let (exchanged, _) = Interruption.received.compareExchange(
                expected: 0, desired: number, ordering: .sequentiallyConsistent)
            if !exchanged || !Interruption.polling.load(ordering: .sequentiallyConsistent) {
                removeTemporaryFileOfAtomicWrite()
                _exit(128 + number)
            }
        }
        for signalNumber in stopSignals { Foundation.signal(signalNumber, handler) }
        bp_handle_sent_fault_signals(handler)
    }

    /// For the commands that do not poll for a stop (`seed`, `explain`, `evaluate`, `gradcheck`,
    /// …): a signal ends the process at once, as by default (killed by that signal), but first
    /// removes the temporary file of a save in progress, so that none is left behind. `train`
    /// installs ``install()`` instead (`BackpropCommand.runCommand()` chooses one).
    static func installCleanExit() {
        unblockStopSignals()
        let handler: @convention(c) (Int32) -> Void = { number in
            // Async-signal-safe: unlink, then the default action, raised again.
            removeTemporaryFileOfAtomicWrite()
            Foundation.signal(number, SIG_DFL)
            raise(number)
        }
        for signalNumber in stopSignals { Foundation.signal(signalNumber, handler) }
        bp_handle_sent_fault_signals(handler)
    }

    /// Unblocks the stop signals: a process inherits its parent's signal mask, and started by a
    /// parent that blocks them (test runners and some supervisors do), it would never see them.
    private static func unblockStopSignals() {
        var signals = sigset_t()
        sigemptyset(&signals)
        for signalNumber in stopSignals { sigaddset(&signals, signalNumber) }
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
    }

    /// The signal received since ``install()``, if any.
    static var requested: Int32? {
        let number = received.load(ordering: .sequentiallyConsistent)
        return number == 0 ? nil : number
    }

    /// `SIGINT`, `SIGTERM`, `SIGHUP`, … as the message names it.
    static func name(of number: Int32) -> String {
        switch number {
        case SIGINT: return "SIGINT"
        case SIGQUIT: return "SIGQUIT"
        case SIGUSR1: return "SIGUSR1"
        case SIGUSR2: return "SIGUSR2"
        case SIGALRM: return "SIGALRM"
        case SIGTERM: return "SIGTERM"
        case SIGHUP: return "SIGHUP"
        case SIGXCPU: return "SIGXCPU (the CPU-time limit, ulimit -t)"
        case SIGVTALRM: return "SIGVTALRM"
        case SIGABRT: return "SIGABRT"
        case SIGSEGV: return "SIGSEGV"
        case SIGBUS: return "SIGBUS"
        case SIGILL: return "SIGILL"
        case SIGFPE: return "SIGFPE"
        case SIGTRAP: return "SIGTRAP"
        case SIGSYS: return "SIGSYS"
        case SIGPROF: return "SIGPROF"
        default:
            #if os(Linux)
                switch number {
                case SIGPWR: return "SIGPWR"
                case SIGSTKFLT: return "SIGSTKFLT"
                case SIGIO: return "SIGIO"
                case realTimeSignals.lowerBound: return "SIGRTMIN"
                case realTimeSignals: return "SIGRTMIN+\(number - realTimeSignals.lowerBound)"
                default: break
                }
            #endif
            return "signal \(number)"
        }
    }
}
