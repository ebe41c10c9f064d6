import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

@Suite("Models deeper than the seed's")
struct DeeperModelTests {
    @Test("Model(linears:) is Lin, ReLU, Lin, ReLU, Lin, Mse around the very tensors given")
    func layers() throws {
        var generator = RandomGenerator(seed: 3)
        let linears = Model.kaimingInitialization(sizes: [6, 5, 4, 1], generator: &generator)
        let model = Model(linears: linears)
        #expect(model.layers.count == 5)
        #expect(model.loss is Mse)
        for (k, pair) in linears.enumerated() {
            let layer = try #require(model.layers[2 * k] as? Lin)
            #expect(layer.w === pair.w && layer.b === pair.b)
            if k > 0 { #expect(model.layers[2 * k - 1] is ReLU) }
        }
        // Two pairs are the seed's Model(w1, b1, w2, b2).
        let seedPairs = Array(Model.kaimingInitialization(sizes: [6, 5, 1], generator: &generator))
        let x = Tensor.randn([3, 6], generator: &generator)
        let y = Tensor([1, 2, 3])
        let seed = Model(seedPairs[0].w, seedPairs[0].b, seedPairs[1].w, seedPairs[1].b)
        #expect(Model(linears: seedPairs)(x, y).item() == seed(x, y).item())
    }

    @Test("Kaiming initialisation for [m, nh, 1] draws exactly the weights of backprop seed")
    func sameWeightsAsTheSeedProgram() {
        var first = RandomGenerator(seed: 42)
        var second = RandomGenerator(seed: 42)
        let linears = Model.kaimingInitialization(sizes: [784, 50, 1], generator: &first)
        let weights = SeedProgram.Weights.kaiming(inputs: 784, hidden: 50, generator: &second)
        #expect(linears[0].w.values == weights.w1.values)
        #expect(linears[0].b.values == weights.b1.values)
        #expect(linears[1].w.values == weights.w2.values)
        #expect(linears[1].b.values == weights.b2.values)
    }

    @Test("hidden layers are scaled by sqrt(2 / fan-in), the last by 1 / sqrt(fan-in)")
    func scales() {
        var generator = RandomGenerator(seed: 4)
        let linears = Model.kaimingInitialization(sizes: [400, 300, 200, 1], generator: &generator)
        func standardDeviation(_ t: Tensor) -> Double {
            let v = t.values.map(Double.init)
            let mean = v.reduce(0, +) / Double(v.count)
            return (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot()
        }
        // 120,000 and 60,000 samples: the standard deviation is within 1% of its target.
        #expect(abs(standardDeviation(linears[0].w) / (2.0 / 400).squareRoot() - 1) < 0.01)
        #expect(abs(standardDeviation(linears[1].w) / (2.0 / 300).squareRoot() - 1) < 0.01)
        #expect(abs(standardDeviation(linears[2].w) / (1.0 / 200).squareRoot() - 1) < 0.2)
        #expect(linears.allSatisfy { $0.b.values.allSatisfy { $0 == 0 } })
    }
}
