#if canImport(Accelerate)
    import Accelerate
#elseif OpenBLAS
    import CBLAS
#endif
import CKernels

/// Matrix product: the seed's `@`, which Swift cannot spell, is `•` (Option-8 on a Mac keyboard).
///
/// `x • w + b` is the seed's `x@w + b`.
infix operator • : MultiplicationPrecedence

/// The routine that computes a matrix product: every route, and how `.fast` chooses, in one place.
///
/// `.fast`, the default of `•` and ``Tensor/matmul(_:kernel:)``, chooses by shape and by what the
/// build and the CPU have:
/// 1. ``skinny``, the AVX2/FMA kernels in C (`Sources/CKernels/Gemm.c`, `MatMul+Skinny.swift`),
///    when one side of the product is small, as in the seed's (nh = 50): they read the long
///    operand once, in place, where BLAS would pack it. Never on a CPU without AVX2 and FMA.
/// 2. Otherwise ``blas``: Accelerate on macOS, OpenBLAS on Linux with the `OpenBLAS` trait; a
///    large product is cut into pieces over Backprop's threads (``Threads``), in the same pieces
///    for any number of threads, so results do not depend on it.
/// 3. Otherwise (a build without BLAS) ``blocked``, the portable pure-Swift kernel.
///
/// ``reference`` is the plain triple loop in Double that tests and benchmarks check the others
/// against. Naming a route other than `.fast` forces it (where the build or CPU lacks it,
/// `.skinny` and `.blas` fall back to `.blas` and `.blocked`); `backprop bench` measures each.
public enum MatMulKernel: String, CaseIterable, Sendable {
    /// The route chosen for the shape, as above.
    case fast
    /// The AVX2/FMA kernels for products with a small side.
    case skinny
    /// BLAS (`cblas_sgemm`), or the blocked kernel in a build without BLAS.
    case blas
    /// The portable blocked pure-Swift kernel (`MatMul+Blocked.swift`).
    case blocked
    /// The plain triple loop, accumulating in Double: the reference the others are tested against.
    case reference

    /// Whether this build calls a BLAS library.
    public static var hasBLAS: Bool {
        #if canImport(Accelerate) || OpenBLAS
            return true
        #else
            return false
        #endif
    }

    /// Whether this route runs as itself in this build on this CPU (`.fast` always does).
    public var isAvailable: Bool {
        switch self {
        case .skinny: Tensor.skinnyKernelIsAvailable
        case .blas: MatMulKernel.hasBLAS
        default: true
        }
    }

    /// The route this kernel takes for an `(m, k) • (k, n)` product: `.fast` resolved by the rules
    /// above, any other route itself.
    package func route(m: Int, n: Int, k: Int) -> MatMulKernel {
        guard self == .fast else { return self }
        if Tensor.prefersSkinnyKernel(m: m, n: n, k: k) { return .skinny }
        return MatMulKernel.hasBLAS ? .blas : .blocked
    }
}

/// One operand of a matrix product as the kernels read it: element `(i, k)` of a `rows × columns`
/// matrix is `pointer[i * leading + k]`, or `pointer[k * leading + i]` when `transposed`.
struct MatrixOperand: @unchecked Sendable {
    let pointer: UnsafePointer<Float>
    let rows: Int
    let columns: Int
    let leading: Int
    let transposed: Bool

    /// Element `(i, k)`.
    @inline(__always)
    subscript(i: Int, k: Int) -> Float {
        transposed ? pointer[k * leading + i] : pointer[i * leading + k]
    }

    /// Columns `range` of this matrix (all rows), reading the same memory.
    func columns(_ range: Range<Int>) -> MatrixOperand {
        MatrixOperand(
            pointer: pointer + (transposed ? range.lowerBound * leading : range.lowerBound), rows: rows,
            columns: range.count, leading: leading, transposed: transposed)
    }

    /// Rows `range` of this matrix (all columns), reading the same memory.
    func rows(_ range: Range<Int>) -> MatrixOperand {
        MatrixOperand(
            pointer: pointer + (transposed ? range.lowerBound : range.lowerBound * leading), rows: range.count,
            columns: columns, leading: leading, transposed: transposed)
    }
}

extension Tensor {
    /// The matrix product `a • b` (the seed's `a @ b`): `(n, k) • (k, m) → (n, m)`, and, as
    /// PyTorch's `@`, vectors and batches of matrices (see ``matmul(_:kernel:)``).
    ///
    /// Either operand may be a transposed view (`w.t()`): the kernels read it through its
    /// strides (BLAS through its transpose flag), without a copy.
    /// - Precondition: the shapes can be multiplied; otherwise stops naming both shapes.
    public static func • (a: Tensor, b: Tensor) -> Tensor {
        a.matmul(b)
    }

    /// The matrix product `self • other`, computed by `kernel`, with the shape rules of
    /// PyTorch's `torch.matmul`:
    /// - `(n, k) • (k, m) → (n, m)`;
    /// - a vector `(k)` on the left is a row, on the right a column, and that dimension is
    ///   dropped from the result: `(k) • (k, m) → (m)`, `(n, k) • (k) → (n)`, `(k) • (k) → ()`;
    /// - with more dimensions, the last two are the matrices and the ones before them a batch,
    ///   broadcast as in arithmetic: `(b, n, k) • (k, m) → (b, n, m)`,
    ///   `(b, 1, n, k) • (c, k, m) → (b, c, n, m)`. Each matrix of the batch is one product on
    ///   the route `kernel` chooses for its shape.
    ///
    /// Autograd's derivative: `∂(a • b) = g • bᵀ, aᵀ • g`, each summed over the batch dimensions
    /// its operand was broadcast along.
    /// - Precondition: neither is a scalar, the inner sizes agree and the batch dimensions
    ///   broadcast; otherwise stops naming both shapes.
    public func matmul(_ other: Tensor, kernel: MatMulKernel = .fast) -> Tensor {
        if rank != 2 || other.rank != 2 { return Tensor.generalMatmul(self, other, kernel: kernel) }
        Tensor.checkMatmulShapes(self, other, operation: "matmul")
        let result = Tensor(uninitializedShape: [shape[0], other.shape[1]])
        Tensor.gemm(self, other, into: result, accumulate: false, kernel: kernel)
        return result.recorded(.matmul, self, other)
    }

    /// Stops unless `a • b` is defined, naming both shapes.
    package static func checkMatmulShapes(_ a: Tensor, _ b: Tensor, operation: String) {
        precondition(
            a.rank == 2 && b.rank == 2,
            "\(operation): expects two matrices, got shapes \(a.shape) and \(b.shape)")
        precondition(
            a.shape[1] == b.shape[0],
            "\(operation): shapes \(a.shape) and \(b.shape) cannot be multiplied (\(a.shape[1]) ≠ \(b.shape[0]))")
    }

    /// The operand view of a matrix, copying it only if it is neither row- nor column-major.
    func matrixOperand() -> (MatrixOperand, keepAlive: Tensor) {
        let rows = shape[0]
        let columns = shape[1]
        if strides[1] == 1 || columns == 1 {
            let leading = Swift.max(strides[0], columns, 1)
            return (
                MatrixOperand(
                    pointer: UnsafePointer(pointer), rows: rows, columns: columns, leading: leading, transposed: false),
                self
            )
        }
        if strides[0] == 1 || rows == 1 {
            let leading = Swift.max(strides[1], rows, 1)
            return (
                MatrixOperand(
                    pointer: UnsafePointer(pointer), rows: rows, columns: columns, leading: leading, transposed: true),
                self
            )
        }
        let copy = contiguous()
        return (
            MatrixOperand(
                pointer: UnsafePointer(copy.pointer), rows: rows, columns: columns, leading: Swift.max(columns, 1),
                transposed: false), copy
        )
    }

    /// `c = a • b (+ bias)`, or `c += a • b` when `accumulate`; `c` is contiguous
    /// `(a.rows, b.columns)`, and `bias`, if given, has `b.columns` elements.
    package static func gemm(
        _ a: Tensor, _ b: Tensor, into c: Tensor, accumulate: Bool, bias: Tensor? = nil, kernel: MatMulKernel
    ) {
        let (left, keepLeft) = a.matrixOperand()
        let (right, keepRight) = b.matrixOperand()
        let biasValues = bias?.contiguous()
        let route = kernel.route(m: left.rows, n: right.columns, k: left.columns)
        withExtendedLifetime((keepLeft, keepRight, biasValues)) {
            gemm(
                left, right, into: c.pointer, accumulate: accumulate,
                bias: biasValues.map { UnsafePointer($0.pointer) }, route: route)
        }
    }

    /// `c = a • b (+ bias)` or `c += a • b` on raw operands, by `route` (not `.fast`: see
    /// ``MatMulKernel/route(m:n:k:)``); `c` is row-major `(a.rows, b.columns)`.
    static func gemm(
        _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, accumulate: Bool,
        bias: UnsafePointer<Float>? = nil, route: MatMulKernel
    ) {
        let m = a.rows
        let n = b.columns
        let k = a.columns
        if m == 0 || n == 0 { return }
        if route == .skinny && skinnyKernelIsAvailable && k > 0 {
            skinnyGemm(a, b, into: c, accumulate: accumulate, bias: bias)
            return
        }
        // The other routes add the bias by writing it into every row of C, then accumulating.
        var accumulate = accumulate
        if let bias {
            precondition(!accumulate, "gemm: a bias is only added to a fresh product")
            for row in 0..<m { (c + row * n).update(from: bias, count: n) }
            accumulate = true
        }
        if k == 0 {
            if !accumulate { c.update(repeating: 0, count: m * n) }
            return
        }
        switch route {
        case .reference:
            referenceGemm(a, b, into: c, accumulate: accumulate)
        case .blocked:
            blockedGemm(a, b, into: c, accumulate: accumulate)
        case .blas, .skinny, .fast:
            #if canImport(Accelerate) || OpenBLAS
                blasGemm(a, b, into: c, accumulate: accumulate)
            #else
                blockedGemm(a, b, into: c, accumulate: accumulate)
            #endif
        }
    }

    #if canImport(Accelerate) || OpenBLAS
        /// Products of at least this many multiply-adds are split over Backprop's threads, in
        /// pieces of at least this many (about 80 µs of one core's work).
        static let blasPieceWork = 1 << 22

        /// `cblas_sgemm`, on one thread, or split over ``Parallel`` by rows of C (or columns, when
        /// C is wide): each piece is a product of its own, which the cores take as they come free.
        /// Each element of C is summed in the same order however the product is split.
        static func blasGemm(
            _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, accumulate: Bool
        ) {
            let m = a.rows
            let n = b.columns
            let k = a.columns
            reserveBLASBuffers()
            guard m * n * k >= 2 * blasPieceWork && BLASThreads.backpropSplitsProducts else {
                blasBlock(a, b, into: c, rows: 0..<m, columns: 0..<n, ldc: n, accumulate: accumulate)
                return
            }
            if m >= n {
                let minimum = Swift.max(16, blasPieceWork / Swift.max(n * k, 1))
                Parallel.forEachRange(m, minimumPerPiece: minimum, grain: 16) { rows in
                    blasBlock(a, b, into: c, rows: rows, columns: 0..<n, ldc: n, accumulate: accumulate)
                }
            } else {
                let minimum = Swift.max(16, blasPieceWork / Swift.max(m * k, 1))
                Parallel.forEachRange(n, minimumPerPiece: minimum, grain: 16) { columns in
                    blasBlock(a, b, into: c, rows: 0..<m, columns: columns, ldc: n, accumulate: accumulate)
                }
            }
        }

        /// Makes sure OpenBLAS has the work buffers of as many products at once as Backprop has
        /// threads, before it needs them: OpenBLAS retries a buffer it cannot map for ever, so
        /// under a memory limit the product would spin instead of failing
        /// (`Sources/CKernels/BLASBuffers.c`). Without the memory, this fails as a tensor's
        /// allocation does, through ``Tensor/allocationFailed``.
        static func reserveBLASBuffers() {
            let slots = Int32(Parallel.workers)
            let bytes = bp_blas_buffer_bytes(slots)
            if bp_blas_reserve_buffers(slots) == 0 {
                Tensor.outOfMemory(bytes: Int(bytes), for: "the work buffers of OpenBLAS")
            }
        }

        /// `C[rows, columns] (+)= A[rows, :] • B[:, columns]` with `cblas_sgemm`.
        static func blasBlock(
            _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, rows: Range<Int>,
            columns: Range<Int>, ldc: Int, accumulate: Bool
        ) {
            let (a, b) = (a.rows(rows), b.columns(columns))
            cblas_sgemm(
                CblasRowMajor,
                a.transposed ? CblasTrans : CblasNoTrans,
                b.transposed ? CblasTrans : CblasNoTrans,
                numericCast(a.rows), numericCast(b.columns), numericCast(a.columns),
                1, a.pointer, numericCast(a.leading),
                b.pointer, numericCast(b.leading),
                accumulate ? 1 : 0, c + rows.lowerBound * ldc + columns.lowerBound, numericCast(ldc))
        }
    #endif

    /// The plain triple loop, accumulating each element in Double: slow, obviously right, and the
    /// reference that tests and benchmarks check the fast kernels against.
    static func referenceGemm(
        _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        let m = a.rows
        let n = b.columns
        let k = a.columns
        for i in 0..<m {
            for j in 0..<n {
                var total = 0.0
                for p in 0..<k { total += Double(a[i, p]) * Double(b[p, j]) }
                if accumulate {
                    c[i * n + j] = Float(Double(c[i * n + j]) + total)
                } else {
                    c[i * n + j] = Float(total)
                }
            }
        }
    }
}
