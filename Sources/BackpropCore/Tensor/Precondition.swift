// Swift's `precondition` and `preconditionFailure` drop their messages in optimised builds: a
// release build (the one the README asks for) stopped on `(3, 4) • (4)` with "Illegal
// instruction" and nothing else. These keep the message in every build, so that a mistake is named
// as the documentation says ("matmul: expects two matrices, got shapes [3, 4] and [4]"). Visible
// to every target of the package (they shadow the standard library's where BackpropCore is
// imported), not to users of the library.

/// Checks `condition`; when it is false, stops the process with `message`, in every build.
@inlinable @inline(__always)
package func precondition(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String = String(),
    file: StaticString = #fileID, line: UInt = #line
) {
    if !condition() { fatalError(message(), file: file, line: line) }
}

/// Stops the process with `message`, in every build.
@inlinable @inline(__always)
package func preconditionFailure(
    _ message: @autoclosure () -> String = String(), file: StaticString = #fileID, line: UInt = #line
) -> Never {
    fatalError(message(), file: file, line: line)
}
