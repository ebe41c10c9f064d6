#if canImport(Accelerate)
    import Accelerate
#elseif OpenBLAS
    import CBLAS
#endif
import CKernels

// The convolution's fast path, image by image: `Conv2d`'s forward and backward when autograd does
// not record (the recorded composition, `unfold` then `•`, is in the layer).
//
// The batched form `cols • Wᵀ` gives one row per window, `(n, oh, ow, cOut)`, which then has to be
// copied to NCHW; and its backward needs `out.g` copied back to rows. Taken image by image, the
// product `W • colsᵢᵀ` (`(cOut, K) • (K, L)`, `K = cIn·kh·kw`, `L = oh·ow`) is image i's output
// in NCHW already, and each backward product reads `out.g` where it lies:
//
//   forward,  for each image i:   outᵢ = W • colsᵢᵀ + b                       (cOut, L)
//   backward, for each image i:   w.g += out.gᵢ • colsᵢ                       (cOut, K)
//                                 b.g += Σ_l out.gᵢ[:, l]                      (cOut)
//                                 inp.gᵢ = fold(out.gᵢᵀ • W)                  (cIn, h, w)
//
// Images are split over the cores in pieces that depend on the batch alone; each piece sums its
// own `w.g` and `b.g`, and the pieces' sums are added in order, so the result is the same on any
// number of threads. Each product is one BLAS call on one thread (the pieces are the
// parallelism), or the blocked Swift kernel in a build without BLAS.

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
                    bp_im2col(source.pointer, colsPointer, window, images.lowerBound * g.oh, images.upperBound * g.oh)
                    for image in images {
                        let c = outPointer + image * cOut * l
                        if let biasValues {
                            for channel in 0..<cOut {
                                (c + channel * l).update(repeating: biasValues[channel], count: l)
                            }
                        }
                        // colsᵢᵀ: element (p, j) of the (K, L) matrix is colsᵢ[j, p].
                        let windows = MatrixOperand(
                            pointer: UnsafePointer(colsPointer + image * l * k), rows: k, columns: l, leading: k,
                            transposed: true)
                        serialGemm(wOperand, windows, into: c, accumulate: biasValues != nil)
                    }
                }
            }
        }
        return (out, cols)
    }

    /// The gradients of ``conv2d(_:weights:bias:stride:padding:)`` from the gradient of its
    /// output: `w.g = Σᵢ out.gᵢ • colsᵢ`, `b.g = Σ_{i, l} out.g[i, :, l]`, and (when
    /// `inputGradient`) `inp.g = fold(out.gᵢᵀ • W)` image by image.
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
        // Each piece's own w.g (cOut · K) and b.g (cOut), then its window gradients (L · K).
        let stridePerPiece = cOut * k + cOut + (inputGradient ? l * k : 0)
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
                    let partialW = scratch + piece * stridePerPiece
                    let partialB = partialW + cOut * k
                    let windowGradients = partialB + cOut
                    partialB.update(repeating: 0, count: cOut)
                    for image in pieces[piece] {
                        let gImage = UnsafePointer(gradient.pointer + image * cOut * l)
                        let gOperand = MatrixOperand(
                            pointer: gImage, rows: cOut, columns: l, leading: l, transposed: false)
                        let colsOperand = MatrixOperand(
                            pointer: UnsafePointer(windows.pointer + image * l * k), rows: l, columns: k, leading: k,
                            transposed: false)
                        serialGemm(gOperand, colsOperand, into: partialW, accumulate: image != pieces[piece].lowerBound)
                        if bias {
                            for channel in 0..<cOut { partialB[channel] += rowSum(gImage + channel * l, count: l) }
                        }
                        if let inpPointer {
                            // out.gᵢᵀ: element (j, o) of the (L, cOut) matrix is out.gᵢ[o, j].
                            let gTransposed = MatrixOperand(
                                pointer: gImage, rows: l, columns: cOut, leading: l, transposed: true)
                            serialGemm(gTransposed, wOperand, into: windowGradients, accumulate: false)
                            bp_col2im(windowGradients, inpPointer + image * imageSize, window, 0, 1)
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
