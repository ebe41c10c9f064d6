import CKernels
import Foundation
import Testing

@testable import BackpropCore

// The C kernels' own memory (a product's packing buffer, a convolution's padded image) fails as a
// tensor's storage does: through `Tensor.allocationFailed`, never `abort()`. That a limit makes
// them fail is the memory-limit sweep's part (BadInputTests+SizesAndResume.swift: `backprop train`
// under `ulimit -v`, where a product's buffer once aborted); here, that the failure reaches the
// handler a program installs, from any thread.

/// What a program's handler does, for the exit tests: the request on stderr, then exit status 3.
private func installHandlerThatExits3() {
    Tensor.allocationFailed = { request in
        let line = "allocation failed: \(request)\n"
        line.utf8CString.withUnsafeBufferPointer { _ = write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
        _exit(3)
    }
}

@Suite("Out of memory in the C kernels")
struct KernelMemoryTests {
    @Test("a kernel's failed allocation ends through the program's allocationFailed, naming size and purpose")
    func kernelFailureReachesTheHandler() async {
        let result = await #expect(processExitsWith: .exitCode(3), observing: [\.standardErrorContent]) {
            installHandlerThatExits3()
            // On a thread of its own, as on one of the pool's helpers.
            let thread = Thread { bp_out_of_memory(3 << 20, "the packing buffer of a matrix product") }
            thread.start()
            sleep(60)
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("allocation failed: 3.0 MiB for the packing buffer of a matrix product"), "\(message)")
        #expect(message.contains("ulimit -v"), "\(message)")
    }

    #if os(Linux)
        @Test(
            "a pool thread that runs out when nothing more can be had still says so, through the reserve",
            .enabled(if: !underSanitizer, "the sanitizers reserve terabytes of address space: no RLIMIT_AS"))
        func reportWhenMemoryIsExhausted() async {
            // What once crashed in CI under `ulimit -v`: a helper's packing buffer was refused, and
            // building the message needed memory that could not be had either. Here the address
            // space is capped at what the process has, and a thread takes every block its heap
            // still gives, before it reports; the report must still reach the handler whole.
            let result = await #expect(processExitsWith: .exitCode(3), observing: [\.standardErrorContent]) {
                installHandlerThatExits3()
                let ready = DispatchSemaphore(value: 0)
                let go = DispatchSemaphore(value: 0)
                let thread = Thread {
                    let blocks = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: 1 << 22)
                    // (A C string made now: a literal passed to C would be copied then.)
                    let purpose = strdup("the packing buffer of a matrix product")
                    ready.signal()
                    go.wait()
                    var taken = 0
                    // Large blocks first: they take the address space in a few mappings (small ones
                    // first would each be mapped alone and run out of mappings, not of memory).
                    for size in [1 << 20, 1 << 16, 4096, 256, 32] {
                        while taken < 1 << 22, let block = malloc(size) {
                            blocks[taken] = block
                            taken += 1
                        }
                    }
                    // Nothing more can be had: the heap gives no block of 32 bytes.
                    if malloc(32) != nil { _exit(4) }
                    bp_out_of_memory(3 << 20, purpose)
                }
                thread.start()
                ready.wait()
                // The address space in use now (`/proc/self/statm`'s first field, in pages), and 1 MiB
                // more, becomes the limit.
                guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
                    let pages = statm.split(separator: " ").first.flatMap({ Int($0) })
                else { _exit(5) }
                var limit = rlimit()
                getrlimit(Int32(RLIMIT_AS.rawValue), &limit)
                limit.rlim_cur = rlim_t(pages * Int(sysconf(Int32(_SC_PAGESIZE))) + (1 << 20))
                if setrlimit(Int32(RLIMIT_AS.rawValue), &limit) != 0 { _exit(6) }
                go.signal()
                sleep(60)
            }
            let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
            #expect(
                message.contains("allocation failed: 3.0 MiB for the packing buffer of a matrix product"), "\(message)")
        }
    #endif

    @Test("sizes in messages are rounded to one decimal as printf's %.1f rounds them")
    func sizesInMessages() {
        // The reference is C's printf (through String(format:)), on values exact in a Double.
        var sizes: [Int] = Array(0...5000) + [1023, 1024, 1025, 1 << 20, (1 << 20) - 1, (1 << 30) - 1, 1 << 30]
        for unit in [1 << 10, 1 << 20, 1 << 30] {
            for whole in [1, 2, 3, 17, 1000] {
                for twentieths in 0...20 {
                    // The ties (x.x5 exactly) and their neighbours.
                    let tie = whole * unit + twentieths * unit / 20
                    sizes += [tie - 1, tie, tie + 1]
                }
            }
        }
        // And 2,000 spread over [0, 2⁵⁰) (Fibonacci hashing).
        sizes += (0..<2000).map { Int((UInt64($0) &* 0x9E37_79B9_7F4A_7C15) >> 14) }
        for bytes in sizes where bytes >= 0 {
            let (unit, name) =
                bytes >= 1 << 30 ? (1 << 30, "GiB") : bytes >= 1 << 20 ? (1 << 20, "MiB") : (1 << 10, "KiB")
            let reference = String(format: "%.1f \(name)", Double(bytes) / Double(unit))
            #expect(Storage.describe(bytes: bytes) == reference, "\(bytes) bytes")
        }
        #expect(Storage.describe(bytes: Int.max) == "8589934592.0 GiB")
        #expect(Storage.describe(bytes: -1536) == "-1.5 KiB")
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
