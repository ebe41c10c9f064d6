import BackpropCore
import BackpropData
import BackpropNetwork

/// The fraction of rows whose prediction equals the target.
///
/// - `out (n, c)` with `c > 1`: the prediction is the column with the largest score,
///   `argmax(out[i]) == targ[i]` (PyTorch's `(out.argmax(1) == targ).float().mean()`).
/// - `out (n, 1)` or `(n)`, the seed's regression: the prediction is the output rounded to the
///   nearest whole number.
///
/// `targ (n)` holds class indices stored as Float. Returns 0 for no rows.
/// - Precondition: `out` has `n` rows.
public func accuracy(_ out: Tensor, _ targ: Tensor) -> Float {
    let rows = targ.count
    if rows == 0 { return 0 }
    return Float(correctCount(out, targ)) / Float(rows)
}

/// The number of rows whose prediction equals the target (see ``accuracy(_:_:)``).
func correctCount(_ out: Tensor, _ targ: Tensor) -> Int {
    let rows = targ.count
    precondition(
        out.shape.first == rows,
        "accuracy: output of shape \(out.shape) does not fit \(rows) targets")
    let labels = targ.values
    if out.count == rows {
        let predictions = out.values
        return (0..<rows).filter { predictions[$0].rounded() == labels[$0] }.count
    }
    let predictions = out.argmax(-1)
    return (0..<rows).filter { Float(predictions[$0]) == labels[$0] }.count
}
