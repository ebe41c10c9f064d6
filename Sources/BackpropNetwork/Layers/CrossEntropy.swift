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

/// The logarithm of the softmax along dimension `dim` (the last by default, negative counting
/// from the end, as PyTorch's `F.log_softmax(x, dim)`): `log_softmax(x) = x - logsumexp(x)`.
///
/// Computed as `(x - m) - log Σ exp(x - m)`, `m` the maximum along `dim`: `x - m` is exact and at
/// most 0, so logits of `1e4` neither overflow `exp` nor lose their small differences, as they
/// would in `x - (m + log Σ …)`, where the Float sum `1e4 + 0.41` keeps only three decimals.
/// `m` is a constant to autograd (`detach()`): the result does not depend on it, and the
/// derivative is then exactly `1 - softmax(x)` on the diagonal, `-softmax(x)` elsewhere.
/// Shapes: `x`'s shape, `(n, c)` gives `(n, c)`.
/// - Precondition: `x` has at least one dimension, and `dim` is one of them.
public func logSoftmax(_ x: Tensor, dim: Int = -1) -> Tensor {
    precondition(x.rank >= 1, "logSoftmax: expects at least one dimension, got shape \(x.shape)")
    precondition(
        (-x.rank..<x.rank).contains(dim), "logSoftmax: dim \(dim) out of range for shape \(x.shape)")
    // Nothing to normalise (`[2, 0]` along 1, or no rows): an empty result, as PyTorch gives.
    guard x.count > 0 else { return x * 1 }
    let shifted = x - x.max(dim, keepDim: true).detach()
    return shifted - shifted.logSumExp(dim, keepDim: true)
}

/// The softmax along dimension `dim` (the last by default): `softmax(x) = exp(x - logsumexp(x))`,
/// summing to 1 along `dim` (PyTorch's `F.softmax(x, dim)`).
///
/// Shapes: `x`'s shape. Computed through `logSoftmax`, so it is stable too.
/// - Precondition: `x` has at least one dimension, and `dim` is one of them.
public func softmax(_ x: Tensor, dim: Int = -1) -> Tensor {
    logSoftmax(x, dim: dim).exp()
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
/// Float. `input[i, targ[i]]` is picked as element `i·c + targ[i]` of the flattened input
/// (`rows(_:)` of a vector, which autograd differentiates by putting the gradient back there), not
/// as a sum against a one-hot mask: a log-probability of `-inf` in another column (a logit of
/// `-inf`, a class ruled out) times the mask's 0 would make the loss NaN, where PyTorch's is finite.
/// - Precondition: `input` is `(n, c)` and `targ` holds `n` whole numbers in `0..<c`.
public func nll(_ input: Tensor, _ targ: Tensor) -> Tensor {
    precondition(
        input.rank == 2 && targ.count == input.shape[0],
        "nll: input of shape \(input.shape) does not fit targets of shape \(targ.shape) (expected (n, c) and (n))")
    let (n, c) = (input.shape[0], input.shape[1])
    let labels = classIndices(targ, classes: c, operation: "nll")
    let picked = input.reshape([n * c]).rows(labels.enumerated().map { row, label in row * c + label })
    return -picked.sum() / Float(n)
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
    /// The softmax parts of the last fused forward pass, which ``backward()`` reuses when `inp`
    /// and `targ` still hold the values they were computed from.
    private var softmaxRows = SoftmaxRows()

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
            softmaxRows.forget()
            self.out = crossEntropy(inp, targ)
        } else {
            self.out = Tensor(fusedCrossEntropy(inp, targ, keeping: &softmaxRows))
        }
        return out
    }

    /// The backward pass: `inp.g = (softmax(inp) - oneHot(targ)) / n`  // (n, c)
    ///
    /// The gradient of `mean_i (logsumexp(inp[i]) - inp[i, targ[i]])` with respect to `inp[i, j]`
    /// is `(softmax(inp[i])_j - [j == targ[i]]) / n`.
    ///
    /// The exponentials of the forward pass are reused when `inp` and `targ` still hold the values
    /// they were computed from (the same bits as computing them again, at a fraction of the time).
    public func backward() {
        checkReadyForBackward()
        inp.g = fusedCrossEntropyGradient(inp, targ, reusing: &softmaxRows)
    }
}

// MARK: - Fused kernels (checked against the composed functions above in CrossEntropyTests)

/// The row-wise parts of a softmax over logits `(n, c)`, computed in Double by
/// `Tensor.softmaxRows`: `e[i, j] = exp(x[i, j] - m_i)` with `m_i` the row maximum,
/// and `s_i = Σ_j e[i, j]`; with copies of the logits and targets they came from, so that the
/// backward pass can check that its inputs are unchanged and reuse them rather than computing
/// every exponential a second time. The buffers are kept from call to call (no allocation per step).
struct SoftmaxRows {
    /// The logits the parts were computed from (empty: nothing kept). // (n, c)
    private(set) var logits: [Float] = []
    /// The targets, class indices stored as Float. // (n)
    private(set) var targets: [Float] = []
    /// The targets as integers. // (n)
    private(set) var labels: [Int] = []
    /// Each row's maximum, `m_i`. // (n)
    private(set) var maxima: [Float] = []
    /// `exp(x[i, j] - m_i)`. // (n, c)
    private(set) var exponentials: [Double] = []
    /// `Σ_j exp(x[i, j] - m_i)`. // (n)
    private(set) var sums: [Double] = []

    /// Forgets what was kept, so that no later call reuses it.
    mutating func forget() {
        logits.removeAll(keepingCapacity: true)
        targets.removeAll(keepingCapacity: true)
    }

    /// Whether the parts were computed from exactly these values (bit for bit) of `inp` and `targ`.
    func wereComputed(from inp: Tensor, _ targ: Tensor) -> Bool {
        guard !logits.isEmpty, logits.count == inp.count, targets.count == targ.count else { return false }
        return Self.sameBits(logits, inp) && Self.sameBits(targets, targ)
    }

    /// Whether `values` holds the bits of `tensor`'s elements, in order.
    private static func sameBits(_ values: [Float], _ tensor: Tensor) -> Bool {
        values.withUnsafeBytes { kept in
            tensor.withUnsafeBufferPointer { current in
                memcmp(kept.baseAddress!, current.baseAddress!, kept.count) == 0
            }
        }
    }

    /// Computes the parts for `inp (n, c)` and `targ (n)`, in the kept buffers.
    /// - Precondition: every target is a whole number in `0..<c`; otherwise stops naming the row.
    mutating func compute(_ inp: Tensor, _ targ: Tensor, operation: String) {
        let (rows, classes) = (inp.shape[0], inp.shape[1])
        forget()
        targ.withUnsafeBufferPointer { targets.append(contentsOf: $0) }
        labels.removeAll(keepingCapacity: true)
        for (row, value) in targets.enumerated() {
            precondition(
                value.rounded() == value && value >= 0 && Int(value) < classes,
                "\(operation): target \(value) in row \(row) is not a class index in 0..<\(classes)")
            labels.append(Int(value))
        }
        inp.withUnsafeBufferPointer { logits.append(contentsOf: $0) }
        // Moved out of `self` while they are written (no copy: each array has one owner).
        var (m, sum, e) = (
            Self.taken(&maxima, rows), Self.taken(&sums, rows), Self.taken(&exponentials, rows * classes)
        )
        logits.withUnsafeBufferPointer { x in
            e.withUnsafeMutableBufferPointer { e in
                m.withUnsafeMutableBufferPointer { m in
                    sum.withUnsafeMutableBufferPointer { sum in
                        let (x, e, m, sum) = (x.baseAddress!, e.baseAddress!, m.baseAddress!, sum.baseAddress!)
                        // Rows on every core when there are many exponentials (a minibatch's 640
                        // take about a microsecond, less than handing half to another core);
                        // each row's values do not depend on the split.
                        Parallel.forEachRange(rows, minimumPerPiece: Swift.max(1, 16384 / Swift.max(classes, 1))) {
                            range in
                            let first = range.lowerBound
                            Tensor.softmaxRows(
                                x + first * classes, rows: range.count, classes: classes, maxima: m + first,
                                sums: sum + first, exponentials: e + first * classes)
                        }
                    }
                }
            }
        }
        (maxima, sums, exponentials) = (m, sum, e)
    }

    /// `buffer`'s array, taken out of it (left empty), with `count` elements: its storage is kept
    /// when it has that many already.
    private static func taken<T: Numeric>(_ buffer: inout [T], _ count: Int) -> [T] {
        var result: [T] = []
        swap(&result, &buffer)
        return result.count == count ? result : [T](repeating: 0, count: count)
    }
}

/// `crossEntropy(inp, targ).item()` in one pass over the rows, in Double:
/// `mean_i ((m_i - inp[i, targ[i]]) + log Σ_j exp(inp[i, j] - m_i))` with `m_i` the row maximum.
func fusedCrossEntropy(_ inp: Tensor, _ targ: Tensor) -> Float {
    var rows = SoftmaxRows()
    return fusedCrossEntropy(inp, targ, keeping: &rows)
}

/// ``fusedCrossEntropy(_:_:)``, keeping the softmax's parts in `rows` for the backward pass.
func fusedCrossEntropy(_ inp: Tensor, _ targ: Tensor, keeping rows: inout SoftmaxRows) -> Float {
    rows.compute(inp, targ, operation: "CrossEntropy")
    let classes = inp.shape[1]
    var total = 0.0
    for row in rows.labels.indices {
        let m = rows.maxima[row]
        total += (Double(m) - Double(rows.logits[row * classes + rows.labels[row]])) + Foundation.log(rows.sums[row])
    }
    return Float(total / Double(rows.labels.count))
}

/// `(softmax(inp) - oneHot(targ)) / n` in one pass over the rows. // (n, c)
func fusedCrossEntropyGradient(_ inp: Tensor, _ targ: Tensor) -> Tensor {
    var rows = SoftmaxRows()
    return fusedCrossEntropyGradient(inp, targ, reusing: &rows)
}

/// ``fusedCrossEntropyGradient(_:_:)`` from the parts in `rows` when they were computed from these
/// values of `inp` and `targ` (by the forward pass), else from parts computed afresh into `rows`.
/// softmax = exp(x - m) / Σ exp(x - m), each exponential computed once, in Double.
func fusedCrossEntropyGradient(_ inp: Tensor, _ targ: Tensor, reusing rows: inout SoftmaxRows) -> Tensor {
    if !rows.wereComputed(from: inp, targ) {
        rows.compute(inp, targ, operation: "CrossEntropy.backward")
    }
    let (count, classes) = (inp.shape[0], inp.shape[1])
    let result = Tensor(uninitializedShape: [count, classes])
    let gradient = result.pointer
    let scale = 1 / Double(count)
    rows.exponentials.withUnsafeBufferPointer { exponentials in
        for row in 0..<count {
            let (total, label) = (rows.sums[row], rows.labels[row])
            for j in 0..<classes {
                let probability = exponentials[row * classes + j] / total
                gradient[row * classes + j] = Float((probability - (j == label ? 1 : 0)) * scale)
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
