import BackpropCore
import CKernels

/// Whether the machine ran products at its usual speed while `backprop bench` measured: the same
/// check as `Benchmarks/steadiness.sh`, short, on Backprop's threads.
///
/// On a shared virtual machine the speed of a core moves from second to second, and not the same
/// way for all work: the FMA loop that sets the floor runs in registers and can stay steady while
/// a matrix product whose operands live in the core's caches loses up to half its rate (the host's
/// other tenants share the caches). Every floor ratio of such a minute is then up to twice what
/// the same code gives in a quiet one, and the report alone cannot tell which it was.
///
/// Every thread at once alternates windows of about ``windowSeconds``: one of the FMA loop of
/// ``MachinePeak`` (its widest kernel), one of `train`'s first product,
/// `(128, 784) • (784, 256)`, with Backprop's own kernel on operands of the thread's own
/// (1.3 MB), computed again and again in place. Per thread it keeps each kind's median and best
/// window. The product's `median / best` is near 1 on a quiet machine (0.88-0.96 measured on
/// quiet minutes, BENCHMARKS.md) and about 0.5 in a slow phase; below ``slowBelow`` the report
/// says so.
struct Steadiness: Sendable, Encodable {
    /// One thread's windows, GFLOP/s.
    struct ThreadRates: Sendable, Encodable, Equatable {
        /// The FMA loop's median window and its best.
        let fmaMedian, fmaBest: Double
        /// The product's median window and its best.
        let productMedian, productBest: Double
        /// Windows of each kind.
        let windows: Int

        /// The product's median over its best: near 1 when the product ran steadily.
        var productSteadiness: Double { productMedian / productBest }

        /// The product's best over the FMA loop's best: how near the product kernel comes to
        /// the arithmetic limit when nothing slows it (0.82-0.97 on the VMs measured so far).
        var productBestShareOfFMA: Double { productBest / fmaBest }

        /// The product's median over the FMA loop's best: the share of the floor's rate that the
        /// products of this minute reached in most windows. Work made of such products takes at
        /// least `1 / productMedianShareOfFMA` times its floor here.
        var productMedianShareOfFMA: Double { productMedian / fmaBest }

        /// The median and best of each kind's windows (`fma` and `product`, GFLOP/s each).
        /// - Precondition: both are nonempty and of one count.
        init(fma: [Double], product: [Double]) {
            precondition(!fma.isEmpty && fma.count == product.count, "Steadiness: \(fma.count), \(product.count)")
            fmaMedian = Timing.median(fma)
            fmaBest = fma.max()!
            productMedian = Timing.median(product)
            productBest = product.max()!
            windows = fma.count
        }

        private enum CodingKeys: String, CodingKey {
            case windows
            case fmaMedian = "fma_median_gflops"
            case fmaBest = "fma_best_gflops"
            case productMedian = "product_median_gflops"
            case productBest = "product_best_gflops"
            case productSteadiness = "product_median_over_best"
            case productMedianShareOfFMA = "product_median_over_fma_best"
        }

        /// Writes the four rates, `windows`, `product_median_over_best` and
        /// `product_median_over_fma_best`.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(fmaMedian, forKey: .fmaMedian)
            try container.encode(fmaBest, forKey: .fmaBest)
            try container.encode(productMedian, forKey: .productMedian)
            try container.encode(productBest, forKey: .productBest)
            try container.encode(productSteadiness, forKey: .productSteadiness)
            try container.encode(productMedianShareOfFMA, forKey: .productMedianShareOfFMA)
            try container.encode(windows, forKey: .windows)
        }
    }

    /// The seconds each thread alternated the two kinds of work.
    let seconds: Double
    /// The FMA loop's kernel (``MachinePeak/Kernel``), and so the product's instruction set.
    let kernel: MachinePeak.Kernel
    /// Each thread's windows, in the order of Backprop's threads.
    let threads: [ThreadRates]

    /// The worst thread's product `median / best`: the phase the workloads ran in.
    var productSteadiness: Double { threads.map(\.productSteadiness).min() ?? 1 }

    /// The worst thread's product median over its FMA loop's best
    /// (``ThreadRates/productMedianShareOfFMA``): products on every thread, as a step's are, go
    /// no faster than the slowest thread, so work made of them took at least `1 /` this times its
    /// floor in this check's minute.
    var productMedianShareOfFMA: Double { threads.map(\.productMedianShareOfFMA).min() ?? 1 }

    /// Whether the worst thread's product ran below ``slowBelow`` of its best: a slow phase, in
    /// which the floor ratios come out up to `1 / productSteadiness` times what a quiet minute gives.
    var isSlowPhase: Bool { productSteadiness < Steadiness.slowBelow }

    /// Below this `median / best` the product's minute counts as slow (`steadiness.c` reads 0.8 the same way).
    static let slowBelow = 0.8

    /// The length of one window: long against the clock's reading, short against the host's phases.
    static let windowSeconds = 0.01

    /// The product timed: `train`'s first, `(rows, depth) • (depth, columns)`.
    static let rows = 128, depth = 784, columns = 256

    /// Measures every thread for `seconds` (at least one window of each kind); `nil` on a
    /// processor without AVX2 and FMA, where Backprop's product kernel does not run.
    /// - Precondition: `seconds > 0`.
    static func measure(seconds: Double) -> Steadiness? {
        precondition(seconds > 0, "Steadiness.measure: seconds \(seconds)")
        guard Tensor.skinnyKernelIsAvailable else { return nil }
        let instructionSet = Tensor.SkinnyInstructionSet.widest
        let kernel: MachinePeak.Kernel = instructionSet == .avx512 ? .avx512 : .avx2
        let threads = Threads.count
        // Two windows a turn: room for twice the turns `seconds` should hold (a first timing
        // that came out slow makes the windows shorter).
        let capacity = Int((seconds / windowSeconds).rounded(.up)) + 2
        // Per thread: its count of turns, then the FMA and the product rates of each turn (each
        // written by its own thread only).
        let stride = 1 + 2 * capacity
        let rates = UnsafeMutablePointer<Double>.allocate(capacity: threads * stride)
        defer { rates.deallocate() }
        rates.initialize(repeating: 0, count: threads * stride)
        Parallel.forEachRange(threads, minimumPerPiece: 1) { range in
            for thread in range {
                let slot = rates + thread * stride
                let turns = alternate(
                    kernel: kernel, product: instructionSet.kernel, seconds: seconds, capacity: capacity
                ) {
                    turn, fma, product in
                    slot[1 + 2 * turn] = fma
                    slot[2 + 2 * turn] = product
                }
                slot[0] = Double(turns)
            }
        }
        let perThread = (0..<threads).map { thread in
            let slot = rates + thread * stride
            let turns = Int(slot[0])
            return ThreadRates(
                fma: (0..<turns).map { slot[1 + 2 * $0] }, product: (0..<turns).map { slot[2 + 2 * $0] })
        }
        return Steadiness(seconds: seconds, kernel: kernel, threads: perThread)
    }

    /// One thread's turns: a window of the FMA loop, then one of the product, until `seconds`
    /// have passed (at least one turn, at most `capacity`); calls `record(turn, fmaGflops,
    /// productGflops)` after each and returns the turns.
    private static func alternate(
        kernel: MachinePeak.Kernel, product: @convention(c) (UnsafePointer<BPGemm>?, Int, Int, Int, Int) -> Void,
        seconds: Double, capacity: Int, record: (Int, Double, Double) -> Void
    ) -> Int {
        let width = kernel.accumulators * kernel.lanes
        let accumulators = UnsafeMutablePointer<Float>.allocate(capacity: width)
        defer { accumulators.deallocate() }
        accumulators.initialize(repeating: 1, count: width)
        // Operands that stay finite however often the product runs: it writes C from A and B.
        let purpose = "the steadiness check's matrix product"
        let a = UnsafeMutablePointer<Float>.allocateScratch(capacity: rows * depth, for: purpose)
        let b = UnsafeMutablePointer<Float>.allocateScratch(capacity: depth * columns, for: purpose)
        let c = UnsafeMutablePointer<Float>.allocateScratch(capacity: rows * columns, for: purpose)
        defer {
            a.deallocate()
            b.deallocate()
            c.deallocate()
        }
        for i in 0..<rows * depth { a[i] = Float(i % 17) * 0.01 }
        for i in 0..<depth * columns { b[i] = Float(i % 13) * 0.01 }
        c.initialize(repeating: 0, count: rows * columns)
        var gemm = BPGemm(
            m: rows, n: columns, k: depth, a: a, rowStrideA: depth, columnStrideA: 1, b: b, rowStrideB: columns,
            columnStrideB: 1, c: c, ldc: columns, bias: nil, accumulate: 0, streaming: 0)
        let productFlops = 2.0 * Double(rows * depth * columns)

        // Trips of the loop and products per window, from a first timing of each (a warm-up too).
        var start = Timing.now()
        _ = kernel.run(trips: MachinePeak.tripsPerCall, a: 1, b: 1, accumulators: accumulators)
        let trips = Swift.max(1, Int(Double(MachinePeak.tripsPerCall) * windowSeconds / (Timing.now() - start + 1e-9)))
        start = Timing.now()
        product(&gemm, 0, rows, 0, columns)
        let products = Swift.max(1, Int(windowSeconds / (Timing.now() - start + 1e-9)))

        let end = Timing.now() + seconds
        var turn = 0
        repeat {
            var time = Timing.now()
            let multiplyAdds = kernel.run(trips: trips, a: 1, b: 1, accumulators: accumulators)
            let fma = 2 * Double(multiplyAdds) / (Timing.now() - time) * 1e-9
            time = Timing.now()
            for _ in 0..<products { product(&gemm, 0, rows, 0, columns) }
            let productRate = productFlops * Double(products) / (Timing.now() - time) * 1e-9
            record(turn, fma, productRate)
            turn += 1
        } while turn < capacity && Timing.now() < end
        return turn
    }

    private enum CodingKeys: String, CodingKey {
        case seconds, kernel, threads
        case windowSeconds = "window_seconds"
        case productSteadiness = "product_median_over_best"
        case productMedianShareOfFMA = "product_median_over_fma_best"
        case slowPhase = "slow_phase"
    }

    /// Writes `seconds`, `window_seconds`, `kernel`, `threads` (each thread's ``ThreadRates``),
    /// `product_median_over_best` and `product_median_over_fma_best` (the worst thread's each),
    /// and `slow_phase`.
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(seconds, forKey: .seconds)
        try container.encode(Steadiness.windowSeconds, forKey: .windowSeconds)
        try container.encode(kernel.rawValue, forKey: .kernel)
        try container.encode(threads, forKey: .threads)
        try container.encode(productSteadiness, forKey: .productSteadiness)
        try container.encode(productMedianShareOfFMA, forKey: .productMedianShareOfFMA)
        try container.encode(isSlowPhase, forKey: .slowPhase)
    }
}
