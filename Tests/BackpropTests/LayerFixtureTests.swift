import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropNetwork

// The convnet layers against results that numpy computed in float64, independently of Backprop
// (`Fixtures/make_layer_fixtures.py`: direct sliding windows, no im2col, and every gradient there
// checked against finite differences before it is written).
//
// Each case runs along both backward paths:
// - hand-written: plain tensors, so the layer runs its fast kernels; `out.g = r; backward()`;
// - autograd: the input and the parameters require gradients, so the forward is composed of
//   recorded primitives; `(out * r).sum().backward()` fills `.grad`.
// Both must give numpy's `out` and, for `out.g = r`, numpy's `x.g`, `w.g`, `b.g`.
//
// Dropout has no fixture: its mask comes from the layer's own seeded generator and cannot be set
// from outside, so numpy cannot know it.

@Suite("The convnet layers against numpy")
struct LayerFixtureTests {
    /// Which backward a case runs.
    enum Path: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// `out.g = r; layer.backward()`, with nothing recorded.
        case handWritten = "hand-written"
        /// The input and the parameters require gradients; `(out * r).sum().backward()`.
        case autograd

        var testDescription: String { rawValue }
    }

    /// One case `NAME` of a fixture file: the tensors `NAME.x`, `NAME.out`, … and, in the file's
    /// metadata under `NAME`, the layer's arguments.
    struct Fixture {
        let file: SafetensorsFile
        let name: String

        init(_ fileName: String, _ name: String) throws {
            self.file = try Safetensors.read(path: fixturePath(fileName))
            self.name = name
        }

        /// A fresh copy of `NAME.key`: the tests set `.g` and `requiresGrad` on what they get.
        func tensor(_ key: String) throws -> Tensor {
            try file.tensor("\(name).\(key)").copy()
        }

        /// The layer's arguments as the script wrote them (`"stride=2 padding=1 bias=yes"`).
        var arguments: String? { file.metadata[name] }
    }

    // MARK: - Helpers

    /// Expects `actual` within float32 rounding of numpy's `expected`: every element within
    /// `1e-5 · (|expected| + max(1, max |expected|))`.
    static func expectMatches(
        _ actual: Tensor?, _ expected: Tensor, _ what: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let actual else {
            Issue.record("\(what): not computed", sourceLocation: sourceLocation)
            return
        }
        let scale = max(1, expected.values.map(abs).max() ?? 0)
        expectNear(
            actual, expected, relativeTolerance: 1e-5, absoluteTolerance: 1e-5 * scale, Comment(rawValue: what),
            sourceLocation: sourceLocation)
    }

    /// Runs `layer` on the fixture's `x` along `path` and expects numpy's `out`, `x.g` and, for
    /// each of `parameters` (by its name in the fixture, `w` or `b`), `NAME.w.g` or `NAME.b.g`.
    static func expectLayerMatchesNumPy(
        _ layer: any Layer, parameters: [String: Tensor], fixture: Fixture, path: Path,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let x = try fixture.tensor("x")
        let r = try fixture.tensor("out.g")
        if path == .autograd {
            x.requiresGrad = true
            for tensor in parameters.values { tensor.requiresGrad = true }
        }
        let out = layer.callAsFunction(x)
        expectMatches(out, try fixture.tensor("out"), "\(fixture.name): out", sourceLocation: sourceLocation)

        let gradient: (Tensor) -> Tensor?
        switch path {
        case .handWritten:
            #expect(out.isLeaf, "\(fixture.name): nothing should be recorded", sourceLocation: sourceLocation)
            out.g = r
            layer.backward()
            gradient = { $0.g }
        case .autograd:
            #expect(!out.isLeaf, "\(fixture.name): the forward recorded nothing", sourceLocation: sourceLocation)
            (out * r).sum().backward()
            gradient = { $0.grad }
        }
        expectMatches(gradient(x), try fixture.tensor("x.g"), "\(fixture.name): x.g", sourceLocation: sourceLocation)
        for (name, tensor) in parameters.sorted(by: { $0.key < $1.key }) {
            expectMatches(
                gradient(tensor), try fixture.tensor("\(name).g"), "\(fixture.name): \(name).g",
                sourceLocation: sourceLocation)
        }
    }

    /// Copies the values of `source` into `target` in place (both vectors of one length).
    static func assign(_ source: Tensor, to target: Tensor) {
        precondition(source.shape == target.shape && source.rank == 1, "assign: \(source.shape) to \(target.shape)")
        for (i, value) in source.values.enumerated() { target[i] = value }
    }

    /// The fixture's `NAME.pieces` (stored as I32) as codes.
    static func pieces(_ fixture: Fixture) throws -> [Int32] {
        try fixture.tensor("pieces").values.map { Int32($0) }
    }

    // MARK: - Conv2d

    struct ConvCase: Sendable, CustomTestStringConvertible {
        let name: String
        let stride: Int
        let padding: Int
        let bias: Bool

        var testDescription: String { name }
        var arguments: String { "stride=\(stride) padding=\(padding) bias=\(bias ? "yes" : "no")" }
    }

    static let convCases = [
        ConvCase(name: "k3_s1_p1", stride: 1, padding: 1, bias: true),  // (2, 3, 7, 5) -> (2, 4, 7, 5)
        ConvCase(name: "k3_s2_p0", stride: 2, padding: 0, bias: true),  // 1 channel; a column in no window
        ConvCase(name: "k5_s2_p2", stride: 2, padding: 2, bias: true),  // batch 1, 9x7
        ConvCase(name: "k1_s1_p0", stride: 1, padding: 0, bias: true),  // 1x1 kernel
        ConvCase(name: "k1_s2_p1", stride: 2, padding: 1, bias: true),  // 1x1: border outputs are the bias
        ConvCase(name: "k3_s1_p2_nobias", stride: 1, padding: 2, bias: false),  // 5x5 -> 7x7
        ConvCase(name: "k2x3_s2_p1", stride: 2, padding: 1, bias: true),  // a 2x3 kernel
    ]

    @Test("Conv2d: out, x.g, w.g and b.g as numpy's sliding windows", arguments: convCases, Path.allCases)
    func conv2d(_ testCase: ConvCase, path: Path) throws {
        let fixture = try Fixture("layers_conv2d.safetensors", testCase.name)
        #expect(fixture.arguments == testCase.arguments)
        let w = try fixture.tensor("w")
        let b = testCase.bias ? try fixture.tensor("b") : nil
        var parameters = ["w": w]
        if let b { parameters["b"] = b }
        let conv = Conv2d(w, b, stride: testCase.stride, padding: testCase.padding)
        #expect(conv.parameters.count == parameters.count)
        try Self.expectLayerMatchesNumPy(conv, parameters: parameters, fixture: fixture, path: path)
    }

    // MARK: - Pooling

    struct PoolCase: Sendable, CustomTestStringConvertible {
        let name: String
        let kernel: Int
        let stride: Int
        var padding = 0
        /// Whether the recorded path (autograd) is checked too.
        var runsRecorded = true
        /// An average pooling's `countIncludePad` (the fixture's cases ending in `_ex` leave it out).
        var countIncludePad = true

        var testDescription: String { name }
        var arguments: String {
            "kernel=\(kernel) stride=\(stride)" + (padding == 0 ? "" : " padding=\(padding)")
                + (countIncludePad ? "" : " exclude_pad")
        }
        /// `nil` where the stride is the kernel, so that the default is what runs.
        var strideArgument: Int? { stride == kernel ? nil : stride }
    }

    static let maxPoolCases = [
        PoolCase(name: "k2_s2", kernel: 2, stride: 2),  // (2, 3, 6, 5): the last column is in no window
        PoolCase(name: "k3_s2", kernel: 3, stride: 2),  // overlapping windows
        PoolCase(name: "ties_k2_s2", kernel: 2, stride: 2),  // small integers: many tied maxima
        PoolCase(name: "ties_k3_s2", kernel: 3, stride: 2),  // ties in overlapping windows
        PoolCase(name: "k3_s2_p1", kernel: 3, stride: 2, padding: 1),  // ResNet's stem
        PoolCase(name: "k2_s2_p1", kernel: 2, stride: 2, padding: 1),  // corner windows of one element
        PoolCase(name: "k5_s1_p2", kernel: 5, stride: 1, padding: 2),  // windows larger than the image
        PoolCase(name: "neg_k3_s1_p1", kernel: 3, stride: 1, padding: 1),  // negative: a zero padding would win
        PoolCase(name: "ties_k3_s2_p1", kernel: 3, stride: 2, padding: 1),
        // A window of -inf only: the gradient to its first element in the image. The recorded path's
        // max(1) sends it to the -inf padding before it (documented), so that path is not run.
        PoolCase(name: "neginf_k3_s2_p1", kernel: 3, stride: 2, padding: 1, runsRecorded: false),
    ]

    @Test(
        "MaxPool2d: out, and x.g to each window's first maximum (row-major), as numpy's argmax",
        arguments: maxPoolCases, Path.allCases)
    func maxPool2d(_ testCase: PoolCase, path: Path) throws {
        guard testCase.runsRecorded || path == .handWritten else { return }
        let fixture = try Fixture("layers_maxpool2d.safetensors", testCase.name)
        #expect(fixture.arguments == testCase.arguments)
        let pool = MaxPool2d(kernel: testCase.kernel, stride: testCase.strideArgument, padding: testCase.padding)
        try Self.expectLayerMatchesNumPy(pool, parameters: [:], fixture: fixture, path: path)
        if path == .handWritten {
            // The window offset of each maximum, -1 where it is tied.
            #expect(pool.pieces == (try Self.pieces(fixture)))
        }
    }

    static let avgPoolCases = [
        PoolCase(name: "k2", kernel: 2, stride: 2),  // (2, 3, 6, 5): the last column is in no window
        PoolCase(name: "k3_s1", kernel: 3, stride: 1),  // overlapping windows
        PoolCase(name: "k3_s1_p1", kernel: 3, stride: 1, padding: 1),  // the padding's zeros in each mean
        PoolCase(name: "k2_s2_p1", kernel: 2, stride: 2, padding: 1),
        PoolCase(name: "k5_s2_p2", kernel: 5, stride: 2, padding: 2),
        // The padding left out of each mean (count_include_pad=False): divided by the window's count.
        PoolCase(name: "k3_s1_p1_ex", kernel: 3, stride: 1, padding: 1, countIncludePad: false),
        PoolCase(name: "k2_s2_p1_ex", kernel: 2, stride: 2, padding: 1, countIncludePad: false),
        PoolCase(name: "k5_s2_p2_ex", kernel: 5, stride: 2, padding: 2, countIncludePad: false),
        PoolCase(name: "k2_ex", kernel: 2, stride: 2, countIncludePad: false),  // no padding to leave out
    ]

    @Test(
        "AvgPool2d: out, and x.g = out.g / k² (or / the window's count) from every window",
        arguments: avgPoolCases, Path.allCases)
    func avgPool2d(_ testCase: PoolCase, path: Path) throws {
        let fixture = try Fixture("layers_avgpool2d.safetensors", testCase.name)
        #expect(fixture.arguments == testCase.arguments)
        let pool = AvgPool2d(
            kernel: testCase.kernel, stride: testCase.strideArgument, padding: testCase.padding,
            countIncludePad: testCase.countIncludePad)
        try Self.expectLayerMatchesNumPy(pool, parameters: [:], fixture: fixture, path: path)
    }

    // MARK: - Flatten

    static let flattenCases = ["nchw", "ncl", "n1hw"]  // (2, 3, 4, 5), (3, 2, 5), (1, 1, 3, 3)

    @Test("Flatten: (n, d1, d2, …) -> (n, d1·d2·…), and x.g = out.g reshaped", arguments: flattenCases, Path.allCases)
    func flatten(_ name: String, path: Path) throws {
        let fixture = try Fixture("layers_flatten.safetensors", name)
        #expect(fixture.arguments == "flatten")
        try Self.expectLayerMatchesNumPy(Flatten(), parameters: [:], fixture: fixture, path: path)
    }

    // MARK: - BatchNorm

    struct BatchNormCase: Sendable, CustomTestStringConvertible {
        let name: String
        let isTraining: Bool

        var testDescription: String { name }
        var arguments: String { "training=\(isTraining ? "yes" : "no") eps=1e-05 momentum=0.1" }
    }

    static let batchNormCases = [
        BatchNormCase(name: "train_nc", isTraining: true),  // (8, 5)
        BatchNormCase(name: "train_nchw", isTraining: true),  // (3, 4, 5, 3)
        BatchNormCase(name: "train_nchw_n1", isTraining: true),  // (1, 2, 3, 5)
        BatchNormCase(name: "eval_nc", isTraining: false),  // (6, 5)
        BatchNormCase(name: "eval_nchw", isTraining: false),  // (2, 3, 4, 3)
    ]

    @Test(
        "BatchNorm: out, x.g, w.g, b.g, and the running statistics (unbiased variance) after one step",
        arguments: batchNormCases, Path.allCases)
    func batchNorm(_ testCase: BatchNormCase, path: Path) throws {
        let fixture = try Fixture("layers_batchnorm.safetensors", testCase.name)
        #expect(fixture.arguments == testCase.arguments)
        let features = try fixture.tensor("x").shape[1]
        let layer = BatchNorm(features: features)
        layer.isTraining = testCase.isTraining
        Self.assign(try fixture.tensor("w"), to: layer.w)
        Self.assign(try fixture.tensor("b"), to: layer.b)
        if !testCase.isTraining {
            // The given statistics, which evaluation uses and does not change.
            Self.assign(try fixture.tensor("running_mean"), to: layer.runningMean)
            Self.assign(try fixture.tensor("running_var"), to: layer.runningVar)
        }
        try Self.expectLayerMatchesNumPy(layer, parameters: ["w": layer.w, "b": layer.b], fixture: fixture, path: path)
        Self.expectMatches(layer.runningMean, try fixture.tensor("running_mean"), "\(testCase.name): running_mean")
        Self.expectMatches(layer.runningVar, try fixture.tensor("running_var"), "\(testCase.name): running_var")
    }

    // MARK: - Activations

    struct ActivationCase: Sendable, CustomTestStringConvertible {
        enum Kind: Sendable {
            case tanh, sigmoid, gelu, silu
            case hardtanh(min: Float, max: Float)
            case leakyReLU(slope: Float?)  // nil: the default slope
        }

        let name: String
        let kind: Kind

        var testDescription: String { name }
        var arguments: String {
            switch kind {
            case .tanh: "layer=Tanh"
            case .sigmoid: "layer=Sigmoid"
            case .gelu: "layer=GELU"
            case .silu: "layer=SiLU"
            case .hardtanh(let min, let max): "layer=Hardtanh min=\(min) max=\(max)"
            case .leakyReLU(let slope): "layer=LeakyReLU slope=\(slope ?? 0.01)"
            }
        }

        func makeLayer() -> any Layer {
            switch kind {
            case .tanh: Tanh()
            case .sigmoid: Sigmoid()
            case .gelu: GELU()
            case .silu: SiLU()
            case .hardtanh(let min, let max): Hardtanh(min: min, max: max)
            case .leakyReLU(let slope): slope.map { LeakyReLU(slope: $0) } ?? LeakyReLU()
            }
        }
    }

    static let activationCases = [
        ActivationCase(name: "tanh", kind: .tanh),
        ActivationCase(name: "sigmoid", kind: .sigmoid),
        ActivationCase(name: "leakyrelu_0.01", kind: .leakyReLU(slope: nil)),
        ActivationCase(name: "leakyrelu_0.2", kind: .leakyReLU(slope: 0.2)),
        ActivationCase(name: "gelu", kind: .gelu),  // exact: 0.5 x (1 + erf(x / √2))
        ActivationCase(name: "silu", kind: .silu),  // x sigmoid(x)
        ActivationCase(name: "hardtanh", kind: .hardtanh(min: -1, max: 1)),
        ActivationCase(name: "relu6", kind: .hardtanh(min: 0, max: 6)),
    ]

    @Test(
        "Tanh, Sigmoid, LeakyReLU, GELU, SiLU and Hardtanh: out and x.g, saturated ends included",
        arguments: activationCases, Path.allCases)
    func activation(_ testCase: ActivationCase, path: Path) throws {
        let fixture = try Fixture("layers_activations.safetensors", testCase.name)
        #expect(fixture.arguments == testCase.arguments)
        let layer = testCase.makeLayer()
        try Self.expectLayerMatchesNumPy(layer, parameters: [:], fixture: fixture, path: path)
        if let leaky = layer as? LeakyReLU, path == .handWritten {
            // 1 where x > 0, 0 where x < 0 (the fixture has no x within 1e-3 of 0).
            #expect(leaky.pieces == (try Self.pieces(fixture)))
        }
        if let hardtanh = layer as? Hardtanh, path == .handWritten {
            // 1 inside the bounds, 0 below, 2 above (no x within 1e-3 of a bound).
            #expect(hardtanh.pieces == (try Self.pieces(fixture)))
        }
    }

    // MARK: - The fixture files

    @Test("every case in the fixture files is one of the cases above")
    func everyCaseIsTested() throws {
        let tables = [
            "layers_conv2d.safetensors": Self.convCases.map(\.name),
            "layers_maxpool2d.safetensors": Self.maxPoolCases.map(\.name),
            "layers_avgpool2d.safetensors": Self.avgPoolCases.map(\.name),
            "layers_flatten.safetensors": Self.flattenCases,
            "layers_batchnorm.safetensors": Self.batchNormCases.map(\.name),
            "layers_activations.safetensors": Self.activationCases.map(\.name),
        ]
        for (file, names) in tables {
            let metadata = try Safetensors.read(path: fixturePath(file)).metadata
            #expect(metadata["written_by"] == "make_layer_fixtures.py", "\(file)")
            #expect(Set(metadata.keys).subtracting(["written_by"]) == Set(names), "\(file)")
        }
    }
}
