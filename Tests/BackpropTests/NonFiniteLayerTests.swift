import Testing

@testable import BackpropCore
@testable import BackpropNetwork

// The convnet layers' fast paths on inputs that hold infinities or NaN, and on an empty batch,
// against PyTorch 2.15 (the values written out below) and against Backprop's own autograd path,
// which composes `unfold`, `•` and `max(1)` and shares no kernel with them.

@Suite("Convnet layers on infinities, NaN and empty batches")
struct NonFiniteLayerTests {
    /// Equal as IEEE values where finite, and NaN or the same infinity where the reference is.
    static func expectSame(_ actual: [Float], _ expected: [Float], _ what: String, tolerance: Float = 1e-4) {
        #expect(actual.count == expected.count, "\(what): \(actual.count) values, expected \(expected.count)")
        for (index, (a, e)) in zip(actual, expected).enumerated() {
            let same =
                e.isNaN ? a.isNaN : (e.isInfinite ? a == e : Swift.abs(a - e) <= tolerance * Swift.max(1, Swift.abs(e)))
            #expect(same, "\(what)[\(index)]: \(a), expected \(e)")
        }
    }

    // x = torch.arange(16.).reshape(1, 1, 4, 4); x[0, 0, 1, 0] = inf; w = torch.ones(1, 1, 3, 3)
    // F.conv2d(x, w).sum().backward() gives w.grad = [inf, 14, 18, inf, 30, 34, 42, 46, 50].
    @Test("a stride-1 convolution's weight gradient over an infinite input value is PyTorch's")
    func convolutionWeightGradientOverInfinity() {
        var values = (0..<16).map { Float($0) }
        values[4] = .infinity
        let conv = Conv2d(Tensor.ones([1, 1, 3, 3]), nil)
        let out = conv(Tensor(shape: [1, 1, 4, 4], values: values))
        out.g = Tensor.ones(out.shape)
        conv.backward()
        Self.expectSame(conv.w.g!.values, [.infinity, 14, 18, .infinity, 30, 34, 42, 46, 50], "w.g")
    }

    @Test(
        "the fast convolution's gradients over infinities and NaN match autograd's, on each kernel layout",
        arguments: [(3, 4, 9, 11, 1), (1, 2, 6, 6, 0), (8, 16, 14, 14, 1)])
    func convolutionGradientsMatchAutograd(cIn: Int, cOut: Int, h: Int, w: Int, padding: Int) {
        var generator = RandomGenerator(seed: UInt64(cIn * 100 + h))
        let x = Tensor.randn([2, cIn, h, w], generator: &generator)
        x.pointer[5] = .infinity
        x.pointer[x.count / 2] = -.infinity
        x.pointer[x.count - 3] = .nan
        let weights = Tensor.randn([cOut, cIn, 3, 3], generator: &generator)
        let bias = Tensor.randn([cOut], generator: &generator)
        let gOut = Tensor.randn([2, cOut, h + 2 * padding - 2, w + 2 * padding - 2], generator: &generator)
        // Autograd: the input and parameters require gradients, so the layer records `unfold` and `•`.
        let (xr, wr, br) = (x.copy(), weights.copy(), bias.copy())
        for t in [xr, wr, br] { t.requiresGrad = true }
        let recorded = Conv2d(wr, br, padding: padding)
        (recorded(xr) * gOut).sum().backward()
        for tiles in Tensor.DirectTiles.allCases {
            let (wg, bg) = Tensor.conv2dDirectBackward(
                gOut, input: x, weights: weights, padding: padding, bias: true, tiles: tiles)
            // The flat planes multiply padding zeros by the image: only `.fastest` must avoid them.
            if tiles == .rows { continue }
            Self.expectSame(wg.values, wr.grad!.values, "w.g, tiles \(tiles)")
            Self.expectSame(bg!.values, br.grad!.values, "b.g, tiles \(tiles)")
        }
    }

    @Test("a convolution's backward over an empty batch gives zero gradients", arguments: [1, 2])
    func convolutionOverEmptyBatch(stride: Int) {
        var generator = RandomGenerator(seed: 12)
        let conv = Conv2d(
            Tensor.randn([64, 64, 3, 3], generator: &generator), Tensor.zeros([64]), stride: stride, padding: 1)
        let out = conv(Tensor.zeros([0, 64, 8, 8]))
        out.g = Tensor.zeros(out.shape)
        conv.backward()
        #expect(conv.w.g!.values.allSatisfy { $0 == 0 } && conv.w.g!.shape == [64, 64, 3, 3])
        #expect(conv.b!.g!.values.allSatisfy { $0 == 0 })
        #expect(conv.inp.g!.shape == [0, 64, 8, 8])
    }

    // PyTorch: x = torch.tensor(V).reshape(1, 1, 2, 16); o, i = F.max_pool2d(x, 2, return_indices=True)
    // with V below (NaN at 1, 6, 9, 18, 19, 30): o = [nan, nan, 28, nan, nan, 29, 27, nan],
    // i = [1, 19, 4, 6, 9, 27, 13, 30] (the last NaN of a window wins); and over V's first 27
    // values as (1, 1, 3, 9) with kernel 3: o = [nan, 28, nan], i = [19, 4, 6].
    static let poolInput: [Float] = [
        0, .nan, 14, 21, 28, 3, .nan, 17, 24, .nan, 6, 13, 20, 27, 2, 9,
        16, 23, .nan, .nan, 12, 19, 26, 1, 8, 15, 22, 29, 4, 11, .nan, 25,
    ]

    @Test(
        "max pooling takes a NaN as its window's maximum, and routes its gradient there, as PyTorch",
        arguments: [
            ([1, 1, 2, 16], 2, [.nan, .nan, 28, .nan, .nan, 29, 27, .nan], [1, 19, 4, 6, 9, 27, 13, 30]),
            ([1, 1, 3, 9], 3, [.nan, 28, .nan], [19, 4, 6]),
        ] as [([Int], Int, [Float], [Int])])
    func maxPoolingPropagatesNaN(shape: [Int], kernel: Int, expected: [Float], winners: [Int]) {
        let count = shape.reduce(1, *)
        let x = Tensor(shape: shape, values: Array(Self.poolInput.prefix(count)))
        let pool = MaxPool2d(kernel: kernel)
        let out = pool(x)
        Self.expectSame(out.values, expected, "out")
        out.g = Tensor.ones(out.shape)
        pool.backward()
        var gradient = [Float](repeating: 0, count: count)
        for winner in winners { gradient[winner] += 1 }
        #expect(pool.inp.g!.values == gradient)
        #expect(pool.pieces.enumerated().allSatisfy { expected[$0.offset].isNaN ? $0.element == -1 : $0.element >= 0 })
    }

    /// Average pooling summed in Float on the fast path, in Double (`mean(1)`) on the recorded one:
    /// their outputs differed by an ulp, so a max pooling after them found other winners at near
    /// ties (gradcheck failed correct models), and a window of large values overflowed to inf on
    /// one path only. Both now sum in Double and scale once: the same bits.
    @Test("average pooling: the fast and recorded paths give the same bits, large values included")
    func averagePoolingPathsAgree() {
        var generator = RandomGenerator(seed: 31)
        for (kernel, stride, padding) in [(3, 1, 1), (2, 2, 0), (3, 2, 1), (5, 1, 2), (4, 3, 2)] {
            for countIncludePad in [true, false] {
                let x = Tensor.randn([2, 3, 7, 6], generator: &generator) * 100
                let pool = AvgPool2d(
                    kernel: kernel, stride: stride, padding: padding, countIncludePad: countIncludePad)
                let fast = pool(x).values
                let recorded = x.copy()
                recorded.requiresGrad = true
                let slow = pool(recorded).values
                #expect(
                    fast.map(\.bitPattern) == slow.map(\.bitPattern),
                    "kernel \(kernel) stride \(stride) pad \(padding) countIncludePad \(countIncludePad)")
            }
        }
        // (3e38 + 3e38 - 3e38) / 9 = 3.33e37, a Float (PyTorch's Float sum overflows to inf here).
        let large = Tensor(shape: [1, 1, 2, 2], values: [3e38, 3e38, -3e38, 0])
        let pool = AvgPool2d(kernel: 3, stride: 1, padding: 1)
        let expected = Float(3e38 / 9.0)
        #expect(pool(large).values == [Float](repeating: expected, count: 4))
        large.requiresGrad = true
        #expect(pool(large).values == [Float](repeating: expected, count: 4))
        // Leaving the padding out: every window's mean is 3e38 (its sum rounded to a Float first
        // overflowed to inf where a window held two elements or more).
        let full = Tensor(shape: [1, 1, 2, 2], values: [Float](repeating: 3e38, count: 4))
        let excluding = AvgPool2d(kernel: 2, stride: 1, padding: 1, countIncludePad: false)
        #expect(excluding(full).values == [Float](repeating: 3e38, count: 9))
        full.requiresGrad = true
        #expect(excluding(full).values == [Float](repeating: 3e38, count: 9))
    }

    /// The case that showed it: gradcheck failed this correct model on Fashion-MNIST's first 8
    /// rows (x: relative error 0.17), the max pooling's winners frozen on the fast path not those
    /// of the recorded one.
    @Test(
        "gradcheck passes an average pooling followed by a max pooling",
        .enabled(if: fashionMNISTInstalled, fashionMNISTMissingNote))
    func averageThenMaxPoolingPassesTheGradientCheck() throws {
        let run = try runBackprop([
            "gradcheck", "--rows", "8", "--layers",
            "avgpool 3 stride 1 pad 1, maxpool 2 stride 1 pad 1, flatten, lin 10",
        ])
        #expect(run.status == 0 && !run.crashed, "\(run.standardOutput.suffix(600))")
    }

    /// A kernel of 3,037,000,500 (k² past Int64) fits a 4×4 image under its padding: the mean
    /// divided by a k² that had overflowed to a negative number.
    @Test("average pooling with a kernel whose square passes Int64: 16 / k², positive")
    func averagePoolingOfAHugeKernel() {
        let k = 3_037_000_500
        let pool = AvgPool2d(kernel: k, padding: k / 2)
        let out = pool(Tensor.ones([1, 1, 4, 4]))
        let expected = Float(16 / (Double(k) * Double(k)))
        #expect(out.shape == [1, 1, 1, 1] && out.values.allSatisfy { $0 == expected }, "\(out.values), \(expected)")
        #expect(throws: ModelDescriptionError.self) {
            try ModelDescription(parsing: "avgpool \(k) pad \(k / 2), flatten, lin 10").shapes(input: [1, 4, 4])
        }
    }

    @Test("one NaN in a window: the fast path and the recorded path agree")
    func maxPoolingPathsAgreeOnOneNaN() {
        let values: [Float] = [1, .nan, 3, 2, 5, 4, 0, -1]  // (1, 1, 2, 4): windows [1, nan; 5, 4], [3, 2; 0, -1]
        let pool = MaxPool2d(kernel: 2)
        let out = pool(Tensor(shape: [1, 1, 2, 4], values: values))
        out.g = Tensor.ones(out.shape)
        pool.backward()
        let x = Tensor(shape: [1, 1, 2, 4], values: values)
        x.requiresGrad = true
        let recorded = MaxPool2d(kernel: 2)(x)
        recorded.sum().backward()
        Self.expectSame(out.values, recorded.values, "out")
        #expect(pool.inp.g!.values == x.grad!.values)
        #expect(x.grad!.values == [0, 1, 1, 0, 0, 0, 0, 0])
    }
}
