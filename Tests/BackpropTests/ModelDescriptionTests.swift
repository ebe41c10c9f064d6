import Testing

@testable import BackpropCore
@testable import BackpropNetwork

// Model descriptions: the text form parsed, printed and rejected; shapes inferred; the layers
// built, initialised and named as the checkpoints name them.

/// Parses `text`, recording a failure (at the caller) if it throws.
private func parsed(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> ModelDescription? {
    do {
        return try ModelDescription(parsing: text)
    } catch {
        Issue.record("\"\(text)\" did not parse: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The message `ModelDescription(parsing: text)` throws, or `nil` if it parses.
private func parseError(_ text: String) -> String? {
    do {
        _ = try ModelDescription(parsing: text)
        return nil
    } catch {
        return error.description
    }
}

/// The message `shapes(input:)` throws, or `nil` if the shapes fit.
private func shapeError(_ text: String, input: [Int], sourceLocation: SourceLocation = #_sourceLocation) -> String? {
    guard let description = parsed(text, sourceLocation: sourceLocation) else { return nil }
    do {
        _ = try description.shapes(input: input)
        return nil
    } catch {
        return error.description
    }
}

@Suite("ModelDescription: parsing, printing and errors")
struct ModelDescriptionParsingTests {
    @Test("every kind of entry and option parses to its entry")
    func everyEntry() {
        let text =
            "conv 8 3, conv 16 5 stride 2 pad 1 nobias, maxpool 2, maxpool 3 stride 1, avgpool 2, "
            + "avgpool 3 stride 2, maxpool 3 pad 1 stride 2, avgpool 5 pad 2, avgpool 3 ExcludePad pad 1 stride 1, "
            + "flatten, lin 10, lin 4 NoBias, relu, tanh, sigmoid, leakyrelu, leakyrelu 0.2, gelu, SiLU, "
            + "hardtanh, HardTanh -2 3.5, relu6, hardtanh 0 6, "
            + "dropout 0.5, dropout 0, batchnorm, batchnorm eps 0.001 momentum 0.01, batchnorm MOMENTUM 1 eps 0"
        let expected: [ModelDescription.Entry] = [
            .conv(out: 8, kernel: 3, stride: 1, padding: 0, bias: true),
            .conv(out: 16, kernel: 5, stride: 2, padding: 1, bias: false),
            .maxPool(kernel: 2, stride: 2), .maxPool(kernel: 3, stride: 1),
            .avgPool(kernel: 2, stride: 2), .avgPool(kernel: 3, stride: 2),
            .maxPool(kernel: 3, stride: 2, padding: 1), .avgPool(kernel: 5, stride: 5, padding: 2),
            .avgPool(kernel: 3, stride: 1, padding: 1, countIncludePad: false),
            .flatten, .lin(out: 10), .lin(out: 4, bias: false), .relu, .tanh, .sigmoid, .leakyReLU(slope: 0.01),
            .leakyReLU(slope: 0.2), .gelu, .silu,
            .hardtanh(min: -1, max: 1), .hardtanh(min: -2, max: 3.5), .hardtanh(min: 0, max: 6),
            .hardtanh(min: 0, max: 6),
            .dropout(p: 0.5), .dropout(p: 0), .batchNorm(eps: 1e-5, momentum: 0.1),
            .batchNorm(eps: 0.001, momentum: 0.01), .batchNorm(eps: 0, momentum: 1),
        ]
        #expect(parsed(text)?.entries == expected)
    }

    @Test("names and options are case-insensitive, options in any order, spaces free")
    func caseOrderAndSpaces() {
        let reference = ModelDescription(entries: [
            .conv(out: 4, kernel: 3, stride: 2, padding: 1, bias: false), .relu, .lin(out: 1),
        ])
        for text in [
            "conv 4 3 stride 2 pad 1 nobias, relu, lin 1",
            "CONV 4 3 NoBias Pad 1 STRIDE 2,ReLU,Lin 1",
            "  conv\t4 3 pad 1  stride 2 nobias ,  relu ,lin   1  ",
        ] {
            #expect(parsed(text) == reference, "\(text)")
        }
    }

    @Test("the canonical text parses back to the same description, and is a fixed point")
    func canonicalRoundTrip() throws {
        let texts = [
            "conv 8 3, conv 16 5 stride 2 pad 1 nobias, maxpool 3 stride 1, avgpool 2, flatten, lin 10",
            "lin 16 nobias, batchnorm, relu, lin 10",
            "lin 7, leakyrelu 0.2, leakyrelu, leakyrelu -0.5, dropout 0.125, dropout 1e-05, gelu, tanh, sigmoid, silu",
            "lin 4, hardtanh, lin 4, relu6, lin 4, hardtanh -2.0 3.5, hardtanh 0.0 7.0",
            "batchnorm, conv 2 1 stride 3, batchnorm, relu, avgpool 2 stride 1, flatten, batchnorm, lin 3",
            "avgpool 3 stride 1 pad 1 excludepad, avgpool 2 excludepad, avgpool 5 pad 2, flatten",
            "batchnorm eps 0.001, batchnorm momentum 0.01, batchnorm eps 0.0001 momentum 0.3, batchnorm eps 0.0",
        ]
        for text in texts {
            let description = try ModelDescription(parsing: text)
            #expect(try ModelDescription(parsing: description.description) == description, "\(text)")
            #expect(description.description == text)
        }
        // Defaults are left out of the canonical text.
        #expect(
            try ModelDescription(parsing: "CONV 8 3 stride 1 pad 0, maxpool 2 stride 2, leakyrelu 0.01").description
                == "conv 8 3, maxpool 2, leakyrelu")
        #expect(
            try ModelDescription(parsing: "batchnorm momentum 0.1 eps 1e-5, batchnorm momentum 0.1").description
                == "batchnorm, batchnorm")
    }

    @Test("the presets parse by name, in any case, to their texts; their texts are canonical")
    func presets() throws {
        #expect(ModelDescription.presets.map(\.name) == ["seed", "mlp", "cnn"])
        #expect(try ModelDescription(parsing: "seed").entries == [.lin(out: 50), .relu, .lin(out: 1)])
        #expect(
            try ModelDescription(parsing: " MLP ").entries == [
                .lin(out: 256), .relu, .lin(out: 128), .relu, .lin(out: 10),
            ])
        for (name, text) in ModelDescription.presets {
            let description = try ModelDescription(parsing: name)
            #expect(description == (try ModelDescription(parsing: text)))
            #expect(description.description == text, "preset \(name)")
        }
        let cnn = try ModelDescription(parsing: "cnn")
        #expect(cnn.entries.first == .conv(out: 16, kernel: 3, stride: 1, padding: 1, bias: true))
        #expect(cnn.entries.last == .lin(out: 10))
    }

    @Test("each error names the entry, its text, what was expected, the character and the token")
    func errors() {
        let layerNames =
            "a layer name (conv, maxpool, avgpool, flatten, lin, relu, tanh, sigmoid, leakyrelu, gelu, silu, "
            + "hardtanh, relu6, dropout, batchnorm)"
        let cases: [(text: String, message: String)] = [
            (
                "lin 10, relu, maxpool x",
                "entry 3 \"maxpool x\": expected a kernel size (a positive integer) at character 23, found \"x\""
            ),
            ("lin 10, rleu", "entry 2 \"rleu\": expected \(layerNames) at character 9, found \"rleu\""),
            (
                "conv 32",
                "entry 1 \"conv 32\": expected a kernel size (a positive integer) at character 8, "
                    + "found the end of the entry"
            ),
            ("lin 0", "entry 1 \"lin 0\": expected an output size (a positive integer) at character 5, found \"0\""),
            (
                "hardtanh 1",
                "entry 1 \"hardtanh 1\": expected an upper bound (a number above 1.0) at character 11, "
                    + "found the end of the entry"
            ),
            (
                "hardtanh 2 -2",
                "entry 1 \"hardtanh 2 -2\": expected an upper bound (a number above 2.0) at character 12, found \"-2\""
            ),
            (
                "relu6 6",
                "entry 1 \"relu6 6\": expected the end of the entry (relu6 takes no numbers or options) at character 7, "
                    + "found \"6\""
            ),
            (
                "lin 2.5",
                "entry 1 \"lin 2.5\": expected an output size (a positive integer) at character 5, found \"2.5\""
            ),
            (
                "conv 8 3 pad -1",
                "entry 1 \"conv 8 3 pad -1\": expected a padding (an integer >= 0) at character 14, found \"-1\""
            ),
            (
                "maxpool 2 stride 0",
                "entry 1 \"maxpool 2 stride 0\": expected a stride (a positive integer) at character 18, found \"0\""
            ),
            (
                "dropout 1",
                "entry 1 \"dropout 1\": expected a dropout probability (a number p with 0 <= p < 1) at character 9, "
                    + "found \"1\""
            ),
            (
                "dropout nan",
                "entry 1 \"dropout nan\": expected a dropout probability (a number p with 0 <= p < 1) "
                    + "at character 9, found \"nan\""
            ),
            (
                "relu, dropout",
                "entry 2 \"dropout\": expected a dropout probability (a number p with 0 <= p < 1) at character 14, "
                    + "found the end of the entry"
            ),
            (
                "conv 8 3 padding 1",
                "entry 1 \"conv 8 3 padding 1\": expected an option (stride N, pad N, nobias) or the end of the entry "
                    + "at character 10, found \"padding\""
            ),
            (
                "conv 8 3 pad 1 PAD 2",
                "entry 1 \"conv 8 3 pad 1 PAD 2\": expected each option at most once at character 16, "
                    + "found \"pad\" a second time"
            ),
            (
                "maxpool 3 pad 1 excludepad",
                "entry 1 \"maxpool 3 pad 1 excludepad\": expected an option (stride N, pad N) or the end of the entry "
                    + "at character 17, found \"excludepad\""
            ),
            (
                "avgpool 3 excludepad 1",
                "entry 1 \"avgpool 3 excludepad 1\": expected an option (stride N, pad N, excludepad) or the end of the "
                    + "entry at character 22, found \"1\""
            ),
            (
                "avgpool 2 pad 2",
                "entry 1 \"avgpool 2 pad 2\": expected a padding (an integer from 0 to 1, half the kernel) at "
                    + "character 15, found \"2\""
            ),
            (
                "lin 10, ReLU 3",
                "entry 2 \"ReLU 3\": expected the end of the entry (relu takes no numbers or options) at character 14, "
                    + "found \"3\""
            ),
            (
                "lin 10 20",
                "entry 1 \"lin 10 20\": expected an option (nobias) or the end of the entry "
                    + "at character 8, found \"20\""
            ),
            (
                "leakyrelu abc",
                "entry 1 \"leakyrelu abc\": expected a negative slope (a number) or the end of the entry "
                    + "at character 11, found \"abc\""
            ),
            (
                "batchnorm 3",
                "entry 1 \"batchnorm 3\": expected an option (eps E, momentum M) or the end of the entry "
                    + "at character 11, found \"3\""
            ),
            (
                "batchnorm eps -1",
                "entry 1 \"batchnorm eps -1\": expected an epsilon (a number >= 0) at character 15, found \"-1\""
            ),
            (
                "batchnorm momentum 1.5",
                "entry 1 \"batchnorm momentum 1.5\": expected a momentum (a number m with 0 <= m <= 1) "
                    + "at character 20, found \"1.5\""
            ),
            (
                "batchnorm eps 1e-3 eps 1e-3",
                "entry 1 \"batchnorm eps 1e-3 eps 1e-3\": expected each option at most once at character 20, "
                    + "found \"eps\" a second time"
            ),
            (
                "batchnorm eps",
                "entry 1 \"batchnorm eps\": expected an epsilon (a number >= 0) at character 14, "
                    + "found the end of the entry"
            ),
            ("lin 10,, relu", "entry 2 \"\": expected \(layerNames) at character 8, found nothing"),
            ("lin 10,", "entry 2 \"\": expected \(layerNames) at character 8, found nothing"),
            ("mlp, relu", "entry 1 \"mlp\": expected \(layerNames) at character 1, found \"mlp\""),
        ]
        for (text, message) in cases {
            #expect(parseError(text) == "--layers: " + message, "\(text)")
        }
        #expect(
            parseError("  ")
                == "--layers: the description is empty: expected layers (e.g. \"lin 50, relu, lin 1\") "
                + "or a preset (seed, mlp, cnn)")
    }
}

@Suite("ModelDescription: shapes, layers and names")
struct ModelDescriptionShapeTests {
    @Test("the cnn preset's shapes on a 28×28 image, and its input shape")
    func cnnShapes() throws {
        let cnn = try ModelDescription(parsing: "cnn")
        #expect(cnn.inputShape(channels: 1, height: 28, width: 28) == [1, 28, 28])
        #expect(
            try cnn.shapes(input: [1, 28, 28]) == [
                [16, 28, 28], [16, 14, 14], [16, 14, 14], [16, 14, 14], [32, 14, 14], [32, 7, 7], [32, 7, 7],
                [32, 7, 7], [1568], [1568], [256], [256], [256], [10],
            ])
        // conv 1·16·9 + 16, batchnorm 2·16, conv 16·32·9 + 32, batchnorm 2·32, lin 1568·256 + 256, lin 256·10 + 10
        #expect(try cnn.parameterCount(inputShape: [1, 28, 28]) == 160 + 32 + 4640 + 64 + 401_664 + 2570)
    }

    @Test("sizes that overflow Int are an error, not a trap")
    func overflowingSizes() throws {
        let flatten = try ModelDescription(parsing: "flatten, lin 2")
        #expect(throws: ModelDescriptionError.self) { try flatten.shapes(input: [2, Int.max / 2, 3]) }
        #expect(throws: ModelDescriptionError.self) { try flatten.parameterCount(inputShape: [2, Int.max / 2, 3]) }
        let padded = ModelDescription(entries: [.conv(out: 1, kernel: 3, stride: 1, padding: Int.max / 2, bias: true)])
        #expect(throws: ModelDescriptionError.self) { try padded.shapes(input: [1, 5, 5]) }
        // Shapes that fit, but parameters that cannot be counted: [Int.max / 4] inputs to 8 outputs.
        let wide = try ModelDescription(parsing: "lin 8 nobias")
        #expect(try wide.shapes(input: [Int.max / 4]) == [[8]])
        #expect(throws: ModelDescriptionError.self) { try wide.parameterCount(inputShape: [Int.max / 4]) }
        #expect(try wide.parameterCount(inputShape: [Int.max / 8]) == Int.max / 8 * 8)
    }

    @Test("inputShape: images for a first spatial layer, vectors for a first lin")
    func inputShapes() throws {
        let cases: [(String, [Int])] = [
            ("mlp", [784]), ("relu, lin 10", [784]), ("batchnorm, conv 2 3", [1, 28, 28]),
            ("flatten, lin 3", [1, 28, 28]),
            ("maxpool 2, flatten, lin 3", [1, 28, 28]), ("relu", [784]),
        ]
        for (text, shape) in cases {
            #expect(
                try ModelDescription(parsing: text).inputShape(channels: 1, height: 28, width: 28) == shape, "\(text)")
        }
    }

    @Test("shapes agree with the layers' own outputs on odd sizes, strides and paddings")
    func shapesMatchForwardPass() throws {
        let description = try ModelDescription(
            parsing:
                "conv 4 3 stride 2 pad 2, avgpool 2 stride 1, batchnorm, maxpool 3 stride 2, avgpool 3 stride 2 pad 1, "
                + "maxpool 2 pad 1, flatten, lin 6 nobias, lin 5, gelu")
        var generator = RandomGenerator(seed: 3)
        let input = [3, 13, 11]
        let layers = try description.makeLayers(inputShape: input, generator: &generator)
        var x = Tensor.randn([2] + input, generator: &generator)  // (n, c, h, w)
        var outputs: [[Int]] = []
        for layer in layers {
            x = layer(x)
            outputs.append(Array(x.shape.dropFirst()))
        }
        #expect(try description.shapes(input: input) == outputs)
        #expect(outputs.last == [5])
        let learned = layers.flatMap(\.parameters).reduce(0) { $0 + $1.count }
        #expect(try description.parameterCount(inputShape: input) == learned)
    }

    @Test("an entry built in code with a number the text would refuse is named; no layer is built")
    func outOfRangeEntriesFromCode() {
        let cases: [(ModelDescription.Entry, [Int], String)] = [
            (.lin(out: 0), [4], "entry 1 \"lin 0\" has out 0; expected an integer >= 1"),
            (
                .conv(out: 2, kernel: 3, stride: 0, padding: 0, bias: true), [1, 5, 5],
                "entry 1 \"conv 2 3 stride 0\" has stride 0; expected an integer >= 1"
            ),
            (
                .conv(out: 2, kernel: 3, stride: 1, padding: -1, bias: true), [1, 5, 5],
                "entry 1 \"conv 2 3 pad -1\" has padding -1; expected an integer >= 0"
            ),
            (
                .maxPool(kernel: 0, stride: 1), [1, 5, 5],
                "entry 1 \"maxpool 0 stride 1\" has kernel 0; expected an integer >= 1"
            ),
            (
                .avgPool(kernel: 2, stride: -3), [1, 5, 5],
                "entry 1 \"avgpool 2 stride -3\" has stride -3; expected an integer >= 1"
            ),
            (
                .maxPool(kernel: 3, stride: 1, padding: 2), [1, 5, 5],
                "entry 1 \"maxpool 3 stride 1 pad 2\" has padding 2; expected at most half its kernel 3"
            ),
            (
                .avgPool(kernel: 3, stride: 1, padding: -1), [1, 5, 5],
                "entry 1 \"avgpool 3 stride 1 pad -1\" has padding -1; expected an integer >= 0"
            ),
            (.dropout(p: 1), [4], "entry 1 \"dropout 1.0\" has p 1.0; expected 0 <= p < 1"),
            (.leakyReLU(slope: .nan), [4], "entry 1 \"leakyrelu nan\" has slope nan; expected a finite number"),
            (.batchNorm(eps: -1), [4], "entry 1 \"batchnorm eps -1.0\" has eps -1.0; expected a finite number >= 0"),
            (
                .batchNorm(eps: .infinity), [4],
                "entry 1 \"batchnorm eps inf\" has eps inf; expected a finite number >= 0"
            ),
            (
                .batchNorm(momentum: 1.5), [4],
                "entry 1 \"batchnorm momentum 1.5\" has momentum 1.5; expected 0 <= momentum <= 1"
            ),
        ]
        for (entry, input, message) in cases {
            let description = ModelDescription(entries: [entry])
            #expect(throws: ModelDescriptionError(description: "--layers: " + message), "\(entry)") {
                try description.shapes(input: input)
            }
            var generator = RandomGenerator(seed: 1)
            #expect(throws: ModelDescriptionError.self) {
                try description.makeLayers(inputShape: input, generator: &generator)
            }
            #expect(throws: ModelDescriptionError.self) { try description.parameterCount(inputShape: input) }
        }
        // The limits themselves build.
        let edges = ModelDescription(entries: [
            .lin(out: 1), .dropout(p: 0), .batchNorm(eps: 0, momentum: 0), .batchNorm(momentum: 1),
            .leakyReLU(slope: -3),
        ])
        var generator = RandomGenerator(seed: 1)
        #expect(throws: Never.self) { try edges.makeLayers(inputShape: [4], generator: &generator) }
    }

    @Test("a layer whose input does not fit is named, with its input shape")
    func shapeErrors() {
        let cases: [(text: String, input: [Int], message: String)] = [
            (
                "conv 8 3, lin 10", [1, 8, 8],
                "entry 2 \"lin 10\" expects one vector per example, but its input is [8, 6, 6] (put flatten before it)"
            ),
            (
                "conv 8 3", [784],
                "entry 1 \"conv 8 3\" expects images [c, h, w] per example, but its input is [784] "
                    + "(a model starting with conv takes inputs [n, c, h, w])"
            ),
            (
                "conv 8 5", [1, 3, 3],
                "entry 1 \"conv 8 5\" has a 5×5 kernel, larger than its input [1, 3, 3] padded to 3×3"
            ),
            (
                "conv 4 3 pad 1, maxpool 2, maxpool 2, maxpool 2", [1, 4, 4],
                "entry 4 \"maxpool 2\" has a 2×2 window, larger than its input [4, 1, 1] of 1×1"
            ),
            (
                "maxpool 2, maxpool 2, maxpool 5 pad 1", [1, 8, 8],
                "entry 3 \"maxpool 5 pad 1\" has a 5×5 window, larger than its input [1, 2, 2] of 2×2 padded to 4×4"
            ),
            (
                "flatten, avgpool 2", [1, 4, 4],
                "entry 2 \"avgpool 2\" expects images [c, h, w] per example, but its input is [16]"
            ),
            (
                "batchnorm", [2, 3],
                "entry 1 \"batchnorm\" expects [c] or [c, h, w] per example, but its input is [2, 3]"
            ),
            (
                "lin 3", [0],
                "the input shape per example [0] must have at least one dimension, all of size at least 1"
            ),
        ]
        for (text, input, message) in cases {
            #expect(shapeError(text, input: input) == "--layers: " + message, "\(text) on \(input)")
        }
        #expect(shapeError("conv 8 5 pad 1", input: [1, 3, 3]) == nil)
    }

    @Test("the mlp preset draws exactly Model.mlp's weights, and seed exactly the seed's")
    func mlpInvariant() throws {
        for seed: UInt64 in [1, 42] {
            var generator = RandomGenerator(seed: seed)
            var reference = RandomGenerator(seed: seed)
            let model = try Model(
                description: ModelDescription(parsing: "mlp"), inputShape: [784], loss: CrossEntropy(),
                generator: &generator)
            let mlp = Model.mlp(sizes: [784, 256, 128, 10], loss: CrossEntropy(), generator: &reference)
            #expect(model.parameters.map(\.shape) == mlp.parameters.map(\.shape))
            #expect(model.parameters.map(\.values) == mlp.parameters.map(\.values))
            #expect(generator.next() == reference.next(), "the same number of draws")
            #expect(model.layers.map { "\(type(of: $0))" } == mlp.layers.map { "\(type(of: $0))" })
            #expect((model.layers.first as? Lin)?.needsInputGradient == false)
        }
        var generator = RandomGenerator(seed: 7)
        var reference = RandomGenerator(seed: 7)
        let seedLayers = try ModelDescription(parsing: "seed").makeLayers(inputShape: [784], generator: &generator)
        let linears = Model.kaimingInitialization(sizes: [784, 50, 1], generator: &reference)
        #expect(seedLayers.flatMap(\.parameters).map(\.values) == linears.flatMap { [$0.w.values, $0.b.values] })
    }

    @Test("dropout does not change the weights: its seeds are drawn after them")
    func dropoutAfterWeights() throws {
        var plain = RandomGenerator(seed: 5)
        var dropped = RandomGenerator(seed: 5)
        let mlp = try ModelDescription(parsing: "mlp").makeLayers(inputShape: [784], generator: &plain)
        let withDropout = try ModelDescription(
            parsing: "lin 256, relu, dropout 0.5, lin 128, relu, dropout 0.1, lin 10"
        )
        .makeLayers(inputShape: [784], generator: &dropped)
        #expect(withDropout.flatMap(\.parameters).map(\.values) == mlp.flatMap(\.parameters).map(\.values))
        // The first dropout's seed is the generator's next number after the weights.
        let dropout = try #require(withDropout[2] as? Dropout)
        let twin = Dropout(p: 0.5, seed: plain.next())
        let x = Tensor.ones([4, 256])
        _ = dropout(x)
        _ = twin(x)
        #expect(dropout.mask?.values == twin.mask?.values)
        let second = try #require(withDropout[5] as? Dropout)
        _ = second(x)
        #expect(second.mask?.values != dropout.mask?.values)
    }

    @Test("conv weights are Kaiming normal with fan-in cIn·k·k; biases and batch norm start as documented")
    func convInitialisation() throws {
        var generator = RandomGenerator(seed: 2)
        let layers = try ModelDescription(parsing: "conv 64 3, batchnorm, relu, conv 32 3 nobias, flatten, lin 4")
            .makeLayers(inputShape: [32, 9, 9], generator: &generator)
        let conv = try #require(layers[0] as? Conv2d)
        #expect(conv.w.shape == [64, 32, 3, 3])
        #expect(conv.b?.values == [Float](repeating: 0, count: 64))
        // std ≈ sqrt(2 / (32·9)) over 18432 draws (its standard error is 0.5%).
        let values = conv.w.values.map(Double.init)
        let std = (values.reduce(0) { $0 + $1 * $1 } / Double(values.count)).squareRoot()
        #expect(abs(std / (2.0 / 288).squareRoot() - 1) < 0.03, "std \(std)")
        // Followed by no nonlinearity: gain 1, std ≈ sqrt(1 / (64·9)).
        let last = try #require(layers[3] as? Conv2d)
        #expect(last.b == nil && last.parameters.count == 1)
        let lastValues = last.w.values.map(Double.init)
        let lastStd = (lastValues.reduce(0) { $0 + $1 * $1 } / Double(lastValues.count)).squareRoot()
        #expect(abs(lastStd / (1.0 / 576).squareRoot() - 1) < 0.03, "std \(lastStd)")
        let norm = try #require(layers[1] as? BatchNorm)
        #expect(norm.w.values == [Float](repeating: 1, count: 64) && norm.b.values == [Float](repeating: 0, count: 64))
        #expect(norm.runningMean.values == [Float](repeating: 0, count: 64))
        #expect(norm.runningVar.values == [Float](repeating: 1, count: 64))
    }

    @Test("the model names its parameters and buffers layers.I.NAME, and train()/eval() set every mode")
    func modelNamesAndModes() throws {
        var generator = RandomGenerator(seed: 4)
        let model = try Model(
            description: ModelDescription(parsing: "conv 2 3 nobias, batchnorm, relu, flatten, dropout 0.5, lin 3"),
            inputShape: [1, 5, 5], loss: CrossEntropy(), generator: &generator)
        #expect(
            model.namedParameters.map(\.name) == ["layers.0.w", "layers.1.w", "layers.1.b", "layers.5.w", "layers.5.b"])
        #expect(model.namedParameters.map(\.tensor.shape) == [[2, 1, 3, 3], [2], [2], [18, 3], [3]])
        #expect(zip(model.namedParameters.map(\.tensor), model.parameters).allSatisfy { $0 === $1 })
        #expect(model.namedBuffers.map(\.name) == ["layers.1.running_mean", "layers.1.running_var"])
        let norm = try #require(model.layers[1] as? BatchNorm)
        #expect(model.namedBuffers[0].tensor === norm.runningMean && model.namedBuffers[1].tensor === norm.runningVar)
        #expect((model.layers.first as? Conv2d)?.needsInputGradient == false)

        let dropout = try #require(model.layers[4] as? Dropout)
        #expect(norm.isTraining && dropout.isTraining)
        model.eval()
        #expect(!norm.isTraining && !dropout.isTraining)
        model.train()
        #expect(norm.isTraining && dropout.isTraining)
    }

    /// `flatten, lin 10` computed the data's gradient (`inp.g` of the Lin and of the flatten) that
    /// nobody reads: only a first layer of its own skipped it. The first layer that learns skips
    /// it behind any layers that learn nothing, and `backward()` stops after it.
    @Test("the first layer that learns skips inp.g behind layers that learn nothing; its gradients stay autograd's")
    func firstTrainableLayerSkipsTheDataGradient() throws {
        let cases: [(text: String, shape: [Int], first: Int?)] = [
            ("flatten, lin 5, relu, lin 3", [1, 4, 4], 1),
            ("dropout 0.5, maxpool 2, conv 2 3 pad 1, relu, flatten, lin 3", [1, 6, 6], 2),
            ("relu, lin 4, tanh, lin 3", [8], 1),
            ("lin 3", [8], 0),
            ("batchnorm, lin 3", [8], nil),  // batch norm learns first: every inp.g is written
        ]
        for (text, shape, first) in cases {
            var generator = RandomGenerator(seed: 9)
            let model = try Model(
                description: ModelDescription(parsing: text), inputShape: shape, loss: CrossEntropy(),
                generator: &generator)
            model.eval()  // the same dropout (none) on both passes below
            #expect(
                model.firstTrainableLayer.map(ObjectIdentifier.init)
                    == first.map { ObjectIdentifier(model.layers[$0]) },
                "\(text)")
            let skipping = model.layers.compactMap { $0 as? any InputGradientSkipping }.filter {
                !$0.needsInputGradient
            }
            #expect(skipping.count == (first == nil ? 0 : 1), "\(text)")
            let x = Tensor.randn([4] + shape, generator: &generator)
            let y = Tensor([0, 2, 1, 2])
            _ = model(x, y)
            model.backward()
            if let first {
                #expect(x.g == nil, "\(text)")
                for layer in model.layers[..<first] { #expect(layer.out.g == nil, "\(text): \(type(of: layer))") }
            } else {
                #expect(x.g?.shape == x.shape, "\(text)")
            }
            // Autograd's gradients of the same parameters, through the recorded forward.
            let handWritten = model.parameters.map { $0.g?.values ?? [] }
            for parameter in model.parameters { parameter.requiresGrad = true }
            model(x, y).backward()
            for (parameter, values) in zip(model.parameters, handWritten) {
                expectAllNear(values, try #require(parameter.grad).values.map(Double.init), tolerance: 1e-5, "\(text)")
            }
        }
    }

    /// A pass with `x.g` (the gradient check, the walkthrough) and then one without, on the same
    /// data tensor: the second left the first one's `x.g` and the layers' `out.g` before the first
    /// that learns in place, stale, though the docs say those layers are left without gradients.
    @Test("a backward pass that skips the data's gradient leaves no earlier pass's x.g or out.g behind")
    func skippedDataGradientIsNotStale() throws {
        for text in ["lin 3", "flatten, lin 5, relu, lin 3", "maxpool 2, conv 2 3 pad 1, relu, flatten, lin 3"] {
            var generator = RandomGenerator(seed: 12)
            let shape = text.hasPrefix("lin") ? [8] : [1, 6, 6]
            let model = try Model(
                description: ModelDescription(parsing: text), inputShape: shape, loss: CrossEntropy(),
                generator: &generator)
            let first = try #require(model.firstTrainableLayer)
            let x = Tensor.randn([4] + shape, generator: &generator)
            let y = Tensor([0, 2, 1, 2])
            first.needsInputGradient = true
            _ = model(x, y)
            model.backward()
            #expect(x.g?.shape == x.shape, "\(text)")
            #expect(first.inp.g?.shape == first.inp.shape, "\(text)")

            first.needsInputGradient = false
            _ = model(x, y)
            model.backward()
            #expect(x.g == nil, "\(text)")
            #expect(first.inp.g == nil, "\(text)")
            for layer in model.layers.prefix(while: { $0 !== first }) {
                #expect(layer.out.g == nil, "\(text): \(type(of: layer))")
            }
            #expect(first.parameters.allSatisfy { $0.g?.shape == $0.shape }, "\(text)")
        }
    }
}
