import CKernels

/// The C kernels that choose their vector instructions themselves (`bp_adam_update`, the direct
/// convolution's forward pass, `bp_softmax_rows`): AVX-512 where the processor has it, else AVX2,
/// the same bits either way.
package enum KernelInstructions {
    private static let switching = Locked(())

    /// Runs `body` with those kernels allowed (`true`, the default) or not allowed to take their
    /// AVX-512 paths: for tests that compare the two paths on one machine. Callers take turns (a
    /// lock); code running meanwhile elsewhere sees the same bits either way.
    package static func withAVX512<T>(allowed: Bool, _ body: () throws -> T) rethrows -> T {
        try switching.withLock { _ in
            bp_kernels_allow_avx512(allowed ? 1 : 0)
            defer { bp_kernels_allow_avx512(1) }
            return try body()
        }
    }
}
