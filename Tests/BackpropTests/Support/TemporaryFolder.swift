import Foundation

/// Runs `body` with a new empty folder, removed afterwards (also when `body` throws).
///
/// Each call gets its own folder, so tests running in parallel do not see each other's files.
@discardableResult
func withTemporaryFolder<R>(_ body: (String) throws -> R) throws -> R {
    let template = FileManager.default.temporaryDirectory.appendingPathComponent("backprop-test-XXXXXX").path
    var characters = Array(template.utf8CString)
    guard let created = mkdtemp(&characters) else {
        throw CocoaError(.fileWriteUnknown)
    }
    let folder = String(cString: created)
    defer { try? FileManager.default.removeItem(atPath: folder) }
    return try body(folder)
}

/// Writes raw `bytes` to `path` (not atomically: tests use it to make malformed files).
func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}
