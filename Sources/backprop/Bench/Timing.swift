import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import Foundation

/// Wall-clock timing with a warm-up and the median of several runs, as benchmarks report it.
enum Timing {
    /// Seconds on a monotonic clock.
    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    /// Runs `body` `warmUp` times untimed, then `runs` times timed; returns each run's seconds.
    static func measure(warmUp: Int = 1, runs: Int = 5, _ body: () -> Void) -> [Double] {
        for _ in 0..<warmUp { body() }
        var seconds: [Double] = []
        for _ in 0..<runs {
            let start = now()
            body()
            seconds.append(now() - start)
        }
        return seconds
    }

    /// The median of `values` (the mean of the middle two for an even count).
    /// - Precondition: `values` is not empty.
    static func median(_ values: [Double]) -> Double {
        precondition(!values.isEmpty, "median of no values")
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}
