import Foundation

/// A value that threads share, read and changed only while a lock is held.
///
/// Synchronization's `Mutex` would be the first choice, but on Linux only its uncontended path is
/// compiled into the caller: when two threads meet at the lock, the waiting and the waking run in
/// the standard library (`_lockSlow`, `_unlockSlow`), which the thread sanitizer does not see, so
/// it reports the value's accesses as a race (it did, in CI, when two threads read two data files
/// at once). `NSLock` is a POSIX mutex, whose every path the sanitizer intercepts.
package final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    /// A lock around `value`.
    package init(_ value: Value) {
        self.value = value
    }

    /// A copy of the value, read with the lock held.
    ///
    /// For a closure, the way to read it: through `withLock { $0 }` the closure is reabstracted on
    /// the way into the `inout` argument and again on the way back, so each read stores it wrapped
    /// in one more pair of thunks. A reading loop that polled its check once per gzip member grew
    /// it to thousands of layers: the time grew with the square of the polls, and 200,000 polls
    /// overflowed the stack.
    package func load() -> Value {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    /// Runs `body` on the value with the lock held, and returns what it returns.
    ///
    /// The lock is not reentrant: `body` must not call `withLock` on the same instance.
    package func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
