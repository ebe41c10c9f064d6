import Foundation

/// Large buffers that tensors have released, kept for the next tensor of the same size.
///
/// The seed's backward pass makes a new 157 MB `x.g` at every step. Fresh memory from the
/// operating system costs a page fault per page and the kernel's zeroing of every byte, about as
/// long as the matrix product that fills it; a buffer kept from the previous step costs neither.
/// PyTorch's allocators keep memory the same way.
///
/// Only buffers of at least `Storage.hugePageThreshold` bytes are kept (small ones come cheaply
/// from `malloc`), at most ``capacity`` bytes in all; a buffer is reused only for the same size.
enum StorageCache {
    /// The most bytes kept at once; a released buffer that would exceed it is freed.
    static let capacity = 1 << 30

    /// The kept buffers (addresses) by size in bytes, and their total.
    private struct Pool {
        var buffers: [Int: [UInt]] = [:]
        var bytes = 0
    }

    private static let pool = Locked(Pool())

    /// A kept buffer of exactly `bytes` bytes, removed from the cache, or `nil`.
    static func take(bytes: Int) -> UnsafeMutableRawPointer? {
        let address: UInt? = pool.withLock { pool in
            guard let address = pool.buffers[bytes]?.popLast() else { return nil }
            pool.bytes -= bytes
            return address
        }
        return address.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
    }

    /// Keeps `buffer` (of `bytes` bytes) for reuse; returns `false` when the cache is full and the
    /// caller must free it.
    static func keep(_ buffer: UnsafeMutableRawPointer, bytes: Int) -> Bool {
        let address = UInt(bitPattern: buffer)
        return pool.withLock { pool in
            guard pool.bytes + bytes <= capacity else { return false }
            pool.buffers[bytes, default: []].append(address)
            pool.bytes += bytes
            return true
        }
    }

    /// Frees every kept buffer (for measurements that must start from fresh memory).
    static func empty() {
        let addresses: [UInt] = pool.withLock { pool in
            let all = pool.buffers.values.flatMap { $0 }
            pool.buffers = [:]
            pool.bytes = 0
            return all
        }
        for address in addresses { free(UnsafeMutableRawPointer(bitPattern: address)) }
    }
}
