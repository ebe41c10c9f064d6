/// A recorded operation: what produced a tensor, from which inputs (autograd's graph node).
final class GradFn {
    /// The operation, with whatever its derivative needs saved.
    let op: Op
    /// The operands, in the order the derivative table returns their gradients.
    let inputs: [Tensor]

    init(op: Op, inputs: [Tensor]) {
        self.op = op
        self.inputs = inputs
    }
}

/// The operations autograd knows how to differentiate (see `Derivatives.swift`).
enum Op {
    case placeholder
}
