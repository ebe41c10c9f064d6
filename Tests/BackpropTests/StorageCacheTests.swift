import Foundation
import Testing

@testable import BackpropCore

// The cache of released large buffers (StorageCache.swift): its policy on its own (addresses
// that stand for buffers), the 2 MiB sizes that let nearby tensors share buffers, and, in a child
// process under a limit on its address space, an allocation that succeeds only because a refused
// request frees the cache and tries again.

/// `RLIMIT_AS` as `getrlimit` takes it (Glibc imports the constant as an enum case).
private let RLIMIT_AS_RESOURCE = __rlimit_resource_t(RLIMIT_AS.rawValue)

@Suite("The cache of released large buffers")
struct StorageCacheTests {
    private static let mebibyte = 1 << 20

    @Test("buffers are taken by exact size; a full cache frees the ones kept longest ago")
    func policy() {
        var pool = StorageCache.Pool()
        let m = Self.mebibyte
        #expect(pool.keep(1, bytes: 4 * m, capacity: 16 * m) == [])
        #expect(pool.keep(2, bytes: 6 * m, capacity: 16 * m) == [])
        #expect(pool.keep(3, bytes: 4 * m, capacity: 16 * m) == [])
        #expect(pool.bytes == 14 * m)
        // 8 MiB more: the oldest two (1, then 2) make room.
        #expect(pool.keep(4, bytes: 8 * m, capacity: 16 * m) == [1, 2])
        #expect(pool.bytes == 12 * m)
        #expect(pool.take(bytes: 6 * m) == nil)
        #expect(pool.take(bytes: 4 * m) == 3)
        #expect(pool.take(bytes: 4 * m) == nil)
        // Larger than the whole cache: not kept, nothing freed.
        #expect(pool.keep(5, bytes: 17 * m, capacity: 16 * m) == nil)
        #expect(pool.bytes == 8 * m)
        #expect(pool.removeAll() == [4])
        #expect(pool.bytes == 0 && pool.buffers.isEmpty)
    }

    @Test("large buffers are whole 2 MiB pages, so nearby sizes share them; small ones are exact")
    func sizes() {
        let m = Self.mebibyte
        // 2,100 and 2,119 rows of 512 floats (4.1 and 4.14 MiB): both 6 MiB.
        #expect(Storage.allocatedBytes(2100 * 512) == 6 * m)
        #expect(Storage.allocatedBytes(2119 * 512) == 6 * m)
        #expect(Storage.allocatedBytes(m) == 4 * m)
        #expect(Storage.allocatedBytes(m + 1) == 6 * m)
        #expect(Storage.allocatedBytes(1000) == 4000)
        #expect(Storage.allocatedBytes(0) == 4)
    }

    /// A program that released a gigabyte of tensors of sizes it never asks for again, then needs
    /// 700 MB under a limit that leaves room for it only without the cache: the refused request
    /// frees the cache and succeeds. (It used to fail, with the memory held idle.)
    @Test(
        "an allocation refused under a memory limit frees the cache and tries again",
        .enabled(if: !underSanitizer, "the sanitizers reserve terabytes of address space: no limit on it"))
    func refusedAllocationFreesTheCache() async {
        await #expect(processExitsWith: .success) {
            for step in 0..<60 {
                // 4 MiB and up, each size once: the cache keeps the last gigabyte of them.
                let t = Tensor.zeros([(1 << 20) + step * (1 << 19)])
                _ = t.sum().item()
            }
            guard Tensor.cachedMemoryBytes > 900 << 20 else { exit(2) }
            // The address space now, plus 400 MiB: too little for 700 MB beside the cache.
            let pages =
                (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8))?
                .split(separator: " ").first.flatMap { Int($0) } ?? 0
            var limit = rlimit()
            guard getrlimit(RLIMIT_AS_RESOURCE, &limit) == 0 else { exit(3) }
            limit.rlim_cur = rlim_t(pages * Int(sysconf(Int32(_SC_PAGESIZE))) + (400 << 20))
            guard setrlimit(RLIMIT_AS_RESOURCE, &limit) == 0 else { exit(3) }
            let big = Tensor.zeros([175_000_000])
            guard big.count == 175_000_000, Tensor.cachedMemoryBytes == 0 else { exit(4) }
            exit(0)
        }
    }

    @Test("releaseCachedMemory gives the kept buffers back and says how many bytes")
    func release() async {
        await #expect(processExitsWith: .success) {
            _ = Tensor.releaseCachedMemory()
            do { _ = Tensor.zeros([3 << 20]).sum() }  // 12 MiB, released into the cache
            guard Tensor.cachedMemoryBytes == 12 << 20 else { exit(2) }
            guard Tensor.releaseCachedMemory() == 12 << 20, Tensor.cachedMemoryBytes == 0 else { exit(3) }
            exit(0)
        }
    }
}
