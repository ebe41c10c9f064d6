import Testing
@testable import Backprop

@Test func tensorStoresShapeAndValues() {
    let t = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
    #expect(t.shape == [2, 3])
    #expect(t[1, 2] == 6)
}
