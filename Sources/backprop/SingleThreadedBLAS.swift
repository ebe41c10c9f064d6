import Foundation

/// Starts OpenBLAS with one thread, before anything else runs.
///
/// OpenBLAS starts a thread per core when it is loaded, before `main`, and Backprop never uses
/// them: it calls BLAS on one thread inside the pieces of its own pool (`Threads`). They are not
/// only idle: when memory is short (a tight `ulimit -v`), OpenBLAS's shutdown of those threads can
/// loop for ever, so that even `backprop --version` hangs. OpenBLAS reads `OPENBLAS_NUM_THREADS`
/// only as it loads, so when the variable is not set, the program sets it to 1 and executes
/// itself again (same arguments, same process id); a user's own setting is left alone. If the
/// new execution cannot start, the program goes on as it is.
enum SingleThreadedBLAS {
    static let variable = "OPENBLAS_NUM_THREADS"

    static func ensure() {
        #if os(Linux)
            guard getenv(variable) == nil else { return }
            setenv(variable, "1", 1)
            execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only reached if execv failed: go on with the threads OpenBLAS started.
        #endif
    }
}
