import Foundation
import CKernels
import Synchronization

/// A buffer of `Float` values that one or more tensors view.
///
/// Views (`t()`, `squeeze()`, `unsqueeze(_:)`, `reshape(_:)`) share one `Storage`; the memory is
/// 64-byte aligned so that BLAS and SIMD loops read it at full speed.
final class Storage: @unchecked Sendable {
    /// The first element.
    let pointer: UnsafeMutablePointer<Float>
    /// The number of elements.
    let count: Int
    /// How many times the values were changed in place through the public API (the subscript,
    /// ``Tensor/withUnsafeMutableBufferPointer(_:)``): autograd compares it with the count it saw
    /// when it recorded an operation, as PyTorch's version counters do.
    var version = 0

    /// Allocates `count` elements, uninitialised.
    init(count: Int) {
        precondition(count >= 0, "Storage: negative element count \(count)")
        let bytes = Storage.allocatedBytes(count)
        self.count = count
        Storage.allocations.add(1, ordering: .relaxed)
        Storage.allocatedByteCount.add(bytes, ordering: .relaxed)
        if bytes >= Storage.hugePageThreshold, let kept = StorageCache.take(bytes: bytes) {
            pointer = kept.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
            return
        }
        // Large buffers (a 50000×784 gradient is 157 MB) are aligned to 2 MiB and, on Linux,
        // offered transparent huge pages: first touching them then costs one page fault per
        // 2 MiB instead of one per 4 KiB, as NumPy arranges for its large arrays.
        let large = bytes >= Storage.hugePageThreshold
        var raw: UnsafeMutableRawPointer?
        // Under `ulimit -v`, refused while Swift's small allocations still have room (Memory.c).
        let allocated = StorageCache.retryingAfterEmptying {
            bp_address_space_has_room(bytes) != 0 && posix_memalign(&raw, large ? 1 << 21 : 64, bytes) == 0
                && raw != nil
        }
        if !allocated { Tensor.outOfMemory(bytes: bytes, for: "a tensor") }
        #if os(Linux)
            if large { _ = madvise(raw, bytes, MADV_HUGEPAGE) }
        #endif
        pointer = raw!.bindMemory(to: Float.self, capacity: Swift.max(count, 1))
    }

    /// The storages made since the process started (a tensor's values; views share them), and
    /// their bytes: what a training step allocates (issue 16's breakdown of a step).
    static let allocations = Atomic<Int>(0)
    static let allocatedByteCount = Atomic<Int>(0)

    /// `12.0 KiB`, `149.5 MiB`, `2.0 GiB`: a size for a message, to one decimal, rounded as
    /// `printf`'s `%.1f` rounds (to nearest, a tie to even).
    ///
    /// In integers, not `String(format:)`: it is called when memory has run out, on any thread,
    /// and Foundation's formatting needs the thread's own data, which it could not allocate there.
    static func describe(bytes: Int) -> String {
        let size = bytes.magnitude
        let (unit, name): (UInt, String) =
            size >= 1 << 30 ? (1 << 30, "GiB") : size >= 1 << 20 ? (1 << 20, "MiB") : (1 << 10, "KiB")
        // size / unit = whole + rest / unit, with rest / unit = (tenths + remainder / unit) / 10.
        var whole = size / unit
        let rest = size % unit
        var tenths = rest * 10 / unit
        let remainder = rest * 10 % unit
        if 2 * remainder > unit || (2 * remainder == unit && tenths % 2 == 1) { tenths += 1 }
        if tenths == 10 {
            whole += 1
            tenths = 0
        }
        return "\(bytes < 0 ? "-" : "")\(whole).\(tenths) \(name)"
    }

    /// Buffers of at least this many bytes are placed for huge pages, and kept for reuse by
    /// ``StorageCache`` when released.
    static let hugePageThreshold = 4 << 20

    /// The bytes allocated for `count` elements (at least one element); from
    /// ``hugePageThreshold`` up, a whole number of 2 MiB (the huge pages they are aligned to), so
    /// that the cache of released buffers serves tensors of nearby sizes (`StorageCache`). The
    /// pages past the elements are never touched, so they cost address space, not memory.
    static func allocatedBytes(_ count: Int) -> Int {
        let bytes = Swift.max(count, 1) * MemoryLayout<Float>.stride
        guard bytes >= hugePageThreshold else { return bytes }
        let page = 1 << 21
        return bytes > Int.max - page ? bytes : (bytes + page - 1) / page * page
    }

    deinit {
        let bytes = Storage.allocatedBytes(count)
        if bytes >= Storage.hugePageThreshold && StorageCache.keep(UnsafeMutableRawPointer(pointer), bytes: bytes) {
            return
        }
        free(pointer)
    }
}

/// An n-dimensional array of `Float` values, stored row-major, with reference semantics.
///
/// `Tensor` is a class, as a PyTorch tensor is an object: the seed's backward pass works because
/// a layer's `inp` *is* the previous layer's `out`, so the gradient one layer writes into `inp.g`
/// is the one the layer before it reads from `out.g`.
///
/// A tensor carries two kinds of gradient, kept apart so that they can be compared on the same
/// objects:
/// - ``g``: the seed's hand-written gradient, set by the layers' `backward()` methods;
/// - ``grad``: the gradient that the autograd engine computes (see ``requiresGrad``).
///
/// Shapes follow PyTorch: a scalar has shape `[]`, a vector `[n]`, a matrix `[rows, columns]`.
/// Operations stop with a message that names both shapes when they do not fit.
public final class Tensor {
    /// The size of each dimension, outermost first.
    public let shape: [Int]
    /// How many storage elements one step along each dimension moves.
    let strides: [Int]
    /// Where the first element sits in ``storage``.
    package let offset: Int
    /// The values this tensor views (possibly shared with other views).
    let storage: Storage

    /// The seed's hand-written gradient of the loss with respect to this tensor (`x.g` in the
    /// lesson).
    ///
    /// Implicitly unwrapped, as the seed reads it: `inp.g = out.g • w.t()` reads `out.g`, which the
    /// next layer's `backward()` must already have set. `nil` until a `backward()` writes it.
    public var g: Tensor!

    /// Whether the autograd engine tracks operations on this tensor (PyTorch's `requires_grad`).
    public var requiresGrad: Bool = false
    /// The gradient that autograd's ``backward()`` accumulated here (PyTorch's `.grad`).
    public var grad: Tensor?
    /// The recorded operation that produced this tensor, if autograd tracked it.
    var gradFn: GradFn?

    deinit {
        if gradFn != nil { GradFn.releaseIteratively(graphOf: self) }
    }

    /// Creates a tensor that views `storage` with the given layout.
    init(storage: Storage, shape: [Int], strides: [Int], offset: Int = 0) {
        self.storage = storage
        self.shape = shape
        self.strides = strides
        self.offset = offset
    }

    /// Creates a contiguous tensor with uninitialised values (callers fill every element).
    package init(uninitializedShape shape: [Int]) {
        var count = 1
        for size in shape {
            precondition(size >= 0, "Tensor: negative dimension in shape \(shape)")
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            if overflow || product.multipliedReportingOverflow(by: MemoryLayout<Float>.stride).overflow {
                Tensor.outOfMemory("a tensor of shape \(shape), more elements than memory can address")
            }
            count = product
        }
        self.storage = Storage(count: count)
        self.shape = shape
        self.strides = Tensor.contiguousStrides(for: shape)
        self.offset = 0
    }

    /// Creates a tensor of the given shape from values listed row-major.
    ///
    /// - Parameters:
    ///   - shape: the size of each dimension; `[]` for a scalar.
    ///   - values: `shape.reduce(1, *)` values, last dimension fastest.
    /// - Precondition: `values.count` equals the product of `shape`.
    public convenience init(shape: [Int], values: [Float]) {
        let count = shape.reduce(1, *)
        precondition(
            values.count == count,
            "Tensor(shape:values:): shape \(shape) needs \(count) values, got \(values.count)")
        self.init(uninitializedShape: shape)
        values.withUnsafeBufferPointer { source in
            if count > 0 { storage.pointer.update(from: source.baseAddress!, count: count) }
        }
    }

    /// Creates a scalar tensor (shape `[]`).
    public convenience init(_ value: Float) {
        self.init(shape: [], values: [value])
    }

    /// Creates a vector (shape `[values.count]`).
    public convenience init(_ values: [Float]) {
        self.init(shape: [values.count], values: values)
    }

    /// Creates a matrix from its rows (shape `[rows.count, rows[0].count]`).
    /// - Precondition: every row has the same length.
    public convenience init(_ rows: [[Float]]) {
        let columns = rows.first?.count ?? 0
        for row in rows {
            precondition(row.count == columns, "Tensor(rows): rows of lengths \(columns) and \(row.count)")
        }
        self.init(shape: [rows.count, columns], values: rows.flatMap { $0 })
    }

    /// Row-major strides for `shape`.
    package static func contiguousStrides(for shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var step = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[axis] = step
            step *= Swift.max(shape[axis], 1)
        }
        return strides
    }

    /// The number of elements (the product of ``shape``).
    public var count: Int { shape.reduce(1, *) }

    /// The number of dimensions (`shape.count`).
    public var rank: Int { shape.count }

    /// Whether the values lie in storage row-major with no gaps, so loops can run over them flat.
    public var isContiguous: Bool {
        var expected = 1
        for axis in stride(from: shape.count - 1, through: 0, by: -1) where shape[axis] != 1 {
            if strides[axis] != expected { return false }
            expected *= shape[axis]
        }
        return true
    }

    /// The values, row-major, as a new array.
    public var values: [Float] {
        Tensor.checkAllocatable(
            bytes: count * MemoryLayout<Float>.size, for: "the values of a tensor of shape \(shape)")
        return withUnsafeBufferPointer { Array($0) }
    }

    /// The value of a one-element tensor (PyTorch's `item()`).
    /// - Precondition: the tensor holds exactly one element.
    public func item() -> Float {
        precondition(count == 1, "item(): tensor of shape \(shape) has \(count) elements, not 1")
        return storage.pointer[offset]
    }

    /// The element at `indices`: one index per dimension, each in range (`v[2]` of a vector,
    /// `m[1, 0]` of a matrix, `x[]` of a scalar). Setting it changes the tensor in place.
    ///
    /// NOTE: unlike PyTorch's `t[0]`, this is always one element: on a matrix, `t[0]` stops with
    /// a message that points to `t[row: 0]`, the row as a tensor. Rows, ranges of rows and
    /// gathered rows are `t[row: i]`, `t[a..<b]` and `t[rows: [i, j]]` (Tensor+Indexing.swift).
    /// - Precondition: as many indices as dimensions, each in range; otherwise stops naming the
    ///   indices and the shape.
    public subscript(_ indices: Int...) -> Float {
        get { storage.pointer[elementOffset(indices)] }
        set {
            storage.pointer[elementOffset(indices)] = newValue
            storage.version &+= 1
        }
    }

    /// The storage offset of the element at `indices`, checked against the shape.
    private func elementOffset(_ indices: [Int]) -> Int {
        if indices.count == 1 && shape.count >= 2 {
            preconditionFailure(
                "Tensor subscript: t[\(indices[0])] is one element, and a tensor of shape \(shape) needs "
                    + "\(shape.count) indices; for row \(indices[0]) as a tensor, write t[row: \(indices[0])]")
        }
        precondition(
            indices.count == shape.count,
            "Tensor subscript: \(indices.count) indices for a tensor of shape \(shape)")
        var position = offset
        for (axis, index) in indices.enumerated() {
            precondition(
                index >= 0 && index < shape[axis],
                "Tensor subscript: index \(index) out of range for dimension \(axis) of shape \(shape)")
            position += index * strides[axis]
        }
        return position
    }

    /// This tensor if it is contiguous, else a contiguous copy of its values.
    ///
    /// The copy stays in autograd's graph (its gradient is the output's, unchanged), so that
    /// `x.t().contiguous()` does not silently cut `x` off from ``backward()``.
    public func contiguous() -> Tensor {
        if isContiguous { return self }
        let result = Tensor(uninitializedShape: shape)
        var destination = result.storage.pointer
        forEachOffset { position in
            destination.pointee = storage.pointer[position]
            destination += 1
        }
        return result.recorded(.reshape, self)
    }

    /// Calls `body` with the storage offset of each element, in row-major order.
    func forEachOffset(_ body: (Int) -> Void) {
        if count == 0 { return }
        if shape.isEmpty {
            body(offset)
            return
        }
        var index = [Int](repeating: 0, count: shape.count)
        var position = offset
        let last = shape.count - 1
        while true {
            let innerStride = strides[last]
            for i in 0..<shape[last] { body(position + i * innerStride) }
            // Carry into the outer dimensions.
            var axis = last - 1
            while axis >= 0 {
                index[axis] += 1
                position += strides[axis]
                if index[axis] < shape[axis] { break }
                position -= strides[axis] * shape[axis]
                index[axis] = 0
                axis -= 1
            }
            if axis < 0 { return }
        }
    }

    /// Calls `body` with the tensor's values as one contiguous row-major buffer.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        let source = contiguous()
        return try withExtendedLifetime(source) {
            try body(UnsafeBufferPointer(start: source.storage.pointer + source.offset, count: count))
        }
    }

    /// Calls `body` with this tensor's own values to change them in place.
    /// - Precondition: the tensor is contiguous (views made by `t()` must be copied first).
    public func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        precondition(isContiguous, "withUnsafeMutableBufferPointer: tensor of shape \(shape) is a non-contiguous view")
        storage.version &+= 1
        return try body(UnsafeMutableBufferPointer(start: storage.pointer + offset, count: count))
    }

    /// A pointer to the first element of a contiguous tensor, for kernels.
    ///
    /// NOTE: the lifetime rule. The pointer is valid only while this tensor, which owns its
    /// storage, is alive, and Swift may release an object right after its last use, before a
    /// loop that reads through the pointer. A tensor passed in as an argument lives through the
    /// call; a local one, above all a temporary copy (`let source = x.contiguous()`), must be kept
    /// alive around every use of its pointer: `withExtendedLifetime(source) { … }`, or use
    /// ``withUnsafeBufferPointer(_:)``. The address sanitizer runs the tests in CI to catch a slip.
    package var pointer: UnsafeMutablePointer<Float> { storage.pointer + offset }
}

extension Tensor {
    /// What happens when the memory for a tensor cannot be had (the system refuses it: a limit
    /// such as `ulimit -v`, or no memory left). A tensor cannot exist without its storage, so this
    /// never returns: by default the program stops with a message naming the size; a program can
    /// end more gracefully, as `backprop` does with one line on stderr and exit status 1. Set it
    /// once, before any other thread runs.
    /// Its argument says what was asked for: `149.5 MiB for a tensor (…)`, or `a tensor of shape
    /// [...], more elements than memory can address`.
    /// Setting it also routes the C kernels' scratch (a product's packing buffer, a convolution's
    /// padded image), allocated on whichever thread runs the kernel, through it
    /// (`bp_set_out_of_memory_handler`), and sets aside the reserve that ``outOfMemory(bytes:for:)``
    /// gives back; before it is set they stop with a message on stderr.
    nonisolated(unsafe) package static var allocationFailed: (_ request: String) -> Never = stopForMemory(_:) {
        didSet { bp_set_out_of_memory_handler(kernelAllocationFailed) }
    }

    /// The default ``allocationFailed``: a precondition failure naming the request.
    private static func stopForMemory(_ request: String) -> Never {
        preconditionFailure("Tensor: could not allocate \(request)")
    }

    /// Ends the process through ``allocationFailed`` with `request`, after giving back the
    /// emergency reserve (`bp_release_memory_reserve`), so that the message can be built.
    package static func outOfMemory(_ request: @autoclosure () -> String) -> Never {
        bp_release_memory_reserve()
        allocationFailed(request())
    }

    /// `12.0 KiB`, `149.5 MiB`, `2.0 GiB`: a size for a message, as the out-of-memory errors give it.
    package static func describe(bytes: Int) -> String { Storage.describe(bytes: bytes) }

    /// ``outOfMemory(_:)`` for `bytes` for `purpose` ("a tensor", "the work buffers of OpenBLAS")
    /// that the system refused.
    package static func outOfMemory(bytes: Int, for purpose: @autoclosure () -> String) -> Never {
        outOfMemory(
            "\(Storage.describe(bytes: bytes)) for \(purpose()) (the system refused it: a memory limit such as "
                + "ulimit -v, or the machine's memory)")
    }
}

/// The C kernels' out-of-memory handler (`bp_out_of_memory` in Memory.c): `bytes` for `purpose`,
/// told to ``Tensor/allocationFailed`` as a tensor's storage would be.
private func kernelAllocationFailed(bytes: Int, purpose: UnsafePointer<CChar>?) {
    Tensor.outOfMemory(bytes: bytes, for: purpose.map { String(cString: $0) } ?? "a kernel's scratch memory")
}

extension Tensor {
    /// Makes sure `bytes` of memory can be had before a Swift array of that size is made, and ends
    /// through ``allocationFailed`` if not.
    ///
    /// Swift's arrays stop the program with a trap when the system refuses their memory; there is
    /// no failable way to make one. So the arrays whose size comes from outside (a file's bytes, a
    /// file being written, all of a tensor's values) ask first, with a probe mapping of the same
    /// size (and 64 KiB more for the array's header), unmapped at once: the array's allocation
    /// then succeeds unless another thread takes the memory in between. The probe is `mmap`, not
    /// `malloc` and `free`: malloc may keep a freed block in its heap where the array's slightly
    /// larger request does not fit, so a successful `malloc` probe does not promise the next one.
    /// Small arrays (under 64 KiB, which malloc takes from its heap) are not checked; a max
    /// pooling's indices of 784 KiB, unchecked, once stopped a run under `ulimit -v` with a trap.
    package static func checkAllocatable(bytes: Int, for purpose: @autoclosure () -> String) {
        guard bytes >= 1 << 16 else { return }
        let probeBytes = bytes < Int.max - (1 << 16) ? bytes + (1 << 16) : Int.max
        let available = StorageCache.retryingAfterEmptying {
            guard let probe = mmap(nil, probeBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                probe != MAP_FAILED
            else { return false }
            munmap(probe, probeBytes)
            return true
        }
        if !available { outOfMemory(bytes: bytes, for: purpose()) }
    }
}

extension UnsafeMutablePointer {
    /// `allocate(capacity:)` for a kernel's scratch memory, checked first as
    /// ``Tensor/checkAllocatable(bytes:for:)`` checks an array: memory that cannot be had ends
    /// through ``Tensor/allocationFailed`` instead of Swift's trap.
    package static func allocateScratch(capacity: Int, for purpose: @autoclosure () -> String) -> Self {
        let (bytes, overflow) = capacity.multipliedReportingOverflow(by: MemoryLayout<Pointee>.stride)
        Tensor.checkAllocatable(bytes: overflow ? Int.max : bytes, for: purpose())
        return allocate(capacity: capacity)
    }
}
