import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// Autograd against central finite differences: every row of the derivative table, with shapes
// that broadcast; then the graph itself (recording, accumulation, backward twice, zeroGrad,
// a 100,000-operation chain).

/// Random operands for the tests, the same on every run.
private struct Operands {
    var generator: RandomGenerator

    init(seed: UInt64) { generator = RandomGenerator(seed: seed) }

    /// Values in `-2...2`: for operations defined everywhere.
    mutating func any(_ shape: Int...) -> Tensor { uniform(shape, in: -2...2, generator: &generator) }

    /// Values in `0.5...2`: for divisors, logarithms, roots and powers.
    mutating func positive(_ shape: Int...) -> Tensor { uniform(shape, in: 0.5...2, generator: &generator) }
}

@Suite("Autograd: each derivative against finite differences")
struct DerivativeTests {
    @Test("a + b, with (n, m) + (m), (n, 1) + (n) → (n, n), a scalar, and equal shapes")
    func add() {
        var o = Operands(seed: 1)
        expectGradientsMatchFiniteDifferences([o.any(3, 4), o.any(4)], "(n, m) + (m)") { $0[0] + $0[1] }
        expectGradientsMatchFiniteDifferences([o.any(3, 1), o.any(3)], "(n, 1) + (n)") { $0[0] + $0[1] }
        expectGradientsMatchFiniteDifferences([o.any(3, 4), Tensor(0.5)], "(n, m) + scalar") { $0[0] + $0[1] }
        expectGradientsMatchFiniteDifferences([o.any(2, 3), o.any(2, 3)], "equal shapes") { $0[0] + $0[1] }
    }

    @Test("a - b, with (n, 1) - (n) → (n, n) and (m) - (n, m)")
    func subtract() {
        var o = Operands(seed: 2)
        expectGradientsMatchFiniteDifferences([o.any(3, 1), o.any(3)], "(n, 1) - (n)") { $0[0] - $0[1] }
        expectGradientsMatchFiniteDifferences([o.any(4), o.any(3, 4)], "(m) - (n, m)") { $0[0] - $0[1] }
        expectGradientsMatchFiniteDifferences([Tensor(1.5), o.any(2, 3)], "scalar - (n, m)") { $0[0] - $0[1] }
    }

    @Test("a * b, with (n, 1) * (n, m), (n, m) * scalar, and (1, m) * (n, 1)")
    func multiply() {
        var o = Operands(seed: 3)
        expectGradientsMatchFiniteDifferences([o.any(3, 1), o.any(3, 4)], "(n, 1) * (n, m)") { $0[0] * $0[1] }
        expectGradientsMatchFiniteDifferences([o.any(3, 4), Tensor(-0.75)], "(n, m) * scalar") { $0[0] * $0[1] }
        expectGradientsMatchFiniteDifferences([o.any(1, 4), o.any(3, 1)], "(1, m) * (n, 1)") { $0[0] * $0[1] }
    }

    @Test("a / b, with (n, m) / (m) and (n, 1) / (n, m)")
    func divide() {
        var o = Operands(seed: 4)
        expectGradientsMatchFiniteDifferences([o.any(3, 4), o.positive(4)], "(n, m) / (m)") { $0[0] / $0[1] }
        expectGradientsMatchFiniteDifferences([o.any(3, 1), o.positive(3, 4)], "(n, 1) / (n, m)") { $0[0] / $0[1] }
    }

    @Test("operations with a Float on either side")
    func scalars() {
        var o = Operands(seed: 5)
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "x + s") { $0[0] + 1.5 }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "s + x") { 1.5 + $0[0] }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "x - s") { $0[0] - 1.5 }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "s - x") { 1.5 - $0[0] }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "x * s") { $0[0] * -2.5 }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "s * x") { -2.5 * $0[0] }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "x / s") { $0[0] / 3 }
        expectGradientsMatchFiniteDifferences([o.positive(2, 3)], "s / x") { 3 / $0[0] }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "-x") { -$0[0] }
    }

    @Test("powers: x ** 2, x ** 3, x ** 1, x ** 0.5, x ** -1.5, squared(), sqrt()")
    func powers() {
        var o = Operands(seed: 6)
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "x ** 2") { $0[0] ** 2 }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "x ** 3") { $0[0] ** 3 }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "x ** 1") { $0[0] ** 1 }
        expectGradientsMatchFiniteDifferences([o.positive(2, 3)], "x ** 0.5") { $0[0] ** 0.5 }
        expectGradientsMatchFiniteDifferences([o.positive(2, 3)], "x ** -1.5") { $0[0] ** -1.5 }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "squared()") { $0[0].squared() }
        expectGradientsMatchFiniteDifferences([o.positive(2, 3)], "sqrt()") { $0[0].sqrt() }
    }

    @Test("clampMin and relu, away from the kink")
    func clampMin() {
        // Values at least 0.1 from the threshold: the step (about 5e-3) never crosses it.
        let x = Tensor([[-1.5, -0.4, 0.3], [0.9, -0.2, 1.7]])
        expectGradientsMatchFiniteDifferences([x], "clampMin(0)") { $0[0].clampMin(0) }
        expectGradientsMatchFiniteDifferences([x], "relu") { relu($0[0]) }
        expectGradientsMatchFiniteDifferences([x], "clampMin(0.5)") { $0[0].clampMin(0.5) }
    }

    @Test("exp and log")
    func expAndLog() {
        var o = Operands(seed: 7)
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "exp") { $0[0].exp() }
        expectGradientsMatchFiniteDifferences([o.positive(2, 3)], "log") { $0[0].log() }
    }

    @Test("views: reshape, squeeze, unsqueeze, t(), and a transpose made contiguous")
    func views() {
        var o = Operands(seed: 8)
        expectGradientsMatchFiniteDifferences([o.any(2, 6)], "reshape") { $0[0].reshape(3, 4) * 2 }
        expectGradientsMatchFiniteDifferences([o.any(3, 1)], "squeeze") { $0[0].squeeze() * 2 }
        expectGradientsMatchFiniteDifferences([o.any(3, 1)], "squeeze(1)") { $0[0].squeeze(1) * 2 }
        expectGradientsMatchFiniteDifferences([o.any(3)], "unsqueeze(-1)") { $0[0].unsqueeze(-1) * 2 }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "t()") { $0[0].t() * 2 }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "t().contiguous()") { $0[0].t().contiguous() * 2 }
        expectGradientsMatchFiniteDifferences([o.any(2, 3), o.any(3, 2)], "t() + b") { $0[0].t() + $0[1] }
    }

    @Test("matrix products: a • b, with transposed operands, and lin with either bias shape")
    func matmul() {
        var o = Operands(seed: 9)
        expectGradientsMatchFiniteDifferences([o.any(3, 4), o.any(4, 2)], "a • b") { $0[0] • $0[1] }
        expectGradientsMatchFiniteDifferences([o.any(4, 3), o.any(4, 2)], "aᵀ • b") { $0[0].t() • $0[1] }
        expectGradientsMatchFiniteDifferences([o.any(3, 4), o.any(2, 4)], "a • bᵀ") { $0[0] • $0[1].t() }
        expectGradientsMatchFiniteDifferences([o.any(3, 4), o.any(4, 2), o.any(2)], "lin, b (nh)") {
            lin($0[0], $0[1], $0[2])
        }
        expectGradientsMatchFiniteDifferences([o.any(3, 4), o.any(4, 2), o.any(1, 2)], "lin, b (1, nh)") {
            lin($0[0], $0[1], $0[2])
        }
    }

    @Test("reductions: sum and mean over a dimension (kept or not) and over all, max, logSumExp")
    func reductions() {
        var o = Operands(seed: 10)
        for dim in [0, 1, -1] {
            for keepDim in [false, true] {
                let label = Comment(rawValue: "dim \(dim), keepDim \(keepDim)")
                expectGradientsMatchFiniteDifferences([o.any(3, 4)], label) { $0[0].sum(dim, keepDim: keepDim) }
                expectGradientsMatchFiniteDifferences([o.any(3, 4)], label) { $0[0].mean(dim, keepDim: keepDim) }
                expectGradientsMatchFiniteDifferences([o.any(3, 4)], label) { $0[0].logSumExp(dim, keepDim: keepDim) }
            }
        }
        expectGradientsMatchFiniteDifferences([o.any(3, 4)], "sum()") { $0[0].sum() }
        expectGradientsMatchFiniteDifferences([o.any(3, 4)], "mean()") { $0[0].mean() }
        expectGradientsMatchFiniteDifferences([o.any(2, 3, 4)], "sum(1) of rank 3") { $0[0].sum(1) }
        // Distinct values at least 0.1 apart, so that the step never changes which one is largest.
        let x = Tensor([[0.3, -1.2, 1.9, 0.8], [-0.5, 2.2, 0.1, -1.4], [1.1, 0.6, -0.9, 1.5]])
        expectGradientsMatchFiniteDifferences([x], "max(1)") { $0[0].max(1) }
        expectGradientsMatchFiniteDifferences([x], "max(0, keepDim)") { $0[0].max(0, keepDim: true) }
    }

    @Test("the seed's functions composed: mse(lin(relu(lin(x)))), with the (n, 1) output squeezed")
    func seedFunctions() {
        var o = Operands(seed: 11)
        let targ = o.any(5)
        // Weights drawn until no ReLU input lies within the finite-difference step of 0.
        var inputs: [Tensor] = []
        repeat {
            inputs = [o.any(5, 4), o.any(4, 3), o.any(3), o.any(3, 1), o.any(1)]
        } while lin(inputs[0], inputs[1], inputs[2]).values.contains { abs($0) < 0.05 }
        expectGradientsMatchFiniteDifferences(inputs) { t in
            mse(lin(relu(lin(t[0], t[1], t[2])), t[3], t[4]), targ)
        }
    }
}

@Suite("Autograd: the graph")
struct GraphTests {
    @Test("nothing is recorded when no input requires gradients, or when recording is off")
    func noRecording() {
        let a = Tensor([[1, 2], [3, 4]])
        let b = Tensor([5, 6])
        let results = [a + b, a * 2, a • a, lin(a, a, b), (a - b).sum(0), a.t().contiguous(), relu(a), mse(a.t(), b)]
        for result in results {
            #expect(result.gradFn == nil)
            #expect(!result.requiresGrad)
            #expect(result.isLeaf)
        }
        a.requiresGrad = true
        GradMode.withNoGrad {
            let y = (a + b) * 2
            #expect(y.gradFn == nil)
            #expect(!y.requiresGrad)
        }
        let recorded = (a + b) * 2
        #expect(recorded.gradFn != nil)
        #expect(recorded.requiresGrad)
        #expect(!recorded.isLeaf)
    }

    @Test("a bias broadcast over rows gets its gradient summed back to its own shape")
    func biasGradientSummedOverRows() throws {
        let x = Tensor([[1, 2, 3], [4, 5, 6]])
        let b = Tensor([0.5, -1, 2])
        b.requiresGrad = true
        let weights = Tensor([[1, 2, 3], [10, 20, 30]])
        ((x + b) * weights).sum().backward()
        let gradient = try #require(b.grad)
        #expect(gradient.shape == [3])
        expectNear(gradient, weights.sum(0))  // Σ_rows ∂loss/∂(x + b)
    }

    @Test("a tensor used by two operations gets the sum of both contributions")
    func accumulationOverTwoUses() {
        var o = Operands(seed: 20)
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "a * 2 + a.exp()") { $0[0] * 2 + $0[0].exp() }
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "a * a") { $0[0] * $0[0] }
        expectGradientsMatchFiniteDifferences([o.any(3, 3)], "a • a") { $0[0] • $0[0] }
        expectGradientsMatchFiniteDifferences([o.any(3, 3)], "a • aᵀ") { $0[0] • $0[0].t() }
        // One tensor reaching the loss through two paths of different lengths.
        expectGradientsMatchFiniteDifferences([o.any(2, 3)], "(a + 1) * a.sum(1, keepDim)") {
            ($0[0] + 1) * $0[0].sum(1, keepDim: true)
        }
    }

    @Test("backward twice adds the gradients twice, on leaves and intermediate results")
    func backwardTwice() throws {
        let a = Tensor([[0.5, -1], [2, 3]])
        let b = Tensor([1.5, -0.5])
        a.requiresGrad = true
        b.requiresGrad = true
        let hidden = a * b
        let loss = (hidden.exp() + a).mean()
        loss.backward()
        let once = try [#require(a.grad), #require(b.grad), #require(hidden.grad)].map { $0.copy() }
        loss.backward()
        for (tensor, first) in zip([a, b, hidden], once) {
            expectNear(try #require(tensor.grad), first * 2, relativeTolerance: 0, absoluteTolerance: 0)
        }
    }

    @Test("zeroGrad clears .grad: the next backward starts from nothing, and .g is untouched")
    func zeroGrad() throws {
        let a = Tensor([1, 2, 3])
        a.requiresGrad = true
        a.g = Tensor([7, 8, 9])
        let loss = (a * a).sum()
        loss.backward()
        let first = try #require(a.grad).copy()
        a.zeroGrad()
        #expect(a.grad == nil)
        loss.backward()
        expectNear(try #require(a.grad), first, relativeTolerance: 0, absoluteTolerance: 0)
        expectNear(a.g, Tensor([7, 8, 9]), relativeTolerance: 0, absoluteTolerance: 0)
    }

    @Test(".grad has storage of its own, even where the derivative passes the gradient through")
    func gradientsDoNotShareStorage() throws {
        let a = Tensor([1, 2])
        let b = Tensor([3, 4])
        a.requiresGrad = true
        b.requiresGrad = true
        let sum = a + b  // ∂ passes g unchanged to both
        (sum * Tensor([5, 6])).sum().backward()
        let gradA = try #require(a.grad)
        let gradB = try #require(b.grad)
        let gradSum = try #require(sum.grad)
        #expect(gradA !== gradB && gradA.storage !== gradB.storage && gradA.storage !== gradSum.storage)
        gradA.withUnsafeMutableBufferPointer { $0[0] = 100 }
        #expect(gradB.values == [5, 6])
        #expect(gradSum.values == [5, 6])
    }

    @Test("the seed's .g and autograd's .grad live side by side on the same tensors")
    func gradAndGAreSeparate() throws {
        let x = Tensor([[1, -2], [3, 0.5]])
        let w = Tensor([[0.5], [-1]])
        let b = Tensor([0.25])
        for tensor in [x, w, b] { tensor.requiresGrad = true }
        let layer = Lin(w, b)
        let out = layer(x)
        (out * out).sum().backward()
        out.g = GradMode.withNoGrad { out * 2 }  // ∂ Σ out² / ∂out, by hand (recorded, it would hold out)
        GradMode.withNoGrad { layer.backward() }
        for tensor in [x, w, b] {
            expectNear(try #require(tensor.g), try #require(tensor.grad))
            #expect(tensor.g !== tensor.grad)
        }
    }

    @Test("a chain of 100,000 operations: backward and deallocation without overflowing the stack")
    func longChain() throws {
        let steps = 100_000
        let factor: Float = 1.000_01
        weak var middle: Tensor?
        do {
            let x = Tensor([1, 2])
            x.requiresGrad = true
            var y = x
            for step in 0..<steps {
                y = y * factor
                if step == steps / 2 { middle = y }
            }
            y.sum().backward()
            // ∂/∂x of x · factor^steps, with factor^steps computed independently in Double.
            let expected = Float(Foundation.pow(Double(factor), Double(steps)))
            expectNear(try #require(x.grad), Tensor([expected, expected]), relativeTolerance: 1e-3)
            #expect(middle != nil)
        }
        // Leaving the scope freed the whole chain (no cycle kept it), one node at a time.
        #expect(middle == nil)
    }

    @Test("a chain of 100,000 operations never walked by backward is freed without recursion")
    func longChainWithoutBackward() {
        weak var first: Tensor?
        do {
            let x = Tensor(1)
            x.requiresGrad = true
            var y = x + 1
            first = y
            for _ in 0..<100_000 { y = y + 1 }
            #expect(first != nil)
        }
        #expect(first == nil)
    }

    @Test("backward() stops when a recorded input was changed in place, naming the operation")
    func backwardDetectsInPlaceChanges() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let x = Tensor([1, 2, 3])
            x.requiresGrad = true
            let y = (x * x).sum()
            GradMode.withNoGrad { x[0] = 5 }
            y.backward()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("input 1 of '*'") && message.contains("changed in place"), "\(message)")
    }

    /// Changing a parameter in place between two passes (an optimizer's step) is what training
    /// does: the second pass records the new values and its gradient is right.
    @Test func inPlaceChangesBetweenPassesAreFine() {
        let w = Tensor([1, 2, 3])
        w.requiresGrad = true
        (w * w).sum().backward()
        #expect(w.grad?.values == [2, 4, 6])
        w.withUnsafeMutableBufferPointer { values in values[0] = 10 }
        w.zeroGrad()
        (w * w).sum().backward()
        #expect(w.grad?.values == [20, 4, 6])
    }

    @Test("backward() on a tensor of several elements stops, naming its shape")
    func backwardNeedsAScalar() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let x = Tensor([1, 2])
            x.requiresGrad = true
            (x * 2).backward()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("expects a scalar") && message.contains("[2]"), "\(message)")
    }

    @Test("backward() on a tensor that does not require gradients stops, saying so")
    func backwardNeedsRequiresGrad() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Tensor([1, 2]).sum().backward()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("requiresGrad"), "\(message)")
    }
}
