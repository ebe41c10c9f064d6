import Foundation
import Synchronization

/// Ctrl-C (SIGINT) and SIGTERM, turned into a request that a long run polls between two steps.
///
/// The first signal only records itself; the run stops at its next step boundary, saves what it
/// must and exits with `128 + signal` (130 for SIGINT, 143 for SIGTERM, as shells expect). A
/// second signal ends the process at once, with the same status: the last checkpoint on disk is
/// whole either way, since every file is written atomically.
enum Interruption {
    /// The signal received, or 0.
    private static let received = Atomic<Int32>(0)

    /// Installs the handler for SIGINT and SIGTERM, and unblocks both.
    ///
    /// A process inherits its parent's signal mask: started by a parent that blocks them (test
    /// runners and some supervisors do), it would otherwise never see either signal.
    static func install() {
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
        for signalNumber in [SIGINT, SIGTERM] {
            Foundation.signal(signalNumber) { number in
                // Only async-signal-safe work here: an atomic exchange, and _exit.
                let (exchanged, _) = Interruption.received.compareExchange(
                    expected: 0, desired: number, ordering: .sequentiallyConsistent)
                if !exchanged { _exit(128 + number) }
            }
        }
    }

    /// The signal received since ``install()``, if any.
    static var requested: Int32? {
        let number = received.load(ordering: .sequentiallyConsistent)
        return number == 0 ? nil : number
    }

    /// `SIGINT` or `SIGTERM`, as the message names it.
    static func name(of number: Int32) -> String {
        switch number {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        default: return "signal \(number)"
        }
    }
}
