import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// Reading x, y and w1, b1, w2, b2, … from a safetensors file, as `gradcheck --tensors --init`
// does: every missing name and wrong shape is a one-line error naming the file and the tensor.

/// Writes `tensors` to a safetensors file in a new folder and runs `body` on what reading it gives.
private func withFile<R>(_ tensors: [String: Tensor], _ body: (SafetensorsFile) throws -> R) throws -> R {
    try withTemporaryFolder { folder in
        let path = folder + "/model.safetensors"
        try Safetensors.write(tensors, to: path)
        return try body(try Safetensors.read(path: path))
    }
}

@Suite("Safetensors files holding the seed's data and weights")
struct SafetensorsModelTests {
    @Test("the seed's fixture gives x, y and two Lin layers of the stored shapes")
    func readsTheFixture() throws {
        let file = try Safetensors.read(path: fixturePath("seed_small.safetensors"))
        let (x, y) = try file.inputsAndTargets()
        #expect(x.shape == [16, 10] && y.shape == [16])
        let linears = try file.linearWeights(inputs: 10)
        #expect(linears.map(\.w.shape) == [[10, 5], [5, 1]])
        #expect(linears.map(\.b.shape) == [[5], [1]])
        #expect(linears[0].w.values == (try file.tensor("w1")).values)
    }

    @Test("y stored as a column (n, 1) is read as (n)")
    func columnTargets() throws {
        let (x, y) = try withFile(["x": Tensor.zeros(3, 2), "y": Tensor([[1], [2], [3]])]) { try $0.inputsAndTargets() }
        #expect(x.shape == [3, 2])
        #expect(y.shape == [3] && y.values == [1, 2, 3])
    }

    @Test("missing or misshapen x and y are named, with the shapes expected and found")
    func badInputs() throws {
        try withFile(["y": Tensor([1, 2])]) { file in
            expectDataError(containing: ["model.safetensors: no tensor 'x'; the file holds y"]) {
                try file.inputsAndTargets()
            }
        }
        try withFile(["x": Tensor([1, 2]), "y": Tensor([1, 2])]) { file in
            expectDataError(containing: ["tensor 'x' has shape [2], expected a matrix (n, m)"]) {
                try file.inputsAndTargets()
            }
        }
        try withFile(["x": Tensor.zeros(3, 2), "y": Tensor([1, 2])]) { file in
            expectDataError(containing: ["tensor 'y' has shape [2], expected [3] (one target per row of x [3, 2])"]) {
                try file.inputsAndTargets()
            }
        }
    }

    @Test("a deeper chain is read up to the last wK, and other tensors are ignored")
    func deeperChain() throws {
        let tensors = [
            "w1": Tensor.zeros(4, 3), "b1": Tensor.zeros(3), "w2": Tensor.zeros(3, 2), "b2": Tensor.zeros(2),
            "w3": Tensor.zeros(2, 1), "b3": Tensor.zeros(1), "x": Tensor.zeros(5, 4), "w1.g": Tensor.zeros(4, 3),
        ]
        let linears = try withFile(tensors) { try $0.linearWeights(inputs: 4) }
        #expect(linears.map(\.w.shape) == [[4, 3], [3, 2], [2, 1]])
    }

    @Test("weights that do not chain are named, with the width expected")
    func badWeights() throws {
        let good = ["w1": Tensor.zeros(4, 3), "b1": Tensor.zeros(3), "w2": Tensor.zeros(3, 1), "b2": Tensor.zeros(1)]
        func expectError(
            _ change: [String: Tensor?], _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation
        ) throws {
            var tensors = good
            for (name, tensor) in change { tensors[name] = tensor }
            try withFile(tensors) { file in
                expectDataError(containing: ["model.safetensors", fragment], sourceLocation: sourceLocation) {
                    try file.linearWeights(inputs: 4)
                }
            }
        }
        try expectError(["w1": nil], "no tensor 'w1'")
        try expectError(
            ["w1": Tensor.zeros(5, 3)], "tensor 'w1' has shape [5, 3], expected [4, n] (the inputs' width is 4)")
        try expectError(
            ["w2": Tensor.zeros(2, 1)], "tensor 'w2' has shape [2, 1], expected [3, n] (the width of w1 is 3)")
        try expectError(["b1": nil], "no tensor 'b1'")
        try expectError(["b2": Tensor.zeros(1, 1)], "tensor 'b2' has shape [1, 1], expected [1]")
        try expectError(["b3": Tensor.zeros(1)], "tensor 'b3' has no 'w3' to go with it")
    }
}
