#if canImport(Accelerate)
    import Accelerate
#elseif OpenBLAS
    import CBLAS
#endif
import CKernels

// The convolution's fast path, a piece of the batch at a time: `Conv2d`'s forward and backward
// when autograd does not record (the recorded composition, `unfold` then `•`, is in the layer).
//
// The batched form `cols • Wᵀ` gives one row per window, `(n, oh, ow, cOut)`, which then has to be
// copied to NCHW element by element; and its backward needs `out.g` copied back to rows. Taken
// the other way round, `W • colsᵀ` (`(cOut, K) • (K, m·L)` for a piece of m images, `K = cIn·kh·kw`,
// `L = oh·ow`) is the piece's output as `(cOut, m, L)`: each image's channel is a contiguous run
// of L values, moved to NCHW in whole runs. The backward gathers `out.g` of the piece the same
// way, `G (cOut, m·L)`, and then:
//
//   forward,  for each piece:   C = W • colsᵀ;   out[i, o, :] = C[o, i·L ..< (i+1)·L] + b[o]
//   backward, for each piece:   w.g += G • cols                              (cOut, K)
//                               b.g += Σ_j G[:, j]                            (cOut)
//                               inp.g of the piece = fold(Wᵀ • G)             (m, cIn, h, w)
//
// (Wᵀ • G is (Gᵀ • W)ᵀ: the window gradients in the planar layout, one row per (c, ky, kx), which
// fold adds to the image a row segment at a time.)
//
// One product per piece, not one per image: a product of m·L columns keeps BLAS's kernels busy
// where one image's L = 196 would not. Pieces depend on the batch alone; each piece sums its own
// `w.g` and `b.g`, and the pieces' sums are added in order, so the result is the same on any
// number of threads. Each product is one BLAS call on one thread (the pieces are the
// parallelism), or the blocked Swift kernel in a build without BLAS. The piece's C, G and window
// gradients live in a scratch buffer of the thread's own, kept from call to call.

extension Tensor {
    /// Convolutions of at least this many multiply-adds per piece are split over the cores.
    static let convolutionPieceWork = 1 << 20

    /// The pieces of a batch of `n` images, `work` multiply-adds each: consecutive ranges that
    /// depend on `n` and `work` alone (not on the number of threads).
    private static func imagePieces(_ n: Int, work: Int) -> [Range<Int>] {
        let perPiece = Swift.max(1, convolutionPieceWork / Swift.max(work, 1))
        let parts = Swift.max(1, Swift.min(Parallel.maximumPieces, n / perPiece))
        return Parallel.split(n, into: parts, grain: 1)
    }

    /// The convolution of NCHW images with PyTorch-layout kernels, and the windows it read:
    /// `out[i, o] = b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · x[i, c, oy·s − p + ky, ox·s − p + kx]`.
    ///
    /// Shapes: `x (n, cIn, h, w)`, `w (cOut, cIn, kh, kw)`, `bias (cOut)` give
    /// `out (n, cOut, oh, ow)` and `cols = x.unfold(...)` `(n·oh·ow, cIn·kh·kw)`, which the
    /// backward reads. Not recorded by autograd (the caller composes `unfold` and `•` for that).
    /// - Precondition: the shapes fit as above (the layer checks them first, naming both).
    package static func conv2d(
        _ x: Tensor, weights w: Tensor, bias: Tensor?, stride: Int, padding: Int
    ) -> (out: Tensor, cols: Tensor) {
        let (cOut, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let g = WindowGeometry(
            imageShape: x.shape, kernel: (kh, kw), stride: (stride, stride), padding: (padding, padding),
            operation: "conv2d")
        precondition(w.shape[1] == g.c, "conv2d: weights of shape \(w.shape) do not fit images of shape \(x.shape)")
        let (l, k) = (g.oh * g.ow, g.columns)
        let cols = Tensor(uninitializedShape: [g.rows, k])
        let out = Tensor(uninitializedShape: [g.n, cOut, g.oh, g.ow])
        let (source, weights, biasValues) = (x.contiguous(), w.contiguous(), bias?.contiguous())
        guard g.n * l > 0 else { return (out, cols) }
        let pieces = imagePieces(g.n, work: l * k * cOut)
        prepareSerialGemm()
        withExtendedLifetime((source, weights, biasValues)) {
            let (colsPointer, outPointer) = (cols.pointer, out.pointer)
            let wOperand = MatrixOperand(
                pointer: UnsafePointer(weights.pointer), rows: cOut, columns: k, leading: k, transposed: false)
            withUnsafePointer(to: g.window) { window in
                Parallel.forEachPiece(pieces.count) { piece in
                    let images = pieces[piece]
                    let m = images.count
                    bp_im2col(source.pointer, colsPointer, window, images.lowerBound * g.oh, images.upperBound * g.oh)
                    let c = threadScratch(cOut * m * l)  // (cOut, m·L)
                    // colsᵀ of the piece: element (p, j) of the (K, m·L) matrix is cols[piece's row j, p].
                    let windows = MatrixOperand(
                        pointer: UnsafePointer(colsPointer + images.lowerBound * l * k), rows: k, columns: m * l,
                        leading: k, transposed: true)
                    serialGemm(wOperand, windows, into: c, accumulate: false)
                    for (i, image) in images.enumerated() {
                        for channel in 0..<cOut {
                            let run = UnsafePointer(c + channel * m * l + i * l)
                            let target = outPointer + (image * cOut + channel) * l
                            let shift = biasValues.map { $0.pointer[channel] } ?? 0
                            for index in 0..<l { target[index] = run[index] + shift }
                        }
                    }
                }
            }
        }
        return (out, cols)
    }

    /// The gradients of ``conv2d(_:weights:bias:stride:padding:)`` from the gradient of its
    /// output: `w.g = Σᵢ out.gᵢ • colsᵢ`, `b.g = Σ_{i, l} out.g[i, :, l]`, and (when
    /// `inputGradient`) `inp.g = fold(Wᵀ • out.gᵢ)` for each image `i`.
    ///
    /// Shapes: `gOut (n, cOut, oh, ow)`, `cols (n·oh·ow, cIn·kh·kw)` from the forward, `w (cOut,
    /// cIn, kh, kw)`, `inputShape = [n, cIn, h, w]`. Not recorded by autograd.
    /// - Precondition: the shapes fit as above.
    package static func conv2dBackward(
        _ gOut: Tensor, cols: Tensor, weights w: Tensor, inputShape: [Int], stride: Int, padding: Int,
        bias: Bool, inputGradient: Bool
    ) -> (w: Tensor, b: Tensor?, inp: Tensor?) {
        let (cOut, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let g = WindowGeometry(
            imageShape: inputShape, kernel: (kh, kw), stride: (stride, stride), padding: (padding, padding),
            operation: "conv2d backward")
        let (n, l, k) = (g.n, g.oh * g.ow, g.columns)
        precondition(
            gOut.shape == [n, cOut, g.oh, g.ow] && cols.shape == [g.rows, k] && w.shape[1] == g.c,
            "conv2d backward: gradient of shape \(gOut.shape) and windows of shape \(cols.shape) do not fit "
                + "weights \(w.shape) over images of shape \(inputShape)")
        let wGrad = Tensor(uninitializedShape: w.shape)
        let bGrad = bias ? Tensor(uninitializedShape: [cOut]) : nil
        let inpGrad = inputGradient ? Tensor(uninitializedShape: inputShape) : nil
        let (gradient, weights, windows) = (gOut.contiguous(), w.contiguous(), cols.contiguous())
        if n * l == 0 {
            wGrad.pointer.update(repeating: 0, count: wGrad.count)
            bGrad?.pointer.update(repeating: 0, count: cOut)
            inpGrad?.pointer.update(repeating: 0, count: inpGrad!.count)
            return (wGrad, bGrad, inpGrad)
        }
        let pieces = imagePieces(n, work: l * k * cOut)
        prepareSerialGemm()
        // Each piece's own w.g (cOut · K) and b.g (cOut).
        let stridePerPiece = cOut * k + cOut
        let scratch = UnsafeMutablePointer<Float>.allocateScratch(
            capacity: pieces.count * stridePerPiece, for: "a convolution's gradient scratch memory")
        defer { scratch.deallocate() }
        var oneImage = g.window
        oneImage.n = 1
        withExtendedLifetime((gradient, weights, windows)) {
            let wOperand = MatrixOperand(
                pointer: UnsafePointer(weights.pointer), rows: cOut, columns: k, leading: k, transposed: false)
            let inpPointer = inpGrad?.pointer
            let imageSize = g.c * g.h * g.w
            withUnsafePointer(to: oneImage) { window in
                Parallel.forEachPiece(pieces.count) { piece in
                    let images = pieces[piece]
                    let m = images.count
                    let partialW = scratch + piece * stridePerPiece
                    let partialB = partialW + cOut * k
                    // G (cOut, m·L): the piece's out.g, channel by channel; then the window gradients.
                    let gathered = threadScratch(cOut * m * l + (inputGradient ? m * l * k : 0))
                    for (i, image) in images.enumerated() {
                        for channel in 0..<cOut {
                            (gathered + channel * m * l + i * l).update(
                                from: gradient.pointer + (image * cOut + channel) * l, count: l)
                        }
                    }
                    let gOperand = MatrixOperand(
                        pointer: UnsafePointer(gathered), rows: cOut, columns: m * l, leading: m * l, transposed: false)
                    let colsOperand = MatrixOperand(
                        pointer: UnsafePointer(windows.pointer + images.lowerBound * l * k), rows: m * l, columns: k,
                        leading: k, transposed: false)
                    serialGemm(gOperand, colsOperand, into: partialW, accumulate: false)
                    if bias {
                        for channel in 0..<cOut { partialB[channel] = rowSum(gathered + channel * m * l, count: m * l) }
                    }
                    if let inpPointer {
                        // Wᵀ • G, the window gradients as (K, m·L): each row (c, ky, kx) holds image i's
                        // values in columns i·L ..< (i+1)·L (element (p, o) of Wᵀ is W[o, p]).
                        let windowGradients = gathered + cOut * m * l  // (K, m·L)
                        let wTransposed = MatrixOperand(
                            pointer: UnsafePointer(weights.pointer), rows: k, columns: cOut, leading: k,
                            transposed: true)
                        serialGemm(wTransposed, gOperand, into: windowGradients, accumulate: false)
                        for (i, image) in images.enumerated() {
                            bp_col2im_planar(windowGradients + i * l, m * l, inpPointer + image * imageSize, window)
                        }
                    }
                }
            }
        }
        // The pieces' sums, added in order.
        wGrad.pointer.update(from: scratch, count: cOut * k)
        bGrad?.pointer.update(from: scratch + cOut * k, count: cOut)
        for piece in 1..<pieces.count {
            let partialW = scratch + piece * stridePerPiece
            for index in 0..<(cOut * k) { wGrad.pointer[index] += partialW[index] }
            if let bGrad {
                for channel in 0..<cOut { bGrad.pointer[channel] += partialW[cOut * k + channel] }
            }
        }
        return (wGrad, bGrad, inpGrad)
    }

    /// `Σ values[0..<count]`, eight lanes at a time (a plain loop of `+=` would not be vectorised:
    /// it fixes the order of the sums).
    private static func rowSum(_ values: UnsafePointer<Float>, count: Int) -> Float {
        var lanes = SIMD8<Float>()
        var index = 0
        while index + 8 <= count {
            lanes += UnsafeRawPointer(values + index).loadUnaligned(as: SIMD8<Float>.self)
            index += 8
        }
        var total = lanes.sum()
        while index < count {
            total += values[index]
            index += 1
        }
        return total
    }

    /// This thread's scratch buffer of at least `count` floats (`bp_thread_scratch`), valid until
    /// the thread's next call; ends the process through ``allocationFailed(_:)`` without memory.
    private static func threadScratch(_ count: Int) -> UnsafeMutablePointer<Float> {
        guard let buffer = bp_thread_scratch(count) else {
            allocationFailed(
                "\(Storage.describe(bytes: count * MemoryLayout<Float>.stride)) of scratch memory for a convolution "
                    + "(the system refused it: a memory limit such as ulimit -v, or the machine's memory)")
        }
        return buffer
    }

    /// Readies ``serialGemm(_:_:into:accumulate:)`` for calls from several threads at once (maps
    /// OpenBLAS's work buffers, or ends the process saying that memory ran out).
    static func prepareSerialGemm() {
        #if canImport(Accelerate) || OpenBLAS
            reserveBLASBuffers()
        #endif
    }

    /// `c = a • b` or `c += a • b` (`c` row-major, `b.columns` wide) on the calling thread: one
    /// `cblas_sgemm`, or the blocked Swift kernel in a build without BLAS. Call
    /// ``prepareSerialGemm()`` first.
    static func serialGemm(
        _ a: MatrixOperand, _ b: MatrixOperand, into c: UnsafeMutablePointer<Float>, accumulate: Bool
    ) {
        if a.rows == 0 || b.columns == 0 { return }
        if a.columns == 0 {
            if !accumulate { c.update(repeating: 0, count: a.rows * b.columns) }
            return
        }
        #if canImport(Accelerate) || OpenBLAS
            blasBlock(a, b, into: c, rows: 0..<a.rows, columns: 0..<b.columns, ldc: b.columns, accumulate: accumulate)
        #else
            blockedGemm(a, b, into: c, accumulate: accumulate)
        #endif
    }
}
