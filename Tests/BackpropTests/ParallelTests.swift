import Foundation
import Synchronization
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
    final class Tally: Sendable {
        private let counts: Locked<[Int]>

        init(_ count: Int) { counts = Locked(Array(repeating: 0, count: count)) }

        func record(_ index: Int) { counts.withLock { $0[index] += 1 } }

        var values: [Int] { counts.withLock { $0 } }
    }

    /// Two threads that meet at a `Locked` value, many times over, each see the other's changes:
    /// no increment is lost. Under the thread sanitizer (CI) this also checks that the sanitizer
    /// sees the lock's ordering when the threads collide, which Synchronization's `Mutex` hid
    /// on Linux (its contended path runs in the uninstrumented standard library).
    @Test func threadsThatMeetAtALockLoseNothing() async {
        let count = Locked(0)
        let rounds = 20_000
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    for _ in 0..<rounds { count.withLock { $0 += 1 } }
                }
            }
        }
        #expect(count.withLock { $0 } == 2 * rounds)
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

    /// `forEachThreadRange` cuts a large loop into one range per thread, the ranges `split` gives
    /// (so SGD's halves of a weight matrix are the rows of its gradient's halves), and leaves a
    /// small one whole; every index runs once (on whatever number of threads other tests set).
    @Test func threadRangesAreOnePerThread() {
        let cases = [(39200, 16384, 8), (200_704, 16384, 8), (100, 10, 1), (30, 16, 8), (0, 4, 1)]
        for (count, minimum, grain) in cases {
            let tally = Tally(count)
            Parallel.forEachThreadRange(count, minimumPerPiece: minimum, grain: grain) { range in
                for index in range { tally.record(index) }
            }
            #expect(tally.values == Array(repeating: 1, count: count), "\(count) by \(minimum), grain \(grain)")
        }
        let ranges = { (count: Int, minimum: Int, grain: Int, threads: Int) in
            Parallel.threadRanges(count, minimumPerPiece: minimum, grain: grain, threads: threads)
        }
        #expect(ranges(100, 10, 1, 3) == [0..<34, 34..<68, 68..<100])
        #expect(ranges(100, 10, 8, 3) == [0..<40, 40..<80, 80..<100])
        #expect(ranges(100, 10, 1, 1) == [0..<100])
        #expect(ranges(30, 16, 8, 2) == [0..<30])  // below twice the minimum: one range
        #expect(ranges(32, 16, 8, 2) == [0..<16, 16..<32])
        #expect(ranges(0, 4, 1, 2).isEmpty)
        // The minibatch's first layer on two threads: SGD's halves of w (784 × 50) are its rows
        // 0..<392 and 392..<784, the rows of w.g's two pieces.
        #expect(
            Parallel.threadRanges(784 * 50, minimumPerPiece: 1 << 14, grain: 8, threads: 2) == [
                0..<(392 * 50), (392 * 50)..<(784 * 50),
            ])
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

    /// Background work (`bp_background_start`): after `finish()` every iteration has run exactly
    /// once, whether the helpers took some while the caller worked (loops of its own meanwhile),
    /// none (a second background work while one is out runs at once, on the caller), or the
    /// work is finished before anyone had a moment for it. Finishing twice does nothing.
    @Test func backgroundWorkRunsEveryIterationOnce() async {
        for count in [0, 1, 5, 64, 1000] {
            let tally = Tally(count)
            let work = BackgroundWork(count) { tally.record($0) }
            let second = Tally(count)
            let other = BackgroundWork(count) { second.record($0) }
            var busy = 0
            for _ in 0..<50 {
                Parallel.forEachPiece(8) { _ in }
                busy += 1
            }
            other.finish()
            work.finish()
            work.finish()
            #expect(work.isFinished && busy == 50)
            #expect(tally.values == Array(repeating: 1, count: count), "\(count) iterations")
            #expect(second.values == Array(repeating: 1, count: count), "\(count) iterations, second work")
            let immediate = Tally(count)
            BackgroundWork(count) { immediate.record($0) }.finish()
            #expect(immediate.values == Array(repeating: 1, count: count))
        }
        // From several threads at once, with loops running meanwhile.
        let tallies = (0..<4).map { _ in Tally(300) }
        await withTaskGroup(of: Void.self) { group in
            for tally in tallies {
                group.addTask {
                    for _ in 0..<10 {
                        let round = Tally(300)
                        let work = BackgroundWork(300) { round.record($0) }
                        Parallel.forEachPiece(16) { _ in }
                        work.finish()
                        if round.values == Array(repeating: 1, count: 300) {
                            for index in 0..<300 { tally.record(index) }
                        }
                    }
                }
            }
        }
        for tally in tallies { #expect(tally.values == Array(repeating: 10, count: 300)) }
    }

    /// A caller that has run out of indices while a helper is still on one counts the time it
    /// waits (`ResourceCounters.poolWaitNanoseconds`, `bench`'s "µs waiting for helpers"): index 0,
    /// which the caller takes first, holds until index 1 has started elsewhere, and index 1 sleeps
    /// 100 ms. When a helper ran index 1, the caller waited nearly all of that: at least 15 ms
    /// even if the caller lost its processor for most of the rest (the tests run side by side,
    /// under the sanitizers too: a 20 ms sleep once left only 12 ms of counted wait in CI).
    @Test(.enabled(if: Parallel.workers >= 2))
    func waitingForAHelperIsCounted() {
        Parallel.forEachPiece(8) { _ in }  // the helpers are running
        let caller = pthread_self()
        let started = Atomic<Int>(0)  // 0: index 1 not started; 1: on the caller; 2: on a helper
        let before = ResourceCounters.now
        Parallel.forEachPiece(2) { index in
            if index == 1 {
                started.store(pthread_equal(pthread_self(), caller) != 0 ? 1 : 2, ordering: .releasing)
                usleep(100_000)
            } else {
                // (Alone on one thread, or when another loop holds the pool, index 1 comes after.)
                let deadline = Date().addingTimeInterval(1)
                while started.load(ordering: .acquiring) == 0 && Date() < deadline {}
            }
        }
        let waited = ResourceCounters.now.poolWaitNanoseconds - before.poolWaitNanoseconds
        #expect(waited >= 0)
        if started.load(ordering: .acquiring) == 2 {
            #expect(waited >= 15_000_000, "waited \(waited) ns for a helper's 100 ms index")
        }
    }

    /// `Batches` gathers each next batch in the background (rows of at least 4096 floats): every
    /// batch still holds exactly the rows of the epoch's order, through shuffles, the smaller
    /// last batch, flips, shards and batches taken out of order or twice, as the plain gathering
    /// (`Tensor.rows`) of the same positions.
    @Test func batchesGatheredInTheBackgroundHoldTheOrdersRows() {
        let rows = 203
        let rowSize = 120
        let x = Tensor(shape: [rows, rowSize], values: (0..<(rows * rowSize)).map { Float($0) })
        let y = Tensor((0..<rows).map(Float.init))
        let batches = Batches(x: x, y: y, batchSize: 40)
        func expectBatch(_ index: Int, shard: Range<Int>? = nil, flips: Int? = nil) {
            let start = index * 40
            let size = Swift.min(40, rows - start)
            let positions = shard.map { (start + $0.lowerBound)..<(start + $0.upperBound) } ?? start..<(start + size)
            let (xb, yb) = shard.map { batches.batch(index, rows: $0) } ?? batches.batch(index)
            let order = positions.map { batches.order[$0] }
            var expected = x.rows(order).values
            if let width = flips {
                for (row, position) in positions.enumerated() where batches.flipped[position] {
                    for line in stride(from: row * rowSize, to: (row + 1) * rowSize, by: width) {
                        expected[line..<(line + width)].reverse()
                    }
                }
            }
            let (sameTargets, sameRows) = (yb.values == order.map(Float.init), xb.values == expected)
            #expect(sameTargets, "batch \(index): targets")
            #expect(sameRows, "batch \(index) shard \(String(describing: shard)) flips \(flips ?? 0): rows")
        }
        for epoch in 0..<3 {
            batches.shuffle(seed: 7, epoch: epoch)
            for index in 0..<batches.count { expectBatch(index) }
        }
        batches.shuffle(seed: 7, epoch: 3)
        for index in [0, 2, 1, 1, 5, 4, 5, 0] { expectBatch(index) }
        expectBatch(1, shard: 10..<30)
        expectBatch(2)
        batches.flipWidth = 12
        batches.shuffle(seed: 8, epoch: 0)
        for index in 0..<batches.count { expectBatch(index, flips: 12) }
    }
}
