import Backprop
import Foundation

// Operations autograd does not know, with their derivatives: what `torch.autograd.Function` is to
// PyTorch. Mapping a tensor's values through Foundation's `sin` would cut the autograd graph;
// `Tensor.apply` records the operation as one node, whose derivative is the one given here.

/// `y = sin(x)`, elementwise, computed by Foundation on the values: the pattern for an operation
/// of your own (the tensor API has its own `x.sin()`, which gives the same values).
struct Sine: DifferentiableOperation {
    func forward(_ inputs: [Tensor]) -> Tensor {
        let x = inputs[0]
        return Tensor(shape: x.shape, values: x.values.map { Foundation.sin($0) })
    }

    func backward(gradient: Tensor, inputs: [Tensor], output: Tensor) -> [Tensor?] {
        let x = inputs[0]
        let cosine = Tensor(shape: x.shape, values: x.values.map { Foundation.cos($0) })
        return [gradient * cosine]  // ∂y/∂x = cos(x)
    }
}

/// Checks each custom operation's derivative against finite differences.
///
/// For a random weighting `c` of the output, `loss = Σ c · operation(inputs)`: autograd gives
/// `∂loss/∂input` through the operation's `backward`, and `finiteDifferences` estimates it from
/// the loss alone (summed in Double); `near` compares the two, element by element.
func checkCustomOperations(_ checks: inout Checks) {
    var generator = RandomGenerator(seed: 7)
    let x = Tensor.randn([4, 5], generator: &generator)
    checkDerivative(of: Sine(), at: [x], generator: &generator, &checks)

    // `r = √(a² + b²)`, elementwise, with two inputs, written inline: its derivative is given as
    // `a / r` and `b / r` rather than taken through the square root.
    let hypotenuse = CustomOperation(
        name: "hypot",
        forward: { inputs in (inputs[0] * inputs[0] + inputs[1] * inputs[1]).sqrt() },
        backward: { gradient, inputs, output in
            [gradient * inputs[0] / output, gradient * inputs[1] / output]  // ∂r/∂a = a / r, ∂r/∂b = b / r
        })
    // Checked away from a = b = 0, where r has no derivative.
    let a = Tensor.rand([3, 4], generator: &generator) + 0.5
    let b = Tensor.randn([3, 4], generator: &generator)
    checkDerivative(of: hypotenuse, at: [a, b], generator: &generator, &checks)
}

/// Compares autograd's gradient of `Σ c · operation(inputs)` with finite differences, for each
/// input.
func checkDerivative(
    of operation: some DifferentiableOperation, at inputs: [Tensor], generator: inout RandomGenerator,
    _ checks: inout Checks
) {
    let output = GradMode.withNoGrad { Tensor.apply(operation, inputs) }
    let c = Tensor.randn(output.shape, generator: &generator)  // a random weighting of the output

    // Autograd, through the operation's backward.
    for input in inputs { input.requiresGrad = true }
    (Tensor.apply(operation, inputs) * c).sum().backward()

    // Finite differences of the same loss, summed in Double.
    let loss = {
        let y = Tensor.apply(operation, inputs)
        return zip(y.values, c.values).reduce(0.0) { sum, pair in sum + Double(pair.0) * Double(pair.1) }
    }
    for (index, input) in inputs.enumerated() {
        let estimates = finiteDifferences(of: loss, withRespectTo: input)
        let expected = Tensor(shape: input.shape, values: estimates.map { Float($0) })
        let report = near(input.grad!, expected, relativeTolerance: 1e-3, absoluteTolerance: 1e-4)
        checks.expect(
            report.isNear, "custom operation \(operation.name): input \(index)'s gradient against finite differences",
            detail: "\(report)")
    }
}
