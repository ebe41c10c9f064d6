import Dispatch
import Testing

@testable import BackpropCore
@testable import BackpropNetwork

// The tensor API a new user reaches for (issue 14): rows and ranges, cat and stack, tanh, sigmoid,
// abs, min and max, creation and default random numbers. Values are checked against numbers
// worked out by hand (or printed by Python's math module, named where used), gradients against
// hand-derived values and finite differences.

/// The suites below, under one name for `swift test --filter TensorAPITests`.
@Suite("Tensor API")
enum TensorAPITests {}

extension TensorAPITests {
    @Suite("indexing")
    struct Indexing {
        /// A 4×3 matrix holding 0 … 11, row-major.
        private func matrix() -> Tensor { Tensor(shape: [4, 3], values: (0..<12).map(Float.init)) }

        @Test("t[row: i] is row i as a view: a vector of a matrix, a scalar of a vector")
        func rowIsAView() {
            let m = matrix()
            let row = m[row: 2]
            #expect(row.shape == [3])
            #expect(row.values == [6, 7, 8])
            m[2, 1] = 70  // the view sees the change
            #expect(row[1] == 70)
            let element = Tensor([10, 20, 30])[row: 1]
            #expect(element.shape == [])
            #expect(element.item() == 20)
            let cube = Tensor(shape: [2, 2, 2], values: (0..<8).map(Float.init))
            #expect(cube[row: 1].shape == [2, 2])
            #expect(cube[row: 1].values == [4, 5, 6, 7])
        }

        @Test("t[a..<b], t[a...b], t[a...], t[..<b] are rows; t[rows: indices] gathers a copy")
        func rangesAndGathers() {
            let m = matrix()
            #expect(m[1..<3].shape == [2, 3])
            #expect(m[1..<3].values == [3, 4, 5, 6, 7, 8])
            #expect(m[1...2].values == [3, 4, 5, 6, 7, 8])
            #expect(m[3...].values == [9, 10, 11])
            #expect(m[..<1].values == [0, 1, 2])
            #expect(m[4...].shape == [0, 3])
            #expect(m[2..<2].shape == [0, 3])
            let gathered = m[rows: [3, 0, 3]]
            #expect(gathered.shape == [3, 3])
            #expect(gathered.values == [9, 10, 11, 0, 1, 2, 9, 10, 11])
            gathered[0, 0] = -1  // a copy: the original is untouched
            #expect(m[3, 0] == 9)
            // The element subscript still reads one Float.
            #expect(m[1, 2] == 5)
            #expect(Tensor([4, 5])[1] == 5)
        }

        @Test("autograd through rows: the gradient lands in the rows taken, summed where repeated")
        func rowGradients() {
            let x = Tensor(shape: [3, 2], values: [1, 2, 3, 4, 5, 6])
            x.requiresGrad = true
            (x[row: 1].sum() + x[rows: [2, 2]].sum() * 10 + x[..<1].sum() * 100).backward()
            #expect(x.grad?.values == [100, 100, 1, 1, 20, 20])

            var generator = RandomGenerator(seed: 41)
            let y = uniform([4, 3], in: -1...1, generator: &generator)
            expectGradientsMatchFiniteDifferences([y], "row") { $0[0][row: 2] }
            expectGradientsMatchFiniteDifferences([y], "range") { $0[0][1...] }
            expectGradientsMatchFiniteDifferences([y], "gather") { $0[0][rows: [3, 1, 3]] }
        }

        @Test("t[0] on a matrix stops and points to t[row: 0]")
        func elementSubscriptOnAMatrixNamesTheRowForm() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                _ = Tensor.zeros(4, 3)[0]
            }
            let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
            #expect(message.contains("t[row: 0]") && message.contains("[4, 3]"), "\(message)")
        }

        @Test("a range past the last row stops naming the range and the shape")
        func rangeOutOfBoundsNamesTheShape() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                _ = Tensor.zeros(3, 2)[5...]
            }
            let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
            #expect(message.contains("5...") && message.contains("[3, 2]"), "\(message)")
        }
    }

    @Suite("cat and stack")
    struct Joining {
        private var a: Tensor { Tensor([[1, 2, 3], [4, 5, 6]]) }  // (2, 3)
        private var b: Tensor { Tensor([[7, 8, 9]]) }  // (1, 3)

        @Test("cat joins along an existing dimension, first or last")
        func catValues() {
            let rows = Tensor.cat([a, b])
            #expect(rows.shape == [3, 3])
            #expect(rows.values == [1, 2, 3, 4, 5, 6, 7, 8, 9])
            let column = Tensor([[10], [20]])  // (2, 1)
            let columns = Tensor.cat([a, column, a.t().t()], dim: -1)
            #expect(columns.shape == [2, 7])
            #expect(columns.values == [1, 2, 3, 10, 1, 2, 3, 4, 5, 6, 20, 4, 5, 6])
            // A transposed (non-contiguous) input and an empty one.
            let joined = Tensor.cat([a.t(), Tensor.zeros(0, 2), Tensor([[0, 0]])], dim: 0)
            #expect(joined.shape == [4, 2])
            #expect(joined.values == [1, 4, 2, 5, 3, 6, 0, 0])
        }

        @Test("stack joins along a new dimension")
        func stackValues() {
            let u = Tensor([1, 2, 3])
            let v = Tensor([4, 5, 6])
            #expect(Tensor.stack([u, v]).shape == [2, 3])
            #expect(Tensor.stack([u, v]).values == [1, 2, 3, 4, 5, 6])
            #expect(Tensor.stack([u, v], dim: 1).shape == [3, 2])
            #expect(Tensor.stack([u, v], dim: -1).values == [1, 4, 2, 5, 3, 6])
            let scalars = Tensor.stack([Tensor(1), Tensor(2)])
            #expect(scalars.shape == [2])
            #expect(scalars.values == [1, 2])
            let matrices = Tensor.stack([a, a * 10], dim: 1)
            #expect(matrices.shape == [2, 2, 3])
            #expect(matrices.values == [1, 2, 3, 10, 20, 30, 4, 5, 6, 40, 50, 60])
        }

        @Test("autograd: each input gets its slice of the gradient")
        func joiningGradients() {
            let x = Tensor([1, 2])
            let y = Tensor([3, 4, 5])
            x.requiresGrad = true
            y.requiresGrad = true
            (Tensor.cat([x, y, x]) * Tensor([1, 2, 3, 4, 5, 6, 7])).sum().backward()
            #expect(x.grad?.values == [1 + 6, 2 + 7])
            #expect(y.grad?.values == [3, 4, 5])

            var generator = RandomGenerator(seed: 42)
            let p = uniform([2, 3], in: -1...1, generator: &generator)
            let q = uniform([2, 1], in: -1...1, generator: &generator)
            let r = uniform([2, 3], in: -1...1, generator: &generator)
            expectGradientsMatchFiniteDifferences([p, q], "cat dim 1") { Tensor.cat([$0[0], $0[1]], dim: 1) }
            expectGradientsMatchFiniteDifferences([p, r], "cat dim 0") { Tensor.cat([$0[0], $0[1].t().t()]) }
            expectGradientsMatchFiniteDifferences([p, r], "stack dim 1") { Tensor.stack([$0[0], $0[1]], dim: 1) }
            expectGradientsMatchFiniteDifferences([p, r], "stack dim -1") { Tensor.stack([$0[0], $0[1]], dim: -1) }
        }

        @Test("cat of mismatched shapes stops naming both")
        func catNamesBothShapes() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                _ = Tensor.cat([Tensor.zeros(2, 3), Tensor.zeros(2, 4)])
            }
            let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
            #expect(message.contains("cat") && message.contains("[2, 3]") && message.contains("[2, 4]"), "\(message)")
        }
    }

    @Suite("tanh, sigmoid, abs")
    struct Math {
        // Reference values from Python's math module: math.tanh(1) = 0.7615941559557649, …,
        // 1 / (1 + math.exp(-2)) = 0.8807970779778823.

        @Test("tanh and its derivative 1 - tanh²")
        func tanhValues() {
            let x = Tensor([-2, 0, 1, 20])
            x.requiresGrad = true
            let y = x.tanh()
            expectNear(
                y, [-0.9640275800758169, 0, 0.7615941559557649, 1], relativeTolerance: 1e-6, absoluteTolerance: 0)
            y.sum().backward()
            // 1 - tanh²: 0.07065082485316443, 1, 0.41997434161402614, and 1 - 1 = 0 in Float.
            expectNear(x.grad!, [0.07065082485316443, 1, 0.41997434161402614, 0], relativeTolerance: 1e-5)
            var generator = RandomGenerator(seed: 5)
            expectGradientsMatchFiniteDifferences([uniform([3, 4], in: -3...3, generator: &generator)]) { $0[0].tanh() }
        }

        @Test("sigmoid, stable at large |x|, and its derivative σ(1 - σ)")
        func sigmoidValues() {
            let x = Tensor([-3, 0, 2, 100, -100])
            x.requiresGrad = true
            let y = x.sigmoid()
            // 1 / (1 + e³) = 0.04742587317756678; 1 / (1 + e¹⁰⁰) = 3.720075976020836e-44.
            expectNear(
                y, [0.04742587317756678, 0.5, 0.8807970779778823, 1, 3.720075976020836e-44], relativeTolerance: 1e-6,
                absoluteTolerance: 2e-45)
            y.sum().backward()
            // σ(1 - σ): 0.045176659730912, 0.25, 0.10499358540350652, 0, 3.7e-44.
            expectNear(x.grad!, [0.045176659730912, 0.25, 0.10499358540350652, 0, 3.720075976020836e-44])
            var generator = RandomGenerator(seed: 6)
            expectGradientsMatchFiniteDifferences([uniform([3, 4], in: -4...4, generator: &generator)]) {
                $0[0].sigmoid()
            }
        }

        @Test("abs, with derivative sign(x) and 0 at 0")
        func absValues() {
            let x = Tensor([-2.5, 0, 3, -0.0])
            x.requiresGrad = true
            let y = x.abs()
            #expect(y.values == [2.5, 0, 3, 0])
            y.sum().backward()
            #expect(x.grad?.values == [-1, 0, 1, 0])
            // Away from 0, finite differences agree.
            let z = Tensor([[-1.5, 0.7], [2.0, -0.3]])
            expectGradientsMatchFiniteDifferences([z]) { $0[0].abs() }
        }
    }

    @Suite("sin, cos, clamp")
    struct Trigonometry {
        // Reference values from PyTorch 2.15 in float64: torch.tensor([-2., 0., 1., 20.]).sin(), .cos().

        @Test("sin and cos, and their derivatives cos and -sin")
        func sineAndCosine() {
            let x = Tensor([-2, 0, 1, 20])
            x.requiresGrad = true
            let sine = x.sin()
            let sines = [-0.9092974268256817, 0, 0.8414709848078965, 0.9129452507276277]
            let cosines = [-0.4161468365471424, 1, 0.5403023058681398, 0.40808206181339196]
            expectNear(sine, sines, relativeTolerance: 1e-6, absoluteTolerance: 1e-7)
            sine.sum().backward()
            expectNear(x.grad!, cosines, relativeTolerance: 1e-6, absoluteTolerance: 1e-7)
            x.zeroGrad()
            let cosine = x.cos()
            expectNear(cosine, cosines, relativeTolerance: 1e-6, absoluteTolerance: 1e-7)
            cosine.sum().backward()
            expectNear(x.grad!, sines.map { -$0 }, relativeTolerance: 1e-6, absoluteTolerance: 1e-7)
            var generator = RandomGenerator(seed: 7)
            let z = uniform([3, 4], in: -4...4, generator: &generator)
            expectGradientsMatchFiniteDifferences([z], "sin") { $0[0].sin() }
            expectGradientsMatchFiniteDifferences([z], "cos") { ($0[0] * 2).cos() }
        }

        // PyTorch 2.15, x = [-2, -1, -0.5, 0, 0.5, 1, 3, nan], y = x.clamp(…); y.sum().backward():
        //   clamp(-1, 1)   y = [-1, -1, -0.5, 0, 0.5, 1, 1, nan]       x.grad = [0, 0, 1, 1, 1, 0, 0, 0]
        //   clamp(max=0.5) y = [-2, -1, -0.5, 0, 0.5, 0.5, 0.5, nan]   x.grad = [1, 1, 1, 1, 0, 0, 0, 0]
        //   clamp(min=0)   y = [0, 0, 0, 0, 0.5, 1, 3, nan]            x.grad = [0, 0, 0, 0, 1, 1, 1, 0]
        //   clamp(1, -1)   y = [-1, -1, -1, -1, -1, -1, -1, nan]       x.grad = 0 everywhere
        // and x = [-inf, inf, 0.5]: clamp(max=0.5) grad [1, 0, 0], clamp(min=0.5) grad [0, 1, 0],
        // clamp(-inf, inf) grad [0, 0, 1].
        @Test(
            "clamp: values and gradients as PyTorch's, bounds blocking, a missing bound blocking nothing",
            arguments: [
                (Float?(-1), Float?(1), [-1, -1, -0.5, 0, 0.5, 1, 1], [0, 0, 1, 1, 1, 0, 0, 0]),
                (nil, 0.5, [-2, -1, -0.5, 0, 0.5, 0.5, 0.5], [1, 1, 1, 1, 0, 0, 0, 0]),
                (0, nil, [0, 0, 0, 0, 0.5, 1, 3], [0, 0, 0, 0, 1, 1, 1, 0]),
                (1, -1, [-1, -1, -1, -1, -1, -1, -1], [0, 0, 0, 0, 0, 0, 0, 0]),
            ] as [(Float?, Float?, [Float], [Float])])
        func clampValues(lower: Float?, upper: Float?, values: [Float], gradient: [Float]) {
            let x = Tensor([-2, -1, -0.5, 0, 0.5, 1, 3, .nan])
            x.requiresGrad = true
            let y = x.clamp(min: lower, max: upper)
            #expect(Array(y.values.prefix(7)) == values)
            #expect(y.values[7].isNaN)
            y.sum().backward()
            #expect(x.grad?.values == gradient)
        }

        @Test("clamp at infinite inputs and bounds, and against finite differences away from the bounds")
        func clampInfinities() {
            let x = Tensor([-.infinity, .infinity, 0.5])
            for (lower, upper, gradient) in [
                (nil, 0.5, [1, 0, 0]), (0.5, nil, [0, 1, 0]), (-Float.infinity, Float.infinity, [0, 0, 1]),
            ] as [(Float?, Float?, [Float])] {
                x.requiresGrad = true
                x.zeroGrad()
                x.clamp(min: lower, max: upper).sum().backward()
                #expect(x.grad?.values == gradient, "clamp(\(String(describing: lower)), \(String(describing: upper)))")
            }
            let z = Tensor([[-1.5, 0.7, 0.2], [2.0, -0.3, 0.9]])
            expectGradientsMatchFiniteDifferences([z]) { $0[0].clamp(min: -1, max: 1) }
        }

        /// Swift.max(-0.0, 0) is 0: clampMin, clamp and so ReLU turned -0.0 into +0.0, where
        /// torch.clamp_min(torch.tensor([-0.]), 0), torch.clamp(…, 0, 1) and torch.relu give -0.
        @Test("clampMin, clamp and ReLU keep -0.0, as PyTorch's do; NaN stays NaN; min > max gives max")
        func clampKeepsNegativeZero() {
            let x = Tensor([-0.0, 0.0, -1, .nan, 2])
            let results = [
                x.clampMin(0).values, x.clamp(min: 0, max: 1).values, x.clamp(min: 0).values, ReLU()(x).values,
            ]
            for values in results {
                #expect(values[0] == 0 && values[0].sign == .minus, "\(values)")
                #expect(values[1] == 0 && values[1].sign == .plus && values[2] == 0 && values[3].isNaN, "\(values)")
            }
            #expect(x.clamp(max: 0).values[0].sign == .minus)
            // torch.clamp(x, min=2, max=1) is 1 everywhere but the NaN.
            let inverted = x.clamp(min: 2, max: 1).values
            #expect(inverted.enumerated().allSatisfy { $0.offset == 3 ? $0.element.isNaN : $0.element == 1 })
        }

        @Test("clamp without a bound stops")
        func clampWithoutBound() async {
            await #expect(processExitsWith: .failure) { _ = Tensor([1, 2]).clamp() }
        }
    }

    @Suite("special values, against PyTorch 2.15")
    struct SpecialValues {
        // torch.logsumexp(torch.tensor(v), 0) is nan for each v below.
        @Test(
            "logSumExp of a line holding a NaN is NaN, whatever else it holds",
            arguments: [
                [Float.nan], [.nan, -.infinity], [.infinity, .nan], [.nan, .infinity], [1, .nan],
            ])
        func logSumExpWithNaN(values: [Float]) {
            #expect(Tensor(values).logSumExp(0).item().isNaN)
            #expect(Tensor(shape: [values.count, 1], values: values).logSumExp(0).values.allSatisfy { $0.isNaN })
        }

        // x = torch.tensor([-inf, -0., 0., 4., inf, nan, -2.], requires_grad=True); (x ** p).sum().backward(),
        // PyTorch 2.15 (which computes ** 0.5 as sqrt and ** -0.5 as rsqrt; C's pow differs at -inf and -0).
        static let powerInputs: [Float] = [-.infinity, -0.0, 0, 4, .infinity, .nan, -2]
        /// (p, x ** p, its gradient) at ``powerInputs``.
        static let powerCases: [(Float, [Float], [Float])] = [
            (0.5, [.nan, -0.0, 0, 2, .infinity, .nan, .nan], [.nan, -.infinity, .infinity, 0.25, 0, .nan, .nan]),
            (
                -0.5, [.nan, -.infinity, .infinity, 0.5, 0, .nan, .nan],
                [-0.0, -.infinity, -.infinity, -0.0625, -0.0, .nan, .nan]
            ),
            (1.5, [.infinity, 0, 0, 8, .infinity, .nan, .nan], [.nan, -0.0, 0, 3, .infinity, .nan, .nan]),
        ]
        @Test(
            "x ** 0.5, x ** -0.5, x ** 1.5 and sqrt at -inf, ±0, inf and NaN: PyTorch's values and gradients",
            arguments: powerCases)
        func powerAtSpecialValues(p: Float, values: [Float], gradients: [Float]) {
            func bits(_ v: [Float]) -> [UInt32] { v.map { $0.isNaN ? Float.nan.bitPattern : $0.bitPattern } }
            let x = Tensor(Self.powerInputs)
            x.requiresGrad = true
            let y = x ** p
            y.sum().backward()
            #expect(bits(y.values) == bits(values), "x ** \(p)")
            #expect(bits(x.grad!.values) == bits(gradients), "the gradient of x ** \(p)")
            if p == 0.5 {
                let z = Tensor(Self.powerInputs)
                z.requiresGrad = true
                let root = z.sqrt()
                root.sum().backward()
                #expect(bits(root.values) == bits(values) && bits(z.grad!.values) == bits(gradients), "sqrt")
            }
        }

        // torch.tensor(3.).sum(0), .mean(-1), .max(0).values, .logsumexp(0), .squeeze(0) are tensor(3.);
        // .argmax(0) is tensor(0); the gradient of each reduction is 1.
        @Test("a scalar's dimension 0 or -1: the reductions along it give the scalar, as in PyTorch")
        func scalarDimensions() {
            let reductions: [(String, (Tensor) -> Tensor)] = [
                ("sum(0)", { $0.sum(0) }), ("sum(-1, keepDim)", { $0.sum(-1, keepDim: true) }),
                ("mean(0)", { $0.mean(0) }), ("max(0)", { $0.max(0) }), ("min(-1)", { $0.min(-1) }),
                ("logSumExp(0)", { $0.logSumExp(0) }), ("squeeze(0)", { $0.squeeze(0) }),
            ]
            for (name, reduce) in reductions {
                let x = Tensor(Float(3))
                x.requiresGrad = true
                let y = reduce(x)
                #expect(y.shape == [] && y.item() == 3, "\(name)")
                y.backward()
                #expect(x.grad?.shape == [] && x.grad?.item() == 1, "\(name)'s gradient")
            }
            #expect(Tensor(Float(3)).argmax(0) == [0] && Tensor(Float(3)).argmin(-1) == [0])
        }

        @Test("a scalar's dimension 1 stops, naming PyTorch's range [-1, 0]")
        func scalarDimensionOutOfRange() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                _ = Tensor(Float(3)).sum(1)
            }
            let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
            #expect(
                message.contains("sum: dimension 1 out of range (expected to be in range of [-1, 0])"), "\(message)")
        }

        // F.log_softmax(torch.zeros(2, 0), 1) and F.softmax(torch.zeros(0, 3), 0) are empty, of those shapes.
        @Test("softmax and logSoftmax of an empty tensor are empty, of its shape")
        func softmaxOfEmpty() {
            #expect(logSoftmax(Tensor.zeros([2, 0]), dim: 1).shape == [2, 0])
            #expect(softmax(Tensor.zeros([0, 3]), dim: 0).shape == [0, 3])
            let x = Tensor.zeros([0, 3])
            x.requiresGrad = true
            logSoftmax(x).sum().backward()
            #expect(x.grad?.shape == [0, 3])
        }

        // a = torch.tensor([1., 2.], requires_grad=True); a torch.autograd.Function whose backward
        // returns a gradient of the wrong shape for its input that needs none: a.grad = [3, 4].
        @Test("a custom operation's gradient for an input without requiresGrad is ignored, whatever its shape")
        func customGradientForConstantIgnored() {
            let op = CustomOperation(
                name: "product", forward: { $0[0] * $0[1] },
                backward: { g, inputs, _ in [g * inputs[1], g.sum()] })
            let a = Tensor([1, 2])
            a.requiresGrad = true
            Tensor.apply(op, a, Tensor([3, 4])).sum().backward()
            #expect(a.grad?.values == [3, 4])
        }

        // a = torch.tensor([v]); b = torch.tensor([v], requires_grad=True); (a / b).sum().backward():
        // b.grad is -1/v: -1e25 for v = 1e-25, -1e-20 for v = 1e20 (b² leaves Float's range).
        @Test("the divisor's gradient for tiny and huge divisors", arguments: [(Float(1e-25), -1e25), (1e20, -1e-20)])
        func divisorGradient(value: Float, expected: Double) {
            let (a, b) = (Tensor([value]), Tensor([value]))
            b.requiresGrad = true
            (a / b).sum().backward()
            expectNear(b.grad!, [expected], relativeTolerance: 1e-6, absoluteTolerance: 0)
        }

        @Test("rand stays below 1: the draw that rounds to 1 (seed 0, draw 533,109) is the largest Float below it")
        func randBelowOne() {
            var generator = RandomGenerator(seed: 0)
            let r = Tensor.rand([533_110], generator: &generator)
            #expect(r.max().item() < 1)
            #expect(r.values[533_109] == Float(1).nextDown)
            var again = RandomGenerator(seed: 0)
            for _ in 0..<533_109 { _ = again.nextUniform() }
            #expect(Float(again.nextUniform()) == 1, "the draw that rounds to 1")
        }

        @Test("arange of more values than memory can address stops naming the arguments")
        func arangeTooLong() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                _ = Tensor.arange(from: 0, to: 1e30, by: 1)
            }
            let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
            #expect(message.contains("arange from 0.0 to 1e+30 by 1.0"), "\(message)")
        }
    }

    @Suite("min, max, argmin, argmax")
    struct Extrema {
        /// Rows `[3, 1, 4]` and `[1, 5, 1]`.
        private var x: Tensor { Tensor([[3, 1, 4], [1, 5, 1]]) }

        @Test("over one dimension: values, keepDim, and the first index at a tie")
        func perDimension() {
            #expect(x.min(1).values == [1, 1])
            #expect(x.min(0).values == [1, 1, 1])
            #expect(x.min(-1, keepDim: true).shape == [2, 1])
            #expect(x.argmin(1) == [1, 0])  // the row [1, 5, 1] ties: the first wins
            #expect(x.argmin(0) == [1, 0, 1])
            #expect(x.argmax(1) == [2, 1])
        }

        @Test("over all elements: values and row-major positions; NaN propagates")
        func overAllElements() {
            #expect(x.max().shape == [])
            #expect(x.max().item() == 5)
            #expect(x.min().item() == 1)
            #expect(x.argmax() == 4)  // [1, 1]
            #expect(x.argmin() == 1)  // [0, 1], the first of three 1s
            let withNaN = Tensor([1, .nan, 7])
            #expect(withNaN.max().item().isNaN)
            #expect(withNaN.min().item().isNaN)
            #expect(withNaN.argmax() == 1)
            // Along a dimension too, wherever the NaN is (torch.max(dim) and numpy's max and argmax
            // propagate it: [nan, nan], indices [1, 0]); Swift.max had kept the other operand.
            let lines = Tensor([[1, .nan, 2], [.nan, 1, 2], [3, 1, 2]])
            #expect(lines.max(1).values.map(\.isNaN) == [true, true, false])
            #expect(lines.max(1).values[2] == 3)
            #expect(lines.min(1).values.map(\.isNaN) == [true, true, false])
            #expect(lines.argmax(1) == [1, 0, 0])
            #expect(lines.argmin(1) == [1, 0, 1])
            #expect(lines.max(0).values.map(\.isNaN) == [true, true, false])
            #expect(lines.argmax(0) == [1, 0, 0])
            // The gradient goes to the first NaN, the position argmax names.
            let a = lines.copy()
            a.requiresGrad = true
            a.max(1).sum().backward()
            #expect(a.grad?.values == [0, 1, 0, 1, 0, 0, 1, 0, 0])
        }

        @Test("x ** 0 has the gradient 0 everywhere, 0 included (torch: 0, not NaN)")
        func powerZero() {
            let z = Tensor([0, 2, -3])
            z.requiresGrad = true
            (z ** 0).sum().backward()
            #expect(z.grad?.values == [0, 0, 0])
        }

        @Test("autograd: min(dim) to the first minimum; max() and min() share evenly among ties")
        func gradients() {
            let a = Tensor([[3, 1, 4], [1, 5, 1]])
            a.requiresGrad = true
            (a.min(1) * Tensor([10, 20])).sum().backward()
            #expect(a.grad?.values == [0, 10, 0, 20, 0, 0])

            let b = Tensor([1, 3, 3, 2])
            b.requiresGrad = true
            (b.max() * 6).backward()
            #expect(b.grad?.values == [0, 3, 3, 0])

            let c = Tensor([[2, 1], [1, 1]])
            c.requiresGrad = true
            c.min().backward()
            expectNear(c.grad!, [0, 1.0 / 3, 1.0 / 3, 1.0 / 3])

            var generator = RandomGenerator(seed: 8)
            let d = uniform([3, 4], in: -1...1, generator: &generator)  // no ties
            expectGradientsMatchFiniteDifferences([d], "min(1)") { $0[0].min(1) }
            expectGradientsMatchFiniteDifferences([d], "min(0, keepDim)") { $0[0].min(0, keepDim: true) }
            expectGradientsMatchFiniteDifferences([d], "max()") { $0[0].max() }
            expectGradientsMatchFiniteDifferences([d], "min()") { $0[0].min() }
        }

        @Test("an empty tensor has no maximum")
        func emptyStops() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                _ = Tensor.zeros(0, 3).max()
            }
            let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
            #expect(message.contains("max()") && message.contains("[0, 3]"), "\(message)")
        }
    }

    @Suite("creation and default random numbers")
    struct Creation {
        @Test("zeros, ones, full in every spelling")
        func filled() {
            #expect(Tensor.zeros(2, 3).shape == [2, 3])
            #expect(Tensor.zeros([2, 3]).values == [0, 0, 0, 0, 0, 0])
            #expect(Tensor.ones(3).values == [1, 1, 1])
            #expect(Tensor.ones([]).shape == [])
            #expect(Tensor.full([2], 7).values == [7, 7])
            #expect(Tensor.full(2, 2, value: -1).values == [-1, -1, -1, -1])
            let like = Tensor([[1, 2, 3]])
            #expect(Tensor.ones(like: like).shape == [1, 3])
            #expect(Tensor.full(like: like, value: 4).values == [4, 4, 4])
            #expect(Tensor.zeros(like: like).values == [0, 0, 0])
        }

        @Test("arange counts from start towards end, leaving end out")
        func arange() {
            #expect(Tensor.arange(5).values == [0, 1, 2, 3, 4])
            #expect(Tensor.arange(0).shape == [0])
            #expect(Tensor.arange(from: 0, to: 1, by: 0.25).values == [0, 0.25, 0.5, 0.75])
            #expect(Tensor.arange(from: 3, to: 0, by: -1).values == [3, 2, 1])
            #expect(Tensor.arange(from: 0, to: 1, by: 0.3).values == [0, 0.3, 0.6, 0.90000004])  // ⌈1 / 0.3⌉ = 4
            #expect(Tensor.arange(from: 2, to: 2).shape == [0])
        }

        /// `torch.arange(start, end, step, dtype=torch.float32)`, printed by PyTorch 2.15 for these
        /// arguments. The Floats nearest 0.3 and 0.1 have a quotient just above 3, so the count
        /// ⌈(end - start) / step⌉ alone gave a fourth value, 0.3 in Float: `end` itself.
        @Test(
            "arange leaves out a last value that rounds to end, as PyTorch's count from Doubles does",
            arguments: [
                (0, 0.3, 0.1, [0.0, 0.10000000149011612, 0.20000000298023224]),
                (
                    1, -2.5, -0.7,
                    [1.0, 0.30000001192092896, -0.4000000059604645, -1.100000023841858, -1.7999999523162842]
                ),
                (
                    0, 1, 0.1,
                    [
                        0.0, 0.10000000149011612, 0.20000000298023224, 0.30000001192092896, 0.4000000059604645, 0.5,
                        0.6000000238418579, 0.699999988079071, 0.800000011920929, 0.8999999761581421,
                    ]
                ),
                (
                    0.5, 2.9, 0.3,
                    [
                        0.5, 0.800000011920929, 1.100000023841858, 1.399999976158142, 1.7000000476837158, 2.0,
                        2.299999952316284, 2.5999999046325684,
                    ]
                ),
                (
                    -1, 1, 0.2,
                    [
                        -1.0, -0.800000011920929, -0.6000000238418579, -0.4000000059604645, -0.20000000298023224,
                        5.551115123125783e-17, 0.20000000298023224, 0.4000000059604645, 0.6000000238418579,
                        0.800000011920929,
                    ]
                ),
            ] as [(Float, Float, Float, [Double])])
        func arangeMatchesPyTorch(start: Float, end: Float, step: Float, torch: [Double]) {
            let values = Tensor.arange(from: start, to: end, by: step).values
            #expect(values.count == torch.count, "\(values)")
            // Within an ulp or two: PyTorch adds Double steps (0.3), Backprop the Float ones it is
            // given (0.3 rounded to Float), which drift apart by i times their difference (the value
            // near 0 is 5.6e-17 there, 1.5e-8 here; 2.6 one ulp apart, at 2.4e-7).
            for (value, expected) in zip(values, torch) {
                #expect(abs(Double(value) - expected) <= 3e-7, "\(values)")
            }
        }

        @Test("a step pointing away from the end stops naming the values")
        func arangeWrongDirection() async {
            let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                _ = Tensor.arange(from: 0, to: 5, by: -1)
            }
            let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
            #expect(message.contains("arange") && message.contains("-1.0"), "\(message)")
        }

        // The only test that uses the default generator: tests run in parallel, and another one
        // drawing from it in between would change the numbers.
        @Test("randn and rand without a generator: manualSeed reproduces the seeded stream; threads are safe")
        func defaultGenerator() {
            Tensor.manualSeed(7)
            // Box–Muller normals of seed 7, from the independent Python implementation
            // (Fixtures/make_random.py; RandomTests.normalsMatchBoxMuller).
            let expected: [Double] = [
                -0.2790239910251981, 1.5277231859624536, 1.8997685786889567, -0.2266957459968598, 2.136306014732201,
                -2.1969177074215507,
            ]
            #expect(Tensor.randn(2, 3).values == expected.map { Float($0) })
            var reference = RandomGenerator(seed: 7)
            _ = Tensor.randn([6], generator: &reference)
            #expect(Tensor.rand([4]).values == Tensor.rand([4], generator: &reference).values)
            let uniforms = Tensor.rand(1000).values
            #expect(uniforms.allSatisfy { $0 >= 0 && $0 < 1 })

            // Eight threads draw 1000 values each: every call takes one unbroken run of the stream.
            Tensor.manualSeed(11)
            let chunks = DrawnChunks()
            DispatchQueue.concurrentPerform(iterations: 8) { _ in chunks.append(Tensor.randn([1000]).values) }
            var sequential = RandomGenerator(seed: 11)
            let runs = (0..<8).map { _ in Tensor.randn([1000], generator: &sequential).values }
            let drawn = chunks.all()
            #expect(drawn.count == 8)
            for chunk in drawn { #expect(runs.contains(chunk)) }
            #expect(Set(drawn.map { $0[0] }).count == 8)
        }
    }
}

/// Chunks of values appended from several threads.
private final class DrawnChunks: @unchecked Sendable {
    private var chunks: [[Float]] = []
    private let lock = DispatchQueue(label: "DrawnChunks")
    func append(_ chunk: [Float]) { lock.sync { chunks.append(chunk) } }
    func all() -> [[Float]] { lock.sync { chunks } }
}
