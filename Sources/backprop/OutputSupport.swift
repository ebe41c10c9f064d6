import ArgumentParser
import Foundation

/// Checks on output paths made before any work starts, so that a long run does not end in an
/// error about where to write its result.
enum OutputPath {
    /// Throws a `ValidationError` unless `path`'s folder exists and is writable and `path` is not
    /// a folder.
    static func check(_ path: String, option: String) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else {
            throw ValidationError("\(option) \(path): the folder \(folder) does not exist")
        }
        guard isDirectory.boolValue else {
            throw ValidationError("\(option) \(path): \(folder) is not a folder")
        }
        guard FileManager.default.isWritableFile(atPath: folder) else {
            throw ValidationError("\(option) \(path): the folder \(folder) is not writable")
        }
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ValidationError("\(option) \(path): is a folder, expected a file path")
        }
    }
}

/// Numbers as JSON spells them (no `nan` or `inf`: those become `null`).
enum JSONNumber {
    static func format(_ value: Double) -> String {
        guard value.isFinite else { return "null" }
        return "\(value)"
    }
}
