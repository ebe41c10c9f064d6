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

    static func install() {
        Tensor.allocationFailed = { request in
            // Two threads may run out at once (the pieces of a product, the training and test
            // files read side by side): the first says so and ends the process; any other waits
            // for that.
            if ending.exchange(true, ordering: .acquiringAndReleasing) {
                while true { pause() }
            }
            // OpenBLAS's buffers come per thread whatever the rows: fewer threads is what helps.
            let advice =
                request.contains("work buffers of OpenBLAS")
                ? "try fewer threads (--threads, or BACKPROP_THREADS), each of which has its own"
                : "try fewer rows (--limit, --rows) or a smaller model"
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
