import BackpropCore
import Foundation

/// A file that could not be read or written as expected, described in one line the user can act on.
///
/// Every reader and writer in `Data/` throws this error. Its ``description`` names the file (or
/// folder), then what was expected and what was found:
///
///     train-images-idx3-ubyte.gz: header says 60000×28×28 uint8 values (47040000 bytes) but the
///     file holds 1000 bytes of data
///
/// Two errors are equal when they name the same path and say the same thing, which lets tests
/// compare whole errors as well as substrings of ``description``.
public struct DataError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file or folder the problem is about, as the caller spelled it.
    public let path: String
    /// What was expected and what was found, without the path (for example `no such file`).
    public let problem: String

    /// Creates an error about `path`.
    ///
    /// - Parameters:
    ///   - path: the file or folder, as the caller gave it (not resolved, so the user recognises it).
    ///   - problem: one line, no trailing period: what was expected and what was found.
    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    /// The one-line message: `"<path>: <problem>"`.
    public var description: String { "\(path): \(problem)" }
}

extension DataError: LocalizedError {
    /// The same line as ``description``, so that `localizedDescription` shows it too.
    public var errorDescription: String? { description }
}
