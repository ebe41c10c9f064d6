#if canImport(Accelerate)
    import Accelerate
#elseif OpenBLAS
    import CBLAS
#endif

/// Matrix product: the seed's `@`, which Swift cannot spell, is `•` (Option-8 on a Mac keyboard).
///
/// `x • w + b` is the seed's `x@w + b`.
infix operator • : MultiplicationPrecedence

/// The routine that computes matrix products.
///
/// `.fast` is the default: for products with a small side, such as the seed's (one side is
/// nh = 50), an AVX2 kernel where the CPU has it (`MatMul+Skinny.swift`); otherwise BLAS where
/// the build has it (Accelerate on macOS, OpenBLAS on Linux with the `OpenBLAS` trait), else the
/// blocked pure-Swift kernel. The others exist to check and to measure the fast one.
public enum MatMulKernel: String, CaseIterable, Sendable {
    /// The skinny AVX2 kernel or BLAS, whichever is faster for the shape; `.blocked` without either.
    case fast
    /// The portable blocked pure-Swift kernel (`MatMul+Blocked.swift`).
    case blocked
    /// The plain triple loop, accumulating in Double: the reference the others are tested against.
    case reference

    /// Whether this build calls a BLAS library for `.fast`.
    public static var hasBLAS: Bool {
        #if canImport(Accelerate) || OpenBLAS
            return true
        #else
            return false
        #endif
    }
}

/// The code that computes one matrix product: what `MatMulKernel.fast` chooses between, and
/// what the benchmark measures one by one.
enum GemmRoute: String, CaseIterable, Sendable {
    /// The AVX2/FMA kernel for products with a small side (`MatMul+Skinny.swift`).
    case skinny
    /// BLAS (`cblas_sgemm`), or the blocked kernel in a build without BLAS.
    case blas
    /// The blocked pure-Swift kernel.
    case blocked
    /// The plain triple loop.
    case reference

    /// The route `kernel` takes for an `(m, k) • (k, n)` product.
    init(_ kernel: MatMulKernel, m: Int, n: Int, k: Int) {
        switch kernel {
        case .fast:
            if Tensor.prefersSkinnyKernel(m: m, n: n, k: k) {
                self = .skinny
            } else {
                self = MatMulKernel.hasBLAS ? .blas : .blocked
            }
        case .blocked: self = .blocked
        case .reference: self = .reference
        }
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
    /// The matrix product `a • b` (the seed's `a @ b`): `(n, k) • (k, m) → (n, m)`.
    ///
    /// Either operand may be a transposed view (`w.t()`): the kernels read it through its
    /// strides (BLAS through its transpose flag), without a copy.
    /// - Precondition: both are matrices and the inner sizes agree; otherwise stops naming both
    ///   shapes.
    public static func • (a: Tensor, b: Tensor) -> Tensor {
        a.matmul(b)
    }

    /// The matrix product `self • other`, computed by `kernel`.
    /// - Precondition: both are matrices and the inner sizes agree.
    public func matmul(_ other: Tensor, kernel: MatMulKernel = .fast) -> Tensor {
        Tensor.checkMatmulShapes(self, other, operation: "matmul")
        let result = Tensor(uninitializedShape: [shape[0], other.shape[1]])
        Tensor.gemm(self, other, into: result, accumulate: false, kernel: kernel)
        return result.recorded(.matmul, self, other)
    }

    /// Stops unless `a • b` is defined, naming both shapes.
    static func checkMatmulShapes(_ a: Tensor, _ b: Tensor, operation: String) {
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
    static func gemm(
        _ a: Tensor, _ b: Tensor, into c: Tensor, accumulate: Bool, bias: Tensor? = nil, kernel: MatMulKernel
    ) {
        let (left, keepLeft) = a.matrixOperand()
        let (right, keepRight) = b.matrixOperand()
        let biasValues = bias?.contiguous()
        let route = GemmRoute(kernel, m: left.rows, n: right.columns, k: left.columns)
        withExtendedLifetime((keepLeft, keepRight, biasValues)) {
            gemm(
                left, right, into: c.pointer, accumulate: accumulate,
                bias: biasValues.map { UnsafePointer($0.pointer) }, route: route)
        }
    }

    /// `c = a • b (+ bias)` or `c += a • b` on raw operands, by `route`; `c` is row-major
    /// `(a.rows, b.columns)`.
    static func gemm(
        _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, accumulate: Bool,
        bias: UnsafePointer<Float>? = nil, route: GemmRoute
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
        case .blas, .skinny:
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

        /// `C[rows, columns] (+)= A[rows, :] • B[:, columns]` with `cblas_sgemm`.
        private static func blasBlock(
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
