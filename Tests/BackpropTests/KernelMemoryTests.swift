import CKernels
import Foundation
import Testing

@testable import BackpropCore

// The C kernels' own memory (a product's packing buffer, a convolution's padded image) fails as a
// tensor's storage does: through `Tensor.allocationFailed`, never `abort()`. That a limit makes
// them fail is the memory-limit sweep's part (BadInputTests+SizesAndResume.swift: `backprop train`
// under `ulimit -v`, where a product's buffer once aborted); here, that the failure reaches the
// handler a program installs, from any thread.

@Suite("Out of memory in the C kernels")
struct KernelMemoryTests {
    @Test("a kernel's failed allocation ends through the program's allocationFailed, naming size and purpose")
    func kernelFailureReachesTheHandler() async {
        let result = await #expect(processExitsWith: .exitCode(3), observing: [\.standardErrorContent]) {
            Tensor.allocationFailed = { request in
                let line = "allocation failed: \(request)\n"
                line.utf8CString.withUnsafeBufferPointer { _ = write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
                exit(3)
            }
            // On a thread of its own, as on one of the pool's helpers.
            let thread = Thread { bp_out_of_memory(3 << 20, "the packing buffer of a matrix product") }
            thread.start()
            sleep(60)
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("allocation failed: 3.0 MiB for the packing buffer of a matrix product"), "\(message)")
        #expect(message.contains("ulimit -v"), "\(message)")
    }

    @Test("without a handler, a kernel's failed allocation stops with a message naming size and purpose")
    func kernelFailureWithoutAHandler() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            bp_out_of_memory(12_288, "a padded image to unfold (im2col)")
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("could not allocate 12288 bytes for a padded image to unfold (im2col)"), "\(message)")
    }
}
