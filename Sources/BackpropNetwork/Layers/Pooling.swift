import BackpropCore

// Pooling: each output element summarises one `kernel × kernel` window of one channel, the
// windows `stride` apart, over the input padded by `padding` on every side (at most half the
// kernel, as PyTorch requires): `[n, c, h, w] → [n, c, oh, ow]`,
// `oh = (h + 2 padding - kernel) / stride + 1`, `ow` likewise. Max pooling's padding never wins
// (PyTorch pads with -inf); average pooling's counts as zeros (PyTorch's default,
// `count_include_pad=True`): a corner window's mean is its sum over `kernel²`, or, with
// `countIncludePad: false`, over the number of its elements in the image.

/// The sizes of a pooling layer's input and output, checked.
private struct PoolShape {
    let n: Int, c: Int, h: Int, w: Int
    let oh: Int, ow: Int

    /// - Precondition: `inp` is `[n, c, h, w]` and the window fits in it padded; otherwise stops
    ///   naming `layer` and the shape.
    init(_ inp: Tensor, kernel: Int, stride: Int, padding: Int, layer: String) {
        precondition(inp.rank == 4, "\(layer): expects input of shape [n, c, h, w], got shape \(inp.shape)")
        (n, c, h, w) = (inp.shape[0], inp.shape[1], inp.shape[2], inp.shape[3])
        precondition(
            kernel <= h + 2 * padding && kernel <= w + 2 * padding,
            "\(layer): kernel \(kernel)×\(kernel) does not fit input of shape \(inp.shape)"
                + (padding == 0 ? "" : " padded by \(padding)"))
        oh = (h + 2 * padding - kernel) / stride + 1
        ow = (w + 2 * padding - kernel) / stride + 1
    }

    /// The planes (`n * c` channels of images), each pooled on its own.
    var planes: Int { n * c }
    /// The output's shape.
    var outputShape: [Int] { [n, c, oh, ow] }
}

/// Max pooling (PyTorch's `nn.MaxPool2d(kernel, stride, padding)`): each output element is the
/// largest value of its window; the padding never wins.
///
/// ```python
/// class MaxPool2d():
///     def __call__(self, inp):
///         self.inp = inp
///         self.out, self.winners = F.max_pool2d(inp, k, stride, padding, return_indices=True)
///         return self.out
///     def backward(self):
///         self.inp.g = torch.zeros_like(self.inp)
///         self.inp.g.view(n, c, -1).scatter_add_(2, self.winners.view(n, c, -1), self.out.g.view(n, c, -1))
/// ```
///
/// Shapes: `inp (n, c, h, w)` gives `out (n, c, oh, ow)`.
///
/// NOTE: where several elements of a window hold the maximum, the gradient goes to the first of
/// them (row-major in the window), as in PyTorch's CPU kernel; the maximum has no derivative
/// there, and ``pieces`` marks such outputs with `-1` for the gradient check. A NaN in a window
/// is its maximum and takes its gradient, as in PyTorch's `max_pool2d`: the last NaN of the window
/// if it holds several (the recorded path's `max(1)` picks the first, as `torch.max` does).
///
/// When autograd records (`inp` requires gradients), the forward is composed of recorded
/// operations, `reshape`, `cat` (the padding, -inf), `unfold`, `max(1)`, whose derivatives give
/// `.grad`. (A window whose elements are all -inf ties with its padding there, and `max(1)` may
/// send its gradient to the padding; the fast path sends it to the window's first element in the
/// input, as PyTorch does.)
public final class MaxPool2d: PiecewiseLayer {
    /// The window's height and width.
    public let kernel: Int
    /// The step between windows, down and across.
    public let stride: Int
    /// The rows and columns of padding on each side of the input (that never win).
    public let padding: Int
    /// The input of the last call (the very object passed in). // (n, c, h, w)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, c, oh, ow)
    public private(set) var out: Tensor!
    /// For each output element, where its maximum sits in its input plane (`iy * w + ix`).
    /// // (n, c, oh, ow)
    public private(set) var winners: [Int32] = []
    /// For each output element (row-major), the offset `ky * kernel + kx` of the maximum in its
    /// window (padding included: the window's corner is `padding` up and left of its first
    /// element), or `-1` where the maximum is tied (two elements of the window hold it) or NaN.
    /// // (n, c, oh, ow)
    public private(set) var pieces: [Int32] = []

    /// Creates the layer; `stride` defaults to `kernel` (windows side by side), as in PyTorch.
    /// - Precondition: `kernel ≥ 1`, `stride ≥ 1` and `0 ≤ padding ≤ kernel / 2` (PyTorch's rule:
    ///   every window then holds an element of the input).
    public init(kernel: Int, stride: Int? = nil, padding: Int = 0) {
        precondition(kernel >= 1, "MaxPool2d: kernel \(kernel) must be at least 1")
        precondition((stride ?? kernel) >= 1, "MaxPool2d: stride \(stride ?? kernel) must be at least 1")
        precondition(
            padding >= 0 && padding <= kernel / 2,
            "MaxPool2d: padding \(padding) must be between 0 and half the kernel \(kernel)")
        self.kernel = kernel
        self.stride = stride ?? kernel
        self.padding = padding
    }

    /// None: pooling learns nothing.
    public var parameters: [Tensor] { [] }

    /// When `true`, calls keep ``winners`` as the last call before it was turned on found them,
    /// and compute `out[img, ch, oy, ox] = inp[img, ch][winners[img, ch, oy, ox]]` (each window
    /// stays on its piece, even where another element has become larger); ``pieces`` still
    /// names the maxima of the new input, and `backward()` routes the gradient to the kept
    /// winners. For the gradient check (see ``PiecewiseLayer/freezesPieces``).
    /// - Precondition: the layer was called before it is turned on.
    public var freezesPieces = false {
        didSet {
            precondition(!freezesPieces || inp != nil, "MaxPool2d.freezesPieces: call the layer first")
            if freezesPieces != oldValue { frozenShape = freezesPieces ? inp.shape : nil }
        }
    }

    /// The input shape of the call whose winners are kept, while ``freezesPieces`` is on.
    private var frozenShape: [Int]?

    /// The forward pass: stores `inp`, computes `out[img, ch, oy, ox]` = the maximum of
    /// `inp[img, ch, oy * stride - padding + ky, ox * stride - padding + kx]` over `ky, kx < kernel`
    /// (the elements inside the input; the kept winner's value with the pieces frozen), returns
    /// `out`.
    /// - Precondition: `inp` has rank 4 and the window fits in it padded (and, with the pieces
    ///   frozen, has the shape of their call); otherwise stops naming the shape.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        let s = PoolShape(inp, kernel: kernel, stride: stride, padding: padding, layer: "MaxPool2d")
        self.inp = inp
        let fast = inp.maxPool2d(kernel: kernel, stride: stride, padding: padding)  // (n, c, oh, ow) each
        pieces = fast.pieces
        if freezesPieces {
            precondition(
                inp.shape == frozenShape,
                "MaxPool2d: input of shape \(inp.shape) does not fit the pieces frozen at shape \(frozenShape ?? [])")
            out = frozenForward(inp, s)
            return out
        }
        winners = fast.winners
        if Tensor.wouldRecord(inp) {
            // The composition autograd differentiates: every window a row, the largest of each row.
            out = paddedPlanes(inp, s)
                .unfold(kernel: (kernel, kernel), stride: (stride, stride))  // (n * c * oh * ow, k * k)
                .max(1)
                .reshape(s.outputShape)
        } else {
            out = fast.out
        }
        return out
    }

    /// The input's planes `[n * c, 1, h, w]` with `padding` rows and columns of -inf on each side,
    /// as recorded operations (`reshape`, `cat`): `[n * c, 1, h + 2 padding, w + 2 padding]`.
    private func paddedPlanes(_ inp: Tensor, _ s: PoolShape) -> Tensor {
        let planes = inp.reshape([s.planes, 1, s.h, s.w])
        guard padding > 0 else { return planes }
        let rows = Tensor.full([s.planes, 1, padding, s.w], -.infinity)
        let tall = Tensor.cat([rows, planes, rows], dim: 2)
        let columns = Tensor.full([s.planes, 1, s.h + 2 * padding, padding], -.infinity)
        return Tensor.cat([columns, tall, columns], dim: 3)
    }

    /// `out` with the kept ``winners``: a gather where nothing is recorded; recorded, every window
    /// a row (`unfold`, the padding zeros), times a constant one-hot row of its winner, summed
    /// (`x · 1 + 0 · …`, the winner's value exactly for finite inputs).
    private func frozenForward(_ inp: Tensor, _ s: PoolShape) -> Tensor {
        let (kernel, stride, padding) = (kernel, stride, padding)
        let windows = s.oh * s.ow  // per plane
        if Tensor.wouldRecord(inp) {
            var oneHot = [Float](repeating: 0, count: s.planes * windows * kernel * kernel)
            for (o, winner) in winners.enumerated() {
                let (position, winner) = (o % windows, Int(winner))
                let ky = winner / s.w - ((position / s.ow) * stride - padding)
                let kx = winner % s.w - ((position % s.ow) * stride - padding)
                oneHot[o * kernel * kernel + ky * kernel + kx] = 1
            }
            let rows = inp.reshape([s.planes, 1, s.h, s.w])
                .unfold(kernel: (kernel, kernel), stride: (stride, stride), padding: (padding, padding))
            // (n * c * oh * ow, k * k)
            return (rows * Tensor(shape: rows.shape, values: oneHot)).sum(1).reshape(s.outputShape)
        }
        let source = inp.contiguous()
        let values = source.values
        let plane = s.h * s.w
        let gathered = winners.enumerated().map { o, winner in values[(o / windows) * plane + Int(winner)] }
        return Tensor(shape: s.outputShape, values: gathered)
    }

    /// The backward pass: each output's gradient goes to the element that was its maximum,
    /// summed where windows overlap (`stride < kernel`); every other element gets 0:
    /// - `inp.g[img, ch][winners[img, ch, oy, ox]] += out.g[img, ch, oy, ox]`   // (n, c, h, w)
    public func backward() {
        checkReadyForBackward()
        inp.g = Tensor.maxPool2dBackward(
            out.g, winners: winners, inputShape: inp.shape, kernel: kernel, stride: stride, padding: padding)
    }
}

/// Average pooling (PyTorch's `nn.AvgPool2d(kernel, stride, padding, count_include_pad)`): each
/// output element is the mean of its window, the padding counted as zeros (PyTorch's default,
/// `count_include_pad=True`: every window's sum is divided by `kernel²`) or, with
/// `countIncludePad: false`, left out (each sum divided by the number of its window's elements in
/// the image, `count`).
///
/// ```python
/// class AvgPool2d():
///     def __call__(self, inp):
///         self.inp = inp
///         self.out = F.avg_pool2d(inp, k, stride, padding, count_include_pad=count_include_pad)
///         return self.out
///     def backward(self):
///         # every element of a window gets out.g / k² (or out.g / count), summed where windows overlap
///         self.inp.g = F.fold(self.out.g.view(n * c, 1, -1).expand(-1, k * k, -1) / k**2, ...)
/// ```
///
/// Shapes: `inp (n, c, h, w)` gives `out (n, c, oh, ow)`.
///
/// When autograd records (`inp` requires gradients), the forward is composed of recorded
/// operations, `reshape`, `unfold` (the padding zeros), `mean(1)` (times each window's
/// `kernel² / count` when the padding is left out), whose derivatives give `.grad`. Both paths sum
/// each window in Double and scale it once (then multiply it by that Float factor), so they give
/// the same bits, and a window of large values whose mean is a Float gives it (PyTorch's Float sum
/// can overflow to inf).
public final class AvgPool2d: Layer {
    /// The window's height and width.
    public let kernel: Int
    /// The step between windows, down and across.
    public let stride: Int
    /// The rows and columns of zeros on each side of the input.
    public let padding: Int
    /// Whether the padding counts in every mean (each window's sum over `kernel²`, PyTorch's
    /// default), or is left out (each window's sum over the number of its elements in the image).
    public let countIncludePad: Bool
    /// The input of the last call (the very object passed in). // (n, c, h, w)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, c, oh, ow)
    public private(set) var out: Tensor!

    /// Creates the layer; `stride` defaults to `kernel` (windows side by side) and
    /// `countIncludePad` to `true`, as in PyTorch.
    /// - Precondition: `kernel ≥ 1`, `stride ≥ 1` and `0 ≤ padding ≤ kernel / 2` (PyTorch's rule).
    public init(kernel: Int, stride: Int? = nil, padding: Int = 0, countIncludePad: Bool = true) {
        precondition(kernel >= 1, "AvgPool2d: kernel \(kernel) must be at least 1")
        precondition((stride ?? kernel) >= 1, "AvgPool2d: stride \(stride ?? kernel) must be at least 1")
        precondition(
            padding >= 0 && padding <= kernel / 2,
            "AvgPool2d: padding \(padding) must be between 0 and half the kernel \(kernel)")
        self.kernel = kernel
        self.stride = stride ?? kernel
        self.padding = padding
        self.countIncludePad = countIncludePad
    }

    /// None: pooling learns nothing.
    public var parameters: [Tensor] { [] }

    /// The forward pass: stores `inp`, computes `out[img, ch, oy, ox]` = the sum of
    /// `inp[img, ch, oy * stride - padding + ky, ox * stride - padding + kx]` over `ky, kx < kernel`
    /// (the elements inside the input) over `kernel²` (over their number, `count`, when the
    /// padding is left out), returns `out`.
    /// - Precondition: `inp` has rank 4 and the window fits in it padded; otherwise stops naming
    ///   the shape.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        let s = PoolShape(inp, kernel: kernel, stride: stride, padding: padding, layer: "AvgPool2d")
        self.inp = inp
        if Tensor.wouldRecord(inp) {
            // The composition autograd differentiates: every window a row, the mean of each row
            // (times the window's kernel² / count).
            let rows = inp.reshape([s.planes, 1, s.h, s.w])
                .unfold(kernel: (kernel, kernel), stride: (stride, stride), padding: (padding, padding))
            // (n * c * oh * ow, k * k)
            if countsEveryElement {
                out = rows.mean(1).reshape(s.outputShape)
            } else {
                out = (rows.mean(1).reshape([s.planes, s.oh * s.ow]) * windowFactors(s)).reshape(s.outputShape)
            }
            return out
        }
        out = inp.avgPool2d(kernel: kernel, stride: stride, padding: padding, countIncludePad: countsEveryElement)
        return out
    }

    /// Whether every mean is over `kernel²`: the padding counts, or there is none.
    private var countsEveryElement: Bool { countIncludePad || padding == 0 }

    /// `kernel² / count` for each window of a plane, `[oh * ow]`, `count` the number of its
    /// elements in the image, computed in Double and rounded once (the C kernel's `windowFactor`).
    private func windowFactors(_ s: PoolShape) -> Tensor {
        func covered(_ output: Int, _ size: Int) -> Int {
            let first = output * stride - padding
            return Swift.min(first + kernel, size) - Swift.max(first, 0)
        }
        let square = Double(kernel) * Double(kernel)
        let factors = (0..<s.oh).flatMap { oy in
            (0..<s.ow).map { ox in Float(square / Double(covered(oy, s.h) * covered(ox, s.w))) }
        }
        return Tensor(shape: [s.oh * s.ow], values: factors)
    }

    /// The backward pass: each output's gradient is shared equally by the `kernel²` elements of
    /// its window (by its `count` elements in the image, when the padding is left out), summed
    /// where windows overlap (`stride < kernel`), the padding's shares dropped:
    /// - `inp.g[img, ch, oy * stride - padding + ky, ox * stride - padding + kx]
    ///   += out.g[img, ch, oy, ox] / kernel²`   (or `/ count`)   // (n, c, h, w)
    public func backward() {
        checkReadyForBackward()
        inp.g = Tensor.avgPool2dBackward(
            out.g, inputShape: inp.shape, kernel: kernel, stride: stride, padding: padding,
            countIncludePad: countsEveryElement)
    }
}

extension MaxPool2d {
    /// The layer's arguments as PyTorch's `nn.MaxPool2d` takes them, defaults left out:
    /// `3, stride=2, padding=1`.
    package var pythonArguments: String { poolPythonArguments(kernel: kernel, stride: stride, padding: padding) }
}

extension AvgPool2d {
    /// The layer's arguments as PyTorch's `nn.AvgPool2d` takes them, defaults left out: `2`,
    /// `3, stride=1, padding=1, count_include_pad=False`.
    package var pythonArguments: String {
        windowPythonArguments + (countIncludePad ? "" : ", count_include_pad=False")
    }

    /// The window's arguments alone, as `F.fold` and `F.unfold` take them: `3, stride=1, padding=1`.
    package var windowPythonArguments: String { poolPythonArguments(kernel: kernel, stride: stride, padding: padding) }
}

/// `K`, then `stride=S` and `padding=P` where they are not the defaults (`S = K`, `P = 0`).
private func poolPythonArguments(kernel: Int, stride: Int, padding: Int) -> String {
    "\(kernel)" + (stride == kernel ? "" : ", stride=\(stride)") + (padding == 0 ? "" : ", padding=\(padding)")
}
