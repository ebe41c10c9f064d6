// Operations that autograd does not know, with the derivative their author gives: what
// `torch.autograd.Function` is to PyTorch. The forward runs with recording off and the result is
// recorded as one node, `Op.custom`; at `backward()` the author's derivative is asked for the
// inputs' gradients, which are checked against the inputs' shapes.

/// An operation with its own forward and derivative, recorded by autograd as one node (PyTorch's
/// `torch.autograd.Function`).
///
/// Mapping a tensor's values through a function autograd does not know (Foundation's `tanh` on
/// `values`) silently cuts the graph; an operation of this protocol keeps it whole. Apply it with
/// `Tensor.apply(_:_:)`; for an operation written inline there is
/// ``CustomOperation``.
///
/// For example softplus, `y = log(1 + eˣ)`, whose derivative is the sigmoid `σ(x) = 1 / (1 + e⁻ˣ)`:
///
/// ```swift
/// struct Softplus: DifferentiableOperation {
///     func forward(_ inputs: [Tensor]) -> Tensor {
///         (inputs[0].exp() + 1).log()  // y = log(1 + eˣ)
///     }
///     func backward(gradient: Tensor, inputs: [Tensor], output: Tensor) -> [Tensor?] {
///         [gradient * inputs[0].sigmoid()]  // ∂y/∂x = σ(x)
///     }
/// }
///
/// let x = Tensor([-1, 0, 2])
/// x.requiresGrad = true
/// let y = Tensor.apply(Softplus(), x)  // recorded as one node named "Softplus"
/// y.sum().backward()  // x.grad = σ(x) = [0.269, 0.5, 0.881]
/// ```
///
/// Check a new derivative against finite differences before trusting it: BackpropNetwork's
/// `finiteDifferences(of:withRespectTo:)` and `near(_:_:)` do it in a few lines.
public protocol DifferentiableOperation {
    /// The operation's name in messages and in the recorded graph (the explainer draws it); the
    /// type's name unless given.
    var name: String { get }

    /// Computes the output from `inputs`.
    ///
    /// Runs with autograd's recording off: whatever it computes is not recorded, only the result
    /// as a whole. It must not change its inputs in place.
    /// - Parameter inputs: the tensors given to `Tensor.apply(_:_:)`, in order.
    /// - Returns: the output, of any shape.
    func forward(_ inputs: [Tensor]) -> Tensor

    /// The gradient of the loss with respect to each input, given the gradient with respect to
    /// the output: the vector–Jacobian product `∂loss/∂inputᵢ = Σⱼ gradientⱼ · ∂outputⱼ/∂inputᵢ`.
    ///
    /// Runs during ``Tensor/backward()``, with recording off (so there are no second derivatives).
    /// - Parameters:
    ///   - gradient: `∂loss/∂output`, of the output's shape (possibly a non-contiguous view).
    ///   - inputs: the tensors the forward received, unchanged since.
    ///   - output: the forward's result.
    /// - Returns: one gradient per input, each of that input's shape, or `nil` for an input that
    ///   has no gradient (an index, a mask). Gradients for inputs that do not require gradients
    ///   are ignored, whatever their shape. A wrong count, or a wrong shape for an input that
    ///   requires gradients, stops the program naming the operation.
    func backward(gradient: Tensor, inputs: [Tensor], output: Tensor) -> [Tensor?]
}

extension DifferentiableOperation {
    /// The type's name: `Softplus` for `struct Softplus`.
    public var name: String { String(describing: Self.self) }
}

/// A ``DifferentiableOperation`` written inline, from a name and two closures.
///
/// ```swift
/// let swish = CustomOperation(
///     name: "swish",
///     forward: { inputs in inputs[0] * inputs[0].sigmoid() },  // y = x σ(x)
///     backward: { gradient, inputs, output in
///         let s = inputs[0].sigmoid()
///         return [gradient * (s + output * (1 - s))]  // ∂y/∂x = σ(x) + y (1 - σ(x))
///     })
/// let y = Tensor.apply(swish, x)
/// ```
public struct CustomOperation: DifferentiableOperation {
    /// The name in messages and in the recorded graph.
    public let name: String
    private let forwardBody: ([Tensor]) -> Tensor
    private let backwardBody: (_ gradient: Tensor, _ inputs: [Tensor], _ output: Tensor) -> [Tensor?]

    /// An operation named `name` that computes `forward` and differentiates as `backward` (see
    /// ``DifferentiableOperation/forward(_:)`` and
    /// ``DifferentiableOperation/backward(gradient:inputs:output:)`` for their contracts).
    public init(
        name: String, forward: @escaping ([Tensor]) -> Tensor,
        backward: @escaping (_ gradient: Tensor, _ inputs: [Tensor], _ output: Tensor) -> [Tensor?]
    ) {
        self.name = name
        self.forwardBody = forward
        self.backwardBody = backward
    }

    /// Calls the `forward` closure.
    public func forward(_ inputs: [Tensor]) -> Tensor { forwardBody(inputs) }

    /// Calls the `backward` closure.
    public func backward(gradient: Tensor, inputs: [Tensor], output: Tensor) -> [Tensor?] {
        backwardBody(gradient, inputs, output)
    }
}

extension Tensor {
    /// Applies a user's operation to `inputs`: runs its forward with recording off and, if
    /// autograd tracks an input, records the result as one node whose derivative is the
    /// operation's ``DifferentiableOperation/backward(gradient:inputs:output:)`` (PyTorch's
    /// `Function.apply`).
    ///
    /// The result is a new tensor object (viewing the forward's values), so a forward that
    /// returns one of its inputs does not turn that input into a recorded result. Inside
    /// ``GradMode/withNoGrad(_:)`` nothing is recorded.
    /// - Parameters:
    ///   - operation: the operation.
    ///   - inputs: its operands, in the order its forward and backward expect.
    /// - Returns: the forward's values.
    public static func apply(_ operation: some DifferentiableOperation, _ inputs: [Tensor]) -> Tensor {
        let output = GradMode.withNoGrad { operation.forward(inputs) }
        let result = Tensor(
            storage: output.storage, shape: output.shape, strides: output.strides, offset: output.offset)
        return result.recorded(.custom(operation), inputs: inputs)
    }

    /// Applies a user's operation to the inputs listed (see `apply(_:_:)` with an array).
    public static func apply(_ operation: some DifferentiableOperation, _ inputs: Tensor...) -> Tensor {
        apply(operation, inputs)
    }

    /// The operation's backward, checked: one gradient per input, each of its input's shape where
    /// the input requires gradients (the others are ignored, whatever their shape, as PyTorch's
    /// `Function` ignores them).
    /// - Precondition: otherwise stops naming the operation, the input and both shapes.
    static func checkedGradients(
        of operation: any DifferentiableOperation, gradient: Tensor, inputs: [Tensor], output: Tensor
    ) -> [Tensor?] {
        let gradients = operation.backward(gradient: gradient, inputs: inputs, output: output)
        precondition(
            gradients.count == inputs.count,
            "\(operation.name): backward returned \(gradients.count) gradients for \(inputs.count) inputs "
                + "(one per input, nil where there is none)")
        for (index, (input, inputGradient)) in zip(inputs, gradients).enumerated() {
            guard input.requiresGrad, let inputGradient, inputGradient.shape != input.shape else { continue }
            preconditionFailure(
                "\(operation.name): backward returned a gradient of shape \(inputGradient.shape) for input "
                    + "\(index) of shape \(input.shape)")
        }
        return gradients
    }
}
