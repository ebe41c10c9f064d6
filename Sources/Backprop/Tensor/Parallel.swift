import Dispatch
import Foundation

/// Splitting large loops across the machine's cores.
///
/// Work below a threshold stays on the calling thread: starting a worker costs a few
/// microseconds, more than small loops take. Large work is cut into a few more pieces than there
/// are cores, which the cores take as they come free: on a machine shared with other programs,
/// a core that loses its time slice then delays the whole loop by one small piece, not by half
/// the work.
enum Parallel {
    /// How many threads large loops use: `$BACKPROP_THREADS` if set to a positive number, else the
    /// active processors, at most 8.
    static let workers: Int = {
        if let text = ProcessInfo.processInfo.environment["BACKPROP_THREADS"], let count = Int(text), count > 0 {
            return Swift.min(count, 64)
        }
        return Swift.max(1, Swift.min(ProcessInfo.processInfo.activeProcessorCount, 8))
    }()

    /// How many pieces per worker large loops are cut into.
    static let piecesPerWorker = 4

    /// Calls `body` with consecutive ranges that cover `0..<count`, on up to ``workers`` threads
    /// at once: at most ``piecesPerWorker`` ranges per worker, each of at least `minimumPerPiece`
    /// elements and a multiple of `grain` (except the last). Returns when every range is done.
    ///
    /// `body` runs concurrently on disjoint ranges: it must write only what its range owns.
    static func forEachRange(
        _ count: Int, minimumPerPiece: Int, grain: Int = 1, _ body: (Range<Int>) -> Void
    ) {
        let parts = Swift.min(workers * piecesPerWorker, count / Swift.max(minimumPerPiece, 1))
        if parts <= 1 {
            if count > 0 { body(0..<count) }
            return
        }
        let ranges = split(count, into: parts, grain: grain)
        // `concurrentPerform` wants a Sendable closure; `body` is one in practice (it touches
        // disjoint ranges and has returned before this function does), which the compiler cannot see.
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: ranges.count) { part in
                shared.value(ranges[part])
            }
        }
    }

    /// Calls `body` once for each of `0..<count`, on up to ``workers`` threads, each taking the
    /// next index as it comes free (for pieces of similar, sizeable work: a core that loses its
    /// time slice then delays the loop by one piece at most). Returns when every call is done.
    ///
    /// `body` runs concurrently for different indices: it must write only what its index owns.
    static func forEachPiece(_ count: Int, _ body: (Int) -> Void) {
        let threads = Swift.min(workers, count)
        if threads <= 1 {
            for index in 0..<count { body(index) }
            return
        }
        let next = PieceCounter()
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                while let index = next.take(below: count) { shared.value(index) }
            }
        }
    }

    /// `0..<count` cut into `parts` consecutive ranges of nearly equal size, each a multiple of
    /// `grain` except the last; empty ranges are dropped.
    static func split(_ count: Int, into parts: Int, grain: Int) -> [Range<Int>] {
        let step = ((count + parts - 1) / parts + grain - 1) / grain * grain
        return stride(from: 0, to: count, by: Swift.max(step, 1)).map { $0..<Swift.min($0 + step, count) }
    }
}

/// A value handed to other threads under the caller's guarantee that they use it safely.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The next index to hand out in ``Parallel/forEachPiece(_:_:)``.
private final class PieceCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0

    /// The next index below `count`, or `nil` when all have been handed out.
    func take(below count: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard next < count else { return nil }
        next += 1
        return next - 1
    }
}
