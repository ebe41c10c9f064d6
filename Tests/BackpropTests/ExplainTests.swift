import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// The walkthrough's claims are checked here against the objects themselves (`===` on the layers'
// `inp`, `out` and `.g`), against a plain run of `Model`, and against autograd; layers that break
// the seed's identities must be narrated differently.

// MARK: - Test layers and losses that the library does not have

/// A ReLU that keeps a *copy* of its input: `inp` is not the previous layer's `out`, so the
/// gradient it writes into `inp.g` never reaches that `out.g`.
final class CopyingReLU: Layer {
    private(set) var inp: Tensor!
    private(set) var out: Tensor!
    var parameters: [Tensor] { [] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp.copy()
        self.out = self.inp.clampMin(0)
        return out
    }
    func backward() { inp.g = (inp > 0).float() * out.g }
}

/// A ReLU that stores `out` but returns a copy of it.
final class ReturningCopyReLU: Layer {
    private(set) var inp: Tensor!
    private(set) var out: Tensor!
    var parameters: [Tensor] { [] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        self.out = inp.clampMin(0)
        return out.copy()
    }
    func backward() { inp.g = (inp > 0).float() * out.g }
}

/// A generic layer, whose type name (`Tagged<Int>`) has characters that HTML must escape.
final class Tagged<Tag>: Layer {
    private(set) var inp: Tensor!
    private(set) var out: Tensor!
    var parameters: [Tensor] { [] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp
        self.out = inp.clampMin(0)
        return out
    }
    func backward() { inp.g = (inp > 0).float() * out.g }
}

/// Softmax cross-entropy written in the tests: `mean_i(logsumexp(inp_i) - inp[i, targ_i])`, with
/// the hand-written gradient `(softmax(inp) - onehot(targ)) / n`.
final class TestCrossEntropy: Loss {
    private(set) var inp: Tensor!
    private(set) var targ: Tensor!
    private(set) var out: Tensor!
    func callAsFunction(_ inp: Tensor, _ targ: Tensor) -> Tensor {
        self.inp = inp
        self.targ = targ
        let logSoftmax = inp - inp.logSumExp(1, keepDim: true)
        out = -(logSoftmax * Self.oneHot(targ, classes: inp.shape[1])).sum() / Float(inp.shape[0])
        return out
    }
    func backward() {
        let softmax = (inp - inp.logSumExp(1, keepDim: true)).exp()
        inp.g = (softmax - Self.oneHot(targ, classes: inp.shape[1])) / Float(inp.shape[0])
    }
    static func oneHot(_ targ: Tensor, classes: Int) -> Tensor {
        let result = Tensor.zeros([targ.count, classes])
        for (row, label) in targ.values.enumerated() { result[row, Int(label)] = 1 }
        return result
    }
}

// MARK: - Helpers

/// The seed's model on small random data: x (n, m), targ (n), and the weights it was built from.
func seedSetup(
    n: Int = 5, m: Int = 7, nh: Int = 4, seed: UInt64 = 3
)
    -> (model: Model, x: Tensor, targ: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor)
{
    var generator = RandomGenerator(seed: seed)
    let x = Tensor.randn([n, m], generator: &generator)
    let targ = Tensor((0..<n).map { _ in Float(generator.nextIndex(below: 10)) })
    let w1 = Tensor.randn([m, nh], generator: &generator) * Float((2.0 / Double(m)).squareRoot())
    let b1 = Tensor.randn([nh], generator: &generator) * 0.1
    let w2 = Tensor.randn([nh, 1], generator: &generator) / Float(Double(nh).squareRoot())
    let b2 = Tensor([0.3])
    return (Model(w1, b1, w2, b2), x, targ, w1, b1, w2, b2)
}

/// A model of the seed's layers through the widths `sizes`, with the lesson's Kaiming weights
/// (`Model.kaimingInitialization`), ending in `loss`.
func kaimingModel(sizes: [Int], loss: any Loss = Mse(), seed: UInt64) -> Model {
    var generator = RandomGenerator(seed: seed)
    let layers = Model(linears: Model.kaimingInitialization(sizes: sizes, generator: &generator)).layers
    return Model(layers: layers, loss: loss)
}

/// Random data for a model with `m` inputs.
func randomData(n: Int, m: Int, classes: Int = 10, seed: UInt64 = 5) -> (x: Tensor, targ: Tensor) {
    var generator = RandomGenerator(seed: seed)
    let x = Tensor.randn([n, m], generator: &generator)
    let targ = Tensor((0..<n).map { _ in Float(generator.nextIndex(below: classes)) })
    return (x, targ)
}

/// Expects `text` to contain `part`.
func expectContains(
    _ text: String, _ part: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(text.contains(part), "expected to find: \(part)", sourceLocation: sourceLocation)
}

/// Expects `text` not to contain `part`.
func expectLacks(
    _ text: String, _ part: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(!text.contains(part), "expected not to find: \(part)", sourceLocation: sourceLocation)
}

/// The index of the step with `event`, or a test failure.
func step(_ event: Trace.Event, in trace: Trace, sourceLocation: SourceLocation = #_sourceLocation) throws -> Int {
    try #require(trace.stepIndex(of: event), "no step \(event)", sourceLocation: sourceLocation)
}

// MARK: - The trace

@Suite("Explain: the trace and its relations")
struct ExplainTraceTests {
    @Test func recordsEveryStepOfTheSeedsProgramInOrder() {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let trace = Trace.record(model: model, x: x, targ: targ)
        #expect(trace.layerNames == ["L1", "R", "L2"])
        #expect(
            trace.steps.map(\.event) == [
                .modelCreated, .modelCalled, .layerForward(0), .layerForward(1), .layerForward(2), .lossForward,
                .lossBackward, .layerBackward(2), .layerBackward(1), .layerBackward(0), .summary,
            ])
        #expect(trace.seedNames[Trace.Slot("L1", "w")] == "w1" && trace.seedNames[Trace.Slot("L2", "b")] == "b2")
    }

    @Test func runsTheModelExactlyAsModelDoes() throws {
        let (model, x, targ, w1, b1, w2, b2) = seedSetup()
        let trace = Trace.record(model: model, x: x, targ: targ)
        // An independent plain run of `Model` on copies of the same weights and data.
        let (cw1, cb1, cw2, cb2, cx) = (w1.copy(), b1.copy(), w2.copy(), b2.copy(), x.copy())
        let plain = Model(cw1, cb1, cw2, cb2)
        let loss = plain(cx, targ)
        plain.backward()
        #expect(try #require(trace.loss).item() == loss.item())
        for (traced, reference) in [(w1, cw1), (b1, cb1), (w2, cw2), (b2, cb2), (x, cx)] {
            #expect(traced.g.values == reference.g.values)
        }
    }

    @Test func forwardLinksAreTheIdentitiesOfTheObjects() throws {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let trace = Trace.record(model: model, x: x, targ: targ)
        let expected: [(Trace.Event, String, String)] = [
            (.layerForward(0), "L1.inp", "x"), (.layerForward(1), "R.inp", "L1.out"),
            (.layerForward(2), "L2.inp", "R.out"), (.lossForward, "loss.inp", "L2.out"),
        ]
        for (event, slot, other) in expected {
            let link = try #require(trace.inputLink(at: try step(event, in: trace)))
            #expect(link.slot.description == slot)
            #expect(link.otherName == other)
            #expect(link.identity == .sameObject)
        }
        // The same facts, read straight from the objects.
        #expect(model.layers[0].inp === x)
        #expect(model.layers[1].inp === model.layers[0].out)
        #expect(model.layers[2].inp === model.layers[1].out)
        #expect(model.loss.inp === model.layers[2].out)
        let target = try #require(trace.targetLink(at: try step(.lossForward, in: trace)))
        #expect(target.identity == .sameObject && model.loss.targ === targ)
        for index in 0..<3 {
            let link = try #require(trace.outputLink(at: try step(.layerForward(index), in: trace)))
            #expect(link.identity == .sameObject)
        }
    }

    @Test func eachBackwardReadsTheGradientTheLayerAfterItWrote() throws {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let trace = Trace.record(model: model, x: x, targ: targ)
        let expected: [(layer: Int, writer: Trace.Event, writerSlot: String)] = [
            (2, .lossBackward, "loss.inp"), (1, .layerBackward(2), "L2.inp"), (0, .layerBackward(1), "R.inp"),
        ]
        for (layer, writer, writerSlot) in expected {
            let source = try #require(trace.gradientSource(at: try step(.layerBackward(layer), in: trace)))
            #expect(source.slot == Trace.Slot(trace.layerNames[layer], "out"))
            #expect(source.writerStep == (try step(writer, in: trace)))
            #expect(source.writerSlot?.description == writerSlot)
            // On the objects: this layer's out.g is the very tensor the next one stored as inp.g.
            let next: Tensor = layer == 2 ? model.loss.inp : model.layers[layer + 1].inp
            #expect(source.g === model.layers[layer].out.g)
            #expect(source.g === next.g)
        }
    }

    @Test func writesAreFoundOnEveryNameOfTheObject() throws {
        let (model, x, targ, w1, b1, w2, b2) = seedSetup()
        let trace = Trace.record(model: model, x: x, targ: targ)
        let lossBackward = trace.steps[try step(.lossBackward, in: trace)]
        #expect(lossBackward.writes.count == 1)
        #expect(lossBackward.writes[0].tensor === model.loss.inp)
        #expect(lossBackward.writes[0].slots.map(\.description) == ["loss.inp", "L2.out"])
        // Before it, no .g anywhere.
        #expect(trace.steps[lossBackward.index - 1].snapshot.states.allSatisfy { $0.g == nil })

        let l2 = trace.steps[try step(.layerBackward(2), in: trace)]
        #expect(l2.writes.count == 3)
        #expect(
            l2.writes[0].tensor === model.layers[2].inp && l2.writes[0].slots.map(\.description) == ["L2.inp", "R.out"])
        #expect(l2.writes[1].tensor === w2 && l2.writes[2].tensor === b2)

        let l1 = trace.steps[try step(.layerBackward(0), in: trace)]
        let expected: [Tensor] = [x, w1, b1]
        #expect(l1.writes.count == 3)
        for (write, tensor) in zip(l1.writes, expected) { #expect(write.tensor === tensor) }
        #expect(l1.writes[0].slots.map(\.description) == ["L1.inp", "x"])
        #expect(l1.writes[0].g === x.g)
    }

    @Test func theTakeawayIsCheckedOnTheObjects() throws {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let trace = Trace.record(model: model, x: x, targ: targ)
        let takeaway = trace.takeaway
        #expect(takeaway.modelOutput === model.layers[2].out)
        #expect(takeaway.modelOutputName == "L2.out")
        #expect(takeaway.lossInput.identity == .sameObject)
        #expect(takeaway.start === model.loss.inp.g)
        #expect(takeaway.startStep == (try step(.lossBackward, in: trace)))
        #expect(!takeaway.lossOutputGradientIsSet && model.loss.out.g == nil)
        #expect(takeaway.isComplete)
    }

    @Test func startsFromACleanSlate() {
        let (model, x, targ, w1, _, _, _) = seedSetup()
        w1.g = Tensor.ones(w1.shape)
        x.g = Tensor.ones(x.shape)
        let trace = Trace.record(model: model, x: x, targ: targ)
        #expect(trace.steps[0].snapshot.states.allSatisfy { $0.g == nil })
    }

    @Test func namesLayersByKindNumberingRepeatedKinds() {
        #expect(
            SeedCode.layerNames(for: [Lin(.zeros(2, 3), .zeros(3)), ReLU(), Lin(.zeros(3, 1), .zeros(1))]) == [
                "L1", "R", "L2",
            ])
        #expect(SeedCode.layerNames(for: [Lin(.zeros(2, 3), .zeros(3))]) == ["L"])
        let deeper = kaimingModel(sizes: [4, 3, 3, 1], seed: 9)
        #expect(SeedCode.layerNames(for: deeper.layers) == ["L1", "R1", "L2", "R2", "L3"])
        #expect(
            SeedCode.layerNames(for: [CopyingReLU(), CopyingReLU(), ReLU()]) == ["CopyingReLU1", "CopyingReLU2", "R"])
    }
}

// MARK: - Models that are not the seed's

@Suite("Explain: other models")
struct ExplainOtherModelsTests {
    @Test func aLayerThatCopiesItsInputIsNarratedAsACopy() throws {
        var generator = RandomGenerator(seed: 4)
        let w1 = Tensor.randn([6, 4], generator: &generator)
        let w2 = Tensor.randn([4, 1], generator: &generator)
        let model = Model(layers: [Lin(w1, .zeros(4)), CopyingReLU(), Lin(w2, .zeros(1))], loss: Mse())
        let (x, targ) = randomData(n: 5, m: 6)
        let trace = Trace.record(model: model, x: x, targ: targ)
        #expect(trace.layerNames == ["L1", "CopyingReLU", "L2"])

        // The objects: the copy is not L1.out, and L1.out.g was never set.
        #expect(model.layers[1].inp !== model.layers[0].out)
        #expect(model.layers[0].out.g == nil)

        let link = try #require(trace.inputLink(at: try step(.layerForward(1), in: trace)))
        #expect(link.identity == .copy && link.otherName == "L1.out")
        #expect(trace.steps.map(\.event).suffix(3) == [.layerBackward(1), .backwardStopped(0), .summary])
        #expect(!trace.takeaway.isComplete)
        let source = try #require(trace.gradientSource(at: try step(.backwardStopped(0), in: trace)))
        #expect(source.g == nil && source.writerStep == nil)

        let text = Narration(trace: trace).text
        expectLacks(text, "CopyingReLU.inp is L1.out, the same object")
        expectContains(text, "CopyingReLU.inp is NOT L1.out: a different object with the same values (a copy)")
        expectContains(text, "no other slot holds CopyingReLU.inp, so no earlier layer will read this .g")
        expectContains(text, "L1.backward() would read L1.out.g, but no step has set it")
        expectContains(text, "CopyingReLU.inp is a copy of L1.out")
        expectContains(text, "not a layer of the seed")
        // The seed's layers around it are still narrated as the seed's.
        expectContains(text, "L1.inp is x, the same object (L1.inp === x)")
    }

    @Test func aLayerThatReturnsACopyOfItsOutputIsNarratedSo() throws {
        var generator = RandomGenerator(seed: 6)
        let model = Model(
            layers: [
                Lin(Tensor.randn([6, 4], generator: &generator), .zeros(4)), ReturningCopyReLU(),
                Lin(Tensor.randn([4, 1], generator: &generator), .zeros(1)),
            ], loss: Mse())
        let (x, targ) = randomData(n: 4, m: 6)
        let trace = Trace.record(model: model, x: x, targ: targ)
        let output = try #require(trace.outputLink(at: try step(.layerForward(1), in: trace)))
        #expect(output.identity == .copy)
        let input = try #require(trace.inputLink(at: try step(.layerForward(2), in: trace)))
        #expect(input.identity == .sameObject && input.otherName == "what ReturningCopyReLU returned")
        #expect(model.layers[2].inp !== model.layers[1].out)
        let text = Narration(trace: trace).text
        expectContains(text, "ReturningCopyReLU returned a copy of ReturningCopyReLU.out")
        expectLacks(text, "L2.inp is ReturningCopyReLU.out")
    }

    @Test func aDeeperNetworkIsNarratedLayerByLayer() throws {
        let model = kaimingModel(sizes: [6, 5, 4, 1], seed: 8)
        let (x, targ) = randomData(n: 5, m: 6)
        let trace = Trace.record(model: model, x: x, targ: targ)
        let names = ["L1", "R1", "L2", "R2", "L3"]
        #expect(trace.layerNames == names)
        #expect(trace.takeaway.isComplete)
        for index in 0..<5 {
            let link = try #require(trace.inputLink(at: try step(.layerForward(index), in: trace)))
            #expect(link.identity == .sameObject)
            #expect(link.otherName == (index == 0 ? "x" : "\(names[index - 1]).out"))
            #expect(model.layers[index].inp === (index == 0 ? x : model.layers[index - 1].out))
            let source = try #require(trace.gradientSource(at: try step(.layerBackward(index), in: trace)))
            #expect(source.writerSlot?.description == (index == 4 ? "loss.inp" : "\(names[index + 1]).inp"))
            #expect(source.g === model.layers[index].out.g)
        }
        let text = Narration(trace: trace).text
        expectContains(text, "R2.inp is L2.out, the same object (R2.inp === L2.out)")
        expectContains(text, "reads R1.out.g, set by L2.backward (step 11) as L2.inp.g")
        expectContains(text, "writes L3.w.g, that is w3.g")
        expectContains(
            text, "model = Model(layers: [Lin(w1, b1), Relu(), Lin(w2, b2), Relu(), Lin(w3, b3)], loss: Mse())")
    }

    @Test func crossEntropyIsNarratedFromWhatItDoes() throws {
        let model = kaimingModel(sizes: [6, 5, 3], loss: TestCrossEntropy(), seed: 10)
        let (x, targ) = randomData(n: 4, m: 6, classes: 3)
        let trace = Trace.record(model: model, x: x, targ: targ)
        #expect(trace.takeaway.isComplete)
        #expect(trace.takeaway.lossInput.identity == .sameObject)
        #expect(trace.takeaway.start === model.layers[2].out.g)
        // The loss's gradient against autograd on the same logits.
        let logits = model.layers[2].out.copy()
        logits.requiresGrad = true
        let loss =
            -((logits - logits.logSumExp(1, keepDim: true)) * TestCrossEntropy.oneHot(targ, classes: 3)).sum() / 4
        loss.backward()
        let start = try #require(trace.takeaway.start)
        for (a, b) in zip(start.values, try #require(logits.grad).values) { #expect(abs(a - b) < 1e-6) }
        let text = Narration(trace: trace).text
        expectContains(text, "writes loss.inp.g: loss.inp is L2.out, the same object, so this is also L2.out.g")
        expectContains(text, "TestCrossEntropy.backward: not a layer of the seed")
    }

    @Test func activationStatisticsAreTheMeanAndStdOfEachOutput() throws {
        let (model, x, targ, _, _, _, _) = seedSetup(n: 6, m: 9, nh: 5)
        let trace = Trace.record(model: model, x: x, targ: targ)
        let stats = trace.activationStatistics
        #expect(stats.map(\.name) == ["x", "L1.out", "R.out", "L2.out"])
        let tensors: [Tensor] = [x, model.layers[0].out, model.layers[1].out, model.layers[2].out]
        for (statistics, tensor) in zip(stats, tensors) {
            // Plain loops: the mean, and the standard deviation with n - 1 (PyTorch's std()).
            let values = tensor.values.map(Double.init)
            let mean = values.reduce(0, +) / Double(values.count)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count - 1)
            #expect(abs(statistics.mean - mean) < 1e-12)
            #expect(abs(statistics.std - variance.squareRoot()) < 1e-12)
        }
        let text = Narration(trace: trace, statistics: true).text
        expectContains(text, "stats R.out: mean \(String(format: "%.4f", stats[2].mean))")
        expectLacks(Narration(trace: trace).text, "stats ")
        // The lesson's reading of the numbers (Kaiming's √2, then 1) is for Lins and ReLUs in turn.
        expectContains(text, "Kaiming initialisation keeps the scale steady")
        // One row into one output: one value, whose std with N - 1 is undefined; said, not "nan".
        let (single, x1, targ1, _, _, _, _) = seedSetup(n: 1, m: 4, nh: 3)
        let one = Narration(trace: Trace.record(model: single, x: x1, targ: targ1), statistics: true).text
        expectContains(
            one, "stats L2.out: mean \(String(format: "%.4f", Double(single.layers[2].out.values[0]))), no std")
        expectLacks(one, "nan")
    }

    /// A layer of one's own is narrated with its parameters by the names its checkpoint stores
    /// (`scale`), not `p1`, `p2`: the names a user looks for.
    @Test func aLayerOfOnesOwnIsNarratedWithItsParametersNames() {
        var generator = RandomGenerator(seed: 8)
        let lin = Lin(Tensor.randn([5, 3], generator: &generator), Tensor.zeros([3]))
        let model = Model(layers: [lin, ScaledTanh(features: 3, scale: 1.5)], loss: CrossEntropy())
        let trace = Trace.record(
            model: model, x: Tensor.randn([4, 5], generator: &generator), targ: Tensor([0, 1, 2, 0]))
        let text = Narration(trace: trace).text
        expectContains(text, "ScaledTanh.scale.g")
        expectLacks(text, "ScaledTanh.p1")
    }

    @Test(
        "the lesson's reading of the statistics is left out for networks it does not describe",
        arguments: ["dropout 0.5, lin 3", "lin 4, tanh, lin 3", "lin 3", "lin 4, relu, relu, lin 3"])
    func statisticsReadingOnlyForTheSeedsKind(layers: String) throws {
        var generator = RandomGenerator(seed: 3)
        let model = try Model(
            description: ModelDescription(parsing: layers), inputShape: [9], loss: CrossEntropy(),
            generator: &generator)
        let x = Tensor.randn([6, 9], generator: &generator)
        let trace = Trace.record(model: model, x: x, targ: Tensor([0, 1, 2, 0, 1, 2]))
        let text = Narration(trace: trace, statistics: true).text
        expectContains(text, "Activation statistics: ")
        expectLacks(text, "Kaiming")
    }
}

// MARK: - The narration of the seed's model

@Suite("Explain: the seed's walkthrough")
struct ExplainNarrationTests {
    @Test func coversEveryStepTheSeedDescribes() {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let text = Narration(trace: Trace.record(model: model, x: x, targ: targ)).text
        for part in [
            "model = Model(w1, b1, w2, b2)",
            "model.layers = [L1, R, L2] = [Lin(w1, b1), Relu(), Lin(w2, b2)]; model.loss = loss = Mse()",
            "loss = model(x, targ)",
            "x = L1(x)", "# Lin.__call__: self.inp = inp; self.out = lin(inp, self.w, self.b)",
            "L1.inp is x, the same object (L1.inp === x)",
            "L1.out = lin(L1.inp, L1.w, L1.b) = L1.inp @ L1.w + L1.b",
            "L1 returns L1.out itself (checked: ===), so x is now L1.out.",
            "x = R(x)", "R.inp is L1.out, the same object (R.inp === L1.out)", "R.out = R.inp.clamp_min(0.)",
            "x = L2(x)", "L2.inp is R.out, the same object (L2.inp === R.out)",
            "return self.loss(x, targ)", "loss.inp is L2.out, the same object (loss.inp === L2.out)",
            "loss.targ is targ, the same object",
            "loss.out = mse(loss.inp, loss.targ)",
            "self.loss.backward()",
            "loss.inp.g = 2. * (loss.inp.squeeze() - loss.targ).unsqueeze(-1) / loss.inp.shape[0]",
            "writes loss.inp.g: loss.inp is L2.out, the same object, so this is also L2.out.g",
            "loss.out.g is not set (checked: it is None)",
            "l.backward()   # l = L2", "L2.inp.g = L2.out.g @ L2.w.t()", "L2.w.g = L2.inp.t() @ L2.out.g",
            "L2.b.g = L2.out.g.sum(0)",
            "reads L2.out.g, set by loss.backward (step 6) as loss.inp.g",
            "writes L2.inp.g: L2.inp is R.out, the same object, so this is also R.out.g",
            "writes L2.w.g, that is w2.g", "writes L2.b.g, that is b2.g",
            "l.backward()   # l = R", "R.inp.g = (R.inp>0).float() * R.out.g",
            "reads R.out.g, set by L2.backward (step 7) as L2.inp.g: R.out is L2.inp, the same object",
            "writes R.inp.g: R.inp is L1.out, the same object, so this is also L1.out.g",
            "l.backward()   # l = L1", "reads L1.out.g, set by R.backward (step 8) as R.inp.g",
            "writes L1.inp.g: L1.inp is x, the same object, so this is also x.g",
            "writes L1.w.g, that is w1.g",
            "loss.inp is L2.out, the same object (loss.inp === L2.out): the model's output",
            "loss.out.g was never set (checked)",
            "L2.out.g is loss.inp.g, R.out.g is L2.inp.g, L1.out.g is R.inp.g",
            "Parameter gradients set: w1.g, b1.g, w2.g, b2.g.",
        ] {
            expectContains(text, part)
        }
        expectLacks(text, "is NOT")
        expectLacks(text, "did not set")
    }

    @Test func previewsShowTheShapesAndValuesOfTheObjects() {
        let (model, x, targ, _, _, w2, _) = seedSetup(n: 3, m: 2, nh: 2)
        let trace = Trace.record(model: model, x: x, targ: targ)
        let text = Narration(trace: trace).text
        expectContains(text, "shape [3, 2]  \(x.preview(edge: 2))")
        expectContains(text, "shape [2, 1]  \(w2.g.preview(edge: 2))")
        expectContains(text, "shape [] (a scalar)  \(model.loss.out.preview())")
    }
}

// MARK: - The web page

@Suite("Explain: the web page")
struct ExplainHTMLTests {
    static func page(for model: Model, x: Tensor, targ: Tensor) -> (html: String, trace: Trace) {
        let trace = Trace.record(model: model, x: x, targ: targ)
        return (HTMLReport(narration: Narration(trace: trace, statistics: true)).html, trace)
    }

    /// The JSON embedded in `<script type="application/json" id="steps">`.
    static func steps(in html: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [[String: Any]] {
        let open = "<script type=\"application/json\" id=\"steps\">"
        let start = try #require(html.range(of: open), sourceLocation: sourceLocation)
        let end = try #require(
            html.range(of: "</script>", range: start.upperBound..<html.endIndex), sourceLocation: sourceLocation)
        let json = Data(html[start.upperBound..<end.lowerBound].utf8)
        return try #require(
            try JSONSerialization.jsonObject(with: json) as? [[String: Any]], sourceLocation: sourceLocation)
    }

    @Test func refersToNothingOutsideItself() {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let (html, _) = Self.page(for: model, x: x, targ: targ)
        for forbidden in [
            "http:", "https:", "//cdn", "src=", "href=", "url(", "@import", "<link", "<img", "<iframe", "<object",
            "<embed", "@font-face", "xlink:",
        ] {
            expectLacks(html.lowercased(), forbidden)
        }
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        expectContains(html, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
    }

    @Test func hasOneStepPerRecordedEventAndTheControls() throws {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let (html, trace) = Self.page(for: model, x: x, targ: targ)
        let steps = try Self.steps(in: html)
        #expect(steps.count == trace.steps.count)
        for (index, step) in steps.enumerated() {
            #expect((step["title"] as? String)?.hasPrefix("Step \(index): ") == true)
            #expect(step["code"] is String && step["lines"] is [Any] && step["present"] is [String])
        }
        #expect((steps[2]["code"] as? String) == "x = L1(x)")
        for part in [
            "<button id=\"prev\"", "<button id=\"next\"", "addEventListener(\"keydown\"", "\"ArrowRight\"",
            "\"ArrowLeft\"", "#step=", "<svg id=\"diagram\"", "data-v=\"", "max-width: 759px",
        ] {
            expectContains(html, part)
        }
    }

    @Test func drawsOneBoxPerObjectWithItsNamesAndShape() throws {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let (html, trace) = Self.page(for: model, x: x, targ: targ)
        let diagram = Diagram(trace: trace)
        // One box per distinct object: x, targ, w1, b1, w2, b2, L1.out, R.out, L2.out, loss.out.
        #expect(diagram.nodes.filter { $0.kind == .tensor }.count == 10)
        for (tensor, names) in [
            (model.layers[0].out!, "L1.out = R.inp"), (model.layers[1].out!, "R.out = L2.inp"),
            (model.loss.inp!, "L2.out = loss.inp"), (x, "x = L1.inp"),
        ] {
            let id = try #require(diagram.id(of: tensor))
            expectContains(html, "<g id=\"\(id)\" class=\"node tensor\"")
            #expect(diagram.node(id)?.names.joined(separator: " = ") == names)
            expectContains(html, ">\(names)</text><text class=\"shape\" x=\"66\" y=\"28\">\(tensor.shape)</text>")
        }
        // A box is labelled with the names its object has at each step.
        let steps = try Self.steps(in: html)
        let xBox = try #require(diagram.id(of: x))
        #expect((steps[0]["labels"] as? [String: String])?[xBox] == "x")
        #expect((steps[2]["labels"] as? [String: String])?[xBox] == "x = L1.inp")
        // Every id a step mentions exists in the drawing.
        for step in try Self.steps(in: html) {
            for key in ["present", "gradient", "active", "edges"] {
                for id in step[key] as? [String] ?? [] { expectContains(html, "id=\"\(id)\"") }
            }
        }
    }

    @Test func showsEachGradientFromTheStepThatSetsIt() throws {
        let (model, x, targ, _, _, w2, _) = seedSetup()
        let (html, trace) = Self.page(for: model, x: x, targ: targ)
        let steps = try Self.steps(in: html)
        let diagram = Diagram(trace: trace)
        let w2Box = try #require(diagram.id(of: w2))
        let l2Backward = try step(.layerBackward(2), in: trace)
        #expect(!(steps[l2Backward - 1]["gradient"] as! [String]).contains(w2Box))
        #expect((steps[l2Backward]["gradient"] as! [String]).contains(w2Box))
        #expect((steps[l2Backward]["active"] as! [String]).contains(w2Box))
        // The heat map of w2.g is drawn (hidden until then by the page's style).
        expectContains(html, "<g class=\"gmap\">")
    }

    /// Debian's Chromium, if installed (`.ci/run` and `Scripts/screenshot-explain.sh` install it).
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Whether the browser tests run: where Chromium is installed, and always in CI (`CI` set, as
    /// `.ci/run` runs), where a missing Chromium fails them instead of skipping them.
    static let runsBrowserTests = chromium != nil || ProcessInfo.processInfo.environment["CI"] != nil

    /// Runs headless Chromium on `url` with `arguments`, and returns what it printed (a watchdog
    /// stops it after 60 s).
    static func runChromium(
        _ arguments: [String], url: String, folder: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> String {
        let browser = try #require(
            chromium, "Chromium is not installed (apt-get install chromium)", sourceLocation: sourceLocation)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: browser)
        process.arguments =
            ["--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=\(folder)/profile"] + arguments + [url]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        watchdog.cancel()
        return printed
    }

    /// The page as a browser shows it at one width: its document after its script ran, and how
    /// wide it lays out.
    struct Rendered {
        /// The document, serialized (as `--dump-dom` prints it).
        let dom: String
        /// The document's scroll width and client width, in CSS pixels: the page overflows
        /// sideways when the first is the larger.
        let scrollWidth: Int
        let clientWidth: Int
        /// The first elements that reach past the right edge (`img`, `svg#diagram`), for messages.
        let overflowing: String
    }

    /// The page opened at `#fragment` in headless Chromium at each of `widths` CSS pixels.
    ///
    /// Headless Chromium's window is at least 500 px wide, so the page is loaded in frames of the
    /// given widths, each a viewport of its own (the page's media queries see its width), in one
    /// wrapper page; once a frame has loaded, the wrapper measures its document and copies it out
    /// as text. One browser run serves every width.
    static func browse(
        _ html: String, fragment: String, widths: [Int] = [390, 1280], sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> [Int: Rendered] {
        try withTemporaryFolder { folder in
            try html.write(toFile: folder + "/page.html", atomically: true, encoding: .utf8)
            let frames = widths.map { width in
                "<iframe id=\"w\(width)\" src=\"page.html#\(fragment)\" onload=\"measure(this)\" "
                    + "style=\"display:block;border:0;width:\(width)px;height:900px\"></iframe>"
            }
            let wrapper = """
                <!DOCTYPE html><html><head><script>
                function measure(frame) {
                  var root = frame.contentDocument.documentElement, width = root.clientWidth, wide = [];
                  frame.contentDocument.querySelectorAll("body *").forEach(function (e) {
                    if (e.getBoundingClientRect().right > width + 0.5 && wide.length < 5) {
                      wide.push(e.tagName.toLowerCase() + (e.id ? "#" + e.id : ""));
                    }
                  });
                  var copy = document.createElement("div");
                  copy.id = "dom-" + frame.id;
                  copy.setAttribute("data-result", root.scrollWidth + " " + width + " " + wide.join(","));
                  copy.textContent = root.outerHTML;
                  document.body.appendChild(copy);
                }
                </script></head><body>\(frames.joined())</body></html>
                """
            let path = folder + "/wrapper.html"
            try wrapper.write(toFile: path, atomically: true, encoding: .utf8)
            let dump = try runChromium(
                [
                    "--allow-file-access-from-files", "--hide-scrollbars", "--window-size=1400,1000",
                    "--virtual-time-budget=5000", "--dump-dom",
                ], url: "file://\(path)", folder: folder, sourceLocation: sourceLocation)
            var result: [Int: Rendered] = [:]
            for width in widths {
                guard let open = dump.range(of: "<div id=\"dom-w\(width)\" data-result=\""),
                    let quote = dump.range(of: "\">", range: open.upperBound..<dump.endIndex),
                    let close = dump.range(of: "</div>", range: quote.upperBound..<dump.endIndex)
                else { continue }
                let measures = dump[open.upperBound..<quote.lowerBound].split(separator: " ", maxSplits: 2)
                guard measures.count >= 2, let scroll = Int(measures[0]), let client = Int(measures[1]) else {
                    continue
                }
                // The copied document is text: unescape what serializing a text node escapes.
                let dom = String(dump[quote.upperBound..<close.lowerBound])
                    .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
                    .replacingOccurrences(of: "&nbsp;", with: "\u{A0}").replacingOccurrences(of: "&amp;", with: "&")
                result[width] = Rendered(
                    dom: dom, scrollWidth: scroll, clientWidth: client,
                    overflowing: measures.count > 2 ? String(measures[2]) : "")
            }
            return result
        }
    }

    /// Expects the page to fit a phone's width (390 px) and a desktop's (1280 px): nothing reaches
    /// past the right edge, so there is no horizontal scrolling. Returns the page at both widths.
    @discardableResult
    static func expectFitsAPhoneAndADesktop(
        _ html: String, fragment: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> [Int: Rendered] {
        let pages = try browse(html, fragment: fragment, sourceLocation: sourceLocation)
        for width in [390, 1280] {
            let page = try #require(
                pages[width], "the page did not load at \(width) px", sourceLocation: sourceLocation)
            #expect(page.clientWidth == width, "the frame is \(width) px", sourceLocation: sourceLocation)
            #expect(
                page.scrollWidth <= page.clientWidth,
                "at \(width) px the page is \(page.scrollWidth) px wide; past the edge: \(page.overflowing)",
                sourceLocation: sourceLocation)
        }
        return pages
    }

    @Test(.enabled(if: runsBrowserTests, "Chromium is not installed (apt-get install chromium)"))
    func aBrowserRunsThePageAndOpensTheStepInTheAddress() throws {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let (html, trace) = Self.page(for: model, x: x, targ: targ)
        let pages = try Self.expectFitsAPhoneAndADesktop(html, fragment: "step=7")
        for (_, page) in pages {
            // The script ran: it filled the step from #step=7 and set the boxes' state.
            expectContains(page.dom, "<span id=\"counter\" aria-live=\"polite\">Step 7 of 10</span>")
            expectContains(page.dom, "<h2 id=\"step-title\">Step 7: backward through L2</h2>")
            expectContains(page.dom, "reads L2.out.g, set by loss.backward (step 6) as loss.inp.g")
            expectContains(page.dom, "class=\"node tensor g-set active\"")
        }
        // Each width has its layout of the diagram: vertical on the phone, horizontal on the desktop.
        let diagram = Diagram(trace: trace)
        let vertical = "viewBox=\"0 0 \(SVG.number(diagram.verticalSize.x)) \(SVG.number(diagram.verticalSize.y))\""
        expectContains(try #require(pages[390]).dom, "<svg id=\"diagram\" \(vertical)")
        expectLacks(try #require(pages[1280]).dom, "<svg id=\"diagram\" \(vertical)")
    }

    @Test func escapesTextThatLooksLikeMarkup() throws {
        var generator = RandomGenerator(seed: 12)
        let model = Model(
            layers: [
                Lin(Tensor.randn([3, 2], generator: &generator), .zeros(2)), Tagged<Int>(),
                Lin(Tensor.randn([2, 1], generator: &generator), .zeros(1)),
            ], loss: Mse())
        let (x, targ) = randomData(n: 2, m: 3)
        let (html, trace) = Self.page(for: model, x: x, targ: targ)
        #expect(trace.layerNames[1] == "Tagged<Int>")
        expectLacks(html, "Tagged<Int>")
        expectContains(html, "Tagged&lt;Int&gt;")
        let steps = try Self.steps(in: html)
        #expect((steps[3]["code"] as? String) == "x = Tagged<Int>(x)")
    }
}

// MARK: - Escaping and SVG

@Suite("Explain: escaping and SVG writing")
struct ExplainWritingTests {
    @Test func markupEscapesTheFiveCharactersOfHTMLAndXML() {
        #expect(escapeMarkup("a < b & \"c\" > 'd'") == "a &lt; b &amp; &quot;c&quot; &gt; &#39;d&#39;")
        #expect(escapeMarkup("Tagged<Int>: 1.5 = x") == "Tagged&lt;Int&gt;: 1.5 = x")
    }

    @Test func jsonInAScriptElementCannotCloseIt() {
        #expect(escapeScriptJSON(#"["</script><!--"]"#) == #"["\u003c/script>\u003c!--"]"#)
    }

    @Test func svgElementsKeepTheAttributeOrderAndEscapeValuesAndText() {
        var attributes: SVG.Attributes = ["x": "1", "class": "a&b"]
        attributes.append("data-step", "3")
        #expect(SVG.element("rect", attributes) == #"<rect x="1" class="a&amp;b" data-step="3"/>"#)
        #expect(SVG.element("text", ["y": "2"], text: "a < b") == #"<text y="2">a &lt; b</text>"#)
        #expect(SVG.element("title", text: "t") == "<title>t</title>")
        // Children are SVG already: written as they are.
        #expect(SVG.element("g", children: ["<a/>", "<b/>"]) == "<g><a/><b/></g>")
        #expect(SVG.element("g", children: ["<a/>", "<b/>"], layout: .onePerLine) == "<g>\n<a/>\n<b/>\n</g>")
        #expect(SVG.element("g", children: [], layout: .onePerLine) == "<g>\n</g>")
    }

    @Test func numbersAreWrittenInEachDrawingsFormat() {
        // The walkthrough's diagram: hundredths, whole numbers without a point.
        #expect(SVG.number(3) == "3")
        #expect(SVG.number(2.999) == "3")
        #expect(SVG.number(12.5) == "12.50")
        #expect(SVG.number(1 / 3) == "0.33")
        #expect(SVG.number(-4.25) == "-4.25")
        // The training plot: one decimal, always.
        #expect(SVG.number(3, .tenths) == "3.0")
        #expect(SVG.number(12.54, .tenths) == "12.5")
    }
}

// MARK: - The computation graph

@Suite("Explain: the computation graph in DOT")
struct ExplainDOTTests {
    /// A small checker of the DOT this program writes: one statement per line, a node
    /// `"id" [attributes];` or an edge `"a" -> "b";`, quoted strings with escaped `"` and `\`,
    /// braces balanced, and every edge between declared nodes. Returns the problems found.
    static func problems(in dot: String) -> [String] {
        var problems: [String] = []
        var declared: Set<String> = []
        var edges: [(String, String)] = []
        var depth = 0
        for line in dot.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            // Braces outside quoted strings, and quoted strings that close.
            var inString = false
            var escaped = false
            for character in line {
                if inString {
                    if escaped {
                        escaped = false
                    } else if character == "\\" {
                        escaped = true
                    } else if character == "\"" {
                        inString = false
                    }
                } else if character == "\"" {
                    inString = true
                } else if character == "{" {
                    depth += 1
                } else if character == "}" {
                    depth -= 1
                    if depth < 0 { problems.append("unbalanced }: \(line)") }
                }
            }
            if inString { problems.append("unterminated string: \(line)") }
            if line.hasPrefix("digraph ") && line.hasSuffix("{") || line == "}" || line.isEmpty { continue }
            if line.hasSuffix("];") || line.hasSuffix(";") && !line.contains("->") {
                if line.hasPrefix("\""), let close = line.dropFirst().firstIndex(of: "\"") {
                    declared.insert(String(line[line.index(after: line.startIndex)..<close]))
                } else if !(line.hasPrefix("rankdir=") || line.hasPrefix("node [")) {
                    problems.append("not a statement: \(line)")
                }
            } else if line.contains("->"), line.hasSuffix(";") {
                let parts = line.dropLast().components(separatedBy: " -> ")
                if parts.count == 2, parts.allSatisfy({ $0.hasPrefix("\"") && $0.hasSuffix("\"") }) {
                    edges.append((String(parts[0].dropFirst().dropLast()), String(parts[1].dropFirst().dropLast())))
                } else {
                    problems.append("bad edge: \(line)")
                }
            } else {
                problems.append("not a statement: \(line)")
            }
        }
        if depth != 0 { problems.append("braces do not balance") }
        for (from, to) in edges where !declared.contains(from) || !declared.contains(to) {
            problems.append("edge \(from) -> \(to) between undeclared nodes")
        }
        return problems
    }

    @Test func writesValidDOT() {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let dot = ComputationGraph.record(model: model, x: x, targ: targ).dot
        #expect(dot.hasPrefix("digraph backprop {\n"))
        #expect(Self.problems(in: dot) == [])
        // The checker itself catches what it should.
        #expect(!Self.problems(in: "digraph g {\n  \"a\" -> \"b\";\n}\n").isEmpty)
        #expect(!Self.problems(in: "digraph g {\n  \"a\" [label=\"x\"];\n").isEmpty)
        #expect(!Self.problems(in: "digraph g {\n  \"a\" [label=\"x\"y\"];\n}\n").isEmpty)
    }

    @Test func nodesCarryOperationShapeAndAutogradsGradientNorm() throws {
        let (model, x, targ, w1, b1, w2, b2) = seedSetup()
        let graph = ComputationGraph.record(model: model, x: x, targ: targ)
        // Autograd's gradient norms against the layers' hand-written backward on the same weights.
        let handWritten = Model(w1.copy(), b1.copy(), w2.copy(), b2.copy())
        _ = handWritten(x.copy(), targ)
        handWritten.backward()
        let parameters = handWritten.parameters
        for (index, name) in ["L1.w (w1)", "L1.b (b1)", "L2.w (w2)", "L2.b (b2)"].enumerated() {
            let node = try #require(graph.nodes.first { $0.name == name })
            let expected = parameters[index].g.norm()
            #expect(abs(try #require(node.gradientNorm) - expected) <= 1e-5 * max(1, expected))
            #expect(node.shape == parameters[index].shape)
        }
        let operations = graph.nodes.filter(\.isOperation).compactMap(\.operation)
        // lin is the seed's `x @ w + b`: a product and a broadcast add, for each Lin.
        #expect(operations.filter { $0 == "•" }.count == 2 && operations.filter { $0 == "+" }.count == 2)
        #expect(!operations.contains("lin"))
        #expect(operations.contains("clampMin(0.0)") && operations.contains("mean"))
        let hidden = try #require(graph.nodes.first { $0.name == "L1.out = R.inp" })
        #expect(hidden.operation == "+" && hidden.shape == [5, 4])
        // Every edge joins a tensor and an operation.
        let kinds = Dictionary(uniqueKeysWithValues: graph.nodes.map { ($0.id, $0.isOperation) })
        for edge in graph.edges { #expect(kinds[edge.from] != kinds[edge.to]) }
        // The run leaves the caller's tensors as they were.
        #expect(!w1.requiresGrad && w1.grad == nil && !x.requiresGrad && x.grad == nil)
    }

    @Test func escapesQuotesAndBackslashesInLabels() {
        #expect(escapeDOT("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/dot")))
    func graphvizAcceptsTheGraph() throws {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let dot = ComputationGraph.record(model: model, x: x, targ: targ).dot
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/dot")
        process.arguments = ["-Tsvg"]
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(dot.utf8))
        try input.fileHandleForWriting.close()
        let svg = output.fileHandleForReading.readDataToEndOfFile()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "dot: \(message)")
        #expect(String(decoding: svg, as: UTF8.self).contains("<svg"))
    }
}

// MARK: - Real data

@Suite("Explain: on Fashion-MNIST")
struct ExplainRealDataTests {
    static let folder = FashionMNIST.defaultDirectory
    static let present = FileManager.default.fileExists(atPath: folder + "/train-images-idx3-ubyte.gz")

    @Test(.enabled(if: present, "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"))
    func explainsTheSeedsModelOnTheFirstRows() throws {
        let data = try FashionMNIST(directory: Self.folder, limit: 300)
        let x = data.xTrain.withUnsafeBufferPointer { Tensor(shape: [5, 784], values: Array($0[0..<(5 * 784)])) }
        let targ = Tensor(Array(data.yTrain.values[0..<5]))
        var generator = RandomGenerator(seed: 42)
        let weights = SeedProgram.Weights.kaiming(inputs: 784, hidden: 50, generator: &generator)
        let model = Model(weights.w1, weights.b1, weights.w2, weights.b2)
        let trace = Trace.record(model: model, x: x, targ: targ)
        #expect(trace.takeaway.isComplete)
        let text = Narration(trace: trace, statistics: true).text
        expectContains(text, "L2.inp is R.out, the same object (L2.inp === R.out)")
        expectContains(text, "shape [784, 50]")
        expectContains(text, "targ, the targets:\n      shape [5]  [9.0000, 0.0000, ..., 3.0000, 0.0000]")
        // The hand-written w1.g that the walkthrough shows, against autograd on the same run.
        let handWritten = try #require(weights.w1.g).norm()
        let graph = ComputationGraph.record(model: model, x: x, targ: targ)
        let node = try #require(graph.nodes.first { $0.name == "L1.w (w1)" })
        #expect(abs(try #require(node.gradientNorm) - handWritten) <= 1e-5 * handWritten)
        #expect(ExplainDOTTests.problems(in: graph.dot) == [])
    }
}

// MARK: - The command line

@Suite("Explain: the command line")
struct ExplainCommandTests {
    @Test func rejectsBadArgumentsWithAMessageNamingTheOption() throws {
        try withTemporaryFolder { folder in
            let cases: [([String], String)] = [
                (["explain", "--rows", "0"], "--rows"),
                (["explain", "--hidden", "50,x"], "--hidden"),
                (["explain", "--hidden", ""], "--hidden"),
                (["explain", "--loss", "hinge"], "--loss"),
                (["explain", "--html", folder + "/no/such/folder/page.html"], "does not exist"),
                (["explain", "--dot", folder], "is a folder"),
                // A page or a graph only under its own kind of name: a mistyped argument does not
                // write over a data file or a checkpoint (and the two can never be the same file).
                (
                    ["explain", "--dot", folder + "/t10k-labels-idx1-ubyte.gz"],
                    "--dot \(folder)/t10k-labels-idx1-ubyte.gz: expected a file name ending in .dot or .gv"
                ),
                (
                    ["explain", "--html", folder + "/run.safetensors"],
                    "--html \(folder)/run.safetensors: expected a file name ending in .html or .htm"
                ),
                (["explain", "--data", folder + "/missing"], "missing"),
                (["explain", "--layers", "conv 8 x"], "--layers: entry 1 \"conv 8 x\""),
                (["explain", "--layers", "lin 10, conv 4 3"], "--layers: entry 2"),
                (["explain", "--layers", "conv 4 3"], "--layers: the model's output per example is [4, 26, 26]"),
                (["explain", "--layers", "cnn", "--hidden", "50"], "--hidden and --layers"),
                (["explain", "--layers", "cnn", "--loss", "mse"], "--loss mse"),
                (["explain", "--layers", "lin 5"], "expects at least 10 outputs per example, the model gives [5]"),
                (
                    ["explain", "--layers", String(repeating: "relu, ", count: 1000) + "lin 10"],
                    "--layers: expected at most 1000 layers for a walkthrough, found 1001",
                ),
            ]
            for (arguments, fragment) in cases {
                let run = try runBackprop(arguments)
                #expect(!run.crashed, "\(arguments) crashed")
                #expect(run.status != 0, "\(arguments) succeeded")
                #expect(run.standardError.contains(fragment), "\(arguments): \(run.standardError)")
                #expect(run.standardOutput.isEmpty, "\(arguments) printed \(run.standardOutput)")
            }
        }
    }

    @Test(.enabled(if: ExplainRealDataTests.present, "Fashion-MNIST is not installed"))
    func writesTheWalkthroughThePageAndTheGraph() throws {
        try withTemporaryFolder { folder in
            let page = folder + "/walkthrough.html"
            let graph = folder + "/graph.dot"
            let run = try runBackprop(["explain", "--rows", "3", "--stats", "--html", page, "--dot", graph])
            #expect(run.status == 0, "\(run.standardError)")
            expectContains(run.standardOutput, "Step 10 of 10: the takeaway")
            expectContains(run.standardOutput, "the first 3 rows of Fashion-MNIST's x_train and y_train")
            expectContains(run.standardOutput, "stats R.out: mean")
            let html = try String(contentsOfFile: page, encoding: .utf8)
            #expect(try ExplainHTMLTests.steps(in: html).count == 11)
            let dot = try String(contentsOfFile: graph, encoding: .utf8)
            #expect(ExplainDOTTests.problems(in: dot) == [])
            // Written atomically: no temporary file is left beside them.
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: folder).sorted() == [
                    "graph.dot", "walkthrough.html",
                ])
        }
    }

    /// `--layers cnn`: the convnet's walkthrough on images, its page with the feature maps, and
    /// autograd's graph (`--layers seed` is checked in `writesTheSamePageOnEveryRun`).
    @Test(.enabled(if: ExplainRealDataTests.present, "Fashion-MNIST is not installed"))
    func explainsAConvnetGivenByADescription() throws {
        try withTemporaryFolder { folder in
            let page = folder + "/cnn.html"
            let graph = folder + "/cnn.dot"
            let run = try runBackprop(["explain", "--rows", "2", "--layers", "cnn", "--html", page, "--dot", graph])
            #expect(run.status == 0, "\(run.standardError)")
            expectContains(run.standardOutput, "each row viewed as a 1×28×28 image")
            expectContains(run.standardOutput, "x [2, 1, 28, 28], targ [2]")
            expectContains(run.standardOutput, "loss (CrossEntropy)")
            expectContains(run.standardOutput, "Step 32 of 32: the takeaway")
            expectContains(run.standardOutput, "writes C1.inp.g: C1.inp is x, the same object, so this is also x.g")
            let html = try String(contentsOfFile: page, encoding: .utf8)
            expectContains(html, "<b>x[0]</b> shape [1, 28, 28], the input")
            #expect(ExplainDOTTests.problems(in: try String(contentsOfFile: graph, encoding: .utf8)) == [])
        }
    }

    /// The page embeds the steps as JSON; its keys are sorted, so that two runs of the same
    /// command (two processes, each with its own hash seed) write the same bytes; `--layers seed`
    /// is the same command (the seed's model by its preset name).
    @Test(.enabled(if: ExplainRealDataTests.present, "Fashion-MNIST is not installed"))
    func writesTheSamePageOnEveryRun() throws {
        try withTemporaryFolder { folder in
            var environment = ProcessInfo.processInfo.environment
            environment["SWIFT_DETERMINISTIC_HASHING"] = nil
            var pages: [Data] = []
            for run in 0..<2 {
                let page = folder + "/walkthrough-\(run).html"
                // The second run names the seed's model by its preset: the same model, the same page.
                let model = run == 0 ? [] : ["--layers", "seed"]
                let result = try runBackprop(
                    ["explain", "--rows", "1", "--html", page] + model, environment: environment)
                #expect(result.status == 0, "\(result.standardError)")
                pages.append(try Data(contentsOf: URL(fileURLWithPath: page)))
            }
            #expect(pages[0] == pages[1])
        }
    }

    /// The library's own cross-entropy, on a deeper model: the walkthrough shows its seed lines,
    /// and its gradient starts in the 10 class scores the last layer returned.
    @Test(.enabled(if: ExplainRealDataTests.present, "Fashion-MNIST is not installed"))
    func explainsACrossEntropyModel() throws {
        let run = try runBackprop(["explain", "--rows", "2", "--hidden", "8,6", "--loss", "cross-entropy"])
        #expect(run.status == 0, "\(run.standardError)")
        expectContains(
            run.standardOutput, "Model: L1 (Lin), R1 (Relu), L2 (Lin), R2 (Relu), L3 (Lin), loss (CrossEntropy)")
        expectContains(run.standardOutput, "loss.inp.g = (softmax(loss.inp) - onehot(loss.targ)) / loss.inp.shape[0]")
        expectContains(
            run.standardOutput, "writes loss.inp.g: loss.inp is L3.out, the same object, so this is also L3.out.g")
        expectContains(run.standardOutput, "shape [2, 10]")
    }
}
