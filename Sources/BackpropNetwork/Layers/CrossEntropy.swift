import BackpropCore
import Foundation

// Softmax cross-entropy, as the next lesson ("minibatch training") builds it:
//
//   def log_softmax(x): return x - x.logsumexp(-1, keepdim=True)
//   def nll(input, target): return -input[range(target.shape[0]), target].mean()
//   loss = nll(log_softmax(pred), y_train)
//
// Targets are class indices stored as Float in a tensor `(n)`, as the seed stores `yTrain`, so
// that `CrossEntropy` keeps the `Loss` protocol's shape: `loss(inp, targ)`.

/// The logarithm of the softmax along the last dimension: `log_softmax(x) = x - logsumexp(x)`.
///
/// Computed as `(x - m) - log Σ exp(x - m)`, `m` the row maximum: `x - m` is exact and at most 0,
/// so logits of `1e4` neither overflow `exp` nor lose their small differences, as they would in
/// `x - (m + log Σ …)`, where the Float sum `1e4 + 0.41` keeps only three decimals.
/// `m` is a constant to autograd (`detach()`): the result does not depend on it, and the
/// derivative is then exactly `1 - softmax(x)` on the diagonal, `-softmax(x)` elsewhere.
/// Shapes: `(n, c)` gives `(n, c)`.
/// - Precondition: `x` has at least one dimension.
public func logSoftmax(_ x: Tensor) -> Tensor {
    precondition(x.rank >= 1, "logSoftmax: expects at least one dimension, got shape \(x.shape)")
    let shifted = x - x.max(-1, keepDim: true).detach()
    return shifted - shifted.logSumExp(-1, keepDim: true)
}

/// The softmax along the last dimension: `softmax(x) = exp(x - logsumexp(x))`, rows summing to 1.
///
/// Shapes: `(n, c)` gives `(n, c)`. Computed through `logSoftmax`, so it is stable too.
public func softmax(_ x: Tensor) -> Tensor {
    logSoftmax(x).exp()
}

/// One row per target, with 1 in the target's column and 0 elsewhere.
///
/// Shapes: `targ (n)` of class indices stored as Float gives `(n, classes)`.
/// - Precondition: every target is a whole number in `0..<classes`; otherwise stops naming the
///   row and the value.
public func oneHot(_ targ: Tensor, classes: Int) -> Tensor {
    let labels = classIndices(targ, classes: classes, operation: "oneHot")
    let result = Tensor.zeros([labels.count, classes])
    for (row, label) in labels.enumerated() { result.pointer[row * classes + label] = 1 }
    return result
}

/// Negative log likelihood: the mean over rows of `-input[i, targ[i]]` (the lesson's
/// `-input[range(n), target].mean()`).
///
/// `input (n, c)` holds log-probabilities (from `logSoftmax`), `targ (n)` class indices stored as
/// Float. Picking `input[i, targ[i]]` is written as a sum against a one-hot mask,
/// `-Σ (input * oneHot(targ)) / n`, which autograd differentiates with the operations it has.
/// - Precondition: `input` is `(n, c)` and `targ` holds `n` whole numbers in `0..<c`.
public func nll(_ input: Tensor, _ targ: Tensor) -> Tensor {
    precondition(
        input.rank == 2 && targ.count == input.shape[0],
        "nll: input of shape \(input.shape) does not fit targets of shape \(targ.shape) (expected (n, c) and (n))")
    return -(input * oneHot(targ, classes: input.shape[1])).sum() / Float(input.shape[0])
}

/// Softmax cross-entropy of logits against class indices: `nll(logSoftmax(inp), targ)`.
///
/// `inp (n, c)` are raw scores (logits), `targ (n)` class indices stored as Float. The result is a
/// scalar: `mean_i (logsumexp(inp[i]) - inp[i, targ[i]])`. Autograd differentiates it.
/// - Precondition: the shapes fit and every target is in `0..<c`.
public func crossEntropy(_ inp: Tensor, _ targ: Tensor) -> Tensor {
    nll(logSoftmax(inp), targ)
}

/// Softmax cross-entropy as a loss of the seed: it stores `inp`, `targ` and `out`, and its
/// hand-written `backward()` writes `inp.g`.
///
/// ```python
/// class CrossEntropy():
///     def __call__(self, inp, targ):
///         self.inp,self.targ = inp,targ
///         self.out = nll(log_softmax(inp), targ)
///         return self.out
///     def backward(self):
///         self.inp.g = (softmax(self.inp) - onehot(self.targ)) / self.inp.shape[0]
/// ```
public final class CrossEntropy: Loss {
    /// The model's output from the last call: logits. // (n, c)
    public private(set) var inp: Tensor!
    /// The targets from the last call: class indices stored as Float. // (n)
    public private(set) var targ: Tensor!
    /// The loss from the last call. // () a scalar
    public private(set) var out: Tensor!

    /// Creates the loss.
    public init() {}

    /// The forward pass: stores `inp` and `targ`, computes `out = crossEntropy(inp, targ)`,
    /// returns `out`.
    ///
    /// When autograd does not track `inp` (training with the layers' `backward()`), the same
    /// numbers come from one fused loop over the rows (`fusedCrossEntropy`), which the tests check
    /// against `crossEntropy`.
    /// - Precondition: `inp` is `(n, c)` and `targ` holds `n` class indices in `0..<c`.
    public func callAsFunction(_ inp: Tensor, _ targ: Tensor) -> Tensor {
        precondition(
            inp.rank == 2 && targ.count == inp.shape[0],
            "CrossEntropy: output of shape \(inp.shape) does not fit targets of shape \(targ.shape) (expected (n, c) and (n))"
        )
        self.inp = inp
        self.targ = targ
        if inp.requiresGrad && GradMode.isEnabled {
            self.out = crossEntropy(inp, targ)
        } else {
            self.out = Tensor(fusedCrossEntropy(inp, targ))
        }
        return out
    }

    /// The backward pass: `inp.g = (softmax(inp) - oneHot(targ)) / n`  // (n, c)
    ///
    /// The gradient of `mean_i (logsumexp(inp[i]) - inp[i, targ[i]])` with respect to `inp[i, j]`
    /// is `(softmax(inp[i])_j - [j == targ[i]]) / n`.
    public func backward() {
        checkReadyForBackward()
        inp.g = fusedCrossEntropyGradient(inp, targ)
    }
}

// MARK: - Fused kernels (checked against the composed functions above in CrossEntropyTests)

/// `crossEntropy(inp, targ).item()` in one pass over the rows, in Double:
/// `mean_i ((m_i - inp[i, targ[i]]) + log Σ_j exp(inp[i, j] - m_i))` with `m_i` the row maximum.
func fusedCrossEntropy(_ inp: Tensor, _ targ: Tensor) -> Float {
    let rows = inp.shape[0]
    let classes = inp.shape[1]
    let labels = classIndices(targ, classes: classes, operation: "CrossEntropy")
    return inp.withUnsafeBufferPointer { logits in
        var total = 0.0
        for row in 0..<rows {
            let scores = logits.baseAddress! + row * classes
            let (m, sum) = Tensor.maximumAndExponentialSum(scores, count: classes)
            total += (Double(m) - Double(scores[labels[row]])) + Foundation.log(sum)
        }
        return Float(total / Double(rows))
    }
}

/// `(softmax(inp) - oneHot(targ)) / n` in one pass over the rows. // (n, c)
func fusedCrossEntropyGradient(_ inp: Tensor, _ targ: Tensor) -> Tensor {
    let rows = inp.shape[0]
    let classes = inp.shape[1]
    let labels = classIndices(targ, classes: classes, operation: "CrossEntropy.backward")
    let result = Tensor(uninitializedShape: [rows, classes])
    let gradient = result.pointer
    let scale = 1 / Double(rows)
    var exponentials = [Double](repeating: 0, count: classes)
    inp.withUnsafeBufferPointer { logits in
        exponentials.withUnsafeMutableBufferPointer { exponentials in
            for row in 0..<rows {
                // softmax = exp(x - m) / Σ exp(x - m), each exponential computed once, in Double.
                let (_, total) = Tensor.maximumAndExponentialSum(
                    logits.baseAddress! + row * classes, count: classes, exponentials: exponentials.baseAddress)
                for j in 0..<classes {
                    let probability = exponentials[j] / total
                    gradient[row * classes + j] = Float((probability - (j == labels[row] ? 1 : 0)) * scale)
                }
            }
        }
    }
    return result
}

/// The targets as integer class indices.
/// - Precondition: each is a whole number in `0..<classes`; otherwise stops naming the row.
func classIndices(_ targ: Tensor, classes: Int, operation: String) -> [Int] {
    targ.withUnsafeBufferPointer { values in
        values.enumerated().map { row, value in
            precondition(
                value.rounded() == value && value >= 0 && Int(value) < classes,
                "\(operation): target \(value) in row \(row) is not a class index in 0..<\(classes)")
            return Int(value)
        }
    }
}
