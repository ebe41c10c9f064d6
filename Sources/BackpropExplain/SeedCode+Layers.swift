import BackpropCore
import BackpropNetwork

// What the walkthrough shows of the layers the seed does not have: the Python of each layer's doc
// comment, in the seed's style (`self.inp`, `self.out`, `.g`), with the layer's own settings
// written in (a convolution's kernel, stride and padding; dropout's probability; training or
// evaluation). As for the seed's kinds, the lines are text for the reader: what a step did is
// observed on the objects, and the walkthrough says so when a line did not leave its `.g`.
//
// Letters (SeedCode.swift's naming rule numbers them when a kind repeats):
//
//     C   Conv2d       MP  MaxPool2d    AP  AvgPool2d    F   Flatten      D   Dropout
//     BN  BatchNorm    T   Tanh         S   Sigmoid      LR  LeakyReLU    G   GELU
//     SL  SiLU         HT  Hardtanh (ReLU6)
//
// A convolution's backward uses `g`, its `out.g` with one row per window, and batch norm's uses
// `xhat` and `N`: each is defined in the backward's first line (``SeedCode/backwardPreamble``).

extension Conv2d: SeedCodeDescribing {
    /// `Conv2d`: `cols = unfold(inp)` (im2col), `out = cols @ w.view(cOut, -1).t() + b` viewed
    /// NCHW, and its gradients through `g`, `out.g` with one row per window.
    var seedCode: SeedCode {
        let cOut = w.shape[0]
        let (kh, kw) = kernel
        var options: [String] = []
        if stride != 1 { options.append("stride=\(stride)") }
        if padding != 0 { options.append("padding=\(padding)") }
        let window = ([kh == kw ? "\(kh)" : "(\(kh), \(kw))"] + options).joined(separator: ", ")
        let bias = b == nil ? "" : " + self.b"
        let product = "(self.cols @ self.w.view(\(cOut), -1).t()\(bias)).view(n, oh, ow, \(cOut)).permute(0, 3, 1, 2)"
        var gradients = [
            SeedCode.GradientLine(field: "w", line: "self.w.g = (g.t() @ self.cols).view(self.w.shape)")
        ]
        if b != nil { gradients.append(SeedCode.GradientLine(field: "b", line: "self.b.g = g.sum(0)")) }
        let input = SeedCode.GradientLine(
            field: "inp", line: "self.inp.g = fold(g @ self.w.view(\(cOut), -1), self.inp.shape, \(window))")
        var preamble = ["g = self.out.g.permute(0, 2, 3, 1).reshape(-1, \(cOut))   # out.g, one row per window"]
        if !needsInputGradient { preamble.append(SeedCode.skippedInputGradient) }
        return SeedCode(
            className: "Conv2d", letter: "C", parameterFields: b == nil ? ["w"] : ["w", "b"],
            forward: "self.inp = inp; self.cols = unfold(inp, \(window)); self.out = \(product)",
            result: "self.out = \(product)",
            backward: needsInputGradient ? [input] + gradients : gradients, origin: "the layer's",
            arguments: options,
            kept: [
                SeedCode.GradientLine(
                    field: "cols",
                    line: "self.cols = unfold(self.inp, \(window))   # every \(kh)×\(kw) window of the channels, a row")
            ],
            backwardPreamble: preamble)
    }

    /// `cols`, the windows of the last input, one per row. // (n * oh * ow, cIn * kh * kw)
    var keptForBackward: [(field: String, tensor: Tensor)] {
        cols.map { [("cols", $0)] } ?? []
    }
}

extension MaxPool2d: SeedCodeDescribing {
    /// `MaxPool2d`: the largest value of each window, where it was (`winners`), and the gradient
    /// sent back to it.
    var seedCode: SeedCode {
        let window = pythonArguments
        return SeedCode(
            className: "MaxPool2d", letter: "MP", parameterFields: [],
            forward: "self.inp = inp; self.out, self.winners = max_pool2d(inp, \(window), return_indices=True)",
            result:
                "self.out = max_pool2d(self.inp, \(window))   # the largest value of each \(kernel)×\(kernel) window",
            backward: [
                SeedCode.GradientLine(
                    field: "inp",
                    line:
                        "self.inp.g = zeros_like(self.inp).view(n, c, -1).scatter_add_(2, self.winners.view(n, c, -1), "
                        + "self.out.g.view(n, c, -1)).view(self.inp.shape)")
            ],
            origin: "the layer's", arguments: [window],
            kept: [
                SeedCode.GradientLine(
                    field: "winners",
                    line: "self.winners = where each window's maximum is in its channel (y * w + x; the first if tied)")
            ])
    }

    /// `winners`, as a tensor of the output's shape. // (n, c, oh, ow)
    var keptForBackward: [(field: String, tensor: Tensor)] {
        guard let out, winners.count == out.count else { return [] }
        return [("winners", Tensor(shape: out.shape, values: winners.map { Float($0) }))]
    }
}

extension AvgPool2d: SeedCodeDescribing {
    /// `AvgPool2d`: the mean of each window, and each output's gradient shared by its window (over
    /// `counts`, each window's elements in the image, when the padding is left out of the means).
    var seedCode: SeedCode {
        let (window, fold) = (pythonArguments, windowPythonArguments)  // fold takes no count_include_pad
        let whole = countIncludePad || padding == 0
        let size = kernel * kernel
        let share = whole ? "\(size)" : "counts"
        let counts =
            whole
            ? ""
            : "   # counts = (avg_pool2d(ones(1, h, w), \(fold)) * \(size)).view(1, 1, -1): each window's elements in "
                + "the image"
        return SeedCode(
            className: "AvgPool2d", letter: "AP", parameterFields: [],
            forward: "self.inp = inp; self.out = avg_pool2d(inp, \(window))",
            result: "self.out = avg_pool2d(self.inp, \(window))   # the mean of each \(kernel)×\(kernel) window"
                + (whole ? "" : "'s elements in the image"),
            backward: [
                SeedCode.GradientLine(
                    field: "inp",
                    line: "self.inp.g = fold(self.out.g.view(n * c, 1, -1).expand(-1, \(size), -1) / \(share), "
                        + "self.inp.shape[2:], \(fold)).view(self.inp.shape)" + counts)
            ],
            origin: "the layer's", arguments: [window])
    }
}

extension Flatten: SeedCodeDescribing {
    /// `Flatten`: each example as one row, and the gradient in the input's shape.
    var seedCode: SeedCode {
        SeedCode(
            className: "Flatten", letter: "F", parameterFields: [],
            forward: "self.inp = inp; self.out = inp.view(inp.shape[0], -1)",
            result: "self.out = self.inp.view(self.inp.shape[0], -1)",
            backward: [SeedCode.GradientLine(field: "inp", line: "self.inp.g = self.out.g.view(self.inp.shape)")],
            origin: "the layer's")
    }
}

extension Tanh: SeedCodeDescribing {
    /// `Tanh`: `out = tanh(inp)`, `inp.g = (1 - out²) * out.g`.
    var seedCode: SeedCode {
        SeedCode(
            className: "Tanh", letter: "T", parameterFields: [],
            forward: "self.inp = inp; self.out = inp.tanh()",
            result: "self.out = self.inp.tanh()",
            backward: [SeedCode.GradientLine(field: "inp", line: "self.inp.g = (1 - self.out**2) * self.out.g")],
            origin: "the layer's")
    }
}

extension Sigmoid: SeedCodeDescribing {
    /// `Sigmoid`: `out = sigmoid(inp)`, `inp.g = out * (1 - out) * out.g`.
    var seedCode: SeedCode {
        SeedCode(
            className: "Sigmoid", letter: "S", parameterFields: [],
            forward: "self.inp = inp; self.out = inp.sigmoid()",
            result: "self.out = self.inp.sigmoid()",
            backward: [
                SeedCode.GradientLine(field: "inp", line: "self.inp.g = self.out * (1 - self.out) * self.out.g")
            ],
            origin: "the layer's")
    }
}

extension LeakyReLU: SeedCodeDescribing {
    /// `LeakyRelu`: `out = inp` where positive, else `slope * inp`; the gradient likewise.
    var seedCode: SeedCode {
        SeedCode(
            className: "LeakyRelu", letter: "LR", parameterFields: [],
            forward: "self.inp = inp; self.out = where(inp > 0, inp, \(slope) * inp)",
            result: "self.out = where(self.inp > 0, self.inp, \(slope) * self.inp)",
            backward: [
                SeedCode.GradientLine(field: "inp", line: "self.inp.g = where(self.inp > 0, 1., \(slope)) * self.out.g")
            ],
            origin: "the layer's", arguments: ["\(slope)"])
    }
}

extension GELU: SeedCodeDescribing {
    /// `GELU`, exact: `out = inp * Phi(inp)`, `inp.g = (Phi(inp) + inp * phi(inp)) * out.g`.
    var seedCode: SeedCode {
        SeedCode(
            className: "GELU", letter: "G", parameterFields: [],
            forward: "self.inp = inp; self.out = 0.5 * inp * (1 + erf(inp / sqrt(2)))",
            result: "self.out = 0.5 * self.inp * (1 + erf(self.inp / sqrt(2)))",
            backward: [
                SeedCode.GradientLine(
                    field: "inp", line: "self.inp.g = (Phi(self.inp) + self.inp * phi(self.inp)) * self.out.g")
            ],
            origin: "the layer's",
            backwardPreamble: ["# Phi(x) = 0.5 * (1 + erf(x / sqrt(2))), phi(x) = exp(-x**2 / 2) / sqrt(2 * pi)"])
    }
}

extension SiLU: SeedCodeDescribing {
    /// `SiLU`: `out = inp * sigmoid(inp)`, `inp.g = s * (1 + inp * (1 - s)) * out.g`, `s = sigmoid(inp)`.
    var seedCode: SeedCode {
        SeedCode(
            className: "SiLU", letter: "SL", parameterFields: [],
            forward: "self.inp = inp; self.out = inp * inp.sigmoid()",
            result: "self.out = self.inp * self.inp.sigmoid()",
            backward: [
                SeedCode.GradientLine(field: "inp", line: "self.inp.g = s * (1 + self.inp * (1 - s)) * self.out.g")
            ],
            origin: "the layer's",
            backwardPreamble: ["s = self.inp.sigmoid()"])
    }
}

extension Hardtanh: SeedCodeDescribing {
    /// `Hardtanh`: `out = inp.clamp(min, max)`, `inp.g = ((inp > min) & (inp < max)) * out.g`.
    var seedCode: SeedCode {
        let relu6 = (min, max) == (0, 6)
        return SeedCode(
            className: relu6 ? "ReLU6" : "Hardtanh", letter: "HT", parameterFields: [],
            forward: "self.inp = inp; self.out = inp.clamp(\(min), \(max))",
            result: "self.out = self.inp.clamp(\(min), \(max))",
            backward: [
                SeedCode.GradientLine(
                    field: "inp", line: "self.inp.g = ((self.inp > \(min)) & (self.inp < \(max))) * self.out.g")
            ],
            origin: "the layer's", arguments: relu6 ? [] : ["\(min)", "\(max)"])
    }
}

extension Dropout: SeedCodeDescribing {
    /// `Dropout`: in training `out = inp * mask / (1 - p)` and the same mask on the gradient; in
    /// evaluation the identity.
    var seedCode: SeedCode {
        guard isTraining else {
            return SeedCode(
                className: "Dropout", letter: "D", parameterFields: [],
                forward: "self.inp = inp; self.out = inp.view(inp.shape)   # evaluation: the identity",
                result: "self.out = self.inp.view(self.inp.shape)   # evaluation: the identity",
                backward: [SeedCode.GradientLine(field: "inp", line: "self.inp.g = self.out.g")],
                origin: "the layer's", arguments: ["\(p)"])
        }
        let keep = 1 - p
        let draw = freezesMask ? "the last mask, kept (freezesMask)" : "bernoulli(full_like(self.inp, \(keep)))"
        return SeedCode(
            className: "Dropout", letter: "D", parameterFields: [],
            forward:
                "self.inp = inp; self.mask = bernoulli(full_like(inp, \(keep))); self.out = inp * self.mask / \(keep)",
            result: "self.out = self.inp * self.mask / \(keep)",
            backward: [SeedCode.GradientLine(field: "inp", line: "self.inp.g = self.out.g * self.mask / \(keep)")],
            origin: "the layer's", arguments: ["\(p)"],
            kept: [
                SeedCode.GradientLine(
                    field: "mask", line: "self.mask = \(draw)   # 1 keeps an element, 0 drops it (p = \(p))")
            ])
    }

    /// `mask`, in training. // (n, …), the shape of inp
    var keptForBackward: [(field: String, tensor: Tensor)] {
        guard isTraining, let mask else { return [] }
        return [("mask", mask)]
    }
}

extension BatchNorm: SeedCodeDescribing {
    /// `BatchNorm`: each channel normalised (by the batch's statistics in training, the running
    /// ones in evaluation), scaled by `w` and shifted by `b`; its backward written out in full.
    var seedCode: SeedCode {
        let dims = "dims = (0, 2, 3) if inp.dim() == 4 else (0,)"
        let normalise = "self.out = self.w * (self.inp - self.mean) * self.invStd + self.b   # per channel"
        let sums = SeedCode.GradientLine(field: "b", line: "self.b.g = self.out.g.sum(dims)")
        let scaled = SeedCode.GradientLine(field: "w", line: "self.w.g = (self.out.g * xhat).sum(dims)")
        let preamble = "xhat = (self.inp - self.mean) * self.invStd"
        let comment = "   # per channel; dims as in the forward"
        guard isTraining else {
            return SeedCode(
                className: "BatchNorm", letter: "BN", parameterFields: ["w", "b"],
                forward: "self.inp = inp; \(dims); self.mean = self.running_mean; "
                    + "self.invStd = 1 / (self.running_var + \(eps)).sqrt(); "
                    + "self.out = self.w * (inp - self.mean) * self.invStd + self.b",
                result: normalise,
                backward: [
                    sums, scaled,
                    SeedCode.GradientLine(field: "inp", line: "self.inp.g = self.out.g * self.w * self.invStd"),
                ],
                origin: "the layer's",
                kept: [
                    SeedCode.GradientLine(field: "mean", line: "self.mean = self.running_mean   # evaluation"),
                    SeedCode.GradientLine(
                        field: "invStd", line: "self.invStd = 1 / (self.running_var + \(eps)).sqrt()"),
                ],
                backwardPreamble: [preamble + comment])
        }
        return SeedCode(
            className: "BatchNorm", letter: "BN", parameterFields: ["w", "b"],
            forward: "self.inp = inp; \(dims); self.mean = inp.mean(dims); "
                + "self.invStd = 1 / (inp.var(dims, unbiased=False) + \(eps)).sqrt(); "
                + "self.out = self.w * (inp - self.mean) * self.invStd + self.b; "
                + "self.running_mean, self.running_var move \(momentum) of the way to the batch's",
            result: normalise,
            backward: [
                sums, scaled,
                SeedCode.GradientLine(
                    field: "inp",
                    line: "self.inp.g = self.w * self.invStd / N * (N * self.out.g - self.b.g - xhat * self.w.g)"),
            ],
            origin: "the layer's",
            kept: [
                SeedCode.GradientLine(
                    field: "mean", line: "self.mean = self.inp.mean(dims)   # the batch's, per channel"),
                SeedCode.GradientLine(
                    field: "invStd", line: "self.invStd = 1 / (self.inp.var(dims, unbiased=False) + \(eps)).sqrt()"),
            ],
            backwardPreamble: [preamble + "; N = self.inp.numel() // self.inp.shape[1]" + comment])
    }

    /// `mean` and `invStd`, the statistics the last call normalised with. // (c) each
    var keptForBackward: [(field: String, tensor: Tensor)] {
        guard let mean, let invStd else { return [] }
        return [("mean", mean), ("invStd", invStd)]
    }
}
