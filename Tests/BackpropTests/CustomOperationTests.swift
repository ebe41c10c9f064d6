import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropNetwork

// Custom differentiable operations (issue 14): a user's forward and derivative, recorded by
// autograd as one node, checked against finite differences; a wrong derivative is caught.

/// Softplus, `y = log(1 + eˣ)`, with its derivative `σ(x)`: the protocol's doc-comment example.
private struct Softplus: DifferentiableOperation {
    func forward(_ inputs: [Tensor]) -> Tensor {
        (inputs[0].exp() + 1).log()
    }

    func backward(gradient: Tensor, inputs: [Tensor], output: Tensor) -> [Tensor?] {
        [gradient * inputs[0].sigmoid()]
    }
}

/// Swish, `y = x σ(x)`, inline, with `∂y/∂x = σ(x) + y (1 - σ(x))`, or, when `forgetting` the
/// second term, a plausible but wrong derivative `σ(x)`.
private func swish(forgetting: Bool = false) -> CustomOperation {
    CustomOperation(
        name: forgetting ? "wrong swish" : "swish",
        forward: { inputs in inputs[0] * inputs[0].sigmoid() },
        backward: { gradient, inputs, output in
            let s = inputs[0].sigmoid()
            return [forgetting ? gradient * s : gradient * (s + output * (1 - s))]
        })
}

/// `a · b` elementwise over two inputs of one shape, `∂ = (g · b, g · a)`.
private func product() -> CustomOperation {
    CustomOperation(
        name: "product",
        forward: { inputs in inputs[0] * inputs[1] },
        backward: { gradient, inputs, _ in [gradient * inputs[1], gradient * inputs[0]] })
}

/// `Σ op(x)`, accumulated in Double: the loss the finite differences differentiate.
private func summed(_ operation: some DifferentiableOperation, _ x: Tensor) -> Double {
    Tensor.apply(operation, x).values.reduce(0.0) { $0 + Double($1) }
}

/// `near` with the tolerances of finite differences against a gradient (those of
/// `expectGradientsMatchFiniteDifferences`).
private func nearEstimates(_ gradient: Tensor, _ estimates: [Double]) -> NearReport {
    near(
        gradient, Tensor(shape: gradient.shape, values: estimates.map { Float($0) }), relativeTolerance: 2e-3,
        absoluteTolerance: 2e-4)
}

@Suite("Custom differentiable operations")
struct CustomOperationTests {
    @Test("a protocol operation: forward values and gradient by hand, one node in the graph")
    func softplusByHand() {
        let x = Tensor([-1, 0, 2])
        x.requiresGrad = true
        let y = Tensor.apply(Softplus(), x)
        // math.log1p(math.exp(v)) for v = -1, 0, 2.
        expectNear(y, [0.31326168751822286, 0.6931471805599453, 2.1269280110429727])
        #expect(y.recordedOperation?.name == "Softplus")
        #expect(y.recordedOperation?.inputs.count == 1)
        #expect(y.recordedOperation?.inputs.first === x)  // the forward's exp, + and log are not recorded
        y.sum().backward()
        // σ(v) = 1 / (1 + math.exp(-v)).
        expectNear(x.grad!, [0.2689414213699951, 0.5, 0.8807970779778823])
    }

    @Test("gradients of custom operations agree with finite differences, alone and inside a chain")
    func finiteDifferencesAgree() {
        var generator = RandomGenerator(seed: 21)
        let x = uniform([3, 4], in: -3...3, generator: &generator)
        let w = uniform([4, 2], in: -1...1, generator: &generator)
        let b = uniform([3, 4], in: -1...1, generator: &generator)
        expectGradientsMatchFiniteDifferences([x], "softplus") { Tensor.apply(Softplus(), $0[0]) }
        expectGradientsMatchFiniteDifferences([x], "swish") { Tensor.apply(swish(), $0[0]) }
        expectGradientsMatchFiniteDifferences([x, b], "product") { Tensor.apply(product(), $0[0], $0[1]) }
        expectGradientsMatchFiniteDifferences([x, w], "swish inside a chain") { inputs in
            Tensor.apply(swish(), inputs[0] • inputs[1]).tanh() * 2
        }
    }

    @Test("a wrong derivative is caught by finite differences")
    func wrongDerivativeIsCaught() {
        var generator = RandomGenerator(seed: 22)
        let x = uniform([2, 5], in: -3...3, generator: &generator)
        x.requiresGrad = true
        Tensor.apply(swish(forgetting: true), x).sum().backward()
        let estimates = finiteDifferences(of: { summed(swish(forgetting: true), x) }, withRespectTo: x)
        let report = nearEstimates(x.grad!, estimates)
        #expect(!report.isNear, "\(report)")
        #expect(report.mismatches >= 8, "\(report)")  // σ(x) ≠ σ(x) + y (1 - σ(x)) wherever x ≠ 0
        // The right derivative passes the same check on the same tensor.
        x.zeroGrad()
        Tensor.apply(swish(), x).sum().backward()
        let right = finiteDifferences(of: { summed(swish(), x) }, withRespectTo: x)
        let rightReport = nearEstimates(x.grad!, right)
        #expect(rightReport.isNear, "\(rightReport)")
    }

    @Test("with recording off, nothing is recorded; a forward returning its input leaves it a leaf")
    func noGradAndIdentity() {
        let x = Tensor([1, 2])
        x.requiresGrad = true
        let quiet = GradMode.withNoGrad { Tensor.apply(Softplus(), x) }
        #expect(!quiet.requiresGrad && quiet.isLeaf)

        let identity = CustomOperation(
            name: "identity", forward: { $0[0] }, backward: { gradient, _, _ in [gradient] })
        let y = Tensor.apply(identity, x)
        #expect(y !== x)
        #expect(x.isLeaf && !y.isLeaf)
        (y * Tensor([3, 4])).sum().backward()
        #expect(x.grad?.values == [3, 4])
    }

    @Test("nil for an input without a gradient; inputs that do not require gradients are skipped")
    func nilGradients() {
        let x = Tensor([1, -2, 3])
        let mask = Tensor([1, 0, 1])
        x.requiresGrad = true
        let masked = CustomOperation(
            name: "masked", forward: { $0[0] * $0[1] },
            backward: { gradient, inputs, _ in [gradient * inputs[1], nil] })
        Tensor.apply(masked, x, mask).sum().backward()
        #expect(x.grad?.values == [1, 0, 1])
        #expect(mask.grad == nil)
    }

    @Test("a gradient of the wrong shape stops naming the operation and both shapes")
    func wrongShapeStops() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let broken = CustomOperation(
                name: "broken", forward: { $0[0].sum() }, backward: { gradient, _, _ in [gradient] })
            let x = Tensor([1, 2, 3])
            x.requiresGrad = true
            Tensor.apply(broken, x).backward()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("broken") && message.contains("[]") && message.contains("[3]"), "\(message)")
    }

    @Test("the wrong number of gradients stops naming the operation and both counts")
    func wrongCountStops() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let broken = CustomOperation(
                name: "short", forward: { $0[0] + $0[1] }, backward: { gradient, _, _ in [gradient] })
            let x = Tensor([1, 2])
            x.requiresGrad = true
            Tensor.apply(broken, x, Tensor([3, 4])).sum().backward()
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("short") && message.contains("1 gradients for 2 inputs"), "\(message)")
    }
}
