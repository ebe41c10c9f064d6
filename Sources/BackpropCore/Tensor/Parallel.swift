import CKernels
import Foundation
import Synchronization

/// Splitting large loops across the machine's cores.
///
/// Work below a threshold stays on the calling thread: handing work to another thread costs
/// microseconds, more than small loops take. Large work is cut into a few more pieces than there
/// are cores, which the cores take as they come free: on a machine shared with other programs,
/// a core that loses its time slice then delays the whole loop by one small piece, not by half
/// the work.
package enum Parallel {
    /// How many threads large loops use: ``setWorkers(_:)``'s count, else `$BACKPROP_THREADS` if set
    /// to a positive number, else the active processors, at most 8.
    static var workers: Int { chosenWorkers.load(ordering: .relaxed) }

    /// The threads of the environment's choice (see ``workers``).
    static let defaultWorkers: Int = {
        if let text = ProcessInfo.processInfo.environment["BACKPROP_THREADS"], let count = Int(text), count > 0 {
            return Swift.min(count, 64)
        }
        return Swift.max(1, Swift.min(ProcessInfo.processInfo.activeProcessorCount, 8))
    }()

    private static let chosenWorkers = Atomic<Int>(defaultWorkers)

    /// Makes large loops, and the matrix products, use `count` threads from now on (for the whole
    /// process; call it before the work starts, as `backprop train --threads` does).
    /// - Precondition: `1 ≤ count ≤ 64`.
    static func setWorkers(_ count: Int) {
        precondition(count >= 1 && count <= 64, "Parallel.setWorkers: \(count) threads; expected 1...64")
        chosenWorkers.store(count, ordering: .relaxed)
    }

    /// The most pieces a large loop is cut into.
    ///
    /// The pieces depend on the loop alone, not on the number of threads: a matrix product whose
    /// pieces each sum their elements in their own way (a kernel's last columns, a block of
    /// BLAS) then gives the same result on any number of threads.
    static let maximumPieces = 16

    /// Calls `body` with consecutive ranges that cover `0..<count`, on up to ``workers`` threads
    /// at once: at most ``maximumPieces`` ranges, each of at least `minimumPerPiece` elements and
    /// a multiple of `grain` (except the last). Returns when every range is done.
    ///
    /// `body` runs concurrently on disjoint ranges: it must write only what its range owns.
    package static func forEachRange(
        _ count: Int, minimumPerPiece: Int, grain: Int = 1, _ body: (Range<Int>) -> Void
    ) {
        let parts = pieces(count, minimumPerPiece: minimumPerPiece)
        if parts <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        let ranges = split(count, into: parts, grain: grain)
        run(ranges.count) { part in body(ranges[part]) }
    }

    /// Calls `body` with ranges that cover `0..<count`: one range when `count` is below
    /// `2 · minimumPerPiece`, else one for each of ``workers`` threads, of nearly equal size and each
    /// a multiple of `grain` (except the last). Returns when every range is done.
    ///
    /// For loops whose pieces should line up with the pieces of other loops, one per thread: SGD
    /// updates each half of a weight matrix on the core that computed its gradient (`skinnyGemm`'s
    /// pieces of rows) and will read it in the next forward product (`Tensor.splitsDepthInHalves`).
    /// (The calling thread takes the first range unless a helper gets to it first, as in every
    /// loop of the pool; nothing but the speed depends on it.) `body` must write only what its
    /// range owns.
    package static func forEachThreadRange(
        _ count: Int, minimumPerPiece: Int, grain: Int = 1, _ body: (Range<Int>) -> Void
    ) {
        let ranges = threadRanges(count, minimumPerPiece: minimumPerPiece, grain: grain, threads: workers)
        run(ranges.count) { part in body(ranges[part]) }
    }

    /// The ranges of ``forEachThreadRange(_:minimumPerPiece:grain:_:)`` on `threads` threads.
    static func threadRanges(_ count: Int, minimumPerPiece: Int, grain: Int, threads: Int) -> [Range<Int>] {
        if count <= 0 { return [] }
        if threads <= 1 || count < 2 * Swift.max(minimumPerPiece, 1) { return [0..<count] }
        return split(count, into: threads, grain: grain)
    }

    /// Calls `body` once for each of `0..<count`, on up to ``workers`` threads, each taking the
    /// next index as it comes free (for pieces of similar, sizeable work: a core that loses its
    /// time slice then delays the loop by one piece at most). Returns when every call is done.
    ///
    /// `body` runs concurrently for different indices: it must write only what its index owns.
    package static func forEachPiece(_ count: Int, _ body: (Int) -> Void) {
        run(count, body)
    }

    /// `body(index)` for each index on the pool's threads (`bp_parallel_for` in
    /// `Sources/CKernels/Pool.c`), which stay awake for a moment between loops: the loops of a
    /// training step are tens of microseconds long, about what waking a sleeping thread costs.
    private static func run(_ count: Int, _ body: (Int) -> Void) {
        if workers <= 1 || count <= 1 {
            for index in 0..<count { body(index) }
            return
        }
        withoutActuallyEscaping(body) { body in
            var closure = body
            withUnsafeMutablePointer(to: &closure) { pointer in
                bp_parallel_for(
                    count, Int32(workers),
                    { context, index in
                        context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
                    }, pointer)
            }
        }
    }

    /// How many ranges ``forEachRange(_:minimumPerPiece:grain:_:)`` cuts `0..<count` into: at most
    /// ``maximumPieces``, each of at least `minimumPerPiece` elements (0 or 1: not cut).
    static func pieces(_ count: Int, minimumPerPiece: Int) -> Int {
        Swift.min(maximumPieces, count / Swift.max(minimumPerPiece, 1))
    }

    /// `0..<count` cut into `parts` consecutive ranges of nearly equal size, each a multiple of
    /// `grain` except the last; empty ranges are dropped.
    static func split(_ count: Int, into parts: Int, grain: Int) -> [Range<Int>] {
        let step = ((count + parts - 1) / parts + grain - 1) / grain * grain
        return stride(from: 0, to: count, by: Swift.max(step, 1)).map { $0..<Swift.min($0 + step, count) }
    }
}

/// How many threads Backprop uses: the one setting for its large loops and its matrix products,
/// BLAS's included (BLAS runs on one thread inside the pieces Backprop hands out).
///
/// The products of a training step are split into pieces that the threads take as they come
/// free; each element of a result is computed the same way whichever thread computes it, so the
/// results do not depend on the count.
public enum Threads {
    /// The threads in use: the count given to ``set(_:)``, else `$BACKPROP_THREADS` if it is a
    /// positive number, else the active processors, at most 8.
    public static var count: Int { Parallel.workers }

    /// Uses `count` threads from now on, for the whole process.
    /// - Precondition: `1 ≤ count ≤ 64`.
    public static func set(_ count: Int) { Parallel.setWorkers(count) }
}
