import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// Softmax cross-entropy: its value against plain loops in Double, its hand-written backward
/// against autograd and finite differences, huge logits included.
@Suite("Cross-entropy")
struct CrossEntropyTests {
    /// `mean_i (log Σ_j exp(x[i, j]) - x[i, targ[i]])` in Double, the textbook way but shifted by the
    /// row maximum so the reference itself cannot overflow.
    static func referenceLoss(_ logits: [[Double]], _ targ: [Int]) -> Double {
        var total = 0.0
        for (row, label) in zip(logits, targ) {
            let m = row.max()!
            let lse = m + Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +))
            total += lse - row[label]
        }
        return total / Double(logits.count)
    }

    /// Random logits `(n, c)` scaled by `scale`, and targets.
    static func logitsAndTargets(n: Int, c: Int, scale: Float, seed: UInt64) -> (Tensor, Tensor) {
        var generator = RandomGenerator(seed: seed)
        let x = Tensor.randn([n, c], generator: &generator) * scale
        let targ = Tensor((0..<n).map { _ in Float(generator.nextIndex(below: c)) })
        return (x, targ)
    }

    static func rows(_ t: Tensor) -> [[Double]] {
        let values = t.values.map(Double.init)
        return (0..<t.shape[0]).map { Array(values[($0 * t.shape[1])..<(($0 + 1) * t.shape[1])]) }
    }

    @Test(arguments: [Float(1), 30, 1e4])
    func lossMatchesPlainLoopsInDouble(scale: Float) {
        let (x, targ) = Self.logitsAndTargets(n: 7, c: 5, scale: scale, seed: 3)
        let expected = Self.referenceLoss(Self.rows(x), targ.values.map { Int($0) })
        let composed = crossEntropy(x, targ).item()
        let fused = CrossEntropy()(x, targ).item()
        #expect(composed.isFinite && fused.isFinite)
        let tolerance = 1e-6 * max(1, abs(expected))
        #expect(abs(Double(composed) - expected) <= tolerance * 4, "composed \(composed) vs \(expected)")
        #expect(abs(Double(fused) - expected) <= tolerance, "fused \(fused) vs \(expected)")
    }

    @Test func hugeLogitsNeitherOverflowNorLoseTheDifference() {
        // exp(10000) overflows Float and Double; a naive log(softmax) would give inf or nan. The
        // loss is log(1 + e⁻¹ + e⁻²) for a target at the maximum, and that plus 2 for the smallest.
        let x = Tensor([[10_000, 9_999, 9_998], [-10_000, -10_001, -10_002]])
        let atMaximum = Foundation.log(1 + Foundation.exp(-1.0) + Foundation.exp(-2.0))
        let loss = CrossEntropy()(x, Tensor([0, 2])).item()
        #expect(abs(Double(loss) - (atMaximum + (atMaximum + 2)) / 2) < 1e-6)
        let logProbabilities = logSoftmax(x)
        expectAllNear(
            logProbabilities.values,
            [-atMaximum, -atMaximum - 1, -atMaximum - 2, -atMaximum, -atMaximum - 1, -atMaximum - 2],
            tolerance: 1e-6, "logSoftmax")
    }

    @Test func softmaxRowsSumToOne() {
        let (x, _) = Self.logitsAndTargets(n: 4, c: 6, scale: 50, seed: 5)
        let p = softmax(x)
        for row in 0..<4 {
            let total = (0..<6).map { Double(p[row, $0]) }.reduce(0, +)
            #expect(abs(total - 1) < 1e-6)
        }
    }

    @Test func nllPicksEachRowsTarget() {
        let input = Tensor([[-0.5, -1, -2], [-3, -0.25, -4]])
        // -(input[0, 2] + input[1, 1]) / 2
        #expect(nll(input, Tensor([2, 1])).item() == 1.125)
    }

    /// A logit of `-inf` (a class ruled out) outside the target column: PyTorch's
    /// `F.cross_entropy([[0, -inf, 1], [2, 0, -inf]], [0, 1])` is 1.7200948 (here in Double from
    /// the definition). Autograd's loss was NaN (`-inf · 0` in a one-hot sum), the fused one not.
    @Test func minusInfinityLogitsOutsideTheTargetGiveAFiniteLossOnEveryPath() throws {
        let logits: [[Float]] = [[0, -.infinity, 1], [2, 0, -.infinity]]
        let targets = [0, 1]
        var expected = 0.0
        for (row, target) in zip(logits, targets) {
            let finite = row.filter(\.isFinite).map(Double.init)
            expected += Foundation.log(finite.map { Foundation.exp($0) }.reduce(0, +)) - Double(row[target])
        }
        expected /= 2
        let targ = Tensor(targets.map(Float.init))
        let leaf = Tensor(logits)
        leaf.requiresGrad = true
        let tracked = CrossEntropy()(leaf, targ)
        tracked.backward()
        let fused = GradMode.withNoGrad { CrossEntropy()(Tensor(logits), targ) }
        for (path, value) in [("autograd", tracked.item()), ("fused", fused.item())] {
            #expect(abs(Double(value) - expected) < 1e-6, "\(path): \(value), expected \(expected)")
        }
        // The gradient: softmax minus one-hot over n, 0 in the ruled-out columns.
        let grad = try #require(leaf.grad)
        #expect(grad.values.allSatisfy { $0.isFinite })
        #expect(grad[0, 1] == 0 && grad[1, 2] == 0)
    }

    /// `softmax(x, dim:)` and `logSoftmax(x, dim:)` along any dimension of a `(3, 4, 5)` tensor,
    /// against the definition in Double, and autograd's gradient against finite differences.
    @Test(arguments: [0, 1, 2, -1, -3])
    func softmaxAlongAnyDimension(dim: Int) {
        var generator = RandomGenerator(seed: 41)
        let shape = [3, 4, 5]
        let x = uniform(shape, in: -4...4, generator: &generator)
        let axis = dim < 0 ? dim + 3 : dim
        let strides = [20, 5, 1]
        let values = x.values.map(Double.init)
        var expected = [Double](repeating: 0, count: 60)
        for index in 0..<60 {
            // The elements sharing every coordinate but `axis` with element `index`.
            let base = index - (index / strides[axis] % shape[axis]) * strides[axis]
            let line = (0..<shape[axis]).map { values[base + $0 * strides[axis]] }
            expected[index] = values[index] - Foundation.log(line.map { Foundation.exp($0) }.reduce(0, +))
        }
        expectAllNear(logSoftmax(x, dim: dim).values, expected, tolerance: 2e-6, "logSoftmax")
        expectAllNear(softmax(x, dim: dim).values, expected.map { Foundation.exp($0) }, tolerance: 1e-6, "softmax")
        expectGradientsMatchFiniteDifferences([x.copy()]) { logSoftmax($0[0], dim: dim) }
    }

    @Test func oneHotPutsOneInTheTargetColumn() {
        #expect(oneHot(Tensor([2, 0]), classes: 3).values == [0, 0, 1, 1, 0, 0])
    }

    @Test(arguments: [Float(1), 30, 1e4])
    func handWrittenBackwardMatchesAutograd(scale: Float) throws {
        let (x, targ) = Self.logitsAndTargets(n: 6, c: 4, scale: scale, seed: 11)
        let loss = CrossEntropy()
        _ = loss(x, targ)
        loss.backward()

        let leaf = x.copy()
        leaf.requiresGrad = true
        crossEntropy(leaf, targ).backward()
        let autogradGradient = try #require(leaf.grad)
        #expect(x.g.values.allSatisfy { $0.isFinite })
        expectAllNear(x.g, autogradGradient, tolerance: 1e-7, "inp.g against autograd")
    }

    @Test func handWrittenBackwardMatchesFiniteDifferencesInDouble() {
        let (x, targ) = Self.logitsAndTargets(n: 5, c: 4, scale: 2, seed: 13)
        let loss = CrossEntropy()
        _ = loss(x, targ)
        loss.backward()
        let labels = targ.values.map { Int($0) }
        var logits = Self.rows(x)
        var expected: [Double] = []
        let h = 1e-6
        for i in 0..<5 {
            for j in 0..<4 {
                let original = logits[i][j]
                logits[i][j] = original + h
                let up = Self.referenceLoss(logits, labels)
                logits[i][j] = original - h
                let down = Self.referenceLoss(logits, labels)
                logits[i][j] = original
                expected.append((up - down) / (2 * h))
            }
        }
        expectAllNear(x.g.values, expected, tolerance: 1e-6, "inp.g against central differences")
    }

    @Test func gradientWithHugeLogitsIsSoftmaxMinusOneHot() {
        // With logits 10000 apart the softmax is exactly one-hot at the maximum: the gradient is
        // 0 for a correct row and ±1/n where the model is confidently wrong.
        let x = Tensor([[10_000, 0, -10_000], [0, 10_000, 0]])
        let loss = CrossEntropy()
        #expect(abs(loss(x, Tensor([0, 0])).item() - 5_000) < 1e-3)
        loss.backward()
        #expect(x.g.values == [0, 0, 0, -0.5, 0.5, 0])
    }

    @Test func fusedKernelsMatchTheComposedFunctions() {
        let (x, targ) = Self.logitsAndTargets(n: 33, c: 10, scale: 5, seed: 17)
        #expect(abs(fusedCrossEntropy(x, targ) - crossEntropy(x, targ).item()) < 1e-5)
        let composedGradient = (softmax(x) - oneHot(targ, classes: 10)) / 33
        expectAllNear(fusedCrossEntropyGradient(x, targ), composedGradient, tolerance: 1e-7, "fused gradient")
    }

    @Test func backwardReusesTheForwardPassOnlyForTheSameValues() {
        // The layer's backward reuses the forward pass's exponentials: the same bits as the
        // gradient computed afresh. When `inp` or `targ` changed in place since the forward pass,
        // it computes afresh from the values they hold now.
        let (x, targ) = Self.logitsAndTargets(n: 64, c: 10, scale: 5, seed: 23)
        let loss = CrossEntropy()
        #expect(loss(x, targ).item().bitPattern == fusedCrossEntropy(x, targ).bitPattern)
        loss.backward()
        #expect(x.g.values.map(\.bitPattern) == fusedCrossEntropyGradient(x, targ).values.map(\.bitPattern))
        _ = loss(x, targ)
        x[3, 4] = 7
        targ[5] = targ[5] == 0 ? 1 : 0
        loss.backward()
        #expect(x.g.values.map(\.bitPattern) == fusedCrossEntropyGradient(x, targ).values.map(\.bitPattern))
        let composed = (softmax(x) - oneHot(targ, classes: 10)) / 64
        expectAllNear(x.g, composed, tolerance: 1e-7, "gradient of the changed values")
    }

    @Test func modelOfAnyDepthBackwardMatchesNumpyAndAutograd() throws {
        // The 5-4-3-3 MLP of make_mlp_fixture.py: numpy computed its output, loss and every
        // gradient in float64; the seed's backward must agree, and so must autograd.
        let model = try Checkpoint.load(path: fixturePath("mlp_5_4_3_3.safetensors"))
        let io = try Safetensors.read(path: fixturePath("mlp_5_4_3_3_io.safetensors"))
        let x = try io.tensor("x")
        let targ = try io.tensor("targ")
        let loss = model(x, targ)
        #expect(abs(loss.item() - (try io.tensor("loss")).item()) < 1e-6)
        expectAllNear(model.loss.inp, try io.tensor("out"), tolerance: 1e-6, "out")
        model.backward()
        expectAllNear(model.loss.inp.g, try io.tensor("out.g"), tolerance: 1e-7, "out.g")
        for index in [0, 2, 4] {
            let lin = try #require(model.layers[index] as? Lin)
            expectAllNear(lin.w.g, try io.tensor("layers.\(index).w.g"), tolerance: 1e-6, "layers.\(index).w.g")
            expectAllNear(lin.b.g, try io.tensor("layers.\(index).b.g"), tolerance: 1e-6, "layers.\(index).b.g")
        }

        // Autograd on the same parameters, through the free functions.
        for parameter in model.parameters { parameter.requiresGrad = true }
        defer { for parameter in model.parameters { parameter.requiresGrad = false } }
        let ws = model.layers.compactMap { $0 as? Lin }
        let out = lin(relu(lin(relu(lin(x, ws[0].w, ws[0].b)), ws[1].w, ws[1].b)), ws[2].w, ws[2].b)
        crossEntropy(out, targ).backward()
        for lin in ws {
            expectAllNear(lin.w.g, try #require(lin.w.grad), tolerance: 1e-6, "w.g against autograd")
            expectAllNear(lin.b.g, try #require(lin.b.grad), tolerance: 1e-6, "b.g against autograd")
        }
    }

    @Test func accuracyCountsArgmaxMatches() {
        let out = Tensor([[0.1, 0.9, 0], [2, 1, 0], [0, 0, 3], [5, 6, 7]])
        // Predictions 1, 0, 2, 2 against targets 1, 1, 2, 0: two of four.
        #expect(accuracy(out, Tensor([1, 1, 2, 0])) == 0.5)
        // The seed's regression output: rounded to the nearest class.
        #expect(accuracy(Tensor([[0.6], [2.4], [7.5]]), Tensor([1, 2, 7])) == Float(2) / 3)
    }

    /// The distance between two doubles in units in the last place (both finite and of one sign).
    static func ulps(_ a: Double, _ b: Double) -> UInt64 {
        let (x, y) = (a.bitPattern, b.bitPattern)
        return x > y ? x - y : y - x
    }

    /// The fused loss's exponentials (`Tensor.softmaxRows`, vectors in `Softmax.c`) against the C
    /// library's `exp`: within one unit in the last place from 0 down past the underflow to 0, and
    /// the library's values at the ends.
    @Test func softmaxExponentialsAreWithinAnUlpOfTheLibrary() {
        var generator = RandomGenerator(seed: 2026)
        var exponents: [Double] = [
            0, -0.0, -Double.leastNonzeroMagnitude, -1e-300, -1e-17, -0.5 * M_LN2, -M_LN2, -1, -87.3, -103.9, -708.39,
            -708.4, -709, -744, -745.13, -745.14, -745.9,
        ]
        for scale in [1e-6, 1, 30, 760] {
            for _ in 0..<50_000 { exponents.append(-generator.nextUniform() * scale) }
        }
        var worst: (ulps: UInt64, t: Double) = (0, 0)
        var differing = 0
        for t in exponents {
            let (ours, library) = (Tensor.softmaxExponential(t), Foundation.exp(t))
            let distance = Self.ulps(ours, library)
            if distance > worst.ulps { worst = (distance, t) }
            if distance != 0 { differing += 1 }
        }
        #expect(worst.ulps <= 1, "exp(\(worst.t)) is \(worst.ulps) ulps from the C library's")
        // Most agree to the last bit (about 4% differ by one ulp), so the check is not vacuous.
        #expect(differing < exponents.count / 10)
        #expect(Tensor.softmaxExponential(-.infinity) == 0)
        #expect(Tensor.softmaxExponential(-746) == 0)
        #expect(Tensor.softmaxExponential(-1e308) == 0)
        #expect(Tensor.softmaxExponential(.nan).isNaN)
    }

    /// `Tensor.softmaxRows` on rows of every length from 1 to 19 (the vector paths' tails): each
    /// row's maximum as Swift's `max` finds it (NaN passed over), each exponential the scalar path's
    /// bits in every instruction set, each sum the exponentials added in order; rows whose maximum
    /// is not finite all NaN.
    @Test func softmaxRowsAreTheScalarPathInEveryInstructionSet() {
        var generator = RandomGenerator(seed: 7)
        for classes in 1...19 {
            let rows = 6
            var x = (0..<(rows * classes)).map { _ in Float(generator.nextNormal() * 20) }
            x[0] = .nan  // row 0: a NaN among finite values (for classes > 1)
            if classes > 1 { x[classes + 1] = .infinity }  // row 1: an infinite maximum
            for j in 0..<classes { x[2 * classes + j] = -.infinity }  // row 2: all -inf
            for avx512 in [true, false] {
                var (maxima, sums) = ([Float](repeating: 0, count: rows), [Double](repeating: 0, count: rows))
                var e = [Double](repeating: 0, count: rows * classes)
                KernelInstructions.withAVX512(allowed: avx512) {
                    Tensor.softmaxRows(x, rows: rows, classes: classes, maxima: &maxima, sums: &sums, exponentials: &e)
                }
                for row in 0..<rows {
                    let values = x[(row * classes)..<((row + 1) * classes)]
                    let m = values.reduce(-Float.infinity) { Swift.max($0, $1) }
                    #expect(maxima[row].bitPattern == m.bitPattern, "row \(row) of \(classes): maximum")
                    var total = 0.0
                    for j in 0..<classes {
                        let t = Double(values[row * classes + j]) - Double(m)
                        let expected = m.isFinite ? Tensor.softmaxExponential(t) : .nan
                        let got = e[row * classes + j]
                        #expect(
                            got.bitPattern == expected.bitPattern || (got.isNaN && expected.isNaN),
                            "row \(row) of \(classes), column \(j), AVX-512 allowed \(avx512)")
                        total += expected
                    }
                    #expect(
                        sums[row].bitPattern == total.bitPattern || (sums[row].isNaN && total.isNaN),
                        "row \(row) of \(classes): sum")
                }
            }
        }
    }
}
