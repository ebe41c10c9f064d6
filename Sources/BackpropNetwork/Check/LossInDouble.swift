import BackpropCore
import Foundation

// The losses in Double, for finite differences. A loss rounded to Float has an error of about
// 6e-8 · |loss|; divided by a step of 5e-3, that is an error of about 1e-5 · |loss| in every
// finite difference, as large as a small gradient (a cross-entropy of 2.3 over a [Lin, Tanh, Lin]
// failed the check at 0.0118 that way). Summed in Double from the model's Float output, the loss
// changes only by what the perturbation changes.

/// A loss that can be evaluated in Double from the model's output, for the gradient check's
/// finite differences (``gradientCheck(_:x:y:options:)`` uses it when the model's loss
/// conforms, else the Float loss).
///
/// `Mse` and `CrossEntropy` conform; a loss of one's own conforms by summing its formula in Double
/// from the Float output, so that a correct backward is not failed by the Float loss's rounding
/// (about 6e-8 · |loss|, which a step of 5e-3 turns into 1e-5 · |loss| in every estimate).
public protocol LossInDouble: Loss {
    /// The loss of `inp` against `targ`, accumulated in Double; `nil` when the shapes do not fit
    /// (the Float loss then reports them). Stores nothing.
    func lossInDouble(_ inp: Tensor, _ targ: Tensor) -> Double?
}

extension Mse: LossInDouble {
    /// `mean_i (inp_i - targ_i)²` in Double, for `inp (n, 1)` or `(n)` and `targ (n)`.
    public func lossInDouble(_ inp: Tensor, _ targ: Tensor) -> Double? {
        guard inp.count == targ.count, inp.count > 0 else { return nil }
        return inp.withUnsafeBufferPointer { output in
            targ.withUnsafeBufferPointer { target in
                var total = 0.0
                for i in 0..<output.count {
                    let difference = Double(output[i]) - Double(target[i])
                    total += difference * difference
                }
                return total / Double(output.count)
            }
        }
    }
}

extension CrossEntropy: LossInDouble {
    /// `mean_i (logsumexp(inp[i]) - inp[i, targ[i]])` in Double, for logits `inp (n, c)` and
    /// class indices `targ (n)`: `(m_i - inp[i, targ[i]]) + log Σ_j exp(inp[i, j] - m_i)`, `m_i`
    /// the row maximum.
    public func lossInDouble(_ inp: Tensor, _ targ: Tensor) -> Double? {
        guard inp.rank == 2, targ.count == inp.shape[0], inp.shape[0] > 0 else { return nil }
        let (rows, classes) = (inp.shape[0], inp.shape[1])
        let labels = classIndices(targ, classes: classes, operation: "CrossEntropy")
        return inp.withUnsafeBufferPointer { logits in
            var total = 0.0
            for row in 0..<rows {
                let scores = logits.baseAddress! + row * classes
                let (m, sum) = Tensor.maximumAndExponentialSum(scores, count: classes)
                total += (Double(m) - Double(scores[labels[row]])) + Foundation.log(sum)
            }
            return total / Double(rows)
        }
    }
}
