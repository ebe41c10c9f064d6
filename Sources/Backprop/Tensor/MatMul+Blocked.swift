import Dispatch

// The portable matrix product: a blocked, packed kernel in the style of BLIS/GotoBLAS, written
// with Swift's SIMD types. It is what `•` uses in a build without BLAS, and tests check it
// against `referenceGemm`.
//
//   for each block of kc rows of B (and kc columns of A):
//     pack B's block into panels of nr columns       Bp: (n / nr, kc, nr)
//     for each block of mc rows of A, in parallel:
//       pack A's block into panels of mr rows         Ap: (mc / mr, kc, mr)
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
    /// `c = a • b` or `c += a • b` with the blocked pure-Swift kernel; `c` is row-major.
    static func blockedGemm(
        _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        let m = a.rows
        let n = b.columns
        let k = a.columns
        let mr = Blocking.mr
        let nr = Blocking.nr
        let panelsB = (n + nr - 1) / nr
        if !accumulate { c.update(repeating: 0, count: m * n) }
        let packedB = UnsafeMutablePointer<Float>.allocate(capacity: panelsB * Blocking.kc * nr)
        defer { packedB.deallocate() }
        let rowBlocks = (m + Blocking.mc - 1) / Blocking.mc
        // Blocks of rows go to the cores when each block has work enough to pay for a thread.
        let minimumBlocks = Blocking.mc * n * Swift.min(k, Blocking.kc) >= 1 << 17 ? 1 : rowBlocks
        for pc in stride(from: 0, to: k, by: Blocking.kc) {
            let kc = Swift.min(Blocking.kc, k - pc)
            packB(b, rows: pc..<(pc + kc), into: packedB, panels: panelsB)
            Parallel.forEachRange(rowBlocks, minimumPerPiece: minimumBlocks) { blocks in
                let packedA = UnsafeMutablePointer<Float>.allocate(capacity: Blocking.mc * kc)
                defer { packedA.deallocate() }
                for block in blocks {
                    let ic = block * Blocking.mc
                    let mc = Swift.min(Blocking.mc, m - ic)
                    let panelsA = (mc + mr - 1) / mr
                    packA(a, rows: ic..<(ic + mc), depth: pc..<(pc + kc), into: packedA)
                    for jp in 0..<panelsB {
                        for ip in 0..<panelsA {
                            microKernel(
                                depth: kc, packedA: packedA + ip * kc * mr, packedB: packedB + jp * kc * nr,
                                c: c, ldc: n, row: ic + ip * mr, column: jp * nr, rows: m, columns: n)
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
    private static func packA(
        _ a: MatrixOperand, rows: Range<Int>, depth: Range<Int>, into packed: UnsafeMutablePointer<Float>
    ) {
        let mr = Blocking.mr
        let kc = depth.count
        let panels = (rows.count + mr - 1) / mr
        for ip in 0..<panels {
            let panel = packed + ip * kc * mr
            for ii in 0..<mr {
                let i = rows.lowerBound + ip * mr + ii
                if i < rows.upperBound {
                    for p in 0..<kc { panel[p * mr + ii] = a[i, depth.lowerBound + p] }
                } else {
                    for p in 0..<kc { panel[p * mr + ii] = 0 }
                }
            }
        }
    }

    /// Adds one `mr × nr` (6 × 8) tile of `Ap • Bp` into C at `(row, column)`, clipped to C's size.
    @inline(__always)
    private static func microKernel(
        depth: Int, packedA: UnsafePointer<Float>, packedB: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, row: Int, column: Int, rows: Int, columns: Int
    ) {
        var c0 = SIMD8<Float>()
        var c1 = SIMD8<Float>()
        var c2 = SIMD8<Float>()
        var c3 = SIMD8<Float>()
        var c4 = SIMD8<Float>()
        var c5 = SIMD8<Float>()
        let rawB = UnsafeRawPointer(packedB)
        for p in 0..<depth {
            let b = rawB.loadUnaligned(fromByteOffset: p * 32, as: SIMD8<Float>.self)
            let a = packedA + p * 6
            c0 += SIMD8(repeating: a[0]) * b
            c1 += SIMD8(repeating: a[1]) * b
            c2 += SIMD8(repeating: a[2]) * b
            c3 += SIMD8(repeating: a[3]) * b
            c4 += SIMD8(repeating: a[4]) * b
            c5 += SIMD8(repeating: a[5]) * b
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
