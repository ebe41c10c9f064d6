import BackpropCore

/// A 2-D convolution over NCHW images (PyTorch's `nn.Conv2d`), written as the seed writes `Lin`:
/// every window of the input laid out as a row (`unfold`, im2col), then one matrix product.
///
/// ```python
/// class Conv2d():
///     def __init__(self, w, b, stride=1, padding=0): ...
///     def __call__(self, inp):
///         self.inp = inp
///         self.cols = F.unfold(inp, (kh, kw), stride=stride, padding=padding).transpose(1, 2).reshape(-1, cIn*kh*kw)
///         self.out = (self.cols @ w.view(cOut, -1).t() + b).view(n, oh, ow, cOut).permute(0, 3, 1, 2)
///         return self.out
///     def backward(self):
///         g = self.out.g.permute(0, 2, 3, 1).reshape(-1, cOut)
///         self.w.g = (g.t() @ self.cols).view(w.shape)
///         self.b.g = g.sum(0)
///         self.inp.g = F.fold(g @ w.view(cOut, -1), ...)
/// ```
///
/// Shapes: `inp (n, cIn, h, w)`, `w (cOut, cIn, kh, kw)`, `b (cOut)` give `out (n, cOut, oh, ow)`,
/// with `oh = (h + 2 padding - kh) / stride + 1` and `ow` likewise.
///
/// When autograd records (an input or parameter requires gradients), the forward is composed of
/// recorded operations, `unfold`, `•`, `+`, `reshape` and `permute`, whose own derivatives give
/// `.grad`. Otherwise, at stride 1 the same sums are computed from the image directly
/// (Sources/CKernels/DirectConv.c: no `cols`, each output one fused chain over its window in the
/// order of `cols`' columns, then `+ b`), and at other strides as `W • colsᵀ + b` for a piece of the
/// batch at a time. The values are the same on every path. After a direct forward, the backward
/// writes `inp.g` as a convolution of `out.g` with the flipped kernels (the same sums as
/// `fold(g • W)`, in another order), and `w.g` from windows unfolded a piece at a time, or, for
/// windows of at most 32 values (a first layer's), straight from the padded images.
public final class Conv2d: InputGradientSkipping {
    /// The kernels, as PyTorch stores them. // (cOut, cIn, kh, kw)
    public let w: Tensor
    /// The bias, one per output channel, or `nil` for none. // (cOut)
    public let b: Tensor?
    /// The step between windows, down and across.
    public let stride: Int
    /// The zeros added on each side of the image, top, bottom, left and right.
    public let padding: Int
    /// The input of the last call (the very object passed in). // (n, cIn, h, w)
    public private(set) var inp: Tensor!
    /// The output of the last call. // (n, cOut, oh, ow)
    public private(set) var out: Tensor!
    /// The windows of the last input, one per row, `inp.unfold(...)`: kept for `w.g`.
    /// // (n * oh * ow, cIn * kh * kw)
    ///
    /// A layer at stride 1 computes its output directly (see ``callAsFunction(_:)``) and makes no
    /// `cols`: they are then unfolded when first read, and kept.
    public var cols: Tensor! {
        if storedCols == nil, inp != nil, usedDirectKernel { storedCols = unfoldedInput() }
        return storedCols
    }
    private var storedCols: Tensor?
    /// Whether the last forward pass ran the direct kernel (no `cols`; see ``callAsFunction(_:)``).
    private var usedDirectKernel = false
    /// Whether `backward()` computes `inp.g` (the default), as for ``Lin/needsInputGradient``.
    ///
    /// Off for a first layer whose input is the data: nobody reads `x.g`, and `fold(g • W)` is a
    /// third of the layer's backward work.
    public var needsInputGradient = true

    /// Creates the layer around the given kernels and bias (kept, not copied: after `backward()`,
    /// `w.g` and `b.g` are on the very tensors passed here).
    /// - Precondition: `w` has rank 4, `b` (if any) has `w.shape[0]` elements, `stride ≥ 1` and
    ///   `padding ≥ 0`; otherwise stops naming the shapes.
    public init(_ w: Tensor, _ b: Tensor?, stride: Int = 1, padding: Int = 0) {
        precondition(w.rank == 4, "Conv2d: weights must have shape [cOut, cIn, kh, kw], got shape \(w.shape)")
        precondition(w.count > 0, "Conv2d: weights of shape \(w.shape) are empty")
        if let b {
            precondition(
                b.count == w.shape[0] && b.rank == 1,
                "Conv2d: bias of shape \(b.shape) does not fit weights of shape \(w.shape) (expected [\(w.shape[0])])")
        }
        precondition(stride >= 1, "Conv2d: stride \(stride) must be at least 1")
        precondition(padding >= 0, "Conv2d: padding \(padding) must not be negative")
        self.w = w
        self.b = b
        self.stride = stride
        self.padding = padding
    }

    /// `[w, b]`, or `[w]` without a bias.
    public var parameters: [Tensor] { b.map { [w, $0] } ?? [w] }

    /// The kernel's height and width, `(kh, kw)` (PyTorch's `kernel_size`).
    public var kernel: (Int, Int) { (w.shape[2], w.shape[3]) }

    /// The forward pass: stores `inp`, computes the convolution, returns `out`:
    /// - `cols = inp.unfold(kernel, stride, padding)`       // (n * oh * ow, cIn * kh * kw)
    /// - `out = cols • Wᵀ + b`, one row per window         // (n * oh * ow, cOut)
    ///   reshaped to `(n, oh, ow, cOut)` and permuted to NCHW  // (n, cOut, oh, ow)
    ///
    /// with `W = w.reshape([cOut, cIn * kh * kw])`.
    /// - Precondition: `inp` is `[n, cIn, h, w]` with `cIn = w.shape[1]` and the kernel fits the
    ///   padded image; otherwise stops naming both shapes.
    public func callAsFunction(_ inp: Tensor) -> Tensor {
        let (cOut, cIn, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
        precondition(
            inp.rank == 4 && inp.shape[1] == cIn,
            "Conv2d: input of shape \(inp.shape) does not fit weights of shape \(w.shape) "
                + "(expected [n, \(cIn), h, w])")
        precondition(
            inp.shape[2] + 2 * padding >= kh && inp.shape[3] + 2 * padding >= kw,
            "Conv2d: kernel \(kh)×\(kw) of weights \(w.shape) does not fit input of shape \(inp.shape) "
                + "padded by \(padding)")
        self.inp = inp
        let n = inp.shape[0]
        let oh = (inp.shape[2] + 2 * padding - kh) / stride + 1
        let ow = (inp.shape[3] + 2 * padding - kw) / stride + 1
        usedDirectKernel = false
        storedCols = nil
        if b.map({ Tensor.wouldRecord(inp, w, $0) }) ?? Tensor.wouldRecord(inp, w) {
            // The composition autograd differentiates: its `.grad` never reads `backward()` below.
            storedCols = inp.unfold(kernel: (kh, kw), stride: (stride, stride), padding: (padding, padding))
            let weights = w.reshape([cOut, cIn * kh * kw])  // (cOut, cIn * kh * kw)
            let product = b.map { storedCols! • weights.t() + $0 } ?? storedCols! • weights.t()  // (n * oh * ow, cOut)
            out = product.reshape([n, oh, ow, cOut]).permutedContiguous([0, 3, 1, 2])
        } else if Tensor.conv2dDirectFits(imageShape: inp.shape, weights: w, stride: stride, padding: padding) {
            // At stride 1: the same sums computed from the image directly, each output one chain
            // over its window in the order of cols' columns, then + b (Sources/CKernels/DirectConv.c),
            // without writing every pixel kh·kw times into cols. The backward unfolds them if it
            // needs them.
            out = Tensor.conv2dDirect(inp, weights: w, bias: b, padding: padding)
            usedDirectKernel = true
        } else {
            // The same sums a piece of the batch at a time, W • colsᵀ + b, whose (cOut, images, oh·ow)
            // result moves to NCHW in whole runs (Tensor+Conv2d.swift): no element-wise transpose.
            let (result, windows) = Tensor.conv2d(inp, weights: w, bias: b, stride: stride, padding: padding)
            (out, storedCols) = (result, windows)
        }
        return out
    }

    /// The backward pass, reading `out.g` (written by the next layer, as its `inp.g`), with
    /// `g = out.g` as one row per window (`(n * oh * ow, cOut)`) and `W = w.reshape([cOut, -1])`:
    /// - `w.g = (gᵀ • cols).reshape(w.shape)`   // (cOut, cIn, kh, kw)
    /// - `b.g = Σ_rows g`                        // (cOut)
    /// - `inp.g = fold(g • W)`                   // (n, cIn, h, w)
    ///
    /// `fold` adds each window's gradient back where the window was taken from (col2im).
    /// `inp.g` is skipped when ``needsInputGradient`` is off (and set to `nil`: an earlier pass's
    /// would be stale).
    public func backward() {
        checkReadyForBackward()
        if !needsInputGradient { inp.g = nil }
        let directInputGradient =
            usedDirectKernel && needsInputGradient
            && Tensor.conv2dDirectInputGradientFits(outputShape: out.g.shape, weights: w, padding: padding)
        if usedDirectKernel && Tensor.conv2dDirectGradientFits(imageShape: inp.shape, weights: w, padding: padding)
            && (!needsInputGradient || directInputGradient)
        {
            // After a direct forward: w.g and b.g from the padded images (DirectConv.c), without
            // unfolding the windows.
            let gradients = Tensor.conv2dDirectBackward(out.g, input: inp, weights: w, padding: padding, bias: b != nil)
            w.g = gradients.w
            b?.g = gradients.b
        } else {
            // A piece of the batch at a time (Tensor+Conv2d.swift), with G = the piece's out.g as
            // (cOut, images·oh·ow): w.g = Σ G • cols, the same sums as gᵀ • cols, and
            // inp.g = fold(Wᵀ • G), the window gradients (out.g • W)ᵀ folded from the planar
            // layout. After a direct forward, each piece unfolds its own windows.
            let gradients = Tensor.conv2dBackward(
                out.g, cols: storedCols, input: inp, weights: w, inputShape: inp.shape, stride: stride,
                padding: padding, bias: b != nil, inputGradient: needsInputGradient && !directInputGradient)
            w.g = gradients.w
            b?.g = gradients.b
            if let g = gradients.inp { inp.g = g }
        }
        // After a direct forward, inp.g is a convolution of out.g with the flipped kernels (the
        // same sums as fold(g • W), in another order): no window gradients, no fold.
        if directInputGradient { inp.g = Tensor.conv2dDirectInputGradient(out.g, weights: w, padding: padding) }
    }

    /// `inp.unfold(kernel, stride, padding)`, not recorded.
    private func unfoldedInput() -> Tensor {
        GradMode.withNoGrad { inp.unfold(kernel: kernel, stride: (stride, stride), padding: (padding, padding)) }
    }
}
