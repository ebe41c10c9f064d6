import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

// Each tensor operation against values computed by hand (in the comments).

@Suite("Tensor operations")
struct TensorTests {
    @Test func storesShapeAndValuesRowMajor() {
        let t = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        #expect(t.shape == [2, 3])
        #expect(t.count == 6)
        #expect(t[0, 2] == 3)
        #expect(t[1, 0] == 4)
        #expect(t.values == [1, 2, 3, 4, 5, 6])
    }

    @Test func addsSameShapes() {
        let a = Tensor([[1, 2], [3, 4]])
        let b = Tensor([[10, 20], [30, 40]])
        #expect((a + b).values == [11, 22, 33, 44])
        #expect((b - a).values == [9, 18, 27, 36])
        #expect((a * b).values == [10, 40, 90, 160])
        #expect((b / a).values == [10, 10, 10, 10])
    }

    @Test func broadcastsABiasRowOverEveryRow() {
        let x = Tensor([[1, 2, 3], [4, 5, 6]])  // (2, 3)
        let b = Tensor([10, 20, 30])  // (3)
        let sum = x + b
        #expect(sum.shape == [2, 3])
        #expect(sum.values == [11, 22, 33, 14, 25, 36])
    }

    @Test func broadcastsAColumnOverEveryColumn() {
        let x = Tensor([[1, 2, 3], [4, 5, 6]])  // (2, 3)
        let c = Tensor([[10], [100]])  // (2, 1)
        #expect((x * c).values == [10, 20, 30, 400, 500, 600])
        #expect((c - x).values == [9, 8, 7, 96, 95, 94])
    }

    @Test func broadcastsColumnAgainstVectorIntoASquare() {
        // The trap mse's squeeze() avoids: (n, 1) - (n) is (n, n), not (n).
        let output = Tensor([[1], [2], [3]])  // (3, 1)
        let target = Tensor([1, 2, 3])  // (3)
        let difference = output - target
        #expect(difference.shape == [3, 3])
        // difference[i, j] = output[i] - target[j]
        #expect(difference.values == [0, -1, -2, 1, 0, -1, 2, 1, 0])
        #expect((output.squeeze() - target).values == [0, 0, 0])
    }

    @Test func broadcastsOverLeadingDimensions() {
        let a = Tensor(shape: [2, 1, 3], values: [1, 2, 3, 4, 5, 6])
        let b = Tensor(shape: [2, 1], values: [10, 20])
        let sum = a + b  // (2, 2, 3): sum[i, j, k] = a[i, 0, k] + b[j, 0]
        #expect(sum.shape == [2, 2, 3])
        #expect(sum.values == [11, 12, 13, 21, 22, 23, 14, 15, 16, 24, 25, 26])
    }

    @Test func combinesWithScalars() {
        let a = Tensor([1, -2, 4])
        #expect((a + 1).values == [2, -1, 5])
        #expect((1 + a).values == [2, -1, 5])
        #expect((a - 1).values == [0, -3, 3])
        #expect((1 - a).values == [0, 3, -3])
        #expect((a * 2).values == [2, -4, 8])
        #expect((2 * a).values == [2, -4, 8])
        #expect((a / 2).values == [0.5, -1, 2])
        #expect((4 / a).values == [4, -2, 1])
        #expect((-a).values == [-1, 2, -4])
        #expect((a ** 2).values == [1, 4, 16])
        #expect(a.squared().values == [1, 4, 16])
    }

    @Test func dividesExactlyLikeNumPy() {
        // x / 255 is a true division: 1/255 * 3 differs from 3/255 in the last bit.
        let pixels = Tensor([3, 7, 254])
        #expect((pixels / 255).values == [Float(3) / 255, Float(7) / 255, Float(254) / 255])
    }

    @Test func clampsAndMasks() {
        let a = Tensor([-1.5, 0, 2])
        #expect(a.clampMin(0).values == [0, 0, 2])
        #expect(relu(a).values == [0, 0, 2])
        #expect((a > 0).float().values == [0, 0, 1])
        #expect((a < 0).values == [1, 0, 0])
    }

    @Test func squeezesAndUnsqueezes() {
        let column = Tensor(shape: [3, 1], values: [1, 2, 3])
        #expect(column.squeeze().shape == [3])
        #expect(column.squeeze(1).shape == [3])
        #expect(column.squeeze(0).shape == [3, 1])  // size 3 is kept, as in PyTorch
        #expect(column.squeeze(-1).shape == [3])
        let vector = Tensor([1, 2, 3])
        #expect(vector.unsqueeze(-1).shape == [3, 1])
        #expect(vector.unsqueeze(0).shape == [1, 3])
        #expect(vector.unsqueeze(-1).values == [1, 2, 3])
        #expect(Tensor(shape: [2, 1, 3], values: Array(repeating: 0, count: 6)).squeeze().shape == [2, 3])
    }

    @Test func transposesWithoutCopying() {
        let a = Tensor([[1, 2, 3], [4, 5, 6]])
        let t = a.t()
        #expect(t.shape == [3, 2])
        #expect(t.storage === a.storage)
        #expect(!t.isContiguous)
        #expect(t.values == [1, 4, 2, 5, 3, 6])
        #expect(t[2, 1] == 6)
        #expect(t.t().values == a.values)
    }

    @Test func reshapesInferringOneSize() {
        let a = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
        #expect(a.reshape(3, -1).shape == [3, 2])
        #expect(a.reshape([6]).values == [1, 2, 3, 4, 5, 6])
        #expect(a.t().reshape([6]).values == [1, 4, 2, 5, 3, 6])
    }

    @Test func sumsAlongDimensions() {
        let a = Tensor([[1, 2, 3], [4, 5, 6]])
        #expect(a.sum(0).values == [5, 7, 9])
        #expect(a.sum(0).shape == [3])
        #expect(a.sum(1).values == [6, 15])
        #expect(a.sum(-1).values == [6, 15])
        #expect(a.sum(0, keepDim: true).shape == [1, 3])
        #expect(a.sum().item() == 21)
        #expect(a.sum().shape == [])
        #expect(a.mean().item() == 3.5)
        #expect(a.mean(1).values == [2, 5])
        #expect(a.t().sum(0).values == [6, 15])
    }

    @Test func findsMaximaAndLogSumExp() {
        let a = Tensor([[1, 5, 3], [7, 2, 7]])
        #expect(a.max(1).values == [5, 7])
        #expect(a.argmax(1) == [1, 0])
        #expect(a.max(0).values == [7, 5, 7])
        // log(e^1 + e^5 + e^3) = 5 + log(e^-4 + 1 + e^-2)
        let expected = Float(5 + log(exp(-4.0) + 1 + exp(-2.0)))
        #expect(abs(a.logSumExp(1).values[0] - expected) < 1e-6)
        // Large values do not overflow: log(e^1000 + e^1000) = 1000 + log 2.
        let huge = Tensor([[1000, 1000]])
        #expect(abs(huge.logSumExp(1).item() - Float(1000 + log(2.0))) < 1e-3)
    }

    @Test func createsTensors() {
        #expect(Tensor.zeros(2, 3).values == [0, 0, 0, 0, 0, 0])
        #expect(Tensor.ones(2).values == [1, 1])
        #expect(Tensor.full([2], 7).values == [7, 7])
        #expect(Tensor(5).shape == [])
        #expect(Tensor(5).item() == 5)
    }

    @Test func describesLikePyTorch() {
        let a = Tensor([[1, 2], [3, 4]])
        #expect(a.description == "tensor([[1.0000, 2.0000], [3.0000, 4.0000]], shape: [2, 2])")
        let long = Tensor((0..<10).map(Float.init))
        #expect(long.preview() == "[0.0000, 1.0000, 2.0000, ..., 7.0000, 8.0000, 9.0000]")
    }
}
