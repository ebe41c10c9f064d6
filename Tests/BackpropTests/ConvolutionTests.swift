import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// Convolution and pooling, each checked against references that share no code with it: direct
// loops in Double written here from the definitions (`out[img, co, oy, ox] = b[co] +
// Σ w[co, ci, ky, kx] · inp[img, ci, oy·s - p + ky, ox·s - p + kx]`), autograd's `.grad` through
// the recorded composition (unfold, •, max, mean), and central finite differences of the
// Double loops. Shapes cover stride 2, padding 0, 1 and 2, odd and non-square images, 1×1 and
// non-square kernels, batch 1, channels 1 and 3, with and without bias.

/// One convolution to test: input `[n, cIn, h, w]`, weights `[cOut, cIn, kh, kw]`.
struct ConvolutionCase: CustomTestStringConvertible, Sendable {
    let n: Int, cIn: Int, h: Int, w: Int
    let cOut: Int, kh: Int, kw: Int
    let stride: Int, padding: Int
    let bias: Bool

    var testDescription: String {
        "[\(n), \(cIn), \(h), \(w)] * [\(cOut), \(cIn), \(kh), \(kw)] stride \(stride) pad \(padding)"
            + (bias ? "" : " no bias")
    }
    var oh: Int { (h + 2 * padding - kh) / stride + 1 }
    var ow: Int { (w + 2 * padding - kw) / stride + 1 }

    static let all: [ConvolutionCase] = [
        .init(n: 2, cIn: 3, h: 7, w: 5, cOut: 4, kh: 3, kw: 3, stride: 2, padding: 1, bias: true),
        .init(n: 1, cIn: 1, h: 7, w: 5, cOut: 2, kh: 3, kw: 3, stride: 1, padding: 2, bias: false),
        .init(n: 2, cIn: 3, h: 5, w: 6, cOut: 2, kh: 1, kw: 1, stride: 1, padding: 0, bias: true),
        .init(n: 1, cIn: 3, h: 5, w: 7, cOut: 3, kh: 3, kw: 2, stride: 2, padding: 0, bias: true),
        .init(n: 3, cIn: 1, h: 4, w: 4, cOut: 3, kh: 3, kw: 3, stride: 1, padding: 1, bias: false),
        .init(n: 1, cIn: 2, h: 6, w: 5, cOut: 1, kh: 2, kw: 2, stride: 2, padding: 2, bias: true),
    ]
}

/// One pooling to test: input `[n, c, h, w]`, `kernel × kernel` windows `stride` apart.
struct PoolingCase: CustomTestStringConvertible, Sendable {
    let n: Int, c: Int, h: Int, w: Int
    let kernel: Int, stride: Int

    var testDescription: String { "[\(n), \(c), \(h), \(w)] kernel \(kernel) stride \(stride)" }
    var oh: Int { (h - kernel) / stride + 1 }
    var ow: Int { (w - kernel) / stride + 1 }

    static let all: [PoolingCase] = [
        .init(n: 2, c: 3, h: 6, w: 6, kernel: 2, stride: 2),
        .init(n: 1, c: 1, h: 7, w: 5, kernel: 3, stride: 2),  // overlapping windows
        .init(n: 2, c: 1, h: 7, w: 7, kernel: 2, stride: 3),  // gaps between windows
        .init(n: 1, c: 3, h: 5, w: 4, kernel: 1, stride: 1),
        .init(n: 1, c: 2, h: 5, w: 5, kernel: 3, stride: 1),
    ]
}

// MARK: - Direct loops in Double, from the definitions

/// `inp[img, ch, iy, ix]` of a `[n, c, h, w]` array, or 0 in the padding.
private func pixel(_ x: [Float], _ shape: [Int], _ img: Int, _ ch: Int, _ iy: Int, _ ix: Int) -> Double {
    guard iy >= 0 && iy < shape[2] && ix >= 0 && ix < shape[3] else { return 0 }
    return Double(x[((img * shape[1] + ch) * shape[2] + iy) * shape[3] + ix])
}

/// The convolution straight from its definition, in Double, row-major `[n, cOut, oh, ow]`.
private func directConvolution(_ inp: Tensor, _ w: Tensor, _ b: Tensor?, _ t: ConvolutionCase) -> [Double] {
    let (x, weights, bias) = (inp.values, w.values, b?.values)
    var out: [Double] = []
    for img in 0..<t.n {
        for co in 0..<t.cOut {
            for oy in 0..<t.oh {
                for ox in 0..<t.ow {
                    var total = bias.map { Double($0[co]) } ?? 0
                    for ci in 0..<t.cIn {
                        for ky in 0..<t.kh {
                            for kx in 0..<t.kw {
                                let weight = Double(weights[((co * t.cIn + ci) * t.kh + ky) * t.kw + kx])
                                let iy = oy * t.stride - t.padding + ky
                                let ix = ox * t.stride - t.padding + kx
                                total += weight * pixel(x, inp.shape, img, ci, iy, ix)
                            }
                        }
                    }
                    out.append(total)
                }
            }
        }
    }
    return out
}

/// Max or mean pooling straight from the definition, in Double, row-major `[n, c, oh, ow]`.
private func directPooling(_ inp: Tensor, _ t: PoolingCase, mean: Bool) -> [Double] {
    let x = inp.values
    var out: [Double] = []
    for img in 0..<t.n {
        for ch in 0..<t.c {
            for oy in 0..<t.oh {
                for ox in 0..<t.ow {
                    var window: [Double] = []
                    for ky in 0..<t.kernel {
                        for kx in 0..<t.kernel {
                            window.append(pixel(x, inp.shape, img, ch, oy * t.stride + ky, ox * t.stride + kx))
                        }
                    }
                    out.append(mean ? window.reduce(0, +) / Double(window.count) : window.max()!)
                }
            }
        }
    }
    return out
}

/// `AvgPool2d` (`mean`) or `MaxPool2d` for a pooling case.
private func poolingLayer(_ t: PoolingCase, mean: Bool) -> any Layer {
    mean ? AvgPool2d(kernel: t.kernel, stride: t.stride) : MaxPool2d(kernel: t.kernel, stride: t.stride)
}

/// `Σ_i a_i · r_i` in Double.
private func dot(_ a: [Double], _ r: Tensor) -> Double {
    zip(a, r.values).reduce(0) { $0 + $1.0 * Double($1.1) }
}

/// `Σ_i a_i · b_i` of two tensors, in Double.
private func dot(_ a: Tensor, _ b: Tensor) -> Double {
    dot(a.values.map(Double.init), b)
}

/// Random input, weights and bias for a convolution case.
private func convolutionTensors(
    _ t: ConvolutionCase, seed: UInt64
) -> (inp: Tensor, w: Tensor, b: Tensor?, r: Tensor) {
    var generator = RandomGenerator(seed: seed)
    let inp = uniform([t.n, t.cIn, t.h, t.w], in: -1...1, generator: &generator)  // (n, cIn, h, w)
    let w = uniform([t.cOut, t.cIn, t.kh, t.kw], in: -1...1, generator: &generator)  // (cOut, cIn, kh, kw)
    let b = t.bias ? uniform([t.cOut], in: -1...1, generator: &generator) : nil  // (cOut)
    let r = uniform([t.n, t.cOut, t.oh, t.ow], in: -1...1, generator: &generator)  // (n, cOut, oh, ow)
    return (inp, w, b, r)
}

/// An input whose values are all at least 0.05 apart (a shuffled grid): finite differences with
/// steps of about 5e-3 then never change which element of a window is the largest.
private func distinctValues(_ shape: [Int], seed: UInt64) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    let count = shape.reduce(1, *)
    var values = (0..<count).map { Float($0) * 0.05 - Float(count) * 0.025 }
    for i in stride(from: count - 1, to: 0, by: -1) { values.swapAt(i, generator.nextIndex(below: i + 1)) }
    return Tensor(shape: shape, values: values)
}

@Suite("Convolution: unfold, fold, permute, Conv2d, pooling, Flatten")
struct ConvolutionTests {
    // MARK: unfold and fold

    @Test("unfold of a small padded image, written out by hand")
    func unfoldByHand() {
        // 1 image, 1 channel, 2×2, kernel 2, padding 1: a 3×3 grid of windows.
        let x = Tensor(shape: [1, 1, 2, 2], values: [1, 2, 3, 4])
        let cols = x.unfold(kernel: (2, 2), padding: (1, 1))
        let expected: [[Float]] = [
            [0, 0, 0, 1], [0, 0, 1, 2], [0, 0, 2, 0],
            [0, 1, 0, 3], [1, 2, 3, 4], [2, 0, 4, 0],
            [0, 3, 0, 0], [3, 4, 0, 0], [4, 0, 0, 0],
        ]
        expectNear(cols, Tensor(expected), relativeTolerance: 0, absoluteTolerance: 0)
    }

    @Test("unfold and fold equal their plain reference loops", arguments: ConvolutionCase.all)
    func kernelsMatchReference(_ t: ConvolutionCase) {
        let (inp, _, _, _) = convolutionTensors(t, seed: 1)
        let window = (kernel: (t.kh, t.kw), stride: (t.stride, t.stride), padding: (t.padding, t.padding))
        let cols = inp.unfold(kernel: window.kernel, stride: window.stride, padding: window.padding)
        let reference = Tensor.referenceUnfold(
            inp, kernel: window.kernel, stride: window.stride, padding: window.padding)
        expectNear(cols, reference, relativeTolerance: 0, absoluteTolerance: 0)
        var generator = RandomGenerator(seed: 2)
        let y = uniform(cols.shape, in: -1...1, generator: &generator)
        let folded = y.fold(
            imageShape: inp.shape, kernel: window.kernel, stride: window.stride, padding: window.padding)
        let referenceFolded = Tensor.referenceFold(
            y, imageShape: inp.shape, kernel: window.kernel, stride: window.stride, padding: window.padding)
        expectNear(folded, referenceFolded, relativeTolerance: 1e-6, absoluteTolerance: 1e-6)
    }

    @Test("unfold and fold split over threads (a piece starting inside an image) equal the reference loops")
    func kernelsSplitOverThreads() {
        // 21 images of 7 lines of windows: the cores' pieces of 147 lines start inside an image.
        var generator = RandomGenerator(seed: 15)
        let x = uniform([21, 16, 13, 13], in: -1...1, generator: &generator)
        let cols = x.unfold(kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        #expect(cols.shape == [21 * 7 * 7, 16 * 9])
        let reference = Tensor.referenceUnfold(x, kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        expectNear(cols, reference, relativeTolerance: 0, absoluteTolerance: 0)
        let folded = cols.fold(imageShape: x.shape, kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        let referenceFolded = Tensor.referenceFold(
            cols, imageShape: x.shape, kernel: (3, 3), stride: (2, 2), padding: (1, 1))
        expectNear(folded, referenceFolded, relativeTolerance: 1e-6, absoluteTolerance: 1e-6)
    }

    @Test("fold is unfold's adjoint: ⟨unfold(x), y⟩ = ⟨x, fold(y)⟩", arguments: ConvolutionCase.all)
    func foldIsAdjoint(_ t: ConvolutionCase) {
        let (x, _, _, _) = convolutionTensors(t, seed: 3)
        let window = (kernel: (t.kh, t.kw), stride: (t.stride, t.stride), padding: (t.padding, t.padding))
        let cols = x.unfold(kernel: window.kernel, stride: window.stride, padding: window.padding)
        #expect(cols.shape == [t.n * t.oh * t.ow, t.cIn * t.kh * t.kw])
        var generator = RandomGenerator(seed: 4)
        let y = uniform(cols.shape, in: -1...1, generator: &generator)
        let folded = y.fold(imageShape: x.shape, kernel: window.kernel, stride: window.stride, padding: window.padding)
        let left = dot(cols, y)
        let right = dot(x, folded)
        #expect(abs(left - right) <= 1e-5 * max(1, abs(left)), "⟨unfold(x), y⟩ = \(left), ⟨x, fold(y)⟩ = \(right)")
    }

    @Test("autograd's derivatives of unfold, fold and permute against finite differences")
    func derivativesOfTheNewOps() {
        var generator = RandomGenerator(seed: 5)
        let x = uniform([2, 3, 5, 4], in: -1...1, generator: &generator)
        expectGradientsMatchFiniteDifferences([x], "unfold") {
            $0[0].unfold(kernel: (3, 2), stride: (2, 1), padding: (1, 2))
        }
        let cols = uniform([2 * 3 * 2, 3 * 2 * 2], in: -1...1, generator: &generator)
        expectGradientsMatchFiniteDifferences([cols], "fold") {
            $0[0].fold(imageShape: [2, 3, 5, 4], kernel: (2, 2), stride: (2, 2), padding: (1, 0))
        }
        expectGradientsMatchFiniteDifferences([x], "permute") { $0[0].permute([2, 0, 3, 1]).contiguous() }
    }

    @Test("permute is a view: element [i, j, k] of permute([2, 0, 1]) is element [j, k, i]")
    func permuteReorders() {
        var generator = RandomGenerator(seed: 6)
        let x = uniform([2, 3, 4], in: -1...1, generator: &generator)
        let y = x.permute([2, 0, 1])
        #expect(y.shape == [4, 2, 3])
        #expect(y.storage === x.storage)
        for i in 0..<4 {
            for j in 0..<2 {
                for k in 0..<3 { #expect(y[i, j, k] == x[j, k, i]) }
            }
        }
        #expect(x.permute([-1, 0, 1]).shape == [4, 2, 3])
        expectNear(y.permute(Tensor.inversePermutation([2, 0, 1])), x, relativeTolerance: 0, absoluteTolerance: 0)
    }

    @Test("permutedContiguous(dims) equals permute(dims).contiguous(), the fast transposes included")
    func permutedContiguous() {
        var generator = RandomGenerator(seed: 16)
        let cases: [([Int], [Int])] = [
            ([3, 13, 11, 19], [0, 3, 1, 2]),  // NHWC to NCHW, sizes not multiples of 8
            ([3, 19, 13, 11], [0, 2, 3, 1]),  // NCHW to NHWC
            ([2, 16, 24, 8], [0, 2, 3, 1]),  // whole 8 × 8 blocks
            ([17, 9], [1, 0]),  // one matrix
            ([2, 3, 4], [2, 1, 0]),  // not a batch of transposes: copied by contiguous()
            ([2, 3, 4, 5], [0, -1, 1, 2]),
        ]
        for (shape, dims) in cases {
            let x = uniform(shape, in: -1...1, generator: &generator)
            let fast = x.permutedContiguous(dims)
            #expect(fast.isContiguous, "\(shape) \(dims)")
            expectNear(
                fast, x.permute(dims).contiguous(), relativeTolerance: 0, absoluteTolerance: 0, "\(shape) \(dims)")
        }
        // 128 NHWC images of 14 × 14 × 64, split over the cores.
        let large = uniform([128, 14, 14, 64], in: -1...1, generator: &generator)
        let fast = large.permutedContiguous([0, 3, 1, 2])
        expectNear(fast, large.permute([0, 3, 1, 2]).contiguous(), relativeTolerance: 0, absoluteTolerance: 0)
        // Autograd records it as permute then contiguous.
        let x = uniform([2, 3, 4, 5], in: -1...1, generator: &generator)
        expectGradientsMatchFiniteDifferences([x], "permutedContiguous") { $0[0].permutedContiguous([0, 2, 3, 1]) }
    }

    // MARK: Conv2d

    @Test("Conv2d's forward equals the direct loop in Double, on both paths", arguments: ConvolutionCase.all)
    func convolutionForward(_ t: ConvolutionCase) {
        let (inp, w, b, _) = convolutionTensors(t, seed: 7)
        let layer = Conv2d(w, b, stride: t.stride, padding: t.padding)
        let fast = layer(inp)
        #expect(fast.shape == [t.n, t.cOut, t.oh, t.ow])
        let direct = directConvolution(inp, w, b, t)
        expectNear(fast, direct, relativeTolerance: 1e-5, absoluteTolerance: 1e-5, "fast path")
        // The recorded composition gives the same values.
        inp.requiresGrad = true
        let recorded = layer(inp)
        #expect(!recorded.isLeaf)
        expectNear(recorded, fast, relativeTolerance: 1e-5, absoluteTolerance: 1e-6, "recording path")
    }

    @Test("Conv2d's .g against finite differences of the direct loop", arguments: ConvolutionCase.all)
    func convolutionBackwardAgainstFiniteDifferences(_ t: ConvolutionCase) {
        let (inp, w, b, r) = convolutionTensors(t, seed: 8)
        let layer = Conv2d(w, b, stride: t.stride, padding: t.padding)
        layer(inp).g = r
        layer.backward()
        let loss = { dot(directConvolution(inp, w, b, t), r) }
        for (name, tensor) in [("inp", inp), ("w", w)] + (b.map { [("b", $0)] } ?? []) {
            #expect(tensor.g.shape == tensor.shape)
            let estimates = finiteDifferences(of: loss, withRespectTo: tensor)
            expectNear(tensor.g, estimates, relativeTolerance: 1e-4, absoluteTolerance: 1e-4, Comment(rawValue: name))
        }
    }

    @Test("Conv2d's .g equals autograd's .grad through unfold, •, +, permute", arguments: ConvolutionCase.all)
    func convolutionBackwardAgainstAutograd(_ t: ConvolutionCase) throws {
        let (inp, w, b, r) = convolutionTensors(t, seed: 9)
        let tensors = [inp, w] + (b.map { [$0] } ?? [])
        for tensor in tensors { tensor.requiresGrad = true }
        let layer = Conv2d(w, b, stride: t.stride, padding: t.padding)
        let out = layer(inp)
        (out * r).sum().backward()
        out.g = r
        GradMode.withNoGrad { layer.backward() }
        for (name, tensor) in zip(["inp", "w", "b"], tensors) {
            expectNear(
                tensor.g, try #require(tensor.grad), relativeTolerance: 1e-4, absoluteTolerance: 1e-5,
                Comment(rawValue: name))
        }
    }

    @Test("Conv2d without needsInputGradient writes no inp.g (an earlier pass's is removed) and still writes w.g")
    func convolutionSkipsInputGradient() {
        let t = ConvolutionCase.all[0]
        let (inp, w, b, r) = convolutionTensors(t, seed: 10)
        let layer = Conv2d(w, b, stride: t.stride, padding: t.padding)
        layer(inp).g = r
        layer.backward()
        #expect(inp.g?.shape == inp.shape)
        layer.needsInputGradient = false
        layer(inp).g = r
        layer.backward()
        #expect(inp.g == nil)
        #expect(w.g.shape == w.shape)
        #expect(layer.parameters.count == 2 && Conv2d(w, nil).parameters.count == 1)
        #expect(Conv2d(w, nil).namedParameters.map(\.name) == ["w"])
    }

    // MARK: The direct kernel (convolutions at stride 1)

    /// Stride-1 cases for the direct kernel: output widths below, at and past a vector of eight
    /// (1, 5, 8, 9, 14, 16, 17, 19, 28), kernels from 1 × 1 to 5 × 5 and one wider than eight (1 × 9),
    /// one to sixteen channels (windows of 1 to 144 values), padding 0 to 2, with and without bias.
    static let directCases: [ConvolutionCase] = [
        .init(n: 2, cIn: 1, h: 28, w: 28, cOut: 3, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        .init(n: 2, cIn: 1, h: 7, w: 5, cOut: 2, kh: 3, kw: 3, stride: 1, padding: 2, bias: false),
        .init(n: 2, cIn: 3, h: 5, w: 9, cOut: 3, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        .init(n: 2, cIn: 1, h: 6, w: 17, cOut: 2, kh: 5, kw: 5, stride: 1, padding: 2, bias: true),
        .init(n: 1, cIn: 3, h: 4, w: 8, cOut: 5, kh: 1, kw: 1, stride: 1, padding: 0, bias: true),
        .init(n: 2, cIn: 1, h: 3, w: 24, cOut: 2, kh: 1, kw: 9, stride: 1, padding: 0, bias: false),
        .init(n: 1, cIn: 1, h: 3, w: 3, cOut: 1, kh: 3, kw: 3, stride: 1, padding: 0, bias: true),
        // Deeper windows (the convnet's second layer, 144 values). Five channels: a tile of four
        // and one more.
        .init(n: 2, cIn: 16, h: 14, w: 14, cOut: 5, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        .init(n: 1, cIn: 4, h: 9, w: 21, cOut: 6, kh: 3, kw: 3, stride: 1, padding: 0, bias: false),
    ]

    @Test("the direct kernel: forward equals the direct loop in Double", arguments: directCases)
    func directForward(_ t: ConvolutionCase) throws {
        let (inp, w, b, _) = convolutionTensors(t, seed: 11)
        try #require(
            Tensor.conv2dDirectFits(imageShape: inp.shape, weights: w, stride: 1, padding: t.padding),
            "the direct kernel needs AVX2 (this CPU has it not)")
        let out = Tensor.conv2dDirect(inp, weights: w, bias: b, padding: t.padding)
        #expect(out.shape == [t.n, t.cOut, t.oh, t.ow])
        expectNear(out, directConvolution(inp, w, b, t), relativeTolerance: 1e-5, absoluteTolerance: 1e-5)
        // The layer takes it for a first layer, and reads the same values.
        let layer = Conv2d(w, b, stride: 1, padding: t.padding)
        layer.needsInputGradient = false
        #expect(layer(inp).values == out.values)
    }

    /// Output widths around the 16-wide vector (and 8-wide pairs), output channels around the
    /// tiles of 8, 4 and 1, 3×3, 5×5 and 1×1 windows.
    static let vectorEdgeCases: [ConvolutionCase] = [
        .init(n: 2, cIn: 3, h: 5, w: 16, cOut: 8, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        .init(n: 1, cIn: 2, h: 4, w: 17, cOut: 9, kh: 3, kw: 3, stride: 1, padding: 1, bias: false),
        .init(n: 1, cIn: 16, h: 14, w: 14, cOut: 13, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        .init(n: 2, cIn: 1, h: 6, w: 33, cOut: 16, kh: 5, kw: 5, stride: 1, padding: 2, bias: true),
        .init(n: 1, cIn: 3, h: 3, w: 31, cOut: 12, kh: 1, kw: 1, stride: 1, padding: 0, bias: true),
        .init(n: 1, cIn: 1, h: 28, w: 28, cOut: 16, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
    ]

    /// Where the machine has AVX-512, the forward pass runs sixteen outputs a vector and eight
    /// channels a tile: the same chains as the AVX2 path, so the same bits; and near the loops.
    @Test(
        "the direct kernel: the AVX-512 forward pass is the AVX2 one, bit for bit",
        .enabled(if: Tensor.SkinnyInstructionSet.avx512.isAvailable), arguments: directCases + vectorEdgeCases)
    func directForwardInstructionSets(_ t: ConvolutionCase) throws {
        let (inp, w, b, _) = convolutionTensors(t, seed: 13)
        try #require(Tensor.conv2dDirectFits(imageShape: inp.shape, weights: w, stride: 1, padding: t.padding))
        let wide = KernelInstructions.withAVX512(allowed: true) {
            Tensor.conv2dDirect(inp, weights: w, bias: b, padding: t.padding)
        }
        let narrow = KernelInstructions.withAVX512(allowed: false) {
            Tensor.conv2dDirect(inp, weights: w, bias: b, padding: t.padding)
        }
        #expect(wide.values.map(\.bitPattern) == narrow.values.map(\.bitPattern))
        expectNear(wide, directConvolution(inp, w, b, t), relativeTolerance: 1e-5, absoluteTolerance: 1e-5)
    }

    /// Around the channel tiles' edges: 1 to 40 output channels (vectors of 8 in groups of 4, 2
    /// and 1, a last vector part empty), planes of 1 to 196 pixels (tiles of 3 and 6 pixels, a
    /// last tile short, tiles spanning rows), 1 × 1 to 5 × 5 windows, with and without bias.
    static let channelTileCases: [ConvolutionCase] = [
        .init(n: 2, cIn: 16, h: 14, w: 14, cOut: 32, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        .init(n: 1, cIn: 32, h: 14, w: 14, cOut: 16, kh: 3, kw: 3, stride: 1, padding: 1, bias: false),
        .init(n: 2, cIn: 5, h: 7, w: 7, cOut: 40, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        .init(n: 1, cIn: 3, h: 4, w: 4, cOut: 33, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        .init(n: 2, cIn: 2, h: 3, w: 11, cOut: 9, kh: 1, kw: 1, stride: 1, padding: 0, bias: false),
        .init(n: 1, cIn: 4, h: 5, w: 5, cOut: 7, kh: 5, kw: 5, stride: 1, padding: 2, bias: true),
        .init(n: 2, cIn: 1, h: 1, w: 1, cOut: 24, kh: 1, kw: 1, stride: 1, padding: 0, bias: true),
        .init(n: 1, cIn: 2, h: 3, w: 3, cOut: 1, kh: 3, kw: 3, stride: 1, padding: 0, bias: false),
        .init(n: 1, cIn: 3, h: 6, w: 9, cOut: 17, kh: 2, kw: 3, stride: 1, padding: 1, bias: true),
    ]

    /// Each output is one fused multiply-add chain over its window in the order (c, ky, kx), from
    /// 0, then `+ b[o]` (nothing added without a bias): a scalar loop written from that definition
    /// gives the bits that the row tiles, the channel tiles and the layer's choice must all give.
    @Test(
        "the direct kernel: rows and channel tiles give the bits of one FMA chain per output",
        arguments: channelTileCases + directCases + vectorEdgeCases)
    func directForwardTiles(_ t: ConvolutionCase) throws {
        let (inp, w, b, _) = convolutionTensors(t, seed: 17)
        try #require(Tensor.conv2dDirectFits(imageShape: inp.shape, weights: w, stride: 1, padding: t.padding))
        let (x, weights, bias) = (inp.values, w.values, b?.values)
        var expected = [Float](repeating: 0, count: t.n * t.cOut * t.oh * t.ow)
        for img in 0..<t.n {
            for o in 0..<t.cOut {
                for oy in 0..<t.oh {
                    for ox in 0..<t.ow {
                        var sum: Float = 0
                        for c in 0..<t.cIn {
                            for ky in 0..<t.kh {
                                for kx in 0..<t.kw {
                                    let (iy, ix) = (oy - t.padding + ky, ox - t.padding + kx)
                                    let inside = (0..<t.h).contains(iy) && (0..<t.w).contains(ix)
                                    let value = inside ? x[((img * t.cIn + c) * t.h + iy) * t.w + ix] : 0
                                    sum = sum.addingProduct(weights[((o * t.cIn + c) * t.kh + ky) * t.kw + kx], value)
                                }
                            }
                        }
                        if let bias { sum += bias[o] }
                        expected[((img * t.cOut + o) * t.oh + oy) * t.ow + ox] = sum
                    }
                }
            }
        }
        for tiles in Tensor.DirectTiles.allCases {
            let out = Tensor.conv2dDirect(inp, weights: w, bias: b, padding: t.padding, tiles: tiles)
            #expect(out.values.map(\.bitPattern) == expected.map(\.bitPattern), "tiles: \(tiles)")
        }
    }

    /// The weight gradient by output channels sums each weight in one chain, image by image and
    /// pixel by pixel (row-major); the bias gradient in one chain of additions. With one image
    /// there is one piece of the batch, so a scalar loop written from that order gives its bits.
    /// Both layouts, on two images, against the sums in Double.
    @Test(
        "the direct weight gradient: channels give the bits of one FMA chain per weight; both layouts near Double",
        arguments: channelTileCases + vectorEdgeCases)
    func directWeightGradientLayouts(_ t: ConvolutionCase) throws {
        for n in [1, 2] {
            let c = ConvolutionCase(
                n: n, cIn: t.cIn, h: t.h, w: t.w, cOut: t.cOut, kh: t.kh, kw: t.kw, stride: 1, padding: t.padding,
                bias: true)
            let (inp, w, _, r) = convolutionTensors(c, seed: 19)
            try #require(Tensor.conv2dDirectFits(imageShape: inp.shape, weights: w, stride: 1, padding: c.padding))
            let (x, g) = (inp.values, r.values)
            let k = c.cIn * c.kh * c.kw
            var chained = [Float](repeating: 0, count: c.cOut * k), chainedBias = [Float](repeating: 0, count: c.cOut)
            var exact = [Double](repeating: 0, count: c.cOut * k), exactBias = [Double](repeating: 0, count: c.cOut)
            for o in 0..<c.cOut {
                for img in 0..<n {
                    for oy in 0..<c.oh {
                        for ox in 0..<c.ow {
                            let gradient = g[((img * c.cOut + o) * c.oh + oy) * c.ow + ox]
                            chainedBias[o] += gradient
                            exactBias[o] += Double(gradient)
                            for position in 0..<k {
                                let (ch, ky, kx) = (position / (c.kh * c.kw), position / c.kw % c.kh, position % c.kw)
                                let (iy, ix) = (oy - c.padding + ky, ox - c.padding + kx)
                                let inside = (0..<c.h).contains(iy) && (0..<c.w).contains(ix)
                                let value = inside ? x[((img * c.cIn + ch) * c.h + iy) * c.w + ix] : 0
                                chained[o * k + position].addProduct(value, gradient)
                                exact[o * k + position] += Double(value) * Double(gradient)
                            }
                        }
                    }
                }
            }
            for tiles in [Tensor.DirectTiles.rows, .channels] {
                let gradients = Tensor.conv2dDirectBackward(
                    r, input: inp, weights: w, padding: c.padding, bias: true, tiles: tiles)
                let b = try #require(gradients.b)
                let label = Comment(rawValue: "\(tiles), \(n) image(s)")
                expectNear(gradients.w, exact, relativeTolerance: 1e-5, absoluteTolerance: 1e-5, label)
                expectNear(b, exactBias, relativeTolerance: 1e-5, absoluteTolerance: 1e-5, label)
                if tiles == .channels && n == 1 {
                    #expect(gradients.w.values.map(\.bitPattern) == chained.map(\.bitPattern), label)
                    #expect(b.values.map(\.bitPattern) == chainedBias.map(\.bitPattern), label)
                }
            }
        }
    }

    @Test(
        "the direct kernel: the layer's .g against finite differences and autograd",
        arguments: directCases + vectorEdgeCases + channelTileCases)
    func directBackward(_ t: ConvolutionCase) throws {
        let (inp, w, b, r) = convolutionTensors(t, seed: 12)
        try #require(
            Tensor.conv2dDirectFits(imageShape: inp.shape, weights: w, stride: 1, padding: t.padding),
            "the direct kernel needs AVX2 (this CPU has it not)")
        // Autograd through unfold, •, + and permute, on copies that require gradients.
        let (inp2, w2) = (Tensor(shape: inp.shape, values: inp.values), Tensor(shape: w.shape, values: w.values))
        let b2 = b.map { Tensor(shape: $0.shape, values: $0.values) }
        for tensor in [inp2, w2] + (b2.map { [$0] } ?? []) { tensor.requiresGrad = true }
        (Conv2d(w2, b2, stride: 1, padding: t.padding)(inp2) * r).sum().backward()
        // Finite differences of the Double loop where the weights are few (the deep cases have
        // hundreds, each two passes of the loop: autograd checks those alone).
        let loss = { dot(directConvolution(inp, w, b, t), r) }
        let wEstimates = w.count <= 100 ? finiteDifferences(of: loss, withRespectTo: w) : nil
        let bEstimates = b.map { finiteDifferences(of: loss, withRespectTo: $0) }
        // A first layer (w.g and b.g from the images directly), and a layer that also writes inp.g
        // (a direct convolution of out.g for square kernels, else through unfolded windows).
        for needsInputGradient in [false, true] {
            let label = needsInputGradient ? "with inp.g" : "without inp.g"
            inp.g = nil
            let layer = Conv2d(w, b, stride: 1, padding: t.padding)
            layer.needsInputGradient = needsInputGradient
            layer(inp).g = r
            layer.backward()
            if let wEstimates {
                expectNear(
                    w.g, wEstimates, relativeTolerance: 1e-4, absoluteTolerance: 1e-4, "w, finite differences, \(label)"
                )
            }
            expectNear(
                w.g, try #require(w2.grad), relativeTolerance: 1e-4, absoluteTolerance: 1e-5, "w, autograd, \(label)")
            if let b, let b2, let bEstimates {
                expectNear(
                    b.g, bEstimates, relativeTolerance: 1e-4, absoluteTolerance: 1e-4, "b, finite differences, \(label)"
                )
                expectNear(
                    b.g, try #require(b2.grad), relativeTolerance: 1e-4, absoluteTolerance: 1e-5,
                    "b, autograd, \(label)")
            }
            if needsInputGradient {
                expectNear(
                    inp.g, try #require(inp2.grad), relativeTolerance: 1e-4, absoluteTolerance: 1e-5, "inp, autograd")
            } else {
                #expect(inp.g == nil)
            }
            // cols, which the direct kernel never made, are unfolded when read, and kept.
            let cols = try #require(layer.cols)
            let reference = Tensor.referenceUnfold(
                inp, kernel: (t.kh, t.kw), stride: (1, 1), padding: (t.padding, t.padding))
            #expect(cols.values == reference.values)
            #expect(layer.cols === cols)
        }
    }

    @Test(
        "the direct kernel's gradients are the same bits on one thread and on two",
        arguments: [
            ConvolutionCase(n: 40, cIn: 1, h: 28, w: 28, cOut: 16, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
            ConvolutionCase(n: 24, cIn: 16, h: 14, w: 14, cOut: 32, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
            // By output channels (7-wide planes).
            ConvolutionCase(n: 24, cIn: 8, h: 7, w: 7, cOut: 20, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        ])
    func directBackwardThreads(_ t: ConvolutionCase) throws {
        let (inp, w, b, r) = convolutionTensors(t, seed: 13)
        try #require(
            Tensor.conv2dDirectFits(imageShape: inp.shape, weights: w, stride: 1, padding: 1),
            "the direct kernel needs AVX2 (this CPU has it not)")
        let before = Parallel.workers
        defer { Parallel.setWorkers(before) }
        var results: [[Float]] = []
        for threads in [1, 2] {
            Parallel.setWorkers(threads)
            let gradients = Tensor.conv2dDirectBackward(r, input: inp, weights: w, padding: 1, bias: true)
            results.append(gradients.w.values + (try #require(gradients.b)).values)
            _ = b
        }
        #expect(results[0] == results[1])
    }

    @Test("Conv2d stops naming both shapes when the channels do not fit")
    func convolutionChannelMismatch() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Conv2d(Tensor.zeros([4, 3, 3, 3]), nil)(Tensor.zeros([1, 2, 5, 5]))
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("[1, 2, 5, 5]") && message.contains("[4, 3, 3, 3]"), "\(message)")
    }

    @Test("fold stops naming both shapes when the columns do not fit the images")
    func foldShapeMismatch() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor.zeros([10, 9]).fold(imageShape: [1, 1, 4, 4], kernel: (3, 3))
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("[10, 9]") && message.contains("[1, 1, 4, 4]"), "\(message)")
    }

    // MARK: Pooling

    @Test("MaxPool2d and AvgPool2d forwards equal the direct loops, on both paths", arguments: PoolingCase.all)
    func poolingForward(_ t: PoolingCase) {
        let inp = distinctValues([t.n, t.c, t.h, t.w], seed: 11)
        for mean in [false, true] {
            let layer = poolingLayer(t, mean: mean)
            let label = Comment(rawValue: mean ? "AvgPool2d" : "MaxPool2d")
            inp.requiresGrad = false
            let fast = layer(inp)
            #expect(fast.shape == [t.n, t.c, t.oh, t.ow], label)
            expectNear(fast, directPooling(inp, t, mean: mean), relativeTolerance: 1e-6, absoluteTolerance: 1e-6, label)
            inp.requiresGrad = true
            let recorded = layer(inp)
            #expect(!recorded.isLeaf, label)
            expectNear(recorded, fast, relativeTolerance: 1e-5, absoluteTolerance: 1e-6, label)
        }
    }

    @Test("pooling's .g against finite differences and autograd's .grad", arguments: PoolingCase.all)
    func poolingBackward(_ t: PoolingCase) throws {
        var generator = RandomGenerator(seed: 12)
        let r = uniform([t.n, t.c, t.oh, t.ow], in: -1...1, generator: &generator)
        for mean in [false, true] {
            let inp = distinctValues([t.n, t.c, t.h, t.w], seed: 13)
            let layer = poolingLayer(t, mean: mean)
            let label = Comment(rawValue: mean ? "AvgPool2d" : "MaxPool2d")
            layer(inp).g = r
            layer.backward()
            let estimates = finiteDifferences(of: { dot(directPooling(inp, t, mean: mean), r) }, withRespectTo: inp)
            expectNear(inp.g, estimates, relativeTolerance: 1e-4, absoluteTolerance: 1e-5, label)
            let handWritten = inp.g!
            inp.requiresGrad = true
            let out = layer(inp)
            (out * r).sum().backward()
            expectNear(handWritten, try #require(inp.grad), relativeTolerance: 1e-5, absoluteTolerance: 1e-6, label)
        }
    }

    @Test("MaxPool2d at a tie: the gradient goes to the first maximum, and pieces marks it -1")
    func maxPoolTie() throws {
        // Two 2×2 windows side by side; the first holds 0.9 twice, the second once.
        let inp = Tensor(shape: [1, 1, 2, 4], values: [0.5, 0.9, 0.1, 0.7, 0.9, 0.2, 0.3, 0.0])
        let layer = MaxPool2d(kernel: 2)
        let out = layer(inp)
        expectNear(out, Tensor(shape: [1, 1, 1, 2], values: [0.9, 0.7]), relativeTolerance: 0, absoluteTolerance: 0)
        #expect(layer.pieces == [-1, 1])
        out.g = Tensor(shape: [1, 1, 1, 2], values: [2, 3])
        layer.backward()
        let expected = Tensor(shape: [1, 1, 2, 4], values: [0, 2, 0, 3, 0, 0, 0, 0])
        expectNear(inp.g, expected, relativeTolerance: 0, absoluteTolerance: 0)
        // Autograd's max(1) makes the same choice.
        inp.requiresGrad = true
        (layer(inp) * out.g).sum().backward()
        expectNear(try #require(inp.grad), expected, relativeTolerance: 0, absoluteTolerance: 0)
        #expect(layer.pieces == [-1, 1])
    }

    @Test("MaxPool2d 2×2 at stride 2 (the vector kernel) equals the direct loops on every width, ties included")
    func maxPoolVectorKernelEdges() {
        var generator = RandomGenerator(seed: 15)
        for (h, w) in [(2, 2), (3, 5), (4, 14), (5, 17), (2, 30), (7, 33), (3, 35), (6, 28), (8, 6), (14, 14), (9, 4)] {
            let (n, c, oh, ow) = (2, 3, h / 2, w / 2)
            // Values from {0, 1, 2, 3}: most windows hold their maximum twice or more.
            let values = (0..<(n * c * h * w)).map { _ in Float(Int(generator.nextUniform() * 4)) }
            let inp = Tensor(shape: [n, c, h, w], values: values)
            let layer = MaxPool2d(kernel: 2)
            let out = layer(inp)
            var expectedOut: [Float] = []
            var expectedPieces: [Int32] = []
            var expectedGradient = [Float](repeating: 0, count: values.count)
            let r = (0..<(n * c * oh * ow)).map { Float($0 % 7) + 0.5 }
            for plane in 0..<(n * c) {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        let window = (0..<4).map { values[plane * h * w + (2 * oy + $0 / 2) * w + 2 * ox + $0 % 2] }
                        let best = window.max()!
                        let first = window.firstIndex(of: best)!
                        expectedOut.append(best)
                        expectedPieces.append(window.filter { $0 == best }.count > 1 ? -1 : Int32(first))
                        expectedGradient[plane * h * w + (2 * oy + first / 2) * w + 2 * ox + first % 2] +=
                            r[expectedOut.count - 1]
                    }
                }
            }
            let label = Comment(rawValue: "h \(h), w \(w)")
            #expect(out.values == expectedOut, label)
            #expect(layer.pieces == expectedPieces, label)
            out.g = Tensor(shape: out.shape, values: r)
            layer.backward()
            #expect(inp.g.values == expectedGradient, label)
        }
    }

    @Test("the pooling kernels of any window, stride and padding equal plain loops, bit for bit, on every edge")
    func poolingKernelsOnEveryEdge() {
        // The vector kernels run eight windows of a row at a time where they lie inside the
        // plane's columns, and the per-window loop elsewhere: these loops, written here from the
        // definitions with the kernels' rounding, are what each output must equal to the bit.
        // Max pooling sees values from {0, 1, 2, 3} (ties in most windows), -0 and NaN; average
        // pooling, values of many sizes, so that any other order of the additions shows.
        var generator = RandomGenerator(seed: 16)
        for kernel in 1...5 {
            for stride in 1...4 {
                for padding in 0...(kernel / 2) {
                    for h in [1, 3, 6] {
                        for w in [1, 2, 3, 5, 8, 9, 13, 16, 17, 23, 30, 40, 47] {
                            guard h + 2 * padding >= kernel && w + 2 * padding >= kernel else { continue }
                            let shape = [2, 3, h, w]
                            let count = shape.reduce(1, *)
                            let ties = (0..<count).map { _ -> Float in
                                let u = generator.nextUniform()
                                return u < 0.02 ? .nan : u < 0.06 ? -0.0 : Float(Int(u * 4))
                            }
                            let sizes = (0..<count).map { _ in
                                Float(generator.nextUniform() - 0.5) * Float(1 << generator.nextIndex(below: 20))
                            }
                            let label = Comment(
                                rawValue: "[2, 3, \(h), \(w)] kernel \(kernel) stride \(stride) padding \(padding)")
                            checkPooling(
                                ties, sizes, shape, kernel: kernel, stride: stride, padding: padding,
                                generator: &generator, label)
                        }
                    }
                }
            }
        }
    }

    @Test("MaxPool2d's pieces: the window offset of each maximum")
    func maxPoolPieces() {
        let inp = Tensor(shape: [1, 1, 3, 3], values: [1, 2, 3, 4, 9, 5, 6, 7, 8])
        let layer = MaxPool2d(kernel: 2, stride: 1)
        _ = layer(inp)
        #expect(layer.pieces == [3, 2, 1, 0])
    }

    // MARK: Flatten

    @Test("Flatten: out = inp.reshape([n, -1]), inp.g = out.g.reshape(inp.shape)")
    func flatten() throws {
        var generator = RandomGenerator(seed: 14)
        let inp = uniform([2, 3, 2, 2], in: -1...1, generator: &generator)
        let r = uniform([2, 12], in: -1...1, generator: &generator)
        let layer = Flatten()
        let out = layer(inp)
        #expect(out.shape == [2, 12])
        #expect(out.values == inp.values)
        out.g = r
        layer.backward()
        #expect(inp.g.shape == inp.shape)
        #expect(inp.g.values == r.values)
        inp.requiresGrad = true
        (layer(inp) * r).sum().backward()
        expectNear(inp.g, try #require(inp.grad), relativeTolerance: 0, absoluteTolerance: 0)
    }
}

/// Checks `MaxPool2d` on `ties` and `AvgPool2d` (the padding counted and left out) on `sizes`,
/// forward and backward, against plain loops that round as the kernels do: max pooling's
/// maximum by `v > best` (a NaN winning, the last NaN of its window), its winner the first element
/// equal to it row-major, its piece `-1` at a tie or NaN; average pooling's sum in Double from 0,
/// row-major, over the window's elements in the plane, times `1 / k²` in Double, rounded to Float
/// (then times the Float `k² / count` when the padding is left out); the backward passes' sums in
/// Float, window after window in row-major order.
private func checkPooling(
    _ ties: [Float], _ sizes: [Float], _ shape: [Int], kernel k: Int, stride s: Int, padding p: Int,
    generator: inout RandomGenerator, _ label: Comment
) {
    let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1)
    /// The window's elements in the plane, row-major: `(iy, ix)`.
    func window(_ oy: Int, _ ox: Int) -> [(Int, Int)] {
        let (top, left) = (oy * s - p, ox * s - p)
        return (max(top, 0)..<min(top + k, h)).flatMap { iy in (max(left, 0)..<min(left + k, w)).map { (iy, $0) } }
    }
    let gOut = (0..<(planes * oh * ow)).map { _ in Float(generator.nextUniform() * 2 - 1) }
    var (maxOut, maxPieces, maxGradient) = ([Float](), [Int32](), [Float](repeating: 0, count: ties.count))
    var (meanOut, exclusiveOut) = ([Float](), [Float]())
    var (meanGradient, exclusiveGradient) = (
        [Float](repeating: 0, count: ties.count), [Float](repeating: 0, count: ties.count)
    )
    let scale = 1 / (Double(k) * Double(k))
    for plane in 0..<planes {
        for oy in 0..<oh {
            for ox in 0..<ow {
                let elements = window(oy, ox)
                let places = elements.map { plane * h * w + $0.0 * w + $0.1 }
                let o = maxOut.count
                var best = ties[places[0]]
                for place in places where ties[place] > best || ties[place].isNaN { best = ties[place] }
                let hits = places.filter { ties[$0] == best }
                let winner = places.last { ties[$0].isNaN } ?? hits[0]
                let tied = hits.count > 1 || best.isNaN
                let at = elements[places.firstIndex(of: winner)!]
                maxOut.append(best)
                maxPieces.append(tied ? -1 : Int32((at.0 - (oy * s - p)) * k + at.1 - (ox * s - p)))
                maxGradient[winner] += gOut[o]
                let total = places.reduce(0.0) { $0 + Double(sizes[$1]) }
                let mean = Float(total * scale)
                let factor = Float(Double(k) * Double(k) / Double(places.count))
                meanOut.append(mean)
                exclusiveOut.append(mean * factor)
                for place in places {
                    meanGradient[place] += gOut[o] * Float(scale)
                    exclusiveGradient[place] += gOut[o] * factor * Float(scale)
                }
            }
        }
    }
    let maxPool = MaxPool2d(kernel: k, stride: s, padding: p)
    let tiesInput = Tensor(shape: shape, values: ties)
    let out = maxPool(tiesInput)
    #expect(out.values.map(\.bitPattern) == maxOut.map(\.bitPattern), label)
    #expect(maxPool.pieces == maxPieces, label)
    out.g = Tensor(shape: out.shape, values: gOut)
    maxPool.backward()
    #expect(tiesInput.g.values.map(\.bitPattern) == maxGradient.map(\.bitPattern), label)
    for (countIncludePad, expectedOut, expectedGradient) in [
        (true, meanOut, meanGradient), (false, exclusiveOut, exclusiveGradient),
    ] {
        let avgPool = AvgPool2d(kernel: k, stride: s, padding: p, countIncludePad: countIncludePad)
        let sizesInput = Tensor(shape: shape, values: sizes)
        let mean = avgPool(sizesInput)
        let modeLabel = Comment(rawValue: label.rawValue + (countIncludePad ? "" : " excludepad"))
        #expect(mean.values.map(\.bitPattern) == expectedOut.map(\.bitPattern), modeLabel)
        mean.g = Tensor(shape: mean.shape, values: gOut)
        avgPool.backward()
        #expect(sizesInput.g.values.map(\.bitPattern) == expectedGradient.map(\.bitPattern), modeLabel)
    }
}
