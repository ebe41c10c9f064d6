import ArgumentParser
import BackpropCore
import BackpropData
import Foundation
import Synchronization

/// Ends the program with one line when the memory for a tensor cannot be had.
///
/// A tensor cannot exist without its storage, and the library cannot go on without the tensor,
/// so the tool ends there, but as for any other error: one line on stderr, naming what failed and
/// what to do, and exit status 1, rather than the runtime's trap and backtrace. The sizes a
/// command can foresee (the model's parameters, a batch) are checked before the work starts; this
/// is for the rest, above all a limit such as `ulimit -v`.
enum OutOfMemory {
    /// Whether a thread has begun to end the program.
    private static let ending = Atomic<Bool>(false)

    /// What to try, in the options of the command that runs (set once it is parsed): `near` has
    /// no `--limit`, `bench`'s measuring buffers go with `--no-limits`; and how to ask for fewer
    /// threads (`train` has `--threads`; every command reads `BACKPROP_THREADS`).
    private static let advice = Mutex(
        (general: "try a smaller model or smaller files", fewerThreads: "BACKPROP_THREADS=1"))

    /// Sets the advice for the command parsed (see ``advice``).
    static func adviseFor(_ command: any ParsableCommand) {
        let text =
            switch command {
            case is TrainCommand: "try fewer rows (--limit), a smaller --batch-size or a smaller model"
            case is EvaluateCommand: "try fewer rows (--limit) or a smaller model"
            case is GradcheckCommand, is ExplainCommand: "try fewer rows (--rows) or a smaller model"
            case is BenchCommand:
                "try fewer rows (--rows), a smaller --batch-size, or --no-limits (the floor's measuring buffers)"
            case is SeedCommand: "try a smaller --hidden, or --tensors with fewer rows"
            default: "try a smaller model or smaller files"
            }
        let fewerThreads = command is TrainCommand ? "--threads 1, or BACKPROP_THREADS=1" : "BACKPROP_THREADS=1"
        advice.withLock { $0 = (text, fewerThreads) }
    }

    static func install() {
        Tensor.allocationFailed = { request in
            // Two threads may run out at once (the pieces of a product, the training and test
            // files read side by side): the first says so and ends the process; any other waits
            // for that.
            if ending.exchange(true, ordering: .acquiringAndReleasing) {
                while true { pause() }
            }
            // OpenBLAS's buffers come per thread whatever the rows: fewer threads is what helps.
            let (general, fewerThreads) = Self.advice.withLock { $0 }
            let advice =
                request.contains("work buffers of OpenBLAS")
                ? "try fewer threads (\(fewerThreads)): OpenBLAS maps a buffer of 128 MiB for each thread that "
                    + "multiplies"
                : general
            let message = "Error: out of memory: could not allocate \(request); \(advice)\n"
            message.utf8CString.withUnsafeBufferPointer { text in
                _ = write(STDERR_FILENO, text.baseAddress, text.count - 1)
            }
            // `_exit`, not `exit`: the failure may come from one of the pool's threads while the
            // others still compute, and `exit` would run the libraries' destructors under them
            // (OpenBLAS frees the buffers a product in progress uses). So only what `exit` would
            // do that matters: what `print` buffered goes out, and a save in progress leaves no
            // temporary file.
            removeTemporaryFileOfAtomicWrite()
            fflush(nil)
            _exit(1)
        }
    }
}
