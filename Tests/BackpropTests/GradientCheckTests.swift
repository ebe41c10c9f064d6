import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining
@testable import backprop

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

/// The seed's `Lin`, with a weight gradient of the right shape and the wrong values: `w.g`
/// scaled by `factor` (1.01: wrong by 1%; -1: negated).
private final class LinWithScaledWeightGradient: Layer {
    let w: Tensor  // (m, nh)
    let b: Tensor  // (nh)
    let factor: Float
    private(set) var inp: Tensor!  // (n, m)
    private(set) var out: Tensor!  // (n, nh)
    init(_ w: Tensor, _ b: Tensor, factor: Float = 1.01) {
        self.w = w
        self.b = b
        self.factor = factor
    }
    var parameters: [Tensor] { [w, b] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        out = lin(inp, w, b)
        return out
    }
    func backward() {
        inp.g = out.g • w.t()
        w.g = inp.t() • out.g * factor  // wrong
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
private func problem(rows: Int, sizes: [Int], seed: UInt64) -> (x: Tensor, y: Tensor, linears: [(w: Tensor, b: Tensor)])
{
    var generator = RandomGenerator(seed: seed)
    let x = Tensor.randn([rows, sizes[0]], generator: &generator)  // (n, m)
    let y = Tensor((0..<rows).map { _ in Float(generator.nextIndex(below: 10)) })  // (n)
    return (x, y, Model.kaimingInitialization(sizes: sizes, generator: &generator))
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
            #expect(row.checkedElements == min(64, row.shape.reduce(1, *)) && row.noisyElements == 0)
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
            layers: [
                LinWithBiasSummedOverColumns(linears[0].w, linears[0].b), ReLU(), Lin(linears[1].w, linears[1].b),
            ],
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

    @Test("ReLU inputs at exactly 0 are counted, and the elements that move them are checked on the frozen piece")
    func reluInputsAtZeroAreChecked() {
        var (x, y, linears) = problem(rows: 8, sizes: [6, 5, 1], seed: 6)
        // A row of zeros meets a zero bias: that row's five ReLU inputs are exactly 0.
        x = Tensor(shape: x.shape, values: x.values.enumerated().map { $0.offset < 6 ? 0 : $0.element })
        let model = Model(linears[0].w, linears[0].b, linears[1].w, linears[1].b)
        let report = gradientCheck(model, x: x, y: y)
        #expect(report.kinks == [GradientCheckKinks(layer: 1, kind: "ReLU", count: 5)])
        // Moving b1 (any element) or x's first row moves an input away from 0 both ways: the loss
        // has no derivative there, and the frozen piece (0) is the backward's convention.
        let atKink = Dictionary(uniqueKeysWithValues: report.rows.map { ($0.name, $0.atKinkElements) })
        #expect(atKink["b1"] == 5)
        #expect((atKink["x"] ?? 0) >= 6)
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

// MARK: - On the seed's fixtures and on real Fashion-MNIST rows

private let fashionMNISTPresent = FileManager.default.fileExists(
    atPath: FashionMNIST.defaultDirectory + "/train-images-idx3-ubyte.gz")

/// The first `rows` rows of Fashion-MNIST's training images and classes, prepared as the seed
/// prepares them (normalised with the statistics of the few rows read, to keep the test fast).
private func fashionMNISTRows(_ rows: Int) throws -> (x: Tensor, y: Tensor) {
    // `limit` rows are split 5 : 1 into training and validation rows.
    let data = try FashionMNIST(directory: FashionMNIST.defaultDirectory, limit: rows * 6 / 5 + 6)
    let x = Tensor(shape: [rows, 784], values: Array(data.xTrain.values.prefix(rows * 784)))
    let y = Tensor(Array(data.yTrain.values.prefix(rows)))
    return (x, y)
}

@Suite("The seed's gradients on fixtures and on Fashion-MNIST")
struct SeedGradientTests {
    @Test(
        "manual .g and autograd .grad both equal the gradients numpy computes in float64",
        arguments: ["seed_small.safetensors", "seed_wide.safetensors"])
    func matchNumpy(fixture: String) throws {
        let file = try Safetensors.read(path: fixturePath(fixture))
        let (x, y) = try file.inputsAndTargets()
        let linears = try file.linearWeights(inputs: x.shape[1])
        let model = Model(linears: linears)
        let tensors = ["x": x, "w1": linears[0].w, "b1": linears[0].b, "w2": linears[1].w, "b2": linears[1].b]
        for tensor in tensors.values { tensor.requiresGrad = true }
        let loss = model(x, y)
        GradMode.withNoGrad { model.backward() }
        loss.backward()
        expectNear(loss.reshape([1]), try file.tensor("loss"), relativeTolerance: 1e-5, absoluteTolerance: 1e-6)
        for (name, tensor) in tensors {
            let expected = try file.tensor("\(name).g")
            expectNear(try #require(tensor.g), expected, relativeTolerance: 1e-4, absoluteTolerance: 1e-6, "\(name).g")
            expectNear(
                try #require(tensor.grad), expected, relativeTolerance: 1e-4, absoluteTolerance: 1e-6, "\(name).grad")
        }
    }

    @Test("gradientCheck passes on the fixture's data and weights (gradcheck --tensors --init)")
    func checkOnFixture() throws {
        let file = try Safetensors.read(path: fixturePath("seed_small.safetensors"))
        let (x, y) = try file.inputsAndTargets()
        let report = gradientCheck(Model(linears: try file.linearWeights(inputs: x.shape[1])), x: x, y: y)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        #expect(report.rows.map(\.checkedElements) == [64, 50, 5, 5, 1])
    }

    @Test(
        "on 256 real rows, the seed's .g equals autograd's .grad on every tensor, intermediates included",
        .enabled(if: fashionMNISTPresent, "Fashion-MNIST is not installed at \(FashionMNIST.defaultDirectory)"))
    func manualEqualsAutogradOnFashionMNIST() throws {
        let (x, y) = try fashionMNISTRows(256)
        var generator = RandomGenerator(seed: 11)
        let linears = Model.kaimingInitialization(sizes: [784, 50, 1], generator: &generator)
        let model = Model(linears: linears)
        for tensor in [x] + model.parameters { tensor.requiresGrad = true }
        let loss = model(x, y)
        GradMode.withNoGrad { model.backward() }
        loss.backward()
        // Every tensor the seed's backward writes a .g on: the inputs, the parameters, and each
        // layer's output (the next layer's input).
        let tensors = [x] + model.parameters + model.layers.map { $0.out! }
        for (k, tensor) in tensors.enumerated() {
            expectNear(try #require(tensor.g), try #require(tensor.grad), "tensor \(k) of shape \(tensor.shape)")
        }
    }

    @Test(
        "gradientCheck passes on real rows, for the seed's model and for --hidden 64,32",
        .enabled(if: fashionMNISTPresent, "Fashion-MNIST is not installed at \(FashionMNIST.defaultDirectory)"),
        arguments: [[50], [64, 32]])
    func checkOnFashionMNIST(hidden: [Int]) throws {
        let (x, y) = try fashionMNISTRows(64)
        var generator = RandomGenerator(seed: 12)
        let model = Model(linears: Model.kaimingInitialization(sizes: [784] + hidden + [1], generator: &generator))
        let report = gradientCheck(model, x: x, y: y, options: .init(samples: 32))
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        #expect(report.rows.count == 2 * hidden.count + 3)
        #expect(report.rows.allSatisfy { $0.noisyElements == 0 })
    }
}

// MARK: - Any model made of layers

/// A layer whose backward is its inner layer's with `inp.g` scaled by `factor` (1.01 unless
/// given): a deliberately wrong gradient for every tensor before it, while its forward (and so
/// autograd) stays right.
private final class ScaledInputGradient: Layer {
    let inner: any Layer
    let factor: Float
    init(_ inner: any Layer, by factor: Float = 1.01) {
        self.inner = inner
        self.factor = factor
    }
    var inp: Tensor! { inner.inp }  // the inner layer's (n, …)
    var out: Tensor! { inner.out }  // the inner layer's (n, …)
    var parameters: [Tensor] { inner.parameters }
    var namedParameters: [(name: String, tensor: Tensor)] { inner.namedParameters }
    var buffers: [(name: String, tensor: Tensor)] { inner.buffers }
    func callAsFunction(_ inp: Tensor) -> Tensor { inner(inp) }
    func backward() {
        inner.backward()
        inp.g = inp.g * factor  // wrong by 1% (or as given)
    }
}

/// A model of `text` on inputs `[n] + input`, with class targets below `classes`.
private func describedProblem(
    _ text: String, input: [Int], rows: Int, classes: Int, seed: UInt64
) throws -> (model: Model, x: Tensor, y: Tensor) {
    var generator = RandomGenerator(seed: seed)
    let model = try Model(
        description: ModelDescription(parsing: text), inputShape: input, loss: CrossEntropy(), generator: &generator)
    let x = Tensor.randn([rows] + input, generator: &generator)
    let y = Tensor((0..<rows).map { _ in Float(generator.nextIndex(below: classes)) })  // (n)
    return (model, x, y)
}

/// The small convnet of the gradient checks: every kind of layer the cnn preset has, and GELU.
private let smallConvnet = "conv 3 3 pad 1, batchnorm, relu, maxpool 2, flatten, dropout 0.5, lin 5, gelu, lin 3"

@Suite("gradientCheck: any model made of layers")
struct DescribedModelGradientCheckTests {
    @Test("a small convnet passes with cross-entropy, its rows named layers.I.NAME, its state put back")
    func convnetPasses() throws {
        let (model, x, y) = try describedProblem(smallConvnet, input: [1, 8, 8], rows: 2, classes: 3, seed: 1)
        let buffersBefore = model.namedBuffers.map(\.tensor.values)
        let report = gradientCheck(model, x: x, y: y, options: .init(samples: 24))
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        #expect(
            report.rows.map(\.name) == [
                "x", "layers.0.w", "layers.0.b", "layers.1.w", "layers.1.b", "layers.6.w", "layers.6.b", "layers.8.w",
                "layers.8.b",
            ])
        #expect(report.rows.allSatisfy { $0.checkedElements > 0 })
        // The convolution's bias before the batch norm has a zero gradient: rounding, passed.
        let bias = try #require(report.rows.first { $0.name == "layers.0.b" })
        #expect(bias.passed && bias.autogradVersusFiniteDifferences.maxRelativeError < 1e-4)
        // Buffers untouched, dropout unfrozen, the first layer's input gradient off again.
        #expect(model.namedBuffers.map(\.tensor.values) == buffersBefore)
        #expect((model.layers[5] as? Dropout)?.freezesMask == false)
        #expect((model.layers[0] as? Conv2d)?.needsInputGradient == false)
    }

    @Test("the smooth activations' hand-written backward passes between Lins: tanh, sigmoid, silu, gelu")
    func smoothActivationsPass() throws {
        let (model, x, y) = try describedProblem(
            "lin 6, tanh, lin 6, sigmoid, lin 6, silu, lin 6, gelu, lin 3", input: [5], rows: 4, classes: 3, seed: 2)
        let report = gradientCheck(model, x: x, y: y)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        #expect(report.rows.map(\.name).first == "x" && report.rows.count == 11)
    }

    @Test("Hardtanh and ReLU6 pass, their pieces frozen at the point checked, some inputs clamped")
    func hardtanhPasses() throws {
        let (model, x, y) = try describedProblem(
            "lin 8, hardtanh, lin 8, relu6, lin 3", input: [5], rows: 6, classes: 3, seed: 3)
        let scaled = x * 3  // inputs beyond the bounds too
        let report = gradientCheck(model, x: scaled, y: y)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        let first = try #require(model.layers[1] as? Hardtanh)
        _ = model(scaled, y)
        #expect(first.pieces.contains(1) && first.pieces.contains { $0 == 0 || $0 == 2 }, "\(first.pieces)")
        #expect(!first.freezesPieces)
    }

    @Test("a Lin without a bias (before a batch norm, and last) passes; it has no b, and no b.g")
    func linWithoutBiasPasses() throws {
        let (model, x, y) = try describedProblem(
            "lin 5 nobias, batchnorm, relu, lin 3 nobias", input: [6], rows: 8, classes: 3, seed: 4)
        let report = gradientCheck(model, x: x, y: y)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        #expect(report.rows.map(\.name) == ["x", "layers.0.w", "layers.1.w", "layers.1.b", "layers.3.w"])
        let lin = try #require(model.layers[3] as? Lin)
        #expect(!lin.hasBias && lin.parameters.count == 1 && lin.b.g == nil && lin.w.g != nil)
        // The seed's names: w1 alone for a Lin without a bias.
        var generator = RandomGenerator(seed: 5)
        let seedLike = Model(
            layers: [
                Lin(Tensor.randn([6, 4], generator: &generator)), ReLU(),
                Lin(Tensor.randn([4, 1], generator: &generator), Tensor.randn([1], generator: &generator)),
            ], loss: Mse())
        let seedReport = gradientCheck(seedLike, x: x, y: Tensor.randn([8], generator: &generator))
        #expect(seedReport.passed, "\(seedReport.rows.flatMap(\.problems))")
        #expect(seedReport.rows.map(\.name) == ["x", "w1", "w2", "b2"])
    }

    @Test("[Lin, Tanh, Lin] passes with cross-entropy (its loss summed in Double)")
    func tanhWithCrossEntropyPasses() throws {
        let (model, x, y) = try describedProblem("lin 5, tanh, lin 3", input: [6], rows: 8, classes: 3, seed: 2)
        let report = gradientCheck(model, x: x, y: y)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        #expect(report.rows.map(\.name) == ["x", "layers.0.w", "layers.0.b", "layers.2.w", "layers.2.b"])
        // The finite differences' loss is cross-entropy summed in Double, unrounded.
        let logits = model.predict(x).values.map(Double.init)
        var reference = 0.0
        for row in 0..<8 {
            let scores = logits[(row * 3)..<(row * 3 + 3)]
            let label = Int(y.values[row])
            reference += Foundation.log(scores.map(Foundation.exp).reduce(0, +)) - scores[row * 3 + label]
        }
        let loss = GradientCheck.loss(model, x: x, y: y)
        #expect(abs(loss - reference / 8) < 1e-12)
    }

    /// Inputs of 1e-7 make the first layer's gradient about 1e-7 of the largest: such a tensor was
    /// compared with autograd at the largest gradient's scale, as if it were rounding, so a
    /// negated `w.g` passed (a helper's find). Its rounding, measured, is far below it.
    @Test("a wrong gradient far below the model's largest is caught at its own scale; a right one passes")
    func smallGradientIsCheckedAtItsOwnScale() throws {
        var generator = RandomGenerator(seed: 21)
        let x = Tensor.randn([8, 6], generator: &generator) * 1e-7
        let y = Tensor((0..<8).map { _ in Float(generator.nextIndex(below: 4)) })
        let (w1, b1) = (Tensor.randn([6, 6], generator: &generator) * 0.5, Tensor.randn([6], generator: &generator))
        let (w2, b2) = (Tensor.randn([6, 4], generator: &generator) * 0.5, Tensor.randn([4], generator: &generator))
        let right = Model(layers: [Lin(w1, b1), Tanh(), Lin(w2, b2)], loss: CrossEntropy())
        let report = gradientCheck(right, x: x, y: y)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        let firstGradient = try #require(w1.grad)
        let biggest = try #require(w2.grad)
        #expect(GradientCheck.largestMagnitude(firstGradient) < 1e-6 * GradientCheck.largestMagnitude(biggest))

        let wrong = Model(
            layers: [LinWithScaledWeightGradient(w1, b1, factor: -1), Tanh(), Lin(w2, b2)], loss: CrossEntropy())
        let wrongReport = gradientCheck(wrong, x: x, y: y)
        let row = try #require(wrongReport.rows.first { $0.shape == [6, 6] })
        #expect(!row.passed)
        #expect(row.problems.contains { $0.contains("against autograd") }, "\(row.problems)")
        #expect(wrongReport.rows.filter(\.passed).count == wrongReport.rows.count - 1)
    }

    @Test("a loss of one's own that conforms to LossInDouble is summed in Double by the check")
    func ownLossInDouble() throws {
        var generator = RandomGenerator(seed: 4)
        let loss = HalfSquaredError()
        let model = Model(
            layers: [
                Lin(Tensor.randn([5, 4], generator: &generator), Tensor.zeros([4])), Tanh(),
                Lin(Tensor.randn([4, 1], generator: &generator), Tensor.zeros([1])),
            ],
            loss: loss)
        let x = Tensor.randn([6, 5], generator: &generator)  // (n, 5)
        let y = Tensor.randn([6], generator: &generator)  // (n)
        let report = gradientCheck(model, x: x, y: y)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        #expect(loss.doubleCalls > 0)
        // The check's loss is the Double sum from the Float output, not the Float loss.
        let output = model.predict(x).values.map(Double.init)
        var reference = 0.0
        for (value, target) in zip(output, y.values) {
            reference += 0.5 * (value - Double(target)) * (value - Double(target))
        }
        reference /= 6
        #expect(abs(GradientCheck.loss(model, x: x, y: y) - reference) < 1e-12)
    }

    /// Inputs of 1e20: the MSE loss overflows to inf, the tolerances (scaled by the largest
    /// gradient) became inf, and every row passed, a negated w.g included.
    @Test("a loss of inf fails every row: nothing can be compared against it")
    func infiniteLossFails() throws {
        var generator = RandomGenerator(seed: 12)
        let model = try Model(
            description: ModelDescription(parsing: "lin 3, relu, lin 1"), inputShape: [6], loss: Mse(),
            generator: &generator)
        let x = Tensor.randn([4, 6], generator: &generator) * 1e20
        let y = Tensor.randn([4], generator: &generator)
        let report = gradientCheck(model, x: x, y: y)
        #expect(!report.loss.isFinite)
        #expect(!report.passed)
        #expect(
            report.rows.allSatisfy { row in row.problems.contains { $0.hasPrefix("the loss is inf") } },
            "\(report.rows.map(\.problems))")
    }

    @Test("LeakyReLU and average pooling pass with MSE")
    func leakyReLUPasses() throws {
        var generator = RandomGenerator(seed: 3)
        let model = try Model(
            description: ModelDescription(parsing: "avgpool 2 stride 1, flatten, lin 6, leakyrelu 0.1, lin 1"),
            inputShape: [2, 4, 4], loss: Mse(), generator: &generator)
        let x = Tensor.randn([4, 2, 4, 4], generator: &generator)  // (n, c, h, w)
        let y = Tensor.randn([4], generator: &generator)  // (n)
        let report = gradientCheck(model, x: x, y: y)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
    }

    @Test("average pooling that leaves its padding out of each mean passes, after a convolution and first")
    func averagePoolingWithoutItsPaddingPasses() throws {
        for text in [
            "conv 3 3, avgpool 3 stride 1 pad 1 excludepad, flatten, lin 1",
            "avgpool 4 stride 3 pad 2 excludepad, flatten, lin 5, tanh, lin 1",
        ] {
            var generator = RandomGenerator(seed: 5)
            let model = try Model(
                description: ModelDescription(parsing: text), inputShape: [2, 5, 5], loss: Mse(), generator: &generator)
            let x = Tensor.randn([3, 2, 5, 5], generator: &generator)  // (n, c, h, w)
            let y = Tensor.randn([3], generator: &generator)  // (n)
            let report = gradientCheck(model, x: x, y: y)
            #expect(report.passed, "\(text): \(report.rows.flatMap(\.problems))")
            #expect(report.rows.contains { $0.name == "x" }, "\(text): \(report.rows.map(\.name))")
        }
    }

    @Test("a tied maximum in max pooling is counted, and the elements that break the tie are checked on the winner")
    func tiedMaximumIsChecked() throws {
        var generator = RandomGenerator(seed: 4)
        let model = try Model(
            description: ModelDescription(parsing: "maxpool 2, flatten, lin 3"), inputShape: [1, 4, 4],
            loss: CrossEntropy(), generator: &generator)
        // The first window (rows 0-1, columns 0-1) holds 2 twice: a tie.
        var values = (0..<16).map { Float($0) / 16 - 0.5 }
        for index in [0, 1, 4, 5] { values[index] = index == 0 || index == 5 ? 2 : -1 }
        let x = Tensor(shape: [1, 1, 4, 4], values: values)
        let report = gradientCheck(model, x: x, y: Tensor([1]))
        #expect(report.kinks == [GradientCheckKinks(layer: 0, kind: "MaxPool2d", count: 1)])
        let xRow = try #require(report.rows.first { $0.name == "x" })
        #expect(xRow.atKinkElements == 2, "moving either tied maximum breaks the tie")
        #expect(xRow.checkedElements == 16)
        // The frozen winner is the first maximum, the one the backward gives the gradient to.
        let gradient = try #require(x.grad)
        #expect(gradient.values[0] != 0 && gradient.values[5] == 0)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
    }

    @Test("a pooling window of ReLU zeros is tied, but an element that breaks the tie on one side only is no kink")
    func tieBrokenOnOneSideIsChecked() throws {
        var generator = RandomGenerator(seed: 6)
        let model = try Model(
            description: ModelDescription(parsing: "relu, maxpool 2, flatten, lin 1"), inputShape: [1, 2, 2],
            loss: Mse(), generator: &generator)
        // All four ReLU outputs are 0 (a tie); moving the first input up by the step makes it positive.
        let x = Tensor(shape: [1, 1, 2, 2], values: [-0.001, -1, -1, -1])
        let report = gradientCheck(model, x: x, y: Tensor([1]))
        #expect(report.kinkCount == 1 && report.kinks.map(\.count) == [0, 1])
        let xRow = try #require(report.rows.first { $0.name == "x" })
        #expect(xRow.checkedElements == 4)
        // The step crosses ReLU's kink above: estimated on the frozen pieces, where the first
        // input stays at 0 and its derivative is 0, as the backward's.
        #expect(xRow.crossingElements == 1 && xRow.atKinkElements == 0)
        #expect(xRow.autogradVersusFiniteDifferences.maxRelativeError == 0)
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
    }

    @Test("a backward 1% off inside the convnet fails the check, on every tensor before it")
    func sabotagedBackwardFails() throws {
        let (described, x, y) = try describedProblem(smallConvnet, input: [1, 8, 8], rows: 2, classes: 3, seed: 5)
        var layers = described.layers
        layers[3] = ScaledInputGradient(layers[3])  // the max pooling
        let model = Model(layers: layers, loss: described.loss)
        let report = gradientCheck(model, x: x, y: y, options: .init(samples: 16))
        #expect(!report.passed)
        // Every tensor before the pooling fails but the convolution's bias, whose gradient the
        // batch norm makes zero: 1.01 times zero is still right.
        #expect(report.rows.filter { !$0.passed }.map(\.name) == ["x", "layers.0.w", "layers.1.w", "layers.1.b"])
    }
}

// MARK: - Deep Float models: kinks frozen, rounding measured

/// A layer whose forward multiplies its inner layer's output by 1.05 where nothing is recorded (the
/// path of the finite differences) and not where autograd records (the path of `.g` and `.grad`):
/// manual and autograd gradients agree with each other and are off the function the finite
/// differences see.
private final class ScaledWhereNotRecorded: Layer {
    let inner: any Layer
    private(set) var out: Tensor!  // the inner layer's out, or 1.05 times it
    init(_ inner: any Layer) { self.inner = inner }
    var inp: Tensor! { inner.inp }  // the inner layer's (n, …)
    var parameters: [Tensor] { inner.parameters }
    var namedParameters: [(name: String, tensor: Tensor)] { inner.namedParameters }
    var buffers: [(name: String, tensor: Tensor)] { inner.buffers }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        let result = inner(inp)
        out = Tensor.wouldRecord(inp) ? result : result * 1.05  // wrong where not recorded
        return out
    }
    func backward() { inner.backward() }  // called after a recorded call only: out is the inner one
}

/// A batch-norm convnet with every kind of kink, `conv 4 3 pad 1, batchnorm, relu, maxpool 2,
/// flatten, lin 3`, on `rows` images of 12×12: a random object on a constant background, as
/// Fashion-MNIST's images, so that max pooling windows of the background are tied.
private func batchNormConvnet(rows: Int, seed: UInt64) throws -> (model: Model, x: Tensor, y: Tensor) {
    var generator = RandomGenerator(seed: seed)
    let model = try Model(
        description: ModelDescription(parsing: "conv 4 3 pad 1, batchnorm, relu, maxpool 2, flatten, lin 3"),
        inputShape: [1, 12, 12], loss: CrossEntropy(), generator: &generator)
    var values = [Float](repeating: -0.8, count: rows * 144)  // (n, 1, 12, 12)
    for image in 0..<rows {
        for row in 3..<9 {
            for column in 3..<9 {
                values[image * 144 + row * 12 + column] = Float(generator.nextIndex(below: 1000)) / 400
            }
        }
    }
    let y = Tensor((0..<rows).map { _ in Float(generator.nextIndex(below: 3)) })  // (n)
    return (model, Tensor(shape: [rows, 1, 12, 12], values: values), y)
}

@Suite("gradientCheck on deep Float models: kinks frozen, rounding measured")
struct DeepFloatGradientCheckTests {
    @Test("a batch-norm convnet passes, though its Float loss is too rough for the steps the check once fell back to")
    func batchNormConvnetPasses() throws {
        let (model, x, y) = try batchNormConvnet(rows: 64, seed: 31)
        let report = gradientCheck(model, x: x, y: y, options: .init(samples: 12))
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        #expect(report.kinks.map(\.kind) == ["ReLU", "MaxPool2d"] && report.kinks[1].count > 0)
        let xRow = try #require(report.rows.first { $0.name == "x" })
        // The batch norm couples every element of a channel: moving one input element moves
        // ReLU and max pooling inputs across kinks, which the frozen pieces continue past.
        #expect(xRow.crossingElements > 0)
        #expect(xRow.autogradVersusFiniteDifferences.maxRelativeError < 5e-3)
        #expect(xRow.autogradVersusFiniteDifferences.maxRelativeNoise > 0)

        // What went wrong before: a one-sided difference at h/8, even of the kinkless frozen
        // function, misses by more than the tolerance, from the rounding of the Float forward.
        let gradient = try #require(x.grad).values
        let scale = Double(gradient.map(abs).max() ?? 0)
        _ = GradMode.withNoGrad { model.predict(x) }
        let piecewise = model.layers.compactMap { $0 as? any PiecewiseLayer }
        for layer in piecewise { layer.freezesPieces = true }
        defer { for layer in piecewise { layer.freezesPieces = false } }
        var generator = RandomGenerator(seed: 7)
        var worst = 0.0
        for index in finiteDifferenceCoordinates(count: x.count, samples: 12, generator: &generator) {
            let h = finiteDifferenceStep(at: x.values[index]) / 8
            for scheme in [FiniteDifferenceScheme.forward, .backward] {
                let estimate = finiteDifference(
                    of: { GradientCheck.loss(model, x: x, y: y) }, withRespectTo: x, at: index, scheme: scheme, step: h)
                worst = max(worst, abs(estimate - Double(gradient[index])) / scale)
            }
        }
        #expect(worst > report.options.finiteDifferenceTolerance, "one-sided at h/8: \(worst)")
    }

    @Test("a backward 5% off fails there, against autograd and against the finite differences")
    func wrongBackwardFails() throws {
        let (described, x, y) = try batchNormConvnet(rows: 16, seed: 32)
        var layers = described.layers
        // The batch norm (a wrapped max pooling would hide its kinks: no longer a PiecewiseLayer).
        layers[1] = ScaledInputGradient(layers[1], by: 1.05)
        let report = gradientCheck(Model(layers: layers, loss: described.loss), x: x, y: y, options: .init(samples: 16))
        // Every tensor before the batch norm but the convolution's bias (zero gradient).
        #expect(report.rows.filter { !$0.passed }.map(\.name) == ["x", "layers.0.w"])
        for name in ["x", "layers.0.w"] {
            let row = try #require(report.rows.first { $0.name == name })
            #expect(row.manualVersusFiniteDifferences?.passed == false, "\(name)")
            #expect(row.autogradVersusFiniteDifferences.passed, "\(name)")
        }
    }

    @Test("a forward whose fast path is 5% off fails against the finite differences alone")
    func wrongFastForwardFails() throws {
        let (described, x, y) = try batchNormConvnet(rows: 16, seed: 33)
        var layers = described.layers
        layers[5] = ScaledWhereNotRecorded(layers[5])  // the last Lin: logits 5% larger
        let report = gradientCheck(Model(layers: layers, loss: described.loss), x: x, y: y, options: .init(samples: 16))
        #expect(!report.passed)
        #expect(report.rows.allSatisfy { $0.manualVersusAutograd?.isNear == true })
        let failed = report.rows.filter { !$0.autogradVersusFiniteDifferences.passed }.map(\.name)
        #expect(failed.contains("x") && failed.contains("layers.5.w"), "\(failed)")
    }

    @Test("a loss too rough for the Float forward fails its rows: finite differences cannot check them")
    func roughLossFails() throws {
        let (x, y, linears) = problem(rows: 16, sizes: [20, 1], seed: 9)
        // Outputs near 1e4, where a Float is a multiple of 2⁻¹⁰: a step of x moves them by about
        // one such unit, and the loss (their small distance to targets near 1e4) by its rounding.
        let model = Model(linears: [(linears[0].w, Tensor([1e4]))])
        let report = gradientCheck(model, x: x, y: y + 1e4)
        #expect(!report.passed)
        let noisy = report.rows.filter { $0.noisyElements > 0 }
        #expect(!noisy.isEmpty)
        for row in noisy {
            #expect(!row.passed && row.problems.contains { $0.contains("cannot check \(row.name)") })
        }
    }

    @Test("gradcheck's notes count the kinks by kind: ReLU inputs exactly 0 apart from max-pool ties")
    func kinksByKindInTheNotes() throws {
        var generator = RandomGenerator(seed: 8)
        let model = try Model(
            description: ModelDescription(parsing: "relu, maxpool 2, flatten, lin 3"), inputShape: [1, 4, 4],
            loss: CrossEntropy(), generator: &generator)
        // Two images of 4×4: a first window of zeros (four ReLU inputs exactly 0, so a tie of the
        // pooling after), the other elements positive and distinct.
        var values = [Float]()
        for image in 0..<2 {
            values += (0..<16).map { [0, 1, 4, 5].contains($0) ? 0 : Float($0 + image) / 8 }
        }
        let report = gradientCheck(model, x: Tensor(shape: [2, 1, 4, 4], values: values), y: Tensor([0, 2]))
        #expect(report.passed, "\(report.rows.flatMap(\.problems))")
        let text = GradcheckOutput.text(report, model: "a convnet", source: "two images", seconds: 0)
        let kinks = "kinks at the point checked: 8 ReLU inputs exactly 0 (layer 0), 2 max-pool ties (layer 1)"
        #expect(text.contains(kinks), "\(text)")
        #expect(text.contains("FD noise") && text.hasSuffix("PASS: all 3 tensors"), "\(text)")
    }

    @Test("the noise allowance is factor × max(|D(2h) - D(h)|, its median), and an element passes within it")
    func allowanceAndComparison() {
        var estimates = GradientCheck.Estimates()
        estimates.differences = [1, 2, 3, 10]
        #expect(estimates.allowances(factor: 3) == [7.5, 7.5, 9, 30])
        let gradient = Tensor([1, 0.5])
        let options = GradientCheckOptions()
        for (allowance, passes) in [(0.0, false), (0.015, true)] {
            var problems: [String] = []
            let comparison = GradientCheck.compare(
                gradient, name: "g",
                estimates: .init(indices: [0, 1], values: [1.02, 0.5], allowances: [allowance, 0]),
                options: options, problems: &problems)
            // 0.02 off, against 0.01 × 1.02 plus the allowance.
            #expect(comparison.passed == passes && problems.isEmpty == passes)
            #expect(abs(comparison.maxRelativeError - 0.02 / 1.02) < 1e-9 && comparison.worstIndex == [0])
        }
        var problems: [String] = []
        let nan = GradientCheck.compare(
            gradient, name: "g", estimates: .init(indices: [0, 1], values: [1, .nan], allowances: [1, 1]),
            options: options, problems: &problems)
        #expect(!nan.passed && nan.worstIndex == [1] && nan.maxRelativeError.isNaN)
    }
}

@Suite("freezesPieces: piecewise layers on the pieces of an earlier call")
struct FrozenPiecesTests {
    /// Runs `layer` on `a`, freezes its pieces, runs it on `b` (recorded when `recording`), and
    /// backpropagates ones; returns the output, the pieces of `b` and the input gradients.
    private func frozenCall(
        _ layer: any PiecewiseLayer, _ a: Tensor, _ b: Tensor, recording: Bool
    ) -> (out: Tensor, pieces: [Int32], g: Tensor, grad: Tensor?) {
        _ = layer(a)
        let natural = layer.out.values
        layer.freezesPieces = true
        defer { layer.freezesPieces = false }
        // At the freezing call's own input, the frozen function is the layer's.
        #expect(layer(a).values == natural)
        b.requiresGrad = recording
        let out = layer(b)
        out.g = Tensor.ones(out.shape)
        GradMode.withNoGrad { layer.backward() }
        if recording { out.sum().backward() }
        return (out.copy(), layer.pieces, layer.inp.g!, b.grad)
    }

    @Test("ReLU keeps its mask: out = mask · inp, inp.g = mask · out.g, on both paths")
    func relu() {
        for recording in [false, true] {
            let a = Tensor([-1, 0, 2, -3])
            let b = Tensor([1, -1, -2, 4])
            let (out, pieces, g, grad) = frozenCall(ReLU(), a, b, recording: recording)
            #expect(out.values == [0, 0, -2, 0])
            #expect(pieces == [1, 0, 0, 1], "the pieces of the new input")
            #expect(g.values == [0, 0, 1, 0])
            if recording { #expect(grad?.values == [0, 0, 1, 0]) }
        }
        let layer = ReLU()
        _ = layer(Tensor([-1, 2]))
        layer.freezesPieces = true
        layer.freezesPieces = false
        #expect(layer(Tensor([3, -4])).values == [3, 0], "unfrozen again")
    }

    @Test("LeakyReLU keeps each element's slope")
    func leakyReLU() {
        for recording in [false, true] {
            let (out, pieces, g, grad) = frozenCall(
                LeakyReLU(slope: 0.5), Tensor([-1, 0, 2]), Tensor([4, 2, -2]), recording: recording)
            #expect(out.values == [2, 1, -2])
            #expect(pieces == [1, 1, 0])
            #expect(g.values == [0.5, 0.5, 1])
            if recording { #expect(grad?.values == [0.5, 0.5, 1]) }
        }
    }

    @Test("max pooling keeps its winners, the first of tied maxima included")
    func maxPool() {
        for recording in [false, true] {
            // Two windows: the maximum at offset 1 (5), and a tie (2, 2) won by offset 0.
            let a = Tensor(shape: [1, 1, 2, 4], values: [1, 5, 2, 2, 3, 2, 0, 1])
            let b = Tensor(shape: [1, 1, 2, 4], values: [9, 0, 1, 3, 0, 0, 0, 0])
            let (out, pieces, g, grad) = frozenCall(MaxPool2d(kernel: 2), a, b, recording: recording)
            #expect(out.values == [0, 1])
            #expect(pieces == [0, 1], "the maxima of the new input")
            #expect(g.values == [0, 1, 1, 0, 0, 0, 0, 0])
            if recording { #expect(grad?.values == [0, 1, 1, 0, 0, 0, 0, 0]) }
        }
    }

    @Test("overlapping windows: the frozen output is the new input at the kept winners, on both paths")
    func maxPoolOverlapping() {
        var generator = RandomGenerator(seed: 5)
        let a = Tensor.randn([2, 3, 7, 7], generator: &generator)  // (n, c, h, w)
        let b = Tensor.randn([2, 3, 7, 7], generator: &generator)
        let layer = MaxPool2d(kernel: 3, stride: 2)
        _ = layer(a)
        let winners = layer.winners
        layer.freezesPieces = true
        let fast = layer(b).values
        b.requiresGrad = true
        let recorded = layer(b)
        recorded.sum().backward()
        layer.freezesPieces = false
        // out[o] = b[plane of o][winners[o]], 9 outputs per plane of 49.
        let expected = winners.enumerated().map { o, winner in b.values[(o / 9) * 49 + Int(winner)] }
        #expect(fast == expected && recorded.values == expected)
        var counts = [Float](repeating: 0, count: b.count)
        for (o, winner) in winners.enumerated() { counts[(o / 9) * 49 + Int(winner)] += 1 }
        #expect(b.grad?.values == counts)
    }
}

/// `½ · mean_i (inp_i − targ_i)²`, a loss of one's own written as the seed writes `Mse`, that also
/// gives the gradient check its value in Double (and counts how often it was asked).
private final class HalfSquaredError: LossInDouble {
    private(set) var inp: Tensor!
    private(set) var targ: Tensor!
    private(set) var out: Tensor!
    private(set) var doubleCalls = 0

    func callAsFunction(_ inp: Tensor, _ targ: Tensor) -> Tensor {
        (self.inp, self.targ) = (inp, targ)
        let difference: Tensor = inp.reshape([-1]) - targ
        let squares: Tensor = difference * difference
        let result: Tensor = squares.mean() * Float(0.5)
        out = result
        return result
    }

    func backward() {
        let difference: Tensor = inp.reshape([-1]) - targ
        let gradient: Tensor = difference / Float(targ.count)
        inp.g = gradient.reshape(inp.shape)
    }

    func lossInDouble(_ inp: Tensor, _ targ: Tensor) -> Double? {
        doubleCalls += 1
        guard inp.count == targ.count, inp.count > 0 else { return nil }
        var total = 0.0
        for (output, target) in zip(inp.values, targ.values) {
            let difference = Double(output) - Double(target)
            total += 0.5 * difference * difference
        }
        return total / Double(inp.count)
    }
}
