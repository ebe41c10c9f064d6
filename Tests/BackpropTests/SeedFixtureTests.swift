import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// The seed's loss and gradients against results that numpy computed in float64
/// (`Fixtures/make_fixtures.py`), for two sets of shapes.
@Suite("The seed's program against numpy")
struct SeedFixtureTests {
    static let fixtures = ["seed_small.safetensors", "seed_wide.safetensors"]
    static let expectedNames = ["loss", "out", "x.g", "w1.g", "b1.g", "w2.g", "b2.g"]

    /// Expects every element of `actual` within `tolerance` of `expected`, relative to the larger
    /// of 1 and the expected tensor's largest magnitude.
    func expectClose(
        _ actual: Tensor, _ expected: Tensor, _ name: String, tolerance: Float = 1e-5,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(actual.shape == expected.shape, "\(name): shape", sourceLocation: sourceLocation)
        guard actual.shape == expected.shape else { return }
        let scale = max(1, expected.values.map(abs).max() ?? 0)
        var worst: (index: Int, error: Float) = (0, 0)
        for (index, (a, e)) in zip(actual.values, expected.values).enumerated() where abs(a - e) / scale > worst.error {
            worst = (index, abs(a - e) / scale)
        }
        #expect(
            worst.error < tolerance,
            "\(name): element \(worst.index) is \(actual.values[worst.index]), numpy says \(expected.values[worst.index])",
            sourceLocation: sourceLocation)
    }

    @Test(arguments: fixtures)
    func lossAndGradientsMatchNumPy(fixture: String) throws {
        let file = try Safetensors.read(path: fixturePath(fixture))
        let x = try file.tensor("x")
        let y = try file.tensor("y")
        let weights = SeedProgram.Weights(
            w1: try file.tensor("w1"), b1: try file.tensor("b1"), w2: try file.tensor("w2"), b2: try file.tensor("b2"))
        let result = SeedProgram(x: x, y: y, weights: weights).run()
        expectClose(result.loss.reshape([1]), try file.tensor("loss"), "loss")
        expectClose(result.out, try file.tensor("out"), "out")
        for (name, gradient) in result.gradients {
            expectClose(gradient, try file.tensor(name), name)
        }
    }

    @Test(arguments: fixtures)
    func commandLineSavesWhatNumPyComputes(fixture: String) throws {
        try withTemporaryFolder { folder in
            let saved = folder + "/gradients.safetensors"
            let path = fixturePath(fixture)
            let run = try runBackprop(["seed", "--tensors", path, "--init", path, "--save", saved, "--json"])
            #expect(run.status == 0, "stderr: \(run.standardError)")
            let expected = try Safetensors.read(path: path)
            let written = try Safetensors.read(path: saved)
            for name in Self.expectedNames {
                expectClose(try written.tensor(name), try expected.tensor(name), name)
            }
            // The JSON names the same loss and each gradient's shape and norm.
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(run.standardOutput.utf8)) as? [String: Any])
            let loss = try #require(object["loss"] as? Double)
            #expect(abs(Float(loss) - (try expected.tensor("loss")).item()) < 1e-5)
            let gradients = try #require(object["gradients"] as? [String: [String: Any]])
            #expect(Set(gradients.keys) == ["x.g", "w1.g", "b1.g", "w2.g", "b2.g"])
            let w1Norm = try #require(gradients["w1.g"]?["norm"] as? Double)
            #expect(abs(w1Norm - (try expected.tensor("w1.g")).norm()) < 1e-5 * max(1, w1Norm))
            #expect(object["forward_ms"] is Double && object["backward_ms"] is Double)
        }
    }

    @Test func commandLineRejectsBadFilesWithOneLine() throws {
        try withTemporaryFolder { folder in
            let small = fixturePath("seed_small.safetensors")
            let wide = fixturePath("seed_wide.safetensors")
            let cases: [([String], String)] = [
                (["seed", "--tensors", folder + "/missing.safetensors"], "missing.safetensors"),
                (["seed", "--tensors", small, "--init", wide], "w1"),  // m = 10 against w1 (3, 11)
                (["seed", "--tensors", small, "--save", folder + "/no/such/folder/out.safetensors"], "does not exist"),
                (["seed", "--hidden", "0"], "--hidden"),
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
}
