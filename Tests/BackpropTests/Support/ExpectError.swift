import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// Expects `body` to throw a ``DataError`` whose description contains each of `fragments`.
///
/// Returns the error so a test can check more about it.
@discardableResult
func expectDataError<R>(
    containing fragments: [String],
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> R
) -> DataError? {
    do {
        _ = try body()
        Issue.record(
            "expected a DataError containing \(fragments), but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as DataError {
        for fragment in fragments {
            #expect(
                error.description.contains(fragment),
                "\"\(error.description)\" does not contain \"\(fragment)\"",
                sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a DataError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
