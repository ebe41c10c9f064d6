import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropNetwork

// Tanh, Sigmoid, LeakyReLU, GELU, SiLU, Hardtanh, Dropout and the `erf` they rest on. Each layer's forward is
// checked against its formula evaluated in Double (the C library's `tanh` and `erf`), its
// hand-written `.g` against central finite differences of that formula in Double and against
// autograd's `.grad` from the recorded composition, and its two forward paths (recorded and
// fast) against each other.

/// Central finite differences of a Double function of one variable:
/// `(f(x + h) - f(x - h)) / 2h`, with `h = 1e-6 · max(1, |x|)`.
func centralDifference(_ f: (Double) -> Double, at x: Double) -> Double {
    let h = 1e-6 * Swift.max(1, Swift.abs(x))
    return (f(x + h) - f(x - h)) / (2 * h)
}

/// Central finite differences of a Double function of many variables, for every coordinate:
/// `(f(x + h eᵢ) - f(x - h eᵢ)) / 2h`, with `h = 1e-6 · max(1, |xᵢ|)`.
func centralDifferences(_ f: ([Double]) -> Double, at x: [Double]) -> [Double] {
    var point = x
    return x.indices.map { i in
        let h = 1e-6 * Swift.max(1, Swift.abs(x[i]))
        point[i] = x[i] + h
        let above = f(point)
        point[i] = x[i] - h
        let below = f(point)
        point[i] = x[i]
        return (above - below) / (2 * h)
    }
}

/// A random shape of rank 1 to 4, each dimension 1 to 5, from `generator`.
func randomShape(_ generator: inout RandomGenerator) -> [Int] {
    let rank = 1 + generator.nextIndex(below: 4)
    return (0..<rank).map { _ in 1 + generator.nextIndex(below: 5) }
}

@Suite("Activations and Dropout: forward, backward, autograd, finite differences")
struct ActivationTests {
    /// An activation layer and its formula in Double.
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let make: @Sendable () -> any Layer
        let formula: @Sendable (Double) -> Double
        /// Whether the recorded composition does the fast path's arithmetic exactly.
        let pathsAgreeExactly: Bool

        var testDescription: String { name }
    }

    static let cases = [
        Case(name: "Tanh", make: { Tanh() }, formula: { Foundation.tanh($0) }, pathsAgreeExactly: false),
        Case(
            name: "Sigmoid", make: { Sigmoid() }, formula: { 1 / (1 + Foundation.exp(-$0)) },
            pathsAgreeExactly: false),
        Case(
            name: "LeakyReLU()", make: { LeakyReLU() }, formula: { $0 > 0 ? $0 : 0.01 * $0 },
            pathsAgreeExactly: true),
        Case(
            name: "LeakyReLU(slope: 0.2)", make: { LeakyReLU(slope: 0.2) },
            formula: { $0 > 0 ? $0 : Double(Float(0.2)) * $0 }, pathsAgreeExactly: true),
        Case(
            name: "GELU", make: { GELU() }, formula: { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) },
            pathsAgreeExactly: false),
        Case(
            name: "SiLU", make: { SiLU() }, formula: { $0 / (1 + Foundation.exp(-$0)) }, pathsAgreeExactly: false),
        Case(
            name: "Hardtanh(min: -2, max: 3)", make: { Hardtanh(min: -2, max: 3) },
            formula: { Swift.min(Swift.max($0, -2), 3) },
            pathsAgreeExactly: true),
    ]

    /// Random inputs in `[-5, 5]`, none within 1e-3 of 0 (LeakyReLU's kink).
    static func input(_ shape: [Int], _ generator: inout RandomGenerator) -> Tensor {
        let x = uniform(shape, in: -5...5, generator: &generator)
        return Tensor(shape: shape, values: x.values.map { Swift.abs($0) < 1e-3 ? 0.5 : $0 })
    }

    @Test(
        "out against the formula in Double, .g against finite differences in Double and autograd's .grad",
        arguments: cases)
    func forwardAndBackward(_ testCase: Case) throws {
        var generator = RandomGenerator(seed: 1300)
        for _ in 0..<4 {
            let shape = randomShape(&generator)
            let x = Self.input(shape, &generator)
            let r = uniform(shape, in: -1...1, generator: &generator)  // out.g
            // The fast path: nothing recorded.
            let layer = testCase.make()
            let out = layer(x)
            #expect(out.isLeaf && out.shape == shape)
            expectNear(
                out, x.values.map { testCase.formula(Double($0)) }, relativeTolerance: 1e-6,
                absoluteTolerance: 1e-6, "\(testCase.name) out, shape \(shape)")
            out.g = r
            layer.backward()
            let differences = zip(x.values, r.values).map { x, r in
                centralDifference(testCase.formula, at: Double(x)) * Double(r)
            }
            expectNear(
                x.g, differences, relativeTolerance: 1e-4, absoluteTolerance: 1e-6,
                "\(testCase.name) inp.g, shape \(shape)")

            // The recorded path: the same values, and autograd's gradient equals the layer's.
            let recorded = x.copy()
            recorded.requiresGrad = true
            let recordingLayer = testCase.make()
            let recordedOut = recordingLayer(recorded)
            #expect(!recordedOut.isLeaf)
            if testCase.pathsAgreeExactly {
                #expect(recordedOut.values == out.values, "\(testCase.name): recorded and fast paths differ")
            } else {
                // A few roundings of numbers of magnitude 1 (SiLU's multiplied by x: relative).
                expectNear(
                    recordedOut, out, relativeTolerance: 3e-7, absoluteTolerance: 3e-7, "\(testCase.name) paths")
            }
            (recordedOut * r).sum().backward()
            recordedOut.g = r
            GradMode.withNoGrad { recordingLayer.backward() }
            expectNear(
                recorded.g, try #require(recorded.grad), relativeTolerance: 1e-5, absoluteTolerance: 1e-6,
                "\(testCase.name) .g against .grad, shape \(shape)")
        }
    }

    @Test("Tanh and Sigmoid saturate without NaN, on both paths, for |x| up to 1e4")
    func saturation() throws {
        let x = Tensor([-1e4, -1000, -100, -90, -50, 50, 90, 100, 1000, 1e4])
        let tanh = Tanh()(x).values
        let sigmoid = Sigmoid()(x).values
        #expect(tanh == [-1, -1, -1, -1, -1, 1, 1, 1, 1, 1])
        #expect(sigmoid.prefix(4).allSatisfy { $0 >= 0 && $0 < 1e-38 })
        #expect(sigmoid.suffix(5) == [1, 1, 1, 1, 1])
        for layer in [Tanh(), Sigmoid()] as [any Layer] {
            let recorded = x.copy()
            recorded.requiresGrad = true
            let out = layer(recorded)
            out.sum().backward()
            let gradient = try #require(recorded.grad).values
            #expect(out.values.allSatisfy(\.isFinite) && gradient.allSatisfy(\.isFinite), "\(type(of: layer))")
            #expect(gradient.allSatisfy { $0 >= 0 && $0 < 1e-20 }, "\(type(of: layer)): \(gradient)")
        }
    }

    @Test("SiLU saturates to x and to 0 without NaN, on both paths and in both gradients, for |x| up to 1e4")
    func siluSaturation() throws {
        let x = Tensor([-1e4, -1000, -100, -90, -50, 50, 90, 100, 1000, 1e4])
        let layer = SiLU()
        let out = layer(x)
        #expect(out.values.prefix(5).allSatisfy { $0 <= 0 && $0 > -1e-19 }, "\(out.values)")
        #expect(Array(out.values.suffix(5)) == [50, 90, 100, 1000, 1e4])
        out.g = Tensor.ones(x.shape)
        layer.backward()
        // d/dx x σ(x) = σ(x) (1 + x (1 - σ(x))): 1 for large x, 0 (from below) for large -x.
        #expect(x.g.values.prefix(5).allSatisfy { $0 <= 0 && $0 > -1e-18 }, "\(x.g.values)")
        #expect(Array(x.g.values.suffix(5)) == [1, 1, 1, 1, 1])
        let recorded = x.copy()
        recorded.requiresGrad = true
        let recordedOut = SiLU()(recorded)
        recordedOut.sum().backward()
        let gradient = try #require(recorded.grad).values
        #expect(recordedOut.values.allSatisfy(\.isFinite) && gradient.allSatisfy(\.isFinite), "\(gradient)")
        #expect(gradient.prefix(5).allSatisfy { Swift.abs($0) < 1e-18 } && gradient.suffix(5) == [1, 1, 1, 1, 1])
    }

    @Test("Hardtanh: -1 and 1 unless given, as PyTorch; at exactly a bound both gradients are 0; frozen pieces")
    func hardtanhDefaultsAndKinks() throws {
        #expect((Hardtanh().min, Hardtanh().max) == (-1, 1))
        let x = Tensor([[-2, -1, 0.5], [1, 6, 7]])
        let layer = Hardtanh()
        #expect(layer(x).values == [-1, -1, 0.5, 1, 1, 1])
        #expect(layer.pieces == [0, -1, 1, -1, 2, 2])

        let recorded = x.copy()
        recorded.requiresGrad = true
        let relu6 = Hardtanh(min: 0, max: 6)
        let out = relu6(recorded)
        #expect(out.values == [0, 0, 0.5, 1, 6, 6])
        #expect(relu6.pieces == [0, 0, 1, 1, -1, 2])
        out.sum().backward()
        out.g = Tensor.ones(2, 3)
        GradMode.withNoGrad { relu6.backward() }
        // PyTorch's hardtanh_backward: the gradient passes strictly inside the bounds only.
        #expect(recorded.g.values == [0, 0, 1, 1, 0, 0])
        #expect(try #require(recorded.grad).values == recorded.g.values)

        // Frozen at x: out = slopes · inp + offsets, the piece of each element kept, for inputs
        // that cross a bound; the backward differentiates that.
        relu6.freezesPieces = true
        let moved = Tensor([[0.5, -3, 7], [8, 5, -1]])
        #expect(relu6(moved).values == [0, 0, 7, 8, 6, 6])
        relu6.out.g = Tensor([[1, 2, 3], [4, 5, 6]])
        relu6.backward()
        #expect(moved.g.values == [0, 0, 3, 4, 0, 0])
        relu6.freezesPieces = false
        #expect(relu6(moved).values == [0.5, 0, 6, 6, 5, 0])
    }

    @Test("LeakyReLU: slope 0.01 unless given, as PyTorch; at exactly 0 both gradients are slope · out.g")
    func leakyReLUDefaultsAndKink() throws {
        #expect(LeakyReLU().slope == 0.01)
        let x = Tensor([[-2, 0, 3], [0, -0.5, 1]])
        let layer = LeakyReLU()
        #expect(layer(x).values == [-0.02, 0, 3, 0, -0.005, 1])
        #expect(layer.pieces == [0, -1, 1, -1, 0, 1])

        let recorded = x.copy()
        recorded.requiresGrad = true
        let steep = LeakyReLU(slope: 0.25)
        let out = steep(recorded)
        out.sum().backward()
        out.g = Tensor.ones(2, 3)
        GradMode.withNoGrad { steep.backward() }
        #expect(recorded.g.values == [0.25, 0.25, 1, 0.25, 0.25, 1])
        #expect(try #require(recorded.grad).values == recorded.g.values)
    }

    @Test("ReLU's pieces: 1 where inp > 0, 0 where inp < 0, -1 at exactly 0")
    func reluPieces() {
        let layer = ReLU()
        _ = layer(Tensor([[1.5, 0, -2], [-0.0, 3, -1e-30]]))
        #expect(layer.pieces == [1, -1, 0, -1, 1, 0])
        let piecewise: [any PiecewiseLayer] = [layer, LeakyReLU()]
        #expect(piecewise.count == 2)
    }

    @Test("GELU at known points: x Φ(x), with Φ from mpmath, rounded once; far left the true tiny values")
    func geluKnownValues() {
        let points: [Float] = [-10, -8, -6, -3, -1, -0.5, 0, 0.5, 1, 3]
        let out = GELU()(Tensor(points))
        // Φ(x) from mpmath's ncdf (30 digits): Φ(-x) = 1 - Φ(x).
        let cdf = [
            7.6198530241605261e-24, 6.2209605742717841e-16, 9.8658764503769814e-10, 0.0013498980316300945,
            0.15865525393145705, 0.3085375387259869, 0.5, 0.6914624612740131, 0.84134474606854295,
            0.99865010196836991,
        ]
        // One rounding from Double: the Float nearest x Φ(x), where 1 + erf(x/√2) in Float (PyTorch's
        // formula, and the recorded path's) is 0 from x = -6 down.
        for (x, (got, p)) in zip(points, zip(out.values, cdf)) {
            #expect(got == Float(Double(x) * p), "gelu(\(x)) = \(got), expected \(Float(Double(x) * p))")
        }
    }

    // MARK: - erf

    @Test("erf: every element against the C library's erf in Double, and autograd against finite differences")
    func erf() {
        let points = stride(from: -5.0, through: 5.0, by: 0.125).map { Float($0) }
        let y = Tensor(points).erf()
        expectNear(y, points.map { Foundation.erf(Double($0)) }, relativeTolerance: 2e-7, absoluteTolerance: 1e-7)
        var generator = RandomGenerator(seed: 1301)
        let x = uniform([3, 4], in: -2.5...2.5, generator: &generator)
        expectGradientsMatchFiniteDifferences([x]) { $0[0].erf() }
        #expect(x.erf().recordedOperation?.name == "erf")
        // The derivative 2/√π e^(-x²), exactly as the table computes it, at 0 and 1.
        let z = Tensor([0, 1])
        z.requiresGrad = true
        z.erf().sum().backward()
        expectNear(z.grad!, [2 / Double.pi.squareRoot(), 2 / Double.pi.squareRoot() * Foundation.exp(-1)])
    }

    // MARK: - Dropout

    @Test("Dropout in evaluation: out = inp, inp.g = out.g, no mask drawn")
    func dropoutEvaluation() {
        var generator = RandomGenerator(seed: 1302)
        let x = uniform([4, 6], in: -1...1, generator: &generator)
        let layer = Dropout(p: 0.5)
        layer.isTraining = false
        let out = layer(x)
        #expect(out.values == x.values && out.shape == x.shape)
        out.g = uniform([4, 6], in: -1...1, generator: &generator)
        layer.backward()
        #expect(x.g.values == out.g.values)
        #expect(layer.mask == nil)
    }

    @Test("Dropout in training: out = inp · mask / (1 - p), mask of 0s and 1s, and inp.g = out.g · mask / (1 - p)")
    func dropoutTraining() throws {
        var generator = RandomGenerator(seed: 1303)
        let x = uniform([5, 3, 4], in: -1...1, generator: &generator)
        let r = uniform([5, 3, 4], in: -1...1, generator: &generator)
        let layer = Dropout(p: 0.25, seed: 4)
        let out = layer(x)
        let mask = try #require(layer.mask)
        #expect(mask.shape == x.shape)
        #expect(mask.values.allSatisfy { $0 == 0 || $0 == 1 })
        #expect(mask.values.contains(0) && mask.values.contains(1))
        let expected = zip(x.values, mask.values).map { Double($0) * Double($1) / 0.75 }
        expectNear(out, expected, relativeTolerance: 1e-6, absoluteTolerance: 0)
        out.g = r
        layer.backward()
        expectNear(x.g, zip(r.values, mask.values).map { Double($0) * Double($1) / 0.75 }, relativeTolerance: 1e-6)

        // Recorded: the same values from the same mask, and autograd's gradient equals the layer's.
        let recorded = x.copy()
        recorded.requiresGrad = true
        layer.freezesMask = true
        let recordedOut = layer(recorded)
        #expect(!recordedOut.isLeaf && recordedOut.values == out.values)
        (recordedOut * r).sum().backward()
        recordedOut.g = r
        GradMode.withNoGrad { layer.backward() }
        #expect(try #require(recorded.grad).values == recorded.g.values)
    }

    @Test("Dropout: the same seed gives the same masks, a new mask each call, another seed others")
    func dropoutSeeds() throws {
        let x = Tensor.ones(8, 16)
        let first = Dropout(p: 0.5, seed: 11)
        let second = Dropout(p: 0.5, seed: 11)
        let other = Dropout(p: 0.5, seed: 12)
        _ = first(x)
        let a1 = try #require(first.mask).values
        _ = second(x)
        _ = other(x)
        #expect(try #require(second.mask).values == a1)
        #expect(try #require(other.mask).values != a1)
        _ = first(x)
        _ = second(x)
        #expect(try #require(first.mask).values != a1)
        #expect(try #require(first.mask).values == (try #require(second.mask)).values)
    }

    @Test(
        "Dropout's masks are the documented draws: a seed a call, blocks of 4096 from generators seeded seed ^ block",
        arguments: [0, 0.25, 0.5, 0.9, Float(1).nextDown])
    func dropoutMaskIsTheDocumentedDraw(p: Float) {
        let threshold = UInt64((Double(p) * 0x1p32).rounded())
        let layer = Dropout(p: p, seed: 21)
        var reference = RandomGenerator(seed: 21)
        // Odd and even sizes, around the blocks of 4096 (and many of them, drawn on several
        // threads); each call takes the next seed from the layer's generator.
        for count in [1, 3, 4095, 4096, 4097, 8193, 10, 200_704] {
            _ = layer(Tensor.ones([count]))
            let seed = reference.next()
            var expected: [Float] = []
            for block in 0..<((count + 4095) / 4096) {
                var blockGenerator = RandomGenerator(seed: seed ^ UInt64(block))
                let end = min(count, (block + 1) * 4096)
                while expected.count < end {
                    let bits = blockGenerator.next()
                    expected.append(bits & 0xFFFF_FFFF >= threshold ? 1 : 0)
                    if expected.count < end { expected.append(bits >> 32 >= threshold ? 1 : 0) }
                }
            }
            #expect(layer.mask?.values == expected, "p \(p), \(count) elements")
        }
    }

    @Test("Dropout's masks are the same on one thread as on several")
    func dropoutMaskThreads() throws {
        let x = Tensor.ones(64, 4096)
        let before = Parallel.workers
        defer { Parallel.setWorkers(before) }
        let masks = try [1, 2, 3].map { threads in
            Parallel.setWorkers(threads)
            let layer = Dropout(p: 0.3, seed: 8)
            _ = layer(x)
            return try #require(layer.mask).values
        }
        #expect(masks[1] == masks[0] && masks[2] == masks[0])
    }

    @Test("Dropout keeps a fraction near 1 - p of a large tensor, and the mean is kept in expectation")
    func dropoutFraction() throws {
        let x = Tensor.ones(200, 500)
        for p: Float in [0.1, 0.3, 0.75] {
            let layer = Dropout(p: p, seed: 3)
            let out = layer(x)
            let kept = try #require(layer.mask).values.reduce(0, +) / Float(x.count)
            // The standard deviation of the fraction is √(p(1-p)/100000) < 0.0016.
            #expect(Swift.abs(kept - (1 - p)) < 0.01, "p = \(p): kept \(kept)")
            #expect(Swift.abs(out.mean().item() - 1) < 0.01 / (1 - p), "p = \(p)")
        }
        let none = Dropout(p: 0)
        #expect(none(x).values == x.values)
    }

    @Test("Dropout with a frozen mask reuses it, and its .g matches finite differences through the layer")
    func dropoutFrozenMask() throws {
        var generator = RandomGenerator(seed: 1304)
        let x = uniform([3, 7], in: -1...1, generator: &generator)
        let r = uniform([3, 7], in: -1...1, generator: &generator)
        let layer = Dropout(p: 0.4, seed: 5)
        layer.freezesMask = true
        let out = layer(x)  // no mask yet: draws one
        let mask = try #require(layer.mask)
        let again = layer(x)
        #expect(layer.mask === mask && again.values == out.values)
        let last = layer(x)
        last.g = r
        layer.backward()
        let estimates = finiteDifferences(of: { weightedSum(layer(x), r) }, withRespectTo: x)
        expectNear(x.g, estimates, relativeTolerance: 2e-3, absoluteTolerance: 2e-4)
        #expect(layer.mask === mask)
        layer.freezesMask = false
        _ = layer(x)
        #expect(layer.mask !== mask)
    }

    @Test("Dropout and BatchNorm are mode-dependent layers")
    func modeDependent() {
        let layers: [any ModeDependentLayer] = [Dropout(p: 0.1), BatchNorm(features: 2)]
        for layer in layers {
            #expect(layer.isTraining)
            layer.isTraining = false
            #expect(!layer.isTraining)
        }
    }

    @Test("Dropout stops on p outside [0, 1), naming p")
    func dropoutProbability() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Dropout(p: 1)
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("Dropout: p = 1.0"), "\(message)")
    }
}
