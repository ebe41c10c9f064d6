import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// The thread pool behind `Parallel` (`Sources/CKernels/Pool.c`): every index runs exactly once,
/// whoever calls, however the calls nest or overlap.
@Suite("Parallel loops")
struct ParallelTests {
    /// Counts how often each index ran (from any thread).
    final class Tally: @unchecked Sendable {
        private let lock = NSLock()
        private var counts: [Int]

        init(_ count: Int) { counts = Array(repeating: 0, count: count) }

        func record(_ index: Int) {
            lock.lock()
            counts[index] += 1
            lock.unlock()
        }

        var values: [Int] {
            lock.lock()
            defer { lock.unlock() }
            return counts
        }
    }

    @Test(arguments: [0, 1, 2, 3, 7, 100, 1000])
    func everyPieceRunsOnce(count: Int) {
        let tally = Tally(count)
        Parallel.forEachPiece(count) { tally.record($0) }
        #expect(tally.values == Array(repeating: 1, count: count))
    }

    @Test func rangesCoverEveryIndexOnce() {
        for (count, minimum, grain) in [(1000, 10, 8), (64, 20, 1), (50, 16, 16), (5, 100, 1)] {
            let tally = Tally(count)
            Parallel.forEachRange(count, minimumPerPiece: minimum, grain: grain) { range in
                for index in range { tally.record(index) }
            }
            #expect(tally.values == Array(repeating: 1, count: count), "\(count) by \(minimum), grain \(grain)")
        }
    }

    /// A loop inside an iteration runs on that iteration's thread; loops started from several
    /// threads at once share the pool or run serially. Each index still runs exactly once.
    @Test func nestedAndConcurrentLoops() async {
        let outer = 16
        let inner = 50
        let tallies = (0..<4).map { _ in Tally(outer * inner) }
        await withTaskGroup(of: Void.self) { group in
            for tally in tallies {
                group.addTask {
                    for _ in 0..<20 {
                        let round = Tally(outer * inner)
                        Parallel.forEachPiece(outer) { i in
                            Parallel.forEachPiece(inner) { j in round.record(i * inner + j) }
                        }
                        if round.values == Array(repeating: 1, count: outer * inner) {
                            for index in 0..<(outer * inner) { tally.record(index) }
                        }
                    }
                }
            }
        }
        for tally in tallies {
            #expect(tally.values == Array(repeating: 20, count: outer * inner))
        }
    }

    /// The results of real work split over the pool match the same work done serially.
    @Test func splitWorkMatchesSerialWork() {
        let count = 1 << 16
        var generator = RandomGenerator(seed: 11)
        let x = Tensor.randn([count], generator: &generator)
        let source = x.pointer
        let parallel = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { parallel.deallocate() }
        Parallel.forEachRange(count, minimumPerPiece: 1024, grain: 8) { range in
            for i in range { parallel[i] = source[i] * source[i] + 1 }
        }
        var worst: Float = 0
        for i in 0..<count { worst = max(worst, abs(parallel[i] - (source[i] * source[i] + 1))) }
        #expect(worst == 0)
    }
}
