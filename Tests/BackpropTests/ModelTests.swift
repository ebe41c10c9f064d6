import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// The seed's model on small random data: the objects the seed says are shared are shared.
@Suite("The seed's Model")
struct ModelTests {
    /// x (n, m), y (n), w1 (m, nh), b1 (nh), w2 (nh, 1), b2 (1), as in the lesson.
    static func seedTensors(
        n: Int = 8, m: Int = 6, nh: Int = 4, seed: UInt64 = 1
    )
        -> (x: Tensor, y: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor)
    {
        var generator = RandomGenerator(seed: seed)
        let x = Tensor.randn([n, m], generator: &generator)
        let y = Tensor.randn([n], generator: &generator)
        let w1 = Tensor.randn([m, nh], generator: &generator) * Float(2.0 / Double(m)).squareRoot()
        let b1 = Tensor.zeros(nh)
        let w2 = Tensor.randn([nh, 1], generator: &generator) / Float(nh).squareRoot()
        let b2 = Tensor.zeros(1)
        return (x, y, w1, b1, w2, b2)
    }

    @Test func buildsTheSeedsLayers() throws {
        let (_, _, w1, b1, w2, b2) = Self.seedTensors()
        let model = Model(w1, b1, w2, b2)
        #expect(model.layers.count == 3)
        let l1 = try #require(model.layers[0] as? Lin)
        #expect(model.layers[1] is ReLU)
        let l2 = try #require(model.layers[2] as? Lin)
        #expect(model.loss is Mse)
        #expect(l1.w === w1 && l1.b === b1 && l2.w === w2 && l2.b === b2)
    }

    @Test func forwardStoresTheVeryObjectsTheSeedDescribes() throws {
        let (x, y, w1, b1, w2, b2) = Self.seedTensors()
        let model = Model(w1, b1, w2, b2)
        let loss = model(x, y)
        let l1 = try #require(model.layers[0] as? Lin)
        let r = try #require(model.layers[1] as? ReLU)
        let l2 = try #require(model.layers[2] as? Lin)
        let mseLoss = try #require(model.loss as? Mse)
        #expect(l1.inp === x)
        #expect(r.inp === l1.out)
        #expect(l2.inp === r.out)
        #expect(mseLoss.inp === l2.out)
        #expect(mseLoss.targ === y)
        #expect(mseLoss.out === loss)
        #expect(loss.shape == [])
    }

    @Test func forwardComputesTheSeedsFormulas() throws {
        let (x, y, w1, b1, w2, b2) = Self.seedTensors()
        let loss = Model(w1, b1, w2, b2)(x, y)
        // The same loss from the free functions, and from plain loops in Double.
        let output = lin(relu(lin(x, w1, b1)), w2, b2)
        #expect(loss.item() == mse(output, y).item())
        var total = 0.0
        for i in 0..<8 {
            var prediction = Double(b2[0])
            for j in 0..<4 {
                var hidden = Double(b1[j])
                for k in 0..<6 { hidden += Double(x[i, k]) * Double(w1[k, j]) }
                prediction += max(hidden, 0) * Double(w2[j, 0])
            }
            total += (prediction - Double(y[i])) * (prediction - Double(y[i]))
        }
        #expect(abs(Double(loss.item()) - total / 8) < 1e-5)
    }

    @Test func backwardPutsGradientsOnTheTensorsPassedIn() throws {
        let (x, y, w1, b1, w2, b2) = Self.seedTensors()
        let model = Model(w1, b1, w2, b2)
        _ = model(x, y)
        model.backward()
        #expect(x.g?.shape == [8, 6])
        #expect(w1.g?.shape == [6, 4])
        #expect(b1.g?.shape == [4])
        #expect(w2.g?.shape == [4, 1])
        #expect(b2.g?.shape == [1])
        let l1 = try #require(model.layers[0] as? Lin)
        let r = try #require(model.layers[1] as? ReLU)
        let l2 = try #require(model.layers[2] as? Lin)
        // L2.inp.g is R.out.g: one object, written by L2.backward and read by R.backward.
        #expect(l2.inp.g === r.out.g)
        #expect(r.inp.g === l1.out.g)
        #expect(model.loss.inp.g === l2.out.g)
        #expect(l2.out.g.shape == [8, 1])
    }

    @Test func backwardDoesNotRecordAnAutogradGraph() {
        let (x, y, w1, b1, w2, b2) = Self.seedTensors()
        let model = Model(w1, b1, w2, b2)
        let loss = model(x, y)
        model.backward()
        #expect(loss.gradFn == nil)
        #expect(w1.g.gradFn == nil)
        #expect(x.grad == nil)
    }
}
