import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

@Suite("Matrix products")
struct MatMulTests {
    @Test func multipliesSmallMatricesByHand() {
        let a = Tensor([[1, 2, 3], [4, 5, 6]])  // (2, 3)
        let b = Tensor([[7, 8], [9, 10], [11, 12]])  // (3, 2)
        // [1*7+2*9+3*11, 1*8+2*10+3*12; 4*7+5*9+6*11, 4*8+5*10+6*12]
        let expected: [Float] = [58, 64, 139, 154]
        for kernel in MatMulKernel.allCases {
            #expect(a.matmul(b, kernel: kernel).values == expected, "kernel \(kernel)")
        }
        #expect((a • b).shape == [2, 2])
    }

    @Test func readsTransposedViewsWithoutCopies() {
        let a = Tensor([[1, 2, 3], [4, 5, 6]])  // (2, 3)
        // aᵀ • a = [[17, 22, 27], [22, 29, 36], [27, 36, 45]]
        let expected: [Float] = [17, 22, 27, 22, 29, 36, 27, 36, 45]
        for kernel in MatMulKernel.allCases {
            #expect(a.t().matmul(a, kernel: kernel).values == expected, "kernel \(kernel)")
        }
        // a • aᵀ = [[14, 32], [32, 77]]
        for kernel in MatMulKernel.allCases {
            #expect(a.matmul(a.t(), kernel: kernel).values == [14, 32, 32, 77], "kernel \(kernel)")
        }
    }

    /// The fast and blocked kernels against the reference loops, on shapes that are not multiples
    /// of the blocking (edges of tiles and panels), transposed and not, and a small C with a long
    /// depth (split along it, with a short last piece).
    @Test(arguments: [
        (1, 1, 1), (3, 5, 7), (17, 33, 19), (50, 784, 50), (130, 300, 17), (64, 1, 10), (5, 257, 3),
        (20, 8200, 13),
    ])
    func fastKernelsAgreeWithReference(shape: (Int, Int, Int)) {
        let (m, k, n) = shape
        var generator = RandomGenerator(seed: 7)
        let a = Tensor.randn([m, k], generator: &generator)
        let b = Tensor.randn([k, n], generator: &generator)
        let bt = Tensor.randn([n, k], generator: &generator)
        let at = Tensor.randn([k, m], generator: &generator)
        let cases: [(Tensor, Tensor)] = [(a, b), (a, bt.t()), (at.t(), b), (at.t(), bt.t())]
        for (left, right) in cases {
            let reference = left.matmul(right, kernel: .reference).values
            for kernel in [MatMulKernel.fast, .blocked] {
                let result = left.matmul(right, kernel: kernel).values
                let worst = zip(result, reference).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                #expect(worst < 1e-5 * Float(k).squareRoot(), "kernel \(kernel), shape \(m)×\(k)×\(n): error \(worst)")
            }
        }
    }

    /// A BLAS product of more than 8M multiply-adds is cut into pieces by rows of C (tall C) or
    /// by columns (wide C), each a `cblas_sgemm` of its own: with transposed views, a bias and
    /// accumulation, the pieces together give the reference loops' result.
    @Test(.enabled(if: MatMulKernel.hasBLAS, "built without BLAS"))
    func blasProductsSplitIntoPiecesAgreeWithReference() {
        var generator = RandomGenerator(seed: 12)
        for (m, k, n, transposed) in [(300, 200, 150, false), (100, 300, 290, true)] {
            let a =
                transposed
                ? Tensor.randn([k, m], generator: &generator).t() : Tensor.randn([m, k], generator: &generator)
            let b =
                transposed
                ? Tensor.randn([n, k], generator: &generator).t() : Tensor.randn([k, n], generator: &generator)
            let bias = Tensor.randn([n], generator: &generator)
            let start = Tensor.randn([m, n], generator: &generator)
            let (left, keepLeft) = a.matrixOperand()
            let (right, keepRight) = b.matrixOperand()
            for accumulate in [false, true] {
                let split = start.copy()
                let reference = start.copy()
                withExtendedLifetime((keepLeft, keepRight)) {
                    bias.withUnsafeBufferPointer { bias in
                        let biasPointer = accumulate ? nil : bias.baseAddress
                        Tensor.gemm(
                            left, right, into: split.pointer, accumulate: accumulate, bias: biasPointer, route: .blas)
                        Tensor.gemm(
                            left, right, into: reference.pointer, accumulate: accumulate, bias: biasPointer,
                            route: .reference)
                    }
                }
                let worst = zip(split.values, reference.values).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
                #expect(worst < 1e-5 * Float(k).squareRoot(), "\(m)×\(k)×\(n) accumulate \(accumulate): error \(worst)")
            }
        }
    }

    @Test func linAddsTheBiasToTheProduct() {
        let x = Tensor([[1, 2], [3, 4], [5, 6]])  // (3, 2)
        let w = Tensor([[1, 0, -1], [2, 1, 0]])  // (2, 3)
        let b = Tensor([10, 20, 30])  // (3)
        // x • w = [[5, 2, -1], [11, 4, -3], [17, 6, -5]]
        #expect(lin(x, w, b).values == [15, 22, 29, 21, 24, 27, 27, 26, 25])
        #expect(lin(x, w, b).values == (x • w + b).values)
    }
}
