/// The example's checks: each prints one line, and the program exits with status 1 if any failed
/// (so that CI, which runs the example, fails when the library breaks what it shows).
struct Checks {
    /// The descriptions of the checks that failed.
    private(set) var failures: [String] = []

    /// Prints `ok: what` if `passed`, else `FAILED: what (detail)` and records the failure.
    mutating func expect(_ passed: Bool, _ what: String, detail: @autoclosure () -> String = "") {
        if passed {
            print("ok: \(what)")
        } else {
            let detail = detail()
            print("FAILED: \(what)" + (detail.isEmpty ? "" : " (\(detail))"))
            failures.append(what)
        }
    }
}
