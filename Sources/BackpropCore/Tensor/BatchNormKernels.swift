import CKernels

/// Batch normalisation's passes over a stretch of one channel (`BatchNorm` calls them for each
/// image's plane of a channel), in Sources/CKernels/BatchNorm.c: the same bits on every CPU, four or
/// eight at a time where the CPU has AVX2.
///
/// The sums keep four Double lanes: lane j adds the elements `i ≡ j mod 4` in order; then
/// `0 + lane 0 + … + lane 3`, then the tail in order (a plain loop of `+=` fixes the order of the
/// additions, so the compiler cannot vectorise it, and each addition waits for the one before).
/// The elementwise passes round every operation as written, with no fused multiply-add.
package enum BatchNormKernels {
    /// `Σ Double(x[i])`.
    package static func total(_ x: UnsafePointer<Float>, count: Int) -> Double {
        bp_bn_sum(x, count)
    }

    /// `Σ (Double(x[i]) - mean)²`.
    package static func squaredDeviations(_ x: UnsafePointer<Float>, count: Int, from mean: Double) -> Double {
        bp_bn_squared_deviations(x, count, mean)
    }

    /// `(Σ g[i], Σ g[i] · xhat[i])` with `xhat[i] = (x[i] - mean) · invStd` in Float, each
    /// product rounded to Float and summed in Double.
    package static func gradientSums(
        _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, count: Int, mean: Float, invStd: Float
    ) -> (Double, Double) {
        var sums: (Double, Double) = (0, 0)
        withUnsafeMutablePointer(to: &sums) { pair in
            pair.withMemoryRebound(to: Double.self, capacity: 2) { bp_bn_gradient_sums(g, x, count, mean, invStd, $0) }
        }
        return sums
    }

    /// `out[i] = (x[i] - mean) · scale + shift`.
    package static func normalize(
        _ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int, mean: Float, scale: Float,
        shift: Float
    ) {
        bp_bn_normalize(x, out, count, mean, scale, shift)
    }

    /// `out[i] = scale · (g[i] - meanG - xhat · meanGXhat)` with `xhat = (x[i] - mean) · invStd`.
    package static func inputGradient(
        _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int,
        mean: Float, invStd: Float, meanG: Float, meanGXhat: Float, scale: Float
    ) {
        bp_bn_input_gradient(g, x, out, count, mean, invStd, meanG, meanGXhat, scale)
    }

    // MARK: Whole rows of features

    // BatchNorm1d's input `(n, c)` has one value per image and feature: the passes above, called
    // once per value, cost a call each (about 40 ns a value). These take whole rows, `x[r · c + k]`,
    // and do per feature `k` the same operations in the same order, so give the same bits.

    /// `sums[k] += Double(x[r · c + k])` for each of the `rows` rows in order.
    package static func rowsTotal(
        _ x: UnsafePointer<Float>, rows: Int, features c: Int, into sums: UnsafeMutablePointer<Double>
    ) {
        bp_bn_rows_sum(x, rows, c, sums)
    }

    /// `squares[k] += (Double(x[r · c + k]) - mean[k])²` for each row in order.
    package static func rowsSquaredDeviations(
        _ x: UnsafePointer<Float>, rows: Int, features c: Int, from mean: UnsafePointer<Double>,
        into squares: UnsafeMutablePointer<Double>
    ) {
        bp_bn_rows_squared_deviations(x, rows, c, mean, squares)
    }

    /// `sumG[k] += Double(g[r · c + k])` and `sumGXhat[k] += Double(g[r · c + k] · xhat)`, `xhat =
    /// (x[r · c + k] - mean[k]) · invStd[k]` in Float, for each row in order.
    package static func rowsGradientSums(
        _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, features c: Int, mean: UnsafePointer<Float>,
        invStd: UnsafePointer<Float>, into sumG: UnsafeMutablePointer<Double>,
        _ sumGXhat: UnsafeMutablePointer<Double>
    ) {
        bp_bn_rows_gradient_sums(g, x, rows, c, mean, invStd, sumG, sumGXhat)
    }

    /// `out[r · c + k] = (x[r · c + k] - mean[k]) · scale[k] + shift[k]`.
    package static func rowsNormalize(
        _ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, rows: Int, features c: Int,
        mean: UnsafePointer<Float>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>
    ) {
        bp_bn_rows_normalize(x, out, rows, c, mean, scale, shift)
    }

    /// `out[r · c + k] = scale[k] · (g - meanG[k] - xhat · meanGXhat[k])`, `xhat = (x - mean[k]) · invStd[k]`.
    package static func rowsInputGradient(
        _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, rows: Int,
        features c: Int, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>, meanG: UnsafePointer<Float>,
        meanGXhat: UnsafePointer<Float>, scale: UnsafePointer<Float>
    ) {
        bp_bn_rows_input_gradient(g, x, out, rows, c, mean, invStd, meanG, meanGXhat, scale)
    }
}
