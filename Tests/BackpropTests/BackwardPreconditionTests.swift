import Testing

@testable import BackpropCore
@testable import BackpropNetwork

/// A layer of your own that returns a copy of its input: the layer before it never gets `out.g`.
final class CopyingLayer: Layer {
    private(set) var inp: Tensor!
    private(set) var out: Tensor!
    var parameters: [Tensor] { [] }
    func callAsFunction(_ inp: Tensor) -> Tensor {
        self.inp = inp.copy()  // not the very tensor passed in
        out = self.inp * 1
        return out
    }
    func backward() { inp.g = out.g }
}

/// `backward()` before a forward pass, or without the `out.g` the next layer writes, stops with
/// a message naming the layer and what to do (exit tests run each body in a child process).
@Suite("Backward before forward")
struct BackwardPreconditionTests {
    /// The standard error of a body that must stop.
    static func stopMessage(_ result: ExitTest.Result?) -> String {
        String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    }

    @Test func aLayerBeforeAnyForwardPassSaysToCallItFirst() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Lin(Tensor.zeros(3, 2), Tensor.zeros(2)).backward()
        }
        let message = Self.stopMessage(result)
        #expect(
            message.contains("Lin.backward(): no forward pass yet; call the layer on an input first"), "\(message)")
    }

    @Test func everyBuiltInLayerSaysSo() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            BatchNorm(features: 2).backward()
        }
        #expect(Self.stopMessage(result).contains("BatchNorm.backward(): no forward pass yet"))
        let pool = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            MaxPool2d(kernel: 2).backward()
        }
        #expect(Self.stopMessage(pool).contains("MaxPool2d.backward(): no forward pass yet"))
    }

    @Test func aLayerWithoutOutGSaysWhoWritesIt() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let relu = ReLU()
            _ = relu(Tensor([[1, -1]]))
            relu.backward()
        }
        let message = Self.stopMessage(result)
        #expect(
            message.contains("ReLU.backward(): out.g is not set; the layer after this one (or the loss) writes it"),
            "\(message)")
    }

    @Test func aLossBeforeAnyForwardPassSaysToCallItFirst() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Mse().backward()
        }
        let message = Self.stopMessage(result)
        #expect(
            message.contains("Mse.backward(): no forward pass yet; call the loss on an output and targets first"),
            "\(message)")
    }

    @Test func aModelBeforeAnyForwardPassSaysToCallItFirst() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            Model(Tensor.zeros(3, 2), Tensor.zeros(2), Tensor.zeros(2, 1), Tensor.zeros(1)).backward()
        }
        let message = Self.stopMessage(result)
        #expect(
            message.contains("Model.backward(): no forward pass yet; call the model on inputs and targets first"),
            "\(message)")
    }

    @Test func aModelNamesTheLayerWhoseOutGWasNotSet() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let model = Model(
                layers: [
                    Lin(Tensor.ones(3, 2), Tensor.zeros(2)), CopyingLayer(), Lin(Tensor.ones(2, 1), Tensor.zeros(1)),
                ],
                loss: Mse())
            _ = model(Tensor.ones(4, 3), Tensor.zeros(4))
            model.backward()
        }
        let message = Self.stopMessage(result)
        #expect(
            message.contains(
                "Model.backward(): layer 0 (Lin): out.g was not set by layer 1 (CopyingLayer)'s backward()"),
            "\(message)")
    }

    @Test func aForwardThenBackwardStillRuns() {
        let model = Model(Tensor.ones(3, 2), Tensor.zeros(2), Tensor.ones(2, 1), Tensor.zeros(1))
        _ = model(Tensor.ones(4, 3), Tensor.zeros(4))
        model.backward()
        #expect(model.parameters.allSatisfy { $0.g != nil })
    }
}
