import Foundation
import Testing

@testable import BackpropCore
@testable import backprop

/// `backprop bench`'s steadiness check: each thread's windows summed up by hand-counted medians
/// and bests, the worst thread read as the report's, a short measurement on every thread, and the
/// keys (the command's output: `BenchmarkFloorTests.commandReportsTheFloors`). (No rate is asserted beyond being positive and ordered: tests run on busy
/// machines.)
@Suite("Benchmark steadiness")
struct SteadinessTests {
    /// Five windows of each kind: the medians are the third of each sorted list, the bests the
    /// largest, and the shares their quotients.
    @Test func threadRatesAreTheMedianAndBestOfTheWindows() {
        let rates = Steadiness.ThreadRates(fma: [40, 10, 30, 20, 50], product: [20, 40, 10, 30, 25])
        #expect(rates.fmaMedian == 30 && rates.fmaBest == 50)
        #expect(rates.productMedian == 25 && rates.productBest == 40)
        #expect(rates.windows == 5)
        #expect(rates.productSteadiness == 0.625)
        #expect(rates.productMedianShareOfFMA == 0.5)
        #expect(rates.productBestShareOfFMA == 0.8)
        // An even count: the mean of the middle two.
        let even = Steadiness.ThreadRates(fma: [8, 2, 4, 6], product: [1, 3, 2, 4])
        #expect(even.fmaMedian == 5 && even.productMedian == 2.5 && even.productBest == 4)
    }

    /// The report reads the worst thread: one thread at half its best makes the check a slow
    /// phase, and its share of the FMA loop bounds the ratios.
    @Test func theWorstThreadSetsThePhase() throws {
        let steady = Steadiness.ThreadRates(fma: [40, 40, 40], product: [34, 35, 36])
        let slow = Steadiness.ThreadRates(fma: [40, 38, 40], product: [18, 36, 17])
        let quiet = Steadiness(seconds: 1, kernel: .avx2, threads: [steady, steady])
        #expect(!quiet.isSlowPhase)
        #expect(quiet.productSteadiness == 35.0 / 36)
        #expect(quiet.productMedianShareOfFMA == 35.0 / 40)
        let mixed = Steadiness(seconds: 1, kernel: .avx2, threads: [steady, slow])
        #expect(mixed.isSlowPhase)
        #expect(mixed.productSteadiness == 0.5)
        #expect(mixed.productMedianShareOfFMA == 18.0 / 40)
        let object = try #require(
            try JSONSerialization.jsonObject(with: JSONEncoder().encode(mixed)) as? [String: Any])
        #expect(object["slow_phase"] as? Bool == true)
        #expect(object["product_median_over_best"] as? Double == 0.5)
        #expect(object["product_median_over_fma_best"] as? Double == 0.45)
        #expect(object["kernel"] as? String == "avx2")
        let threads = try #require(object["threads"] as? [[String: Any]])
        #expect(threads.count == 2)
        #expect(threads[1]["product_median_gflops"] as? Double == 18)
        #expect(threads[1]["fma_best_gflops"] as? Double == 40)
        #expect(threads[1]["windows"] as? Int == 3)
    }

    /// A short check on every thread: one record per thread, at least one window each, positive
    /// finite rates with each median at most its best; none where the product kernel does not run.
    @Test func shortMeasurementCoversEveryThread() throws {
        guard let check = Steadiness.measure(seconds: 0.05) else {
            #expect(!Tensor.skinnyKernelIsAvailable)
            return
        }
        #expect(Tensor.skinnyKernelIsAvailable)
        #expect(check.kernel == (Tensor.SkinnyInstructionSet.widest == .avx512 ? .avx512 : .avx2))
        #expect(check.threads.count == Threads.count)
        for (thread, rates) in check.threads.enumerated() {
            #expect(rates.windows >= 1, "thread \(thread)")
            for rate in [rates.fmaMedian, rates.fmaBest, rates.productMedian, rates.productBest] {
                #expect(rate.isFinite && rate > 0, "thread \(thread): \(rates)")
            }
            #expect(rates.fmaMedian <= rates.fmaBest && rates.productMedian <= rates.productBest, "\(rates)")
        }
    }
}
