import CKernels
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// The AVX2 and AVX-512 kernels for the seed's skinny products, against the reference loops, on
/// every edge of their tilings (6 rows × 16 columns in AVX2, × 48 in AVX-512; blocks of 256 rows
/// of B past k = 1024), with and without transposed operands, bias, accumulation and
/// non-temporal stores; and the two against each other, bit for bit (each element is the same
/// chain of multiply-adds in both).
@Suite("Skinny matrix-product kernel", .enabled(if: Tensor.skinnyKernelIsAvailable))
struct SkinnyKernelTests {
    /// `a • b (+ bias)` or `c + a • b` with the skinny kernel and with `referenceGemm`, compared
    /// elementwise relative to the size of the terms.
    func expectAgreement(
        m: Int, k: Int, n: Int, transposeA: Bool = false, transposeB: Bool = false, bias: Bool = false,
        accumulate: Bool = false, streaming: Bool? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        var generator = RandomGenerator(seed: UInt64(m * 1_000_003 + k * 1009 + n))
        let a =
            transposeA ? Tensor.randn([k, m], generator: &generator).t() : Tensor.randn([m, k], generator: &generator)
        let b =
            transposeB ? Tensor.randn([n, k], generator: &generator).t() : Tensor.randn([k, n], generator: &generator)
        let biasValues = Tensor.randn([n], generator: &generator)
        let start = Tensor.randn([m, n], generator: &generator)
        let (left, keepLeft) = a.matrixOperand()
        let (right, keepRight) = b.matrixOperand()
        let reference = start.copy()
        let instructionSets = Tensor.SkinnyInstructionSet.allCases.filter(\.isAvailable)
        let fast = instructionSets.map { _ in start.copy() }
        withExtendedLifetime((keepLeft, keepRight)) {
            biasValues.withUnsafeBufferPointer { biasPointer in
                for (instructionSet, result) in zip(instructionSets, fast) {
                    Tensor.skinnyGemm(
                        left, right, into: result.pointer, accumulate: accumulate,
                        bias: bias ? biasPointer.baseAddress : nil, streaming: streaming,
                        instructionSet: instructionSet)
                }
                Tensor.gemm(
                    left, right, into: reference.pointer, accumulate: accumulate,
                    bias: bias ? biasPointer.baseAddress : nil, route: .reference)
            }
        }
        let referenceValues = reference.values
        let tolerance = 1e-5 * Float(k + 1).squareRoot()
        let shape =
            "\(m)×\(k)×\(n) transposeA \(transposeA) transposeB \(transposeB) bias \(bias) accumulate \(accumulate)"
        for (instructionSet, result) in zip(instructionSets, fast) {
            let fastValues = result.values
            var worst: Float = 0
            for i in 0..<fastValues.count {
                worst = max(worst, abs(fastValues[i] - referenceValues[i]) / max(1, abs(referenceValues[i])))
            }
            #expect(
                worst < tolerance, "\(instructionSet) \(shape): error \(worst)", sourceLocation: sourceLocation)
        }
        if let first = fast.first {
            for (instructionSet, result) in zip(instructionSets, fast).dropFirst() {
                let differing = zip(result.values, first.values).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(
                    differing == 0, "\(instructionSet) differs from \(instructionSets[0]) in its bits: \(shape)",
                    sourceLocation: sourceLocation)
            }
        }
    }

    /// Rows around multiples of 6, columns around multiples of 8, 16 and 48 (and 1...4 past a
    /// multiple of 16, which are dot products), depths 1, odd, and past a multiple of 8.
    @Test(arguments: [1, 5, 6, 7, 13, 50], [1, 2, 4, 7, 8, 9, 15, 16, 17, 19, 20, 33, 47, 48, 50, 53, 64, 97])
    func tileEdges(m: Int, n: Int) {
        for k in [1, 3, 50] {
            expectAgreement(m: m, k: k, n: n)
            expectAgreement(m: m, k: k, n: n, bias: true, accumulate: false)
        }
    }

    /// Around the rows up to which a call reads B in place instead of packing it (96 in AVX2, 128
    /// in AVX-512: `IN_PLACE_ROWS_*` in Gemm.c), on a training minibatch's shapes: each side of
    /// either threshold against the reference loops, and the two instruction sets bit for bit
    /// (one reads B in place where the other packs it).
    @Test(arguments: [95, 96, 97, 127, 128, 129], [(50, 17), (784, 256), (256, 128)])
    func inPlaceThresholds(m: Int, shape: (k: Int, n: Int)) {
        expectAgreement(m: m, k: shape.k, n: shape.n)
        expectAgreement(m: m, k: shape.k, n: shape.n, bias: true)
    }

    /// A call of at most 96 rows reads a row-major B in place, packing only a last panel that
    /// ends inside a vector (AVX2's masked loads are slow on AMD's older cores); a call of 97
    /// packs all of B. Each element is the same chain of multiply-adds either way, so the first
    /// 96 rows of one call over 97 rows equal, bit for bit, a call over those 96 rows alone;
    /// widths with a partial last panel of 1...7 and 9...15 columns, one whole, and one of dot
    /// products; the result against the reference loops too.
    @Test(
        .enabled(if: bp_gemm_avx2_available() != 0),
        arguments: [(50, 10), (128, 10), (64, 13), (100, 37), (7, 9), (256, 128), (784, 50)])
    func inPlaceAndPackedSameBits(k: Int, n: Int) {
        var generator = RandomGenerator(seed: UInt64(k * 131 + n))
        let (packedRows, inPlaceRows) = (97, 96)
        let a = Tensor.randn([packedRows, k], generator: &generator)
        let b = Tensor.randn([k, n], generator: &generator)
        let bias = Tensor.randn([n], generator: &generator)
        let reference = a.rows(0..<inPlaceRows).contiguous().matmul(b, kernel: .reference) + bias
        var results: [[Float]] = []
        for rows in [packedRows, inPlaceRows] {
            let c = Tensor(shape: [rows, n], values: [Float](repeating: .nan, count: rows * n))
            withExtendedLifetime((a, b, bias, c)) {
                var product = BPGemm(
                    m: rows, n: n, k: k, a: a.pointer, rowStrideA: k, columnStrideA: 1, b: b.pointer, rowStrideB: n,
                    columnStrideB: 1, c: c.pointer, ldc: n, bias: bias.pointer, accumulate: 0, streaming: 0)
                bp_gemm_avx2(&product, 0, rows, 0, n)
            }
            results.append(Array(c.values[0..<(inPlaceRows * n)]))
        }
        let differing = zip(results[0], results[1]).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(differing == 0, "k \(k), n \(n): \(differing) elements differ between packed and in place")
        expectNear(
            Tensor(shape: [inPlaceRows, n], values: results[1]), reference,
            relativeTolerance: 1e-5, absoluteTolerance: 1e-5 * Float(k).squareRoot(), "k \(k), n \(n)")
    }

    /// Panels of 9-12 columns (a classifier's 10; and 25-28, a whole panel then such a one) run as
    /// one vector of 8 and one of 4 (`tileHalf` in Gemm.c). Bit for bit against each element's
    /// chain written from the definition: the bias (or 0), then `fma(a[i, p], b[p, j], ·)` for p = 0,
    /// 1, …, then `+ c` when accumulating. Row-major and transposed A, B packed (97 rows) and in place
    /// (96 and fewer), rows on either side of the 6-row tile.
    @Test(
        .enabled(if: bp_gemm_avx2_available() != 0),
        arguments: [9, 10, 11, 12, 25, 28], [1, 5, 7, 13, 96, 97])
    func halfVectorPanelsAreTheFMAChain(n: Int, m: Int) {
        var generator = RandomGenerator(seed: UInt64(n * 1000 + m))
        for (k, transposeA) in [(1, false), (3, true), (50, false), (64, true)] {
            for (useBias, accumulate) in [(false, false), (true, false), (false, true), (true, true)] {
                let stored = Tensor.randn(transposeA ? [k, m] : [m, k], generator: &generator)
                let b = Tensor.randn([k, n], generator: &generator)
                let bias = Tensor.randn([n], generator: &generator)
                let start = Tensor.randn([m, n], generator: &generator)
                let (av, bv, biasValues, startValues) = (stored.values, b.values, bias.values, start.values)
                var expected = [Float](repeating: 0, count: m * n)
                for i in 0..<m {
                    for j in 0..<n {
                        var total: Float = useBias ? biasValues[j] : 0
                        for p in 0..<k {
                            let a = transposeA ? av[p * m + i] : av[i * k + p]
                            total = total.addingProduct(a, bv[p * n + j])
                        }
                        expected[i * n + j] = accumulate ? total + startValues[i * n + j] : total
                    }
                }
                let c = start.copy()
                withExtendedLifetime((stored, b, bias, c)) {
                    var product = BPGemm(
                        m: m, n: n, k: k, a: stored.pointer, rowStrideA: transposeA ? 1 : k,
                        columnStrideA: transposeA ? m : 1, b: b.pointer, rowStrideB: n, columnStrideB: 1, c: c.pointer,
                        ldc: n, bias: useBias ? UnsafePointer(bias.pointer) : nil, accumulate: accumulate ? 1 : 0,
                        streaming: 0)
                    bp_gemm_avx2(&product, 0, m, 0, n)
                }
                let differing = zip(c.values, expected).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(
                    differing == 0,
                    "\(m)×\(k)×\(n) transposeA \(transposeA) bias \(useBias) accumulate \(accumulate): \(differing) differ"
                )
            }
        }
    }

    /// Products whose pieces of A exceed 512 KiB, so that their tiles prefetch A's rows (as in the
    /// seed's `x • w1`): the tiles specialised for prefetching (the smaller products above take the
    /// ones specialised for not prefetching), two vectors wide with a dot-product column after
    /// them, and one vector wide, each with a last partial row tile. `skinnyGemm` cuts these into
    /// 16 pieces of about 150 rows (600 KB of A).
    @Test(arguments: [(2405, 1024, 17), (2161, 1000, 8)])
    func tilesThatPrefetchA(m: Int, k: Int, n: Int) {
        #expect(m / Parallel.maximumPieces * k * MemoryLayout<Float>.size > 512 << 10)
        expectAgreement(m: m, k: k, n: n, bias: true, accumulate: false)
    }

    /// Transposed views are read through their strides, as `w.t()` and `inp.t()` in `Lin.backward()`.
    @Test(arguments: [(false, true), (true, false), (true, true)])
    func transposedOperands(transposeA: Bool, transposeB: Bool) {
        for (m, k, n) in [(61, 50, 70), (70, 61, 50), (50, 1100, 13), (7, 2, 9)] {
            expectAgreement(m: m, k: k, n: n, transposeA: transposeA, transposeB: transposeB)
        }
    }

    /// A transposed A (`inp.t()` in `w.g = inp.t() • out.g`) with 1...4 columns past a multiple of
    /// 16: those columns are vectors down C's columns (`columnTailAVX512`, 48 rows a call, and
    /// `columnTailAVX2`, 24; vectors of 16 and 8), rows around those counts; with a bias and
    /// accumulating.
    @Test(arguments: [1, 8, 15, 16, 17, 24, 25, 47, 48, 49, 100], [1, 4, 17, 18, 20, 50, 66])
    func transposedColumnTails(m: Int, n: Int) {
        expectAgreement(m: m, k: 64, n: n, transposeA: true)
        expectAgreement(m: m, k: 7, n: n, transposeA: true, bias: true)
        expectAgreement(m: m, k: 7, n: n, transposeA: true, transposeB: true, accumulate: true)
    }

    /// A transposed B (`w.t()` in `inp.g = out.g • w.t()`) is packed in 8 × 8 blocks transposed in
    /// registers, and the rows and columns past the last whole block element by element: depths
    /// and widths on either side of multiples of 8 and 16, and past k = 1024 (blocks of B).
    @Test(arguments: [(64, 128, 256), (37, 23, 50), (13, 8, 16), (20, 17, 33), (7, 16, 8), (64, 9, 24), (20, 1100, 40)])
    func transposedBPackedInBlocks(m: Int, k: Int, n: Int) {
        expectAgreement(m: m, k: k, n: n, transposeB: true)
        expectAgreement(m: m, k: k, n: n, transposeB: true, bias: true)
        expectAgreement(m: m, k: k, n: n, transposeB: true, accumulate: true)
        expectAgreement(m: 200, k: k, n: n, transposeA: true, transposeB: true)
    }

    /// Past k = 1024 the kernel works in blocks of 256 rows of B and adds the blocks up.
    @Test func depthBlocks() {
        for k in [1024, 1025, 1300] {
            expectAgreement(m: 13, k: k, n: 50)
            expectAgreement(m: 50, k: k, n: 1, transposeA: true)
        }
    }

    /// `lin`'s bias, accumulation into C, and non-temporal stores (aligned and not).
    @Test func biasAccumulateAndStreaming() {
        expectAgreement(m: 37, k: 20, n: 50, bias: true)
        expectAgreement(m: 37, k: 1100, n: 50, bias: true)
        expectAgreement(m: 37, k: 20, n: 50, accumulate: true)
        expectAgreement(m: 37, k: 1100, n: 19, accumulate: true)
        expectAgreement(m: 37, k: 20, n: 64, streaming: true)
        expectAgreement(m: 37, k: 20, n: 50, streaming: true)
        expectAgreement(m: 37, k: 20, n: 64, bias: true, streaming: true)
    }

    /// Products large enough to be split over threads: by rows when C is tall, by columns when
    /// it is wide.
    @Test func splitsOverThreads() {
        expectAgreement(m: 1201, k: 50, n: 50)
        expectAgreement(m: 20, k: 64, n: 1500)
        expectAgreement(m: 120, k: 1100, n: 50, transposeA: true)
        // A minibatch of 128 (the convnet's `Lin(1568, 256)`, forward and w.g).
        expectAgreement(m: 128, k: 1568, n: 256, bias: true)
        expectAgreement(m: 1568, k: 128, n: 256, transposeA: true)
    }

    /// A small product is cut into one piece per thread, of nearly equal size: rows at multiples
    /// of the 6-row tile or of 2, whichever divides them more evenly; large ones and ones not worth
    /// cutting are left to the usual pieces.
    @Test func smallProductsGetOnePiecePerThread() {
        let small = 64 * 784 * 50
        let rows = [6, 2]
        #expect(Tensor.balancedPieces(64, parts: 2, work: small, threads: 2, grains: rows) == [0..<32, 32..<64])
        #expect(
            Tensor.balancedPieces(784, parts: 9, work: 784 * 64 * 50, threads: 2, grains: rows) == [0..<392, 392..<784])
        #expect(
            Tensor.balancedPieces(256, parts: 6, work: 64 * 784 * 256, threads: 2, grains: [16]) == [
                0..<128, 128..<256,
            ])
        #expect(Tensor.balancedPieces(120, parts: 4, work: small, threads: 2, grains: rows) == [0..<60, 60..<120])
        #expect(Tensor.balancedPieces(64, parts: 1, work: small, threads: 2, grains: rows) == nil)
        #expect(Tensor.balancedPieces(50000, parts: 16, work: 50000 * 784 * 50, threads: 2, grains: rows) == nil)
        #expect(
            Tensor.balancedPieces(64, parts: 2, work: small, threads: 3, grains: rows) == [0..<22, 22..<44, 44..<64])
        #expect(Tensor.balancedPieces(64, parts: 2, work: small, threads: 1, grains: rows) == nil)
    }

    /// A large product cut by columns is cut into a multiple of the threads' count of pieces that
    /// differ by at most 16 columns, larger first, the remainder past the last 16 on the last.
    @Test func columnPiecesShareEvenlyAmongTheThreads() {
        // lin 256's forward: six pieces of 48 would leave 144 columns to one of two threads.
        #expect(
            Tensor.evenPieces(256, parts: 6, threads: 2, grain: 16) == [
                0..<48, 48..<96, 96..<144, 144..<192, 192..<224, 224..<256,
            ])
        #expect(Tensor.evenPieces(256, parts: 6, threads: 4, grain: 16) == (0..<8).map { $0 * 32..<$0 * 32 + 32 })
        #expect(Tensor.evenPieces(1568, parts: 14, threads: 2, grain: 16) == (0..<14).map { $0 * 112..<$0 * 112 + 112 })
        // 100 columns: six whole vectors and 4 columns over, which go to the last piece.
        #expect(Tensor.evenPieces(100, parts: 3, threads: 2, grain: 16) == [0..<32, 32..<64, 64..<80, 80..<100])
        // Not worth a thread: one piece; fewer vectors than pieces: one vector each.
        #expect(Tensor.evenPieces(256, parts: 1, threads: 2, grain: 16) == [0..<256])
        #expect(Tensor.evenPieces(40, parts: 3, threads: 2, grain: 16) == [0..<16, 16..<40])
        #expect(Tensor.evenPieces(8, parts: 2, threads: 2, grain: 16) == [0..<8])
    }

    /// The products of a minibatch step (the MLP's and the minibatch benchmark's, forward and
    /// `w.g`), cut into one piece per thread, agree with the reference loops, and are the same bits
    /// on one, two and three threads.
    @Test(arguments: [
        (64, 784, 50, false), (784, 64, 50, true), (64, 784, 256, false), (64, 128, 256, false),
        (256, 64, 128, true), (128, 1568, 256, false),
    ])
    func smallProductsOnAnyThreadCount(m: Int, k: Int, n: Int, transposeA: Bool) {
        var generator = RandomGenerator(seed: UInt64(m * 31 + k * 7 + n))
        let a =
            transposeA ? Tensor.randn([k, m], generator: &generator).t() : Tensor.randn([m, k], generator: &generator)
        let b = Tensor.randn([k, n], generator: &generator)
        let reference = a.matmul(b, kernel: .reference)
        let before = Parallel.workers
        defer { Parallel.setWorkers(before) }
        var results: [[UInt32]] = []
        for threads in [1, 2, 3, 4] {
            Parallel.setWorkers(threads)
            let c = a.matmul(b, kernel: .skinny)
            let worst = zip(c.values, reference.values).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-3 * Float(k).squareRoot(), "\(threads) threads: worst difference \(worst)")
            results.append(c.values.map(\.bitPattern))
        }
        #expect(results.allSatisfy { $0 == results[0] })
    }

    /// A weight gradient `xᵀ • out.g` with the seed's 784 inputs and a long depth (8269 rows of x: five
    /// pieces, the last short) agrees with the reference loops, and is the same bits on one to four
    /// threads: the pieces' results are added, and transposed into C, by one stretch per thread.
    @Test func transposedLongDepthOnAnyThreadCount() {
        let (rows, inputs, units) = (8192 + 77, 784, 11)
        var generator = RandomGenerator(seed: 8269)
        let x = Tensor.randn([rows, inputs], generator: &generator)
        let g = Tensor.randn([rows, units], generator: &generator)
        let bias = Tensor.randn([units], generator: &generator)
        let reference = x.t().matmul(g, kernel: .reference) + bias
        let before = Parallel.workers
        defer { Parallel.setWorkers(before) }
        var results: [[UInt32]] = []
        for threads in [1, 2, 3, 4] {
            Parallel.setWorkers(threads)
            let (left, keepLeft) = x.t().matrixOperand()
            let (right, keepRight) = g.matrixOperand()
            let c = Tensor.zeros([inputs, units])
            withExtendedLifetime((keepLeft, keepRight)) {
                Tensor.skinnyGemm(left, right, into: c.pointer, accumulate: false, bias: bias.pointer)
            }
            let worst = zip(c.values, reference.values).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-3 * Float(rows).squareRoot(), "\(threads) threads: worst difference \(worst)")
            results.append(c.values.map(\.bitPattern))
        }
        #expect(results.allSatisfy { $0 == results[0] })
    }

    /// A minibatch's first layer into few units is computed as two products along the depth
    /// (`depthHalvesGemm`): against the reference loops, and the same bits in both instruction sets
    /// (`expectAgreement`), with and without a bias, an odd depth, one row, one column, a C as wide
    /// as it is tall, and C narrower than 32 columns but wider than tall.
    @Test func depthHalves() {
        let shapes = [(64, 784, 50), (128, 513, 10), (1, 600, 1), (100, 1000, 100), (3, 700, 20), (64, 2048, 31)]
        for (m, k, n) in shapes {
            #expect(Tensor.splitsDepthInHalves(m: m, n: n, k: k, transposedA: false, accumulate: false))
            expectAgreement(m: m, k: k, n: n)
            expectAgreement(m: m, k: k, n: n, bias: true)
        }
    }

    /// Which products `skinnyGemm` splits in halves along the depth: not a wide C (the MLP's first
    /// layer, cut by its columns), a transposed A (a weight gradient), an accumulation, more than
    /// 128 rows, or a depth under 512.
    @Test func depthHalvesOnlyForNarrowMinibatchProducts() {
        #expect(Tensor.splitsDepthInHalves(m: 64, n: 50, k: 784, transposedA: false, accumulate: false))
        #expect(!Tensor.splitsDepthInHalves(m: 64, n: 256, k: 784, transposedA: false, accumulate: false))
        #expect(!Tensor.splitsDepthInHalves(m: 784, n: 50, k: 64, transposedA: true, accumulate: false))
        #expect(!Tensor.splitsDepthInHalves(m: 64, n: 50, k: 784, transposedA: true, accumulate: false))
        #expect(!Tensor.splitsDepthInHalves(m: 64, n: 50, k: 784, transposedA: false, accumulate: true))
        #expect(!Tensor.splitsDepthInHalves(m: 129, n: 50, k: 784, transposedA: false, accumulate: false))
        #expect(!Tensor.splitsDepthInHalves(m: 64, n: 50, k: 511, transposedA: false, accumulate: false))
    }

    /// However `skinnyGemm` cuts C over the threads (rows anywhere, columns anywhere), each element
    /// is the same sum: the kernel decides its last few columns (dot products, which add in another
    /// order than the tiles) on the whole product, not on the piece. Whole against cut, bit for bit,
    /// in both instruction sets, on shapes whose last 1...4 columns are dot products, and on one
    /// (131 rows) whose whole call packs B while its cut of 126 rows reads B in place in AVX-512.
    @Test(arguments: [
        (64, 784, 50), (40, 30, 50), (13, 9, 20), (100, 50, 17), (30, 64, 97), (7, 5, 36), (131, 70, 64),
    ])
    func cuttingDoesNotChangeTheBits(m: Int, k: Int, n: Int) {
        var generator = RandomGenerator(seed: UInt64(m * 7919 + k * 31 + n))
        for transposeA in [false, true] {
            let a =
                transposeA
                ? Tensor.randn([k, m], generator: &generator).t() : Tensor.randn([m, k], generator: &generator)
            let b = Tensor.randn([k, n], generator: &generator)
            let bias = Tensor.randn([n], generator: &generator)
            let (left, keepLeft) = a.matrixOperand()
            let (right, keepRight) = b.matrixOperand()
            for instructionSet in Tensor.SkinnyInstructionSet.allCases where instructionSet.isAvailable {
                let whole = Tensor.zeros([m, n])
                let cut = Tensor.zeros([m, n])
                withExtendedLifetime((keepLeft, keepRight, bias)) {
                    var operands = BPGemm(
                        m: m, n: n, k: k, a: left.pointer,
                        rowStrideA: left.transposed ? 1 : left.leading,
                        columnStrideA: left.transposed ? left.leading : 1,
                        b: right.pointer, rowStrideB: right.leading, columnStrideB: 1, c: whole.pointer, ldc: n,
                        bias: UnsafePointer(bias.pointer), accumulate: 0, streaming: 0)
                    instructionSet.kernel(&operands, 0, m, 0, n)
                    operands.c = cut.pointer
                    // Rows cut at 5 (not a multiple of the 6-row tile), columns at 16 and at n − 3
                    // (inside the last columns), each piece narrower than it is tall or not.
                    let rowCut = Swift.min(5, m)
                    let columnCuts = Array(Set([0, Swift.min(16, n), Swift.max(0, n - 3), n])).sorted()
                    for rows in [0..<rowCut, rowCut..<m] where !rows.isEmpty {
                        for (begin, end) in zip(columnCuts, columnCuts.dropFirst()) where begin < end {
                            instructionSet.kernel(&operands, rows.lowerBound, rows.upperBound, begin, end)
                        }
                    }
                }
                let differing = zip(whole.values, cut.values).filter { $0.bitPattern != $1.bitPattern }.count
                #expect(
                    differing == 0,
                    "\(instructionSet) \(m)×\(k)×\(n) transposeA \(transposeA): \(differing) elements differ when cut")
            }
        }
    }

    /// A small C with a long depth (the seed's `w1.g = xᵀ • out.g`) is split along the depth into
    /// pieces of 4096 whose results are added: with a bias, accumulating, and a last short piece.
    @Test func depthSplit() {
        expectAgreement(m: 50, k: 9000, n: 13, transposeA: true)
        expectAgreement(m: 7, k: 8200, n: 1, transposeA: true, bias: true)
        expectAgreement(m: 20, k: 8192, n: 50, accumulate: true)
    }

    /// A transposed A (`xᵀ`) with a long depth goes to `bp_gemm_tn_avx2` (or `…_avx512`) in pieces
    /// of 2048 rows of x: rows of C around its 16- and 48-wide tiles (tails of 1...8, 9...15 and
    /// 33...47 columns of x), columns
    /// around its 5-wide one, the seed's 784 rows, a short last piece, a bias, accumulation.
    @Test(arguments: [1, 7, 8, 9, 16, 20, 33, 47, 48, 49, 100], [1, 4, 5, 6, 13])
    func transposedLongDepth(m: Int, n: Int) {
        expectAgreement(m: m, k: 8192 + 77, n: n, transposeA: true)
    }

    @Test func transposedLongDepthBiasAndAccumulation() {
        expectAgreement(m: 50, k: 8192, n: 13, transposeA: true, bias: true)
        expectAgreement(m: 784, k: 8200, n: 6, transposeA: true, accumulate: true)
        expectAgreement(m: 9, k: 8193, n: 7, transposeA: true, transposeB: true)
    }

    /// `.fast` takes the skinny kernel for the seed's shapes and any C at most 256 columns wide,
    /// and BLAS for large square ones.
    @Test func fastChoosesTheSkinnyKernelForTheSeedsShapes() {
        #expect(MatMulKernel.fast.route(m: 50_000, n: 50, k: 784) == .skinny)
        #expect(MatMulKernel.fast.route(m: 50_000, n: 784, k: 50) == .skinny)
        #expect(MatMulKernel.fast.route(m: 784, n: 50, k: 50_000) == .skinny)
        #expect(MatMulKernel.fast.route(m: 64, n: 50, k: 784) == .skinny)
        #expect(MatMulKernel.fast.route(m: 128, n: 256, k: 784) == .skinny)
        // An MLP's layers on batches larger than 128 (evaluation's 1,000 rows; w.g; inp.g of a
        // layer 256 wide has n = the inputs, 784, and stays with BLAS).
        #expect(MatMulKernel.fast.route(m: 1000, n: 256, k: 784) == .skinny)
        #expect(MatMulKernel.fast.route(m: 784, n: 256, k: 1000) == .skinny)
        #expect(MatMulKernel.fast.route(m: 1000, n: 784, k: 256) != .skinny)
        #expect(MatMulKernel.fast.route(m: 512, n: 512, k: 512) != .skinny)
        #expect(MatMulKernel.fast.route(m: 1000, n: 1000, k: 1000) != .skinny)
        // A B too large to pack whole, in a C cut by columns: each piece packs its own columns
        // (the convnet's `out.g • wᵀ` of `lin 256`). Cut by rows, every piece would pack all of it.
        #expect(MatMulKernel.fast.route(m: 128, n: 1568, k: 256) == .skinny)
        #expect(MatMulKernel.fast.route(m: 3000, n: 3000, k: 100) != .skinny)
    }

    /// Products larger than 128 on every side whose C is at most 256 columns wide, which `.fast`
    /// sends here: cut by rows into pieces, a depth past one block of B (1,024 rows), A or B
    /// transposed, a bias, accumulation.
    @Test(arguments: [(300, 200, 256), (1000, 131, 129), (257, 1030, 250), (140, 300, 200)])
    func productsLargeOnEverySideButNarrow(m: Int, k: Int, n: Int) {
        #expect(MatMulKernel.fast.route(m: m, n: n, k: k) == .skinny)
        expectAgreement(m: m, k: k, n: n)
        expectAgreement(m: m, k: k, n: n, transposeA: true, bias: true)
        expectAgreement(m: m, k: k, n: n, transposeB: true, accumulate: true)
    }

    /// A wide C whose B is too large to pack whole, cut by columns: each piece packs its own
    /// columns of B, transposed (`out.g • wᵀ`) or not, the last piece narrower than the others.
    @Test(arguments: [(64, 256, 1568), (37, 300, 1100), (20, 1100, 600)])
    func wideProductsPackTheirOwnColumns(m: Int, k: Int, n: Int) {
        #expect(MatMulKernel.fast.route(m: m, n: n, k: k) == .skinny)
        expectAgreement(m: m, k: k, n: n, transposeB: true)
        expectAgreement(m: m, k: k, n: n, bias: true)
    }
}
