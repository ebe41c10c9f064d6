import CKernels

// The dedicated path for the seed's products, whose one side is small (nh = 50 hidden units,
// or k = 50): a kernel in C (`Sources/CKernels/Gemm.c`) in AVX-512 where the processor has it and
// AVX2/FMA elsewhere (the same bits either way), run on every core. It reads
// the large operand in place, once, and writes a large result without reading it first, which
// BLAS's general blocking does not; the benchmark (`backprop bench`) measures it against BLAS on
// the seed's shapes, and the tests check it against `referenceGemm`.

extension Tensor {
    /// Whether this CPU runs the skinny kernel (x86-64 with AVX2 and FMA).
    package static let skinnyKernelIsAvailable = bp_gemm_avx2_available() != 0

    /// The vector instructions the skinny kernel is compiled for.
    ///
    /// Each element of C is the same chain of fused multiply-adds in either, so they give the
    /// same bits; AVX-512 does it with half the instructions (and, where the FMA units are 512 bits
    /// wide, as on Zen 5, at twice the rate).
    package enum SkinnyInstructionSet: String, CaseIterable, Sendable {
        /// 8-lane vectors (`bp_gemm_avx2`, `bp_gemm_tn_avx2`).
        case avx2
        /// 16-lane vectors (`bp_gemm_avx512`, `bp_gemm_tn_avx512`).
        case avx512

        /// Whether this CPU and operating system run it.
        package var isAvailable: Bool {
            switch self {
            case .avx2: bp_gemm_avx2_available() != 0
            case .avx512: bp_gemm_avx512_available() != 0
            }
        }

        /// Its `C = A • B` kernel, for a range of C's rows and columns, on the calling thread.
        package var kernel: @convention(c) (UnsafePointer<BPGemm>?, Int, Int, Int, Int) -> Void {
            self == .avx512 ? bp_gemm_avx512 : bp_gemm_avx2
        }

        /// Its `T = (xᵀ • B)ᵀ` kernel for a long depth.
        var transposedKernel:
            @convention(c) (
                Int, Int, Int, UnsafePointer<Float>?, Int, UnsafePointer<Float>?, Int, Int,
                UnsafeMutablePointer<Float>?,
                Int
            ) -> Void
        {
            self == .avx512 ? bp_gemm_tn_avx512 : bp_gemm_tn_avx2
        }

        /// The widest this machine runs: AVX-512 where available (`bp_gemm_avx512_available`, which
        /// says no when the environment variable `BACKPROP_NO_AVX512` is set), else AVX2.
        package static let widest: SkinnyInstructionSet = avx512.isAvailable ? .avx512 : .avx2
    }

    /// Whether `.fast` sends an `(m, k) • (k, n)` product to the skinny kernel.
    ///
    /// It wins where one side is small: B (or its block of 256 rows) is packed whole into a
    /// buffer that stays in the L2 cache, and the other operand streams past it. Large square
    /// products go to BLAS, whose blocking of both operands suits them better.
    ///
    /// "Small" is at most 128: a minibatch of 128 rows (`train`'s default) runs as fast here in
    /// AVX2 as in OpenBLAS's AVX2 kernels, and twice as fast in AVX-512, which the OpenBLAS of
    /// Debian 12 does not use on Zen 5. The choice does not depend on the instruction set, so
    /// every x86-64 machine with AVX2 computes the same bits.
    ///
    /// A C at most 256 columns wide also comes here, whatever its other sides: B's block of up to
    /// 1,024 rows packs into at most 1 MB, and the rows of A stream past it. These are the layers
    /// of an MLP on batches larger than 128: `evaluate`'s batches of 1,000 rows, `train
    /// --batch-size 512`. On Zen 1 (both cores, best of 7 alternating rounds) OpenBLAS, called on
    /// Backprop's pieces of rows, took 2.3-3.4 times as long: `(1000, 784) • (784, 256)` 32.4 ms
    /// against 11.0, `(1000, 256) • (256, 128)` 3.9 against 1.8, `(784, 256)ᵀ • (256, 256)` 8.0
    /// against 3.0; `(1000, 1000) • (1000, 200)` 1.05 times. Wider products are mixed (`(512,
    /// 512) • (512, 512)` 1.3 times as long in OpenBLAS, `(5000, 300) • (300, 800)` 0.84-0.93, the
    /// 1,024 square 0.82) and stay with BLAS.
    ///
    /// A B too large for the L2 cache still fits when C is cut by columns, since each piece packs
    /// only its own columns of B: the input gradient of a wide layer, `out.g • wᵀ` with `w` of
    /// `(1568, 256)` and a batch of 128 (the convnet's `lin 256`), took 1.5 ms so against 3.7 ms in
    /// OpenBLAS on Zen 1 (the layer's forward `x • w`, already here, 1.8-2.0 ms). (A product cut
    /// along its depth packs all of B in each piece, and cut by rows too: those stay with BLAS.)
    static func prefersSkinnyKernel(m: Int, n: Int, k: Int) -> Bool {
        guard skinnyKernelIsAvailable else { return false }
        if n <= 256 { return true }
        guard Swift.min(m, n, k) <= 128 else { return false }
        let depth = Swift.min(k, 1024)
        if depth * n <= 1 << 18 { return true }
        return !cutsAlongDepth(m: m, n: n, k: k) && !splitsRows(m: m, n: n, k: k)
            && depth * columnPieceWidth(m: m, n: n, k: k) <= 1 << 18
    }

    /// Whether `skinnyGemm` cuts a product along its depth, into pieces of ``depthPiece`` rows of B
    /// that each sum into their own copy of C: a small C and a long depth (the seed's `w1.g`).
    static func cutsAlongDepth(m: Int, n: Int, k: Int) -> Bool {
        m * n <= 1 << 18 && k >= 2 * depthPiece
    }

    /// Whether `skinnyGemm` cuts C by rows (multiples of the 6-row tile) rather than by columns,
    /// when it cuts it along neither the depth nor in halves. Each piece reads the part of B it
    /// uses: pieces of rows all of B each, pieces of columns only their own columns but all of A
    /// each. So rows when C is at least as tall as wide (the extra reading is then B's, the
    /// smaller: `(64, 784) • (784, 50)` takes 14 µs in two pieces of rows, 16 in two of columns),
    /// or when A is large; columns when C is wide (the MLP's `(64, 784) • (784, 256)`).
    static func splitsRows(m: Int, n: Int, k: Int) -> Bool {
        n < 32 || m >= n || m * k > 1 << 18
    }

    /// Results at least this large are written with non-temporal stores (they do not fit in
    /// the caches anyway, and reading them before writing would double the memory traffic).
    static let streamingThreshold = 32 << 20

    /// `c = a • b (+ bias)` or `c += a • b` with the skinny kernel, split over the cores.
    ///
    /// `streaming` forces non-temporal stores on or off (tests); by default results of at least
    /// ``streamingThreshold`` bytes get them. `instructionSet` chooses the kernels' vectors (tests
    /// run both); by default the widest this machine runs.
    /// - Precondition: ``skinnyKernelIsAvailable`` and `instructionSet.isAvailable`.
    static func skinnyGemm(
        _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, accumulate: Bool,
        bias: UnsafePointer<Float>?, streaming: Bool? = nil, instructionSet: SkinnyInstructionSet = .widest
    ) {
        precondition(instructionSet.isAvailable, "skinnyGemm: this CPU has no \(instructionSet.rawValue)")
        let gemm = instructionSet.kernel
        let m = a.rows
        let n = b.columns
        let k = a.columns
        var operands = BPGemm(
            m: m, n: n, k: k,
            a: a.pointer, rowStrideA: a.transposed ? 1 : a.leading, columnStrideA: a.transposed ? a.leading : 1,
            b: b.pointer, rowStrideB: b.transposed ? 1 : b.leading, columnStrideB: b.transposed ? b.leading : 1,
            c: c, ldc: n, bias: bias, accumulate: accumulate ? 1 : 0,
            streaming: streaming ?? (!accumulate && m * n * MemoryLayout<Float>.stride >= streamingThreshold) ? 1 : 0)
        if splitsDepthInHalves(m: m, n: n, k: k, transposedA: a.transposed, accumulate: accumulate) {
            depthHalvesGemm(operands, instructionSet: instructionSet)
            return
        }
        if cutsAlongDepth(m: m, n: n, k: k) {
            if a.transposed {
                transposedDepthGemm(operands, accumulate: accumulate, bias: bias, instructionSet: instructionSet)
            } else {
                depthSplitGemm(operands, accumulate: accumulate, bias: bias, instructionSet: instructionSet)
            }
            return
        }
        // Split C by rows or by columns (`splitsRows`), in pieces large enough to pay for a
        // thread. A small product is cut into one piece per thread (`balancedPieces`). How C is
        // cut does not change its bits (the kernel decides its last columns on the whole product).
        let splitRows = splitsRows(m: m, n: n, k: k)
        let threads = Parallel.workers
        withUnsafePointer(to: &operands) { operands in
            if splitRows {
                let minimumRows = Swift.max(24, (1 << 18) / Swift.max(n * k, 1))
                let parts = Parallel.pieces(m, minimumPerPiece: minimumRows)
                if let pieces = balancedPieces(m, parts: parts, work: m * n * k, threads: threads, grains: [6, 2]) {
                    Parallel.forEachPiece(pieces.count) { piece in
                        gemm(operands, pieces[piece].lowerBound, pieces[piece].upperBound, 0, n)
                    }
                    return
                }
                Parallel.forEachRange(m, minimumPerPiece: minimumRows, grain: 6) { rows in
                    gemm(operands, rows.lowerBound, rows.upperBound, 0, n)
                }
            } else {
                let width = columnPieceWidth(m: m, n: n, k: k)
                if let pieces = balancedPieces(
                    n, parts: (n + width - 1) / width, work: m * n * k, threads: threads, grains: [16])
                {
                    Parallel.forEachPiece(pieces.count) { piece in
                        gemm(operands, 0, m, pieces[piece].lowerBound, pieces[piece].upperBound)
                    }
                    return
                }
                let pieces = evenPieces(n, parts: (n + width - 1) / width, threads: threads, grain: 16)
                Parallel.forEachPiece(pieces.count) { piece in
                    gemm(operands, 0, m, pieces[piece].lowerBound, pieces[piece].upperBound)
                }
            }
        }
    }

    /// Whether `skinnyGemm` computes `C = A • B (+ bias)` as two products along the depth,
    /// ``depthHalvesGemm(_:instructionSet:)``: a minibatch's first layer into few units, `x • w`
    /// with `x` row-major and at most 128 rows, a depth of at least 512, and C at least as tall as
    /// wide (or narrower than 32 columns): the products that would otherwise be cut by C's rows.
    ///
    /// Cut by C's rows, both cores read all of `w`, and the half of it that the other core's SGD
    /// had just updated crossed between them at every step. Cut along the depth, each core reads
    /// only the rows of `w` it owns in the rest of the step: the weight gradient `w.g = xᵀ • out.g`
    /// is cut by its rows (in halves on two threads), and SGD updates each half of `w` on the core
    /// that computed its gradient (`Parallel.forEachThreadRange`). On Zen 4 (alternating runs of
    /// `bench --only minibatch`) the epoch's SGD took 9.0-9.5 ms before, 3.8 ms after in quiet
    /// runs, the first layer's forward no longer (23-24 ms, adding the halves included), and the
    /// epoch 0.064-0.080 s against 0.070-0.083 s (best and median of 8). A wide C (the MLP's
    /// `(64, 784) • (784, 256)`) is cut by columns, each core reading its own columns of `w`: there
    /// the halves measured 12 ms an epoch slower.
    /// The decision depends on the shape alone, so the result does not depend on the number of
    /// threads.
    static func splitsDepthInHalves(m: Int, n: Int, k: Int, transposedA: Bool, accumulate: Bool) -> Bool {
        !transposedA && !accumulate && m <= 128 && k >= 512 && (n < 32 || m >= n)
    }

    /// `C = A • B (+ bias)` as two products along the depth: `C = A[:, ..<h] • B[..<h, :] (+ bias)`
    /// written into C, and `A[:, h...] • B[h..., :]` into a scratch copy that is then added to C,
    /// with `h = ⌈k / 2⌉` (the rows of B that the weight gradient's first piece and the optimizer's
    /// first half cover). Each element is `(bias + Σ_{p<h}) + Σ_{p≥h}`, the same on any number of
    /// threads. On two threads each takes one half; on more, each half is also cut by C's columns
    /// (which does not change the sums), so that every thread has a piece.
    private static func depthHalvesGemm(_ operands: BPGemm, instructionSet: SkinnyInstructionSet) {
        let gemm = instructionSet.kernel
        let (m, n, k) = (operands.m, operands.n, operands.k)
        let half = (k + 1) / 2
        let second = UnsafeMutablePointer<Float>.allocateScratch(
            capacity: m * n, for: "a matrix product's scratch memory")
        defer { second.deallocate() }
        let columns = Parallel.split(n, into: Swift.max(1, Parallel.workers / 2), grain: 16)
        Parallel.forEachPiece(2 * columns.count) { index in
            let (piece, range) = (index / columns.count, columns[index % columns.count])
            var part = operands
            if piece == 1 {
                part.k = k - half
                part.a = operands.a! + half * operands.columnStrideA
                part.b = operands.b! + half * operands.rowStrideB
                part.c = second
                part.ldc = n
                part.bias = nil
            } else {
                part.k = half
            }
            part.accumulate = 0
            part.streaming = 0
            gemm(&part, 0, m, range.lowerBound, range.upperBound)
        }
        let (c, ldc) = (operands.c!, operands.ldc)
        for i in 0..<m {
            let (row, addend) = (c + i * ldc, second + i * n)
            for j in 0..<n { row[j] += addend[j] }
        }
    }

    /// Products of at most this many multiply-adds are cut into one piece per thread (the MLP's
    /// largest, `(64, 784) • (784, 256)`, has 12.8 M; the seed's, 1.96 G, keep their 16 pieces,
    /// which the threads take as they come free).
    static let balancedWork = 1 << 25

    /// `0..<count` (C's rows or columns) in one piece for each of `threads` threads, of nearly
    /// equal size and each a multiple of one of `grains` (the one that divides `count` most
    /// evenly; the first on a tie), when the product is small (`work` multiply-adds, at most
    /// ``balancedWork``) and would otherwise be cut into `parts ≥ 2` pieces; else `nil`.
    ///
    /// Pieces taken as they come free balance a large product, but a small one's few pieces leave
    /// one thread a piece behind: `(64, 784) • (784, 256)` in six pieces of 48 columns gives one
    /// thread 144 columns (126 µs on Zen 4) and the other 112; in two pieces of 128 each takes
    /// 115 µs. Rows are cut at multiples of the 6-row tile, or of 2 when that divides them more
    /// evenly (64 rows as 32 + 32, not 36 + 28: a 2-row tile costs less than the 4 rows more);
    /// columns at multiples of 16, a vector of the AVX2 tile.
    static func balancedPieces(
        _ count: Int, parts: Int, work: Int, threads: Int, grains: [Int]
    ) -> [Range<Int>]? {
        guard parts >= 2, threads >= 2, work <= balancedWork, count >= 2 * threads else { return nil }
        let largest = { (ranges: [Range<Int>]) in ranges.map(\.count).max() ?? 0 }
        return grains.map { Parallel.split(count, into: threads, grain: $0) }.min { largest($0) < largest($1) }
    }

    /// `0..<count` in `parts` pieces, or the next multiple of `threads` above it, whose sizes are
    /// multiples of `grain` (the last also takes the remainder) and differ by at most one grain,
    /// larger first: pieces that the threads, taking them as they come free, share evenly.
    ///
    /// Pieces of one width leave the last short, and the thread that takes it idle for the rest
    /// of another's: the convnet's `lin 256` forward, `(128, 1568) • (1568, 256)`, in five pieces
    /// of 48 columns and one of 16 gave one core 144 columns and the other 112; as 48, 48, 48,
    /// 48, 32, 32 each takes 128.
    static func evenPieces(_ count: Int, parts: Int, threads: Int, grain: Int) -> [Range<Int>] {
        let units = Swift.max(count / grain, 1)
        let rounded = parts <= 1 ? 1 : (parts + threads - 1) / threads * threads
        let pieceCount = Swift.max(1, Swift.min(rounded <= units ? rounded : parts, units))
        var pieces: [Range<Int>] = []
        var begin = 0
        for piece in 0..<pieceCount {
            let size = (units / pieceCount + (piece < units % pieceCount ? 1 : 0)) * grain
            let end = piece == pieceCount - 1 ? count : begin + size
            pieces.append(begin..<end)
            begin = end
        }
        return pieces
    }

    /// The columns of each piece when `skinnyGemm` cuts an `(m, k) • (k, n)` product by columns:
    /// a multiple of 16 (the AVX2 tile), 48 (the AVX-512 tile) for a wide C and 32 for a narrower
    /// one (so that 128 columns make four even pieces, not 48 + 48 + 32), wider where the pieces
    /// would be too small to pay for a thread (2¹⁸ multiply-adds), and at most
    /// ``Parallel/maximumPieces`` pieces. Measured on the MLP's `(64, 784) • (784, 256)`: pieces
    /// of 48 take 80 µs, of 16 (the earlier rule) 112 µs; each piece reads all of A, and a 16-wide
    /// piece leaves two thirds of the AVX-512 tile unused.
    static func columnPieceWidth(m: Int, n: Int, k: Int) -> Int {
        let tile = n >= 192 ? 48 : 32
        let paying = ((1 << 18) / Swift.max(m * k, 1) + 15) / 16 * 16
        let fewEnough = ((n + Parallel.maximumPieces - 1) / Parallel.maximumPieces + 15) / 16 * 16
        return Swift.max(tile, paying, fewEnough)
    }

    /// Rows of B (columns of A) per piece of a product split along its depth.
    static let depthPiece = 4096

    /// Rows of x per piece of ``transposedDepthGemm(_:accumulate:bias:)``: small enough that the
    /// two cores finish within a piece of each other, large enough that adding up the pieces'
    /// results (one small C each) costs little.
    static let transposedDepthPiece = 2048

    /// `C = xᵀ • B` for a transposed view `xᵀ` with a long depth and a small C: the seed's
    /// `w1.g = xᵀ • out.g`, `(784, 50000) • (50000, 50)`.
    ///
    /// The depth is cut into pieces of ``transposedDepthPiece`` rows of x, which the cores take
    /// one at a time; each piece sums its rows into its own copy of `Cᵀ` with
    /// `bp_gemm_tn_avx2` (vectors along x's rows, which lie contiguous), and the copies are added
    /// in order and transposed into C, each thread over its own stretch (on one thread, the seed's
    /// 25 copies took 0.4 ms of a 63 ms step). The pieces do not depend on the number of cores, so
    /// neither does the result.
    private static func transposedDepthGemm(
        _ operands: BPGemm, accumulate: Bool, bias: UnsafePointer<Float>?, instructionSet: SkinnyInstructionSet
    ) {
        let kernel = instructionSet.transposedKernel
        let m = operands.m
        let n = operands.n
        let k = operands.k
        let ldt = bp_gemm_tn_columns(m)
        let pieceSize = bp_gemm_tn_rows(n) * ldt
        let pieces = (k + transposedDepthPiece - 1) / transposedDepthPiece
        let partial = UnsafeMutablePointer<Float>.allocateScratch(
            capacity: pieces * pieceSize, for: "a matrix product's scratch memory")
        defer { partial.deallocate() }
        Parallel.forEachPiece(pieces) { piece in
            let begin = piece * transposedDepthPiece
            let depth = Swift.min(k, begin + transposedDepthPiece) - begin
            kernel(
                m, n, depth, operands.a! + begin * operands.columnStrideA, operands.columnStrideA,
                operands.b! + begin * operands.rowStrideB, operands.rowStrideB, operands.columnStrideB,
                partial + piece * pieceSize, ldt)
        }
        Parallel.forEachThreadRange(pieceSize, minimumPerPiece: 4096, grain: 16) { range in
            for piece in 1..<Swift.max(pieces, 1) {
                let source = partial + piece * pieceSize
                for index in range { partial[index] += source[index] }
            }
        }
        let c = operands.c!
        let ldc = operands.ldc
        Parallel.forEachThreadRange(m, minimumPerPiece: 64, grain: 16) { rows in
            for i in rows {
                for j in 0..<n {
                    let start: Float = accumulate ? c[i * ldc + j] : (bias?[j] ?? 0)
                    c[i * ldc + j] = start + partial[j * ldt + i]
                }
            }
        }
    }

    /// A product whose C is small and whose depth is long, with a row-major A (a transposed A,
    /// the seed's `w1.g = xᵀ • out.g`, goes to ``transposedDepthGemm(_:accumulate:bias:)``),
    /// split along the depth: each piece sums its own 4096 columns of A into its own copy of C,
    /// and the copies are added in order. The pieces do not depend on the number of cores, so
    /// neither does the result.
    private static func depthSplitGemm(
        _ operands: BPGemm, accumulate: Bool, bias: UnsafePointer<Float>?, instructionSet: SkinnyInstructionSet
    ) {
        let gemm = instructionSet.kernel
        let m = operands.m
        let n = operands.n
        let k = operands.k
        let pieces = (k + depthPiece - 1) / depthPiece
        let partial = UnsafeMutablePointer<Float>.allocateScratch(
            capacity: pieces * m * n, for: "a matrix product's scratch memory")
        defer { partial.deallocate() }
        Parallel.forEachRange(pieces, minimumPerPiece: 1) { range in
            for piece in range {
                let depth = (piece * depthPiece)..<Swift.min(k, (piece + 1) * depthPiece)
                var part = operands
                part.k = depth.count
                part.a = operands.a! + depth.lowerBound * operands.columnStrideA
                part.b = operands.b! + depth.lowerBound * operands.rowStrideB
                part.c = partial + piece * m * n
                part.ldc = n
                part.bias = nil
                part.accumulate = 0
                part.streaming = 0
                gemm(&part, 0, m, 0, n)
            }
        }
        let c = operands.c!
        let ldc = operands.ldc
        for i in 0..<m {
            for j in 0..<n {
                var total: Float = accumulate ? c[i * ldc + j] : (bias?[j] ?? 0)
                for piece in 0..<pieces { total += partial[piece * m * n + i * n + j] }
                c[i * ldc + j] = total
            }
        }
    }
}
