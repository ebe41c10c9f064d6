import CKernels
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// The one-pass kernels behind the seed's backward lines, against the chains of operations they
/// replace (bit for bit), and the machinery that makes the step fast: reused buffers, column sums
/// in blocks, work cut into pieces.
@Suite("Fused kernels and buffers")
struct FusedKernelTests {
    /// Bit patterns, so that NaN compares equal to NaN.
    func bits(_ tensor: Tensor) -> [UInt32] { tensor.values.map(\.bitPattern) }

    /// Random values with exact zeros, negative zeros, infinities and NaN among them.
    func awkwardValues(count: Int, seed: UInt64) -> [Float] {
        var generator = RandomGenerator(seed: seed)
        var values = (0..<count).map { _ in Float(generator.nextNormal()) }
        let specials: [Float] = [0, -0.0, .infinity, -.infinity, .nan, 1e-40, -1e-40]
        for (index, special) in specials.enumerated() where index * 7 < count { values[index * 7] = special }
        return values
    }

    /// `(inp > 0).float() * out.g` for shapes below and above the size that goes to several cores.
    @Test(arguments: [[3, 5], [50, 50], [700, 300]])
    func reluGradientMatchesTheSeedsLine(shape: [Int]) throws {
        let count = shape.reduce(1, *)
        let inp = Tensor(shape: shape, values: awkwardValues(count: count, seed: 1))
        let g = Tensor(shape: shape, values: awkwardValues(count: count, seed: 2).reversed())
        let fused = try #require(Tensor.fusedReLUGradient(inp, g))
        #expect(fused.shape == shape)
        #expect(bits(fused) == bits((inp > 0).float() * g))
    }

    /// `2 * (inp.squeeze() - targ).unsqueeze(-1) / n`, for `inp` of shape `(n, 1)` and `(n)`,
    /// in `inp`'s shape (`Mse.backward()`'s gradient has its input's shape).
    @Test(arguments: [2, 7, 50_000])
    func mseGradientMatchesTheSeedsLine(n: Int) throws {
        let targ = Tensor(awkwardValues(count: n, seed: 3))
        for inp in [
            Tensor(shape: [n, 1], values: awkwardValues(count: n, seed: 4)), Tensor(awkwardValues(count: n, seed: 5)),
        ] {
            let fused = try #require(Tensor.fusedMSEGradient(inp, targ))
            let chain = (2 * (inp.squeeze() - targ).unsqueeze(-1) / Float(inp.shape[0])).reshape(inp.shape)
            #expect(fused.shape == inp.shape)
            #expect(bits(fused) == bits(chain))
        }
    }

    /// Where the loop would not be the chain (a view, other shapes, one row, autograd watching),
    /// the kernels decline and the layers evaluate the seed's line.
    @Test func kernelsDeclineWhereTheChainDiffers() {
        let matrix = Tensor([[1, -2], [3, 4]])
        #expect(Tensor.fusedReLUGradient(matrix, matrix.t()) == nil)
        #expect(Tensor.fusedReLUGradient(matrix, Tensor([1, 2])) == nil)
        #expect(Tensor.fusedMSEGradient(Tensor([[1]]), Tensor([2])) == nil)
        #expect(Tensor.fusedMSEGradient(Tensor([[1, 2]]), Tensor([2, 3])) == nil)
        let watched = Tensor([[1], [2]])
        watched.requiresGrad = true
        #expect(Tensor.fusedMSEGradient(watched, Tensor([0, 0])) == nil)
        GradMode.withNoGrad {
            #expect(Tensor.fusedMSEGradient(watched, Tensor([0, 0])) != nil)
        }
    }

    /// The layers' backward passes still give the seed's gradients, on the seed's objects.
    @Test func layersUseTheKernelsWithTheSeedsIdentities() throws {
        let (x, y, w1, b1, w2, b2) = ModelTests.seedTensors(n: 40, m: 9, nh: 6)
        let model = Model(w1, b1, w2, b2)
        _ = model(x, y)
        model.backward()
        let r = try #require(model.layers[1] as? ReLU)
        let l2 = try #require(model.layers[2] as? Lin)
        #expect(bits(r.inp.g) == bits((r.inp > 0).float() * r.out.g))
        let out = l2.out!
        #expect(bits(out.g) == bits(2 * (out.squeeze() - y).unsqueeze(-1) / Float(out.shape[0])))
        #expect(l2.inp.g === r.out.g)
    }

    /// `sum(0)` over more rows than one block (4096) adds the blocks' sums; it agrees with a
    /// plain Double loop and does not depend on how many cores there are.
    @Test func longColumnSumsAgreeWithAPlainLoop() {
        let rows = 10_001
        let columns = 13
        var generator = RandomGenerator(seed: 9)
        let x = Tensor.randn([rows, columns], generator: &generator)
        let sums = x.sum(0).values
        let means = x.mean(0).values
        for j in 0..<columns {
            var total = 0.0
            for i in 0..<rows { total += Double(x[i, j]) }
            #expect(abs(Double(sums[j]) - total) <= 1e-6 * max(1, abs(total)), "column \(j)")
            #expect(abs(Double(means[j]) - total / Double(rows)) <= 1e-7, "column \(j)")
        }
    }

    /// `bp_sum_columns` (behind `sum(0)` and every `b.g`) bit for bit against its definition
    /// written here, in Double: each column summed from 0, row after row. The values spread over
    /// 2⁻⁶⁰...2⁶⁰, so that another order of the additions gives other bits, with zeros, negative
    /// zeros, infinities and NaN among them; every column count of the vector kernel's 16-column
    /// blocks and 1-4-column tail. Then `sum(0)` itself: blocks of 4096 rows, their sums added
    /// in order, rounded to Float.
    @Test(arguments: [0, 1, 3, 64, 4097, 9000])
    func columnSumsAreEachColumnsChain(rows: Int) {
        var generator = RandomGenerator(seed: UInt64(rows) + 17)
        for columns in [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 19, 20, 31, 32, 33, 50, 64] {
            var values = (0..<(rows * columns)).map { _ in
                Float(generator.nextNormal())
                    * Float(sign: .plus, exponent: generator.nextIndex(below: 121) - 60, significand: 1)
            }
            if columns > 2 && rows > 10 {
                values[columns + 2] = .infinity
                values[2 * columns + 1] = -0.0
                values[3 * columns + 1] = 0
            }
            if columns == 5 && rows > 10 { values[4 * columns + 4] = .nan }
            func chain(_ column: Int, _ range: Range<Int>) -> Double {
                var total = 0.0
                for i in range { total += Double(values[i * columns + column]) }
                return total
            }
            var sums = [Double](repeating: .nan, count: columns)
            values.withUnsafeBufferPointer { bp_sum_columns($0.baseAddress, rows, columns, &sums) }
            let chains = (0..<columns).map { chain($0, 0..<rows) }
            #expect(sums.map(\.bitPattern) == chains.map(\.bitPattern), "\(rows) × \(columns)")
            let blocked = (0..<columns).map { column in
                Float(
                    stride(from: 0, to: rows, by: 4096).reduce(0.0) { total, start in
                        total + chain(column, start..<min(rows, start + 4096))
                    })
            }
            let x = Tensor(shape: [rows, columns], values: values)
            #expect(x.sum(0).values.map(\.bitPattern) == blocked.map(\.bitPattern), "\(rows) × \(columns)")
        }
    }

    /// Pieces cover the range once, in order, in multiples of the grain.
    @Test(arguments: [(1, 1, 1), (10, 3, 1), (50_000, 8, 6), (784, 8, 16), (7, 8, 6)])
    func piecesCoverTheRange(count: Int, parts: Int, grain: Int) {
        let pieces = Parallel.split(count, into: parts, grain: grain)
        #expect(pieces.first?.lowerBound == 0)
        #expect(pieces.last?.upperBound == count)
        for (left, right) in zip(pieces, pieces.dropFirst()) { #expect(left.upperBound == right.lowerBound) }
        for piece in pieces.dropLast() { #expect(piece.count % grain == 0) }
        #expect(pieces.count <= parts)
    }

    /// A large buffer released by one tensor is handed to the next tensor of the same size, and
    /// what the new tensor stores is its own.
    @Test func largeBuffersAreReused() {
        let count = 1_234_567  // 4.9 MB, above the threshold, a size no other test uses
        var first: Tensor? = Tensor.full([count], 1)
        let address = first!.pointer
        first = nil
        let second = Tensor.full([count], 2)
        #expect(second.pointer == address)
        #expect(second.values.allSatisfy { $0 == 2 })
        let small = Tensor.full([10], 3)
        #expect(small.values == [Float](repeating: 3, count: 10))
    }
}
