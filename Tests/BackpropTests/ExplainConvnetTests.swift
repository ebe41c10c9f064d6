import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropExplain
@testable import BackpropNetwork

// The walkthrough of models given by a description, convnets first: every layer narrated with its
// lines, shapes and relations, each checked against the objects, against the description's own
// shape arithmetic, and against autograd; the page's feature maps and kernels checked against the
// tensors they draw (read back from the PNG files, through a reader written here).

/// A model built from `text` (a description or a preset) for images of `inputShape`, as
/// `backprop explain --layers` builds it: the first layer's input gradient on, so that the
/// walkthrough reaches `x.g` as the seed's does.
func describedSetup(
    _ text: String, inputShape: [Int] = [1, 28, 28], n: Int = 2, classes: Int = 10, seed: UInt64 = 21
) throws -> (model: Model, x: Tensor, targ: Tensor, description: ModelDescription) {
    let description = try ModelDescription(parsing: text)
    var generator = RandomGenerator(seed: seed)
    let model = try Model(description: description, inputShape: inputShape, loss: CrossEntropy(), generator: &generator)
    model.firstTrainableLayer?.needsInputGradient = true
    let x = Tensor.randn([n] + inputShape, generator: &generator)
    let targ = Tensor((0..<n).map { _ in Float(generator.nextIndex(below: classes)) })
    return (model, x, targ, description)
}

@Suite("Explain: convnets and other described models")
struct ExplainConvnetTests {
    /// The convnet these tests narrate: batch norm and ReLU before pooling, 32 and 64 channels (the
    /// first `cnn` preset; the tests keep it so that the preset can be retuned).
    static let explained =
        "conv 32 3 pad 1, batchnorm, relu, maxpool 2, conv 64 3 pad 1, batchnorm, relu, maxpool 2, flatten, "
        + "dropout 0.25, lin 128, relu, dropout 0.25, lin 10"
    static let cnnNames = ["C1", "BN1", "R1", "MP1", "C2", "BN2", "R2", "MP2", "F", "D1", "L1", "R3", "D2", "L2"]

    @Test func narratesEveryLayerOfTheConvnetForwardAndBackward() throws {
        let (model, x, targ, description) = try describedSetup(Self.explained)
        let trace = Trace.record(model: model, x: x, targ: targ)
        #expect(trace.layerNames == Self.cnnNames)
        #expect(trace.takeaway.isComplete)
        let text = Narration(trace: trace).text
        // Every layer's forward and backward ran, in the seed's order.
        let count = Self.cnnNames.count
        #expect(
            trace.steps.map(\.event)
                == [.modelCreated, .modelCalled] + (0..<count).map { .layerForward($0) } + [
                    .lossForward, .lossBackward,
                ]
                + (0..<count).reversed().map { .layerBackward($0) } + [.summary])
        // Shapes: the description's arithmetic, the objects, and the narration agree.
        let expected = try description.shapes(input: [1, 28, 28]).map { [2] + $0 }
        for (index, name) in Self.cnnNames.enumerated() {
            let out: Tensor = model.layers[index].out
            #expect(out.shape == expected[index], "\(name).out")
            expectContains(text, "x = \(name)(x)")
            expectContains(text, "l.backward()   # l = \(name)")
            // The relations, found by the trace and true of the objects.
            let link = try #require(trace.inputLink(at: try step(.layerForward(index), in: trace)))
            #expect(link.identity == .sameObject)
            #expect(link.otherName == (index == 0 ? "x" : "\(Self.cnnNames[index - 1]).out"))
            #expect(model.layers[index].inp === (index == 0 ? x : model.layers[index - 1].out))
            let source = try #require(trace.gradientSource(at: try step(.layerBackward(index), in: trace)))
            let next = index == count - 1 ? "loss" : Self.cnnNames[index + 1]
            #expect(source.writerSlot?.description == "\(next).inp")
            let nextInput: Tensor = index == count - 1 ? model.loss.inp : model.layers[index + 1].inp
            #expect(source.g === out.g && out.g === nextInput.g)
            #expect(out.g.shape == out.shape)
            expectContains(text, "reads \(name).out.g, set by \(next).backward")
        }
        for part in [
            "Model: C1 (Conv2d), BN1 (BatchNorm), R1 (Relu), MP1 (MaxPool2d), C2 (Conv2d)",
            "x [2, 1, 28, 28], targ [2]",
            "Conv2d(C1.w, C1.b, padding=1), BatchNorm(BN1.w, BN1.b), Relu(), MaxPool2d(2)",
            "Flatten(), Dropout(0.25), Lin(w1, b1)",
            // Conv2d: the windows kept, the product, the three gradients through g.
            "C1.cols = unfold(C1.inp, 3, padding=1)   # every 3×3 window of the channels, a row\n"
                + "      shape [1568, 9]",
            "C2.cols = unfold(C2.inp, 3, padding=1)   # every 3×3 window of the channels, a row\n"
                + "      shape [392, 288]",
            "C1.out = (C1.cols @ C1.w.view(32, -1).t() + C1.b).view(n, oh, ow, 32).permute(0, 3, 1, 2)\n"
                + "      shape [2, 32, 28, 28]",
            "g = C2.out.g.permute(0, 2, 3, 1).reshape(-1, 64)   # out.g, one row per window",
            "C2.inp.g = fold(g @ C2.w.view(64, -1), C2.inp.shape, 3, padding=1)",
            "C2.w.g = (g.t() @ C2.cols).view(C2.w.shape)", "C2.b.g = g.sum(0)",
            "reads C1.cols, kept by C1's forward (step 2): the same object (checked: ===)",
            "writes C1.inp.g: C1.inp is x, the same object, so this is also x.g\n      shape [2, 1, 28, 28]",
            "writes C1.w.g\n      shape [32, 1, 3, 3]",
            // Batch norm, its backward written out.
            "BN1.mean = BN1.inp.mean(dims)   # the batch's, per channel\n      shape [32]",
            "BN2.inp.g = BN2.w * BN2.invStd / N * (N * BN2.out.g - BN2.b.g - xhat * BN2.w.g)",
            "reads BN1.invStd, kept by BN1's forward (step 3): the same object (checked: ===)",
            // Pooling, flatten, dropout.
            "MP1.out = max_pool2d(MP1.inp, 2)   # the largest value of each 2×2 window\n      shape [2, 32, 14, 14]",
            "MP2.inp.g = zeros_like(MP2.inp).view(n, c, -1).scatter_add_(2, MP2.winners.view(n, c, -1), "
                + "MP2.out.g.view(n, c, -1)).view(MP2.inp.shape)",
            "reads MP2.winners, kept by MP2's forward (step 9): the same values (checked)",
            "F.out = F.inp.view(F.inp.shape[0], -1)\n      shape [2, 3136]",
            "F.inp.g = F.out.g.view(F.inp.shape)",
            "writes F.inp.g: F.inp is MP2.out, the same object, so this is also MP2.out.g\n      shape [2, 64, 7, 7]",
            "D1.out = D1.inp * D1.mask / 0.75", "D2.inp.g = D2.out.g * D2.mask / 0.75",
            "Parameter gradients set: C1.w.g, C1.b.g, BN1.w.g, BN1.b.g, C2.w.g, C2.b.g, BN2.w.g, BN2.b.g, w1.g, b1.g, "
                + "w2.g, b2.g.",
        ] {
            expectContains(text, part)
        }
        expectLacks(text, "is NOT")
        expectLacks(text, "did not set")
        expectLacks(text, "not a layer of the seed")
    }

    /// The `.g` the walkthrough narrates, against autograd on the same objects (the DOT graph's
    /// gradient norms, with dropout's masks kept), and the graph leaves the model as it found it.
    @Test func theConvnetsGradientsAgreeWithAutogradsGraph() throws {
        let (model, x, targ, _) = try describedSetup(Self.explained)
        let trace = Trace.record(model: model, x: x, targ: targ)
        let batchNorm = try #require(model.layers[1] as? BatchNorm)
        let runningMean = batchNorm.runningMean.values
        let masks = model.layers.compactMap { ($0 as? Dropout)?.mask?.values }
        let graph = ComputationGraph.record(model: model, x: x, targ: targ)
        #expect(ExplainDOTTests.problems(in: graph.dot) == [])
        for (slot, tensor) in [
            ("C1.w", model.parameters[0]), ("BN1.w", model.parameters[2]), ("C2.w", model.parameters[4]),
        ] {
            let node = try #require(graph.nodes.first { $0.name?.hasPrefix(slot) == true }, "\(slot)")
            let handWritten = tensor.g.norm()
            #expect(abs(try #require(node.gradientNorm) - handWritten) <= 1e-4 * max(1, handWritten), "\(slot)")
        }
        let xNode = try #require(graph.nodes.first { $0.name == "x = C1.inp" })
        #expect(abs(try #require(xNode.gradientNorm) - x.g.norm()) <= 1e-4 * max(1, x.g.norm()))
        let operations = graph.nodes.filter(\.isOperation).compactMap(\.operation)
        #expect(operations.contains("unfold(3×3, stride 1×1, padding 1×1)"))
        #expect(operations.contains("max(1)"))
        // Put back as found: running statistics, the masks (and drawing new ones again), grad off.
        #expect(batchNorm.runningMean.values == runningMean)
        #expect(model.layers.compactMap { ($0 as? Dropout)?.mask?.values } == masks)
        #expect(model.layers.compactMap { ($0 as? Dropout)?.freezesMask } == [false, false])
        #expect(!x.requiresGrad && x.grad == nil)
        #expect(trace.takeaway.isComplete)
    }

    @Test func narratesTheOtherLayersWithTheirSettings() throws {
        let text =
            "conv 3 3 stride 2 nobias, tanh, avgpool 2, flatten, lin 6, sigmoid, lin 5, leakyrelu 0.2, lin 4 nobias, "
            + "gelu, batchnorm, dropout 0.5, lin 3"
        let (model, x, targ, description) = try describedSetup(text, inputShape: [2, 9, 9], n: 3, classes: 3)
        let trace = Trace.record(model: model, x: x, targ: targ)
        #expect(trace.layerNames == ["C", "T", "AP", "F", "L1", "S", "L2", "LR", "L3", "G", "BN", "D", "L4"])
        #expect(trace.takeaway.isComplete)
        let shapes = try description.shapes(input: [2, 9, 9])
        for (layer, shape) in zip(model.layers, shapes) { #expect(layer.out.shape == [3] + shape) }
        let narration = Narration(trace: trace).text
        for part in [
            "Conv2d(C.w, stride=2), Tanh(), AvgPool2d(2), Flatten()", "LeakyRelu(0.2)", "Dropout(0.5)",
            "C.cols = unfold(C.inp, 3, stride=2)   # every 3×3 window of the channels, a row\n      shape [48, 18]",
            "C.out = (C.cols @ C.w.view(3, -1).t()).view(n, oh, ow, 3).permute(0, 3, 1, 2)\n      shape [3, 3, 4, 4]",
            "C.inp.g = fold(g @ C.w.view(3, -1), C.inp.shape, 3, stride=2)", "C.w.g = (g.t() @ C.cols).view(C.w.shape)",
            "T.out = T.inp.tanh()", "T.inp.g = (1 - T.out**2) * T.out.g",
            "AP.out = avg_pool2d(AP.inp, 2)   # the mean of each 2×2 window\n      shape [3, 3, 2, 2]",
            "AP.inp.g = fold(AP.out.g.view(n * c, 1, -1).expand(-1, 4, -1) / 4, AP.inp.shape[2:], 2)",
            "S.inp.g = S.out * (1 - S.out) * S.out.g", "LR.out = where(LR.inp > 0, LR.inp, 0.2 * LR.inp)",
            "LR.inp.g = where(LR.inp > 0, 1., 0.2) * LR.out.g",
            "G.inp.g = (Phi(G.inp) + G.inp * phi(G.inp)) * G.out.g",
            "BN.invStd = 1 / (BN.inp.var(dims, unbiased=False) + 1e-05).sqrt()\n      shape [4]",
            "D.out = D.inp * D.mask / 0.5", "L3.out = L3.inp @ L3.w\n", "L3.w.g = L3.inp.t() @ L3.out.g",
        ] {
            expectContains(narration, part)
        }
        expectLacks(narration, "C.b")
        expectLacks(narration, "L3.b.g")
        expectLacks(narration, "b3.g")
        expectLacks(narration, "did not set")

        // In evaluation, dropout is the identity and batch norm uses its running statistics.
        model.eval()
        let evaluation = Narration(trace: Trace.record(model: model, x: x, targ: targ)).text
        for part in [
            "D.out = D.inp.view(D.inp.shape)   # evaluation: the identity", "D.inp.g = D.out.g",
            "BN.mean = BN.running_mean   # evaluation", "BN.inp.g = BN.out.g * BN.w * BN.invStd",
        ] {
            expectContains(evaluation, part)
        }
        expectLacks(evaluation, "D.mask")
    }

    /// As training builds it, a first convolution computes no `x.g`; the walkthrough says why,
    /// rather than reporting a line that did not run.
    @Test func saysWhenTheFirstLayerSkipsTheInputGradient() throws {
        let description = try ModelDescription(parsing: "conv 2 3, relu, flatten, lin 3")
        var generator = RandomGenerator(seed: 4)
        let model = try Model(
            description: description, inputShape: [1, 5, 5], loss: CrossEntropy(), generator: &generator)
        let x = Tensor.randn([2, 1, 5, 5], generator: &generator)
        let trace = Trace.record(model: model, x: x, targ: Tensor([0, 2]))
        #expect(x.g == nil)
        let text = Narration(trace: trace).text
        expectContains(text, "# no C.inp.g: needsInputGradient is off (the input is the data)")
        expectLacks(text, "C.inp.g = fold")
        expectLacks(text, "did not set")
        // Behind a layer that learns nothing, the first that learns skips it too, and the walk ends
        // there: the flatten before it has nothing to do (no "Python would fail here").
        let behind = try Model(
            description: ModelDescription(parsing: "flatten, lin 3"), inputShape: [1, 5, 5], loss: CrossEntropy(),
            generator: &generator)
        let flat = Narration(trace: Trace.record(model: behind, x: x, targ: Tensor([0, 2]))).text
        expectContains(flat, "# no L.inp.g: needsInputGradient is off (the input is the data)")
        expectLacks(flat, "F.inp.g")
        expectLacks(flat, "would fail")
        expectContains(text, "writes C.w.g")
    }

    /// `--layers seed` builds the seed's model: the same walkthrough as the seed's own.
    @Test func theSeedPresetIsNarratedAsTheSeed() throws {
        let description = try ModelDescription(parsing: "seed")
        var generator = RandomGenerator(seed: 42)
        let described = try Model(description: description, inputShape: [7], loss: Mse(), generator: &generator)
        (described.layers.first as? Lin)?.needsInputGradient = true
        var reference = RandomGenerator(seed: 42)
        let linears = Model.kaimingInitialization(sizes: [7, 50, 1], generator: &reference)
        let seed = Model(layers: Model(linears: linears).layers, loss: Mse())
        let (x, targ) = randomData(n: 3, m: 7)
        let a = Narration(trace: Trace.record(model: described, x: x, targ: targ)).text
        let b = Narration(trace: Trace.record(model: seed, x: x.copy(), targ: targ)).text
        #expect(a == b)
        expectContains(a, "model = Model(w1, b1, w2, b2)")
    }
}

// MARK: - The page's pictures

@Suite("Explain: a convnet's page")
struct ExplainConvnetPageTests {
    /// The page of the convnet of `ExplainConvnetTests.explained` on two random images, made once
    /// for the suite's tests (none changes it).
    static func cnnPage() throws -> (html: String, trace: Trace, model: Model) {
        try shared.get()
    }

    nonisolated(unsafe) private static let shared = Result {
        let (model, x, targ, _) = try describedSetup(ExplainConvnetTests.explained)
        let trace = Trace.record(model: model, x: x, targ: targ)
        return (HTMLReport(narration: Narration(trace: trace)).html, trace, model)
    }

    /// The `src` of every `<img>` in `html`, in order.
    static func imageSources(_ html: String) -> [String] {
        html.components(separatedBy: "<img src=\"").dropFirst().map { String($0.prefix { $0 != "\"" }) }
    }

    /// The `<img>` whose `alt` is `label`: its source and its drawn width.
    static func image(
        _ html: String, label: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws
        -> (source: String, width: Int)
    {
        let alt = try #require(
            html.range(of: "alt=\"\(label)\""), "no picture \(label)", sourceLocation: sourceLocation)
        let start = try #require(
            html.range(of: "<img src=\"", options: .backwards, range: html.startIndex..<alt.lowerBound))
        let tag = html[start.upperBound..<alt.lowerBound]
        let source = String(tag.prefix { $0 != "\"" })
        let width = try #require(tag.range(of: "width=\""))
        return (source, Int(tag[width.upperBound...].prefix { $0 != "\"" })!)
    }

    @Test func drawsEveryChannelOfEveryImageAndTheKernelsWithTheirGradients() throws {
        let (html, trace, model) = try Self.cnnPage()
        let maps = try #require(FeatureMaps(trace: trace))
        #expect(
            maps.rows.map(\.name) == [
                "x[0]", "C1.out[0]", "BN1.out[0]", "R1.out[0]", "MP1.out[0]", "C2.out[0]", "BN2.out[0]", "R2.out[0]",
                "MP2.out[0]",
            ])
        #expect(maps.rows.map(\.shape[0]) == [1, 32, 32, 32, 32, 64, 64, 64, 64])
        expectContains(html, "<section class=\"maps\" aria-labelledby=\"maps-title\">")
        expectContains(html, "<b>C2.out[0]</b> shape [64, 14, 14], made by C2 (Conv2d): 64 channels, scale ±")
        expectContains(html, "<b>C1.w</b> shape [32, 1, 3, 3], the first convolution's kernels")
        expectContains(html, "each beside its gradient <b>C1.w.g</b>")
        // One picture per channel, plus two per kernel (w and w.g), each a PNG inlined.
        let sources = Self.imageSources(html)
        #expect(sources.count == 1 + 4 * 32 + 4 * 64 + 2 * 32)
        #expect(sources.allSatisfy { $0.hasPrefix("data:image/png;base64,") })
        // Every map drawn at the same size: 28×28 twice over, 14×14 four times, 7×7 eight times.
        #expect(try Self.image(html, label: "C1.out[0], channel 0").width == 56)
        #expect(try Self.image(html, label: "MP1.out[0], channel 31").width == 56)
        #expect(try Self.image(html, label: "MP2.out[0], channel 63").width == 56)
        #expect(try Self.image(html, label: "C1.w.g[31]").width == 42)

        // The pixels are the tensors' values: a channel of C2.out, and a kernel's gradient.
        let c2 = try #require(model.layers[4].out)  // (n, 64, 14, 14)
        let plane = Array(c2.values[(5 * 196)..<(6 * 196)])  // image 0, channel 5
        let scale = c2.values[0..<(64 * 196)].map { abs(Double($0)) }.max()!
        try Self.expectPixels(html, label: "C2.out[0], channel 5", values: plane, scale: scale, width: 14)
        let conv = try #require(model.layers[0] as? Conv2d)
        let g = conv.w.g.values
        try Self.expectPixels(
            html, label: "C1.w.g[7]", values: Array(g[(7 * 9)..<(8 * 9)]), scale: g.map { abs(Double($0)) }.max()!,
            width: 3)
    }

    /// Expects the picture `label` to show `values` on the diverging scale `±scale`: each pixel's
    /// colour the one of `round(value / scale * 32)` steps from white.
    static func expectPixels(
        _ html: String, label: String, values: [Float], scale: Double, width: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let source = try image(html, label: label, sourceLocation: sourceLocation).source
        let data = try #require(Data(base64Encoded: String(source.dropFirst("data:image/png;base64,".count))))
        let decoded = try #require(PNGReader(Array(data)), "not a PNG", sourceLocation: sourceLocation)
        #expect(decoded.width == width && decoded.height == values.count / width, sourceLocation: sourceLocation)
        for (index, value) in values.enumerated() {
            let step = Int((Double(value) / scale * 32).rounded())
            let expected = HeatMap.rgb(fraction: Double(step) / 32)
            let color = decoded.palette[Int(decoded.pixels[index])]
            #expect(
                color == [expected.red, expected.green, expected.blue], "\(label) pixel \(index)",
                sourceLocation: sourceLocation)
        }
    }

    /// A convnet's chain is folded into bands on a desktop, so that its boxes are drawn at a
    /// readable size, and no two boxes overlap in either layout; the seed's stays in one row.
    @Test func theDiagramFoldsALongChainIntoBandsWithoutOverlaps() throws {
        let (_, trace, _) = try Self.cnnPage()
        let diagram = Diagram(trace: trace)
        #expect(diagram.horizontalSize.x <= Diagram.bandWidth + 2 * 12)
        #expect(diagram.horizontalSize.y > 3 * Diagram.tensorSize.y * 3)
        let (model, x, targ, _, _, _, _) = seedSetup()
        let seed = Diagram(trace: Trace.record(model: model, x: x, targ: targ))
        #expect(seed.horizontalSize.y < 2 * 3 * Diagram.tensorSize.y)
        for drawing in [diagram, seed] {
            for layout in [\Diagram.Node.horizontal, \Diagram.Node.vertical] {
                let boxes = drawing.nodes.map { (id: $0.id, at: $0[keyPath: layout], size: $0.size) }
                for (i, a) in boxes.enumerated() {
                    for b in boxes[(i + 1)...] {
                        let apart =
                            a.at.x + a.size.x <= b.at.x || b.at.x + b.size.x <= a.at.x
                            || a.at.y + a.size.y <= b.at.y || b.at.y + b.size.y <= a.at.y
                        #expect(apart, "\(a.id) and \(b.id) overlap")
                    }
                }
            }
        }
    }

    @Test func isSelfContainedItsPicturesInline() throws {
        let (html, _, _) = try Self.cnnPage()
        for forbidden in ["http:", "https:", "//cdn", "href=", "url(", "@import", "<link", "<iframe", "xlink:"] {
            expectLacks(html.lowercased(), forbidden)
        }
        // Every `src=` is a picture inlined as a data address.
        let sources = html.components(separatedBy: "src=").count - 1
        #expect(sources == html.components(separatedBy: "src=\"data:image/png;base64,").count - 1)
        #expect(html.utf8.count < 1_000_000)
    }

    /// A network of images without a convolution has maps to draw but no kernels: the page's note
    /// said it showed "the first convolution's kernels" all the same.
    @Test func aPageWithoutAConvolutionPromisesNoKernels() throws {
        let (model, x, targ, _) = try describedSetup(
            "maxpool 2 stride 1 pad 1, avgpool 3 stride 1 pad 1 excludepad, flatten, lin 3", inputShape: [1, 6, 6],
            classes: 3)
        let trace = Trace.record(model: model, x: x, targ: targ)
        let maps = try #require(FeatureMaps(trace: trace))
        #expect(maps.kernels == nil && maps.rows.map(\.name) == ["x[0]", "MP.out[0]", "AP.out[0]"])
        let html = HTMLReport(narration: Narration(trace: trace)).html
        expectContains(html, "<section class=\"maps\" aria-labelledby=\"maps-title\">")
        expectLacks(html, "first convolution's kernels")
        expectContains(try Self.cnnPage().html, "one picture per channel; then the first convolution's kernels")
        // The average that leaves its padding out divides each window by its count.
        let text = Narration(trace: trace).text
        expectContains(text, "avg_pool2d(AP.inp, 3, stride=1, padding=1, count_include_pad=False)")
        // fold takes the window alone (it has no count_include_pad), and counts is said.
        expectContains(
            text,
            "AP.inp.g = fold(AP.out.g.view(n * c, 1, -1).expand(-1, 9, -1) / counts, AP.inp.shape[2:], 3, stride=1, "
                + "padding=1).view(AP.inp.shape)   # counts = (avg_pool2d(ones(1, h, w), 3, stride=1, padding=1) * 9)"
                + ".view(1, 1, -1): each window's elements in the image")
    }

    @Test func anMLPsPageHasNoPictures() {
        let (model, x, targ, _, _, _, _) = seedSetup()
        let trace = Trace.record(model: model, x: x, targ: targ)
        #expect(FeatureMaps(trace: trace) == nil)
        expectLacks(HTMLReport(narration: Narration(trace: trace)).html, "class=\"maps\"")
    }

    @Test(.enabled(if: ExplainHTMLTests.runsBrowserTests, "Chromium is not installed (apt-get install chromium)"))
    func aBrowserRunsTheConvnetsPageAtAPhonesWidthAndADesktops() throws {
        let (html, trace, _) = try Self.cnnPage()
        let last = trace.steps.count - 1
        let pages = try ExplainHTMLTests.expectFitsAPhoneAndADesktop(html, fragment: "step=\(last - 1)")
        for (_, page) in pages {
            expectContains(page.dom, "<span id=\"counter\" aria-live=\"polite\">Step \(last - 1) of \(last)</span>")
            expectContains(page.dom, "<h2 id=\"step-title\">Step \(last - 1): backward through C1</h2>")
            expectContains(page.dom, "reads C1.cols, kept by C1's forward (step 2)")
            #expect(page.dom.components(separatedBy: "<img src=\"data:image/png;base64,").count - 1 == 449)
        }
    }
}

// MARK: - The PNG writer

@Suite("Explain: the PNG writer")
struct ExplainPNGTests {
    @Test func checksumsMatchTheirSpecificationsExamples() {
        // Every PNG ends with the chunk IEND, whose CRC-32 is AE 42 60 82.
        #expect(PNG.crc32(Array("IEND".utf8)) == 0xAE42_6082)
        // CRC-32 of "123456789" is CBF43926 (the check value of the CRC catalogue); Adler-32 of
        // "Wikipedia" is 11E60398 (RFC 1950's algorithm, the usual worked example).
        #expect(PNG.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(PNG.adler32(Array("Wikipedia".utf8)) == 0x11E6_0398)
    }

    @Test func writesAFileThatReadsBack() throws {
        let pixels: [UInt8] = (0..<(70_000)).map { UInt8($0 % 3) }  // more than one stored block
        let png = PNG(width: 350, height: 200, pixels: pixels, palette: [(0, 0, 0), (255, 0, 0), (1, 2, 3)])
        let bytes = png.bytes
        #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let read = try #require(PNGReader(bytes))
        #expect(read.width == 350 && read.height == 200)
        #expect(read.pixels == pixels)
        #expect(read.palette == [[0, 0, 0], [255, 0, 0], [1, 2, 3]])
    }
}

/// A reader of the PNG files the page inlines, written from the specification for the tests: the
/// chunks in order with their CRC-32 checked against zlib's table-free bitwise form, IHDR's
/// 8-bit palette, and an IDAT zlib stream of stored blocks (the writer's only kind), its
/// Adler-32 checked, each row's filter byte 0.
struct PNGReader {
    let width: Int
    let height: Int
    let palette: [[UInt8]]
    let pixels: [UInt8]

    init?(_ bytes: [UInt8]) {
        guard bytes.count > 8, Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else {
            return nil
        }
        func number(_ at: Int) -> Int { bytes[at..<(at + 4)].reduce(0) { $0 << 8 | Int($1) } }
        func crc(_ data: ArraySlice<UInt8>) -> Int {
            var c: UInt32 = 0xFFFF_FFFF
            for byte in data {
                c ^= UInt32(byte)
                for _ in 0..<8 { c = (c >> 1) ^ (c & 1 == 1 ? 0xEDB8_8320 : 0) }
            }
            return Int(~c)
        }
        var position = 8
        var chunks: [(type: String, data: [UInt8])] = []
        while position + 12 <= bytes.count {
            let length = number(position)
            let typeStart = position + 4
            let end = typeStart + 4 + length
            guard end + 4 <= bytes.count, crc(bytes[typeStart..<end]) == number(end) else { return nil }
            chunks.append(
                (
                    String(decoding: bytes[typeStart..<(typeStart + 4)], as: UTF8.self),
                    Array(bytes[(typeStart + 4)..<end])
                ))
            position = end + 4
        }
        guard chunks.map(\.type) == ["IHDR", "PLTE", "IDAT", "IEND"] else { return nil }
        let header = chunks[0].data
        width = header[0..<4].reduce(0) { $0 << 8 | Int($1) }
        height = header[4..<8].reduce(0) { $0 << 8 | Int($1) }
        guard Array(header[8...]) == [8, 3, 0, 0, 0] else { return nil }
        palette = stride(from: 0, to: chunks[1].data.count, by: 3).map { Array(chunks[1].data[$0..<($0 + 3)]) }
        // zlib: CMF FLG, then stored blocks, then Adler-32.
        let stream = chunks[2].data
        guard stream.count > 6, (Int(stream[0]) << 8 | Int(stream[1])) % 31 == 0 else { return nil }
        var raw: [UInt8] = []
        var at = 2
        while true {
            let final = stream[at] & 1 == 1
            guard stream[at] >> 1 == 0 else { return nil }  // stored
            let length = Int(stream[at + 1]) | Int(stream[at + 2]) << 8
            let complement = Int(stream[at + 3]) | Int(stream[at + 4]) << 8
            guard length ^ complement == 0xFFFF else { return nil }
            raw += stream[(at + 5)..<(at + 5 + length)]
            at += 5 + length
            if final { break }
        }
        var a = 1
        var b = 0
        for byte in raw {
            a = (a + Int(byte)) % 65_521
            b = (b + a) % 65_521
        }
        guard stream[at..<(at + 4)].reduce(0, { $0 << 8 | Int($1) }) == b << 16 | a else { return nil }
        guard raw.count == height * (width + 1) else { return nil }
        var pixels: [UInt8] = []
        for row in 0..<height {
            guard raw[row * (width + 1)] == 0 else { return nil }
            pixels += raw[(row * (width + 1) + 1)..<((row + 1) * (width + 1))]
        }
        self.pixels = pixels
    }
}
