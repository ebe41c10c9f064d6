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
private enum Blocking {
    /// Rows of C per micro-kernel tile.
    static let mr = 4
    /// Columns of C per micro-kernel tile (two SIMD8 vectors).
    static let nr = 16
    /// Depth of one packed block (fits the L1/L2 caches with the panels).
    static let kc = 256
    /// Rows of A per packed block, and per parallel task.
    static let mc = 128
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
        let workers = Swift.min(rowBlocks, m * n * k >= 1 << 20 ? 2 : 1)
        let cAddress = UInt(bitPattern: c)
        for pc in stride(from: 0, to: k, by: Blocking.kc) {
            let kc = Swift.min(Blocking.kc, k - pc)
            packB(b, rows: pc..<(pc + kc), into: packedB, panels: panelsB)
            let bAddress = UInt(bitPattern: packedB)
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                let c = UnsafeMutablePointer<Float>(bitPattern: cAddress)!
                let packedB = UnsafePointer<Float>(bitPattern: bAddress)!
                let packedA = UnsafeMutablePointer<Float>.allocate(capacity: Blocking.mc * kc)
                defer { packedA.deallocate() }
                for block in stride(from: worker, to: rowBlocks, by: workers) {
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
            for p in 0..<kc {
                for ii in 0..<mr {
                    let i = rows.lowerBound + ip * mr + ii
                    panel[p * mr + ii] = i < rows.upperBound ? a[i, depth.lowerBound + p] : 0
                }
            }
        }
    }

    /// Adds one `mr × nr` tile of `Ap • Bp` into C at `(row, column)`, clipped to C's size.
    @inline(__always)
    private static func microKernel(
        depth: Int, packedA: UnsafePointer<Float>, packedB: UnsafePointer<Float>,
        c: UnsafeMutablePointer<Float>, ldc: Int, row: Int, column: Int, rows: Int, columns: Int
    ) {
        var c00 = SIMD8<Float>()
        var c01 = SIMD8<Float>()
        var c10 = SIMD8<Float>()
        var c11 = SIMD8<Float>()
        var c20 = SIMD8<Float>()
        var c21 = SIMD8<Float>()
        var c30 = SIMD8<Float>()
        var c31 = SIMD8<Float>()
        let rawB = UnsafeRawPointer(packedB)
        for p in 0..<depth {
            let b0 = rawB.loadUnaligned(fromByteOffset: p * 64, as: SIMD8<Float>.self)
            let b1 = rawB.loadUnaligned(fromByteOffset: p * 64 + 32, as: SIMD8<Float>.self)
            let a = packedA + p * 4
            let a0 = SIMD8(repeating: a[0])
            let a1 = SIMD8(repeating: a[1])
            let a2 = SIMD8(repeating: a[2])
            let a3 = SIMD8(repeating: a[3])
            c00 += a0 * b0
            c01 += a0 * b1
            c10 += a1 * b0
            c11 += a1 * b1
            c20 += a2 * b0
            c21 += a2 * b1
            c30 += a3 * b0
            c31 += a3 * b1
        }
        let validRows = Swift.min(4, rows - row)
        let width = Swift.min(16, columns - column)
        if validRows > 0 { addTile(c00, c01, to: c + row * ldc + column, width: width) }
        if validRows > 1 { addTile(c10, c11, to: c + (row + 1) * ldc + column, width: width) }
        if validRows > 2 { addTile(c20, c21, to: c + (row + 2) * ldc + column, width: width) }
        if validRows > 3 { addTile(c30, c31, to: c + (row + 3) * ldc + column, width: width) }
    }

    /// Adds one 16-wide row of a tile into C, or its first `width` elements at C's right edge.
    @inline(__always)
    private static func addTile(
        _ low: SIMD8<Float>, _ high: SIMD8<Float>, to destination: UnsafeMutablePointer<Float>, width: Int
    ) {
        if width == 16 {
            let raw = UnsafeMutableRawPointer(destination)
            raw.storeBytes(of: raw.loadUnaligned(as: SIMD8<Float>.self) + low, as: SIMD8<Float>.self)
            raw.storeBytes(
                of: raw.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self) + high, toByteOffset: 32,
                as: SIMD8<Float>.self)
        } else {
            for jj in 0..<width { destination[jj] += jj < 8 ? low[jj] : high[jj - 8] }
        }
    }
}
