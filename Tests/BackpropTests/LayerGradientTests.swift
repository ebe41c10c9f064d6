import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// The seed's hand-written backward of each layer against central finite differences. A layer's
// `backward()` turns `out.g` into `inp.g`: with `out.g = r`, a fixed random tensor, `inp.g` must
// be the gradient of `Σ layer(inp) · r`, which finite differences measure from the forward alone.

@Suite("The seed's layers: backward against finite differences")
struct LayerGradientTests {
    @Test("Lin: inp.g = out.g • wᵀ, w.g = inpᵀ • out.g, b.g = Σ_rows out.g")
    func linBackward() {
        var generator = RandomGenerator(seed: 30)
        let inp = uniform([5, 4], in: -2...2, generator: &generator)  // (n, m)
        let w = uniform([4, 3], in: -1...1, generator: &generator)  // (m, nh)
        let b = uniform([3], in: -1...1, generator: &generator)  // (nh)
        let r = uniform([5, 3], in: -1...1, generator: &generator)  // (n, nh)
        let layer = Lin(w, b)
        let out = layer(inp)
        out.g = r
        layer.backward()
        let loss = { weightedSum(layer(inp), r) }
        for (name, tensor) in [("inp", inp), ("w", w), ("b", b)] {
            let estimates = finiteDifferences(of: loss, withRespectTo: tensor)
            expectNear(tensor.g, estimates, relativeTolerance: 2e-3, absoluteTolerance: 2e-4, Comment(rawValue: name))
        }
        #expect(b.g.shape == [3])
    }

    /// A bias given as a row `(1, nOut)` broadcasts as `(nOut)` does; its `b.g` used to come out
    /// `(nOut)`, which the optimizer's step then refused for a parameter of shape `(1, nOut)`.
    @Test("Lin with a (1, nOut) bias: b.g in b's shape, against finite differences, and a step takes it")
    func linBackwardWithARowBias() {
        var generator = RandomGenerator(seed: 34)
        let inp = uniform([5, 4], in: -2...2, generator: &generator)
        let w = uniform([4, 3], in: -1...1, generator: &generator)
        let b = uniform([1, 3], in: -1...1, generator: &generator)
        let r = uniform([5, 3], in: -1...1, generator: &generator)
        let layer = Lin(w, b)
        layer(inp).g = r
        layer.backward()
        #expect(b.g.shape == [1, 3])
        let estimates = finiteDifferences(of: { weightedSum(layer(inp), r) }, withRespectTo: b)
        expectNear(b.g, estimates, relativeTolerance: 2e-3, absoluteTolerance: 2e-4)
        let before = b.values
        SGD(layer.parameters, learningRate: 0.5).step()
        #expect(zip(zip(b.values, before), b.g.values).allSatisfy { pair, g in pair.0 == pair.1 - 0.5 * g })
    }

    @Test("ReLU: inp.g = (inp > 0) · out.g, away from the kink")
    func reluBackward() {
        // Inputs at least 0.1 from 0, so that the step never crosses the kink.
        let inp = Tensor([[-1.5, 0.4, 0.3, -0.1], [0.9, -0.2, 1.7, 2.5]])
        var generator = RandomGenerator(seed: 31)
        let r = uniform([2, 4], in: -1...1, generator: &generator)
        let layer = ReLU()
        let out = layer(inp)
        out.g = r
        layer.backward()
        let estimates = finiteDifferences(of: { weightedSum(layer(inp), r) }, withRespectTo: inp)
        expectNear(inp.g, estimates, relativeTolerance: 2e-3, absoluteTolerance: 2e-4)
    }

    @Test("ReLU at exactly 0: the hand-written gradient is 0, as autograd's and PyTorch's")
    func reluAtZero() throws {
        let inp = Tensor([[0, 1], [-1, 0]])
        inp.requiresGrad = true
        let layer = ReLU()
        let out = layer(inp)
        out.sum().backward()
        out.g = Tensor.ones(2, 2)
        GradMode.withNoGrad { layer.backward() }
        expectNear(inp.g, Tensor([[0, 1], [0, 0]]), relativeTolerance: 0, absoluteTolerance: 0)
        expectNear(inp.g, try #require(inp.grad), relativeTolerance: 0, absoluteTolerance: 0)
    }

    /// Finite differences, with respect to `inp`, of the loss in Double straight from its
    /// definition: the mean of the squared differences `(inp - targ)²`, element by element.
    static func mseFiniteDifferences(_ inp: Tensor, _ targ: Tensor) -> [Double] {
        finiteDifferences(
            of: {
                let difference = zip(inp.values, targ.values).map { Double($0) - Double($1) }
                return difference.map { $0 * $0 }.reduce(0, +) / Double(difference.count)
            }, withRespectTo: inp)
    }

    @Test("Mse: inp.g = 2 (inp.squeeze() - targ).unsqueeze(-1) / n, of shape (n, 1)")
    func mseBackward() {
        var generator = RandomGenerator(seed: 32)
        let inp = uniform([6, 1], in: -2...2, generator: &generator)  // (n, 1)
        let targ = uniform([6], in: 0...9, generator: &generator)  // (n)
        let loss = Mse()
        _ = loss(inp, targ)
        loss.backward()
        #expect(inp.g.shape == [6, 1])
        let estimates = Self.mseFiniteDifferences(inp, targ)
        expectNear(inp.g, estimates, relativeTolerance: 2e-3, absoluteTolerance: 2e-4)
        // And the forward that Mse runs agrees with that definition.
        let definition = zip(inp.values, targ.values).map { (Double($0) - Double($1)) * (Double($0) - Double($1)) }
        #expect(abs(Double(loss(inp, targ).item()) - definition.reduce(0, +) / 6) < 1e-5)
    }

    /// Every pair of shapes `Mse` accepts: the seed's, and those alike but for dimensions of size
    /// 1 (a `(1, n)` output gave `inp.g` of shape `(n, 1)`, n times too large; an `(n, c)` one a
    /// `(n, c, 1)` gradient, c times too large, which the next layer's product then refused).
    @Test(
        "Mse: inp.g in inp's shape, against finite differences and autograd, for every shape it accepts",
        arguments: [
            ([6, 1], [6]), ([6], [6]), ([1, 6], [6]), ([4, 3], [4, 3]), ([1, 4, 1, 3], [4, 3]), ([1, 1], [1]),
            ([1], [1, 1]), ([2, 1], [2]),
        ] as [([Int], [Int])])
    func mseBackwardForEveryShape(shapes: ([Int], [Int])) throws {
        let (inpShape, targShape) = shapes
        var generator = RandomGenerator(seed: 33)
        let inp = uniform(inpShape, in: -2...2, generator: &generator)
        let targ = uniform(targShape, in: 0...9, generator: &generator)
        let loss = Mse()
        _ = loss(inp, targ)
        loss.backward()
        #expect(inp.g.shape == inpShape)
        let estimates = Self.mseFiniteDifferences(inp, targ)
        expectNear(inp.g, estimates, relativeTolerance: 2e-3, absoluteTolerance: 2e-4)
        // Autograd, through the `mse` function, gives the same numbers.
        let tracked = Tensor(shape: inpShape, values: inp.values)
        tracked.requiresGrad = true
        mse(tracked, targ).backward()
        expectNear(inp.g, try #require(tracked.grad), relativeTolerance: 1e-6, absoluteTolerance: 1e-7)
    }

    @Test("Model: the seed's backward, layer by layer, against finite differences of the loss")
    func modelBackward() {
        var generator = RandomGenerator(seed: 33)
        let y = uniform([8], in: 0...9, generator: &generator)  // (n)
        // Inputs and weights drawn until no ReLU input lies within 0.05 of 0 (the step is 5e-3).
        var x: Tensor
        var weights: [(w: Tensor, b: Tensor)]
        repeat {
            x = uniform([8, 5], in: -2...2, generator: &generator)  // (n, m)
            weights = Model.kaimingInitialization(sizes: [5, 4, 1], generator: &generator)
        } while lin(x, weights[0].w, weights[0].b).values.contains { abs($0) < 0.05 }
        let model = Model(weights[0].w, weights[0].b, weights[1].w, weights[1].b)
        _ = model(x, y)
        model.backward()
        // The loss from the layers' forward, averaged in Double.
        let loss = {
            var out = x
            for layer in model.layers { out = layer(out) }
            let difference = zip(out.values, y.values).map { Double($0) - Double($1) }
            return difference.map { $0 * $0 }.reduce(0, +) / Double(difference.count)
        }
        let tensors = [
            ("x", x), ("w1", weights[0].w), ("b1", weights[0].b), ("w2", weights[1].w), ("b2", weights[1].b),
        ]
        for (name, tensor) in tensors {
            let estimates = finiteDifferences(of: loss, withRespectTo: tensor)
            expectNear(tensor.g, estimates, relativeTolerance: 2e-3, absoluteTolerance: 2e-4, Comment(rawValue: name))
        }
    }
}
