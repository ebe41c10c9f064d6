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
    ///
    /// Without `cols` (after ``conv2dDirect(_:weights:bias:padding:)``), each piece of the batch
    /// unfolds its own windows from `input` into the thread's scratch memory, just before the
    /// products read them: the whole batch's `cols` is never made.
    /// - Precondition: the shapes fit as above, and `cols` or `input` is given.
    package static func conv2dBackward(
        _ gOut: Tensor, cols: Tensor?, input: Tensor? = nil, weights w: Tensor, inputShape: [Int], stride: Int,
        padding: Int, bias: Bool, inputGradient: Bool
    ) -> (w: Tensor, b: Tensor?, inp: Tensor?) {
        let (cOut, kh, kw) = (w.shape[0], w.shape[2], w.shape[3])
        let g = WindowGeometry(
            imageShape: inputShape, kernel: (kh, kw), stride: (stride, stride), padding: (padding, padding),
            operation: "conv2d backward")
        let (n, l, k) = (g.n, g.oh * g.ow, g.columns)
        precondition(cols != nil || input != nil, "conv2d backward: neither the windows nor the input given")
        precondition(
            gOut.shape == [n, cOut, g.oh, g.ow] && (cols?.shape ?? [g.rows, k]) == [g.rows, k]
                && (input?.shape ?? inputShape) == inputShape && w.shape[1] == g.c,
            "conv2d backward: gradient of shape \(gOut.shape) and windows of shape \(cols?.shape ?? inputShape) "
                + "do not fit weights \(w.shape) over images of shape \(inputShape)")
        let wGrad = Tensor(uninitializedShape: w.shape)
        let bGrad = bias ? Tensor(uninitializedShape: [cOut]) : nil
        let inpGrad = inputGradient ? Tensor(uninitializedShape: inputShape) : nil
        let (gradient, weights, windows, source) = (
            gOut.contiguous(), w.contiguous(), cols?.contiguous(), input?.contiguous()
        )
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
        withExtendedLifetime((gradient, weights, windows, source)) {
            let inpPointer = inpGrad?.pointer
            let imageSize = g.c * g.h * g.w
            withUnsafePointer(to: oneImage) { window in
                Parallel.forEachPiece(pieces.count) { piece in
                    let images = pieces[piece]
                    let m = images.count
                    let partialW = scratch + piece * stridePerPiece
                    let partialB = partialW + cOut * k
                    // The piece's windows (m·L, K), unfolded here if the forward kept none; G (cOut, m·L),
                    // the piece's out.g, channel by channel; then the window gradients.
                    let unfolded = windows == nil ? m * l * k : 0
                    let buffer = threadScratch(unfolded + cOut * m * l + (inputGradient ? m * l * k : 0))
                    let pieceCols: UnsafePointer<Float>
                    if let windows {
                        pieceCols = UnsafePointer(windows.pointer + images.lowerBound * l * k)
                    } else {
                        var pieceWindow = g.window
                        pieceWindow.n = m
                        withUnsafePointer(to: pieceWindow) { pieceWindow in
                            bp_im2col(source!.pointer + images.lowerBound * imageSize, buffer, pieceWindow, 0, m * g.oh)
                        }
                        pieceCols = UnsafePointer(buffer)
                    }
                    let gathered = buffer + unfolded
                    for (i, image) in images.enumerated() {
                        for channel in 0..<cOut {
                            (gathered + channel * m * l + i * l).update(
                                from: gradient.pointer + (image * cOut + channel) * l, count: l)
                        }
                    }
                    let gOperand = MatrixOperand(
                        pointer: UnsafePointer(gathered), rows: cOut, columns: m * l, leading: m * l, transposed: false)
                    let colsOperand = MatrixOperand(
                        pointer: pieceCols, rows: m * l, columns: k,
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

    // MARK: - Direct convolution

    /// Whether ``conv2dDirect(_:weights:bias:padding:)`` computes this convolution: stride 1 and a
    /// CPU that runs its AVX2 kernels (Sources/CKernels/DirectConv.c).
    package static func conv2dDirectFits(imageShape: [Int], weights w: Tensor, stride: Int, padding: Int) -> Bool {
        guard stride == 1, w.rank == 4 else { return false }
        return directKernelRuns(
            imageShape: imageShape, channels: w.shape[1], kernel: (w.shape[2], w.shape[3]), padding: padding)
    }

    /// Whether the direct kernel runs for images of `imageShape` and a kernel over `channels`
    /// channels at stride 1 (`bp_conv_direct_available`).
    private static func directKernelRuns(imageShape: [Int], channels: Int, kernel: (Int, Int), padding: Int) -> Bool {
        guard imageShape.count == 4, imageShape[1] == channels else { return false }
        let g = WindowGeometry(
            imageShape: imageShape, kernel: kernel, stride: (1, 1), padding: (padding, padding), operation: "conv2d")
        return withUnsafePointer(to: g.window) { bp_conv_direct_available($0) } != 0
    }

    /// Whether ``conv2dDirectBackward(_:input:weights:padding:bias:)`` computes this convolution's
    /// weight gradient: wherever the direct forward runs. From the images directly it is faster than
    /// the matrix product over unfolded windows for shallow windows and deep ones alike: a first
    /// layer's 3 × 3 windows over one channel are 9 values deep, too shallow for a product's
    /// packing to pay; the second layer's 144 (16 channels, 14 × 14, batch 128) took 11-12 ms as
    /// `im2col` and BLAS, 13 ms in the earlier direct kernel (rows of 14 in a partial vector each),
    /// and 4.3 ms in this one (whole vectors over flat planes) on Zen 1; by output channels, 9%
    /// less again (Benchmarks/conv_tiles.sh).
    package static func conv2dDirectGradientFits(imageShape: [Int], weights w: Tensor, padding: Int) -> Bool {
        conv2dDirectFits(imageShape: imageShape, weights: w, stride: 1, padding: padding)
    }

    /// The same convolution as ``conv2d(_:weights:bias:stride:padding:)`` at stride 1, computed
    /// from the images directly (no `cols`): each output is one fused multiply-add chain over its
    /// window in the order `(c, ky, kx)`, then `+ b[o]`.
    ///
    /// Shapes: `x (n, cIn, h, w)`, `w (cOut, cIn, kh, kw)`, `bias (cOut)` give `out (n, cOut, oh, ow)`.
    /// Not recorded by autograd.
    /// - Precondition: ``conv2dDirectFits(imageShape:weights:stride:padding:)`` is true.
    package static func conv2dDirect(_ x: Tensor, weights w: Tensor, bias: Tensor?, padding: Int) -> Tensor {
        conv2dDirect(x, weights: w, bias: bias, padding: padding, tiles: .fastest)
    }

    /// Which layout of the direct kernel computes a forward pass (the same bits from each) or a
    /// weight gradient (two orders of the same sums).
    package enum DirectTiles: Int32, Sendable, CaseIterable {
        /// The layout chosen by the shapes (a forward pass's rows in AVX-512 where the processor
        /// has it).
        case fastest = 0
        /// Sixteen outputs of one row in a tile; the weight gradient's flat planes of rows. AVX2.
        case rows = 1
        /// Eight output channels of a pixel in a vector. AVX2.
        case channels = 2
    }

    /// ``conv2dDirect(_:weights:bias:padding:)`` with the tiles chosen (the tests take each).
    package static func conv2dDirect(
        _ x: Tensor, weights w: Tensor, bias: Tensor?, padding: Int, tiles: DirectTiles
    ) -> Tensor {
        precondition(
            conv2dDirectFits(imageShape: x.shape, weights: w, stride: 1, padding: padding),
            "conv2dDirect: images of shape \(x.shape) and weights \(w.shape) are not for the direct kernel")
        let cOut = w.shape[0]
        let g = WindowGeometry(
            imageShape: x.shape, kernel: (w.shape[2], w.shape[3]), stride: (1, 1), padding: (padding, padding),
            operation: "conv2d")
        let out = Tensor(uninitializedShape: [g.n, cOut, g.oh, g.ow])
        let (source, weights, biasValues) = (x.contiguous(), w.contiguous(), bias?.contiguous())
        let perImage = Swift.max(g.oh * g.ow * g.columns * cOut, 1)
        withExtendedLifetime((source, weights, biasValues)) {
            let outPointer = out.pointer
            withUnsafePointer(to: g.window) { window in
                Parallel.forEachRange(g.n, minimumPerPiece: Swift.max(1, convolutionPieceWork / perImage)) { images in
                    let done = bp_conv_direct_forward(
                        source.pointer, weights.pointer, biasValues?.pointer, outPointer, window, cOut,
                        images.lowerBound, images.upperBound, tiles.rawValue)
                    if done == 0 { directScratchFailed(g, forwardChannels: cOut) }
                }
            }
        }
        return out
    }

    /// The gradients of ``conv2dDirect(_:weights:bias:padding:)``'s weights and bias from the
    /// gradient of its output: `w.g[o, c, ky, kx] = Σ_{i, y, x} out.g[i, o, y, x] · x[i, c, y − p + ky,
    /// x − p + kx]`, `b.g[o] = Σ_{i, y, x} out.g[i, o, y, x]`, from the padded images (no `cols`):
    /// in flat planes of rows (four output channels and three window columns a tile, each lane
    /// taking every eighth column), or, where a plane's rows are narrow, eight output channels a
    /// vector (one chain per weight); the shapes alone choose, except that images holding an
    /// infinity or NaN take the channels: the flat planes multiply the zeros past each row's `ow`
    /// by image values (their sums cancel), and `0 · ∞` would make a finite weight's gradient NaN.
    /// `inp.g` is ``conv2dDirectInputGradient(_:weights:padding:)``'s.
    ///
    /// The batch is split into pieces that depend on its size alone; each piece sums its own
    /// `w.g` and `b.g`, and the pieces are added in order: the same result on any number of
    /// threads. Shapes: `gOut (n, cOut, oh, ow)`, `x (n, cIn, h, w)`, `w (cOut, cIn, kh, kw)`.
    /// - Precondition: ``conv2dDirectGradientFits(imageShape:weights:padding:)`` is true and the
    ///   shapes fit as above.
    package static func conv2dDirectBackward(
        _ gOut: Tensor, input x: Tensor, weights w: Tensor, padding: Int, bias: Bool
    ) -> (w: Tensor, b: Tensor?) {
        conv2dDirectBackward(gOut, input: x, weights: w, padding: padding, bias: bias, tiles: .fastest)
    }

    /// ``conv2dDirectBackward(_:input:weights:padding:bias:)`` with the layout chosen (the tests
    /// take each): `.rows` the flat planes, `.channels` eight output channels a vector.
    package static func conv2dDirectBackward(
        _ gOut: Tensor, input x: Tensor, weights w: Tensor, padding: Int, bias: Bool, tiles: DirectTiles
    ) -> (w: Tensor, b: Tensor?) {
        precondition(
            conv2dDirectGradientFits(imageShape: x.shape, weights: w, padding: padding),
            "conv2dDirect backward: images of shape \(x.shape) and weights \(w.shape) are not for the direct kernel")
        let cOut = w.shape[0]
        let g = WindowGeometry(
            imageShape: x.shape, kernel: (w.shape[2], w.shape[3]), stride: (1, 1), padding: (padding, padding),
            operation: "conv2d backward")
        precondition(
            gOut.shape == [g.n, cOut, g.oh, g.ow],
            "conv2dDirect backward: gradient of shape \(gOut.shape) does not fit weights \(w.shape) over images "
                + "of shape \(x.shape) (expected [\(g.n), \(cOut), \(g.oh), \(g.ow)])")
        let k = g.columns
        if g.n == 0 { return (Tensor.zeros(w.shape), bias ? Tensor.zeros([cOut]) : nil) }  // sums of nothing
        let wGrad = Tensor(uninitializedShape: w.shape)
        let bGrad = bias ? Tensor(uninitializedShape: [cOut]) : nil
        let pieces = imagePieces(g.n, work: g.oh * g.ow * k * cOut)
        let stridePerPiece = cOut * k + cOut
        let scratch = UnsafeMutablePointer<Float>.allocateScratch(
            capacity: pieces.count * stridePerPiece, for: "a convolution's gradient scratch memory")
        defer { scratch.deallocate() }
        scratch.update(repeating: 0, count: pieces.count * stridePerPiece)
        let (source, gradient) = (x.contiguous(), gOut.contiguous())
        let layout = tiles == .fastest && !source.isAllFinite ? DirectTiles.channels : tiles
        withExtendedLifetime((source, gradient)) {
            withUnsafePointer(to: g.window) { window in
                Parallel.forEachPiece(pieces.count) { piece in
                    let images = pieces[piece]
                    let partialW = scratch + piece * stridePerPiece
                    let done = bp_conv_direct_weight_gradient(
                        source.pointer, gradient.pointer, partialW, bias ? partialW + cOut * k : nil, window, cOut,
                        images.lowerBound, images.upperBound, layout.rawValue)
                    if done == 0 { directScratchFailed(g, gradientImages: images.count, gradientChannels: cOut) }
                }
            }
        }
        // The pieces' sums, added in order.
        wGrad.pointer.update(from: scratch, count: cOut * k)
        bGrad?.pointer.update(from: scratch + cOut * k, count: cOut)
        for piece in pieces.indices.dropFirst() {
            let partialW = scratch + piece * stridePerPiece
            for index in 0..<(cOut * k) { wGrad.pointer[index] += partialW[index] }
            if let bGrad {
                for channel in 0..<cOut { bGrad.pointer[channel] += partialW[cOut * k + channel] }
            }
        }
        return (wGrad, bGrad)
    }

    /// The input gradient of a stride-1 convolution as a direct convolution of the output's
    /// gradient (a "transposed convolution"): `inp.g[i, c, y, x] = Σ_{o, ky, kx} w[o, c, ky, kx] ·
    /// out.g[i, o, y + p − ky, x + p − kx]`, that is `out.g` padded by `k − 1 − p` and convolved
    /// with the kernels flipped and their channels swapped, `w'[c, o, ky, kx] = w[o, c, k − 1 − ky,
    /// k − 1 − kx]`. No window gradients, no fold.
    ///
    /// Shapes: `gOut (n, cOut, oh, ow)`, `w (cOut, cIn, k, k)` give `inp.g (n, cIn, oh + k − 1 − 2p,
    /// ow + k − 1 − 2p)`, the input's shape at stride 1.
    /// - Precondition: ``conv2dDirectInputGradientFits(outputShape:weights:padding:)`` is true.
    package static func conv2dDirectInputGradient(_ gOut: Tensor, weights w: Tensor, padding: Int) -> Tensor {
        precondition(
            conv2dDirectInputGradientFits(outputShape: gOut.shape, weights: w, padding: padding),
            "conv2dDirect input gradient: gradient of shape \(gOut.shape) and weights \(w.shape) with padding "
                + "\(padding) are not for the direct kernel")
        let (cOut, cIn, k) = (w.shape[0], w.shape[1], w.shape[2])
        let flipped = Tensor(uninitializedShape: [cIn, cOut, k, k])  // w'[c, o, ky, kx]
        let weights = w.contiguous()
        withExtendedLifetime(weights) {
            for c in 0..<cIn {
                for o in 0..<cOut {
                    for ky in 0..<k {
                        for kx in 0..<k {
                            flipped.pointer[((c * cOut + o) * k + ky) * k + kx] =
                                weights.pointer[((o * cIn + c) * k + (k - 1 - ky)) * k + (k - 1 - kx)]
                        }
                    }
                }
            }
        }
        return conv2dDirect(gOut, weights: flipped, bias: nil, padding: k - 1 - padding)
    }

    /// Whether ``conv2dDirectInputGradient(_:weights:padding:)`` computes this input gradient:
    /// square kernels, `padding < k`, and the direct kernel runs here.
    package static func conv2dDirectInputGradientFits(outputShape: [Int], weights w: Tensor, padding: Int) -> Bool {
        guard w.rank == 4, outputShape.count == 4, w.shape[2] == w.shape[3], padding < w.shape[2],
            outputShape[1] == w.shape[0]
        else { return false }
        // The flipped kernels run over out.g's cOut channels.
        return directKernelRuns(
            imageShape: outputShape, channels: w.shape[0], kernel: (w.shape[2], w.shape[3]),
            padding: w.shape[2] - 1 - padding)
    }

    /// Ends the process: the direct convolution's scratch (the forward pass's padded image, packed
    /// weights and outputs into `forwardChannels` channels; or the weight gradient's padded images
    /// and output gradients) did not fit in memory.
    private static func directScratchFailed(
        _ g: WindowGeometry, forwardChannels: Int = 0, gradientImages: Int = 0, gradientChannels: Int? = nil
    ) -> Never {
        let floats = withUnsafePointer(to: g.window) { window in
            if let cOut = gradientChannels { return Int(bp_conv_direct_gradient_scratch(window, cOut, gradientImages)) }
            return Int(bp_conv_direct_scratch(window, forwardChannels))
        }
        outOfMemory(bytes: floats * MemoryLayout<Float>.stride, for: "the scratch memory of a convolution")
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
    /// the thread's next call; ends the process through ``outOfMemory(bytes:for:)`` without memory.
    private static func threadScratch(_ count: Int) -> UnsafeMutablePointer<Float> {
        guard let buffer = bp_thread_scratch(count) else {
            outOfMemory(bytes: count * MemoryLayout<Float>.stride, for: "the scratch memory of a convolution")
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
