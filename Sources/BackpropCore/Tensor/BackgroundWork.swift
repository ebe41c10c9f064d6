import CKernels

/// Work started now and needed later (the next minibatch's rows), which the thread pool's helpers
/// do in their idle moments while the caller goes on: between the loops of a training step, a
/// helper waits for the caller's serial work (the loss, the small layers), and the work fills
/// those waits one iteration at a time (`bp_background_start` in `Sources/CKernels/Pool.c`).
///
/// ``finish()`` does what no helper got to, on the calling thread, and waits for the rest: after it,
/// every iteration has run and its writes are visible, whether or not a helper had the time. So
/// the result never depends on the helpers, only when it is ready. Until then the caller must not
/// touch what the iterations read or write.
package final class BackgroundWork: @unchecked Sendable {
    /// The iterations' body, kept alive (and at a fixed address) until the finish.
    private final class Body {
        let run: (Int) -> Void
        init(_ run: @escaping (Int) -> Void) { self.run = run }
    }

    private var handle: UnsafeMutableRawPointer?
    private var body: Unmanaged<Body>?

    /// Starts `body(index)` for each `index` in `0..<count` in the background (see the type's
    /// comment). With one thread (``Threads/count``), every iteration runs here, before the return.
    package init(_ count: Int, _ body: @escaping (Int) -> Void) {
        let retained = Unmanaged.passRetained(Body(body))
        handle = bp_background_start(
            count, Int32(Parallel.workers),
            { context, index in
                Unmanaged<Body>.fromOpaque(context!).takeUnretainedValue().run(index)
            }, retained.toOpaque())
        self.body = retained
    }

    /// Whether ``finish()`` has run.
    package var isFinished: Bool { body == nil }

    /// Runs the iterations no helper has taken, waits for those under way, and releases the body.
    /// Calling it again does nothing.
    package func finish() {
        guard let body else { return }
        bp_background_finish(handle)
        handle = nil
        body.release()
        self.body = nil
    }

    deinit { finish() }
}
