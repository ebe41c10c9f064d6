import Testing

@testable import BackpropCore
@testable import BackpropNetwork

// Autograd must not know the layers: its derivatives come from the primitive operations the
// forward pass records (`x • w`, `+ b`, `clampMin`, `**`, `mean`, `logSumExp`, …), never from a
// layer's hand-written backward. Then comparing the seed's `.g` with autograd's `.grad` is a real
// check, and this suite shows it: each layer's backward is sabotaged with a classic slip, and the
// `.g` against `.grad` comparison alone (no finite differences) must catch every one.

/// A layer whose forward is the real layer's (so autograd records exactly what the real layer
/// does) and whose backward is a sabotaged copy of the real one.
private final class Sabotaged<Inner: Layer>: Layer {
    let inner: Inner
    let sabotagedBackward: (Inner) -> Void
    init(_ inner: Inner, backward: @escaping (Inner) -> Void) {
        self.inner = inner
        self.sabotagedBackward = backward
    }
    var inp: Tensor! { inner.inp }
    var out: Tensor! { inner.out }
    var parameters: [Tensor] { inner.parameters }
    func callAsFunction(_ inp: Tensor) -> Tensor { inner(inp) }
    func backward() { sabotagedBackward(inner) }
}

/// The same for a loss.
private final class SabotagedLoss<Inner: Loss>: Loss {
    let inner: Inner
    let sabotagedBackward: (Inner) -> Void
    init(_ inner: Inner, backward: @escaping (Inner) -> Void) {
        self.inner = inner
        self.sabotagedBackward = backward
    }
    var inp: Tensor! { inner.inp }
    var targ: Tensor! { inner.targ }
    var out: Tensor! { inner.out }
    func callAsFunction(_ inp: Tensor, _ targ: Tensor) -> Tensor { inner(inp, targ) }
    func backward() { sabotagedBackward(inner) }
}

/// One sabotage: which part of the model it replaces, and how.
struct Sabotage: CustomTestStringConvertible, Sendable {
    let name: String
    /// Builds the model `[L1, R, L2]` + loss from the weights, with one part sabotaged.
    let build: @Sendable (_ w1: Tensor, _ b1: Tensor, _ w2: Tensor, _ b2: Tensor, _ classes: Bool) -> Model
    var testDescription: String { name }
}

@Suite("Autograd is independent of the layers' backward")
struct AutogradIndependenceTests {
    /// The seed's model with `L1` replaced by `first`, `R` by `relu`, `L2` by `second`.
    static func model(
        first: any Layer, relu: any Layer = ReLU(), second: any Layer, loss: any Loss
    ) -> Model {
        Model(layers: [first, relu, second], loss: loss)
    }

    static let sabotages: [Sabotage] = [
        Sabotage(name: "Lin: w.g = inpᵀ • out.g, scaled by 1.01") { w1, b1, w2, b2, classes in
            let first = Sabotaged(Lin(w1, b1)) { l in
                l.inp.g = l.out.g • l.w.t()
                l.w.g = (l.inp.t() • l.out.g) * 1.01
                l.b.g = l.out.g.sum(0)
            }
            return model(first: first, second: Lin(w2, b2), loss: classes ? CrossEntropy() : Mse())
        },
        Sabotage(name: "Lin: b.g = out.g.mean(0) instead of sum(0)") { w1, b1, w2, b2, classes in
            let second = Sabotaged(Lin(w2, b2)) { l in
                l.inp.g = l.out.g • l.w.t()
                l.w.g = l.inp.t() • l.out.g
                l.b.g = l.out.g.mean(0)
            }
            return model(first: Lin(w1, b1), second: second, loss: classes ? CrossEntropy() : Mse())
        },
        Sabotage(name: "Lin: inp.g forgotten (the next layer down reads a stale out.g)") { w1, b1, w2, b2, classes in
            let second = Sabotaged(Lin(w2, b2)) { l in
                l.inp.g = Tensor.zeros(l.inp.shape)
                l.w.g = l.inp.t() • l.out.g
                l.b.g = l.out.g.sum(0)
            }
            return model(first: Lin(w1, b1), second: second, loss: classes ? CrossEntropy() : Mse())
        },
        Sabotage(name: "ReLU: inp.g = out.g (the mask forgotten)") { w1, b1, w2, b2, classes in
            let relu = Sabotaged(ReLU()) { r in r.inp.g = r.out.g }
            return model(first: Lin(w1, b1), relu: relu, second: Lin(w2, b2), loss: classes ? CrossEntropy() : Mse())
        },
        Sabotage(name: "Mse: inp.g without the factor 2") { w1, b1, w2, b2, _ in
            let loss = SabotagedLoss(Mse()) { m in
                m.inp.g = (m.inp.squeeze() - m.targ).unsqueeze(-1) / Float(m.inp.shape[0])
            }
            return model(first: Lin(w1, b1), second: Lin(w2, b2), loss: loss)
        },
        Sabotage(name: "CrossEntropy: inp.g not divided by n") { w1, b1, w2, b2, _ in
            let loss = SabotagedLoss(CrossEntropy()) { c in
                c.inp.g = softmax(c.inp) - oneHot(c.targ, classes: c.inp.shape[1])
            }
            return model(first: Lin(w1, b1), second: Lin(w2, b2), loss: loss)
        },
    ]

    /// Runs one recorded forward pass, the model's `backward()` (recording off) and autograd's
    /// `backward()`, and compares `.g` with `.grad` on `x` and every parameter, as `test_near`.
    static func manualAgainstAutograd(_ model: Model, x: Tensor, y: Tensor) -> [String: NearReport] {
        let named = [("x", x)] + model.parameters.enumerated().map { ("p\($0.offset)", $0.element) }
        for (_, tensor) in named {
            tensor.requiresGrad = true
            tensor.g = nil
            tensor.grad = nil
        }
        let loss = model(x, y)
        GradMode.withNoGrad { model.backward() }
        loss.backward()
        var reports: [String: NearReport] = [:]
        for (name, tensor) in named {
            guard let g = tensor.g, let grad = tensor.grad else { continue }
            reports[name] = near(g, grad)
        }
        return reports
    }

    /// Data and weights: 8 rows of 6 inputs, 5 hidden units, 1 output (regression) or 3 classes.
    static func setup(classes: Bool) -> (x: Tensor, y: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) {
        var generator = RandomGenerator(seed: 77)
        let outputs = classes ? 3 : 1
        let x = uniform([8, 6], in: -1...1, generator: &generator)
        let y =
            classes
            ? Tensor((0..<8).map { Float($0 % 3) })
            : uniform([8], in: -1...1, generator: &generator)
        return (
            x, y, uniform([6, 5], in: -1...1, generator: &generator),
            uniform([5], in: -0.5...0.5, generator: &generator),
            uniform([5, outputs], in: -1...1, generator: &generator),
            uniform([outputs], in: -0.5...0.5, generator: &generator)
        )
    }

    @Test("the real layers' .g agree with autograd's .grad", arguments: [false, true])
    func realLayersAgree(classes: Bool) {
        let (x, y, w1, b1, w2, b2) = Self.setup(classes: classes)
        let model = Model(linears: [(w1, b1), (w2, b2)], loss: classes ? CrossEntropy() : Mse())
        let reports = Self.manualAgainstAutograd(model, x: x, y: y)
        #expect(reports.count == 5)
        for (name, report) in reports { #expect(report.isNear, "\(name): \(report)") }
    }

    @Test("a sabotaged backward is caught by .g against .grad alone", arguments: sabotages)
    func sabotageIsCaught(_ sabotage: Sabotage) {
        for classes in [false, true] {
            if sabotage.name.hasPrefix("Mse") && classes { continue }
            if sabotage.name.hasPrefix("CrossEntropy") && !classes { continue }
            let (x, y, w1, b1, w2, b2) = Self.setup(classes: classes)
            let model = sabotage.build(w1, b1, w2, b2, classes)
            let reports = Self.manualAgainstAutograd(model, x: x, y: y)
            let caught = reports.filter { !$0.value.isNear }.map(\.key).sorted()
            #expect(!caught.isEmpty, "\(sabotage.name) (\(classes ? "cross-entropy" : "mse")) was not caught")
        }
    }

    @Test("lin is recorded as the seed's two operations, a product and a broadcast add")
    func linIsRecordedAsProductAndAdd() throws {
        let (x, _, w, b, _, _) = Self.setup(classes: false)
        w.requiresGrad = true
        let out = lin(x, w, b)
        let add = try #require(out.recordedOperation)
        #expect(add.name == "+")
        #expect(add.inputs.count == 2 && add.inputs[1] === b)
        let product = try #require(add.inputs[0].recordedOperation)
        #expect(product.name == "•" && product.inputs[0] === x && product.inputs[1] === w)
        // The values are the seed's x @ w + b, whichever path computed them.
        let manual = GradMode.withNoGrad { lin(x, w, b) }
        expectNear(out, manual, relativeTolerance: 1e-6, absoluteTolerance: 1e-6)
    }
}
