import Testing

@testable import Backprop

// The gradient check on the seed's model and deeper ones, and on models whose hand-written
// backward is deliberately wrong: the check must catch them, on the right rows.

/// The seed's `Lin`, with the bias gradient summed over the wrong dimension: `b.g = out.g.sum(1)`.
private final class LinWithBiasSummedOverColumns: Layer {
    let w: Tensor  // (m, nh)
    let b: Tensor  // (nh)
    private(set) var inp: Tensor!  // (n, m)
    private(set) var out: Tensor!  // (n, nh)
    init(_ w: Tensor, _ b: Tensor) {
        self.w = w
        self.b = b
    }
    var parameters: [Tensor] { [w, b] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        out = lin(inp, w, b)
        return out
    }
    func backward() {
        inp.g = out.g • w.t()
        w.g = inp.t() • out.g
        b.g = out.g.sum(1)  // wrong: sums each row, giving (n), not (nh)
    }
}

/// The seed's `Lin`, with a weight gradient of the right shape and the wrong values: `wᵀ` is
/// forgotten in `inp.g` and the product order of `w.g` is fine but scaled.
private final class LinWithScaledWeightGradient: Layer {
    let w: Tensor  // (m, nh)
    let b: Tensor  // (nh)
    private(set) var inp: Tensor!  // (n, m)
    private(set) var out: Tensor!  // (n, nh)
    init(_ w: Tensor, _ b: Tensor) {
        self.w = w
        self.b = b
    }
    var parameters: [Tensor] { [w, b] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        out = lin(inp, w, b)
        return out
    }
    func backward() {
        inp.g = out.g • w.t()
        w.g = inp.t() • out.g * 1.01  // wrong by 1%
        b.g = out.g.sum(0)
    }
}

/// The seed's `ReLU` with the mask forgotten: `inp.g = out.g`.
private final class ReLUWithoutMask: Layer {
    private(set) var inp: Tensor!  // (n, nh)
    private(set) var out: Tensor!  // (n, nh)
    var parameters: [Tensor] { [] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        out = relu(inp)
        return out
    }
    func backward() {
        inp.g = out.g  // wrong: should be (inp > 0).float() * out.g
    }
}

/// Inputs, targets and the seed's weights for a model of the given layer sizes: inputs in the
/// range of normalised pixels, targets the ten class numbers, as the seed regresses them.
private func problem(rows: Int, sizes: [Int], seed: UInt64) -> (x: Tensor, y: Tensor, linears: [(w: Tensor, b: Tensor)]) {
    var generator = RandomGenerator(seed: seed)
    let x = Tensor.randn([rows, sizes[0]], generator: &generator)  // (n, m)
    let y = Tensor((0..<rows).map { _ in Float(generator.nextIndex(below: 10)) })  // (n)
    return (x, y, Model.seedInitialization(sizes: sizes, generator: &generator))
}

@Suite("gradientCheck: the seed's gradients three ways")
struct GradientCheckTests {
    @Test("the seed's model passes, with rows x, w1, b1, w2, b2")
    func seedModelPasses() {
        let (x, y, linears) = problem(rows: 32, sizes: [100, 50, 1], seed: 1)
        let model = Model(linears[0].w, linears[0].b, linears[1].w, linears[1].b)
        let report = gradientCheck(model, x: x, y: y)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        #expect(report.rows.map(\.name) == ["x", "w1", "b1", "w2", "b2"])
        #expect(report.rows.map(\.shape) == [[32, 100], [100, 50], [50], [50, 1], [1]])
        for row in report.rows {
            #expect(row.manualVersusAutograd?.isNear == true)
            #expect(row.checkedElements + row.excludedElements == min(64, row.shape.reduce(1, *)))
        }
    }

    @Test("a deeper model, --hidden 64,32, passes with rows up to w3, b3")
    func deeperModelPasses() {
        let (x, y, linears) = problem(rows: 24, sizes: [40, 64, 32, 1], seed: 2)
        let report = gradientCheck(Model(linears: linears), x: x, y: y, options: .init(samples: 40, seed: 7))
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        #expect(report.rows.map(\.name) == ["x", "w1", "b1", "w2", "b2", "w3", "b3"])
    }

    @Test("b.g = out.g.sum(1) is caught: its row fails, naming both shapes")
    func biasSummedOverColumnsIsCaught() throws {
        let (x, y, linears) = problem(rows: 16, sizes: [20, 8, 1], seed: 3)
        let model = Model(
            layers: [LinWithBiasSummedOverColumns(linears[0].w, linears[0].b), ReLU(), Lin(linears[1].w, linears[1].b)],
            loss: Mse())
        let report = gradientCheck(model, x: x, y: y)
        #expect(!report.passed)
        let b1 = try #require(report.rows.first { $0.name == "b1" })
        #expect(!b1.passed)
        #expect(b1.manualShape == [16])
        #expect(b1.problems.contains { $0.contains("[16]") && $0.contains("[8]") })
        // The rows the wrong line does not touch still pass.
        #expect(report.rows.filter(\.passed).map(\.name) == ["x", "w1", "w2", "b2"])
    }

    @Test("a weight gradient 1% off is caught, against autograd and against finite differences")
    func scaledWeightGradientIsCaught() throws {
        let (x, y, linears) = problem(rows: 16, sizes: [20, 8, 1], seed: 4)
        let model = Model(
            layers: [Lin(linears[0].w, linears[0].b), ReLU(), LinWithScaledWeightGradient(linears[1].w, linears[1].b)],
            loss: Mse())
        let report = gradientCheck(model, x: x, y: y)
        #expect(report.rows.filter { !$0.passed }.map(\.name) == ["w2"])
        let w2 = try #require(report.rows.first { $0.name == "w2" })
        #expect(w2.manualVersusAutograd?.isNear == false)
        #expect((w2.manualVersusFiniteDifferences?.maxRelativeError ?? 0) > 5e-3)
        #expect(w2.autogradVersusFiniteDifferences.maxRelativeError < 1e-3)
    }

    @Test("a ReLU backward without its mask is caught on every tensor before it")
    func reluWithoutMaskIsCaught() {
        let (x, y, linears) = problem(rows: 16, sizes: [20, 8, 1], seed: 5)
        let model = Model(
            layers: [Lin(linears[0].w, linears[0].b), ReLUWithoutMask(), Lin(linears[1].w, linears[1].b)], loss: Mse())
        let report = gradientCheck(model, x: x, y: y)
        #expect(report.rows.filter { !$0.passed }.map(\.name) == ["x", "w1", "b1"])
    }

    @Test("ReLU inputs at exactly 0 are counted, and the elements they affect are left out")
    func reluInputsAtZeroAreExcluded() {
        var (x, y, linears) = problem(rows: 8, sizes: [6, 5, 1], seed: 6)
        // A row of zeros meets a zero bias: that row's five ReLU inputs are exactly 0.
        x = Tensor(shape: x.shape, values: x.values.enumerated().map { $0.offset < 6 ? 0 : $0.element })
        let model = Model(linears[0].w, linears[0].b, linears[1].w, linears[1].b)
        let report = gradientCheck(model, x: x, y: y)
        #expect(report.reluInputsAtZero == 5)
        // Moving b1 (any element) or x's first row moves an input away from 0: left out.
        let excluded = Dictionary(uniqueKeysWithValues: report.rows.map { ($0.name, $0.excludedElements) })
        #expect(excluded["b1"] == 5)
        #expect((excluded["x"] ?? 0) >= 6)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
    }

    @Test("requiresGrad is restored, and .g and .grad are left on the tensors")
    func stateAfterwards() throws {
        let (x, y, linears) = problem(rows: 4, sizes: [3, 2, 1], seed: 8)
        let model = Model(linears[0].w, linears[0].b, linears[1].w, linears[1].b)
        linears[0].w.requiresGrad = true
        _ = gradientCheck(model, x: x, y: y)
        #expect(!x.requiresGrad && linears[0].w.requiresGrad && !linears[1].b.requiresGrad)
        expectNear(try #require(x.g), try #require(x.grad))
    }
}
