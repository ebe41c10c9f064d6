import BackpropCore

// Pooling: each output element summarises one `kernel × kernel` window of one channel, the
// windows `stride` apart, without padding: `[n, c, h, w] → [n, c, oh, ow]`,
// `oh = (h - kernel) / stride + 1`, `ow = (w - kernel) / stride + 1`.

/// The sizes of a pooling layer's input and output, checked.
private struct PoolShape {
    let n: Int, c: Int, h: Int, w: Int
    let oh: Int, ow: Int

    /// - Precondition: `inp` is `[n, c, h, w]` and the window fits; otherwise stops naming `layer`
    ///   and the shape.
    init(_ inp: Tensor, kernel: Int, stride: Int, layer: String) {
        precondition(inp.rank == 4, "\(layer): expects input of shape [n, c, h, w], got shape \(inp.shape)")
        (n, c, h, w) = (inp.shape[0], inp.shape[1], inp.shape[2], inp.shape[3])
        precondition(
            kernel <= h && kernel <= w, "\(layer): kernel \(kernel)×\(kernel) does not fit input of shape \(inp.shape)")
        oh = (h - kernel) / stride + 1
        ow = (w - kernel) / stride + 1
    }

    /// The planes (`n * c` channels of images), each pooled on its own.
    var planes: Int { n * c }
    /// The output's shape.
    var outputShape: [Int] { [n, c, oh, ow] }
}

/// Max pooling (PyTorch's `nn.MaxPool2d(kernel, stride)`): each output element is the largest
/// value of its window.
///
/// ```python
/// class MaxPool2d():
///     def __call__(self, inp):
///         self.inp = inp
///         self.out, self.winners = F.max_pool2d(inp, k, stride, return_indices=True)
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
/// operations, `reshape`, `unfold`, `max(1)`, whose derivatives give `.grad`.
public final class MaxPool2d: PiecewiseLayer {
    /// The window's height and width.
    public let kernel: Int
    /// The step between windows, down and across.
    public let stride: Int
    /// The input of the last call (the very object passed in). // (n, c, h, w)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, c, oh, ow)
    public private(set) var out: Tensor!
    /// For each output element, where its maximum sits in its input plane (`iy * w + ix`).
    /// // (n, c, oh, ow)
    public private(set) var winners: [Int32] = []
    /// For each output element (row-major), the offset `ky * kernel + kx` of the maximum in its
    /// window, or `-1` where the maximum is tied (two elements of the window hold it) or NaN.
    /// // (n, c, oh, ow)
    public private(set) var pieces: [Int32] = []

    /// Creates the layer; `stride` defaults to `kernel` (windows side by side), as in PyTorch.
    /// - Precondition: `kernel ≥ 1` and `stride ≥ 1`.
    public init(kernel: Int, stride: Int? = nil) {
        precondition(kernel >= 1, "MaxPool2d: kernel \(kernel) must be at least 1")
        precondition((stride ?? kernel) >= 1, "MaxPool2d: stride \(stride ?? kernel) must be at least 1")
        self.kernel = kernel
        self.stride = stride ?? kernel
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
    /// `inp[img, ch, oy * stride + ky, ox * stride + kx]` over `ky, kx < kernel` (the kept
    /// winner's value with the pieces frozen), returns `out`.
    /// - Precondition: `inp` has rank 4 and the window fits in it (and, with the pieces frozen, has
    ///   the shape of their call); otherwise stops naming the shape.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        let s = PoolShape(inp, kernel: kernel, stride: stride, layer: "MaxPool2d")
        self.inp = inp
        let fast = inp.maxPool2d(kernel: kernel, stride: stride)  // (n, c, oh, ow) each
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
            out = inp.reshape([s.planes, 1, s.h, s.w])
                .unfold(kernel: (kernel, kernel), stride: (stride, stride))  // (n * c * oh * ow, k * k)
                .max(1)
                .reshape(s.outputShape)
        } else {
            out = fast.out
        }
        return out
    }

    /// `out` with the kept ``winners``: a gather where nothing is recorded; recorded, every window
    /// a row (`unfold`), times a constant one-hot row of its winner, summed (`x · 1 + 0 · …`, the
    /// winner's value exactly for finite inputs).
    private func frozenForward(_ inp: Tensor, _ s: PoolShape) -> Tensor {
        let (kernel, stride) = (kernel, stride)
        let windows = s.oh * s.ow  // per plane
        if Tensor.wouldRecord(inp) {
            var oneHot = [Float](repeating: 0, count: s.planes * windows * kernel * kernel)
            for (o, winner) in winners.enumerated() {
                let (position, winner) = (o % windows, Int(winner))
                let ky = winner / s.w - (position / s.ow) * stride
                let kx = winner % s.w - (position % s.ow) * stride
                oneHot[o * kernel * kernel + ky * kernel + kx] = 1
            }
            let rows = inp.reshape([s.planes, 1, s.h, s.w])
                .unfold(kernel: (kernel, kernel), stride: (stride, stride))  // (n * c * oh * ow, k * k)
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
        inp.g = Tensor.maxPool2dBackward(out.g, winners: winners, inputShape: inp.shape, kernel: kernel, stride: stride)
    }
}

/// Average pooling (PyTorch's `nn.AvgPool2d(kernel, stride)`): each output element is the mean
/// of its window.
///
/// ```python
/// class AvgPool2d():
///     def __call__(self, inp):
///         self.inp = inp
///         self.out = F.avg_pool2d(inp, k, stride)
///         return self.out
///     def backward(self):
///         # every element of a window gets out.g / k², summed where windows overlap
///         self.inp.g = F.fold(self.out.g.view(n * c, 1, -1).expand(-1, k * k, -1) / k**2, ...)
/// ```
///
/// Shapes: `inp (n, c, h, w)` gives `out (n, c, oh, ow)`.
///
/// When autograd records (`inp` requires gradients), the forward is composed of recorded
/// operations, `reshape`, `unfold`, `mean(1)`, whose derivatives give `.grad`.
public final class AvgPool2d: Layer {
    /// The window's height and width.
    public let kernel: Int
    /// The step between windows, down and across.
    public let stride: Int
    /// The input of the last call (the very object passed in). // (n, c, h, w)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, c, oh, ow)
    public private(set) var out: Tensor!

    /// Creates the layer; `stride` defaults to `kernel` (windows side by side), as in PyTorch.
    /// - Precondition: `kernel ≥ 1` and `stride ≥ 1`.
    public init(kernel: Int, stride: Int? = nil) {
        precondition(kernel >= 1, "AvgPool2d: kernel \(kernel) must be at least 1")
        precondition((stride ?? kernel) >= 1, "AvgPool2d: stride \(stride ?? kernel) must be at least 1")
        self.kernel = kernel
        self.stride = stride ?? kernel
    }

    /// None: pooling learns nothing.
    public var parameters: [Tensor] { [] }

    /// The forward pass: stores `inp`, computes `out[img, ch, oy, ox]` = the mean of
    /// `inp[img, ch, oy * stride + ky, ox * stride + kx]` over `ky, kx < kernel`, returns `out`.
    /// - Precondition: `inp` has rank 4 and the window fits in it; otherwise stops naming the shape.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        let s = PoolShape(inp, kernel: kernel, stride: stride, layer: "AvgPool2d")
        self.inp = inp
        if Tensor.wouldRecord(inp) {
            // The composition autograd differentiates: every window a row, the mean of each row.
            out = inp.reshape([s.planes, 1, s.h, s.w])
                .unfold(kernel: (kernel, kernel), stride: (stride, stride))  // (n * c * oh * ow, k * k)
                .mean(1)
                .reshape(s.outputShape)
            return out
        }
        out = inp.avgPool2d(kernel: kernel, stride: stride)
        return out
    }

    /// The backward pass: each output's gradient is shared equally by the `kernel²` elements of
    /// its window, summed where windows overlap (`stride < kernel`):
    /// - `inp.g[img, ch, oy * stride + ky, ox * stride + kx] += out.g[img, ch, oy, ox] / kernel²`
    ///   // (n, c, h, w)
    public func backward() {
        checkReadyForBackward()
        inp.g = Tensor.avgPool2dBackward(out.g, inputShape: inp.shape, kernel: kernel, stride: stride)
    }
}
