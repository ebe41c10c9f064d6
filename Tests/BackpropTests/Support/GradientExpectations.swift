import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// A tensor of the given shape with values drawn uniformly from `range`, from `generator`.
func uniform(_ shape: [Int], in range: ClosedRange<Float>, generator: inout RandomGenerator) -> Tensor {
    let count = shape.reduce(1, *)
    let width = Double(range.upperBound - range.lowerBound)
    let values = (0..<count).map { _ in range.lowerBound + Float(generator.nextUniform() * width) }
    return Tensor(shape: shape, values: values)
}

/// `Σ_i y_i · weights_i`, accumulated in Double: a scalar loss whose gradient with respect to `y`
/// is `weights`, so that every element of an operation's output counts, each differently.
func weightedSum(_ y: Tensor, _ weights: Tensor) -> Double {
    precondition(y.shape == weights.shape, "weightedSum: shapes \(y.shape) and \(weights.shape)")
    let values = y.values
    let factors = weights.values
    var total = 0.0
    for i in values.indices { total += Double(values[i]) * Double(factors[i]) }
    return total
}

/// Expects autograd's gradient of an operation to match central finite differences, for every
/// input and every element.
///
/// The loss is `Σ f(inputs) · r`, with `r` a fixed random tensor of the output's shape: autograd
/// differentiates it from `(f(inputs) * r).sum()`, finite differences from the same sum in
/// Double. The inputs' `requiresGrad` is set here.
/// - Parameters:
///   - inputs: the operands (contiguous), each perturbed by finite differences.
///   - relativeTolerance, absoluteTolerance: of `.grad` against the finite differences.
///   - f: the operation under test.
func expectGradientsMatchFiniteDifferences(
    _ inputs: [Tensor], relativeTolerance: Float = 2e-3, absoluteTolerance: Float = 2e-4,
    _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
    _ f: ([Tensor]) -> Tensor
) {
    for input in inputs {
        input.requiresGrad = true
        input.zeroGrad()
    }
    let output = f(inputs)
    var generator = RandomGenerator(seed: 99)
    let weights = uniform(output.shape, in: -1...1, generator: &generator)
    (output * weights).sum().backward()
    for (k, input) in inputs.enumerated() {
        let estimates = finiteDifferences(of: { weightedSum(f(inputs), weights) }, withRespectTo: input)
        guard let gradient = input.grad else {
            Issue.record("\(comment.map { "\($0): " } ?? "")input \(k) got no .grad", sourceLocation: sourceLocation)
            continue
        }
        #expect(gradient.shape == input.shape, sourceLocation: sourceLocation)
        let label = "\(comment.map { "\($0), " } ?? "")input \(k) of shape \(input.shape)"
        expectNear(
            gradient, estimates, relativeTolerance: relativeTolerance, absoluteTolerance: absoluteTolerance,
            Comment(rawValue: label), sourceLocation: sourceLocation)
    }
}
