import CKernels

// Sliding windows over images: unfold (im2col) and its adjoint fold (col2im), in NCHW.
//
// A convolution is a matrix product once every window of the image is laid out as a row:
// `conv(x, w) = unfold(x) • wᵀ`, with `w` viewed as `[cOut, cIn * kh * kw]`. Pooling is a
// reduction along the rows of the same matrix. Fold sends each row back to the window it came
// from, summing where windows overlap: it is unfold's transpose, so each is the other's derivative.
//
// Dimension letters: n images, c channels, h, w height and width, kh, kw the kernel, sh, sw the
// stride, ph, pw the padding, oh, ow the output's height and width.

/// Where the windows of an unfold sit on a batch of images: the image shape with the kernel,
/// stride and padding, and the output size they give.
struct WindowGeometry {
    let n: Int, c: Int, h: Int, w: Int
    let kh: Int, kw: Int
    let sh: Int, sw: Int
    let ph: Int, pw: Int
    /// The windows down and across: `oh = (h + 2 ph - kh) / sh + 1`, `ow` likewise.
    let oh: Int, ow: Int

    /// The geometry of `kernel` windows over `[n, c, h, w]` images, checked.
    /// - Precondition: `imageShape` has four sizes, the kernel and stride are positive, the
    ///   padding is not negative and a window fits in the padded image; otherwise stops naming
    ///   `operation` and the shapes.
    init(
        imageShape: [Int], kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), operation: String
    ) {
        precondition(
            imageShape.count == 4, "\(operation): expects images of shape [n, c, h, w], got shape \(imageShape)")
        precondition(
            kernel.0 > 0 && kernel.1 > 0 && stride.0 > 0 && stride.1 > 0 && padding.0 >= 0 && padding.1 >= 0,
            "\(operation): kernel \(kernel) and stride \(stride) must be positive and padding \(padding) not negative")
        (n, c, h, w) = (imageShape[0], imageShape[1], imageShape[2], imageShape[3])
        (kh, kw) = kernel
        (sh, sw) = stride
        (ph, pw) = padding
        precondition(
            h + 2 * ph >= kh && w + 2 * pw >= kw,
            "\(operation): kernel \(kernel) does not fit images of shape \(imageShape) padded by \(padding)")
        oh = (h + 2 * ph - kh) / sh + 1
        ow = (w + 2 * pw - kw) / sw + 1
    }

    /// Stops, naming `operation`, unless a window's `c · kh · kw` elements can be counted: a row of
    /// the unfolded matrix (a pool's padding lets a kernel of 3·10⁹ fit a 4×4 image, whose row
    /// would be 9.2·10¹⁸ wide). The pools' fast kernels never form the row and need no check.
    func checkWindowIsCountable(operation: String) {
        let window = kh.multipliedReportingOverflow(by: kw)
        precondition(
            !window.overflow && !c.multipliedReportingOverflow(by: window.partialValue).overflow,
            "\(operation): a window of \(c) × \(kh) × \(kw) elements is more than can be counted")
    }

    /// The rows of the unfolded matrix: one per window, `(img, oy, ox)` row-major.
    var rows: Int { n * oh * ow }
    /// The columns of the unfolded matrix: one per element of a window, `(ch, ky, kx)` row-major.
    var columns: Int { c * kh * kw }

    /// Calls `body` for every element of every window that lies inside the image (not on the
    /// padding), with its index in the unfolded matrix, `row * columns + column`, and in the
    /// `[n, c, h, w]` images: the plain loops of the definition, for the reference kernels.
    func forEachWindowElement(_ body: (_ unfoldedIndex: Int, _ imageIndex: Int) -> Void) {
        for img in 0..<n {
            for oy in 0..<oh {
                for ox in 0..<ow {
                    let row = (img * oh + oy) * ow + ox
                    for ch in 0..<c {
                        for ky in 0..<kh {
                            for kx in 0..<kw {
                                let column = (ch * kh + ky) * kw + kx
                                let iy = oy * sh - ph + ky
                                let ix = ox * sw - pw + kx
                                guard iy >= 0 && iy < h && ix >= 0 && ix < w else { continue }
                                body(row * columns + column, ((img * c + ch) * h + iy) * w + ix)
                            }
                        }
                    }
                }
            }
        }
    }
}

extension Tensor {
    /// Every `kh × kw` window of a batch of images as a row of a matrix (im2col; PyTorch's
    /// `F.unfold(x, kernel, stride=, padding=)` transposed to rows).
    ///
    /// `[n, c, h, w] → [n * oh * ow, c * kh * kw]`, with `oh = (h + 2 ph - kh) / sh + 1` and `ow`
    /// likewise. Row `(img, oy, ox)` (row-major) holds the window whose top-left corner is at
    /// `(oy * sh - ph, ox * sw - pw)`; column `(ch, ky, kx)` (row-major, the order of PyTorch's
    /// convolution weights `[cOut, c, kh, kw]`) holds `x[img, ch, oy * sh - ph + ky, ox * sw - pw + kx]`,
    /// or 0 where the window hangs over the padding.
    ///
    /// Autograd's derivative is ``fold(imageShape:kernel:stride:padding:)``.
    /// - Precondition: the tensor has rank 4, the kernel and stride are positive, the padding is
    ///   not negative, and a window fits in the padded image; otherwise stops naming the shape.
    public func unfold(kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)) -> Tensor {
        let geometry = WindowGeometry(
            imageShape: shape, kernel: kernel, stride: stride, padding: padding, operation: "unfold")
        geometry.checkWindowIsCountable(operation: "unfold")
        let result = Tensor(uninitializedShape: [geometry.rows, geometry.columns])
        let source = contiguous()
        withExtendedLifetime(source) {
            Tensor.unfold(UnsafePointer(source.pointer), into: result.pointer, geometry)
        }
        return result.recorded(.unfold(kernel: kernel, stride: stride, padding: padding), self)
    }

    /// The adjoint of ``unfold(kernel:stride:padding:)`` (col2im; PyTorch's `F.fold`): each row
    /// goes back to the window it was taken from, and elements that several windows share get the
    /// sum of their values.
    ///
    /// `[n * oh * ow, c * kh * kw] → imageShape = [n, c, h, w]`: `y[img, ch, iy, ix]` is the sum
    /// of `self[(img, oy, ox), (ch, ky, kx)]` over every window position with
    /// `oy * sh - ph + ky = iy` and `ox * sw - pw + kx = ix`; the padding's entries are dropped.
    /// So `⟨unfold(x), y⟩ = ⟨x, fold(y)⟩` for all `x` and `y`.
    ///
    /// Autograd's derivative is ``unfold(kernel:stride:padding:)``.
    /// - Precondition: the geometry is valid (as for `unfold`) and this tensor's shape is
    ///   `[n * oh * ow, c * kh * kw]` for it; otherwise stops naming both shapes.
    public func fold(
        imageShape: [Int], kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)
    ) -> Tensor {
        let geometry = WindowGeometry(
            imageShape: imageShape, kernel: kernel, stride: stride, padding: padding, operation: "fold")
        geometry.checkWindowIsCountable(operation: "fold")
        precondition(
            shape == [geometry.rows, geometry.columns],
            "fold: input of shape \(shape) does not match images of shape \(imageShape) with kernel \(kernel), "
                + "stride \(stride), padding \(padding) (expected [\(geometry.rows), \(geometry.columns)])")
        let result = Tensor(uninitializedShape: imageShape)
        let source = contiguous()
        withExtendedLifetime(source) {
            Tensor.fold(UnsafePointer(source.pointer), into: result.pointer, geometry)
        }
        return result.recorded(.fold(kernel: kernel, stride: stride, padding: padding), self)
    }
}

// MARK: - The kernels

extension WindowGeometry {
    /// The geometry as the C kernels take it.
    var window: BPWindow {
        BPWindow(n: n, c: c, h: h, w: w, kh: kh, kw: kw, sh: sh, sw: sw, ph: ph, pw: pw, oh: oh, ow: ow)
    }
}

extension Tensor {
    /// Window loops of at least this many elements are split over the cores.
    static let windowPieceWork = 1 << 16

    /// The fast im2col: fills `cols` (`[n * oh * ow, c * kh * kw]`, row-major) from the images
    /// `x` (`[n, c, h, w]`, row-major) with `bp_im2col` (Sources/CKernels/Im2col.c), split over
    /// the cores by lines of windows `(img, oy)`. Memory-bound: each element of `cols` is
    /// written once, in order.
    static func unfold(_ x: UnsafePointer<Float>, into cols: UnsafeMutablePointer<Float>, _ g: WindowGeometry) {
        guard g.rows * g.columns > 0 else { return }
        let perLine = g.ow * g.columns
        withUnsafePointer(to: g.window) { window in
            Parallel.forEachRange(g.n * g.oh, minimumPerPiece: Swift.max(1, windowPieceWork / perLine)) { lines in
                bp_im2col(x, cols, window, lines.lowerBound, lines.upperBound)
            }
        }
    }

    /// The fast col2im: writes the images `y` (`[n, c, h, w]`) from `cols`
    /// (`[n * oh * ow, c * kh * kw]`) with `bp_col2im`, split over the cores by images. Each
    /// image is zeroed, then its windows' rows are added in, in order: the sums run in the same
    /// order on any number of threads.
    static func fold(_ cols: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ g: WindowGeometry) {
        guard g.n * g.c * g.h * g.w > 0 else { return }
        let perImage = Swift.max(g.oh * g.ow * g.columns, 1)
        withUnsafePointer(to: g.window) { window in
            Parallel.forEachRange(g.n, minimumPerPiece: Swift.max(1, windowPieceWork / perImage)) { images in
                bp_col2im(cols, y, window, images.lowerBound, images.upperBound)
            }
        }
    }

    /// The plain-loop im2col, element by element from the definition: the reference that tests
    /// and benchmarks check ``unfold(_:into:_:)`` against.
    package static func referenceUnfold(
        _ x: Tensor, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)
    ) -> Tensor {
        let g = WindowGeometry(
            imageShape: x.shape, kernel: kernel, stride: stride, padding: padding, operation: "unfold")
        let values = x.values
        var cols = [Float](repeating: 0, count: g.rows * g.columns)
        g.forEachWindowElement { unfolded, image in cols[unfolded] = values[image] }
        return Tensor(shape: [g.rows, g.columns], values: cols)
    }

    /// The plain-loop col2im, from the definition: the reference for ``fold(_:into:_:)``.
    package static func referenceFold(
        _ cols: Tensor, imageShape: [Int], kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int)
    ) -> Tensor {
        let g = WindowGeometry(
            imageShape: imageShape, kernel: kernel, stride: stride, padding: padding, operation: "fold")
        let values = cols.values
        var y = [Float](repeating: 0, count: imageShape.reduce(1, *))
        g.forEachWindowElement { unfolded, image in y[image] += values[unfolded] }
        return Tensor(shape: imageShape, values: y)
    }
}

// MARK: - Pooling kernels (the layers' fast paths; their recorded path is unfold, then max or mean)

extension Tensor {
    /// The windows of `kernel × kernel` pooling, `stride` apart, over the planes of `[n, c, h, w]`
    /// images padded by `padding` on every side: each plane an image of one channel.
    /// - Precondition: `padding ≤ kernel / 2` (PyTorch's rule: every window then holds an element
    ///   of the plane).
    private static func poolGeometry(
        _ shape: [Int], kernel: Int, stride: Int, padding: Int, operation: String
    ) -> WindowGeometry {
        precondition(shape.count == 4, "\(operation): expects input of shape [n, c, h, w], got shape \(shape)")
        precondition(
            padding >= 0 && padding <= kernel / 2,
            "\(operation): padding \(padding) must be between 0 and half the kernel \(kernel)")
        return WindowGeometry(
            imageShape: [shape[0] * shape[1], 1, shape[2], shape[3]], kernel: (kernel, kernel),
            stride: (stride, stride), padding: (padding, padding), operation: operation)
    }

    /// `body(window, planes)` over ranges of the planes of `g`, split over the cores when large.
    private static func forEachPlanes(
        _ g: WindowGeometry, _ body: (UnsafePointer<BPWindow>, Range<Int>) -> Void
    ) {
        withUnsafePointer(to: g.window) { window in
            Parallel.forEachRange(g.n, minimumPerPiece: Swift.max(1, windowPieceWork / Swift.max(g.h * g.w, 1))) {
                planes in
                body(window, planes)
            }
        }
    }

    /// Stops unless `gOut` is a pooling's output gradient for `inputShape`, naming both shapes.
    private static func checkPoolGradient(_ gOut: Tensor, inputShape: [Int], _ g: WindowGeometry, operation: String) {
        precondition(
            gOut.shape == [inputShape[0], inputShape[1], g.oh, g.ow],
            "\(operation): gradient of shape \(gOut.shape) does not fit input of shape \(inputShape) "
                + "(expected [\(inputShape[0]), \(inputShape[1]), \(g.oh), \(g.ow)])")
    }

    /// Max pooling's fast forward (`bp_max_pool`): for `[n, c, h, w]` input, the maximum of each
    /// `kernel × kernel` window, `stride` apart, as `[n, c, oh, ow]`; for each output, where the
    /// maximum sits in its plane (`iy * w + ix`, the first at a tie, row-major), and its offset in
    /// the window (`ky * kernel + kx`, the window's top left corner `padding` up and left of its
    /// first element), or `-1` where the maximum is tied. The padding never wins.
    package func maxPool2d(
        kernel: Int, stride: Int, padding: Int = 0
    ) -> (out: Tensor, winners: [Int32], pieces: [Int32]) {
        let g = Tensor.poolGeometry(shape, kernel: kernel, stride: stride, padding: padding, operation: "MaxPool2d")
        let out = Tensor(uninitializedShape: [shape[0], shape[1], g.oh, g.ow])
        let count = out.count
        let source = contiguous()
        // The two index arrays grow with the batch, so their memory is asked for first (a memory
        // limit then ends the run with one line, not Swift's trap). They start uninitialised:
        // `bp_max_pool` writes every output's winner and piece (zeroing them first cost as much
        // as a fifth of the pooling).
        Tensor.checkAllocatable(
            bytes: 2 * count * MemoryLayout<Int32>.stride, for: "MaxPool2d's indices of \(count) outputs")
        var pieces: [Int32] = []
        let winners = [Int32](unsafeUninitializedCapacity: count) { winners, winnersWritten in
            pieces = [Int32](unsafeUninitializedCapacity: count) { pieces, piecesWritten in
                withExtendedLifetime(source) {
                    let (x, values, winners, pieces) = (source.pointer, out.pointer, winners, pieces)
                    Tensor.forEachPlanes(g) { window, planes in
                        bp_max_pool(
                            x, values, winners.baseAddress, pieces.baseAddress, window, planes.lowerBound,
                            planes.upperBound)
                    }
                }
                piecesWritten = count
            }
            winnersWritten = count
        }
        return (out, winners, pieces)
    }

    /// Max pooling's fast backward (`bp_max_pool_backward`): `[n, c, h, w]` zeros, with each of
    /// `gOut`'s values (`[n, c, oh, ow]`) added at its winner (as ``maxPool2d(kernel:stride:padding:)``
    /// found them).
    package static func maxPool2dBackward(
        _ gOut: Tensor, winners: [Int32], inputShape: [Int], kernel: Int, stride: Int, padding: Int = 0
    ) -> Tensor {
        let g = poolGeometry(inputShape, kernel: kernel, stride: stride, padding: padding, operation: "MaxPool2d")
        checkPoolGradient(gOut, inputShape: inputShape, g, operation: "MaxPool2d")
        precondition(winners.count == gOut.count, "MaxPool2d: \(winners.count) winners for \(gOut.count) outputs")
        let result = Tensor(uninitializedShape: inputShape)
        let source = gOut.contiguous()
        withExtendedLifetime(source) {
            winners.withUnsafeBufferPointer { winners in
                let (gradient, winners, target) = (source.pointer, winners, result.pointer)
                forEachPlanes(g) { window, planes in
                    bp_max_pool_backward(
                        gradient, winners.baseAddress, target, window, planes.lowerBound, planes.upperBound)
                }
            }
        }
        return result
    }

    /// Average pooling's fast forward (`bp_avg_pool`): for `[n, c, h, w]` input, the mean of each
    /// `kernel × kernel` window, `stride` apart, as `[n, c, oh, ow]`: the padding counted as zeros
    /// (`countIncludePad`, a sum over `kernel²`), or left out (a sum over the window's elements in
    /// the image, PyTorch's `count_include_pad=False`).
    package func avgPool2d(kernel: Int, stride: Int, padding: Int = 0, countIncludePad: Bool = true) -> Tensor {
        let g = Tensor.poolGeometry(shape, kernel: kernel, stride: stride, padding: padding, operation: "AvgPool2d")
        let out = Tensor(uninitializedShape: [shape[0], shape[1], g.oh, g.ow])
        let source = contiguous()
        withExtendedLifetime(source) {
            let (x, values, counts) = (source.pointer, out.pointer, Int32(countIncludePad ? 1 : 0))
            Tensor.forEachPlanes(g) { window, planes in
                bp_avg_pool(x, values, window, counts, planes.lowerBound, planes.upperBound)
            }
        }
        return out
    }

    /// Average pooling's fast backward (`bp_avg_pool_backward`): `[n, c, h, w]` zeros, with each of
    /// `gOut`'s values (`[n, c, oh, ow]`) divided by `kernel²` (`countIncludePad`) or by the number
    /// of its window's elements in the image, and added to every element of its window that is not
    /// padding.
    package static func avgPool2dBackward(
        _ gOut: Tensor, inputShape: [Int], kernel: Int, stride: Int, padding: Int = 0, countIncludePad: Bool = true
    ) -> Tensor {
        let g = poolGeometry(inputShape, kernel: kernel, stride: stride, padding: padding, operation: "AvgPool2d")
        checkPoolGradient(gOut, inputShape: inputShape, g, operation: "AvgPool2d")
        let result = Tensor(uninitializedShape: inputShape)
        let source = gOut.contiguous()
        withExtendedLifetime(source) {
            let (gradient, target, counts) = (source.pointer, result.pointer, Int32(countIncludePad ? 1 : 0))
            forEachPlanes(g) { window, planes in
                bp_avg_pool_backward(gradient, target, window, counts, planes.lowerBound, planes.upperBound)
            }
        }
        return result
    }
}
