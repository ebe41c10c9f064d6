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
/// `.fast` is the default: BLAS where the build has it (Accelerate on macOS, OpenBLAS on Linux
/// with the `OpenBLAS` trait), else the blocked pure-Swift kernel. The others exist to check and
/// to measure the fast one.
public enum MatMulKernel: String, CaseIterable, Sendable {
    /// BLAS if this build has it, else `.blocked`.
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
}

extension Tensor {
    /// The matrix product `a • b` (the seed's `a @ b`): `(n, k) • (k, m) → (n, m)`.
    ///
    /// Either operand may be a transposed view (`w.t()`): BLAS reads it through its transpose
    /// flag, without a copy.
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

    /// `c = a • b`, or `c += a • b` when `accumulate`; `c` is contiguous `(a.rows, b.columns)`.
    static func gemm(_ a: Tensor, _ b: Tensor, into c: Tensor, accumulate: Bool, kernel: MatMulKernel) {
        let (left, keepLeft) = a.matrixOperand()
        let (right, keepRight) = b.matrixOperand()
        withExtendedLifetime((keepLeft, keepRight)) {
            gemm(left, right, into: c.pointer, accumulate: accumulate, kernel: kernel)
        }
    }

    /// `c = a • b` or `c += a • b` on raw operands; `c` is row-major `(a.rows, b.columns)`.
    static func gemm(
        _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, accumulate: Bool,
        kernel: MatMulKernel
    ) {
        let m = a.rows
        let n = b.columns
        let k = a.columns
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !accumulate { c.update(repeating: 0, count: m * n) }
            return
        }
        switch kernel {
        case .reference:
            referenceGemm(a, b, into: c, accumulate: accumulate)
        case .blocked:
            blockedGemm(a, b, into: c, accumulate: accumulate)
        case .fast:
            #if canImport(Accelerate) || OpenBLAS
                cblas_sgemm(
                    CblasRowMajor,
                    a.transposed ? CblasTrans : CblasNoTrans,
                    b.transposed ? CblasTrans : CblasNoTrans,
                    numericCast(m), numericCast(n), numericCast(k),
                    1, a.pointer, numericCast(a.leading),
                    b.pointer, numericCast(b.leading),
                    accumulate ? 1 : 0, c, numericCast(n))
            #else
                blockedGemm(a, b, into: c, accumulate: accumulate)
            #endif
        }
    }

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
