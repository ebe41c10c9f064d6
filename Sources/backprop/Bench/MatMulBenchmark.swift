import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining

/// Measures GFLOP/s of each matrix-product route on the seed's three large shapes.
///
/// The shapes, for `n` rows, `m` inputs and `nh` hidden units (50000, 784, 50 in the seed):
/// - forward `x • w1`: `(n, m) • (m, nh)`;
/// - `x.g = out.g • w1ᵀ`: `(n, nh) • (nh, m)`, the second operand a transposed view;
/// - `w1.g = xᵀ • out.g`: `(m, n) • (n, nh)`, the first operand a transposed view.
///
/// Before timing, every route is checked against the reference loops on the same shapes with
/// fewer rows, as llm.c checks its kernels; the reference itself is timed only on those.
struct MatMulBenchmark {
    /// One of the seed's product shapes.
    struct Shape: Sendable {
        /// A short name: `forward`, `input_gradient` or `weight_gradient`.
        let name: String
        /// The product as the seed writes it.
        let expression: String
        /// Rows of A (and C), inner size, columns of B (and C).
        let m: Int, k: Int, n: Int
        /// Whether A (resp. B) is a transposed view.
        let transposedA: Bool, transposedB: Bool

        /// Floating-point operations of one product: `2 m k n`.
        var flops: Double { 2 * Double(m) * Double(k) * Double(n) }
    }

    /// The GFLOP/s of each route on one shape.
    struct Measurement: Sendable {
        /// The shape measured.
        let shape: Shape
        /// Route name → GFLOP/s (`matmul` is Backprop's `•`; `skinny`, `blas`, `blocked` are the
        /// kernels it can choose between, `blas` as one call on the BLAS's own threads;
        /// `reference` is measured on the small check size).
        let gflops: [String: Double]
        /// Route name → the largest error against the reference on the check size, relative to
        /// the largest reference value.
        let errors: [String: Double]
    }

    /// The seed's three shapes for `n` rows, `m` inputs and `nh` hidden units.
    static func seedShapes(rows n: Int = 50_000, inputs m: Int = 784, hidden nh: Int = 50) -> [Shape] {
        [
            Shape(name: "forward", expression: "x • w1", m: n, k: m, n: nh, transposedA: false, transposedB: false),
            Shape(
                name: "input_gradient", expression: "out.g • w1.t()", m: n, k: nh, n: m, transposedA: false,
                transposedB: true),
            Shape(
                name: "weight_gradient", expression: "x.t() • out.g", m: m, k: n, n: nh, transposedA: true,
                transposedB: false),
        ]
    }

    /// The routes measured, by name.
    static let routes: [(name: String, route: MatMulKernel)] = [
        ("matmul", .fast), ("skinny", .skinny), ("blas", .blas), ("blocked", .blocked),
    ]

    /// Rows used for the reference check (the `n` of the seed's shapes is replaced by this).
    let checkRows: Int
    /// Rows of the timed shapes.
    let rows: Int

    /// A benchmark of the seed's shapes with `rows` rows, checked with `checkRows` rows.
    init(rows: Int = 50_000, checkRows: Int = 500) {
        self.rows = rows
        self.checkRows = checkRows
    }

    /// Measures every available route on every seed shape (median of `runs` after a warm-up).
    func run(runs: Int = 5) -> [Measurement] {
        let timed = MatMulBenchmark.seedShapes(rows: rows)
        let small = MatMulBenchmark.seedShapes(rows: checkRows)
        return zip(timed, small).map { shape, check in
            var gflops: [String: Double] = [:]
            var errors: [String: Double] = [:]
            let (checkA, checkB) = MatMulBenchmark.operands(check, seed: 3)
            let reference = MatMulBenchmark.product(checkA, checkB, route: .reference)
            let referenceSeconds = Timing.median(
                Timing.measure(warmUp: 0, runs: 1) {
                    _ = MatMulBenchmark.product(checkA, checkB, route: .reference)
                })
            gflops["reference"] = check.flops / referenceSeconds * 1e-9
            let (a, b) = MatMulBenchmark.operands(shape, seed: 4)
            for (name, route) in MatMulBenchmark.routes where route.isAvailable {
                // `blas` is BLAS called directly: one call for the whole product, on the BLAS's
                // own threads (as many as Backprop's), not cut into Backprop's pieces.
                let direct = route == .blas && BLASThreads.count == 1
                if direct { BLASThreads.set(Threads.count) }
                defer { if direct { BLASThreads.set(1) } }
                let result = MatMulBenchmark.product(checkA, checkB, route: route)
                errors[name] = MatMulBenchmark.relativeError(result, reference)
                let seconds = Timing.median(
                    Timing.measure(runs: runs) {
                        _ = MatMulBenchmark.product(a, b, route: route)
                    })
                gflops[name] = shape.flops / seconds * 1e-9
            }
            return Measurement(shape: shape, gflops: gflops, errors: errors)
        }
    }

    /// The time of `route` on `measurement`'s shape (from its GFLOP/s) against the shape's floor
    /// on `peak` (``WorkloadCost/product(_:)``); `nil` for a route not measured, and for
    /// `reference`, which is timed on the check size only.
    static func floor(_ measurement: Measurement, route: String, peak: MachinePeak) -> WorkloadFloor? {
        guard route != "reference", let gflops = measurement.gflops[route] else { return nil }
        let shape = measurement.shape
        return WorkloadFloor(cost: .product(shape), peak: peak, measuredSeconds: shape.flops / (gflops * 1e9))
    }

    /// Random operands of `shape`, transposed views where the seed's are.
    static func operands(_ shape: Shape, seed: UInt64) -> (Tensor, Tensor) {
        var generator = RandomGenerator(seed: seed)
        let a =
            shape.transposedA
            ? Tensor.randn([shape.k, shape.m], generator: &generator).t()
            : Tensor.randn([shape.m, shape.k], generator: &generator)
        let b =
            shape.transposedB
            ? Tensor.randn([shape.n, shape.k], generator: &generator).t()
            : Tensor.randn([shape.k, shape.n], generator: &generator)
        return (a, b)
    }

    /// `a • b` by `route` (`.fast`: Backprop's `•`, which chooses for itself).
    static func product(_ a: Tensor, _ b: Tensor, route: MatMulKernel) -> Tensor {
        a.matmul(b, kernel: route)
    }

    /// `max |result - reference| / max |reference|`.
    static func relativeError(_ result: Tensor, _ reference: Tensor) -> Double {
        let r = result.values
        let e = reference.values
        var worst = 0.0
        var scale = 0.0
        for i in 0..<e.count {
            worst = Swift.max(worst, Double(abs(r[i] - e[i])))
            scale = Swift.max(scale, Double(abs(e[i])))
        }
        return worst / Swift.max(scale, .leastNormalMagnitude)
    }
}
