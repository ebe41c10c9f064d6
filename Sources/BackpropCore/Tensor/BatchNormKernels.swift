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

    // MARK: Images of a batch

    // The passes over the images `images` of a batch `(n, c, spatial)`, per channel `k`, each
    // image's plane of `k` in image order through the functions above. BatchNorm1d's input `(n, c)`
    // has planes of one value, where a call per value costs about 40 ns: there the `bp_bn_rows_*`
    // kernels take whole rows, `x[r · c + k]`, and do per channel the same operations in the same
    // order, so give the same bits.

    /// `sums[k] += total(plane)` for each image's plane of channel `k`, in image order.
    package static func addTotals(
        _ x: UnsafePointer<Float>, images: Range<Int>, channels c: Int, spatial: Int,
        into sums: UnsafeMutablePointer<Double>
    ) {
        if spatial == 1 { return bp_bn_rows_sum(x + images.lowerBound * c, images.count, c, sums) }
        for image in images {
            for k in 0..<c { sums[k] += total(x + (image * c + k) * spatial, count: spatial) }
        }
    }

    /// `squares[k] += squaredDeviations(plane, from: mean[k])` for each image's plane of channel
    /// `k`, in image order.
    package static func addSquaredDeviations(
        _ x: UnsafePointer<Float>, images: Range<Int>, channels c: Int, spatial: Int,
        from mean: UnsafePointer<Double>, into squares: UnsafeMutablePointer<Double>
    ) {
        if spatial == 1 {
            return bp_bn_rows_squared_deviations(x + images.lowerBound * c, images.count, c, mean, squares)
        }
        for image in images {
            for k in 0..<c {
                squares[k] += squaredDeviations(x + (image * c + k) * spatial, count: spatial, from: mean[k])
            }
        }
    }

    /// `sumG[k] += Σ g` and `sumGXhat[k] += Σ g · xhat` of `gradientSums` for each image's plane
    /// of channel `k`, in image order.
    package static func addGradientSums(
        _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, images: Range<Int>, channels c: Int, spatial: Int,
        mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>, into sumG: UnsafeMutablePointer<Double>,
        _ sumGXhat: UnsafeMutablePointer<Double>
    ) {
        if spatial == 1 {
            let start = images.lowerBound * c
            return bp_bn_rows_gradient_sums(g + start, x + start, images.count, c, mean, invStd, sumG, sumGXhat)
        }
        for image in images {
            for k in 0..<c {
                let start = (image * c + k) * spatial
                let (plainSum, productSum) = gradientSums(
                    g + start, x + start, count: spatial, mean: mean[k], invStd: invStd[k])
                sumG[k] += plainSum
                sumGXhat[k] += productSum
            }
        }
    }

    /// `normalize` of each image's plane of channel `k` with `mean[k]`, `scale[k]`, `shift[k]`.
    package static func normalize(
        _ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, images: Range<Int>, channels c: Int,
        spatial: Int, mean: UnsafePointer<Float>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>
    ) {
        if spatial == 1 {
            let start = images.lowerBound * c
            return bp_bn_rows_normalize(x + start, out + start, images.count, c, mean, scale, shift)
        }
        for image in images {
            for k in 0..<c {
                let start = (image * c + k) * spatial
                normalize(x + start, into: out + start, count: spatial, mean: mean[k], scale: scale[k], shift: shift[k])
            }
        }
    }

    /// `inputGradient` of each image's plane of channel `k` with the channel's `mean[k]`, `invStd[k]`,
    /// `meanG[k]`, `meanGXhat[k]` and `scale[k]`.
    package static func inputGradient(
        _ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
        images: Range<Int>, channels c: Int, spatial: Int, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
        meanG: UnsafePointer<Float>, meanGXhat: UnsafePointer<Float>, scale: UnsafePointer<Float>
    ) {
        if spatial == 1 {
            let start = images.lowerBound * c
            return bp_bn_rows_input_gradient(
                g + start, x + start, out + start, images.count, c, mean, invStd, meanG, meanGXhat, scale)
        }
        for image in images {
            for k in 0..<c {
                let start = (image * c + k) * spatial
                inputGradient(
                    g + start, x + start, into: out + start, count: spatial, mean: mean[k], invStd: invStd[k],
                    meanG: meanG[k], meanGXhat: meanGXhat[k], scale: scale[k])
            }
        }
    }
}
