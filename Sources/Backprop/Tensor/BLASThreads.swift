#if !canImport(Accelerate) && OpenBLAS
    import CBLAS
#endif

/// How many threads the BLAS library uses for matrix products.
///
/// OpenBLAS starts as many threads as there are cores. For the products of a training step (a
/// 128-row batch against a 784 × 256 matrix) one thread is about as fast as two on an idle
/// 2-core machine, and much faster on a busy one: waiting threads spin in `sched_yield`. The
/// number of threads also fixes how a product is split, so results are bit for bit the same only
/// for the same count. Without OpenBLAS (Accelerate, or the pure-Swift kernel) this does nothing.
public enum BLASThreads {
    /// The number of threads BLAS uses now (1 without OpenBLAS).
    public static var count: Int {
        #if !canImport(Accelerate) && OpenBLAS
            return Int(openblas_get_num_threads())
        #else
            return 1
        #endif
    }

    /// Makes BLAS use `count` threads from now on (for the whole process).
    /// - Precondition: `count >= 1`.
    public static func set(_ count: Int) {
        precondition(count >= 1, "BLASThreads.set: \(count) threads; expected at least 1")
        #if !canImport(Accelerate) && OpenBLAS
            openblas_set_num_threads(Int32(count))
        #endif
    }
}
