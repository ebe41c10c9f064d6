import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData

// `matmul` beyond two matrices (vectors, batches, broadcast batches) against numpy
// (`Fixtures/make_matmul_fixtures.py`: `np.matmul` in float64, its gradients exact from one-hot
// operands), on every kernel route, with the operands in three layouts.

@Suite("Matrix products of vectors and batches")
struct MatMulBatchedTests {
    /// The fixture's case names, from its metadata.
    static let cases: [String] = {
        guard let file = try? Safetensors.read(path: fixturePath("matmul_batched.safetensors")) else { return [] }
        return file.metadata.keys.filter { $0 != "format" }.sorted()
    }()

    /// How the operands are laid out in memory (the values are the same).
    enum Layout: String, CaseIterable, Sendable {
        /// Row-major, as read from the file.
        case contiguous
        /// Each matrix column-major: a transposed view of a copy of its transpose.
        case columnMajor = "column-major"
        /// Every dimension's stride reversed, so the matrices are neither row- nor column-major.
        case reversed

        func arrange(_ tensor: Tensor) -> Tensor {
            switch self {
            case .contiguous: return tensor
            case .columnMajor:
                return tensor.rank < 2 ? tensor : tensor.transposedMatrices().contiguous().transposedMatrices()
            case .reversed:
                let reverse = Array((0..<tensor.rank).reversed())
                return tensor.permute(reverse).contiguous().permute(reverse)
            }
        }
    }

    @Test("values and both gradients agree with numpy", arguments: cases, Layout.allCases)
    func agreesWithNumpy(name: String, layout: Layout) throws {
        let file = try Safetensors.read(path: fixturePath("matmul_batched.safetensors"))
        let expectedOut = try file.tensor("\(name).out")
        #expect(file.metadata[name]?.isEmpty == false)
        for kernel in MatMulKernel.allCases {
            let a = layout.arrange(try file.tensor("\(name).a").copy())
            let b = layout.arrange(try file.tensor("\(name).b").copy())
            a.requiresGrad = true
            b.requiresGrad = true
            let out = a.matmul(b, kernel: kernel)
            let label = "\(name), \(layout.rawValue), kernel \(kernel)"
            #expect(out.shape == expectedOut.shape, "\(label)")
            expectNear(out, expectedOut, relativeTolerance: 1e-5, absoluteTolerance: 1e-6, "\(label): out")
            (out * (try file.tensor("\(name).out.g"))).sum().backward()
            for (operand, key) in [(a, "a"), (b, "b")] {
                let expected = try file.tensor("\(name).\(key).g")
                guard let gradient = operand.grad else {
                    Issue.record("\(label): \(key) got no .grad")
                    continue
                }
                #expect(gradient.shape == expected.shape, "\(label): \(key).g")
                expectNear(gradient, expected, relativeTolerance: 1e-5, absoluteTolerance: 1e-6, "\(label): \(key).g")
            }
        }
    }

    @Test("the fixture covers vectors, batches and broadcasting")
    func fixtureHasCases() {
        #expect(Self.cases.count == 12)
        #expect(Self.cases.contains("broadcast_both") && Self.cases.contains("vector_times_vector"))
    }

    @Test("a batch of products equals the products one at a time, for any thread count")
    func batchEqualsLoop() {
        var generator = RandomGenerator(seed: 31)
        let a = uniform([5, 40, 70], in: -1...1, generator: &generator)
        let b = uniform([70, 30], in: -1...1, generator: &generator)
        let before = Parallel.workers
        defer { Parallel.setWorkers(before) }
        Parallel.setWorkers(1)
        let batched = a • b
        Parallel.setWorkers(2)
        #expect((a • b).values == batched.values)
        for i in 0..<5 {
            let one = a.reshape([5, 2800]).rows(i..<(i + 1)).reshape([40, 70]) • b
            #expect(Array(batched.values[(i * 1200)..<((i + 1) * 1200)]) == one.values, "matrix \(i)")
        }
    }

    @Test(
        "shapes that cannot be multiplied stop, naming both",
        arguments: [
            ([2, 3, 4], [5, 6], "4 ≠ 5"), ([2, 3, 4], [3, 4, 5], "cannot be broadcast"), ([3], [4], "3 ≠ 4"),
            ([], [3, 3], "one dimension or more"),
        ] as [([Int], [Int], String)])
    func refusesShapes(left: [Int], right: [Int], words: String) async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { [left, right] in
            _ = Tensor.zeros(left) • Tensor.zeros(right)
        }
        let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(message.contains("\(left)") && message.contains("\(right)") && message.contains(words), "\(message)")
    }
}
