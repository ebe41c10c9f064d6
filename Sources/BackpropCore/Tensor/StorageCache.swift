import Foundation

/// Large buffers that tensors have released, kept for the next tensor of the same size.
///
/// The seed's backward pass makes a new 157 MB `x.g` at every step. Fresh memory from the
/// operating system costs a page fault per page and the kernel's zeroing of every byte, about as
/// long as the matrix product that fills it; a buffer kept from the previous step costs neither.
/// PyTorch's allocators keep memory the same way.
///
/// Only buffers of at least `Storage.hugePageThreshold` bytes are kept (small ones come cheaply
/// from `malloc`); their sizes are whole multiples of 2 MiB (`Storage.allocatedBytes`), so that
/// tensors of nearby sizes (the batches of an inference loop, each a few rows longer) share
/// buffers, as PyTorch's allocator rounds its blocks. At most ``capacity`` bytes are kept: a
/// buffer released into a full cache makes room by freeing the buffers kept longest ago, so the
/// cache follows the sizes in use (it once filled with a gigabyte of sizes never asked for again).
/// ``Tensor/releaseCachedMemory()`` frees them all, and an allocation the system refuses frees
/// them and tries again before it fails.
enum StorageCache {
    /// The most bytes kept at once.
    static let capacity = 1 << 30

    /// The kept buffers (addresses and sizes), oldest first, and their total. A value: the
    /// policy, tested on its own. (A few hundred buffers at most: 1 GiB of 4 MiB and up.)
    struct Pool {
        private var kept: [(address: UInt, bytes: Int)] = []
        private(set) var bytes = 0

        /// The kept buffers by size, oldest first.
        var buffers: [Int: [UInt]] { Dictionary(grouping: kept, by: \.bytes).mapValues { $0.map(\.address) } }

        /// Removes and returns the buffer of exactly `bytes` bytes kept last, or `nil`.
        mutating func take(bytes: Int) -> UInt? {
            guard let index = kept.lastIndex(where: { $0.bytes == bytes }) else { return nil }
            self.bytes -= bytes
            return kept.remove(at: index).address
        }

        /// Keeps `address` (`bytes` bytes), after removing the buffers kept longest ago until the
        /// total fits in `capacity`; returns the ones removed, for the caller to free. `nil` (and
        /// nothing kept) when the buffer alone is larger than `capacity`.
        mutating func keep(_ address: UInt, bytes: Int, capacity: Int) -> [UInt]? {
            guard bytes <= capacity else { return nil }
            var dropped = 0
            while self.bytes + bytes > capacity, dropped < kept.count {
                self.bytes -= kept[dropped].bytes
                dropped += 1
            }
            let evicted = kept.prefix(dropped).map(\.address)
            kept.removeFirst(dropped)
            kept.append((address, bytes))
            self.bytes += bytes
            return evicted
        }

        /// Removes every buffer; returns them, for the caller to free.
        mutating func removeAll() -> [UInt] {
            defer { self = Pool() }
            return kept.map(\.address)
        }
    }

    private static let pool = Locked(Pool())

    /// A kept buffer of exactly `bytes` bytes, removed from the cache, or `nil`.
    static func take(bytes: Int) -> UnsafeMutableRawPointer? {
        pool.withLock { $0.take(bytes: bytes) }.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
    }

    /// Keeps `buffer` (of `bytes` bytes) for reuse, freeing the buffers kept longest ago to make
    /// room; returns `false` when it is larger than the whole cache and the caller must free it.
    static func keep(_ buffer: UnsafeMutableRawPointer, bytes: Int) -> Bool {
        let address = UInt(bitPattern: buffer)
        guard let evicted = pool.withLock({ $0.keep(address, bytes: bytes, capacity: capacity) }) else { return false }
        for address in evicted { free(UnsafeMutableRawPointer(bitPattern: address)) }
        return true
    }

    /// Frees every kept buffer; returns how many bytes it gave back.
    @discardableResult
    static func empty() -> Int {
        let (addresses, bytes): ([UInt], Int) = pool.withLock { pool in
            let bytes = pool.bytes
            return (pool.removeAll(), bytes)
        }
        for address in addresses { free(UnsafeMutableRawPointer(bitPattern: address)) }
        return bytes
    }

    /// `attempt()`, and, if it fails, once more after freeing the kept buffers (when there were
    /// any): memory the system refuses is first looked for here. Returns whether an attempt succeeded.
    static func retryingAfterEmptying(_ attempt: () -> Bool) -> Bool {
        attempt() || (empty() > 0 && attempt())
    }

    /// The bytes kept now.
    static var keptBytes: Int { pool.withLock { $0.bytes } }
}

extension Tensor {
    /// Frees the large buffers (4 MiB and more) that released tensors left for reuse, and returns
    /// how many bytes that gave back (PyTorch's `torch.cuda.empty_cache()`, for the CPU).
    ///
    /// Backprop keeps up to 1 GiB of them per process, so that a training step's large tensors
    /// reuse the last step's memory instead of asking the system again (see the README's
    /// "Speed"); kept buffers are reused by tensors of the same size, rounded up to 2 MiB, and the
    /// cache frees its oldest when it is full. A program that is done with large tensors, or that
    /// runs beside others under a memory limit, can give the memory back here. An allocation that
    /// the system refuses does this itself, then tries once more.
    @discardableResult
    public static func releaseCachedMemory() -> Int {
        StorageCache.empty()
    }

    /// The bytes that released tensors' large buffers hold for reuse now (see
    /// ``releaseCachedMemory()``).
    public static var cachedMemoryBytes: Int { StorageCache.keptBytes }
}
