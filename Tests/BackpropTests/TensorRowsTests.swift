import Testing

@testable import BackpropCore

// Taking rows, the one way every part of Backprop cuts a batch or the first rows of a data set.

@Suite("Rows of a tensor")
struct TensorRowsTests {
    @Test("a range of rows is a view of those rows: values, shape, shared storage")
    func rangeIsAView() {
        let x = Tensor(shape: [4, 3], values: (0..<12).map(Float.init))
        let middle = x.rows(1..<3)
        #expect(middle.shape == [2, 3])
        #expect(middle.values == [3, 4, 5, 6, 7, 8])
        #expect(middle.isContiguous)
        x[1, 0] = 100  // the view sees a change to the tensor it views
        #expect(middle[0, 0] == 100)
        #expect(x.rows(4..<4).shape == [0, 3])
        // Rows of a transposed view: columns of the original.
        #expect(x.t().rows(0..<2).values == [0, 100, 6, 9, 1, 4, 7, 10])
    }

    @Test("gathered rows are copies in the order given, repeats allowed")
    func gatherCopies() {
        let x = Tensor(shape: [3, 2], values: [1, 2, 3, 4, 5, 6])
        let picked = x.rows([2, 0, 2])
        #expect(picked.shape == [3, 2])
        #expect(picked.values == [5, 6, 1, 2, 5, 6])
        picked[0, 0] = -1
        #expect(x[2, 0] == 5)
        let vector = Tensor([10, 20, 30])
        #expect(vector.rows([1, 1]).values == [20, 20])
        #expect(vector.rows(1..<3).values == [20, 30])
    }

    @Test(
        "a gather (rows fetched ahead, on every core or in the background) copies x[indices[r], k], bit for bit",
        arguments: [(1, 1), (3, 5), (64, 784), (200, 784), (97, 13)])
    func gatherIsTheFormula(rows: Int, rowSize: Int) {
        var generator = RandomGenerator(seed: UInt64(rows * 1000 + rowSize))
        let x = uniform([500, rowSize], in: -1...1, generator: &generator)
        let indices = (0..<rows).map { _ in Int(generator.nextUniform() * 500) % 500 }
        let before = x.values
        indices.withUnsafeBufferPointer { Tensor.prefetchRows(x, $0, lines: 2) }  // changes nothing
        #expect(x.values == before)
        let destination = Tensor(uninitializedShape: [rows, rowSize])
        indices.withUnsafeBufferPointer { Tensor.gatherRows(x, $0, into: destination) }
        let expected = indices.flatMap { index in before[(index * rowSize)..<((index + 1) * rowSize)] }
        #expect(destination.values.map(\.bitPattern) == expected.map(\.bitPattern))
        // In the background, in pieces of about 8 K floats, each fetching ahead into the next.
        let background = Tensor(uninitializedShape: [rows, rowSize])
        indices.withUnsafeBufferPointer { indices in
            Tensor.startGatheringRows(x, indices.baseAddress!, count: rows, into: background).finish()
        }
        #expect(background.values.map(\.bitPattern) == expected.map(\.bitPattern))
    }

    @Test("autograd: a range of rows and a gather, against finite differences")
    func derivatives() {
        var generator = RandomGenerator(seed: 12)
        let x = uniform([5, 3], in: -1...1, generator: &generator)
        expectGradientsMatchFiniteDifferences([x]) { inputs in inputs[0].rows(1..<4) }
        expectGradientsMatchFiniteDifferences([x]) { inputs in inputs[0].rows([4, 0, 4, 2]) }
        expectGradientsMatchFiniteDifferences([x]) { inputs in inputs[0].t().rows(1..<3) }
    }
}
