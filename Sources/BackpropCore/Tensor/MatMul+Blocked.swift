import Dispatch

// The portable matrix product: a blocked, packed kernel in the style of BLIS/GotoBLAS, written
// with Swift's SIMD types. It is what `•` uses in a build without BLAS, and tests check it
// against `referenceGemm`.
//
//   for each block of kc rows of B (and kc columns of A):
//     pack B's block into panels of nr columns       Bp: (n / nr, kc, nr)
//     for each block of mc rows of A, in parallel:
//       pack A's block into panels of mr rows         Ap: (mc / mr, kc, mr)   (A transposed only;
//                                                     a row-major A is read in place, 6 rows at a time)
//       for each (mr × nr) tile of C: C += Ap panel • Bp panel   (the micro-kernel)

/// Tile and block sizes of the blocked kernel.
///
/// Swift compiles for baseline x86-64 (SSE2: 16 registers of 4 floats) unless told otherwise, and
/// a package cannot tell it otherwise for the packages that depend on it. A tile of 6 rows × 8
/// columns keeps its 12 accumulators, one row of B and one value of A in those 16 registers; a
/// larger tile would spill to memory on every step.
private enum Blocking {
    /// Rows of C per micro-kernel tile.
    static let mr = 6
    /// Columns of C per micro-kernel tile (one SIMD8 vector: two SSE registers).
    static let nr = 8
    /// Depth of one packed block (fits the L1/L2 caches with the panels).
    static let kc = 256
    /// Rows of A per packed block: the unit of work handed to a core.
    static let mc = 96
}

extension Tensor {
    /// Depth per piece when a small product with a long depth is split along it.
    static let blockedDepthPiece = 4096

    /// `c = a • b` or `c += a • b` with the blocked pure-Swift kernel; `c` is row-major.
    ///
    /// A small C with a long depth (the seed's `w1.g = xᵀ • out.g`, 784 × 50 over 50,000 rows)
    /// has too few blocks of rows to keep the cores busy: it is split along its depth instead,
    /// into pieces of ``blockedDepthPiece`` that the cores take as they come free, each summed
    /// into its own C; the pieces' results are added in order (so the result does not depend on
    /// the number of threads).
    static func blockedGemm(
        _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        let m = a.rows
        let n = b.columns
        let k = a.columns
        if m * n <= 1 << 18 && k >= 2 * blockedDepthPiece {
            let pieces = (k + blockedDepthPiece - 1) / blockedDepthPiece
            let partial = UnsafeMutablePointer<Float>.allocateScratch(
                capacity: pieces * m * n, for: "a matrix product's scratch memory")
            defer { partial.deallocate() }
            Parallel.forEachPiece(pieces) { piece in
                let depth = (piece * blockedDepthPiece)..<Swift.min(k, (piece + 1) * blockedDepthPiece)
                blockedGemmBlocks(
                    a.columns(depth), b.rows(depth), into: partial + piece * m * n, accumulate: false)
            }
            if !accumulate { c.update(repeating: 0, count: m * n) }
            for piece in 0..<pieces {
                let source = partial + piece * m * n
                for index in 0..<(m * n) { c[index] += source[index] }
            }
            return
        }
        blockedGemmBlocks(a, b, into: c, accumulate: accumulate)
    }

    /// `c = a • b` or `c += a • b`, block by block (see the top of this file).
    private static func blockedGemmBlocks(
        _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        let m = a.rows
        let n = b.columns
        let k = a.columns
        let mr = Blocking.mr
        let nr = Blocking.nr
        let panelsB = (n + nr - 1) / nr
        if !accumulate { c.update(repeating: 0, count: m * n) }
        let packedB = UnsafeMutablePointer<Float>.allocateScratch(
            capacity: panelsB * Blocking.kc * nr, for: "a matrix product's scratch memory")
        defer { packedB.deallocate() }
        let rowBlocks = (m + Blocking.mc - 1) / Blocking.mc
        // Blocks of rows go to the cores when each block has work enough to pay for a thread.
        let minimumBlocks = Blocking.mc * n * Swift.min(k, Blocking.kc) >= 1 << 17 ? 1 : rowBlocks
        for pc in stride(from: 0, to: k, by: Blocking.kc) {
            let kc = Swift.min(Blocking.kc, k - pc)
            packB(b, rows: pc..<(pc + kc), into: packedB, panels: panelsB)
            Parallel.forEachRange(rowBlocks, minimumPerPiece: minimumBlocks) { blocks in
                // A row-major A is read in place, six rows at a time (its rows are already
                // contiguous); a transposed view is packed into panels first.
                let packedA =
                    a.transposed
                    ? UnsafeMutablePointer<Float>.allocateScratch(
                        capacity: Blocking.mc * kc, for: "a matrix product's scratch memory") : nil
                defer { packedA?.deallocate() }
                for block in blocks {
                    let ic = block * Blocking.mc
                    let mc = Swift.min(Blocking.mc, m - ic)
                    let panelsA = (mc + mr - 1) / mr
                    if let packedA { packA(a, rows: ic..<(ic + mc), depth: pc..<(pc + kc), into: packedA) }
                    for jp in 0..<panelsB {
                        for ip in 0..<panelsA {
                            let row = ic + ip * mr
                            let panel: TilePanel
                            if let packedA {
                                panel = TilePanel(packed: UnsafePointer(packedA + ip * kc * mr))
                            } else {
                                panel = TilePanel(rowsOf: a, from: row, through: m - 1, column: pc)
                            }
                            microKernel(
                                depth: kc, a: panel, packedB: packedB + jp * kc * nr,
                                c: c, ldc: n, row: row, column: jp * nr, rows: m, columns: n)
                        }
                    }
                }
            }
        }
    }

    /// Copies rows `depth` of B, all columns, into panels of `nr` columns (zero-padded).
    private static func packB(
        _ b: MatrixOperand, rows depth: Range<Int>, into packed: UnsafeMutablePointer<Float>, panels: Int
    ) {
        let nr = Blocking.nr
        let kc = depth.count
        for jp in 0..<panels {
            let panel = packed + jp * kc * nr
            for p in 0..<kc {
                for jj in 0..<nr {
                    let j = jp * nr + jj
                    panel[p * nr + jj] = j < b.columns ? b[depth.lowerBound + p, j] : 0
                }
            }
        }
    }

    /// Copies rows `rows` and columns `depth` of A into panels of `mr` rows (zero-padded).
    ///
    /// A row-major A is read along its rows; a transposed view (`xᵀ`, whose rows are x's columns)
    /// a panel's `mr` values at a time, which lie side by side in x's row: either way A is read
    /// in the order it lies in memory.
    private static func packA(
        _ a: MatrixOperand, rows: Range<Int>, depth: Range<Int>, into packed: UnsafeMutablePointer<Float>
    ) {
        let mr = Blocking.mr
        let kc = depth.count
        let panels = (rows.count + mr - 1) / mr
        for ip in 0..<panels {
            let panel = packed + ip * kc * mr
            let first = rows.lowerBound + ip * mr
            let valid = Swift.min(mr, rows.upperBound - first)
            if a.transposed {
                for p in 0..<kc {
                    let source = a.pointer + (depth.lowerBound + p) * a.leading + first
                    for ii in 0..<valid { panel[p * mr + ii] = source[ii] }
                    for ii in valid..<mr { panel[p * mr + ii] = 0 }
                }
            } else {
                for ii in 0..<mr {
                    if ii < valid {
                        let source = a.pointer + (first + ii) * a.leading + depth.lowerBound
                        for p in 0..<kc { panel[p * mr + ii] = source[p] }
                    } else {
                        for p in 0..<kc { panel[p * mr + ii] = 0 }
                    }
                }
            }
        }
    }

    /// Where the micro-kernel reads its 6 rows of A: value `p` of row `r` is `rows.r[p * step]`.
    private struct TilePanel {
        let r0, r1, r2, r3, r4, r5: UnsafePointer<Float>
        let step: Int

        /// A packed panel: the 6 rows interleaved, `(kc, 6)`.
        init(packed: UnsafePointer<Float>) {
            (r0, r1, r2, r3, r4, r5) = (packed, packed + 1, packed + 2, packed + 3, packed + 4, packed + 5)
            step = 6
        }

        /// Rows `first...` of a row-major A from `column` on; rows past `last` repeat row `last`
        /// (their results are not stored).
        init(rowsOf a: MatrixOperand, from first: Int, through last: Int, column: Int) {
            func row(_ offset: Int) -> UnsafePointer<Float> {
                a.pointer + Swift.min(first + offset, last) * a.leading + column
            }
            (r0, r1, r2, r3, r4, r5) = (row(0), row(1), row(2), row(3), row(4), row(5))
            step = 1
        }
    }

    /// Adds one `mr × nr` (6 × 8) tile of `A panel • Bp` into C at `(row, column)`, clipped to C's
    /// size.
    @inline(__always)
    private static func microKernel(
        depth: Int, a: TilePanel, packedB: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, row: Int, column: Int, rows: Int, columns: Int
    ) {
        var c0 = SIMD8<Float>()
        var c1 = SIMD8<Float>()
        var c2 = SIMD8<Float>()
        var c3 = SIMD8<Float>()
        var c4 = SIMD8<Float>()
        var c5 = SIMD8<Float>()
        let rawB = UnsafeRawPointer(packedB)
        let step = a.step
        for p in 0..<depth {
            let b = rawB.loadUnaligned(fromByteOffset: p * 32, as: SIMD8<Float>.self)
            let q = p * step
            c0 += SIMD8(repeating: a.r0[q]) * b
            c1 += SIMD8(repeating: a.r1[q]) * b
            c2 += SIMD8(repeating: a.r2[q]) * b
            c3 += SIMD8(repeating: a.r3[q]) * b
            c4 += SIMD8(repeating: a.r4[q]) * b
            c5 += SIMD8(repeating: a.r5[q]) * b
        }
        let validRows = Swift.min(6, rows - row)
        let width = Swift.min(8, columns - column)
        let corner = c + row * ldc + column
        if validRows > 0 { addRow(c0, to: corner, width: width) }
        if validRows > 1 { addRow(c1, to: corner + ldc, width: width) }
        if validRows > 2 { addRow(c2, to: corner + 2 * ldc, width: width) }
        if validRows > 3 { addRow(c3, to: corner + 3 * ldc, width: width) }
        if validRows > 4 { addRow(c4, to: corner + 4 * ldc, width: width) }
        if validRows > 5 { addRow(c5, to: corner + 5 * ldc, width: width) }
    }

    /// Adds one 8-wide row of a tile into C, or its first `width` elements at C's right edge.
    @inline(__always)
    private static func addRow(_ values: SIMD8<Float>, to destination: UnsafeMutablePointer<Float>, width: Int) {
        if width == 8 {
            let raw = UnsafeMutableRawPointer(destination)
            raw.storeBytes(of: raw.loadUnaligned(as: SIMD8<Float>.self) + values, as: SIMD8<Float>.self)
        } else {
            for jj in 0..<width { destination[jj] += values[jj] }
        }
    }
}
