import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

@Test func atomicWriteCreatesAndReplacesAFileLeavingNoTemporaryFiles() throws {
    try withTemporaryFolder { folder in
        let path = folder + "/report.html"
        try writeAtomically([1, 2, 3], to: path)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == [1, 2, 3])
        try writeAtomically(Data("replaced".utf8), to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "replaced")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["report.html"])
    }
}

/// A file replaced keeps its permissions, narrow or wide (a 0600 checkpoint became 0644 when a
/// resumed run rewrote it); a new file gets 0644 less the umask.
@Test(arguments: [0o600, 0o640, 0o664, 0o755] as [mode_t])
func atomicWriteKeepsTheReplacedFilesPermissions(mode: mode_t) throws {
    try withTemporaryFolder { folder in
        let path = folder + "/private.safetensors"
        try writeAtomically([1], to: path)
        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(status.st_mode & 0o022 == 0, "a new file is not writable by others")
        #expect(chmod(path, mode) == 0)
        try writeAtomically([2, 3], to: path)
        #expect(stat(path, &status) == 0)
        #expect(status.st_mode & 0o777 == mode, "mode \(String(status.st_mode & 0o777, radix: 8))")
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == [2, 3])
    }
}

@Test func atomicWriteNamesAMissingFolder() {
    expectDataError(containing: ["/no/such/folder/model.safetensors", "folder '/no/such/folder' does not exist"]) {
        try writeAtomically([1], to: "/no/such/folder/model.safetensors")
    }
}

@Test func atomicWriteRefusesToReplaceAFolder() throws {
    try withTemporaryFolder { folder in
        try FileManager.default.createDirectory(atPath: folder + "/taken", withIntermediateDirectories: false)
        expectDataError(containing: [folder + "/taken", "cannot replace the file"]) {
            try writeAtomically([1], to: folder + "/taken")
        }
        expectDataError(containing: ["names a folder, not a file"]) {
            try writeAtomically([1], to: folder + "/")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["taken"])
    }
}

@Test(.enabled(if: geteuid() != 0, "root may write into read-only folders"))
func atomicWriteNamesAFolderThatIsNotWritable() throws {
    try withTemporaryFolder { folder in
        let locked = folder + "/locked"
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: false)
        chmod(locked, 0o555)
        defer { chmod(locked, 0o755) }
        expectDataError(containing: [locked + "/out.svg", "is not writable"]) {
            try writeAtomically([1], to: locked + "/out.svg")
        }
    }
}

@Test func atomicWriteRemovesTheTemporaryFilesOfKilledWriters() throws {
    // A process that has exited: its pid names no process (until reused, which takes a while).
    let finished = Process()
    finished.executableURL = URL(fileURLWithPath: "/bin/true")
    try finished.run()
    finished.waitUntilExit()
    let deadPID = finished.processIdentifier
    try withTemporaryFolder { folder in
        let stale = ".model.safetensors.tmp-\(deadPID)-1f2e3d"
        let living = ".model.safetensors.tmp-\(getpid())-abc123"  // this process: still writing
        let otherFile = ".other.safetensors.tmp-\(deadPID)-1f2e3d"  // another file's: not ours to judge
        for name in [stale, living, otherFile] { try writeBytes([1, 2], to: folder + "/" + name) }
        try writeAtomically([7], to: folder + "/model.safetensors")
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: folder))
        #expect(left == ["model.safetensors", living, otherFile])
    }
}
