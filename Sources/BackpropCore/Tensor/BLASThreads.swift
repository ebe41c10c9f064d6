import Synchronization

#if !canImport(Accelerate) && OpenBLAS
    import CBLAS
#endif

/// How many threads the BLAS library uses for matrix products: an internal detail, not a setting.
///
/// ``Threads`` is the one setting users have. Backprop calls BLAS on one thread and splits a
/// large product over its own threads (``Threads``, `$BACKPROP_THREADS`, `backprop train
/// --threads`), in pieces that the cores take as they come free: OpenBLAS's own threads wait for
/// each other by spinning, which collapses on a busy machine. The first product makes OpenBLAS
/// single-threaded unless ``set(_:)`` was called before; after `set(n)` with `n > 1` OpenBLAS
/// splits products itself and Backprop does not, which only `backprop bench` does, to time BLAS
/// called directly. Without OpenBLAS (Accelerate, or the pure-Swift kernel) this does nothing.
package enum BLASThreads {
    /// The number of threads BLAS uses now (1 without OpenBLAS).
    package static var count: Int {
        #if !canImport(Accelerate) && OpenBLAS
            return Int(openblas_get_num_threads())
        #else
            return 1
        #endif
    }

    /// Makes BLAS use `count` threads from now on (for the whole process).
    /// - Precondition: `count >= 1`.
    package static func set(_ count: Int) {
        precondition(count >= 1, "BLASThreads.set: \(count) threads; expected at least 1")
        chosen.store(true, ordering: .relaxed)
        #if !canImport(Accelerate) && OpenBLAS
            openblas_set_num_threads(Int32(count))
        #endif
    }

    /// Whether ``set(_:)`` chose the count.
    private static let chosen = Atomic<Bool>(false)

    /// Makes OpenBLAS single-threaded, once, unless ``set(_:)`` chose a count.
    private static let singleThreaded: Void = {
        if !chosen.load(ordering: .relaxed) {
            #if !canImport(Accelerate) && OpenBLAS
                openblas_set_num_threads(1)
            #endif
        }
    }()

    /// Whether Backprop splits BLAS products over its own threads (BLAS runs on one). It splits
    /// them into the same pieces on one thread as on several, so that the results are the same.
    static var backpropSplitsProducts: Bool {
        _ = singleThreaded
        return count == 1
    }
}
